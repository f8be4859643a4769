//! The main job: `mongate demo --json` runs on real packets in network
//! namespaces and reports the mission plan and what the dataplane achieved.

mod common;

use std::process::Command;

#[test]
fn demo_reports_plan_and_traffic() {
    if common::skip("demo_reports_plan_and_traffic") {
        return;
    }
    let _g = common::net_lock();
    let out = Command::new(env!("CARGO_BIN_EXE_mongate"))
        .args(["demo", "--seconds", "2", "--rate-pps", "50000", "--json"])
        .output()
        .expect("run mongate demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary on stdout");
    // The paper's PFO result on the triangle.
    let plan = &v["mission_plan"];
    assert_eq!(plan["status"], "optimal");
    let rate = |id: &str| {
        plan["flows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .unwrap()["rate"]
            .as_f64()
            .unwrap()
    };
    assert!((rate("A->C/direct") - 10.0).abs() < 1e-6);
    assert!((rate("A->C/via-B") - 5.0).abs() < 1e-6);
    // Real traffic through the gateway: everything offered arrived, on both queues.
    assert_eq!(v["sent"], 100_000);
    assert_eq!(v["received"], 100_000, "{stderr}");
    let q = v["per_queue_forwarded"].as_array().unwrap();
    assert_eq!(q.len(), 2);
    assert!(
        q.iter().all(|n| n.as_u64().unwrap() > 10_000),
        "both queues used: {q:?}"
    );
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
