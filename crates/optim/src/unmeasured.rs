//! Steps whose change of the loss is below the rounding of the weights.
//!
//! LossGrad, SLS, Gorti-Ravaut's finite differences and naive GD-TLR compare the loss at
//! shifted weights θ − t·g with the batch loss (or with each other). When t·|g| is far below the
//! spacing of the weights at the run's precision (f32: about 6e-8·|θ|), θ − t·g rounds back to θ
//! and the probe returns the batch loss bit for bit: the method sees "no change" where exact
//! arithmetic sees a decrease of about t·‖g‖². LossGrad then reads r = 1 and shrinks h on every
//! step, a silent stall (issue 17, item 10).
//!
//! Each of these methods detects such an *unmeasured* step by exact equality of the numbers the
//! probe returned (no extra pass, no extra sync), for a nonzero step; the precise condition is in
//! each module's documentation. It reports it in a diagnostic column `unmeasured` (1 for such a
//! step, 0 otherwise, NaN for a skipped step: its sum over `steps.csv` is the count), warns once
//! per run with the cause and the remedies ([`crate::StepOutput::warning`]), and, where exact
//! arithmetic gives a definite answer, offers `optimizer.unmeasured = "exact"` ([`Unmeasured`])
//! to use it instead of the paper's rule (the default).
//!
//! The test is exact equality, so a step whose probe loss equals the batch loss by coincidence
//! (e.g. a step that jumps to the mirror point of a symmetric loss) counts too; with losses
//! computed from different weights that needs an exact symmetry, which real models do not have.

use serde::{Deserialize, Serialize};

use crate::OptimError;
use crate::api::OptimizerState;

/// How a method treats a step whose change of the loss it could not measure
/// (`optimizer.unmeasured`; see the [module documentation](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmeasured {
    /// `"paper"` (default): the paper's rule, applied to the numbers as they came out.
    #[default]
    Paper,
    /// `"exact"`: what exact arithmetic would give for a change too small to measure (LossGrad:
    /// r = 0, h grows; SLS: the trial step is accepted; Gorti-Ravaut: η and its momentum are
    /// left unchanged).
    Exact,
}

/// The one-time warning about unmeasured steps: remembers whether it was given this run.
///
/// Part of the optimizer's saved state (the flag [`WARNED`]): a resumed run does not repeat a
/// warning the run already gave.
#[derive(Debug, Clone, Default)]
pub(crate) struct OnceWarning {
    warned: bool,
}

/// The name of the saved flag of [`OnceWarning`] in an optimizer's state.
pub(crate) const WARNED: &str = "warned_unmeasured";

impl OnceWarning {
    /// Adds the flag to an optimizer's state.
    pub(crate) fn save(&self, state: OptimizerState) -> OptimizerState {
        state.with_flag(WARNED, self.warned)
    }

    /// Reads the flag from an optimizer's state (a StateMismatch when absent or not 0/1).
    pub(crate) fn load(state: &OptimizerState) -> Result<Self, OptimError> {
        Ok(Self {
            warned: state.flag(WARNED)?,
        })
    }

    /// `Some(message())` on the first unmeasured step of the run, `None` otherwise.
    pub(crate) fn check(
        &mut self,
        unmeasured: bool,
        message: impl FnOnce() -> String,
    ) -> Option<String> {
        if unmeasured && !self.warned {
            self.warned = true;
            Some(message())
        } else {
            None
        }
    }
}

/// The `unmeasured` column's value: 1 for an unmeasured step, 0 otherwise.
pub(crate) fn column(unmeasured: bool) -> f64 {
    if unmeasured { 1.0 } else { 0.0 }
}

/// The cause, as every method's warning states it.
pub(crate) const CAUSE: &str = "the shifted weights are within the rounding of the current ones \
     at this precision, so the probe loss equals the loss exactly and the rule sees no change";

/// The closing sentence of every method's warning.
pub(crate) const COUNTED: &str =
    "Such steps are counted in the `unmeasured` column of steps.csv; this warning is shown once.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmeasured_parses_snake_case_and_defaults_to_paper() {
        #[derive(Deserialize, Serialize)]
        struct Wrap {
            #[serde(default)]
            unmeasured: Unmeasured,
        }
        let w: Wrap = toml::from_str("").unwrap();
        assert_eq!(w.unmeasured, Unmeasured::Paper);
        let w: Wrap = toml::from_str("unmeasured = \"exact\"").unwrap();
        assert_eq!(w.unmeasured, Unmeasured::Exact);
        assert_eq!(
            toml::to_string(&w).unwrap().trim(),
            "unmeasured = \"exact\""
        );
        assert!(toml::from_str::<Wrap>("unmeasured = \"zero\"").is_err());
    }

    #[test]
    fn once_warning_fires_on_the_first_unmeasured_step_only() {
        let mut once = OnceWarning::default();
        assert_eq!(once.check(false, || "no".into()), None);
        assert_eq!(once.check(true, || "yes".into()), Some("yes".to_string()));
        assert_eq!(once.check(true, || "again".into()), None);
        assert_eq!((column(true), column(false)), (1.0, 0.0));
    }
}
