//! The packet classifier of a worker: inner packet -> (class, flow) or best
//! effort, or a counted drop. Pure (no OS, time passed in), one instance per
//! worker, no locks, no allocation per packet.
//!
//! 1. [`inner::parse`] extracts the inner 5-tuple and DSCP through the
//!    [`crate::wire`] views; malformed packets become the wire error's
//!    [`DropReason`].
//! 2. [`sessions::SessionTable`] maps the 5-tuple to its session. A hit
//!    returns the session's stored outcome: classification and admission
//!    happen once per session, so a session never changes flow mid-stream.
//! 3. On a miss, [`rules::RuleTable`] finds the class (first matching rule);
//!    no match means best effort without a session entry.
//! 4. Admission: while the class has fewer live sessions than the plan's
//!    `sessions` (and, with a per-host cap, the sending LAN host fewer than
//!    its cap in that class: [`hosts::HostTable`]), the new session is
//!    admitted and pinned to one of the class's flows; beyond that it takes
//!    the class's overflow action (best effort or drop), remembered for the
//!    session's lifetime, counted. Sessions refused because their class has
//!    no room in the plan (not those over a per-host cap) are *waiting*:
//!    [`Classifier::waiting_sessions`], reported to the control as demand.
//! 5. TCP teardown (conntrack-like, on the LAN host's segments): a RST frees
//!    the session's admission and forgets the session at once; a FIN frees
//!    the admission at once and keeps the entry, closed, with its flow pin for
//!    the segments that still follow (last ACKs, a retransmitted FIN) for
//!    [`sessions::CLOSED_LINGER_NS`] after the FIN (at most the idle
//!    timeout); a SYN (without ACK) on a closed entry opens a new session,
//!    admitted afresh.
//!
//! **Spreading sessions over flows**: a new admitted session goes to a flow
//! of its class (with planned rate `x_f > 0`) that has no session yet, the
//! fastest first; once each has one, to the flow that minimises
//! `(active_f + 1) / x_f`, ties to the first in file order. The live counts
//! therefore stay within one session of the proportions `x_f / sum x`, also
//! after expiries (the next sessions refill the flow that lost most), which
//! is what PFO means by splitting a class over its routes, at session
//! granularity (no reordering within a session); and a flow PFO gives a
//! small share (under half a session's worth) still carries a session rather
//! than none, when the class has a session per flow (its pacer holds it to
//! its rate). Seen on the Abilene demo: 0.78 of a class's 10 Mbit/s over 4
//! sessions went unserved.
//!
//! A new plan ([`Classifier::set_plan`], a checked [`PlanTable`] of the same
//! configuration, applied by index as it is) changes the limits and rates for
//! new sessions; live sessions keep their flow until they expire.

pub mod hosts;
pub mod inner;
pub mod rules;
pub mod sessions;

#[cfg(test)]
mod tests;

use crate::config::{Config, Overflow};
use crate::engine::{DropReason, Nanos};
use crate::plan::PlanTable;
use crate::shm::plan::epoch_newer;
use hosts::{Host, HostTable};
use inner::Inner;
use rules::{RuleError, RuleTable};
use sessions::{FLOW_BEST_EFFORT, FLOW_DROP, Found, SessionTable, Slot, tick};

/// What to do with a classified packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// An admitted session: send it on this flow (indices into
    /// `Config::classes` and `Config::flows`).
    Flow {
        /// Class index.
        class: u16,
        /// Flow index.
        flow: u32,
    },
    /// Forward at the lowest priority, outside the plan: a session over its
    /// class's admitted count (`class: Some`) or a packet no rule matched.
    BestEffort {
        /// Class index, if a rule matched.
        class: Option<u16>,
    },
    /// A gateway with several workers: the packet's class belongs to
    /// another worker ([`class_owner`]), which admits, paces and controls
    /// all of the class's sessions. Nothing was stored here.
    Handoff {
        /// Class index.
        class: u16,
        /// The worker that owns it.
        worker: u16,
    },
}

/// The worker that owns `class` among `workers`: its sessions, admission,
/// flows, pacers and controllers live there (docs/architecture.md,
/// "Several workers"). Every worker and every gateway stage computes it
/// the same way from the configuration's class index.
#[inline]
pub const fn class_owner(class: u16, workers: u16) -> u16 {
    if workers <= 1 { 0 } else { class % workers }
}

