//! Ranking of paths: expected cost of a successful exchange.
//!
//! ```text
//! cost_ns   = srtt (or unknown_rtt) + 2 * jitter + uplink cost + waypoint penalty (if any)
//! p_success = success_rate(history, Laplace prior) * (1 - loss_ewma) * state_factor
//! rank      = cost_ns / max(p_success, 0.001)          (lower is better)
//! ```
//!
//! `cost / p` is the expected total cost of geometric retries until one exchange succeeds, so a
//! cheap but lossy path and an expensive but clean one are compared on one scale.
//! State factors: up 1, suspect 0.5, down 0.05.

use super::health::PathState;
use super::ids::Nanos;

/// The inputs of [`rank_cost`].
#[derive(Clone, Copy, Debug)]
pub struct RankInput {
    /// Smoothed RTT, if measured.
    pub srtt: Option<Nanos>,
    /// Jitter estimate.
    pub jitter: Nanos,
    /// Configured cost of the path's uplink.
    pub uplink_cost: Nanos,
    /// True if the path goes through a waypoint.
    pub via_waypoint: bool,
    /// History success rate (Laplace).
    pub success_rate: f64,
    /// Loss EWMA.
    pub loss: f64,
    /// Health state.
    pub state: PathState,
}

/// Multiplier of the success probability per state.
pub fn state_factor(s: PathState) -> f64 {
    match s {
        PathState::Up => 1.0,
        PathState::Suspect => 0.5,
        PathState::Down => 0.05,
    }
}

/// Rank cost in nanoseconds (lower is better); always finite and positive.
pub fn rank_cost(i: &RankInput, unknown_rtt: Nanos, waypoint_penalty: Nanos) -> f64 {
    let cost = i
        .srtt
        .unwrap_or(unknown_rtt)
        .saturating_add(i.jitter.saturating_mul(2))
        .saturating_add(i.uplink_cost)
        .saturating_add(if i.via_waypoint { waypoint_penalty } else { 0 });
    let sr = if i.success_rate.is_finite() {
        i.success_rate.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let keep = if i.loss.is_finite() {
        1.0 - i.loss.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let p = (sr * keep * state_factor(i.state)).max(0.001);
    // Nanosecond costs below 2^53 are exact in f64; larger ones only lose sub-ns precision.
    let c = cost.max(1) as f64;
    c / p
}

#[cfg(test)]
mod tests {
    use super::super::ids::MS;
    use super::*;

    fn base() -> RankInput {
        RankInput {
            srtt: Some(10 * MS),
            jitter: 0,
            uplink_cost: 0,
            via_waypoint: false,
            success_rate: 1.0,
            loss: 0.0,
            state: PathState::Up,
        }
    }

    #[test]
    fn ordering() {
        let good = rank_cost(&base(), 100 * MS, 10 * MS);
        let wp = rank_cost(
            &RankInput {
                via_waypoint: true,
                ..base()
            },
            100 * MS,
            10 * MS,
        );
        let sus = rank_cost(
            &RankInput {
                state: PathState::Suspect,
                ..base()
            },
            100 * MS,
            10 * MS,
        );
        let down = rank_cost(
            &RankInput {
                state: PathState::Down,
                ..base()
            },
            100 * MS,
            10 * MS,
        );
        let lossy = rank_cost(
            &RankInput {
                loss: 0.5,
                ..base()
            },
            100 * MS,
            10 * MS,
        );
        assert!(good < wp && good < sus && sus < down && good < lossy);
        let nan = rank_cost(
            &RankInput {
                success_rate: f64::NAN,
                ..base()
            },
            100 * MS,
            10 * MS,
        );
        assert!(nan.is_finite() && nan > 0.0);
    }
}
