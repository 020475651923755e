//! One output path for a run: every update, epoch, message and final status goes to
//! [`RunLog`], which hands it to its sinks: the run directory's files ([`FileSink`]: `steps.csv`,
//! `epochs.csv`, `layers.csv`, `status`) and the console ([`ConsoleSink`]: progress bar, epoch
//! lines, warnings). A later sink (a JSON summary, a plot) is one more [`Sink`].

use std::path::{Path, PathBuf};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use crate::output::{Cell, CsvLog, RunStatus, write_status};
use crate::state::StepRecord;

/// One epoch as it goes into `epochs.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRecord {
    /// The epoch, from 1.
    pub epoch: usize,
    /// Training loss over the epoch's batches.
    pub train_loss: f64,
    /// Training accuracy, where labels apply.
    pub train_accuracy: Option<f64>,
    /// Validation loss and accuracy, when evaluated.
    pub validation: (Option<f64>, Option<f64>),
    /// Test loss and accuracy, when evaluated.
    pub test: (Option<f64>, Option<f64>),
    /// The step size of the epoch's last update.
    pub lr: f64,
    /// Seconds the epoch took (training and evaluation).
    pub seconds: f64,
    /// The objective's named terms ([`Columns::parts`]): the epoch's training mean, and on the
    /// validation and test sets when evaluated.
    pub parts: EpochParts,
}

/// The objective's named terms of an epoch, one value per [`Columns::parts`] name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpochParts {
    /// Means over the epoch's training batches.
    pub train: Vec<f64>,
    /// On the validation set, when evaluated.
    pub validation: Option<Vec<f64>>,
    /// On the test set, when evaluated.
    pub test: Option<Vec<f64>>,
}