/// The worker that owns flow `flow` among `workers`: its pacing queue,
/// MONtra controller and ack tracker where it starts, its ack aggregation
/// where it ends. A class's flows are spread over the workers (a class's
/// sessions are admitted by its owner, each then paced by its flow's).
#[inline]
pub const fn flow_owner(flow: u32, workers: u16) -> u16 {
    if workers <= 1 {
        0
    } else {
        // The remainder is below `workers`: fits u16.
        #[allow(clippy::cast_possible_truncation)]
        let r = (flow % workers as u32) as u16;
        r
    }
}

/// Most flows a classifier (and a gateway) holds: flow indices are 32 bits,
/// the top two values mark best effort and drop; 2^24 keeps every per-flow
/// table addressable with room to spare.
pub const MAX_FLOWS: usize = 1 << 24;

/// Default idle timeout of a session, ns (30 s).
pub const DEFAULT_IDLE_TIMEOUT_NS: Nanos = 30_000_000_000;

/// Classifier parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Sessions the table holds (memory: about 64 bytes each).
    pub max_sessions: usize,
    /// A session idle this long is forgotten (and its admission freed);
    /// `[site] session_idle_timeout_seconds` in the site configuration.
    pub idle_timeout: Nanos,
    /// Hash seed of the session and host tables: in service chosen at
    /// random at start (`sys::rng::os_seed`); tests set it.
    pub hash_seed: u64,
    /// Workers of the gateway (at least 1).
    pub workers: u16,
    /// This classifier's worker: a new session of a class another worker
    /// owns is [`Decision::Handoff`], not stored.
    pub worker: u16,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_sessions: 1 << 20,
            idle_timeout: DEFAULT_IDLE_TIMEOUT_NS,
            hash_seed: 0x9E37_79B9_7F4A_7C15,
            workers: 1,
            worker: 0,
        }
    }
}

/// Counters (plain; the worker copies them to shared memory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets of known sessions.
    pub session_hits: u64,
    /// Sessions created (admitted, best effort or refused).
    pub new_sessions: u64,
    /// Sessions admitted on a flow.
    pub admitted: u64,
    /// Sessions over their class's limit sent best effort.
    pub overflow_best_effort: u64,
    /// Sessions over their class's limit refused (action `drop`).
    pub overflow_dropped: u64,
    /// Of the overflowing sessions: those refused because their LAN host
    /// had its cap of admitted sessions in the class (`max_sessions_per_host`).
    pub host_capped: u64,
    /// Packets dropped because their session was refused.
    pub not_admitted_packets: u64,
    /// Packets no rule matched (best effort, no session).
    pub unclassified: u64,
    /// New sessions forwarded best effort because the table was full.
    pub table_full: u64,
    /// Sessions removed after the idle timeout (closed ones after their linger).
    pub expired: u64,
    /// Sessions closed by a TCP FIN (admission freed, pin kept).
    pub fin_closed: u64,
    /// Sessions ended by a TCP RST (admission freed, entry removed).
    pub rst_closed: u64,
    /// Sessions ended by the remote host's TCP RST, arriving from the WAN
    /// (admission freed, entry removed): a connection refused, or reset.
    pub remote_rst_closed: u64,
    /// Closed sessions opened again by a SYN on the same tuple.
    pub reopened: u64,
    /// Teardown segments (FIN, RST) of sessions the table did not hold (or
    /// held expired), sent best effort without admission; after such a FIN
    /// the tuple is held closed, best effort, for the closed linger.
    pub unknown_teardown: u64,
    /// Busy sessions admitted again because a plan changed under them: their
    /// flow lost its rate, or their class has room now for a session that
    /// was refused or sent best effort.
    pub readmitted: u64,
    /// Packets whose inner headers did not parse.
    pub malformed: u64,
    /// Packets of a class another worker owns (handed to it).
    pub handed_off: u64,
}

/// Why a classifier could not be built or a plan applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClassifierError {
    /// The rule set does not compile.
    #[error(transparent)]
    Rules(#[from] RuleError),
    /// More than [`MAX_FLOWS`] flows.
    #[error("too many flows (at most 16777216)")]
    TooManyFlows,
}

