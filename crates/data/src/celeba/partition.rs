//! The partition file `list_eval_partition.txt`, and matching its names with the images.

use std::path::Path;

use super::decode::Item;
use super::{ImageSource, is_image_name};
use crate::DataError;

/// One line of the partition file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Listed {
    /// The image's file name, `000001.jpg`.
    pub(super) name: String,
    /// 0 train, 1 validation, 2 test.
    pub(super) split: usize,
    /// The line, counting from 1.
    pub(super) line: usize,
}

/// The lines of the partition file `file` (its bytes), sorted by name: each `<name>.jpg <0|1|2>`
/// (any blanks between and around; blank lines skipped), no name twice, at least one line.
pub(super) fn parse_partition(bytes: &[u8], file: &Path) -> Result<Vec<Listed>, DataError> {
    let malformed = |problem: String| DataError::Malformed {
        file: file.display().to_string(),
        problem,
    };
    let mut listed = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let number = i + 1;
        let shown = || {
            let text = String::from_utf8_lossy(line);
            let text = text.trim_end();
            match text.char_indices().nth(60) {
                Some((cut, _)) => format!("\"{}…\"", &text[..cut]),
                None => format!("\"{text}\""),
            }
        };
        let fields: Vec<&[u8]> = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty())
            .collect();
        let (name, value) = match fields[..] {
            [] => continue,
            [name, value] => (name, value),
            _ => {
                return Err(malformed(format!(
                    "line {number}: expected an image's name and its partition (0, 1 or 2), as \
                     in \"000001.jpg 0\", found {}",
                    shown()
                )));
            }
        };
        let name = match std::str::from_utf8(name) {
            Ok(name) if is_image_name(name) => name,
            _ => {
                return Err(malformed(format!(
                    "line {number}: \"{}\" is not the file name of a .jpg image (line {})",
                    String::from_utf8_lossy(name),
                    shown()
                )));
            }
        };
        let split = match value {
            b"0" => 0,
            b"1" => 1,
            b"2" => 2,
            _ => {
                return Err(malformed(format!(
                    "line {number}: partition \"{}\" of {name} is not 0 (train), 1 (validation) \
                     or 2 (test)",
                    String::from_utf8_lossy(value)
                )));
            }
        };
        listed.push(Listed {
            name: name.to_owned(),
            split,
            line: number,
        });
    }
    if listed.is_empty() {
        return Err(malformed("lists no images".into()));
    }
    listed.sort_unstable_by(|a, b| a.name.cmp(&b.name).then(a.line.cmp(&b.line)));
    if let Some(pair) = listed.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(malformed(format!(
            "lists {} twice, on lines {} and {}",
            pair[0].name, pair[0].line, pair[1].line
        )));
    }
    Ok(listed)
}

/// The images to decode, in name order: every listed image must be `available` (each name with
/// its zip entry), and every available image listed.
pub(super) fn match_images(
    listed: &[Listed],
    available: Vec<(String, usize)>,
    partition_file: &Path,
    images: &ImageSource,
) -> Result<Vec<Item>, DataError> {
    let mut items = Vec::with_capacity(listed.len());
    let (mut missing, mut unlisted) = (Vec::new(), Vec::new());
    let mut available = available.into_iter().peekable();
    for entry in listed {
        while let Some((name, _)) = available.next_if(|(name, _)| *name < entry.name) {
            unlisted.push(name);
        }
        match available.next_if(|(name, _)| *name == entry.name) {
            Some((name, index)) => items.push(Item {
                name,
                split: entry.split,
                entry: index,
            }),
            None => missing.push(entry),
        }
    }
    unlisted.extend(available.map(|(name, _)| name));
    const SHOWN: usize = 5;
    let more = |n: usize| {
        if n > SHOWN {
            format!(", … ({} more)", n - SHOWN)
        } else {
            String::new()
        }
    };
    if !missing.is_empty() {
        let shown: Vec<String> = missing
            .iter()
            .take(SHOWN)
            .map(|l| format!("{} (line {})", l.name, l.line))
            .collect();
        return Err(DataError::Malformed {
            file: partition_file.display().to_string(),
            problem: format!(
                "lists {} that {} does not hold: {}{}; the images are incomplete (an \
                 extraction or download cut short?), or not those of this partition file",
                images_count(missing.len()),
                images.path().display(),
                shown.join(", "),
                more(missing.len())
            ),
        });
    }
    if !unlisted.is_empty() {
        let shown: Vec<&str> = unlisted.iter().take(SHOWN).map(String::as_str).collect();
        return Err(DataError::Malformed {
            file: images.path().display().to_string(),
            problem: format!(
                "holds {} that {} does not list: {}{}; is the partition file the one for these \
                 images?",
                images_count(unlisted.len()),
                partition_file.display(),
                shown.join(", "),
                more(unlisted.len())
            ),
        });
    }
    if !items.iter().any(|item| item.split == 0) {
        return Err(DataError::Malformed {
            file: partition_file.display().to_string(),
            problem: "assigns no image to the training split (partition 0)".into(),
        });
    }
    Ok(items)
}

/// `1 image`, `5 images`.
fn images_count(n: usize) -> String {
    if n == 1 {
        "1 image".into()
    } else {
        format!("{n} images")
    }
}
