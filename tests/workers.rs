//! Gateways of two workers on two queues (issue 13): the MON triangle in
//! network namespaces, every gateway interface with two queues, each
//! gateway `start_gateway` with `workers = 2`.
//!
//! - `sessions_keep_their_order_and_bytes`: eight UDP sessions of class
//!   A->C (sequence numbers in their payload) from A's LAN host to C's,
//!   captured on C's host interface: no session's datagrams arrive out of
//!   order; a 2 MiB TCP transfer arrives byte-exact (sha256); both workers
//!   of A send on the uplinks and both workers of C deliver to the LAN
//!   (the class's two flows belong to different workers); the flows' acks
//!   reach the workers that run their controllers; nothing is lost in the
//!   handoff rings.
//!
//! The rates: `demo_two_workers_per_gateway_hold_the_plan` in tests/demo.rs.

mod common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use mongate_dataplane::app::{GatewayConfig, RunningDataplane, start_gateway};
use mongate_dataplane::bpf::XdpMode;
use mongate_dataplane::config::Config;
use mongate_dataplane::stats::flows::{FlowStatsRegion, flows_path};
use mongate_dataplane::worker::IdlePolicy;
use mongate_testbed::capture::{Direction, Tap, TapConfig};
use mongate_testbed::topology::triangle::{PORT_AC, PORT_TCP_DIRECT, triangle_overlay};
use mongate_testbed::{PlanSpec, Sites, SitesTopology};

const PREFIX: &str = "mgwk";
/// UDP sessions of class A->C.
const SESSIONS: u16 = 8;
/// Datagrams per session.
const PER_SESSION: u64 = 3000;
/// Per-session offered rate, datagrams/s (200-byte payloads: ~0.6 Mbit/s).
const PER_SESSION_PPS: u64 = 400;

struct Overlay {
    topo: SitesTopology,
    gws: Vec<(String, RunningDataplane)>,
}

impl Drop for Overlay {
    fn drop(&mut self) {
        self.gws.clear();
    }
}

fn plan() -> PlanSpec {
    PlanSpec {
        epoch: 1,
        classes: vec![
            ("A->C".into(), u32::from(SESSIONS)),
            ("tcp-A->C".into(), 1),
            ("tcp-C->A".into(), 1),
        ],
        // Per admitted session, Mbit/s: A->C's 8 sessions split over its
        // two flows (about 5 direct, 3 via B).
        flows: vec![
            ("A->C/direct".into(), 0.6, 1.0),
            ("A->C/via-B".into(), 0.3, 1.0),
            ("tcp-A->C".into(), 4.0, 1.0),
            ("tcp-C->A".into(), 1.0, 1.0),
        ],
    }
}

fn host_v4(topo: &SitesTopology, site: &str) -> Ipv4Addr {
    topo.site(site).unwrap().host_if().v4.unwrap().addr
}

