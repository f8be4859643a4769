//! Real applications get their plan from the first second (issue 12), tried as a new user
//! would: three sites whose links are mongate's link emulator (20 Mbit/s, 5 ms each way), a
//! gateway and a `mongate-control run` (PFO plans, demand from the sessions) per site, and
//! unmodified clients on the LAN hosts, each after the overlay sat idle:
//! - `iperf3` TCP with 4 streams from A to C, the class planned at 18 Mbit/s: the idle period
//!   let the control shrink the class to one admitted session, so the streams beyond it are
//!   refused first; they must count as demand at once (re-plan) and the transfer must reach
//!   90 % of the plan within 2 s;
//! - `iperf3` UDP at 8 Mbit/s, well below its class's plan: under 1 % loss, from the first
//!   second on;
//! - short TCP connections (3 x the class's admitted sessions, one after the other, 1 MB
//!   each): every one runs at its plan's rate, at least 3/4 of one session's (a closed
//!   connection frees its session at once; before, closed connections held their sessions
//!   for the 30 s idle timeout and the next ones went best effort, 1 Mbit/s).
//!
//! Printed before asserting: the plans' targets, iperf3's rate per half second, the UDP loss
//! per second, each short connection's time.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mongate_bench::linkem::{BridgeConfig, DirectionConfig, LinkemHandle, spawn_in_netns};
use mongate_dataplane::app::{GatewayConfig, RunningDataplane, start_gateway};
use mongate_dataplane::bpf::XdpMode;
use mongate_dataplane::config::Config;
use mongate_dataplane::overlay::FlowCounters;
use mongate_dataplane::stats::flows::{FlowStatsRegion, flows_path};
use mongate_dataplane::worker::IdlePolicy;
use mongate_testbed::topology::triangle::{PORT_AC, PORT_TCP_DIRECT, triangle_overlay};
use mongate_testbed::{Netns, NsChild, Sites, SitesTopology};

const PREFIX: &str = "mgapp";
const SITES: [&str; 3] = ["A", "B", "C"];
/// The wire: rate and one-way delay of every link.
const LINK_MBPS: u64 = 20;
const ONE_WAY_MS: u64 = 5;
/// TCP A->C's plan: 4 sessions x 4.5 Mbit/s.
const TCP_PLAN_MBPS: f64 = 18.0;
/// TCP A->C's sessions in that plan.
const TCP_SESSIONS: f64 = 4.0;
/// The overlay sits idle this long (longer than the control's 5 s demand hold).
const IDLE: Duration = Duration::from_secs(8);

/// The organisation's instance: TCP A->C worth 2 per Mbit/s up to 4.5 Mbit/s per session (4
/// sessions: 18 Mbit/s on A-C); its ACKs (tcp-C->A) worth 4 per Mbit/s up to 0.25 per session;
/// UDP A->C worth 1 per Mbit/s up to 18 (1 session: direct is full, so via B). The links'
/// capacities leave the wire's headroom for the overlay's headers.
fn instance(dir: &Path) -> PathBuf {
    let text = r#"{
  "links": [{"id": "A-B", "capacity": 18.0}, {"id": "A-C", "capacity": 19.0},
            {"id": "B-C", "capacity": 18.0}],
  "classes": [
    {"id": "A->C", "sessions": 1, "utility": {"piecewise_linear": [[0.0, 0.0], [18.0, 18.0]]}},
    {"id": "B->C", "sessions": 0, "utility": {"linear": {"slope": 1.0}}},
    {"id": "tcp-via-B", "sessions": 0, "utility": {"linear": {"slope": 1.0}}},
    {"id": "tcp-A->C", "sessions": 4, "utility": {"piecewise_linear": [[0.0, 0.0], [4.5, 9.0]]}},
    {"id": "tcp-C->A", "sessions": 4, "utility": {"piecewise_linear": [[0.0, 0.0], [0.25, 1.0]]}}
  ],
  "flows": [
    {"id": "A->C/direct", "class": "A->C", "links": ["A-C"]},
    {"id": "A->C/via-B", "class": "A->C", "links": ["A-B", "B-C"]},
    {"id": "B->C/direct", "class": "B->C", "links": ["B-C"]},
    {"id": "B->C/via-A", "class": "B->C", "links": ["A-B", "A-C"]},
    {"id": "tcp-via-B", "class": "tcp-via-B", "links": ["A-B", "B-C"]},
    {"id": "tcp-A->C", "class": "tcp-A->C", "links": ["A-C"]},
    {"id": "tcp-C->A", "class": "tcp-C->A", "links": ["A-C"]}
  ]
}
"#;
    let path = dir.join("instance.json");
    std::fs::write(&path, text).unwrap();
    path
}

