//! The engine on real packets: AF_XDP forwarding through a device under test
//! on a 2-queue veth topology built in network namespaces (removed even when
//! a test fails: the topology's Drop runs during unwinding).

mod common;

use std::time::Duration;

use mongate_bench::loadgen::{GenConfig, GenSide, SinkSide, forward_addrs, run};
use mongate_dataplane::afxdp::BindMode;
use mongate_dataplane::app::{ForwardConfig, RelayConfig, start_forward, start_relay};
use mongate_dataplane::bpf::XdpMode;
use mongate_dataplane::worker::IdlePolicy;
use mongate_testbed::ForwardTopology;
use mongate_testbed::topology::forward::SINK_V4;

/// The generator's transmit sockets (on `gen_queues` of gen's veth) and the
/// sink (generic XDP on `sink_queues` queues), each opened inside its namespace.
fn open_gen_sink(
    topo: &ForwardTopology,
    gen_queues: &[u32],
    sink_queues: u32,
) -> (GenSide, SinkSide) {
    let gi = topo.gen_if().ifname.clone();
    let gq = gen_queues.to_vec();
    let gen_side = topo
        .gen_ns
        .run_in(move || GenSide::open_queues(&gi, &gq))
        .unwrap()
        .expect("generator");
    let si = topo.sink_if().ifname.clone();
    let sink = topo
        .sink_ns
        .run_in(move || SinkSide::open(&si, sink_queues, XdpMode::Generic))
        .unwrap()
        .expect("sink");
    (gen_side, sink)
}

const PACKETS: u64 = 1_000_000;
/// Well below saturation on a 2-core machine in copy mode (veth's native XDP
/// ring holds 256 frames: the rate leaves room for scheduling hiccups).
const RATE_PPS: f64 = 50_000.0;

