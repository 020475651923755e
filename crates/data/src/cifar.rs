//! CIFAR-10 and CIFAR-100 (Krizhevsky, 2009), the binary version: found on disk, or downloaded,
//! verified and extracted, then checked record by record.
//!
//! For each dataset the folder `<root>/<cifar10|cifar100>/` is looked at for
//! 1. the extracted folder (`cifar-10-batches-bin/`, `cifar-100-binary/`), else
//! 2. the official archive (`cifar-10-binary.tar.gz`, `cifar-100-binary.tar.gz`), which is then
//!    extracted beside itself (all or nothing, through a temporary folder; its MD5 checked), else
//! 3. when allowed, the archive is downloaded there (progress bar, published MD5) and extracted.
//!
//! The archive is kept after extraction. Every record file must hold exactly its number of
//! records (CIFAR-10: five training batches and a test batch of 10 000; CIFAR-100: 50 000 and
//! 10 000), each of one label byte (CIFAR-100: the coarse label, then the fine one) and 3 072
//! pixel bytes: the red plane, then green, then blue, each 32 rows of 32. Labels must be in range
//! (10 classes; 20 coarse and 100 fine). No SHA-256 of the extracted files is checked: no
//! copy of the real files was at hand to compute it from, so the structure is all that is checked
//! of an extracted folder; the archive's MD5 is checked whenever it is extracted.
//!
//! Loading can be cancelled (Ctrl-C): the flag is looked at between files and between chunks of
//! the download, the extraction and the reading, and loading then stops with
//! [`DataError::Interrupted`].

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use crate::archive::{self, Expected, metadata};
use crate::download::{DEFAULT_MAX_BYTES, download_verified};
use crate::error::check_cancel;
use crate::{DataError, Dataset, Features, Splits, Targets};

/// Per-channel mean of CIFAR-10's training images on the `[0, 1]` scale (R, G, B): the mean
/// over all 50 000 × 32 × 32 pixels of each channel, byte / 255, as widely used with
/// torchvision's `Normalize` (e.g. the PyTorch CIFAR-10 ResNet recipes).
pub const CIFAR10_MEAN: [f64; 3] = [0.4914, 0.4822, 0.4465];
/// Per-channel (population) standard deviation of CIFAR-10's training images on the `[0, 1]`
/// scale, over all pixels of each channel (`np.std(train, axis=(0, 1, 2)) / 255`); not the
/// often-copied `(0.2023, 0.1994, 0.2010)`, which are averages of per-image deviations.
pub const CIFAR10_STD: [f64; 3] = [0.2470, 0.2435, 0.2616];
/// Per-channel mean of CIFAR-100's training images on the `[0, 1]` scale (R, G, B), computed as
/// for CIFAR-10 (rounded from the values in weiaicunzai/pytorch-cifar100's `global_settings.py`:
/// 0.50708, 0.48655, 0.44092).
pub const CIFAR100_MEAN: [f64; 3] = [0.5071, 0.4865, 0.4409];
/// Per-channel standard deviation of CIFAR-100's training images on the `[0, 1]` scale, over all
/// pixels of each channel (from the same source: 0.26733, 0.25644, 0.27615).
pub const CIFAR100_STD: [f64; 3] = [0.2673, 0.2564, 0.2762];

/// `[channels, height, width]` of every CIFAR image.
pub const CIFAR_IMAGE_SHAPE: [usize; 3] = [3, 32, 32];
/// Bytes of pixels in one record: 3 × 32 × 32.
const PIXELS: usize = 3 * 32 * 32;

/// Which of the two 32×32 colour datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CifarKind {
    /// 10 classes, 6 000 images each.
    Cifar10,
    /// 100 classes ("fine" labels) in 20 superclasses ("coarse" labels), 600 images each.
    Cifar100,
}

