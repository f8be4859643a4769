//! Deterministic simulation: a managed gateway ([`PathManager`]) and a single-path baseline
//! gateway (uplink 0, direct, first remote address) face the same failure [`Trace`].
//!
//! Topology ([`Topology::two_sites_one_waypoint`]): site A (uplinks A0, A1) sends to site B
//! (addresses B0, B1), directly or through waypoint site W (one uplink W0). Every access link and
//! every ISP-ISP core path between them is a hop with a one-way delay, a base loss and faults.
//!
//! The simulation is event-driven with nanosecond resolution (equivalent to, and much faster
//! than, fixed 1 ms steps): between two events (trace change, probe reply, data feedback, ack
//! gap, manager timer) nothing changes, so metrics are integrated over whole intervals.
//! The flow sends one packet per `packet_interval` on the active path; the dataplane model
//! reports per-window acks/losses one RTT later and an ack gap `ack_gap` after the last ack.
//! With [`SimConfig::reflex`] it also models the live dataplane's ack-gap reflex: the path that
//! lost its acks is dropped and the flows fall back to the first candidate the dataplane holds
//! usable, until the manager assigns a path again (see [`SimConfig::reflex`]).

pub mod trace;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::config::{PathConfig, UplinkConfig};
use super::health::PathState;
use super::ids::{AddrId, MS, Nanos, PathId, PathKey, SEC, SiteId, UplinkId};
use super::manager::{Action, PathManager, PathStats};
use mongate_dataplane::sys::rng::SplitMix64;
pub use trace::{Fault, FaultKind, Trace, TraceParams};

/// One underlay hop: an access link or an ISP-ISP core path.
#[derive(Clone, Debug, PartialEq)]
pub struct Hop {
    /// Name used to write traces by hand (e.g. `"A0"`, `"A0-B1"`).
    pub name: String,
    /// One-way delay.
    pub one_way: Nanos,
    /// Round-trip loss fraction outside faults.
    pub base_loss: f64,
    /// Access link (true) or core path (false), for the trace generator.
    pub access: bool,
    /// The managed gateway's uplink, if this is one of its access links (carrier events).
    pub uplink: Option<UplinkId>,
}

/// A path of the managed gateway and the hops it crosses (a hop may appear twice).
#[derive(Clone, Debug, PartialEq)]
pub struct SimPath {
    /// The path as the manager knows it.
    pub key: PathKey,
    /// Hop indices.
    pub hops: Vec<usize>,
}

/// Hops, paths and uplinks of the simulated gateway.
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    /// Underlay hops.
    pub hops: Vec<Hop>,
    /// Paths toward the destination.
    pub paths: Vec<SimPath>,
    /// The managed gateway's uplinks.
    pub uplinks: Vec<UplinkConfig>,
    /// Index in `paths` of the baseline gateway's only path.
    pub baseline: usize,
    /// Indices of the cheapest paths (where traffic should be when they work).
    pub preferred: Vec<usize>,
    /// Destination site.
    pub dst: SiteId,
}

/// Site ids of the standard topology.
pub const SITE_A: SiteId = SiteId(1);
/// Destination site.
pub const SITE_B: SiteId = SiteId(2);
/// Waypoint site.
pub const SITE_W: SiteId = SiteId(3);