/// `ip -s` drop counters of an interface, for failure messages.
fn link_drops(ns: &mongate_testbed::Netns, ifname: &str) -> String {
    ns.exec(&["ip", "-s", "-o", "link", "show", ifname])
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn forward_zero_loss(mode: XdpMode, test: &str) {
    if common::skip(test) {
        return;
    }
    let _g = common::net_lock();
    // veth quirk: a frame sent on tx queue t > 0 reaches the peer with
    // skb->queue_mapping = t, which the stack reads as "rx queue t - 1"
    // (t = 0 reads as queue 0). Native XDP uses veth's own rx queue t, but
    // generic XDP sees queue t - 1. So for generic mode the generator's veth
    // has 3 queues, the DUT's ingress 2, and the generator sends on tx
    // queues 0 and 2, which generic XDP sees as rx queues 0 and 1.
    let generic = mode == XdpMode::Generic;
    let topo = ForwardTopology::new(if generic { 3 } else { 2 }).expect("build topology");
    let (gen_if, dut_in, dut_out, sink_if) = (
        topo.gen_if().clone(),
        topo.dut_in_if().clone(),
        topo.dut_out_if().clone(),
        topo.sink_if().clone(),
    );
    if generic {
        topo.dut_ns
            .exec(&["ethtool", "-L", &dut_in.ifname, "rx", "2", "tx", "2"])
            .expect("ethtool -L");
    }
    let gen_queues: Vec<u32> = if generic { vec![0, 2] } else { vec![0, 1] };
    let name = format!("it-{}-{:?}", std::process::id(), mode).to_lowercase();
    let mut cfg = ForwardConfig::new(&dut_in.ifname, &dut_out.ifname, sink_if.mac.0);
    cfg.queues = 2;
    cfg.xdp_mode = mode;
    cfg.bind = BindMode::Copy;
    cfg.name = name;
    let dp = topo
        .dut_ns
        .run_in(move || start_forward(&cfg))
        .expect("enter dut")
        .expect("start forwarder");
    assert_eq!(dp.xdp_mode, Some(mode));
    let (mut gen_side, mut sink) = open_gen_sink(&topo, &gen_queues, 2);
    let g = GenConfig {
        addrs: forward_addrs(gen_if.mac.0, dut_in.mac.0, SINK_V4),
        flows: 64,
        sizes: vec![64, 512, 1500],
        rate_pps: RATE_PPS,
        poisson: false,
        count: PACKETS,
        duration: Duration::from_secs(60),
        seed: 7,
        progress: false,
    };
    let r = run(Some(&mut gen_side), Some(&mut sink), &g);
    let snap = dp.stop();
    println!(
        "{test}: {r:?}\nDUT: {snap:?}\nsink kernel drops (rx_dropped, rx_ring_full): {:?}",
        sink.kernel_drops()
    );
    println!(
        "gen link: {}\ndut in: {}",
        link_drops(&topo.gen_ns, &gen_if.ifname),
        link_drops(&topo.dut_ns, &dut_in.ifname)
    );
    assert_eq!(r.sent, PACKETS, "generator sent everything");
    assert_eq!(r.lost, 0, "zero loss below saturation");
    assert_eq!(r.received, PACKETS);
    // Both queues carried traffic, on the DUT and at the sink.
    assert_eq!(snap.len(), 2);
    for (q, w) in snap.iter().enumerate() {
        assert!(
            w.rx_packets[0] > PACKETS / 4,
            "DUT queue {q} received {}",
            w.rx_packets[0]
        );
        assert_eq!(
            w.rx_packets[0], w.tx_packets[1],
            "DUT queue {q}: every packet forwarded"
        );
        assert!(w.drops.is_empty(), "DUT queue {q} dropped: {:?}", w.drops);
    }
    assert_eq!(snap.iter().map(|w| w.rx_packets[0]).sum::<u64>(), PACKETS);
}

#[test]
fn afxdp_native_two_queues_zero_loss() {
    forward_zero_loss(XdpMode::Native, "afxdp_native_two_queues_zero_loss");
}

#[test]
fn afxdp_generic_two_queues_zero_loss() {
    forward_zero_loss(XdpMode::Generic, "afxdp_generic_two_queues_zero_loss");
}

/// io_uring: a UDP relay with two workers (SO_REUSEPORT sockets) in the DUT
/// carries 1e6 datagrams from gen to sink with zero loss, on both workers.
#[test]
fn uring_relay_two_workers_zero_loss() {
    let test = "uring_relay_two_workers_zero_loss";
    if common::skip(test) {
        return;
    }
    let _g = common::net_lock();
    let topo = ForwardTopology::new(2).expect("build topology");
    let (gen_if, dut_in) = (topo.gen_if().clone(), topo.dut_in_if().clone());
    let port = mongate_bench::payload::BENCH_PORT;
    let cfg = RelayConfig {
        listen: std::net::SocketAddr::from((mongate_bench::payload::BENCH_PORT_ADDR_DUT, port)),
        to: std::net::SocketAddrV4::new(SINK_V4, port),
        workers: 2,
        cores: Vec::new(),
        frames: 16384,
        name: format!("it-uring-{}", std::process::id()),
        idle: IdlePolicy::default(),
        // Deep queues: this test asks for every datagram on a shared CI
        // machine, where an unpinned worker can lose its core for tens of
        // ms; the default bounds queueing delay instead (see docs/uring.md).
        rx_queue: 8192,
    };
    let dp = topo
        .dut_ns
        .run_in(move || start_relay(&cfg))
        .unwrap()
        .expect("start relay");
    let (mut gen_side, mut sink) = open_gen_sink(&topo, &[0, 1], 2);
    let g = GenConfig {
        addrs: forward_addrs(
            gen_if.mac.0,
            dut_in.mac.0,
            mongate_bench::payload::BENCH_PORT_ADDR_DUT,
        ),
        flows: 64,
        sizes: vec![64, 512, 1400],
        rate_pps: RATE_PPS,
        poisson: false,
        count: PACKETS,
        duration: Duration::from_secs(60),
        seed: 11,
        progress: false,
    };
    let r = run(Some(&mut gen_side), Some(&mut sink), &g);
    let snap = dp.stop();
    println!("{test}: {r:?}\nDUT: {snap:?}");
    assert_eq!(r.sent, PACKETS);
    assert_eq!(r.lost, 0, "zero loss below saturation");
    assert_eq!(snap.len(), 2);
    for (w, s) in snap.iter().enumerate() {
        assert!(
            s.rx_packets[0] > PACKETS / 8,
            "worker {w} received {}",
            s.rx_packets[0]
        );
        assert_eq!(
            s.rx_packets[0], s.tx_packets[0],
            "worker {w}: every datagram relayed"
        );
    }
    assert_eq!(snap.iter().map(|w| w.rx_packets[0]).sum::<u64>(), PACKETS);
}

/// Sends a raw Ethernet frame out of `ifname` (AF_PACKET), from a thread
/// already inside the interface's namespace.
fn send_raw(ifname: &str, frame: &[u8]) -> std::io::Result<()> {
    let idx = mongate_dataplane::bpf::ifindex(ifname)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: zeroed sockaddr_ll is a valid value, filled below.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = u16::try_from(libc::AF_PACKET).unwrap();
    sa.sll_ifindex = i32::try_from(idx).unwrap();
    sa.sll_halen = 6;
    // SAFETY: `frame` and `sa` are valid for the lengths given.
    let r = unsafe {
        libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sa as *const libc::sockaddr_ll).cast(),
            u32::try_from(std::mem::size_of::<libc::sockaddr_ll>()).unwrap(),
        )
    };
    let e = std::io::Error::last_os_error();
    // SAFETY: our socket.
    unsafe { libc::close(fd) };
    if r < 0 { Err(e) } else { Ok(()) }
}

