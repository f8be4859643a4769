//! The exact PFO solver: envelope reformulation + MILP (HiGHS), then an LP with the session
//! counts fixed for the capacity duals, then the mapping to MONtra weights.
//!
//! Formulation (see `docs/pfo.md`): with `y_f = n_c x_f`, PFO is `max sum_c h_c(Y_c)`,
//! `Y_c = sum_{f in F_c} y_f`, `sum_{f: l in f} y_f <= C_l`, where `h_c` is the upper envelope
//! of `n U_c(Y/n)` over `n = 1..=N_c` ([`Envelope`]). Each `h_c` is cut into its maximal
//! concave pieces; a class picks one piece with a binary (or with `ceil(log2 m)` binaries in the
//! logarithmic variant) and a convex combination of that piece's breakpoints. Both are locally
//! ideal (Vielma, Ahmed & Nemhauser 2010): the LP relaxation of each class is the concave
//! envelope of `h_c`. Concave stretches of `h_c` cost no binary at all.

use std::time::Instant;

use highs::{Col, HighsModelStatus, RowProblem, Sense};

use super::envelope::{Envelope, concave_pieces};
use super::heuristic;
use super::instance::Instance;
use super::solution::{ClassSolution, FlowSolution, LinkSolution, Solution, Status, relative_gap};
use super::utility::{Pwl, eval_pwl};
use crate::mapping::{MappingConfig, montra_targets};

/// MILP formulation of the per-class choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formulation {
    /// Incremental ("delta") model of `h_c` with ordered fill variables; one binary per
    /// convex kink of `h_c` (branching on it splits `Y_c` at the kink). Default.
    Incremental,
    /// One binary per concave piece of the envelope `h_c` (disaggregated convex combination).
    EnvelopePieces,
    /// Same pieces, logarithmic number of binaries (disaggregated logarithmic, "DLog").
    EnvelopeLog,
    /// Baseline: one binary per (session count, utility segment) pair.
    Plain,
}

/// Solver settings.
#[derive(Debug, Clone)]
pub struct SolveOptions {
    /// Wall-clock limit in seconds (`None`: none).
    pub time_limit: Option<f64>,
    /// Target relative gap for `status: optimal`.
    pub gap_tolerance: f64,
    /// MILP formulation.
    pub formulation: Formulation,
    /// Pass a heuristic start (LP dive, else greedy) to the MILP.
    pub warm_start: bool,
    /// Print HiGHS's MIP log on stdout (for profiling).
    pub verbose: bool,
    /// Mapping edge-case settings.
    pub mapping: MappingConfig,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            time_limit: None,
            gap_tolerance: 1e-4,
            formulation: Formulation::Incremental,
            warm_start: true,
            verbose: false,
            mapping: MappingConfig::default(),
        }
    }
}

/// Per-class data derived from the instance.
struct ClassModel {
    /// Piecewise-linear utility actually optimized.
    pwl: Pwl,
    /// Certified `sup (U - pwl)` over the reachable rates.
    eps: f64,
    /// Envelope `h_c`.
    env: Envelope,
}

/// Largest aggregate rate class `c` can reach alone (max flow over its routes, an LP);
/// falls back to `sum_f min_{l in f} C_l` if the LP fails.
fn class_cap(inst: &Instance, c: usize) -> f64 {
    let loose = inst.max_session_rate(c);
    let flows = &inst.classes[c].flows;
    if flows.len() < 2 {
        return loose;
    }
    let mut pb = RowProblem::default();
    let cols: Vec<Col> = flows.iter().map(|_| pb.add_column(1.0, 0.0..)).collect();
    for (l, link) in inst.links.iter().enumerate() {
        let terms: Vec<(Col, f64)> = flows
            .iter()
            .zip(&cols)
            .filter(|(f, _)| inst.flows[**f].links.contains(&l))
            .map(|(_, &col)| (col, 1.0))
            .collect();
        if terms.len() > 1 {
            pb.add_row(..=link.capacity, terms);
        }
    }
    for (&f, &col) in flows.iter().zip(&cols) {
        let b = inst.flows[f]
            .links
            .iter()
            .map(|&l| inst.links[l].capacity)
            .fold(f64::INFINITY, f64::min);
        pb.add_row(..=b, [(col, 1.0)]);
    }
    let mut model = pb.optimise(Sense::Maximise);
    model.make_quiet();
    match model.try_solve() {
        Ok(s) if s.status() == HighsModelStatus::Optimal => {
            // Round up a little: the cap only trims the envelope, it must not cut feasible rates.
            (s.objective_value() * (1.0 + 1e-9) + 1e-9).min(loose)
        }
        _ => loose,
    }
}

