//! The overlay gateway pipeline: the stage a site gateway's worker runs
//! between its LAN port and its WAN uplink ports. Pure (no OS, time passed
//! in, no allocation per packet after construction).
//!
//! - **LAN -> WAN** ([`lan_to_wan`]): classify (session -> flow), enqueue
//!   in the flow's Poisson pacing queue (`Verdict::Held`), release at the
//!   MONtra controller's rate from [`Stage::poll`], encapsulate in the
//!   frame's headroom (GENEVE + mongate flow option) toward the flow's next
//!   site, `Verdict::Tx(uplink)`. Too big for the path: ICMP "fragmentation
//!   needed" / "packet too big" back to the LAN host in the same frame.
//! - **WAN -> LAN** ([`wan_to_lan`]): decapsulate and validate; deliver to
//!   the LAN (inner MACs rewritten) when this site is the flow's destination
//!   (recording the arrival for acks), re-encapsulate toward the next site
//!   when it is a waypoint; OAM: acks feed the sender's tracker and MONtra
//!   controller, probes are echoed at once.
//! - **Acks** ([`ack_emit`]): the destination emits aggregated acks (GENEVE
//!   OAM, O bit) from [`Stage::poll`], in frames of a small private reserve.
//! - **Security** ([`secure`]): with `[security]` required, everything sent
//!   to a peer is sealed and everything received is opened with the key its
//!   receiver index names before any of the above; handshake messages pass
//!   between the uplinks and the control process.
//!
//! Both directions share state (acks arriving on the WAN side drive the
//! pacers of the LAN side), so they are one struct, [`Gateway`], which
//! implements [`Stage`] and dispatches each packet on its arrival port; the
//! two halves are also callable directly ([`Gateway::lan_to_wan`],
//! [`Gateway::wan_to_lan`]). Design notes and measured costs:
//! `docs/overlay.md`.

mod ack_emit;
mod counters;
pub mod failover;
mod lan_to_wan;
pub mod neighbours;
mod secure;
mod wan_to_lan;
mod wire_ids;
mod workers;

#[cfg(test)]
mod tests;

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lan_to_wan::QueueId;
pub(crate) use lan_to_wan::{dst_addr, src_addr};

use crate::classify::{self, Classifier, ClassifierError};
use crate::config::{Config, Prefix};
use crate::engine::{Arena, Batch, FramePool, Nanos, Stage, Verdict};
use crate::montra::{
    AckAggregator, AckInfo, AckPolicy, AckTracker, ControllerConfig, ControllerTarget,
    RateController, TrackerConfig, TrackerStats, window_for,
};
use crate::pacing::{PacingConfig, PacingError, PacingTable, TimerWheel, WheelError};
use crate::plan::PlanTable;
use crate::wire::ethernet::MacAddr;
use crate::wire::geneve::FlowOption;
use crate::wire::oam::AckEntry;
use crate::wire::overlay::{EncapParams, OverlayTemplate, TemplateConfig};
use failover::{
    AckWait, ControlPaths, EchoWindow, HealthPolicy, PathHealth, PathKind, PeerPath, PeerPaths,
};

pub use counters::FlowCounters;
pub use neighbours::{Learn, NeighbourStats, NeighbourTable};
pub use secure::{
    HANDSHAKE_BURST, HANDSHAKE_IN_QUEUE, HANDSHAKE_OUT_QUEUE, HANDSHAKE_QUEUE_MAX,
    HANDSHAKE_QUEUE_PER_PEER, HANDSHAKE_RATE_PER_S, HANDSHAKE_SOURCE_BURST,
    HANDSHAKE_SOURCE_RATE_PER_S, ROAM_QUIET_NS, handshake_queue_len,
};

/// Wire flow id carried by best-effort packets (not a planned flow: no acks).
pub const BEST_EFFORT_FLOW_ID: u32 = u32::MAX;
/// Wire flow id of OAM messages (by convention, `docs/wire-format.md`).
pub const OAM_FLOW_ID: u32 = 0;
/// Ack entries per OAM message (35 fit a 1500-byte IPv4 link).
pub const MAX_ACK_ENTRIES_PER_MESSAGE: usize = 32;

/// How long after a new plan a flow under its target may resume to it
/// ([`RateController::arm_resume`]), ns: long enough for a failover's burst
/// on a shared link to drain, short enough that a later loss-free spell is
/// left to the controller's ramp.
const RESUME_WINDOW_NS: Nanos = 5_000_000_000;
/// The smallest frame a flow may send (Ethernet's minimum), bytes: the most
/// packets per rate unit when sizing a tracker ([`window_for`]).
const MIN_FRAME_BYTES: u32 = 64;

/// The stable wire id of a flow: FNV-1a (32 bit) of its id string, so that
/// every site agrees on it whatever the order of `[[flows]]` in its file.
/// 0 and `u32::MAX` are reserved (OAM, best effort) and remapped.
pub fn wire_flow_id(id: &str) -> u32 {
    let mut h: u32 = 0x811C_9DC5;
    for b in id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    match h {
        OAM_FLOW_ID => 1,
        BEST_EFFORT_FLOW_ID => BEST_EFFORT_FLOW_ID - 1,
        h => h,
    }
}