/// Which label of CIFAR-100 is the target (the `data.label` setting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CifarLabel {
    /// The class: CIFAR-10's 10, CIFAR-100's 100.
    #[default]
    Fine,
    /// CIFAR-100's 20 superclasses; CIFAR-10 has none.
    Coarse,
}

/// Records per file: the official counts, or fewer in tests.
#[derive(Debug, Clone, Copy)]
struct Counts {
    /// Records in each training file.
    train_per_file: usize,
    /// Records in the test file.
    test: usize,
}

impl CifarKind {
    /// The directory under the data root where its files are looked for and downloaded to:
    /// `cifar10` or `cifar100` (as the dataset is named in the config).
    pub fn dir_name(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "cifar10",
            CifarKind::Cifar100 => "cifar100",
        }
    }

    /// The official archive's file name.
    pub fn archive_name(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "cifar-10-binary.tar.gz",
            CifarKind::Cifar100 => "cifar-100-binary.tar.gz",
        }
    }

    /// The folder the archive holds, and that it is extracted to.
    pub fn folder_name(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "cifar-10-batches-bin",
            CifarKind::Cifar100 => "cifar-100-binary",
        }
    }

    /// Where the archive is downloaded from: the dataset's page,
    /// <https://www.cs.toronto.edu/~kriz/cifar.html>.
    pub fn url(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
            CifarKind::Cifar100 => "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        }
    }

    /// MD5 of the archive as the dataset's page lists it (170 052 171 and 168 513 733 bytes).
    fn md5(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "c32a1d4ab5d03f1284b67883e8d87530",
            CifarKind::Cifar100 => "03b5dce01913d631647c71ecec9e9cb8",
        }
    }

    /// Number of classes of the given label; CIFAR-10 has no coarse labels, an error naming
    /// `data.label`.
    pub fn num_classes(self, label: CifarLabel) -> Result<usize, DataError> {
        match (self, label) {
            (CifarKind::Cifar10, CifarLabel::Fine) => Ok(10),
            (CifarKind::Cifar10, CifarLabel::Coarse) => Err(DataError::InvalidConfig {
                key: "data.label",
                problem: "\"coarse\" is for CIFAR-100's 20 superclasses; CIFAR-10 has only its \
                          10 classes (\"fine\", the default)"
                    .into(),
            }),
            (CifarKind::Cifar100, CifarLabel::Fine) => Ok(100),
            (CifarKind::Cifar100, CifarLabel::Coarse) => Ok(20),
        }
    }

    /// The training set's per-channel mean on the `[0, 1]` scale ([`CIFAR10_MEAN`],
    /// [`CIFAR100_MEAN`]), for [`crate::normalize_channels`].
    pub fn mean(self) -> [f64; 3] {
        match self {
            CifarKind::Cifar10 => CIFAR10_MEAN,
            CifarKind::Cifar100 => CIFAR100_MEAN,
        }
    }

    /// The training set's per-channel standard deviation on the `[0, 1]` scale
    /// ([`CIFAR10_STD`], [`CIFAR100_STD`]), for [`crate::normalize_channels`].
    pub fn std(self) -> [f64; 3] {
        match self {
            CifarKind::Cifar10 => CIFAR10_STD,
            CifarKind::Cifar100 => CIFAR100_STD,
        }
    }

    /// The record files of the training set, in order.
    fn train_files(self) -> &'static [&'static str] {
        match self {
            CifarKind::Cifar10 => &[
                "data_batch_1.bin",
                "data_batch_2.bin",
                "data_batch_3.bin",
                "data_batch_4.bin",
                "data_batch_5.bin",
            ],
            CifarKind::Cifar100 => &["train.bin"],
        }
    }

    /// The record file of the test set.
    fn test_file(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "test_batch.bin",
            CifarKind::Cifar100 => "test.bin",
        }
    }

    /// Every record file, as the archive must hold them.
    fn files(self) -> Vec<&'static str> {
        let mut files = self.train_files().to_vec();
        files.push(self.test_file());
        files
    }

    /// Label bytes before the pixels of each record.
    fn label_bytes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1,
            CifarKind::Cifar100 => 2,
        }
    }

    /// The official number of records per file.
    fn counts(self) -> Counts {
        match self {
            CifarKind::Cifar10 => Counts {
                train_per_file: 10_000,
                test: 10_000,
            },
            CifarKind::Cifar100 => Counts {
                train_per_file: 50_000,
                test: 10_000,
            },
        }
    }

    /// The other dataset.
    fn other(self) -> CifarKind {
        match self {
            CifarKind::Cifar10 => CifarKind::Cifar100,
            CifarKind::Cifar100 => CifarKind::Cifar10,
        }
    }
}

