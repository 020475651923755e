//! The one error type of this crate: every variant names the file or option it is about.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while reading run directories or writing a picture or table.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },

    /// A path given on the command line holds no run directory (a folder with `config.toml`
    /// beside `steps.csv` or `epochs.csv`), not even in its subfolders.
    #[error("{}: no run directory here (a run directory holds config.toml and steps.csv or epochs.csv)", path.display())]
    NoRuns {
        /// The path given.
        path: PathBuf,
    },

    /// A CSV file of a run is malformed (a cell that is not a number, a row of the wrong width
    /// that is not a torn last row, a missing header).
    #[error("{}: line {line}: {message}", path.display())]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// Its line, from 1 (the header is line 1).
        line: u64,
        /// What is wrong.
        message: String,
    },

    /// A TOML file (a run's `config.toml`, the published-numbers file) does not parse or has the
    /// wrong shape.
    #[error("{}: {message}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message (with the line and key it names).
        message: String,
    },

    /// An option value is not usable (named by its flag).
    #[error("{option}: {message}")]
    Option {
        /// The flag, e.g. `--panels`.
        option: String,
        /// What is wrong with its value.
        message: String,
    },

    /// Drawing the picture failed inside the plotting library.
    #[error("drawing {}: {message}", path.display())]
    Draw {
        /// The picture being drawn.
        path: PathBuf,
        /// The library's message.
        message: String,
    },
}

/// This crate's result type.
pub type Result<T> = std::result::Result<T, ReportError>;

impl ReportError {
    /// An [`ReportError::Io`] about `path`.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`ReportError::Option`] about `option`.
    pub fn option(option: &str, message: impl Into<String>) -> Self {
        Self::Option {
            option: option.into(),
            message: message.into(),
        }
    }
}
