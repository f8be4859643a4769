//! The one integer-math token bucket (bytes or packets), time passed in: the
//! control's probe budget, and any pacing that wants one.
//!
//! Tokens are kept in "token-nanoseconds" (`tokens * 1e9`) in an `i128`, so
//! refilling is `elapsed_ns * rate` with no division and no rounding drift;
//! the product of two `u64` values is formed in a `u128` and clamped before
//! it is added, so nothing overflows.

/// Nanoseconds per second.
const NS: i128 = 1_000_000_000;

/// A token bucket: `rate` tokens per second, at most `burst` tokens stored.
///
/// Semantics:
/// - rate 0: the bucket never refills (whatever is stored can still be spent);
/// - time going backwards (a `now` before the last update) refills nothing and
///   does not move the reference time back;
/// - a request larger than `burst` can never succeed ([`TokenBucket::wait_ns`]
///   returns `None`), it is not partially served;
/// - [`TokenBucket::force_consume`] (urgent use, e.g. race probes) may take
///   the bucket into debt, at most `burst` tokens deep; refills pay the debt
///   first.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    /// Stored tokens times 1e9, in `-burst * 1e9 ..= burst * 1e9`.
    credit: i128,
    last_ns: u64,
}

impl TokenBucket {
    /// A full bucket at time `now_ns`.
    pub fn new(rate_per_s: u64, burst: u64, now_ns: u64) -> Self {
        Self {
            rate: rate_per_s,
            burst,
            credit: i128::from(burst) * NS,
            last_ns: now_ns,
        }
    }

    /// An empty bucket at time `now_ns`.
    pub fn new_empty(rate_per_s: u64, burst: u64, now_ns: u64) -> Self {
        Self {
            rate: rate_per_s,
            burst,
            credit: 0,
            last_ns: now_ns,
        }
    }

    /// Rate in tokens per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Burst (capacity) in tokens.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Changes rate and burst, keeping the stored credit (or debt), clamped
    /// to the new burst. Refills at the old rate up to `now_ns` first.
    pub fn reconfigure(&mut self, rate_per_s: u64, burst: u64, now_ns: u64) {
        self.refill(now_ns);
        self.rate = rate_per_s;
        self.burst = burst;
        self.credit = self.credit.clamp(-self.cap(), self.cap());
    }

    /// `burst * 1e9`, below 2^94.
    #[inline]
    fn cap(&self) -> i128 {
        i128::from(self.burst) * NS
    }

    /// Adds the tokens earned since the last update.
    #[inline]
    fn refill(&mut self, now_ns: u64) {
        if now_ns <= self.last_ns {
            return; // no time passed, or time went backwards: nothing earned
        }
        let elapsed = now_ns - self.last_ns;
        self.last_ns = now_ns;
        let cap = self.cap();
        // elapsed * rate < 2^128 in a u128; clamped to 2 * cap (from the
        // deepest debt to full) it fits an i128, and so does the sum.
        let most = u128::try_from(2 * cap).unwrap_or(0);
        let earned = (u128::from(elapsed) * u128::from(self.rate)).min(most);
        self.credit = (self.credit + i128::try_from(earned).unwrap_or(0)).min(cap);
    }

    /// Whole tokens available at `now_ns` (0 in debt).
    pub fn available(&mut self, now_ns: u64) -> u64 {
        self.refill(now_ns);
        // 0 <= credit / 1e9 <= burst fits a u64.
        u64::try_from(self.credit.max(0) / NS).unwrap_or(self.burst)
    }

    /// Takes `n` tokens if available at `now_ns`; otherwise takes nothing.
    pub fn try_consume(&mut self, n: u64, now_ns: u64) -> bool {
        self.refill(now_ns);
        let need = i128::from(n) * NS;
        if need <= self.credit {
            self.credit -= need;
            true
        } else {
            false
        }
    }

