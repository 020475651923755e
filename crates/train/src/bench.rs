//! `train bench`: training steps/s of LossGrad's MNIST MLP (784-500-300-100-10, batch 100, f32)
//! or a convnet of the zoo (`--model`), per CPU backend and optimizer, with peak memory, beside
//! PyTorch on the same machine (the MLP).
//!
//! Each (backend, method) pair runs in its own child process. A method is timed together with
//! the method it is compared with (its *base*: SGD, momentum SGD or Adam) and, where its goal
//! allows extra forward passes, a bare forward pass: rounds of the three alternate in one
//! process and the ratio is the median of the per-round ratios, so drift and noise of the
//! machine cancel. Inputs are random (seeded); the step is the trainer's own (forward,
//! backward, optimizer step with its probes).

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::{Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use steplab_models::{Input, InputShape, Model, ModelConfig, StepNoise, Target, Task};
use steplab_optim::{LossProbe, OptimizerConfig};

use crate::backend::{self, Compute};
use crate::config::{BackendKind, ConfigError, Precision};
use crate::data::Batch;
use crate::passes::{BatchProbe, Pass};
use crate::state::{StepOutcome, Stepper, TrainState};

/// Arguments of `train bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Timed steps per method, split over the rounds.
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Rounds (alternating between a method and its base); medians are reported.
    #[arg(long, default_value_t = 15)]
    pub rounds: usize,
    /// Untimed steps per method before the rounds (caches, allocator, thread pools).
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    /// Backends to measure (comma-separated): ndarray, flex, wgpu, or `flex-stock` (flex with
    /// Burn's own ops instead of steplab-kernels' convolutions, batch norm and reductions).
    #[arg(long, value_delimiter = ',', default_values_t = default_backends())]
    pub backends: Vec<String>,
    /// Methods to measure (comma-separated names of the method table printed by
    /// `--optimizers list`, or `all`).
    #[arg(long, value_delimiter = ',', default_values_t = vec!["sgd".to_string(), "lossgrad".to_string()])]
    pub optimizers: Vec<String>,
    /// Also run `scripts/bench_pytorch.sh` on the same model (creates a venv with CPU PyTorch on
    /// first use).
    #[arg(long)]
    pub pytorch: bool,
    /// The model timed: `mlp` (LossGrad's MNIST MLP, batch 100), `resnet20` (batch 128),
    /// `lenet5` (batch 32), `cifar_convnet` (batch 100), `wrn16_4` (batch 128), `bilstm`
    /// (batch 100 of 400-token reviews), `wae_mmd` (LossGrad Table 6's 40M-parameter WAE, batch
    /// 64 of 3×64×64); the convnets on random 3×32×32 images.
    #[arg(long, default_value = "mlp")]
    pub model: String,
    /// Internal: measure one backend/optimizer pair in this process and print one CSV line.
    #[arg(long, hide = true, num_args = 2, value_names = ["BACKEND", "OPTIMIZER"])]
    pub child: Option<Vec<String>>,
}

fn default_backends() -> Vec<String> {
    let mut all = Vec::new();
    if cfg!(feature = "ndarray") {
        all.push("ndarray".to_string());
    }
    if cfg!(feature = "flex") {
        all.push("flex".to_string());
    }
    all
}

/// A benchmarked method: its name in the table, its `[optimizer]` TOML, the method whose step
/// it is compared with, and the forward passes it may add to that base (the goals).
struct Method {
    name: &'static str,
    toml: &'static str,
    base: &'static str,
    extra_forwards: u32,
}

