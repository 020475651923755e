//! Decoding and preprocessing CelebA's JPEGs on worker threads, from the folder or the zip.
//!
//! The images are cut into chunks of consecutive images (in name order), and the chunks handed
//! out in order to `workers` threads as each asks for its next one. Every image's place in the
//! output is known before decoding (its split and its rank in that split), so each chunk
//! writes its own disjoint rows of the three split buffers, allocated once: the result is the
//! same for any number of workers, and nothing is copied afterwards but the rows after a
//! skipped image, moved up over it.
//!
//! For the zip, the central directory is read once (by the caller) and shared; each worker
//! reads entries through its own file handle, so they do not contend for one read position.
//!
//! A fatal error (an I/O error, a corrupt zip entry, a bad image under [`BadImages::Error`])
//! stops the load, and the error reported is that of the first image, in name order, that has
//! one: workers keep going only on images before it, so every earlier image has been decoded
//! and the answer does not depend on timing.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use image::imageops::{self, FilterType};
use image::{ImageFormat, RgbImage};
use indicatif::ProgressBar;
use zip::{ZipArchive, ZipReadOptions};

use super::{BadImages, CelebaPreprocess, Loaded, PIXELS, Skipped};
use crate::DataError;
use crate::progress;

/// Side of the centre square that [`CelebaPreprocess::Wae`] crops.
const WAE_CROP: u32 = 140;
/// Side of the images as loaded.
const SIDE: u32 = 64;
/// Largest image file read, against a corrupt zip entry claiming gigabytes (CelebA's are
/// about 10 KB).
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Where the images are read from.
pub(super) enum Images {
    /// The extracted folder: image `name` is the file `<folder>/<name>`.
    Folder(PathBuf),
    /// The zip, its central directory read: image `name` is the entry of index `entry`.
    Zip {
        /// The zip file.
        path: PathBuf,
        /// The zip, opened (its directory is shared; each worker reads through its own file).
        archive: ZipArchive<BufReader<File>>,
    },
}

impl Images {
    /// The folder or the zip.
    fn path(&self) -> &Path {
        match self {
            Images::Folder(path) | Images::Zip { path, .. } => path,
        }
    }

    /// The file name in the folder, or the zip entry's name, of `item`.
    fn entry(&self, item: &Item) -> String {
        match self {
            Images::Folder(_) => item.name.clone(),
            Images::Zip { archive, .. } => archive
                .name_for_index(item.entry)
                .and_then(Result::ok)
                .map_or_else(|| item.name.clone(), |n| n.into_owned()),
        }
    }

    /// How `item` is named in messages: `<folder>/<name>`, or `<zip>!<entry>`.
    fn show(&self, item: &Item) -> String {
        match self {
            Images::Folder(path) => path.join(&item.name).display().to_string(),
            Images::Zip { path, .. } => format!("{}!{}", path.display(), self.entry(item)),
        }
    }
}

/// One image to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Item {
    /// Its file name, `000001.jpg`.
    pub(super) name: String,
    /// Its split: 0 train, 1 validation, 2 test.
    pub(super) split: usize,
    /// Its index in the zip (unused for the folder).
    pub(super) entry: usize,
}

/// What to decode with.
pub(super) struct Job<'a> {
    /// Where the images are.
    pub(super) images: &'a Images,
    /// How each image becomes 64×64.
    pub(super) preprocess: CelebaPreprocess,
    /// Whether an image that does not decode is an error or left out.
    pub(super) bad_images: BadImages,
    /// Threads.
    pub(super) workers: usize,
    /// Images per chunk a thread takes.
    pub(super) chunk: usize,
    /// Whether to show a progress bar.
    pub(super) progress: bool,
}

/// Consecutive images and the rows of each split they fill.
struct Task<'a> {
    /// The index of the first image in the whole list.
    first: usize,
    /// The images.
    items: &'a [Item],
    /// For each split, [`PIXELS`] bytes for each of the chunk's images of that split.
    out: [&'a mut [u8]; 3],
}

/// Why an image gave no pixels.
enum Failure {
    /// It does not decode (or is too small): left out under [`BadImages::Skip`].
    Bad(String),
    /// The load stops with this error.
    Fatal(DataError),
}

