//! `mongate-dataplane`: runs pinned per-core workers.
//!
//! `forward` is the engine's baseline pipeline (IP forwarding between two
//! interfaces, or a UDP relay on io_uring); `stats` prints the shared-memory
//! counters of a running instance.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use clap::{Parser, Subcommand};
use mongate_dataplane::afxdp::BindMode;
use mongate_dataplane::app::signals::{default_sigpipe, print_line};
use mongate_dataplane::app::{
    ForwardConfig, GatewayConfig, RelayConfig, StageKind, start_forward, start_gateway, start_relay,
};
use mongate_dataplane::bpf::XdpMode;
use mongate_dataplane::stats::{StatsRegion, stats_path};
use mongate_dataplane::worker::IdlePolicy;

/// The system allocator, with the large per-flow and per-session tables
/// advised onto transparent huge pages (`mongate_dataplane::sys::alloc`).
#[global_allocator]
static ALLOC: mongate_dataplane::sys::LargePages = mongate_dataplane::sys::LargePages;

#[derive(Parser)]
#[command(
    name = "mongate-dataplane",
    version,
    about = "mongate dataplane: pinned per-core AF_XDP / io_uring workers"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Log lines on stderr: `text` or `json` (one object a line); both with
    /// wall-clock timestamps (docs/deploy.md "Logs").
    #[arg(long, global = true, default_value = "text", value_name = "text|json")]
    log_format: mongate_dataplane::app::logging::LogFormat,
}

#[derive(Subcommand)]
enum Cmd {
    /// Forward IP packets from one interface to another through AF_XDP workers.
    Forward(ForwardArgs),
    /// Relay UDP datagrams from a local address to another through io_uring workers.
    Relay(RelayArgs),
    /// Run a site gateway from its configuration file (the overlay:
    /// classification, MONtra-paced GENEVE tunnels, waypoints).
    Run(RunArgs),
    /// Print the counters of a running instance as JSON.
    Stats {
        /// Instance name (`--name` of the running dataplane).
        #[arg(long, default_value = "dataplane")]
        name: String,
    },
}

#[derive(Parser)]
struct ForwardArgs {
    /// Ingress interface.
    #[arg(long = "in")]
    input: String,
    /// Egress interface.
    #[arg(long = "out")]
    output: String,
    /// Number of queues (one worker per queue, queues 0..N).
    #[arg(long, default_value_t = 1)]
    queues: u32,
    /// A deployment plan from `mongate-hwconfig plan` (TOML or JSON): workers,
    /// cores and queues of `--in` and the XDP mode come from it.
    #[arg(long)]
    plan: Option<std::path::PathBuf>,
    /// Cores to pin workers to, cycled (e.g. `1` or `1,2`). Default: no pinning.
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
    /// XDP attach mode: native, generic or auto.
    #[arg(long, default_value = "auto")]
    xdp_mode: XdpMode,
    /// AF_XDP binding: copy, zero-copy or auto.
    #[arg(long, default_value = "auto", value_parser = parse_bind)]
    bind: BindMode,
    /// MAC address of the next hop on the egress interface.
    #[arg(long, value_parser = parse_mac)]
    next_hop_mac: [u8; 6],
    /// Also forward egress -> ingress, to this MAC on the ingress side.
    #[arg(long, value_parser = parse_mac)]
    reverse_next_hop_mac: Option<[u8; 6]>,
    /// Largest IP packet forwarded (bytes).
    #[arg(long, default_value_t = 1500)]
    mtu: u32,
    /// Frames per worker (UMEM size = frames x 2048 bytes).
    #[arg(long, default_value_t = 16384)]
    frames: u32,
    /// Instance name: counters in $MONGATE_RUN_DIR/NAME.stats (default /run/mongate).
    #[arg(long, default_value = "dataplane")]
    name: String,
    /// Busy-poll iterations before yielding (or sleeping) when idle.
    #[arg(long, default_value_t = 2000)]
    spin: u32,
    /// Then sleep this long per empty iteration (0: never sleep, yield
    /// only; a whole core per worker). `mongate-bench` measures CPU per
    /// packet with a gateway's 50 us.
    #[arg(long, default_value_t = 0)]
    idle_sleep_us: u32,
    /// AF_XDP preferred busy polling on the ingress sockets, with this budget
    /// (0: off). The worker then runs the device's NAPI itself.
    #[arg(long, default_value_t = 0)]
    busy_poll: u16,
    /// Slots of each AF_XDP socket's rx and tx rings (a power of two,
    /// 64..=16384): what may queue in front of a worker, so a saturated
    /// worker's latency (`mongate-bench forward --dut-ring-size`).
    #[arg(long, default_value_t = 4096, value_parser = ring_size)]
    ring_size: u32,
    /// Pipeline: `forward` (IP forwarding) or `drop` (rx-drop benchmark).
    #[arg(long, default_value = "forward")]
    stage: String,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    duration_s: Option<f64>,
}

