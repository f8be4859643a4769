//! `mongate-control`: the control process. Subcommands: `pfo` (solve one PFO instance) and
//! `run` (the control loop driving a dataplane, see `docs/control-loop.md`).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use mongate_control::pfo::{Formulation, Instance, SolveOptions, solve};
use mongate_control::run::{
    LogRecord, LogSink, PlannerConfig, ReloadSource, RunOptions, plan_status, plan_status_path,
    run, stdout_sink, write_plan_status,
};
use mongate_dataplane::config::Config;
use mongate_dataplane::shm::ctl_path;

#[derive(Parser)]
#[command(name = "mongate-control", version, about = "mongate control process")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Diagnostic log lines on stderr: `text` or `json` (one object a line);
    /// both with wall-clock timestamps. The plan and event records go to
    /// stdout (`run --json-log` for JSON, with `unix_ms`).
    #[arg(long, global = true, default_value = "text", value_name = "text|json")]
    log_format: mongate_dataplane::app::logging::LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Solve a PFO instance (JSON) and print the plan.
    Pfo(PfoArgs),
    /// Run the control loop for one dataplane instance: plan with PFO, send plans over the
    /// shared-memory channel, re-plan on telemetry and events.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Site configuration (TOML) the dataplane runs.
    #[arg(long)]
    config: PathBuf,
    /// Organisation-wide PFO instance (JSON); its class and flow ids must be the config's.
    #[arg(long)]
    instance: PathBuf,
    /// Dataplane instance name (control region $MONGATE_RUN_DIR/NAME.ctl, default /run/mongate).
    #[arg(long)]
    name: String,
    /// Periodic re-plan interval, seconds.
    #[arg(long, default_value_t = 5.0)]
    replan_s: f64,
    /// PFO wall-clock limit per solve, seconds.
    #[arg(long, default_value_t = 10.0)]
    time_limit: f64,
    /// Print log lines as JSON (one object per line).
    #[arg(long)]
    json_log: bool,
    /// Leave path selection to the dataplane (no MONET path manager: no probe commands, no
    /// assignments; links are marked failed from the dataplane's per-peer summary).
    #[arg(long)]
    no_paths: bool,
    /// Plan with the instance's link capacities only: no re-plan on the capacities estimated
    /// from the flows' loss and delivered rates (MONtra alone copes with a wrong capacity). The
    /// estimator still runs: the flows on a link that carries less than the plan puts on it
    /// get their weights scaled to it, so they lose the loss budget there and not more
    /// (docs/montra.md, "Weights kept to the loss budget").
    #[arg(long)]
    no_capacity_estimator: bool,
    /// With `--no-capacity-estimator`: leave the plan's weights as they are, whatever the
    /// links carry (MONtra's flows then lose `budget x planned / carried` on an over-stated
    /// link).
    #[arg(long)]
    no_weight_scaling: bool,
}

#[derive(clap::Args)]
struct PfoArgs {
    /// Instance file (JSON, see docs/pfo.md).
    #[arg(long)]
    instance: PathBuf,
    /// Wall-clock limit in seconds; on expiry the best plan and bound so far are printed.
    #[arg(long)]
    time_limit: Option<f64>,
    /// Relative gap at which the plan counts as optimal.
    #[arg(long, default_value_t = 1e-4)]
    gap: f64,
    /// MILP formulation: incremental (default), pieces, log, plain (baseline).
    #[arg(long, default_value = "incremental")]
    formulation: String,
    /// Print the plan as JSON (the plan format) instead of a table.
    #[arg(long)]
    json: bool,
}

fn pfo(args: &PfoArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.instance)
        .with_context(|| format!("reading {}", args.instance.display()))?;
    let inst =
        Instance::from_json(&text).with_context(|| format!("in {}", args.instance.display()))?;
    if let Some(t) = args.time_limit {
        anyhow::ensure!(
            t.is_finite() && t > 0.0,
            "--time-limit must be a positive number of seconds"
        );
    }
    anyhow::ensure!(
        args.gap.is_finite() && args.gap > 0.0,
        "--gap must be positive"
    );
    let formulation = match args.formulation.as_str() {
        "incremental" => Formulation::Incremental,
        "pieces" => Formulation::EnvelopePieces,
        "log" => Formulation::EnvelopeLog,
        "plain" => Formulation::Plain,
        other => anyhow::bail!("unknown --formulation {other:?} (incremental, pieces, log, plain)"),
    };
    let opts = SolveOptions {
        time_limit: args.time_limit,
        gap_tolerance: args.gap,
        formulation,
        ..SolveOptions::default()
    };
    let plan = solve(&inst, &opts);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", plan.table());
    }
    Ok(())
}

