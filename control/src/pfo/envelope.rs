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
    /// How far (at most) these breakpoints lie below the true envelope anywhere: rounding
    /// noise flattened away (`~1e-13` relative); add it to any bound computed from `points`.
    pub lowered: f64,
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
                lowered: 0.0,
            };
        }
        let nf = f64::from(sessions);
        if r_top <= 0.0 {
            return Envelope {
                points: vec![(0.0, nf * u0)],
                lowered: 0.0,
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
                lowered: 0.0,
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
        let (points, lowered) = simplify(pts);
        Envelope { points, lowered }
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

/// Relative (to the envelope's largest value) size of a convex kink that [`simplify`] lifts
/// away: the kink's point is replaced by the chord of its neighbours. Such kinks come from
/// rounding in the envelope (nearly equal abscissae, nearly collinear segments); each would cost
/// the MILP a binary that changes nothing.
const LIFT_TOL: f64 = 1e-9;
/// Relative size of a concave bend that [`simplify`] may flatten (lowering `h`, which is
/// accounted for in [`Envelope::lowered`]).
const FLATTEN_TOL: f64 = 1e-13;

/// Drops repeated abscissae and breakpoints that lie on, or at most `LIFT_TOL` (relative) below,
/// the chord of their neighbours, checking every dropped point against the final chord. The
/// result is `>= h` everywhere, and `<= h + LIFT_TOL * scale`, except near points flattened by
/// at most `FLATTEN_TOL * scale` (returned as the second value).
fn simplify(pts: Vec<(f64, f64)>) -> (Vec<(f64, f64)>, f64) {
    let mut dedup: Vec<(f64, f64)> = Vec::with_capacity(pts.len());
    for p in pts {
        if let Some(last) = dedup.last_mut()
            && p.0 <= last.0
        {
            last.1 = last.1.max(p.1);
            continue;
        }
        dedup.push(p);
    }
    let scale = dedup.iter().map(|p| p.1.abs()).fold(0.0, f64::max).max(1.0);
    let (lift, flatten) = (LIFT_TOL * scale, FLATTEN_TOL * scale);
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(dedup.len());
    // gaps[i]: the input points dropped between out[i-1] and out[i].
    let mut gaps: Vec<Vec<(f64, f64)>> = Vec::with_capacity(dedup.len());
    let mut lowered: f64 = 0.0;
    for p in dedup {
        let mut cur: Vec<(f64, f64)> = Vec::new();
        while out.len() >= 2 {
            let a = out[out.len() - 2];
            let b = out[out.len() - 1];
            let chord = |x: f64| a.1 + (p.1 - a.1) * (x - a.0) / (p.0 - a.0);
            let under = |q: &(f64, f64)| chord(q.0) - q.1;
            let last_gap = &gaps[gaps.len() - 1];
            let worst = last_gap
                .iter()
                .chain(std::iter::once(&b))
                .chain(cur.iter())
                .map(under)
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), d| {
                    (lo.min(d), hi.max(d))
                });
            if worst.0 >= -flatten && worst.1 <= lift {
                lowered = lowered.max(-worst.0);
                out.pop();
                let mut merged = gaps.pop().unwrap_or_default();
                merged.push(b);
                merged.append(&mut cur);
                cur = merged;
            } else {
                break;
            }
        }
        out.push(p);
        gaps.push(cur);
    }
    (out, lowered.max(0.0))
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

    #[test]
    fn concave_utility_with_many_sessions_has_no_spurious_kinks() {
        // The generator's concave form (ln(1 + 4t)/ln 5 on 8 segments): h = N U(Y/N) exactly,
        // but the breakpoints n r_k of all n used to leave rounding-noise "convex kinks".
        let u = Pwl::new(
            (0..=8)
                .map(|i| {
                    let t = f64::from(i) / 8.0;
                    (2.7 * t, 1.3 * (1.0 + 4.0 * t).ln() / 5f64.ln())
                })
                .collect(),
        );
        for n in [10, 20, 37] {
            let e = Envelope::new(&u, n, f64::INFINITY);
            assert_eq!(e.concave_pieces().len(), 1, "n={n}: {:?}", e.points);
            assert!(e.lowered <= 1e-12, "{}", e.lowered);
        }
    }

    #[test]
    fn simplified_envelope_stays_between_h_minus_lowered_and_h_plus_lift() {
        let us = [
            Pwl::new(vec![(0.0, 0.0), (1.0, 0.1), (2.0, 0.9), (4.0, 1.0)]),
            Pwl::new(vec![
                (0.0, 0.0),
                (0.6, 0.01),
                (1.2, 1.6),
                (2.0, 1.8),
                (3.0, 2.0),
            ]),
            Pwl::new(vec![(0.0, 0.0), (0.9, 0.0), (1.0, 1.0)]),
        ];
        for u in &us {
            for n in [1, 5, 20] {
                let e = Envelope::new(u, n, f64::INFINITY);
                let scale = e.points.iter().map(|p| p.1.abs()).fold(1.0, f64::max);
                for i in 0..=5000 {
                    let y = e.y_max() * f64::from(i) / 5000.0;
                    let (a, b) = (e.eval(y), brute(u, n, y));
                    assert!(a >= b - e.lowered - 1e-12 * scale, "n={n} y={y}: {a} < {b}");
                    assert!(a <= b + 2.0 * LIFT_TOL * scale, "n={n} y={y}: {a} > {b}");
                }
                // Every remaining convex kink is a real one.
                for w in e.concave_pieces().windows(2) {
                    let k = e.points[w[0].1];
                    let (a, b) = (e.points[w[0].1 - 1], e.points[w[1].0 + 1]);
                    let chord = a.1 + (b.1 - a.1) * (k.0 - a.0) / (b.0 - a.0);
                    assert!(
                        chord - k.1 > LIFT_TOL * scale,
                        "n={n}: spurious kink at {k:?}"
                    );
                }
            }
        }
    }
}