/// Workers per gateway (and queues per interface): 2, or `MGWK_WORKERS`
/// (1 compares a gateway of one worker on the same traffic).
fn workers() -> u16 {
    std::env::var("MGWK_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

fn start(prefix: &str) -> Overlay {
    let mut s = Sites::triangle().prefix(prefix);
    s.disable_offloads = true;
    s.queues = workers();
    let topo = s.build().expect("build triangle");
    let spec = triangle_overlay(Some(plan()));
    let mut gws = Vec::new();
    for site in ["A", "B", "C"] {
        let text = topo.site_config(site, &spec).unwrap();
        let cfg = Config::from_toml_str(&text, &format!("{site}.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let mut gc = GatewayConfig::new(cfg);
        gc.name = format!("{prefix}{}-{site}", std::process::id());
        gc.xdp_mode = XdpMode::Native;
        gc.control = false;
        gc.workers = usize::from(workers());
        gc.cores = vec![1, 0];
        gc.idle = IdlePolicy::GATEWAY;
        let name = gc.name.clone();
        let dp = topo
            .site(site)
            .unwrap()
            .gw_ns
            .run_in(move || start_gateway(&gc))
            .expect("enter gw ns")
            .unwrap_or_else(|e| panic!("gateway {site}: {e:#}"));
        gws.push((name, dp));
    }
    Overlay { topo, gws }
}

/// Waits (at most 15 s, 20 ms polls) until gateway `name` publishes every
/// direct path up and active.
fn wait_direct_paths(name: &str) {
    use mongate_dataplane::stats::gateway::state;
    let t0 = Instant::now();
    loop {
        let ok = FlowStatsRegion::open(&flows_path(name))
            .ok()
            .and_then(|r| r.gateway())
            .is_some_and(|g| {
                let direct: Vec<_> = g
                    .paths
                    .iter()
                    .filter(|p| p.via == u64::from(u16::MAX))
                    .collect();
                !direct.is_empty() && direct.iter().all(|p| p.active && p.state == state::UP)
            });
        if ok {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "{name}: direct paths not up and active within 15 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the capture at C's host saw of the UDP sessions.
#[derive(Default)]
struct Order {
    /// Per source port: last sequence number, datagrams, inversions.
    sessions: HashMap<u16, (u64, u64, u64)>,
}

impl Order {
    fn frame(&mut self, f: &[u8]) {
        // Ethernet (untagged) + IPv4 (no options in our traffic) + UDP.
        if f.len() < 14 + 20 + 8 + 8 || f[12..14] != [0x08, 0x00] || f[14] != 0x45 || f[23] != 17 {
            return;
        }
        let udp = &f[34..];
        let (sport, dport) = (
            u16::from_be_bytes([udp[0], udp[1]]),
            u16::from_be_bytes([udp[2], udp[3]]),
        );
        if dport != PORT_AC {
            return;
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&udp[8..16]);
        let seq = u64::from_le_bytes(b);
        let e = self.sessions.entry(sport).or_insert((0, 0, 0));
        if e.1 > 0 && seq <= e.0 {
            e.2 += 1;
            if e.2 <= 5 {
                eprintln!("session {sport}: {seq} after {}", e.0);
            }
        }
        e.0 = e.0.max(seq);
        e.1 += 1;
    }
}

/// Sends `PER_SESSION` numbered datagrams on each of `SESSIONS` sockets of
/// A's host to C's host, round robin, paced; returns the count sent.
fn send_sessions(ov: &Overlay) -> u64 {
    let c_ip = host_v4(&ov.topo, "C");
    ov.topo
        .site("A")
        .unwrap()
        .lan_ns
        .run_in(move || -> std::io::Result<u64> {
            let socks: Vec<UdpSocket> = (0..SESSIONS)
                .map(|i| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 41000 + i)))
                .collect::<Result<_, _>>()?;
            let mut buf = [0u8; 200];
            let t0 = Instant::now();
            let mut sent = 0;
            for seq in 1..=PER_SESSION {
                for s in &socks {
                    buf[..8].copy_from_slice(&seq.to_le_bytes());
                    // A full socket buffer is the host's loss, not ours.
                    if s.send_to(&buf, (c_ip, PORT_AC)).is_ok() {
                        sent += 1;
                    }
                }
                let due = Duration::from_micros(seq * 1_000_000 / PER_SESSION_PPS);
                if let Some(wait) = due.checked_sub(t0.elapsed()) {
                    std::thread::sleep(wait);
                }
                if t0.elapsed() > Duration::from_secs(30) {
                    break;
                }
            }
            Ok(sent)
        })
        .unwrap()
        .expect("send")
}

#[test]
fn sessions_keep_their_order_and_bytes() {
    if common::skip("sessions_keep_their_order_and_bytes") {
        return;
    }
    let _g = common::net_lock();
    let ov = start(PREFIX);
    let c = ov.topo.site("C").unwrap();
    let cfg = TapConfig {
        snaplen: 64,
        direction: Direction::In,
        limit: Duration::from_secs(60),
    };
    let tap = Tap::start(
        &c.lan_ns,
        &c.host_if().ifname,
        cfg,
        Order::default(),
        |o, f, _| o.frame(f),
    )
    .expect("tap at C's host");
    // A gateway started before its peers saw their paths silent and went
    // a detour; the traffic starts once every gateway is back on its
    // direct paths (a failback under traffic is a path event, not what
    // this test is about: docs/overlay.md).
    for (name, _) in &ov.gws {
        wait_direct_paths(name);
    }
    let sent = send_sessions(&ov);
    let data = common::payload(2 << 20, 0x5EED_0F0D_3E00);
    let (got, _) = common::upload(&ov.topo, "A", "C", PORT_TCP_DIRECT, &data);
    let (order, st) = tap.stop().expect("tap");
    println!(
        "sent {sent} datagrams on {SESSIONS} sessions; captured {} frames at C's host ({} kernel drops)",
        st.frames, st.kernel_drops
    );
    assert_eq!(got.len(), data.len(), "TCP: length");
    assert_eq!(common::sha256(&got), common::sha256(&data), "TCP: sha256");
    assert_eq!(
        order.sessions.len(),
        usize::from(SESSIONS),
        "every session reached C"
    );
    for (port, (last, n, inversions)) in &order.sessions {
        println!("session from port {port}: {n} datagrams, last {last}, {inversions} out of order");
    }
    for (port, (_, n, inversions)) in &order.sessions {
        assert_eq!(*inversions, 0, "session {port}: reordered");
        assert!(*n > PER_SESSION / 4, "session {port}: {n} datagrams only");
    }
    // Both workers moved packets: A's send on the uplinks, C's deliver.
    let snap = |i: usize| ov.gws[i].1.snapshot();
    let (a, cc) = (snap(0), snap(2));
    assert_eq!(a.len(), 2, "A runs two workers");
    for (w, s) in a.iter().enumerate() {
        let uplinks: u64 = s.tx_packets.iter().skip(1).take(2).sum();
        println!(
            "A worker {w}: LAN rx {}, uplinks tx {uplinks}",
            s.rx_packets[0]
        );
        assert!(uplinks > 500, "A worker {w} sent {uplinks} packets");
    }
    for (w, s) in cc.iter().enumerate() {
        println!("C worker {w}: LAN tx {}", s.tx_packets[0]);
        assert!(
            s.tx_packets[0] > 500,
            "C worker {w} delivered {}",
            s.tx_packets[0]
        );
    }
    for (name, dp) in &ov.gws {
        for (w, s) in dp.snapshot().iter().enumerate() {
            let full = s.drops.get("handoff_full").copied().unwrap_or(0);
            assert_eq!(full, 0, "{name} worker {w}: handoff ring full");
        }
    }
    // The flows' acks reached the worker running each flow's controller.
    let totals = FlowStatsRegion::open(&flows_path(&ov.gws[0].0))
        .unwrap()
        .totals();
    for id in ["A->C/direct", "A->C/via-B", "tcp-A->C"] {
        let f = &totals.iter().find(|(i, _)| i == id).unwrap().1;
        println!(
            "{id}: sent {}, acked {}, lost {}, rate {:.0} of target {:.0} units/s",
            f.tx_packets, f.acked, f.lost, f.rate_pps, f.target_pps
        );
        assert!(f.tx_packets > 500, "{id}: sent {}", f.tx_packets);
        assert!(
            f.acked * 10 > f.tx_packets * 9,
            "{id}: acked {} of {}",
            f.acked,
            f.tx_packets
        );
    }
}

/// A gateway of two workers on interfaces of one queue is refused at
/// start, naming the interface and the fix (worker 1 would have no queue).
#[test]
fn two_workers_need_two_queues() {
    if common::skip("two_workers_need_two_queues") {
        return;
    }
    let _g = common::net_lock();
    let mut s = Sites::triangle().prefix("mgwkq");
    s.disable_offloads = true;
    let topo = s.build().expect("build triangle");
    let spec = triangle_overlay(Some(plan()));
    let text = topo.site_config("A", &spec).unwrap();
    let cfg = Config::from_toml_str(&text, "A.toml").unwrap();
    let mut gc = GatewayConfig::new(cfg);
    gc.name = format!("mgwkq{}-A", std::process::id());
    gc.xdp_mode = XdpMode::Native;
    gc.control = false;
    gc.workers = 2;
    let err = topo
        .site("A")
        .unwrap()
        .gw_ns
        .run_in(move || start_gateway(&gc).map(|_| ()))
        .expect("enter gw ns")
        .expect_err("refused");
    let msg = format!("{err:#}");
    println!("{msg}");
    assert!(
        msg.contains("1 receive queue(s)") && msg.contains("ethtool -L"),
        "{msg}"
    );
}
