//! The training state and the one function that advances it by an update.
//!
//! Everything a run carries from one update to the next is in [`TrainState`]: the weights, the
//! model's state (running statistics), the optimizer with its buffers, the [`Position`] (update,
//! epoch and batch counters) and the current epoch's partial totals. Every random draw of a step
//! is a function of the run's seed and these counters (the epoch's data order and augmentation
//! of (seed, epoch), dropout masks and held-out probe batches of (seed, step)), so a state saved
//! in a checkpoint and restored continues exactly as the uninterrupted run would.

use burn::tensor::{Int, Tensor};
use steplab_data::Dataset;
use steplab_models::{Mode, Model, StepNoise, init_params, init_state};
use steplab_optim::{
    LossProbe, ParamList, ScheduleConfig, StepInput, StepOutput, StepSizeOptimizer,
};

use crate::backend::Compute;
use crate::data::{self, Batch};
use crate::passes::{BatchProbe, Graded, HoldoutProbe, Pass, SetLoss, TermTotals, loss_and_grad};

/// Where training stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Updates done (the `step` of the last `steps.csv` row).
    pub step: u64,
    /// The epoch in progress, from 1 (the next one once an epoch's row is written).
    pub epoch: usize,
    /// Batches of `epoch` done.
    pub batch: usize,
}

impl Position {
    /// Before the first update.
    pub const START: Self = Self {
        step: 0,
        epoch: 1,
        batch: 0,
    };
}

/// Running totals of the current epoch's training batches.
#[derive(Debug, Clone)]
pub struct EpochTotals {
    /// The training loss over the epoch's batches so far.
    pub loss: SetLoss,
    /// Correctly classified training samples so far, as read back from the device.
    pub correct: usize,
    /// Correctly classified samples of the batches since the last read-back, summed on the
    /// device ([`correct`](Self::correct) plus this is the count).
    pub pending: Option<Tensor<1, Int>>,
    /// Whether the batches had class labels (accuracy applies).
    pub labelled: bool,
    /// The named terms of the objective ([`Model::loss_parts`]) over the epoch's batches.
    pub parts: TermTotals,
    /// Seconds spent in this epoch so far (before a resume, and since).
    pub seconds: f64,
}

impl EpochTotals {
    /// Empty totals for `model`'s loss.
    pub fn new(model: &dyn Model) -> Self {
        Self {
            loss: SetLoss::new(model),
            correct: 0,
            pending: None,
            labelled: false,
            parts: TermTotals::new(model),
            seconds: 0.0,
        }
    }

    /// The epoch's mean of every named term of the objective so far.
    pub fn part_means(&self) -> Vec<f64> {
        self.parts.means(self.loss.samples)
    }

    /// Correctly classified samples so far (reads the device's pending count: a sync).
    pub fn correct(&self) -> usize {
        self.correct + self.pending.clone().map_or(0, data::read_count)
    }

    /// The epoch's training accuracy, where labels apply (a sync).
    pub fn accuracy(&self) -> Option<f64> {
        self.labelled
            .then(|| self.correct() as f64 / self.loss.samples.max(1) as f64)
    }
}

/// Everything a run carries across updates.
pub struct TrainState {
    /// The weights, one flattened tensor per [`steplab_models::ParamSpec`].
    pub params: ParamList,
    /// The model's non-trained state, one tensor per [`steplab_models::StateSpec`].
    pub model_state: Vec<Tensor<1>>,
    /// The optimizer, holding its own buffers.
    pub optimizer: Box<dyn StepSizeOptimizer>,
    /// The counters.
    pub position: Position,
    /// The current epoch's partial totals.
    pub totals: EpochTotals,
    /// The step size of the last update (the optimizer's initial one before any).
    pub last_lr: f64,
    /// Seconds of training so far, over every session of the run (wall-clock budgets).
    pub train_seconds: f64,
    /// What the stopping rules have seen.
    pub stopping: crate::stopping::StopState,
}

impl TrainState {
    /// The state before the first update: the weights and model state initialised from `seed`,
    /// `optimizer` as built.
    pub fn initial(
        model: &dyn Model,
        optimizer: Box<dyn StepSizeOptimizer>,
        seed: u64,
        compute: &Compute,
    ) -> Self {
        let (device, dtype) = (&compute.device, compute.dtype);
        Self {
            params: init_params(model.param_specs(), seed, device, dtype),
            model_state: init_state(model.state_specs(), seed, device, dtype),
            last_lr: optimizer.current_lr(),
            optimizer,
            position: Position::START,
            totals: EpochTotals::new(model),
            train_seconds: 0.0,
            stopping: Default::default(),
        }
    }
}

/// The held-out split the optimizers probe, for methods that ask for it.
#[derive(Clone, Copy)]
pub struct Holdout<'a> {
    /// The validation split.
    pub set: &'a Dataset,
    /// How its rows become batches.
    pub pipeline: &'a data::Pipeline,
    /// Rows per held-out batch (the training batch size).
    pub batch_size: usize,
}

