//! Tests of IMDb loading, on review trees and archives in the real layout, written here.

use std::time::{Duration, SystemTime};

use super::*;
use crate::TokenShape;
use crate::archive::testing::{listing, md5_hex, tar_gz};

/// A cancellation flag that is never set.
static GO: AtomicBool = AtomicBool::new(false);

/// The test corpus: three reviews in each folder, with names whose numeric order is not their
/// text order (`10_2` after `2_1`), and files that must be ignored; paths under `aclImdb/`.
fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let good20 = "good ".repeat(20);
    vec![
        (
            "train/neg/0_3.txt",
            b"Bad movie.<br /><br />Really BAD!".to_vec(),
        ),
        ("train/neg/10_2.txt", b"".to_vec()),
        ("train/neg/2_1.txt", b"Awful \xff\xfe bytes, bad.".to_vec()),
        ("train/pos/1_10.txt", b"Great movie! Great fun.".to_vec()),
        (
            "train/pos/3_8.txt",
            b"It's (really) great: a \"must\" see; yes.".to_vec(),
        ),
        ("train/pos/5_9.txt", good20.into_bytes()),
        ("test/neg/0_4.txt", b"Bad, bad plot.".to_vec()),
        ("test/neg/1_1.txt", b"Unknownword MOVIE".to_vec()),
        ("test/neg/9_3.txt", b"Not good.".to_vec()),
        ("test/pos/0_10.txt", b"Great!".to_vec()),
        ("test/pos/11_8.txt", "good ".repeat(9).into_bytes()),
        ("test/pos/4_7.txt", b"Really great, really.".to_vec()),
        // Not reviews of the four folders: never read.
        ("train/unsup/0_0.txt", b"unsupword unsupword".to_vec()),
        ("train/neg/notes.md", b"notesword".to_vec()),
        ("train/labeledBow.feat", b"0:1 1:2".to_vec()),
        (
            "train/urls_pos.txt",
            b"http://www.imdb.com/title/tt0453418/".to_vec(),
        ),
        ("imdb.vocab", b"the\nand\nvocabword\n".to_vec()),
        ("README", b"Large Movie Review Dataset v1.0".to_vec()),
    ]
}

/// The vocabulary of the training reviews above, worked out by hand: `good` 20 times, `.` 4,
/// `bad` and `great` 3, `!`, `movie` and `really` 2, then the words seen once by code point.
const VOCABULARY: [&str; 23] = [
    "<pad>",
    "<unk>",
    "good",
    ".",
    "bad",
    "great",
    "!",
    "movie",
    "really",
    "'",
    "(",
    ")",
    ",",
    "a",
    "awful",
    "bytes",
    "fun",
    "it",
    "must",
    "s",
    "see",
    "yes",
    "\u{fffd}\u{fffd}",
];

/// Writes the corpus as `<root>/imdb/aclImdb/`; returns that folder.
fn write_tree(root: &Path) -> PathBuf {
    let tree = root.join(DIR).join(FOLDER);
    for (path, bytes) in corpus() {
        let path = tree.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }
    tree
}

/// The corpus as the official archive is laid out: one `aclImdb/` folder, folder entries first.
fn archive_bytes() -> Vec<u8> {
    let files = corpus();
    let mut entries: Vec<(String, &[u8])> = [
        "",
        "train/",
        "train/neg/",
        "train/pos/",
        "train/unsup/",
        "test/",
        "test/neg/",
        "test/pos/",
    ]
    .iter()
    .map(|dir| (format!("{FOLDER}/{dir}"), &b""[..]))
    .collect();
    entries.extend(
        files
            .iter()
            .map(|(path, bytes)| (format!("{FOLDER}/{path}"), bytes.as_slice())),
    );
    let entries: Vec<(&str, &[u8])> = entries.iter().map(|(p, b)| (p.as_str(), *b)).collect();
    tar_gz(&entries)
}

/// Writes `bytes` as `<root>/imdb/aclImdb_v1.tar.gz`; returns the path.
fn put_archive(root: &Path, bytes: &[u8]) -> PathBuf {
    let dir = root.join(DIR);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(ARCHIVE), bytes).unwrap();
    dir.join(ARCHIVE)
}

/// Three reviews per folder and an archive with MD5 `md5`; no downloads.
fn source(md5: &str) -> Source<'_> {
    Source {
        url: "http://127.0.0.1:9/aclImdb_v1.tar.gz",
        md5,
        per_folder: 3,
        download: false,
        progress: false,
    }
}

