//! The model zoo.
//!
//! A model here is a *function of its parameters*: it declares its parameter tensors
//! ([`ParamSpec`]: name, shape, initialisation) and computes `forward(params, input, mode)`.
//! The parameters themselves are a flat list of rank-1 tensors owned by the trainer and the
//! optimizer (see `steplab-optim`), so an optimizer can evaluate the loss at any shifted weights
//! on the same batch without copying a module, and without an autodiff graph when the tensors
//! are plain.
//!
//! The [`Mode`] is explicit rather than read from the device (Burn's batch norm and dropout pick
//! their behaviour from whether the input is on an autodiff device): `Train` uses batch
//! statistics and updates running statistics, `Probe` uses batch statistics and leaves running
//! statistics untouched (the optimizers' extra forward passes), `Eval` uses running statistics.
//! The models of this crate so far have neither batch norm nor dropout, so the mode only matters
//! to the ones that will.

mod init;
mod loss;
mod mlp;

pub use init::{Init, InitScheme, init_params};
pub use loss::{Loss, Reduction, Target};
pub use mlp::{
    Activation, AutoencoderConfig, BadRegressionConfig, LinearConfig, Mlp, MlpConfig, sigmoid,
};

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// How a forward pass treats normalisation statistics and dropout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The training forward pass of a step: batch statistics, running statistics updated.
    Train,
    /// An optimizer's extra forward pass: batch statistics, running statistics untouched, the
    /// step's own dropout mask.
    Probe,
    /// Evaluation: running statistics, no dropout.
    Eval,
}

/// One parameter tensor of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// Name, e.g. `layers.0.weight`.
    pub name: String,
    /// Logical shape (the tensor is stored flattened).
    pub shape: Vec<usize>,
    /// How it is initialised.
    pub init: Init,
}

impl ParamSpec {
    /// Number of scalars in the tensor.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A model of the zoo: parameter declarations and a forward pass over a flat parameter list.
pub trait Model: Send + Sync {
    /// The parameter tensors, in the order `forward` expects them.
    fn param_specs(&self) -> &[ParamSpec];

    /// Outputs for a batch `input` of shape `[batch, features]` at weights `params`.
    fn forward(&self, params: &[Tensor<1>], input: Tensor<2>, mode: Mode) -> Tensor<2>;

    /// The loss this model trains with, given what the dataset predicts.
    fn loss(&self) -> Loss;

    /// Total number of scalar parameters.
    fn num_params(&self) -> usize {
        self.param_specs().iter().map(ParamSpec::numel).sum()
    }
}

/// What the dataset asks the model to predict, which fixes the output width and the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// `classes` logits, softmax cross-entropy.
    Classification {
        /// Number of classes K.
        classes: usize,
    },
    /// `outputs` real values, squared error.
    Regression {
        /// Number of target values per sample.
        outputs: usize,
    },
    /// Reproduce the input (autoencoders), squared error.
    Reconstruction,
}

/// The `[model]` section of a config, one variant per `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelConfig {
    /// `kind = "mlp"`: a fully connected network.
    Mlp(MlpConfig),
    /// `kind = "autoencoder"`: a fully connected autoencoder with a sigmoid output.
    Autoencoder(AutoencoderConfig),
    /// `kind = "linear"`: one dense layer from inputs to outputs.
    Linear(LinearConfig),
    /// `kind = "bad_regression"`: Ŷ = W1·W2·X of the L4 paper (Sec. 3.1).
    BadRegression(BadRegressionConfig),
}

impl ModelConfig {
    /// The model's `kind` name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Mlp(_) => "mlp",
            Self::Autoencoder(_) => "autoencoder",
            Self::Linear(_) => "linear",
            Self::BadRegression(_) => "bad_regression",
        }
    }

    /// Whether the model reproduces its input (the dataset's labels are then ignored).
    pub fn is_autoencoder(&self) -> bool {
        matches!(self, Self::Autoencoder(_))
    }

    /// Builds the model for `inputs` features and the given task.
    pub fn build(&self, inputs: usize, task: Task) -> Result<Box<dyn Model>, ModelError> {
        if inputs == 0 {
            return Err(ModelError::Invalid(
                "the dataset has no input features".into(),
            ));
        }
        Ok(Box::new(match self {
            Self::Mlp(c) => c.build(inputs, task)?,
            Self::Autoencoder(c) => c.build(inputs, task)?,
            Self::Linear(c) => c.build(inputs, task)?,
            Self::BadRegression(c) => c.build(inputs, task)?,
        }))
    }
}

/// Errors building a model from its config.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A key has a value the model cannot use; the message names the key.
    #[error("{0}")]
    Invalid(String),
}

/// The device unit tests run on.
#[cfg(test)]
#[allow(deprecated)] // ndarray is deprecated upstream; this project keeps it working and tested.
pub(crate) fn test_device() -> burn::tensor::Device {
    burn::tensor::Device::ndarray()
}
