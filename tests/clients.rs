//! Unmodified clients across the secure overlay, as a new user would try
//! it: the MON triangle in network namespaces, one `mongate` gateway and
//! one `mongate-control` (keys, handshakes, plans) per site, then from A's
//! LAN host to C's: `ping` as soon as the gateways are up, `curl` of a file
//! served by python's `http.server` (sha256 compared), the overlay left
//! idle, then `iperf3` TCP while a host that is no peer sends forged
//! overlay traffic (`mongate-bench attack`) at C's gateway.
//!
//! Printed before asserting: time to the first ping answer, ping loss,
//! curl's result, iperf3's rate per second (the first second after the
//! idle period included) with and without the attack.

mod common;
#[path = "common/secure.rs"]
mod secure;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mongate_dataplane::app::{GatewayConfig, RunningDataplane, start_gateway};
use mongate_dataplane::bpf::XdpMode;
use mongate_dataplane::worker::IdlePolicy;
use mongate_testbed::topology::triangle::{PORT_TCP_DIRECT, triangle_overlay};
use mongate_testbed::{Netns, NsChild, PlanSpec, Sites, SitesTopology};

const PREFIX: &str = "mgcli";
const SITES: [&str; 3] = ["A", "B", "C"];
/// The overlay sits idle this long before iperf3 starts.
const IDLE: Duration = Duration::from_secs(10);
/// iperf3's run.
const IPERF_SECONDS: u32 = 5;
/// curl's file.
const FILE_BYTES: usize = 2 << 20;
/// A file server (`python3 -c HTTP_SERVER ADDRESS PORT DIRECTORY`):
/// `http.server`'s, bound without looking its address up in the DNS.
const HTTP_SERVER: &str = "\
import functools, http.server, socketserver, sys
class S(http.server.ThreadingHTTPServer):
    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[3])
S((sys.argv[1], int(sys.argv[2])), h).serve_forever()
";

fn plan() -> PlanSpec {
    secure::plan_spec(
        &[
            ("A->C", 1),
            ("B->C", 1),
            ("tcp-A->C", 2),
            ("tcp-via-B", 1),
            ("tcp-C->A", 2),
        ],
        &[
            ("A->C/direct", 1.0),
            ("A->C/via-B", 0.0),
            ("B->C/direct", 1.0),
            ("B->C/via-A", 0.0),
            ("tcp-A->C", 3.0),
            ("tcp-via-B", 1.0),
            ("tcp-C->A", 0.5),
        ],
    )
}

struct Overlay {
    topo: SitesTopology,
    gws: Vec<RunningDataplane>,
    _controls: Vec<NsChild>,
    dir: PathBuf,
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(dir: &Path) -> Overlay {
    let mut s = Sites::triangle().prefix(PREFIX);
    s.disable_offloads = true;
    let topo = s.build().expect("build triangle");
    let mut spec = triangle_overlay(Some(plan()));
    spec.keys = Some(secure::keys(dir, &SITES));
    let instance = secure::instance(dir, &spec, &plan(), |n| {
        format!(
            r#"{{"piecewise_linear": [[0.0, 0.0], [{n}.0, {}.0]]}}"#,
            2 * n
        )
    });
    let mut gws = Vec::new();
    let mut controls = Vec::new();
    for site in SITES {
        let text = topo.site_config(site, &spec).unwrap();
        let file = dir.join(format!("site-{site}.toml"));
        std::fs::write(&file, &text).unwrap();
        let cfg = secure::parse_site(site, &text);
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
        controls.push(secure::start_control(ns, dir, &file, &instance, &name));
        gws.push(dp);
    }
    Overlay {
        topo,
        gws,
        _controls: controls,
        dir: dir.to_path_buf(),
    }
}

fn host(topo: &SitesTopology, site: &str) -> String {
    topo.site(site)
        .unwrap()
        .host_if()
        .v4
        .unwrap()
        .addr
        .to_string()
}

fn lan<'a>(topo: &'a SitesTopology, site: &str) -> &'a Netns {
    &topo.site(site).unwrap().lan_ns
}

