//! Tests of CelebA loading, on JPEGs, zips and partition files in the real formats, written here.

use std::io::{Cursor, Write};
use std::time::{Duration, SystemTime};

use image::codecs::jpeg::JpegEncoder;
use image::imageops;
use image::{GrayImage, Luma, Rgb, RgbImage};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::*;
use crate::archive::testing::listing;
use crate::download::is_web_page;

/// A cancellation flag that is never set.
static GO: AtomicBool = AtomicBool::new(false);

/// The test images and their partition: train 1, 3, 5; validation 2, 6; test 4.
const IMAGES: [(&str, usize); 6] = [
    ("000001.jpg", 0),
    ("000002.jpg", 1),
    ("000003.jpg", 0),
    ("000004.jpg", 2),
    ("000005.jpg", 0),
    ("000006.jpg", 1),
];

/// A 178×218 "face" with smooth gradients, different for each `i`: red grows to the right,
/// green downwards, blue along the diagonal, so that a wrong crop offset or channel order shows.
fn face(i: u32, w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 200 / (w - 1) + i * 9) as u8,
            (y * 200 / (h - 1) + i * 7) as u8,
            ((x + y) * 100 / (w + h) + 150 - i * 20) as u8,
        ])
    })
}

/// `image` as a JPEG of quality 92.
fn jpeg(image: &RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, 92)
        .encode_image(image)
        .unwrap();
    bytes
}

/// The JPEG of each test image, by name.
fn jpegs() -> Vec<(String, Vec<u8>)> {
    (1..=6)
        .map(|i| (format!("{i:06}.jpg"), jpeg(&face(i, 178, 218))))
        .collect()
}

/// The partition file of `images`, its lines in another order than the names', one ending in
/// CRLF, and a blank line at the end.
fn partition_text(images: &[(&str, usize)]) -> String {
    let mut lines: Vec<String> = images.iter().map(|(n, s)| format!("{n} {s}")).collect();
    lines.reverse();
    lines.swap(0, 1);
    lines[0].push('\r');
    lines.join("\n") + "\n\n"
}

/// `<root>/celeba/`, created.
fn dir(root: &Path) -> PathBuf {
    let dir = root.join(DIR);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes the images as `<root>/celeba/img_align_celeba/*.jpg`, and the partition file.
fn write_folder(root: &Path, images: &[(String, Vec<u8>)]) {
    let folder = dir(root).join(FOLDER);
    fs::create_dir_all(&folder).unwrap();
    for (name, bytes) in images {
        fs::write(folder.join(name), bytes).unwrap();
    }
    fs::write(folder.join("notes.txt"), b"not an image").unwrap();
    write_partition(root, &partition_text(&IMAGES));
}

/// Writes `text` as the partition file.
fn write_partition(root: &Path, text: &str) {
    fs::write(dir(root).join(PARTITION), text).unwrap();
}

/// A zip laid out as the official one (a folder entry, then `img_align_celeba/<name>`), with a
/// macOS resource-fork entry that must be passed over; entries deflated, or stored.
fn zip_bytes(images: &[(String, Vec<u8>)], method: CompressionMethod) -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(method);
    writer.add_directory("img_align_celeba/", options).unwrap();
    for (name, bytes) in images {
        writer
            .start_file(format!("img_align_celeba/{name}"), options)
            .unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer
        .start_file("__MACOSX/img_align_celeba/._000001.jpg", options)
        .unwrap();
    writer.write_all(b"\0\x05\x16\x07 resource fork").unwrap();
    writer.finish().unwrap().into_inner()
}

/// Writes the zip of `images` and the partition file; returns the zip's path.
fn write_zip(root: &Path, images: &[(String, Vec<u8>)], method: CompressionMethod) -> PathBuf {
    let zip = dir(root).join(ZIP);
    fs::write(&zip, zip_bytes(images, method)).unwrap();
    write_partition(root, &partition_text(&IMAGES));
    zip
}

/// The way tests load: no download (addresses that refuse connections, were one tried), no
/// progress bars, `workers` threads taking `chunk` images at a time.
fn source(download: bool, workers: usize, chunk: usize) -> Source<'static> {
    Source {
        zip_urls: vec!["http://127.0.0.1:9/img_align_celeba.zip".into()],
        partition_urls: vec!["http://127.0.0.1:9/list_eval_partition.txt".into()],
        zip_md5: ZIP_MD5,
        partition_md5: PARTITION_MD5,
        download,
        progress: false,
        workers,
        chunk,
    }
}