impl Topology {
    /// Two sites with two uplinks each plus a one-uplink waypoint site; 10 ms direct RTT,
    /// 20 ms through the waypoint; uplinks of 10 Mbit/s, uplink A1 costs 5 ms more than A0.
    pub fn two_sites_one_waypoint() -> Self {
        let access = |name: &str, uplink: Option<UplinkId>| Hop {
            name: name.to_string(),
            one_way: MS / 2,
            base_loss: 0.0005,
            access: true,
            uplink,
        };
        let core = |name: String| Hop {
            name,
            one_way: 4 * MS,
            base_loss: 0.0005,
            access: false,
            uplink: None,
        };
        let mut hops = vec![
            access("A0", Some(UplinkId(0))),
            access("A1", Some(UplinkId(1))),
            access("B0", None),
            access("B1", None),
            access("W0", None),
        ];
        let (a, b, w) = ([0usize, 1], [2usize, 3], 4usize);
        let core_idx = |x: usize, y: usize, hops: &mut Vec<Hop>| {
            let name = format!("{}-{}", hops[x].name, hops[y].name);
            hops.push(core(name));
            hops.len() - 1
        };
        let mut ab = [[0usize; 2]; 2];
        for i in 0..2 {
            for j in 0..2 {
                ab[i][j] = core_idx(a[i], b[j], &mut hops);
            }
        }
        let aw = [core_idx(a[0], w, &mut hops), core_idx(a[1], w, &mut hops)];
        let wb = [core_idx(w, b[0], &mut hops), core_idx(w, b[1], &mut hops)];
        let mut paths = Vec::new();
        for (i, &ai) in a.iter().enumerate() {
            for (j, &bj) in b.iter().enumerate() {
                paths.push(SimPath {
                    key: key(i, None, j),
                    hops: vec![ai, ab[i][j], bj],
                });
            }
        }
        for (i, &ai) in a.iter().enumerate() {
            for (j, &bj) in b.iter().enumerate() {
                paths.push(SimPath {
                    key: key(i, Some(SITE_W), j),
                    hops: vec![ai, aw[i], w, w, wb[j], bj],
                });
            }
        }
        let uplinks = vec![
            UplinkConfig {
                id: UplinkId(0),
                capacity_bytes_per_s: 1_250_000,
                cost: 0,
            },
            UplinkConfig {
                id: UplinkId(1),
                capacity_bytes_per_s: 1_250_000,
                cost: 5 * MS,
            },
        ];
        Self {
            hops,
            paths,
            uplinks,
            baseline: 0,
            preferred: vec![0, 1],
            dst: SITE_B,
        }
    }

    /// Three sites of one uplink each, every access link 0.5 ms and every core path 4 ms one
    /// way (5 ms per site pair): path 0 direct A -> B (10 ms RTT), path 1 through waypoint W
    /// (20 ms RTT). Hops `A0`, `B0`, `W0`, `A0-B0`, `A0-W0`, `W0-B0`; 20 Mbit/s uplink.
    pub fn triangle() -> Self {
        let hop = |name: &str, one_way: Nanos, access: bool, uplink: Option<UplinkId>| Hop {
            name: name.to_string(),
            one_way,
            base_loss: 0.0005,
            access,
            uplink,
        };
        let hops = vec![
            hop("A0", MS / 2, true, Some(UplinkId(0))),
            hop("B0", MS / 2, true, None),
            hop("W0", MS / 2, true, None),
            hop("A0-B0", 4 * MS, false, None),
            hop("A0-W0", 4 * MS, false, None),
            hop("W0-B0", 4 * MS, false, None),
        ];
        let paths = vec![
            SimPath {
                key: key(0, None, 0),
                hops: vec![0, 3, 1],
            },
            SimPath {
                key: key(0, Some(SITE_W), 0),
                hops: vec![0, 4, 2, 2, 5, 1],
            },
        ];
        Self {
            hops,
            paths,
            uplinks: vec![UplinkConfig {
                id: UplinkId(0),
                capacity_bytes_per_s: 2_500_000,
                cost: 0,
            }],
            baseline: 0,
            preferred: vec![0],
            dst: SITE_B,
        }
    }

    /// Index of the hop called `name`.
    pub fn hop(&self, name: &str) -> Option<usize> {
        self.hops.iter().position(|h| h.name == name)
    }

    /// Nominal RTT of a path.
    pub fn rtt(&self, path: usize) -> Nanos {
        2 * self.paths[path]
            .hops
            .iter()
            .map(|&h| self.hops[h].one_way)
            .sum::<Nanos>()
    }
}

