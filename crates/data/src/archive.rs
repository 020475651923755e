//! A dataset's `.tar.gz` archive, extracted safely: all of it, or nothing.
//!
//! CIFAR and IMDb are each published as one archive holding one folder (`cifar-10-batches-bin/`,
//! `aclImdb/`). It is
//! extracted into a hidden temporary folder beside the archive (`.<archive>.extracting-<pid>`),
//! checked, and only then is its one folder renamed into place, so a run that fails or is
//! cancelled part-way never leaves a half-extracted folder that a later run would take for the
//! dataset. Only plain files and folders are written, and only below the temporary folder: an
//! entry with an absolute path or a `..`, a link or a device is an error, as is an entry outside
//! the one expected folder (another dataset's archive, recognised by its folder).
//!
//! The compressed bytes are hashed as they are read, so the archive's MD5 is checked in the same
//! pass as the extraction. The cancellation flag is looked at before every entry and every
//! 1 MiB written.

use std::fs::{self, File, Metadata};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::AtomicBool;

use flate2::read::GzDecoder;
use md5::{Digest, Md5};
use tar::EntryType;

use crate::DataError;
use crate::download::hex;
use crate::error::check_cancel;

/// How many bytes are written between two looks at the cancellation flag.
const CHUNK: usize = 1 << 20;

/// What an archive must hold, and how to name what it holds instead.
#[derive(Debug)]
pub(crate) struct Expected<'a> {
    /// The dataset, for messages (`CIFAR-10`).
    pub dataset: &'a str,
    /// The one top-level folder every entry must be in (`cifar-10-batches-bin`).
    pub folder: &'a str,
    /// Files in that folder that must be there.
    pub files: &'a [&'a str],
    /// Folders in that folder that must be there (IMDb's `train/pos`, ...).
    pub folders: &'a [&'a str],
    /// MD5 of the whole `.tar.gz`, lower-case hex.
    pub md5: &'a str,
    /// Top-level folders of other archives that may be mistaken for this one, each with what
    /// to call it in the error (`"the CIFAR-100 archive: it belongs in data/cifar100/"`).
    pub others: &'a [(&'a str, String)],
}

/// The file's metadata, or `None` if there is nothing at `path`.
pub(crate) fn metadata(path: &Path) -> Result<Option<Metadata>, DataError> {
    match fs::metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(DataError::io(path, e)),
    }
}

/// Extracts the `.tar.gz` whose bytes `reader` yields into `into` (normally the folder the
/// archive is in) and returns `into/<folder>`; `archive` names it in messages and in the
/// temporary folder's name.
///
/// Either the whole folder appears, checked (every entry safe and inside it, the expected files
/// there, the archive's MD5 right), or nothing does; the archive itself is left as it is. Once
/// `cancel` is set, extraction stops with [`DataError::Interrupted`] naming the archive.
pub(crate) fn extract_tar_gz(
    reader: impl Read,
    archive: &Path,
    into: &Path,
    expected: &Expected<'_>,
    cancel: &AtomicBool,
) -> Result<PathBuf, DataError> {
    check_cancel(cancel, archive)?;
    let target = into.join(expected.folder);
    let temp = temp_dir(into, archive);
    if temp.exists() {
        // Left by an earlier process with this id that was killed outright.
        fs::remove_dir_all(&temp).map_err(|e| DataError::io(&temp, e))?;
    }
    fs::create_dir_all(&temp).map_err(|e| DataError::io(&temp, e))?;
    let _guard = RemoveDirOnDrop(temp.clone());

    let mut hashing = HashingReader {
        inner: reader,
        md5: Md5::new(),
    };
    let mut tar = tar::Archive::new(GzDecoder::new(&mut hashing));
    // One buffer for every entry: IMDb's archive has 100 000 small files.
    let mut buf = vec![0u8; CHUNK];
    let entries = tar.entries().map_err(|e| unreadable(archive, &e))?;
    for entry in entries {
        check_cancel(cancel, archive)?;
        let mut entry = entry.map_err(|e| unreadable(archive, &e))?;
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            continue; // pax metadata for the whole archive, not a member
        }
        let name = entry
            .path()
            .map_err(|e| unreadable(archive, &e))?
            .into_owned();
        let rel = relative(&name).ok_or_else(|| DataError::Archive {
            file: archive.to_owned(),
            problem: format!(
                "entry {} has an absolute path or a `..`; refusing to extract it",
                name.display()
            ),
        })?;
        let Some(top) = rel.components().next() else {
            continue; // `./`
        };
        if top.as_os_str() != expected.folder {
            return Err(wrong_archive(
                archive,
                &name,
                &top.as_os_str().to_string_lossy(),
                expected,
            ));
        }
        let dest = temp.join(&rel);
        match kind {
            EntryType::Directory => {
                fs::create_dir_all(&dest).map_err(|e| DataError::io(&dest, e))?;
            }
            EntryType::Regular | EntryType::Continuous => {
                write_entry(&mut entry, archive, &dest, &mut buf, cancel)?;
            }
            other => {
                return Err(DataError::Archive {
                    file: archive.to_owned(),
                    problem: format!(
                        "entry {} is a {other:?} entry, not a plain file or folder; refusing to \
                         extract it",
                        rel.display()
                    ),
                });
            }
        }
    }
    check_cancel(cancel, archive)?;
    // The tar stream ends before the gzip stream does (padding, trailer): hash the rest too.
    drop(tar);
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| unreadable(archive, &e))?;
    let got = hex(&hashing.md5.finalize());
    if !got.eq_ignore_ascii_case(expected.md5) {
        return Err(DataError::ChecksumMismatch {
            file: archive.display().to_string(),
            algorithm: "MD5",
            expected: expected.md5.to_ascii_lowercase(),
            got,
        });
    }

    let extracted = temp.join(expected.folder);
    let missing = expected
        .files
        .iter()
        .find(|file| !extracted.join(file).is_file())
        .or_else(|| {
            expected
                .folders
                .iter()
                .find(|folder| !extracted.join(folder).is_dir())
        });
    if let Some(missing) = missing {
        return Err(DataError::Archive {
            file: archive.to_owned(),
            problem: format!(
                "has no {}/{missing}; it is not the {} archive, or an incomplete one: delete it \
                 to download it again",
                expected.folder, expected.dataset
            ),
        });
    }
    check_cancel(cancel, archive)?;
    if let Err(e) = fs::rename(&extracted, &target) {
        // Another run may have extracted the same archive meanwhile: its folder is as good.
        if !target.is_dir() {
            return Err(DataError::io(&target, e));
        }
    }
    Ok(target)
}

