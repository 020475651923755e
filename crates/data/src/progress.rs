//! Progress bars on stderr for the slow parts of loading (extracting, reading many files,
//! reading a large file), drawn only when asked for and only on a terminal (indicatif hides them
//! otherwise).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps drawn with `template` (the default style if it does not parse) and
/// `message`; a hidden one, which costs next to nothing, unless `show`.
pub(crate) fn bar(show: bool, len: u64, template: &str, message: String) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len).with_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

/// The template of a bar counting bytes.
pub(crate) const BYTES: &str = "{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})";
/// The template of a bar counting files.
pub(crate) const FILES: &str = "{msg} [{bar:30}] {pos}/{len} ({eta})";
