//! GloVe word vectors (Pennington, Socher and Manning, 2014), the "6B" set trained on Wikipedia
//! 2014 and Gigaword 5 (400 000 lower-cased words; 50, 100, 200 or 300 values each), as
//! the starting embedding of a text model.
//!
//! The folder `<root>/glove/` is looked at for
//! 1. the text file `glove.6B.<dim>d.txt`, else
//! 2. the official archive `glove.6B.zip`, read in place: only the entry `glove.6B.<dim>d.txt`
//!    is inflated, as a stream, and nothing is extracted (the four files are over 2 GB
//!    unpacked), else
//! 3. when allowed, the archive is downloaded there (about 822 MiB; progress bar).
//!
//! **Integrity.** Stanford publishes no checksum of `glove.6B.zip`, so none is checked on
//! download; what is checked is the CRC-32 that the zip format stores for each entry, over the
//! inflated bytes of the entry read, to its end. A download cut short has no central directory
//! (which the zip format keeps at the end) and cannot be opened; a corrupted byte fails the
//! inflation or the CRC. Either is a [`DataError::Archive`] saying to delete the file. A text
//! file given as such has no checksum at all: its lines are checked, nothing more.
//!
//! **Lines** are `word v1 … v<dim>`, single spaces between, read as torchtext's `Vectors` reads
//! them: trailing ASCII whitespace stripped (`rstrip()`), then split at each space. Every line
//! must have `dim` values (torchtext skips a line of a word alone as a header; GloVe 6B has none,
//! so here it is an error). Only the lines of words in the vocabulary are kept, and only their
//! values are parsed: the other rows cannot change a run, and parsing 40 million numbers would
//! cost seconds. A value is parsed as an `f64` rounded to `f32`, as torchtext's `float(x)` into
//! a float tensor does, and must be finite. A word that is not valid UTF-8 is skipped, as
//! torchtext skips it; if a word occurs twice, its last line counts, as in torchtext. The
//! 400 000-word table is never held: memory is the vocabulary's rows only.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use zip::ZipArchive;
use zip::result::ZipError;

use crate::DataError;
use crate::download::download_verified;
use crate::error::check_cancel;
use crate::progress;
use crate::text::Vocabulary;

/// Where `glove.6B.zip` is downloaded from: the project's page,
/// <https://nlp.stanford.edu/projects/glove/>.
pub const GLOVE_URL: &str = "https://nlp.stanford.edu/data/glove.6B.zip";
/// The sizes of the vectors of GloVe 6B (the `model.embedding_dim` setting).
pub const GLOVE_DIMS: [usize; 4] = [50, 100, 200, 300];
/// The folder under the data root where the files are looked for and downloaded to.
const DIR: &str = "glove";
/// The official archive's file name.
const ZIP: &str = "glove.6B.zip";
/// Largest download accepted: `glove.6B.zip` is about 822 MiB.
const MAX_ZIP_BYTES: u64 = 1 << 30;
/// Lines read between two looks at the cancellation flag.
const LINES_PER_CHECK: usize = 10_000;

/// GloVe vectors for the tokens of a vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct Glove {
    /// Values per vector.
    pub dim: usize,
    /// `vocabulary.len() * dim` values: row `i` is the vector of token `i`, zeros for a token
    /// GloVe does not have (`<pad>` and `<unk>` among them).
    pub vectors: Vec<f32>,
    /// Whether GloVe has token `i`.
    pub found: Vec<bool>,
    /// The file the vectors were read from: the text file, or the zip (its entry
    /// `glove.6B.<dim>d.txt`).
    pub source: PathBuf,
}

impl Glove {
    /// Number of the vocabulary's tokens GloVe has a vector for.
    pub fn found_count(&self) -> usize {
        self.found.iter().filter(|&&f| f).count()
    }

    /// The vector of token `id`.
    ///
    /// # Panics
    /// If `id` is not below the vocabulary's size.
    pub fn vector(&self, id: u32) -> &[f32] {
        let start = id as usize * self.dim;
        &self.vectors[start..start + self.dim]
    }
}

/// Loads the `dim`-valued GloVe 6B vector of every token of `vocabulary` from `<root>/glove/`
/// (see the module doc), downloading `glove.6B.zip` there when it is missing if `download` is
/// true, with progress bars on stderr if `progress` is true.
///
/// `dim` must be one of [`GLOVE_DIMS`], else the error is a [`DataError::InvalidConfig`] naming
/// `model.embedding_dim`. A malformed line is a [`DataError::Malformed`] naming the file (or
/// `<zip>!<entry>`) and the line, counting from 1. Once `cancel` is set (Ctrl-C), loading stops
/// within a few thousand lines, or at the next chunk of a download, with
/// [`DataError::Interrupted`], leaving no partial download behind.
pub fn load_glove(
    root: &Path,
    vocabulary: &Vocabulary,
    dim: usize,
    download: bool,
    progress: bool,
    cancel: &AtomicBool,
) -> Result<Glove, DataError> {
    let source = Source {
        url: GLOVE_URL,
        download,
        progress,
    };
    load_with(root, vocabulary, dim, &source, cancel)
}

