//! Loss and step-size curves of run directories as one PNG or SVG picture (`train plot`).
//!
//! The picture is a grid of panels ([`Panel`]): training loss, validation/test loss, accuracy,
//! step size, per-tensor step sizes. Each experiment (a [`Group`] of seeds) is one colour: its
//! seeds' mean as a line and their min-max as a shaded band, averaged in log space on log axes
//! (losses and step sizes, as the L4 paper plots them). A run that diverged is marked with a
//! cross where its curve stops. Curves with more than [`MAX_POINTS`] updates are averaged over
//! windows of consecutive updates, aligned across runs, so that a 20,000-step run stays readable
//! and its SVG small.
//!
//! Text is drawn with DejaVu Sans compiled into the binary: servers and CI machines have no system
//! fonts.

mod draw;

use std::path::Path;

use crate::error::{ReportError, Result};
use crate::group::{Averaging, Band, Group, group_by_seed, seed_band, window_means};
use crate::run::Run;

/// The most points a step curve keeps before it is averaged over windows of updates.
pub const MAX_POINTS: usize = 1000;

/// One panel of the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    /// The training loss of each update (`steps.csv` `loss`), or of each epoch with
    /// [`XAxis::Epoch`] (`epochs.csv` `train_loss`).
    TrainLoss,
    /// Validation (solid) and test (dashed) loss per epoch.
    EvalLoss,
    /// Training (dotted), validation (solid) and test (dashed) accuracy per epoch.
    Accuracy,
    /// The step size of each update (`steps.csv` `lr`), or its geometric mean per epoch with
    /// [`XAxis::Epoch`].
    StepSize,
    /// The per-tensor step sizes of `layers.csv`: their geometric mean over tensors and the
    /// smallest and largest tensor's.
    Layers,
}

impl Panel {
    /// Every panel, in drawing order.
    pub const ALL: [Panel; 5] = [
        Self::TrainLoss,
        Self::EvalLoss,
        Self::Accuracy,
        Self::StepSize,
        Self::Layers,
    ];

    /// The panel's name on the command line (`--panels`).
    pub fn name(self) -> &'static str {
        match self {
            Self::TrainLoss => "train_loss",
            Self::EvalLoss => "eval_loss",
            Self::Accuracy => "accuracy",
            Self::StepSize => "lr",
            Self::Layers => "layers",
        }
    }

    /// Parses a comma-separated `--panels` list.
    pub fn parse_list(text: &str) -> Result<Vec<Panel>> {
        let mut panels = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let panel = Self::ALL
                .into_iter()
                .find(|p| p.name() == part)
                .ok_or_else(|| {
                    let names: Vec<&str> = Self::ALL.iter().map(|p| p.name()).collect();
                    ReportError::option(
                        "--panels",
                        format!("unknown panel `{part}` (one of {})", names.join(", ")),
                    )
                })?;
            if !panels.contains(&panel) {
                panels.push(panel);
            }
        }
        if panels.is_empty() {
            return Err(ReportError::option("--panels", "no panel named"));
        }
        Ok(panels)
    }
}

/// What the training-loss and step-size panels are drawn against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XAxis {
    /// Every update (`steps.csv`).
    #[default]
    Step,
    /// Every epoch: `epochs.csv`'s training loss, the step size's geometric mean per epoch.
    Epoch,
}

/// The picture's file format, from the output file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A PNG bitmap.
    Png,
    /// An SVG drawing (text as text, so the legend's names are searchable).
    Svg,
}

impl Format {
    /// The format of `path` by its extension (`.png`, `.svg`, any case).
    pub fn of(path: &Path) -> Result<Self> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("png") => Ok(Self::Png),
            Some("svg") => Ok(Self::Svg),
            _ => Err(ReportError::option(
                "--out",
                format!("{}: the file must end in .png or .svg", path.display()),
            )),
        }
    }
}

