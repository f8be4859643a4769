//! Fuzz entry points, one per parser. The cargo-fuzz targets in `fuzz/` call
//! these, and so do the property tests, so the bodies run in CI on stable.
//!
//! Each one parses arbitrary bytes, touches every getter, and checks
//! invariants with `assert!` (a failing invariant is a bug the fuzzer should
//! report): re-emitting what was parsed reproduces a packet that parses the
//! same way, and ranges returned lie within the input.

use core::hint::black_box;

use super::{checksum, ethernet, geneve, icmp, ipv4, ipv6, oam, overlay, tcp, udp};

/// Ethernet: parse, getters, emit/parse roundtrip.
pub fn fuzz_ethernet(data: &[u8]) {
    let Ok(f) = ethernet::Frame::new_checked(data) else {
        return;
    };
    black_box((f.dst(), f.src(), f.vlan(), f.ethertype(), f.payload()));
    let r = ethernet::Repr::parse(&f);
    let mut out = [0u8; 18];
    let n = r.emit(&mut out).expect("18 bytes hold any Ethernet header");
    assert_eq!(n, f.header_len());
    let g = ethernet::Frame::new_checked(&out[..n]).expect("emitted header parses");
    let r2 = ethernet::Repr::parse(&g);
    assert_eq!(
        (r2.src, r2.dst, r2.ethertype, r2.vlan.map(|v| v.tci())),
        (r.src, r.dst, r.ethertype, r.vlan.map(|v| v.tci()))
    );
}

/// IPv4: parse, getters, TTL decrement keeps a valid checksum valid, emit/parse roundtrip.
pub fn fuzz_ipv4(data: &[u8]) {
    let Ok(p) = ipv4::Packet::new_checked(data) else {
        return;
    };
    black_box((
        p.options(),
        p.tos(),
        p.dscp(),
        p.ecn(),
        p.ident(),
        p.frag_offset(),
        p.checksum(),
        p.src(),
        p.dst(),
        p.payload(),
    ));
    let valid = p.verify_checksum();
    let mut copy = [0u8; ipv4::MAX_HEADER_LEN];
    let hl = p.header_len();
    copy[..hl].copy_from_slice(&data[..hl]);
    // Present the header alone as a packet: set the total length to the header length.
    copy[2..4].copy_from_slice(&u16::try_from(hl).unwrap_or(0).to_be_bytes());
    let mut q = ipv4::Packet::new_checked(&mut copy[..hl]).expect("header-only copy parses");
    q.fill_checksum();
    let ttl = q.ttl();
    match q.decrement_ttl() {
        Ok(t) => {
            assert_eq!(t, ttl - 1);
            assert!(q.verify_checksum());
        }
        Err(e) => assert!(ttl <= 1 && e == super::Error::Expired),
    }
    black_box(valid);
    if let Ok(r) = ipv4::Repr::parse(&p) {
        // Header fields only: the payload bytes are not needed for the roundtrip.
        let r0 = ipv4::Repr {
            payload_len: 0,
            ..r
        };
        let mut out = [0u8; ipv4::HEADER_LEN];
        r0.emit(&mut out).expect("20 bytes hold the header");
        let q = ipv4::Packet::new_checked(&out[..]).expect("emitted header parses");
        assert!(q.verify_checksum());
        assert_eq!(ipv4::Repr::parse(&q), Ok(r0));
    }
}

/// IPv6: parse, getters, emit/parse roundtrip.
pub fn fuzz_ipv6(data: &[u8]) {
    let Ok(p) = ipv6::Packet::new_checked(data) else {
        return;
    };
    black_box((
        p.traffic_class(),
        p.flow_label(),
        p.next_header(),
        p.hop_limit(),
        p.src(),
        p.dst(),
        p.payload(),
    ));
    let r = ipv6::Repr::parse(&p);
    let r0 = ipv6::Repr {
        payload_len: 0,
        ..r
    };
    let mut out = [0u8; ipv6::HEADER_LEN];
    r0.emit(&mut out).expect("fits");
    assert_eq!(
        ipv6::Repr::parse(&ipv6::Packet::new_checked(&out[..]).expect("parses")),
        r0
    );
}

