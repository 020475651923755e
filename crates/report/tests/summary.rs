//! `summarize` on run directories written in `train`'s format, checked against a direct
//! computation from the same numbers; and the shipped `results/published.toml`.

use std::path::{Path, PathBuf};

use steplab_report::published::{At, Published};
use steplab_report::run::find_runs;
use steplab_report::summary::{SummaryOptions, Threshold, format_number, summarize};

const EPOCHS_HEADER: &str = "epoch,train_loss,train_accuracy,validation_loss,validation_accuracy,test_loss,test_accuracy,lr,seconds";

/// One epoch row of `epochs.csv`; `None` is an empty cell.
#[derive(Clone, Copy)]
struct Epoch {
    train_loss: f64,
    train_accuracy: Option<f64>,
    test_loss: f64,
    test_accuracy: Option<f64>,
    lr: f64,
    seconds: f64,
}

/// A run directory as `train` writes it.
fn write_run(
    dir: &Path,
    name: &str,
    seed: u64,
    task: (&str, &str, &str),
    rows: &[Epoch],
    status: &str,
) {
    let (optimizer, model, dataset) = task;
    std::fs::create_dir_all(dir).unwrap();
    let config = format!(
        "[run]\nname = \"{name}\"\nseed = {seed}\nout_dir = \"results\"\nbackend = \"flex\"\n\
         precision = \"f32\"\n\n[data]\ndataset = \"{dataset}\"\nroot = \"datasets\"\n\
         batch_size = 100\nshuffle = true\n\n[model]\nkind = \"{model}\"\n\n[optimizer]\n\
         kind = \"{optimizer}\"\nlr = 0.0001\n\n[training]\nepochs = 4\n"
    );
    std::fs::write(dir.join("config.toml"), config).unwrap();
    let cell = |v: Option<f64>| v.map_or_else(String::new, |v| v.to_string());
    let mut epochs = format!("{EPOCHS_HEADER}\n");
    let mut steps = String::from("step,epoch,loss,lr\n");
    for (i, r) in rows.iter().enumerate() {
        epochs.push_str(&format!(
            "{},{},{},,,{},{},{},{}\n",
            i + 1,
            r.train_loss,
            cell(r.train_accuracy),
            r.test_loss,
            cell(r.test_accuracy),
            r.lr,
            r.seconds
        ));
        for k in 0..2 {
            steps.push_str(&format!(
                "{},{},{},{}\n",
                2 * i + k + 1,
                i + 1,
                r.train_loss,
                r.lr
            ));
        }
    }
    std::fs::write(dir.join("epochs.csv"), epochs).unwrap();
    std::fs::write(dir.join("steps.csv"), steps).unwrap();
    std::fs::write(dir.join("status"), format!("{status}\n")).unwrap();
}

/// The autoencoder's seed `s`: a regression (no accuracy), 4 epochs, seed 2 diverged after 2
/// with a NaN test loss in its last row; the test loss worsens in epoch 4 (best ≠ final).
fn ae_rows(s: usize) -> Vec<Epoch> {
    let epochs = if s == 2 { 2 } else { 4 };
    (1..=epochs)
        .map(|e| {
            let ef = e as f64;
            let base = 1.0 / (ef + 1.0) + 0.1 * s as f64;
            Epoch {
                train_loss: base,
                train_accuracy: None,
                test_loss: if s == 2 && e == 2 {
                    f64::NAN
                } else if e == 4 {
                    base + 0.3
                } else {
                    base
                },
                test_accuracy: None,
                lr: 0.01 * ef * (1.0 + s as f64),
                seconds: 1.5 + 0.25 * s as f64 + 0.125 * ef,
            }
        })
        .collect()
}

/// The classifier's one seed: 3 epochs with accuracies.
fn clf_rows() -> Vec<Epoch> {
    (1..=3)
        .map(|e| {
            let ef = e as f64;
            Epoch {
                train_loss: 2.0 / (ef + 1.0),
                train_accuracy: Some(0.5 + 0.1 * ef),
                test_loss: 2.2 / (ef + 1.0),
                test_accuracy: Some(0.45 + 0.1 * ef),
                lr: 0.1 * ef,
                seconds: 3.0,
            }
        })
        .collect()
}

