//! Where CelebA's files are downloaded from: Google Drive, which often refuses (a large file is
//! answered with a "can't scan for viruses" web page, and a shared file that many have fetched
//! runs out of its download quota). The shared downloader ([`crate::download`]) refuses such a
//! page before anything is written and keeps a file only if its MD5 is the published one; the
//! caller turns any failure into the hint saying how to fetch the files by hand.

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
