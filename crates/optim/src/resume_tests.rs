//! Resuming from a checkpoint: save → load → step must match the uninterrupted run bit for bit,
//! for every optimizer kind and the configurations that carry different state.
//!
//! The "trainer" here does what the real one does: `begin_epoch(e, 3)` before every third step
//! (epochs from 1), a schedule through `set_base_lr` for methods that have a base rate, and on
//! resume a FRESH optimizer from the same config, `begin_epoch` for the epoch it resumes in (even
//! mid-epoch) and `load_state` of a state whose tensors went through the host (`to_data`, then
//! `from_data`, as a checkpoint file would). Both orders of those two calls are checked.
//!
//! The problem is a dense quadratic plus a quartic term over three tensors of different lengths,
//! with a different centre per batch and a held-out batch of its own. Some steps misbehave on
//! purpose: the probes return the batch loss itself (an unmeasured step for the methods that
//! detect it, warned once per run), or NaN; one gradient is zero, and one has a NaN entry (for the
//! methods that guard against it).

use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::OptimError;
use crate::api::{LossProbe, OptimizerState, StepInput, StepOutput, StepSizeOptimizer};
use crate::config::OptimizerConfig;
use crate::testing::{HostState, device, host, values};
use crate::vector::ParamList;

/// Lengths of the parameter tensors.
const LENGTHS: [usize; 3] = [4, 1, 3];
/// Number of parameters in all.
const N: usize = 8;
/// Steps of a trajectory (three epochs).
const STEPS: usize = 9;
/// Batches per epoch.
const BATCHES: usize = 3;
/// Steps after which a checkpoint is taken: after the first, right at an epoch boundary (before
/// the next `begin_epoch`), just after one, and one before the end.
const SPLITS: [usize; 4] = [1, 3, 4, 8];

/// What the probes (training batch and held-out batch) return at a step.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ProbeMode {
    /// The loss at the weights asked for.
    Normal,
    /// The loss at the step's own weights, whatever weights are asked for: every shifted weight
    /// "rounds back" (an unmeasured step).
    Flat,
    /// NaN (the loss at the shifted weights blew up).
    Nan,
}

/// The probes' behaviour at step `s` (from 1).
fn probe_mode(s: usize) -> ProbeMode {
    match s {
        2 | 7 => ProbeMode::Flat,
        5 => ProbeMode::Nan,
        _ => ProbeMode::Normal,
    }
}

/// The step whose gradient is exactly zero.
const ZERO_GRAD_STEP: usize = 4;
/// The step whose gradient has a NaN entry (for methods that skip such a step).
const NAN_GRAD_STEP: usize = 6;

/// Kinds whose step skips a non-finite gradient (the others let it reach the weights, as the
/// trainer's next non-finite loss then ends the run).
const GUARDS_GRADIENT: &[&str] = &[
    "lossgrad",
    "sls",
    "sps",
    "wngrad",
    "sgd_hd",
    "adam_hd",
    "l4mom",
    "l4adam",
    "l4sgd",
    "yellowfin",
    "gd_tlr",
    "gorti_ravaut",
];

/// f_k(θ) = ½(θ − c_k)ᵀA(θ − c_k) + (λ/4)·Σθ_i⁴ with a dense symmetric positive definite A.
struct Problem {
    a: [[f64; N]; N],
    lambda: f64,
}

impl Problem {
    fn new() -> Self {
        let m = |i: usize, j: usize| ((i * 7 + j * 3) % 11) as f64 / 11.0 - 0.45;
        let mut a = [[0.0; N]; N];
        for (i, row) in a.iter_mut().enumerate() {
            for (j, x) in row.iter_mut().enumerate() {
                *x = (0..N).map(|k| m(k, i) * m(k, j)).sum::<f64>();
                if i == j {
                    *x += 0.5;
                }
            }
        }
        Self { a, lambda: 0.05 }
    }

    /// The centre of batch `s` (or of its held-out batch).
    fn center(s: usize, holdout: bool) -> [f64; N] {
        let shift = if holdout { 2.0 } else { 0.0 };
        std::array::from_fn(|i| 0.3 * (1.3 * i as f64 + 0.7 * s as f64 + shift).sin())
    }

