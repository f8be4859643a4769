//! The failover driver: the MONET path manager ([`PathManager`]) driven by the live dataplane's
//! failover reflex (`mongate_dataplane::overlay::failover`): pure glue, time as an argument, no
//! I/O (the loop in [`crate::run::io`] moves the messages).
//!
//! - **What the paths are** comes from the dataplane ([`Telemetry::Paths`](mongate_dataplane::shm::Telemetry::Paths)): each candidate
//!   (local uplink, optional waypoint peer, remote address) toward a peer, named by its
//!   reference `peer << 16 | index`. Every new reference is registered with the manager (a new
//!   destination starts a race at once).
//! - **Probes**: the manager's [`Action::Probe`] becomes a [`Command::Probe`] of one probe whose
//!   id carries (path id, sequence number); the dataplane's [`Telemetry::ProbeResult`](mongate_dataplane::shm::Telemetry::ProbeResult) becomes a
//!   reply (with the dataplane's RTT) or a timeout.
//! - **Failure signals**: the dataplane's ack gap ([`PathEventKind::AckGap`]) makes the path
//!   suspect at once; per-flow acks and losses, summed per path over windows of at least
//!   [`FEEDBACK_MIN_PACKETS`] packets or [`FEEDBACK_MAX_AGE`], are the data feedback that
//!   catches a lossy path the probes alone would call up.
//! - **Decisions**: [`Action::MoveFlows`] becomes [`Command::Assign`]s: the peer's default path
//!   and every flow of this site leaving toward that peer; they are kept and resent after a
//!   re-attach (a restarted dataplane starts from its own choice). A path the manager holds
//!   down is marked down in the dataplane too ([`FLOW_MARK_DOWN`], and [`FLOW_MARK_UP`] when it
//!   recovers), so the dataplane's ack-gap reflex never falls back on it. A path that reflex
//!   dropped (an ack gap) stays down in the dataplane until an assignment or an up mark: it is
//!   marked up once the manager holds it up again. [`Action::ReportLinks`]
//!   becomes link states for PFO: the instance link between this site and a peer is failed when
//!   every direct path to the peer is failed or degraded.

use std::collections::BTreeMap;

use mongate_dataplane::config::Config;
use mongate_dataplane::overlay::failover::{
    FLOW_MARK_DOWN, FLOW_MARK_UP, FLOW_PEER_DEFAULT, PATH_NONE, PathEventKind, PathTelemetry,
};
use mongate_dataplane::shm::Command;
use mongate_dataplane::shm::msg::{ASSIGN_PER_MSG, Assignment, FlowTelemetry};

use super::{
    Action, AddrId, ConfigError, MS, Nanos, PathConfig, PathId, PathKey, PathManager, PathState,
    PathView, SiteId, UplinkConfig, UplinkId,
};

/// Data feedback is passed on once a path's window holds this many packets ...
pub const FEEDBACK_MIN_PACKETS: u64 = 200;
/// ... or is this old (and holds any).
pub const FEEDBACK_MAX_AGE: Nanos = 500 * MS;

/// Counters of the driver (inputs it could not use, decisions it passed on).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Path records naming a peer, uplink or waypoint the configuration does not have.
    pub bad_paths: u64,
    /// Path records refused by the manager (duplicate key, too many paths).
    pub refused_paths: u64,
    /// Probe results whose id or path is not one of ours.
    pub unknown_results: u64,
    /// Probe commands the dataplane refused (`sent = 0`).
    pub refused_probes: u64,
    /// Path events naming an unknown path.
    pub unknown_events: u64,
    /// Flow records whose counters went backwards (a restarted dataplane): baseline reset.
    pub counter_resets: u64,
    /// Flow records naming no flow of the configuration (ignored).
    pub unknown_flows: u64,
    /// Moves of a peer's traffic decided by the manager.
    pub moves: u64,
}