struct Overlay {
    topo: SitesTopology,
    names: Vec<String>,
    _controls: Vec<NsChild>,
    _gws: Vec<RunningDataplane>,
    _linkem: Vec<LinkemHandle>,
    dir: PathBuf,
}

impl Drop for Overlay {
    fn drop(&mut self) {
        if std::env::var_os("MONGATE_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn start(dir: &Path) -> Overlay {
    let mut s = Sites::triangle().prefix(PREFIX);
    s.disable_offloads = true;
    let topo = s.build().expect("build triangle");
    let mut linkem = Vec::new();
    for l in ["ab", "ac", "bc"] {
        let d = DirectionConfig {
            rate_bps: LINK_MBPS * 1_000_000,
            delay_ns: ONE_WAY_MS * 1_000_000,
            queue_pkts: 128,
            ..DirectionConfig::default()
        };
        let mut bc = BridgeConfig::new("xa", "xb", d);
        // Normal priority: SCHED_FIFO emulators would starve the gateways on 2 cores.
        bc.realtime = false;
        let h = spawn_in_netns(&topo.link(l).unwrap().wire_ns, bc)
            .unwrap_or_else(|e| panic!("link emulator on {l}: {e:#}"));
        linkem.push(h);
    }
    let spec = triangle_overlay(None);
    let inst = instance(dir);
    let ctl = Path::new(env!("CARGO_BIN_EXE_mongate")).with_file_name("mongate-control");
    assert!(
        ctl.exists(),
        "{} missing: cargo build --release --workspace",
        ctl.display()
    );
    let (mut gws, mut controls, mut names) = (Vec::new(), Vec::new(), Vec::new());
    for site in SITES {
        let text = topo.site_config(site, &spec).unwrap();
        let file = dir.join(format!("site-{site}.toml"));
        std::fs::write(&file, &text).unwrap();
        let cfg = Config::from_toml_str(&text, &format!("{site}.toml")).unwrap();
        let mut gc = GatewayConfig::new(cfg);
        let name = format!("{PREFIX}{}-{site}", std::process::id());
        gc.name = name.clone();
        gc.xdp_mode = XdpMode::Native;
        gc.control = true;
        gc.idle = IdlePolicy {
            spin: 200,
            sleep_us: 50,
        };
        let ns = &topo.site(site).unwrap().gw_ns;
        let dp = ns
            .run_in(move || start_gateway(&gc))
            .expect("enter gw ns")
            .unwrap_or_else(|e| panic!("gateway {site}: {e:#}"));
        gws.push(dp);
        // The product's control: default re-planning (periodic, demand, refusals).
        let log = std::fs::File::create(dir.join(format!("control-{site}.log"))).unwrap();
        let mut cmd = Command::new(&ctl);
        cmd.args(["run", "--no-paths", "--name", &name])
            .arg("--config")
            .arg(&file)
            .arg("--instance")
            .arg(&inst)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        controls.push(ns.spawn(cmd).unwrap());
        names.push(name);
    }
    Overlay {
        topo,
        names,
        _controls: controls,
        _gws: gws,
        _linkem: linkem,
        dir: dir.to_path_buf(),
    }
}

impl Overlay {
    fn lan(&self, site: &str) -> &Netns {
        &self.topo.site(site).unwrap().lan_ns
    }
    fn host(&self, site: &str) -> Ipv4Addr {
        self.topo.site(site).unwrap().host_if().v4.unwrap().addr
    }
    /// Flow `id`'s counters at its origin `site`.
    fn flow(&self, site: &str, id: &str) -> Option<FlowCounters> {
        let i = SITES.iter().position(|s| *s == site)?;
        let r = FlowStatsRegion::open(&flows_path(&self.names[i])).ok()?;
        r.totals().into_iter().find(|(f, _)| f == id).map(|x| x.1)
    }
    /// Planned aggregate rate of flow `id`, Mbit/s (rate units of 1250 B).
    fn target_mbps(&self, site: &str, id: &str) -> f64 {
        self.flow(site, id)
            .map_or(0.0, |c| c.target_pps * 1250.0 * 8.0 / 1e6)
    }
}

fn iperf3(ns: &Netns, args: &[&str]) -> serde_json::Value {
    let mut argv = vec!["iperf3"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["-J", "--connect-timeout", "3000"]);
    let out = ns.exec_unchecked(&argv).unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "iperf3 output ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Waits up to `timeout` for `ok`.
fn wait_for(timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn applications_get_their_plan_from_the_first_second() {
    if common::skip("applications_get_their_plan_from_the_first_second") {
        return;
    }
    if !Path::new("/usr/bin/iperf3").exists() {
        println!("SKIP applications_get_their_plan_from_the_first_second: iperf3 missing");
        return;
    }
    let _g = common::net_lock();
    let dir = std::env::temp_dir().join(format!("mgapp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ov = start(&dir);
    assert!(
        wait_for(Duration::from_secs(30), || {
            ov.target_mbps("A", "tcp-A->C") > 0.0 && ov.target_mbps("A", "A->C/via-B") > 0.0
        }),
        "no plan from the controls within 30 s"
    );
    let planned = ov.target_mbps("A", "tcp-A->C");
    println!(
        "plans: tcp-A->C {planned:.2} Mbit/s, A->C via B {:.2}, A->C direct {:.2}, tcp-C->A {:.2}",
        ov.target_mbps("A", "A->C/via-B"),
        ov.target_mbps("A", "A->C/direct"),
        ov.target_mbps("C", "tcp-C->A")
    );
    assert!(
        (planned - TCP_PLAN_MBPS).abs() < 0.5,
        "TCP's plan is {planned} Mbit/s"
    );

    // iperf3 servers at C.
    let c = ov.host("C").to_string();
    let mut servers = Vec::new();
    for port in [PORT_TCP_DIRECT, PORT_AC] {
        let mut srv = Command::new("iperf3");
        srv.args(["-s", "-J", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        servers.push(ov.lan("C").spawn(srv).unwrap());
    }

    // 1. TCP, 4 streams, after the overlay sat idle.
    std::thread::sleep(IDLE);
    let idle_target = ov.target_mbps("A", "tcp-A->C");
    let v = iperf3(
        ov.lan("A"),
        &[
            "-c",
            &c,
            "-p",
            &PORT_TCP_DIRECT.to_string(),
            "-P",
            "4",
            "-t",
            "4",
            "-i",
            "0.5",
        ],
    );
    let tcp: Vec<(f64, f64)> = v["intervals"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| {
                    Some((
                        i["sum"]["end"].as_f64()?,
                        i["sum"]["bits_per_second"].as_f64()? / 1e6,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    println!(
        "TCP after {IDLE:?} idle (the class's target had become {idle_target:.2} Mbit/s), \
         Mbit/s per half second: {tcp:.1?}"
    );

    // 2. UDP at 8 Mbit/s after idle.
    std::thread::sleep(IDLE);
    let v = iperf3(
        ov.lan("A"),
        &[
            "-c",
            &c,
            "-p",
            &PORT_AC.to_string(),
            "-u",
            "-b",
            "8M",
            "-l",
            "1200",
            "-t",
            "4",
            "--get-server-output",
        ],
    );
    let udp: Vec<f64> = v["server_output_json"]["intervals"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["sum"]["lost_percent"].as_f64())
                .collect()
        })
        .unwrap_or_default();
    let udp_total = v["end"]["sum"]["lost_percent"].as_f64();
    println!(
        "UDP at 8 Mbit/s after {IDLE:?} idle: lost % per second {udp:.2?}, total {udp_total:?}"
    );

    // 3. Short TCP connections, one after the other: 12 = 3 x the class's 4 sessions.
    let port = 5210u16;
    let listener = ov
        .lan("C")
        .run_in(move || TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
        .unwrap()
        .unwrap();
    listener.set_nonblocking(false).unwrap();
    let server = std::thread::spawn(move || {
        let mut got = Vec::new();
        for _ in 0..12 {
            let Ok((mut s, _)) = listener.accept() else {
                break;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
            let mut buf = vec![0u8; 65536];
            let mut n = 0usize;
            while let Ok(k) = s.read(&mut buf) {
                if k == 0 {
                    break;
                }
                n += k;
            }
            got.push(n);
        }
        got
    });
    let dst = SocketAddr::from((ov.host("C"), port));
    let times = ov
        .lan("A")
        .run_in(move || {
            let data = vec![0x5au8; 1 << 20];
            (0..12)
                .map(|_| {
                    let t = Instant::now();
                    let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(3))?;
                    s.set_write_timeout(Some(Duration::from_secs(20)))?;
                    s.write_all(&data)?;
                    s.shutdown(std::net::Shutdown::Write)?;
                    let _ = s.read(&mut [0u8; 1]);
                    Ok(t.elapsed().as_secs_f64())
                })
                .collect::<std::io::Result<Vec<f64>>>()
        })
        .unwrap()
        .expect("short connections");
    let got = server.join().unwrap();
    println!("short connections of 1 MB: seconds each {times:.2?}; bytes received {got:?}");
    for s in &servers {
        let _ = s.stop(Duration::from_secs(1));
    }
    drop(ov);

    // TCP: 90 % of the plan within 2 s of starting after idle: the second half of the first
    // 2 s (iperf3's half seconds swing by +-10 % around the pacer's rate), and the whole run.
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let second: Vec<f64> = tcp
        .iter()
        .filter(|(end, _)| *end > 1.25 && *end < 2.25)
        .map(|x| x.1)
        .collect();
    assert!(
        second.len() == 2 && mean(&second) >= 0.9 * TCP_PLAN_MBPS,
        "TCP over 1-2 s: {second:?} Mbit/s, want >= 90 % of {TCP_PLAN_MBPS}: {tcp:?}"
    );
    let all: Vec<f64> = tcp.iter().map(|x| x.1).collect();
    assert!(mean(&all) >= 0.9 * TCP_PLAN_MBPS, "TCP over 4 s: {tcp:?}");
    // UDP below its plan: under 1 % loss in every second, the first included.
    assert!(!udp.is_empty(), "no UDP intervals");
    assert!(udp.iter().all(|l| *l < 1.0), "UDP loss per second {udp:?}");
    // Short connections: every one at its plan's rate, not best effort (1 Mbit/s: 8 s for
    // 1 MB). The plan follows the demand: while the 4 streams' demand holds (5 s) the class
    // has 4 sessions and a connection, alone on the flow, gets all 18 Mbit/s (0.5 s); one
    // connection at a time is a demand of 1 or 2 sessions at the next periodic re-plan (a
    // control log here: epoch 8, class tcp-A->C 2 sessions, 9 Mbit/s: 1.0 s each), planned at
    // 4.5 Mbit/s each (1 MB in 1.9 s at one session's rate: a CI run saw 2.07 s, TCP's ramp
    // included). The bound: 3/4 of one session's rate.
    assert_eq!(got, vec![1 << 20; 12], "every byte of every connection");
    let bound = 8.0 * 1.048_576 / (0.75 * TCP_PLAN_MBPS / TCP_SESSIONS);
    assert!(
        times.iter().all(|t| *t < bound),
        "a short connection ran slower than 3/4 of one session's plan ({bound:.2} s): {times:?}"
    );
}
