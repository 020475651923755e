//! L4: a step size recomputed every update from the loss, its linearization and an estimate of
//! the minimum attainable loss.
//!
//! Rolínek & Martius, "L4: Practical loss-based stepsize adaptation for deep learning", Eqs. 3-7
//! and Sec. 2.4. A base method proposes an update direction v; η is chosen so that the linearized
//! loss would fall by a fraction α of the way to γ·Lmin. With t counted from 1:
//!
//! ```text
//! state: t = 0, Lmin, m = 0, s = 0
//! step(L, g):                       # L = the full loss minimised (including any L2 term)
//!   L not finite → skip: weights and every state value (t included) unchanged, `skipped` = 1
//!   t ← t + 1
//!   Lmin ← (t = 1) ? γ0·L : min(Lmin, L)                        (Sec. 2.4)
//!   l4mom, l4adam:  m ← β1·m + (1 − β1)·g;  m̂ = m / (1 − β1^t);  ĝ = m̂   (Eq. 7, τ_m = 10)
//!     l4mom : v = m̂                                              (Eq. 7, V_Mom)
//!     l4adam: s ← β2·s + (1 − β2)·g²;  ŝ = s / (1 − β2^t)          (Eq. 7, τ_s = 1000)
//!             v = m̂ / (√ŝ + ε_adam)                              (ε_adam: the authors' code)
//!   l4sgd :         ĝ = g,  v = g                                 (Eq. 3 with v = ∇L, Sec. 2.2)
//!   η = α·(L − γ·Lmin) / (⟨ĝ, v⟩ + ε)                             (Eq. 6)
//!   ⟨ĝ, v⟩ or η not finite → skip as above
//!   θ ← θ − η·v
//!   Lmin ← (1 + 1/τ)·Lmin                                         (Eq. 5, after use)
//! ```
//!
//! Defaults (Sec. 2.4, 2.5): α = 0.15 (the paper's starred runs use 0.25), γ = 0.9, γ0 = 0.75,
//! τ = 1000, ε = 1e-12, β1 = 0.9 and β2 = 0.999 (the timescales τ_m = 10 and τ_s = 1000 of
//! Eq. 7), ε_adam = 1e-4.
//!
//! Cost per step: 1 forward + 1 backward pass, plus one whole-model inner product (one sync).
//!
//! # Keys
//! - `lr` is α, the fraction of the predicted loss decrease taken per step: CLI.md makes `lr` the
//!   initial step size of every optimizer, and α is the only step-size setting L4 has (η itself is
//!   recomputed every update, so there is no separate `alpha` key). L4 is not schedulable.
//! - The `lr` column of `steps.csv` is the η of that update (NaN for a skipped update);
//!   [`current_lr`](StepSizeOptimizer::current_lr) is the last η applied (NaN before any).
//! - Diagnostics: `l_min` (the Lmin used in η, before the forgetting), `m_dot_v` (⟨ĝ, v⟩, the
//!   denominator's inner product), `skipped` (1 when the update was skipped, else 0).
//!
//! # Where this differs from the paper or its code
//! - ε_adam = 1e-4 is added to √ŝ (outside the root), as the authors' `AdamTransform` does;
//!   Eq. 7 has no ε.
//! - `l4sgd` ("L4 on plain SGD", which the LossGrad paper reports as extremely unstable) uses the
//!   raw gradient for both g and v, so η = α(L − γLmin)/(‖g‖² + ε): the paper's Eq. 3 with
//!   v = ∇L. The authors' code offers no such variant; pairing v = g with the momentum estimate m̂
//!   instead would break the paper's requirement gᵀv ≥ 0 (Sec. 2.4).
//! - Skipping non-finite updates is this project's choice (the authors' code has no guard). A
//!   non-finite ‖s‖ is not checked separately (that would cost a sync): it can only arise when a
//!   squared gradient entry overflows the float type while the gradient itself stays finite.
//! - The paper assumes L ≥ 0. For L ≥ 0, L ≥ Lmin after the min update and γ < 1, so
//!   L − γ·Lmin ≥ 0 and (for l4mom/l4adam, where ⟨ĝ, v⟩ ≥ 0) η ≥ 0. For a negative loss the
//!   formula is followed as written and η may be negative (an ascent step); L = 0 gives η = 0.
//! - With a zero gradient, η = α(L − γLmin)/ε is huge but v = 0, so the weights stay unchanged.

use burn::tensor::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::api::{OptimizerState, StepInput, StepOutput, StepSizeOptimizer};
use crate::{OptimError, vector};
use vector::ParamList;

fn default_alpha() -> f64 {
    0.15
}
fn default_gamma() -> f64 {
    0.9
}
fn default_gamma0() -> f64 {
    0.75
}
fn default_tau() -> f64 {
    1000.0
}
fn default_eps() -> f64 {
    1e-12
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_adam_eps() -> f64 {
    1e-4
}

/// Checks the keys every L4 variant has; errors name the key.
fn validate_common(lr: f64, gamma: f64, gamma0: f64, tau: f64, eps: f64) -> Result<(), OptimError> {
    crate::check_positive("optimizer.lr", lr)?;
    check_closed_unit("optimizer.gamma", gamma)?;
    check_closed_unit("optimizer.gamma0", gamma0)?;
    crate::check_positive("optimizer.tau", tau)?;
    crate::check_positive("optimizer.eps", eps)
}

/// `value` in [0, 1].
fn check_closed_unit(key: &str, value: f64) -> Result<(), OptimError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(OptimError::invalid(
            key,
            format!("must be in [0, 1], got {value}"),
        ))
    }
}

