//! Hypergradient descent: SGD and Adam that learn their learning rate α online.
//!
//! Baydin, Cornish, Martínez Rubio, Schmidt & Wood, "Online Learning Rate Adaptation with
//! Hypergradient Descent" (ICLR 2018), Sec. 2 and the SGD-HD / Adam-HD algorithm boxes.
//!
//! # The derivation and its sign
//! An update θ_{t−1} = θ_{t−2} − α·u_{t−2} makes the loss at θ_{t−1} depend on α, so
//! ∂f(θ_{t−1})/∂α = ⟨∇f(θ_{t−1}), −u_{t−2}⟩ (the paper's h_t). Gradient descent on α with the
//! hyper-learning-rate β gives α_t = α_{t−1} − β·h_t = α_{t−1} + β·⟨∇f(θ_{t−1}), u_{t−2}⟩:
//! α grows while consecutive directions agree and shrinks when the last step overshot. The
//! rules of ALGORITHMS.md §5 below add β times the *positive* inner product, which is the same
//! update; the `hypergradient` diagnostic column logs that inner product (= −h_t of the paper).
//!
//! # `sgd_hd` (ALGORITHMS.md §5; the paper's SGD-HD)
//! ```text
//! d = g + λ·θ                                  # coupled weight decay, as crate::sgd
//! α ← α + β·⟨d, u_prev⟩                        # u_prev = 0 before the first step
//! u = d                     (momentum μ = 0)
//! u = buf ← μ·buf + d       (momentum μ > 0, heavy ball as crate::sgd)
//! θ ← θ − α·u;   u_prev ← u
//! ```
//! Defaults α0 = `lr` = 1e-3 and β = `beta` = 1e-3 (the paper's runs), μ = 0, λ = 0.
//! The paper's momentum variant (SGDN-HD) uses Nesterov momentum; this crate's uses the
//! heavy-ball buffer of its plain SGD, as the spec says (u = the momentum buffer), with the
//! hypergradient taken through the last update only (∂θ_{t−1}/∂α = −u_{t−1}), as in the paper.
//!
//! # `adam_hd` (ALGORITHMS.md §5; the paper's Adam-HD)
//! ```text
//! d = g + λ·θ
//! h = ⟨d, m_{t−1} / (√v_{t−1} + ε)⟩ · √(1 − β2^{t−1}) / (1 − β1^{t−1})     (h = 0 at t = 1)
//! α ← α + β·h
//! m ← β1·m + (1 − β1)·d;   v ← β2·v + (1 − β2)·d²
//! θ ← θ − (α / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)     # crate::adam with the new α
//! ```
//! Defaults α0 = `lr` = 1e-3, β = `beta` = 1e-7 (the paper's runs), β1 = 0.9, β2 = 0.999,
//! ε = 1e-8, λ = 0. The paper writes h with m̂_{t−1}/(√v̂_{t−1} + ε), the previous update's
//! direction; the spec's h (the form of the authors' code, whose Adam added ε to the raw √v)
//! puts ε on the raw √v_{t−1}, while the step puts it on the bias-corrected √v̂ as PyTorch's
//! Adam now does. The two differ only where √v̂ is comparable to ε. The spec writes g in h; with
//! weight decay this crate uses d, the gradient Adam sees (identical at the default λ = 0).
//!
//! # Common to both
//! Cost per step: 1 forward + 1 backward pass and one inner product (one sync). The `lr` column
//! logs the α this update used (after its own hypergradient step). α is learned, so neither kind
//! takes a `[schedule]`. α is not clipped (neither does the paper): a large β can drive it
//! negative. A non-finite loss, a non-finite inner product (a non-finite gradient) or a
//! non-finite new α skips the update: weights, α and buffers unchanged, diagnostics NaN (a
//! non-finite new α is reported as the `lr` of that update, which ends the run as diverged). Before
//! the first update (no u_prev / no moments) the check uses ‖d‖² instead.

