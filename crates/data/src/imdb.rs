//! The IMDb movie reviews of Maas et al. (2011), "Learning Word Vectors for Sentiment Analysis":
//! 25 000 training and 25 000 test reviews, each positive or negative, as token ids.
//!
//! The folder `<root>/imdb/` is looked at for
//! 1. the extracted folder `aclImdb/`, else
//! 2. the official archive `aclImdb_v1.tar.gz`, which is then extracted beside itself (all or
//!    nothing, through a temporary folder; its MD5 checked) and kept, else
//! 3. when allowed, the archive is downloaded there (progress bar, MD5 as torchtext lists it)
//!    and extracted.
//!
//! The reviews are `aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt`, exactly 12 500 in each of
//! the four folders; the rest of the folder (`train/unsup/`, the `*.feat` bag-of-words files,
//! `urls_*.txt`, `imdb.vocab`) is not read. Each review is tokenised with torchtext's
//! `basic_english` rules ([`crate::text::tokenize`]); the vocabulary is built from the training
//! reviews only ([`Vocabulary::build`]), and both splits are encoded with it, each review cut
//! to its first `max_len` tokens or padded to them ([`crate::text::encode`]).
//!
//! Reading and tokenising 50 000 files takes seconds, so the result is cached in
//! `<root>/imdb/cache-<key>.bin` (format in `imdb/cache.rs`), and later loads with the same
//! settings from the same files read only the cache.
//!
//! Loading can be cancelled (Ctrl-C): the flag is looked at between files and between chunks of
//! the download and the extraction, and loading then stops with [`DataError::Interrupted`].

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::UNIX_EPOCH;

use crate::archive::{self, Expected, metadata};
use crate::download::{DEFAULT_MAX_BYTES, download_verified};
use crate::error::check_cancel;
use crate::progress;
use crate::text::{self, Vocabulary};
use crate::{DataError, Dataset, Features, Splits, Targets};

mod cache;

/// Where the archive is downloaded from: the dataset's page,
/// <https://ai.stanford.edu/~amaas/data/sentiment/>.
pub const IMDB_URL: &str = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz";
/// MD5 of the archive (about 84 MB), as torchtext's `IMDB` dataset lists it; the dataset's page
/// publishes none.
const IMDB_MD5: &str = "7c2ac02c03563afcf9b574c7e56c153a";
/// The folder under the data root where the files are looked for and downloaded to.
const DIR: &str = "imdb";
/// The official archive's file name.
const ARCHIVE: &str = "aclImdb_v1.tar.gz";
/// The folder the archive holds, and that it is extracted to.
const FOLDER: &str = "aclImdb";
/// Reviews in each of the four folders of the official dataset.
const REVIEWS_PER_FOLDER: usize = 12_500;
/// The four folders of reviews, in reading order, with their label: negative 0, positive 1.
const FOLDERS: [(&str, u32); 4] = [
    ("train/neg", 0),
    ("train/pos", 1),
    ("test/neg", 0),
    ("test/pos", 1),
];

/// How reviews become token ids (the `data.vocab_size`, `data.min_count` and `data.max_len`
/// settings).
#[derive(Debug, Clone, PartialEq)]
pub struct ImdbSettings {
    /// Most ids in the vocabulary, `<pad>` and `<unk>` included (default 25 000, the
    /// `MAX_VOCAB_SIZE` of the widely copied PyTorch BiLSTM-on-IMDb-with-GloVe recipe).
    pub vocab_size: usize,
    /// Fewest times a word must occur in the training reviews to get an id (default 1: every
    /// word, up to the cap, which already leaves out the rarest).
    pub min_count: u32,
    /// Tokens kept per review, the first ones; shorter reviews are padded (default 400: a
    /// bound on the cost of a batch, set by its longest review; longer reviews lose their end).
    pub max_len: usize,
}

impl Default for ImdbSettings {
    fn default() -> Self {
        Self {
            vocab_size: 25_000,
            min_count: 1,
            max_len: 400,
        }
    }
}