/// Mean and sample standard deviation, computed here independently of the crate.
fn mean_sd(values: &[f64]) -> (f64, f64, usize) {
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    let var = if n > 1 {
        values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    (mean, var.sqrt(), n)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

fn assert_stat(stat: Option<steplab_report::summary::Stat>, expected: &[f64], what: &str) {
    let stat = stat.unwrap_or_else(|| panic!("{what}: no value"));
    let (mean, sd, n) = mean_sd(expected);
    assert!(
        close(stat.mean, mean),
        "{what}: mean {} vs {mean}",
        stat.mean
    );
    assert!(close(stat.std, sd), "{what}: std {} vs {sd}", stat.std);
    assert_eq!(stat.n, n, "{what}: n");
}

/// Writes `ae-seed0..2` and `clf` under a temp dir.
fn write_results() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for s in 0..3 {
        let status = if s == 2 {
            "diverged at step 7: non-finite training loss"
        } else {
            "completed"
        };
        let dir = tmp.path().join("sweep").join(format!("ae-seed{s}"));
        write_run(
            &dir,
            "ae",
            s as u64,
            ("lossgrad", "autoencoder", "fashion_mnist"),
            &ae_rows(s),
            status,
        );
    }
    let dir = tmp.path().join("sweep").join("clf");
    write_run(
        &dir,
        "clf",
        0,
        ("sgd", "mlp", "mnist"),
        &clf_rows(),
        "completed",
    );
    tmp
}

fn test_published() -> Published {
    Published::parse(
        "[[row]]\nconfig = \"ae\"\nsource = \"Test T1\"\ntrain_loss = 0.022\ntest_loss = 0.023\n\
         [[row]]\nconfig = \"clf\"\nsource = \"Test T2\"\nepoch = 2\ntest_accuracy = 0.7\n",
        Path::new("published.toml"),
    )
    .unwrap()
}

fn options() -> SummaryOptions {
    SummaryOptions {
        at: vec![1, 4],
        reach: vec![
            Threshold::parse("test_loss=0.5").unwrap(),
            Threshold::parse("test_accuracy=0.6").unwrap(),
        ],
    }
}

#[test]
fn summary_rows_match_a_direct_computation_from_the_csv_values() {
    let tmp = write_results();
    let runs = find_runs(&[tmp.path().to_path_buf()]).unwrap();
    let summary = summarize(&runs, &options(), &test_published());

    // Validation columns are empty in every run: absent. Accuracies appear (clf has them).
    assert_eq!(
        summary.metrics,
        ["train_loss", "train_accuracy", "test_loss", "test_accuracy"]
    );
    let labels: Vec<&str> = summary.rows.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, ["ae", "clf"]);

    let ae = &summary.rows[0];
    assert_eq!(ae.config, "ae");
    assert_eq!(ae.optimizer.as_deref(), Some("lossgrad"));
    assert_eq!(ae.model.as_deref(), Some("autoencoder"));
    assert_eq!(ae.dataset.as_deref(), Some("fashion_mnist"));
    assert_eq!(ae.seeds, 3);
    assert_eq!(
        ae.status,
        [("completed".to_string(), 2), ("diverged".to_string(), 1)]
    );
    assert_eq!(ae.status_text(), "2 completed, 1 diverged");
    let seeds: Vec<Vec<Epoch>> = (0..3).map(ae_rows).collect();
    let lens: Vec<f64> = seeds.iter().map(|r| r.len() as f64).collect();
    assert_stat(Some(ae.epochs), &lens, "epochs");

    // Per seed, straight from the rows written: last finite value, minimum, value at epoch E.
    let column = |f: fn(&Epoch) -> f64| -> Vec<Vec<f64>> {
        seeds
            .iter()
            .map(|rows| rows.iter().map(f).collect())
            .collect()
    };
    for (metric, values) in [
        ("train_loss", column(|e| e.train_loss)),
        ("test_loss", column(|e| e.test_loss)),
    ] {
        let finite = |v: &Vec<f64>| {
            v.iter()
                .copied()
                .filter(|x| x.is_finite())
                .collect::<Vec<_>>()
        };
        let last: Vec<f64> = values.iter().map(|v| *finite(v).last().unwrap()).collect();
        let best: Vec<f64> = values
            .iter()
            .map(|v| finite(v).into_iter().fold(f64::INFINITY, f64::min))
            .collect();
        let stats = ae.metric(metric).unwrap();
        assert_stat(stats.last, &last, &format!("{metric} final"));
        assert_stat(stats.best, &best, &format!("{metric} best"));
        for (j, epoch) in [1usize, 4].into_iter().enumerate() {
            let at: Vec<f64> = values
                .iter()
                .filter_map(|v| v.get(epoch - 1).copied())
                .filter(|x| x.is_finite())
                .collect();
            assert_stat(stats.at[j], &at, &format!("{metric} @{epoch}"));
        }
        assert_eq!(stats.at[1].unwrap().n, 2, "seed 2 never reached epoch 4");
    }
    // The NaN test loss of seed 2's last row is no value: its final is epoch 1's.
    let finals = [
        seeds[0][3].test_loss,
        seeds[1][3].test_loss,
        seeds[2][0].test_loss,
    ];
    assert_stat(
        ae.metric("test_loss").unwrap().last,
        &finals,
        "test_loss final, by hand",
    );
    // The best test loss is not the final one (epoch 4 worsened).
    assert!(
        ae.metric("test_loss").unwrap().best.unwrap().mean
            < ae.metric("test_loss").unwrap().last.unwrap().mean
    );
    // No accuracy in a regression: empty.
    assert!(ae.metric("test_accuracy").unwrap().last.is_none());

    // --reach test_loss=0.5: the first epoch at or below 0.5, per seed.
    let first: Vec<f64> = seeds
        .iter()
        .filter_map(|rows| {
            rows.iter()
                .position(|e| e.test_loss <= 0.5)
                .map(|i| (i + 1) as f64)
        })
        .collect();
    assert_eq!(first.len(), 2);
    assert_stat(ae.reach[0].epoch, &first, "reach test_loss");
    assert_eq!((ae.reach[0].reached, ae.reach[0].seeds), (2, 3));
    assert_eq!((ae.reach[1].reached, ae.reach[1].epoch), (0, None));

    let seconds: Vec<f64> = seeds.iter().flatten().map(|e| e.seconds).collect();
    let spe = seconds.iter().sum::<f64>() / seconds.len() as f64;
    assert!(close(ae.seconds_per_epoch.unwrap(), spe));
    let lr: Vec<f64> = seeds.iter().map(|rows| rows.last().unwrap().lr).collect();
    assert_stat(ae.lr, &lr, "final lr");

    // The paper's final values, with ours at the same moment.
    assert_eq!(ae.paper.len(), 2);
    assert_eq!(
        (ae.paper[0].metric.as_str(), ae.paper[0].value),
        ("train_loss", 0.022)
    );
    assert_eq!(ae.paper[0].ours, ae.metric("train_loss").unwrap().last);
    assert_eq!(ae.paper[1].ours, ae.metric("test_loss").unwrap().last);

    let clf = &summary.rows[1];
    let rows = clf_rows();
    assert_eq!((clf.seeds, clf.status_text().as_str()), (1, "1 completed"));
    let acc = clf.metric("test_accuracy").unwrap();
    assert_stat(acc.last, &[rows[2].test_accuracy.unwrap()], "clf test acc");
    assert_stat(
        acc.best,
        &[rows[2].test_accuracy.unwrap()],
        "clf best test acc",
    );
    assert_stat(
        clf.metric("train_accuracy").unwrap().at[0],
        &[rows[0].train_accuracy.unwrap()],
        "clf @1",
    );
    assert!(acc.at[1].is_none(), "clf has 3 epochs: none at 4");
    assert_eq!((clf.reach[0].reached, clf.reach[0].seeds), (0, 1));
    assert_stat(clf.reach[1].epoch, &[2.0], "clf reach acc");
    assert_eq!(clf.paper.len(), 1);
    assert_eq!(clf.paper[0].at, At::Epoch(2));
    assert_stat(
        clf.paper[0].ours,
        &[rows[1].test_accuracy.unwrap()],
        "clf paper ours",
    );
}

