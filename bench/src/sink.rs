//! What the sink measures: packets and bytes, loss against what was sent,
//! reordering per flow, and one-way latency (hdrhistogram, ns).

use hdrhistogram::Histogram;

use crate::payload::Stamp;

/// Largest flow id tracked individually.
pub const MAX_FLOWS: usize = 65536;

/// Sink counters and latency histogram.
pub struct SinkStats {
    /// Bench packets received.
    pub packets: u64,
    /// Their bytes (frame length without FCS).
    pub bytes: u64,
    /// Frames that were not bench packets.
    pub foreign: u64,
    /// Packets older (lower sequence) than one already seen in their flow.
    pub reordered: u64,
    /// First receive time (worker clock, ns).
    pub first_rx_ns: Option<u64>,
    /// Last receive time.
    pub last_rx_ns: u64,
    /// One-way latency in ns.
    pub latency: Histogram<u64>,
    max_seq: Vec<Option<u32>>,
}

impl Default for SinkStats {
    fn default() -> Self {
        Self::new()
    }
}

impl SinkStats {
    /// Empty counters; allocates the per-flow table once.
    pub fn new() -> Self {
        Self {
            packets: 0,
            bytes: 0,
            foreign: 0,
            reordered: 0,
            first_rx_ns: None,
            last_rx_ns: 0,
            latency: Histogram::new_with_bounds(100, 60_000_000_000, 3)
                .expect("constant histogram bounds are valid"),
            max_seq: vec![None; MAX_FLOWS],
        }
    }

    /// Records one received frame (`stamp` from [`crate::payload::read_stamp`]).
    #[inline]
    pub fn record(&mut self, stamp: Option<Stamp>, len: u32, rx_ns: u64) {
        if !self.count(stamp.is_some(), len, rx_ns) {
            return;
        }
        let Some(s) = stamp else { return };
        let lat = rx_ns.saturating_sub(s.ts_ns).max(100);
        let _ = self.latency.record(lat.min(60_000_000_000));
        if let Some(m) = self.max_seq.get_mut(usize::from(s.flow)) {
            match *m {
                Some(prev) if s.seq < prev => self.reordered += 1,
                _ => *m = Some(s.seq),
            }
        }
    }

    /// Records one frame counted without a stamp (an encrypted tunnel's
    /// packet, see [`crate::payload::SinkMatch`]): packets and bytes only.
    #[inline]
    pub fn record_unstamped(&mut self, matched: bool, len: u32, rx_ns: u64) {
        self.count(matched, len, rx_ns);
    }

    /// Counts a frame as foreign, or as a packet with its bytes and time;
    /// returns `counted`.
    #[inline]
    fn count(&mut self, counted: bool, len: u32, rx_ns: u64) -> bool {
        if !counted {
            self.foreign += 1;
            return false;
        }
        self.packets += 1;
        self.bytes += u64::from(len);
        if self.first_rx_ns.is_none() {
            self.first_rx_ns = Some(rx_ns);
        }
        self.last_rx_ns = rx_ns;
        true
    }

    /// Receive rate in packets per second over first..last packet.
    pub fn pps(&self) -> f64 {
        match self.first_rx_ns {
            Some(f) if self.last_rx_ns > f && self.packets > 1 => {
                (self.packets - 1) as f64 * 1e9 / (self.last_rx_ns - f) as f64
            }
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reordering_and_latency() {
        let mut s = SinkStats::new();
        for (seq, t) in [(0u32, 1000u64), (1, 2000), (3, 3000), (2, 4000), (4, 5000)] {
            s.record(
                Some(Stamp {
                    ts_ns: 0,
                    seq,
                    flow: 1,
                }),
                60,
                t,
            );
        }
        s.record(None, 60, 6000);
        assert_eq!(s.packets, 5);
        assert_eq!(s.reordered, 1);
        assert_eq!(s.foreign, 1);
        assert_eq!(s.latency.len(), 5);
        assert!((s.pps() - 4.0 * 1e9 / 4000.0).abs() < 1e-6);
    }
}
