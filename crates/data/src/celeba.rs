//! CelebA (Liu, Luo, Wang and Tang, 2015, "Deep Learning Face Attributes in the Wild"), the
//! aligned and cropped faces, as 64×64 colour images for an autoencoder (LossGrad's Table 6:
//! a Wasserstein autoencoder on CelebA 64×64).
//!
//! The folder `<root>/celeba/` is looked at for
//! 1. the images: the extracted folder `img_align_celeba/` of JPEGs (`000001.jpg` …
//!    `202599.jpg`, 178×218 each), else the official archive `img_align_celeba.zip`, read in
//!    place (nothing is extracted: each image is inflated from the zip when it is decoded);
//! 2. the split of each image, `list_eval_partition.txt`: one line `000001.jpg 0` per image, 0
//!    train (162 770 images), 1 validation (19 867), 2 test (19 962);
//! 3. when allowed, a missing file is downloaded there from Google Drive (the addresses and MD5s
//!    torchvision's `CelebA` uses). Google Drive often refuses scripted downloads (a large file
//!    is answered with a "can't scan for viruses" web page, and shared files run out of their
//!    download quota), so every failure says which files to fetch by hand, from where, and
//!    where to put them.
//!
//! Every image the partition file lists must be there and every image there must be listed; a
//! name twice, a malformed line or a value other than 0, 1 and 2 is an error naming the line.
//! The splits hold the images in file-name order. (The WAE authors' code does not read this
//! file: it shuffles all 202 599 names with Python's `random` seeded 123 and holds out the last
//! 20 000 as its test set. This loader keeps the official split; the trainer holds out what it
//! needs.)
//!
//! **Preprocessing** ([`CelebaPreprocess`], the `data.preprocess` setting): each JPEG is decoded
//! (grey ones, and any other colour type the decoder gives, converted to RGB), then
//! - `wae` (default), as the WAE authors' code (Tolstikhin et al. 2018, `datahandler.py`, crop
//!   style "closecrop", after DCGAN): the centre 140×140 square, from `((w − 140) / 2,
//!   (h − 140) / 2)` in integer division (for 178×218: left 19, top 39), resized to 64×64 with
//!   a Lanczos-3 filter (their PIL `ANTIALIAS` is Lanczos-3); an image smaller than 140×140 is
//!   a bad image;
//! - `resize`: the whole image resized to 64×64 with the same filter, as the LossGrad paper words
//!   it (this squeezes the 178×218 faces to a square).
//!
//! The result is stored as bytes, channel by channel (red, green, blue planes, each row by row),
//! read as `byte / 255`. PIL's Lanczos and the `image` crate's differ in their rounding and edge
//! handling, so pixels can differ from the authors' by a unit or so; the JPEG decoders
//! (libjpeg there, zune-jpeg here) can too.
//!
//! **Bad images** ([`BadImages`], `data.bad_images`): a JPEG that does not decode (or is too
//! small for the crop) is an error naming it, or, under `skip`, left out and listed in
//! [`Celeba::skipped`]. A zip entry that fails its CRC-32 or does not inflate is a corrupt
//! archive, an error either way.
//!
//! **Cache.** Decoding 202 599 JPEGs takes minutes, so the result (2.5 GB) is written to
//! `<root>/celeba/cache-<preprocess>-<key>.bin` (format and key in `celeba/cache.rs`) and later
//! loads read only that file. A cache that is cut short or corrupt is rebuilt, never used. Once a
//! new cache is written, caches of the same preprocessing for other files (another key) are
//! deleted: each is 2.5 GB. A run killed while writing one leaves its `<file>.tmp-<pid>` behind.
//!
//! Decoding runs on one worker thread per core ([`std::thread::available_parallelism`]); the
//! result does not depend on their number. Loading can be cancelled (Ctrl-C): the flag is looked
//! at between images, between chunks of a cache read and of a download, and loading then stops
//! with [`DataError::Interrupted`].

use std::fs::{self, File};
use std::io::BufReader;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use zip::ZipArchive;

use crate::archive::metadata;
use crate::error::check_cancel;
use crate::{DataError, Dataset, Features, Splits, Targets};

mod cache;
mod decode;
mod drive;
mod partition;

use crate::download::download_verified;
use decode::Images;
use drive::drive_urls;
use partition::{Listed, match_images, parse_partition};

