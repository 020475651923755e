//! Reading run directories as `train` writes them: `config.toml`, `steps.csv`, `epochs.csv`,
//! `layers.csv` and `status` (CLI.md, "Output: the run directory").
//!
//! Everything downstream (pictures, tables) works on [`Run`]s, so this is the only place that
//! knows the file names. A run still being written is readable: a last line without its newline
//! (a row torn by a crash or caught mid-write) is left out, and a missing `status` reads as
//! [`Status::Unfinished`].

use std::path::{Path, PathBuf};

use crate::error::{ReportError, Result};

/// The file that marks a run directory.
pub const CONFIG_FILE: &str = "config.toml";
const STEPS_FILE: &str = "steps.csv";
const EPOCHS_FILE: &str = "epochs.csv";
const LAYERS_FILE: &str = "layers.csv";
const STATUS_FILE: &str = "status";
/// How deep [`find_runs`] looks below a path given to it (a results folder holds sweeps, a sweep
/// holds runs).
const MAX_DEPTH: usize = 4;

/// A CSV file of numbers, by column: every cell as `f64`, an empty cell as NaN.
#[derive(Debug, Clone, PartialEq)]
pub struct Curves {
    columns: Vec<(String, Vec<f64>)>,
}

impl Curves {
    /// Parses CSV text whose first line is the header. `path` names the file in errors.
    /// A last line without a newline is left out (a torn row).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let complete = match text.rfind('\n') {
            Some(end) => &text[..=end],
            None => "",
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(complete.as_bytes());
        let csv_error = |line: u64, message: String| ReportError::Csv {
            path: path.to_path_buf(),
            line,
            message,
        };
        let header = reader
            .headers()
            .map_err(|e| csv_error(1, e.to_string()))?
            .clone();
        if header.is_empty() || header.iter().all(str::is_empty) {
            return Err(csv_error(1, "no header line".into()));
        }
        let mut columns: Vec<(String, Vec<f64>)> =
            header.iter().map(|h| (h.to_string(), Vec::new())).collect();
        for (row, record) in reader.records().enumerate() {
            let line = row as u64 + 2;
            let record = record.map_err(|e| csv_error(line, e.to_string()))?;
            if record.len() != columns.len() {
                return Err(csv_error(
                    line,
                    format!(
                        "{} cells where the header has {}",
                        record.len(),
                        columns.len()
                    ),
                ));
            }
            for ((name, values), cell) in columns.iter_mut().zip(record.iter()) {
                let value = if cell.is_empty() {
                    f64::NAN
                } else {
                    cell.parse::<f64>().map_err(|_| {
                        csv_error(line, format!("column `{name}`: `{cell}` is not a number"))
                    })?
                };
                values.push(value);
            }
        }
        Ok(Self { columns })
    }

    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ReportError::io(path, e))?;
        Self::parse(&text, path)
    }

    /// The column named `name`, if the file has it.
    pub fn column(&self, name: &str) -> Option<&[f64]> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The column names, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|(n, _)| n.as_str())
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.columns.first().map_or(0, |(_, v)| v.len())
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The column named `name` when it has at least one number (not only empty cells).
    pub fn filled(&self, name: &str) -> Option<&[f64]> {
        self.column(name)
            .filter(|values| values.iter().any(|v| !v.is_nan()))
    }
}

/// How a run ended, from its `status` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Trained every epoch.
    Completed,
    /// The loss or step size became non-finite at this update.
    Diverged {
        /// The update (from 1).
        step: u64,
    },
    /// A stopping rule (early stopping, a target reached, a time budget) ended it after this
    /// update.
    Stopped {
        /// The last update.
        step: u64,
    },
    /// A signal stopped it after this update (it can be resumed).
    Interrupted {
        /// The last update.
        step: u64,
    },
    /// It failed with an error (the status file says which).
    Failed,
    /// No status file: still running, or killed without a chance to write one.
    Unfinished,
    /// A status line this version does not know.
    Unknown,
}