/// How to draw.
#[derive(Debug, Clone)]
pub struct PlotOptions {
    /// The panels to draw; `None` draws every panel some run has data for.
    pub panels: Option<Vec<Panel>>,
    /// The x axis of the training-loss and step-size panels.
    pub x: XAxis,
    /// Only the first N updates on the step axis (the LossGrad paper's Figs. 3-4 show h over the
    /// first 800 batches).
    pub first: Option<u64>,
    /// Seeds of one experiment drawn as their mean and band (`true`), or every run on its own.
    pub seed_mean: bool,
    /// Linear y axes everywhere instead of log axes for losses and step sizes.
    pub linear: bool,
    /// The picture's width in pixels; its height follows from the number of panel rows.
    pub width: u32,
    /// A title above the panels.
    pub title: Option<String>,
}

impl Default for PlotOptions {
    fn default() -> Self {
        Self {
            panels: None,
            x: XAxis::Step,
            first: None,
            seed_mean: true,
            linear: false,
            width: 1400,
            title: None,
        }
    }
}

/// What was drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotReport {
    /// The panels drawn, in order.
    pub panels: Vec<Panel>,
    /// The legend's entries (one per experiment).
    pub legend: Vec<String>,
    /// The picture's size in pixels.
    pub size: (u32, u32),
    /// The window (in updates) step curves were averaged over; 1 when not averaged.
    pub window: u64,
    /// Panels asked for that no run has data for.
    pub empty: Vec<Panel>,
}

/// One line of a panel, with its seeds' band.
#[derive(Debug, Clone)]
struct Line {
    colour: usize,
    style: Stroke,
    /// (x, mean) points.
    points: Vec<(f64, f64)>,
    /// (x, min, max) when there are several seeds.
    band: Vec<(f64, f64, f64)>,
    /// Where diverged runs stop.
    crosses: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stroke {
    Solid,
    Dashed,
    Dotted,
}

#[derive(Debug, Clone)]
struct PanelData {
    panel: Panel,
    title: String,
    x_label: String,
    y_label: &'static str,
    log_y: bool,
    lines: Vec<Line>,
}

/// A curve of one run: x values and y values.
type Curve = (Vec<f64>, Vec<f64>);

/// Draws `runs` into `out` (PNG or SVG by its extension) and says what was drawn.
pub fn plot(runs: &[Run], options: &PlotOptions, out: &Path) -> Result<PlotReport> {
    let format = Format::of(out)?;
    if options.first == Some(0) {
        return Err(ReportError::option("--first", "must be at least 1"));
    }
    if options.width < 400 {
        return Err(ReportError::option(
            "--width",
            "must be at least 400 pixels",
        ));
    }
    let groups: Vec<Group<'_>> = if options.seed_mean {
        group_by_seed(runs)
    } else {
        runs.iter()
            .map(|run| Group {
                label: run.name.clone(),
                runs: vec![run],
            })
            .collect()
    };
    let window = step_window(runs, options.first);
    let wanted = options
        .panels
        .clone()
        .unwrap_or_else(|| Panel::ALL.to_vec());
    let mut panels = Vec::new();
    let mut empty = Vec::new();
    for panel in wanted {
        let data = panel_data(panel, &groups, options, window);
        if data.lines.iter().any(|l| !l.points.is_empty()) {
            panels.push(data);
        } else if options.panels.is_some() {
            empty.push(panel);
        }
    }
    if panels.is_empty() {
        return Err(ReportError::option(
            "RUN_DIR",
            "nothing to draw: no run has rows for the panels asked for",
        ));
    }
    let legend: Vec<String> = groups.iter().map(legend_entry).collect();
    let layout = draw::Layout::new(
        options.width,
        panels.len(),
        legend.len(),
        options.title.is_some(),
    );
    let bytes = draw::render(format, &panels, &legend, options.title.as_deref(), &layout).map_err(
        |message| ReportError::Draw {
            path: out.to_path_buf(),
            message,
        },
    )?;
    std::fs::write(out, bytes).map_err(|e| ReportError::io(out, e))?;
    Ok(PlotReport {
        panels: panels.iter().map(|p| p.panel).collect(),
        legend,
        size: layout.size,
        window,
        empty,
    })
}

/// The window (in updates) that keeps every step curve at most [`MAX_POINTS`] points.
fn step_window(runs: &[Run], first: Option<u64>) -> u64 {
    let last_step = runs
        .iter()
        .filter_map(|r| r.steps.as_ref()?.column("step")?.last().copied())
        .filter(|s| s.is_finite())
        .fold(0.0f64, f64::max) as u64;
    let span = first.map_or(last_step, |n| n.min(last_step));
    span.div_ceil(MAX_POINTS as u64).max(1)
}

