//! One table over many runs: `train summarize`.
//!
//! [`summarize`] makes one [`SummaryRow`] per experiment (the seeds of one config, gathered by
//! [`group_by_seed`]): how its runs ended, how long they trained, each metric of `epochs.csv` at
//! the end and at its best as mean ± sample standard deviation over the seeds, optionally at
//! given epochs (`--at`) and the first epoch a metric reaches a threshold (`--reach`), the time
//! per epoch, the final step size, and the papers' numbers for the config ([`Published`]) with
//! ours for the same moment of training. [`Summary::to_markdown`] prints it for reading (a
//! GitHub table, four significant digits), [`Summary::to_csv`] for scripts (full precision,
//! `_mean` / `_std` / `_n` columns).
//!
//! Conventions, the same in every column:
//! - a seed's value is a *finite* number of its `epochs.csv` (an empty cell, NaN or ±inf is no
//!   value); a seed without one is left out of the mean, and `n` says how many seeds have one;
//! - "final" is a seed's last epoch with a value; "best" its lowest loss or highest accuracy;
//! - the standard deviation is the sample one (n − 1), 0 for one seed ([`mean_std`]);
//! - the final step size is averaged arithmetically like the metrics (not geometrically), so
//!   that it reads as mean ± std beside the paper's "settles at ≈ 0.4".

use std::fmt::Write as _;

use crate::error::{ReportError, Result};
use crate::group::{Group, group_by_seed, mean_std, strip_seed_suffix};
use crate::published::{At, METRICS, Published};
use crate::run::Run;

/// The metric columns of `epochs.csv`, in table order: the published metrics but `lr`.
pub const EPOCH_METRICS: &[&str] = METRICS.split_at(METRICS.len() - 1).0;

/// The `status` words in the order a row counts them.
const STATUS_ORDER: [&str; 7] = [
    "completed",
    "stopped",
    "diverged",
    "interrupted",
    "failed",
    "unfinished",
    "unknown",
];

/// What to put in a summary beyond the fixed columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SummaryOptions {
    /// `--at`: epochs (from 1) at which to report every metric.
    pub at: Vec<u64>,
    /// `--reach`: thresholds whose first epoch to report.
    pub reach: Vec<Threshold>,
}

/// A `--reach METRIC=VALUE` threshold: a loss reaches it at or below `value`, an accuracy at or
/// above.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// One of [`EPOCH_METRICS`].
    pub metric: String,
    /// The value to reach.
    pub value: f64,
}

impl Threshold {
    /// Parses `test_accuracy=0.9`; errors name `--reach`.
    pub fn parse(text: &str) -> Result<Self> {
        let fail = |message: String| ReportError::option("--reach", message);
        let (metric, value) = text
            .split_once('=')
            .ok_or_else(|| fail(format!("`{text}` is not METRIC=VALUE")))?;
        let metric = metric.trim();
        if !EPOCH_METRICS.contains(&metric) {
            return Err(fail(format!(
                "unknown metric `{metric}` (one of {})",
                EPOCH_METRICS.join(", ")
            )));
        }
        let value: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| fail(format!("`{}` is not a finite number", value.trim())))?;
        Ok(Self {
            metric: metric.to_string(),
            value,
        })
    }

    /// Whether `value` reaches the threshold (≥ for an accuracy, ≤ for a loss).
    pub fn is_reached_by(&self, value: f64) -> bool {
        if higher_is_better(&self.metric) {
            value >= self.value
        } else {
            value <= self.value
        }
    }
}

/// Parses an `--at` list: `1,10,30`, epochs from 1, each once; errors name `--at`.
pub fn parse_epochs(text: &str) -> Result<Vec<u64>> {
    let mut epochs = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let epoch: u64 = part.parse().ok().filter(|&e| e >= 1).ok_or_else(|| {
            ReportError::option("--at", format!("`{part}` is not an epoch (1, 2, ...)"))
        })?;
        if epochs.contains(&epoch) {
            return Err(ReportError::option(
                "--at",
                format!("epoch {epoch} is listed twice"),
            ));
        }
        epochs.push(epoch);
    }
    Ok(epochs)
}

/// A quantity over the seeds of one experiment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// The mean over the seeds that have a value.
    pub mean: f64,
    /// Their sample standard deviation (0 for one seed).
    pub std: f64,
    /// How many seeds have a value.
    pub n: usize,
}