/// Per-worker classifier. See the module documentation.
#[derive(Debug)]
pub struct Classifier {
    rules: RuleTable,
    sessions: SessionTable,
    overflow: Vec<Overflow>,
    /// Admitted-session limit per class.
    limit: Vec<u32>,
    /// Live admitted sessions per class.
    active: Vec<u32>,
    /// Live sessions per class refused because the class had no room.
    waiting: Vec<u32>,
    /// Admitted sessions per LAN host and class, per class (`u32::MAX`: no cap).
    host_cap: Vec<u32>,
    /// Admitted sessions per (LAN host, class); empty when no class has a cap.
    hosts: HostTable,
    /// Flows of each class (flow indices), file order.
    class_flows: Vec<Vec<u32>>,
    /// Class index of each flow.
    flow_class: Vec<Option<usize>>,
    /// Planned per-session rate per flow (0 = receives no new sessions).
    rate: Vec<f64>,
    /// Live sessions per flow.
    flow_active: Vec<u32>,
    /// Per flow: admitted sessions to move to the class's other flows at
    /// their next packet (a plan changed the flows' shares of the class:
    /// set by [`Classifier::apply`], counted down by [`Classifier::hit`]).
    surplus: Vec<u32>,
    /// Per class: the plan admits sessions and gives one of its flows a rate.
    open: Vec<bool>,
    epoch: u64,
    /// When [`Classifier::housekeep`] last swept.
    last_sweep: Option<Nanos>,
    /// Whole-table sweep period of [`Classifier::housekeep`], ns.
    sweep_period: Nanos,
    /// Workers of the gateway and this one ([`Settings::workers`]).
    workers: u16,
    worker: u16,
    stats: Stats,
}

impl Classifier {
    /// Builds a classifier for `cfg` (its rules, classes, flows) with `plan`
    /// (a checked plan of `cfg`; missing entries count as zero).
    pub fn new(
        cfg: &Config,
        plan: &PlanTable,
        settings: Settings,
    ) -> Result<Self, ClassifierError> {
        if cfg.flows.len() > MAX_FLOWS {
            return Err(ClassifierError::TooManyFlows);
        }
        let rules = RuleTable::build(cfg)?;
        let mut class_flows = vec![Vec::new(); cfg.classes.len()];
        let mut flow_class = vec![None; cfg.flows.len()];
        // By name through a map: a search of the classes per flow took
        // minutes at a million flows.
        let class_of: std::collections::HashMap<&str, usize> = cfg
            .classes
            .iter()
            .enumerate()
            .map(|(ci, c)| (c.id.as_str(), ci))
            .collect();
        for (fi, f) in cfg.flows.iter().enumerate() {
            if let (Some(&ci), Ok(f32)) = (class_of.get(f.class.as_str()), u32::try_from(fi)) {
                class_flows[ci].push(f32);
                flow_class[fi] = Some(ci);
            }
        }
        let host_cap: Vec<u32> = (0..cfg.classes.len())
            .map(|c| cfg.host_cap(c).unwrap_or(u32::MAX))
            .collect();
        let capped = host_cap.iter().any(|&c| c != u32::MAX);
        let mut c = Self {
            hosts: HostTable::new(
                if capped { settings.max_sessions } else { 0 },
                settings.hash_seed.rotate_left(23) ^ 0x686F_7374_7461_626C,
            ),
            host_cap,
            rules,
            sessions: SessionTable::new(
                settings.max_sessions,
                settings.idle_timeout,
                settings.hash_seed,
            ),
            overflow: cfg.classes.iter().map(|c| c.overflow).collect(),
            limit: vec![0; cfg.classes.len()],
            active: vec![0; cfg.classes.len()],
            waiting: vec![0; cfg.classes.len()],
            class_flows,
            flow_class,
            rate: vec![0.0; cfg.flows.len()],
            flow_active: vec![0; cfg.flows.len()],
            surplus: vec![0; cfg.flows.len()],
            open: vec![false; cfg.classes.len()],
            epoch: 0,
            last_sweep: None,
            sweep_period: (settings.idle_timeout.min(sessions::CLOSED_LINGER_NS) / 2)
                .max(1_000_000),
            workers: settings.workers.max(1),
            worker: settings.worker,
            stats: Stats::default(),
        };
        c.apply(plan);
        Ok(c)
    }

    fn apply(&mut self, plan: &PlanTable) {
        for (ci, l) in self.limit.iter_mut().enumerate() {
            *l = plan.sessions_of(ci);
        }
        for (fi, r) in self.rate.iter_mut().enumerate() {
            *r = plan.flow(fi).0;
        }
        for (ci, o) in self.open.iter_mut().enumerate() {
            *o = self.limit[ci] > 0
                && self.class_flows[ci]
                    .iter()
                    .any(|&f| self.rate[f as usize] > 0.0);
        }
        self.rebalance();
        self.epoch = plan.epoch;
    }

