//! `mongate-bench`: line-rate benchmarks on the mongate engine.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mongate_bench::forward::{ForwardBench, Mode, run_forward, table};

/// The system allocator, with the large per-flow and per-session tables
/// advised onto transparent huge pages (`mongate_dataplane::sys::alloc`).
#[global_allocator]
static ALLOC: mongate_dataplane::sys::LargePages = mongate_dataplane::sys::LargePages;

#[derive(Parser)]
#[command(
    name = "mongate-bench",
    version,
    about = "Line-rate traffic generator, sink and forwarding benchmark"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Forwarding benchmark: kernel vs our AF_XDP and io_uring forwarders, plus raw I/O limits.
    Forward {
        /// Modes to measure (comma-separated).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "kernel,afxdp-native,afxdp-busypoll,afxdp-generic,uring,rx-drop,tx-only,tx-only-budget"
        )]
        modes: Vec<Mode>,
        /// Frame sizes in bytes incl. FCS (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "64,512,1500")]
        sizes: Vec<u32>,
        /// Seconds of traffic per measurement.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Queues per veth = DUT workers (all pinned to the DUT core).
        #[arg(long, default_value_t = 1)]
        queues: u16,
        /// Number of flows.
        #[arg(long, default_value_t = 64)]
        flows: u16,
        /// Offered rate in packets/s (0 = search the highest rate within --loss-tolerance).
        #[arg(long, default_value_t = 0.0)]
        rate_pps: f64,
        /// Loss ratio accepted by the throughput search.
        #[arg(long, default_value_t = 0.001)]
        loss_tolerance: f64,
        /// Core for the device under test.
        #[arg(long, default_value_t = 1)]
        dut_core: usize,
        /// Core for the generator and the sink.
        #[arg(long, default_value_t = 0)]
        gen_core: usize,
        /// `tx-only-budget`: frames one copy-mode sendto hands to the
        /// driver (XDP_MAX_TX_SKB_BUDGET, Linux >= 6.17; 32..=8192).
        #[arg(long, default_value_t = 256)]
        tx_skb_budget: u32,
        /// The AF_XDP DUTs' rx and tx ring slots (`mongate-dataplane forward
        /// --ring-size`; a power of two, 64..=16384; default: its 4096).
        /// What queues in front of a saturated worker: its latency.
        #[arg(long)]
        dut_ring_size: Option<u32>,
        #[command(flatten)]
        cpu: CpuArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// No progress on stderr.
        #[arg(long)]
        quiet: bool,
    },
    /// Overlay gateway pipeline (classify, pace, GENEVE) vs bare AF_XDP
    /// forwarding vs a kernel gateway (VXLAN + htb), the same gateway
    /// encrypted vs not, and userspace WireGuard (boringtun), as ratios.
    Gateway(Box<GatewayArgs>),
    /// Pacing quality under the real clock: achieved rate, KS test of the gaps, lateness.
    Pacing {
        /// Aggregate set rates in packets/s (comma-separated).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "1000,10000,100000,1000000"
        )]
        rates: Vec<f64>,
        /// Seconds per (rate, flows) cell.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Flow counts; the rate is split evenly among the flows (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1")]
        flows: Vec<u32>,
        /// Timer-wheel tick = 2^shift ns (the worker uses 10 = 1.024 us).
        #[arg(long, default_value_t = 10)]
        tick_shift: u32,
        /// Gaps in the headline KS test (the first ones of each run).
        #[arg(long, default_value_t = 100_000)]
        ks_samples: usize,
        /// Seed of the gap generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Core to pin the loop to (none: not pinned).
        #[arg(long)]
        core: Option<usize>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also send over loopback UDP and timestamp at a receiver (not implemented yet).
        #[arg(long)]
        wire: bool,
    },
    /// The overlay gateway's whole per-packet work without I/O (two
    /// gateways back to back in memory, simulated clock): ns per packet of
    /// LAN->WAN and WAN->LAN and per stage.
    Pipeline {
        /// Planned flows (8 per class).
        #[arg(long, default_value_t = 1000)]
        flows: u32,
        /// Distinct sessions (5-tuples), all admitted before the measurement.
        #[arg(long, default_value_t = 10_000)]
        sessions: u32,
        /// Measured packets (each from a session drawn at random).
        #[arg(long, default_value_t = 2_000_000)]
        packets: u64,
        /// Packets per batch.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// WAN link emulator: bridge two interfaces through AF_XDP with rate,
    /// delay, jitter, loss and a bounded queue per direction (docs/linkem.md).
    Linkem(Box<mongate_bench::linkem::cli::LinkemArgs>),
    /// Hostile host on a WAN segment: garbage, forged data/acks/echoes/probes/
    /// handshakes, replays and oversized frames against a gateway, bounded in
    /// count and time (run it inside the segment's namespace).
    Attack(Box<AttackArgs>),
}