/// Malformed frames reaching the forwarder are counted by reason and dropped;
/// the workers keep running and keep forwarding good traffic.
#[test]
fn bad_frames_are_counted_not_fatal() {
    if common::skip("bad_frames_are_counted_not_fatal") {
        return;
    }
    let _g = common::net_lock();
    let topo = ForwardTopology::new(1).expect("build topology");
    let (gen_if, dut_in, dut_out, sink_if) = (
        topo.gen_if().clone(),
        topo.dut_in_if().clone(),
        topo.dut_out_if().clone(),
        topo.sink_if().clone(),
    );
    let mut cfg = ForwardConfig::new(&dut_in.ifname, &dut_out.ifname, sink_if.mac.0);
    cfg.xdp_mode = XdpMode::Native;
    cfg.name = format!("it-bad-{}", std::process::id());
    let dp = topo
        .dut_ns
        .run_in(move || start_forward(&cfg))
        .unwrap()
        .expect("start forwarder");
    let good = mongate_bench::payload::build_frame(
        &forward_addrs(gen_if.mac.0, dut_in.mac.0, SINK_V4),
        64,
    );
    let mut truncated = good.clone();
    truncated[16..18].copy_from_slice(&1400u16.to_be_bytes()); // total length beyond the frame
    let mut ttl1 = good.clone();
    ttl1[22] = 1;
    let mut bad_version = good.clone();
    bad_version[14] = 0x35; // version 3
    let mut v6_trunc = vec![0u8; 70];
    v6_trunc[0..6].copy_from_slice(&dut_in.mac.0);
    v6_trunc[12..14].copy_from_slice(&[0x86, 0xdd]);
    v6_trunc[14] = 0x60;
    v6_trunc[18..20].copy_from_slice(&1000u16.to_be_bytes());
    v6_trunc[20] = 6;
    v6_trunc[21] = 64;
    v6_trunc[38] = 0x20; // some transit destination 2001:2:0:1::1
    let frames = [truncated, ttl1, bad_version, v6_trunc];
    let gi = gen_if.ifname.clone();
    topo.gen_ns
        .run_in(move || -> std::io::Result<()> {
            for f in &frames {
                send_raw(&gi, f)?;
            }
            Ok(())
        })
        .unwrap()
        .expect("send raw frames");
    // Wait (bounded) for the DUT to count all four drops.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut snap = dp.snapshot();
    while snap[0].drops.values().sum::<u64>() < 4 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
        snap = dp.snapshot();
    }
    println!("drops: {:?}", snap[0].drops);
    assert_eq!(
        snap[0].drops.get("truncated"),
        Some(&2),
        "IPv4 and IPv6 length beyond frame"
    );
    assert_eq!(snap[0].drops.get("ttl_exceeded"), Some(&1));
    assert_eq!(snap[0].drops.get("unsupported"), Some(&1));
    assert!(dp.healthy(), "workers survive bad input");
    // Good traffic still flows afterwards.
    let (mut gen_side, mut sink) = open_gen_sink(&topo, &[0], 1);
    let g = GenConfig {
        addrs: forward_addrs(gen_if.mac.0, dut_in.mac.0, SINK_V4),
        flows: 4,
        sizes: vec![64],
        rate_pps: 50_000.0,
        poisson: true,
        count: 10_000,
        duration: Duration::from_secs(10),
        seed: 3,
        progress: false,
    };
    let r = run(Some(&mut gen_side), Some(&mut sink), &g);
    assert_eq!((r.sent, r.lost), (10_000, 0));
    drop(dp);
}

/// A bad interface name, and an unsupported mode, give one-line errors that
/// say what to do.
#[test]
fn setup_errors_are_one_line_and_actionable() {
    if common::skip("setup_errors_are_one_line_and_actionable") {
        return;
    }
    let _g = common::net_lock();
    let cfg = ForwardConfig::new("nosuchif0", "nosuchif1", [2, 0, 0, 0, 0, 1]);
    let e = start_forward(&cfg).err().expect("must fail").to_string();
    assert_eq!(e, "nosuchif0: no such interface (see `ip link`)");
    assert!(!e.contains('\n'));
    let topo = ForwardTopology::new(1).expect("build topology");
    let (dut_in, dut_out) = (topo.dut_in_if().clone(), topo.dut_out_if().clone());
    let mut cfg = ForwardConfig::new(&dut_in.ifname, &dut_out.ifname, [2, 0, 0, 0, 0, 1]);
    cfg.queues = 4; // the veth has 1 queue
    let e = topo
        .dut_ns
        .run_in(move || start_forward(&cfg).err().map(|e| e.to_string()))
        .unwrap()
        .expect("must fail");
    assert!(e.contains("no queue 1") && e.contains("ethtool"), "{e}");
    let mut cfg = ForwardConfig::new(&dut_in.ifname, &dut_out.ifname, [2, 0, 0, 0, 0, 1]);
    cfg.bind = BindMode::ZeroCopy; // veth has no zero-copy
    let e = topo
        .dut_ns
        .run_in(move || start_forward(&cfg).err().map(|e| e.to_string()))
        .unwrap()
        .expect("must fail");
    assert!(e.contains("zero-copy") && e.contains("copy mode"), "{e}");
}
