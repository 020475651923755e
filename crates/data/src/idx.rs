//! The IDX format of MNIST and Fashion-MNIST, read strictly.
//!
//! An IDX file is a big-endian magic number `0x0000_08NN` (`08`: unsigned bytes, `NN`: number of
//! dimensions), one big-endian `u32` per dimension, then the bytes. A file whose payload is shorter
//! or longer than its header says is an error: a half-downloaded file must never load as a
//! smaller dataset.
//!
//! Files are read and decompressed a chunk at a time, looking at a cancellation flag (set by the
//! binary's Ctrl-C handler) before each chunk, so a 47 MB file stops loading within milliseconds
//! of Ctrl-C.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::AtomicBool;

use flate2::read::MultiGzDecoder;

use crate::DataError;
use crate::error::check_cancel;

/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// How many bytes are read (or decompressed) between two looks at the cancellation flag.
const CHUNK: u64 = 1 << 20;

/// Images parsed from an IDX file: `(count, height, width, pixels)`, the pixels row-major, one
/// image after the other.
pub type Images = (usize, usize, usize, Vec<u8>);

/// Parses an IDX image file (already decompressed): magic `0x00000803`, three dimensions.
///
/// `name` is used in error messages (the file's path).
pub fn parse_images(reader: impl Read, name: &str) -> Result<Images, DataError> {
    let mut reader = reader;
    let dims = read_header(&mut reader, name, IMAGES_MAGIC, 3)?;
    let (rows, h, w) = (dims[0], dims[1], dims[2]);
    if h == 0 || w == 0 {
        return Err(DataError::Malformed {
            file: name.to_owned(),
            problem: format!("images of {h}×{w} pixels"),
        });
    }
    let data = read_payload(&mut reader, name, 16, &dims)?;
    Ok((rows, h, w, data))
}

/// Parses an IDX label file (already decompressed): magic `0x00000801`, one dimension.
///
/// `name` is used in error messages (the file's path).
pub fn parse_labels(reader: impl Read, name: &str) -> Result<Vec<u8>, DataError> {
    let mut reader = reader;
    let dims = read_header(&mut reader, name, LABELS_MAGIC, 1)?;
    read_payload(&mut reader, name, 8, &dims)
}

/// Reads a whole file, gunzipping it when it is gzip-compressed.
///
/// Compression is recognised by content (the gzip magic bytes), not by name, so a `.gz` file that
/// was already decompressed (as some browsers do) and a file without `.gz` both read. A corrupt
/// gzip stream is a [`DataError::Gzip`] naming the file.
///
/// `cancel` is looked at before the file is opened and before each chunk of 1 MiB is read or
/// decompressed; once it is set, reading stops with [`DataError::Interrupted`].
pub fn read_gz_file(path: &Path, cancel: &AtomicBool) -> Result<Vec<u8>, DataError> {
    check_cancel(cancel, path)?;
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut raw = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    read_chunked(file, &mut raw, path, cancel, |e| DataError::io(path, e))?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    read_chunked(
        MultiGzDecoder::new(raw.as_slice()),
        &mut out,
        path,
        cancel,
        |source| DataError::Gzip {
            file: path.display().to_string(),
            source,
        },
    )?;
    Ok(out)
}

/// Appends everything `reader` yields to `out`, [`CHUNK`] bytes at a time, stopping with
/// [`DataError::Interrupted`] (naming `path`) if `cancel` is set before a chunk. A read error is
/// turned into a [`DataError`] by `error`.
fn read_chunked(
    mut reader: impl Read,
    out: &mut Vec<u8>,
    path: &Path,
    cancel: &AtomicBool,
    error: impl Fn(io::Error) -> DataError,
) -> Result<(), DataError> {
    loop {
        check_cancel(cancel, path)?;
        let n = (&mut reader).take(CHUNK).read_to_end(out).map_err(&error)?;
        if n == 0 {
            return Ok(());
        }
    }
}

/// Reads and parses an IDX image file, gzipped or not; see [`read_gz_file`] for `cancel`.
pub fn read_images(path: &Path, cancel: &AtomicBool) -> Result<Images, DataError> {
    parse_images(
        read_gz_file(path, cancel)?.as_slice(),
        &path.display().to_string(),
    )
}

