//! Where the control's plans come from. The loop asks its [`PlanSource`] for a plan when the
//! [`Planner`](super::Planner) says so and takes finished plans as they come; a source
//! delivers each plan as the [`PlanTable`] of the site configuration (dense, by configuration
//! index), which the loop checks once ([`PlanTable::check`]) and sends to every worker
//! (`mongate_dataplane::shm::plan`). The way of a plan to a worker is told in
//! `mongate_dataplane::plan`.
//!
//! [`PfoSource`], the local PFO solver on a side thread, is one source: it matches solutions
//! to the configuration by index through the [`SiteMap`] built once at start
//! ([`plan_from_solution`]). A plan shared by the organisation would be another: it names
//! classes and flows by id (`mongate_dataplane::plan::PlanFile`) and becomes a table with
//! `PlanFile::resolve`, the one place where plan ids meet configuration indices.

use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Context as _;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mongate_dataplane::plan::{PlanClass, PlanDetour, PlanFlow, PlanTable};

use super::log::PlanLog;
use super::planner::SolveRequest;
use super::site::SiteMap;
use crate::pfo::{self, Instance, Solution, SolveOptions, Status};

/// A plan from a source.
#[derive(Debug, Clone)]
pub struct SourcedPlan {
    /// The plan (epoch 0: the sender sets it).
    pub table: PlanTable,
    /// What the plan's log line says (its epoch and time are set when it is activated).
    pub log: PlanLog,
}

/// A source of plans. Neither call blocks.
pub trait PlanSource {
    /// Asks for a plan for `request`; `false` when the source is busy or gone (the request is
    /// dropped).
    fn request(&mut self, request: SolveRequest) -> bool;
    /// A finished plan, if one is ready; an error once the source is gone for good.
    fn poll(&mut self) -> anyhow::Result<Option<SourcedPlan>>;
}

struct SolveDone {
    request: SolveRequest,
    solution: Solution,
    ms: f64,
}

/// The local PFO solver on a side thread, one solve at a time (heartbeats go on meanwhile).
pub struct PfoSource {
    map: SiteMap,
    requests: Option<Sender<SolveRequest>>,
    results: Receiver<SolveDone>,
    thread: Option<JoinHandle<()>>,
    outstanding: bool,
}