/// `into/.<archive name>.extracting-<process id>`.
fn temp_dir(into: &Path, archive: &Path) -> PathBuf {
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    into.join(format!(".{name}.extracting-{}", std::process::id()))
}

/// The entry's path without `.` components; `None` if it is absolute or has a `..` (or a
/// Windows drive prefix), which could write outside the folder it is extracted into.
fn relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Copies one file entry to `dest` through `buf`, a chunk at a time, looking at `cancel` before
/// each chunk.
fn write_entry(
    entry: &mut impl Read,
    archive: &Path,
    dest: &Path,
    buf: &mut [u8],
    cancel: &AtomicBool,
) -> Result<(), DataError> {
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    let file = File::create(dest).map_err(|e| DataError::io(dest, e))?;
    let mut out = BufWriter::new(file);
    loop {
        check_cancel(cancel, archive)?;
        let n = match entry.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(unreadable(archive, &e)),
        };
        out.write_all(&buf[..n])
            .map_err(|e| DataError::io(dest, e))?;
    }
    out.flush().map_err(|e| DataError::io(dest, e))
}

/// The archive's bytes could not be read as a `.tar.gz`.
fn unreadable(archive: &Path, e: &io::Error) -> DataError {
    DataError::Archive {
        file: archive.to_owned(),
        problem: format!(
            "cannot read it as a .tar.gz (corrupt or cut short?): {e}; delete it to download it \
             again"
        ),
    }
}

/// An entry (`name`, in the top-level folder `top`) outside the expected folder: another
/// dataset's archive, or an unknown one.
fn wrong_archive(archive: &Path, name: &Path, top: &str, expected: &Expected<'_>) -> DataError {
    let known = expected
        .others
        .iter()
        .find(|(folder, _)| *folder == top)
        .map(|(_, what)| format!(" ({what})"))
        .unwrap_or_default();
    DataError::WrongArchive {
        file: archive.to_owned(),
        expected: format!("{} ({}/)", expected.dataset, expected.folder),
        found: format!("{}{known}", name.display()),
    }
}

/// Passes reads through, hashing every byte.
struct HashingReader<R> {
    inner: R,
    md5: Md5,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.md5.update(&buf[..n]);
        Ok(n)
    }
}

/// Deletes a folder and everything in it when dropped: the temporary folder goes away on every
/// return, early or not.
struct RemoveDirOnDrop(PathBuf);

impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        // Nothing more to do if this fails: the error being returned says what went wrong, and
        // a hidden leftover is never taken for the dataset.
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Test helpers shared by the loaders' tests: `.tar.gz` archives, MD5s, folder listings.
#[cfg(test)]
pub(crate) mod testing {
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use md5::{Digest, Md5};
    use tar::{EntryType, Header};

    use crate::download::hex;