fn settings(vocab_size: usize, min_count: u32, max_len: usize) -> ImdbSettings {
    ImdbSettings {
        vocab_size,
        min_count,
        max_len,
    }
}

fn load(root: &Path, settings: &ImdbSettings) -> Imdb {
    load_with(root, settings, &source("unused"), &GO).unwrap()
}

/// Each row's ids (padding included) and length, and the labels.
fn rows(set: &Dataset) -> (Vec<Vec<i32>>, Vec<u32>, Vec<u32>) {
    let all: Vec<usize> = (0..set.len()).collect();
    let (ids, lengths) = set.features.gather_tokens(&all).unwrap();
    let max_len = set.token_shape().unwrap().max_len;
    let Targets::Classes {
        labels,
        num_classes: 2,
    } = &set.targets
    else {
        panic!("not two classes: {:?}", set.targets)
    };
    let ids = ids.chunks(max_len).map(<[i32]>::to_vec).collect();
    (ids, lengths, labels.clone())
}

/// The cache file a load used or wrote.
fn cache_file(cache: &ImdbCache) -> &Path {
    match cache {
        ImdbCache::Read(path) | ImdbCache::Written(path) => path,
        ImdbCache::Rebuilt { path, .. } | ImdbCache::NotWritten { path, .. } => path,
    }
}

#[test]
fn an_extracted_tree_loads_as_torchtext_would_tokenise_number_and_pad_it() {
    let root = tempfile::tempdir().unwrap();
    write_tree(root.path());
    let imdb = load(root.path(), &settings(25_000, 1, 8));
    assert_eq!(imdb.vocabulary.tokens(), VOCABULARY);
    assert!(imdb.splits.validation.is_none());
    let train = &imdb.splits.train;
    let test = imdb.splits.test.as_ref().unwrap();
    let shape = TokenShape {
        max_len: 8,
        vocab_size: 23,
    };
    assert_eq!(
        (train.token_shape(), test.token_shape()),
        (Some(shape), Some(shape))
    );

    let (ids, lengths, labels) = rows(train);
    // Negative reviews first, each folder by the numeric id: 0_3, 2_1, 10_2, 1_10, 3_8, 5_9.
    assert_eq!(
        ids,
        [
            // bad movie . really bad !   (the <br /> are gone, BAD lower-cased)
            vec![4, 7, 3, 8, 4, 6, 0, 0],
            // awful �� bytes , bad .     (invalid UTF-8 as U+FFFD)
            vec![14, 22, 15, 12, 4, 3, 0, 0],
            // the empty review: no tokens, all padding
            vec![0; 8],
            // great movie ! great fun .
            vec![5, 7, 6, 5, 16, 3, 0, 0],
            // it ' s ( really ) great a | must see yes .   (cut to its first 8)
            vec![17, 9, 19, 10, 8, 11, 5, 13],
            // good × 20, cut to 8
            vec![2; 8],
        ]
    );
    assert_eq!(lengths, [6, 6, 0, 6, 8, 8]);
    assert_eq!(labels, [0, 0, 0, 1, 1, 1]);

    let (ids, lengths, labels) = rows(test);
    assert_eq!(
        ids,
        [
            // bad , bad plot .   (plot: not in the training reviews)
            vec![4, 12, 4, 1, 3, 0, 0, 0],
            // unknownword movie
            vec![1, 7, 0, 0, 0, 0, 0, 0],
            // not good .
            vec![1, 2, 3, 0, 0, 0, 0, 0],
            // great !
            vec![5, 6, 0, 0, 0, 0, 0, 0],
            // really great , really .   (4_7 before 11_8)
            vec![8, 5, 12, 8, 3, 0, 0, 0],
            // good × 9, cut to 8
            vec![2; 8],
        ]
    );
    assert_eq!(lengths, [5, 2, 3, 2, 5, 8]);
    assert_eq!(labels, [0, 0, 0, 1, 1, 1]);
    for word in ["unsupword", "notesword", "vocabword", "plot"] {
        assert!(!imdb.vocabulary.contains(word), "{word} was read");
    }
}

