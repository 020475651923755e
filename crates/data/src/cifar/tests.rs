//! Tests of CIFAR loading, on record files and archives in the real binary format, written here.

use std::fs;
use std::sync::atomic::Ordering;

use super::*;
use crate::archive::testing::{listing, md5_hex, tar_gz};

/// A cancellation flag that is never set.
static GO: AtomicBool = AtomicBool::new(false);

/// One record: the label bytes, then pixel `i` = `(31 * seed + i) % 256`.
fn record(labels: &[u8], seed: usize) -> Vec<u8> {
    let mut r = labels.to_vec();
    r.extend((0..PIXELS).map(|i| ((31 * seed + i) % 256) as u8));
    r
}

/// The label bytes of sample `i`: CIFAR-10 `i % 10`; CIFAR-100 coarse `i % 20`, fine
/// `(7 * i) % 100`.
fn labels_of(kind: CifarKind, i: usize) -> Vec<u8> {
    match kind {
        CifarKind::Cifar10 => vec![(i % 10) as u8],
        CifarKind::Cifar100 => vec![(i % 20) as u8, ((7 * i) % 100) as u8],
    }
}

/// `n` records of samples `first..first + n`.
fn records(kind: CifarKind, first: usize, n: usize) -> Vec<u8> {
    (first..first + n)
        .flat_map(|i| record(&labels_of(kind, i), i))
        .collect()
}

/// Every record file of `kind` with `n` records each, numbered on across files (train, then
/// test), as `(name, bytes)`.
fn record_files(kind: CifarKind, n: usize) -> Vec<(&'static str, Vec<u8>)> {
    kind.files()
        .into_iter()
        .enumerate()
        .map(|(f, name)| (name, records(kind, f * n, n)))
        .collect()
}

/// The record files, written in `<root>/<dir>/<folder>/`; returns that folder.
fn write_folder(root: &Path, kind: CifarKind, n: usize) -> PathBuf {
    let folder = root.join(kind.dir_name()).join(kind.folder_name());
    fs::create_dir_all(&folder).unwrap();
    for (name, bytes) in record_files(kind, n) {
        fs::write(folder.join(name), bytes).unwrap();
    }
    folder
}

/// The archive of `kind` with `n` records per file, as the official one is laid out.
fn archive_bytes(kind: CifarKind, n: usize) -> Vec<u8> {
    let folder = kind.folder_name();
    let files = record_files(kind, n);
    let mut entries: Vec<(String, &[u8])> = vec![(format!("{folder}/"), b"")];
    entries.extend(
        files
            .iter()
            .map(|(name, bytes)| (format!("{folder}/{name}"), bytes.as_slice())),
    );
    entries.push((format!("{folder}/readme.html"), b"<html></html>"));
    let entries: Vec<(&str, &[u8])> = entries.iter().map(|(p, b)| (p.as_str(), *b)).collect();
    tar_gz(&entries)
}

/// Writes `bytes` as `<root>/<dir of in_dir>/<name>`; returns the path.
fn put(root: &Path, in_dir: CifarKind, name: &str, bytes: &[u8]) -> PathBuf {
    let dir = root.join(in_dir.dir_name());
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
    dir.join(name)
}

/// Files of `n` records each and an archive with MD5 `md5`; no downloads.
fn source(n: usize, md5: &str) -> Source<'_> {
    Source {
        counts: Counts {
            train_per_file: n,
            test: n,
        },
        md5,
        download: false,
        progress: false,
    }
}

fn labels(set: &Dataset) -> (&[u32], usize) {
    let Targets::Classes {
        labels,
        num_classes,
    } = &set.targets
    else {
        panic!("not classes: {:?}", set.targets)
    };
    (labels, *num_classes)
}

