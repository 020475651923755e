//! Adam in PyTorch's form (`torch.optim.Adam`, coupled L2 weight decay, no AMSGrad).
//!
//! Kingma & Ba 2015, Algorithm 1, as PyTorch computes it: with d = g + λ·θ and t from 1,
//!
//! ```text
//! m ← β1·m + (1 − β1)·d;   v ← β2·v + (1 − β2)·d²
//! θ ← θ − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
//! ```
//!
//! Cost per step: 1 forward + 1 backward pass. The `lr` column logs the base rate `lr`.

use burn::tensor::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::OptimError;
use crate::api::{OptimizerState, StepInput, StepOutput, StepSizeOptimizer};
use crate::sgd::with_weight_decay;
use crate::vector::ParamList;

/// Settings of [`Adam`], as `[optimizer]` keys with `kind = "adam"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamConfig {
    /// Learning rate α.
    #[serde(default = "AdamConfig::default_lr")]
    pub lr: f64,
    /// First-moment decay β1.
    #[serde(default = "AdamConfig::default_beta1")]
    pub beta1: f64,
    /// Second-moment decay β2.
    #[serde(default = "AdamConfig::default_beta2")]
    pub beta2: f64,
    /// ε added to the bias-corrected √v.
    #[serde(default = "AdamConfig::default_eps")]
    pub eps: f64,
    /// Coupled L2 weight decay λ (added to the gradient).
    #[serde(default)]
    pub weight_decay: f64,
}

impl AdamConfig {
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
        1e-8
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

impl Default for AdamConfig {
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

/// Adam (PyTorch's form). See the module documentation for the update rule.
#[derive(Debug, Clone)]
pub struct Adam {
    config: AdamConfig,
    /// Steps taken so far (t after the update).
    t: u64,
    /// First and second moment estimates (m, v); `None` before the first step.
    moments: Option<(ParamList, ParamList)>,
}

impl Adam {
    /// An Adam optimizer with the given settings.
    pub fn new(config: &AdamConfig) -> Self {
        Self {
            config: config.clone(),
            t: 0,
            moments: None,
        }
    }
}

/// Adam's moment updates `m ← β1·m + (1 − β1)·d`, `v ← β2·v + (1 − β2)·d²`, tensor by tensor
/// (one fused pass on flex, into the moments' own buffers: steplab-kernels' `adam_moments`).
/// Shared by every method built on Adam's moments.
pub(crate) fn moments(
    m: ParamList,
    v: ParamList,
    d: &[Tensor<1>],
    beta1: f64,
    beta2: f64,
) -> (ParamList, ParamList) {
    m.into_iter()
        .zip(v)
        .zip(d)
        .map(|((m, v), d)| steplab_kernels::adam_moments(m, v, d, beta1, beta2))
        .unzip()
}

/// Adam's update `θ − s·m / (√v / c + ε)`, tensor by tensor, with the bias-corrected step size
/// `s = lr / (1 − β1^t)` and `c = √(1 − β2^t)` (one fused pass on flex, into θ's buffers).
pub(crate) fn apply(
    params: ParamList,
    m: &[Tensor<1>],
    v: &[Tensor<1>],
    step_size: f64,
    bc2_sqrt: f64,
    eps: f64,
) -> ParamList {
    params
        .into_iter()
        .zip(m.iter().zip(v))
        .map(|(p, (m, v))| steplab_kernels::adam_step(p, m, v, step_size, bc2_sqrt, eps))
        .collect()
}

impl StepSizeOptimizer for Adam {
    fn kind(&self) -> &'static str {
        "adam"
    }

    fn diagnostic_names(&self) -> &'static [&'static str] {
        &[]
    }

    fn step(&mut self, input: StepInput<'_>) -> StepOutput {
        let AdamConfig {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.config;
        let d = with_weight_decay(input.grads, &input.params, weight_decay);
        self.t += 1;
        let t = self.t as i32;
        let (m, v) = match self.moments.take() {
            Some(state) => state,
            None => (crate::vector::zeros_like(&d), crate::vector::zeros_like(&d)),
        };
        let (m, v) = moments(m, v, &d, beta1, beta2);
        let step_size = lr / (1.0 - beta1.powi(t));
        let bc2_sqrt = (1.0 - beta2.powi(t)).sqrt();
        let params = apply(input.params, &m, &v, step_size, bc2_sqrt, eps);
        self.moments = Some((m, v));
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
    use crate::testing::{Quadratic, device, list, step_with, values};

    #[test]
    fn adam_matches_pytorch_recursion_on_a_quadratic() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 100.0]);
        let cfg = AdamConfig {
            lr: 0.1,
            weight_decay: 0.01,
            ..AdamConfig::default()
        };
        let mut opt = Adam::new(&cfg);
        let mut theta = [1.0_f64, -1.0];
        let (mut m, mut v) = ([0.0_f64; 2], [0.0_f64; 2]);
        let mut params = list(&[&theta], &d);
        for t in 1..=4 {
            params = step_with(&mut opt, &q, &params).params;
            let g = q.grad(&theta);
            for i in 0..2 {
                let di = g[i] + 0.01 * theta[i];
                m[i] = 0.9 * m[i] + 0.1 * di;
                v[i] = 0.999 * v[i] + 0.001 * di * di;
                let denom = v[i].sqrt() / (1.0 - 0.999_f64.powi(t)).sqrt() + 1e-8;
                theta[i] -= 0.1 / (1.0 - 0.9_f64.powi(t)) * m[i] / denom;
            }
            let got = values(&params)[0].clone();
            for i in 0..2 {
                assert!(
                    (got[i] - theta[i]).abs() < 1e-14,
                    "t={t} i={i}: {} vs {}",
                    got[i],
                    theta[i]
                );
            }
        }
    }
}
