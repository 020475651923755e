//! The convnets, the BiLSTM and the WAE of the zoo against every optimizer, through the trainer's
//! own step functions: every kind takes two steps on every image, text and generative model on
//! ndarray and flex
//! (and wgpu when the feature is on), and the probes of a step see the step's own batch
//! statistics and dropout mask without touching the running statistics.

use burn::tensor::{Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use steplab_models::{
    Input, InputShape, Mode, Model, ModelConfig, StepNoise, Target, Task, init_params, init_state,
};
use steplab_optim::{LossProbe, OptimizerConfig, StepInput};
use steplab_train::backend::{self, Compute};
use steplab_train::config::{BackendKind, Precision};
use steplab_train::data::Batch;
use steplab_train::passes::{BatchProbe, Graded, Pass, loss_and_grad};

/// What a test model reads: images `[c, h, w]` (10 classes), token sequences (2 classes) or
/// images it reconstructs.
#[derive(Clone, Copy)]
enum Sample {
    Image([usize; 3]),
    Tokens,
    Reconstruction([usize; 3]),
}

/// Steps and vocabulary of the token samples.
const STEPS: usize = 5;
const VOCAB: usize = 7;

/// The image models with a small input each accepts (LeNet and the CIFAR convnet need 32×32;
/// the residual networks pool globally and take 8×8), and small BiLSTMs with a frozen and a
/// trained embedding.
const MODELS: &[(&str, Sample)] = &[
    (
        "kind = \"lenet5\"\ndropout = 0.5",
        Sample::Image([3, 32, 32]),
    ),
    ("kind = \"cifar_convnet\"", Sample::Image([3, 32, 32])),
    ("kind = \"resnet20\"", Sample::Image([3, 8, 8])),
    ("kind = \"resnet18\"", Sample::Image([3, 8, 8])),
    (
        "kind = \"wrn\"\ndepth = 10\nwidth = 1\ndropout = 0.3",
        Sample::Image([3, 8, 8]),
    ),
    (
        "kind = \"bilstm\"\nembedding = \"random\"\nembedding_dim = 4\nhidden = 3",
        Sample::Tokens,
    ),
    (
        "kind = \"bilstm\"\nembedding = \"random\"\nembedding_dim = 4\nhidden = 3\nfreeze_embedding = false",
        Sample::Tokens,
    ),
    (
        "kind = \"wae_mmd\"\nwidth = 2\nz_dim = 3",
        Sample::Reconstruction([3, 16, 16]),
    ),
];

impl Sample {
    fn task(self) -> Task {
        match self {
            Self::Image(_) => Task::Classification { classes: 10 },
            Self::Tokens => Task::Classification { classes: 2 },
            Self::Reconstruction(_) => Task::Reconstruction,
        }
    }

    fn shape(self) -> InputShape {
        match self {
            Self::Image(shape) | Self::Reconstruction(shape) => InputShape::Image(shape),
            Self::Tokens => InputShape::Tokens {
                max_len: STEPS,
                vocab_size: VOCAB,
            },
        }
    }
}

/// A batch of `n` random samples with random labels.
fn batch(compute: &Compute, sample: Sample, n: usize, seed: u64) -> Batch {
    let shape = match sample {
        Sample::Image(shape) => shape,
        Sample::Tokens => return token_batch(compute, n, seed),
        Sample::Reconstruction(shape) => return image_batch(compute, shape, n, seed),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let [c, h, w] = shape;
    let pixels: Vec<f64> = (0..n * c * h * w)
        .map(|_| rng.random::<f64>() - 0.5)
        .collect();
    let labels: Vec<u32> = (0..n).map(|i| (i % 10) as u32).collect();
    let mut one_hot = vec![0.0; n * 10];
    for (i, &l) in labels.iter().enumerate() {
        one_hot[i * 10 + l as usize] = 1.0;
    }
    let opts = (&compute.device, compute.dtype);
    Batch {
        inputs: Input::Images(Tensor::from_data(
            TensorData::new(pixels, [n, c, h, w]),
            opts,
        )),
        target: Target::OneHot(Tensor::from_data(TensorData::new(one_hot, [n, 10]), opts)),
        labels: Some(labels),
        len: n,
    }
}

/// `n` random images in (−1, 1) as their own targets (an autoencoder's batch: no labels).
fn image_batch(compute: &Compute, [c, h, w]: [usize; 3], n: usize, seed: u64) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pixels: Vec<f64> = (0..n * c * h * w)
        .map(|_| rng.random::<f64>() * 2.0 - 1.0)
        .collect();
    let opts = (&compute.device, compute.dtype);
    let x: Tensor<4> = Tensor::from_data(TensorData::new(pixels, [n, c, h, w]), opts);
    Batch {
        target: Target::Values(x.clone().reshape([n, c * h * w])),
        inputs: Input::Images(x),
        labels: None,
        len: n,
    }
}

/// `n` random token sequences of lengths 1..=STEPS (padding after them), labels 0 and 1.
fn token_batch(compute: &Compute, n: usize, seed: u64) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let lengths: Vec<usize> = (0..n).map(|i| STEPS - i % STEPS).collect();
    let ids: Vec<i32> = lengths
        .iter()
        .flat_map(|&len| (0..STEPS).map(move |t| (t, len)))
        .map(|(t, len)| {
            if t < len {
                rng.random_range(1..VOCAB as i32)
            } else {
                0
            }
        })
        .collect();
    let mask: Vec<f64> = lengths
        .iter()
        .flat_map(|&len| (0..STEPS).map(move |t| f64::from(u8::from(t < len))))
        .collect();
    let labels: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
    let one_hot: Vec<f64> = labels
        .iter()
        .flat_map(|&l| [f64::from(u8::from(l == 0)), f64::from(u8::from(l == 1))])
        .collect();
    let opts = (&compute.device, compute.dtype);
    Batch {
        inputs: Input::Tokens {
            ids: Tensor::<2, Int>::from_data(TensorData::new(ids, [n, STEPS]), &compute.device),
            mask: Tensor::from_data(TensorData::new(mask, [n, STEPS]), opts),
        },
        target: Target::OneHot(Tensor::from_data(TensorData::new(one_hot, [n, 2]), opts)),
        labels: Some(labels),
        len: n,
    }
}