    fn loss(&self, c: &[f64; N], theta: &[f64]) -> f64 {
        let r: Vec<f64> = theta.iter().zip(c).map(|(t, c)| t - c).collect();
        let quad: f64 = (0..N)
            .map(|i| (0..N).map(|j| r[i] * self.a[i][j] * r[j]).sum::<f64>())
            .sum();
        0.5 * quad + 0.25 * self.lambda * theta.iter().map(|t| t.powi(4)).sum::<f64>()
    }

    fn grad(&self, c: &[f64; N], theta: &[f64]) -> Vec<f64> {
        (0..N)
            .map(|i| {
                (0..N)
                    .map(|j| self.a[i][j] * (theta[j] - c[j]))
                    .sum::<f64>()
                    + self.lambda * theta[i].powi(3)
            })
            .collect()
    }
}

/// The values of a list, concatenated (f32 values widen exactly).
fn flat(list: &[Tensor<1>]) -> Vec<f64> {
    values(list).concat()
}

/// `flat` split into tensors of [`LENGTHS`] on `device` as `dtype`.
fn split(flat: &[f64], device: &Device, dtype: DType) -> ParamList {
    let mut at = 0;
    LENGTHS
        .iter()
        .map(|&n| {
            at += n;
            let v = flat[at - n..at].to_vec();
            Tensor::from_data(TensorData::new(v, [n]), (device, dtype))
        })
        .collect()
}

/// One batch (training or held-out) as a [`LossProbe`].
struct Batch<'a> {
    problem: &'a Problem,
    center: [f64; N],
    mode: ProbeMode,
    /// This batch's loss at the step's own weights (what a [`ProbeMode::Flat`] probe returns).
    own_loss: f64,
}

impl LossProbe for Batch<'_> {
    fn loss_at(&mut self, params: &[Tensor<1>]) -> f64 {
        match self.mode {
            ProbeMode::Normal => self.problem.loss(&self.center, &flat(params)),
            ProbeMode::Flat => self.own_loss,
            ProbeMode::Nan => f64::NAN,
        }
    }

    fn loss_and_grad_at(&mut self, params: &[Tensor<1>]) -> (f64, ParamList) {
        let grad = self.problem.grad(&self.center, &flat(params));
        let (device, dtype) = (params[0].device(), params[0].dtype());
        (self.loss_at(params), split(&grad, &device, dtype))
    }
}

/// One row of the table: a config and a name for messages.
struct Variant {
    name: String,
    config: OptimizerConfig,
}