#[test]
fn the_markdown_table_shows_the_numbers_and_the_paper_beside_them() {
    let tmp = write_results();
    let runs = find_runs(&[tmp.path().to_path_buf()]).unwrap();
    let summary = summarize(&runs, &options(), &test_published());
    let md = summary.to_markdown();
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(lines.len(), 2 + summary.rows.len(), "{md}");
    let widths: Vec<usize> = lines.iter().map(|l| l.matches('|').count()).collect();
    assert!(widths.iter().all(|&w| w == widths[0]), "{md}");
    assert!(lines[1].starts_with("|---|"), "{md}");
    let header = lines[0];
    for h in [
        "| run |",
        "| train loss |",
        "| test acc |",
        "| paper |",
        "| best test loss |",
        "| test loss @4 |",
        "| first epoch test loss ≤ 0.5 |",
        "| s/epoch |",
        "| lr |",
    ] {
        assert!(header.contains(h), "{h} missing: {header}");
    }
    assert!(!header.contains("val "), "{header}");
    assert!(
        !header.contains("| config |"),
        "labels are the config names: {header}"
    );

    let ae = &summary.rows[0];
    let pm = |s: steplab_report::summary::Stat| {
        format!("{} ± {}", format_number(s.mean), format_number(s.std))
    };
    let loss = ae.metric("test_loss").unwrap();
    for cell in [
        format!("| {} |", pm(ae.metric("train_loss").unwrap().last.unwrap())),
        format!("| {} |", pm(loss.best.unwrap())),
        format!("| {} (2/3) |", pm(loss.at[1].unwrap())),
        format!("| {} (2/3 reached) |", pm(ae.reach[0].epoch.unwrap())),
        "| 0/3 reached |".to_string(),
        format!("| {} |", pm(ae.epochs)),
        format!("| {} |", format_number(ae.seconds_per_epoch.unwrap())),
        "| 2 completed, 1 diverged |".to_string(),
        "| train loss 0.022, test loss 0.023 (Test T1) |".to_string(),
    ] {
        assert!(lines[2].contains(&cell), "{cell} missing: {}", lines[2]);
    }
    // The paper column sits right after the final values and lr.
    let cells: Vec<&str> = header.split(" | ").collect();
    let paper = cells.iter().position(|c| *c == "paper").unwrap();
    assert_eq!(cells[paper - 1], "lr");
    assert_eq!(cells[paper - 2], "test acc");
    // clf: one seed, no ±; the paper's epoch-2 value with ours beside it.
    let clf = &summary.rows[1];
    let ours = format_number(clf.paper[0].ours.unwrap().mean);
    assert!(
        lines[3].contains(&format!("| test acc @2 0.7 [ours {ours}] (Test T2) |")),
        "{}",
        lines[3]
    );
    assert!(
        lines[3].contains("| 3 |"),
        "epochs, all seeds equal: an integer: {}",
        lines[3]
    );
    assert!(!lines[3].contains('±'), "{}", lines[3]);
}