impl Status {
    /// Parses the first line of a `status` file (`completed`, `diverged at step N: …`,
    /// `stopped at step N: …`, `interrupted after step N`, `failed: …`).
    pub fn parse(text: &str) -> Self {
        let line = text.lines().next().unwrap_or("").trim();
        let step_after = |prefix: &str| -> Option<u64> {
            let rest = line.strip_prefix(prefix)?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        if line == "completed" {
            Self::Completed
        } else if let Some(step) = step_after("diverged at step ") {
            Self::Diverged { step }
        } else if let Some(step) = step_after("stopped at step ") {
            Self::Stopped { step }
        } else if let Some(step) = step_after("interrupted after step ") {
            Self::Interrupted { step }
        } else if line.starts_with("failed") {
            Self::Failed
        } else {
            Self::Unknown
        }
    }

    /// One word for tables: `completed`, `diverged`, `stopped`, `interrupted`, `failed`,
    /// `unfinished`, `unknown`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Diverged { .. } => "diverged",
            Self::Stopped { .. } => "stopped",
            Self::Interrupted { .. } => "interrupted",
            Self::Failed => "failed",
            Self::Unfinished => "unfinished",
            Self::Unknown => "unknown",
        }
    }
}

/// One run directory, read whole.
#[derive(Debug, Clone)]
pub struct Run {
    /// The directory.
    pub dir: PathBuf,
    /// The directory's own name (a sweep's `<config>-seed<K>`).
    pub name: String,
    /// The resolved config the run wrote.
    pub config: toml::Table,
    /// `steps.csv`: one row per update (absent when the run has not written it).
    pub steps: Option<Curves>,
    /// `epochs.csv`: one row per epoch.
    pub epochs: Option<Curves>,
    /// `layers.csv`: per-tensor step sizes (only methods that have them).
    pub layers: Option<Curves>,
    /// How it ended.
    pub status: Status,
    /// The `status` file's first line as written (empty when there is none).
    pub status_text: String,
}