/// `[channels, height, width]` of every CelebA image as loaded.
pub const CELEBA_IMAGE_SHAPE: [usize; 3] = [3, 64, 64];
/// Bytes of one loaded image: 3 × 64 × 64.
const PIXELS: usize = 3 * 64 * 64;
/// The folder under the data root where the files are looked for and downloaded to.
const DIR: &str = "celeba";
/// The extracted folder of images.
const FOLDER: &str = "img_align_celeba";
/// The official archive of the images.
const ZIP: &str = "img_align_celeba.zip";
/// The official split of the images.
const PARTITION: &str = "list_eval_partition.txt";
/// The dataset's page, where the files are to be fetched by hand.
const PAGE: &str = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html";
/// MD5 of `img_align_celeba.zip` as torchvision's `CelebA` lists it.
const ZIP_MD5: &str = "00d2c5bc6d35e252742224ab0c1e8fcb";
/// MD5 of `list_eval_partition.txt` as torchvision's `CelebA` lists it.
const PARTITION_MD5: &str = "d32c9cbf5e040fd4025c592c306e6668";
/// Google Drive ids of `img_align_celeba.zip`: the one torchvision uses, then a copy with the
/// same MD5 that other projects use (`1zms…`; Google gave the original folder's files new ids
/// in 2021, and old ids now often fail).
const ZIP_IDS: [&str; 2] = [
    "0B7EVK8r0v71pZjFTYXZWM3FlRnM",
    "1zmsC4yvw-e089uHXj5EdP0BSZ0AlDQRR",
];
/// Google Drive ids of `list_eval_partition.txt`, as for [`ZIP_IDS`].
const PARTITION_IDS: [&str; 2] = [
    "0B7EVK8r0v71pY0NSMzRuSXJEVkk",
    "1ih_VMokoI774ErNWrb26lDeWlanUBpnX",
];
/// Largest download accepted for the zip (it is 1.4 GB).
const MAX_ZIP_BYTES: u64 = 2 << 30;
/// Largest download accepted for the partition file (it is 2.8 MB).
const MAX_PARTITION_BYTES: u64 = 16 << 20;
/// Images a decoding worker takes from the list at a time.
const CHUNK: usize = 64;
/// The three splits, in the order of their partition values 0, 1 and 2.
const SPLITS: [&str; 3] = ["train", "validation", "test"];

/// How each image becomes 64×64 (the `data.preprocess` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CelebaPreprocess {
    /// The centre 140×140 square, resized to 64×64 with a Lanczos-3 filter, as the WAE authors'
    /// code does ("closecrop").
    #[default]
    Wae,
    /// The whole image resized to 64×64 with a Lanczos-3 filter (the aspect ratio is not kept).
    Resize,
}

impl CelebaPreprocess {
    /// The name of the mode in configs and cache file names: `wae` or `resize`.
    pub fn name(self) -> &'static str {
        match self {
            CelebaPreprocess::Wae => "wae",
            CelebaPreprocess::Resize => "resize",
        }
    }
}

/// What to do with an image that does not decode (the `data.bad_images` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadImages {
    /// Fail, naming the image.
    #[default]
    Error,
    /// Leave it out, and list it in [`Celeba::skipped`].
    Skip,
}

/// How CelebA is loaded (the `data.preprocess` and `data.bad_images` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CelebaSettings {
    /// How each image becomes 64×64 (default [`CelebaPreprocess::Wae`]).
    pub preprocess: CelebaPreprocess,
    /// What to do with an image that does not decode (default [`BadImages::Error`]).
    pub bad_images: BadImages,
}

/// CelebA as 64×64 colour images.
#[derive(Debug, Clone, PartialEq)]
pub struct Celeba {
    /// `train`, `validation` and `test` as `list_eval_partition.txt` splits the images (0, 1,
    /// 2), each in file-name order; `validation` or `test` is `None` only when the file assigns
    /// it no image (or all of its images were skipped). Features are bytes read as `byte / 255`,
    /// images of [`CELEBA_IMAGE_SHAPE`] ([`Features::image_shape`]); targets are
    /// [`Targets::Reconstruction`].
    pub splits: Splits,
    /// Whether the cache was used, written or could not be, for the trainer to report.
    pub cache: CelebaCache,
    /// The file names (`000123.jpg`) of the images that did not decode and were left out under
    /// [`BadImages::Skip`], in name order; empty otherwise.
    pub skipped: Vec<String>,
}