/// Path decisions for the dataplane of one site.
pub struct FailoverDriver {
    mgr: PathManager,
    npeers: usize,
    nuplinks: usize,
    nflows: usize,
    /// Gateway addresses per peer (for the key's remote address check).
    peer_gateways: Vec<usize>,
    /// Flows starting at this site, by the peer they leave toward.
    flows_by_peer: Vec<Vec<u32>>,
    /// Path id (index) -> dataplane reference.
    refs: Vec<u32>,
    ids: BTreeMap<u32, PathId>,
    /// Whether each registered path is direct, and its peer.
    path_peer: Vec<(usize, bool)>,
    /// Wanted default path per peer and whether the dataplane has it.
    wanted: Vec<Option<(u32, bool)>>,
    /// Per path id: held down in the dataplane's view as last told (None: not told yet; the
    /// first tick after a registration or a re-attach tells every path's state).
    marked_down: Vec<Option<bool>>,
    /// Down / up marks to send: (reference, down).
    marks: Vec<(u32, bool)>,
    /// Per path id: dropped by the dataplane's ack-gap reflex (it holds the path down until an
    /// assignment or an up mark raises it).
    reflex_down: Vec<bool>,
    /// Last cumulative (acks, losses) and path per (worker, flow).
    flow_last: BTreeMap<(usize, u32), (u64, u64, u32)>,
    /// Feedback window per path reference: (acked, lost, opened at).
    windows: BTreeMap<u32, (u64, u64, Nanos)>,
    /// Link state per peer as last reported (None: never).
    link_failed: Vec<Option<bool>>,
    /// Per peer, at the last report: its direct paths down, and degraded.
    link_why: Vec<(usize, usize)>,
    /// Per peer, the state of the path its traffic last left, when it left (for the log).
    move_why: Vec<Option<String>>,
    link_changes: Vec<(usize, bool)>,
    probes: Vec<Command>,
    stats: DriverStats,
    /// Take over the dataplane's active paths (set at attach: a control ran before).
    adopt_dataplane_paths: bool,
}

/// The manager's configuration for a site: its uplinks at their configured capacity (the
/// probe budget is a share of it), the defaults of [`PathConfig`] otherwise, except a probe
/// timeout floor of 200 ms (as TCP's minimum RTO on Linux: a probe that crosses a link its own
/// site's flows fill waits behind their data in the bottleneck's queue, and the queue of an
/// idle path fills within a few hundred ms of the flows starting; with the 60 ms floor before,
/// RTT samples of 0.3 ms then 52-56 ms made probes time out at `--scenario imprecise`'s start
/// and the managers moved A's traffic to C, or C's to A, via B for the rest of the run in 4
/// of 26 runs here and in both runs of one CI job), a data-loss threshold above
/// the loss MONtra's probing itself causes at a bottleneck (up to ~15 %), in reports in a row
/// over 2 s (on a link PFO over-estimates, the flows starting at their targets lose 30-40 % for
/// about a second: `--scenario imprecise` moved A's traffic to C via B at start); and
/// optimisation moves (returns) to direct paths only. PFO plans the routes and MONtra fills
/// the links it planned up to the loss budget, so the direct path's RTT (the queue) and loss
/// rise with the planned load while a waypoint's probes stay clean: after 32 s
/// (`return_clean_probes`) the manager moved A's traffic to C, the direct flow included, via
/// B onto the 5 Mbit/s B-C link the via-B flow already filled (`--scenario imprecise`, both
/// runs, ~31 s). A waypoint is taken when the direct paths fail.
pub fn site_path_config(config: &Config) -> PathConfig {
    let uplinks = config
        .uplinks
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let bytes = (u.capacity_mbps.max(1.0) * 1e6 / 8.0).min(1e15);
            UplinkConfig {
                id: UplinkId(u16::try_from(i).unwrap_or(u16::MAX)),
                // Finite, positive and far below 2^64 (clamped above).
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                capacity_bytes_per_s: bytes as u64,
                cost: 0,
            }
        })
        .collect();
    PathConfig {
        uplinks,
        probe_timeout_min: 200 * MS,
        bad_feedback_loss: 0.3,
        bad_feedback_reports: 2,
        bad_feedback_hold: 2_000 * MS,
        // A flow at its floor sends a few packets per 500 ms report: 1 lost of 3 is 33 %, two
        // such reports failed the path, and a waypoint whose own flow sat at the floor moved
        // the flow it relays onto a detour (`--scenario partition`: B's traffic to C via A
        // after the rejoin, its path log: every probe answered, loss 0.30).
        bad_feedback_min_lost: 3,
        return_via_waypoint: false,
        degrade_loss: 0.3,
        // 64 probes/s (49 kbit/s) at least: what a 10 Mbit/s uplink gets.
        budget_floor_bytes_per_s: 64 * 96,
        ..PathConfig::default()
    }
}