/// Every method of the benchmark, each against its base (goal: within 5 % of the base's step
/// time plus `extra_forwards` forward passes).
const METHODS: &[Method] = &[
    Method {
        name: "sgd",
        toml: "kind = \"sgd\"\nlr = 0.01",
        base: "sgd",
        extra_forwards: 0,
    },
    // SGD against itself: what the benchmark can resolve (an A/A test).
    Method {
        name: "sgd_twin",
        toml: "kind = \"sgd\"\nlr = 0.01",
        base: "sgd",
        extra_forwards: 0,
    },
    Method {
        name: "msgd",
        toml: "kind = \"sgd\"\nlr = 0.01\nmomentum = 0.9",
        base: "msgd",
        extra_forwards: 0,
    },
    Method {
        name: "adam",
        toml: "kind = \"adam\"",
        base: "adam",
        extra_forwards: 0,
    },
    Method {
        name: "lossgrad",
        toml: "kind = \"lossgrad\"",
        base: "sgd",
        extra_forwards: 1,
    },
    Method {
        name: "gr_second",
        toml: "kind = \"gorti_ravaut\"\norder = \"second\"",
        base: "sgd",
        extra_forwards: 5,
    },
    Method {
        name: "gd_tlr",
        toml: "kind = \"gd_tlr\"",
        base: "sgd",
        extra_forwards: 0,
    },
    Method {
        name: "sgd_tlr",
        toml: "kind = \"sgd_tlr\"",
        base: "msgd_wd",
        extra_forwards: 0,
    },
    Method {
        name: "sgd_tlr_pl",
        toml: "kind = \"sgd_tlr_pl\"",
        base: "msgd_wd",
        extra_forwards: 0,
    },
    Method {
        name: "msgd_wd",
        toml: "kind = \"sgd\"\nlr = 0.01\nmomentum = 0.8\nweight_decay = 5e-4",
        base: "msgd_wd",
        extra_forwards: 0,
    },
    Method {
        name: "wngrad",
        toml: "kind = \"wngrad\"",
        base: "sgd",
        extra_forwards: 0,
    },
    Method {
        name: "sps",
        toml: "kind = \"sps\"",
        base: "sgd",
        extra_forwards: 0,
    },
    Method {
        name: "sgd_hd",
        toml: "kind = \"sgd_hd\"",
        base: "sgd",
        extra_forwards: 0,
    },
    Method {
        name: "l4mom",
        toml: "kind = \"l4mom\"",
        base: "msgd",
        extra_forwards: 0,
    },
    Method {
        name: "l4adam",
        toml: "kind = \"l4adam\"",
        base: "adam",
        extra_forwards: 0,
    },
    Method {
        name: "adam_hd",
        toml: "kind = \"adam_hd\"",
        base: "adam",
        extra_forwards: 0,
    },
    Method {
        name: "adam_tf",
        toml: "kind = \"adam_tf\"",
        base: "adam",
        extra_forwards: 0,
    },
    Method {
        name: "rmsprop",
        toml: "kind = \"rmsprop\"",
        base: "adam",
        extra_forwards: 0,
    },
    Method {
        name: "yellowfin",
        toml: "kind = \"yellowfin\"",
        base: "msgd",
        extra_forwards: 0,
    },
    Method {
        name: "sls",
        toml: "kind = \"sls\"",
        base: "sgd",
        extra_forwards: 1,
    },
    Method {
        name: "forward",
        toml: "",
        base: "forward",
        extra_forwards: 0,
    },
];