fn key(uplink: usize, waypoint: Option<SiteId>, remote: usize) -> PathKey {
    PathKey {
        dst: SITE_B,
        uplink: UplinkId(u16::try_from(uplink).unwrap_or(u16::MAX)),
        waypoint,
        remote: AddrId(u32::try_from(remote).unwrap_or(u32::MAX)),
    }
}

/// Parameters of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Seed of the probe/packet loss draws and of the manager.
    pub seed: u64,
    /// Metrics ignore `[0, warmup)`.
    pub warmup: Nanos,
    /// Flow packet interval (1 ms = 1000 packets/s).
    pub packet_interval: Nanos,
    /// Period of the dataplane's per-flow ack/loss reports.
    pub feedback_interval: Nanos,
    /// The dataplane reports an ack gap this long after the last expected ack.
    pub ack_gap: Nanos,
    /// ... and again every `ack_regap` while the gap lasts.
    pub ack_regap: Nanos,
    /// A path losing at least this fraction counts as failed (for metrics).
    pub failed_loss: f64,
    /// Uniform random extra delay of each probe reply, `[0, rtt_jitter)`.
    pub rtt_jitter: Nanos,
    /// Model the live dataplane's ack-gap reflex: at an ack gap the path is dropped (until the
    /// manager assigns it again, or marks it up after holding it down) and the flows fall back
    /// to the first path, in topology order, that the dataplane holds usable (not dropped, not
    /// down in the manager); off: the flows ride the manager's active path only.
    pub reflex: bool,
    /// False alarms: at these times the dataplane reports an ack gap on the path the flows
    /// ride although it works (a burst of queueing, a few lost acks).
    pub false_alarms: Vec<Nanos>,
    /// Manager configuration (its `uplinks` are replaced by the topology's).
    pub manager: PathConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            warmup: 30 * SEC,
            packet_interval: MS,
            feedback_interval: 50 * MS,
            ack_gap: 20 * MS,
            ack_regap: 250 * MS,
            failed_loss: 0.2,
            rtt_jitter: MS,
            reflex: false,
            false_alarms: Vec::new(),
            manager: PathConfig::default(),
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct SimReport {
    /// Measured time (after warmup).
    pub measured: Nanos,
    /// Time the baseline's path was failed (outage or loss >= `failed_loss`).
    pub baseline_failed: Nanos,
    /// Part of it during which the managed gateway's active path worked.
    pub avoided: Nanos,
    /// Part of it during which no path worked at all (unavoidable).
    pub unavoidable: Nanos,
    /// Time the managed gateway had no working active path.
    pub managed_failed: Nanos,
    /// Cut of the active path -> traffic on a working path, for cuts ended by a move.
    pub failovers: Vec<Nanos>,
    /// Cuts that ended by repair before any move found a working path (durations).
    pub ended_by_repair: Vec<Nanos>,
    /// MoveFlows actions (excluding the first assignment).
    pub moves: u64,
    /// Most moves in any 60 s window.
    pub max_moves_per_minute: u32,
    /// Faults in the trace.
    pub faults: usize,
    /// Probe bytes sent per uplink.
    pub probe_bytes: Vec<(UplinkId, u64)>,
    /// Probe bytes / (capacity x measured time), per uplink, own probes only.
    pub probe_share: Vec<(UplinkId, f64)>,
    /// Share of the time the preferred paths had worked for 2 min during which traffic was on one.
    pub preferred_share: f64,
    /// `poll_timeout() <= now` right after `handle_timeout(now)` (must be 0).
    pub stalls: u64,
    /// Invariant violations seen after each step (must be 0).
    pub invariant_violations: u64,
    /// The manager's counters at the end.
    pub stats: PathStats,
    /// Index in the topology's paths of the active path at the end.
    pub final_active: Option<usize>,
    /// Every move: (time, from, to), as topology path indices.
    pub move_log: Vec<(Nanos, Option<usize>, usize)>,
    /// Moves of the dataplane's reflex ([`SimConfig::reflex`]): (time, from, to).
    pub reflex_log: Vec<(Nanos, usize, usize)>,
    /// The path the flows rode over time: (since, path), one entry per change.
    pub carried_log: Vec<(Nanos, usize)>,
}

