//! Running a sweep's runs: the state of a run directory, what to do with it, the local runner
//! (parallel child processes) and `--task` (one run, as a Slurm array task).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use super::SweepExit;
use super::plan::{Plan, Run};
use super::slurm::{check_manifest, shell_quote};
use crate::checkpoint::CHECKPOINT_FILE;
use crate::config::ConfigError;
use crate::output::is_finished;

/// The file in each run directory that receives the run's stdout and stderr (appended).
pub const LOG_FILE: &str = "train.log";

/// How often the local runner looks at its children and the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// What a run directory holds, as far as a sweep is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Nothing yet.
    Pending,
    /// A `train` process holds the directory's lock (only `--list` looks for this).
    Running,
    /// Its `status` says it finished ([`is_finished`]): that status.
    Finished(String),
    /// It did not finish and has a checkpoint to resume from: its status, if it has one.
    Interrupted(Option<String>),
    /// It ended unfinished without a checkpoint (or failed before training): what is known.
    Failed(String),
}

/// What a sweep does with a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing: it finished, with this status.
    Skip(String),
    /// `train --resume DIR --config CONFIG --set ...`.
    Resume,
    /// `train --config CONFIG --set ... --out DIR --overwrite`.
    Fresh,
}

impl RunState {
    /// The state of the run directory `dir` from its files (`status`, the checkpoint,
    /// `steps.csv`, `train.log`); never [`RunState::Running`].
    pub fn of(dir: &Path) -> Self {
        let status = std::fs::read_to_string(dir.join("status"))
            .ok()
            .map(|text| text.lines().next().unwrap_or("").trim().to_string());
        if let Some(status) = &status
            && is_finished(status)
        {
            return Self::Finished(status.clone());
        }
        if dir.join(CHECKPOINT_FILE).is_file() {
            return Self::Interrupted(status);
        }
        match status {
            Some(status) => Self::Failed(format!("{status}; no checkpoint")),
            None if dir.join("steps.csv").exists() => {
                Self::Failed("no status and no checkpoint: killed before its first one?".into())
            }
            None if dir.join(LOG_FILE).exists() => {
                Self::Failed(format!("it stopped before training; see {LOG_FILE}"))
            }
            None => Self::Pending,
        }
    }

    /// [`RunState::of`], or [`RunState::Running`] when a process holds the directory's lock.
    pub fn probe(dir: &Path) -> Self {
        if let Ok(lock) = File::open(dir.join(".lock"))
            && let Err(std::fs::TryLockError::WouldBlock) = lock.try_lock_shared()
        {
            return Self::Running;
        }
        Self::of(dir)
    }

    /// The state's word in `--list`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Finished(_) => "finished",
            Self::Interrupted(_) => "interrupted",
            Self::Failed(_) => "failed",
        }
    }

    /// The state with its details, as `--list` prints it.
    pub fn describe(&self) -> String {
        match self {
            Self::Pending | Self::Running => self.label().to_string(),
            Self::Finished(status) => format!("finished ({status})"),
            Self::Interrupted(Some(status)) => format!("interrupted ({status}; has a checkpoint)"),
            Self::Interrupted(None) => "interrupted (no status; has a checkpoint)".into(),
            Self::Failed(what) => format!("failed ({what})"),
        }
    }

    /// What a sweep does with a run in this state: skip a finished one, resume one with a
    /// checkpoint, start any other afresh.
    pub fn action(&self) -> Action {
        match self {
            Self::Finished(status) => Action::Skip(status.clone()),
            Self::Interrupted(_) => Action::Resume,
            Self::Pending | Self::Running | Self::Failed(_) => Action::Fresh,
        }
    }
}

/// `--list`: prints each run's index, name and state.
pub(super) fn list(plan: &Plan) -> Result<SweepExit> {
    println!(
        "sweep {}: {} runs in {}",
        plan.name,
        plan.runs.len(),
        plan.dir.display()
    );
    let width = plan.runs.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let digits = plan.runs.len().saturating_sub(1).to_string().len().max(4);
    println!("{:>digits$}  {:<width$}  state", "task", "name");
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for run in &plan.runs {
        let state = RunState::probe(&run.dir);
        println!(
            "{:>digits$}  {:<width$}  {}",
            run.index,
            run.name,
            state.describe()
        );
        match counts.iter_mut().find(|(label, _)| *label == state.label()) {
            Some((_, n)) => *n += 1,
            None => counts.push((state.label(), 1)),
        }
    }
    let counts: Vec<String> = counts.iter().map(|(l, n)| format!("{n} {l}")).collect();
    println!("{}", counts.join(", "));
    Ok(SweepExit::Code(0))
}

