//! The demo's phases, in the order [`run`] calls them: check the options,
//! build the sites (topology, PFO instance, plan, site files), start the
//! gateways, start the control processes, offer traffic, watch second by
//! second (control kill and restart, link cut, the live table), summarize.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mongate_dataplane::overlay::FlowCounters;
use mongate_testbed::{FlowSpec, NsChild, OverlaySpec, PlanSpec, SitesTopology};

use super::traffic::{Crowd, FRAME, Receiver, Sender};
use super::world::World;
use super::{
    ClassSummary, FlowSummary, Options, PlanSource, Site, Summary, UtilitySummary, Verdict, bin,
    instance, mbps, overhead, path_events, plan_records, spawn_logged, totals, wait_for,
};

/// Runs the demo.
pub fn run(o: &Options) -> anyhow::Result<Summary> {
    check(o)?;
    let mut demo = Demo::build(o)?;
    demo.start_gateways(o)?;
    if o.plan == PlanSource::Control {
        demo.start_controls()?;
    }
    let traffic = demo.start_traffic(o)?;
    let watched = demo.watch(o);
    let (udp_sent, udp_received) = traffic.stop()?;
    let mut s = demo.summarize(o, watched?, udp_sent, udp_received)?;
    if let Some(p) = &o.plots {
        // The run's figures are in hand: a plot that cannot be written is said, not fatal.
        match super::plots::write(&s, &p.dir, &p.prefix) {
            Ok(files) => s.plots = files,
            Err(e) => eprintln!("mongate demo: no plots: {e:#}"),
        }
    }
    Ok(s)
}

/// Root, a topology can be built, and the options make sense.
fn check(o: &Options) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!(
            "the demo builds network namespaces and attaches XDP programs: run it as root (sudo)"
        );
    }
    if let Some(r) = mongate_testbed::unavailable_reason() {
        anyhow::bail!("cannot build the emulated topology: {r}");
    }
    if o.seconds < 5 || o.seconds > 3600 {
        anyhow::bail!("--seconds must be in 5..=3600");
    }
    if let Some((site, cut, rejoin)) = &o.partition
        && (*cut == 0 || cut >= rejoin || *rejoin >= o.seconds)
    {
        anyhow::bail!(
            "partition of {site}: want 0 < cut ({cut} s) < rejoin ({rejoin} s) < the end ({} s)",
            o.seconds
        );
    }
    if o.topology.is_some() && (o.partition.is_some() || o.flash_crowd.is_some()) {
        anyhow::bail!("the partition and flash-crowd scenarios run on the triangle only");
    }
    if let Some((_, t)) = &o.fail_link
        && *t >= o.seconds
    {
        anyhow::bail!(
            "--fail-link: the cut at {t} s is after the end ({} s)",
            o.seconds
        );
    }
    if let Some(p) = &o.plots {
        check_plots_dir(&p.dir)?;
    }
    Ok(())
}

/// The plots' directory exists (created if missing) and takes files: said
/// before the run rather than after it.
fn check_plots_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    let bad = |e: std::io::Error| {
        anyhow::anyhow!("--plots {}: cannot write plots there: {e}", dir.display())
    };
    std::fs::create_dir_all(dir).map_err(bad)?;
    let probe = dir.join(format!(".mongate-demo-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(bad)?;
    std::fs::remove_file(&probe).map_err(bad)?;
    Ok(())
}

/// The link to cut: (label as given, link name, its two ends, second).
type FailLink = (String, String, String, String, u32);

/// Everything the phases share.
struct Demo {
    ctl_bin: PathBuf,
    dp_bin: PathBuf,
    /// Logs and files.
    dir: PathBuf,
    topo: SitesTopology,
    fail: Option<FailLink>,
    /// `--scenario partition`: the site's links, cut and rejoin seconds.
    partition: Option<(Vec<String>, u32, u32)>,
    /// Inner-frame share of the wire bytes.
    eff: f64,
    inst_path: PathBuf,
    /// PFO's figures for the instance (the demo solves it itself, whatever
    /// the plan source: the controls solve the same instance).
    pfo_json: Option<serde_json::Value>,
    /// The instance and PFO's optimum for it (utility, admitted sessions).
    pfo: (
        mongate_control::pfo::Instance,
        mongate_control::pfo::Solution,
    ),
    /// PFO's optimum with the wire's true capacities.
    true_optimum: f64,
    /// `--scenario flash-crowd`: PFO's optimum for the demand before and after the crowd.
    crowd_optimum: Option<(f64, f64)>,
    spec: OverlaySpec,
    /// Distinguishes this run's gateway names.
    tag: u32,
    /// The controls run the capacity estimator.
    estimator: bool,
    sites: Vec<Site>,
    /// The sites, classes, instance and traffic.
    world: World,
}

/// What [`Demo::watch`] saw.
struct Watched {
    /// Per second: (t, per flow sample).
    series: Vec<(f64, Vec<Sample>)>,
    /// Control killed at / restarted at (s).
    outage: Option<(u32, u32)>,
    failover_ms: Option<f64>,
    failover_left_ms: Option<f64>,
    /// Start of the traffic, CLOCK_MONOTONIC ns.
    t0_ns: u64,
}

/// One flow over one second of the live table.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    /// Planned aggregate rate, Mbit/s.
    target: f64,
    /// Delivered at the destination gateway, Mbit/s.
    achieved: f64,
    /// The MONtra controller's rate, Mbit/s.
    controller: f64,
    /// Packets the acks reported lost and acknowledged during the second.
    lost: u64,
    acked: u64,
}

/// The hosts' senders and receivers.
struct Traffic {
    stop: Arc<AtomicBool>,
    tx: Vec<Sender>,
    rx: Vec<Receiver>,
}

