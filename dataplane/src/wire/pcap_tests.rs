//! Captures of emitted packets checked by Wireshark's dissectors (tshark):
//! an independent implementation of every layout in this module.

use std::path::PathBuf;
use std::process::Command;

use super::geneve::{FlowOption, SecurityOption};
use super::overlay::tests::{cfg_v4, cfg_v6, frame, params};
use super::overlay::{EncapParams, OverlayTemplate};
use super::{ethernet, icmp, ipv4, oam, udp};
use crate::secure::{AEAD_ALGORITHM, aead};

/// A classic pcap file (the capture's writer: `crate::mirror::pcap`).
fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    crate::mirror::pcap::file_of(frames)
}

/// A plain inner Ethernet + IPv4 + UDP frame, so tshark dissects the inside too.
fn inner_frame(payload: usize) -> Vec<u8> {
    let mut b = vec![0u8; 14 + 20 + 8 + payload];
    let eth = ethernet::Repr {
        src: ethernet::MacAddr([2, 0, 0, 0, 1, 1]),
        dst: ethernet::MacAddr([2, 0, 0, 0, 1, 2]),
        vlan: None,
        ethertype: ethernet::ethertype::IPV4,
    };
    eth.emit(&mut b).unwrap();
    let (s, d) = (
        core::net::Ipv4Addr::new(198, 18, 1, 1),
        core::net::Ipv4Addr::new(198, 18, 2, 1),
    );
    ipv4::Repr {
        src: s,
        dst: d,
        protocol: 17,
        payload_len: 8 + payload,
        ttl: 64,
        tos: 0,
        ident: 1,
        dont_frag: true,
    }
    .emit(&mut b[14..])
    .unwrap();
    udp::Repr {
        src_port: 40000,
        dst_port: 40001,
    }
    .emit(&mut b[34..], payload)
    .unwrap();
    let mut u = udp::Packet::new_checked(&mut b[34..]).unwrap();
    u.fill_checksum_v4(s, d);
    b
}

fn run_tshark(name: &str, frames: &[Vec<u8>]) -> Option<String> {
    if Command::new("tshark").arg("--version").output().is_err() {
        println!("SKIPPED {name}: tshark not installed (apt-get install tshark)");
        return None;
    }
    let path: PathBuf =
        std::env::temp_dir().join(format!("mongate-wire-{name}-{}.pcap", std::process::id()));
    std::fs::write(&path, pcap(frames)).unwrap();
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&path)
        .args([
            "-V",
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
        ])
        .output();
    let _ = std::fs::remove_file(&path);
    let out = out.unwrap();
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

fn encap(t: &OverlayTemplate, inner: &[u8], p: &EncapParams) -> Vec<u8> {
    let mut b = vec![0u8; 128 + inner.len() + 16];
    b[128..128 + inner.len()].copy_from_slice(inner);
    let r = t.encap(&mut b, 128, inner.len(), p).unwrap();
    b[r].to_vec()
}

