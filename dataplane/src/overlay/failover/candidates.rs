//! The candidate paths of each peer: their health, the active one, the
//! path a flow rides, acks vouching for a path, holds of the flows that
//! move, and the public views.

use core::net::IpAddr;

use super::{HealthPolicy, PATH_NONE, PathTelemetry, path_ref, split_path_ref};
use crate::engine::Nanos;
use crate::overlay::lan_to_wan::QueueId;
use crate::overlay::{Gateway, Role};
use crate::stats::gateway::{PathRecord, state};
use crate::wire::overlay::OverlayTemplate;

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

/// A path's state for the status view (a [`state`] code): held (the
/// control holds it down), down (not usable), suspect (usable, but data
/// sent on it has waited for acks longer than half the ack gap, or — when
/// the dataplane drives the paths itself (`local`) — its echoes are silent
/// for more than half the time that takes it down), else up. Pure.
pub(crate) fn path_state(
    h: &PathHealth,
    unacked_since: Option<Nanos>,
    policy: &HealthPolicy,
    local: bool,
    now: Nanos,
) -> u64 {
    if !h.up {
        return if h.held { state::HELD } else { state::DOWN };
    }
    let gap = policy.ack_gap_ns / 2;
    let acks_late = gap > 0 && unacked_since.is_some_and(|s| now.saturating_sub(s) > gap);
    let silent = local && now.saturating_sub(h.last_echo) > policy.down_after_ns / 2;
    if acks_late || silent {
        state::SUSPECT
    } else {
        state::UP
    }
}

/// Packets sent on a path since the last ack before an ack gap is timed: the
/// gap counts from the `ACK_GAP_PACKETS`-th. A sparse flow (a few packets a
/// second) that loses a packet is answered by the next one's ack only a
/// whole gap later: timed from the first, one loss took a working path down
/// (session 16: a waypoint's floor flow on a full link moved its traffic to
/// a detour after the partition's rejoin); timed from the second, two losses
/// in a row still did (session 17: for a second after the rejoin the
/// waypoint's floor flow shared a link loaded twice over, and the waypoint's
/// relay of the cut site's flow went round through the full A-C for 5 s).
/// Four in a row unanswered is the signal: at a full link's few percent of
/// loss that is chance once in millions, and a busy path's fourth packet
/// leaves microseconds after its first, so nothing changes there.
pub const ACK_GAP_PACKETS: u32 = 4;

/// The data a path carried since the last ack of a flow riding it: when the
/// first packet after that ack left, how many left, and when the
/// [`ACK_GAP_PACKETS`]-th left (the ack gap counts from it).
///
/// Flows that ride the path to its peer and go on from there (a planned
/// waypoint's flows: their acks come from a site further on) are counted
/// apart: their silence blames no hop by itself (the hop after the peer may
/// be the dead one), so when it lasts an ack gap the reflex sends one probe
/// on the path, a *hop check* ([`AckWait::start_check`]); an echo of a probe
/// sent since answers it ([`AckWait::hop_answered`]), and a check
/// unanswered for another ack gap takes the path down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AckWait {
    first: Option<Nanos>,
    sent: u32,
    gap_from: Option<Nanos>,
    /// Packets of flows going on past the peer, since the last ack.
    relayed: u32,
    relayed_gap_from: Option<Nanos>,
    /// When the hop check's probe left.
    check: Option<Nanos>,
}

impl AckWait {
    /// A data packet of a flow whose destination is the path's peer left on
    /// the path at `now`.
    #[inline]
    pub(crate) fn on_send(&mut self, now: Nanos) {
        if self.first.is_none() {
            self.first = Some(now);
        }
        self.sent = self.sent.saturating_add(1);
        if self.sent == ACK_GAP_PACKETS {
            self.gap_from = Some(now);
        }
    }

    /// A data packet of a flow that goes on past the path's peer left on
    /// the path at `now`.
    #[inline]
    pub(crate) fn on_relayed_send(&mut self, now: Nanos) {
        if self.first.is_none() {
            self.first = Some(now);
        }
        self.relayed = self.relayed.saturating_add(1);
        if self.relayed == ACK_GAP_PACKETS {
            self.relayed_gap_from = Some(now);
        }
    }

    /// An ack came (or the path's state was reset): nothing waits.
    #[inline]
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// The first packet sent since the last ack.
    #[inline]
    pub(crate) fn first(&self) -> Option<Nanos> {
        self.first
    }

