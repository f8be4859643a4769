//! The overlay gateway on real packets: the MON triangle in network
//! namespaces, one `mongate` gateway per site (AF_XDP on the LAN and on
//! every WAN link), real hosts behind them.
//!
//! - ping and a TCP transfer (sha256 checked) between LAN hosts of A and C,
//!   directly and through the waypoint B, with the hosts' 1500-byte MTU
//!   larger than the overlay path carries (ICMP "fragmentation needed" from
//!   the gateway makes TCP find the path MTU);
//! - tshark on a WAN link decodes every packet as GENEVE, none malformed;
//! - bad input from the WAN (garbage, unknown critical option) is counted;
//! - traffic no plan admits is paced at the site file's `[montra]
//!   best_effort_mbps`.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use mongate_dataplane::app::{GatewayConfig, RunningDataplane, start_gateway};
use mongate_dataplane::bpf::XdpMode;
use mongate_dataplane::config::Config;
use mongate_dataplane::stats::flows::{FlowStatsRegion, flows_path};
use mongate_testbed::topology::triangle::{
    PORT_TCP_DIRECT, PORT_TCP_VIA_B, tcp_plan, triangle_overlay,
};
use mongate_testbed::traffic::{UdpReceiver, UdpSender};
use mongate_testbed::{Sites, SitesTopology, tshark};

struct Overlay {
    topo: SitesTopology,
    gws: Vec<(String, RunningDataplane)>,
}

impl Drop for Overlay {
    fn drop(&mut self) {
        // Gateways first (XDP detached inside their namespaces' lifetime).
        self.gws.clear();
    }
}

fn host_v4(topo: &SitesTopology, site: &str) -> Ipv4Addr {
    topo.site(site).unwrap().host_if().v4.unwrap().addr
}

fn start(prefix: &str, mbps: f64) -> Overlay {
    start_with(prefix, mbps, "")
}

/// [`start`], with `extra` appended to every site file.
fn start_with(prefix: &str, mbps: f64, extra: &str) -> Overlay {
    let mut s = Sites::triangle().prefix(prefix);
    s.disable_offloads = true;
    let topo = s.build().expect("build triangle");
    let spec = triangle_overlay(Some(tcp_plan(1, mbps)));
    let mut gws = Vec::new();
    for site in ["A", "B", "C"] {
        let text = topo.site_config(site, &spec).unwrap() + extra;
        let cfg = Config::from_toml_str(&text, &format!("{site}.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let mut gc = GatewayConfig::new(cfg);
        gc.name = format!("{prefix}-{site}");
        gc.xdp_mode = XdpMode::Native;
        gc.control = false;
        let dp = topo
            .site(site)
            .unwrap()
            .gw_ns
            .run_in(move || start_gateway(&gc))
            .expect("enter gw ns")
            .unwrap_or_else(|e| panic!("gateway {site}: {e:#}"));
        gws.push((format!("{prefix}-{site}"), dp));
    }
    Overlay { topo, gws }
}

fn flows(name: &str) -> Vec<(String, mongate_dataplane::overlay::FlowCounters)> {
    FlowStatsRegion::open(&flows_path(name)).unwrap().totals()
}

fn flow<'a>(
    v: &'a [(String, mongate_dataplane::overlay::FlowCounters)],
    id: &str,
) -> &'a mongate_dataplane::overlay::FlowCounters {
    &v.iter().find(|(i, _)| i == id).unwrap().1
}