#[derive(Parser)]
struct RunArgs {
    /// The site configuration (TOML, see docs/config.md).
    #[arg(long)]
    config: std::path::PathBuf,
    /// Instance name: $MONGATE_RUN_DIR/NAME.{stats,flows,ctl} (default /run/mongate). Default: the site name.
    #[arg(long)]
    name: Option<String>,
    /// Core to pin the worker to (worker 0; see --cores).
    #[arg(long)]
    core: Option<usize>,
    /// Workers: worker w serves queue w of the LAN interface and of every
    /// uplink (each needs that many combined queues; AF_XDP uplinks only).
    /// Each class belongs to one worker; packets of another worker's class
    /// are handed to it (docs/architecture.md, "Several workers").
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: u16,
    /// Core of each worker, in worker order (overrides --core).
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
    /// A deployment plan from `mongate-hwconfig plan` (TOML or JSON): the
    /// workers, their cores and the XDP mode come from it (overriding
    /// --workers, --core, --cores and --xdp-mode): the plan's worker on
    /// queue q of the site's interfaces is the gateway's worker q
    /// (docs/hwconfig.md).
    #[arg(long, value_name = "PLAN")]
    plan: Option<std::path::PathBuf>,
    /// XDP attach mode: native, generic or auto.
    #[arg(long, default_value = "auto")]
    xdp_mode: XdpMode,
    /// AF_XDP binding: copy, zero-copy or auto.
    #[arg(long, default_value = "auto", value_parser = parse_bind)]
    bind: BindMode,
    /// Frames of the worker's UMEM.
    #[arg(long, default_value_t = 8192)]
    frames: u32,
    /// Bytes per unit of the controllers' and pacers' rates (the plan's Mbit/s
    /// become units/s; each departure is charged its frame's length in units).
    #[arg(long, default_value_t = 1250)]
    rate_unit_bytes: u32,
    /// IP MTU of the uplinks.
    #[arg(long, default_value_t = 1500)]
    uplink_mtu: usize,
    /// Do not create the control channel: run the configuration's plan only.
    #[arg(long)]
    no_control: bool,
    /// Publish per-flow counters (and telemetry) this often, ms.
    #[arg(long, default_value_t = 100)]
    report_every_ms: u64,
    /// Empty loop iterations spent busy-polling before the idle sleeps.
    #[arg(long, default_value_t = IdlePolicy::GATEWAY.spin)]
    spin: u32,
    /// Then sleep this long per empty iteration: an idle gateway costs a few
    /// percent of a core, at up to ~this much (plus the kernel's timer
    /// slack) added latency for the first packet after a lull. 0: never
    /// sleep (busy-poll, yielding the core only to other runnable threads):
    /// the lowest latency, a whole core per gateway.
    #[arg(long, default_value_t = IdlePolicy::GATEWAY.sleep_us)]
    idle_sleep_us: u32,
    /// Paced departures made late by up to this many idle sleeps (at least
    /// 100 us) are made up; what a later wake-up missed is rate lost. On a
    /// host where the gateway's wake-ups come late (many processes per
    /// core), more.
    #[arg(long, default_value_t = 2)]
    pacing_lag_sleeps: u32,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    duration_s: Option<f64>,
}