fn method(name: &str) -> Result<&'static Method> {
    METHODS.iter().find(|m| m.name == name).ok_or_else(|| {
        ConfigError(format!(
            "--optimizers: unknown benchmark method `{name}`; known: {}, all",
            METHODS
                .iter()
                .map(|m| m.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into()
    })
}

/// What one child process measured: a method, and the ratio of its step time to its base's.
#[derive(Debug, Clone)]
struct Figure {
    backend: String,
    method: String,
    steps_per_s: f64,
    peak_mib: f64,
    base: Option<String>,
    /// Median over rounds of (method step time / base step time).
    ratio: Option<f64>,
    /// Median over rounds of (forward pass time / base step time).
    forward_ratio: Option<f64>,
    /// Median over rounds of (steps/s / PyTorch SGD's steps/s in the same round).
    vs_torch: Option<f64>,
}

/// Runs the benchmark and prints its table.
pub fn run(args: &BenchArgs) -> Result<()> {
    let model = bench_model(&args.model)?;
    if let Some(pair) = &args.child {
        return child(&pair[0], &pair[1], model, args);
    }
    for (flag, value) in [("--steps", args.steps), ("--rounds", args.rounds)] {
        if value == 0 {
            return Err(ConfigError(format!("{flag}: must be at least 1")).into());
        }
    }
    if args.steps < args.rounds {
        return Err(ConfigError(format!(
            "--steps ({}) must be at least --rounds ({}): each round times at least one step",
            args.steps, args.rounds
        ))
        .into());
    }
    for backend in &args.backends {
        backend_kind(backend)?;
    }
    let exe = std::env::current_exe().context("cannot locate the train binary")?;
    let mut methods: Vec<&'static Method> = Vec::new();
    for name in &args.optimizers {
        if name == "all" {
            methods.extend(METHODS.iter().filter(|m| m.name != "forward"));
        } else {
            methods.push(method(name)?);
        }
    }
    // With PyTorch, whole processes alternate: each outer round runs every method's child for
    // one round and then PyTorch for one round, so that the machine's drift (±30 % between
    // rounds here) hits both sides of every flex / PyTorch ratio alike.
    let per_round = args.steps.div_ceil(args.rounds.max(1)).max(1);
    let (outer, child_steps, child_rounds) = if args.pytorch {
        (args.rounds, per_round, 1)
    } else {
        (1, args.steps, args.rounds)
    };
    let mut rounds: Vec<(Vec<Figure>, Vec<TorchFigure>)> = Vec::new();
    for round in 0..outer {
        let mut figures = Vec::new();
        for backend in &args.backends {
            for m in &methods {
                eprintln!(
                    "measuring {} on {backend} (round {} of {outer}) ...",
                    m.name,
                    round + 1
                );
                let out = Command::new(&exe)
                    .args([
                        "bench",
                        "--steps",
                        &child_steps.to_string(),
                        "--rounds",
                        &child_rounds.to_string(),
                        "--warmup",
                        &args.warmup.to_string(),
                    ])
                    .args(["--model", model.name, "--child", backend, m.name])
                    .output()
                    .context("cannot run the benchmark child process")?;
                if !out.status.success() {
                    bail!(
                        "{} on {backend} failed: {}",
                        m.name,
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                figures.extend(parse_line(&String::from_utf8_lossy(&out.stdout)));
            }
        }
        let mut torch = Vec::new();
        if args.pytorch {
            eprintln!(
                "measuring PyTorch (scripts/bench_pytorch.sh, round {} of {outer}) ...",
                round + 1
            );
            let out = Command::new("bash")
                .args([
                    "scripts/bench_pytorch.sh",
                    "--model",
                    model.name,
                    "--steps",
                    &per_round.to_string(),
                    "--rounds",
                    "1",
                    "--warmup",
                    &args.warmup.to_string(),
                ])
                .output()
                .context("cannot run scripts/bench_pytorch.sh (run from the repository root)")?;
            if !out.status.success() {
                bail!(
                    "scripts/bench_pytorch.sh failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            torch = parse_torch(&String::from_utf8_lossy(&out.stdout));
        }
        rounds.push((figures, torch));
    }
    let (figures, torch) = combine_rounds(&rounds);
    print_table(model, &figures, &torch);
    Ok(())
}

/// A model `train bench` can time: its config, sample shape and batch size.
#[derive(Debug, Clone, Copy)]
pub struct BenchModel {
    /// The `--model` name.
    pub name: &'static str,
    /// Its `[model]` section.
    toml: &'static str,
    /// One sample.
    shape: InputShape,
    /// Batch size.
    batch: usize,
    /// Number of classes of the random labels; 0 for an autoencoder (its input is its target).
    classes: usize,
    /// What the table's title says.
    title: &'static str,
}

const BENCH_MODELS: &[BenchModel] = &[
    BenchModel {
        name: "mlp",
        toml: "kind = \"mlp\"\nhidden = [500, 300, 100]",
        shape: InputShape::Features(784),
        batch: 100,
        classes: 10,
        title: "MNIST MLP 784-500-300-100-10, batch 100",
    },
    BenchModel {
        name: "resnet20",
        toml: "kind = \"resnet20\"",
        shape: InputShape::Image([3, 32, 32]),
        batch: 128,
        classes: 10,
        title: "ResNet-20 (option A, BN) on 3x32x32, batch 128",
    },
    BenchModel {
        name: "lenet5",
        toml: "kind = \"lenet5\"",
        shape: InputShape::Image([3, 32, 32]),
        batch: 32,
        classes: 10,
        title: "LeNet-5 on 3x32x32, batch 32",
    },
    BenchModel {
        name: "cifar_convnet",
        toml: "kind = \"cifar_convnet\"",
        shape: InputShape::Image([3, 32, 32]),
        batch: 100,
        classes: 10,
        title: "LossGrad's CIFAR convnet on 3x32x32, batch 100",
    },
    BenchModel {
        name: "wrn16_4",
        toml: "kind = \"wrn\"\ndepth = 16\nwidth = 4",
        shape: InputShape::Image([3, 32, 32]),
        batch: 128,
        classes: 10,
        title: "WRN-16-4 (pre-activation, no dropout) on 3x32x32, batch 128",
    },
    BenchModel {
        name: "bilstm",
        toml: "kind = \"bilstm\"\nembedding = \"random\"",
        shape: InputShape::Tokens {
            max_len: BILSTM_STEPS,
            vocab_size: 25_000,
        },
        batch: 100,
        classes: 2,
        title: "LossGrad's IMDb BiLSTM (frozen 25000x100 embedding), 400-token reviews, batch 100",
    },
    BenchModel {
        name: "wae_mmd",
        toml: "kind = \"wae_mmd\"",
        shape: InputShape::Image([3, 64, 64]),
        batch: 64,
        classes: 0,
        title: "LossGrad Table 6's WAE-MMD (39,742,531 parameters) on 3x64x64, batch 64",
    },
];

/// Tokens per review in the BiLSTM benchmark: every review has IMDb's `max_len` of 400.
const BILSTM_STEPS: usize = 400;

fn bench_model(name: &str) -> Result<BenchModel> {
    BENCH_MODELS
        .iter()
        .find(|m| m.name == name)
        .copied()
        .ok_or_else(|| {
            ConfigError(format!(
                "--model: unknown benchmark model `{name}`; known: {}",
                BENCH_MODELS
                    .iter()
                    .map(|m| m.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into()
        })
}

/// Parses the child's `steplab,<backend>,<method>,<steps/s>,<MiB>,<base>,<ratio>,<fwd ratio>`.
fn parse_line(text: &str) -> Option<Figure> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.trim().split(',').collect();
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let num = |s: &str| s.parse::<f64>().ok();
        match f.as_slice() {
            ["steplab", b, m, s, mib, base, r, fr] => Some(Figure {
                backend: b.to_string(),
                method: m.to_string(),
                steps_per_s: s.parse().ok()?,
                peak_mib: mib.parse().ok()?,
                base: opt(base),
                ratio: num(r),
                forward_ratio: num(fr),
                vs_torch: None,
            }),
            _ => None,
        }
    })
}

/// PyTorch's figures for one method: (method, steps/s, peak MiB).
type TorchFigure = (String, f64, f64);

/// The medians over outer rounds (PyTorch alternating with the children; one round without
/// PyTorch): each figure's steps/s, ratios and its steps/s over PyTorch SGD's *in the same
/// round*; peak memory is the largest seen.
fn combine_rounds(rounds: &[(Vec<Figure>, Vec<TorchFigure>)]) -> (Vec<Figure>, Vec<TorchFigure>) {
    let Some((first, first_torch)) = rounds.first() else {
        return (Vec::new(), Vec::new());
    };
    let medians = |values: Vec<f64>| (!values.is_empty()).then(|| median(values));
    let figures = first
        .iter()
        .map(|f| {
            let same: Vec<(&Figure, Option<f64>)> = rounds
                .iter()
                .filter_map(|(figures, torch)| {
                    let g = figures
                        .iter()
                        .find(|g| g.backend == f.backend && g.method == f.method)?;
                    Some((g, torch.iter().find(|t| t.0 == "sgd").map(|t| t.1)))
                })
                .collect();
            Figure {
                steps_per_s: median(same.iter().map(|(g, _)| g.steps_per_s).collect()),
                peak_mib: same.iter().map(|(g, _)| g.peak_mib).fold(0.0, f64::max),
                ratio: medians(same.iter().filter_map(|(g, _)| g.ratio).collect()),
                forward_ratio: medians(same.iter().filter_map(|(g, _)| g.forward_ratio).collect()),
                vs_torch: medians(
                    same.iter()
                        .filter_map(|(g, t)| t.map(|t| g.steps_per_s / t))
                        .collect(),
                ),
                ..f.clone()
            }
        })
        .collect();
    let torch = first_torch
        .iter()
        .map(|(method, _, _)| {
            let same: Vec<&TorchFigure> = rounds
                .iter()
                .filter_map(|(_, torch)| torch.iter().find(|t| &t.0 == method))
                .collect();
            (
                method.clone(),
                median(same.iter().map(|t| t.1).collect()),
                same.iter().map(|t| t.2).fold(0.0, f64::max),
            )
        })
        .collect();
    (figures, torch)
}

/// Parses `pytorch,<method>,<steps/s>,<MiB>` lines.
fn parse_torch(text: &str) -> Vec<TorchFigure> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim().split(',').collect();
            match f.as_slice() {
                ["pytorch", m, s, mib] => Some((m.to_string(), s.parse().ok()?, mib.parse().ok()?)),
                _ => None,
            }
        })
        .collect()
}

fn print_table(model: BenchModel, figures: &[Figure], torch: &[TorchFigure]) {
    let torch_sgd = torch.iter().find(|t| t.0 == "sgd").map(|t| t.1);
    println!("{}, f32, training steps/s (median of rounds)", model.title);
    println!(
        "{:<8} {:<11} {:>8} {:>9} {:>8} {:<8} {:>9} {:>8}  goal",
        "backend", "method", "steps/s", "peak MiB", "x torch", "base", "step/base", "allowed"
    );
    for f in figures {
        let vs_torch = f
            .vs_torch
            .map(|v| format!("{v:.2}"))
            .unwrap_or_else(|| "-".into());
        let spec = METHODS.iter().find(|m| m.name == f.method);
        let (ratio, allowed, goal) = match (spec, f.ratio) {
            (Some(m), Some(ratio)) => {
                let extra = m.extra_forwards as f64 * f.forward_ratio.unwrap_or(0.0);
                // Within 5 % of the base's step plus the allowed forward passes.
                let allowed = (1.0 + extra) * 1.05;
                let verdict = if ratio <= allowed { "met" } else { "NOT met" };
                (format!("{ratio:.3}"), format!("{allowed:.3}"), verdict)
            }
            _ => ("-".into(), "-".into(), ""),
        };
        println!(
            "{:<8} {:<11} {:>8} {:>9.0} {:>8} {:<8} {:>9} {:>8}  {}",
            f.backend,
            f.method,
            rate(f.steps_per_s),
            f.peak_mib,
            vs_torch,
            f.base.as_deref().unwrap_or("-"),
            ratio,
            allowed,
            goal
        );
    }
    for (method, sps, mib) in torch {
        let vs = torch_sgd
            .map(|t| format!("{:.2}", sps / t))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<8} {:<11} {:>8} {:>9.0} {:>8}",
            "torch",
            method,
            rate(*sps),
            mib,
            vs
        );
    }
}

/// Steps/s to about three significant digits (a BiLSTM step takes seconds), one decimal from
/// 100 up.
fn rate(steps_per_s: f64) -> String {
    match steps_per_s {
        r if r < 1.0 => format!("{r:.3}"),
        r if r < 10.0 => format!("{r:.2}"),
        r => format!("{r:.1}"),
    }
}

/// The `--backends` name of flex with Burn's own ops instead of steplab-kernels' (to compare the
/// two in one run).
const FLEX_STOCK: &str = "flex-stock";

fn backend_kind(name: &str) -> Result<BackendKind> {
    Ok(match name {
        "ndarray" => BackendKind::Ndarray,
        "flex" | FLEX_STOCK => BackendKind::Flex,
        "wgpu" => BackendKind::Wgpu,
        other => {
            return Err(ConfigError(format!(
                "--backends: unknown backend `{other}`; known: ndarray, flex, {FLEX_STOCK}, wgpu"
            ))
            .into());
        }
    })
}

/// Random batches of the model's input shape (inputs in [0, 1), or token ids of whole-length
/// reviews; one-hot labels; an autoencoder's pixels in [−1, 1) as their own targets).
fn random_batches(compute: &Compute, bench: BenchModel, count: usize) -> Vec<Batch> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (n, k) = (bench.batch, bench.classes);
    let size = bench.shape.numel();
    (0..count)
        .map(|_| {
            if k == 0 {
                let opts = (&compute.device, compute.dtype);
                let pixels: Vec<f32> = (0..n * size)
                    .map(|_| rng.random::<f32>() * 2.0 - 1.0)
                    .collect();
                let rows: Tensor<2> = Tensor::from_data(TensorData::new(pixels, [n, size]), opts);
                let InputShape::Image([c, h, w]) = bench.shape else {
                    unreachable!("the benchmark's autoencoder reads images")
                };
                return Batch {
                    inputs: Input::Images(rows.clone().reshape([n, c, h, w])),
                    target: Target::Values(rows),
                    labels: None,
                    len: n,
                };
            }
            let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..k as u32)).collect();
            let mut one_hot = vec![0.0f32; n * k];
            for (i, l) in labels.iter().enumerate() {
                one_hot[i * k + *l as usize] = 1.0;
            }
            let opts = (&compute.device, compute.dtype);
            let inputs = if let InputShape::Tokens { vocab_size, .. } = bench.shape {
                let ids: Vec<i32> = (0..n * size)
                    .map(|_| rng.random_range(2..vocab_size as i32))
                    .collect();
                Input::Tokens {
                    ids: Tensor::<2, Int>::from_data(
                        TensorData::new(ids, [n, size]),
                        &compute.device,
                    ),
                    mask: Tensor::ones([n, size], opts),
                }
            } else {
                let inputs: Vec<f32> = (0..n * size).map(|_| rng.random()).collect();
                let rows: Tensor<2> = Tensor::from_data(TensorData::new(inputs, [n, size]), opts);
                match bench.shape {
                    InputShape::Image([c, h, w]) => Input::Images(rows.reshape([n, c, h, w])),
                    _ => Input::Features(rows),
                }
            };
            Batch {
                inputs,
                target: Target::OneHot(Tensor::from_data(TensorData::new(one_hot, [n, k]), opts)),
                labels: Some(labels),
                len: n,
            }
        })
        .collect()
}

