//! YellowFin: heavy-ball momentum SGD whose learning rate and momentum tune themselves online.
//!
//! Zhang & Mitliagkas, "YellowFin and the Art of Momentum Tuning" (SysML 2019,
//! arXiv:1706.03471), Algorithms 1-4; the Trainable-Learning-Rate paper's `yfin` baseline
//! (ALGORITHMS.md §5). With d_t = g_t + λ·θ_t (coupled weight decay), h_t = ‖d_t‖², every EMA
//! `ema ← β·ema + (1 − β)·x` starting at 0, and t counting updates from 1:
//!
//! ```text
//! Alg. 2 CurvatureRange:  window = the last w values of h (w = curv_window, h_t included)
//!                         ĥ_max ← EMA(max window);  ĥ_min ← EMA(min window)
//!                         h_max = ĥ_max / c_t;  h_min = ĥ_min / c_t      (c_t = 1 − β^t)
//! Alg. 3 Variance:        ḡ ← EMA(d_t) (per coordinate);  s ← EMA(‖d_t‖²)
//!                         C = s / c_t − ‖ḡ‖² / c_t²                      (= Σ_i E[g_i²] − E[g_i]²)
//! Alg. 4 Distance:        n ← EMA(‖d_t‖);  D̂ ← EMA(n / s);  D = D̂ / c_t
//! SingleStep:             x = √μ minimises x²·D² + (1 − x)⁴·C / h_min², i.e. the real root
//!                         in [0, 1] of p·x = (1 − x)³ with p = D²·h_min² / (2C)
//!                         (y = x − 1 gives the depressed cubic y³ + p·y + p = 0, solved with
//!                         Vieta's substitution y = w − p/(3w), w³ = (−p − √(p² + 4p³/27)) / 2)
//!                         μ_t = max(x², ((√h_max − √h_min) / (√h_max + √h_min))²)
//!                         α_t = (1 − √μ_t)² / h_min
//! Alg. 1 smoothing:       μ ← β·μ + (1 − β)·μ_t;  α ← β·α + (1 − β)·α_t   (from t = 2 on)
//! heavy ball (Eq. 1):     θ_{t+1} = θ_t − α·d_t + μ·(θ_t − θ_{t−1})
//! ```
//!
//! The `lr` column is the smoothed α this update used; the diagnostics are the μ it used and the
//! estimates h_min, h_max, C, D after this gradient.
//!
//! Cost per step: 1 forward + 1 backward pass and one host sync (‖d‖² and ‖ḡ‖² together), plus
//! O(n) elementwise work and two parameter-sized buffers (ḡ and the last displacement).
//!
//! Defaults: `lr` α0 = 1e-4 and `momentum` μ0 = 0 (the reference TensorFlow code's defaults; its
//! docstring says the paper's runs started from α0 = 1.0, μ0 = 0), `beta` 0.999, `curv_window`
//! 20, `zero_debias` true, `weight_decay` 0. Not schedulable: the method sets its own step size.
//!
//! # Choices the paper leaves open, and where this differs from the reference code
//! - **Curvature proxy.** h_t = ‖d_t‖², as Alg. 2 and the reference code. The window holds the
//!   last w values including h_t (the reference code; the paper's `t − w ≤ i ≤ t` reads as w + 1).
//! - **Σ_i E[g_i²] as one scalar.** Alg. 3 keeps a per-coordinate EMA of g²; its sum equals the
//!   EMA of ‖g‖² exactly (linearity), so a host f64 scalar replaces that buffer, as in both
//!   reference implementations. Alg. 4's EMA of h_t is the same scalar s.
//! - **Zero-debias** (`zero_debias`, on by default, as the reference code): h_min, h_max, C
//!   and D are divided by c_t = 1 − β^t (C's second term by c_t², being the square of a debiased
//!   mean). The ratio n / s needs no correction: both share the factor c_t. The smoothed α and μ
//!   start at α0, μ0 and are not debiased.
//! - **First update.** It uses α0 and μ0 unchanged; tuning starts at t = 2, as both reference
//!   implementations do (at t = 1 the debiased C is exactly 0, so SingleStep is degenerate).
//!   The statistics are updated from t = 1.
//! - **Cubic solver.** The paper's closed form (Vieta's substitution), with the square root
//!   factored as p·√(1 + 4p/27) so that p³ cannot overflow, followed by Newton's method on
//!   (1 − x)³ − p·x (monotone convergence: the function is convex and decreasing on [0, 1]).
//!   For moderate p the polish changes nothing beyond rounding; for large p the closed form
//!   loses x ≈ 1/p to cancellation (y ≈ −1 is the difference of two terms ≈ √(p/3)), which the
//!   polish recovers. Limits: p = 0 gives x = 1, p = ∞ gives x = 0.
//! - **Guards instead of the reference code's ε = 1e-6.** The reference adds 1e-6 to h_min,
//!   h_max, D, C and to the denominator of D, and clamps C ≥ 1e-6; these are absolute and change
//!   the result when gradients are small, so this module uses guards that act only in the
//!   degenerate cases: C ≤ 0 (no gradient noise, including a rounding-negative C) is taken as
//!   p = ∞, so x = 0 and μ_t is the curvature bound; s = 0 (only zero gradients so far) makes
//!   n / s = 0; h_min ≤ 0 (every window so far held a zero gradient), a non-finite estimate or
//!   a non-finite α_t skips the tuning: α and μ keep their values and the update is
//!   θ_{t+1} = θ_t − α·d_t + μ·(θ_t − θ_{t−1}). The `variance` column logs max(C, 0).
//! - **Heavy-ball form.** The paper's Eq. 1, θ_{t+1} = θ_t − α·d_t + μ·(θ_t − θ_{t−1}), kept as
//!   the displacement v_t = θ_t − θ_{t−1} (v_0 = 0): v_{t+1} = μ·v_t − α·d_t, θ_{t+1} = θ_t +
//!   v_{t+1}. Storing v rather than θ_{t−1} avoids the cancellation in θ_t − θ_{t−1} at float32.
//!   The reference code wraps TensorFlow's/PyTorch's momentum optimizer (buf ← μ·buf + d,
//!   θ ← θ − α·buf), which equals Eq. 1 only while α is constant.
//! - **Weight decay** (`weight_decay`, coupled): the statistics see d_t = g_t + λ·θ_t, the
//!   gradient of the regularised loss.
//! - **Non-finite loss or ‖d‖².** The step is skipped: weights and every statistic unchanged,
//!   t not advanced, NaN diagnostics.
//! - **Sources.** The paper is not among the project's seed papers; this module follows its
//!   Algorithms 1-4 as recalled and cross-checked against the authors' public reference code
//!   (TensorFlow and PyTorch versions). "Eq. 1" for the heavy-ball form is the paper's
//!   numbering as far as can be told without the text; the algorithms are cited by name.
//! - **Left out** (not in Algorithms 1-4): the later reference code's defaults of unsmoothed α_t
//!   and μ_t, log-space smoothing of h_min / h_max, the slow start α_t ≤ α_t·t/(10w), manual and
//!   adaptive gradient clipping, sparsity debiasing, `delta_mu` and `lr_factor`.