/// CPU per packet of the DUT core at a fixed offered load (`forward` and
/// `gateway`).
#[derive(clap::Args)]
struct CpuArgs {
    /// Offered load of the CPU-per-packet trials, packets/s (below every
    /// mode's limit; 0: no CPU trials).
    #[arg(long, default_value_t = 50_000.0)]
    cpu_load_pps: f64,
    /// Seconds of each CPU-per-packet trial (default 4; `gateway --quick`: 1).
    #[arg(long)]
    cpu_seconds: Option<f64>,
    /// The DUT worker's idle spin in the CPU trials (0: it sleeps as soon as
    /// a loop finds nothing; the gateway's 200 spins through the packet gaps
    /// at this load and never sleeps: `cpustat::TRIAL_IDLE`).
    #[arg(long, default_value_t = mongate_bench::cpustat::TRIAL_IDLE.spin)]
    cpu_spin: u32,
    /// The DUT worker's idle sleep (us) in the CPU trials.
    #[arg(long, default_value_t = mongate_bench::cpustat::TRIAL_IDLE.sleep_us)]
    cpu_idle_sleep_us: u32,
    /// Only the CPU-per-packet trials (no throughput search).
    #[arg(long)]
    cpu_only: bool,
}

impl CpuArgs {
    fn check(&self) -> anyhow::Result<()> {
        if !(0.0..=10e6).contains(&self.cpu_load_pps) {
            anyhow::bail!("--cpu-load-pps must be in [0, 10000000]");
        }
        if self.cpu_seconds.is_some_and(|s| !(s > 0.0 && s <= 60.0)) {
            anyhow::bail!("--cpu-seconds must be in (0, 60]");
        }
        if self.cpu_only && self.cpu_load_pps == 0.0 {
            anyhow::bail!("--cpu-only needs --cpu-load-pps > 0");
        }
        if self.cpu_idle_sleep_us > 1_000_000 {
            anyhow::bail!("--cpu-idle-sleep-us must be at most 1000000");
        }
        Ok(())
    }
}