use burn::tensor::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::OptimError;
use crate::api::{OptimizerState, StepInput, StepOutput, StepSizeOptimizer};
use crate::sgd::with_weight_decay;
use crate::vector::{self, ParamList};

/// Settings of [`SgdHd`], as `[optimizer]` keys with `kind = "sgd_hd"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgdHdConfig {
    /// Initial learning rate α0 (default 1e-3).
    #[serde(default = "SgdHdConfig::default_lr")]
    pub lr: f64,
    /// Hyper-learning-rate β of α (default 1e-3); 0 gives plain SGD.
    #[serde(default = "SgdHdConfig::default_beta")]
    pub beta: f64,
    /// Heavy-ball momentum μ in [0, 1) (default 0).
    #[serde(default)]
    pub momentum: f64,
    /// Coupled L2 weight decay λ (added to the gradient; default 0).
    #[serde(default)]
    pub weight_decay: f64,
}

impl SgdHdConfig {
    fn default_lr() -> f64 {
        1e-3
    }
    fn default_beta() -> f64 {
        1e-3
    }

    /// Checks the settings; errors name the config key.
    pub fn validate(&self) -> Result<(), OptimError> {
        crate::check_positive("optimizer.lr", self.lr)?;
        crate::check_non_negative("optimizer.beta", self.beta)?;
        crate::check_in_unit("optimizer.momentum", self.momentum)?;
        crate::check_non_negative("optimizer.weight_decay", self.weight_decay)
    }
}

impl Default for SgdHdConfig {
    fn default() -> Self {
        Self {
            lr: Self::default_lr(),
            beta: Self::default_beta(),
            momentum: 0.0,
            weight_decay: 0.0,
        }
    }
}

/// SGD-HD: SGD (optionally heavy-ball) with a hypergradient-learned α. See the module docs.
#[derive(Debug, Clone)]
pub struct SgdHd {
    config: SgdHdConfig,
    /// The learning rate α of the last update (α0 before the first).
    alpha: f64,
    /// The previous update direction u (= the momentum buffer when μ > 0); `None` before the
    /// first step (u_prev = 0).
    u_prev: Option<ParamList>,
}

impl SgdHd {
    /// An SGD-HD optimizer starting at α = `config.lr`.
    pub fn new(config: &SgdHdConfig) -> Self {
        Self {
            config: config.clone(),
            alpha: config.lr,
            u_prev: None,
        }
    }
}

impl StepSizeOptimizer for SgdHd {
    fn kind(&self) -> &'static str {
        "sgd_hd"
    }

    fn diagnostic_names(&self) -> &'static [&'static str] {
        &["hypergradient"]
    }

    fn step(&mut self, input: StepInput<'_>) -> StepOutput {
        let SgdHdConfig {
            beta,
            momentum,
            weight_decay,
            ..
        } = self.config;
        let d = with_weight_decay(input.grads, &input.params, weight_decay);
        let (h, finite) = match &self.u_prev {
            Some(u_prev) => {
                let h = vector::dot(&d, u_prev); // SYNC
                (h, h.is_finite())
            }
            None => (0.0, vector::sq_norm(&d).is_finite()), // SYNC
        };
        let alpha = self.alpha + beta * h;
        if !input.loss.is_finite() || !finite {
            return StepOutput::skipped(input.params, self.alpha, 1);
        }
        if !alpha.is_finite() {
            // Reported as the update's step size: the trainer records the run as diverged.
            return StepOutput::skipped(input.params, alpha, 1);
        }
        let u = match (momentum > 0.0, self.u_prev.take()) {
            (true, Some(buf)) => vector::scaled_add(buf, momentum, &d, 1.0),
            _ => d,
        };
        let params = vector::scaled_add(input.params, 1.0, &u, -alpha);
        self.alpha = alpha;
        self.u_prev = Some(u);
        StepOutput::new(params, alpha, vec![h])
    }

    fn current_lr(&self) -> f64 {
        self.alpha
    }

    fn state(&self) -> OptimizerState {
        let state = OptimizerState::new(self.kind()).with_scalar("alpha", self.alpha);
        match &self.u_prev {
            Some(u) => state.with_buffer("u_prev", u),
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
        let alpha = state.scalar("alpha")?;
        self.u_prev = state.optional_buffer("u_prev", device, dtype)?;
        self.alpha = alpha;
        Ok(())
    }
}

