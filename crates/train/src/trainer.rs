//! The training loop: batch → forward → loss → backward → optimizer step → log.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::{DType, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use steplab_data::Dataset;
use steplab_models::{
    Cx, Forward, Loss, Mode, Model, Reduction, StepNoise, Task, init_params, init_state,
};
use steplab_optim::{LossProbe, ParamList, StepInput, StepOutput, StepSizeOptimizer};

use crate::backend::{self, Compute};
use crate::config::{self, Config, ConfigError, DatasetKind};
use crate::data::{self, Batch, make_batch};
use crate::output::{Cell, CsvLog, Divergence, RunStatus, error_chain, write_status};
use crate::rundir::{self, RunDir};

/// Reads a one-element tensor back to the host as f64 (a sync point).
fn scalar(t: Tensor<1>) -> f64 {
    t.inner()
        .into_data()
        .try_into_vec_as::<f64>()
        .expect("float tensor")[0]
}

/// What every forward pass of one step shares: the model, its state (running statistics), the
/// step's random draws, and the L2 coefficient of the objective (`training.l2`).
#[derive(Clone, Copy)]
pub struct Pass<'a> {
    /// The model.
    pub model: &'a dyn Model,
    /// The model's non-trained state (one tensor per [`steplab_models::StateSpec`]).
    pub state: &'a [Tensor<1>],
    /// The step's random draws (dropout masks), shared by the step's training pass and probes.
    pub noise: &'a StepNoise,
    /// λ of the objective's (λ/2)·‖θ‖² term; 0 for none.
    pub l2: f64,
}

impl Pass<'_> {
    /// The whole objective of `batch` at `params` (the model's loss plus the L2 term) in `mode`.
    fn objective(&self, params: &[Tensor<1>], batch: &Batch, mode: Mode) -> Forward {
        let cx = Cx {
            mode,
            noise: self.noise,
        };
        let mut forward = self
            .model
            .forward(params, self.state, &batch.inputs, &batch.target, &cx);
        if self.l2 != 0.0 {
            let penalty = params
                .iter()
                .map(|p| p.clone().square().sum())
                .reduce(|a, b| a.add(b))
                .map(|total| total.mul_scalar(0.5 * self.l2));
            if let Some(penalty) = penalty {
                forward.loss = forward.loss.add(penalty);
            }
        }
        forward
    }
}

/// The result of a forward and backward pass.
pub struct Graded {
    /// The objective's value.
    pub loss: f64,
    /// Its gradient, one tensor per parameter.
    pub grads: ParamList,
    /// The model's outputs (no autodiff graph).
    pub outputs: Tensor<2>,
    /// The updated state of a `Train` pass of a model with state.
    pub new_state: Option<Vec<Tensor<1>>>,
}

/// Loss and gradient of `batch` at `params` (one forward and one backward pass), the outputs and
/// (in `Train` mode) the updated model state.
pub fn loss_and_grad(pass: &Pass<'_>, params: &[Tensor<1>], batch: &Batch, mode: Mode) -> Graded {
    let tracked: ParamList = params
        .iter()
        .map(|p| p.clone().autodiff().require_grad())
        .collect();
    let forward = pass.objective(&tracked, batch, mode);
    let grads = forward.loss.backward();
    let grads = tracked
        .iter()
        .map(|p| {
            p.grad(&grads)
                .unwrap_or_else(|| p.clone().inner().zeros_like())
        })
        .collect();
    Graded {
        loss: scalar(forward.loss),
        grads,
        outputs: forward.outputs.inner(),
        new_state: forward
            .new_state
            .map(|state| state.into_iter().map(Tensor::inner).collect()),
    }
}

/// Loss of `batch` at `params` from a forward pass only (a probe: running statistics untouched,
/// the step's own random draws).
fn probe_loss(pass: &Pass<'_>, params: &[Tensor<1>], batch: &Batch) -> f64 {
    scalar(pass.objective(params, batch, Mode::Probe).loss)
}

/// The optimizers' view of the current batch: forward passes at other weights.
pub struct BatchProbe<'a> {
    /// What the step's passes share.
    pub pass: Pass<'a>,
    /// The step's batch.
    pub batch: &'a Batch,
}

impl LossProbe for BatchProbe<'_> {
    fn loss_at(&mut self, params: &[Tensor<1>]) -> f64 {
        probe_loss(&self.pass, params, self.batch)
    }

    fn loss_and_grad_at(&mut self, params: &[Tensor<1>]) -> (f64, ParamList) {
        let graded = loss_and_grad(&self.pass, params, self.batch, Mode::Probe);
        (graded.loss, graded.grads)
    }
}

