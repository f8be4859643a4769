//! `mongate`: the operator's front door.
//!
//! - `mongate demo`: the MON triangle in network namespaces, a mongate
//!   gateway (and control process) per site, real traffic; reports per flow
//!   the planned and achieved rates.
//! - `mongate status [--name NAME] [--json] [--watch]`: the gateways running
//!   on this machine: plan, control, peers and paths, classes, flows,
//!   interfaces and drops, rates over an interval (`status`).
//! - `mongate check --config SITE.toml [--config ...] [--instance ORG.json]`: every problem of
//!   the files, alone and against each other, one line each (`mongate_control::check`).
//! - `mongate reload --name NAME`: the gateway's processes re-read their files (SIGHUP) and
//!   apply them whole or refuse them whole; prints each one's answer (`reload`).
//! - `mongate keygen --out FILE`: a new static key pair (private key written 0600, never over an
//!   existing file); prints the public key for the peers' `public_key`.
//! - `mongate pubkey --key FILE`: the public key of a private key file.
//! - `mongate capture --name NAME [filters] -w FILE`: frames of a running
//!   gateway's LAN or uplinks, as its worker sees them, to a pcap file
//!   (`capture`).

#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mongate_control::secure::keys;
use mongate_dataplane::app::signals::default_sigpipe;