/// The `RAYON_NUM_THREADS` to give each run: `flag`, else none (the environment's value is
/// inherited) when the environment sets it, else the available cores divided by `jobs`.
fn threads_per_run(flag: Option<u32>, jobs: usize) -> Option<usize> {
    if let Some(threads) = flag {
        return Some(threads as usize);
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_some_and(|v| !v.is_empty()) {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some((cores / jobs.max(1)).max(1))
}

/// The `train` arguments of `action` on `run`.
fn train_args(run: &Run, action: &Action) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    if *action == Action::Resume {
        args.extend(["--resume".into(), run.dir.clone().into()]);
    }
    args.extend(["--config".into(), run.config.clone().into()]);
    for item in &run.set {
        args.extend(["--set".into(), item.into()]);
    }
    if *action == Action::Fresh {
        args.extend(["--out".into(), run.dir.clone().into(), "--overwrite".into()]);
    }
    args
}

/// The `train` process of `action` on `run`: this binary, stdin closed, stdout and stderr
/// appended to the run's `train.log` (after a line saying what starts), `RAYON_NUM_THREADS` set
/// to `threads` when given. Creates the run directory.
fn command(plan: &Plan, run: &Run, action: &Action, threads: Option<usize>) -> Result<Command> {
    let exe = std::env::current_exe().context("cannot find the path of this train binary")?;
    std::fs::create_dir_all(&run.dir)
        .with_context(|| format!("cannot create run directory {}", run.dir.display()))?;
    let log_path = run.dir.join(LOG_FILE);
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let args = train_args(run, action);
    let shown: Vec<String> = args
        .iter()
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect();
    writeln!(
        log,
        "=== {}: sweep {} task {}: train {} ===",
        utc_now(),
        plan.name,
        run.index,
        shown.join(" ")
    )
    .with_context(|| format!("cannot write {}", log_path.display()))?;
    let err = log
        .try_clone()
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err));
    if let Some(threads) = threads {
        cmd.env("RAYON_NUM_THREADS", threads.to_string());
    }
    Ok(cmd)
}

/// How `action` starts, for the progress lines.
fn starting(action: &Action) -> &'static str {
    match action {
        Action::Resume => "resuming from its checkpoint",
        _ => "fresh",
    }
}

/// The exit status as a number: the code, or 128 + the signal that killed the process.
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Sends SIGTERM to a child (not yet waited for, so its id is still its own).
fn terminate(child: &Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stdout(Stdio::null())
        .status();
    if !sent.is_ok_and(|s| s.success()) {
        eprintln!("warning: cannot send SIGTERM to process {}", child.id());
    }
}

/// A run that failed: for the summary.
struct Failure {
    index: usize,
    name: String,
    /// The exit status, or why the run could not start.
    what: String,
    log: PathBuf,
}

/// A live child of the local runner.
struct Live<'a> {
    run: &'a Run,
    child: Child,
    started: Instant,
}

/// Counts of a local sweep, for its summary.
#[derive(Default)]
struct Summary {
    finished: usize,
    skipped: usize,
    failed: Vec<Failure>,
    interrupted: usize,
    not_started: usize,
}

