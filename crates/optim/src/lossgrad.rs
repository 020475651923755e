//! LossGrad: a locally optimal step size from one extra forward pass.
//!
//! Wójcik et al., "LOSSGRAD: locally optimal step-size in gradient descent", Algorithm 1.
//! With f0 the batch loss, g its gradient, s = ‖g‖² and h the current step size:
//!
//! ```text
//! approx = f0 − h·s                 # linear prediction of the loss after the step
//! θ ← θ − h·g                       # the step uses the OLD h
//! f1 = L(θ; same batch)             # one extra forward pass, no autodiff graph
//! r  = (f1 − approx) / (h·s + 1e-25)
//! h  ← r > 0.5 ? h / c : h · c      # applies from the next batch
//! ```
//!
//! Sec. 2 (Eq. 3): r fits a quadratic W(t) through φ(0), φ′(0) and φ(h) of φ(t) = L(θ − t·g);
//! W′(h) > 0 exactly when r > 1/2, so h is past the minimiser of W and shrinks. On a quadratic
//! loss r = h·gᵀHg / (2s), and r > 1/2 exactly when h exceeds the exact line-search step s/gᵀHg.
//!
//! Cost per step: 2 forward + 1 backward passes. State: h only. A non-finite f1 or r counts as
//! r > 1/2 (h decreases); the authors' code increases h there, which this crate does not copy.
//! A non-finite ‖g‖² skips the update (weights unchanged) and decreases h.

use burn::tensor::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::api::{OptimizerState, StepInput, StepOutput, StepSizeOptimizer};
use crate::{OptimError, vector};

/// Settings of [`LossGrad`], as `[optimizer]` keys with `kind = "lossgrad"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossGradConfig {
    /// Initial step size h0 (paper: 1e-4).
    #[serde(default = "LossGradConfig::default_lr")]
    pub lr: f64,
    /// Step-size adjustment factor c > 1 (paper: 1.05, chosen in Table 1).
    #[serde(default = "LossGradConfig::default_c")]
    pub c: f64,
}

impl LossGradConfig {
    fn default_lr() -> f64 {
        1e-4
    }
    fn default_c() -> f64 {
        1.05
    }

    /// Checks the settings; errors name the config key.
    pub fn validate(&self) -> Result<(), OptimError> {
        crate::check_positive("optimizer.lr", self.lr)?;
        if !(self.c.is_finite() && self.c > 1.0) {
            return Err(OptimError::invalid(
                "optimizer.c",
                format!("must be > 1, got {}", self.c),
            ));
        }
        Ok(())
    }
}

impl Default for LossGradConfig {
    fn default() -> Self {
        Self {
            lr: Self::default_lr(),
            c: Self::default_c(),
        }
    }
}

/// The LossGrad optimizer (Alg. 1). See the module documentation for the update rule.
#[derive(Debug, Clone)]
pub struct LossGrad {
    /// Adjustment factor c.
    c: f64,
    /// Step size h the next update uses.
    h: f64,
}

/// Guard in the denominator of r, as in the paper's reference code.
const RATIO_EPS: f64 = 1e-25;

impl LossGrad {
    /// A LossGrad optimizer starting at h = `config.lr`.
    pub fn new(config: &LossGradConfig) -> Self {
        Self {
            c: config.c,
            h: config.lr,
        }
    }
}