/// Settings the site configuration does not carry (MAC addresses, port
/// indices, the gateway's LAN addresses) and the tunables of the pipeline.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Worker port index of the LAN interface.
    pub lan_port: u16,
    /// Worker port index of each uplink, in `Config::uplinks` order (empty:
    /// uplink `i` is port `i + 1`).
    pub uplink_ports: Vec<u16>,
    /// Our MAC on the LAN (source of delivered frames and ICMP replies).
    pub lan_mac: MacAddr,
    /// Our MAC on each uplink, in `Config::uplinks` order (missing: zero MAC).
    pub uplink_macs: Vec<MacAddr>,
    /// Destination MAC of delivered inner frames when the inner destination
    /// is not in `neighbours` (the LAN router, or a single host).
    pub lan_next_hop_mac: MacAddr,
    /// LAN hosts with their MACs (static neighbour table, from the kernel's
    /// at start; sorted and deduplicated by address when the stage is built;
    /// hosts are also learned from their LAN traffic, see
    /// [`Gateway::learned_neighbours`]).
    pub neighbours: Vec<(IpAddr, MacAddr)>,
    /// How long a learned LAN address stays with its MAC after its last
    /// packet: another MAC claiming it sooner is refused (dropped, counted
    /// `lan_mac_conflict`), ns.
    pub neighbour_hold_ns: u64,
    /// How to reach each peer, per `Config::peers` index: its direct
    /// candidate paths in preference order (resolved by the application
    /// from the kernel's routes and neighbours). An empty entry: no uplink
    /// reaches the peer, it has no direct path (detours only). No entries
    /// at all (routes not resolved: the in-process tests): the first
    /// (uplink, gateway address) pair of the same family in file order,
    /// with the uplink's `gateway_mac`.
    pub peer_routes: Vec<Vec<PeerRoute>>,
    /// Also keep detour paths through the other peers (waypoints), used
    /// when every direct path to a peer is down.
    pub detours: bool,
    /// The failover reflex's timers and thresholds: probe interval (0: no
    /// probes, no failover), down after silence, ack gap, failback.
    pub health: HealthPolicy,
    /// Divide every planned rate by this (a flow's sessions may be spread
    /// over this many workers, each pacing its share). At least 1.
    pub rate_divisor: u32,
    /// Workers of the gateway (at least 1). With several, each class
    /// belongs to one worker ([`classify::class_owner`]): its sessions,
    /// flows, pacers, controllers and receivers; packets and acks of a
    /// class another worker owns are handed to it (`worker/handoff.rs`).
    pub workers: u16,
    /// This stage's worker index (0: the worker that probes paths).
    pub worker: u16,
    /// Port index of the first handoff port (one per other worker, in
    /// worker order: `worker::handoff::port_to`).
    pub handoff_first_port: u16,
    /// Our IPv4 address on the LAN: source of ICMP errors (none: no ICMPv4 errors).
    pub lan_address_v4: Option<Ipv4Addr>,
    /// Our IPv6 address on the LAN: source of ICMPv6 errors.
    pub lan_address_v6: Option<Ipv6Addr>,
    /// IP MTU of the uplinks (the outer IP packet), bytes.
    pub uplink_mtu: usize,
    /// Bytes per unit of the controllers' and pacers' rates: the plan's
    /// Mbit/s become units/s through it, and each departure is charged its
    /// inner frame's length in units, so a flow's byte rate is its plan's
    /// whatever its packet sizes (1250 B: 1 Mbit/s = 100 units/s).
    pub rate_unit_bytes: u32,
    /// Largest lateness of a paced departure made up by sending faster
    /// afterwards (`PacingConfig::max_lag_ns`). A worker that sleeps when
    /// idle wakes up to a sleep (plus timer slack and, on a busy machine,
    /// the scheduler's delay) late: a bound below that costs the flows rate
    /// (at 500 us sleeps and a 100 us bound, 10 Mbit/s flows sent ~6).
    /// `mongate-dataplane run` sets 2 sleeps, at least 100 us (the triangle's
    /// 50 us sleeps keep the 100 us they always had).
    pub pacing_max_lag_ns: u64,
    /// Safety cap of a priced flow's controller = its planned aggregate
    /// rate x this (a flow whose weight the mapping floored is capped at
    /// its target itself). Well above 1: the controllers, not the cap, set
    /// the rates (docs/montra.md).
    pub cap_factor: f64,
    /// A controller's rate when its flow first gets a target, as a fraction
    /// of the target (1: start at PFO's rate, as the paper does).
    pub initial_fraction: f64,
    /// A flow a failover moves onto a detour gets its share of the spare
    /// capacity the plan left there, and at least this fraction of its
    /// target: its sessions keep a trickle through (their first packets
    /// cross within the ack gap plus a few ms, not a second at the floor
    /// rate), which a full detour's queue absorbs until the next plan.
    pub detour_min_fraction: f64,
    /// Whether a failover onto a detour shares the plan's spare there (with
    /// `detour_min_fraction`) and sends the moving flows' first packets at
    /// once. Off by default: a false alarm (`tests/hostile.rs`: forged
    /// traffic took a direct path down) then throttled legitimate traffic
    /// on a detour whose links had room the plan did not count
    /// (docs/montra.md).
    pub detour_share: bool,
    /// Rate of each per-peer best-effort queue, units of `rate_unit_bytes`
    /// per second (each departure charged its frame's length, as a flow's
    /// are): 100 = 1 Mbit/s at 1250 B (`[montra] best_effort_mbps`).
    pub best_effort_pps: f64,
    /// Packets queued per flow before drop-tail.
    pub queue_capacity: u32,
    /// MONtra controller tunables (`kappa` is replaced per plan when
    /// `ramp` > 0).
    pub controller: ControllerConfig,
    /// Kappa relative to the plan: kappa = `ramp` x the target of the
    /// heaviest flow here, so that flow climbs by this fraction of its
    /// target per second when nothing is lost, and a loss cuts a flow by
    /// `ramp x (1-q)/q` units/s at the loss budget q, whatever the plan's
    /// scale (an absolute kappa cut a 1 Mbit/s flow 10x harder than a 10
    /// Mbit/s one). The loop gain is then `ramp (1-q)/q` per second: 6 at
    /// 0.06 and q = 1 %, stable for feedback delays up to about 0.25 s
    /// (docs/montra.md). 0: `controller.kappa` as is.
    pub ramp: f64,
    /// Receiver ack policy.
    pub ack_policy: AckPolicy,
    /// Sender loss-detection tunables; `tracker.window` is the largest ring
    /// a flow's tracker may grow to (each is sized to its flow's cap:
    /// [`Settings::tracker_horizon_ns`]).
    pub tracker: TrackerConfig,
    /// How long a sent packet may stay outstanding (RTT, ack delay, loss
    /// detection), ns: a flow's tracker remembers its cap rate's packets
    /// (of 64 bytes at the smallest) over this span, at least 128 and at
    /// most `tracker.window`; grown when a plan raises the cap, never
    /// shrunk. A million slow flows then take ~1 KB of tracker each, not
    /// 36 KB.
    pub tracker_horizon_ns: u64,
    /// Classifier sizing.
    pub classifier: classify::Settings,
    /// Verify outer UDP checksums on receive.
    pub verify_udp_checksum: bool,
    /// Frames the private reserve (ack emission) holds at most.
    pub reserve_frames: usize,
    /// Seed of the pacers' random gaps.
    pub seed: u64,
    /// Seed of the probe nonces (the gateway application draws it from the
    /// kernel's random source at every start, so that an off-path host
    /// cannot predict them; tests fix it).
    pub probe_nonce_seed: u64,
    /// Resolution of the per-flow timers (ack deadlines, tail-loss
    /// detection), ns: a timer fires at most this late (the flow timer
    /// wheel's tick is the largest power of two at most this). Only flows
    /// with a deadline are touched, whatever the flow count.
    pub timer_ns: u64,
    /// Open loop: flows send at their planned rate and ignore missing acks
    /// (benchmarks against a sink that is not a gateway). Never in service.
    pub open_loop: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lan_port: 0,
            uplink_ports: Vec::new(),
            lan_mac: MacAddr([0x02, 0, 0, 0, 0, 0x01]),
            uplink_macs: Vec::new(),
            lan_next_hop_mac: MacAddr([0x02, 0, 0, 0, 0, 0xFE]),
            neighbours: Vec::new(),
            neighbour_hold_ns: 30_000_000_000,
            peer_routes: Vec::new(),
            detours: false,
            health: HealthPolicy::default(),
            rate_divisor: 1,
            workers: 1,
            worker: 0,
            handoff_first_port: u16::MAX,
            lan_address_v4: None,
            lan_address_v6: None,
            uplink_mtu: 1500,
            rate_unit_bytes: 1250,
            pacing_max_lag_ns: 100_000,
            cap_factor: 2.0,
            initial_fraction: 1.0,
            detour_min_fraction: 0.05,
            detour_share: false,
            best_effort_pps: 100.0,
            queue_capacity: 256,
            controller: ControllerConfig::default(),
            ramp: 0.06,
            ack_policy: AckPolicy::default(),
            tracker: TrackerConfig::default(),
            tracker_horizon_ns: 250_000_000,
            classifier: classify::Settings {
                max_sessions: 1 << 16,
                ..classify::Settings::default()
            },
            verify_udp_checksum: true,
            reserve_frames: 64,
            seed: 1,
            probe_nonce_seed: 0x6E6F_6E63_6573_6565,
            timer_ns: 1_000_000,
            open_loop: false,
        }
    }
}

/// A resolved way to one peer: which uplink, which of the peer's gateway
/// addresses, and the next hop's MAC on that uplink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerRoute {
    /// Index in `Config::uplinks`.
    pub uplink: usize,
    /// The peer gateway address (outer destination).
    pub gateway: IpAddr,
    /// Destination MAC of outer frames (the peer itself when on-link, else
    /// the uplink's next hop).
    pub dst_mac: MacAddr,
}

