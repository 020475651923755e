//! End to end on CIFAR files in the real binary format, written by the test: the extracted
//! `cifar-10-batches-bin/` and `cifar-100-binary/` layouts, image batches, augmentation, labels.

use std::path::Path;

use crate::common::{read_csv, stderr, train};

/// Writes `records` CIFAR records (label bytes, then 3072 pixel bytes: R, G, B planes) whose
/// pixels follow a fixed pattern and whose labels cycle through `classes`.
fn records(count: usize, label_bytes: usize, classes: &[u8], salt: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * (label_bytes + 3072));
    for i in 0..count {
        for (k, c) in classes.iter().enumerate().take(label_bytes) {
            out.push((i as u8).wrapping_mul(k as u8 + 1) % c);
        }
        out.extend((0..3072).map(|p| ((i * 7 + p * 13 + salt) % 251) as u8));
    }
    out
}

/// A full-size extracted CIFAR-10 under `root/cifar10/`.
fn write_cifar10(root: &Path) {
    let dir = root.join("cifar10/cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    for b in 1..=5 {
        std::fs::write(
            dir.join(format!("data_batch_{b}.bin")),
            records(10_000, 1, &[10], b),
        )
        .unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), records(10_000, 1, &[10], 0)).unwrap();
}

/// A full-size extracted CIFAR-100 under `root/cifar100/` (coarse label byte, fine label byte).
fn write_cifar100(root: &Path) {
    let dir = root.join("cifar100/cifar-100-binary");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("train.bin"), records(50_000, 2, &[20, 100], 1)).unwrap();
    std::fs::write(dir.join("test.bin"), records(10_000, 2, &[20, 100], 0)).unwrap();
}

fn config(dir: &Path, dataset: &str, extra_data: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[run]
backend = "flex"
[data]
dataset = "{dataset}"
root = "data"
download = false
batch_size = 16
eval_batch_size = 2000
{extra_data}
[model]
kind = "mlp"
hidden = [16]
[optimizer]
kind = "lossgrad"
[training]
max_steps = 3
"#
    );
    let path = dir.join(format!("{dataset}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn cifar10_trains_from_the_extracted_binary_batches_with_augmentation() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(&dir.path().join("data"));
    let cfg = config(dir.path(), "cifar10", "augment = \"crop_flip\"");
    let out = train(
        &["--config", cfg.to_str().unwrap(), "--out", "run"],
        dir.path(),
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("50000 samples") && err.contains("49338 parameters"),
        "{err}"
    );
    let (_, rows) = read_csv(&dir.path().join("run/steps.csv"));
    assert_eq!(rows.len(), 3);
    let (header, epochs) = read_csv(&dir.path().join("run/epochs.csv"));
    let acc = header.iter().position(|h| h == "test_accuracy").unwrap();
    assert!(
        epochs[0][acc].is_finite(),
        "evaluated on the 10,000 test images"
    );
    // Augmentation is keyed by (seed, epoch, sample): the same seed gives the same run.
    let again = train(
        &["--config", cfg.to_str().unwrap(), "--out", "again"],
        dir.path(),
    );
    assert!(again.status.success(), "{}", stderr(&again));
    let read = |d: &str| std::fs::read(dir.path().join(d).join("steps.csv")).unwrap();
    assert_eq!(read("run"), read("again"));
    let plain = train(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            "plain",
            "--set",
            "data.augment=none",
        ],
        dir.path(),
    );
    assert!(plain.status.success(), "{}", stderr(&plain));
    assert_ne!(
        read("run"),
        read("plain"),
        "augmentation changes the batches"
    );
}

#[test]
fn cifar100_gives_fine_or_coarse_classes() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar100(&dir.path().join("data"));
    for (label, params) in [
        ("fine", 16 * 3072 + 16 + 17 * 100),
        ("coarse", 16 * 3072 + 16 + 17 * 20),
    ] {
        let cfg = config(dir.path(), "cifar100", &format!("label = \"{label}\""));
        let out = train(
            &["--config", cfg.to_str().unwrap(), "--out", label],
            dir.path(),
        );
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains(&format!("{params} parameters")),
            "{label}: {err}"
        );
    }
    let cfg = config(dir.path(), "cifar10", "label = \"coarse\"");
    let out = train(&["--config", cfg.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("data.label"), "{}", stderr(&out));
}

#[test]
fn missing_cifar_says_what_to_fetch_and_where_to_put_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "cifar10", "");
    let out = train(&["--config", cfg.to_str().unwrap()], dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz")
            && err.contains("data/cifar10"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn lossgrad_with_c_1_is_sgd_plus_probes_that_change_nothing_on_a_batch_norm_model_with_dropout() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(&dir.path().join("data"));
    let text = r#"
[run]
backend = "flex"
[data]
dataset = "cifar10"
root = "data"
download = false
batch_size = 8
eval_batch_size = 1000
augment = "crop_flip"
[model]
kind = "wrn"
depth = 10
width = 1
dropout = 0.3
[optimizer]
kind = "sgd"
lr = 0.05
[training]
max_steps = 4
l2 = 1e-3
"#;
    let cfg = dir.path().join("wrn.toml");
    std::fs::write(&cfg, text).unwrap();
    let run = |out: &str, extra: &[&str]| {
        let mut args = vec!["--config", cfg.to_str().unwrap(), "--out", out];
        args.extend_from_slice(extra);
        let result = train(&args, dir.path());
        assert!(result.status.success(), "{out}: {}", stderr(&result));
    };
    run("sgd", &[]);
    run(
        "lossgrad",
        &[
            "--set",
            "optimizer.kind=lossgrad",
            "--set",
            "optimizer.c=1.0",
        ],
    );
    let (_, sgd) = read_csv(&dir.path().join("sgd/steps.csv"));
    let (header, lossgrad) = read_csv(&dir.path().join("lossgrad/steps.csv"));
    assert_eq!(sgd.len(), 4);
    for (s, l) in sgd.iter().zip(&lossgrad) {
        // The same batch losses bit for bit: LossGrad's probes (same batch statistics, same
        // dropout masks) left the running statistics and everything else as SGD's run has them.
        assert_eq!(s[2].to_bits(), l[2].to_bits(), "loss");
        assert_eq!(s[3], l[3], "lr");
    }
    let probe = header.iter().position(|h| h == "probe_loss").unwrap();
    assert!(lossgrad.iter().all(|r| r[probe].is_finite()));
    // The end-of-epoch test loss uses the running statistics: equal too.
    let (header, sgd) = read_csv(&dir.path().join("sgd/epochs.csv"));
    let (_, lossgrad) = read_csv(&dir.path().join("lossgrad/epochs.csv"));
    let test = header.iter().position(|h| h == "test_loss").unwrap();
    assert!(sgd[0][test].is_finite());
    assert_eq!(sgd[0][test].to_bits(), lossgrad[0][test].to_bits());
}