fn model(text: &str, sample: Sample) -> Box<dyn Model> {
    let config: ModelConfig = toml::from_str(text).unwrap();
    config
        .build(sample.shape(), sample.task())
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn values(tensors: &[Tensor<1>]) -> Vec<f64> {
    tensors
        .iter()
        .flat_map(|t| t.to_data().try_into_vec_as::<f64>().unwrap())
        .collect()
}

#[test]
fn every_optimizer_kind_takes_two_steps_on_every_model_on_ndarray() {
    every_kind_on_every_model(BackendKind::Ndarray);
}

#[test]
fn every_optimizer_kind_takes_two_steps_on_every_model_on_flex() {
    every_kind_on_every_model(BackendKind::Flex);
}

/// On a GPU, or on Mesa's software Vulkan without one; skipped without an adapter unless
/// `STEPLAB_REQUIRE_WGPU` is set (CI sets it).
///
/// On wgpu the matrix is linear rather than a full product, because Mesa's software Vulkan
/// takes seconds per step on the larger models (ResNet-18 alone took 6 minutes for all kinds,
/// 3½ of them SLS's line search): every kind on ResNet-20 (batch norm, residual blocks), and
/// every model with SGD and LossGrad (whose probe re-runs the step's forward). An optimizer
/// sees only the flattened weight and gradient lists, so the full product on ndarray and flex
/// already covers each kind against each model's parameter layout.
#[cfg(feature = "wgpu")]
#[test]
fn every_optimizer_kind_takes_two_steps_on_every_model_on_wgpu() {
    every_kind_on_every_model(BackendKind::Wgpu);
}

/// The optimizer kinds a backend's matrix runs on the model `text`.
fn kinds_for(backend: BackendKind, text: &str) -> Vec<&'static str> {
    if backend == BackendKind::Wgpu && text != "kind = \"resnet20\"" {
        vec!["sgd", "lossgrad"]
    } else {
        OptimizerConfig::KINDS.to_vec()
    }
}

