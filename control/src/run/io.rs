//! The thin I/O loop of `mongate-control run`: attach to the dataplane's control region,
//! heartbeat, drain telemetry into the [`Planner`], ask the plan source for its solves, check
//! each new plan and send it (chunks + commit to every worker, wait until every worker staged
//! it, flip the active epoch). Re-attaches and resends the whole plan when the region changes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossbeam_channel::Receiver;
use mongate_dataplane::config::Config;
use mongate_dataplane::overlay::failover::{PathEventKind, PathTelemetry};
use mongate_dataplane::plan::{PlanError, PlanShape, PlanTable};

use super::planner::PERIODIC_DRIFT;
use mongate_dataplane::shm::msg::PATHS_PER_MSG;
use mongate_dataplane::shm::{
    Command, ControlPort, CtlError, PlanEntry, SendError, Telemetry, plan_commands, plan_entries,
};
use mongate_dataplane::sys::clock;

use super::log::{EventLog, LogRecord, LogSink, PlanLog};
use super::planner::{Planner, PlannerConfig};
use super::source::{PfoSource, PlanSource, SourcedPlan};
use crate::failover::{FailoverDriver, site_path_config};
use crate::pfo::{Instance, SolveOptions};
use crate::secure::SecureDriver;

/// An event from outside the loop (path selection, operator, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlEvent {
    /// Link `link` (instance id) failed (`true`) or recovered (`false`).
    LinkFailed {
        /// Link id.
        link: String,
        /// Failed or recovered.
        failed: bool,
    },
}

/// Everything [`run`] needs.
pub struct RunOptions {
    /// The control region file (`mongate_dataplane::shm::ctl_path(name)`).
    pub region: PathBuf,
    /// The site configuration the dataplane runs.
    pub config: Config,
    /// The organisation-wide PFO instance.
    pub instance: Instance,
    /// Decision parameters.
    pub planner: PlannerConfig,
    /// PFO solver settings.
    pub solve: SolveOptions,
    /// Loop period (heartbeats are written every iteration).
    pub poll: Duration,
    /// How long to wait for every worker to stage a plan before abandoning that epoch.
    pub staging_timeout: Duration,
    /// Delay before resending after a failed send.
    pub retry_delay: Duration,
    /// Longest pause between attach attempts.
    pub attach_backoff_max: Duration,
    /// Telemetry messages read per worker per iteration.
    pub telemetry_budget: u32,
    /// External events.
    pub events: Option<Receiver<ControlEvent>>,
    /// Drive the dataplane's paths with the MONET path manager (probes, assignments, link
    /// states for PFO); off: the dataplane chooses its paths itself and its per-peer path
    /// summary marks links failed.
    pub paths: bool,
    /// Seed of the path manager (probe jitter, sequence numbers).
    pub paths_seed: u64,
    /// Log output.
    pub log: LogSink,
    /// Where a reload re-reads the files, and when it is asked for.
    pub reload: Option<ReloadSource>,
}

/// The files a reload (SIGHUP, `mongate reload`) re-reads, the flag that
/// asks for one, and whom to tell of a new instance.
pub struct ReloadSource {
    /// The site configuration file.
    pub config: PathBuf,
    /// The instance file.
    pub instance: PathBuf,
    /// Set to ask for a reload (the loop swaps it back).
    pub requested: &'static AtomicBool,
    /// Gateway instance name: the outcome goes to
    /// `mongate_dataplane::app::reload::outcome_path(name, "control")`.
    pub name: String,
    /// Called with the new instance once it is in force (the plan file's
    /// utilities come from it).
    pub on_instance: Box<dyn Fn(&Instance) + Send + Sync>,
}

