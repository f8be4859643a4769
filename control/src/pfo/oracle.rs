//! Brute-force PFO for tiny instances with `piecewise_linear` utilities: the test oracle.
//!
//! Enumerates every session vector `n` and, per class, every linear piece of `U_c` the
//! per-session rate `X_c` may lie on (including the flat part beyond the last breakpoint);
//! each combination is an LP in the per-session rates `x` of the ORIGINAL formulation
//! (`sum n_c x_f <= C_l`), solved with HiGHS. Independent of the envelope reformulation.

use highs::{Col, HighsModelStatus, RowProblem, Sense};

use super::instance::Instance;
use super::utility::UtilitySpec;

/// Optimum found by enumeration.
#[derive(Debug, Clone, PartialEq)]
pub struct OracleResult {
    /// Best mission utility.
    pub objective: f64,
    /// A maximising session vector.
    pub sessions: Vec<u32>,
}

/// A linear piece of a utility: `(lo, hi, intercept, slope)`.
type Piece = (f64, f64, f64, f64);

/// A class's choice: session count and (if `n > 0`) the piece its rate lies on.
type Choice = (u32, Option<Piece>);

/// Linear pieces `(lo, hi, intercept, slope)` of a piecewise-linear utility, with the flat tail.
fn pieces(pts: &[[f64; 2]]) -> Vec<Piece> {
    let mut out: Vec<Piece> = pts
        .windows(2)
        .map(|w| {
            let b = (w[1][1] - w[0][1]) / (w[1][0] - w[0][0]);
            (w[0][0], w[1][0], w[0][1] - b * w[0][0], b)
        })
        .collect();
    let last = pts[pts.len() - 1];
    out.push((last[0], f64::INFINITY, last[1], 0.0));
    out
}

/// `None` if a class has a non-piecewise-linear utility or the enumeration exceeds `max_lps`.
pub fn brute_force(inst: &Instance, max_lps: usize) -> Option<OracleResult> {
    let mut choices: Vec<Vec<Choice>> = Vec::new();
    let mut total: usize = 1;
    for class in &inst.classes {
        let UtilitySpec::PiecewiseLinear(pts) = &class.utility else {
            return None;
        };
        let mut opts = vec![(0, None)];
        for n in 1..=class.sessions {
            for p in pieces(pts) {
                opts.push((n, Some(p)));
            }
        }
        total = total.checked_mul(opts.len())?;
        choices.push(opts);
    }
    if total > max_lps {
        return None;
    }
    let mut best = OracleResult {
        objective: 0.0,
        sessions: vec![0; inst.classes.len()],
    };
    let mut idx = vec![0usize; choices.len()];
    loop {
        let pick: Vec<_> = idx.iter().zip(&choices).map(|(&i, c)| c[i]).collect();
        if let Some(v) = fixed_lp(inst, &pick)
            && v > best.objective + 1e-12
        {
            best = OracleResult {
                objective: v,
                sessions: pick.iter().map(|p| p.0).collect(),
            };
        }
        // Odometer.
        let mut k = 0;
        loop {
            if k == idx.len() {
                return Some(best);
            }
            idx[k] += 1;
            if idx[k] < choices[k].len() {
                break;
            }
            idx[k] = 0;
            k += 1;
        }
    }
}

fn fixed_lp(inst: &Instance, pick: &[Choice]) -> Option<f64> {
    let mut pb = RowProblem::default();
    let mut constant = 0.0;
    let x: Vec<Col> = inst
        .flows
        .iter()
        .map(|f| {
            let (n, piece) = pick[f.class];
            let cost = piece.map_or(0.0, |p| f64::from(n) * p.3);
            if n == 0 {
                pb.add_column(0.0, 0.0..=0.0)
            } else {
                pb.add_column(cost, 0.0..)
            }
        })
        .collect();
    for (l, link) in inst.links.iter().enumerate() {
        let terms: Vec<(Col, f64)> = inst
            .flows
            .iter()
            .enumerate()
            .filter(|(_, f)| f.links.contains(&l))
            .map(|(i, f)| (x[i], f64::from(pick[f.class].0)))
            .collect();
        pb.add_row(..=link.capacity, terms);
    }
    for (c, class) in inst.classes.iter().enumerate() {
        let (n, piece) = pick[c];
        let Some((lo, hi, icpt, _)) = piece else {
            continue;
        };
        constant += f64::from(n) * icpt;
        let terms: Vec<(Col, f64)> = class.flows.iter().map(|&f| (x[f], 1.0)).collect();
        if terms.is_empty() {
            if lo > 0.0 {
                return None;
            }
            continue;
        }
        pb.add_row(lo..=hi, terms);
    }
    let mut model = pb.optimise(Sense::Maximise);
    model.make_quiet();
    let solved = model.try_solve().ok()?;
    if solved.status() != HighsModelStatus::Optimal {
        return None;
    }
    Some(solved.objective_value() + constant)
}
