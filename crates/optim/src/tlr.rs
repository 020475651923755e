//! Trainable Learning Rate (TLR): the step size is trained along with the weights.
//!
//! "Trainable Learning Rate" (ICLR 2022 submission; `002_407a299e0b30868a.txt`). With
//! L_α(α; w) = L(w − α·∇L(w)) (Eq. 2), ∂L_α/∂α = −⟨g_t, g_{t−1}⟩ (Eq. 7) and
//! ∂²L_α/∂α² = (4/α)·⟨g_t, g_t − g_{t−1}⟩ (Eq. 8); a bounded Newton step on α (Eq. 9) gives
//! α ← α·(1 + ratio(p, q, c)) with p = ⟨g_t, g_{t−1}⟩ and q = ‖g_t‖² − p, where
//!
//! ```text
//! ratio(p, q, c):                    # = Eq. 9's p / max(4q, p/c), defined everywhere
//!   p > 0:  q > 0 ? min(p/(4q), c) : c
//!   p < 0:  p/(4q)                   # q = ‖g_t‖² − p > 0 here; the result is in [−1/4, 0)
//!   p = 0:  0
//! ```
//!
//! # Kinds
//! **`gd_tlr`** ([`GdTlr`]): gradient descent on the current gradient, three variants.
//!
//! ```text
//! efficient (Alg. 2, default):  g_{−1} = 0
//!   g = ∇L(w);  p = ⟨g, g_prev⟩;  q = ‖g‖² − p
//!   α ← α·(1 + ratio(p, q, c));  w ← w − α·g    # the NEW α
//!   g_prev ← g                                  # cost 1F + 1B
//! naive (Alg. 1, Eq. 3 with Eq. 5-7):
//!   g = ∇L(w);  h = ∇L(w − α·g) on the SAME batch   # extra 1F + 1B through the probe
//!   α ← α + η·⟨h, g⟩;  w ← w − α·g              # the NEW α; cost 2F + 2B
//! fixed_eta (App. D.4):  g_{−1} = 0
//!   α ← max(0, α + η·⟨g, g_prev⟩);  w ← w − α·g;  g_prev ← g   # cost 1F + 1B
//! ```
//!
//! Diagnostics: `ratio`, `alpha`, `grad_dot`, `grad_sq_norm` (as [`GdTlr`]'s
//! `diagnostic_names` describes them) and `unmeasured`: 1 for an unmeasured naive step (below),
//! 0 otherwise (always 0 for `efficient` and `fixed_eta`, which probe nothing); NaN on a skipped
//! step.
//!
//! *Unmeasured naive steps.* A naive step is unmeasured when α·‖g‖² ≠ 0 and the probe's loss at
//! w − α·g equals the batch loss bit for bit: the shifted weights are within the rounding of w at
//! the run's precision (a tiny α). Then h is (up to the few weights that did move) the gradient at
//! w itself, ⟨h, g⟩ = ‖g‖², and α ← α + η·‖g‖²: that is already what exact arithmetic gives for
//! a small α (⟨∇L(w − α·g), g⟩ = ‖g‖² − α·gᵀHg + O(α²) → ‖g‖²), so the rule does not stall, but
//! α grows only additively while the weights barely move. There is therefore no
//! `unmeasured = "exact"` option for `gd_tlr`; the step is counted in `unmeasured`, and the first
//! one of the run returns a warning ([`StepOutput::warning`]) with the remedies,
//! `run.precision = "f64"` or a larger `optimizer.lr` (α0).
//!
//! **`sgd_tlr`** ([`SgdTlr`]): the SGD extension (Sec. 4, Eq. 10) used in all the paper's
//! experiments. The weights follow momentum SGD at the window's α; α changes once per window of
//! K = max(1, ⌊p·N⌋) updates (N = batches per epoch), with the window's accumulated direction
//! standing in for the full-batch gradient:
//!
//! ```text
//! every step:  d = g + λ·θ;  buf ← μ·buf + d (buf = d at the first step);  θ ← θ − α·buf
//! after the K-th update since the anchor (the window closes on that step, after its update):
//!   G = (w_anchor − θ)/α                       # Eq. 10: Σ over the window of the steps / α
//!   if G_prev exists:  p = ⟨G, G_prev⟩;  α ← α·(1 + ratio(p, ‖G‖² − p, c))
//!   G_prev ← G;  w_anchor ← θ                  # w_anchor = the initial weights at first
//! ```
//!
//! Cost 1F + 1B. The new α applies from the next update, so the `lr` column of a closing step
//! is the α the whole window used.
//!
//! **`sgd_tlr_pl`** ([`SgdTlrPerLayer`]): the same with one α per parameter tensor (Sec. 3
//! "Per-layer learning rate", App. D.2): θ_i ← θ_i − α_i·buf_i, G_i = (w_anchor,i − θ_i)/α_i,
//! α_i ← α_i·(1 + ratio(⟨G_i, G_prev,i⟩, ‖G_i‖² − ⟨G_i, G_prev,i⟩, c)). Cost 1F + 1B.
//!
//! # Defaults
//! α0 (`lr`) = 0.1: the α0 of the paper's ablations (App. D.3, D.4, Figs. 8, 9, 16; Fig. 1 shows
//! the method is robust over 1e-3…1e-1). c = 1/4 (Sec. 3). η (`eta`) = 1e-3: the paper gives no
//! value for App. D.4 and equates η with Baydin et al.'s β, whose grid in Fig. 2 is
//! {1e-5, 1e-4, 1e-3}; 1e-3 is also this project's SGD-HD default. `sgd_tlr`: momentum 0.8,
//! weight decay 5e-4, p = 0.33 (App. D).
//!
//! # Choices of this project (ALGORITHMS.md §3)
//! - The ratio is the spec's piecewise form of Eq. 9; Alg. 2's literal `min(p/max(4q, 0), c)`
//!   is 0/0 at p = 0, q ≤ 0 (e.g. a zero gradient); here that is 0 (α unchanged).
//! - §2 of the paper quotes Baydin et al. as Δα = −β·⟨g_t, g_{t−1}⟩: that sign is reversed; the
//!   naive and fixed-η updates here increase α when consecutive gradients agree.
//! - The naive variant has no clamp (Alg. 1 has none): α may fall below 0 for a large η.
//! - Weight decay is coupled (added to the gradient, as PyTorch's SGD); the paper does not say.
//! - p = 0.33 as the spec reads Sec. 4; App. D writes 1/3. ⌊p·N⌋ can differ by one (N = 300:
//!   99 against 100). K is at least 1 (p·N < 1 updates α after every step).
//! - Windows count updates, not epochs: they run across epoch boundaries, and a changed N takes
//!   effect on the open window (it closes once its update count reaches the new K). Before
//!   `begin_epoch` is first called N is unknown and K = 1: α adapts after every update, which is
//!   efficient GD-TLR on the momentum direction (G = buf).
//! - The first window has no G_prev: α stays α0 until the second window closes.
//! - The per-layer variant gives every parameter tensor its own α, batch-norm tensors included
//!   (the paper names convolution, linear and bias tensors). Its `lr` column is the mean α
//!   weighted by the tensors' sizes (the α that moves an average weight); `layers.csv` gets each
//!   tensor's α ([`StepSizeOptimizer::per_tensor_name`] = `alpha`).
//! - G is computed as Eq. 10 writes it, from the weights. In f32 the difference w_anchor − θ
//!   carries the weights' rounding (≈ 6e-8·|θ| per value); accumulating Σ buf instead would
//!   avoid it but is not what the paper does.
//! - Robustness: a non-finite loss, or a non-finite ‖g‖² or inner product the step needs, skips
//!   the update: weights, α and every buffer stay as they were, the diagnostics are NaN. The
//!   naive variant also skips when the probe's loss is not finite. `sgd_tlr` and `sgd_tlr_pl`
//!   read numbers back only when a window closes (‖g‖², ‖G‖², ⟨G, G_prev⟩ in one sync), so the
//!   other steps cost what a momentum-SGD step costs; there a non-finite gradient reaches the
//!   weights as it would with `sgd`, and the next step's non-finite loss ends the run as
//!   diverged.

use burn::Tensor;
use burn::tensor::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::api::{OptimizerState, StepInput, StepOutput, StepSizeOptimizer};
use crate::sgd::with_weight_decay;
use crate::unmeasured::{self, OnceWarning};
use crate::vector::{self, ParamList};
use crate::{OptimError, check_in_unit, check_non_negative, check_positive};

