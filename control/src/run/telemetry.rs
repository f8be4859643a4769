//! Telemetry book-keeping: the latest report of every (worker, flow) and (worker, class), and
//! per-flow acknowledgement/loss counts of the current estimation window. Indices are the
//! PFO instance's (the planner translates configuration indices first). Pure: time is an
//! argument.

/// Most workers a dataplane can have (`mongate_dataplane::shm::region::MAX_WORKERS`).
pub const MAX_WORKERS: usize = 64;

#[derive(Debug, Clone, Copy, Default)]
struct FlowSeen {
    acks: u64,
    losses: u64,
    rate_bps: u64,
    tx_bytes: u64,
    at_ns: Option<u64>,
    /// `tx_bytes` and `at_ns` of the latest report when the last window
    /// closed: the start of this window's mean sending rate.
    mark: Option<(u64, u64)>,
}

#[derive(Debug, Clone, Copy, Default)]
struct ClassSeen {
    active: u32,
    waiting: u32,
    at_ns: Option<u64>,
}

/// The sessions of one class, summed over the workers that reported lately.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassSessions {
    /// Admitted sessions active.
    pub active: u32,
    /// Sessions refused (best effort or dropped) because the class had no room in the plan.
    pub waiting: u32,
}

/// One flow over one estimation window, summed over workers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FlowWindow {
    /// Packets acknowledged in the window.
    pub acks: u64,
    /// Packets lost in the window.
    pub losses: u64,
    /// Current MONtra sending rate, Mbit/s (sum of the fresh per-worker reports).
    pub rate_mbps: f64,
    /// Mean sending rate over the window, Mbit/s: the bytes sent between the
    /// reports that closed the last window and this one, over their time
    /// apart, summed over the workers (`None`: a worker lacks such a pair,
    /// e.g. its first window or a restart).
    pub sent_mbps: Option<f64>,
}

impl FlowWindow {
    /// Loss fraction `losses / (acks + losses)` (0 without packets).
    pub fn loss(&self) -> f64 {
        let n = self.acks.saturating_add(self.losses);
        if n == 0 {
            0.0
        } else {
            self.losses as f64 / n as f64
        }
    }
    /// Achieved (delivered) rate: the window's mean sending rate (else the
    /// controller's current rate) times `1 - loss`. The mean, not the
    /// controller's rate at the window's end: a controller's saw-tooth put
    /// that anywhere between a cut and a peak, and the capacity estimator
    /// read the noise as capacity.
    pub fn achieved_mbps(&self) -> f64 {
        self.sent_mbps.unwrap_or(self.rate_mbps) * (1.0 - self.loss())
    }
}

/// Latest reports per worker and the running window.
#[derive(Debug, Clone)]
pub struct TelemetryBook {
    flows: usize,
    classes: usize,
    flow_seen: Vec<Vec<FlowSeen>>,
    class_seen: Vec<Vec<ClassSeen>>,
    win_acks: Vec<u64>,
    win_losses: Vec<u64>,
}

impl TelemetryBook {
    /// A book for `flows` flows and `classes` classes.
    pub fn new(flows: usize, classes: usize) -> Self {
        Self {
            flows,
            classes,
            flow_seen: Vec::new(),
            class_seen: Vec::new(),
            win_acks: vec![0; flows],
            win_losses: vec![0; flows],
        }
    }

    fn grow(&mut self, worker: usize) {
        while self.flow_seen.len() <= worker {
            self.flow_seen.push(vec![FlowSeen::default(); self.flows]);
            self.class_seen
                .push(vec![ClassSeen::default(); self.classes]);
        }
    }

    /// Records worker `worker`'s report on flow `flow` (cumulative counters: acks, losses,
    /// inner bytes sent). A counter that went down means the worker restarted: its new value
    /// is the delta. Returns `false` (and records nothing) for an out-of-range worker or flow.
    pub fn flow(
        &mut self,
        worker: usize,
        flow: usize,
        now_ns: u64,
        rate_bps: u64,
        (acks, losses, tx_bytes): (u64, u64, u64),
    ) -> bool {
        if worker >= MAX_WORKERS || flow >= self.flows {
            return false;
        }
        self.grow(worker);
        let s = &mut self.flow_seen[worker][flow];
        let delta = |new: u64, old: u64| if new >= old { new - old } else { new };
        if s.at_ns.is_some() {
            self.win_acks[flow] = self.win_acks[flow].saturating_add(delta(acks, s.acks));
            self.win_losses[flow] = self.win_losses[flow].saturating_add(delta(losses, s.losses));
        }
        let mark = s.mark.filter(|&(b, t)| tx_bytes >= b && now_ns >= t);
        *s = FlowSeen {
            acks,
            losses,
            rate_bps,
            tx_bytes,
            at_ns: Some(now_ns),
            mark,
        };
        true
    }