/// Assignments in as few messages as they fit.
fn assign_commands(items: &[Assignment]) -> Vec<Command> {
    items
        .chunks(ASSIGN_PER_MSG)
        .map(|c| {
            let mut a = [Assignment::default(); ASSIGN_PER_MSG];
            a[..c.len()].copy_from_slice(c);
            Command::Assign {
                count: u32::try_from(c.len()).unwrap_or(0),
                items: a,
            }
        })
        .collect()
}

fn probe_id(p: PathId, seq: u32) -> u64 {
    u64::from(p.0) << 32 | u64::from(seq)
}

impl FailoverDriver {
    /// A driver for the site `config` describes.
    pub fn new(
        config: &Config,
        pcfg: PathConfig,
        seed: u64,
        now: Nanos,
    ) -> Result<Self, ConfigError> {
        let npeers = config.peers.len();
        let me = config.site.name.as_str();
        let mut flows_by_peer = vec![Vec::new(); npeers];
        for (fi, f) in config.flows.iter().enumerate() {
            if f.route.first().map(String::as_str) != Some(me) {
                continue;
            }
            let next = f
                .route
                .get(1)
                .and_then(|s| config.peers.iter().position(|p| p.name == *s));
            if let (Some(np), Ok(fi)) = (next, u32::try_from(fi)) {
                flows_by_peer[np].push(fi);
            }
        }
        Ok(Self {
            mgr: PathManager::new(pcfg, seed, now)?,
            npeers,
            nuplinks: config.uplinks.len(),
            nflows: config.flows.len(),
            peer_gateways: config.peers.iter().map(|p| p.gateways.len()).collect(),
            flows_by_peer,
            refs: Vec::new(),
            ids: BTreeMap::new(),
            path_peer: Vec::new(),
            wanted: vec![None; npeers],
            marked_down: Vec::new(),
            marks: Vec::new(),
            reflex_down: Vec::new(),
            flow_last: BTreeMap::new(),
            windows: BTreeMap::new(),
            link_failed: vec![None; npeers],
            link_why: vec![(0, 0); npeers],
            move_why: vec![None; npeers],
            link_changes: Vec::new(),
            probes: Vec::new(),
            stats: DriverStats::default(),
            adopt_dataplane_paths: false,
        })
    }

    /// The manager (states, estimates, its own counters).
    pub fn manager(&self) -> &PathManager {
        &self.mgr
    }

    /// The driver's counters.
    pub fn stats(&self) -> &DriverStats {
        &self.stats
    }

    /// Paths known so far.
    pub fn path_count(&self) -> usize {
        self.refs.len()
    }

    /// The manager's id of a dataplane path reference.
    pub fn path_id(&self, r: u32) -> Option<PathId> {
        self.ids.get(&r).copied()
    }

    /// The dataplane reference the manager wants peer `peer`'s traffic on.
    pub fn wanted_path(&self, peer: usize) -> Option<u32> {
        self.wanted.get(peer).copied().flatten().map(|w| w.0)
    }

