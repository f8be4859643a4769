//! `mongate capture` on a running overlay: the MON triangle in network
//! namespaces (AF_XDP gateways, unencrypted), UDP and ping from A's LAN host
//! to C's; captures of A's uplinks and LAN are opened with tshark.
//!
//! - the uplinks' frames decode as GENEVE with the site's VNI, every one;
//! - `--side lan --proto udp` holds only UDP, though pings run too;
//! - `--max-pps` caps what is captured over the capture's duration (plus
//!   the bucket's burst) and counts the rest `limited`;
//! - an unknown gateway or peer is a clear error;
//! - with two workers per gateway (two queues per interface), a capture
//!   holds the frames of both, each once, in timestamp order.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mongate_dataplane::app::{GatewayConfig, RunningDataplane, start_gateway};
use mongate_dataplane::bpf::XdpMode;
use mongate_dataplane::config::Config;
use mongate_dataplane::mirror::pcap;
use mongate_dataplane::overlay::wire_flow_id;
use mongate_dataplane::wire::overlay::decap;
use mongate_testbed::topology::triangle::{PORT_AC, PORT_TCP_DIRECT, tcp_plan, triangle_overlay};
use mongate_testbed::{PlanSpec, Sites, SitesTopology};

const PREFIX: &str = "mgcap";
/// The two-worker triangle's.
const PREFIX_WORKERS: &str = "mgcw";

struct Overlay {
    topo: SitesTopology,
    gws: Vec<RunningDataplane>,
    vni: u32,
    /// A's site file.
    a: Config,
}

impl Drop for Overlay {
    fn drop(&mut self) {
        self.gws.clear();
    }
}

fn start() -> Overlay {
    start_with(PREFIX, 1, tcp_plan(1, 16.0))
}

