//! The step interface every optimizer of this crate implements.

use std::collections::BTreeMap;

use burn::tensor::{DType, Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::OptimError;
use crate::vector::ParamList;

/// Re-evaluates the loss of the *current batch* at other weights, for the step being taken.
///
/// The trainer implements it: a forward pass only (no autodiff graph), batch normalisation on
/// batch statistics with its running statistics left untouched, and the same dropout mask as the
/// step's own forward pass. Each call is a sync point (the loss is read back to the host).
pub trait LossProbe {
    /// Loss of the current batch at `params` (forward only). May be non-finite.
    fn loss_at(&mut self, params: &[Tensor<1>]) -> f64;

    /// Loss and gradient of the current batch at `params` (one forward and one backward pass).
    fn loss_and_grad_at(&mut self, params: &[Tensor<1>]) -> (f64, ParamList);
}

/// Everything one update sees: the weights, the batch loss at them, and its whole gradient.
pub struct StepInput<'a> {
    /// Current weights θ, one flattened tensor per parameter.
    pub params: ParamList,
    /// Training loss of the batch at `params` (f64; finite: the trainer stops on a non-finite loss).
    pub loss: f64,
    /// Gradient of `loss` with respect to `params`, same layout.
    pub grads: ParamList,
    /// Re-evaluates the loss on the same batch at shifted weights.
    pub probe: &'a mut dyn LossProbe,
    /// Evaluates the loss on a held-out batch (one random batch of the validation split, drawn
    /// for this step; every call within the step sees the same batch). `Some` exactly when the
    /// optimizer asked for it with [`StepSizeOptimizer::needs_holdout`] and a validation split
    /// exists; the trainer rejects the config otherwise.
    pub holdout: Option<&'a mut dyn LossProbe>,
}

/// What one update did.
pub struct StepOutput {
    /// The new weights.
    pub params: ParamList,
    /// The step size this update used (the `lr` column of `steps.csv`).
    pub lr: f64,
    /// The method's own diagnostics, in the order of [`StepSizeOptimizer::diagnostic_names`].
    pub diagnostics: Vec<f64>,
    /// One value per parameter tensor (e.g. per-layer step sizes), written to `layers.csv` when
    /// [`StepSizeOptimizer::per_tensor_name`] is `Some`; empty otherwise.
    pub per_tensor: Vec<f64>,
    /// A warning for the user (the trainer prints it), e.g. the first time a step's change of
    /// the loss could not be measured at the run's precision. A method reports each kind of
    /// warning once per run, not every step.
    pub warning: Option<String>,
}

impl StepOutput {
    /// An update with no per-tensor values.
    pub fn new(params: ParamList, lr: f64, diagnostics: Vec<f64>) -> Self {
        Self {
            params,
            lr,
            diagnostics,
            per_tensor: Vec::new(),
            warning: None,
        }
    }

    /// A skipped update: the weights unchanged, every diagnostic NaN (for a non-finite loss or
    /// gradient, so that NaN never reaches the weights).
    pub fn skipped(params: ParamList, lr: f64, diagnostics: usize) -> Self {
        Self::new(params, lr, vec![f64::NAN; diagnostics])
    }

    /// Adds a warning for the user (see [`StepOutput::warning`]).
    pub fn with_warning(mut self, warning: Option<String>) -> Self {
        self.warning = warning;
        self
    }

    /// Adds one value per parameter tensor.
    pub fn with_per_tensor(mut self, values: Vec<f64>) -> Self {
        self.per_tensor = values;
        self
    }
}

/// A step-size method: one update per batch, with the loss, the whole gradient and a loss probe.
///
/// Unlike Burn's per-tensor `Optimizer`, a step here sees the whole model at once, so methods can
/// take inner products across all parameters, keep the previous gradient, and evaluate the loss
/// at shifted weights on the same batch.
pub trait StepSizeOptimizer: Send {
    /// The name used as `optimizer.kind` in configs.
    fn kind(&self) -> &'static str;