/// How [`load_with`] gets the files.
#[derive(Debug)]
struct Source<'a> {
    /// Where the archive is downloaded from.
    url: &'a str,
    /// Whether a missing archive may be downloaded.
    download: bool,
    /// Whether to show progress bars.
    progress: bool,
}

/// [`load_glove`] with the address as a parameter (tests use one that refuses connections).
fn load_with(
    root: &Path,
    vocabulary: &Vocabulary,
    dim: usize,
    source: &Source<'_>,
    cancel: &AtomicBool,
) -> Result<Glove, DataError> {
    if !GLOVE_DIMS.contains(&dim) {
        return Err(DataError::InvalidConfig {
            key: "model.embedding_dim",
            problem: format!("GloVe 6B has vectors of 50, 100, 200 or 300 values, not {dim}"),
        });
    }
    let dir = root.join(DIR);
    let entry = entry_name(dim);
    let text = dir.join(&entry);
    match fs::metadata(&text) {
        Ok(meta) if meta.is_file() => {
            check_cancel(cancel, &text)?;
            let file = File::open(&text).map_err(|e| DataError::io(&text, e))?;
            let input = Input::File(&text);
            let vectors = read_vectors(file, meta.len(), &input, vocabulary, dim, source, cancel)?;
            return Ok(vectors.into_glove(dim, text));
        }
        Ok(_) => {}
        Err(e) if is_absent(&e) => {}
        Err(e) => return Err(DataError::io(&text, e)),
    }

    let zip = dir.join(ZIP);
    let present = match fs::metadata(&zip) {
        Ok(meta) => meta.is_file(),
        Err(e) if is_absent(&e) => false,
        Err(e) => return Err(DataError::io(&zip, e)),
    };
    if !present {
        if !source.download {
            return Err(not_found(root, dim, source.url, None, false));
        }
        let urls = [source.url.to_owned()];
        match download_verified(&urls, &zip, None, MAX_ZIP_BYTES, source.progress, cancel) {
            Ok(()) => {}
            Err(e) if e.is_interrupted() => return Err(e),
            Err(e) => return Err(not_found(root, dim, source.url, Some(e.to_string()), true)),
        }
    }
    check_cancel(cancel, &zip)?;
    let file = File::open(&zip).map_err(|e| DataError::io(&zip, e))?;
    let mut archive = ZipArchive::new(BufReader::new(file)).map_err(|e| DataError::Archive {
        file: zip.clone(),
        problem: format!(
            "cannot read it as a zip (cut short or corrupt?): {e}; delete it to download it again"
        ),
    })?;
    let input = Input::Zip {
        zip: &zip,
        entry: &entry,
    };
    let reader = match archive.by_name(&entry) {
        Ok(reader) => reader,
        Err(ZipError::FileNotFound) => {
            return Err(input.archive_error(format!(
                "has no entry {entry}; it is not GloVe's {ZIP}, or an incomplete one: delete it \
                 to download it again"
            )));
        }
        Err(e) => return Err(input.archive_error(format!("{entry}: cannot be read: {e}"))),
    };
    let size = reader.size();
    let vectors = read_vectors(reader, size, &input, vocabulary, dim, source, cancel)?;
    Ok(vectors.into_glove(dim, zip))
}

/// `glove.6B.<dim>d.txt`.
fn entry_name(dim: usize) -> String {
    format!("glove.6B.{dim}d.txt")
}

/// Whether a metadata error means there is nothing there.
fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// The error for vectors that are neither in `<root>/glove/` as text or zip, nor downloaded.
fn not_found(
    root: &Path,
    dim: usize,
    url: &str,
    download_error: Option<String>,
    download: bool,
) -> DataError {
    let dir = root.join(DIR);
    let text = entry_name(dim);
    let hint = if download {
        format!(
            "To get it, download {url} (822 MB) and put it in {} (it is read in place, not \
             extracted), or put its file {text} there",
            dir.display()
        )
    } else {
        format!(
            "Downloading was not allowed: allow it (data.download = true) to fetch {url} \
             (822 MB), or put that file in {} (it is read in place, not extracted), or its file \
             {text}",
            dir.display()
        )
    };
    DataError::NotFound {
        file: format!("GloVe {text}"),
        looked: vec![dir.join(&text), dir.join(ZIP)],
        download_error,
        hint,
    }
}

/// Where the lines come from, for messages.
enum Input<'a> {
    /// A text file.
    File(&'a Path),
    /// An entry of a zip.
    Zip {
        /// The zip.
        zip: &'a Path,
        /// The entry's name.
        entry: &'a str,
    },
}