/// IMDb as token ids: the splits and the vocabulary that numbers their tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Imdb {
    /// `train`: the 25 000 training reviews; `test`: the 25 000 test reviews; no validation
    /// split (the trainer holds one out of `train`). Features are token ids
    /// ([`Features::token_shape`]: `max_len` per review, the vocabulary's size); targets are
    /// [`Targets::Classes`] with 2 classes, negative 0 and positive 1. Negative reviews come
    /// before positive ones, each by the id in their file name.
    pub splits: Splits,
    /// The vocabulary of the training reviews: id `i` is `vocabulary.token(i)`.
    pub vocabulary: Vocabulary,
    /// Whether the cache was used, written or could not be, for the trainer to report.
    pub cache: ImdbCache,
}

/// What became of the cache on a load of IMDb (diagnostics: the data is the same either way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImdbCache {
    /// Loaded from this cache file; no review was read.
    Read(PathBuf),
    /// No cache for these settings and files: the reviews were read and this file written.
    Written(PathBuf),
    /// This cache file could not be used (it is cut short or corrupt: `reason`); the reviews
    /// were read again and the file written anew.
    Rebuilt {
        /// The cache file.
        path: PathBuf,
        /// Why it could not be used.
        reason: String,
    },
    /// The reviews were read, but the cache could not be written (`reason`: a read-only folder,
    /// a full disk); the next load reads them again.
    NotWritten {
        /// The cache file it would have been.
        path: PathBuf,
        /// Why it could not be written.
        reason: String,
    },
}

/// Loads IMDb from `<root>/imdb/` (see the module doc), downloading the archive there when it
/// is missing if `download` is true, with progress bars on stderr if `progress` is true.
///
/// `settings` are checked first: `vocab_size` below 3, `min_count` 0 and `max_len` 0 are
/// [`DataError::InvalidConfig`] errors naming `data.vocab_size`, `data.min_count` and
/// `data.max_len`. Review files are decoded as UTF-8, an invalid byte becoming U+FFFD (never an
/// error); an empty review is kept, with length 0 and only padding (a model that packs sequences
/// must give it at least one step). Once `cancel` is set (Ctrl-C), loading stops at the next file
/// or chunk with [`DataError::Interrupted`], leaving no partial download or extraction behind.
pub fn load_imdb(
    root: &Path,
    settings: &ImdbSettings,
    download: bool,
    progress: bool,
    cancel: &AtomicBool,
) -> Result<Imdb, DataError> {
    let source = Source {
        url: IMDB_URL,
        md5: IMDB_MD5,
        per_folder: REVIEWS_PER_FOLDER,
        download,
        progress,
    };
    load_with(root, settings, &source, cancel)
}

/// How [`load_with`] gets and checks the files.
#[derive(Debug)]
struct Source<'a> {
    /// Where the archive is downloaded from.
    url: &'a str,
    /// MD5 of the archive.
    md5: &'a str,
    /// Reviews each of the four folders must hold.
    per_folder: usize,
    /// Whether a missing archive may be downloaded.
    download: bool,
    /// Whether to show progress bars.
    progress: bool,
}

/// [`load_imdb`] with the address, the archive's MD5 and the review counts as parameters
/// (tests use small trees and archives of their own).
fn load_with(
    root: &Path,
    settings: &ImdbSettings,
    source: &Source<'_>,
    cancel: &AtomicBool,
) -> Result<Imdb, DataError> {
    text::check_settings(settings.vocab_size, settings.min_count)?;
    text::check_max_len(settings.max_len)?;
    let tree = obtain(root, source, cancel)?;
    let folders = FOLDERS
        .iter()
        .map(|&(name, label)| list_folder(&tree, name, label, source.per_folder, cancel))
        .collect::<Result<Vec<_>, _>>()?;
    let key = cache::key(settings, &folders);
    let path = root.join(DIR).join(format!("cache-{key}.bin"));

    let stale = match cache::read(&path, &key, settings, cancel)? {
        cache::Lookup::Hit(imdb) => return Ok(imdb.into_imdb(ImdbCache::Read(path))),
        cache::Lookup::Absent => None,
        cache::Lookup::Unusable(reason) => Some(reason),
    };
    let built = read_reviews(&folders, settings, source.progress, cancel)?;
    let status = match (cache::write(&path, &key, &built), stale) {
        (Ok(()), None) => ImdbCache::Written(path),
        (Ok(()), Some(reason)) => ImdbCache::Rebuilt { path, reason },
        (Err(e), _) => ImdbCache::NotWritten {
            path,
            reason: e.to_string(),
        },
    };
    Ok(built.into_imdb(status))
}