/// Decodes and preprocesses `items` (in name order) into the three splits.
pub(super) fn decode_all(
    job: &Job<'_>,
    items: &[Item],
    cancel: &AtomicBool,
) -> Result<Loaded, DataError> {
    let mut counts = [0usize; 3];
    for item in items {
        counts[item.split] += 1;
    }
    let mut pixels = counts.map(|n| vec![0u8; n * PIXELS]);
    let chunk = job.chunk.max(1);
    let mut rest: [&mut [u8]; 3] = Default::default();
    for (slot, buffer) in rest.iter_mut().zip(pixels.iter_mut()) {
        *slot = buffer.as_mut_slice();
    }
    let mut tasks = Vec::with_capacity(items.len().div_ceil(chunk));
    for (c, chunk_items) in items.chunks(chunk).enumerate() {
        let mut out: [&mut [u8]; 3] = Default::default();
        for (split, slot) in out.iter_mut().enumerate() {
            let n = chunk_items.iter().filter(|i| i.split == split).count();
            let (head, tail) = std::mem::take(&mut rest[split]).split_at_mut(n * PIXELS);
            *slot = head;
            rest[split] = tail;
        }
        tasks.push(Task {
            first: c * chunk,
            items: chunk_items,
            out,
        });
    }
    let workers = job.workers.clamp(1, tasks.len().max(1));
    let queue = Mutex::new(tasks.into_iter());
    let first_fatal = AtomicUsize::new(usize::MAX);
    let message = format!("decoding CelebA ({})", job.preprocess.name());
    let bar = progress::bar(job.progress, items.len() as u64, progress::FILES, message);
    let failures: Vec<(usize, Failure)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| scope.spawn(|| work(job, &queue, &first_fatal, &bar, cancel)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    bar.finish_and_clear();
    crate::error::check_cancel(cancel, job.images.path())?;

    let mut bad = Vec::new();
    let mut fatal: Option<(usize, DataError)> = None;
    for (index, failure) in failures {
        match failure {
            Failure::Bad(reason) => bad.push((index, reason)),
            Failure::Fatal(e) => {
                if fatal.as_ref().is_none_or(|(first, _)| index < *first) {
                    fatal = Some((index, e));
                }
            }
        }
    }
    if let Some((_, e)) = fatal {
        return Err(e);
    }
    bad.sort_unstable_by_key(|&(index, _)| index);

    // Move the rows after each skipped image up over it, split by split, in name order.
    let mut left_out = vec![false; items.len()];
    for &(index, _) in &bad {
        left_out[index] = true;
    }
    let mut names: [Vec<String>; 3] = counts.map(Vec::with_capacity);
    let mut read = [0usize; 3];
    for (item, &out) in items.iter().zip(&left_out) {
        let s = item.split;
        let row = read[s];
        read[s] += 1;
        if out {
            continue;
        }
        let kept = names[s].len();
        if kept != row {
            pixels[s].copy_within(row * PIXELS..(row + 1) * PIXELS, kept * PIXELS);
        }
        names[s].push(item.name.clone());
    }
    for (buffer, kept) in pixels.iter_mut().zip(&names) {
        buffer.truncate(kept.len() * PIXELS);
    }
    let skipped = bad
        .into_iter()
        .map(|(index, reason)| Skipped {
            name: items[index].name.clone(),
            split: items[index].split,
            entry: job.images.entry(&items[index]),
            reason,
        })
        .collect();
    Ok(Loaded {
        names,
        pixels,
        skipped,
    })
}

/// One worker: takes chunks until there are none left, or none before the first fatal error.
/// Returns the failures it met, by image index.
fn work(
    job: &Job<'_>,
    queue: &Mutex<std::vec::IntoIter<Task<'_>>>,
    first_fatal: &AtomicUsize,
    bar: &ProgressBar,
    cancel: &AtomicBool,
) -> Vec<(usize, Failure)> {
    let mut failures = Vec::new();
    let mut reader = match Reader::open(job.images) {
        Ok(reader) => reader,
        Err(e) => {
            // No image read yet: the error belongs before every image.
            first_fatal.fetch_min(0, Ordering::Relaxed);
            failures.push((0, Failure::Fatal(e)));
            return failures;
        }
    };
    let mut bytes = Vec::new();
    loop {
        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).next();
        let Some(task) = next else {
            return failures;
        };
        let mut row = [0usize; 3];
        for (k, item) in task.items.iter().enumerate() {
            let index = task.first + k;
            if index > first_fatal.load(Ordering::Relaxed) || cancel.load(Ordering::Relaxed) {
                return failures;
            }
            let s = item.split;
            let out = &mut task.out[s][row[s] * PIXELS..(row[s] + 1) * PIXELS];
            row[s] += 1;
            let result = reader
                .read(job.images, item, &mut bytes)
                .map_err(Failure::Fatal)
                .and_then(|()| preprocess(&bytes, job.preprocess).map_err(Failure::Bad));
            match result {
                Ok(image) => write_chw(&image, out),
                Err(Failure::Bad(reason)) if job.bad_images == BadImages::Skip => {
                    failures.push((index, Failure::Bad(reason)));
                }
                Err(failure) => {
                    let failure = match failure {
                        Failure::Bad(reason) => {
                            Failure::Fatal(super::bad_image(job.images.show(item), &reason))
                        }
                        fatal => fatal,
                    };
                    first_fatal.fetch_min(index, Ordering::Relaxed);
                    failures.push((index, failure));
                    return failures;
                }
            }
            bar.inc(1);
        }
    }
}