#[test]
fn tshark_decodes_overlay() {
    let t4 = OverlayTemplate::new(&cfg_v4()).unwrap();
    let mut c = cfg_v4();
    c.udp_checksum_v4 = true;
    let t4c = OverlayTemplate::new(&c).unwrap();
    let t6 = OverlayTemplate::new(&cfg_v6()).unwrap();
    let inner = inner_frame(50);
    let frames = vec![
        encap(&t4, &inner, &params()),
        encap(&t4c, &inner, &params()),
        encap(&t6, &inner, &params()),
        encap(&t6, &frame(0, 1400, 0), &params()),
    ];
    let Some(out) = run_tshark("overlay", &frames) else {
        return;
    };
    println!("{out}");
    assert!(!out.contains("Malformed"), "tshark: malformed packet");
    assert!(
        !out.contains("[Checksum Status: Bad]") && !out.contains("incorrect"),
        "tshark: bad checksum"
    );
    assert_eq!(
        out.matches("Generic Network Virtualization Encapsulation")
            .count(),
        4
    );
    assert_eq!(
        out.matches("Virtual Network Identifier (VNI): 0xabcdef")
            .count(),
        4
    );
    assert!(out.contains("Protocol Type: Transparent Ethernet bridging (0x6558)"));
    // Our flow option: class 0xfff0, non-critical type 1, 24 bytes, flow 42,
    // seq 0x1_0000_0005, timestamp 123456789 (0x075bcd15).
    assert_eq!(
        out.matches("Class: Experimental (0xfff0) Type: 0x01 (Non-critical)")
            .count(),
        4
    );
    assert!(out.contains("Length: 24 bytes"));
    assert!(out.contains("Option Data: 0000002a000000010000000500000000075bcd15"));
    // The inner frame is dissected as Ethernet/IPv4/UDP 40000 -> 40001.
    assert_eq!(out.matches("Src Port: 40000, Dst Port: 40001").count(), 3);
    assert!(out.contains("Dst Port: 6081"));
}

/// A probe (path 1, sequence 2, sent at 3 ns, nonce 4) padded to 36 bytes.
fn probe_message() -> [u8; 36] {
    let mut probe = [0u8; 36];
    oam::Repr::Probe(oam::Probe {
        path_id: 1,
        probe_seq: 2,
        send_ts_ns: 3,
        echo_ts_ns: 0,
        nonce: 4,
    })
    .emit(&mut probe)
    .unwrap();
    probe
}

#[test]
fn tshark_decodes_oam_and_icmp() {
    let t4 = OverlayTemplate::new(&cfg_v4()).unwrap();
    let probe = probe_message();
    let p = EncapParams {
        oam: true,
        flow: FlowOption::default(),
        entropy: 1,
        security: SecurityOption::default(),
    };
    let oam_frame = encap(&t4, &probe, &p);
    let mut sec = cfg_v6();
    sec.secure = true;
    let ts = OverlayTemplate::new(&sec).unwrap();
    let secure_frame = encap(&ts, &inner_frame(20), &params());
    // ICMP frag-needed about a too-big inner packet, wrapped in Ethernet.
    let big = inner_frame(1472);
    let mut icmp_frame = vec![0u8; 14 + 576];
    ethernet::Repr {
        src: ethernet::MacAddr([2, 0, 0, 0, 1, 2]),
        dst: ethernet::MacAddr([2, 0, 0, 0, 1, 1]),
        vlan: None,
        ethertype: ethernet::ethertype::IPV4,
    }
    .emit(&mut icmp_frame)
    .unwrap();
    let n = icmp::emit_frag_needed_v4(
        &mut icmp_frame[14..],
        core::net::Ipv4Addr::new(198, 18, 1, 254),
        &big[14..],
        1426,
        64,
    )
    .unwrap();
    icmp_frame.truncate(14 + n);
    let Some(out) = run_tshark("oam", &[oam_frame, secure_frame, icmp_frame]) else {
        return;
    };
    println!("{out}");
    assert!(!out.contains("Malformed"), "tshark: malformed packet");
    assert!(
        !out.contains("[Checksum Status: Bad]") && !out.contains("incorrect"),
        "tshark: bad checksum"
    );
    // OAM probe: O bit, protocol 0x88b5, the 28-byte probe as data.
    assert!(out.contains("Operations, Administration and Management Frame: True"));
    assert!(out.contains("Protocol Type: Local Experimental Ethertype 1 (0x88b5)"));
    assert!(out.contains("Data: 01020000000000010000000200000000000000030000000000000000"));
    // Secure frame (left unsealed here): C bit, security option (critical
    // type 0x82, 16 bytes), protocol 0x88b6, so the payload is plain data.
    assert!(out.contains("Critical Options Present: True"));
    assert!(out.contains("Class: Experimental (0xfff0) Type: 0x82 (Critical)"));
    assert!(out.contains("Length: 16 bytes"));
    assert!(out.contains("Protocol Type: Local Experimental Ethertype 2 (0x88b6)"));
    assert!(out.contains("[Protocols in frame: eth:ethertype:ipv6:udp:geneve:data]"));
    // ICMP frag-needed quoting the inner IPv4/UDP packet.
    assert!(out.contains("[Protocols in frame: eth:ethertype:ip:icmp:ip:udp:data]"));
    assert!(out.contains("Fragmentation needed"));
    assert!(out.contains("MTU of next hop: 1426"));
}

