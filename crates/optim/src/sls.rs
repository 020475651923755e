//! SLS: SGD with a stochastic Armijo line search on each batch.
//!
//! Vaswani, Mishkin, Laradji, Schmidt, Gidel & Lacoste-Julien, "Painless Stochastic Gradient:
//! Interpolation, Line-Search, and Convergence Rates" (NeurIPS 2019): the stochastic Armijo
//! condition (Sec. 3), backtracking (Algorithm 1) and the step-size reset that grows the previous
//! step by γ^{b/n} = 2^{1/n_b} (the reset option "increase", Algorithm 2), as ALGORITHMS.md §5
//! fixes it. With L the batch loss and g its gradient:
//!
//! ```text
//! if ‖g‖ < 1e-8:  no update (weights and η unchanged, no probe)
//! η = η_prev · 2^{1/n_b}                   # η_prev = `lr` before the first step
//! repeat up to max_backtracks (100) times:
//!     L' = L(θ − η·g; same batch)          # one forward pass (the probe)
//!     if L' ≤ L − c·η·‖g‖²:  accept: θ ← θ − η·g, stop
//!     else η ← β·η                         # β = 0.9
//! nothing accepted:  θ ← θ − 1e-6·g, η = 1e-6
//! η_prev ← η
//! ```
//!
//! n_b is the number of batches per epoch (from [`StepSizeOptimizer::begin_epoch`]), so the trial
//! step at most doubles over an epoch; if `begin_epoch` was never called, n_b = 1.
//!
//! Cost per step: 1 forward + 1 backward pass, plus (backtracks + 1) forward passes when a trial
//! is accepted, `max_backtracks` when none is (at most 100 extra forward passes). Defaults:
//! η0 = `lr` = 1, c = 0.1, β = `beta` = 0.9, `max_backtracks` = 100 (the paper's values).
//! The `lr` column logs the η this update used. Diagnostics: `backtracks` (the number of
//! rejected trial steps), `grad_sq_norm` (‖g‖²), `trial_loss` (the accepted L'; L itself when
//! no step was needed, NaN when nothing was accepted and the 1e-6 fallback step was taken) and
//! `unmeasured` (1 when a trial of this search was unmeasured, below; 0 otherwise).
//!
//! # Unmeasured trials (`unmeasured = "paper" | "exact"`)
//! A trial is *unmeasured* when L' == L bit for bit (the f64 the probe returned equals the batch
//! loss) while η·‖g‖² > 0: θ − η·g is within the rounding of θ at the run's precision. In exact
//! arithmetic L(θ − η·g) = L − η·‖g‖² + O(η²), so the Armijo condition (c < 1) holds for every
//! small enough η; in floating point it reads L ≤ L − c·η·‖g‖², false until c·η·‖g‖² is itself
//! below the f64 rounding of L, and every smaller trial is unmeasured too: the search spends
//! forward passes backtracking until η is that small (≈ 1e-16·L/‖g‖², accepted there) or to the
//! 1e-6 fallback after `max_backtracks`, and the next search starts from that η: a silent stall.
//! - `unmeasured = "paper"` (default): the paper's Armijo test on the numbers as they are.
//! - `unmeasured = "exact"`: the first unmeasured trial is accepted (what exact arithmetic gives
//!   for a step that small); its η becomes η_prev, so the next searches grow it by 2^{1/n_b}
//!   until the change is measurable.
//!
//! Either way the step counts 1 in `unmeasured`, and the first one of the run returns a warning
//! ([`StepOutput::warning`]) naming the cause and the remedies: `run.precision = "f64"`, a larger
//! `optimizer.lr` (η0), or `unmeasured = "exact"`. The check compares numbers the search has
//! anyway: no extra pass.
//!
//! # Project choices
//! - The first trial is already lr·2^{1/n_b} (ALGORITHMS.md; Algorithm 2 of the paper starts at
//!   η_max on the first iteration).
//! - The fallback step 1e-6 also becomes η_prev, so the next batch's search starts from 1e-6·2^{1/n_b}.
//! - A non-finite L' counts as a rejection. A non-finite L or ‖g‖² skips the update (weights and
//!   η unchanged, no probe, diagnostics NaN).
//! - η is set by the search, so `sls` takes no `[schedule]`.

