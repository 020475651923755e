//! Tests of GloVe loading, on text files and zips in the real format, written here.

use crate::archive::testing::listing;
use std::collections::HashMap;
use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::*;

/// A cancellation flag that is never set.
static GO: AtomicBool = AtomicBool::new(false);

/// The words of the test GloVe file, in its order (`dog` is not in the vocabulary).
const WORDS: [&str; 5] = [",", "the", "cat", "dog", "sat"];

/// Value `j` of the `i`-th word in files of `dim` values, as written: six decimals, as GloVe's.
fn value(i: usize, j: usize, dim: usize) -> String {
    format!(
        "{:.6}",
        ((i * 31 + j * 7 + dim) % 2001) as f64 / 1000.0 - 1.0
    )
}

/// One line of the test file: the word and its `dim` values, single spaces between.
fn line(i: usize, word: &str, dim: usize) -> String {
    let values: Vec<String> = (0..dim).map(|j| value(i, j, dim)).collect();
    format!("{word} {}\n", values.join(" "))
}

/// The test file of `dim` values per word.
fn glove_text(dim: usize) -> String {
    WORDS
        .iter()
        .enumerate()
        .map(|(i, w)| line(i, w, dim))
        .collect()
}

/// `<pad> <unk> the cat sat , zebra`: `zebra` is not in the GloVe file.
fn vocabulary() -> Vocabulary {
    let counts: HashMap<String, u64> = [("the", 9), ("cat", 8), ("sat", 7), (",", 6), ("zebra", 5)]
        .iter()
        .map(|&(t, c)| (t.to_owned(), c))
        .collect();
    let v = Vocabulary::build(&counts, 100, 1).unwrap();
    assert_eq!(
        v.tokens(),
        ["<pad>", "<unk>", "the", "cat", "sat", ",", "zebra"]
    );
    v
}

/// A zip of the given entries, deflated as in `glove.6B.zip`.
fn zip_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    for (name, bytes) in entries {
        writer.start_file(*name, options).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// The test zip: the 50-d and 100-d files, and a readme.
fn glove_zip() -> Vec<u8> {
    let (t50, t100) = (glove_text(50), glove_text(100));
    zip_bytes(&[
        ("glove.6B.50d.txt", t50.as_bytes()),
        ("glove.6B.100d.txt", t100.as_bytes()),
        ("README.txt", b"GloVe test archive"),
    ])
}

/// Writes `bytes` as `<root>/glove/<name>`; returns the path.
fn put(root: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let dir = root.join(DIR);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
    dir.join(name)
}

/// No downloads; an address that refuses connections.
fn source(download: bool) -> Source<'static> {
    Source {
        url: "http://127.0.0.1:9/glove.6B.zip",
        download,
        progress: false,
    }
}

fn load(root: &Path, dim: usize) -> Result<Glove, DataError> {
    load_with(root, &vocabulary(), dim, &source(false), &GO)
}

/// Checks the vectors against the test file of `dim` values.
fn check_vectors(glove: &Glove, dim: usize) {
    let v = vocabulary();
    assert_eq!(glove.dim, dim);
    assert_eq!(glove.vectors.len(), v.len() * dim);
    assert_eq!(
        glove.found,
        [false, false, true, true, true, true, false],
        "<pad> <unk> the cat sat , zebra"
    );
    assert_eq!(glove.found_count(), 4);
    for (id, token) in v.tokens().iter().enumerate() {
        let row = glove.vector(id as u32);
        match WORDS.iter().position(|w| w == token) {
            Some(i) => {
                for (j, &got) in row.iter().enumerate() {
                    let want = value(i, j, dim).parse::<f64>().unwrap() as f32;
                    assert_eq!(got, want, "{token} value {j}");
                }
            }
            None => assert!(row.iter().all(|&x| x == 0.0), "{token} is not zeros"),
        }
    }
}

#[test]
fn a_text_file_gives_the_vocabularys_vectors_and_zeros_for_words_it_lacks() {
    let root = tempfile::tempdir().unwrap();
    let path = put(root.path(), "glove.6B.50d.txt", glove_text(50).as_bytes());
    let glove = load(root.path(), 50).unwrap();
    check_vectors(&glove, 50);
    assert_eq!(glove.source, path);
    assert_eq!(
        glove.vector(2)[0],
        -0.919_f64 as f32,
        "the: (31 + 50) / 1000 - 1"
    );
}

