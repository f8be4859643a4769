//! `mongate-bench forward`: one run measures, side by side on the same
//! topology (gen —veth— dut —veth— sink, built and removed here), the Linux
//! kernel's IP forwarding, our AF_XDP forwarder (native and generic XDP), our
//! io_uring relay, and the engine's raw I/O limits (rx-drop, tx-only).
//!
//! Where work runs (2 cores): the generator and the sink share `gen_core`; the
//! device under test gets `dut_core`. veth delivers a packet in the sender's
//! context, so the DUT's receive work is steered onto `dut_core` explicitly:
//! RPS on the DUT's ingress queues (kernel, generic XDP, io_uring) or a
//! threaded NAPI poller pinned to `dut_core` (native XDP). The sink receives
//! with generic XDP behind RPS to `gen_core`, so its work never lands on the
//! DUT's core.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mongate_dataplane::bpf::XdpMode;
use mongate_dataplane::stats::{StatsRegion, stats_path};
use mongate_testbed::netns::NsChild;
use mongate_testbed::{ForwardTopology, Netns};

use crate::cpustat::{CpuCost, CpuTimes};
use crate::loadgen::{GenConfig, GenSide, RunReport, SinkSide, forward_addrs, run};

/// A device-under-test configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Linux IP forwarding.
    Kernel,
    /// Our AF_XDP forwarder, native XDP (copy mode on veth).
    AfxdpNative,
    /// Our AF_XDP forwarder, generic XDP.
    AfxdpGeneric,
    /// Our AF_XDP forwarder, native XDP, the worker busy-polling veth's NAPI
    /// (SO_PREFER_BUSY_POLL) instead of a poller thread.
    #[serde(rename = "afxdp-busypoll")]
    AfxdpBusyPoll,
    /// Our io_uring UDP relay.
    Uring,
    /// Raw limit: AF_XDP native receive, drop everything.
    RxDrop,
    /// Raw limit: AF_XDP transmit only, generator on the DUT core.
    TxOnly,
    /// `tx-only` with the socket's copy-mode send budget raised
    /// (`XDP_MAX_TX_SKB_BUDGET`, [`ForwardBench::tx_skb_budget`]).
    TxOnlyBudget,
}

impl Mode {
    /// All modes in report order.
    pub const ALL: [Mode; 8] = [
        Mode::Kernel,
        Mode::AfxdpNative,
        Mode::AfxdpBusyPoll,
        Mode::AfxdpGeneric,
        Mode::Uring,
        Mode::RxDrop,
        Mode::TxOnly,
        Mode::TxOnlyBudget,
    ];
    /// Our AF_XDP forwarders: compared with the engine's own I/O limit.
    pub const AFXDP: [Mode; 3] = [Mode::AfxdpNative, Mode::AfxdpBusyPoll, Mode::AfxdpGeneric];
    /// CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Kernel => "kernel",
            Mode::AfxdpNative => "afxdp-native",
            Mode::AfxdpGeneric => "afxdp-generic",
            Mode::AfxdpBusyPoll => "afxdp-busypoll",
            Mode::Uring => "uring",
            Mode::RxDrop => "rx-drop",
            Mode::TxOnly => "tx-only",
            Mode::TxOnlyBudget => "tx-only-budget",
        }
    }
    /// The generator runs on the DUT's core, out of its egress port.
    pub fn tx_only(self) -> bool {
        matches!(self, Mode::TxOnly | Mode::TxOnlyBudget)
    }
    /// Destination address of the generated traffic.
    fn dst(self) -> std::net::Ipv4Addr {
        match self {
            Mode::Uring => crate::payload::BENCH_PORT_ADDR_DUT,
            _ => mongate_testbed::topology::forward::SINK_V4,
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown mode {s:?}: use {}",
                    Mode::ALL.map(Mode::name).join(", ")
                )
            })
    }
}

/// Benchmark parameters.
#[derive(Clone, Debug)]
pub struct ForwardBench {
    /// DUT configurations to measure.
    pub modes: Vec<Mode>,
    /// Frame sizes (incl. FCS).
    pub sizes: Vec<u32>,
    /// Seconds of traffic per measurement.
    pub seconds: f64,
    /// Queues per veth (= DUT workers).
    pub queues: u16,
    /// Flows generated.
    pub flows: u16,
    /// Offered rate (pps); 0 = search for the highest rate whose loss stays
    /// within `loss_tolerance` (RFC 2544 throughput, binary search).
    pub rate_pps: f64,
    /// Loss ratio accepted by the throughput search.
    pub loss_tolerance: f64,
    /// Core of the device under test.
    pub dut_core: usize,
    /// Core of the generator and the sink.
    pub gen_core: usize,
    /// Path of `mongate-dataplane`.
    pub dataplane_bin: std::path::PathBuf,
    /// Progress on stderr.
    pub progress: bool,
    /// `tx-only-budget`: frames one copy-mode `sendto` hands to the driver
    /// (`XDP_MAX_TX_SKB_BUDGET`, 32..=8192; the kernel's default is 32).
    pub tx_skb_budget: u32,
    /// The AF_XDP DUTs' ring slots (`--ring-size`; None: the dataplane's default).
    pub dut_ring_size: Option<u32>,
    /// Offered load of the CPU-per-packet trials, packets/s (0: none).
    pub cpu_load_pps: f64,
    /// Seconds of each CPU-per-packet trial.
    pub cpu_seconds: f64,
    /// The DUT's idle policy in the CPU trials: (spin, sleep us).
    pub cpu_idle: (u32, u32),
    /// Only the CPU-per-packet trials (no throughput search).
    pub cpu_only: bool,
}