/// What an update needs besides the state: the model, the device, the run's seed, the objective's
/// L2 term, the schedule and the held-out split.
pub struct Stepper<'a> {
    /// The model.
    pub model: &'a dyn Model,
    /// The device and precision.
    pub compute: &'a Compute,
    /// `run.seed`: keys the step's dropout masks and held-out batches with the step.
    pub seed: u64,
    /// λ of the objective's (λ/2)·‖θ‖² term (`training.l2`).
    pub l2: f64,
    /// The base-rate schedule: the schedule, the configured rate it scales, and the epochs.
    pub schedule: Option<(&'a ScheduleConfig, f64, usize)>,
    /// Batches per epoch (passed to the optimizer at each epoch's start).
    pub batches_per_epoch: usize,
    /// The held-out split, when the optimizer probes it.
    pub holdout: Option<Holdout<'a>>,
}

/// One update as it goes into `steps.csv` and `layers.csv`.
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// The update's number, from 1.
    pub step: u64,
    /// Its epoch, from 1.
    pub epoch: usize,
    /// The batch loss before the update.
    pub loss: f64,
    /// The step size it used.
    pub lr: f64,
    /// The method's diagnostics.
    pub diagnostics: Vec<f64>,
    /// The values of the objective's named terms ([`Model::loss_parts`]) before the update.
    pub parts: Vec<f64>,
    /// The method's per-tensor values (empty unless it reports them).
    pub per_tensor: Vec<f64>,
    /// A warning for the user.
    pub warning: Option<String>,
}

/// What [`Stepper::step`] did.
#[derive(Debug)]
pub enum StepOutcome {
    /// The update was applied.
    Updated(StepRecord),
    /// The batch loss was NaN or infinite: nothing was applied and the state is unchanged.
    NonFiniteLoss,
}

impl Stepper<'_> {
    /// The start (or the resumption) of the state's epoch: tells the optimizer, and sets the
    /// scheduled base rate of an epoch-wise schedule. Both are functions of the counters, so
    /// calling this again for an epoch resumed mid-way changes nothing.
    pub fn begin_epoch(&self, state: &mut TrainState) {
        let epoch = state.position.epoch;
        state.optimizer.begin_epoch(epoch, self.batches_per_epoch);
        self.apply_schedule(state);
    }

    fn apply_schedule(&self, state: &mut TrainState) {
        if let Some((schedule, lr, epochs)) = self.schedule {
            let rate = schedule.lr_at(lr, state.position.epoch, epochs, state.position.step);
            state.optimizer.set_base_lr(rate);
        }
    }

    /// One update on `batch`: forward and backward at the state's weights, the optimizer's step
    /// with its probes, then the new weights, model state, counters and epoch totals.
    pub fn step(&self, state: &mut TrainState, batch: &Batch) -> StepOutcome {
        if self.schedule.is_some_and(|(s, _, _)| s.is_per_step()) {
            self.apply_schedule(state);
        }
        let step = state.position.step + 1;
        // The step's random draws (dropout masks), keyed by (seed, step, site).
        let noise = StepNoise::new(self.seed, step, &self.compute.device, self.compute.dtype);
        let pass = Pass {
            model: self.model,
            state: &state.model_state,
            noise: &noise,
            l2: self.l2,
        };
        // Forward + backward (the loss read-back is a sync point).
        let Graded {
            loss,
            grads,
            outputs,
            new_state,
            parts,
        } = loss_and_grad(&pass, &state.params, batch, Mode::Train);
        if !loss.is_finite() {
            return StepOutcome::NonFiniteLoss;
        }
        let mut probe = BatchProbe { pass, batch };
        let mut holdout = self
            .holdout
            .filter(|_| state.optimizer.needs_holdout())
            .map(|h| {
                HoldoutProbe::new(
                    pass,
                    h.set,
                    h.pipeline,
                    self.compute,
                    h.batch_size,
                    self.seed,
                    step,
                )
            });
        let params = std::mem::take(&mut state.params);
        let StepOutput {
            params,
            lr,
            diagnostics,
            per_tensor,
            warning,
        } = state.optimizer.step(StepInput {
            params,
            loss,
            grads,
            probe: &mut probe,
            holdout: holdout.as_mut().map(|h| h as &mut dyn LossProbe),
        });
        state.params = params;
        // The running statistics of this step's training pass (probes left them alone).
        if let Some(new_state) = new_state {
            state.model_state = new_state;
        }
        let totals = &mut state.totals;
        totals.loss.add(loss, batch.len);
        totals.parts.add(&parts, batch.len);
        if let Some(labels) = &batch.labels {
            totals.labelled = true;
            data::add_correct(&mut totals.pending, outputs, labels);
        }
        state.position.step = step;
        state.position.batch += 1;
        state.last_lr = lr;
        StepOutcome::Updated(StepRecord {
            step,
            epoch: state.position.epoch,
            loss,
            lr,
            diagnostics,
            parts,
            per_tensor,
            warning,
        })
    }

    /// Closes the state's epoch: the next update starts the next epoch with empty totals.
    pub fn end_epoch(&self, state: &mut TrainState) {
        state.position.epoch += 1;
        state.position.batch = 0;
        state.totals = EpochTotals::new(self.model);
    }
}