impl SimReport {
    /// Share of the baseline's failed time the managed gateway avoided.
    pub fn avoided_share(&self) -> f64 {
        ratio(self.avoided, self.baseline_failed)
    }

    /// Share of the avoidable failed time (some path worked) that was avoided.
    pub fn avoided_share_of_avoidable(&self) -> f64 {
        ratio(
            self.avoided,
            self.baseline_failed.saturating_sub(self.unavoidable),
        )
    }

    /// Failover time at quantile `q` in `[0, 1]` (nearest rank).
    pub fn failover_quantile(&self, q: f64) -> Option<Nanos> {
        let mut v = self.failovers.clone();
        v.sort_unstable();
        if v.is_empty() {
            return None;
        }
        // q is clamped to [0,1] and the index to the vector length.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = ((q.clamp(0.0, 1.0) * (v.len() - 1) as f64).round() as usize).min(v.len() - 1);
        Some(v[i])
    }

    /// Largest per-uplink probe share.
    pub fn max_probe_share(&self) -> f64 {
        self.probe_share.iter().map(|x| x.1).fold(0.0, f64::max)
    }
}

fn ratio(a: Nanos, b: Nanos) -> f64 {
    if b == 0 {
        return 1.0;
    }
    // Simulated times are far below 2^53 ns.
    a as f64 / b as f64
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Reply { path: PathId, seq: u32 },
    Feedback { path: PathId, acked: u64, lost: u64 },
}

/// Current condition of every hop.
struct Links {
    outages: Vec<u32>,
    lossy: Vec<Vec<f64>>,
}

impl Links {
    fn path_up(&self, topo: &Topology, p: usize) -> bool {
        topo.paths[p].hops.iter().all(|&h| self.outages[h] == 0)
    }

    fn path_loss(&self, topo: &Topology, p: usize) -> f64 {
        let keep: f64 = topo.paths[p]
            .hops
            .iter()
            .map(|&h| {
                let extra = self.lossy[h].iter().copied().fold(0.0, f64::max);
                1.0 - (topo.hops[h].base_loss + extra).min(1.0)
            })
            .product();
        1.0 - keep
    }

    fn working(&self, topo: &Topology, p: usize, failed_loss: f64) -> bool {
        self.path_up(topo, p) && self.path_loss(topo, p) < failed_loss
    }
}

/// Number of losses among `n` trials of probability `p` (geometric skipping: O(n p + 1)).
fn binomial(rng: &mut SplitMix64, n: u64, p: f64) -> u64 {
    if p <= 0.0 || n == 0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    let ln_q = (1.0 - p).ln();
    let (mut i, mut k) = (0u64, 0u64);
    loop {
        let u = 1.0 - rng.next_f64();
        // ln(u)/ln(q) >= 0; values beyond n end the loop, so saturation is harmless.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let g = (u.ln() / ln_q).floor().min(1e18) as u64 + 1;
        i = i.saturating_add(g);
        if i > n {
            return k;
        }
        k += 1;
    }
}

struct Run<'a> {
    topo: &'a Topology,
    cfg: &'a SimConfig,
    mgr: PathManager,
    links: Links,
    rng: SplitMix64,
    heap: BinaryHeap<Reverse<(Nanos, u64, Ev)>>,
    heap_seq: u64,
    /// `mgr.poll_timeout()`, refreshed after every call into the manager.
    deadline: Option<Nanos>,
    /// The manager was called since the last invariant check.
    touched: bool,
    active: Option<usize>,
    // flow window
    window_ns: Nanos,
    window_lost: u64,
    next_tick: Nanos,
    gap_at: Option<Nanos>,
    // failover bookkeeping
    working: bool,
    cut_at: Option<Nanos>,
    preferred_ok_since: Option<Nanos>,
    pref_eligible: Nanos,
    pref_on: Nanos,
    move_times: Vec<Nanos>,
    report: SimReport,
    /// Paths the dataplane's reflex dropped (ack gap), until assigned or marked up again.
    dropped: Vec<bool>,
    /// Paths the manager holds down (the driver's down marks), as last seen.
    held_down: Vec<bool>,
}

