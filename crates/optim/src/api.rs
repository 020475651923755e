//! The step interface every optimizer of this crate implements.

use std::collections::BTreeMap;

use std::fmt;

use burn::tensor::{DType, Device, Tensor};

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

    /// Everything the method carries across steps, for checkpoints: a resumed run that loads it
    /// into a fresh optimizer built from the same config (with the trainer's `begin_epoch` for
    /// the epoch it resumes in, before or after the load) continues bit for bit as the
    /// uninterrupted run would, one-time warnings included.
    ///
    /// No sync and no copy: the buffers are the optimizer's own device tensors (clones of
    /// refcounted handles, which later updates do not overwrite).
    fn state(&self) -> OptimizerState;

    /// Restores what [`state`](Self::state) saved; buffers are moved to `device` and cast to
    /// `dtype` where they differ. Fails with [`OptimError::StateMismatch`] on a state of another
    /// kind, a missing or out-of-range scalar, or a missing buffer.
    fn load_state(
        &mut self,
        state: &OptimizerState,
        device: &Device,
        dtype: DType,
    ) -> Result<(), OptimError>;
}

/// An optimizer's state for checkpoints: named scalars and named device tensors.
///
/// The trainer writes both into its checkpoint (the tensors in the dtype the optimizer keeps
/// them, without widening) and rebuilds the state from it on resume. Nothing here is read back
/// from the device: building a state costs no sync and no copy.
///
/// [`with_buffer`](Self::with_buffer) also records each buffer's tensor count as the scalar
/// `buffer.<name>`, so that a state whose tensors went missing on the way (a checkpoint that
/// lost a file) fails to load naming the buffer, instead of resuming with a fresh one.
#[derive(Clone, Default)]
pub struct OptimizerState {
    /// The optimizer's `kind`, checked on load.
    pub kind: String,
    /// Scalar state (step size, step counter, flags as 0/1, ...), and the `buffer.<name>`
    /// tensor counts of the buffers.
    pub scalars: BTreeMap<String, f64>,
    /// Parameter-shaped state (momentum buffer, previous gradient, ...), one device tensor per
    /// parameter tensor, in the dtype the optimizer keeps it (no read-back, no widening).
    pub buffers: BTreeMap<String, Vec<Tensor<1>>>,
}

