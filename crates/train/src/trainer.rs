//! The training loop: epochs of batches, each an update of the [`TrainState`], logged through
//! the [`RunLog`], with checkpoints at the end of every epoch, every `training.checkpoint_steps`
//! updates, and when a signal stops the run; and its three entries: a new run ([`train`]), a
//! resumed one ([`resume`]) and a dry run ([`dry_run`]).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::backend;
use crate::checkpoint::{self, Checkpoint};
use crate::config::{self, Config, ConfigError};
use crate::data;
use crate::experiment::Experiment;
use crate::log::{Columns, ConsoleSink, EpochParts, EpochRecord, Event, FileSink, RunLog};
use crate::output::{Divergence, RunStatus, error_chain, is_finished, write_status};
use crate::passes::{Pass, SetEvaluation, evaluate};
use crate::rundir::{self, RunDir};
use crate::state::{StepOutcome, TrainState};
use crate::stopping::StopReason;
use anyhow::{Context, Result};

/// Runs the experiment of `config` into `run_dir`. A signal (`stop`) ends it after the current
/// step, with a checkpoint. An existing run in `run_dir` is refused unless `overwrite`; another
/// process's run always is. Everything is checked (config, data, model size) before the run
/// directory is touched, and an error after that is recorded in `status` as `failed: ...` where
/// it can still be written.
pub fn train(
    config: &Config,
    run_dir: &Path,
    overwrite: bool,
    stop: &AtomicBool,
) -> Result<RunStatus> {
    let interactive = std::io::stderr().is_terminal();
    rundir::precheck(run_dir, overwrite)?;
    let experiment = Experiment::resolve(config, interactive, stop)?;
    let held = RunDir::acquire(run_dir, overwrite)?;
    let dir = held.path();
    let result = (|| {
        let state = experiment.initial_state()?;
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config::to_toml(config))
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let columns = columns(&experiment, &state);
        let mut log = RunLog::new(vec![
            Box::new(FileSink::create(dir, &columns)?),
            Box::new(ConsoleSink::new(interactive, config.training.epochs)),
        ]);
        log.message(&describe(&experiment))?;
        // The data's fingerprints go into every checkpoint; none are written without them.
        let prints = if config.training.checkpoint {
            fingerprints(&experiment)
        } else {
            BTreeMap::new()
        };
        run(&experiment, state, &mut log, dir, stop, &prints)
    })();
    record_failure(dir, result)
}

/// What `train --resume` was given besides the run directory.
#[derive(Debug, Clone, Default)]
pub struct ResumeRequest {
    /// A config file to resume with instead of the checkpoint's own.
    pub config: Option<PathBuf>,
    /// `--unset` keys.
    pub unset: Vec<String>,
    /// `--set` overrides.
    pub set: Vec<String>,
    /// Accept a config or data that differ from the checkpoint's.
    pub force: bool,
}