fn settings(preprocess: CelebaPreprocess, bad_images: BadImages) -> CelebaSettings {
    CelebaSettings {
        preprocess,
        bad_images,
    }
}

/// Loads with three workers taking two images at a time.
fn try_load(root: &Path, s: CelebaSettings) -> Result<Celeba, DataError> {
    load_with(root, &s, &source(false, 3, 2), &GO)
}

fn load(root: &Path, s: CelebaSettings) -> Celeba {
    try_load(root, s).unwrap()
}

fn wae() -> CelebaSettings {
    CelebaSettings::default()
}

/// The expected bytes of a JPEG, computed directly: decoded, cropped at `(left, top)` to
/// 140×140 (or not cropped when `crop` is `None`), resized to 64×64 with Lanczos-3, then
/// written plane by plane.
fn direct(bytes: &[u8], crop: Option<(u32, u32)>) -> Vec<u8> {
    let rgb = image::load_from_memory(bytes).unwrap().to_rgb8();
    let source = match crop {
        Some((left, top)) => imageops::crop_imm(&rgb, left, top, 140, 140).to_image(),
        None => rgb,
    };
    let small = imageops::resize(&source, 64, 64, imageops::FilterType::Lanczos3);
    let mut out = Vec::with_capacity(PIXELS);
    for c in 0..3 {
        for y in 0..64 {
            for x in 0..64 {
                out.push(small.get_pixel(x, y)[c]);
            }
        }
    }
    out
}

/// `direct` with the crop of a 178×218 image under `wae`, or none under `resize`.
fn expected(bytes: &[u8], preprocess: CelebaPreprocess) -> Vec<u8> {
    match preprocess {
        CelebaPreprocess::Wae => direct(bytes, Some((19, 39))),
        CelebaPreprocess::Resize => direct(bytes, None),
    }
}

/// Each row of `set` as its bytes (features are `byte / 255`, exactly).
fn rows(set: &Dataset) -> Vec<Vec<u8>> {
    (0..set.len())
        .map(|r| {
            set.features
                .gather_f64(&[r])
                .iter()
                .map(|v| (v * 255.0).round() as u8)
                .collect()
        })
        .collect()
}

/// The splits' rows, train, validation, test (an absent split as no rows).
fn split_rows(celeba: &Celeba) -> [Vec<Vec<u8>>; 3] {
    let s = &celeba.splits;
    [
        rows(&s.train),
        s.validation.as_ref().map(rows).unwrap_or_default(),
        s.test.as_ref().map(rows).unwrap_or_default(),
    ]
}

/// The expected rows of each split: the images of `jpegs` listed in `IMAGES` for it, in name
/// order, leaving out `skip`.
fn expected_rows(
    jpegs: &[(String, Vec<u8>)],
    preprocess: CelebaPreprocess,
    skip: &[&str],
) -> [Vec<Vec<u8>>; 3] {
    let mut out: [Vec<Vec<u8>>; 3] = Default::default();
    for ((name, bytes), (listed, split)) in jpegs.iter().zip(IMAGES) {
        assert_eq!(name, listed);
        if !skip.contains(&listed) {
            out[split].push(expected(bytes, preprocess));
        }
    }
    out
}

