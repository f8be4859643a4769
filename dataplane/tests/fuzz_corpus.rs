//! The seed corpus of the dataplane's fuzz targets (`fuzz/corpus/<target>/`):
//! a few valid and edge-case inputs per target, made here. The test fails
//! when the committed corpus differs from what this file makes; rewrite it
//! with `MONGATE_WRITE_CORPUS=1 cargo test --release -p mongate-dataplane
//! --test fuzz_corpus`. Every seed (and every `crash-*` reproducer kept
//! there) also runs through its target's body here, on stable.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use mongate_dataplane::fuzz::{self, sync_corpus};
use mongate_dataplane::shm::msg::{
    Assignment, Command, FLOW_TEL_PER_MSG, FlowTelemetry, PlanChunk, PlanEntry, Telemetry,
};
use mongate_dataplane::wire::ethernet::{MacAddr, VlanTag};
use mongate_dataplane::wire::geneve::FlowOption;
use mongate_dataplane::wire::oam::{self, AckEntries, AckEntry, Probe};
use mongate_dataplane::wire::overlay::{EncapParams, OverlayTemplate, TemplateConfig};
use mongate_dataplane::wire::{fuzz as wfuzz, icmp, ipv4, udp};

type Seeds = Vec<(&'static str, Vec<u8>)>;

/// A fuzz target: its name (the corpus directory), body and seeds.
struct Target {
    name: &'static str,
    body: fn(&[u8]),
    seeds: Seeds,
}

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn template(v6: bool, secure: bool, vlan: bool) -> OverlayTemplate {
    let (src, dst): (IpAddr, IpAddr) = if v6 {
        (
            "2001:db8:100::1".parse::<Ipv6Addr>().unwrap().into(),
            "2001:db8:104::1".parse::<Ipv6Addr>().unwrap().into(),
        )
    } else {
        (
            Ipv4Addr::new(198, 18, 100, 1).into(),
            Ipv4Addr::new(198, 18, 104, 1).into(),
        )
    };
    let mut c = TemplateConfig::new(
        MacAddr([2, 0, 0, 0, 0, 1]),
        MacAddr([2, 0, 0, 0, 0, 2]),
        src,
        dst,
    );
    c.vni = 4242;
    c.secure = secure;
    c.udp_checksum_v4 = true;
    c.vlan = vlan.then(|| VlanTag::from_tci(100));
    OverlayTemplate::new(&c).unwrap()
}

/// An inner Ethernet/IPv4/UDP frame with `n` payload bytes.
fn inner_frame(n: usize) -> Vec<u8> {
    let mut f = vec![2, 0x10, 0, 0, 0, 0, 2, 0xAA, 0, 0, 0, 1, 0x08, 0x00];
    let mut ip = vec![0u8; 28 + n];
    ipv4::Repr {
        src: Ipv4Addr::new(198, 18, 10, 5),
        dst: Ipv4Addr::new(198, 18, 30, 7),
        protocol: 17,
        payload_len: 8 + n,
        ttl: 64,
        tos: 0,
        ident: 1,
        dont_frag: true,
    }
    .emit(&mut ip)
    .unwrap();
    udp::Repr {
        src_port: 40000,
        dst_port: 5000,
    }
    .emit(&mut ip[20..], n)
    .unwrap();
    f.extend_from_slice(&ip);
    f
}

fn encap(t: &OverlayTemplate, inner: &[u8], p: &EncapParams) -> Vec<u8> {
    let hl = t.header_len();
    let mut b = vec![0u8; hl + inner.len() + 16];
    b[hl..hl + inner.len()].copy_from_slice(inner);
    let r = t.encap(&mut b, hl, inner.len(), p).unwrap();
    b[r].to_vec()
}

fn data_params() -> EncapParams {
    EncapParams {
        flow: FlowOption {
            flow_id: 0x1234_5678,
            seq: 42,
            timestamp_ns: 1_000_000,
        },
        entropy: 7,
        ..EncapParams::default()
    }
}

fn oam_params() -> EncapParams {
    EncapParams {
        oam: true,
        ..data_params()
    }
}

fn probe() -> Probe {
    Probe {
        path_id: 0x0001_0002,
        probe_seq: 3,
        send_ts_ns: 1_000_000_000,
        echo_ts_ns: 0,
        nonce: 0x0123_4567_89ab_cdef,
    }
}

fn oam_msg(r: oam::Repr<'_>) -> Vec<u8> {
    let mut b = vec![0u8; r.len()];
    r.emit(&mut b).unwrap();
    b
}

fn acks() -> Vec<u8> {
    let e = AckEntry {
        flow_id: 0x1234_5678,
        ack_delay_ns: 1000,
        cum_seq: 100,
        bitmap: 0b1011,
        echo_ts_ns: 5,
        received: 103,
        lost: 1,
    };
    oam_msg(oam::Repr::Ack(AckEntries::Values(&[
        e,
        AckEntry::default(),
    ])))
}

fn wire_targets() -> Vec<Target> {
    let inner = inner_frame(32);
    let v4 = encap(&template(false, false, false), &inner, &data_params());
    let v6 = encap(&template(true, false, false), &inner, &data_params());
    let vlan = encap(&template(false, false, true), &inner, &data_params());
    let secure = encap(&template(false, true, false), &inner, &data_params());
    let probe_msg = oam_msg(oam::Repr::Probe(probe()));
    let echo_msg = oam_msg(oam::Repr::ProbeEcho(probe().echo(2_000_000_000)));
    let oam_v4 = encap(&template(false, false, false), &probe_msg, &oam_params());
    let ack_v6 = encap(&template(true, false, false), &acks(), &oam_params());
    let mut ptb = vec![0u8; icmp::V4_MAX_ERROR_LEN];
    let n = icmp::emit_frag_needed_v4(
        &mut ptb,
        Ipv4Addr::new(198, 18, 10, 254),
        &inner[14..],
        1400,
        64,
    )
    .unwrap();
    ptb.truncate(n);
    let mut not_geneve = v4.clone();
    not_geneve[36..38].copy_from_slice(&53u16.to_be_bytes());
    let mut ip_opts = v4[14..34].to_vec();
    ip_opts[0] = 0x46; // IHL 6: 4 bytes of options
    ip_opts.extend_from_slice(&[1, 1, 1, 0]);
    ip_opts[2..4].copy_from_slice(&24u16.to_be_bytes());
    let geneve_of = |f: &[u8], off: usize| f[off..].to_vec();
    let roundtrip = |ctl: u8, inner_len: usize| {
        let mut b = vec![ctl];
        b.extend((0u8..40).map(|i| i.wrapping_mul(37).wrapping_add(ctl)));
        b.extend(inner_frame(inner_len));
        b
    };
    vec![
        Target {
            name: "ethernet",
            body: wfuzz::fuzz_ethernet,
            seeds: vec![
                ("v4-data", v4.clone()),
                ("vlan", vlan.clone()),
                ("runt", v4[..13].to_vec()),
            ],
        },
        Target {
            name: "ipv4",
            body: wfuzz::fuzz_ipv4,
            seeds: vec![
                ("outer", v4[14..].to_vec()),
                ("options", ip_opts),
                ("inner", inner[14..].to_vec()),
                ("truncated", v4[14..30].to_vec()),
            ],
        },
        Target {
            name: "ipv6",
            body: wfuzz::fuzz_ipv6,
            seeds: vec![("outer", v6[14..].to_vec()), ("short", v6[14..50].to_vec())],
        },
        Target {
            name: "udp",
            body: wfuzz::fuzz_udp,
            seeds: vec![
                ("outer", v4[34..].to_vec()),
                ("header", v4[34..42].to_vec()),
            ],
        },
        Target {
            name: "icmp",
            body: wfuzz::fuzz_icmp,
            seeds: vec![
                ("frag-needed", ptb.clone()),
                ("message", ptb[20..].to_vec()),
                ("offending", inner[14..].to_vec()),
            ],
        },
        Target {
            name: "geneve",
            body: wfuzz::fuzz_geneve,
            seeds: vec![
                ("data", geneve_of(&v4, 42)),
                ("oam", geneve_of(&oam_v4, 42)),
                ("secure", geneve_of(&secure, 42)),
            ],
        },
        Target {
            name: "oam",
            body: wfuzz::fuzz_oam,
            seeds: vec![
                ("probe", probe_msg.clone()),
                ("echo", echo_msg),
                ("acks", acks()),
                ("ack-none", vec![1, 1, 0, 0]),
                ("ack-count-beyond", vec![1, 1, 255, 0, 0, 0]),
                ("probe-padded", {
                    let mut p = probe_msg;
                    p.resize(200, 0);
                    p
                }),
            ],
        },
        Target {
            name: "overlay_decap",
            body: wfuzz::fuzz_overlay_decap,
            seeds: vec![
                ("v4-data", v4),
                ("v6-data", v6),
                ("vlan", vlan),
                ("secure", secure),
                ("oam-probe", oam_v4),
                ("oam-acks-v6", ack_v6),
                ("not-geneve", not_geneve),
            ],
        },
        Target {
            name: "encap_roundtrip",
            body: wfuzz::fuzz_encap_roundtrip,
            seeds: vec![
                ("v4", roundtrip(0, 32)),
                ("v6-secure-vlan", roundtrip(1 | 2 | 8, 64)),
                ("oam-udp-sum", roundtrip(4 | 16, 0)),
            ],
        },
    ]
}

fn msg_bytes(m: &mongate_dataplane::shm::msg::Msg) -> Vec<u8> {
    let mut b = Vec::with_capacity(fuzz::MSG_BYTES);
    b.extend_from_slice(&m.kind.to_ne_bytes());
    b.extend_from_slice(&m.len.to_ne_bytes());
    b.extend_from_slice(&m.epoch.to_ne_bytes());
    for w in m.w {
        b.extend_from_slice(&w.to_ne_bytes());
    }
    b
}

fn ring_seeds() -> Seeds {
    let mut entries = [PlanEntry::Class {
        class: 0,
        sessions: 0,
    }; 9];
    entries[0] = PlanEntry::Class {
        class: 1,
        sessions: 4,
    };
    entries[1] = PlanEntry::Flow {
        flow: 2,
        rate_mbps: 1.5,
        weight: 0.02,
        floored: false,
    };
    let chunk = Command::PlanChunk(PlanChunk {
        epoch: 7,
        index: 0,
        total: 1,
        count: 2,
        entries,
    });
    let commit = Command::PlanCommit {
        epoch: 7,
        chunks: 1,
        entries: 2,
        checksum: 0xdead_beef,
    };
    let mut items = [Assignment::default(); 30];
    items[0] = Assignment { flow: 1, path: 2 };
    let assign = Command::Assign { count: 1, items };
    let probe = Command::Probe {
        id: 9,
        path: 0x0001_0000,
        count: 3,
        interval_ns: 1_000_000,
    };
    let mut flows = [FlowTelemetry::default(); FLOW_TEL_PER_MSG];
    flows[0] = FlowTelemetry {
        flow: 1,
        path: 2,
        rate_bps: 1_000_000,
        acks: 10,
        losses: 1,
        queue_drops: 0,
        tx_bytes: 12_500,
    };
    let tel = Telemetry::Flows {
        count: 1,
        items: flows,
    };
    let mut too_many = msg_bytes(&assign.encode());
    too_many[4..8].copy_from_slice(&1000u32.to_ne_bytes());
    let mut unknown_kind = msg_bytes(&probe.encode());
    unknown_kind[..4].copy_from_slice(&999u32.to_ne_bytes());
    vec![
        ("plan-chunk", msg_bytes(&chunk.encode())),
        ("plan-commit", msg_bytes(&commit.encode())),
        ("assign", msg_bytes(&assign.encode())),
        ("probe", msg_bytes(&probe.encode())),
        ("telemetry-flows", msg_bytes(&tel.encode())),
        ("count-too-large", too_many),
        ("unknown-kind", unknown_kind),
        ("zeros", vec![0u8; fuzz::MSG_BYTES]),
    ]
}

fn example(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/examples")
            .join(name),
    )
    .unwrap()
}

