//! End to end on CelebA files in the real formats, written by the test: `img_align_celeba/` of
//! 178×218 JPEGs and `list_eval_partition.txt`; every LossGrad Table 6 config trains one epoch
//! of the full 39,742,531-parameter WAE-MMD on them and draws its picture grid.

use std::path::{Path, PathBuf};

use crate::common::{read_csv, stderr, train};

/// Writes `root/celeba/img_align_celeba/00000k.jpg` (smooth colour gradients, one per image)
/// and the partition file: `train` training, 2 validation and 2 test images.
fn write_celeba(root: &Path, train_images: usize) {
    let folder = root.join("celeba/img_align_celeba");
    std::fs::create_dir_all(&folder).unwrap();
    let total = train_images + 4;
    let mut partition = String::new();
    for k in 1..=total {
        let name = format!("{k:06}.jpg");
        let image = image::RgbImage::from_fn(178, 218, |x, y| {
            let k = k as u32;
            image::Rgb([
                ((x * 255) / 177) as u8,
                ((y * 255) / 217) as u8,
                ((k * 40 + x / 3) % 256) as u8,
            ])
        });
        image.save(folder.join(&name)).unwrap();
        let split = if k <= train_images {
            0
        } else if k <= train_images + 2 {
            1
        } else {
            2
        };
        partition += &format!("{name} {split}\n");
    }
    std::fs::write(root.join("celeba/list_eval_partition.txt"), partition).unwrap();
}

fn table6_configs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut all: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("lossgrad_t6_celeba_"))
        })
        .collect();
    all.sort();
    all
}

fn column(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
}

#[test]
fn every_table6_config_trains_an_epoch_of_the_full_wae_and_draws_its_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("datasets");
    write_celeba(&root, 6);
    let configs = table6_configs();
    assert_eq!(configs.len(), 5, "Table 6 has five rows: {configs:?}");
    for config in configs {
        let name = config.file_stem().unwrap().to_string_lossy().into_owned();
        let out = tmp.path().join(&name);
        let run = train(
            &[
                "--config",
                config.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--set",
                &format!("data.root=\"{}\"", root.display()),
                "--set",
                "training.epochs=1",
            ],
            tmp.path(),
        );
        assert!(run.status.success(), "{name}: {}", stderr(&run));
        let log = stderr(&run);
        assert!(log.contains("39742531 parameters"), "{name}: {log}");
        assert_eq!(
            std::fs::read_to_string(out.join("status")).unwrap().trim(),
            "completed",
            "{name}"
        );
        // One update of the six training images (batch 64); its loss is the whole objective.
        let (header, rows) = read_csv(&out.join("steps.csv"));
        assert_eq!(rows.len(), 1, "{name}");
        let (loss, rec, mmd) = (
            column(&header, "loss"),
            column(&header, "reconstruction"),
            column(&header, "mmd"),
        );
        let row = &rows[0];
        assert!(row[rec] > 0.0 && row[mmd].is_finite(), "{name}: {row:?}");
        let whole = row[rec] + 100.0 * row[mmd];
        assert!(
            (row[loss] - whole).abs() <= 1e-5 * row[loss].abs(),
            "{name}: loss {} vs reconstruction {} + 100 · mmd {}",
            row[loss],
            row[rec],
            row[mmd]
        );
        let (header, rows) = read_csv(&out.join("epochs.csv"));
        assert_eq!(rows.len(), 1, "{name}");
        for split in ["train", "validation", "test"] {
            for part in ["reconstruction", "mmd"] {
                let v = rows[0][column(&header, &format!("{split}_{part}"))];
                assert!(v.is_finite(), "{name}: {split}_{part} = {v}");
            }
        }
        let (test_loss, test_rec, test_mmd) = (
            rows[0][column(&header, "test_loss")],
            rows[0][column(&header, "test_reconstruction")],
            rows[0][column(&header, "test_mmd")],
        );
        assert!(
            (test_loss - (test_rec + 100.0 * test_mmd)).abs() <= 1e-5 * test_loss.abs(),
            "{name}: test loss {test_loss} vs {test_rec} + 100 · {test_mmd}"
        );
        // The grid: 8 columns of 64×64 with 2-pixel gaps; rows of test inputs and their
        // reconstructions (only 2 test images: the rest of those rows stay empty) and two
        // rows of prior samples.
        let file = std::fs::File::open(out.join("pictures/epoch-001.png")).unwrap();
        let mut reader = png::Decoder::new(std::io::BufReader::new(file))
            .read_info()
            .unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        assert_eq!((info.width, info.height), (8 * 64 + 9 * 2, 6 * 64 + 7 * 2));
        let width = info.width as usize;
        let at = |x: usize, y: usize| &pixels[(y * width + x) * 3..][..3];
        // The first test image (the 9th) at its top-left pixel, after the WAE crop at
        // (19, 39): red 19·255/177 ≈ 27, green 39·255/217 ≈ 46, blue (9·40 + 19/3) mod 256 =
        // 110, give or take JPEG's and the resize's rounding.
        let first = at(2, 2);
        for (got, want) in first.iter().zip([27, 46, 110]) {
            assert!(got.abs_diff(want) <= 8, "{name}: {first:?}");
        }
        // An empty cell of the input row is background.
        assert_eq!(at(2 + 3 * 66 + 10, 10), [230, 230, 230], "{name}");
        // Prior samples fill rows 5 and 6: not all background.
        let sample_row = 2 + 4 * 66 + 32;
        assert!(
            (0..width).any(|x| at(x, sample_row) != [230, 230, 230]),
            "{name}: no samples drawn"
        );
    }
}