/// What became of the cache on a load of CelebA (diagnostics: the data is the same either way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CelebaCache {
    /// Loaded from this cache file; no image was decoded.
    Read(PathBuf),
    /// No cache for these settings and files: the images were decoded and this file written.
    Written(PathBuf),
    /// This cache file could not be used (cut short, over-long, for another format or key, or
    /// failing its checksum: `reason`); the images were decoded again and the file written anew.
    Rebuilt {
        /// The cache file.
        path: PathBuf,
        /// Why it could not be used.
        reason: String,
    },
    /// The images were decoded, but the cache could not be written (`reason`: a read-only
    /// folder, a full disk); the next load decodes them again.
    NotWritten {
        /// The cache file it would have been.
        path: PathBuf,
        /// Why it could not be written.
        reason: String,
    },
}

impl CelebaCache {
    /// The cache file this is about.
    pub fn path(&self) -> &Path {
        match self {
            CelebaCache::Read(path) | CelebaCache::Written(path) => path,
            CelebaCache::Rebuilt { path, .. } | CelebaCache::NotWritten { path, .. } => path,
        }
    }
}

/// Loads CelebA from `<root>/celeba/` (see the module doc), downloading missing files there from
/// Google Drive if `download` is true, with progress bars on stderr if `progress` is true.
///
/// Errors name the file at fault: [`DataError::NotFound`] (with the files to fetch by hand and
/// where to put them) when a file is missing and cannot be downloaded, [`DataError::Archive`]
/// for a zip that cannot be read (cut short, corrupt), [`DataError::Malformed`] for a bad line
/// of the partition file, images missing or unlisted, or an image that does not decode under
/// [`BadImages::Error`]. Once `cancel` is set (Ctrl-C), loading stops at the next image or chunk
/// with [`DataError::Interrupted`], leaving no partial download or cache behind.
pub fn load_celeba(
    root: &Path,
    settings: &CelebaSettings,
    download: bool,
    progress: bool,
    cancel: &AtomicBool,
) -> Result<Celeba, DataError> {
    let workers = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let source = Source {
        zip_urls: drive_urls(&ZIP_IDS),
        partition_urls: drive_urls(&PARTITION_IDS),
        zip_md5: ZIP_MD5,
        partition_md5: PARTITION_MD5,
        download,
        progress,
        workers,
        chunk: CHUNK,
    };
    load_with(root, settings, &source, cancel)
}

/// How [`load_with`] gets the files and decodes them.
#[derive(Debug)]
struct Source<'a> {
    /// Where the zip is downloaded from, in order.
    zip_urls: Vec<String>,
    /// Where the partition file is downloaded from, in order.
    partition_urls: Vec<String>,
    /// MD5 of the zip.
    zip_md5: &'a str,
    /// MD5 of the partition file.
    partition_md5: &'a str,
    /// Whether missing files may be downloaded.
    download: bool,
    /// Whether to show progress bars.
    progress: bool,
    /// Decoding threads.
    workers: usize,
    /// Images a worker takes at a time.
    chunk: usize,
}