use std::collections::VecDeque;

use burn::tensor::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::OptimError;
use crate::api::{OptimizerState, StepInput, StepOutput, StepSizeOptimizer};
use crate::sgd::with_weight_decay;
use crate::vector::{self, ParamList};

/// Settings of [`YellowFin`], as `[optimizer]` keys with `kind = "yellowfin"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YellowFinConfig {
    /// Initial learning rate α0 (default 1e-4, the reference code's; the paper ran from 1.0).
    #[serde(default = "YellowFinConfig::default_lr")]
    pub lr: f64,
    /// Initial momentum μ0 in [0, 1) (default 0, as the paper).
    #[serde(default)]
    pub momentum: f64,
    /// EMA decay β in [0, 1) of every estimate and of α and μ (default 0.999).
    #[serde(default = "YellowFinConfig::default_beta")]
    pub beta: f64,
    /// Width w ≥ 1 of the curvature-range window, in steps (default 20).
    #[serde(default = "YellowFinConfig::default_curv_window")]
    pub curv_window: usize,
    /// Coupled L2 weight decay λ (added to the gradient before the statistics; default 0).
    #[serde(default)]
    pub weight_decay: f64,
    /// Divide the estimates' EMAs by 1 − β^t (default true).
    #[serde(default = "YellowFinConfig::default_zero_debias")]
    pub zero_debias: bool,
}

impl YellowFinConfig {
    fn default_lr() -> f64 {
        1e-4
    }
    fn default_beta() -> f64 {
        0.999
    }
    fn default_curv_window() -> usize {
        20
    }
    fn default_zero_debias() -> bool {
        true
    }

    /// Checks the settings; errors name the config key.
    pub fn validate(&self) -> Result<(), OptimError> {
        crate::check_positive("optimizer.lr", self.lr)?;
        crate::check_in_unit("optimizer.momentum", self.momentum)?;
        crate::check_in_unit("optimizer.beta", self.beta)?;
        if self.curv_window == 0 {
            return Err(OptimError::invalid(
                "optimizer.curv_window",
                "must be at least 1".to_string(),
            ));
        }
        crate::check_non_negative("optimizer.weight_decay", self.weight_decay)
    }
}

impl Default for YellowFinConfig {
    fn default() -> Self {
        Self {
            lr: Self::default_lr(),
            momentum: 0.0,
            beta: Self::default_beta(),
            curv_window: Self::default_curv_window(),
            weight_decay: 0.0,
            zero_debias: Self::default_zero_debias(),
        }
    }
}

/// The YellowFin optimizer (Algorithms 1-4). See the module documentation for the update rule.
#[derive(Debug, Clone)]
pub struct YellowFin {
    config: YellowFinConfig,
    /// Updates taken so far (t after the update); skipped steps do not count.
    t: u64,
    /// Smoothed learning rate α (the last update's; the next one retunes it first).
    lr: f64,
    /// Smoothed momentum μ.
    mu: f64,
    /// The last `curv_window` values of h = ‖d‖², oldest first.
    window: VecDeque<f64>,
    /// EMA of the window minimum (not debiased).
    h_min_avg: f64,
    /// EMA of the window maximum (not debiased).
    h_max_avg: f64,
    /// s: EMA of ‖d‖² (= Σ_i EMA(d_i²); not debiased).
    grad_sq_avg: f64,
    /// n: EMA of ‖d‖ (not debiased).
    grad_norm_avg: f64,
    /// D̂: EMA of n / s (not debiased).
    dist_avg: f64,
    /// ḡ: per-coordinate EMA of d (not debiased); `None` before the first update.
    grad_avg: Option<ParamList>,
    /// v = θ_t − θ_{t−1}, the last displacement; `None` (zero) before the first update.
    velocity: Option<ParamList>,
}