#[test]
fn the_folder_loads_each_split_in_name_order_as_a_direct_crop_and_resize() {
    let root = tempfile::tempdir().unwrap();
    let images = jpegs();
    write_folder(root.path(), &images);
    for preprocess in [CelebaPreprocess::Wae, CelebaPreprocess::Resize] {
        let celeba = load(root.path(), settings(preprocess, BadImages::Error));
        let s = &celeba.splits;
        let lens = [
            &s.train,
            s.validation.as_ref().unwrap(),
            s.test.as_ref().unwrap(),
        ]
        .map(Dataset::len);
        assert_eq!(lens, [3, 2, 1], "{preprocess:?}");
        for set in [
            &s.train,
            s.validation.as_ref().unwrap(),
            s.test.as_ref().unwrap(),
        ] {
            assert_eq!(set.image_shape(), Some(CELEBA_IMAGE_SHAPE));
            assert_eq!(set.features.cols(), 3 * 64 * 64);
            assert_eq!(set.targets, Targets::Reconstruction);
        }
        assert_eq!(
            split_rows(&celeba),
            expected_rows(&images, preprocess, &[]),
            "{preprocess:?}"
        );
        assert!(celeba.skipped.is_empty());
    }
    let wae = split_rows(&load(root.path(), wae()));
    let resize = load(
        root.path(),
        settings(CelebaPreprocess::Resize, BadImages::Error),
    );
    assert_ne!(wae, split_rows(&resize), "the two modes give other pixels");
    // A value that tells the planes apart: red grows to the right, green downwards.
    let first = &wae[0][0];
    let (red, green) = (&first[..4096], &first[4096..8192]);
    assert!(
        red[63] > red[0] + 50 && green[63] < green[0] + 10,
        "planes in RGB order"
    );
}

#[test]
fn the_zip_read_in_place_gives_the_same_splits_as_the_folder() {
    let (by_folder, by_zip) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let images = jpegs();
    write_folder(by_folder.path(), &images);
    for method in [CompressionMethod::Deflated, CompressionMethod::Stored] {
        let zip = write_zip(by_zip.path(), &images, method);
        for preprocess in [CelebaPreprocess::Wae, CelebaPreprocess::Resize] {
            let s = settings(preprocess, BadImages::Error);
            let from_zip = load(by_zip.path(), s);
            assert!(
                matches!(from_zip.cache, CelebaCache::Written(_)),
                "{:?}",
                from_zip.cache
            );
            assert_eq!(from_zip.splits, load(by_folder.path(), s).splits);
        }
        assert!(zip.exists(), "the zip is kept");
        assert!(
            !dir(by_zip.path()).join(FOLDER).exists(),
            "nothing extracted"
        );
        fs::remove_file(zip).unwrap();
    }
}

#[test]
fn the_folder_is_preferred_to_a_zip_beside_it() {
    let root = tempfile::tempdir().unwrap();
    let images = jpegs();
    write_folder(root.path(), &images);
    fs::write(dir(root.path()).join(ZIP), b"PK not really a zip").unwrap();
    let celeba = load(root.path(), wae());
    assert_eq!(
        split_rows(&celeba),
        expected_rows(&images, CelebaPreprocess::Wae, &[])
    );
}

#[test]
fn other_sizes_are_centre_cropped_grey_becomes_rgb_and_too_small_is_bad_under_wae() {
    let root = tempfile::tempdir().unwrap();
    let wide = jpeg(&face(1, 150, 200));
    let grey = GrayImage::from_fn(178, 218, |x, y| Luma([(x + y) as u8]));
    let mut grey_jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut grey_jpeg, 92)
        .encode_image(&grey)
        .unwrap();
    let small = jpeg(&face(3, 120, 160));
    let files = [
        ("000001.jpg".to_owned(), wide.clone()),
        ("000002.jpg".to_owned(), grey_jpeg.clone()),
        ("000003.jpg".to_owned(), small.clone()),
    ];
    write_folder(root.path(), &files);
    write_partition(root.path(), "000001.jpg 0\n000002.jpg 0\n000003.jpg 0\n");

    let err = try_load(root.path(), wae()).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("000003.jpg"), "{message}");
    assert!(message.contains("120×160"), "{message}");
    assert!(message.contains("data.bad_images = \"skip\""), "{message}");

    let skip = load(
        root.path(),
        settings(CelebaPreprocess::Wae, BadImages::Skip),
    );
    assert_eq!(skip.skipped, ["000003.jpg"]);
    let train = rows(&skip.splits.train);
    assert_eq!(train.len(), 2);
    // (150 − 140) / 2 = 5, (200 − 140) / 2 = 30.
    assert_eq!(train[0], direct(&wide, Some((5, 30))));
    assert_eq!(train[1], direct(&grey_jpeg, Some((19, 39))));
    let planes: Vec<&[u8]> = train[1].chunks(4096).collect();
    assert!(
        planes[0] == planes[1] && planes[1] == planes[2],
        "grey: R = G = B"
    );
    assert!(skip.splits.validation.is_none() && skip.splits.test.is_none());

    let resize = load(
        root.path(),
        settings(CelebaPreprocess::Resize, BadImages::Error),
    );
    let train = rows(&resize.splits.train);
    assert_eq!(train.len(), 3, "resize takes any size");
    assert_eq!(train[2], direct(&small, None));
}