fn class_models(inst: &Instance, gap_tolerance: f64) -> Vec<ClassModel> {
    inst.classes
        .iter()
        .enumerate()
        .map(|(c, class)| {
            let r_max = class_cap(inst, c);
            let scale = class.utility.eval(r_max).abs().max(1.0);
            let (pwl, eps) = class.utility.to_pwl(r_max, 0.05 * gap_tolerance * scale);
            let env = Envelope::new(&pwl, class.sessions, r_max);
            ClassModel { pwl, eps, env }
        })
        .collect()
}

/// How the columns of a class block map back (for warm starts).
enum Block {
    /// One concave piece: lambda columns over all points.
    Single { lambda: Vec<Col> },
    /// Pieces with their point ranges, lambda columns and selection columns.
    Pieces {
        pieces: Vec<(usize, usize)>,
        lambda: Vec<Vec<Col>>,
        select: Vec<Col>,
        log: bool,
    },
    /// Incremental: fill columns per segment, kink binaries (segment index after the kink).
    Incremental {
        delta: Vec<Col>,
        kinks: Vec<(usize, Col)>,
    },
    /// Baseline or anything without a warm start.
    Opaque,
}

struct Milp {
    pb: RowProblem,
    flow_cols: Vec<Col>,
    blocks: Vec<Block>,
    offset: f64,
    has_integers: bool,
}