/// Settings of L4Mom ([`L4`] with v = m̂), as `[optimizer]` keys with `kind = "l4mom"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L4MomConfig {
    /// α, the fraction of the step to the linearized loss's target taken per update (Eq. 3;
    /// paper default 0.15, 0.25 in its starred runs). `lr` because it is L4's step-size setting.
    #[serde(default = "default_alpha")]
    pub lr: f64,
    /// γ, the fraction of the lowest seen loss believed achievable (Eq. 6; 0.9).
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    /// γ0, Lmin = γ0·L at the first update (Sec. 2.4; 0.75).
    #[serde(default = "default_gamma0")]
    pub gamma0: f64,
    /// τ, the timescale of Lmin's growth (Eq. 5; 1000 steps).
    #[serde(default = "default_tau")]
    pub tau: f64,
    /// ε, the guard added to ⟨ĝ, v⟩ (Eq. 6; 1e-12).
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// β1, the decay of the gradient average m (Eq. 7's τ_m = 10 ⇒ 0.9).
    #[serde(default = "default_beta1")]
    pub beta1: f64,
}

impl L4MomConfig {
    /// Checks the settings; errors name the config key.
    pub fn validate(&self) -> Result<(), OptimError> {
        validate_common(self.lr, self.gamma, self.gamma0, self.tau, self.eps)?;
        crate::check_in_unit("optimizer.beta1", self.beta1)
    }
}

impl Default for L4MomConfig {
    fn default() -> Self {
        Self {
            lr: default_alpha(),
            gamma: default_gamma(),
            gamma0: default_gamma0(),
            tau: default_tau(),
            eps: default_eps(),
            beta1: default_beta1(),
        }
    }
}

/// Settings of L4Adam ([`L4`] with v = m̂/(√ŝ + ε_adam)), as `[optimizer]` keys with
/// `kind = "l4adam"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L4AdamConfig {
    /// α, the fraction of the step to the linearized loss's target taken per update (Eq. 3;
    /// paper default 0.15, 0.25 in its starred runs). `lr` because it is L4's step-size setting.
    #[serde(default = "default_alpha")]
    pub lr: f64,
    /// γ, the fraction of the lowest seen loss believed achievable (Eq. 6; 0.9).
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    /// γ0, Lmin = γ0·L at the first update (Sec. 2.4; 0.75).
    #[serde(default = "default_gamma0")]
    pub gamma0: f64,
    /// τ, the timescale of Lmin's growth (Eq. 5; 1000 steps).
    #[serde(default = "default_tau")]
    pub tau: f64,
    /// ε, the guard added to ⟨ĝ, v⟩ (Eq. 6; 1e-12).
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// β1, the decay of the gradient average m (Eq. 7's τ_m = 10 ⇒ 0.9).
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    /// β2, the decay of the squared-gradient average s (Eq. 7's τ_s = 1000 ⇒ 0.999).
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    /// ε_adam, added to √ŝ outside the root (the authors' `AdamTransform`; 1e-4).
    #[serde(default = "default_adam_eps")]
    pub adam_eps: f64,
}

impl L4AdamConfig {
    /// Checks the settings; errors name the config key.
    pub fn validate(&self) -> Result<(), OptimError> {
        validate_common(self.lr, self.gamma, self.gamma0, self.tau, self.eps)?;
        crate::check_in_unit("optimizer.beta1", self.beta1)?;
        crate::check_in_unit("optimizer.beta2", self.beta2)?;
        crate::check_positive("optimizer.adam_eps", self.adam_eps)
    }
}

impl Default for L4AdamConfig {
    fn default() -> Self {
        Self {
            lr: default_alpha(),
            gamma: default_gamma(),
            gamma0: default_gamma0(),
            tau: default_tau(),
            eps: default_eps(),
            beta1: default_beta1(),
            beta2: default_beta2(),
            adam_eps: default_adam_eps(),
        }
    }
}

/// Settings of L4 on plain SGD ([`L4`] with g = v = ∇L), as `[optimizer]` keys with
/// `kind = "l4sgd"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L4SgdConfig {
    /// α, the fraction of the step to the linearized loss's target taken per update (Eq. 3;
    /// paper default 0.15). `lr` because it is L4's step-size setting.
    #[serde(default = "default_alpha")]
    pub lr: f64,
    /// γ, the fraction of the lowest seen loss believed achievable (Eq. 6; 0.9).
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    /// γ0, Lmin = γ0·L at the first update (Sec. 2.4; 0.75).
    #[serde(default = "default_gamma0")]
    pub gamma0: f64,
    /// τ, the timescale of Lmin's growth (Eq. 5; 1000 steps).
    #[serde(default = "default_tau")]
    pub tau: f64,
    /// ε, the guard added to ‖g‖² (Eq. 6; 1e-12).
    #[serde(default = "default_eps")]
    pub eps: f64,
}