#[test]
fn an_extracted_cifar10_folder_loads_in_file_order_with_its_labels_and_shape() {
    let root = tempfile::tempdir().unwrap();
    write_folder(root.path(), CifarKind::Cifar10, 3);
    let splits = load_with(
        CifarKind::Cifar10,
        CifarLabel::Fine,
        root.path(),
        &source(3, "unused"),
        &GO,
    )
    .unwrap();
    assert!(splits.validation.is_none());
    let test = splits.test.as_ref().unwrap();
    assert_eq!((splits.train.len(), test.len()), (15, 3));
    assert_eq!(splits.train.features.cols(), 3072);
    assert_eq!(splits.train.image_shape(), Some([3, 32, 32]));
    assert_eq!(test.image_shape(), Some(CIFAR_IMAGE_SHAPE));
    let want: Vec<u32> = (0..15).map(|i| i % 10).collect();
    assert_eq!(labels(&splits.train), (want.as_slice(), 10));
    assert_eq!(labels(test), ([5, 6, 7].as_slice(), 10));
    // Sample 4 (the second of data_batch_2): pixel i is (31 * 4 + i) % 256, scaled by 1/255.
    let row = splits.train.features.gather_f32(&[4]);
    assert_eq!(row[0], 124.0 / 255.0);
    assert_eq!(row[3071], ((124 + 3071) % 256) as f32 / 255.0);
    let row = test.features.gather_f64(&[2]);
    assert_eq!(row[1], ((31 * 17 + 1) % 256) as f64 / 255.0);
}

#[test]
fn a_known_pixel_lands_at_its_channel_row_column_index() {
    let root = tempfile::tempdir().unwrap();
    let folder = write_folder(root.path(), CifarKind::Cifar10, 2);
    // Record 1 of data_batch_1: all black but red (3, 5), green (0, 31) and blue (31, 0).
    let mut batch = records(CifarKind::Cifar10, 0, 2);
    let pixels = &mut batch[3073 + 1..2 * 3073];
    pixels.fill(0);
    pixels[3 * 32 + 5] = 200;
    pixels[1024 + 31] = 100;
    pixels[2048 + 31 * 32] = 50;
    fs::write(folder.join("data_batch_1.bin"), &batch).unwrap();
    let splits = load_with(
        CifarKind::Cifar10,
        CifarLabel::Fine,
        root.path(),
        &source(2, "unused"),
        &GO,
    )
    .unwrap();
    let [c, h, w] = splits.train.image_shape().unwrap();
    let index = |ch: usize, y: usize, x: usize| ch * h * w + y * w + x;
    let row = splits.train.features.gather_f64(&[1]);
    assert_eq!(row[index(0, 3, 5)], 200.0 / 255.0);
    assert_eq!(row[index(1, 0, 31)], 100.0 / 255.0);
    assert_eq!(row[index(2, 31, 0)], 50.0 / 255.0);
    assert_eq!(row.iter().filter(|&&v| v != 0.0).count(), 3);
    assert_eq!(c, 3);
}

#[test]
fn cifar100_gives_fine_or_coarse_labels() {
    let root = tempfile::tempdir().unwrap();
    write_folder(root.path(), CifarKind::Cifar100, 25);
    let load = |label| {
        load_with(
            CifarKind::Cifar100,
            label,
            root.path(),
            &source(25, "unused"),
            &GO,
        )
        .unwrap()
    };
    let fine = load(CifarLabel::Fine);
    let coarse = load(CifarLabel::Coarse);
    let want_fine: Vec<u32> = (0..25).map(|i| (7 * i) % 100).collect();
    let want_coarse: Vec<u32> = (0..25).map(|i| i % 20).collect();
    assert_eq!(labels(&fine.train), (want_fine.as_slice(), 100));
    assert_eq!(labels(&coarse.train), (want_coarse.as_slice(), 20));
    let test_fine: Vec<u32> = (25..50).map(|i| (7 * i) % 100).collect();
    assert_eq!(labels(fine.test.as_ref().unwrap()).0, test_fine.as_slice());
    assert_eq!(fine.train.features, coarse.train.features);
    // CIFAR-100 records have two label bytes: the pixels start after both.
    assert_eq!(fine.train.features.gather_f64(&[1])[0], 31.0 / 255.0);
}

