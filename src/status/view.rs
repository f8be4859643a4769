//! `mongate status`'s pure part: two samples of the counter files of the
//! gateways on this machine, taken `dt` apart, turned into the report (rates
//! are the counters' differences over `dt`), and the report printed as a
//! table. No I/O here but the `Write` the table goes to.
//!
//! The report's JSON keys are documented in docs/status.md; they are stable
//! (new keys may be added, none renamed or removed without bumping
//! [`FORMAT`]).

use std::collections::BTreeMap;

use mongate_control::run::PlanStatus;
use mongate_dataplane::overlay::FlowCounters;
use mongate_dataplane::stats::WorkerSnapshot;
use mongate_dataplane::stats::gateway::{GatewaySnapshot, state};

/// The report's format version (the `format` key).
pub const FORMAT: u32 = 1;
/// A control whose heartbeat is older than this is not attached, ns.
pub const CONTROL_STALE_NS: u64 = 1_000_000_000;

/// One gateway's files at one moment.
#[derive(Clone, Debug, Default)]
pub struct GwSample {
    /// Instance name (the file stem).
    pub name: String,
    /// The creating process.
    pub pid: u64,
    /// Whether that process is alive.
    pub alive: bool,
    /// Per-worker counters (`.stats`).
    pub workers: Vec<WorkerSnapshot>,
    /// Per-flow counters summed over workers (`.flows`).
    pub flows: Vec<FlowSample>,
    /// The gateway section of `.flows` (a site gateway's).
    pub gw: Option<GatewaySnapshot>,
    /// Why the flows file could not be read, if it exists and could not.
    pub flows_error: Option<String>,
    /// The control's last plan (`NAME.plan`), if it wrote one.
    pub plan: Option<PlanStatus>,
    /// Whether the control that wrote it is alive.
    pub plan_writer_alive: bool,
    /// The processes' last reloads (`NAME.{dataplane,control}.reload`;
    /// none before the first), and the wall clock they were read at (ms).
    pub reloads: Vec<mongate_dataplane::app::reload::ReloadOutcome>,
    /// Wall clock when the sample was taken, Unix ms.
    pub unix_ms: u64,
}

/// One flow's counters at one gateway.
#[derive(Clone, Debug, Default)]
pub struct FlowSample {
    /// Flow id.
    pub id: String,
    /// Summed over the workers.
    pub counters: FlowCounters,
    /// The path it rides (origin).
    pub path: Option<u32>,
    /// Its class (index into the gateway section's classes).
    pub class: Option<usize>,
}

/// Every gateway at one moment.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// The monotonic clock when taken, ns.
    pub at_ns: u64,
    /// The gateways, by name.
    pub gateways: Vec<GwSample>,
}

/// The report (`mongate status --json`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// Format version.
    pub format: u32,
    /// The directory the files were found in.
    pub run_dir: String,
    /// Seconds between the two samples the rates come from.
    pub interval_s: f64,
    /// Per gateway.
    pub gateways: Vec<GatewayReport>,
    /// Per flow of the overlay, joined over the gateways on this machine:
    /// origin's target and controller, destination's delivered rate.
    pub flows: Vec<OverlayFlow>,
}

/// One gateway.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GatewayReport {
    /// Instance name.
    pub name: String,
    /// Its process id.
    pub pid: u64,
    /// `running`, or `dead` (files left by a process that is gone).
    pub process: &'static str,
    /// `gateway` (a site gateway) or `forwarder` (`mongate-dataplane forward`).
    pub kind: &'static str,
    /// Seconds since it started (site gateways).
    pub uptime_s: Option<f64>,
    /// The plan in force.
    pub plan: Option<PlanReport>,
    /// The control process.
    pub control: Option<ControlReport>,
    /// The optimizer's last plan, from the control's plan file (`null`: none written).
    pub optimizer: Option<OptimizerReport>,
    /// Sessions in the classifier's table.
    pub sessions: Option<u64>,
    /// LAN hosts learned (worker 0's neighbour table).
    pub lan_hosts: Option<u64>,
    /// LAN hosts not learned since start for want of room in the table (their
    /// packets from other sites go to the LAN next hop).
    pub lan_hosts_not_learned: Option<u64>,
    /// Per peer, its candidate paths.
    pub peers: Vec<PeerReport>,
    /// Per class.
    pub classes: Vec<ClassReport>,
    /// Per flow, this gateway's part.
    pub flows: Vec<FlowReport>,
    /// Per worker and port.
    pub interfaces: Vec<InterfaceReport>,
    /// Drops by reason, summed over the workers.
    pub drops: BTreeMap<String, DropReport>,
    /// The processes' last reloads (`mongate reload`, SIGHUP): none before
    /// the first.
    pub reloads: Vec<ReloadReport>,
    /// Why the gateway section or the flows could not be read, if so.
    pub error: Option<String>,
}

/// A process's last reload.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReloadReport {
    /// `dataplane` or `control`.
    pub process: String,
    /// Reloads it handled.
    pub generation: u64,
    /// Applied whole (`true`) or refused whole.
    pub applied: bool,
    /// What was applied, or every reason it was refused, one per line.
    pub message: String,
    /// Seconds since.
    pub age_s: f64,
}

/// The plan in force.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PlanReport {
    /// Epoch.
    pub epoch: u64,
    /// Seconds in force.
    pub age_s: f64,
}

/// The optimizer's last plan (written by the control, `NAME.plan`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct OptimizerReport {
    /// Its epoch.
    pub epoch: u64,
    /// PFO's status: `optimal` (gap within the target) or `time_limit`.
    pub status: String,
    /// The plan's mission utility (PFO's objective).
    pub objective: f64,
    /// The proven bound.
    pub bound: f64,
    /// Relative gap `(bound - objective) / max(1, |bound|)`.
    pub gap: f64,
    /// Solve wall time, ms.
    pub solve_ms: f64,
    /// Seconds since it was activated.
    pub age_s: f64,
    /// Why it was solved.
    pub triggers: Vec<String>,
    /// What the plan leaves on each one-waypoint detour (to `peer` through `via`), Mbit/s:
    /// the room a failover onto it has until the next plan.
    pub detours: Vec<mongate_dataplane::plan::PlanDetour>,
    /// The control's pid and whether it is alive.
    pub control_pid: u32,
    /// Whether that process is alive.
    pub control_alive: bool,
}