/// Why a [`Gateway`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Classifier construction (rules, plan).
    #[error(transparent)]
    Classifier(#[from] ClassifierError),
    /// Pacing table construction.
    #[error(transparent)]
    Pacing(#[from] PacingError),
    /// Flow timer wheel construction.
    #[error("flow timers: {0}")]
    Timers(#[from] WheelError),
    /// Two flow ids hash to the same wire id (rename one).
    #[error("flows `{0}` and `{1}` have the same wire flow id")]
    FlowIdCollision(String, String),
    /// More flows than [`classify::MAX_FLOWS`].
    #[error("too many flows (at most 16777216)")]
    TooMany,
}

/// Counters of a [`Gateway`] (plain; the worker counts drops by reason).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// LAN packets queued for pacing.
    pub enqueued: u64,
    /// Of which best effort.
    pub best_effort: u64,
    /// LAN packets refused: queue full.
    pub queue_full: u64,
    /// LAN packets with no peer owning their destination, or on a flow not starting here.
    pub no_route: u64,
    /// ICMP frag-needed / packet-too-big replies sent to the LAN.
    pub ptb_sent: u64,
    /// Oversized LAN packets dropped without an ICMP error (not eligible,
    /// IPv4 without DF, no LAN address configured).
    pub oversized_dropped: u64,
    /// LAN packets dropped: inner source outside the site's LAN prefixes.
    pub lan_source: u64,
    /// LAN packets dropped: their source address is learned with another
    /// MAC heard within the hold time.
    pub lan_mac_conflict: u64,
    /// Packets encapsulated and sent on an uplink (data, paced).
    pub sent: u64,
    /// WAN packets delivered to the LAN.
    pub delivered: u64,
    /// WAN packets re-encapsulated toward the next site (waypoint).
    pub forwarded: u64,
    /// WAN packets refused by decapsulation or validation (incl. wrong VNI).
    pub bad_overlay: u64,
    /// Of which: wrong VNI.
    pub wrong_vni: u64,
    /// WAN data packets whose sequence number is beyond what their sender
    /// could have reached (`montra::AckAggregator::admit`): dropped.
    pub seq_implausible: u64,
    /// WAN data packets of a flow this site is neither waypoint nor destination of.
    pub wan_no_route: u64,
    /// Ack messages sent.
    pub acks_sent: u64,
    /// Ack entries sent.
    pub ack_entries_sent: u64,
    /// Ack entries applied to a local flow's tracker.
    pub ack_entries_applied: u64,
    /// Ack entries naming no flow that starts here.
    pub ack_entries_unknown: u64,
    /// Ack entries (applied or relayed) from a peer the flow does not go
    /// to (`Gateway::ack_sender_ok`): ignored.
    pub ack_entries_wrong_peer: u64,
    /// Probes answered.
    pub probes_answered: u64,
    /// Probe echoes received (consumed).
    pub probe_echoes: u64,
    /// Ack emissions postponed because the frame reserve was empty.
    pub ack_no_frame: u64,
    /// Flows the per-flow timers ran for (taken from the timer wheel at
    /// their deadline: an ack due, a loss due, or a deadline that moved
    /// later): per deadline, not per flow and tick.
    pub timer_runs: u64,
    /// Encapsulation failures (no headroom; should not happen).
    pub encap_failed: u64,
    /// Probes sent on candidate paths.
    pub probes_sent: u64,
    /// Echoes naming no path of ours (or with absurd timestamps).
    pub probe_unknown: u64,
    /// Echoes answering no probe in flight: a wrong nonce, a probe long
    /// gone, or one answered already (a replay).
    pub probe_nonce_bad: u64,
    /// Probes postponed: the frame reserve was empty.
    pub probe_no_frame: u64,
    /// Active paths declared down by an ack gap (or an unanswered hop check).
    pub ack_gap_failovers: u64,
    /// Probes sent to check a hop whose flows going on past its peer got no
    /// ack for an ack gap (their acks come from further on).
    pub hop_checks: u64,
    /// Hop checks answered: the hop works, those flows' route is out
    /// further on (their controllers hold until their next ack).
    pub hop_checks_answered: u64,
    /// Control assignments applied.
    pub assigned: u64,
    /// Control assignments naming an unknown flow or path, or a path to
    /// another peer than the flow's next site (ignored).
    pub assign_bad: u64,
    /// Control probe commands refused: unknown path, count or gap out of range.
    pub probe_command_bad: u64,
    /// Control probe commands refused: every slot busy.
    pub probe_command_busy: u64,
    /// Probe outcomes or path events lost: their queue was full.
    pub control_queue_full: u64,
    /// Packets of other sites relayed here as a detour waypoint.
    pub detoured: u64,
    /// Flows a failover moved onto a detour at their share of the spare
    /// capacity the plan left on it (their rate cut to it).
    pub detour_shares: u64,
    /// Packets not sent for want of a session key with the peer (security required).
    pub no_session: u64,
    /// Sealed packets naming no key of ours (or sealed while security is off).
    pub auth_no_key: u64,
    /// AEAD opens attempted (at most one per received packet).
    pub auth_opens: u64,
    /// Sealed packets whose tag did not authenticate.
    pub auth_failed: u64,
    /// Duplicates, counters older than the replay window or beyond the limit.
    pub auth_replay: u64,
    /// Unsealed packets (not handshake messages) while security is required.
    pub auth_unsealed: u64,
    /// Packets sealed with an expired key.
    pub auth_expired: u64,
    /// Authenticated data refused by cryptokey routing.
    pub crypto_route: u64,
    /// Handshake messages over the rate limits (or the queue to the control full).
    pub handshake_limited: u64,
    /// Handshake messages addressed to another host (`not_ours`).
    pub handshake_not_ours: u64,
    /// Handshake messages queued for the control.
    pub handshakes_received: u64,
    /// Handshake messages of the control sent.
    pub handshakes_sent: u64,
    /// Handshake messages of the control refused (malformed, unknown path,
    /// queue full, no room).
    pub handshake_out_dropped: u64,
    /// Session keys installed.
    pub keys_installed: u64,
    /// Session keys refused (unknown peer).
    pub keys_refused: u64,
    /// Session keys revoked by the control.
    pub keys_revoked: u64,
    /// Session keys forgotten after `REJECT_AFTER_TIME`.
    pub keys_expired: u64,
    /// Responder keys confirmed by a first authenticated packet.
    pub keys_confirmed: u64,
    /// Paths that followed a peer to a new outer address.
    pub roamed: u64,
    /// LAN packets of a class another worker owns, handed to it.
    pub handed_off_lan: u64,
    /// LAN packets classified here onto a flow another worker paces,
    /// handed to it.
    pub handed_off_flow: u64,
    /// Overlay data packets of a flow another worker receives, handed to it.
    pub handed_off_wan: u64,
    /// Notes sent to other workers (ack entries, echoes, learned hosts).
    pub notes_sent: u64,
    /// Notes lost: the other worker's ring was full.
    pub notes_lost: u64,
    /// Notes received from other workers.
    pub notes_received: u64,
    /// Notes received that were malformed or for a flow not owned here.
    pub notes_bad: u64,
}

/// Where a flow stands relative to this site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Its route starts here: paced and controlled here.
    Origin,
    /// This site relays it.
    Waypoint,
    /// It ends here: delivered and acknowledged here.
    Destination,
    /// Not on its route.
    Elsewhere,
}

/// Sender state of a flow starting here.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    pub(crate) ctl: RateController,
    pub(crate) tracker: AckTracker,
    /// The plan's aggregate rate for this flow (this worker's share), pkt/s.
    pub(crate) target_pps: f64,
    /// Its route is out further on than its next hop (a hop check of the
    /// path to its next site was answered while its acks were silent): its
    /// losses are not fed to the controller, and its first ack restarts it
    /// from the plan ([`Gateway::restart_rate`]).
    pub(crate) route_out: bool,
}

/// Receiver state of a flow ending here.
#[derive(Clone, Debug)]
pub(crate) struct Receiver {
    pub(crate) agg: AckAggregator,
    pub(crate) received: u64,
    /// Where its pending ack is in its source's [`ack_emit::AckQueue`]
    /// ([`NO_ACK_SLOT`]: none, or stale: the queue checks).
    pub(crate) ack_slot: u32,
    /// The candidate (of the source's [`failover::PeerPaths`]) reversing
    /// the hop this flow's data last arrived by: its acks go back by it
    /// while that is fresh, whatever hop the source's other flows came by.
    pub(crate) ack_hop: Option<u16>,
    /// When this flow's data last arrived (by `ack_hop`).
    pub(crate) ack_hop_seen: Nanos,
}

/// [`Receiver::ack_slot`] of a flow without a pending ack.
pub(crate) const NO_ACK_SLOT: u32 = u32::MAX;

/// One configured flow as this site sees it.
#[derive(Clone, Debug)]
pub(crate) struct FlowState {
    pub(crate) wire_id: u32,
    pub(crate) role: Role,
    /// Peer index of the next site (origin, waypoint).
    pub(crate) next_peer: Option<usize>,
    /// Peer index of the route's first site (destination: where acks go).
    pub(crate) src_peer: Option<usize>,
    /// Peer index of the route's last site.
    pub(crate) dest_peer: Option<usize>,
    /// Candidate (of `next_peer`) the control assigned it, if any.
    pub(crate) path: Option<u16>,
    pub(crate) origin: Option<Origin>,
    pub(crate) receiver: Option<Receiver>,
    pub(crate) counters: FlowCounters,
    /// When the flow's entry in [`Gateway::flow_timers`] is due (the
    /// receiver's ack deadline or the sender's next loss deadline), ns;
    /// [`NO_TIMER`]: no entry.
    pub(crate) timer_at: Nanos,
}

/// [`FlowState::timer_at`] of a flow without a timer entry.
pub(crate) const NO_TIMER: Nanos = Nanos::MAX;