fn legend_entry(group: &Group<'_>) -> String {
    let n = group.runs.len();
    let diverged = group
        .runs
        .iter()
        .filter(|r| r.diverged_at().is_some())
        .count();
    let mut entry = group.label.clone();
    match (n, diverged) {
        (1, 0) => {}
        (1, _) => entry.push_str(" (diverged)"),
        (_, 0) => entry.push_str(&format!(" ({n} seeds)")),
        (_, d) => entry.push_str(&format!(" ({n} seeds, {d} diverged)")),
    }
    entry
}

/// A step curve of `column` in `steps.csv`, cut to the first `first` updates.
fn step_curve(run: &Run, column: &str, first: Option<u64>) -> Option<Curve> {
    let steps = run.steps.as_ref()?;
    let x = steps.column("step")?;
    let y = steps.filled(column)?;
    let keep = |s: f64| first.is_none_or(|n| s <= n as f64);
    let (x, y): (Vec<f64>, Vec<f64>) = x
        .iter()
        .zip(y)
        .filter(|(s, _)| keep(**s))
        .map(|(s, v)| (*s, *v))
        .unzip();
    (!x.is_empty()).then_some((x, y))
}

/// An epoch curve of `column` in `epochs.csv`.
fn epoch_curve(run: &Run, column: &str) -> Option<Curve> {
    let epochs = run.epochs.as_ref()?;
    let x = epochs.column("epoch")?.to_vec();
    let y = epochs.filled(column)?.to_vec();
    Some((x, y))
}

/// The geometric mean of each epoch's step sizes (`steps.csv`).
fn lr_per_epoch(run: &Run) -> Option<Curve> {
    let steps = run.steps.as_ref()?;
    let epoch = steps.column("epoch")?;
    let lr = steps.filled("lr")?;
    let (x, y) = window_means(epoch, lr, 0.0, 1.0, Averaging::Geometric);
    // Each window holds one epoch, so its mean x is the epoch itself.
    Some((x, y))
}

/// Per-update geometric mean, minimum and maximum over the tensors of `layers.csv`.
fn layer_curves(run: &Run, first: Option<u64>) -> Option<[Curve; 3]> {
    let layers = run.layers.as_ref()?;
    let steps = layers.column("step")?;
    let tensors: Vec<&[f64]> = layers
        .names()
        .filter(|n| *n != "step" && *n != "epoch")
        .filter_map(|n| layers.column(n))
        .collect();
    if tensors.is_empty() {
        return None;
    }
    let mut out: [Curve; 3] = Default::default();
    for (row, &step) in steps.iter().enumerate() {
        if first.is_some_and(|n| step > n as f64) {
            continue;
        }
        let values: Vec<f64> = tensors.iter().map(|t| t[row]).collect();
        let Some(mean) = Averaging::Geometric.mean(values.iter().copied()) else {
            continue;
        };
        let finite = values.iter().copied().filter(|v| v.is_finite() && *v > 0.0);
        let lo = finite.clone().fold(f64::INFINITY, f64::min);
        let hi = finite.fold(f64::NEG_INFINITY, f64::max);
        for (curve, value) in out.iter_mut().zip([mean, lo, hi]) {
            curve.0.push(step);
            curve.1.push(value);
        }
    }
    (!out[0].0.is_empty()).then_some(out)
}

/// The line of one group from its runs' curves: the seeds' mean, their band, crosses where
/// diverged runs stop. `window` > 1 averages each curve over windows of that many x values first.
fn group_line(
    runs: &[&Run],
    curves: &[Option<Curve>],
    colour: usize,
    style: Stroke,
    averaging: Averaging,
    window: u64,
) -> Line {
    let windowed: Vec<Option<Curve>> = curves
        .iter()
        .map(|c| {
            c.as_ref().map(|(x, y)| {
                if window > 1 {
                    window_means(x, y, 1.0, window as f64, averaging)
                } else {
                    (x.clone(), y.clone())
                }
            })
        })
        .collect();
    let present: Vec<(&[f64], &[f64])> = windowed
        .iter()
        .flatten()
        .map(|(x, y)| (x.as_slice(), y.as_slice()))
        .collect();
    let band = seed_band(&present, averaging);
    let crosses = runs
        .iter()
        .zip(&windowed)
        .filter(|(run, _)| run.diverged_at().is_some())
        .filter_map(|(_, curve)| {
            let (x, y) = curve.as_ref()?;
            x.iter()
                .zip(y)
                .rev()
                .find(|(_, v)| v.is_finite() && (averaging == Averaging::Arithmetic || **v > 0.0))
                .map(|(a, b)| (*a, *b))
        })
        .collect();
    line_of(band, present.len() > 1, colour, style, crosses)
}

