//! `mongate reload` on a running gateway (issue 14: "Reload on SIGHUP (or
//! `mongate reload`): the new configuration applies whole, without dropping
//! traffic, or is refused whole with the reason while the running gateway
//! stays untouched"; "a refused reload leaves the running gateway's counters
//! and plan untouched (a test)").
//!
//! The demo's triangle (three gateways and their controls, real traffic) in
//! a run directory of the test's own; the test edits site A's files where
//! its processes read them (found from their command lines) and reloads.

mod common;

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mongate_dataplane::app::reload::ReloadOutcome;
use mongate_dataplane::stats::StatsRegion;
use mongate_dataplane::stats::flows::FlowStatsRegion;

fn mongate(run_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mongate"))
        .args(args)
        .env("MONGATE_RUN_DIR", run_dir)
        .output()
        .expect("run mongate")
}

/// `mongate reload --json`: (exit status success, the JSON answer).
fn reload(run_dir: &Path, name: &str) -> (bool, serde_json::Value) {
    let out = mongate(run_dir, &["reload", "--name", name, "--json"]);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "reload printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), v)
}

/// The value after `flag` in process `pid`'s command line.
fn arg_of(pid: u32, flag: &str) -> PathBuf {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} not in {args:?}"));
    PathBuf::from(&args[i + 1])
}

/// Packets received over every port of the gateway, and the plan epoch in force.
fn counters(run_dir: &Path, name: &str) -> (u64, u64) {
    let s = StatsRegion::open(&run_dir.join(format!("{name}.stats"))).expect("stats");
    let rx: u64 = s.snapshot().iter().flat_map(|w| w.rx_packets.iter()).sum();
    let f = FlowStatsRegion::open(&run_dir.join(format!("{name}.flows"))).expect("flows");
    let epoch = f
        .gateway_header()
        .map(|h| h.epoch.load(std::sync::atomic::Ordering::Relaxed))
        .expect("gateway header");
    (rx, epoch)
}

fn answer<'a>(v: &'a serde_json::Value, process: &str) -> &'a serde_json::Value {
    v["processes"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["process"] == process))
        .unwrap_or_else(|| panic!("no {process} answer in {v}"))
}

