//! The cache of a loaded CelebA: the preprocessed pixels of every image, in one file that a
//! later load reads instead of decoding 202 599 JPEGs.
//!
//! **Key.** The file is `cache-<preprocess>-<key>.bin`, `<key>` the SHA-256 (hex) of a text
//! holding: the format version, the preprocessing mode, what identifies the images (the zip's
//! size and modification time; for the folder, the number of its `*.jpg` files, their total
//! size and their latest modification time: a listing, nothing read), and the SHA-256 of the
//! partition file's bytes. So another mode, another or re-downloaded zip, images added, removed
//! or rewritten (a rewrite changes the modification time), or another split of them, give
//! another key and the images are decoded again. Caches of the two modes live side by side.
//!
//! **Format** (integers little-endian):
//!
//! ```text
//! "steplab celeba cache\n"  version: u32  key: 64 ASCII hex bytes
//! images of train, validation, test: 3 × u64   skipped images: u64
//! bytes per image: u32 (12 288)   length of the names: u64
//! names: the file name of each image of train, then validation, then test, each ending in
//!        "\n"; then one line "<split>\t<name>\t<entry>\t<reason>\n" per skipped image
//! pixels: the images of train, then validation, then test, 12 288 bytes each (CHW)
//! CRC-32 of every byte before it: u32
//! ```
//!
//! **Trust.** A file that is shorter or longer than its header says, for another version or
//! key, whose CRC-32 does not match, or whose names are not those of the partition file, is never
//! used: the images are decoded again and the file written anew ([`super::CelebaCache::Rebuilt`]
//! says why). The length is checked before anything large is read, and the pixels are read
//! straight into the three split buffers, in chunks of 64 MiB (between which a cancellation is
//! looked at), the CRC-32 (several GB/s) computed as they come: a SHA-256 of 2.5 GB would cost
//! seconds on every load. The file is written to `<file>.tmp-<pid>` and renamed into place, so a
//! run killed while writing leaves no cut-short cache under the real name.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use sha2::{Digest, Sha256};

use super::{CelebaPreprocess, Listed, Loaded, PIXELS, SPLITS, Skipped};
use crate::download::hex;
use crate::error::check_cancel;
use crate::{DataError, progress};

/// Bumped whenever the format or the preprocessing changes: old caches then have other keys
/// and are not read.
const VERSION: u32 = 1;
/// The first bytes of every cache file.
pub(super) const MAGIC: &[u8] = b"steplab celeba cache\n";
/// Bytes before the names: magic, version, key, four counts, bytes per image, names' length.
pub(super) const HEADER: usize = MAGIC.len() + 4 + 64 + 4 * 8 + 4 + 8;
/// Bytes of pixels read between two looks at the cancellation flag.
const READ_CHUNK: usize = 64 << 20;

/// What identifies the images for the key (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Identity {
    /// The extracted folder's `*.jpg` files.
    Folder {
        /// How many.
        count: usize,
        /// Their total size in bytes.
        bytes: u64,
        /// Their latest modification time, in nanoseconds since 1970.
        newest: u128,
    },
    /// The zip.
    Zip {
        /// Its size in bytes.
        size: u64,
        /// Its modification time, in nanoseconds since 1970.
        modified: u128,
    },
}

/// The cache key of `preprocess`, the images and the partition file's bytes (module doc).
pub(super) fn key(preprocess: CelebaPreprocess, identity: &Identity, partition: &[u8]) -> String {
    let mut text = format!(
        "steplab celeba cache {VERSION}\npreprocess {}\nimages 3x64x64 lanczos3 chw\n",
        preprocess.name()
    );
    text.push_str(&match identity {
        Identity::Folder {
            count,
            bytes,
            newest,
        } => format!("source folder {count} {bytes} {newest}\n"),
        Identity::Zip { size, modified } => format!("source zip {size} {modified}\n"),
    });
    text.push_str(&format!(
        "partition sha256 {}\n",
        hex(&Sha256::digest(partition))
    ));
    hex(&Sha256::digest(text.as_bytes()))
}

/// What was found at the cache's path.
#[derive(Debug)]
pub(super) enum Lookup {
    /// Nothing: the first load with this mode and these files.
    Absent,
    /// A whole, checked cache (boxed: it is a large struct).
    Hit(Box<Loaded>),
    /// A file that cannot be used, and why.
    Unusable(String),
}

/// Reads the cache at `path`, which must be for `key` and hold the images of `listed` (the
/// partition file's lines, sorted by name). Only a cancellation is an error: a file that cannot
/// be read or used is [`Lookup::Unusable`].
pub(super) fn read(
    path: &Path,
    key: &str,
    listed: &[Listed],
    progress: bool,
    cancel: &AtomicBool,
) -> Result<Lookup, DataError> {
    check_cancel(cancel, path)?;
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lookup::Absent),
        Err(e) => return Ok(Lookup::Unusable(format!("cannot be read: {e}"))),
    };
    Ok(match parse(file, path, key, listed, progress, cancel)? {
        Ok(loaded) => Lookup::Hit(Box::new(loaded)),
        Err(reason) => Lookup::Unusable(reason),
    })
}