/// The overlay gateway stage of one worker. See the module documentation.
pub struct Gateway {
    pub(crate) cfg: Config,
    pub(crate) settings: Settings,
    pub(crate) classifier: Classifier,
    pub(crate) flows: Vec<FlowState>,
    /// Wire flow id -> flow index.
    pub(crate) wire_ids: wire_ids::WireIds,
    /// Per `Config::peers` index: candidate paths and the active one.
    pub(crate) peers: Vec<PeerPaths>,
    pub(crate) peer_prefixes: Vec<Vec<Prefix>>,
    pub(crate) uplink_ports: Vec<u16>,
    /// Queues `0..flows` (planned flows) then one best-effort queue per peer.
    pub(crate) pacing: PacingTable,
    pub(crate) be_seq: Vec<u64>,
    /// Ack entries waiting to be sent, per peer (at most one per flow).
    pub(crate) pending_acks: Vec<ack_emit::AckQueue>,
    pub(crate) reserve: Vec<u64>,
    pub(crate) oam_seq: u64,
    /// One entry per flow with a deadline (see [`Gateway::rearm`]).
    pub(crate) flow_timers: TimerWheel,
    /// Flows [`Gateway::timers`] takes from the wheel at once.
    pub(crate) due: Vec<u32>,
    /// When the path timers last ran (stall compensation).
    pub(crate) last_path_check: Nanos,
    /// Probe commands, outcomes and events of the control process.
    pub(crate) control_paths: ControlPaths,
    /// Output buffer of ICMP replies (the offending packet is read from the frame).
    pub(crate) scratch: Box<[u8; 1280]>,
    /// LAN hosts learned from their traffic.
    pub(crate) learned: NeighbourTable,
    /// Session keys, handshake queues and limits.
    pub(crate) sec: secure::SecureState,
    /// Notes to and from the gateway's other workers (`None`: one worker).
    pub(crate) notes: Option<crate::worker::handoff::Notes>,
    /// This worker's share of the plan's spare capacity of each detour, packets/s
    /// ([`PlanTable::detour_mbps`], `p * peers + v`; infinite: not known).
    pub(crate) detour_pps: Vec<f64>,
    /// Planned relays (another site's flow going on from here) that
    /// `process` encapsulated, held for the next `poll` to send among this
    /// site's paced departures at random places ([`RELAY_HOLD`] at most;
    /// docs/overlay.md, "Relays among the departures").
    pub(crate) relays: Vec<crate::engine::Packet>,
    /// Draws the relays' places.
    pub(crate) relay_rng: crate::sys::rng::SplitMix64,
    pub(crate) stats: Stats,
}

/// Relays a stage holds for its next `poll` at most; more go out at once.
pub const RELAY_HOLD: usize = 256;

impl Gateway {
    /// Builds the stage for `cfg` (its plan, if any, is applied; otherwise
    /// nothing is admitted until [`Gateway::apply_plan`]). `reserve` holds
    /// frames taken from the worker's pool for ack emission (see
    /// [`Gateway::replenish`]).
    pub fn new(
        cfg: &Config,
        settings: Settings,
        reserve: Vec<u64>,
        now: Nanos,
    ) -> Result<Self, GatewayError> {
        let mut settings = settings;
        // Found by binary search (a miss in the learned table, per packet).
        settings.neighbours.sort_by_key(|n| n.0);
        settings.neighbours.dedup_by_key(|n| n.0);
        // The sender's tail timeout must cover the receiver's ack delay as
        // this stage implements it: the policy's delay plus timer lateness.
        settings.tracker.max_ack_delay_ns = settings.tracker.max_ack_delay_ns.max(
            settings
                .ack_policy
                .max_delay_ns
                .saturating_add(2 * settings.timer_ns),
        );
        let plan = cfg.plan.clone().unwrap_or_default();
        settings.workers = settings.workers.max(1);
        settings.classifier.workers = settings.workers;
        settings.classifier.worker = settings.worker;
        let classifier = Classifier::new(cfg, &plan, settings.classifier)?;
        let nflows = cfg.flows.len();
        let npeers = cfg.peers.len();
        if nflows > classify::MAX_FLOWS {
            return Err(GatewayError::TooMany);
        }
        let queues = u32::try_from(nflows + npeers).map_err(|_| GatewayError::TooMany)?;
        let uplink_ports = uplink_ports(cfg, &settings);
        let peers = candidate_paths(cfg, &settings, &uplink_ports, now);
        let (flows, wire_ids) = flow_states(cfg, &settings)?;
        let pacing = PacingTable::new(
            PacingConfig {
                flows: queues.max(1),
                queue_capacity: settings.queue_capacity.max(1),
                seed: settings.seed,
                unit_bytes: settings.rate_unit_bytes,
                max_lag_ns: settings.pacing_max_lag_ns,
                ..PacingConfig::default()
            },
            now,
        )?;
        let pending_acks = (0..npeers)
            .map(|p| {
                let n = flows
                    .iter()
                    .filter(|f| f.role == Role::Destination && f.src_peer == Some(p))
                    .count();
                ack_emit::AckQueue::with_capacity(n)
            })
            .collect();
        let reserve_cap = settings.reserve_frames.max(reserve.len());
        let mut res = Vec::with_capacity(reserve_cap);
        res.extend_from_slice(&reserve);
        let route_peers = cfg
            .flows
            .iter()
            .map(|f| {
                f.route
                    .iter()
                    .filter_map(|s| cfg.peers.iter().position(|p| p.name == *s))
                    .filter_map(|i| u16::try_from(i).ok())
                    .collect()
            })
            .collect();
        let sec = secure::SecureState::new(
            cfg.security.required(),
            npeers,
            route_peers,
            now,
            usize::from(settings.worker),
        );
        let mut g = Self {
            cfg: cfg.clone(),
            sec,
            classifier,
            flows,
            wire_ids,
            peers,
            peer_prefixes: cfg.peers.iter().map(|p| p.prefixes.clone()).collect(),
            uplink_ports,
            pacing,
            be_seq: vec![0; npeers],
            pending_acks,
            reserve: res,
            oam_seq: 0,
            flow_timers: TimerWheel::new(nflows, timer_shift(settings.timer_ns), now)?,
            due: vec![0; DUE_BATCH],
            last_path_check: 0,
            control_paths: ControlPaths::new(settings.probe_nonce_seed),
            scratch: Box::new([0u8; 1280]),
            learned: NeighbourTable::new(
                settings.classifier.hash_seed.rotate_left(17) ^ 0x6E65_6967_6862_6F72,
                settings.neighbour_hold_ns,
            ),
            notes: None,
            detour_pps: vec![f64::INFINITY; npeers * npeers],
            relays: Vec::with_capacity(RELAY_HOLD),
            relay_rng: crate::sys::rng::SplitMix64::new(settings.seed ^ 0x7265_6C61_7973_2121),
            stats: Stats::default(),
            settings,
        };
        // Static neighbours are held like learned ones: another MAC cannot
        // claim their addresses while they talk.
        for i in 0..g.settings.neighbours.len() {
            let (ip, mac) = g.settings.neighbours[i];
            if g.is_local(ip) {
                g.learned.learn(ip, mac, now);
            }
        }
        for p in 0..npeers {
            if !g.peers[p].paths.is_empty() {
                g.pacing.set_rate(
                    QueueId::best_effort(nflows, p).0,
                    g.settings.best_effort_pps,
                    now,
                );
            }
        }
        g.apply_rates(&plan, now, true);
        Ok(g)
    }

    /// Applies a new plan (a checked [`PlanTable`] of this configuration, as
    /// the worker's plan assembler holds it) without resetting state:
    /// admission limits (the classifier), controller caps and weights (rates
    /// are kept, only clamped to the new caps), pacer rates. Plans older than
    /// the one in force are ignored (`false`).
    pub fn apply_plan(&mut self, plan: &PlanTable, now: Nanos) -> bool {
        if !self.classifier.set_plan(plan) {
            return false;
        }
        self.apply_rates(plan, now, false);
        true
    }

    /// As [`Gateway::apply_plan`], whatever the plan's epoch: for the plan
    /// the worker's channel switched to (its assembler decided the order;
    /// a new control session may start a new epoch space).
    pub fn switch_plan(&mut self, plan: &PlanTable, now: Nanos) {
        self.classifier.replace_plan(plan);
        self.apply_rates(plan, now, false);
    }

    /// Applies a reload's live changes (checked by
    /// [`crate::config::reload_changes`] against this gateway's
    /// configuration): classifier settings in place, and the file's new plan
    /// if there is one (as [`Gateway::apply_plan`]: nothing is reset).
    /// `new_cfg` replaces the configuration the gateway reports.
    pub fn apply_live(&mut self, live: &crate::config::LiveChanges, new_cfg: &Config, now: Nanos) {
        self.classifier.apply_live(
            live.idle_timeout_ns,
            live.host_caps.as_deref(),
            live.overflow.as_deref(),
        );
        if let Some(p) = &live.plan {
            self.apply_plan(p, now);
        }
        self.cfg.site = new_cfg.site.clone();
        self.cfg.classes = new_cfg.classes.clone();
        self.cfg.plan = new_cfg.plan.clone();
        self.cfg.metrics = new_cfg.metrics.clone();
    }