    /// When the [`ACK_GAP_PACKETS`]-th packet since the last ack left: what
    /// the ack gap counts from.
    #[inline]
    pub(crate) fn gap_from(&self) -> Option<Nanos> {
        self.gap_from
    }

    /// As [`Self::gap_from`], for the flows going on past the peer, while
    /// no hop check is out.
    #[inline]
    pub(crate) fn relayed_gap_from(&self) -> Option<Nanos> {
        if self.check.is_some() {
            None
        } else {
            self.relayed_gap_from
        }
    }

    /// When the hop check out now left.
    #[inline]
    pub(crate) fn check(&self) -> Option<Nanos> {
        self.check
    }

    /// A hop check's probe left at `now`.
    #[inline]
    pub(crate) fn start_check(&mut self, now: Nanos) {
        self.check = Some(now);
    }

    /// An echo of a probe sent at `sent` came back on the path: the hop
    /// works, so the silence of the flows going on past the peer is not
    /// its fault (counted again from their next packet). True when it
    /// answered a check.
    #[inline]
    pub(crate) fn hop_answered(&mut self, sent: Nanos) -> bool {
        let answered = self.check.is_some_and(|c| sent >= c);
        if answered {
            self.forget_relayed();
        }
        answered
    }

    /// The flows going on past the peer wait no more (and no check is out);
    /// the wait of the flows ending at the peer is left alone: their acks
    /// are their own signal.
    #[inline]
    pub(crate) fn forget_relayed(&mut self) {
        self.check = None;
        self.relayed = 0;
        self.relayed_gap_from = None;
        if self.sent == 0 {
            self.first = None;
        }
    }

    /// The worker stalled for `stall` (it could not have heard acks): the
    /// times move on by it, at most to `now`.
    #[inline]
    pub(crate) fn shift(&mut self, stall: Nanos, now: Nanos) {
        for t in [
            &mut self.first,
            &mut self.gap_from,
            &mut self.relayed_gap_from,
            &mut self.check,
        ]
        .into_iter()
        .flatten()
        {
            *t = t.saturating_add(stall).min(now);
        }
    }
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
    /// The control process holds it down ([`super::FLOW_MARK_DOWN`]; cleared
    /// when the control vouches for it again).
    pub held: bool,
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
    /// The nonces of its own probes in flight.
    pub(crate) echoes: super::probes::EchoWindow,
    /// Data sent on it since the last ack of a flow riding it.
    pub(crate) unacked: AckWait,
    /// Several workers: the `health.up` worker 0 last told the others
    /// ([`crate::overlay::Gateway::share_path_states`]).
    pub(crate) shared_up: bool,
    /// Data round-trip time of the flows riding it, queueing included: the
    /// latest sample, or the last larger one decaying by 1/8 per sample.
    /// The ack gap that takes the path down is at least twice this (a
    /// queue that fills at a flow's start is not a dead path).
    pub(crate) data_rtt: Nanos,
    /// Last packet authenticated from its remote (0: none; roaming).
    pub(crate) last_auth: Nanos,
    /// A packet can be sealed for its next gateway (always with security off; refreshed by the
    /// path timers). Only such a path takes traffic when the active one is chosen again: a
    /// path without a session key drops every packet as `no_session`.
    pub(crate) sealable: bool,
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
    /// When data last arrived by `ack_key`.
    pub(crate) ack_seen: Nanos,
    /// When this peer last sent acks of flows that this site relays to it
    /// (a planned waypoint on their last hop): they come back through here,
    /// so the relays can wait for them ([`Gateway::watch_relay`]).
    pub(crate) relayed_acks_at: Option<Nanos>,
}