/// The splits in the cache file `file`, or why they cannot be trusted (the inner error), or a
/// cancellation (the outer one).
fn parse(
    mut file: File,
    path: &Path,
    key: &str,
    listed: &[Listed],
    progress: bool,
    cancel: &AtomicBool,
) -> Result<Result<Loaded, String>, DataError> {
    let unreadable = |e: io::Error| Ok(Err(format!("cannot be read: {e}")));
    let len = match file.metadata() {
        Ok(meta) => meta.len(),
        Err(e) => return unreadable(e),
    };
    if len < HEADER as u64 {
        return Ok(Err(format!(
            "{len} bytes, shorter than its header (cut short)"
        )));
    }
    let mut head = [0u8; HEADER];
    if let Err(e) = file.read_exact(&mut head) {
        return unreadable(e);
    }
    let header = match parse_header(&head, key, len) {
        Ok(header) => header,
        Err(reason) => return Ok(Err(reason)),
    };
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    let mut names = vec![0u8; header.names_len];
    if let Err(e) = file.read_exact(&mut names) {
        return unreadable(e);
    }
    crc.update(&names);

    let mut pixels = header.counts.map(|n| vec![0u8; n * PIXELS]);
    let total: usize = pixels.iter().map(Vec::len).sum();
    let message = "reading the CelebA cache".to_owned();
    let bar = progress::bar(progress, total as u64, progress::BYTES, message);
    for buffer in &mut pixels {
        for chunk in buffer.chunks_mut(READ_CHUNK) {
            check_cancel(cancel, path)?;
            if let Err(e) = file.read_exact(chunk) {
                return unreadable(e);
            }
            crc.update(chunk);
            bar.inc(chunk.len() as u64);
        }
    }
    bar.finish_and_clear();
    let mut stored = [0u8; 4];
    if let Err(e) = file.read_exact(&mut stored) {
        return unreadable(e);
    }
    if crc.finalize() != u32::from_le_bytes(stored) {
        return Ok(Err(
            "its contents do not match their CRC-32 checksum (corrupt)".into(),
        ));
    }
    Ok(
        parse_names(&names, &header, listed).map(|(names, skipped)| Loaded {
            names,
            pixels,
            skipped,
        }),
    )
}

/// The counts of a cache file's header.
struct Header {
    /// Images of train, validation and test.
    counts: [usize; 3],
    /// Images skipped.
    skipped: usize,
    /// Bytes of the names.
    names_len: usize,
}

/// Checks the fixed-size start of a cache file of `len` bytes, made for `key`.
fn parse_header(head: &[u8; HEADER], key: &str, len: u64) -> Result<Header, String> {
    if !head.starts_with(MAGIC) {
        return Err("not a steplab CelebA cache".into());
    }
    let mut at = MAGIC.len();
    let mut take = |n: usize| {
        let field = &head[at..at + n];
        at += n;
        field
    };
    let version = u32::from_le_bytes(array(take(4)));
    if version != VERSION {
        return Err(format!("format version {version}, not {VERSION}"));
    }
    if take(64) != key.as_bytes() {
        return Err("made for other settings or files than its name says".into());
    }
    let mut numbers = [0u64; 4];
    for n in &mut numbers {
        *n = u64::from_le_bytes(array(take(8)));
    }
    let pixels = u32::from_le_bytes(array(take(4)));
    let names_len = u64::from_le_bytes(array(take(8)));
    if pixels as usize != PIXELS {
        return Err(format!("images of {pixels} bytes, not {PIXELS}"));
    }
    let expected = numbers[..3]
        .iter()
        .try_fold(0u64, |sum, &n| sum.checked_add(n))
        .and_then(|rows| rows.checked_mul(PIXELS as u64))
        .and_then(|bytes| bytes.checked_add(names_len))
        .and_then(|bytes| bytes.checked_add(HEADER as u64 + 4));
    if expected != Some(len) {
        return Err(format!(
            "{len} bytes, but its header says {} (cut short or over-long)",
            expected.map_or_else(|| "more than can be".to_owned(), |n| n.to_string())
        ));
    }
    // Every count is at most the file's length, which fits in memory's address space: the
    // buffers are about to be allocated for them.
    let size = |n: u64| usize::try_from(n).map_err(|_| "too large for this machine".to_owned());
    Ok(Header {
        counts: [size(numbers[0])?, size(numbers[1])?, size(numbers[2])?],
        skipped: size(numbers[3])?,
        names_len: size(names_len)?,
    })
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(bytes);
    a
}