    /// Packets per second per Mbit/s at the configured mean packet size.
    fn pps_per_mbps(&self) -> f64 {
        1e6 / (8.0 * f64::from(self.settings.rate_unit_bytes.max(1)))
    }

    /// Aggregate (target pps, weight in pps units) of flow `fi` under `plan`:
    /// the plan's per-session values times the class's admitted sessions.
    fn flow_targets(&self, plan: &PlanTable, fi: usize) -> (f64, f64) {
        let n = f64::from(
            self.classifier
                .flow_class(fi)
                .map_or(0, |c| plan.sessions_of(c)),
        );
        let k = self.pps_per_mbps() / f64::from(self.settings.rate_divisor.max(1));
        let (rate_mbps, weight) = plan.flow(fi);
        (n * rate_mbps * k, n * weight * k)
    }

    /// Controller targets and pacer rates of every flow starting here under
    /// `plan`. Rules (docs/montra.md): the cap is the target x `cap_factor`,
    /// or the target itself for a floored flow; a flow getting a target for
    /// the first time (or again after none) starts at `initial_fraction` x
    /// the target; a flow whose target changes keeps its rate relative to
    /// the target (a controller running 5 % under a target it cannot reach
    /// stays 5 % under the new one, and a class whose admitted sessions
    /// double doubles its rate at once instead of ramping).
    fn apply_rates(&mut self, plan: &PlanTable, now: Nanos, fresh: bool) {
        // The detours' spare capacity, this worker's share of it, in place.
        let k = self.pps_per_mbps() / f64::from(self.settings.rate_divisor.max(1));
        let n = self.peers.len();
        for (i, d) in self.detour_pps.iter_mut().enumerate() {
            *d = plan.detour(i / n.max(1), i % n.max(1)) * k;
        }
        let (heaviest_target, max_weight) = (0..self.flows.len())
            .filter(|&fi| self.flows[fi].role == Role::Origin && self.owns_flow(fi))
            .map(|fi| self.flow_targets(plan, fi))
            .fold((0.0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
        // A plan that moves some flow's weight and no flow's target: the
        // control re-sending the plan in force with the loss budget kept on
        // a link that carries less than planned (docs/control-loop.md). It
        // arms no resume (below): the link that holds the flows under their
        // targets has not changed, and a jump to the target there is a burst
        // of loss. Any other plan arms them as before (one that changes a
        // target, and so a re-plan after a repair, also for the flows whose
        // target it keeps).
        let (mut targets_moved, mut weights_moved) = (false, false);
        for fi in 0..self.flows.len() {
            if self.flows[fi].role != Role::Origin || !self.owns_flow(fi) {
                continue;
            }
            if let Some(o) = self.flows[fi].origin.as_ref() {
                let (t, w) = self.flow_targets(plan, fi);
                targets_moved |= t != o.target_pps;
                weights_moved |= w != o.ctl.weight();
            }
        }
        let reweight_only = weights_moved && !targets_moved;
        let mut cc = self.settings.controller;
        if self.settings.ramp > 0.0 && heaviest_target > 0.0 {
            cc.kappa = self.settings.ramp * heaviest_target;
        }
        for fi in 0..self.flows.len() {
            // Another worker's flow has no controller here (its class's
            // packets never queue here).
            if self.flows[fi].role != Role::Origin || !self.owns_flow(fi) {
                continue;
            }
            let (target, weight) = self.flow_targets(plan, fi);
            let cap_pps = if plan.is_floored(fi) {
                target
            } else {
                target * self.settings.cap_factor.max(1.0)
            };
            let fp = ControllerTarget {
                weight,
                max_weight,
                cap_pps,
                target_pps: target,
            };
            let x0 = target * self.settings.initial_fraction;
            let tc = TrackerConfig {
                window: window_for(
                    cap_pps,
                    self.settings.rate_unit_bytes,
                    MIN_FRAME_BYTES,
                    self.settings.tracker_horizon_ns,
                    self.settings.tracker.window,
                ),
                ..self.settings.tracker
            };
            let flow = &mut self.flows[fi];
            let rate = match (&mut flow.origin, fresh) {
                (Some(o), false) => {
                    let (before, old) = (o.ctl.rate(), o.target_pps);
                    o.ctl.set_target(fp);
                    o.ctl.set_kappa(cc.kappa, max_weight);
                    if target != old && target > 0.0 {
                        o.ctl.set_rate(if old > 0.0 {
                            before * (target / old)
                        } else {
                            x0
                        });
                    }
                    // A flow under its new target climbs to it at once when
                    // its feedback is clean (RateController::arm_resume);
                    // not after a reweight (above).
                    if !reweight_only {
                        o.ctl.arm_resume(x0, now.saturating_add(RESUME_WINDOW_NS));
                    }
                    o.target_pps = target;
                    o.tracker.ensure_window(tc.window);
                    o.ctl.rate()
                }
                (slot, _) => {
                    let o = slot.insert(Origin {
                        ctl: RateController::new(cc, fp, x0, now),
                        tracker: AckTracker::new(tc),
                        target_pps: target,
                        route_out: false,
                    });
                    o.ctl.rate()
                }
            };
            self.pacing.set_rate(QueueId::flow(fi).0, rate, now);
            self.rearm(fi);
        }
    }

    /// Raises flow `fi`'s controller to its target x `initial_fraction` if
    /// it runs below (a flow moving to another path: docs/montra.md).
    pub(crate) fn restart_rate(&mut self, fi: usize, now: Nanos) {
        let start = self.settings.initial_fraction;
        let Some(o) = self.flows.get_mut(fi).and_then(|f| f.origin.as_mut()) else {
            return;
        };
        let floor = o.target_pps * start;
        if o.ctl.rate() < floor {
            o.ctl.set_rate(floor);
            let rate = o.ctl.rate();
            self.pacing.set_rate(QueueId::flow(fi).0, rate, now);
        }
    }

    /// Refills the private frame reserve from the worker's pool (the reserve
    /// drains as acks go out; consumed OAM frames flow back into it). Call
    /// it once per loop iteration.
    pub fn replenish(&mut self, pool: &mut FramePool) {
        while self.reserve.len() < self.reserve.capacity() {
            match pool.alloc() {
                Some(f) => self.reserve.push(f),
                None => break,
            }
        }
    }

    /// Hands every frame the stage holds (pacing queues, reserve) to `free`
    /// (shutdown; leak checks in tests). Returns how many.
    pub fn drain_frames(&mut self, mut free: impl FnMut(u64)) -> usize {
        let mut n = 0;
        for q in 0..self.pacing.flows() {
            n += self.pacing.drain(q, |p| free(p.addr)) as usize;
        }
        for f in self.reserve.drain(..) {
            free(f);
            n += 1;
        }
        for p in self.relays.drain(..) {
            free(p.addr);
            n += 1;
        }
        n
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// The classifier (admission counters).
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }
    /// The pacing table (queue counters).
    pub fn pacing(&self) -> &PacingTable {
        &self.pacing
    }
    /// Compactions of the gateway's two timer wheels (the pacer's and the
    /// flow timers'): each a pause of O(flows) in one poll, expected never
    /// in steady state (docs/overlay.md).
    pub fn timer_compactions(&self) -> u64 {
        self.flow_timers.compactions() + self.pacing.wheel_compactions()
    }
    /// Frames in the private reserve.
    pub fn reserve_len(&self) -> usize {
        self.reserve.len()
    }
    /// Role of the flow with config id `id`.
    pub fn role(&self, id: &str) -> Option<Role> {
        self.cfg.flow_index(id).map(|i| self.flows[i].role)
    }
    /// Current MONtra rate (packets/s) of a flow starting here.
    pub fn flow_rate(&self, id: &str) -> Option<f64> {
        let o = self.flows.get(self.cfg.flow_index(id)?)?.origin.as_ref()?;
        Some(o.ctl.rate())
    }
    /// Whether a flow starting here has a resume armed (a new plan lets it
    /// climb to its target at once on clean feedback:
    /// [`RateController::arm_resume`]).
    pub fn flow_resume_armed(&self, id: &str) -> Option<bool> {
        let o = self.flows.get(self.cfg.flow_index(id)?)?.origin.as_ref()?;
        Some(o.ctl.resume_armed())
    }
    /// Sender-side ack accounting of a flow starting here.
    pub fn flow_tracker(&self, id: &str) -> Option<TrackerStats> {
        let o = self.flows.get(self.cfg.flow_index(id)?)?.origin.as_ref()?;
        Some(o.tracker.stats())
    }
    /// Packets received (destination side) of a flow ending here.
    pub fn flow_received(&self, id: &str) -> Option<u64> {
        let r = self
            .flows
            .get(self.cfg.flow_index(id)?)?
            .receiver
            .as_ref()?;
        Some(r.received)
    }

    /// Counters of flow `fi` (`Config::flows` index) at `now`: its packet
    /// counts, the plan epoch, and for a flow starting here its MONtra rate,
    /// ack accounting and planned rate. No allocation.
    pub fn flow_counters(&self, fi: usize, now: Nanos) -> Option<FlowCounters> {
        let f = self.flows.get(fi)?;
        let mut c = f.counters;
        if let Some(o) = &f.origin {
            let t = o.tracker.stats();
            c.rate_pps = o.ctl.rate();
            c.acked = t.acked;
            c.lost = t.lost;
            c.spurious = t.spurious;
            c.tail_lost = t.tail_lost;
            c.target_pps = o.target_pps;
        }
        c.epoch = self.plan_epoch();
        c.updated_ns = now;
        Some(c)
    }
    /// Whether this worker runs flow `fi` (it owns the flow's class: see
    /// [`Settings::workers`]).
    pub fn runs_flow(&self, fi: usize) -> bool {
        fi < self.flows.len() && self.owns_flow(fi)
    }
    /// Whether flow `fi` starts here (it has a MONtra controller).
    pub fn flow_starts_here(&self, fi: usize) -> bool {
        self.flows.get(fi).is_some_and(|f| f.origin.is_some())
    }
    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
    /// The configuration this stage runs.
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// The plan epoch in force.
    pub fn plan_epoch(&self) -> u64 {
        self.classifier.epoch()
    }
    /// LAN hosts learned from their traffic.
    pub fn learned_neighbours(&self) -> impl Iterator<Item = (IpAddr, MacAddr)> + '_ {
        self.learned.iter()
    }

    /// Counters of the learned LAN hosts.
    pub fn neighbour_stats(&self) -> &NeighbourStats {
        self.learned.stats()
    }

    /// LAN hosts held in the learned neighbour table.
    pub fn neighbour_count(&self) -> usize {
        self.learned.len()
    }

    /// Records that `mac` sent from LAN address `ip` at `now` (see
    /// [`NeighbourTable::learn`]).
    #[inline]
    pub(crate) fn learn(&mut self, ip: IpAddr, mac: MacAddr, now: Nanos) -> Learn {
        self.learned.learn(ip, mac, now)
    }

    /// The MAC to deliver an inner packet for `dst` to: learned, static,
    /// else the LAN next hop.
    #[inline]
    pub(crate) fn lan_mac_of(&self, dst: IpAddr) -> MacAddr {
        if let Some(m) = self.learned.lookup(dst) {
            return m;
        }
        let n = &self.settings.neighbours;
        n.binary_search_by_key(&dst, |x| x.0)
            .ok()
            .and_then(|i| n.get(i))
            .map_or(self.settings.lan_next_hop_mac, |x| x.1)
    }

    /// Flow index of a wire flow id.
    #[inline]
    pub(crate) fn flow_of_wire(&self, id: u32) -> Option<usize> {
        self.wire_ids.get(id)
    }

    /// Peer index owning `addr` (linear over the peers' prefixes).
    #[inline]
    pub(crate) fn peer_of(&self, addr: IpAddr) -> Option<usize> {
        self.peer_prefixes
            .iter()
            .position(|ps| ps.iter().any(|p| p.contains(addr)))
    }

    /// True when `addr` is in this site's LAN prefixes.
    #[inline]
    pub(crate) fn is_local(&self, addr: IpAddr) -> bool {
        self.cfg.site.lan_prefixes.iter().any(|p| p.contains(addr))
    }

    /// Whether `port` is one of the uplinks.
    #[inline]
    fn is_uplink(&self, port: u16) -> bool {
        self.uplink_ports.contains(&port)
    }

    /// Starts loading what an ack or a timer of flow `fi` reads of its
    /// record: the route fields and the sender's state (not the receiver's,
    /// which an origin never reads, nor the counters, which neither
    /// touches; the record is 12 cache lines). The first pass over a batch
    /// of ack entries or due timers, whose flows are as many cache misses
    /// with many flows: each line asked for and not read holds a fill
    /// buffer the batch's other misses wait for.
    #[inline]
    pub(crate) fn prefetch_origin(&self, fi: usize) {
        if let Some(f) = self.flows.get(fi) {
            Self::prefetch_route_fields(f);
            crate::sys::prefetch_lines(&raw const f.origin);
        }
    }

    /// As [`Self::prefetch_origin`], for a departure: also the line of the
    /// counters it counts in (`tx_packets`, `tx_bytes`).
    #[inline]
    pub(crate) fn prefetch_departure(&self, fi: usize) {
        if let Some(f) = self.flows.get(fi) {
            Self::prefetch_route_fields(f);
            crate::sys::prefetch_lines(&raw const f.origin);
            crate::sys::prefetch_read((&raw const f.counters.tx_packets).cast::<u8>());
            crate::sys::prefetch_read((&raw const f.counters.tx_bytes).cast::<u8>());
        }
    }

    /// As [`Self::prefetch_origin`], for an arrival: the receiver's state
    /// instead of the sender's, and the counters (a delivery counts in
    /// several of them).
    #[inline]
    pub(crate) fn prefetch_receiver(&self, fi: usize) {
        if let Some(f) = self.flows.get(fi) {
            Self::prefetch_route_fields(f);
            crate::sys::prefetch_lines(&raw const f.receiver);
            crate::sys::prefetch_lines(&raw const f.counters);
        }
    }

    /// The small fields of a flow's record.
    #[inline]
    fn prefetch_route_fields(f: &FlowState) {
        use crate::sys::prefetch_read;
        prefetch_read((&raw const f.wire_id).cast::<u8>());
        prefetch_read((&raw const f.role).cast::<u8>());
        prefetch_read((&raw const f.next_peer).cast::<u8>());
        prefetch_read((&raw const f.src_peer).cast::<u8>());
        prefetch_read((&raw const f.dest_peer).cast::<u8>());
        prefetch_read((&raw const f.path).cast::<u8>());
        prefetch_read((&raw const f.timer_at).cast::<u8>());
    }

    /// Starts loading what the LAN side reads of flow `fi` before its
    /// enqueue (role, next peer, assigned path): a hint for batches.
    #[inline]
    pub(crate) fn prefetch_route(&self, fi: usize) {
        if let Some(f) = self.flows.get(fi) {
            crate::sys::prefetch_read((&raw const f.role).cast::<u8>());
            crate::sys::prefetch_read((&raw const f.next_peer).cast::<u8>());
            crate::sys::prefetch_read((&raw const f.path).cast::<u8>());
        }
    }

    /// Puts flow `fi`'s timer entry at its current deadline: its receiver's
    /// ack deadline, or its sender's next loss deadline; none without one.
    /// Call it after anything that may move the deadline earlier or create
    /// one (an arrival, an ack, a send onto an empty tracker); a deadline
    /// that moved later needs no call (the entry fires early, finds nothing
    /// due and is re-armed). O(1), no allocation.
    #[inline]
    pub(crate) fn rearm(&mut self, fi: usize) {
        let Some(f) = self.flows.get_mut(fi) else {
            return;
        };
        let at = if let Some(r) = &f.receiver {
            r.agg.next_deadline_ns()
        } else if let Some(o) = &f.origin {
            o.tracker.next_deadline_ns()
        } else {
            None
        }
        .unwrap_or(NO_TIMER);
        if at == f.timer_at {
            return;
        }
        f.timer_at = at;
        // fi < flows.len() <= u16::MAX + 1 (checked in `new`): fits u32.
        let id = u32::try_from(fi).unwrap_or(u32::MAX);
        if at == NO_TIMER {
            self.flow_timers.cancel(id);
        } else {
            self.flow_timers.schedule(id, at);
        }
    }

    /// Timers: ack deadlines (destination) and tail losses (origin) of the
    /// flows whose deadline has come ([`Gateway::flow_timers`]: the cost is
    /// per flow due, not per flow).
    fn timers(&mut self, now: Nanos) {
        let mut due = core::mem::take(&mut self.due);
        // Every flow re-armed here is due after `now` (its deadline is
        // exact), so a poll returns each flow at most once; the bound is
        // for robustness only.
        for _ in 0..=self.flows.len() / DUE_BATCH + 1 {
            let n = self.flow_timers.poll(now, &mut due);
            if n > 1 {
                // At many flows each due flow's record is cold: its role's
                // line first, then from it the lines the role reads.
                for &id in &due[..n] {
                    if let Some(f) = self.flows.get(id as usize) {
                        crate::sys::prefetch_read((&raw const f.role).cast::<u8>());
                    }
                }
                for &id in &due[..n] {
                    let fi = id as usize;
                    match self.flows.get(fi).map(|f| f.role) {
                        Some(Role::Origin) => self.prefetch_origin(fi),
                        Some(Role::Destination) => self.prefetch_receiver(fi),
                        _ => {}
                    }
                }
            }
            for &id in &due[..n] {
                let fi = id as usize;
                let Some(f) = self.flows.get_mut(fi) else {
                    continue;
                };
                f.timer_at = NO_TIMER;
                self.stats.timer_runs += 1;
                if let Some(r) = f.receiver.as_mut() {
                    if let Some(info) = r.agg.poll(now) {
                        self.queue_ack(fi, &info);
                    }
                } else if let Some(o) = f.origin.as_mut() {
                    let lost = o.tracker.poll(now);
                    if lost > 0 && !self.settings.open_loop && !o.route_out {
                        let rate = o.ctl.on_losses(lost);
                        self.pacing.set_rate(QueueId::flow(fi).0, rate, now);
                    }
                }
                self.rearm(fi);
            }
            if n < due.len() {
                break;
            }
        }
        self.due = due;
    }
}

/// Flows taken from the timer wheel per poll of it.
const DUE_BATCH: usize = 256;

/// The flow timer wheel's tick shift: the largest power of two at most
/// `timer_ns` (at least 1 ns, at most the wheel's limit).
fn timer_shift(timer_ns: u64) -> u32 {
    (63 - timer_ns.max(1).leading_zeros()).min(40)
}

impl Stage for Gateway {
    fn maintain(&mut self, pool: &mut FramePool) {
        self.replenish(pool);
    }