fn build_milp(inst: &Instance, models: &[ClassModel], form: Formulation) -> Milp {
    let mut pb = RowProblem::default();
    let flow_cols: Vec<Col> = inst
        .flows
        .iter()
        .map(|_| pb.add_column(0.0, 0.0..))
        .collect();
    for (l, link) in inst.links.iter().enumerate() {
        let terms: Vec<(Col, f64)> = inst.link_flows(l).map(|i| (flow_cols[i], 1.0)).collect();
        if !terms.is_empty() {
            pb.add_row(..=link.capacity, terms);
        }
    }
    let mut blocks = Vec::with_capacity(models.len());
    let mut offset = 0.0;
    for (c, m) in models.iter().enumerate() {
        let ys: Vec<(Col, f64)> = inst.classes[c]
            .flows
            .iter()
            .map(|&f| (flow_cols[f], 1.0))
            .collect();
        let pts = &m.env.points;
        if pts.len() == 1 {
            // Nothing to choose: Y = 0, h(0) constant.
            offset += pts[0].1;
            if !ys.is_empty() {
                pb.add_row(0.0..=0.0, ys);
            }
            blocks.push(Block::Opaque);
            continue;
        }
        match form {
            Formulation::Plain => {
                plain_block(&mut pb, &m.pwl, inst.classes[c].sessions, ys);
                blocks.push(Block::Opaque);
            }
            Formulation::Incremental => {
                offset += pts[0].1;
                let delta: Vec<Col> = pts
                    .windows(2)
                    .map(|w| pb.add_column(w[1].1 - w[0].1, 0.0..=1.0))
                    .collect();
                let mut row = ys;
                row.extend(
                    delta
                        .iter()
                        .zip(pts.windows(2))
                        .map(|(&d, w)| (d, -(w[1].0 - w[0].0))),
                );
                pb.add_row(0.0..=0.0, row);
                let pieces = m.env.concave_pieces();
                let kink_at: Vec<usize> = pieces.iter().skip(1).map(|p| p.0).collect();
                let mut kinks = Vec::new();
                for k in 1..delta.len() {
                    // Segment k starts at point k. Order: delta_k <= delta_{k-1}.
                    if kink_at.contains(&k) {
                        let z = pb.add_integer_column(0.0, 0.0..=1.0);
                        pb.add_row(..=0.0, [(delta[k], 1.0), (z, -1.0)]);
                        pb.add_row(..=0.0, [(z, 1.0), (delta[k - 1], -1.0)]);
                        kinks.push((k, z));
                    } else {
                        pb.add_row(..=0.0, [(delta[k], 1.0), (delta[k - 1], -1.0)]);
                    }
                }
                blocks.push(Block::Incremental { delta, kinks });
            }
            Formulation::EnvelopePieces | Formulation::EnvelopeLog => {
                let pieces = m.env.concave_pieces();
                if pieces.len() == 1 {
                    let lambda: Vec<Col> =
                        pts.iter().map(|p| pb.add_column(p.1, 0.0..=1.0)).collect();
                    pb.add_row(1.0..=1.0, lambda.iter().map(|&l| (l, 1.0)));
                    let mut row = ys;
                    row.extend(lambda.iter().zip(pts).map(|(&l, p)| (l, -p.0)));
                    pb.add_row(0.0..=0.0, row);
                    blocks.push(Block::Single { lambda });
                    continue;
                }
                let lambda: Vec<Vec<Col>> = pieces
                    .iter()
                    .map(|&(a, b)| {
                        (a..=b)
                            .map(|i| pb.add_column(pts[i].1, 0.0..=1.0))
                            .collect()
                    })
                    .collect();
                let mut row = ys;
                for (&(a, _), cols) in pieces.iter().zip(&lambda) {
                    row.extend(cols.iter().enumerate().map(|(k, &l)| (l, -pts[a + k].0)));
                }
                pb.add_row(0.0..=0.0, row);
                let log = form == Formulation::EnvelopeLog;
                let select = if log {
                    let all = lambda.iter().flatten().map(|&l| (l, 1.0));
                    pb.add_row(1.0..=1.0, all);
                    let bits = usize::BITS - (pieces.len() - 1).leading_zeros();
                    let mut z = Vec::new();
                    for b in 0..bits {
                        let zb = pb.add_integer_column(0.0, 0.0..=1.0);
                        let ones = lambda
                            .iter()
                            .enumerate()
                            .filter(|(j, _)| (j >> b) & 1 == 1)
                            .flat_map(|(_, cols)| cols.iter().map(|&l| (l, 1.0)));
                        let mut r1: Vec<(Col, f64)> = ones.collect();
                        r1.push((zb, -1.0));
                        pb.add_row(..=0.0, r1);
                        let zeros = lambda
                            .iter()
                            .enumerate()
                            .filter(|(j, _)| (j >> b) & 1 == 0)
                            .flat_map(|(_, cols)| cols.iter().map(|&l| (l, 1.0)));
                        let mut r0: Vec<(Col, f64)> = zeros.collect();
                        r0.push((zb, 1.0));
                        pb.add_row(..=1.0, r0);
                        z.push(zb);
                    }
                    z
                } else {
                    let z: Vec<Col> = pieces
                        .iter()
                        .map(|_| pb.add_integer_column(0.0, 0.0..=1.0))
                        .collect();
                    for (cols, &zj) in lambda.iter().zip(&z) {
                        let mut r: Vec<(Col, f64)> = cols.iter().map(|&l| (l, 1.0)).collect();
                        r.push((zj, -1.0));
                        pb.add_row(0.0..=0.0, r);
                    }
                    pb.add_row(1.0..=1.0, z.iter().map(|&zj| (zj, 1.0)));
                    z
                };
                blocks.push(Block::Pieces {
                    pieces,
                    lambda,
                    select,
                    log,
                });
            }
        }
    }
    let has_integers = blocks.iter().any(|b| {
        matches!(b, Block::Pieces { .. })
            || matches!(b, Block::Incremental { kinks, .. } if !kinks.is_empty())
    }) || (form == Formulation::Plain
        && models.iter().any(|m| m.env.points.len() > 1));
    Milp {
        pb,
        flow_cols,
        blocks,
        offset,
        has_integers,
    }
}

