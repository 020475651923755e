//! An experiment resolved and checked before anything is trained: the config, the device, the
//! data (loaded, split), the model (built, its size checked against the machine's memory) and
//! the optimizer (built, accepting the model, the data and the schedule).

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use burn::tensor::DType;
use steplab_models::{Model, Task};
use steplab_optim::StepSizeOptimizer;

use crate::backend::{self, Compute};
use crate::config::{Config, ConfigError, DatasetKind};
use crate::data::{self, Prepared};
use crate::state::{Holdout, Stepper, TrainState};

/// A checked experiment, ready to train.
pub struct Experiment {
    /// The resolved config.
    pub config: Config,
    /// The device and precision.
    pub compute: Compute,
    /// The datasets.
    pub prepared: Prepared,
    /// The model.
    pub model: Box<dyn Model>,
    /// Trained parameters.
    pub trained_params: usize,
    /// Values of the model's non-trained state (running statistics, a frozen embedding).
    pub state_values: usize,
    /// Batches per epoch.
    pub batches_per_epoch: usize,
}

impl Experiment {
    /// Checks `config` and loads what it names: the epochs, batch sizes, optimizer and schedule
    /// are validated, the data loaded (`interactive` shows progress; `stop` cancels a download),
    /// the model built and its size checked. Prints warnings (a method unreliable at the run's
    /// precision) on stderr.
    pub fn resolve(config: &Config, interactive: bool, stop: &AtomicBool) -> Result<Self> {
        let compute = backend::compute(config.run.backend, config.run.precision)?;
        let epochs = config.training.epochs;
        if epochs == 0 {
            return Err(ConfigError::key("training.epochs", "must be at least 1").into());
        }
        if config.data.batch_size == 0 {
            return Err(ConfigError::key("data.batch_size", "must be at least 1").into());
        }
        if config.data.eval_batch_size == 0 {
            return Err(ConfigError::key("data.eval_batch_size", "must be at least 1").into());
        }
        let optimizer = build_optimizer(config)?;
        if let Some(schedule) = &config.schedule {
            schedule
                .validate(epochs, config.optimizer.lr())
                .map_err(|e| ConfigError(e.to_string()))?;
            if optimizer.base_lr().is_none() {
                return Err(ConfigError::key(
                    "schedule",
                    format!(
                        "optimizer `{}` sets its own step size; only methods with a base \
                         learning rate (sgd, adam, ...) can be scheduled",
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
                    "optimizer `{}` as configured probes held-out batches: hold out a \
                     validation split (the paper: 0.2)",
                    optimizer.kind()
                ),
            )
            .into());
        }
        check_stopping_metrics(config, &prepared)?;
        if let Some(warning) = optimizer.precision_warning(compute.dtype) {
            eprintln!("warning: {warning}");
        }
        let model = config
            .model
            .build_with(prepared.input, prepared.task, prepared.embedding.as_ref())
            .map_err(|e| ConfigError(e.to_string()))?;
        let trained_params = check_model_size(model.as_ref(), &prepared, compute.dtype)?;
        let state_values = model
            .state_specs()
            .iter()
            .map(|s| s.shape.iter().product::<usize>())
            .sum();
        if stop.load(Ordering::SeqCst) {
            anyhow::bail!("interrupted before training started");
        }
        let batches_per_epoch = prepared.train.len().div_ceil(config.data.batch_size);
        Ok(Self {
            config: config.clone(),
            compute,
            prepared,
            model,
            trained_params,
            state_values,
            batches_per_epoch,
        })
    }

    /// A fresh optimizer of the config (checked by [`resolve`](Self::resolve)).
    pub fn optimizer(&self) -> Result<Box<dyn StepSizeOptimizer>> {
        build_optimizer(&self.config)
    }

    /// The state before the first update: weights and model state initialised from `run.seed`.
    pub fn initial_state(&self) -> Result<TrainState> {
        Ok(TrainState::initial(
            self.model.as_ref(),
            self.optimizer()?,
            self.config.run.seed,
            &self.compute,
        ))
    }

    /// What each update of this experiment needs besides its state.
    pub fn stepper(&self) -> Stepper<'_> {
        let config = &self.config;
        Stepper {
            model: self.model.as_ref(),
            compute: &self.compute,
            seed: config.run.seed,
            l2: config.training.l2,
            schedule: config
                .schedule
                .as_ref()
                .map(|s| (s, config.optimizer.lr(), config.training.epochs)),
            batches_per_epoch: self.batches_per_epoch,
            holdout: self.prepared.validation.as_ref().map(|set| Holdout {
                set,
                pipeline: &self.prepared.pipeline,
                batch_size: config.data.batch_size,
            }),
        }
    }
}

/// Checks that the metrics the stopping rules watch exist for this run's data.
fn check_stopping_metrics(config: &Config, prepared: &Prepared) -> Result<(), ConfigError> {
    let training = &config.training;
    let watched = [
        (
            "training.early_stopping.metric",
            training.early_stopping.as_ref().map(|e| e.metric),
        ),
        (
            "training.target.metric",
            training.target.as_ref().map(|t| t.metric),
        ),
    ];
    for (key, metric) in watched {
        let Some(metric) = metric else { continue };
        let name = metric.name();
        let problem = if metric.needs_evaluation() && !training.evaluate {
            Some(format!("{name} needs training.evaluate = true"))
        } else if name.starts_with("validation") && prepared.validation.is_none() {
            Some(format!(
                "{name} needs a validation split: set data.validation_fraction"
            ))
        } else if name.starts_with("test") && prepared.test.is_none() {
            Some(format!("{name}: the dataset has no test set"))
        } else if metric.is_accuracy() && !matches!(prepared.task, Task::Classification { .. }) {
            Some(format!("{name} applies to classification only"))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(ConfigError::key(key, problem));
        }
    }
    Ok(())
}

fn build_optimizer(config: &Config) -> Result<Box<dyn StepSizeOptimizer>> {
    Ok(config
        .optimizer
        .build()
        .map_err(|e| ConfigError(e.to_string()))?)
}

/// The model's parameter count, computed without overflow, after checking that a lower bound of
/// what training it takes fits in this machine's memory; the error names the count and its size.
fn check_model_size(model: &dyn Model, prepared: &Prepared, dtype: DType) -> Result<usize> {
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