#[test]
fn the_vocabulary_size_cap_counts_the_specials_and_min_count_drops_rare_words() {
    let root = tempfile::tempdir().unwrap();
    write_tree(root.path());
    let capped = load(root.path(), &settings(9, 1, 8));
    assert_eq!(capped.vocabulary.tokens(), &VOCABULARY[..9]);
    let (ids, _, _) = rows(&capped.splits.train);
    // awful �� bytes , → unknown; bad . kept.
    assert_eq!(ids[1], [1, 1, 1, 1, 4, 3, 0, 0]);
    assert_eq!(capped.splits.train.token_shape().unwrap().vocab_size, 9);

    let frequent = load(root.path(), &settings(25_000, 3, 8));
    assert_eq!(
        frequent.vocabulary.tokens(),
        ["<pad>", "<unk>", "good", ".", "bad", "great"]
    );
    let (ids, _, _) = rows(frequent.splits.test.as_ref().unwrap());
    assert_eq!(ids[0], [4, 1, 4, 1, 3, 0, 0, 0]);
}

#[test]
fn the_archive_is_extracted_beside_itself_kept_and_loads_as_the_tree_does() {
    let from_tree = tempfile::tempdir().unwrap();
    write_tree(from_tree.path());
    let want = load(from_tree.path(), &ImdbSettings::default());

    let root = tempfile::tempdir().unwrap();
    let bytes = archive_bytes();
    put_archive(root.path(), &bytes);
    let md5 = md5_hex(&bytes);
    // With progress bars (drawn only on a terminal): the extraction's and the reading's.
    let shown = Source {
        progress: true,
        ..source(&md5)
    };
    let imdb = load_with(root.path(), &ImdbSettings::default(), &shown, &GO).unwrap();
    assert_eq!(
        (&imdb.splits, &imdb.vocabulary),
        (&want.splits, &want.vocabulary)
    );
    let dir = root.path().join(DIR);
    let cache = cache_file(&imdb.cache)
        .file_name()
        .unwrap()
        .to_string_lossy();
    assert_eq!(listing(&dir), [FOLDER, ARCHIVE, cache.as_ref()]);
    assert_eq!(fs::read(dir.join(ARCHIVE)).unwrap(), bytes);
    assert!(dir.join(FOLDER).join("train/unsup/0_0.txt").is_file());
}

#[test]
fn a_wrong_md5_or_a_corrupt_archive_is_an_error_and_nothing_is_extracted() {
    let root = tempfile::tempdir().unwrap();
    let bytes = archive_bytes();
    let archive = put_archive(root.path(), &bytes);
    let dir = root.path().join(DIR);
    let err = load_with(
        root.path(),
        &ImdbSettings::default(),
        &source(&"0".repeat(32)),
        &GO,
    )
    .unwrap_err();
    assert!(matches!(err, DataError::ChecksumMismatch { .. }), "{err}");
    assert!(err.to_string().contains(ARCHIVE), "{err}");
    assert_eq!(listing(&dir), [ARCHIVE]);

    let cut = &bytes[..bytes.len() / 2];
    fs::write(&archive, cut).unwrap();
    let err = load_with(
        root.path(),
        &ImdbSettings::default(),
        &source(&md5_hex(cut)),
        &GO,
    )
    .unwrap_err();
    assert!(matches!(err, DataError::Archive { .. }), "{err}");
    assert!(
        err.to_string().contains("cannot read it as a .tar.gz"),
        "{err}"
    );
    assert_eq!(listing(&dir), [ARCHIVE]);

    // An archive without one of the four folders is not IMDb's.
    let partial = tar_gz(&[("aclImdb/train/neg/0_1.txt", b"bad")]);
    fs::write(&archive, &partial).unwrap();
    let err = load_with(
        root.path(),
        &ImdbSettings::default(),
        &source(&md5_hex(&partial)),
        &GO,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("has no aclImdb/train/pos"),
        "{err}"
    );
    assert_eq!(listing(&dir), [ARCHIVE]);
}

#[test]
fn missing_files_without_download_name_the_url_the_file_the_folder_and_the_key() {
    let root = tempfile::tempdir().unwrap();
    let err = load_imdb(root.path(), &ImdbSettings::default(), false, false, &GO).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err}");
    let msg = err.to_string();
    let dir = root.path().join(DIR);
    for part in [
        IMDB_URL.to_owned(),
        ARCHIVE.to_owned(),
        dir.display().to_string(),
        dir.join(FOLDER).display().to_string(),
        "data.download = true".to_owned(),
    ] {
        assert!(msg.contains(&part), "{part} missing from: {msg}");
    }
}

#[test]
fn a_failed_download_is_not_found_with_its_reason() {
    let root = tempfile::tempdir().unwrap();
    let allowed = Source {
        download: true,
        ..source("unused")
    };
    let err = load_with(root.path(), &ImdbSettings::default(), &allowed, &GO).unwrap_err();
    let DataError::NotFound {
        download_error: Some(reason),
        hint,
        ..
    } = &err
    else {
        panic!("not a failed download: {err}")
    };
    assert!(reason.contains("127.0.0.1:9"), "{reason}");
    assert!(hint.starts_with("To get it, download"), "{hint}");
    assert!(!root.path().join(DIR).join(ARCHIVE).exists());
}

