//! The timers and thresholds of a path-health decision, one type for both
//! deciders: the dataplane's reflex (`overlay::Settings::health`) and the
//! control process's path manager (its `PathConfig::health`). Each keeps
//! its own values: the reflex is fast and in-band (tens of milliseconds),
//! the manager slower and within a probe budget (seconds).

use crate::engine::Nanos;

/// When a path is probed, declared down, and trusted again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Probe every path (the control's manager: every path that is up)
    /// this often, ns (0: the dataplane sends no probes of its own and does
    /// not fail over on its own).
    pub probe_interval_ns: u64,
    /// A path without an answer for this long is down, ns.
    pub down_after_ns: u64,
    /// Data sent on the active path and no ack from the peer for this long:
    /// the path is down at once, ns (0: off). The dataplane's reflex; the
    /// control's manager hears it as a path event.
    pub ack_gap_ns: u64,
    /// A better path than the active one takes over again only after being
    /// up this long, ns (hysteresis: no flapping).
    pub failback_after_ns: u64,
}

impl HealthPolicy {
    /// When a path last heard from at `last`, whose round trip (queueing
    /// included) is `rtt`, has been silent too long: `down_after_ns` plus
    /// `rtt`. Echoes of probes sent at a steady interval come back that much
    /// further apart when the queue they wait in fills between two of them
    /// (one answered through an empty queue, the next lost, the one after
    /// through a full one): on the demo's 5 Mbit/s link with 100 ms of
    /// buffer a 150 ms silence rule failed a loaded path that answered.
    #[inline]
    pub fn silence_deadline(&self, last: Nanos, rtt: Nanos) -> Nanos {
        last.saturating_add(self.down_after_ns).saturating_add(rtt)
    }

    /// Whether a path up since `up_since` has been up long enough at `now`
    /// to take the traffic back.
    #[inline]
    pub fn failback_due(&self, up_since: Nanos, now: Nanos) -> bool {
        now.saturating_sub(up_since) >= self.failback_after_ns
    }
}

impl Default for HealthPolicy {
    /// The dataplane's: no probes of its own, down after 150 ms without an
    /// echo, no ack-gap reflex, failback after 1 s (the site gateway turns
    /// on probes every 50 ms and a 60 ms ack gap).
    fn default() -> Self {
        Self {
            probe_interval_ns: 0,
            down_after_ns: 150_000_000,
            ack_gap_ns: 0,
            failback_after_ns: 1_000_000_000,
        }
    }
}
