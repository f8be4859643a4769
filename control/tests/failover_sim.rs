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
    // Hysteresis: not before the repaired path proved itself. A 2-minute silent outage of a
    // clean path is a clean cut: `repair_failback_after` after it is seen up again.
    let c = SimConfig::default().manager;
    assert!(
        back.0 >= 180 * SEC + c.repair_failback_after,
        "returned at {} ms",
        back.0 / MS
    );
    assert!(
        back.0
            <= 180 * SEC
                + c.probe_interval_down_max * 11 / 10
                + 2 * c.recover_min_time
                + c.repair_failback_after
                + 2 * c.reeval_interval,
        "returned at {} ms",
        back.0 / MS
    );
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

// ----- Three sites, the live dataplane's ack-gap reflex (issue 12) --------------------------

/// Runs the triangle (direct path 0, detour path 1 via W) with the dataplane's reflex on.
fn run_triangle(
    topo: &Topology,
    faults: Vec<Fault>,
    false_alarms: Vec<Nanos>,
    duration: Nanos,
    seed: u64,
) -> SimReport {
    let trace = Trace { duration, faults };
    let r = sim::run(
        topo,
        &trace,
        &SimConfig {
            seed,
            reflex: true,
            false_alarms,
            ..SimConfig::default()
        },
    );
    assert_eq!(r.stalls, 0, "manager asked for a timer in the past");
    assert_eq!(r.invariant_violations, 0);
    r
}

/// The path the flows rode at `t` (the last change at or before it).
fn carried_at(r: &SimReport, t: Nanos) -> Option<usize> {
    r.carried_log
        .iter()
        .take_while(|c| c.0 <= t)
        .last()
        .map(|c| c.1)
}

/// A false alarm (an ack gap on a direct path that works): the dataplane's reflex moves the
/// flows to the detour at once; the manager confirms the detour (the path whose acks stopped
/// does not win the race it started while another candidate answers) and brings the flows back
/// by the return rule: the direct path is up again within a few hundred ms, so the flows return
/// after `health.failback_after_ns` (10 s) plus at most one evaluation period and the probe
/// jitter. Before, the direct path's own answer won that race, the manager kept it as the
/// active path without telling the dataplane, and the flows stayed on the detour for good.
#[test]
fn a_false_alarm_sends_the_flows_to_the_detour_and_back_to_the_direct_path() {
    let topo = Topology::triangle();
    let alarm = 60 * SEC;
    for seed in 1..=4 {
        let r = run_triangle(&topo, Vec::new(), vec![alarm], 200 * SEC, seed);
        summary(&format!("triangle false alarm, seed {seed}"), &r);
        assert_eq!(
            carried_at(&r, alarm - 1),
            Some(0),
            "seed {seed}: direct first"
        );
        assert_eq!(r.reflex_log, vec![(alarm, 0, 1)], "seed {seed}");
        let back = r
            .carried_log
            .iter()
            .find(|c| c.0 > alarm && c.1 == 0)
            .unwrap_or_else(|| panic!("seed {seed}: never back on the direct path: {r:?}"));
        let hold = SimConfig::default().manager.health.failback_after_ns;
        println!(
            "  back on the direct path {} ms after the alarm",
            (back.0 - alarm) / MS
        );
        assert!(
            back.0 >= alarm + hold,
            "seed {seed}: back after {} ms, before the hold",
            (back.0 - alarm) / MS
        );
        assert!(
            back.0 <= alarm + hold + 3 * SEC,
            "seed {seed}: back only after {} ms",
            (back.0 - alarm) / MS
        );
        assert_eq!(r.final_active, Some(0), "seed {seed}");
        // One move away (confirming the reflex), one back; nothing else.
        assert_eq!(r.moves, 2, "seed {seed}: {:?}", r.move_log);
    }
}