/// Runs the managed gateway and the baseline over `trace`.
pub fn run(topo: &Topology, trace: &Trace, cfg: &SimConfig) -> SimReport {
    let mut mcfg = cfg.manager.clone();
    mcfg.uplinks = topo.uplinks.clone();
    let mut mgr = match PathManager::new(mcfg, cfg.seed, 0) {
        Ok(m) => m,
        Err(e) => panic!("simulation manager config invalid: {e}"),
    };
    for p in &topo.paths {
        if let Err(e) = mgr.add_path(p.key, 0) {
            panic!("simulation topology invalid: {e}");
        }
    }
    // Trace change points: (time, order, fault index, start?). Ends sort before starts.
    let mut points: Vec<(Nanos, u8, usize)> = Vec::new();
    for (i, f) in trace.faults.iter().enumerate() {
        if f.hop < topo.hops.len() && f.start < f.end {
            points.push((f.start, 1, i));
            points.push((f.end, 0, i));
        }
    }
    points.sort_unstable();
    let n_hops = topo.hops.len();
    let mut run = Run {
        topo,
        cfg,
        mgr,
        links: Links {
            outages: vec![0; n_hops],
            lossy: vec![Vec::new(); n_hops],
        },
        rng: SplitMix64::new(cfg.seed ^ 0x5349_4d00),
        heap: BinaryHeap::new(),
        heap_seq: 0,
        deadline: None,
        touched: true,
        active: None,
        window_ns: 0,
        window_lost: 0,
        next_tick: cfg.feedback_interval,
        gap_at: None,
        working: false,
        cut_at: None,
        preferred_ok_since: Some(0),
        pref_eligible: 0,
        pref_on: 0,
        move_times: Vec::new(),
        report: SimReport {
            measured: trace.duration.saturating_sub(cfg.warmup),
            baseline_failed: 0,
            avoided: 0,
            unavoidable: 0,
            managed_failed: 0,
            failovers: Vec::new(),
            ended_by_repair: Vec::new(),
            moves: 0,
            max_moves_per_minute: 0,
            faults: trace.faults.len(),
            probe_bytes: Vec::new(),
            probe_share: Vec::new(),
            preferred_share: 1.0,
            stalls: 0,
            invariant_violations: 0,
            stats: PathStats::default(),
            final_active: None,
            move_log: Vec::new(),
            reflex_log: Vec::new(),
            carried_log: Vec::new(),
        },
        dropped: vec![false; topo.paths.len()],
        held_down: vec![false; topo.paths.len()],
    };
    run.drain(0);
    let mut carrier_down = vec![0u32; topo.uplinks.len()];
    let mut alarms = cfg.false_alarms.clone();
    alarms.sort_unstable();
    let mut alarm = 0;
    let mut pi = 0;
    let mut now: Nanos = 0;
    let end = trace.duration;
    while now < end {
        let mut next = end;
        if let Some(p) = points.get(pi) {
            next = next.min(p.0);
        }
        if let Some(Reverse((t, _, _))) = run.heap.peek() {
            next = next.min(*t);
        }
        if let Some(t) = run.deadline {
            next = next.min(t);
        }
        next = next.min(run.next_tick);
        if let Some(g) = run.gap_at {
            next = next.min(g);
        }
        if let Some(&t) = alarms.get(alarm) {
            next = next.min(t);
        }
        let next = next.max(now);
        run.advance(now, next);
        now = next;
        if now >= end {
            break;
        }
        // Trace changes.
        let mut changed = false;
        while let Some(&(t, is_start, fi)) = points.get(pi) {
            if t > now {
                break;
            }
            pi += 1;
            changed = true;
            let f = trace.faults[fi];
            match f.kind {
                FaultKind::Outage { carrier } => {
                    if is_start == 1 {
                        run.links.outages[f.hop] += 1;
                    } else {
                        run.links.outages[f.hop] = run.links.outages[f.hop].saturating_sub(1);
                    }
                    if let (true, Some(u)) = (carrier, topo.hops[f.hop].uplink)
                        && let Some(ui) = topo.uplinks.iter().position(|x| x.id == u)
                    {
                        let before = carrier_down[ui];
                        if is_start == 1 {
                            carrier_down[ui] += 1;
                        } else {
                            carrier_down[ui] = carrier_down[ui].saturating_sub(1);
                        }
                        if (before == 0) != (carrier_down[ui] == 0) {
                            run.mgr.on_link_event(u, carrier_down[ui] == 0, now);
                            run.drain(now);
                        }
                    }
                }
                FaultKind::Lossy { loss } => {
                    let l = &mut run.links.lossy[f.hop];
                    if is_start == 1 {
                        l.push(loss);
                    } else if let Some(k) = l.iter().position(|&x| x == loss) {
                        l.swap_remove(k);
                    }
                }
            }
        }
        if changed {
            run.status(now, false);
        }
        // Replies and feedback due.
        while let Some(Reverse((t, _, ev))) = run.heap.peek().copied() {
            if t > now {
                break;
            }
            run.heap.pop();
            match ev {
                Ev::Reply { path, seq } => run.mgr.on_probe_reply(path, seq, now),
                Ev::Feedback { path, acked, lost } => {
                    run.mgr.on_data_feedback(path, acked, lost, now);
                }
            }
            run.drain(now);
        }
        if now >= run.next_tick {
            run.next_tick = now + cfg.feedback_interval;
            run.flush_window(now);
        }
        if let (Some(g), Some(a)) = (run.gap_at, run.active)
            && now >= g
        {
            run.gap_at = Some(now + cfg.ack_regap);
            run.ack_gap(a, now);
        }
        while alarms.get(alarm).is_some_and(|&t| t <= now) {
            alarm += 1;
            if let Some(a) = run.active {
                run.ack_gap(a, now);
            }
        }
        if run.deadline.is_some_and(|t| t <= now) {
            run.mgr.handle_timeout(now);
            run.drain(now);
            if run.deadline.is_some_and(|t| t <= now) {
                run.report.stalls += 1;
            }
        }
        if run.touched {
            run.touched = false;
            if run.mgr.check_invariants().is_err() {
                run.report.invariant_violations += 1;
            }
        }
    }
    run.finish(end)
}

