//! The control loop's decisions, pure: when to re-plan and with which inputs (the plan itself
//! comes from a plan source, `source.rs`). Time is an argument; nothing here touches the OS.
//!
//! Triggers (see `docs/control-loop.md`):
//! - `initial`: no plan yet;
//! - `periodic`: `replan_ns` since the last solve;
//! - `link_failed`: a link marked failed or recovered (immediate);
//! - `capacity`: a link's planning capacity differs from the one the last plan used by more
//!   than `capacity_change` × its configured capacity;
//! - `demand`: a class's demand estimate differs from the one the last plan used by at least
//!   `max(1, demand_change × planned)` sessions, continuously for `demand_hold_ns` (counted from
//!   the later of the first difference and the last plan);
//! - `refused`: the dataplane reports sessions of a class refused for lack of room (waiting)
//!   and the demand they make is above the one the last plan used: at once, no hold.
//!
//! Capacity and demand triggers are at most one solve per `min_event_gap_ns`, refusal triggers
//! one per `refusal_gap_ns`; one solve is outstanding at a time and triggers arriving meanwhile
//! wait for the next one.

use mongate_dataplane::config::Config;
use mongate_dataplane::plan::PlanTable;
use mongate_dataplane::shm::msg::{ClassTelemetry, FlowTelemetry};

use super::estimator::{Estimator, EstimatorConfig, LossEvidence};
use super::site::{MatchError, SiteMap};
use super::telemetry::TelemetryBook;
use crate::pfo::Instance;

/// Nanoseconds per second.
pub const SEC_NS: u64 = 1_000_000_000;

/// A window is saturated (for the capacity estimator) above this many times the loss budget.
/// MONtra's flows lose about the budget on a full link (on a link PFO over-estimates, more:
/// `budget x target / carried`); a link that loses less than half of it has room. (At 1.5 x
/// the budget, a link re-planned to its true capacity stopped looking lossy, the estimator
/// went back to the configured capacity and the plan oscillated.)
pub const LOSS_THRESHOLD_PER_BUDGET: f64 = 0.5;

/// Planner parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannerConfig {
    /// Periodic re-plan interval.
    pub replan_ns: u64,
    /// Estimation window.
    pub window_ns: u64,
    /// Reports older than this are ignored.
    pub stale_ns: u64,
    /// Least time between two solves triggered by capacity or demand changes.
    pub min_event_gap_ns: u64,
    /// Capacity change (fraction of the configured capacity) that triggers a re-plan.
    pub capacity_change: f64,
    /// Relative demand change that triggers a re-plan (at least one session).
    pub demand_change: f64,
    /// How long a demand change must last.
    pub demand_hold_ns: u64,
    /// Sessions kept free above the observed count (fraction, at least 1).
    pub demand_headroom: f64,
    /// Least time between two solves triggered by refused sessions.
    pub refusal_gap_ns: u64,
    /// Capacity estimator (its loss threshold is at most [`LOSS_THRESHOLD_PER_BUDGET`] x the
    /// instance's loss budget: MONtra's flows lose about the budget on a link that carries its
    /// plan, more on a link that carries less than PFO believes).
    pub estimator: EstimatorConfig,
    /// Re-plan with the link capacities estimated from the flows' loss and delivered rates
    /// (false: plan with the instance's capacities, whatever the wire carries; the estimator
    /// still runs and [`Planner::weight_scales`] keeps the loss budget on links that carry
    /// less than the plan puts on them).
    pub estimate_capacity: bool,
    /// With `estimate_capacity` off, scale the weights of flows on links that carry less than
    /// the plan puts on them ([`Planner::weight_scales`]); false: the plan's weights as given.
    pub scale_weights: bool,
    /// After a link is marked failed or recovered, and after the plan that follows, the
    /// estimator skips the windows closing within this long: the failover's burst (traffic
    /// moved onto a detour before the re-plan) and the flows' move to the new plan lose
    /// packets that say nothing of a link's capacity. Without it the demo's cut A-C link
    /// made the B-C estimate fall to what the burst got through, and the detour's target
    /// with it (3.2-3.9 Mbit/s instead of 4.6).
    pub settle_ns: u64,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        Self {
            replan_ns: 5 * SEC_NS,
            window_ns: SEC_NS,
            stale_ns: 3 * SEC_NS,
            min_event_gap_ns: 2 * SEC_NS,
            capacity_change: 0.10,
            demand_change: 0.10,
            demand_hold_ns: 5 * SEC_NS,
            demand_headroom: 0.10,
            refusal_gap_ns: SEC_NS / 4,
            estimator: EstimatorConfig::default(),
            estimate_capacity: true,
            scale_weights: true,
            settle_ns: 3 * SEC_NS,
        }
    }
}

