//! MONtra: the online per-flow rate control of the MON paper (Kelly's primal
//! algorithm per packet), its aggregated-ack feedback, and a deterministic
//! packet-level simulator to check it against PFO's targets.
//!
//! Pure: no OS, no clock (time is passed in as `u64` nanoseconds). Rules,
//! constants and measured results: `docs/montra.md`.

pub mod acks;
pub mod controller;
#[cfg(feature = "sim")]
pub mod sim;

pub use acks::{
    AckAggregator, AckInfo, AckOutcome, AckPolicy, AckTracker, TrackerConfig, TrackerStats,
    window_for,
};
pub use controller::{
    ControllerConfig, ControllerTarget, RateController, scale_weights_for_loss_budget,
};