/// What the CPU figures count as busy.
pub const CPU_BUSY: &str = "user+nice+system+irq+softirq of the DUT core in /proc/stat (guest is inside user; iowait and steal left out)";

/// The DUT worker's idle policy in the CPU trials.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct CpuIdle {
    /// Empty iterations spent spinning.
    pub spin: u32,
    /// Then sleeps of this many us per empty iteration.
    pub sleep_us: u32,
}

/// CPU the DUT core spent per packet at a fixed offered load.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CpuCell {
    /// DUT configuration.
    pub mode: Mode,
    /// Frame size incl. FCS.
    pub size: u32,
    /// Offered load, packets/s.
    pub load_pps: f64,
    /// Busy ns of the DUT core per packet counted (`None`: see `error`).
    pub cpu_ns_per_packet: Option<f64>,
    /// The whole reading.
    pub cost: Option<CpuCost>,
    /// What the packets counted are.
    pub counted: &'static str,
    /// Why there is no figure.
    pub error: Option<String>,
    /// Sent / received / loss of the trial.
    pub run: RunReport,
}

impl CpuCell {
    fn new(
        mode: Mode,
        size: u32,
        cfg: &GenConfig,
        run: RunReport,
        delta: Option<Result<CpuTimes, String>>,
        background: Option<f64>,
    ) -> Self {
        let (cost, error) = crate::cpustat::trial_cost(delta, run.received, background);
        Self {
            mode,
            size,
            load_pps: cfg.rate_pps,
            cpu_ns_per_packet: cost.map(|c| c.cpu_ns_per_packet),
            cost,
            counted: if mode == Mode::RxDrop {
                "received by the DUT's workers (their counters)"
            } else {
                "received at the sink"
            },
            error,
            run,
        }
    }

    fn summary(&self) -> String {
        match (&self.cost, &self.error) {
            (Some(c), _) => crate::cpustat::summary(c, self.run.loss),
            (None, Some(e)) => format!("no figure: {e}"),
            (None, None) => "no figure".into(),
        }
    }
}

/// The engine's own I/O limit at one size: receive and transmit on one
/// core, each measured alone, take 1/rx + 1/tx seconds per packet together.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EngineLimit {
    /// Frame size incl. FCS.
    pub size: u32,
    /// `rx-drop` Mpps.
    pub rx_drop_mpps: f64,
    /// `rx-drop` was set by the generator: the limit is then a lower bound.
    pub rx_drop_generator_bound: bool,
    /// `tx-only` Mpps (default send budget).
    pub tx_only_mpps: f64,
    /// 1/(1/rx-drop + 1/tx-only), Mpps.
    pub engine_limit_mpps: f64,
    /// Each AF_XDP forwarder's Mpps over `engine_limit_mpps`.
    pub forward_over_engine_limit: std::collections::BTreeMap<String, f64>,
    /// `tx-only-budget` Mpps, if measured.
    pub tx_only_budget_mpps: Option<f64>,
}

/// Receive then transmit on one core: 1/(1/rx + 1/tx) (Mpps in, Mpps out);
/// `None` unless both are positive and finite.
pub fn combined_limit(rx: f64, tx: f64) -> Option<f64> {
    (rx > 0.0 && tx > 0.0 && rx.is_finite() && tx.is_finite()).then(|| 1.0 / (1.0 / rx + 1.0 / tx))
}