    /// Candidate paths as the dataplane reports them.
    pub fn on_paths(&mut self, items: &[PathTelemetry], now: Nanos) {
        for p in items {
            if let Some(&id) = self.ids.get(&p.path) {
                if p.rx_recent {
                    self.mgr.on_data_received(id, now);
                }
                continue;
            }
            let peer = usize::try_from(p.path >> 16).unwrap_or(usize::MAX);
            let via = (p.via != u16::MAX).then_some(usize::from(p.via));
            // The remote address belongs to the peer the packets are sent to.
            let sent_to = via.unwrap_or(peer);
            let ok = peer < self.npeers
                && usize::from(p.uplink) < self.nuplinks
                && via.is_none_or(|w| w < self.npeers && w != peer)
                && usize::from(p.remote) < self.peer_gateways.get(sent_to).copied().unwrap_or(0);
            if !ok {
                self.stats.bad_paths += 1;
                continue;
            }
            let key = PathKey {
                dst: SiteId(u32::try_from(peer).unwrap_or(u32::MAX)),
                uplink: UplinkId(p.uplink),
                waypoint: via.map(|w| SiteId(u32::try_from(w).unwrap_or(u32::MAX))),
                remote: AddrId(u32::from(p.remote)),
            };
            match self.mgr.add_path(key, now) {
                Ok(id) => {
                    self.ids.insert(p.path, id);
                    let i = usize::try_from(id.0).unwrap_or(usize::MAX);
                    if self.refs.len() <= i {
                        self.refs.resize(i + 1, PATH_NONE);
                        self.path_peer.resize(i + 1, (usize::MAX, false));
                    }
                    self.refs[i] = p.path;
                    self.path_peer[i] = (peer, via.is_none());
                }
                Err(_) => self.stats.refused_paths += 1,
            }
        }
        // After a control's restart, the dataplane's active paths that it reports up and
        // answering are kept (a restart changes nothing that works; the manager ignores them
        // once it has chosen). A dataplane's first control races: what the dataplane chose
        // alone before any control is not the control's policy.
        let adopt = self.adopt_dataplane_paths;
        for p in items
            .iter()
            .filter(|p| adopt && p.active && p.up && p.srtt_us > 0)
        {
            if let Some(&id) = self.ids.get(&p.path) {
                self.mgr.adopt_active(id, now);
            }
        }
        self.collect(now);
    }

    fn known(&self, id: u64, path: u32) -> Option<(PathId, u32)> {
        let pid = PathId(u32::try_from(id >> 32).ok()?);
        let seq = u32::try_from(id & 0xFFFF_FFFF).ok()?;
        let i = usize::try_from(pid.0).ok()?;
        (self.refs.get(i) == Some(&path)).then_some((pid, seq))
    }

    /// The outcome of one of our probe commands.
    pub fn on_probe_result(
        &mut self,
        id: u64,
        path: u32,
        sent: u32,
        received: u32,
        rtt_min_ns: u64,
        now: Nanos,
    ) {
        let Some((pid, seq)) = self.known(id, path) else {
            self.stats.unknown_results += 1;
            return;
        };
        if sent == 0 {
            self.stats.refused_probes += 1;
            self.mgr.on_probe_refused(pid, seq, now);
        } else if received > 0 {
            self.mgr.on_probe_reply_measured(pid, seq, rtt_min_ns, now);
        } else {
            self.mgr.on_probe_timeout(pid, seq, now);
        }
        self.collect(now);
    }

    /// Something the dataplane saw happen to a path.
    pub fn on_path_event(&mut self, path: u32, event: PathEventKind, now: Nanos) {
        let Some(&pid) = self.ids.get(&path) else {
            self.stats.unknown_events += 1;
            return;
        };
        match event {
            PathEventKind::AckGap => {
                // The dataplane dropped the path: it stays down there until we raise it.
                self.reflex_down.resize(self.refs.len(), false);
                let i = usize::try_from(pid.0).unwrap_or(usize::MAX);
                if let Some(d) = self.reflex_down.get_mut(i) {
                    *d = true;
                }
                self.mgr.on_ack_gap(pid, now);
            }
            // Our own probes will tell; an echo to anyone's probe is not a verdict.
            PathEventKind::Up => {}
        }
        self.collect(now);
    }

    /// Per-flow telemetry of worker `worker`: acks and losses per path.
    pub fn on_flows(&mut self, worker: usize, items: &[FlowTelemetry], now: Nanos) {
        for f in items {
            // The map below is keyed by flow: only the configuration's flows may grow it.
            if usize::try_from(f.flow).map_or(true, |i| i >= self.nflows) {
                self.stats.unknown_flows += 1;
                continue;
            }
            let last = self
                .flow_last
                .insert((worker, f.flow), (f.acks, f.losses, f.path));
            let Some((a0, l0, p0)) = last else { continue };
            if p0 != f.path {
                // The flow left that path: what its window holds is about packets sent before
                // the move (acks of data in flight at a cut would vouch for a dead path).
                self.windows.remove(&p0);
                continue;
            }
            if f.acks < a0 || f.losses < l0 {
                self.stats.counter_resets += 1;
                continue;
            }
            let (da, dl) = (f.acks - a0, f.losses - l0);
            let Some(&pid) = self.ids.get(&f.path).filter(|_| f.path != PATH_NONE) else {
                continue;
            };
            if da + dl == 0 {
                continue;
            }
            if da > 0 {
                self.mgr.on_data_acked(pid, now);
            }
            let w = self.windows.entry(f.path).or_insert((0, 0, now));
            w.0 += da;
            w.1 += dl;
        }
        let due: Vec<u32> = self
            .windows
            .iter()
            .filter(|(_, w)| {
                let n = w.0 + w.1;
                n >= FEEDBACK_MIN_PACKETS || (n > 0 && now.saturating_sub(w.2) >= FEEDBACK_MAX_AGE)
            })
            .map(|(r, _)| *r)
            .collect();
        for r in due {
            if let (Some(w), Some(&pid)) = (self.windows.remove(&r), self.ids.get(&r)) {
                self.mgr.on_data_feedback(pid, w.0, w.1, now);
            }
        }
        self.collect(now);
    }

