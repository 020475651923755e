//! The run directory: `config.toml`, `steps.csv`, `epochs.csv` and `status`.
//!
//! CSV rows are flushed as they are written, so a run that dies keeps every row it finished.
//! Numbers are written in the shortest form that parses back to the same f64.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A CSV file written row by row, flushed after each row.
pub struct CsvLog {
    path: PathBuf,
    out: BufWriter<File>,
    columns: usize,
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
            out: BufWriter::new(file),
            columns: header.len(),
        };
        log.write_line(&header.join(","))?;
        Ok(log)
    }

    /// Appends one row and flushes it.
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
        writeln!(self.out, "{line}")
            .and_then(|_| self.out.flush())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
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

/// How a run ended (the `status` file).
#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
    /// All epochs (or `max_steps`) done.
    Completed,
    /// The loss became non-finite at this step.
    Diverged {
        /// The update count at which the loss was non-finite.
        step: u64,
    },
    /// Stopped by Ctrl-C after this many updates.
    Interrupted {
        /// Updates completed.
        step: u64,
    },
}

impl RunStatus {
    /// The text of the `status` file.
    pub fn describe(&self) -> String {
        match self {
            Self::Completed => "completed".into(),
            Self::Diverged { step } => format!("diverged at step {step}: non-finite training loss"),
            Self::Interrupted { step } => format!("interrupted after step {step}"),
        }
    }
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
}
