//! End-to-end checks of the `train` command against CLI.md: run directory contents, exit codes,
//! error messages, determinism, and LossGrad's `lr` column against an independent implementation.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{read_csv, regression_config, stderr, train};

#[test]
fn a_run_writes_the_files_of_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = regression_config(dir.path(), "kind = \"lossgrad\"\nlr = 0.01", "");
    let out = train(&["--config", cfg.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let run = dir.path().join("results/exp");
    for file in ["config.toml", "steps.csv", "epochs.csv", "status"] {
        assert!(run.join(file).exists(), "{file} missing");
    }
    let (header, rows) = read_csv(&run.join("steps.csv"));
    assert_eq!(
        header,
        [
            "step",
            "epoch",
            "loss",
            "lr",
            "ratio",
            "grad_sq_norm",
            "probe_loss",
            "unmeasured"
        ]
    );
    assert_eq!(rows.len(), 30);
    assert_eq!(rows[0][0], 1.0);
    assert_eq!(rows[29][1], 30.0);
    let (header, epochs) = read_csv(&run.join("epochs.csv"));
    assert_eq!(header[0], "epoch");
    assert!(header.contains(&"test_loss".to_string()) && header.contains(&"seconds".to_string()));
    assert_eq!(epochs.len(), 30);
    assert_eq!(
        std::fs::read_to_string(run.join("status")).unwrap().trim(),
        "completed"
    );
    // The loss goes down on this easy problem.
    assert!(rows[29][2] < rows[0][2] * 0.5);
    // The resolved config reruns to the same steps.
    let again = train(
        &[
            "--config",
            run.join("config.toml").to_str().unwrap(),
            "--out",
            "rerun",
        ],
        dir.path(),
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        std::fs::read(run.join("steps.csv")).unwrap(),
        std::fs::read(dir.path().join("rerun/steps.csv")).unwrap()
    );
}

/// LossGrad Alg. 1 in plain f64 on the host: the reference the `lr` column must follow.
fn reference_lossgrad(
    x: &[[f64; 3]],
    y: &[f64],
    h0: f64,
    c: f64,
    steps: usize,
) -> (Vec<f64>, Vec<f64>) {
    let n = x.len() as f64;
    let loss = |w: &[f64; 4]| {
        x.iter()
            .zip(y)
            .map(|(xi, yi)| (w[0] * xi[0] + w[1] * xi[1] + w[2] * xi[2] + w[3] - yi).powi(2))
            .sum::<f64>()
            / n
    };
    let mut w = [0.0f64; 4];
    let mut h = h0;
    let (mut lrs, mut ratios) = (Vec::new(), Vec::new());
    for _ in 0..steps {
        let mut g = [0.0f64; 4];
        for (xi, yi) in x.iter().zip(y) {
            let r = w[0] * xi[0] + w[1] * xi[1] + w[2] * xi[2] + w[3] - yi;
            for k in 0..3 {
                g[k] += 2.0 * r * xi[k] / n;
            }
            g[3] += 2.0 * r / n;
        }
        let f0 = loss(&w);
        let s: f64 = g.iter().map(|v| v * v).sum();
        let approx = f0 - h * s;
        for k in 0..4 {
            w[k] -= h * g[k];
        }
        let ratio = (loss(&w) - approx) / (h * s + 1e-25);
        lrs.push(h);
        ratios.push(ratio);
        h = if ratio > 0.5 { h / c } else { h * c };
    }
    (lrs, ratios)
}

#[test]
fn lossgrad_lr_column_follows_algorithm_1_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = regression_config(dir.path(), "kind = \"lossgrad\"\nlr = 0.001\nc = 1.3", "");
    let out = train(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            "training.epochs=60",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, data) = read_csv(&dir.path().join("data.csv"));
    let x: Vec<[f64; 3]> = data.iter().map(|r| [r[0], r[1], r[2]]).collect();
    let y: Vec<f64> = data.iter().map(|r| r[3]).collect();
    let (lrs, ratios) = reference_lossgrad(&x, &y, 0.001, 1.3, 60);
    let (_, rows) = read_csv(&dir.path().join("results/exp/steps.csv"));
    assert_eq!(rows.len(), 60);
    // r = (f1 − f0 + h·s)/(h·s) cancels: rounding in f0 and f1 (~1e-16 relative, summed in
    // different orders here and in Burn) is amplified by (|f0| + |f1|)/(h·s). Near convergence
    // h·s falls toward the rounding of the loss and the r > 1/2 decision becomes rounding noise,
    // in any implementation: compare up to the first step where that can happen.
    let mut checked = 0;
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[3], lrs[i], "lr of step {}", i + 1);
        let (f0, f1, lred) = (row[2], row[6], row[3] * row[5]);
        let bound = 1e-13 * (f0.abs() + f1.abs()) / lred + 1e-12 * ratios[i].abs();
        assert!(
            (row[4] - ratios[i]).abs() <= bound,
            "ratio of step {}: {} vs {} (bound {bound})",
            i + 1,
            row[4],
            ratios[i]
        );
        checked += 1;
        if (ratios[i] - 0.5).abs() <= 100.0 * bound {
            break;
        }
    }
    assert!(checked >= 40, "only {checked} well-conditioned steps");
    // h must both grow and shrink over the compared steps, or the test would check little.
    assert!(
        ratios[..checked].iter().any(|r| *r > 0.5) && ratios[..checked].iter().any(|r| *r <= 0.5)
    );
}