/// [`load_celeba`] with the addresses, checksums and worker count as parameters (tests use
/// addresses that refuse connections, and several worker counts).
fn load_with(
    root: &Path,
    settings: &CelebaSettings,
    source: &Source<'_>,
    cancel: &AtomicBool,
) -> Result<Celeba, DataError> {
    let dir = root.join(DIR);
    let (images, partition_file) = obtain(root, source, cancel)?;
    check_cancel(cancel, &partition_file)?;
    let partition_bytes =
        fs::read(&partition_file).map_err(|e| DataError::io(&partition_file, e))?;
    let listed = parse_partition(&partition_bytes, &partition_file)?;

    // The key needs only a listing of the folder, or the zip's size and time: a cache hit
    // decodes nothing (and does not even read the zip's directory).
    let (identity, folder_names) = match &images {
        ImageSource::Folder(path) => {
            let listing = list_folder(path, cancel)?;
            (listing.identity(), listing.names)
        }
        ImageSource::Zip(path) => (zip_identity(path)?, Vec::new()),
    };
    let key = cache::key(settings.preprocess, &identity, &partition_bytes);
    let name = format!("cache-{}-{key}.bin", settings.preprocess.name());
    let path = dir.join(name);
    let stale = match cache::read(&path, &key, &listed, source.progress, cancel)? {
        cache::Lookup::Hit(loaded) => {
            return loaded.into_celeba(&images, settings, CelebaCache::Read(path));
        }
        cache::Lookup::Absent => None,
        cache::Lookup::Unusable(reason) => Some(reason),
    };

    let (reader, available) = match &images {
        ImageSource::Folder(path) => {
            let names = folder_names.into_iter().map(|n| (n, 0)).collect();
            (Images::Folder(path.clone()), names)
        }
        ImageSource::Zip(path) => open_zip(path)?,
    };
    let items = match_images(&listed, available, &partition_file, &images)?;
    let job = decode::Job {
        images: &reader,
        preprocess: settings.preprocess,
        bad_images: settings.bad_images,
        workers: source.workers,
        chunk: source.chunk,
        progress: source.progress,
    };
    let loaded = decode::decode_all(&job, &items, cancel)?;
    drop(items);
    let status = match (cache::write(&path, &key, &loaded), stale) {
        (Ok(()), stale) => {
            cache::remove_stale(&dir, settings.preprocess, &path);
            match stale {
                None => CelebaCache::Written(path),
                Some(reason) => CelebaCache::Rebuilt { path, reason },
            }
        }
        (Err(e), _) => CelebaCache::NotWritten {
            path,
            reason: e.to_string(),
        },
    };
    loaded.into_celeba(&images, settings, status)
}

/// Where the images are.
#[derive(Debug, Clone)]
enum ImageSource {
    /// The extracted folder `img_align_celeba/`.
    Folder(PathBuf),
    /// The archive `img_align_celeba.zip`.
    Zip(PathBuf),
}

impl ImageSource {
    /// The folder or the zip.
    fn path(&self) -> &Path {
        match self {
            ImageSource::Folder(path) | ImageSource::Zip(path) => path,
        }
    }

    /// How an image is named in messages: `<folder>/<name>`, or `<zip>!<entry>`.
    fn image(&self, entry: &str) -> String {
        match self {
            ImageSource::Folder(path) => path.join(entry).display().to_string(),
            ImageSource::Zip(path) => format!("{}!{entry}", path.display()),
        }
    }
}

/// The images and the partition file: found, or downloaded when allowed.
fn obtain(
    root: &Path,
    source: &Source<'_>,
    cancel: &AtomicBool,
) -> Result<(ImageSource, PathBuf), DataError> {
    let dir = root.join(DIR);
    let (folder, zip, partition) = (dir.join(FOLDER), dir.join(ZIP), dir.join(PARTITION));
    let found = if metadata(&folder)?.is_some_and(|m| m.is_dir()) {
        Some(ImageSource::Folder(folder))
    } else if metadata(&zip)?.is_some_and(|m| m.is_file()) {
        Some(ImageSource::Zip(zip.clone()))
    } else {
        None
    };
    let have_partition = metadata(&partition)?.is_some_and(|m| m.is_file());
    let mut missing = Vec::new();
    if found.is_none() {
        missing.push(ZIP);
    }
    if !have_partition {
        missing.push(PARTITION);
    }
    if !missing.is_empty() && !source.download {
        return Err(not_found(root, &missing, None, false));
    }
    // The small file first: if Google Drive refuses, it is quick to find out.
    let downloads = [
        (
            PARTITION,
            &partition,
            &source.partition_urls,
            source.partition_md5,
            MAX_PARTITION_BYTES,
        ),
        (ZIP, &zip, &source.zip_urls, source.zip_md5, MAX_ZIP_BYTES),
    ];
    for (file, dest, urls, md5, max_bytes) in downloads {
        if !missing.contains(&file) {
            continue;
        }
        match download_verified(urls, dest, Some(md5), max_bytes, source.progress, cancel) {
            Ok(()) => {}
            Err(e) if e.is_interrupted() => return Err(e),
            Err(e) => return Err(not_found(root, &missing, Some(e.to_string()), true)),
        }
    }
    Ok((found.unwrap_or(ImageSource::Zip(zip)), partition))
}

