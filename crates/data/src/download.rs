//! Downloads that either leave a verified file or nothing.
//!
//! The bytes go to `<file>.part` beside the destination while their MD5 is computed; only when
//! it matches the published checksum is the `.part` renamed into place. Any failure (network,
//! disk, checksum) deletes the `.part`, so nothing half-fetched can later pass for the dataset.
//! A file whose publisher gives no checksum (GloVe's `glove.6B.zip`) is downloaded with `None`
//! for its MD5: it is then only as complete as the transfer says, and the caller must check it
//! some other way (for a zip, the CRC-32 of each entry it reads).
//!
//! An answer that is a web page (an HTML content type, or a first non-blank byte `<`) is refused
//! before anything is written: none of the files fetched here is one, and servers answer with a
//! page when they refuse (Google Drive's "can't scan for viruses" and download-quota pages, a
//! login or an error page).
//!
//! A cancellation flag (set by the binary's Ctrl-C handler) is looked at before each address is
//! tried and between chunks of 64 KiB of the transfer: once it is set the download stops with
//! [`DataError::Interrupted`], deleting the `.part` like any other failure. Only the connection
//! itself (at most its 30 s connect timeout) is not interruptible.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use md5::{Digest, Md5};

use crate::DataError;

/// Largest response accepted unless a caller says otherwise: room for every file of the MNIST
/// family (the biggest, Fashion-MNIST's train images, is 26 MB), the CIFAR archives (170 MB) and
/// IMDb's (84 MB), and a bound on what a misbehaving server can make a run write.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Downloads `dest` from the first of `urls` that yields at most `max_bytes` bytes with MD5
/// `md5_hex` (any bytes when `md5_hex` is `None`: the file has no published checksum and the
/// caller checks it otherwise).
///
/// Each address is tried in turn; a failure (connection, HTTP status, size, checksum) moves on to
/// the next. Shows a progress bar of bytes on stderr when `progress` is true. Once `cancel` is
/// set the download stops, whatever address it is at, with [`DataError::Interrupted`] and no file
/// left.
pub fn download_verified(
    urls: &[String],
    dest: &Path,
    md5_hex: Option<&str>,
    max_bytes: u64,
    progress: bool,
    cancel: &AtomicBool,
) -> Result<(), DataError> {
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into();
    let file = dest
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tried = Vec::new();
    for url in urls {
        if cancel.load(Ordering::Relaxed) {
            return Err(interrupted(url, dest));
        }
        match fetch_one(&agent, url, dest, md5_hex, max_bytes, progress, cancel) {
            Ok(()) => return Ok(()),
            Err(e) if e.is_interrupted() => return Err(e),
            Err(e) => tried.push(format!("  {url}: {e}")),
        }
    }
    Err(DataError::Download { file, tried })
}

fn fetch_one(
    agent: &ureq::Agent,
    url: &str,
    dest: &Path,
    md5_hex: Option<&str>,
    max_bytes: u64,
    progress: bool,
    cancel: &AtomicBool,
) -> Result<(), DataError> {
    let transfer = |source: io::Error| DataError::Transfer {
        dest: dest.to_owned(),
        source,
    };
    let response = agent
        .get(url)
        .call()
        .map_err(|e| transfer(io::Error::other(e)))?;
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.into_body();
    let len = body.content_length();
    let mut reader = BufReader::new(body.into_with_config().limit(max_bytes).reader());
    let head = reader.fill_buf().map_err(transfer)?;
    if is_web_page(content_type.as_deref(), head) {
        return Err(transfer(io::Error::other(
            "the server answered with a web page, not the file (e.g. Google Drive's \"can't \
             scan for viruses\" or download-quota page)",
        )));
    }
    if !progress {
        return fetch_verified(reader, url, dest, md5_hex, cancel);
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner(),
    };
    bar.set_message(format!("downloading {url}"));
    let result = fetch_verified(bar.wrap_read(reader), url, dest, md5_hex, cancel);
    bar.finish_and_clear();
    result
}