/// Garbage and malformed GENEVE sent to A's WAN address from C's gateway
/// namespace (its kernel stack): counted as drops, the gateway keeps working.
fn wan_garbage(ov: &Overlay) {
    let a_wan = ov.topo.link("ac").unwrap().a_if().v4.unwrap().addr;
    let sent = ov
        .topo
        .site("C")
        .unwrap()
        .gw_ns
        .run_in(move || -> std::io::Result<u32> {
            let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            let mut n = 0;
            let mut x: u32 = 12345;
            for i in 0..600u32 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let len = usize::try_from(x % 200).unwrap_or(0);
                let mut p: Vec<u8> = (0..len).map(|k| (x >> (k % 24)).to_le_bytes()[0]).collect();
                if i % 3 == 0 && p.len() >= 16 {
                    // GENEVE v0, 8 bytes of options, TEB, our VNI, then an
                    // option with the critical bit of an unknown class.
                    p[..16].copy_from_slice(&[
                        0x02, 0x00, 0x65, 0x58, 0x00, 0x10, 0x92, 0x00, 0x12, 0x34, 0x80, 0x01, 0,
                        0, 0, 0,
                    ]);
                }
                s.send_to(&p, (a_wan, 6081))?;
                n += 1;
                if n % 10 == 0 {
                    // Stay far below the 10 Mbit/s link (its shaper drops a burst).
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Ok(n)
        })
        .unwrap()
        .unwrap();
    assert_eq!(sent, 600);
}

#[test]
fn tcp_direct_and_via_waypoint_with_path_mtu() {
    if common::skip("tcp_direct_and_via_waypoint_with_path_mtu") {
        return;
    }
    let _g = common::net_lock();
    let ov = start("mgovtcp", 8.0);
    // Plain reachability through the overlay (ICMP rides best effort).
    let c_ip = host_v4(&ov.topo, "C").to_string();
    let ping = ov
        .topo
        .site("A")
        .unwrap()
        .lan_ns
        .exec_unchecked(&["ping", "-c", "3", "-i", "0.2", "-W", "2", &c_ip])
        .unwrap();
    assert!(
        ping.status.success(),
        "ping A->C through the overlay: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    // Capture the A-C WAN link (both directions, in its wire namespace)
    // while the transfers run. Kernel IPv6 chatter (router solicitations,
    // MLD, IGMP) of the gateways' own stacks is not overlay traffic: filtered.
    let pcap = std::env::temp_dir().join(format!("mgovtcp-{}.pcapng", std::process::id()));
    let _ = std::fs::remove_file(&pcap);
    let wire = &ov.topo.link("ac").unwrap().wire_ns;
    let capture = tshark::Dumpcap::start(wire, "xa", "not arp and not ip6 and not igmp", &pcap)
        .expect("dumpcap");
    let data = common::payload(2 << 20, 0x9E37_79B9_7F4A_7C15);
    let want = common::sha256(&data);
    for (port, flow_id) in [(PORT_TCP_DIRECT, "tcp-A->C"), (PORT_TCP_VIA_B, "tcp-via-B")] {
        let (got, took) = common::upload(&ov.topo, "A", "C", port, &data);
        assert_eq!(got.len(), data.len(), "{flow_id}: length");
        assert_eq!(common::sha256(&got), want, "{flow_id}: sha256");
        println!(
            "{flow_id}: 2 MiB in {:.2} s ({:.2} Mbit/s)",
            took.as_secs_f64(),
            16.78 / took.as_secs_f64()
        );
    }
    let pcap = capture.stop().unwrap();
    let g = tshark::geneve_check(&pcap).expect("tshark");
    assert!(g.frames > 1000, "captured {} frames", g.frames);
    assert_eq!(g.not_geneve_count, 0, "not GENEVE: {:?}", g.not_geneve);
    assert!(
        g.malformed.is_empty(),
        "malformed or erroneous packets:\n{}",
        g.malformed.join("\n")
    );
    println!(
        "tshark: {} frames on the A-C link, all GENEVE, none malformed",
        g.frames
    );
    let _ = std::fs::remove_file(&pcap);
    // Bad input on the WAN: counted drops, and the gateway still works.
    let drops_before: u64 = ov.gws[0]
        .1
        .snapshot()
        .iter()
        .map(|w| {
            w.drops.get("bad_overlay").copied().unwrap_or(0)
                + w.drops.get("truncated").copied().unwrap_or(0)
                + w.drops.get("unsupported").copied().unwrap_or(0)
        })
        .sum();
    wan_garbage(&ov);
    let t0 = Instant::now();
    loop {
        let d: u64 = ov.gws[0]
            .1
            .snapshot()
            .iter()
            .map(|w| {
                w.drops.get("bad_overlay").copied().unwrap_or(0)
                    + w.drops.get("truncated").copied().unwrap_or(0)
                    + w.drops.get("unsupported").copied().unwrap_or(0)
            })
            .sum();
        if d >= drops_before + 600 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "garbage not counted: {} of 600 ({:?})",
            d - drops_before,
            ov.gws[0].1.snapshot()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ov.gws.iter().all(|g| g.1.healthy()));
    let again = ov
        .topo
        .site("A")
        .unwrap()
        .lan_ns
        .exec_unchecked(&["ping", "-c", "2", "-i", "0.2", "-W", "2", &c_ip])
        .unwrap();
    assert!(again.status.success(), "overlay dead after garbage");
    // The data went where the plan said: C delivered both flows; B relayed
    // only the waypoint one; A's gateway answered the oversized segments.
    let fa = flows("mgovtcp-A");
    let fb = flows("mgovtcp-B");
    let fc = flows("mgovtcp-C");
    assert!(flow(&fc, "tcp-A->C").rx_packets > 1000, "{fc:?}");
    assert!(flow(&fc, "tcp-via-B").rx_packets > 1000, "{fc:?}");
    assert!(flow(&fb, "tcp-via-B").relayed_packets > 1000, "{fb:?}");
    assert_eq!(flow(&fb, "tcp-A->C").relayed_packets, 0);
    assert!(flow(&fa, "tcp-C->A").rx_packets > 100, "{fa:?}");
    assert!(flow(&fa, "tcp-A->C").tx_packets > 1000, "{fa:?}");
    // Host A learned the overlay's path MTU from our ICMP errors (its own
    // link MTU is 1500; the path carries 1426-byte inner IP packets).
    let route = ov
        .topo
        .site("A")
        .unwrap()
        .lan_ns
        .exec(&["ip", "-4", "route", "get", &c_ip])
        .unwrap();
    let route = String::from_utf8_lossy(&route.stdout).to_string();
    assert!(route.contains("mtu 1426"), "no learned path MTU: {route}");
}

/// Traffic no class matches (UDP A -> C to a port no rule names) goes best
/// effort, paced per peer at the site file's `[montra] best_effort_mbps`:
/// offered at 6 Mbit/s, it arrives at C at about the configured 3 Mbit/s,
/// which the default (1 Mbit/s) could not carry.
#[test]
fn unplanned_traffic_is_paced_at_the_site_files_best_effort_rate() {
    if common::skip("unplanned_traffic_is_paced_at_the_site_files_best_effort_rate") {
        return;
    }
    let _g = common::net_lock();
    const BEST_EFFORT_MBPS: f64 = 3.0;
    const PAYLOAD: usize = 1000;
    // 6 Mbit/s of payload: twice the queue's rate, well under the link's 10.
    const OFFERED_PPS: f64 = 750.0;
    let ov = start_with(
        "mgovbe",
        8.0,
        &format!("\n[montra]\nbest_effort_mbps = {BEST_EFFORT_MBPS}\n"),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let limit = Duration::from_secs(20);
    let dst = std::net::SocketAddr::from((host_v4(&ov.topo, "C"), 7000));
    let rx = UdpReceiver::start(
        &ov.topo.site("C").unwrap().lan_ns,
        dst,
        1 << 20,
        stop.clone(),
        limit,
    )
    .unwrap();
    let tx = UdpSender::start(
        &ov.topo.site("A").unwrap().lan_ns,
        dst,
        OFFERED_PPS,
        PAYLOAD,
        stop.clone(),
        limit,
    )
    .unwrap();
    let bytes = || rx.counts.bytes.load(std::sync::atomic::Ordering::Relaxed);
    let t0 = Instant::now();
    while bytes() == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "nothing arrived at C"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A second for the queue to fill, then a 4-s window.
    std::thread::sleep(Duration::from_secs(1));
    let (b0, t1) = (bytes(), Instant::now());
    std::thread::sleep(Duration::from_secs(4));
    let (b1, secs) = (bytes(), t1.elapsed().as_secs_f64());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = tx.join().unwrap();
    let counts = rx.join().unwrap();
    // The queue charges each inner frame (Ethernet, IPv4, UDP headers: 42
    // bytes) to its rate.
    let payload_mbps = (b1 - b0) as f64 * 8.0 / secs / 1e6;
    let frames_mbps = payload_mbps * (PAYLOAD + 42) as f64 / PAYLOAD as f64;
    println!(
        "best effort A->C: {payload_mbps:.2} Mbit/s of payload, {frames_mbps:.2} Mbit/s of frames \
         (configured {BEST_EFFORT_MBPS}, offered {:.1}); sent {sent}, received {}",
        OFFERED_PPS * PAYLOAD as f64 * 8.0 / 1e6,
        counts.unique.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(
        frames_mbps > 0.8 * BEST_EFFORT_MBPS,
        "best effort at {frames_mbps:.2} Mbit/s: the site file's {BEST_EFFORT_MBPS} is not in force \
         (the default is 1)"
    );
    assert!(
        frames_mbps < 1.1 * BEST_EFFORT_MBPS,
        "best effort at {frames_mbps:.2} Mbit/s: above the site file's {BEST_EFFORT_MBPS}"
    );
}
