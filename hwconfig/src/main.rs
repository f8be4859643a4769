//! `mongate-hwconfig`: show NIC/host facts, make a deployment plan, apply it.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mongate_hwconfig::HwError;
use mongate_hwconfig::apply::run_apply;
use mongate_hwconfig::discover::{
    HostInfo, NicInfo, Roots, discover_host, discover_nic, list_interfaces,
};
use mongate_hwconfig::parse::format_cpulist;
use mongate_hwconfig::plan::{HugepagePlan, PlanRequest, make_plan, plan_from_str};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "mongate-hwconfig",
    version,
    about = "NIC queue/IRQ/core discovery and deployment plans for mongate"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show host facts and, per interface, driver, queues, IRQs, XDP support.
    Show {
        /// Interfaces (default: all).
        interfaces: Vec<String>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a deployment plan (worker -> core -> queues, IRQ -> core) as TOML.
    Plan {
        /// Interfaces, comma-separated or repeated.
        #[arg(long, short = 'i', value_delimiter = ',', required = true)]
        interfaces: Vec<String>,
        /// Worker count (default: one per usable core, capped by queue counts).
        #[arg(long, short = 'w')]
        workers: Option<u32>,
        /// Reserve this many hugepages (see --hugepage-size).
        #[arg(long)]
        hugepages: Option<u64>,
        /// Hugepage size: 2M or 1G.
        #[arg(long, default_value = "2M")]
        hugepage_size: String,
        /// JSON instead of TOML.
        #[arg(long)]
        json: bool,
        /// Write to this file instead of stdout.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Set channel counts, IRQ affinities and hugepages from a plan (dry run unless --apply).
    Apply {
        /// Plan file (TOML or JSON) from `mongate-hwconfig plan`.
        #[arg(long)]
        plan: PathBuf,
        /// Really change the system (default: print what would be done).
        #[arg(long, visible_alias = "yes", short = 'y')]
        apply: bool,
    },
}

/// `show --json` output.
#[derive(Serialize)]
struct ShowOutput {
    host: HostInfo,
    interfaces: Vec<NicInfo>,
}

fn size_kb(s: &str) -> Result<u64, HwError> {
    match s.to_ascii_uppercase().as_str() {
        "2M" | "2MB" | "2048K" | "2048KB" => Ok(2048),
        "1G" | "1GB" | "1048576K" | "1048576KB" => Ok(1_048_576),
        _ => Err(HwError::Plan(format!("--hugepage-size {s}: use 2M or 1G"))),
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn list_or_none(v: &[u32]) -> String {
    if v.is_empty() {
        "none".to_owned()
    } else {
        format_cpulist(v)
    }
}

fn print_host(out: &mut dyn Write, h: &HostInfo) -> std::io::Result<()> {
    writeln!(
        out,
        "host: kernel {}, cpus {} online",
        h.kernel,
        list_or_none(&h.online_cpus)
    )?;
    writeln!(
        out,
        "  isolated: {}, nohz_full: {}",
        list_or_none(&h.isolated),
        list_or_none(&h.nohz_full)
    )?;
    for n in &h.numa_nodes {
        writeln!(out, "  numa node {}: cpus {}", n.id, list_or_none(&n.cpus))?;
    }
    for p in &h.hugepages {
        writeln!(
            out,
            "  hugepages {} kB: {} reserved, {} free",
            p.size_kb, p.total, p.free
        )?;
    }
    writeln!(
        out,
        "  irqbalance: {}",
        if h.irqbalance_running {
            "RUNNING (will undo IRQ pinning)"
        } else {
            "not running"
        }
    )
}

fn print_nic(out: &mut dyn Write, n: &NicInfo) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: driver {} (bus {}), mtu {}, mac {}, link {}{}, numa node {}",
        n.ifname,
        opt(n.driver.as_deref()),
        opt(n.bus_info.as_deref()),
        opt(n.mtu),
        opt(n.mac.as_deref()),
        n.operstate,
        match n.carrier {
            Some(true) => ", carrier",
            Some(false) => ", no carrier",
            None => "",
        },
        opt(n.numa_node),
    )?;
    match &n.channels {
        Some(c) => writeln!(out, "  channels (current/max): {}", c.describe())?,
        None => writeln!(out, "  channels: not reported by driver")?,
    }
    writeln!(
        out,
        "  sysfs queues: {} rx, {} tx",
        n.sysfs_rx_queues, n.sysfs_tx_queues
    )?;
    if n.irqs.is_empty() {
        writeln!(out, "  queue irqs: none")?;
    }
    for q in &n.irqs {
        writeln!(
            out,
            "  queue {} {:?}: irq {} ({}) -> cpus {}, {} interrupts",
            q.queue,
            q.dir,
            q.irq,
            q.name,
            list_or_none(&q.affinity),
            q.count
        )?;
    }
    writeln!(
        out,
        "  xdp: generic yes, native {}, zero-copy {}{}",
        if n.xdp.native { "yes" } else { "no" },
        if n.xdp.zero_copy { "yes" } else { "no" },
        if n.xdp.note.is_empty() {
            String::new()
        } else {
            format!(" ({})", n.xdp.note)
        }
    )?;
    for note in &n.notes {
        writeln!(out, "  note: {note}")?;
    }
    Ok(())
}

fn run(cli: Cli) -> Result<(), HwError> {
    let roots = Roots::default();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let io = |e: std::io::Error| HwError::Io {
        what: "writing output".to_owned(),
        source: e,
    };
    match cli.cmd {
        Cmd::Show { interfaces, json } => {
            let names = if interfaces.is_empty() {
                list_interfaces(&roots)
            } else {
                interfaces
            };
            let nics = names
                .iter()
                .map(|n| discover_nic(&roots, n))
                .collect::<Result<Vec<_>, _>>()?;
            let host = discover_host(&roots);
            if json {
                let text = serde_json::to_string_pretty(&ShowOutput {
                    host,
                    interfaces: nics,
                })
                .map_err(|e| HwError::Plan(format!("cannot write JSON: {e}")))?;
                writeln!(out, "{text}").map_err(io)?;
            } else {
                print_host(&mut out, &host).map_err(io)?;
                for n in &nics {
                    writeln!(out).map_err(io)?;
                    print_nic(&mut out, n).map_err(io)?;
                }
            }
        }
        Cmd::Plan {
            interfaces,
            workers,
            hugepages,
            hugepage_size,
            json,
            output,
        } => {
            let nics = interfaces
                .iter()
                .map(|n| discover_nic(&roots, n))
                .collect::<Result<Vec<_>, _>>()?;
            let host = discover_host(&roots);
            let hugepages = match hugepages {
                Some(pages) => Some(HugepagePlan {
                    size_kb: size_kb(&hugepage_size)?,
                    pages,
                }),
                None => None,
            };
            let plan = make_plan(&host, &nics, &PlanRequest { workers, hugepages })?;
            let text = if json {
                plan.to_json()?
            } else {
                plan.to_toml()?
            };
            match output {
                Some(path) => std::fs::write(&path, &text)
                    .map_err(|e| HwError::from_io("", format!("writing {}", path.display()), e))?,
                None => write!(out, "{text}").map_err(io)?,
            }
        }
        Cmd::Apply { plan, apply } => {
            let shown = plan.display().to_string();
            let text = std::fs::read_to_string(&plan).map_err(|e| HwError::PlanFile {
                path: shown.clone(),
                msg: e.to_string(),
            })?;
            let plan =
                plan_from_str(&text).map_err(|msg| HwError::PlanFile { path: shown, msg })?;
            run_apply(&roots, &plan, apply, &mut out)?;
        }
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
    // `show` and `plan` are reports: piped into `head`, they end quietly on
    // the closed pipe (all output goes through `out`, so a closed pipe is an
    // error value here, never a panic). `apply` says it stopped: it may have
    // changed part of the system already.
    let report = !matches!(cli.cmd, Cmd::Apply { .. });
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(HwError::Io { source, .. })
            if report && source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mongate-hwconfig: {e}");
            ExitCode::FAILURE
        }
    }
}