#[test]
fn the_csv_parses_back_to_the_same_numbers() {
    let tmp = write_results();
    let runs = find_runs(&[tmp.path().to_path_buf()]).unwrap();
    let summary = summarize(&runs, &options(), &test_published());
    let text = summary.to_csv();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), summary.rows.len());
    let get = |row: usize, column: &str| -> String {
        let i = headers
            .iter()
            .position(|h| h == column)
            .unwrap_or_else(|| panic!("no column {column}: {headers:?}"));
        records[row][i].to_string()
    };
    let num = |row: usize, column: &str| -> f64 { get(row, column).parse().unwrap() };
    assert!(
        !headers.iter().any(|h| h.starts_with("validation")),
        "{headers:?}"
    );

    for (i, row) in summary.rows.iter().enumerate() {
        assert_eq!(get(i, "label"), row.label);
        assert_eq!(get(i, "status"), row.status_text());
        assert_eq!(num(i, "seeds"), row.seeds as f64);
        for m in &row.metrics {
            for (kind, stat) in [
                ("final", m.last),
                ("best", m.best),
                ("epoch1", m.at[0]),
                ("epoch4", m.at[1]),
            ] {
                let prefix = format!("{}_{kind}", m.metric);
                match stat {
                    Some(s) => {
                        // Full precision: the exact f64 back.
                        assert_eq!(num(i, &format!("{prefix}_mean")), s.mean, "{prefix}");
                        assert_eq!(num(i, &format!("{prefix}_std")), s.std, "{prefix}");
                        assert_eq!(num(i, &format!("{prefix}_n")), s.n as f64, "{prefix}");
                    }
                    None => {
                        assert_eq!(get(i, &format!("{prefix}_mean")), "", "{prefix}");
                        assert_eq!(get(i, &format!("{prefix}_n")), "0", "{prefix}");
                    }
                }
            }
        }
        assert_eq!(num(i, "seconds_per_epoch"), row.seconds_per_epoch.unwrap());
        assert_eq!(num(i, "lr_final_mean"), row.lr.unwrap().mean);
        assert_eq!(
            num(i, "reach_test_loss_0.5_epoch_n"),
            row.reach[0].reached as f64
        );
    }
    assert_eq!(
        num(0, "reach_test_loss_0.5_epoch_mean"),
        summary.rows[0].reach[0].epoch.unwrap().mean
    );
    assert_eq!(get(1, "reach_test_loss_0.5_epoch_mean"), "");
    assert_eq!(
        (num(0, "status_completed"), num(0, "status_diverged")),
        (2.0, 1.0)
    );
    assert_eq!(
        (num(1, "status_completed"), num(1, "status_diverged")),
        (1.0, 0.0)
    );
    assert_eq!(num(0, "epochs_mean"), summary.rows[0].epochs.mean);
    assert_eq!(
        (num(0, "paper_train_loss"), num(0, "paper_test_loss")),
        (0.022, 0.023)
    );
    assert_eq!(get(1, "paper_train_loss"), "");
    assert_eq!(num(1, "paper_test_accuracy_epoch2"), 0.7);
    assert_eq!(
        (get(0, "paper_source"), get(1, "paper_source")),
        ("Test T1".into(), "Test T2".into())
    );
    // The status text has a comma: quoted, and it survived the round trip above.
    assert!(text.contains("\"2 completed, 1 diverged\""));
}