fn line_of(
    band: Band,
    with_band: bool,
    colour: usize,
    style: Stroke,
    crosses: Vec<(f64, f64)>,
) -> Line {
    Line {
        colour,
        style,
        points: band
            .x
            .iter()
            .copied()
            .zip(band.mean.iter().copied())
            .collect(),
        band: if with_band {
            (0..band.x.len())
                .map(|i| (band.x[i], band.min[i], band.max[i]))
                .collect()
        } else {
            Vec::new()
        },
        crosses,
    }
}

/// One solid line per group of a `steps.csv` column against the update (averaged over windows of
/// `window` updates), or of its per-epoch form `per_epoch` with [`XAxis::Epoch`].
fn step_lines(
    groups: &[Group<'_>],
    options: &PlotOptions,
    window: u64,
    averaging: Averaging,
    column: &str,
    per_epoch: &dyn Fn(&Run) -> Option<Curve>,
) -> Vec<Line> {
    let by_step = options.x == XAxis::Step;
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let curves: Vec<Option<Curve>> = g
                .runs
                .iter()
                .map(|r| {
                    if by_step {
                        step_curve(r, column, options.first)
                    } else {
                        per_epoch(r)
                    }
                })
                .collect();
            let w = if by_step { window } else { 1 };
            group_line(&g.runs, &curves, i, Stroke::Solid, averaging, w)
        })
        .collect()
}

