//! Paths to peers and fast failover (MONET's redundancy at a site gateway).
//!
//! For each peer the stage holds candidate paths in preference order:
//! every **direct** (local uplink, peer address) pair the application
//! resolved, then **detours** through each other peer (a waypoint: the
//! packet goes to the waypoint's gateway, which relays it to the peer over
//! one of its own direct paths, never another detour, so a packet makes at
//! most one detour and cannot loop). Traffic to a peer rides its *active*
//! path; flows keep their sequence numbers and controllers across a switch.
//!
//! Health, per path: every `probe_interval_ns` a probe (GENEVE OAM) goes
//! out on every candidate; the peer echoes it at once. A path is down when
//! no echo came back for `path_down_after_ns`; up again at its next echo.
//! The fastest signal is the data itself: when packets went out on the
//! active path to a peer and no ack from that peer arrived for
//! `ack_gap_ns`, the active path is declared down at once. A down active
//! path is replaced by the best path that is up (lowest index); a better
//! path than the active one takes over only after staying up for
//! `failback_after_ns` (hysteresis: no flapping).
//!
//! **Who decides.** While a control process drives the paths (it sent a
//! [`Command::Probe`](crate::shm::msg::Command) or an assignment within the
//! last [`CONTROL_LEASE_NS`]), the MONET decisions are its own: it names the
//! probes ([`Gateway::on_probe_command`], answered by a
//! [`ProbeOutcome`] per command), the default path of each peer and the path
//! of each flow ([`Gateway::on_assign`]). The dataplane keeps one reflex:
//! an ack gap takes a path down at once and its flows fall back to the
//! peer's first path that is up (reported as a [`PathEventKind::AckGap`]
//! for the control to race alternatives). Background probing, echo-timeout
//! failure detection and failback are then the control's, not ours. When
//! the lease lapses (the control died) the dataplane probes and chooses on
//! its own again, as above: fail-static.
//!
//! Everything here is pure (time passed in); probes are emitted from
//! [`super::Gateway::poll`] in frames of the stage's reserve.

use core::net::IpAddr;

use super::Gateway;
use crate::engine::{Arena, Batch, Nanos, Packet, Verdict};
use crate::shm::msg::{FLOW_MARK_DOWN, FLOW_MARK_UP, FLOW_PEER_DEFAULT, PATH_NONE, PathEventKind};
use crate::wire::oam::{self, Probe};
use crate::wire::overlay::OverlayTemplate;

/// A gap between two runs of the path timers longer than this is a stall
/// of this worker, not of the paths (the timers run every loop iteration).
const STALL_NS: u64 = 10_000_000;

/// A control process drives the paths for this long after its last probe
/// command or assignment.
pub const CONTROL_LEASE_NS: u64 = 3_000_000_000;

/// Probe commands in flight at once (a fixed table: no allocation).
pub const CONTROL_PROBE_SLOTS: usize = 64;
/// Probes one command may ask for.
pub const CONTROL_PROBE_MAX_COUNT: u32 = 64;
/// Largest gap between the probes of one command, ns.
pub const CONTROL_PROBE_MAX_INTERVAL_NS: u64 = 10_000_000_000;
/// A command's last probe unanswered for this long counts as lost.
pub const CONTROL_PROBE_TIMEOUT_NS: u64 = 1_000_000_000;
/// Outcomes and events waiting for the application to send them.
const QUEUE_CAP: usize = 256;
/// Marks a probe sent for a control command (the rest of the sequence
/// number is the slot and its generation).
const CONTROL_SEQ_BIT: u32 = 0x8000_0000;

/// The answer to one probe command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// The command's id.
    pub id: u64,
    /// Path reference (`peer << 16 | index`).
    pub path: u32,
    /// Probes sent (0: the command was refused, see the stats).
    pub sent: u32,
    /// Echoes received.
    pub received: u32,
    /// Smallest round-trip time, ns (0: none).
    pub rtt_min_ns: u64,
    /// Mean round-trip time, ns (0: none).
    pub rtt_mean_ns: u64,
}

/// A probe command being carried out.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ControlProbe {
    busy: bool,
    generation: u16,
    id: u64,
    peer: u16,
    index: u16,
    count: u32,
    sent: u32,
    received: u32,
    interval: u64,
    next_at: Nanos,
    last_sent: Nanos,
    rtt_min: u64,
    rtt_sum: u64,
}