    fn process(&mut self, now: Nanos, arena: &mut Arena, batch: &mut Batch) {
        let lan = self.settings.lan_port;
        // First pass: each LAN packet is parsed and its session table line
        // starts loading, all of the batch's together (1 M sessions fit no
        // cache: one miss per packet, overlapped instead of in series); the
        // second pass classifies from the parsed headers (a packet that did
        // not parse is parsed again there for its drop reason).
        let mut pre = [None::<classify::inner::Inner>; crate::engine::BATCH_SIZE];
        // Overlay arrivals: their flow ids (read where our frames carry
        // them), whose wire-id slots start loading here, then their flows'
        // state (receiver, counters, timer entry) below: at a million flows
        // each was a cache miss in series, per packet.
        let mut wan_ids = [None::<u32>; crate::engine::BATCH_SIZE];
        if batch.len() > 1 {
            for (k, p) in batch.as_slice().iter().enumerate() {
                if p.verdict != Verdict::Pending {
                    continue;
                }
                let Some(frame) = arena.packet(p) else {
                    continue;
                };
                if p.port == lan {
                    if let Ok(i) = classify::inner::parse(frame) {
                        self.classifier.prefetch(&i);
                        if let Some(slot) = pre.get_mut(k) {
                            *slot = Some(i);
                        }
                    }
                } else if let Some(id) = crate::wire::overlay::peek_flow_id(frame) {
                    self.wire_ids.prefetch(id);
                    if let Some(slot) = wan_ids.get_mut(k) {
                        *slot = Some(id);
                    }
                }
            }
            for id in wan_ids.iter().take(batch.len()).flatten() {
                if let Some(fi) = self.flow_of_wire(*id) {
                    self.prefetch_receiver(fi);
                    self.flow_timers
                        .prefetch(u32::try_from(fi).unwrap_or(u32::MAX));
                }
            }
        }
        // Second pass: each stored session's flow, read without changing
        // anything (its line was prefetched above), starts loading the
        // flow's route fields and pacing queue, so that the enqueues below
        // do not miss one after the other (at a million flows, five cold
        // lines per packet).
        if batch.len() > 1 {
            for i in pre.iter().take(batch.len()).flatten() {
                if let Some(f) = self.classifier.session_flow(i) {
                    self.classifier.prefetch_flow(f);
                    self.prefetch_route(f as usize);
                    self.pacing.prefetch_enqueue(f);
                }
            }
        }
        for (k, p) in batch.as_mut_slice().iter_mut().enumerate() {
            if p.verdict != Verdict::Pending {
                continue;
            }
            if p.port == lan {
                self.lan_packet(now, arena, p, pre.get(k).copied().flatten());
            } else if self.is_uplink(p.port) {
                self.wan_packet(now, arena, p);
            } else {
                p.verdict = Verdict::Drop(crate::engine::DropReason::Unsupported);
            }
        }
        if self.notes.is_some() {
            self.flush_notes();
        }
    }

