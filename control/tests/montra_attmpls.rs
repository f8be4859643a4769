//! MONtra against PFO's targets on the AT&T MPLS topology (Topology Zoo AttMpls, 25 nodes,
//! 112 directed links): the 30-class benchmark instance of `benches/pfo.rs` is solved by PFO,
//! mapped to MONtra weights (`mapping::montra_targets`), and run in the fluid model and the
//! seeded packet-level simulator of `mongate_dataplane::montra::sim`.
//!
//! Units: one capacity unit = 1000 packets/s of 1250-byte packets (a link of capacity 10 is
//! 100 Mbit/s). One simulated flow per planned (class, route) with a positive rate, carrying
//! the class's admitted sessions together: target `n_c x_f`, weight `n_c w_f` (the sum of `n_c`
//! identical `w log(x)` utilities is `n_c w log(X / n_c)`: the same optimum). Weights are the
//! plan's, scaled by the mapping to the instance's loss budget (2 % here: `loss_budget`; the
//! same code path as the live gateway's plans). Every flow has a controller rate
//! cap (`FlowSpec::cap_pps`): target x 2 for priced flows (the gateway's `cap_factor`),
//! exactly the target for floored flows (positive target, zero path price: the mapping gives
//! them the floor weight, default = the plan's smallest positive path price, and relies on
//! the cap). Packet-level links are RED queues (`Aqm::RED`): with drop-tail, loss is not
//! shared in proportion to rate and MONtra's per-flow shares skew (docs/montra.md).
//!
//! `cargo test -p mongate-control --release --test montra_attmpls -- --nocapture` prints the
//! per-flow tables; `-- --ignored` also runs the strict packet-level check (see its comment).

use std::sync::OnceLock;

use mongate_control::pfo::generator::{GenParams, generate, parse_graphml};
use mongate_control::pfo::{Instance, SolveOptions, Status, solve};
use mongate_dataplane::montra::sim::{self, Aqm, FlowSpec, LinkSpec, SimConfig, SimResult};
use mongate_dataplane::montra::{AckPolicy, ControllerConfig};

/// The project's shared/ folder sits beside the repository (as in `benches/pfo.rs`).
const GRAPH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/topologyzoo/AttMpls.graphml"
);
/// Packets/s per capacity unit.
const UNIT_PPS: f64 = 1000.0;
const PACKET_BYTES: u32 = 1250;
const LOSS_BUDGET: f64 = 0.02;
/// Ramp of the heaviest flow, packets/s per second (targets are up to 10 000 pps; flows start
/// at their targets, so the ramp matters for noise more than for convergence).
const KAPPA: f64 = 500.0;
const X0: f64 = 10.0;
const TOL: f64 = 0.05;
/// Controller cap of a priced flow: target x this factor (the gateway's default
/// `cap_factor`); a floored flow is capped at its target.
const CAP_FACTOR: f64 = 2.0;
/// Link buffer, packets (40 ms at 10 000 pps); RED drops from a quarter of it.
const QUEUE_PKTS: usize = 400;
/// Simulated seconds of the packet-level run (goodput averaged over the second half).
const PACKET_SECONDS: u64 = 240;
const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// The simulated network and flows derived from the PFO plan.
struct Case {
    /// Link capacities, packets/s (instance links, then the floored flows' cap links).
    caps_pps: Vec<f64>,
    routes: Vec<Vec<usize>>,
    weights: Vec<f64>,
    targets: Vec<f64>,
    names: Vec<String>,
    floored: Vec<bool>,
    /// Target equal to a whole link's capacity on the route.
    full_link: Vec<bool>,
    /// Controller rate caps, packets/s.
    caps: Vec<f64>,
}

fn case() -> Option<&'static Case> {
    static CASE: OnceLock<Option<Case>> = OnceLock::new();
    CASE.get_or_init(build_case).as_ref()
}

