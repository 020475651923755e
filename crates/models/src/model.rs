//! The model interface (v2): what a model declares, what a forward pass sees, what it returns.
//!
//! A model is a *function of its parameters*: it declares its trainable tensors ([`ParamSpec`])
//! and its non-trained state ([`StateSpec`]: batch-norm running statistics, later frozen
//! tables), and [`Model::forward`] computes the whole objective of a batch at any weights. The
//! trainer owns the tensors (flat, rank 1, one per spec, in declaration order); the optimizer
//! sees only the parameters, so state is in no norm, inner product or update.
//!
//! The [`Mode`] of a pass is explicit ([`Cx`]), never read from the device: `Train` uses batch
//! statistics and returns updated running statistics ([`Forward::new_state`], applied by the
//! trainer after the step), `Probe` uses batch statistics, returns no state and sees the step's
//! own random draws ([`StepNoise`]), `Eval` uses running statistics and no dropout.

use burn::tensor::{Int, Tensor};

use crate::{Init, Loss, StepNoise, Target};

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

/// One trainable parameter tensor of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// Name, e.g. `layers.0.weight`, `stage1.block0.conv1.weight`.
    pub name: String,
    /// Logical shape (the tensor is stored flattened).
    pub shape: Vec<usize>,
    /// How it is initialised.
    pub init: Init,
    /// The initialisation stream: each tensor draws from its own stream of the run's seed, so
    /// adding a layer changes no other layer's initial values. [`name_stream`] of the name for
    /// every model but the MLP family, which keeps its original streams (position + 1) so that
    /// its initial weights are what they were before this interface.
    pub stream: u64,
}

impl ParamSpec {
    /// A parameter whose initialisation stream is keyed by its name.
    pub fn named(name: impl Into<String>, shape: Vec<usize>, init: Init) -> Self {
        let name = name.into();
        let stream = name_stream(&name);
        Self {
            name,
            shape,
            init,
            stream,
        }
    }

    /// Number of scalars in the tensor.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of scalars in the tensor, `None` when it overflows `usize` (a shape from a config
    /// can ask for any size).
    pub fn checked_numel(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }
}

/// One tensor of non-trained model state (batch-norm running mean or variance).
#[derive(Debug, Clone, PartialEq)]
pub struct StateSpec {
    /// Name, e.g. `bn1.running_mean`.
    pub name: String,
    /// Logical shape (stored flattened).
    pub shape: Vec<usize>,
    /// Initial value (running mean 0, running variance 1, as PyTorch).
    pub init: Init,
}

impl StateSpec {
    /// Number of scalars in the tensor.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A stable 64-bit stream number for a tensor name (FNV-1a: the same on every platform and Rust
/// version), never 0 (stream 0 is left to other uses of the seed).
pub fn name_stream(name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash.max(1)
}

/// What one sample looks like to a model, fixed by the dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputShape {
    /// A row of `F` features.
    Features(usize),
    /// An image `[channels, height, width]`.
    Image([usize; 3]),
    /// A sequence of at most `max_len` token ids below `vocab_size`, with its real length.
    Tokens {
        /// Longest sequence (a batch may be shorter: trimmed to its longest sample).
        max_len: usize,
        /// Number of token ids (the embedding's rows).
        vocab_size: usize,
    },
}

impl InputShape {
    /// Scalars per sample (token ids count one each).
    pub fn numel(&self) -> usize {
        match self {
            Self::Features(n) => *n,
            Self::Image([c, h, w]) => c * h * w,
            Self::Tokens { max_len, .. } => *max_len,
        }
    }
}

/// A batch of inputs.
// One `Input` per batch: the token variant's second tensor handle is not worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Input {
    /// Feature rows `[batch, features]`.
    Features(Tensor<2>),
    /// Images `[batch, channels, height, width]`.
    Images(Tensor<4>),
    /// Token ids `[batch, steps]` (padded after each sample's real tokens) and the mask
    /// `[batch, steps]`: 1 at real tokens, 0 at padding.
    Tokens {
        /// The ids.
        ids: Tensor<2, Int>,
        /// 1 where a token is real, 0 at padding, in the batch's float dtype.
        mask: Tensor<2>,
    },
}

impl Input {
    /// The batch as rows `[batch, features]` (images flattened in C, H, W order; token ids
    /// as floats, which only a model built for tokens is given).
    pub fn rows(&self) -> Tensor<2> {
        match self {
            Self::Features(x) => x.clone(),
            Self::Images(x) => {
                let [b, c, h, w] = x.dims();
                x.clone().reshape([b, c * h * w])
            }
            Self::Tokens { ids, mask } => ids.clone().float().cast(mask.dtype()),
        }
    }

