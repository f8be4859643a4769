//! The link emulator measured with real packets:
//!
//! ```text
//!  [h1] h1 --veth-- ea [em: linkem ea<->eb] eb --veth-- h2 [h2]
//!  198.18.200.1/24                              198.18.200.2/24
//! ```
//!
//! Delay (ping RTT with vs. without), loss (20000 UDP datagrams at 1 %),
//! rate (a UDP stream above 10 Mbit/s) and jitter (ping RTT deviation).
//! Namespaces are the test's own, removed even on failure; every traffic
//! loop is bounded. Timing bounds are deliberately loose (a shared, noisy
//! 2-core machine); the precise figures are in docs/linkem.md.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mongate_bench::linkem::{
    BridgeConfig, DirectionConfig, JitterDist, LinkReport, LinkemHandle, Loss, ms_to_ns,
    spawn_in_netns,
};
use mongate_testbed::link::{self, EndSpec};
use mongate_testbed::{Netns, V4};

static NET: Mutex<()> = Mutex::new(());

fn net_lock() -> MutexGuard<'static, ()> {
    NET.lock().unwrap_or_else(|e| e.into_inner())
}

/// Prints a visible SKIP and returns true when these tests cannot run here.
fn skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let reason = if unsafe { libc::geteuid() } != 0 {
        Some("needs root (network namespaces, XDP, AF_XDP)".to_string())
    } else if !mongate_testbed::have_program("ping") || !mongate_testbed::have_program("ethtool") {
        Some("needs ping and ethtool".to_string())
    } else {
        mongate_testbed::unavailable_reason()
    };
    match reason {
        Some(r) => {
            println!("SKIP {test}: {r}");
            eprintln!("SKIP {test}: {r}");
            true
        }
        None => false,
    }
}

const H1: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 1);
const H2: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 2);
const PORT: u16 = 9000;

/// Three namespaces; dropping it removes them (the emulator handle, if
/// any, must be dropped first: declare it after the topology).
struct Topo {
    h1: Netns,
    em: Netns,
    h2: Netns,
}

impl Topo {
    fn new() -> Self {
        mongate_testbed::sweep_stale("mgtle-").unwrap();
        let h1 = Netns::with_tag("mgtle-", "h1").unwrap();
        let em = Netns::with_tag("mgtle-", "em").unwrap();
        let h2 = Netns::with_tag("mgtle-", "h2").unwrap();
        // No IPv6: no router solicitations or DAD frames in the counts.
        for ns in [&h1, &em, &h2] {
            ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1").unwrap();
            ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")
                .unwrap();
        }
        let l1 = link::veth(
            &h1,
            &EndSpec::named("h1").v4(V4::new(H1, 24)),
            &em,
            &EndSpec::named("ea"),
            1,
            1500,
        )
        .unwrap();
        let l2 = link::veth(
            &em,
            &EndSpec::named("eb"),
            &h2,
            &EndSpec::named("h2").v4(V4::new(H2, 24)),
            1,
            1500,
        )
        .unwrap();
        // Offloads off: with XDP in the path, partial checksums would reach
        // the far host unfinished (see testbed::link::disable_offloads).
        for (ns, dev) in [(&h1, "h1"), (&em, "ea"), (&em, "eb"), (&h2, "h2")] {
            link::disable_offloads(ns, dev).unwrap();
        }
        // Static neighbours: no ARP in the measurements.
        link::neigh_permanent(&h1, "h1", IpAddr::V4(H2), l2.b.mac).unwrap();
        link::neigh_permanent(&h2, "h2", IpAddr::V4(H1), l1.a.mac).unwrap();
        for (ns, dev) in [(&h1, "h1"), (&em, "ea"), (&em, "eb"), (&h2, "h2")] {
            link::wait_link_ready(ns, dev, Duration::from_secs(5)).unwrap();
        }
        Self { h1, em, h2 }
    }

    fn start(&self, ab: DirectionConfig, ba: DirectionConfig) -> LinkemHandle {
        let mut c = BridgeConfig::new("ea", "eb", ab);
        c.ba = ba;
        // For the figures in docs/linkem.md: the same runs with SCHED_FIFO.
        c.realtime = std::env::var_os("LINKEM_REALTIME").is_some();
        spawn_in_netns(&self.em, c).unwrap()
    }