/// Baseline: one binary per (n, segment of U): `n r_s z <= w <= n r_{s+1} z`,
/// value `n (u_s - b_s r_s) z + b_s w`.
fn plain_block(pb: &mut RowProblem, pwl: &Pwl, sessions: u32, ys: Vec<(Col, f64)>) {
    let pts = pwl.points();
    let mut link_row = ys;
    let mut choice = Vec::new();
    for n in 1..=sessions {
        let nf = f64::from(n);
        for s in pts.windows(2) {
            let b = (s[1].1 - s[0].1) / (s[1].0 - s[0].0);
            let z = pb.add_integer_column(nf * (s[0].1 - b * s[0].0), 0.0..=1.0);
            let w = pb.add_column(b, 0.0..);
            pb.add_row(..=0.0, [(w, 1.0), (z, -nf * s[1].0)]);
            pb.add_row(0.0.., [(w, 1.0), (z, -nf * s[0].0)]);
            link_row.push((w, -1.0));
            choice.push((z, 1.0));
        }
    }
    pb.add_row(0.0..=0.0, link_row);
    pb.add_row(..=1.0, choice);
}

/// A full MILP column vector for the aggregate rates `y` (pieces formulations only).
fn mip_start(milp: &Milp, inst: &Instance, models: &[ClassModel], y: &[f64]) -> Option<Vec<f64>> {
    let ncols = milp.pb.num_cols();
    let mut x = vec![0.0; ncols];
    for (f, &col) in milp.flow_cols.iter().enumerate() {
        x[col_index(col)] = y[f];
    }
    for (c, block) in milp.blocks.iter().enumerate() {
        let pts = &models[c].env.points;
        let yc: f64 = inst.classes[c].flows.iter().map(|&f| y[f]).sum();
        let (seg, t) = locate(pts, yc)?;
        match block {
            Block::Opaque => {
                if pts.len() > 1 {
                    return None;
                }
            }
            Block::Incremental { delta, kinks } => {
                for (k, &d) in delta.iter().enumerate() {
                    x[col_index(d)] = match k.cmp(&seg) {
                        std::cmp::Ordering::Less => 1.0,
                        std::cmp::Ordering::Equal => t,
                        std::cmp::Ordering::Greater => 0.0,
                    };
                }
                for &(k, z) in kinks {
                    x[col_index(z)] = if x[col_index(delta[k])] > 0.0 {
                        1.0
                    } else {
                        0.0
                    };
                }
            }
            Block::Single { lambda } => {
                x[col_index(lambda[seg])] = 1.0 - t;
                x[col_index(lambda[seg + 1])] += t;
            }
            Block::Pieces {
                pieces,
                lambda,
                select,
                log,
            } => {
                let j = pieces.iter().position(|&(a, b)| seg >= a && seg < b)?;
                let a = pieces[j].0;
                x[col_index(lambda[j][seg - a])] = 1.0 - t;
                x[col_index(lambda[j][seg + 1 - a])] += t;
                if *log {
                    for (b, &zb) in select.iter().enumerate() {
                        x[col_index(zb)] = if (j >> b) & 1 == 1 { 1.0 } else { 0.0 };
                    }
                } else {
                    x[col_index(select[j])] = 1.0;
                }
            }
        }
    }
    Some(x)
}

fn col_index(c: Col) -> usize {
    // `Col` is an index newtype; its Debug/Into are not public, so recover it via `index`.
    c.index()
}

/// Segment index and interpolation weight of `y` in breakpoints `pts` (clamped to the range).
fn locate(pts: &[(f64, f64)], y: f64) -> Option<(usize, f64)> {
    if pts.len() < 2 {
        return if pts.is_empty() { None } else { Some((0, 0.0)) };
    }
    let last = pts.len() - 2;
    let y = y.clamp(0.0, pts[pts.len() - 1].0);
    let seg = pts.windows(2).position(|w| y <= w[1].0).unwrap_or(last);
    let (a, b) = (pts[seg].0, pts[seg + 1].0);
    Some((seg, ((y - a) / (b - a)).clamp(0.0, 1.0)))
}

/// Best session count for aggregate rate `yc`: `argmax_n n U(yc / n)`, ties to the larger `n`
/// (admit more sessions when it costs nothing); `n = 0` when `yc = 0` and `U(0) = 0`.
pub fn best_sessions(pwl: &Pwl, sessions: u32, yc: f64) -> u32 {
    if sessions == 0 || (yc <= 1e-12 && pwl.eval(0.0) <= 0.0) {
        return 0;
    }
    let vals: Vec<f64> = (1..=sessions)
        .map(|n| f64::from(n) * pwl.eval(yc / f64::from(n)))
        .collect();
    let best = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tol = 1e-9 * best.abs().max(1.0);
    let idx = vals.iter().rposition(|&v| v >= best - tol).unwrap_or(0);
    u32::try_from(idx + 1).unwrap_or(sessions)
}