/// Reads and parses an IDX label file, gzipped or not; see [`read_gz_file`] for `cancel`.
pub fn read_labels(path: &Path, cancel: &AtomicBool) -> Result<Vec<u8>, DataError> {
    parse_labels(
        read_gz_file(path, cancel)?.as_slice(),
        &path.display().to_string(),
    )
}

/// Reads the magic number and the dimensions, checking both.
fn read_header(
    reader: &mut impl Read,
    name: &str,
    magic: u32,
    ndims: usize,
) -> Result<Vec<usize>, DataError> {
    let header_len = 4 + 4 * ndims;
    let header = read_up_to(reader, name, header_len as u64)?;
    if header.len() < 4 {
        return Err(truncated(name, header_len as u64, header.len() as u64));
    }
    let found = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if found != magic {
        return Err(DataError::BadMagic {
            file: name.to_owned(),
            expected: magic,
            found,
        });
    }
    if header.len() < header_len {
        return Err(truncated(name, header_len as u64, header.len() as u64));
    }
    Ok(header[4..]
        .chunks_exact(4)
        .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize)
        .collect())
}

/// Reads exactly the payload the dimensions call for, and checks that nothing follows it.
fn read_payload(
    reader: &mut impl Read,
    name: &str,
    header_len: u64,
    dims: &[usize],
) -> Result<Vec<u8>, DataError> {
    let len = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let Some(len) = len.filter(|&l| l.checked_add(header_len).is_some()) else {
        return Err(DataError::Malformed {
            file: name.to_owned(),
            problem: format!("dimensions {dims:?} are too large"),
        });
    };
    let expected = header_len + len;
    let data = read_up_to(reader, name, len)?;
    if (data.len() as u64) < len {
        return Err(truncated(name, expected, header_len + data.len() as u64));
    }
    let extra = io::copy(reader, &mut io::sink()).map_err(|e| DataError::io(name, e))?;
    if extra > 0 {
        return Err(DataError::TrailingBytes {
            file: name.to_owned(),
            expected,
            found: expected + extra,
        });
    }
    Ok(data)
}

/// Reads up to `n` bytes; fewer only at the end of the input. Memory grows with what arrives,
/// not with what a (possibly bogus) header promises.
fn read_up_to(reader: &mut impl Read, name: &str, n: u64) -> Result<Vec<u8>, DataError> {
    let mut out = Vec::new();
    reader
        .take(n)
        .read_to_end(&mut out)
        .map_err(|e| DataError::io(name, e))?;
    Ok(out)
}

fn truncated(name: &str, expected: u64, found: u64) -> DataError {
    DataError::Truncated {
        file: name.to_owned(),
        expected,
        found,
    }
}