#[derive(clap::Args)]
struct AttackArgs {
    /// Interface on the gateway's WAN segment (frames bypass its qdisc).
    #[arg(long)]
    ifname: String,
    /// Our MAC (outer source).
    #[arg(long, value_parser = parse_mac)]
    src_mac: [u8; 6],
    /// The gateway's WAN MAC.
    #[arg(long, value_parser = parse_mac)]
    dst_mac: [u8; 6],
    /// The gateway's WAN address.
    #[arg(long)]
    dst_ip: std::net::Ipv4Addr,
    /// Our own outer address (off path).
    #[arg(long)]
    src_ip: std::net::Ipv4Addr,
    /// A peer gateway's address to spoof as well (a second target).
    #[arg(long)]
    spoof_ip: Option<std::net::Ipv4Addr>,
    /// The overlay's VNI.
    #[arg(long)]
    vni: u32,
    /// Flow ids (names from the site files, hashed as the gateways do) for forged data.
    #[arg(long, value_delimiter = ',')]
    data_flows: Vec<String>,
    /// Flow ids (names) for forged acks: flows starting at the gateway.
    #[arg(long, value_delimiter = ',')]
    ack_flows: Vec<String>,
    /// Inner source (a site's host) of forged data.
    #[arg(long)]
    inner_src: std::net::Ipv4Addr,
    /// Inner destination (a LAN host) of forged data.
    #[arg(long)]
    inner_dst: std::net::Ipv4Addr,
    /// Inner UDP destination port.
    #[arg(long, default_value_t = 5001)]
    inner_port: u16,
    /// Kinds to send (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = mongate_bench::attack::Kind::ALL.to_vec(), value_enum)]
    kinds: Vec<mongate_bench::attack::Kind>,
    /// Frames per kind and target, at most.
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Seconds at most.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Frames per second in total (0: as fast as the socket takes them).
    #[arg(long, default_value_t = 0.0)]
    rate_pps: f64,
    /// Capture overlay frames on the interface this long first, to replay them.
    #[arg(long, default_value_t = 1.0)]
    capture_seconds: f64,
    /// The segment's IP MTU.
    #[arg(long, default_value_t = 1500)]
    mtu: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{s}: {e}"))?;
    v.try_into().map_err(|_| format!("{s}: need 6 bytes"))
}

fn run_attack(a: &AttackArgs) -> anyhow::Result<()> {
    use mongate_bench::attack::{Attack, FlowAddrs, Target, capture_overlay, run};
    use mongate_dataplane::overlay::wire_flow_id;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("attack sends raw frames (AF_PACKET): run as root");
    }
    if !(0.0..=60.0).contains(&a.seconds) || !(0.0..=60.0).contains(&a.capture_seconds) {
        anyhow::bail!("--seconds and --capture-seconds must be in [0, 60]");
    }
    if a.count > 10_000_000 {
        anyhow::bail!("--count must be at most 10000000");
    }
    let flows = |v: &[String]| v.iter().map(|n| wire_flow_id(n)).collect::<Vec<u32>>();
    let base = Target {
        src_mac: a.src_mac,
        dst_mac: a.dst_mac,
        src_ip: a.src_ip,
        dst_ip: a.dst_ip,
        vni: a.vni,
        data_flows: flows(&a.data_flows),
        ack_flows: flows(&a.ack_flows),
        inner: FlowAddrs {
            src_mac: [0x02, 0x66, 0, 0, 0, 1],
            dst_mac: [0x02, 0x66, 0, 0, 0, 2],
            src_ip: a.inner_src,
            dst_ip: a.inner_dst,
            src_port: 40000,
            dst_port: a.inner_port,
        },
        mtu: a.mtu,
    };
    let mut targets = vec![base.clone()];
    if let Some(ip) = a.spoof_ip {
        targets.push(Target { src_ip: ip, ..base });
    }
    let replay = if a.capture_seconds > 0.0 {
        capture_overlay(&a.ifname, Duration::from_secs_f64(a.capture_seconds), 4096)?
    } else {
        Vec::new()
    };
    let attack = Attack {
        targets,
        kinds: a.kinds.clone(),
        per_kind: a.count,
        limit: Duration::from_secs_f64(a.seconds),
        rate_pps: a.rate_pps,
        seed: a.seed,
    };
    let report = run(&a.ifname, &attack, &replay)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