/// Both splits and their vocabulary, before they are told what became of the cache.
#[derive(Debug, Clone, PartialEq)]
struct Loaded {
    /// The vocabulary of the training reviews.
    vocabulary: Vocabulary,
    /// The training reviews.
    train: Dataset,
    /// The test reviews.
    test: Dataset,
}

impl Loaded {
    fn into_imdb(self, cache: ImdbCache) -> Imdb {
        Imdb {
            splits: Splits {
                train: self.train,
                validation: None,
                test: Some(self.test),
            },
            vocabulary: self.vocabulary,
            cache,
        }
    }
}

/// The extracted folder: found, or extracted from the archive, found or freshly downloaded.
fn obtain(root: &Path, source: &Source<'_>, cancel: &AtomicBool) -> Result<PathBuf, DataError> {
    let dir = root.join(DIR);
    let tree = dir.join(FOLDER);
    if metadata(&tree)?.is_some_and(|m| m.is_dir()) {
        return Ok(tree);
    }
    let archive = dir.join(ARCHIVE);
    if !metadata(&archive)?.is_some_and(|m| m.is_file()) {
        if !source.download {
            return Err(not_found(root, source.url, None, false));
        }
        let urls = [source.url.to_owned()];
        let md5 = Some(source.md5);
        match download_verified(
            &urls,
            &archive,
            md5,
            DEFAULT_MAX_BYTES,
            source.progress,
            cancel,
        ) {
            Ok(()) => {}
            Err(e) if e.is_interrupted() => return Err(e),
            Err(e) => return Err(not_found(root, source.url, Some(e.to_string()), true)),
        }
    }
    check_cancel(cancel, &archive)?;
    let file = File::open(&archive).map_err(|e| DataError::io(&archive, e))?;
    let size = file
        .metadata()
        .map_err(|e| DataError::io(&archive, e))?
        .len();
    let reader = BufReader::new(file);
    let folders: Vec<&str> = FOLDERS.iter().map(|&(name, _)| name).collect();
    let expected = Expected {
        dataset: "IMDb",
        folder: FOLDER,
        files: &[],
        folders: &folders,
        md5: source.md5,
        others: &[],
    };
    let message = format!("extracting {ARCHIVE}");
    let bar = progress::bar(source.progress, size, progress::BYTES, message);
    let result = archive::extract_tar_gz(bar.wrap_read(reader), &archive, &dir, &expected, cancel);
    bar.finish_and_clear();
    result
}

/// The error for a dataset that is neither extracted nor archived in `<root>/imdb/`, nor
/// downloaded from `url`.
fn not_found(root: &Path, url: &str, download_error: Option<String>, download: bool) -> DataError {
    let dir = root.join(DIR);
    let mut hint = if download {
        format!("To get it, download {url} and put it in {}", dir.display())
    } else {
        format!(
            "Downloading was not allowed: allow it (data.download = true) to fetch {url}, or put \
             that file in {}",
            dir.display()
        )
    };
    hint.push_str(&format!(
        " (it is extracted there), or its extracted folder {FOLDER}/"
    ));
    DataError::NotFound {
        file: format!("IMDb {ARCHIVE}"),
        looked: vec![dir.join(FOLDER), dir.join(ARCHIVE)],
        download_error,
        hint,
    }
}