/// The control's side of the path state: probe commands, outcomes and
/// events for it, its lease.
#[derive(Clone, Debug)]
pub(crate) struct ControlPaths {
    pub(crate) slots: Box<[ControlProbe; CONTROL_PROBE_SLOTS]>,
    pub(crate) outcomes: Vec<ProbeOutcome>,
    pub(crate) events: Vec<(u32, PathEventKind, Nanos)>,
    /// Last probe command or assignment.
    pub(crate) last_command: Option<Nanos>,
    /// The control drove the paths at the last timer run.
    pub(crate) was_driven: bool,
    /// Slots carrying out a command.
    pub(crate) busy: usize,
}

impl Default for ControlPaths {
    fn default() -> Self {
        Self {
            slots: Box::new([ControlProbe::default(); CONTROL_PROBE_SLOTS]),
            outcomes: Vec::with_capacity(QUEUE_CAP),
            events: Vec::with_capacity(QUEUE_CAP),
            last_command: None,
            was_driven: false,
            busy: 0,
        }
    }
}

/// Longest hold of a moving flow (see [`Gateway::hold_for_move`]).
const MAX_HOLD_NS: u64 = 100_000_000;

/// One-way delay estimate of a path from its probes: half the smoothed RTT;
/// a detour's probes are answered by the waypoint, so the first leg's RTT
/// stands for the whole one-way trip (two legs). Capped; 0 without samples.
fn one_way_estimate(p: &PeerPath) -> u64 {
    let srtt = p.health.srtt_ns;
    let owd = match p.kind {
        PathKind::Direct => srtt / 2,
        PathKind::Via(_) => srtt,
    };
    owd.min(MAX_HOLD_NS)
}

/// Path reference on the control channel: peer and candidate index.
pub fn path_ref(peer: usize, index: usize) -> u32 {
    probe_id(peer, index)
}

/// The (peer, index) a path reference names (not checked against the table).
pub fn split_path_ref(r: u32) -> (usize, usize) {
    (
        usize::try_from(r >> 16).unwrap_or(usize::MAX),
        usize::try_from(r & 0xFFFF).unwrap_or(usize::MAX),
    )
}

/// How a candidate path reaches its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// Straight to one of the peer's addresses.
    Direct,
    /// Through this peer (index) as a waypoint.
    Via(usize),
}

/// What the probes and acks say of a path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathHealth {
    /// Usable.
    pub up: bool,
    /// Last echo received (or the start).
    pub last_echo: Nanos,
    /// Last probe sent.
    pub last_probe: Nanos,
    /// Since when up (failback hysteresis).
    pub up_since: Nanos,
    /// Smoothed round-trip time of probes, ns (0: none yet).
    pub srtt_ns: u64,
    /// Probes sent.
    pub probes_sent: u64,
    /// Echoes received.
    pub echoes: u64,
    /// Bytes of probes sent (outer frames).
    pub probe_bytes: u64,
    /// Times it went down.
    pub downs: u64,
}

/// One candidate path to a peer.
#[derive(Clone, Debug)]
pub(crate) struct PeerPath {
    pub(crate) template: OverlayTemplate,
    pub(crate) port: u16,
    /// Largest inner frame the path carries.
    pub(crate) max_inner: usize,
    pub(crate) kind: PathKind,
    /// Local uplink (`Config::uplinks` index).
    pub(crate) uplink: u16,
    /// Index of `remote` in the gateway list of the peer it is sent to.
    pub(crate) remote_index: u16,
    /// Outer destination.
    pub(crate) remote: IpAddr,
    pub(crate) health: PathHealth,
    /// First data packet sent on it since the last ack of a flow riding it.
    pub(crate) unacked_since: Option<Nanos>,
}

/// The candidates of one peer and the one in use.
#[derive(Clone, Debug, Default)]
pub(crate) struct PeerPaths {
    pub(crate) paths: Vec<PeerPath>,
    pub(crate) active: Option<usize>,
    /// Path switches so far.
    pub(crate) switches: u64,
    /// When the last switch happened.
    pub(crate) last_switch: Nanos,
    /// Last ack (any OAM ack message) from this peer.
    pub(crate) last_ack: Nanos,
    /// The candidate this peer's data last arrived by (port, outer source),
    /// reversed: acks go back the way the data came (the sender just chose
    /// that path and watches its acks), while it is up.
    pub(crate) ack_path: Option<u16>,
    pub(crate) ack_key: Option<(u16, IpAddr)>,
}