/// The cache file a load reports.
fn cache_path(celeba: &Celeba) -> PathBuf {
    celeba.cache.path().to_owned()
}

/// Overwrites `path` with `bytes` of the same length, keeping its modification time.
fn rewrite_keeping_time(path: &Path, bytes: &[u8]) {
    let modified = fs::metadata(path).unwrap().modified().unwrap();
    assert_eq!(fs::metadata(path).unwrap().len(), bytes.len() as u64);
    fs::write(path, bytes).unwrap();
    let file = File::options().write(true).open(path).unwrap();
    file.set_modified(modified).unwrap();
}

#[test]
fn the_cache_is_written_once_then_read_without_decoding_an_image() {
    let root = tempfile::tempdir().unwrap();
    let images = jpegs();
    write_folder(root.path(), &images);
    let first = load(root.path(), wae());
    let path = cache_path(&first);
    assert_eq!(first.cache, CelebaCache::Written(path.clone()));
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("cache-wae-") && name.ends_with(".bin"),
        "{name}"
    );

    // An image made undecodable behind the cache's back (same size, same time): a load that
    // decoded it would fail, so a load that succeeds read the cache only.
    let third = dir(root.path()).join(FOLDER).join("000003.jpg");
    let good = fs::read(&third).unwrap();
    rewrite_keeping_time(&third, &vec![b'x'; good.len()]);
    let again = load(root.path(), wae());
    assert_eq!(again.cache, CelebaCache::Read(path.clone()));
    assert_eq!(again.splits, first.splits);
    rewrite_keeping_time(&third, &good);

    // The other mode has its own cache beside it.
    let resize = load(
        root.path(),
        settings(CelebaPreprocess::Resize, BadImages::Error),
    );
    let resize_path = cache_path(&resize);
    assert_eq!(resize.cache, CelebaCache::Written(resize_path.clone()));
    assert_ne!(resize_path, path);
    assert!(path.exists() && resize_path.exists());
    assert_eq!(
        load(
            root.path(),
            settings(CelebaPreprocess::Resize, BadImages::Error)
        )
        .cache,
        CelebaCache::Read(resize_path.clone())
    );

    // Another split of the same images: another key; the stale cache of the mode is deleted.
    let moved: Vec<(&str, usize)> = IMAGES
        .iter()
        .map(|&(n, s)| (n, if n == "000006.jpg" { 2 } else { s }))
        .collect();
    write_partition(root.path(), &partition_text(&moved));
    let split_anew = load(root.path(), wae());
    let new_path = cache_path(&split_anew);
    assert_eq!(split_anew.cache, CelebaCache::Written(new_path.clone()));
    assert_ne!(new_path, path);
    assert!(!path.exists(), "the stale cache of the mode is deleted");
    assert!(resize_path.exists(), "the other mode's is kept");
    assert_eq!(split_anew.splits.validation.as_ref().unwrap().len(), 1);
    assert_eq!(split_anew.splits.test.as_ref().unwrap().len(), 2);
    assert_eq!(
        rows(split_anew.splits.test.as_ref().unwrap())[1],
        expected(&images[5].1, CelebaPreprocess::Wae)
    );

    // A rewritten image (a new modification time) is another key too.
    fs::write(&third, jpeg(&face(7, 178, 218))).unwrap();
    let file = File::options().write(true).open(&third).unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    let rewritten = load(root.path(), wae());
    assert!(matches!(rewritten.cache, CelebaCache::Written(_)));
    assert_ne!(rewritten.splits.train, split_anew.splits.train);
}