/// The error for CelebA files (`missing`: [`ZIP`], [`PARTITION`] or both) that are not in
/// `<root>/celeba/` and were not downloaded: it says which files to fetch by hand, from where,
/// and where to put them.
fn not_found(
    root: &Path,
    missing: &[&str],
    download_error: Option<String>,
    downloaded: bool,
) -> DataError {
    let dir = root.join(DIR);
    let mut looked = Vec::new();
    for file in missing {
        if *file == ZIP {
            looked.push(dir.join(FOLDER));
        }
        looked.push(dir.join(file));
    }
    let why = if downloaded {
        "Google Drive often refuses scripted downloads (it answers a large file with a \"can't \
         scan for viruses\" page, and shared files run out of their download quota)."
    } else {
        "Downloading was not allowed (data.download = false; when allowed, the files are tried \
         from Google Drive, which often refuses scripted downloads)."
    };
    let hint = format!(
        "{why} Fetch them by hand from the CelebA page {PAGE}: under \"Align&Cropped Images\", \
         its Google Drive (or Baidu) folder holds\n  Img/{ZIP} (1.4 GB): put it at {} (it is \
         read in place), or extract it there so that the images are {}/000001.jpg …\n  \
         Eval/{PARTITION}: put it at {}",
        dir.join(ZIP).display(),
        dir.join(FOLDER).display(),
        dir.join(PARTITION).display()
    );
    DataError::NotFound {
        file: format!("CelebA {}", missing.join(" and ")),
        looked,
        download_error,
        hint,
    }
}

/// Whether `name` is a plain file name (no folder, not hidden, no control characters) ending
/// in `.jpg`.
fn is_image_name(name: &str) -> bool {
    name.len() > 4
        && name.ends_with(".jpg")
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

/// The `*.jpg` files of the extracted folder, and what identifies them for the cache.
#[derive(Debug)]
struct FolderListing {
    /// Their names, sorted.
    names: Vec<String>,
    /// Their total size in bytes.
    bytes: u64,
    /// The latest modification time among them, in nanoseconds since 1970.
    newest: u128,
}

impl FolderListing {
    fn identity(&self) -> cache::Identity {
        cache::Identity::Folder {
            count: self.names.len(),
            bytes: self.bytes,
            newest: self.newest,
        }
    }
}

/// Lists the `*.jpg` files of `folder` (names and metadata only; nothing is read).
fn list_folder(folder: &Path, cancel: &AtomicBool) -> Result<FolderListing, DataError> {
    check_cancel(cancel, folder)?;
    let entries = fs::read_dir(folder).map_err(|e| DataError::io(folder, e))?;
    let mut listing = FolderListing {
        names: Vec::new(),
        bytes: 0,
        newest: 0,
    };
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(folder, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_image_name(&name) {
            continue;
        }
        let path = entry.path();
        let meta = fs::metadata(&path).map_err(|e| DataError::io(&path, e))?;
        if !meta.is_file() {
            continue;
        }
        listing.bytes += meta.len();
        listing.newest = listing.newest.max(nanos(&meta, &path)?);
        listing.names.push(name);
        if listing.names.len().is_multiple_of(10_000) {
            check_cancel(cancel, folder)?;
        }
    }
    if listing.names.is_empty() {
        return Err(DataError::Malformed {
            file: folder.display().to_string(),
            problem: format!(
                "holds no .jpg images; it should hold CelebA's 000001.jpg … 202599.jpg, as \
                 extracted from {ZIP} (or delete it, and put {ZIP} beside it)"
            ),
        });
    }
    listing.names.sort_unstable();
    Ok(listing)
}

/// The modification time of a file, in nanoseconds since 1970 (a time before counts as 1970:
/// it only has to be the same on the next load).
fn nanos(meta: &fs::Metadata, path: &Path) -> Result<u128, DataError> {
    let modified = meta.modified().map_err(|e| DataError::io(path, e))?;
    Ok(modified
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos())
}

/// The zip's size and modification time, for the cache key.
fn zip_identity(zip: &Path) -> Result<cache::Identity, DataError> {
    let meta = fs::metadata(zip).map_err(|e| DataError::io(zip, e))?;
    Ok(cache::Identity::Zip {
        size: meta.len(),
        modified: nanos(&meta, zip)?,
    })
}

/// Opens the zip, and lists its `.jpg` entries, in any folder, by file name (sorted), with the
/// index of each; folders and macOS's `__MACOSX/` entries are passed over.
fn open_zip(zip: &Path) -> Result<(Images, Vec<(String, usize)>), DataError> {
    let archive_error = |problem: String| DataError::Archive {
        file: zip.to_owned(),
        problem,
    };
    let file = File::open(zip).map_err(|e| DataError::io(zip, e))?;
    let archive = ZipArchive::new(BufReader::new(file)).map_err(|e| {
        archive_error(format!(
            "cannot read it as a zip (cut short or corrupt?): {e}; delete it and download it \
             again (CelebA page {PAGE}, Img/{ZIP})"
        ))
    })?;
    let mut names = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let entry = match archive.name_for_index(index) {
            Some(Ok(entry)) => entry,
            Some(Err(e)) => return Err(archive_error(format!("entry {index}: {e}"))),
            None => continue,
        };
        if entry.ends_with('/') || entry.starts_with("__MACOSX/") {
            continue;
        }
        let name = entry.rsplit('/').next().unwrap_or(&entry);
        if is_image_name(name) {
            names.push((name.to_owned(), index));
        }
    }
    if names.is_empty() {
        return Err(archive_error(format!(
            "holds no .jpg images: it is not CelebA's {ZIP}, or an incomplete one; delete it and \
             download it again"
        )));
    }
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|w| w[0].0 == w[1].0) {
        let entry = |i: usize| {
            archive
                .name_for_index(i)
                .and_then(Result::ok)
                .map(|n| n.into_owned())
                .unwrap_or_default()
        };
        return Err(archive_error(format!(
            "holds two images named {}: {} and {}",
            pair[0].0,
            entry(pair[0].1),
            entry(pair[1].1)
        )));
    }
    let images = Images::Zip {
        path: zip.to_owned(),
        archive,
    };
    Ok((images, names))
}