impl fmt::Display for CifarKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CifarKind::Cifar10 => "CIFAR-10",
            CifarKind::Cifar100 => "CIFAR-100",
        })
    }
}

/// Loads CIFAR-10 or CIFAR-100: train (50 000 samples) and test (10 000), no validation split.
///
/// Features are the 3 072 bytes of each image as the files hold them, channel by channel (image
/// shape `[3, 32, 32]`, [`Features::image_shape`]), scaled to `[0, 1]` (byte / 255) when
/// gathered, as torchvision's `ToTensor()`; targets are the classes of `label` (10, or for
/// CIFAR-100 100 fine or 20 coarse). Asking CIFAR-10 for coarse labels is a
/// [`DataError::InvalidConfig`] naming `data.label`. Files are looked for under `root` (see the
/// module doc), and downloaded there when missing if `download` is true, with a progress bar on
/// stderr if `progress` is true. Once `cancel` is set (Ctrl-C), loading stops at the next file
/// or chunk with [`DataError::Interrupted`], leaving no partial download or extraction behind.
///
/// Augmentation and per-channel normalisation are not applied here: see [`crate::crop_flip`] and
/// [`crate::normalize_channels`].
pub fn load_cifar(
    kind: CifarKind,
    label: CifarLabel,
    root: &Path,
    download: bool,
    progress: bool,
    cancel: &AtomicBool,
) -> Result<Splits, DataError> {
    let source = Source {
        counts: kind.counts(),
        md5: kind.md5(),
        download,
        progress,
    };
    load_with(kind, label, root, &source, cancel)
}

/// How [`load_with`] gets and checks the files.
#[derive(Debug)]
struct Source<'a> {
    /// Records each file must hold.
    counts: Counts,
    /// MD5 of the archive.
    md5: &'a str,
    /// Whether a missing archive may be downloaded.
    download: bool,
    /// Whether to show a download's progress bar.
    progress: bool,
}

/// [`load_cifar`] with the record counts and the archive's MD5 as parameters (tests use small
/// files and archives of their own).
fn load_with(
    kind: CifarKind,
    label: CifarLabel,
    root: &Path,
    source: &Source<'_>,
    cancel: &AtomicBool,
) -> Result<Splits, DataError> {
    let num_classes = kind.num_classes(label)?;
    let folder = obtain(kind, root, source, cancel)?;
    let read = |files: &[&str], per_file: usize| -> Result<Dataset, DataError> {
        let total = per_file * files.len();
        let mut records = Records {
            pixels: Vec::with_capacity(total * PIXELS),
            labels: Vec::with_capacity(total),
        };
        for file in files {
            read_records(
                kind,
                label,
                &folder.join(file),
                per_file,
                &mut records,
                cancel,
            )?;
        }
        let features = Features::from_u8(total, PIXELS, records.pixels, 1.0 / 255.0, 0.0)?
            .with_image_shape(CIFAR_IMAGE_SHAPE)?;
        Dataset::new(
            features,
            Targets::Classes {
                labels: records.labels,
                num_classes,
            },
        )
    };
    let train = read(kind.train_files(), source.counts.train_per_file)?;
    let test = read(&[kind.test_file()], source.counts.test)?;
    Ok(Splits {
        train,
        validation: None,
        test: Some(test),
    })
}

