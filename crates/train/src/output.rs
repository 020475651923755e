//! The run directory: `config.toml`, `steps.csv`, `epochs.csv` and `status`.
//!
//! CSV rows are written whole as they are logged (one `write` per row), so a run that dies keeps
//! every row it finished and no torn row; readers drop a torn last line all the same ([`read_rows`]).
//! Numbers are written in the shortest form that parses back to the same f64.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A CSV file written row by row: each row is one `write` of the whole line, and a write that
/// fails part-way (a full disk, a file-size limit) is cut back to the last whole row, so every
/// row in the file is one that was really logged.
pub struct CsvLog {
    path: PathBuf,
    out: File,
    columns: usize,
    /// Bytes of whole rows written so far.
    committed: u64,
}

/// One CSV cell.
pub enum Cell {
    /// An integer.
    Int(u64),
    /// A float, written to round-trip.
    Num(f64),
    /// An empty cell (the value does not apply).
    Empty,
}

impl CsvLog {
    /// Creates (truncates) `path` and writes the header.
    pub fn create(path: &Path, header: &[&str]) -> Result<Self> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut log = Self {
            path: path.to_path_buf(),
            out: file,
            columns: header.len(),
            committed: 0,
        };
        log.write_line(&header.join(","))?;
        Ok(log)
    }

    /// Reopens `path`, written by an earlier session of the run, to append to it: the header
    /// must be `header`, the first `keep` rows must be there and numbered 1..=`keep` in their
    /// first column (a step or an epoch), and every row after them (logged after the
    /// checkpoint being resumed) is cut off.
    pub fn reopen(path: &Path, header: &[&str], keep: u64) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {} to resume it", path.display()))?;
        let mut end = 0usize;
        let mut lines = text.split_inclusive('\n');
        let first = lines.next().unwrap_or("");
        if first.trim_end_matches('\n') != header.join(",") {
            anyhow::bail!(
                "{}: its header is not `{}`; the run directory does not hold this run",
                path.display(),
                header.join(",")
            );
        }
        end += first.len();
        for n in 1..=keep {
            let line = lines.next().filter(|l| l.ends_with('\n'));
            let number = line.and_then(|l| l.split(',').next()?.trim().parse::<u64>().ok());
            if number != Some(n) {
                anyhow::bail!(
                    "{}: row {n} is missing or out of order; the checkpoint is at row {keep}",
                    path.display()
                );
            }
            end += line.map_or(0, str::len);
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut log = Self {
            path: path.to_path_buf(),
            out: file,
            columns: header.len(),
            committed: end as u64,
        };
        log.out
            .set_len(log.committed)
            .and_then(|()| log.out.seek(SeekFrom::Start(log.committed)).map(|_| ()))
            .with_context(|| format!("cannot cut {} back to row {keep}", path.display()))?;
        Ok(log)
    }

    /// Flushes what was written to the disk (before a checkpoint, so that the rows it counts
    /// survive a power loss with it).
    pub fn sync(&self) -> Result<()> {
        self.out
            .sync_data()
            .with_context(|| format!("cannot sync {}", self.path.display()))
    }

    /// Appends one row (written straight to the file, no buffering).
    pub fn row(&mut self, cells: &[Cell]) -> Result<()> {
        assert_eq!(
            cells.len(),
            self.columns,
            "row width differs from the header"
        );
        let line: Vec<String> = cells.iter().map(format_cell).collect();
        self.write_line(&line.join(","))
    }

    fn write_line(&mut self, line: &str) -> Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        match self.out.write_all(&bytes) {
            Ok(()) => {
                self.committed += bytes.len() as u64;
                Ok(())
            }
            Err(error) => {
                // Cut a partly written row back off; if even that fails, the reader's rule
                // (a last line without its newline is dropped) still applies.
                let _ = self
                    .out
                    .set_len(self.committed)
                    .and_then(|()| self.out.seek(SeekFrom::Start(self.committed)));
                Err(error).with_context(|| format!("cannot write {}", self.path.display()))
            }
        }
    }
}

/// Reads one of this tool's CSV files back: the header and the rows, each row split into cells.
/// A last line without its newline is a row torn by a crash (SIGKILL, power loss) and is
/// dropped, as is a row whose width differs from the header's.
pub fn read_rows(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let whole = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    let mut lines = whole.lines();
    let header: Vec<String> = match lines.next() {
        Some(line) => line.split(',').map(str::to_string).collect(),
        None => anyhow::bail!("{}: no header row", path.display()),
    };
    let rows = lines
        .map(|line| line.split(',').map(str::to_string).collect::<Vec<_>>())
        .filter(|row| row.len() == header.len())
        .collect();
    Ok((header, rows))
}

fn format_cell(cell: &Cell) -> String {
    match cell {
        Cell::Int(v) => v.to_string(),
        Cell::Num(v) => format_f64(*v),
        Cell::Empty => String::new(),
    }
}

/// Shortest decimal text that parses back to exactly `v` (`NaN`, `inf`, `-inf` for the rest).
pub fn format_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        // Rust's Debug formatting of f64 is the shortest round-trip representation.
        format!("{v:?}")
    }
}

/// Why a run was recorded as diverged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Divergence {
    /// The training loss of a batch was NaN or infinite (that update was not applied).
    NonFiniteLoss,
    /// The method's step size became NaN or infinite (that update's row is logged).
    NonFiniteStepSize,
}

