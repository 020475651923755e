//! Budgets and stopping rules beside `training.epochs` and `training.max_steps`: a wall-clock
//! budget (`training.max_seconds`), early stopping on an epoch metric with patience
//! (`[training.early_stopping]`), and a target metric whose reaching ends the run and records
//! when it was reached (`[training.target]`, AlgoPerf's time-to-target).
//!
//! What the rules have seen so far ([`StopState`]) is part of the training state, so a resumed
//! run stops where the uninterrupted one would.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::log::EpochRecord;
use crate::output::format_f64;

/// A column of `epochs.csv` a stopping rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Training loss over the epoch's batches.
    TrainLoss,
    /// Training accuracy over the epoch's batches.
    TrainAccuracy,
    /// Loss on the validation split.
    ValidationLoss,
    /// Accuracy on the validation split.
    ValidationAccuracy,
    /// Loss on the test set.
    TestLoss,
    /// Accuracy on the test set.
    TestAccuracy,
}

impl Metric {
    /// The column name.
    pub fn name(self) -> &'static str {
        match self {
            Self::TrainLoss => "train_loss",
            Self::TrainAccuracy => "train_accuracy",
            Self::ValidationLoss => "validation_loss",
            Self::ValidationAccuracy => "validation_accuracy",
            Self::TestLoss => "test_loss",
            Self::TestAccuracy => "test_accuracy",
        }
    }

    /// Accuracies improve upwards, losses downwards.
    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Self::TrainAccuracy | Self::ValidationAccuracy | Self::TestAccuracy
        )
    }

    /// Its value in an epoch's row, where it applies.
    pub fn of(self, r: &EpochRecord) -> Option<f64> {
        match self {
            Self::TrainLoss => Some(r.train_loss),
            Self::TrainAccuracy => r.train_accuracy,
            Self::ValidationLoss => r.validation.0,
            Self::ValidationAccuracy => r.validation.1,
            Self::TestLoss => r.test.0,
            Self::TestAccuracy => r.test.1,
        }
    }

    /// Whether the metric is computed on an evaluated split (not the training batches).
    pub fn needs_evaluation(self) -> bool {
        !matches!(self, Self::TrainLoss | Self::TrainAccuracy)
    }

    /// Whether it is an accuracy (classification only).
    pub fn is_accuracy(self) -> bool {
        self.higher_is_better()
    }
}

/// `[training.early_stopping]`: stop when `metric` has not improved by more than `min_delta`
/// for `patience` epochs in a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingConfig {
    /// The watched metric.
    pub metric: Metric,
    /// Epochs without improvement that end the run (at least 1).
    pub patience: usize,
    /// The least change that counts as an improvement (≥ 0).
    #[serde(default)]
    pub min_delta: f64,
}

/// `[training.target]`: stop at the first epoch whose `metric` reaches `value` (at or below it
/// for a loss, at or above it for an accuracy), recording the update, epoch and seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The watched metric.
    pub metric: Metric,
    /// The value to reach.
    pub value: f64,
}

/// Checks the values of the stopping keys (what needs no data).
pub fn check(
    max_seconds: Option<f64>,
    early: Option<&EarlyStoppingConfig>,
    target: Option<&TargetConfig>,
) -> Result<(), ConfigError> {
    if let Some(s) = max_seconds
        && !(s.is_finite() && s > 0.0)
    {
        return Err(ConfigError::key(
            "training.max_seconds",
            format!("must be a positive number of seconds, got {s}"),
        ));
    }
    if let Some(early) = early {
        if early.patience == 0 {
            return Err(ConfigError::key(
                "training.early_stopping.patience",
                "must be at least 1 epoch",
            ));
        }
        if !(early.min_delta.is_finite() && early.min_delta >= 0.0) {
            return Err(ConfigError::key(
                "training.early_stopping.min_delta",
                format!("must be a number ≥ 0, got {}", early.min_delta),
            ));
        }
    }
    if let Some(target) = target
        && !target.value.is_finite()
    {
        return Err(ConfigError::key(
            "training.target.value",
            format!("must be a number, got {}", target.value),
        ));
    }
    Ok(())
}

/// When the target was reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reached {
    /// The metric's value then.
    pub value: f64,
    /// Updates done then.
    pub step: u64,
    /// The epoch whose evaluation reached it.
    pub epoch: usize,
    /// Seconds of training (with evaluation) until then, over every session of the run.
    pub seconds: f64,
}

/// Why a run stopped before its epochs were done.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// `training.max_seconds` was used up.
    TimeBudget {
        /// The budget.
        budget: f64,
    },
    /// `[training.early_stopping]`: no improvement for `patience` epochs.
    EarlyStopping {
        /// The metric.
        metric: Metric,
        /// The patience.
        patience: usize,
        /// Its best value.
        best: f64,
        /// The epoch of the best value.
        best_epoch: usize,
    },
    /// `[training.target]` was reached.
    Target {
        /// The metric.
        metric: Metric,
        /// The target value.
        target: f64,
        /// When and at what value it was reached.
        reached: Reached,
    },
}

