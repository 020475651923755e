//! Gorti-Ravaut: the step size η learned along the way, by Newton's method or gradient descent on
//! f(η) = L(w_t − η·g_t).
//!
//! Gorti & Ravaut, "Faster gradient descent convergence via an adaptive learning rate schedule"
//! (paper 001; 004 is an earlier draft, where they disagree 001 wins except for the denominator
//! guard). The weights take a plain SGD step with the current η; η itself then moves toward the
//! minimiser of f(η) = L(w_t − η·g_t), the loss this very step would reach with step size η.
//!
//! # Second order (`order = "second"`, the default): 001 Sec. 3.2 and 4.1, Eqs. 5-13
//! ```text
//! f(e) = L(w − e·g; E)      # forward only, weights restored (E = this batch, or a held-out batch)
//! f1p, f1m, f2p, f2m, f0 = f(η+ε), f(η−ε), f(η+2ε), f(η−2ε), f(η)          # 5 forward passes
//! w ← w − η·g                                                               # the OLD η
//! num = f1p − f1m                       # f'(η)  ≈ num / (2ε)         Eq. 9
//! den = f2p + f2m − 2·f0                # f''(η) ≈ den / (4ε²)        Eqs. 6-8
//! if |den| ≤ den_threshold: den ← den + δ                             Eqs. 11-12 (004: den == 0)
//! d ← β·d − 2ε·num/den                  # −f'/f'' = −2ε·num/den       Eq. 10; β: Sec. 5.2
//! η ← max(η + d, δ)                                                   Eq. 13
//! ```
//! Sec. 3.2 takes Newton's step η ← η − f'(η)/f''(η) (the exact f''(η) = gᵀH_L(w − η·g)·g of
//! Eq. 5 would need the Hessian) and replaces both derivatives by the central differences of
//! Eqs. 6-9: −(num/2ε)·(4ε²/den) = −2ε·num/den, the "final simple formula" of Eq. 10. On a
//! quadratic loss f(η) is exactly quadratic in η, the differences are exact, and one step lands
//! η on the exact line-search step ‖g‖²/gᵀHg whatever η was. (004 numbers the same equations
//! 10-18; the floor of Eq. 13 is not in 004.)
//!
//! # First order (`order = "first"`): 001 Sec. 3.1 (004 Eqs. 5-8), and Eq. 13
//! ```text
//! w ← w − η·g                           # the OLD η (except next_batch, below)
//! d ← β·d − α·f'(η)                     # η ← η − α·f'(η) when β = 0 (004 Eq. 6)
//! η ← max(η + d, δ)                     # Eq. 13
//! ```
//! with f'(η) = −⟨g_t, ∇L(w_t − η·g_t)⟩ (004 Eq. 7), computed as `derivative` says:
//! - `same_batch` (default): the gradient at w_t − η·g_t on the same batch (or the held-out
//!   batch), one extra forward + backward pass.
//! - `next_batch`: f'(η_t) = −⟨g_t, g_{t+1}⟩ (001 Eq. 4, 004 Eq. 8), read as hypergradient descent:
//!   at step t, with g_{t−1} kept from the previous step, f'(η_{t−1}) = −⟨g_{t−1}, g_t⟩ (g_t on
//!   the new batch) updates η FIRST, and this step's weight update uses the new η. No extra pass;
//!   the first step has no previous gradient and leaves η unchanged.
//! - `finite_difference`: f'(η) ≈ (f(η+ε) − f(η−ε)) / (2ε) (Eq. 9; the paper used finite
//!   differences "in places where it was more convenient"), two extra forward passes.
//!
//! # Held-out probes (`probe = "validation"`): 001 Sec. 5.3
//! Every f(·) (and the gradient of `same_batch`) is evaluated on [`StepInput::holdout`], a random
//! batch of a 20 % hold-out of the training set drawn by the trainer for this step, while g stays
//! the training gradient. `next_batch` takes no probe, so it cannot be combined with it.
//!
//! # Cost per step (forward F, backward B)
//! 1F + 1B for the gradient, plus: second order 5F; first order `same_batch` 1F + 1B,
//! `finite_difference` 2F, `next_batch` nothing. Sec. 6.3 of 001 speaks of five forward passes
//! "and back-propagations": only forward passes are needed, and only forward passes are taken.
//!
//! # Defaults
//! η0 = `lr` = 0.01 (MNIST logistic regression, LeNet), ε = 1e-5 and δ = 1e-6 (Sec. 4.1, 4.2.2),
//! α = 1e-6 (first order, logistic regression, Sec. 4.2.2), β = 0 (Sec. 5.2 tries 0.9).
//!
//! # Diagnostics
//! `eta`: η after this step's update (what the next step uses; for `next_batch` the η this step
//! used). `d_eta`: the f'(η) estimate (num/2ε, or the exact inner product of `same_batch` /
//! `next_batch`). `d2_eta`: f''(η) ≈ den/(4ε²) before the guard (second order only). NaN where
//! not computed or not finite. `unmeasured`: 1 for an unmeasured step (below), 0 otherwise
//! (always 0 for `same_batch` and `next_batch`); NaN on a skipped step. The `lr` column is the η
//! this update used.
//!
//! # Unmeasured steps (`unmeasured = "paper" | "exact"`)
//! The finite differences compare losses at shifted weights w − e·g with one another. When ε·g is
//! below the spacing of the weights at the run's precision, the shifted weights round to the same
//! values and the probes return the same loss bit for bit: the differences see no change at all.
//! A step is *unmeasured* when ‖g‖² > 0 and
//! - second order: all five probe losses are equal, f(η−2ε) == f(η−ε) == f(η) == f(η+ε) ==
//!   f(η+2ε) (then num = den = 0, den is guarded to δ, and the Newton step is 0);
//! - first order, `finite_difference`: f(η+ε) == f(η−ε) (then f'(η) reads 0).
//!
//! The probes are compared with each other, not with the batch loss, so the test also holds for
//! `probe = "validation"` and for an η whose own step w − η·g is measurable. `same_batch` and
//! `next_batch` measure f' from gradients and are never unmeasured.
//! - `unmeasured = "paper"` (default): the paper's rule on the numbers as they are: the η step is
//!   0, so d ← β·d and η ← max(η + d, δ) (η stays where it was when β = 0; with momentum, d keeps
//!   moving it on earlier steps' information).
//! - `unmeasured = "exact"`: exact arithmetic would measure some f'(η) and f''(η), which these
//!   numbers do not give, so the step carries no information about η: η and d are left as they
//!   were (the weights still take their step with η). This differs from `"paper"` only when
//!   β > 0.
//!
//! Either way the step counts 1 in `unmeasured`, and the first one of the run returns a warning
//! ([`StepOutput::warning`]) naming the cause and the remedies: `run.precision = "f64"`, a larger
//! `optimizer.eps` (the probes' spacing; a larger `lr` does not help here), `derivative =
//! "same_batch"` for the first order, or `unmeasured = "exact"`. The check compares numbers the
//! step has anyway: no extra pass.
//!
//! # Where this crate departs from or resolves the paper
//! - Denominator guard: 001 adds δ when den "≈ 0", without a threshold; 004 adds it only when it
//!   "reaches zero machine". The project follows 004 (`den_threshold = 0`: exactly den == 0) and
//!   offers `den_threshold` to widen it (|den| ≤ threshold).
//! - The floor of Eq. 13 also applies to the momentum variant (Sec. 5.2 writes η ← η + d without
//!   it); β applies to the first-order update in the same way, d ← β·d − α·f'(η) (the paper only
//!   writes the second-order form). d keeps its unfloored value.
//! - 001 writes f''(η) = −gᵀH_L(w − ηg) (Eq. 5); the sign is a typo (004 Eq. 11 has +):
//!   f''(η) = gᵀH_L(w − η·g)·g. Only the finite-difference form enters the update anyway.
//! - Robustness: a non-finite probe loss, num, den or resulting d keeps η and d unchanged (the
//!   weights still take their step with the old η, which is finite) and reports NaN derivatives;
//!   a non-finite ‖g‖² (one extra sync) or a non-finite batch loss skips the step entirely. A zero
//!   gradient gives num = 0 and den = 0 → δ, so d = β·d and η stays (for β = 0) where it was.
//! - `next_batch` keeps g_{t−1} across a skipped step: the weights did not move, so the next
//!   gradient is still taken at w_{t−1} − η·g_{t−1}.
//! - The authors' code chained SGD steps instead of restoring the weights between probes; here a
//!   probe only evaluates the loss at w − e·g and never changes the weights.
//!
//! # Precision
//! With ε = 1e-5 the probe shifts ε·g fall below float32 resolution of weights near 1, and the
//! second difference den ≈ 4ε²·f''(η) ≈ 4e-10·f'' falls below float32 rounding of the loss
//! itself: in f32 the η update is rounding noise, however the sums are accumulated. Run at
//! `run.precision = "f64"` or raise `optimizer.eps`; [`StepSizeOptimizer::precision_warning`] says so for
//! `order = "second"` and `derivative = "finite_difference"` (the other first-order readings
//! take no differences in ε).