/// A path's public view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathView {
    /// Kind.
    pub kind: PathKind,
    /// Worker port it leaves on.
    pub port: u16,
    /// Outer destination.
    pub remote: IpAddr,
    /// Health.
    pub health: PathHealth,
    /// Whether traffic to the peer rides it now.
    pub active: bool,
}

/// Path id carried in a probe: peer index and path index.
fn probe_id(peer: usize, path: usize) -> u32 {
    let p = u32::try_from(peer & 0xFFFF).unwrap_or(0);
    let i = u32::try_from(path & 0xFFFF).unwrap_or(0);
    p << 16 | i
}

impl PeerPaths {
    /// The path traffic rides now.
    #[inline]
    pub(crate) fn active_path(&self) -> Option<&PeerPath> {
        self.active.and_then(|i| self.paths.get(i))
    }

    /// The path a flow assigned to candidate `assigned` rides: that one while
    /// it is up, else the active one.
    #[inline]
    pub(crate) fn path_for(&self, assigned: Option<u16>) -> Option<(usize, &PeerPath)> {
        if let Some(a) = assigned {
            let i = usize::from(a);
            if let Some(p) = self.paths.get(i)
                && p.health.up
            {
                return Some((i, p));
            }
        }
        let i = self.active?;
        Some((i, self.paths.get(i)?))
    }

    /// The first direct path that is up (for relaying detours: never a detour).
    pub(crate) fn direct_up(&self) -> Option<&PeerPath> {
        if let Some(p) = self.active_path()
            && p.kind == PathKind::Direct
            && p.health.up
        {
            return Some(p);
        }
        self.paths
            .iter()
            .find(|p| p.kind == PathKind::Direct && p.health.up)
    }

    /// Re-evaluates which path is active; `failback`: also return to a
    /// better path that stayed up `failback_after` (off while a control
    /// process decides).
    /// Returns `(old, new)` when it moved off a path that still works (a
    /// failback): the caller holds the flows that move (see
    /// [`Gateway::hold_for_move`]).
    fn select(
        &mut self,
        now: Nanos,
        failback_after: u64,
        failback: bool,
    ) -> Option<(usize, usize)> {
        let best_up = self.paths.iter().position(|p| p.health.up);
        let cur = self.active;
        let next = match (cur, best_up) {
            (_, None) => cur, // nothing up: keep the last (it may come back)
            (None, Some(b)) => Some(b),
            (Some(c), Some(b)) => {
                let c_up = self.paths.get(c).is_some_and(|p| p.health.up);
                let back = failback
                    && b < c
                    && now.saturating_sub(self.paths[b].health.up_since) >= failback_after;
                if !c_up || back { Some(b) } else { Some(c) }
            }
        };
        if next == cur {
            return None;
        }
        self.set_active(next, now);
        let (c, n) = (cur?, next?);
        self.paths.get(c).filter(|p| p.health.up).map(|_| (c, n))
    }

    fn set_active(&mut self, next: Option<usize>, now: Nanos) {
        self.active = next;
        self.switches += 1;
        self.last_switch = now;
        if let Some(p) = next.and_then(|i| self.paths.get_mut(i)) {
            p.unacked_since = None;
        }
    }
}

impl Gateway {
    /// Candidate paths of every peer, with their health.
    pub fn paths(&self, peer: usize) -> Vec<PathView> {
        self.peers.get(peer).map_or_else(Vec::new, |pp| {
            pp.paths
                .iter()
                .enumerate()
                .map(|(i, p)| PathView {
                    kind: p.kind,
                    port: p.port,
                    remote: p.remote,
                    health: p.health,
                    active: pp.active == Some(i),
                })
                .collect()
        })
    }