/// Waits (bounded) until the gateway has received more than `rx` packets.
fn wait_traffic(run_dir: &Path, name: &str, rx: u64) -> u64 {
    let t0 = Instant::now();
    loop {
        let (now, _) = counters(run_dir, name);
        if now > rx {
            return now;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no packet for 5 s after the reload"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn reload_applies_whole_or_refuses_whole_leaving_the_gateway_untouched() {
    if common::skip("reload_applies_whole_or_refuses_whole_leaving_the_gateway_untouched") {
        return;
    }
    let _g = common::net_lock();
    let dir = common::TempDir::new("mgt-reload");
    let run_dir = dir.join("run");
    // Its own process group: a failed test ends the demo and every
    // gateway and control it started (they would hold the test's locks).
    let demo = Command::new(env!("CARGO_BIN_EXE_mongate"))
        .args(["demo", "--seconds", "30", "--json", "--no-plots"])
        .env("MONGATE_RUN_DIR", &run_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start mongate demo");
    let pid = demo.id();
    let result = std::panic::catch_unwind(|| scenario(&run_dir));
    if let Err(e) = result {
        let pgid = libc::pid_t::try_from(pid).expect("pid");
        // SAFETY: kill(2) on the demo's own process group (pgid = its pid > 0).
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = demo.wait_with_output();
        if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
            for ns in String::from_utf8_lossy(&out.stdout).lines() {
                let ns = ns.split_whitespace().next().unwrap_or("");
                if ns.starts_with(&format!("mgdemo{pid}-")) {
                    let _ = Command::new("ip").args(["netns", "del", ns]).status();
                }
            }
        }
        std::panic::resume_unwind(e);
    }
    // The demo runs to its end and cleans up after itself (its verdict is
    // not this test's: the reload lowered A-C's planned capacity).
    let _ = demo.wait_with_output();
}

fn scenario(run_dir: &Path) {
    // Site A's gateway, once its control runs a plan.
    let t0 = Instant::now();
    let (name, dp, ctl) = loop {
        let found = std::fs::read_dir(run_dir).ok().and_then(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find_map(|f| {
                    f.strip_suffix("-A.control.reload")
                        .map(|n| format!("{n}-A"))
                })
        });
        if let Some(name) = found {
            let dp = ReloadOutcome::read(&run_dir.join(format!("{name}.dataplane.reload")));
            let ctl = ReloadOutcome::read(&run_dir.join(format!("{name}.control.reload")));
            if let (Some(dp), Some(ctl)) = (dp, ctl)
                && counters(run_dir, &name).1 > 0
            {
                break (name, dp, ctl);
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(45),
            "site A's gateway and control did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!((dp.generation, ctl.generation), (0, 0));
    let config = arg_of(dp.pid, "--config");
    let instance = arg_of(ctl.pid, "--instance");
    let site_text = std::fs::read_to_string(&config).unwrap();
    let inst_text = std::fs::read_to_string(&instance).unwrap();

    // 1. Invalid files: refused by both, every reason with file, line and
    //    field; plan and counters untouched, traffic flows on.
    let (rx0, epoch0) = counters(run_dir, &name);
    let bad = site_text.replacen("vni = ", "vni = -", 1);
    assert_ne!(bad, site_text, "the test's edit did not apply");
    std::fs::write(&config, &bad).unwrap();
    let (ok, v) = reload(run_dir, &name);
    assert!(!ok, "an invalid configuration was not refused: {v}");
    for p in ["dataplane", "control"] {
        let a = answer(&v, p);
        assert_eq!(a["applied"], false, "{v}");
        let msg = a["message"].as_str().unwrap();
        let file = config.display().to_string();
        assert!(
            msg.lines()
                .any(|l| l.starts_with(&format!("{file}:")) && l.contains("site.vni")),
            "{p}'s refusal does not name file, line and field site.vni: {msg}"
        );
    }
    let (rx1, epoch1) = counters(run_dir, &name);
    assert_eq!(epoch1, epoch0, "a refused reload changed the plan");
    assert!(rx1 >= rx0, "a refused reload reset the counters");
    wait_traffic(run_dir, &name, rx1);

    // 2. A valid file with a change that needs a restart: refused whole,
    //    even with a live change beside it.
    let restart = site_text.replacen("[site]\n", "[site]\nsession_idle_timeout_seconds = 45\n", 1);
    let restart = restart.replacen("capacity_mbps = ", "capacity_mbps = 1", 1);
    assert_ne!(restart, site_text);
    std::fs::write(&config, &restart).unwrap();
    let (ok, v) = reload(run_dir, &name);
    assert!(!ok, "an uplink change was not refused: {v}");
    let msg = answer(&v, "dataplane")["message"].as_str().unwrap();
    assert!(
        msg.contains("[[uplinks]]") && msg.contains("restart"),
        "{msg}"
    );
    let (rx2, epoch2) = counters(run_dir, &name);
    assert_eq!(epoch2, epoch0, "a refused reload changed the plan");
    assert!(rx2 >= rx1);

    // 3. Accepted: a new idle timeout (the dataplane) and a new instance (the
    //    control re-plans at once, with A-C's capacity lowered); the same
    //    processes, traffic on.
    let live = site_text.replacen("[site]\n", "[site]\nsession_idle_timeout_seconds = 45\n", 1);
    std::fs::write(&config, &live).unwrap();
    let mut inst: serde_json::Value = serde_json::from_str(&inst_text).unwrap();
    let links = inst["links"].as_array_mut().unwrap();
    let ac = links
        .iter_mut()
        .find(|l| l["id"] == "A-C")
        .expect("link A-C");
    ac["capacity"] = serde_json::json!(ac["capacity"].as_f64().unwrap() * 0.7);
    std::fs::write(&instance, serde_json::to_string_pretty(&inst).unwrap()).unwrap();
    let (_, epoch_before) = counters(run_dir, &name);
    let (ok, v) = reload(run_dir, &name);
    assert!(ok, "a valid reload was refused: {v}");
    let dmsg = answer(&v, "dataplane")["message"].as_str().unwrap();
    assert!(dmsg.contains("idle timeout 45 s"), "{dmsg}");
    let cmsg = answer(&v, "control")["message"].as_str().unwrap();
    assert!(cmsg.contains("new instance"), "{cmsg}");
    for p in ["dataplane", "control"] {
        let pid = answer(&v, p)["pid"].as_u64().unwrap();
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "{p} (pid {pid}) is gone after the reload"
        );
    }
    assert_eq!(answer(&v, "dataplane")["pid"], u64::from(dp.pid));
    // The control's next plan says why it was solved.
    let t1 = Instant::now();
    loop {
        let st = mongate(
            run_dir,
            &["status", "--name", &name, "--json", "--interval-ms", "50"],
        );
        let s: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap_or_default();
        let g = &s["gateways"][0];
        let epoch = g["plan"]["epoch"].as_u64().unwrap_or(0);
        let why = g["optimizer"]["triggers"].to_string();
        if epoch > epoch_before && why.contains("reload") {
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(15),
            "no plan for the reloaded instance: {s}"
        );
    }
    let (rx3, _) = counters(run_dir, &name);
    wait_traffic(run_dir, &name, rx3);
    std::fs::write(&config, &site_text).unwrap();
    std::fs::write(&instance, &inst_text).unwrap();
}
