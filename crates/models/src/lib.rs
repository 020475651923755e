//! The model zoo.
//!
//! A model here is a *function of its parameters* (see [`Model`], the interface v2 of
//! `model.rs`): it declares its trainable tensors ([`ParamSpec`]: name, shape, initialisation,
//! stream) and its non-trained state ([`StateSpec`]), and computes the whole objective of a batch
//! at any weights, `forward(params, state, input, target, cx)`. The tensors themselves are flat
//! rank-1 lists owned by the trainer and the optimizer (see `steplab-optim`), so an optimizer can
//! evaluate the loss at any shifted weights on the same batch without copying a module, and
//! without an autodiff graph when the tensors are plain.
//!
//! The [`Mode`] is explicit rather than read from the device (Burn's batch norm and dropout pick
//! their behaviour from whether the input is on an autodiff device): `Train` uses batch
//! statistics and returns updated running statistics, `Probe` uses batch statistics and leaves
//! them untouched (the optimizers' extra forward passes) with the step's own random draws
//! ([`StepNoise`]), `Eval` uses running statistics and no dropout.
//!
//! The families: the fully connected models of `mlp.rs` (they flatten images); the image
//! classifiers (`lenet5`, `resnet` / `resnet20|32|56`, `cifar_convnet`, `resnet18`, `wrn`),
//! which need [`InputShape::Image`] and are composed from the typed layers of [`layers`]
//! (a builder registers tensors by name; each layer reshapes its flat tensors in the pass); the
//! text model `bilstm`; and the generative `wae_mmd`, whose objective adds an MMD penalty over
//! its latent codes and the step's prior draws to the reconstruction, reported term by term
//! ([`Forward::parts`]).

mod generative;
mod init;
pub mod layers;
mod loss;
mod mlp;
mod model;
mod noise;
mod text;
mod vision;

pub use generative::{DecoderOutput, IMQ_SCALES, WaeMmd, WaeMmdConfig, mmd_imq};
pub use init::{Init, InitScheme, PretrainedTable, init_params, init_state};
pub use loss::{Loss, Reduction, Target};
pub use mlp::{
    Activation, AutoencoderConfig, BadRegressionConfig, LinearConfig, Mlp, MlpConfig, sigmoid,
};
pub use model::{
    Cx, Forward, Input, InputShape, Mode, Model, ParamSpec, Prediction, StateSpec, name_stream,
};
pub use noise::StepNoise;
pub use text::{Bilstm, BilstmConfig, EmbeddingSource};
pub use vision::{
    CifarConvnet, CifarConvnetConfig, CifarResnet, Lenet5, Lenet5Config, Resnet18, Resnet18Config,
    ResnetConfig, ResnetPresetConfig, WideResnet, WrnConfig,
};

use serde::{Deserialize, Serialize};