/// The extracted folder: found, or extracted from the archive, found or freshly downloaded.
fn obtain(
    kind: CifarKind,
    root: &Path,
    source: &Source<'_>,
    cancel: &AtomicBool,
) -> Result<PathBuf, DataError> {
    let dir = root.join(kind.dir_name());
    let folder = dir.join(kind.folder_name());
    if metadata(&folder)?.is_some_and(|m| m.is_dir()) {
        return Ok(folder);
    }
    let archive = dir.join(kind.archive_name());
    if !metadata(&archive)?.is_some_and(|m| m.is_file()) {
        if !source.download {
            return Err(not_found(kind, root, None, false));
        }
        let urls = [kind.url().to_owned()];
        match download_verified(
            &urls,
            &archive,
            Some(source.md5),
            DEFAULT_MAX_BYTES,
            source.progress,
            cancel,
        ) {
            Ok(()) => {}
            Err(e) if e.is_interrupted() => return Err(e),
            Err(e) => return Err(not_found(kind, root, Some(e.to_string()), true)),
        }
    }
    check_cancel(cancel, &archive)?;
    let file = File::open(&archive).map_err(|e| DataError::io(&archive, e))?;
    extract(kind, root, source.md5, BufReader::new(file), cancel)
}

/// Extracts the archive `<root>/<dir>/<archive>`, whose bytes `reader` yields, beside itself.
fn extract(
    kind: CifarKind,
    root: &Path,
    md5: &str,
    reader: impl Read,
    cancel: &AtomicBool,
) -> Result<PathBuf, DataError> {
    let dir = root.join(kind.dir_name());
    let archive = dir.join(kind.archive_name());
    let files = kind.files();
    let others = [
        (
            kind.other().folder_name(),
            format!(
                "the {} archive: it belongs in {}",
                kind.other(),
                root.join(kind.other().dir_name()).display()
            ),
        ),
        (
            "cifar-10-batches-py",
            format!(
                "CIFAR-10's python version; steplab reads the binary version, {}",
                CifarKind::Cifar10.url()
            ),
        ),
        (
            "cifar-100-python",
            format!(
                "CIFAR-100's python version; steplab reads the binary version, {}",
                CifarKind::Cifar100.url()
            ),
        ),
    ];
    let expected = Expected {
        dataset: &kind.to_string(),
        folder: kind.folder_name(),
        files: &files,
        folders: &[],
        md5,
        others: &others,
    };
    archive::extract_tar_gz(reader, &archive, &dir, &expected, cancel)
}

/// The error for a dataset that is neither extracted nor archived in its folder under `root`,
/// nor downloaded.
fn not_found(
    kind: CifarKind,
    root: &Path,
    download_error: Option<String>,
    download: bool,
) -> DataError {
    let dir = root.join(kind.dir_name());
    let archive = dir.join(kind.archive_name());
    let mut hint = if download {
        format!(
            "To get it, download {} and put it in {}",
            kind.url(),
            dir.display()
        )
    } else {
        format!(
            "Downloading was not allowed: allow it (data.download = true) to fetch {}, or put that file in {}",
            kind.url(),
            dir.display()
        )
    };
    hint.push_str(&format!(
        " (it is extracted there), or its extracted folder {}/",
        kind.folder_name()
    ));
    let other = kind.other();
    let misplaced = [other.archive_name(), other.folder_name()]
        .into_iter()
        .find(|name| dir.join(name).exists());
    if let Some(name) = misplaced {
        hint.push_str(&format!(
            ". {} is {other}'s: it belongs in {}",
            dir.join(name).display(),
            root.join(other.dir_name()).display()
        ));
    }
    DataError::NotFound {
        file: format!("{kind} {}", kind.archive_name()),
        looked: vec![dir.join(kind.folder_name()), archive],
        download_error,
        hint,
    }
}