impl Stat {
    /// The statistics of the finite `values` (one per seed); `None` when none is finite.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let finite: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        mean_std(&finite).map(|(mean, std)| Self {
            mean,
            std,
            n: finite.len(),
        })
    }
}

/// One metric of one experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricStats {
    /// The `epochs.csv` column.
    pub metric: String,
    /// Each seed's last value.
    pub last: Option<Stat>,
    /// Each seed's best value (lowest loss, highest accuracy).
    pub best: Option<Stat>,
    /// Each seed's value at each epoch of [`SummaryOptions::at`], in that order.
    pub at: Vec<Option<Stat>>,
}

/// When the seeds of one experiment first reached one threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct ReachStats {
    /// The first epoch, over the seeds that reached it; `None` when none did.
    pub epoch: Option<Stat>,
    /// How many seeds reached it.
    pub reached: usize,
    /// How many seeds there are.
    pub seeds: usize,
}

/// One published number beside ours for the same moment of training.
#[derive(Debug, Clone, PartialEq)]
pub struct PaperValue {
    /// The metric key ([`METRICS`]).
    pub metric: String,
    /// When in training it is.
    pub at: At,
    /// The paper's value.
    pub value: f64,
    /// The paper says "about".
    pub approximate: bool,
    /// Ours: the seeds' value at the same moment (final, best or at the epoch).
    pub ours: Option<Stat>,
    /// The paper and table.
    pub source: String,
    /// The paper's dataset when it is not the run's (`None` when they agree or the published
    /// row does not say).
    pub other_dataset: Option<String>,
    /// The published row's note.
    pub note: Option<String>,
}

/// One experiment: the runs of one config under its seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    /// The group's label ([`Group::label`]).
    pub label: String,
    /// The config's name (`run.name` of its first run).
    pub config: String,
    /// `optimizer.kind`.
    pub optimizer: Option<String>,
    /// `model.kind`.
    pub model: Option<String>,
    /// `data.dataset`.
    pub dataset: Option<String>,
    /// How many runs (seeds).
    pub seeds: usize,
    /// How many runs ended each way, by [`crate::run::Status::label`] (only those that
    /// occur), in the order completed, stopped, diverged, interrupted, failed, unfinished,
    /// unknown.
    pub status: Vec<(String, usize)>,
    /// Rows of `epochs.csv` per seed (0 for a run without one).
    pub epochs: Stat,
    /// One per [`Summary::metrics`], in that order.
    pub metrics: Vec<MetricStats>,
    /// One per [`Summary::reach`], in that order.
    pub reach: Vec<ReachStats>,
    /// The mean of the `seconds` column over every epoch of every seed.
    pub seconds_per_epoch: Option<f64>,
    /// Each seed's last `lr` of `epochs.csv`, averaged arithmetically.
    pub lr: Option<Stat>,
    /// The published numbers for [`SummaryRow::config`], in file order. Left empty for a sweep
    /// grid's runs (directories named `<config>-<key>=<value>…`): they changed the config the
    /// paper ran.
    pub paper: Vec<PaperValue>,
}

impl SummaryRow {
    /// The statistics of `metric`, if it is one of [`Summary::metrics`].
    pub fn metric(&self, metric: &str) -> Option<&MetricStats> {
        self.metrics.iter().find(|m| m.metric == metric)
    }

