//! The shared-memory channel between the control process and the dataplane
//! (see `docs/shm.md`).
//!
//! - [`region`]: the file `<run dir>/<name>.ctl` — header (identity,
//!   generation, control heartbeat, active-epoch word), per-worker words, and
//!   per worker two [`crate::ring::ShmRing`]s of [`msg::Msg`]: commands and
//!   telemetry. [`CtlRegion`] is the dataplane's side, [`ControlPort`] the
//!   control process's.
//! - [`msg`]: the 256-byte plain-data message and its typed views
//!   [`Command`] / [`Telemetry`] (decoding never panics).
//! - [`plan`]: a [`crate::plan::PlanTable`] on the rings: entries, checksum,
//!   chunking, and the pure worker-side state machine [`PlanAssembler`]
//!   (assemble privately, stage on a valid commit, switch on the active-epoch word).
//! - [`channel`]: [`WorkerChannel`], one bounded step per worker loop iteration.
//!
//! Atomicity: a worker replaces its running plan only by a complete, valid
//! plan (swap of preallocated buffers). Across workers, the control process
//! flips the active-epoch word to E only after every worker has published
//! "staged E"; each worker switches at its next step after seeing the flip.
//! So no worker ever runs a mixed plan, no worker switches to E unless every
//! worker holds E ready, and all workers run E within one loop iteration of
//! the flip (between the flip and that iteration, some workers still run
//! E-1: that window is the only non-simultaneity).

pub mod channel;
pub mod msg;
pub mod plan;
pub mod region;

pub use channel::{StepReport, WorkerChannel};
pub use msg::{Command, DecodeError, Msg, PlanEntry, Telemetry};
pub use plan::{
    AssemblerCounters, Event, PlanAssembler, Refusal, checksum, plan_commands, plan_entries,
};
pub use region::{
    ControlPort, CtlError, CtlRegion, Recv, SendError, WorkerPort, WorkerState, ctl_path,
};

#[cfg(test)]
mod tests;
