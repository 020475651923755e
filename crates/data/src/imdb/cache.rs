//! The cache of a loaded IMDb: the vocabulary and both splits' ids, lengths and labels, in one
//! file that a later load reads instead of 50 000 reviews.
//!
//! **Key.** The file is `cache-<key>.bin`, `<key>` the SHA-256 (hex) of: the format version,
//! the tokeniser's name, `vocab_size`, `min_count`, `max_len`, and for each of the four folders of
//! reviews the number of `*.txt` files, their total size and their latest modification time. So
//! other settings, or reviews added, removed, resized or rewritten (a rewrite changes the
//! modification time), give another key and the reviews are read again. The files are
//! identified by the tree rather than by the archive because the tree is what is read, and it may
//! have come without an archive; the price is that the tree must stay (deleting it to save space
//! makes the next load extract the archive again, with new modification times, so a new key).
//! Only listing the four folders is needed to find the key, not reading them. Caches of other
//! settings stay beside each other; any of them can be deleted at any time (it is rebuilt when
//! next needed).
//!
//! **Format** (integers little-endian):
//!
//! ```text
//! "steplab imdb cache\n"  version: u32  key: 64 ASCII hex bytes  payload length: u64
//! payload:
//!   max_len: u32
//!   tokens: u32, then each token as its byte length (u32) and its UTF-8 bytes
//!   train, then test: rows: u32; lengths: rows × u32; labels: rows × u8;
//!                     ids: the lengths[r] real ids of each row r, in order, u32 each
//! SHA-256 of the payload: 32 bytes
//! ```
//!
//! **Trust.** A file that is cut short, longer than it says, for another key or version, or whose
//! payload does not hash to its digest, is never used: the reviews are read again and the file
//! written anew ([`super::ImdbCache::Rebuilt`] says why). What it holds is then checked as any
//! token features are ([`Features::from_tokens`]: lengths, ids below the vocabulary's size,
//! labels below 2). It is written to `<file>.tmp-<pid>` and renamed into place, so a run killed
//! while writing leaves no cut-short cache under the real name.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use sha2::{Digest, Sha256};

use super::{Folder, ImdbSettings, Loaded};
use crate::download::hex;
use crate::error::check_cancel;
use crate::text::Vocabulary;
use crate::{DataError, Dataset, Features, Targets};

/// Bumped whenever the format, the tokeniser or the vocabulary's rules change: old caches then
/// have other keys and are not read.
const VERSION: u32 = 1;
/// The first bytes of every cache file.
const MAGIC: &[u8] = b"steplab imdb cache\n";
/// Bytes before the payload: magic, version, key, payload length.
const HEADER: usize = MAGIC.len() + 4 + 64 + 8;

/// What was found at the cache's path.
#[derive(Debug)]
pub(super) enum Lookup {
    /// Nothing: the first load with these settings and files.
    Absent,
    /// A whole, checked cache (boxed: the splits are large structs).
    Hit(Box<Loaded>),
    /// A file that cannot be used, and why.
    Unusable(String),
}

/// The cache key of `settings` and the listed `folders` (see the module doc).
pub(super) fn key(settings: &ImdbSettings, folders: &[Folder]) -> String {
    let mut text = format!(
        "steplab imdb cache {VERSION}\ntokenizer basic_english\nvocab_size {}\nmin_count {}\n\
         max_len {}\n",
        settings.vocab_size, settings.min_count, settings.max_len
    );
    for folder in folders {
        text.push_str(&format!(
            "{} {} {} {}\n",
            folder.name,
            folder.files.len(),
            folder.bytes,
            folder.newest
        ));
    }
    hex(&Sha256::digest(text.as_bytes()))
}

/// Reads the cache at `path`, which must be for `key` and `settings`. Only a cancellation is
/// an error: a file that cannot be read or used is [`Lookup::Unusable`].
pub(super) fn read(
    path: &Path,
    key: &str,
    settings: &ImdbSettings,
    cancel: &AtomicBool,
) -> Result<Lookup, DataError> {
    check_cancel(cancel, path)?;
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lookup::Absent),
        Err(e) => return Ok(Lookup::Unusable(format!("cannot be read: {e}"))),
    };
    check_cancel(cancel, path)?;
    Ok(match parse(&bytes, key, settings) {
        Ok(loaded) => Lookup::Hit(Box::new(loaded)),
        Err(reason) => Lookup::Unusable(reason),
    })
}