/// How a run ended (the `status` file).
#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
    /// All epochs (or `max_steps`) done.
    Completed,
    /// The run stopped on a non-finite value at this step.
    Diverged {
        /// The update count at which the value was non-finite.
        step: u64,
        /// Which value.
        cause: Divergence,
    },
    /// Stopped by a budget or a stopping rule (`training.max_seconds`, early stopping, a
    /// target) after this many updates: finished, as a completed run is.
    Stopped {
        /// Updates done.
        step: u64,
        /// Which rule.
        reason: crate::stopping::StopReason,
    },
    /// Stopped by a signal (Ctrl-C, SIGTERM, SIGHUP) after this many updates.
    Interrupted {
        /// Updates completed.
        step: u64,
    },
    /// Stopped by an error (a write that failed, a full disk, ...).
    Failed {
        /// The error, on one line.
        error: String,
    },
}

impl RunStatus {
    /// The text of the `status` file.
    pub fn describe(&self) -> String {
        match self {
            Self::Completed => "completed".into(),
            Self::Diverged { step, cause } => {
                let what = match cause {
                    Divergence::NonFiniteLoss => "non-finite training loss",
                    Divergence::NonFiniteStepSize => "non-finite step size",
                };
                format!("diverged at step {step}: {what}")
            }
            Self::Stopped { step, reason } => {
                format!("stopped at step {step}: {}", reason.describe())
            }
            Self::Interrupted { step } => format!("interrupted after step {step}"),
            Self::Failed { error } => format!("failed: {}", error.replace('\n', " ")),
        }
    }
}

/// Whether a `status` line records a finished run: `completed`, `diverged ...` (resuming it
/// unchanged would diverge again) or `stopped ...` (a budget or stopping rule), and any status
/// later added under those words. A finished run is not resumed (`train --resume` with its own
/// config does nothing) and a sweep skips it; an interrupted or failed one (or none) is resumed
/// or started again.
pub fn is_finished(status: &str) -> bool {
    let status = status.trim_start();
    ["completed", "diverged", "stopped"]
        .iter()
        .any(|word| status.starts_with(word))
}

/// An error and its causes on one line, each cause once: a library error that prints its
/// source in its own message (`file: No such file or directory`) is not followed by the source
/// again.
pub fn error_chain(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text += ": ";
            }
            text += &part;
        }
    }
    text
}

/// Writes the `status` file.
pub fn write_status(dir: &Path, status: &RunStatus) -> Result<()> {
    let path = dir.join("status");
    std::fs::write(&path, format!("{}\n", status.describe()))
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_trip_in_shortest_form() {
        for v in [0.1, 1e-25, 1.0 / 3.0, 12345.678, 1e300, -0.0, 0.1f32 as f64] {
            let text = format_f64(v);
            assert_eq!(
                text.parse::<f64>().unwrap().to_bits(),
                v.to_bits(),
                "{text}"
            );
        }
        assert_eq!(format_f64(0.1), "0.1");
        assert_eq!(format_f64(f64::NAN), "NaN");
    }

    #[test]
    fn a_torn_last_row_is_dropped_when_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("steps.csv");
        std::fs::write(&path, "step,loss\n1,0.5\n2,0.25\n3,0.1").unwrap();
        let (header, rows) = read_rows(&path).unwrap();
        assert_eq!(header, ["step", "loss"]);
        assert_eq!(rows, [["1", "0.5"], ["2", "0.25"]]);
        std::fs::write(&path, "step,loss\n1,0.5\n2\n").unwrap();
        assert_eq!(read_rows(&path).unwrap().1, [["1", "0.5"]]);
    }

    #[test]
    fn rows_are_written_whole_and_a_failed_write_keeps_the_file_at_the_last_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("steps.csv");
        let mut log = CsvLog::create(&path, &["step", "loss"]).unwrap();
        log.row(&[Cell::Int(1), Cell::Num(0.5)]).unwrap();
        // A file opened read-only makes every write fail: the file must stay as it was.
        log.out = File::open(&path).unwrap();
        let err = log.row(&[Cell::Int(2), Cell::Num(0.25)]).unwrap_err();
        assert!(format!("{err:#}").contains("steps.csv"), "{err:#}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "step,loss\n1,0.5\n"
        );
    }

    #[test]
    fn finished_statuses_are_completed_diverged_and_stopped_ones() {
        for status in [
            "completed\n",
            "completed (max_seconds)",
            "diverged at step 3: non-finite training loss",
            "stopped early at epoch 4: no improvement",
        ] {
            assert!(is_finished(status), "{status}");
        }
        for status in [
            "interrupted after step 5",
            "failed: disk full",
            "",
            "running",
        ] {
            assert!(!is_finished(status), "{status}");
        }
    }

    #[test]
    fn statuses_say_why_a_run_ended() {
        let s = RunStatus::Diverged {
            step: 10,
            cause: Divergence::NonFiniteStepSize,
        };
        assert_eq!(s.describe(), "diverged at step 10: non-finite step size");
        let s = RunStatus::Failed {
            error: "cannot write steps.csv:\nNo space left on device".into(),
        };
        assert_eq!(
            s.describe(),
            "failed: cannot write steps.csv: No space left on device"
        );
    }
}
