//! `mongate-bench`: line-rate benchmarks on the mongate engine.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mongate_bench::forward::{ForwardBench, Mode, run_forward, table};

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
            default_value = "kernel,afxdp-native,afxdp-busypoll,afxdp-generic,uring,rx-drop,tx-only"
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
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// No progress on stderr.
        #[arg(long)]
        quiet: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mongate-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