    /// Calls `f` with the telemetry record of every candidate path.
    pub fn for_each_path(&self, mut f: impl FnMut(crate::shm::msg::PathTelemetry)) {
        for (pi, pp) in self.peers.iter().enumerate() {
            for (i, p) in pp.paths.iter().enumerate() {
                f(crate::shm::msg::PathTelemetry {
                    path: path_ref(pi, i),
                    uplink: p.uplink,
                    via: match p.kind {
                        PathKind::Direct => u16::MAX,
                        PathKind::Via(w) => u16::try_from(w).unwrap_or(u16::MAX),
                    },
                    remote: p.remote_index,
                    up: p.health.up,
                    active: pp.active == Some(i),
                    srtt_us: u32::try_from(p.health.srtt_ns / 1000).unwrap_or(u32::MAX),
                });
            }
        }
    }

    /// `(direct paths, of which up, switches)` toward `peer`.
    pub fn peer_summary(&self, peer: usize) -> Option<(usize, usize, u64)> {
        let pp = self.peers.get(peer)?;
        let direct = pp.paths.iter().filter(|p| p.kind == PathKind::Direct);
        let total = direct.clone().count();
        let up = direct.filter(|p| p.health.up).count();
        Some((total, up, pp.switches))
    }

    /// Number of peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Path switches toward `peer` so far.
    pub fn path_switches(&self, peer: usize) -> u64 {
        self.peers.get(peer).map_or(0, |p| p.switches)
    }

    /// The path flow `fi` rides now (`peer << 16 | index`), or [`PATH_NONE`]
    /// (it does not start here, or its peer has no path).
    pub fn flow_path(&self, fi: usize) -> u32 {
        let Some(f) = self.flows.get(fi) else {
            return PATH_NONE;
        };
        if f.role != super::Role::Origin {
            return PATH_NONE;
        }
        f.next_peer
            .and_then(|np| Some((np, self.peers.get(np)?.path_for(f.path)?.0)))
            .map_or(PATH_NONE, |(np, i)| path_ref(np, i))
    }

    /// Whether a control process drives the paths now (see the module
    /// documentation).
    pub fn control_drives_paths(&self, now: Nanos) -> bool {
        self.control_paths
            .last_command
            .is_some_and(|last| now.saturating_sub(last) < CONTROL_LEASE_NS)
    }

    /// Takes the finished probe commands' outcomes (oldest first).
    pub fn drain_probe_outcomes(&mut self, mut f: impl FnMut(&ProbeOutcome) -> bool) {
        let q = &mut self.control_paths.outcomes;
        let n = q.iter().take_while(|o| f(o)).count();
        q.drain(..n);
    }

    /// Takes the path events (oldest first); `f` returns false to stop
    /// (the rest stay queued).
    pub fn drain_path_events(&mut self, mut f: impl FnMut(u32, PathEventKind, Nanos) -> bool) {
        let q = &mut self.control_paths.events;
        let n = q.iter().take_while(|e| f(e.0, e.1, e.2)).count();
        q.drain(..n);
    }

    fn push_event(&mut self, path: u32, kind: PathEventKind, now: Nanos) {
        let q = &mut self.control_paths.events;
        if q.len() < QUEUE_CAP {
            q.push((path, kind, now));
        } else {
            self.stats.control_queue_full += 1;
        }
    }

    fn push_outcome(&mut self, o: ProbeOutcome) {
        let q = &mut self.control_paths.outcomes;
        if q.len() < QUEUE_CAP {
            q.push(o);
        } else {
            self.stats.control_queue_full += 1;
        }
    }

    /// Holds the flows of this site that move, toward `peer`, from
    /// candidate `old` (still working) to `new`, for the difference of the
    /// two paths' one-way delays, so their first packets on `new` cannot
    /// overtake their last ones on `old` (a burst of reordering the inner
    /// TCP would read as loss). `only`: that flow alone; else the flows
    /// that follow the peer's default path. Nothing to do on a failover
    /// (the old path's packets are lost anyway) or without RTT samples.
    pub(crate) fn hold_for_move(
        &mut self,
        peer: usize,
        old: usize,
        new: usize,
        only: Option<usize>,
        now: Nanos,
    ) {
        let Some(pp) = self.peers.get(peer) else {
            return;
        };
        let (Some(o), Some(n)) = (pp.paths.get(old), pp.paths.get(new)) else {
            return;
        };
        if old == new || !o.health.up {
            return;
        }
        let d = one_way_estimate(o).saturating_sub(one_way_estimate(n));
        if d == 0 {
            return;
        }
        for fi in 0..self.flows.len() {
            let f = &self.flows[fi];
            if f.role != super::Role::Origin || f.next_peer != Some(peer) {
                continue;
            }
            let moves = match only {
                Some(x) => x == fi,
                None => f.path.is_none(),
            };
            if moves {
                self.pacing
                    .hold(super::queue_u32(fi), now.saturating_add(d));
            }
        }
    }