/// Runs every run of `plan`, `jobs` at a time, and prints a summary; `stop` (set by a signal)
/// forwards SIGTERM to the live runs and starts no more.
pub(super) fn run_all(
    plan: &Plan,
    jobs: usize,
    threads: Option<u32>,
    stop: &AtomicBool,
) -> Result<SweepExit> {
    let total = plan.runs.len();
    let threads = threads_per_run(threads, jobs);
    let each = match threads {
        Some(n) => format!("RAYON_NUM_THREADS={n}"),
        None => "RAYON_NUM_THREADS from the environment".into(),
    };
    eprintln!(
        "sweep {}: {total} runs, {jobs} at a time, {each}; results in {}",
        plan.name,
        plan.dir.display()
    );
    let clock = Instant::now();
    let tag = |run: &Run| {
        format!(
            "[{:>w$}/{total}]",
            run.index + 1,
            w = total.to_string().len()
        )
    };
    let mut summary = Summary::default();
    let mut queue = plan.runs.iter();
    let mut live: Vec<Live> = Vec::new();
    let mut forwarded = false;
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        if stopping && !forwarded {
            forwarded = true;
            eprintln!(
                "stopping: SIGTERM sent to {} running run(s); waiting for their checkpoints",
                live.len()
            );
            for l in &live {
                terminate(&l.child);
            }
        }
        while !stopping && live.len() < jobs {
            let Some(run) = queue.next() else { break };
            let action = RunState::of(&run.dir).action();
            if let Action::Skip(status) = &action {
                eprintln!(
                    "{} skip    {}: finished before ({status})",
                    tag(run),
                    run.name
                );
                summary.skipped += 1;
                continue;
            }
            let log = run.dir.join(LOG_FILE);
            match command(plan, run, &action, threads).and_then(|mut cmd| {
                cmd.process_group(0)
                    .spawn()
                    .with_context(|| format!("cannot start train for {}", run.name))
            }) {
                Ok(child) => {
                    eprintln!("{} start   {} ({})", tag(run), run.name, starting(&action));
                    live.push(Live {
                        run,
                        child,
                        started: Instant::now(),
                    });
                }
                Err(err) => {
                    eprintln!("{} FAILED  {}: {err:#}", tag(run), run.name);
                    summary.failed.push(Failure {
                        index: run.index,
                        name: run.name.clone(),
                        what: format!("{err:#}"),
                        log,
                    });
                }
            }
        }
        let mut i = 0;
        while i < live.len() {
            let waited = live[i].child.try_wait();
            let status = match waited {
                Ok(Some(status)) => status,
                Ok(None) => {
                    i += 1;
                    continue;
                }
                Err(err) => {
                    // Cannot happen for a child of ours; wait for it blocking.
                    eprintln!("warning: {err}; waiting for run {}", live[i].run.name);
                    live[i].child.wait().context("cannot wait for a run")?
                }
            };
            let done = live.swap_remove(i);
            finish(&done, status, forwarded, &tag(done.run), &mut summary);
        }
        let exhausted = queue.len() == 0;
        if live.is_empty() && (exhausted || stopping) {
            summary.not_started = queue.len();
            break;
        }
        std::thread::sleep(POLL);
    }
    print_summary(plan, &summary, clock.elapsed().as_secs_f64());
    if forwarded {
        Ok(SweepExit::Stopped)
    } else if summary.failed.is_empty() {
        Ok(SweepExit::Code(0))
    } else {
        Ok(SweepExit::Code(1))
    }
}

/// Records and prints how a child ended.
fn finish(done: &Live, status: ExitStatus, stopping: bool, tag: &str, summary: &mut Summary) {
    let run = done.run;
    let seconds = done.started.elapsed().as_secs_f64();
    let code = exit_code(status);
    let log = run.dir.join(LOG_FILE);
    if code == 0 {
        let what = match RunState::of(&run.dir) {
            RunState::Finished(status) => status,
            _ => "finished".into(),
        };
        eprintln!("{tag} done    {}: {what} in {seconds:.1} s", run.name);
        summary.finished += 1;
    } else if stopping && matches!(code, 129 | 130 | 143) {
        eprintln!(
            "{tag} stopped {}: interrupted after {seconds:.1} s (the next sweep resumes it)",
            run.name
        );
        summary.interrupted += 1;
    } else {
        let what = match status.signal() {
            Some(signal) => format!("killed by signal {signal}"),
            None => format!("exit {code}"),
        };
        eprintln!(
            "{tag} FAILED  {}: {what} after {seconds:.1} s; log: {}",
            run.name,
            log.display()
        );
        summary.failed.push(Failure {
            index: run.index,
            name: run.name.clone(),
            what,
            log,
        });
    }
}

fn print_summary(plan: &Plan, summary: &Summary, seconds: f64) {
    eprintln!(
        "sweep {}: {} runs in {seconds:.1} s: {} finished, {} skipped (finished before), {} \
         failed",
        plan.name,
        plan.runs.len(),
        summary.finished,
        summary.skipped,
        summary.failed.len()
    );
    if summary.interrupted > 0 || summary.not_started > 0 {
        eprintln!(
            "stopped by a signal: {} interrupted (checkpointed), {} not started; run the sweep \
             again to resume",
            summary.interrupted, summary.not_started
        );
    }
    if !summary.failed.is_empty() {
        eprintln!("failed runs:");
        for failure in &summary.failed {
            eprintln!(
                "  {} (task {}): {}; log: {}",
                failure.name,
                failure.index,
                failure.what,
                failure.log.display()
            );
        }
    }
}

