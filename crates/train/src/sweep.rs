//! `train sweep`: many runs from one plan file, on this machine or as a Slurm array job.
//!
//! # The plan
//!
//! A plan is a TOML file naming configs, seeds, overrides and a grid; every key but `name` and
//! `configs` is optional, and unknown keys are refused. `plans/lossgrad_table3.toml` runs the
//! LossGrad paper's Table 3 (the Fashion-MNIST autoencoder under seven step-size methods), three
//! seeds each:
//!
//! ```toml
//! name = "lossgrad_table3"                       # results under out_dir/name/<run>
//! out_dir = "../results"                         # default "results"
//! configs = ["../configs/lossgrad_t3_*.toml"]    # paths or globs
//! seeds = [0, 1, 2]                              # default [0]; each sets run.seed
//! set = []                                       # e.g. ["training.epochs=1"], for every run
//! # [grid]                                       # dotted key → list of values
//! # "optimizer.lr" = [0.1, 0.01]
//! ```
//!
//! Paths (`configs`, `out_dir`) are relative to the plan file's directory unless absolute;
//! `--out-dir DIR` (relative to the working directory) replaces `out_dir`. A glob that matches
//! no file, or a path that does not exist, is an error naming it. Paths *inside* the configs
//! (`data.root`, `data.path`) are from the working directory, as with `train --config`.
//!
//! The runs are the configs (sorted by path, duplicates once) × the grid's points (the cartesian
//! product, keys in sorted order, the first key varying slowest) × the seeds, in that order; a
//! run's index in it is its Slurm array task id. Each run is `train --config CONFIG --set ...`
//! with the plan's `set` overrides, then the grid point's, then `run.seed=K`, in the run
//! directory `out_dir/name/<run name>`. Run names are `<config stem>[-<key>=<value>...]-seed<K>`,
//! a grid key by its last part (`lr=0.1`) unless two grid keys share it (then by the whole
//! dotted key), characters other than letters, digits, `.`, `_`, `+`, `-` replaced by `_`. Two
//! runs with the same name (or names differing only in case) are refused, as is `run.seed` in
//! `set` or `[grid]` (`seeds` owns it) and a key both in `set` and `[grid]`. The 7 Table-3
//! configs × 3 seeds give 21 runs, `lossgrad_t3_fmnist_autoencoder_lossgrad-seed0` to
//! `lossgrad_t3_fmnist_autoencoder_wngrad-seed2`.
//!
//! # Running locally
//!
//! ```text
//! train sweep plans/lossgrad_table3.toml --list        # the 21 runs and their states
//! train sweep plans/lossgrad_table3.toml --jobs 2      # run them, two at a time
//! ```
//!
//! Each run is a child process of this binary with its stdout and stderr appended to
//! `<run dir>/train.log`, and `RAYON_NUM_THREADS` set to `--threads`, else the environment's
//! `RAYON_NUM_THREADS`, else the available cores divided by `--jobs` (at least 1), so parallel
//! runs do not oversubscribe the machine. A run whose `status` says it finished
//! ([`crate::output::is_finished`]: completed, diverged, stopped) is skipped; one with a checkpoint resumes from it
//! (`train --resume DIR --config CONFIG --set ...`, so a plan changed since is refused rather
//! than mixed in); any other starts afresh (`--overwrite`, which keeps `train.log`). Rerunning a
//! sweep therefore does only what is left. A failing run does not stop the others; the summary
//! at the end names each failed run with its exit status and log, and the sweep exits 1.
//! Ctrl-C or SIGTERM forwards SIGTERM to the runs (each checkpoints after its current step and
//! stops), starts no new run, and exits 130 or 143; the next sweep resumes them. The runs are in
//! their own process group, so a terminal's Ctrl-C reaches them only through the sweep, once.
//!
//! # On a Slurm cluster
//!
//! ```text
//! train sweep plans/lossgrad_table3.toml --slurm --slurm-max-parallel 8
//! sbatch results/lossgrad_table3/sweep.sbatch
//! ```
//!
//! `--slurm` writes `out_dir/name/sweep.sbatch`, an array job of one task per run
//! (`--array=0-20%8` for Table 3) that runs `train sweep PLAN --task $SLURM_ARRAY_TASK_ID`; edit
//! its commented `##SBATCH` lines (time, cores, memory) first. `--task K` runs run K alone with
//! the skip / resume / fresh rule above, and becomes the run's `train` process (`exec`), so its
//! exit status is the run's and Slurm's signals reach it once: `--signal=B:TERM@120` makes a run
//! checkpoint two minutes before the time limit, and a task requeued (`--requeue`) or
//! resubmitted resumes from that checkpoint, while finished runs return at once. `--slurm` also
//! records the run names in `out_dir/name/sweep.runs`; `--task` refuses to run when the plan no
//! longer expands to them (a config added to a glob would shift the task ids).

mod plan;
mod runner;
mod slurm;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::Result;

pub use plan::{Plan, PlanFile, Run, expand, resolve_configs};
pub use runner::{Action, LOG_FILE, RunState};
pub use slurm::{MANIFEST_FILE, SCRIPT_FILE, sbatch_script};

/// Arguments of `train sweep`.
#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    /// The plan file (TOML: name, configs, seeds, set, grid).
    #[arg(value_name = "PLAN")]
    pub plan: PathBuf,
    /// Runs at the same time (local runs).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: u32,
    /// Print the runs (index, name, state) and exit.
    #[arg(long, conflicts_with_all = ["task", "slurm"])]
    pub list: bool,
    /// Run only run K (0-based, as `--list` numbers them): what a Slurm array task calls.
    #[arg(long, value_name = "K", conflicts_with_all = ["slurm", "jobs"])]
    pub task: Option<usize>,
    /// Write a Slurm array job script for the plan (out_dir/name/sweep.sbatch) instead of
    /// running anything.
    #[arg(long)]
    pub slurm: bool,
    /// With --slurm: the most array tasks running at once.
    #[arg(long, value_name = "M", default_value_t = 8, requires = "slurm",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub slurm_max_parallel: u32,
    /// Threads per run (RAYON_NUM_THREADS); default: the environment's RAYON_NUM_THREADS, else
    /// the available cores divided by --jobs.
    #[arg(long, value_name = "T", value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,
    /// The results root instead of the plan's out_dir (relative to the working directory).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// How a sweep ends, for the process's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepExit {
    /// Exit with this status: 0 when every run finished (or was skipped), 1 when one failed; with
    /// `--task`, the run's own status.
    Code(u8),
    /// Stopped by a signal (SIGINT, SIGTERM, SIGHUP): exit with 128 + its number.
    Stopped,
}

/// Runs `train sweep` as `args` say; `stop` is set by the signal handlers of `main`.
pub fn run(args: &SweepArgs, stop: &AtomicBool) -> Result<SweepExit> {
    let plan = Plan::load(&args.plan, args.out_dir.as_deref())?;
    let exit = if args.list {
        runner::list(&plan)?
    } else if args.slurm {
        slurm::write(&plan, args)?
    } else if let Some(task) = args.task {
        runner::run_task(&plan, task, args.threads, stop)?
    } else {
        runner::run_all(&plan, args.jobs as usize, args.threads, stop)?
    };
    use std::io::Write;
    let _ = std::io::stdout().flush();
    Ok(exit)
}
