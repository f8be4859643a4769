//! Per-flow counters: the one shape they have from the worker's pipeline to
//! `mongate status` (the `.flows` file stores it, telemetry is made from it).

/// One worker's counters of one flow (inner packets). The pipeline counts
/// packets into it; [`super::Gateway::flow_counters`] adds the flow's rates,
/// ack accounting, plan epoch and time.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct FlowCounters {
    /// Packets sent on the WAN (origin).
    pub tx_packets: u64,
    /// Inner bytes of those.
    pub tx_bytes: u64,
    /// Packets delivered to the LAN (destination).
    pub rx_packets: u64,
    /// Inner bytes of those.
    pub rx_bytes: u64,
    /// Packets relayed (waypoint).
    pub relayed_packets: u64,
    /// Inner bytes of those.
    pub relayed_bytes: u64,
    /// Current MONtra rate, packets/s (origin; 0 otherwise).
    pub rate_pps: f64,
    /// Packets acknowledged by the destination (origin).
    pub acked: u64,
    /// Packets the acks reported lost (origin).
    pub lost: u64,
    /// Of those: acked later after all (declared lost, then an ack named
    /// them: the loss rules fired early; origin).
    pub spurious: u64,
    /// Of the losses: declared by the tail timeout, no later packet acked
    /// (origin).
    pub tail_lost: u64,
    /// Packets refused by the flow's full pacing queue (origin).
    pub queue_drops: u64,
    /// Plan epoch in force.
    pub epoch: u64,
    /// The worker's clock (ns) at the last update.
    pub updated_ns: u64,
    /// The plan's aggregate rate, packets/s (origin).
    pub target_pps: f64,
    /// Largest sender timestamp (the sender's clock, ns) of the packets
    /// delivered (destination): when the newest delivered packet left.
    pub last_rx_sent_ns: u64,
    /// The worker's clock (ns) when the newest packet was delivered
    /// (destination; 0: none yet).
    pub last_rx_ns: u64,
    /// The worker's clock (ns) when delivery last resumed after a gap of at
    /// least [`RX_GAP_NS`] (destination; 0: none yet): the end of the
    /// flow's latest outage as its receiver saw it, to the packet, not to
    /// the report period.
    pub rx_resumed_ns: u64,
    /// The length of that gap, ns.
    pub rx_gap_ns: u64,
    /// The sender timestamp (the sender's clock, ns) of the packet that
    /// ended that gap: when the first packet after the outage left.
    pub rx_resumed_sent_ns: u64,
}

/// A delivery gap at least this long ends in [`FlowCounters::rx_resumed_ns`]
/// (20 ms: a flow at 1 000 packets/s, Poisson-paced, leaves such a gap by
/// chance with probability e^-20 per packet).
pub const RX_GAP_NS: u64 = 20_000_000;

impl FlowCounters {
    /// Adds `o` (another worker's): counts and rates add; epoch and times:
    /// the largest.
    pub fn add(&mut self, o: &FlowCounters) {
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.relayed_packets += o.relayed_packets;
        self.relayed_bytes += o.relayed_bytes;
        self.rate_pps += o.rate_pps;
        self.target_pps += o.target_pps;
        self.last_rx_sent_ns = self.last_rx_sent_ns.max(o.last_rx_sent_ns);
        self.last_rx_ns = self.last_rx_ns.max(o.last_rx_ns);
        if o.rx_resumed_ns > self.rx_resumed_ns {
            self.rx_resumed_ns = o.rx_resumed_ns;
            self.rx_gap_ns = o.rx_gap_ns;
            self.rx_resumed_sent_ns = o.rx_resumed_sent_ns;
        }
        self.acked += o.acked;
        self.lost += o.lost;
        self.spurious += o.spurious;
        self.tail_lost += o.tail_lost;
        self.queue_drops += o.queue_drops;
        self.epoch = self.epoch.max(o.epoch);
        self.updated_ns = self.updated_ns.max(o.updated_ns);
    }