/// LP with the session counts fixed at `n`: each class restricted to the concave piece of
/// `n U(Y/n)` that holds its current aggregate rate. Returns refined `y` and the link duals.
fn fixed_n_lp(
    inst: &Instance,
    models: &[ClassModel],
    n: &[u32],
    y: &[f64],
) -> Option<(Vec<f64>, Vec<f64>)> {
    let mut pb = RowProblem::default();
    let flow_cols: Vec<Col> = inst
        .flows
        .iter()
        .map(|_| pb.add_column(0.0, 0.0..))
        .collect();
    let mut link_rows = Vec::with_capacity(inst.links.len());
    for (l, link) in inst.links.iter().enumerate() {
        let terms: Vec<(Col, f64)> = inst.link_flows(l).map(|i| (flow_cols[i], 1.0)).collect();
        // An empty row keeps the row numbering aligned with the links.
        link_rows.push(pb.num_rows());
        pb.add_row(..=link.capacity, terms);
    }
    for (c, m) in models.iter().enumerate() {
        let ys: Vec<(Col, f64)> = inst.classes[c]
            .flows
            .iter()
            .map(|&f| (flow_cols[f], 1.0))
            .collect();
        let nf = f64::from(n[c]);
        let pts: Vec<(f64, f64)> = if n[c] == 0 {
            vec![(0.0, 0.0)]
        } else {
            m.pwl
                .points()
                .iter()
                .map(|p| (nf * p.0, nf * p.1))
                .collect()
        };
        let yc: f64 = inst.classes[c].flows.iter().map(|&f| y[f]).sum();
        let t = pb.add_column(1.0, f64::NEG_INFINITY..);
        if pts.len() == 1 {
            pb.add_row(0.0..=0.0, ys);
            pb.add_row(..=pts[0].1, [(t, 1.0)]);
            continue;
        }
        let pieces = concave_pieces(&pts);
        let yc = yc.clamp(0.0, pts[pts.len() - 1].0);
        let &(a, b) = pieces
            .iter()
            .find(|&&(a, b)| yc >= pts[a].0 && yc < pts[b].0)
            .or(pieces.last())?;
        pb.add_row(pts[a].0..=pts[b].0, ys.clone());
        heuristic::add_chord_rows(&mut pb, t, &ys, &pts[a..=b]);
    }
    let solved = heuristic::solve_lp(pb)?;
    let sol = solved.get_solution();
    let cols = sol.columns();
    let y_new: Vec<f64> = flow_cols.iter().map(|c| cols[c.index()].max(0.0)).collect();
    let duals = sol.dual_rows();
    // HiGHS reports row duals of a maximisation with the sign of the minimisation of the
    // negated objective; capacity rows bind from above, so mu = |dual|.
    let mu: Vec<f64> = link_rows.iter().map(|&r| duals[r].abs()).collect();
    Some((y_new, mu))
}