/// Every kind with its defaults, and the configurations that carry different state.
fn variants() -> Vec<Variant> {
    let mut tomls: Vec<String> = OptimizerConfig::KINDS
        .iter()
        .map(|kind| format!("kind = \"{kind}\""))
        .collect();
    let extra = [
        "kind = \"sgd\"\nmomentum = 0.9",
        "kind = \"sgd\"\nlr = 0.05\nmomentum = 0.5\nweight_decay = 0.01",
        "kind = \"adam\"\nlr = 0.05\nweight_decay = 0.01",
        "kind = \"adam_tf\"\nlr = 0.05\nweight_decay = 0.01",
        "kind = \"rmsprop\"\nmomentum = 0.9",
        "kind = \"rmsprop\"\ncentered = true",
        "kind = \"rmsprop\"\nmomentum = 0.5\ncentered = true\nweight_decay = 0.01\nalpha = 0.9",
        "kind = \"lossgrad\"\nunmeasured = \"exact\"",
        "kind = \"lossgrad\"\nlr = 0.05\nc = 2.0",
        "kind = \"lossgrad\"\nlr = 0.05\nc = 2.0\nunmeasured = \"exact\"",
        "kind = \"l4mom\"\nlr = 0.25\ntau = 5.0",
        "kind = \"l4adam\"\nlr = 0.25\ntau = 5.0\nbeta2 = 0.9",
        "kind = \"l4sgd\"\ngamma0 = 0.5",
        "kind = \"gd_tlr\"\nvariant = \"naive\"",
        "kind = \"gd_tlr\"\nvariant = \"naive\"\nlr = 1e-3\neta = 0.01",
        "kind = \"gd_tlr\"\nvariant = \"fixed_eta\"\neta = 0.01",
        "kind = \"gd_tlr\"\nvariant = \"efficient\"\nc = 1.0\nlr = 0.02",
        "kind = \"sgd_tlr\"\np = 0.67",
        "kind = \"sgd_tlr\"\np = 1.0\nmomentum = 0.5",
        "kind = \"sgd_tlr\"\np = 0.1\nweight_decay = 0.0",
        "kind = \"sgd_tlr_pl\"\np = 0.67",
        "kind = \"sgd_tlr_pl\"\np = 1.0\nmomentum = 0.5",
        "kind = \"yellowfin\"\ncurv_window = 3\nbeta = 0.9\nlr = 0.05",
        "kind = \"yellowfin\"\ncurv_window = 2\nbeta = 0.5\nmomentum = 0.3\nzero_debias = false\n\
         weight_decay = 0.01",
        "kind = \"wngrad\"\nlr = 1.0\nb0 = 0.5",
        "kind = \"sgd_hd\"\nlr = 0.05\nbeta = 0.01\nmomentum = 0.9\nweight_decay = 0.01",
        "kind = \"adam_hd\"\nlr = 0.05\nbeta = 1e-3\nweight_decay = 0.01",
        "kind = \"sps\"\nlr = 0.1\nc = 0.5\neps = 1e-3",
        "kind = \"sls\"\nunmeasured = \"exact\"",
        "kind = \"sls\"\nlr = 0.5\nc = 0.3\nbeta = 0.7\nmax_backtracks = 5",
    ];
    tomls.extend(extra.iter().map(|s| s.to_string()));
    // Gorti-Ravaut in every order / derivative / probe combination the config allows, with and
    // without momentum, under both unmeasured rules where the step can be unmeasured.
    for beta in ["0.0", "0.9"] {
        for probe in ["train_batch", "validation"] {
            for unmeasured in ["paper", "exact"] {
                tomls.push(format!(
                    "kind = \"gorti_ravaut\"\norder = \"second\"\nprobe = \"{probe}\"\n\
                     beta = {beta}\nunmeasured = \"{unmeasured}\"\neps = 1e-3"
                ));
                tomls.push(format!(
                    "kind = \"gorti_ravaut\"\norder = \"first\"\nderivative = \
                     \"finite_difference\"\nprobe = \"{probe}\"\nbeta = {beta}\n\
                     unmeasured = \"{unmeasured}\"\nalpha = 0.01\neps = 1e-3"
                ));
            }
            tomls.push(format!(
                "kind = \"gorti_ravaut\"\norder = \"first\"\nderivative = \"same_batch\"\n\
                 probe = \"{probe}\"\nbeta = {beta}\nalpha = 0.01"
            ));
        }
        tomls.push(format!(
            "kind = \"gorti_ravaut\"\norder = \"first\"\nderivative = \"next_batch\"\n\
             beta = {beta}\nalpha = 0.01"
        ));
    }
    tomls.push("kind = \"gorti_ravaut\"\nden_threshold = 1e-9\nlr = 0.05".to_string());
    tomls
        .into_iter()
        .map(|toml| {
            let config: OptimizerConfig = toml::from_str(&toml)
                .unwrap_or_else(|e| panic!("variant {toml:?} does not parse: {e}"));
            config
                .validate()
                .unwrap_or_else(|e| panic!("variant {toml:?} is invalid: {e}"));
            Variant {
                name: toml.replace('\n', ", "),
                config,
            }
        })
        .collect()
}

/// What one step produced, and the state and step size after it.
struct Record {
    params: Vec<Vec<f64>>,
    loss: f64,
    lr: f64,
    diagnostics: Vec<f64>,
    per_tensor: Vec<f64>,
    warning: Option<String>,
    current_lr: f64,
    /// `None` in the run that never calls `state()`.
    state: Option<HostState>,
}

/// The epoch of step `s` (both from 1).
fn epoch_of(s: usize) -> usize {
    (s - 1) / BATCHES + 1
}