fn secs_to_ns(what: &str, s: f64) -> anyhow::Result<u64> {
    anyhow::ensure!(
        s.is_finite() && s > 0.0 && s <= 1e6,
        "{what} must be a positive number of seconds (at most 1e6)"
    );
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // in (0, 1e15]
    Ok((s * 1e9).round() as u64)
}

fn run_cmd(args: &RunArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let text = std::fs::read_to_string(&args.instance)
        .with_context(|| format!("reading {}", args.instance.display()))?;
    let instance =
        Instance::from_json(&text).with_context(|| format!("in {}", args.instance.display()))?;
    anyhow::ensure!(
        !args.name.is_empty() && !args.name.contains('/'),
        "--name must be non-empty without '/'"
    );
    // Each activated plan also goes to `<run dir>/NAME.plan` (`mongate status`,
    // `mongate metrics`): written whole, from the log sink (off the loop's
    // hot path: a plan every few seconds at most).
    let out = stdout_sink(args.json_log);
    let plan_file = plan_status_path(&args.name);
    let plan_file_at_exit = plan_file.clone();
    // The plan file's utilities come from the instance in force (a reload
    // may replace it): shared with the reload hook, locked once per plan.
    let inst = std::sync::Arc::new(std::sync::Mutex::new(instance.clone()));
    let inst_for_reload = inst.clone();
    let pid = std::process::id();
    let warned = std::sync::atomic::AtomicBool::new(false);
    let sink: LogSink = std::sync::Arc::new(move |r: &LogRecord| {
        out(r);
        if let LogRecord::Plan(p) = r
            && let Err(e) = write_plan_status(
                &plan_file,
                &plan_status(
                    p,
                    &inst
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                    pid,
                ),
            )
            && !warned.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                file = %plan_file.display(),
                error = %e,
                "cannot write the plan file: status and metrics will lack the optimizer's figures"
            );
        }
    });
    let mut opts = RunOptions::new(ctl_path(&args.name), config, instance, sink);
    opts.planner = PlannerConfig {
        replan_ns: secs_to_ns("--replan-s", args.replan_s)?,
        estimate_capacity: !args.no_capacity_estimator,
        scale_weights: !args.no_weight_scaling,
        ..PlannerConfig::default()
    };
    secs_to_ns("--time-limit", args.time_limit)?;
    opts.solve.time_limit = Some(args.time_limit);
    opts.paths = !args.no_paths;
    opts.reload = Some(ReloadSource {
        config: args.config.clone(),
        instance: args.instance.clone(),
        requested: mongate_dataplane::app::signals::reload_on_sighup(),
        name: args.name.clone(),
        on_instance: Box::new(move |i: &Instance| {
            *inst_for_reload
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = i.clone();
        }),
    });
    let stop = mongate_dataplane::app::signals::stop_on_signals();
    let summary = run(&opts, stop);
    // A clean exit takes its plan file along (after a crash it stays, and
    // `mongate status` says its control is gone).
    let _ = std::fs::remove_file(&plan_file_at_exit);
    let _ = std::fs::remove_file(mongate_dataplane::app::reload::outcome_path(
        &args.name, "control",
    ));
    let summary = summary?;
    tracing::info!(
        plans_activated = summary.plans_sent,
        solves = summary.solves,
        decode_errors = summary.decode_errors,
        bad_records = summary.bad_records,
        path_moves = summary.path_moves,
        probes_sent = summary.probes_sent,
        probes_dropped = summary.probes_dropped,
        "stopped"
    );
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
    let result = match &cli.command {
        Command::Pfo(args) => {
            // A report: `pfo --json | head` ends quietly (app::signals).
            mongate_dataplane::app::signals::default_sigpipe();
            pfo(args)
        }
        Command::Run(args) => run_cmd(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mongate-control: {e:#}");
            ExitCode::FAILURE
        }
    }
}
