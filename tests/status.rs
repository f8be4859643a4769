//! `mongate status` on the running triangle: the demo's three gateways (and
//! their controls) with traffic, in a run directory of the test's own; the
//! status report against the gateways' own counters and the demo's summary
//! (issue 14: "the status CLI ... and the demo's summary report the same
//! figures within measurement noise"), and the human table naming every
//! peer, path and flow.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mongate_dataplane::stats::flows::FlowStatsRegion;

fn status(run_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mongate"))
        .arg("status")
        .args(args)
        .env("MONGATE_RUN_DIR", run_dir)
        .output()
        .expect("run mongate status")
}

fn status_json(run_dir: &std::path::Path, interval_ms: u32) -> serde_json::Value {
    let out = status(
        run_dir,
        &["--json", "--interval-ms", &interval_ms.to_string()],
    );
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

/// Delivered bytes per flow at the gateway that delivers it, read directly.
fn delivered_bytes(run_dir: &std::path::Path, names: &[String]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for n in names {
        if let Ok(r) = FlowStatsRegion::open(&run_dir.join(format!("{n}.flows"))) {
            for (id, c) in r.totals() {
                *m.entry(id).or_default() += c.rx_bytes;
            }
        }
    }
    m
}

#[test]
fn status_reports_the_triangle_as_its_gateways_and_the_demo_do() {
    if common::skip("status_reports_the_triangle_as_its_gateways_and_the_demo_do") {
        return;
    }
    let _g = common::net_lock();
    let dir = common::TempDir::new("mgt-status");
    let run_dir = dir.join("run");
    let demo = Command::new(env!("CARGO_BIN_EXE_mongate"))
        .args(["demo", "--seconds", "16", "--json", "--no-plots"])
        .env("MONGATE_RUN_DIR", &run_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mongate demo");
    // Wait (bounded) until the three gateways run a plan from their controls
    // and every planned flow is delivered.
    let t0 = Instant::now();
    let ready = |v: &serde_json::Value| {
        let gws = v["gateways"].as_array().unwrap();
        gws.len() == 3
            && gws
                .iter()
                .all(|g| g["control"]["attached"] == true && g["plan"]["epoch"].as_u64() > Some(0))
            && v["flows"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["target_mbps"].as_f64() > Some(0.0))
                .all(|f| f["delivered_mbps"].as_f64() > Some(0.0))
            && v["flows"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["target_mbps"].as_f64() > Some(0.0))
    };
    loop {
        let v = status_json(&run_dir, 200);
        if ready(&v) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(45),
            "the triangle did not come up: {v}"
        );
    }
    // The metrics exporter, in a namespace of the test's own (listening on a
    // benchmarking address there), reading the same run directory, every 2 s.
    let ns = mongate_testbed::Netns::new("mgt-stm").expect("namespace");
    ns.ip(&["link", "set", "lo", "up"]).unwrap();
    ns.ip(&["addr", "add", "198.18.255.1/32", "dev", "lo"])
        .unwrap();
    let site = dir.join("metrics-site.toml");
    std::fs::write(
        &site,
        include_str!("../docs/examples/triangle/site-a.toml").replacen(
            "[security]",
            "[metrics]\nlisten = \"198.18.255.1:9464\"\n\n[security]",
            1,
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mongate"));
    cmd.args([
        "metrics",
        "--config",
        site.to_str().unwrap(),
        "--interval-ms",
        "2000",
    ])
    .env("MONGATE_RUN_DIR", &run_dir);
    let exporter = ns.spawn(cmd).expect("start mongate metrics");
    // Let the rates settle (the demo's window starts a few seconds in),
    // measured as status itself measures: a 3 s reading, bracketed by
    // direct readings of the destination counters.
    let settle = status_json(&run_dir, 3000);
    let names: Vec<String> = settle["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect();
    let before = delivered_bytes(&run_dir, &names);
    let t_before = Instant::now();
    let v = status_json(&run_dir, 3000);
    let direct_s = t_before.elapsed().as_secs_f64();
    let after = delivered_bytes(&run_dir, &names);
    // A scrape (the exporter has sampled for at least 3 s by now).
    let scrape = ns
        .run_in(|| {
            use std::io::{Read, Write};
            // Scrapers that hang up early (before asking; before reading the
            // answer) leave the server serving.
            drop(std::net::TcpStream::connect("198.18.255.1:9464")?);
            let mut early = std::net::TcpStream::connect("198.18.255.1:9464")?;
            early.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
            drop(early);
            let mut c = std::net::TcpStream::connect("198.18.255.1:9464")?;
            c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
            let mut s = String::new();
            c.read_to_string(&mut s)?;
            Ok::<_, std::io::Error>(s)
        })
        .unwrap()
        .expect("scrape");
    exporter.stop(Duration::from_secs(2)).unwrap();
    let human = status(&run_dir, &["--interval-ms", "300"]);
    assert!(human.status.success());
    let human = String::from_utf8(human.stdout).unwrap();
    let watch = status(
        &run_dir,
        &["--json", "--watch", "--count", "2", "--interval-ms", "100"],
    );
    assert!(watch.status.success());
    let out = demo.wait_with_output().expect("demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("demo JSON");
    println!("status: {}", serde_json::to_string_pretty(&v).unwrap());
    println!("{human}");

    // --watch --count 2: two reports, one a line.
    let lines: Vec<&str> = std::str::from_utf8(&watch.stdout)
        .unwrap()
        .lines()
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for l in lines {
        let r: serde_json::Value = serde_json::from_str(l).expect("a report a line");
        assert_eq!(r["format"], 1);
    }

    let interval = v["interval_s"].as_f64().unwrap();
    assert!((2.9..4.0).contains(&interval), "{interval}");
    let gws = v["gateways"].as_array().unwrap();
    assert_eq!(gws.len(), 3);
    for g in gws {
        assert_eq!(g["process"], "running");
        assert_eq!(g["kind"], "gateway");
        assert_eq!(g["control"]["attached"], true, "{g}");
        // Each site has two peers, each with candidate paths, one active,
        // up, with an RTT.
        let peers = g["peers"].as_array().unwrap();
        assert_eq!(peers.len(), 2, "{g}");
        for p in peers {
            let paths = p["paths"].as_array().unwrap();
            assert!(!paths.is_empty(), "{p}");
            let active: Vec<_> = paths.iter().filter(|x| x["active"] == true).collect();
            assert_eq!(active.len(), 1, "{p}");
            assert_eq!(active[0]["state"], "up", "{p}");
            assert!(active[0]["rtt_ms"].as_f64().unwrap() > 0.0, "{p}");
            // The human table names the peer, each path's remote address and route.
            assert!(human.contains(p["name"].as_str().unwrap()));
            for x in paths {
                assert!(human.contains(x["remote"].as_str().unwrap()), "{x}");
                let route = match x["via"].as_str() {
                    Some(w) => format!("via {w}"),
                    None => format!("direct, uplink {}", x["uplink"].as_str().unwrap()),
                };
                assert!(human.contains(&route), "{route} not in:\n{human}");
            }
        }
        // Interfaces: the LAN and the uplinks with traffic counted.
        let ifs = g["interfaces"].as_array().unwrap();
        assert_eq!(ifs[0]["name"], "lan");
        assert!(ifs.len() >= 2);
    }
    // Every flow of the demo is in the human table; per flow, status against
    // the demo's summary and the destination's own counters.
    // The demo's per-second figures over the seconds of the status reading:
    // the reading ended `plan.age_s` after the origin's plan in force came
    // into force, which the demo's plan records place on its timeline
    // (epochs count a site's plans from 1: no control restarts here).
    let plans = summary["plans"].as_array().unwrap();
    let series = summary["flow_series"].as_array().unwrap();
    let demo_flows = summary["flows"].as_array().unwrap();
    let sflows = v["flows"].as_array().unwrap();
    for (k, df) in demo_flows.iter().enumerate() {
        let id = df["id"].as_str().unwrap();
        assert!(human.contains(id), "{id} not in:\n{human}");
        let sf = sflows
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("{id} not in {v}"));
        let (st, sd, sc) = (
            sf["target_mbps"].as_f64().unwrap(),
            sf["delivered_mbps"].as_f64().unwrap(),
            sf["controller_mbps"].as_f64().unwrap(),
        );
        let direct = after
            .get(id)
            .copied()
            .unwrap_or(0)
            .saturating_sub(before.get(id).copied().unwrap_or(0)) as f64
            * 8.0
            / 1e6
            / direct_s;
        if df["target_mbps"].as_f64().unwrap() == 0.0 && st == 0.0 {
            assert!(sd < 0.05, "{id}: unplanned flow delivered {sd}");
            continue;
        }
        let origin = sf["origin"].as_str().unwrap();
        let g = gws.iter().find(|g| g["name"] == origin).unwrap();
        let site = origin.rsplit('-').next().unwrap();
        let epoch = g["plan"]["epoch"].as_u64().unwrap();
        let site_plans: Vec<f64> = plans
            .iter()
            .filter(|p| p["site"] == site)
            .map(|p| p["t_s"].as_f64().unwrap())
            .collect();
        let t_plan = site_plans[usize::try_from(epoch).unwrap() - 1];
        let t_end = t_plan + g["plan"]["age_s"].as_f64().unwrap();
        let t_start = t_end - interval;
        let secs: Vec<(f64, f64)> = series
            .iter()
            .filter(|e| {
                let t = e[0].as_f64().unwrap();
                t >= t_start + 0.5 && t <= t_end + 0.5
            })
            .map(|e| {
                let row = &e[1][k];
                (row[0].as_f64().unwrap(), row[1].as_f64().unwrap())
            })
            .collect();
        assert!(secs.len() >= 2, "{id}: {t_start}..{t_end} s: {secs:?}");
        let n = secs.len() as f64;
        let demo_target = secs.iter().map(|x| x.0).sum::<f64>() / n;
        let demo_delivered = secs.iter().map(|x| x.1).sum::<f64>() / n;
        println!(
            "{id}: reading {t_start:.1}..{t_end:.1} s of the demo; target demo {demo_target:.3} status {st:.3}; delivered demo {demo_delivered:.3} status {sd:.3} counters {direct:.3}; controller status {sc:.3}"
        );
        // The plan: the same numbers (the same plan in force, one unit).
        assert!(
            (st - demo_target).abs() <= 0.01 * demo_target.max(0.1),
            "{id}: {st} vs {demo_target}"
        );
        // Delivered: within 5 % of the demo's seconds (they are aligned to
        // the reading within a fraction of a second) and of the counters
        // read around the reading.
        assert!(
            (sd - demo_delivered).abs() <= 0.05 * demo_delivered,
            "{id}: status {sd} vs demo {demo_delivered} over {secs:?}"
        );
        assert!(
            (sd - direct).abs() <= 0.05 * direct,
            "{id}: status {sd} vs counters {direct}"
        );
        // The controller's rate: when the plan did not change after the
        // reading, against the demo's window mean (status reads it at one
        // moment; MONtra moves it by a few %: 3-6 % apart in three runs).
        if site_plans.len() == usize::try_from(epoch).unwrap() {
            let dc = df["controller_mbps"].as_f64().unwrap();
            assert!(
                (sc - dc).abs() <= 0.15 * dc,
                "{id}: controller {sc} vs {dc}"
            );
        }
        assert!(sf["path"].as_str().is_some(), "{sf}");
        assert!(sf["loss"].as_f64().unwrap() <= 0.05, "{sf}");
    }
    // The optimizer's last plan, from each control's plan file: the plan in
    // force at the gateway, with its mission utility.
    for g in gws {
        let o = &g["optimizer"];
        assert_eq!(o["epoch"], g["plan"]["epoch"], "{g}");
        assert_eq!(o["control_alive"], true, "{g}");
        assert!(o["solve_ms"].as_f64().unwrap() > 0.0, "{g}");
        assert!(o["gap"].as_f64().unwrap() <= 1e-3, "{g}");
        // The controls' first plan solves the demo's instance: PFO's optimum
        // (a later plan solves it with estimated capacities).
        if o["triggers"] != serde_json::json!(["initial"]) {
            continue;
        }
        let optimum = summary["utility"]["optimum"].as_f64().unwrap();
        let obj = o["objective"].as_f64().unwrap();
        assert!(
            (obj - optimum).abs() <= 1e-3 * optimum.abs().max(1.0),
            "{obj} vs {optimum}"
        );
    }
    assert!(human.contains("mission utility"), "{human}");
    // The metrics endpoint: the same figures as status, within noise.
    assert!(scrape.starts_with("HTTP/1.1 200 OK"), "{scrape}");
    assert!(scrape.contains("text/plain; version=0.0.4"), "{scrape}");
    let metric = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .find(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .unwrap_or_else(|| panic!("{name} {labels:?} not in:\n{scrape}"))
            .rsplit_once(' ')
            .unwrap()
            .1
            .parse()
            .unwrap()
    };
    for g in gws {
        let name = g["name"].as_str().unwrap();
        let l = [("gateway", name)];
        assert_eq!(
            metric("mongate_plan_epoch", &l),
            g["plan"]["epoch"].as_f64().unwrap()
        );
        assert_eq!(metric("mongate_control_attached", &l), 1.0);
        // Every site's LAN host sent traffic: the gateway learned it, and
        // had room for it.
        let hosts = g["lan_hosts"].as_u64().unwrap();
        assert!(hosts >= 1, "{g}");
        assert_eq!(metric("mongate_lan_hosts", &l), hosts as f64);
        assert_eq!(g["lan_hosts_not_learned"].as_u64(), Some(0), "{g}");
        assert_eq!(metric("mongate_lan_hosts_not_learned", &l), 0.0);
        assert_eq!(
            metric("mongate_optimizer_objective", &l),
            g["optimizer"]["objective"].as_f64().unwrap()
        );
        assert!(metric("mongate_optimizer_solve_seconds", &l) > 0.0);
        // Each site of the triangle has two one-waypoint detours (to each peer through the
        // other), both over links of the instance: the plan says what it leaves on them.
        let detours = g["optimizer"]["detours"].as_array().unwrap();
        assert_eq!(detours.len(), 2, "{g}");
        for d in detours {
            let (peer, via) = (d["peer"].as_str().unwrap(), d["via"].as_str().unwrap());
            let mbps = d["mbps"].as_f64().unwrap();
            assert!(peer != via && peer != name && mbps >= 0.0, "{d}");
            let dl = [("gateway", name), ("peer", peer), ("via", via)];
            assert_eq!(metric("mongate_detour_spare_mbps", &dl), mbps, "{d}");
        }
        for p in g["peers"].as_array().unwrap() {
            for x in p["paths"].as_array().unwrap() {
                let id = x["id"].to_string();
                let st = x["state"].as_str().unwrap();
                let pl = [("gateway", name), ("path", id.as_str()), ("state", st)];
                assert_eq!(metric("mongate_path_state", &pl), 1.0, "{x}");
                let pl = [("gateway", name), ("path", id.as_str())];
                let active = f64::from(u8::from(x["active"] == true));
                assert_eq!(metric("mongate_path_active", &pl), active, "{x}");
            }
        }
        for f in g["flows"].as_array().unwrap() {
            let fl = [("gateway", name), ("flow", f["id"].as_str().unwrap())];
            let t = f["target_mbps"].as_f64().unwrap();
            assert_eq!(metric("mongate_flow_target_mbps", &fl), t, "{f}");
            let d = f["delivered_mbps"].as_f64().unwrap();
            let md = metric("mongate_flow_delivered_mbps", &fl);
            assert!((md - d).abs() <= 0.05 * d.max(0.1), "{f}: metrics {md}");
        }
    }
    // Classes: the class of a planned flow admits sessions at its origin.
    let origin_a = gws
        .iter()
        .find(|g| g["name"].as_str().unwrap().ends_with("-A"))
        .unwrap();
    let classes = origin_a["classes"].as_array().unwrap();
    assert!(
        classes.iter().any(|c| c["local"] == true
            && c["admitted_sessions"].as_u64() > Some(0)
            && c["rate_mbps"].as_f64() > Some(1.0)
            && c["planned_utility"].as_f64() > Some(0.0)),
        "{origin_a}"
    );
}

#[test]
fn status_without_gateways_says_so_and_a_missing_name_is_an_error() {
    let dir = common::TempDir::new("mgt-status-empty");
    let out = status(&dir, &["--interval-ms", "10"]);
    assert!(out.status.success());
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(t.contains("no gateway running"), "{t}");
    let out = status(&dir, &["--json", "--interval-ms", "10"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["gateways"].as_array().unwrap().len(), 0);
    let out = status(&dir, &["--name", "nosuch", "--interval-ms", "10"]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("nosuch") && e.contains("without --name"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
    // Metrics are off unless asked for: a site file without [metrics] is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_mongate"))
        .args(["metrics", "--config"])
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("docs/examples/triangle/site-a.toml"),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("no [metrics] table: metrics are off"), "{e}");
    // --count needs --watch; an interval out of range is refused.
    for bad in [vec!["--count", "2"], vec!["--interval-ms", "0"]] {
        let out = status(&dir, &bad);
        assert!(!out.status.success(), "{bad:?}");
    }
}

/// Counter files a gateway of this process publishes (no network needed):
/// listed, read, rated; a flows file of another format version is named as
/// such in the report, not read as numbers.
#[test]
fn status_lists_a_gateways_files_and_names_a_format_mismatch() {
    use mongate_dataplane::stats::StatsRegion;
    use mongate_dataplane::stats::gateway::GatewayLayout;
    let dir = common::TempDir::new("mgt-status-files");
    let stats = StatsRegion::create(&dir.join("gw1.stats"), 1).unwrap();
    let layout = GatewayLayout {
        classes: vec!["bulk".into()],
        peers: vec!["B".into()],
        uplinks: vec!["ab (wan0)".into()],
        paths: 1,
        flow_classes: vec![0],
        rate_unit_bytes: 1250,
    };
    let flows =
        FlowStatsRegion::create_gateway(&dir.join("gw1.flows"), 1, &["f1"], &layout).unwrap();
    flows
        .gateway_header()
        .unwrap()
        .epoch
        .store(4, std::sync::atomic::Ordering::Relaxed);
    let _stats2 = StatsRegion::create(&dir.join("gw2.stats"), 1).unwrap();
    // gw2's flows file comes from an older build.
    let mut old = std::fs::read(dir.join("gw1.flows")).unwrap();
    old[..8].copy_from_slice(b"MGFLOW01");
    std::fs::write(dir.join("gw2.flows"), &old).unwrap();
    let out = status(&dir, &["--json", "--interval-ms", "20"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let gws = v["gateways"].as_array().unwrap();
    assert_eq!(gws.len(), 2, "{v}");
    assert_eq!(gws[0]["name"], "gw1");
    assert_eq!(gws[0]["process"], "running");
    assert_eq!(gws[0]["pid"], u64::from(std::process::id()));
    assert_eq!(gws[0]["kind"], "gateway");
    assert_eq!(gws[0]["plan"]["epoch"], 4);
    assert_eq!(gws[0]["peers"][0]["name"], "B");
    assert_eq!(gws[0]["flows"][0]["id"], "f1");
    assert_eq!(gws[0]["error"], serde_json::Value::Null);
    let e = gws[1]["error"].as_str().unwrap();
    assert!(
        e.contains("MGFLOW01") && e.contains("MGFLOW04") && e.contains("different mongate builds"),
        "{e}"
    );
    let human = status(&dir, &["--interval-ms", "20"]);
    let t = String::from_utf8_lossy(&human.stdout);
    assert!(
        t.contains("gateway gw2") && t.contains("error:") && t.contains("MGFLOW01"),
        "{t}"
    );
    drop((stats, flows));
}