/// Settings of [`AdamHd`], as `[optimizer]` keys with `kind = "adam_hd"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamHdConfig {
    /// Initial learning rate α0 (default 1e-3).
    #[serde(default = "AdamHdConfig::default_lr")]
    pub lr: f64,
    /// Hyper-learning-rate β of α (default 1e-7); 0 gives plain Adam.
    #[serde(default = "AdamHdConfig::default_beta")]
    pub beta: f64,
    /// First-moment decay β1 (default 0.9).
    #[serde(default = "AdamHdConfig::default_beta1")]
    pub beta1: f64,
    /// Second-moment decay β2 (default 0.999).
    #[serde(default = "AdamHdConfig::default_beta2")]
    pub beta2: f64,
    /// ε added to the square root of the second moment (default 1e-8).
    #[serde(default = "AdamHdConfig::default_eps")]
    pub eps: f64,
    /// Coupled L2 weight decay λ (added to the gradient; default 0).
    #[serde(default)]
    pub weight_decay: f64,
}

impl AdamHdConfig {
    fn default_lr() -> f64 {
        1e-3
    }
    fn default_beta() -> f64 {
        1e-7
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
        crate::check_non_negative("optimizer.beta", self.beta)?;
        crate::check_in_unit("optimizer.beta1", self.beta1)?;
        crate::check_in_unit("optimizer.beta2", self.beta2)?;
        crate::check_positive("optimizer.eps", self.eps)?;
        crate::check_non_negative("optimizer.weight_decay", self.weight_decay)
    }
}

impl Default for AdamHdConfig {
    fn default() -> Self {
        Self {
            lr: Self::default_lr(),
            beta: Self::default_beta(),
            beta1: Self::default_beta1(),
            beta2: Self::default_beta2(),
            eps: Self::default_eps(),
            weight_decay: 0.0,
        }
    }
}

/// Adam-HD: Adam (PyTorch's form) with a hypergradient-learned α. See the module docs.
#[derive(Debug, Clone)]
pub struct AdamHd {
    config: AdamHdConfig,
    /// The learning rate α of the last update (α0 before the first).
    alpha: f64,
    /// Steps taken so far (t after the update).
    t: u64,
    /// First and second moment estimates (m, v); `None` before the first step.
    moments: Option<(ParamList, ParamList)>,
}

impl AdamHd {
    /// An Adam-HD optimizer starting at α = `config.lr`.
    pub fn new(config: &AdamHdConfig) -> Self {
        Self {
            config: config.clone(),
            alpha: config.lr,
            t: 0,
            moments: None,
        }
    }
}