/// What the trainer does at the start of an epoch: `begin_epoch`, and the schedule (×0.7 per
/// epoch) for methods with a base rate.
fn begin_epoch(opt: &mut dyn StepSizeOptimizer, config: &OptimizerConfig, epoch: usize) {
    opt.begin_epoch(epoch, BATCHES);
    if opt.base_lr().is_some() {
        opt.set_base_lr(config.lr() * 0.7f64.powi(epoch as i32 - 1));
    }
}

/// A list whose tensors went through the host, as a checkpoint file would take them.
fn through_host(list: &[Tensor<1>], device: &Device) -> ParamList {
    list.iter()
        .map(|t| {
            let data = t.to_data();
            let dtype = data.dtype();
            Tensor::from_data(data, (device, dtype))
        })
        .collect()
}

/// `state` with every buffer through the host.
fn checkpoint(state: &OptimizerState, device: &Device) -> OptimizerState {
    let mut saved = state.clone();
    for tensors in saved.buffers.values_mut() {
        *tensors = through_host(tensors, device);
    }
    saved
}

/// One training step `s` at `params`, as the trainer takes it.
fn step(
    opt: &mut dyn StepSizeOptimizer,
    problem: &Problem,
    s: usize,
    params: ParamList,
) -> (StepOutput, f64) {
    let (device, dtype) = (params[0].device(), params[0].dtype());
    let theta = flat(&params);
    let center = Problem::center(s, false);
    let holdout_center = Problem::center(s, true);
    let loss = problem.loss(&center, &theta);
    let mut grad = problem.grad(&center, &theta);
    if s == ZERO_GRAD_STEP {
        grad = vec![0.0; N];
    }
    if s == NAN_GRAD_STEP && GUARDS_GRADIENT.contains(&opt.kind()) {
        grad[1] = f64::NAN;
    }
    let mode = probe_mode(s);
    let mut probe = Batch {
        problem,
        center,
        mode,
        own_loss: loss,
    };
    let mut holdout = Batch {
        problem,
        center: holdout_center,
        mode,
        own_loss: problem.loss(&holdout_center, &theta),
    };
    let needs = opt.needs_holdout();
    let out = opt.step(StepInput {
        params,
        loss,
        grads: split(&grad, &device, dtype),
        probe: &mut probe,
        holdout: needs.then_some(&mut holdout as &mut dyn LossProbe),
    });
    (out, loss)
}

/// A checkpoint taken after a step: the step, the state and the weights, through the host.
type Snapshot = (usize, OptimizerState, ParamList);

/// Steps from step 1, or from the step after `resumed_after` (whose resume already called
/// `begin_epoch`), to [`STEPS`]; `begin_epoch` before each epoch's first step. `state()` is
/// called after every step when `snapshots` is given, which collects the checkpoints after the
/// steps of [`SPLITS`].
fn run(
    opt: &mut dyn StepSizeOptimizer,
    config: &OptimizerConfig,
    problem: &Problem,
    mut params: ParamList,
    resumed_after: Option<usize>,
    mut snapshots: Option<&mut Vec<Snapshot>>,
) -> Vec<Record> {
    let device = params[0].device();
    let from = resumed_after.map_or(1, |k| k + 1);
    let with_state = snapshots.is_some();
    let mut records = Vec::new();
    for s in from..=STEPS {
        if (s - 1) % BATCHES == 0 && !(resumed_after.is_some() && s == from) {
            begin_epoch(opt, config, epoch_of(s));
        }
        let (out, loss) = step(opt, problem, s, params);
        params = out.params;
        let state = with_state.then(|| opt.state());
        if let (Some(snapshots), Some(state)) = (snapshots.as_mut(), &state)
            && SPLITS.contains(&s)
        {
            snapshots.push((
                s,
                checkpoint(state, &device),
                through_host(&params, &device),
            ));
        }
        records.push(Record {
            params: values(&params),
            loss,
            lr: out.lr,
            diagnostics: out.diagnostics,
            per_tensor: out.per_tensor,
            warning: out.warning,
            current_lr: opt.current_lr(),
            state: state.as_ref().map(host),
        });
    }
    records
}