/// iperf3 TCP from A's host to C's host: bits/s per interval.
fn iperf(topo: &SitesTopology, c_host: &str) -> Vec<f64> {
    let out = lan(topo, "A")
        .exec_unchecked(&[
            "iperf3",
            "-c",
            c_host,
            "-p",
            &PORT_TCP_DIRECT.to_string(),
            "-t",
            &IPERF_SECONDS.to_string(),
            "-J",
            "--connect-timeout",
            "3000",
        ])
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "iperf3 output ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["intervals"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["sum"]["bits_per_second"].as_f64())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn unmodified_clients_cross_the_secure_overlay() {
    if common::skip("unmodified_clients_cross_the_secure_overlay") {
        return;
    }
    for prog in ["iperf3", "curl", "ping", "python3"] {
        if !mongate_testbed::have_program(prog) {
            println!("SKIP unmodified_clients_cross_the_secure_overlay: no {prog}");
            return;
        }
    }
    let _g = common::net_lock();
    let dir = std::env::temp_dir().join(format!("{PREFIX}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t0 = Instant::now();
    let ov = start(&dir);
    let topo = &ov.topo;
    let c_host = host(topo, "C");

    // ping as soon as the gateways run: the first answer comes once the
    // handshakes are done.
    let mut first = None;
    while t0.elapsed() < Duration::from_secs(20) {
        let o = lan(topo, "A")
            .exec_unchecked(&["ping", "-c", "1", "-W", "1", &c_host])
            .unwrap();
        if o.status.success() {
            first = Some(t0.elapsed());
            break;
        }
    }
    println!("first ping answer {first:?} after the gateways started");
    let ping = lan(topo, "A")
        .exec_unchecked(&["ping", "-q", "-c", "20", "-i", "0.2", "-W", "1", &c_host])
        .unwrap();
    let ping_out = String::from_utf8_lossy(&ping.stdout).to_string();
    println!("{ping_out}");

    // curl a file from C's host (python's http.server), sha256 compared.
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let mut data = vec![0u8; FILE_BYTES];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in &mut data {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x.to_le_bytes()[0];
    }
    std::fs::write(www.join("file.bin"), &data).unwrap();
    // python's http.server, without the reverse lookup of its address
    // (`HTTPServer.server_bind` calls `socket.getfqdn`): C's host has no
    // resolver, and its query to the machine's nameserver went to C's
    // gateway (no site's prefix: dropped) and timed out after 10 s, while
    // curl's connections were refused.
    let mut server = Command::new("python3");
    server
        .args(["-c", HTTP_SERVER, &c_host, "8080"])
        .arg(&www)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _http = lan(topo, "C").spawn(server).unwrap();
    let got = dir.join("got.bin");
    let url = format!("http://{c_host}:8080/file.bin");
    let mut curl_ok = false;
    // Each attempt: curl's exit status, its time to connect and in all.
    let mut attempts = Vec::new();
    let t_curl = Instant::now();
    while t_curl.elapsed() < Duration::from_secs(30) {
        let o = lan(topo, "A")
            .exec_unchecked(&[
                "curl",
                "-sS",
                "--max-time",
                "20",
                "-w",
                "%{time_connect} %{time_total}",
                "-o",
                got.to_str().unwrap(),
                &url,
            ])
            .unwrap();
        attempts.push(format!(
            "exit {:?}, connect/total s {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).trim()
        ));
        if o.status.success() {
            curl_ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let same = std::fs::read(&got).is_ok_and(|g| g == data);
    println!(
        "curl: ok {curl_ok}, same bytes {same}, {:?}; attempts: {attempts:?}",
        t_curl.elapsed()
    );

    // iperf3 after the overlay sat idle, then again under attack.
    let mut srv = Command::new("iperf3");
    srv.args(["-s", "-p", &PORT_TCP_DIRECT.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _iperf_srv = lan(topo, "C").spawn(srv).unwrap();
    std::thread::sleep(IDLE);
    let quiet = iperf(topo, &c_host);
    println!("iperf3 after {IDLE:?} idle, bit/s per second: {quiet:.0?}");

    let link = topo.link("ac").unwrap();
    let gw = link.b_if();
    let gw_mac = gw.mac.0;
    let mac = |m: [u8; 6]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let gw4 = gw.v4.unwrap().addr;
    let [a, b, c, _] = gw4.octets();
    let bench = Path::new(env!("CARGO_BIN_EXE_mongate")).with_file_name("mongate-bench");
    let mut atk = Command::new(&bench);
    atk.args([
        "attack",
        "--ifname",
        "xb",
        "--src-mac",
        "02:66:00:00:00:09",
        "--dst-mac",
        &mac(gw_mac),
        "--dst-ip",
        &gw4.to_string(),
        "--src-ip",
        &format!("{a}.{b}.{c}.66"),
        "--vni",
        &triangle_overlay(None).vni.to_string(),
        "--data-flows",
        "tcp-A->C,A->C/direct",
        "--inner-src",
        &host(topo, "A"),
        "--inner-dst",
        &c_host,
        "--rate-pps",
        "20000",
        "--seconds",
        "6",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let drops = |gw: &RunningDataplane| -> u64 {
        gw.snapshot()
            .iter()
            .flat_map(|w| w.drops.iter())
            .filter(|(k, _)| k.starts_with("auth_") || k.as_str() == "bad_overlay")
            .map(|(_, v)| *v)
            .sum()
    };
    let before = drops(&ov.gws[2]);
    let attacker = link.wire_ns.spawn(atk).unwrap();
    let attacked = iperf(topo, &c_host);
    let _ = attacker.wait_timeout(Duration::from_secs(10));
    let mut report = String::new();
    if let Some(mut e) = attacker.take_stdout() {
        let _ = std::io::Read::read_to_string(&mut e, &mut report);
    }
    let refused = drops(&ov.gws[2]) - before;
    println!("iperf3 under attack, bit/s per second: {attacked:.0?}");
    println!("attacker: {}", report.trim());
    println!("C's gateway dropped {refused} forged frames (auth_*, bad_overlay)");

    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    assert!(first.is_some(), "no ping answer within 20 s");
    assert!(ping_out.contains(" 0% packet loss"), "{ping_out}");
    assert!(curl_ok && same, "curl across the overlay");
    assert!(!quiet.is_empty() && !attacked.is_empty());
    assert!(refused > 10_000, "the attack did not reach C's gateway");
    // No second without progress. Before the remote host's RST freed its
    // session's admission at A, curl's retries while C's server started
    // (connection refused) held the TCP class's 2 sessions for 30 s; iperf3's
    // connection, refused, went best effort and stalled for whole seconds.
    assert!(
        quiet.iter().chain(&attacked).all(|&b| b > 0.0),
        "a second without progress: {quiet:?} {attacked:?}"
    );
    // The rate under attack against the same client's without: TCP over
    // this overlay swings by up to 2x from second to second (its MONtra
    // controller and pacing, issue 12), so the bound is on the mean; the
    // strict rate check under attack is tests/hostile.rs's.
    assert!(
        mean(&attacked) >= 0.8 * mean(&quiet),
        "iperf3 under attack {attacked:?} vs {quiet:?}"
    );
}
