//! The overlay gateway on real packets: the MON triangle in network
//! namespaces, one `mongate` gateway per site (AF_XDP on the LAN and on
//! every WAN link), real hosts behind them.
//!
//! - ping and a TCP transfer (sha256 checked) between LAN hosts of A and C,
//!   directly and through the waypoint B, with the hosts' 1500-byte MTU
//!   larger than the overlay path carries (ICMP "fragmentation needed" from
//!   the gateway makes TCP find the path MTU);
//! - tshark on a WAN link decodes every packet as GENEVE, none malformed;
//! - bad input from the WAN (garbage, unknown critical option) is counted.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use mongate_dataplane::app::{GatewayConfig, RunningDataplane, start_gateway};
use mongate_dataplane::bpf::XdpMode;
use mongate_dataplane::config::Config;
use mongate_dataplane::stats::flows::{FlowStatsRegion, flows_path};
use mongate_testbed::topology::triangle::{
    PORT_TCP_DIRECT, PORT_TCP_VIA_B, tcp_plan, triangle_overlay,
};
use mongate_testbed::{Sites, SitesTopology};

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
    let mut s = Sites::triangle().prefix(prefix);
    s.disable_offloads = true;
    let topo = s.build().expect("build triangle");
    let spec = triangle_overlay(Some(tcp_plan(1, mbps)));
    let mut gws = Vec::new();
    for site in ["A", "B", "C"] {
        let text = topo.site_config(site, &spec).unwrap();
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

/// A deterministic pseudo-random payload and its sha256 (via sha256sum).
fn payload(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn sha256(data: &[u8]) -> String {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A client in A's LAN host uploads `data` to a server in C's LAN host
/// (port `port`), which returns what it received; and how long it took.
fn transfer(ov: &Overlay, port: u16, data: &[u8]) -> (Vec<u8>, Duration) {
    let c_ip = host_v4(&ov.topo, "C");
    let listener = ov
        .topo
        .site("C")
        .unwrap()
        .lan_ns
        .run_in(move || TcpListener::bind((c_ip, port)))
        .unwrap()
        .expect("bind at C");
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut v = Vec::new();
        s.read_to_end(&mut v).expect("receive");
        v
    });
    let to_send = data.to_vec();
    let t0 = Instant::now();
    ov.topo
        .site("A")
        .unwrap()
        .lan_ns
        .run_in(move || {
            let mut s = TcpStream::connect_timeout(
                &SocketAddr::from((c_ip, port)),
                Duration::from_secs(5),
            )?;
            s.set_write_timeout(Some(Duration::from_secs(60)))?;
            s.write_all(&to_send)?;
            s.shutdown(std::net::Shutdown::Write)?;
            // Wait for the server to close: everything was received.
            let mut rest = Vec::new();
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            s.read_to_end(&mut rest)?;
            Ok::<_, std::io::Error>(())
        })
        .unwrap()
        .expect("upload");
    let got = server.join().unwrap();
    (got, t0.elapsed())
}

fn flows(name: &str) -> Vec<(String, mongate_dataplane::stats::flows::FlowValues)> {
    FlowStatsRegion::open(&flows_path(name)).unwrap().totals()
}

fn flow<'a>(
    v: &'a [(String, mongate_dataplane::stats::flows::FlowValues)],
    id: &str,
) -> &'a mongate_dataplane::stats::flows::FlowValues {
    &v.iter().find(|(i, _)| i == id).unwrap().1
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
    let data = payload(2 << 20);
    let want = sha256(&data);
    for (port, flow_id) in [(PORT_TCP_DIRECT, "tcp-A->C"), (PORT_TCP_VIA_B, "tcp-via-B")] {
        let (got, took) = transfer(&ov, port, &data);
        assert_eq!(got.len(), data.len(), "{flow_id}: length");
        assert_eq!(sha256(&got), want, "{flow_id}: sha256");
        println!(
            "{flow_id}: 2 MiB in {:.2} s ({:.2} Mbit/s)",
            took.as_secs_f64(),
            16.78 / took.as_secs_f64()
        );
    }
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
