//! Mission utility functions `U_c(r)` (value of ONE session at total rate `r`) and their
//! piecewise-linear forms.
//!
//! `piecewise_linear` is solved exactly. `linear` is exact too (one segment up to the largest
//! rate the class can reach). `log` and `sigmoid` are replaced by their chords on adaptively
//! refined breakpoints; each chord carries a *certified* bound on `U - chord` derived from
//! the derivative at both ends (see [`chord_error_bound`]); the solver adds
//! `sum_c N_c * eps_c` to its proven bound. `step` is replaced by a steep ramp that lies
//! ABOVE the step (so `eps_c = 0`): the bound stays valid, and a plan whose rate lands on the
//! ramp is reported with its exact (lower) utility, i.e. it shows up as gap.

use serde::{Deserialize, Serialize};

/// Utility function as written in an instance file (`{"piecewise_linear": [[r,u],...]}`,
/// `{"linear": {"slope": a}}`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum UtilitySpec {
    /// Breakpoints `[rate, utility]`: rates strictly increasing from 0, utility non-decreasing
    /// and `>= 0`; flat beyond the last breakpoint. Exact.
    PiecewiseLinear(Vec<[f64; 2]>),
    /// `U(r) = slope * r`. Exact.
    Linear {
        /// Utility per unit of rate (>= 0).
        slope: f64,
    },
    /// `U(r) = weight * ln(1 + r / scale)`. Chord approximation, certified error.
    Log {
        /// Multiplier (>= 0).
        weight: f64,
        /// Rate scale (> 0).
        scale: f64,
    },
    /// `U(r) = weight * (s(k (r - midpoint)) - s(-k midpoint))`, `s` the logistic function,
    /// `k = steepness`; `U(0) = 0`. Chord approximation, certified error.
    Sigmoid {
        /// Height (>= 0).
        weight: f64,
        /// Rate of the inflection point (>= 0).
        midpoint: f64,
        /// Steepness `k` (> 0).
        steepness: f64,
    },
    /// `U(r) = value` if `r >= threshold`, else 0. Approximated from above by a ramp of width
    /// `1e-3 * threshold` ending at the threshold.
    Step {
        /// Minimum rate (> 0).
        threshold: f64,
        /// Utility once the threshold is reached (>= 0).
        value: f64,
    },
}

/// Relative width of the ramp that replaces a step.
pub const STEP_RAMP: f64 = 1e-3;
/// Most segments an approximation may use.
pub const MAX_APPROX_SEGMENTS: usize = 512;

