//! The path manager: per-path health and estimators, MONET waypoint selection (staggered races),
//! background probing within a budget, return to better paths with hysteresis, reports to PFO.
//!
//! Sans-I/O in the style of `quinn-proto`: the driver feeds inputs (`on_*`), calls
//! [`PathManager::handle_timeout`] when [`PathManager::poll_timeout`] expires, and drains
//! [`PathManager::poll_action`] after every call. Time is always an argument.

use std::collections::{BTreeMap, VecDeque};

use mongate_dataplane::pacing::TokenBucket;
use mongate_dataplane::sys::rng::SplitMix64;

use super::config::{ConfigError, PathConfig, UplinkConfig};
use super::estimate::{History, LossEwma, RttEstimator};
use super::health::{Health, PathState};
use super::ids::{MS, Nanos, PathId, PathKey, SEC, SiteId, UplinkId};
use super::rank::{RankInput, rank_cost};

/// A decision for the dataplane or PFO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send probe `seq` on `path` (and report the reply or its absence).
    Probe {
        /// Path to probe.
        path: PathId,
        /// Probe sequence number (per path, wrapping).
        seq: u32,
    },
    /// Move the flows toward `dst_site` from `from` (if any) to `to`. `from == Some(to)`: the
    /// dataplane's reflex took the flows off `to` (an ack gap) and the manager keeps it; they
    /// go back to it.
    MoveFlows {
        /// Destination site.
        dst_site: SiteId,
        /// Previously active path.
        from: Option<PathId>,
        /// New active path.
        to: PathId,
    },
    /// The failed and degraded paths changed: PFO should plan around them. Both lists sorted.
    ReportLinks {
        /// Paths that are down.
        failed: Vec<PathId>,
        /// Paths that work but lose at least `degrade_loss` (until their loss is below half of it).
        degraded: Vec<PathId>,
    },
}

/// Counters: ignored inputs (by reason) and decisions taken.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathStats {
    /// Inputs naming a path id that was never registered.
    pub unknown_path: u64,
    /// Link events naming an unconfigured uplink.
    pub unknown_uplink: u64,
    /// Replies to probes not outstanding (never sent, already answered, timed out, forged).
    pub unmatched_reply: u64,
    /// Timeouts of probes not outstanding.
    pub unmatched_timeout: u64,
    /// Sent-confirmations of probes not outstanding.
    pub unmatched_sent: u64,
    /// Absurd RTTs (negative, zero, above `max_plausible_rtt`, larger than elapsed time).
    pub absurd_rtt: u64,
    /// Calls whose `now` was earlier than a previous call's (clamped to the latest).
    pub time_regressions: u64,
    /// Data feedback with nothing acked nor lost.
    pub empty_feedback: u64,
    /// Data feedback on a path whose uplink has no carrier.
    pub feedback_on_dead_uplink: u64,
    /// Outstanding probes evicted (declared lost) because too many were outstanding.
    pub evicted_probes: u64,
    /// Actions dropped because the driver did not drain the queue.
    pub dropped_actions: u64,
    /// Probes emitted (background and race).
    pub probes_sent: u64,
    /// Race probes among them.
    pub race_probes: u64,
    /// Races started.
    pub races_started: u64,
    /// Races ended by an answer.
    pub races_won: u64,
    /// Races where no candidate answered.
    pub races_failed: u64,
    /// Moves after a failure (race win or active path down).
    pub failover_moves: u64,
    /// Moves back to a better path (hysteresis satisfied).
    pub return_moves: u64,
    /// Recoveries from down after a clean cut (the fast return rule applies).
    pub clean_repairs: u64,
    /// Data feedback reports at a bad loss rate but with fewer than `bad_feedback_min_lost`
    /// losses: ignored.
    pub inconclusive_feedback: u64,
    /// First assignments of a destination's active path.
    pub initial_moves: u64,
    /// Active paths taken over from the dataplane ([`PathManager::adopt_active`]).
    pub adopted: u64,
    /// Link reports emitted.
    pub reports: u64,
}

/// A read-only snapshot of one path.
#[derive(Clone, Debug, PartialEq)]
pub struct PathView {
    /// What the path is.
    pub key: PathKey,
    /// Health state.
    pub state: PathState,
    /// When the state was entered.
    pub state_since: Nanos,
    /// Smoothed RTT.
    pub srtt: Option<Nanos>,
    /// RTT variation.
    pub rttvar: Nanos,
    /// Jitter.
    pub jitter: Nanos,
    /// Loss EWMA.
    pub loss: f64,
    /// Laplace success rate of the history.
    pub success_rate: f64,
    /// History bitmap (bit 0 newest) and its length.
    pub history: (u64, u32),
    /// Last success.
    pub last_success: Option<Nanos>,
    /// Last failure signal.
    pub last_failure: Option<Nanos>,
    /// Rank cost (lower is better), see [`rank_cost`].
    pub rank: f64,
}

#[derive(Clone, Copy, Debug)]
struct Outstanding {
    seq: u32,
    sent: Nanos,
    deadline: Nanos,
    race: bool,
}

#[derive(Clone, Debug)]
struct PathEntry {
    key: PathKey,
    dest: usize,
    uplink: usize,
    health: Health,
    rtt: RttEstimator,
    loss: LossEwma,
    history: History,
    next_seq: u32,
    outstanding: VecDeque<Outstanding>,
    next_probe_at: Nanos,
    down_backoff: u32,
    last_data_success: Option<Nanos>,
    /// When the dataplane last reported data acked on this path (any loss rate), or data from
    /// the peer arriving by it.
    last_data_seen: Option<Nanos>,
    /// Data feedback reports in a row with at least `bad_feedback_loss`, since when.
    bad_feedback: u32,
    bad_since: Nanos,
    degraded: bool,
    /// Recovered from down after a clean cut (the fast return rule applies while every probe
    /// since has been answered).
    clean_repair: bool,
    /// When it last recovered with a clean repair (damping).
    last_clean_repair: Option<Nanos>,
}

#[derive(Clone, Debug)]
struct Race {
    candidates: Vec<PathId>,
    next: usize,
    next_at: Nanos,
    deadline: Nanos,
    /// The first lossy candidate that answered while a clean one was still
    /// in the race: taken if no clean one answers before the race ends.
    fallback: Option<PathId>,
}

