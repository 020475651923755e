//! MNIST and Fashion-MNIST: found on disk, or downloaded and verified, then checked to the byte.
//!
//! Each of the four files is looked for, in order, at
//! 1. `<root>/<mnist|fashion_mnist>/<file>.gz`, then the same without `.gz`;
//! 2. for Fashion-MNIST, `/usr/share/datasets/fashion-mnist/` (Debian's `dataset-fashion-mnist`);
//! 3. otherwise, when allowed, it is downloaded to `<root>/<mnist|fashion_mnist>/<file>.gz`.
//!
//! A download must match the MD5 the dataset's authors publish for the `.gz`. Files found on disk
//! are often re-compressed (Debian's package is), which changes the `.gz` but not its contents, so
//! for them the SHA-256 of the decompressed payload is checked where we know it. Either way the IDX
//! structure, the counts (60 000 train, 10 000 test, 28×28) and the labels (< 10) are checked.
//!
//! Loading can be cancelled (Ctrl-C): the flag is looked at between files and between chunks of
//! every download, read, decompression and checksum, and loading then stops with
//! [`DataError::Interrupted`].

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::download::{DEFAULT_MAX_BYTES, download_verified, hex};
use crate::error::check_cancel;
use crate::idx::{self, Images};
use crate::{DataError, Dataset, Features, Splits, Targets};

/// Which of the two 28×28 grey-scale, 10-class datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MnistKind {
    /// Handwritten digits (LeCun, Cortes and Burges).
    Mnist,
    /// Zalando's clothing images (Xiao, Rasul and Vollgraf, 2017).
    FashionMnist,
}

impl MnistKind {
    /// The directory under the data root where its files are looked for and downloaded to:
    /// `mnist` or `fashion_mnist` (as the dataset is named in the config).
    pub fn dir_name(self) -> &'static str {
        match self {
            MnistKind::Mnist => "mnist",
            MnistKind::FashionMnist => "fashion_mnist",
        }
    }

    /// Directories outside the data root where a system package installs the files.
    fn system_dirs(self) -> &'static [&'static str] {
        match self {
            MnistKind::Mnist => &[],
            MnistKind::FashionMnist => &["/usr/share/datasets/fashion-mnist"],
        }
    }

    /// Base URLs to download from, in order of preference.
    fn mirrors(self) -> &'static [&'static str] {
        match self {
            // The mirror torchvision uses; yann.lecun.com now refuses most clients.
            MnistKind::Mnist => &[
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "http://yann.lecun.com/exdb/mnist/",
            ],
            MnistKind::FashionMnist => {
                &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
            }
        }
    }

    /// The four files: train images, train labels, test images, test labels.
    fn files(self) -> &'static [FileSpec; 4] {
        match self {
            MnistKind::Mnist => &MNIST_FILES,
            MnistKind::FashionMnist => &FASHION_FILES,
        }
    }
}

impl fmt::Display for MnistKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MnistKind::Mnist => "MNIST",
            MnistKind::FashionMnist => "Fashion-MNIST",
        })
    }
}

/// One file of a dataset and what it must hash to.
#[derive(Debug)]
struct FileSpec {
    /// File name, with `.gz`.
    name: &'static str,
    /// MD5 of the official `.gz`, as published by the dataset's authors.
    md5_gz: &'static str,
    /// SHA-256 of the decompressed IDX file, where known (computed from the official files).
    sha256_raw: Option<&'static str>,
}