use burn::tensor::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::api::{OptimizerState, StepInput, StepOutput, StepSizeOptimizer};
use crate::unmeasured::{self, OnceWarning, Unmeasured};
use crate::{OptimError, vector};

/// Below this gradient norm no update is made (ALGORITHMS.md §5, as the authors' code).
const MIN_GRAD_NORM: f64 = 1e-8;

/// The step taken when no trial step satisfies the Armijo condition.
const FALLBACK_STEP: f64 = 1e-6;

/// Settings of [`Sls`], as `[optimizer]` keys with `kind = "sls"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlsConfig {
    /// Initial step size η0, the first η_prev (default 1).
    #[serde(default = "SlsConfig::default_lr")]
    pub lr: f64,
    /// Armijo constant c in (0, 1) (default 0.1).
    #[serde(default = "SlsConfig::default_c")]
    pub c: f64,
    /// Backtracking factor β in (0, 1) (default 0.9).
    #[serde(default = "SlsConfig::default_beta")]
    pub beta: f64,
    /// Trial steps per batch before the 1e-6 fallback (default 100).
    #[serde(default = "SlsConfig::default_max_backtracks")]
    pub max_backtracks: usize,
    /// How a trial whose loss equals the batch loss exactly is treated: `"paper"` (default, the
    /// Armijo test rejects it) or `"exact"` (accepted); see the module documentation.
    #[serde(default)]
    pub unmeasured: Unmeasured,
}

impl SlsConfig {
    fn default_lr() -> f64 {
        1.0
    }
    fn default_c() -> f64 {
        0.1
    }
    fn default_beta() -> f64 {
        0.9
    }
    fn default_max_backtracks() -> usize {
        100
    }

    /// Checks the settings; errors name the config key.
    pub fn validate(&self) -> Result<(), OptimError> {
        crate::check_positive("optimizer.lr", self.lr)?;
        for (key, value) in [("optimizer.c", self.c), ("optimizer.beta", self.beta)] {
            if !(value > 0.0 && value < 1.0) {
                return Err(OptimError::invalid(
                    key,
                    format!("must be in (0, 1), got {value}"),
                ));
            }
        }
        if self.max_backtracks == 0 {
            return Err(OptimError::invalid(
                "optimizer.max_backtracks",
                "must be at least 1".to_string(),
            ));
        }
        Ok(())
    }
}

impl Default for SlsConfig {
    fn default() -> Self {
        Self {
            lr: Self::default_lr(),
            c: Self::default_c(),
            beta: Self::default_beta(),
            max_backtracks: Self::default_max_backtracks(),
            unmeasured: Unmeasured::default(),
        }
    }
}

/// SGD with the stochastic Armijo line search. See the module documentation.
#[derive(Debug, Clone)]
pub struct Sls {
    /// Armijo constant c.
    c: f64,
    /// Backtracking factor β.
    beta: f64,
    /// Trial steps per batch.
    max_backtracks: usize,
    /// The step size of the last update (η0 before the first).
    eta: f64,
    /// Batches per epoch n_b (1 until `begin_epoch` says otherwise).
    batches_per_epoch: usize,
    /// What an unmeasured trial does.
    unmeasured: Unmeasured,
    /// Whether the unmeasured-step warning was given (saved state: a resumed run does not repeat it).
    warning: OnceWarning,
}

impl Sls {
    /// An SLS optimizer starting at η_prev = `config.lr`.
    pub fn new(config: &SlsConfig) -> Self {
        Self {
            c: config.c,
            beta: config.beta,
            max_backtracks: config.max_backtracks,
            eta: config.lr,
            batches_per_epoch: 1,
            unmeasured: config.unmeasured,
            warning: OnceWarning::default(),
        }
    }
}

