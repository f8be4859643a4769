//! An integer-math token bucket (bytes or packets), time passed in.
//!
//! Tokens are kept in "token-nanoseconds" (`tokens * 1e9`) in a `u128`, so
//! refilling is `elapsed_ns * rate` with no division and no rounding drift, and
//! no product of two `u64` values can overflow (`(2^64-1)^2 < 2^128`).

/// Nanoseconds per second.
const NS: u128 = 1_000_000_000;

/// A token bucket: `rate` tokens per second, at most `burst` tokens stored.
///
/// Semantics chosen for the dataplane:
/// - rate 0: the bucket never refills (whatever is stored can still be spent);
/// - time going backwards (a `now` before the last update) refills nothing and
///   does not move the reference time back;
/// - a request larger than `burst` can never succeed ([`TokenBucket::wait_ns`]
///   returns `None`), it is not partially served.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    /// Stored tokens times 1e9, at most `burst * 1e9`.
    credit: u128,
    last_ns: u64,
}

impl TokenBucket {
    /// A full bucket at time `now_ns`.
    pub fn new(rate_per_s: u64, burst: u64, now_ns: u64) -> Self {
        Self {
            rate: rate_per_s,
            burst,
            credit: u128::from(burst) * NS,
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

    /// Changes rate and burst, keeping the stored credit (clamped to the new
    /// burst). Refills at the old rate up to `now_ns` first.
    pub fn reconfigure(&mut self, rate_per_s: u64, burst: u64, now_ns: u64) {
        self.refill(now_ns);
        self.rate = rate_per_s;
        self.burst = burst;
        self.credit = self.credit.min(self.cap());
    }

    #[inline]
    fn cap(&self) -> u128 {
        u128::from(self.burst) * NS
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
        // elapsed * rate < 2^128; credit <= cap < 2^94; the sum cannot overflow
        // once the earned amount is clamped to cap.
        let earned = (u128::from(elapsed) * u128::from(self.rate)).min(cap);
        self.credit = (self.credit + earned).min(cap);
    }

    /// Whole tokens available at `now_ns`.
    pub fn available(&mut self, now_ns: u64) -> u64 {
        self.refill(now_ns);
        // credit <= burst * 1e9, so credit / 1e9 <= burst fits a u64.
        u64::try_from(self.credit / NS).unwrap_or(self.burst)
    }

    /// Takes `n` tokens if available at `now_ns`; otherwise takes nothing.
    pub fn try_consume(&mut self, n: u64, now_ns: u64) -> bool {
        self.refill(now_ns);
        let need = u128::from(n) * NS;
        if need <= self.credit {
            self.credit -= need;
            true
        } else {
            false
        }
    }

    /// Nanoseconds from `now_ns` until `n` tokens are available (0 if they
    /// are now), or `None` if they never will be (`n > burst`, or rate 0 and
    /// not enough stored).
    pub fn wait_ns(&mut self, n: u64, now_ns: u64) -> Option<u64> {
        self.refill(now_ns);
        let need = u128::from(n) * NS;
        if need <= self.credit {
            return Some(0);
        }
        if n > self.burst || self.rate == 0 {
            return None;
        }
        let missing = need - self.credit;
        let rate = u128::from(self.rate);
        // Ceiling division; the result is at most burst * 1e9 (rate >= 1),
        // which can exceed u64: saturate.
        Some(u64::try_from(missing.div_ceil(rate)).unwrap_or(u64::MAX))
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
