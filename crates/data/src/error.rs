//! The one error type of this crate.
//!
//! Every variant names the file (or config key) it is about, so the trainer can print it as is and
//! the user knows what to fix without a backtrace.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Everything that can go wrong while finding, fetching, checking or reading a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The run was asked to stop (Ctrl-C) while a dataset file was being loaded or downloaded.
    /// Nothing half-done is kept: an interrupted download's `.part` file is deleted.
    #[error("interrupted while {}", match url {
        Some(url) => format!("downloading {url} into {}", file.display()),
        None => format!("loading {}", file.display()),
    })]
    Interrupted {
        /// The file being read, or the file a download was meant to become.
        file: PathBuf,
        /// Where the file was being downloaded from; `None` while loading it from disk.
        url: Option<String>,
    },

    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file (or, for an in-memory reader, its name).
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },

    /// A download failed part-way: the connection broke or the server misbehaved.
    #[error("downloading {}: {source}", dest.display())]
    Transfer {
        /// The file the download was meant to become.
        dest: PathBuf,
        /// What went wrong while reading the response.
        #[source]
        source: io::Error,
    },

    /// Every address a file could be downloaded from failed.
    #[error("could not download {file}:\n{}", tried.join("\n"))]
    Download {
        /// The file's name.
        file: String,
        /// One line per address tried: the URL and why it failed.
        tried: Vec<String>,
    },

    /// A dataset file is nowhere it was looked for, and could not be downloaded.
    #[error(
        "{file} not found; looked in:\n{}{}\n{hint}",
        looked.iter().map(|p| format!("  {}", p.display())).collect::<Vec<_>>().join("\n"),
        download_error.as_ref().map(|e| format!("\ndownload failed: {e}")).unwrap_or_default()
    )]
    NotFound {
        /// The file's name.
        file: String,
        /// Every path tried, in the order they were tried.
        looked: Vec<PathBuf>,
        /// Why the download (if one was allowed) failed.
        download_error: Option<String>,
        /// How to get the file.
        hint: String,
    },

    /// A `.gz` file is not a valid gzip stream.
    #[error("{file}: cannot decompress (corrupt gzip stream?): {source}")]
    Gzip {
        /// The file.
        file: String,
        /// What the decompressor said.
        #[source]
        source: io::Error,
    },

    /// A file's checksum is not the published one.
    #[error(
        "{file}: checksum mismatch (expected {algorithm} {expected}, got {got}); delete it to re-download"
    )]
    ChecksumMismatch {
        /// The file.
        file: String,
        /// `MD5` (of a download, as published) or `SHA-256` (of the decompressed payload).
        algorithm: &'static str,
        /// The known checksum, lower-case hex.
        expected: String,
        /// The file's checksum, lower-case hex.
        got: String,
    },

    /// An IDX file starts with the wrong magic number.
    #[error("{file}: bad magic number 0x{found:08x} (expected 0x{expected:08x}){}",
        if found >> 16 == 0x1f8b { "; it looks gzip-compressed but could not be read as such" } else { "" })]
    BadMagic {
        /// The file.
        file: String,
        /// The magic number its kind of IDX file must start with.
        expected: u32,
        /// The first four bytes, big-endian.
        found: u32,
    },

    /// A file ends before its header says it should.
    #[error("{file}: truncated: expected {expected} bytes, found {found}")]
    Truncated {
        /// The file.
        file: String,
        /// The size in bytes its header implies (for a gzip file: decompressed).
        expected: u64,
        /// The size in bytes it has.
        found: u64,
    },

    /// A file goes on after the data its header describes.
    #[error("{file}: trailing bytes: expected {expected} bytes, found {found}")]
    TrailingBytes {
        /// The file.
        file: String,
        /// The size in bytes its header implies (for a gzip file: decompressed).
        expected: u64,
        /// The size in bytes it has.
        found: u64,
    },

    /// A `.tar.gz` archive cannot be extracted, or not safely: its gzip or tar stream is corrupt or
    /// cut short, an entry would land outside the folder it is extracted into (an absolute path,
    /// `..`), an entry is neither a plain file nor a folder, or a file the dataset needs is not
    /// in it. Nothing of it is left extracted. Or a `.zip` read in place (GloVe's) cannot be
    /// read: no central directory (cut short), no entry of the needed name, or an entry whose
    /// bytes do not inflate or do not match their CRC-32.
    #[error("{}: {problem}", file.display())]
    Archive {
        /// The archive.
        file: PathBuf,
        /// What is wrong, naming the entry where there is one.
        problem: String,
    },

    /// An archive holds another dataset than the one it was looked for as (the CIFAR-100 archive
    /// where CIFAR-10's is expected).
    #[error("{}: not the {expected} archive: it holds {found}", file.display())]
    WrongArchive {
        /// The archive.
        file: PathBuf,
        /// The dataset (and the folder its archive holds) that was expected.
        expected: String,
        /// What it holds instead: the first entry outside the expected folder, and which
        /// dataset's that is where known.
        found: String,
    },

    /// A file is well-formed but its content is not what the dataset needs (shape, counts, labels).
    #[error("{file}: {problem}")]
    Malformed {
        /// The file.
        file: String,
        /// What is wrong.
        problem: String,
    },

    /// A CSV file has no column named as the target.
    #[error("{file}: no column named \"{target}\" (columns found: {})", found.join(", "))]
    CsvMissingTarget {
        /// The file.
        file: String,
        /// The target column asked for.
        target: String,
        /// The columns of the header row, in order.
        found: Vec<String>,
    },

    /// A CSV row has a different number of fields than the header.
    #[error("{file}: line {line}: {found} fields, but the header has {expected}")]
    CsvRaggedRow {
        /// The file.
        file: String,
        /// The line number, counting from 1 (the header is line 1).
        line: u64,
        /// Number of columns of the header.
        expected: usize,
        /// Number of fields of the row.
        found: usize,
    },

    /// A CSV cell does not hold a value its column can take.
    #[error("{file}: line {line}, column \"{column}\": {problem}: \"{value}\"")]
    CsvBadValue {
        /// The file.
        file: String,
        /// The line number, counting from 1 (the header is line 1).
        line: u64,
        /// The column's name.
        column: String,
        /// The cell as written.
        value: String,
        /// What is wrong with it.
        problem: String,
    },

    /// A CSV file is not usable as a whole: empty, no data rows, duplicate column names, syntax.
    #[error("{file}: {problem}")]
    Csv {
        /// The file.
        file: String,
        /// What is wrong.
        problem: String,
    },

    /// A class label is not below the number of classes it is declared with.
    #[error("class label {label} is not below the number of classes ({num_classes})")]
    LabelOutOfRange {
        /// The first offending label.
        label: u32,
        /// The number of classes.
        num_classes: usize,
    },

    /// A data setting is out of its range.
    #[error("{key}: {problem}")]
    InvalidConfig {
        /// The config key, as a dotted path (`data.validation_fraction`).
        key: &'static str,
        /// What is wrong with its value.
        problem: String,
    },

    /// Arrays that must agree in size do not.
    #[error("{what}: expected {expected} values, found {found}")]
    ShapeMismatch {
        /// What was being built.
        what: String,
        /// The size implied by the stated shape.
        expected: usize,
        /// The size given.
        found: usize,
    },
}