#[test]
fn same_config_and_seed_give_identical_steps_csv() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = regression_config(dir.path(), "kind = \"sgd\"\nlr = 0.1\nmomentum = 0.9", "");
    let set = [
        "--set",
        "data.batch_size=8",
        "--set",
        "data.shuffle=true",
        "--set",
        "model.init=\"default\"",
    ];
    let mut a = vec!["--config", cfg.to_str().unwrap(), "--out", "a"];
    a.extend(set);
    let mut b = vec!["--config", cfg.to_str().unwrap(), "--out", "b"];
    b.extend(set);
    assert!(train(&a, dir.path()).status.success());
    assert!(train(&b, dir.path()).status.success());
    let read = |d: &str| std::fs::read(dir.path().join(d).join("steps.csv")).unwrap();
    assert_eq!(read("a"), read("b"));
    assert_eq!(read_csv(&dir.path().join("a/steps.csv")).1.len(), 150);
}

#[test]
fn a_non_finite_loss_is_recorded_as_diverged_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = regression_config(dir.path(), "kind = \"sgd\"\nlr = 1000.0", "");
    let out = train(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            "training.epochs=500",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let status = std::fs::read_to_string(dir.path().join("results/exp/status")).unwrap();
    assert!(status.starts_with("diverged at step"), "{status}");
    let (_, rows) = read_csv(&dir.path().join("results/exp/steps.csv"));
    assert!(
        rows.iter().all(|r| r[2].is_finite()),
        "only finite losses are logged as updates"
    );
}

