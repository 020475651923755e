//! End-to-end checks of what happens to a run when things go wrong around it: two processes on
//! one run directory, a reused directory, signals, a full disk, impossible model sizes, data
//! that disagrees with itself, step sizes that stop being numbers (issue 17).

use std::path::Path;
use std::process::Command;

use crate::common::{read_csv, regression_config, send, spawn_until_rows, stderr, train};

fn status(run: &Path) -> String {
    std::fs::read_to_string(run.join("status"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A run long enough to be stopped from outside: batch 1 on 40 rows, effectively endless.
const ENDLESS: [&str; 4] = [
    "--set",
    "training.epochs=100000000",
    "--set",
    "data.batch_size=1",
];

#[test]
fn a_second_run_on_a_held_directory_is_refused_and_the_lock_dies_with_its_process() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = regression_config(dir.path(), "kind = \"lossgrad\"", "");
    let cfg = cfg.to_str().unwrap();
    let run = dir.path().join("shared");
    let mut args = vec!["--config", cfg, "--out", "shared"];
    args.extend(ENDLESS);
    let mut first = spawn_until_rows(&args, dir.path(), &run.join("steps.csv"), 20);
    let second = train(
        &[
            "--config",
            cfg,
            "--out",
            "shared",
            "--set",
            "optimizer.kind=sgd",
            "--overwrite",
        ],
        dir.path(),
    );
    assert_eq!(second.status.code(), Some(2), "{}", stderr(&second));
    assert!(
        stderr(&second).contains(&format!(
            "in use by another train process (pid {})",
            first.id()
        )),
        "{}",
        stderr(&second)
    );
    send(&first, "KILL");
    first.wait().unwrap();
    // Every row is the first run's: LossGrad's header, consecutive steps.
    let (header, rows) = read_csv(&run.join("steps.csv"));
    assert_eq!(header[4], "ratio");
    assert!(rows.iter().enumerate().all(|(i, r)| r[0] == (i + 1) as f64));
    // The kernel released the lock with the process: the directory can be taken over now.
    let third = train(
        &["--config", cfg, "--out", "shared", "--overwrite"],
        dir.path(),
    );
    assert!(third.status.success(), "{}", stderr(&third));
    assert_eq!(status(&run), "completed");
}

#[test]
fn an_earlier_run_is_kept_unless_overwrite_and_overwrite_removes_its_stale_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = regression_config(dir.path(), "kind = \"sgd_tlr_pl\"\nlr = 0.01", "");
    let cfg = cfg.to_str().unwrap();
    let run = dir.path().join("r");
    let first = train(&["--config", cfg, "--out", "r"], dir.path());
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(run.join("layers.csv").exists());
    let before = std::fs::read(run.join("steps.csv")).unwrap();
    let lossgrad = [
        "--config",
        cfg,
        "--out",
        "r",
        "--set",
        "optimizer.kind=lossgrad",
        "--unset",
        "optimizer.lr",
    ];
    let again = train(&lossgrad, dir.path());
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(stderr(&again).contains("--overwrite"), "{}", stderr(&again));
    assert!(stderr(&again).contains("completed"), "{}", stderr(&again));
    // A rerun that fails at start (here: a bad key) leaves the earlier result as it was.
    let bad = train(
        &[
            "--config",
            cfg,
            "--out",
            "r",
            "--overwrite",
            "--set",
            "optimizer.lr=-1",
        ],
        dir.path(),
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert_eq!(std::fs::read(run.join("steps.csv")).unwrap(), before);
    assert_eq!(status(&run), "completed");
    let mut replace = lossgrad.to_vec();
    replace.push("--overwrite");
    let replaced = train(&replace, dir.path());
    assert!(replaced.status.success(), "{}", stderr(&replaced));
    assert!(!run.join("layers.csv").exists(), "stale layers.csv kept");
    assert_eq!(read_csv(&run.join("steps.csv")).0[4], "ratio");
}

#[test]
fn sigterm_and_sighup_are_recorded_as_interruptions() {
    for (signal, code) in [("TERM", 143), ("HUP", 129)] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = regression_config(dir.path(), "kind = \"lossgrad\"", "");
        let mut args = vec!["--config", cfg.to_str().unwrap()];
        args.extend(ENDLESS);
        let run = dir.path().join("results/exp");
        let mut child = spawn_until_rows(&args, dir.path(), &run.join("steps.csv"), 30);
        send(&child, signal);
        assert_eq!(child.wait().unwrap().code(), Some(code), "SIG{signal}");
        let (_, rows) = read_csv(&run.join("steps.csv"));
        assert_eq!(
            status(&run),
            format!("interrupted after step {}", rows.len())
        );
    }
}

#[test]
fn a_full_disk_stops_the_run_with_whole_rows_and_a_failed_status() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = regression_config(dir.path(), "kind = \"lossgrad\"", "");
    // A file-size limit of 8 KiB (16 blocks of 512 bytes) stands in for a full disk: writes past
    // it fail with EFBIG, part-way through a row.
    let script = "ulimit -f 16 && exec \"$0\" \"$@\"";
    let out = Command::new("sh")
        .args(["-c", script, env!("CARGO_BIN_EXE_train")])
        .args(["--config", cfg.to_str().unwrap()])
        .args(ENDLESS)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("steps.csv"), "{err}");
    let run = dir.path().join("results/exp");
    let text = std::fs::read_to_string(run.join("steps.csv")).unwrap();
    assert!(
        text.len() > 4000,
        "the limit was reached: {} bytes",
        text.len()
    );
    assert!(text.ends_with('\n'), "a torn last row was left");
    let (header, rows) = read_csv(&run.join("steps.csv"));
    assert!(rows.iter().all(|r| r.len() == header.len()));
    assert!(rows.iter().enumerate().all(|(i, r)| r[0] == (i + 1) as f64));
    let status = status(&run);
    assert!(
        status.starts_with("failed: cannot write") && status.contains("steps.csv"),
        "{status}"
    );
}