fn build_case() -> Option<Case> {
    let path = std::env::var("PFO_GRAPHML").unwrap_or_else(|_| GRAPH.to_string());
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("SKIPPED: AttMpls graph not found at {path}; set PFO_GRAPHML");
        return None;
    };
    let g = parse_graphml(&text).expect("AttMpls GraphML parses");
    let params = GenParams {
        classes: 30,
        sessions: 10,
        capacity: 10.0,
        routes: 3,
        segments: 8,
        seed: 1,
    };
    let mut inst = Instance::from_file(&generate(&g, &params)).expect("valid instance");
    inst.loss_budget = LOSS_BUDGET;
    // Solved to the default gap (1e-4), no time limit: a plan cut by a wall-clock limit would
    // depend on the machine's load (5 s on an idle 2-vCPU VM; much longer under heavy load).
    let plan = solve(&inst, &SolveOptions::default());
    assert_eq!(plan.status, Status::Optimal, "gap {}", plan.gap);
    eprintln!(
        "PFO: {} classes, {} flows, objective {:.4}, gap {:.1e}, {:.2} s",
        inst.classes.len(),
        inst.flows.len(),
        plan.objective,
        plan.gap,
        plan.seconds
    );
    let rates: Vec<f64> = plan.flows.iter().map(|f| f.rate).collect();
    let mut c = Case {
        caps_pps: inst.links.iter().map(|l| l.capacity * UNIT_PPS).collect(),
        routes: Vec::new(),
        weights: Vec::new(),
        targets: Vec::new(),
        names: Vec::new(),
        floored: Vec::new(),
        full_link: Vec::new(),
        caps: Vec::new(),
    };
    for (i, f) in inst.flows.iter().enumerate() {
        let t = &plan.flows[i];
        if t.rate <= 1e-9 {
            continue;
        }
        let n = f64::from(plan.classes[f.class].sessions);
        let target = rates[i] * n * UNIT_PPS;
        let route = f.links.clone();
        let min_cap = f
            .links
            .iter()
            .map(|&l| inst.links[l].capacity * UNIT_PPS)
            .fold(f64::INFINITY, f64::min);
        c.full_link.push(target >= min_cap * (1.0 - 1e-6));
        c.routes.push(route);
        c.targets.push(target);
        c.weights.push(t.weight * n * UNIT_PPS);
        c.names.push(t.id.clone());
        c.floored.push(t.floored);
        c.caps.push(if t.floored {
            target
        } else {
            target * CAP_FACTOR
        });
    }
    Some(c)
}

/// Goodput of every flow in the fluid model after `seconds`.
fn fluid_goodput(c: &Case, seconds: f64) -> Vec<f64> {
    let (x, q) = sim::fluid_capped(
        &c.caps_pps,
        &c.routes,
        &c.weights,
        &c.caps,
        KAPPA,
        X0,
        seconds,
    );
    x.iter().zip(&q).map(|(x, q)| x * (1.0 - q)).collect()
}

/// Relative errors `(got - target) / target`.
fn errors(c: &Case, got: &[f64]) -> Vec<f64> {
    got.iter()
        .zip(&c.targets)
        .map(|(g, t)| (g - t) / t)
        .collect()
}

fn worst(errs: &[f64]) -> (usize, f64) {
    errs.iter()
        .enumerate()
        .map(|(i, e)| (i, e.abs()))
        .fold((0, 0.0), |a, b| if b.1 > a.1 { b } else { a })
}

fn print_table(c: &Case, what: &str, got: &[f64], loss: Option<&[f64]>) {
    for (i, (&g, &t)) in got.iter().zip(&c.targets).enumerate() {
        eprintln!(
            "{what} {:<16}{} target {t:8.1} pps  got {g:8.1}  err {:+7.2} %{}",
            c.names[i],
            if c.floored[i] { "*" } else { " " },
            100.0 * (g - t) / t,
            loss.map_or(String::new(), |l| format!("  loss {:.2} %", 100.0 * l[i]))
        );
    }
}

#[test]
fn fluid_model_reaches_pfo_targets_on_attmpls() {
    let Some(c) = case() else { return };
    // Equilibrium: every flow within 5 % of its target.
    let end = 600.0;
    let got = fluid_goodput(c, end);
    print_table(c, "fluid", &got, None);
    let errs = errors(c, &got);
    let (wi, we) = worst(&errs);
    eprintln!(
        "fluid: {} flows ({} floored), worst error {:.2} % ({}) after {end} s",
        c.targets.len(),
        c.floored.iter().filter(|&&f| f).count(),
        100.0 * we,
        c.names[wi]
    );
    assert!(
        we <= TOL,
        "fluid: {} at {:+.2} %",
        c.names[wi],
        100.0 * errs[wi]
    );
    // Convergence time on a grid: the first grid time from which on every flow stays within
    // 5 % at every later grid point.
    let grid = [
        10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 240.0, 300.0, 450.0,
    ];
    let mut converged_at = end;
    for &t in grid.iter().rev() {
        if worst(&errors(c, &fluid_goodput(c, t))).1 <= TOL {
            converged_at = t;
        } else {
            break;
        }
    }
    eprintln!("fluid: within 5 % from t = {converged_at} s on (grid {grid:?}, {end})");
    assert!(
        converged_at <= 450.0,
        "fluid converged only at {converged_at} s"
    );
}

/// Runs the packet-level simulator on the case (`PACKET_SECONDS`, 100 ms samples).
fn packet_run(c: &Case) -> SimResult {
    let links = c
        .caps_pps
        .iter()
        .map(|&cap| LinkSpec {
            capacity_bps: cap * f64::from(PACKET_BYTES) * 8.0,
            delay_ns: 5 * MS,
            queue_pkts: QUEUE_PKTS,
            aqm: Aqm::RED,
        })
        .collect();
    let flows = c
        .routes
        .iter()
        .enumerate()
        .map(|(f, r)| FlowSpec {
            route: r.clone(),
            weight: c.weights[f],
            target_pps: c.targets[f],
            start_ns: 0,
            cap_pps: c.caps[f],
        })
        .collect();
    sim::run(&SimConfig {
        links,
        flows,
        controller: ControllerConfig {
            kappa: KAPPA,
            x_min: 2.0,
            ..ControllerConfig::default()
        },
        x0: X0,
        start_at_target: true,
        packet_bytes: PACKET_BYTES,
        ack_policy: AckPolicy::default(),
        seed: 1,
        duration_ns: PACKET_SECONDS * S,
        sample_ns: 100 * MS,
    })
}