/// A worker's way to the image files.
enum Reader {
    /// Files of the folder, opened one by one.
    Folder,
    /// The worker's own handle on the zip.
    Zip(BufReader<File>),
}

impl Reader {
    fn open(images: &Images) -> Result<Reader, DataError> {
        match images {
            Images::Folder(_) => Ok(Reader::Folder),
            Images::Zip { path, .. } => {
                let file = File::open(path).map_err(|e| DataError::io(path, e))?;
                Ok(Reader::Zip(BufReader::with_capacity(32 * 1024, file)))
            }
        }
    }

    /// Reads the file of `item` into `bytes` (emptied first).
    fn read(&mut self, images: &Images, item: &Item, bytes: &mut Vec<u8>) -> Result<(), DataError> {
        bytes.clear();
        match (self, images) {
            (Reader::Zip(file), Images::Zip { path, archive }) => {
                let corrupt = |e: &dyn std::fmt::Display| DataError::Archive {
                    file: path.clone(),
                    problem: format!(
                        "{}: cannot be read (corrupt?): {e}; delete the zip and download it again",
                        images.entry(item)
                    ),
                };
                let entry = archive.by_index_data(item.entry).map_err(|e| corrupt(&e))?;
                if entry.size() > MAX_FILE_BYTES {
                    return Err(corrupt(&format_args!(
                        "it says it holds {} bytes, too many for an image",
                        entry.size()
                    )));
                }
                let mut reader = entry
                    .with_reader(file, ZipReadOptions::new())
                    .map_err(|e| corrupt(&e))?;
                // Reading to the end is what checks the entry's CRC-32.
                reader.read_to_end(bytes).map_err(|e| corrupt(&e))?;
                Ok(())
            }
            (_, images) => {
                let path = images.path().join(&item.name);
                File::open(&path)
                    .and_then(|file| file.take(MAX_FILE_BYTES).read_to_end(bytes))
                    .map_err(|e| DataError::io(&path, e))?;
                Ok(())
            }
        }
    }
}

/// The 64×64 RGB image that `mode` makes of the JPEG `bytes`, or why there is none.
pub(super) fn preprocess(bytes: &[u8], mode: CelebaPreprocess) -> Result<RgbImage, String> {
    let decoded = image::load_from_memory_with_format(bytes, ImageFormat::Jpeg)
        .map_err(|e| format!("does not decode as a JPEG: {e}"))?;
    // Grey JPEGs (and any other colour type the decoder gives) become RGB.
    let rgb = decoded.into_rgb8();
    let (w, h) = rgb.dimensions();
    Ok(match mode {
        CelebaPreprocess::Wae => {
            if w < WAE_CROP || h < WAE_CROP {
                return Err(format!(
                    "is {w}×{h}, smaller than the {WAE_CROP}×{WAE_CROP} centre square that \
                     data.preprocess = \"wae\" crops"
                ));
            }
            let square = imageops::crop_imm(
                &rgb,
                (w - WAE_CROP) / 2,
                (h - WAE_CROP) / 2,
                WAE_CROP,
                WAE_CROP,
            );
            imageops::resize(&*square, SIDE, SIDE, FilterType::Lanczos3)
        }
        CelebaPreprocess::Resize => imageops::resize(&rgb, SIDE, SIDE, FilterType::Lanczos3),
    })
}

/// Writes a 64×64 RGB image as its red, green and blue planes, each row by row (CHW).
pub(super) fn write_chw(image: &RgbImage, out: &mut [u8]) {
    let plane = (SIDE * SIDE) as usize;
    for (i, pixel) in image.as_raw().chunks_exact(3).enumerate() {
        out[i] = pixel[0];
        out[plane + i] = pixel[1];
        out[2 * plane + i] = pixel[2];
    }
}