impl Sls {
    /// The one-time warning, when this search had an unmeasured trial (at step size `eta`).
    fn warn(&mut self, unmeasured_at: Option<f64>, loss: f64, s: f64) -> Option<String> {
        let mode = self.unmeasured;
        self.warning.check(unmeasured_at.is_some(), || {
            let eta = unmeasured_at.unwrap_or(f64::NAN);
            let (effect, option) = match mode {
                Unmeasured::Paper => (
                    "the Armijo test rejects it and every smaller trial until c·η·‖g‖² is below \
                     the f64 rounding of the loss (or the search falls back to η = 1e-6), and the \
                     next search starts from that η",
                    ", or optimizer.unmeasured = \"exact\" (accept such a trial: in exact \
                     arithmetic the Armijo condition holds for a small enough η)",
                ),
                Unmeasured::Exact => (
                    "optimizer.unmeasured = \"exact\" accepts it, so the next searches grow η \
                     until the change is measurable",
                    "",
                ),
            };
            format!(
                "sls: the trial loss L(θ − η·g) equals the batch loss {loss} exactly at \
                 η = {eta:e} (η·‖g‖² = {lred:e}): {cause}; {effect}. Remedies: run.precision = \
                 \"f64\", a larger optimizer.lr (η0){option}. {counted}",
                lred = eta * s,
                cause = unmeasured::CAUSE,
                counted = unmeasured::COUNTED,
            )
        })
    }
}

