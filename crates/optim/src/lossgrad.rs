//! LossGrad: a locally optimal step size from one extra forward pass.
//!
//! Wójcik et al., "LOSSGRAD: locally optimal step-size in gradient descent", Algorithm 1.
//! With f0 the batch loss, g its gradient, s = ‖g‖² and h the current step size:
//!
//! ```text
//! approx = f0 − h·s                 # linear prediction of the loss after the step
//! θ ← θ − h·g                       # the step uses the OLD h
//! f1 = L(θ; same batch)             # one extra forward pass, no autodiff graph
//! r  = (f1 − approx) / (h·s + 1e-25)
//! h  ← r > 0.5 ? h / c : h · c      # applies from the next batch
//! ```
//!
//! Sec. 2 (Eq. 3): r fits a quadratic W(t) through φ(0), φ′(0) and φ(h) of φ(t) = L(θ − t·g);
//! W′(h) > 0 exactly when r > 1/2, so h is past the minimiser of W and shrinks. On a quadratic
//! loss r = h·gᵀHg / (2s), and r > 1/2 exactly when h exceeds the exact line-search step s/gᵀHg.
//!
//! Cost per step: 2 forward + 1 backward passes. State: h and whether the unmeasured-step warning was given. A non-finite f1 or r counts as
//! r > 1/2 (h decreases); the authors' code increases h there, which this crate does not copy.
//! A non-finite ‖g‖² skips the update (weights unchanged), decreases h and reports NaN for
//! `ratio`, `probe_loss` and `unmeasured`.
//!
//! Diagnostics: `ratio` (r as the rule used it), `grad_sq_norm` (s = ‖g‖²), `probe_loss` (f1)
//! and `unmeasured` (1 for an unmeasured step, below; 0 otherwise).
//!
//! # Unmeasured steps (`unmeasured = "paper" | "exact"`)
//! A step is *unmeasured* when h·s > 0 and f1 == f0 bit for bit (the f64 the probe returned
//! equals the batch loss): θ − h·g is within the rounding of θ at the run's precision (in f32,
//! h·|g| below ≈ 6e-8·|θ|). In exact arithmetic f1 = f0 − h·s + O(h²), so r → 0 as h → 0 and h
//! would grow; in floating point r = h·s / (h·s + 1e-25) = 1 > 1/2, so the paper's rule shrinks h
//! by c on every such step and training stalls silently (the Fashion-MNIST autoencoder in f32 with
//! h0 = 1e-6: h reached 2.5e-14 by step 400 with the loss unchanged). The check compares two
//! numbers the step has anyway: no extra pass.
//! - `unmeasured = "paper"` (default): the paper's rule as above (r ≈ 1, h shrinks).
//! - `unmeasured = "exact"`: r = 0, what exact arithmetic gives for a step too small to measure;
//!   h grows by c, and the `ratio` column reads 0.
//!
//! Either way the step counts 1 in `unmeasured`, and the first one of the run returns a warning
//! ([`StepOutput::warning`]) naming the cause and the remedies: `run.precision = "f64"`, a larger
//! `optimizer.lr` (h0), or `unmeasured = "exact"`. A zero gradient (h·s = 0) is not unmeasured:
//! there f1 = f0 gives r = 0 and h grows under both settings.

use burn::tensor::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::api::{OptimizerState, StepInput, StepOutput, StepSizeOptimizer};
use crate::unmeasured::{self, OnceWarning, Unmeasured};
use crate::{OptimError, vector};

/// Settings of [`LossGrad`], as `[optimizer]` keys with `kind = "lossgrad"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossGradConfig {
    /// Initial step size h0 (paper: 1e-4).
    #[serde(default = "LossGradConfig::default_lr")]
    pub lr: f64,
    /// Step-size adjustment factor c ≥ 1 (paper: 1.05, chosen in Table 1). c = 1 keeps h at h0:
    /// plain SGD at lr h0 plus one probe per step, a check of the probe's side effects.
    #[serde(default = "LossGradConfig::default_c")]
    pub c: f64,
    /// How a step whose probe loss equals the batch loss exactly is treated: `"paper"` (default,
    /// r ≈ 1: h shrinks) or `"exact"` (r = 0: h grows); see the module documentation.
    #[serde(default)]
    pub unmeasured: Unmeasured,
}