impl RunOptions {
    /// Defaults for everything but the inputs.
    pub fn new(region: PathBuf, config: Config, instance: Instance, log: LogSink) -> Self {
        Self {
            region,
            config,
            instance,
            planner: PlannerConfig::default(),
            solve: SolveOptions {
                time_limit: Some(10.0),
                ..SolveOptions::default()
            },
            poll: Duration::from_millis(5),
            staging_timeout: Duration::from_secs(2),
            retry_delay: Duration::from_millis(500),
            attach_backoff_max: Duration::from_secs(1),
            telemetry_budget: 256,
            events: None,
            paths: true,
            paths_seed: 1,
            log,
            reload: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Plans activated.
    pub plans_sent: u64,
    /// Successful attaches.
    pub attaches: u64,
    /// Telemetry messages that did not decode.
    pub decode_errors: u64,
    /// Telemetry records naming unknown or foreign flows/classes.
    pub bad_records: u64,
    /// Solves run.
    pub solves: u64,
    /// Epochs abandoned because not every worker staged them in time.
    pub staging_timeouts: u64,
    /// Path moves the path manager decided.
    pub path_moves: u64,
    /// Probe commands sent.
    pub probes_sent: u64,
    /// Probe commands dropped: the command ring was full.
    pub probes_dropped: u64,
    /// Batches of path marks dropped: the command ring was full.
    pub marks_dropped: u64,
    /// Security commands sent (keys installed or revoked, handshake messages).
    pub secure_sent: u64,
    /// Security commands dropped (the ring refused them for another reason than room).
    pub secure_dropped: u64,
}

/// The plan the dataplane should run.
struct Desired {
    seq: u64,
    /// The plan as its source gave it.
    base: PlanTable,
    /// The factors on its weights (`Planner::weight_scales`, by configuration flow index).
    scales: Vec<f64>,
    /// What is sent: `base`, its weights times `scales`.
    entries: Vec<PlanEntry>,
    log: PlanLog,
    sent: bool,
}

enum Phase {
    Broadcast(Vec<Command>),
    Staging,
}

struct Inflight {
    seq: u64,
    epoch: u64,
    since: Instant,
    phase: Phase,
}

fn ms(ns: u64) -> u64 {
    ns / 1_000_000
}

/// The loop's state.
struct Loop<'a> {
    o: &'a RunOptions,
    planner: Planner,
    source: Box<dyn PlanSource>,
    /// The shape every plan is checked against before it is sent.
    shape: PlanShape,
    port: Option<ControlPort>,
    desired: Option<Desired>,
    inflight: Option<Inflight>,
    retry_at: Option<Instant>,
    next_seq: u64,
    summary: RunSummary,
    last_wait_msg: Option<String>,
    next_attach: Instant,
    backoff: Duration,
    reported_decode: u64,
    reported_bad: u64,
    last_report: Option<Instant>,
    paths: Option<FailoverDriver>,
    /// The dataplane's candidate paths, by reference (for log lines).
    path_table: std::collections::BTreeMap<u32, mongate_dataplane::shm::msg::PathTelemetry>,
    /// Keys and handshakes (does nothing with `[security] mode = "off"`).
    secure: SecureDriver,
    /// The site configuration in force (a reload may change its live part).
    config: Config,
    /// Reload requests handled.
    reloads: u64,
}

impl Loop<'_> {
    fn log(&self, r: &LogRecord) {
        (self.o.log)(r);
    }
    fn event(&self, now_ns: u64, kind: &str, msg: impl Into<String>, epoch: Option<u64>) {
        let mut r = LogRecord::event(ms(now_ns), kind, msg);
        if let LogRecord::Event(e) = &mut r {
            e.epoch = epoch;
        }
        self.log(&r);
    }

    fn try_attach(&mut self, now_ns: u64) {
        let t = Instant::now();
        if t < self.next_attach {
            return;
        }
        match ControlPort::attach(&self.o.region) {
            Ok(port) => {
                self.summary.attaches += 1;
                let earlier_sessions = port.earlier_sessions();
                self.backoff = Duration::from_millis(20);
                self.last_wait_msg = None;
                port.heartbeat(now_ns);
                self.event(
                    now_ns,
                    "attached",
                    format!(
                        "{}: generation {}, {} workers, active epoch {}",
                        self.o.region.display(),
                        port.generation(),
                        port.workers(),
                        port.active_epoch()
                    ),
                    Some(port.active_epoch()),
                );
                if let Some(d) = &mut self.desired {
                    d.sent = false;
                    let seq = d.seq;
                    self.event(
                        now_ns,
                        "resync",
                        format!("resending the current plan (#{seq}) at a new epoch"),
                        None,
                    );
                }
                self.inflight = None;
                self.retry_at = None;
                self.port = Some(port);
                if let Some(d) = &mut self.paths {
                    d.resync();
                    d.set_adopt_dataplane_paths(earlier_sessions > 0);
                }
                // A restarted control or dataplane: handshake with every peer again at once.
                self.secure.attached(now_ns);
            }
            Err(e) => {
                let msg = match &e {
                    CtlError::Io { err, .. } if err.kind() == std::io::ErrorKind::NotFound => {
                        format!(
                            "waiting for the dataplane: {} does not exist yet",
                            self.o.region.display()
                        )
                    }
                    _ => format!("waiting for the dataplane: {e}"),
                };
                if self.last_wait_msg.as_deref() != Some(msg.as_str()) {
                    self.event(now_ns, "waiting", msg.clone(), None);
                    self.last_wait_msg = Some(msg);
                }
                self.next_attach = t + self.backoff;
                self.backoff = (self.backoff * 2).min(self.o.attach_backoff_max);
            }
        }
    }