#[derive(Parser)]
struct RelayArgs {
    /// Local address to receive on (all workers share it with SO_REUSEPORT).
    #[arg(long)]
    listen: std::net::SocketAddr,
    /// Destination of relayed datagrams (IPv4).
    #[arg(long)]
    to: std::net::SocketAddrV4,
    /// Number of workers (sockets).
    #[arg(long, default_value_t = 1)]
    workers: u32,
    /// Cores to pin workers to, cycled.
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
    /// Frames per worker.
    #[arg(long, default_value_t = 16384)]
    frames: u32,
    /// Instance name: counters in $MONGATE_RUN_DIR/NAME.stats (default /run/mongate).
    #[arg(long, default_value = "dataplane")]
    name: String,
    /// Empty loop iterations spent busy-polling before yielding or sleeping.
    #[arg(long, default_value_t = IdlePolicy::default().spin)]
    spin: u32,
    /// When idle, sleep this long per empty iteration after the spins
    /// (0: never sleep, yield only).
    #[arg(long, default_value_t = 0)]
    idle_sleep_us: u32,
    /// Received datagrams a worker may hold (provided buffers, and a socket
    /// buffer for about as many small ones): the bound on queueing delay.
    #[arg(long, default_value_t = mongate_dataplane::app::DEFAULT_RX_QUEUE)]
    rx_queue: u32,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    duration_s: Option<f64>,
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!(
            "bad MAC address {s:?}: expected six hex bytes like 02:00:00:00:00:01"
        ));
    }
    let mut m = [0u8; 6];
    for (b, p) in m.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16)
            .map_err(|_| format!("bad MAC address {s:?}: {p:?} is not a hex byte"))?;
    }
    Ok(m)
}

fn ring_size(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if (64..=16384).contains(&n) && n.is_power_of_two() {
        Ok(n)
    } else {
        Err(format!("{n}: a power of two from 64 to 16384"))
    }
}

fn parse_bind(s: &str) -> Result<BindMode, String> {
    match s {
        "copy" => Ok(BindMode::Copy),
        "zero-copy" | "zerocopy" => Ok(BindMode::ZeroCopy),
        "auto" => Ok(BindMode::Auto),
        _ => Err(format!(
            "unknown bind mode {s:?}: use copy, zero-copy or auto"
        )),
    }
}

fn forward(a: ForwardArgs) -> anyhow::Result<()> {
    let stage = match a.stage.as_str() {
        "forward" => StageKind::Forward,
        "drop" => StageKind::Drop,
        other => anyhow::bail!("unknown --stage {other:?}: use forward or drop"),
    };
    let mut c = ForwardConfig::new(&a.input, &a.output, a.next_hop_mac);
    c.queues = a.queues;
    c.cores = a.cores;
    c.xdp_mode = a.xdp_mode;
    if let Some(path) = &a.plan {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let plan = mongate_hwconfig::plan_from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        // Worker i serves queue i of --in (and of --out), on the plan's core.
        let mut workers: Vec<(u32, u32)> = Vec::new();
        for w in &plan.workers {
            let q = w
                .queues
                .iter()
                .find(|q| q.ifname == a.input)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: worker {} has no queue of {}",
                        path.display(),
                        w.id,
                        a.input
                    )
                })?;
            workers.push((q.queue, w.core));
        }
        workers.sort_unstable();
        if workers
            .iter()
            .enumerate()
            .any(|(i, (q, _))| usize::try_from(*q).ok() != Some(i))
        {
            anyhow::bail!(
                "{}: the plan's queues of {} must be 0..N, one per worker",
                path.display(),
                a.input
            );
        }
        c.queues = u32::try_from(workers.len())?;
        c.cores = workers
            .iter()
            .map(|(_, core)| usize::try_from(*core).unwrap_or(0))
            .collect();
        c.xdp_mode = match plan.xdp_mode {
            mongate_hwconfig::XdpMode::Native => XdpMode::Native,
            mongate_hwconfig::XdpMode::Generic => XdpMode::Generic,
        };
        if plan.zero_copy && a.bind == BindMode::Auto {
            c.bind = BindMode::Auto;
        }
    }
    if a.plan.is_none() {
        c.bind = a.bind;
    }
    c.reverse_next_hop_mac = a.reverse_next_hop_mac;
    c.mtu = a.mtu;
    c.frames = a.frames;
    c.name = a.name;
    c.idle = IdlePolicy {
        spin: a.spin,
        sleep_us: a.idle_sleep_us,
    };
    c.stage = stage;
    c.busy_poll_budget = a.busy_poll;
    c.ring_size = a.ring_size;
    let dp = start_forward(&c)?;
    print_line(&format!(
        "ready: {} workers, xdp {:?}; ports: {}",
        a.queues,
        dp.xdp_mode,
        dp.ports.join(", ")
    ));
    serve(dp, a.duration_s)
}

