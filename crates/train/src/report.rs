//! `train plot` and `train summarize`: the command-line side of the `steplab-report` crate.
//!
//! Both read run directories (or folders of them, such as a sweep's) and never write into them.

use std::path::PathBuf;

use anyhow::Context;
use steplab_report::ReportError;
use steplab_report::plot::{Panel, PlotOptions, XAxis};
use steplab_report::published::Published;
use steplab_report::run::find_runs;
use steplab_report::summary::{SummaryOptions, Threshold, summarize};

use crate::config::ConfigError;

/// Arguments of `train plot`.
#[derive(clap::Args, Debug, Clone)]
pub struct PlotArgs {
    /// Run directories, or folders holding them (a sweep's folder, a results folder).
    #[arg(value_name = "RUN_DIR", required = true)]
    pub runs: Vec<PathBuf>,
    /// The picture to write: `.png` or `.svg`.
    #[arg(long, value_name = "FILE", default_value = "plot.png")]
    pub out: PathBuf,
    /// The panels, comma-separated: train_loss, eval_loss, accuracy, lr, layers (default: every
    /// panel some run has data for).
    #[arg(long, value_name = "LIST")]
    pub panels: Option<String>,
    /// The x axis of the training-loss and step-size panels: `step` (every update) or `epoch`
    /// (epoch training loss, step size averaged per epoch).
    #[arg(long, value_name = "AXIS", default_value = "step", value_parser = ["step", "epoch"])]
    pub x: String,
    /// Only the first N updates on the step axis (LossGrad Figs. 3-4: h over the first 800).
    #[arg(long, value_name = "N")]
    pub first: Option<u64>,
    /// Draw every run on its own instead of each experiment's seeds as mean and band.
    #[arg(long)]
    pub each_run: bool,
    /// Linear y axes for losses and step sizes (default: log axes, seed means in log space).
    #[arg(long)]
    pub linear: bool,
    /// The picture's width in pixels (its height follows from the panels).
    #[arg(long, value_name = "PIXELS", default_value_t = 1400)]
    pub width: u32,
    /// A title above the panels.
    #[arg(long)]
    pub title: Option<String>,
}

/// Arguments of `train summarize`.
#[derive(clap::Args, Debug, Clone)]
pub struct SummarizeArgs {
    /// A results folder (or run directories): every run directory below it becomes part of one
    /// table, seeds of one experiment as one row.
    #[arg(value_name = "RESULTS_DIR", required = true)]
    pub runs: Vec<PathBuf>,
    /// `md` (a Markdown table) or `csv` (mean, std and count columns, full precision).
    #[arg(long, value_name = "FORMAT", default_value = "md", value_parser = ["md", "csv"])]
    pub format: String,
    /// Metrics at these epochs too, comma-separated (L4 Table 2 reads epoch 10).
    #[arg(long, value_name = "EPOCHS", value_delimiter = ',')]
    pub at: Vec<u64>,
    /// Epochs until a metric reaches a value, e.g. `test_accuracy=0.98` (≥ for accuracies, ≤ for
    /// losses; repeatable).
    #[arg(long, value_name = "METRIC=VALUE")]
    pub reach: Vec<String>,
    /// The published numbers to print beside the runs (default: the file shipped with the tool,
    /// `results/published.toml`).
    #[arg(long, value_name = "FILE")]
    pub published: Option<PathBuf>,
    /// Write the table here instead of to standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// A bad option value is a command-line error (exit 2); the rest are failures (exit 1).
fn classify(error: ReportError) -> anyhow::Error {
    match error {
        ReportError::Option { .. } => ConfigError(error.to_string()).into(),
        other => other.into(),
    }
}

/// Runs `train plot`.
pub fn plot(args: &PlotArgs) -> anyhow::Result<()> {
    let panels = args
        .panels
        .as_deref()
        .map(Panel::parse_list)
        .transpose()
        .map_err(classify)?;
    let options = PlotOptions {
        panels,
        x: if args.x == "epoch" {
            XAxis::Epoch
        } else {
            XAxis::Step
        },
        first: args.first,
        seed_mean: !args.each_run,
        linear: args.linear,
        width: args.width,
        title: args.title.clone(),
    };
    let runs = find_runs(&args.runs).map_err(classify)?;
    let report = steplab_report::plot::plot(&runs, &options, &args.out).map_err(classify)?;
    let names: Vec<&str> = report.panels.iter().map(|p| p.name()).collect();
    eprintln!(
        "{}: {} runs as {} curves, panels {} ({}×{} px{})",
        args.out.display(),
        runs.len(),
        report.legend.len(),
        names.join(", "),
        report.size.0,
        report.size.1,
        if report.window > 1 {
            format!(
                ", step curves averaged over windows of {} updates",
                report.window
            )
        } else {
            String::new()
        }
    );
    for panel in &report.empty {
        eprintln!("warning: panel {}: no run has data for it", panel.name());
    }
    Ok(())
}

/// Runs `train summarize`.
pub fn summarize_command(args: &SummarizeArgs) -> anyhow::Result<()> {
    let reach = args
        .reach
        .iter()
        .map(|r| Threshold::parse(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(classify)?;
    let published = match &args.published {
        Some(path) => Published::read(path).map_err(classify)?,
        None => Published::builtin().map_err(classify)?,
    };
    let runs = find_runs(&args.runs).map_err(classify)?;
    let options = SummaryOptions {
        at: args.at.clone(),
        reach,
    };
    let summary = summarize(&runs, &options, &published);
    let text = if args.format == "csv" {
        summary.to_csv()
    } else {
        summary.to_markdown()
    };
    match &args.out {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}