impl Run {
    /// Reads the run directory `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        let config_path = dir.join(CONFIG_FILE);
        let text =
            std::fs::read_to_string(&config_path).map_err(|e| ReportError::io(&config_path, e))?;
        let config: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ReportError::Toml {
                path: config_path.clone(),
                message: e.to_string(),
            })?;
        let optional = |file: &str| -> Result<Option<Curves>> {
            let path = dir.join(file);
            match std::fs::read_to_string(&path) {
                Ok(text) => Curves::parse(&text, &path).map(Some),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(ReportError::io(&path, e)),
            }
        };
        let status_path = dir.join(STATUS_FILE);
        let (status, status_text) = match std::fs::read_to_string(&status_path) {
            Ok(text) => (
                Status::parse(&text),
                text.lines().next().unwrap_or("").trim().to_string(),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (Status::Unfinished, String::new())
            }
            Err(e) => return Err(ReportError::io(&status_path, e)),
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            name: dir
                .file_name()
                .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into()),
            config,
            steps: optional(STEPS_FILE)?,
            epochs: optional(EPOCHS_FILE)?,
            layers: optional(LAYERS_FILE)?,
            status,
            status_text,
        })
    }

    /// The config value at a dotted key (`optimizer.kind`).
    pub fn config_value(&self, key: &str) -> Option<&toml::Value> {
        lookup(&self.config, key)
    }

    /// The config value at a dotted key as text: strings unquoted, other values as TOML writes
    /// them.
    pub fn config_text(&self, key: &str) -> Option<String> {
        self.config_value(key).map(|v| match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// The run's seed (`run.seed`).
    pub fn seed(&self) -> Option<i64> {
        self.config_value("run.seed")
            .and_then(toml::Value::as_integer)
    }

    /// The config's name (`run.name`: the config file's stem unless the config sets it).
    pub fn config_name(&self) -> String {
        self.config_text("run.name")
            .unwrap_or_else(|| self.name.clone())
    }

    /// The update at which the run diverged, if it did.
    pub fn diverged_at(&self) -> Option<u64> {
        match self.status {
            Status::Diverged { step } => Some(step),
            _ => None,
        }
    }
}

/// The value at a dotted key of a TOML table.
pub fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

/// Whether `dir` is a run directory: `config.toml` beside `steps.csv` or `epochs.csv`.
pub fn is_run_dir(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
        && (dir.join(STEPS_FILE).is_file() || dir.join(EPOCHS_FILE).is_file())
}

/// Every run directory at or below each of `paths` (up to four levels down), read, in path
/// order within each path. A path with no run directory is an error naming it; so is a run
/// directory listed twice.
pub fn find_runs(paths: &[PathBuf]) -> Result<Vec<Run>> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for path in paths {
        let before = dirs.len();
        collect_run_dirs(path, 0, &mut dirs)?;
        if dirs.len() == before {
            if !path.exists() {
                return Err(ReportError::io(
                    path,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            return Err(ReportError::NoRuns { path: path.clone() });
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut runs = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let key = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        if !seen.insert(key) {
            return Err(ReportError::option(
                "RUN_DIR",
                format!("{} is given twice", dir.display()),
            ));
        }
        runs.push(Run::read(&dir)?);
    }
    Ok(runs)
}

fn collect_run_dirs(path: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    if is_run_dir(path) {
        out.push(path.to_path_buf());
        return Ok(());
    }
    if depth >= MAX_DEPTH || !path.is_dir() {
        return Ok(());
    }
    let mut children: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| ReportError::io(path, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    children.sort();
    for child in children {
        collect_run_dirs(&child, depth + 1, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Curves> {
        Curves::parse(text, Path::new("steps.csv"))
    }

    #[test]
    fn curves_read_numbers_by_column_and_empty_cells_as_nan() {
        let c = parse("step,epoch,loss,lr\n1,1,0.5,0.1\n2,1,,0.2\n").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.column("step"), Some(&[1.0, 2.0][..]));
        let loss = c.column("loss").unwrap();
        assert_eq!(loss[0], 0.5);
        assert!(loss[1].is_nan());
        assert!(c.column("ratio").is_none());
        assert_eq!(
            c.names().collect::<Vec<_>>(),
            ["step", "epoch", "loss", "lr"]
        );
    }

    #[test]
    fn a_torn_last_row_is_left_out_and_a_bad_cell_is_named() {
        let c = parse("step,loss\n1,0.5\n2,0.2").unwrap();
        assert_eq!(c.column("loss"), Some(&[0.5][..]));
        let e = parse("step,loss\n1,0.5\n2,abc\n").unwrap_err().to_string();
        assert_eq!(e, "steps.csv: line 3: column `loss`: `abc` is not a number");
        let e = parse("step,loss\n1,0.5,7\n2,0.1\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "steps.csv: line 2: 3 cells where the header has 2");
        assert!(parse("").unwrap_err().to_string().contains("no header"));
    }

    #[test]
    fn status_lines_parse_as_the_trainer_writes_them() {
        assert_eq!(Status::parse("completed\n"), Status::Completed);
        assert_eq!(
            Status::parse("diverged at step 412: non-finite training loss\n"),
            Status::Diverged { step: 412 }
        );
        assert_eq!(
            Status::parse("stopped at step 30: early stopping"),
            Status::Stopped { step: 30 }
        );
        assert_eq!(
            Status::parse("interrupted after step 7\n"),
            Status::Interrupted { step: 7 }
        );
        assert_eq!(Status::parse("failed: cannot write"), Status::Failed);
        assert_eq!(Status::parse("what"), Status::Unknown);
    }

    #[test]
    fn find_runs_walks_folders_and_names_a_path_without_runs() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["b-seed1", "a-seed0"] {
            let dir = tmp.path().join("sweep").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(CONFIG_FILE), "[run]\nname = \"a\"\nseed = 3\n").unwrap();
            std::fs::write(dir.join(EPOCHS_FILE), "epoch,train_loss\n1,0.5\n").unwrap();
        }
        let runs = find_runs(&[tmp.path().to_path_buf()]).unwrap();
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a-seed0", "b-seed1"]);
        assert_eq!(runs[0].seed(), Some(3));
        assert_eq!(runs[0].config_name(), "a");
        assert_eq!(runs[0].status, Status::Unfinished);
        assert!(runs[0].steps.is_none());

        let empty = tmp.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let e = find_runs(std::slice::from_ref(&empty))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{}: no run directory", empty.display())),
            "{e}"
        );
        let twice = tmp.path().join("sweep").join("a-seed0");
        let e = find_runs(&[twice.clone(), twice]).unwrap_err().to_string();
        assert!(e.contains("is given twice"), "{e}");
    }
}
