//! RMSProp in PyTorch's form (`torch.optim.RMSprop`), the L4 paper's DNC baseline.
//!
//! Tieleman & Hinton, "Lecture 6.5 — RmsProp: divide the gradient by a running average of its
//! recent magnitude", COURSERA: Neural Networks for Machine Learning, 2012; the L4 paper
//! (Rolínek & Martius, Sec. 3.4) compares against it on the DNC (lr 0.005 there). As PyTorch
//! computes it, with d = g + λ·θ (coupled L2 weight decay) and every average starting at 0:
//!
//! ```text
//! v ← α·v + (1 − α)·d²
//! centered:  ḡ ← α·ḡ + (1 − α)·d;   denom = √(max(v − ḡ², 0)) + ε
//! otherwise:                         denom = √v + ε
//! momentum μ > 0:  buf ← μ·buf + d / denom;   θ ← θ − lr·buf
//! momentum μ = 0:                              θ ← θ − lr·d / denom
//! ```
//!
//! Defaults (PyTorch's): lr 1e-2, α 0.99, ε 1e-8, μ 0, λ 0, not centered.
//!
//! Cost per step: 1 forward + 1 backward pass, no sync. The `lr` column logs `lr` (schedulable).
//!
//! Differences from PyTorch: the centered variance v − ḡ² (≥ 0 in exact arithmetic) is clamped
//! at 0 before the root, so rounding can never make it NaN; `eps` must be > 0 (PyTorch allows 0,
//! which turns a zero gradient into 0/0); a non-finite loss skips the update (weights and state
//! unchanged). The gradient itself is not checked (no sync), as in [`crate::Adam`].

use burn::Tensor;
use burn::tensor::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::OptimError;
use crate::api::{OptimizerState, StepInput, StepOutput, StepSizeOptimizer};
use crate::sgd::with_weight_decay;
use crate::vector::ParamList;

/// Settings of [`RmsProp`], as `[optimizer]` keys with `kind = "rmsprop"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RmsPropConfig {
    /// Learning rate (1e-2).
    #[serde(default = "RmsPropConfig::default_lr")]
    pub lr: f64,
    /// Smoothing constant α of the squared-gradient average, in [0, 1) (0.99).
    #[serde(default = "RmsPropConfig::default_alpha")]
    pub alpha: f64,
    /// ε added to the root (1e-8).
    #[serde(default = "RmsPropConfig::default_eps")]
    pub eps: f64,
    /// Momentum μ in [0, 1); 0 updates with d / denom directly (0).
    #[serde(default)]
    pub momentum: f64,
    /// Coupled L2 weight decay λ (added to the gradient; 0).
    #[serde(default)]
    pub weight_decay: f64,
    /// Whether to normalise by the running variance v − ḡ² instead of v (false).
    #[serde(default)]
    pub centered: bool,
}

impl RmsPropConfig {
    fn default_lr() -> f64 {
        1e-2
    }
    fn default_alpha() -> f64 {
        0.99
    }
    fn default_eps() -> f64 {
        1e-8
    }

    /// Checks the settings; errors name the config key.
    pub fn validate(&self) -> Result<(), OptimError> {
        crate::check_positive("optimizer.lr", self.lr)?;
        crate::check_in_unit("optimizer.alpha", self.alpha)?;
        crate::check_positive("optimizer.eps", self.eps)?;
        crate::check_in_unit("optimizer.momentum", self.momentum)?;
        crate::check_non_negative("optimizer.weight_decay", self.weight_decay)
    }
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        Self {
            lr: Self::default_lr(),
            alpha: Self::default_alpha(),
            eps: Self::default_eps(),
            momentum: 0.0,
            weight_decay: 0.0,
            centered: false,
        }
    }
}

/// RMSProp (PyTorch's form). See the module documentation for the update rule.
#[derive(Debug, Clone)]
pub struct RmsProp {
    config: RmsPropConfig,
    /// Squared-gradient average v; `None` before the first update.
    square_avg: Option<ParamList>,
    /// Gradient average ḡ (centered only); `None` before the first update.
    grad_avg: Option<ParamList>,
    /// Momentum buffer (μ > 0 only); `None` before the first update.
    buf: Option<ParamList>,
}

impl RmsProp {
    /// An RMSProp optimizer with the given settings.
    pub fn new(config: &RmsPropConfig) -> Self {
        Self {
            config: config.clone(),
            square_avg: None,
            grad_avg: None,
            buf: None,
        }
    }
}