    /// The batch as images, for models that need them.
    pub fn images(&self) -> Option<Tensor<4>> {
        match self {
            Self::Images(x) => Some(x.clone()),
            Self::Features(_) | Self::Tokens { .. } => None,
        }
    }

    /// The token ids and mask, for models that need them.
    pub fn tokens(&self) -> Option<(Tensor<2, Int>, Tensor<2>)> {
        match self {
            Self::Tokens { ids, mask } => Some((ids.clone(), mask.clone())),
            Self::Features(_) | Self::Images(_) => None,
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Self::Features(x) => x.dims()[0],
            Self::Images(x) => x.dims()[0],
            Self::Tokens { mask, .. } => mask.dims()[0],
        }
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The context of one forward pass: its mode and the step's random draws.
pub struct Cx<'a> {
    /// Train, Probe or Eval.
    pub mode: Mode,
    /// Randomness keyed by (seed, step, site), shared by every pass of a step.
    pub noise: &'a StepNoise,
}

/// What a forward pass returns.
pub struct Forward {
    /// The whole objective of the batch (shape `[1]`): what the optimizer minimises.
    pub loss: Tensor<1>,
    /// The model's outputs `[batch, outputs]` (logits for classification), for accuracy.
    pub outputs: Tensor<2>,
    /// Updated state (one tensor per [`StateSpec`], in order) after a `Train` pass of a model
    /// with state; `None` otherwise. The trainer stores it after the optimizer's step.
    pub new_state: Option<Vec<Tensor<1>>>,
    /// The named terms of the objective (shape `[1]` each, in the order of
    /// [`Model::loss_parts`]) for the log: a WAE's reconstruction and MMD. Empty for a model
    /// whose objective is one term.
    pub parts: Vec<Tensor<1>>,
}

/// What a model predicts for a batch.
pub struct Prediction {
    /// Outputs `[batch, outputs]` (logits for classification).
    pub outputs: Tensor<2>,
    /// Updated state after a `Train` pass of a model with state; `None` otherwise.
    pub new_state: Option<Vec<Tensor<1>>>,
}

/// A model of the zoo: parameter and state declarations and a forward pass over flat tensors.
pub trait Model: Send + Sync {
    /// The trainable tensors, in the order `forward` expects them.
    fn param_specs(&self) -> &[ParamSpec];

    /// The non-trained state tensors, in the order `forward` expects them (none by default).
    fn state_specs(&self) -> &[StateSpec] {
        &[]
    }

    /// The outputs of a batch at weights `params` and state `state` (and, after a `Train` pass
    /// of a model with state, its updated state).
    fn predict(
        &self,
        params: &[Tensor<1>],
        state: &[Tensor<1>],
        input: &Input,
        cx: &Cx<'_>,
    ) -> Prediction;

    /// The objective and outputs of a batch: by default the data loss ([`Model::loss`]) of the
    /// outputs against `target`; models whose objective has more terms override it.
    fn forward(
        &self,
        params: &[Tensor<1>],
        state: &[Tensor<1>],
        input: &Input,
        target: &Target,
        cx: &Cx<'_>,
    ) -> Forward {
        let Prediction { outputs, new_state } = self.predict(params, state, input, cx);
        Forward {
            loss: self.loss().compute(outputs.clone(), target),
            outputs,
            new_state,
            parts: Vec::new(),
        }
    }

    /// The names of the objective's terms that [`Model::forward`] returns in
    /// [`Forward::parts`] (logged as their own columns); none by default.
    fn loss_parts(&self) -> &[&'static str] {
        &[]
    }

    /// Images decoded from `count` draws of the model's prior (a generative model's samples),
    /// `[count, c, h, w]` in the data's range, in `Eval` mode with the draws of `cx`'s noise;
    /// `None` for models that generate nothing.
    fn sample(
        &self,
        _params: &[Tensor<1>],
        _state: &[Tensor<1>],
        _count: usize,
        _cx: &Cx<'_>,
    ) -> Option<Tensor<4>> {
        None
    }

    /// The data loss this model trains with (how batch losses combine into a set's loss).
    fn loss(&self) -> Loss;

    /// Total number of scalar parameters (wrapping; see [`Model::checked_num_params`]).
    fn num_params(&self) -> usize {
        self.param_specs().iter().map(ParamSpec::numel).sum()
    }

    /// Total number of scalar parameters, `None` when it overflows `usize`.
    fn checked_num_params(&self) -> Option<usize> {
        self.param_specs().iter().try_fold(0usize, |total, spec| {
            total.checked_add(spec.checked_numel()?)
        })
    }
}
