//! `mongate demo`: the MON paper's triangle on real packets.
//!
//! Three sites A, B, C in network namespaces (links A-B and A-C 10 Mbit/s,
//! B-C 5 Mbit/s, shaped by tbf in "wire" namespaces), a LAN host behind
//! each site's gateway. Each gateway is a `mongate-dataplane run` process
//! (AF_XDP on its LAN and WAN interfaces); by default each site also runs a
//! `mongate-control run` process that solves PFO and sends the plan over
//! the shared-memory rings. The LAN hosts of A and B send backlogged UDP to
//! C's host; the demo prints, every second, each flow's planned rate, the
//! rate its MONtra controller runs at, the rate delivered at the
//! destination gateway, and its loss; then a summary (`--json`: JSON).

mod traffic;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mongate_dataplane::stats::flows::{FlowStatsRegion, FlowValues, flows_path};
use mongate_testbed::topology::triangle::{INSTANCE, PORT_AC, PORT_BC, triangle_overlay_udp};
use mongate_testbed::{NsChild, PlanSpec, Sites, SitesTopology};

use traffic::{FRAME, Receiver, Sender};

/// Where the plan comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanSource {
    /// `mongate-control run` per site: PFO plans over the shm rings.
    Control,
    /// PFO solved once by the demo, written into the site files.
    File,
}

/// Demo options.
#[derive(Clone, Debug)]
pub struct Options {
    /// Seconds of traffic.
    pub seconds: u32,
    /// Plan source.
    pub plan: PlanSource,
    /// Kill every control process at this second of traffic (and restart
    /// them `restart_after` later).
    pub kill_control_at: Option<u32>,
    /// Seconds the control stays dead.
    pub restart_after: u32,
    /// Cut this link (`A-C`: the link between two sites, or a link name)
    /// at this second of traffic.
    pub fail_link: Option<(String, u32)>,
}

/// Parses `LINK@SECONDS` (`A-C@10`, `ac@10`).
pub fn parse_fail_link(s: &str) -> Result<(String, u32), String> {
    let (l, t) = s
        .split_once('@')
        .ok_or_else(|| format!("`{s}`: want LINK@SECONDS, e.g. A-C@10"))?;
    let t: u32 = t
        .parse()
        .map_err(|_| format!("`{s}`: `{t}` is not a whole number of seconds"))?;
    if l.is_empty() {
        return Err(format!("`{s}`: no link"));
    }
    Ok((l.to_string(), t))
}

/// Per-flow line of the summary.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FlowSummary {
    /// Flow id.
    pub id: String,
    /// Route (sites).
    pub route: Vec<String>,
    /// Planned aggregate rate, Mbit/s (inner frames).
    pub target_mbps: f64,
    /// Delivered at the destination gateway, Mbit/s, mean over the
    /// measurement window (after convergence, or the second half).
    pub achieved_mbps: f64,
    /// `(achieved - target) / target` (0 when the target is 0).
    pub error: f64,
    /// Packets the acks reported lost / packets acked+lost, whole run.
    pub loss: f64,
    /// Packets dropped by the flow's pacing queue (backlog beyond the rate).
    pub queue_drops: u64,
}

