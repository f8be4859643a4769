//! `mongate`: the operator's front door.
//!
//! - `mongate demo`: builds an emulated topology in network namespaces, runs
//!   the mongate dataplane on real packets and reports what it achieved.
//! - `mongate status`: the counters of a running dataplane.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mongate_bench::loadgen::{GenConfig, GenSide, RunReport, SinkSide, forward_addrs, run};
use mongate_dataplane::afxdp::BindMode;
use mongate_dataplane::app::{ForwardConfig, start_forward};
use mongate_dataplane::bpf::XdpMode;
use mongate_dataplane::stats::{StatsRegion, stats_path};
use mongate_testbed::ForwardTopology;
use mongate_testbed::topology::forward::SINK_V4;

#[derive(Parser)]
#[command(
    name = "mongate",
    version,
    about = "mongate: mission-optimized multi-homed overlay gateway"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the demo on an emulated topology (needs root).
    Demo {
        /// Seconds of traffic.
        #[arg(long, default_value_t = 8)]
        seconds: u32,
        /// Offered load in packets per second (Poisson arrivals).
        #[arg(long, default_value_t = 200_000.0)]
        rate_pps: f64,
        /// Print the summary as JSON (the live table goes to stderr).
        #[arg(long)]
        json: bool,
    },
    /// Show the counters of a running dataplane.
    Status {
        /// Instance name (the dataplane's `--name`).
        #[arg(long, default_value = "dataplane")]
        name: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

/// The MON paper's triangle (B-C 5 Mbps, the others 10; classes A->C and
/// B->C): PFO must send A->C direct at 10 and via B at 5.
const TRIANGLE: &str = include_str!("../docs/examples/triangle-paper.json");

#[derive(serde::Serialize)]
struct DemoSummary {
    mission_plan: mongate_control::pfo::Plan,
    topology: &'static str,
    dataplane: String,
    seconds: u32,
    offered_pps: f64,
    sent: u64,
    received: u64,
    loss: f64,
    forwarded_pps: f64,
    latency_us_p50: f64,
    latency_us_p99: f64,
    per_queue_forwarded: Vec<u64>,
    dut_drops: std::collections::BTreeMap<String, u64>,
}

fn demo(seconds: u32, rate_pps: f64, json: bool) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!(
            "the demo builds network namespaces and attaches XDP programs: run it as root (sudo)"
        );
    }
    if let Some(r) = mongate_testbed::unavailable_reason() {
        anyhow::bail!("cannot build the emulated topology: {r}");
    }
    if !(1.0..=5_000_000.0).contains(&rate_pps) || seconds == 0 || seconds > 3600 {
        anyhow::bail!("--rate-pps must be in 1..=5e6 and --seconds in 1..=3600");
    }
    // The control side: the mission plan for the paper's triangle, solved exactly.
    let inst = mongate_control::pfo::Instance::from_json(TRIANGLE)
        .map_err(|e| anyhow::anyhow!("triangle instance: {e}"))?;
    let plan = mongate_control::pfo::solve(&inst, &mongate_control::pfo::SolveOptions::default());
    eprintln!(
        "mission plan for the MON triangle (PFO, exact MILP): {:?}, utility {:.3}, proven bound {:.3}, {:.1} ms",
        plan.status,
        plan.objective,
        plan.bound,
        plan.seconds * 1e3
    );
    for f in &plan.flows {
        eprintln!(
            "  flow {:<12} {:>6.2} Mbps  MONtra weight {:.3}",
            f.id, f.rate, f.weight
        );
    }
    eprintln!(
        "  (the overlay gateways that carry this plan on the wire come with the overlay issue)"
    );
    eprintln!(
        "building the emulated topology: site A (host) -- gateway -- site B (host), 2 queues per link, in network namespaces"
    );
    let topo = ForwardTopology::new(2)?;
    let (gen_if, dut_in, dut_out, sink_if) = (
        topo.gen_if().clone(),
        topo.dut_in_if().clone(),
        topo.dut_out_if().clone(),
        topo.sink_if().clone(),
    );
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut cfg = ForwardConfig::new(&dut_in.ifname, &dut_out.ifname, sink_if.mac.0);
    cfg.queues = 2;
    cfg.xdp_mode = XdpMode::Native;
    cfg.bind = BindMode::Copy;
    cfg.name = format!("demo{}", std::process::id());
    if ncpu > 1 {
        cfg.cores = vec![ncpu - 1];
    }
    let dp = topo.dut_ns.run_in(move || start_forward(&cfg))??;
    eprintln!("gateway dataplane ready: {}", dp.ports.join(", "));
    let gi = gen_if.ifname.clone();
    let mut gen_side = topo.gen_ns.run_in(move || GenSide::open(&gi, 2))??;
    let si = sink_if.ifname.clone();
    let mut sink = topo
        .sink_ns
        .run_in(move || SinkSide::open(&si, 2, XdpMode::Generic))??;
    eprintln!(
        "{:>4} {:>12} {:>12} {:>8} {:>10} {:>10}",
        "t(s)", "offered pps", "fwd pps", "loss %", "p50 us", "p99 us"
    );
    let mut total: Option<RunReport> = None;
    let mut lat50 = Vec::new();
    let mut lat99 = Vec::new();
    // rate_pps was checked to lie in 1..=5e6: one second of packets fits u64.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let per_second = rate_pps.ceil() as u64;
    for t in 1..=seconds {
        let g = GenConfig {
            addrs: forward_addrs(gen_if.mac.0, dut_in.mac.0, SINK_V4),
            flows: 256,
            sizes: vec![64, 576, 1500],
            rate_pps,
            poisson: true,
            count: per_second,
            duration: Duration::from_secs(2),
            seed: u64::from(t),
            progress: false,
        };
        let r = run(Some(&mut gen_side), Some(&mut sink), &g);
        eprintln!(
            "{:>4} {:>12.0} {:>12.0} {:>8.3} {:>10.1} {:>10.1}",
            t,
            r.tx_pps,
            r.rx_pps,
            r.loss * 100.0,
            r.latency_us_p50,
            r.latency_us_p99
        );
        lat50.push(r.latency_us_p50);
        lat99.push(r.latency_us_p99);
        total = Some(match total {
            None => r,
            Some(mut a) => {
                a.sent += r.sent;
                a.received += r.received;
                a.lost += r.lost;
                a.rx_pps += r.rx_pps;
                a
            }
        });
    }
    let snap = dp.stop();
    let tot = total.ok_or_else(|| anyhow::anyhow!("no traffic ran"))?;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let mut drops = std::collections::BTreeMap::new();
    for w in &snap {
        for (k, v) in &w.drops {
            *drops.entry(k.clone()).or_insert(0) += v;
        }
    }
    let s = DemoSummary {
        mission_plan: plan,
        topology: "host A -- gateway (mongate AF_XDP, native XDP, 2 queues) -- host B",
        dataplane: "L3 forwarding (the overlay pipeline arrives with the overlay issue)".into(),
        seconds,
        offered_pps: rate_pps,
        sent: tot.sent,
        received: tot.received,
        loss: if tot.sent > 0 {
            tot.lost as f64 / tot.sent as f64
        } else {
            0.0
        },
        forwarded_pps: tot.rx_pps / f64::from(seconds),
        latency_us_p50: median(&mut lat50),
        latency_us_p99: median(&mut lat99),
        per_queue_forwarded: snap.iter().map(|w| w.tx_packets[1]).collect(),
        dut_drops: drops,
    };
    drop(topo);
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!(
            "summary: {} packets sent, {} forwarded ({:.3}% loss), {:.0} pps, latency p50 {:.1} us p99 {:.1} us, per queue {:?}, gateway drops {:?}",
            s.sent,
            s.received,
            s.loss * 100.0,
            s.forwarded_pps,
            s.latency_us_p50,
            s.latency_us_p99,
            s.per_queue_forwarded,
            s.dut_drops
        );
    }
    Ok(())
}

fn status(name: &str, json: bool) -> anyhow::Result<()> {
    let path = stats_path(name);
    let r = StatsRegion::open(&path)
        .map_err(|e| anyhow::anyhow!("{e} (is a dataplane named {name:?} running? see --name)"))?;
    let snap = r.snapshot();
    if json {
        println!("{}", serde_json::to_string_pretty(&snap)?);
        return Ok(());
    }
    println!(
        "{:<7} {:>14} {:>14} {:>14} {:>14}  drops",
        "worker", "rx pkts", "tx pkts", "rx bytes", "tx bytes"
    );
    for (i, w) in snap.iter().enumerate() {
        println!(
            "{:<7} {:>14} {:>14} {:>14} {:>14}  {:?}",
            i,
            w.rx_packets.iter().sum::<u64>(),
            w.tx_packets.iter().sum::<u64>(),
            w.rx_bytes.iter().sum::<u64>(),
            w.tx_bytes.iter().sum::<u64>(),
            w.drops
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Demo {
            seconds,
            rate_pps,
            json,
        } => demo(seconds, rate_pps, json),
        Cmd::Status { name, json } => status(&name, json),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mongate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