/// The estimates of one step, after its gradient (debiased when configured).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Estimates {
    h_min: f64,
    h_max: f64,
    variance: f64,
    distance: f64,
}

impl YellowFin {
    /// A YellowFin optimizer starting at α = `config.lr`, μ = `config.momentum`.
    pub fn new(config: &YellowFinConfig) -> Self {
        Self {
            config: config.clone(),
            t: 0,
            lr: config.lr,
            mu: config.momentum,
            window: VecDeque::with_capacity(config.curv_window),
            h_min_avg: 0.0,
            h_max_avg: 0.0,
            grad_sq_avg: 0.0,
            grad_norm_avg: 0.0,
            dist_avg: 0.0,
            grad_avg: None,
            velocity: None,
        }
    }

    /// Folds h = ‖d‖² and ‖ḡ‖² (ḡ already updated) into the host statistics as update `t`
    /// (Algorithms 2-4) and returns the estimates.
    fn update_statistics(&mut self, t: u64, h: f64, grad_avg_sq_norm: f64) -> Estimates {
        let beta = self.config.beta;
        let ema = |avg: f64, x: f64| beta * avg + (1.0 - beta) * x;
        if self.window.len() == self.config.curv_window {
            self.window.pop_front();
        }
        self.window.push_back(h);
        let window_min = self.window.iter().copied().fold(f64::INFINITY, f64::min);
        let window_max = self
            .window
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        self.h_min_avg = ema(self.h_min_avg, window_min);
        self.h_max_avg = ema(self.h_max_avg, window_max);
        self.grad_sq_avg = ema(self.grad_sq_avg, h);
        self.grad_norm_avg = ema(self.grad_norm_avg, h.sqrt());
        // Guard: s = 0 only when every gradient so far was zero (then n = 0 too).
        let ratio = if self.grad_sq_avg > 0.0 {
            self.grad_norm_avg / self.grad_sq_avg
        } else {
            0.0
        };
        self.dist_avg = ema(self.dist_avg, ratio);
        let c = if self.config.zero_debias {
            1.0 - beta.powf(t as f64)
        } else {
            1.0
        };
        Estimates {
            h_min: self.h_min_avg / c,
            h_max: self.h_max_avg / c,
            variance: self.grad_sq_avg / c - grad_avg_sq_norm / (c * c),
            distance: self.dist_avg / c,
        }
    }

    /// Every carried scalar, by state name.
    fn scalars(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("t", self.t as f64),
            ("lr", self.lr),
            ("momentum", self.mu),
            ("h_min_avg", self.h_min_avg),
            ("h_max_avg", self.h_max_avg),
            ("grad_sq_avg", self.grad_sq_avg),
            ("grad_norm_avg", self.grad_norm_avg),
            ("dist_avg", self.dist_avg),
            ("curv_window_len", self.window.len() as f64),
        ]
    }
}

/// The root x ∈ [0, 1] of p·x = (1 − x)³ (x = √μ; SingleStep's stationarity condition), for
/// p = D²·h_min² / (2C) ≥ 0: the paper's closed form (Vieta's substitution) polished by Newton's
/// method. p = 0 gives 1, p = +∞ gives 0, a negative p is treated as 0 and NaN gives NaN.
pub fn cubic_root(p: f64) -> f64 {
    if p.is_nan() {
        return f64::NAN;
    }
    if p <= 0.0 {
        return 1.0;
    }
    if p == f64::INFINITY {
        return 0.0;
    }
    let mut x = vieta_root(p).clamp(0.0, 1.0);
    // Newton on f(x) = (1 − x)³ − p·x: f is convex and decreasing on [0, 1], so from any start
    // the iterates reach the root's left side after one step and then increase monotonically.
    for _ in 0..32 {
        let r = 1.0 - x;
        let f = r * r * r - p * x;
        let slope = -3.0 * r * r - p;
        let next = (x - f / slope).clamp(0.0, 1.0);
        if next == x {
            break;
        }
        x = next;
    }
    x
}

/// The paper's closed form for x = y + 1, y the real root of y³ + p·y + p = 0 (p > 0 finite):
/// y = w − p/(3w) with w³ = (−p − √(p² + 4p³/27)) / 2, the root taken with the sign that avoids
/// cancellation in w³, and √(p² + 4p³/27) = p·√(1 + 4p/27) so that nothing overflows.
fn vieta_root(p: f64) -> f64 {
    let w = -(0.5 * p).cbrt() * (1.0 + (1.0 + 4.0 * p / 27.0).sqrt()).cbrt();
    let y = w - p / (3.0 * w);
    y + 1.0
}

/// SingleStep: (μ_t, α_t) from the variance C, distance D and curvature range [h_min, h_max];
/// `None` (no tuning this step) when h_min ≤ 0 or an input or α_t is not finite.
fn single_step(est: &Estimates) -> Option<(f64, f64)> {
    let Estimates {
        h_min,
        h_max,
        variance,
        distance,
    } = *est;
    let usable = h_min > 0.0
        && h_min.is_finite()
        && h_max.is_finite()
        && variance.is_finite()
        && distance.is_finite();
    if !usable {
        return None;
    }
    // ((√κ − 1)/(√κ + 1))² with κ = h_max/h_min, written without the ratio so it cannot overflow.
    let (root_max, root_min) = (h_max.max(h_min).sqrt(), h_min.sqrt());
    let bound = ((root_max - root_min) / (root_max + root_min)).powi(2);
    let p = if variance > 0.0 {
        (distance * h_min).powi(2) / (2.0 * variance)
    } else {
        f64::INFINITY // no gradient noise: x = 0, μ_t is the curvature bound
    };
    let x = cubic_root(p);
    let mu = (x * x).max(bound);
    let lr = (1.0 - mu.sqrt()).powi(2) / h_min;
    (mu.is_finite() && lr.is_finite()).then_some((mu, lr))
}