/// Test helpers that write real-format IDX files (shared with the MNIST tests).
#[cfg(test)]
pub(crate) mod testing {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    /// IDX bytes of `count` images of `h`×`w`, pixel `i` of the file being `i % 251`.
    pub fn images_bytes(count: u32, h: u32, w: u32) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [super::IMAGES_MAGIC, count, h, w] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend((0..count * h * w).map(|i| (i % 251) as u8));
        out
    }

    /// IDX bytes of the given labels.
    pub fn labels_bytes(labels: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&super::LABELS_MAGIC.to_be_bytes());
        out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        out.extend_from_slice(labels);
        out
    }

    /// Gzip-compresses bytes.
    pub fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::sync::atomic::Ordering;

    use super::testing::*;
    use super::*;

    /// A cancellation flag that is never set.
    static GO: AtomicBool = AtomicBool::new(false);

    /// Passes `inner` through, setting `cancel` on the first read (Ctrl-C while decompressing).
    struct CancelOnRead<'a, R> {
        inner: R,
        cancel: &'a AtomicBool,
    }

    impl<R: Read> Read for CancelOnRead<'_, R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.cancel.store(true, Ordering::Relaxed);
            self.inner.read(buf)
        }
    }

    #[test]
    fn a_set_flag_stops_before_the_file_is_even_opened() {
        let cancel = AtomicBool::new(true);
        let err = read_images(Path::new("/nonexistent/imgs.gz"), &cancel).unwrap_err();
        assert!(
            matches!(err, DataError::Interrupted { url: None, .. }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "interrupted while loading /nonexistent/imgs.gz"
        );
    }

    #[test]
    fn decompression_stops_within_a_chunk_of_the_flag_being_set() {
        // 32 MiB of pixels, compressed to a few dozen KiB: read in one go by the decoder.
        let gz = gzip(&images_bytes(32, 1024, 1024));
        let cancel = AtomicBool::new(false);
        let reader = MultiGzDecoder::new(CancelOnRead {
            inner: gz.as_slice(),
            cancel: &cancel,
        });
        let mut out = Vec::new();
        let path = Path::new("big-idx3-ubyte.gz");
        let err =
            read_chunked(reader, &mut out, path, &cancel, |e| DataError::io(path, e)).unwrap_err();
        assert!(err.is_interrupted(), "{err}");
        assert!(
            out.len() as u64 <= CHUNK,
            "decompressed {} bytes",
            out.len()
        );
        assert!(err.to_string().ends_with("big-idx3-ubyte.gz"), "{err}");
    }

    #[test]
    fn gzipped_images_and_labels_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let images = images_bytes(3, 4, 5);
        let img_path = dir.path().join("imgs-idx3-ubyte.gz");
        let lab_path = dir.path().join("labs-idx1-ubyte.gz");
        fs::write(&img_path, gzip(&images)).unwrap();
        fs::write(&lab_path, gzip(&labels_bytes(&[7, 0, 9]))).unwrap();

        let (n, h, w, pixels) = read_images(&img_path, &GO).unwrap();
        assert_eq!((n, h, w), (3, 4, 5));
        assert_eq!(pixels, images[16..]);
        assert_eq!(read_labels(&lab_path, &GO).unwrap(), vec![7, 0, 9]);
    }

    #[test]
    fn an_uncompressed_file_reads_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labs-idx1-ubyte");
        fs::write(&path, labels_bytes(&[1, 2])).unwrap();
        assert_eq!(read_labels(&path, &GO).unwrap(), vec![1, 2]);
    }

    #[test]
    fn a_bad_magic_number_is_an_error_naming_the_file() {
        let err = parse_labels(images_bytes(1, 2, 2).as_slice(), "labels.idx").unwrap_err();
        assert!(matches!(
            err,
            DataError::BadMagic {
                expected: LABELS_MAGIC,
                found: IMAGES_MAGIC,
                ..
            }
        ));
        assert!(
            err.to_string()
                .starts_with("labels.idx: bad magic number 0x00000803"),
            "{err}"
        );
    }

    #[test]
    fn a_truncated_payload_is_an_error_with_both_sizes() {
        let mut bytes = images_bytes(2, 3, 3);
        bytes.truncate(bytes.len() - 5);
        let err = parse_images(bytes.as_slice(), "imgs.idx").unwrap_err();
        assert!(matches!(
            err,
            DataError::Truncated {
                expected: 34,
                found: 29,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "imgs.idx: truncated: expected 34 bytes, found 29"
        );

        let err = parse_images(&bytes[..10], "imgs.idx").unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 16,
                    found: 10,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = labels_bytes(&[1, 2, 3]);
        bytes.extend_from_slice(&[0, 0]);
        let err = parse_labels(bytes.as_slice(), "labs.idx").unwrap_err();
        assert!(matches!(
            err,
            DataError::TrailingBytes {
                expected: 11,
                found: 13,
                ..
            }
        ));
        assert!(
            err.to_string().starts_with("labs.idx: trailing bytes"),
            "{err}"
        );
    }

    #[test]
    fn a_corrupt_gzip_stream_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imgs-idx3-ubyte.gz");
        let mut gz = gzip(&images_bytes(20, 8, 8));
        // Damage the compressed body (the CRC at the end catches what the inflater does not).
        let mid = gz.len() / 2;
        for b in &mut gz[mid..mid + 8] {
            *b ^= 0x5a;
        }
        fs::write(&path, &gz).unwrap();
        let err = read_images(&path, &GO).unwrap_err();
        assert!(matches!(err, DataError::Gzip { .. }), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );

        // A gzip stream cut short is corrupt too.
        let gz = gzip(&images_bytes(20, 8, 8));
        fs::write(&path, &gz[..gz.len() - 10]).unwrap();
        let err = read_images(&path, &GO).unwrap_err();
        assert!(matches!(err, DataError::Gzip { .. }), "{err}");
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_it() {
        let err = read_images(Path::new("/nonexistent/imgs.gz"), &GO).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }));
        assert!(
            err.to_string().starts_with("/nonexistent/imgs.gz: "),
            "{err}"
        );
    }
}