fn run(a: RunArgs) -> anyhow::Result<()> {
    let site = mongate_dataplane::config::Config::load(&a.config)?;
    let mut c = GatewayConfig::new(site);
    if let Some(n) = a.name {
        c.name = n;
    }
    c.core = a.core;
    c.workers = usize::from(a.workers);
    c.cores = a.cores;
    c.xdp_mode = a.xdp_mode;
    c.bind = a.bind;
    if let Some(path) = &a.plan {
        let (cores, mode) = gateway_hwplan(path, &c.site)?;
        c.core = cores.first().copied();
        c.workers = cores.len();
        c.cores = cores;
        c.xdp_mode = mode;
    }
    c.frames = a.frames;
    c.control = !a.no_control;
    c.report_every = std::time::Duration::from_millis(a.report_every_ms.clamp(1, 10_000));
    c.idle = IdlePolicy {
        spin: a.spin,
        sleep_us: a.idle_sleep_us,
    };
    c.pacing_lag_sleeps = a.pacing_lag_sleeps;
    c.settings.rate_unit_bytes = a.rate_unit_bytes.max(64);
    c.settings.uplink_mtu = a.uplink_mtu;
    let dp = start_gateway(&c)?;
    print_line(&format!(
        "ready: gateway {} (instance {}), {} worker(s), xdp {:?}; ports: {}",
        c.site.site.name,
        c.name,
        c.workers,
        dp.xdp_mode,
        dp.ports.join(", ")
    ));
    let reload = Reload {
        path: a.config.clone(),
        name: c.name.clone(),
    };
    serve_with_reload(dp, a.duration_s, Some(&reload))
}

fn relay(a: RelayArgs) -> anyhow::Result<()> {
    let c = RelayConfig {
        listen: a.listen,
        to: a.to,
        workers: a.workers,
        cores: a.cores,
        frames: a.frames,
        name: a.name,
        idle: IdlePolicy {
            spin: a.spin,
            sleep_us: a.idle_sleep_us,
        },
        rx_queue: a.rx_queue,
    };
    let dp = start_relay(&c)?;
    print_line(&format!(
        "ready: {} io_uring workers; ports: {}",
        a.workers,
        dp.ports.join(", ")
    ));
    serve(dp, a.duration_s)
}

/// The site gateway's workers and XDP mode from a `mongate-hwconfig` plan:
/// the plan's worker serving queue q of the site's interfaces becomes the
/// gateway's worker q, on the plan's core (the gateway's worker w binds
/// queue w of every interface).
fn gateway_hwplan(
    path: &std::path::Path,
    site: &mongate_dataplane::config::Config,
) -> anyhow::Result<(Vec<usize>, XdpMode)> {
    let at = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
    let plan = mongate_hwconfig::plan_from_str(&text).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
    let n = plan.workers.len();
    if n == 0 {
        anyhow::bail!("{at}: no workers (plan with `mongate-hwconfig plan --workers N`)");
    }
    let ours: Vec<&str> = std::iter::once(site.site.lan_interface.as_str())
        .chain(site.uplinks.iter().map(|u| u.interface.as_str()))
        .collect();
    let mut cores: Vec<Option<usize>> = vec![None; n];
    for w in &plan.workers {
        let core = usize::try_from(w.core)?;
        let mut queue = None;
        for q in &w.queues {
            if !ours.contains(&q.ifname.as_str()) {
                anyhow::bail!(
                    "{at}: worker {} has a queue of {}, not an interface of site {} ({})",
                    w.id,
                    q.ifname,
                    site.site.name,
                    ours.join(", ")
                );
            }
            let qi = usize::try_from(q.queue)?;
            if qi >= n || queue.is_some_and(|x| x != qi) {
                anyhow::bail!(
                    "{at}: worker {} on queue {} of {}: a gateway of {n} worker(s) runs worker w on queue w of every interface (0..{n})",
                    w.id,
                    q.queue,
                    q.ifname
                );
            }
            queue = Some(qi);
        }
        let Some(qi) = queue else {
            anyhow::bail!("{at}: worker {} has no queue", w.id);
        };
        if cores[qi].is_some() {
            anyhow::bail!("{at}: two workers on queue {qi}");
        }
        cores[qi] = Some(core);
    }
    let cores = cores
        .into_iter()
        .enumerate()
        .map(|(q, c)| c.ok_or_else(|| anyhow::anyhow!("{at}: no worker on queue {q}")))
        .collect::<anyhow::Result<Vec<usize>>>()?;
    let mode = match plan.xdp_mode {
        mongate_hwconfig::XdpMode::Native => XdpMode::Native,
        mongate_hwconfig::XdpMode::Generic => XdpMode::Generic,
    };
    Ok((cores, mode))
}

