//! The MONtra per-flow rate controller (Kelly's primal algorithm, per packet).
//!
//! Rule (rates in packets/s):
//! - each acknowledged packet: `x += kappa_eff * w / x`
//! - each lost packet:         `x -= kappa_eff`
//! - `x` is clamped to `[x_min, min(x_max, plan cap)]`;
//! - `kappa_eff = kappa / w_max`, `w_max` the largest weight of the plan, so
//!   `kappa` reads as "the ramp, in packets/s per second, of the heaviest flow
//!   when nothing is lost" (the paper divides its stability constant by the
//!   largest weight).
//! - from `near_band` x the flow's target up, `kappa_eff` is at most
//!   `near_max_gain` (a gain schedule: calm near the plan, the full ramp
//!   under it; the equilibrium is unchanged).
//!
//! Expected drift per second with end-to-end loss fraction `q`:
//! `kappa_eff (w (1-q) - x q)`, so the equilibrium is `w / x = q / (1 - q)`.
//! The weight scale sets the equilibrium loss: see [`scale_weights_for_loss_budget`].
//!
//! Application-limited rule (our choice, in the spirit of RFC 7661 cwnd
//! validation): the caller reports each departure with whether it left the
//! flow's queue empty ([`RateController::on_send`]). Over windows of
//! `app_window_ns` the controller measures the rate actually sent; a window in
//! which the queue ran empty is *application-limited*. While the current or
//! the last complete window is application-limited, an ack may raise `x` only
//! up to `app_limit_factor` (default 2) times the sending rate (the larger of
//! the last window's rate and the current window's count over the full window
//! length, so the ceiling is known from the first packets on). The rate is not
//! cut by this rule (losses still cut it); once the source sends more than `x`
//! again its queue stays non-empty and growth resumes. A backlogged flow is
//! never capped, whatever its rate, so slow Poisson flows do not stall.

/// Tunables shared by all controllers of a worker.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ControllerConfig {
    /// Ramp of the heaviest flow without loss, packets/s per second.
    pub kappa: f64,
    /// Lowest rate, packets/s (> 0: the flow keeps probing).
    pub x_min: f64,
    /// Highest rate, packets/s.
    pub x_max: f64,
    /// Growth stops at this multiple of the measured sending rate.
    pub app_limit_factor: f64,
    /// Shortest sending-rate measurement window, ns.
    pub app_window_ns: u64,
    /// Largest loop gain near the target, 1/s: at or above `near_band` x
    /// the flow's target, acks and losses move `x` by at most this instead
    /// of `kappa_eff` (infinity: no schedule; a flow without a target has
    /// none). The equilibrium is the same (any positive gain keeps the
    /// drift's sign); the dynamics near it are calmer. `kappa_eff` is
    /// `ramp (1-q)/q` for the site's heaviest flow at its equilibrium loss
    /// `q`: 2.9/s at a 2 % budget, 8.5/s for a flow losing 0.7 %, past
    /// Kelly's bound (gain x feedback delay < pi/2) behind a 100 ms
    /// drop-tail buffer, where MONtra saw-toothed and the link idled in the
    /// troughs (docs/montra.md, "Gain near the target"). Default 1.5
    /// (session 28; 3 before): on a full link behind a drop-tail buffer even
    /// 3/s leaves a saw-tooth whose troughs idle the link (the imprecise
    /// demo's two full links 1-2 % under their payload, dips in phase on
    /// both); at 1.5 the packet simulation's flows carry 99.1-99.5 % of
    /// their links (98.5-99.1 % at 3), at 1 little more.
    pub near_max_gain: f64,
    /// Fraction of the target from which `near_max_gain` applies (under
    /// it a flow cut by a burst climbs back at the full gain). Default 0.9.
    pub near_band: f64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            kappa: 200.0,
            x_min: 2.0,
            x_max: 10_000_000.0,
            app_limit_factor: 2.0,
            app_window_ns: 100_000_000,
            near_max_gain: 1.5,
            near_band: 0.9,
        }
    }
}

/// What one flow's controller aims for (derived from the plan by the
/// gateway: weight, scale and cap in packets/s).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ControllerTarget {
    /// Weight `w_f` of the flow's utility `w_f log x`.
    pub weight: f64,
    /// Largest weight in the plan (scales kappa).
    pub max_weight: f64,
    /// Rate cap, packets/s (e.g. the PFO target times a margin); infinity = none.
    pub cap_pps: f64,
    /// The plan's rate for the flow, packets/s (0 = none).
    pub target_pps: f64,
}