fn packet_result() -> Option<(&'static Case, &'static SimResult)> {
    static RES: OnceLock<Option<SimResult>> = OnceLock::new();
    let c = case()?;
    let r = RES.get_or_init(|| Some(packet_run(c))).as_ref()?;
    Some((c, r))
}

/// What the packet level meets (RED links, seed 1): every flow within 10 % of its target,
/// at least 40 of 44 within 5 %, full-link flows within 5 %, the planned total within 2 %,
/// and the 20 s average of every flow within 10 % of target from some time on.
#[test]
fn packet_sim_on_attmpls() {
    let Some((c, res)) = packet_result() else {
        return;
    };
    let got = &res.mean_goodput_second_half;
    print_table(c, "packet", got, Some(&res.loss));
    for i in 0..got.len() {
        // Error of each 30 s average, to tell bias from noise.
        let series: Vec<String> = res.goodput[i]
            .chunks(300)
            .map(|ch| {
                let avg = ch.iter().sum::<f64>() / ch.len() as f64;
                format!("{:+.1}", 100.0 * (avg - c.targets[i]) / c.targets[i])
            })
            .collect();
        let sent = res.sent_second_half[i].max(1) as f64;
        eprintln!(
            "packet {:<16} 2nd half: dropped {:.3} %, declared lost {:.3} %; spurious {}; \
             w/target {:.3} %; 30 s errors (%) {}",
            c.names[i],
            100.0 * res.dropped_second_half[i] as f64 / sent,
            100.0 * res.lost_second_half[i] as f64 / sent,
            res.spurious[i],
            100.0 * c.weights[i] / c.targets[i],
            series.join(" ")
        );
    }
    let errs = errors(c, got);
    let (wi, _) = worst(&errs);
    let within = errs.iter().filter(|e| e.abs() <= TOL).count();
    let conv = |tol: f64, avg_s: u64| {
        res.convergence_avg_ns(tol, avg_s * S)
            .map(|t| t as f64 / 1e9)
    };
    let (c10, c5) = (conv(0.10, 20), conv(TOL, 20));
    eprintln!(
        "packet: {within}/{} flows within 5 %, worst {:+.2} % ({}); every flow's 20 s average \
         within 10 % from {c10:?} s, within 5 % from {c5:?} s",
        errs.len(),
        100.0 * errs[wi],
        c.names[wi]
    );
    assert!(c10.is_some(), "20 s averages never all within 10 %");
    assert!(
        within + 4 >= errs.len(),
        "only {within} of {} flows within 5 %",
        errs.len()
    );
    assert!(
        errs.iter().all(|e| e.abs() <= 0.10),
        "{} at {:+.2} %",
        c.names[wi],
        100.0 * errs[wi]
    );
    let total: f64 = got.iter().sum();
    let planned: f64 = c.targets.iter().sum();
    eprintln!(
        "packet: total goodput {total:.0} pps vs planned {planned:.0} ({:+.2} %)",
        100.0 * (total - planned) / planned
    );
    assert!(
        (total - planned).abs() <= 0.02 * planned,
        "total {total} vs {planned}"
    );
    for (i, e) in errs.iter().enumerate() {
        if c.full_link[i] && !c.floored[i] {
            assert!(
                e.abs() <= TOL,
                "full-link flow {} at {:+.2} %",
                c.names[i],
                100.0 * e
            );
        }
    }
}

/// The acceptance criterion at packet level: every flow within 5 % of its target. Passes with
/// a thin margin: the worst flow is at -4.98 % (seed 1; -3.95 % with seed 2, but -6.41 % with
/// seed 3), with the gateway's rules since issue 12 (start at the target, cap 2 x target,
/// kappa 500; with kappa 1000 seed 1 gives +5.1 %): small flows on expensive paths carry the
/// loss-price equilibrium's bias (up to 3.5 % in the fluid model at a 2 % budget) plus noise
/// (docs/montra.md, "Fluid and packet check on AttMpls").
#[test]
fn packet_sim_every_flow_within_5_percent() {
    let Some((c, res)) = packet_result() else {
        return;
    };
    let errs = errors(c, &res.mean_goodput_second_half);
    let (wi, we) = worst(&errs);
    assert!(
        we <= TOL,
        "packet: {} at {:+.2} %",
        c.names[wi],
        100.0 * errs[wi]
    );
}
