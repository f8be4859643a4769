//! Link capacity estimator (pure; see `docs/control-loop.md`).
//!
//! PFO plans with `Ĉ_l`. Per estimation window, for every link `l`:
//! - the *local* flows crossing `l` (those this site's dataplane reports) are pooled: packets
//!   `P = Σ (acks + losses)`, loss fraction `q = Σ losses / P`;
//! - if `P >= min_packets` and `q > loss_threshold` the window is *lossy*; after
//!   `sustain_windows` lossy windows in a row the sample is
//!   `min(C_l, Σ achieved rates of the local flows + planned load of the other flows on l)`
//!   (a lossy link carries at most what got through; other sites' flows are assumed to be on
//!   plan, we cannot see them);
//! - otherwise (no loss, too few packets, no local flow) the sample is the configured `C_l`;
//!   a lossy window that is not yet sustained leaves the estimate alone;
//! - `Ĉ_l ← Ĉ_l + alpha (sample − Ĉ_l)`, clamped to `[0, C_l]`: never above the configuration.
//!
//! A link marked failed ([`Estimator::mark_link_failed`], path selection's hook) plans with 0.
//! Losses are end-to-end: a loss on a two-link flow counts against both links.

use super::telemetry::FlowWindow;

/// Estimator parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct EstimatorConfig {
    /// Loss fraction above which a window is lossy (the planner lowers it to 1.5 x the
    /// instance's loss budget: MONtra's equilibrium loss on a saturated link is the budget).
    pub loss_threshold: f64,
    /// Fewest packets in a window for its loss fraction to count.
    pub min_packets: u64,
    /// Lossy windows in a row before the estimate moves down.
    pub sustain_windows: u32,
    /// EWMA gain in (0, 1].
    pub alpha: f64,
}

impl Default for EstimatorConfig {
    fn default() -> Self {
        Self {
            loss_threshold: 0.05,
            min_packets: 50,
            sustain_windows: 2,
            alpha: 0.5,
        }
    }
}

/// Per-link capacity estimates.
#[derive(Debug, Clone)]
pub struct Estimator {
    cfg: EstimatorConfig,
    configured: Vec<f64>,
    estimate: Vec<f64>,
    failed: Vec<bool>,
    streak: Vec<u32>,
    /// Flows (instance indices) crossing each link.
    link_flows: Vec<Vec<usize>>,
}

impl Estimator {
    /// Starts at the configured capacities; `flow_links[f]` = links of flow `f`.
    pub fn new(cfg: EstimatorConfig, configured: Vec<f64>, flow_links: &[Vec<usize>]) -> Self {
        let n = configured.len();
        let mut link_flows = vec![Vec::new(); n];
        for (f, ls) in flow_links.iter().enumerate() {
            for &l in ls {
                if let Some(v) = link_flows.get_mut(l) {
                    v.push(f);
                }
            }
        }
        Self {
            cfg,
            estimate: configured.clone(),
            configured,
            failed: vec![false; n],
            streak: vec![0; n],
            link_flows,
        }
    }

    /// Number of links.
    pub fn links(&self) -> usize {
        self.configured.len()
    }

    /// The configured capacity of link `l`.
    pub fn configured(&self, l: usize) -> f64 {
        self.configured[l]
    }

    /// The current estimate (ignores the failed mark).
    pub fn estimate(&self, l: usize) -> f64 {
        self.estimate[l]
    }

    /// Whether link `l` is marked failed.
    pub fn failed(&self, l: usize) -> bool {
        self.failed[l]
    }

    /// The capacity PFO should use: 0 when failed, else the estimate.
    pub fn planning_capacity(&self, l: usize) -> f64 {
        if self.failed[l] {
            0.0
        } else {
            self.estimate[l]
        }
    }

    /// Marks link `l` failed (capacity 0 for planning) or recovered. Returns whether the mark
    /// changed; an out-of-range link is ignored (`false`).
    pub fn mark_link_failed(&mut self, l: usize, failed: bool) -> bool {
        match self.failed.get_mut(l) {
            Some(m) if *m != failed => {
                *m = failed;
                true
            }
            _ => false,
        }
    }