impl Input<'_> {
    /// `path`, or `zip!entry`.
    fn name(&self) -> String {
        match self {
            Input::File(path) => path.display().to_string(),
            Input::Zip { zip, entry } => format!("{}!{entry}", zip.display()),
        }
    }

    /// The error for bytes that could not be read: of a file, an I/O error; of a zip entry, the
    /// entry failing to inflate or its CRC-32 check.
    fn read_error(&self, e: io::Error) -> DataError {
        match self {
            Input::File(path) => DataError::io(*path, e),
            Input::Zip { entry, .. } => self.archive_error(format!(
                "{entry}: cannot be read (corrupt?): {e}; delete it to download it again"
            )),
        }
    }

    /// A [`DataError::Archive`] about the zip.
    fn archive_error(&self, problem: String) -> DataError {
        let file = match self {
            Input::File(path) => path.to_path_buf(),
            Input::Zip { zip, .. } => zip.to_path_buf(),
        };
        DataError::Archive { file, problem }
    }

    /// The path that cancellation errors name.
    fn path(&self) -> &Path {
        match self {
            Input::File(path) => path,
            Input::Zip { zip, .. } => zip,
        }
    }
}

/// The vocabulary's vectors, as read.
struct Vectors {
    values: Vec<f32>,
    found: Vec<bool>,
}

impl Vectors {
    fn into_glove(self, dim: usize, source: PathBuf) -> Glove {
        Glove {
            dim,
            vectors: self.values,
            found: self.found,
            source,
        }
    }
}

/// Reads the `len` bytes of lines of `reader` (see the module doc), keeping the vectors of
/// `vocabulary`'s tokens.
fn read_vectors(
    reader: impl Read,
    len: u64,
    input: &Input<'_>,
    vocabulary: &Vocabulary,
    dim: usize,
    source: &Source<'_>,
    cancel: &AtomicBool,
) -> Result<Vectors, DataError> {
    let message = format!("reading GloVe {}", input.name());
    let bar = progress::bar(source.progress, len, progress::BYTES, message);
    let mut reader = BufReader::with_capacity(1 << 16, bar.wrap_read(reader));
    let result = parse_lines(&mut reader, input, vocabulary, dim, cancel);
    let result = match (result, input) {
        // A zip entry's bad line may be the corruption its CRC-32 is there to catch: read it to
        // the end so that a failed check is what is reported.
        (Err(e @ DataError::Malformed { .. }), Input::Zip { .. }) => {
            match io::copy(&mut reader, &mut io::sink()) {
                Ok(_) => Err(e),
                Err(read) => Err(input.read_error(read)),
            }
        }
        (result, _) => result,
    };
    bar.finish_and_clear();
    result
}

/// The lines of `reader`, to its end (where a zip entry's CRC-32 is checked).
fn parse_lines(
    reader: &mut impl BufRead,
    input: &Input<'_>,
    vocabulary: &Vocabulary,
    dim: usize,
    cancel: &AtomicBool,
) -> Result<Vectors, DataError> {
    let mut out = Vectors {
        values: vec![0.0; vocabulary.len() * dim],
        found: vec![false; vocabulary.len()],
    };
    let mut line = Vec::new();
    for number in 1.. {
        if number % LINES_PER_CHECK == 1 {
            check_cancel(cancel, input.path())?;
        }
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(input.read_error(e)),
        }
        // Python's `bytes.rstrip()`: ASCII whitespace.
        let end = line
            .iter()
            .rposition(|b| !b" \t\n\r\x0b\x0c".contains(b))
            .map_or(0, |i| i + 1);
        let text = &line[..end];
        let malformed = |problem: String| DataError::Malformed {
            file: input.name(),
            problem: format!("line {number}: {problem}"),
        };
        let (word, values) = match text.iter().position(|&b| b == b' ') {
            Some(space) => (&text[..space], &text[space + 1..]),
            None => (text, &b""[..]),
        };
        let count = if values.is_empty() {
            0
        } else {
            values.iter().filter(|&&b| b == b' ').count() + 1
        };
        if count != dim {
            return Err(malformed(format!(
                "{count} values after the word, expected {dim} (is it the {dim}-d file?)"
            )));
        }
        let Some(id) = std::str::from_utf8(word)
            .ok()
            .and_then(|word| vocabulary.get(word))
        else {
            continue;
        };
        let row = &mut out.values[id as usize * dim..(id as usize + 1) * dim];
        for (slot, value) in row.iter_mut().zip(values.split(|&b| b == b' ')) {
            let parsed = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite());
            let Some(parsed) = parsed else {
                return Err(malformed(format!(
                    "\"{}\" is not a finite number",
                    String::from_utf8_lossy(value)
                )));
            };
            *slot = parsed as f32;
        }
        out.found[id as usize] = true;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
