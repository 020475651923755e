//! `train`: runs one experiment from a TOML config and writes its loss and step-size curves.
//!
//! ```text
//! train --config FILE [--set KEY=VALUE]... [--unset KEY]... [--out DIR] [--overwrite]
//! train --config FILE --dry-run
//! train --resume DIR [--config FILE] [--set KEY=VALUE]... [--force]
//! train sweep PLAN [--jobs N] [--list] [--task K] [--slurm]
//! train bench [--steps N] [--rounds R] [--pytorch]
//! train plot RUN_DIR... [--out FILE.png|FILE.svg] [--panels LIST] [--x step|epoch] [--first N]
//! train summarize RESULTS_DIR [--format md|csv] [--at EPOCHS] [--reach METRIC=VALUE]
//! ```
//! Exit status: 0 when the run finished or was recorded as diverged, 2 for a bad command line or
//! config, 1 for other failures, 128 + the signal's number when stopped by a signal (130 Ctrl-C,
//! 143 SIGTERM, 129 SIGHUP).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use clap::{Parser, Subcommand};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGXFSZ};
use steplab_train::config::{self, ConfigError};
use steplab_train::output::{RunStatus, error_chain};
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
    /// Remove a config key by its dotted path, so that its default applies (repeatable; applied
    /// before --set).
    #[arg(long = "unset", value_name = "KEY")]
    unset: Vec<String>,
    /// The run directory (default: run.out_dir/run.name).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Replace an earlier run in the run directory (its files are removed first).
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Continue the run in DIR from its checkpoint (with its own config, or --config/--set
    /// changes when --force is given).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["out", "dry_run"])]
    resume: Option<PathBuf>,
    /// With --resume: accept a config or data that differ from the checkpoint's.
    #[arg(long, requires = "resume")]
    force: bool,
    /// Check everything (config, data, model, optimizer), take one trial step in memory, print
    /// the resolved config, sizes and the checkpoint size, and exit without writing anything.
    #[arg(long)]
    dry_run: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measures training steps/s of the MNIST MLP (batch 100) or a convnet per backend and optimizer.
    Bench(bench::BenchArgs),
    /// Runs a plan of many runs (configs × grid × seeds): locally with --jobs N, one with
    /// --task K, or as a Slurm array job script with --slurm.
    Sweep(steplab_train::sweep::SweepArgs),
    /// Draws loss and step-size curves of run directories (seeds as mean and min-max band) as
    /// a PNG or SVG picture.
    Plot(steplab_train::report::PlotArgs),
    /// One table over every run under a results folder (mean ± std over seeds), beside the
    /// papers' published numbers.
    Summarize(steplab_train::report::SummarizeArgs),
}

/// The signals that stop a run after its current step (a second one exits at once).
const STOP_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let signal = Arc::new(AtomicUsize::new(0));
    if let Err(e) = install_signal_handlers(&stop, &signal) {
        eprintln!("error: cannot install the signal handlers: {e}");
        return ExitCode::from(1);
    }
    let result = run(cli, &stop);
    let signalled = signal.load(Ordering::SeqCst);
    let by_signal = || ExitCode::from(128 + signalled.min(127) as u8);
    match result {
        Ok(Some(RunStatus::Interrupted { .. })) if signalled != 0 => by_signal(),
        Ok(Some(RunStatus::Failed { .. })) => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_chain(&err));
            if signalled != 0 {
                by_signal()
            } else if err.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP set `stop` (the run ends after its current step, recorded as
/// interrupted) and record their number in `signal`; a second one of them exits at once with
/// 128 + its number. SIGXFSZ (a file-size limit reached) is caught so that the write fails
/// with an error the trainer records, instead of killing the process.
fn install_signal_handlers(
    stop: &Arc<AtomicBool>,
    signal: &Arc<AtomicUsize>,
) -> std::io::Result<()> {
    for sig in STOP_SIGNALS {
        // Registered first, so it sees the flag as it was before this signal set it.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, stop.clone())?;
        signal_hook::flag::register_usize(sig, signal.clone(), sig as usize)?;
        signal_hook::flag::register(sig, stop.clone())?;
    }
    signal_hook::flag::register(SIGXFSZ, Arc::new(AtomicBool::new(false)))?;
    Ok(())
}

/// Runs the command; `Some(status)` for a training run.
fn run(cli: Cli, stop: &AtomicBool) -> anyhow::Result<Option<RunStatus>> {
    match cli.command {
        Some(Command::Bench(args)) => {
            bench::run(&args)?;
            return Ok(None);
        }
        Some(Command::Plot(args)) => {
            steplab_train::report::plot(&args)?;
            return Ok(None);
        }
        Some(Command::Summarize(args)) => {
            steplab_train::report::summarize_command(&args)?;
            return Ok(None);
        }
        Some(Command::Sweep(args)) => {
            use steplab_train::sweep::{self, SweepExit};
            return match sweep::run(&args, stop)? {
                SweepExit::Code(0) => Ok(None),
                SweepExit::Code(code) => std::process::exit(i32::from(code)),
                SweepExit::Stopped => Ok(Some(RunStatus::Interrupted { step: 0 })),
            };
        }
        None => {}
    }
    if let Some(dir) = cli.resume {
        let request = trainer::ResumeRequest {
            config: cli.config,
            unset: cli.unset,
            set: cli.set,
            force: cli.force,
        };
        let status = trainer::resume(&dir, &request, stop)?;
        eprintln!("run directory: {}", dir.display());
        return Ok(Some(status));
    }
    let Some(path) = cli.config else {
        return Err(ConfigError("missing --config FILE (see train --help)".into()).into());
    };
    let config = config::load(&path, &cli.unset, &cli.set)?;
    if cli.dry_run {
        let report = trainer::dry_run(&config, stop)?;
        println!("{}", report.config.trim_end());
        println!();
        for line in &report.lines {
            println!("# {line}");
        }
        return Ok(None);
    }
    let run_dir = match cli.out {
        Some(dir) => dir,
        None => config
            .run
            .out_dir
            .join(config.run.name.as_deref().unwrap_or("run")),
    };
    let status = trainer::train(&config, &run_dir, cli.overwrite, stop)?;
    eprintln!("run directory: {}", run_dir.display());
    Ok(Some(status))
}
