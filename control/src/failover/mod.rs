//! Failover: MONET path selection for a site gateway, the control's side (see `docs/paths.md`).
//! Where a failover is decided: here (the manager and its driver) and in the dataplane's reflex
//! (`mongate_dataplane::overlay::failover`), which acts alone on an ack gap, and on everything
//! when no control holds its lease.
//!
//! A *path* toward a destination site is (local uplink, optional waypoint site, remote
//! address). The [`PathManager`] keeps per-path health (up / suspect / down with hysteresis),
//! RTT, jitter and loss estimates, and decides, sans-I/O:
//! - which path carries each destination's flows ([`Action::MoveFlows`]): on a new destination or
//!   a suspected failure it probes the best few paths in a staggered race and moves to the first
//!   that answers (MONET waypoint selection); it returns to a better path only with hysteresis;
//! - which probes to send ([`Action::Probe`]), within a per-uplink budget, exploring down paths;
//! - which paths PFO should treat as failed or degraded ([`Action::ReportLinks`]).
//!
//! Modules: [`ids`], [`config`], [`health`] (state machine), [`estimate`] (RTT, loss, history),
//! [`rank`], [`manager`], [`driver`] (the manager driven by the live dataplane: path records,
//! probe commands and results, path events, assignments), and [`sim`], a deterministic
//! failure-trace simulator comparing the manager with a single-path gateway.
//! The timers both sides decide by are one type, [`HealthPolicy`] (`PathConfig::health`).
//! The probe budget is the dataplane's
//! [`TokenBucket`](mongate_dataplane::pacing::TokenBucket), the RNG its
//! [`SplitMix64`](mongate_dataplane::sys::rng::SplitMix64).

pub mod config;
pub mod driver;
pub mod estimate;
pub mod health;
pub mod ids;
pub mod manager;
pub mod rank;
#[cfg(feature = "sim")]
pub mod sim;

pub use config::{ConfigError, PathConfig, UplinkConfig};
pub use driver::{DriverStats, FailoverDriver, site_path_config};
pub use health::PathState;
pub use ids::{AddrId, MS, Nanos, PathId, PathKey, SEC, SiteId, UplinkId};
pub use manager::{Action, PathManager, PathStats, PathView};
pub use mongate_dataplane::overlay::failover::HealthPolicy;