#[test]
fn celeba_keys_and_the_wae_scaling_are_checked_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("datasets");
    write_celeba(&root, 2);
    let config = tmp.path().join("wae.toml");
    std::fs::write(
        &config,
        format!(
            "[run]\nbackend = \"ndarray\"\n[data]\ndataset = \"celeba\"\nroot = \"{}\"\n\
             batch_size = 2\n[model]\nkind = \"wae_mmd\"\nwidth = 2\nz_dim = 2\n\
             [optimizer]\nkind = \"sgd\"\nlr = 1e-4\n",
            root.display()
        ),
    )
    .unwrap();
    let run_with = |set: &[&str]| {
        let mut args = vec!["--config", config.to_str().unwrap(), "--dry-run"];
        for s in set {
            args.extend(["--set", s]);
        }
        train(&args, tmp.path())
    };
    let ok = run_with(&[]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let text = String::from_utf8_lossy(&ok.stdout).into_owned() + &stderr(&ok);
    assert!(
        text.contains("2 training, 2 validation, 2 test samples"),
        "{text}"
    );
    for (set, key) in [
        ("data.normalize=[0.5, 0.5]", "data.normalize"),
        ("data.validation_fraction=0.5", "data.validation_fraction"),
        ("data.preprocess=\"crop\"", "data.preprocess"),
    ] {
        let out = run_with(&[set]);
        assert_eq!(out.status.code(), Some(2), "{set}: {}", stderr(&out));
        assert!(stderr(&out).contains(key), "{set}: {}", stderr(&out));
    }
    // CelebA keys on another dataset are refused.
    let other = tmp.path().join("mnist.toml");
    std::fs::write(
        &other,
        "[data]\ndataset = \"csv\"\npath = \"x.csv\"\ntarget = \"y\"\ntask = \"regression\"\n\
         preprocess = \"wae\"\n[model]\nkind = \"linear\"\n[optimizer]\nkind = \"sgd\"\n",
    )
    .unwrap();
    crate::common::write_regression_csv(tmp.path(), 10);
    std::fs::rename(tmp.path().join("data.csv"), tmp.path().join("x.csv")).unwrap();
    let out = train(
        &["--config", other.to_str().unwrap(), "--dry-run"],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("data.preprocess"), "{}", stderr(&out));
}

#[test]
fn a_wae_run_killed_mid_epoch_resumes_to_the_uninterrupted_runs_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("datasets");
    write_celeba(&root, 10);
    let config = tmp.path().join("wae.toml");
    std::fs::write(
        &config,
        format!(
            "[run]\nbackend = \"ndarray\"\n[data]\ndataset = \"celeba\"\nroot = \"{}\"\n\
             batch_size = 3\n[model]\nkind = \"wae_mmd\"\nwidth = 2\nz_dim = 3\n\
             [optimizer]\nkind = \"lossgrad\"\nlr = 1e-4\n\
             [training]\nepochs = 2\ncheckpoint_steps = 2\n",
            root.display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let full = tmp.path().join("full");
    let out = train(
        &["--config", cfg, "--out", full.to_str().unwrap()],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Killed right after update 3 (of 4 per epoch; checkpoint at 2): the epoch's partial
    // totals, reconstruction and MMD among them, come back from the checkpoint.
    let crashed = tmp.path().join("crashed");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--config", cfg, "--out", crashed.to_str().unwrap()])
        .env("STEPLAB_FAULT", "abort_after_step=3")
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the fault kills the run");
    let out = train(&["--resume", crashed.to_str().unwrap()], tmp.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let read = |run: &Path, file: &str| std::fs::read_to_string(run.join(file)).unwrap();
    assert_eq!(read(&full, "steps.csv"), read(&crashed, "steps.csv"));
    assert_eq!(
        crate::common::epochs_without_seconds(&full),
        crate::common::epochs_without_seconds(&crashed)
    );
    assert!(read(&full, "epochs.csv").contains("train_reconstruction"));
    for epoch in ["epoch-001.png", "epoch-002.png"] {
        assert_eq!(
            std::fs::read(full.join("pictures").join(epoch)).unwrap(),
            std::fs::read(crashed.join("pictures").join(epoch)).unwrap(),
            "{epoch}: the same weights draw the same grid"
        );
    }
}