#[test]
fn a_missing_review_folder_or_review_is_an_error_naming_the_folder() {
    let root = tempfile::tempdir().unwrap();
    let tree = write_tree(root.path());
    fs::remove_file(tree.join("test/pos/4_7.txt")).unwrap();
    let err = load_with(
        root.path(),
        &ImdbSettings::default(),
        &source("unused"),
        &GO,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::Malformed { .. }), "{msg}");
    assert!(
        msg.contains(&tree.join("test/pos").display().to_string()),
        "{msg}"
    );
    assert!(
        msg.contains("holds 2 reviews (*.txt files), not 3"),
        "{msg}"
    );

    fs::remove_dir_all(tree.join("test/pos")).unwrap();
    let err = load_with(
        root.path(),
        &ImdbSettings::default(),
        &source("unused"),
        &GO,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::NotFound { .. }), "{msg}");
    assert!(
        msg.contains(&tree.join("test/pos").display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("is incomplete: delete it"), "{msg}");

    fs::create_dir(tree.join("test/pos")).unwrap();
    let err = load_with(
        root.path(),
        &ImdbSettings::default(),
        &source("unused"),
        &GO,
    )
    .unwrap_err();
    assert!(err.to_string().contains("holds 0 reviews"), "{err}");
}

#[test]
fn the_second_load_reads_the_cache_and_no_review() {
    let root = tempfile::tempdir().unwrap();
    let tree = write_tree(root.path());
    let s = settings(25_000, 1, 8);
    let first = load(root.path(), &s);
    let ImdbCache::Written(path) = &first.cache else {
        panic!("{:?}", first.cache)
    };
    assert!(path.starts_with(root.path().join(DIR)));
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(
        name.starts_with("cache-") && name.ends_with(".bin") && name.len() == 74,
        "{name}"
    );

    // Rewrite a review with other words of the same size and the same modification time: a
    // load that read the reviews would see them; one from the cache does not.
    let review = tree.join("train/pos/1_10.txt");
    let modified = fs::metadata(&review).unwrap().modified().unwrap();
    fs::write(&review, b"Awful movie! Awful fun.").unwrap();
    File::options()
        .write(true)
        .open(&review)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    let second = load(root.path(), &s);
    assert_eq!(second.cache, ImdbCache::Read(path.clone()));
    assert_eq!(
        (&second.splits, &second.vocabulary),
        (&first.splits, &first.vocabulary)
    );
    assert_eq!(listing(&root.path().join(DIR)), [FOLDER, name.as_ref()]);
}

#[test]
fn other_settings_or_changed_reviews_are_another_cache_built_anew() {
    let root = tempfile::tempdir().unwrap();
    let tree = write_tree(root.path());
    let base = settings(25_000, 1, 8);
    let first = load(root.path(), &base);
    let mut paths = vec![cache_file(&first.cache).to_owned()];
    for other in [
        settings(9, 1, 8),
        settings(25_000, 2, 8),
        settings(25_000, 1, 4),
    ] {
        let imdb = load(root.path(), &other);
        let ImdbCache::Written(path) = imdb.cache else {
            panic!("{other:?}: {:?}", imdb.cache)
        };
        assert!(!paths.contains(&path), "{other:?} reused a cache");
        paths.push(path);
        assert_eq!(
            imdb.splits.train.token_shape().unwrap().max_len,
            other.max_len
        );
    }
    assert!(matches!(load(root.path(), &base).cache, ImdbCache::Read(_)));

    // A review of another size: another key, and the new words are seen.
    fs::write(tree.join("train/pos/1_10.txt"), b"Wonderful.").unwrap();
    let changed = load(root.path(), &base);
    let ImdbCache::Written(path) = &changed.cache else {
        panic!("{:?}", changed.cache)
    };
    assert!(!paths.contains(path));
    assert!(changed.vocabulary.contains("wonderful"));
    assert!(!changed.vocabulary.contains("fun"));
    // A review rewritten with the same size but later: another key too.
    let review = tree.join("test/neg/9_3.txt");
    let later = SystemTime::now() + Duration::from_secs(60);
    fs::write(&review, b"Not bad!!").unwrap();
    File::options()
        .write(true)
        .open(&review)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let rewritten = load(root.path(), &base);
    assert!(
        matches!(rewritten.cache, ImdbCache::Written(_)),
        "{:?}",
        rewritten.cache
    );
    let (ids, _, _) = rows(rewritten.splits.test.as_ref().unwrap());
    assert_eq!(ids[2], [1, 4, 6, 6, 0, 0, 0, 0]);
}