    /// Takes `n` tokens at `now_ns` whatever is stored, going into debt down
    /// to minus the burst (deeper debt is forgiven).
    pub fn force_consume(&mut self, n: u64, now_ns: u64) {
        self.refill(now_ns);
        // credit >= -2^94, need < 2^94: no overflow.
        let need = i128::from(n) * NS;
        self.credit = (self.credit - need).max(-self.cap());
    }

    /// Nanoseconds from `now_ns` until `n` tokens are available (0 if they
    /// are now), or `None` if they never will be (`n > burst`, or rate 0 and
    /// not enough stored).
    pub fn wait_ns(&mut self, n: u64, now_ns: u64) -> Option<u64> {
        self.refill(now_ns);
        let need = i128::from(n) * NS;
        if need <= self.credit {
            return Some(0);
        }
        if n > self.burst || self.rate == 0 {
            return None;
        }
        // Positive here (need > credit).
        let missing = u128::try_from(need - self.credit).unwrap_or(0);
        // Ceiling division; the result is at most 2 * burst * 1e9 (rate >= 1),
        // which can exceed u64: saturate.
        Some(u64::try_from(missing.div_ceil(u128::from(self.rate))).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn basic_consume_and_refill() {
        let mut b = TokenBucket::new(1000, 100, 0);
        assert_eq!(b.available(0), 100);
        assert!(b.try_consume(100, 0));
        assert!(!b.try_consume(1, 0));
        // 1000/s: one token per ms.
        assert!(!b.try_consume(1, 999_999));
        assert!(b.try_consume(1, 1_000_000));
        assert_eq!(b.wait_ns(1, 1_000_000), Some(1_000_000));
        assert_eq!(b.wait_ns(5, 1_500_000), Some(4_500_000));
    }

    #[test]
    fn fractional_refill_is_not_lost() {
        // 3 tokens/s refilled in 1 ns steps: 333_333_334 ns per token.
        let mut b = TokenBucket::new_empty(3, 10, 0);
        let mut got = 0;
        let mut t = 0;
        while t < SEC {
            t += 1_000; // 1 us steps
            if b.try_consume(1, t) {
                got += 1;
            }
        }
        assert_eq!(got, 3);
    }

    #[test]
    fn zero_rate_never_refills() {
        let mut b = TokenBucket::new(0, 5, 0);
        assert!(b.try_consume(5, 0));
        assert!(!b.try_consume(1, u64::MAX));
        assert_eq!(b.wait_ns(1, 10), None);
        // Zero burst: nothing can ever be taken except zero tokens.
        let mut z = TokenBucket::new(1_000_000, 0, 0);
        assert!(z.try_consume(0, 5));
        assert!(!z.try_consume(1, SEC));
        assert_eq!(z.wait_ns(1, SEC), None);
    }

    #[test]
    fn huge_rate_and_burst_do_not_overflow() {
        let mut b = TokenBucket::new_empty(u64::MAX, u64::MAX, 0);
        // 1 ns at u64::MAX tokens/s earns (2^64-1)/1e9 tokens.
        assert_eq!(b.available(1), 18_446_744_073);
        assert_eq!(b.available(SEC), u64::MAX);
        assert!(b.try_consume(u64::MAX, SEC));
        assert_eq!(b.available(SEC), 0);
        assert!(b.try_consume(u64::MAX, u64::MAX));
        // Max elapsed times max rate.
        let mut c = TokenBucket::new_empty(u64::MAX, 10, 0);
        assert_eq!(c.available(u64::MAX), 10);
        // Waits that exceed u64 saturate.
        let mut d = TokenBucket::new_empty(1, u64::MAX, 0);
        assert_eq!(d.wait_ns(u64::MAX, 0), Some(u64::MAX));
    }

    #[test]
    fn time_going_backwards_earns_nothing() {
        let mut b = TokenBucket::new(1000, 10, 10 * SEC);
        assert!(b.try_consume(10, 10 * SEC));
        // Backwards: no refill, no reset of the reference time.
        assert!(!b.try_consume(1, 5 * SEC));
        assert_eq!(b.available(0), 0);
        // Going forward again from the original reference: 1 ms = 1 token.
        assert!(b.try_consume(1, 10 * SEC + 1_000_000));
        assert!(!b.try_consume(1, 10 * SEC + 1_000_000));
    }

    #[test]
    fn long_idle_refills_only_to_burst() {
        let mut b = TokenBucket::new(1_000_000, 64, 0);
        assert!(b.try_consume(64, 0));
        assert_eq!(b.available(3600 * SEC), 64);
        assert!(!b.try_consume(65, 3600 * SEC));
        assert_eq!(b.wait_ns(65, 3600 * SEC), None);
        assert!(b.try_consume(64, 3600 * SEC));
    }

    #[test]
    fn reconfigure_keeps_and_clamps_credit() {
        let mut b = TokenBucket::new(100, 100, 0);
        assert!(b.try_consume(50, 0));
        b.reconfigure(1000, 20, 0);
        assert_eq!(b.available(0), 20);
        b.reconfigure(0, 200, 0);
        assert_eq!(b.available(SEC), 20);
    }

    #[test]
    fn debt_is_bounded_and_paid_first() {
        // The probe budget: 100 B/s, 200 B deep.
        let mut b = TokenBucket::new(100, 200, 0);
        assert!(b.try_consume(200, 0));
        assert!(!b.try_consume(1, 0));
        assert_eq!(b.wait_ns(100, 0), Some(SEC));
        assert!(b.try_consume(100, SEC));
        // Urgent: 1000 B forced; the debt floor is minus the depth (-200 B),
        // so 400 B must be earned before 200 are available.
        b.force_consume(1000, SEC);
        assert_eq!(b.available(SEC), 0);
        assert!(!b.try_consume(1, SEC));
        assert_eq!(b.wait_ns(200, SEC), Some(4 * SEC));
        assert_eq!(b.available(3 * SEC), 0);
        assert_eq!(b.available(5 * SEC), 200);
        // Forcing from a full bucket spends stored tokens first.
        let mut c = TokenBucket::new(0, 10, 0);
        c.force_consume(4, 0);
        assert_eq!(c.available(0), 6);
        // Zero rate and depth: nothing, ever; no overflow at the extremes.
        let mut z = TokenBucket::new(0, 0, 0);
        assert!(!z.try_consume(1, 5));
        assert_eq!(z.wait_ns(1, 5), None);
        z.force_consume(u64::MAX, u64::MAX);
        assert_eq!(z.available(u64::MAX), 0);
        let mut h = TokenBucket::new(u64::MAX, u64::MAX, 0);
        h.force_consume(u64::MAX, 0);
        h.force_consume(u64::MAX, 0);
        // From the deepest debt to full at u64::MAX tokens/s: 2 s.
        assert_eq!(h.wait_ns(u64::MAX, 0), Some(2 * SEC));
        assert_eq!(h.available(u64::MAX), u64::MAX);
    }

    #[test]
    fn reconfigure_clamps_debt() {
        let mut b = TokenBucket::new(0, 100, 0);
        b.force_consume(200, 0);
        b.reconfigure(1000, 10, 0);
        // Debt -10 (clamped to the new depth): 20 ms for 10 tokens.
        assert_eq!(b.wait_ns(10, 0), Some(20_000_000));
    }

    #[test]
    fn long_run_rate_is_exact_bytes() {
        // 12.5 MB/s in bytes, 1500-byte packets as fast as allowed for 10 s.
        let rate = 12_500_000;
        let mut b = TokenBucket::new_empty(rate, 3000, 0);
        let mut sent = 0u64;
        let mut t = 0u64;
        while t <= 10 * SEC {
            match b.wait_ns(1500, t) {
                Some(0) => {
                    assert!(b.try_consume(1500, t));
                    sent += 1500;
                }
                Some(w) => t += w,
                None => panic!("1500 <= burst must be reachable"),
            }
        }
        // Exactly rate * 10 s, to one packet.
        assert!(sent.abs_diff(rate * 10) <= 1500, "sent {sent}");
    }
}