/// One flow's MONtra controller.
#[derive(Clone, Debug)]
pub struct RateController {
    cfg: ControllerConfig,
    x: f64,
    w: f64,
    kappa_eff: f64,
    hi: f64,
    /// From this rate up the gain is at most `near_max_gain` (infinity:
    /// never).
    near_from: f64,
    // Sending-rate measurement.
    win_start_ns: u64,
    win_sent: u64,
    win_app_limited: bool,
    /// Rate sent in the last complete window and whether it was app-limited.
    last_window: Option<(f64, bool)>,
    acks: u64,
    losses: u64,
    /// Packets acknowledged since the last loss.
    clean_run: u64,
    /// A pending resume: the rate to jump to and until when (ns).
    resume: Option<(f64, u64)>,
}

/// A resume needs a clean run of at least this many packets, and of
/// `RESUME_RUNS` times the mean run between losses at the target's
/// equilibrium loss.
const RESUME_MIN_RUN: f64 = 64.0;
/// See [`RESUME_MIN_RUN`]: a flow losing at its equilibrium loss `q` or more
/// shows a run of `3 / q` packets with probability `e^-3` (5 %) per run.
const RESUME_RUNS: f64 = 3.0;

/// A finite number >= 0, else `fallback`.
fn finite_nonneg(v: f64, fallback: f64) -> f64 {
    if v.is_finite() && v >= 0.0 {
        v
    } else {
        fallback
    }
}

impl RateController {
    /// A controller starting at `x0` packets/s at time `now_ns`.
    pub fn new(cfg: ControllerConfig, target: ControllerTarget, x0: f64, now_ns: u64) -> Self {
        let x_min = finite_nonneg(cfg.x_min, 1.0).max(1e-3);
        let cfg = ControllerConfig {
            kappa: finite_nonneg(cfg.kappa, 0.0),
            x_min,
            x_max: if cfg.x_max.is_nan() {
                x_min
            } else {
                cfg.x_max.max(x_min)
            },
            app_limit_factor: if cfg.app_limit_factor.is_nan() {
                2.0
            } else {
                cfg.app_limit_factor.max(1.0)
            },
            app_window_ns: cfg.app_window_ns.max(1),
            near_max_gain: if cfg.near_max_gain > 0.0 {
                cfg.near_max_gain
            } else {
                f64::INFINITY
            },
            near_band: finite_nonneg(cfg.near_band, 0.9),
        };
        let mut c = Self {
            cfg,
            x: x_min,
            w: 0.0,
            kappa_eff: 0.0,
            hi: cfg.x_max,
            near_from: f64::INFINITY,
            win_start_ns: now_ns,
            win_sent: 0,
            win_app_limited: false,
            last_window: None,
            acks: 0,
            losses: 0,
            clean_run: 0,
            resume: None,
        };
        c.set_target(target);
        c.x = c.clamp(if x0.is_nan() { x_min } else { x0 });
        c
    }

    /// Applies a new target (weight, scale, cap) without resetting the rate
    /// (it is only clamped to the new cap).
    pub fn set_target(&mut self, target: ControllerTarget) {
        self.w = finite_nonneg(target.weight, 0.0);
        let wmax = finite_nonneg(target.max_weight, 0.0).max(self.w);
        self.kappa_eff = if wmax > 0.0 {
            self.cfg.kappa / wmax
        } else {
            0.0
        };
        let cap = if target.cap_pps.is_nan() {
            f64::INFINITY
        } else {
            target.cap_pps
        };
        self.hi = self.cfg.x_max.min(cap).max(self.cfg.x_min);
        self.x = self.clamp(self.x);
        let t = finite_nonneg(target.target_pps, 0.0);
        self.near_from = if t > 0.0 && self.cfg.near_max_gain.is_finite() {
            t * self.cfg.near_band
        } else {
            f64::INFINITY
        };
    }

    /// Kappa at rate `x`: the scheduled gain near the target.
    #[inline]
    fn gain(&self, x: f64) -> f64 {
        if x >= self.near_from {
            self.kappa_eff.min(self.cfg.near_max_gain)
        } else {
            self.kappa_eff
        }
    }