impl PfoSource {
    /// Starts the solver thread; `map` matches the instance to the site configuration.
    pub fn spawn(opts: SolveOptions, map: SiteMap) -> anyhow::Result<Self> {
        let (req_tx, req_rx) = crossbeam_channel::bounded::<SolveRequest>(1);
        let (res_tx, res_rx) = crossbeam_channel::bounded::<SolveDone>(1);
        let thread = std::thread::Builder::new()
            .name("pfo-solver".into())
            .spawn(move || {
                for request in req_rx {
                    let t = Instant::now();
                    let solution = pfo::solve(&request.instance, &opts);
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    if res_tx
                        .send(SolveDone {
                            request,
                            solution,
                            ms,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            })
            .context("starting the solver thread")?;
        Ok(Self {
            map,
            requests: Some(req_tx),
            results: res_rx,
            thread: Some(thread),
            outstanding: false,
        })
    }
}

impl PlanSource for PfoSource {
    fn request(&mut self, request: SolveRequest) -> bool {
        let sent = self
            .requests
            .as_ref()
            .is_some_and(|r| r.try_send(request).is_ok());
        self.outstanding |= sent;
        sent
    }

    fn poll(&mut self) -> anyhow::Result<Option<SourcedPlan>> {
        let done = match self.results.try_recv() {
            Ok(d) => d,
            Err(TryRecvError::Empty) => return Ok(None),
            Err(TryRecvError::Disconnected) => {
                self.outstanding = false;
                anyhow::bail!("the solver thread ended (panicked?)");
            }
        };
        self.outstanding = false;
        let inst = &done.request.instance;
        let sol = &done.solution;
        let table = plan_from_solution(inst, &self.map, sol);
        let log = PlanLog {
            ts_ms: 0,
            epoch: 0,
            status: match sol.status {
                Status::Optimal => "optimal",
                Status::TimeLimit => "time_limit",
            }
            .to_owned(),
            objective: sol.objective,
            bound: sol.bound,
            gap: sol.gap,
            solve_ms: done.ms,
            triggers: done
                .request
                .triggers
                .iter()
                .map(|t| t.kind().to_owned())
                .collect(),
            classes: inst
                .classes
                .iter()
                .zip(&self.map.class_to_cfg)
                .map(|(c, &i)| PlanClass {
                    id: c.id.clone(),
                    sessions: table.sessions_of(i),
                })
                .collect(),
            flows: inst
                .flows
                .iter()
                .zip(&self.map.flow_to_cfg)
                .map(|(f, &i)| {
                    let (rate_mbps, weight) = table.flow(i);
                    PlanFlow {
                        id: f.id.clone(),
                        rate_mbps,
                        weight,
                        floored: table.is_floored(i),
                    }
                })
                .collect(),
            detours: detours_by_name(&table, &self.map),
        };
        Ok(Some(SourcedPlan { table, log }))
    }
}

impl Drop for PfoSource {
    /// Closes the request channel; waits for the thread unless a solve is outstanding.
    fn drop(&mut self) {
        self.requests = None;
        if let Some(t) = self.thread.take()
            && !self.outstanding
        {
            let _ = t.join();
        }
    }
}

/// The known detours of `t` by peer name (for the log and the status file).
pub fn detours_by_name(t: &PlanTable, map: &SiteMap) -> Vec<PlanDetour> {
    let n = map.peer_names.len().max(1);
    t.detour_mbps
        .iter()
        .enumerate()
        .filter(|(_, d)| d.is_finite())
        .filter_map(|(i, &mbps)| {
            Some(PlanDetour {
                peer: map.peer_names.get(i / n)?.clone(),
                via: map.peer_names.get(i % n)?.clone(),
                mbps,
            })
        })
        .collect()
}

fn clean(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 { v } else { 0.0 }
}

/// PFO solution of `inst` -> the dataplane's plan for the configuration `map` matches it
/// with, every class and flow set by index. Rates and weights that are not finite and >= 0
/// become 0; a class admitting sessions with no positive-rate flow (possible only when
/// `U(0) > 0`) admits none (a plan needs a rate for admitted sessions).
pub fn plan_from_solution(inst: &Instance, map: &SiteMap, sol: &Solution) -> PlanTable {
    let rate = |f: usize| sol.flows.get(f).map_or(0.0, |p| clean(p.rate));
    let mut t = PlanTable {
        epoch: 0,
        sessions: vec![0; map.class_from_cfg.len()],
        rate_mbps: vec![0.0; map.flow_from_cfg.len()],
        weight: vec![0.0; map.flow_from_cfg.len()],
        floored: vec![false; map.flow_from_cfg.len()],
        detour_mbps: vec![f64::INFINITY; map.detour_links.len()],
    };
    for (c, class) in inst.classes.iter().enumerate() {
        let sessions = sol.classes.get(c).map_or(0, |p| p.sessions);
        let has_rate = class.flows.iter().any(|&f| rate(f) > 0.0);
        if let Some(s) = map.class_to_cfg.get(c).and_then(|&i| t.sessions.get_mut(i)) {
            *s = if has_rate { sessions } else { 0 };
        }
    }
    for f in 0..inst.flows.len() {
        let Some(&i) = map.flow_to_cfg.get(f) else {
            continue;
        };
        if let (Some(r), Some(w)) = (t.rate_mbps.get_mut(i), t.weight.get_mut(i)) {
            *r = rate(f);
            *w = sol.flows.get(f).map_or(0.0, |p| clean(p.weight));
        }
        if let Some(fl) = t.floored.get_mut(i) {
            *fl = sol.flows.get(f).is_some_and(|p| p.floored);
        }
    }
    fill_detours(&mut t, inst, map);
    t
}

/// Sets what the plan `t` leaves on each one-waypoint detour of this site
/// (`PlanTable::detour_mbps`): the spare capacity of the detour's fuller link, from the
/// plan's own rates and sessions (every site's flows: they share the links) and the
/// capacities of `inst` (those the plan was made with: estimates, failed links at 0).
/// Whatever the plan's source: the local solver's or one shared by the organisation.
pub fn fill_detours(t: &mut PlanTable, inst: &Instance, map: &SiteMap) {
    let mut load = vec![0.0; inst.links.len()];
    for (i, &f) in map.flow_from_cfg.iter().enumerate() {
        let Some(flow) = inst.flows.get(f) else {
            continue;
        };
        let class = map
            .class_to_cfg
            .get(flow.class)
            .copied()
            .unwrap_or(usize::MAX);
        let r = clean(t.flow(i).0) * f64::from(t.sessions_of(class));
        for &l in &flow.links {
            if let Some(x) = load.get_mut(l) {
                *x += r;
            }
        }
    }
    let spare = |l: usize| {
        inst.links.get(l).map_or(0.0, |k| {
            clean(k.capacity - load.get(l).copied().unwrap_or(0.0))
        })
    };
    for (d, links) in t.detour_mbps.iter_mut().zip(&map.detour_links) {
        *d = match *links {
            Some((a, b)) => spare(a).min(spare(b)),
            None => f64::INFINITY,
        };
    }
}