/// Why a solve was requested.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// No plan yet.
    Initial,
    /// The periodic interval elapsed.
    Periodic,
    /// A link was marked failed (`failed`) or recovered.
    LinkFailed {
        /// Link id.
        link: String,
        /// Failed or recovered.
        failed: bool,
    },
    /// A link's capacity estimate moved.
    Capacity {
        /// Link id.
        link: String,
        /// Capacity the last plan used.
        planned: f64,
        /// Capacity now.
        now: f64,
        /// The link's last lossy window (what moved the estimate down, or held it).
        evidence: Option<LossEvidence>,
    },
    /// A class's demand estimate moved.
    Demand {
        /// Class id.
        class: String,
        /// Demand the last plan used.
        planned: u32,
        /// Demand now.
        now: u32,
    },
    /// The operator reloaded the configuration (`mongate reload`, SIGHUP)
    /// with a new instance.
    Reload,
    /// Sessions of a class were refused for lack of room and the plan did not count them.
    Refused {
        /// Class id.
        class: String,
        /// Demand the last plan used.
        planned: u32,
        /// Demand now (active + waiting + headroom, at most `N_c`).
        now: u32,
        /// Sessions waiting (refused, still live).
        waiting: u32,
    },
}

impl Trigger {
    /// Short name (`initial`, `periodic`, `link_failed`, `capacity`, `demand`, `refused`).
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Initial => "initial",
            Trigger::Periodic => "periodic",
            Trigger::LinkFailed { .. } => "link_failed",
            Trigger::Capacity { .. } => "capacity",
            Trigger::Demand { .. } => "demand",
            Trigger::Refused { .. } => "refused",
            Trigger::Reload => "reload",
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Initial => write!(f, "initial plan"),
            Trigger::Periodic => write!(f, "periodic re-plan"),
            Trigger::Reload => write!(f, "configuration reloaded"),
            Trigger::LinkFailed { link, failed } => write!(
                f,
                "link {link:?} {}",
                if *failed { "failed" } else { "recovered" }
            ),
            Trigger::Capacity {
                link,
                planned,
                now,
                evidence,
            } => {
                write!(
                    f,
                    "link {link:?} capacity estimate {now:.3} (planned with {planned:.3}"
                )?;
                if let Some(e) = evidence {
                    write!(
                        f,
                        "; last lossy window: {:.1} % of {} packets lost carrying {:.3} on average{}",
                        100.0 * e.loss,
                        e.packets,
                        e.carried,
                        if e.sample { "" } else { ", full as planned" }
                    )?;
                }
                write!(f, ")")
            }
            Trigger::Demand {
                class,
                planned,
                now,
            } => write!(
                f,
                "class {class:?} demand {now} sessions (planned with {planned})"
            ),
            Trigger::Refused {
                class,
                planned,
                now,
                waiting,
            } => write!(
                f,
                "class {class:?} refused {waiting} sessions: demand {now} (planned with {planned})"
            ),
        }
    }
}