impl StepSizeOptimizer for LossGrad {
    fn kind(&self) -> &'static str {
        "lossgrad"
    }

    fn diagnostic_names(&self) -> &'static [&'static str] {
        &["ratio", "grad_sq_norm", "probe_loss"]
    }

    fn step(&mut self, input: StepInput<'_>) -> StepOutput {
        let StepInput {
            params,
            loss,
            grads,
            probe,
            ..
        } = input;
        let h = self.h;
        let s = vector::sq_norm(&grads); // SYNC
        if !s.is_finite() {
            self.h = h / self.c;
            return StepOutput::new(params, h, vec![f64::NAN, s, f64::NAN]);
        }
        let lred = h * s;
        let approx = loss - lred;
        let params = vector::add_scaled_owned(params, grads, -h);
        let f1 = probe.loss_at(&params); // SYNC: the extra forward pass
        let r = (f1 - approx) / (lred + RATIO_EPS);
        self.h = if !f1.is_finite() || !r.is_finite() || r > 0.5 {
            h / self.c
        } else {
            h * self.c
        };
        StepOutput::new(params, h, vec![r, s, f1])
    }

    fn current_lr(&self) -> f64 {
        self.h
    }

    fn state(&self) -> OptimizerState {
        OptimizerState::new(self.kind()).with_scalar("h", self.h)
    }

    fn load_state(
        &mut self,
        state: &OptimizerState,
        _: &Device,
        _: DType,
    ) -> Result<(), OptimError> {
        state.expect_kind(self.kind())?;
        self.h = state.scalar("h")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Quadratic, device, list, step_with};

    /// ½·θᵀHθ with H = diag(1, 4, 10): the gradient is Hθ, so everything is known exactly.
    fn quadratic() -> Quadratic {
        Quadratic::diagonal(vec![1.0, 4.0, 10.0])
    }

    #[test]
    fn lossgrad_ratio_is_exact_on_a_quadratic() {
        let d = device();
        let q = quadratic();
        let theta = vec![1.0, -0.5, 0.25];
        for h in [1e-3, 0.05, 0.2, 0.5] {
            let mut opt = LossGrad::new(&LossGradConfig { lr: h, c: 1.05 });
            let out = step_with(&mut opt, &q, &list(&[&theta], &d));
            let g = q.grad(&theta);
            let s: f64 = g.iter().map(|x| x * x).sum();
            let ghg = q.quad_form(&g);
            let expected = h * ghg / (2.0 * s);
            let r = out.diagnostics[0];
            assert!(
                (r - expected).abs() <= 1e-12 * expected.abs(),
                "h={h}: r={r}, expected {expected}"
            );
            assert_eq!(out.lr, h);
            assert_eq!(out.diagnostics[1], s);
            // The update used the old h.
            let moved = crate::testing::values(&out.params)[0].clone();
            for i in 0..3 {
                assert!((moved[i] - (theta[i] - h * g[i])).abs() < 1e-15);
            }
        }
    }

    #[test]
    fn lossgrad_shrinks_h_exactly_when_it_exceeds_the_line_search_step() {
        let d = device();
        let q = quadratic();
        let theta = vec![0.3, 1.0, -2.0];
        let g = q.grad(&theta);
        let s: f64 = g.iter().map(|x| x * x).sum();
        let exact = s / q.quad_form(&g);
        for h in [exact * 0.9, exact * 0.999, exact * 1.001, exact * 1.5] {
            let mut opt = LossGrad::new(&LossGradConfig { lr: h, c: 1.05 });
            step_with(&mut opt, &q, &list(&[&theta], &d));
            let expected = if h > exact { h / 1.05 } else { h * 1.05 };
            assert_eq!(opt.current_lr(), expected, "h = {h}, exact step {exact}");
        }
    }

    #[test]
    fn lossgrad_h_settles_around_the_exact_line_search_step() {
        // The same point every step (a constant gradient stream): h must climb from h0 and then
        // oscillate within one factor c of the exact line-search step s/gᵀHg.
        let d = device();
        let q = quadratic();
        let theta = vec![0.3, 1.0, -2.0];
        let g = q.grad(&theta);
        let exact = g.iter().map(|x| x * x).sum::<f64>() / q.quad_form(&g);
        let mut opt = LossGrad::new(&LossGradConfig { lr: 1e-4, c: 1.05 });
        let mut history = Vec::new();
        for _ in 0..400 {
            step_with(&mut opt, &q, &list(&[&theta], &d));
            history.push(opt.current_lr());
        }
        for h in &history[300..] {
            assert!(
                *h > exact / 1.05 / 1.05 && *h < exact * 1.05 * 1.05,
                "h = {h}, exact {exact}"
            );
        }
        let geo_mean = (history[300..].iter().map(|h| h.ln()).sum::<f64>() / 100.0).exp();
        assert!(
            (geo_mean / exact - 1.0).abs() < 0.05,
            "mean h {geo_mean} vs exact {exact}"
        );
    }

    #[test]
    fn lossgrad_decreases_h_when_the_probe_loss_is_not_finite() {
        let d = device();
        let q = quadratic().with_nan_probe();
        let mut opt = LossGrad::new(&LossGradConfig { lr: 0.01, c: 2.0 });
        let out = step_with(&mut opt, &q, &list(&[&[1.0, 1.0, 1.0]], &d));
        assert!(out.diagnostics[0].is_nan());
        assert_eq!(opt.current_lr(), 0.005);
    }

    #[test]
    fn lossgrad_increases_h_on_a_zero_gradient_without_moving() {
        let d = device();
        let q = quadratic();
        let mut opt = LossGrad::new(&LossGradConfig { lr: 0.01, c: 2.0 });
        let out = step_with(&mut opt, &q, &list(&[&[0.0, 0.0, 0.0]], &d));
        assert_eq!(
            crate::testing::values(&out.params),
            vec![vec![0.0, 0.0, 0.0]]
        );
        assert_eq!(out.diagnostics[0], 0.0);
        assert_eq!(opt.current_lr(), 0.02);
    }

    #[test]
    fn lossgrad_state_round_trips() {
        let mut opt = LossGrad::new(&LossGradConfig { lr: 0.25, c: 1.05 });
        let state = opt.state();
        let mut other = LossGrad::new(&LossGradConfig::default());
        other.load_state(&state, &device(), DType::F64).unwrap();
        assert_eq!(other.current_lr(), 0.25);
        opt.h = 3.0;
        assert_ne!(opt.state(), state);
    }

    #[test]
    fn lossgrad_rejects_c_not_above_one() {
        let err = LossGradConfig { lr: 0.1, c: 1.0 }.validate().unwrap_err();
        assert!(err.to_string().contains("optimizer.c"));
        let err = LossGradConfig { lr: -0.1, c: 1.05 }.validate().unwrap_err();
        assert!(err.to_string().contains("optimizer.lr"));
    }
}