/// `α·avg + (1 − α)·x`, with avg = 0 when absent.
fn ema(avg: Option<ParamList>, x: Vec<Tensor<1>>, alpha: f64) -> ParamList {
    match avg {
        Some(avg) => crate::vector::scaled_add(avg, alpha, &x, 1.0 - alpha),
        None => x.into_iter().map(|x| x.mul_scalar(1.0 - alpha)).collect(),
    }
}

/// `α·avg + (1 − α)·d²` (the square average; `(1 − α)·d²` before the first step), one fused pass
/// per tensor on flex.
fn square_average(avg: Option<ParamList>, d: &[Tensor<1>], alpha: f64) -> ParamList {
    match avg {
        Some(avg) => avg
            .into_iter()
            .zip(d)
            .map(|(a, d)| steplab_kernels::square_ema(a, d, alpha))
            .collect(),
        None => d
            .iter()
            .map(|d| d.clone().square().mul_scalar(1.0 - alpha))
            .collect(),
    }
}

impl StepSizeOptimizer for RmsProp {
    fn kind(&self) -> &'static str {
        "rmsprop"
    }

    fn diagnostic_names(&self) -> &'static [&'static str] {
        &[]
    }

    fn step(&mut self, input: StepInput<'_>) -> StepOutput {
        let RmsPropConfig {
            lr,
            alpha,
            eps,
            momentum,
            weight_decay,
            centered,
        } = self.config;
        if !input.loss.is_finite() {
            return StepOutput::skipped(input.params, lr, 0);
        }
        let d = with_weight_decay(input.grads, &input.params, weight_decay);
        let square_avg = square_average(self.square_avg.take(), &d, alpha);
        if !centered && momentum == 0.0 {
            // θ − lr·d / (√v + ε) is Adam's fused step with m = d and c = 1 (exact).
            let params = crate::adam::apply(input.params, &d, &square_avg, lr, 1.0, eps);
            self.square_avg = Some(square_avg);
            return StepOutput::new(params, lr, Vec::new());
        }
        let second: ParamList = if centered {
            let grad_avg = ema(self.grad_avg.take(), d.clone(), alpha);
            let variance = square_avg
                .iter()
                .zip(&grad_avg)
                .map(|(v, m)| v.clone().sub(m.clone().square()).clamp_min(0.0))
                .collect();
            self.grad_avg = Some(grad_avg);
            variance
        } else {
            square_avg.clone()
        };
        let scaled: ParamList = d
            .into_iter()
            .zip(second)
            .map(|(d, v)| d.div(v.sqrt().add_scalar(eps)))
            .collect();
        self.square_avg = Some(square_avg);
        let direction = if momentum > 0.0 {
            let buf = match self.buf.take() {
                Some(buf) => crate::vector::scaled_add(buf, momentum, &scaled, 1.0),
                None => scaled,
            };
            self.buf = Some(buf.clone());
            buf
        } else {
            scaled
        };
        let params = crate::vector::scaled_add(input.params, 1.0, &direction, -lr);
        StepOutput::new(params, lr, Vec::new())
    }

    fn current_lr(&self) -> f64 {
        self.config.lr
    }

    fn base_lr(&self) -> Option<f64> {
        Some(self.config.lr)
    }

    fn set_base_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    fn state(&self) -> OptimizerState {
        let mut state = OptimizerState::new(self.kind());
        for (name, buffer) in [
            ("square_avg", &self.square_avg),
            ("grad_avg", &self.grad_avg),
            ("momentum", &self.buf),
        ] {
            if let Some(buffer) = buffer {
                state = state.with_buffer(name, buffer);
            }
        }
        state
    }

    fn load_state(
        &mut self,
        state: &OptimizerState,
        device: &Device,
        dtype: DType,
    ) -> Result<(), OptimError> {
        state.expect_kind(self.kind())?;
        let load = |name: &str| state.optional_buffer(name, device, dtype);
        let square_avg = load("square_avg")?;
        let grad_avg = load("grad_avg")?;
        let buf = load("momentum")?;
        if square_avg.is_some() && self.config.centered && grad_avg.is_none() {
            return Err(OptimError::StateMismatch(
                "centered RMSProp needs buffer `grad_avg`".to_string(),
            ));
        }
        self.square_avg = square_avg;
        self.grad_avg = grad_avg;
        self.buf = buf;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Quadratic, device, host, list, step_with, values};

    fn close(got: f64, want: f64, what: &str) {
        assert!(
            (got - want).abs() <= 1e-12 * want.abs().max(1e-300),
            "{what}: got {got}, want {want}"
        );
    }

    /// PyTorch's RMSprop written out on the host for one coordinate vector.
    fn host_run(cfg: &RmsPropConfig, q: &Quadratic, theta0: &[f64], steps: usize) -> Vec<Vec<f64>> {
        let n = theta0.len();
        let mut theta = theta0.to_vec();
        let (mut v, mut gbar, mut buf) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let mut out = Vec::new();
        for _ in 0..steps {
            let g = q.grad(&theta);
            for i in 0..n {
                let d = g[i] + cfg.weight_decay * theta[i];
                v[i] = cfg.alpha * v[i] + (1.0 - cfg.alpha) * d * d;
                let second = if cfg.centered {
                    gbar[i] = cfg.alpha * gbar[i] + (1.0 - cfg.alpha) * d;
                    v[i] - gbar[i] * gbar[i]
                } else {
                    v[i]
                };
                let step = d / (second.sqrt() + cfg.eps);
                if cfg.momentum > 0.0 {
                    buf[i] = cfg.momentum * buf[i] + step;
                    theta[i] -= cfg.lr * buf[i];
                } else {
                    theta[i] -= cfg.lr * step;
                }
            }
            out.push(theta.clone());
        }
        out
    }

    #[test]
    fn rmsprop_matches_the_pytorch_recursion_plain_momentum_and_centered() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 100.0, 0.01]);
        let theta0 = [1.0, -0.3, 2.0];
        for (momentum, centered, weight_decay) in [
            (0.0, false, 0.0),
            (0.9, false, 0.0),
            (0.0, true, 0.0),
            (0.5, true, 0.01),
            (0.0, false, 0.1),
        ] {
            let cfg = RmsPropConfig {
                lr: 0.01,
                alpha: 0.9,
                momentum,
                centered,
                weight_decay,
                ..RmsPropConfig::default()
            };
            let expected = host_run(&cfg, &q, &theta0, 6);
            let mut opt = RmsProp::new(&cfg);
            let mut params = list(&[&theta0], &d);
            for (t, want) in expected.iter().enumerate() {
                let out = step_with(&mut opt, &q, &params);
                assert_eq!(out.lr, 0.01);
                for (i, (got, want)) in values(&out.params)[0].iter().zip(want).enumerate() {
                    close(*got, *want, &format!("{cfg:?} t={} θ{i}", t + 1));
                }
                params = out.params;
            }
        }
    }

    #[test]
    fn rmsprop_first_step_is_lr_times_sign_over_root_one_minus_alpha() {
        // t = 1: v = (1 − α)·g², so the step is lr·g/(√(1 − α)·|g| + ε): 10·lr·sign(g) for
        // α = 0.99 when |g| ≫ ε. Centered: v − ḡ² = α(1 − α)·g².
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 1.0]);
        let theta = [3.0, -0.5];
        let mut plain = RmsProp::new(&RmsPropConfig::default());
        let got = values(&step_with(&mut plain, &q, &list(&[&theta], &d)).params)[0].clone();
        for i in 0..2 {
            let g: f64 = theta[i];
            let step = 0.01 * g / (0.01_f64.sqrt() * g.abs() + 1e-8);
            close(got[i], theta[i] - step, "plain");
        }
        let mut centered = RmsProp::new(&RmsPropConfig {
            centered: true,
            ..RmsPropConfig::default()
        });
        let got = values(&step_with(&mut centered, &q, &list(&[&theta], &d)).params)[0].clone();
        for i in 0..2 {
            let g: f64 = theta[i];
            let step = 0.01 * g / ((0.99_f64 * 0.01).sqrt() * g.abs() + 1e-8);
            close(got[i], theta[i] - step, "centered");
        }
    }

    #[test]
    fn rmsprop_zero_gradient_gives_no_nan_even_with_a_negative_centered_variance() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 1.0]);
        for centered in [false, true] {
            let cfg = RmsPropConfig {
                centered,
                momentum: 0.9,
                ..RmsPropConfig::default()
            };
            let mut opt = RmsProp::new(&cfg);
            let out = step_with(&mut opt, &q, &list(&[&[0.0, 0.0]], &d));
            assert_eq!(values(&out.params), vec![vec![0.0, 0.0]]);
        }
        // A state with v < ḡ² (what rounding could produce): the clamp keeps the root at 0.
        let cfg = RmsPropConfig {
            centered: true,
            alpha: 0.5,
            ..RmsPropConfig::default()
        };
        let mut opt = RmsProp::new(&cfg);
        let state = OptimizerState::new("rmsprop")
            .with_buffer("square_avg", &list(&[&[0.0, 0.0]], &d))
            .with_buffer("grad_avg", &list(&[&[1.0, -1.0]], &d));
        opt.load_state(&state, &d, DType::F64).unwrap();
        let out = step_with(&mut opt, &q, &list(&[&[0.0, 0.0]], &d));
        assert_eq!(values(&out.params), vec![vec![0.0, 0.0]]);
    }

    #[test]
    fn rmsprop_non_finite_loss_leaves_weights_and_state_alone() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 1.0]);
        let mut opt = RmsProp::new(&RmsPropConfig {
            momentum: 0.9,
            centered: true,
            ..RmsPropConfig::default()
        });
        step_with(&mut opt, &q, &list(&[&[1.0, 2.0]], &d));
        let before = opt.state();
        let mut probe = q.clone();
        let out = opt.step(StepInput {
            params: list(&[&[1.0, 2.0]], &d),
            loss: f64::INFINITY,
            grads: list(&[&[f64::NAN, 1.0]], &d),
            probe: &mut probe,
            holdout: None,
        });
        assert_eq!(values(&out.params), vec![vec![1.0, 2.0]]);
        assert_eq!(host(&opt.state()), host(&before));
    }

    #[test]
    fn rmsprop_state_round_trips_and_the_base_lr_is_schedulable() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        let cfg = RmsPropConfig {
            momentum: 0.9,
            centered: true,
            ..RmsPropConfig::default()
        };
        let mut opt = RmsProp::new(&cfg);
        let mut params = list(&[&[1.0, -0.5]], &d);
        for _ in 0..3 {
            params = step_with(&mut opt, &q, &params).params;
        }
        let state = opt.state();
        assert_eq!(state.buffers.len(), 3);
        let mut restored = RmsProp::new(&cfg);
        restored.load_state(&state, &d, DType::F64).unwrap();
        assert_eq!(host(&restored.state()), host(&state));
        opt.set_base_lr(0.001);
        restored.set_base_lr(0.001);
        assert_eq!(restored.base_lr(), Some(0.001));
        let a = step_with(&mut opt, &q, &params);
        let b = step_with(&mut restored, &q, &params);
        assert_eq!(values(&a.params), values(&b.params));
        assert_eq!(a.lr, 0.001);
        let mut partial = OptimizerState::new("rmsprop");
        partial.buffers.insert(
            "square_avg".to_string(),
            state.buffers["square_avg"].clone(),
        );
        assert!(
            RmsProp::new(&cfg)
                .load_state(&partial, &d, DType::F64)
                .is_err()
        );
    }

    #[test]
    fn rmsprop_config_defaults_and_validation_name_keys() {
        let cfg: RmsPropConfig = toml::from_str("centered = true").unwrap();
        assert_eq!(
            cfg,
            RmsPropConfig {
                centered: true,
                ..RmsPropConfig::default()
            }
        );
        assert_eq!(cfg.alpha, 0.99);
        assert!(toml::from_str::<RmsPropConfig>("beta1 = 0.9").is_err());
        for (cfg, key) in [
            (
                RmsPropConfig {
                    lr: 0.0,
                    ..RmsPropConfig::default()
                },
                "optimizer.lr",
            ),
            (
                RmsPropConfig {
                    alpha: 1.0,
                    ..RmsPropConfig::default()
                },
                "optimizer.alpha",
            ),
            (
                RmsPropConfig {
                    eps: 0.0,
                    ..RmsPropConfig::default()
                },
                "optimizer.eps",
            ),
            (
                RmsPropConfig {
                    momentum: -0.1,
                    ..RmsPropConfig::default()
                },
                "optimizer.momentum",
            ),
            (
                RmsPropConfig {
                    weight_decay: f64::INFINITY,
                    ..RmsPropConfig::default()
                },
                "optimizer.weight_decay",
            ),
        ] {
            let err = cfg.validate().unwrap_err();
            assert!(err.to_string().contains(key), "{err} should name {key}");
        }
        assert!(RmsPropConfig::default().validate().is_ok());
    }
}