/// Solves PFO. Never fails: the zero plan is always feasible.
pub fn solve(inst: &Instance, opts: &SolveOptions) -> Solution {
    let start = Instant::now();
    let models = class_models(inst, opts.gap_tolerance);
    let milp = build_milp(inst, &models, opts.formulation);
    let trivial_bound: f64 = models.iter().map(|m| m.env.eval(m.env.y_max())).sum();
    let eps_total: f64 = models
        .iter()
        .zip(&inst.classes)
        .map(|(m, c)| f64::from(c.sessions) * m.eps + m.env.lowered)
        .sum();

    let start_cols = if opts.warm_start {
        let greedy = greedy_start(inst, &models);
        let budget = opts.time_limit.map_or(5.0, |t| 0.25 * t);
        let deadline = start + std::time::Duration::from_secs_f64(budget.clamp(0.0, 1e6));
        let envs: Vec<&[(f64, f64)]> = models.iter().map(|m| m.env.points.as_slice()).collect();
        let dived = heuristic::dive(inst, &envs, deadline);
        let value = |y: &[f64]| -> f64 {
            models
                .iter()
                .zip(&inst.classes)
                .map(|(m, c)| m.env.eval(c.flows.iter().map(|&f| y[f]).sum()))
                .sum()
        };
        let best = match dived {
            Some(d) if value(&d) >= value(&greedy) => d,
            _ => greedy,
        };
        mip_start(&milp, inst, &models, &best)
    } else {
        None
    };
    let Milp {
        pb,
        flow_cols,
        offset,
        has_integers,
        ..
    } = milp;
    let mut model = pb.optimise(Sense::Maximise);
    model.make_quiet();
    if opts.verbose {
        model.set_option("output_flag", true);
        model.set_option("log_to_console", true);
    }
    model.set_option("mip_rel_gap", opts.gap_tolerance * 0.5);
    model.set_option("mip_abs_gap", opts.gap_tolerance * 0.5);
    // The dive's start is within a few 1e-3 of the optimum: HiGHS's expensive primal
    // heuristics (RINS/RENS sub-MIPs, feasibility jump) and root restarts cost more than they
    // find here, and so does cut separation below the root, where the time goes into LP solves
    // (measured: docs/pfo.md). Cheap heuristics and root cuts stay on.
    model.set_option("mip_heuristic_run_rins", false);
    model.set_option("mip_heuristic_run_rens", false);
    model.set_option("mip_heuristic_run_feasibility_jump", false);
    model.set_option("mip_allow_restart", false);
    model.set_option("mip_allow_cut_separation_at_nodes", false);
    if let Some(limit) = opts.time_limit {
        let left = (limit - start.elapsed().as_secs_f64()).max(0.01);
        model.set_option("time_limit", left);
    }
    if let Some(x) = &start_cols {
        let _ = model.try_set_solution(Some(x), None, None, None);
    }
    let (mut y, milp_bound, hit_limit) = match model.try_solve() {
        Ok(solved) => {
            let status = solved.status();
            let sol = solved.get_solution();
            let cols = sol.columns();
            let y: Vec<f64> = if !cols.is_empty() && has_primal(&solved) {
                flow_cols.iter().map(|c| cols[c.index()].max(0.0)).collect()
            } else {
                vec![0.0; inst.flows.len()]
            };
            let bound = if !has_integers {
                if status == HighsModelStatus::Optimal {
                    solved.objective_value()
                } else {
                    f64::INFINITY
                }
            } else {
                match solved.double_info_value(c"mip_dual_bound") {
                    Ok(b) if b.is_finite() => b,
                    _ => f64::INFINITY,
                }
            };
            (y, bound + offset, status != HighsModelStatus::Optimal)
        }
        Err(_) => (vec![0.0; inst.flows.len()], f64::INFINITY, true),
    };
    // Keep the capacity rows satisfied exactly despite solver tolerances: scale each class down
    // if a link is over by more than rounding.
    repair(inst, &mut y);

    let n: Vec<u32> = models
        .iter()
        .zip(&inst.classes)
        .map(|(m, c)| {
            let yc: f64 = c.flows.iter().map(|&f| y[f]).sum();
            best_sessions(&m.pwl, c.sessions, yc)
        })
        .collect();
    let mut mu = vec![0.0; inst.links.len()];
    if let Some((y2, mu2)) = fixed_n_lp(inst, &models, &n, &y) {
        let mut y2 = y2;
        repair(inst, &mut y2);
        let old = objective_of(inst, &n, &y);
        let new = objective_of(inst, &n, &y2);
        if new >= old - 1e-9 * old.abs().max(1.0) {
            y = y2;
        }
        mu = mu2;
    }
    let objective = objective_of(inst, &n, &y);
    let bound = (milp_bound.min(trivial_bound) + eps_total).max(objective);
    let gap = relative_gap(objective, bound);
    // The plan counts as optimal when its proven gap is within tolerance, whether or not the
    // MILP ran into the time limit.
    let _ = hit_limit;
    let status = if gap <= opts.gap_tolerance * (1.0 + 1e-9) {
        Status::Optimal
    } else {
        Status::TimeLimit
    };
    build_plan(
        inst,
        &n,
        &y,
        &mu,
        objective,
        bound,
        gap,
        status,
        start.elapsed().as_secs_f64(),
        &opts.mapping,
    )
}

fn has_primal(solved: &highs::SolvedModel) -> bool {
    solved
        .int_info_value(c"primal_solution_status")
        .map(|v| v >= 2)
        .unwrap_or(false)
}

