//! Primal heuristic for the envelope model: an LP dive on the aggregate class rates.
//!
//! The relaxation of `max sum_c h_c(Y_c)` over the flow polytope replaces each `h_c` by its
//! concave envelope on the class's current interval `[lo_c, hi_c]` of breakpoints (an epigraph:
//! one row per hull segment). A class is *fractional* when its `Y_c` lies strictly under a hull
//! chord (`hull(Y_c) > h_c(Y_c)`). The dive restricts the least fractional classes to the
//! concave piece of `h_c` that holds their current `Y_c` (the current point stays feasible, so
//! the dive never becomes infeasible) and re-solves, until no class is fractional. The result is
//! a feasible aggregate-rate vector `y` whose value `sum_c h_c(Y_c)` is exact; it seeds the
//! MILP (HiGHS) with a near-optimal incumbent so that its own heuristics can stay light.

use std::time::Instant;

use highs::{Col, HighsModelStatus, RowProblem, Sense};

use super::envelope::concave_pieces;
use super::instance::Instance;
use super::utility::eval_pwl;

/// Upper concave hull of `pts` (sorted by abscissa), as a subset of the points.
pub(crate) fn upper_hull(pts: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut hull: Vec<(f64, f64)> = Vec::with_capacity(pts.len());
    for &p in pts {
        while hull.len() >= 2 {
            let a = hull[hull.len() - 2];
            let b = hull[hull.len() - 1];
            // Drop b if it lies on or below the chord a -> p.
            let cross = (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0);
            if cross >= 0.0 {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(p);
    }
    hull
}

/// Per-class state of the dive.
struct ClassState<'a> {
    pts: &'a [(f64, f64)],
    /// Concave pieces of `pts` (inclusive index ranges).
    pieces: Vec<(usize, usize)>,
    /// Current interval as inclusive point indices.
    lo: usize,
    hi: usize,
}

/// Solves the relaxation on the current intervals; returns the aggregate flow rates `y`.
fn relaxation(
    inst: &Instance,
    classes: &[ClassState<'_>],
    link_rows: &[Vec<usize>],
) -> Option<Vec<f64>> {
    let mut pb = RowProblem::default();
    let flow_cols: Vec<Col> = inst
        .flows
        .iter()
        .map(|_| pb.add_column(0.0, 0.0..))
        .collect();
    for (l, flows) in link_rows.iter().enumerate() {
        if !flows.is_empty() {
            pb.add_row(
                ..=inst.links[l].capacity,
                flows.iter().map(|&f| (flow_cols[f], 1.0)),
            );
        }
    }
    for (c, st) in classes.iter().enumerate() {
        let ys: Vec<(Col, f64)> = inst.classes[c]
            .flows
            .iter()
            .map(|&f| (flow_cols[f], 1.0))
            .collect();
        let (ylo, yhi) = (st.pts[st.lo].0, st.pts[st.hi].0);
        if ys.is_empty() {
            continue;
        }
        pb.add_row(ylo..=yhi, ys.clone());
        if st.lo == st.hi {
            continue;
        }
        let hull = upper_hull(&st.pts[st.lo..=st.hi]);
        let t = pb.add_column(1.0, f64::NEG_INFINITY..);
        add_chord_rows(&mut pb, t, &ys, &hull);
    }
    let solved = solve_lp(pb)?;
    let cols = solved.get_solution().columns().to_vec();
    Some(flow_cols.iter().map(|c| cols[c.index()].max(0.0)).collect())
}

/// LP dive (see the module doc). `envelopes[c]` are the breakpoints of `h_c`. Returns feasible
/// aggregate flow rates, or `None` if an LP failed or the deadline passed.
pub(crate) fn dive(
    inst: &Instance,
    envelopes: &[&[(f64, f64)]],
    deadline: Instant,
) -> Option<Vec<f64>> {
    let link_rows: Vec<Vec<usize>> = (0..inst.links.len())
        .map(|l| inst.link_flows(l).collect())
        .collect();
    let mut classes: Vec<ClassState<'_>> = envelopes
        .iter()
        .map(|pts| ClassState {
            pts,
            pieces: concave_pieces(pts),
            lo: 0,
            hi: pts.len().saturating_sub(1),
        })
        .collect();
    // Each round fixes at least one class to a concave piece, so the dive ends.
    for _ in 0..=classes.len() {
        if Instant::now() >= deadline {
            return None;
        }
        let y = relaxation(inst, &classes, &link_rows)?;
        // Fractional classes: (deviation hull(Y) - h(Y), class, piece holding Y).
        let mut cand: Vec<(f64, usize, usize, usize)> = Vec::new();
        for (c, st) in classes.iter().enumerate() {
            if st.lo == st.hi {
                continue;
            }
            let yc: f64 = inst.classes[c].flows.iter().map(|&f| y[f]).sum();
            let seg = &st.pts[st.lo..=st.hi];
            let dev = eval_pwl(&upper_hull(seg), yc) - eval_pwl(seg, yc);
            if dev <= 1e-9 * st.pts[st.hi].1.abs().max(1.0) {
                continue;
            }
            let yc = yc.clamp(st.pts[st.lo].0, st.pts[st.hi].0);
            if let Some(&(a, b)) = st
                .pieces
                .iter()
                .find(|&&(a, b)| st.pts[a].0 <= yc && yc <= st.pts[b].0 && b > st.lo && a < st.hi)
            {
                cand.push((dev, c, a.max(st.lo), b.min(st.hi)));
            }
        }
        if cand.is_empty() {
            return Some(y);
        }
        // Least fractional first; fix a quarter of them per round.
        cand.sort_by(|a, b| a.0.total_cmp(&b.0));
        let k = cand.len().div_ceil(4);
        for &(_, c, a, b) in &cand[..k] {
            classes[c].lo = a;
            classes[c].hi = b;
        }
    }
    None
}

/// Rows `t <= h(y)` for the concave piecewise-linear `h` through `pts` (one
/// chord per segment; `y` = the sum of the `ys` columns).
pub(super) fn add_chord_rows(pb: &mut RowProblem, t: Col, ys: &[(Col, f64)], pts: &[(f64, f64)]) {
    for w in pts.windows(2) {
        let slope = (w[1].1 - w[0].1) / (w[1].0 - w[0].0);
        let icpt = w[0].1 - slope * w[0].0;
        let mut r: Vec<(Col, f64)> = vec![(t, 1.0)];
        r.extend(ys.iter().map(|&(col, _)| (col, -slope)));
        pb.add_row(..=icpt, r);
    }
}

/// Maximises `pb` quietly; `None` unless HiGHS proves an optimum.
pub(super) fn solve_lp(pb: RowProblem) -> Option<highs::SolvedModel> {
    let mut model = pb.optimise(Sense::Maximise);
    model.make_quiet();
    let solved = model.try_solve().ok()?;
    (solved.status() == HighsModelStatus::Optimal).then_some(solved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pfo::envelope::Envelope;
    use crate::pfo::instance::{ClassSpec, FlowSpec, InstanceFile, LinkSpec};
    use crate::pfo::oracle::brute_force;
    use crate::pfo::utility::{Pwl, UtilitySpec};

    #[test]
    fn upper_hull_keeps_the_concave_majorant() {
        let pts = [(0.0, 0.0), (1.0, 0.1), (2.0, 0.9), (3.0, 1.0), (4.0, 1.0)];
        assert_eq!(
            upper_hull(&pts),
            vec![(0.0, 0.0), (2.0, 0.9), (3.0, 1.0), (4.0, 1.0)]
        );
        assert_eq!(upper_hull(&pts[..1]), vec![(0.0, 0.0)]);
    }

    fn tiny() -> Instance {
        let sig = |w: f64| {
            UtilitySpec::PiecewiseLinear(vec![[0.0, 0.0], [1.0, 0.1 * w], [2.0, 0.9 * w], [4.0, w]])
        };
        let file = InstanceFile {
            links: ["a", "b", "c"]
                .iter()
                .map(|id| LinkSpec {
                    id: (*id).into(),
                    capacity: 5.0,
                })
                .collect(),
            classes: vec![
                ClassSpec {
                    id: "x".into(),
                    sessions: 3,
                    utility: sig(1.0),
                },
                ClassSpec {
                    id: "y".into(),
                    sessions: 2,
                    utility: sig(1.5),
                },
            ],
            flows: vec![
                FlowSpec {
                    id: "x/1".into(),
                    class: "x".into(),
                    links: vec!["a".into(), "b".into()],
                },
                FlowSpec {
                    id: "x/2".into(),
                    class: "x".into(),
                    links: vec!["c".into()],
                },
                FlowSpec {
                    id: "y/1".into(),
                    class: "y".into(),
                    links: vec!["b".into(), "c".into()],
                },
            ],
            loss_budget: None,
        };
        Instance::from_file(&file).unwrap()
    }

    #[test]
    fn dive_is_feasible_integral_and_not_better_than_the_optimum() {
        let inst = tiny();
        let envs: Vec<Envelope> = inst
            .classes
            .iter()
            .map(|c| {
                let UtilitySpec::PiecewiseLinear(p) = &c.utility else {
                    unreachable!()
                };
                let u = Pwl::new(p.iter().map(|q| (q[0], q[1])).collect());
                Envelope::new(&u, c.sessions, 10.0)
            })
            .collect();
        let pts: Vec<&[(f64, f64)]> = envs.iter().map(|e| e.points.as_slice()).collect();
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let y = dive(&inst, &pts, deadline).expect("dive");
        for (l, link) in inst.links.iter().enumerate() {
            let load = inst.link_load(l, &y);
            assert!(load <= link.capacity + 1e-7, "link {l}: {load}");
        }
        let value: f64 = envs
            .iter()
            .zip(&inst.classes)
            .map(|(e, c)| e.eval(c.flows.iter().map(|&f| y[f]).sum()))
            .sum();
        let best = brute_force(&inst, 100_000).expect("oracle").objective;
        assert!(value <= best + 1e-6, "dive {value} > optimum {best}");
        assert!(value >= 0.9 * best, "dive {value} far below optimum {best}");
    }
}