/// The optimizers' view of a held-out batch: one random batch of the validation split, drawn
/// (seeded) the first time a step asks for it and reused for the rest of that step.
struct HoldoutProbe<'a> {
    pass: Pass<'a>,
    set: &'a Dataset,
    pipeline: &'a data::Pipeline,
    compute: &'a Compute,
    batch_size: usize,
    rng: &'a mut ChaCha8Rng,
    batch: Option<Batch>,
}

impl HoldoutProbe<'_> {
    fn batch(&mut self) -> &Batch {
        if self.batch.is_none() {
            let n = self.set.len();
            let rows = rand::seq::index::sample(self.rng, n, self.batch_size.min(n)).into_vec();
            self.batch = Some(make_batch(self.set, &rows, self.pipeline, self.compute));
        }
        self.batch.as_ref().expect("drawn above")
    }
}

impl LossProbe for HoldoutProbe<'_> {
    fn loss_at(&mut self, params: &[Tensor<1>]) -> f64 {
        let pass = self.pass;
        probe_loss(&pass, params, self.batch())
    }

    fn loss_and_grad_at(&mut self, params: &[Tensor<1>]) -> (f64, ParamList) {
        let pass = self.pass;
        let graded = loss_and_grad(&pass, params, self.batch(), Mode::Probe);
        (graded.loss, graded.grads)
    }
}

/// Combines batch losses into the loss of a whole set, as the model's loss defines it: a summed
/// loss adds up, an averaged one is weighted by batch size and divided by the sample count.
struct SetLoss {
    summed: bool,
    total: f64,
    samples: usize,
}

impl SetLoss {
    fn new(model: &dyn Model) -> Self {
        let summed = model.loss() == Loss::SquaredError(Reduction::Sum);
        Self {
            summed,
            total: 0.0,
            samples: 0,
        }
    }

    fn add(&mut self, batch_loss: f64, batch_len: usize) {
        self.total += if self.summed {
            batch_loss
        } else {
            batch_loss * batch_len as f64
        };
        self.samples += batch_len;
    }

    fn value(&self) -> f64 {
        if self.summed {
            self.total
        } else {
            self.total / self.samples.max(1) as f64
        }
    }
}

/// Loss (the objective as the model's loss defines it, over the whole set) and accuracy of a
/// dataset, in `Eval` mode (running statistics, no dropout).
fn evaluate(
    pass: &Pass<'_>,
    params: &[Tensor<1>],
    set: &Dataset,
    pipeline: &data::Pipeline,
    compute: &Compute,
    batch_size: usize,
) -> (f64, Option<f64>) {
    let order: Vec<usize> = (0..set.len()).collect();
    let mut set_loss = SetLoss::new(pass.model);
    let mut correct = 0usize;
    let mut has_labels = false;
    for rows in order.chunks(batch_size) {
        let batch = make_batch(set, rows, pipeline, compute);
        let Forward { loss, outputs, .. } = pass.objective(params, &batch, Mode::Eval);
        set_loss.add(scalar(loss), batch.len);
        if let Some(labels) = &batch.labels {
            has_labels = true;
            correct += data::count_correct(outputs, labels);
        }
    }
    (
        set_loss.value(),
        has_labels.then(|| correct as f64 / set.len() as f64),
    )
}

/// Running totals of one epoch's training batches.
struct EpochTotals {
    loss: SetLoss,
    correct: usize,
    labelled: bool,
}

/// The generator stream of the held-out probe batches (independent of shuffling and init).
const HOLDOUT_STREAM: u64 = 0x401d;

