//! `train bench`: training steps/s of LossGrad's MNIST MLP (784-500-300-100-10, batch 100, f32)
//! per CPU backend and optimizer, with peak memory, beside PyTorch on the same machine.
//!
//! Each (backend, optimizer) pair runs in its own child process, so its peak resident memory is
//! its own. Inputs are random (seeded); the step is the trainer's own (forward, backward,
//! optimizer step with its probes). Ratios are taken within one run: machines are noisy.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use steplab_models::{Mode, ModelConfig, Target, Task, init_params};
use steplab_optim::{OptimizerConfig, StepInput};

use crate::backend::{self, Compute};
use crate::config::{BackendKind, Precision};
use crate::data::Batch;
use crate::trainer::{BatchProbe, loss_and_grad};

/// Arguments of `train bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Timed steps per round.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Rounds; the median round is reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Backends to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = default_backends())]
    pub backends: Vec<String>,
    /// Optimizers to measure (comma-separated `kind` names).
    #[arg(long, value_delimiter = ',', default_values_t = vec!["sgd".to_string(), "lossgrad".to_string()])]
    pub optimizers: Vec<String>,
    /// Also run `scripts/bench_pytorch.sh` (creates a venv with CPU PyTorch on first use).
    #[arg(long)]
    pub pytorch: bool,
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

/// One measurement.
#[derive(Debug, Clone)]
struct Figure {
    source: String,
    backend: String,
    optimizer: String,
    steps_per_s: f64,
    peak_mib: f64,
}

/// Runs the benchmark and prints its table.
pub fn run(args: &BenchArgs) -> Result<()> {
    if let Some(pair) = &args.child {
        return child(&pair[0], &pair[1], args.steps, args.rounds);
    }
    let exe = std::env::current_exe().context("cannot locate the train binary")?;
    let mut figures = Vec::new();
    for backend in &args.backends {
        for optimizer in &args.optimizers {
            eprintln!("measuring {optimizer} on {backend} ...");
            let out = Command::new(&exe)
                .args([
                    "bench",
                    "--steps",
                    &args.steps.to_string(),
                    "--rounds",
                    &args.rounds.to_string(),
                ])
                .args(["--child", backend, optimizer])
                .output()
                .context("cannot run the benchmark child process")?;
            if !out.status.success() {
                bail!(
                    "{optimizer} on {backend} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            figures.extend(parse_lines(&String::from_utf8_lossy(&out.stdout)));
        }
    }
    if args.pytorch {
        eprintln!("measuring PyTorch (scripts/bench_pytorch.sh) ...");
        let out = Command::new("bash")
            .args([
                "scripts/bench_pytorch.sh",
                "--steps",
                &args.steps.to_string(),
                "--rounds",
                &args.rounds.to_string(),
            ])
            .output()
            .context("cannot run scripts/bench_pytorch.sh (run from the repository root)")?;
        if !out.status.success() {
            bail!(
                "scripts/bench_pytorch.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        figures.extend(parse_lines(&String::from_utf8_lossy(&out.stdout)));
    }
    print_table(&figures);
    Ok(())
}

/// Parses `steplab,<backend>,<optimizer>,<steps/s>,<MiB>` and `pytorch,<optimizer>,<steps/s>,<MiB>`.
fn parse_lines(text: &str) -> Vec<Figure> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim().split(',').collect();
            match f.as_slice() {
                ["steplab", b, o, s, m] => Some(Figure {
                    source: "steplab".into(),
                    backend: b.to_string(),
                    optimizer: o.to_string(),
                    steps_per_s: s.parse().ok()?,
                    peak_mib: m.parse().ok()?,
                }),
                ["pytorch", o, s, m] => Some(Figure {
                    source: "pytorch".into(),
                    backend: "torch-cpu".into(),
                    optimizer: o.to_string(),
                    steps_per_s: s.parse().ok()?,
                    peak_mib: m.parse().ok()?,
                }),
                _ => None,
            }
        })
        .collect()
}

fn print_table(figures: &[Figure]) {
    let torch_sgd = figures
        .iter()
        .find(|f| f.source == "pytorch" && f.optimizer == "sgd")
        .map(|f| f.steps_per_s);
    println!("MNIST MLP 784-500-300-100-10, batch 100, f32, training steps/s (median of rounds)");
    println!(
        "{:<10} {:<10} {:>9} {:>9} {:>12} {:>13}",
        "backend", "optimizer", "steps/s", "peak MiB", "x torch SGD", "step / SGD's"
    );
    for f in figures {
        let own_sgd = figures
            .iter()
            .find(|g| g.backend == f.backend && g.optimizer == "sgd")
            .map(|g| g.steps_per_s);
        let vs_torch = torch_sgd
            .map(|t| format!("{:.2}", f.steps_per_s / t))
            .unwrap_or_else(|| "-".into());
        let vs_sgd = own_sgd
            .map(|s| format!("{:.2}", s / f.steps_per_s))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<10} {:<10} {:>9.1} {:>9.0} {:>12} {:>13}",
            f.backend, f.optimizer, f.steps_per_s, f.peak_mib, vs_torch, vs_sgd
        );
    }
}

