//! `train`: runs one experiment from a TOML config and writes its loss and step-size curves.
//!
//! ```text
//! train --config FILE [--set KEY=VALUE]... [--out DIR]
//! train bench [--steps N] [--rounds R] [--pytorch]
//! ```
//! Exit status: 0 when the run finished or was recorded as diverged, 2 for a bad command line or
//! config, 1 for other failures, 130 when interrupted by Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};
use steplab_train::config::{self, ConfigError};
use steplab_train::output::RunStatus;
use steplab_train::{bench, trainer};

// A caching allocator: glibc's malloc returns Burn's large per-op buffers to the kernel and page
// faults then cost a third of a CPU step (BURN.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Trains a model with a step-size method, as one TOML file describes.
#[derive(Parser, Debug)]
#[command(name = "train", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    /// The experiment's TOML config.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override a config key by its dotted path; the value parses as TOML (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The run directory (default: run.out_dir/run.name).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measures training steps/s of the MNIST MLP (batch 100) per backend and optimizer.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(Command::Bench(args)) = cli.command {
        bench::run(&args)?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(path) = cli.config else {
        return Err(ConfigError("missing --config FILE (see train --help)".into()).into());
    };
    let config = config::load(&path, &cli.set)?;
    let run_dir = match cli.out {
        Some(dir) => dir,
        None => config
            .run
            .out_dir
            .join(config.run.name.as_deref().unwrap_or("run")),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .map_err(|e| anyhow::anyhow!("cannot install the Ctrl-C handler: {e}"))?;
    let status = trainer::train(&config, &run_dir, &stop)?;
    eprintln!("run directory: {}", run_dir.display());
    Ok(match status {
        RunStatus::Interrupted { .. } => ExitCode::from(130),
        _ => ExitCode::SUCCESS,
    })
}