/// One line per group and `epochs.csv` column, each column in its stroke: all groups' lines of
/// the first column, then of the next.
fn epoch_lines(
    groups: &[Group<'_>],
    columns: &[(&str, Stroke)],
    averaging: Averaging,
) -> Vec<Line> {
    columns
        .iter()
        .flat_map(|&(column, style)| {
            groups.iter().enumerate().map(move |(i, g)| {
                let curves: Vec<Option<Curve>> =
                    g.runs.iter().map(|r| epoch_curve(r, column)).collect();
                group_line(&g.runs, &curves, i, style, averaging, 1)
            })
        })
        .collect()
}

fn panel_data(panel: Panel, groups: &[Group<'_>], options: &PlotOptions, window: u64) -> PanelData {
    let log = !options.linear;
    let geometric = if log {
        Averaging::Geometric
    } else {
        Averaging::Arithmetic
    };
    let by_step = options.x == XAxis::Step;
    let step_label: &str = &if window > 1 {
        format!("update (mean over windows of {window})")
    } else {
        "update".to_string()
    };
    let mut lines = Vec::new();
    let (title, x_label, y_label, log_y) = match panel {
        Panel::TrainLoss => {
            let per_epoch = |r: &Run| epoch_curve(r, "train_loss");
            lines = step_lines(groups, options, window, geometric, "loss", &per_epoch);
            let x = if by_step { step_label } else { "epoch" };
            ("training loss".to_string(), x, "loss", log)
        }
        Panel::EvalLoss => {
            let columns = [
                ("validation_loss", Stroke::Solid),
                ("test_loss", Stroke::Dashed),
            ];
            lines = epoch_lines(groups, &columns, geometric);
            (
                "validation (solid) and test (dashed) loss".to_string(),
                "epoch",
                "loss",
                log,
            )
        }
        Panel::Accuracy => {
            let columns = [
                ("train_accuracy", Stroke::Dotted),
                ("validation_accuracy", Stroke::Solid),
                ("test_accuracy", Stroke::Dashed),
            ];
            lines = epoch_lines(groups, &columns, Averaging::Arithmetic);
            (
                "accuracy: train (dotted), validation (solid), test (dashed)".to_string(),
                "epoch",
                "accuracy",
                false,
            )
        }
        Panel::StepSize => {
            lines = step_lines(groups, options, window, geometric, "lr", &lr_per_epoch);
            let (title, x) = if by_step {
                ("step size", step_label)
            } else {
                ("step size (geometric mean per epoch)", "epoch")
            };
            (title.to_string(), x, "step size", log)
        }
        Panel::Layers => {
            for (i, g) in groups.iter().enumerate() {
                let per_run: Vec<Option<[Curve; 3]>> = g
                    .runs
                    .iter()
                    .map(|r| layer_curves(r, options.first))
                    .collect();
                let pick = |k: usize| -> Vec<Option<Curve>> {
                    per_run
                        .iter()
                        .map(|c| c.as_ref().map(|c| c[k].clone()))
                        .collect()
                };
                let mean = group_line(&g.runs, &pick(0), i, Stroke::Solid, geometric, window);
                let lows = group_line(&g.runs, &pick(1), i, Stroke::Solid, geometric, window);
                let highs = group_line(&g.runs, &pick(2), i, Stroke::Solid, geometric, window);
                // The band spans the smallest tensor's to the largest tensor's step size (over
                // seeds: the lowest minimum to the highest maximum).
                let lo: Vec<(f64, f64)> = lows.band_low();
                let hi: Vec<(f64, f64)> = highs.band_high();
                let band = lo
                    .iter()
                    .filter_map(|(x, l)| {
                        hi.iter().find(|(hx, _)| hx == x).map(|(_, h)| (*x, *l, *h))
                    })
                    .collect();
                lines.push(Line { band, ..mean });
            }
            (
                "per-tensor step size: mean over tensors, smallest to largest".to_string(),
                step_label,
                "step size",
                log,
            )
        }
    };
    PanelData {
        panel,
        title,
        x_label: x_label.to_string(),
        y_label,
        log_y,
        lines,
    }
}

impl Line {
    /// The lower edge: the band's minimum where there is a band, else the line itself.
    fn band_low(&self) -> Vec<(f64, f64)> {
        if self.band.is_empty() {
            self.points.clone()
        } else {
            self.band.iter().map(|(x, lo, _)| (*x, *lo)).collect()
        }
    }

    /// The upper edge: the band's maximum where there is a band, else the line itself.
    fn band_high(&self) -> Vec<(f64, f64)> {
        if self.band.is_empty() {
            self.points.clone()
        } else {
            self.band.iter().map(|(x, _, hi)| (*x, *hi)).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_parse_by_name_and_unknown_ones_are_named() {
        assert_eq!(
            Panel::parse_list("lr, train_loss,lr").unwrap(),
            [Panel::StepSize, Panel::TrainLoss]
        );
        let e = Panel::parse_list("loss").unwrap_err().to_string();
        assert!(e.starts_with("--panels: unknown panel `loss`"), "{e}");
        assert!(Panel::parse_list(" , ").is_err());
    }

    #[test]
    fn the_format_follows_the_extension() {
        assert_eq!(Format::of(Path::new("a/b.PNG")).unwrap(), Format::Png);
        assert_eq!(Format::of(Path::new("b.svg")).unwrap(), Format::Svg);
        let e = Format::of(Path::new("b.pdf")).unwrap_err().to_string();
        assert!(e.contains("must end in .png or .svg"), "{e}");
    }

    #[test]
    fn windows_keep_step_curves_under_the_point_limit() {
        let run = |steps: usize| {
            let mut text = String::from("step,epoch,loss,lr\n");
            for s in 1..=steps {
                text.push_str(&format!("{s},1,1.0,0.1\n"));
            }
            Run {
                dir: "r".into(),
                name: "r".into(),
                config: toml::Table::new(),
                steps: Some(crate::run::Curves::parse(&text, Path::new("s")).unwrap()),
                epochs: None,
                layers: None,
                status: crate::run::Status::Completed,
                status_text: String::new(),
            }
        };
        assert_eq!(step_window(&[run(1000)], None), 1);
        assert_eq!(step_window(&[run(1001)], None), 2);
        assert_eq!(step_window(&[run(5000)], Some(800)), 1);
        assert_eq!(step_window(&[run(20_000)], None), 20);
    }
}