impl L4SgdConfig {
    /// Checks the settings; errors name the config key.
    pub fn validate(&self) -> Result<(), OptimError> {
        validate_common(self.lr, self.gamma, self.gamma0, self.tau, self.eps)
    }
}

impl Default for L4SgdConfig {
    fn default() -> Self {
        Self {
            lr: default_alpha(),
            gamma: default_gamma(),
            gamma0: default_gamma0(),
            tau: default_tau(),
            eps: default_eps(),
        }
    }
}

/// The base method that proposes L4's direction v (and the gradient estimate ĝ).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum L4Direction {
    /// L4Mom: ĝ = v = m̂, the bias-corrected gradient average with decay `beta1`.
    Momentum {
        /// β1, the decay of m.
        beta1: f64,
    },
    /// L4Adam: ĝ = m̂, v = m̂ / (√ŝ + `adam_eps`).
    Adam {
        /// β1, the decay of m.
        beta1: f64,
        /// β2, the decay of s.
        beta2: f64,
        /// ε_adam, added outside the root.
        adam_eps: f64,
    },
    /// L4 on plain SGD: ĝ = v = g.
    Gradient,
}

/// Resolved settings of any L4 variant; built from [`L4MomConfig`], [`L4AdamConfig`] or
/// [`L4SgdConfig`] with `From`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct L4Settings {
    /// The variant's direction.
    pub direction: L4Direction,
    /// α (the `lr` key).
    pub alpha: f64,
    /// γ.
    pub gamma: f64,
    /// γ0.
    pub gamma0: f64,
    /// τ.
    pub tau: f64,
    /// ε of Eq. 6.
    pub eps: f64,
}

impl From<&L4MomConfig> for L4Settings {
    fn from(c: &L4MomConfig) -> Self {
        Self {
            direction: L4Direction::Momentum { beta1: c.beta1 },
            alpha: c.lr,
            gamma: c.gamma,
            gamma0: c.gamma0,
            tau: c.tau,
            eps: c.eps,
        }
    }
}

impl From<&L4AdamConfig> for L4Settings {
    fn from(c: &L4AdamConfig) -> Self {
        Self {
            direction: L4Direction::Adam {
                beta1: c.beta1,
                beta2: c.beta2,
                adam_eps: c.adam_eps,
            },
            alpha: c.lr,
            gamma: c.gamma,
            gamma0: c.gamma0,
            tau: c.tau,
            eps: c.eps,
        }
    }
}

impl From<&L4SgdConfig> for L4Settings {
    fn from(c: &L4SgdConfig) -> Self {
        Self {
            direction: L4Direction::Gradient,
            alpha: c.lr,
            gamma: c.gamma,
            gamma0: c.gamma0,
            tau: c.tau,
            eps: c.eps,
        }
    }
}

/// The L4 optimizer (`l4mom`, `l4adam` or `l4sgd`). See the module documentation for the rule.
#[derive(Debug, Clone)]
pub struct L4 {
    settings: L4Settings,
    /// Updates taken so far (skipped ones not counted).
    t: u64,
    /// Lmin after the last update's forgetting; meaningful once t ≥ 1.
    l_min: f64,
    /// Gradient average m (l4mom, l4adam); `None` before the first update and for l4sgd.
    m: Option<ParamList>,
    /// Squared-gradient average s (l4adam only); `None` before the first update.
    s: Option<ParamList>,
    /// The η of the last update taken; NaN before any.
    eta: f64,
}

/// Names of [`L4`]'s diagnostics, in order.
const DIAGNOSTICS: &[&str] = &["l_min", "m_dot_v", "skipped"];

impl L4 {
    /// An L4 optimizer from any variant's config (`L4::new(&L4MomConfig::default())`, ...).
    pub fn new(config: impl Into<L4Settings>) -> Self {
        Self {
            settings: config.into(),
            t: 0,
            l_min: f64::NAN,
            m: None,
            s: None,
            eta: f64::NAN,
        }
    }

    /// A skipped update: weights and state unchanged.
    fn skip(params: ParamList, l_min: f64, m_dot_v: f64) -> StepOutput {
        StepOutput::new(params, f64::NAN, vec![l_min, m_dot_v, 1.0])
    }
}

/// `beta^t` for a step counter.
fn power(beta: f64, t: u64) -> f64 {
    beta.powi(i32::try_from(t).unwrap_or(i32::MAX))
}

/// `β·avg + (1 − β)·x`, or `(1 − β)·x` when there is no average yet (avg = 0).
fn ema(avg: Option<&ParamList>, x: &[burn::Tensor<1>], beta: f64) -> ParamList {
    match avg {
        Some(avg) => vector::scaled_add(avg.clone(), beta, x, 1.0 - beta),
        None => vector::scaled(x, 1.0 - beta),
    }
}