fn logistic(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn finite_nonneg(v: f64) -> bool {
    v.is_finite() && v >= 0.0
}

impl UtilitySpec {
    /// Checks the parameters; the message says what is wrong (the caller names the class).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            UtilitySpec::PiecewiseLinear(pts) => {
                let Some(first) = pts.first() else {
                    return Err("piecewise_linear needs at least one breakpoint".into());
                };
                if first[0] != 0.0 {
                    return Err(format!("first breakpoint rate must be 0, got {}", first[0]));
                }
                for p in pts {
                    if !p[0].is_finite() || !p[1].is_finite() {
                        return Err("breakpoints must be finite numbers".into());
                    }
                }
                if first[1] < 0.0 {
                    return Err(format!("utility at rate 0 must be >= 0, got {}", first[1]));
                }
                for w in pts.windows(2) {
                    if w[1][0] <= w[0][0] {
                        return Err(format!(
                            "breakpoint rates must be strictly increasing ({} then {})",
                            w[0][0], w[1][0]
                        ));
                    }
                    if w[1][1] < w[0][1] {
                        return Err(format!(
                            "utility must be non-decreasing ({} at rate {} then {} at rate {})",
                            w[0][1], w[0][0], w[1][1], w[1][0]
                        ));
                    }
                }
                Ok(())
            }
            UtilitySpec::Linear { slope } => {
                if finite_nonneg(*slope) {
                    Ok(())
                } else {
                    Err(format!("linear slope must be finite and >= 0, got {slope}"))
                }
            }
            UtilitySpec::Log { weight, scale } => {
                if !finite_nonneg(*weight) {
                    Err(format!("log weight must be finite and >= 0, got {weight}"))
                } else if !(scale.is_finite() && *scale > 0.0) {
                    Err(format!("log scale must be finite and > 0, got {scale}"))
                } else {
                    Ok(())
                }
            }
            UtilitySpec::Sigmoid {
                weight,
                midpoint,
                steepness,
            } => {
                if !finite_nonneg(*weight) {
                    Err(format!(
                        "sigmoid weight must be finite and >= 0, got {weight}"
                    ))
                } else if !finite_nonneg(*midpoint) {
                    Err(format!(
                        "sigmoid midpoint must be finite and >= 0, got {midpoint}"
                    ))
                } else if !(steepness.is_finite() && *steepness > 0.0) {
                    Err(format!(
                        "sigmoid steepness must be finite and > 0, got {steepness}"
                    ))
                } else {
                    Ok(())
                }
            }
            UtilitySpec::Step { threshold, value } => {
                if !(threshold.is_finite() && *threshold > 0.0) {
                    Err(format!(
                        "step threshold must be finite and > 0, got {threshold}"
                    ))
                } else if !finite_nonneg(*value) {
                    Err(format!("step value must be finite and >= 0, got {value}"))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Exact utility of one session at rate `r >= 0`.
    pub fn eval(&self, r: f64) -> f64 {
        match self {
            UtilitySpec::PiecewiseLinear(pts) => eval_points(pts.iter().map(|p| (p[0], p[1])), r),
            UtilitySpec::Linear { slope } => slope * r,
            UtilitySpec::Log { weight, scale } => weight * (r / scale).ln_1p(),
            UtilitySpec::Sigmoid {
                weight,
                midpoint,
                steepness,
            } => weight * (logistic(steepness * (r - midpoint)) - logistic(-steepness * midpoint)),
            UtilitySpec::Step { threshold, value } => {
                if r >= *threshold {
                    *value
                } else {
                    0.0
                }
            }
        }
    }

    /// Derivative (for the smooth forms only).
    fn derivative(&self, r: f64) -> f64 {
        match self {
            UtilitySpec::Linear { slope } => *slope,
            UtilitySpec::Log { weight, scale } => weight / (scale + r),
            UtilitySpec::Sigmoid {
                weight,
                midpoint,
                steepness,
            } => {
                let s = logistic(steepness * (r - midpoint));
                weight * steepness * s * (1.0 - s)
            }
            _ => 0.0,
        }
    }

    /// Piecewise-linear form on `[0, r_max]` (flat beyond) and its certified one-sided error
    /// `eps >= sup_{0<=r<=r_max} (U(r) - Pwl(r))`. `target` is the error the refinement aims at.
    pub fn to_pwl(&self, r_max: f64, target: f64) -> (Pwl, f64) {
        let r_max = r_max.max(0.0);
        match self {
            UtilitySpec::PiecewiseLinear(pts) => {
                let p = Pwl::new(pts.iter().map(|p| (p[0], p[1])).collect());
                (p.truncate(r_max), 0.0)
            }
            UtilitySpec::Linear { slope } => {
                if r_max > 0.0 {
                    (Pwl::new(vec![(0.0, 0.0), (r_max, slope * r_max)]), 0.0)
                } else {
                    (Pwl::new(vec![(0.0, 0.0)]), 0.0)
                }
            }
            UtilitySpec::Step { threshold, value } => {
                let t = *threshold;
                if r_max < t {
                    // The threshold cannot be reached: the ramp start is where the step
                    // approximation would begin; below it the utility is exactly 0.
                    let start = t * (1.0 - STEP_RAMP);
                    if r_max <= start {
                        return (Pwl::new(vec![(0.0, 0.0)]).truncate(r_max), 0.0);
                    }
                    let p = Pwl::new(vec![(0.0, 0.0), (start, 0.0), (t, *value)]);
                    return (p.truncate(r_max), 0.0);
                }
                let p = Pwl::new(vec![(0.0, 0.0), (t * (1.0 - STEP_RAMP), 0.0), (t, *value)]);
                (p, 0.0)
            }
            UtilitySpec::Log { .. } | UtilitySpec::Sigmoid { .. } => self.chords(r_max, target),
        }
    }

    fn chords(&self, r_max: f64, target: f64) -> (Pwl, f64) {
        if r_max <= 0.0 {
            return (Pwl::new(vec![(0.0, self.eval(0.0))]), 0.0);
        }
        // Knots where the curvature may change sign.
        let mut knots = vec![0.0];
        let mut concave_from = 0.0; // curvature: convex on [0, concave_from), concave after
        if let UtilitySpec::Sigmoid { midpoint, .. } = self {
            concave_from = midpoint.min(r_max);
            if *midpoint > 0.0 && *midpoint < r_max {
                knots.push(*midpoint);
            }
        }
        knots.push(r_max);
        // Adaptive bisection: split the segment with the largest bound until all are below
        // target or the segment budget is spent.
        let mut segs: Vec<(f64, f64, f64)> = knots
            .windows(2)
            .map(|w| (w[0], w[1], self.chord_bound(w[0], w[1])))
            .collect();
        while segs.len() < MAX_APPROX_SEGMENTS {
            let (idx, worst) = segs.iter().enumerate().fold((0, 0.0_f64), |acc, (i, s)| {
                if s.2 > acc.1 { (i, s.2) } else { acc }
            });
            if worst <= target {
                break;
            }
            let (a, b, _) = segs[idx];
            let m = 0.5 * (a + b);
            if m <= a || m >= b {
                break;
            }
            segs[idx] = (a, m, self.chord_bound(a, m));
            segs.insert(idx + 1, (m, b, self.chord_bound(m, b)));
        }
        let mut pts = vec![(0.0, self.eval(0.0))];
        let mut eps: f64 = 0.0;
        for &(a, b, bound) in &segs {
            pts.push((b, self.eval(b)));
            // Chords of a concave piece lie below U (positive error counts); chords of a
            // convex piece lie above U (error in the safe direction).
            if a >= concave_from {
                eps = eps.max(bound);
            }
        }
        (Pwl::new(pts), eps)
    }

    /// Certified `max |U - chord|` on `[a, b]` where the curvature has one sign.
    fn chord_bound(&self, a: f64, b: f64) -> f64 {
        let slope = (self.eval(b) - self.eval(a)) / (b - a);
        let bound = chord_error_bound(a, b, self.derivative(a), self.derivative(b), slope);
        // Safety margin for the rounding of the evaluations.
        bound * (1.0 + 1e-9) + 1e-12 * (1.0 + self.eval(b).abs())
    }
}

/// Bound on `|U - chord|` over `[a, b]` for a function `U` whose curvature has one sign on
/// `[a, b]`, from the derivatives `da = U'(a)`, `db = U'(b)` and the chord slope `m`:
/// `U - chord` vanishes at both ends and lies under (over) its tangents at `a` and `b`,
/// whose intersection gives `(b - a) |da - m| |m - db| / |da - db|`.
pub fn chord_error_bound(a: f64, b: f64, da: f64, db: f64, m: f64) -> f64 {
    let spread = (da - db).abs();
    if spread <= 0.0 || b <= a {
        return 0.0;
    }
    (b - a) * (da - m).abs() * (m - db).abs() / spread
}

fn eval_points(pts: impl Iterator<Item = (f64, f64)>, r: f64) -> f64 {
    let mut prev: Option<(f64, f64)> = None;
    for (x, y) in pts {
        if r <= x {
            return match prev {
                None => y,
                Some((px, py)) => py + (y - py) * (r - px) / (x - px),
            };
        }
        prev = Some((x, y));
    }
    prev.map_or(0.0, |p| p.1)
}

/// Value at `r` of the piecewise-linear function through `pts` (flat beyond the last one).
pub fn eval_pwl(pts: &[(f64, f64)], r: f64) -> f64 {
    eval_points(pts.iter().copied(), r)
}

/// A validated piecewise-linear non-decreasing function of the rate, flat beyond its last
/// breakpoint. The first breakpoint is at rate 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Pwl {
    pts: Vec<(f64, f64)>,
}

impl Pwl {
    /// Wraps breakpoints already known to be valid (rates strictly increasing from 0).
    pub fn new(pts: Vec<(f64, f64)>) -> Self {
        debug_assert!(!pts.is_empty());
        Pwl { pts }
    }

    /// The breakpoints.
    pub fn points(&self) -> &[(f64, f64)] {
        &self.pts
    }

    /// Value at rate `r`.
    pub fn eval(&self, r: f64) -> f64 {
        eval_points(self.pts.iter().copied(), r)
    }

    /// Largest breakpoint rate.
    pub fn last_rate(&self) -> f64 {
        self.pts.last().map_or(0.0, |p| p.0)
    }

    /// The same function restricted to `[0, r_max]` (a breakpoint is added at `r_max`).
    pub fn truncate(&self, r_max: f64) -> Pwl {
        if r_max >= self.last_rate() {
            return self.clone();
        }
        let mut pts: Vec<(f64, f64)> = self.pts.iter().copied().filter(|p| p.0 < r_max).collect();
        if pts.is_empty() {
            pts.push((0.0, self.eval(0.0)));
        }
        if r_max > 0.0 {
            pts.push((r_max, self.eval(r_max)));
        }
        Pwl { pts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pwl_eval_interpolates_and_is_flat_beyond() {
        let u = UtilitySpec::PiecewiseLinear(vec![[0.0, 0.0], [1.0, 0.1], [2.0, 0.9], [4.0, 1.0]]);
        assert!((u.eval(1.5) - 0.5).abs() < 1e-12);
        assert!((u.eval(10.0) - 1.0).abs() < 1e-12);
        assert!((u.eval(0.0)).abs() < 1e-12);
    }

    #[test]
    fn validation_rejects_bad_breakpoints() {
        let dec = UtilitySpec::PiecewiseLinear(vec![[0.0, 1.0], [1.0, 0.5]]);
        assert!(dec.validate().unwrap_err().contains("non-decreasing"));
        let flat = UtilitySpec::PiecewiseLinear(vec![[0.0, 0.0], [1.0, 1.0], [1.0, 2.0]]);
        assert!(flat.validate().unwrap_err().contains("strictly increasing"));
        let start = UtilitySpec::PiecewiseLinear(vec![[0.5, 0.0]]);
        assert!(start.validate().is_err());
        assert!(
            UtilitySpec::Log {
                weight: 1.0,
                scale: 0.0
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn certified_bound_holds_for_log_and_sigmoid() {
        let forms = [
            UtilitySpec::Log {
                weight: 2.0,
                scale: 0.3,
            },
            UtilitySpec::Sigmoid {
                weight: 1.5,
                midpoint: 3.0,
                steepness: 2.5,
            },
            UtilitySpec::Sigmoid {
                weight: 1.0,
                midpoint: 0.0,
                steepness: 1.0,
            },
        ];
        for u in forms {
            let (p, eps) = u.to_pwl(10.0, 1e-4);
            assert!(eps <= 1e-4 + 1e-9, "{u:?} eps {eps}");
            let mut worst: f64 = 0.0;
            for i in 0..=100_000 {
                let r = 10.0 * f64::from(i) / 100_000.0;
                worst = worst.max(u.eval(r) - p.eval(r));
            }
            assert!(
                worst <= eps + 1e-12,
                "{u:?}: sampled {worst} > certified {eps}"
            );
        }
    }

    #[test]
    fn step_ramp_lies_above_the_step() {
        let u = UtilitySpec::Step {
            threshold: 2.0,
            value: 3.0,
        };
        let (p, eps) = u.to_pwl(5.0, 1e-4);
        assert_eq!(eps, 0.0);
        for i in 0..=1000 {
            let r = 5.0 * f64::from(i) / 1000.0;
            assert!(p.eval(r) >= u.eval(r) - 1e-12);
        }
    }
}
