//! The passes of a step: the objective (the model's loss plus the L2 term), loss and gradient,
//! the loss probes the optimizers re-evaluate, and evaluation over a whole set.

use burn::tensor::{Int, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use steplab_data::Dataset;
use steplab_models::{Cx, Forward, Loss, Mode, Model, Reduction, StepNoise};
use steplab_optim::{LossProbe, ParamList};

use crate::backend::Compute;
use crate::data::{self, Batch, make_batch};

/// Reads a one-element tensor back to the host as f64 (a sync point).
pub fn scalar(t: Tensor<1>) -> f64 {
    t.inner()
        .into_data()
        .try_into_vec_as::<f64>()
        .expect("float tensor")[0]
}

/// What every forward pass of one step shares: the model, its state (running statistics), the
/// step's random draws, and the L2 coefficient of the objective (`training.l2`).
#[derive(Clone, Copy)]
pub struct Pass<'a> {
    /// The model.
    pub model: &'a dyn Model,
    /// The model's non-trained state (one tensor per [`steplab_models::StateSpec`]).
    pub state: &'a [Tensor<1>],
    /// The step's random draws (dropout masks), shared by the step's training pass and probes.
    pub noise: &'a StepNoise,
    /// λ of the objective's (λ/2)·‖θ‖² term; 0 for none.
    pub l2: f64,
}

impl Pass<'_> {
    /// The whole objective of `batch` at `params` (the model's loss plus the L2 term) in `mode`.
    fn objective(&self, params: &[Tensor<1>], batch: &Batch, mode: Mode) -> Forward {
        let cx = Cx {
            mode,
            noise: self.noise,
        };
        let mut forward = self
            .model
            .forward(params, self.state, &batch.inputs, &batch.target, &cx);
        if self.l2 != 0.0 {
            let penalty = params
                .iter()
                .map(|p| p.clone().square().sum())
                .reduce(|a, b| a.add(b))
                .map(|total| total.mul_scalar(0.5 * self.l2));
            if let Some(penalty) = penalty {
                forward.loss = forward.loss.add(penalty);
            }
        }
        forward
    }
}

/// The result of a forward and backward pass.
pub struct Graded {
    /// The objective's value.
    pub loss: f64,
    /// Its gradient, one tensor per parameter.
    pub grads: ParamList,
    /// The model's outputs (no autodiff graph).
    pub outputs: Tensor<2>,
    /// The updated state of a `Train` pass of a model with state.
    pub new_state: Option<Vec<Tensor<1>>>,
    /// The values of the objective's named terms ([`Model::loss_parts`]).
    pub parts: Vec<f64>,
}

/// Loss and gradient of `batch` at `params` (one forward and one backward pass), the outputs and
/// (in `Train` mode) the updated model state.
pub fn loss_and_grad(pass: &Pass<'_>, params: &[Tensor<1>], batch: &Batch, mode: Mode) -> Graded {
    let tracked: ParamList = params
        .iter()
        .map(|p| p.clone().autodiff().require_grad())
        .collect();
    let forward = pass.objective(&tracked, batch, mode);
    let grads = forward.loss.backward();
    let grads = tracked
        .iter()
        .map(|p| {
            p.grad(&grads)
                .unwrap_or_else(|| p.clone().inner().zeros_like())
        })
        .collect();
    Graded {
        loss: scalar(forward.loss),
        parts: forward.parts.into_iter().map(scalar).collect(),
        grads,
        outputs: forward.outputs.inner(),
        new_state: forward
            .new_state
            .map(|state| state.into_iter().map(Tensor::inner).collect()),
    }
}

/// Loss of `batch` at `params` from a forward pass only (a probe: running statistics untouched,
/// the step's own random draws).
pub fn probe_loss(pass: &Pass<'_>, params: &[Tensor<1>], batch: &Batch) -> f64 {
    scalar(pass.objective(params, batch, Mode::Probe).loss)
}

/// The optimizers' view of the current batch: forward passes at other weights.
pub struct BatchProbe<'a> {
    /// What the step's passes share.
    pub pass: Pass<'a>,
    /// The step's batch.
    pub batch: &'a Batch,
}

impl LossProbe for BatchProbe<'_> {
    fn loss_at(&mut self, params: &[Tensor<1>]) -> f64 {
        probe_loss(&self.pass, params, self.batch)
    }

    fn loss_and_grad_at(&mut self, params: &[Tensor<1>]) -> (f64, ParamList) {
        let graded = loss_and_grad(&self.pass, params, self.batch, Mode::Probe);
        (graded.loss, graded.grads)
    }
}

/// The generator stream of the held-out probe batches (independent of shuffling and init).
const HOLDOUT_STREAM: u64 = 0x401d;

/// The rows of the held-out batch of update `step` (from 1): `batch_size` distinct rows of a
/// set of `n`, drawn from a generator keyed by (seed, step) on its own stream, so that a resumed
/// run draws the same batches without saving a generator's position.
pub fn holdout_rows(seed: u64, step: u64, n: usize, batch_size: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    rng.set_stream(HOLDOUT_STREAM);
    rand::seq::index::sample(&mut rng, n, batch_size.min(n)).into_vec()
}

/// The optimizers' view of a held-out batch: one random batch of the validation split
/// ([`holdout_rows`]), assembled the first time a step asks for it and reused for the rest of
/// that step.
pub struct HoldoutProbe<'a> {
    /// What the step's passes share.
    pub pass: Pass<'a>,
    /// The validation split.
    pub set: &'a Dataset,
    /// How its rows become a batch.
    pub pipeline: &'a data::Pipeline,
    /// Where the batch goes.
    pub compute: &'a Compute,
    /// Rows per held-out batch.
    pub batch_size: usize,
    /// `run.seed`.
    pub seed: u64,
    /// The update this probe serves (from 1).
    pub step: u64,
    batch: Option<Batch>,
}