    /// Every name in a folder, sorted.
    pub fn listing(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A `.tar.gz` of the given plain files (and of a folder entry for each path ending in `/`).
    pub fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = GzEncoder::new(Vec::new(), Compression::fast());
        let mut builder = tar::Builder::new(gz);
        for (path, data) in files {
            let mut header = Header::new_gnu();
            if path.ends_with('/') {
                header.set_entry_type(EntryType::Directory);
                header.set_mode(0o755);
            } else {
                header.set_entry_type(EntryType::Regular);
                header.set_mode(0o644);
            }
            header.set_size(data.len() as u64);
            raw_path(&mut header, path);
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    /// A `.tar.gz` of one entry of the given type, its name written as is (the `tar` crate
    /// refuses to write `..` or absolute paths, which is what these tests need).
    pub fn tar_gz_raw(path: &str, kind: EntryType, data: &[u8]) -> Vec<u8> {
        let gz = GzEncoder::new(Vec::new(), Compression::fast());
        let mut builder = tar::Builder::new(gz);
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        raw_path(&mut header, path);
        builder.append(&header, data).unwrap();
        builder.into_inner().unwrap().finish().unwrap()
    }

    /// Sets the header's name field byte for byte and recomputes its checksum.
    fn raw_path(header: &mut Header, path: &str) {
        let name = &mut header.as_gnu_mut().unwrap().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
    }

    /// MD5 of bytes, lower-case hex.
    pub fn md5_hex(bytes: &[u8]) -> String {
        hex(&Md5::digest(bytes))
    }

    /// Gzip-compressed bytes (a `.tar.gz` with a corrupt or truncated tar inside).
    pub use crate::idx::testing::gzip;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::testing::*;
    use super::*;

    /// A cancellation flag that is never set.
    static GO: AtomicBool = AtomicBool::new(false);

    const FILES: &[&str] = &["a.bin", "b.bin"];
    const FOLDERS: &[&str] = &["sub"];

    fn expected<'a>(md5: &'a str, others: &'a [(&'a str, String)]) -> Expected<'a> {
        Expected {
            dataset: "Toy",
            folder: "toy",
            files: FILES,
            folders: FOLDERS,
            md5,
            others,
        }
    }

    fn toy() -> Vec<u8> {
        tar_gz(&[
            ("toy/", b""),
            ("toy/a.bin", &[1u8; 3 * CHUNK + 5]),
            ("toy/b.bin", b"bee"),
            ("./toy/readme.txt", b"hello"),
            ("toy/sub/c.bin", b"sea"),
        ])
    }

    /// Writes the archive under `dir` and extracts it there with the given flag.
    fn extract(
        dir: &Path,
        bytes: &[u8],
        md5: &str,
        cancel: &AtomicBool,
    ) -> Result<PathBuf, DataError> {
        let archive = dir.join("toy.tar.gz");
        fs::write(&archive, bytes).unwrap();
        extract_tar_gz(bytes, &archive, dir, &expected(md5, &[]), cancel)
    }

    #[test]
    fn an_archive_is_extracted_into_its_folder_and_no_temporary_folder_remains() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = toy();
        let out = extract(dir.path(), &bytes, &md5_hex(&bytes), &GO).unwrap();
        assert_eq!(out, dir.path().join("toy"));
        assert_eq!(listing(dir.path()), ["toy", "toy.tar.gz"]);
        assert_eq!(listing(&out), ["a.bin", "b.bin", "readme.txt", "sub"]);
        assert_eq!(fs::read(out.join("sub/c.bin")).unwrap(), b"sea");
        assert_eq!(
            fs::read(out.join("a.bin")).unwrap(),
            vec![1u8; 3 * CHUNK + 5]
        );
        assert_eq!(fs::read(out.join("b.bin")).unwrap(), b"bee");
    }

    #[test]
    fn a_wrong_md5_leaves_nothing_extracted() {
        let dir = tempfile::tempdir().unwrap();
        let err = extract(dir.path(), &toy(), &"0".repeat(32), &GO).unwrap_err();
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
        assert!(err.to_string().contains("toy.tar.gz"), "{err}");
        assert_eq!(listing(dir.path()), ["toy.tar.gz"]);
    }

    #[test]
    fn entries_that_would_escape_the_folder_or_are_not_plain_files_are_refused() {
        for (path, kind, problem) in [
            ("../evil.bin", EntryType::Regular, "absolute path or a `..`"),
            (
                "toy/../../evil.bin",
                EntryType::Regular,
                "absolute path or a `..`",
            ),
            (
                "/tmp/evil.bin",
                EntryType::Regular,
                "absolute path or a `..`",
            ),
            (
                "toy/link",
                EntryType::Symlink,
                "Symlink entry, not a plain file",
            ),
            ("toy/hard", EntryType::Link, "Link entry, not a plain file"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let bytes = tar_gz_raw(path, kind, b"x");
            let err = extract(dir.path(), &bytes, &md5_hex(&bytes), &GO).unwrap_err();
            assert!(matches!(err, DataError::Archive { .. }), "{path}: {err}");
            let msg = err.to_string();
            assert!(msg.contains(problem), "{path}: {msg}");
            assert!(msg.contains("toy.tar.gz"), "{msg}");
            assert_eq!(listing(dir.path()), ["toy.tar.gz"], "{path}");
            assert!(!dir.path().parent().unwrap().join("evil.bin").exists());
        }
    }

    #[test]
    fn another_datasets_archive_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = tar_gz(&[("other/", b""), ("other/a.bin", b"1")]);
        let archive = dir.path().join("toy.tar.gz");
        fs::write(&archive, &bytes).unwrap();
        let others = [("other", "the Other archive".to_owned())];
        let md5 = md5_hex(&bytes);
        let exp = expected(&md5, &others);
        let err = extract_tar_gz(bytes.as_slice(), &archive, dir.path(), &exp, &GO).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: not the Toy (toy/) archive: it holds other/ (the Other archive)",
                archive.display()
            )
        );
        assert_eq!(listing(dir.path()), ["toy.tar.gz"]);
    }

    #[test]
    fn an_archive_without_a_needed_file_or_cut_short_leaves_nothing_extracted() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = tar_gz(&[("toy/a.bin", b"1")]);
        let err = extract(dir.path(), &bytes, &md5_hex(&bytes), &GO).unwrap_err();
        assert!(err.to_string().contains("has no toy/b.bin"), "{err}");
        assert_eq!(listing(dir.path()), ["toy.tar.gz"]);
        let no_folder = tar_gz(&[("toy/a.bin", b"1"), ("toy/b.bin", b"2")]);
        let err = extract(dir.path(), &no_folder, &md5_hex(&no_folder), &GO).unwrap_err();
        assert!(err.to_string().contains("has no toy/sub"), "{err}");
        assert_eq!(listing(dir.path()), ["toy.tar.gz"]);

        let whole = toy();
        let cut = &whole[..whole.len() / 2];
        let err = extract(dir.path(), cut, &md5_hex(cut), &GO).unwrap_err();
        assert!(
            err.to_string().contains("cannot read it as a .tar.gz"),
            "{err}"
        );
        assert_eq!(listing(dir.path()), ["toy.tar.gz"]);

        let not_tar = gzip(&[7u8; 1000]);
        let err = extract(dir.path(), &not_tar, &md5_hex(&not_tar), &GO).unwrap_err();
        assert!(matches!(err, DataError::Archive { .. }), "{err}");
        assert_eq!(listing(dir.path()), ["toy.tar.gz"]);
    }

    /// Passes `inner` through, setting `cancel` once `after` reads have been made (Ctrl-C
    /// part-way through the extraction).
    struct CancelAfter<'a, R> {
        inner: R,
        cancel: &'a AtomicBool,
        after: usize,
        reads: usize,
    }

    impl<R: Read> Read for CancelAfter<'_, R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            if self.reads == self.after {
                self.cancel.store(true, Ordering::Relaxed);
            }
            self.inner.read(buf)
        }
    }

    #[test]
    fn cancelling_part_way_leaves_nothing_half_extracted() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("toy.tar.gz");
        // Incompressible content, so the archive takes many reads.
        let mut noise = vec![0u8; 4 * CHUNK];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for b in &mut noise {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let bytes = tar_gz(&[("toy/a.bin", &noise), ("toy/b.bin", b"bee")]);
        fs::write(&archive, &bytes).unwrap();
        let cancel = AtomicBool::new(false);
        let mut reader = CancelAfter {
            inner: bytes.as_slice(),
            cancel: &cancel,
            after: 3,
            reads: 0,
        };
        let exp = expected("unused", &[]);
        let err = extract_tar_gz(&mut reader, &archive, dir.path(), &exp, &cancel).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("interrupted while loading {}", archive.display())
        );
        assert!(
            reader.reads < 20,
            "stopped soon after the flag: {}",
            reader.reads
        );
        assert_eq!(listing(dir.path()), ["toy.tar.gz"]);

        let set = AtomicBool::new(true);
        let err = extract_tar_gz(bytes.as_slice(), &archive, dir.path(), &exp, &set).unwrap_err();
        assert!(err.is_interrupted(), "{err}");
        assert_eq!(listing(dir.path()), ["toy.tar.gz"]);
    }

    #[test]
    fn paths_are_kept_relative_and_inside() {
        assert_eq!(relative(Path::new("./a/./b")), Some(PathBuf::from("a/b")));
        assert_eq!(relative(Path::new("a/../b")), None);
        assert_eq!(relative(Path::new("/a")), None);
        assert_eq!(relative(Path::new("./")), Some(PathBuf::new()));
    }
}