fn every_kind_on_every_model(backend: BackendKind) {
    {
        let compute = match backend::compute(backend, Precision::F32) {
            Ok(c) => c,
            Err(e)
                if backend == BackendKind::Wgpu
                    && std::env::var_os("STEPLAB_REQUIRE_WGPU").is_none() =>
            {
                eprintln!("skipped wgpu: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        for &(text, sample) in MODELS {
            let model = model(text, sample);
            let model = model.as_ref();
            let batches = [batch(&compute, sample, 2, 1), batch(&compute, sample, 2, 2)];
            let initial = init_params(model.param_specs(), 0, &compute.device, compute.dtype);
            for kind in kinds_for(backend, text) {
                let config: OptimizerConfig =
                    toml::from_str(&format!("kind = \"{kind}\"")).unwrap();
                let mut optimizer = config.build().unwrap();
                optimizer.begin_epoch(1, 2);
                let mut params = initial.clone();
                let mut state = init_state(model.state_specs(), 0, &compute.device, compute.dtype);
                for (step, batch) in batches.iter().enumerate() {
                    let noise = StepNoise::new(0, step as u64 + 1, &compute.device, compute.dtype);
                    let pass = Pass {
                        model,
                        state: &state,
                        noise: &noise,
                        l2: 1e-3,
                    };
                    let Graded {
                        loss,
                        grads,
                        new_state,
                        ..
                    } = loss_and_grad(&pass, &params, batch, Mode::Train);
                    assert!(loss.is_finite(), "{text} {kind} {backend:?}: loss {loss}");
                    let mut probe = BatchProbe { pass, batch };
                    let out = optimizer.step(StepInput {
                        params,
                        loss,
                        grads,
                        probe: &mut probe,
                        holdout: None,
                    });
                    assert!(
                        out.lr.is_finite(),
                        "{text} {kind} {backend:?}: lr {}",
                        out.lr
                    );
                    params = out.params;
                    if let Some(s) = new_state {
                        state = s;
                    }
                }
                let moved = values(&params) != values(&initial);
                // Methods that warm up (TLR's first window, L4's first step) may not move in
                // two steps; every method must leave finite weights.
                assert!(
                    values(&params).iter().all(|v| v.is_finite()),
                    "{text} {kind} {backend:?}: non-finite weights"
                );
                if matches!(kind, "sgd" | "adam" | "lossgrad" | "wngrad" | "sps" | "sls") {
                    assert!(moved, "{text} {kind} {backend:?}: the weights did not move");
                }
            }
        }
    }
}

#[test]
fn a_probe_reproduces_the_training_loss_and_leaves_the_running_statistics_alone() {
    let compute = backend::compute(BackendKind::Ndarray, Precision::F64).unwrap();
    let shape = Sample::Image([3, 8, 8]);
    let model = model(
        "kind = \"wrn\"\ndepth = 10\nwidth = 1\ndropout = 0.3",
        shape,
    );
    let model = model.as_ref();
    assert!(!model.state_specs().is_empty(), "a model with batch norm");
    let batch = batch(&compute, shape, 4, 3);
    let params = init_params(model.param_specs(), 0, &compute.device, compute.dtype);
    let state = init_state(model.state_specs(), 0, &compute.device, compute.dtype);
    let noise = StepNoise::new(0, 7, &compute.device, compute.dtype);
    let pass = Pass {
        model,
        state: &state,
        noise: &noise,
        l2: 1e-3,
    };
    let train = loss_and_grad(&pass, &params, &batch, Mode::Train);
    let before = values(&state);
    let mut probe = BatchProbe {
        pass,
        batch: &batch,
    };
    // Same batch statistics, same dropout mask, same L2 term: the same loss, bit for bit.
    assert_eq!(probe.loss_at(&params).to_bits(), train.loss.to_bits());
    assert_eq!(
        probe.loss_and_grad_at(&params).0.to_bits(),
        train.loss.to_bits()
    );
    assert_eq!(
        values(&state),
        before,
        "the probes left the running statistics alone"
    );
    let updated = train
        .new_state
        .expect("a training pass returns running statistics");
    assert_ne!(values(&updated), before, "the training pass moved them");
    // Another step's noise draws another dropout mask: a different loss.
    let other = StepNoise::new(0, 8, &compute.device, compute.dtype);
    let moved = Pass {
        noise: &other,
        ..pass
    };
    let mut probe = BatchProbe {
        pass: moved,
        batch: &batch,
    };
    assert_ne!(probe.loss_at(&params), train.loss);
}

#[test]
fn a_wae_probe_at_the_steps_own_weights_sees_the_steps_prior_draws() {
    for backend in [BackendKind::Ndarray, BackendKind::Flex] {
        let compute = backend::compute(backend, Precision::F32).unwrap();
        let shape = Sample::Reconstruction([3, 16, 16]);
        let model = model("kind = \"wae_mmd\"\nwidth = 2\nz_dim = 3", shape);
        let model = model.as_ref();
        let batch = batch(&compute, shape, 6, 4);
        let params = init_params(model.param_specs(), 0, &compute.device, compute.dtype);
        let state = init_state(model.state_specs(), 0, &compute.device, compute.dtype);
        let noise = StepNoise::new(0, 9, &compute.device, compute.dtype);
        let pass = Pass {
            model,
            state: &state,
            noise: &noise,
            l2: 0.0,
        };
        let train = loss_and_grad(&pass, &params, &batch, Mode::Train);
        assert_eq!(train.parts.len(), 2, "reconstruction and MMD");
        let whole = train.parts[0] + 100.0 * train.parts[1];
        assert!(
            (whole - train.loss).abs() <= 1e-5 * train.loss.abs(),
            "{backend:?}: {} + 100 · {} vs {}",
            train.parts[0],
            train.parts[1],
            train.loss
        );
        let mut probe = BatchProbe {
            pass,
            batch: &batch,
        };
        assert_eq!(
            probe.loss_at(&params).to_bits(),
            train.loss.to_bits(),
            "{backend:?}: the probe's prior draws are the step's"
        );
        let other = StepNoise::new(0, 10, &compute.device, compute.dtype);
        let mut probe = BatchProbe {
            pass: Pass {
                noise: &other,
                ..pass
            },
            batch: &batch,
        };
        assert_ne!(probe.loss_at(&params), train.loss, "{backend:?}");
    }
}
