//! Downloading CelebA's files from Google Drive, which often refuses: a large file is answered
//! with a "can't scan for viruses" web page, and a shared file that many have fetched runs out
//! of its download quota. Such an answer is told from the file before anything is written (its
//! content type or its first byte), and whatever comes is kept only if its MD5 is the published
//! one ([`fetch_verified`]); the caller turns any failure into the hint saying how to fetch the
//! files by hand.

use std::fs;
use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::DataError;
use crate::download::fetch_verified;
use crate::progress;

/// For each Google Drive id, its two download addresses: the classic one torchvision uses, then
/// the one its "download anyway" button leads to (`confirm=t`), which skips the virus-scan page
/// when Google allows it. Neither could be tried from here (no network): the MD5 is what
/// decides whether an answer is the file.
pub(super) fn drive_urls(ids: &[&str]) -> Vec<String> {
    ids.iter()
        .flat_map(|id| {
            [
                format!("https://drive.google.com/uc?export=download&id={id}"),
                format!(
                    "https://drive.usercontent.google.com/download?id={id}&export=download&confirm=t"
                ),
            ]
        })
        .collect()
}

/// Downloads `dest` from the first of `urls` that answers with the file of MD5 `md5`.
pub(super) fn download(
    urls: &[String],
    dest: &Path,
    md5: &str,
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
    let mut tried = Vec::new();
    for url in urls {
        if cancel.load(Ordering::Relaxed) {
            return Err(DataError::Interrupted {
                file: dest.to_owned(),
                url: Some(url.clone()),
            });
        }
        match fetch_one(&agent, url, dest, md5, max_bytes, progress, cancel) {
            Ok(()) => return Ok(()),
            Err(e) if e.is_interrupted() => return Err(e),
            Err(e) => tried.push(format!("  {url}: {e}")),
        }
    }
    let file = dest
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    Err(DataError::Download { file, tried })
}

/// One address of [`download`]: a web page instead of the file is refused before anything is
/// written.
fn fetch_one(
    agent: &ureq::Agent,
    url: &str,
    dest: &Path,
    md5: &str,
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
            "Google Drive answered with a web page, not the file (its \"can't scan for \
             viruses\" or download-quota page)",
        )));
    }
    let message = format!("downloading {url}");
    let bar = progress::bar(progress, len.unwrap_or(0), progress::BYTES, message);
    let result = fetch_verified(bar.wrap_read(reader), url, dest, Some(md5), cancel);
    bar.finish_and_clear();
    result
}

/// Whether an answer is a web page rather than a CelebA file (a zip starts with `PK`, the
/// partition file with a name): its content type is HTML, or its first non-blank byte is `<`.
pub(super) fn is_web_page(content_type: Option<&str>, head: &[u8]) -> bool {
    let html = content_type.is_some_and(|t| {
        let t = t.trim_start().to_ascii_lowercase();
        t.starts_with("text/html") || t.starts_with("application/xhtml")
    });
    html || head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}
