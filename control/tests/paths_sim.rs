//! MONET path manager against failure traces (deterministic simulation, see docs/paths.md).

use mongate_control::paths::sim::{self, SimConfig, Topology, Trace, TraceParams};
use mongate_control::paths::{MS, SEC};

#[test]
fn print_standard() {
    let topo = Topology::two_sites_one_waypoint();
    let trace = Trace::generate(&topo, &TraceParams::default(), 1);
    let r = sim::run(&topo, &trace, &SimConfig::default());
    let mut faults = trace.faults.clone();
    faults.sort_by_key(|f| f.start);
    for f in &faults {
        println!("fault {:>8.1}s..{:>8.1}s {:>6} {:?}", f.start as f64 / 1e9, f.end as f64 / 1e9, topo.hops[f.hop].name, f.kind);
    }
    for m in &r.move_log {
        println!("move {:>10.3}s {:?} -> {}", m.0 as f64 / 1e9, m.1, m.2);
    }
    println!("{:?}", r.failovers.iter().map(|x| x / MS).collect::<Vec<_>>());
    println!(
        "avoided {:.3} of-avoidable {:.3} p50 {:?} p90 {:?} share {:.5}",
        r.avoided_share(),
        r.avoided_share_of_avoidable(),
        r.failover_quantile(0.5).map(|x| x / MS),
        r.failover_quantile(0.9).map(|x| x / MS),
        r.max_probe_share()
    );
    let _ = SEC;
}

#[test]
fn dbg_lossy() {
    use mongate_control::paths::sim::{Fault, FaultKind};
    let topo = Topology::two_sites_one_waypoint();
    let trace = Trace { duration: 500 * SEC, faults: vec![Fault { hop: topo.hop("A0").unwrap(), start: 60 * SEC, end: 400 * SEC, kind: FaultKind::Lossy { loss: 0.3 } }] };
    for seed in 1..6 {
        let r = sim::run(&topo, &trace, &SimConfig { seed, ..SimConfig::default() });
        println!("seed {seed}: {:?}", r.move_log.iter().map(|m| (m.0 / MS, m.1, m.2)).collect::<Vec<_>>());
    }
}
