//! Per-path estimators: RTT (SRTT/RTTVAR as RFC 6298, jitter as RFC 3550), EWMA loss and the
//! success history bitmap.

use super::ids::Nanos;

/// Smoothed RTT, RTT variation and jitter, in integer nanoseconds.
///
/// First sample `r`: `srtt = r`, `rttvar = r/2`. Then `rttvar = 3/4 rttvar + 1/4 |srtt - r|`,
/// `srtt = 7/8 srtt + 1/8 r` (RFC 6298 §2). Jitter is the RFC 3550 interarrival estimator on
/// consecutive samples: `j += (|r - r_prev| - j) / 16`.
#[derive(Clone, Debug, Default)]
pub struct RttEstimator {
    srtt: Option<Nanos>,
    rttvar: Nanos,
    jitter: Nanos,
    last: Option<Nanos>,
}

impl RttEstimator {
    /// Feeds one RTT sample (the caller has rejected absurd values).
    pub fn sample(&mut self, r: Nanos) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(s) => {
                let dev = s.abs_diff(r);
                self.rttvar = (self.rttvar / 4) * 3 + dev / 4;
                self.srtt = Some((s / 8) * 7 + r / 8);
            }
        }
        if let Some(prev) = self.last {
            let d = prev.abs_diff(r);
            // j += (d - j)/16, done without signed arithmetic.
            if d >= self.jitter {
                self.jitter += (d - self.jitter) / 16;
            } else {
                self.jitter -= (self.jitter - d) / 16;
            }
        }
        self.last = Some(r);
    }

    /// Smoothed RTT, `None` before the first sample.
    pub fn srtt(&self) -> Option<Nanos> {
        self.srtt
    }

    /// RTT variation (0 before the first sample).
    pub fn rttvar(&self) -> Nanos {
        self.rttvar
    }

    /// Jitter estimate (0 before two samples).
    pub fn jitter(&self) -> Nanos {
        self.jitter
    }

    /// Probe timeout: `srtt + max(4 rttvar, granularity)` clamped to `[min, max]`;
    /// `initial` before the first sample (RFC 6298 §2.1 uses 1 s).
    pub fn timeout(&self, initial: Nanos, min: Nanos, max: Nanos, granularity: Nanos) -> Nanos {
        match self.srtt {
            None => initial.clamp(min, max),
            Some(s) => s
                .saturating_add(self.rttvar.saturating_mul(4).max(granularity))
                .clamp(min, max),
        }
    }
}

/// The last `n <= 64` outcomes (1 = success) as a bitmap, newest in bit 0.
#[derive(Clone, Debug)]
pub struct History {
    bits: u64,
    len: u32,
    cap: u32,
}

impl History {
    /// An empty history of capacity `cap`, clamped to `1..=64`.
    pub fn new(cap: u32) -> Self {
        Self {
            bits: 0,
            len: 0,
            cap: cap.clamp(1, 64),
        }
    }

    fn mask(n: u32) -> u64 {
        if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
    }

    /// Records one outcome.
    pub fn push(&mut self, ok: bool) {
        self.bits = ((self.bits << 1) | u64::from(ok)) & Self::mask(self.cap);
        self.len = (self.len + 1).min(self.cap);
    }

    /// Number of outcomes recorded (at most the capacity).
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True before the first outcome.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Successes among the recorded outcomes.
    pub fn successes(&self) -> u32 {
        (self.bits & Self::mask(self.len)).count_ones()
    }

    /// The raw bitmap (bit 0 = newest outcome).
    pub fn bits(&self) -> u64 {
        self.bits & Self::mask(self.len)
    }

    /// True if at least `n` outcomes are recorded and the last `n` are all successes
    /// (`n` is clamped to the capacity).
    pub fn last_all_ok(&self, n: u32) -> bool {
        let n = n.min(self.cap);
        self.len >= n && (self.bits & Self::mask(n)) == Self::mask(n)
    }

    /// The shape of a clean repair: the newest outcomes are one run of successes (the
    /// recovery), before it one run of failures (the outage), and before that at most
    /// `max_old_losses` failures among what is remembered (the path was clean until it was
    /// cut), and the outage at least `min_lost` long. A path that is lossy rather than cut
    /// has failures scattered before its last outage, and its "outages" are short chance runs
    /// (3 in a row at 30 % loss: 2.7 %; 5: 0.24 %). `None` if the history does not end in
    /// successes after failures.
    pub fn clean_cut_and_repair(&self, max_old_losses: u32, min_lost: u32) -> Option<bool> {
        let bits = self.bits();
        let len = self.len;
        // Trailing ones: the recovery run.
        let ok_run = bits.trailing_ones().min(len);
        if ok_run == 0 || ok_run >= len {
            return None;
        }
        let rest = bits >> ok_run;
        let rest_len = len - ok_run;
        // Then trailing zeros: the outage.
        let lost_run = rest.trailing_zeros().min(rest_len);
        if lost_run == 0 {
            return None;
        }
        let old_len = rest_len - lost_run;
        let old = if lost_run >= 64 { 0 } else { rest >> lost_run };
        let old_ok = (old & Self::mask(old_len)).count_ones();
        Some(lost_run >= min_lost && old_len - old_ok <= max_old_losses)
    }