#[test]
fn a_cut_short_or_corrupt_cache_is_rebuilt_and_never_trusted() {
    let root = tempfile::tempdir().unwrap();
    write_tree(root.path());
    let s = settings(25_000, 1, 8);
    let first = load(root.path(), &s);
    let path = cache_file(&first.cache).to_owned();
    let good = fs::read(&path).unwrap();

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    let mut other_key = good.clone();
    other_key[MAGIC_LEN + 4] ^= 1;
    for (bad, why) in [
        (good[..good.len() - 1].to_vec(), "cut short or corrupt"),
        (good[..10].to_vec(), "not a steplab IMDb cache"),
        ([good.as_slice(), b"x"].concat(), "cut short or corrupt"),
        (flipped, "does not match its SHA-256"),
        (other_key, "made for other settings or files"),
        (Vec::new(), "not a steplab IMDb cache"),
    ] {
        fs::write(&path, &bad).unwrap();
        let imdb = load(root.path(), &s);
        let ImdbCache::Rebuilt { path: p, reason } = &imdb.cache else {
            panic!("{why}: {:?}", imdb.cache)
        };
        assert_eq!(p, &path);
        assert!(reason.contains(why), "{why}: {reason}");
        assert_eq!(
            (&imdb.splits, &imdb.vocabulary),
            (&first.splits, &first.vocabulary)
        );
        assert_eq!(fs::read(&path).unwrap(), good, "{why}: rewritten whole");
    }
    assert_eq!(load(root.path(), &s).cache, ImdbCache::Read(path));
}

/// Bytes of the cache's magic, where its version and key follow.
const MAGIC_LEN: usize = b"steplab imdb cache\n".len();

#[test]
fn a_cache_that_cannot_be_written_does_not_fail_the_load() {
    let root = tempfile::tempdir().unwrap();
    write_tree(root.path());
    let s = settings(25_000, 1, 8);
    let first = load(root.path(), &s);
    let path = cache_file(&first.cache).to_owned();
    // A non-empty folder where the cache goes: it can be neither read nor replaced.
    fs::remove_file(&path).unwrap();
    fs::create_dir_all(path.join("x")).unwrap();
    let imdb = load(root.path(), &s);
    let ImdbCache::NotWritten { reason, .. } = &imdb.cache else {
        panic!("{:?}", imdb.cache)
    };
    assert!(reason.contains(&path.display().to_string()), "{reason}");
    assert_eq!(imdb.splits, first.splits);
    let temps = listing(&root.path().join(DIR));
    assert_eq!(temps.len(), 2, "no temporary file left: {temps:?}");
}

#[test]
fn bad_settings_are_errors_naming_their_key_before_any_file_is_looked_at() {
    let root = tempfile::tempdir().unwrap();
    for (bad, key) in [
        (settings(2, 1, 400), "data.vocab_size"),
        (settings(25_000, 0, 400), "data.min_count"),
        (settings(25_000, 1, 0), "data.max_len"),
    ] {
        let err = load_imdb(root.path(), &bad, true, false, &GO).unwrap_err();
        assert!(
            matches!(err, DataError::InvalidConfig { key: k, .. } if k == key),
            "{key}: {err}"
        );
    }
    assert_eq!(ImdbSettings::default(), settings(25_000, 1, 400));
}

#[test]
fn a_set_flag_stops_loading_before_a_review_is_read() {
    let root = tempfile::tempdir().unwrap();
    write_tree(root.path());
    let err = load_with(
        root.path(),
        &ImdbSettings::default(),
        &source("unused"),
        &AtomicBool::new(true),
    )
    .unwrap_err();
    assert!(err.is_interrupted(), "{err}");
    assert_eq!(listing(&root.path().join(DIR)), [FOLDER]);

    let archived = tempfile::tempdir().unwrap();
    let bytes = archive_bytes();
    put_archive(archived.path(), &bytes);
    let err = load_with(
        archived.path(),
        &ImdbSettings::default(),
        &source(&md5_hex(&bytes)),
        &AtomicBool::new(true),
    )
    .unwrap_err();
    assert!(err.is_interrupted(), "{err}");
    assert_eq!(listing(&archived.path().join(DIR)), [ARCHIVE]);
}