    fn detach(&mut self, now_ns: u64, why: &str) {
        if self.port.take().is_some() {
            self.event(now_ns, "detached", format!("{why}: re-attaching"), None);
        }
        self.inflight = None;
        if let Some(d) = &mut self.desired {
            d.sent = false;
        }
        self.next_attach = Instant::now();
    }

    fn drain_telemetry(&mut self, now_ns: u64) {
        let mut peers = Vec::new();
        self.drain_ports(now_ns, &mut peers);
        // With the path manager on, link states come from it, not from the dataplane's own
        // per-peer summary.
        if self.paths.is_none() {
            for p in &peers {
                self.on_peer(now_ns, p);
            }
        }
    }

    /// A path reference in words: `C via B on isp1 -> 198.18.0.9`.
    fn describe_path(&self, r: u32) -> String {
        let cfg = &self.o.config;
        let peer = usize::try_from(r >> 16).unwrap_or(usize::MAX);
        let name = |i: usize| cfg.peers.get(i).map_or("?", |p| p.name.as_str());
        let Some(p) = self.path_table.get(&r) else {
            return format!("{} path {}", name(peer), r & 0xFFFF);
        };
        let sent_to = if p.via == u16::MAX {
            peer
        } else {
            usize::from(p.via)
        };
        let via = if p.via == u16::MAX {
            String::new()
        } else {
            format!(" via {}", name(usize::from(p.via)))
        };
        let uplink = cfg
            .uplinks
            .get(usize::from(p.uplink))
            .map_or("?", |u| u.name.as_str());
        let remote = cfg
            .peers
            .get(sent_to)
            .and_then(|x| x.gateways.get(usize::from(p.remote)))
            .map_or_else(|| "?".to_owned(), ToString::to_string);
        format!("{}{via} on {uplink} -> {remote}", name(peer))
    }