impl StepSizeOptimizer for Sls {
    fn kind(&self) -> &'static str {
        "sls"
    }

    fn diagnostic_names(&self) -> &'static [&'static str] {
        &["backtracks", "grad_sq_norm", "trial_loss", "unmeasured"]
    }

    fn begin_epoch(&mut self, _epoch: usize, batches_per_epoch: usize) {
        self.batches_per_epoch = batches_per_epoch.max(1);
    }

    fn step(&mut self, input: StepInput<'_>) -> StepOutput {
        let StepInput {
            params,
            loss,
            grads,
            probe,
            ..
        } = input;
        let s = vector::sq_norm(&grads); // SYNC
        if !loss.is_finite() || !s.is_finite() {
            return StepOutput::new(params, self.eta, vec![f64::NAN, s, f64::NAN, f64::NAN]);
        }
        if s.sqrt() < MIN_GRAD_NORM {
            return StepOutput::new(params, self.eta, vec![0.0, s, loss, 0.0]);
        }
        let mut eta = self.eta * 2f64.powf(1.0 / self.batches_per_epoch as f64);
        // The η of the first unmeasured trial, if any.
        let mut unmeasured_at: Option<f64> = None;
        for backtracks in 0..self.max_backtracks {
            let trial = vector::add_scaled(&params, &grads, -eta);
            let trial_loss = probe.loss_at(&trial); // SYNC: one forward pass
            // θ moved by η·g ≠ 0 (‖g‖ ≥ 1e-8 here), yet the probe returned L itself.
            let unmeasured = trial_loss == loss && eta * s > 0.0;
            if unmeasured && unmeasured_at.is_none() {
                unmeasured_at = Some(eta);
            }
            // A NaN trial loss fails this comparison: it counts as a rejection.
            if trial_loss <= loss - self.c * eta * s
                || (unmeasured && self.unmeasured == Unmeasured::Exact)
            {
                self.eta = eta;
                let warning = self.warn(unmeasured_at, loss, s);
                return StepOutput::new(
                    trial,
                    eta,
                    vec![
                        backtracks as f64,
                        s,
                        trial_loss,
                        unmeasured::column(unmeasured_at.is_some()),
                    ],
                )
                .with_warning(warning);
            }
            eta *= self.beta;
        }
        self.eta = FALLBACK_STEP;
        let params = vector::add_scaled(&params, &grads, -FALLBACK_STEP);
        let warning = self.warn(unmeasured_at, loss, s);
        StepOutput::new(
            params,
            FALLBACK_STEP,
            vec![
                self.max_backtracks as f64,
                s,
                f64::NAN,
                unmeasured::column(unmeasured_at.is_some()),
            ],
        )
        .with_warning(warning)
    }

    fn current_lr(&self) -> f64 {
        self.eta
    }

    fn state(&self) -> OptimizerState {
        self.warning.save(
            OptimizerState::new(self.kind())
                .with_scalar("eta", self.eta)
                .with_scalar("batches_per_epoch", self.batches_per_epoch as f64),
        )
    }

    fn load_state(
        &mut self,
        state: &OptimizerState,
        _: &Device,
        _: DType,
    ) -> Result<(), OptimError> {
        state.expect_kind(self.kind())?;
        let eta = state.positive_scalar("eta")?;
        let batches_per_epoch = state.step_counter("batches_per_epoch")?;
        self.warning = OnceWarning::load(state)?;
        self.eta = eta;
        self.batches_per_epoch = usize::try_from(batches_per_epoch)
            .unwrap_or(usize::MAX)
            .max(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use burn::Tensor;

    use super::*;
    use crate::api::LossProbe;
    use crate::testing::{Quadratic, device, list, values};
    use crate::vector::ParamList;

    /// Counts the forward passes a step asks of its probe; `loss` replaces the probe's answer.
    struct Counting {
        q: Quadratic,
        calls: usize,
        always: Option<f64>,
    }

    impl LossProbe for Counting {
        fn loss_at(&mut self, params: &[Tensor<1>]) -> f64 {
            self.calls += 1;
            match self.always {
                Some(v) => v,
                None => self.q.loss(&values(params).concat()),
            }
        }
        fn loss_and_grad_at(&mut self, _: &[Tensor<1>]) -> (f64, ParamList) {
            unreachable!("SLS only needs forward passes")
        }
    }

    /// One step at `theta` (one tensor), with a counting probe.
    fn step_at(
        opt: &mut Sls,
        q: &Quadratic,
        theta: &[f64],
        always: Option<f64>,
    ) -> (StepOutput, usize) {
        let d = device();
        let mut probe = Counting {
            q: q.clone(),
            calls: 0,
            always,
        };
        let out = opt.step(StepInput {
            params: list(&[theta], &d),
            loss: q.loss(theta),
            grads: list(&[&q.grad(theta)], &d),
            probe: &mut probe,
            holdout: None,
        });
        (out, probe.calls)
    }

    /// The Armijo test on the host: L(θ − η·g) ≤ L − c·η·‖g‖².
    fn armijo(q: &Quadratic, theta: &[f64], eta: f64, c: f64) -> bool {
        let g = q.grad(theta);
        let s: f64 = g.iter().map(|x| x * x).sum();
        let moved: Vec<f64> = theta.iter().zip(&g).map(|(x, gi)| x - eta * gi).collect();
        q.loss(&moved) <= q.loss(theta) - c * eta * s
    }

    #[test]
    fn sls_backtracks_to_the_first_armijo_step() {
        // H = diag(1, 10), θ = (1, 1): L = 5.5, g = (1, 10), ‖g‖² = 101, gᵀHg = 1001.
        // φ(η) = L − 101η + 500.5η², Armijo holds iff η ≤ 90.9/500.5 ≈ 0.18162.
        // From η = 1·2^{1/1} = 2: 2·0.9^k ≤ 0.18162 first at k = 23.
        let q = Quadratic::diagonal(vec![1.0, 10.0]);
        let theta = [1.0, 1.0];
        let mut opt = Sls::new(&SlsConfig::default());
        let (out, calls) = step_at(&mut opt, &q, &theta, None);
        let k = out.diagnostics[0];
        assert_eq!(k, 23.0);
        assert_eq!(calls, 24, "one probe per trial: backtracks + 1");
        let eta = 2.0 * 0.9f64.powi(23);
        assert!((out.lr - eta).abs() <= 1e-14 * eta);
        assert!(out.lr <= 90.9 / 500.5 && out.lr / 0.9 > 90.9 / 500.5);
        assert!(armijo(&q, &theta, out.lr, 0.1));
        assert!(!armijo(&q, &theta, out.lr / 0.9, 0.1));
        let got = values(&out.params)[0].clone();
        assert!(
            (got[0] - (1.0 - eta)).abs() < 1e-15 && (got[1] - (1.0 - 10.0 * eta)).abs() < 1e-14
        );
        let moved = [1.0 - eta, 1.0 - 10.0 * eta];
        assert!((out.diagnostics[2] - q.loss(&moved)).abs() <= 1e-14 * q.loss(&moved));
        assert_eq!(out.diagnostics[1], 101.0);
        assert_eq!(opt.current_lr(), out.lr);
    }

    #[test]
    fn sls_accepted_step_satisfies_armijo_and_the_previous_trial_did_not() {
        let q = Quadratic::diagonal(vec![1.0, 4.0, 10.0]);
        let mut opt = Sls::new(&SlsConfig {
            lr: 3.0,
            c: 0.3,
            beta: 0.7,
            max_backtracks: 100,
            unmeasured: Unmeasured::Paper,
        });
        opt.begin_epoch(1, 5);
        let mut theta = vec![1.0, -0.5, 0.25];
        let mut eta_prev = 3.0;
        for step in 0..20 {
            let (out, calls) = step_at(&mut opt, &q, &theta, None);
            let k = out.diagnostics[0] as i32;
            assert_eq!(calls, k as usize + 1);
            let first = eta_prev * 2f64.powf(0.2);
            assert!(
                (out.lr - first * 0.7f64.powi(k)).abs() <= 1e-14 * out.lr,
                "step {step}"
            );
            assert!(armijo(&q, &theta, out.lr, 0.3), "step {step}");
            if k > 0 {
                assert!(!armijo(&q, &theta, out.lr / 0.7, 0.3), "step {step}");
            }
            theta = values(&out.params)[0].clone();
            eta_prev = out.lr;
        }
    }

    #[test]
    fn sls_grows_the_step_by_two_to_the_one_over_n_b() {
        // Tiny steps on a flat quadratic: every first trial is accepted, η grows by 2^{1/4}.
        let q = Quadratic::diagonal(vec![1e-3, 2e-3]);
        let mut opt = Sls::new(&SlsConfig {
            lr: 1e-2,
            ..SlsConfig::default()
        });
        opt.begin_epoch(1, 4);
        let mut theta = vec![1.0, 1.0];
        for k in 1..=8 {
            let (out, calls) = step_at(&mut opt, &q, &theta, None);
            assert_eq!((out.diagnostics[0], calls), (0.0, 1));
            let expected = 1e-2 * 2f64.powf(k as f64 / 4.0);
            assert!((out.lr - expected).abs() <= 1e-14 * expected, "k {k}");
            theta = values(&out.params)[0].clone();
        }
        // Without begin_epoch n_b = 1: the step doubles.
        let mut opt = Sls::new(&SlsConfig {
            lr: 1e-2,
            ..SlsConfig::default()
        });
        let (out, _) = step_at(&mut opt, &q, &[1.0, 1.0], None);
        assert_eq!(out.lr, 2e-2);
    }

    #[test]
    fn sls_falls_back_to_a_tiny_step_when_nothing_is_accepted() {
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        for bad in [f64::INFINITY, f64::NAN] {
            let mut opt = Sls::new(&SlsConfig::default());
            let (out, calls) = step_at(&mut opt, &q, &[1.0, 0.5], Some(bad));
            assert_eq!(calls, 100);
            assert_eq!(out.diagnostics[0], 100.0);
            assert!(out.diagnostics[2].is_nan());
            assert_eq!(out.lr, 1e-6);
            let got = values(&out.params)[0].clone();
            assert_eq!(got, vec![1.0 - 1e-6, 0.5 - 2e-6]);
            assert_eq!(opt.current_lr(), 1e-6);
        }
    }

    #[test]
    fn sls_tiny_or_zero_gradient_makes_no_update_and_no_probe() {
        let q = Quadratic::diagonal(vec![1.0, 1.0]);
        let mut opt = Sls::new(&SlsConfig::default());
        for theta in [[0.0, 0.0], [5e-9, 5e-9]] {
            let (out, calls) = step_at(&mut opt, &q, &theta, None);
            assert_eq!(calls, 0);
            assert_eq!(values(&out.params), vec![theta.to_vec()]);
            assert_eq!(out.lr, 1.0);
            assert!(out.diagnostics.iter().all(|v| !v.is_nan()));
            assert_eq!(opt.current_lr(), 1.0);
        }
    }

    #[test]
    fn sls_skips_non_finite_losses_and_gradients() {
        let d = device();
        let mut opt = Sls::new(&SlsConfig::default());
        for (loss, g) in [(f64::NAN, [1.0, 1.0]), (1.0, [f64::INFINITY, 1.0])] {
            let mut probe = Counting {
                q: Quadratic::diagonal(vec![1.0, 1.0]),
                calls: 0,
                always: None,
            };
            let out = opt.step(StepInput {
                params: list(&[&[1.0, 2.0]], &d),
                loss,
                grads: list(&[&g], &d),
                probe: &mut probe,
                holdout: None,
            });
            assert_eq!(probe.calls, 0);
            assert_eq!(values(&out.params), vec![vec![1.0, 2.0]]);
            assert!(out.diagnostics[0].is_nan());
            assert_eq!(opt.current_lr(), 1.0);
        }
    }

    /// One step at `theta` with f32 weights and gradient (an f32 model), with a counting probe.
    fn step_at_f32(opt: &mut Sls, q: &Quadratic, theta: &[f64]) -> (StepOutput, usize) {
        let d = device();
        let f32_list = |v: &[f64]| {
            let v: Vec<f32> = v.iter().map(|x| *x as f32).collect();
            let n = v.len();
            vec![Tensor::<1>::from_data(
                burn::tensor::TensorData::new(v, [n]),
                (&d, DType::F32),
            )]
        };
        let mut probe = Counting {
            q: q.clone(),
            calls: 0,
            always: None,
        };
        let out = opt.step(StepInput {
            params: f32_list(theta),
            loss: q.loss(theta),
            grads: f32_list(&q.grad(theta)),
            probe: &mut probe,
            holdout: None,
        });
        (out, probe.calls)
    }

    #[test]
    fn sls_trial_below_f32_resolution_is_counted_and_warned_once() {
        // Weights 1, η·g ≤ 8e-12: θ − η·g == θ in f32, so every trial loss equals L exactly.
        let q = Quadratic::diagonal(vec![1.0, 4.0]);
        let theta = [1.0, 1.0];
        let config = |unmeasured| SlsConfig {
            lr: 1e-12,
            unmeasured,
            ..SlsConfig::default()
        };
        // The paper's rule: every trial is rejected until c·η·‖g‖² falls below the f64 rounding
        // of L (then L' = L ≤ L − c·η·‖g‖² holds), at η ≈ 1e-16.
        let (loss, s) = (q.loss(&theta), 17.0);
        let k = (0..100)
            .find(|&k| loss - 0.1 * 2e-12 * 0.9f64.powi(k) * s == loss)
            .unwrap();
        assert!(k > 80, "k = {k}");
        let mut opt = Sls::new(&config(Unmeasured::Paper));
        let (out, calls) = step_at_f32(&mut opt, &q, &theta);
        assert_eq!((calls, out.diagnostics[0]), (k as usize + 1, k as f64));
        assert_eq!(out.diagnostics[3], 1.0, "unmeasured");
        assert!(out.lr < 1e-15, "η = {}", out.lr);
        let warning = out.warning.expect("the first unmeasured search warns");
        for part in [
            "sls",
            "rounding",
            "equals the batch loss",
            "run.precision = \"f64\"",
            "optimizer.lr",
            "optimizer.unmeasured = \"exact\"",
        ] {
            assert!(warning.contains(part), "{part:?} missing: {warning}");
        }
        opt.eta = 1e-12;
        let (out, _) = step_at_f32(&mut opt, &q, &theta);
        assert_eq!(out.diagnostics[3], 1.0);
        assert!(out.warning.is_none(), "warned once only");
        // With fewer backtracks allowed it ends at the 1e-6 fallback instead.
        let mut opt = Sls::new(&SlsConfig {
            max_backtracks: 50,
            ..config(Unmeasured::Paper)
        });
        let (out, calls) = step_at_f32(&mut opt, &q, &theta);
        assert_eq!((calls, out.lr, out.diagnostics[3]), (50, 1e-6, 1.0));
        assert!(out.warning.is_some());

        // "exact": the first trial (2e-12) is accepted, and the next search doubles it.
        let mut opt = Sls::new(&config(Unmeasured::Exact));
        let (out, calls) = step_at_f32(&mut opt, &q, &theta);
        assert_eq!((calls, out.diagnostics[0]), (1, 0.0));
        assert_eq!(
            (out.diagnostics[2], out.diagnostics[3]),
            (q.loss(&theta), 1.0)
        );
        assert_eq!(out.lr, 2e-12);
        assert_eq!(values(&out.params), vec![theta.to_vec()]);
        assert!(
            out.warning
                .expect("exact mode warns too")
                .contains("accepts")
        );
        let (out, _) = step_at_f32(&mut opt, &q, &theta);
        assert_eq!((out.lr, out.diagnostics[3]), (4e-12, 1.0));
        assert!(out.warning.is_none());

        // In f64 the same trial is measurable: Armijo holds, nothing is counted.
        let mut opt = Sls::new(&config(Unmeasured::Paper));
        let (out, calls) = step_at(&mut opt, &q, &theta, None);
        assert_eq!((calls, out.lr, out.diagnostics[3]), (1, 2e-12, 0.0));
        assert!(out.warning.is_none());
    }

    #[test]
    fn sls_measurable_searches_are_not_counted_and_do_not_warn() {
        let q = Quadratic::diagonal(vec![1.0, 10.0]);
        for unmeasured in [Unmeasured::Paper, Unmeasured::Exact] {
            let mut opt = Sls::new(&SlsConfig {
                unmeasured,
                ..SlsConfig::default()
            });
            let (out, _) = step_at(&mut opt, &q, &[1.0, 1.0], None);
            assert_eq!((out.diagnostics[0], out.diagnostics[3]), (23.0, 0.0));
            assert!(out.warning.is_none());
            let (out, _) = step_at_f32(&mut opt, &q, &[1.0, 1.0]);
            assert_eq!(out.diagnostics[3], 0.0);
            assert!(out.warning.is_none());
        }
        let cfg: SlsConfig = toml::from_str("unmeasured = \"exact\"").unwrap();
        assert_eq!(cfg.unmeasured, Unmeasured::Exact);
        let text = toml::to_string(&SlsConfig::default()).unwrap();
        assert!(text.contains("unmeasured = \"paper\""), "{text}");
        assert_eq!(
            toml::from_str::<SlsConfig>(&text).unwrap(),
            SlsConfig::default()
        );
    }

    #[test]
    fn sls_state_round_trips_with_batches_per_epoch() {
        let d = device();
        let q = Quadratic::diagonal(vec![1.0, 10.0]);
        let mut opt = Sls::new(&SlsConfig::default());
        opt.begin_epoch(1, 3);
        let (out, _) = step_at(&mut opt, &q, &[1.0, 1.0], None);
        let theta = values(&out.params)[0].clone();
        let mut restored = Sls::new(&SlsConfig::default());
        restored.load_state(&opt.state(), &d, DType::F64).unwrap();
        assert_eq!(restored.batches_per_epoch, 3);
        assert_eq!(restored.current_lr(), opt.current_lr());
        let (a, _) = step_at(&mut opt, &q, &theta, None);
        let (b, _) = step_at(&mut restored, &q, &theta, None);
        assert_eq!(values(&a.params), values(&b.params));
        assert!(opt.base_lr().is_none());
    }

    #[test]
    fn sls_validate_names_the_keys() {
        let err = SlsConfig {
            beta: 1.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("optimizer.beta"), "{err}");
        let err = SlsConfig {
            c: 0.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("optimizer.c"), "{err}");
        let err = SlsConfig {
            max_backtracks: 0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(
            err.to_string().contains("optimizer.max_backtracks"),
            "{err}"
        );
        let err = SlsConfig {
            lr: 0.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("optimizer.lr"), "{err}");
    }
}