/// One timed method in a child process: a training state of its own (for the bare forward
/// pass, only its weights are used), stepped by the trainer's own [`Stepper`].
struct Runner {
    state: TrainState,
    /// Times forward passes instead of updates.
    forward_only: bool,
    /// Seconds per step of each round.
    times: Vec<f64>,
}

/// Batches per epoch the optimizers are told (as LossGrad's MNIST MLP has).
const BENCH_BATCHES_PER_EPOCH: usize = 600;

impl Runner {
    fn new(spec: &Method, model: &dyn Model, compute: &Compute) -> Result<Self> {
        let forward_only = spec.name == "forward";
        let toml_text = if forward_only {
            "kind = \"sgd\""
        } else {
            spec.toml
        };
        let config: OptimizerConfig = toml::from_str(toml_text)?;
        let optimizer = config.build()?;
        let mut state = TrainState::initial(model, optimizer, 0, compute);
        stepper(model, compute).begin_epoch(&mut state);
        Ok(Self {
            state,
            forward_only,
            times: Vec::new(),
        })
    }

    /// Runs `n` steps (or forward passes) and returns the seconds per step.
    fn run(&mut self, n: usize, model: &dyn Model, compute: &Compute, batches: &[Batch]) -> f64 {
        let stepper = stepper(model, compute);
        let started = Instant::now();
        for _ in 0..n {
            let at = self.state.position.step as usize;
            let batch = &batches[at % batches.len()];
            if self.forward_only {
                self.state.position.step += 1;
                let noise = StepNoise::new(0, at as u64 + 1, &compute.device, compute.dtype);
                let pass = Pass {
                    model,
                    state: &self.state.model_state,
                    noise: &noise,
                    l2: 0.0,
                };
                let _ = BatchProbe { pass, batch }.loss_at(&self.state.params);
            } else if let StepOutcome::NonFiniteLoss = stepper.step(&mut self.state, batch) {
                // Random inputs keep the loss finite; skip the batch if one ever is not.
                self.state.position.step += 1;
            }
        }
        // Make sure queued work is done before the clock stops (a read of the last tensor the
        // step wrote; the smallest, so that the read itself costs little).
        if let Some(last) = self.state.params.last() {
            let _ = last.clone().sum().into_data();
        }
        started.elapsed().as_secs_f64() / n as f64
    }
}