#[test]
fn the_zip_is_read_in_place_streaming_only_the_entry_of_the_dimension() {
    let root = tempfile::tempdir().unwrap();
    let zip = put(root.path(), ZIP, &glove_zip());
    let shown = Source {
        progress: true,
        ..source(false)
    };
    for dim in [50, 100] {
        let glove = load_with(root.path(), &vocabulary(), dim, &shown, &GO).unwrap();
        check_vectors(&glove, dim);
        assert_eq!(glove.source, zip);
    }
    assert_eq!(listing(&root.path().join(DIR)), [ZIP], "nothing extracted");
    let err = load(root.path(), 300).unwrap_err();
    assert!(matches!(err, DataError::Archive { .. }), "{err}");
    assert!(
        err.to_string().contains("has no entry glove.6B.300d.txt"),
        "{err}"
    );

    // The text file, where there is one, is read rather than the zip.
    let text = put(root.path(), "glove.6B.50d.txt", glove_text(50).as_bytes());
    assert_eq!(load(root.path(), 50).unwrap().source, text);
}

#[test]
fn a_bad_line_is_an_error_naming_the_file_or_entry_and_the_line() {
    let root = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = glove_text(50).lines().map(str::to_owned).collect();
    // Line 3 (cat) one value short.
    lines[2] = lines[2].rsplit_once(' ').unwrap().0.to_owned();
    let short = lines.join("\n") + "\n";
    let path = put(root.path(), "glove.6B.50d.txt", short.as_bytes());
    let err = load(root.path(), 50).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: line 3: 49 values after the word, expected 50 (is it the 50-d file?)",
            path.display()
        )
    );

    // The 100-d file where the 50-d one is expected: line 1.
    fs::write(&path, glove_text(100)).unwrap();
    let err = load(root.path(), 50).unwrap_err();
    assert!(err.to_string().contains("line 1: 100 values"), "{err}");

    // An unparsable value of a vocabulary word; a word alone on its line.
    let mut lines: Vec<String> = glove_text(50).lines().map(str::to_owned).collect();
    lines[4] = lines[4].replacen("0.", "0,", 1);
    fs::write(&path, lines.join("\n")).unwrap();
    let err = load(root.path(), 50).unwrap_err();
    assert!(err.to_string().contains("line 5: \""), "{err}");
    assert!(err.to_string().contains("is not a finite number"), "{err}");
    fs::write(&path, "the\n").unwrap();
    let err = load(root.path(), 50).unwrap_err();
    assert!(err.to_string().contains("line 1: 0 values"), "{err}");
    let nan = line(0, "the", 50).replacen(&value(0, 0, 50), "NaN", 1);
    fs::write(&path, nan).unwrap();
    assert!(load(root.path(), 50).is_err());

    // The values of words outside the vocabulary are counted, not parsed; trailing
    // whitespace (a CR, spaces) is stripped as Python's `rstrip()` strips it.
    let mut lines: Vec<String> = glove_text(50).lines().map(str::to_owned).collect();
    lines[3] = lines[3].replacen("0.", "0,", 1);
    lines[1].push_str("  \t");
    fs::write(&path, lines.join("\r\n")).unwrap();
    check_vectors(&load(root.path(), 50).unwrap(), 50);

    // In a zip: named `zip!entry`.
    fs::remove_file(&path).unwrap();
    let zip = put(
        root.path(),
        ZIP,
        &zip_bytes(&[("glove.6B.50d.txt", short.as_bytes())]),
    );
    let err = load(root.path(), 50).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}!glove.6B.50d.txt: line 3: 49 values after the word, expected 50 (is it the 50-d \
             file?)",
            zip.display()
        )
    );
}