#[test]
fn coarse_labels_of_cifar10_are_an_error_naming_data_label() {
    let root = tempfile::tempdir().unwrap();
    let err = load_cifar(
        CifarKind::Cifar10,
        CifarLabel::Coarse,
        root.path(),
        true,
        false,
        &GO,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DataError::InvalidConfig {
                key: "data.label",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("data.label: \"coarse\""),
        "{err}"
    );
    // Nothing was looked for or downloaded.
    assert!(!root.path().join("cifar10").exists());
}

#[test]
fn an_archive_is_extracted_beside_itself_leaving_its_folder_and_no_temporary_one() {
    let root = tempfile::tempdir().unwrap();
    let bytes = archive_bytes(CifarKind::Cifar10, 4);
    put(
        root.path(),
        CifarKind::Cifar10,
        "cifar-10-binary.tar.gz",
        &bytes,
    );
    let md5 = md5_hex(&bytes);
    let kind = CifarKind::Cifar10;
    let splits = load_with(kind, CifarLabel::Fine, root.path(), &source(4, &md5), &GO).unwrap();
    assert_eq!(
        (splits.train.len(), splits.test.as_ref().unwrap().len()),
        (20, 4)
    );
    let dir = root.path().join("cifar10");
    assert_eq!(
        listing(&dir),
        ["cifar-10-batches-bin", "cifar-10-binary.tar.gz"]
    );
    let mut want: Vec<&str> = kind.files();
    want.push("readme.html");
    want.sort();
    assert_eq!(listing(&dir.join("cifar-10-batches-bin")), want);

    // The next load reads the folder; the archive is no longer needed.
    fs::remove_file(dir.join("cifar-10-binary.tar.gz")).unwrap();
    let again = load_with(kind, CifarLabel::Fine, root.path(), &source(4, &md5), &GO).unwrap();
    assert_eq!(again, splits);
}

#[test]
fn a_cifar100_archive_extracts_and_loads_too() {
    let root = tempfile::tempdir().unwrap();
    let kind = CifarKind::Cifar100;
    let bytes = archive_bytes(kind, 3);
    put(root.path(), kind, "cifar-100-binary.tar.gz", &bytes);
    let md5 = md5_hex(&bytes);
    let splits = load_with(kind, CifarLabel::Coarse, root.path(), &source(3, &md5), &GO).unwrap();
    assert_eq!(labels(&splits.train), ([0, 1, 2].as_slice(), 20));
    assert_eq!(
        listing(&root.path().join("cifar100")),
        ["cifar-100-binary", "cifar-100-binary.tar.gz"]
    );
}

#[test]
fn a_local_archive_with_the_wrong_md5_is_an_error_and_nothing_is_extracted() {
    let root = tempfile::tempdir().unwrap();
    let bytes = archive_bytes(CifarKind::Cifar10, 2);
    let archive = put(
        root.path(),
        CifarKind::Cifar10,
        "cifar-10-binary.tar.gz",
        &bytes,
    );
    let err = load_cifar(
        CifarKind::Cifar10,
        CifarLabel::Fine,
        root.path(),
        false,
        false,
        &GO,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: checksum mismatch (expected MD5 c32a1d4ab5d03f1284b67883e8d87530, got {}); \
             delete it to re-download",
            archive.display(),
            md5_hex(&bytes)
        )
    );
    assert_eq!(
        listing(&root.path().join("cifar10")),
        ["cifar-10-binary.tar.gz"]
    );
}