/// The splits and vocabulary in a cache file's bytes, or why they cannot be trusted.
fn parse(bytes: &[u8], key: &str, settings: &ImdbSettings) -> Result<Loaded, String> {
    if !bytes.starts_with(MAGIC) {
        return Err("not a steplab IMDb cache".into());
    }
    let mut header = Cursor(&bytes[MAGIC.len()..]);
    let version = header.u32()?;
    if version != VERSION {
        return Err(format!("format version {version}, not {VERSION}"));
    }
    if header.take(64)? != key.as_bytes() {
        return Err("made for other settings or files than its name says".into());
    }
    let len = header.u64()?;
    let expected = (HEADER as u64)
        .checked_add(len)
        .and_then(|n| n.checked_add(32));
    if expected != Some(bytes.len() as u64) {
        return Err(format!(
            "{} bytes, but its header says {} (cut short or corrupt)",
            bytes.len(),
            expected.map_or_else(|| "more than can be".to_owned(), |n| n.to_string())
        ));
    }
    let payload = &bytes[HEADER..bytes.len() - 32];
    if Sha256::digest(payload).as_slice() != &bytes[bytes.len() - 32..] {
        return Err("its payload does not match its SHA-256 (corrupt)".into());
    }

    let mut p = Cursor(payload);
    let max_len = p.u32()? as usize;
    if max_len != settings.max_len {
        return Err(format!("max_len {max_len}, not {}", settings.max_len));
    }
    let count = p.u32()? as usize;
    if count > settings.vocab_size {
        return Err(format!(
            "{count} tokens, more than vocab_size {}",
            settings.vocab_size
        ));
    }
    let mut tokens = Vec::with_capacity(count);
    for _ in 0..count {
        let n = p.u32()? as usize;
        let token = std::str::from_utf8(p.take(n)?).map_err(|e| format!("a token: {e}"))?;
        tokens.push(token.to_owned());
    }
    let vocabulary = Vocabulary::from_tokens(tokens)?;
    let train = split(&mut p, max_len, vocabulary.len())?;
    let test = split(&mut p, max_len, vocabulary.len())?;
    if !p.0.is_empty() {
        return Err(format!("{} bytes after the test split", p.0.len()));
    }
    Ok(Loaded {
        vocabulary,
        train,
        test,
    })
}

/// One split, read from `p`.
fn split(p: &mut Cursor<'_>, max_len: usize, vocab_size: usize) -> Result<Dataset, String> {
    let rows = p.u32()? as usize;
    let lengths = (0..rows).map(|_| p.u32()).collect::<Result<Vec<_>, _>>()?;
    let labels: Vec<u32> = p.take(rows)?.iter().map(|&b| u32::from(b)).collect();
    let mut ids = Vec::with_capacity(rows.saturating_mul(max_len).min(p.0.len() / 4 + max_len));
    for &length in &lengths {
        if length as usize > max_len {
            return Err(format!("a review of {length} tokens, more than {max_len}"));
        }
        for _ in 0..length {
            ids.push(p.u32()?);
        }
        ids.resize(ids.len() + (max_len - length as usize), Vocabulary::PAD);
    }
    let features =
        Features::from_tokens(ids, lengths, max_len, vocab_size).map_err(|e| e.to_string())?;
    let targets = Targets::Classes {
        labels,
        num_classes: 2,
    };
    Dataset::new(features, targets).map_err(|e| e.to_string())
}

/// Reads little-endian values from the front of a byte slice.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err("it ends in the middle of its data (corrupt)".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

/// Writes `loaded` as the cache for `key` at `path`, through a temporary file renamed into place.
pub(super) fn write(path: &Path, key: &str, loaded: &Loaded) -> Result<(), DataError> {
    let mut payload = Vec::new();
    let max_len = loaded.train.token_shape().map_or(0, |shape| shape.max_len);
    put_u32(&mut payload, max_len as u32);
    let tokens = loaded.vocabulary.tokens();
    put_u32(&mut payload, tokens.len() as u32);
    for token in tokens {
        put_u32(&mut payload, token.len() as u32);
        payload.extend_from_slice(token.as_bytes());
    }
    for set in [&loaded.train, &loaded.test] {
        put_split(&mut payload, set, max_len);
    }

    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    put_u32(&mut header, VERSION);
    header.extend_from_slice(key.as_bytes());
    header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let digest = Sha256::digest(&payload);

    let temp = temp_path(path);
    let result = File::create(&temp)
        .and_then(|mut file| {
            file.write_all(&header)?;
            file.write_all(&payload)?;
            file.write_all(&digest)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&temp, path));
    result.map_err(|e| {
        // Nothing more to do if this fails too: the error returned says what went wrong.
        let _ = fs::remove_file(&temp);
        DataError::io(path, e)
    })
}

/// Appends one split: rows, lengths, labels, then each row's real ids. (The splits are always
/// token features with class labels; were they not, the file would not parse and be rebuilt.)
fn put_split(out: &mut Vec<u8>, set: &Dataset, max_len: usize) {
    let all: Vec<usize> = (0..set.len()).collect();
    let (ids, lengths) = set.features.gather_tokens(&all).unwrap_or_default();
    put_u32(out, set.len() as u32);
    for &length in &lengths {
        put_u32(out, length);
    }
    if let Targets::Classes { labels, .. } = &set.targets {
        out.extend(labels.iter().map(|&l| l as u8));
    }
    for (row, &length) in lengths.iter().enumerate() {
        for &id in &ids[row * max_len..row * max_len + length as usize] {
            put_u32(out, id as u32);
        }
    }
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// `dir/cache-<key>.bin` → `dir/cache-<key>.bin.tmp-<process id>`.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp-{}", std::process::id()));
    PathBuf::from(name)
}