impl<'a> HoldoutProbe<'a> {
    /// A probe of update `step`; nothing is drawn until an optimizer asks.
    #[allow(clippy::too_many_arguments)] // the plain fields of one value
    pub fn new(
        pass: Pass<'a>,
        set: &'a Dataset,
        pipeline: &'a data::Pipeline,
        compute: &'a Compute,
        batch_size: usize,
        seed: u64,
        step: u64,
    ) -> Self {
        Self {
            pass,
            set,
            pipeline,
            compute,
            batch_size,
            seed,
            step,
            batch: None,
        }
    }

    fn batch(&mut self) -> &Batch {
        if self.batch.is_none() {
            let rows = holdout_rows(self.seed, self.step, self.set.len(), self.batch_size);
            self.batch = Some(make_batch(self.set, &rows, self.pipeline, self.compute));
        }
        self.batch.as_ref().expect("drawn above")
    }
}

impl LossProbe for HoldoutProbe<'_> {
    fn loss_at(&mut self, params: &[Tensor<1>]) -> f64 {
        let pass = self.pass;
        probe_loss(&pass, params, self.batch())
    }

    fn loss_and_grad_at(&mut self, params: &[Tensor<1>]) -> (f64, ParamList) {
        let pass = self.pass;
        let graded = loss_and_grad(&pass, params, self.batch(), Mode::Probe);
        (graded.loss, graded.grads)
    }
}

/// Combines batch losses into the loss of a whole set, as the model's loss defines it: a summed
/// loss adds up, an averaged one is weighted by batch size and divided by the sample count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SetLoss {
    /// Whether the model's loss is summed over samples (else averaged).
    pub summed: bool,
    /// The running total (a sum of batch losses, or of batch loss × batch size).
    pub total: f64,
    /// Samples added so far.
    pub samples: usize,
}

impl SetLoss {
    /// An empty total for `model`'s loss.
    pub fn new(model: &dyn Model) -> Self {
        let summed = model.loss() == Loss::SquaredError(Reduction::Sum);
        Self {
            summed,
            total: 0.0,
            samples: 0,
        }
    }

    /// Adds the loss of a batch of `batch_len` samples.
    pub fn add(&mut self, batch_loss: f64, batch_len: usize) {
        self.total += if self.summed {
            batch_loss
        } else {
            batch_loss * batch_len as f64
        };
        self.samples += batch_len;
    }

    /// The set's loss so far.
    pub fn value(&self) -> f64 {
        if self.summed {
            self.total
        } else {
            self.total / self.samples.max(1) as f64
        }
    }
}

/// Running totals of the objective's named terms ([`Model::loss_parts`]) over batches: each
/// batch's value weighted by its size, so that the mean is per sample whatever the batch sizes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TermTotals(pub Vec<f64>);

impl TermTotals {
    /// Zero totals for `model`'s terms.
    pub fn new(model: &dyn Model) -> Self {
        Self(vec![0.0; model.loss_parts().len()])
    }

    /// Adds the terms of a batch of `batch_len` samples.
    pub fn add(&mut self, values: &[f64], batch_len: usize) {
        for (total, value) in self.0.iter_mut().zip(values) {
            *total += value * batch_len as f64;
        }
    }

    /// The mean of every term over `samples` samples.
    pub fn means(&self, samples: usize) -> Vec<f64> {
        let samples = samples.max(1) as f64;
        self.0.iter().map(|total| total / samples).collect()
    }
}

/// What [`evaluate`] found on a set.
#[derive(Debug, Clone, PartialEq)]
pub struct SetEvaluation {
    /// The objective over the set, as the model's loss combines batches.
    pub loss: f64,
    /// The accuracy, where labels apply.
    pub accuracy: Option<f64>,
    /// The objective's named terms ([`Model::loss_parts`]), each averaged over the set's
    /// samples (batch values weighted by batch size).
    pub parts: Vec<f64>,
}

/// Loss (the objective as the model's loss defines it, over the whole set), accuracy and the
/// objective's terms of a dataset, in `Eval` mode (running statistics, no dropout).
pub fn evaluate(
    pass: &Pass<'_>,
    params: &[Tensor<1>],
    set: &Dataset,
    pipeline: &data::Pipeline,
    compute: &Compute,
    batch_size: usize,
) -> SetEvaluation {
    let order: Vec<usize> = (0..set.len()).collect();
    let mut set_loss = SetLoss::new(pass.model);
    let mut parts = TermTotals::new(pass.model);
    let mut pending: Option<Tensor<1, Int>> = None;
    let mut has_labels = false;
    for rows in order.chunks(batch_size) {
        let batch = make_batch(set, rows, pipeline, compute);
        let Forward {
            loss,
            outputs,
            parts: batch_parts,
            ..
        } = pass.objective(params, &batch, Mode::Eval);
        set_loss.add(scalar(loss), batch.len);
        let batch_parts: Vec<f64> = batch_parts.into_iter().map(scalar).collect();
        parts.add(&batch_parts, batch.len);
        if let Some(labels) = &batch.labels {
            has_labels = true;
            data::add_correct(&mut pending, outputs, labels);
        }
    }
    SetEvaluation {
        loss: set_loss.value(),
        accuracy: has_labels.then(|| pending.map_or(0, data::read_count) as f64 / set.len() as f64),
        parts: parts.means(set.len()),
    }
}
