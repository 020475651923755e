//! WNGrad: one global step-size denominator that grows with the squared gradient norms.
//!
//! Wu, Ward & Bottou, "WNGrad: Learn the Learning Rate in Gradient Descent" (2018,
//! arXiv:1803.02865), the WNGrad algorithm (Algorithm 1) with the learning rate η of its
//! experiments. With g the batch gradient and b the denominator (b0 > 0):
//!
//! ```text
//! b ← b + η²·‖g‖² / b          # ‖g‖² over ALL parameters: one global b
//! θ ← θ − (η / b)·g             # the step uses the NEW b
//! ```
//!
//! So b² grows by at least 2η²‖g‖² per step and η/b behaves like 1/√(2·Σ‖g‖²) once b ≫ b0: the
//! step size adapts to the gradient scale whatever η is (η matters while b is near b0).
//!
//! Cost per step: 1 forward + 1 backward pass, no extra passes. The `lr` column logs η/b, the
//! step size this update used. Diagnostics: `b` (after this update's increase) and
//! `grad_sq_norm` (‖g‖²).
//!
//! Defaults: `lr` = η = 0.1 (the value LossGrad's Table 5 uses for WNGrad on IMDb; its WAE run of
//! Table 6 uses 1e-4), `b0` = 1 (ALGORITHMS.md §5).
//!
//! # Project choices (ALGORITHMS.md §5)
//! - Public implementations differ: some step with the OLD b (θ ← θ − (η/b)·g before b grows),
//!   some keep one b per parameter tensor. This crate follows the paper's order and one global b,
//!   as ALGORITHMS.md fixes it: that order is the contract of the `wngrad` kind.
//! - η is a base rate: a `[schedule]` scales it (`base_lr` / `set_base_lr`); b is not rescaled.
//! - A non-finite loss or ‖g‖² (or a b that would overflow) skips the update: weights and b
//!   unchanged, diagnostics NaN. A zero gradient leaves b unchanged and takes a zero step.

use burn::tensor::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::api::{OptimizerState, StepInput, StepOutput, StepSizeOptimizer};
use crate::{OptimError, vector};

/// Settings of [`WnGrad`], as `[optimizer]` keys with `kind = "wngrad"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WnGradConfig {
    /// Learning rate η (default 0.1); the step size is η/b.
    #[serde(default = "WnGradConfig::default_lr")]
    pub lr: f64,
    /// Initial denominator b0 > 0 (default 1).
    #[serde(default = "WnGradConfig::default_b0")]
    pub b0: f64,
}

impl WnGradConfig {
    fn default_lr() -> f64 {
        0.1
    }
    fn default_b0() -> f64 {
        1.0
    }

    /// Checks the settings; errors name the config key.
    pub fn validate(&self) -> Result<(), OptimError> {
        crate::check_positive("optimizer.lr", self.lr)?;
        crate::check_positive("optimizer.b0", self.b0)
    }
}

impl Default for WnGradConfig {
    fn default() -> Self {
        Self {
            lr: Self::default_lr(),
            b0: Self::default_b0(),
        }
    }
}

/// The WNGrad optimizer. See the module documentation for the update rule.
#[derive(Debug, Clone)]
pub struct WnGrad {
    /// Learning rate η (scaled by a schedule).
    eta: f64,
    /// The global denominator b (b0 before the first step).
    b: f64,
}

impl WnGrad {
    /// A WNGrad optimizer with b = `config.b0` and η = `config.lr`.
    pub fn new(config: &WnGradConfig) -> Self {
        Self {
            eta: config.lr,
            b: config.b0,
        }
    }
}