#[test]
fn a_step_size_that_stops_being_a_number_is_divergence() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cfg = repo.join("configs/l4_s31_badreg_l4mom.toml");
    let out = train(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            "run",
            "--set",
            "optimizer.lr=1e6",
            "--set",
            "training.epochs=50",
            "--set",
            "run.backend=\"ndarray\"",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let run = dir.path().join("run");
    let (_, rows) = read_csv(&run.join("steps.csv"));
    let last = rows.last().unwrap();
    assert!(
        rows.len() < 50,
        "the run went on after its step size was lost"
    );
    assert!(
        !last[3].is_finite(),
        "the last row is the one whose lr is not a number"
    );
    assert!(rows[..rows.len() - 1].iter().all(|r| r[3].is_finite()));
    assert_eq!(
        status(&run),
        format!("diverged at step {}: non-finite step size", rows.len())
    );
}

#[test]
fn model_sizes_that_cannot_exist_or_fit_are_refused_naming_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = regression_config(dir.path(), "kind = \"sgd\"", "");
    let cfg = cfg.to_str().unwrap();
    let huge = train(
        &[
            "--config",
            cfg,
            "--set",
            "model.kind=mlp",
            "--set",
            "model.hidden=[9223372036854775807]",
            "--unset",
            "model.init",
        ],
        dir.path(),
    );
    let err = stderr(&huge);
    assert_eq!(huge.status.code(), Some(2), "{err}");
    assert!(err.contains("more than 2^64 parameters"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // A class label of four billion asks for a 4-billion-way output layer.
    let csv = dir.path().join("classes.csv");
    std::fs::write(&csv, "a,b,y\n0.5,1.0,0\n0.25,2.0,4000000000\n").unwrap();
    let out = train(
        &[
            "--config",
            cfg,
            "--set",
            &format!("data.path={:?}", csv.to_str().unwrap()),
            "--set",
            "data.task=classification",
        ],
        dir.path(),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("12000000003 parameters") && err.contains("GiB"),
        "{err}"
    );
    assert!(!dir.path().join("results/exp").exists(), "nothing written");
}

/// A classification CSV with the given labels (two features from the row index).
fn write_classes(path: &Path, labels: &[u32]) {
    let mut text = String::from("a,b,y\n");
    for (i, l) in labels.iter().enumerate() {
        text += &format!("{},{},{l}\n", i as f64 * 0.1, 1.0 - i as f64 * 0.05);
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn classes_come_from_the_training_and_test_files_together() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = regression_config(dir.path(), "kind = \"sgd\"\nlr = 1e-300", "max_steps = 1");
    let cfg = cfg.to_str().unwrap();
    let (train_csv, test_csv) = (dir.path().join("train.csv"), dir.path().join("test.csv"));
    let run = |train_labels: &[u32], test_labels: &[u32], extra: &[&str]| {
        write_classes(&train_csv, train_labels);
        write_classes(&test_csv, test_labels);
        let mut args = vec![
            "--config".to_string(),
            cfg.to_string(),
            "--overwrite".into(),
            "--set".into(),
            format!("data.path={:?}", train_csv.to_str().unwrap()),
            "--set".into(),
            format!("data.test_path={:?}", test_csv.to_str().unwrap()),
            "--set".into(),
            "data.task=classification".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        train(&args, dir.path())
    };
    // Zero weights (and a step of 1e-300) give equal logits: every loss is ln K exactly, so the
    // test loss shows the K the run used.
    for (train_labels, test_labels) in [
        (&[0, 1, 0, 1][..], &[0, 1, 2][..]),
        (&[0, 1, 2, 1][..], &[0, 1][..]),
    ] {
        let out = run(train_labels, test_labels, &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        let (_, epochs) = read_csv(&dir.path().join("results/exp/epochs.csv"));
        let test_loss = epochs[0][5];
        assert!(
            (test_loss - 3f64.ln()).abs() < 1e-12,
            "{train_labels:?} / {test_labels:?}: test loss {test_loss}, ln 3 expected"
        );
    }
    // With `data.classes`, a label outside it is an error naming the file and the line.
    let out = run(&[0, 1, 0, 1], &[0, 1, 0, 2], &["--set", "data.classes=2"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("test.csv") && err.contains("line 5"), "{err}");
}

#[test]
fn bench_input_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["bench", "--steps", "0"][..],
        &["bench", "--optimizers", "nope"][..],
        &["bench", "--backends", "cuda"][..],
    ] {
        let out = train(args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn a_missing_file_says_what_the_system_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = regression_config(dir.path(), "kind = \"sgd\"", "");
    let out = train(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            "data.path=\"nowhere.csv\"",
        ],
        dir.path(),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("nowhere.csv"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";

#[test]
fn lossgrad_steps_below_f32_resolution_are_counted_and_warned_once() {
    if !Path::new(FASHION_MNIST).exists() {
        eprintln!("skipped: dataset-fashion-mnist is not installed (.ci/run installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cfg = repo.join("configs/lossgrad_t3_fmnist_autoencoder_lossgrad.toml");
    let run = |rule: &str, out: &str| {
        train(
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--out",
                out,
                "--set",
                "optimizer.lr=1e-6",
                "--set",
                &format!("optimizer.unmeasured={rule}"),
                "--set",
                "training.max_steps=30",
                "--set",
                "training.evaluate=false",
                "--set",
                "data.download=false",
                "--set",
                "run.backend=\"ndarray\"",
            ],
            dir.path(),
        )
    };
    let paper = run("paper", "paper");
    let err = stderr(&paper);
    assert!(paper.status.success(), "{err}");
    assert_eq!(err.matches("warning: lossgrad").count(), 1, "{err}");
    assert!(err.contains("run.precision = \"f64\""), "{err}");
    let (header, rows) = read_csv(&dir.path().join("paper/steps.csv"));
    let col = header.iter().position(|h| h == "unmeasured").unwrap();
    // Most probes return the batch loss bit for bit; the others differ from it by one rounding
    // step of an f32 loss (their ratio is noise either way).
    let unmeasured = rows.iter().filter(|r| r[col] == 1.0).count();
    assert!(unmeasured >= 20, "{unmeasured} of 30 steps unmeasured");
    // The paper's rule reads r = 1 there and shrinks h by c = 1.05 each time; the
    // exact-arithmetic option reads r = 0 and grows it.
    assert!(rows[29][3] < rows[0][3] * 1.05f64.powi(-10), "h shrank");
    let exact = run("exact", "exact");
    assert!(exact.status.success(), "{}", stderr(&exact));
    let (_, rows) = read_csv(&dir.path().join("exact/steps.csv"));
    assert!(rows[29][3] > rows[0][3] * 1.05f64.powi(20), "h grew");
}

#[test]
fn a_signal_while_the_data_loads_stops_before_anything_is_written() {
    if !Path::new(FASHION_MNIST).exists() {
        eprintln!("skipped: dataset-fashion-mnist is not installed (.ci/run installs it)");
        return;
    }
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cfg = repo.join("configs/lossgrad_t3_fmnist_autoencoder_lossgrad.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--config", cfg.to_str().unwrap(), "--out", "run"])
        .args(["--set", "data.download=false"])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("loading fashion_mnist"), "{first}");
    // The 60,000 training images take a good part of a second to decompress and check.
    send(&child, "INT");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(child.wait().unwrap().code(), Some(130), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("interrupted")), "{rest:?}");
    assert!(!dir.path().join("run/steps.csv").exists(), "{rest:?}");
}

#[test]
fn an_unwritable_results_directory_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = regression_config(dir.path(), "kind = \"lossgrad\"", "");
    // A file where the results directory should be: nothing can be created under it (a
    // permission bit would not stop root, which CI runs as).
    std::fs::write(dir.path().join("blocked"), "").unwrap();
    let out = train(
        &["--config", cfg.to_str().unwrap(), "--out", "blocked/run"],
        dir.path(),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot create run directory blocked/run"),
        "{err}"
    );
}