use burn::tensor::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::OptimError;
use crate::api::{LossProbe, OptimizerState, StepInput, StepOutput, StepSizeOptimizer};
use crate::unmeasured::{self, OnceWarning, Unmeasured};
use crate::vector::{self, ParamList};

/// Which update η gets: Newton's method (Sec. 3.2) or gradient descent (Sec. 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GortiRavautOrder {
    /// Gradient descent on η with meta learning rate α (Eq. 3).
    First,
    /// Newton-Raphson on η from five loss values (Eq. 10).
    #[default]
    Second,
}

/// How the first-order method computes f'(η) = −⟨g_t, ∇L(w_t − η·g_t)⟩.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GortiRavautDerivative {
    /// The gradient at w_t − η·g_t on the same batch (one extra forward + backward pass).
    #[default]
    SameBatch,
    /// −⟨g_{t−1}, g_t⟩ from the previous step's gradient; η is updated before this step's
    /// weight update (hypergradient-like, no extra pass).
    NextBatch,
    /// Central difference (f(η+ε) − f(η−ε)) / (2ε) (two extra forward passes).
    FiniteDifference,
}

/// Which batch the loss probes f(·) evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GortiRavautProbe {
    /// The current training batch.
    #[default]
    TrainBatch,
    /// A random batch of the held-out split, drawn for each step (Sec. 5.3).
    Validation,
}

/// Settings of [`GortiRavaut`], as `[optimizer]` keys with `kind = "gorti_ravaut"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GortiRavautConfig {
    /// Initial step size η0 (0.01: the paper's MNIST and LeNet runs).
    #[serde(default = "GortiRavautConfig::default_lr")]
    pub lr: f64,
    /// `"second"` (Newton on η, default) or `"first"` (gradient descent on η).
    #[serde(default)]
    pub order: GortiRavautOrder,
    /// Finite-difference spacing ε on η (1e-5, Sec. 4.2.2 and 6.1).
    #[serde(default = "GortiRavautConfig::default_eps")]
    pub eps: f64,
    /// δ: the floor of η (Eq. 13) and what the denominator guard adds (Eq. 12); 1e-6.
    #[serde(default = "GortiRavautConfig::default_delta")]
    pub delta: f64,
    /// The guard adds δ to den when |den| ≤ this; 0 (default) means exactly den == 0, as 004.
    #[serde(default)]
    pub den_threshold: f64,
    /// Momentum β on the η update, in [0, 1) (0: none; Sec. 5.2 uses 0.9).
    #[serde(default)]
    pub beta: f64,
    /// Meta learning rate α of the first-order method (1e-6, logistic regression, Sec. 4.2.2);
    /// ignored by the second order.
    #[serde(default = "GortiRavautConfig::default_alpha")]
    pub alpha: f64,
    /// How the first order computes f'(η): `"same_batch"` (default), `"next_batch"` or
    /// `"finite_difference"`; ignored by the second order.
    #[serde(default)]
    pub derivative: GortiRavautDerivative,
    /// Where the loss probes are evaluated: `"train_batch"` (default) or `"validation"`.
    #[serde(default)]
    pub probe: GortiRavautProbe,
    /// How a step whose probe losses are all equal is treated: `"paper"` (default: the η step is
    /// 0, momentum still applies) or `"exact"` (η and its momentum unchanged); see the module
    /// documentation.
    #[serde(default)]
    pub unmeasured: Unmeasured,
}

impl GortiRavautConfig {
    fn default_lr() -> f64 {
        0.01
    }
    fn default_eps() -> f64 {
        1e-5
    }
    fn default_delta() -> f64 {
        1e-6
    }
    fn default_alpha() -> f64 {
        1e-6
    }

    /// Checks the settings; errors name the config key.
    pub fn validate(&self) -> Result<(), OptimError> {
        crate::check_positive("optimizer.lr", self.lr)?;
        crate::check_positive("optimizer.eps", self.eps)?;
        crate::check_positive("optimizer.delta", self.delta)?;
        crate::check_non_negative("optimizer.den_threshold", self.den_threshold)?;
        crate::check_in_unit("optimizer.beta", self.beta)?;
        crate::check_positive("optimizer.alpha", self.alpha)?;
        if self.order == GortiRavautOrder::First
            && self.derivative == GortiRavautDerivative::NextBatch
            && self.probe == GortiRavautProbe::Validation
        {
            return Err(OptimError::invalid(
                "optimizer.probe",
                "\"validation\" needs a loss probe, and derivative = \"next_batch\" takes none; \
                 use derivative = \"same_batch\" or \"finite_difference\""
                    .to_string(),
            ));
        }
        Ok(())
    }

    /// Whether the η update takes finite differences of the loss in ε (float32-sensitive).
    fn uses_finite_differences(&self) -> bool {
        self.order == GortiRavautOrder::Second
            || self.derivative == GortiRavautDerivative::FiniteDifference
    }
}

impl Default for GortiRavautConfig {
    fn default() -> Self {
        Self {
            lr: Self::default_lr(),
            order: GortiRavautOrder::default(),
            eps: Self::default_eps(),
            delta: Self::default_delta(),
            den_threshold: 0.0,
            beta: 0.0,
            alpha: Self::default_alpha(),
            derivative: GortiRavautDerivative::default(),
            probe: GortiRavautProbe::default(),
            unmeasured: Unmeasured::default(),
        }
    }
}