#[derive(clap::Args)]
struct GatewayArgs {
    /// Modes to measure (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "forward,gateway,gateway-secure,kernel,boringtun"
    )]
    modes: Vec<mongate_bench::gateway::GwMode>,
    /// Inner frame sizes in bytes incl. FCS (comma-separated; default
    /// 64,512,1500, with --quick 64).
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<u32>>,
    /// Short run: 64-byte frames (unless --sizes), 1 s + 5 x 0.5 s trials
    /// and a 1 s CPU trial per mode.
    #[arg(long)]
    quick: bool,
    /// Generated flows (= gateway sessions).
    #[arg(long, default_value_t = 64)]
    flows: u16,
    /// Overlay flows of the gateway's class.
    #[arg(long, default_value_t = 64)]
    overlay_flows: u16,
    /// Loss ratio accepted by the throughput search.
    #[arg(long, default_value_t = 0.001)]
    loss_tolerance: f64,
    /// Core for the device under test.
    #[arg(long, default_value_t = 1)]
    dut_core: usize,
    /// Core for the generator and the sink.
    #[arg(long, default_value_t = 0)]
    gen_core: usize,
    /// boringtun-cli for the `boringtun` mode (default: found in PATH or
    /// ~/.cargo/bin; the mode is skipped when there is none).
    #[arg(long)]
    boringtun_cli: Option<std::path::PathBuf>,
    #[command(flatten)]
    cpu: CpuArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// No progress on stderr.
    #[arg(long)]
    quiet: bool,
}

fn run_gateway(a: &GatewayArgs) -> anyhow::Result<()> {
    use mongate_bench::gateway::{GatewayBench, MAX_SIZE, run_gateway_bench, table};
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("gateway builds network namespaces and attaches XDP programs: run as root");
    }
    if let Some(s) = a
        .sizes
        .iter()
        .flatten()
        .find(|s| !(64..=MAX_SIZE).contains(*s))
    {
        anyhow::bail!("--sizes: {s} is outside 64..={MAX_SIZE} (room for the tunnel headers)");
    }
    if let Some(p) = &a.boringtun_cli
        && !p.is_file()
    {
        anyhow::bail!("--boringtun-cli: {} is not a file", p.display());
    }
    a.cpu.check()?;
    if !(0.0..1.0).contains(&a.loss_tolerance) {
        anyhow::bail!("--loss-tolerance must be in [0, 1)");
    }
    if a.flows == 0 || a.overlay_flows == 0 || a.overlay_flows > 4096 {
        anyhow::bail!("--flows must be >= 1 and --overlay-flows in 1..=4096");
    }
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    if a.dut_core >= ncpu || a.gen_core >= ncpu {
        anyhow::bail!("--dut-core/--gen-core must be below {ncpu} (cores on this machine)");
    }
    let mut base = if a.quick {
        GatewayBench::quick()
    } else {
        GatewayBench::default()
    };
    if let Some(s) = &a.sizes {
        base.sizes.clone_from(s);
    }
    let b = GatewayBench {
        modes: a.modes.clone(),
        flows: a.flows,
        overlay_flows: a.overlay_flows,
        loss_tolerance: a.loss_tolerance,
        dut_core: a.dut_core,
        gen_core: a.gen_core,
        progress: !a.quiet,
        boringtun_cli: a.boringtun_cli.clone().or(base.boringtun_cli.clone()),
        cpu_load_pps: a.cpu.cpu_load_pps,
        cpu_seconds: a.cpu.cpu_seconds.unwrap_or(base.cpu_seconds),
        cpu_idle: mongate_dataplane::worker::IdlePolicy {
            spin: a.cpu.cpu_spin,
            sleep_us: a.cpu.cpu_idle_sleep_us,
        },
        cpu_only: a.cpu.cpu_only,
        ..base
    };
    let report = run_gateway_bench(&b)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