/// Where a site gateway re-reads its configuration on SIGHUP.
struct Reload {
    path: std::path::PathBuf,
    name: String,
}

/// Runs until a signal, the deadline, or a worker ending; prints final counters.
fn serve(
    dp: mongate_dataplane::app::RunningDataplane,
    duration_s: Option<f64>,
) -> anyhow::Result<()> {
    serve_with_reload(dp, duration_s, None)
}

/// As [`serve`]; with `reload`, SIGHUP re-reads the site configuration and
/// applies it whole or refuses it whole (docs/deploy.md "Reload"), writing
/// the outcome for `mongate reload`.
fn serve_with_reload(
    mut dp: mongate_dataplane::app::RunningDataplane,
    duration_s: Option<f64>,
    reload: Option<&Reload>,
) -> anyhow::Result<()> {
    use mongate_dataplane::app::reload::outcome_path;
    let stop = mongate_dataplane::app::signals::stop_on_signals();
    let hup = reload.map(|_| mongate_dataplane::app::signals::reload_on_sighup());
    if let Some(r) = reload {
        // Generation 0: where `mongate reload` finds this process.
        let at = outcome_path(&r.name, "dataplane");
        let ready = mongate_dataplane::app::reload::ReloadOutcome::new(
            "dataplane",
            0,
            true,
            "running; no reload yet".to_owned(),
        );
        if let Err(e) = ready.write(&at) {
            tracing::warn!(file = %at.display(), error = %e, "cannot write the reload outcome");
        }
    }
    let deadline = duration_s
        .map(|s| std::time::Instant::now() + std::time::Duration::from_secs_f64(s.max(0.0)));
    while !stop.load(Ordering::Relaxed)
        && deadline.is_none_or(|d| std::time::Instant::now() < d)
        && dp.healthy()
    {
        if let (Some(h), Some(r), Some(rl)) = (hup, reload, dp.reloader.as_mut())
            && h.swap(false, Ordering::Relaxed)
        {
            let out = rl.reload(&r.path);
            if out.applied {
                tracing::info!(reload = out.generation, outcome = %out.message, "reload applied");
            } else {
                tracing::warn!(
                    reload = out.generation,
                    reasons = %out.message.replace('\n', "; "),
                    "reload refused; the gateway runs on unchanged"
                );
            }
            let at = outcome_path(&r.name, "dataplane");
            if let Err(e) = out.write(&at) {
                tracing::warn!(file = %at.display(), error = %e, "cannot write the reload outcome");
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if let Some(r) = reload {
        let _ = std::fs::remove_file(outcome_path(&r.name, "dataplane"));
    }
    let healthy = dp.healthy();
    let snap = dp.stop();
    print_line(&serde_json::to_string(&snap)?);
    if !healthy {
        anyhow::bail!("a worker stopped unexpectedly");
    }
    Ok(())
}

fn stats(name: &str) -> anyhow::Result<()> {
    let s = StatsRegion::open(&stats_path(name))?;
    println!("{}", serde_json::to_string_pretty(&s.snapshot())?);
    Ok(())
}

fn main() -> ExitCode {
    // `BIN --generate man|complete-bash|...`, before the subcommand is
    // required (mongate_hwconfig::cli_generate).
    if let Some(code) = mongate_hwconfig::cli_generate::generate_if_asked::<Cli>() {
        return code;
    }
    let cli = Cli::parse();
    mongate_dataplane::app::logging::init(cli.log_format);
    let r = match cli.cmd {
        Cmd::Forward(a) => forward(a),
        Cmd::Relay(a) => relay(a),
        Cmd::Run(a) => run(a),
        Cmd::Stats { name } => {
            // A report: `stats | head` ends quietly (app::signals).
            default_sigpipe();
            stats(&name)
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mongate-dataplane: {e}");
            ExitCode::FAILURE
        }
    }
}
