//! Handshake load: when the control counts itself under load ([`LoadMeter`]: cookies are
//! demanded then), and the per-source rate limit of the handshake messages it processes
//! ([`SourceLimiter`], WireGuard's: 20 per second, a burst of 5, per source address). Pure.

use std::collections::HashMap;
use std::net::IpAddr;

use mongate_dataplane::pacing::TokenBucket;
use mongate_dataplane::sys::{Nanos, SEC};

/// Handshake messages per second above which cookies are demanded.
pub const UNDER_LOAD_PER_S: u32 = 100;
/// Messages processed per second per source address.
pub const PER_SOURCE_RATE: u64 = 20;
/// Burst of messages processed per source address.
pub const PER_SOURCE_BURST: u64 = 5;
/// Most source addresses tracked at once; beyond, new sources are refused until the next sweep.
pub const MAX_SOURCES: usize = 4096;

/// Handshake messages in the last second, estimated from two one-second buckets.
#[derive(Clone, Debug)]
pub struct LoadMeter {
    threshold: u32,
    start: Nanos,
    cur: u32,
    prev: u32,
}

impl LoadMeter {
    /// Under load above `threshold` messages per second.
    pub fn new(threshold: u32, now: Nanos) -> Self {
        Self {
            threshold,
            start: now,
            cur: 0,
            prev: 0,
        }
    }

    fn advance(&mut self, now: Nanos) {
        let age = now.saturating_sub(self.start);
        if age >= 2 * SEC {
            self.prev = 0;
            self.cur = 0;
            self.start = now;
        } else if age >= SEC {
            self.prev = self.cur;
            self.cur = 0;
            self.start += SEC;
        }
    }

    /// Counts one message.
    pub fn record(&mut self, now: Nanos) {
        self.advance(now);
        self.cur = self.cur.saturating_add(1);
    }

    /// Messages in the last second: this bucket plus the share of the last one still inside it.
    pub fn rate(&mut self, now: Nanos) -> u64 {
        self.advance(now);
        let into = now.saturating_sub(self.start).min(SEC);
        u64::from(self.cur) + u64::from(self.prev) * (SEC - into) / SEC
    }

    /// Whether more than the threshold came in the last second.
    pub fn under_load(&mut self, now: Nanos) -> bool {
        self.rate(now) > u64::from(self.threshold)
    }
}

/// A token bucket per source address, swept of idle (hence full) buckets every second.
#[derive(Debug)]
pub struct SourceLimiter {
    rate: u64,
    burst: u64,
    max: usize,
    buckets: HashMap<IpAddr, (TokenBucket, Nanos)>,
    next_sweep: Nanos,
}

impl SourceLimiter {
    /// `rate` per second, `burst`, at most `max` sources at once.
    pub fn new(rate: u64, burst: u64, max: usize) -> Self {
        Self {
            rate,
            burst,
            max,
            buckets: HashMap::new(),
            next_sweep: 0,
        }
    }

    /// Whether one more message from `src` may be processed at `now` (and counts it).
    pub fn allow(&mut self, src: IpAddr, now: Nanos) -> bool {
        if now >= self.next_sweep {
            // A bucket idle for a second has refilled (burst / rate <= 1 s): forgetting it
            // changes nothing.
            self.buckets
                .retain(|_, (_, last)| now.saturating_sub(*last) < SEC);
            self.next_sweep = now.saturating_add(SEC);
        }
        if !self.buckets.contains_key(&src) && self.buckets.len() >= self.max {
            return false;
        }
        let (rate, burst) = (self.rate, self.burst);
        let (b, last) = self
            .buckets
            .entry(src)
            .or_insert_with(|| (TokenBucket::new(rate, burst, now), now));
        *last = now;
        b.try_consume(1, now)
    }

    /// Sources tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use mongate_dataplane::sys::MS;

    use super::*;

    #[test]
    fn load_meter_counts_the_last_second() {
        let mut m = LoadMeter::new(10, 0);
        for i in 0..10 {
            m.record(i * MS);
        }
        assert!(!m.under_load(10 * MS));
        m.record(11 * MS);
        assert!(m.under_load(11 * MS));
        // Half a second into the next bucket, half of the last one still counts.
        assert_eq!(m.rate(SEC + 500 * MS), 5);
        assert!(!m.under_load(SEC + 500 * MS));
        assert_eq!(m.rate(5 * SEC), 0);
    }

    #[test]
    fn per_source_burst_then_rate() {
        let mut l = SourceLimiter::new(20, 5, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        let t = 10 * SEC;
        assert_eq!((0..10).filter(|_| l.allow(a, t)).count(), 5);
        // One more token after 50 ms.
        assert!(l.allow(a, t + 50 * MS));
        assert!(!l.allow(a, t + 50 * MS));
        // Another source is not affected, a third does not fit.
        assert!(l.allow(b, t + 50 * MS));
        assert!(!l.allow(c, t + 50 * MS));
        // After a second of silence the table is swept.
        assert!(l.allow(c, t + 2 * SEC));
        assert_eq!(l.len(), 1);
    }
}