/// The summary.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    /// Topology.
    pub topology: String,
    /// Plan source.
    pub plan_source: PlanSource,
    /// Plan epoch in force at the end (per origin site).
    pub plan_epochs: BTreeMap<String, u64>,
    /// PFO's objective and proven bound (plan `file`).
    pub pfo: Option<serde_json::Value>,
    /// Inner-frame share of the wire bytes (capacities given to PFO are the
    /// links' rates times this).
    pub payload_efficiency: f64,
    /// Seconds of traffic.
    pub seconds: u32,
    /// First second after which every planned flow stayed within 5 % of its
    /// target (1-s windows; with `--fail-link`, counted over the seconds
    /// after the cut: re-convergence); `None` if never.
    pub convergence_s: Option<f64>,
    /// Largest |error| of a planned flow over the measurement window.
    pub worst_error: f64,
    /// The window the achieved rates are averaged over, seconds from start.
    pub window_s: (f64, f64),
    /// Control killed at / restarted at (seconds), and the worst |error|
    /// while it was dead.
    pub control_outage: Option<(u32, u32, f64)>,
    /// Per flow.
    pub flows: Vec<FlowSummary>,
    /// The link cut (`--fail-link`) and when (s).
    pub failed_link: Option<(String, u32)>,
    /// From the cut to the first packet delivered at its destination that
    /// left its source after the cut, over the flows that crossed the link
    /// (so it took another path), ms.
    pub failover_ms: Option<f64>,
    /// The control processes' path decisions and link states for PFO
    /// (their `path` and `link_state` log events), in time order.
    pub path_events: Vec<PathEvent>,
    /// Datagrams the hosts sent / C's host received.
    pub udp_sent: u64,
    /// Datagrams received by C's host.
    pub udp_received: u64,
}

/// A path decision or link state change of a site's control process.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PathEvent {
    /// Site.
    pub site: String,
    /// When, seconds from the start of the traffic (negative: before).
    pub t_s: f64,
    /// `path` or `link_state`.
    pub event: String,
    /// What.
    pub message: String,
}

/// The `path` and `link_state` events of the control logs in `dir`; `t0_ns`:
/// start of the traffic (CLOCK_MONOTONIC, the controls' clock).
fn path_events(dir: &Path, t0_ns: u64) -> Vec<PathEvent> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(site) = name
            .strip_prefix("control-")
            .and_then(|r| r.split('-').next())
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let event = v.get("event").and_then(|x| x.as_str()).unwrap_or("");
            if event != "path" && event != "link_state" {
                continue;
            }
            let ts_ms = v
                .get("ts_ms")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            out.push(PathEvent {
                site: site.to_owned(),
                t_s: (ts_ms as f64 - t0_ns as f64 / 1e6) / 1e3,
                event: event.to_owned(),
                message: v
                    .get("message")
                    .and_then(|x| x.as_str())
                    .unwrap_or("")
                    .to_owned(),
            });
        }
    }
    out.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    out
}

fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no directory for {}", exe.display()))?;
    // Integration tests run from target/<profile>/deps.
    for d in [dir.to_path_buf(), dir.join("..")] {
        let p = d.join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    anyhow::bail!(
        "{name} not found next to {} (build the workspace: cargo build --release --workspace)",
        exe.display()
    )
}

/// Bytes of the outer headers our gateways add to an inner frame (IPv4
/// outer): Ethernet + IPv4 + UDP + GENEVE + the mongate option.
fn overhead() -> anyhow::Result<usize> {
    use mongate_dataplane::wire::ethernet::MacAddr;
    use mongate_dataplane::wire::overlay::{OverlayTemplate, TemplateConfig};
    let tc = TemplateConfig::new(
        MacAddr::default(),
        MacAddr::default(),
        "198.18.0.1".parse()?,
        "198.18.0.2".parse()?,
    );
    Ok(OverlayTemplate::new(&tc)
        .map_err(|e| anyhow::anyhow!("template: {e:?}"))?
        .header_len())
}

/// The PFO instance of the demo (JSON): `docs/examples/triangle/instance.json`
/// (A->C worth 2 per Mbit/s up to 4 Mbit/s per session, B->C worth 1: the
/// paper's slopes; 4 sessions each) with each link's capacity set to its
/// payload share `eff` of the built link's rate.
fn instance(topo: &SitesTopology, eff: f64) -> anyhow::Result<serde_json::Value> {
    let mut inst: serde_json::Value = serde_json::from_str(INSTANCE)?;
    let links = inst["links"]
        .as_array_mut()
        .ok_or_else(|| anyhow::anyhow!("demo instance: no links"))?;
    for l in links {
        let id = l["id"].as_str().unwrap_or_default().to_owned();
        let h = id
            .split_once('-')
            .and_then(|(a, b)| topo.links_between(a, b).first().copied())
            .ok_or_else(|| anyhow::anyhow!("demo instance: no link {id:?} in the triangle"))?;
        l["capacity"] = serde_json::json!(h.spec.rate_mbps * eff);
    }
    Ok(inst)
}