#[derive(Clone, Debug)]
struct Dest {
    site: SiteId,
    paths: Vec<PathId>,
    active: Option<PathId>,
    race: Option<Race>,
    race_failures: u32,
    race_retry_at: Nanos,
    race_wanted: bool,
    last_move: Option<Nanos>,
    /// The dataplane's reflex took the flows off the active path (an ack gap on it): the
    /// dataplane carries them elsewhere until it is told a path again, so the decision that
    /// follows is announced even if it keeps the active path.
    vacated: bool,
    /// The active path is a detour that every direct path of the destination failed under
    /// (down, or without carrier; a path merely suspect, as after an ack gap, has not): no
    /// choice of policy, so a direct path's recovery is judged a clean repair (the fast
    /// return rule) with `repair_old_losses_forced` losses before the outage allowed, not
    /// `repair_old_losses` (a full link's probe losses made the repair of a partition's
    /// direct path look lossy, and the detour kept the traffic for ~27 s).
    forced: bool,
    dirty: bool,
}

#[derive(Clone, Debug)]
struct Uplink {
    cfg: UplinkConfig,
    carrier_up: bool,
    regular: TokenBucket,
    explore: TokenBucket,
    probes_sent: u64,
    probe_bytes: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum MoveKind {
    Initial,
    Failover,
    Return,
}

/// The MONET path manager of one gateway.
#[derive(Clone, Debug)]
pub struct PathManager {
    cfg: PathConfig,
    uplinks: Vec<Uplink>,
    paths: Vec<PathEntry>,
    dests: Vec<Dest>,
    dest_index: BTreeMap<SiteId, usize>,
    key_index: BTreeMap<PathKey, PathId>,
    actions: VecDeque<Action>,
    dirty: Vec<usize>,
    rng: SplitMix64,
    now: Nanos,
    next_reeval: Nanos,
    reported: (Vec<PathId>, Vec<PathId>),
    last_report_at: Option<Nanos>,
    report_due: Option<Nanos>,
    stats: PathStats,
}

fn scale_ppm(x: u64, ppm: u32) -> u64 {
    u64::try_from(u128::from(x) * u128::from(ppm) / 1_000_000).unwrap_or(u64::MAX)
}

impl PathManager {
    /// A manager with no paths yet. `seed` makes probe jitter and sequence numbers reproducible.
    pub fn new(cfg: PathConfig, seed: u64, now: Nanos) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let probe = u64::from(cfg.probe_size);
        let uplinks = cfg
            .uplinks
            .iter()
            .map(|u| {
                let total = scale_ppm(u.capacity_bytes_per_s, cfg.budget_ppm)
                    .max(cfg.budget_floor_bytes_per_s);
                let explore = scale_ppm(total, cfg.explore_ppm);
                let regular = total - explore;
                let depth = |rate: u64| {
                    let b = u128::from(rate) * u128::from(cfg.budget_burst) / u128::from(SEC);
                    u64::try_from(b).unwrap_or(u64::MAX).max(4 * probe)
                };
                Uplink {
                    cfg: u.clone(),
                    carrier_up: true,
                    regular: TokenBucket::new(regular, depth(regular), now),
                    explore: TokenBucket::new(explore, depth(explore), now),
                    probes_sent: 0,
                    probe_bytes: 0,
                }
            })
            .collect();
        Ok(Self {
            next_reeval: now.saturating_add(cfg.reeval_interval),
            cfg,
            uplinks,
            paths: Vec::new(),
            dests: Vec::new(),
            dest_index: BTreeMap::new(),
            key_index: BTreeMap::new(),
            actions: VecDeque::new(),
            dirty: Vec::new(),
            rng: SplitMix64::new(seed),
            now,
            reported: (Vec::new(), Vec::new()),
            last_report_at: None,
            report_due: None,
            stats: PathStats::default(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &PathConfig {
        &self.cfg
    }

    /// Registers a path; a new destination starts a race at once.
    pub fn add_path(&mut self, key: PathKey, now: Nanos) -> Result<PathId, ConfigError> {
        let now = self.clock(now);
        let uplink = self
            .uplinks
            .iter()
            .position(|u| u.cfg.id == key.uplink)
            .ok_or(ConfigError::UnknownUplink(key.uplink))?;
        if self.key_index.contains_key(&key) {
            return Err(ConfigError::DuplicatePath);
        }
        let n = u32::try_from(self.paths.len()).map_err(|_| ConfigError::TooManyPaths)?;
        if n >= self.cfg.max_paths {
            return Err(ConfigError::TooManyPaths);
        }
        let id = PathId(n);
        let dest = match self.dest_index.get(&key.dst) {
            Some(&d) => d,
            None => {
                self.dests.push(Dest {
                    site: key.dst,
                    paths: Vec::new(),
                    active: None,
                    race: None,
                    race_failures: 0,
                    race_retry_at: now,
                    race_wanted: true,
                    last_move: None,
                    vacated: false,
                    forced: false,
                    dirty: false,
                });
                let d = self.dests.len() - 1;
                self.dest_index.insert(key.dst, d);
                d
            }
        };
        self.dests[dest].paths.push(id);
        let seq = self.cfg.initial_seq.unwrap_or_else(|| self.rng.next_u32());
        let spread = self.rng.below(self.cfg.probe_interval_suspect);
        self.paths.push(PathEntry {
            key,
            dest,
            uplink,
            health: Health::new(now),
            rtt: RttEstimator::default(),
            loss: LossEwma::default(),
            history: History::new(self.cfg.history_len),
            next_seq: seq,
            outstanding: VecDeque::new(),
            next_probe_at: now.saturating_add(spread),
            down_backoff: 0,
            last_data_success: None,
            last_data_seen: None,
            bad_feedback: 0,
            bad_since: 0,
            degraded: false,
            clean_repair: false,
            last_clean_repair: None,
        });
        if !self.uplinks[uplink].carrier_up
            && let Some(e) = self.paths.last_mut()
        {
            e.health.force_down(now);
        }
        self.key_index.insert(key, id);
        // Decisions wait for the next `handle_timeout` (due at once: `poll_timeout` <= now), so
        // that a destination's first race sees all the paths registered in the same turn.
        Ok(id)
    }

    // ----- queries -------------------------------------------------------------------------

    /// Counters.
    pub fn stats(&self) -> &PathStats {
        &self.stats
    }

    /// Number of registered paths (ids are `0..path_count`).
    pub fn path_count(&self) -> usize {
        self.paths.len()
    }

    /// The key of a path.
    pub fn path_key(&self, p: PathId) -> Option<PathKey> {
        self.entry(p).map(|e| e.key)
    }

    /// The id of a registered key.
    pub fn path_id(&self, key: &PathKey) -> Option<PathId> {
        self.key_index.get(key).copied()
    }

    /// A snapshot of one path.
    pub fn path_view(&self, p: PathId) -> Option<PathView> {
        let e = self.entry(p)?;
        Some(PathView {
            key: e.key,
            state: e.health.state(),
            state_since: e.health.since(),
            srtt: e.rtt.srtt(),
            rttvar: e.rtt.rttvar(),
            jitter: e.rtt.jitter(),
            loss: e.loss.value(),
            success_rate: e.history.success_rate(),
            history: (e.history.bits(), e.history.len()),
            last_success: e.health.last_success(),
            last_failure: e.health.last_failure(),
            rank: self.rank_of(p),
        })
    }

    /// Health state of a path.
    pub fn path_state(&self, p: PathId) -> Option<PathState> {
        self.entry(p).map(|e| e.health.state())
    }

    /// The path carrying the flows toward `dst`.
    pub fn active_path(&self, dst: SiteId) -> Option<PathId> {
        self.dest_index
            .get(&dst)
            .and_then(|&d| self.dests[d].active)
    }

    /// Paths registered toward `dst`.
    pub fn destination_paths(&self, dst: SiteId) -> &[PathId] {
        self.dest_index
            .get(&dst)
            .map_or(&[], |&d| &self.dests[d].paths)
    }

    /// Known destinations, sorted.
    pub fn destinations(&self) -> Vec<SiteId> {
        self.dest_index.keys().copied().collect()
    }

    /// Probes and probe bytes emitted on an uplink so far.
    pub fn uplink_probe_usage(&self, id: UplinkId) -> Option<(u64, u64)> {
        self.uplinks
            .iter()
            .find(|u| u.cfg.id == id)
            .map(|u| (u.probes_sent, u.probe_bytes))
    }

    /// The next action, if any. Drain after every call.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called next. Always later than the last `now`
    /// passed to `handle_timeout` (no busy loop).
    pub fn poll_timeout(&self) -> Option<Nanos> {
        let mut t = self.next_reeval;
        let mut take = |x: Nanos| t = t.min(x);
        for e in &self.paths {
            if self.uplinks[e.uplink].carrier_up {
                take(e.next_probe_at);
            }
            for o in &e.outstanding {
                take(o.deadline);
            }
            if let Some(d) = e.health.silence_deadline(&self.cfg) {
                take(d);
            }
        }
        for d in &self.dests {
            match &d.race {
                Some(r) => {
                    if r.next < r.candidates.len() {
                        take(r.next_at);
                    }
                    take(r.deadline);
                }
                None => {
                    if d.race_wanted {
                        take(d.race_retry_at);
                    }
                }
            }
        }
        if let Some(r) = self.report_due {
            take(r);
        }
        Some(t)
    }

    // ----- inputs --------------------------------------------------------------------------

    /// The dataplane carries `path`'s destination on it and reports it up with a measured RTT
    /// (it kept its choice while no control ran, or chose alone before one came): the path
    /// becomes the destination's active path, up, without a race, so that a control's
    /// (re)start moves no traffic that works. A race would take whichever path answers first,
    /// and under load that is the path with the shortest queue at that moment, not the one
    /// the traffic can use (a restarted control then moved the demo's flows onto a waypoint
    /// and back for seconds). Ignored once the destination has an active path, or when the
    /// path's uplink has no carrier; from then on probes and data judge the path as any other.
    pub fn adopt_active(&mut self, path: PathId, now: Nanos) {
        let now = self.clock(now);
        let Some(pi) = self.index(path) else { return };
        let d = self.paths[pi].dest;
        if self.dests[d].active.is_some() || !self.uplinks[self.paths[pi].uplink].carrier_up {
            return;
        }
        self.paths[pi].health.adopt_up(now);
        self.stats.adopted += 1;
        self.dests[d].race = None;
        self.dests[d].race_wanted = false;
        self.move_to(d, path, now, MoveKind::Initial);
        self.mark(d);
    }

    /// The dataplane confirms probe `seq` left at `now` (refines the RTT base).
    pub fn on_probe_sent(&mut self, path: PathId, seq: u32, now: Nanos) {
        let now = self.clock(now);
        let Some(pi) = self.index(path) else { return };
        let timeout = self.probe_timeout(pi);
        match self.paths[pi].outstanding.iter_mut().find(|o| o.seq == seq) {
            Some(o) if now >= o.sent => {
                o.sent = now;
                o.deadline = now.saturating_add(timeout);
            }
            _ => self.stats.unmatched_sent += 1,
        }
    }

    /// A reply to probe `seq` arrived at `now`; the RTT is measured from the send time.
    pub fn on_probe_reply(&mut self, path: PathId, seq: u32, now: Nanos) {
        self.reply(path, seq, None, now);
    }

    /// A reply with an RTT measured by the dataplane (timestamps in the probe); an RTT that is
    /// zero, absurd or longer than the time elapsed since the send is replaced by ours.
    pub fn on_probe_reply_measured(&mut self, path: PathId, seq: u32, rtt: Nanos, now: Nanos) {
        self.reply(path, seq, Some(rtt), now);
    }

    /// The dataplane declares probe `seq` lost.
    pub fn on_probe_timeout(&mut self, path: PathId, seq: u32, now: Nanos) {
        let now = self.clock(now);
        let Some(pi) = self.index(path) else { return };
        match self.paths[pi].outstanding.iter().position(|o| o.seq == seq) {
            Some(pos) => {
                self.paths[pi].outstanding.remove(pos);
                self.failure(pi, false, now);
            }
            None => self.stats.unmatched_timeout += 1,
        }
        self.finish(now);
    }

    /// The dataplane refused probe `seq` (every probe slot busy, or a command it found bad): it never
    /// left, so it says nothing about the path. It is forgotten and sent again at the path's
    /// next probe time. (Counted as lost before: on Abilene each site's 64 probe slots filled
    /// with probes of candidates that cannot answer, which wait 1 s, and the refusals downed
    /// working direct paths 0.3-0.8 s after the managers started: PFO re-planned around links
    /// that worked.)
    pub fn on_probe_refused(&mut self, path: PathId, seq: u32, now: Nanos) {
        let now = self.clock(now);
        let Some(pi) = self.index(path) else { return };
        let e = &mut self.paths[pi];
        match e.outstanding.iter().position(|o| o.seq == seq) {
            Some(pos) => {
                e.outstanding.remove(pos);
            }
            None => self.stats.unmatched_timeout += 1,
        }
        let iv = self.interval(pi);
        let e = &mut self.paths[pi];
        e.next_probe_at = e.next_probe_at.min(now.saturating_add(iv));
        let d = e.dest;
        self.mark(d);
        self.finish(now);
    }

    /// Aggregated per-flow acks of the data sent on `path` since the last report.
    pub fn on_data_feedback(&mut self, path: PathId, acked: u64, lost: u64, now: Nanos) {
        let now = self.clock(now);
        let Some(pi) = self.index(path) else { return };
        if !self.uplinks[self.paths[pi].uplink].carrier_up {
            self.stats.feedback_on_dead_uplink += 1;
            return;
        }
        let total = acked.saturating_add(lost);
        if total == 0 {
            self.stats.empty_feedback += 1;
            return;
        }
        // Counts up to 2^53 are exact; larger ones only lose precision in the ratio.
        let frac = lost.min(total) as f64 / total as f64;
        if frac >= self.cfg.bad_feedback_loss && lost < self.cfg.bad_feedback_min_lost {
            // A handful of packets (a flow at its floor: 1 lost of 3 is 33 %) says nothing;
            // the probes and the dataplane's ack gap watch such a path.
            self.stats.inconclusive_feedback += 1;
            return;
        }
        let alpha = self.cfg.loss_alpha;
        self.paths[pi].loss.update(frac, alpha);
        if frac >= self.cfg.bad_feedback_loss {
            // A congested path loses in bursts (MONtra's flows starting at their targets on a
            // link PFO over-estimates lose 30-40 % for about a second, and the flows left a
            // working path); a failing one keeps losing.
            let e = &mut self.paths[pi];
            if e.bad_feedback == 0 {
                e.bad_since = now;
            }
            e.bad_feedback = e.bad_feedback.saturating_add(1);
            // A down path's recovery is the probes' to judge: its data reports count the
            // packets sent while it was down (at a partition's rejoin A's floor flows' report
            // of the outage broke A-B's recovery run, and A's traffic to B took C as its
            // waypoint).
            if e.bad_feedback >= self.cfg.bad_feedback_reports
                && now.saturating_sub(e.bad_since) >= self.cfg.bad_feedback_hold
                && e.health.state() != PathState::Down
            {
                self.failure(pi, true, now);
            }
        } else {
            self.paths[pi].bad_feedback = 0;
            self.paths[pi].last_data_success = Some(now);
            self.success(pi, false, None, now);
        }
        self.finish(now);
    }

    /// Data sent on `path` was acked (a telemetry report with new acks, at any loss rate): the
    /// path delivers now. A full path's probes wait behind its data in the bottleneck's queue
    /// and can time out (`--scenario imprecise`: the flows start at their targets on a link
    /// PFO over-estimates, the queue reaches 50-60 ms within 200 ms, a probe with the idle
    /// path's 60 ms timeout was declared lost and the manager moved A's traffic to C via B for
    /// good); acked data vouches for the active path against such a loss (see `data_vouch`).
    /// A path that loses much of its data fails by the data feedback instead
    /// ([`Self::on_data_feedback`]), a dead one by the dataplane's ack gap.
    pub fn on_data_acked(&mut self, path: PathId, now: Nanos) {
        let now = self.clock(now);
        let Some(pi) = self.index(path) else { return };
        self.paths[pi].last_data_seen = Some(now);
    }

    /// Data from the peer arrived by `path` (its port, from its remote address) just now: the
    /// path's peer-to-us direction works. A probe's echo comes back that way and can be lost
    /// or delayed in the queue the peer's own flows fill (`--scenario imprecise`: C's probes
    /// to A, whose echoes share A->C with A's flows); such data vouches for the active path
    /// like acked data does.
    pub fn on_data_received(&mut self, path: PathId, now: Nanos) {
        self.on_data_acked(path, now);
    }

    /// The acks of an active path stopped: suspect at once, race for an alternative.
    pub fn on_ack_gap(&mut self, path: PathId, now: Nanos) {
        let now = self.clock(now);
        let Some(pi) = self.index(path) else { return };
        let e = &mut self.paths[pi];
        e.health.on_suspect_signal(now);
        e.next_probe_at = e
            .next_probe_at
            .min(now.saturating_add(self.cfg.probe_interval_suspect));
        let d = e.dest;
        if self.dests[d].active == Some(path) {
            self.dests[d].race_wanted = true;
            // The dataplane's reflex has moved the flows off it already.
            self.dests[d].vacated = true;
        }
        self.mark(d);
        self.finish(now);
    }

    /// Carrier of a local uplink went down (all its paths down at once) or came back.
    pub fn on_link_event(&mut self, uplink: UplinkId, up: bool, now: Nanos) {
        let now = self.clock(now);
        let Some(ui) = self.uplinks.iter().position(|u| u.cfg.id == uplink) else {
            self.stats.unknown_uplink += 1;
            return;
        };
        self.uplinks[ui].carrier_up = up;
        for pi in 0..self.paths.len() {
            if self.paths[pi].uplink != ui {
                continue;
            }
            let e = &mut self.paths[pi];
            if up {
                e.next_probe_at = now;
                e.down_backoff = 0;
            } else {
                e.health.force_down(now);
                e.outstanding.clear();
            }
            let d = e.dest;
            self.mark(d);
        }
        self.finish(now);
    }

    /// Runs timers: probe timeouts, silence, background probes, races, returns, reports.
    pub fn handle_timeout(&mut self, now: Nanos) {
        let now = self.clock(now);
        for pi in 0..self.paths.len() {
            // Expired probes.
            while let Some(pos) = self.paths[pi]
                .outstanding
                .iter()
                .position(|o| o.deadline <= now)
            {
                self.paths[pi].outstanding.remove(pos);
                self.failure(pi, false, now);
            }
            if self.paths[pi].health.tick(now, &self.cfg) {
                let d = self.paths[pi].dest;
                self.mark(d);
            }
            self.background_probe(pi, now);
        }
        for d in 0..self.dests.len() {
            self.mark(d);
        }
        self.finish(now);
        if now >= self.next_reeval {
            self.next_reeval = now.saturating_add(self.cfg.reeval_interval);
            for d in 0..self.dests.len() {
                self.reevaluate(d, now);
            }
        }
        self.report(now);
    }

    // ----- internals -----------------------------------------------------------------------

    fn clock(&mut self, now: Nanos) -> Nanos {
        if now < self.now {
            self.stats.time_regressions += 1;
            self.now
        } else {
            self.now = now;
            now
        }
    }

    fn entry(&self, p: PathId) -> Option<&PathEntry> {
        usize::try_from(p.0).ok().and_then(|i| self.paths.get(i))
    }

    fn index(&mut self, p: PathId) -> Option<usize> {
        match usize::try_from(p.0).ok().filter(|&i| i < self.paths.len()) {
            Some(i) => Some(i),
            None => {
                self.stats.unknown_path += 1;
                None
            }
        }
    }

    fn mark(&mut self, d: usize) {
        if !self.dests[d].dirty {
            self.dests[d].dirty = true;
            self.dirty.push(d);
        }
    }

    fn finish(&mut self, now: Nanos) {
        while let Some(d) = self.dirty.pop() {
            self.dests[d].dirty = false;
            self.decide(d, now);
        }
    }

    fn push_action(&mut self, a: Action) {
        let cap = usize::try_from(self.cfg.action_queue_cap).unwrap_or(usize::MAX);
        if self.actions.len() >= cap {
            let victim = self
                .actions
                .iter()
                .position(|x| matches!(x, Action::Probe { .. }))
                .unwrap_or(0);
            self.actions.remove(victim);
            self.stats.dropped_actions += 1;
        }
        self.actions.push_back(a);
    }

    fn probe_timeout(&self, pi: usize) -> Nanos {
        self.paths[pi].rtt.timeout(
            self.cfg.probe_timeout_initial,
            self.cfg.probe_timeout_min,
            self.cfg.probe_timeout_max,
            2 * MS,
        )
    }

    fn usable(&self, p: PathId) -> bool {
        self.entry(p).is_some_and(|e| {
            e.health.state() != PathState::Down && self.uplinks[e.uplink].carrier_up
        })
    }

    fn rank_of(&self, p: PathId) -> f64 {
        let Some(e) = self.entry(p) else {
            return f64::MAX;
        };
        let input = RankInput {
            srtt: e.rtt.srtt(),
            jitter: e.rtt.jitter(),
            uplink_cost: self.uplinks[e.uplink].cfg.cost,
            via_waypoint: e.key.waypoint.is_some(),
            success_rate: e.history.success_rate(),
            loss: e.loss.value(),
            state: e.health.state(),
        };
        rank_cost(&input, self.cfg.unknown_rtt, self.cfg.waypoint_penalty)
    }

    /// Paths of `d` passing `keep`, best first (ties by id: deterministic).
    fn ranked(&self, d: usize, keep: impl Fn(&PathEntry) -> bool) -> Vec<(f64, PathId)> {
        let mut v: Vec<(f64, PathId)> = self.dests[d]
            .paths
            .iter()
            .filter(|&&p| self.entry(p).is_some_and(&keep))
            .map(|&p| (self.rank_of(p), p))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        v
    }

    fn best_up(&self, d: usize) -> Option<PathId> {
        self.ranked(d, |e| {
            e.health.state() == PathState::Up && self.uplinks[e.uplink].carrier_up
        })
        .first()
        .map(|x| x.1)
    }

    fn any_up(&self, d: usize) -> bool {
        self.dests[d]
            .paths
            .iter()
            .any(|&p| self.path_state(p) == Some(PathState::Up))
    }

    fn interval(&mut self, pi: usize) -> Nanos {
        let e = &self.paths[pi];
        let base = match e.health.state() {
            PathState::Up => self.cfg.health.probe_interval_ns,
            PathState::Suspect => self.cfg.probe_interval_suspect,
            PathState::Down if e.health.consecutive_successes() > 0 => {
                self.cfg.probe_interval_recovering
            }
            PathState::Down => self
                .cfg
                .probe_interval_down_min
                .saturating_mul(1u64 << e.down_backoff.min(30))
                .min(self.cfg.probe_interval_down_max),
        };
        let spread = base / 100 * u64::from(self.cfg.probe_jitter_pct);
        base.saturating_add(self.rng.below(spread.saturating_add(1)))
    }

    fn send_probe(&mut self, pi: usize, race: bool, now: Nanos) {
        self.paths[pi].health.on_probe_sent(now);
        let timeout = self.probe_timeout(pi);
        let cap = usize::try_from(self.cfg.max_outstanding).unwrap_or(usize::MAX);
        if self.paths[pi].outstanding.len() >= cap {
            self.paths[pi].outstanding.pop_front();
            self.stats.evicted_probes += 1;
            self.failure(pi, false, now);
        }
        let e = &mut self.paths[pi];
        let seq = e.next_seq;
        e.next_seq = e.next_seq.wrapping_add(1);
        e.outstanding.push_back(Outstanding {
            seq,
            sent: now,
            deadline: now.saturating_add(timeout),
            race,
        });
        let u = &mut self.uplinks[e.uplink];
        u.probes_sent += 1;
        u.probe_bytes += u64::from(self.cfg.probe_size);
        self.stats.probes_sent += 1;
        if race {
            self.stats.race_probes += 1;
        }
        let path = PathId(u32::try_from(pi).unwrap_or(u32::MAX));
        self.push_action(Action::Probe { path, seq });
    }

    fn background_probe(&mut self, pi: usize, now: Nanos) {
        let ui = self.paths[pi].uplink;
        if !self.uplinks[ui].carrier_up || now < self.paths[pi].next_probe_at {
            return;
        }
        let size = u64::from(self.cfg.probe_size);
        let down = self.paths[pi].health.state() == PathState::Down;
        let u = &mut self.uplinks[ui];
        let bucket = if down { &mut u.explore } else { &mut u.regular };
        if bucket.try_consume(size, now) {
            self.send_probe(pi, false, now);
            let next = now.saturating_add(self.interval(pi));
            let e = &mut self.paths[pi];
            e.next_probe_at = next;
            if down && e.health.consecutive_successes() == 0 {
                e.down_backoff = e.down_backoff.saturating_add(1);
            }
        } else {
            // When the budget allows (never: retry in an hour).
            let wait = bucket.wait_ns(size, now).map_or(3600 * SEC, |w| w.max(1));
            self.paths[pi].next_probe_at = now.saturating_add(wait);
        }
    }

    fn reply(&mut self, path: PathId, seq: u32, measured: Option<Nanos>, now: Nanos) {
        let now = self.clock(now);
        let Some(pi) = self.index(path) else { return };
        let Some(pos) = self.paths[pi].outstanding.iter().position(|o| o.seq == seq) else {
            self.stats.unmatched_reply += 1;
            return;
        };
        let sent = self.paths[pi].outstanding[pos].sent;
        let Some(own) = now.checked_sub(sent) else {
            self.stats.absurd_rtt += 1;
            return;
        };
        self.paths[pi].outstanding.remove(pos);
        let max = self.cfg.max_plausible_rtt;
        let rtt = match measured {
            Some(m) if m > 0 && m <= own.saturating_add(MS) && m <= max => Some(m),
            Some(_) => {
                self.stats.absurd_rtt += 1;
                (own > 0 && own <= max).then_some(own)
            }
            None if own <= max => Some(own),
            None => {
                self.stats.absurd_rtt += 1;
                None
            }
        };
        self.success(pi, true, rtt, now);
        self.finish(now);
    }

    /// A success: a probe answered (`probe`, with an RTT sample if plausible) or good data.
    /// The history and the loss EWMA of probes only count probes (data has its own loss samples).
    fn success(&mut self, pi: usize, probe: bool, rtt: Option<Nanos>, now: Nanos) {
        let alpha = self.cfg.loss_alpha;
        let forced = {
            let e = &self.paths[pi];
            e.key.waypoint.is_none() && self.dests[e.dest].forced
        };
        let e = &mut self.paths[pi];
        if let Some(r) = rtt {
            e.rtt.sample(r);
        }
        if probe {
            e.loss.update(0.0, alpha);
            e.history.push(true);
        }
        let was_down = e.health.state() == PathState::Down;
        e.health.on_success(now, &self.cfg);
        if was_down && e.health.consecutive_successes() == 1 {
            self.down_path_answers(pi, now);
        }
        let e = &mut self.paths[pi];
        if was_down && e.health.state() != PathState::Down {
            // Recovered (M successes spanning R): the probes lost while it was down were the
            // outage, which the Down state stood for, not the path's loss now. Without this
            // the loss EWMA (1/8 per probe) kept a repaired path "degraded" for ~18 probes and
            // PFO saw the link repaired 11-13 s after a partition healed.
            e.loss = LossEwma::default();
            e.degraded = false;
            // A clean cut, not a lossy path, and not one that flaps: the fast return rule. A
            // direct path of a destination on a forced detour (every direct path had failed)
            // may have lost more before the outage: a link its flows filled to the loss
            // budget loses a probe now and then.
            let damped = e
                .last_clean_repair
                .is_some_and(|t| now.saturating_sub(t) < self.cfg.repair_damping);
            let old_losses = if forced {
                self.cfg.repair_old_losses_forced
            } else {
                self.cfg.repair_old_losses
            };
            e.clean_repair = !damped
                && e.history
                    .clean_cut_and_repair(old_losses, self.cfg.repair_min_outage_probes)
                    .unwrap_or(false);
            if e.clean_repair {
                // The outage's lost probes are forgotten as its loss was: the path ranks by
                // what it has answered since (its success rate otherwise kept the rank of a
                // repaired path worse than the detour's until they aged out, ~27 s).
                e.history.keep_recent_successes();
                e.last_clean_repair = Some(now);
                self.stats.clean_repairs += 1;
            }
        }
        e.down_backoff = 0;
        let d = e.dest;
        let iv = self.interval(pi);
        let e = &mut self.paths[pi];
        e.next_probe_at = e.next_probe_at.min(now.saturating_add(iv));
        self.race_answer(d, pi, now);
        self.mark(d);
    }

    /// Down path `pi` answered again: an outage may be over for the other down paths too (a
    /// partition heals: a site's links come back together). Each is probed within
    /// `race_stagger`, not at its backed-off interval (up to `probe_interval_down_max` away):
    /// at the partition's rejoin A-C answered 1.4 s before A-B's next probe, and A's traffic
    /// to B took C as its waypoint for 5 s. The explore budget still bounds the probes.
    fn down_path_answers(&mut self, pi: usize, now: Nanos) {
        let spread = self.cfg.race_stagger;
        for j in 0..self.paths.len() {
            let e = &self.paths[j];
            if j == pi
                || e.health.state() != PathState::Down
                || e.health.consecutive_successes() > 0
                || e.next_probe_at <= now.saturating_add(spread)
            {
                continue;
            }
            let at = now.saturating_add(self.rng.below(spread.saturating_add(1)));
            let e = &mut self.paths[j];
            e.next_probe_at = at;
            e.down_backoff = 0;
        }
    }

    fn failure(&mut self, pi: usize, data: bool, now: Nanos) {
        let alpha = self.cfg.loss_alpha;
        let e = &mut self.paths[pi];
        if !data {
            e.loss.update(1.0, alpha);
            e.history.push(false);
            e.clean_repair = false;
        }
        let d = e.dest;
        let path = PathId(u32::try_from(pi).unwrap_or(u32::MAX));
        // Acked data on the active path outweighs a lost probe (it may have waited behind that
        // data in a full queue): the probe loss is recorded
        // (history, loss EWMA) but neither makes the path suspect nor starts a race.
        let vouched = !data
            && self.dests[d].active == Some(path)
            && e.last_data_success
                .max(e.last_data_seen)
                .is_some_and(|t| now.saturating_sub(t) <= self.cfg.data_vouch);
        if !vouched {
            e.health.on_failure(now, &self.cfg);
            if self.dests[d].active == Some(path) {
                self.dests[d].race_wanted = true;
            }
        }
        let iv = self.interval(pi);
        let e = &mut self.paths[pi];
        e.next_probe_at = e.next_probe_at.min(now.saturating_add(iv));
        self.mark(d);
    }

    fn race_answer(&mut self, d: usize, pi: usize, now: Nanos) {
        let path = PathId(u32::try_from(pi).unwrap_or(u32::MAX));
        let Some(race) = &self.dests[d].race else {
            return;
        };
        if !race.candidates.contains(&path) || !self.usable_or_only(d, path) {
            return;
        }
        // A lossy path answers now and then: while a clean alternative (not
        // the active path, whose failure started the race) is in the race,
        // its answer is only the fallback (MONET's first answer, among the
        // paths that do not lose packets). So is the answer of an active
        // path whose acks stopped (the dataplane left it): its probes may
        // pass while its data does not, and a false alarm must not keep the
        // flows on a path the dataplane no longer uses; it earns them back
        // by the return rule.
        let active = self.dests[d].active;
        // A destination's first choice has no hurry: a detour's answer (its probes time the
        // first leg only) is the fallback while a direct path of the race may still answer.
        // Under load at start the waypoint's echo sometimes came first, and the first plan's
        // flows went A to B via C (`--scenario flash-crowd`: 66 % of the optimum).
        let detour = |p: PathId| self.entry(p).is_some_and(|e| e.key.waypoint.is_some());
        if active.is_none()
            && detour(path)
            && race.candidates.iter().enumerate().any(|(k, &c)| {
                !detour(c)
                    && self.usable_or_only(d, c)
                    && (k >= race.next
                        || self
                            .entry(c)
                            .is_some_and(|e| e.outstanding.iter().any(|o| o.race)))
            })
        {
            if let Some(r) = &mut self.dests[d].race {
                r.fallback.get_or_insert(path);
            }
            return;
        }
        // The same when the active path is down and a direct path is recovering (`decide`).
        if active.is_some_and(|a| !self.usable(a)) && detour(path) && self.direct_recovering(d) {
            if let Some(r) = &mut self.dests[d].race {
                r.fallback.get_or_insert(path);
            }
            return;
        }
        let vacated = self.dests[d].vacated && active == Some(path);
        if (vacated || self.lossy(path))
            && race.candidates.iter().any(|&c| {
                c != path && Some(c) != active && !self.lossy(c) && self.usable_or_only(d, c)
            })
        {
            if let Some(r) = &mut self.dests[d].race {
                r.fallback.get_or_insert(path);
            }
            return;
        }
        self.win_race(d, path, now);
    }

    /// Ends the race of destination `d`, won by `path`.
    fn win_race(&mut self, d: usize, path: PathId, now: Nanos) {
        self.dests[d].race = None;
        self.dests[d].race_failures = 0;
        self.dests[d].race_wanted = false;
        self.stats.races_won += 1;
        if self.dests[d].active != Some(path) || self.dests[d].vacated {
            self.move_to(d, path, now, MoveKind::Failover);
        }
    }

    /// A path whose loss estimate is at `degrade_loss` or more (or that is
    /// reported degraded).
    fn lossy(&self, p: PathId) -> bool {
        self.entry(p)
            .is_some_and(|e| e.degraded || e.loss.value() >= self.cfg.degrade_loss)
    }

    /// A race winner must not be down, unless no path of the destination is up.
    fn usable_or_only(&self, d: usize, p: PathId) -> bool {
        let carrier = self
            .entry(p)
            .is_some_and(|e| self.uplinks[e.uplink].carrier_up);
        carrier && (self.usable(p) || !self.any_up(d))
    }

    fn move_to(&mut self, d: usize, to: PathId, now: Nanos, kind: MoveKind) {
        let from = self.dests[d].active;
        if from == Some(to) && !self.dests[d].vacated {
            return;
        }
        // Announced even when it keeps the active path (the dataplane left it): the flows go
        // back to it.
        self.dests[d].vacated = false;
        let kind = if from.is_none() {
            MoveKind::Initial
        } else {
            kind
        };
        match kind {
            MoveKind::Initial => self.stats.initial_moves += 1,
            MoveKind::Failover => self.stats.failover_moves += 1,
            MoveKind::Return => self.stats.return_moves += 1,
        }
        self.dests[d].forced = kind != MoveKind::Return && self.detour(to) && self.direct_failed(d);
        self.dests[d].active = Some(to);
        self.dests[d].last_move = Some(now);
        let dst_site = self.dests[d].site;
        self.push_action(Action::MoveFlows { dst_site, from, to });
    }

    /// Whether `p` goes through a waypoint.
    fn detour(&self, p: PathId) -> bool {
        self.entry(p).is_some_and(|e| e.key.waypoint.is_some())
    }

    /// Whether every direct path of `d` has failed (down, or its uplink without carrier).
    fn direct_failed(&self, d: usize) -> bool {
        self.dests[d]
            .paths
            .iter()
            .all(|&p| self.detour(p) || !self.usable(p))
    }

    /// Whether a direct path of `d` that is not up answers again (its recovery run has begun:
    /// it is up within about `recover_min_time`).
    fn direct_recovering(&self, d: usize) -> bool {
        self.dests[d].paths.iter().any(|&p| {
            self.entry(p).is_some_and(|e| {
                e.key.waypoint.is_none()
                    && e.health.state() != PathState::Up
                    && e.health.consecutive_successes() > 0
                    && self.uplinks[e.uplink].carrier_up
            })
        })
    }

    fn decide(&mut self, d: usize, now: Nanos) {
        // A detour becomes forced once every direct path has failed under it.
        if self.dests[d].active.is_some_and(|a| self.detour(a)) && self.direct_failed(d) {
            self.dests[d].forced = true;
        }
        match self.dests[d].active {
            Some(a) if !self.usable(a) => {
                if let Some(b) = self.best_up(d) {
                    // The traffic has been nowhere since its path went down: when a direct
                    // path answers again, a second more is worth not taking a detour (at a
                    // partition's rejoin A's traffic to B took C as its waypoint 0.2 s before
                    // A-B recovered, and for 6 s crossed A-C and B-C with the flows planned
                    // there). Any failure of the recovering path ends the wait.
                    if !(self.detour(b) && self.direct_recovering(d)) {
                        self.dests[d].race = None;
                        self.move_to(d, b, now, MoveKind::Failover);
                    }
                } else {
                    self.dests[d].race_wanted = true;
                }
            }
            None => {
                if let Some(b) = self.best_up(d) {
                    self.dests[d].race = None;
                    self.move_to(d, b, now, MoveKind::Initial);
                } else {
                    self.dests[d].race_wanted = true;
                }
            }
            Some(a) => {
                if self.path_state(a) == Some(PathState::Up) {
                    self.dests[d].race_wanted = false;
                    // Its race ended without an answer while it came back up: it is the
                    // dataplane's path again.
                    if self.dests[d].vacated && self.dests[d].race.is_none() {
                        self.move_to(d, a, now, MoveKind::Failover);
                    }
                }
            }
        }
        let dest = &self.dests[d];
        if dest.race.is_none() && dest.race_wanted && now >= dest.race_retry_at {
            self.start_race(d, now);
        }
        self.pump_race(d, now);
    }

    fn start_race(&mut self, d: usize, now: Nanos) {
        let width = usize::try_from(self.cfg.race_width).unwrap_or(1);
        let candidates: Vec<PathId> = self
            .ranked(d, |e| self.uplinks[e.uplink].carrier_up)
            .into_iter()
            .take(width)
            .map(|x| x.1)
            .collect();
        self.dests[d].race_wanted = false;
        if candidates.is_empty() {
            self.fail_race(d, now);
            return;
        }
        let n = u64::try_from(candidates.len()).unwrap_or(1);
        let deadline = now
            .saturating_add(self.cfg.race_stagger.saturating_mul(n - 1))
            .saturating_add(self.cfg.probe_timeout_max);
        self.stats.races_started += 1;
        self.dests[d].race = Some(Race {
            candidates,
            next: 0,
            next_at: now,
            deadline,
            fallback: None,
        });
    }

    fn fail_race(&mut self, d: usize, now: Nanos) {
        self.stats.races_failed += 1;
        let dest = &mut self.dests[d];
        dest.race = None;
        dest.race_failures = dest.race_failures.saturating_add(1);
        let back = self
            .cfg
            .race_backoff_min
            .saturating_mul(1u64 << dest.race_failures.min(30).saturating_sub(1))
            .min(self.cfg.race_backoff_max);
        dest.race_retry_at = now.saturating_add(back);
        let active_ok = dest
            .active
            .is_some_and(|a| self.path_state(a) == Some(PathState::Up) && self.usable(a));
        self.dests[d].race_wanted = !active_ok;
    }

    fn pump_race(&mut self, d: usize, now: Nanos) {
        loop {
            let Some(race) = &mut self.dests[d].race else {
                return;
            };
            if race.next >= race.candidates.len() || race.next_at > now {
                break;
            }
            let p = race.candidates[race.next];
            race.next += 1;
            race.next_at = race.next_at.saturating_add(self.cfg.race_stagger);
            let Some(pi) = usize::try_from(p.0).ok().filter(|&i| i < self.paths.len()) else {
                continue;
            };
            if self.uplinks[self.paths[pi].uplink].carrier_up {
                let size = u64::from(self.cfg.probe_size);
                self.uplinks[self.paths[pi].uplink]
                    .regular
                    .force_consume(size, now);
                self.send_probe(pi, true, now);
            }
        }
        let Some(race) = &self.dests[d].race else {
            return;
        };
        let pending = race.candidates[..race.next].iter().any(|p| {
            self.entry(*p)
                .is_some_and(|e| e.outstanding.iter().any(|o| o.race))
        });
        let exhausted = race.next >= race.candidates.len() && !pending;
        if exhausted || now >= race.deadline {
            // A detour's answer does not end the wait for a recovering direct path (`decide`).
            let active_down = self.dests[d].active.is_some_and(|a| !self.usable(a));
            let wait = |f: PathId| active_down && self.detour(f) && self.direct_recovering(d);
            match race
                .fallback
                .filter(|&f| self.usable_or_only(d, f) && !wait(f))
            {
                Some(f) => self.win_race(d, f, now),
                None => self.fail_race(d, now),
            }
        }
    }

    fn reevaluate(&mut self, d: usize, now: Nanos) {
        let dest = &self.dests[d];
        let Some(a) = dest.active else { return };
        if dest.race.is_some() || !self.usable(a) {
            return;
        }
        if dest
            .last_move
            .is_some_and(|t| now.saturating_sub(t) < self.cfg.min_dwell)
        {
            return;
        }
        let policy = self.cfg.health;
        let clean = self.cfg.return_clean_probes;
        let repaired = |e: &PathEntry| {
            e.clean_repair
                && now.saturating_sub(e.health.since()) >= self.cfg.repair_failback_after
                && e.history.last_all_ok(self.cfg.repair_clean_probes)
        };
        let best = self
            .ranked(d, |e| {
                e.health.state() == PathState::Up
                    && self.uplinks[e.uplink].carrier_up
                    && ((policy.failback_due(e.health.since(), now)
                        && e.history.last_all_ok(clean))
                        || repaired(e))
                    && (self.cfg.return_via_waypoint || e.key.waypoint.is_none())
            })
            .first()
            .copied();
        if let Some((rank, b)) = best
            && b != a
            && rank < self.rank_of(a) * (1.0 - self.cfg.return_margin)
        {
            self.move_to(d, b, now, MoveKind::Return);
        }
    }

    fn is_failed(&self, e: &PathEntry) -> bool {
        e.health.state() == PathState::Down || !self.uplinks[e.uplink].carrier_up
    }

    fn report(&mut self, now: Nanos) {
        // Degraded with hysteresis: in at `degrade_loss`, out below half of it.
        let enter = self.cfg.degrade_loss;
        for e in &mut self.paths {
            let l = e.loss.value();
            e.degraded = if e.degraded {
                l >= enter / 2.0
            } else {
                l >= enter
            };
        }
        let id = |i: usize| PathId(u32::try_from(i).unwrap_or(u32::MAX));
        let failed = || {
            self.paths
                .iter()
                .enumerate()
                .filter(|(_, e)| self.is_failed(e))
                .map(|(i, _)| id(i))
        };
        let degraded = || {
            self.paths
                .iter()
                .enumerate()
                .filter(|(_, e)| !self.is_failed(e) && e.degraded)
                .map(|(i, _)| id(i))
        };
        if failed().eq(self.reported.0.iter().copied())
            && degraded().eq(self.reported.1.iter().copied())
        {
            self.report_due = None;
            return;
        }
        let earliest = self
            .last_report_at
            .map_or(now, |t| t.saturating_add(self.cfg.report_min_interval));
        if now < earliest {
            self.report_due = Some(earliest);
            return;
        }
        let (failed, degraded): (Vec<PathId>, Vec<PathId>) =
            (failed().collect(), degraded().collect());
        self.report_due = None;
        self.last_report_at = Some(now);
        self.reported = (failed.clone(), degraded.clone());
        self.stats.reports += 1;
        self.push_action(Action::ReportLinks { failed, degraded });
    }

    /// Checks the state invariants; `Err` describes the first violation. Used by tests.
    ///
    /// - every destination with an up path has an active path that is not down (unless a
    ///   direct path is recovering and only detours are up: `decide` waits for it);
    /// - an active path belongs to its destination; race candidates too, at most `race_width`;
    /// - an up path has carrier; outstanding probes and queued actions are within bounds;
    /// - estimators are in range.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (d, dest) in self.dests.iter().enumerate() {
            let any_up = dest
                .paths
                .iter()
                .any(|&p| self.path_state(p) == Some(PathState::Up));
            if any_up && !self.direct_recovering(d) {
                match dest.active {
                    None => return Err(format!("{:?} has an up path but no active", dest.site)),
                    Some(a) if !self.usable(a) => {
                        return Err(format!(
                            "{:?} active {a:?} is down with an up path",
                            dest.site
                        ));
                    }
                    _ => {}
                }
            }
            if let Some(a) = dest.active
                && !dest.paths.contains(&a)
            {
                return Err(format!("{:?} active {a:?} not among its paths", dest.site));
            }
            if let Some(r) = &dest.race {
                if r.candidates.len() > usize::try_from(self.cfg.race_width).unwrap_or(0) {
                    return Err("race too wide".into());
                }
                if r.candidates.iter().any(|c| !dest.paths.contains(c)) {
                    return Err("race candidate of another destination".into());
                }
            }
        }
        let cap = usize::try_from(self.cfg.max_outstanding).unwrap_or(usize::MAX);
        for (i, e) in self.paths.iter().enumerate() {
            if e.health.state() == PathState::Up && !self.uplinks[e.uplink].carrier_up {
                return Err(format!("path {i} up without carrier"));
            }
            if e.outstanding.len() > cap {
                return Err(format!("path {i} has {} outstanding", e.outstanding.len()));
            }
            let l = e.loss.value();
            if !(0.0..=1.0).contains(&l) {
                return Err(format!("path {i} loss {l}"));
            }
            if e.history.len() > self.cfg.history_len {
                return Err(format!("path {i} history too long"));
            }
        }
        if self.actions.len() > usize::try_from(self.cfg.action_queue_cap).unwrap_or(usize::MAX) {
            return Err("action queue over its bound".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