    /// Records worker `worker`'s active and waiting session counts of class `class`. `false`
    /// when out of range.
    pub fn class(
        &mut self,
        worker: usize,
        class: usize,
        now_ns: u64,
        active: u32,
        waiting: u32,
    ) -> bool {
        if worker >= MAX_WORKERS || class >= self.classes {
            return false;
        }
        self.grow(worker);
        self.class_seen[worker][class] = ClassSeen {
            active,
            waiting,
            at_ns: Some(now_ns),
        };
        true
    }

    fn fresh(at: Option<u64>, now_ns: u64, stale_ns: u64) -> bool {
        at.is_some_and(|t| now_ns.saturating_sub(t) <= stale_ns)
    }

    /// Active sessions of `class` summed over the workers that reported within `stale_ns`;
    /// `None` when none did.
    pub fn active(&self, class: usize, now_ns: u64, stale_ns: u64) -> Option<u32> {
        self.sessions(class, now_ns, stale_ns).map(|s| s.active)
    }

    /// Active and waiting sessions of `class` summed over the workers that reported within
    /// `stale_ns`; `None` when none did.
    pub fn sessions(&self, class: usize, now_ns: u64, stale_ns: u64) -> Option<ClassSessions> {
        let mut any = false;
        let mut sum = ClassSessions::default();
        for w in &self.class_seen {
            let s = w.get(class)?;
            if Self::fresh(s.at_ns, now_ns, stale_ns) {
                any = true;
                sum.active = sum.active.saturating_add(s.active);
                sum.waiting = sum.waiting.saturating_add(s.waiting);
            }
        }
        any.then_some(sum)
    }