impl StepSizeOptimizer for AdamHd {
    fn kind(&self) -> &'static str {
        "adam_hd"
    }

    fn diagnostic_names(&self) -> &'static [&'static str] {
        &["hypergradient"]
    }

    fn step(&mut self, input: StepInput<'_>) -> StepOutput {
        let AdamHdConfig {
            beta,
            beta1,
            beta2,
            eps,
            weight_decay,
            ..
        } = self.config;
        let d = with_weight_decay(input.grads, &input.params, weight_decay);
        // t − 1, the number of updates behind the moments (fits i32 for any real run).
        let prev = i32::try_from(self.t).unwrap_or(i32::MAX);
        let (h, finite) = match &self.moments {
            Some((m, v)) => {
                // ⟨d, m / (√v + ε)⟩ in one fused pass on flex, the quotient never stored.
                let inner = vector::preconditioned_dot(&d, m, v, eps); // SYNC
                let h = inner * (1.0 - beta2.powi(prev)).sqrt() / (1.0 - beta1.powi(prev));
                (h, h.is_finite())
            }
            None => (0.0, vector::sq_norm(&d).is_finite()), // SYNC
        };
        let alpha = self.alpha + beta * h;
        if !input.loss.is_finite() || !finite {
            return StepOutput::skipped(input.params, self.alpha, 1);
        }
        if !alpha.is_finite() {
            // Reported as the update's step size: the trainer records the run as diverged.
            return StepOutput::skipped(input.params, alpha, 1);
        }
        let t = prev.saturating_add(1);
        let (m, v) = match self.moments.take() {
            Some(state) => state,
            None => (vector::zeros_like(&d), vector::zeros_like(&d)),
        };
        let (m, v) = crate::adam::moments(m, v, &d, beta1, beta2);
        let step_size = alpha / (1.0 - beta1.powi(t));
        let bc2_sqrt = (1.0 - beta2.powi(t)).sqrt();
        let params = crate::adam::apply(input.params, &m, &v, step_size, bc2_sqrt, eps);
        self.t += 1;
        self.alpha = alpha;
        self.moments = Some((m, v));
        StepOutput::new(params, alpha, vec![h])
    }

    fn current_lr(&self) -> f64 {
        self.alpha
    }

    fn state(&self) -> OptimizerState {
        let state = OptimizerState::new(self.kind())
            .with_scalar("alpha", self.alpha)
            .with_scalar("t", self.t as f64);
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
        let alpha = state.scalar("alpha")?;
        let t = state.step_counter("t")?;
        self.moments = match state.optional_buffer("m", device, dtype)? {
            Some(m) => Some((m, state.buffer("v", device, dtype)?)),
            None => None,
        };
        self.alpha = alpha;
        self.t = t;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adam::{Adam, AdamConfig};
    use crate::sgd::{Sgd, SgdConfig};
    use crate::testing::{Quadratic, device, host, list, step_with, values};

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn sgd_hd_alpha_is_the_sum_of_hand_derived_hypergradient_steps() {
        // f = ½θᵀHθ, H = diag(1, 4), θ0 = (1, 1), α0 = 0.1, β = 0.01, no momentum.
        // g0 = (1, 4): α1 = α0 (u_prev = 0), θ1 = θ0 − 0.1·g0 = (0.9, 0.6).
        // g1 = (0.9, 2.4): h1 = ⟨g1, g0⟩ = 0.9 + 9.6 = 10.5, α2 = 0.1 + 0.105 = 0.205,
        // θ2 = θ1 − 0.205·g1 = (0.7155, 0.108).
        // g2 = (0.7155, 0.432): h2 = ⟨g2, g1⟩ = 0.64395 + 1.0368 = 1.68075,
        // α3 = 0.205 + 0.0168075 = 0.2218075.
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        let mut opt = SgdHd::new(&SgdHdConfig {
            lr: 0.1,
            beta: 0.01,
            ..SgdHdConfig::default()
        });
        let o1 = step_with(&mut opt, &q, &list(&[&[1.0, 1.0]], &d));
        assert_eq!((o1.lr, o1.diagnostics[0]), (0.1, 0.0));
        let o2 = step_with(&mut opt, &q, &o1.params);
        assert!(close(o2.diagnostics[0], 10.5, 1e-14));
        assert!(close(o2.lr, 0.205, 1e-14));
        let th2 = values(&o2.params)[0].clone();
        assert!(
            close(th2[0], 0.7155, 1e-14) && close(th2[1], 0.108, 1e-13),
            "{th2:?}"
        );
        let o3 = step_with(&mut opt, &q, &o2.params);
        assert!(close(o3.diagnostics[0], 1.68075, 1e-13));
        assert!(close(o3.lr, 0.2218075, 1e-14), "{}", o3.lr);
        assert_eq!(opt.current_lr(), o3.lr);
    }

    #[test]
    fn sgd_hd_with_momentum_and_decay_matches_a_host_recursion() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0, 10.0]);
        let (alpha0, beta, mu, wd) = (0.02, 0.003, 0.9, 0.1);
        let mut opt = SgdHd::new(&SgdHdConfig {
            lr: alpha0,
            beta,
            momentum: mu,
            weight_decay: wd,
        });
        let mut theta = vec![1.0, -0.5, 0.25];
        let mut alpha = alpha0;
        let mut u_prev = vec![0.0; 3];
        let mut params = list(&[&theta], &d);
        for t in 0..6 {
            let out = step_with(&mut opt, &q, &params);
            let dvec: Vec<f64> = q
                .grad(&theta)
                .iter()
                .zip(&theta)
                .map(|(g, x)| g + wd * x)
                .collect();
            let h = dot(&dvec, &u_prev);
            alpha += beta * h;
            let u: Vec<f64> = dvec.iter().zip(&u_prev).map(|(d, b)| mu * b + d).collect();
            for i in 0..3 {
                theta[i] -= alpha * u[i];
            }
            u_prev = u;
            assert!(close(out.diagnostics[0], h, 1e-12), "t {t}");
            assert!(close(out.lr, alpha, 1e-14), "t {t}");
            let got = values(&out.params)[0].clone();
            for i in 0..3 {
                assert!(close(got[i], theta[i], 1e-12), "t {t} i {i}");
            }
            params = out.params;
        }
    }

    #[test]
    fn sgd_hd_alpha_grows_while_steps_agree_and_shrinks_after_an_overshoot() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0]);
        // α = 0.1 < 1: θ keeps its sign, consecutive gradients agree, α grows.
        let mut opt = SgdHd::new(&SgdHdConfig {
            lr: 0.1,
            beta: 0.01,
            ..Default::default()
        });
        let p = step_with(&mut opt, &q, &list(&[&[1.0]], &d)).params;
        step_with(&mut opt, &q, &p);
        assert!(opt.current_lr() > 0.1);
        // α = 1.5 > 1 on f = ½θ²: θ flips sign, the hypergradient step shrinks α.
        let mut opt = SgdHd::new(&SgdHdConfig {
            lr: 1.5,
            beta: 0.01,
            ..Default::default()
        });
        let p = step_with(&mut opt, &q, &list(&[&[1.0]], &d)).params;
        step_with(&mut opt, &q, &p);
        assert!(opt.current_lr() < 1.5);
    }

    #[test]
    fn sgd_hd_with_zero_beta_is_sgd() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        let mut hd = SgdHd::new(&SgdHdConfig {
            lr: 0.05,
            beta: 0.0,
            momentum: 0.9,
            weight_decay: 0.01,
        });
        let mut sgd = Sgd::new(&SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 0.01,
        });
        let (mut a, mut b) = (list(&[&[1.0, -2.0]], &d), list(&[&[1.0, -2.0]], &d));
        for _ in 0..5 {
            a = step_with(&mut hd, &q, &a).params;
            b = step_with(&mut sgd, &q, &b).params;
            assert_eq!(values(&a), values(&b));
        }
    }

    /// Adam-HD by the spec's equations, on the host.
    struct HostAdamHd {
        alpha: f64,
        m: Vec<f64>,
        v: Vec<f64>,
        t: i32,
    }

    impl HostAdamHd {
        fn step(&mut self, theta: &mut [f64], d: &[f64], c: &AdamHdConfig) -> f64 {
            let h = if self.t == 0 {
                0.0
            } else {
                let inner: f64 = (0..d.len())
                    .map(|i| d[i] * self.m[i] / (self.v[i].sqrt() + c.eps))
                    .sum();
                inner * (1.0 - c.beta2.powi(self.t)).sqrt() / (1.0 - c.beta1.powi(self.t))
            };
            self.alpha += c.beta * h;
            self.t += 1;
            for i in 0..d.len() {
                self.m[i] = c.beta1 * self.m[i] + (1.0 - c.beta1) * d[i];
                self.v[i] = c.beta2 * self.v[i] + (1.0 - c.beta2) * d[i] * d[i];
                let m_hat = self.m[i] / (1.0 - c.beta1.powi(self.t));
                let v_hat = self.v[i] / (1.0 - c.beta2.powi(self.t));
                theta[i] -= self.alpha * m_hat / (v_hat.sqrt() + c.eps);
            }
            h
        }
    }

    #[test]
    fn adam_hd_matches_a_host_recursion() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0, 100.0]);
        // A large β so that α visibly moves; ε large enough to matter in h.
        let cfg = AdamHdConfig {
            lr: 0.01,
            beta: 1e-3,
            eps: 1e-3,
            weight_decay: 0.05,
            ..AdamHdConfig::default()
        };
        let mut opt = AdamHd::new(&cfg);
        let mut host = HostAdamHd {
            alpha: cfg.lr,
            m: vec![0.0; 3],
            v: vec![0.0; 3],
            t: 0,
        };
        let mut theta = vec![1.0, -0.5, 0.02];
        let mut params = list(&[&theta[..2], &theta[2..]], &d);
        for t in 1..=6 {
            let out = step_with(&mut opt, &q, &params);
            let dvec: Vec<f64> = q
                .grad(&theta)
                .iter()
                .zip(&theta)
                .map(|(g, x)| g + cfg.weight_decay * x)
                .collect();
            let h = host.step(&mut theta, &dvec, &cfg);
            if t == 1 {
                assert_eq!(out.diagnostics[0], 0.0);
            } else {
                assert!(h != 0.0 && close(out.diagnostics[0], h, 1e-12), "t {t}");
            }
            assert!(
                close(out.lr, host.alpha, 1e-14),
                "t {t}: {} vs {}",
                out.lr,
                host.alpha
            );
            let got = values(&out.params).concat();
            for i in 0..3 {
                assert!(
                    close(got[i], theta[i], 1e-12),
                    "t {t} i {i}: {} vs {}",
                    got[i],
                    theta[i]
                );
            }
            params = out.params;
        }
        assert!((host.alpha - cfg.lr).abs() > 1e-6, "α should have moved");
    }

    #[test]
    fn adam_hd_with_zero_beta_is_adam() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 100.0]);
        let mut hd = AdamHd::new(&AdamHdConfig {
            lr: 0.1,
            beta: 0.0,
            weight_decay: 0.01,
            ..AdamHdConfig::default()
        });
        let mut adam = Adam::new(&AdamConfig {
            lr: 0.1,
            weight_decay: 0.01,
            ..AdamConfig::default()
        });
        let (mut a, mut b) = (list(&[&[1.0, -1.0]], &d), list(&[&[1.0, -1.0]], &d));
        for _ in 0..5 {
            let out = step_with(&mut hd, &q, &a);
            assert_eq!(out.lr, 0.1);
            a = out.params;
            b = step_with(&mut adam, &q, &b).params;
            assert_eq!(values(&a), values(&b));
        }
    }

    #[test]
    fn hd_zero_gradient_keeps_alpha_and_weights() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        let zero = list(&[&[0.0, 0.0]], &d);
        let mut sgd = SgdHd::new(&SgdHdConfig {
            beta: 1.0,
            momentum: 0.5,
            ..Default::default()
        });
        let mut adam = AdamHd::new(&AdamHdConfig {
            beta: 1.0,
            ..Default::default()
        });
        for opt in [&mut sgd as &mut dyn StepSizeOptimizer, &mut adam] {
            for _ in 0..3 {
                let out = step_with(opt, &q, &zero);
                assert_eq!(values(&out.params), vec![vec![0.0, 0.0]], "{}", opt.kind());
                assert_eq!(out.diagnostics, vec![0.0]);
                assert_eq!(out.lr, 1e-3);
            }
        }
    }

    #[test]
    fn hd_skips_non_finite_losses_and_gradients() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        let mut sgd = SgdHd::new(&SgdHdConfig {
            beta: 0.1,
            ..Default::default()
        });
        let mut adam = AdamHd::new(&AdamHdConfig {
            beta: 0.1,
            ..Default::default()
        });
        for opt in [&mut sgd as &mut dyn StepSizeOptimizer, &mut adam] {
            // Once before any state, once after a good step.
            for warm in [false, true] {
                let mut params = list(&[&[1.0, 1.0]], &d);
                if warm {
                    params = step_with(opt, &q, &params).params;
                }
                let before_state = opt.state();
                let before = values(&params);
                let bad = [
                    (f64::NAN, list(&[&[1.0, 1.0]], &d)),
                    (1.0, list(&[&[f64::INFINITY, 1.0]], &d)),
                    (1.0, list(&[&[f64::NAN, 1.0]], &d)),
                ];
                for (loss, grads) in bad {
                    let mut probe = q.clone();
                    let out = opt.step(StepInput {
                        params: params.clone(),
                        loss,
                        grads,
                        probe: &mut probe,
                        holdout: None,
                    });
                    assert_eq!(values(&out.params), before, "{}", opt.kind());
                    assert!(out.diagnostics[0].is_nan());
                    assert!(out.lr.is_finite());
                    assert_eq!(host(&opt.state()), host(&before_state), "{}", opt.kind());
                }
            }
        }
    }

    #[test]
    fn hd_states_round_trip() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        let sgd_cfg = SgdHdConfig {
            lr: 0.1,
            beta: 0.01,
            momentum: 0.5,
            weight_decay: 0.0,
        };
        let adam_cfg = AdamHdConfig {
            lr: 0.1,
            beta: 1e-3,
            ..Default::default()
        };
        let mut pairs: Vec<(Box<dyn StepSizeOptimizer>, Box<dyn StepSizeOptimizer>)> = vec![
            (
                Box::new(SgdHd::new(&sgd_cfg)),
                Box::new(SgdHd::new(&sgd_cfg)),
            ),
            (
                Box::new(AdamHd::new(&adam_cfg)),
                Box::new(AdamHd::new(&adam_cfg)),
            ),
        ];
        for (opt, restored) in &mut pairs {
            let mut params = list(&[&[1.0, 1.0]], &d);
            // Fresh state (no buffers) round-trips too.
            restored.load_state(&opt.state(), &d, DType::F64).unwrap();
            for _ in 0..2 {
                params = step_with(opt.as_mut(), &q, &params).params;
            }
            restored.load_state(&opt.state(), &d, DType::F64).unwrap();
            assert_eq!(host(&restored.state()), host(&opt.state()));
            let a = step_with(opt.as_mut(), &q, &params);
            let b = step_with(restored.as_mut(), &q, &params);
            assert_eq!(values(&a.params), values(&b.params));
            assert_eq!(a.lr, b.lr);
            assert!(opt.base_lr().is_none());
        }
        let wrong = OptimizerState::new("sgd");
        assert!(pairs[0].1.load_state(&wrong, &d, DType::F64).is_err());
    }

    #[test]
    fn hd_validate_names_the_keys() {
        let err = SgdHdConfig {
            beta: -1.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("optimizer.beta"), "{err}");
        let err = SgdHdConfig {
            momentum: 1.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("optimizer.momentum"), "{err}");
        let err = AdamHdConfig {
            beta2: 1.5,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("optimizer.beta2"), "{err}");
        let err = AdamHdConfig {
            lr: 0.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("optimizer.lr"), "{err}");
        assert!(SgdHdConfig::default().validate().is_ok());
        assert!(AdamHdConfig::default().validate().is_ok());
    }
}