/// [`EngineLimit`] at every size with both `rx-drop` and `tx-only` cells.
pub fn engine_limits(cells: &[Cell]) -> Vec<EngineLimit> {
    let find = |m: Mode, s: u32| cells.iter().find(|c| c.mode == m && c.size == s);
    let mut sizes: Vec<u32> = cells.iter().map(|c| c.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
        .into_iter()
        .filter_map(|s| {
            let rx = find(Mode::RxDrop, s)?;
            let tx = find(Mode::TxOnly, s)?;
            let limit = combined_limit(rx.mpps, tx.mpps)?;
            Some(EngineLimit {
                size: s,
                rx_drop_mpps: rx.mpps,
                rx_drop_generator_bound: rx.generator_bound,
                tx_only_mpps: tx.mpps,
                engine_limit_mpps: limit,
                forward_over_engine_limit: Mode::AFXDP
                    .iter()
                    .filter_map(|&m| Some((m.name().to_string(), find(m, s)?.mpps / limit)))
                    .collect(),
                tx_only_budget_mpps: find(Mode::TxOnlyBudget, s).map(|c| c.mpps),
            })
        })
        .collect()
}

/// One measured cell.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Cell {
    /// DUT configuration.
    pub mode: Mode,
    /// Frame size incl. FCS.
    pub size: u32,
    /// Forwarded packets per second (per DUT core: the DUT has one core).
    pub mpps: f64,
    /// Gbit/s of frames incl. FCS.
    pub gbps: f64,
    /// Ratio to the kernel's Mpps at the same size (if measured).
    pub ratio_to_kernel: Option<f64>,
    /// Details of the run at the reported rate (sent/received/loss/latency).
    pub run: RunReport,
    /// The generator could not offer more than this (pps, measured at
    /// maximum effort in the same run): when `mpps` is close to it, the figure
    /// is a lower bound set by the generator, not the DUT's limit.
    pub generator_max_pps: f64,
    /// True when the search ended at the generator's limit.
    pub generator_bound: bool,
    /// What the figure is (e.g. "forwarded at sink", "received by DUT").
    pub measured: &'static str,
}

/// The whole report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ForwardReport {
    /// Cores: DUT and generator/sink.
    pub dut_core: usize,
    /// Generator and sink core.
    pub gen_core: usize,
    /// Queues (DUT workers).
    pub queues: u16,
    /// Seconds per cell.
    pub seconds: f64,
    /// Offered rate (0 = throughput search).
    pub offered_pps: f64,
    /// Loss tolerance of the search.
    pub loss_tolerance: f64,
    /// `tx-only-budget`'s send budget (if that mode ran).
    pub tx_skb_budget: Option<u32>,
    /// The AF_XDP DUTs' rx/tx ring slots (None: the dataplane's default, 4096).
    pub dut_ring_size: Option<u32>,
    /// The cells.
    pub cells: Vec<Cell>,
    /// The engine's I/O limit and the forwarders' share of it, per size.
    pub engine_limits: Vec<EngineLimit>,
    /// Offered load of the CPU trials (0: none ran).
    pub cpu_load_pps: f64,
    /// Seconds per CPU trial.
    pub cpu_seconds: f64,
    /// The DUT's idle policy in the CPU trials.
    pub cpu_idle: CpuIdle,
    /// What counts as busy.
    pub cpu_busy: &'static str,
    /// CPU per packet per mode and size (no tx-only modes: their generator
    /// spins on the DUT core).
    pub cpu: Vec<CpuCell>,
}