#[allow(unsafe_code)]
mod capture;
#[allow(unsafe_code)]
mod demo;
mod reload;
mod status;

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
    /// Run the demo: the MON triangle on real packets (needs root).
    Demo {
        /// Seconds of traffic.
        #[arg(long, default_value_t = 20)]
        seconds: u32,
        /// Print the summary as JSON (the live table goes to stderr).
        #[arg(long)]
        json: bool,
        /// Where plans come from: `control` (mongate-control run per site,
        /// plans over the shm rings) or `file` (solved once, in the files).
        #[arg(long, value_enum, default_value = "control")]
        plan: demo::PlanSource,
        /// Kill every control process (SIGKILL) at this second of traffic.
        #[arg(long)]
        kill_control_at: Option<u32>,
        /// Restart them this many seconds later.
        #[arg(long, default_value_t = 4)]
        restart_after: u32,
        /// Cut a link at a second of traffic: `A-C@10` (the link between
        /// two sites) or `ac@10` (a link by name); reports `failover_ms`.
        #[arg(long, value_parser = demo::parse_fail_link)]
        fail_link: Option<(String, u32)>,
        /// Run the overlay unencrypted (`[security] mode = "off"`). By
        /// default it is encrypted: a key pair per site, Noise IK
        /// handshakes by the control processes, AES-256-GCM between
        /// gateways. With `--plan file` it is always unencrypted (no
        /// control runs the handshakes).
        #[arg(long)]
        plain: bool,
        /// The paper's experiments: `triangle` (default; the plan on the
        /// wire), `imprecise` (PFO is told A-C has 10 Mbit/s, the wire has
        /// 6: a run with the controls' capacity estimator off, MONtra
        /// alone, then one with it on; `--seconds` each), `partition` (site A
        /// cut off from B and C at a third of `--seconds`, rejoining at two
        /// thirds; 30 s or more, e.g. `--seconds 45`), `flash-crowd` (class
        /// A->C from 2 to 8 sessions at half of `--seconds`; 20 s or more),
        /// `topology` (a Topology Zoo network, `--topology`: every flow
        /// within 5 % of its target; not met yet on Abilene).
        #[arg(long, value_enum, default_value = "triangle")]
        scenario: demo::Scenario,
        /// `--scenario topology`: the network, a shipped Topology Zoo name
        /// (`Abilene`) or a GraphML file (at most 24 sites; classes join
        /// sites one or two hops apart).
        #[arg(long, default_value = "Abilene")]
        topology: String,
        /// `--scenario topology`: every link's rate each way, Mbit/s (at 2,
        /// the probes and MONtra's few packets per second are the trouble:
        /// docs/montra.md).
        #[arg(long, default_value_t = 10.0)]
        link_mbps: f64,
        /// `--scenario topology`: most traffic classes.
        #[arg(long, default_value_t = 8)]
        classes: usize,
        /// Write the run's plots here at the end (SVG: `rates.svg`,
        /// `utility.svg`, and `failover.svg` when a link or site was cut;
        /// `--scenario imprecise` prefixes each phase's: `replan_off-rates.svg`).
        /// Created if missing; files of an earlier run are replaced. Not the
        /// run's directory of logs, which is deleted at the end.
        #[arg(long, value_name = "DIR", default_value = "mongate-demo-plots")]
        plots: std::path::PathBuf,
        /// Draw no plots.
        #[arg(long, conflicts_with = "plots")]
        no_plots: bool,
        /// Workers per gateway (`mongate-dataplane run --workers`): every
        /// gateway interface gets that many queues, worker w serves queue
        /// w, each class belongs to one worker.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
        workers: u16,
        /// Buffer of every emulated WAN link's shaper, ms (tbf `latency`:
        /// the longest a packet may queue). MONtra's only congestion signal
        /// is loss, so where its flows settle depends on it: with 50 ms (25
        /// packets on the triangle's 5 Mbit/s link) Poisson arrivals overflow
        /// it well below the link's rate (docs/montra.md).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        queue_ms: u32,
    },
    /// Reload a running gateway's configuration: its dataplane and control
    /// re-read their files (SIGHUP) and apply them whole, or refuse them
    /// whole with every reason while the gateway runs on untouched. What a
    /// reload can change and what needs a restart: docs/deploy.md "Reload".
    /// Exit status 1 when a process refused or did not answer.
    Reload {
        /// The gateway's instance name (the dataplane's `--name`).
        #[arg(long)]
        name: String,
        /// Longest wait for the processes' answers, ms.
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
        timeout_ms: u64,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Write a new private key (mode 0600; refuses an existing file or a symlink) and print
    /// its public key (the `public_key` of this site in its peers' configurations).
    Keygen {
        /// Private key file to create.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Print the public key of a private key file (refused if others may read it).
    Pubkey {
        /// Private key file.
        #[arg(long)]
        key: std::path::PathBuf,
    },
    /// Check site configurations and the organisation's PFO instance, alone
    /// and against each other: every problem as one line
    /// `file:line:column: field: reason`; exit status 1 if any.
    Check {
        /// A site file (TOML, docs/config.md); repeat it for several sites of
        /// one overlay (then also checked against each other).
        #[arg(long = "config", value_name = "SITE.toml")]
        configs: Vec<std::path::PathBuf>,
        /// The organisation's PFO instance (JSON, docs/pfo.md): checked, and
        /// every site file against it.
        #[arg(long, value_name = "ORG.json")]
        instance: Option<std::path::PathBuf>,
    },
    /// Serve the status report in the Prometheus text format at
    /// http://ADDR/metrics (the same figures as `mongate status --json`, plus
    /// counters since start). Off unless started; the address is the site
    /// file's `[metrics] listen`, or --listen.
    Metrics {
        /// The site file whose `[metrics] listen` gives the address.
        #[arg(long, value_name = "SITE.toml", required_unless_present = "listen")]
        config: Option<std::path::PathBuf>,
        /// Listen here instead (IP:PORT).
        #[arg(long, value_name = "IP:PORT")]
        listen: Option<std::net::SocketAddr>,
        /// Only this instance; repeat for several (default: every gateway in the run directory).
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
        /// Milliseconds between readings (the rates' interval).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
        interval_ms: u64,
    },
    /// Capture frames of a running gateway to a pcap file (Ethernet,
    /// nanosecond timestamps; tshark and Wireshark read it): its worker
    /// copies them, rate-limited, as its ports see them (the uplinks'
    /// GENEVE as on the wire). Stops after --count frames or --seconds,
    /// then prints captured, dropped (ring full) and limited (over
    /// --max-pps).
    Capture {
        /// The gateway instance (the dataplane's `--name`).
        #[arg(long)]
        name: String,
        /// The LAN port, the uplinks, or both.
        #[arg(long, value_enum, default_value = "both")]
        side: capture::Side,
        /// Frames received, sent, or both.
        #[arg(long, value_enum, default_value = "both")]
        direction: capture::Direction,
        /// Only frames from or to this peer site (its name in the site
        /// file): on an uplink, outer address one of its gateways; on the
        /// LAN, inner address in its prefixes.
        #[arg(long)]
        peer: Option<String>,
        /// Only frames of this flow (its `[[flows]] id`): on an uplink,
        /// the GENEVE flow option's id; on the LAN, the flow the classifier
        /// mapped the session to (received) or the option the frame arrived
        /// with (sent).
        #[arg(long)]
        flow: Option<String>,
        /// Only this IP protocol (of the frame's outermost IP header: an
        /// uplink's overlay frames are UDP).
        #[arg(long, value_enum)]
        proto: Option<capture::Proto>,
        /// Stop after this many frames.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        count: u64,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Frames per second the gateway copies at most (a tenth of a
        /// second's worth may come at once); the rest are counted `limited`.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        max_pps: u64,
        /// Bytes kept of each frame (64 to 2024).
        #[arg(long, default_value_t = 2024, value_parser = clap::value_parser!(u32).range(64..=2024))]
        snaplen: u32,
        /// The pcap file to write (`-`: stdout; the summary then goes to stderr).
        #[arg(short = 'w', long = "write", value_name = "FILE")]
        out: std::path::PathBuf,
        /// The summary as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The gateways running on this machine (or the ones named): plan and
    /// control, peers and paths (state, RTT, loss, last probe, active),
    /// classes (sessions planned, admitted, demanded; rate), flows (target,
    /// controller, sent, delivered, loss, path), interfaces (packets,
    /// bytes, rates) and drops by reason. Rates are averages over
    /// `--interval-ms` between two readings of the counters.
    Status {
        /// Only this instance (the dataplane's `--name`); repeat for several.
        /// Without it: every gateway with counters in the run directory
        /// (`$MONGATE_RUN_DIR`, else /run/mongate).
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
        /// JSON output (keys in docs/status.md); with --watch, one report a line.
        #[arg(long)]
        json: bool,
        /// Milliseconds between the two readings the rates come from.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
        interval_ms: u64,
        /// Redraw every interval until interrupted (Ctrl-C).
        #[arg(long)]
        watch: bool,
        /// With --watch: stop after this many reports.
        #[arg(long, requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
    },
}

/// `--topology`: a shipped Topology Zoo graph by name, else a GraphML file.
fn zoo_graph(name: &str) -> anyhow::Result<mongate_testbed::topology::zoo::ZooGraph> {
    use mongate_testbed::topology::zoo::ZooGraph;
    if let Some(g) = ZooGraph::shipped(name) {
        return Ok(g?);
    }
    let text = std::fs::read_to_string(name).map_err(|e| {
        anyhow::anyhow!(
            "--topology {name:?}: not a shipped network (Abilene) nor a readable GraphML file: {e}"
        )
    })?;
    ZooGraph::parse(&text).map_err(|e| anyhow::anyhow!("--topology {name}: {e}"))
}

/// The address `mongate metrics` listens on: `--listen`, else the site
/// file's `[metrics] listen` (an error if it has none: metrics are off).
fn metrics_listen(
    config: Option<&std::path::Path>,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<std::net::SocketAddr> {
    if let Some(a) = listen {
        return Ok(a);
    }
    let Some(path) = config else {
        anyhow::bail!("give --config SITE.toml (its [metrics] listen) or --listen IP:PORT");
    };
    let site = mongate_dataplane::config::Config::load(path)?;
    site.metrics.map(|m| m.listen).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: no [metrics] table: metrics are off (add [metrics] listen = \"127.0.0.1:9464\", docs/config.md)",
            path.display()
        )
    })
}

/// `mongate check`: problems on stdout, one a line; `ok` lines and the count
/// on stderr. 0: no problem; 1: problems; 2: nothing to check.
fn check(configs: &[std::path::PathBuf], instance: Option<&std::path::Path>) -> ExitCode {
    if configs.is_empty() && instance.is_none() {
        eprintln!(
            "mongate check: nothing to check: give --config SITE.toml and/or --instance ORG.json"
        );
        return ExitCode::from(2);
    }
    let r = mongate_control::check::check_files(configs, instance);
    for p in &r.problems {
        // One line each, whatever the message holds.
        println!("{}", p.to_string().replace(['\n', '\r'], " "));
    }
    for l in &r.ok {
        eprintln!("{l}");
    }
    if r.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "mongate check: {} problem{}",
            r.problems.len(),
            if r.problems.len() == 1 { "" } else { "s" }
        );
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    // `BIN --generate man|complete-bash|...`, before the subcommand is
    // required (mongate_hwconfig::cli_generate).
    if let Some(code) = mongate_hwconfig::cli_generate::generate_if_asked::<Cli>() {
        return code;
    }
    let cli = Cli::parse();
    // The reports end quietly when their reader goes away (`mongate status |
    // head`); the demo keeps SIGPIPE ignored until its namespaces are gone
    // (see `mongate_dataplane::app::signals::default_sigpipe`); the metrics
    // server keeps it ignored too (a scraper that hangs up early is an EPIPE
    // on its connection, not the end of the server).
    if !matches!(cli.cmd, Cmd::Demo { .. } | Cmd::Metrics { .. }) {
        default_sigpipe();
    }
    if matches!(cli.cmd, Cmd::Demo { .. })
        && let Err(e) = demo::clean_up_on_stop_signals()
    {
        eprintln!("mongate: {e:#}");
        return ExitCode::FAILURE;
    }
    let r = match cli.cmd {
        Cmd::Demo {
            seconds,
            json,
            plan,
            kill_control_at,
            restart_after,
            fail_link,
            plain,
            scenario,
            workers,
            queue_ms,
            topology,
            link_mbps,
            classes,
            plots,
            no_plots,
        } => {
            let topology = match scenario {
                demo::Scenario::Topology => match zoo_graph(&topology) {
                    Ok(graph) => Some(demo::TopologyOptions {
                        graph,
                        link_mbps,
                        classes,
                    }),
                    Err(e) => {
                        eprintln!("mongate: {e:#}");
                        return ExitCode::from(2);
                    }
                },
                _ => None,
            };
            let o = demo::Options {
                seconds,
                plan,
                kill_control_at,
                restart_after,
                fail_link,
                secure: !plain && plan == demo::PlanSource::Control,
                wire_mbps: Vec::new(),
                estimator: true,
                partition: None,
                flash_crowd: None,
                topology,
                workers,
                queue_ms,
                window_from_s: None,
                plots: (!no_plots).then_some(demo::PlotsTo {
                    dir: plots,
                    prefix: String::new(),
                }),
            };
            match scenario {
                demo::Scenario::Triangle => demo::run(&o).and_then(|s| {
                    default_sigpipe();
                    if json {
                        println!("{}", serde_json::to_string_pretty(&s)?);
                    } else {
                        demo::print_summary(&s);
                    }
                    Ok(())
                }),
                demo::Scenario::Imprecise => demo::run_imprecise(&o).and_then(|s| {
                    default_sigpipe();
                    if json {
                        println!("{}", serde_json::to_string_pretty(&s)?);
                    } else {
                        for p in [&s.replan_off, &s.estimator_on] {
                            demo::print_summary(&p.run);
                        }
                        println!("imprecise: {}", s.verdict);
                    }
                    Ok(())
                }),
                demo::Scenario::FlashCrowd => demo::run_flash_crowd(&o).and_then(|s| {
                    default_sigpipe();
                    if json {
                        println!("{}", serde_json::to_string_pretty(&s)?);
                    } else {
                        demo::print_summary(&s.run);
                        println!("flash crowd: {}", s.verdict);
                    }
                    Ok(())
                }),
                demo::Scenario::Topology => demo::run_topology(&o).and_then(|s| {
                    default_sigpipe();
                    if json {
                        println!("{}", serde_json::to_string_pretty(&s)?);
                    } else {
                        demo::print_summary(&s.run);
                        println!("topology {}: {}", s.network, s.verdict);
                    }
                    Ok(())
                }),
                demo::Scenario::Partition => demo::run_partition(&o).and_then(|s| {
                    default_sigpipe();
                    if json {
                        println!("{}", serde_json::to_string_pretty(&s)?);
                    } else {
                        demo::print_summary(&s.run);
                        println!("partition: {}", s.verdict);
                    }
                    Ok(())
                }),
            }
        }
        Cmd::Status {
            names,
            json,
            interval_ms,
            watch,
            count,
        } => status::run(&status::Options {
            names,
            json,
            interval: std::time::Duration::from_millis(interval_ms),
            watch,
            count,
        }),
        Cmd::Metrics {
            config,
            listen,
            names,
            interval_ms,
        } => metrics_listen(config.as_deref(), listen).and_then(|addr| {
            status::serve(
                addr,
                &status::Options {
                    names,
                    json: false,
                    interval: std::time::Duration::from_millis(interval_ms),
                    watch: true,
                    count: None,
                },
            )
        }),
        Cmd::Capture {
            name,
            side,
            direction,
            peer,
            flow,
            proto,
            count,
            seconds,
            max_pps,
            snaplen,
            out,
            json,
        } => {
            let o = capture::Options {
                name,
                side,
                direction,
                peer,
                flow,
                proto,
                count,
                seconds,
                max_pps,
                snaplen,
                out,
                json,
            };
            capture::run(&o).and_then(|s| {
                let text = if o.json {
                    serde_json::to_string(&s)?
                } else {
                    capture::line(&s)
                };
                if o.out.as_os_str() == "-" {
                    eprintln!("{text}");
                } else {
                    println!("{text}");
                }
                Ok(())
            })
        }
        Cmd::Check { configs, instance } => return check(&configs, instance.as_deref()),
        Cmd::Reload {
            name,
            timeout_ms,
            json,
        } => match reload::run(&name, std::time::Duration::from_millis(timeout_ms), json) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Cmd::Keygen { out } => keys::keygen(&out)
            .map(|k| println!("{k}"))
            .map_err(Into::into),
        Cmd::Pubkey { key } => keys::load(&key)
            .map(|s| println!("{}", s.public_key()))
            .map_err(Into::into),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mongate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
