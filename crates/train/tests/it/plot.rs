//! `train plot` and `train summarize` end to end on real runs: the UCI digits MLP under LossGrad
//! (two seeds), SGD and per-tensor TLR, and a regression run that diverges.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common::{regression_config, stderr, train};

fn digits_csv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/uci_digits/digits.csv")
}

/// A 3-epoch digits config for `optimizer` named `name`.
fn digits_config(dir: &Path, name: &str, optimizer: &str) -> PathBuf {
    let config = format!(
        r#"
[run]
backend = "ndarray"
[data]
dataset = "csv"
path = "{}"
target = "label"
task = "classification"
batch_size = 64
validation_fraction = 0.2
[model]
kind = "mlp"
hidden = [16]
[optimizer]
{optimizer}
[training]
epochs = 3
checkpoint = false
"#,
        digits_csv().display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).unwrap();
    path
}

/// The runs, trained once for all tests of this file: `<tmp>/results/<name>`.
struct Runs {
    _tmp: tempfile::TempDir,
    results: PathBuf,
}

fn runs() -> &'static Runs {
    static RUNS: OnceLock<Runs> = OnceLock::new();
    RUNS.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let results = tmp.path().join("results");
        let configs = tmp.path().join("configs");
        std::fs::create_dir_all(&configs).unwrap();
        let lossgrad = digits_config(
            &configs,
            "digits_lossgrad",
            "kind = \"lossgrad\"\nlr = 1e-3",
        );
        let sgd = digits_config(&configs, "digits_sgd", "kind = \"sgd\"\nlr = 0.1");
        let tlr = digits_config(
            &configs,
            "digits_tlr_pl",
            "kind = \"sgd_tlr_pl\"\nlr = 0.01",
        );
        let cases: [(&Path, &str, u64); 4] = [
            (&lossgrad, "digits_lossgrad-seed0", 0),
            (&lossgrad, "digits_lossgrad-seed1", 1),
            (&sgd, "digits_sgd-seed0", 0),
            (&tlr, "digits_tlr_pl-seed0", 0),
        ];
        for (config, name, seed) in cases {
            let out = train(
                &[
                    "--config",
                    config.to_str().unwrap(),
                    "--set",
                    &format!("run.seed={seed}"),
                    "--out",
                    results.join(name).to_str().unwrap(),
                ],
                tmp.path(),
            );
            assert!(out.status.success(), "{name}: {}", stderr(&out));
        }
        // A run that diverges: SGD far past the stable rate on a linear regression.
        let diverging = regression_config(&configs, "kind = \"sgd\"\nlr = 1e6", "");
        let out = train(
            &[
                "--config",
                diverging.to_str().unwrap(),
                "--out",
                results.join("regression_sgd_huge").to_str().unwrap(),
            ],
            tmp.path(),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let status = std::fs::read_to_string(results.join("regression_sgd_huge/status")).unwrap();
        assert!(status.starts_with("diverged at step"), "{status}");
        Runs { _tmp: tmp, results }
    })
}

fn plot(args: &[&str]) -> std::process::Output {
    let mut all = vec!["plot"];
    all.extend_from_slice(args);
    train(&all, &runs().results)
}

#[test]
fn a_png_is_written_that_decodes_at_the_size_reported() {
    let runs = runs();
    let out_file = runs.results.join("../all.png");
    let out = plot(&[
        runs.results.to_str().unwrap(),
        "--out",
        out_file.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    // 5 runs, 4 experiments; every panel has data (layers.csv from the per-tensor TLR run).
    assert!(err.contains("5 runs as 4 curves"), "{err}");
    assert!(
        err.contains("panels train_loss, eval_loss, accuracy, lr, layers"),
        "{err}"
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&out_file).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    // Five panels in three rows of 420 px, a legend of two rows (24 px each + 20).
    assert_eq!((info.width, info.height), (1400, 3 * 420 + 2 * 24 + 20));
    assert!(
        err.contains(&format!("{}×{} px", info.width, info.height)),
        "{err}"
    );
    // The first experiment's colour (Tableau blue) is drawn: lines, not a blank canvas.
    let blue = pixels
        .chunks(3)
        .filter(|p| p[0] == 31 && p[1] == 119 && p[2] == 180)
        .count();
    assert!(blue > 1000, "{blue} pixels of the first colour");
}

#[test]
fn an_svg_parses_and_its_legend_names_every_experiment() {
    let runs = runs();
    let out_file = runs.results.join("../all.svg");
    let out = plot(&[
        runs.results.to_str().unwrap(),
        "--out",
        out_file.to_str().unwrap(),
        "--x",
        "epoch",
        "--title",
        "digits",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&out_file).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect();
    for entry in [
        "digits_lossgrad (2 seeds)",
        "digits_sgd",
        "digits_tlr_pl",
        "regression_sgd_huge (diverged)",
        "digits",
        "step size (geometric mean per epoch)",
    ] {
        assert!(
            texts.iter().any(|t| t == entry),
            "no `{entry}` in {texts:?}"
        );
    }
}

#[test]
fn plot_refuses_bad_options_and_paths_by_name() {
    let runs = runs();
    let cases: [(&[&str], &str); 4] = [
        (&["--out", "x.pdf"], "must end in .png or .svg"),
        (&["--panels", "lr,bogus"], "--panels: unknown panel `bogus`"),
        (&["--first", "0"], "--first: must be at least 1"),
        (&["--width", "10"], "--width: must be at least 400"),
    ];
    let dir = runs.results.join("digits_sgd-seed0");
    for (args, message) in cases {
        let mut all = vec![dir.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = plot(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    let empty = runs.results.join("../nothing-here");
    std::fs::create_dir_all(&empty).unwrap();
    let out = plot(&[empty.to_str().unwrap(), "--out", "/dev/null.png"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no run directory here"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn summarize_prints_one_row_per_experiment_from_the_runs_csvs() {
    let runs = runs();
    let out = train(
        &[
            "summarize",
            runs.results.to_str().unwrap(),
            "--format",
            "csv",
        ],
        &runs.results,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
    };
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4, "{text}");
    // The LossGrad row: the mean of the two seeds' last test-free validation losses.
    let last_validation_loss = |name: &str| {
        let (header, rows) = crate::common::read_csv(&runs.results.join(name).join("epochs.csv"));
        let i = header.iter().position(|h| h == "validation_loss").unwrap();
        rows.last().unwrap()[i]
    };
    let expected = (last_validation_loss("digits_lossgrad-seed0")
        + last_validation_loss("digits_lossgrad-seed1"))
        / 2.0;
    let lossgrad = rows
        .iter()
        .find(|r| r.iter().any(|c| c == "digits_lossgrad"))
        .expect("a digits_lossgrad row");
    let got: f64 = lossgrad[col("validation_loss_final_mean")].parse().unwrap();
    assert!(
        (got - expected).abs() <= 1e-12 * expected.abs(),
        "{got} vs {expected}"
    );
    assert_eq!(&lossgrad[col("validation_loss_final_n")], "2");
}