#[test]
fn config_errors_exit_2_and_name_the_key_or_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = regression_config(dir.path(), "kind = \"lossgrad\"", "");
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "optimizer.lr=-0.1"], "optimizer.lr"),
        (&["--set", "training.epochz=3"], "epochz"),
        (&["--set", "training.epochs=\"x\""], "training.epochs"),
        (&["--set", "optimizer.c=0.5"], "optimizer.c"),
        (&["--set", "run.precision=\"f16\""], "run.precision"),
        (&["--set", "data.batch_size=0"], "data.batch_size"),
        (
            &["--set", "data.validation_fraction=1.5"],
            "data.validation_fraction",
        ),
        (&["--set", "data.dataset=\"imagenet\""], "data.dataset"),
        (
            &[
                "--set",
                "model.kind=\"linear\"",
                "--set",
                "model.hidden=[3]",
            ],
            "hidden",
        ),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["--config", cfg.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = train(&args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{extra:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
    std::fs::write(dir.path().join("bad.toml"), "[data\ndataset = 1").unwrap();
    let out = train(&["--config", "bad.toml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bad.toml"), "{}", stderr(&out));
    let out = train(&["--config", "missing.toml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing.toml"), "{}", stderr(&out));
}

#[test]
fn missing_or_corrupt_dataset_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = regression_config(dir.path(), "kind = \"lossgrad\"", "");
    let out = train(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            "data.path=\"nowhere.csv\"",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("nowhere.csv"), "{}", stderr(&out));
    // A corrupt MNIST file in the data root beside the real ones we have, download disabled.
    let root = dir.path().join("data/mnist");
    std::fs::create_dir_all(&root).unwrap();
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/mnist");
    for file in [
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        if std::fs::copy(shared.join(file), root.join(file)).is_err() {
            eprintln!("skipped: the real MNIST files of shared/ are not here");
            return;
        }
    }
    std::fs::write(root.join("train-images-idx3-ubyte.gz"), b"not gzip at all").unwrap();
    let out = train(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            "data.dataset=\"mnist\"",
            "--set",
            "data.root=\"data\"",
            "--set",
            "data.download=false",
            "--set",
            "model.kind=\"mlp\"",
            "--set",
            "model.hidden=[4]",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("train-images-idx3-ubyte"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn fashion_mnist_autoencoder_trains_on_the_real_files() {
    if !Path::new("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists() {
        eprintln!("skipped: dataset-fashion-mnist is not installed (.ci/run installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cfg = repo.join("configs/lossgrad_t3_fmnist_autoencoder_lossgrad.toml");
    let out = train(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            "run",
            "--set",
            "training.max_steps=20",
            "--set",
            "data.root=\"data\"",
            "--set",
            "data.download=false",
            "--set",
            "run.backend=\"ndarray\"",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (header, rows) = read_csv(&dir.path().join("run/steps.csv"));
    assert_eq!(header[4], "ratio");
    assert_eq!(rows.len(), 20);
    // h starts at the paper's h0 = 1e-4 and moves by factors of c = 1.05.
    assert_eq!(rows[0][3], 1e-4);
    let step = rows[1][3] / rows[0][3];
    assert!((step - 1.05).abs() < 1e-12 || (step - 1.0 / 1.05).abs() < 1e-12);
    let (_, epochs) = read_csv(&dir.path().join("run/epochs.csv"));
    assert_eq!(epochs.len(), 1);
    assert!(
        epochs[0][5].is_finite(),
        "test loss on the 10,000 real test images"
    );
}

#[test]
fn ctrl_c_keeps_the_rows_written_and_records_an_interrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = regression_config(dir.path(), "kind = \"lossgrad\"", "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_train"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            "training.epochs=100000000",
            "--set",
            "data.batch_size=1",
        ])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let steps = dir.path().join("results/exp/steps.csv");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&steps).map_or(0, |t| t.lines().count()) < 50 {
        assert!(started.elapsed().as_secs() < 60, "the run did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(130));
    let status = std::fs::read_to_string(dir.path().join("results/exp/status")).unwrap();
    let (_, rows) = read_csv(&steps);
    assert_eq!(
        status.trim(),
        format!("interrupted after step {}", rows.len())
    );
    assert!(rows.len() >= 49);
}

#[test]
fn a_schedule_scales_the_base_rate_at_the_start_of_each_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = regression_config(
        dir.path(),
        "kind = \"sgd\"\nlr = 0.1",
        "[schedule]\nkind = \"step\"\nstep_size = 4\ngamma = 0.5",
    );
    let out = train(&["--config", cfg.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, rows) = read_csv(&dir.path().join("results/exp/steps.csv"));
    for row in &rows {
        let epoch = row[1] as i32;
        assert_eq!(row[3], 0.1 * 0.5_f64.powi(epoch / 4), "epoch {epoch}");
    }
    let (header, epochs) = read_csv(&dir.path().join("results/exp/epochs.csv"));
    let lr = header.iter().position(|h| h == "lr").unwrap();
    assert_eq!(epochs[3][lr], 0.05);
    // A method that sets its own step size cannot be scheduled.
    let out = train(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            "optimizer.kind=\"lossgrad\"",
            "--overwrite",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("schedule"), "{}", stderr(&out));
}

#[test]
fn step_milestones_change_the_rate_mid_epoch_by_global_step() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = regression_config(
        dir.path(),
        "kind = \"sgd\"\nlr = 0.1",
        "max_steps = 12\n[schedule]\nkind = \"multistep\"\nmilestone_steps = [5, 9]\ngamma = 0.5",
    );
    // 40 rows in batches of 10: 4 steps an epoch, so the milestones fall inside epochs 2 and 3.
    let out = train(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            "data.batch_size=10",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, rows) = read_csv(&dir.path().join("results/exp/steps.csv"));
    let lrs: Vec<f64> = rows.iter().map(|r| r[3]).collect();
    let expected: Vec<f64> = (1..=12)
        .map(|s| 0.1 * 0.5_f64.powi([5, 9].iter().filter(|&&m| m < s).count() as i32))
        .collect();
    assert_eq!(lrs, expected);
}

/// The repository root (two levels above this crate).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn boston_housing_splits_400_and_106_with_a_summed_loss() {
    let dir = tempfile::tempdir().unwrap();
    let csv = repo_root().join("assets/boston_housing/boston_house_prices.csv");
    let config = format!(
        r#"
[run]
backend = "ndarray"
precision = "f64"
[data]
dataset = "csv"
path = "{}"
target = "MEDV"
task = "regression"
test_rows = 106
batch_size = 400
shuffle = false
[model]
kind = "linear"
bias = false
init = "zeros"
loss_reduction = "sum"
[optimizer]
kind = "sgd"
lr = 1e-6
[training]
epochs = 2
"#,
        csv.display()
    );
    let path = dir.path().join("boston.toml");
    std::fs::write(&path, config).unwrap();
    let out = train(&["--config", path.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    // At W = 0 the summed loss is Σ y² over the first 400 rows (the training split).
    let (header, data) = read_csv(&csv);
    let target = header.iter().position(|h| h == "MEDV").unwrap();
    assert_eq!(data.len(), 506);
    let expected: f64 = data[..400].iter().map(|r| r[target] * r[target]).sum();
    let (_, steps) = read_csv(&dir.path().join("results/boston/steps.csv"));
    assert_eq!(steps.len(), 2, "full batch: one step per epoch");
    assert!(
        (steps[0][2] - expected).abs() <= 1e-9 * expected,
        "{} vs {expected}",
        steps[0][2]
    );
    let (header, epochs) = read_csv(&dir.path().join("results/boston/epochs.csv"));
    let test_loss = header.iter().position(|h| h == "test_loss").unwrap();
    assert!(epochs[0][test_loss].is_finite());
    // Standardised features leave the targets, so the loss at W = 0, unchanged; on the raw
    // features SGD at 1e-6 grows the loss (λmax of 2XᵀX ≈ 2.2e8), on standardised ones it falls.
    let out = train(
        &[
            "--config",
            path.to_str().unwrap(),
            "--set",
            "data.standardize=true",
            "--out",
            "z",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, z) = read_csv(&dir.path().join("z/steps.csv"));
    assert!((z[0][2] - expected).abs() <= 1e-9 * expected);
    assert!(z[1][2] < z[0][2] && steps[1][2] > steps[0][2]);
    // test_rows belongs to CSV data only, and must leave a training set.
    for (set, key) in [
        ("data.test_rows=506", "data.test_rows"),
        ("data.matrix=\"svd\"", "data.matrix"),
    ] {
        let out = train(
            &[
                "--config",
                path.to_str().unwrap(),
                "--set",
                set,
                "--overwrite",
            ],
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(2), "{set}: {}", stderr(&out));
        assert!(stderr(&out).contains(key), "{set}: {}", stderr(&out));
    }
}

#[test]
fn the_badly_conditioned_regression_trains_full_batch() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
[run]
backend = "ndarray"
precision = "f64"
[data]
dataset = "bad_regression"
matrix = "svd"
batch_size = 1000
[model]
kind = "bad_regression"
[optimizer]
kind = "sgd"
lr = 4e-5
[training]
epochs = 20
"#;
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, config).unwrap();
    let out = train(&["--config", path.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("96 parameters"), "{}", stderr(&out));
    let (_, steps) = read_csv(&dir.path().join("results/bad/steps.csv"));
    assert_eq!(steps.len(), 20);
    assert!(steps[19][2] < steps[0][2], "SGD lowers the summed loss");
}

#[test]
fn gorti_ravaut_validation_probes_need_a_hold_out_and_f32_finite_differences_warn() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = regression_config(
        dir.path(),
        "kind = \"gorti_ravaut\"\nlr = 0.01\nprobe = \"validation\"",
        "",
    );
    let out = train(&["--config", cfg.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("data.validation_fraction"),
        "{}",
        stderr(&out)
    );
    let out = train(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            "data.validation_fraction=0.2",
            "--set",
            "data.batch_size=8",
            "--set",
            "training.epochs=2",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("warning"),
        "f64 run: {}",
        stderr(&out)
    );
    let (header, rows) = read_csv(&dir.path().join("results/exp/steps.csv"));
    assert_eq!(&header[4..], ["eta", "d_eta", "d2_eta", "unmeasured"]);
    assert_eq!(rows.len(), 8, "32 training rows in batches of 8, 2 epochs");
    // The lr column of each step is the eta the previous step chose.
    for pair in rows.windows(2) {
        assert_eq!(pair[1][3], pair[0][4]);
    }
    let out = train(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            "optimizer.probe=\"train_batch\"",
            "--set",
            "run.precision=\"f32\"",
            "--set",
            "training.epochs=1",
            "--overwrite",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning") && stderr(&out).contains("f64"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_optimizer_kind_trains_a_step_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = regression_config(dir.path(), "kind = \"sgd\"", "max_steps = 2");
    #[allow(unused_mut)]
    let mut backends = vec!["ndarray", "flex"];
    #[cfg(feature = "wgpu")]
    backends.push("wgpu");
    for backend in backends {
        for kind in steplab_optim::OptimizerConfig::KINDS {
            let out_dir = format!("runs/{backend}_{kind}");
            let out = train(
                &[
                    "--config",
                    cfg.to_str().unwrap(),
                    "--set",
                    &format!("optimizer.kind=\"{kind}\""),
                    "--set",
                    &format!("run.backend=\"{backend}\""),
                    "--set",
                    "run.precision=\"f32\"",
                    "--set",
                    "data.batch_size=10",
                    "--out",
                    &out_dir,
                ],
                dir.path(),
            );
            if backend == "wgpu"
                && out.status.code() == Some(2)
                && stderr(&out).contains("no usable graphics adapter")
                && std::env::var_os("STEPLAB_REQUIRE_WGPU").is_none()
            {
                eprintln!("skipped wgpu: no adapter on this machine");
                break;
            }
            assert!(
                out.status.success(),
                "{kind} on {backend}: {}",
                stderr(&out)
            );
            let (header, rows) = read_csv(&dir.path().join(&out_dir).join("steps.csv"));
            assert_eq!(&header[..4], ["step", "epoch", "loss", "lr"], "{kind}");
            assert_eq!(rows.len(), 2, "{kind} on {backend}");
            assert!(
                rows.iter().all(|r| r[2].is_finite()),
                "{kind} on {backend}: {rows:?}"
            );
            let per_layer = dir.path().join(&out_dir).join("layers.csv");
            assert_eq!(
                per_layer.exists(),
                *kind == "sgd_tlr_pl",
                "{kind}: layers.csv"
            );
            if per_layer.exists() {
                let (header, rows) = read_csv(&per_layer);
                assert_eq!(
                    header,
                    ["step", "epoch", "layers.0.weight", "layers.0.bias"]
                );
                assert_eq!(rows.len(), 2);
                assert!(rows.iter().all(|r| r[2] > 0.0 && r[3] > 0.0));
            }
        }
    }
}

/// wgpu (on a GPU, or on Mesa's software Vulkan without one) trains the same steps as flex.
/// Skipped when no adapter exists, unless `STEPLAB_REQUIRE_WGPU` is set (CI sets it).
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_trains_the_same_steps_as_flex() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = regression_config(dir.path(), "kind = \"lossgrad\"\nlr = 0.01", "");
    let run = |backend: &str| {
        let out = train(
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--set",
                &format!("run.backend=\"{backend}\""),
                "--set",
                "run.precision=\"f32\"",
                "--set",
                "training.epochs=5",
                "--out",
                backend,
            ],
            dir.path(),
        );
        (out.status.code(), stderr(&out))
    };
    let (code, err) = run("wgpu");
    if code == Some(2) && err.contains("no usable graphics adapter") {
        assert!(
            std::env::var_os("STEPLAB_REQUIRE_WGPU").is_none(),
            "STEPLAB_REQUIRE_WGPU is set but wgpu has no adapter: {err}"
        );
        eprintln!("skipped: no wgpu adapter on this machine");
        return;
    }
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run("flex");
    assert_eq!(code, Some(0), "{err}");
    let (_, gpu) = read_csv(&dir.path().join("wgpu/steps.csv"));
    let (_, cpu) = read_csv(&dir.path().join("flex/steps.csv"));
    assert_eq!(gpu.len(), 5);
    for (g, c) in gpu.iter().zip(&cpu) {
        // Same loss and the same LossGrad step sizes, up to float32 rounding.
        assert!(
            (g[2] - c[2]).abs() <= 1e-4 * c[2].abs(),
            "loss {} vs {}",
            g[2],
            c[2]
        );
        assert!(
            (g[3] - c[3]).abs() <= 1e-12 * c[3].abs(),
            "lr {} vs {}",
            g[3],
            c[3]
        );
    }
}
