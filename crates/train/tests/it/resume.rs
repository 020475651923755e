//! Checkpoints and `train --resume` end to end: a run killed anywhere and resumed ends with the
//! same `steps.csv`, `layers.csv`, `epochs.csv` (but for `seconds`) and final state as the run
//! that was never stopped; every way a resume can go wrong is refused with its reason; and the
//! budgets and stopping rules (`max_seconds`, early stopping, a target) end runs where they say,
//! resumed or not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{
    epochs_without_seconds, send, spawn_until_rows, stderr, train, write_regression_csv,
};
use safetensors::SafeTensors;

/// A config of a small MLP on a 40-row regression CSV with a validation split: 8 batches of 4
/// per epoch, 4 epochs, checkpoints every 3 updates, `optimizer` as TOML lines.
fn config(dir: &Path, backend: &str, optimizer: &str) -> std::path::PathBuf {
    let csv = write_regression_csv(dir, 40);
    let text = format!(
        r#"
[run]
backend = "{backend}"
precision = "f32"
seed = 7
[data]
dataset = "csv"
path = "{}"
target = "y"
task = "regression"
batch_size = 4
validation_fraction = 0.2
[model]
kind = "mlp"
hidden = [6, 5]
[optimizer]
{optimizer}
[training]
epochs = 4
checkpoint_steps = 3
"#,
        csv.display()
    );
    let path = dir.join("exp.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `train` with `STEPLAB_FAULT` set.
fn train_with_fault(args: &[&str], cwd: &Path, fault: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .env("STEPLAB_FAULT", fault)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// Trains `cfg` into `dir/name` (with `extra` arguments) to its end; the run directory.
fn run_to_end(dir: &Path, cfg: &str, name: &str, extra: &[&str]) -> PathBuf {
    let run = dir.join(name);
    let mut args = vec!["--config", cfg, "--out", run.to_str().unwrap()];
    args.extend(extra);
    let out = train(&args, dir);
    assert!(out.status.success(), "{name}: {}", stderr(&out));
    run
}

/// Trains `cfg` into `dir/name` (with `extra` arguments) under `STEPLAB_FAULT=fault`, which
/// must kill it; the run directory.
fn run_crashing(dir: &Path, cfg: &str, name: &str, fault: &str, extra: &[&str]) -> PathBuf {
    let run = dir.join(name);
    let mut args = vec!["--config", cfg, "--out", run.to_str().unwrap()];
    args.extend(extra);
    let out = train_with_fault(&args, dir, fault);
    assert!(!out.status.success(), "{name}: {fault} kills the run");
    run
}

/// The Adam run of [`config`] in `dir/run`, crashed after update 5 (its checkpoint is at 3).
fn adam_run_crashed_after_5(dir: &Path) -> PathBuf {
    let cfg = config(dir, "ndarray", METHODS[1].1);
    run_crashing(dir, cfg.to_str().unwrap(), "run", "abort_after_step=5", &[])
}

/// `train --resume run` (with `extra` arguments), which must succeed; what it printed.
fn resume_ok(dir: &Path, run: &Path, extra: &[&str]) -> String {
    let mut args = vec!["--resume", run.to_str().unwrap()];
    args.extend(extra);
    let out = train(&args, dir);
    let err = stderr(&out);
    assert!(out.status.success(), "{}: {err}", run.display());
    err
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every tensor of the run's checkpoint, by name, as bytes.
fn checkpoint_tensors(run: &Path) -> BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect()
}

/// Asserts that two run directories hold the same run.
fn assert_same_run(full: &Path, resumed: &Path, what: &str) {
    assert_eq!(
        read(&full.join("steps.csv")),
        read(&resumed.join("steps.csv")),
        "{what}: steps.csv"
    );
    if full.join("layers.csv").exists() {
        assert_eq!(
            read(&full.join("layers.csv")),
            read(&resumed.join("layers.csv")),
            "{what}: layers.csv"
        );
    }
    assert_eq!(
        epochs_without_seconds(full),
        epochs_without_seconds(resumed),
        "{what}: epochs.csv"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |f: &str| {
            std::fs::metadata(resumed.join(f))
                .unwrap()
                .permissions()
                .mode()
        };
        assert_eq!(
            mode("checkpoint.safetensors"),
            mode("config.toml"),
            "{what}: the checkpoint's mode follows the umask as the other files do"
        );
    }
    let (a, b) = (checkpoint_tensors(full), checkpoint_tensors(resumed));
    assert!(a.keys().any(|k| k.starts_with("param/")), "{what}: {a:?}");
    assert_eq!(a, b, "{what}: final weights and optimizer state");
    assert_eq!(
        read(&resumed.join("status")),
        read(&full.join("status")),
        "{what}: status"
    );
}

/// Methods with state across steps: LossGrad's h, Adam's moments, TLR's windows (per layer,
/// with `layers.csv`), L4's running minimum, Gorti-Ravaut's held-out probe.
const METHODS: [(&str, &str); 6] = [
    ("lossgrad", "kind = \"lossgrad\"\nlr = 0.01"),
    ("adam", "kind = \"adam\"\nlr = 0.01"),
    ("sgd_tlr_pl", "kind = \"sgd_tlr_pl\"\nlr = 0.01"),
    ("sgd_tlr", "kind = \"sgd_tlr\"\nlr = 0.01"),
    ("l4mom", "kind = \"l4mom\""),
    (
        "gorti_ravaut",
        "kind = \"gorti_ravaut\"\nlr = 0.01\nprobe = \"validation\"",
    ),
];

/// Crash points of a 32-update run with checkpoints every 3 updates and every 8 (epoch ends):
/// mid-epoch (resumes from 6), right after a checkpoint (9 written, crash at 10), on the first
/// update of an epoch (resumes from the end-of-epoch checkpoint at 16), and during the last epoch.
const CRASHES: [u64; 4] = [7, 10, 17, 31];

#[test]
fn a_run_crashed_anywhere_and_resumed_equals_the_uninterrupted_run_on_ndarray() {
    for (name, optimizer) in METHODS {
        let dir = tempfile::tempdir().unwrap();
        let (dir, cfg) = (dir.path(), config(dir.path(), "ndarray", optimizer));
        let cfg = cfg.to_str().unwrap();
        let full = run_to_end(dir, cfg, "full", &[]);
        for crash in CRASHES {
            let fault = format!("abort_after_step={crash}");
            let run = run_crashing(dir, cfg, &format!("crash{crash}"), &fault, &[]);
            assert!(
                !run.join("status").exists(),
                "{name}: no status after a crash"
            );
            let rows = read(&run.join("steps.csv")).lines().count() - 1;
            assert_eq!(rows as u64, crash, "{name}: rows logged before the crash");
            let err = resume_ok(dir, &run, &[]);
            assert!(err.contains("resuming after step"), "{err}");
            assert_same_run(&full, &run, &format!("{name}, crash after step {crash}"));
        }
    }
}

#[test]
fn a_resumed_run_on_flex_equals_the_uninterrupted_run() {
    for (name, optimizer) in [METHODS[0], METHODS[1]] {
        let dir = tempfile::tempdir().unwrap();
        let (dir, cfg) = (dir.path(), config(dir.path(), "flex", optimizer));
        let cfg = cfg.to_str().unwrap();
        let full = run_to_end(dir, cfg, "full", &[]);
        let run = run_crashing(dir, cfg, "crash", "abort_after_step=13", &[]);
        resume_ok(dir, &run, &[]);
        assert_same_run(&full, &run, &format!("flex, {name}"));
    }
}

#[test]
fn a_crash_while_a_checkpoint_is_written_leaves_the_last_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let (dir, cfg) = (dir.path(), config(dir.path(), "ndarray", METHODS[1].1));
    let cfg = cfg.to_str().unwrap();
    let full = run_to_end(dir, cfg, "full", &[]);
    // Checkpoints at 3, 6 and 8 (the end of epoch 1) are written; the one at 9 dies half-way.
    let run = run_crashing(dir, cfg, "run", "abort_in_checkpoint=9", &[]);
    assert!(run.join("checkpoint.safetensors.tmp").exists());
    let err = resume_ok(dir, &run, &[]);
    assert!(err.contains("resuming after step 8"), "{err}");
    assert!(!run.join("checkpoint.safetensors.tmp").exists());
    assert_same_run(&full, &run, "crash in a checkpoint write");
}

#[test]
fn a_run_killed_by_sigkill_resumes_to_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let (dir, cfg) = (dir.path(), config(dir.path(), "ndarray", METHODS[0].1));
    let cfg = cfg.to_str().unwrap();
    // 8 000 updates, a checkpoint every 500: long enough to be killed part-way.
    let long = [
        "--set",
        "training.epochs=1000",
        "--set",
        "training.checkpoint_steps=500",
    ];
    let full = run_to_end(dir, cfg, "full", &long);
    let run = dir.join("killed");
    let mut args = vec!["--config", cfg, "--out", run.to_str().unwrap()];
    args.extend(long);
    let mut child = spawn_until_rows(&args, dir, &run.join("steps.csv"), 2000);
    send(&child, "KILL");
    let _ = child.wait();
    assert!(!run.join("status").exists(), "killed before it finished");
    resume_ok(dir, &run, &[]);
    assert_same_run(&full, &run, "SIGKILL");
}

#[test]
fn a_resume_with_another_config_lists_the_differences_and_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let (dir, cfg) = (dir.path(), config(dir.path(), "ndarray", METHODS[1].1));
    let cfg = cfg.to_str().unwrap();
    let run = run_crashing(dir, cfg, "run", "abort_after_step=5", &[]);
    let run_s = run.to_str().unwrap();
    let out = train(
        &[
            "--resume",
            run_s,
            "--set",
            "optimizer.lr=0.5",
            "--set",
            "training.epochs=6",
        ],
        dir,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("optimizer.lr (0.01 → 0.5)") && err.contains("training.epochs (4 → 6)"),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    // Nothing was touched by the refusal.
    assert_eq!(read(&run.join("steps.csv")).lines().count(), 6);
    resume_ok(dir, &run, &["--set", "training.epochs=6", "--force"]);
    assert_eq!(read(&run.join("steps.csv")).lines().count(), 1 + 6 * 8);
    assert!(read(&run.join("config.toml")).contains("epochs = 6"));
    // The same file as --config is no difference at all.
    let other = run_crashing(dir, cfg, "other", "abort_after_step=5", &[]);
    resume_ok(dir, &other, &["--config", cfg]);
}

#[test]
fn corrupt_and_truncated_checkpoints_are_named_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = adam_run_crashed_after_5(dir.path());
    let run_s = run.to_str().unwrap();
    let path = run.join("checkpoint.safetensors");
    let good = std::fs::read(&path).unwrap();
    let mut flipped = good.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x40;
    let truncated = good[..good.len() - 10].to_vec();
    for (what, bytes) in [("flipped", flipped), ("truncated", truncated)] {
        std::fs::write(&path, &bytes).unwrap();
        let out = train(&["--resume", run_s], dir.path());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains("checkpoint.safetensors: corrupt or truncated checkpoint"),
            "{what}: {err}"
        );
        if what == "flipped" {
            assert!(err.contains("fails its checksum"), "{err}");
        }
    }
    std::fs::write(&path, &good).unwrap();
    assert!(train(&["--resume", run_s], dir.path()).status.success());
}

