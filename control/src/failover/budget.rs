//! Probe budget: token buckets in bytes, refilled at a share of an uplink's capacity.
//!
//! Levels are kept in byte-nanoseconds (bytes x 1e9) so that refill is exact integer
//! arithmetic: `level += rate_bytes_per_s * dt_ns`.

use super::ids::{Nanos, SEC};

/// A token bucket of bytes that may go into bounded debt (for urgent race probes).
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    level: i128,
    cap: i128,
    last: Nanos,
}

impl TokenBucket {
    /// A full bucket refilled at `rate` bytes/s holding at most `burst_bytes`.
    pub fn new(rate: u64, burst_bytes: u64, now: Nanos) -> Self {
        let cap = i128::from(burst_bytes) * i128::from(SEC);
        Self {
            rate,
            level: cap,
            cap,
            last: now,
        }
    }

    /// Refill rate in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    fn refill(&mut self, now: Nanos) {
        if now > self.last {
            let add = i128::from(self.rate) * i128::from(now - self.last);
            self.level = (self.level.saturating_add(add)).min(self.cap);
            self.last = now;
        }
    }

    /// Takes `bytes` if available.
    pub fn try_take(&mut self, bytes: u64, now: Nanos) -> bool {
        self.refill(now);
        let need = i128::from(bytes) * i128::from(SEC);
        if self.level >= need {
            self.level -= need;
            true
        } else {
            false
        }
    }

    /// Takes `bytes` unconditionally, going into debt down to minus the bucket depth.
    pub fn force_take(&mut self, bytes: u64, now: Nanos) {
        self.refill(now);
        let need = i128::from(bytes) * i128::from(SEC);
        self.level = (self.level - need).max(-self.cap);
    }

    /// Earliest time (> `now`) at which `bytes` may be available.
    pub fn when_available(&mut self, bytes: u64, now: Nanos) -> Nanos {
        self.refill(now);
        let need = i128::from(bytes) * i128::from(SEC) - self.level;
        if need <= 0 {
            return now.saturating_add(1);
        }
        if self.rate == 0 {
            return now.saturating_add(3600 * SEC);
        }
        let rate = i128::from(self.rate);
        let dt = (need + rate - 1) / rate;
        now.saturating_add(u64::try_from(dt).unwrap_or(u64::MAX).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_rate_and_debt() {
        let mut b = TokenBucket::new(100, 200, 0);
        assert!(b.try_take(200, 0));
        assert!(!b.try_take(1, 0));
        let t = b.when_available(100, 0);
        assert_eq!(t, SEC);
        assert!(b.try_take(100, t));
        b.force_take(1000, t);
        // debt floor is minus the depth: the level is -200 bytes: 400 bytes to refill before 200 are available
        assert_eq!(b.when_available(200, t), t + 4 * SEC);
        let mut z = TokenBucket::new(0, 0, 0);
        assert!(!z.try_take(1, 5));
        assert!(z.when_available(1, 5) > 5);
    }
}