/// UDP: parse, getters, checksum fill/verify over both pseudo-headers.
pub fn fuzz_udp(data: &[u8]) {
    let Ok(p) = udp::Packet::new_checked(data) else {
        return;
    };
    black_box((p.src_port(), p.dst_port(), p.checksum(), p.payload()));
    let s4 = core::net::Ipv4Addr::new(198, 18, 0, 1);
    let d4 = core::net::Ipv4Addr::new(198, 19, 0, 1);
    black_box(p.verify_checksum_v4(s4, d4));
    let len = p.len();
    if len <= 2048 {
        let mut copy = [0u8; 2048];
        copy[..len].copy_from_slice(&data[..len]);
        let mut q = udp::Packet::new_checked(&mut copy[..len]).expect("copy parses");
        q.fill_checksum_v4(s4, d4);
        assert!(q.verify_checksum_v4(s4, d4));
        let (s6, d6) = (
            core::net::Ipv6Addr::LOCALHOST,
            core::net::Ipv6Addr::UNSPECIFIED,
        );
        q.fill_checksum_v6(s6, d6);
        assert!(q.verify_checksum_v6(s6, d6));
    }
}

/// TCP: parse, getters, emit/parse roundtrip of ports and flags.
pub fn fuzz_tcp(data: &[u8]) {
    let Ok(p) = tcp::Packet::new_checked(data) else {
        return;
    };
    black_box((p.header_len(), p.fin(), p.syn(), p.rst(), p.ack()));
    let r = tcp::Repr::parse(&p);
    let mut out = [0u8; tcp::HEADER_LEN];
    assert_eq!(r.emit(&mut out), Ok(tcp::HEADER_LEN));
    let q = tcp::Packet::new_checked(&out[..]).expect("emitted header parses");
    assert_eq!(tcp::Repr::parse(&q), r);
}

/// ICMP: parse the message view, and build both errors about the input as
/// the offending packet (eligible or not, never a panic).
pub fn fuzz_icmp(data: &[u8]) {
    if let Ok(p) = icmp::Packet::new_checked(data) {
        black_box((
            p.msg_type(),
            p.code(),
            p.checksum(),
            p.next_hop_mtu(),
            p.mtu(),
            p.data(),
            p.verify_checksum_v4(),
        ));
    }
    let mut out = [0u8; 1400];
    if let Ok(n) = icmp::emit_frag_needed_v4(
        &mut out,
        core::net::Ipv4Addr::new(198, 18, 0, 254),
        data,
        1400,
        64,
    ) {
        assert!(n <= icmp::V4_MAX_ERROR_LEN);
        let ip = ipv4::Packet::new_checked(&out[..n]).expect("emitted ICMPv4 parses");
        assert!(ip.verify_checksum());
        assert!(
            icmp::Packet::new_checked(ip.payload())
                .expect("icmp")
                .verify_checksum_v4()
        );
    }
    if let Ok(n) =
        icmp::emit_packet_too_big_v6(&mut out, core::net::Ipv6Addr::LOCALHOST, data, 1400, 64)
    {
        assert!(n <= icmp::V6_MAX_ERROR_LEN);
        let ip = ipv6::Packet::new_checked(&out[..n]).expect("emitted ICMPv6 parses");
        assert!(
            icmp::Packet::new_checked(ip.payload())
                .expect("icmp")
                .verify_checksum_v6(ip.src(), ip.dst())
        );
    }
}

/// GENEVE: header, raw option walk, mongate options, emit/parse roundtrip.
pub fn fuzz_geneve(data: &[u8]) {
    let Ok(h) = geneve::Header::new_checked(data) else {
        return;
    };
    black_box((h.oam(), h.critical(), h.protocol(), h.vni(), h.payload()));
    let mut walked = 0usize;
    for opt in h.option_iter() {
        match opt {
            Ok(o) => {
                walked += o.len();
                assert!(walked <= h.options_len());
            }
            Err(_) => break,
        }
    }
    if let Ok(r) = geneve::Repr::parse(&h) {
        let mut out = [0u8; 64];
        let n = r.emit(&mut out).expect("our options fit in 64 bytes");
        let g = geneve::Header::new_checked(&out[..n]).expect("emitted header parses");
        assert_eq!(geneve::Repr::parse(&g), Ok(r));
    }
}

