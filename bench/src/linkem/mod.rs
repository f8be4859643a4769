//! `linkem`: a WAN link emulator for kernels without netem. Two interfaces
//! are bridged through AF_XDP (copy mode) and every frame goes through a
//! per-direction link model: random loss (Bernoulli or Gilbert-Elliott),
//! a drop-tail queue, a token-bucket rate, one-way delay and jitter (FIFO
//! unless reordering is asked for). See `docs/linkem.md`.
//!
//! * [`model`]: the pure model, time passed in, seeded;
//! * [`bridge`]: the AF_XDP adapter on the engine, and [`spawn`] /
//!   [`spawn_in_netns`] to run it in the background;
//! * [`cli`]: `mongate-bench linkem`.

pub mod bridge;
pub mod cli;
pub mod model;

pub use bridge::{
    Bridge, BridgeConfig, BridgeError, DirReport, LinkReport, LinkStage, LinkemHandle, spawn,
    spawn_in_netns,
};
pub use model::{ConfigError, DirectionConfig, DropCause, JitterDist, LinkModel, Loss, Verdict};

/// Milliseconds (as typed on a command line) to nanoseconds; `None` when
/// negative, not finite or beyond [`model::MAX_DELAY_NS`].
pub fn ms_to_ns(ms: f64) -> Option<u64> {
    let ns = (ms * 1e6).round();
    // 0 <= ns <= 6e10 < 2^53 is checked first: the cast is exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    if ns.is_finite() && ns >= 0.0 && ns <= model::MAX_DELAY_NS as f64 {
        Some(ns as u64)
    } else {
        None
    }
}

/// Mbit/s to bit/s (0 = unlimited); `None` when negative, not finite or
/// above 10 Tbit/s.
pub fn mbps_to_bps(mbps: f64) -> Option<u64> {
    let bps = (mbps * 1e6).round();
    // Checked to be within 0..=1e13 < 2^53: exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    if bps.is_finite() && (0.0..=1e13).contains(&bps) {
        Some(bps as u64)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_conversions() {
        assert_eq!(ms_to_ns(5.0), Some(5_000_000));
        assert_eq!(ms_to_ns(0.0015), Some(1_500));
        assert_eq!(ms_to_ns(0.0), Some(0));
        assert_eq!(ms_to_ns(-1.0), None);
        assert_eq!(ms_to_ns(f64::NAN), None);
        assert_eq!(ms_to_ns(f64::INFINITY), None);
        assert_eq!(ms_to_ns(60_001.0), None);
        assert_eq!(mbps_to_bps(10.0), Some(10_000_000));
        assert_eq!(mbps_to_bps(0.0), Some(0));
        assert_eq!(mbps_to_bps(-5.0), None);
        assert_eq!(mbps_to_bps(f64::NAN), None);
        assert_eq!(mbps_to_bps(1e8), None);
    }
}