    /// "3 completed", "2 completed, 1 diverged".
    pub fn status_text(&self) -> String {
        self.status
            .iter()
            .map(|(label, n)| format!("{n} {label}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The table: one row per experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The `epochs.csv` metric columns that have a value in some run, in [`EPOCH_METRICS`]
    /// order: a regression table has no accuracy columns.
    pub metrics: Vec<String>,
    /// The `--at` epochs.
    pub at: Vec<u64>,
    /// The `--reach` thresholds.
    pub reach: Vec<Threshold>,
    /// One per group of [`group_by_seed`], in order of first appearance.
    pub rows: Vec<SummaryRow>,
}

/// Summarizes `runs` (as [`crate::run::find_runs`] returns them): one row per group of seeds,
/// beside the `published` numbers of its config.
pub fn summarize(runs: &[Run], options: &SummaryOptions, published: &Published) -> Summary {
    let metrics: Vec<String> = EPOCH_METRICS
        .iter()
        .filter(|m| runs.iter().any(|r| last_value(r, m).is_some()))
        .map(|m| m.to_string())
        .collect();
    let rows = group_by_seed(runs)
        .iter()
        .map(|group| summarize_group(group, &metrics, options, published))
        .collect();
    Summary {
        metrics,
        at: options.at.clone(),
        reach: options.reach.clone(),
        rows,
    }
}

fn summarize_group(
    group: &Group<'_>,
    metrics: &[String],
    options: &SummaryOptions,
    published: &Published,
) -> SummaryRow {
    let runs = &group.runs;
    let first = runs[0];
    let config = first.config_name();
    let over_seeds = |f: &dyn Fn(&Run) -> Option<f64>| Stat::of(runs.iter().filter_map(|r| f(r)));

    let status = STATUS_ORDER
        .iter()
        .map(|label| {
            let n = runs.iter().filter(|r| r.status.label() == *label).count();
            (label.to_string(), n)
        })
        .filter(|&(_, n)| n > 0)
        .collect();
    let epochs = Stat::of(
        runs.iter()
            .map(|r| r.epochs.as_ref().map_or(0, |e| e.len()) as f64),
    )
    .unwrap_or(Stat {
        mean: 0.0,
        std: 0.0,
        n: 0,
    });
    let metric_stats = metrics
        .iter()
        .map(|m| MetricStats {
            metric: m.clone(),
            last: over_seeds(&|r| last_value(r, m)),
            best: over_seeds(&|r| best_value(r, m)),
            at: options
                .at
                .iter()
                .map(|&e| over_seeds(&|r| value_at_epoch(r, m, e)))
                .collect(),
        })
        .collect();
    let reach = options
        .reach
        .iter()
        .map(|threshold| {
            let epoch = Stat::of(runs.iter().filter_map(|r| first_reach(r, threshold)));
            ReachStats {
                reached: epoch.map_or(0, |s| s.n),
                epoch,
                seeds: runs.len(),
            }
        })
        .collect();
    let seconds: Vec<f64> = runs
        .iter()
        .filter_map(|r| epoch_column(r, "seconds"))
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let seconds_per_epoch =
        (!seconds.is_empty()).then(|| seconds.iter().sum::<f64>() / seconds.len() as f64);

    let grid_variant = strip_seed_suffix(&first.name)
        .strip_prefix(config.as_str())
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|rest| rest.contains('='));
    let dataset = first.config_text("data.dataset");
    let run_dataset = dataset.as_deref();
    let paper = if grid_variant {
        Vec::new()
    } else {
        published
            .rows_for(&config)
            .flat_map(|row| {
                row.metrics.iter().map(move |(metric, value)| PaperValue {
                    metric: metric.clone(),
                    at: row.at,
                    value: *value,
                    approximate: row.approximate,
                    ours: over_seeds(&|r| value_when(r, metric, row.at)),
                    source: row.source.clone(),
                    other_dataset: row
                        .dataset
                        .clone()
                        .filter(|d| Some(d.as_str()) != run_dataset),
                    note: row.note.clone(),
                })
            })
            .collect()
    };

    SummaryRow {
        label: group.label.clone(),
        config,
        optimizer: first.config_text("optimizer.kind"),
        model: first.config_text("model.kind"),
        dataset,
        seeds: runs.len(),
        status,
        epochs,
        metrics: metric_stats,
        reach,
        seconds_per_epoch,
        lr: over_seeds(&|r| last_value(r, "lr")),
        paper,
    }
}

/// Whether a larger value is better: accuracies.
fn higher_is_better(metric: &str) -> bool {
    metric.ends_with("_accuracy")
}

fn epoch_column<'a>(run: &'a Run, name: &str) -> Option<&'a [f64]> {
    run.epochs.as_ref()?.column(name)
}

/// The run's last finite value of an `epochs.csv` column.
fn last_value(run: &Run, metric: &str) -> Option<f64> {
    epoch_column(run, metric)?
        .iter()
        .rev()
        .copied()
        .find(|v| v.is_finite())
}

/// The run's lowest (loss) or highest (accuracy) finite value.
fn best_value(run: &Run, metric: &str) -> Option<f64> {
    let values = epoch_column(run, metric)?.iter().copied();
    let finite = values.filter(|v| v.is_finite());
    if higher_is_better(metric) {
        finite.reduce(f64::max)
    } else {
        finite.reduce(f64::min)
    }
}