    /// A path reference naming an existing candidate.
    fn checked_ref(&self, r: u32) -> Option<(usize, usize)> {
        let (peer, i) = split_path_ref(r);
        self.peers.get(peer)?.paths.get(i)?;
        Some((peer, i))
    }

    /// Marks a path up on the control's word (it answered the control's
    /// probes even if ours were lost).
    fn vouch(&mut self, peer: usize, i: usize, now: Nanos) {
        if let Some(p) = self.peers.get_mut(peer).and_then(|pp| pp.paths.get_mut(i)) {
            p.unacked_since = None;
            if !p.health.up {
                p.health.up = true;
                p.health.up_since = now;
                p.health.last_echo = now;
            }
        }
    }

    /// A flow-to-path assignment from the control process: `flow` rides
    /// `path` (while it is up), or follows its peer's default again
    /// ([`PATH_NONE`]); [`FLOW_PEER_DEFAULT`] sets the peer's default path;
    /// [`FLOW_MARK_DOWN`] / [`FLOW_MARK_UP`] hold a path down or usable in
    /// the dataplane's own view (what its ack-gap reflex falls back on).
    /// An assignment naming an unknown flow or path, or a path toward
    /// another peer than the flow's next site, is counted and ignored.
    pub fn on_assign(&mut self, flow: u32, path: u32, now: Nanos) {
        self.control_paths.last_command = Some(now);
        if flow == FLOW_MARK_DOWN || flow == FLOW_MARK_UP {
            let Some((peer, i)) = self.checked_ref(path) else {
                self.stats.assign_bad += 1;
                return;
            };
            if flow == FLOW_MARK_UP {
                self.vouch(peer, i, now);
            } else {
                let p = &mut self.peers[peer].paths[i];
                if p.health.up {
                    p.health.up = false;
                    p.health.downs += 1;
                }
                p.unacked_since = None;
            }
            self.stats.assigned += 1;
            return;
        }
        if flow == FLOW_PEER_DEFAULT {
            let Some((peer, i)) = self.checked_ref(path) else {
                self.stats.assign_bad += 1;
                return;
            };
            self.vouch(peer, i, now);
            let old = self.peers[peer].active;
            if old != Some(i) {
                if let Some(o) = old {
                    self.hold_for_move(peer, o, i, None, now);
                }
                self.peers[peer].set_active(Some(i), now);
            }
            self.stats.assigned += 1;
            return;
        }
        let Some(fi) = usize::try_from(flow).ok().filter(|&f| f < self.flows.len()) else {
            self.stats.assign_bad += 1;
            return;
        };
        if path == PATH_NONE {
            self.flows[fi].path = None;
            self.stats.assigned += 1;
            return;
        }
        let Some((peer, i)) = self.checked_ref(path) else {
            self.stats.assign_bad += 1;
            return;
        };
        if self.flows[fi].next_peer != Some(peer) {
            self.stats.assign_bad += 1;
            return;
        }
        let old = self.peers[peer]
            .path_for(self.flows[fi].path)
            .map(|(o, _)| o);
        if let Some(o) = old {
            self.hold_for_move(peer, o, i, Some(fi), now);
        }
        self.vouch(peer, i, now);
        self.flows[fi].path = u16::try_from(i).ok();
        self.stats.assigned += 1;
    }