/// A solve to run: the instance with current capacities and demands, and why.
#[derive(Debug, Clone)]
pub struct SolveRequest {
    /// Instance to solve.
    pub instance: Instance,
    /// Why (at least one).
    pub triggers: Vec<Trigger>,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlannerStats {
    /// Telemetry records naming an unknown flow or class, or one not starting at this site.
    pub bad_records: u64,
    /// Solves requested.
    pub solves: u64,
    /// Estimation windows skipped while the flows settle after a link failure or recovery.
    pub windows_skipped: u64,
}

/// The pure decision core of `mongate-control run`.
#[derive(Debug, Clone)]
pub struct Planner {
    cfg: PlannerConfig,
    base: Instance,
    map: SiteMap,
    book: TelemetryBook,
    est: Estimator,
    planned_caps: Vec<f64>,
    /// Each link's load under the plan in force, every site's flows (admitted sessions x
    /// per-session rate): what [`Planner::weight_scales`] holds the estimates against.
    planned_load: Vec<f64>,
    planned_demand: Vec<u32>,
    admitted: Vec<u32>,
    other_load: Vec<f64>,
    demand_since: Vec<Option<u64>>,
    last_solve_ns: Option<u64>,
    last_event_solve_ns: Option<u64>,
    last_refusal_solve_ns: Option<u64>,
    last_plan_ns: Option<u64>,
    window_start: Option<u64>,
    /// Estimation windows closing before this are skipped (`PlannerConfig::settle_ns`).
    settle_until: Option<u64>,
    /// A link mark changed since the last plan: the next plan extends the settling.
    settle_on_plan: bool,
    solving: bool,
    pending: Vec<Trigger>,
    stats: PlannerStats,
    /// Per instance flow: it rides a detour over links the instance does not have, so its
    /// windows are left out ([`Planner::set_flow_links`]).
    unobserved: Vec<bool>,
}

impl Planner {
    /// A planner for site `cfg` of the organisation-wide instance `inst` (checked: same class
    /// and flow ids, same class per flow).
    pub fn new(inst: Instance, cfg: &Config, pc: PlannerConfig) -> Result<Self, MatchError> {
        let map = SiteMap::new(&inst, cfg)?;
        let nflows = inst.flows.len();
        let flow_links: Vec<Vec<usize>> = inst.flows.iter().map(|f| f.links.clone()).collect();
        let caps: Vec<f64> = inst.links.iter().map(|l| l.capacity).collect();
        let demand: Vec<u32> = inst.classes.iter().map(|c| c.sessions).collect();
        let mut ec = pc.estimator.clone();
        ec.loss_threshold = ec
            .loss_threshold
            .min(LOSS_THRESHOLD_PER_BUDGET * inst.loss_budget);
        ec.app_limited_loss = inst.loss_budget;
        Ok(Self {
            est: Estimator::new(ec, caps.clone(), &flow_links),
            book: TelemetryBook::new(inst.flows.len(), inst.classes.len()),
            planned_load: vec![0.0; caps.len()],
            planned_caps: caps,
            planned_demand: demand,
            admitted: vec![0; inst.classes.len()],
            other_load: vec![0.0; inst.links.len()],
            demand_since: vec![None; inst.classes.len()],
            cfg: pc,
            base: inst,
            map,
            last_solve_ns: None,
            last_event_solve_ns: None,
            last_refusal_solve_ns: None,
            last_plan_ns: None,
            window_start: None,
            settle_until: None,
            settle_on_plan: false,
            solving: false,
            pending: Vec::new(),
            stats: PlannerStats::default(),
            unobserved: vec![false; nflows],
        })
    }