/// Eq. 9's bounded Newton factor: α_new = α·(1 + ratio(p, q, c)).
///
/// `p` = ⟨g_t, g_{t−1}⟩, `q` = ⟨g_t, g_t − g_{t−1}⟩ = ‖g_t‖² − p (a multiple of ∂²L_α/∂α²),
/// `c` > 0 the cap on the relative increase. The result lies in [−1/4, c] whenever q = s − p for
/// some s ≥ 0 (then p < 0 implies q ≥ −p > 0); NaN inputs give 0 (callers check finiteness).
pub fn ratio(p: f64, q: f64, c: f64) -> f64 {
    if p > 0.0 {
        if q > 0.0 { (p / (4.0 * q)).min(c) } else { c }
    } else if p < 0.0 {
        p / (4.0 * q)
    } else {
        0.0
    }
}

/// The window length K = max(1, ⌊p·N⌋); K = 1 while N is unknown.
fn window_len(p: f64, batches_per_epoch: Option<usize>) -> usize {
    match batches_per_epoch {
        // `as` saturates; p and N are finite and non-negative.
        Some(n) => ((p * n as f64).floor() as usize).max(1),
        None => 1,
    }
}

/// Per-tensor inner products for several pairs of lists, in one sync: `out[k][i]` = ⟨a_k,i, b_k,i⟩.
fn dots_per_tensor(pairs: &[(&[Tensor<1>], &[Tensor<1>])]) -> Vec<Vec<f64>> {
    let singles: Vec<(&[Tensor<1>], &[Tensor<1>])> = pairs
        .iter()
        .flat_map(|(a, b)| {
            assert_eq!(a.len(), b.len(), "parameter lists differ in length");
            (0..a.len()).map(move |i| (&a[i..=i], &b[i..=i]))
        })
        .collect();
    let flat = vector::dots(&singles); // SYNC: one read-back for every pair and tensor.
    let mut out = Vec::with_capacity(pairs.len());
    let mut at = 0;
    for (a, _) in pairs {
        out.push(flat[at..at + a.len()].to_vec());
        at += a.len();
    }
    out
}

fn check_c(c: f64) -> Result<(), OptimError> {
    check_positive("optimizer.c", c)
}

// ---------------------------------------------------------------------------------------------
// gd_tlr
// ---------------------------------------------------------------------------------------------

/// Which GD-TLR update [`GdTlr`] runs (`optimizer.variant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GdTlrVariant {
    /// Alg. 2: the bounded Newton step on α from consecutive gradients (no η, no extra pass).
    #[default]
    Efficient,
    /// Alg. 1: a gradient step on α with the gradient at w − α·g on the same batch (extra F+B).
    Naive,
    /// App. D.4: α ← max(0, α + η·⟨g_t, g_{t−1}⟩).
    FixedEta,
}

/// Settings of [`GdTlr`], as `[optimizer]` keys with `kind = "gd_tlr"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GdTlrConfig {
    /// Initial step size α0 (default 0.1, the α0 of the paper's ablations).
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// `efficient` (Alg. 2, default), `naive` (Alg. 1) or `fixed_eta` (App. D.4).
    #[serde(default)]
    pub variant: GdTlrVariant,
    /// Cap c of Eq. 9 on the relative increase of α per update (default 1/4); `efficient` only.
    #[serde(default = "default_c")]
    pub c: f64,
    /// Hyper-learning rate η of Eq. 3 (default 1e-3); `naive` and `fixed_eta` only.
    #[serde(default = "GdTlrConfig::default_eta")]
    pub eta: f64,
}

fn default_lr() -> f64 {
    0.1
}

fn default_c() -> f64 {
    0.25
}

impl GdTlrConfig {
    fn default_eta() -> f64 {
        1e-3
    }

    /// Checks the settings; errors name the config key.
    pub fn validate(&self) -> Result<(), OptimError> {
        check_positive("optimizer.lr", self.lr)?;
        check_c(self.c)?;
        check_positive("optimizer.eta", self.eta)
    }
}

impl Default for GdTlrConfig {
    fn default() -> Self {
        Self {
            lr: default_lr(),
            variant: GdTlrVariant::default(),
            c: default_c(),
            eta: Self::default_eta(),
        }
    }
}

/// GD-TLR (Alg. 1, Alg. 2, App. D.4). See the module documentation for the update rules.
#[derive(Debug, Clone)]
pub struct GdTlr {
    config: GdTlrConfig,
    /// α: the step size of the latest update (α0 before the first); the next update rescales it.
    alpha: f64,
    /// g_{t−1}, the previous update's gradient (`efficient`, `fixed_eta`); `None` stands for
    /// g_{−1} = 0 before the first update, and always for `naive`.
    prev_grad: Option<ParamList>,
    /// Whether the unmeasured-step warning was given (`naive`; saved state: a resumed run does
    /// not repeat it).
    warning: OnceWarning,
}

impl GdTlr {
    /// A GD-TLR optimizer starting at α = `config.lr`.
    pub fn new(config: &GdTlrConfig) -> Self {
        Self {
            config: config.clone(),
            alpha: config.lr,
            prev_grad: None,
            warning: OnceWarning::default(),
        }
    }
}

/// Diagnostics of [`GdTlr`].
const GD_TLR_COLUMNS: &[&str] = &["ratio", "alpha", "grad_dot", "grad_sq_norm", "unmeasured"];