/// Scales flows down so every link load is within capacity (undoes solver feasibility slack).
fn repair(inst: &Instance, y: &mut [f64]) {
    for (l, link) in inst.links.iter().enumerate() {
        let load = inst.link_load(l, y);
        if load > link.capacity && load > 0.0 {
            let k = link.capacity / load;
            for i in inst.link_flows(l) {
                y[i] *= k;
            }
        }
    }
}

/// Mission utility with the exact utilities, for session counts `n` and aggregate rates `y`.
fn objective_of(inst: &Instance, n: &[u32], y: &[f64]) -> f64 {
    inst.classes
        .iter()
        .enumerate()
        .map(|(c, class)| {
            if n[c] == 0 {
                return 0.0;
            }
            let nf = f64::from(n[c]);
            let x: f64 = class.flows.iter().map(|&f| y[f] / nf).sum();
            nf * class.utility.eval(x)
        })
        .sum()
}

/// Cheap feasible start: classes in order of best value per unit of aggregate rate get a
/// share of their routes' residual capacity (water-filling is not needed for a start).
fn greedy_start(inst: &Instance, models: &[ClassModel]) -> Vec<f64> {
    let mut residual: Vec<f64> = inst.links.iter().map(|l| l.capacity).collect();
    let mut y = vec![0.0; inst.flows.len()];
    let mut order: Vec<usize> = (0..inst.classes.len()).collect();
    let density = |c: usize| {
        let pts = &models[c].env.points;
        pts.iter()
            .skip(1)
            .map(|p| (p.1 - pts[0].1) / p.0)
            .fold(0.0, f64::max)
    };
    order.sort_by(|&a, &b| density(b).total_cmp(&density(a)));
    for c in order {
        let pts = &models[c].env.points;
        // Target: the breakpoint of h_c with the best value per rate.
        let target = pts
            .iter()
            .skip(1)
            .max_by(|a, b| ((a.1 - pts[0].1) / a.0).total_cmp(&((b.1 - pts[0].1) / b.0)))
            .map_or(0.0, |p| p.0);
        let mut want = target;
        for &f in &inst.classes[c].flows {
            let room = inst.flows[f]
                .links
                .iter()
                .map(|&l| residual[l])
                .fold(f64::INFINITY, f64::min);
            let take = room.min(want).max(0.0);
            if take <= 0.0 {
                continue;
            }
            y[f] = take;
            want -= take;
            for &l in &inst.flows[f].links {
                residual[l] -= take;
            }
        }
        // Only keep it if it reached the target or h is increasing anyway.
        let got: f64 = inst.classes[c].flows.iter().map(|&f| y[f]).sum();
        if eval_pwl(pts, got) <= pts[0].1 {
            for &f in &inst.classes[c].flows {
                for &l in &inst.flows[f].links {
                    residual[l] += y[f];
                }
                y[f] = 0.0;
            }
        }
    }
    y
}

#[allow(clippy::too_many_arguments)]
fn build_plan(
    inst: &Instance,
    n: &[u32],
    y: &[f64],
    mu: &[f64],
    objective: f64,
    bound: f64,
    gap: f64,
    status: Status,
    seconds: f64,
    mapping: &MappingConfig,
) -> Solution {
    let x: Vec<f64> = inst
        .flows
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if n[f.class] == 0 {
                0.0
            } else {
                y[i] / f64::from(n[f.class])
            }
        })
        .collect();
    let targets = montra_targets(inst, &x, mu, mapping);
    Solution {
        status,
        objective,
        bound,
        gap,
        seconds,
        classes: inst
            .classes
            .iter()
            .enumerate()
            .map(|(c, class)| ClassSolution {
                id: class.id.clone(),
                sessions: n[c],
                rate: class.flows.iter().map(|&f| x[f]).sum(),
            })
            .collect(),
        flows: inst
            .flows
            .iter()
            .enumerate()
            .map(|(i, f)| FlowSolution {
                id: f.id.clone(),
                rate: x[i],
                weight: targets[i].weight,
                floored: targets[i].floored,
            })
            .collect(),
        links: inst
            .links
            .iter()
            .enumerate()
            .map(|(l, link)| LinkSolution {
                id: link.id.clone(),
                load: inst.link_load(l, y),
                dual: mu[l],
            })
            .collect(),
    }
}