    /// Runs the manager's timers when due; notes paths that went down or came back.
    pub fn tick(&mut self, now: Nanos) {
        if self.mgr.poll_timeout().is_some_and(|t| t <= now) {
            self.mgr.handle_timeout(now);
        }
        self.collect(now);
        self.marked_down.resize(self.refs.len(), None);
        self.reflex_down.resize(self.refs.len(), false);
        for (i, marked) in self.marked_down.iter_mut().enumerate() {
            let Ok(id) = u32::try_from(i) else { break };
            let state = self.mgr.path_state(PathId(id));
            let down = state == Some(PathState::Down);
            // A path the reflex dropped is raised once the manager holds it up again (not
            // while it is only suspect: its flows may still be assigned to it), so that the
            // dataplane counts it as a direct path up again and may fall back on it.
            let raise = self.reflex_down[i] && state == Some(PathState::Up);
            if *marked != Some(down) || raise {
                *marked = Some(down);
                self.reflex_down[i] = false;
                self.marks.push((self.refs[i], down));
            }
        }
    }

    /// Down / up marks for the dataplane (one worker's view is every worker's: broadcast).
    pub fn take_marks(&mut self) -> Vec<Command> {
        let items: Vec<Assignment> = self
            .marks
            .drain(..)
            .map(|(path, down)| Assignment {
                flow: if down { FLOW_MARK_DOWN } else { FLOW_MARK_UP },
                path,
            })
            .collect();
        assign_commands(&items)
    }

    /// Whether the dataplane's active paths, reported up and answering, are taken over as
    /// its destinations' first decisions: on an attach to a dataplane that a control drove
    /// before ([`mongate_dataplane::shm::ControlPort::earlier_sessions`]).
    pub fn set_adopt_dataplane_paths(&mut self, on: bool) {
        self.adopt_dataplane_paths = on;
    }

    /// The dataplane was (re-)attached: it must be told every decision again.
    pub fn resync(&mut self) {
        for w in self.wanted.iter_mut().flatten() {
            w.1 = false;
        }
        // The dataplane's own view may be anything (it chose alone while we were away, or it
        // restarted): tell it every path's state again.
        self.marked_down.iter_mut().for_each(|m| *m = None);
        self.reflex_down.iter_mut().for_each(|d| *d = false);
        self.marks.clear();
        self.flow_last.clear();
        self.windows.clear();
    }