#[test]
fn a_resume_whose_data_changed_is_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let run = adam_run_crashed_after_5(dir.path());
    let run_s = run.to_str().unwrap();
    let csv = dir.path().join("data.csv");
    let text = read(&csv);
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[5] = "0.5,0.5,0.5,0.5".into();
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();
    let out = train(&["--resume", run_s], dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("changed since the checkpoint: split train"),
        "{err}"
    );
    assert!(
        train(&["--resume", run_s, "--force"], dir.path())
            .status
            .success()
    );
}

#[test]
fn resumes_without_a_checkpoint_of_a_finished_run_or_of_a_held_directory_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "ndarray", METHODS[1].1);
    let cfg = cfg.to_str().unwrap();
    let out = train(&["--resume", "nowhere"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no such run directory"),
        "{}",
        stderr(&out)
    );
    // Killed before the first checkpoint.
    let early = run_crashing(dir.path(), cfg, "early", "abort_after_step=2", &[]);
    let out = train(&["--resume", early.to_str().unwrap()], dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no checkpoint") && err.contains("--overwrite"),
        "{err}"
    );
    // A completed run has nothing left to do.
    let done = run_to_end(dir.path(), cfg, "done", &[]);
    let before = read(&done.join("steps.csv"));
    let out = train(&["--resume", done.to_str().unwrap()], dir.path());
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("already finished"),
        "{}",
        stderr(&out)
    );
    assert_eq!(before, read(&done.join("steps.csv")));
    // A run another process is training cannot be resumed under it.
    let live = dir.path().join("live");
    let args = [
        "--config",
        cfg,
        "--out",
        live.to_str().unwrap(),
        "--set",
        "training.epochs=100000000",
    ];
    let mut child = spawn_until_rows(&args, dir.path(), &live.join("steps.csv"), 30);
    let out = train(&["--resume", live.to_str().unwrap()], dir.path());
    send(&child, "KILL");
    let _ = child.wait();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("in use by another train process"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_dry_run_checks_everything_prints_the_sizes_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "ndarray", METHODS[1].1);
    let cfg = cfg.to_str().unwrap();
    let out = train(&["--config", cfg, "--dry-run"], dir.path());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", stderr(&out));
    // 3·6+6 + 6·5+5 + 5·1+1 = 65 trained parameters.
    assert!(text.contains("mlp with 65 trained parameters"), "{text}");
    assert!(
        text.contains("32 training, 8 validation, 0 test samples"),
        "{text}"
    );
    assert!(
        text.contains("steps: 8 per epoch (batch 4), 32 in all"),
        "{text}"
    );
    // Adam's two moments beside the weights: 3 × 65 f32 values.
    assert!(text.contains("checkpoint: about 0.8 KiB"), "{text}");
    assert!(
        text.contains("[optimizer]") && text.contains("kind = \"adam\""),
        "{text}"
    );
    assert!(!dir.path().join("results").exists(), "nothing written");
    let out = train(
        &["--config", cfg, "--dry-run", "--set", "model.hidden=[0]"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn a_full_disk_during_a_checkpoint_fails_the_run_and_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    // 3·400+400 + 400·1+1 weights with Adam's moments: about 24 KB of checkpoint, more than the
    // 16 KiB file-size limit, while the CSV rows of the first updates fit under it.
    let cfg = config(dir.path(), "ndarray", METHODS[1].1);
    let script = "ulimit -f 32 && exec \"$0\" \"$@\"";
    let out = Command::new("sh")
        .args(["-c", script, env!("CARGO_BIN_EXE_train")])
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            "model.hidden=[400]",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let run = dir.path().join("results/exp");
    let status = read(&run.join("status"));
    assert!(
        status.starts_with("failed: cannot write checkpoint"),
        "{status}"
    );
    assert!(!run.join("checkpoint.safetensors").exists());
    assert!(!run.join("checkpoint.safetensors.tmp").exists());
    assert_eq!(read(&run.join("steps.csv")).lines().count(), 1 + 3);
}

fn status_of(run: &Path) -> String {
    read(&run.join("status")).trim().to_string()
}

#[test]
fn early_stopping_ends_the_run_after_patience_epochs_and_survives_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    // A step size too small to move the weights: the validation loss never improves.
    let cfg = config(dir.path(), "ndarray", "kind = \"sgd\"\nlr = 1e-30");
    let cfg = cfg.to_str().unwrap();
    let rule = [
        "--set",
        "training.epochs=10",
        "--set",
        "training.early_stopping={metric = \"validation_loss\", patience = 2, min_delta = 1e-6}",
    ];
    let full = dir.path().join("full");
    let mut args = vec!["--config", cfg, "--out", full.to_str().unwrap()];
    args.extend(rule);
    let out = train(&args, dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let status = status_of(&full);
    assert!(
        status.starts_with(
            "stopped at step 24: early stopping: validation_loss did not improve \
             for 2 epochs (best "
        ) && status.ends_with("at epoch 1)"),
        "{status}"
    );
    assert_eq!(read(&full.join("epochs.csv")).lines().count(), 1 + 3);
    // Crashed in epoch 3 (after epoch 2's checkpoint) and resumed: it stops at the same place.
    let run = dir.path().join("run");
    let mut args = vec!["--config", cfg, "--out", run.to_str().unwrap()];
    args.extend(rule);
    assert!(
        !train_with_fault(&args, dir.path(), "abort_after_step=19")
            .status
            .success()
    );
    let out = train(&["--resume", run.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(status_of(&run), status);
    assert_eq!(read(&full.join("steps.csv")), read(&run.join("steps.csv")));
    // A stopped run is finished: resuming it unchanged does nothing.
    let out = train(&["--resume", run.to_str().unwrap()], dir.path());
    assert!(
        stderr(&out).contains("already finished"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_target_stops_the_run_recording_when_it_was_reached_and_a_time_budget_stops_it_too() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "ndarray", METHODS[1].1);
    let cfg = cfg.to_str().unwrap();
    let target = "training.target={metric = \"train_loss\", value = 100.0}";
    let run = run_to_end(dir.path(), cfg, "target", &["--set", target]);
    let status = status_of(&run);
    assert!(
        status.starts_with("stopped at step 8: target train_loss ≤ 100.0 reached: ")
            && status.contains(" at step 8, epoch 1, "),
        "{status}"
    );
    let run = run_to_end(
        dir.path(),
        cfg,
        "budget",
        &["--set", "training.max_seconds=1e-9"],
    );
    assert_eq!(
        status_of(&run),
        "stopped at step 1: time budget of 1e-9 s used up (training.max_seconds)"
    );
    // The partial epoch is evaluated and logged.
    assert_eq!(read(&run.join("epochs.csv")).lines().count(), 2);
    assert_eq!(read(&run.join("steps.csv")).lines().count(), 2);
}

#[test]
fn stopping_rules_on_metrics_the_run_does_not_have_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "ndarray", METHODS[1].1);
    let cfg = cfg.to_str().unwrap();
    for (set, key, says) in [
        (
            "training.target={metric = \"test_loss\", value = 1.0}",
            "training.target.metric",
            "no test set",
        ),
        (
            "training.early_stopping={metric = \"validation_accuracy\", patience = 3}",
            "training.early_stopping.metric",
            "classification only",
        ),
        (
            "training.early_stopping={metric = \"train_loss\", patience = 0}",
            "training.early_stopping.patience",
            "at least 1",
        ),
        (
            "training.max_seconds=-5",
            "training.max_seconds",
            "positive",
        ),
    ] {
        let out = train(&["--config", cfg, "--set", set, "--dry-run"], dir.path());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{set}: {err}");
        assert!(err.contains(key) && err.contains(says), "{set}: {err}");
    }
}

#[test]
fn every_optimizer_kind_resumes_through_its_checkpoint_file_bit_for_bit() {
    // Each kind with its defaults, crashed after update 10 (resumed from the checkpoint at 9,
    // mid-epoch 2): the whole path through the file, not just the optimizer's own state.
    for kind in steplab_optim::OptimizerConfig::KINDS {
        let dir = tempfile::tempdir().unwrap();
        let (dir, cfg) = (
            dir.path(),
            config(dir.path(), "ndarray", &format!("kind = \"{kind}\"")),
        );
        let cfg = cfg.to_str().unwrap();
        let full = run_to_end(dir, cfg, "full", &[]);
        let run = run_crashing(dir, cfg, "crash", "abort_after_step=10", &[]);
        resume_ok(dir, &run, &[]);
        assert_same_run(&full, &run, kind);
    }
}