    /// Replaces the instance (a reload) and asks for a solve at once. The new
    /// instance must map onto the site configuration as the running one
    /// does (same classes and flows, same order): the plan source and the
    /// dataplane's plan shape are built from that map. Capacity estimates
    /// start again from the new instance's capacities; the admitted sessions,
    /// an outstanding solve and the counters carry over.
    ///
    /// # Errors
    /// The instance does not fit the configuration, or maps differently;
    /// the planner is unchanged.
    pub fn replace_instance(&mut self, inst: Instance, cfg: &Config) -> Result<(), MatchError> {
        let mut next = Planner::new(inst, cfg, self.cfg.clone())?;
        if next.map != self.map {
            return Err(MatchError {
                entry: "instance".to_owned(),
                reason: "its classes or flows come in another order than the running instance's \
                         (restart the control to take it)"
                    .to_owned(),
            });
        }
        next.admitted.clone_from(&self.admitted);
        next.solving = self.solving;
        next.stats = self.stats;
        next.last_solve_ns = self.last_solve_ns;
        next.last_event_solve_ns = self.last_event_solve_ns;
        next.last_refusal_solve_ns = self.last_refusal_solve_ns;
        next.last_plan_ns = self.last_plan_ns;
        next.settle_until = self.settle_until;
        next.settle_on_plan = self.settle_on_plan;
        next.pending = std::mem::take(&mut self.pending);
        next.pending.retain(|t| !matches!(t, Trigger::Initial));
        if !next.pending.contains(&Trigger::Reload) {
            next.pending.push(Trigger::Reload);
        }
        *self = next;
        Ok(())
    }

    /// The instance as given (configured capacities and demands).
    pub fn base(&self) -> &Instance {
        &self.base
    }

    /// The index maps between the instance and the site configuration.
    pub fn site_map(&self) -> &SiteMap {
        &self.map
    }

    /// The estimator.
    pub fn estimator(&self) -> &Estimator {
        &self.est
    }

    /// Counters.
    pub fn stats(&self) -> PlannerStats {
        self.stats
    }

    /// Whether a solve is outstanding.
    pub fn solving(&self) -> bool {
        self.solving
    }

    /// A worker's flow telemetry (configuration flow indices). Records for unknown flows or
    /// flows not starting at this site are counted and ignored.
    pub fn on_flows(&mut self, worker: usize, now_ns: u64, items: &[FlowTelemetry]) {
        for t in items {
            let f = usize::try_from(t.flow)
                .ok()
                .and_then(|i| self.map.flow_from_cfg.get(i).copied());
            let ok = f.is_some_and(|f| {
                self.map.local_flow[f]
                    && self.book.flow(
                        worker,
                        f,
                        now_ns,
                        t.rate_bps,
                        (t.acks, t.losses, t.tx_bytes),
                    )
            });
            if !ok {
                self.stats.bad_records += 1;
            }
        }
    }

    /// A worker's class telemetry (configuration class indices); bad records are counted.
    pub fn on_classes(&mut self, worker: usize, now_ns: u64, items: &[ClassTelemetry]) {
        for t in items {
            let c = usize::try_from(t.class)
                .ok()
                .and_then(|i| self.map.class_from_cfg.get(i).copied());
            let ok = c.is_some_and(|c| {
                self.map.local_class[c] && self.book.class(worker, c, now_ns, t.active, t.waiting)
            });
            if !ok {
                self.stats.bad_records += 1;
            }
        }
    }

    /// The instance link between sites `a` and `b`: `a-b`, else `b-a`.
    pub fn link_between(&self, a: &str, b: &str) -> Option<usize> {
        self.link_index(&format!("{a}-{b}"))
            .or_else(|| self.link_index(&format!("{b}-{a}")))
    }

    /// The links config flow `cfg_flow` crosses when this site's (`me`) traffic to the flow's
    /// next site `next` goes through waypoint `via` (`None`: directly): its planned links,
    /// with the link to `next` replaced by the links to the waypoint and on from it (each link
    /// once). `None`:
    /// an unknown flow, or a detour over a link the instance does not have.
    pub fn links_via(
        &self,
        cfg_flow: usize,
        me: &str,
        next: &str,
        via: Option<&str>,
    ) -> Option<Vec<usize>> {
        let f = *self.map.flow_from_cfg.get(cfg_flow)?;
        let planned = &self.base.flows.get(f)?.links;
        let Some(w) = via else {
            return Some(planned.clone());
        };
        let first = self.link_between(me, next)?;
        let mut v = vec![self.link_between(me, w)?, self.link_between(w, next)?];
        for &l in planned {
            if l != first && !v.contains(&l) {
                v.push(l);
            }
        }
        Some(v)
    }