    /// One window: `windows[f]` for every flow (`None`: not observed), `other_load[l]` the
    /// planned load on `l` of the flows not observed.
    pub fn update(&mut self, windows: &[Option<FlowWindow>], other_load: &[f64]) {
        for l in 0..self.configured.len() {
            let (mut acks, mut losses, mut achieved) = (0u64, 0u64, 0.0f64);
            for &f in &self.link_flows[l] {
                if let Some(Some(w)) = windows.get(f) {
                    acks = acks.saturating_add(w.acks);
                    losses = losses.saturating_add(w.losses);
                    achieved += w.achieved_mbps();
                }
            }
            let pooled = FlowWindow {
                acks,
                losses,
                rate_mbps: 0.0,
            };
            let packets = acks.saturating_add(losses);
            let lossy = packets >= self.cfg.min_packets && pooled.loss() > self.cfg.loss_threshold;
            let c = self.configured[l];
            let sample = if lossy {
                self.streak[l] = self.streak[l].saturating_add(1);
                if self.streak[l] < self.cfg.sustain_windows {
                    continue;
                }
                let other = other_load.get(l).copied().unwrap_or(0.0).max(0.0);
                (achieved + other).min(c)
            } else {
                self.streak[l] = 0;
                c
            };
            let e = self.estimate[l] + self.cfg.alpha * (sample - self.estimate[l]);
            self.estimate[l] = if e.is_finite() { e.clamp(0.0, c) } else { c };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(acks: u64, losses: u64, rate: f64) -> Option<FlowWindow> {
        Some(FlowWindow {
            acks,
            losses,
            rate_mbps: rate,
        })
    }

    /// Links 0 and 1; flow 0 on link 0, flow 1 on links 0 and 1.
    fn est() -> Estimator {
        Estimator::new(
            EstimatorConfig::default(),
            vec![10.0, 5.0],
            &[vec![0], vec![0, 1]],
        )
    }

    #[test]
    fn sustained_loss_pulls_the_estimate_towards_the_achieved_rate() {
        let mut e = est();
        // One lossy window: not sustained, no change.
        e.update(&[w(900, 100, 4.0), w(900, 100, 2.0)], &[0.0, 0.0]);
        assert_eq!(e.estimate(0), 10.0);
        // Second lossy window: sample = achieved 0.9 * 6 = 5.4 plus other load 1.
        e.update(&[w(900, 100, 4.0), w(900, 100, 2.0)], &[1.0, 0.0]);
        assert!((e.estimate(0) - (10.0 + 0.5 * (6.4 - 10.0))).abs() < 1e-9);
        // Link 1 sees only flow 1's loss: sample 1.8, pulled down as well.
        assert!(e.estimate(1) < 5.0);
        // Loss gone: back towards the configured capacity, never above it.
        for _ in 0..60 {
            e.update(&[w(1000, 0, 4.0), w(1000, 0, 2.0)], &[0.0, 0.0]);
        }
        assert!((e.estimate(0) - 10.0).abs() < 1e-9);
        assert!(e.estimate(0) <= 10.0 && e.estimate(1) <= 5.0);
    }

    #[test]
    fn little_loss_or_few_packets_keeps_the_configured_capacity() {
        let mut e = est();
        for _ in 0..5 {
            // 2 % loss (MONtra's budget) and a lossy but tiny window.
            e.update(&[w(980, 20, 9.0), w(10, 10, 1.0)], &[0.0, 0.0]);
        }
        assert_eq!(e.estimate(0), 10.0);
        assert_eq!(e.estimate(1), 5.0);
        e.update(&[None, None], &[]);
        assert_eq!(e.estimate(0), 10.0);
    }

    #[test]
    fn a_failed_link_plans_with_zero_until_recovered() {
        let mut e = est();
        assert!(e.mark_link_failed(1, true));
        assert!(!e.mark_link_failed(1, true));
        assert!(!e.mark_link_failed(7, true));
        assert_eq!(e.planning_capacity(1), 0.0);
        assert_eq!(e.planning_capacity(0), 10.0);
        assert!(e.mark_link_failed(1, false));
        assert_eq!(e.planning_capacity(1), 5.0);
    }
}