impl Run<'_> {
    fn working_now(&self, p: usize) -> bool {
        self.links.working(self.topo, p, self.cfg.failed_loss)
    }

    /// Integrates metrics and the flow over `[t0, t1)` (conditions constant).
    fn advance(&mut self, t0: Nanos, t1: Nanos) {
        if t1 <= t0 {
            return;
        }
        let m0 = t0.max(self.cfg.warmup);
        let dt = t1.saturating_sub(m0);
        if dt > 0 {
            let base_ok = self.working_now(self.topo.baseline);
            let managed_ok = self.working;
            if !base_ok {
                self.report.baseline_failed += dt;
                if managed_ok {
                    self.report.avoided += dt;
                }
                if !(0..self.topo.paths.len()).any(|p| self.working_now(p)) {
                    self.report.unavoidable += dt;
                }
            }
            if !managed_ok {
                self.report.managed_failed += dt;
            }
            if let Some(s) = self.preferred_ok_since {
                let from = m0.max(s.saturating_add(120 * SEC));
                if t1 > from {
                    self.pref_eligible += t1 - from;
                    if self
                        .active
                        .is_some_and(|a| self.topo.preferred.contains(&a))
                    {
                        self.pref_on += t1 - from;
                    }
                }
            }
        }
        if let Some(a) = self.active {
            let pi = self.cfg.packet_interval.max(1);
            let n = (self.window_ns + (t1 - t0)) / pi - self.window_ns / pi;
            self.window_ns += t1 - t0;
            let lost = if self.links.path_up(self.topo, a) {
                let p = self.links.path_loss(self.topo, a);
                binomial(&mut self.rng, n, p)
            } else {
                n
            };
            self.window_lost += lost;
        }
    }

    fn push(&mut self, t: Nanos, ev: Ev) {
        self.heap_seq += 1;
        self.heap.push(Reverse((t, self.heap_seq, ev)));
    }

    /// Reports the flow's window (acks come back one RTT later; losses of a dead path are
    /// declared after the ack-gap delay).
    fn flush_window(&mut self, now: Nanos) {
        let Some(a) = self.active else { return };
        let n = self.window_ns / self.cfg.packet_interval.max(1);
        let lost = self.window_lost.min(n);
        self.window_ns = 0;
        self.window_lost = 0;
        if n == 0 {
            return;
        }
        let acked = n - lost;
        let delay = self.topo.rtt(a) + if acked == 0 { self.cfg.ack_gap } else { 0 };
        let path = PathId(u32::try_from(a).unwrap_or(u32::MAX));
        self.push(now + delay, Ev::Feedback { path, acked, lost });
    }

    /// Updates "is the active path working" after a trace change or a move.
    fn status(&mut self, now: Nanos, by_move: bool) {
        let w = self.active.is_some_and(|a| self.working_now(a));
        if self.working && !w {
            self.cut_at = Some(now);
        } else if !self.working
            && w
            && let Some(c) = self.cut_at.take()
        {
            if by_move {
                self.report.failovers.push(now - c);
            } else {
                self.report.ended_by_repair.push(now - c);
            }
        }
        self.working = w;
        // Ack gaps: the dataplane sees no ack when the active path carries nothing.
        let dead = self
            .active
            .is_some_and(|a| !self.links.path_up(self.topo, a));
        match (dead, self.gap_at) {
            (true, None) => {
                let rtt = self.active.map_or(0, |a| self.topo.rtt(a));
                self.gap_at = Some(now + rtt + self.cfg.ack_gap);
            }
            (false, Some(_)) => self.gap_at = None,
            _ => {}
        }
        let pref_ok = self.topo.preferred.iter().any(|&p| self.working_now(p));
        match (pref_ok, self.preferred_ok_since) {
            (true, None) => self.preferred_ok_since = Some(now),
            (false, Some(_)) => self.preferred_ok_since = None,
            _ => {}
        }
    }

    fn drain(&mut self, now: Nanos) {
        self.touched = true;
        self.deadline = self.mgr.poll_timeout();
        while let Some(a) = self.mgr.poll_action() {
            match a {
                Action::Probe { path, seq } => {
                    let Some(p) = usize::try_from(path.0)
                        .ok()
                        .filter(|&p| p < self.topo.paths.len())
                    else {
                        continue;
                    };
                    if self.links.path_up(self.topo, p)
                        && !self.rng.chance(self.links.path_loss(self.topo, p))
                    {
                        let j = self.rng.below(self.cfg.rtt_jitter.max(1));
                        self.push(now + self.topo.rtt(p) + j, Ev::Reply { path, seq });
                    }
                }
                Action::MoveFlows { to, from, .. } => {
                    let Some(p) = usize::try_from(to.0)
                        .ok()
                        .filter(|&p| p < self.topo.paths.len())
                    else {
                        continue;
                    };
                    self.flush_window(now);
                    // A trace change at this instant may have cut the old path already.
                    self.status(now, false);
                    let from_idx = from.and_then(|f| usize::try_from(f.0).ok());
                    self.report.move_log.push((now, from_idx, p));
                    if from.is_some() {
                        self.report.moves += 1;
                        self.move_times.push(now);
                    }
                    // An assignment raises the path in the dataplane's view.
                    self.dropped[p] = false;
                    self.carry(p, now);
                }
                Action::ReportLinks { .. } => {}
            }
        }
        // The driver's marks: a path the manager holds down is down in the dataplane too, and
        // is raised (its reflex drop forgotten) when the manager takes it up again.
        for p in 0..self.topo.paths.len() {
            let id = PathId(u32::try_from(p).unwrap_or(u32::MAX));
            let down = self.mgr.path_state(id) == Some(PathState::Down);
            if self.held_down[p] && !down {
                self.dropped[p] = false;
            }
            self.held_down[p] = down;
        }
    }

    /// The flows ride `p` from `now` on.
    fn carry(&mut self, p: usize, now: Nanos) {
        if self.active != Some(p) {
            self.report.carried_log.push((now, p));
        }
        self.active = Some(p);
        self.gap_at = None;
        self.status(now, true);
    }

    /// The dataplane saw no ack on `a` (the path the flows ride): the manager hears it; with
    /// the reflex on, the dataplane drops `a` and its flows fall back at once.
    fn ack_gap(&mut self, a: usize, now: Nanos) {
        self.mgr
            .on_ack_gap(PathId(u32::try_from(a).unwrap_or(u32::MAX)), now);
        self.drain(now);
        if !self.cfg.reflex {
            return;
        }
        self.dropped[a] = true;
        let fallback =
            (0..self.topo.paths.len()).find(|&p| p != a && !self.dropped[p] && !self.held_down[p]);
        if let Some(f) = fallback {
            self.flush_window(now);
            self.status(now, false);
            self.report.reflex_log.push((now, a, f));
            self.carry(f, now);
        }
    }

    fn finish(mut self, end: Nanos) -> SimReport {
        let measured = end.saturating_sub(self.cfg.warmup).max(1);
        for u in &self.topo.uplinks {
            let (_, bytes) = self.mgr.uplink_probe_usage(u.id).unwrap_or((0, 0));
            self.report.probe_bytes.push((u.id, bytes));
            // Bytes and capacities of a simulated day are far below 2^53.
            let share = bytes as f64 / (u.capacity_bytes_per_s as f64 * measured as f64 / 1e9);
            self.report.probe_share.push((u.id, share));
        }
        let mut best = 0usize;
        let mut lo = 0usize;
        for (hi, &t) in self.move_times.iter().enumerate() {
            while t - self.move_times[lo] >= 60 * SEC {
                lo += 1;
            }
            best = best.max(hi + 1 - lo);
        }
        self.report.max_moves_per_minute = u32::try_from(best).unwrap_or(u32::MAX);
        self.report.preferred_share = ratio(self.pref_on, self.pref_eligible);
        self.report.stats = self.mgr.stats().clone();
        self.report.final_active = self.active;
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_shape() {
        let t = Topology::two_sites_one_waypoint();
        assert_eq!(t.paths.len(), 8);
        assert_eq!(t.rtt(0), 10 * MS);
        assert_eq!(t.rtt(4), 20 * MS);
        assert!(t.hop("A0-B1").is_some());
        assert!(t.hop("nope").is_none());
    }

    #[test]
    fn binomial_mean() {
        let mut r = SplitMix64::new(3);
        let total: u64 = (0..2000).map(|_| binomial(&mut r, 100, 0.3)).sum();
        let mean = total / 2000;
        assert!((27..=33).contains(&mean), "mean {mean}");
        assert_eq!(binomial(&mut r, 10, 1.0), 10);
        assert_eq!(binomial(&mut r, 10, 0.0), 0);
    }

    #[test]
    fn traces_are_reproducible() {
        let t = Topology::two_sites_one_waypoint();
        let p = TraceParams::default();
        assert_eq!(Trace::generate(&t, &p, 5), Trace::generate(&t, &p, 5));
        assert_ne!(Trace::generate(&t, &p, 5), Trace::generate(&t, &p, 6));
    }
}