impl StepSizeOptimizer for GdTlr {
    fn kind(&self) -> &'static str {
        "gd_tlr"
    }

    /// `ratio`: Eq. 9's factor (NaN for `naive` and `fixed_eta`); `alpha`: α after the update
    /// (the step size it used); `grad_dot`: ⟨g_t, g_{t−1}⟩, or ⟨h, g⟩ for `naive`;
    /// `grad_sq_norm`: ‖g‖²; `unmeasured`: 1 when the naive probe's loss equals the batch loss
    /// exactly (see the module documentation), else 0.
    fn diagnostic_names(&self) -> &'static [&'static str] {
        GD_TLR_COLUMNS
    }

    fn step(&mut self, input: StepInput<'_>) -> StepOutput {
        let StepInput {
            params,
            loss,
            grads,
            probe,
            ..
        } = input;
        let alpha = self.alpha;
        let skip = |params| StepOutput::skipped(params, alpha, GD_TLR_COLUMNS.len());
        if !loss.is_finite() {
            return skip(params);
        }
        let mut unmeasured = false;
        let (new_alpha, r, dot, s) = match self.config.variant {
            GdTlrVariant::Efficient | GdTlrVariant::FixedEta => {
                let (p, s) = match &self.prev_grad {
                    Some(prev) => {
                        let v = vector::dots(&[(&grads, prev), (&grads, &grads)]); // SYNC
                        (v[0], v[1])
                    }
                    None => (0.0, vector::sq_norm(&grads)), // SYNC; g_{−1} = 0
                };
                if !(p.is_finite() && s.is_finite()) {
                    return skip(params);
                }
                if self.config.variant == GdTlrVariant::Efficient {
                    let r = ratio(p, s - p, self.config.c);
                    (alpha * (1.0 + r), r, p, s)
                } else {
                    ((alpha + self.config.eta * p).max(0.0), f64::NAN, p, s)
                }
            }
            GdTlrVariant::Naive => {
                let shifted = vector::add_scaled(&params, &grads, -alpha);
                // SYNC: the extra forward and backward pass, on the same batch.
                let (shifted_loss, h) = probe.loss_and_grad_at(&shifted);
                if !shifted_loss.is_finite() {
                    return skip(params);
                }
                let v = vector::dots(&[(&h, &grads), (&grads, &grads)]); // SYNC
                let (hg, s) = (v[0], v[1]);
                if !(hg.is_finite() && s.is_finite()) {
                    return skip(params);
                }
                // The probe moved the weights by α·g ≠ 0, yet returned the batch loss itself.
                unmeasured = shifted_loss == loss && alpha != 0.0 && s > 0.0;
                (alpha + self.config.eta * hg, f64::NAN, hg, s)
            }
        };
        if !new_alpha.is_finite() {
            // Reported as the update's step size: the trainer records the run as diverged.
            return StepOutput::skipped(params, new_alpha, GD_TLR_COLUMNS.len());
        }
        let params = vector::scaled_add(params, 1.0, &grads, -new_alpha);
        self.alpha = new_alpha;
        if self.config.variant != GdTlrVariant::Naive {
            self.prev_grad = Some(grads);
        }
        let warning = self.warning.check(unmeasured, || {
            format!(
                "gd_tlr (naive): the loss at the shifted weights w − α·g equals the batch loss \
                 {loss} exactly at α = {alpha:e} (α·‖g‖² = {lred:e}): {cause}. The gradient \
                 there is the gradient at w, so α grows only by η·‖g‖² per step (what exact \
                 arithmetic gives for so small an α) while the weights barely move. Remedies: \
                 run.precision = \"f64\" or a larger optimizer.lr (α0). {counted}",
                lred = alpha * s,
                cause = unmeasured::CAUSE,
                counted = unmeasured::COUNTED,
            )
        });
        StepOutput::new(
            params,
            new_alpha,
            vec![r, new_alpha, dot, s, unmeasured::column(unmeasured)],
        )
        .with_warning(warning)
    }

    /// The current α; the next `efficient`/`fixed_eta`/`naive` update rescales it before use.
    fn current_lr(&self) -> f64 {
        self.alpha
    }

    fn state(&self) -> OptimizerState {
        let state = self
            .warning
            .save(OptimizerState::new(self.kind()).with_scalar("alpha", self.alpha));
        match &self.prev_grad {
            Some(g) => state.with_buffer("prev_grad", g),
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
        if !alpha.is_finite() {
            return Err(OptimError::StateMismatch(format!(
                "`alpha` must be a finite number, got {alpha}"
            )));
        }
        self.prev_grad = state.optional_buffer("prev_grad", device, dtype)?;
        self.warning = OnceWarning::load(state)?;
        self.alpha = alpha;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// sgd_tlr and sgd_tlr_pl
// ---------------------------------------------------------------------------------------------

/// Settings of [`SgdTlr`] (`kind = "sgd_tlr"`) and [`SgdTlrPerLayer`] (`kind = "sgd_tlr_pl"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgdTlrConfig {
    /// Initial step size α0 (default 0.1, the α0 of the paper's ablations).
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Heavy-ball momentum μ of the base optimizer (default 0.8, App. D).
    #[serde(default = "SgdTlrConfig::default_momentum")]
    pub momentum: f64,
    /// Coupled L2 weight decay λ of the base optimizer (default 5e-4, App. D).
    #[serde(default = "SgdTlrConfig::default_weight_decay")]
    pub weight_decay: f64,
    /// Update frequency p: α changes every ⌊p·N⌋ updates, N = batches per epoch (default 0.33,
    /// Sec. 4; App. D writes 1/3).
    #[serde(default = "SgdTlrConfig::default_p")]
    pub p: f64,
    /// Cap c of Eq. 9 on the relative increase of α per window (default 1/4).
    #[serde(default = "default_c")]
    pub c: f64,
}

impl SgdTlrConfig {
    fn default_momentum() -> f64 {
        0.8
    }
    fn default_weight_decay() -> f64 {
        5e-4
    }
    fn default_p() -> f64 {
        0.33
    }

    /// Checks the settings; errors name the config key.
    pub fn validate(&self) -> Result<(), OptimError> {
        check_positive("optimizer.lr", self.lr)?;
        check_in_unit("optimizer.momentum", self.momentum)?;
        check_non_negative("optimizer.weight_decay", self.weight_decay)?;
        check_positive("optimizer.p", self.p)?;
        check_c(self.c)
    }
}

impl Default for SgdTlrConfig {
    fn default() -> Self {
        Self {
            lr: default_lr(),
            momentum: Self::default_momentum(),
            weight_decay: Self::default_weight_decay(),
            p: Self::default_p(),
            c: default_c(),
        }
    }
}

/// The window machinery shared by [`SgdTlr`] (one α) and [`SgdTlrPerLayer`] (one α per tensor).
#[derive(Debug, Clone)]
struct Windows {
    config: SgdTlrConfig,
    /// One α for the whole model, or one per parameter tensor.
    per_tensor: bool,
    /// The α of the current window: one entry, or one per tensor; empty before the first step
    /// when per tensor (the tensor count is learned then).
    alphas: Vec<f64>,
    /// Momentum buffer; `None` before the first step.
    buf: Option<ParamList>,
    /// w_anchor: the weights when the current window opened; `None` before the first step.
    anchor: Option<ParamList>,
    /// G_prev: the last closed window's direction (w_anchor − θ)/α; `None` until one closes.
    prev_window: Option<ParamList>,
    /// Updates taken since `anchor`.
    steps_in_window: usize,
    /// N, from `begin_epoch`; `None` until it is called (then K = 1).
    batches_per_epoch: Option<usize>,
}

/// What one windowed update did (when it was not skipped).
struct WindowStep {
    params: ParamList,
    /// The α each group used in this update.
    used: Vec<f64>,
    /// Eq. 9's factor per group when a window closed with a G_prev; `None` otherwise.
    ratios: Option<Vec<f64>>,
    /// ‖g‖² of the batch gradient.
    grad_sq_norm: f64,
}

impl Windows {
    fn new(config: &SgdTlrConfig, per_tensor: bool) -> Self {
        Self {
            config: config.clone(),
            per_tensor,
            alphas: if per_tensor {
                Vec::new()
            } else {
                vec![config.lr]
            },
            buf: None,
            anchor: None,
            prev_window: None,
            steps_in_window: 0,
            batches_per_epoch: None,
        }
    }

    /// The α of each group the next update uses (α0 before the first step).
    fn current(&self) -> Vec<f64> {
        if self.alphas.is_empty() {
            vec![self.config.lr]
        } else {
            self.alphas.clone()
        }
    }

    /// One update; `None` when skipped (non-finite numbers), with every field unchanged.
    fn step(&mut self, params: ParamList, loss: f64, grads: ParamList) -> Option<WindowStep> {
        if !loss.is_finite() {
            return None;
        }
        let alphas = if self.alphas.is_empty() {
            vec![self.config.lr; params.len()]
        } else {
            self.alphas.clone()
        };
        if self.per_tensor {
            assert_eq!(alphas.len(), params.len(), "parameter count changed");
        }
        let alpha_of = |i: usize| {
            if self.per_tensor {
                alphas[i]
            } else {
                alphas[0]
            }
        };
        let SgdTlrConfig {
            momentum,
            weight_decay,
            p,
            c,
            ..
        } = self.config;

        let d = with_weight_decay(grads.clone(), &params, weight_decay);
        let buf = match &self.buf {
            Some(old) => vector::add_scaled_owned(d, old.clone(), momentum),
            None => d,
        };
        let anchor = self.anchor.clone().unwrap_or_else(|| params.clone());
        // `params` is consumed, so the backend can update the weights in place.
        let moved: ParamList = params
            .into_iter()
            .zip(&buf)
            .enumerate()
            .map(|(i, (w, b))| w.add(b.clone().mul_scalar(-alpha_of(i))))
            .collect();
        let closes = self.steps_in_window + 1 >= window_len(p, self.batches_per_epoch);
        let window: Option<ParamList> = closes.then(|| {
            anchor
                .iter()
                .zip(&moved)
                .enumerate()
                .map(|(i, (a, w))| a.clone().sub(w.clone()).div_scalar(alpha_of(i)))
                .collect()
        });

        // SYNC, only when a window closes: ‖g_i‖², ‖G_i‖² and ⟨G_i, G_prev,i⟩. Other steps read
        // nothing back, so they cost what a momentum-SGD step costs; a non-finite gradient there
        // reaches the weights as it would with SGD (and the next loss is non-finite).
        let products = match &window {
            Some(g) => {
                let mut pairs: Vec<(&[Tensor<1>], &[Tensor<1>])> = vec![(&grads, &grads), (g, g)];
                if let Some(prev) = &self.prev_window {
                    pairs.push((g, prev));
                }
                dots_per_tensor(&pairs)
            }
            None => Vec::new(),
        };
        let grad_sq_norm: f64 = match products.first() {
            Some(per_tensor) => per_tensor.iter().sum(),
            None => f64::NAN,
        };
        if closes && !grad_sq_norm.is_finite() {
            return None;
        }

        let mut new_alphas = alphas.clone();
        let mut ratios = None;
        if closes && products.len() == 3 {
            // One group per tensor, or one group summing every tensor.
            let group = |v: &[f64]| -> Vec<f64> {
                if self.per_tensor {
                    v.to_vec()
                } else {
                    vec![v.iter().sum()]
                }
            };
            let (s, dot) = (group(&products[1]), group(&products[2]));
            if s.iter().chain(&dot).any(|x| !x.is_finite()) {
                return None;
            }
            let r: Vec<f64> = dot
                .iter()
                .zip(&s)
                .map(|(&pk, &sk)| ratio(pk, sk - pk, c))
                .collect();
            for (a, rk) in new_alphas.iter_mut().zip(&r) {
                *a *= 1.0 + rk;
            }
            if new_alphas.iter().any(|a| !a.is_finite()) {
                return None;
            }
            ratios = Some(r);
        } else if closes && products[1].iter().any(|x| !x.is_finite()) {
            return None;
        }

        // Commit.
        self.alphas = new_alphas;
        self.buf = Some(buf);
        if let Some(g) = window {
            self.prev_window = Some(g);
            self.anchor = Some(moved.clone());
            self.steps_in_window = 0;
        } else {
            self.anchor = Some(anchor);
            self.steps_in_window += 1;
        }
        Some(WindowStep {
            params: moved,
            used: alphas,
            ratios,
            grad_sq_norm,
        })
    }

    fn state(&self, kind: &str) -> OptimizerState {
        let mut state = OptimizerState::new(kind)
            .with_scalar("steps_in_window", self.steps_in_window as f64)
            .with_scalar("tensors_with_alpha", self.alphas.len() as f64);
        if let Some(n) = self.batches_per_epoch {
            state = state.with_scalar("batches_per_epoch", n as f64);
        }
        for (i, a) in self.alphas.iter().enumerate() {
            state = state.with_scalar(&format!("alpha.{i}"), *a);
        }
        for (name, list) in [
            ("momentum", &self.buf),
            ("anchor", &self.anchor),
            ("prev_window", &self.prev_window),
        ] {
            if let Some(list) = list {
                state = state.with_buffer(name, list);
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
        let count = |name: &str| -> Result<usize, OptimError> {
            let v = state.scalar(name)?;
            if v.is_finite() && v >= 0.0 && v.fract() == 0.0 {
                Ok(v as usize)
            } else {
                Err(OptimError::StateMismatch(format!(
                    "`{name}` must be a count, got {v}"
                )))
            }
        };
        let tensors = count("tensors_with_alpha")?;
        if !self.per_tensor && tensors != 1 {
            return Err(OptimError::StateMismatch(format!(
                "one α expected, the state has {tensors}"
            )));
        }
        let mut alphas = Vec::with_capacity(tensors);
        for i in 0..tensors {
            alphas.push(state.scalar(&format!("alpha.{i}"))?);
        }
        let buffer = |name: &str| state.optional_buffer(name, device, dtype);
        let (buf, anchor, prev_window) = (
            buffer("momentum")?,
            buffer("anchor")?,
            buffer("prev_window")?,
        );
        if self.per_tensor {
            for list in [&buf, &anchor, &prev_window].into_iter().flatten() {
                if list.len() != tensors {
                    return Err(OptimError::StateMismatch(format!(
                        "{tensors} step sizes but {} tensors in a buffer",
                        list.len()
                    )));
                }
            }
        }
        self.steps_in_window = count("steps_in_window")?;
        self.batches_per_epoch = if state.scalars.contains_key("batches_per_epoch") {
            Some(count("batches_per_epoch")?)
        } else {
            None
        };
        self.alphas = alphas;
        self.buf = buf;
        self.anchor = anchor;
        self.prev_window = prev_window;
        Ok(())
    }
}

/// SGD-TLR (Sec. 4, Eq. 10): momentum SGD whose single α is retrained once per window.
/// See the module documentation for the update rule.
#[derive(Debug, Clone)]
pub struct SgdTlr {
    windows: Windows,
}

impl SgdTlr {
    /// An SGD-TLR optimizer starting at α = `config.lr`.
    pub fn new(config: &SgdTlrConfig) -> Self {
        Self {
            windows: Windows::new(config, false),
        }
    }
}

/// Diagnostics of [`SgdTlr`].
const SGD_TLR_COLUMNS: &[&str] = &["ratio", "alpha", "grad_sq_norm"];

impl StepSizeOptimizer for SgdTlr {
    fn kind(&self) -> &'static str {
        "sgd_tlr"
    }

    /// `ratio`: Eq. 9's factor when a window closed with a previous one (NaN otherwise);
    /// `alpha`: α after this step (the next update's); `grad_sq_norm`: ‖g‖² of the batch on
    /// steps that close a window (NaN on the others: not read back).
    fn diagnostic_names(&self) -> &'static [&'static str] {
        SGD_TLR_COLUMNS
    }

    fn step(&mut self, input: StepInput<'_>) -> StepOutput {
        let alpha = self.windows.alphas[0];
        let params = input.params.clone();
        match self.windows.step(input.params, input.loss, input.grads) {
            None => StepOutput::skipped(params, alpha, SGD_TLR_COLUMNS.len()),
            Some(out) => {
                let r = out.ratios.map_or(f64::NAN, |r| r[0]);
                StepOutput::new(
                    out.params,
                    out.used[0],
                    vec![r, self.windows.alphas[0], out.grad_sq_norm],
                )
            }
        }
    }

    fn current_lr(&self) -> f64 {
        self.windows.alphas[0]
    }

    fn begin_epoch(&mut self, _epoch: usize, batches_per_epoch: usize) {
        self.windows.batches_per_epoch = Some(batches_per_epoch);
    }

    fn state(&self) -> OptimizerState {
        self.windows.state(self.kind())
    }

    fn load_state(
        &mut self,
        state: &OptimizerState,
        device: &Device,
        dtype: DType,
    ) -> Result<(), OptimError> {
        state.expect_kind(self.kind())?;
        self.windows.load_state(state, device, dtype)
    }
}

/// Per-layer SGD-TLR (Sec. 3, App. D.2): one α per parameter tensor, each retrained once per
/// window from its own tensor's inner products. See the module documentation.
#[derive(Debug, Clone)]
pub struct SgdTlrPerLayer {
    windows: Windows,
    /// Elements per tensor, for the size-weighted mean α of the `lr` column (learned at the
    /// first step; empty before).
    sizes: Vec<usize>,
}

impl SgdTlrPerLayer {
    /// A per-layer SGD-TLR optimizer with every α starting at `config.lr`.
    pub fn new(config: &SgdTlrConfig) -> Self {
        Self {
            windows: Windows::new(config, true),
            sizes: Vec::new(),
        }
    }

    /// Σ n_i·α_i / Σ n_i (the plain mean when there are no elements to weigh by).
    fn weighted_mean(&self, alphas: &[f64]) -> f64 {
        let total: usize = self.sizes.iter().sum();
        if self.sizes.len() == alphas.len() && total > 0 {
            alphas
                .iter()
                .zip(&self.sizes)
                .map(|(a, &n)| a * n as f64)
                .sum::<f64>()
                / total as f64
        } else {
            alphas.iter().sum::<f64>() / alphas.len().max(1) as f64
        }
    }
}

/// Diagnostics of [`SgdTlrPerLayer`].
const SGD_TLR_PL_COLUMNS: &[&str] = &[
    "alpha_min",
    "alpha_max",
    "ratio_min",
    "ratio_max",
    "grad_sq_norm",
];

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

impl StepSizeOptimizer for SgdTlrPerLayer {
    fn kind(&self) -> &'static str {
        "sgd_tlr_pl"
    }

    /// `alpha_min`, `alpha_max`: the smallest and largest α after this step (the next
    /// update's); `ratio_min`, `ratio_max`: over the tensors' Eq. 9 factors when a window closed
    /// with a previous one (NaN otherwise); `grad_sq_norm`: ‖g‖² of the batch on steps that close
    /// a window (NaN on the others: not read back).
    fn diagnostic_names(&self) -> &'static [&'static str] {
        SGD_TLR_PL_COLUMNS
    }

    fn per_tensor_name(&self) -> Option<&'static str> {
        Some("alpha")
    }

    fn step(&mut self, input: StepInput<'_>) -> StepOutput {
        if self.sizes.is_empty() {
            self.sizes = input.params.iter().map(|t| t.dims()[0]).collect();
        }
        let current = self.windows.current();
        let params = input.params.clone();
        match self.windows.step(input.params, input.loss, input.grads) {
            None => StepOutput::skipped(
                params,
                self.weighted_mean(&current),
                SGD_TLR_PL_COLUMNS.len(),
            ),
            Some(out) => {
                let (alpha_min, alpha_max) = min_max(&self.windows.alphas);
                let (ratio_min, ratio_max) =
                    out.ratios.as_deref().map_or((f64::NAN, f64::NAN), min_max);
                StepOutput::new(
                    out.params,
                    self.weighted_mean(&out.used),
                    vec![alpha_min, alpha_max, ratio_min, ratio_max, out.grad_sq_norm],
                )
                .with_per_tensor(out.used)
            }
        }
    }

    /// The size-weighted mean of the α's the next update uses.
    fn current_lr(&self) -> f64 {
        self.weighted_mean(&self.windows.current())
    }

    fn begin_epoch(&mut self, _epoch: usize, batches_per_epoch: usize) {
        self.windows.batches_per_epoch = Some(batches_per_epoch);
    }

    fn state(&self) -> OptimizerState {
        self.windows.state(self.kind())
    }

    fn load_state(
        &mut self,
        state: &OptimizerState,
        device: &Device,
        dtype: DType,
    ) -> Result<(), OptimError> {
        state.expect_kind(self.kind())?;
        self.windows.load_state(state, device, dtype)?;
        self.sizes = self
            .windows
            .anchor
            .as_ref()
            .map(|a| a.iter().map(|t| t.dims()[0]).collect())
            .unwrap_or_default();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LossProbe;
    use crate::testing::{Quadratic, device, host, list, step_with, values};

    // ---- host-side helpers (plain f64, independent of the implementation) --------------------

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// Eq. 9 as the paper writes it: α + α·p / max(4q, p/c), q = s − p (valid for p ≠ 0;
    /// Alg. 2's g_{−1} = 0 gives p = 0 and leaves α unchanged).
    fn eq9(alpha: f64, p: f64, s: f64, c: f64) -> f64 {
        if p == 0.0 {
            alpha
        } else {
            alpha + alpha * p / (4.0 * (s - p)).max(p / c)
        }
    }

    fn close(got: f64, want: f64, what: &str) {
        assert!(
            (got - want).abs() <= 1e-12 * want.abs().max(1e-300),
            "{what}: got {got}, want {want}"
        );
    }

    fn close_all(got: &[f64], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-12 * w.abs().max(1.0),
                "{what}[{i}]: got {g}, want {w}"
            );
        }
    }

    /// One step with an explicit loss and gradient (e.g. non-finite ones).
    fn step_raw(
        opt: &mut dyn StepSizeOptimizer,
        probe: &mut dyn LossProbe,
        params: &[Tensor<1>],
        loss: f64,
        grads: ParamList,
    ) -> StepOutput {
        opt.step(StepInput {
            params: params.to_vec(),
            loss,
            grads,
            probe,
            holdout: None,
        })
    }

    /// A quadratic probe that counts its gradient evaluations.
    struct Counting {
        q: Quadratic,
        grad_calls: usize,
    }

    impl LossProbe for Counting {
        fn loss_at(&mut self, params: &[Tensor<1>]) -> f64 {
            self.q.loss_at(params)
        }
        fn loss_and_grad_at(&mut self, params: &[Tensor<1>]) -> (f64, ParamList) {
            self.grad_calls += 1;
            self.q.loss_and_grad_at(params)
        }
    }

    fn gd(variant: GdTlrVariant, lr: f64, eta: f64) -> GdTlr {
        GdTlr::new(&GdTlrConfig {
            lr,
            variant,
            eta,
            ..GdTlrConfig::default()
        })
    }

    fn sgd_cfg(lr: f64) -> SgdTlrConfig {
        SgdTlrConfig {
            lr,
            ..SgdTlrConfig::default()
        }
    }

    // ---- the ratio ---------------------------------------------------------------------------

    #[test]
    fn ratio_follows_the_spec_table() {
        let c = 0.25;
        let cases = [
            // p > 0, q > 0: min(p/4q, c)
            (1.0, 10.0, 0.025),
            (1.0, 1.0, 0.25),
            (1.0, 0.5, 0.25),
            (3.0, 1e-300, 0.25),
            // p > 0, q ≤ 0: c
            (1.0, 0.0, 0.25),
            (1.0, -2.0, 0.25),
            // p < 0 (q > 0): p/4q
            (-1.0, 3.0, -1.0 / 12.0),
            (-2.0, 2.0, -0.25),
            (-1e-8, 1.0, -2.5e-9),
            // p = 0: 0
            (0.0, 5.0, 0.0),
            (0.0, 0.0, 0.0),
            (0.0, -1.0, 0.0),
            (-0.0, 0.0, 0.0),
        ];
        for (p, q, want) in cases {
            assert_eq!(ratio(p, q, c), want, "ratio({p}, {q}, {c})");
        }
        assert_eq!(ratio(1.0, 0.5, 1.0), 0.5);
        assert_eq!(ratio(1.0, -0.5, 2.0), 2.0);
    }

    #[test]
    fn ratio_stays_between_minus_a_quarter_and_c_for_any_gradient_pair() {
        // A fixed linear congruential generator: reproducible pseudo-random gradient pairs.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut uniform = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        let (mut below, mut above, mut capped) = (0, 0, 0);
        for k in 0..20_000 {
            let n = 1 + k % 7;
            let scale = 10f64.powi((k % 13) - 6);
            let g: Vec<f64> = (0..n).map(|_| uniform()).collect();
            let prev: Vec<f64> = match k % 4 {
                // Opposite directions with a larger previous gradient: p < 0, p/4q → −1/4.
                0 => g.iter().map(|x| -scale * x).collect(),
                1 => g.iter().map(|x| x * (1.0 + scale * uniform())).collect(),
                _ => (0..n).map(|_| scale * uniform()).collect(),
            };
            for c in [0.25, 1.0, 1e-3] {
                let p = dot(&g, &prev);
                let r = ratio(p, dot(&g, &g) - p, c);
                assert!(r >= -0.25 && r <= c, "ratio {r} for p = {p}, c = {c}");
                if c == 0.25 {
                    below += usize::from(r < 0.0);
                    above += usize::from(r > 0.0 && r < c);
                    capped += usize::from(r == c);
                }
            }
        }
        // Every branch was exercised.
        assert!(
            below > 1000 && above > 1000 && capped > 1000,
            "{below} {above} {capped}"
        );
    }

    // ---- gd_tlr ------------------------------------------------------------------------------

    #[test]
    fn efficient_gd_tlr_first_steps_match_alg_2_by_hand() {
        // ½θᵀHθ, H = diag(1, 4, 10), α0 = 0.15: the four steps take p = 0 (g_{−1} = 0), p < 0,
        // 0 < p/4q < c and the cap c, in that order.
        let d = device();
        let h = [1.0, 4.0, 10.0];
        let q = Quadratic::diagonal(h.to_vec());
        let mut opt = gd(GdTlrVariant::Efficient, 0.15, 1e-3);
        let mut theta = vec![1.0, -0.5, 0.25];
        let mut prev = vec![0.0; 3];
        let mut alpha = 0.15;
        let mut params = list(&[&theta], &d);
        let mut ratios = Vec::new();
        for t in 0..4 {
            let out = step_with(&mut opt, &q, &params);
            let g = q.grad(&theta);
            let (p, s) = (dot(&g, &prev), dot(&g, &g));
            let next = eq9(alpha, p, s, 0.25);
            let r = next / alpha - 1.0;
            alpha = next;
            for i in 0..3 {
                theta[i] -= alpha * g[i];
            }
            prev = g;
            close(out.lr, alpha, &format!("α at step {t}"));
            close(out.diagnostics[1], alpha, "alpha column");
            assert!((out.diagnostics[0] - r).abs() < 1e-14, "ratio at step {t}");
            close(out.diagnostics[2], p, "grad_dot");
            close(out.diagnostics[3], s, "grad_sq_norm");
            close_all(&values(&out.params)[0], &theta, &format!("θ at step {t}"));
            ratios.push(out.diagnostics[0]);
            params = out.params;
        }
        assert_eq!(ratios[0], 0.0);
        assert!(ratios[1] < 0.0 && ratios[1] > -0.25);
        assert!(ratios[2] > 0.0 && ratios[2] < 0.25);
        assert_eq!(ratios[3], 0.25);
        close(opt.current_lr(), alpha, "current_lr");
    }

    #[test]
    fn efficient_gd_tlr_on_a_line_grows_by_c_below_1_over_h_and_drops_by_1_over_4h_past_it() {
        // f = ½hθ²: g_t = (1 − αh)·g_{t−1}. For αh < 1, q < 0 < p: α·(1 + c). For 1 < αh < 2,
        // p < 0 < q and p/4q = −1/(4αh): α − 1/(4h).
        let d = device();
        let h = 2.0;
        let q = Quadratic::diagonal(vec![h]);
        for (alpha0, want) in [(0.1, 0.125), (0.75, 0.75 - 1.0 / (4.0 * h))] {
            let mut opt = gd(GdTlrVariant::Efficient, alpha0, 1e-3);
            let first = step_with(&mut opt, &q, &list(&[&[1.0]], &d));
            assert_eq!(first.lr, alpha0);
            let second = step_with(&mut opt, &q, &first.params);
            close(second.lr, want, &format!("α0 = {alpha0}"));
        }
    }

    #[test]
    fn naive_gd_tlr_matches_alg_1_by_hand_with_one_extra_gradient() {
        // h = ∇L(w − α·g) = H(w − α·g) on the same batch; α ← α + η⟨h, g⟩; w ← w − α_new·g.
        let d = device();
        let hdiag = [1.0, 4.0, 10.0];
        let q = Quadratic::diagonal(hdiag.to_vec());
        let eta = 0.01;
        let mut opt = gd(GdTlrVariant::Naive, 0.05, eta);
        let mut theta = vec![1.0, -0.5, 0.25];
        let mut alpha = 0.05;
        let mut params = list(&[&theta], &d);
        for t in 0..3 {
            let mut probe = Counting {
                q: q.clone(),
                grad_calls: 0,
            };
            let grads = q.clone().loss_and_grad_at(&params).1;
            let out = step_raw(&mut opt, &mut probe, &params, q.loss(&theta), grads);
            assert_eq!(probe.grad_calls, 1, "one extra forward-backward pass");
            let g = q.grad(&theta);
            let shifted: Vec<f64> = theta.iter().zip(&g).map(|(w, g)| w - alpha * g).collect();
            let hg = dot(&q.grad(&shifted), &g);
            alpha += eta * hg;
            for i in 0..3 {
                theta[i] -= alpha * g[i];
            }
            close(out.lr, alpha, &format!("α at step {t}"));
            close(out.diagnostics[2], hg, "⟨h, g⟩");
            assert!(
                out.diagnostics[0].is_nan(),
                "no Eq. 9 ratio in the naive variant"
            );
            close_all(&values(&out.params)[0], &theta, &format!("θ at step {t}"));
            params = out.params;
        }
    }

    /// A quadratic probe whose gradient comes back in the weights' precision (f32 for f32).
    struct InDtype(Quadratic);

    impl LossProbe for InDtype {
        fn loss_at(&mut self, params: &[Tensor<1>]) -> f64 {
            self.0.loss_at(params)
        }
        fn loss_and_grad_at(&mut self, params: &[Tensor<1>]) -> (f64, ParamList) {
            let (loss, grads) = self.0.loss_and_grad_at(params);
            let dtype = params[0].dtype();
            (loss, grads.into_iter().map(|g| g.cast(dtype)).collect())
        }
    }

    #[test]
    fn naive_gd_tlr_step_below_f32_resolution_is_counted_and_warned_once() {
        // Weights 1, α·g ≤ 4e-12: w − α·g == w in f32, so the probe returns the batch loss.
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        let theta = [1.0, 1.0];
        let (alpha0, eta) = (1e-12, 1e-3);
        let mut opt = gd(GdTlrVariant::Naive, alpha0, eta);
        let params: ParamList = list(&[&theta], &d)
            .into_iter()
            .map(|t| t.cast(DType::F32))
            .collect();
        let mut probe = InDtype(q.clone());
        let grads = probe.loss_and_grad_at(&params).1;
        let out = step_raw(&mut opt, &mut probe, &params, q.loss(&theta), grads.clone());
        assert_eq!(out.diagnostics[4], 1.0, "unmeasured");
        // h = g: α grows by η·‖g‖² = 1.7e-2, exact arithmetic's answer for a tiny α.
        close(out.diagnostics[2], 17.0, "⟨h, g⟩");
        close(out.lr, alpha0 + eta * 17.0, "α");
        let warning = out.warning.expect("the first unmeasured step warns");
        for part in [
            "gd_tlr (naive)",
            "rounding",
            "equals the batch loss",
            "run.precision = \"f64\"",
            "optimizer.lr",
        ] {
            assert!(warning.contains(part), "{part:?} missing: {warning}");
        }
        opt.alpha = alpha0;
        let out = step_raw(&mut opt, &mut probe, &params, q.loss(&theta), grads);
        assert_eq!(out.diagnostics[4], 1.0);
        assert!(out.warning.is_none(), "warned once only");

        // Measurable steps (f64 here, or the default α0 in f32) and the other variants: 0.
        let mut opt = gd(GdTlrVariant::Naive, alpha0, eta);
        let out = step_with(&mut opt, &q, &list(&[&theta], &d));
        assert_eq!(out.diagnostics[4], 0.0);
        assert!(out.warning.is_none());
        for variant in [
            GdTlrVariant::Naive,
            GdTlrVariant::Efficient,
            GdTlrVariant::FixedEta,
        ] {
            for lr in [0.1, alpha0] {
                let mut opt = gd(variant, lr, eta);
                let grads = probe.loss_and_grad_at(&params).1;
                let out = step_raw(&mut opt, &mut probe, &params, q.loss(&theta), grads);
                let want = if variant == GdTlrVariant::Naive && lr == alpha0 {
                    1.0
                } else {
                    0.0
                };
                assert_eq!(out.diagnostics[4], want, "{variant:?}, α0 {lr}");
                assert_eq!(out.warning.is_some(), want == 1.0);
            }
        }
    }

    #[test]
    fn naive_gd_tlr_alpha_settles_at_the_exact_line_search_step() {
        // From a fixed point, ⟨h, g⟩ = ‖g‖² − α·gᵀHg: the fixed point of α is ‖g‖²/gᵀHg.
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0, 10.0]);
        let theta = [0.3, 1.0, -2.0];
        let g = q.grad(&theta);
        let exact = dot(&g, &g) / q.quad_form(&g);
        let mut opt = gd(GdTlrVariant::Naive, 0.01, 0.5 / q.quad_form(&g));
        for _ in 0..200 {
            step_with(&mut opt, &q, &list(&[&theta], &d));
        }
        close(opt.current_lr(), exact, "α after 200 steps");
    }

    #[test]
    fn fixed_eta_gd_tlr_clamps_alpha_at_zero_then_recovers() {
        // f = 5θ² (h = 10), θ0 = 1, α0 = 0.3, η = 1:
        // step 0: g = 10, p = 0 → α = 0.3, θ = 1 − 3 = −2
        // step 1: g = −20, p = −200 → α = max(0, 0.3 − 200) = 0, θ stays −2
        // step 2: g = −20, p = 400 → α = 400, θ = −2 + 400·20 = 7998
        let d = device();
        let q = Quadratic::diagonal(vec![10.0]);
        let mut opt = gd(GdTlrVariant::FixedEta, 0.3, 1.0);
        let mut params = list(&[&[1.0]], &d);
        for (alpha, theta, p) in [
            (0.3, -2.0, 0.0),
            (0.0, -2.0, -200.0),
            (400.0, 7998.0, 400.0),
        ] {
            let out = step_with(&mut opt, &q, &params);
            close(out.lr, alpha, "α");
            close(values(&out.params)[0][0], theta, "θ");
            close(out.diagnostics[2], p, "⟨g_t, g_{t−1}⟩");
            assert!(out.diagnostics[0].is_nan());
            params = out.params;
        }
    }

    // ---- sgd_tlr -----------------------------------------------------------------------------

    #[test]
    fn window_length_is_the_floor_of_p_n_and_at_least_one() {
        let third = 1.0 / 3.0;
        for (p, n, k) in [
            (0.33, Some(9), 2),
            (0.33, Some(3), 1),
            (third, Some(3), 1),
            (0.33, Some(100), 33),
            (third, Some(300), 100),
            (0.33, Some(300), 99),
            (0.33, Some(0), 1),
            (1.0, Some(469), 469),
            (2.0, Some(10), 20),
            (0.33, None, 1),
        ] {
            assert_eq!(window_len(p, n), k, "p = {p}, N = {n:?}");
        }
    }

    /// Momentum SGD with coupled weight decay on the host, with TLR windows of `k` updates over
    /// the tensor groups `groups` (index sets into θ), one α per group. Returns per step: the
    /// α's used, the α's after, the ratios of a closing step with a G_prev, and θ.
    #[allow(clippy::type_complexity)]
    fn host_sgd_tlr(
        h: &[f64],
        theta0: &[f64],
        groups: &[Vec<usize>],
        cfg: &SgdTlrConfig,
        k: usize,
        steps: usize,
    ) -> Vec<(Vec<f64>, Vec<f64>, Option<Vec<f64>>, Vec<f64>)> {
        let n = theta0.len();
        let mut theta = theta0.to_vec();
        let mut buf = vec![0.0; n];
        // Eq. 10's middle form: G = Σ over the window of the momentum steps (θ moves by α·buf).
        let mut acc = vec![0.0; n];
        let mut prev: Option<Vec<f64>> = None;
        let mut alphas = vec![cfg.lr; groups.len()];
        let mut out = Vec::new();
        for t in 1..=steps {
            let used = alphas.clone();
            let g: Vec<f64> = theta.iter().zip(h).map(|(x, h)| h * x).collect();
            for i in 0..n {
                buf[i] = cfg.momentum * buf[i] + g[i] + cfg.weight_decay * theta[i];
                acc[i] += buf[i];
            }
            for (j, group) in groups.iter().enumerate() {
                for &i in group {
                    theta[i] -= alphas[j] * buf[i];
                }
            }
            let mut ratios = None;
            if t % k == 0 {
                if let Some(gp) = &prev {
                    let mut r = Vec::new();
                    for (j, group) in groups.iter().enumerate() {
                        let p: f64 = group.iter().map(|&i| acc[i] * gp[i]).sum();
                        let s: f64 = group.iter().map(|&i| acc[i] * acc[i]).sum();
                        let next = eq9(alphas[j], p, s, cfg.c);
                        r.push(next / alphas[j] - 1.0);
                        alphas[j] = next;
                    }
                    ratios = Some(r);
                }
                prev = Some(std::mem::replace(&mut acc, vec![0.0; n]));
            }
            out.push((used, alphas.clone(), ratios, theta.clone()));
        }
        out
    }

    #[test]
    fn sgd_tlr_windows_of_two_close_on_even_steps_and_match_eq_10_by_hand() {
        // N = 9, p = 0.33: K = ⌊2.97⌋ = 2. Windows close after updates 2, 4, 6, 8; α first
        // changes when the second window closes (step 4), then at 6 and 8.
        let d = device();
        let h = [1.0, 4.0, 10.0];
        let q = Quadratic::diagonal(h.to_vec());
        let cfg = sgd_cfg(0.15);
        let mut opt = SgdTlr::new(&cfg);
        opt.begin_epoch(1, 9);
        let theta0 = [1.0, -0.5, 0.25];
        let host = host_sgd_tlr(&h, &theta0, &[vec![0, 1, 2]], &cfg, 2, 8);
        // Two tensors: the single α sums its inner products over both.
        let mut params = list(&[&theta0[..2], &theta0[2..]], &d);
        for (t, (used, after, ratios, theta)) in host.iter().enumerate() {
            let step = t + 1;
            let out = step_with(&mut opt, &q, &params);
            close(out.lr, used[0], &format!("α used at step {step}"));
            close(
                out.diagnostics[1],
                after[0],
                &format!("α after step {step}"),
            );
            match ratios {
                Some(r) => {
                    assert!(
                        step >= 4 && step % 2 == 0,
                        "α changes only on closing steps"
                    );
                    assert!((out.diagnostics[0] - r[0]).abs() < 1e-12, "ratio at {step}");
                }
                None => assert!(out.diagnostics[0].is_nan(), "no ratio at step {step}"),
            }
            close_all(
                &values(&out.params).concat(),
                theta,
                &format!("θ at step {step}"),
            );
            params = out.params;
        }
        // α changed (the test can fail): the windows saw both signs of the ratio.
        assert!(host[3].1[0] > 0.15 && host[7].1[0] < host[5].1[0]);
        close(opt.current_lr(), host[7].1[0], "current_lr");
    }

    #[test]
    fn sgd_tlr_without_begin_epoch_updates_alpha_after_every_step() {
        // N unknown: K = 1, so G is the momentum buffer of each step.
        let d = device();
        let h = [1.0, 4.0, 10.0];
        let q = Quadratic::diagonal(h.to_vec());
        let cfg = sgd_cfg(0.15);
        let mut opt = SgdTlr::new(&cfg);
        let theta0 = [1.0, -0.5, 0.25];
        let host = host_sgd_tlr(&h, &theta0, &[vec![0, 1, 2]], &cfg, 1, 4);
        let mut params = list(&[&theta0], &d);
        for (t, (used, after, ratios, theta)) in host.iter().enumerate() {
            let out = step_with(&mut opt, &q, &params);
            close(out.lr, used[0], "α used");
            close(out.diagnostics[1], after[0], "α after");
            assert_eq!(ratios.is_some(), t >= 1);
            assert_eq!(out.diagnostics[0].is_nan(), t == 0);
            close_all(&values(&out.params)[0], theta, "θ");
            params = out.params;
        }
    }

    #[test]
    fn sgd_tlr_window_counts_run_across_epoch_boundaries() {
        // N = 9, K = 2; the epoch changes after 3 updates; the window open at that point closes
        // after its 2nd update (step 4), not after 2 updates of the new epoch.
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0, 10.0]);
        let mut opt = SgdTlr::new(&sgd_cfg(0.15));
        opt.begin_epoch(1, 9);
        let mut params = list(&[&[1.0, -0.5, 0.25]], &d);
        let mut closed_with_ratio = Vec::new();
        for step in 1..=8 {
            if step == 4 {
                opt.begin_epoch(2, 9);
            }
            let out = step_with(&mut opt, &q, &params);
            if !out.diagnostics[0].is_nan() {
                closed_with_ratio.push(step);
            }
            params = out.params;
        }
        assert_eq!(closed_with_ratio, vec![4, 6, 8]);
    }

    // ---- sgd_tlr_pl --------------------------------------------------------------------------

    #[test]
    fn per_layer_alphas_follow_each_tensors_own_windows() {
        // Tensors [θ0, θ1] (curvatures 1, 4) and [θ2] (curvature 10), each with its own α.
        let d = device();
        let h = [1.0, 4.0, 10.0];
        let q = Quadratic::diagonal(h.to_vec());
        let cfg = sgd_cfg(0.15);
        let mut opt = SgdTlrPerLayer::new(&cfg);
        assert_eq!(opt.per_tensor_name(), Some("alpha"));
        opt.begin_epoch(1, 9);
        let host = host_sgd_tlr(&h, &[1.0, -0.5, 0.25], &[vec![0, 1], vec![2]], &cfg, 2, 8);
        let mut params = list(&[&[1.0, -0.5], &[0.25]], &d);
        for (t, (used, after, ratios, theta)) in host.iter().enumerate() {
            let step = t + 1;
            let out = step_with(&mut opt, &q, &params);
            close_all(&out.per_tensor, used, &format!("α's used at step {step}"));
            close(
                out.lr,
                (2.0 * used[0] + used[1]) / 3.0,
                "size-weighted mean α",
            );
            close(out.diagnostics[0], after[0].min(after[1]), "alpha_min");
            close(out.diagnostics[1], after[0].max(after[1]), "alpha_max");
            match ratios {
                Some(r) => {
                    assert!((out.diagnostics[2] - r[0].min(r[1])).abs() < 1e-12);
                    assert!((out.diagnostics[3] - r[0].max(r[1])).abs() < 1e-12);
                }
                None => assert!(out.diagnostics[2].is_nan() && out.diagnostics[3].is_nan()),
            }
            close_all(
                &values(&out.params).concat(),
                theta,
                &format!("θ at {step}"),
            );
            params = out.params;
        }
        let last = &host[7].1;
        assert!(
            (last[0] / last[1] - 1.0).abs() > 0.5,
            "the two tensors' α differ: {last:?}"
        );
        close(
            opt.current_lr(),
            (2.0 * last[0] + last[1]) / 3.0,
            "current_lr",
        );
    }

    #[test]
    fn per_layer_with_a_single_tensor_is_sgd_tlr() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0, 10.0]);
        let cfg = sgd_cfg(0.15);
        let (mut a, mut b) = (SgdTlr::new(&cfg), SgdTlrPerLayer::new(&cfg));
        a.begin_epoch(1, 9);
        b.begin_epoch(1, 9);
        let mut params = list(&[&[1.0, -0.5, 0.25]], &d);
        for _ in 0..8 {
            let (x, y) = (
                step_with(&mut a, &q, &params),
                step_with(&mut b, &q, &params),
            );
            assert_eq!(values(&x.params), values(&y.params));
            assert_eq!(x.lr, y.lr);
            assert_eq!(y.per_tensor, vec![x.lr]);
            params = x.params;
        }
        assert_eq!(a.current_lr(), b.current_lr());
    }

    // ---- robustness --------------------------------------------------------------------------

    fn every_kind() -> Vec<(&'static str, Box<dyn StepSizeOptimizer>)> {
        let cfg = sgd_cfg(0.15);
        vec![
            (
                "efficient",
                Box::new(gd(GdTlrVariant::Efficient, 0.1, 1e-3)),
            ),
            ("naive", Box::new(gd(GdTlrVariant::Naive, 0.1, 1e-2))),
            ("fixed_eta", Box::new(gd(GdTlrVariant::FixedEta, 0.1, 1e-2))),
            ("sgd_tlr", Box::new(SgdTlr::new(&cfg))),
            ("sgd_tlr_pl", Box::new(SgdTlrPerLayer::new(&cfg))),
        ]
    }

    #[test]
    fn a_zero_gradient_leaves_alpha_unchanged_without_nan() {
        // At the minimum of a quadratic g = 0 (and λ·θ = 0): p = ‖g‖² = 0, G = 0, ratio 0.
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        for (name, mut opt) in every_kind() {
            let alpha0 = opt.current_lr();
            let zero = list(&[&[0.0], &[0.0]], &d);
            for step in 0..4 {
                let out = step_with(opt.as_mut(), &q, &zero);
                assert_eq!(values(&out.params), vec![vec![0.0], vec![0.0]], "{name}");
                assert_eq!(out.lr, alpha0, "{name}: α used at step {step}");
                let ratio_cols: &[usize] = if name == "sgd_tlr_pl" { &[2, 3] } else { &[0] };
                let has_ratio = match name {
                    "efficient" => true,
                    "sgd_tlr" | "sgd_tlr_pl" => step >= 1,
                    _ => false,
                };
                if has_ratio {
                    for &k in ratio_cols {
                        assert_eq!(out.diagnostics[k], 0.0, "{name}: ratio at {step}");
                    }
                }
                for (k, v) in out.diagnostics.iter().enumerate() {
                    assert!(
                        v.is_finite() || (ratio_cols.contains(&k) && !has_ratio),
                        "{name}: diagnostic {k} = {v} at step {step}"
                    );
                }
            }
            assert_eq!(opt.current_lr(), alpha0, "{name}");
        }
    }

    #[test]
    fn non_finite_loss_or_gradient_skips_the_step_and_keeps_the_state() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0, 10.0]);
        for (name, mut opt) in every_kind() {
            opt.begin_epoch(1, 9);
            let mut params = list(&[&[1.0, -0.5], &[0.25]], &d);
            for _ in 0..3 {
                params = step_with(opt.as_mut(), &q, &params).params;
            }
            let before = opt.state();
            let lr = opt.current_lr();
            let good = q.clone().loss_and_grad_at(&params).1;
            let bad = |v: f64| list(&[&[1.0, v], &[0.5]], &d);
            for (loss, grads) in [
                (f64::NAN, good.clone()),
                (f64::INFINITY, good),
                (1.0, bad(f64::NAN)),
                (1.0, bad(f64::INFINITY)),
                (1.0, bad(1e300)), // ‖g‖² overflows
            ] {
                let out = step_raw(opt.as_mut(), &mut q.clone(), &params, loss, grads);
                assert_eq!(
                    values(&out.params),
                    values(&params),
                    "{name}: weights moved"
                );
                assert!(out.diagnostics.iter().all(|v| v.is_nan()), "{name}");
                assert_eq!(host(&opt.state()), host(&before), "{name}: state changed");
                assert_eq!(opt.current_lr(), lr, "{name}");
            }
            // The state still works: the next good step moves the weights.
            let out = step_with(opt.as_mut(), &q, &params);
            assert!(values(&out.params).concat().iter().all(|v| v.is_finite()));
            assert_ne!(values(&out.params), values(&params), "{name}");
        }
    }

    #[test]
    fn naive_gd_tlr_skips_when_the_probe_loss_is_not_finite() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        let mut opt = gd(GdTlrVariant::Naive, 0.1, 1e-2);
        let params = list(&[&[1.0, 1.0]], &d);
        let grads = q.clone().loss_and_grad_at(&params).1;
        let out = step_raw(
            &mut opt,
            &mut q.clone().with_nan_probe(),
            &params,
            2.5,
            grads,
        );
        assert_eq!(values(&out.params), vec![vec![1.0, 1.0]]);
        assert_eq!(opt.current_lr(), 0.1);
    }

    // ---- state and config --------------------------------------------------------------------

    #[test]
    fn state_round_trips_mid_window_for_every_kind() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 4.0, 10.0]);
        let fresh = every_kind();
        for ((name, mut opt), (_, mut other)) in every_kind().into_iter().zip(fresh) {
            opt.begin_epoch(1, 9); // K = 2 for sgd_tlr*: 3 steps leave a window open.
            let mut params = list(&[&[1.0, -0.5], &[0.25]], &d);
            for _ in 0..3 {
                params = step_with(opt.as_mut(), &q, &params).params;
            }
            let state = opt.state();
            other.load_state(&state, &d, DType::F64).unwrap();
            assert_eq!(host(&other.state()), host(&state), "{name}");
            assert_eq!(other.current_lr(), opt.current_lr(), "{name}");
            // No begin_epoch on `other`: N must come back from the state.
            let mut p2 = params.clone();
            for _ in 0..4 {
                let (x, y) = (
                    step_with(opt.as_mut(), &q, &params),
                    step_with(other.as_mut(), &q, &p2),
                );
                assert_eq!(values(&x.params), values(&y.params), "{name}");
                assert_eq!(x.lr, y.lr, "{name}");
                assert_eq!(x.per_tensor, y.per_tensor, "{name}");
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&x.diagnostics), bits(&y.diagnostics), "{name}");
                (params, p2) = (x.params, y.params);
            }
        }
    }

    #[test]
    fn load_state_rejects_other_kinds_and_broken_counts() {
        let d = device();
        let state = SgdTlr::new(&SgdTlrConfig::default()).state();
        let mut pl = SgdTlrPerLayer::new(&SgdTlrConfig::default());
        assert!(pl.load_state(&state, &d, DType::F64).is_err());
        let mut sgd = SgdTlr::new(&SgdTlrConfig::default());
        let mut broken = state.clone();
        broken.scalars.insert("steps_in_window".into(), 1.5);
        assert!(sgd.load_state(&broken, &d, DType::F64).is_err());
        let mut broken = state.clone();
        broken.scalars.insert("tensors_with_alpha".into(), 2.0);
        assert!(sgd.load_state(&broken, &d, DType::F64).is_err());
        let gd_state = GdTlr::new(&GdTlrConfig::default()).state();
        assert!(sgd.load_state(&gd_state, &d, DType::F64).is_err());
        assert!(sgd.load_state(&state, &d, DType::F64).is_ok());
    }

    #[test]
    fn configs_parse_from_toml_with_the_papers_defaults() {
        let gd: GdTlrConfig = toml::from_str("variant = \"fixed_eta\"").unwrap();
        assert_eq!(
            gd,
            GdTlrConfig {
                lr: 0.1,
                variant: GdTlrVariant::FixedEta,
                c: 0.25,
                eta: 1e-3
            }
        );
        assert_eq!(
            toml::from_str::<GdTlrConfig>("").unwrap().variant,
            GdTlrVariant::Efficient
        );
        assert!(toml::from_str::<GdTlrConfig>("variant = \"newton\"").is_err());
        assert!(toml::from_str::<GdTlrConfig>("momentum = 0.9").is_err());
        let sgd: SgdTlrConfig = toml::from_str("lr = 0.01").unwrap();
        assert_eq!(
            sgd,
            SgdTlrConfig {
                lr: 0.01,
                momentum: 0.8,
                weight_decay: 5e-4,
                p: 0.33,
                c: 0.25
            }
        );
        assert!(toml::from_str::<SgdTlrConfig>("eta = 0.1").is_err());
    }

    #[test]
    fn validate_names_the_offending_key() {
        let gd = GdTlrConfig::default();
        assert!(gd.validate().is_ok());
        for (bad, key) in [
            (
                GdTlrConfig {
                    lr: 0.0,
                    ..gd.clone()
                },
                "optimizer.lr",
            ),
            (
                GdTlrConfig {
                    c: -0.1,
                    ..gd.clone()
                },
                "optimizer.c",
            ),
            (
                GdTlrConfig {
                    eta: f64::NAN,
                    ..gd.clone()
                },
                "optimizer.eta",
            ),
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
        let sgd = SgdTlrConfig::default();
        assert!(sgd.validate().is_ok());
        for (bad, key) in [
            (
                SgdTlrConfig {
                    lr: -1.0,
                    ..sgd.clone()
                },
                "optimizer.lr",
            ),
            (
                SgdTlrConfig {
                    momentum: 1.0,
                    ..sgd.clone()
                },
                "optimizer.momentum",
            ),
            (
                SgdTlrConfig {
                    weight_decay: -1e-4,
                    ..sgd.clone()
                },
                "optimizer.weight_decay",
            ),
            (
                SgdTlrConfig {
                    p: 0.0,
                    ..sgd.clone()
                },
                "optimizer.p",
            ),
            (
                SgdTlrConfig {
                    c: f64::INFINITY,
                    ..sgd.clone()
                },
                "optimizer.c",
            ),
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }
}