    /// Names of the diagnostic columns this method reports after `step,epoch,loss,lr`.
    fn diagnostic_names(&self) -> &'static [&'static str];

    /// Takes one update.
    fn step(&mut self, input: StepInput<'_>) -> StepOutput;

    /// The step size the next update would use, for logging before any step.
    fn current_lr(&self) -> f64;

    /// Called at the start of every epoch (from 1), with the number of batches an epoch has.
    fn begin_epoch(&mut self, _epoch: usize, _batches_per_epoch: usize) {}

    /// The base learning rate a `[schedule]` scales, for methods that have one (SGD, Adam, ...);
    /// `None` for methods that set their own step size (LossGrad, L4, ...), which the trainer
    /// then refuses to schedule.
    fn base_lr(&self) -> Option<f64> {
        None
    }

    /// Sets the base learning rate (the trainer calls it at the start of each epoch with the
    /// schedule's value). Only called when [`base_lr`](Self::base_lr) is `Some`.
    fn set_base_lr(&mut self, _lr: f64) {}

    /// Whether the method probes a held-out batch ([`StepInput::holdout`]).
    fn needs_holdout(&self) -> bool {
        false
    }

    /// The name of the per-tensor values of [`StepOutput::per_tensor`] (e.g. `alpha`), when the
    /// method reports them; the trainer writes them to `layers.csv`, one column per tensor.
    fn per_tensor_name(&self) -> Option<&'static str> {
        None
    }

    /// A warning to show before training when the method is unreliable at `dtype` (e.g. finite
    /// differences below float32 resolution).
    fn precision_warning(&self, _dtype: DType) -> Option<String> {
        None
    }

    /// Everything the method carries across steps, for checkpoints.
    fn state(&self) -> OptimizerState;

    /// Restores what [`state`](Self::state) saved; tensors are created on `device` as `dtype`.
    fn load_state(
        &mut self,
        state: &OptimizerState,
        device: &Device,
        dtype: DType,
    ) -> Result<(), OptimError>;
}

/// Serializable optimizer state: named scalars and named parameter-shaped buffers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct OptimizerState {
    /// The optimizer's `kind`, checked on load.
    pub kind: String,
    /// Scalar state (step size, step counter, ...).
    pub scalars: BTreeMap<String, f64>,
    /// Parameter-shaped state (momentum buffer, previous gradient, ...), one `Vec` per tensor.
    pub buffers: BTreeMap<String, Vec<Vec<f64>>>,
}

impl OptimizerState {
    /// An empty state for `kind`.
    pub fn new(kind: &str) -> Self {
        Self {
            kind: kind.to_string(),
            ..Self::default()
        }
    }

    /// Adds a scalar.
    pub fn with_scalar(mut self, name: &str, value: f64) -> Self {
        self.scalars.insert(name.to_string(), value);
        self
    }

    /// Adds a parameter-shaped buffer (reads it back from the device: a sync point).
    pub fn with_buffer(mut self, name: &str, tensors: &[Tensor<1>]) -> Self {
        let host = tensors
            .iter()
            .map(|t| {
                t.to_data()
                    .try_into_vec_as::<f64>()
                    .expect("a float tensor always converts to f64")
            })
            .collect();
        self.buffers.insert(name.to_string(), host);
        self
    }

    /// Checks that this state belongs to `kind`.
    pub fn expect_kind(&self, kind: &str) -> Result<(), OptimError> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(OptimError::StateMismatch(format!(
                "state is for `{}`, optimizer is `{kind}`",
                self.kind
            )))
        }
    }

    /// Reads a scalar.
    pub fn scalar(&self, name: &str) -> Result<f64, OptimError> {
        self.scalars
            .get(name)
            .copied()
            .ok_or_else(|| OptimError::StateMismatch(format!("missing scalar `{name}`")))
    }

    /// Reads a scalar that must be a finite positive number (a step size, a normaliser).
    pub fn positive_scalar(&self, name: &str) -> Result<f64, OptimError> {
        let value = self.scalar(name)?;
        if value.is_finite() && value > 0.0 {
            Ok(value)
        } else {
            Err(OptimError::StateMismatch(format!(
                "`{name}` must be a positive number, got {value}"
            )))
        }
    }

    /// Reads a step counter: a whole number ≥ 0.
    pub fn step_counter(&self, name: &str) -> Result<u64, OptimError> {
        let value = self.scalar(name)?;
        if value.is_finite() && value >= 0.0 && value.fract() == 0.0 {
            Ok(value as u64)
        } else {
            Err(OptimError::StateMismatch(format!(
                "step counter `{name}` must be a whole number ≥ 0, got {value}"
            )))
        }
    }

    /// Rebuilds a buffer on `device` as `dtype`.
    pub fn buffer(
        &self,
        name: &str,
        device: &Device,
        dtype: DType,
    ) -> Result<ParamList, OptimError> {
        let host = self
            .buffers
            .get(name)
            .ok_or_else(|| OptimError::StateMismatch(format!("missing buffer `{name}`")))?;
        Ok(host
            .iter()
            .map(|v| {
                let n = v.len();
                Tensor::from_data(TensorData::new(v.clone(), [n]), (device, dtype))
            })
            .collect())
    }
}
