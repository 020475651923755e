//! SPS: the stochastic Polyak step size, capped by a smoothly growing bound.
//!
//! Loizou, Vaswani, Laradji & Lacoste-Julien, "Stochastic Polyak Step-size for SGD: An Adaptive
//! Learning Rate for Fast Convergence" (AISTATS 2021): the SPS_max rule
//! γ = min{(f_i(θ) − f_i*)/(c‖∇f_i(θ)‖²), γ_b} with f_i* = 0, and, for deep networks, the
//! smoothed upper bound γ_b = 2^{1/n_b}·γ_prev (the "reset" growth of Vaswani et al. 2019's line
//! search), as ALGORITHMS.md §5 resolves it. With L the batch loss and g its gradient:
//!
//! ```text
//! if ‖g‖ < 1e-8:  no step; γ stays γ_prev
//! polyak = L / (c·‖g‖² + eps)
//! γ = min(polyak, 2^{1/n_b}·γ_prev)       # γ_prev = γ0 = `lr` before the first step
//! θ ← θ − γ·g;   γ_prev ← γ
//! ```
//!
//! n_b is the number of batches per epoch (from [`StepSizeOptimizer::begin_epoch`]), so the
//! bound may at most double over one epoch. If `begin_epoch` was never called, n_b = 1.
//!
//! Cost per step: 1 forward + 1 backward pass, no extra passes, one sync (‖g‖²). Defaults:
//! γ0 = `lr` = 1, c = 0.2 (the paper's value for deep networks), `eps` = 0. The `lr` column
//! logs γ. Diagnostics: `polyak_step` (L/(c‖g‖² + eps), +∞ when that denominator is 0) and
//! `grad_sq_norm` (‖g‖²). There is no fixed cap `gamma_max`: the spec's rule has only the
//! smoothing bound.
//!
//! # Project choices
//! - Losses are taken as ≥ 0 with f* = 0 (cross-entropy, squared error). A batch loss L ≤ 0
//!   (outside the rule's assumption) takes no step and keeps γ_prev: the literal rule would set
//!   γ ≤ 0, after which the bound 2^{1/n_b}·γ_prev could never become positive again.
//! - Steps that move nothing (tiny gradient, L ≤ 0) log the kept γ_prev in the `lr` column.
//! - A non-finite loss or ‖g‖² skips the update: weights and γ unchanged, diagnostics NaN.
//! - γ is set by the method, so `sps` takes no `[schedule]`.

use burn::tensor::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::api::{OptimizerState, StepInput, StepOutput, StepSizeOptimizer};
use crate::{OptimError, vector};

/// Below this gradient norm no step is taken (ALGORITHMS.md §5, as the authors' code).
const MIN_GRAD_NORM: f64 = 1e-8;

/// Settings of [`Sps`], as `[optimizer]` keys with `kind = "sps"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpsConfig {
    /// Initial step size γ0, the first γ_prev of the smoothing bound (default 1).
    #[serde(default = "SpsConfig::default_lr")]
    pub lr: f64,
    /// The constant c of the Polyak step L/(c‖g‖²) (default 0.2).
    #[serde(default = "SpsConfig::default_c")]
    pub c: f64,
    /// Added to c‖g‖² in the denominator (default 0).
    #[serde(default)]
    pub eps: f64,
}

impl SpsConfig {
    fn default_lr() -> f64 {
        1.0
    }
    fn default_c() -> f64 {
        0.2
    }

    /// Checks the settings; errors name the config key.
    pub fn validate(&self) -> Result<(), OptimError> {
        crate::check_positive("optimizer.lr", self.lr)?;
        crate::check_positive("optimizer.c", self.c)?;
        crate::check_non_negative("optimizer.eps", self.eps)
    }
}

impl Default for SpsConfig {
    fn default() -> Self {
        Self {
            lr: Self::default_lr(),
            c: Self::default_c(),
            eps: 0.0,
        }
    }
}

/// The SPS_max optimizer with a smoothly growing bound. See the module documentation.
#[derive(Debug, Clone)]
pub struct Sps {
    /// The constant c.
    c: f64,
    /// Added to the denominator c‖g‖².
    eps: f64,
    /// The step size of the last update (γ0 before the first).
    gamma: f64,
    /// Batches per epoch n_b (1 until `begin_epoch` says otherwise).
    batches_per_epoch: usize,
}