/// Runs `script` with `sh -c` in `ns`; its stderr in the error.
pub(crate) fn sh(ns: &Netns, script: &str) -> anyhow::Result<()> {
    let out = ns.exec_unchecked(&["sh", "-c", script])?;
    if !out.status.success() {
        anyhow::bail!(
            "{}: `{script}` failed: {}",
            ns.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn cpu_mask(core: usize) -> String {
    format!("{:x}", 1u128 << core.min(127))
}

/// Steers receive processing of `ifname` (all its queues) to `core` with RPS.
pub(crate) fn rps(ns: &Netns, ifname: &str, core: usize) -> anyhow::Result<()> {
    sh(
        ns,
        &format!(
            "for q in /sys/class/net/{ifname}/queues/rx-*; do echo {} > $q/rps_cpus; done",
            cpu_mask(core)
        ),
    )
}

/// Turns on threaded NAPI for `ifname` and pins its poller threads to `core`.
pub(crate) fn threaded_napi(ns: &Netns, ifname: &str, core: usize) -> anyhow::Result<()> {
    sh(ns, &format!("echo 1 > /sys/class/net/{ifname}/threaded"))?;
    // Poller kthreads are named napi/<ifname>-<id>.
    let mut pinned = 0;
    for e in std::fs::read_dir("/proc")?.flatten() {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim().starts_with(&format!("napi/{ifname}-")) {
            let pid = e.file_name().to_string_lossy().into_owned();
            let st = std::process::Command::new("taskset")
                .args(["-pc", &core.to_string(), &pid])
                .output()?;
            if st.status.success() {
                pinned += 1;
            }
            // The poller plays the part of a NIC interrupt: it must preempt
            // a busy-polling worker on the same core, as softirq would.
            if std::env::var_os("MONGATE_BENCH_NO_RT").is_none() {
                let _ = std::process::Command::new("chrt")
                    .args(["-f", "-p", "50", &pid])
                    .output();
            }
        }
    }
    if pinned == 0 {
        anyhow::bail!("{ifname}: no threaded NAPI poller found to pin");
    }
    Ok(())
}

/// Starts `mongate-dataplane` in the DUT namespace and waits (at most 15 s)
/// for its `ready` line.
fn start_dut(
    topo: &ForwardTopology,
    bin: &std::path::Path,
    args: &[String],
) -> anyhow::Result<NsChild> {
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", topo.dut_ns.name()])
        .arg(bin)
        .args(args);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = topo.dut_ns.spawn(cmd)?;
    let out = child
        .take_stdout()
        .ok_or_else(|| anyhow::anyhow!("dataplane: no stdout"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("ready") {
                let _ = tx.send(line);
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(15)) {
        Ok(_) => Ok(child),
        Err(_) => {
            let _ = child.stop(Duration::from_millis(500));
            let mut err = String::new();
            if let Some(mut e) = child.take_stderr() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            anyhow::bail!("mongate-dataplane did not become ready: {}", err.trim())
        }
    }
}

/// rx-drop: the DUT's count once it has taken what was still in flight
/// when the generator stopped (in the veth and the XDP socket's rings: up to
/// thousands of packets, 0.1 % of a one-second trial at 0.3 Mpps). As the
/// sink drains for the forwarding modes: the count is read until it has
/// reached `want` or not moved for 50 ms, at most 2 s.
fn settled_dut_rx(name: &str, before: u64, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut last = dut_rx_total(name).saturating_sub(before);
    let mut still_since = Instant::now();
    while last < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        let now = dut_rx_total(name).saturating_sub(before);
        if now != last {
            last = now;
            still_since = Instant::now();
        } else if still_since.elapsed() >= Duration::from_millis(50) {
            break;
        }
    }
    last
}

fn dut_rx_total(name: &str) -> u64 {
    StatsRegion::open(&stats_path(name))
        .map(|s| {
            s.snapshot()
                .iter()
                .map(|w| w.rx_packets.iter().sum::<u64>())
                .sum()
        })
        .unwrap_or(0)
}

/// Starts (or configures, for `kernel`) the DUT of `mode` on `topo`.
/// `idle`: the worker's idle policy as (spin, sleep us); `None` keeps the
/// dataplane's busy-polling default (the throughput cells).
fn start_mode(
    b: &ForwardBench,
    mode: Mode,
    topo: &ForwardTopology,
    name: &str,
    idle: Option<(u32, u32)>,
) -> anyhow::Result<Option<NsChild>> {
    let dut_in = topo.dut_in_if().clone();
    let dut_out = topo.dut_out_if().clone();
    let sink_if = topo.sink_if().clone();
    let q = u32::from(b.queues);
    let idle_args: Vec<String> = match idle {
        Some((spin, sleep_us)) => vec![
            "--spin".into(),
            spin.to_string(),
            "--idle-sleep-us".into(),
            sleep_us.to_string(),
        ],
        None => Vec::new(),
    };
    let mut dut_args: Vec<String> = vec![
        "forward".into(),
        "--in".into(),
        dut_in.ifname.clone(),
        "--out".into(),
        dut_out.ifname.clone(),
        "--queues".into(),
        q.to_string(),
        "--cores".into(),
        b.dut_core.to_string(),
        "--next-hop-mac".into(),
        sink_if.mac.to_string(),
        "--name".into(),
        name.to_string(),
        "--bind".into(),
        "copy".into(),
    ];
    dut_args.extend(idle_args.iter().cloned());
    if let Some(n) = b.dut_ring_size {
        dut_args.extend(["--ring-size".into(), n.to_string()]);
    }
    let dut = match mode {
        Mode::Kernel => {
            topo.set_kernel_forwarding(true)?;
            rps(&topo.dut_ns, &dut_in.ifname, b.dut_core)?;
            None
        }
        Mode::AfxdpNative | Mode::RxDrop => {
            threaded_napi(&topo.dut_ns, &dut_in.ifname, b.dut_core).ok();
            dut_args.extend(["--xdp-mode".into(), "native".into()]);
            if mode == Mode::RxDrop {
                dut_args.extend(["--stage".into(), "drop".into()]);
            }
            let d = start_dut(topo, &b.dataplane_bin, &dut_args)?;
            threaded_napi(&topo.dut_ns, &dut_in.ifname, b.dut_core)?;
            Some(d)
        }
        Mode::AfxdpBusyPoll => {
            dut_args.extend([
                "--xdp-mode".into(),
                "native".into(),
                "--busy-poll".into(),
                "64".into(),
            ]);
            Some(start_dut(topo, &b.dataplane_bin, &dut_args)?)
        }
        Mode::AfxdpGeneric => {
            rps(&topo.dut_ns, &dut_in.ifname, b.dut_core)?;
            dut_args.extend(["--xdp-mode".into(), "generic".into()]);
            Some(start_dut(topo, &b.dataplane_bin, &dut_args)?)
        }
        Mode::Uring => {
            rps(&topo.dut_ns, &dut_in.ifname, b.dut_core)?;
            let mut args: Vec<String> = vec![
                "relay".into(),
                "--listen".into(),
                format!(
                    "{}:{}",
                    crate::payload::BENCH_PORT_ADDR_DUT,
                    crate::payload::BENCH_PORT
                ),
                "--to".into(),
                format!(
                    "{}:{}",
                    mongate_testbed::topology::forward::SINK_V4,
                    crate::payload::BENCH_PORT
                ),
                "--workers".into(),
                q.to_string(),
                "--cores".into(),
                b.dut_core.to_string(),
                "--name".into(),
                name.to_string(),
            ];
            if let Some((spin, sleep_us)) = idle {
                args.extend([
                    "--spin".into(),
                    spin.to_string(),
                    "--idle-sleep-us".into(),
                    sleep_us.to_string(),
                ]);
            }
            Some(start_dut(topo, &b.dataplane_bin, &args)?)
        }
        Mode::TxOnly | Mode::TxOnlyBudget => None,
    };
    Ok(dut)
}

/// Runs the benchmark. Needs root. Builds one topology per mode and removes it.
pub fn run_forward(b: &ForwardBench) -> anyhow::Result<ForwardReport> {
    let mut cells: Vec<Cell> = Vec::new();
    let mut cpu: Vec<CpuCell> = Vec::new();
    for &mode in &b.modes {
        if b.progress {
            eprintln!(
                "== {} ({} queue(s), DUT on core {}, generator+sink on core {})",
                mode.name(),
                b.queues,
                b.dut_core,
                b.gen_core
            );
        }
        let topo = ForwardTopology::new(b.queues)?;
        let gen_if = topo.gen_if().clone();
        let dut_in = topo.dut_in_if().clone();
        let dut_out = topo.dut_out_if().clone();
        let sink_if = topo.sink_if().clone();
        let q = u32::from(b.queues);
        // Sink: generic XDP behind RPS to the generator's core.
        rps(&topo.sink_ns, &sink_if.ifname, b.gen_core)?;
        let name = format!("bench{}", std::process::id());
        let tx_budget = if mode == Mode::TxOnlyBudget {
            b.tx_skb_budget
        } else {
            0
        };
        // Opens the generator and the sink (its sockets and XDP program)
        // for one trial: on the DUT's egress port and core for the tx-only
        // modes (no sink), else gen's and sink's ports.
        let open_sides = || -> anyhow::Result<(GenSide, Option<SinkSide>)> {
            if mode.tx_only() {
                let dut_if = dut_out.ifname.clone();
                let core = b.dut_core;
                let gs = topo.dut_ns.run_in(move || -> anyhow::Result<GenSide> {
                    mongate_dataplane::worker::pin_to_core(core);
                    GenSide::open_budget(&dut_if, q, tx_budget)
                })??;
                return Ok((gs, None));
            }
            let gi = gen_if.ifname.clone();
            let si = sink_if.ifname.clone();
            let gs = topo.gen_ns.run_in(move || GenSide::open(&gi, q))??;
            let sk = topo
                .sink_ns
                .run_in(move || SinkSide::open(&si, q, XdpMode::Generic))??;
            Ok((gs, Some(sk)))
        };
        // The generator's addresses: out of the DUT's egress port for the
        // tx-only modes.
        let addrs_of = |a: crate::payload::FlowAddrs| {
            if mode.tx_only() {
                let mut a = a;
                a.src_mac = dut_out.mac.0;
                a.dst_mac = sink_if.mac.0;
                a
            } else {
                a
            }
        };
        // One trial on opened sides; `around` runs between the generator's
        // start and end on its thread (pinned: the DUT core for the tx-only
        // modes, else the generator's core).
        let run_sides = |gs: &mut GenSide,
                         sk: Option<&mut SinkSide>,
                         cfg: &GenConfig,
                         cpu_core: Option<usize>|
         -> anyhow::Result<(RunReport, Option<Result<CpuTimes, String>>)> {
            let core = if mode.tx_only() {
                b.dut_core
            } else {
                b.gen_core
            };
            let skip_sink = mode == Mode::RxDrop;
            let sk = if skip_sink { None } else { sk };
            let cfg = GenConfig {
                addrs: addrs_of(cfg.addrs),
                ..cfg.clone()
            };
            let go = || {
                mongate_dataplane::worker::pin_to_core(core);
                match cpu_core {
                    Some(c) => {
                        let (r, d) = crate::cpustat::around(c, || run(Some(gs), sk, &cfg));
                        (r, Some(d))
                    }
                    None => (run(Some(gs), sk, &cfg), None),
                }
            };
            // The sockets are bound: any thread may drive them.
            std::thread::scope(|sc| sc.spawn(go).join())
                .map_err(|_| anyhow::anyhow!("load generator thread panicked"))
        };
        let trial = |cfg: &GenConfig| -> anyhow::Result<RunReport> {
            let (mut gs, mut sk) = open_sides()?;
            let before = dut_rx_total(&name);
            let (mut r, _) = run_sides(&mut gs, sk.as_mut(), cfg, None)?;
            // rx-drop: "received" is what the DUT's workers counted.
            if mode == Mode::RxDrop {
                let got = settled_dut_rx(&name, before, r.sent);
                count_dut_rx(&mut r, got);
            }
            Ok(r)
        };
        if !b.cpu_only {
            let dut = start_mode(b, mode, &topo, &name, None)?;
            let addrs = forward_addrs(gen_if.mac.0, dut_in.mac.0, mode.dst());
            let r = measure_throughput(b, mode, addrs, &trial, &mut cells);
            if let Some(d) = dut {
                let _ = d.stop(Duration::from_secs(2));
            }
            r?;
        }
        if b.cpu_load_pps > 0.0 {
            if mode.tx_only() {
                if b.progress {
                    eprintln!(
                        "   CPU per packet: not measured for {} (its generator paces by spinning on the DUT core)",
                        mode.name()
                    );
                }
            } else {
                // The DUT again, now sleeping when idle as a gateway does,
                // so the core's idle time is idle.
                let dut = start_mode(b, mode, &topo, &name, Some(b.cpu_idle))?;
                let r = (|| -> anyhow::Result<()> {
                    for &size in &b.sizes {
                        let cfg = GenConfig {
                            addrs: forward_addrs(gen_if.mac.0, dut_in.mac.0, mode.dst()),
                            flows: b.flows,
                            sizes: vec![size],
                            rate_pps: b.cpu_load_pps,
                            poisson: false,
                            count: u64::MAX,
                            duration: Duration::from_secs_f64(b.cpu_seconds),
                            seed: 1,
                            progress: false,
                        };
                        let (mut gs, mut sk) = open_sides()?;
                        // The core with the DUT idle and the sides open.
                        let bg = crate::cpustat::background(b.dut_core, 1.0);
                        let before = dut_rx_total(&name);
                        let (mut r, d) = run_sides(&mut gs, sk.as_mut(), &cfg, Some(b.dut_core))?;
                        if mode == Mode::RxDrop {
                            let got = settled_dut_rx(&name, before, r.sent);
                            count_dut_rx(&mut r, got);
                        }
                        let c = CpuCell::new(mode, size, &cfg, r, d, bg.ok());
                        if b.progress {
                            eprintln!(
                                "   CPU {:>5} B at {:.3} Mpps: {}",
                                size,
                                b.cpu_load_pps / 1e6,
                                c.summary()
                            );
                        }
                        cpu.push(c);
                    }
                    Ok(())
                })();
                if let Some(d) = dut {
                    let _ = d.stop(Duration::from_secs(2));
                }
                r?;
            }
        }
        drop(topo);
    }
    // Ratios to the kernel at the same size.
    let kernel: Vec<(u32, f64)> = cells
        .iter()
        .filter(|c| c.mode == Mode::Kernel)
        .map(|c| (c.size, c.mpps))
        .collect();
    for c in cells.iter_mut() {
        if let Some((_, k)) = kernel.iter().find(|(s, k)| *s == c.size && *k > 0.0) {
            c.ratio_to_kernel = Some(c.mpps / k);
        }
    }
    let engine_limits = engine_limits(&cells);
    Ok(ForwardReport {
        dut_core: b.dut_core,
        gen_core: b.gen_core,
        queues: b.queues,
        seconds: b.seconds,
        offered_pps: b.rate_pps,
        loss_tolerance: b.loss_tolerance,
        tx_skb_budget: b
            .modes
            .contains(&Mode::TxOnlyBudget)
            .then_some(b.tx_skb_budget),
        dut_ring_size: b.dut_ring_size,
        cells,
        engine_limits,
        cpu_load_pps: b.cpu_load_pps,
        cpu_seconds: b.cpu_seconds,
        cpu_idle: CpuIdle {
            spin: b.cpu_idle.0,
            sleep_us: b.cpu_idle.1,
        },
        cpu_busy: CPU_BUSY,
        cpu,
    })
}

/// rx-drop: the DUT's workers' count replaces the sink's.
fn count_dut_rx(r: &mut RunReport, got: u64) {
    let got = got.min(r.sent);
    r.received = got;
    r.lost = r.sent - got;
    r.loss = if r.sent > 0 {
        r.lost as f64 / r.sent as f64
    } else {
        0.0
    };
    r.rx_pps = r.tx_pps * (1.0 - r.loss);
}

/// Every size of one mode: the throughput search on its running DUT.
fn measure_throughput(
    b: &ForwardBench,
    mode: Mode,
    addrs: crate::payload::FlowAddrs,
    trial: &dyn Fn(&GenConfig) -> anyhow::Result<RunReport>,
    cells: &mut Vec<Cell>,
) -> anyhow::Result<()> {
    for &size in &b.sizes {
        let cfg = GenConfig {
            addrs,
            flows: b.flows,
            sizes: vec![size],
            rate_pps: b.rate_pps,
            poisson: false,
            count: u64::MAX,
            duration: Duration::from_secs_f64(b.seconds),
            seed: 1,
            progress: b.progress,
        };
        // Maximum effort first: the generator's ceiling (and, for the raw
        // modes, the figure itself).
        let max_run = trial(&cfg)?;
        let gen_max = max_run.tx_pps;
        let raw = mode.tx_only();
        let (report, bound) = if raw || b.rate_pps > 0.0 {
            if b.rate_pps > 0.0 && !raw {
                (
                    trial(&GenConfig {
                        rate_pps: b.rate_pps,
                        ..cfg.clone()
                    })?,
                    false,
                )
            } else {
                (max_run, true)
            }
        } else if max_run.loss <= b.loss_tolerance {
            (max_run, true)
        } else {
            // Binary search on the offered rate, 1-second trials.
            let (mut lo, mut hi) = (0.0f64, gen_max);
            let mut best: Option<RunReport> = None;
            for _ in 0..7 {
                let rate = if best.is_none() && lo == 0.0 {
                    hi * 0.5
                } else {
                    (lo + hi) / 2.0
                };
                let r = trial(&GenConfig {
                    rate_pps: rate,
                    duration: Duration::from_secs(1),
                    ..cfg.clone()
                })?;
                if b.progress {
                    eprintln!(
                        "   search {:>5} B at {:>8.3} Mpps: loss {:.3}%",
                        size,
                        rate / 1e6,
                        r.loss * 100.0
                    );
                }
                if r.loss <= b.loss_tolerance && r.tx_pps >= 0.97 * rate {
                    lo = rate;
                    best = Some(r);
                } else {
                    hi = rate;
                }
            }
            match best {
                Some(r) => (r, false),
                None => (
                    trial(&GenConfig {
                        rate_pps: gen_max * 0.01,
                        duration: Duration::from_secs(1),
                        ..cfg.clone()
                    })?,
                    false,
                ),
            }
        };
        let (pps, measured) = match mode {
            Mode::RxDrop => (
                report.rx_pps,
                "highest rate received by the DUT's workers (their counters) with loss within tolerance",
            ),
            Mode::TxOnly | Mode::TxOnlyBudget => (
                report.tx_pps,
                "sent by the DUT core (generator on the DUT core)",
            ),
            _ if b.rate_pps > 0.0 => (
                report.rx_pps,
                "forwarded at the offered rate, counted at the sink",
            ),
            _ => (
                report.rx_pps,
                "highest rate forwarded with loss within tolerance, counted at the sink",
            ),
        };
        let generator_bound = bound || (!mode.tx_only() && pps >= 0.9 * gen_max);
        let gbps = pps * f64::from(size) * 8.0 / 1e9;
        if b.progress {
            eprintln!(
                "   {:>5} B: {:>7.3} Mpps  loss {:>6.2}%  p50 {:>8.1} us  p99 {:>8.1} us",
                size,
                pps / 1e6,
                report.loss * 100.0,
                report.latency_us_p50,
                report.latency_us_p99
            );
        }
        cells.push(Cell {
            mode,
            size,
            mpps: pps / 1e6,
            gbps,
            ratio_to_kernel: None,
            run: report,
            measured,
            generator_max_pps: gen_max,
            generator_bound,
        });
    }
    Ok(())
}

/// The human table.
pub fn table(r: &ForwardReport) -> String {
    let mut s = format!(
        "forwarding benchmark: DUT on core {}, generator+sink on core {}, {} queue(s), {:.1} s per cell, offered {}\n",
        r.dut_core,
        r.gen_core,
        r.queues,
        r.seconds,
        if r.offered_pps > 0.0 {
            format!("{:.3} Mpps", r.offered_pps / 1e6)
        } else {
            format!("throughput search, loss <= {}%", r.loss_tolerance * 100.0)
        }
    );
    s += &format!(
        "{:<14} {:>6} {:>9} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9}\n",
        "mode", "size", "Mpps", "Gbps", "x kernel", "loss %", "p50 us", "p99 us", "gen max"
    );
    for c in &r.cells {
        s += &format!(
            "{:<14} {:>6} {:>9.3} {:>8.2} {:>8} {:>8.2} {:>10.1} {:>10.1} {:>8.3}{}\n",
            c.mode.name(),
            c.size,
            c.mpps,
            c.gbps,
            c.ratio_to_kernel.map_or("-".into(), |x| format!("{x:.2}")),
            c.run.loss * 100.0,
            c.run.latency_us_p50,
            c.run.latency_us_p99,
            c.generator_max_pps / 1e6,
            if c.generator_bound { "*" } else { "" }
        );
    }
    s += "* generator-bound: the figure is a lower bound set by the generator+sink core, not the DUT's limit\n";
    for l in &r.engine_limits {
        s += &format!(
            "size {:>5}: engine limit 1/(1/rx-drop + 1/tx-only) = 1/(1/{:.3} + 1/{:.3}) = {:.3} Mpps{}; forwarders over it: {}{}\n",
            l.size,
            l.rx_drop_mpps,
            l.tx_only_mpps,
            l.engine_limit_mpps,
            if l.rx_drop_generator_bound {
                " (rx-drop generator-bound: a lower bound)"
            } else {
                ""
            },
            l.forward_over_engine_limit
                .iter()
                .map(|(m, x)| format!("{m} {x:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            l.tx_only_budget_mpps
                .map_or(String::new(), |x| format!("; tx-only-budget {x:.3} Mpps"))
        );
    }
    if let Some(n) = r.tx_skb_budget {
        s += &format!("tx-only-budget: XDP_MAX_TX_SKB_BUDGET = {n} (tx-only: the kernel's 32)\n");
    }
    if let Some(n) = r.dut_ring_size {
        s += &format!("AF_XDP DUTs: {n}-slot rx/tx rings (--dut-ring-size; default 4096)\n");
    }
    if !r.cpu.is_empty() {
        s += &format!(
            "CPU per packet at {:.3} Mpps offered, {:.1} s per trial, DUT idle policy: spin {} then {} us sleeps; busy = {}\n",
            r.cpu_load_pps / 1e6,
            r.cpu_seconds,
            r.cpu_idle.spin,
            r.cpu_idle.sleep_us,
            r.cpu_busy
        );
        for c in &r.cpu {
            s += &format!("  {:<14} {:>6} B: {}\n", c.mode.name(), c.size, c.summary());
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(mode: Mode, size: u32, mpps: f64, generator_bound: bool) -> Cell {
        Cell {
            mode,
            size,
            mpps,
            gbps: 0.0,
            ratio_to_kernel: None,
            run: RunReport {
                sent: 0,
                received: 0,
                lost: 0,
                loss: 0.0,
                reordered: 0,
                foreign: 0,
                tx_pps: 0.0,
                rx_pps: 0.0,
                rx_gbps: 0.0,
                latency_us_p50: 0.0,
                latency_us_p99: 0.0,
                latency_us_max: 0.0,
                per_queue_rx: Vec::new(),
            },
            generator_max_pps: 0.0,
            generator_bound,
            measured: "",
        }
    }

    #[test]
    fn combined_limit_is_the_harmonic_sum() {
        // 1 us to receive + 0.5 us to send = 1.5 us per packet.
        let x = combined_limit(1.0, 2.0).expect("limit");
        assert!((x - 1.0 / 1.5).abs() < 1e-12);
        assert_eq!(combined_limit(0.0, 2.0), None);
        assert_eq!(combined_limit(1.0, f64::NAN), None);
        assert_eq!(combined_limit(1.0, f64::INFINITY), None);
    }

    #[test]
    fn engine_limits_per_size() {
        let cells = vec![
            cell(Mode::AfxdpNative, 64, 0.5, false),
            cell(Mode::AfxdpGeneric, 64, 0.25, false),
            cell(Mode::RxDrop, 64, 2.0, true),
            cell(Mode::TxOnly, 64, 2.0, true),
            cell(Mode::TxOnlyBudget, 64, 2.5, true),
            cell(Mode::Kernel, 64, 0.4, false),
            // No tx-only at 512: no limit there.
            cell(Mode::RxDrop, 512, 2.0, false),
            cell(Mode::AfxdpNative, 512, 0.5, false),
        ];
        let l = engine_limits(&cells);
        assert_eq!(l.len(), 1);
        let l = &l[0];
        assert_eq!(l.size, 64);
        assert!((l.engine_limit_mpps - 1.0).abs() < 1e-12);
        assert!(l.rx_drop_generator_bound);
        assert_eq!(l.tx_only_budget_mpps, Some(2.5));
        assert_eq!(l.forward_over_engine_limit.len(), 2, "kernel is not ours");
        assert!((l.forward_over_engine_limit["afxdp-native"] - 0.5).abs() < 1e-12);
        assert!((l.forward_over_engine_limit["afxdp-generic"] - 0.25).abs() < 1e-12);
    }

    #[test]
    fn modes_parse() {
        for m in Mode::ALL {
            assert_eq!(m.name().parse::<Mode>(), Ok(m));
        }
        assert!(Mode::TxOnlyBudget.tx_only() && !Mode::RxDrop.tx_only());
        assert!("tx-only-nope".parse::<Mode>().is_err());
    }
}