/// The Gorti-Ravaut adaptive learning rate. See the module documentation for the update rule.
#[derive(Debug, Clone)]
pub struct GortiRavaut {
    config: GortiRavautConfig,
    /// Step size η the next update uses (for `next_batch`: before this step's η update).
    eta: f64,
    /// d, the last change of η before the floor (momentum buffer of Sec. 5.2; 0 at the start).
    d: f64,
    /// g_{t−1}, the previous step's gradient (`next_batch` only; `None` before the first step).
    prev_grad: Option<ParamList>,
    /// Whether the unmeasured-step warning was given (saved state: a resumed run does not repeat it).
    warning: OnceWarning,
}

/// f'(η) and f''(η) as this step estimated them (NaN where not computed), and the step on η.
struct EtaStep {
    d_eta: f64,
    d2_eta: f64,
    /// The change of η before momentum (−2ε·num/den or −α·f'); `None` when not finite.
    step: Option<f64>,
    /// Whether the finite differences' probe losses were all equal (see the module docs).
    probes_equal: bool,
}

impl EtaStep {
    fn failed() -> Self {
        Self {
            d_eta: f64::NAN,
            d2_eta: f64::NAN,
            step: None,
            probes_equal: false,
        }
    }
}

impl GortiRavaut {
    /// A Gorti-Ravaut optimizer starting at η = `config.lr`.
    pub fn new(config: &GortiRavautConfig) -> Self {
        Self {
            config: config.clone(),
            eta: config.lr,
            d: 0.0,
            prev_grad: None,
            warning: OnceWarning::default(),
        }
    }

    /// f(e) = L(w − e·g) on the probe's batch (a forward pass; the weights are not changed).
    fn f(
        probe: &mut dyn LossProbe,
        params: &[burn::Tensor<1>],
        grads: &[burn::Tensor<1>],
        e: f64,
    ) -> f64 {
        probe.loss_at(&vector::add_scaled(params, grads, -e)) // SYNC
    }

    /// Newton's step on η from five loss values (Eqs. 6-12); `moved` = w − η·g.
    fn second_order(
        &self,
        probe: &mut dyn LossProbe,
        params: &[burn::Tensor<1>],
        grads: &[burn::Tensor<1>],
        moved: &[burn::Tensor<1>],
    ) -> EtaStep {
        let (eta, eps) = (self.eta, self.config.eps);
        let f1p = Self::f(probe, params, grads, eta + eps);
        let f1m = Self::f(probe, params, grads, eta - eps);
        let f2p = Self::f(probe, params, grads, eta + 2.0 * eps);
        let f2m = Self::f(probe, params, grads, eta - 2.0 * eps);
        let f0 = probe.loss_at(moved); // SYNC
        if ![f1p, f1m, f2p, f2m, f0].iter().all(|v| v.is_finite()) {
            return EtaStep::failed();
        }
        let num = f1p - f1m;
        let raw_den = f2p + f2m - 2.0 * f0;
        if !num.is_finite() || !raw_den.is_finite() {
            return EtaStep::failed();
        }
        let den = if raw_den.abs() <= self.config.den_threshold {
            raw_den + self.config.delta
        } else {
            raw_den
        };
        let step = -2.0 * eps * num / den;
        EtaStep {
            d_eta: num / (2.0 * eps),
            d2_eta: raw_den / (4.0 * eps * eps),
            step: step.is_finite().then_some(step),
            probes_equal: [f1p, f1m, f2p, f2m].iter().all(|v| *v == f0),
        }
    }

    /// −α·f'(η) with f'(η) ≈ (f(η+ε) − f(η−ε)) / (2ε) (Eq. 9), two forward passes.
    fn finite_difference(
        &self,
        probe: &mut dyn LossProbe,
        params: &[burn::Tensor<1>],
        grads: &[burn::Tensor<1>],
    ) -> EtaStep {
        let (eta, eps) = (self.eta, self.config.eps);
        let fp = Self::f(probe, params, grads, eta + eps);
        let fm = Self::f(probe, params, grads, eta - eps);
        let d_eta = if fp.is_finite() && fm.is_finite() {
            (fp - fm) / (2.0 * eps)
        } else {
            f64::NAN
        };
        EtaStep {
            probes_equal: fp.is_finite() && fp == fm,
            ..self.first_order(d_eta)
        }
    }

    /// −α·f'(η), with f'(η) already estimated (NaN when it could not be).
    fn first_order(&self, d_eta: f64) -> EtaStep {
        let step = -self.config.alpha * d_eta;
        EtaStep {
            d_eta,
            d2_eta: f64::NAN,
            step: step.is_finite().then_some(step),
            probes_equal: false,
        }
    }

    /// d ← β·d + step; η ← max(η + d, δ) (Eq. 13), unless that is not finite (then nothing).
    fn advance(&mut self, step: Option<f64>) {
        let Some(step) = step else { return };
        let d = self.config.beta * self.d + step;
        let eta = self.eta + d;
        if d.is_finite() && eta.is_finite() {
            self.d = d;
            self.eta = eta.max(self.config.delta);
        }
    }

    /// The one-time warning, on the first unmeasured step of the run.
    fn warn(&mut self, unmeasured: bool, eta: f64) -> Option<String> {
        let config = &self.config;
        self.warning.check(unmeasured, || {
            let (probes, derivative) = if config.order == GortiRavautOrder::Second {
                (
                    "the five probe losses f(η), f(η ± ε), f(η ± 2ε) are",
                    "f'(η) = f''(η) = 0",
                )
            } else {
                ("the probe losses f(η + ε) and f(η − ε) are", "f'(η) = 0")
            };
            let (effect, option) = match config.unmeasured {
                Unmeasured::Paper => (
                    "the η step is 0 and η does not adapt (with momentum, d ← β·d keeps moving it)",
                    ", or optimizer.unmeasured = \"exact\" (leave η and its momentum unchanged on \
                     such a step)",
                ),
                Unmeasured::Exact => (
                    "optimizer.unmeasured = \"exact\" leaves η and its momentum unchanged on such \
                     a step",
                    "",
                ),
            };
            let same_batch = if config.order == GortiRavautOrder::First {
                ", derivative = \"same_batch\" (f'(η) from a gradient, no differences)"
            } else {
                ""
            };
            format!(
                "gorti_ravaut: {probes} equal bit for bit (η = {eta:e}, ε = {eps:e}): the shifted \
                 weights w − e·g are within the rounding of one another at this precision, so the \
                 finite differences see no change ({derivative}); {effect}. Remedies: \
                 run.precision = \"f64\", a larger optimizer.eps (the probes' \
                 spacing){same_batch}{option}. {counted}",
                eps = config.eps,
                counted = unmeasured::COUNTED,
            )
        })
    }
}