    /// Forgets everything before the newest run of successes.
    pub fn keep_recent_successes(&mut self) {
        self.len = self.bits().trailing_ones().min(self.len);
        self.bits &= Self::mask(self.len);
    }

    /// Success rate with a Laplace prior: `(s + 1) / (n + 2)`, so 0.5 with no history.
    pub fn success_rate(&self) -> f64 {
        (f64::from(self.successes()) + 1.0) / (f64::from(self.len) + 2.0)
    }
}

/// Exponentially weighted moving average of a loss fraction in `[0, 1]`.
#[derive(Clone, Debug, Default)]
pub struct LossEwma {
    value: f64,
}

impl LossEwma {
    /// Moves the average toward `sample` (clamped to `[0, 1]`) with gain `alpha`.
    pub fn update(&mut self, sample: f64, alpha: f64) {
        let s = if sample.is_finite() {
            sample.clamp(0.0, 1.0)
        } else {
            1.0
        };
        self.value += alpha.clamp(0.0, 1.0) * (s - self.value);
        self.value = self.value.clamp(0.0, 1.0);
    }

    /// Current estimate.
    pub fn value(&self) -> f64 {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::super::ids::MS;
    use super::*;

    #[test]
    fn rtt_follows_rfc6298() {
        let mut e = RttEstimator::default();
        assert_eq!(e.timeout(1000 * MS, 30 * MS, 2000 * MS, MS), 1000 * MS);
        e.sample(100 * MS);
        assert_eq!(e.srtt(), Some(100 * MS));
        assert_eq!(e.rttvar(), 50 * MS);
        e.sample(200 * MS);
        // rttvar = 3/4*50 + 1/4*100 = 62.5; srtt = 7/8*100 + 1/8*200 = 112.5
        assert_eq!(e.rttvar(), 62_500_000);
        assert_eq!(e.srtt(), Some(112_500_000));
        assert!(e.jitter() > 0);
        for _ in 0..200 {
            e.sample(10 * MS);
        }
        assert!(e.srtt().unwrap().abs_diff(10 * MS) < MS / 10);
        assert!(e.timeout(1000 * MS, 30 * MS, 2000 * MS, MS) == 30 * MS);
    }

    #[test]
    fn history_window_and_rate() {
        let mut h = History::new(4);
        assert!(h.is_empty());
        assert!((h.success_rate() - 0.5).abs() < 1e-12);
        for ok in [true, true, false, true, true, true] {
            h.push(ok);
        }
        assert_eq!(h.len(), 4);
        assert_eq!(h.successes(), 3); // last four: false, true, true, true
        assert_eq!(h.bits(), 0b0111);
        assert!(h.last_all_ok(3) && !h.last_all_ok(4));
        assert!(!History::new(8).last_all_ok(1));
        let mut h64 = History::new(200);
        for _ in 0..100 {
            h64.push(true);
        }
        assert_eq!(h64.len(), 64);
        assert_eq!(h64.successes(), 64);
    }

    fn history_of(cap: u32, outcomes: &str) -> History {
        let mut h = History::new(cap);
        for c in outcomes.chars() {
            h.push(c == '1');
        }
        h
    }

    #[test]
    fn a_clean_cut_is_told_from_a_lossy_path() {
        // (history oldest first, losses allowed before the outage, shortest outage, verdict)
        let cases = [
            // Clean, cut, repaired.
            ("1111111111100000111", 1, 3, Some(true)),
            // One old loss is allowed, two are not.
            ("1101111111100000111", 1, 3, Some(true)),
            ("1101110111100000111", 1, 3, Some(false)),
            // A lossy path: losses scattered before the last outage.
            ("1011011101011000111", 1, 3, Some(false)),
            // An answer in the middle of the outage: not one cut.
            ("1111111111100100111", 1, 3, Some(false)),
            // A short run of losses is a lossy path's chance, not a cut.
            ("1111111111100000111", 1, 6, Some(false)),
            // Not ending in a recovery after an outage.
            ("1111", 1, 3, None),
            ("1110", 1, 3, None),
            ("", 1, 3, None),
        ];
        for (outcomes, old, min_lost, want) in cases {
            assert_eq!(
                history_of(32, outcomes).clean_cut_and_repair(old, min_lost),
                want,
                "{outcomes}"
            );
        }
        // An outage longer than the memory: nothing before it, a clean cut.
        assert_eq!(
            history_of(8, "111111100000000111").clean_cut_and_repair(0, 3),
            Some(true)
        );
        // Full 64-wide history, every bit pattern shape handled.
        let mut h = History::new(64);
        for i in 0..64 {
            h.push(i >= 61);
        }
        assert_eq!(h.clean_cut_and_repair(0, 3), Some(true));
        h.keep_recent_successes();
        assert_eq!((h.len(), h.successes()), (3, 3));
        assert!(h.last_all_ok(3) && !h.last_all_ok(4));
        let mut h = history_of(32, "0110");
        h.keep_recent_successes();
        assert!(h.is_empty());
    }

    #[test]
    fn ewma_clamps() {
        let mut l = LossEwma::default();
        l.update(f64::NAN, 0.5);
        assert!((l.value() - 0.5).abs() < 1e-12);
        l.update(-3.0, 2.0);
        assert!(l.value().abs() < 1e-12);
    }
}