    /// The links config flow `cfg_flow` of this site crosses now, for the capacity estimator:
    /// a detour's when the path manager moved its next hop's traffic onto a waypoint (its
    /// windows then count on the links it crosses, not on its planned one), its planned
    /// links again when it is back; `None`: a detour the instance has no links for (its
    /// windows are left out).
    pub fn set_flow_links(&mut self, cfg_flow: usize, links: Option<&[usize]>) {
        let Some(&f) = self.map.flow_from_cfg.get(cfg_flow) else {
            return;
        };
        if let Some(u) = self.unobserved.get_mut(f) {
            *u = links.is_none();
        }
        if let Some(ls) = links {
            self.est.set_flow_links(f, ls);
        }
    }

    /// Index of link `id`.
    pub fn link_index(&self, id: &str) -> Option<usize> {
        self.base.links.iter().position(|l| l.id == id)
    }

    /// This site's path manager moved traffic at `now_ns` (a failover, a return), or a peer
    /// got its first session key: the estimator skips the windows closing within `settle_ns`
    /// (the move's burst, and a detour that crosses links PFO did not plan, say nothing of
    /// their capacities; nor do the losses before a key and the burst of what waited for it:
    /// a CI run of tests/hostile.rs cut A's B-C estimate to 3.5 of 5 Mbit/s at the start, and
    /// the plan took A->C's session away).
    pub fn settle(&mut self, now_ns: u64) {
        let until = now_ns.saturating_add(self.cfg.settle_ns);
        self.settle_until = Some(self.settle_until.map_or(until, |t| t.max(until)));
        self.est.reset_streaks();
    }

    /// Marks link `l` failed (planned with capacity 0) or recovered at `now_ns`; a change
    /// re-plans at the next tick and starts the estimator's settling
    /// ([`PlannerConfig::settle_ns`]). Returns whether anything changed.
    pub fn mark_link_failed(&mut self, l: usize, failed: bool, now_ns: u64) -> bool {
        if !self.est.mark_link_failed(l, failed) {
            return false;
        }
        self.settle_on_plan = true;
        self.settle_until = Some(now_ns.saturating_add(self.cfg.settle_ns));
        self.est.reset_streaks();
        self.pending.push(Trigger::LinkFailed {
            link: self.base.links[l].id.clone(),
            failed,
        });
        true
    }

    /// The demand PFO should plan class `c` with, at most the instance's `N_c`. With fresh
    /// telemetry of the class from this site: sessions waiting (refused for lack of room) count
    /// as demand, `active + waiting` plus headroom; without waiting sessions and fewer active
    /// than the last plan admitted, `active` plus headroom. Otherwise (not observed here, or
    /// saturated: real demand unknown) `N_c`. Headroom: `max(1, ⌈demand_headroom × n⌉)`.
    pub fn demand_target(&self, c: usize, now_ns: u64) -> u32 {
        let n_max = self.base.classes[c].sessions;
        let with_room = |n: u32| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            // non-negative, at most a few times a u32
            let room = (f64::from(n) * self.cfg.demand_headroom).ceil().max(1.0) as u64;
            let t = u64::from(n).saturating_add(room);
            u32::try_from(t).unwrap_or(u32::MAX).min(n_max)
        };
        match self.book.sessions(c, now_ns, self.cfg.stale_ns) {
            Some(s) if s.waiting > 0 => with_room(s.active.saturating_add(s.waiting)),
            Some(s) if s.active < self.admitted[c] => with_room(s.active),
            _ => n_max,
        }
    }