fn backend_kind(name: &str) -> Result<BackendKind> {
    Ok(match name {
        "ndarray" => BackendKind::Ndarray,
        "flex" => BackendKind::Flex,
        "wgpu" => BackendKind::Wgpu,
        other => bail!("unknown backend `{other}`"),
    })
}

/// Random batches of MNIST's shape (inputs in [0, 1), one-hot labels).
fn random_batches(compute: &Compute, count: usize) -> Vec<Batch> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    (0..count)
        .map(|_| {
            let inputs: Vec<f32> = (0..100 * 784).map(|_| rng.random()).collect();
            let labels: Vec<u32> = (0..100).map(|_| rng.random_range(0..10)).collect();
            let mut one_hot = vec![0.0f32; 100 * 10];
            for (i, l) in labels.iter().enumerate() {
                one_hot[i * 10 + *l as usize] = 1.0;
            }
            let opts = (&compute.device, compute.dtype);
            Batch {
                inputs: Tensor::from_data(TensorData::new(inputs, [100, 784]), opts),
                target: Target::OneHot(Tensor::from_data(
                    TensorData::new(one_hot, [100, 10]),
                    opts,
                )),
                labels: Some(labels),
                len: 100,
            }
        })
        .collect()
}

fn child(backend: &str, optimizer: &str, steps: usize, rounds: usize) -> Result<()> {
    let compute = backend::compute(backend_kind(backend)?, Precision::F32)?;
    let model_config: ModelConfig = toml::from_str("kind = \"mlp\"\nhidden = [500, 300, 100]")?;
    let model = model_config.build(784, Task::Classification { classes: 10 })?;
    let model = model.as_ref();
    let optimizer_config: OptimizerConfig =
        toml::from_str(&format!("kind = \"{optimizer}\"\nlr = 0.01"))?;
    let mut opt = optimizer_config.build()?;
    let batches = random_batches(&compute, 10);
    let mut params = init_params(model.param_specs(), 0, &compute.device, compute.dtype);
    let mut at = 0;
    let mut run_steps = |n: usize, params: &mut Vec<Tensor<1>>| {
        for _ in 0..n {
            let batch = &batches[at % batches.len()];
            at += 1;
            let (loss, grads, _) = loss_and_grad(model, params, batch, Mode::Train);
            let mut probe = BatchProbe { model, batch };
            let current = std::mem::take(params);
            *params = opt
                .step(StepInput {
                    params: current,
                    loss,
                    grads,
                    probe: &mut probe,
                    holdout: None,
                })
                .params;
        }
        // Make sure queued work is done before the clock stops.
        let _ = params[0].clone().sum().into_data();
    };
    run_steps(10, &mut params); // warm-up
    let mut rates = Vec::new();
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        run_steps(steps, &mut params);
        rates.push(steps as f64 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    let median = rates[rates.len() / 2];
    println!(
        "steplab,{backend},{optimizer},{median:.3},{:.1}",
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