fn main() -> ExitCode {
    // `BIN --generate man|complete-bash|...`, before the subcommand is
    // required (mongate_hwconfig::cli_generate).
    if let Some(code) = mongate_hwconfig::cli_generate::generate_if_asked::<Cli>() {
        return code;
    }
    let cli = Cli::parse();
    // Every command ends with a report on stdout, written once its
    // namespaces and processes are gone: piped into `head`, it ends quietly
    // (see `mongate_dataplane::app::signals::default_sigpipe`).
    mongate_dataplane::app::signals::default_sigpipe();
    let r = match cli.cmd {
        Cmd::Forward {
            modes,
            sizes,
            seconds,
            queues,
            flows,
            rate_pps,
            loss_tolerance,
            dut_core,
            gen_core,
            tx_skb_budget,
            dut_ring_size,
            cpu,
            json,
            quiet,
        } => (|| {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                anyhow::bail!(
                    "forward builds network namespaces and attaches XDP programs: run as root"
                );
            }
            if seconds <= 0.0 || seconds > 600.0 {
                anyhow::bail!("--seconds must be in (0, 600]");
            }
            if let Some(s) = sizes.iter().find(|s| !(64..=1518).contains(*s)) {
                anyhow::bail!("--sizes: {s} is outside 64..=1518");
            }
            let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
            if dut_core >= ncpu || gen_core >= ncpu {
                anyhow::bail!("--dut-core/--gen-core must be below {ncpu} (cores on this machine)");
            }
            cpu.check()?;
            if !(32..=8192).contains(&tx_skb_budget) {
                anyhow::bail!("--tx-skb-budget must be in 32..=8192 (the generator's tx ring)");
            }
            if let Some(n) = dut_ring_size
                && !((64..=16384).contains(&n) && n.is_power_of_two())
            {
                anyhow::bail!("--dut-ring-size: {n} is not a power of two from 64 to 16384");
            }
            let exe = std::env::current_exe()?;
            let b = ForwardBench {
                modes,
                sizes,
                seconds,
                queues: queues.clamp(1, 16),
                flows,
                rate_pps,
                loss_tolerance,
                dut_core,
                gen_core,
                dataplane_bin: exe.with_file_name("mongate-dataplane"),
                progress: !quiet,
                tx_skb_budget,
                dut_ring_size,
                cpu_load_pps: cpu.cpu_load_pps,
                cpu_seconds: cpu.cpu_seconds.unwrap_or(4.0),
                cpu_idle: (cpu.cpu_spin, cpu.cpu_idle_sleep_us),
                cpu_only: cpu.cpu_only,
            };
            if !b.dataplane_bin.exists() {
                anyhow::bail!(
                    "{} not found: build it (cargo build --release --workspace)",
                    b.dataplane_bin.display()
                );
            }
            let report = run_forward(&b)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", table(&report));
            }
            Ok(())
        })(),
        Cmd::Pacing {
            rates,
            seconds,
            flows,
            tick_shift,
            ks_samples,
            seed,
            core,
            json,
            wire,
        } => (|| {
            if wire {
                // TODO(next): loopback UDP (sendmmsg) + SO_TIMESTAMPNS receiver.
                anyhow::bail!("--wire is not implemented yet");
            }
            if tick_shift > 40 {
                anyhow::bail!("--tick-shift must be <= 40");
            }
            let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
            if core.is_some_and(|c| c >= ncpu) {
                anyhow::bail!("--core must be below {ncpu} (cores on this machine)");
            }
            let b = mongate_bench::pacing::PacingBench {
                rates,
                flows,
                seconds,
                tick_shift,
                ks_samples,
                seed,
                ..mongate_bench::pacing::PacingBench::default()
            };
            let report = mongate_bench::pacing::run_pacing(&b, core, |c| {
                if !json {
                    eprintln!(
                        "rate {:.0} pps, {} flows: ratio {:.4}, KS D {:.5} (crit {:.5})",
                        c.rate_pps, c.flows, c.ratio, c.ks_d, c.ks_crit
                    );
                }
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", mongate_bench::pacing::table(&report));
            }
            Ok(())
        })(),
        Cmd::Pipeline {
            flows,
            sessions,
            packets,
            batch,
            seed,
            json,
        } => (|| {
            use mongate_bench::pipeline::{PipelineBench, run_pipeline, table};
            let r = run_pipeline(&PipelineBench {
                flows,
                sessions,
                packets,
                batch,
                seed,
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", table(&r));
            }
            Ok(())
        })(),
        Cmd::Gateway(a) => run_gateway(&a),
        Cmd::Linkem(a) => mongate_bench::linkem::cli::run(&a),
        Cmd::Attack(a) => run_attack(&a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mongate-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