#[test]
fn the_other_datasets_archive_is_an_error_naming_the_file_and_where_it_belongs() {
    for (kind, other) in [
        (CifarKind::Cifar10, CifarKind::Cifar100),
        (CifarKind::Cifar100, CifarKind::Cifar10),
    ] {
        let root = tempfile::tempdir().unwrap();
        // The other archive, renamed to this one's name.
        let bytes = archive_bytes(other, 1);
        let archive = put(root.path(), kind, kind.archive_name(), &bytes);
        let err = load_cifar(kind, CifarLabel::Fine, root.path(), false, false, &GO).unwrap_err();
        assert!(matches!(err, DataError::WrongArchive { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: not the {kind} ({}/) archive: it holds {}/ (the {other} archive: it \
                 belongs in {})",
                archive.display(),
                kind.folder_name(),
                other.folder_name(),
                root.path().join(other.dir_name()).display()
            )
        );
        assert_eq!(
            listing(&root.path().join(kind.dir_name())),
            [kind.archive_name()]
        );

        // The other archive under its own name, in this one's folder.
        fs::remove_file(&archive).unwrap();
        put(root.path(), kind, other.archive_name(), &bytes);
        let err = load_cifar(kind, CifarLabel::Fine, root.path(), false, false, &GO).unwrap_err();
        assert!(matches!(err, DataError::NotFound { .. }), "{err}");
        let msg = err.to_string();
        let misplaced = root.path().join(kind.dir_name()).join(other.archive_name());
        assert!(
            msg.ends_with(&format!(
                ". {} is {other}'s: it belongs in {}",
                misplaced.display(),
                root.path().join(other.dir_name()).display()
            )),
            "{msg}"
        );
    }
}

#[test]
fn a_truncated_record_file_is_an_error_naming_it_and_the_sizes() {
    let root = tempfile::tempdir().unwrap();
    let folder = write_folder(root.path(), CifarKind::Cifar10, 2);
    // Through the public path: the official count is 10 000 records of 3 073 bytes.
    let err = load_cifar(
        CifarKind::Cifar10,
        CifarLabel::Fine,
        root.path(),
        false,
        false,
        &GO,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: truncated: expected 30730000 bytes, found 6146",
            folder.join("data_batch_1.bin").display()
        )
    );
    // Half a record short, and a record too many.
    let batch = records(CifarKind::Cifar10, 0, 2);
    fs::write(folder.join("data_batch_3.bin"), &batch[..3073 + 1536]).unwrap();
    let load = || {
        load_with(
            CifarKind::Cifar10,
            CifarLabel::Fine,
            root.path(),
            &source(2, "unused"),
            &GO,
        )
        .unwrap_err()
        .to_string()
    };
    assert_eq!(
        load(),
        format!(
            "{}: truncated: expected 6146 bytes, found 4609",
            folder.join("data_batch_3.bin").display()
        )
    );
    fs::write(
        folder.join("data_batch_3.bin"),
        records(CifarKind::Cifar10, 0, 3),
    )
    .unwrap();
    assert_eq!(
        load(),
        format!(
            "{}: trailing bytes: expected 6146 bytes, found 9219",
            folder.join("data_batch_3.bin").display()
        )
    );

    let root = tempfile::tempdir().unwrap();
    let folder = write_folder(root.path(), CifarKind::Cifar100, 2);
    let err = load_cifar(
        CifarKind::Cifar100,
        CifarLabel::Fine,
        root.path(),
        false,
        false,
        &GO,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: truncated: expected 153700000 bytes, found 6148",
            folder.join("train.bin").display()
        )
    );
}

#[test]
fn a_label_out_of_range_is_an_error_naming_the_file_and_the_record() {
    for (kind, bad, problem) in [
        (
            CifarKind::Cifar10,
            vec![10],
            "record 2: label 10 is not below 10",
        ),
        (
            CifarKind::Cifar100,
            vec![20, 5],
            "record 2: coarse label 20 is not below 20",
        ),
        (
            CifarKind::Cifar100,
            vec![3, 100],
            "record 2: fine label 100 is not below 100",
        ),
    ] {
        let root = tempfile::tempdir().unwrap();
        let folder = write_folder(root.path(), kind, 4);
        let file = folder.join(kind.test_file());
        let mut bytes = records(kind, 0, 4);
        let at = 2 * (kind.label_bytes() + PIXELS);
        bytes[at..at + bad.len()].copy_from_slice(&bad);
        fs::write(&file, bytes).unwrap();
        // Even when the bad label is not the one asked for, the file is rejected.
        let err = load_with(
            kind,
            CifarLabel::Fine,
            root.path(),
            &source(4, "unused"),
            &GO,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), format!("{}: {problem}", file.display()));
    }
}

#[test]
fn missing_files_without_download_name_the_url_the_file_and_the_folder() {
    for kind in [CifarKind::Cifar10, CifarKind::Cifar100] {
        let root = tempfile::tempdir().unwrap();
        let err = load_cifar(kind, CifarLabel::Fine, root.path(), false, false, &GO).unwrap_err();
        let DataError::NotFound {
            looked,
            download_error: None,
            ..
        } = &err
        else {
            panic!("expected NotFound without a download, got {err}")
        };
        let dir = root.path().join(kind.dir_name());
        assert_eq!(
            looked,
            &[dir.join(kind.folder_name()), dir.join(kind.archive_name())]
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("{kind} {} not found", kind.archive_name())),
            "{msg}"
        );
        assert!(
            msg.contains(&format!(
                "Downloading was not allowed: allow it (data.download = true) to fetch {}, or put that file in {} \
                 (it is extracted there), or its extracted folder {}/",
                kind.url(),
                dir.display(),
                kind.folder_name()
            )),
            "{msg}"
        );
    }
}