/// A short real outage of the direct path (its core hop for 20 s): the flows ride the detour
/// meanwhile. The path was clean until the cut and answers every probe after it, a clean
/// repair: the flows come back once it has been up `repair_failback_after` (3 s) with its last
/// 6 probes answered, after the down path's next exploration probe (1, 2, 4, 4 s apart, + 10 %
/// jitter) and the recovery run (3 answers over >= 1 s). Before (32 clean probes), ~32 s.
#[test]
fn a_short_outage_of_the_direct_path_heals_and_the_flows_return() {
    let topo = Topology::triangle();
    let (cut, repair) = (60 * SEC, 80 * SEC);
    for seed in 1..=3 {
        let r = run_triangle(
            &topo,
            vec![outage(&topo, "A0-B0", cut, repair, false)],
            Vec::new(),
            300 * SEC,
            seed,
        );
        summary(&format!("triangle direct outage, seed {seed}"), &r);
        assert_eq!(carried_at(&r, cut + 5 * SEC), Some(1), "seed {seed}");
        let back = r
            .carried_log
            .iter()
            .find(|c| c.0 > repair && c.1 == 0)
            .unwrap_or_else(|| panic!("seed {seed}: never back: {r:?}"));
        println!("  back {} ms after the repair", (back.0 - repair) / MS);
        let c = SimConfig::default().manager;
        let latest = c.probe_interval_down_max * 11 / 10
            + 2 * c.recover_min_time
            + c.repair_failback_after
            + 2 * c.reeval_interval;
        assert!(
            back.0 >= repair + c.repair_failback_after && back.0 <= repair + latest,
            "seed {seed}: back {} ms after the repair",
            (back.0 - repair) / MS
        );
        assert_eq!(r.final_active, Some(0), "seed {seed}");
    }
}

/// A direct path that turned bad at the false alarm (30 % loss from then on) does not win the
/// flows back from the clean detour: its probe history is never clean for 32 probes.
#[test]
fn a_lossy_direct_path_does_not_win_back() {
    let topo = Topology::triangle();
    let alarm = 60 * SEC;
    let lossy = Fault {
        hop: topo.hop("A0-B0").expect("hop"),
        start: alarm - MS,
        end: 600 * SEC,
        kind: FaultKind::Lossy { loss: 0.3 },
    };
    for seed in 1..=3 {
        let r = run_triangle(&topo, vec![lossy], vec![alarm], 600 * SEC, seed);
        summary(&format!("triangle lossy direct, seed {seed}"), &r);
        assert!(
            r.carried_log.iter().all(|c| c.0 < alarm || c.1 == 1),
            "seed {seed}: back on the lossy direct path: {:?}",
            r.carried_log
        );
        assert_eq!(r.final_active, Some(1), "seed {seed}");
    }
}

/// A direct path about as good as the detour (28 ms RTT against 20 ms + the 10 ms waypoint
/// penalty): after a false alarm the flows stay on the detour (the direct path's rank is not
/// below 0.8 x the detour's), and further false alarms, on whichever path carries the flows,
/// move them at most once each: no oscillation.
#[test]
fn comparable_paths_do_not_flap() {
    let mut topo = Topology::triangle();
    let core = topo.hop("A0-B0").expect("hop");
    topo.hops[core].one_way = 13 * MS;
    assert_eq!(topo.rtt(0), 28 * MS);
    let first = 60 * SEC;
    for seed in 1..=3 {
        let r = run_triangle(&topo, Vec::new(), vec![first], 600 * SEC, seed);
        summary(&format!("triangle comparable, seed {seed}"), &r);
        assert_eq!(carried_at(&r, first - 1), Some(0), "seed {seed}");
        assert!(
            r.carried_log.iter().all(|c| c.0 <= first || c.1 == 1),
            "seed {seed}: flapped: {:?}",
            r.carried_log
        );
        assert_eq!(r.moves, 1, "seed {seed}: {:?}", r.move_log);
        // False alarms every 20 s: each moves the flows at most once, never back and forth
        // within the return hold.
        let alarms: Vec<Nanos> = (0..20).map(|k| first + k * 20 * SEC).collect();
        let r = run_triangle(&topo, Vec::new(), alarms.clone(), 600 * SEC, seed);
        assert!(
            r.carried_log.len() <= 1 + 2 * alarms.len(),
            "seed {seed}: {} changes",
            r.carried_log.len()
        );
        assert!(r.max_moves_per_minute <= 6, "seed {seed}: {:?}", r.move_log);
    }
}