impl StepSizeOptimizer for GortiRavaut {
    fn kind(&self) -> &'static str {
        "gorti_ravaut"
    }

    fn diagnostic_names(&self) -> &'static [&'static str] {
        &["eta", "d_eta", "d2_eta", "unmeasured"]
    }

    fn step(&mut self, input: StepInput<'_>) -> StepOutput {
        let StepInput {
            params,
            loss,
            grads,
            probe,
            holdout,
        } = input;
        let columns = self.diagnostic_names().len();
        if !loss.is_finite() {
            return StepOutput::skipped(params, self.eta, columns);
        }
        let probe: &mut dyn LossProbe = match self.config.probe {
            GortiRavautProbe::TrainBatch => probe,
            GortiRavautProbe::Validation => holdout.expect(
                "trainer bug: gorti_ravaut with probe = \"validation\" asked for a held-out batch \
                 (needs_holdout) but the step got none",
            ),
        };

        // next_batch: η moves first, from −⟨g_{t−1}, g_t⟩, then this step uses the new η.
        if self.config.order == GortiRavautOrder::First
            && self.config.derivative == GortiRavautDerivative::NextBatch
        {
            let (s, d_eta) = match &self.prev_grad {
                Some(prev) => {
                    // g first in both: on flex ‖g‖² then rides along ⟨g, g_prev⟩'s pass.
                    let v = vector::dots(&[(&grads, &grads), (&grads, prev)]); // SYNC
                    (v[0], -v[1])
                }
                None => (vector::sq_norm(&grads), f64::NAN), // SYNC
            };
            if !s.is_finite() {
                // Weights unchanged, so g_{t−1} still pairs with the next gradient.
                return StepOutput::skipped(params, self.eta, columns);
            }
            let update = self.first_order(d_eta);
            self.advance(update.step);
            let eta = self.eta;
            let params = vector::add_scaled(&params, &grads, -eta);
            self.prev_grad = Some(grads);
            return StepOutput::new(params, eta, vec![eta, update.d_eta, update.d2_eta, 0.0]);
        }

        // The step's own weights w − η·g (OLD η); f(η) and the same-batch gradient probe them too.
        let eta = self.eta;
        let moved = vector::add_scaled(&params, &grads, -eta);
        let (s, update) = match (self.config.order, self.config.derivative) {
            (GortiRavautOrder::First, GortiRavautDerivative::SameBatch) => {
                // One forward + backward pass at w − η·g; ‖g‖² and f' in one sync.
                let (f, g_at) = probe.loss_and_grad_at(&moved);
                let v = vector::dots(&[(&grads, &grads), (&grads, &g_at)]); // SYNC
                (
                    v[0],
                    self.first_order(if f.is_finite() { -v[1] } else { f64::NAN }),
                )
            }
            (order, _) => {
                // Checked first: a non-finite gradient wastes no probe.
                let s = vector::sq_norm(&grads); // SYNC
                if !s.is_finite() {
                    (s, EtaStep::failed())
                } else if order == GortiRavautOrder::Second {
                    (s, self.second_order(probe, &params, &grads, &moved))
                } else {
                    // First order, finite_difference (next_batch returned above).
                    (s, self.finite_difference(probe, &params, &grads))
                }
            }
        };
        if !s.is_finite() {
            return StepOutput::skipped(params, eta, columns);
        }
        // The probes moved the weights by multiples of ε·g ≠ 0, yet returned one loss.
        let unmeasured = update.probes_equal && s > 0.0;
        if !(unmeasured && self.config.unmeasured == Unmeasured::Exact) {
            self.advance(update.step);
        }
        let mut diagnostics = if update.step.is_some() {
            vec![self.eta, update.d_eta, update.d2_eta]
        } else {
            vec![self.eta, f64::NAN, f64::NAN]
        };
        diagnostics.push(unmeasured::column(unmeasured));
        let warning = self.warn(unmeasured, eta);
        StepOutput::new(moved, eta, diagnostics).with_warning(warning)
    }

    fn current_lr(&self) -> f64 {
        self.eta
    }

    fn needs_holdout(&self) -> bool {
        self.config.probe == GortiRavautProbe::Validation
    }

    fn precision_warning(&self, dtype: DType) -> Option<String> {
        if dtype == DType::F64 || !self.config.uses_finite_differences() {
            return None;
        }
        let what = if self.config.order == GortiRavautOrder::Second {
            "order = \"second\""
        } else {
            "derivative = \"finite_difference\""
        };
        Some(format!(
            "gorti_ravaut ({what}) takes finite differences of the loss with spacing \
             optimizer.eps = {eps:e} on η: in {dtype:?} the probe shifts ε·g fall below the \
             resolution of the weights (about 1e-7 relative) and the second difference of the \
             loss (≈ 4ε²·f''(η)) below the rounding of the loss itself, so the η update is \
             rounding noise. Set run.precision = \"f64\", or a larger optimizer.eps (e.g. 1e-2).",
            eps = self.config.eps,
        ))
    }

    fn state(&self) -> OptimizerState {
        let state = self.warning.save(
            OptimizerState::new(self.kind())
                .with_scalar("eta", self.eta)
                .with_scalar("d", self.d),
        );
        match &self.prev_grad {
            Some(prev) => state.with_buffer("prev_grad", prev),
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
        let eta = state.positive_scalar("eta")?;
        let d = state.scalar("d")?;
        if !d.is_finite() {
            return Err(OptimError::StateMismatch(format!(
                "`d` must be a finite number, got {d}"
            )));
        }
        self.prev_grad = state.optional_buffer("prev_grad", device, dtype)?;
        self.warning = OnceWarning::load(state)?;
        self.eta = eta;
        self.d = d;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // index loops mirror the equations
mod tests {
    use burn::Tensor;
    use burn::tensor::TensorData;

    use super::*;
    use crate::testing::{Quadratic, device, host, list, step_with, values};

    /// ½·θᵀHθ with H = diag(1, 4, 10) at θ = (1, −0.5, 0.25): g = Hθ, everything known exactly.
    fn quadratic() -> Quadratic {
        Quadratic::diagonal(vec![1.0, 4.0, 10.0])
    }
    const THETA: [f64; 3] = [1.0, -0.5, 0.25];

    /// s = ‖g‖² and q = gᵀHg at θ: f(η) = L(θ) − η·s + ½η²·q, f'(η) = −(s − η·q), f'' = q.
    fn s_and_q(q: &Quadratic, theta: &[f64]) -> (f64, f64) {
        let g = q.grad(theta);
        (g.iter().map(|x| x * x).sum(), q.quad_form(&g))
    }

    fn config(f: impl FnOnce(&mut GortiRavautConfig)) -> GortiRavautConfig {
        let mut c = GortiRavautConfig::default();
        f(&mut c);
        c
    }

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs()
    }

    /// Wraps a quadratic and counts the loss probes and gradient probes it answers.
    struct Counting {
        q: Quadratic,
        losses: usize,
        grads: usize,
    }

    impl Counting {
        fn new(q: Quadratic) -> Self {
            Self {
                q,
                losses: 0,
                grads: 0,
            }
        }
    }

    impl LossProbe for Counting {
        fn loss_at(&mut self, params: &[Tensor<1>]) -> f64 {
            self.losses += 1;
            self.q.loss_at(params)
        }
        fn loss_and_grad_at(&mut self, params: &[Tensor<1>]) -> (f64, ParamList) {
            self.grads += 1;
            self.q.loss_and_grad_at(params)
        }
    }

    /// One step at single-tensor `theta` with the gradient of `train.q`, probing `train` (and
    /// `holdout` where given); the gradient itself is not a probe call.
    fn step_counting<'a>(
        opt: &mut GortiRavaut,
        train: &'a mut Counting,
        holdout: Option<&'a mut dyn LossProbe>,
        theta: &[f64],
    ) -> StepOutput {
        let d = device();
        opt.step(StepInput {
            params: list(&[theta], &d),
            loss: train.q.loss(theta),
            grads: list(&[&train.q.grad(theta)], &d),
            probe: train,
            holdout,
        })
    }

    #[test]
    fn second_order_lands_on_the_exact_line_search_step_in_one_step() {
        // f(η) is exactly quadratic in η, so the differences of Eqs. 6-9 are exact up to
        // rounding and the Newton step of Eq. 10 reaches argmin f = s/q from any η.
        let d = device();
        let q = quadratic();
        let (s, qq) = s_and_q(&q, &THETA);
        let exact = s / qq;
        let g = q.grad(&THETA);
        for eta0 in [1e-3, 0.01, 0.2, 0.5] {
            let mut opt = GortiRavaut::new(&config(|c| c.lr = eta0));
            // Two tensors, to check the probes shift every one of them.
            let out = step_with(&mut opt, &q, &list(&[&THETA[..2], &THETA[2..]], &d));
            assert_eq!(out.lr, eta0, "the update uses the old η");
            let moved = values(&out.params).concat();
            for i in 0..3 {
                assert!((moved[i] - (THETA[i] - eta0 * g[i])).abs() < 1e-15);
            }
            let eta = opt.current_lr();
            assert!(
                rel(eta, exact) < 1e-6,
                "η0 {eta0}: η {eta} vs s/gᵀHg {exact}"
            );
            assert_eq!(out.diagnostics[0], eta);
            let d_eta = -(s - eta0 * qq);
            assert!(
                (out.diagnostics[1] - d_eta).abs() < 1e-9,
                "{out:?}",
                out = out.diagnostics
            );
            assert!(
                rel(out.diagnostics[2], qq) < 1e-5,
                "f'' {} vs {qq}",
                out.diagnostics[2]
            );
        }
    }

    #[test]
    fn second_order_takes_five_forward_probes_and_no_gradient_probe() {
        let mut train = Counting::new(quadratic());
        let mut opt = GortiRavaut::new(&GortiRavautConfig::default());
        step_counting(&mut opt, &mut train, None, &THETA);
        assert_eq!((train.losses, train.grads), (5, 0));
    }

    #[test]
    fn first_order_same_batch_is_eq3_with_the_exact_derivative() {
        // f'(η) = −gᵀ∇L(θ − ηg) = −gᵀ(g − ηHg) = −(s − η·gᵀHg), one gradient probe.
        let q = quadratic();
        let (s, qq) = s_and_q(&q, &THETA);
        let (eta0, alpha) = (0.05, 1e-3);
        let mut opt = GortiRavaut::new(&config(|c| {
            c.lr = eta0;
            c.order = GortiRavautOrder::First;
            c.alpha = alpha;
        }));
        let mut train = Counting::new(q);
        let out = step_counting(&mut opt, &mut train, None, &THETA);
        assert_eq!((train.losses, train.grads), (0, 1));
        let d_eta = -(s - eta0 * qq);
        assert!(rel(out.diagnostics[1], d_eta) < 1e-14);
        assert!(out.diagnostics[2].is_nan());
        let expected = eta0 - alpha * d_eta;
        assert!(
            rel(opt.current_lr(), expected) < 1e-14,
            "{} vs {expected}",
            opt.current_lr()
        );
        assert_eq!(out.lr, eta0);
    }

    #[test]
    fn first_order_next_batch_updates_eta_from_the_previous_gradient_before_stepping() {
        let q = quadratic();
        let (eta0, alpha) = (0.05, 1e-2);
        let mut opt = GortiRavaut::new(&config(|c| {
            c.lr = eta0;
            c.order = GortiRavautOrder::First;
            c.derivative = GortiRavautDerivative::NextBatch;
            c.alpha = alpha;
        }));
        let mut train = Counting::new(q.clone());
        // Step 1: no previous gradient, η unchanged, the update uses η0.
        let out = step_counting(&mut opt, &mut train, None, &THETA);
        let g0 = q.grad(&THETA);
        let theta1: Vec<f64> = (0..3).map(|i| THETA[i] - eta0 * g0[i]).collect();
        assert_eq!(out.lr, eta0);
        assert_eq!(opt.current_lr(), eta0);
        assert!(out.diagnostics[1].is_nan());
        assert_eq!(values(&out.params)[0], theta1);
        // Step 2: f'(η0) = −⟨g0, g1⟩, η1 = η0 − α·f', and the step uses η1.
        let out = step_counting(&mut opt, &mut train, None, &theta1);
        let g1 = q.grad(&theta1);
        let d_eta = -(0..3).map(|i| g0[i] * g1[i]).sum::<f64>();
        let eta1 = eta0 - alpha * d_eta;
        assert!(rel(out.diagnostics[1], d_eta) < 1e-14);
        assert!(rel(out.lr, eta1) < 1e-14, "{} vs {eta1}", out.lr);
        assert_eq!(out.diagnostics[0], out.lr);
        let got = &values(&out.params)[0];
        for i in 0..3 {
            assert!((got[i] - (theta1[i] - eta1 * g1[i])).abs() < 1e-15);
        }
        assert_eq!((train.losses, train.grads), (0, 0), "no extra pass");
    }

    #[test]
    fn first_order_finite_difference_matches_the_analytic_derivative() {
        let q = quadratic();
        let (s, qq) = s_and_q(&q, &THETA);
        for eta0 in [0.01, 0.1, 0.3] {
            let mut opt = GortiRavaut::new(&config(|c| {
                c.lr = eta0;
                c.order = GortiRavautOrder::First;
                c.derivative = GortiRavautDerivative::FiniteDifference;
                c.alpha = 1e-2;
            }));
            let mut train = Counting::new(q.clone());
            let out = step_counting(&mut opt, &mut train, None, &THETA);
            assert_eq!((train.losses, train.grads), (2, 0));
            let d_eta = -(s - eta0 * qq);
            assert!(
                (out.diagnostics[1] - d_eta).abs() < 1e-8,
                "{} vs {d_eta}",
                out.diagnostics[1]
            );
            assert!((opt.current_lr() - (eta0 - 1e-2 * d_eta)).abs() < 1e-10);
        }
    }

    #[test]
    fn momentum_on_eta_follows_the_section_5_2_recursion() {
        // ε = 1e-2 keeps the (exact, on a quadratic) differences far above rounding, so the
        // recursion can be checked tightly over three moving steps, for both orders.
        let q = quadratic();
        for order in [GortiRavautOrder::Second, GortiRavautOrder::First] {
            let (eta0, beta, alpha) = (0.02, 0.9, 1e-2);
            let mut opt = GortiRavaut::new(&config(|c| {
                c.lr = eta0;
                c.order = order;
                c.eps = 1e-2;
                c.beta = beta;
                c.alpha = alpha;
            }));
            let (mut theta, mut eta, mut dd) = (THETA.to_vec(), eta0, 0.0_f64);
            let mut params = list(&[&theta], &device());
            for step in 0..3 {
                let out = step_with(&mut opt, &q, &params);
                params = out.params;
                let (s, qq) = s_and_q(&q, &theta);
                let d_eta = -(s - eta * qq);
                let change = match order {
                    GortiRavautOrder::Second => -d_eta / qq,
                    GortiRavautOrder::First => -alpha * d_eta,
                };
                dd = beta * dd + change;
                let g = q.grad(&theta);
                for i in 0..3 {
                    theta[i] -= eta * g[i];
                }
                assert!(rel(out.lr, eta) < 1e-10, "the update uses the old η");
                eta = (eta + dd).max(1e-6);
                assert!(
                    rel(opt.current_lr(), eta) < 1e-10,
                    "{order:?} step {step}: η {} vs {eta}",
                    opt.current_lr()
                );
                let got = &values(&params)[0];
                for i in 0..3 {
                    assert!((got[i] - theta[i]).abs() < 1e-12);
                }
            }
            assert!((opt.d - dd).abs() < 1e-10 * dd.abs());
        }
    }

    #[test]
    fn eta_is_floored_at_delta() {
        // A concave quadratic: the Newton step points to a negative η (s/q < 0), Eq. 13 floors it.
        let d = device();
        let concave = Quadratic::diagonal(vec![-1.0, -2.0]);
        let mut opt = GortiRavaut::new(&config(|c| c.delta = 1e-4));
        step_with(&mut opt, &concave, &list(&[&[1.0, 1.0]], &d));
        assert_eq!(opt.current_lr(), 1e-4);
        // First order with a large α pushes η below zero when η is past the minimiser.
        let q = quadratic();
        let (s, qq) = s_and_q(&q, &THETA);
        let mut opt = GortiRavaut::new(&config(|c| {
            c.lr = 10.0 * s / qq;
            c.order = GortiRavautOrder::First;
            c.alpha = 1.0;
        }));
        step_with(&mut opt, &q, &list(&[&THETA], &d));
        assert_eq!(opt.current_lr(), 1e-6);
    }

    #[test]
    fn den_threshold_adds_delta_to_a_small_denominator() {
        // den = 4ε²·gᵀHg = 4e-10·q here; a threshold above it turns Eq. 10 into Eq. 12.
        let d = device();
        let q = quadratic();
        let (s, qq) = s_and_q(&q, &THETA);
        let (eta0, eps, delta) = (0.05, 1e-5, 1e-6);
        let mut opt = GortiRavaut::new(&config(|c| {
            c.lr = eta0;
            c.den_threshold = 1e-6;
        }));
        step_with(&mut opt, &q, &list(&[&THETA], &d));
        let num = 2.0 * eps * -(s - eta0 * qq);
        let den = 4.0 * eps * eps * qq;
        let expected = (eta0 - 2.0 * eps * num / (den + delta)).max(delta);
        assert!(
            rel(opt.current_lr(), expected) < 1e-6,
            "{} vs {expected}",
            opt.current_lr()
        );
        assert!(rel(expected, s / qq) > 0.5, "the guard must matter here");
    }

    #[test]
    fn validation_probe_evaluates_the_holdout_batch_only() {
        // f(η) = ½(θ − ηg)ᵀH_E(θ − ηg) with g the TRAINING gradient: Newton lands on
        // gᵀH_Eθ / gᵀH_E g, not on the training line-search step.
        let train_q = quadratic();
        let hold_q = Quadratic::diagonal(vec![3.0, 1.0, 0.5]);
        let g = train_q.grad(&THETA);
        // gᵀH_Eθ = ⟨g, ∇L_E(θ)⟩.
        let he_theta: f64 = g.iter().zip(hold_q.grad(&THETA)).map(|(a, b)| a * b).sum();
        let expected = he_theta / hold_q.quad_form(&g);
        let (s, qq) = s_and_q(&train_q, &THETA);
        assert!(rel(expected, s / qq) > 0.1);

        let mut opt = GortiRavaut::new(&config(|c| c.probe = GortiRavautProbe::Validation));
        assert!(opt.needs_holdout());
        let mut train = Counting::new(train_q.clone());
        let mut hold = Counting::new(hold_q.clone());
        step_counting(&mut opt, &mut train, Some(&mut hold), &THETA);
        assert_eq!((train.losses, train.grads), (0, 0));
        assert_eq!((hold.losses, hold.grads), (5, 0));
        assert!(
            rel(opt.current_lr(), expected) < 1e-6,
            "{} vs {expected}",
            opt.current_lr()
        );

        // First order, same batch: the gradient probe goes to the hold-out too.
        let mut opt = GortiRavaut::new(&config(|c| {
            c.probe = GortiRavautProbe::Validation;
            c.order = GortiRavautOrder::First;
        }));
        let mut train = Counting::new(train_q);
        let mut hold = Counting::new(hold_q);
        step_counting(&mut opt, &mut train, Some(&mut hold), &THETA);
        assert_eq!((train.losses, train.grads, hold.grads), (0, 0, 1));
        assert!(!GortiRavaut::new(&GortiRavautConfig::default()).needs_holdout());
    }

    #[test]
    #[should_panic(expected = "trainer bug")]
    fn validation_probe_without_a_holdout_batch_is_a_trainer_bug() {
        let mut opt = GortiRavaut::new(&config(|c| c.probe = GortiRavautProbe::Validation));
        step_counting(&mut opt, &mut Counting::new(quadratic()), None, &THETA);
    }

    #[test]
    fn zero_gradient_leaves_weights_and_eta_unchanged() {
        // All five probes equal: num = 0, den = 0 → δ, d = 0.
        let d = device();
        let q = quadratic();
        for order in [GortiRavautOrder::Second, GortiRavautOrder::First] {
            let mut opt = GortiRavaut::new(&config(|c| c.order = order));
            let out = step_with(&mut opt, &q, &list(&[&[0.0, 0.0, 0.0]], &d));
            assert_eq!(values(&out.params), vec![vec![0.0, 0.0, 0.0]]);
            assert_eq!(opt.current_lr(), 0.01);
            assert_eq!(out.diagnostics[0], 0.01);
            assert_eq!(out.diagnostics[1], 0.0);
        }
    }

    #[test]
    fn non_finite_losses_and_gradients_never_reach_eta_or_the_weights() {
        let d = device();
        let theta = list(&[&THETA], &d);
        // A NaN batch loss: the step is skipped.
        let mut opt = GortiRavaut::new(&GortiRavautConfig::default());
        let mut probe = quadratic();
        let out = opt.step(StepInput {
            params: theta.clone(),
            loss: f64::NAN,
            grads: list(&[&quadratic().grad(&THETA)], &d),
            probe: &mut probe,
            holdout: None,
        });
        assert_eq!(values(&out.params)[0], THETA.to_vec());
        assert!(out.diagnostics.iter().all(|v| v.is_nan()));
        assert_eq!(opt.current_lr(), 0.01);
        // An infinite gradient: skipped as well.
        for order in [GortiRavautOrder::Second, GortiRavautOrder::First] {
            for derivative in [
                GortiRavautDerivative::SameBatch,
                GortiRavautDerivative::NextBatch,
            ] {
                let mut opt = GortiRavaut::new(&config(|c| {
                    c.order = order;
                    c.derivative = derivative;
                }));
                let out = opt.step(StepInput {
                    params: theta.clone(),
                    loss: 1.0,
                    grads: list(&[&[f64::INFINITY, 0.0, 1.0]], &d),
                    probe: &mut probe,
                    holdout: None,
                });
                assert_eq!(values(&out.params)[0], THETA.to_vec());
                assert_eq!(opt.current_lr(), 0.01);
                assert!(opt.prev_grad.is_none());
            }
        }
        // NaN probe losses: η and d kept, NaN derivatives, the step taken with the old η.
        for derivative in [
            GortiRavautDerivative::SameBatch,
            GortiRavautDerivative::FiniteDifference,
        ] {
            for order in [GortiRavautOrder::Second, GortiRavautOrder::First] {
                let mut opt = GortiRavaut::new(&config(|c| {
                    c.order = order;
                    c.derivative = derivative;
                    c.beta = 0.9;
                }));
                opt.d = 0.5;
                let out = step_with(&mut opt, &quadratic().with_nan_probe(), &theta);
                assert_eq!(opt.current_lr(), 0.01);
                assert_eq!(opt.d, 0.5);
                assert_eq!(out.diagnostics[0], 0.01);
                assert!(out.diagnostics[1].is_nan() && out.diagnostics[2].is_nan());
                let g = quadratic().grad(&THETA);
                let got = &values(&out.params)[0];
                for i in 0..3 {
                    assert!((got[i] - (THETA[i] - 0.01 * g[i])).abs() < 1e-15);
                }
            }
        }
    }

    /// ½·Σ h_i (w_i − c_i)², evaluated in the precision of the weights it is given: f32 weights
    /// give an f32 loss and gradient (as an f32 model would), f64 weights an f64 one.
    struct Shifted {
        h: Vec<f64>,
        c: Vec<f64>,
    }

    impl Shifted {
        fn exact(&self, w: &[f64]) -> (f64, Vec<f64>) {
            let g: Vec<f64> = (0..w.len())
                .map(|i| self.h[i] * (w[i] - self.c[i]))
                .collect();
            let loss = (0..w.len()).map(|i| 0.5 * g[i] * (w[i] - self.c[i])).sum();
            (loss, g)
        }
    }

    impl LossProbe for Shifted {
        fn loss_at(&mut self, params: &[Tensor<1>]) -> f64 {
            self.loss_and_grad_at(params).0
        }
        fn loss_and_grad_at(&mut self, params: &[Tensor<1>]) -> (f64, ParamList) {
            let t = &params[0];
            let (dev, n) = (t.device(), t.dims()[0]);
            if t.dtype() == DType::F32 {
                let w: Vec<f32> = t.to_data().try_to_vec().unwrap();
                let mut loss = 0.0_f32;
                let mut g = Vec::with_capacity(n);
                for i in 0..n {
                    let r = w[i] - self.c[i] as f32;
                    g.push(self.h[i] as f32 * r);
                    loss += 0.5_f32 * self.h[i] as f32 * r * r;
                }
                let g = Tensor::from_data(TensorData::new(g, [n]), (&dev, DType::F32));
                (loss as f64, vec![g])
            } else {
                let w: Vec<f64> = t.to_data().try_to_vec().unwrap();
                let (loss, g) = self.exact(&w);
                (loss, list(&[&g], &dev))
            }
        }
    }

    #[test]
    fn second_order_fails_in_f32_and_recovers_the_line_search_step_in_f64() {
        // A realistic scale: weights around 1, gradient entries around 0.5, loss around 1.
        // ε·g ≈ 5e-6 is a few float32 ulps of the weights, and den = 4ε²·gᵀHg ≈ 1e-9 is far
        // below the float32 rounding of a loss near 1 (≈ 6e-8).
        let n = 16;
        let h: Vec<f64> = (0..n).map(|i| 0.5 + 0.1 * i as f64).collect();
        let c: Vec<f64> = (0..n).map(|i| 0.4 - 0.03 * i as f64).collect();
        let w: Vec<f64> = (0..n).map(|i| 1.0 + 0.01 * i as f64).collect();
        let mut problem = Shifted { h: h.clone(), c };
        let (loss, g) = problem.exact(&w);
        let s: f64 = g.iter().map(|x| x * x).sum();
        let qq: f64 = (0..n).map(|i| h[i] * g[i] * g[i]).sum();
        let exact = s / qq;
        let d = device();

        let mut run = |dtype: DType| {
            let params = vec![Tensor::from_data(
                TensorData::new(w.clone(), [n]),
                (&d, dtype),
            )];
            let (loss, grads) = problem.loss_and_grad_at(&params);
            let mut opt = GortiRavaut::new(&GortiRavautConfig::default());
            let out = opt.step(StepInput {
                params,
                loss,
                grads,
                probe: &mut problem,
                holdout: None,
            });
            (opt.current_lr(), out.diagnostics[2])
        };
        let (eta64, fpp64) = run(DType::F64);
        let (eta32, fpp32) = run(DType::F32);
        assert!(loss > 0.5 && loss < 10.0, "loss {loss}");
        assert!(rel(eta64, exact) < 1e-6, "f64: η {eta64} vs {exact}");
        assert!(rel(fpp64, qq) < 1e-4, "f64: f'' {fpp64} vs {qq}");
        // f32: the curvature estimate is rounding noise, and so is the new η. (On ndarray the
        // four outer probes round to the same f32 loss as f(η): den = 0, guarded to δ, and η
        // lands near 0.022 instead of 0.605.)
        assert!(rel(fpp32, qq) > 0.5, "f32: f'' {fpp32} vs {qq}");
        assert!(rel(eta32, exact) > 0.5, "f32: η {eta32} vs {exact}");
    }

    #[test]
    fn probes_below_f32_resolution_are_counted_and_warned_once() {
        // Weights near 1, η = 0.01, ε = 1e-10: η ± ε and η ± 2ε round to the same f32 scalar as
        // η, so every probe sees the same shifted weights and returns the same loss, which is
        // not the batch loss (w − η·g itself is measurable).
        let n = 16;
        let h: Vec<f64> = (0..n).map(|i| 0.5 + 0.1 * i as f64).collect();
        let c: Vec<f64> = (0..n).map(|i| 0.4 - 0.03 * i as f64).collect();
        let w: Vec<f64> = (0..n).map(|i| 1.0 + 0.01 * i as f64).collect();
        let mut problem = Shifted { h, c };
        let d = device();
        let mut step = |opt: &mut GortiRavaut, dtype: DType| {
            let params = vec![Tensor::from_data(
                TensorData::new(w.clone(), [n]),
                (&d, dtype),
            )];
            let (loss, grads) = problem.loss_and_grad_at(&params);
            opt.step(StepInput {
                params,
                loss,
                grads,
                probe: &mut problem,
                holdout: None,
            })
        };
        let first_fd = |c: &mut GortiRavautConfig| {
            c.order = GortiRavautOrder::First;
            c.derivative = GortiRavautDerivative::FiniteDifference;
        };
        for (fd, unmeasured) in [
            (false, Unmeasured::Paper),
            (false, Unmeasured::Exact),
            (true, Unmeasured::Paper),
            (true, Unmeasured::Exact),
        ] {
            let cfg = config(|c| {
                if fd {
                    first_fd(c);
                }
                c.eps = 1e-10;
                c.beta = 0.9;
                c.unmeasured = unmeasured;
            });
            let mut opt = GortiRavaut::new(&cfg);
            opt.d = 0.05;
            let out = step(&mut opt, DType::F32);
            let what = format!("fd {fd}, {unmeasured:?}");
            assert_eq!(out.diagnostics[3], 1.0, "{what}: unmeasured");
            assert_eq!(out.diagnostics[1], 0.0, "{what}: f' reads 0");
            assert_eq!(out.lr, 0.01);
            let (eta, dd) = match unmeasured {
                // The η step is 0; the momentum still moves η.
                Unmeasured::Paper => (0.01 + 0.9 * 0.05, 0.9 * 0.05),
                Unmeasured::Exact => (0.01, 0.05),
            };
            assert!(
                (opt.current_lr() - eta).abs() < 1e-15,
                "{what}: η {}",
                opt.current_lr()
            );
            assert!((opt.d - dd).abs() < 1e-15, "{what}: d {}", opt.d);
            let warning = out.warning.expect("the first unmeasured step warns");
            for part in [
                "gorti_ravaut",
                "rounding",
                "run.precision = \"f64\"",
                "optimizer.eps",
                "optimizer.unmeasured = \"exact\"",
            ] {
                assert!(
                    warning.contains(part),
                    "{what}: {part:?} missing: {warning}"
                );
            }
            assert_eq!(warning.contains("same_batch"), fd, "{warning}");
            let out = step(&mut opt, DType::F32);
            assert_eq!(out.diagnostics[3], 1.0);
            assert!(out.warning.is_none(), "{what}: warned once only");

            // In f64 the same probes differ: measured, no warning.
            let mut opt = GortiRavaut::new(&cfg);
            let out = step(&mut opt, DType::F64);
            assert_eq!(out.diagnostics[3], 0.0, "{what}");
            assert!(out.warning.is_none());
        }
        // same_batch measures f' from a gradient: never unmeasured, even here.
        let mut opt = GortiRavaut::new(&config(|c| {
            c.order = GortiRavautOrder::First;
            c.eps = 1e-10;
        }));
        let out = step(&mut opt, DType::F32);
        assert_eq!(out.diagnostics[3], 0.0);
        assert!(out.warning.is_none());
    }

    #[test]
    fn measurable_probes_and_zero_gradients_are_not_counted() {
        let d = device();
        let q = quadratic();
        for order in [GortiRavautOrder::Second, GortiRavautOrder::First] {
            for derivative in [
                GortiRavautDerivative::SameBatch,
                GortiRavautDerivative::NextBatch,
                GortiRavautDerivative::FiniteDifference,
            ] {
                let mut opt = GortiRavaut::new(&config(|c| {
                    c.order = order;
                    c.derivative = derivative;
                    c.eps = 1e-3;
                }));
                for theta in [THETA, [0.0; 3]] {
                    let out = step_with(&mut opt, &q, &list(&[&theta], &d));
                    assert_eq!(out.diagnostics.len(), 4);
                    assert_eq!(
                        out.diagnostics[3], 0.0,
                        "{order:?} {derivative:?} {theta:?}"
                    );
                    assert!(out.warning.is_none());
                }
            }
        }
        let cfg: GortiRavautConfig = toml::from_str("unmeasured = \"exact\"").unwrap();
        assert_eq!(cfg.unmeasured, Unmeasured::Exact);
        let text = toml::to_string(&GortiRavautConfig::default()).unwrap();
        assert!(text.contains("unmeasured = \"paper\""), "{text}");
        assert_eq!(
            toml::from_str::<GortiRavautConfig>(&text).unwrap(),
            GortiRavautConfig::default()
        );
    }

    #[test]
    fn precision_warning_for_finite_differences_below_f64() {
        let second = GortiRavaut::new(&GortiRavautConfig::default());
        let warning = second.precision_warning(DType::F32).expect("f32 warns");
        assert!(warning.contains("run.precision = \"f64\""), "{warning}");
        assert!(warning.contains("optimizer.eps"), "{warning}");
        assert!(second.precision_warning(DType::F64).is_none());
        let fd = GortiRavaut::new(&config(|c| {
            c.order = GortiRavautOrder::First;
            c.derivative = GortiRavautDerivative::FiniteDifference;
        }));
        assert!(fd.precision_warning(DType::F32).is_some());
        let exact = GortiRavaut::new(&config(|c| c.order = GortiRavautOrder::First));
        assert!(exact.precision_warning(DType::F32).is_none());
    }

    #[test]
    fn state_round_trips_with_momentum_and_the_previous_gradient() {
        let d = device();
        let q = quadratic();
        for cfg in [
            config(|c| c.beta = 0.9),
            config(|c| {
                c.order = GortiRavautOrder::First;
                c.derivative = GortiRavautDerivative::NextBatch;
                c.beta = 0.9;
                c.alpha = 1e-2;
            }),
        ] {
            let mut opt = GortiRavaut::new(&cfg);
            let mut params = list(&[&THETA], &d);
            for _ in 0..2 {
                params = step_with(&mut opt, &q, &params).params;
            }
            let state = opt.state();
            assert_eq!(
                state.buffers.contains_key("prev_grad"),
                cfg.derivative == GortiRavautDerivative::NextBatch
                    && cfg.order == GortiRavautOrder::First
            );
            let mut restored = GortiRavaut::new(&cfg);
            restored.load_state(&state, &d, DType::F64).unwrap();
            assert_eq!(host(&restored.state()), host(&state));
            let a = step_with(&mut opt, &q, &params);
            let b = step_with(&mut restored, &q, &params);
            assert_eq!(values(&a.params), values(&b.params));
            assert_eq!(opt.current_lr(), restored.current_lr());
            assert_eq!(a.diagnostics[..2], b.diagnostics[..2]);
        }
        let err = GortiRavaut::new(&GortiRavautConfig::default())
            .load_state(&OptimizerState::new("sgd"), &d, DType::F64)
            .unwrap_err();
        assert!(err.to_string().contains("gorti_ravaut"));
    }

    #[test]
    fn config_parses_with_paper_defaults_and_validates_naming_keys() {
        let cfg: GortiRavautConfig =
            toml::from_str("order = \"first\"\nderivative = \"next_batch\"").unwrap();
        assert_eq!(cfg.order, GortiRavautOrder::First);
        assert_eq!(cfg.derivative, GortiRavautDerivative::NextBatch);
        assert_eq!(
            (cfg.lr, cfg.eps, cfg.delta, cfg.alpha),
            (0.01, 1e-5, 1e-6, 1e-6)
        );
        assert_eq!((cfg.beta, cfg.den_threshold), (0.0, 0.0));
        assert_eq!(cfg.probe, GortiRavautProbe::TrainBatch);
        assert!(toml::from_str::<GortiRavautConfig>("order = \"third\"").is_err());
        assert!(toml::from_str::<GortiRavautConfig>("momentum = 0.9").is_err());
        let cases: [(&str, GortiRavautConfig); 7] = [
            ("optimizer.lr", config(|c| c.lr = 0.0)),
            ("optimizer.eps", config(|c| c.eps = -1e-5)),
            ("optimizer.delta", config(|c| c.delta = 0.0)),
            (
                "optimizer.den_threshold",
                config(|c| c.den_threshold = -1.0),
            ),
            ("optimizer.beta", config(|c| c.beta = 1.0)),
            ("optimizer.alpha", config(|c| c.alpha = f64::NAN)),
            (
                "optimizer.probe",
                config(|c| {
                    c.order = GortiRavautOrder::First;
                    c.derivative = GortiRavautDerivative::NextBatch;
                    c.probe = GortiRavautProbe::Validation;
                }),
            ),
        ];
        for (key, cfg) in cases {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        assert!(GortiRavautConfig::default().validate().is_ok());
    }
}