/// The run's value of `metric` on the row whose `epoch` is `epoch`.
fn value_at_epoch(run: &Run, metric: &str, epoch: u64) -> Option<f64> {
    let epochs = epoch_column(run, "epoch")?;
    let row = epochs.iter().position(|&e| e == epoch as f64)?;
    epoch_column(run, metric)?
        .get(row)
        .copied()
        .filter(|v| v.is_finite())
}

/// The run's value at a moment of training.
fn value_when(run: &Run, metric: &str, at: At) -> Option<f64> {
    match at {
        At::Final => last_value(run, metric),
        At::Best => best_value(run, metric),
        At::Epoch(e) => value_at_epoch(run, metric, e),
    }
}

/// The first epoch whose value reaches the threshold.
fn first_reach(run: &Run, threshold: &Threshold) -> Option<f64> {
    let epochs = epoch_column(run, "epoch")?;
    let values = epoch_column(run, &threshold.metric)?;
    epochs
        .iter()
        .zip(values)
        .find(|&(_, &v)| v.is_finite() && threshold.is_reached_by(v))
        .map(|(&e, _)| e)
}

/// A metric key as a table header: `test_loss` → `test loss`, `validation_accuracy` →
/// `val acc`.
fn metric_label(metric: &str) -> String {
    metric
        .replace("validation", "val")
        .replace("accuracy", "acc")
        .replace('_', " ")
}

/// `x` with four significant digits (trailing zeros dropped); from 1000 to 1e7 with one decimal
/// (`12859.6`); below 1e-4 and from 1e7 in scientific notation (`1.235e-5`).
pub fn format_number(x: f64) -> String {
    fn trim(s: &str) -> &str {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.')
        } else {
            s
        }
    }
    if x == 0.0 {
        return "0".into();
    }
    if !x.is_finite() {
        return x.to_string();
    }
    let a = x.abs();
    if (1e-4..1e3).contains(&a) {
        let magnitude = a.log10().floor() as i64;
        let decimals = (3 - magnitude).max(0) as usize;
        trim(&format!("{x:.decimals$}")).to_string()
    } else if (1e3..1e7).contains(&a) {
        trim(&format!("{x:.1}")).to_string()
    } else {
        let s = format!("{x:.3e}");
        match s.split_once('e') {
            Some((mantissa, exponent)) => format!("{}e{exponent}", trim(mantissa)),
            None => s,
        }
    }
}

/// `0.9812 ± 0.001`, one seed `0.9812`, with `(2/3)` when not every seed has a value.
fn format_stat(stat: Option<Stat>, seeds: usize) -> String {
    let Some(s) = stat else {
        return String::new();
    };
    let mut text = format_number(s.mean);
    if s.n > 1 {
        let _ = write!(text, " ± {}", format_number(s.std));
    }
    if s.n < seeds {
        let _ = write!(text, " ({}/{seeds})", s.n);
    }
    text
}

/// The paper cell of a row: `train loss 0.022, test loss 0.022 (LossGrad Table 3)`; values at an
/// epoch or at their best carry ours in brackets, as the final-value columns do not show them.
fn paper_cell(row: &SummaryRow) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut items: Vec<String> = Vec::new();
    for (i, p) in row.paper.iter().enumerate() {
        let mut item = match p.at {
            At::Best => format!("best {}", metric_label(&p.metric)),
            At::Final => metric_label(&p.metric),
            At::Epoch(e) => format!("{} @{e}", metric_label(&p.metric)),
        };
        let approx = if p.approximate { "≈" } else { "" };
        let _ = write!(item, " {approx}{}", p.value);
        if p.at != At::Final {
            let ours = format_stat(p.ours, row.seeds);
            if !ours.is_empty() {
                let _ = write!(item, " [ours {ours}]");
            }
        }
        items.push(item);
        let last_of_source = row.paper.get(i + 1).is_none_or(|n| n.source != p.source);
        if last_of_source {
            let on = p
                .other_dataset
                .as_ref()
                .map_or_else(String::new, |d| format!(", on {d}"));
            parts.push(format!("{} ({}{on})", items.join(", "), p.source));
            items.clear();
        }
    }
    parts.join("; ")
}