/// An image left out under [`BadImages::Skip`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Skipped {
    /// Its file name, `000123.jpg`.
    name: String,
    /// Its split: 0 train, 1 validation, 2 test.
    split: usize,
    /// Its file name in the folder, or its entry in the zip (`img_align_celeba/000123.jpg`).
    entry: String,
    /// Why it was left out.
    reason: String,
}

/// The decoded splits, before they are told what became of the cache.
#[derive(Debug, Clone, PartialEq)]
struct Loaded {
    /// The file names of the images of each split (train, validation, test), in name order.
    names: [Vec<String>; 3],
    /// [`PIXELS`] bytes per image of each split, in the order of `names`.
    pixels: [Vec<u8>; 3],
    /// The images left out, in name order.
    skipped: Vec<Skipped>,
}

impl Loaded {
    /// The splits as datasets, and the images left out; under [`BadImages::Error`], an image
    /// left out (by a load under `Skip` that wrote the cache) is the error it would have been.
    fn into_celeba(
        self,
        images: &ImageSource,
        settings: &CelebaSettings,
        cache: CelebaCache,
    ) -> Result<Celeba, DataError> {
        if settings.bad_images == BadImages::Error
            && let Some(bad) = self.skipped.first()
        {
            return Err(bad_image(images.image(&bad.entry), &bad.reason));
        }
        if self.names[0].is_empty() {
            return Err(DataError::Malformed {
                file: images.path().display().to_string(),
                problem: "none of its training images (partition 0) decodes".into(),
            });
        }
        let [train, validation, test] = self.pixels.map(|pixels| {
            let rows = pixels.len() / PIXELS;
            Features::from_u8(rows, PIXELS, pixels, 1.0 / 255.0, 0.0)
                .and_then(|f| f.with_image_shape(CELEBA_IMAGE_SHAPE))
                .and_then(|f| Dataset::new(f, Targets::Reconstruction))
        });
        let some = |set: Dataset| (!set.is_empty()).then_some(set);
        Ok(Celeba {
            splits: Splits {
                train: train?,
                validation: some(validation?),
                test: some(test?),
            },
            cache,
            skipped: self.skipped.into_iter().map(|s| s.name).collect(),
        })
    }
}

/// The error for an image that does not decode under [`BadImages::Error`].
/// `file` names it as [`ImageSource::image`] does.
fn bad_image(file: String, reason: &str) -> DataError {
    DataError::Malformed {
        file,
        problem: format!(
            "{reason}; with data.bad_images = \"skip\" such images are left out (and listed)"
        ),
    }
}

#[cfg(test)]
mod tests;