    /// A probe command from the control process: `count` probes on
    /// `path`, `interval_ns` apart, answered by one [`ProbeOutcome`]. A
    /// command naming an unknown path, asking for no or too many probes or
    /// too long a gap, or finding every slot busy, is counted and answered
    /// at once with `sent = 0`.
    pub fn on_probe_command(
        &mut self,
        id: u64,
        path: u32,
        count: u32,
        interval_ns: u64,
        now: Nanos,
    ) {
        self.control_paths.last_command = Some(now);
        let refuse = |g: &mut Self| {
            g.push_outcome(ProbeOutcome {
                id,
                path,
                sent: 0,
                received: 0,
                rtt_min_ns: 0,
                rtt_mean_ns: 0,
            });
        };
        let valid = (1..=CONTROL_PROBE_MAX_COUNT).contains(&count)
            && interval_ns <= CONTROL_PROBE_MAX_INTERVAL_NS;
        let Some((peer, i)) = self.checked_ref(path).filter(|_| valid) else {
            self.stats.probe_command_bad += 1;
            refuse(self);
            return;
        };
        let Some(slot) = self.control_paths.slots.iter_mut().find(|s| !s.busy) else {
            self.stats.probe_command_busy += 1;
            refuse(self);
            return;
        };
        *slot = ControlProbe {
            busy: true,
            generation: slot.generation.wrapping_add(1) & 0x7FFF,
            id,
            peer: u16::try_from(peer).unwrap_or(u16::MAX),
            index: u16::try_from(i).unwrap_or(u16::MAX),
            count,
            interval: interval_ns,
            next_at: now,
            ..ControlProbe::default()
        };
        self.control_paths.busy += 1;
    }

    /// Notes an ack message from the gateway at `src` (flows unknown):
    /// every path to that peer is vouched for.
    pub(crate) fn note_ack_from(&mut self, src: IpAddr, now: Nanos) {
        if let Some(pi) = self.peer_index_of_gateway(src)
            && let Some(pp) = self.peers.get_mut(pi)
        {
            pp.last_ack = now;
            for p in &mut pp.paths {
                p.unacked_since = None;
            }
        }
    }

    /// Notes an ack message from peer `pi`.
    pub(crate) fn note_ack_from_peer(&mut self, pi: usize, now: Nanos) {
        if let Some(pp) = self.peers.get_mut(pi) {
            pp.last_ack = now;
        }
    }

    /// Data of flow `fi` (ending here) arrived on `port` from `src`: its
    /// acks go back by the candidate that reverses that hop.
    #[inline]
    pub(crate) fn note_data_arrival(&mut self, fi: usize, port: u16, src: IpAddr) {
        let Some(pp) = self
            .flows
            .get(fi)
            .and_then(|f| f.src_peer)
            .and_then(|sp| self.peers.get_mut(sp))
        else {
            return;
        };
        if pp.ack_key == Some((port, src)) {
            return;
        }
        pp.ack_key = Some((port, src));
        pp.ack_path = pp
            .paths
            .iter()
            .position(|c| c.port == port && c.remote == src)
            .and_then(|i| u16::try_from(i).ok());
    }

    /// Notes an ack entry of flow `fi`: the path it rides works.
    pub(crate) fn note_flow_acked(&mut self, fi: usize) {
        let Some(f) = self.flows.get(fi) else { return };
        let assigned = f.path;
        if let Some(pp) = f.next_peer.and_then(|np| self.peers.get_mut(np))
            && let Some((i, _)) = pp.path_for(assigned)
        {
            pp.paths[i].unacked_since = None;
        }
    }

    /// The peer one of whose gateway addresses is `addr`.
    pub(crate) fn peer_index_of_gateway(&self, addr: IpAddr) -> Option<usize> {
        self.cfg
            .peers
            .iter()
            .position(|p| p.gateways.contains(&addr))
    }