/// A table being built column by column.
struct Table<'a> {
    rows: &'a [SummaryRow],
    headers: Vec<String>,
    cells: Vec<Vec<String>>,
}

impl<'a> Table<'a> {
    fn new(rows: &'a [SummaryRow]) -> Self {
        Self {
            rows,
            headers: Vec::new(),
            cells: vec![Vec::new(); rows.len()],
        }
    }

    fn column(&mut self, header: impl Into<String>, cell: impl Fn(&SummaryRow) -> String) {
        self.headers.push(header.into());
        for (row, cells) in self.rows.iter().zip(&mut self.cells) {
            cells.push(cell(row));
        }
    }

    /// `_mean`, `_std` and `_n` columns of a statistic.
    fn stat_columns(&mut self, prefix: &str, stat: impl Fn(&SummaryRow) -> Option<Stat>) {
        let number = |v: Option<f64>| v.map_or_else(String::new, |v| v.to_string());
        self.column(format!("{prefix}_mean"), |r| {
            number(stat(r).map(|s| s.mean))
        });
        self.column(format!("{prefix}_std"), |r| number(stat(r).map(|s| s.std)));
        self.column(format!("{prefix}_n"), |r| {
            stat(r).map_or(0, |s| s.n).to_string()
        });
    }
}

impl Summary {
    /// A GitHub-markdown table: the experiment, how its runs ended, each metric's final value
    /// with the paper's numbers beside them, each metric's best, the `--at` and `--reach`
    /// columns, seconds per epoch. Numbers have four significant digits ([`format_number`]), as
    /// mean ± std over seeds with `(k/n)` when only k of n seeds have one. The `config` column
    /// appears only where some row's config is not its label; `lr`, `paper` and `s/epoch`
    /// only where some row has one.
    pub fn to_markdown(&self) -> String {
        let rows = &self.rows;
        let mut t = Table::new(rows);
        t.column("run", |r| r.label.clone());
        if rows.iter().any(|r| r.config != r.label) {
            t.column("config", |r| r.config.clone());
        }
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        t.column("optimizer", |r| text(&r.optimizer));
        t.column("model", |r| text(&r.model));
        t.column("dataset", |r| text(&r.dataset));
        t.column("seeds", |r| r.seeds.to_string());
        t.column("status", SummaryRow::status_text);
        t.column("epochs", |r| {
            if r.epochs.std == 0.0 {
                format!("{}", r.epochs.mean)
            } else {
                format_stat(Some(r.epochs), r.seeds)
            }
        });
        for (i, m) in self.metrics.iter().enumerate() {
            t.column(metric_label(m), |r| format_stat(r.metrics[i].last, r.seeds));
        }
        if rows.iter().any(|r| r.lr.is_some()) {
            t.column("lr", |r| format_stat(r.lr, r.seeds));
        }
        if rows.iter().any(|r| !r.paper.is_empty()) {
            t.column("paper", paper_cell);
        }
        for (i, m) in self.metrics.iter().enumerate() {
            t.column(format!("best {}", metric_label(m)), |r| {
                format_stat(r.metrics[i].best, r.seeds)
            });
        }
        for (j, e) in self.at.iter().enumerate() {
            for (i, m) in self.metrics.iter().enumerate() {
                t.column(format!("{} @{e}", metric_label(m)), |r| {
                    format_stat(r.metrics[i].at[j], r.seeds)
                });
            }
        }
        for (k, th) in self.reach.iter().enumerate() {
            let op = if higher_is_better(&th.metric) {
                "≥"
            } else {
                "≤"
            };
            let header = format!("first epoch {} {op} {}", metric_label(&th.metric), th.value);
            t.column(header, |r| {
                let reach = &r.reach[k];
                let counts = format!("{}/{} reached", reach.reached, reach.seeds);
                match reach.epoch {
                    Some(s) => format!("{} ({counts})", format_stat(Some(s), s.n)),
                    None => counts,
                }
            });
        }
        if rows.iter().any(|r| r.seconds_per_epoch.is_some()) {
            t.column("s/epoch", |r| {
                r.seconds_per_epoch.map_or_else(String::new, format_number)
            });
        }

        let escape = |s: &str| s.replace('|', "\\|");
        let line = |cells: &[String]| {
            let cells: Vec<String> = cells.iter().map(|c| escape(c)).collect();
            format!("| {} |\n", cells.join(" | "))
        };
        let mut out = line(&t.headers);
        out.push_str(&format!("|{}\n", "---|".repeat(t.headers.len())));
        for cells in &t.cells {
            out.push_str(&line(cells));
        }
        out
    }

