//! `mongate-bench gateway` end to end, short: every mode delivers through
//! the DUT, and the gateway's packets reach the sink as GENEVE (the sink
//! steers only UDP 6081 to its sockets and counts only bench packets read
//! through the GENEVE header); the secure gateway's as sealed GENEVE, with
//! the DUT's key counter confirming it sealed them. Needs root (network
//! namespaces, XDP); `boringtun` runs when boringtun-cli is installed.

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
        cpu_seconds: 0.5,
        ..GatewayBench::quick()
    };
    let r = run_gateway_bench(&b).expect("bench runs");
    assert_eq!(r.cells.len(), GwMode::ALL.len() - r.skipped.len());
    assert!(r.skipped.iter().all(|(m, _)| *m == GwMode::Boringtun));
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
    let sec = r
        .cells
        .iter()
        .find(|c| c.mode == GwMode::GatewaySecure)
        .expect("gateway-secure cell");
    assert!(sec.mpps > 0.0, "gateway-secure delivered no sealed packets");
    assert!(
        sec.sealed_packets.is_some_and(|n| n >= sec.run.received),
        "the DUT's key sealed {:?}, the sink counted {}",
        sec.sealed_packets,
        sec.run.received
    );
    assert_eq!(r.ratios.len(), 1);
    assert!(r.ratios[0].gateway_over_forward.is_some_and(|x| x > 0.0));
    assert!(r.ratios[0].gateway_over_kernel.is_some_and(|x| x > 0.0));
    assert!(r.ratios[0].secure_over_gateway.is_some_and(|x| x > 0.0));
    // CPU per packet: every measured mode at the fixed load, the AF_XDP
    // DUTs restarted with the sleeping idle policy for it.
    assert_eq!(r.cpu.len(), r.cells.len());
    for c in &r.cpu {
        assert!(
            c.run.received > 0 && c.cost.is_some() && c.error.is_none(),
            "{}: {:?}",
            c.mode.name(),
            c.error
        );
        assert!(
            c.cpu_ns_per_packet
                .is_some_and(|x| x.is_finite() && x > 0.0)
        );
    }
}