fn config_seeds() -> Seeds {
    let minimal = b"[site]\nname = \"A\"\nvni = 1\nlan_interface = \"lan0\"\nlan_prefixes = [\"10.0.0.0/24\"]\n\n[[uplinks]]\nname = \"u\"\ninterface = \"up0\"\nlocal_address = \"192.0.2.1\"\ncapacity_mbps = 10\n\n[security]\nmode = \"off\"\n".to_vec();
    vec![
        ("site-a", example("site-a.toml")),
        (
            "triangle-paper-site-a",
            example("triangle-paper-site-a.toml"),
        ),
        ("triangle-site-b", example("triangle/site-b.toml")),
        ("minimal", minimal.clone()),
        (
            "montra",
            [
                minimal,
                b"\n[montra]\nnear_target_gain = 1\nramp = 0.1\ncap_factor = 3\nbest_effort_mbps = 2.5\n"
                    .to_vec(),
            ]
            .concat(),
        ),
        (
            "bad-prefix",
            b"[site]\nname = \"A\"\nlan_prefixes = [\"10.0.0.1/24\"]\n".to_vec(),
        ),
        ("not-toml", b"[site\nname = ".to_vec()),
    ]
}

fn plan_seeds() -> Seeds {
    vec![
        (
            "plan",
            b"epoch = 9\n[[classes]]\nid = \"bulk-ac\"\nsessions = 4\n[[flows]]\nid = \"bulk-ac-direct\"\nrate_mbps = 1\nweight = 2\n".to_vec(),
        ),
        ("empty", b"epoch = 1\n".to_vec()),
        (
            "unknown-flow",
            b"epoch = 2\n[[flows]]\nid = \"nope\"\nrate_mbps = 1\nweight = 0.1\n".to_vec(),
        ),
        (
            "duplicate-class",
            b"epoch = 3\n[[classes]]\nid = \"bulk-ac\"\nsessions = 1\n[[classes]]\nid = \"bulk-ac\"\nsessions = 2\n".to_vec(),
        ),
        ("negative-epoch", b"epoch = -1\n".to_vec()),
        (
            "nan-rate",
            b"epoch = 4\n[[flows]]\nid = \"bulk-ac-direct\"\nrate_mbps = nan\nweight = 1\n".to_vec(),
        ),
    ]
}

