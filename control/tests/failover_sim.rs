//! MONET path manager against failure traces (deterministic simulation, see docs/paths.md).
//!
//! Run with `cargo test -p mongate-control --test failover_sim -- --nocapture` to see the figures.

use mongate_control::failover::sim::TraceParams;
use mongate_control::failover::sim::{
    self, Fault, FaultKind, SimConfig, SimReport, Topology, Trace,
};
use mongate_control::failover::{MS, Nanos, SEC};

fn outage(topo: &Topology, hop: &str, start: Nanos, end: Nanos, carrier: bool) -> Fault {
    Fault {
        hop: topo.hop(hop).expect("hop exists"),
        start,
        end,
        kind: FaultKind::Outage { carrier },
    }
}

fn run_one(faults: Vec<Fault>, duration: Nanos) -> (Topology, SimReport) {
    let topo = Topology::two_sites_one_waypoint();
    let trace = Trace { duration, faults };
    let r = sim::run(&topo, &trace, &SimConfig::default());
    assert_eq!(r.stalls, 0, "manager asked for a timer in the past");
    assert_eq!(r.invariant_violations, 0);
    (topo, r)
}

fn summary(name: &str, r: &SimReport) {
    println!(
        "{name}: avoided {:.4} (of avoidable {:.4}), baseline failed {:.1} s, managed failed {:.3} s, \
         failovers {} p50 {:?} ms p90 {:?} ms max {:?} ms, by repair {}, moves {} (max {}/min), \
         faults {}, probe share {:.5} %, preferred {:.4}",
        r.avoided_share(),
        r.avoided_share_of_avoidable(),
        r.baseline_failed as f64 / 1e9,
        r.managed_failed as f64 / 1e9,
        r.failovers.len(),
        r.failover_quantile(0.5).map(|x| x / MS),
        r.failover_quantile(0.9).map(|x| x / MS),
        r.failover_quantile(1.0).map(|x| x / MS),
        r.ended_by_repair.len(),
        r.moves,
        r.max_moves_per_minute,
        r.faults,
        r.max_probe_share() * 100.0,
        r.preferred_share,
    );
}