    fn poll(&mut self, now: Nanos, arena: &mut Arena, out: &mut Batch) {
        if self.notes.is_some() {
            self.drain_notes(now);
        }
        self.timers(now);
        self.path_timers(now, arena, out);
        if self.sec.required {
            self.emit_handshakes(now, arena, out);
        }
        self.emit_acks(now, arena, out);
        self.departures(now, arena, out);
        if self.notes.is_some() {
            self.flush_notes();
        }
    }
}

/// The port index of each uplink (from the settings, else `1 + i`).
fn uplink_ports(cfg: &Config, settings: &Settings) -> Vec<u16> {
    (0..cfg.uplinks.len())
        .map(|i| {
            settings
                .uplink_ports
                .get(i)
                .copied()
                .unwrap_or_else(|| u16::try_from(i + 1).unwrap_or(u16::MAX))
        })
        .collect()
}

/// Every peer's candidate paths, all up at `now`: the direct ones (each
/// resolved route, else the first uplink and gateway address of the same
/// family),
/// then, with `detours`, every other peer's direct paths as waypoints. The
/// first is active.
fn candidate_paths(
    cfg: &Config,
    settings: &Settings,
    uplink_ports: &[u16],
    now: Nanos,
) -> Vec<PeerPaths> {
    let mut peers: Vec<PeerPaths> = cfg
        .peers
        .iter()
        .enumerate()
        .map(|(pi, p)| {
            // Routes resolved, none for this peer (a site that is not a
            // neighbour on emulated point-to-point links): no direct path.
            // A made-up one sent its packets, probes and handshakes to the
            // neighbour on the first uplink, where nobody could open them
            // (on Abilene 800 `no_session` drops per second per gateway,
            // and the initiations spent the sender's handshake budget).
            let direct: Vec<PeerPath> = match settings.peer_routes.get(pi) {
                Some(routes) => routes
                    .iter()
                    .filter_map(|r| routed_path(cfg, settings, uplink_ports, &p.gateways, r))
                    .collect(),
                None if settings.peer_routes.is_empty() => {
                    peer_path(cfg, settings, uplink_ports, &p.gateways)
                        .into_iter()
                        .collect()
                }
                None => Vec::new(),
            };
            PeerPaths {
                active: (!direct.is_empty()).then_some(0),
                paths: direct,
                ..PeerPaths::default()
            }
        })
        .collect();
    if settings.detours {
        let directs: Vec<Vec<PeerPath>> = peers.iter().map(|p| p.paths.clone()).collect();
        for (pi, pp) in peers.iter_mut().enumerate() {
            for (wi, wpaths) in directs.iter().enumerate() {
                if wi == pi {
                    continue;
                }
                for wp in wpaths {
                    let mut d = wp.clone();
                    d.kind = PathKind::Via(wi);
                    pp.paths.push(d);
                }
            }
            if pp.active.is_none() && !pp.paths.is_empty() {
                pp.active = Some(0);
            }
        }
    }
    for pp in &mut peers {
        for p in &mut pp.paths {
            p.health = PathHealth {
                up: true,
                last_echo: now,
                up_since: now,
                ..PathHealth::default()
            };
        }
    }
    peers
}

/// Wire flow id -> flow index.
type WireIds = wire_ids::WireIds;

/// Each configured flow's state at this site (its role on its route, next,
/// source and destination peers, a receiver where it ends here) and the
/// sorted table of wire flow ids; two flows whose ids hash alike are an
/// error.
fn flow_states(
    cfg: &Config,
    settings: &Settings,
) -> Result<(Vec<FlowState>, WireIds), GatewayError> {
    let nflows = cfg.flows.len();
    let peer_index = |name: &str| cfg.peers.iter().position(|p| p.name == name);
    let me = cfg.site.name.as_str();
    let mut flows = Vec::with_capacity(nflows);
    let mut wire_ids: Vec<(u32, u32)> = Vec::with_capacity(nflows);
    for (fi, f) in cfg.flows.iter().enumerate() {
        let pos = f.route.iter().position(|s| s == me);
        let last = f.route.len().saturating_sub(1);
        let role = match pos {
            Some(0) => Role::Origin,
            Some(i) if i == last => Role::Destination,
            Some(_) => Role::Waypoint,
            None => Role::Elsewhere,
        };
        let next_peer = pos
            .and_then(|i| f.route.get(i + 1))
            .and_then(|s| peer_index(s));
        let src_peer = f.route.first().and_then(|s| peer_index(s));
        let dest_peer = f.route.last().and_then(|s| peer_index(s));
        let receiver = (role == Role::Destination).then(|| Receiver {
            agg: AckAggregator::new(settings.ack_policy),
            received: 0,
            ack_slot: NO_ACK_SLOT,
            ack_hop: None,
            ack_hop_seen: 0,
        });
        let id = wire_flow_id(&f.id);
        let idx = u32::try_from(fi).map_err(|_| GatewayError::TooMany)?;
        wire_ids.push((id, idx));
        flows.push(FlowState {
            wire_id: id,
            role,
            next_peer,
            src_peer,
            dest_peer,
            path: None,
            origin: None,
            receiver,
            counters: FlowCounters::default(),
            timer_at: NO_TIMER,
        });
    }
    // Sorted by (wire id, flow index): a collision is two neighbours
    // (found in O(n log n); a search per flow took seconds at 65 k flows).
    wire_ids.sort_unstable();
    if let Some(w) = wire_ids.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(GatewayError::FlowIdCollision(
            cfg.flows[w[0].1 as usize].id.clone(),
            cfg.flows[w[1].1 as usize].id.clone(),
        ));
    }
    Ok((flows, wire_ids::WireIds::build(&wire_ids)))
}