    /// The same table as CSV with one header line, for scripts: every statistic as `_mean`,
    /// `_std` and `_n` columns (`<metric>_final_*`, `<metric>_best_*`, `<metric>_epoch<E>_*`,
    /// `reach_<metric>_<value>_epoch_*` with `_n` the seeds that reached it, `lr_final_*`),
    /// `status_<word>` counts, the paper's numbers as `paper_<metric>`, `paper_<metric>_best`
    /// and `paper_<metric>_epoch<E>` with `paper_source`, `paper_dataset` (the paper's dataset where it is not the run's) and
    /// `paper_note`. Numbers in full
    /// precision (the shortest form that parses back to the same `f64`); empty cells where
    /// there is no value.
    pub fn to_csv(&self) -> String {
        let rows = &self.rows;
        let mut t = Table::new(rows);
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        t.column("label", |r| r.label.clone());
        t.column("config", |r| r.config.clone());
        t.column("optimizer", |r| text(&r.optimizer));
        t.column("model", |r| text(&r.model));
        t.column("dataset", |r| text(&r.dataset));
        t.column("seeds", |r| r.seeds.to_string());
        t.column("status", SummaryRow::status_text);
        for word in STATUS_ORDER {
            if rows.iter().any(|r| r.status.iter().any(|(w, _)| w == word)) {
                t.column(format!("status_{word}"), |r| {
                    let n = r.status.iter().find(|(w, _)| w == word).map_or(0, |p| p.1);
                    n.to_string()
                });
            }
        }
        t.column("epochs_mean", |r| r.epochs.mean.to_string());
        t.column("epochs_std", |r| r.epochs.std.to_string());
        for (i, m) in self.metrics.iter().enumerate() {
            t.stat_columns(&format!("{m}_final"), |r| r.metrics[i].last);
            t.stat_columns(&format!("{m}_best"), |r| r.metrics[i].best);
        }
        for (j, e) in self.at.iter().enumerate() {
            for (i, m) in self.metrics.iter().enumerate() {
                t.stat_columns(&format!("{m}_epoch{e}"), |r| r.metrics[i].at[j]);
            }
        }
        for (k, th) in self.reach.iter().enumerate() {
            let prefix = format!("reach_{}_{}_epoch", th.metric, th.value);
            let number = |v: Option<f64>| v.map_or_else(String::new, |v| v.to_string());
            t.column(format!("{prefix}_mean"), |r| {
                number(r.reach[k].epoch.map(|s| s.mean))
            });
            t.column(format!("{prefix}_std"), |r| {
                number(r.reach[k].epoch.map(|s| s.std))
            });
            t.column(format!("{prefix}_n"), |r| r.reach[k].reached.to_string());
        }
        t.column("seconds_per_epoch", |r| {
            r.seconds_per_epoch
                .map_or_else(String::new, |v| v.to_string())
        });
        t.stat_columns("lr_final", |r| r.lr);

        let mut moments: Vec<(usize, At)> = rows
            .iter()
            .flat_map(|r| r.paper.iter())
            .map(|p| {
                let index = METRICS.iter().position(|m| *m == p.metric).unwrap_or(0);
                (index, p.at)
            })
            .collect();
        moments.sort();
        moments.dedup();
        for (index, at) in moments {
            let metric = METRICS[index];
            let header = match at {
                At::Final => format!("paper_{metric}"),
                At::Best => format!("paper_{metric}_best"),
                At::Epoch(e) => format!("paper_{metric}_epoch{e}"),
            };
            t.column(header, |r| {
                r.paper
                    .iter()
                    .find(|p| p.metric == metric && p.at == at)
                    .map_or_else(String::new, |p| p.value.to_string())
            });
        }
        if rows.iter().any(|r| !r.paper.is_empty()) {
            t.column("paper_source", |r| {
                let mut sources: Vec<&str> = Vec::new();
                for p in &r.paper {
                    if !sources.contains(&p.source.as_str()) {
                        sources.push(&p.source);
                    }
                }
                sources.join("; ")
            });
            t.column("paper_dataset", |r| {
                r.paper
                    .iter()
                    .find_map(|p| p.other_dataset.clone())
                    .unwrap_or_default()
            });
            t.column("paper_note", |r| {
                let several = r.paper.iter().any(|p| p.at != r.paper[0].at);
                let mut notes: Vec<String> = Vec::new();
                for p in &r.paper {
                    let Some(note) = &p.note else { continue };
                    let note = match p.at {
                        _ if !several => note.clone(),
                        At::Final => format!("final: {note}"),
                        At::Best => format!("best: {note}"),
                        At::Epoch(e) => format!("epoch {e}: {note}"),
                    };
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                }
                notes.join("; ")
            });
        }

        let mut out = csv_line(&t.headers);
        for cells in &t.cells {
            out.push_str(&csv_line(cells));
        }
        out
    }
}

