//! `mongate-bench pipeline` as an operator runs it: the JSON's shape, and
//! every offered packet accounted for (sent, dropped or still queued; every
//! packet sent delivered). No timing assertion: the figures are the
//! benchmark's output, not a test's. No network, no root.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mongate-bench");

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("spawn")
}

#[test]
fn the_report_accounts_for_every_packet() {
    let out = run(&[
        "pipeline",
        "--flows",
        "50",
        "--sessions",
        "3000",
        "--packets",
        "20000",
        "--batch",
        "24",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for k in ["lan_to_wan_ns_per_packet", "wan_to_lan_ns_per_packet"] {
        assert!(v[k].as_f64().is_some_and(|x| x > 0.0), "{k}: {v}");
    }
    let stages = v["stages"].as_object().expect("stages");
    for k in [
        "lan_classify_enqueue",
        "lan_pace_encap",
        "lan_acks_in",
        "wan_decap_deliver",
        "wan_acks_out",
    ] {
        assert!(stages[k].as_f64().is_some_and(|x| x >= 0.0), "{k}: {v}");
    }
    let sum = |ks: &[&str]| ks.iter().map(|k| stages[*k].as_f64().unwrap()).sum::<f64>();
    let l2w = sum(&["lan_classify_enqueue", "lan_pace_encap", "lan_acks_in"]);
    assert!((l2w - v["lan_to_wan_ns_per_packet"].as_f64().unwrap()).abs() < 1e-6);
    let c = &v["counts"];
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("{k}: {v}"));
    assert_eq!(n("offered"), 20_000);
    assert_eq!(
        n("offered") + n("held_at_start"),
        n("sent") + n("dropped") + n("held"),
        "{v}"
    );
    assert_eq!(n("delivered") + n("dropped_at_c"), n("sent"), "{v}");
    // Planned at 4x the load and acked: nothing is refused or lost.
    assert_eq!(n("dropped") + n("dropped_at_c"), 0, "{v}");
    assert_eq!(n("admitted_sessions"), 3000, "{v}");
    assert!(n("acks") > 0, "{v}");
}

/// More flows than a 16-bit index holds (the limit until session 13):
/// sessions pinned to flows 65 536 and above are admitted, paced, carried
/// and delivered like the others.
#[test]
fn flows_beyond_sixteen_bits_carry_traffic() {
    let out = run(&[
        "pipeline",
        "--flows",
        "70000",
        "--sessions",
        "70000",
        "--packets",
        "20000",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let c = &v["counts"];
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("{k}: {v}"));
    // One session per flow: every flow, those beyond 65 535 included, is
    // admitted into.
    assert_eq!(n("admitted_sessions"), 70_000, "{v}");
    assert_eq!(n("offered"), 20_000, "{v}");
    assert_eq!(
        n("offered") + n("held_at_start"),
        n("sent") + n("dropped") + n("held"),
        "{v}"
    );
    assert_eq!(n("dropped") + n("dropped_at_c"), 0, "{v}");
    assert_eq!(n("delivered"), n("sent"), "{v}");
    assert!(n("sent") > 10_000, "{v}");
}

#[test]
fn flows_beyond_the_benchmark_limit_are_refused_with_the_reason() {
    let out = run(&["pipeline", "--flows", "5000000", "--packets", "10"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--flows") && stderr.contains("2 KB"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