/// The trainer's stepper for a benchmark: seed 0, no L2, schedule or held-out split.
fn stepper<'a>(model: &'a dyn Model, compute: &'a Compute) -> Stepper<'a> {
    Stepper {
        model,
        compute,
        seed: 0,
        l2: 0.0,
        schedule: None,
        batches_per_epoch: BENCH_BATCHES_PER_EPOCH,
        holdout: None,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn child(backend: &str, name: &str, bench: BenchModel, args: &BenchArgs) -> Result<()> {
    let (steps, rounds) = (args.steps, args.rounds);
    steplab_kernels::set_own_kernels(backend != FLEX_STOCK);
    let compute = backend::compute(backend_kind(backend)?, Precision::F32)?;
    let model_config: ModelConfig = toml::from_str(bench.toml)?;
    let task = match bench.classes {
        0 => Task::Reconstruction,
        classes => Task::Classification { classes },
    };
    let model = model_config.build(bench.shape, task)?;
    let model = model.as_ref();
    let batches = random_batches(&compute, bench, 10);
    let spec = method(name)?;
    let mut specs = vec![spec];
    if spec.base != spec.name {
        specs.push(method(spec.base)?);
    }
    if spec.extra_forwards > 0 {
        specs.push(method("forward")?);
    }
    let mut runners = specs
        .iter()
        .map(|s| Runner::new(s, model, &compute))
        .collect::<Result<Vec<_>>>()?;
    for runner in &mut runners {
        if args.warmup > 0 {
            runner.run(args.warmup, model, &compute, &batches);
        }
    }
    // Within a round the runners take turns step by step, and every other turn runs them in
    // reverse order (A B B A ...), so that the machine's drift (±30 % between seconds here)
    // hits each runner alike and none always goes first. A runner's round time is the mean of
    // its steps in the round, so that costs paid every few steps count in full; ratios are the
    // median over rounds. Timing whole rounds one runner after the other instead let two
    // identical SGD runners differ by up to 5 % (A/A test, 30 rounds of 30 steps, 2026-12-03).
    let per_round = steps.div_ceil(rounds.max(1)).max(1);
    for _ in 0..rounds.max(1) {
        let mut sums = vec![0.0; runners.len()];
        for turn in 0..per_round {
            let mut order: Vec<usize> = (0..runners.len()).collect();
            if turn % 2 == 1 {
                order.reverse();
            }
            for k in order {
                sums[k] += runners[k].run(1, model, &compute, &batches);
            }
        }
        for (runner, sum) in runners.iter_mut().zip(sums) {
            runner.times.push(sum / per_round as f64);
        }
    }
    let own = median(runners[0].times.clone());
    let ratio_to_base = |which: usize| {
        median(
            runners[which]
                .times
                .iter()
                .zip(&runners[1].times)
                .map(|(a, b)| a / b)
                .collect(),
        )
    };
    let (base, ratio, forward_ratio) = if runners.len() > 1 {
        let forward = (runners.len() > 2).then(|| format!("{:.4}", ratio_to_base(2)));
        (
            spec.base,
            format!("{:.4}", ratio_to_base(0)),
            forward.unwrap_or_default(),
        )
    } else {
        ("", String::new(), String::new())
    };
    println!(
        "steplab,{backend},{name},{:.3},{:.1},{base},{ratio},{forward_ratio}",
        1.0 / own,
        peak_rss_mib()
    );
    Ok(())
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`; 0 where unavailable).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(method: &str, steps_per_s: f64, ratio: Option<f64>) -> Figure {
        Figure {
            backend: "flex".into(),
            method: method.into(),
            steps_per_s,
            peak_mib: steps_per_s,
            base: ratio.map(|_| "sgd".into()),
            ratio,
            forward_ratio: None,
            vs_torch: None,
        }
    }

    #[test]
    fn alternating_rounds_give_medians_of_same_round_ratios() {
        // PyTorch's speed drifts with the machine; the ratio per round stays 0.5.
        let rounds: Vec<(Vec<Figure>, Vec<TorchFigure>)> = [(1.0, 2.0), (3.0, 6.0), (2.0, 4.0)]
            .into_iter()
            .map(|(ours, torch)| {
                (
                    vec![
                        figure("sgd", ours, None),
                        figure("lossgrad", ours / 2.0, Some(1.9)),
                    ],
                    vec![
                        ("sgd".to_string(), torch, 700.0),
                        ("lossgrad".to_string(), torch / 2.0, 710.0),
                    ],
                )
            })
            .collect();
        let (figures, torch) = combine_rounds(&rounds);
        assert_eq!(figures[0].steps_per_s, 2.0);
        assert_eq!(figures[0].vs_torch, Some(0.5));
        assert_eq!(figures[0].peak_mib, 3.0);
        assert_eq!(figures[1].vs_torch, Some(0.25));
        assert_eq!(figures[1].ratio, Some(1.9));
        assert_eq!(
            torch,
            vec![
                ("sgd".to_string(), 4.0, 700.0),
                ("lossgrad".to_string(), 2.0, 710.0)
            ]
        );
        // One round (no PyTorch alternation): the ratio of that round's figures.
        let (single, _) = combine_rounds(&rounds[..1]);
        assert_eq!(single[1].vs_torch, Some(0.25));
        let parsed = parse_line("steplab,flex-stock,sgd,1.500,390.0,,,").expect("a figure line");
        assert_eq!(
            (parsed.backend.as_str(), parsed.steps_per_s, parsed.ratio),
            ("flex-stock", 1.5, None)
        );
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    use burn::tensor::DType;
    use burn::tensor::module::{conv_transpose2d, conv2d};
    use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};

    /// Where a WAE-MMD step's time goes, layer by layer at batch 64 on flex (f32): forward and
    /// forward + backward of each convolution and transposed convolution, with the GFLOP/s
    /// each reaches (2 · multiply-adds / time; the backward does twice the forward's work).
    /// `cargo test --release -p steplab-train --lib timing::time_wae_layers -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn time_wae_layers() {
        let compute = backend::compute(BackendKind::Flex, Precision::F32).unwrap();
        let opts = (&compute.device, DType::F32);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut random = |shape: [usize; 4]| -> Tensor<4> {
            let n = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>() - 0.5).collect();
            Tensor::from_data(TensorData::new(v, shape), opts)
        };
        let batch = 64;
        // (name, transposed, c_in, c_out, input side, stride)
        let layers = [
            ("enc.conv0", false, 3, 128, 64, 2),
            ("enc.conv1", false, 128, 256, 32, 2),
            ("enc.conv2", false, 256, 512, 16, 2),
            ("enc.conv3", false, 512, 1024, 8, 2),
            ("dec.deconv0", true, 1024, 512, 8, 2),
            ("dec.deconv1", true, 512, 256, 16, 2),
            ("dec.deconv2", true, 256, 128, 32, 2),
            ("dec.out", true, 128, 3, 64, 1),
        ];
        let (mut conv_s, mut deconv_s) = (0.0, 0.0);
        for (name, transposed, c_in, c_out, side, stride) in layers {
            let x = random([batch, c_in, side, side]);
            let w = if transposed {
                random([c_in, c_out, 5, 5])
            } else {
                random([c_out, c_in, 5, 5])
            };
            let apply = |x: Tensor<4>, w: Tensor<4>| {
                if transposed {
                    let o = ConvTransposeOptions::new(
                        [stride, stride],
                        [2, 2],
                        [stride - 1, stride - 1],
                        [1, 1],
                        1,
                    );
                    conv_transpose2d(x, w, None, o)
                } else {
                    conv2d(
                        x,
                        w,
                        None,
                        ConvOptions::new([stride, stride], [2, 2], [1, 1], 1),
                    )
                }
            };
            let out_side = if transposed {
                side * stride
            } else {
                side / stride
            };
            // Multiply-adds: every output pixel of a convolution, every input pixel of a
            // transposed one, times c_in · c_out · 25.
            let pixels = if transposed {
                side * side
            } else {
                out_side * out_side
            };
            let macs = (batch * pixels * c_in * c_out * 25) as f64;
            let reps = 3;
            let _ = apply(x.clone(), w.clone()).sum().into_data(); // warm-up
            let t = Instant::now();
            for _ in 0..reps {
                let _ = apply(x.clone(), w.clone()).sum().into_data();
            }
            let forward = t.elapsed().as_secs_f64() / reps as f64;
            let t = Instant::now();
            for _ in 0..reps {
                let xt = x.clone().autodiff().require_grad();
                let wt = w.clone().autodiff().require_grad();
                let grads = apply(xt.clone(), wt.clone()).sum().backward();
                let _ = wt.grad(&grads).map(|g| g.sum().into_data());
                let _ = xt.grad(&grads).map(|g| g.sum().into_data());
            }
            let both = t.elapsed().as_secs_f64() / reps as f64;
            if transposed {
                deconv_s += both;
            } else {
                conv_s += both;
            }
            println!(
                "{name:<12} fwd {:>8.1} ms ({:>5.1} GFLOP/s)  fwd+bwd {:>8.1} ms ({:>5.1} GFLOP/s)",
                forward * 1e3,
                2.0 * macs / forward / 1e9,
                both * 1e3,
                6.0 * macs / both / 1e9
            );
        }
        println!(
            "convolutions {:.2} s, transposed convolutions {:.2} s per forward + backward",
            conv_s, deconv_s
        );
    }

    /// `cargo test --release -p steplab-train --lib timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn time_update_kernels() {
        for kind in [BackendKind::Ndarray, BackendKind::Flex] {
            let compute = backend::compute(kind, Precision::F32).unwrap();
            let sizes = [392000usize, 500, 150000, 300, 30000, 100, 1000, 10];
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let mut make = || -> Vec<Tensor<1>> {
                sizes
                    .iter()
                    .map(|&n| {
                        let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>() - 0.5).collect();
                        Tensor::from_data(TensorData::new(v, [n]), (&compute.device, DType::F32))
                    })
                    .collect()
            };
            let (mut a, b) = (make(), make());
            let reps = 300;
            let mut t_shared = 0.0;
            let mut t_owned = 0.0;
            let mut t_norm = 0.0;
            for _ in 0..reps {
                let t = Instant::now();
                a = steplab_optim::vector::add_scaled(&a, &b, -1e-6);
                let _ = a[9].clone().into_data();
                t_shared += t.elapsed().as_secs_f64();
                let g = b.clone().into_iter().map(|x| x.mul_scalar(1.0)).collect();
                let t = Instant::now();
                a = steplab_optim::vector::add_scaled_owned(a, g, -1e-6);
                let _ = a[9].clone().into_data();
                t_owned += t.elapsed().as_secs_f64();
                let t = Instant::now();
                let _ = steplab_optim::vector::sq_norm(&b);
                t_norm += t.elapsed().as_secs_f64();
            }
            let ms = |t: f64| t / reps as f64 * 1e3;
            println!(
                "{kind:?}: add_scaled {:.3} ms, add_scaled_owned {:.3} ms, sq_norm {:.3} ms",
                ms(t_shared),
                ms(t_owned),
                ms(t_norm)
            );
        }
    }
}