impl StepSizeOptimizer for WnGrad {
    fn kind(&self) -> &'static str {
        "wngrad"
    }

    fn diagnostic_names(&self) -> &'static [&'static str] {
        &["b", "grad_sq_norm"]
    }

    fn step(&mut self, input: StepInput<'_>) -> StepOutput {
        let StepInput {
            params,
            loss,
            grads,
            ..
        } = input;
        let s = vector::sq_norm(&grads); // SYNC
        let b = self.b + self.eta * self.eta * s / self.b;
        if !loss.is_finite() || !s.is_finite() || !b.is_finite() {
            return StepOutput::new(params, self.current_lr(), vec![f64::NAN, s]);
        }
        self.b = b;
        let lr = self.eta / b;
        let params = vector::add_scaled_owned(params, grads, -lr);
        StepOutput::new(params, lr, vec![b, s])
    }

    fn current_lr(&self) -> f64 {
        self.eta / self.b
    }

    fn base_lr(&self) -> Option<f64> {
        Some(self.eta)
    }

    fn set_base_lr(&mut self, lr: f64) {
        self.eta = lr;
    }

    fn state(&self) -> OptimizerState {
        OptimizerState::new(self.kind()).with_scalar("b", self.b)
    }

    fn load_state(
        &mut self,
        state: &OptimizerState,
        _: &Device,
        _: DType,
    ) -> Result<(), OptimError> {
        state.expect_kind(self.kind())?;
        let b = state.positive_scalar("b")?;
        self.b = b;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Quadratic, device, list, step_with, values};

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-13 * b.abs().max(1e-300)
    }

    #[test]
    fn wngrad_first_step_uses_the_new_b() {
        // H = diag(1, 4), θ0 = (1, ½): g = (1, 2), ‖g‖² = 5. η = ½, b0 = 1:
        // b1 = 1 + ¼·5/1 = 9/4, step η/b1 = 2/9, θ1 = (1 − 2/9, ½ − 4/9) = (7/9, 1/18).
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        let mut opt = WnGrad::new(&WnGradConfig { lr: 0.5, b0: 1.0 });
        assert_eq!(opt.current_lr(), 0.5);
        let out = step_with(&mut opt, &q, &list(&[&[1.0, 0.5]], &d));
        assert!(close(out.lr, 2.0 / 9.0), "{}", out.lr);
        assert_eq!(out.diagnostics, vec![2.25, 5.0]);
        let got = values(&out.params)[0].clone();
        assert!(
            close(got[0], 7.0 / 9.0) && close(got[1], 1.0 / 18.0),
            "{got:?}"
        );
        // With the old b the step would have been ½, θ1 = (½, −½): clearly different.
        assert!((got[0] - 0.5).abs() > 0.1);
    }

    #[test]
    fn wngrad_b_follows_its_recursion_over_several_steps() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0, 10.0]);
        let (eta, b0) = (0.3, 2.0);
        let mut opt = WnGrad::new(&WnGradConfig { lr: eta, b0 });
        let mut theta = vec![1.0, -0.5, 0.25];
        let mut b = b0;
        let mut params = list(&[&theta], &d);
        for step in 0..6 {
            let out = step_with(&mut opt, &q, &params);
            let g = q.grad(&theta);
            let s: f64 = g.iter().map(|x| x * x).sum();
            b += eta * eta * s / b;
            for (x, gi) in theta.iter_mut().zip(&g) {
                *x -= eta / b * gi;
            }
            assert!(close(out.diagnostics[0], b), "step {step}");
            assert!(close(out.lr, eta / b), "step {step}");
            let got = values(&out.params)[0].clone();
            for i in 0..3 {
                assert!(close(got[i], theta[i]), "step {step} i {i}");
            }
            params = out.params;
        }
        assert!(close(opt.current_lr(), eta / b));
    }

    #[test]
    fn wngrad_b_is_global_over_all_tensors() {
        // Two tensors: ‖g‖² sums over both, one b for both.
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 2.0, 3.0]);
        let mut opt = WnGrad::new(&WnGradConfig { lr: 1.0, b0: 1.0 });
        let out = step_with(&mut opt, &q, &list(&[&[1.0, 1.0], &[1.0]], &d));
        // ‖g‖² = 1 + 4 + 9 = 14, b = 15, step 1/15.
        assert_eq!(out.diagnostics, vec![15.0, 14.0]);
        let got = values(&out.params);
        assert!(close(got[0][1], 1.0 - 2.0 / 15.0) && close(got[1][0], 1.0 - 3.0 / 15.0));
    }

    #[test]
    fn wngrad_zero_gradient_keeps_b_and_weights() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        let mut opt = WnGrad::new(&WnGradConfig::default());
        let out = step_with(&mut opt, &q, &list(&[&[0.0, 0.0]], &d));
        assert_eq!(values(&out.params), vec![vec![0.0, 0.0]]);
        assert_eq!(out.diagnostics, vec![1.0, 0.0]);
        assert_eq!(out.lr, 0.1);
        assert_eq!(opt.b, 1.0);
    }

    #[test]
    fn wngrad_skips_a_non_finite_loss() {
        let d = device();
        let params = list(&[&[1.0, 2.0]], &d);
        let grads = list(&[&[1.0, 1.0]], &d);
        let mut probe = Quadratic::diagonal(vec![1.0, 1.0]);
        let mut opt = WnGrad::new(&WnGradConfig::default());
        for (loss, g) in [
            (f64::NAN, grads.clone()),
            (1.0, list(&[&[f64::INFINITY, 1.0]], &d)),
        ] {
            let out = opt.step(StepInput {
                params: params.clone(),
                loss,
                grads: g,
                probe: &mut probe,
                holdout: None,
            });
            assert_eq!(values(&out.params), vec![vec![1.0, 2.0]]);
            assert!(out.diagnostics[0].is_nan());
            assert_eq!(opt.b, 1.0);
        }
    }

    #[test]
    fn wngrad_schedule_scales_eta_and_state_round_trips() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        let cfg = WnGradConfig { lr: 0.5, b0: 1.0 };
        let mut opt = WnGrad::new(&cfg);
        let params = step_with(&mut opt, &q, &list(&[&[1.0, 0.5]], &d)).params;
        let mut restored = WnGrad::new(&cfg);
        restored.load_state(&opt.state(), &d, DType::F64).unwrap();
        assert_eq!(restored.b, 2.25);
        let a = step_with(&mut opt, &q, &params);
        let b = step_with(&mut restored, &q, &params);
        assert_eq!(values(&a.params), values(&b.params));
        assert_eq!(opt.base_lr(), Some(0.5));
        opt.set_base_lr(0.25);
        assert_eq!(opt.current_lr(), 0.25 / opt.b);
    }

    #[test]
    fn wngrad_validate_names_the_key() {
        let err = WnGradConfig { lr: 0.1, b0: 0.0 }.validate().unwrap_err();
        assert!(err.to_string().contains("optimizer.b0"), "{err}");
        let err = WnGradConfig { lr: -1.0, b0: 1.0 }.validate().unwrap_err();
        assert!(err.to_string().contains("optimizer.lr"), "{err}");
        assert!(WnGradConfig::default().validate().is_ok());
    }
}