    #[inline]
    fn clamp(&self, x: f64) -> f64 {
        x.clamp(self.cfg.x_min, self.hi)
    }

    /// Sets kappa (the ramp of the heaviest flow, packets/s per second) and
    /// with it `kappa_eff`; the rate is kept.
    pub fn set_kappa(&mut self, kappa: f64, max_weight: f64) {
        self.cfg.kappa = finite_nonneg(kappa, 0.0);
        let wmax = finite_nonneg(max_weight, 0.0).max(self.w);
        self.kappa_eff = if wmax > 0.0 {
            self.cfg.kappa / wmax
        } else {
            0.0
        };
    }

    /// Sets the rate (clamped to `[x_min, cap]`; NaN is ignored): a new
    /// plan's start or rescaling, never the per-packet rule.
    pub fn set_rate(&mut self, x: f64) {
        if !x.is_nan() {
            self.x = self.clamp(x);
        }
    }

    /// Current rate, packets/s.
    #[inline]
    pub fn rate(&self) -> f64 {
        self.x
    }

    /// Current weight.
    pub fn weight(&self) -> f64 {
        self.w
    }

    /// Effective kappa (`kappa / w_max`).
    pub fn kappa_eff(&self) -> f64 {
        self.kappa_eff
    }

    /// Acknowledged and lost packets applied so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.acks, self.losses)
    }

    /// Packets acknowledged since the last loss.
    pub fn clean_run(&self) -> u64 {
        self.clean_run
    }

    /// Arms a resume: the first ack before `until_ns` that finds the rate
    /// under `to` after a clean run (no loss) of 3 times the mean run at the
    /// equilibrium loss at `to` (`q = w / (w + to)`), and at least 64
    /// packets, sets the rate to `to`. A new plan arms it for every flow, so a flow
    /// that congestion cut (a failover's burst on a shared link) restarts
    /// at the plan's rate once the congestion is gone instead of ramping
    /// for seconds, while a flow held under its target by a link that
    /// cannot carry it (loss at equilibrium) stays where MONtra put it.
    pub fn arm_resume(&mut self, to: f64, until_ns: u64) {
        self.resume = (to.is_finite() && to > self.x).then_some((to, until_ns));
    }

    /// Whether a resume is armed.
    pub fn resume_armed(&self) -> bool {
        self.resume.is_some()
    }

    /// Sending rate measured over the last complete window, if any.
    pub fn measured_send_rate(&self) -> Option<f64> {
        self.last_window.map(|w| w.0)
    }

    /// Closes the measurement window if it is over at `now_ns`.
    #[inline]
    fn roll_window(&mut self, now_ns: u64) {
        let len = now_ns.saturating_sub(self.win_start_ns);
        if len >= self.cfg.app_window_ns {
            let r = self.win_sent as f64 * 1e9 / len as f64;
            self.last_window = Some((r, self.win_app_limited));
            self.win_start_ns = now_ns;
            self.win_sent = 0;
            self.win_app_limited = false;
        }
    }

    /// Records one departure at `now_ns`; `queue_empty` says the flow's queue
    /// was left empty by it (the source is not keeping up with `x`).
    #[inline]
    pub fn on_send(&mut self, now_ns: u64, queue_empty: bool) {
        self.roll_window(now_ns);
        self.win_sent += 1;
        self.win_app_limited |= queue_empty;
    }

    /// The growth ceiling from the application-limited rule.
    #[inline]
    fn growth_ceiling(&self) -> f64 {
        let last_limited = self.last_window.is_some_and(|w| w.1);
        if !(self.win_app_limited || last_limited) {
            return f64::INFINITY;
        }
        let partial = self.win_sent as f64 * 1e9 / self.cfg.app_window_ns as f64;
        let last = self.last_window.map_or(0.0, |w| w.0);
        (self.cfg.app_limit_factor * last.max(partial)).max(self.cfg.x_min)
    }

    /// Applies `n` acknowledged packets at `now_ns`; returns the new rate.
    #[inline]
    pub fn on_acks(&mut self, n: u32, now_ns: u64) -> f64 {
        self.roll_window(now_ns);
        let ceiling = self.growth_ceiling();
        let mut x = self.x;
        if x < ceiling {
            for _ in 0..n {
                x += self.gain(x) * self.w / x;
            }
            x = x.min(ceiling);
        }
        self.x = self.clamp(x.max(self.x));
        self.acks += u64::from(n);
        self.clean_run = self.clean_run.saturating_add(u64::from(n));
        if let Some((to, until)) = self.resume {
            // The run showing the loss is gone: 3 / q = 3 (w + to) / w.
            let run = RESUME_RUNS * (self.w + to) / self.w;
            if now_ns > until || self.x >= to {
                self.resume = None;
            } else if self.w > 0.0 && self.clean_run as f64 >= run.max(RESUME_MIN_RUN) {
                self.x = self.clamp(to);
                self.resume = None;
            }
        }
        self.x
    }

    /// Applies `n` lost packets; returns the new rate.
    #[inline]
    pub fn on_losses(&mut self, n: u32) -> f64 {
        self.x = self.clamp(self.x - self.gain(self.x) * f64::from(n));
        self.losses += u64::from(n);
        if n > 0 {
            self.clean_run = 0;
        }
        self.x
    }
}

