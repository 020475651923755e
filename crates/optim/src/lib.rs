//! Step-size optimizers that see the loss, the whole gradient and the batch.
//!
//! # Why not Burn's `Optimizer`
//! Burn's optimizer trait updates one tensor at a time and never sees the loss. Every method
//! this project studies needs more: LossGrad compares the loss after the step with its linear
//! prediction, L4 divides by the loss, TLR takes inner products of consecutive whole gradients,
//! Gorti-Ravaut and line searches re-evaluate the loss at shifted weights on the same batch.
//!
//! # The API
//! - The model's weights are a [`ParamList`]: one flattened `Tensor<1>` per parameter tensor,
//!   plain (not autodiff) tensors on any backend. The trainer owns them between steps.
//! - Each update gets a [`StepInput`]: the weights, the batch loss at them (always present, f64),
//!   the whole gradient, and a [`LossProbe`] that re-evaluates the loss on the same batch at other
//!   weights (forward only, batch-norm running statistics untouched, the same dropout mask).
//! - A [`StepSizeOptimizer`] returns a [`StepOutput`]: new weights, the step size it used (the
//!   `lr` column), and its diagnostics (named by `diagnostic_names`, written as CSV columns by the
//!   trainer; optimizers never see files).
//! - Whole-model math lives in [`vector`] (`dot`, `sq_norm`, `add_scaled`, per-tensor variants),
//!   accumulated in f64; each function returning a number is one device-to-host sync.
//! - State across steps is the optimizer's own, exported as a serializable [`OptimizerState`]
//!   for checkpoints.
//! - [`OptimizerConfig`] mirrors the `[optimizer]` TOML section, one variant per `kind`.
//!
//! # Methods
//! | kind | method | extra passes per step |
//! |---|---|---|
//! | `sgd` | SGD, heavy-ball momentum, coupled weight decay ([`Sgd`]) | none |
//! | `adam` | Adam, PyTorch's form ([`Adam`]) | none |
//! | `lossgrad` | LossGrad, Wójcik et al. Alg. 1 ([`LossGrad`]) | 1 forward |
//! | `yellowfin` | YellowFin, Zhang & Mitliagkas Alg. 1-4 ([`YellowFin`]) | none |

pub mod adam;
pub mod api;
pub mod config;
pub mod lossgrad;
pub mod sgd;
pub mod vector;
pub mod yellowfin;

#[cfg(test)]
pub(crate) mod testing;

pub use adam::{Adam, AdamConfig};
pub use api::{LossProbe, OptimizerState, StepInput, StepOutput, StepSizeOptimizer};
pub use config::OptimizerConfig;
pub use lossgrad::{LossGrad, LossGradConfig};
pub use sgd::{Sgd, SgdConfig};
pub use vector::ParamList;
pub use yellowfin::{YellowFin, YellowFinConfig};

/// Errors of this crate: bad settings (naming the config key) and mismatched saved state.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// A setting is out of range.
    #[error("{key}: {message}")]
    InvalidConfig {
        /// The config key, e.g. `optimizer.lr`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A saved state does not fit this optimizer.
    #[error("optimizer state does not match: {0}")]
    StateMismatch(String),
}

impl OptimError {
    pub(crate) fn invalid(key: &str, message: String) -> Self {
        Self::InvalidConfig {
            key: key.to_string(),
            message,
        }
    }
}

pub(crate) fn check_positive(key: &str, value: f64) -> Result<(), OptimError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(OptimError::invalid(
            key,
            format!("must be a positive number, got {value}"),
        ))
    }
}

pub(crate) fn check_non_negative(key: &str, value: f64) -> Result<(), OptimError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(OptimError::invalid(
            key,
            format!("must be ≥ 0, got {value}"),
        ))
    }
}

pub(crate) fn check_in_unit(key: &str, value: f64) -> Result<(), OptimError> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(OptimError::invalid(
            key,
            format!("must be in [0, 1), got {value}"),
        ))
    }
}