impl LossGradConfig {
    fn default_lr() -> f64 {
        1e-4
    }
    fn default_c() -> f64 {
        1.05
    }

    /// Checks the settings; errors name the config key.
    pub fn validate(&self) -> Result<(), OptimError> {
        crate::check_positive("optimizer.lr", self.lr)?;
        if !(self.c.is_finite() && self.c >= 1.0) {
            return Err(OptimError::invalid(
                "optimizer.c",
                format!("must be ≥ 1, got {}", self.c),
            ));
        }
        Ok(())
    }
}

impl Default for LossGradConfig {
    fn default() -> Self {
        Self {
            lr: Self::default_lr(),
            c: Self::default_c(),
            unmeasured: Unmeasured::default(),
        }
    }
}

/// The LossGrad optimizer (Alg. 1). See the module documentation for the update rule.
#[derive(Debug, Clone)]
pub struct LossGrad {
    /// Adjustment factor c.
    c: f64,
    /// Step size h the next update uses.
    h: f64,
    /// What an unmeasured step does to h.
    unmeasured: Unmeasured,
    /// Whether the unmeasured-step warning was given (saved state: a resumed run does not repeat it).
    warning: OnceWarning,
}

/// Guard in the denominator of r, as in the paper's reference code.
const RATIO_EPS: f64 = 1e-25;

impl LossGrad {
    /// A LossGrad optimizer starting at h = `config.lr`.
    pub fn new(config: &LossGradConfig) -> Self {
        Self {
            c: config.c,
            h: config.lr,
            unmeasured: config.unmeasured,
            warning: OnceWarning::default(),
        }
    }
}