/// Bitwise equality, NaN == NaN.
fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// The first field in which `got` differs from `want`, described.
fn differs(got: &Record, want: &Record) -> Option<String> {
    let lists = |field: &str, a: &[f64], b: &[f64]| -> Option<String> {
        if a.len() != b.len() {
            return Some(format!("{field}: {} values vs {}", a.len(), b.len()));
        }
        let i = (0..a.len()).find(|&i| !same(a[i], b[i]))?;
        Some(format!(
            "{field}[{i}] = {:e} vs {:e} uninterrupted",
            a[i], b[i]
        ))
    };
    if got.params.len() != want.params.len() {
        return Some("the number of parameter tensors".to_string());
    }
    for (k, (a, b)) in got.params.iter().zip(&want.params).enumerate() {
        if let Some(d) = lists(&format!("params[{k}]"), a, b) {
            return Some(d);
        }
    }
    lists("loss", &[got.loss], &[want.loss])
        .or_else(|| lists("lr", &[got.lr], &[want.lr]))
        .or_else(|| lists("diagnostics", &got.diagnostics, &want.diagnostics))
        .or_else(|| lists("per_tensor", &got.per_tensor, &want.per_tensor))
        .or_else(|| lists("current_lr", &[got.current_lr], &[want.current_lr]))
        .or_else(|| {
            (got.warning != want.warning).then(|| {
                format!(
                    "warning {:?} vs {:?} uninterrupted",
                    got.warning, want.warning
                )
            })
        })
        .or_else(|| match (&got.state, &want.state) {
            (Some(a), Some(b)) if !same_state(a, b) => {
                Some(format!("state() {a:?} vs {b:?} uninterrupted"))
            }
            _ => None,
        })
}

/// Bitwise equality of two host states.
fn same_state(a: &HostState, b: &HostState) -> bool {
    let lists =
        |x: &[f64], y: &[f64]| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(*p, *q));
    a.kind == b.kind
        && a.scalars.len() == b.scalars.len()
        && a.scalars
            .iter()
            .zip(&b.scalars)
            .all(|((n, x), (m, y))| n == m && same(*x, *y))
        && a.buffers.len() == b.buffers.len()
        && a.buffers.iter().zip(&b.buffers).all(|((n, x), (m, y))| {
            n == m
                && x.0 == y.0
                && x.1.len() == y.1.len()
                && x.1.iter().zip(&y.1).all(|(p, q)| lists(p, q))
        })
}

/// Initial weights.
fn initial(device: &Device, dtype: DType) -> ParamList {
    split(&[0.8, -0.6, 0.3, 1.1, -0.9, 0.5, -0.2, 0.7], device, dtype)
}

/// Which call comes first when the trainer resumes.
#[derive(Debug, Clone, Copy)]
enum ResumeOrder {
    BeginEpochThenLoad,
    LoadThenBeginEpoch,
}