    /// Tells the capacity estimator the links this site's flows leaving toward `peer` cross
    /// on path `r` (`Planner::links_via`).
    fn route_flows(&mut self, peer: usize, r: u32) {
        let cfg = &self.o.config;
        let me = cfg.site.name.as_str();
        let Some(next) = cfg.peers.get(peer).map(|p| p.name.as_str()) else {
            return;
        };
        let via = self
            .path_table
            .get(&r)
            .filter(|p| p.via != u16::MAX)
            .and_then(|p| cfg.peers.get(usize::from(p.via)))
            .map(|p| p.name.as_str());
        let routes: Vec<(usize, Option<Vec<usize>>)> = cfg
            .flows
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                f.route.first().map(String::as_str) == Some(me)
                    && f.route.get(1).map(String::as_str) == Some(next)
            })
            .map(|(fi, _)| (fi, self.planner.links_via(fi, me, next, via)))
            .collect();
        for (fi, links) in routes {
            self.planner.set_flow_links(fi, links.as_deref());
        }
    }

    /// The path manager's side of the loop: timers, probe commands, assignments, link states.
    fn drive_paths(&mut self, now_ns: u64) {
        let Some(d) = &mut self.paths else { return };
        d.tick(now_ns);
        let probes = d.take_probes();
        let marks = d.take_marks();
        let pending = d.pending_assignments();
        let links: Vec<(usize, bool, (usize, usize))> = d
            .take_link_changes()
            .into_iter()
            .map(|(p, f)| (p, f, d.link_why(p)))
            .collect();
        if let Some(port) = &mut self.port {
            for c in &probes {
                match port.send(0, std::slice::from_ref(c)) {
                    Ok(()) => self.summary.probes_sent += 1,
                    // The manager's own timeout covers a probe that never left.
                    Err(_) => self.summary.probes_dropped += 1,
                }
            }
            // Lost marks are re-derived from the manager's states after a re-attach only;
            // the ring has room for them unless the dataplane is stuck.
            if !marks.is_empty() && port.broadcast(&marks).is_err() {
                self.summary.marks_dropped += 1;
            }
            let mut done = Vec::new();
            for (peer, cmds) in &pending {
                if port.broadcast(cmds).is_ok() {
                    done.push(*peer);
                }
            }
            for peer in done {
                if let Some(d) = &mut self.paths {
                    d.assigned(peer);
                }
                let wanted = self.paths.as_ref().and_then(|d| d.wanted_path(peer));
                if let Some(r) = wanted {
                    self.summary.path_moves += 1;
                    self.planner.settle(now_ns);
                    self.route_flows(peer, r);
                    let what = self.describe_path(r);
                    let why = self
                        .paths
                        .as_mut()
                        .and_then(|d| d.take_move_why(peer))
                        .map_or(String::new(), |w| format!(" ({w})"));
                    self.event(now_ns, "path", format!("traffic to {what}{why}"), None);
                }
            }
        }
        for (peer, failed, (down, degraded)) in links {
            let Some(name) = self.o.config.peers.get(peer).map(|p| p.name.clone()) else {
                continue;
            };
            let why = if failed {
                format!(
                    "path manager: every direct path to {name} down or degraded ({down} down, {degraded} degraded)"
                )
            } else {
                format!("path manager: a direct path to {name} works again")
            };
            self.mark_peer_link(now_ns, &name, failed, &why);
        }
    }

    /// The security driver's side of the loop: keys to every worker, handshake messages to
    /// worker 0, on the paths the failover driver chose.
    fn drive_secure(&mut self, now_ns: u64) {
        if !self.secure.enabled() {
            return;
        }
        if let Some(d) = &self.paths {
            for peer in 0..self.o.config.peers.len() {
                self.secure.set_active_path(peer, d.wanted_path(peer));
            }
        }
        let Some(port) = &mut self.port else { return };
        let mut stale = false;
        while let Some(c) = self.secure.poll(now_ns) {
            let r = if crate::secure::driver::is_broadcast(&c) {
                port.broadcast(std::slice::from_ref(&c))
            } else {
                port.send(0, std::slice::from_ref(&c))
            };
            match r {
                Ok(()) => self.summary.secure_sent += 1,
                Err(SendError::Full) => {
                    // Next iteration; keys must not be lost.
                    self.secure.requeue(c);
                    break;
                }
                Err(SendError::Stale) => {
                    stale = true;
                    break;
                }
                Err(_) => self.summary.secure_dropped += 1,
            }
        }
        for e in self.secure.take_events() {
            let name = self
                .o
                .config
                .peers
                .get(usize::try_from(e.peer).unwrap_or(usize::MAX))
                .map_or("?", |p| p.name.as_str());
            self.event(now_ns, "security", format!("{name}: {:?}", e.event), None);
        }
        // A peer's first session (or its first after losing every key): what the flows lost
        // before it, and in the burst of what waited for it, is no capacity evidence.
        if self.secure.newly_sealable(now_ns) > 0 {
            self.planner.settle(now_ns);
        }
        if stale {
            self.detach(now_ns, "control region changed");
        }
    }

    fn drain_ports(
        &mut self,
        now_ns: u64,
        peers: &mut Vec<mongate_dataplane::shm::msg::PeerTelemetry>,
    ) {
        let Some(port) = &mut self.port else { return };
        // Paths the dataplane's own reflex took down (logged below).
        let mut gaps = Vec::new();
        for w in 0..port.workers() {
            for _ in 0..self.o.telemetry_budget {
                let r = port.recv(w);
                if let Some(Ok(t)) = &r {
                    self.secure.on_telemetry(w, t, now_ns);
                }
                match r {
                    None => break,
                    Some(Err(_)) => self.summary.decode_errors += 1,
                    Some(Ok(Telemetry::Flows { count, items })) => {
                        let n = usize::try_from(count)
                            .unwrap_or(usize::MAX)
                            .min(items.len());
                        self.planner.on_flows(w, now_ns, &items[..n]);
                        if let Some(d) = &mut self.paths {
                            d.on_flows(w, &items[..n], now_ns);
                        }
                    }
                    Some(Ok(Telemetry::Paths { count, items })) => {
                        let n = usize::try_from(count)
                            .unwrap_or(usize::MAX)
                            .min(items.len());
                        if let Some(d) = &mut self.paths {
                            // Only paths a probe can be sealed on (security: once their
                            // next gateway has a session, or after a grace).
                            let mut ready = [PathTelemetry::default(); PATHS_PER_MSG];
                            let mut k = 0;
                            for p in &items[..n] {
                                if self.secure.path_sealable(p, now_ns) {
                                    ready[k] = *p;
                                    k += 1;
                                }
                            }
                            d.on_paths(&ready[..k], now_ns);
                            // Only what the driver accepted: a table that garbage cannot grow.
                            for p in items[..n].iter().filter(|p| d.path_id(p.path).is_some()) {
                                self.path_table.insert(p.path, *p);
                            }
                        }
                    }
                    Some(Ok(Telemetry::ProbeResult {
                        id,
                        path,
                        sent,
                        received,
                        rtt_min_ns,
                        ..
                    })) => {
                        if let Some(d) = &mut self.paths {
                            d.on_probe_result(id, path, sent, received, rtt_min_ns, now_ns);
                        }
                    }
                    Some(Ok(Telemetry::PathEvent { path, event, .. })) => {
                        if event == PathEventKind::AckGap {
                            gaps.push(path);
                        }
                        if let Some(d) = &mut self.paths {
                            d.on_path_event(path, event, now_ns);
                        }
                    }
                    Some(Ok(Telemetry::Classes { count, items })) => {
                        let n = usize::try_from(count)
                            .unwrap_or(usize::MAX)
                            .min(items.len());
                        self.planner.on_classes(w, now_ns, &items[..n]);
                    }
                    Some(Ok(Telemetry::Peers { count, items })) => {
                        let n = usize::try_from(count)
                            .unwrap_or(usize::MAX)
                            .min(items.len());
                        peers.extend_from_slice(&items[..n]);
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
        for path in gaps {
            let what = self.describe_path(path);
            self.event(
                now_ns,
                "ack_gap",
                format!("dataplane: no ack on {what}: path down"),
                None,
            );
        }
    }

    /// Path state toward a peer: when none of this site's direct paths to
    /// it is up, the instance's link between the two sites (`ME-PEER` or
    /// `PEER-ME`) is planned as failed; up again when one comes back.
    fn on_peer(&mut self, now_ns: u64, p: &mongate_dataplane::shm::msg::PeerTelemetry) {
        let Some(peer) = self.o.config.peers.get(usize::from(p.peer)) else {
            return;
        };
        if p.direct == 0 {
            return;
        }
        let failed = p.direct_up == 0;
        let why = format!(
            "dataplane: {}/{} direct paths to {} up",
            p.direct_up, p.direct, peer.name
        );
        let name = peer.name.clone();
        self.mark_peer_link(now_ns, &name, failed, &why);
    }

    /// Marks the instance's link between this site and `peer` (`ME-PEER` or `PEER-ME`) failed or
    /// repaired for PFO, with a `link_state` event when that changes its state.
    fn mark_peer_link(&mut self, now_ns: u64, peer: &str, failed: bool, why: &str) {
        let me = self.o.config.site.name.clone();
        for id in [format!("{me}-{peer}"), format!("{peer}-{me}")] {
            if let Some(l) = self.planner.link_index(&id)
                && self.planner.mark_link_failed(l, failed, now_ns)
            {
                self.event(
                    now_ns,
                    "link_state",
                    format!(
                        "link {id}: {} ({why})",
                        if failed { "failed" } else { "repaired" }
                    ),
                    None,
                );
            }
        }
    }

    fn report_counters(&mut self, now_ns: u64) {
        let bad = self.planner.stats().bad_records;
        let due = self
            .last_report
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
        if !due {
            return;
        }
        let mut any = false;
        if self.summary.decode_errors > self.reported_decode {
            self.event(
                now_ns,
                "decode_errors",
                format!(
                    "{} telemetry messages did not decode ({} in total)",
                    self.summary.decode_errors - self.reported_decode,
                    self.summary.decode_errors
                ),
                None,
            );
            self.reported_decode = self.summary.decode_errors;
            any = true;
        }
        if bad > self.reported_bad {
            self.event(
                now_ns,
                "bad_records",
                format!(
                    "{} telemetry records named an unknown flow/class or one not starting here ({bad} in total)",
                    bad - self.reported_bad
                ),
                None,
            );
            self.reported_bad = bad;
            any = true;
        }
        if any {
            self.last_report = Some(Instant::now());
        }
    }

    fn external_events(&mut self, now_ns: u64) {
        let Some(rx) = &self.o.events else { return };
        while let Ok(ControlEvent::LinkFailed { link, failed }) = rx.try_recv() {
            match self.planner.link_index(&link) {
                Some(l) => {
                    self.planner.mark_link_failed(l, failed, now_ns);
                }
                None => self.event(
                    now_ns,
                    "unknown_link",
                    format!("link event for {link:?}, which the instance does not have"),
                    None,
                ),
            }
        }
    }

    /// Handles a reload request: re-reads the site configuration and the
    /// instance, checks them whole (`mongate check`'s checks, then what may
    /// change while running) and either takes the new instance (a re-plan
    /// at once) or refuses whole, keeping everything in force. Writes the
    /// outcome for `mongate reload`.
    fn reload(&mut self, now_ns: u64) {
        let Some(r) = &self.o.reload else { return };
        if !r.requested.swap(false, Ordering::Relaxed) {
            return;
        }
        self.reloads += 1;
        let (applied, message) = match self.check_reload(r) {
            Ok((config, None, what)) => {
                self.config = config;
                (true, what)
            }
            Ok((config, Some(instance), what)) => {
                match self.planner.replace_instance(instance.clone(), &config) {
                    Ok(()) => {
                        // The new planner starts from the planned routes: the flows on a
                        // detour now are told again.
                        for peer in 0..self.o.config.peers.len() {
                            if let Some(r) = self.paths.as_ref().and_then(|d| d.wanted_path(peer)) {
                                self.route_flows(peer, r);
                            }
                        }
                        (r.on_instance)(&instance);
                        self.config = config;
                        (true, what)
                    }
                    Err(e) => (false, format!("{}: {e}", r.instance.display())),
                }
            }
            Err(why) => (false, why),
        };
        let out = mongate_dataplane::app::reload::ReloadOutcome::new(
            "control",
            self.reloads,
            applied,
            message,
        );
        self.event(
            now_ns,
            if applied { "reload" } else { "reload_refused" },
            out.message.replace('\n', "; "),
            None,
        );
        let at = mongate_dataplane::app::reload::outcome_path(&r.name, "control");
        if let Err(e) = out.write(&at) {
            self.event(
                now_ns,
                "reload",
                format!("cannot write {}: {e}", at.display()),
                None,
            );
        }
    }

    /// The reload's new configuration and instance, and a line saying what
    /// changes; or every reason to refuse, one per line.
    /// `None` for the instance: unchanged.
    fn check_reload(&self, r: &ReloadSource) -> Result<(Config, Option<Instance>, String), String> {
        use mongate_dataplane::app::reload::refusal_message;
        let report = crate::check::check_files(std::slice::from_ref(&r.config), Some(&r.instance));
        if !report.problems.is_empty() {
            return Err(report
                .problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"));
        }
        let config = Config::load(&r.config).map_err(|e| e.to_string())?;
        let text = std::fs::read_to_string(&r.instance)
            .map_err(|e| format!("{}: {e}", r.instance.display()))?;
        let instance =
            Instance::from_json(&text).map_err(|e| format!("{}: {e}", r.instance.display()))?;
        mongate_dataplane::config::reload_changes(&self.config, &config, false, 0)
            .map_err(|why| refusal_message(&r.config, &why))?;
        if instance == *self.planner.base() {
            return Ok((config, None, "applied: instance unchanged".to_owned()));
        }
        let what = format!(
            "applied: new instance ({} links, {} classes, {} flows): re-planning now",
            instance.links.len(),
            instance.classes.len(),
            instance.flows.len()
        );
        Ok((config, Some(instance), what))
    }

    fn solved(&mut self, now_ns: u64, sourced: SourcedPlan) {
        let SourcedPlan { table, log } = sourced;
        // A periodic re-plan within `PERIODIC_DRIFT` of the plan in force is not sent: the
        // plan in force stays, and the planner plans on from it.
        let periodic = !log.triggers.is_empty() && log.triggers.iter().all(|t| t == "periodic");
        let kept = self.desired.as_ref().and_then(|d| {
            if d.base == table {
                Some((d.base.clone(), "the plan already sent"))
            } else if periodic && super::planner::plan_within(&d.base, &table, PERIODIC_DRIFT) {
                Some((d.base.clone(), "the plan already sent, within 2 %"))
            } else {
                None
            }
        });
        if let Some((in_force, what)) = kept {
            self.planner.on_plan(now_ns, &in_force);
            self.event(
                now_ns,
                "unchanged",
                format!(
                    "re-plan ({}) gave {what} (objective {:.6})",
                    log.triggers.join(","),
                    log.objective
                ),
                None,
            );
            return;
        }
        self.planner.on_plan(now_ns, &table);
        let scales = self.planner.weight_scales();
        self.desire(now_ns, table, scales, log);
    }

    /// Makes `base` with its weights times `scales` the plan to send.
    fn desire(&mut self, now_ns: u64, base: PlanTable, scales: Vec<f64>, mut log: PlanLog) {
        let mut plan = base.clone();
        for (w, s) in plan.weight.iter_mut().zip(&scales) {
            *w *= s;
        }
        for (f, &i) in log
            .flows
            .iter_mut()
            .zip(&self.planner.site_map().flow_to_cfg)
        {
            f.weight = plan.weight.get(i).copied().unwrap_or(f.weight);
        }
        // Where a plan enters the control's sending: checked once, here.
        if let Err(at) = plan.check(&self.shape) {
            // The instance was matched against the config: this is a bug, not bad input.
            let e = PlanError::in_table(at, &self.o.config);
            self.event(now_ns, "send_error", format!("plan rejected: {e}"), None);
            return;
        }
        let entries = plan_entries(&plan);
        self.next_seq += 1;
        self.desired = Some(Desired {
            seq: self.next_seq,
            base,
            scales,
            entries,
            log,
            sent: false,
        });
        self.retry_at = None;
    }

    /// Sends the plan in force again with new weight factors when the links' capacity
    /// estimates moved them (`Planner::weight_scales`; never while re-planning on the
    /// estimates): the targets stay, the weights keep the loss budget on links that carry
    /// less than the plan puts on them.
    fn reweight(&mut self, now_ns: u64) {
        let Some(d) = &self.desired else { return };
        let scales = self.planner.weight_scales();
        if !super::planner::scales_moved(&d.scales, &scales) {
            return;
        }
        let map = self.planner.site_map();
        let moved: Vec<String> = d
            .log
            .flows
            .iter()
            .zip(&map.flow_to_cfg)
            .filter_map(|(f, &i)| {
                let (a, b) = (d.scales.get(i).copied()?, scales.get(i).copied()?);
                (a != b).then(|| format!("{} x{a:.2} -> x{b:.2}", f.id))
            })
            .collect();
        self.event(
            now_ns,
            "reweight",
            format!(
                "weights kept to the loss budget on links carrying less than planned: {}",
                moved.join(", ")
            ),
            None,
        );
        let (base, mut log) = (d.base.clone(), d.log.clone());
        log.triggers = vec!["reweight".to_owned()];
        self.desire(now_ns, base, scales, log);
    }

    fn abandon(&mut self, now_ns: u64, kind: &str, msg: String, epoch: u64) {
        self.event(now_ns, kind, msg, Some(epoch));
        self.inflight = None;
        self.retry_at = Some(Instant::now() + self.o.retry_delay);
    }

    /// Advances the send state machine by one step.
    fn send(&mut self, now_ns: u64) {
        let Some(port) = &mut self.port else { return };
        if self.inflight.is_none() {
            let Some(d) = &self.desired else { return };
            if d.sent || self.retry_at.is_some_and(|t| Instant::now() < t) {
                return;
            }
            let epoch = port.next_epoch();
            self.inflight = Some(Inflight {
                seq: d.seq,
                epoch,
                since: Instant::now(),
                phase: Phase::Broadcast(plan_commands(epoch, &d.entries)),
            });
        }
        let Some(f) = &mut self.inflight else { return };
        let (epoch, seq) = (f.epoch, f.seq);
        let timed_out = f.since.elapsed() >= self.o.staging_timeout;
        match &f.phase {
            Phase::Broadcast(cmds) => match port.broadcast(cmds) {
                Ok(()) => f.phase = Phase::Staging,
                Err(SendError::Stale) => self.detach(now_ns, "control region changed"),
                Err(SendError::Full) if !timed_out => {}
                Err(e) => {
                    self.abandon(
                        now_ns,
                        "send_error",
                        format!("sending the plan: {e}"),
                        epoch,
                    );
                }
            },
            Phase::Staging => {
                if port.all_staged(epoch) {
                    match port.activate(epoch) {
                        Ok(()) => {
                            self.inflight = None;
                            self.summary.plans_sent += 1;
                            if let Some(d) = &mut self.desired
                                && d.seq == seq
                            {
                                d.sent = true;
                                let mut log = d.log.clone();
                                log.epoch = epoch;
                                log.ts_ms = ms(now_ns);
                                self.log(&LogRecord::Plan(log));
                            }
                        }
                        Err(SendError::Stale) => self.detach(now_ns, "control region changed"),
                        Err(_) => {}
                    }
                } else if port.check().is_err() {
                    self.detach(now_ns, "control region changed");
                } else if timed_out {
                    self.summary.staging_timeouts += 1;
                    let states: Vec<String> = (0..port.workers())
                        .filter_map(|i| port.worker_state(i))
                        .enumerate()
                        .map(|(i, s)| {
                            format!(
                                "worker {i}: staged {} running {} refused {}",
                                s.staged_epoch, s.running_epoch, s.refused
                            )
                        })
                        .collect();
                    self.abandon(
                        now_ns,
                        "staging_timeout",
                        format!("not every worker staged the plan: {}", states.join("; ")),
                        epoch,
                    );
                }
            }
        }
    }
}

/// Runs the control loop until `stop` is set. Errors only on bad inputs (instance vs
/// configuration mismatch) or when the solver thread cannot start; everything at run time
/// (dataplane absent, restarted, garbage telemetry) is logged and handled.
pub fn run(opts: &RunOptions, stop: &AtomicBool) -> anyhow::Result<RunSummary> {
    let planner = Planner::new(opts.instance.clone(), &opts.config, opts.planner.clone())?;
    let source = PfoSource::spawn(opts.solve.clone(), planner.site_map().clone())?;
    let paths = if opts.paths {
        Some(
            FailoverDriver::new(
                &opts.config,
                site_path_config(&opts.config),
                opts.paths_seed,
                clock::now_ns(),
            )
            .context("path manager configuration")?,
        )
    } else {
        None
    };
    // Refuses to start with an unsafe or unreadable private key.
    let secure = SecureDriver::from_config(&opts.config, clock::now_ns()).context("security")?;
    let mut lp = Loop {
        o: opts,
        secure,
        planner,
        source: Box::new(source),
        shape: PlanShape::from_config(&opts.config),
        paths,
        path_table: std::collections::BTreeMap::new(),
        port: None,
        desired: None,
        inflight: None,
        retry_at: None,
        next_seq: 0,
        summary: RunSummary::default(),
        last_wait_msg: None,
        next_attach: Instant::now(),
        backoff: Duration::from_millis(20),
        reported_decode: 0,
        reported_bad: 0,
        last_report: None,
        config: opts.config.clone(),
        reloads: 0,
    };
    if let Some(r) = &opts.reload {
        // Generation 0: where `mongate reload` finds this process.
        let at = mongate_dataplane::app::reload::outcome_path(&r.name, "control");
        let ready = mongate_dataplane::app::reload::ReloadOutcome::new(
            "control",
            0,
            true,
            "running; no reload yet".to_owned(),
        );
        if let Err(e) = ready.write(&at) {
            lp.event(
                clock::now_ns(),
                "reload",
                format!("cannot write {}: {e}", at.display()),
                None,
            );
        }
    }
    while !stop.load(Ordering::Relaxed) {
        let now_ns = clock::now_ns();
        if lp.port.is_none() {
            lp.try_attach(now_ns);
        }
        if let Some(p) = &lp.port {
            p.heartbeat(now_ns);
            if p.check().is_err() {
                lp.detach(
                    now_ns,
                    "control region changed (dataplane restarted or repaired)",
                );
            }
        }
        lp.drain_telemetry(now_ns);
        lp.drive_paths(now_ns);
        lp.drive_secure(now_ns);
        lp.external_events(now_ns);
        lp.reload(now_ns);
        match lp.source.poll() {
            Ok(Some(p)) => lp.solved(now_ns, p),
            Ok(None) => {}
            Err(e) => {
                if lp.planner.solving() {
                    lp.planner.solve_abandoned();
                }
                return Err(e);
            }
        }
        if let Some(req) = lp.planner.tick(now_ns) {
            for t in &req.triggers {
                lp.log(&LogRecord::Event(EventLog {
                    ts_ms: ms(now_ns),
                    event: t.kind().to_owned(),
                    message: t.to_string(),
                    epoch: None,
                    trigger: Some(t.clone()),
                }));
            }
            if !lp.source.request(req) {
                lp.planner.solve_abandoned();
                lp.event(now_ns, "solver", "solver busy or gone: solve dropped", None);
            }
        }
        lp.reweight(now_ns);
        lp.send(now_ns);
        lp.report_counters(now_ns);
        std::thread::sleep(opts.poll);
    }
    let now_ns = clock::now_ns();
    lp.summary.bad_records = lp.planner.stats().bad_records;
    lp.summary.solves = lp.planner.stats().solves;
    lp.event(
        now_ns,
        "stopped",
        format!(
            "{} plans activated, {} attaches, {} solves",
            lp.summary.plans_sent, lp.summary.attaches, lp.summary.solves
        ),
        None,
    );
    // Dropping the source ends its thread (waited for unless a solve is outstanding).
    Ok(lp.summary)
}