/// Runs the experiment of `config` into `run_dir`. A signal (`stop`) ends it after the current
/// step. An existing run in `run_dir` is refused unless `overwrite`; another process's run always
/// is. Everything is checked (config, data, model size) before the run directory is touched, and
/// an error after that is recorded in `status` as `failed: ...` where it can still be written.
pub fn train(
    config: &Config,
    run_dir: &Path,
    overwrite: bool,
    stop: &AtomicBool,
) -> Result<RunStatus> {
    let interactive = std::io::stderr().is_terminal();
    rundir::precheck(run_dir, overwrite)?;
    let compute = backend::compute(config.run.backend, config.run.precision)?;
    let epochs = config.training.epochs;
    let batch_size = config.data.batch_size;
    if epochs == 0 {
        return Err(ConfigError::key("training.epochs", "must be at least 1").into());
    }
    if batch_size == 0 {
        return Err(ConfigError::key("data.batch_size", "must be at least 1").into());
    }
    if config.data.eval_batch_size == 0 {
        return Err(ConfigError::key("data.eval_batch_size", "must be at least 1").into());
    }
    let optimizer = config
        .optimizer
        .build()
        .map_err(|e| ConfigError(e.to_string()))?;
    if let Some(schedule) = &config.schedule {
        schedule
            .validate(epochs, config.optimizer.lr())
            .map_err(|e| ConfigError(e.to_string()))?;
        if optimizer.base_lr().is_none() {
            return Err(ConfigError::key(
                "schedule",
                format!(
                    "optimizer `{}` sets its own step size; only methods with a base learning \
                     rate (sgd, adam, ...) can be scheduled",
                    optimizer.kind()
                ),
            )
            .into());
        }
    }
    if matches!(
        config.data.dataset,
        DatasetKind::Mnist
            | DatasetKind::FashionMnist
            | DatasetKind::Cifar10
            | DatasetKind::Cifar100
            | DatasetKind::Imdb
    ) {
        eprintln!("loading {} ...", data::dataset_name(config.data.dataset));
    }
    let prepared = data::prepare(config, interactive, stop)?;
    if optimizer.needs_holdout() && prepared.validation.is_none() {
        return Err(ConfigError::key(
            "data.validation_fraction",
            format!(
                "optimizer `{}` as configured probes held-out batches: hold out a validation \
                 split (the paper: 0.2)",
                optimizer.kind()
            ),
        )
        .into());
    }
    if let Some(warning) = optimizer.precision_warning(compute.dtype) {
        eprintln!("warning: {warning}");
    }
    let model = config
        .model
        .build_with(prepared.input, prepared.task, prepared.embedding.as_ref())
        .map_err(|e| ConfigError(e.to_string()))?;
    let model = model.as_ref();
    let num_params = check_model_size(model, &prepared, compute.dtype)?;
    if stop.load(Ordering::SeqCst) {
        anyhow::bail!("interrupted before training started");
    }

    let held = RunDir::acquire(run_dir, overwrite)?;
    let result = run(
        config,
        &compute,
        &prepared,
        model,
        num_params,
        optimizer,
        held.path(),
        stop,
        interactive,
    );
    result.inspect_err(|error| {
        let status = RunStatus::Failed {
            error: error_chain(error),
        };
        let _ = write_status(held.path(), &status);
    })
}