/// The review files of one of the four folders, in reading order, and what identifies them for
/// the cache.
#[derive(Debug)]
struct Folder {
    /// `train/neg`, `train/pos`, `test/neg` or `test/pos`.
    name: &'static str,
    /// 0 for negative reviews, 1 for positive ones.
    label: u32,
    /// The `*.txt` files, sorted by the id before `_` in their name (a name without one
    /// last), then by name.
    files: Vec<PathBuf>,
    /// Their total size in bytes.
    bytes: u64,
    /// The latest modification time among them, in nanoseconds since 1970.
    newest: u128,
}

/// Lists `tree/<name>`, which must hold `count` review files.
fn list_folder(
    tree: &Path,
    name: &'static str,
    label: u32,
    count: usize,
    cancel: &AtomicBool,
) -> Result<Folder, DataError> {
    let path = tree.join(name);
    check_cancel(cancel, &path)?;
    let entries = match fs::read_dir(&path) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Err(incomplete(tree, &path));
        }
        Err(e) => return Err(DataError::io(&path, e)),
    };
    let mut files = Vec::new();
    let (mut bytes, mut newest) = (0u64, 0u128);
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(&path, e))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if !file_name.ends_with(".txt") {
            continue;
        }
        let file = entry.path();
        let meta = fs::metadata(&file).map_err(|e| DataError::io(&file, e))?;
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().map_err(|e| DataError::io(&file, e))?;
        // A time before 1970 counts as 1970: it only has to be the same on the next load.
        let since = modified.duration_since(UNIX_EPOCH).unwrap_or_default();
        newest = newest.max(since.as_nanos());
        bytes += meta.len();
        let id = file_name
            .split_once('_')
            .and_then(|(id, _)| id.parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        files.push(((id, file_name), file));
    }
    if files.len() != count {
        return Err(DataError::Malformed {
            file: path.display().to_string(),
            problem: format!(
                "holds {} reviews (*.txt files), not {count}: {} is incomplete or not IMDb's; \
                 delete it, and it is extracted again from {} (downloaded first if allowed and \
                 missing)",
                files.len(),
                tree.display(),
                archive_beside(tree).display()
            ),
        });
    }
    files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(Folder {
        name,
        label,
        files: files.into_iter().map(|(_, file)| file).collect(),
        bytes,
        newest,
    })
}

/// A folder of reviews is missing from the extracted tree.
fn incomplete(tree: &Path, folder: &Path) -> DataError {
    DataError::NotFound {
        file: format!("IMDb reviews {}", folder.display()),
        looked: vec![folder.to_owned()],
        download_error: None,
        hint: format!(
            "{} is incomplete: delete it, and it is extracted again from {} (downloaded first if \
             allowed and missing)",
            tree.display(),
            archive_beside(tree).display()
        ),
    }
}

/// `<root>/imdb/aclImdb_v1.tar.gz` for the tree `<root>/imdb/aclImdb`.
fn archive_beside(tree: &Path) -> PathBuf {
    tree.parent().unwrap_or(tree).join(ARCHIVE)
}