/// Every way `variant` fails to resume bit for bit at `dtype` (empty when it resumes exactly).
fn resume_failures(variant: &Variant, dtype: DType) -> Vec<String> {
    let device = device();
    let problem = Problem::new();
    let config = &variant.config;
    let build = || config.build().unwrap();
    let at = |what: &str| format!("{} [{dtype:?}] {what}", variant.name);
    let mut failures = Vec::new();

    // The uninterrupted run, taking a checkpoint after every step of SPLITS.
    let mut snapshots = Vec::new();
    let mut opt = build();
    let reference = run(
        opt.as_mut(),
        config,
        &problem,
        initial(&device, dtype),
        None,
        Some(&mut snapshots),
    );
    for (s, r) in reference.iter().enumerate() {
        if !r.loss.is_finite() {
            failures.push(at(&format!(
                "the uninterrupted run reached a non-finite loss at step {}: choose a config \
                 that does not diverge",
                s + 1
            )));
            return failures;
        }
    }
    let start = values(&initial(&device, dtype));
    if reference[STEPS - 1].params == start {
        failures.push(at(
            "the uninterrupted run never moved the weights: a vacuous check",
        ));
    }
    // Taking state() must not change the run.
    let mut untouched = build();
    let pristine = run(
        untouched.as_mut(),
        config,
        &problem,
        initial(&device, dtype),
        None,
        None,
    );
    for (s, (got, want)) in pristine.iter().zip(&reference).enumerate() {
        if let Some(d) = differs(got, want) {
            failures.push(at(&format!(
                "a run that never calls state() differs at step {}: {d}",
                s + 1
            )));
            break;
        }
    }

    for (k, saved, params) in &snapshots {
        for order in [
            ResumeOrder::BeginEpochThenLoad,
            ResumeOrder::LoadThenBeginEpoch,
        ] {
            let what = |detail: &str| at(&format!("resumed after step {k} ({order:?}): {detail}"));
            let mut opt = build();
            let epoch = epoch_of(k + 1);
            let loaded = match order {
                ResumeOrder::BeginEpochThenLoad => {
                    begin_epoch(opt.as_mut(), config, epoch);
                    opt.load_state(saved, &device, dtype)
                }
                ResumeOrder::LoadThenBeginEpoch => {
                    let loaded = opt.load_state(saved, &device, dtype);
                    begin_epoch(opt.as_mut(), config, epoch);
                    loaded
                }
            };
            if let Err(e) = loaded {
                failures.push(what(&format!("load_state failed: {e}")));
                continue;
            }
            // What the trainer logs before the first resumed step; after a step that ended an
            // epoch, the new epoch's schedule has already moved it.
            let before = &reference[k - 1];
            if k % BATCHES != 0 && !same(opt.current_lr(), before.current_lr) {
                failures.push(what(&format!(
                    "current_lr() after loading = {:e} vs {:e} uninterrupted",
                    opt.current_lr(),
                    before.current_lr
                )));
                continue;
            }
            let resumed = run(
                opt.as_mut(),
                config,
                &problem,
                params.clone(),
                Some(*k),
                Some(&mut Vec::new()),
            );
            for (i, (got, want)) in resumed.iter().zip(&reference[*k..]).enumerate() {
                if let Some(d) = differs(got, want) {
                    failures.push(what(&format!("step {}: {d}", k + 1 + i)));
                    break;
                }
            }
        }
    }
    failures
}

#[test]
fn the_table_covers_every_kind() {
    let table = variants();
    for kind in OptimizerConfig::KINDS {
        let n = table.iter().filter(|v| v.config.kind() == *kind).count();
        assert!(
            n >= 2,
            "{kind}: {n} variants; add the configs that carry other state"
        );
    }
}

