//! Pacing and MONtra micro-benchmarks: timer wheel at 100k flows, the
//! exponential variate, the per-ack controller update, the pacing table.
//! Figures are recorded in docs/montra.md.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mongate_dataplane::engine::{Batch, Packet};
use mongate_dataplane::montra::{ControllerConfig, ControllerTarget, RateController};
use mongate_dataplane::pacing::{PacingConfig, PacingTable, TimerWheel};
use mongate_dataplane::sys::Rng;
use std::hint::black_box;

const FLOWS: u32 = 100_000;

fn wheel(c: &mut Criterion) {
    let mut g = c.benchmark_group("wheel_100k_flows");
    g.throughput(Throughput::Elements(1));
    // Every flow at 1000 pps with Poisson gaps (1e8 departures/s in total):
    // one iteration = one departure (poll of 1, then re-schedule), empty polls
    // that advance time included.
    let mut w = TimerWheel::new(FLOWS as usize, TimerWheel::DEFAULT_SHIFT, 0).unwrap();
    let mut rng = Rng::new(1);
    let mut due = vec![0u64; FLOWS as usize];
    for f in 0..FLOWS {
        due[f as usize] = rng.exp_gap_ns(1000.0);
        w.schedule(f, due[f as usize]);
    }
    let mut now = 0u64;
    let mut out = [0u32; 1];
    g.bench_function("schedule_and_poll_per_departure", |b| {
        b.iter(|| {
            loop {
                if w.poll(now, &mut out) == 1 {
                    let f = out[0] as usize;
                    due[f] += rng.exp_gap_ns(1000.0);
                    w.schedule(out[0], due[f]);
                    break;
                }
                now += 1024;
            }
        })
    });
    // Batched: polls of up to 64.
    let mut out64 = [0u32; 64];
    g.bench_function("batched_64_per_departure", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            let mut done = 0u64;
            while done < iters {
                let k = w.poll(now, &mut out64);
                if k == 0 {
                    now += 1024;
                    continue;
                }
                for &f in &out64[..k] {
                    due[f as usize] += rng.exp_gap_ns(1000.0);
                    w.schedule(f, due[f as usize]);
                }
                done += k as u64;
            }
            start.elapsed()
        })
    });
    g.finish();
}

fn variate(c: &mut Criterion) {
    let mut g = c.benchmark_group("exponential");
    let mut rng = Rng::new(2);
    g.bench_function("exp1_fast_ln", |b| b.iter(|| black_box(rng.exp1())));
    g.bench_function("exp1_std_ln", |b| {
        b.iter(|| black_box(-rng.next_f64_open0().ln()))
    });
    g.bench_function("exp_gap_ns", |b| {
        b.iter(|| black_box(rng.exp_gap_ns(black_box(12_345.0))))
    });
    g.bench_function("next_u64", |b| b.iter(|| black_box(rng.next_u64())));
    g.finish();
}

fn controller(c: &mut Criterion) {
    let mut g = c.benchmark_group("controller");
    let plan = ControllerTarget {
        weight: 10.0,
        max_weight: 20.0,
        cap_pps: f64::INFINITY,
        target_pps: 0.0,
    };
    let mut ctl = RateController::new(ControllerConfig::default(), plan, 1000.0, 0);
    let mut t = 0u64;
    g.bench_function("on_send_and_ack", |b| {
        b.iter(|| {
            t += 1000;
            ctl.on_send(t, false);
            black_box(ctl.on_acks(1, t))
        })
    });
    g.bench_function("on_loss", |b| b.iter(|| black_box(ctl.on_losses(1))));
    g.finish();
}

fn table(c: &mut Criterion) {
    let mut g = c.benchmark_group("pacing_table_100k_flows");
    g.throughput(Throughput::Elements(1));
    let cfg = PacingConfig {
        flows: FLOWS,
        queue_capacity: 4,
        ..PacingConfig::default()
    };
    let mut t = PacingTable::new(cfg, 0).unwrap();
    for f in 0..FLOWS {
        t.set_rate(f, 1000.0, 0);
        t.enqueue(f, Packet::new(u64::from(f), 100, 0, 0), 0)
            .unwrap();
    }
    let mut now = 0u64;
    let mut out = Batch::new();
    // One iteration = one packet released and one re-enqueued (batched polls).
    g.bench_function("enqueue_and_release_per_packet", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            let mut done = 0u64;
            while done < iters {
                out.clear();
                let k = t.poll(now, &mut out);
                if k == 0 {
                    now += 1024;
                    continue;
                }
                for p in out.as_slice() {
                    let f = u32::try_from(p.addr).unwrap_or(0);
                    let _ = t.enqueue(f, *p, now);
                }
                done += k as u64;
            }
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, wheel, variate, controller, table);
criterion_main!(benches);