#[test]
fn columns_without_data_are_left_out() {
    let tmp = write_results();
    let ae: Vec<PathBuf> = (0..3)
        .map(|s| tmp.path().join("sweep").join(format!("ae-seed{s}")))
        .collect();
    let runs = find_runs(&ae).unwrap();
    let summary = summarize(&runs, &SummaryOptions::default(), &Published::default());
    assert_eq!(summary.metrics, ["train_loss", "test_loss"]);
    assert_eq!(summary.rows.len(), 1);
    let md = summary.to_markdown();
    assert!(
        !md.contains("acc") && !md.contains("paper") && !md.contains('@'),
        "{md}"
    );
    let csv = summary.to_csv();
    let header = csv.lines().next().unwrap();
    assert!(
        !header.contains("accuracy") && !header.contains("paper") && !header.contains("reach"),
        "{header}"
    );
}

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

#[test]
fn every_published_row_names_an_existing_config_and_fits_it() {
    let published = Published::builtin().unwrap();
    assert!(!published.rows.is_empty());
    for row in &published.rows {
        let path = configs_dir().join(format!("{}.toml", row.config));
        assert!(path.is_file(), "{}: no {}", row.config, path.display());
        assert!(!row.metrics.is_empty(), "{}", row.config);
        assert!(!row.source.is_empty(), "{}", row.config);
        let config: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        assert_eq!(
            row.dataset.as_deref(),
            config["data"]["dataset"].as_str(),
            "{}: the row's dataset is its config's",
            row.config
        );
        if let At::Epoch(e) = row.at {
            let epochs = config["training"]["epochs"].as_integer().unwrap();
            assert!(
                e as i64 <= epochs,
                "{}: epoch {e} past the config's {epochs}",
                row.config
            );
        }
        if row.approximate {
            assert!(
                row.note.is_some(),
                "{}: approximate values say why in `note`",
                row.config
            );
        }
    }
}

