//! `mongate-control`: the control process. Subcommands: `pfo` (solve one PFO instance).
//! A `run` subcommand (the control loop) will be added next to it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use mongate_control::pfo::{Formulation, Instance, SolveOptions, solve};

#[derive(Parser)]
#[command(name = "mongate-control", about = "mongate control process")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Solve a PFO instance (JSON) and print the plan.
    Pfo(PfoArgs),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Pfo(args) => pfo(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mongate-control: {e:#}");
            ExitCode::FAILURE
        }
    }
}
