//! The papers' published numbers, as data.
//!
//! `results/published.toml` holds one `[[row]]` per config of `configs/` whose experiment a
//! paper reports (per epoch where the paper reports several epochs): the values as printed,
//! accuracies as fractions. `train summarize` prints them beside the runs of that config. The
//! file is built into the binary ([`Published::builtin`]) so that a summary needs no checkout;
//! its tests check that every row names an existing config.
//!
//! ```toml
//! [[row]]
//! config = "lossgrad_t3_fmnist_autoencoder_lossgrad"   # configs/<config>.toml
//! source = "LossGrad Table 3"                          # paper and table / figure
//! train_loss = 0.022
//! test_loss = 0.022
//! # optional: note = "...", epoch = 10, best = true, approximate = true
//! ```
//!
//! Choices of this project: `epoch` and `best` say *when* in training the paper's value is
//! (L4 Table 2 reports epochs 1, 10 and 30 of 30-epoch runs; Gorti-Ravaut report peak
//! accuracies), so a summary compares like with like; without them the value is at the end of
//! training. A config may have several rows, one per moment; two rows for one config at one
//! moment are refused. Accuracies outside [0, 1] are refused (a percentage typed as 97.9).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{ReportError, Result};

/// The metric keys a row may give, in the order tables print them: the metric columns of
/// `epochs.csv` (a WAE's reconstruction terms among them: LossGrad Table 6 reports those), then
/// `lr` (the step size the method settles at).
pub const METRICS: [&str; 9] = [
    "train_loss",
    "train_accuracy",
    "validation_loss",
    "validation_accuracy",
    "test_loss",
    "test_accuracy",
    "train_reconstruction",
    "test_reconstruction",
    "lr",
];

/// Where the built-in file lives in the repository (named in its errors).
pub const BUILTIN_PATH: &str = "results/published.toml";

const BUILTIN: &str = include_str!("../../../results/published.toml");

/// When in training a published value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum At {
    /// At the end of training (compared with a run's last epoch).
    Final,
    /// The best over training: the highest accuracy, the lowest loss.
    Best,
    /// At this epoch (from 1).
    Epoch(u64),
}

/// One published result: a config, where the paper prints it, and its numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedRow {
    /// The config stem in `configs/` (the runs' `run.name`).
    pub config: String,
    /// The paper and table, figure or section (`LossGrad Table 3`).
    pub source: String,
    /// The dataset the paper's number is on, as `data.dataset` names it; a run of the config on
    /// another dataset (`--set data.dataset=…`) gets the number marked as the paper's dataset's.
    pub dataset: Option<String>,
    /// Free text: what the number is, where it is read off.
    pub note: Option<String>,
    /// When in training the values are.
    pub at: At,
    /// The paper gives the values as approximate ("around 0.4").
    pub approximate: bool,
    /// The values, by metric key of [`METRICS`], in that order; never empty.
    pub metrics: Vec<(String, f64)>,
}

impl PublishedRow {
    /// The value of `metric`, if the row has it.
    pub fn value(&self, metric: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|(name, _)| name == metric)
            .map(|&(_, v)| v)
    }
}

/// Every published row, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Published {
    /// The rows, in file order.
    pub rows: Vec<PublishedRow>,
}

/// The file as written: `[[row]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    row: Vec<RawRow>,
}

/// One `[[row]]` as written; [`Published::parse`] checks it into a [`PublishedRow`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRow {
    config: toml::Spanned<String>,
    source: String,
    dataset: Option<String>,
    note: Option<String>,
    epoch: Option<u64>,
    #[serde(default)]
    best: bool,
    #[serde(default)]
    approximate: bool,
    train_loss: Option<f64>,
    train_accuracy: Option<f64>,
    validation_loss: Option<f64>,
    validation_accuracy: Option<f64>,
    test_loss: Option<f64>,
    test_accuracy: Option<f64>,
    train_reconstruction: Option<f64>,
    test_reconstruction: Option<f64>,
    lr: Option<f64>,
}

impl RawRow {
    /// The given metrics, in [`METRICS`] order.
    fn metrics(&self) -> Vec<(String, f64)> {
        let values = [
            self.train_loss,
            self.train_accuracy,
            self.validation_loss,
            self.validation_accuracy,
            self.test_loss,
            self.test_accuracy,
            self.train_reconstruction,
            self.test_reconstruction,
            self.lr,
        ];
        METRICS
            .iter()
            .zip(values)
            .filter_map(|(name, v)| v.map(|v| (name.to_string(), v)))
            .collect()
    }
}