/// The control process as the gateway sees it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ControlReport {
    /// The gateway accepts a control (`false`: `--no-control`).
    pub enabled: bool,
    /// A control heartbeat less than a second old.
    pub attached: bool,
    /// Seconds since its last heartbeat (`null`: never).
    pub heartbeat_age_s: Option<f64>,
    /// Attaches so far (the session word).
    pub session: u64,
}

/// One peer.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PeerReport {
    /// Peer name.
    pub name: String,
    /// Its candidate paths.
    pub paths: Vec<PathReport>,
}

/// One candidate path.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PathReport {
    /// Path reference (`peer << 16 | index`, the control's and the logs').
    pub id: u64,
    /// Local uplink (`name (interface)`).
    pub uplink: String,
    /// The waypoint peer of a detour (`null`: direct).
    pub via: Option<String>,
    /// Outer destination address.
    pub remote: String,
    /// `up`, `suspect`, `down` or `held` (docs/status.md).
    pub state: &'static str,
    /// The peer's traffic rides it now.
    pub active: bool,
    /// Smoothed probe round-trip time, ms (`null`: no sample yet).
    pub rtt_ms: Option<f64>,
    /// Probes unanswered over the interval (`null`: none sent in it).
    pub loss: Option<f64>,
    /// Probes sent over the interval.
    pub probes: u64,
    /// Seconds since the last probe (`null`: none yet).
    pub last_probe_age_s: Option<f64>,
    /// Seconds since the last echo (or ack vouching for it).
    pub last_echo_age_s: Option<f64>,
    /// Times it went down.
    pub downs: u64,
}

/// One class.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClassReport {
    /// Class id.
    pub id: String,
    /// Its sessions start at this site (the others' counts are 0 here).
    pub local: bool,
    /// Sessions the plan in force admits.
    pub planned_sessions: u64,
    /// Live admitted sessions.
    pub admitted_sessions: u64,
    /// Live sessions wanting service: admitted plus refused for lack of room.
    pub demanded_sessions: u64,
    /// Sent rate of the class's flows starting here, Mbit/s (inner frames).
    pub rate_mbps: f64,
    /// The class's utility in the optimizer's last plan (its sessions at
    /// their planned rates; from the control's plan file, `null` without).
    pub planned_utility: Option<f64>,
    /// The class's utility now: its live admitted sessions `n` at the sent
    /// rate `r` of its flows, `n * U(r / n)` with the instance's `U` (from
    /// the plan file; `null` without one, or for a class starting elsewhere).
    pub utility: Option<f64>,
}

/// One flow at one gateway.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FlowReport {
    /// Flow id.
    pub id: String,
    /// `origin`, `destination`, `waypoint` or `idle` here (from the counters:
    /// the role with traffic).
    pub role: &'static str,
    /// Plan epoch the counters carry.
    pub epoch: u64,
    /// The plan's rate (origin), Mbit/s.
    pub target_mbps: f64,
    /// The MONtra controller's rate (origin), Mbit/s.
    pub controller_mbps: f64,
    /// Sent onto the WAN over the interval, Mbit/s.
    pub sent_mbps: f64,
    /// Delivered to the LAN over the interval, Mbit/s.
    pub delivered_mbps: f64,
    /// Relayed (waypoint) over the interval, Mbit/s.
    pub relayed_mbps: f64,
    /// Lost / (acked + lost) over the interval (origin; `null`: no ack in it).
    pub loss: Option<f64>,
    /// Packets the pacing queue refused over the interval.
    pub queue_drops: u64,
    /// Of the packets declared lost: acked after all, over the interval
    /// (origin; the loss rules fired early).
    pub spurious: u64,
    /// Packets the tail timeout declared lost over the interval (origin).
    pub tail_lost: u64,
    /// The flow's latest delivery gap of 20 ms or more, ms (destination;
    /// `null`: none yet): how long its last outage lasted as the receiver saw
    /// it, e.g. a failover.
    pub last_gap_ms: Option<f64>,
    /// How long ago that gap ended, s (at the counters' last update).
    pub last_gap_ended_s_ago: Option<f64>,
    /// The path it rides (origin): `to PEER direct, uplink U` or `to PEER via
    /// WAYPOINT` (PEER: the flow's next overlay hop).
    pub path: Option<String>,
}

/// One port of one worker.
#[derive(Clone, Debug, serde::Serialize)]
pub struct InterfaceReport {
    /// Worker index.
    pub worker: usize,
    /// Port index (0: the LAN of a gateway).
    pub port: usize,
    /// `lan`, the uplink's `name (interface)`, or `port N`.
    pub name: String,
    /// Counters since start.
    pub rx_packets: u64,
    /// Counters since start.
    pub tx_packets: u64,
    /// Counters since start.
    pub rx_bytes: u64,
    /// Counters since start.
    pub tx_bytes: u64,
    /// Over the interval, packets/s.
    pub rx_pps: f64,
    /// Over the interval, packets/s.
    pub tx_pps: f64,
    /// Over the interval, Mbit/s (frame bytes).
    pub rx_mbps: f64,
    /// Over the interval, Mbit/s.
    pub tx_mbps: f64,
    /// The kernel's receive drops before our rings, since start.
    pub kernel_rx_dropped: u64,
}

/// One drop reason.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DropReport {
    /// Since start.
    pub total: u64,
    /// Over the interval, per second.
    pub per_s: f64,
}

