//! Per-class value of an aggregate rate: `h(Y) = max_{n in 1..=N} n U(Y / n)`.
//!
//! With `y_f = n_c x_f` the capacity constraints are linear in `y` and the objective of a class
//! depends on `Y_c = sum_f y_f` only through `n_c U_c(Y_c / n_c)`. For a given `Y_c` the best
//! session count is free to choose, so PFO is exactly `max sum_c h_c(Y_c)` over the flow
//! polytope, with `h_c` the upper envelope of the `N_c` piecewise-linear functions
//! `n U(Y / n)` (breakpoints `n r_k`). `h_c` is piecewise linear, continuous, non-decreasing and
//! generally non-concave; it splits into maximal concave pieces at its convex kinks.

use super::utility::{Pwl, eval_pwl};

/// Upper envelope `h` of `n U(Y/n)`, `n = 1..=N`, on `[0, N r_K]` as breakpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Breakpoints `(Y, h(Y))`, `Y` strictly increasing from 0.
    pub points: Vec<(f64, f64)>,
}

/// Relative slope tolerance when merging collinear segments / detecting kinks.
const SLOPE_TOL: f64 = 1e-10;

impl Envelope {
    /// Computes the envelope on `[0, min(N r_K, y_cap)]` (`y_cap`: the largest aggregate rate
    /// the class can reach; the rest is never used). Cost `O(N^2 K)` for `K` segments of `u`.
    pub fn new(u: &Pwl, sessions: u32, y_cap: f64) -> Self {
        let r_top = u.last_rate();
        let u0 = u.eval(0.0);
        if sessions == 0 {
            return Envelope {
                points: vec![(0.0, 0.0)],
            };
        }
        let nf = f64::from(sessions);
        if r_top <= 0.0 {
            return Envelope {
                points: vec![(0.0, nf * u0)],
            };
        }
        let ns: Vec<f64> = (1..=sessions).map(f64::from).collect();
        let mut cuts: Vec<f64> = Vec::with_capacity(ns.len() * u.points().len());
        for &n in &ns {
            for &(r, _) in u.points() {
                cuts.push(n * r);
            }
        }
        let y_cap = y_cap.max(0.0);
        cuts.retain(|&c| c < y_cap);
        if nf * r_top >= y_cap {
            cuts.push(y_cap);
        }
        cuts.sort_by(f64::total_cmp);
        cuts.dedup();
        if cuts.len() < 2 {
            return Envelope {
                points: vec![(0.0, nf * u0)],
            };
        }
        let value = |n: f64, y: f64| n * u.eval(y / n);
        let mut pts = vec![(0.0, nf * u0)];
        let mut vp = vec![0.0; ns.len()];
        let mut sl = vec![0.0; ns.len()];
        for w in cuts.windows(2) {
            let (p, q) = (w[0], w[1]);
            for (i, &n) in ns.iter().enumerate() {
                vp[i] = value(n, p);
                sl[i] = (value(n, q) - vp[i]) / (q - p);
            }
            // Start with the highest line at p (ties: steeper).
            let mut cur = 0;
            for i in 1..ns.len() {
                if vp[i] > vp[cur] || (vp[i] == vp[cur] && sl[i] > sl[cur]) {
                    cur = i;
                }
            }
            let mut pos = p;
            loop {
                let mut next: Option<(f64, usize)> = None;
                for i in 0..ns.len() {
                    if sl[i] <= sl[cur] {
                        continue;
                    }
                    let x = p + (vp[cur] - vp[i]) / (sl[i] - sl[cur]);
                    if x > pos && x < q {
                        let better = match next {
                            None => true,
                            Some((bx, bi)) => x < bx || (x == bx && sl[i] > sl[bi]),
                        };
                        if better {
                            next = Some((x, i));
                        }
                    }
                }
                let Some((x, i)) = next else { break };
                pts.push((x, vp[cur] + sl[cur] * (x - p)));
                cur = i;
                pos = x;
            }
            let hq = ns
                .iter()
                .map(|&n| value(n, q))
                .fold(f64::NEG_INFINITY, f64::max);
            pts.push((q, hq));
        }
        Envelope {
            points: simplify(pts),
        }
    }