/// Data that arrived by a hop within this long proves the hop works: acks
/// (and relays toward the data's sender) go back by it whatever the probes
/// say. On a link the plan fills, the probes' echoes queue behind the data
/// and some are lost, and a path manager may hold the reverse path down or
/// degraded while data crosses it; acks sent by a detour instead may find
/// no way on (a waypoint relays over its own direct paths only).
pub(crate) const REVERSE_HOP_FRESH_NS: Nanos = 100_000_000;

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

    /// The candidate reversing the hop this peer's data last arrived by,
    /// when data arrived by it within [`REVERSE_HOP_FRESH_NS`] of `now`.
    #[inline]
    pub(crate) fn reverse_hop(&self, now: Nanos) -> Option<&PeerPath> {
        if now.saturating_sub(self.ack_seen) > REVERSE_HOP_FRESH_NS {
            return None;
        }
        self.ack_path.and_then(|i| self.paths.get(usize::from(i)))
    }

    /// Where acks to this peer go when their flow has no fresh hop of its
    /// own (see [`Self::flow_ack_route`]): the reverse of the hop its data
    /// just came by, else that candidate while it is up, else the active
    /// path. The candidate's index.
    #[inline]
    pub(crate) fn ack_route(&self, now: Nanos) -> Option<usize> {
        if now.saturating_sub(self.ack_seen) <= REVERSE_HOP_FRESH_NS
            && let Some(i) = self.ack_path.map(usize::from)
            && i < self.paths.len()
        {
            return Some(i);
        }
        self.path_for(self.ack_path).map(|(i, _)| i)
    }

    /// Where the acks of a flow go: the reverse of the hop that flow's
    /// data came by (`hop`, when it came within [`REVERSE_HOP_FRESH_NS`]
    /// of `now`, at `seen`), else [`Self::ack_route`]. Per flow, so that
    /// the acks of a source's flows arriving by different hops (one
    /// direct, one relayed by a waypoint) each keep to one way back, in
    /// order: per peer they followed whichever flow's packet came last,
    /// and flipped between a fast hop and one behind a full link's queue
    /// (late acks read as losses at the origin). The candidate's index.
    #[inline]
    pub(crate) fn flow_ack_route(
        &self,
        hop: Option<u16>,
        seen: Nanos,
        now: Nanos,
    ) -> Option<usize> {
        if now.saturating_sub(seen) <= REVERSE_HOP_FRESH_NS
            && let Some(i) = hop.map(usize::from)
            && i < self.paths.len()
        {
            return Some(i);
        }
        self.ack_route(now)
    }

    /// The candidate a planned flow's packets relayed to this peer take: a
    /// direct path that is up (the active one first), else the active path
    /// (a detour only when no direct path is up: a detour could lead back
    /// to a site on the flow's own route).
    pub(crate) fn relay_index(&self) -> Option<usize> {
        if let Some(i) = self.active
            && self
                .paths
                .get(i)
                .is_some_and(|p| p.kind == PathKind::Direct && p.health.up)
        {
            return Some(i);
        }
        self.paths
            .iter()
            .position(|p| p.kind == PathKind::Direct && p.health.up)
            .or(self.active)
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
    /// better path that stayed up the policy's failback time (off while a
    /// control process decides).
    /// Returns `(old, new)` when it moved from one path to another: the
    /// caller restarts the moving flows' rates and, off a path that still
    /// works (a failback), holds them (see [`Gateway::hold_for_move`]).
    pub(crate) fn select(
        &mut self,
        now: Nanos,
        policy: &HealthPolicy,
        failback: bool,
    ) -> Option<(usize, usize)> {
        let usable = |p: &PeerPath| p.health.up && p.sealable;
        let best_up = self.paths.iter().position(usable);
        let cur = self.active;
        let next = match (cur, best_up) {
            (_, None) => cur, // nothing up: keep the last (it may come back)
            (None, Some(b)) => Some(b),
            (Some(c), Some(b)) => {
                let c_up = self.paths.get(c).is_some_and(usable);
                let back =
                    failback && b < c && policy.failback_due(self.paths[b].health.up_since, now);
                if !c_up || back { Some(b) } else { Some(c) }
            }
        };
        if next == cur {
            return None;
        }
        self.set_active(next, now);
        Some((cur?, next?))
    }

    pub(super) fn set_active(&mut self, next: Option<usize>, now: Nanos) {
        self.active = next;
        self.switches += 1;
        self.last_switch = now;
        if let Some(p) = next.and_then(|i| self.paths.get_mut(i)) {
            p.unacked.clear();
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

    /// Calls `f` with the telemetry record of every candidate path at `now`.
    pub fn for_each_path(&self, now: Nanos, mut f: impl FnMut(PathTelemetry)) {
        for (pi, pp) in self.peers.iter().enumerate() {
            for (i, p) in pp.paths.iter().enumerate() {
                f(PathTelemetry {
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
                    rx_recent: pp.ack_path.map(usize::from) == Some(i)
                        && now.saturating_sub(pp.ack_seen) <= REVERSE_HOP_FRESH_NS,
                });
            }
        }
    }

    /// Calls `f` with the status record of every candidate path at `now`
    /// (for the gateway section of the flows file: `mongate status`).
    pub fn for_each_path_record(&self, now: Nanos, mut f: impl FnMut(PathRecord)) {
        let policy = self.settings.health;
        let local = !self.control_drives_paths(now);
        for (pi, pp) in self.peers.iter().enumerate() {
            for (i, p) in pp.paths.iter().enumerate() {
                f(PathRecord {
                    path: path_ref(pi, i),
                    uplink: p.uplink,
                    via: match p.kind {
                        PathKind::Direct => u16::MAX,
                        PathKind::Via(w) => u16::try_from(w).unwrap_or(u16::MAX),
                    },
                    remote: p.remote,
                    state: path_state(&p.health, p.unacked.first(), &policy, local, now),
                    active: pp.active == Some(i),
                    srtt_ns: p.health.srtt_ns,
                    last_probe_ns: p.health.last_probe,
                    last_echo_ns: p.health.last_echo,
                    probes_sent: p.health.probes_sent,
                    echoes: p.health.echoes,
                    downs: p.health.downs,
                    up_since_ns: p.health.up_since,
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
        if f.role != Role::Origin {
            return PATH_NONE;
        }
        f.next_peer
            .and_then(|np| Some((np, self.peers.get(np)?.path_for(f.path)?.0)))
            .map_or(PATH_NONE, |(np, i)| path_ref(np, i))
    }

    /// Notes an ack message from peer `pi`.
    pub(crate) fn note_ack_from_peer(&mut self, pi: usize, now: Nanos) {
        if let Some(pp) = self.peers.get_mut(pi) {
            pp.last_ack = now;
        }
    }

    /// Data of flow `fi` (ending here, or relayed here as its waypoint)
    /// arrived on `port` from `src` at `now`: its acks go back by the
    /// candidate that reverses that hop.
    #[inline]
    pub(crate) fn note_data_arrival(&mut self, fi: usize, port: u16, src: IpAddr, now: Nanos) {
        let Some(sp) = self.flows.get(fi).and_then(|f| f.src_peer) else {
            return;
        };
        self.note_peer_rx(sp, port, src, now);
        // The peer's hop is this packet's now: the flow's own, too.
        let hop = self.peers.get(sp).and_then(|pp| pp.ack_path);
        if let Some(r) = self.flows[fi].receiver.as_mut() {
            r.ack_hop = hop;
            r.ack_hop_seen = now;
        }
    }

    /// Acks relayed here (this site is a detour's waypoint, or on their
    /// flows' route when the destination sends them back that way) came
    /// from peer `sender` on `port` from `src`: that peer's direction back
    /// works, as when its own data arrives, and the path is reported as
    /// having seen traffic (`PathTelemetry::rx_recent`), which vouches for
    /// it against a probe lost in the queue of the data it relays there.
    pub(crate) fn note_relayed_acks(
        &mut self,
        sender: Option<usize>,
        port: u16,
        src: IpAddr,
        now: Nanos,
    ) {
        if let Some(s) = sender {
            self.note_peer_rx(s, port, src, now);
        }
    }

    /// A planned flow's packet was relayed here to its destination `peer` on
    /// candidate `path` (this site is its last waypoint). While that peer's acks of the flows
    /// relayed here come back through here (within
    /// [`REVERSE_HOP_FRESH_NS`]), the path the relays take waits for them
    /// as for this site's own flows: the ack gap takes a dead last hop down
    /// in a moment, not at the next probe (a direct path only). Without such acks (the
    /// destination sends them another way) nothing waits: a wait no ack
    /// would clear would take a working hop down.
    pub(crate) fn watch_relay(&mut self, peer: usize, path: usize, now: Nanos) {
        let Some(pp) = self.peers.get_mut(peer) else {
            return;
        };
        if pp
            .relayed_acks_at
            .is_none_or(|t| now.saturating_sub(t) > REVERSE_HOP_FRESH_NS)
        {
            return;
        }
        // A direct path only: relayed on by a detour the flow's packets
        // reach the destination from the detour's waypoint, and its acks go
        // back from there, not through here.
        if let Some(p) = pp.paths.get_mut(path)
            && p.kind == PathKind::Direct
        {
            p.unacked.on_send(now);
        }
    }

    /// Acks of flows relayed here came from their destination `peer`: the
    /// relays' path to it works ([`Gateway::watch_relay`]).
    pub(crate) fn note_relayed_acks_from_destination(&mut self, peer: usize, now: Nanos) {
        let Some(pp) = self.peers.get_mut(peer) else {
            return;
        };
        pp.relayed_acks_at = Some(now);
        if let Some(i) = pp.relay_index() {
            pp.paths[i].unacked.clear();
        }
    }

    /// Traffic from peer `pi` arrived on `port` from `src`: the candidate
    /// that reverses that hop works, and acks to that peer go back by it.
    fn note_peer_rx(&mut self, pi: usize, port: u16, src: IpAddr, now: Nanos) {
        let Some(pp) = self.peers.get_mut(pi) else {
            return;
        };
        pp.ack_seen = now;
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
            pp.paths[i].unacked.clear();
        }
    }

    /// A hop check of candidate `idx` of `peer` was answered: the flows
    /// riding it that go on past the peer (silent for an ack gap) have their
    /// route out further on; their controllers hold until their next ack
    /// ([`crate::overlay::Origin::route_out`]). A walk of the flows, once
    /// per answered check (at most one per ack gap and path, during an
    /// outage only).
    pub(crate) fn mark_route_out(&mut self, peer: usize, idx: usize) {
        let Some(pp) = self.peers.get(peer) else {
            return;
        };
        for f in &mut self.flows {
            if f.next_peer == Some(peer)
                && f.dest_peer != Some(peer)
                && pp.path_for(f.path).is_some_and(|(i, _)| i == idx)
                && let Some(o) = f.origin.as_mut()
            {
                o.route_out = true;
            }
        }
    }

    /// Notes a data RTT sample of flow `fi` on the path it rides.
    pub(crate) fn note_flow_rtt(&mut self, fi: usize, rtt: Nanos) {
        let Some(f) = self.flows.get(fi) else { return };
        let assigned = f.path;
        if let Some(pp) = f.next_peer.and_then(|np| self.peers.get_mut(np))
            && let Some((i, _)) = pp.path_for(assigned)
        {
            let p = &mut pp.paths[i];
            p.data_rtt = rtt.max(p.data_rtt - p.data_rtt / 8);
        }
    }

    /// Whether an ack entry of flow `fi` may come from peer `sender`: from
    /// the flow's destination (the acks' author), from its next site (a
    /// planned waypoint relays them), or from the waypoint of a detour
    /// toward either (acks come back the way data went, and a destination
    /// sends all of one site's acks on the path that site's data last came
    /// by). `sender` is the authenticated peer once packets are sealed;
    /// anyone else's ack entries are not applied (nor relayed).
    pub(crate) fn ack_sender_ok(&self, fi: usize, sender: Option<usize>) -> bool {
        let (Some(f), Some(s)) = (self.flows.get(fi), sender) else {
            return false;
        };
        let detour_via_sender = |toward: Option<usize>| {
            toward
                .and_then(|t| self.peers.get(t))
                .is_some_and(|pp| pp.paths.iter().any(|p| p.kind == PathKind::Via(s)))
        };
        sender == f.dest_peer
            || sender == f.next_peer
            || detour_via_sender(f.dest_peer)
            || detour_via_sender(f.next_peer)
    }

    /// The peer one of whose gateway addresses is `addr`.
    pub(crate) fn peer_index_of_gateway(&self, addr: IpAddr) -> Option<usize> {
        self.cfg
            .peers
            .iter()
            .position(|p| p.gateways.contains(&addr))
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
        if old == new {
            return;
        }
        let old_up = self
            .peers
            .get(peer)
            .and_then(|pp| pp.paths.get(old))
            .is_some_and(|o| o.health.up);
        // A move off a path that works: what the moving flows sent on it is
        // acked as theirs, and an ack counts for the path a flow rides (the
        // new one), so the old path's wait would never clear and its ack
        // gap would take a working path down. Flows left on it arm it again
        // with their next packets.
        if old_up
            && let Some(o) = self
                .peers
                .get_mut(peer)
                .and_then(|pp| pp.paths.get_mut(old))
        {
            o.unacked.clear();
        }
        // Off a failed path onto a detour the plan left `spare` on: the
        // moving flows share that, by target, until the next plan (the
        // detour's own flows keep their plan). Else the moving flows'
        // controllers learnt the old path's loss: on the new one they start
        // again from the plan (no lower than the target x
        // `initial_fraction`), as a flow does when it first gets a target.
        // Without this a flow leaving a lossy path kept the rate the loss
        // had cut it to (down to x_min) on a clean one.
        let spare = match self.peers.get(peer).and_then(|pp| pp.paths.get(new)) {
            Some(p) if !old_up && self.settings.detour_share => match p.kind {
                PathKind::Via(v) => self
                    .detour_pps
                    .get(peer * self.peers.len() + v)
                    .copied()
                    .filter(|d| d.is_finite()),
                PathKind::Direct => None,
            },
            _ => None,
        };
        if let Some(spare) = spare {
            self.share_detour(peer, old, only, spare, now);
        } else {
            for fi in 0..self.flows.len() {
                if self.moves(fi, peer, old, old_up, only) {
                    self.restart_rate(fi, now);
                }
            }
        }
        // Off a failed path, each moving flow's first packet leaves by the
        // new one at once (not a gap later at a rate just cut).
        if !old_up && self.settings.detour_share {
            for fi in 0..self.flows.len() {
                if self.moves(fi, peer, old, old_up, only) {
                    self.pacing.release_now(QueueId::flow(fi).0, now);
                }
            }
        }
        // A failover needs no hold (the old path's packets are lost anyway).
        let Some(pp) = self.peers.get(peer) else {
            return;
        };
        let (Some(o), Some(n)) = (pp.paths.get(old), pp.paths.get(new)) else {
            return;
        };
        if !old_up {
            return;
        }
        // How much sooner the new path delivers: the probes' estimate, or
        // (larger when data queues on the old path, in a shaper or at a
        // waypoint, where the probes do not wait) the old path's data RTT
        // over the new one's probe RTT. Held that long, the moving flows'
        // first packets on the new path do not overtake their last ones on
        // the old (seen: 57 ms of queue on a detour, 23 packets of each
        // session out of order at the failback).
        // The data RTT is an ack's worth old when the move happens, and a
        // queue filling on the old path grows meanwhile: half again, plus
        // a millisecond (seen: one packet in 3000 overtaken at a failback
        // with the bare estimate).
        let d_probe = one_way_estimate(o).saturating_sub(one_way_estimate(n));
        let d_data = o.data_rtt.saturating_sub(n.health.srtt_ns);
        let d = d_probe.max(d_data + d_data / 2 + 1_000_000 * u64::from(d_data > 0));
        let d = d.min(MAX_HOLD_NS);
        if d == 0 {
            return;
        }
        for fi in 0..self.flows.len() {
            if self.moves(fi, peer, old, old_up, only) {
                self.pacing.hold(QueueId::flow(fi).0, now.saturating_add(d));
            }
        }
    }

    /// The flows moving toward `peer` off the failed candidate `old` onto a
    /// detour with `spare` packets/s left by the plan: each flow's rate is
    /// at most its share of `spare`, in proportion to the targets (evenly
    /// among flows without one), and no less than its target x
    /// `detour_min_fraction`. A flow already slower keeps its rate.
    fn share_detour(
        &mut self,
        peer: usize,
        old: usize,
        only: Option<usize>,
        spare: f64,
        now: Nanos,
    ) {
        let (mut total, mut count) = (0.0, 0u32);
        for fi in 0..self.flows.len() {
            if self.moves(fi, peer, old, false, only)
                && let Some(o) = self.flows[fi].origin.as_ref()
            {
                total += o.target_pps;
                count += 1;
            }
        }
        if count == 0 {
            return;
        }
        for fi in 0..self.flows.len() {
            if !self.moves(fi, peer, old, false, only) {
                continue;
            }
            let Some(o) = self.flows[fi].origin.as_mut() else {
                continue;
            };
            let share = if total > 0.0 {
                spare * o.target_pps / total
            } else {
                spare / f64::from(count)
            }
            .max(o.target_pps * self.settings.detour_min_fraction);
            if o.ctl.rate() > share {
                o.ctl.set_rate(share);
                let rate = o.ctl.rate();
                self.pacing.set_rate(QueueId::flow(fi).0, rate, now);
                self.stats.detour_shares += 1;
            }
        }
    }

    /// Whether flow `fi` of this site moves with a move toward `peer` off
    /// candidate `old`: `only` that flow, else the flows following the
    /// peer's default path and, when `old` is down, those assigned to it
    /// (they fall back to the default; while it is up they stay on it).
    fn moves(&self, fi: usize, peer: usize, old: usize, old_up: bool, only: Option<usize>) -> bool {
        let Some(f) = self.flows.get(fi) else {
            return false;
        };
        if f.role != Role::Origin || f.next_peer != Some(peer) {
            return false;
        }
        match only {
            Some(x) => x == fi,
            None => f.path.is_none_or(|p| !old_up && usize::from(p) == old),
        }
    }

    /// A path reference naming an existing candidate.
    pub(super) fn checked_ref(&self, r: u32) -> Option<(usize, usize)> {
        let (peer, i) = split_path_ref(r);
        self.peers.get(peer)?.paths.get(i)?;
        Some((peer, i))
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;

    #[test]
    fn path_states_for_the_status_view() {
        let policy = HealthPolicy {
            probe_interval_ns: 50,
            down_after_ns: 150,
            ack_gap_ns: 60,
            failback_after_ns: 1000,
        };
        let up = PathHealth {
            up: true,
            last_echo: 1000,
            ..PathHealth::default()
        };
        assert_eq!(path_state(&up, None, &policy, true, 1050), state::UP);
        // Silent beyond half the down time: suspect when we judge alone.
        assert_eq!(path_state(&up, None, &policy, true, 1076), state::SUSPECT);
        assert_eq!(path_state(&up, None, &policy, false, 1076), state::UP);
        // Acks late beyond half the ack gap: suspect either way.
        assert_eq!(
            path_state(&up, Some(1000), &policy, false, 1031),
            state::SUSPECT
        );
        assert_eq!(path_state(&up, Some(1000), &policy, false, 1029), state::UP);
        let down = PathHealth { up: false, ..up };
        assert_eq!(path_state(&down, None, &policy, true, 1000), state::DOWN);
        let held = PathHealth { held: true, ..down };
        assert_eq!(path_state(&held, None, &policy, true, 1000), state::HELD);
        // A held path that answered again is up: the flag alone says nothing.
        let back = PathHealth { up: true, ..held };
        assert_eq!(path_state(&back, None, &policy, true, 1000), state::UP);
    }

    #[test]
    fn the_ack_wait_times_from_the_fourth_packet_since_the_last_ack() {
        let mut w = AckWait::default();
        assert_eq!((w.first(), w.gap_from()), (None, None));
        w.on_send(100);
        assert_eq!((w.first(), w.gap_from()), (Some(100), None));
        for t in [350, 600] {
            w.on_send(t);
            assert_eq!((w.first(), w.gap_from()), (Some(100), None));
        }
        w.on_send(850);
        w.on_send(1100);
        assert_eq!((w.first(), w.gap_from()), (Some(100), Some(850)));
        // A stall moves both on, never past now.
        w.shift(50, 880);
        assert_eq!((w.first(), w.gap_from()), (Some(150), Some(880)));
        w.clear();
        assert_eq!(w, AckWait::default());
        w.on_send(1200);
        assert_eq!((w.first(), w.gap_from()), (Some(1200), None));
    }

    #[test]
    fn the_flows_going_on_past_the_peer_wait_apart_and_a_hop_check_answers_for_them() {
        let mut w = AckWait::default();
        for t in [100, 200, 300] {
            w.on_relayed_send(t);
        }
        assert_eq!(
            (w.first(), w.gap_from(), w.relayed_gap_from()),
            (Some(100), None, None)
        );
        w.on_relayed_send(400);
        // Their silence is not the direct ack gap.
        assert_eq!((w.gap_from(), w.relayed_gap_from()), (None, Some(400)));
        // A check out: no second one is due; an echo of a probe sent before
        // it answers nothing, one sent since answers it.
        w.start_check(500);
        assert_eq!((w.relayed_gap_from(), w.check()), (None, Some(500)));
        assert!(!w.hop_answered(499));
        assert_eq!(w.check(), Some(500));
        assert!(w.hop_answered(500));
        assert_eq!(w, AckWait::default());
        // The direct flows' wait survives an answered check.
        for t in [600, 700, 800, 900] {
            w.on_relayed_send(t);
            w.on_send(t + 1);
        }
        w.start_check(1000);
        w.shift(50, 1020);
        assert_eq!(w.check(), Some(1020));
        assert!(w.hop_answered(1030));
        assert_eq!(
            (w.first(), w.gap_from(), w.check()),
            (Some(650), Some(951), None)
        );
        assert_eq!(w.relayed_gap_from(), None);
        // An ack clears both.
        w.on_relayed_send(1100);
        w.clear();
        assert_eq!(w, AckWait::default());
    }
}
