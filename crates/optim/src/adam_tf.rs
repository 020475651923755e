//! Adam in TensorFlow's form (`tf.compat.v1.train.AdamOptimizer`), the L4 paper's Adam baseline.
//!
//! Kingma & Ba 2015, Algorithm 1 with the reordering of its Sec. 2 ("the order of computation
//! could be changed ... by replacing the last three lines"), which is what TensorFlow computes:
//! with d = g + λ·θ (coupled L2 weight decay) and t from 1,
//!
//! ```text
//! lr_t = lr · √(1 − β2^t) / (1 − β1^t)
//! m ← β1·m + (1 − β1)·d;   v ← β2·v + (1 − β2)·d²
//! θ ← θ − lr_t · m / (√v + ε̂)
//! ```
//!
//! ε̂ is added to the *uncorrected* √v. This equals PyTorch's form ([`crate::Adam`]) with a
//! step-dependent ε = ε̂ / √(1 − β2^t): early on (t ≪ 1/(1 − β2)) ε̂ acts far larger than the
//! same number in PyTorch's form (×31.6 at t = 1 with β2 = 0.999).
//!
//! Defaults: lr 1e-3, β1 0.9, β2 0.999, ε̂ 1e-4, λ 0. The ε̂ = 1e-4 is the L4 paper's baseline
//! (Rolínek & Martius, Sec. 3: "selected in accordance with TensorFlow documentation to
//! decrease the instability of Adam"); TensorFlow's own default is 1e-8. The spec
//! (ALGORITHMS.md §4) reads that baseline as this form.
//!
//! Cost per step: 1 forward + 1 backward pass, no sync. The `lr` column logs the base rate `lr`
//! (schedulable); the `lr_t` diagnostic is the bias-corrected factor of this update. A non-finite
//! loss skips the update (weights and state unchanged); the gradient is not checked (no sync),
//! as in [`crate::Adam`].

use burn::tensor::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::OptimError;
use crate::api::{OptimizerState, StepInput, StepOutput, StepSizeOptimizer};
use crate::sgd::with_weight_decay;
use crate::vector::{self, ParamList};

/// Settings of [`AdamTf`], as `[optimizer]` keys with `kind = "adam_tf"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamTfConfig {
    /// Learning rate (TensorFlow's `learning_rate`; 1e-3).
    #[serde(default = "AdamTfConfig::default_lr")]
    pub lr: f64,
    /// First-moment decay β1 (0.9).
    #[serde(default = "AdamTfConfig::default_beta1")]
    pub beta1: f64,
    /// Second-moment decay β2 (0.999).
    #[serde(default = "AdamTfConfig::default_beta2")]
    pub beta2: f64,
    /// ε̂, added to the uncorrected √v (1e-4, the L4 paper's baseline; TensorFlow's default is
    /// 1e-8).
    #[serde(default = "AdamTfConfig::default_eps")]
    pub eps: f64,
    /// Coupled L2 weight decay λ (added to the gradient; 0).
    #[serde(default)]
    pub weight_decay: f64,
}

impl AdamTfConfig {
    fn default_lr() -> f64 {
        1e-3
    }
    fn default_beta1() -> f64 {
        0.9
    }
    fn default_beta2() -> f64 {
        0.999
    }
    fn default_eps() -> f64 {
        1e-4
    }

    /// Checks the settings; errors name the config key.
    pub fn validate(&self) -> Result<(), OptimError> {
        crate::check_positive("optimizer.lr", self.lr)?;
        crate::check_in_unit("optimizer.beta1", self.beta1)?;
        crate::check_in_unit("optimizer.beta2", self.beta2)?;
        crate::check_positive("optimizer.eps", self.eps)?;
        crate::check_non_negative("optimizer.weight_decay", self.weight_decay)
    }
}

impl Default for AdamTfConfig {
    fn default() -> Self {
        Self {
            lr: Self::default_lr(),
            beta1: Self::default_beta1(),
            beta2: Self::default_beta2(),
            eps: Self::default_eps(),
            weight_decay: 0.0,
        }
    }
}

/// Adam (TensorFlow's form). See the module documentation for the update rule.
#[derive(Debug, Clone)]
pub struct AdamTf {
    config: AdamTfConfig,
    /// Updates taken so far (t after the update).
    t: u64,
    /// First and second moment estimates (m, v); `None` before the first update.
    moments: Option<(ParamList, ParamList)>,
}

impl AdamTf {
    /// An Adam optimizer (TensorFlow's form) with the given settings.
    pub fn new(config: &AdamTfConfig) -> Self {
        Self {
            config: config.clone(),
            t: 0,
            moments: None,
        }
    }
}