    /// Sessions of class `c` waiting (refused for lack of room) and the demand they show
    /// (`active + waiting`, at most `N_c`), from fresh telemetry; `(0, 0)` without.
    pub fn refused(&self, c: usize, now_ns: u64) -> (u32, u32) {
        let n_max = self.base.classes[c].sessions;
        self.book
            .sessions(c, now_ns, self.cfg.stale_ns)
            .map_or((0, 0), |s| {
                (s.waiting, s.active.saturating_add(s.waiting).min(n_max))
            })
    }

    /// The capacity and demand triggers due now, and the refusal triggers.
    fn due_triggers(&mut self, now_ns: u64) -> (Vec<Trigger>, Vec<Trigger>) {
        let mut due = Vec::new();
        let mut refused = Vec::new();
        for l in 0..self.est.links() {
            if self.est.failed(l) || !self.cfg.estimate_capacity {
                continue;
            }
            let now = self.est.planning_capacity(l);
            let planned = self.planned_caps[l];
            if (now - planned).abs() > self.cfg.capacity_change * self.est.configured(l) {
                due.push(Trigger::Capacity {
                    link: self.base.links[l].id.clone(),
                    planned,
                    now,
                    evidence: self.est.evidence(l),
                });
            }
        }
        for c in 0..self.base.classes.len() {
            let target = self.demand_target(c, now_ns);
            let planned = self.planned_demand[c];
            let (waiting, seen) = self.refused(c, now_ns);
            if waiting > 0 && seen > planned {
                // Refused sessions the last plan did not count: no hold. (Sessions refused
                // because PFO admitted fewer than the planned demand are counted already.)
                self.demand_since[c] = None;
                refused.push(Trigger::Refused {
                    class: self.base.classes[c].id.clone(),
                    planned,
                    now: target,
                    waiting,
                });
                continue;
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // < 2^32
            let band = (f64::from(planned) * self.cfg.demand_change)
                .ceil()
                .max(1.0) as u32;
            if target.abs_diff(planned) < band {
                self.demand_since[c] = None;
                continue;
            }
            let since = *self.demand_since[c].get_or_insert(now_ns);
            let from = since.max(self.last_plan_ns.unwrap_or(0));
            if now_ns.saturating_sub(from) >= self.cfg.demand_hold_ns {
                due.push(Trigger::Demand {
                    class: self.base.classes[c].id.clone(),
                    planned,
                    now: target,
                });
            }
        }
        (due, refused)
    }

    /// Advances time: closes estimation windows, evaluates triggers, and returns a solve to
    /// run, if one is due and none is outstanding.
    pub fn tick(&mut self, now_ns: u64) -> Option<SolveRequest> {
        let start = *self.window_start.get_or_insert(now_ns);
        if now_ns.saturating_sub(start) >= self.cfg.window_ns {
            let windows = self.book.take_window(now_ns, self.cfg.stale_ns);
            let observed: Vec<_> = windows
                .iter()
                .zip(&self.map.local_flow)
                .zip(&self.unobserved)
                .map(|((w, &local), &skip)| if local && !skip { *w } else { None })
                .collect();
            let settling = self.settle_until.is_some_and(|t| now_ns < t);
            if settling {
                self.stats.windows_skipped += 1;
                self.est.reset_streaks();
            } else {
                self.est.update(&observed, &self.other_load);
            }
            self.window_start = Some(now_ns);
        }
        if self.last_solve_ns.is_none() && !self.pending.contains(&Trigger::Initial) {
            self.pending.push(Trigger::Initial);
        }
        let (due, refused) = self.due_triggers(now_ns);
        if self.solving {
            return None;
        }
        let urgent = !self.pending.is_empty();
        let gap_ok = self
            .last_event_solve_ns
            .is_none_or(|t| now_ns.saturating_sub(t) >= self.cfg.min_event_gap_ns);
        let eventful = !due.is_empty() && gap_ok;
        let refusal_gap_ok = self
            .last_refusal_solve_ns
            .is_none_or(|t| now_ns.saturating_sub(t) >= self.cfg.refusal_gap_ns);
        let refusals = !refused.is_empty() && refusal_gap_ok;
        let periodic = self
            .last_solve_ns
            .is_some_and(|t| now_ns.saturating_sub(t) >= self.cfg.replan_ns);
        if !(urgent || eventful || refusals || periodic) {
            return None;
        }
        let mut triggers = std::mem::take(&mut self.pending);
        if eventful {
            triggers.extend(due);
        }
        if !refused.is_empty() {
            // Whatever started this solve, it plans with the refused sessions.
            self.last_refusal_solve_ns = Some(now_ns);
            triggers.extend(refused);
        }
        if triggers.is_empty() {
            triggers.push(Trigger::Periodic);
        } else {
            self.last_event_solve_ns = Some(now_ns);
        }
        let mut instance = self.base.clone();
        for (l, link) in instance.links.iter_mut().enumerate() {
            link.capacity = self.plan_capacity(l);
        }
        for (c, class) in instance.classes.iter_mut().enumerate() {
            class.sessions = self.demand_target(c, now_ns);
        }
        self.planned_caps = instance.links.iter().map(|l| l.capacity).collect();
        self.planned_demand = instance.classes.iter().map(|c| c.sessions).collect();
        self.demand_since.fill(None);
        self.last_solve_ns = Some(now_ns);
        self.solving = true;
        self.stats.solves += 1;
        Some(SolveRequest { instance, triggers })
    }

    /// The outstanding solve was lost (solver gone): allow the next one.
    pub fn solve_abandoned(&mut self) {
        self.solving = false;
    }

    /// Takes the plan answering the outstanding solve (from the plan source): the sessions it
    /// admits and the planned load of the flows this site does not observe.
    pub fn on_plan(&mut self, now_ns: u64, plan: &PlanTable) {
        self.solving = false;
        self.last_plan_ns = Some(now_ns);
        if self.settle_on_plan {
            let until = now_ns.saturating_add(self.cfg.settle_ns);
            self.settle_until = Some(self.settle_until.map_or(until, |t| t.max(until)));
            // A mark that came while this plan was being solved: its own plan settles again.
            self.settle_on_plan = self
                .pending
                .iter()
                .any(|t| matches!(t, Trigger::LinkFailed { .. }));
        }
        for (a, &i) in self.admitted.iter_mut().zip(&self.map.class_to_cfg) {
            *a = plan.sessions_of(i);
        }
        // Planned load of the flows this site does not observe, per link, and of all.
        self.other_load.fill(0.0);
        self.planned_load.fill(0.0);
        for (f, flow) in self.base.flows.iter().enumerate() {
            let x = plan.flow(self.map.flow_to_cfg[f]).0;
            let n = f64::from(self.admitted[flow.class]);
            let load = if (n * x).is_finite() { n * x } else { 0.0 };
            for &l in &flow.links {
                self.planned_load[l] += load;
                if !self.map.local_flow[f] {
                    self.other_load[l] += load;
                }
            }
        }
    }

    /// The capacity of link `l` a solve plans with: 0 when marked failed; else the estimate
    /// when re-planning on estimates ([`PlannerConfig::estimate_capacity`]), the instance's
    /// capacity when not.
    pub fn plan_capacity(&self, l: usize) -> f64 {
        if self.cfg.estimate_capacity || self.est.failed(l) {
            self.est.planning_capacity(l)
        } else {
            self.est.configured(l)
        }
    }

    /// The factor on each local flow's MONtra weight (by configuration flow index; 1 for the
    /// others) that keeps the loss budget when the plan cannot follow the wire.
    ///
    /// The mapping scales the weights so that a flow loses the budget at its target; on a
    /// link that carries only `C` of the plan's load `L` on it, MONtra's flows keep their
    /// ratios but settle at a loss of `budget x L / C` (`q/(1-q) = w/x`). When the plan's
    /// capacities are not re-estimated (`estimate_capacity` off: re-planning turned off; a
    /// plan source that does not follow this site's estimates, such as an organisation-wide
    /// plan, is meant to run so), the flows
    /// crossing such a link get their weights times `C / L`, the link's capacity estimate over
    /// its planned load: the rates keep their ratios (every flow on the link is scaled alike),
    /// the loss comes back to the budget. A flow takes its most over-stated link's factor. A
    /// link whose estimate is within [`SCALE_DEADBAND`] of its planned load (a full link's
    /// estimate wanders by a few percent), marked failed (the re-plan's business) or not
    /// planned is left alone; the factor is at least [`MIN_WEIGHT_SCALE`]. With
    /// `estimate_capacity` on the plan follows the estimates and every factor is 1; so it is
    /// with `scale_weights` off.
    pub fn weight_scales(&self) -> Vec<f64> {
        let mut out = vec![1.0; self.map.flow_from_cfg.len()];
        if self.cfg.estimate_capacity || !self.cfg.scale_weights {
            return out;
        }
        let ratio = |l: usize| {
            let load = self.planned_load.get(l).copied().unwrap_or(0.0);
            let est = self.est.estimate(l);
            if self.est.failed(l) || load <= 0.0 || est >= (1.0 - SCALE_DEADBAND) * load {
                1.0
            } else {
                (est / load).clamp(MIN_WEIGHT_SCALE, 1.0)
            }
        };
        for (f, flow) in self.base.flows.iter().enumerate() {
            if !self.map.local_flow[f] {
                continue;
            }
            let s = flow.links.iter().map(|&l| ratio(l)).fold(1.0, f64::min);
            if let Some(o) = out.get_mut(self.map.flow_to_cfg[f]) {
                *o = s;
            }
        }
        out
    }
}

/// A link whose capacity estimate is within this fraction of its planned load keeps its flows'
/// weights ([`Planner::weight_scales`]).
pub const SCALE_DEADBAND: f64 = 0.1;

/// The least factor [`Planner::weight_scales`] puts on a weight: a link over-stated up to 4 x.
pub const MIN_WEIGHT_SCALE: f64 = 0.25;

/// A weight factor is sent again when it moved by more than this (relative) from the one in
/// force ([`scales_moved`]): the estimates wander window by window.
pub const REWEIGHT_STEP: f64 = 0.05;

/// Whether the factors `new` differ from `old` (in force) by more than [`REWEIGHT_STEP`] for
/// some flow, or in length.
pub fn scales_moved(old: &[f64], new: &[f64]) -> bool {
    old.len() != new.len()
        || old
            .iter()
            .zip(new)
            .any(|(&a, &b)| (a - b).abs() > REWEIGHT_STEP * a.max(b))
}

/// How far a periodic re-plan's rates and weights may drift from the plan in force and still be
/// left unsent: 2 % (relative, per flow). A periodic re-plan only follows the capacity
/// estimates' slow drift (recovery towards the configuration, a sample's noise); sending each
/// small move restarted the controllers' convergence to new targets every period (the
/// partition demo saw two such re-plans after its rejoin, 0.1-1.6 % moves). The drift adds up:
/// once it passes the bound, the next periodic re-plan goes out.
pub const PERIODIC_DRIFT: f64 = 0.02;

/// Whether `new` admits the same sessions as `old`, floors the same flows, and moves no
/// flow's rate or weight by more than `tol` of the larger of the two (the epoch is not
/// compared).
pub fn plan_within(old: &PlanTable, new: &PlanTable, tol: f64) -> bool {
    let close = |a: &[f64], b: &[f64]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(&x, &y)| {
                x.is_finite() && y.is_finite() && (x - y).abs() <= tol * x.abs().max(y.abs())
            })
    };
    old.sessions == new.sessions
        && old.floored == new.floored
        && close(&old.rate_mbps, &new.rate_mbps)
        && close(&old.weight, &new.weight)
}