/// Runs the table in `dtype` and fails with every mismatch listed.
fn assert_every_variant_resumes(dtype: DType) {
    let failures: Vec<String> = variants()
        .iter()
        .flat_map(|v| resume_failures(v, dtype))
        .collect();
    assert!(
        failures.is_empty(),
        "{} resume failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_optimizer_resumes_bit_for_bit_in_f64() {
    assert_every_variant_resumes(DType::F64);
}

#[test]
fn every_optimizer_resumes_bit_for_bit_in_f32() {
    assert_every_variant_resumes(DType::F32);
}

/// The run of `variant` after `steps` steps (f64), and its state.
fn state_after(variant: &Variant, steps: usize) -> (Box<dyn StepSizeOptimizer>, OptimizerState) {
    let device = device();
    let problem = Problem::new();
    let mut opt = variant.config.build().unwrap();
    let mut params = initial(&device, DType::F64);
    for s in 1..=steps {
        if (s - 1) % BATCHES == 0 {
            begin_epoch(opt.as_mut(), &variant.config, epoch_of(s));
        }
        params = step(opt.as_mut(), &problem, s, params).0.params;
    }
    let state = opt.state();
    (opt, state)
}

#[test]
fn a_state_of_another_kind_is_rejected_naming_both_kinds() {
    let table = variants();
    for from in &table {
        let (_, state) = state_after(from, 4);
        for kind in OptimizerConfig::KINDS {
            if *kind == from.config.kind() {
                continue;
            }
            let config: OptimizerConfig = toml::from_str(&format!("kind = \"{kind}\"")).unwrap();
            let mut opt = config.build().unwrap();
            match opt.load_state(&state, &device(), DType::F64) {
                Err(OptimError::StateMismatch(message)) => assert!(
                    message.contains(kind) && message.contains(from.config.kind()),
                    "{}, loaded into {kind}: {message}",
                    from.name
                ),
                other => panic!(
                    "{}, loaded into {kind}: expected StateMismatch, got {other:?}",
                    from.name
                ),
            }
        }
    }
}

#[test]
fn a_state_missing_a_buffer_or_a_tensor_is_rejected_naming_the_buffer() {
    let mut buffers_seen = 0;
    for variant in variants() {
        let (_, state) = state_after(&variant, 4);
        for name in state.buffers.keys() {
            buffers_seen += 1;
            let mut missing = state.clone();
            missing.buffers.remove(name);
            let mut short = state.clone();
            short.buffers.get_mut(name).unwrap().pop();
            for (what, broken) in [("missing", missing), ("one tensor short", short)] {
                let mut opt = variant.config.build().unwrap();
                match opt.load_state(&broken, &device(), DType::F64) {
                    Err(OptimError::StateMismatch(message)) => assert!(
                        message.contains(&format!("`{name}`")),
                        "{}: buffer `{name}` {what}: {message}",
                        variant.name
                    ),
                    other => panic!(
                        "{}: buffer `{name}` {what}: expected StateMismatch, got {other:?}",
                        variant.name
                    ),
                }
            }
        }
        // The intact state loads.
        let mut opt = variant.config.build().unwrap();
        opt.load_state(&state, &device(), DType::F64)
            .unwrap_or_else(|e| panic!("{}: {e}", variant.name));
    }
    assert!(buffers_seen > 40, "only {buffers_seen} buffers checked");
}

#[test]
fn a_state_missing_its_warning_flag_is_rejected_naming_it() {
    for kind in ["lossgrad", "sls", "gd_tlr", "gorti_ravaut"] {
        let config: OptimizerConfig = toml::from_str(&format!("kind = \"{kind}\"")).unwrap();
        let mut state = config.build().unwrap().state();
        assert_eq!(
            state.flag(crate::unmeasured::WARNED).ok(),
            Some(false),
            "{kind}"
        );
        // A flag that is neither 0 nor 1, then no flag at all.
        for flag in [Some(0.5), None] {
            match flag {
                Some(value) => state
                    .scalars
                    .insert(crate::unmeasured::WARNED.into(), value),
                None => state.scalars.remove(crate::unmeasured::WARNED),
            };
            let err = config
                .build()
                .unwrap()
                .load_state(&state, &device(), DType::F64)
                .unwrap_err();
            assert!(
                err.to_string().contains(crate::unmeasured::WARNED),
                "{kind} ({flag:?}): {err}"
            );
        }
    }
}

#[test]
fn the_unmeasured_steps_and_the_bad_probes_of_the_table_are_exercised() {
    // Guards the table itself: its trajectories must reach the paths whose state matters.
    let table = variants();
    let find = |name: &str| table.iter().find(|v| v.name == name).unwrap();
    let device = device();
    let problem = Problem::new();
    for (name, column) in [
        ("kind = \"lossgrad\"", 3),
        ("kind = \"sls\"", 3),
        ("kind = \"gd_tlr\", variant = \"naive\"", 4),
        ("kind = \"gorti_ravaut\"", 3),
    ] {
        let variant = find(name);
        let mut opt = variant.config.build().unwrap();
        let records = run(
            opt.as_mut(),
            &variant.config,
            &problem,
            initial(&device, DType::F64),
            None,
            None,
        );
        let unmeasured: Vec<usize> = (1..=STEPS)
            .filter(|&s| records[s - 1].diagnostics[column] == 1.0)
            .collect();
        assert!(
            unmeasured.contains(&2) && unmeasured.contains(&7),
            "{name}: unmeasured at steps {unmeasured:?}"
        );
        let warned: Vec<usize> = (1..=STEPS)
            .filter(|&s| records[s - 1].warning.is_some())
            .collect();
        assert_eq!(warned, vec![2], "{name}: warned at steps {warned:?}");
    }
}
