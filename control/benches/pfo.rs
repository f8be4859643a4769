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
    let file = generate(&g, &p);
    // `PFO_BENCH_DUMP=DIR` writes the instances as JSON (for the CLI / perf).
    if let Ok(dir) = std::env::var("PFO_BENCH_DUMP") {
        let path = format!("{dir}/attmpls-{classes}x{sessions}-s{seed}.json");
        if let Ok(text) = serde_json::to_string(&file) {
            let _ = std::fs::write(path, text);
        }
    }
    Instance::from_file(&file).ok()
}

/// `PFO_BENCH_SIZES=30x10,50x20` (default both): the sizes of the figure table.
fn sizes() -> Vec<(usize, u32, f64)> {
    let all = [(30, 10, 60.0), (50, 20, 120.0)];
    match std::env::var("PFO_BENCH_SIZES") {
        Ok(only) => all
            .into_iter()
            .filter(|(c, n, _)| only.split(',').any(|o| o == format!("{c}x{n}")))
            .collect(),
        Err(_) => all.to_vec(),
    }
}

fn figures() {
    let plain = std::env::var("PFO_BENCH_PLAIN").is_ok();
    let seeds: u64 = std::env::var("PFO_BENCH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!("size       seed  formulation  time_to_gap_1e-4[s]  status      gap_at_1s");
    for (classes, sessions, limit) in sizes() {
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
    if std::env::var("PFO_BENCH_SKIP_CRITERION").is_ok() {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