/// What happens in a run, as the sinks see it.
pub enum Event<'a> {
    /// An epoch starts, or resumes after `done` of its `batches` batches.
    EpochStart {
        /// The epoch, from 1.
        epoch: usize,
        /// Batches already done (a resumed epoch).
        done: usize,
        /// Batches the epoch has.
        batches: usize,
    },
    /// An update was applied.
    Step(&'a StepRecord),
    /// An epoch ended (and was evaluated).
    Epoch(&'a EpochRecord),
    /// A line for the user (a warning, a note).
    Message(&'a str),
    /// The run ended.
    Status(&'a RunStatus),
}

/// A destination of a run's events.
pub trait Sink {
    /// Takes one event; an error stops the run (recorded as failed where it still can be).
    fn event(&mut self, event: &Event<'_>) -> Result<()>;
    /// Makes what was written durable (before a checkpoint).
    fn sync(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Column names of `epochs.csv`.
pub const EPOCH_COLUMNS: [&str; 9] = [
    "epoch",
    "train_loss",
    "train_accuracy",
    "validation_loss",
    "validation_accuracy",
    "test_loss",
    "test_accuracy",
    "lr",
    "seconds",
];

/// The column layout of a run's CSV files.
#[derive(Debug, Clone)]
pub struct Columns {
    /// The method's diagnostics (after `step,epoch,loss,lr` in `steps.csv`).
    pub diagnostics: Vec<String>,
    /// The names of the objective's terms (a WAE's `reconstruction`, `mmd`): after the
    /// diagnostics in `steps.csv`, and as `train_<name>`, `validation_<name>` and
    /// `test_<name>` after `seconds` in `epochs.csv`.
    pub parts: Vec<String>,
    /// One name per parameter tensor, when the method reports per-tensor values (`layers.csv`).
    pub layers: Option<Vec<String>>,
}

impl Columns {
    fn steps(&self) -> Vec<&str> {
        let mut header = vec!["step", "epoch", "loss", "lr"];
        header.extend(self.diagnostics.iter().map(String::as_str));
        header.extend(self.parts.iter().map(String::as_str));
        header
    }
    fn epochs(&self) -> Vec<String> {
        let mut header: Vec<String> = EPOCH_COLUMNS.iter().map(|c| c.to_string()).collect();
        for split in ["train", "validation", "test"] {
            header.extend(self.parts.iter().map(|p| format!("{split}_{p}")));
        }
        header
    }
    fn layers(&self) -> Option<Vec<&str>> {
        self.layers.as_ref().map(|names| {
            let mut header = vec!["step", "epoch"];
            header.extend(names.iter().map(String::as_str));
            header
        })
    }
}

fn as_strs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

/// The run directory's files.
pub struct FileSink {
    dir: PathBuf,
    steps: CsvLog,
    epochs: CsvLog,
    layers: Option<CsvLog>,
}

impl FileSink {
    /// Creates the CSV files of a new run (headers only).
    pub fn create(dir: &Path, columns: &Columns) -> Result<Self> {
        Ok(Self {
            dir: dir.to_path_buf(),
            steps: CsvLog::create(&dir.join("steps.csv"), &columns.steps())?,
            epochs: CsvLog::create(&dir.join("epochs.csv"), &as_strs(&columns.epochs()))?,
            layers: match columns.layers() {
                Some(header) => Some(CsvLog::create(&dir.join("layers.csv"), &header)?),
                None => None,
            },
        })
    }

    /// Reopens the CSV files of a run resumed after `steps` updates and `epochs` whole epochs:
    /// rows logged after that are cut off, and rows from then on are appended.
    pub fn resume(dir: &Path, columns: &Columns, steps: u64, epochs: u64) -> Result<Self> {
        Ok(Self {
            dir: dir.to_path_buf(),
            steps: CsvLog::reopen(&dir.join("steps.csv"), &columns.steps(), steps)?,
            epochs: CsvLog::reopen(&dir.join("epochs.csv"), &as_strs(&columns.epochs()), epochs)?,
            layers: match columns.layers() {
                Some(header) => Some(CsvLog::reopen(&dir.join("layers.csv"), &header, steps)?),
                None => None,
            },
        })
    }
}

impl Sink for FileSink {
    fn event(&mut self, event: &Event<'_>) -> Result<()> {
        match event {
            Event::Step(record) => {
                let mut cells = vec![
                    Cell::Int(record.step),
                    Cell::Int(record.epoch as u64),
                    Cell::Num(record.loss),
                    Cell::Num(record.lr),
                ];
                cells.extend(record.diagnostics.iter().copied().map(Cell::Num));
                cells.extend(record.parts.iter().copied().map(Cell::Num));
                self.steps.row(&cells)?;
                if let Some(layers) = &mut self.layers {
                    let mut cells = vec![Cell::Int(record.step), Cell::Int(record.epoch as u64)];
                    cells.extend(record.per_tensor.iter().copied().map(Cell::Num));
                    layers.row(&cells)?;
                }
            }
            Event::Epoch(r) => {
                let opt = |v: Option<f64>| v.map(Cell::Num).unwrap_or(Cell::Empty);
                let mut cells = vec![
                    Cell::Int(r.epoch as u64),
                    Cell::Num(r.train_loss),
                    opt(r.train_accuracy),
                    opt(r.validation.0),
                    opt(r.validation.1),
                    opt(r.test.0),
                    opt(r.test.1),
                    Cell::Num(r.lr),
                    Cell::Num(r.seconds),
                ];
                cells.extend(r.parts.train.iter().copied().map(Cell::Num));
                let parts = r.parts.train.len();
                for split in [&r.parts.validation, &r.parts.test] {
                    match split {
                        Some(values) => cells.extend(values.iter().copied().map(Cell::Num)),
                        None => cells.extend((0..parts).map(|_| Cell::Empty)),
                    }
                }
                self.epochs.row(&cells)?;
            }
            Event::Status(status) => write_status(&self.dir, status)?,
            Event::EpochStart { .. } | Event::Message(_) => {}
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.steps.sync()?;
        self.epochs.sync()?;
        if let Some(layers) = &self.layers {
            layers.sync()?;
        }
        Ok(())
    }
}

/// The console: a progress bar per epoch on a terminal, a line per epoch, messages and the
/// final status on stderr.
pub struct ConsoleSink {
    interactive: bool,
    epochs: usize,
    bar: Option<ProgressBar>,
}

impl ConsoleSink {
    /// A console for a run of `epochs` epochs; `interactive` shows progress bars.
    pub fn new(interactive: bool, epochs: usize) -> Self {
        Self {
            interactive,
            epochs,
            bar: None,
        }
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Sink for ConsoleSink {
    fn event(&mut self, event: &Event<'_>) -> Result<()> {
        match event {
            Event::EpochStart {
                epoch,
                done,
                batches,
            } => {
                self.clear();
                if self.interactive {
                    let bar = ProgressBar::new(*batches as u64);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})",
                        )
                        .expect("the template is valid")
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(format!("epoch {epoch}/{}", self.epochs));
                    bar.set_position(*done as u64);
                    self.bar = Some(bar);
                }
            }
            Event::Step(record) => {
                if let Some(warning) = &record.warning {
                    let line = format!("warning: {warning}");
                    match &self.bar {
                        Some(bar) => bar.suspend(|| eprintln!("{line}")),
                        None => eprintln!("{line}"),
                    }
                }
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                    bar.set_message(format!("loss {:.4} lr {:.3e}", record.loss, record.lr));
                }
            }
            Event::Epoch(r) => {
                self.clear();
                let mut line = format!(
                    "epoch {}/{}: train loss {:.5}",
                    r.epoch, self.epochs, r.train_loss
                );
                if let Some(a) = r.train_accuracy {
                    line += &format!(" acc {a:.4}");
                }
                if let Some(l) = r.validation.0 {
                    line += &format!(", validation loss {l:.5}");
                }
                if let Some(l) = r.test.0 {
                    line += &format!(", test loss {l:.5}");
                }
                if let Some(a) = r.test.1 {
                    line += &format!(" acc {a:.4}");
                }
                eprintln!("{line}, lr {:.4e} ({:.1} s)", r.lr, r.seconds);
            }
            Event::Message(text) => match &self.bar {
                Some(bar) => bar.suspend(|| eprintln!("{text}")),
                None => eprintln!("{text}"),
            },
            Event::Status(status) => {
                self.clear();
                eprintln!("{}", status.describe());
            }
        }
        Ok(())
    }
}

/// A run's output: every event goes to every sink, in order (the files first).
pub struct RunLog {
    sinks: Vec<Box<dyn Sink>>,
}

impl RunLog {
    /// A log with these sinks.
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Self {
        Self { sinks }
    }

    /// Hands `event` to every sink; the first error is returned after all have seen it.
    pub fn send(&mut self, event: Event<'_>) -> Result<()> {
        let mut first = None;
        for sink in &mut self.sinks {
            if let Err(e) = sink.event(&event) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// A line for the user.
    pub fn message(&mut self, text: &str) -> Result<()> {
        self.send(Event::Message(text))
    }

    /// Makes every sink's output durable.
    pub fn sync(&mut self) -> Result<()> {
        for sink in &mut self.sinks {
            sink.sync()?;
        }
        Ok(())
    }
}