impl L4 {
    /// L4Adam's new moments, direction v = m̂ / (√ŝ + ε) and ⟨m̂, v⟩ from steplab-kernels'
    /// one-pass `adam_direction` (flex), bit-identical to the composition in `step` (before the
    /// first update the moments start from zeros, which differs from it only in the sign of
    /// a zero); `None` where the kernel does not apply.
    fn fused_adam_direction(
        &self,
        grads: &[burn::Tensor<1>],
        t: u64,
        (beta1, beta2, eps): (f64, f64, f64),
    ) -> Option<(ParamList, ParamList, ParamList, f64)> {
        let scalars = steplab_kernels::AdamDirection {
            beta1,
            beta2,
            bc1: 1.0 - power(beta1, t),
            bc2: 1.0 - power(beta2, t),
            eps,
        };
        let zeros;
        let (m, s) = match (&self.m, &self.s) {
            (Some(m), Some(s)) => (m, s),
            _ => {
                zeros = vector::zeros_like(grads);
                (&zeros, &zeros)
            }
        };
        let parts = m
            .iter()
            .zip(s)
            .zip(grads)
            .map(|((m, s), g)| steplab_kernels::adam_direction(m, s, g, scalars))
            .collect::<Option<Vec<_>>>()?;
        let (mut m2, mut s2, mut v, mut dots) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (m, s, d, dot) in parts {
            m2.push(m);
            s2.push(s);
            v.push(d);
            dots.push(dot);
        }
        // The kernel read its sums back already; added as `vector::dot` adds per-tensor sums.
        Some((m2, s2, v, dots.iter().sum()))
    }
}