#[test]
fn a_corrupt_cut_short_or_foreign_cache_is_rebuilt_never_used() {
    let root = tempfile::tempdir().unwrap();
    write_zip(root.path(), &jpegs(), CompressionMethod::Deflated);
    let first = load(root.path(), wae());
    let path = cache_path(&first);
    let good = fs::read(&path).unwrap();
    let names_at = cache::HEADER;
    let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
    let mut flipped = good.clone();
    flipped[good.len() - 100] ^= 0x01;
    cases.push((flipped, "CRC-32 checksum"));
    let mut flipped_name = good.clone();
    flipped_name[names_at + 3] ^= 0x01;
    cases.push((flipped_name, "CRC-32 checksum"));
    cases.push((good[..good.len() / 2].to_vec(), "cut short or over-long"));
    cases.push((good[..10].to_vec(), "shorter than its header"));
    let mut longer = good.clone();
    longer.push(0);
    cases.push((longer, "cut short or over-long"));
    let mut version = good.clone();
    version[cache::MAGIC.len()] = 9;
    cases.push((version, "format version 9"));
    let mut key = good.clone();
    key[cache::MAGIC.len() + 4] ^= 0x20;
    cases.push((key, "other settings or files"));
    cases.push((
        b"something else entirely".repeat(20),
        "not a steplab CelebA cache",
    ));
    for (bad, why) in cases {
        fs::write(&path, &bad).unwrap();
        let celeba = load(root.path(), wae());
        let CelebaCache::Rebuilt { path: p, reason } = &celeba.cache else {
            panic!("{why}: {:?}", celeba.cache)
        };
        assert_eq!(p, &path);
        assert!(reason.contains(why), "{why}: {reason}");
        assert_eq!(celeba.splits, first.splits, "{why}");
        assert_eq!(fs::read(&path).unwrap(), good, "{why}: rewritten whole");
    }
    assert_eq!(load(root.path(), wae()).cache, CelebaCache::Read(path));
}

#[test]
fn a_cache_that_cannot_be_written_is_reported_and_the_data_still_returned() {
    let root = tempfile::tempdir().unwrap();
    write_folder(root.path(), &jpegs());
    let first = load(root.path(), wae());
    let path = cache_path(&first);
    // A folder where the file should be: it can be neither read nor replaced (this works as
    // root too, which a read-only folder would not).
    fs::remove_file(&path).unwrap();
    fs::create_dir_all(path.join("x")).unwrap();
    let celeba = load(root.path(), wae());
    let CelebaCache::NotWritten { path: p, reason } = &celeba.cache else {
        panic!("{:?}", celeba.cache)
    };
    assert_eq!(p, &path);
    assert!(reason.contains(&path.display().to_string()), "{reason}");
    assert_eq!(celeba.splits, first.splits);
    let names = listing(&dir(root.path()));
    assert_eq!(names.len(), 3, "no temporary file left: {names:?}");
}

/// The test images with `000003.jpg` (train) and `000006.jpg` (validation) not JPEGs.
fn with_bad_images() -> Vec<(String, Vec<u8>)> {
    let mut images = jpegs();
    images[2].1 = b"this is not a JPEG at all".repeat(10);
    images[5].1 = vec![0xff, 0xd8, 0xff, 0xe0, 0, 0x10];
    images
}

#[test]
fn an_image_that_does_not_decode_is_an_error_naming_it_or_skipped_and_listed() {
    let root = tempfile::tempdir().unwrap();
    let images = with_bad_images();
    write_folder(root.path(), &images);
    let third = dir(root.path()).join(FOLDER).join("000003.jpg");
    let err = try_load(root.path(), wae()).unwrap_err();
    let DataError::Malformed { file, problem } = &err else {
        panic!("{err}")
    };
    assert_eq!(file, &third.display().to_string());
    assert!(problem.contains("does not decode as a JPEG"), "{problem}");
    assert!(problem.contains("data.bad_images = \"skip\""), "{problem}");
    assert!(
        listing(&dir(root.path()))
            .iter()
            .all(|n| !n.starts_with("cache"))
    );

    let skip = settings(CelebaPreprocess::Wae, BadImages::Skip);
    let celeba = load(root.path(), skip);
    assert_eq!(celeba.skipped, ["000003.jpg", "000006.jpg"]);
    let bad = ["000003.jpg", "000006.jpg"];
    assert_eq!(
        split_rows(&celeba),
        expected_rows(&images, CelebaPreprocess::Wae, &bad)
    );
    assert!(matches!(celeba.cache, CelebaCache::Written(_)));
    let again = load(root.path(), skip);
    assert!(matches!(again.cache, CelebaCache::Read(_)));
    assert_eq!(
        (&again.splits, &again.skipped),
        (&celeba.splits, &celeba.skipped)
    );
    // A cache written under `skip` does not hide the bad images from a load under `error`.
    let err = try_load(root.path(), wae()).unwrap_err();
    assert!(
        err.to_string().contains(&third.display().to_string()),
        "{err}"
    );
}