    /// Applies a new plan (of the configuration the classifier was built
    /// with) unless its epoch is older than the current one (serial order,
    /// [`epoch_newer`]). Returns whether it was applied. Allocates nothing.
    pub fn set_plan(&mut self, plan: &PlanTable) -> bool {
        if epoch_newer(self.epoch, plan.epoch) {
            return false;
        }
        self.apply(plan);
        true
    }

    /// Applies `plan` whatever its epoch: the plan the worker's channel
    /// switched to, whose order the plan assembler already decided (a new
    /// control session may start a new epoch space, see docs/shm.md).
    pub fn replace_plan(&mut self, plan: &PlanTable) {
        self.apply(plan);
    }

    /// Applies the live part of a reload (see [`crate::config::LiveChanges`]):
    /// the session idle timeout, per-host caps (per class index; a class
    /// keeps having a cap or not, as the reload check ensures) and overflow
    /// actions. Sessions already admitted stay; the new values apply to the
    /// next decisions and sweeps. Entries beyond the class count are ignored.
    pub fn apply_live(
        &mut self,
        idle_timeout_ns: Option<u64>,
        host_caps: Option<&[u32]>,
        overflow: Option<&[Overflow]>,
    ) {
        if let Some(ns) = idle_timeout_ns {
            self.sessions.set_idle_timeout(ns);
            self.sweep_period = (ns.min(sessions::CLOSED_LINGER_NS) / 2).max(1_000_000);
        }
        if let Some(caps) = host_caps {
            for (mine, &new) in self.host_cap.iter_mut().zip(caps) {
                if (*mine == u32::MAX) == (new == u32::MAX) {
                    *mine = new;
                }
            }
        }
        if let Some(ov) = overflow {
            for (mine, &new) in self.overflow.iter_mut().zip(ov) {
                *mine = new;
            }
        }
    }

    /// Class index of flow index `flow`.
    pub fn flow_class(&self, flow: usize) -> Option<usize> {
        self.flow_class.get(flow).copied().flatten()
    }