/// The acceptance run: three seeded 24-hour traces (access outages, core outages, 30 % loss
/// periods on every hop), two in parallel.
#[test]
fn standard_traces_meet_the_targets() {
    let seeds = [1u64, 2, 3];
    let reports: Vec<(u64, SimReport)> = std::thread::scope(|s| {
        let handles: Vec<_> = seeds
            .iter()
            .map(|&seed| {
                s.spawn(move || {
                    let topo = Topology::two_sites_one_waypoint();
                    let trace = Trace::generate(&topo, &TraceParams::default(), seed);
                    let cfg = SimConfig {
                        seed,
                        ..SimConfig::default()
                    };
                    (seed, sim::run(&topo, &trace, &cfg))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("sim thread"))
            .collect()
    });
    let mut all_failovers = Vec::new();
    for (seed, r) in &reports {
        summary(&format!("seed {seed}"), r);
        assert!(r.baseline_failed > 0, "the trace must hurt the baseline");
        assert!(
            r.avoided_share() >= 0.6,
            "seed {seed}: avoided {}",
            r.avoided_share()
        );
        // Own probes plus answering a symmetric peer's probes: twice the own share, under 1 %.
        assert!(
            2.0 * r.max_probe_share() < 0.01,
            "seed {seed}: probe share {}",
            r.max_probe_share()
        );
        assert!(!r.failovers.is_empty());
        // No flapping: moves bounded by the faults, never a burst.
        assert!(
            r.moves <= 2 * r.faults as u64,
            "seed {seed}: {} moves for {} faults",
            r.moves,
            r.faults
        );
        assert!(
            r.max_moves_per_minute <= 6,
            "seed {seed}: {} moves in a minute",
            r.max_moves_per_minute
        );
        // Repaired preferred paths get the traffic back.
        assert!(
            r.preferred_share >= 0.9,
            "seed {seed}: preferred share {}",
            r.preferred_share
        );
        assert_eq!(r.stalls, 0);
        assert_eq!(r.invariant_violations, 0);
        assert_eq!(
            r.stats.unknown_path + r.stats.unmatched_reply + r.stats.absurd_rtt,
            0
        );
        all_failovers.extend_from_slice(&r.failovers);
    }
    all_failovers.sort_unstable();
    let median = all_failovers[all_failovers.len() / 2];
    println!(
        "failovers over all seeds: n {} median {} ms",
        all_failovers.len(),
        median / MS
    );
    assert!(median < 100 * MS, "median failover {} ms", median / MS);
}

#[test]
fn silent_access_outage_fails_over_fast_and_returns() {
    let topo = Topology::two_sites_one_waypoint();
    let (_, r) = run_one(
        vec![outage(&topo, "A0", 60 * SEC, 180 * SEC, false)],
        400 * SEC,
    );
    summary("silent A0 outage", &r);
    assert_eq!(r.failovers.len(), 1);
    // ack gap (RTT + 20 ms) then a race: well under 100 ms at 10 ms RTT.
    assert!(
        r.failovers[0] < 100 * MS,
        "failover {} ms",
        r.failovers[0] / MS
    );
    assert!(r.avoided_share() > 0.99);
    // Away to uplink A1, back to A0 after repair, nothing else.
    let away = r
        .move_log
        .iter()
        .filter(|m| m.0 > 60 * SEC && m.0 < 180 * SEC)
        .count();
    assert!(
        away <= 2,
        "{away} moves during the outage: {:?}",
        r.move_log
    );
    let back = r
        .move_log
        .iter()
        .find(|m| m.0 >= 180 * SEC)
        .expect("traffic returns");
    assert!(topo.preferred.contains(&back.2));
    // Hysteresis: not before the repaired path proved itself (health.failback_after_ns).
    assert!(back.0 >= 190 * SEC, "returned at {} ms", back.0 / MS);
    assert!(r.final_active.is_some_and(|a| topo.preferred.contains(&a)));
}

#[test]
fn carrier_loss_fails_over_at_once() {
    let topo = Topology::two_sites_one_waypoint();
    let (_, r) = run_one(
        vec![outage(&topo, "A0", 60 * SEC, 120 * SEC, true)],
        300 * SEC,
    );
    summary("A0 carrier loss", &r);
    assert_eq!(
        r.failovers,
        vec![0],
        "carrier loss moves traffic in the same instant"
    );
    assert!(r.final_active.is_some_and(|a| topo.preferred.contains(&a)));
}

#[test]
fn core_path_outage_uses_another_path() {
    let topo = Topology::two_sites_one_waypoint();
    let (_, r) = run_one(
        vec![outage(&topo, "A0-B0", 60 * SEC, 600 * SEC, false)],
        700 * SEC,
    );
    summary("A0-B0 core outage", &r);
    assert_eq!(r.failovers.len(), 1);
    assert!(r.failovers[0] < 100 * MS);
    assert!(r.avoided_share() > 0.99);
    assert!(r.moves <= 2);
}

#[test]
fn remote_access_outage_uses_the_other_remote_address() {
    let topo = Topology::two_sites_one_waypoint();
    let (_, r) = run_one(
        vec![outage(&topo, "B0", 60 * SEC, 300 * SEC, false)],
        400 * SEC,
    );
    summary("B0 outage", &r);
    assert!(r.avoided_share() > 0.99);
    // Only paths to B1 work during the outage.
    let during: Vec<_> = r
        .move_log
        .iter()
        .filter(|m| m.0 > 60 * SEC && m.0 < 300 * SEC)
        .collect();
    assert!(!during.is_empty() && during.len() <= 2);
    let b1 = |i: usize| topo.paths[i].key.remote.0 == 1;
    assert!(b1(during.last().expect("moved").2));
}

#[test]
fn lossy_period_is_avoided_without_flapping() {
    let topo = Topology::two_sites_one_waypoint();
    let lossy = Fault {
        hop: topo.hop("A0").expect("hop"),
        start: 60 * SEC,
        end: 400 * SEC,
        kind: FaultKind::Lossy { loss: 0.3 },
    };
    for seed in 1..=4 {
        let trace = Trace {
            duration: 600 * SEC,
            faults: vec![lossy],
        };
        let r = sim::run(
            &topo,
            &trace,
            &SimConfig {
                seed,
                ..SimConfig::default()
            },
        );
        summary(&format!("A0 30% loss, seed {seed}"), &r);
        assert!(r.avoided_share() > 0.99, "seed {seed}");
        let during = r
            .move_log
            .iter()
            .filter(|m| m.0 > 60 * SEC && m.0 < 400 * SEC)
            .count();
        assert!(
            during <= 3,
            "seed {seed}: {during} moves while lossy: {:?}",
            r.move_log
        );
        assert!(
            r.final_active.is_some_and(|a| topo.preferred.contains(&a)),
            "seed {seed}"
        );
    }
}

#[test]
fn unavoidable_failures_are_not_counted_as_avoided() {
    let topo = Topology::two_sites_one_waypoint();
    // Both remote access links down: no path works.
    let (_, r) = run_one(
        vec![
            outage(&topo, "B0", 60 * SEC, 120 * SEC, false),
            outage(&topo, "B1", 60 * SEC, 120 * SEC, false),
        ],
        300 * SEC,
    );
    summary("B0+B1 outage", &r);
    assert_eq!(r.avoided, 0);
    assert_eq!(r.unavoidable, r.baseline_failed);
    assert!(r.baseline_failed >= 59 * SEC);
    // Races back off while everything is dead: bounded probes.
    assert!(
        r.stats.race_probes < 200,
        "{} race probes",
        r.stats.race_probes
    );
    assert!(r.final_active.is_some_and(|a| topo.preferred.contains(&a)));
}

#[test]
fn probe_budget_caps_probing_on_a_thin_uplink() {
    let mut topo = Topology::two_sites_one_waypoint();
    for u in &mut topo.uplinks {
        u.capacity_bytes_per_s = 20_000; // 160 kbit/s: budget 0.5 % = 100 B/s, about 1 probe/s
    }
    let trace = Trace::generate(
        &topo,
        &TraceParams {
            duration: 3600 * SEC,
            ..TraceParams::default()
        },
        9,
    );
    let r = sim::run(&topo, &trace, &SimConfig::default());
    summary("thin uplinks", &r);
    // Budget share 0.5 % plus the bucket depth (1 s) plus race probes, which may borrow.
    let races = r.stats.race_probes as f64 * 96.0 / (20_000.0 * 3570.0);
    assert!(
        r.max_probe_share() <= 0.005 * 1.01 + races + 1e-4,
        "share {}",
        r.max_probe_share()
    );
    assert_eq!(r.invariant_violations, 0);
}

#[test]
fn simulation_is_deterministic() {
    let topo = Topology::two_sites_one_waypoint();
    let trace = Trace::generate(
        &topo,
        &TraceParams {
            duration: 1800 * SEC,
            ..TraceParams::default()
        },
        4,
    );
    let a = sim::run(
        &topo,
        &trace,
        &SimConfig {
            seed: 4,
            ..SimConfig::default()
        },
    );
    let b = sim::run(
        &topo,
        &trace,
        &SimConfig {
            seed: 4,
            ..SimConfig::default()
        },
    );
    assert_eq!(a, b);
}