    /// Probe commands to send now (to one worker).
    pub fn take_probes(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.probes)
    }

    /// Assignments the dataplane does not have yet, per peer; call
    /// [`Self::assigned`] once a peer's commands are sent.
    pub fn pending_assignments(&self) -> Vec<(usize, Vec<Command>)> {
        let mut out = Vec::new();
        for (peer, w) in self.wanted.iter().enumerate() {
            let Some((r, false)) = *w else { continue };
            let mut items: Vec<Assignment> = vec![Assignment {
                flow: FLOW_PEER_DEFAULT,
                path: r,
            }];
            items.extend(
                self.flows_by_peer[peer]
                    .iter()
                    .map(|&flow| Assignment { flow, path: r }),
            );
            let cmds = assign_commands(&items);
            out.push((peer, cmds));
        }
        out
    }

    /// The assignments of `peer` reached the dataplane.
    pub fn assigned(&mut self, peer: usize) {
        if let Some(Some(w)) = self.wanted.get_mut(peer) {
            w.1 = true;
            // An assignment raises its path in the dataplane.
            let r = w.0;
            if let Some(&id) = self.ids.get(&r)
                && let Some(d) = usize::try_from(id.0)
                    .ok()
                    .and_then(|i| self.reflex_down.get_mut(i))
            {
                *d = false;
            }
        }
    }

    /// Peer `peer`'s direct paths down and degraded at the manager's last report.
    pub fn link_why(&self, peer: usize) -> (usize, usize) {
        self.link_why.get(peer).copied().unwrap_or((0, 0))
    }

    /// Why peer `peer`'s traffic last moved (the state of the path it left, when it left),
    /// once: a later log line of the same peer without a new move has none.
    pub fn take_move_why(&mut self, peer: usize) -> Option<String> {
        self.move_why.get_mut(peer).and_then(Option::take)
    }

    /// Link state changes for PFO since the last call: (peer, failed).
    pub fn take_link_changes(&mut self) -> Vec<(usize, bool)> {
        std::mem::take(&mut self.link_changes)
    }

    fn collect(&mut self, now: Nanos) {
        while let Some(a) = self.mgr.poll_action() {
            match a {
                Action::Probe { path, seq } => {
                    let i = usize::try_from(path.0).unwrap_or(usize::MAX);
                    if let Some(&r) = self.refs.get(i) {
                        self.probes.push(Command::Probe {
                            id: probe_id(path, seq),
                            path: r,
                            count: 1,
                            interval_ns: 0,
                        });
                    }
                }
                Action::MoveFlows { dst_site, from, to } => {
                    let peer = usize::try_from(dst_site.0).unwrap_or(usize::MAX);
                    let i = usize::try_from(to.0).unwrap_or(usize::MAX);
                    let why = from
                        .and_then(|f| self.mgr.path_view(f))
                        .map(|v| why_left(&v, self.mgr.path_view(to).as_ref(), now));
                    if let Some(w) = self.move_why.get_mut(peer) {
                        *w = why;
                    }
                    if let (Some(w), Some(&r)) = (self.wanted.get_mut(peer), self.refs.get(i)) {
                        *w = Some((r, false));
                        self.stats.moves += 1;
                    }
                }
                Action::ReportLinks { failed, degraded } => {
                    for peer in 0..self.npeers {
                        let direct: Vec<PathId> = self
                            .path_peer
                            .iter()
                            .enumerate()
                            .filter(|(_, (p, d))| *p == peer && *d)
                            .filter_map(|(i, _)| u32::try_from(i).ok().map(PathId))
                            .collect();
                        if direct.is_empty() {
                            continue;
                        }
                        let bad = direct
                            .iter()
                            .all(|p| failed.contains(p) || degraded.contains(p));
                        if let Some(w) = self.link_why.get_mut(peer) {
                            *w = (
                                direct.iter().filter(|p| failed.contains(p)).count(),
                                direct.iter().filter(|p| degraded.contains(p)).count(),
                            );
                        }
                        if self.link_failed[peer] != Some(bad) {
                            // Nothing to tell PFO before the first failure.
                            if self.link_failed[peer].is_some() || bad {
                                self.link_changes.push((peer, bad));
                            }
                            self.link_failed[peer] = Some(bad);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

/// The state of the path traffic left, and of the one it took, for the log: health state and
/// for how long, the last probes (newest last: 1 answered, 0 lost), the loss average, the
/// last success and failure signal (lost probe, ack gap, bad data report) ago, the ranks.
fn why_left(from: &PathView, to: Option<&PathView>, now: Nanos) -> String {
    let ago = |t: Option<Nanos>| {
        t.map_or("never".to_string(), |t| {
            format!("{} ms ago", now.saturating_sub(t) / 1_000_000)
        })
    };
    let (bits, len) = from.history;
    let last: String = (0..len.min(8))
        .rev()
        .map(|i| if bits >> i & 1 == 1 { '1' } else { '0' })
        .collect();
    format!(
        "left a path {:?} for {} ms, last probes {last}, loss {:.2}, last success {}, last failure {}, rank {:.1} -> {:.1}",
        from.state,
        now.saturating_sub(from.state_since) / 1_000_000,
        from.loss,
        ago(from.last_success),
        ago(from.last_failure),
        from.rank,
        to.map_or(f64::NAN, |t| t.rank),
    )
}