impl StepSizeOptimizer for YellowFin {
    fn kind(&self) -> &'static str {
        "yellowfin"
    }

    fn diagnostic_names(&self) -> &'static [&'static str] {
        &["momentum", "h_min", "h_max", "variance", "distance"]
    }

    fn step(&mut self, input: StepInput<'_>) -> StepOutput {
        let n_diag = self.diagnostic_names().len();
        let StepInput {
            params,
            loss,
            grads,
            ..
        } = input;
        if !loss.is_finite() {
            return StepOutput::skipped(params, self.lr, n_diag);
        }
        let beta = self.config.beta;
        let d = with_weight_decay(grads, &params, self.config.weight_decay);
        // SYNC: ‖d‖² and ‖ḡ‖² in one read-back (on flex from the average's own pass).
        let (grad_avg, h, grad_avg_sq_norm) = match &self.grad_avg {
            // The old average stays until the update is taken (a skipped step keeps it).
            Some(avg) => vector::scaled_add_norms(avg.clone(), beta, &d, 1.0 - beta),
            None => {
                let grad_avg = vector::scaled(&d, 1.0 - beta);
                let sums = vector::dots(&[(&d, &d), (&grad_avg, &grad_avg)]);
                (grad_avg, sums[0], sums[1])
            }
        };
        if !(h.is_finite() && grad_avg_sq_norm.is_finite()) {
            return StepOutput::skipped(params, self.lr, n_diag);
        }
        let t = self.t + 1;
        let est = self.update_statistics(t, h, grad_avg_sq_norm);
        if t >= 2
            && let Some((mu_t, lr_t)) = single_step(&est)
        {
            self.mu = beta * self.mu + (1.0 - beta) * mu_t;
            self.lr = beta * self.lr + (1.0 - beta) * lr_t;
        }
        let (lr, mu) = (self.lr, self.mu);
        // No skip past this point: the velocity is updated in its own buffer.
        let step = match self.velocity.take() {
            Some(v) => vector::scaled_add(v, mu, &d, -lr),
            None => vector::scaled(&d, -lr),
        };
        let params = vector::scaled_add(params, 1.0, &step, 1.0);
        self.t = t;
        self.grad_avg = Some(grad_avg);
        self.velocity = Some(step);
        StepOutput::new(
            params,
            lr,
            vec![
                mu,
                est.h_min,
                est.h_max,
                est.variance.max(0.0),
                est.distance,
            ],
        )
    }

    fn current_lr(&self) -> f64 {
        self.lr
    }

    fn state(&self) -> OptimizerState {
        let mut state = OptimizerState::new(self.kind());
        for (name, value) in self.scalars() {
            state = state.with_scalar(name, value);
        }
        for (i, h) in self.window.iter().enumerate() {
            state = state.with_scalar(&format!("curv_window_{i}"), *h);
        }
        if let Some(avg) = &self.grad_avg {
            state = state.with_buffer("grad_avg", avg);
        }
        if let Some(v) = &self.velocity {
            state = state.with_buffer("velocity", v);
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
        let len = state.scalar("curv_window_len")?;
        if !(len >= 0.0 && len.fract() == 0.0) {
            return Err(OptimError::StateMismatch(format!(
                "curv_window_len = {len} is not a count"
            )));
        }
        let mut window = (0..len as usize)
            .map(|i| state.scalar(&format!("curv_window_{i}")))
            .collect::<Result<VecDeque<f64>, _>>()?;
        // A checkpoint from a wider window keeps its newest values.
        while window.len() > self.config.curv_window {
            window.pop_front();
        }
        let optional = |name: &str| state.optional_buffer(name, device, dtype);
        let grad_avg = optional("grad_avg")?;
        let velocity = optional("velocity")?;
        *self = Self {
            config: self.config.clone(),
            t: state.step_counter("t")?,
            lr: state.scalar("lr")?,
            mu: state.scalar("momentum")?,
            window,
            h_min_avg: state.scalar("h_min_avg")?,
            h_max_avg: state.scalar("h_max_avg")?,
            grad_sq_avg: state.scalar("grad_sq_avg")?,
            grad_norm_avg: state.scalar("grad_norm_avg")?,
            dist_avg: state.scalar("dist_avg")?,
            grad_avg,
            velocity,
        };
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // index loops mirror the equations
mod tests {
    use super::*;
    use crate::testing::{Quadratic, device, host, list, step_with, values};

    fn close(a: f64, b: f64, rel: f64) -> bool {
        a == b || (a - b).abs() <= rel * a.abs().max(b.abs())
    }

    // ---- The cubic -------------------------------------------------------------------------

    #[test]
    fn cubic_root_solves_p_x_equals_one_minus_x_cubed_in_the_unit_interval() {
        for k in -48..=120 {
            let p = 10f64.powf(k as f64 / 4.0); // 1e-12 … 1e30
            let x = cubic_root(p);
            assert!((0.0..1.0).contains(&x), "p = {p}: x = {x}");
            let (lhs, rhs) = ((1.0 - x).powi(3), p * x);
            assert!(
                (lhs - rhs).abs() <= 1e-12 * (lhs + rhs),
                "p = {p}: (1 − x)³ = {lhs}, p·x = {rhs}"
            );
        }
    }

    #[test]
    fn cubic_root_hits_known_roots_and_limits() {
        // p·x = (1 − x)³ at x = 1/2, 1/3, 1/5, 1/10: p = (1 − x)³ / x.
        for x in [0.5, 1.0 / 3.0, 0.2, 0.1] {
            let p = (1.0_f64 - x).powi(3) / x;
            let got = cubic_root(p);
            assert!(close(got, x, 1e-14), "p = {p}: {got} vs {x}");
        }
        assert_eq!(cubic_root(0.0), 1.0);
        assert_eq!(cubic_root(f64::INFINITY), 0.0);
        assert!(cubic_root(f64::NAN).is_nan());
        // Huge p: x ≈ 1/p; the closed form alone would lose it to cancellation.
        let p = 1e200;
        assert!(close(cubic_root(p), 1.0 / (p + 3.0), 1e-12));
    }

    #[test]
    fn cubic_root_agrees_with_the_papers_closed_form_for_moderate_p() {
        // Beyond p ≈ 1e2 the closed form's cancellation (x ≈ 1/p from terms ≈ √(p/3)) costs
        // more than 1e-12 relative; that is what the Newton polish is for.
        for k in -12..=8 {
            let p = 10f64.powf(k as f64 / 4.0); // 1e-3 … 1e2
            let closed = vieta_root(p);
            assert!(close(cubic_root(p), closed, 1e-12), "p = {p}");
        }
    }

    #[test]
    fn cubic_root_minimises_the_single_step_objective() {
        // x²·D² + (1 − x)⁴·C / h_min² is smallest at the root for p = D²h_min²/(2C).
        let (c, dist, h_min) = (0.3, 1.7, 0.8);
        let objective = |x: f64| x * x * dist * dist + (1.0 - x).powi(4) * c / (h_min * h_min);
        let x = cubic_root((dist * h_min).powi(2) / (2.0 * c));
        for dx in [1e-4, -1e-4, 1e-2, -1e-2] {
            assert!(objective(x) < objective(x + dx), "x = {x}, dx = {dx}");
        }
    }

    #[test]
    fn single_step_takes_the_curvature_bound_or_the_variance_root() {
        // Negligible variance: μ_t = ((√κ − 1)/(√κ + 1))², α_t = 4/(√h_max + √h_min)².
        let est = Estimates {
            h_min: 1.0,
            h_max: 4.0,
            variance: 0.0,
            distance: 1.0,
        };
        let (mu, lr) = single_step(&est).unwrap();
        assert!(close(mu, 1.0 / 9.0, 1e-15) && close(lr, 4.0 / 9.0, 1e-15));
        // Large variance: the root wins; x = 1/2 at p = 1/4 (D = 1, h_min = 1, C = 2).
        let est = Estimates {
            h_min: 1.0,
            h_max: 1.0,
            variance: 2.0,
            distance: 1.0,
        };
        let (mu, lr) = single_step(&est).unwrap();
        assert!(
            close(mu, 0.25, 1e-14) && close(lr, 0.25, 1e-14),
            "{mu} {lr}"
        );
        // h_min = 0: no tuning.
        let est = Estimates {
            h_min: 0.0,
            h_max: 0.0,
            variance: 0.0,
            distance: 0.0,
        };
        assert_eq!(single_step(&est), None);
    }

    // ---- An independent host implementation ---------------------------------------------

    /// YellowFin written out from Algorithms 1-4 on plain f64 vectors: per-coordinate E[g] and
    /// E[g²], the whole h history, θ_{t−1} kept explicitly, the cubic root by bisection.
    struct Reference {
        cfg: YellowFinConfig,
        lr: f64,
        mu: f64,
        history: Vec<f64>,
        ema_min: f64,
        ema_max: f64,
        eg: Vec<f64>,
        eg2: Vec<f64>,
        ema_norm: f64,
        ema_h: f64,
        ema_dist: f64,
        prev: Option<Vec<f64>>,
    }

    /// What one reference step used and estimated.
    struct RefStep {
        theta: Vec<f64>,
        lr: f64,
        mu: f64,
        h_min: f64,
        h_max: f64,
        variance: f64,
        distance: f64,
        /// Σ_i E[g_i²] (debiased): the size of the two terms whose difference is C.
        second_moment: f64,
    }

    fn bisect_root(p: f64) -> f64 {
        let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if (1.0 - mid).powi(3) - p * mid > 0.0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }

    impl Reference {
        fn new(cfg: &YellowFinConfig, n: usize) -> Self {
            Self {
                cfg: cfg.clone(),
                lr: cfg.lr,
                mu: cfg.momentum,
                history: Vec::new(),
                ema_min: 0.0,
                ema_max: 0.0,
                eg: vec![0.0; n],
                eg2: vec![0.0; n],
                ema_norm: 0.0,
                ema_h: 0.0,
                ema_dist: 0.0,
                prev: None,
            }
        }

        fn step(&mut self, theta: &[f64], grad: &[f64]) -> RefStep {
            let b = self.cfg.beta;
            let d: Vec<f64> = grad
                .iter()
                .zip(theta)
                .map(|(g, x)| g + self.cfg.weight_decay * x)
                .collect();
            let h: f64 = d.iter().map(|x| x * x).sum();
            self.history.push(h);
            let t = self.history.len();
            let recent = &self.history[t.saturating_sub(self.cfg.curv_window)..];
            let hmin_t = recent.iter().cloned().fold(f64::MAX, f64::min);
            let hmax_t = recent.iter().cloned().fold(0.0, f64::max);
            self.ema_min = b * self.ema_min + (1.0 - b) * hmin_t;
            self.ema_max = b * self.ema_max + (1.0 - b) * hmax_t;
            for i in 0..d.len() {
                self.eg[i] = b * self.eg[i] + (1.0 - b) * d[i];
                self.eg2[i] = b * self.eg2[i] + (1.0 - b) * d[i] * d[i];
            }
            self.ema_norm = b * self.ema_norm + (1.0 - b) * h.sqrt();
            self.ema_h = b * self.ema_h + (1.0 - b) * h;
            self.ema_dist = b * self.ema_dist + (1.0 - b) * self.ema_norm / self.ema_h;
            let c = if self.cfg.zero_debias {
                1.0 - b.powi(t as i32)
            } else {
                1.0
            };
            let (h_min, h_max, distance) = (self.ema_min / c, self.ema_max / c, self.ema_dist / c);
            let variance: f64 = (0..d.len())
                .map(|i| self.eg2[i] / c - (self.eg[i] / c).powi(2))
                .sum();
            let second_moment = self.eg2.iter().sum::<f64>() / c;
            if t >= 2 {
                let p = distance * distance * h_min * h_min / (2.0 * variance);
                let x = bisect_root(p);
                let kappa = h_max / h_min;
                let bound = ((kappa.sqrt() - 1.0) / (kappa.sqrt() + 1.0)).powi(2);
                let mu_t = (x * x).max(bound);
                let lr_t = (1.0 - mu_t.sqrt()).powi(2) / h_min;
                self.mu = b * self.mu + (1.0 - b) * mu_t;
                self.lr = b * self.lr + (1.0 - b) * lr_t;
            }
            let prev = self.prev.clone().unwrap_or_else(|| theta.to_vec());
            let next: Vec<f64> = (0..d.len())
                .map(|i| theta[i] - self.lr * d[i] + self.mu * (theta[i] - prev[i]))
                .collect();
            self.prev = Some(theta.to_vec());
            RefStep {
                theta: next,
                lr: self.lr,
                mu: self.mu,
                h_min,
                h_max,
                variance,
                distance,
                second_moment,
            }
        }
    }

    /// Runs `steps` updates on ½·θᵀHθ, H = diag(1, 4, 10), θ split as [2] + [1], against the
    /// reference, checking the `lr` column, the diagnostics and the weights.
    ///
    /// C = Σ E[g²] − Σ E[g]² cancels: rounding in either term (the two implementations sum in
    /// different orders) reaches C magnified by K = Σ E[g²] / C, and through p it reaches μ_t,
    /// α_t and every later value. So C is checked to `rel` of Σ E[g²], everything downstream to
    /// `rel`·K (K the largest so far), and K itself must stay small for the check to mean much.
    fn check_against_reference(cfg: &YellowFinConfig, steps: usize, rel: f64) {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0, 10.0]);
        let mut opt = YellowFin::new(cfg);
        let mut reference = Reference::new(cfg, 3);
        let mut theta = vec![1.0, -0.5, 0.25];
        let mut params = list(&[&theta[..2], &theta[2..]], &d);
        let mut condition = 1.0_f64;
        for step in 1..=steps {
            let out = step_with(&mut opt, &q, &params);
            let expected = reference.step(&theta, &q.grad(&theta));
            if step >= 2 {
                condition = condition.max(expected.second_moment / expected.variance);
            }
            assert!(
                condition < 100.0,
                "step {step}: C is too ill-conditioned: {condition}"
            );
            let tol = rel * condition;
            let ctx = format!("{cfg:?}, step {step}, K = {condition}");
            assert!(
                close(out.lr, expected.lr, tol),
                "{ctx}: lr {} vs {}",
                out.lr,
                expected.lr
            );
            let c_err = (out.diagnostics[3] - expected.variance.max(0.0)).abs();
            assert!(
                c_err <= rel * expected.second_moment,
                "{ctx}: C {} vs {}",
                out.diagnostics[3],
                expected.variance
            );
            let wanted = [expected.mu, expected.h_min, expected.h_max];
            for (k, (got, want)) in out.diagnostics.iter().zip(wanted).enumerate() {
                assert!(
                    close(*got, want, tol),
                    "{ctx}: diagnostic {k}: {got} vs {want}"
                );
            }
            assert!(
                close(out.diagnostics[4], expected.distance, tol),
                "{ctx}: D {} vs {}",
                out.diagnostics[4],
                expected.distance
            );
            let got = values(&out.params).concat();
            for i in 0..3 {
                assert!(
                    (got[i] - expected.theta[i]).abs() <= tol * expected.theta[i].abs().max(1e-3),
                    "{ctx}: θ[{i}] {} vs {}",
                    got[i],
                    expected.theta[i]
                );
            }
            theta = expected.theta;
            params = out.params;
        }
    }

    #[test]
    fn yellowfin_matches_a_host_reimplementation_of_algorithms_1_to_4() {
        let fast = YellowFinConfig {
            lr: 0.05,
            momentum: 0.2,
            beta: 0.9,
            curv_window: 3,
            weight_decay: 0.1,
            zero_debias: true,
        };
        check_against_reference(&fast, 12, 1e-12);
        // The defaults but a larger α0, so that the gradients change and C is well conditioned.
        let defaults = YellowFinConfig {
            lr: 0.05,
            ..YellowFinConfig::default()
        };
        check_against_reference(&defaults, 30, 1e-12);
        check_against_reference(
            &YellowFinConfig {
                zero_debias: false,
                lr: 0.01,
                ..fast
            },
            8,
            1e-12,
        );
    }

    #[test]
    fn first_update_uses_the_initial_lr_and_momentum() {
        let d = device();
        let q = Quadratic::diagonal(vec![2.0]);
        let mut opt = YellowFin::new(&YellowFinConfig {
            lr: 0.1,
            momentum: 0.5,
            ..YellowFinConfig::default()
        });
        let out = step_with(&mut opt, &q, &list(&[&[1.0]], &d));
        assert_eq!(out.lr, 0.1);
        assert_eq!(out.diagnostics[0], 0.5);
        // θ − α·g with no previous displacement; h = g² = 4 everywhere.
        assert!((values(&out.params)[0][0] - 0.8).abs() < 1e-15);
        assert!(close(out.diagnostics[1], 4.0, 1e-12) && close(out.diagnostics[2], 4.0, 1e-12));
        // D = ‖g‖/‖g‖² = 1/2.
        assert!(close(out.diagnostics[4], 0.5, 1e-12));
    }

    // ---- Limits ---------------------------------------------------------------------------

    #[test]
    fn momentum_reaches_the_curvature_bound_when_the_variance_is_negligible() {
        // f = ½θ² fed θ = 1, 1.1, 1, 1.1, …: h alternates 1 and 1.21, so once the window holds
        // both, κ = 1.21, √κ = 1.1; the variance (≈ 0.0025) is small against D²h_min² (≈ 0.9),
        // x ≈ 1/p ≈ 0.005 and x² < the bound. Heavy-ball's optimal tuning for [1, 1.21]:
        // μ = (0.1/2.1)², α = (1 − 0.1/2.1)² / 1 = 4/(1 + 1.1)².
        let d = device();
        let q = Quadratic::diagonal(vec![1.0]);
        let mut opt = YellowFin::new(&YellowFinConfig {
            lr: 0.3,
            momentum: 0.6,
            beta: 0.9,
            ..YellowFinConfig::default()
        });
        let mut out = None;
        for k in 0..600 {
            let theta = if k % 2 == 0 { 1.0 } else { 1.1 };
            out = Some(step_with(&mut opt, &q, &list(&[&[theta]], &d)));
        }
        let out = out.unwrap();
        let bound = (0.1_f64 / 2.1).powi(2);
        assert!(
            close(out.diagnostics[0], bound, 1e-12),
            "μ = {}",
            out.diagnostics[0]
        );
        assert!(close(out.lr, 4.0 / 2.1 / 2.1, 1e-12), "α = {}", out.lr);
        assert!(close(out.diagnostics[1], 1.0, 1e-12));
        assert!(close(out.diagnostics[2], 1.21, 1e-12));
    }

    #[test]
    fn constant_gradient_stream_drives_momentum_to_its_zero_bound_and_lr_to_one_over_h() {
        // The same point every step on f = 1.5·θ²: C = 0 (guarded: x = 0), h_max = h_min = g²,
        // so the curvature bound is 0 and α_t = 1/g². μ decays from μ0 to 0.
        let d = device();
        let q = Quadratic::diagonal(vec![3.0]);
        let mut opt = YellowFin::new(&YellowFinConfig {
            lr: 0.01,
            momentum: 0.9,
            beta: 0.9,
            ..YellowFinConfig::default()
        });
        let params = list(&[&[0.5]], &d);
        let g2 = 1.5_f64 * 1.5;
        for _ in 0..800 {
            let out = step_with(&mut opt, &q, &params);
            assert!(out.diagnostics.iter().all(|v| v.is_finite()));
            assert!(out.diagnostics[3] < 1e-12, "C = {}", out.diagnostics[3]);
        }
        let out = step_with(&mut opt, &q, &params);
        // C is 0 up to rounding (≈ 1e-16·g²), so x ≈ 1/p ≈ 1e-16 and μ_t ≈ x² ≈ 0.
        assert!(out.diagnostics[0] < 1e-24, "μ = {}", out.diagnostics[0]);
        assert!(close(out.lr, 1.0 / g2, 1e-12), "α = {}", out.lr);
        assert!(
            close(out.diagnostics[4], 1.0 / 1.5, 1e-12),
            "D = {}",
            out.diagnostics[4]
        );
    }

    #[test]
    fn zero_gradients_produce_no_nan_and_keep_lr_and_momentum() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 2.0]);
        let cfg = YellowFinConfig {
            lr: 0.1,
            momentum: 0.3,
            ..YellowFinConfig::default()
        };
        let mut opt = YellowFin::new(&cfg);
        let zero = list(&[&[0.0, 0.0]], &d);
        for _ in 0..5 {
            let out = step_with(&mut opt, &q, &zero);
            assert_eq!(values(&out.params), vec![vec![0.0, 0.0]]);
            assert_eq!((out.lr, out.diagnostics[0]), (0.1, 0.3));
            assert_eq!(out.diagnostics[1..], [0.0; 4]);
        }
        // After real gradients, a zero gradient moves by momentum alone, finitely.
        let mut params = list(&[&[1.0, -1.0]], &d);
        for _ in 0..5 {
            params = step_with(&mut opt, &q, &params).params;
        }
        let before = values(&params)[0].clone();
        let v = values(opt.velocity.as_ref().unwrap())[0].clone();
        let mut probe = q.clone();
        let out = opt.step(StepInput {
            params: params.clone(),
            loss: 1.0,
            grads: list(&[&[0.0, 0.0]], &d),
            probe: &mut probe,
            holdout: None,
        });
        assert!(out.lr.is_finite() && out.diagnostics.iter().all(|x| x.is_finite()));
        let after = values(&out.params)[0].clone();
        for i in 0..2 {
            let expected = before[i] + out.diagnostics[0] * v[i];
            assert!((after[i] - expected).abs() < 1e-15, "{after:?}");
        }
    }

    // ---- Robustness and state ---------------------------------------------------------

    #[test]
    fn non_finite_loss_or_gradient_skips_the_step_and_keeps_the_state() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        let mut opt = YellowFin::new(&YellowFinConfig {
            beta: 0.9,
            curv_window: 2,
            lr: 0.05,
            ..YellowFinConfig::default()
        });
        let mut params = list(&[&[1.0, 1.0]], &d);
        for _ in 0..4 {
            params = step_with(&mut opt, &q, &params).params;
        }
        let state = opt.state();
        let cases: [(f64, &[f64]); 3] = [
            (f64::NAN, &[1.0, 1.0]),
            (1.0, &[f64::NAN, 1.0]),
            (1.0, &[f64::INFINITY, 0.0]),
        ];
        for (loss, grad) in cases {
            let mut probe = q.clone();
            let out = opt.step(StepInput {
                params: params.clone(),
                loss,
                grads: list(&[grad], &d),
                probe: &mut probe,
                holdout: None,
            });
            assert_eq!(values(&out.params), values(&params));
            assert!(out.diagnostics.iter().all(|x| x.is_nan()));
            assert!(out.lr.is_finite());
            assert_eq!(
                host(&opt.state()),
                host(&state),
                "loss {loss}, grad {grad:?}"
            );
        }
    }

    #[test]
    fn state_round_trips_every_scalar_buffer_and_the_window() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0, 10.0]);
        let cfg = YellowFinConfig {
            beta: 0.9,
            curv_window: 3,
            lr: 0.05,
            momentum: 0.1,
            weight_decay: 0.01,
            zero_debias: true,
        };
        let mut opt = YellowFin::new(&cfg);
        // The window before any step is empty; that state loads too.
        let mut fresh = YellowFin::new(&cfg);
        fresh.load_state(&opt.state(), &d, DType::F64).unwrap();
        assert!(fresh.grad_avg.is_none() && fresh.window.is_empty());

        let mut params = list(&[&[1.0, -0.5], &[0.25]], &d);
        for _ in 0..5 {
            params = step_with(&mut opt, &q, &params).params;
        }
        let state = opt.state();
        assert_eq!(state.scalar("curv_window_len").unwrap(), 3.0);
        assert_eq!(state.scalar("t").unwrap(), 5.0);
        for name in ["grad_avg", "velocity"] {
            assert_eq!(state.buffers[name].len(), 2, "{name}");
        }
        let mut restored = YellowFin::new(&cfg);
        restored.load_state(&state, &d, DType::F64).unwrap();
        assert_eq!(host(&restored.state()), host(&state));
        assert_eq!(restored.window, opt.window);
        for _ in 0..4 {
            let a = step_with(&mut opt, &q, &params);
            let b = step_with(&mut restored, &q, &params);
            assert_eq!(values(&a.params), values(&b.params));
            assert_eq!((a.lr, a.diagnostics.clone()), (b.lr, b.diagnostics.clone()));
            params = a.params;
        }
        // A changed window value changes the state.
        let mut other = opt.clone();
        other.window[0] += 1.0;
        assert_ne!(host(&other.state()), host(&opt.state()));
        // Wrong kind.
        let err = restored
            .load_state(&OptimizerState::new("sgd"), &d, DType::F64)
            .unwrap_err();
        assert!(err.to_string().contains("sgd"), "{err}");
    }

    #[test]
    fn yellowfin_config_validates_naming_keys_and_parses_defaults() {
        let bad = [
            (
                YellowFinConfig {
                    lr: 0.0,
                    ..YellowFinConfig::default()
                },
                "optimizer.lr",
            ),
            (
                YellowFinConfig {
                    momentum: 1.0,
                    ..YellowFinConfig::default()
                },
                "optimizer.momentum",
            ),
            (
                YellowFinConfig {
                    beta: 1.0,
                    ..YellowFinConfig::default()
                },
                "optimizer.beta",
            ),
            (
                YellowFinConfig {
                    curv_window: 0,
                    ..YellowFinConfig::default()
                },
                "optimizer.curv_window",
            ),
            (
                YellowFinConfig {
                    weight_decay: -1.0,
                    ..YellowFinConfig::default()
                },
                "optimizer.weight_decay",
            ),
        ];
        for (cfg, key) in bad {
            let err = cfg.validate().unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
        assert!(YellowFinConfig::default().validate().is_ok());
        let cfg: YellowFinConfig = toml::from_str("lr = 0.01\nzero_debias = false").unwrap();
        assert_eq!(
            cfg,
            YellowFinConfig {
                lr: 0.01,
                zero_debias: false,
                ..YellowFinConfig::default()
            }
        );
        assert_eq!(
            (cfg.momentum, cfg.beta, cfg.curv_window, cfg.weight_decay),
            (0.0, 0.999, 20, 0.0)
        );
        assert!(toml::from_str::<YellowFinConfig>("clip = 1.0").is_err());
        // Not schedulable.
        assert_eq!(YellowFin::new(&cfg).base_lr(), None);
    }
}