/// Reads, tokenises and encodes every review of `folders` (train, then test), building the
/// vocabulary from the training ones.
fn read_reviews(
    folders: &[Folder],
    settings: &ImdbSettings,
    progress: bool,
    cancel: &AtomicBool,
) -> Result<Loaded, DataError> {
    let max_len = settings.max_len;
    let total: usize = folders.iter().map(|f| f.files.len()).sum();
    let message = "reading IMDb reviews".to_owned();
    let bar = progress::bar(progress, total as u64, progress::FILES, message);
    let (train, test): (Vec<&Folder>, Vec<&Folder>) =
        folders.iter().partition(|f| f.name.starts_with("train"));

    // Training reviews: every token counted, the first `max_len` kept as provisional ids (in
    // order of first appearance) until the vocabulary is known.
    let mut words = Interner::default();
    let mut rows = Rows::default();
    let mut text = Vec::new();
    for folder in &train {
        for file in &folder.files {
            read_review(file, &mut text, cancel)?;
            let mut kept = 0;
            text::for_each_token(&String::from_utf8_lossy(&text), |token| {
                let id = words.count(token);
                if kept < max_len {
                    rows.ids.push(id);
                    kept += 1;
                }
            });
            rows.end_row(kept, max_len, folder.label);
            bar.inc(1);
        }
    }
    let vocabulary = Vocabulary::build(&words.counts(), settings.vocab_size, settings.min_count)?;
    let final_id: Vec<u32> = words.tokens.iter().map(|t| vocabulary.id(t)).collect();
    for (row, &length) in rows.lengths.iter().enumerate() {
        for id in &mut rows.ids[row * max_len..row * max_len + length as usize] {
            *id = final_id[*id as usize];
        }
    }
    let train = rows.into_dataset(max_len, vocabulary.len())?;

    let mut rows = Rows::default();
    for folder in &test {
        for file in &folder.files {
            read_review(file, &mut text, cancel)?;
            let mut kept = 0;
            text::for_each_token(&String::from_utf8_lossy(&text), |token| {
                if kept < max_len {
                    rows.ids.push(vocabulary.id(token));
                    kept += 1;
                }
            });
            rows.end_row(kept, max_len, folder.label);
            bar.inc(1);
        }
    }
    let test = rows.into_dataset(max_len, vocabulary.len())?;
    bar.finish_and_clear();
    Ok(Loaded {
        vocabulary,
        train,
        test,
    })
}

/// Reads the review `path` into `buf` (emptied first), after a look at `cancel`.
fn read_review(path: &Path, buf: &mut Vec<u8>, cancel: &AtomicBool) -> Result<(), DataError> {
    check_cancel(cancel, path)?;
    buf.clear();
    File::open(path)
        .and_then(|mut file| file.read_to_end(buf))
        .map_err(|e| DataError::io(path, e))?;
    Ok(())
}

/// Every distinct token of the training reviews with its count, numbered in order of first
/// appearance.
#[derive(Debug, Default)]
struct Interner {
    /// The number of each token.
    numbers: HashMap<String, u32>,
    /// The token of each number.
    tokens: Vec<String>,
    /// How often each number was counted.
    seen: Vec<u64>,
}

impl Interner {
    /// Counts `token` once more and returns its number.
    fn count(&mut self, token: &str) -> u32 {
        let number = match self.numbers.get(token) {
            Some(&number) => number,
            None => {
                let number = self.tokens.len() as u32;
                self.numbers.insert(token.to_owned(), number);
                self.tokens.push(token.to_owned());
                self.seen.push(0);
                number
            }
        };
        self.seen[number as usize] += 1;
        number
    }

    /// Each token's count, for [`Vocabulary::build`].
    fn counts(&self) -> HashMap<String, u64> {
        self.tokens
            .iter()
            .cloned()
            .zip(self.seen.iter().copied())
            .collect()
    }
}

/// Padded rows of ids being built, with their lengths and labels.
#[derive(Debug, Default)]
struct Rows {
    /// `max_len` ids per finished row.
    ids: Vec<u32>,
    /// Real tokens of each row.
    lengths: Vec<u32>,
    /// Label of each row.
    labels: Vec<u32>,
}

impl Rows {
    /// Ends a row whose `kept` ids were pushed: pads it to `max_len`.
    fn end_row(&mut self, kept: usize, max_len: usize, label: u32) {
        self.ids
            .resize(self.ids.len() + (max_len - kept), Vocabulary::PAD);
        // `kept <= max_len`, which `check_max_len` bounded by `u32::MAX`.
        self.lengths.push(kept as u32);
        self.labels.push(label);
    }

    fn into_dataset(self, max_len: usize, vocab_size: usize) -> Result<Dataset, DataError> {
        let features = Features::from_tokens(self.ids, self.lengths, max_len, vocab_size)?;
        Dataset::new(
            features,
            Targets::Classes {
                labels: self.labels,
                num_classes: 2,
            },
        )
    }
}

#[cfg(test)]
mod tests;
