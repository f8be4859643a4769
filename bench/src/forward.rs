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
use std::time::Duration;

use mongate_dataplane::bpf::XdpMode;
use mongate_dataplane::stats::{StatsRegion, stats_path};
use mongate_testbed::netns::NsChild;
use mongate_testbed::{ForwardTopology, Netns};

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
}

impl Mode {
    /// All modes in report order.
    pub const ALL: [Mode; 7] = [
        Mode::Kernel,
        Mode::AfxdpNative,
        Mode::AfxdpBusyPoll,
        Mode::AfxdpGeneric,
        Mode::Uring,
        Mode::RxDrop,
        Mode::TxOnly,
    ];
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
    /// The cells.
    pub cells: Vec<Cell>,
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

/// Runs the benchmark. Needs root. Builds one topology per mode and removes it.
pub fn run_forward(b: &ForwardBench) -> anyhow::Result<ForwardReport> {
    let mut cells: Vec<Cell> = Vec::new();
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
            name.clone(),
            "--bind".into(),
            "copy".into(),
        ];
        let mut dut: Option<NsChild> = None;
        match mode {
            Mode::Kernel => {
                topo.set_kernel_forwarding(true)?;
                rps(&topo.dut_ns, &dut_in.ifname, b.dut_core)?;
            }
            Mode::AfxdpNative | Mode::RxDrop => {
                threaded_napi(&topo.dut_ns, &dut_in.ifname, b.dut_core).ok();
                dut_args.extend(["--xdp-mode".into(), "native".into()]);
                if mode == Mode::RxDrop {
                    dut_args.extend(["--stage".into(), "drop".into()]);
                }
                dut = Some(start_dut(&topo, &b.dataplane_bin, &dut_args)?);
                threaded_napi(&topo.dut_ns, &dut_in.ifname, b.dut_core)?;
            }
            Mode::AfxdpBusyPoll => {
                dut_args.extend([
                    "--xdp-mode".into(),
                    "native".into(),
                    "--busy-poll".into(),
                    "64".into(),
                ]);
                dut = Some(start_dut(&topo, &b.dataplane_bin, &dut_args)?);
            }
            Mode::AfxdpGeneric => {
                rps(&topo.dut_ns, &dut_in.ifname, b.dut_core)?;
                dut_args.extend(["--xdp-mode".into(), "generic".into()]);
                dut = Some(start_dut(&topo, &b.dataplane_bin, &dut_args)?);
            }
            Mode::Uring => {
                rps(&topo.dut_ns, &dut_in.ifname, b.dut_core)?;
                let args: Vec<String> = vec![
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
                    name.clone(),
                ];
                dut = Some(start_dut(&topo, &b.dataplane_bin, &args)?);
            }
            Mode::TxOnly => {}
        }
        for &size in &b.sizes {
            let dst = match mode {
                Mode::Uring => crate::payload::BENCH_PORT_ADDR_DUT,
                _ => mongate_testbed::topology::forward::SINK_V4,
            };
            let addrs = forward_addrs(gen_if.mac.0, dut_in.mac.0, dst);
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
            let trial = |cfg: &GenConfig| -> anyhow::Result<RunReport> {
                if mode == Mode::TxOnly {
                    // Generator on the DUT's core, out of the DUT's egress port.
                    let mut a = cfg.addrs;
                    a.src_mac = dut_out.mac.0;
                    a.dst_mac = sink_if.mac.0;
                    let cfg = GenConfig {
                        addrs: a,
                        ..cfg.clone()
                    };
                    let dut_if = dut_out.ifname.clone();
                    let core = b.dut_core;
                    topo.dut_ns.run_in(move || -> anyhow::Result<RunReport> {
                        mongate_dataplane::worker::pin_to_core(core);
                        let mut gs = GenSide::open(&dut_if, q)?;
                        Ok(run(Some(&mut gs), None, &cfg))
                    })?
                } else {
                    let gi = gen_if.ifname.clone();
                    let si = sink_if.ifname.clone();
                    let core = b.gen_core;
                    let mut gs = topo.gen_ns.run_in(move || GenSide::open(&gi, q))??;
                    let mut sk = topo
                        .sink_ns
                        .run_in(move || SinkSide::open(&si, q, XdpMode::Generic))??;
                    let cfg2 = cfg.clone();
                    let skip_sink = mode == Mode::RxDrop;
                    std::thread::scope(|sc| {
                        sc.spawn(|| {
                            mongate_dataplane::worker::pin_to_core(core);
                            run(
                                Some(&mut gs),
                                if skip_sink { None } else { Some(&mut sk) },
                                &cfg2,
                            )
                        })
                        .join()
                    })
                    .map_err(|_| anyhow::anyhow!("load generator thread panicked"))
                }
            };
            // rx-drop: "received" is what the DUT's workers counted.
            let trial = |cfg: &GenConfig| -> anyhow::Result<RunReport> {
                let before = dut_rx_total(&name);
                let mut r = trial(cfg)?;
                if mode == Mode::RxDrop {
                    let got = dut_rx_total(&name).saturating_sub(before).min(r.sent);
                    r.received = got;
                    r.lost = r.sent - got;
                    r.loss = if r.sent > 0 {
                        r.lost as f64 / r.sent as f64
                    } else {
                        0.0
                    };
                    r.rx_pps = r.tx_pps * (1.0 - r.loss);
                }
                Ok(r)
            };
            // Maximum effort first: the generator's ceiling (and, for the raw
            // modes, the figure itself).
            let max_run = trial(&cfg)?;
            let gen_max = max_run.tx_pps;
            let raw = mode == Mode::TxOnly;
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
                Mode::TxOnly => (
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
            let generator_bound = bound || (mode != Mode::TxOnly && pps >= 0.9 * gen_max);
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
        if let Some(d) = dut {
            let _ = d.stop(Duration::from_secs(2));
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
    Ok(ForwardReport {
        dut_core: b.dut_core,
        gen_core: b.gen_core,
        queues: b.queues,
        seconds: b.seconds,
        offered_pps: b.rate_pps,
        loss_tolerance: b.loss_tolerance,
        cells,
    })
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
    s
}