    /// `n` pings h1 -> h2 every `interval_ms`; the RTTs in ms (lost ones
    /// are missing).
    fn ping(&self, n: u32, interval_ms: u32) -> Vec<f64> {
        let out = self
            .h1
            .exec_unchecked(&[
                "ping",
                "-n",
                "-c",
                &n.to_string(),
                "-i",
                &format!("{:.3}", f64::from(interval_ms) / 1000.0),
                "-W",
                "2",
                &H2.to_string(),
            ])
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split("time=").nth(1)?.split(' ').next()?.parse().ok())
            .collect()
    }
}

/// Starts `iperf3 -s -1` in h2 and waits (bounded) until it listens.
fn iperf_server(ns: &Netns) -> mongate_testbed::NsChild {
    let mut cmd = std::process::Command::new("iperf3");
    cmd.args(["-s", "-1", "-B", &H2.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let child = ns.spawn(cmd).unwrap();
    let t0 = Instant::now();
    loop {
        let out = ns.exec(&["ss", "-ltnH", "sport", "= :5201"]).unwrap();
        if !out.stdout.is_empty() {
            return child;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "iperf3 server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A bounded TCP transfer h1 -> h2; the receiver's goodput in bit/s.
fn iperf_tcp(t: &Topo, seconds: u32) -> f64 {
    let _server = iperf_server(&t.h2);
    let out =
        t.h1.exec(&[
            "iperf3",
            "-c",
            &H2.to_string(),
            "-t",
            &seconds.to_string(),
            "-J",
        ])
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap()
}

fn stats(xs: &[f64]) -> (f64, f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    (mean, sd, s[s.len() / 2])
}

fn delay(ms: f64, jitter_ms: f64) -> DirectionConfig {
    DirectionConfig {
        delay_ns: ms_to_ns(ms).unwrap(),
        jitter_ns: ms_to_ns(jitter_ms).unwrap(),
        ..DirectionConfig::default()
    }
}

/// A UDP receiver on h2: counts datagrams and notes first/last arrival,
/// until `idle` passes without one (bounded by `cap` overall).
struct Rx {
    count: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

fn receiver(ns: &Netns, idle: Duration, cap: Duration) -> std::thread::JoinHandle<Rx> {
    // A socket keeps the namespace it was created in, whatever thread uses it.
    let sock = ns
        .run_in(|| UdpSocket::bind(SocketAddr::from((H2, PORT))))
        .unwrap()
        .unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt with a valid int on our own socket.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            4,
        )
    };
    sock.set_read_timeout(Some(idle)).unwrap();
    std::thread::spawn(move || {
        let mut rx = Rx {
            count: 0,
            first: None,
            last: None,
        };
        let t0 = Instant::now();
        let mut buf = [0u8; 2048];
        while t0.elapsed() < cap {
            match sock.recv(&mut buf) {
                Ok(_) => {
                    let now = Instant::now();
                    rx.first.get_or_insert(now);
                    rx.last = Some(now);
                    rx.count += 1;
                }
                Err(_) if rx.count > 0 || t0.elapsed() > Duration::from_secs(5) => break,
                Err(_) => {}
            }
        }
        rx
    })
}

/// Sends `n` datagrams of `payload` bytes from h1 to h2 at `pps`.
fn send(ns: &Netns, n: u64, payload: usize, pps: f64) {
    let sock = ns
        .run_in(|| UdpSocket::bind(SocketAddr::from((H1, 0))))
        .unwrap()
        .unwrap();
    sock.connect(SocketAddr::from((H2, PORT))).unwrap();
    let buf = vec![0x5au8; payload];
    let t0 = Instant::now();
    for i in 0..n {
        let due = t0 + Duration::from_secs_f64(i as f64 / pps);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        // A full socket buffer is retried a bounded number of times.
        for _ in 0..1000 {
            if sock.send(&buf).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

fn print_report(r: &LinkReport) {
    println!("{}", mongate_bench::linkem::cli::summary(r));
}

#[test]
fn delay_adds_to_ping_rtt() {
    if skip("delay_adds_to_ping_rtt") {
        return;
    }
    let _g = net_lock();
    let t = Topo::new();
    let base = {
        let _h = t.start(DirectionConfig::default(), DirectionConfig::default());
        t.ping(100, 10)
    };
    let h = t.start(delay(5.0, 0.0), delay(5.0, 0.0));
    let with = t.ping(100, 20);
    let r = h.stop().unwrap();
    print_report(&r);
    assert!(base.len() >= 95 && with.len() >= 95, "pings lost");
    let (bm, _, bmed) = stats(&base);
    let (wm, wsd, wmed) = stats(&with);
    let added = wmed - bmed;
    println!(
        "delay: base RTT median {bmed:.3} ms (mean {bm:.3}); with 2 x 5 ms median {wmed:.3} ms (mean {wm:.3}, sd {wsd:.3}); added {added:.3} ms, error {:+.3} ms",
        added - 10.0
    );
    assert!((added - 10.0).abs() < 1.5, "added {added} ms, want 10");
    assert!(r.ab.bridge.max_late_ns < 50_000_000);
}

#[test]
fn loss_is_binomial() {
    if skip("loss_is_binomial") {
        return;
    }
    let _g = net_lock();
    let t = Topo::new();
    let p = 0.01;
    let n = 20_000u64;
    let lossy = DirectionConfig {
        loss: Loss::Bernoulli { p },
        ..DirectionConfig::default()
    };
    let h = t.start(lossy, DirectionConfig::default());
    let rx = receiver(&t.h2, Duration::from_millis(700), Duration::from_secs(20));
    send(&t.h1, n, 64, 20_000.0);
    let got = rx.join().unwrap().count;
    let r = h.stop().unwrap();
    print_report(&r);
    let lost = n - got;
    let sigma = (n as f64 * p * (1.0 - p)).sqrt();
    println!(
        "loss: sent {n}, received {got}, lost {lost} ({:.3} %), expected {:.0} +- {sigma:.1} (1 sigma); model: arrived {} lost {}",
        100.0 * lost as f64 / n as f64,
        n as f64 * p,
        r.ab.model.arrived,
        r.ab.model.lost
    );
    // Every frame the emulator saw is accounted for: lost at random or delivered.
    assert_eq!(r.ab.model.arrived, n, "frames reached the emulator");
    assert_eq!(r.ab.model.lost + got, n, "only random loss");
    assert!(
        (lost as f64 - n as f64 * p).abs() < 4.0 * sigma,
        "lost {lost}, want {} +- {}",
        n as f64 * p,
        4.0 * sigma
    );
}

#[test]
fn rate_is_enforced() {
    if skip("rate_is_enforced") {
        return;
    }
    let _g = net_lock();
    let t = Topo::new();
    let rate = 10_000_000u64;
    let shaped = DirectionConfig {
        rate_bps: rate,
        queue_pkts: 2000,
        ..DirectionConfig::default()
    };
    let h = t.start(shaped, DirectionConfig::default());
    let payload = 1000usize;
    let frame_bits_int = (payload as u64 + 8 + 20 + 14) * 8;
    let frame_bits = frame_bits_int as f64;
    // Offer 12 Mbit/s for 2 s: the queue builds to ~480 frames, never full.
    let pps = 12e6 / frame_bits;
    let n = 2 * 12_000_000 / frame_bits_int;
    let rx = receiver(&t.h2, Duration::from_millis(700), Duration::from_secs(20));
    send(&t.h1, n, payload, pps);
    let got = rx.join().unwrap();
    let r = h.stop().unwrap();
    print_report(&r);
    let span = got.last.unwrap() - got.first.unwrap();
    // The first frame rides the bucket; the rest arrive at the link rate.
    let achieved = (got.count - 1) as f64 * frame_bits / span.as_secs_f64();
    println!(
        "rate: configured {} Mbit/s, achieved {:.4} Mbit/s ({:+.3} %) over {} frames in {:.3} s; max queue {}",
        rate / 1_000_000,
        achieved / 1e6,
        100.0 * (achieved / rate as f64 - 1.0),
        got.count,
        span.as_secs_f64(),
        r.ab.model.max_queue
    );
    assert_eq!(got.count, n, "no drop expected below the queue limit");
    assert!(
        (achieved / rate as f64 - 1.0).abs() < 0.05,
        "achieved {achieved} bit/s"
    );
}

#[test]
fn jitter_shows_in_rtt_deviation() {
    if skip("jitter_shows_in_rtt_deviation") {
        return;
    }
    let _g = net_lock();
    let t = Topo::new();
    let j = 1.0;
    for dist in [JitterDist::Uniform, JitterDist::Normal] {
        let dir = DirectionConfig {
            jitter_dist: dist,
            ..delay(5.0, j)
        };
        let h = t.start(dir.clone(), dir);
        let rtts = t.ping(200, 20);
        let r = h.stop().unwrap();
        print_report(&r);
        assert!(rtts.len() >= 190, "pings lost");
        let (mean, sd_raw, med) = stats(&rtts);
        // The model never adds more than sqrt(3) j (uniform) or 8.6 j
        // (normal, P(>5 j) ~ 6e-7) per direction: RTTs beyond median +- 6 j
        // are the host's scheduling hiccups (see max release lateness),
        // not jitter. Few allowed; the deviation is taken without them.
        let kept: Vec<f64> = rtts
            .iter()
            .copied()
            .filter(|x| (x - med).abs() <= 6.0 * j)
            .collect();
        let (_, sd, _) = stats(&kept);
        // Two independent directions: RTT sd = sqrt(2) * j.
        let want = std::f64::consts::SQRT_2 * j;
        println!(
            "jitter {dist:?}: RTT mean {mean:.3} ms, median {med:.3} ms, sd {sd:.3} ms (want {want:.3}, {:+.1} %; raw sd {sd_raw:.3} ms with {} outliers of {})",
            100.0 * (sd / want - 1.0),
            rtts.len() - kept.len(),
            rtts.len()
        );
        assert!(rtts.len() - kept.len() <= 10, "too many outliers");
        assert!((sd / want - 1.0).abs() < 0.25, "sd {sd} ms, want {want}");
        assert!((mean - 10.0).abs() < 2.0, "mean {mean} ms");
    }
}

#[test]
fn tcp_through_a_shaped_delayed_link() {
    if skip("tcp_through_a_shaped_delayed_link") {
        return;
    }
    if !mongate_testbed::have_program("iperf3") || !mongate_testbed::have_program("ss") {
        println!("SKIP tcp_through_a_shaped_delayed_link: needs iperf3 and ss");
        return;
    }
    let _g = net_lock();
    let t = Topo::new();
    let open = {
        let _h = t.start(DirectionConfig::default(), DirectionConfig::default());
        iperf_tcp(&t, 2)
    };
    let rate = 50_000_000u64;
    let wan = DirectionConfig {
        rate_bps: rate,
        ..delay(5.0, 0.0)
    };
    let h = t.start(wan, delay(5.0, 0.0));
    let shaped = iperf_tcp(&t, 3);
    let r = h.stop().unwrap();
    print_report(&r);
    // TCP payload per 1514-byte frame: 1448 bytes (timestamps on).
    let ceiling = rate as f64 * 1448.0 / 1514.0;
    println!(
        "tcp: unshaped {:.1} Mbit/s; 50 Mbit/s + 2 x 5 ms: {:.2} Mbit/s goodput = {:.1} % of the {:.2} Mbit/s payload ceiling; queue drops {}, max queue {}",
        open / 1e6,
        shaped / 1e6,
        100.0 * shaped / ceiling,
        ceiling / 1e6,
        r.ab.model.queue_full,
        r.ab.model.max_queue
    );
    assert!(open > 100e6, "unshaped {open} bit/s");
    assert!(shaped <= ceiling * 1.01, "above the link rate: {shaped}");
    assert!(
        shaped > ceiling * 0.7,
        "TCP far below the link rate: {shaped}"
    );
}

#[test]
fn blocking_stops_and_resumes_traffic() {
    if skip("blocking_stops_and_resumes_traffic") {
        return;
    }
    let _g = net_lock();
    let t = Topo::new();
    let h = t.start(delay(1.0, 0.0), delay(1.0, 0.0));
    assert_eq!(t.ping(5, 20).len(), 5, "link up");
    h.set_blocked(true);
    assert!(t.ping(5, 20).is_empty(), "blocked link passes nothing");
    h.set_blocked(false);
    assert_eq!(t.ping(5, 20).len(), 5, "link back");
    let r = h.stop().unwrap();
    assert_eq!(r.ab.bridge.blocked, 5);
}