/// Scales mapping weights so that the equilibrium loss of the most
/// "expensive" flow is `loss_budget`.
///
/// At equilibrium `w_f / x_f = q_f / (1 - q_f)`. Given weights from the
/// mapping, `w_f = x̂_f * M_f` (`M_f` = sum of the link duals on f's path),
/// the scaled weights `s * w_f` make the flow with the largest `M_f` see
/// `q = loss_budget` at its target, and the others proportionally less.
/// Flows with target 0 or weight 0 keep weight 0. Returns `s`.
pub fn scale_weights_for_loss_budget(
    weights: &mut [f64],
    targets: &[f64],
    loss_budget: f64,
) -> f64 {
    let q = loss_budget.clamp(1e-6, 0.5);
    let mut max_ratio: f64 = 0.0;
    for (w, t) in weights.iter().zip(targets) {
        if *t > 0.0 && w.is_finite() && *w > 0.0 {
            max_ratio = max_ratio.max(w / t);
        }
    }
    if max_ratio <= 0.0 {
        return 0.0;
    }
    let s = (q / (1.0 - q)) / max_ratio;
    for (w, t) in weights.iter_mut().zip(targets) {
        *w = if *t > 0.0 && w.is_finite() && *w > 0.0 {
            *w * s
        } else {
            0.0
        };
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(w: f64, wmax: f64) -> ControllerTarget {
        ControllerTarget {
            weight: w,
            max_weight: wmax,
            cap_pps: f64::INFINITY,
            target_pps: 0.0,
        }
    }

    #[test]
    fn near_its_target_the_loop_gain_is_capped() {
        // w = w_max = 1, kappa 10: kappa_eff 10/s, above the 3/s cap.
        let cfg = ControllerConfig {
            kappa: 10.0,
            near_max_gain: 3.0,
            near_band: 0.9,
            ..Default::default()
        };
        let t = ControllerTarget {
            weight: 1.0,
            max_weight: 1.0,
            cap_pps: 200.0,
            target_pps: 100.0,
        };
        // Under 0.9 x the target: the full gain, both ways.
        let mut c = RateController::new(cfg, t, 50.0, 0);
        let x = c.on_acks(1, 1);
        assert!((x - (50.0 + 10.0 / 50.0)).abs() < 1e-9, "{x}");
        let x = c.on_losses(1);
        assert!((x - (50.2 - 10.0)).abs() < 1e-9, "{x}");
        // From 0.9 x the target up: at most 3/s.
        c.set_rate(90.0);
        let x = c.on_acks(1, 2);
        assert!((x - (90.0 + 3.0 / 90.0)).abs() < 1e-9, "{x}");
        let x = c.on_losses(2);
        assert!((x - (90.0 + 3.0 / 90.0 - 6.0)).abs() < 1e-9, "{x}");
        c.set_rate(150.0);
        let x = c.on_losses(1);
        assert!((x - 147.0).abs() < 1e-9, "{x}");
        // No target, or no cap on the gain: no schedule.
        for (cfg, t) in [
            (
                cfg,
                ControllerTarget {
                    target_pps: 0.0,
                    ..t
                },
            ),
            (
                ControllerConfig {
                    near_max_gain: f64::INFINITY,
                    ..cfg
                },
                t,
            ),
        ] {
            let mut d = RateController::new(cfg, t, 95.0, 0);
            assert!((d.on_losses(1) - 85.0).abs() < 1e-9);
        }
        // A gain already under the cap is kept.
        let mut e = RateController::new(ControllerConfig { kappa: 2.0, ..cfg }, t, 95.0, 0);
        assert!((e.on_losses(1) - 93.0).abs() < 1e-9);
    }

    #[test]
    fn ack_and_loss_steps() {
        let cfg = ControllerConfig {
            kappa: 100.0,
            ..Default::default()
        };
        let mut c = RateController::new(cfg, plan(10.0, 20.0), 100.0, 0);
        assert!((c.kappa_eff() - 5.0).abs() < 1e-12);
        let x = c.on_acks(1, 0);
        assert!((x - (100.0 + 5.0 * 10.0 / 100.0)).abs() < 1e-12);
        let x2 = c.on_losses(2);
        assert!((x2 - (x - 10.0)).abs() < 1e-12);
        assert_eq!(c.counts(), (1, 2));
    }

    #[test]
    fn clamps_and_plan_update_keeps_state() {
        let cfg = ControllerConfig {
            kappa: 1000.0,
            x_min: 5.0,
            x_max: 1000.0,
            ..Default::default()
        };
        let mut c = RateController::new(cfg, plan(1.0, 1.0), 500.0, 0);
        for _ in 0..100 {
            c.on_losses(10);
        }
        assert_eq!(c.rate(), 5.0);
        for _ in 0..100_000 {
            c.on_acks(1, 0);
        }
        assert_eq!(c.rate(), 1000.0);
        // New plan: lower cap clamps, weight changes, rate kept otherwise.
        c.set_target(ControllerTarget {
            weight: 2.0,
            max_weight: 4.0,
            cap_pps: 600.0,
            target_pps: 0.0,
        });
        assert_eq!(c.rate(), 600.0);
        assert!((c.kappa_eff() - 250.0).abs() < 1e-9);
        c.set_target(ControllerTarget {
            weight: 2.0,
            max_weight: 4.0,
            cap_pps: f64::INFINITY,
            target_pps: 0.0,
        });
        assert_eq!(c.rate(), 600.0);
    }

    #[test]
    fn garbage_plan_values_do_not_poison_the_rate() {
        let mut c = RateController::new(
            ControllerConfig::default(),
            plan(f64::NAN, f64::NAN),
            f64::NAN,
            0,
        );
        c.on_acks(10, 0);
        c.on_losses(3);
        assert!(c.rate().is_finite() && c.rate() >= ControllerConfig::default().x_min);
        c.set_target(ControllerTarget {
            weight: -1.0,
            max_weight: f64::INFINITY,
            cap_pps: f64::NAN,
            target_pps: 0.0,
        });
        c.on_acks(10, 0);
        assert!(c.rate().is_finite());
    }

    #[test]
    fn app_limited_flow_stops_at_twice_its_sending_rate() {
        // Source sends 100 pps; no losses; kappa large: without the rule the
        // rate would climb without bound.
        let cfg = ControllerConfig {
            kappa: 10_000.0,
            ..Default::default()
        };
        let mut c = RateController::new(cfg, plan(1.0, 1.0), 50.0, 0);
        let mut t = 0u64;
        for _ in 0..10_000 {
            t += 10_000_000; // 100 pps, the queue empties each time
            c.on_send(t, true);
            c.on_acks(1, t);
        }
        let r = c.rate();
        assert!(r <= 2.0 * 100.0 * 1.05, "rate {r}");
        assert!(r >= 150.0, "rate {r} should still reach near the ceiling");
        // The source speeds up beyond x (queue stays backlogged): growth resumes.
        for _ in 0..100_000 {
            t += 1_000_000;
            c.on_send(t, false);
            c.on_acks(1, t);
        }
        assert!(c.rate() > 1500.0, "rate {}", c.rate());
    }

    #[test]
    fn backlogged_slow_flow_is_never_capped() {
        // x = 2 pps, backlogged: sends are rare but the queue is never empty.
        let cfg = ControllerConfig {
            kappa: 100.0,
            ..Default::default()
        };
        let mut c = RateController::new(cfg, plan(1.0, 1.0), 2.0, 0);
        let mut t = 0;
        for _ in 0..100 {
            t += 500_000_000;
            c.on_send(t, false);
            c.on_acks(1, t);
        }
        assert!(c.rate() > 100.0, "rate {}", c.rate());
    }

    #[test]
    fn fluid_equilibrium_matches_w_over_x() {
        // Single flow, constant loss q: expected drift kappa(w(1-q) - x q)
        // vanishes at x = w (1-q) / q.
        for q in [0.001f64, 0.01, 0.05] {
            let w: f64 = 10.0;
            let kappa: f64 = 50.0;
            let mut x: f64 = 5.0;
            let dt: f64 = 1e-3;
            for _ in 0..2_000_000 {
                x += dt * (kappa / w) * (x * (1.0 - q) * w / x - x * q);
            }
            let expect = w * (1.0 - q) / q;
            assert!((x - expect).abs() / expect < 1e-3, "q {q}: {x} vs {expect}");
            assert!((w / x - q / (1.0 - q)).abs() < 1e-6);
        }
    }

    #[test]
    fn loss_budget_scaling() {
        // Targets 1000 and 250 pps, duals sums 1 and 2.
        let targets = [1000.0, 250.0, 0.0];
        let mut w = [1000.0, 500.0, 7.0];
        let s = scale_weights_for_loss_budget(&mut w, &targets, 0.01);
        assert!(s > 0.0);
        // The expensive flow (M = 2) sees q = 1%: w/x = 0.01/0.99.
        assert!((w[1] / 250.0 - 0.01 / 0.99).abs() < 1e-12);
        assert!((w[0] / 1000.0 - 0.5 * 0.01 / 0.99).abs() < 1e-12);
        assert_eq!(w[2], 0.0);
    }

    /// A flow that congestion cut under its target and whose feedback is
    /// clean again resumes at the target after a new plan; one held under
    /// it by loss at equilibrium stays; the resume expires.
    #[test]
    fn a_new_plan_resumes_a_cut_flow_once_its_feedback_is_clean() {
        let cfg = ControllerConfig {
            kappa: 10.0,
            ..Default::default()
        };
        // Equilibrium loss at the target 400 with w 8: 8 / 408 = 2 %.
        let (w, target) = (8.0, 400.0);
        let mut c = RateController::new(cfg, plan(w, w), target, 0);
        // A burst of 20 % loss cuts it.
        for _ in 0..200 {
            c.on_acks(4, 0);
            c.on_losses(1);
        }
        let cut = c.rate();
        assert!(cut < 0.8 * target, "cut to {cut}");
        assert_eq!(c.clean_run(), 0);
        c.arm_resume(target, 5_000_000_000);
        assert!(c.resume_armed());
        // One ack is no clean run: no resume.
        c.on_acks(1, 1);
        assert!(c.rate() < 0.8 * target);
        // Clean feedback: after 3 / 2 % = 153 acked packets in a row the
        // rate jumps to the target (the ramp alone would have added
        // kappa_eff w / x ~ 0.03 per ack).
        let mut n = 0;
        while c.rate() < target && n < 1000 {
            c.on_acks(1, 1_000_000_000);
            n += 1;
        }
        assert_eq!(c.rate(), target, "after {n} acks");
        assert_eq!(n + 1, 153, "{n} acks");
        assert!(!c.resume_armed());

        // Loss at equilibrium (2.5 % at 320 for w 8; runs of 39) holds it.
        let mut d = RateController::new(cfg, plan(w, w), 320.0, 0);
        d.arm_resume(target, 5_000_000_000);
        for _ in 0..2000 {
            d.on_acks(39, 1);
            d.on_losses(1);
            d.set_rate(320.0);
        }
        assert!(d.resume_armed() && d.rate() < target);

        // Expired: a clean spell after the window is left to the ramp.
        let mut e = RateController::new(cfg, plan(w, w), 200.0, 0);
        e.arm_resume(target, 1_000);
        e.on_acks(1, 2_000);
        assert!(!e.resume_armed() && e.rate() < 201.0);
        // Armed above the current rate only.
        e.arm_resume(100.0, u64::MAX);
        assert!(!e.resume_armed());
    }
}