/// The run itself, once everything is checked and the run directory is held.
#[allow(clippy::too_many_arguments)] // one call site; the checkpoint issue makes this a state
fn run(
    config: &Config,
    compute: &Compute,
    prepared: &data::Prepared,
    model: &dyn Model,
    num_params: usize,
    mut optimizer: Box<dyn StepSizeOptimizer>,
    run_dir: &Path,
    stop: &AtomicBool,
    interactive: bool,
) -> Result<RunStatus> {
    let epochs = config.training.epochs;
    let batch_size = config.data.batch_size;
    let config_path = run_dir.join("config.toml");
    std::fs::write(&config_path, config::to_toml(config))
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let diagnostics = optimizer.diagnostic_names();
    let mut header = vec!["step", "epoch", "loss", "lr"];
    header.extend_from_slice(diagnostics);
    let mut steps_csv = CsvLog::create(&run_dir.join("steps.csv"), &header)?;
    let mut epochs_csv = CsvLog::create(
        &run_dir.join("epochs.csv"),
        &[
            "epoch",
            "train_loss",
            "train_accuracy",
            "validation_loss",
            "validation_accuracy",
            "test_loss",
            "test_accuracy",
            "lr",
            "seconds",
        ],
    )?;
    let mut layers_csv = match optimizer.per_tensor_name() {
        Some(_) => {
            let mut header = vec!["step", "epoch"];
            header.extend(model.param_specs().iter().map(|s| s.name.as_str()));
            Some(CsvLog::create(&run_dir.join("layers.csv"), &header)?)
        }
        None => None,
    };

    let n = prepared.train.len();
    let batches_per_epoch = n.div_ceil(batch_size);
    eprintln!(
        "{}: {} on {} samples ({} batches/epoch), {} parameters, {} with {} on {} ({:?})",
        config.run.name.as_deref().unwrap_or("run"),
        config.model.kind(),
        n,
        batches_per_epoch,
        num_params,
        config.optimizer.kind(),
        format_args!("lr {}", config.optimizer.lr()),
        backend::name(config.run.backend),
        config.run.precision,
    );

    let mut params = init_params(
        model.param_specs(),
        config.run.seed,
        &compute.device,
        compute.dtype,
    );
    let mut state = init_state(
        model.state_specs(),
        config.run.seed,
        &compute.device,
        compute.dtype,
    );
    let l2 = config.training.l2;
    let mut step: u64 = 0;
    let mut holdout_rng = ChaCha8Rng::seed_from_u64(config.run.seed);
    holdout_rng.set_stream(HOLDOUT_STREAM);
    let mut last_lr = optimizer.current_lr();
    for epoch in 1..=epochs {
        let started = Instant::now();
        optimizer.begin_epoch(epoch, batches_per_epoch);
        if let Some(schedule) = &config.schedule {
            // Stepped at the start of the epoch (see steplab_optim::schedule).
            optimizer.set_base_lr(schedule.lr_at(config.optimizer.lr(), epoch, epochs, step));
        }
        let order =
            steplab_data::epoch_order(n, config.data.shuffle, config.run.seed, epoch as u64);
        let bar = interactive.then(|| epoch_bar(epoch, epochs, batches_per_epoch));
        let mut totals = EpochTotals {
            loss: SetLoss::new(model),
            correct: 0,
            labelled: false,
        };
        let loader = data::prefetch(
            prepared.train.clone(),
            order,
            batch_size,
            prepared.pipeline.clone(),
            compute.dtype,
            epoch as u64,
        )?;
        for host in loader {
            if let Some(schedule) = config.schedule.as_ref().filter(|s| s.is_per_step()) {
                optimizer.set_base_lr(schedule.lr_at(config.optimizer.lr(), epoch, epochs, step));
            }
            let batch = host.into_batch(compute);
            // The step's random draws (dropout masks), keyed by (seed, step, site).
            let noise = StepNoise::new(config.run.seed, step + 1, &compute.device, compute.dtype);
            let pass = Pass {
                model,
                state: &state,
                noise: &noise,
                l2,
            };
            // Forward + backward (the loss read-back is a sync point).
            let Graded {
                loss,
                grads,
                outputs,
                new_state,
            } = loss_and_grad(&pass, &params, &batch, Mode::Train);
            if !loss.is_finite() {
                let status = RunStatus::Diverged {
                    step: step + 1,
                    cause: Divergence::NonFiniteLoss,
                };
                finish(run_dir, &status, bar)?;
                return Ok(status);
            }
            totals.loss.add(loss, batch.len);
            if let Some(labels) = &batch.labels {
                totals.labelled = true;
                totals.correct += data::count_correct(outputs, labels);
            }
            let mut probe = BatchProbe {
                pass,
                batch: &batch,
            };
            let mut holdout = match &prepared.validation {
                Some(set) if optimizer.needs_holdout() => Some(HoldoutProbe {
                    pass,
                    set,
                    pipeline: &prepared.pipeline,
                    compute,
                    batch_size,
                    rng: &mut holdout_rng,
                    batch: None,
                }),
                _ => None,
            };
            let StepOutput {
                params: updated,
                lr,
                diagnostics,
                per_tensor,
                warning,
            } = optimizer.step(StepInput {
                params,
                loss,
                grads,
                probe: &mut probe,
                holdout: holdout.as_mut().map(|h| h as &mut dyn LossProbe),
            });
            params = updated;
            step += 1;
            // The running statistics of this step's training pass (probes left them alone).
            if let Some(new_state) = new_state {
                state = new_state;
            }
            if let Some(warning) = warning {
                match &bar {
                    Some(bar) => bar.suspend(|| eprintln!("warning: {warning}")),
                    None => eprintln!("warning: {warning}"),
                }
            }
            last_lr = lr;
            let mut cells = vec![
                Cell::Int(step),
                Cell::Int(epoch as u64),
                Cell::Num(loss),
                Cell::Num(lr),
            ];
            cells.extend(diagnostics.into_iter().map(Cell::Num));
            steps_csv.row(&cells)?;
            if let Some(layers) = &mut layers_csv {
                let mut cells = vec![Cell::Int(step), Cell::Int(epoch as u64)];
                cells.extend(per_tensor.into_iter().map(Cell::Num));
                layers.row(&cells)?;
            }
            if !lr.is_finite() {
                let status = RunStatus::Diverged {
                    step,
                    cause: Divergence::NonFiniteStepSize,
                };
                finish(run_dir, &status, bar)?;
                return Ok(status);
            }
            if let Some(bar) = &bar {
                bar.inc(1);
                bar.set_message(format!("loss {loss:.4} lr {lr:.3e}"));
            }
            if stop.load(Ordering::SeqCst) {
                let status = RunStatus::Interrupted { step };
                finish(run_dir, &status, bar)?;
                return Ok(status);
            }
            if config.training.max_steps.is_some_and(|max| step >= max) {
                break;
            }
        }
        let train_loss = totals.loss.value();
        let samples = totals.loss.samples.max(1) as f64;
        let train_acc = totals.labelled.then(|| totals.correct as f64 / samples);
        let noise = StepNoise::new(config.run.seed, step, &compute.device, compute.dtype);
        let pass = Pass {
            model,
            state: &state,
            noise: &noise,
            l2,
        };
        let eval = |set: &Option<Dataset>| match set {
            Some(set) if config.training.evaluate => {
                let (l, a) = evaluate(
                    &pass,
                    &params,
                    set,
                    &prepared.pipeline,
                    compute,
                    config.data.eval_batch_size,
                );
                (Some(l), a)
            }
            _ => (None, None),
        };
        let (valid_loss, valid_acc) = eval(&prepared.validation);
        let (test_loss, test_acc) = eval(&prepared.test);
        let seconds = started.elapsed().as_secs_f64();
        let opt = |v: Option<f64>| v.map(Cell::Num).unwrap_or(Cell::Empty);
        epochs_csv.row(&[
            Cell::Int(epoch as u64),
            Cell::Num(train_loss),
            opt(train_acc),
            opt(valid_loss),
            opt(valid_acc),
            opt(test_loss),
            opt(test_acc),
            Cell::Num(last_lr),
            Cell::Num(seconds),
        ])?;
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        let mut line = format!("epoch {epoch}/{epochs}: train loss {train_loss:.5}");
        if let Some(a) = train_acc {
            line += &format!(" acc {a:.4}");
        }
        if let Some(l) = valid_loss {
            line += &format!(", validation loss {l:.5}");
        }
        if let Some(l) = test_loss {
            line += &format!(", test loss {l:.5}");
        }
        if let Some(a) = test_acc {
            line += &format!(" acc {a:.4}");
        }
        eprintln!("{line}, lr {last_lr:.4e} ({seconds:.1} s)");
        if config.training.max_steps.is_some_and(|max| step >= max) {
            break;
        }
    }
    let status = RunStatus::Completed;
    finish(run_dir, &status, None)?;
    Ok(status)
}