impl Sps {
    /// An SPS optimizer starting at γ_prev = `config.lr`.
    pub fn new(config: &SpsConfig) -> Self {
        Self {
            c: config.c,
            eps: config.eps,
            gamma: config.lr,
            batches_per_epoch: 1,
        }
    }

    /// The bound 2^{1/n_b}·γ_prev on the next step size.
    fn bound(&self) -> f64 {
        2f64.powf(1.0 / self.batches_per_epoch as f64) * self.gamma
    }
}

impl StepSizeOptimizer for Sps {
    fn kind(&self) -> &'static str {
        "sps"
    }

    fn diagnostic_names(&self) -> &'static [&'static str] {
        &["polyak_step", "grad_sq_norm"]
    }

    fn begin_epoch(&mut self, _epoch: usize, batches_per_epoch: usize) {
        self.batches_per_epoch = batches_per_epoch.max(1);
    }

    fn step(&mut self, input: StepInput<'_>) -> StepOutput {
        let StepInput {
            params,
            loss,
            grads,
            ..
        } = input;
        let s = vector::sq_norm(&grads); // SYNC
        if !loss.is_finite() || !s.is_finite() {
            return StepOutput::new(params, self.gamma, vec![f64::NAN, s]);
        }
        let denom = self.c * s + self.eps;
        let polyak = if denom > 0.0 {
            loss / denom
        } else {
            f64::INFINITY
        };
        if s.sqrt() < MIN_GRAD_NORM || loss <= 0.0 {
            return StepOutput::new(params, self.gamma, vec![polyak, s]);
        }
        let gamma = polyak.min(self.bound());
        self.gamma = gamma;
        let params = vector::add_scaled_owned(params, grads, -gamma);
        StepOutput::new(params, gamma, vec![polyak, s])
    }

    fn current_lr(&self) -> f64 {
        self.gamma
    }

    fn state(&self) -> OptimizerState {
        OptimizerState::new(self.kind())
            .with_scalar("gamma", self.gamma)
            .with_scalar("batches_per_epoch", self.batches_per_epoch as f64)
    }

    fn load_state(
        &mut self,
        state: &OptimizerState,
        _: &Device,
        _: DType,
    ) -> Result<(), OptimError> {
        state.expect_kind(self.kind())?;
        let gamma = state.positive_scalar("gamma")?;
        let batches_per_epoch = state.step_counter("batches_per_epoch")?;
        self.gamma = gamma;
        self.batches_per_epoch = usize::try_from(batches_per_epoch)
            .unwrap_or(usize::MAX)
            .max(1);
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
    fn sps_first_step_is_the_polyak_step_when_below_the_bound() {
        // H = diag(1, 4), θ = (1, ½): L = ½(1 + 1) = 1, g = (1, 2), ‖g‖² = 5,
        // polyak = 1/(0.2·5) = 1 < 2^{1/1}·γ0 = 2 (n_b = 1 by default): θ1 = θ − g = (0, −1.5).
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        let mut opt = Sps::new(&SpsConfig::default());
        let out = step_with(&mut opt, &q, &list(&[&[1.0, 0.5]], &d));
        assert!(close(out.diagnostics[0], 1.0));
        assert_eq!(out.diagnostics[1], 5.0);
        assert!(close(out.lr, 1.0));
        let got = values(&out.params)[0].clone();
        assert!(got[0].abs() < 1e-15 && close(got[1], -1.5), "{got:?}");
    }

    #[test]
    fn sps_first_step_is_capped_by_the_smoothing_bound() {
        // Same point, γ0 = 0.3, n_b = 4: bound = 0.3·2^{1/4} < polyak = 1.
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        let mut opt = Sps::new(&SpsConfig {
            lr: 0.3,
            ..SpsConfig::default()
        });
        opt.begin_epoch(1, 4);
        let out = step_with(&mut opt, &q, &list(&[&[1.0, 0.5]], &d));
        let bound = 0.3 * 2f64.powf(0.25);
        assert!(close(out.lr, bound));
        let got = values(&out.params)[0].clone();
        assert!(close(got[0], 1.0 - bound) && close(got[1], 0.5 - 2.0 * bound));
    }

    #[test]
    fn sps_step_never_exceeds_its_bound_and_is_polyak_below_it() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0, 10.0]);
        let mut opt = Sps::new(&SpsConfig {
            lr: 1e-3,
            c: 0.5,
            eps: 1e-3,
        });
        opt.begin_epoch(1, 3);
        let mut theta = vec![1.0, -0.5, 0.25];
        let mut params = list(&[&theta], &d);
        let mut gamma_prev = 1e-3;
        let (mut capped, mut free) = (0, 0);
        for step in 0..60 {
            let out = step_with(&mut opt, &q, &params);
            let g = q.grad(&theta);
            let s: f64 = g.iter().map(|x| x * x).sum();
            let polyak = q.loss(&theta) / (0.5 * s + 1e-3);
            let bound = 2f64.powf(1.0 / 3.0) * gamma_prev;
            assert!(close(out.diagnostics[0], polyak), "step {step}");
            assert!(out.lr <= bound * (1.0 + 1e-15), "step {step}");
            if polyak < bound {
                assert!(close(out.lr, polyak), "step {step}");
                free += 1;
            } else {
                assert!(close(out.lr, bound), "step {step}");
                capped += 1;
            }
            for (x, gi) in theta.iter_mut().zip(&g) {
                *x -= out.lr * gi;
            }
            let got = values(&out.params)[0].clone();
            for i in 0..3 {
                assert!((got[i] - theta[i]).abs() <= 1e-12 * theta[i].abs().max(1e-12));
            }
            gamma_prev = out.lr;
            params = list(&[&theta], &d);
        }
        assert!(capped > 0 && free > 0, "capped {capped}, free {free}");
    }

    #[test]
    fn sps_tiny_or_zero_gradient_takes_no_step_and_keeps_gamma() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 1.0]);
        let mut opt = Sps::new(&SpsConfig {
            lr: 0.5,
            ..SpsConfig::default()
        });
        for theta in [[0.0, 0.0], [5e-9, 5e-9]] {
            let out = step_with(&mut opt, &q, &list(&[&theta], &d));
            assert_eq!(values(&out.params), vec![theta.to_vec()]);
            assert_eq!(out.lr, 0.5);
            assert!(!out.diagnostics[0].is_nan());
            assert_eq!(opt.current_lr(), 0.5);
        }
    }

    #[test]
    fn sps_skips_non_finite_and_non_positive_losses() {
        let d = device();
        let params = list(&[&[1.0, 2.0]], &d);
        let mut probe = Quadratic::diagonal(vec![1.0, 1.0]);
        let mut opt = Sps::new(&SpsConfig::default());
        let cases = [
            (f64::NAN, [1.0, 1.0]),
            (f64::INFINITY, [1.0, 1.0]),
            (1.0, [f64::NAN, 1.0]),
            (0.0, [1.0, 1.0]),
            (-1.0, [1.0, 1.0]),
        ];
        for (loss, g) in cases {
            let out = opt.step(StepInput {
                params: params.clone(),
                loss,
                grads: list(&[&g], &d),
                probe: &mut probe,
                holdout: None,
            });
            assert_eq!(values(&out.params), vec![vec![1.0, 2.0]], "loss {loss}");
            assert_eq!(opt.current_lr(), 1.0);
        }
    }

    #[test]
    fn sps_state_round_trips_with_batches_per_epoch() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        let cfg = SpsConfig {
            lr: 0.1,
            ..SpsConfig::default()
        };
        let mut opt = Sps::new(&cfg);
        opt.begin_epoch(1, 7);
        let params = step_with(&mut opt, &q, &list(&[&[1.0, 0.5]], &d)).params;
        let mut restored = Sps::new(&SpsConfig::default());
        restored.load_state(&opt.state(), &d, DType::F64).unwrap();
        assert_eq!(restored.batches_per_epoch, 7);
        assert_eq!(restored.current_lr(), opt.current_lr());
        let a = step_with(&mut opt, &q, &params);
        let b = step_with(&mut restored, &q, &params);
        assert_eq!(values(&a.params), values(&b.params));
        assert!(opt.base_lr().is_none());
    }

    #[test]
    fn sps_validate_names_the_keys() {
        let err = SpsConfig {
            c: 0.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("optimizer.c"), "{err}");
        let err = SpsConfig {
            eps: -1.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("optimizer.eps"), "{err}");
        let err = SpsConfig {
            lr: f64::NAN,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("optimizer.lr"), "{err}");
    }
}