/// Writes everything `reader` yields to `<dest>.part`, checks its MD5 against `md5_hex` (unless
/// `None`), then renames it to `dest`. `url` is where the bytes come from, for messages.
///
/// On any failure the `.part` is deleted and `dest` is left as it was. A read error is a
/// [`DataError::Transfer`], a write error a [`DataError::Io`] and a wrong checksum a
/// [`DataError::ChecksumMismatch`]. `cancel` is looked at before each chunk is read: once it is
/// set, the copy stops with [`DataError::Interrupted`].
pub fn fetch_verified(
    reader: impl Read,
    url: &str,
    dest: &Path,
    md5_hex: Option<&str>,
    cancel: &AtomicBool,
) -> Result<(), DataError> {
    let part = part_path(dest);
    let guard = RemoveOnDrop(Some(part.clone()));
    let file = File::create(&part).map_err(|e| DataError::io(&part, e))?;
    let mut out = BufWriter::new(file);
    let mut hasher = Md5::new();
    let mut reader = reader;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(interrupted(url, dest));
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(DataError::Transfer {
                    dest: dest.to_owned(),
                    source,
                });
            }
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| DataError::io(&part, e))?;
    }
    let file = out
        .into_inner()
        .map_err(|e| DataError::io(&part, e.into_error()))?;
    file.sync_all().map_err(|e| DataError::io(&part, e))?;
    drop(file);

    let got = hex(&hasher.finalize());
    if let Some(md5_hex) = md5_hex
        && !got.eq_ignore_ascii_case(md5_hex)
    {
        return Err(DataError::ChecksumMismatch {
            file: format!("{} (downloaded)", dest.display()),
            algorithm: "MD5",
            expected: md5_hex.to_ascii_lowercase(),
            got,
        });
    }
    fs::rename(&part, dest).map_err(|e| DataError::io(dest, e))?;
    guard.disarm();
    Ok(())
}

/// Whether an answer is a web page rather than a data file: its content type is HTML, or its
/// first non-blank byte is `<` (no archive, gzip stream or text file fetched here starts so).
pub(crate) fn is_web_page(content_type: Option<&str>, head: &[u8]) -> bool {
    let html = content_type.is_some_and(|t| {
        let t = t.trim_start().to_ascii_lowercase();
        t.starts_with("text/html") || t.starts_with("application/xhtml")
    });
    html || head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}

/// The download of `url` into `dest` was cancelled.
fn interrupted(url: &str, dest: &Path) -> DataError {
    DataError::Interrupted {
        file: dest.to_owned(),
        url: Some(url.to_owned()),
    }
}

