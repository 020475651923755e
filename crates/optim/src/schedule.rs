//! Learning-rate schedules, stepped once per epoch (or, for `multistep` with `milestone_steps`,
//! by global step): the `[schedule]` section of a config.
//!
//! A schedule scales the base learning rate (`optimizer.lr`) of a method that has one (SGD,
//! Adam, RMSProp, ...; see [`StepSizeOptimizer::base_lr`](crate::StepSizeOptimizer::base_lr)).
//! Methods that set their own step size (LossGrad, L4, TLR, ...) cannot be scheduled.
//!
//! **When it steps.** As the papers' reference code does, the schedule is stepped at the START
//! of each epoch, so epoch `e` (counted from 1) trains with the value after `e` steps:
//!
//! ```text
//! multistep    lr·γ^#{m ∈ milestones : m ≤ e}        γ = 0.1, milestones default ⌊E/2⌋, ⌊3E/4⌋
//! step         lr·γ^⌊e / step_size⌋                  (PyTorch's StepLR)
//! exponential  lr·γ^e                                γ = 0.9
//! trapezoid    lr·e/w for e ≤ w; lr up to epoch f; then lr·(E − e)/(E − f)   w = 10, f = 15
//! cosine       min_lr + (lr − min_lr)·(1 + cos(π·e/E))/2
//! ```
//!
//! with E = `training.epochs`. `multistep` with `milestone_steps` instead counts global steps,
//! as TensorFlow's `global_step`-driven policies do (the L4 paper's "default policy", ALGORITHMS.md
//! §4): step s (from 1) trains at lr·γ^#{m ∈ milestone_steps : m < s}, so a milestone m is the
//! number of steps taken at the earlier rate (TF's `global_step < m`). Consequences of stepping first: a trapezoid starting at 0 still
//! trains in epoch 1 (at lr/w), LossGrad Table 3's "StepLR ×0.5 at epoch 20" is `step` with
//! `step_size = 20`, `gamma = 0.5` (epoch 20 is the first at half the rate), and the trapezoid
//! and cosine reach 0 (`min_lr`) in the last epoch. The trapezoid's decreasing side is not
//! specified by the paper (LossGrad Table 3); linear to 0 at the last epoch is this project's
//! choice.

use serde::{Deserialize, Serialize};

use crate::OptimError;

/// The `[schedule]` section: one variant per `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScheduleConfig {
    /// `kind = "multistep"`: multiply by γ at each milestone epoch.
    Multistep(MultiStepSchedule),
    /// `kind = "step"`: multiply by γ every `step_size` epochs.
    Step(StepSchedule),
    /// `kind = "exponential"`: multiply by γ every epoch.
    Exponential(ExponentialSchedule),
    /// `kind = "trapezoid"`: linear warm-up, plateau, linear decay to 0.
    Trapezoid(TrapezoidSchedule),
    /// `kind = "cosine"`: half a cosine from lr down to `min_lr`.
    Cosine(CosineSchedule),
}

/// `kind = "multistep"` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiStepSchedule {
    /// Epochs at whose start the rate is multiplied by γ; default 50 % and 75 % of training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub milestones: Option<Vec<usize>>,
    /// Global step counts after which the rate is multiplied by γ (instead of `milestones`):
    /// the step after the m-th is the first at the lower rate. Milestones past the end of a
    /// run are allowed (a shortened run of a step-based policy, as L4's Fig. 4 stops at epoch
    /// 150 before the policy's last change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub milestone_steps: Option<Vec<u64>>,
    /// Factor γ (default 0.1).
    #[serde(default = "default_tenth")]
    pub gamma: f64,
    /// One factor per milestone, applied in turn, instead of one γ for all (the WAE paper's
    /// CelebA Adam: `milestones = [31, 51]`, `gammas = [0.5, 0.2]` halves the rate after 30
    /// epochs and divides it by 5 after 50). Needs explicit milestones of the same number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gammas: Option<Vec<f64>>,
}