impl StepSizeOptimizer for AdamTf {
    fn kind(&self) -> &'static str {
        "adam_tf"
    }

    fn diagnostic_names(&self) -> &'static [&'static str] {
        &["lr_t"]
    }

    fn step(&mut self, input: StepInput<'_>) -> StepOutput {
        let AdamTfConfig {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.config;
        if !input.loss.is_finite() {
            return StepOutput::skipped(input.params, lr, 1);
        }
        let d = with_weight_decay(input.grads, &input.params, weight_decay);
        self.t += 1;
        let t = i32::try_from(self.t).unwrap_or(i32::MAX);
        let (m, v) = match self.moments.take() {
            Some(state) => state,
            None => (vector::zeros_like(&d), vector::zeros_like(&d)),
        };
        let (m, v) = crate::adam::moments(m, v, &d, beta1, beta2);
        let lr_t = lr * (1.0 - beta2.powi(t)).sqrt() / (1.0 - beta1.powi(t));
        // θ − lr_t·m / (√v + ε): Adam's fused step with c = 1 (a division by 1 is exact).
        let params = crate::adam::apply(input.params, &m, &v, lr_t, 1.0, eps);
        self.moments = Some((m, v));
        StepOutput::new(params, lr, vec![lr_t])
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
        let state = OptimizerState::new(self.kind()).with_scalar("t", self.t as f64);
        match &self.moments {
            Some((m, v)) => state.with_buffer("m", m).with_buffer("v", v),
            None => state,
        }
    }

    fn load_state(
        &mut self,
        state: &OptimizerState,
        device: &Device,
        dtype: DType,
    ) -> Result<(), OptimError> {
        state.expect_kind(self.kind())?;
        let t = state.step_counter("t")?;
        self.moments = match state.optional_buffer("m", device, dtype)? {
            Some(m) => Some((m, state.buffer("v", device, dtype)?)),
            None => None,
        };
        self.t = t;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adam::{Adam, AdamConfig};
    use crate::testing::{Quadratic, device, host, list, step_with, values};

    fn close(got: f64, want: f64, what: &str) {
        assert!(
            (got - want).abs() <= 1e-12 * want.abs().max(1e-300),
            "{what}: got {got}, want {want}"
        );
    }

    #[test]
    fn adam_tf_matches_the_tensorflow_recursion_on_a_quadratic() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 100.0]);
        let cfg = AdamTfConfig {
            lr: 0.1,
            weight_decay: 0.01,
            ..AdamTfConfig::default()
        };
        let mut opt = AdamTf::new(&cfg);
        let mut theta = [1.0_f64, -1.0];
        let (mut m, mut v) = ([0.0_f64; 2], [0.0_f64; 2]);
        let mut params = list(&[&theta], &d);
        for t in 1..=5 {
            let out = step_with(&mut opt, &q, &params);
            let g = q.grad(&theta);
            let lr_t = 0.1 * (1.0 - 0.999_f64.powi(t)).sqrt() / (1.0 - 0.9_f64.powi(t));
            for i in 0..2 {
                let di = g[i] + 0.01 * theta[i];
                m[i] = 0.9 * m[i] + 0.1 * di;
                v[i] = 0.999 * v[i] + 0.001 * di * di;
                theta[i] -= lr_t * m[i] / (v[i].sqrt() + 1e-4);
            }
            assert_eq!(out.lr, 0.1);
            close(out.diagnostics[0], lr_t, "lr_t");
            let got = values(&out.params)[0].clone();
            for i in 0..2 {
                close(got[i], theta[i], &format!("t={t} θ{i}"));
            }
            params = out.params;
        }
    }

    #[test]
    fn adam_tf_first_step_has_epsilon_scaled_by_one_over_root_one_minus_beta2() {
        // t = 1: m = 0.1·g, v = 0.001·g², so the step is lr·g / (|g| + ε̂/√0.001), where
        // PyTorch's form takes lr·g / (|g| + ε̂).
        let d = device();
        let q = Quadratic::diagonal(vec![1.0]);
        let (lr, eps, g) = (0.01, 1e-4, 1e-3);
        let mut tf = AdamTf::new(&AdamTfConfig {
            lr,
            ..AdamTfConfig::default()
        });
        let mut pt = Adam::new(&AdamConfig {
            lr,
            eps,
            ..AdamConfig::default()
        });
        let theta = [g];
        let a = values(&step_with(&mut tf, &q, &list(&[&theta], &d)).params)[0][0];
        let b = values(&step_with(&mut pt, &q, &list(&[&theta], &d)).params)[0][0];
        close(
            g - a,
            lr * g / (g + eps / 0.001_f64.sqrt()),
            "TensorFlow step",
        );
        close(g - b, lr * g / (g + eps), "PyTorch step");
        assert!(
            (g - b) / (g - a) > 2.0,
            "the two forms differ at this scale"
        );
    }

    #[test]
    fn adam_tf_equals_pytorch_adam_with_a_step_dependent_epsilon() {
        // Same state, same step: TensorFlow's ε̂ equals PyTorch's ε = ε̂/√(1 − β2^t).
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 100.0, 0.01]);
        let eps_hat = 1e-4;
        let mut tf = AdamTf::new(&AdamTfConfig {
            lr: 0.05,
            weight_decay: 0.1,
            ..AdamTfConfig::default()
        });
        let mut params = list(&[&[1e-3, -2e-4, 0.5]], &d);
        for t in 1..=6 {
            let mut state = tf.state();
            state.kind = "adam".to_string();
            let mut pt = Adam::new(&AdamConfig {
                lr: 0.05,
                weight_decay: 0.1,
                eps: eps_hat / (1.0 - 0.999_f64.powi(t)).sqrt(),
                ..AdamConfig::default()
            });
            if t > 1 {
                pt.load_state(&state, &d, DType::F64).unwrap();
            }
            let a = step_with(&mut tf, &q, &params).params;
            let b = step_with(&mut pt, &q, &params).params;
            for (x, y) in values(&a)[0].iter().zip(&values(&b)[0]) {
                close(*x, *y, &format!("t={t}"));
            }
            params = a;
        }
    }

    #[test]
    fn adam_tf_zero_gradient_and_non_finite_loss_leave_weights_and_state_alone() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 1.0]);
        let mut opt = AdamTf::new(&AdamTfConfig::default());
        let out = step_with(&mut opt, &q, &list(&[&[0.0, 0.0]], &d));
        assert_eq!(values(&out.params), vec![vec![0.0, 0.0]]);
        step_with(&mut opt, &q, &list(&[&[1.0, 2.0]], &d));
        let before = opt.state();
        let mut probe = q.clone();
        let out = opt.step(StepInput {
            params: list(&[&[1.0, 2.0]], &d),
            loss: f64::NAN,
            grads: list(&[&[f64::NAN, 1.0]], &d),
            probe: &mut probe,
            holdout: None,
        });
        assert_eq!(values(&out.params), vec![vec![1.0, 2.0]]);
        assert!(out.diagnostics[0].is_nan());
        assert_eq!(host(&opt.state()), host(&before));
    }

    #[test]
    fn adam_tf_state_round_trips_and_the_base_lr_is_schedulable() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        let cfg = AdamTfConfig::default();
        let mut opt = AdamTf::new(&cfg);
        let mut params = list(&[&[1.0, -0.5]], &d);
        for _ in 0..3 {
            params = step_with(&mut opt, &q, &params).params;
        }
        let mut restored = AdamTf::new(&cfg);
        restored.load_state(&opt.state(), &d, DType::F64).unwrap();
        assert_eq!(host(&restored.state()), host(&opt.state()));
        opt.set_base_lr(0.5);
        restored.set_base_lr(0.5);
        assert_eq!(opt.base_lr(), Some(0.5));
        let a = step_with(&mut opt, &q, &params);
        let b = step_with(&mut restored, &q, &params);
        assert_eq!(values(&a.params), values(&b.params));
        assert_eq!(a.lr, 0.5);
        close(
            a.diagnostics[0],
            0.5 * (1.0 - 0.999_f64.powi(4)).sqrt() / (1.0 - 0.9_f64.powi(4)),
            "lr_t",
        );
        let err = restored
            .load_state(&OptimizerState::new("adam"), &d, DType::F64)
            .unwrap_err();
        assert!(err.to_string().contains("adam_tf"), "{err}");
    }

    #[test]
    fn adam_tf_config_defaults_and_validation_name_keys() {
        let cfg: AdamTfConfig = toml::from_str("lr = 0.002").unwrap();
        assert_eq!(cfg.eps, 1e-4);
        assert_eq!(cfg.beta2, 0.999);
        assert!(toml::from_str::<AdamTfConfig>("momentum = 0.9").is_err());
        for (cfg, key) in [
            (
                AdamTfConfig {
                    lr: -1.0,
                    ..AdamTfConfig::default()
                },
                "optimizer.lr",
            ),
            (
                AdamTfConfig {
                    beta1: 1.0,
                    ..AdamTfConfig::default()
                },
                "optimizer.beta1",
            ),
            (
                AdamTfConfig {
                    beta2: -0.1,
                    ..AdamTfConfig::default()
                },
                "optimizer.beta2",
            ),
            (
                AdamTfConfig {
                    eps: 0.0,
                    ..AdamTfConfig::default()
                },
                "optimizer.eps",
            ),
            (
                AdamTfConfig {
                    weight_decay: -1.0,
                    ..AdamTfConfig::default()
                },
                "optimizer.weight_decay",
            ),
        ] {
            let err = cfg.validate().unwrap_err();
            assert!(err.to_string().contains(key), "{err} should name {key}");
        }
        assert!(AdamTfConfig::default().validate().is_ok());
    }
}