impl StopReason {
    /// One line for the `status` file.
    pub fn describe(&self) -> String {
        match self {
            Self::TimeBudget { budget } => {
                format!(
                    "time budget of {} s used up (training.max_seconds)",
                    format_f64(*budget)
                )
            }
            Self::EarlyStopping {
                metric,
                patience,
                best,
                best_epoch,
            } => format!(
                "early stopping: {} did not improve for {patience} epochs (best {} at epoch \
                 {best_epoch})",
                metric.name(),
                format_f64(*best)
            ),
            Self::Target {
                metric,
                target,
                reached,
            } => format!(
                "target {} {} {} reached: {} at step {}, epoch {}, {:.1} s",
                metric.name(),
                if metric.higher_is_better() {
                    "≥"
                } else {
                    "≤"
                },
                format_f64(*target),
                format_f64(reached.value),
                reached.step,
                reached.epoch,
                reached.seconds
            ),
        }
    }
}

/// What the epoch-wise rules have seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StopState {
    /// The early-stopping metric's best value so far and its epoch.
    pub best: Option<(f64, usize)>,
}

impl StopState {
    /// Looks at an epoch's row (after `step` updates and `seconds` of training) and says whether
    /// the run stops there: the target first (it is the run's goal), then early stopping.
    pub fn after_epoch(
        &mut self,
        record: &EpochRecord,
        step: u64,
        seconds: f64,
        early: Option<&EarlyStoppingConfig>,
        target: Option<&TargetConfig>,
    ) -> Option<StopReason> {
        if let Some(target) = target
            && let Some(value) = target.metric.of(record)
        {
            let reached = if target.metric.higher_is_better() {
                value >= target.value
            } else {
                value <= target.value
            };
            if reached {
                return Some(StopReason::Target {
                    metric: target.metric,
                    target: target.value,
                    reached: Reached {
                        value,
                        step,
                        epoch: record.epoch,
                        seconds,
                    },
                });
            }
        }
        let early = early?;
        let value = early.metric.of(record)?;
        let improved = match self.best {
            None => value.is_finite(),
            Some((best, _)) => {
                if early.metric.higher_is_better() {
                    value > best + early.min_delta
                } else {
                    value < best - early.min_delta
                }
            }
        };
        if improved {
            self.best = Some((value, record.epoch));
            return None;
        }
        let (best, best_epoch) = self.best.unwrap_or((f64::NAN, 0));
        (record.epoch - best_epoch >= early.patience).then_some(StopReason::EarlyStopping {
            metric: early.metric,
            patience: early.patience,
            best,
            best_epoch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize, validation_loss: f64, test_accuracy: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss: 1.0,
            train_accuracy: None,
            validation: (Some(validation_loss), None),
            test: (None, Some(test_accuracy)),
            lr: 0.1,
            seconds: 1.0,
            parts: Default::default(),
        }
    }

    #[test]
    fn early_stopping_counts_epochs_without_an_improvement_beyond_min_delta() {
        let early = EarlyStoppingConfig {
            metric: Metric::ValidationLoss,
            patience: 2,
            min_delta: 0.01,
        };
        let mut state = StopState::default();
        let losses = [1.0, 0.9, 0.895, 0.95, 0.85, 0.86, 0.851];
        let mut stopped = None;
        for (i, loss) in losses.iter().enumerate() {
            let r = row(i + 1, *loss, 0.0);
            if let Some(reason) = state.after_epoch(&r, i as u64, 0.0, Some(&early), None) {
                stopped = Some((i + 1, reason));
                break;
            }
        }
        // Best 0.9 at epoch 2; 0.895 is within min_delta of it and 0.95 is worse: two epochs
        // without an improvement end the run at epoch 4, before 0.85 would have come.
        let (epoch, reason) = stopped.expect("stops");
        assert_eq!(epoch, 4);
        assert_eq!(
            reason,
            StopReason::EarlyStopping {
                metric: Metric::ValidationLoss,
                patience: 2,
                best: 0.9,
                best_epoch: 2
            }
        );
        assert!(
            reason.describe().contains("best 0.9 at epoch 2"),
            "{}",
            reason.describe()
        );
    }

    #[test]
    fn a_target_is_reached_at_or_past_its_value_in_the_metric_s_direction() {
        let target = TargetConfig {
            metric: Metric::TestAccuracy,
            value: 0.93,
        };
        let mut state = StopState::default();
        assert_eq!(
            state.after_epoch(&row(1, 1.0, 0.92), 10, 5.0, None, Some(&target)),
            None
        );
        let reason = state
            .after_epoch(&row(2, 1.0, 0.93), 20, 9.5, None, Some(&target))
            .expect("reached");
        assert_eq!(
            reason.describe(),
            "target test_accuracy ≥ 0.93 reached: 0.93 at step 20, epoch 2, 9.5 s"
        );
        let loss_target = TargetConfig {
            metric: Metric::ValidationLoss,
            value: 0.5,
        };
        assert!(
            state
                .after_epoch(&row(3, 0.6, 0.0), 30, 1.0, None, Some(&loss_target))
                .is_none()
        );
        assert!(
            state
                .after_epoch(&row(4, 0.5, 0.0), 40, 1.0, None, Some(&loss_target))
                .is_some()
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = check(Some(-1.0), None, None).unwrap_err();
        assert!(err.to_string().starts_with("training.max_seconds"), "{err}");
        let early = EarlyStoppingConfig {
            metric: Metric::TrainLoss,
            patience: 0,
            min_delta: 0.0,
        };
        let err = check(None, Some(&early), None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("training.early_stopping.patience"),
            "{err}"
        );
    }
}
