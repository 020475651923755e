//! Stochastic gradient descent, with optional heavy-ball momentum and coupled weight decay.
//!
//! PyTorch's `torch.optim.SGD` (dampening 0, no Nesterov): with d = g + λ·θ,
//!
//! ```text
//! momentum μ = 0:  θ ← θ − lr·d
//! momentum μ > 0:  buf ← μ·buf + d  (buf = 0 before the first step);  θ ← θ − lr·buf
//! ```
//!
//! Cost per step: 1 forward + 1 backward pass. The baseline of every paper here.

use burn::tensor::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::OptimError;
use crate::api::{OptimizerState, StepInput, StepOutput, StepSizeOptimizer};
use crate::vector::{self, ParamList};

/// Settings of [`Sgd`], as `[optimizer]` keys with `kind = "sgd"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgdConfig {
    /// Learning rate.
    #[serde(default = "SgdConfig::default_lr")]
    pub lr: f64,
    /// Heavy-ball momentum μ in [0, 1); 0 is plain SGD.
    #[serde(default)]
    pub momentum: f64,
    /// Coupled L2 weight decay λ (added to the gradient).
    #[serde(default)]
    pub weight_decay: f64,
}

impl SgdConfig {
    fn default_lr() -> f64 {
        0.01
    }

    /// Checks the settings; errors name the config key.
    pub fn validate(&self) -> Result<(), OptimError> {
        crate::check_positive("optimizer.lr", self.lr)?;
        crate::check_in_unit("optimizer.momentum", self.momentum)?;
        crate::check_non_negative("optimizer.weight_decay", self.weight_decay)
    }
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            lr: Self::default_lr(),
            momentum: 0.0,
            weight_decay: 0.0,
        }
    }
}

/// SGD with optional momentum. See the module documentation for the update rule.
#[derive(Debug, Clone)]
pub struct Sgd {
    config: SgdConfig,
    /// Momentum buffer; `None` before the first step or when μ = 0.
    buf: Option<ParamList>,
}

impl Sgd {
    /// An SGD optimizer with the given settings.
    pub fn new(config: &SgdConfig) -> Self {
        Self {
            config: config.clone(),
            buf: None,
        }
    }
}

/// `g + λ·θ` (the coupled weight decay of PyTorch's SGD and Adam); `g` itself when λ = 0.
pub(crate) fn with_weight_decay(
    grads: ParamList,
    params: &[burn::Tensor<1>],
    wd: f64,
) -> ParamList {
    if wd == 0.0 {
        grads
    } else {
        vector::add_scaled(&grads, params, wd)
    }
}

impl StepSizeOptimizer for Sgd {
    fn kind(&self) -> &'static str {
        "sgd"
    }

    fn diagnostic_names(&self) -> &'static [&'static str] {
        &[]
    }

    fn step(&mut self, input: StepInput<'_>) -> StepOutput {
        let SgdConfig {
            lr,
            momentum,
            weight_decay,
        } = self.config;
        let d = with_weight_decay(input.grads, &input.params, weight_decay);
        let direction = if momentum > 0.0 {
            let buf = match self.buf.take() {
                Some(buf) => vector::add_scaled_owned(d, buf, momentum),
                None => d,
            };
            self.buf = Some(buf.clone());
            buf
        } else {
            d
        };
        let params = vector::add_scaled_owned(input.params, direction, -lr);
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
        let state = OptimizerState::new(self.kind());
        match &self.buf {
            Some(buf) => state.with_buffer("momentum", buf),
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
        self.buf = state.optional_buffer("momentum", device, dtype)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Quadratic, device, list, step_with, values};

    #[test]
    fn sgd_steps_against_the_gradient() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 2.0]);
        let mut opt = Sgd::new(&SgdConfig {
            lr: 0.1,
            ..SgdConfig::default()
        });
        let out = step_with(&mut opt, &q, &list(&[&[1.0, 1.0]], &d));
        assert_eq!(values(&out.params), vec![vec![0.9, 0.8]]);
        assert_eq!(out.lr, 0.1);
    }

    #[test]
    fn momentum_sgd_matches_the_heavy_ball_recursion_with_coupled_decay() {
        // f = ½θ², g = θ; λ = 0.1 so d = 1.1·θ. Hand-derived from buf ← μ·buf + d, θ ← θ − lr·buf.
        let d = device();
        let q = Quadratic::diagonal(vec![1.0]);
        let cfg = SgdConfig {
            lr: 0.5,
            momentum: 0.9,
            weight_decay: 0.1,
        };
        let mut opt = Sgd::new(&cfg);
        let mut theta = 1.0_f64;
        let mut buf = 0.0_f64;
        let mut params = list(&[&[theta]], &d);
        for _ in 0..5 {
            params = step_with(&mut opt, &q, &params).params;
            buf = 0.9 * buf + 1.1 * theta;
            theta -= 0.5 * buf;
            assert!((values(&params)[0][0] - theta).abs() < 1e-15);
        }
        let state = opt.state();
        let mut restored = Sgd::new(&cfg);
        restored.load_state(&state, &d, DType::F64).unwrap();
        let a = step_with(&mut opt, &q, &params);
        let b = step_with(&mut restored, &q, &params);
        assert_eq!(values(&a.params), values(&b.params));
    }
}