#[test]
fn an_incomplete_extracted_folder_is_an_error_saying_to_delete_it() {
    let root = tempfile::tempdir().unwrap();
    let folder = write_folder(root.path(), CifarKind::Cifar10, 2);
    fs::remove_file(folder.join("data_batch_3.bin")).unwrap();
    let err = load_with(
        CifarKind::Cifar10,
        CifarLabel::Fine,
        root.path(),
        &source(2, "unused"),
        &GO,
    )
    .unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("CIFAR-10 data_batch_3.bin not found"),
        "{msg}"
    );
    assert!(
        msg.ends_with(&format!(
            "{} is incomplete: delete it, and it is extracted again from {} (downloaded first if \
             allowed and missing)",
            folder.display(),
            root.path().join("cifar10/cifar-10-binary.tar.gz").display()
        )),
        "{msg}"
    );
}

#[test]
fn a_set_flag_stops_a_download_before_it_connects() {
    let root = tempfile::tempdir().unwrap();
    let set = AtomicBool::new(true);
    let err = load_cifar(
        CifarKind::Cifar100,
        CifarLabel::Coarse,
        root.path(),
        true,
        false,
        &set,
    )
    .unwrap_err();
    let DataError::Interrupted {
        file,
        url: Some(url),
    } = &err
    else {
        panic!("expected Interrupted while downloading, got {err}")
    };
    assert_eq!(file, &root.path().join("cifar100/cifar-100-binary.tar.gz"));
    assert_eq!(url, CifarKind::Cifar100.url());
    assert!(listing(&root.path().join("cifar100")).is_empty());
}

#[test]
fn a_set_flag_stops_loading_before_the_first_record_file_is_read() {
    let root = tempfile::tempdir().unwrap();
    let folder = write_folder(root.path(), CifarKind::Cifar10, 2);
    let set = AtomicBool::new(true);
    let err = load_with(
        CifarKind::Cifar10,
        CifarLabel::Fine,
        root.path(),
        &source(2, "unused"),
        &set,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "interrupted while loading {}",
            folder.join("data_batch_1.bin").display()
        )
    );
}

/// Yields at most 512 bytes a read, and sets `cancel` on read number `at` (Ctrl-C part-way
/// through the extraction).
struct Trickle<'a> {
    inner: &'a [u8],
    cancel: &'a AtomicBool,
    at: usize,
    reads: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        if self.reads == self.at {
            self.cancel.store(true, Ordering::Relaxed);
        }
        let n = buf.len().min(512);
        self.inner.read(&mut buf[..n])
    }
}

#[test]
fn cancelling_during_extraction_leaves_nothing_half_extracted() {
    let root = tempfile::tempdir().unwrap();
    let kind = CifarKind::Cifar10;
    let bytes = archive_bytes(kind, 200);
    let archive = put(root.path(), kind, kind.archive_name(), &bytes);
    let reads_in_all = bytes.len().div_ceil(512);
    assert!(reads_in_all > 10, "{reads_in_all}");
    let cancel = AtomicBool::new(false);
    let mut reader = Trickle {
        inner: &bytes,
        cancel: &cancel,
        at: reads_in_all / 2,
        reads: 0,
    };
    let err = extract(kind, root.path(), &md5_hex(&bytes), &mut reader, &cancel).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("interrupted while loading {}", archive.display())
    );
    assert!(reader.reads < reads_in_all, "stopped part-way");
    assert_eq!(listing(&root.path().join("cifar10")), [kind.archive_name()]);

    // Through the loader: the flag set before the archive is opened.
    let set = AtomicBool::new(true);
    let err = load_with(
        kind,
        CifarLabel::Fine,
        root.path(),
        &source(200, &md5_hex(&bytes)),
        &set,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("interrupted while loading {}", archive.display())
    );
    assert_eq!(listing(&root.path().join("cifar10")), [kind.archive_name()]);
}

#[test]
fn full_size_cifar10_files_load_through_the_public_path() {
    let root = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    write_folder(root.path(), CifarKind::Cifar10, 10_000);
    let splits = load_cifar(
        CifarKind::Cifar10,
        CifarLabel::Fine,
        root.path(),
        false,
        false,
        &GO,
    )
    .unwrap();
    let test = splits.test.as_ref().unwrap();
    assert_eq!((splits.train.len(), test.len()), (50_000, 10_000));
    let (train_labels, classes) = labels(&splits.train);
    assert_eq!(classes, 10);
    assert_eq!(train_labels[49_999], 49_999 % 10);
    assert_eq!(labels(test).0[0], 0);
    eprintln!(
        "full-size CIFAR-10 written and loaded in {:?}",
        started.elapsed()
    );
}