/// OAM: message view, ack entries, probe, emit/parse roundtrip.
pub fn fuzz_oam(data: &[u8]) {
    let Ok(m) = oam::Message::new_checked(data) else {
        return;
    };
    assert!(m.len() <= data.len());
    let r = oam::Repr::parse(&m);
    let mut out = [0u8; oam::HEADER_LEN + oam::MAX_ACK_ENTRIES * oam::ACK_ENTRY_LEN];
    let n = r
        .emit(&mut out)
        .expect("any parsed message fits the largest buffer");
    assert_eq!(n, m.len());
    let m2 = oam::Message::new_checked(&out[..n]).expect("emitted message parses");
    assert_eq!(oam::Repr::parse(&m2), r);
    let n_acks = m.acks().count();
    assert_eq!(
        n_acks,
        if m.msg_type() == oam::MessageType::Ack {
            m.count()
        } else {
            0
        }
    );
    black_box(m.probe());
    black_box(m.handshake());
}

/// Overlay decapsulation: whatever succeeds returns ranges inside the input.
pub fn fuzz_overlay_decap(data: &[u8]) {
    for verify in [false, true] {
        if let Ok(d) = overlay::decap(data, verify) {
            assert!(d.inner.start <= d.inner.end && d.inner.end <= data.len());
            assert!(d.tag.start == d.inner.end && d.tag.end <= data.len());
            assert!(d.meta.geneve_off + geneve::HEADER_LEN <= d.inner.start);
            black_box(&data[d.inner]);
        }
    }
}