#[test]
fn in_the_zip_a_bad_image_is_named_by_its_entry_and_a_corrupt_entry_fails_its_crc() {
    let root = tempfile::tempdir().unwrap();
    let zip = write_zip(root.path(), &with_bad_images(), CompressionMethod::Deflated);
    let err = try_load(root.path(), wae()).unwrap_err();
    let named = format!("{}!img_align_celeba/000003.jpg", zip.display());
    assert!(err.to_string().starts_with(&named), "{err}");
    let skipped = load(
        root.path(),
        settings(CelebaPreprocess::Wae, BadImages::Skip),
    );
    assert_eq!(skipped.skipped, ["000003.jpg", "000006.jpg"]);

    // Stored entries hold the JPEG as is: change one byte of the fourth image.
    let images = jpegs();
    let mut bytes = zip_bytes(&images, CompressionMethod::Stored);
    let fourth = &images[3].1;
    let at = bytes
        .windows(fourth.len())
        .position(|w| w == &fourth[..])
        .unwrap();
    bytes[at + fourth.len() / 2] ^= 0x55;
    fs::write(&zip, &bytes).unwrap();
    for bad_images in [BadImages::Error, BadImages::Skip] {
        let err = try_load(root.path(), settings(CelebaPreprocess::Wae, bad_images)).unwrap_err();
        let DataError::Archive { file, problem } = &err else {
            panic!("{err}")
        };
        assert_eq!(file, &zip);
        assert!(problem.contains("img_align_celeba/000004.jpg"), "{problem}");
        assert!(problem.contains("download it again"), "{problem}");
    }
}

#[test]
fn a_cut_short_zip_is_an_error_naming_it() {
    let root = tempfile::tempdir().unwrap();
    let zip = write_zip(root.path(), &jpegs(), CompressionMethod::Deflated);
    let bytes = fs::read(&zip).unwrap();
    fs::write(&zip, &bytes[..bytes.len() / 2]).unwrap();
    let err = try_load(root.path(), wae()).unwrap_err();
    let DataError::Archive { file, problem } = &err else {
        panic!("{err}")
    };
    assert_eq!(file, &zip);
    assert!(problem.contains("cannot read it as a zip"), "{problem}");
    assert!(problem.contains("download it again"), "{problem}");

    fs::write(&zip, zip_bytes(&[], CompressionMethod::Deflated)).unwrap();
    let err = try_load(root.path(), wae()).unwrap_err();
    assert!(err.to_string().contains("holds no .jpg images"), "{err}");
}

#[test]
fn the_result_does_not_depend_on_the_number_of_workers() {
    let root = tempfile::tempdir().unwrap();
    let mut images = with_bad_images();
    images.truncate(5); // 000003.jpg bad
    let good = jpegs();
    images.push(good[5].clone());
    write_folder(root.path(), &images);
    let skip = settings(CelebaPreprocess::Wae, BadImages::Skip);
    let reference = expected_rows(&images, CelebaPreprocess::Wae, &["000003.jpg"]);
    for workers in [1, 2, 3, 8] {
        for chunk in [1, 2, 64] {
            let src = source(false, workers, chunk);
            let celeba = load_with(root.path(), &skip, &src, &GO).unwrap();
            assert!(matches!(celeba.cache, CelebaCache::Written(_)));
            assert_eq!(
                split_rows(&celeba),
                reference,
                "{workers} workers, chunks of {chunk}"
            );
            assert_eq!(celeba.skipped, ["000003.jpg"]);
            fs::remove_file(celeba.cache.path()).unwrap();

            // Two bad images: the first by name is the one reported, whoever meets which.
            let both = with_bad_images();
            write_folder(root.path(), &both);
            let err = load_with(root.path(), &wae(), &src, &GO).unwrap_err();
            assert!(
                err.to_string().contains("000003.jpg"),
                "{workers}/{chunk}: {err}"
            );
            write_folder(root.path(), &images);
        }
    }
}