impl From<usize> for InputShape {
    /// A row of that many features.
    fn from(features: usize) -> Self {
        Self::Features(features)
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
    /// `kind = "lenet5"`: Gorti & Ravaut's LeNet-5 (62,006 parameters on CIFAR-10).
    #[serde(rename = "lenet5")]
    Lenet5(Lenet5Config),
    /// `kind = "resnet"`: He et al.'s CIFAR ResNet of depth 6n + 2, option-A shortcuts.
    #[serde(rename = "resnet")]
    Resnet(ResnetConfig),
    /// `kind = "resnet20"`: `resnet` with depth 20 (269,722 parameters on CIFAR-10).
    #[serde(rename = "resnet20")]
    Resnet20(ResnetPresetConfig),
    /// `kind = "resnet32"`: `resnet` with depth 32 (464,154 parameters on CIFAR-10).
    #[serde(rename = "resnet32")]
    Resnet32(ResnetPresetConfig),
    /// `kind = "resnet56"`: `resnet` with depth 56 (853,018 parameters on CIFAR-10).
    #[serde(rename = "resnet56")]
    Resnet56(ResnetPresetConfig),
    /// `kind = "cifar_convnet"`: LossGrad's CIFAR-10 convnet, Table 7 (189,230 parameters).
    #[serde(rename = "cifar_convnet")]
    CifarConvnet(CifarConvnetConfig),
    /// `kind = "resnet18"`: the standard CIFAR ResNet-18 (11,173,962 parameters on CIFAR-10).
    #[serde(rename = "resnet18")]
    Resnet18(Resnet18Config),
    /// `kind = "wrn"`: Zagoruyko & Komodakis's pre-activation wide ResNet (WRN-16-4 by default).
    #[serde(rename = "wrn")]
    Wrn(WrnConfig),
    /// `kind = "bilstm"`: LossGrad's IMDb BiLSTM over a GloVe embedding (733,697 trained
    /// parameters besides the embedding).
    Bilstm(BilstmConfig),
    /// `kind = "wae_mmd"`: the Wasserstein autoencoder with an MMD penalty of LossGrad Table 6
    /// (39,742,531 parameters on 3×64×64 CelebA).
    WaeMmd(WaeMmdConfig),
}

impl ModelConfig {
    /// The model's `kind` name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Mlp(_) => "mlp",
            Self::Autoencoder(_) => "autoencoder",
            Self::Linear(_) => "linear",
            Self::BadRegression(_) => "bad_regression",
            Self::Lenet5(_) => "lenet5",
            Self::Resnet(_) => "resnet",
            Self::Resnet20(_) => "resnet20",
            Self::Resnet32(_) => "resnet32",
            Self::Resnet56(_) => "resnet56",
            Self::CifarConvnet(_) => "cifar_convnet",
            Self::Resnet18(_) => "resnet18",
            Self::Wrn(_) => "wrn",
            Self::Bilstm(_) => "bilstm",
            Self::WaeMmd(_) => "wae_mmd",
        }
    }

    /// The GloVe width this model's embedding starts from, if it starts from GloVe (the
    /// trainer then loads the vectors of the dataset's vocabulary for [`Self::build_with`]).
    pub fn glove_dim(&self) -> Option<usize> {
        match self {
            Self::Bilstm(c) if c.embedding == EmbeddingSource::Glove => Some(c.embedding_dim),
            _ => None,
        }
    }

    /// Whether the model reproduces its input (the dataset's labels are then ignored).
    pub fn is_autoencoder(&self) -> bool {
        matches!(self, Self::Autoencoder(_) | Self::WaeMmd(_))
    }

    /// The range the data's values must be in for the model's outputs to reach them (a
    /// decoder's last activation), if the model fixes one.
    pub fn output_range(&self) -> Option<(f64, f64)> {
        match self {
            Self::WaeMmd(c) => Some(c.output.range()),
            _ => None,
        }
    }

    /// Builds the model for samples of shape `input` (a feature count converts) and the task.
    /// Image models need [`InputShape::Image`]; the fully connected ones flatten images; only
    /// `bilstm` reads [`InputShape::Tokens`].
    pub fn build(
        &self,
        input: impl Into<InputShape>,
        task: Task,
    ) -> Result<Box<dyn Model>, ModelError> {
        self.build_with(input, task, None)
    }

    /// [`Self::build`] with the starting rows of an embedding (GloVe vectors of the dataset's
    /// vocabulary, for a model whose [`Self::glove_dim`] is set).
    pub fn build_with(
        &self,
        input: impl Into<InputShape>,
        task: Task,
        pretrained: Option<&PretrainedTable>,
    ) -> Result<Box<dyn Model>, ModelError> {
        let shape = input.into();
        if let Self::Bilstm(c) = self {
            return Ok(Box::new(c.build(shape, task, pretrained)?));
        }
        if matches!(shape, InputShape::Tokens { .. }) {
            return Err(ModelError::Invalid(format!(
                "model.kind: {} cannot read token sequences; the text model is kind = \"bilstm\"",
                self.kind()
            )));
        }
        let inputs = shape.numel();
        if inputs == 0 {
            return Err(ModelError::Invalid(
                "the dataset has no input features".into(),
            ));
        }
        Ok(match self {
            Self::Mlp(c) => Box::new(c.build(inputs, task)?),
            Self::Autoencoder(c) => Box::new(c.build(inputs, task)?),
            Self::Linear(c) => Box::new(c.build(inputs, task)?),
            Self::BadRegression(c) => Box::new(c.build(inputs, task)?),
            Self::Lenet5(c) => Box::new(c.build(shape, task)?),
            Self::Resnet(c) => Box::new(c.build(self.kind(), shape, task)?),
            Self::Resnet20(_) => {
                Box::new(ResnetConfig { depth: 20 }.build(self.kind(), shape, task)?)
            }
            Self::Resnet32(_) => {
                Box::new(ResnetConfig { depth: 32 }.build(self.kind(), shape, task)?)
            }
            Self::Resnet56(_) => {
                Box::new(ResnetConfig { depth: 56 }.build(self.kind(), shape, task)?)
            }
            Self::CifarConvnet(c) => Box::new(c.build(shape, task)?),
            Self::Resnet18(c) => Box::new(c.build(shape, task)?),
            Self::Wrn(c) => Box::new(c.build(shape, task)?),
            Self::WaeMmd(c) => Box::new(c.build(shape, task)?),
            Self::Bilstm(_) => unreachable!("built above"),
        })
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