/// Structure-aware: the input drives a template and an inner frame; encap
/// then decap must give back the same inner bytes and metadata.
pub fn fuzz_encap_roundtrip(data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let Some((head, inner)) = rest.split_first_chunk::<40>() else {
        return;
    };
    let word = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let v6 = ctl & 1 != 0;
    let (src, dst): (core::net::IpAddr, core::net::IpAddr) = if v6 {
        (
            core::net::Ipv6Addr::from((u128::from(word(0)) << 96) | u128::from(word(4))).into(),
            core::net::Ipv6Addr::from(u128::from(word(8))).into(),
        )
    } else {
        (
            core::net::Ipv4Addr::from(word(0)).into(),
            core::net::Ipv4Addr::from(word(8)).into(),
        )
    };
    let mut cfg = overlay::TemplateConfig::new(
        ethernet::MacAddr([2, 0, 0, 0, 0, 1]),
        ethernet::MacAddr([2, 0, 0, 0, 0, 2]),
        src,
        dst,
    );
    cfg.secure = ctl & 2 != 0;
    cfg.udp_checksum_v4 = ctl & 4 != 0;
    cfg.vlan = (ctl & 8 != 0)
        .then(|| ethernet::VlanTag::from_tci(u16::from_be_bytes([head[12], head[13]])));
    cfg.vni = word(14) & geneve::MAX_VNI;
    cfg.tos = head[18];
    let t = overlay::OverlayTemplate::new(&cfg).expect("valid config");
    let p = overlay::EncapParams {
        flow: geneve::FlowOption {
            flow_id: word(20),
            seq: (u64::from(word(24)) << 32) | u64::from(word(28)),
            timestamp_ns: u64::from(word(32)),
        },
        entropy: word(36),
        oam: ctl & 16 != 0,
        security: geneve::SecurityOption {
            receiver_index: word(4),
            counter: u64::from(word(8)),
        },
    };
    let inner = &inner[..inner.len().min(1600)];
    let mut buf = [0u8; overlay::MAX_HEADER_LEN + 1600 + geneve::AEAD_TAG_LEN];
    let off = overlay::MAX_HEADER_LEN;
    buf[off..off + inner.len()].copy_from_slice(inner);
    let r = t.encap(&mut buf, off, inner.len(), &p).expect("fits");
    let out = &buf[r];
    let d = overlay::decap(out, true).expect("own encapsulation decapsulates");
    assert_eq!(&out[d.inner.clone()], inner);
    assert_eq!(d.meta.flow, Some(p.flow));
    assert_eq!(d.meta.oam, p.oam);
    assert_eq!(d.meta.vni, cfg.vni);
    assert_eq!(d.meta.security.is_some(), cfg.secure);
    let protocol = if p.oam {
        oam::OAM_PROTOCOL
    } else if cfg.secure {
        overlay::SEALED_PROTOCOL
    } else {
        cfg.inner_protocol
    };
    assert_eq!(d.meta.protocol, protocol);
    // Checksum of the whole frame is consistent between fast and reference sums.
    assert_eq!(checksum::data(out), checksum::data_reference(out));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::overlay::tests::{cfg_v4, cfg_v6, frame, params};
    use proptest::prelude::*;

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    /// Valid overlay frames (v4/v6, secure or not), then mutated: flipped bytes
    /// and truncation, so the parsers get past their first checks.
    fn mutated_overlay() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<bool>(),
            any::<bool>(),
            0usize..300,
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            any::<usize>(),
        )
            .prop_map(|(v6, secure, len, flips, cut)| {
                let mut c = if v6 { cfg_v6() } else { cfg_v4() };
                c.secure = secure;
                let t = overlay::OverlayTemplate::new(&c).unwrap();
                let mut b = frame(128, len, 16);
                let r = t.encap(&mut b, 128, len, &params()).unwrap();
                let mut o = b[r].to_vec();
                for (at, x) in flips {
                    let n = o.len();
                    o[at % n] ^= x;
                }
                let keep = o.len() - cut % 24.min(o.len());
                o.truncate(keep);
                o
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn ethernet_never_panics(d in bytes(64)) { fuzz_ethernet(&d) }
        #[test]
        fn ipv4_never_panics(d in bytes(128)) { fuzz_ipv4(&d) }
        #[test]
        fn ipv4_structured_never_panics(mut d in bytes(128), ihl in 5u8..16, len in 0u16..140) {
            d.resize(d.len().max(20), 0);
            d[0] = 0x40 | ihl;
            d[2..4].copy_from_slice(&len.to_be_bytes());
            fuzz_ipv4(&d);
            fuzz_icmp(&d);
        }
        #[test]
        fn ipv6_never_panics(mut d in bytes(128), v in any::<bool>()) {
            if v && !d.is_empty() { d[0] = 0x60 | (d[0] & 0x0f); }
            fuzz_ipv6(&d);
            fuzz_icmp(&d);
        }
        #[test]
        fn udp_never_panics(d in bytes(64)) { fuzz_udp(&d) }
        #[test]
        fn tcp_never_panics(d in bytes(64)) { fuzz_tcp(&d) }
        #[test]
        fn icmp_never_panics(d in bytes(128)) { fuzz_icmp(&d) }
        #[test]
        fn geneve_never_panics(mut d in bytes(96), words in 0u8..64) {
            if !d.is_empty() { d[0] = words; }
            fuzz_geneve(&d);
        }
        #[test]
        fn oam_never_panics(mut d in bytes(200), t in 0u8..5, count in 0u8..6) {
            if d.len() >= 3 { d[0] = 1; d[1] = t; d[2] = count; }
            fuzz_oam(&d);
        }
        #[test]
        fn decap_never_panics_on_random(d in bytes(200)) { fuzz_overlay_decap(&d) }
        #[test]
        fn decap_never_panics_on_mutated(d in mutated_overlay()) { fuzz_overlay_decap(&d) }
        #[test]
        fn encap_roundtrip_from_bytes(d in bytes(400)) { fuzz_encap_roundtrip(&d) }
    }
}