/// Continues the run in `run_dir` from its checkpoint: the CSV files are cut back to the
/// checkpoint's update and appended to, so that the finished run's files equal an
/// uninterrupted run's. A config (`request`) that differs from the checkpoint's, or data that
/// changed, is refused with the differences listed unless `request.force`.
pub fn resume(run_dir: &Path, request: &ResumeRequest, stop: &AtomicBool) -> Result<RunStatus> {
    let interactive = std::io::stderr().is_terminal();
    if !run_dir.is_dir() {
        return Err(ConfigError(format!(
            "--resume {}: no such run directory",
            run_dir.display()
        ))
        .into());
    }
    let held = RunDir::lock(run_dir)?;
    let dir = held.path();
    let Some(checkpoint) = Checkpoint::read(dir)? else {
        return Err(ConfigError(format!(
            "--resume {}: the run has no checkpoint ({}), so it stopped before its first one \
             was written; start it again with --config FILE --out {} --overwrite",
            dir.display(),
            checkpoint::CHECKPOINT_FILE,
            dir.display()
        ))
        .into());
    };
    let saved = config::parse(&checkpoint.config_text, &[])
        .map_err(|e| anyhow::anyhow!("{}: its config: {e}", checkpoint.path.display()))?;
    let config = requested_config(&saved, request)?;
    let differences = config::differences(&saved, &config);
    if !differences.is_empty() && !request.force {
        return Err(ConfigError(format!(
            "the config differs from the checkpoint's in {}; pass --force to resume with it \
             anyway",
            differences.join(", ")
        ))
        .into());
    }
    let position = checkpoint.position();
    let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
    let finished = position.epoch > config.training.epochs
        || config
            .training
            .max_steps
            .is_some_and(|max| position.step >= max)
        || (differences.is_empty() && is_finished(&status));
    if finished {
        eprintln!(
            "{}: the run has already finished at step {} ({}); nothing to do",
            dir.display(),
            position.step,
            status.trim()
        );
        return Ok(RunStatus::Completed);
    }
    let experiment = Experiment::resolve(&config, interactive, stop)?;
    let prints = fingerprints(&experiment);
    if &prints != checkpoint.data() && !request.force {
        let changed: Vec<String> = prints
            .iter()
            .filter(|(split, print)| checkpoint.data().get(*split) != Some(print))
            .map(|(split, print)| {
                format!(
                    "{split} (checkpoint {}, now {print})",
                    checkpoint
                        .data()
                        .get(split)
                        .map_or("absent", String::as_str)
                )
            })
            .collect();
        return Err(ConfigError(format!(
            "the data under {} changed since the checkpoint: split {}; pass --force to resume \
             on the new data anyway",
            config.data.root.display(),
            changed.join(", ")
        ))
        .into());
    }
    let result = (|| {
        let mut state = experiment.initial_state()?;
        checkpoint.restore(
            &mut state,
            experiment.model.as_ref(),
            &experiment.compute.device,
            experiment.compute.dtype,
        )?;
        if !differences.is_empty() {
            let path = dir.join("config.toml");
            std::fs::write(&path, config::to_toml(&config))
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        match std::fs::remove_file(dir.join("status")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("cannot remove the earlier status"),
        }
        let columns = columns(&experiment, &state);
        let epochs_done = (position.epoch - 1) as u64;
        let mut log = RunLog::new(vec![
            Box::new(FileSink::resume(dir, &columns, position.step, epochs_done)?),
            Box::new(ConsoleSink::new(interactive, config.training.epochs)),
        ]);
        log.message(&describe(&experiment))?;
        log.message(&format!(
            "resuming after step {} (epoch {}, batch {} of {})",
            position.step, position.epoch, position.batch, experiment.batches_per_epoch
        ))?;
        run(&experiment, state, &mut log, dir, stop, &prints)
    })();
    record_failure(dir, result)
}

/// The config a resume runs with: the request's file (or the checkpoint's config) with the
/// request's `--unset` and `--set` applied.
fn requested_config(saved: &Config, request: &ResumeRequest) -> Result<Config> {
    if let Some(path) = &request.config {
        return Ok(config::load(path, &request.unset, &request.set)?);
    }
    if request.unset.is_empty() && request.set.is_empty() {
        return Ok(saved.clone());
    }
    Ok(config::parse_with(
        &config::to_toml(saved),
        &request.unset,
        &request.set,
    )?)
}

/// What `--dry-run` found.
pub struct DryRun {
    /// The resolved config (TOML).
    pub config: String,
    /// The report, one fact per line.
    pub lines: Vec<String>,
}

/// Resolves and checks everything a run of `config` needs (config, data, model, optimizer),
/// then takes one trial update in memory (nothing is written) to measure the checkpoint size and
/// a step's time.
pub fn dry_run(config: &Config, stop: &AtomicBool) -> Result<DryRun> {
    let experiment = Experiment::resolve(config, std::io::stderr().is_terminal(), stop)?;
    let prepared = &experiment.prepared;
    let epochs = config.training.epochs as u64;
    let per_epoch = experiment.batches_per_epoch as u64;
    let total = config
        .training
        .max_steps
        .map_or(epochs * per_epoch, |max| max.min(epochs * per_epoch));
    let size = |set: Option<&steplab_data::Dataset>| set.map_or(0, |s| s.len());
    let mut lines = vec![
        format!(
            "model: {} with {} trained parameters and {} values of non-trained state",
            config.model.kind(),
            experiment.trained_params,
            experiment.state_values
        ),
        format!(
            "data: {} training, {} validation, {} test samples",
            prepared.train.len(),
            size(prepared.validation.as_ref()),
            size(prepared.test.as_ref())
        ),
        format!(
            "steps: {per_epoch} per epoch (batch {}), {total} in all over {epochs} epochs{}",
            config.data.batch_size,
            if config.training.max_steps.is_some() {
                " (training.max_steps)"
            } else {
                ""
            }
        ),
        format!(
            "device: {} ({:?})",
            backend::name(config.run.backend),
            config.run.precision
        ),
    ];
    let mut state = experiment.initial_state()?;
    let stepper = experiment.stepper();
    stepper.begin_epoch(&mut state);
    let rows: Vec<usize> = (0..config.data.batch_size.min(prepared.train.len())).collect();
    let batch = data::HostBatch::gather(
        &prepared.train,
        &rows,
        &prepared.pipeline,
        experiment.compute.dtype,
        Some(1),
    )
    .into_batch(&experiment.compute);
    let started = Instant::now();
    let outcome = stepper.step(&mut state, &batch);
    let seconds = started.elapsed().as_secs_f64();
    match outcome {
        StepOutcome::Updated(record) => lines.push(format!(
            "trial step (not saved): loss {:.6}, lr {:e}, {seconds:.3} s (includes warm-up)",
            record.loss, record.lr
        )),
        StepOutcome::NonFiniteLoss => {
            lines.push("trial step (not saved): the loss of the first batch is not finite".into())
        }
    }
    let bytes = checkpoint::tensor_bytes(&state);
    lines.push(format!(
        "checkpoint: about {} ({})",
        human_bytes(bytes),
        if config.training.checkpoint {
            match config.training.checkpoint_steps {
                Some(k) => format!("written every epoch and every {k} steps"),
                None => "written every epoch".to_string(),
            }
        } else {
            "off: training.checkpoint = false".to_string()
        }
    ));
    Ok(DryRun {
        config: config::to_toml(config),
        lines,
    })
}

fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

/// Records an error of a run whose directory is held as its `status`.
fn record_failure(dir: &Path, result: Result<RunStatus>) -> Result<RunStatus> {
    result.inspect_err(|error| {
        let status = RunStatus::Failed {
            error: error_chain(error),
        };
        let _ = write_status(dir, &status);
    })
}

fn columns(experiment: &Experiment, state: &TrainState) -> Columns {
    Columns {
        parts: experiment
            .model
            .loss_parts()
            .iter()
            .map(|s| s.to_string())
            .collect(),
        diagnostics: state
            .optimizer
            .diagnostic_names()
            .iter()
            .map(|s| s.to_string())
            .collect(),
        layers: state.optimizer.per_tensor_name().map(|_| {
            experiment
                .model
                .param_specs()
                .iter()
                .map(|s| s.name.clone())
                .collect()
        }),
    }
}

fn describe(experiment: &Experiment) -> String {
    let config = &experiment.config;
    let note = config
        .schedule
        .as_ref()
        .and_then(|s| s.unreached_milestones(config.training.epochs))
        .map(|note| format!("\nnote: {note}"))
        .unwrap_or_default();
    format!(
        "{}: {} on {} samples ({} batches/epoch), {} parameters, {} with {} on {} ({:?})",
        config.run.name.as_deref().unwrap_or("run"),
        config.model.kind(),
        experiment.prepared.train.len(),
        experiment.batches_per_epoch,
        experiment.trained_params,
        config.optimizer.kind(),
        format_args!("lr {}", config.optimizer.lr()),
        backend::name(config.run.backend),
        config.run.precision,
    ) + &note
}

/// The fingerprints of the experiment's data splits, as a checkpoint keeps them.
fn fingerprints(experiment: &Experiment) -> BTreeMap<String, String> {
    let prepared = &experiment.prepared;
    let mut prints = BTreeMap::from([("train".to_string(), prepared.train.fingerprint())]);
    if let Some(set) = &prepared.validation {
        prints.insert("validation".into(), set.fingerprint());
    }
    if let Some(set) = &prepared.test {
        prints.insert("test".into(), set.fingerprint());
    }
    prints
}

/// Fault injection for the tests, from the environment variable `STEPLAB_FAULT`:
/// `abort_after_step=N` aborts the process right after update N is logged (nothing is cleaned
/// up, as with SIGKILL); `abort_in_checkpoint=N` aborts in the middle of the first checkpoint
/// written after update N (its temporary file written, not yet renamed into place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    AbortAfterStep(u64),
    AbortInCheckpoint(u64),
}