impl StepSizeOptimizer for L4 {
    fn kind(&self) -> &'static str {
        match self.settings.direction {
            L4Direction::Momentum { .. } => "l4mom",
            L4Direction::Adam { .. } => "l4adam",
            L4Direction::Gradient => "l4sgd",
        }
    }

    fn diagnostic_names(&self) -> &'static [&'static str] {
        DIAGNOSTICS
    }

    fn step(&mut self, input: StepInput<'_>) -> StepOutput {
        let StepInput {
            params,
            loss,
            grads,
            ..
        } = input;
        let L4Settings {
            direction,
            alpha,
            gamma,
            gamma0,
            tau,
            eps,
        } = self.settings;
        if !loss.is_finite() {
            return Self::skip(params, f64::NAN, f64::NAN);
        }
        let t = self.t + 1;
        let l_min = if t == 1 {
            gamma0 * loss
        } else {
            self.l_min.min(loss)
        };
        // New state (committed only if the update is taken), direction v (up to the factor
        // `v_scale`), and ⟨ĝ, v⟩.
        let (m, s, v, m_dot_v, v_scale) = match direction {
            L4Direction::Gradient => {
                let dot = vector::sq_norm(&grads); // SYNC
                (None, None, grads, dot, 1.0)
            }
            L4Direction::Momentum { beta1 } => {
                // v = m̂ = m / bc1, folded into scalars: ⟨m̂, m̂⟩ = ‖m‖²/bc1², η·m̂ = (η/bc1)·m.
                let m = ema(self.m.as_ref(), &grads, beta1);
                let bc1 = 1.0 - power(beta1, t);
                let dot = vector::sq_norm(&m) / (bc1 * bc1); // SYNC
                (Some(m.clone()), None, m, dot, 1.0 / bc1)
            }
            L4Direction::Adam {
                beta1,
                beta2,
                adam_eps,
            } => match self.fused_adam_direction(&grads, t, (beta1, beta2, adam_eps)) {
                Some((m, s, v, dot)) => (Some(m), Some(s), v, dot, 1.0),
                None => {
                    let m = ema(self.m.as_ref(), &grads, beta1);
                    let squares: ParamList = grads.iter().map(|g| g.clone().square()).collect();
                    let s = ema(self.s.as_ref(), &squares, beta2);
                    let (bc1, bc2) = (1.0 - power(beta1, t), 1.0 - power(beta2, t));
                    let m_hat: ParamList = m.iter().map(|m| m.clone().div_scalar(bc1)).collect();
                    let v: ParamList = m_hat
                        .iter()
                        .zip(&s)
                        .map(|(m_hat, s)| {
                            let denom = s.clone().div_scalar(bc2).sqrt().add_scalar(adam_eps);
                            m_hat.clone().div(denom)
                        })
                        .collect();
                    let dot = vector::dot(&m_hat, &v); // SYNC
                    (Some(m), Some(s), v, dot, 1.0)
                }
            },
        };
        if !m_dot_v.is_finite() {
            return Self::skip(params, l_min, m_dot_v);
        }
        let eta = alpha * (loss - gamma * l_min) / (m_dot_v + eps);
        if !eta.is_finite() {
            return Self::skip(params, l_min, m_dot_v);
        }
        let params = vector::add_scaled_owned(params, v, -eta * v_scale);
        self.t = t;
        self.l_min = (1.0 + 1.0 / tau) * l_min;
        self.m = m;
        self.s = s;
        self.eta = eta;
        StepOutput::new(params, eta, vec![l_min, m_dot_v, 0.0])
    }

    fn current_lr(&self) -> f64 {
        self.eta
    }

    fn state(&self) -> OptimizerState {
        let mut state = OptimizerState::new(self.kind()).with_scalar("t", self.t as f64);
        if self.t > 0 {
            state = state.with_scalar("l_min", self.l_min);
        }
        if self.eta.is_finite() {
            state = state.with_scalar("eta", self.eta);
        }
        if let Some(m) = &self.m {
            state = state.with_buffer("m", m);
        }
        if let Some(s) = &self.s {
            state = state.with_buffer("s", s);
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
        let t = state.step_counter("t")?;
        let (l_min, m, s) = if t == 0 {
            (f64::NAN, None, None)
        } else {
            let uses_m = !matches!(self.settings.direction, L4Direction::Gradient);
            let uses_s = matches!(self.settings.direction, L4Direction::Adam { .. });
            (
                state.scalar("l_min")?,
                uses_m
                    .then(|| state.buffer("m", device, dtype))
                    .transpose()?,
                uses_s
                    .then(|| state.buffer("s", device, dtype))
                    .transpose()?,
            )
        };
        self.t = t;
        self.l_min = l_min;
        self.m = m;
        self.s = s;
        self.eta = state.scalars.get("eta").copied().unwrap_or(f64::NAN);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Quadratic, device, host, list, step_with, values};

    /// One update with a given loss and gradient (the probe is never used by L4).
    fn step_raw(opt: &mut L4, params: &[f64], loss: f64, grads: &[f64]) -> StepOutput {
        let d = device();
        let mut probe = Quadratic::diagonal(vec![0.0; params.len()]);
        opt.step(StepInput {
            params: list(&[params], &d),
            loss,
            grads: list(&[grads], &d),
            probe: &mut probe,
            holdout: None,
        })
    }

    /// ½‖Aθ − b‖² with a 3×2 matrix A: a least-squares problem with analytic gradients.
    struct LeastSquares {
        a: [[f64; 2]; 3],
        b: [f64; 3],
    }

    impl LeastSquares {
        fn new() -> Self {
            Self {
                a: [[1.0, 2.0], [3.0, -1.0], [0.5, 1.0]],
                b: [1.0, 0.0, 2.0],
            }
        }
        fn residual(&self, theta: &[f64]) -> Vec<f64> {
            (0..3)
                .map(|i| self.a[i][0] * theta[0] + self.a[i][1] * theta[1] - self.b[i])
                .collect()
        }
        fn loss(&self, theta: &[f64]) -> f64 {
            0.5 * self.residual(theta).iter().map(|r| r * r).sum::<f64>()
        }
        fn grad(&self, theta: &[f64]) -> Vec<f64> {
            let r = self.residual(theta);
            (0..2)
                .map(|j| (0..3).map(|i| self.a[i][j] * r[i]).sum())
                .collect()
        }
    }

    /// The host reference: Eqs. 5-7 written out in plain f64, independently of the tensors.
    struct Host {
        kind: &'static str,
        alpha: f64,
        t: i32,
        l_min: f64,
        m: Vec<f64>,
        s: Vec<f64>,
    }

    impl Host {
        fn new(kind: &'static str, alpha: f64, n: usize) -> Self {
            Self {
                kind,
                alpha,
                t: 0,
                l_min: 0.0,
                m: vec![0.0; n],
                s: vec![0.0; n],
            }
        }

        /// Returns (η, Lmin used, ⟨ĝ, v⟩) and moves θ.
        fn step(&mut self, theta: &mut [f64], loss: f64, g: &[f64]) -> (f64, f64, f64) {
            self.t += 1;
            self.l_min = if self.t == 1 {
                0.75 * loss
            } else {
                self.l_min.min(loss)
            };
            let n = g.len();
            let mut g_hat = vec![0.0; n];
            let mut v = vec![0.0; n];
            for i in 0..n {
                self.m[i] = 0.9 * self.m[i] + 0.1 * g[i];
                self.s[i] = 0.999 * self.s[i] + 0.001 * g[i] * g[i];
                let m_hat = self.m[i] / (1.0 - 0.9_f64.powi(self.t));
                let s_hat = self.s[i] / (1.0 - 0.999_f64.powi(self.t));
                (g_hat[i], v[i]) = match self.kind {
                    "l4mom" => (m_hat, m_hat),
                    "l4adam" => (m_hat, m_hat / (s_hat.sqrt() + 1e-4)),
                    _ => (g[i], g[i]),
                };
            }
            let dot: f64 = (0..n).map(|i| g_hat[i] * v[i]).sum();
            let eta = self.alpha * (loss - 0.9 * self.l_min) / (dot + 1e-12);
            for i in 0..n {
                theta[i] -= eta * v[i];
            }
            let used = self.l_min;
            self.l_min *= 1.0 + 1.0 / 1000.0;
            (eta, used, dot)
        }
    }

    fn close(got: f64, want: f64, what: &str) {
        assert!(
            (got - want).abs() <= 1e-12 * want.abs().max(1e-300),
            "{what}: got {got}, want {want}"
        );
    }

    fn optimizer(kind: &str, alpha: f64) -> L4 {
        match kind {
            "l4mom" => L4::new(&L4MomConfig {
                lr: alpha,
                ..L4MomConfig::default()
            }),
            "l4adam" => L4::new(&L4AdamConfig {
                lr: alpha,
                ..L4AdamConfig::default()
            }),
            _ => L4::new(&L4SgdConfig {
                lr: alpha,
                ..L4SgdConfig::default()
            }),
        }
    }

    #[test]
    fn l4mom_first_step_is_the_hand_derived_fraction_of_the_linearized_step() {
        // ½θᵀHθ, H = diag(1, 4), θ = (1, −0.5): L = 1, g = (1, −2), ‖g‖² = 5. At t = 1, m̂ = g and
        // Lmin = 0.75, so η = 0.15·(1 − 0.9·0.75)/(5 + 1e-12) = 0.00975 (to 1e-13 relative).
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        let mut opt = optimizer("l4mom", 0.15);
        let out = step_with(&mut opt, &q, &list(&[&[1.0, -0.5]], &d));
        close(out.lr, 0.00975, "η");
        assert_eq!(out.diagnostics[0], 0.75);
        close(out.diagnostics[1], 5.0, "‖m̂‖²");
        assert_eq!(out.diagnostics[2], 0.0);
        let theta = values(&out.params)[0].clone();
        close(theta[0], 0.99025, "θ0");
        close(theta[1], -0.4805, "θ1");
        close(opt.l_min, 0.75 * 1.001, "Lmin after forgetting");
    }

    #[test]
    fn l4_first_steps_match_the_host_recursion_on_a_quadratic_and_least_squares() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0, 10.0]);
        let ls = LeastSquares::new();
        for kind in ["l4mom", "l4adam", "l4sgd"] {
            for alpha in [0.15, 0.25] {
                // Diagonal quadratic.
                let mut opt = optimizer(kind, alpha);
                let mut host = Host::new(kind, alpha, 3);
                let mut theta = vec![1.0, -0.5, 0.25];
                let mut params = list(&[&theta], &d);
                for t in 1..=3 {
                    let out = step_with(&mut opt, &q, &params);
                    let (loss, g) = (q.loss(&theta), q.grad(&theta));
                    let (eta, l_min, dot) = host.step(&mut theta, loss, &g);
                    let what = format!("{kind} α={alpha} quadratic t={t}");
                    close(out.lr, eta, &format!("{what} η"));
                    close(out.diagnostics[0], l_min, &format!("{what} Lmin"));
                    close(out.diagnostics[1], dot, &format!("{what} ⟨ĝ,v⟩"));
                    assert_eq!(out.diagnostics[2], 0.0);
                    for (got, want) in values(&out.params)[0].iter().zip(&theta) {
                        close(*got, *want, &format!("{what} θ"));
                    }
                    params = out.params;
                }
                // Least squares: the loss and gradient come from the host problem.
                let mut opt = optimizer(kind, alpha);
                let mut host = Host::new(kind, alpha, 2);
                let mut theta = vec![0.5, -1.0];
                for t in 1..=3 {
                    let (loss, g) = (ls.loss(&theta), ls.grad(&theta));
                    let out = step_raw(&mut opt, &theta, loss, &g);
                    let (eta, _, _) = host.step(&mut theta, loss, &g);
                    let what = format!("{kind} α={alpha} least squares t={t}");
                    close(out.lr, eta, &format!("{what} η"));
                    for (got, want) in values(&out.params)[0].iter().zip(&theta) {
                        close(*got, *want, &format!("{what} θ"));
                    }
                }
                assert!(ls.loss(&theta) < ls.loss(&[0.5, -1.0]), "{kind} descends");
            }
        }
    }

    #[test]
    fn l4_eta_equals_the_eq6_formula_of_its_own_diagnostics_at_every_step() {
        let ls = LeastSquares::new();
        for kind in ["l4mom", "l4adam", "l4sgd"] {
            let mut opt = optimizer(kind, 0.15);
            let mut theta = vec![2.0, 2.0];
            for _ in 0..30 {
                let (loss, g) = (ls.loss(&theta), ls.grad(&theta));
                let out = step_raw(&mut opt, &theta, loss, &g);
                let [l_min, dot, skipped] = out.diagnostics[..] else {
                    panic!("three diagnostics")
                };
                assert_eq!(skipped, 0.0);
                let eta = 0.15 * (loss - 0.9 * l_min) / (dot + 1e-12);
                close(out.lr, eta, kind);
                assert!(
                    out.lr >= 0.0 && dot >= 0.0,
                    "{kind}: η {} ⟨ĝ,v⟩ {dot}",
                    out.lr
                );
                theta = values(&out.params)[0].clone();
            }
            assert_eq!(opt.current_lr(), opt.eta);
        }
    }

    #[test]
    fn l4_lmin_starts_at_gamma0_loss_takes_minima_and_grows_by_one_over_tau() {
        let mut opt = L4::new(&L4MomConfig {
            tau: 10.0,
            ..L4MomConfig::default()
        });
        let g = [1.0, -1.0];
        // (loss, Lmin used): t1 0.75·4 = 3, kept 3.3; t2 min(3.3, 5); kept 3.63; t3 min(3.63, 2);
        // kept 2.2; a NaN loss changes nothing; t4 min(2.2, 3); kept 2.42; t5 min(2.42, 10).
        let expected = [
            (4.0, 3.0),
            (5.0, 3.3),
            (2.0, 2.0),
            (f64::NAN, f64::NAN),
            (3.0, 2.2),
            (10.0, 2.42),
        ];
        for (loss, l_min) in expected {
            let out = step_raw(&mut opt, &[0.0, 0.0], loss, &g);
            if loss.is_nan() {
                assert!(out.diagnostics[0].is_nan());
                assert_eq!(out.diagnostics[2], 1.0);
            } else {
                close(out.diagnostics[0], l_min, &format!("Lmin at loss {loss}"));
            }
        }
        assert_eq!(opt.t, 5);
        close(opt.l_min, 2.42 * 1.1, "Lmin kept");
    }

    #[test]
    fn l4adam_adds_its_epsilon_outside_the_square_root() {
        // First step: m̂ = g and ŝ = g², so v_i = g_i / (|g_i| + 1e-4). With g = (1e-4, 1) the
        // first entry is ½ (ε inside the root would give 1e-4/√(1e-8 + 1e-4) ≈ 0.0099995).
        let mut opt = optimizer("l4adam", 0.15);
        let g = [1e-4, 1.0];
        let v = [0.5, 1.0 / (1.0 + 1e-4)];
        let dot = g[0] * v[0] + g[1] * v[1];
        let out = step_raw(&mut opt, &[0.0, 0.0], 2.0, &g);
        close(out.diagnostics[1], dot, "⟨m̂, v⟩");
        let eta = 0.15 * (2.0 - 0.9 * 1.5) / (dot + 1e-12);
        close(out.lr, eta, "η");
        let theta = values(&out.params)[0].clone();
        close(theta[0], -eta * 0.5, "θ0");
        close(theta[1], -eta * v[1], "θ1");
    }

    #[test]
    fn l4_is_invariant_to_scaling_the_loss() {
        // Sec. 2.3: L' = a·L gives g' = a·g, so the update η·v is unchanged (up to ε).
        let ls = LeastSquares::new();
        for kind in ["l4mom", "l4sgd"] {
            let (mut opt, mut scaled) = (optimizer(kind, 0.15), optimizer(kind, 0.15));
            let mut theta = vec![2.0, -1.0];
            for _ in 0..5 {
                let (loss, g) = (ls.loss(&theta), ls.grad(&theta));
                let g10: Vec<f64> = g.iter().map(|x| 10.0 * x).collect();
                let a = step_raw(&mut opt, &theta, loss, &g);
                let b = step_raw(&mut scaled, &theta, 10.0 * loss, &g10);
                let (pa, pb) = (values(&a.params)[0].clone(), values(&b.params)[0].clone());
                for i in 0..2 {
                    assert!((pa[i] - pb[i]).abs() < 1e-10, "{kind}: {pa:?} vs {pb:?}");
                }
                theta = pa;
            }
        }
    }

    #[test]
    fn l4_zero_loss_gives_zero_step() {
        let mut opt = optimizer("l4mom", 0.15);
        let out = step_raw(&mut opt, &[1.0, 2.0], 0.0, &[3.0, 4.0]);
        assert_eq!(out.lr, 0.0);
        assert_eq!(values(&out.params), vec![vec![1.0, 2.0]]);
    }

    #[test]
    fn l4_zero_gradient_leaves_the_weights_finite_and_unchanged() {
        for kind in ["l4mom", "l4adam", "l4sgd"] {
            let mut opt = optimizer(kind, 0.15);
            let out = step_raw(&mut opt, &[1.0, -2.0], 1.0, &[0.0, 0.0]);
            // η = α(L − γγ0L)/ε: huge but finite, times v = 0.
            close(out.lr, 0.15 * (1.0 - 0.675) / 1e-12, kind);
            assert_eq!(out.diagnostics, vec![0.75, 0.0, 0.0], "{kind}");
            assert_eq!(values(&out.params), vec![vec![1.0, -2.0]], "{kind}");
            let state = opt.state();
            for buffer in state.buffers.values() {
                assert!(values(buffer).iter().flatten().all(|x| *x == 0.0), "{kind}");
            }
        }
    }

    #[test]
    fn l4_skips_non_finite_losses_gradients_and_step_sizes_without_touching_state() {
        for kind in ["l4mom", "l4adam", "l4sgd"] {
            let mut opt = optimizer(kind, 0.15);
            step_raw(&mut opt, &[1.0, 1.0], 2.0, &[1.0, 0.5]);
            let before = opt.state();
            let cases: [(f64, [f64; 2]); 4] = [
                (f64::NAN, [1.0, 1.0]),
                (f64::INFINITY, [1.0, 1.0]),
                (1.0, [f64::NAN, 1.0]),
                (1.0, [f64::INFINITY, 1.0]),
            ];
            for (loss, g) in cases {
                let out = step_raw(&mut opt, &[1.0, -2.0], loss, &g);
                let what = format!("{kind} loss {loss} g {g:?}");
                assert_eq!(values(&out.params), vec![vec![1.0, -2.0]], "{what}");
                assert!(out.lr.is_nan(), "{what}");
                assert_eq!(out.diagnostics[2], 1.0, "{what}");
                assert_eq!(host(&opt.state()), host(&before), "{what}");
            }
            // Finite loss and gradient, but η = α(L − γLmin)/(⟨ĝ,v⟩ + ε) overflows.
            let mut fresh = optimizer(kind, 0.15);
            let out = step_raw(&mut fresh, &[1.0, -2.0], 1e308, &[1e-200, 0.0]);
            assert_eq!(values(&out.params), vec![vec![1.0, -2.0]], "{kind}");
            assert_eq!(out.diagnostics[2], 1.0, "{kind}");
            assert_eq!(
                host(&fresh.state()),
                host(&optimizer(kind, 0.15).state()),
                "{kind}"
            );
            let out = step_raw(&mut opt, &[1.0, 1.0], f64::NAN, &[1.0, 1.0]);
            assert!(out.diagnostics[0].is_nan() && out.diagnostics[1].is_nan());
        }
    }

    #[test]
    fn l4_state_round_trips() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        for kind in ["l4mom", "l4adam", "l4sgd"] {
            let mut opt = optimizer(kind, 0.15);
            let mut fresh = optimizer(kind, 0.15);
            fresh.load_state(&opt.state(), &d, DType::F64).unwrap();
            assert_eq!(fresh.t, 0);
            assert!(fresh.current_lr().is_nan());
            let mut params = list(&[&[1.0, -0.5]], &d);
            for _ in 0..3 {
                params = step_with(&mut opt, &q, &params).params;
            }
            let state = opt.state();
            let mut restored = optimizer(kind, 0.15);
            restored.load_state(&state, &d, DType::F64).unwrap();
            assert_eq!(host(&restored.state()), host(&state), "{kind}");
            assert_eq!(restored.current_lr(), opt.current_lr());
            let a = step_with(&mut opt, &q, &params);
            let b = step_with(&mut restored, &q, &params);
            assert_eq!(values(&a.params), values(&b.params), "{kind}");
            assert_eq!(a.lr, b.lr);
            assert_eq!(a.diagnostics, b.diagnostics);
        }
        let err = optimizer("l4mom", 0.15)
            .load_state(&optimizer("l4adam", 0.15).state(), &d, DType::F64)
            .unwrap_err();
        assert!(err.to_string().contains("l4adam"), "{err}");
    }

    #[test]
    fn l4_kinds_and_diagnostic_names() {
        assert_eq!(optimizer("l4mom", 0.1).kind(), "l4mom");
        assert_eq!(optimizer("l4adam", 0.1).kind(), "l4adam");
        assert_eq!(optimizer("l4sgd", 0.1).kind(), "l4sgd");
        let opt = optimizer("l4adam", 0.1);
        assert_eq!(opt.diagnostic_names(), &["l_min", "m_dot_v", "skipped"]);
        assert_eq!(opt.base_lr(), None);
    }

    #[test]
    fn l4_configs_parse_with_defaults_and_reject_bad_values_naming_the_key() {
        let cfg: L4AdamConfig = toml::from_str("lr = 0.25").unwrap();
        assert_eq!(
            cfg,
            L4AdamConfig {
                lr: 0.25,
                ..L4AdamConfig::default()
            }
        );
        assert!(toml::from_str::<L4MomConfig>("adam_eps = 1e-4").is_err());
        assert!(toml::from_str::<L4SgdConfig>("beta1 = 0.9").is_err());
        let bad = [
            (
                L4AdamConfig {
                    lr: 0.0,
                    ..L4AdamConfig::default()
                },
                "optimizer.lr",
            ),
            (
                L4AdamConfig {
                    gamma: 1.5,
                    ..L4AdamConfig::default()
                },
                "optimizer.gamma",
            ),
            (
                L4AdamConfig {
                    gamma0: -0.1,
                    ..L4AdamConfig::default()
                },
                "optimizer.gamma0",
            ),
            (
                L4AdamConfig {
                    tau: 0.0,
                    ..L4AdamConfig::default()
                },
                "optimizer.tau",
            ),
            (
                L4AdamConfig {
                    eps: 0.0,
                    ..L4AdamConfig::default()
                },
                "optimizer.eps",
            ),
            (
                L4AdamConfig {
                    beta1: 1.0,
                    ..L4AdamConfig::default()
                },
                "optimizer.beta1",
            ),
            (
                L4AdamConfig {
                    beta2: f64::NAN,
                    ..L4AdamConfig::default()
                },
                "optimizer.beta2",
            ),
            (
                L4AdamConfig {
                    adam_eps: 0.0,
                    ..L4AdamConfig::default()
                },
                "optimizer.adam_eps",
            ),
        ];
        for (cfg, key) in bad {
            let err = cfg.validate().unwrap_err();
            assert!(err.to_string().contains(key), "{err} should name {key}");
        }
        assert!(L4AdamConfig::default().validate().is_ok());
        assert!(L4MomConfig::default().validate().is_ok());
        assert!(L4SgdConfig::default().validate().is_ok());
        let err = L4MomConfig {
            beta1: -0.5,
            ..L4MomConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("optimizer.beta1"));
        let err = L4SgdConfig {
            gamma: 2.0,
            ..L4SgdConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("optimizer.gamma"));
    }
}