impl DataError {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether this is [`DataError::Interrupted`]: the user asked to stop, so no other source
    /// (mirror, directory) should be tried.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, Self::Interrupted { .. })
    }
}

/// `Err(`[`DataError::Interrupted`]`)` loading `file` once `cancel` is set.
pub(crate) fn check_cancel(cancel: &AtomicBool, file: &Path) -> Result<(), DataError> {
    if cancel.load(Ordering::Relaxed) {
        return Err(DataError::Interrupted {
            file: file.to_owned(),
            url: None,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interruption_names_the_file_and_the_address() {
        let loading = DataError::Interrupted {
            file: PathBuf::from("data/mnist/t10k-labels-idx1-ubyte.gz"),
            url: None,
        };
        assert_eq!(
            loading.to_string(),
            "interrupted while loading data/mnist/t10k-labels-idx1-ubyte.gz"
        );
        let downloading = DataError::Interrupted {
            file: PathBuf::from("data/mnist/x.gz"),
            url: Some("https://example.org/x.gz".into()),
        };
        assert_eq!(
            downloading.to_string(),
            "interrupted while downloading https://example.org/x.gz into data/mnist/x.gz"
        );
        assert!(downloading.is_interrupted());
        assert!(check_cancel(&AtomicBool::new(false), Path::new("f")).is_ok());
        assert!(
            check_cancel(&AtomicBool::new(true), Path::new("f"))
                .unwrap_err()
                .is_interrupted()
        );
    }
}