impl MultiStepSchedule {
    /// The factor after the first `count` milestones.
    fn factor(&self, count: usize) -> f64 {
        match &self.gammas {
            Some(g) => g.iter().take(count).product(),
            None => self.gamma.powi(count as i32),
        }
    }
}

/// `kind = "step"` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSchedule {
    /// Period in epochs.
    pub step_size: usize,
    /// Factor γ (default 0.1).
    #[serde(default = "default_tenth")]
    pub gamma: f64,
}

/// `kind = "exponential"` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExponentialSchedule {
    /// Factor γ per epoch (default 0.9).
    #[serde(default = "default_exp_gamma")]
    pub gamma: f64,
}

/// `kind = "trapezoid"` keys; the peak is `optimizer.lr`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrapezoidSchedule {
    /// The epoch by which the rate has risen linearly from 0 to its peak (default 10).
    #[serde(default = "default_warmup")]
    pub warmup_epochs: usize,
    /// The last epoch at the peak (default 15); after it the rate falls linearly to 0 at the
    /// last epoch.
    #[serde(default = "default_plateau_end")]
    pub plateau_until: usize,
}

/// `kind = "cosine"` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosineSchedule {
    /// The rate at the last epoch (default 0).
    #[serde(default)]
    pub min_lr: f64,
}

fn default_tenth() -> f64 {
    0.1
}
fn default_exp_gamma() -> f64 {
    0.9
}
fn default_warmup() -> usize {
    10
}
fn default_plateau_end() -> usize {
    15
}

fn check_factor(key: &str, gamma: f64) -> Result<(), OptimError> {
    if gamma.is_finite() && gamma > 0.0 {
        Ok(())
    } else {
        Err(OptimError::invalid(
            key,
            format!("must be a positive number, got {gamma}"),
        ))
    }
}

