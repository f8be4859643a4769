//! Failure traces: outages and lossy periods of underlay hops over time, hand-written or drawn
//! from a seeded generator.

use super::super::ids::{MS, Nanos, SEC};
use super::Topology;
use mongate_dataplane::sys::rng::SplitMix64;

/// What goes wrong on a hop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FaultKind {
    /// The hop carries nothing. `carrier`: on a local access link, the gateway also sees the
    /// carrier drop (an `on_link_event`); otherwise the outage is silent (upstream failure).
    Outage {
        /// Visible as carrier loss to the local gateway.
        carrier: bool,
    },
    /// The hop loses this fraction of round trips.
    Lossy {
        /// Loss fraction in `[0, 1]`.
        loss: f64,
    },
}

/// One fault on one hop during `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fault {
    /// Hop index in the [`Topology`].
    pub hop: usize,
    /// Start time.
    pub start: Nanos,
    /// End time (repair).
    pub end: Nanos,
    /// What happens.
    pub kind: FaultKind,
}

/// A failure trace over `duration`.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// Simulated time.
    pub duration: Nanos,
    /// Faults, in any order; overlapping faults on one hop combine (outage wins, worst loss).
    pub faults: Vec<Fault>,
}

/// Rates and lengths of the random trace generator. Per hop, faults of each kind arrive as a
/// Poisson process with the given mean gap; lengths are log-uniform in `[min, max]`.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceParams {
    /// Simulated time.
    pub duration: Nanos,
    /// No fault before this (the manager learns its paths).
    pub warmup: Nanos,
    /// Mean gap between outages of one access link.
    pub access_outage_every: Nanos,
    /// Length range of access-link outages.
    pub access_outage_len: (Nanos, Nanos),
    /// Mean gap between outages of one ISP-ISP core path.
    pub core_outage_every: Nanos,
    /// Length range of core outages.
    pub core_outage_len: (Nanos, Nanos),
    /// Mean gap between lossy periods of one hop (any hop).
    pub lossy_every: Nanos,
    /// Length range of lossy periods.
    pub lossy_len: (Nanos, Nanos),
    /// Loss during lossy periods.
    pub lossy_loss: f64,
    /// Share of local access outages the gateway sees as carrier loss.
    pub carrier_share: f64,
}

impl Default for TraceParams {
    /// 24 hours; per access link an outage every 6 h (20 s - 20 min); per core path an outage
    /// every 8 h (10 s - 10 min); per hop a 30 % loss period every 8 h (30 s - 5 min).
    fn default() -> Self {
        Self {
            duration: 24 * 3600 * SEC,
            warmup: 30 * SEC,
            access_outage_every: 6 * 3600 * SEC,
            access_outage_len: (20 * SEC, 20 * 60 * SEC),
            core_outage_every: 8 * 3600 * SEC,
            core_outage_len: (10 * SEC, 10 * 60 * SEC),
            lossy_every: 8 * 3600 * SEC,
            lossy_len: (30 * SEC, 5 * 60 * SEC),
            lossy_loss: 0.3,
            carrier_share: 0.5,
        }
    }
}

// Float <-> integer conversions of simulated durations: values are positive and far below
// 2^53 ns (104 days), so the casts neither truncate meaningfully nor lose the sign.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn exp_sample(rng: &mut SplitMix64, mean: Nanos) -> Nanos {
    let u = rng.next_f64();
    let x = -(1.0 - u).ln() * mean as f64;
    if x.is_finite() {
        x.min(1e18) as Nanos
    } else {
        mean
    }
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // as above
fn log_uniform(rng: &mut SplitMix64, (lo, hi): (Nanos, Nanos)) -> Nanos {
    let (lo, hi) = (lo.max(MS) as f64, hi.max(lo).max(MS) as f64);
    let x = (lo.ln() + rng.next_f64() * (hi.ln() - lo.ln())).exp();
    x as Nanos
}

impl Trace {
    /// A trace without faults.
    pub fn clean(duration: Nanos) -> Self {
        Self {
            duration,
            faults: Vec::new(),
        }
    }

    /// Draws a random trace for `topology` from `seed` (same seed, same trace).
    pub fn generate(topology: &Topology, params: &TraceParams, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed ^ 0x7472_6163_6500_0000);
        let mut faults = Vec::new();
        for (h, hop) in topology.hops.iter().enumerate() {
            let outage = if hop.access {
                (params.access_outage_every, params.access_outage_len)
            } else {
                (params.core_outage_every, params.core_outage_len)
            };
            let kinds = [
                (outage.0, outage.1, true),
                (params.lossy_every, params.lossy_len, false),
            ];
            for (every, len, is_outage) in kinds {
                let mut t = params.warmup.saturating_add(exp_sample(&mut rng, every));
                while t < params.duration {
                    let l = log_uniform(&mut rng, len);
                    let kind = if is_outage {
                        let carrier = hop.uplink.is_some() && rng.chance(params.carrier_share);
                        FaultKind::Outage { carrier }
                    } else {
                        FaultKind::Lossy {
                            loss: params.lossy_loss,
                        }
                    };
                    let end = t.saturating_add(l).min(params.duration);
                    faults.push(Fault {
                        hop: h,
                        start: t,
                        end,
                        kind,
                    });
                    t = end.saturating_add(exp_sample(&mut rng, every));
                }
            }
        }
        faults.sort_by_key(|f| (f.start, f.hop));
        Self {
            duration: params.duration,
            faults,
        }
    }
}