const MNIST_FILES: [FileSpec; 4] = [
    FileSpec {
        name: "train-images-idx3-ubyte.gz",
        md5_gz: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        // Not known: no decompressed copy was at hand to hash. Structural checks only.
        sha256_raw: None,
    },
    FileSpec {
        name: "train-labels-idx1-ubyte.gz",
        md5_gz: "d53e105ee54ea40749a09fcbcd1e9432",
        sha256_raw: Some("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    },
    FileSpec {
        name: "t10k-images-idx3-ubyte.gz",
        md5_gz: "9fb629c4189551a2d022fa330f9573f3",
        sha256_raw: Some("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    },
    FileSpec {
        name: "t10k-labels-idx1-ubyte.gz",
        md5_gz: "ec29112dd5afa0611ce80d1b7f02629c",
        sha256_raw: Some("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    },
];

const FASHION_FILES: [FileSpec; 4] = [
    FileSpec {
        name: "train-images-idx3-ubyte.gz",
        md5_gz: "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        sha256_raw: Some("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    },
    FileSpec {
        name: "train-labels-idx1-ubyte.gz",
        md5_gz: "25c81989df183df01b3e8a0aad5dffbe",
        sha256_raw: Some("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    },
    FileSpec {
        name: "t10k-images-idx3-ubyte.gz",
        md5_gz: "bef4ecab320f06d8554ea6380940ec79",
        sha256_raw: Some("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    },
    FileSpec {
        name: "t10k-labels-idx1-ubyte.gz",
        md5_gz: "bb300cfdad3c16e7a12a480ee83cd310",
        sha256_raw: Some("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    },
];

/// Number of classes of both datasets.
const NUM_CLASSES: usize = 10;
/// Side of the square images of both datasets.
const SIDE: usize = 28;

/// Loads MNIST or Fashion-MNIST: train (60 000 samples) and test (10 000), no validation split.
///
/// Features are the 784 pixels scaled to `[0, 1]` (byte / 255), of image shape `[1, 28, 28]`
/// ([`crate::Features::image_shape`]), targets the 10 classes; use
/// [`Splits::into_reconstruction`] for an autoencoder. Files are looked for under `root` (see the
/// module doc), and downloaded there when missing if `download` is true, with a progress bar on
/// stderr if `progress` is true. Once `cancel` is set (Ctrl-C), loading stops at the next file
/// or chunk with [`DataError::Interrupted`], leaving no partial download behind.
pub fn load_mnist(
    kind: MnistKind,
    root: &Path,
    download: bool,
    progress: bool,
    cancel: &AtomicBool,
) -> Result<Splits, DataError> {
    let [train_images, train_labels, test_images, test_labels] = kind.files();
    let train = load_split(
        kind,
        root,
        [train_images, train_labels],
        60_000,
        download,
        progress,
        cancel,
    )?;
    let test = load_split(
        kind,
        root,
        [test_images, test_labels],
        10_000,
        download,
        progress,
        cancel,
    )?;
    Ok(Splits {
        train,
        validation: None,
        test: Some(test),
    })
}

/// One split from its images and labels files, which must hold `count` samples.
fn load_split(
    kind: MnistKind,
    root: &Path,
    [images, labels]: [&FileSpec; 2],
    count: usize,
    download: bool,
    progress: bool,
    cancel: &AtomicBool,
) -> Result<Dataset, DataError> {
    let images_path = obtain(kind, root, images, download, progress, cancel)?;
    let labels_path = obtain(kind, root, labels, download, progress, cancel)?;
    let images = read_checked(&images_path, images, cancel)?;
    let images = idx::parse_images(images.as_slice(), &name(&images_path))?;
    let labels = read_checked(&labels_path, labels, cancel)?;
    let labels = idx::parse_labels(labels.as_slice(), &name(&labels_path))?;
    check_cancel(cancel, &images_path)?;
    to_dataset(images, labels, count, &images_path, &labels_path)
}

/// The path of the file, found on disk or freshly downloaded.
fn obtain(
    kind: MnistKind,
    root: &Path,
    spec: &FileSpec,
    download: bool,
    progress: bool,
    cancel: &AtomicBool,
) -> Result<PathBuf, DataError> {
    let looked = candidates(kind, root, spec.name);
    for path in &looked {
        match fs::metadata(path) {
            Ok(meta) if meta.is_file() => return Ok(path.clone()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) => {}
            Err(e) => return Err(DataError::io(path, e)),
        }
    }
    let dest = root.join(kind.dir_name()).join(spec.name);
    let urls: Vec<String> = kind
        .mirrors()
        .iter()
        .map(|base| format!("{base}{}", spec.name))
        .collect();
    let download_error = if download {
        match download_verified(
            &urls,
            &dest,
            Some(spec.md5_gz),
            DEFAULT_MAX_BYTES,
            progress,
            cancel,
        ) {
            Ok(()) => return Ok(dest),
            Err(e) if e.is_interrupted() => return Err(e),
            Err(e) => Some(e.to_string()),
        }
    } else {
        None
    };
    let mut hint = if download {
        format!(
            "To get it, download {} and put it at {}",
            urls[0],
            dest.display()
        )
    } else {
        format!(
            "Downloading was not allowed: allow it (data.download = true) to fetch {}, or put that file at {}",
            urls[0],
            dest.display()
        )
    };
    if kind == MnistKind::FashionMnist {
        hint.push_str(", or install Debian's package: apt-get install dataset-fashion-mnist");
    }
    Err(DataError::NotFound {
        file: format!("{kind} {}", spec.name),
        looked,
        download_error,
        hint,
    })
}

/// Every place a file is looked for, in order.
fn candidates(kind: MnistKind, root: &Path, file: &str) -> Vec<PathBuf> {
    let raw = file.strip_suffix(".gz").unwrap_or(file);
    let dirs = std::iter::once(root.join(kind.dir_name()))
        .chain(kind.system_dirs().iter().map(PathBuf::from));
    dirs.flat_map(|dir| [dir.join(file), dir.join(raw)])
        .collect()
}

/// How many bytes are hashed between two looks at the cancellation flag.
const HASH_CHUNK: usize = 1 << 20;

/// The decompressed file, its SHA-256 checked where known.
fn read_checked(path: &Path, spec: &FileSpec, cancel: &AtomicBool) -> Result<Vec<u8>, DataError> {
    let bytes = idx::read_gz_file(path, cancel)?;
    if let Some(expected) = spec.sha256_raw {
        let mut hasher = Sha256::new();
        for chunk in bytes.chunks(HASH_CHUNK) {
            check_cancel(cancel, path)?;
            hasher.update(chunk);
        }
        let got = hex(&hasher.finalize());
        if got != expected {
            return Err(DataError::ChecksumMismatch {
                file: name(path),
                algorithm: "SHA-256 of the decompressed file",
                expected: expected.to_owned(),
                got,
            });
        }
    }
    Ok(bytes)
}

/// One split, after checking that images and labels agree with each other and the dataset.
fn to_dataset(
    images: Images,
    labels: Vec<u8>,
    count: usize,
    images_path: &Path,
    labels_path: &Path,
) -> Result<Dataset, DataError> {
    let (n, h, w, pixels) = images;
    let malformed = |path: &Path, problem: String| DataError::Malformed {
        file: name(path),
        problem,
    };
    if n != count {
        return Err(malformed(
            images_path,
            format!("{n} images, expected {count}"),
        ));
    }
    if (h, w) != (SIDE, SIDE) {
        return Err(malformed(
            images_path,
            format!("images of {h}×{w}, expected {SIDE}×{SIDE}"),
        ));
    }
    if labels.len() != count {
        return Err(malformed(
            labels_path,
            format!("{} labels, expected {count}", labels.len()),
        ));
    }
    if let Some(i) = labels.iter().position(|&l| usize::from(l) >= NUM_CLASSES) {
        let problem = format!(
            "label {} of sample {i} is not below {NUM_CLASSES}",
            labels[i]
        );
        return Err(malformed(labels_path, problem));
    }
    let features =
        Features::from_u8(n, h * w, pixels, 1.0 / 255.0, 0.0)?.with_image_shape([1, h, w])?;
    let labels = labels.into_iter().map(u32::from).collect();
    Dataset::new(
        features,
        Targets::Classes {
            labels,
            num_classes: NUM_CLASSES,
        },
    )
}

fn name(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idx::testing::{gzip, images_bytes, labels_bytes};

    /// A cancellation flag that is never set.
    static GO: AtomicBool = AtomicBool::new(false);

    /// Writes the four MNIST files, real-format gzipped IDX with `n` samples each, under
    /// `<root>/mnist`.
    fn write_mnist(root: &Path, n: u32) {
        let dir = root.join("mnist");
        fs::create_dir_all(&dir).unwrap();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        for (i, spec) in MNIST_FILES.iter().enumerate() {
            let bytes = if i % 2 == 0 {
                images_bytes(n, 28, 28)
            } else {
                labels_bytes(&labels)
            };
            fs::write(dir.join(spec.name), gzip(&bytes)).unwrap();
        }
    }

    #[test]
    fn a_set_flag_stops_loading_before_the_first_file_is_read() {
        let root = tempfile::tempdir().unwrap();
        write_mnist(root.path(), 100);
        // The files are there and well-formed: without the flag, loading reads the train images
        // and gets as far as the train labels' checksum (these are not MNIST's labels).
        let err = load_mnist(MnistKind::Mnist, root.path(), false, false, &GO).unwrap_err();
        assert!(matches!(err, DataError::ChecksumMismatch { .. }), "{err}");
        assert!(err.to_string().contains("train-labels"), "{err}");

        let first = root.path().join("mnist/train-images-idx3-ubyte.gz");
        let err = load_mnist(
            MnistKind::Mnist,
            root.path(),
            false,
            false,
            &AtomicBool::new(true),
        )
        .unwrap_err();
        let DataError::Interrupted { file, url: None } = &err else {
            panic!("expected Interrupted while loading, got {err}")
        };
        assert_eq!(file, &first);
        assert_eq!(
            err.to_string(),
            format!("interrupted while loading {}", first.display())
        );
    }

    #[test]
    fn a_set_flag_stops_a_download_before_it_connects_and_is_not_reported_as_not_found() {
        let root = tempfile::tempdir().unwrap();
        let err = load_mnist(
            MnistKind::Mnist,
            root.path(),
            true,
            false,
            &AtomicBool::new(true),
        )
        .unwrap_err();
        let DataError::Interrupted {
            file,
            url: Some(url),
        } = &err
        else {
            panic!("expected Interrupted while downloading, got {err}")
        };
        let dest = root.path().join("mnist/train-images-idx3-ubyte.gz");
        assert_eq!(file, &dest);
        assert_eq!(
            url,
            "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"
        );
        assert!(!dest.exists());
        assert!(
            !root
                .path()
                .join("mnist/train-images-idx3-ubyte.gz.part")
                .exists()
        );
    }

    /// `<repo>/../shared/datasets/mnist`, where the project keeps a few MNIST files.
    fn shared_mnist() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/mnist")
    }

    fn class_counts(labels: &[u32]) -> [usize; 10] {
        let mut counts = [0; 10];
        for &l in labels {
            counts[l as usize] += 1;
        }
        counts
    }

    #[test]
    fn a_missing_file_without_download_names_every_place_looked() {
        let root = tempfile::tempdir().unwrap();
        let err = load_mnist(MnistKind::Mnist, root.path(), false, false, &GO).unwrap_err();
        let DataError::NotFound {
            looked,
            download_error,
            ..
        } = &err
        else {
            panic!("expected NotFound, got {err}")
        };
        let dir = root.path().join("mnist");
        assert_eq!(
            looked,
            &[
                dir.join("train-images-idx3-ubyte.gz"),
                dir.join("train-images-idx3-ubyte")
            ]
        );
        assert!(download_error.is_none());
        let msg = err.to_string();
        assert!(
            msg.contains(&dir.join("train-images-idx3-ubyte").display().to_string()),
            "{msg}"
        );
        assert!(
            msg.contains("https://ossci-datasets.s3.amazonaws.com/mnist/"),
            "{msg}"
        );
    }

    #[test]
    fn fashion_mnist_is_also_looked_for_where_debian_installs_it() {
        let looked = candidates(
            MnistKind::FashionMnist,
            Path::new("data"),
            "t10k-labels-idx1-ubyte.gz",
        );
        assert_eq!(
            looked,
            [
                "data/fashion_mnist/t10k-labels-idx1-ubyte.gz",
                "data/fashion_mnist/t10k-labels-idx1-ubyte",
                "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz",
                "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte",
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn a_local_file_with_the_wrong_checksum_is_an_error_saying_to_delete_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t10k-labels-idx1-ubyte.gz");
        fs::write(&path, gzip(&labels_bytes(&[1; 10_000]))).unwrap();
        let err = read_checked(&path, &MNIST_FILES[3], &GO).unwrap_err();
        assert!(matches!(err, DataError::ChecksumMismatch { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.starts_with(&path.display().to_string()), "{msg}");
        assert!(msg.contains("checksum mismatch (expected"), "{msg}");
        assert!(msg.ends_with("delete it to re-download"), "{msg}");
    }

    #[test]
    fn a_file_without_a_known_checksum_gets_structural_checks_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train-images-idx3-ubyte.gz");
        fs::write(&path, gzip(&images_bytes(2, 28, 28))).unwrap();
        let bytes = read_checked(&path, &MNIST_FILES[0], &GO).unwrap();
        assert_eq!(idx::parse_images(bytes.as_slice(), "x").unwrap().0, 2);
    }

    #[test]
    fn images_and_labels_must_agree_in_count_shape_and_range() {
        let (i, l) = (Path::new("imgs"), Path::new("labs"));
        let images =
            |n, side| idx::parse_images(images_bytes(n, side, side).as_slice(), "imgs").unwrap();
        let ok = to_dataset(images(3, 28), vec![0, 9, 4], 3, i, l).unwrap();
        assert_eq!((ok.len(), ok.features.cols()), (3, 784));
        assert_eq!(ok.image_shape(), Some([1, 28, 28]));
        assert_eq!(ok.features.gather_f32(&[0])[1], 1.0 / 255.0);

        let err = to_dataset(images(3, 28), vec![0, 9, 4], 4, i, l).unwrap_err();
        assert_eq!(err.to_string(), "imgs: 3 images, expected 4");
        let err = to_dataset(images(3, 27), vec![0, 9, 4], 3, i, l).unwrap_err();
        assert!(
            err.to_string().starts_with("imgs: images of 27×27"),
            "{err}"
        );
        let err = to_dataset(images(3, 28), vec![0, 9], 3, i, l).unwrap_err();
        assert_eq!(err.to_string(), "labs: 2 labels, expected 3");
        let err = to_dataset(images(3, 28), vec![0, 10, 4], 3, i, l).unwrap_err();
        assert_eq!(
            err.to_string(),
            "labs: label 10 of sample 1 is not below 10"
        );
    }

    #[test]
    fn real_mnist_test_files_parse_with_matching_checksums() {
        let dir = shared_mnist();
        let (images_path, labels_path) = (
            dir.join("t10k-images-idx3-ubyte.gz"),
            dir.join("t10k-labels-idx1-ubyte.gz"),
        );
        if !images_path.exists() || !labels_path.exists() {
            eprintln!("skipped: no MNIST test files in {}", dir.display());
            return;
        }
        let images = read_checked(&images_path, &MNIST_FILES[2], &GO).unwrap();
        let labels = read_checked(&labels_path, &MNIST_FILES[3], &GO).unwrap();
        let images = idx::parse_images(images.as_slice(), "t10k-images").unwrap();
        assert_eq!((images.0, images.1, images.2), (10_000, 28, 28));
        let labels = idx::parse_labels(labels.as_slice(), "t10k-labels").unwrap();
        let test = to_dataset(images, labels, 10_000, &images_path, &labels_path).unwrap();
        assert_eq!((test.len(), test.features.cols()), (10_000, 784));
        let Targets::Classes {
            labels,
            num_classes: 10,
        } = &test.targets
        else {
            panic!()
        };
        // MNIST's test set has 980 zeros and 1135 ones.
        assert_eq!(class_counts(labels)[..2], [980, 1135]);

        let train_labels = dir.join("train-labels-idx1-ubyte.gz");
        if train_labels.exists() {
            let bytes = read_checked(&train_labels, &MNIST_FILES[1], &GO).unwrap();
            assert_eq!(
                idx::parse_labels(bytes.as_slice(), "train-labels")
                    .unwrap()
                    .len(),
                60_000
            );
        }
    }

    #[test]
    fn debian_fashion_mnist_loads_in_full() {
        let system = Path::new("/usr/share/datasets/fashion-mnist");
        if !FASHION_FILES.iter().all(|f| system.join(f.name).exists()) {
            eprintln!(
                "skipped: Fashion-MNIST is not installed in {}",
                system.display()
            );
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let splits = load_mnist(MnistKind::FashionMnist, root.path(), false, false, &GO).unwrap();
        let test = splits.test.as_ref().unwrap();
        assert_eq!((splits.train.len(), test.len()), (60_000, 10_000));
        assert_eq!(splits.train.features.cols(), 784);
        assert!(splits.validation.is_none());
        // Fashion-MNIST is balanced: 6 000 train and 1 000 test samples per class.
        let Targets::Classes { labels, .. } = &splits.train.targets else {
            panic!()
        };
        assert_eq!(class_counts(labels), [6_000; 10]);
        let Targets::Classes { labels, .. } = &test.targets else {
            panic!()
        };
        assert_eq!(class_counts(labels), [1_000; 10]);
        let pixels = splits.train.features.gather_f64(&[0, 59_999]);
        assert!(pixels.iter().all(|p| (0.0..=1.0).contains(p)));
        assert!(pixels.iter().any(|&p| p > 0.5));

        let ae = splits.into_reconstruction();
        assert_eq!(ae.train.targets, Targets::Reconstruction);
        assert_eq!(ae.test.unwrap().targets, Targets::Reconstruction);
    }
}