impl Published {
    /// Parses the published-numbers TOML `text`; `path` names the file in errors. Refuses
    /// unknown keys, a row without a metric, a non-finite or negative value, an accuracy above 1,
    /// `best` together with `epoch` or with `lr`, epoch 0, and two rows for one config at one
    /// moment (the errors name the line).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let toml_error = |message: String| ReportError::Toml {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(e.to_string()))?;
        let mut rows: Vec<PublishedRow> = Vec::with_capacity(raw.row.len());
        for raw in raw.row {
            let line = line_of(text, raw.config.span().start);
            let config = raw.config.get_ref().clone();
            let row_error =
                |what: String| toml_error(format!("line {line}: row for `{config}`: {what}"));
            if config.is_empty() || config.contains(['/', '\\']) {
                return Err(row_error("`config` must be a config file's stem".into()));
            }
            let metrics = raw.metrics();
            if metrics.is_empty() {
                return Err(row_error(format!(
                    "no metric: give one or more of {}",
                    METRICS.join(", ")
                )));
            }
            for (name, value) in &metrics {
                let bad = if !value.is_finite() || *value < 0.0 {
                    Some("must be a finite number ≥ 0")
                } else if name.ends_with("_accuracy") && *value > 1.0 {
                    Some("is above 1: accuracies are fractions (97.9 % is 0.979)")
                } else if name == "lr" && *value == 0.0 {
                    Some("must be > 0")
                } else {
                    None
                };
                if let Some(bad) = bad {
                    return Err(row_error(format!("`{name}` = {value} {bad}")));
                }
            }
            let at = match (raw.best, raw.epoch) {
                (true, Some(_)) => {
                    return Err(row_error("`best` and `epoch` exclude each other".into()));
                }
                (true, None) if raw.lr.is_some() => {
                    return Err(row_error("`lr` has no best value: drop `best`".into()));
                }
                (true, None) => At::Best,
                (false, Some(0)) => return Err(row_error("`epoch` counts from 1".into())),
                (false, Some(epoch)) => At::Epoch(epoch),
                (false, None) => At::Final,
            };
            if rows.iter().any(|r| r.config == config && r.at == at) {
                return Err(row_error(format!(
                    "a second row for this config {}",
                    describe_at(at)
                )));
            }
            rows.push(PublishedRow {
                config,
                source: raw.source,
                dataset: raw.dataset,
                note: raw.note,
                at,
                approximate: raw.approximate,
                metrics,
            });
        }
        Ok(Self { rows })
    }

    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ReportError::io(path, e))?;
        Self::parse(&text, path)
    }

    /// The numbers shipped with this build: `results/published.toml`, compiled in. Its tests
    /// keep it parsing; an error would name [`BUILTIN_PATH`].
    pub fn builtin() -> Result<Self> {
        Self::parse(BUILTIN, &PathBuf::from(BUILTIN_PATH))
    }

    /// The row of config `name` at the end of training, else its row at the latest epoch, else
    /// its first row; `None` when the papers report nothing for it.
    pub fn for_config(&self, name: &str) -> Option<&PublishedRow> {
        let rows: Vec<&PublishedRow> = self.rows.iter().filter(|r| r.config == name).collect();
        rows.iter()
            .find(|r| r.at == At::Final)
            .or_else(|| {
                rows.iter()
                    .filter(|r| matches!(r.at, At::Epoch(_)))
                    .max_by_key(|r| r.at)
            })
            .or(rows.first())
            .copied()
    }

    /// Every row of config `name`, in file order.
    pub fn rows_for<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a PublishedRow> + 'a {
        self.rows.iter().filter(move |r| r.config == name)
    }
}

/// "at the end of training", "for the best epoch", "at epoch 10".
fn describe_at(at: At) -> String {
    match at {
        At::Final => "at the end of training".into(),
        At::Best => "for the best epoch".into(),
        At::Epoch(e) => format!("at epoch {e}"),
    }
}