/// The names of each split and the skipped images in a cache's names block, which must be
/// those of the partition file (`listed`), each split in name order.
fn parse_names(
    block: &[u8],
    header: &Header,
    listed: &[Listed],
) -> Result<([Vec<String>; 3], Vec<Skipped>), String> {
    let text = std::str::from_utf8(block).map_err(|_| "its names are not UTF-8 (corrupt)")?;
    let mut lines = text.split_terminator('\n');
    let mut line = || {
        lines
            .next()
            .ok_or("fewer names than its header says (corrupt)")
    };
    let mut names: [Vec<String>; 3] = Default::default();
    for (split, names) in names.iter_mut().enumerate() {
        for _ in 0..header.counts[split] {
            names.push(line()?.to_owned());
        }
    }
    let mut skipped = Vec::with_capacity(header.skipped);
    for _ in 0..header.skipped {
        let fields: Vec<&str> = line()?.splitn(4, '\t').collect();
        let [split, name, entry, reason] = fields[..] else {
            return Err("a skipped image's line is malformed (corrupt)".into());
        };
        let split = SPLITS
            .iter()
            .position(|s| *s == split)
            .ok_or("a skipped image's split is malformed (corrupt)")?;
        skipped.push(Skipped {
            name: name.to_owned(),
            split,
            entry: entry.to_owned(),
            reason: reason.to_owned(),
        });
    }
    if lines.next().is_some() {
        return Err("more names than its header says (corrupt)".into());
    }
    let in_order = |names: &[String]| names.windows(2).all(|w| w[0] < w[1]);
    let mut all: Vec<(&str, usize)> = Vec::with_capacity(listed.len());
    for (split, names) in names.iter().enumerate() {
        if !in_order(names) {
            return Err(format!(
                "its {} images are not in name order",
                SPLITS[split]
            ));
        }
        all.extend(names.iter().map(|n| (n.as_str(), split)));
    }
    all.extend(skipped.iter().map(|s| (s.name.as_str(), s.split)));
    all.sort_unstable();
    let expected = listed.iter().map(|l| (l.name.as_str(), l.split));
    if !all.iter().copied().eq(expected) {
        return Err("its images are not those the partition file lists".into());
    }
    Ok((names, skipped))
}

/// Writes `loaded` as the cache for `key` at `path`, through a temporary file renamed into place.
pub(super) fn write(path: &Path, key: &str, loaded: &Loaded) -> Result<(), DataError> {
    let mut names = Vec::new();
    for name in loaded.names.iter().flatten() {
        names.extend_from_slice(name.as_bytes());
        names.push(b'\n');
    }
    // Tabs and line ends would break the line; the names themselves have none.
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    for s in &loaded.skipped {
        let line = format!(
            "{}\t{}\t{}\t{}\n",
            SPLITS[s.split],
            s.name,
            clean(&s.entry),
            clean(&s.reason)
        );
        names.extend_from_slice(line.as_bytes());
    }
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(key.as_bytes());
    for pixels in &loaded.pixels {
        header.extend_from_slice(&((pixels.len() / PIXELS) as u64).to_le_bytes());
    }
    header.extend_from_slice(&(loaded.skipped.len() as u64).to_le_bytes());
    header.extend_from_slice(&(PIXELS as u32).to_le_bytes());
    header.extend_from_slice(&(names.len() as u64).to_le_bytes());
    debug_assert_eq!(header.len(), HEADER);

    let temp = temp_path(path);
    let result = write_parts(&temp, [&header, &names].into_iter().chain(&loaded.pixels))
        .and_then(|()| fs::rename(&temp, path));
    result.map_err(|e| {
        // Nothing more to do if this fails too: the error returned says what went wrong.
        let _ = fs::remove_file(&temp);
        DataError::io(path, e)
    })
}

/// Writes `parts` one after the other to a new file `path`, then their CRC-32, and syncs it.
fn write_parts<'a>(path: &Path, parts: impl Iterator<Item = &'a Vec<u8>>) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut crc = crc32fast::Hasher::new();
    for part in parts {
        crc.update(part);
        out.write_all(part)?;
    }
    out.write_all(&crc.finalize().to_le_bytes())?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Deletes the caches of `preprocess` in `dir` other than `keep`: they are for other files
/// (another key), and 2.5 GB each.
pub(super) fn remove_stale(dir: &Path, preprocess: CelebaPreprocess, keep: &Path) {
    let prefix = format!("cache-{}-", preprocess.name());
    // A stale cache that cannot be listed or deleted costs only disk space: not worth failing
    // a load that has its data.
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(key) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(".bin"))
        else {
            continue;
        };
        let path = entry.path();
        if key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()) && path != keep {
            let _ = fs::remove_file(path);
        }
    }
}

/// `dir/cache-….bin` → `dir/cache-….bin.tmp-<process id>`.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp-{}", std::process::id()));
    PathBuf::from(name)
}
