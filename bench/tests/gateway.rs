//! `mongate-bench gateway` end to end, short: every mode delivers through
//! the DUT, and the gateway's packets reach the sink as GENEVE (the sink
//! steers only UDP 6081 to its sockets and counts only bench packets read
//! through the GENEVE header). Needs root (network namespaces, XDP).

use mongate_bench::gateway::{GatewayBench, GwMode, run_gateway_bench};

#[test]
fn quick_run_delivers_geneve_to_the_sink() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP: gateway bench test needs root");
        return;
    }
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        println!("SKIP: gateway bench test needs 2 cores");
        return;
    }
    // About 2 s per mode: one 1 s trial, one 0.5 s search trial.
    let b = GatewayBench {
        seconds: 1.0,
        search_seconds: 0.5,
        search_steps: 1,
        progress: false,
        ..GatewayBench::quick()
    };
    let r = run_gateway_bench(&b).expect("bench runs");
    assert_eq!(r.cells.len(), 3);
    for c in &r.cells {
        assert!(
            c.run.sent > 0 && c.run.received > 0,
            "{}: sent {} received {}",
            c.mode.name(),
            c.run.sent,
            c.run.received
        );
        assert!(c.run.received <= c.run.sent);
    }
    let gw = r
        .cells
        .iter()
        .find(|c| c.mode == GwMode::Gateway)
        .expect("gateway cell");
    assert!(gw.mpps > 0.0, "gateway delivered no GENEVE packets");
    assert_eq!(r.ratios.len(), 1);
    assert!(r.ratios[0].gateway_over_forward.is_some_and(|x| x > 0.0));
    assert!(r.ratios[0].gateway_over_kernel.is_some_and(|x| x > 0.0));
}
