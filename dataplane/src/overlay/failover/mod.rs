//! Failover: paths to peers and the dataplane's side of MONET's redundancy
//! at a site gateway. Where a failover is decided: here (the dataplane's
//! reflex, and the control's lease over it) and in the control process's
//! `failover` folder (the MONET manager and its driver).
//!
//! For each peer the stage holds candidate paths in preference order:
//! every **direct** (local uplink, peer address) pair the application
//! resolved, then **detours** through each other peer (a waypoint: the
//! packet goes to the waypoint's gateway, which relays it to the peer over
//! one of its own direct paths, never another detour, so a packet makes at
//! most one detour and cannot loop). Traffic to a peer rides its *active*
//! path; flows keep their sequence numbers and controllers across a switch.
//!
//! Health, per path, by the [`HealthPolicy`] of the settings: every
//! `probe_interval_ns` a probe (GENEVE OAM) goes out on every candidate;
//! the peer echoes it at once. A path is down when no echo came back for
//! `down_after_ns`; up again at its next echo. The fastest signal is the
//! data itself: when packets went out on the active path to a peer and no
//! ack from that peer arrived for `ack_gap_ns`, the active path is declared
//! down at once. A down active path is replaced by the best path that is up
//! (lowest index); a better path than the active one takes over only after
//! staying up for `failback_after_ns` (hysteresis: no flapping).
//!
//! **Who decides.** While a control process drives the paths (it sent a
//! probe command or an assignment within the last [`CONTROL_LEASE_NS`]),
//! the MONET decisions are its own: it names the probes
//! ([`Gateway::on_probe_command`](super::Gateway::on_probe_command),
//! answered by a [`ProbeOutcome`] per command), the default path of each
//! peer and the path of each flow
//! ([`Gateway::on_assign`](super::Gateway::on_assign)). The dataplane keeps
//! one reflex: an ack gap takes a path down at once and its flows fall back
//! to the peer's first path that is up (reported as a
//! [`PathEventKind::AckGap`] for the control to race alternatives). Background probing, echo-timeout failure
//! detection and failback are then the control's, not ours. When the lease
//! lapses (the control died) the dataplane probes and chooses on its own
//! again, as above: fail-static.
//!
//! Files, by job:
//! - `vocab.rs`: what the dataplane and the control say to each other about
//!   paths (path references, assignment marks, path events, probe outcomes,
//!   path records); the control channel (`shm::msg`) encodes it, this
//!   module owns it;
//! - `policy.rs`: [`HealthPolicy`], the timers and thresholds of a
//!   path-health decision, also the control's path manager's;
//! - `candidates.rs`: the candidate paths of each peer, their health, the
//!   active one, acks vouching for them, holds on a move, views;
//! - `probes.rs`: probes out and echoes back; the control's probe commands;
//! - `reflex.rs`: the dataplane's own decisions: ack gap, echo timeout,
//!   failback;
//! - `lease.rs`: the control's lease: assignments and marks in, outcomes and
//!   events out.
//!
//! Everything here is pure (time passed in); probes are emitted from
//! [`Gateway::poll`](crate::engine::Stage::poll) in frames of the stage's
//! reserve.

mod candidates;
mod lease;
mod policy;
mod probes;
mod reflex;
mod vocab;

pub use candidates::{ACK_GAP_PACKETS, PathHealth, PathKind, PathView};
pub(crate) use candidates::{AckWait, PeerPath, PeerPaths};
pub use lease::CONTROL_LEASE_NS;
pub(crate) use lease::ControlPaths;
pub use policy::HealthPolicy;
pub use probes::{
    CONTROL_PROBE_MAX_COUNT, CONTROL_PROBE_MAX_INTERVAL_NS, CONTROL_PROBE_SLOTS,
    CONTROL_PROBE_TIMEOUT_NS, ECHO_WINDOW,
};
pub(crate) use probes::{EchoWindow, echo_worker};
pub use vocab::{
    FLOW_MARK_DOWN, FLOW_MARK_UP, FLOW_PEER_DEFAULT, PATH_NONE, PathEventKind, PathTelemetry,
    ProbeOutcome, path_ref, split_path_ref,
};