impl StepSizeOptimizer for LossGrad {
    fn kind(&self) -> &'static str {
        "lossgrad"
    }

    fn diagnostic_names(&self) -> &'static [&'static str] {
        &["ratio", "grad_sq_norm", "probe_loss", "unmeasured"]
    }

    fn step(&mut self, input: StepInput<'_>) -> StepOutput {
        let StepInput {
            params,
            loss,
            grads,
            probe,
            ..
        } = input;
        let h = self.h;
        let s = vector::sq_norm(&grads); // SYNC
        if !s.is_finite() {
            self.h = h / self.c;
            return StepOutput::new(params, h, vec![f64::NAN, s, f64::NAN, f64::NAN]);
        }
        let lred = h * s;
        let approx = loss - lred;
        let params = vector::add_scaled_owned(params, grads, -h);
        let f1 = probe.loss_at(&params); // SYNC: the extra forward pass
        // The step moved the weights by h·g ≠ 0, yet the probe returned the batch loss itself.
        let unmeasured = lred > 0.0 && f1 == loss;
        let r = if unmeasured && self.unmeasured == Unmeasured::Exact {
            0.0
        } else {
            (f1 - approx) / (lred + RATIO_EPS)
        };
        self.h = if !f1.is_finite() || !r.is_finite() || r > 0.5 {
            h / self.c
        } else {
            h * self.c
        };
        let mode = self.unmeasured;
        let warning = self.warning.check(unmeasured, || {
            let (effect, option) = match mode {
                Unmeasured::Paper => (
                    "r = 1 instead of ≈ 0, so h shrinks by c on every such step and training \
                     stalls",
                    ", or optimizer.unmeasured = \"exact\" (r = 0 for such a step, as exact \
                     arithmetic gives: h grows)",
                ),
                Unmeasured::Exact => (
                    "optimizer.unmeasured = \"exact\" treats it as r = 0, so h grows by c until \
                     the step is measurable",
                    "",
                ),
            };
            format!(
                "lossgrad: the probe loss f(θ − h·g) equals the batch loss {loss} exactly at \
                 h = {h:e} (h·‖g‖² = {lred:e}): {cause}; {effect}. Remedies: run.precision = \
                 \"f64\", a larger optimizer.lr (h0){option}. {counted}",
                cause = unmeasured::CAUSE,
                counted = unmeasured::COUNTED,
            )
        });
        StepOutput::new(params, h, vec![r, s, f1, unmeasured::column(unmeasured)])
            .with_warning(warning)
    }

    fn current_lr(&self) -> f64 {
        self.h
    }

    fn state(&self) -> OptimizerState {
        self.warning
            .save(OptimizerState::new(self.kind()).with_scalar("h", self.h))
    }

    fn load_state(
        &mut self,
        state: &OptimizerState,
        _: &Device,
        _: DType,
    ) -> Result<(), OptimError> {
        state.expect_kind(self.kind())?;
        let h = state.scalar("h")?;
        self.warning = OnceWarning::load(state)?;
        self.h = h;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Quadratic, device, host, list, step_with};

    /// ½·θᵀHθ with H = diag(1, 4, 10): the gradient is Hθ, so everything is known exactly.
    fn quadratic() -> Quadratic {
        Quadratic::diagonal(vec![1.0, 4.0, 10.0])
    }

    #[test]
    fn lossgrad_ratio_is_exact_on_a_quadratic() {
        let d = device();
        let q = quadratic();
        let theta = vec![1.0, -0.5, 0.25];
        for h in [1e-3, 0.05, 0.2, 0.5] {
            let mut opt = LossGrad::new(&LossGradConfig {
                lr: h,
                c: 1.05,
                ..Default::default()
            });
            let out = step_with(&mut opt, &q, &list(&[&theta], &d));
            let g = q.grad(&theta);
            let s: f64 = g.iter().map(|x| x * x).sum();
            let ghg = q.quad_form(&g);
            let expected = h * ghg / (2.0 * s);
            let r = out.diagnostics[0];
            assert!(
                (r - expected).abs() <= 1e-12 * expected.abs(),
                "h={h}: r={r}, expected {expected}"
            );
            assert_eq!(out.lr, h);
            assert_eq!(out.diagnostics[1], s);
            // The update used the old h.
            let moved = crate::testing::values(&out.params)[0].clone();
            for i in 0..3 {
                assert!((moved[i] - (theta[i] - h * g[i])).abs() < 1e-15);
            }
        }
    }

    #[test]
    fn lossgrad_shrinks_h_exactly_when_it_exceeds_the_line_search_step() {
        let d = device();
        let q = quadratic();
        let theta = vec![0.3, 1.0, -2.0];
        let g = q.grad(&theta);
        let s: f64 = g.iter().map(|x| x * x).sum();
        let exact = s / q.quad_form(&g);
        for h in [exact * 0.9, exact * 0.999, exact * 1.001, exact * 1.5] {
            let mut opt = LossGrad::new(&LossGradConfig {
                lr: h,
                c: 1.05,
                ..Default::default()
            });
            step_with(&mut opt, &q, &list(&[&theta], &d));
            let expected = if h > exact { h / 1.05 } else { h * 1.05 };
            assert_eq!(opt.current_lr(), expected, "h = {h}, exact step {exact}");
        }
    }

    #[test]
    fn lossgrad_h_settles_around_the_exact_line_search_step() {
        // The same point every step (a constant gradient stream): h must climb from h0 and then
        // oscillate within one factor c of the exact line-search step s/gᵀHg.
        let d = device();
        let q = quadratic();
        let theta = vec![0.3, 1.0, -2.0];
        let g = q.grad(&theta);
        let exact = g.iter().map(|x| x * x).sum::<f64>() / q.quad_form(&g);
        let mut opt = LossGrad::new(&LossGradConfig {
            lr: 1e-4,
            c: 1.05,
            ..Default::default()
        });
        let mut history = Vec::new();
        for _ in 0..400 {
            step_with(&mut opt, &q, &list(&[&theta], &d));
            history.push(opt.current_lr());
        }
        for h in &history[300..] {
            assert!(
                *h > exact / 1.05 / 1.05 && *h < exact * 1.05 * 1.05,
                "h = {h}, exact {exact}"
            );
        }
        let geo_mean = (history[300..].iter().map(|h| h.ln()).sum::<f64>() / 100.0).exp();
        assert!(
            (geo_mean / exact - 1.0).abs() < 0.05,
            "mean h {geo_mean} vs exact {exact}"
        );
    }

    #[test]
    fn lossgrad_decreases_h_when_the_probe_loss_is_not_finite() {
        let d = device();
        let q = quadratic().with_nan_probe();
        let mut opt = LossGrad::new(&LossGradConfig {
            lr: 0.01,
            c: 2.0,
            ..Default::default()
        });
        let out = step_with(&mut opt, &q, &list(&[&[1.0, 1.0, 1.0]], &d));
        assert!(out.diagnostics[0].is_nan());
        assert_eq!(opt.current_lr(), 0.005);
    }

    #[test]
    fn lossgrad_increases_h_on_a_zero_gradient_without_moving() {
        let d = device();
        let q = quadratic();
        let mut opt = LossGrad::new(&LossGradConfig {
            lr: 0.01,
            c: 2.0,
            ..Default::default()
        });
        let out = step_with(&mut opt, &q, &list(&[&[0.0, 0.0, 0.0]], &d));
        assert_eq!(
            crate::testing::values(&out.params),
            vec![vec![0.0, 0.0, 0.0]]
        );
        assert_eq!(out.diagnostics[0], 0.0);
        assert_eq!(opt.current_lr(), 0.02);
    }

    /// One step on the quadratic with f32 weights and gradient (an f32 model) at `theta`.
    fn step_f32(opt: &mut LossGrad, q: &Quadratic, theta: &[f64]) -> StepOutput {
        let d = device();
        let f32_list = |v: &[f64]| {
            let v: Vec<f32> = v.iter().map(|x| *x as f32).collect();
            let n = v.len();
            vec![burn::Tensor::<1>::from_data(
                burn::tensor::TensorData::new(v, [n]),
                (&d, DType::F32),
            )]
        };
        let mut probe = q.clone();
        opt.step(StepInput {
            params: f32_list(theta),
            loss: q.loss(theta),
            grads: f32_list(&q.grad(theta)),
            probe: &mut probe,
            holdout: None,
        })
    }

    #[test]
    fn lossgrad_step_below_f32_resolution_is_counted_and_warned_once() {
        // Weights 1, h·g ≤ 1e-11: θ − h·g == θ in f32 (spacing 1.2e-7), so f1 == f0 exactly.
        let q = quadratic();
        let theta = [1.0, 1.0, 1.0];
        let config = |unmeasured| LossGradConfig {
            lr: 1e-12,
            c: 2.0,
            unmeasured,
        };
        // The paper's rule: r = 1, h halves on every such step.
        let mut opt = LossGrad::new(&config(Unmeasured::Paper));
        let out = step_f32(&mut opt, &q, &theta);
        assert_eq!(crate::testing::values(&out.params), vec![theta.to_vec()]);
        assert_eq!(out.diagnostics[2], q.loss(&theta), "probe loss == loss");
        assert_eq!(out.diagnostics[3], 1.0, "unmeasured");
        assert!(out.diagnostics[0] > 0.99, "r = {}", out.diagnostics[0]);
        assert_eq!(opt.current_lr(), 5e-13);
        let warning = out.warning.expect("the first unmeasured step warns");
        for part in [
            "lossgrad",
            "rounding",
            "equals the batch loss",
            "run.precision = \"f64\"",
            "optimizer.lr",
            "optimizer.unmeasured = \"exact\"",
            "`unmeasured`",
        ] {
            assert!(warning.contains(part), "{part:?} missing: {warning}");
        }
        let out = step_f32(&mut opt, &q, &theta);
        assert_eq!(out.diagnostics[3], 1.0);
        assert!(out.warning.is_none(), "warned once only");
        assert_eq!(opt.current_lr(), 2.5e-13);

        // "exact": r = 0, h doubles; still one warning.
        let mut opt = LossGrad::new(&config(Unmeasured::Exact));
        let out = step_f32(&mut opt, &q, &theta);
        assert_eq!((out.diagnostics[0], out.diagnostics[3]), (0.0, 1.0));
        assert_eq!(opt.current_lr(), 2e-12);
        let warning = out.warning.expect("exact mode warns too");
        assert!(warning.contains("grows"), "{warning}");
        let out = step_f32(&mut opt, &q, &theta);
        assert!(out.warning.is_none());
        assert_eq!(opt.current_lr(), 4e-12);

        // The same step in f64 is measurable: r ≈ h·gᵀHg/(2s) ≪ 1/2 and h grows under the
        // paper's rule.
        let mut opt = LossGrad::new(&config(Unmeasured::Paper));
        let out = step_with(&mut opt, &q, &list(&[&theta], &device()));
        assert_eq!(out.diagnostics[3], 0.0);
        assert!(out.warning.is_none());
        assert!(out.diagnostics[0] < 0.5, "r = {}", out.diagnostics[0]);
        assert_eq!(opt.current_lr(), 2e-12);
    }

    #[test]
    fn lossgrad_measurable_steps_are_not_counted_and_do_not_warn() {
        let q = quadratic();
        let theta = [1.0, -0.5, 0.25];
        for unmeasured in [Unmeasured::Paper, Unmeasured::Exact] {
            let mut opt = LossGrad::new(&LossGradConfig {
                lr: 0.05,
                unmeasured,
                ..Default::default()
            });
            let out = step_f32(&mut opt, &q, &theta);
            assert_eq!(out.diagnostics[3], 0.0);
            assert!(out.warning.is_none());
            let out = step_with(&mut opt, &q, &list(&[&theta], &device()));
            assert_eq!(out.diagnostics[3], 0.0);
            assert!(out.warning.is_none());
            // A zero gradient moves nothing: f1 == f0 but h·s = 0, not unmeasured.
            let out = step_with(&mut opt, &q, &list(&[&[0.0; 3]], &device()));
            assert_eq!((out.diagnostics[0], out.diagnostics[3]), (0.0, 0.0));
            assert!(out.warning.is_none());
        }
    }

    #[test]
    fn lossgrad_unmeasured_key_parses_round_trips_and_defaults_to_paper() {
        let cfg: LossGradConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, LossGradConfig::default());
        assert_eq!(cfg.unmeasured, Unmeasured::Paper);
        let cfg: LossGradConfig = toml::from_str("unmeasured = \"exact\"").unwrap();
        assert_eq!(cfg.unmeasured, Unmeasured::Exact);
        let text = toml::to_string(&cfg).unwrap();
        assert!(text.contains("unmeasured = \"exact\""), "{text}");
        assert_eq!(toml::from_str::<LossGradConfig>(&text).unwrap(), cfg);
        let err = toml::from_str::<LossGradConfig>("unmeasured = \"zero\"").unwrap_err();
        assert!(err.to_string().contains("zero"), "{err}");
    }

    #[test]
    fn lossgrad_state_round_trips() {
        let mut opt = LossGrad::new(&LossGradConfig {
            lr: 0.25,
            c: 1.05,
            ..Default::default()
        });
        let state = opt.state();
        let mut other = LossGrad::new(&LossGradConfig::default());
        other.load_state(&state, &device(), DType::F64).unwrap();
        assert_eq!(other.current_lr(), 0.25);
        opt.h = 3.0;
        assert_ne!(host(&opt.state()), host(&state));
    }

    #[test]
    fn lossgrad_rejects_c_below_one() {
        let err = LossGradConfig {
            lr: 0.1,
            c: 0.99,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("optimizer.c"));
        let err = LossGradConfig {
            lr: -0.1,
            c: 1.05,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("optimizer.lr"));
    }
}