/// Encapsulation parameters of an OAM message (probe, echo, acks) with
/// sequence number `seq` and timestamp `ts`.
#[inline]
pub(crate) fn oam_params(seq: u64, ts: Nanos) -> EncapParams {
    EncapParams {
        flow: FlowOption {
            flow_id: OAM_FLOW_ID,
            seq,
            timestamp_ns: ts,
        },
        entropy: entropy(OAM_FLOW_ID),
        oam: true,
        ..EncapParams::default()
    }
}

/// Flow hash of a wire flow id (UDP source port, IPv6 flow label).
#[inline]
pub(crate) fn entropy(wire_id: u32) -> u32 {
    wire_id.wrapping_mul(0x9E37_79B9).rotate_left(13)
}

/// A 64-bit mix of an address (direct-mapped tables take its top bits).
#[inline]
pub(crate) fn addr_hash(ip: IpAddr) -> u64 {
    let h = match ip {
        IpAddr::V4(a) => u64::from(a.to_bits()),
        IpAddr::V6(a) => {
            let b = a.to_bits();
            u64::try_from(b & u128::from(u64::MAX)).unwrap_or(0)
                ^ u64::try_from(b >> 64).unwrap_or(0)
        }
    };
    h.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Index of `addr` in a peer's gateway list (`u16::MAX`: not in it).
fn remote_index(gateways: &[IpAddr], addr: IpAddr) -> u16 {
    gateways
        .iter()
        .position(|g| *g == addr)
        .and_then(|i| u16::try_from(i).ok())
        .unwrap_or(u16::MAX)
}

/// The path of a resolved [`PeerRoute`] to the peer whose gateway
/// addresses are `gateways`.
fn routed_path(
    cfg: &Config,
    settings: &Settings,
    uplink_ports: &[u16],
    gateways: &[IpAddr],
    r: &PeerRoute,
) -> Option<PeerPath> {
    let u = cfg.uplinks.get(r.uplink)?;
    if u.local_address.is_ipv4() != r.gateway.is_ipv4() {
        return None;
    }
    let src_mac = settings
        .uplink_macs
        .get(r.uplink)
        .copied()
        .unwrap_or_default();
    let mut tc = TemplateConfig::new(src_mac, r.dst_mac, u.local_address, r.gateway);
    tc.vni = cfg.site.vni;
    // The outer UDP checksum over IPv4: sealed packets carry none (the AEAD
    // tag covers every byte it would, a corrupted packet fails its open and
    // is counted `auth_failed`; RFC 8926 section 3.3 allows a zero checksum
    // over IPv4, and Linux's geneve sends none by default); unsealed ones do.
    tc.secure = cfg.security.required();
    tc.udp_checksum_v4 = !tc.secure;
    let template = OverlayTemplate::new(&tc).ok()?;
    let max_inner = template.max_inner_len(settings.uplink_mtu);
    Some(PeerPath {
        template,
        port: uplink_ports.get(r.uplink).copied()?,
        max_inner,
        kind: PathKind::Direct,
        uplink: u16::try_from(r.uplink).ok()?,
        remote_index: remote_index(gateways, r.gateway),
        remote: r.gateway,
        health: PathHealth::default(),
        echoes: EchoWindow::default(),
        unacked: AckWait::default(),
        data_rtt: 0,
        shared_up: true,
        last_auth: 0,
        sealable: true,
    })
}

/// The first (uplink, gateway) pair of the same family, in file order.
fn peer_path(
    cfg: &Config,
    settings: &Settings,
    uplink_ports: &[u16],
    gateways: &[IpAddr],
) -> Option<PeerPath> {
    for (ui, u) in cfg.uplinks.iter().enumerate() {
        for g in gateways {
            if g.is_ipv4() != u.local_address.is_ipv4() {
                continue;
            }
            let src_mac = settings.uplink_macs.get(ui).copied().unwrap_or_default();
            let dst_mac = u.gateway_mac.unwrap_or_default();
            let mut tc = TemplateConfig::new(src_mac, dst_mac, u.local_address, *g);
            tc.vni = cfg.site.vni;
            // As in the direct paths' templates: no IPv4 UDP checksum when sealed.
            tc.secure = cfg.security.required();
            tc.udp_checksum_v4 = !tc.secure;
            let template = OverlayTemplate::new(&tc).ok()?;
            let max_inner = template.max_inner_len(settings.uplink_mtu);
            return Some(PeerPath {
                template,
                port: uplink_ports.get(ui).copied()?,
                max_inner,
                kind: PathKind::Direct,
                uplink: u16::try_from(ui).ok()?,
                remote_index: remote_index(gateways, *g),
                remote: *g,
                health: PathHealth::default(),
                echoes: EchoWindow::default(),
                unacked: AckWait::default(),
                data_rtt: 0,
                shared_up: true,
                last_auth: 0,
                sealable: true,
            });
        }
    }
    None
}

/// Converts a wire ack entry (sequences from 1, "`<= cum` received") to
/// the tracker's numbering (sequences from 0, "`< cum` received"): the same
/// `cum`, the bitmap shifted by one (a set bit 0 advances `cum`).
pub fn entry_to_info(e: &AckEntry) -> AckInfo {
    let mut cum = e.cum_seq;
    let mut bits = e.bitmap;
    let run = bits.trailing_ones();
    if run > 0 {
        cum = cum.saturating_add(u64::from(run));
        bits = if run >= 64 { 0 } else { bits >> run };
    }
    AckInfo {
        cum,
        bitmap: bits >> 1,
        echo_ts_ns: e.echo_ts_ns,
        ack_delay_ns: u64::from(e.ack_delay_ns),
    }
}

/// The wire entry of a receiver's ack (inverse of [`entry_to_info`]; the
/// highest bitmap bit is not representable and is reported by a later ack).
pub fn info_to_entry(flow_id: u32, a: &AckInfo, received: u64, lost: u64) -> AckEntry {
    AckEntry {
        flow_id,
        ack_delay_ns: u32::try_from(a.ack_delay_ns).unwrap_or(u32::MAX),
        cum_seq: a.cum,
        bitmap: a.bitmap << 1,
        echo_ts_ns: a.echo_ts_ns,
        received: wrap32(received),
        lost: wrap32(lost),
    }
}

/// The low 32 bits (wrapping counters on the wire).
#[inline]
fn wrap32(v: u64) -> u32 {
    u32::try_from(v & u64::from(u32::MAX)).unwrap_or(0)
}