struct Site {
    name: String,
    instance_name: String,
    config: PathBuf,
    gateway: Option<NsChild>,
    control: Option<NsChild>,
}

fn spawn_logged(
    topo: &SitesTopology,
    site: &str,
    argv: &[String],
    log: &Path,
) -> anyhow::Result<NsChild> {
    let f = std::fs::File::create(log)?;
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(f.try_clone()?)
        .stderr(f);
    Ok(topo.site(site)?.gw_ns.spawn(c)?)
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> anyhow::Result<()> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("timed out after {} s waiting for {what}", timeout.as_secs())
}

fn totals(instance: &str) -> Option<BTreeMap<String, FlowValues>> {
    let r = FlowStatsRegion::open(&flows_path(instance)).ok()?;
    Some(r.totals().into_iter().collect())
}

fn mbps(pps: f64) -> f64 {
    pps * 8.0 * FRAME as f64 / 1e6
}

/// Runs the demo.
pub fn run(o: &Options) -> anyhow::Result<Summary> {
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
    if let Some((_, t)) = &o.fail_link
        && *t >= o.seconds
    {
        anyhow::bail!(
            "--fail-link: the cut at {t} s is after the end ({} s)",
            o.seconds
        );
    }
    let dp_bin = bin("mongate-dataplane")?;
    let ctl_bin = bin("mongate-control")?;
    let dir = std::env::temp_dir().join(format!("mongate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "building the MON triangle in network namespaces (logs and files: {})",
        dir.display()
    );
    let mut sites_b = Sites::triangle().prefix("mgdemo");
    sites_b.disable_offloads = true;
    let topo = sites_b.build()?;
    let fail = match &o.fail_link {
        Some((l, t)) => {
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
            Some((l.clone(), name, a, b, *t))
        }
        None => None,
    };
    let hl = overhead()?;
    let eff = FRAME as f64 / (FRAME + hl) as f64;
    let inst = instance(&topo, eff)?;
    let inst_path = dir.join("overlay.json");
    std::fs::write(&inst_path, serde_json::to_string_pretty(&inst)?)?;

    // The plan written into the files (plan source `file`).
    let mut pfo_json = None;
    let file_plan = if o.plan == PlanSource::File {
        let i = mongate_control::pfo::Instance::from_json(&inst.to_string())
            .map_err(|e| anyhow::anyhow!("demo instance: {e}"))?;
        let p = mongate_control::pfo::solve(&i, &mongate_control::pfo::SolveOptions::default());
        pfo_json = Some(serde_json::json!({
            "objective": p.objective, "bound": p.bound, "gap": p.gap, "seconds": p.seconds
        }));
        Some(PlanSpec {
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
        })
    } else {
        None
    };
    let spec = triangle_overlay_udp(file_plan);
    let tag = std::process::id();
    let mut sites = Vec::new();
    for s in ["A", "B", "C"] {
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
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let start_control = |s: &Site| -> anyhow::Result<NsChild> {
        let argv = vec![
            ctl_bin.display().to_string(),
            "run".into(),
            "--config".into(),
            s.config.display().to_string(),
            "--instance".into(),
            inst_path.display().to_string(),
            "--name".into(),
            s.instance_name.clone(),
            "--json-log".into(),
        ];
        let log = dir.join(format!(
            "control-{}-{}.log",
            s.name,
            Instant::now().elapsed().as_nanos()
        ));
        spawn_logged(&topo, &s.name, &argv, &log)
    };
    for s in &mut sites {
        let mut argv = vec![
            dp_bin.display().to_string(),
            "run".into(),
            "--config".into(),
            s.config.display().to_string(),
            "--name".into(),
            s.instance_name.clone(),
            "--xdp-mode".into(),
            "native".into(),
            "--idle-sleep-us".into(),
            "50".into(),
            "--spin".into(),
            "200".into(),
            "--report-every-ms".into(),
            "5".into(),
        ];
        if ncpu > 1 {
            argv.extend(["--core".into(), (ncpu - 1).to_string()]);
        }
        if o.plan == PlanSource::File {
            argv.push("--no-control".into());
        }
        let log = dir.join(format!("gateway-{}.log", s.name));
        s.gateway = Some(spawn_logged(&topo, &s.name, &argv, &log)?);
    }
    for s in &sites {
        let name = s.instance_name.clone();
        let g = s.gateway.as_ref();
        wait_for(
            &format!("gateway {} (see its log)", s.name),
            Duration::from_secs(20),
            || totals(&name).is_some() || g.is_none_or(|g| g.try_wait().ok().flatten().is_some()),
        )?;
        if totals(&name).is_none() {
            anyhow::bail!(
                "gateway {} exited: {}",
                s.name,
                std::fs::read_to_string(dir.join(format!("gateway-{}.log", s.name)))
                    .unwrap_or_default()
            );
        }
    }
    eprintln!("gateways up: A, B, C (mongate-dataplane run, AF_XDP, native XDP)");
    if o.plan == PlanSource::Control {
        for s in &mut sites {
            s.control = Some(start_control(s)?);
        }
        // Every origin site runs a plan with targets.
        for s in &sites {
            let name = s.instance_name.clone();
            wait_for(
                &format!("the plan of site {} from mongate-control", s.name),
                Duration::from_secs(30),
                || totals(&name).is_some_and(|t| t.values().any(|v| v.epoch > 0)),
            )?;
        }
        eprintln!("plans from mongate-control (PFO) in force at every site");
    }

    // Offered load: 1.6x each class's planned rate spread over 6 sessions
    // (4 admitted), at least 100 packets/s.
    let stop = Arc::new(AtomicBool::new(false));
    let c_host = topo
        .site("C")?
        .host_if()
        .v4
        .map(|v| v.addr)
        .ok_or_else(|| anyhow::anyhow!("C host has no IPv4"))?;
    let rx_ac = Receiver::start(
        &topo.site("C")?.lan_ns,
        SocketAddr::from((c_host, PORT_AC)),
        stop.clone(),
    )?;
    let rx_bc = Receiver::start(
        &topo.site("C")?.lan_ns,
        SocketAddr::from((c_host, PORT_BC)),
        stop.clone(),
    )?;
    let class_target_pps = |site: &str, class: &str| -> f64 {
        let t = totals(&format!("demo{tag}-{site}")).unwrap_or_default();
        spec.flows
            .iter()
            .filter(|f| f.class == class)
            .filter_map(|f| t.get(&f.id))
            .map(|v| v.target_pps)
            .sum()
    };
    let pa = (1.6 * class_target_pps("A", "A->C") * 6.0 / 4.0).max(100.0);
    let pb = (1.6 * class_target_pps("B", "B->C") * 6.0 / 4.0).max(100.0);
    let limit = Duration::from_secs(u64::from(o.seconds) + 5);
    let tx_a = Sender::start(
        &topo.site("A")?.lan_ns,
        SocketAddr::from((c_host, PORT_AC)),
        6,
        pa,
        limit,
        stop.clone(),
    )?;
    let tx_b = Sender::start(
        &topo.site("B")?.lan_ns,
        SocketAddr::from((c_host, PORT_BC)),
        6,
        pb,
        limit,
        stop.clone(),
    )?;
    eprintln!(
        "traffic: host A -> host C {:.1} Mbit/s offered (6 UDP sessions), host B -> host C {:.1} Mbit/s (6 sessions)",
        mbps(pa),
        mbps(pb)
    );

    let origin = |f: &mongate_testbed::FlowSpec| f.route[0].clone();
    let dest = |f: &mongate_testbed::FlowSpec| f.route[f.route.len() - 1].clone();
    let inst_of = |site: &str| format!("demo{tag}-{site}");
    eprintln!(
        "{:>4}  {:<14} {:>10} {:>10} {:>10} {:>8}",
        "t(s)", "flow", "target", "MONtra", "achieved", "loss %"
    );
    let t0 = Instant::now();
    let t0_ns = mongate_dataplane::engine::now_ns();
    let mut prev: BTreeMap<String, (f64, FlowValues, FlowValues)> = BTreeMap::new();
    // Per second: (t, per flow (target, achieved Mbps)).
    let mut series: Vec<(f64, Vec<(f64, f64)>)> = Vec::new();
    let mut outage: Option<(u32, u32)> = None;
    let mut failover_ms: Option<f64> = None;
    let mut killed = false;
    for sec in 1..=o.seconds {
        let deadline = t0 + Duration::from_secs(u64::from(sec));
        if let Some(d) = deadline.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        if let Some(k) = o.kill_control_at {
            if sec == k && !killed && o.plan == PlanSource::Control {
                for s in &mut sites {
                    if let Some(c) = s.control.take() {
                        // SIGKILL: no clean shutdown, the dataplane must
                        // keep its plan on its own.
                        // SAFETY: kill(2) has no memory-safety preconditions.
                        unsafe {
                            libc::kill(libc::pid_t::try_from(c.pid()).unwrap_or(0), libc::SIGKILL)
                        };
                        let _ = c.stop(Duration::from_millis(100));
                    }
                }
                killed = true;
                eprintln!(
                    "---- control processes killed (SIGKILL) at t={sec}s: the gateways keep the last plan ----"
                );
            }
            if sec == k + o.restart_after && killed {
                for s in &mut sites {
                    s.control = Some(start_control(s)?);
                }
                outage = Some((k, sec));
                eprintln!(
                    "---- control processes restarted at t={sec}s: they re-attach and resynchronise ----"
                );
            }
        }
        if let Some((label, name, la, lb, at)) = &fail
            && sec == *at
        {
            let cut = mongate_dataplane::engine::now_ns();
            topo.set_link(name, false)?;
            eprintln!("---- link {label} ({name}) cut at t={sec}s ----");
            // Flows whose route crosses the link, by destination gateway.
            let crossing: Vec<(String, String)> = spec
                .flows
                .iter()
                .filter(|f| {
                    f.route
                        .windows(2)
                        .any(|w| (w[0] == *la && w[1] == *lb) || (w[0] == *lb && w[1] == *la))
                })
                .map(|f| (f.id.clone(), inst_of(&dest(f))))
                .collect();
            let w0 = Instant::now();
            while failover_ms.is_none() && w0.elapsed() < Duration::from_secs(3) {
                for (id, inst) in &crossing {
                    if let Some(v) = totals(inst).and_then(|t| t.get(id).copied())
                        && v.last_rx_sent_ns > cut
                    {
                        // Nanoseconds to milliseconds for display.
                        failover_ms = Some(v.updated_ns.saturating_sub(cut) as f64 / 1e6);
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            match failover_ms {
                Some(ms) => eprintln!(
                    "---- traffic of the cut link delivered by another path after {ms:.1} ms ----"
                ),
                None => eprintln!(
                    "---- no traffic of the cut link delivered by another path within 3 s ----"
                ),
            }
        }
        let now = t0.elapsed().as_secs_f64();
        let mut row = Vec::new();
        for f in &spec.flows {
            let (Some(to), Some(td)) = (totals(&inst_of(&origin(f))), totals(&inst_of(&dest(f))))
            else {
                continue;
            };
            let (Some(vo), Some(vd)) = (to.get(&f.id).copied(), td.get(&f.id).copied()) else {
                continue;
            };
            let (_, po, pd) = prev.get(&f.id).copied().unwrap_or((
                0.0,
                FlowValues::default(),
                FlowValues::default(),
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
            eprintln!(
                "{:>4}  {:<14} {:>10.2} {:>10.2} {:>10.2} {:>8.2}",
                sec,
                f.id,
                target,
                mbps(vo.rate_pps),
                achieved,
                loss * 100.0
            );
            prev.insert(f.id.clone(), (now, vo, vd));
            row.push((target, achieved));
        }
        series.push((now, row));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = tx_a.join()? + tx_b.join()?;
    let received = rx_ac.received.load(Ordering::Relaxed) + rx_bc.received.load(Ordering::Relaxed);
    rx_ac.join()?;
    rx_bc.join()?;

    // Convergence: the first second after which every planned flow stays
    // within 5 % (the first second is partial and skipped).
    let within = |row: &Vec<(f64, f64)>| {
        row.iter()
            .filter(|(t, _)| *t > 0.0)
            .all(|(t, a)| ((a - t) / t).abs() <= 0.05)
    };
    // With a link cut: over the seconds after the cut (re-convergence to the
    // plan that routes around it).
    let first = fail
        .as_ref()
        .map_or(1, |f| usize::try_from(f.4).unwrap_or(1));
    let mut conv: Option<usize> = None;
    for i in (first.min(series.len())..series.len()).rev() {
        if within(&series[i].1) {
            conv = Some(i);
        } else {
            break;
        }
    }
    let convergence_s = conv.map(|i| series[i].0);
    // Window: after convergence (or the second half), excluding the control
    // outage's restart second.
    let from = conv
        .unwrap_or(first.max(series.len() / 2))
        .max(1)
        .min(series.len().saturating_sub(1));
    let window: Vec<_> = series[from..].to_vec();
    let mut flows = Vec::new();
    let mut worst: f64 = 0.0;
    for (k, f) in spec.flows.iter().enumerate() {
        let vals: Vec<(f64, f64)> = window
            .iter()
            .filter_map(|(_, r)| r.get(k).copied())
            .collect();
        let n = vals.len().max(1) as f64;
        let target = vals.iter().map(|v| v.0).sum::<f64>() / n;
        let achieved = vals.iter().map(|v| v.1).sum::<f64>() / n;
        let error = if target > 0.0 {
            (achieved - target) / target
        } else {
            0.0
        };
        if target > 0.0 {
            worst = worst.max(error.abs());
        }
        let to = totals(&inst_of(&origin(f))).unwrap_or_default();
        let vo = to.get(&f.id).copied().unwrap_or_default();
        flows.push(FlowSummary {
            id: f.id.clone(),
            route: f.route.clone(),
            target_mbps: target,
            achieved_mbps: achieved,
            error,
            loss: if vo.lost + vo.acked > 0 {
                vo.lost as f64 / (vo.lost + vo.acked) as f64
            } else {
                0.0
            },
            queue_drops: vo.queue_drops,
        });
    }
    let control_outage = outage.map(|(k, r)| {
        let w = series
            .iter()
            .enumerate()
            .filter(|(i, _)| *i + 1 > k as usize && *i < r as usize)
            .flat_map(|(_, (_, row))| row.iter())
            .filter(|(t, _)| *t > 0.0)
            .map(|(t, a)| ((a - t) / t).abs())
            .fold(0.0, f64::max);
        (k, r, w)
    });
    let mut plan_epochs = BTreeMap::new();
    for s in &sites {
        if let Some(t) = totals(&s.instance_name) {
            plan_epochs.insert(
                s.name.clone(),
                t.values().map(|v| v.epoch).max().unwrap_or(0),
            );
        }
    }
    for s in &mut sites {
        if let Some(c) = s.control.take() {
            let _ = c.stop(Duration::from_secs(2));
        }
        if let Some(g) = s.gateway.take() {
            let _ = g.stop(Duration::from_secs(3));
        }
    }
    drop(topo);
    let path_events = path_events(&dir, t0_ns);
    // MONGATE_DEMO_KEEP=1 keeps the processes' logs for a look afterwards.
    if std::env::var_os("MONGATE_DEMO_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(Summary {
        topology:
            "MON triangle: A-B 10, A-C 10, B-C 5 Mbit/s (tbf); LAN host + mongate gateway per site"
                .into(),
        plan_source: o.plan,
        plan_epochs,
        pfo: pfo_json,
        payload_efficiency: eff,
        seconds: o.seconds,
        convergence_s,
        worst_error: worst,
        window_s: (
            window.first().map_or(0.0, |w| w.0),
            window.last().map_or(0.0, |w| w.0),
        ),
        control_outage,
        failed_link: fail.as_ref().map(|f| (f.0.clone(), f.4)),
        failover_ms,
        flows,
        path_events,
        udp_sent: sent,
        udp_received: received,
    })
}

/// Prints the human summary.
pub fn print_summary(s: &Summary) {
    println!(
        "summary ({} s, plan from {:?}, epochs {:?}):",
        s.seconds, s.plan_source, s.plan_epochs
    );
    println!(
        "  {:<14} {:<10} {:>10} {:>10} {:>8} {:>8}",
        "flow", "route", "target", "achieved", "error %", "loss %"
    );
    for f in &s.flows {
        println!(
            "  {:<14} {:<10} {:>10.2} {:>10.2} {:>8.2} {:>8.2}",
            f.id,
            f.route.join(">"),
            f.target_mbps,
            f.achieved_mbps,
            f.error * 100.0,
            f.loss * 100.0
        );
    }
    match s.convergence_s {
        Some(c) => println!(
            "  converged (every planned flow within 5 %) after {c:.1} s; worst error over {:.0}-{:.0} s: {:.2} %",
            s.window_s.0,
            s.window_s.1,
            s.worst_error * 100.0
        ),
        None => println!(
            "  did NOT stay within 5 %; worst error over {:.0}-{:.0} s: {:.2} %",
            s.window_s.0,
            s.window_s.1,
            s.worst_error * 100.0
        ),
    }
    if let Some((l, t)) = &s.failed_link {
        match s.failover_ms {
            Some(ms) => println!("  link {l} cut at {t} s: failover in {ms:.1} ms"),
            None => println!("  link {l} cut at {t} s: no failover observed"),
        }
    }
    for e in &s.path_events {
        println!(
            "  control {} at {:.3} s: {} {}",
            e.site, e.t_s, e.event, e.message
        );
    }
    if let Some((k, r, w)) = s.control_outage {
        println!(
            "  control killed at {k} s, restarted at {r} s; worst error meanwhile {:.2} %",
            w * 100.0
        );
    }
}

#[cfg(test)]
mod tests {
    use mongate_testbed::Sites;
    use mongate_testbed::topology::triangle::{
        LINKS, SITE_FILES, flow_links, triangle_overlay_udp,
    };

    /// The shipped triangle files load, and the instance fits them: its links
    /// are the triangle's (capacity = rate), its flows the site files' flows
    /// with the links of their routes.
    #[test]
    fn the_example_triangle_files_fit_together() {
        for (name, text) in SITE_FILES {
            mongate_dataplane::config::Config::from_toml_str(text, &format!("site-{name}.toml"))
                .unwrap_or_else(|e| panic!("site {name}: {e}"));
        }
        let inst: serde_json::Value = serde_json::from_str(super::INSTANCE).unwrap();
        mongate_control::pfo::Instance::from_json(super::INSTANCE).unwrap();
        let sites = Sites::triangle();
        let links: Vec<_> = LINKS
            .iter()
            .map(|(name, a, b)| {
                let l = sites.links.iter().find(|l| l.name == *name).unwrap();
                serde_json::json!({"id": format!("{a}-{b}"), "capacity": l.rate_mbps})
            })
            .collect();
        assert_eq!(inst["links"], serde_json::json!(links));
        let flows: Vec<_> = triangle_overlay_udp(None)
            .flows
            .iter()
            .map(|f| serde_json::json!({"id": f.id, "class": f.class, "links": flow_links(&f.route)}))
            .collect();
        assert_eq!(inst["flows"], serde_json::json!(flows));
    }
}