#[test]
fn seed_corpus_is_committed_and_runs() {
    let write = std::env::var_os("MONGATE_WRITE_CORPUS").is_some();
    let mut targets = wire_targets();
    targets.push(Target {
        name: "ring_msg",
        body: fuzz::fuzz_ring_msg,
        seeds: ring_seeds(),
    });
    targets.push(Target {
        name: "site_config",
        body: fuzz::fuzz_site_config,
        seeds: config_seeds(),
    });
    targets.push(Target {
        name: "plan_file",
        body: fuzz::fuzz_plan_file,
        seeds: plan_seeds(),
    });
    let frame = inner_frame(32);
    let mut short_snap = frame.clone();
    short_snap[0] = 2; // the body's snap length: 32 bytes
    targets.push(Target {
        name: "capture_frame",
        body: fuzz::fuzz_capture_frame,
        seeds: vec![
            ("inner", frame.clone()),
            ("short-snap", short_snap),
            (
                "pcap-file",
                mongate_dataplane::mirror::pcap::file_of(&[frame]),
            ),
        ],
    });
    let mut wrong = Vec::new();
    for t in &targets {
        for name in sync_corpus(&corpus_dir(t.name), &t.seeds, t.body, write).unwrap() {
            wrong.push(format!("{}/{name}", t.name));
        }
    }
    assert!(
        wrong.is_empty(),
        "fuzz/corpus differs from the generator ({wrong:?}): rerun with MONGATE_WRITE_CORPUS=1"
    );
}