/// One CSV line; a cell with a comma, quote or line break is quoted (RFC 4180).
fn csv_line(cells: &[String]) -> String {
    let quoted: Vec<String> = cells
        .iter()
        .map(|c| {
            if c.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.clone()
            }
        })
        .collect();
    format!("{}\n", quoted.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{Curves, Status};
    use std::path::{Path, PathBuf};

    fn run(name: &str, config: &str, epochs: &str, status: Status) -> Run {
        Run {
            dir: PathBuf::from(name),
            name: name.into(),
            config: config.parse().unwrap(),
            steps: None,
            epochs: Some(Curves::parse(epochs, Path::new("epochs.csv")).unwrap()),
            layers: None,
            status,
            status_text: String::new(),
        }
    }

    #[test]
    fn numbers_print_with_four_significant_digits() {
        let cases = [
            (0.022134, "0.02213"),
            (0.0004, "0.0004"),
            (0.98, "0.98"),
            (1.0, "1"),
            (2.7371, "2.737"),
            (123.456, "123.5"),
            (999.96, "1000"),
            (12859.591, "12859.6"),
            (-0.5, "-0.5"),
            (0.0, "0"),
            (1.23456e-5, "1.235e-5"),
            (1e-7, "1e-7"),
            (2.5e8, "2.5e8"),
        ];
        for (x, expected) in cases {
            assert_eq!(format_number(x), expected, "{x}");
        }
        assert_eq!(format_number(f64::NAN), "NaN");
    }

    #[test]
    fn stats_show_the_spread_and_the_seeds_that_have_a_value() {
        let s = Stat::of([1.0, 2.0, 3.0, f64::NAN]).unwrap();
        assert_eq!((s.mean, s.std, s.n), (2.0, 1.0, 3));
        assert_eq!(format_stat(Some(s), 3), "2 ± 1");
        assert_eq!(format_stat(Some(s), 4), "2 ± 1 (3/4)");
        assert_eq!(format_stat(Stat::of([0.5]), 1), "0.5");
        assert_eq!(format_stat(Stat::of([0.5]), 2), "0.5 (1/2)");
        assert_eq!(format_stat(None, 2), "");
        assert!(Stat::of([f64::INFINITY]).is_none());
    }

    #[test]
    fn thresholds_parse_and_point_the_right_way() {
        let t = Threshold::parse("test_accuracy=0.9").unwrap();
        assert_eq!((t.metric.as_str(), t.value), ("test_accuracy", 0.9));
        assert!(t.is_reached_by(0.9) && t.is_reached_by(0.95) && !t.is_reached_by(0.89));
        let t = Threshold::parse(" train_loss = 0.05 ").unwrap();
        assert!(t.is_reached_by(0.05) && t.is_reached_by(0.01) && !t.is_reached_by(0.06));
        for (bad, expected) in [
            ("test_accuracy", "not METRIC=VALUE"),
            ("lr=0.1", "unknown metric `lr`"),
            ("test_acc=0.1", "unknown metric"),
            ("test_loss=abc", "`abc` is not a finite number"),
            ("test_loss=inf", "not a finite number"),
        ] {
            let e = Threshold::parse(bad).unwrap_err().to_string();
            assert!(
                e.starts_with("--reach: ") && e.contains(expected),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn at_lists_parse_epochs_from_one_each_once() {
        assert_eq!(parse_epochs("1,10, 30").unwrap(), [1, 10, 30]);
        for (bad, expected) in [
            ("0", "`0` is not an epoch"),
            ("1,,2", "`` is not an epoch"),
            ("x", "`x`"),
            ("-1", "`-1`"),
            ("3,3", "epoch 3 is listed twice"),
        ] {
            let e = parse_epochs(bad).unwrap_err().to_string();
            assert!(
                e.starts_with("--at: ") && e.contains(expected),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn per_run_values_take_finite_numbers_only() {
        let r = run(
            "x",
            "[run]\nname='x'",
            "epoch,train_loss,test_accuracy,lr,seconds\n1,0.5,0.8,0.1,2\n2,0.3,,0.2,2\n\
             3,NaN,0.7,0.4,2\n",
            Status::Completed,
        );
        assert_eq!(last_value(&r, "train_loss"), Some(0.3));
        assert_eq!(last_value(&r, "test_accuracy"), Some(0.7));
        assert_eq!(best_value(&r, "train_loss"), Some(0.3));
        assert_eq!(best_value(&r, "test_accuracy"), Some(0.8));
        assert_eq!(value_at_epoch(&r, "train_loss", 1), Some(0.5));
        assert_eq!(value_at_epoch(&r, "test_accuracy", 2), None);
        assert_eq!(value_at_epoch(&r, "train_loss", 4), None);
        assert_eq!(last_value(&r, "validation_loss"), None);
        let reach = |s: &str| first_reach(&r, &Threshold::parse(s).unwrap());
        assert_eq!(reach("train_loss=0.4"), Some(2.0));
        assert_eq!(reach("test_accuracy=0.75"), Some(1.0));
        assert_eq!(reach("test_accuracy=0.9"), None);
    }

    #[test]
    fn a_sweep_grid_variant_gets_no_paper_numbers() {
        let published = Published::parse(
            "[[row]]\nconfig = \"x\"\nsource = \"P T1\"\ntrain_loss = 0.25\n",
            Path::new("p.toml"),
        )
        .unwrap();
        let epochs = "epoch,train_loss\n1,0.5\n";
        let runs = [
            run(
                "x-seed0",
                "[run]\nname='x'\nseed=0",
                epochs,
                Status::Completed,
            ),
            run(
                "x-lr=0.1-seed0",
                "[run]\nname='x'\nseed=0\n[optimizer]\nlr=0.1",
                epochs,
                Status::Completed,
            ),
        ];
        let s = summarize(&runs, &SummaryOptions::default(), &published);
        assert_eq!(s.rows.len(), 2);
        assert_eq!(s.rows[0].paper.len(), 1);
        assert_eq!(s.rows[0].paper[0].ours.unwrap().mean, 0.5);
        assert!(s.rows[1].paper.is_empty());
        assert_eq!(
            paper_cell(&s.rows[0]),
            "train loss 0.25 (P T1)",
            "final values carry no inline ours: the final columns show them"
        );
    }

    #[test]
    fn the_paper_cell_groups_by_source_and_shows_ours_for_other_moments() {
        let published = Published::parse(
            "[[row]]\nconfig = \"x\"\nsource = \"A\"\nepoch = 1\ntest_accuracy = 0.9\n\
             [[row]]\nconfig = \"x\"\nsource = \"A\"\nepoch = 2\ntest_accuracy = 0.95\n\
             [[row]]\nconfig = \"x\"\nsource = \"B\"\nbest = true\ntest_accuracy = 0.99\n\
             [[row]]\nconfig = \"x\"\nsource = \"C\"\napproximate = true\nlr = 0.4\n",
            Path::new("p.toml"),
        )
        .unwrap();
        let runs = [
            run(
                "x-seed0",
                "[run]\nname='x'\nseed=0",
                "epoch,test_accuracy,lr\n1,0.8,0.3\n2,0.9,0.5\n",
                Status::Completed,
            ),
            run(
                "x-seed1",
                "[run]\nname='x'\nseed=1",
                "epoch,test_accuracy,lr\n1,0.6,0.5\n",
                Status::Completed,
            ),
        ];
        let s = summarize(&runs, &SummaryOptions::default(), &published);
        assert_eq!(
            paper_cell(&s.rows[0]),
            "test acc @1 0.9 [ours 0.7 ± 0.1414], test acc @2 0.95 [ours 0.9 (1/2)] (A); \
             best test acc 0.99 [ours 0.75 ± 0.2121] (B); lr ≈0.4 (C)"
        );
    }
}