/// The scalar that records how many tensors buffer `name` has.
fn buffer_key(name: &str) -> String {
    format!("buffer.{name}")
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

    /// Adds a flag, as the scalar 1 (true) or 0 (false); read it with [`flag`](Self::flag).
    pub fn with_flag(self, name: &str, value: bool) -> Self {
        self.with_scalar(name, if value { 1.0 } else { 0.0 })
    }

    /// Adds a parameter-shaped buffer: clones of the tensor handles (no sync, no copy), and
    /// its tensor count as the scalar `buffer.<name>`.
    pub fn with_buffer(mut self, name: &str, tensors: &[Tensor<1>]) -> Self {
        self.scalars.insert(buffer_key(name), tensors.len() as f64);
        self.buffers.insert(name.to_string(), tensors.to_vec());
        self
    }

    /// Checks that this state belongs to `kind`, and that it is whole: every buffer its
    /// `buffer.<name>` scalars record is present, with that many tensors.
    pub fn expect_kind(&self, kind: &str) -> Result<(), OptimError> {
        if self.kind != kind {
            return Err(OptimError::StateMismatch(format!(
                "state is for `{}`, optimizer is `{kind}`",
                self.kind
            )));
        }
        for (key, count) in &self.scalars {
            let Some(name) = key.strip_prefix("buffer.") else {
                continue;
            };
            match self.buffers.get(name) {
                None => {
                    return Err(OptimError::StateMismatch(format!(
                        "missing buffer `{name}`"
                    )));
                }
                Some(tensors) if tensors.len() as f64 != *count => {
                    return Err(OptimError::StateMismatch(format!(
                        "buffer `{name}` has {} tensors, the state records {count}",
                        tensors.len()
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(())
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

    /// Reads a flag written by [`with_flag`](Self::with_flag): exactly 0 or 1.
    pub fn flag(&self, name: &str) -> Result<bool, OptimError> {
        let value = self.scalar(name)?;
        if value == 0.0 || value == 1.0 {
            Ok(value == 1.0)
        } else {
            Err(OptimError::StateMismatch(format!(
                "flag `{name}` must be 0 or 1, got {value}"
            )))
        }
    }

    /// A buffer's tensors, moved to `device` and cast to `dtype` where they differ (no copy
    /// where they already match).
    pub fn buffer(
        &self,
        name: &str,
        device: &Device,
        dtype: DType,
    ) -> Result<ParamList, OptimError> {
        let tensors = self
            .buffers
            .get(name)
            .ok_or_else(|| OptimError::StateMismatch(format!("missing buffer `{name}`")))?;
        Ok(tensors
            .iter()
            .map(|t| {
                let t = if t.device() == *device {
                    t.clone()
                } else {
                    t.clone().to_device(device)
                };
                if t.dtype() == dtype { t } else { t.cast(dtype) }
            })
            .collect())
    }

    /// A buffer that exists only after the first update (or only in some configurations):
    /// `None` when the state has none, as [`buffer`](Self::buffer) otherwise.
    pub fn optional_buffer(
        &self,
        name: &str,
        device: &Device,
        dtype: DType,
    ) -> Result<Option<ParamList>, OptimError> {
        if self.buffers.contains_key(name) || self.scalars.contains_key(&buffer_key(name)) {
            self.buffer(name, device, dtype).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Kind, scalars, and for each buffer its tensor count, lengths and dtype: never the values
/// (that would read them back from the device).
impl fmt::Debug for OptimizerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// One buffer, described without its values.
        struct Summary<'a>(&'a [Tensor<1>]);

        impl fmt::Debug for Summary<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let lengths: Vec<usize> = self.0.iter().map(|t| t.dims()[0]).collect();
                let mut dtypes: Vec<DType> = Vec::new();
                for t in self.0 {
                    let dtype = t.dtype();
                    if !dtypes.contains(&dtype) {
                        dtypes.push(dtype);
                    }
                }
                write!(f, "{} tensors, lengths {lengths:?}, ", self.0.len())?;
                match dtypes.as_slice() {
                    [one] => write!(f, "{one:?}"),
                    many => write!(f, "dtypes {many:?}"),
                }
            }
        }

        let buffers: BTreeMap<&str, Summary<'_>> = self
            .buffers
            .iter()
            .map(|(name, tensors)| (name.as_str(), Summary(tensors)))
            .collect();
        f.debug_struct("OptimizerState")
            .field("kind", &self.kind)
            .field("scalars", &self.scalars)
            .field("buffers", &buffers)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{device, list, values};

    #[test]
    fn with_buffer_records_the_tensor_count_and_debug_shows_shapes_not_values() {
        let d = device();
        let m = list(&[&[1.25, -2.5], &[3.75]], &d);
        let state = OptimizerState::new("adam")
            .with_scalar("t", 2.0)
            .with_buffer("m", &m);
        assert_eq!(state.scalar("buffer.m").unwrap(), 2.0);
        assert_eq!(values(&state.buffers["m"]), values(&m));
        let debug = format!("{state:?}");
        for part in [
            "\"adam\"",
            "\"t\": 2.0",
            "\"m\": 2 tensors, lengths [2, 1], F64",
        ] {
            assert!(debug.contains(part), "{part:?} missing: {debug}");
        }
        for value in ["1.25", "2.5", "3.75"] {
            assert!(!debug.contains(value), "{value} printed: {debug}");
        }
        assert!(state.expect_kind("adam").is_ok());
        let err = state.expect_kind("sgd").unwrap_err();
        assert!(matches!(err, OptimError::StateMismatch(_)), "{err}");
    }

    #[test]
    fn buffer_casts_to_the_requested_dtype_and_names_a_missing_buffer() {
        let d = device();
        let state =
            OptimizerState::new("sgd").with_buffer("momentum", &list(&[&[0.1, 2.0], &[-3.0]], &d));
        let same = state.buffer("momentum", &d, DType::F64).unwrap();
        assert!(same.iter().all(|t| t.dtype() == DType::F64));
        assert_eq!(values(&same), vec![vec![0.1, 2.0], vec![-3.0]]);
        let narrow = state.buffer("momentum", &d, DType::F32).unwrap();
        assert!(narrow.iter().all(|t| t.dtype() == DType::F32));
        assert_eq!(
            values(&narrow),
            vec![vec![f64::from(0.1f32), 2.0], vec![-3.0]]
        );
        let err = state.buffer("m", &d, DType::F64).unwrap_err();
        assert!(err.to_string().contains("missing buffer `m`"), "{err}");
        assert!(
            state
                .optional_buffer("m", &d, DType::F64)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            state
                .optional_buffer("momentum", &d, DType::F64)
                .unwrap()
                .map(|b| b.len()),
            Some(2)
        );
        // The tensor count recorded with the buffer is checked on load.
        let mut lost = state.clone();
        lost.buffers.clear();
        let err = lost.expect_kind("sgd").unwrap_err();
        assert!(
            err.to_string().contains("missing buffer `momentum`"),
            "{err}"
        );
        assert!(lost.optional_buffer("momentum", &d, DType::F64).is_err());
        let mut short = state;
        short.buffers.get_mut("momentum").unwrap().pop();
        let err = short.expect_kind("sgd").unwrap_err();
        assert!(
            err.to_string().contains("`momentum` has 1 tensors"),
            "{err}"
        );
    }

    #[test]
    fn flags_are_zero_or_one() {
        let state = OptimizerState::new("sls")
            .with_flag("yes", true)
            .with_flag("no", false)
            .with_scalar("half", 0.5);
        assert!(state.flag("yes").unwrap());
        assert!(!state.flag("no").unwrap());
        for name in ["half", "absent"] {
            let err = state.flag(name).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
