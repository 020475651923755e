//! End to end on IMDb and GloVe files in the real formats, written by the test: the extracted
//! `aclImdb/` tree with its 4 × 12,500 reviews and `glove.6B.100d.txt`; every LossGrad Table 5
//! config trains on them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::common::{read_csv, stderr, train};

/// Words of the positive and negative reviews; only some have GloVe vectors.
const POSITIVE: [&str; 4] = ["great", "wonderful", "loved", "superb"];
const NEGATIVE: [&str; 4] = ["awful", "boring", "hated", "dreadful"];
const NEUTRAL: [&str; 5] = ["the", "movie", "film", "plot", "actors"];

/// Writes `root/imdb/aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt`, 12,500 reviews each.
fn write_imdb(root: &Path) {
    for split in ["train", "test"] {
        for (label, words, rating) in [("pos", &POSITIVE, 9), ("neg", &NEGATIVE, 2)] {
            let dir = root.join(format!("imdb/aclImdb/{split}/{label}"));
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..12_500usize {
                let mut text = String::new();
                for k in 0..(3 + i % 9) {
                    let word = if k % 3 == 0 {
                        words[(i + k) % words.len()]
                    } else {
                        NEUTRAL[(i * 7 + k) % NEUTRAL.len()]
                    };
                    let _ = write!(text, "{}{word}", if k == 0 { "" } else { " " });
                }
                text += if i % 2 == 0 {
                    ".<br /><br />Really!"
                } else {
                    ", (yes)."
                };
                std::fs::write(dir.join(format!("{i}_{rating}.txt")), text).unwrap();
            }
        }
    }
    // Read by nobody: the unlabelled reviews.
    let unsup = root.join("imdb/aclImdb/train/unsup");
    std::fs::create_dir_all(&unsup).unwrap();
    std::fs::write(unsup.join("0_0.txt"), "unlabelled").unwrap();
}

/// Writes `root/glove/glove.6B.100d.txt` with vectors for some of the words (not all).
fn write_glove(root: &Path) {
    let dir = root.join("glove");
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = String::new();
    let words = POSITIVE[..3]
        .iter()
        .chain(&NEGATIVE[..3])
        .chain(&NEUTRAL)
        .chain(&["zebra", "."]);
    for (w, word) in words.enumerate() {
        text += word;
        for j in 0..100 {
            let v = ((w * 31 + j * 17) % 200) as f64 / 1000.0 - 0.1;
            let _ = write!(text, " {v:.5}");
        }
        text.push('\n');
    }
    std::fs::write(dir.join("glove.6B.100d.txt"), text).unwrap();
}

fn repo_config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs")
        .join(format!("{name}.toml"))
}

#[test]
fn every_table_5_config_trains_on_real_format_imdb_and_glove() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    write_imdb(&root);
    write_glove(&root);
    let rows = [
        "sgd_lr0.5",
        "sgd_lr0.1",
        "sgd_lr0.05",
        "sgd_scheduled",
        "wngrad",
        "lossgrad",
    ];
    for (k, row) in rows.iter().enumerate() {
        let name = format!("lossgrad_t5_imdb_bilstm_{row}");
        let config = repo_config(&name);
        let root_set = format!("data.root=\"{}\"", root.display());
        // 20 steps of the epoch each (a whole one of 250 takes ~90 s here); the first config
        // also evaluates on the 25,000 test reviews.
        let mut args = vec![
            "--config",
            config.to_str().unwrap(),
            "--set",
            &root_set,
            "--set",
            "data.download=false",
            "--set",
            "training.epochs=1",
            "--set",
            "training.max_steps=20",
        ];
        if k > 0 {
            args.extend(["--set", "training.evaluate=false"]);
        }
        let out = train(&args, dir.path());
        let err = stderr(&out);
        assert!(out.status.success(), "{name}: {err}");
        // The vocabulary: 4 + 4 + 5 words, '.', ',', '(', ')', '!', 'really', 'yes' and the two
        // specials; GloVe has 12 of them (3 + 3 + 5 words and '.'; not its 'zebra').
        assert!(
            err.contains("GloVe: 12 of 22 vocabulary words have a vector"),
            "{name}: {err}"
        );
        if k == 0 {
            assert!(err.contains("IMDb token ids cached in"), "{err}");
        } else {
            assert!(err.contains("IMDb token ids read from the cache"), "{err}");
        }
        let run = dir.path().join("results").join(&name);
        let (header, steps) = read_csv(&run.join("steps.csv"));
        assert_eq!(steps.len(), 20, "{name}");
        let loss = header.iter().position(|h| h == "loss").unwrap();
        assert!(steps.iter().all(|r| r[loss].is_finite()), "{name}");
        if k == 0 {
            let (header, epochs) = read_csv(&run.join("epochs.csv"));
            let acc = header.iter().position(|h| h == "test_accuracy").unwrap();
            let test_acc = epochs[0][acc];
            assert!((0.0..=1.0).contains(&test_acc), "{name}: {test_acc}");
        }
        let status = std::fs::read_to_string(run.join("status")).unwrap();
        assert_eq!(status.trim(), "completed", "{name}");
    }
}

#[test]
fn missing_imdb_names_the_url_and_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let config = repo_config("lossgrad_t5_imdb_bilstm_lossgrad");
    let out = train(
        &[
            "--config",
            config.to_str().unwrap(),
            "--set",
            "data.root=\"nowhere\"",
            "--set",
            "data.download=false",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("aclImdb_v1.tar.gz")
            && err.contains("ai.stanford.edu")
            && err.contains("nowhere/imdb"),
        "{err}"
    );
    assert!(
        !dir.path()
            .join("results")
            .join("lossgrad_t5_imdb_bilstm_lossgrad/steps.csv")
            .exists()
    );
}

#[test]
fn token_data_refuses_image_models_and_feature_keys() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    write_imdb(&root);
    let config = dir.path().join("exp.toml");
    std::fs::write(
        &config,
        "[data]\ndataset = \"imdb\"\nroot = \"data\"\ndownload = false\n\
         [model]\nkind = \"bilstm\"\nembedding = \"random\"\n[optimizer]\nkind = \"sgd\"\n",
    )
    .unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "--set",
                "model.kind=\"lenet5\"",
                "--unset",
                "model.embedding",
            ],
            "model.kind",
        ),
        (&["--set", "data.normalize=[0.5, 0.5]"], "data.normalize"),
        (&["--set", "data.max_len=0"], "data.max_len"),
        (&["--set", "data.augment=\"crop_flip\""], "data.augment"),
    ];
    for (extra, key) in cases {
        let mut args = vec!["--config", config.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = train(&args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(key), "{extra:?}: {}", stderr(&out));
    }
}