    /// Ends the window: per flow, the acks and losses since the last call and the fresh rate
    /// (`None` for a flow no worker reported within `stale_ns`).
    pub fn take_window(&mut self, now_ns: u64, stale_ns: u64) -> Vec<Option<FlowWindow>> {
        let out = (0..self.flows)
            .map(|f| {
                let mut any = false;
                let mut bps = 0u64;
                let mut sent = Some(0.0f64);
                for w in &self.flow_seen {
                    let s = &w[f];
                    if Self::fresh(s.at_ns, now_ns, stale_ns) {
                        any = true;
                        bps = bps.saturating_add(s.rate_bps);
                        let dt = s.mark.zip(s.at_ns).and_then(|((b, t0), t)| {
                            (t > t0).then(|| ((s.tx_bytes - b) as f64, (t - t0) as f64))
                        });
                        sent = sent.zip(dt).map(|(x, (bytes, ns))| x + bytes * 8e3 / ns);
                    }
                }
                // a rate in bit/s: 2^52 is far beyond any link
                let rate_mbps = bps as f64 / 1e6;
                any.then_some(FlowWindow {
                    acks: self.win_acks[f],
                    losses: self.win_losses[f],
                    rate_mbps,
                    sent_mbps: sent,
                })
            })
            .collect();
        for w in &mut self.flow_seen {
            for s in w.iter_mut() {
                s.mark = s.at_ns.map(|t| (s.tx_bytes, t));
            }
        }
        self.win_acks.fill(0);
        self.win_losses.fill(0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_sum_workers_and_take_deltas() {
        let mut b = TelemetryBook::new(2, 1);
        assert!(b.flow(0, 1, 0, 1_000_000, (100, 0, 0)));
        assert!(b.flow(1, 1, 0, 2_000_000, (50, 5, 0)));
        // First reports only set the baseline.
        let w = b.take_window(10, 100);
        assert_eq!(w[0], None);
        assert_eq!(w[1].unwrap().acks, 0);
        assert!((w[1].unwrap().rate_mbps - 3.0).abs() < 1e-12);
        b.flow(0, 1, 20, 1_000_000, (190, 10, 0));
        b.flow(1, 1, 20, 2_000_000, (60, 5, 0));
        let w = b.take_window(30, 100)[1].unwrap();
        assert_eq!((w.acks, w.losses), (100, 10));
        assert!((w.loss() - 10.0 / 110.0).abs() < 1e-12);
        // A restarted worker (counters went down): the new value is the delta.
        b.flow(0, 1, 40, 1_000_000, (7, 3, 0));
        let w = b.take_window(50, 100)[1].unwrap();
        assert_eq!((w.acks, w.losses), (7, 3));
        // Stale reports vanish.
        assert_eq!(b.take_window(1_000, 100)[1], None);
    }

    /// The window's mean sending rate comes from the bytes between the reports that closed
    /// two windows, whatever the controller's rate said at the end; a worker without such a
    /// pair (its first window, a restart) leaves it unknown.
    #[test]
    fn the_sent_rate_is_the_windows_mean() {
        let ms = 1_000_000;
        let mut b = TelemetryBook::new(1, 1);
        // 1 Mbit/s is 125 000 bytes per second.
        b.flow(0, 0, 0, 9_000_000, (0, 0, 0));
        assert_eq!(b.take_window(ms, 10_000 * ms)[0].unwrap().sent_mbps, None);
        b.flow(0, 0, 500 * ms, 9_000_000, (10, 0, 62_500));
        b.flow(0, 0, 1_000 * ms, 9_000_000, (20, 0, 125_000));
        let w = b.take_window(1_001 * ms, 10_000 * ms)[0].unwrap();
        assert!((w.sent_mbps.unwrap() - 1.0).abs() < 1e-9, "{w:?}");
        assert!((w.rate_mbps - 9.0).abs() < 1e-9);
        assert!((w.achieved_mbps() - 1.0).abs() < 1e-9);
        // Twice as fast, 10 % lost: 1.8 delivered.
        b.flow(0, 0, 2_000 * ms, 9_000_000, (29, 1, 375_000));
        let w = b.take_window(2_001 * ms, 10_000 * ms)[0].unwrap();
        assert!((w.achieved_mbps() - 1.8).abs() < 1e-9, "{w:?}");
        // A second worker's first window: unknown, the controller's rate stands in.
        b.flow(1, 0, 2_500 * ms, 1_000_000, (0, 0, 0));
        b.flow(0, 0, 3_000 * ms, 9_000_000, (30, 1, 500_000));
        let w = b.take_window(3_001 * ms, 10_000 * ms)[0].unwrap();
        assert_eq!(w.sent_mbps, None);
        assert!((w.achieved_mbps() - 10.0).abs() < 1e-9, "{w:?}");
        // Both known: they add. A restart (bytes went down) is unknown again.
        b.flow(0, 0, 4_000 * ms, 9_000_000, (31, 1, 625_000));
        b.flow(1, 0, 3_500 * ms, 1_000_000, (1, 0, 125_000));
        let w = b.take_window(4_001 * ms, 10_000 * ms)[0].unwrap();
        assert!((w.sent_mbps.unwrap() - 2.0).abs() < 1e-9, "{w:?}");
        b.flow(0, 0, 5_000 * ms, 9_000_000, (1, 0, 100));
        b.flow(1, 0, 4_500 * ms, 1_000_000, (2, 0, 125_000));
        assert_eq!(
            b.take_window(5_001 * ms, 10_000 * ms)[0].unwrap().sent_mbps,
            None
        );
    }

    #[test]
    fn out_of_range_records_are_refused() {
        let mut b = TelemetryBook::new(2, 1);
        assert!(!b.flow(0, 2, 0, 1, (1, 1, 0)));
        assert!(!b.flow(MAX_WORKERS, 0, 0, 1, (1, 1, 0)));
        assert!(!b.class(0, 1, 0, 3, 0));
        assert!(b.class(3, 0, 0, 3, 2));
        assert!(b.class(1, 0, 5, 4, 1));
        assert_eq!(b.active(0, 10, 100), Some(7));
        assert_eq!(
            b.sessions(0, 10, 100),
            Some(ClassSessions {
                active: 7,
                waiting: 3
            })
        );
        // Worker 3's report goes stale first.
        assert_eq!(
            b.sessions(0, 102, 100),
            Some(ClassSessions {
                active: 4,
                waiting: 1
            })
        );
        assert_eq!(b.active(0, 1_000, 100), None);
    }
}
