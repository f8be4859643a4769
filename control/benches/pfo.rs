//! PFO on AttMpls (Topology Zoo, 25 nodes, every directed link capacity 10, 3 shortest routes
//! per class, mixed sigmoid/step/concave 8-segment utilities).
//!
//! `cargo bench -p mongate-control --bench pfo` first prints a figure table (time to gap 1e-4,
//! gap after 1 s, per size and formulation; `PFO_BENCH_PLAIN=1` adds the baseline formulation),
//! then runs the criterion measurements of the default formulation.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use mongate_control::pfo::generator::{GenParams, generate, parse_graphml};
use mongate_control::pfo::{Formulation, Instance, SolveOptions, solve};

/// The project's shared/ folder sits beside the repository.
const GRAPH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/topologyzoo/AttMpls.graphml"
);

fn attmpls(classes: usize, sessions: u32, seed: u64) -> Option<Instance> {
    let text =
        std::fs::read_to_string(std::env::var("PFO_GRAPHML").unwrap_or_else(|_| GRAPH.to_string()))
            .ok()?;
    let g = parse_graphml(&text).ok()?;
    let p = GenParams {
        classes,
        sessions,
        capacity: 10.0,
        routes: 3,
        segments: 8,
        seed,
    };
    Instance::from_file(&generate(&g, &p)).ok()
}

fn figures() {
    let plain = std::env::var("PFO_BENCH_PLAIN").is_ok();
    let seeds: u64 = std::env::var("PFO_BENCH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    println!("size       seed  formulation  time_to_gap_1e-4[s]  status      gap_at_1s");
    for (classes, sessions, limit) in [(30, 10, 60.0), (50, 20, 120.0)] {
        for seed in 1..=seeds {
            let Some(inst) = attmpls(classes, sessions, seed) else {
                println!("(AttMpls graph not found at {GRAPH}; set PFO_GRAPHML)");
                return;
            };
            let mut forms = vec![
                ("incremental", Formulation::Incremental),
                ("pieces", Formulation::EnvelopePieces),
                ("log", Formulation::EnvelopeLog),
            ];
            if plain {
                forms.push(("plain", Formulation::Plain));
            }
            if let Ok(only) = std::env::var("PFO_BENCH_FORMS") {
                forms.retain(|(name, _)| only.split(',').any(|o| o == *name));
            }
            for (name, form) in forms {
                let full = solve(
                    &inst,
                    &SolveOptions {
                        time_limit: Some(limit),
                        formulation: form,
                        ..SolveOptions::default()
                    },
                );
                let one = solve(
                    &inst,
                    &SolveOptions {
                        time_limit: Some(1.0),
                        formulation: form,
                        ..SolveOptions::default()
                    },
                );
                println!(
                    "{classes}x{sessions:<6} {seed:>4}  {name:<11}  {:>19.3}  {:<10}  {:.2e}",
                    full.seconds,
                    format!("{:?}", full.status),
                    one.gap
                );
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pfo_attmpls");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(30))
        .warm_up_time(Duration::from_secs(1));
    for (classes, sessions) in [(30, 10), (50, 20)] {
        let Some(inst) = attmpls(classes, sessions, 1) else {
            return;
        };
        g.bench_function(format!("{classes}x{sessions}_gap1e-4"), |b| {
            b.iter(|| black_box(solve(&inst, &SolveOptions::default())));
        });
    }
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    if std::env::var("PFO_BENCH_SKIP_FIGURES").is_err() {
        figures();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
