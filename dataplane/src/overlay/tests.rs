use super::*;
use crate::montra::AckAggregator;

#[test]
fn wire_ids_are_stable_and_avoid_reserved() {
    assert_eq!(
        wire_flow_id("video-ac-direct"),
        wire_flow_id("video-ac-direct")
    );
    assert_ne!(wire_flow_id("a"), wire_flow_id("b"));
    assert_ne!(wire_flow_id(""), OAM_FLOW_ID);
}

#[test]
fn ack_entry_conversion_roundtrip() {
    // Receiver got tracker seqs 0..=4, 6 and 9: cum 5, bits for 6 (bit 0) and 9 (bit 3).
    let mut agg = AckAggregator::new(AckPolicy {
        every_packets: 1000,
        max_delay_ns: 0,
    });
    for s in [0u64, 1, 2, 3, 4, 6, 9] {
        agg.on_packet(s, 7, 10);
    }
    let info = agg.poll(10).unwrap();
    assert_eq!((info.cum, info.bitmap), (5, 0b1001));
    let e = info_to_entry(42, &info, 7, 0);
    // Wire: seqs from 1; 1..=5 received -> cum 5; wire 7 and 10 -> bits 1 and 4.
    assert_eq!((e.cum_seq, e.bitmap), (5, 0b1_0010));
    for wire_seq in [1u64, 5, 7, 10] {
        assert!(e.covers(wire_seq), "{wire_seq}");
    }
    for wire_seq in [6u64, 8, 9, 11] {
        assert!(!e.covers(wire_seq), "{wire_seq}");
    }
    let back = entry_to_info(&e);
    assert_eq!((back.cum, back.bitmap), (info.cum, info.bitmap));
    // A peer that sets wire bit 0 (seq cum+1 received) is normalised.
    let odd = AckEntry {
        cum_seq: 5,
        bitmap: 0b111,
        ..e
    };
    let n = entry_to_info(&odd);
    assert_eq!((n.cum, n.bitmap), (8, 0));
    let all = AckEntry {
        cum_seq: u64::MAX - 3,
        bitmap: u64::MAX,
        ..e
    };
    assert_eq!(entry_to_info(&all).cum, u64::MAX);
}

/// Site A of one uplink and one peer, C (no classes nor flows).
const SITE_A_PEER_C: &str = r#"
[site]
name = "A"
vni = 1
lan_interface = "lan0"
lan_prefixes = ["198.18.0.0/24"]

[security]
mode = "off"

[[uplinks]]
name = "isp1"
interface = "up0"
local_address = "198.18.200.1"
capacity_mbps = 1000
gateway_mac = "02:00:00:00:00:fe"
backend = "af_xdp"

[[peers]]
name = "C"
prefixes = ["198.19.0.0/24"]
gateways = ["198.18.200.3"]
"#;