/// `dir/name` → `dir/name.part`.
fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// Lower-case hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deletes a file when dropped, unless disarmed: the `.part` goes away on every early return.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // Nothing more to do if this fails: the error being returned says what went wrong.
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_MD5: Option<&str> = Some("5d41402abc4b2a76b9719d911017c592"); // md5("hello")
    const URL: &str = "https://example.org/hello.gz";
    /// A cancellation flag that is never set.
    static GO: AtomicBool = AtomicBool::new(false);

    /// A reader that never ends (a huge or stalled-but-trickling download), and sets `cancel`
    /// once it has yielded `set_after` chunks, as Ctrl-C would part-way through.
    struct Endless<'a> {
        cancel: &'a AtomicBool,
        set_after: usize,
        reads: usize,
    }

    impl Read for Endless<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            if self.reads == self.set_after {
                self.cancel.store(true, Ordering::Relaxed);
            }
            buf.fill(b'x');
            Ok(buf.len())
        }
    }

    /// A reader that yields some bytes, then fails like a dropped connection.
    struct Broken(usize);

    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "connection reset",
                ));
            }
            let n = self.0.min(buf.len());
            buf[..n].fill(b'x');
            self.0 -= n;
            Ok(n)
        }
    }

    #[test]
    fn good_bytes_end_up_in_the_destination_and_no_part_remains() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("hello.gz");
        fetch_verified(&b"hello"[..], URL, &dest, HELLO_MD5, &GO).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"hello");
        assert!(!part_path(&dest).exists());
    }

    #[test]
    fn bad_bytes_leave_neither_the_file_nor_the_part() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("hello.gz");
        let err = fetch_verified(&b"hellO"[..], URL, &dest, HELLO_MD5, &GO).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::ChecksumMismatch {
                    algorithm: "MD5",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("hello.gz"), "{err}");
        assert!(!dest.exists());
        assert!(!part_path(&dest).exists());
    }

    #[test]
    fn without_a_published_checksum_any_complete_transfer_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("glove.zip");
        fetch_verified(&b"whatever"[..], URL, &dest, None, &GO).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"whatever");
        assert!(!part_path(&dest).exists());
        let err = fetch_verified(Broken(100_000), URL, &dest, None, &GO).unwrap_err();
        assert!(matches!(err, DataError::Transfer { .. }), "{err}");
        assert_eq!(
            fs::read(&dest).unwrap(),
            b"whatever",
            "the old file is kept"
        );
        assert!(!part_path(&dest).exists());
    }

    #[test]
    fn a_broken_transfer_leaves_neither_the_file_nor_the_part() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("hello.gz");
        let err = fetch_verified(Broken(100_000), URL, &dest, HELLO_MD5, &GO).unwrap_err();
        assert!(matches!(err, DataError::Transfer { .. }), "{err}");
        assert!(!dest.exists());
        assert!(!part_path(&dest).exists());
    }

    #[test]
    fn a_failed_download_does_not_touch_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("hello.gz");
        fs::write(&dest, b"old").unwrap();
        assert!(fetch_verified(&b"nope"[..], URL, &dest, HELLO_MD5, &GO).is_err());
        assert_eq!(fs::read(&dest).unwrap(), b"old");
    }

    #[test]
    fn cancelling_mid_transfer_stops_at_once_and_leaves_neither_the_file_nor_the_part() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("hello.gz");
        let cancel = AtomicBool::new(false);
        let mut reader = Endless {
            cancel: &cancel,
            set_after: 5,
            reads: 0,
        };
        let err = fetch_verified(&mut reader, URL, &dest, HELLO_MD5, &cancel).unwrap_err();
        assert!(matches!(err, DataError::Interrupted { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "interrupted while downloading {URL} into {}",
                dest.display()
            )
        );
        assert_eq!(reader.reads, 5, "no chunk is read after the flag is set");
        assert!(!dest.exists());
        assert!(!part_path(&dest).exists());
    }

    #[test]
    fn a_cancelled_download_keeps_an_existing_file_and_tries_no_other_mirror() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("hello.gz");
        fs::write(&dest, b"old").unwrap();
        let cancel = AtomicBool::new(true);
        let err = fetch_verified(&b"hello"[..], URL, &dest, HELLO_MD5, &cancel).unwrap_err();
        assert!(err.is_interrupted(), "{err}");
        assert_eq!(fs::read(&dest).unwrap(), b"old");
        assert!(!part_path(&dest).exists());

        // Port 9 (discard) refuses connections: were any address tried, this would be a
        // `Download` error listing both.
        let urls = [
            "http://127.0.0.1:9/a.gz".to_owned(),
            "http://127.0.0.1:9/b.gz".to_owned(),
        ];
        let other = dir.path().join("a.gz");
        let err = download_verified(&urls, &other, HELLO_MD5, DEFAULT_MAX_BYTES, false, &cancel)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "interrupted while downloading http://127.0.0.1:9/a.gz into {}",
                other.display()
            )
        );
        assert!(!other.exists());
        assert!(!part_path(&other).exists());
    }
}