/// `--task K`: runs run `task` alone with the sweep's rule (skip, resume, fresh). The run's
/// `train` replaces this process (`exec`), so its exit status is the run's and the signals sent
/// to this process (Slurm's) reach the run once; a finished run returns 0 at once.
pub(super) fn run_task(
    plan: &Plan,
    task: usize,
    threads: Option<u32>,
    stop: &AtomicBool,
) -> Result<SweepExit> {
    let total = plan.runs.len();
    let Some(run) = plan.runs.get(task) else {
        return Err(ConfigError(format!(
            "--task {task}: the plan {} has {total} runs, tasks 0 to {}",
            plan.path.display(),
            total.saturating_sub(1)
        ))
        .into());
    };
    check_manifest(plan)?;
    let action = RunState::of(&run.dir).action();
    if let Action::Skip(status) = &action {
        eprintln!(
            "[task {task}/{total}] skip {}: finished before ({status}); nothing to do",
            run.name
        );
        return Ok(SweepExit::Code(0));
    }
    let mut cmd = command(plan, run, &action, threads_per_run(threads, 1))?;
    eprintln!(
        "[task {task}/{total}] start {} ({}); log: {}",
        run.name,
        starting(&action),
        run.dir.join(LOG_FILE).display()
    );
    if stop.load(Ordering::SeqCst) {
        return Ok(SweepExit::Stopped);
    }
    let err = cmd.exec();
    Err(err).with_context(|| format!("cannot start train for {}", run.name))
}

/// The time now as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc_now() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(seconds)
}

/// Seconds since 1970 as `YYYY-MM-DD HH:MM:SS UTC` (H. Hinnant's `civil_from_days`).
fn utc(seconds: u64) -> String {
    let (days, rem) = ((seconds / 86_400) as i64, seconds % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_of_a_run_directory_decides_skip_resume_or_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        assert_eq!(RunState::of(&run), RunState::Pending);
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join(LOG_FILE), "error: bad config\n").unwrap();
        assert!(matches!(RunState::of(&run), RunState::Failed(_)));
        assert_eq!(RunState::of(&run).action(), Action::Fresh);
        std::fs::write(run.join("status"), "interrupted after step 5\n").unwrap();
        assert_eq!(RunState::of(&run).action(), Action::Fresh);
        std::fs::write(run.join(CHECKPOINT_FILE), "").unwrap();
        assert_eq!(
            RunState::of(&run),
            RunState::Interrupted(Some("interrupted after step 5".into()))
        );
        assert_eq!(RunState::of(&run).action(), Action::Resume);
        std::fs::write(
            run.join("status"),
            "diverged at step 7: non-finite step size\n",
        )
        .unwrap();
        assert_eq!(
            RunState::of(&run).action(),
            Action::Skip("diverged at step 7: non-finite step size".into())
        );
        std::fs::remove_file(run.join("status")).unwrap();
        assert_eq!(RunState::of(&run), RunState::Interrupted(None));
        assert_eq!(RunState::probe(&run), RunState::Interrupted(None));
    }

    #[test]
    fn a_held_lock_reads_as_running_in_the_list() {
        let dir = tempfile::tempdir().unwrap();
        let held = crate::rundir::RunDir::acquire(dir.path(), false).unwrap();
        assert_eq!(RunState::probe(dir.path()), RunState::Running);
        drop(held);
        assert_eq!(RunState::probe(dir.path()), RunState::Pending);
    }

    #[test]
    fn fresh_and_resumed_runs_get_their_arguments() {
        let run = Run {
            index: 0,
            name: "a-seed1".into(),
            config: "/c/a.toml".into(),
            set: vec!["optimizer.lr=0.1".into(), "run.seed=1".into()],
            dir: "/o/s/a-seed1".into(),
        };
        let text = |action| {
            train_args(&run, &action)
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            text(Action::Fresh),
            "--config /c/a.toml --set optimizer.lr=0.1 --set run.seed=1 --out /o/s/a-seed1 \
             --overwrite"
        );
        assert_eq!(
            text(Action::Resume),
            "--resume /o/s/a-seed1 --config /c/a.toml --set optimizer.lr=0.1 --set run.seed=1"
        );
    }

    #[test]
    fn threads_come_from_the_flag_else_the_cores_per_job() {
        assert_eq!(threads_per_run(Some(3), 8), Some(3));
        if std::env::var_os("RAYON_NUM_THREADS").is_none() {
            let cores = std::thread::available_parallelism().unwrap().get();
            assert_eq!(threads_per_run(None, 1), Some(cores));
            assert_eq!(threads_per_run(None, cores * 4), Some(1));
        }
    }

    #[test]
    fn times_print_as_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400 + 3661), "2000-02-29 01:01:01 UTC");
        assert_eq!(utc(1_709_251_199), "2024-02-29 23:59:59 UTC");
    }
}