/// The triangle with `workers` workers per gateway (and as many queues per
/// interface), named `PREFIX-SITE`.
fn start_with(prefix: &str, workers: u16, plan: PlanSpec) -> Overlay {
    let mut s = Sites::triangle().prefix(prefix);
    s.disable_offloads = true;
    s.queues = workers;
    let topo = s.build().expect("build triangle");
    let spec = triangle_overlay(Some(plan));
    let mut gws = Vec::new();
    let mut vni = 0;
    let mut a = None;
    for site in ["A", "B", "C"] {
        let text = topo.site_config(site, &spec).unwrap();
        let cfg = Config::from_toml_str(&text, &format!("{site}.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        vni = cfg.site.vni;
        if site == "A" {
            a = Some(cfg.clone());
        }
        let mut gc = GatewayConfig::new(cfg);
        gc.name = format!("{prefix}-{site}");
        gc.xdp_mode = XdpMode::Native;
        gc.control = false;
        if workers > 1 {
            gc.workers = usize::from(workers);
            gc.cores = vec![1, 0];
        }
        let dp = topo
            .site(site)
            .unwrap()
            .gw_ns
            .run_in(move || start_gateway(&gc))
            .expect("enter gw ns")
            .unwrap_or_else(|e| panic!("gateway {site}: {e:#}"));
        gws.push(dp);
    }
    Overlay {
        topo,
        gws,
        vni,
        a: a.expect("A's file"),
    }
}

fn capture(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mongate"))
        .arg("capture")
        .args(args)
        .output()
        .expect("run mongate capture")
}

/// Runs a capture that must succeed; its JSON summary.
fn capture_ok(args: &[&str]) -> serde_json::Value {
    let out = capture(&[args, &["--json"]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mongate capture {args:?}: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn tshark_fields(file: &Path, filter: Option<&str>, field: &str) -> Vec<String> {
    let mut c = Command::new("tshark");
    c.arg("-n").arg("-r").arg(file);
    if let Some(f) = filter {
        c.args(["-Y", f]);
    }
    let out = c
        .args(["-T", "fields", "-e", field])
        .output()
        .expect("tshark");
    assert!(
        out.status.success(),
        "tshark {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

#[test]
fn capture_wan_lan_and_rate_limit_on_the_triangle() {
    if common::skip("capture_wan_lan_and_rate_limit_on_the_triangle") {
        return;
    }
    if Command::new("tshark").arg("-v").output().is_err() {
        println!("SKIP capture_wan_lan_and_rate_limit_on_the_triangle: no tshark");
        return;
    }
    let _g = common::net_lock();
    let tmp = common::TempDir::new("mongate-capture");
    let ov = start();
    let name = format!("{PREFIX}-A");
    let c_ip = ov.topo.site("C").unwrap().host_if().v4.unwrap().addr;
    let c_str = c_ip.to_string();
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        // UDP from A's host to C's, about 1000 packets/s, at most 20 s.
        let udp = sc.spawn(|| {
            ov.topo
                .site("A")
                .unwrap()
                .lan_ns
                .run_in(|| -> std::io::Result<u64> {
                    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
                    let t0 = Instant::now();
                    let mut sent = 0u64;
                    while !stop.load(Ordering::Relaxed)
                        && sent < 20_000
                        && t0.elapsed() < Duration::from_secs(20)
                    {
                        let _ = s.send_to(&[0x5a; 200], (c_ip, 9999));
                        sent += 1;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Ok(sent)
                })
                .unwrap()
                .unwrap()
        });
        // Pings alongside (ICMP the UDP filter must leave out), bounded.
        let ping = sc.spawn(|| {
            ov.topo
                .site("A")
                .unwrap()
                .lan_ns
                .exec_unchecked(&[
                    "ping", "-c", "60", "-i", "0.1", "-W", "1", "-w", "15", &c_str,
                ])
                .unwrap()
        });

        // The uplinks: GENEVE as on the wire, with the site's VNI.
        let wan = tmp.join("wan.pcap");
        let s = capture_ok(&[
            "--name",
            &name,
            "--side",
            "wan",
            "--seconds",
            "2",
            "--count",
            "300",
            "-w",
            wan.to_str().unwrap(),
        ]);
        let written = n(&s, "written");
        assert!(written > 20, "few WAN frames: {s}");
        let vnis = tshark_fields(&wan, Some("geneve"), "geneve.vni");
        assert_eq!(vnis.len() as u64, written, "every WAN frame is GENEVE: {s}");
        // tshark prints the VNI in hex (`0x001092`).
        let vni_of = |v: &str| match v.strip_prefix("0x") {
            Some(h) => u32::from_str_radix(h, 16).ok(),
            None => v.parse().ok(),
        };
        assert!(
            vnis.iter().all(|v| vni_of(v) == Some(ov.vni)),
            "VNIs {:?} (want {})",
            &vnis[..vnis.len().min(5)],
            ov.vni
        );

        // To stdout (`-w -`): the pcap on stdout, the summary on stderr.
        let out = capture(&["--name", &name, "--side", "wan", "--count", "5", "-w", "-"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (_, link, recs) = pcap::parse(&out.stdout).expect("a pcap on stdout");
        assert_eq!((link, recs.len()), (pcap::LINKTYPE_ETHERNET, 5));
        assert!(recs.iter().all(|r| decap(&r.data, false).is_ok()));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("5 frames written to -"), "{err}");

        // The LAN, UDP only.
        let lan = tmp.join("lan.pcap");
        let s = capture_ok(&[
            "--name",
            &name,
            "--side",
            "lan",
            "--proto",
            "udp",
            "--seconds",
            "2",
            "-w",
            lan.to_str().unwrap(),
        ]);
        let protos = tshark_fields(&lan, None, "ip.proto");
        assert!(protos.len() > 20, "few LAN frames: {s}");
        assert!(protos.iter().all(|p| p == "17"), "not only UDP: {protos:?}");
        // ... while the LAN carries ICMP too.
        let all = tmp.join("all.pcap");
        capture_ok(&[
            "--name",
            &name,
            "--side",
            "lan",
            "--seconds",
            "2",
            "-w",
            all.to_str().unwrap(),
        ]);
        let protos = tshark_fields(&all, None, "ip.proto");
        assert!(
            protos.iter().any(|p| p == "1"),
            "no ICMP on the LAN: {protos:?}"
        );

        // A rate limit below the traffic's rate.
        let lim = tmp.join("lim.pcap");
        let (pps, burst) = (50u64, 5u64);
        let s = capture_ok(&[
            "--name",
            &name,
            "--side",
            "lan",
            "--direction",
            "rx",
            "--proto",
            "udp",
            "--max-pps",
            "50",
            "--seconds",
            "2",
            "--count",
            "100000",
            "-w",
            lim.to_str().unwrap(),
        ]);
        println!("rate-limited capture: {s}");
        let secs = s["seconds"].as_f64().unwrap();
        let captured = n(&s, "captured");
        // The bucket starts full (the burst) and refills at the rate for as
        // long as the mirror is on (the reader's measure, plus its polls).
        let bound = pps as f64 * (secs + 0.1) + burst as f64;
        assert!(
            captured as f64 <= bound,
            "captured {captured} > {bound}: {s}"
        );
        assert!(captured >= pps, "captured {captured} < {pps}: {s}");
        assert!(n(&s, "limited") > 0, "nothing limited at 1000 pps: {s}");
        assert_eq!(n(&s, "written"), captured, "{s}");
        assert_eq!(
            tshark_fields(&lim, None, "frame.number").len() as u64,
            n(&s, "written")
        );

        // One flow: a TCP transfer A -> C rides `tcp-A->C` (planned),
        // beside the best-effort UDP.
        let listener = ov
            .topo
            .site("C")
            .unwrap()
            .lan_ns
            .run_in(move || TcpListener::bind((c_ip, PORT_TCP_DIRECT)))
            .unwrap()
            .expect("bind at C");
        let server = sc.spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut v = Vec::new();
            let _ = s.read_to_end(&mut v);
            v.len()
        });
        let client = sc.spawn(|| {
            ov.topo
                .site("A")
                .unwrap()
                .lan_ns
                .run_in(move || -> std::io::Result<()> {
                    let addr = SocketAddr::from((c_ip, PORT_TCP_DIRECT));
                    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
                    s.set_write_timeout(Some(Duration::from_secs(20)))?;
                    // About 4 s at the flow's 4 Mbit/s.
                    s.write_all(&vec![7u8; 2_000_000])?;
                    s.shutdown(std::net::Shutdown::Write)
                })
                .unwrap()
        });
        let fl = tmp.join("flow.pcap");
        let s = capture_ok(&[
            "--name",
            &name,
            "--flow",
            "tcp-A->C",
            "--seconds",
            "2",
            "-w",
            fl.to_str().unwrap(),
        ]);
        let (_, _, recs) = pcap::parse(&std::fs::read(&fl).unwrap()).expect("pcap");
        assert_eq!(recs.len() as u64, n(&s, "written"));
        let want = wire_flow_id("tcp-A->C");
        let (mut wan_n, mut lan_n) = (0, 0);
        for r in &recs {
            match decap(&r.data, false) {
                Ok(d) => {
                    wan_n += 1;
                    assert_eq!(d.meta.flow.map(|f| f.flow_id), Some(want), "{s}");
                }
                Err(_) => {
                    lan_n += 1;
                    // IPv4 (EtherType at 12, protocol at 23): TCP only.
                    assert_eq!(r.data.get(23), Some(&6), "a LAN frame of another flow");
                }
            }
        }
        assert!(
            wan_n > 10 && lan_n > 10,
            "flow capture: {wan_n} WAN, {lan_n} LAN: {s}"
        );
        // One peer: every frame A's uplinks send to C goes to one of C's
        // gateway addresses.
        let peer = tmp.join("peer.pcap");
        capture_ok(&[
            "--name",
            &name,
            "--side",
            "wan",
            "--direction",
            "tx",
            "--peer",
            "C",
            "--seconds",
            "1",
            "-w",
            peer.to_str().unwrap(),
        ]);
        let c_gw: Vec<IpAddr> =
            ov.a.peers
                .iter()
                .find(|p| p.name == "C")
                .unwrap()
                .gateways
                .clone();
        // tshark lists the outer then the inner destination.
        let dsts = tshark_fields(&peer, None, "ip.dst");
        assert!(dsts.len() > 10, "few frames to C: {dsts:?}");
        let other = dsts.iter().find(|d| {
            let outer = d.split(',').next().unwrap_or("");
            !outer.parse().is_ok_and(|ip: IpAddr| c_gw.contains(&ip))
        });
        assert!(
            other.is_none(),
            "a frame to {other:?}, not C's gateways {c_gw:?}"
        );
        client.join().unwrap().expect("TCP upload");
        assert_eq!(server.join().unwrap(), 2_000_000);

        stop.store(true, Ordering::Relaxed);
        assert!(udp.join().unwrap() > 1000);
        let _ = ping.join().unwrap();
    });

    // Clear errors.
    let out = capture(&["--name", "mgcap-nosuch", "-w", "/dev/null"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no gateway named"),
        "{err}"
    );
    let out = capture(&["--name", &name, "--peer", "Z", "-w", "/dev/null"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("has no peer \"Z\""),
        "{err}"
    );
    let out = capture(&["--name", &name, "--flow", "nope", "-w", "/dev/null"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("has no flow \"nope\""),
        "{err}"
    );
}

/// UDP sessions of class A->C in the two-worker case.
const SESSIONS: u16 = 8;

/// Class A->C's sessions split over two flows, which belong to different
/// workers (tests/workers.rs): both of A's workers hold LAN frames and
/// send on the uplinks.
fn two_worker_plan() -> PlanSpec {
    PlanSpec {
        epoch: 1,
        classes: vec![("A->C".into(), u32::from(SESSIONS))],
        flows: vec![
            ("A->C/direct".into(), 0.6, 1.0),
            ("A->C/via-B".into(), 0.3, 1.0),
        ],
    }
}

/// A capture's records: checks they are in timestamp order; returns them.
fn records_in_order(file: &Path, s: &serde_json::Value) -> Vec<pcap::Record> {
    let (_, link, recs) = pcap::parse(&std::fs::read(file).unwrap()).expect("a pcap");
    assert_eq!(link, pcap::LINKTYPE_ETHERNET);
    assert_eq!(recs.len() as u64, n(s, "written"), "{s}");
    let late = recs
        .windows(2)
        .filter(|w| w[1].wall_ns < w[0].wall_ns)
        .count();
    assert_eq!(late, 0, "{late} records earlier than the one before: {s}");
    recs
}

/// Both workers captured, and what they captured is what was written.
fn both_workers(s: &serde_json::Value) {
    assert_eq!(n(s, "workers"), 2, "{s}");
    let per = s["per_worker"].as_array().expect("per_worker");
    assert_eq!(per.len(), 2, "{s}");
    for (w, c) in per.iter().enumerate() {
        assert!(n(c, "captured") > 20, "worker {w} captured little: {s}");
    }
    let sum: u64 = per.iter().map(|c| n(c, "captured")).sum();
    assert_eq!(sum, n(s, "captured"), "{s}");
    assert_eq!(n(s, "written"), n(s, "captured"), "{s}");
}

#[test]
fn capture_holds_the_frames_of_every_worker() {
    if common::skip("capture_holds_the_frames_of_every_worker") {
        return;
    }
    let _g = common::net_lock();
    let tmp = common::TempDir::new("mongate-capture-workers");
    let ov = start_with(PREFIX_WORKERS, 2, two_worker_plan());
    let name = format!("{PREFIX_WORKERS}-A");
    let c_ip = ov.topo.site("C").unwrap().host_if().v4.unwrap().addr;
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        // Numbered datagrams on SESSIONS sockets, about 200/s each, at
        // most 20 s.
        let udp = sc.spawn(|| {
            ov.topo
                .site("A")
                .unwrap()
                .lan_ns
                .run_in(|| -> std::io::Result<u64> {
                    let socks: Vec<UdpSocket> = (0..SESSIONS)
                        .map(|i| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 41000 + i)))
                        .collect::<Result<_, _>>()?;
                    let mut buf = [0u8; 200];
                    let t0 = Instant::now();
                    let mut sent = 0u64;
                    for seq in 1..=4000u64 {
                        if stop.load(Ordering::Relaxed) || t0.elapsed() > Duration::from_secs(20) {
                            break;
                        }
                        buf[..8].copy_from_slice(&seq.to_le_bytes());
                        for s in &socks {
                            if s.send_to(&buf, (c_ip, PORT_AC)).is_ok() {
                                sent += 1;
                            }
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Ok(sent)
                })
                .unwrap()
                .unwrap()
        });

        // The LAN frames A's workers hold for pacing: each datagram once
        // (a frame handed from the worker that received it to the one
        // that paces it is captured by one of them only).
        let lan = tmp.join("lan.pcap");
        let s = capture_ok(&[
            "--name",
            &name,
            "--side",
            "lan",
            "--direction",
            "rx",
            "--proto",
            "udp",
            "--seconds",
            "2",
            "--count",
            "1000000",
            "--max-pps",
            "1000000",
            "-w",
            lan.to_str().unwrap(),
        ]);
        println!("LAN capture: {s}");
        both_workers(&s);
        let recs = records_in_order(&lan, &s);
        let mut seen = std::collections::HashSet::new();
        let mut twice = 0;
        for r in &recs {
            // Ethernet + IPv4 (no options) + UDP, the sequence number first.
            let f = &r.data;
            assert!(f.len() >= 14 + 20 + 8 + 8 && f[23] == 17, "not UDP: {f:?}");
            let sport = u16::from_be_bytes([f[34], f[35]]);
            let seq = u64::from_le_bytes(f[42..50].try_into().unwrap());
            if !seen.insert((sport, seq)) {
                twice += 1;
            }
        }
        assert_eq!(twice, 0, "datagrams captured twice: {s}");
        let sessions: std::collections::HashSet<u16> = seen.iter().map(|k| k.0).collect();
        assert_eq!(sessions.len(), usize::from(SESSIONS), "{sessions:?}");

        // What A's uplinks send: overlay frames, from both workers.
        let wan = tmp.join("wan.pcap");
        let s = capture_ok(&[
            "--name",
            &name,
            "--side",
            "wan",
            "--direction",
            "tx",
            "--seconds",
            "2",
            "--count",
            "1000000",
            "--max-pps",
            "1000000",
            "-w",
            wan.to_str().unwrap(),
        ]);
        println!("WAN capture: {s}");
        both_workers(&s);
        let recs = records_in_order(&wan, &s);
        assert!(recs.iter().all(|r| decap(&r.data, false).is_ok()));

        // The one-line summary names the workers.
        let out = capture(&["--name", &name, "--count", "5", "-w", "/dev/null"]);
        let line = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{line}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(line.contains("2 workers captured"), "{line}");

        stop.store(true, Ordering::Relaxed);
        assert!(udp.join().unwrap() > 1000);
    });
}