impl Fault {
    fn from_env() -> Self {
        let Ok(text) = std::env::var("STEPLAB_FAULT") else {
            return Self::None;
        };
        let parse = |v: &str| v.trim().parse::<u64>().ok();
        match text.split_once('=') {
            Some(("abort_after_step", v)) => parse(v).map_or(Self::None, Self::AbortAfterStep),
            Some(("abort_in_checkpoint", v)) => {
                parse(v).map_or(Self::None, Self::AbortInCheckpoint)
            }
            _ => Self::None,
        }
    }
}

/// Seconds since the last call, for the epoch's and the run's clocks.
struct Clock(Instant);

impl Clock {
    fn lap(&mut self) -> f64 {
        let now = Instant::now();
        let seconds = now.duration_since(self.0).as_secs_f64();
        self.0 = now;
        seconds
    }
}

/// Trains `state` to the end of the experiment (or a stop), logging into `log`; checkpoints
/// carry `prints`, the data splits' fingerprints.
fn run(
    experiment: &Experiment,
    mut state: TrainState,
    log: &mut RunLog,
    dir: &Path,
    stop: &AtomicBool,
    prints: &BTreeMap<String, String>,
) -> Result<RunStatus> {
    let config = &experiment.config;
    let compute = &experiment.compute;
    let prepared = &experiment.prepared;
    let model = experiment.model.as_ref();
    let stepper = experiment.stepper();
    let epochs = config.training.epochs;
    let batch_size = config.data.batch_size;
    let n = prepared.train.len();
    let config_toml = config::to_toml(config);
    let fault = Fault::from_env();
    let save = |state: &TrainState, log: &mut RunLog| -> Result<()> {
        if config.training.checkpoint {
            log.sync()?;
            let abort = matches!(fault, Fault::AbortInCheckpoint(n) if state.position.step >= n);
            checkpoint::save(dir, &config_toml, state, model, prints, abort)?;
        }
        Ok(())
    };
    let at_max = |state: &TrainState| {
        config
            .training
            .max_steps
            .is_some_and(|max| state.position.step >= max)
    };
    let out_of_time = |state: &TrainState| {
        config
            .training
            .max_seconds
            .is_some_and(|budget| state.train_seconds >= budget)
    };
    let mut clock = Clock(Instant::now());
    while state.position.epoch <= epochs && !at_max(&state) {
        let epoch = state.position.epoch;
        stepper.begin_epoch(&mut state);
        log.send(Event::EpochStart {
            epoch,
            done: state.position.batch,
            batches: experiment.batches_per_epoch,
        })?;
        let order =
            steplab_data::epoch_order(n, config.data.shuffle, config.run.seed, epoch as u64);
        let skip = (state.position.batch * batch_size).min(order.len());
        let loader = data::prefetch(
            prepared.train.clone(),
            order[skip..].to_vec(),
            batch_size,
            prepared.pipeline.clone(),
            compute.dtype,
            epoch as u64,
        )?;
        for host in loader {
            let batch = host.into_batch(compute);
            let record = match stepper.step(&mut state, &batch) {
                StepOutcome::Updated(record) => record,
                StepOutcome::NonFiniteLoss => {
                    let status = RunStatus::Diverged {
                        step: state.position.step + 1,
                        cause: Divergence::NonFiniteLoss,
                    };
                    log.send(Event::Status(&status))?;
                    return Ok(status);
                }
            };
            let seconds = clock.lap();
            state.totals.seconds += seconds;
            state.train_seconds += seconds;
            log.send(Event::Step(&record))?;
            if fault == Fault::AbortAfterStep(record.step) {
                std::process::abort();
            }
            if !record.lr.is_finite() {
                let status = RunStatus::Diverged {
                    step: record.step,
                    cause: Divergence::NonFiniteStepSize,
                };
                log.send(Event::Status(&status))?;
                return Ok(status);
            }
            if stop.load(Ordering::SeqCst) {
                save(&state, log)?;
                let status = RunStatus::Interrupted { step: record.step };
                if config.training.checkpoint {
                    log.message(&format!(
                        "checkpoint saved; continue with: train --resume {}",
                        dir.display()
                    ))?;
                }
                log.send(Event::Status(&status))?;
                return Ok(status);
            }
            if config
                .training
                .checkpoint_steps
                .is_some_and(|k| record.step % k == 0)
            {
                save(&state, log)?;
            }
            if at_max(&state) {
                break;
            }
            if out_of_time(&state) {
                break;
            }
        }
        let record = evaluate_epoch(experiment, &mut state, &mut clock);
        log.send(Event::Epoch(&record))?;
        if let Some(path) = crate::pictures::write_epoch_grid(experiment, &state, dir)? {
            log.message(&format!("pictures: {}", path.display()))?;
        }
        let stop_reason = state
            .stopping
            .after_epoch(
                &record,
                state.position.step,
                state.train_seconds,
                config.training.early_stopping.as_ref(),
                config.training.target.as_ref(),
            )
            .or_else(|| {
                // Training seconds only grow, so a budget used up mid-epoch still is.
                config
                    .training
                    .max_seconds
                    .filter(|_| out_of_time(&state))
                    .map(|budget| StopReason::TimeBudget { budget })
            });
        stepper.end_epoch(&mut state);
        save(&state, log)?;
        if let Some(reason) = stop_reason {
            let status = RunStatus::Stopped {
                step: state.position.step,
                reason,
            };
            log.send(Event::Status(&status))?;
            return Ok(status);
        }
    }
    let status = RunStatus::Completed;
    log.send(Event::Status(&status))?;
    Ok(status)
}