/// The model's parameter count, computed without overflow, after checking that a lower bound of
/// what training it takes fits in this machine's memory; the error names the count and its size.
fn check_model_size(model: &dyn Model, prepared: &data::Prepared, dtype: DType) -> Result<usize> {
    let count = model.checked_num_params();
    let outputs = match prepared.task {
        Task::Classification { classes } => format!(" (the data has {classes} classes)"),
        Task::Regression { outputs } => format!(" (the data has {outputs} targets)"),
        Task::Reconstruction => String::new(),
    };
    let inputs = prepared.train.features.cols();
    let Some(count) = count else {
        return Err(ConfigError::key(
            "model",
            format!(
                "the model has more than 2^64 parameters for {inputs} inputs{outputs}: check \
                 the layer sizes"
            ),
        )
        .into());
    };
    // Weights, gradient and one optimizer buffer in the run's precision, and the f64 host copy
    // the initialisation builds: a lower bound of what training needs.
    let bytes = (count as u128) * (3 * dtype.size() as u128 + 8);
    if let Some(memory) = memory_bytes()
        && bytes > memory as u128
    {
        return Err(ConfigError::key(
            "model",
            format!(
                "the model has {count} parameters for {inputs} inputs{outputs}: its weights, \
                 gradient, one optimizer buffer and the host copy made at initialisation take \
                 {:.1} GiB, more than this machine's {:.1} GiB of memory; check the layer sizes",
                bytes as f64 / GIB,
                memory as f64 / GIB
            ),
        )
        .into());
    }
    Ok(count)
}

const GIB: f64 = (1u64 << 30) as f64;

/// Physical memory (`MemTotal` of /proc/meminfo), where the system says.
fn memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

fn epoch_bar(epoch: usize, epochs: usize, len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    bar
}

fn finish(run_dir: &Path, status: &RunStatus, bar: Option<ProgressBar>) -> Result<()> {
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    write_status(run_dir, status)?;
    eprintln!("{}", status.describe());
    Ok(())
}