    /// Counts a delivery at `now` (the worker's clock) of a packet its
    /// sender stamped `sent_ns`: the newest send time, and the end of a gap
    /// of at least [`RX_GAP_NS`] since the previous delivery.
    #[inline]
    pub fn on_delivery(&mut self, now: u64, sent_ns: u64) {
        self.last_rx_sent_ns = self.last_rx_sent_ns.max(sent_ns);
        let gap = now.saturating_sub(self.last_rx_ns);
        if self.last_rx_ns != 0 && gap >= RX_GAP_NS {
            self.rx_resumed_ns = now;
            self.rx_gap_ns = gap;
            self.rx_resumed_sent_ns = sent_ns;
        }
        self.last_rx_ns = self.last_rx_ns.max(now);
    }

    /// The MONtra rate in bit/s for packets of `mean_bytes` on average,
    /// rounded (0 when not finite or not positive).
    pub fn rate_bps(&self, mean_bytes: u32) -> u64 {
        let v = self.rate_pps * 8.0 * f64::from(mean_bytes);
        if v.is_finite() && v > 0.0 {
            // Rounded, finite, non-negative and far below 2^64.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let r = v.min(1e18).round() as u64;
            r
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_sums_counts_and_keeps_the_latest() {
        let mut a = FlowCounters {
            tx_packets: 3,
            rate_pps: 100.0,
            epoch: 2,
            updated_ns: 5,
            last_rx_sent_ns: 9,
            ..FlowCounters::default()
        };
        a.add(&FlowCounters {
            tx_packets: 4,
            rate_pps: 50.0,
            epoch: 1,
            updated_ns: 7,
            last_rx_sent_ns: 8,
            lost: 1,
            ..FlowCounters::default()
        });
        assert_eq!(a.tx_packets, 7);
        assert_eq!(a.rate_pps, 150.0);
        assert_eq!((a.epoch, a.updated_ns, a.last_rx_sent_ns), (2, 7, 9));
        assert_eq!(a.lost, 1);
    }

    #[test]
    fn a_delivery_gap_is_noted_where_it_ends() {
        let mut c = FlowCounters::default();
        let ms = 1_000_000;
        // The first delivery is no resumption; short gaps are none either.
        for t in [5 * ms, 6 * ms, 6 * ms + RX_GAP_NS - 1] {
            c.on_delivery(t, t - ms);
        }
        assert_eq!((c.rx_resumed_ns, c.rx_gap_ns), (0, 0));
        let t = 7 * ms + 2 * RX_GAP_NS;
        c.on_delivery(t, t - 2 * ms);
        assert_eq!((c.last_rx_ns, c.rx_resumed_ns), (t, t));
        assert_eq!(
            (c.rx_resumed_sent_ns, c.last_rx_sent_ns),
            (t - 2 * ms, t - 2 * ms)
        );
        assert_eq!(c.rx_gap_ns, t - (6 * ms + RX_GAP_NS - 1));
        // Workers add: the latest resumption with its own gap.
        let mut other = FlowCounters::default();
        other.on_delivery(ms, 0);
        other.on_delivery(ms + RX_GAP_NS, ms);
        assert_eq!(other.rx_resumed_ns, ms + RX_GAP_NS);
        other.add(&c);
        assert_eq!((other.rx_resumed_ns, other.rx_gap_ns), (t, c.rx_gap_ns));
        assert_eq!(other.rx_resumed_sent_ns, t - 2 * ms);
        assert_eq!(other.last_rx_ns, t);
        let mut again = c;
        again.add(&FlowCounters::default());
        assert_eq!(again, c);
    }

    #[test]
    fn rate_bps_rounds_and_refuses_nonsense() {
        let c = |rate_pps| FlowCounters {
            rate_pps,
            ..FlowCounters::default()
        };
        assert_eq!(c(1000.0).rate_bps(1250), 10_000_000);
        assert_eq!(c(0.1).rate_bps(1), 1);
        assert_eq!(c(0.0).rate_bps(1500), 0);
        assert_eq!(c(-5.0).rate_bps(1500), 0);
        assert_eq!(c(f64::NAN).rate_bps(1500), 0);
        assert_eq!(c(f64::INFINITY).rate_bps(1500), 0);
        assert_eq!(c(1e30).rate_bps(1500), 1_000_000_000_000_000_000);
    }
}