    /// A probe echo came back.
    pub(crate) fn on_echo(&mut self, probe: &Probe, now: Nanos) {
        let (peer, idx) = split_path_ref(probe.path_id);
        let failback = self.settings.failback_after_ns;
        let local = !self.control_drives_paths(now);
        let Some(pp) = self.peers.get_mut(peer) else {
            self.stats.probe_unknown += 1;
            return;
        };
        let Some(p) = pp.paths.get_mut(idx) else {
            self.stats.probe_unknown += 1;
            return;
        };
        // An echo from the future or from long ago is garbage.
        if probe.send_ts_ns > now || now - probe.send_ts_ns > 10_000_000_000 {
            self.stats.probe_unknown += 1;
            return;
        }
        let rtt = now - probe.send_ts_ns;
        if probe.probe_seq & CONTROL_SEQ_BIT != 0 {
            // The control's probe: its slot must be carrying out a command
            // on this very path, of this generation.
            let slot = usize::try_from(probe.probe_seq & 0xFFFF).unwrap_or(usize::MAX);
            let generation = u16::try_from((probe.probe_seq >> 16) & 0x7FFF).unwrap_or(0);
            match self.control_paths.slots.get_mut(slot) {
                Some(s)
                    if s.busy
                        && s.generation == generation
                        && usize::from(s.peer) == peer
                        && usize::from(s.index) == idx
                        && s.received < s.sent =>
                {
                    s.received += 1;
                    s.rtt_min = if s.rtt_min == 0 {
                        rtt
                    } else {
                        s.rtt_min.min(rtt)
                    };
                    s.rtt_sum += rtt;
                }
                _ => {
                    self.stats.probe_unknown += 1;
                    return;
                }
            }
        }
        let h = &mut p.health;
        h.echoes += 1;
        h.last_echo = h.last_echo.max(now);
        h.srtt_ns = if h.srtt_ns == 0 {
            rtt
        } else {
            (7 * h.srtt_ns + rtt) / 8
        };
        // While a control decides, an echo is its evidence, not a verdict:
        // it raises a path with an assignment or an up mark.
        if !h.up && local {
            h.up = true;
            h.up_since = now;
            self.push_event(path_ref(peer, idx), PathEventKind::Up, now);
        }
        if let Some((o, n)) = self.peers[peer].select(now, failback, local) {
            self.hold_for_move(peer, o, n, None, now);
        }
    }

    /// Probe timers and failure detection; emits due probes into `out`.
    /// The control's probe commands run whatever the settings; the
    /// dataplane's own probing and failover only with a probe interval.
    pub(crate) fn path_timers(&mut self, now: Nanos, arena: &mut Arena, out: &mut Batch) {
        if self.control_drives_paths(now) {
            self.control_paths.was_driven = true;
            if self.settings.probe_interval_ns > 0 {
                // Ack gaps only (the local timers skip the rest).
                let _ = self.local_path_timers(now, arena, out);
            }
        } else if self.settings.probe_interval_ns > 0 && !self.local_path_timers(now, arena, out) {
            return;
        }
        self.control_probe_timers(now, arena, out);
    }

    /// The dataplane's own probes and failure detection; false when the
    /// batch or the frame reserve ran out.
    fn local_path_timers(&mut self, now: Nanos, arena: &mut Arena, out: &mut Batch) -> bool {
        let interval = self.settings.probe_interval_ns;
        let down_after = self.settings.path_down_after_ns;
        let ack_gap = self.settings.ack_gap_ns;
        let failback = self.settings.failback_after_ns;
        let local = !self.control_drives_paths(now);
        // Time this stage did not run (the worker was descheduled) is not
        // silence from the paths: their echoes and acks wait in our receive
        // ring. Shift the detection baselines past the stall.
        let last = core::mem::replace(&mut self.last_path_check, now);
        let stall = now.saturating_sub(last);
        // Back from a control's lease: our probes were paused, so the echo
        // baselines are stale; give every path a fresh probe interval
        // before silence counts.
        if local && core::mem::replace(&mut self.control_paths.was_driven, false) {
            for pp in &mut self.peers {
                for p in &mut pp.paths {
                    p.health.last_echo = now;
                    p.health.last_probe = 0;
                }
            }
        }
        if last != 0 && stall > STALL_NS {
            for pp in &mut self.peers {
                for p in &mut pp.paths {
                    if let Some(u) = p.unacked_since.as_mut() {
                        *u = u.saturating_add(stall).min(now);
                    }
                    p.health.last_echo = p.health.last_echo.saturating_add(stall).min(now);
                }
            }
        }
        for peer in 0..self.peers.len() {
            // Ack gap on a path that carries data: data went out, no ack
            // came back. The dataplane's own reflex, control or not.
            for i in 0..self.peers[peer].paths.len() {
                let p = &mut self.peers[peer].paths[i];
                if ack_gap > 0
                    && p.health.up
                    && let Some(since) = p.unacked_since
                    && now.saturating_sub(since) > ack_gap
                {
                    p.health.up = false;
                    p.health.downs += 1;
                    p.unacked_since = None;
                    self.stats.ack_gap_failovers += 1;
                    self.push_event(path_ref(peer, i), PathEventKind::AckGap, now);
                }
            }
            let pp = &mut self.peers[peer];
            if local {
                for p in &mut pp.paths {
                    if p.health.up && now.saturating_sub(p.health.last_echo) > down_after {
                        p.health.up = false;
                        p.health.downs += 1;
                    }
                }
            }
            if let Some((o, n)) = pp.select(now, failback, local) {
                self.hold_for_move(peer, o, n, None, now);
            }
            if !local {
                continue;
            }
            for i in 0..self.peers[peer].paths.len() {
                if now.saturating_sub(self.peers[peer].paths[i].health.last_probe) < interval {
                    continue;
                }
                let seq = self.peers[peer].paths[i].health.probes_sent;
                let seq = u32::try_from(seq & 0x7FFF_FFFF).unwrap_or(0);
                if !self.send_probe(peer, i, seq, now, arena, out) {
                    return false;
                }
            }
        }
        true
    }