/// Pixels and labels read so far, one record after the other.
struct Records {
    /// 3 072 bytes per record, in the file's order.
    pixels: Vec<u8>,
    /// The chosen label of each record.
    labels: Vec<u32>,
}

/// About how many bytes are read between two looks at the cancellation flag.
const CHUNK: usize = 1 << 20;

/// Appends the `count` records of `path` to `out`, checking the file's size and every label.
fn read_records(
    kind: CifarKind,
    label: CifarLabel,
    path: &Path,
    count: usize,
    out: &mut Records,
    cancel: &AtomicBool,
) -> Result<(), DataError> {
    check_cancel(cancel, path)?;
    let name = path.display().to_string();
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(incomplete(kind, path));
        }
        Err(e) => return Err(DataError::io(path, e)),
    };
    let label_bytes = kind.label_bytes();
    let record = label_bytes + PIXELS;
    let expected = (count * record) as u64;
    let found = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    if found < expected {
        return Err(DataError::Truncated {
            file: name,
            expected,
            found,
        });
    }
    if found > expected {
        return Err(DataError::TrailingBytes {
            file: name,
            expected,
            found,
        });
    }
    let mut reader = BufReader::new(file);
    let per_chunk = (CHUNK / record).max(1);
    let mut buf = vec![0u8; per_chunk * record];
    let mut done = 0;
    while done < count {
        check_cancel(cancel, path)?;
        let n = per_chunk.min(count - done);
        let chunk = &mut buf[..n * record];
        reader
            .read_exact(chunk)
            .map_err(|e| DataError::io(path, e))?;
        for (i, rec) in chunk.chunks_exact(record).enumerate() {
            let labels = check_labels(kind, &rec[..label_bytes]).map_err(|problem| {
                DataError::Malformed {
                    file: name.clone(),
                    problem: format!("record {}: {problem}", done + i),
                }
            })?;
            out.labels.push(match label {
                CifarLabel::Fine => labels.fine,
                CifarLabel::Coarse => labels.coarse.unwrap_or(labels.fine),
            });
            out.pixels.extend_from_slice(&rec[label_bytes..]);
        }
        done += n;
    }
    Ok(())
}

/// The labels of one record.
struct Labels {
    /// The class (CIFAR-10's only label).
    fine: u32,
    /// CIFAR-100's superclass.
    coarse: Option<u32>,
}

/// The record's label bytes, each checked to be in range.
fn check_labels(kind: CifarKind, bytes: &[u8]) -> Result<Labels, String> {
    let in_range = |what: &str, value: u8, classes: u8| {
        if value < classes {
            Ok(u32::from(value))
        } else {
            Err(format!("{what} {value} is not below {classes}"))
        }
    };
    match (kind, bytes) {
        (CifarKind::Cifar10, &[fine]) => Ok(Labels {
            fine: in_range("label", fine, 10)?,
            coarse: None,
        }),
        (CifarKind::Cifar100, &[coarse, fine]) => Ok(Labels {
            coarse: Some(in_range("coarse label", coarse, 20)?),
            fine: in_range("fine label", fine, 100)?,
        }),
        _ => Err(format!("{} label bytes", bytes.len())),
    }
}

/// A record file is missing from an extracted folder.
fn incomplete(kind: CifarKind, path: &Path) -> DataError {
    let folder = path.parent().unwrap_or(path);
    let archive = folder.parent().unwrap_or(folder).join(kind.archive_name());
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    DataError::NotFound {
        file: format!("{kind} {file}"),
        looked: vec![path.to_owned()],
        download_error: None,
        hint: format!(
            "{} is incomplete: delete it, and it is extracted again from {} (downloaded first if \
             allowed and missing)",
            folder.display(),
            archive.display()
        ),
    }
}

#[cfg(test)]
mod tests;
