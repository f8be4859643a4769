//! Poisson pacing: an integer token bucket, a hierarchical timer wheel of
//! flow departures, and the per-flow pacing table the worker's pacing stage
//! wraps. Gaps are drawn from [`crate::sys::Rng`]'s exponential variate.
//!
//! Pure: no OS, no clock (time is passed in as `u64` nanoseconds), no
//! allocation after construction.

pub mod pacer;
pub mod token_bucket;
pub mod wheel;

pub use pacer::{FlowPacer, PacingConfig, PacingError, PacingStats, PacingTable};
pub use token_bucket::TokenBucket;
pub use wheel::{TimerWheel, WheelError};