    /// Sends due probes of the control's commands; finishes commands.
    fn control_probe_timers(&mut self, now: Nanos, arena: &mut Arena, out: &mut Batch) {
        // Every poll runs this: nothing to look at without a command.
        if self.control_paths.busy == 0 {
            return;
        }
        for k in 0..CONTROL_PROBE_SLOTS {
            let s = self.control_paths.slots[k];
            if !s.busy {
                continue;
            }
            let done = s.received == s.count
                || (s.sent == s.count
                    && now.saturating_sub(s.last_sent) > CONTROL_PROBE_TIMEOUT_NS);
            if done {
                self.control_paths.slots[k].busy = false;
                self.control_paths.busy -= 1;
                self.push_outcome(ProbeOutcome {
                    id: s.id,
                    path: path_ref(usize::from(s.peer), usize::from(s.index)),
                    sent: s.sent,
                    received: s.received,
                    rtt_min_ns: s.rtt_min,
                    rtt_mean_ns: if s.received > 0 {
                        s.rtt_sum / u64::from(s.received)
                    } else {
                        0
                    },
                });
                continue;
            }
            if s.sent < s.count && now >= s.next_at {
                let slot = u32::try_from(k).unwrap_or(0);
                let seq = CONTROL_SEQ_BIT | u32::from(s.generation) << 16 | slot;
                if !self.send_probe(
                    usize::from(s.peer),
                    usize::from(s.index),
                    seq,
                    now,
                    arena,
                    out,
                ) {
                    return;
                }
                let s = &mut self.control_paths.slots[k];
                s.sent += 1;
                s.last_sent = now;
                s.next_at = now.saturating_add(s.interval);
            }
        }
    }

    /// Emits one probe on candidate `i` of `peer`; false when there is no
    /// room (batch full or no frame: try again next time).
    fn send_probe(
        &mut self,
        peer: usize,
        i: usize,
        seq: u32,
        now: Nanos,
        arena: &mut Arena,
        out: &mut Batch,
    ) -> bool {
        if out.spare() == 0 {
            return false;
        }
        let Some(base) = self.reserve.pop() else {
            self.stats.probe_no_frame += 1;
            return false;
        };
        self.oam_seq += 1;
        let path = &mut self.peers[peer].paths[i];
        path.health.last_probe = now;
        let probe = Probe {
            path_id: probe_id(peer, i),
            probe_seq: seq,
            send_ts_ns: now,
            echo_ts_ns: 0,
        };
        let params = super::oam_params(self.oam_seq, now);
        let off = (arena.headroom() as usize).max(path.template.header_len());
        let msg = oam::Repr::Probe(probe);
        let frame_size = arena.frame_size();
        let res = arena.get_mut(base, frame_size).and_then(|buf| {
            let len = msg.emit(buf.get_mut(off..)?).ok()?;
            path.template.encap(buf, off, len, &params).ok()
        });
        match res {
            Some(r) => {
                let len = u32::try_from(r.len()).unwrap_or(0);
                let mut pkt = Packet::new(base + r.start as u64, len, self.settings.lan_port, now);
                pkt.verdict = Verdict::Tx(path.port);
                path.health.probes_sent += 1;
                path.health.probe_bytes += u64::from(len);
                out.push(pkt);
                self.stats.probes_sent += 1;
            }
            None => {
                self.stats.encap_failed += 1;
                self.reserve.push(base);
            }
        }
        true
    }
}