impl ScheduleConfig {
    /// The schedule's `kind` name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Multistep(_) => "multistep",
            Self::Step(_) => "step",
            Self::Exponential(_) => "exponential",
            Self::Trapezoid(_) => "trapezoid",
            Self::Cosine(_) => "cosine",
        }
    }

    /// Checks the settings for a run of `epochs` epochs from base rate `lr`; errors name the
    /// `schedule.*` key.
    pub fn validate(&self, epochs: usize, lr: f64) -> Result<(), OptimError> {
        match self {
            Self::Multistep(s) => {
                check_factor("schedule.gamma", s.gamma)?;
                if let Some(gammas) = &s.gammas {
                    for &g in gammas {
                        check_factor("schedule.gammas", g)?;
                    }
                    let count = s
                        .milestones
                        .as_ref()
                        .map(Vec::len)
                        .or(s.milestone_steps.as_ref().map(Vec::len));
                    if count != Some(gammas.len()) {
                        return Err(OptimError::invalid(
                            "schedule.gammas",
                            format!(
                                "needs one factor per milestone: {} factors for {}",
                                gammas.len(),
                                match count {
                                    Some(n) => format!("{n} milestones"),
                                    None => "the default milestones (set milestones)".into(),
                                }
                            ),
                        ));
                    }
                }
                if let Some(m) = &s.milestone_steps {
                    if s.milestones.is_some() {
                        return Err(OptimError::invalid(
                            "schedule.milestone_steps",
                            "set milestones (epochs) or milestone_steps (global steps), not both"
                                .into(),
                        ));
                    }
                    if m.contains(&0) || m.windows(2).any(|w| w[0] >= w[1]) {
                        return Err(OptimError::invalid(
                            "schedule.milestone_steps",
                            format!("must be increasing step counts from 1, got {m:?}"),
                        ));
                    }
                }
                if let Some(m) = &s.milestones
                    && (m.contains(&0) || m.windows(2).any(|w| w[0] >= w[1]))
                {
                    return Err(OptimError::invalid(
                        "schedule.milestones",
                        format!("must be increasing epochs from 1, got {m:?}"),
                    ));
                }
                Ok(())
            }
            Self::Step(s) => {
                check_factor("schedule.gamma", s.gamma)?;
                if s.step_size == 0 {
                    return Err(OptimError::invalid(
                        "schedule.step_size",
                        "must be at least 1".into(),
                    ));
                }
                Ok(())
            }
            Self::Exponential(s) => check_factor("schedule.gamma", s.gamma),
            Self::Trapezoid(s) => {
                if s.warmup_epochs == 0 {
                    return Err(OptimError::invalid(
                        "schedule.warmup_epochs",
                        "must be at least 1".into(),
                    ));
                }
                if s.plateau_until < s.warmup_epochs || s.plateau_until >= epochs {
                    return Err(OptimError::invalid(
                        "schedule.plateau_until",
                        format!(
                            "must be between warmup_epochs ({}) and training.epochs − 1 ({}), \
                             got {}",
                            s.warmup_epochs,
                            epochs.saturating_sub(1),
                            s.plateau_until
                        ),
                    ));
                }
                Ok(())
            }
            Self::Cosine(s) => {
                crate::check_non_negative("schedule.min_lr", s.min_lr)?;
                if s.min_lr > lr {
                    return Err(OptimError::invalid(
                        "schedule.min_lr",
                        format!(
                            "{} is above the base rate optimizer.lr = {lr}: the schedule would \
                             raise the rate",
                            s.min_lr
                        ),
                    ));
                }
                Ok(())
            }
        }
    }

    /// A note for the user when epoch milestones lie past the last of `epochs` epochs (a
    /// shortened run of a paper's schedule, or a typo): they are allowed, and never apply.
    pub fn unreached_milestones(&self, epochs: usize) -> Option<String> {
        let Self::Multistep(MultiStepSchedule {
            milestones: Some(m),
            ..
        }) = self
        else {
            return None;
        };
        let late: Vec<String> = m
            .iter()
            .filter(|&&e| e > epochs)
            .map(usize::to_string)
            .collect();
        (!late.is_empty()).then(|| {
            format!(
                "schedule.milestones {} past the last epoch (training.epochs = {epochs}): the \
                 rate does not change there in this run",
                if late.len() == 1 {
                    format!("{} is", late[0])
                } else {
                    format!("{} are", late.join(", "))
                }
            )
        })
    }

    /// Whether the rate changes by global step (`multistep` with `milestone_steps`), so the
    /// trainer must ask [`lr_at`](Self::lr_at) before every step, not only at epoch starts.
    pub fn is_per_step(&self) -> bool {
        matches!(
            self,
            Self::Multistep(MultiStepSchedule {
                milestone_steps: Some(_),
                ..
            })
        )
    }

    /// The learning rate for base (peak) rate `lr` in epoch `epoch` (from 1) of `epochs`, for
    /// the step after `steps_done` steps (used only by step-based schedules).
    pub fn lr_at(&self, lr: f64, epoch: usize, epochs: usize, steps_done: u64) -> f64 {
        let e = epoch as f64;
        let total = epochs as f64;
        match self {
            Self::Multistep(s) => {
                if let Some(m) = &s.milestone_steps {
                    let count = m.iter().filter(|&&m| m <= steps_done).count();
                    return lr * s.factor(count);
                }
                let count = match &s.milestones {
                    Some(m) => m.iter().filter(|&&m| m <= epoch).count(),
                    None => [epochs / 2, epochs * 3 / 4]
                        .iter()
                        .filter(|&&m| m >= 1 && m <= epoch)
                        .count(),
                };
                lr * s.factor(count)
            }
            Self::Step(s) => lr * s.gamma.powi((epoch / s.step_size) as i32),
            Self::Exponential(s) => lr * s.gamma.powi(epoch as i32),
            Self::Trapezoid(s) => {
                if epoch <= s.warmup_epochs {
                    lr * e / s.warmup_epochs as f64
                } else if epoch <= s.plateau_until {
                    lr
                } else {
                    let f = s.plateau_until as f64;
                    lr * ((total - e) / (total - f)).max(0.0)
                }
            }
            Self::Cosine(s) => {
                let progress = (e / total).min(1.0);
                s.min_lr + (lr - s.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ScheduleConfig {
        toml::from_str(text).unwrap()
    }

    fn rates(s: &ScheduleConfig, lr: f64, epochs: usize) -> Vec<f64> {
        (1..=epochs).map(|e| s.lr_at(lr, e, epochs, 0)).collect()
    }

    #[test]
    fn milestone_steps_follow_the_global_step_as_tensorflow_does() {
        // The L4 default policy: 0.1, 0.01 from global step 40k, 0.001 from 60k, 1e-4 from 80k
        // (TF's global_step counts steps already taken).
        let s = parse("kind = \"multistep\"\nmilestone_steps = [40000, 60000, 80000]");
        assert!(s.is_per_step());
        assert!(
            s.validate(150, 0.1).is_ok(),
            "milestones past the end are allowed"
        );
        let at = |done| s.lr_at(0.1, 1, 150, done);
        assert_eq!(at(0), 0.1);
        assert_eq!(at(39_999), 0.1);
        assert_eq!(at(40_000), 0.1 * 0.1);
        assert_eq!(at(59_999), 0.1 * 0.1);
        assert_eq!(at(60_000), 0.1 * 0.1 * 0.1);
        assert_eq!(at(80_000), 0.1 * 0.1 * 0.1 * 0.1);
        assert_eq!(at(10_000_000), at(80_000));
        assert!(!parse("kind = \"multistep\"").is_per_step());
        assert!(!parse("kind = \"step\"\nstep_size = 2").is_per_step());
    }

    #[test]
    fn multistep_multiplies_at_the_start_of_each_milestone_epoch() {
        let s = parse("kind = \"multistep\"\nmilestones = [2, 4]");
        assert_eq!(rates(&s, 1.0, 5), vec![1.0, 0.1, 0.1, 0.1 * 0.1, 0.1 * 0.1]);
        // Default milestones: 50 % and 75 % of training (epochs 4 and 6 of 8).
        let s = parse("kind = \"multistep\"\ngamma = 0.5");
        assert_eq!(
            rates(&s, 8.0, 8),
            vec![8.0, 8.0, 8.0, 4.0, 4.0, 2.0, 2.0, 2.0]
        );
    }

    #[test]
    fn per_milestone_factors_follow_the_wae_celeba_schedule() {
        let s = parse("kind = \"multistep\"\nmilestones = [31, 51]\ngammas = [0.5, 0.2]");
        assert!(s.validate(80, 1e-3).is_ok());
        let r = rates(&s, 1e-3, 80);
        assert!(r[..30].iter().all(|&x| x == 1e-3), "epochs 1-30");
        assert!(r[30..50].iter().all(|&x| x == 1e-3 * 0.5), "epochs 31-50");
        assert!(
            r[50..].iter().all(|&x| x == 1e-3 * 0.5 * 0.2),
            "epochs 51-80"
        );
        let steps = parse("kind = \"multistep\"\nmilestone_steps = [3, 5]\ngammas = [0.5, 0.2]");
        assert_eq!(steps.lr_at(1.0, 1, 1, 4), 0.5);
        assert_eq!(steps.lr_at(1.0, 1, 1, 5), 0.5 * 0.2);
    }

    #[test]
    fn milestones_past_the_end_are_allowed_and_noted() {
        let s = parse("kind = \"multistep\"\nmilestones = [31, 51]\ngammas = [0.5, 0.2]");
        assert!(
            s.validate(1, 1e-3).is_ok(),
            "a shortened run of the schedule"
        );
        assert_eq!(rates(&s, 1e-3, 1), vec![1e-3]);
        let note = s.unreached_milestones(40).expect("51 is past epoch 40");
        assert!(
            note.contains("51 is past") && note.contains("= 40"),
            "{note}"
        );
        let note = s.unreached_milestones(1).unwrap();
        assert!(note.contains("31, 51 are past"), "{note}");
        assert_eq!(s.unreached_milestones(80), None);
        assert_eq!(parse("kind = \"multistep\"").unreached_milestones(1), None);
    }

    #[test]
    fn step_halves_from_epoch_twenty_as_lossgrad_table_3() {
        let s = parse("kind = \"step\"\nstep_size = 20\ngamma = 0.5");
        let r = rates(&s, 16.0, 40);
        assert!(r[..19].iter().all(|&x| x == 16.0));
        assert_eq!(r[19], 8.0);
        assert_eq!(r[39], 4.0);
    }

    #[test]
    fn exponential_is_stepped_before_the_first_epoch() {
        let s = parse("kind = \"exponential\"");
        let r = rates(&s, 1.0, 3);
        assert_eq!(r, vec![0.9, 0.9_f64.powi(2), 0.9_f64.powi(3)]);
    }

    #[test]
    fn trapezoid_rises_holds_and_falls_to_zero_at_the_last_epoch() {
        let s = parse("kind = \"trapezoid\"");
        let r = rates(&s, 10.0, 20);
        assert_eq!(r[0], 1.0); // epoch 1 trains at peak/10, not 0
        assert_eq!(r[9], 10.0); // peak by epoch 10
        assert!(r[9..15].iter().all(|&x| x == 10.0)); // flat to epoch 15
        assert_eq!(r[16], 10.0 * 3.0 / 5.0); // epoch 17: (20 − 17)/(20 − 15)
        assert_eq!(r[19], 0.0);
        assert!(r[15..].windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn cosine_runs_from_lr_to_min_lr() {
        let s = parse("kind = \"cosine\"\nmin_lr = 0.1");
        let r = rates(&s, 1.1, 4);
        assert!((r[1] - 0.6).abs() < 1e-15, "midpoint {}", r[1]);
        assert!((r[3] - 0.1).abs() < 1e-15);
        assert!(r.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn bad_schedule_settings_name_their_key() {
        let cases = [
            ("kind = \"step\"\nstep_size = 0", "schedule.step_size"),
            (
                "kind = \"step\"\nstep_size = 3\ngamma = -1",
                "schedule.gamma",
            ),
            (
                "kind = \"multistep\"\nmilestones = [5, 3]",
                "schedule.milestones",
            ),
            (
                "kind = \"trapezoid\"\nplateau_until = 40",
                "schedule.plateau_until",
            ),
            ("kind = \"cosine\"\nmin_lr = -1", "schedule.min_lr"),
            ("kind = \"cosine\"\nmin_lr = 0.5", "schedule.min_lr"),
            (
                "kind = \"multistep\"\nmilestones = [10, 20]\ngammas = [0.5]",
                "schedule.gammas",
            ),
            (
                "kind = \"multistep\"\ngammas = [0.5, 0.2]",
                "schedule.gammas",
            ),
            (
                "kind = \"multistep\"\nmilestones = [10, 20]\ngammas = [0.5, 0]",
                "schedule.gammas",
            ),
            (
                "kind = \"multistep\"\nmilestone_steps = [10, 10]",
                "schedule.milestone_steps",
            ),
            (
                "kind = \"multistep\"\nmilestone_steps = [0]",
                "schedule.milestone_steps",
            ),
            (
                "kind = \"multistep\"\nmilestones = [5]\nmilestone_steps = [10]",
                "schedule.milestone_steps",
            ),
        ];
        for (text, key) in cases {
            let err = parse(text).validate(30, 0.1).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        let err = toml::from_str::<ScheduleConfig>("kind = \"step\"\nstep = 3").unwrap_err();
        assert!(err.to_string().contains("step"), "{err}");
    }
}