/// Sealed data is labelled 0x88b6, which tshark shows as data: the outer
/// GENEVE (options included) decodes, no frame is malformed and the inner
/// frame is not readable. Labelled 0x6558, tshark dissected the ciphertext
/// as Ethernet and about 1.5 % of frames came out malformed (a random
/// "EtherType" under 0x0600 is an 802.3 length), so 256 frames would all
/// pass only about once in 50.
#[test]
fn tshark_sealed_data_is_data() {
    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(AEAD_ALGORITHM, &[7u8; 32]).unwrap(),
    );
    let mut templates = Vec::new();
    for v6 in [false, true] {
        let mut c = if v6 { cfg_v6() } else { cfg_v4() };
        c.secure = true;
        // As the gateway sends them: over IPv4 no UDP checksum when sealed.
        c.udp_checksum_v4 = false;
        templates.push(OverlayTemplate::new(&c).unwrap());
    }
    let seal = |t: &OverlayTemplate, inner: &[u8], p: &EncapParams| {
        let hl = t.header_len();
        let mut b = vec![0u8; hl + inner.len() + 16];
        b[hl..hl + inner.len()].copy_from_slice(inner);
        let r = t.encap_to_seal(&mut b, hl, inner.len(), p).unwrap();
        aead::seal(t, &mut b[r.clone()], &key, p.security.counter).unwrap();
        b[r].to_vec()
    };
    const N: usize = 256;
    let mut frames = Vec::new();
    for i in 0..N {
        let mut p = params();
        p.security = SecurityOption {
            receiver_index: 9,
            counter: u64::try_from(i).unwrap(),
        };
        frames.push(seal(&templates[i % 2], &inner_frame(i * 5 % 1300), &p));
    }
    // A sealed OAM probe keeps 0x88b5 (data to tshark as well).
    let probe = probe_message();
    let mut p = params();
    p.oam = true;
    p.security.counter = 1000;
    frames.push(seal(&templates[0], &probe, &p));
    let Some(out) = run_tshark("sealed", &frames) else {
        return;
    };
    assert!(!out.contains("Malformed"), "tshark: malformed packet");
    assert!(
        !out.contains("[Checksum Status: Bad]") && !out.contains("incorrect"),
        "tshark: bad checksum"
    );
    assert_eq!(
        out.matches("Generic Network Virtualization Encapsulation")
            .count(),
        N + 1
    );
    assert_eq!(
        out.matches("Protocol Type: Local Experimental Ethertype 2 (0x88b6)")
            .count(),
        N
    );
    assert_eq!(
        out.matches("Protocol Type: Local Experimental Ethertype 1 (0x88b5)")
            .count(),
        1
    );
    assert_eq!(
        out.matches("Class: Experimental (0xfff0) Type: 0x82 (Critical)")
            .count(),
        N + 1
    );
    assert_eq!(
        out.matches("[Protocols in frame: eth:ethertype:ip:udp:geneve:data]")
            .count(),
        N / 2 + 1
    );
    assert_eq!(
        out.matches("[Protocols in frame: eth:ethertype:ipv6:udp:geneve:data]")
            .count(),
        N / 2
    );
    // The inner frames (UDP 40000 -> 40001) are not readable.
    assert!(!out.contains("Src Port: 40000"));
}