#[test]
fn a_corrupted_zip_entry_fails_its_crc_or_inflation_and_is_an_archive_error() {
    let root = tempfile::tempdir().unwrap();
    let good = glove_zip();
    let (start, size) = {
        let mut archive = ZipArchive::new(Cursor::new(&good)).unwrap();
        let entry = archive.by_name("glove.6B.50d.txt").unwrap();
        (
            entry.data_start().unwrap() as usize,
            entry.compressed_size() as usize,
        )
    };
    assert!(size > 100, "{size} bytes of deflated data");
    // Flip a byte at 16 places across the entry's deflated bytes: never a panic, never a
    // silent success, always the archive named as corrupt.
    let mut crc_failures = 0;
    for k in 0..16 {
        let mut bad = good.clone();
        bad[start + k * (size - 2) / 15] ^= 0x5a;
        let zip = put(root.path(), ZIP, &bad);
        let err = load(root.path(), 50).unwrap_err();
        assert!(matches!(err, DataError::Archive { .. }), "byte {k}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(&zip.display().to_string()), "{msg}");
        assert!(
            msg.contains("glove.6B.50d.txt: cannot be read (corrupt?)"),
            "{msg}"
        );
        // The zip crate's words for a failed CRC-32 check (others fail to inflate, or inflate
        // to more bytes than the entry declares).
        crc_failures += usize::from(msg.contains("Invalid checksum"));
    }
    assert!(
        crc_failures > 0,
        "some corruption inflates and is caught by the CRC-32"
    );
    // The other entry is untouched and still reads.
    let glove = load(root.path(), 100).unwrap();
    check_vectors(&glove, 100);
}

#[test]
fn a_zip_cut_short_or_not_a_zip_is_an_archive_error_saying_to_delete_it() {
    let root = tempfile::tempdir().unwrap();
    let good = glove_zip();
    for bad in [
        &good[..good.len() / 2],
        b"not a zip at all".as_slice(),
        b"".as_slice(),
    ] {
        put(root.path(), ZIP, bad);
        let err = load(root.path(), 50).unwrap_err();
        assert!(matches!(err, DataError::Archive { .. }), "{err}");
        assert!(err.to_string().contains("cannot read it as a zip"), "{err}");
        assert!(err.to_string().contains("delete it"), "{err}");
    }
}

#[test]
fn a_dimension_glove_6b_lacks_is_an_error_naming_model_embedding_dim() {
    let root = tempfile::tempdir().unwrap();
    let err = load_glove(root.path(), &vocabulary(), 64, true, false, &GO).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::InvalidConfig {
                key: "model.embedding_dim",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("50, 100, 200 or 300"), "{err}");
}

#[test]
fn missing_files_without_download_name_the_url_the_files_and_the_folder() {
    let root = tempfile::tempdir().unwrap();
    let err = load_glove(root.path(), &vocabulary(), 100, false, false, &GO).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err}");
    let msg = err.to_string();
    let dir = root.path().join(DIR);
    for part in [
        GLOVE_URL.to_owned(),
        dir.join(ZIP).display().to_string(),
        dir.join("glove.6B.100d.txt").display().to_string(),
        "data.download = true".to_owned(),
    ] {
        assert!(msg.contains(&part), "{part} missing from: {msg}");
    }
}

#[test]
fn a_failed_download_leaves_no_file_and_says_why() {
    let root = tempfile::tempdir().unwrap();
    let err = load_with(root.path(), &vocabulary(), 50, &source(true), &GO).unwrap_err();
    let DataError::NotFound {
        download_error: Some(reason),
        ..
    } = &err
    else {
        panic!("not a failed download: {err}")
    };
    assert!(reason.contains("127.0.0.1:9"), "{reason}");
    let dir = root.path().join(DIR);
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

#[test]
fn a_set_flag_stops_reading_at_once() {
    let root = tempfile::tempdir().unwrap();
    put(root.path(), ZIP, &glove_zip());
    let set = AtomicBool::new(true);
    let err = load_with(root.path(), &vocabulary(), 50, &source(false), &set).unwrap_err();
    assert!(err.is_interrupted(), "{err}");
    put(root.path(), "glove.6B.50d.txt", glove_text(50).as_bytes());
    let err = load_with(root.path(), &vocabulary(), 50, &source(false), &set).unwrap_err();
    assert!(err.is_interrupted(), "{err}");
}