    /// `h(Y)` (flat beyond the last breakpoint).
    pub fn eval(&self, y: f64) -> f64 {
        eval_pwl(&self.points, y)
    }

    /// Largest useful aggregate rate `N r_K`.
    pub fn y_max(&self) -> f64 {
        self.points.last().map_or(0.0, |p| p.0)
    }

    /// Maximal concave pieces as inclusive index ranges into `points` (consecutive pieces
    /// share their boundary point). A single point gives one piece `(0, 0)`.
    pub fn concave_pieces(&self) -> Vec<(usize, usize)> {
        concave_pieces(&self.points)
    }
}

/// Maximal concave runs of a piecewise-linear function given by its breakpoints.
pub fn concave_pieces(pts: &[(f64, f64)]) -> Vec<(usize, usize)> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for j in 1..pts.len().saturating_sub(1) {
        let s0 = (pts[j].1 - pts[j - 1].1) / (pts[j].0 - pts[j - 1].0);
        let s1 = (pts[j + 1].1 - pts[j].1) / (pts[j + 1].0 - pts[j].0);
        if s1 > s0 + SLOPE_TOL * (1.0 + s0.abs()) {
            pieces.push((start, j));
            start = j;
        }
    }
    pieces.push((start, pts.len().saturating_sub(1)));
    pieces
}

/// Drops repeated abscissae and breakpoints between collinear segments.
fn simplify(pts: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(pts.len());
    for p in pts {
        if let Some(last) = out.last_mut()
            && p.0 <= last.0
        {
            last.1 = last.1.max(p.1);
            continue;
        }
        if out.len() >= 2 {
            let a = out[out.len() - 2];
            let b = out[out.len() - 1];
            let s0 = (b.1 - a.1) / (b.0 - a.0);
            let s1 = (p.1 - b.1) / (p.0 - b.0);
            if (s1 - s0).abs() <= SLOPE_TOL * (1.0 + s0.abs().max(s1.abs())) {
                out.pop();
            }
        }
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(u: &Pwl, n: u32, y: f64) -> f64 {
        (1..=n)
            .map(|k| f64::from(k) * u.eval(y / f64::from(k)))
            .fold(f64::NEG_INFINITY, f64::max)
    }

    #[test]
    fn envelope_matches_pointwise_max() {
        let u = Pwl::new(vec![(0.0, 0.0), (1.0, 0.1), (2.0, 0.9), (4.0, 1.0)]);
        for n in [1, 2, 3, 7] {
            let e = Envelope::new(&u, n, f64::INFINITY);
            for i in 0..=4000 {
                let y = f64::from(n) * 4.5 * f64::from(i) / 4000.0;
                let (a, b) = (e.eval(y), brute(&u, n, y));
                assert!((a - b).abs() < 1e-9, "n={n} y={y}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn truncated_envelope_stops_at_the_cap() {
        let u = Pwl::new(vec![(0.0, 0.0), (1.0, 0.1), (2.0, 0.9), (4.0, 1.0)]);
        let e = Envelope::new(&u, 6, 5.0);
        assert!((e.y_max() - 5.0).abs() < 1e-12);
        assert!((e.eval(5.0) - brute(&u, 6, 5.0)).abs() < 1e-9);
        assert_eq!(Envelope::new(&u, 6, 0.0).points.len(), 1);
    }

    #[test]
    fn concave_utility_gives_one_piece() {
        let u = Pwl::new(vec![(0.0, 0.0), (1.0, 1.0), (3.0, 1.5)]);
        let e = Envelope::new(&u, 5, f64::INFINITY);
        assert_eq!(e.concave_pieces().len(), 1);
        assert!((e.y_max() - 15.0).abs() < 1e-12);
    }

    #[test]
    fn step_like_utility_has_one_piece_per_session_count_plus_the_flat_start() {
        let u = Pwl::new(vec![(0.0, 0.0), (0.9, 0.0), (1.0, 1.0)]);
        let e = Envelope::new(&u, 3, f64::INFINITY);
        assert_eq!(e.concave_pieces().len(), 4, "{:?}", e.points);
    }
}