/// The line (from 1) of byte offset `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Published> {
        Published::parse(text, Path::new("pub.toml"))
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn rows_parse_with_their_metrics_in_table_order() {
        let p = parse(
            "[[row]]\nconfig = \"a\"\nsource = \"P T1\"\ntest_loss = 0.5\ntrain_loss = 0.25\n\
             [[row]]\nconfig = \"b\"\nsource = \"P F2\"\nnote = \"≈\"\napproximate = true\nlr = 0.4\n\
             [[row]]\nconfig = \"c\"\nsource = \"P T2\"\nepoch = 10\ntest_accuracy = 0.979\n\
             [[row]]\nconfig = \"c\"\nsource = \"P T2\"\nepoch = 30\ntest_accuracy = 0.98\n\
             [[row]]\nconfig = \"d\"\nsource = \"P S4\"\nbest = true\ntest_accuracy = 0.59\n",
        )
        .unwrap();
        assert_eq!(p.rows.len(), 5);
        let a = &p.rows[0];
        assert_eq!(
            a.metrics,
            [("train_loss".to_string(), 0.25), ("test_loss".into(), 0.5)]
        );
        assert_eq!(
            (a.at, a.approximate, a.note.as_deref()),
            (At::Final, false, None)
        );
        assert_eq!(a.value("test_loss"), Some(0.5));
        assert_eq!(a.value("lr"), None);
        let b = p.for_config("b").unwrap();
        assert!(b.approximate);
        assert_eq!(b.note.as_deref(), Some("≈"));
        // c has no end-of-training row: its latest epoch stands for it.
        assert_eq!(p.for_config("c").unwrap().at, At::Epoch(30));
        assert_eq!(p.rows_for("c").count(), 2);
        assert_eq!(p.for_config("d").unwrap().at, At::Best);
        assert!(p.for_config("e").is_none());
        assert_eq!(parse("").unwrap(), Published::default());
    }

    #[test]
    fn malformed_rows_are_refused_naming_the_file_and_line() {
        let unknown = error("[[row]]\nconfig = \"a\"\nsource = \"s\"\ntest_los = 0.1\n");
        assert!(unknown.starts_with("pub.toml: "), "{unknown}");
        assert!(
            unknown.contains("test_los") && unknown.contains("line 4"),
            "{unknown}"
        );
        let duplicate = error(
            "[[row]]\nconfig = \"a\"\nsource = \"s\"\nlr = 0.1\n\n\
             [[row]]\nconfig = \"a\"\nsource = \"t\"\ntest_loss = 0.1\n",
        );
        assert_eq!(
            duplicate,
            "pub.toml: line 7: row for `a`: a second row for this config at the end of training"
        );
        let cases = [
            ("source = \"s\"", "no metric"),
            (
                "source = \"s\"\ntest_accuracy = 97.9",
                "accuracies are fractions",
            ),
            ("source = \"s\"\ntest_loss = -1.0", "finite number ≥ 0"),
            ("source = \"s\"\ntest_loss = nan", "finite number ≥ 0"),
            ("source = \"s\"\nlr = 0.0", "must be > 0"),
            ("source = \"s\"\nepoch = 0\nlr = 0.1", "counts from 1"),
            (
                "source = \"s\"\nbest = true\nepoch = 3\nlr = 0.1",
                "exclude each other",
            ),
            ("source = \"s\"\nbest = true\nlr = 0.1", "no best value"),
            ("test_loss = 0.1", "missing field `source`"),
        ];
        for (body, expected) in cases {
            let e = error(&format!("[[row]]\nconfig = \"a\"\n{body}\n"));
            assert!(e.starts_with("pub.toml: "), "{e}");
            assert!(e.contains(expected), "{body}: {e}");
        }
        let e = error("[[row]]\nconfig = \"x/a\"\nsource = \"s\"\nlr = 0.1\n");
        assert!(e.contains("line 2") && e.contains("stem"), "{e}");
        let e = error("[[rows]]\nconfig = \"a\"\n");
        assert!(e.contains("rows"), "{e}");
    }

    #[test]
    fn one_config_may_have_a_row_per_moment_but_not_two_at_one() {
        let ok = "[[row]]\nconfig = \"a\"\nsource = \"s\"\nepoch = 1\nlr = 0.1\n\
                  [[row]]\nconfig = \"a\"\nsource = \"s\"\nepoch = 10\nlr = 0.1\n\
                  [[row]]\nconfig = \"a\"\nsource = \"s\"\ntest_loss = 0.1\n\
                  [[row]]\nconfig = \"a\"\nsource = \"s\"\nbest = true\ntest_loss = 0.1\n";
        assert_eq!(parse(ok).unwrap().rows.len(), 4);
        let twice = format!("{ok}[[row]]\nconfig = \"a\"\nsource = \"s\"\nepoch = 10\nlr = 0.2\n");
        assert!(
            error(&twice)
                .contains("line 21: row for `a`: a second row for this config at epoch 10")
        );
    }

    #[test]
    fn the_builtin_file_parses() {
        let p = Published::builtin().unwrap();
        assert!(!p.rows.is_empty());
        assert!(p.rows.iter().all(|r| !r.metrics.is_empty()));
    }
}