impl Traffic {
    /// Stops and joins them: (datagrams sent, datagrams received).
    fn stop(self) -> anyhow::Result<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut sent = 0;
        for t in self.tx {
            sent += t.join()?;
        }
        let received = self
            .rx
            .iter()
            .map(|r| r.received.load(Ordering::Relaxed))
            .sum();
        for r in self.rx {
            r.join()?;
        }
        Ok((sent, received))
    }
}

impl Demo {
    /// Builds the triangle, the PFO instance, the plan (source `file`) and
    /// the site files.
    fn build(o: &Options) -> anyhow::Result<Self> {
        let dp_bin = bin("mongate-dataplane")?;
        let ctl_bin = bin("mongate-control")?;
        // One directory per run of this process (`--scenario imprecise` runs twice; with
        // MONGATE_DEMO_KEEP the first run's keys would be in the way).
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = match n {
            0 => format!("mongate-demo-{}", std::process::id()),
            n => format!("mongate-demo-{}-{}", std::process::id(), n + 1),
        };
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir)?;
        let world = match &o.topology {
            Some(t) => World::zoo(&t.graph, t.link_mbps, t.classes)?,
            None => World::triangle()?,
        };
        eprintln!(
            "building {} in network namespaces (logs and files: {})",
            world.description,
            dir.display()
        );
        let mut sites_b = world.sites.clone().prefix(super::NS_PREFIX);
        sites_b.disable_offloads = true;
        sites_b.queues = o.workers.max(1);
        sites_b.queue_latency = std::time::Duration::from_millis(u64::from(o.queue_ms.max(1)));
        let nominal: BTreeMap<String, f64> = sites_b
            .links
            .iter()
            .map(|l| (l.name.clone(), l.rate_mbps))
            .collect();
        for (name, mbps) in &o.wire_mbps {
            let l = sites_b
                .links
                .iter_mut()
                .find(|l| l.name == *name)
                .ok_or_else(|| anyhow::anyhow!("no link {name:?} in the topology"))?;
            l.rate_mbps = *mbps;
        }
        let topo = sites_b.build()?;
        let fail = match &o.fail_link {
            Some((l, t)) => Some(resolve_link(&topo, l, *t)?),
            None => None,
        };
        let partition = match &o.partition {
            Some((site, cut, rejoin)) => {
                let mut names = Vec::new();
                for other in world.site_names().iter().filter(|x| *x != site) {
                    names.extend(
                        topo.links_between(site, other)
                            .iter()
                            .map(|h| h.spec.name.clone()),
                    );
                }
                if names.is_empty() {
                    anyhow::bail!("partition: site {site:?} has no links");
                }
                Some((names, *cut, *rejoin))
            }
            None => None,
        };
        // Encrypted: the security option and the AEAD tag take their
        // share of the wire.
        let secure = o.secure && o.plan == PlanSource::Control;
        let hl = overhead(secure)?;
        let eff = FRAME as f64 / (FRAME + hl) as f64;
        // PFO is told the nominal rates; the wire may differ (`wire_mbps`).
        let mut inst = instance(&world.instance, &topo, eff, |name, rate| {
            nominal.get(name).copied().unwrap_or(rate)
        })?;
        // The network as it is once the run has settled: the wire's rates and, with a link
        // cut (`--fail-link`, down to the end of the run), without that link. The summary's
        // utility is judged against PFO's optimum for it.
        let cut = fail.as_ref().map(|f| f.1.clone());
        let mut true_inst = instance(&world.instance, &topo, eff, |name, rate| {
            if cut.as_deref() == Some(name) {
                0.0
            } else {
                rate
            }
        })?;
        let mut crowd_optimum = None;
        if let Some(fc) = &o.flash_crowd {
            // The crowd's class may have up to `after` sessions; PFO's optimum for the demand
            // before (A's host's sessions then) and after.
            set_sessions(&mut inst, CROWD_CLASS, fc.after)?;
            set_sessions(&mut true_inst, CROWD_CLASS, fc.after)?;
            let mut before = true_inst.clone();
            set_sessions(&mut before, CROWD_CLASS, fc.before)?;
            crowd_optimum = Some((
                solve_file_plan(&before)?.2.1.objective,
                solve_file_plan(&true_inst)?.2.1.objective,
            ));
        }
        let true_optimum = solve_file_plan(&true_inst)?.2.1.objective;
        let inst_path = dir.join("overlay.json");
        std::fs::write(&inst_path, serde_json::to_string_pretty(&inst)?)?;
        let (plan, pfo_json, pfo) = solve_file_plan(&inst)?;
        let file_plan = (o.plan == PlanSource::File).then_some(plan);
        let pfo_json = Some(pfo_json);
        let mut spec = world.spec.clone();
        spec.plan = file_plan;
        let names = world.site_names();
        if secure {
            // The control processes run the handshakes: a key pair per site
            // (the private key 0600 in the demo's directory).
            spec.keys = Some(site_keys(&dir, &names)?);
        }
        let tag = std::process::id();
        let mut sites = Vec::new();
        for s in &names {
            let config = dir.join(format!("{s}.toml"));
            std::fs::write(&config, topo.site_config(s, &spec)?)?;
            sites.push(Site {
                name: s.into(),
                instance_name: format!("demo{tag}-{s}"),
                config,
                gateway: None,
                control: None,
            });
        }
        Ok(Self {
            ctl_bin,
            dp_bin,
            dir,
            topo,
            fail,
            partition,
            eff,
            inst_path,
            pfo_json,
            pfo,
            true_optimum,
            crowd_optimum,
            spec,
            tag,
            estimator: o.estimator,
            sites,
            world,
        })
    }

    /// The gateway instance name of `site`.
    fn inst_of(&self, site: &str) -> String {
        format!("demo{}-{site}", self.tag)
    }

    /// Starts a `mongate-dataplane run` per site and waits for each to
    /// publish its flow counters.
    fn start_gateways(&mut self, o: &Options) -> anyhow::Result<()> {
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
        for s in &mut self.sites {
            let mut argv = vec![
                self.dp_bin.display().to_string(),
                "run".into(),
                "--config".into(),
                s.config.display().to_string(),
                "--name".into(),
                s.instance_name.clone(),
                "--xdp-mode".into(),
                "native".into(),
                "--idle-sleep-us".into(),
                self.world.idle_sleep_us.to_string(),
                "--pacing-lag-sleeps".into(),
                self.world.pacing_lag_sleeps.to_string(),
                "--spin".into(),
                "200".into(),
                "--report-every-ms".into(),
                "5".into(),
            ];
            if o.workers > 1 {
                // Worker w on core ncpu-1-w (cycled): worker 0 where a
                // one-worker gateway runs.
                let cores: Vec<String> = (0..usize::from(o.workers))
                    .map(|w| ((ncpu - 1 + ncpu * 16 - w) % ncpu).to_string())
                    .collect();
                argv.extend([
                    "--workers".into(),
                    o.workers.to_string(),
                    "--cores".into(),
                    cores.join(","),
                ]);
            } else if ncpu > 1 {
                argv.extend(["--core".into(), (ncpu - 1).to_string()]);
            }
            if o.plan == PlanSource::File {
                argv.push("--no-control".into());
            }
            let log = self.dir.join(format!("gateway-{}.log", s.name));
            s.gateway = Some(spawn_logged(&self.topo, &s.name, &argv, &log)?);
        }
        for s in &self.sites {
            let name = s.instance_name.clone();
            let g = s.gateway.as_ref();
            wait_for(
                &format!("gateway {} (see its log)", s.name),
                Duration::from_secs(20),
                || {
                    totals(&name).is_some()
                        || g.is_none_or(|g| g.try_wait().ok().flatten().is_some())
                },
            )?;
            if totals(&name).is_none() {
                anyhow::bail!(
                    "gateway {} exited: {}",
                    s.name,
                    std::fs::read_to_string(self.dir.join(format!("gateway-{}.log", s.name)))
                        .unwrap_or_default()
                );
            }
        }
        eprintln!(
            "gateways up: {} (mongate-dataplane run, AF_XDP, native XDP)",
            self.world.site_names().join(", ")
        );
        Ok(())
    }

    /// Starts the control process of `site`.
    fn start_control(&self, s: &Site) -> anyhow::Result<NsChild> {
        let argv = vec![
            self.ctl_bin.display().to_string(),
            "run".into(),
            "--config".into(),
            s.config.display().to_string(),
            "--instance".into(),
            self.inst_path.display().to_string(),
            "--name".into(),
            s.instance_name.clone(),
            "--json-log".into(),
        ];
        let mut argv = argv;
        if !self.estimator {
            argv.push("--no-capacity-estimator".into());
        }
        let log = self.dir.join(format!(
            "control-{}-{}.log",
            s.name,
            Instant::now().elapsed().as_nanos()
        ));
        spawn_logged(&self.topo, &s.name, &argv, &log)
    }

    /// Starts a `mongate-control run` per site and waits until every origin
    /// site runs a plan with targets.
    fn start_controls(&mut self) -> anyhow::Result<()> {
        for i in 0..self.sites.len() {
            let c = self.start_control(&self.sites[i])?;
            self.sites[i].control = Some(c);
        }
        for s in &self.sites {
            let name = s.instance_name.clone();
            wait_for(
                &format!("the plan of site {} from mongate-control", s.name),
                Duration::from_secs(30),
                || totals(&name).is_some_and(|t| t.values().any(|v| v.epoch > 0)),
            )?;
        }
        eprintln!("plans from mongate-control (PFO) in force at every site");
        Ok(())
    }

    /// SIGKILLs every control process (no clean shutdown: the dataplanes
    /// must keep their plans on their own).
    fn kill_controls(&mut self) {
        for s in &mut self.sites {
            if let Some(c) = s.control.take() {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(libc::pid_t::try_from(c.pid()).unwrap_or(0), libc::SIGKILL) };
                let _ = c.stop(Duration::from_millis(100));
            }
        }
    }

    /// Offered load: 1.6x each class's planned rate spread over its demand
    /// plus 2 sessions (the triangle: 6 sessions, 4 admitted), at least 100
    /// packets/s; from each class's source host to its destination host for
    /// the run's seconds (plus 5 s of slack).
    fn start_traffic(&self, o: &Options) -> anyhow::Result<Traffic> {
        let stop = Arc::new(AtomicBool::new(false));
        let host = |site: &str| -> anyhow::Result<std::net::Ipv4Addr> {
            self.topo
                .site(site)?
                .host_if()
                .v4
                .map(|v| v.addr)
                .ok_or_else(|| anyhow::anyhow!("the host of {site} has no IPv4"))
        };
        let mut rx = Vec::new();
        for t in &self.world.traffic {
            rx.push(Receiver::start(
                &self.topo.site(&t.destination)?.lan_ns,
                SocketAddr::from((host(&t.destination)?, t.port)),
                stop.clone(),
            )?);
        }
        let class_target_pps = |site: &str, class: &str| -> f64 {
            let t = totals(&self.inst_of(site)).unwrap_or_default();
            self.spec
                .flows
                .iter()
                .filter(|f| f.class == class)
                .filter_map(|f| t.get(&f.id))
                .map(|v| v.target_pps)
                .sum()
        };
        let demand = |class: &str| -> u32 {
            self.pfo
                .0
                .classes
                .iter()
                .find(|c| c.id == class)
                .map_or(4, |c| c.sessions.max(1))
        };
        let limit = Duration::from_secs(u64::from(o.seconds) + 5);
        let mut tx = Vec::new();
        let mut lines = Vec::new();
        for t in &self.world.traffic {
            let n = demand(&t.class);
            let mut sessions = u16::try_from(n.saturating_add(2)).unwrap_or(u16::MAX);
            let mut pps = (1.6 * class_target_pps(&t.source, &t.class) * f64::from(sessions)
                / f64::from(n))
            .max(100.0);
            let mut crowd = None;
            if self.partition.is_some() && t.class == "B->C" {
                // B's host offers what B-C could carry if B had it alone (the
                // partition's re-plan gives it that), whatever the first plan.
                let bc: f64 = self
                    .topo
                    .links_between("B", "C")
                    .iter()
                    .map(|h| h.spec.rate_mbps)
                    .sum();
                pps = pps.max(1.6 * bc * 1e6 / 8.0 / FRAME as f64 * 6.0 / 4.0);
            }
            // `--scenario flash-crowd`: A's host keeps `before` sessions open, then `after`,
            // each offering 1.6x the class's most useful rate per session.
            if let Some(fc) = &o.flash_crowd
                && t.class == CROWD_CLASS
            {
                let per = 1.6 * CROWD_SESSION_MBPS * 1e6 / 8.0 / FRAME as f64;
                crowd = Some(Crowd {
                    at: Duration::from_secs(u64::from(fc.at_s)),
                    sessions: fc.after,
                    pps: per * f64::from(fc.after),
                });
                sessions = fc.before;
                pps = per * f64::from(fc.before);
            }
            tx.push(Sender::start(
                &self.topo.site(&t.source)?.lan_ns,
                SocketAddr::from((host(&t.destination)?, t.port)),
                sessions,
                pps,
                crowd,
                limit,
                stop.clone(),
            )?);
            lines.push(format!(
                "host {} -> host {} {:.1} Mbit/s offered ({sessions} UDP sessions)",
                t.source,
                t.destination,
                mbps(pps)
            ));
            if let Some(c) = crowd {
                lines.push(format!(
                    "at t={}s host {} opens {} sessions, {:.1} Mbit/s offered",
                    c.at.as_secs(),
                    t.source,
                    c.sessions,
                    mbps(c.pps)
                ));
            }
        }
        for l in lines {
            eprintln!("traffic: {l}");
        }
        Ok(Traffic { stop, tx, rx })
    }

    /// Cuts the link of `--fail-link` and waits (at most 3 s) for the first
    /// packet of a flow that crossed it to be delivered by another path.
    /// Returns (ms from the cut to that packet's delivery, ms from the cut
    /// to when it left its source), both on CLOCK_MONOTONIC: the second is
    /// the gateways' detection and switch, the difference the new path's
    /// transit (its links' delay and queues).
    fn cut_link(&self, fail: &FailLink, sec: u32) -> anyhow::Result<Option<(f64, f64)>> {
        let (label, name, la, lb, _) = fail;
        self.topo.set_link(name, false)?;
        // Stamped once the link is down: a packet that left after this
        // cannot have crossed it (stamped before, packets sent while `ip`
        // was taking the link down crossed it, and one that ended a pause of
        // the flow 3 ms "after the cut" read as the failover).
        let cut = mongate_dataplane::sys::clock::now_ns();
        eprintln!("---- link {label} ({name}) cut at t={sec}s ----");
        // Flows whose route crosses the link, by destination gateway.
        let crossing: Vec<(String, String)> = self
            .spec
            .flows
            .iter()
            .filter(|f| {
                f.route
                    .windows(2)
                    .any(|w| (w[0] == *la && w[1] == *lb) || (w[0] == *lb && w[1] == *la))
            })
            .map(|f| (f.id.clone(), self.inst_of(&dest(f))))
            .collect();
        let mut failover = None;
        let w0 = Instant::now();
        while failover.is_none() && w0.elapsed() < Duration::from_secs(3) {
            for (id, inst) in &crossing {
                if let Some(v) = totals(inst).and_then(|t| t.get(id).copied())
                    && v.last_rx_sent_ns > cut
                {
                    // When delivery resumed after the outage and when that
                    // packet left its source, to the packet (the receiver's
                    // gap of 20 ms or more that ended after the cut);
                    // without one, the counters' update and the newest
                    // delivered packet's send time (at most a report period
                    // late). Nanoseconds to ms.
                    let (at, left) = if v.rx_resumed_sent_ns > cut {
                        (v.rx_resumed_ns, v.rx_resumed_sent_ns)
                    } else {
                        (v.updated_ns, v.last_rx_sent_ns)
                    };
                    let ms = |t: u64| t.saturating_sub(cut) as f64 / 1e6;
                    failover = Some((ms(at), ms(left)));
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        match failover {
            Some((ms, left)) => eprintln!(
                "---- traffic of the cut link delivered by another path after {ms:.1} ms \
                 (it left its source {left:.1} ms after the cut) ----"
            ),
            None => {
                eprintln!(
                    "---- no traffic of the cut link delivered by another path within 3 s ----"
                )
            }
        }
        Ok(failover)
    }

    /// One row of the live table per flow: target, MONtra rate, delivered
    /// rate and loss over the last second (from the flow counters, at their
    /// own update times); returns the samples.
    fn sample(
        &self,
        sec: u32,
        now: f64,
        prev: &mut BTreeMap<String, (f64, FlowCounters, FlowCounters)>,
    ) -> Vec<Sample> {
        let mut row = Vec::new();
        for f in &self.spec.flows {
            let (Some(to), Some(td)) = (
                totals(&self.inst_of(&origin(f))),
                totals(&self.inst_of(&dest(f))),
            ) else {
                continue;
            };
            let (Some(vo), Some(vd)) = (to.get(&f.id).copied(), td.get(&f.id).copied()) else {
                continue;
            };
            let (_, po, pd) = prev.get(&f.id).copied().unwrap_or((
                0.0,
                FlowCounters::default(),
                FlowCounters::default(),
            ));
            // Rates over the dataplane's own update timestamps: the file is
            // refreshed every 100 ms, our wake-ups are not aligned to it.
            let dt = vd.updated_ns.saturating_sub(pd.updated_ns) as f64 / 1e9;
            let achieved = if pd.updated_ns == 0 || dt <= 0.0 {
                0.0
            } else {
                (vd.rx_bytes.saturating_sub(pd.rx_bytes)) as f64 * 8.0 / dt / 1e6
            };
            let lost = vo.lost.saturating_sub(po.lost);
            let acked = vo.acked.saturating_sub(po.acked);
            let loss = if lost + acked > 0 {
                lost as f64 / (lost + acked) as f64
            } else {
                0.0
            };
            let target = mbps(vo.target_pps);
            let controller = mbps(vo.rate_pps);
            eprintln!(
                "{:>4}  {:<14} {:>10.2} {:>10.2} {:>10.2} {:>8.2}",
                sec,
                f.id,
                target,
                controller,
                achieved,
                loss * 100.0
            );
            prev.insert(f.id.clone(), (now, vo, vd));
            row.push(Sample {
                target,
                achieved,
                controller,
                lost,
                acked,
            });
        }
        row
    }

    /// Watches the run second by second: kills and restarts the control
    /// processes, cuts the link, prints the live table.
    fn watch(&mut self, o: &Options) -> anyhow::Result<Watched> {
        eprintln!(
            "per second, rates in Mbit/s of inner frames: target = PFO's plan for the flow, \
             MONtra = its controller's sending rate, delivered = received at the destination \
             gateway, loss = packets the acks reported lost"
        );
        eprintln!(
            "{:>4}  {:<14} {:>10} {:>10} {:>10} {:>8}",
            "t(s)", "flow", "target", "MONtra", "delivered", "loss %"
        );
        let t0 = Instant::now();
        let t0_ns = mongate_dataplane::sys::clock::now_ns();
        let mut prev = BTreeMap::new();
        let mut w = Watched {
            series: Vec::new(),
            outage: None,
            failover_ms: None,
            failover_left_ms: None,
            t0_ns,
        };
        let mut killed = false;
        for sec in 1..=o.seconds {
            let deadline = t0 + Duration::from_secs(u64::from(sec));
            if let Some(d) = deadline.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
            if let Some(k) = o.kill_control_at {
                if sec == k && !killed && o.plan == PlanSource::Control {
                    self.kill_controls();
                    killed = true;
                    eprintln!(
                        "---- control processes killed (SIGKILL) at t={sec}s: the gateways keep the last plan ----"
                    );
                }
                if sec == k + o.restart_after && killed {
                    for i in 0..self.sites.len() {
                        let c = self.start_control(&self.sites[i])?;
                        self.sites[i].control = Some(c);
                    }
                    w.outage = Some((k, sec));
                    eprintln!(
                        "---- control processes restarted at t={sec}s: they re-attach and resynchronise ----"
                    );
                }
            }
            if let Some(fail) = &self.fail
                && sec == fail.4
            {
                let f = self.cut_link(fail, sec)?;
                w.failover_ms = f.map(|f| f.0);
                w.failover_left_ms = f.map(|f| f.1);
            }
            if let Some((links, cut, rejoin)) = &self.partition
                && (sec == *cut || sec == *rejoin)
            {
                let up = sec == *rejoin;
                for l in links {
                    self.topo.set_link(l, up)?;
                }
                eprintln!(
                    "---- links {} {} at t={sec}s ----",
                    links.join(", "),
                    if up {
                        "back up (rejoin)"
                    } else {
                        "cut (partition)"
                    }
                );
            }
            let now = t0.elapsed().as_secs_f64();
            let row = self.sample(sec, now, &mut prev);
            w.series.push((now, row));
        }
        Ok(w)
    }

    /// Stops the processes, tears the topology down and summarizes: the
    /// convergence time, the measurement window, per flow and class the
    /// target, controller, delivered rate and loss, the mission utility
    /// against PFO's optimum, and the verdict.
    fn summarize(
        mut self,
        o: &Options,
        w: Watched,
        udp_sent: u64,
        udp_received: u64,
    ) -> anyhow::Result<Summary> {
        let series = &w.series;
        let nflows = self.spec.flows.len();
        // Delivered rate of flow k averaged over the 3 s ending at second i.
        let avg3 = |i: usize, k: usize| {
            let lo = i.saturating_sub(2);
            let v: Vec<f64> = series[lo..=i]
                .iter()
                .filter_map(|(_, r)| r.get(k).map(|s| s.achieved))
                .collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        };
        let within = |i: usize| {
            (0..nflows).all(|k| {
                let t = series[i].1.get(k).map_or(0.0, |s| s.target);
                t <= 0.0 || ((avg3(i, k) - t) / t).abs() <= CONVERGED
            })
        };
        // Convergence: the first second from which every planned flow's 3 s
        // average stays within 5 % to the end. With a link cut: over the
        // seconds after the cut (re-convergence to the plan around it).
        let first = self
            .fail
            .as_ref()
            .map(|f| f.4)
            .or(self.partition.as_ref().map(|p| p.2))
            .map_or(1, |t| usize::try_from(t).unwrap_or(1));
        let mut conv: Option<usize> = None;
        for i in (first.min(series.len())..series.len()).rev() {
            if within(i) {
                conv = Some(i);
            } else {
                break;
            }
        }
        let convergence_s = conv.map(|i| series[i].0);
        // Window: after convergence (or the second half), at least 3 s when
        // the run has them.
        let last = series.len().saturating_sub(1);
        // `--scenario imprecise`: a window fixed in advance (the samples after its second).
        let fixed = o.window_from_s.map(|s| {
            series
                .iter()
                .position(|(t, _)| *t > f64::from(s) + 0.5)
                .unwrap_or(last)
        });
        let from = fixed
            .or(conv)
            .unwrap_or(first.max(series.len() / 2))
            .max(1)
            .min(last.saturating_sub(2).max(1))
            .min(last);
        let window: Vec<_> = series[from..].to_vec();
        let (inst, sol) = self.pfo.clone();
        let (inst, sol) = (&inst, &sol);
        let floored = |id: &str| sol.flows.iter().any(|f| f.id == id && f.floored);
        let mut flows = Vec::new();
        let mut worst: f64 = 0.0;
        for (k, f) in self.spec.flows.iter().enumerate() {
            let vals: Vec<Sample> = window
                .iter()
                .filter_map(|(_, r)| r.get(k).copied())
                .collect();
            let n = vals.len().max(1) as f64;
            let target = vals.iter().map(|v| v.target).sum::<f64>() / n;
            let achieved = vals.iter().map(|v| v.achieved).sum::<f64>() / n;
            let controller = vals.iter().map(|v| v.controller).sum::<f64>() / n;
            let (lost, acked) = vals
                .iter()
                .fold((0u64, 0u64), |a, v| (a.0 + v.lost, a.1 + v.acked));
            let error = if target > 0.0 {
                (achieved - target) / target
            } else {
                0.0
            };
            if target > 0.0 {
                worst = worst.max(error.abs());
            }
            let cap = if floored(&f.id) { 1.0 } else { CAP_FACTOR } * target;
            let at_cap = if target > 0.0 {
                vals.iter()
                    .filter(|v| v.target > 0.0 && v.controller >= 0.98 * cap)
                    .count() as f64
                    / n
            } else {
                0.0
            };
            let to = totals(&self.inst_of(&origin(f))).unwrap_or_default();
            let vo = to.get(&f.id).copied().unwrap_or_default();
            flows.push(FlowSummary {
                id: f.id.clone(),
                class: f.class.clone(),
                route: f.route.clone(),
                target_mbps: target,
                controller_mbps: controller,
                achieved_mbps: achieved,
                error,
                loss: ratio(lost, lost + acked),
                at_cap_share: at_cap,
                floored: floored(&f.id),
                loss_whole_run: ratio(vo.lost, vo.lost + vo.acked),
                queue_drops: vo.queue_drops,
            });
        }
        // The plans each control activated so far: the sessions in force per second.
        let plans = plan_records(&self.dir, w.t0_ns);
        // The sessions of the plans in force at the window's end (a re-plan around a cut
        // link or with estimated capacities may admit others than the demo's own solve).
        let end = window.last().map_or(0.0, |w| w.0);
        let (classes, mut utility) = utility_of(inst, sol, &flows, Some((&plans, end)));
        utility.true_optimum = self.true_optimum;
        utility.reference = match (&self.fail, o.wire_mbps.is_empty()) {
            (Some(f), true) => format!("without the cut link {}", f.0),
            (Some(f), false) => format!("the wire's capacities, without the cut link {}", f.0),
            (None, false) => "the wire's capacities".to_owned(),
            (None, true) => String::new(),
        };
        utility.true_ratio = if self.true_optimum > 0.0 {
            utility.achieved / self.true_optimum
        } else {
            0.0
        };
        // The mission utility of each second's delivered rates.
        let utility_series: Vec<(f64, f64)> = series
            .iter()
            .map(|(t, row)| {
                let fs: Vec<FlowSummary> = self
                    .spec
                    .flows
                    .iter()
                    .zip(row)
                    .map(|(f, s)| FlowSummary {
                        id: f.id.clone(),
                        class: f.class.clone(),
                        route: Vec::new(),
                        target_mbps: s.target,
                        controller_mbps: s.controller,
                        achieved_mbps: s.achieved,
                        error: 0.0,
                        loss: 0.0,
                        at_cap_share: 0.0,
                        floored: false,
                        loss_whole_run: 0.0,
                        queue_drops: 0,
                    })
                    .collect();
                (
                    *t,
                    utility_of(inst, sol, &fs, Some((&plans, *t))).1.achieved,
                )
            })
            .collect();
        // The worst 3 s average of a planned flow while the controls were
        // dead (MONtra's rates move by a few % from second to second).
        let control_outage = w.outage.map(|(k, r)| {
            let worst = (0..series.len())
                .filter(|&i| i + 1 > k as usize && i < r as usize)
                .flat_map(|i| (0..nflows).map(move |k| (i, k)))
                .filter_map(|(i, k)| {
                    let t = series[i].1.get(k).map_or(0.0, |s| s.target);
                    (t > 0.0).then(|| ((avg3(i, k) - t) / t).abs())
                })
                .fold(0.0, f64::max);
            (k, r, worst)
        });
        let mut plan_epochs = BTreeMap::new();
        for s in &self.sites {
            if let Some(t) = totals(&s.instance_name) {
                plan_epochs.insert(
                    s.name.clone(),
                    t.values().map(|v| v.epoch).max().unwrap_or(0),
                );
            }
        }
        let workers = self
            .sites
            .iter()
            .flat_map(|s| worker_packets(&s.name, &s.instance_name, &s.config))
            .collect();
        self.stop_processes();
        let Demo {
            topo,
            dir,
            fail,
            world,
            ..
        } = self;
        drop(topo);
        let path_events = path_events(&dir, w.t0_ns);
        // MONGATE_DEMO_KEEP=1 keeps the processes' logs for a look afterwards.
        if std::env::var_os("MONGATE_DEMO_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        let loss_budget = inst.loss_budget;
        let verdict = verdict(&flows, &utility, loss_budget, worst);
        Ok(Summary {
            topology: world.description.clone(),
            plan_source: o.plan,
            encrypted: self.spec.keys.is_some(),
            plan_epochs,
            pfo: self.pfo_json,
            payload_efficiency: self.eff,
            loss_budget,
            seconds: o.seconds,
            convergence_s,
            worst_error: worst,
            window_s: (
                window.first().map_or(0.0, |w| w.0),
                window.last().map_or(0.0, |w| w.0),
            ),
            control_outage,
            failed_link: fail.as_ref().map(|f| (f.0.clone(), f.4)),
            failover_ms: w.failover_ms,
            failover_left_ms: w.failover_left_ms,
            flows,
            classes,
            utility,
            utility_series,
            flow_series: series
                .iter()
                .map(|(t, row)| (*t, row.iter().map(|s| (s.target, s.achieved)).collect()))
                .collect(),
            wire_mbps: o.wire_mbps.clone(),
            queue_ms: o.queue_ms,
            verdict,
            path_events,
            plans,
            crowd_optimum: self.crowd_optimum,
            udp_sent,
            udp_received,
            partition: o.partition.clone(),
            plots: BTreeMap::new(),
            workers,
        })
    }

    /// Stops the control processes, then the gateways.
    fn stop_processes(&mut self) {
        for s in &mut self.sites {
            if let Some(c) = s.control.take() {
                let _ = c.stop(Duration::from_secs(2));
            }
            if let Some(g) = s.gateway.take() {
                let _ = g.stop(Duration::from_secs(3));
            }
        }
    }
}

/// Each worker's packets at a site's gateway, from its stats file (ports:
/// the LAN, then the site file's uplinks, then the handoff ports).
fn worker_packets(
    site: &str,
    instance: &str,
    config: &std::path::Path,
) -> Vec<super::WorkerSummary> {
    use mongate_dataplane::stats::{MAX_PORTS, StatsRegion, stats_path};
    use std::sync::atomic::Ordering::Relaxed;
    let Ok(r) = StatsRegion::open(&stats_path(instance)) else {
        return Vec::new();
    };
    let uplinks = mongate_dataplane::config::Config::load(config).map_or(0, |c| c.uplinks.len());
    (0..r.workers())
        .filter_map(|w| r.worker(w).map(|c| (w, c)))
        .map(|(w, c)| {
            let sum = |range: std::ops::Range<usize>, tx: bool| -> u64 {
                range
                    .filter(|&i| i < MAX_PORTS)
                    .map(|i| {
                        let p = &c.ports[i];
                        if tx {
                            p.tx_packets.load(Relaxed)
                        } else {
                            p.rx_packets.load(Relaxed)
                        }
                    })
                    .sum()
            };
            super::WorkerSummary {
                site: site.to_owned(),
                worker: w,
                lan_rx: sum(0..1, false),
                lan_tx: sum(0..1, true),
                wan_rx: sum(1..1 + uplinks, false),
                wan_tx: sum(1..1 + uplinks, true),
                handed_out: sum(1 + uplinks..MAX_PORTS, true),
                handed_in: sum(1 + uplinks..MAX_PORTS, false),
            }
        })
        .collect()
}

/// The link `--fail-link` names (`A-C`: the first link between two sites,
/// or a link name) and its ends.
fn resolve_link(topo: &SitesTopology, l: &str, t: u32) -> anyhow::Result<FailLink> {
    let name = match l.split_once('-') {
        Some((a, b)) => topo
            .links_between(a, b)
            .first()
            .map(|h| h.spec.name.clone())
            .ok_or_else(|| anyhow::anyhow!("--fail-link: no link between {a} and {b}"))?,
        None => topo.link(l).map(|h| h.spec.name.clone())?,
    };
    let h = topo.link(&name)?;
    let (a, b) = (h.spec.a.clone(), h.spec.b.clone());
    Ok((l.to_owned(), name, a, b, t))
}

/// PFO solved once by the demo: the plan for the site files (plan source
/// `file`), PFO's figures and its optimum for the summary.
type Pfo = (
    mongate_control::pfo::Instance,
    mongate_control::pfo::Solution,
);

fn solve_file_plan(inst: &serde_json::Value) -> anyhow::Result<(PlanSpec, serde_json::Value, Pfo)> {
    let i = mongate_control::pfo::Instance::from_json(&inst.to_string())
        .map_err(|e| anyhow::anyhow!("demo instance: {e}"))?;
    let p = mongate_control::pfo::solve(&i, &mongate_control::pfo::SolveOptions::default());
    let json = serde_json::json!({
        "objective": p.objective, "bound": p.bound, "gap": p.gap, "seconds": p.seconds
    });
    let plan = PlanSpec {
        epoch: 1,
        classes: p
            .classes
            .iter()
            .map(|c| (c.id.clone(), c.sessions))
            .collect(),
        flows: p
            .flows
            .iter()
            .map(|f| (f.id.clone(), f.rate, f.weight))
            .collect(),
    };
    Ok((plan, json, (i, p)))
}

/// The class whose demand jumps in `--scenario flash-crowd`.
pub(super) const CROWD_CLASS: &str = "A->C";
/// Its most useful rate per session, Mbit/s (its utility is linear up to this, flat above:
/// docs/examples/triangle/instance.json).
const CROWD_SESSION_MBPS: f64 = 4.0;

/// Sets class `id`'s demand (sessions) in an instance (JSON).
fn set_sessions(inst: &mut serde_json::Value, id: &str, n: u16) -> anyhow::Result<()> {
    let c = inst["classes"]
        .as_array_mut()
        .and_then(|cs| cs.iter_mut().find(|c| c["id"] == id))
        .ok_or_else(|| anyhow::anyhow!("demo instance: no class {id:?}"))?;
    c["sessions"] = serde_json::json!(n);
    Ok(())
}

/// A planned flow's 3 s average within this of its target counts as converged.
const CONVERGED: f64 = 0.05;
/// The gateways' default safety cap of a priced flow, x its target
/// (`overlay::Settings::cap_factor`).
const CAP_FACTOR: f64 = 2.0;

fn ratio(a: u64, b: u64) -> f64 {
    if b > 0 { a as f64 / b as f64 } else { 0.0 }
}

/// Per class: PFO's admitted sessions, the planned and delivered aggregate
/// rates and the class's utility `n_c U_c(Y_c / n_c)` at each; and the
/// mission utility, delivered against PFO's optimum. With `at` = (the
/// controls' plans, second t), a class's sessions are those of the plan in
/// force at t at the class's source site (a re-plan after a partition admits
/// other sessions than the first plan); else PFO's own solution's.
fn utility_of(
    inst: &mongate_control::pfo::Instance,
    sol: &mongate_control::pfo::Solution,
    flows: &[FlowSummary],
    at: Option<(&[super::PlanRecord], f64)>,
) -> (Vec<ClassSummary>, UtilitySummary) {
    let mut classes = Vec::new();
    let mut achieved_total = 0.0;
    for (c, class) in inst.classes.iter().enumerate() {
        let planned = at.and_then(|(plans, t)| {
            let site = class.id.split("->").next().unwrap_or("");
            plans
                .iter()
                .rfind(|p| p.site == site && p.t_s <= t)
                .and_then(|p| p.sessions.get(&class.id).copied())
        });
        let n = planned.unwrap_or_else(|| sol.classes.get(c).map_or(0, |x| x.sessions));
        let of = |f: &&FlowSummary| f.class == class.id;
        let target: f64 = flows.iter().filter(of).map(|f| f.target_mbps).sum();
        let achieved: f64 = flows.iter().filter(of).map(|f| f.achieved_mbps).sum();
        let u = |y: f64| {
            if n == 0 {
                0.0
            } else {
                f64::from(n) * class.utility.eval(y / f64::from(n))
            }
        };
        achieved_total += u(achieved);
        classes.push(ClassSummary {
            id: class.id.clone(),
            sessions: n,
            target_mbps: target,
            achieved_mbps: achieved,
            utility_planned: u(target),
            utility: u(achieved),
        });
    }
    let optimum = sol.objective;
    (
        classes,
        UtilitySummary {
            achieved: achieved_total,
            optimum,
            bound: sol.bound,
            ratio: if optimum > 0.0 {
                achieved_total / optimum
            } else {
                0.0
            },
            true_optimum: optimum,
            true_ratio: 0.0,
            reference: String::new(),
        },
    )
}

/// The one-line verdict: MONtra holds PFO's plan when every planned flow is
/// within 2 % of its target, no controller sits at its cap, the loss stays
/// within the budget + 1 point and the utility within 2 % of the optimum.
fn verdict(flows: &[FlowSummary], u: &UtilitySummary, budget: f64, worst: f64) -> Verdict {
    let planned: Vec<&FlowSummary> = flows.iter().filter(|f| f.target_mbps > 0.0).collect();
    let pinned = planned
        .iter()
        .filter(|f| !f.floored && f.at_cap_share > 0.5)
        .count();
    let worst_loss = planned.iter().map(|f| f.loss).fold(0.0, f64::max);
    let ok = worst <= 0.02
        && pinned == 0
        && worst_loss <= budget + 0.01
        && (u.true_ratio - 1.0).abs() <= 0.02;
    let of = if u.reference.is_empty() {
        String::new()
    } else {
        format!(", {}", u.reference)
    };
    let line = format!(
        "{}: utility {:.2} of PFO's {:.2}{of} ({:.1} %); worst flow {:.2} % off its target; \
         worst loss {:.2} % (budget {:.1} %); {} controller(s) pinned at the cap",
        if ok {
            "MONtra holds PFO's plan"
        } else {
            "MONtra does NOT hold PFO's plan"
        },
        u.achieved,
        u.true_optimum,
        100.0 * u.true_ratio,
        100.0 * worst,
        100.0 * worst_loss,
        100.0 * budget,
        pinned
    );
    Verdict { ok, line }
}

/// The first site of a flow's route.
fn origin(f: &FlowSpec) -> String {
    f.route[0].clone()
}

/// The last site of a flow's route.
fn dest(f: &FlowSpec) -> String {
    f.route[f.route.len() - 1].clone()
}

/// A key pair per site, private keys written 0600 into `dir`.
fn site_keys(
    dir: &std::path::Path,
    names: &[String],
) -> anyhow::Result<Vec<mongate_testbed::SiteKey>> {
    names
        .iter()
        .map(|s| {
            let file = dir.join(format!("{s}.key"));
            let public = mongate_control::secure::keys::keygen(&file)?;
            Ok(mongate_testbed::SiteKey {
                site: s.clone(),
                private_key_file: file,
                public_key: public.to_string(),
            })
        })
        .collect()
}