#[test]
fn colliding_wire_ids_are_refused_with_both_names() {
    // FNV-1a 32 of these two ids is 0xE2E1B2CD.
    assert_eq!(wire_flow_id("f6059"), wire_flow_id("f264602"));
    let t = format!(
        "{SITE_A_PEER_C}{}",
        r#"
[[classes]]
id = "k0"
source = "A"
destination = "C"
type = "video"
overflow = "drop"

[[classes.rules]]
protocol = "udp"

[[flows]]
id = "ok"
class = "k0"
route = ["A", "C"]

[[flows]]
id = "f264602"
class = "k0"
route = ["A", "C"]

[[flows]]
id = "f6059"
class = "k0"
route = ["A", "C"]
"#
    );
    let cfg = Config::from_toml_str(&t, "collide.toml").expect("config");
    match Gateway::new(&cfg, Settings::default(), Vec::new(), 0) {
        Err(GatewayError::FlowIdCollision(a, b)) => {
            assert_eq!((a.as_str(), b.as_str()), ("f264602", "f6059"));
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("collision accepted"),
    }
}

/// Three peers on an emulated line: B is a neighbour on `up0`, D a
/// neighbour on `up1`, C (behind B) is reached by no uplink. With routes
/// resolved, C has no direct path (its packets, probes and handshakes went
/// to B's link with C's address before), only detours through B and D;
/// without any routes (in-process tests) every peer keeps the first pair.
#[test]
fn a_peer_no_uplink_reaches_has_detours_only() {
    let t = r#"
[site]
name = "A"
vni = 1
lan_interface = "lan0"
lan_prefixes = ["198.18.0.0/24"]

[security]
mode = "off"

[[uplinks]]
name = "l0"
interface = "up0"
local_address = "198.19.1.1"
capacity_mbps = 10
backend = "af_xdp"

[[uplinks]]
name = "l1"
interface = "up1"
local_address = "198.19.2.1"
capacity_mbps = 10
backend = "af_xdp"

[[peers]]
name = "B"
prefixes = ["198.18.1.0/24"]
gateways = ["198.19.1.2"]

[[peers]]
name = "C"
prefixes = ["198.18.2.0/24"]
gateways = ["198.19.3.2"]

[[peers]]
name = "D"
prefixes = ["198.18.3.0/24"]
gateways = ["198.19.2.2"]
"#;
    let cfg = Config::from_toml_str(t, "line.toml").expect("config");
    let route = |uplink: usize, gw: [u8; 4]| PeerRoute {
        uplink,
        gateway: IpAddr::V4(Ipv4Addr::from(gw)),
        dst_mac: MacAddr([2, 0, 0, 0, 0, 9]),
    };
    let settings = Settings {
        peer_routes: vec![
            vec![route(0, [198, 19, 1, 2])],
            Vec::new(),
            vec![route(1, [198, 19, 2, 2])],
        ],
        detours: true,
        ..Settings::default()
    };
    let gw = Gateway::new(&cfg, settings, Vec::new(), 0).expect("gateway");
    let kinds = |p: usize| -> Vec<PathKind> { gw.peers[p].paths.iter().map(|x| x.kind).collect() };
    assert_eq!(kinds(0), vec![PathKind::Direct, PathKind::Via(2)]);
    assert_eq!(kinds(1), vec![PathKind::Via(0), PathKind::Via(2)]);
    assert!(
        gw.peers[1]
            .paths
            .iter()
            .all(|x| x.remote != IpAddr::V4(Ipv4Addr::new(198, 19, 3, 2)))
    );
    assert_eq!(kinds(2), vec![PathKind::Direct, PathKind::Via(0)]);
    // Its active path is a detour.
    let active = gw.peers[1].active.expect("a path");
    assert!(matches!(gw.peers[1].paths[active].kind, PathKind::Via(_)));
    // No routes resolved at all: every peer has the first (uplink, address) pair.
    let gw = Gateway::new(
        &cfg,
        Settings {
            detours: true,
            ..Settings::default()
        },
        Vec::new(),
        0,
    )
    .expect("gateway");
    assert_eq!(gw.peers[1].paths[0].kind, PathKind::Direct);
    assert_eq!(
        gw.peers[1].paths[0].remote,
        IpAddr::V4(Ipv4Addr::new(198, 19, 3, 2))
    );
}

/// Static neighbours (the kernel's, at start): found whatever their order
/// and number (a sorted table, searched by halves: a miss in the learned
/// table no longer scans them all), the first of two entries for one
/// address kept, anything else to the LAN next hop.
#[test]
fn static_neighbours_are_found_in_any_order() {
    let cfg = Config::from_toml_str(SITE_A_PEER_C, "neigh.toml").expect("config");
    let ip = |i: u32| IpAddr::V4(core::net::Ipv4Addr::from(0xC612_0000 + i));
    let mac = |i: u32| {
        let b = i.to_be_bytes();
        MacAddr([2, 0, b[0], b[1], b[2], b[3]])
    };
    // 198.18.0.0-198.18.11.183: the first 256 in the LAN prefix (learned
    // too), the others not (found in the static table only); backwards.
    let n = 3000u32;
    let mut neighbours: Vec<_> = (0..n).rev().map(|i| (ip(i), mac(i))).collect();
    neighbours.push((ip(7), mac(99_999)));
    let router = MacAddr([2, 0, 0, 0, 0, 0xfe]);
    let settings = Settings {
        neighbours,
        lan_next_hop_mac: router,
        ..Settings::default()
    };
    let g = Gateway::new(&cfg, settings, Vec::new(), 0).expect("gateway");
    for i in 0..n {
        assert_eq!(g.lan_mac_of(ip(i)), mac(i), "neighbour {i}");
    }
    assert_eq!(g.lan_mac_of(ip(n)), router);
    assert_eq!(
        g.lan_mac_of(IpAddr::V6(core::net::Ipv6Addr::LOCALHOST)),
        router
    );
}