#[test]
fn partition_file_errors_name_the_file_and_the_line_or_the_image() {
    let root = tempfile::tempdir().unwrap();
    write_folder(root.path(), &jpegs());
    let partition = dir(root.path()).join(PARTITION);
    let all =
        "000001.jpg 0\n000002.jpg 1\n000003.jpg 0\n000004.jpg 2\n000005.jpg 0\n000006.jpg 1\n";
    let cases = [
        (
            all.replace("000003.jpg 0", "000003.jpg"),
            "line 3: expected",
        ),
        (
            all.replace("000003.jpg 0", "000003.jpg 0 1"),
            "line 3: expected",
        ),
        (
            all.replace("000002.jpg 1", "000002.jpg 3"),
            "line 2: partition \"3\"",
        ),
        (
            all.replace("000004.jpg 2", "000004.jpg -1"),
            "line 4: partition \"-1\"",
        ),
        (
            all.replace("000005.jpg", "000005.png"),
            "line 5: \"000005.png\" is not",
        ),
        (all.replace("000005.jpg", "img/000005.jpg"), "line 5:"),
        (
            format!("{all}000002.jpg 0\n"),
            "lists 000002.jpg twice, on lines 2 and 7",
        ),
        ("\n \n".to_owned(), "lists no images"),
        (
            all.replace("000004.jpg 2\n", "000004.jpg 2\n000010.jpg 0\n"),
            "lists 1 image that",
        ),
        (
            "000001.jpg 1\n000002.jpg 1\n000003.jpg 2\n000004.jpg 2\n000005.jpg 1\n000006.jpg 1\n"
                .to_owned(),
            "assigns no image to the training split",
        ),
    ];
    for (text, why) in cases {
        fs::write(&partition, &text).unwrap();
        let err = try_load(root.path(), wae()).unwrap_err();
        let DataError::Malformed { file, problem } = &err else {
            panic!("{why}: {err}")
        };
        assert_eq!(file, &partition.display().to_string(), "{why}");
        assert!(problem.contains(why), "{why}: {problem}");
    }

    fs::write(
        &partition,
        all.replace("000004.jpg 2\n", "000004.jpg 2\n000010.jpg 0\n"),
    )
    .unwrap();
    let err = try_load(root.path(), wae()).unwrap_err().to_string();
    assert!(err.contains("000010.jpg (line 5)"), "{err}");
    assert!(err.contains(FOLDER), "names the images: {err}");

    // Images the file does not list: the first few are named, with their count.
    fs::write(&partition, "000002.jpg 0\n").unwrap();
    let err = try_load(root.path(), wae()).unwrap_err();
    let DataError::Malformed { file, problem } = &err else {
        panic!("{err}")
    };
    assert_eq!(file, &dir(root.path()).join(FOLDER).display().to_string());
    let expected = format!(
        "holds 5 images that {} does not list: 000001.jpg, 000003.jpg, 000004.jpg, 000005.jpg, \
         000006.jpg;",
        partition.display()
    );
    assert!(problem.starts_with(&expected), "{problem}");
}