#[test]
fn a_run_of_a_published_config_gets_the_papers_numbers() {
    let published = Published::builtin().unwrap();
    let config = "lossgrad_t3_fmnist_autoencoder_lossgrad";
    let row = published
        .for_config(config)
        .expect("Table 3's LossGrad row");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(format!("{config}-seed0"));
    write_run(
        &dir,
        config,
        0,
        ("lossgrad", "autoencoder", "fashion_mnist"),
        &ae_rows(0),
        "completed",
    );
    let runs = find_runs(&[dir]).unwrap();
    let summary = summarize(&runs, &SummaryOptions::default(), &published);
    let paper = &summary.rows[0].paper;
    let expected: Vec<(String, f64)> = paper.iter().map(|p| (p.metric.clone(), p.value)).collect();
    assert_eq!(expected, row.metrics);
    assert!(summary.to_markdown().contains(&format!("({})", row.source)));
    assert!(paper.iter().all(|p| p.other_dataset.is_none()));

    // The same config run on other data (`--set data.dataset=mnist`): the paper's numbers are
    // still shown, marked as Fashion-MNIST's.
    let other = tmp.path().join("other").join(format!("{config}-seed0"));
    write_run(
        &other,
        config,
        0,
        ("lossgrad", "autoencoder", "mnist"),
        &ae_rows(0),
        "completed",
    );
    let runs = find_runs(&[other]).unwrap();
    let summary = summarize(&runs, &SummaryOptions::default(), &published);
    let paper = &summary.rows[0].paper;
    assert!(!paper.is_empty());
    assert!(
        paper
            .iter()
            .all(|p| p.other_dataset.as_deref() == Some("fashion_mnist"))
    );
    let markdown = summary.to_markdown();
    assert!(
        markdown.contains(&format!("({}, on fashion_mnist)", row.source)),
        "{markdown}"
    );
    let csv = summary.to_csv();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().unwrap().clone();
    let at = header.iter().position(|h| h == "paper_dataset").unwrap();
    let record = reader.records().next().unwrap().unwrap();
    assert_eq!(&record[at], "fashion_mnist");
}

#[test]
fn a_malformed_published_file_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("published.toml");
    let cases = [
        (
            "[[row]]\nconfig = \"a\"\nsource = \"s\"\ntest_acc = 0.9\n",
            "test_acc",
        ),
        (
            "[[row]]\nconfig = \"a\"\nsource = \"s\"\nlr = 0.1\n[[row]]\nconfig = \"a\"\nsource = \"s\"\nlr = 0.2\n",
            "line 6: row for `a`: a second row",
        ),
        ("[[row]]\nconfig = \"a\"\nsource = \"s\"\n", "no metric"),
    ];
    for (text, expected) in cases {
        std::fs::write(&path, text).unwrap();
        let e = Published::read(&path).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: ", path.display())), "{e}");
        assert!(e.contains(expected), "{expected}: {e}");
    }
    let missing = tmp.path().join("none.toml");
    let e = Published::read(&missing).unwrap_err().to_string();
    assert!(e.starts_with(&missing.display().to_string()), "{e}");
}