/// The epoch's row: its training totals, and the validation and test sets evaluated at the
/// state's weights (`Eval` mode: running statistics, no dropout).
fn evaluate_epoch(
    experiment: &Experiment,
    state: &mut TrainState,
    clock: &mut Clock,
) -> EpochRecord {
    let config = &experiment.config;
    let compute = &experiment.compute;
    let prepared = &experiment.prepared;
    let noise = steplab_models::StepNoise::new(
        config.run.seed,
        state.position.step,
        &compute.device,
        compute.dtype,
    );
    let pass = Pass {
        model: experiment.model.as_ref(),
        state: &state.model_state,
        noise: &noise,
        l2: config.training.l2,
    };
    let eval = |set: &Option<steplab_data::Dataset>| match set {
        Some(set) if config.training.evaluate => Some(evaluate(
            &pass,
            &state.params,
            set,
            &prepared.pipeline,
            compute,
            config.data.eval_batch_size,
        )),
        _ => None,
    };
    let validation = eval(&prepared.validation);
    let test = eval(&prepared.test);
    let parts = EpochParts {
        train: state.totals.part_means(),
        validation: validation.as_ref().map(|e| e.parts.clone()),
        test: test.as_ref().map(|e| e.parts.clone()),
    };
    let pair = |e: Option<SetEvaluation>| e.map_or((None, None), |e| (Some(e.loss), e.accuracy));
    let (validation, test) = (pair(validation), pair(test));
    let lap = clock.lap();
    state.train_seconds += lap;
    let seconds = state.totals.seconds + lap;
    EpochRecord {
        epoch: state.position.epoch,
        train_loss: state.totals.loss.value(),
        train_accuracy: state.totals.accuracy(),
        validation,
        test,
        lr: state.last_lr,
        seconds,
        parts,
    }
}