#[test]
fn with_nothing_there_and_no_download_the_error_says_what_to_fetch_from_where_to_where() {
    let root = tempfile::tempdir().unwrap();
    let err = try_load(root.path(), wae()).unwrap_err();
    let DataError::NotFound {
        file,
        looked,
        download_error,
        hint,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(
        file,
        "CelebA img_align_celeba.zip and list_eval_partition.txt"
    );
    let d = root.path().join(DIR);
    assert_eq!(looked, &[d.join(FOLDER), d.join(ZIP), d.join(PARTITION)]);
    assert!(download_error.is_none());
    for needed in [
        "data.download = false",
        PAGE,
        "Align&Cropped Images",
        "Img/img_align_celeba.zip",
        "Eval/list_eval_partition.txt",
        &d.join(ZIP).display().to_string(),
        &d.join(FOLDER).join("000001.jpg").display().to_string(),
        &d.join(PARTITION).display().to_string(),
    ] {
        assert!(hint.contains(needed), "{needed}: {hint}");
    }

    // Only the partition file missing: only it is named, with the same hint.
    write_zip(root.path(), &jpegs(), CompressionMethod::Deflated);
    fs::remove_file(d.join(PARTITION)).unwrap();
    let err = try_load(root.path(), wae()).unwrap_err();
    let DataError::NotFound { file, hint, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(file, "CelebA list_eval_partition.txt");
    assert!(hint.contains("Eval/list_eval_partition.txt"), "{hint}");
}

#[test]
fn a_failed_download_is_not_found_with_the_addresses_tried_and_the_manual_hint() {
    let root = tempfile::tempdir().unwrap();
    write_folder(root.path(), &jpegs());
    let d = root.path().join(DIR);
    fs::remove_file(d.join(PARTITION)).unwrap();
    let err = load_with(root.path(), &wae(), &source(true, 2, 2), &GO).unwrap_err();
    let DataError::NotFound {
        file,
        download_error,
        hint,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(file, "CelebA list_eval_partition.txt");
    let tried = download_error.as_deref().unwrap();
    assert!(
        tried.contains("http://127.0.0.1:9/list_eval_partition.txt"),
        "{tried}"
    );
    assert!(hint.contains("Google Drive often refuses"), "{hint}");
    assert!(hint.contains("Eval/list_eval_partition.txt"), "{hint}");
    let left = listing(&d);
    assert_eq!(left, [FOLDER], "no partial download left");

    let cancel = AtomicBool::new(true);
    let err = load_with(root.path(), &wae(), &source(true, 2, 2), &cancel).unwrap_err();
    assert!(err.is_interrupted(), "{err}");
}

#[test]
fn drive_addresses_are_the_classic_and_the_confirmed_form_of_each_id() {
    let urls = drive_urls(&PARTITION_IDS);
    assert_eq!(urls.len(), 4);
    assert_eq!(
        urls[0],
        "https://drive.google.com/uc?export=download&id=0B7EVK8r0v71pY0NSMzRuSXJEVkk"
    );
    assert!(urls[1].contains("id=0B7EVK8r0v71pY0NSMzRuSXJEVkk") && urls[1].contains("confirm=t"));
    assert!(urls[2].ends_with("id=1ih_VMokoI774ErNWrb26lDeWlanUBpnX"));
}

#[test]
fn web_pages_are_told_apart_from_celeba_files() {
    let page = b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>";
    assert!(is_web_page(None, page));
    assert!(is_web_page(None, b"\r\n  <html>"));
    assert!(is_web_page(Some("text/html; charset=utf-8"), b"anything"));
    assert!(is_web_page(Some("Text/HTML"), b""));
    assert!(!is_web_page(Some("application/zip"), b"PK\x03\x04"));
    assert!(!is_web_page(
        Some("application/octet-stream"),
        b"000001.jpg 0\r\n"
    ));
    assert!(!is_web_page(None, b""));
}

#[test]
fn a_cancelled_load_stops_with_interrupted_and_writes_no_cache() {
    let root = tempfile::tempdir().unwrap();
    write_folder(root.path(), &jpegs());
    let cancel = AtomicBool::new(true);
    let err = load_with(root.path(), &wae(), &source(false, 2, 1), &cancel).unwrap_err();
    assert!(err.is_interrupted(), "{err}");
    assert!(
        listing(&dir(root.path()))
            .iter()
            .all(|n| !n.starts_with("cache"))
    );
}

#[test]
fn preprocessing_modes_and_settings_read_as_in_configs() {
    use serde::de::value::{Error, StrDeserializer};
    let read = |s: &'static str| {
        let mode = CelebaPreprocess::deserialize(StrDeserializer::<Error>::new(s));
        let bad = BadImages::deserialize(StrDeserializer::<Error>::new(s));
        (mode.ok(), bad.ok())
    };
    assert_eq!(read("wae"), (Some(CelebaPreprocess::Wae), None));
    assert_eq!(read("resize"), (Some(CelebaPreprocess::Resize), None));
    assert_eq!(read("skip"), (None, Some(BadImages::Skip)));
    assert_eq!(read("error"), (None, Some(BadImages::Error)));
    assert_eq!(read("Wae"), (None, None));
    assert_eq!(
        CelebaSettings::default(),
        settings(CelebaPreprocess::Wae, BadImages::Error)
    );
    assert_eq!(CelebaPreprocess::Wae.name(), "wae");
    assert_eq!(CelebaPreprocess::Resize.name(), "resize");
}