    /// Epoch of the plan in force.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// Sessions the plan in force admits in a class (its limit).
    pub fn admitted_limit(&self, class: u16) -> u32 {
        self.limit.get(usize::from(class)).copied().unwrap_or(0)
    }
    /// Live admitted sessions of a class.
    pub fn active_sessions(&self, class: u16) -> u32 {
        self.active.get(usize::from(class)).copied().unwrap_or(0)
    }
    /// Live sessions of a class refused (best effort or dropped) because the
    /// class had no room in the plan: demand the plan does not cover.
    /// Sessions over a per-host cap are not counted (more room would not
    /// admit them).
    pub fn waiting_sessions(&self, class: u16) -> u32 {
        self.waiting.get(usize::from(class)).copied().unwrap_or(0)
    }
    /// Live sessions pinned to a flow.
    pub fn flow_sessions(&self, flow: u32) -> u32 {
        self.flow_active.get(flow as usize).copied().unwrap_or(0)
    }
    /// Sessions in the table (admitted, best effort and refused).
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }
    /// The compiled rules.
    pub fn rules(&self) -> &RuleTable {
        &self.rules
    }

    /// Classifies one LAN-side Ethernet frame at time `now`.
    #[inline]
    pub fn classify(&mut self, frame: &[u8], now: Nanos) -> Result<Decision, DropReason> {
        let inner = match inner::parse(frame) {
            Ok(i) => i,
            Err(e) => {
                self.stats.malformed += 1;
                return Err(e.drop_reason());
            }
        };
        self.classify_inner(&inner, now)
    }

    /// Starts loading the session table's memory for an already parsed
    /// packet ([`sessions::SessionTable::prefetch`]): call it for every
    /// packet of a batch before classifying any, so that their cache
    /// misses overlap. A hint: changes nothing, counts nothing.
    #[inline]
    pub fn prefetch(&self, i: &Inner) {
        self.sessions.prefetch(&i.tuple);
    }

    /// Starts loading what classifying a packet of a session on `flow`
    /// reads of the flow (its rate and its surplus, checked on every hit):
    /// a hint for batches whose sessions' flows are known first
    /// ([`Classifier::session_flow`]). Changes nothing.
    #[inline]
    pub fn prefetch_flow(&self, flow: u32) {
        let f = flow as usize;
        if let Some(r) = self.rate.get(f) {
            crate::sys::prefetch_read((r as *const f64).cast::<u8>());
        }
        if let Some(s) = self.surplus.get(f) {
            crate::sys::prefetch_read((s as *const u32).cast::<u8>());
        }
    }

    /// The planned flow index a stored session of `i`'s 5-tuple is mapped
    /// to (none: no session, best effort, dropped), changing nothing: for
    /// the packet capture's flow filter, after the packet was classified.
    pub fn session_flow(&self, i: &Inner) -> Option<u32> {
        match self.sessions.find(&i.tuple) {
            Found::At(at) => {
                let f = self.sessions.slot(at).flow;
                (f < FLOW_DROP).then_some(f)
            }
            Found::Vacant(_) => None,
        }
    }

    /// Classifies an already parsed packet.
    #[inline]
    pub fn classify_inner(&mut self, i: &Inner, now: Nanos) -> Result<Decision, DropReason> {
        let now = tick(now);
        match self.sessions.find(&i.tuple) {
            Found::At(at) if self.sessions.is_expired(at, now) => self.renew(at, i, now),
            Found::At(at) => self.hit(at, i, now),
            Found::Vacant(at) => self.miss(at, i, now),
        }
    }

    /// A TCP RST from the remote end of a session a LAN host of this site
    /// opened: `i` is parsed from a packet arriving from the WAN (remote ->
    /// local), so its session is the reversed tuple. Frees the session's
    /// admission (or its place among the waiting) and forgets it, as the
    /// LAN host's own RST does. Without it, a connection the remote host
    /// refused (SYN, then RST/ACK from the far side) held its class's
    /// admission until the idle timeout: a client retrying while a server
    /// started filled a class of 2 sessions with ~48 refused connections
    /// (tests/clients.rs), and the transfer that followed, refused, went best
    /// effort. Returns whether a session of this worker's table ended.
    pub fn remote_rst(&mut self, i: &Inner) -> bool {
        if !i.rst() {
            return false;
        }
        match self.sessions.find(&i.tuple.reversed()) {
            Found::At(at) => {
                let s = *self.sessions.slot_mut(at);
                self.free(&s);
                self.sessions.remove(at);
                self.stats.remote_rst_closed += 1;
                true
            }
            Found::Vacant(_) => false,
        }
    }

    /// The worker that holds the session a packet from the WAN (remote ->
    /// local) answers: the owner of the class its reversed tuple falls in
    /// (`None`: no class, no session).
    pub fn remote_session_owner(&self, i: &Inner) -> Option<u16> {
        let local = Inner {
            tuple: i.tuple.reversed(),
            ..*i
        };
        self.rules
            .lookup(&local)
            .map(|class| class_owner(class, self.workers))
    }

    /// A packet of a stored, live session.
    #[inline]
    fn hit(&mut self, at: usize, i: &Inner, now: u32) -> Result<Decision, DropReason> {
        self.stats.session_hits += 1;
        let s = *self.sessions.slot_mut(at);
        let (class, mut flow) = (s.class, s.flow);
        let closing = i.rst() || i.fin();
        if s.closed() && i.syn() {
            // A new connection on the tuple of a closed one.
            self.stats.reopened += 1;
            self.sessions.touch_at(at, now);
            self.sessions.slot_mut(at).set_closed(false);
            return self.start(at, class, s.host());
        }
        if !s.closed() {
            // A closed session's linger runs from its FIN: segments sent
            // after it do not keep an unadmitted pin alive.
            self.sessions.touch_at(at, now);
        }
        if !s.closed()
            && !closing
            && (self.pin_is_stale(class, flow, s.host()) || self.take_surplus(flow))
        {
            self.free(&s);
            self.stats.readmitted += 1;
            return self.start(at, class, s.host());
        }
        if s.closed() || closing {
            // The last segments keep the session's flow unless it lost its
            // rate (they are not admitted again).
            if flow < FLOW_DROP && self.rate.get(flow as usize).is_none_or(|&r| r <= 0.0) {
                flow = FLOW_BEST_EFFORT;
                self.sessions.slot_mut(at).flow = flow;
            }
        }
        if closing {
            self.free(&s);
            if i.rst() {
                self.sessions.remove(at);
                self.stats.rst_closed += 1;
            } else {
                let slot = self.sessions.slot_mut(at);
                slot.flow = flow;
                slot.set_waiting(false);
                if !slot.closed() {
                    slot.set_closed(true);
                    self.stats.fin_closed += 1;
                }
            }
        }
        self.outcome(class, flow)
    }

    /// A packet of a stored session idle past its timeout (not swept yet):
    /// the old session is released and a new one starts in its slot.
    #[inline]
    fn renew(&mut self, at: usize, i: &Inner, now: u32) -> Result<Decision, DropReason> {
        let s = *self.sessions.slot_mut(at);
        self.free(&s);
        self.stats.expired += 1;
        if i.rst() {
            self.sessions.remove(at);
            self.stats.unknown_teardown += 1;
            return Ok(Decision::BestEffort {
                class: Some(s.class),
            });
        }
        self.sessions.touch_at(at, now);
        let slot = self.sessions.slot_mut(at);
        slot.set_waiting(false);
        if i.fin() {
            return Ok(self.closed_unknown(at, s.class));
        }
        slot.set_closed(false);
        self.stats.new_sessions += 1;
        self.start(at, s.class, s.host())
    }

    /// A packet of no stored session: classified, then admitted or not.
    #[inline]
    fn miss(&mut self, at: usize, i: &Inner, now: u32) -> Result<Decision, DropReason> {
        let Some(class) = self.rules.lookup(i) else {
            self.stats.unclassified += 1;
            return Ok(Decision::BestEffort { class: None });
        };
        let owner = class_owner(class, self.workers);
        if owner != self.worker {
            self.stats.handed_off += 1;
            return Ok(Decision::Handoff {
                class,
                worker: owner,
            });
        }
        if i.rst() {
            // The end of a connection the table does not hold (it started
            // before this gateway, or expired): nothing to admit.
            self.stats.unknown_teardown += 1;
            return Ok(Decision::BestEffort { class: Some(class) });
        }
        if self.sessions.is_full() {
            self.stats.table_full += 1;
            return Ok(Decision::BestEffort { class: Some(class) });
        }
        self.sessions
            .insert(at, &i.tuple, class, FLOW_BEST_EFFORT, now);
        if i.fin() {
            return Ok(self.closed_unknown(at, class));
        }
        self.stats.new_sessions += 1;
        self.start(at, class, Host::of(&i.tuple))
    }

    /// The FIN of a connection the table does not hold (it started before
    /// this gateway, or expired), stored at `at`: closed, best effort, no
    /// admission, so that the segments after it are not admitted either.
    #[inline]
    fn closed_unknown(&mut self, at: usize, class: u16) -> Decision {
        self.stats.unknown_teardown += 1;
        let slot = self.sessions.slot_mut(at);
        slot.flow = FLOW_BEST_EFFORT;
        slot.set_closed(true);
        Decision::BestEffort { class: Some(class) }
    }

    /// Admits the session at slot `at` (stored, holding no admission and not
    /// counted as waiting) and returns its outcome.
    #[inline]
    fn start(&mut self, at: usize, class: u16, host: Host) -> Result<Decision, DropReason> {
        let (flow, waiting) = self.admit(class, host);
        let slot = self.sessions.slot_mut(at);
        slot.flow = flow;
        slot.set_waiting(waiting);
        if waiting && let Some(w) = self.waiting.get_mut(usize::from(class)) {
            *w += 1;
        }
        self.outcome(class, flow)
    }

    /// Sets each flow's surplus: the admitted sessions over its share of its
    /// class's admitted sessions, `round(n x rate / class rate)`. A plan that
    /// gives a flow a rate after its class's sessions were pinned elsewhere
    /// (a link repaired after a partition) would otherwise leave it without
    /// sessions until they end. Flows without a rate have none (their
    /// sessions move anyway, [`Classifier::pin_is_stale`]).
    fn rebalance(&mut self) {
        for flows in &self.class_flows {
            let total: f64 = flows
                .iter()
                .map(|&f| self.rate[f as usize])
                .filter(|&r| r > 0.0)
                .sum();
            let n: u32 = flows.iter().map(|&f| self.flow_active[f as usize]).sum();
            let priced = flows
                .iter()
                .filter(|&&f| self.rate[f as usize] > 0.0)
                .count();
            // Every priced flow's share is a session at least when the class
            // has a session per priced flow (as `admit` spreads them).
            let least = if usize::try_from(n).is_ok_and(|n| n >= priced) {
                1.0
            } else {
                0.0
            };
            // Shares first (in `surplus` as scratch) ...
            let mut sum = 0u32;
            for &f in flows {
                let (fi, r) = (f as usize, self.rate[f as usize]);
                let share = if r > 0.0 && total > 0.0 {
                    (f64::from(n) * r / total).round().max(least)
                } else {
                    0.0
                };
                // 0 <= share <= n: exact in u32.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let share = share.clamp(0.0, f64::from(n)) as u32;
                self.surplus[fi] = share;
                sum += share;
            }
            // ... at most the class's sessions in all: the largest shares give
            // up what the one-session floor took (so that a flow left without
            // a session by an earlier plan gets one of theirs back).
            while sum > n {
                let Some(&big) = flows
                    .iter()
                    .filter(|&&f| self.surplus[f as usize] > 1)
                    .max_by_key(|&&f| self.surplus[f as usize])
                else {
                    break;
                };
                self.surplus[big as usize] -= 1;
                sum -= 1;
            }
            // ... then each flow's sessions above its share.
            for &f in flows {
                let fi = f as usize;
                let share = self.surplus[fi];
                self.surplus[fi] = if self.rate[fi] > 0.0 {
                    self.flow_active[fi].saturating_sub(share)
                } else {
                    0
                };
            }
        }
    }

    /// Takes one of `flow`'s surplus sessions (see [`Classifier::rebalance`]).
    #[inline]
    fn take_surplus(&mut self, flow: u32) -> bool {
        match self.surplus.get_mut(flow as usize) {
            Some(s) if *s > 0 => {
                *s -= 1;
                true
            }
            _ => false,
        }
    }

    /// Whether a busy session's decision no longer fits the plan in force:
    /// its flow has no rate any more (a re-plan routed the class around a
    /// failed link), or it was refused / sent best effort and its class has
    /// room now in a flow with a rate (it arrived before the plan, or the
    /// plan grew) and its host is under its cap. A few loads and compares
    /// per packet.
    #[inline]
    fn pin_is_stale(&self, class: u16, flow: u32, host: Host) -> bool {
        let c = usize::from(class);
        if flow < FLOW_DROP {
            return self.rate.get(flow as usize).is_some_and(|&r| r <= 0.0);
        }
        self.open.get(c).copied().unwrap_or(false)
            && self
                .active
                .get(c)
                .zip(self.limit.get(c))
                .is_some_and(|(a, l)| a < l)
            && self.host_room(class, host)
    }

    /// Whether `host` may have one more session of `class` admitted.
    #[inline]
    fn host_room(&self, class: u16, host: Host) -> bool {
        match self.host_cap.get(usize::from(class)) {
            Some(&cap) if cap != u32::MAX => self.hosts.count(host, class) < cap,
            _ => true,
        }
    }

    /// Decides a new session of `class` from `host`: a flow, or the
    /// overflow action; and whether it is refused for lack of room in its
    /// class (waiting), rather than by its host's cap.
    #[inline]
    fn admit(&mut self, class: u16, host: Host) -> (u32, bool) {
        let c = usize::from(class);
        let mut best: Option<u32> = None;
        let room = self.active[c] < self.limit[c];
        let host_room = self.host_room(class, host);
        if room && !host_room {
            self.stats.host_capped += 1;
        }
        if room && host_room {
            let mut best_key = (0u32, 0.0f64);
            for &f in &self.class_flows[c] {
                let (n, r) = (self.flow_active[f as usize], self.rate[f as usize]);
                if r <= 0.0 {
                    continue;
                }
                // A flow without a session first; then
                // (n + 1) / r < (bn + 1) / br  <=>  (n + 1) * br < (bn + 1) * r
                let better = match (n == 0, best_key.0 == 0) {
                    _ if best.is_none() => true,
                    (true, false) => true,
                    (false, true) => false,
                    _ => f64::from(n + 1) * best_key.1 < f64::from(best_key.0 + 1) * r,
                };
                if better {
                    best = Some(f);
                    best_key = (n, r);
                }
            }
        }
        if best.is_some() && self.host_cap[c] != u32::MAX && !self.hosts.add(host, class) {
            // Cannot happen (one pair per admitted session fits): refuse
            // rather than admit uncounted.
            best = None;
        }
        // Refused by the class's room (limit reached, or no flow with a
        // rate), not by the host's cap.
        let waiting = !room || host_room;
        match best {
            Some(f) => {
                self.active[c] += 1;
                self.flow_active[f as usize] += 1;
                self.stats.admitted += 1;
                (f, false)
            }
            None => match self.overflow[c] {
                Overflow::BestEffort => {
                    self.stats.overflow_best_effort += 1;
                    (FLOW_BEST_EFFORT, waiting)
                }
                Overflow::Drop => {
                    self.stats.overflow_dropped += 1;
                    (FLOW_DROP, waiting)
                }
            },
        }
    }

    /// Frees what the stored session `s` holds: its admission, or its place
    /// among the waiting sessions.
    fn free(&mut self, s: &Slot) {
        free(
            (&mut self.active, &mut self.flow_active, &mut self.waiting),
            (&self.host_cap, &mut self.hosts),
            s,
        );
    }

    #[inline]
    fn outcome(&mut self, class: u16, flow: u32) -> Result<Decision, DropReason> {
        match flow {
            FLOW_BEST_EFFORT => Ok(Decision::BestEffort { class: Some(class) }),
            FLOW_DROP => {
                self.stats.not_admitted_packets += 1;
                Err(DropReason::NotAdmitted)
            }
            _ => Ok(Decision::Flow { class, flow }),
        }
    }

    /// Housekeeping: sweeps up to `budget` session slots and forgets
    /// sessions idle past the timeout (closed ones past their linger),
    /// freeing their admission. To visit the whole table once per timeout
    /// `T` with `B` calls per second, use `budget >= slots / (T * B)`;
    /// [`Classifier::housekeep`] computes it.
    pub fn expire(&mut self, now: Nanos, budget: usize) -> usize {
        let counts = (&mut self.active, &mut self.flow_active, &mut self.waiting);
        let (host_cap, hosts) = (&self.host_cap, &mut self.hosts);
        let n = self.sessions.expire(tick(now), budget, |s| {
            free(
                (&mut *counts.0, &mut *counts.1, &mut *counts.2),
                (host_cap, hosts),
                s,
            );
        });
        self.stats.expired += u64::try_from(n).unwrap_or(u64::MAX);
        n
    }

    /// Housekeeping at any cadence (the worker calls it with its timers):
    /// sweeps as many slots as the time since the previous call asks for,
    /// so that the whole table is visited at least twice per idle timeout
    /// (and per closed linger). Allocates nothing. Returns the sessions
    /// removed.
    pub fn housekeep(&mut self, now: Nanos) -> usize {
        let last = *self.last_sweep.get_or_insert(now);
        let elapsed = now.saturating_sub(last);
        if elapsed == 0 {
            return 0;
        }
        self.last_sweep = Some(now);
        let slots = self.sessions.slots();
        let want = (u128::from(elapsed) * slots as u128).div_ceil(u128::from(self.sweep_period));
        let budget = usize::try_from(want).unwrap_or(slots).min(slots);
        self.expire(now, budget)
    }

    /// Checks the per-class and per-flow counts against the table (tests).
    #[cfg(test)]
    pub(crate) fn counts_match_table(&self) -> Result<(), String> {
        let mut active = vec![0u32; self.active.len()];
        let mut flow_active = vec![0u32; self.flow_active.len()];
        let mut waiting = vec![0u32; self.waiting.len()];
        for s in self.sessions.occupied() {
            let c = usize::from(s.class);
            if s.closed() {
                if s.waiting() {
                    return Err(format!("closed session counted as waiting: {s:?}"));
                }
            } else if s.flow < FLOW_DROP {
                active[c] += 1;
                flow_active[s.flow as usize] += 1;
            } else if s.waiting() {
                waiting[c] += 1;
            }
        }
        if (&active, &flow_active, &waiting) != (&self.active, &self.flow_active, &self.waiting) {
            return Err(format!(
                "table: active {active:?} flows {flow_active:?} waiting {waiting:?}; \
                 counts: active {:?} flows {:?} waiting {:?}",
                self.active, self.flow_active, self.waiting
            ));
        }
        Ok(())
    }
}

/// Frees what the stored session `s` holds: nothing when it is closed (freed
/// at its FIN); for an admitted session the class's and the flow's live
/// counts and the host's count when its class has a cap; for a waiting one
/// its class's waiting count.
#[inline]
fn free(
    (active, flow_active, waiting): (&mut [u32], &mut [u32], &mut [u32]),
    (host_cap, hosts): (&[u32], &mut HostTable),
    s: &Slot,
) {
    let class = usize::from(s.class);
    if s.closed() {
        return;
    }
    if s.flow >= FLOW_DROP {
        if s.waiting()
            && let Some(w) = waiting.get_mut(class)
        {
            *w = w.saturating_sub(1);
        }
        return;
    }
    if let Some(a) = active.get_mut(class) {
        *a = a.saturating_sub(1);
    }
    if let Some(a) = flow_active.get_mut(s.flow as usize) {
        *a = a.saturating_sub(1);
    }
    if host_cap.get(class).is_some_and(|&c| c != u32::MAX) {
        hosts.remove(s.host(), s.class);
    }
}