/// One flow of the overlay (joined over this machine's gateways).
#[derive(Clone, Debug, serde::Serialize)]
pub struct OverlayFlow {
    /// Flow id.
    pub id: String,
    /// The gateway it starts at (`null`: not on this machine, or idle).
    pub origin: Option<String>,
    /// The gateway that delivers it (`null`: not on this machine, or idle).
    pub destination: Option<String>,
    /// Target, Mbit/s (origin).
    pub target_mbps: f64,
    /// Controller, Mbit/s (origin).
    pub controller_mbps: f64,
    /// Delivered, Mbit/s (destination).
    pub delivered_mbps: f64,
    /// Loss the acks reported (origin).
    pub loss: Option<f64>,
    /// Path (origin).
    pub path: Option<String>,
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// `now - t` in seconds, `None` when `t` is 0 (never).
fn age(now: u64, t: u64) -> Option<f64> {
    (t != 0).then(|| secs(now.saturating_sub(t)))
}

fn rate(a: u64, b: u64, dt: f64) -> f64 {
    if dt > 0.0 {
        b.saturating_sub(a) as f64 / dt
    } else {
        0.0
    }
}

/// The time between two writer stamps `a` then `b` (ns), in seconds, when
/// both are set and ordered; else `fallback` (the readings' own interval).
fn match_dt(a: u64, b: u64, fallback: f64) -> f64 {
    if a > 0 && b > a {
        secs(b - a)
    } else {
        fallback
    }
}

fn mbps(bytes_per_s: f64) -> f64 {
    bytes_per_s * 8.0 / 1e6
}

/// `x` rounded to 4 decimals (the JSON stays readable; far finer than noise).
fn r4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// The name of a path reference on gateway `g`: `to PEER direct, uplink U`
/// or `to PEER via WAYPOINT` (PEER: the next overlay hop of the flow).
fn path_name(g: &GatewaySnapshot, r: u32) -> Option<String> {
    let p = g.paths.iter().find(|p| p.path == u64::from(r))?;
    let peer = g.peers.get(p.peer())?;
    Some(match p.waypoint() {
        Some(w) => format!(
            "to {peer} via {}",
            g.peers.get(w).map_or("?", String::as_str)
        ),
        None => format!(
            "to {peer} direct, uplink {}",
            g.uplinks
                .get(usize::try_from(p.uplink).unwrap_or(usize::MAX))
                .map_or("?", String::as_str)
        ),
    })
}

/// The report from two samples `a` then `b` of the same machine.
pub fn report(run_dir: &str, a: &Sample, b: &Sample) -> Report {
    let dt = secs(b.at_ns.saturating_sub(a.at_ns));
    let now = b.at_ns;
    let mut gateways = Vec::new();
    for g in &b.gateways {
        let prev = a.gateways.iter().find(|x| x.name == g.name);
        gateways.push(gateway_report(g, prev, now, dt));
    }
    let mut flows: BTreeMap<String, OverlayFlow> = BTreeMap::new();
    for g in &gateways {
        for f in &g.flows {
            let e = flows.entry(f.id.clone()).or_insert_with(|| OverlayFlow {
                id: f.id.clone(),
                origin: None,
                destination: None,
                target_mbps: 0.0,
                controller_mbps: 0.0,
                delivered_mbps: 0.0,
                loss: None,
                path: None,
            });
            if f.target_mbps > 0.0 || f.sent_mbps > 0.0 || f.controller_mbps > 0.0 {
                e.origin = Some(g.name.clone());
                e.target_mbps = f.target_mbps;
                e.controller_mbps = f.controller_mbps;
                e.loss = f.loss;
                e.path.clone_from(&f.path);
            }
            if f.delivered_mbps > 0.0 {
                e.destination = Some(g.name.clone());
                e.delivered_mbps = f.delivered_mbps;
            }
        }
    }
    Report {
        format: FORMAT,
        run_dir: run_dir.to_string(),
        interval_s: r4(dt),
        gateways,
        flows: flows.into_values().collect(),
    }
}

fn gateway_report(g: &GwSample, prev: Option<&GwSample>, now: u64, dt: f64) -> GatewayReport {
    let gw = g.gw.as_ref();
    let pgw = prev.and_then(|p| p.gw.as_ref());
    let unit = gw.map_or(1250, |x| x.rate_unit_bytes);
    let unit_mbps = |pps: f64| r4(pps * unit as f64 * 8.0 / 1e6);
    let mut peers = Vec::new();
    if let Some(x) = gw {
        for (pi, name) in x.peers.iter().enumerate() {
            let mut paths = Vec::new();
            for p in x.paths.iter().filter(|p| p.peer() == pi) {
                let before = pgw.and_then(|q| q.paths.iter().find(|o| o.path == p.path));
                let sent = before.map_or(0, |o| p.probes_sent.saturating_sub(o.probes_sent));
                let got = before.map_or(0, |o| p.echoes.saturating_sub(o.echoes));
                paths.push(PathReport {
                    id: p.path,
                    uplink: x
                        .uplinks
                        .get(usize::try_from(p.uplink).unwrap_or(usize::MAX))
                        .cloned()
                        .unwrap_or_default(),
                    via: p
                        .waypoint()
                        .map(|w| x.peers.get(w).cloned().unwrap_or_default()),
                    remote: p.remote.to_string(),
                    state: state::name(p.state),
                    active: p.active,
                    rtt_ms: (p.srtt_ns > 0).then(|| r4(p.srtt_ns as f64 / 1e6)),
                    loss: (sent > 0).then(|| r4(1.0 - (got.min(sent) as f64 / sent as f64))),
                    probes: sent,
                    last_probe_age_s: age(now, p.last_probe_ns).map(r4),
                    last_echo_age_s: age(now, p.last_echo_ns).map(r4),
                    downs: p.downs,
                });
            }
            peers.push(PeerReport {
                name: name.clone(),
                paths,
            });
        }
    }
    let mut flows = Vec::new();
    let mut class_rate = vec![0.0; gw.map_or(0, |x| x.classes.len())];
    for fs in &g.flows {
        let (id, c, path) = (&fs.id, &fs.counters, fs.path);
        let p = prev
            .and_then(|p| p.flows.iter().find(|f| &f.id == id))
            .map_or(*c, |f| f.counters);
        // The counters' own time base: the worker stamps each update
        // (`updated_ns`, every report period), our readings are not aligned
        // to it (with a 100 ms period and a 1 s interval the readers' clock
        // alone would be up to 10 % off).
        let fdt = match_dt(p.updated_ns, c.updated_ns, dt);
        let sent = mbps(rate(p.tx_bytes, c.tx_bytes, fdt));
        let delivered = mbps(rate(p.rx_bytes, c.rx_bytes, fdt));
        let relayed = mbps(rate(p.relayed_bytes, c.relayed_bytes, fdt));
        let acked = c.acked.saturating_sub(p.acked);
        let lost = c.lost.saturating_sub(p.lost);
        let role = if c.target_pps > 0.0 || c.tx_packets > 0 {
            "origin"
        } else if c.rx_packets > 0 {
            "destination"
        } else if c.relayed_packets > 0 {
            "waypoint"
        } else {
            "idle"
        };
        if role == "origin"
            && let Some(r) = fs.class.and_then(|k| class_rate.get_mut(k))
        {
            *r += sent;
        }
        flows.push(FlowReport {
            id: id.clone(),
            role,
            epoch: c.epoch,
            target_mbps: unit_mbps(c.target_pps),
            controller_mbps: unit_mbps(c.rate_pps),
            sent_mbps: r4(sent),
            delivered_mbps: r4(delivered),
            relayed_mbps: r4(relayed),
            loss: (acked + lost > 0).then(|| r4(lost as f64 / (acked + lost) as f64)),
            queue_drops: c.queue_drops.saturating_sub(p.queue_drops),
            spurious: c.spurious.saturating_sub(p.spurious),
            tail_lost: c.tail_lost.saturating_sub(p.tail_lost),
            last_gap_ms: (c.rx_resumed_ns > 0).then(|| r4(c.rx_gap_ns as f64 / 1e6)),
            last_gap_ended_s_ago: (c.rx_resumed_ns > 0)
                .then(|| r4(c.updated_ns.saturating_sub(c.rx_resumed_ns) as f64 / 1e9)),
            path: path.and_then(|r| gw.and_then(|x| path_name(x, r))),
        });
    }
    let classes = gw.map_or_else(Vec::new, |x| {
        x.classes
            .iter()
            .zip(&class_rate)
            .map(|(c, &r)| ClassReport {
                id: c.id.clone(),
                local: c.local,
                planned_sessions: c.admitted,
                admitted_sessions: c.active,
                demanded_sessions: c.active + c.waiting,
                rate_mbps: r4(r),
                planned_utility: g
                    .plan
                    .as_ref()
                    .and_then(|p| p.classes.iter().find(|x| x.id == c.id))
                    .map(|x| r4(x.utility)),
                utility: g
                    .plan
                    .as_ref()
                    .and_then(|p| p.classes.iter().find(|x| x.id == c.id))
                    .and_then(|x| x.utility_fn.as_ref())
                    .filter(|_| c.local)
                    .map(|u| {
                        if c.active == 0 {
                            0.0
                        } else {
                            let n = c.active as f64;
                            r4(n * u.eval(r / n))
                        }
                    }),
            })
            .collect()
    });
    let mut interfaces = Vec::new();
    let mut drops: BTreeMap<String, DropReport> = BTreeMap::new();
    for (wi, w) in g.workers.iter().enumerate() {
        let pw = prev.and_then(|p| p.workers.get(wi));
        // The worker's flush stamps (`heartbeat_ns`) as the time base.
        let dt = match_dt(pw.map_or(0, |p| p.heartbeat_ns), w.heartbeat_ns, dt);
        for port in 0..w.rx_packets.len() {
            let v = |x: &Vec<u64>| x.get(port).copied().unwrap_or(0);
            let pv = |f: fn(&WorkerSnapshot) -> &Vec<u64>| pw.map_or(0, |p| v(f(p)));
            let (rxp, txp, rxb, txb) = (
                v(&w.rx_packets),
                v(&w.tx_packets),
                v(&w.rx_bytes),
                v(&w.tx_bytes),
            );
            let name = match (gw, port) {
                (Some(_), 0) => "lan".to_string(),
                (Some(x), k) => match x.uplinks.get(k - 1) {
                    Some(u) => format!("uplink {u}"),
                    // After the uplinks: the handoff ports of a gateway of
                    // several workers, one per other worker in worker order.
                    None if rxp > 0 || txp > 0 => {
                        let i = k - 1 - x.uplinks.len();
                        let to = if i < wi { i } else { i + 1 };
                        format!("handoff, worker {to}")
                    }
                    None => continue,
                },
                (None, k) => format!("port {k}"),
            };
            if gw.is_none() && rxp == 0 && txp == 0 {
                continue;
            }
            interfaces.push(InterfaceReport {
                worker: wi,
                port,
                name,
                rx_packets: rxp,
                tx_packets: txp,
                rx_bytes: rxb,
                tx_bytes: txb,
                rx_pps: r4(rate(pv(|p| &p.rx_packets), rxp, dt)),
                tx_pps: r4(rate(pv(|p| &p.tx_packets), txp, dt)),
                rx_mbps: r4(mbps(rate(pv(|p| &p.rx_bytes), rxb, dt))),
                tx_mbps: r4(mbps(rate(pv(|p| &p.tx_bytes), txb, dt))),
                kernel_rx_dropped: v(&w.kernel_rx_dropped),
            });
        }
        for (reason, &n) in &w.drops {
            let before = pw.and_then(|p| p.drops.get(reason)).copied().unwrap_or(n);
            let d = drops.entry(reason.clone()).or_default();
            d.total += n;
            d.per_s += rate(before, n, dt);
        }
    }
    for d in drops.values_mut() {
        d.per_s = r4(d.per_s);
    }
    GatewayReport {
        name: g.name.clone(),
        pid: g.pid,
        process: if g.alive { "running" } else { "dead" },
        kind: if gw.is_some() { "gateway" } else { "forwarder" },
        uptime_s: gw.and_then(|x| age(now, x.started_ns)).map(r4),
        plan: gw.map(|x| PlanReport {
            epoch: x.epoch,
            age_s: r4(secs(now.saturating_sub(x.plan_since_ns))),
        }),
        control: gw.map(|x| ControlReport {
            enabled: x.control_region,
            attached: x.control_region
                && x.control_heartbeat_ns != 0
                && now.saturating_sub(x.control_heartbeat_ns) < CONTROL_STALE_NS,
            heartbeat_age_s: age(now, x.control_heartbeat_ns).map(r4),
            session: x.control_session,
        }),
        optimizer: g.plan.as_ref().map(|p| OptimizerReport {
            epoch: p.epoch,
            status: p.status.clone(),
            objective: r4(p.objective),
            bound: r4(p.bound),
            gap: p.gap,
            solve_ms: r4(p.solve_ms),
            age_s: r4(secs(now.saturating_sub(p.ts_ms.saturating_mul(1_000_000)))),
            triggers: p.triggers.clone(),
            detours: p.detours.clone(),
            control_pid: p.pid,
            control_alive: g.plan_writer_alive,
        }),
        sessions: gw.map(|x| x.sessions),
        lan_hosts: gw.map(|x| x.lan_hosts),
        lan_hosts_not_learned: gw.map(|x| x.lan_hosts_not_learned),
        peers,
        classes,
        flows,
        interfaces,
        drops,
        reloads: g
            .reloads
            .iter()
            .map(|o| ReloadReport {
                process: o.process.clone(),
                generation: o.generation,
                applied: o.applied,
                message: o.message.clone(),
                age_s: r4(g.unix_ms.saturating_sub(o.unix_ms) as f64 / 1e3),
            })
            .collect(),
        error: g.flows_error.clone(),
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

fn pct(v: Option<f64>) -> String {
    opt(v, |x| format!("{:.1} %", x * 100.0))
}

/// The legend printed under the human table.
pub const LEGEND: &str = "\
legend: rates are averages over the interval between two samples (--interval-ms); Mbit/s of
  inner frames for flows and classes, of whole frames for interfaces. Path state: up; suspect
  (usable, but acks or echoes are late); down (not usable); held (the control holds it down).
  * = the path the peer's traffic rides now. rtt: smoothed probe round-trip time; loss: probes
  unanswered in the interval. Class sessions: plan = admitted by the plan in force, adm = live
  admitted, dem = live wanting service (admitted + refused for lack of room). Flow loss: packets
  the acks reported lost / (acked + lost) in the interval. Class utility: now (live admitted
  sessions at the class's sent rate) and planned (the optimizer's last plan: its sessions at
  their planned rates); both with the instance's utility functions, from the control's plan file.
  Drop reasons: docs/overlay.md. JSON keys: docs/status.md.";

/// Prints `r` as tables (`wg show` style: one block per gateway).
pub fn print_human(r: &Report, out: &mut impl std::io::Write) -> std::io::Result<()> {
    if r.gateways.is_empty() {
        writeln!(
            out,
            "no gateway running (no counter files in {})",
            r.run_dir
        )?;
        return Ok(());
    }
    for g in &r.gateways {
        write!(out, "gateway {}: {} (pid {})", g.name, g.process, g.pid)?;
        if let Some(u) = g.uptime_s {
            write!(out, ", up {u:.1} s")?;
        }
        writeln!(out, ", {}; sampled over {:.2} s", g.kind, r.interval_s)?;
        if let Some(e) = &g.error {
            writeln!(out, "  error: {e}")?;
        }
        if let Some(p) = &g.plan {
            write!(out, "  plan: epoch {}, in force {:.1} s", p.epoch, p.age_s)?;
        }
        if let Some(c) = &g.control {
            let hb = opt(c.heartbeat_age_s, |x| format!("heartbeat {x:.2} s ago"));
            let what = match (c.enabled, c.attached) {
                (false, _) => "none (--no-control: the site file's plan)".to_string(),
                (true, true) => format!("attached ({hb}, session {})", c.session),
                (true, false) => format!("not attached ({hb}); the last plan holds"),
            };
            write!(out, "; control: {what}")?;
        }
        if let Some(s) = g.sessions {
            write!(out, "; sessions: {s}")?;
        }
        if let Some(h) = g.lan_hosts {
            write!(out, "; LAN hosts: {h}")?;
            match g.lan_hosts_not_learned {
                Some(n) if n > 0 => write!(out, " ({n} not learned: table full)")?,
                _ => {}
            }
        }
        if g.plan.is_some() {
            writeln!(out)?;
        }
        if let Some(o) = &g.optimizer {
            writeln!(
                out,
                "  optimizer: epoch {} {}, mission utility {:.4} (bound {:.4}, gap {:.1e}), solved in {:.0} ms, {:.1} s ago ({}){}",
                o.epoch,
                o.status,
                o.objective,
                o.bound,
                o.gap,
                o.solve_ms,
                o.age_s,
                o.triggers.join(","),
                if o.control_alive {
                    ""
                } else {
                    "; its control is gone"
                }
            )?;
            if !o.detours.is_empty() {
                let d: Vec<String> = o
                    .detours
                    .iter()
                    .map(|d| format!("{} via {} {:.2}", d.peer, d.via, d.mbps))
                    .collect();
                writeln!(out, "  detours' spare (Mbit/s): {}", d.join(", "))?;
            }
        }
        for l in &g.reloads {
            let first = l.message.lines().next().unwrap_or("");
            let more = l.message.lines().count().saturating_sub(1);
            writeln!(
                out,
                "  last reload ({}, #{}): {} {:.0} s ago: {first}{}",
                l.process,
                l.generation,
                if l.applied { "applied" } else { "REFUSED" },
                l.age_s,
                if more > 0 {
                    format!(" (+{more} more: mongate reload prints them)")
                } else {
                    String::new()
                }
            )?;
        }
        if !g.peers.is_empty() {
            writeln!(out)?;
            writeln!(
                out,
                "  {:<8} {:<34} {:<16} {:<8} {:>9} {:>8} {:>11} {:>5}",
                "peer", "  path", "remote", "state", "rtt ms", "loss", "last probe", "downs"
            )?;
            for p in &g.peers {
                for (i, x) in p.paths.iter().enumerate() {
                    let route = match &x.via {
                        Some(w) => format!("via {w}"),
                        None => format!("direct, uplink {}", x.uplink),
                    };
                    writeln!(
                        out,
                        "  {:<8} {} {:<32} {:<16} {:<8} {:>9} {:>8} {:>11} {:>5}",
                        if i == 0 { p.name.as_str() } else { "" },
                        if x.active { "*" } else { " " },
                        route,
                        x.remote,
                        x.state,
                        opt(x.rtt_ms, |v| format!("{v:.2}")),
                        pct(x.loss),
                        opt(x.last_probe_age_s, |v| format!("{v:.2} s")),
                        x.downs
                    )?;
                }
                if p.paths.is_empty() {
                    writeln!(out, "  {:<8}   (no path: no uplink reaches it)", p.name)?;
                }
            }
        }
        if !g.classes.is_empty() {
            writeln!(out)?;
            writeln!(
                out,
                "  {:<20} {:>5} {:>5} {:>5} {:>12} {:>9} {:>9}",
                "class", "plan", "adm", "dem", "rate Mbit/s", "utility", "planned"
            )?;
            for c in g.classes.iter().filter(|c| c.local) {
                writeln!(
                    out,
                    "  {:<20} {:>5} {:>5} {:>5} {:>12.2} {:>9} {:>9}",
                    c.id,
                    c.planned_sessions,
                    c.admitted_sessions,
                    c.demanded_sessions,
                    c.rate_mbps,
                    opt(c.utility, |u| format!("{u:.4}")),
                    opt(c.planned_utility, |u| format!("{u:.4}"))
                )?;
            }
            let others = g.classes.iter().filter(|c| !c.local).count();
            if others > 0 {
                writeln!(out, "  ({others} classes start at other sites)")?;
            }
        }
        if !g.flows.is_empty() {
            writeln!(out)?;
            writeln!(
                out,
                "  {:<18} {:<11} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7}  path  (rates Mbit/s)",
                "flow", "role", "target", "control", "sent", "deliv", "relayed", "loss"
            )?;
            for f in &g.flows {
                writeln!(
                    out,
                    "  {:<18} {:<11} {:>7.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7}  {}",
                    f.id,
                    f.role,
                    f.target_mbps,
                    f.controller_mbps,
                    f.sent_mbps,
                    f.delivered_mbps,
                    f.relayed_mbps,
                    pct(f.loss),
                    f.path.as_deref().unwrap_or("-")
                )?;
            }
        }
        writeln!(out)?;
        writeln!(
            out,
            "  {:<3} {:<30} {:>9} {:>9} {:>9} {:>9} {:>12} {:>12}",
            "wkr",
            "interface",
            "rx pkt/s",
            "tx pkt/s",
            "rx Mbit/s",
            "tx Mbit/s",
            "rx packets",
            "tx packets"
        )?;
        for i in &g.interfaces {
            writeln!(
                out,
                "  {:<3} {:<30} {:>9.0} {:>9.0} {:>9.2} {:>9.2} {:>12} {:>12}",
                i.worker,
                i.name,
                i.rx_pps,
                i.tx_pps,
                i.rx_mbps,
                i.tx_mbps,
                i.rx_packets,
                i.tx_packets
            )?;
        }
        if g.drops.is_empty() {
            writeln!(out, "  drops: none")?;
        } else {
            let d: Vec<String> = g
                .drops
                .iter()
                .map(|(k, v)| format!("{k} {} ({:.0}/s)", v.total, v.per_s))
                .collect();
            writeln!(out, "  drops: {}", d.join(", "))?;
        }
        writeln!(out)?;
    }
    let shown: Vec<&OverlayFlow> = r
        .flows
        .iter()
        .filter(|f| f.origin.is_some() || f.destination.is_some())
        .collect();
    if !shown.is_empty() {
        writeln!(
            out,
            "overlay flows (origin's plan and controller, destination's delivery):"
        )?;
        writeln!(
            out,
            "  {:<18} {:<24} {:>7} {:>8} {:>8} {:>7}  path  (rates Mbit/s)",
            "flow", "from -> to", "target", "control", "deliv", "loss"
        )?;
        for f in shown {
            writeln!(
                out,
                "  {:<18} {:<24} {:>7.2} {:>8.2} {:>8.2} {:>7}  {}",
                f.id,
                format!(
                    "{} -> {}",
                    f.origin.as_deref().unwrap_or("?"),
                    f.destination.as_deref().unwrap_or("?")
                ),
                f.target_mbps,
                f.controller_mbps,
                f.delivered_mbps,
                pct(f.loss),
                f.path.as_deref().unwrap_or("-")
            )?;
        }
        writeln!(out)?;
    }
    writeln!(out, "{LEGEND}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongate_dataplane::stats::gateway::{ClassSnapshot, PathSnapshot};

    const S: u64 = 1_000_000_000;

    fn gw(epoch: u64, probes: u64, echoes: u64) -> GatewaySnapshot {
        let path = |r: u64, via: u64, state: u64, active: bool| PathSnapshot {
            path: r,
            uplink: 0,
            via,
            remote: "198.18.0.2".parse().unwrap(),
            state,
            active,
            srtt_ns: 2_500_000,
            last_probe_ns: 9 * S,
            last_echo_ns: 9 * S,
            probes_sent: probes,
            echoes,
            downs: 0,
            up_since_ns: S,
        };
        GatewaySnapshot {
            rate_unit_bytes: 1250,
            epoch,
            plan_since_ns: 4 * S,
            control_heartbeat_ns: 10 * S - 1000,
            control_session: 1,
            control_region: true,
            updated_ns: 10 * S,
            sessions: 3,
            started_ns: S,
            lan_hosts: 2,
            lan_hosts_not_learned: 0,
            classes: vec![ClassSnapshot {
                id: "bulk".into(),
                active: 2,
                waiting: 1,
                admitted: 2,
                local: true,
            }],
            peers: vec!["B".into(), "C".into()],
            uplinks: vec!["ab (veth-ab)".into()],
            paths: vec![
                path(0, u64::from(u16::MAX), state::UP, true),
                path(1 << 16, u64::from(u16::MAX), state::HELD, false),
                path(1 << 16 | 1, 0, state::UP, true),
            ],
        }
    }

    fn flow(tx_bytes: u64, rx_bytes: u64, acked: u64, lost: u64) -> FlowCounters {
        FlowCounters {
            tx_packets: tx_bytes / 1250,
            tx_bytes,
            rx_packets: rx_bytes / 1250,
            rx_bytes,
            acked,
            lost,
            target_pps: 500.0,
            rate_pps: 450.0,
            epoch: 3,
            ..FlowCounters::default()
        }
    }

    fn sample(at: u64, a: (u64, u64, u64), c_rx: u64, probes: (u64, u64)) -> Sample {
        let worker = WorkerSnapshot {
            rx_packets: vec![10, 20],
            tx_packets: vec![5, a.0 / 1250],
            rx_bytes: vec![1000, 2000],
            tx_bytes: vec![500, a.0],
            drops: [("runt".to_string(), a.2)].into_iter().collect(),
            kernel_rx_dropped: vec![0, 0],
            ..WorkerSnapshot::default()
        };
        let origin = GwSample {
            name: "A".into(),
            pid: 1,
            alive: true,
            workers: vec![worker],
            flows: vec![FlowSample {
                id: "A->C/via-B".into(),
                counters: flow(a.0, 0, a.1, a.1 / 10),
                path: Some(1 << 16 | 1),
                class: Some(0),
            }],
            gw: Some(gw(3, probes.0, probes.1)),
            flows_error: None,
            plan: None,
            plan_writer_alive: false,
            reloads: Vec::new(),
            unix_ms: 0,
        };
        let dest = GwSample {
            name: "C".into(),
            pid: 2,
            alive: false,
            workers: vec![],
            flows: vec![FlowSample {
                id: "A->C/via-B".into(),
                counters: FlowCounters {
                    rx_packets: c_rx / 1250,
                    rx_bytes: c_rx,
                    ..FlowCounters::default()
                },
                path: None,
                class: Some(0),
            }],
            gw: None,
            flows_error: None,
            plan: None,
            plan_writer_alive: false,
            reloads: Vec::new(),
            unix_ms: 0,
        };
        Sample {
            at_ns: at,
            gateways: vec![origin, dest],
        }
    }

    #[test]
    fn rates_loss_and_states_from_two_samples() {
        // 2 s apart: A sent 1.25 MB (5 Mbit/s), C delivered 1 MB (4 Mbit/s).
        let a = sample(8 * S, (1_000_000, 1000, 4), 0, (100, 100));
        let mut b = sample(10 * S, (2_250_000, 1900, 10), 1_000_000, (140, 130));
        b.gateways[0].plan = Some(PlanStatus {
            pid: 7,
            ts_ms: 4000,
            epoch: 3,
            status: "optimal".into(),
            objective: 2.5,
            bound: 2.5,
            gap: 0.0,
            solve_ms: 31.0,
            triggers: vec!["initial".into()],
            classes: vec![mongate_control::run::status_file::ClassPlan {
                id: "bulk".into(),
                sessions: 2,
                rate_mbps: 5.0,
                utility: 2.5,
                utility_fn: Some(mongate_control::pfo::UtilitySpec::Linear { slope: 0.5 }),
            }],
            detours: vec![mongate_dataplane::plan::PlanDetour {
                peer: "C".into(),
                via: "B".into(),
                mbps: 1.25,
            }],
        });
        b.gateways[0].unix_ms = 1_000_000_000_000;
        b.gateways[0].reloads = vec![mongate_dataplane::app::reload::ReloadOutcome {
            process: "control".into(),
            pid: 7,
            generation: 2,
            applied: false,
            message: "/etc/a.toml:4:7: site.vni: bad\n/etc/a.toml: [[peers]] changed".into(),
            unix_ms: 1_000_000_000_000 - 2_500,
        }];
        let r = report("/run/x", &a, &b);
        let l = &r.gateways[0].reloads[0];
        assert_eq!((l.generation, l.applied, l.age_s), (2, false, 2.5));
        let mut table = Vec::new();
        print_human(&r, &mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(
            table.contains("last reload (control, #2): REFUSED 2 s ago: /etc/a.toml:4:7: site.vni: bad (+1 more"),
            "{table}"
        );
        assert!(
            table.contains("  detours' spare (Mbit/s): C via B 1.25\n"),
            "{table}"
        );
        let o = r.gateways[0].optimizer.as_ref().unwrap();
        assert_eq!(
            (o.epoch, o.objective, o.solve_ms, o.age_s),
            (3, 2.5, 31.0, 6.0)
        );
        assert!(!o.control_alive);
        assert_eq!(r.gateways[0].classes[0].planned_utility, Some(2.5));
        // The utility now: the live admitted sessions at the sent rate, with
        // the plan file's U (0.5 per Mbit/s): 0.5 x the class's rate.
        let c = &r.gateways[0].classes[0];
        assert!(
            c.local && c.admitted_sessions > 0 && c.rate_mbps > 0.0,
            "{c:?}"
        );
        let u = c.utility.expect("utility now");
        assert!((u - 0.5 * c.rate_mbps).abs() < 1e-3, "{u} vs {c:?}");
        assert!(r.gateways[1].optimizer.is_none());
        assert_eq!(r.interval_s, 2.0);
        let g = &r.gateways[0];
        assert_eq!(g.process, "running");
        assert_eq!(r.gateways[1].process, "dead");
        assert_eq!(g.kind, "gateway");
        assert_eq!(r.gateways[1].kind, "forwarder");
        let plan = g.plan.as_ref().unwrap();
        assert_eq!((plan.epoch, plan.age_s), (3, 6.0));
        assert!(g.control.as_ref().unwrap().attached);
        let f = &g.flows[0];
        assert_eq!(f.role, "origin");
        assert_eq!(f.sent_mbps, 5.0);
        // 500 units/s of 1250 B: 5 Mbit/s; 450: 4.5.
        assert_eq!((f.target_mbps, f.controller_mbps), (5.0, 4.5));
        // acked 900, lost 90 in the interval.
        assert_eq!(f.loss, Some(0.0909));
        assert_eq!(f.path.as_deref(), Some("to C via B"));
        assert_eq!(g.classes[0].rate_mbps, 5.0);
        assert_eq!(g.classes[0].demanded_sessions, 3);
        // Probes: 40 sent, 30 answered in the interval.
        let p = &g.peers[0].paths[0];
        assert_eq!((p.probes, p.loss), (40, Some(0.25)));
        assert_eq!(p.rtt_ms, Some(2.5));
        assert_eq!(p.last_probe_age_s, Some(1.0));
        assert_eq!(g.peers[1].paths[0].state, "held");
        assert_eq!(g.peers[1].paths[1].via.as_deref(), Some("B"));
        let up = &g.interfaces[1];
        assert_eq!((up.name.as_str(), up.tx_mbps), ("uplink ab (veth-ab)", 5.0));
        assert_eq!(g.drops["runt"].total, 10);
        assert_eq!(g.drops["runt"].per_s, 3.0);
        // Joined: the origin's plan, the destination's delivery.
        let o = &r.flows[0];
        assert_eq!(o.origin.as_deref(), Some("A"));
        assert_eq!(o.destination.as_deref(), Some("C"));
        assert_eq!((o.target_mbps, o.delivered_mbps), (5.0, 4.0));
        // The table names every peer, path, flow and gateway.
        let mut out = Vec::new();
        print_human(&r, &mut out).unwrap();
        let t = String::from_utf8(out).unwrap();
        for w in [
            "gateway A: running",
            "gateway C: dead",
            "via B",
            "direct, uplink ab (veth-ab)",
            "held",
            "A->C/via-B",
            "A -> C",
            "legend:",
            "runt 10 (3/s)",
            "mission utility 2.5000",
            "its control is gone",
        ] {
            assert!(t.contains(w), "{w:?} missing:\n{t}");
        }
    }

    #[test]
    fn a_gateway_that_appears_between_samples_has_rates_zero_not_garbage() {
        let a = Sample {
            at_ns: S,
            gateways: vec![],
        };
        let b = sample(2 * S, (5_000_000, 10, 1), 7_000_000, (5, 5));
        let r = report("/run/x", &a, &b);
        let f = &r.gateways[0].flows[0];
        assert_eq!((f.sent_mbps, f.loss), (0.0, None));
        assert_eq!(r.gateways[0].peers[0].paths[0].loss, None);
        let mut out = Vec::new();
        print_human(&report("/run/x", &a, &a), &mut out).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("no gateway running")
        );
    }

    #[test]
    fn the_prometheus_exposition_carries_the_reports_figures() {
        let mut a = sample(8 * S, (1_000_000, 1000, 4), 0, (100, 100));
        let mut b = sample(10 * S, (2_250_000, 1900, 10), 1_000_000, (140, 130));
        // A label value that needs escaping.
        for x in [&mut a, &mut b] {
            x.gateways[0].flows[0].id = "odd \"id\"\\".into();
        }
        let r = report("/run/x", &a, &b);
        let text = super::super::metrics::render(&r);
        let mut families: Vec<&str> = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(!families.contains(&name), "{name} twice:\n{text}");
                families.push(name);
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            // name{labels} value, of the family announced last.
            let (series, value) = line.rsplit_once(' ').expect(line);
            value.parse::<f64>().expect(line);
            let name = series.split('{').next().unwrap();
            assert_eq!(Some(&name), families.last(), "{line}");
            assert!(series.ends_with('}'), "{line}");
        }
        for want in [
            "mongate_flow_sent_mbps{gateway=\"A\",flow=\"odd \\\"id\\\"\\\\\",role=\"origin\"} 5",
            "mongate_flow_target_mbps{gateway=\"A\",flow=\"odd \\\"id\\\"\\\\\",role=\"origin\"} 5",
            "mongate_overlay_flow_delivered_mbps{flow=\"A->C/via-B\",origin=\"\",destination=\"C\"} 4",
            "state=\"held\"} 1",
            "mongate_plan_epoch{gateway=\"A\"} 3",
            "mongate_drops_total{gateway=\"A\",reason=\"runt\"} 10",
            "mongate_path_rtt_seconds{gateway=\"A\",peer=\"B\",path=\"0\"",
            "mongate_class_sessions{gateway=\"A\",class=\"bulk\",kind=\"demanded\"} 3",
            "mongate_status_interval_seconds{} 2",
        ] {
            assert!(text.contains(want), "{want} missing:\n{text}");
        }
    }

    #[test]
    fn rates_use_the_writers_stamps_when_they_have_them() {
        let mut a = sample(8 * S, (1_000_000, 1000, 4), 0, (100, 100));
        let mut b = sample(10 * S, (2_250_000, 1900, 10), 1_000_000, (140, 130));
        // The counters were written 2.5 s apart although read 2 s apart.
        a.gateways[0].flows[0].counters.updated_ns = 7 * S + S / 2;
        b.gateways[0].flows[0].counters.updated_ns = 10 * S;
        a.gateways[0].workers[0].heartbeat_ns = 7 * S + S / 2;
        b.gateways[0].workers[0].heartbeat_ns = 10 * S;
        let r = report("/run/x", &a, &b);
        let g = &r.gateways[0];
        assert_eq!(g.flows[0].sent_mbps, 4.0);
        assert_eq!(g.interfaces[1].tx_mbps, 4.0);
        // A stamp that did not move: the readings' interval.
        b.gateways[0].flows[0].counters.updated_ns = 7 * S + S / 2;
        let r = report("/run/x", &a, &b);
        assert_eq!(r.gateways[0].flows[0].sent_mbps, 5.0);
    }
}
