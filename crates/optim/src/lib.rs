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
//! - State across steps is the optimizer's own, exported for checkpoints as an
//!   [`OptimizerState`]: a set of named scalars and named device tensors (in the dtype the
//!   optimizer keeps them, never read back by this crate) that the trainer writes into its
//!   checkpoints. Loading it into a fresh optimizer resumes the run bit for bit, one-time
//!   warnings included (`resume_tests` checks every kind).
//! - [`OptimizerConfig`] mirrors the `[optimizer]` TOML section, one variant per `kind`.
//! - Methods that compare losses at shifted weights (LossGrad, SLS, Gorti-Ravaut, naive GD-TLR)
//!   detect a step too small to change the loss at the run's precision, count it in an
//!   `unmeasured` column and warn once ([`unmeasured`]).
//!
//! # Methods
//! | kind | method | extra passes per step |
//! |---|---|---|
//! | `sgd` | SGD, heavy-ball momentum, coupled weight decay ([`Sgd`]) | none |
//! | `adam` | Adam, PyTorch's form ([`Adam`]) | none |
//! | `lossgrad` | LossGrad, Wójcik et al. Alg. 1 ([`LossGrad`]) | 1 forward |
//! | `wngrad` | WNGrad, Wu, Ward & Bottou 2018 ([`WnGrad`]) | none |
//! | `sgd_hd` | SGD-HD, hypergradient descent, Baydin et al. 2018 ([`SgdHd`]) | none |
//! | `adam_hd` | Adam-HD, hypergradient descent, Baydin et al. 2018 ([`AdamHd`]) | none |
//! | `sps` | SPS_max with a smoothed bound, Loizou et al. 2021 ([`Sps`]) | none |
//! | `sls` | SGD + stochastic Armijo line search, Vaswani et al. 2019 ([`Sls`]) | backtracks + 1 forward (≤ 100) |
//! | `l4mom` | L4 on momentum, Rolínek & Martius Eqs. 3-7 ([`L4`]) | none |
//! | `l4adam` | L4 on Adam, Rolínek & Martius Eqs. 3-7 ([`L4`]) | none |
//! | `l4sgd` | L4 on plain SGD, Rolínek & Martius Eq. 3 with v = ∇L ([`L4`]) | none |
//! | `adam_tf` | Adam, TensorFlow's form (ε added to the uncorrected √v) ([`AdamTf`]) | none |
//! | `rmsprop` | RMSProp, PyTorch's form, Tieleman & Hinton 2012 ([`RmsProp`]) | none |
//! | `gorti_ravaut` | Gorti & Ravaut adaptive η, Newton (Eq. 10) or gradient descent (Sec. 3.1) on η ([`GortiRavaut`]) | second order 5 forward; first order 1 forward + 1 backward (`same_batch`), 2 forward (`finite_difference`) or none (`next_batch`) |
//! | `gd_tlr` | Trainable Learning Rate, GD form: efficient Alg. 2, naive Alg. 1, fixed-η App. D.4 ([`GdTlr`]) | none; `naive`: 1 forward + 1 backward |
//! | `sgd_tlr` | Trainable Learning Rate, SGD extension Eq. 10 on momentum SGD ([`SgdTlr`]) | none |
//! | `sgd_tlr_pl` | Trainable Learning Rate, SGD extension with one α per tensor ([`SgdTlrPerLayer`]) | none |
//! | `yellowfin` | YellowFin, Zhang & Mitliagkas Alg. 1-4 ([`YellowFin`]) | none |

pub mod adam;
pub mod adam_tf;
pub mod api;
pub mod config;
pub mod gorti_ravaut;
pub mod hypergradient;
pub mod l4;
pub mod lossgrad;
pub mod rmsprop;
pub mod schedule;
pub mod sgd;
pub mod sls;
pub mod sps;
pub mod tlr;
pub mod unmeasured;
pub mod vector;
pub mod wngrad;
pub mod yellowfin;

#[cfg(test)]
mod resume_tests;
#[cfg(test)]
pub(crate) mod testing;

pub use adam::{Adam, AdamConfig};
pub use adam_tf::{AdamTf, AdamTfConfig};
pub use api::{LossProbe, OptimizerState, StepInput, StepOutput, StepSizeOptimizer};
pub use config::OptimizerConfig;
pub use gorti_ravaut::{
    GortiRavaut, GortiRavautConfig, GortiRavautDerivative, GortiRavautOrder, GortiRavautProbe,
};
pub use hypergradient::{AdamHd, AdamHdConfig, SgdHd, SgdHdConfig};
pub use l4::{L4, L4AdamConfig, L4Direction, L4MomConfig, L4Settings, L4SgdConfig};
pub use lossgrad::{LossGrad, LossGradConfig};
pub use rmsprop::{RmsProp, RmsPropConfig};
pub use schedule::ScheduleConfig;
pub use sgd::{Sgd, SgdConfig};
pub use sls::{Sls, SlsConfig};
pub use sps::{Sps, SpsConfig};
pub use tlr::{GdTlr, GdTlrConfig, GdTlrVariant, SgdTlr, SgdTlrConfig, SgdTlrPerLayer};
pub use unmeasured::Unmeasured;
pub use vector::ParamList;
pub use wngrad::{WnGrad, WnGradConfig};
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
