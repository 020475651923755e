//! Text to token ids, as the PyTorch recipes the papers' text results come from do it:
//! torchtext's `basic_english` tokeniser, a vocabulary ordered as torchtext's
//! `build_vocab_from_iterator` orders it, and fixed-length encoding (first tokens kept, padding
//! after).
//!
//! Matching torchtext token for token matters: the vocabulary, and so which GloVe vectors a model
//! starts from, depends on every detail of the tokeniser (whether `don't` is `don ' t`, whether
//! `<br />` survives as a word).

use std::collections::HashMap;

use crate::DataError;

/// The words of `text`, exactly as torchtext's `get_tokenizer("basic_english")` gives them.
///
/// That tokeniser (`torchtext.data.utils._basic_english_normalize`) lower-cases the text
/// (Python's `str.lower`; here [`str::to_lowercase`], the same Unicode mapping, final sigma
/// included), then applies these regex replacements to the whole text, one after the other:
///
/// | pattern  | replacement      |
/// |----------|------------------|
/// | `'`      | `" '  "`         |
/// | `"`      | `""` (removed)   |
/// | `.`      | `" . "`          |
/// | `<br />` | `" "`            |
/// | `,`      | `" , "`          |
/// | `(`      | `" ( "`          |
/// | `)`      | `" ) "`          |
/// | `!`      | `" ! "`          |
/// | `?`      | `" ? "`          |
/// | `;`      | `" "`            |
/// | `:`      | `" "`            |
/// | `\s+`    | `" "`            |
///
/// and splits the result on whitespace (Python's `str.split()`: runs of the characters for which
/// `str.isspace` holds, which are Unicode's `White_Space` and the four separators U+001C to
/// U+001F). The last replacement cannot change the split, so it is not done.
///
/// The order is kept as torchtext has it, and it matters at one place: `<br />` holds none of
/// `'`, `"` or `.`, but removing `"` can *make* a `<br />` (`<br "/>` becomes a space), and
/// replacing `;` or `:` by a space after the `<br />` rule cannot (`<br;/>` stays as the words
/// `<br` and `/>`). The single-character rules before and after `<br />` are each done in one
/// pass over the characters, which is the same as one regex after the other: no replacement
/// holds a character that a later rule of the same pass replaces.
///
/// ```
/// use steplab_data::text::tokenize;
/// assert_eq!(
///     tokenize("Don't stop!<br /><br />It's \"great\"."),
///     ["don", "'", "t", "stop", "!", "it", "'", "s", "great", "."]
/// );
/// ```
pub fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    for_each_token(text, |token| tokens.push(token.to_owned()));
    tokens
}

/// [`tokenize`] without an allocation per token: calls `f` on each token in order.
pub(crate) fn for_each_token(text: &str, mut f: impl FnMut(&str)) {
    let lower = text.to_lowercase();
    // `'`, `"`, `.`
    let mut first = String::with_capacity(lower.len() + lower.len() / 8);
    for c in lower.chars() {
        match c {
            '\'' => first.push_str(" '  "),
            '"' => {}
            '.' => first.push_str(" . "),
            c => first.push(c),
        }
    }
    // `<br />`
    let unbroken = first.replace("<br />", " ");
    // `,`, `(`, `)`, `!`, `?`, `;`, `:`
    let mut last = String::with_capacity(unbroken.len() + unbroken.len() / 8);
    for c in unbroken.chars() {
        match c {
            ',' => last.push_str(" , "),
            '(' => last.push_str(" ( "),
            ')' => last.push_str(" ) "),
            '!' => last.push_str(" ! "),
            '?' => last.push_str(" ? "),
            ';' | ':' => last.push(' '),
            c => last.push(c),
        }
    }
    last.split(is_python_space)
        .filter(|token| !token.is_empty())
        .for_each(&mut f);
}

/// Python's `str.isspace()`: Unicode's `White_Space` (Rust's [`char::is_whitespace`]) and the
/// information separators U+001C to U+001F, which Python counts as whitespace too.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Token ↔ id, ordered as torchtext's `build_vocab_from_iterator(..., specials=["<pad>",
/// "<unk>"], max_tokens=vocab_size, min_freq=min_count)` orders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocabulary {
    /// Token of each id.
    tokens: Vec<String>,
    /// Id of each token.
    index: HashMap<String, u32>,
}

impl Vocabulary {
    /// Id of the padding token `<pad>`, which fills each row after its real tokens.
    pub const PAD: u32 = 0;
    /// Id of `<unk>`, which stands for every token not in the vocabulary.
    pub const UNK: u32 = 1;
    /// The padding token.
    pub const PAD_TOKEN: &str = "<pad>";
    /// The unknown token.
    pub const UNK_TOKEN: &str = "<unk>";

    /// The vocabulary of a corpus whose token counts are `counts`.
    ///
    /// Ids 0 and 1 are `<pad>` and `<unk>`; then come the tokens by count, most frequent first,
    /// ties in ascending order of the token (by code point, as Python compares strings), at
    /// most `vocab_size` entries in all, the two specials included, and only tokens counted at
    /// least `min_count` times. As in torchtext, the list is cut to `vocab_size - 2` tokens
    /// before a token spelled `<pad>` or `<unk>` (a text can hold them) is dropped from it,
    /// so such a text leaves the vocabulary one entry short.
    ///
    /// `vocab_size` below 3 (room for no word) is a [`DataError::InvalidConfig`] naming
    /// `data.vocab_size`, and `min_count` 0 one naming `data.min_count`.
    pub fn build(
        counts: &HashMap<String, u64>,
        vocab_size: usize,
        min_count: u32,
    ) -> Result<Vocabulary, DataError> {
        check_settings(vocab_size, min_count)?;
        let mut sorted: Vec<(&str, u64)> = counts.iter().map(|(t, &c)| (t.as_str(), c)).collect();
        sorted.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        sorted.truncate(vocab_size - 2);
        let words = sorted.into_iter().filter(|&(token, count)| {
            count >= u64::from(min_count) && token != Self::PAD_TOKEN && token != Self::UNK_TOKEN
        });
        let tokens = [Self::PAD_TOKEN, Self::UNK_TOKEN]
            .into_iter()
            .chain(words.map(|(token, _)| token))
            .map(str::to_owned)
            .collect();
        Ok(Self::indexed(tokens))
    }

    /// [`Vocabulary::build`] on the counts of the tokens of `lists` (one list per text).
    pub fn from_token_lists<L, T>(
        lists: impl IntoIterator<Item = L>,
        vocab_size: usize,
        min_count: u32,
    ) -> Result<Vocabulary, DataError>
    where
        L: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        check_settings(vocab_size, min_count)?;
        let mut counts: HashMap<String, u64> = HashMap::new();
        for list in lists {
            for token in list {
                let token = token.as_ref();
                match counts.get_mut(token) {
                    Some(count) => *count += 1,
                    None => {
                        counts.insert(token.to_owned(), 1);
                    }
                }
            }
        }
        Self::build(&counts, vocab_size, min_count)
    }

    /// The vocabulary whose tokens, in id order, are `tokens` (as [`Vocabulary::tokens`] gave
    /// them), for a cache. `Err` says what is wrong: the specials not first, or a token twice.
    pub(crate) fn from_tokens(tokens: Vec<String>) -> Result<Vocabulary, String> {
        if tokens.len() < 2 || tokens[0] != Self::PAD_TOKEN || tokens[1] != Self::UNK_TOKEN {
            return Err("the vocabulary does not start with <pad>, <unk>".into());
        }
        if u32::try_from(tokens.len()).is_err() {
            return Err(format!(
                "{} tokens is more than ids can number",
                tokens.len()
            ));
        }
        let vocab = Self::indexed(tokens);
        if vocab.index.len() != vocab.tokens.len() {
            return Err("the vocabulary holds a token twice".into());
        }
        Ok(vocab)
    }

    /// The vocabulary of distinct `tokens` (at most `u32::MAX`: counts of a corpus that fits in
    /// memory), ids in their order.
    fn indexed(tokens: Vec<String>) -> Vocabulary {
        let index = tokens
            .iter()
            .enumerate()
            .map(|(id, token)| (token.clone(), id as u32))
            .collect();
        Vocabulary { tokens, index }
    }

    /// Number of ids, the two specials included (the embedding's rows).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are no ids; never true of a built vocabulary, which has its two specials.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The id of `token`; [`Vocabulary::UNK`] if it is not in the vocabulary.
    pub fn id(&self, token: &str) -> u32 {
        self.index.get(token).copied().unwrap_or(Self::UNK)
    }

    /// The id of `token`, or `None` if it has no id of its own.
    pub fn get(&self, token: &str) -> Option<u32> {
        self.index.get(token).copied()
    }

    /// Whether `token` has an id of its own.
    pub fn contains(&self, token: &str) -> bool {
        self.index.contains_key(token)
    }

    /// The token of `id`.
    ///
    /// # Panics
    /// If `id` is not below [`Vocabulary::len`] (ids come from [`encode`], not from users).
    pub fn token(&self, id: u32) -> &str {
        &self.tokens[id as usize]
    }

    /// Every token, in id order: `<pad>`, `<unk>`, then the words.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }
}

/// Checks the vocabulary settings (`data.vocab_size`, `data.min_count`) before any counting.
pub(crate) fn check_settings(vocab_size: usize, min_count: u32) -> Result<(), DataError> {
    if vocab_size < 3 {
        return Err(DataError::InvalidConfig {
            key: "data.vocab_size",
            problem: format!("must be at least 3 (<pad>, <unk> and one word), got {vocab_size}"),
        });
    }
    if min_count == 0 {
        return Err(DataError::InvalidConfig {
            key: "data.min_count",
            problem: "must be at least 1 (a word seen once or more), got 0".into(),
        });
    }
    Ok(())
}

/// `max_len` as the `u32` lengths are held in, or [`DataError::InvalidConfig`] naming
/// `data.max_len` if it is 0 (or does not fit).
pub(crate) fn check_max_len(max_len: usize) -> Result<u32, DataError> {
    match u32::try_from(max_len) {
        Ok(0) => Err(DataError::InvalidConfig {
            key: "data.max_len",
            problem: "must be at least 1 token, got 0".into(),
        }),
        Ok(n) => Ok(n),
        Err(_) => Err(DataError::InvalidConfig {
            key: "data.max_len",
            problem: format!("{max_len} tokens is more than lengths can count"),
        }),
    }
}

/// The ids of `tokens` under `vocab`, cut to their first `max_len` or padded to `max_len` with
/// [`Vocabulary::PAD`], and the number of real tokens, `min(tokens.len(), max_len)`.
///
/// A token without an id of its own becomes [`Vocabulary::UNK`]. `max_len` 0 is a
/// [`DataError::InvalidConfig`] naming `data.max_len`.
pub fn encode<T: AsRef<str>>(
    tokens: &[T],
    vocab: &Vocabulary,
    max_len: usize,
) -> Result<(Vec<u32>, u32), DataError> {
    check_max_len(max_len)?;
    let mut ids: Vec<u32> = tokens
        .iter()
        .take(max_len)
        .map(|t| vocab.id(t.as_ref()))
        .collect();
    let length = ids.len() as u32;
    ids.resize(max_len, Vocabulary::PAD);
    Ok((ids, length))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expected outputs below were computed with torchtext's rules as Python code
    /// (`re.sub` for each pattern of `_basic_english_normalize`, then `str.split()`).
    #[test]
    fn tokenize_matches_torchtexts_basic_english() {
        let cases: &[(&str, &[&str])] = &[
            (
                "Don't stop!<br /><br />It's \"great\".",
                &["don", "'", "t", "stop", "!", "it", "'", "s", "great", "."],
            ),
            (
                "Hello, World (again): yes; no?",
                &["hello", ",", "world", "(", "again", ")", "yes", "no", "?"],
            ),
            (
                "3.14, e.g. U.S.A.!!",
                &[
                    "3", ".", "14", ",", "e", ".", "g", ".", "u", ".", "s", ".", "a", ".", "!", "!",
                ],
            ),
            (
                "it's-a me... (mario)",
                &["it", "'", "s-a", "me", ".", ".", ".", "(", "mario", ")"],
            ),
            ("<BR />Shouting<Br/>", &["shouting<br/>"]),
            ("", &[]),
            ("   \t\n", &[]),
            ("\"\"", &[]),
        ];
        for (text, want) in cases {
            assert_eq!(tokenize(text), *want, "{text:?}");
        }
    }

    #[test]
    fn lower_casing_is_unicodes_with_final_sigma() {
        assert_eq!(
            tokenize("ÉCOLE Straße ΣΊΣΥΦΟΣ İstanbul"),
            ["école", "straße", "σίσυφος", "i\u{307}stanbul"]
        );
        assert_eq!(
            tokenize("\u{fffd}\u{fffd}bad bytes"),
            ["\u{fffd}\u{fffd}bad", "bytes"]
        );
    }

    #[test]
    fn whitespace_is_pythons_including_the_information_separators() {
        assert_eq!(
            tokenize("tab\there\nnew\u{1c}line\u{a0}nbsp\u{3000}wide"),
            ["tab", "here", "new", "line", "nbsp", "wide"]
        );
        // A zero-width space is not whitespace, in Python or here.
        assert_eq!(tokenize("a\u{200b}b"), ["a\u{200b}b"]);
    }

    #[test]
    fn the_br_rule_comes_after_quotes_and_before_colons_as_in_torchtext() {
        // Removing `"` makes a `<br />`, which is then replaced.
        assert_eq!(tokenize("<br \"/>x"), ["x"]);
        // `;` becomes a space only after the `<br />` rule: no `<br />` is made.
        assert_eq!(tokenize("a<br;/>b"), ["a<br", "/>b"]);
        assert_eq!(tokenize("a<br:/>b"), ["a<br", "/>b"]);
    }

    fn counts(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
        pairs.iter().map(|&(t, c)| (t.to_owned(), c)).collect()
    }

    #[test]
    fn the_vocabulary_is_specials_then_count_descending_then_token_ascending() {
        let c = counts(&[("b", 3), ("a", 3), ("z", 5), ("c", 1), ("d", 2)]);
        let v = Vocabulary::build(&c, 100, 1).unwrap();
        assert_eq!(v.tokens(), ["<pad>", "<unk>", "z", "a", "b", "d", "c"]);
        assert_eq!(v.len(), 7);
        assert_eq!(
            (v.id("<pad>"), v.id("<unk>")),
            (Vocabulary::PAD, Vocabulary::UNK)
        );
        assert_eq!(
            (v.id("z"), v.id("c"), v.id("absent")),
            (2, 6, Vocabulary::UNK)
        );
        assert_eq!(v.token(3), "a");
        assert!(v.contains("d") && !v.contains("absent"));
        assert_eq!((v.get("d"), v.get("absent")), (Some(5), None));
    }

    #[test]
    fn the_size_cap_counts_the_specials_and_min_count_drops_rare_tokens() {
        let c = counts(&[("b", 3), ("a", 3), ("z", 5), ("c", 1), ("d", 2)]);
        let v = Vocabulary::build(&c, 4, 1).unwrap();
        assert_eq!(v.tokens(), ["<pad>", "<unk>", "z", "a"]);
        let v = Vocabulary::build(&c, 3, 1).unwrap();
        assert_eq!(v.tokens(), ["<pad>", "<unk>", "z"]);
        let v = Vocabulary::build(&c, 100, 3).unwrap();
        assert_eq!(v.tokens(), ["<pad>", "<unk>", "z", "a", "b"]);
        let v = Vocabulary::build(&c, 100, 6).unwrap();
        assert_eq!(v.tokens(), ["<pad>", "<unk>"]);
    }

    #[test]
    fn special_tokens_in_the_text_are_cut_after_the_cap_as_torchtext_does() {
        let c = counts(&[("<unk>", 9), ("a", 3), ("b", 2)]);
        // Cut to 2 words (<unk>, a), then <unk> is dropped from them: one entry short.
        let v = Vocabulary::build(&c, 4, 1).unwrap();
        assert_eq!(v.tokens(), ["<pad>", "<unk>", "a"]);
    }

    #[test]
    fn a_vocabulary_from_token_lists_counts_every_token() {
        let texts = [tokenize("The cat. The dog!"), tokenize("the end")];
        let v = Vocabulary::from_token_lists(&texts, 25_000, 1).unwrap();
        assert_eq!(
            v.tokens(),
            ["<pad>", "<unk>", "the", "!", ".", "cat", "dog", "end"]
        );
        let v = Vocabulary::from_token_lists(&texts, 25_000, 2).unwrap();
        assert_eq!(v.tokens(), ["<pad>", "<unk>", "the"]);
    }

    #[test]
    fn bad_settings_are_errors_naming_their_key() {
        let c = counts(&[("a", 1)]);
        let err = Vocabulary::build(&c, 2, 1).unwrap_err();
        assert!(matches!(
            err,
            DataError::InvalidConfig {
                key: "data.vocab_size",
                ..
            }
        ));
        let err = Vocabulary::build(&c, 3, 0).unwrap_err();
        assert!(matches!(
            err,
            DataError::InvalidConfig {
                key: "data.min_count",
                ..
            }
        ));
        let v = Vocabulary::build(&c, 3, 1).unwrap();
        let err = encode(&["a"], &v, 0).unwrap_err();
        assert!(matches!(
            err,
            DataError::InvalidConfig {
                key: "data.max_len",
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "data.max_len: must be at least 1 token, got 0"
        );
    }

    #[test]
    fn encoding_keeps_the_first_tokens_and_pads_after_them() {
        let c = counts(&[("a", 3), ("b", 2)]);
        let v = Vocabulary::build(&c, 10, 1).unwrap();
        assert_eq!(
            encode(&["b", "x", "a"], &v, 5).unwrap(),
            (vec![3, 1, 2, 0, 0], 3)
        );
        assert_eq!(
            encode(&["a", "b", "a", "b"], &v, 2).unwrap(),
            (vec![2, 3], 2)
        );
        assert_eq!(encode::<&str>(&[], &v, 3).unwrap(), (vec![0, 0, 0], 0));
    }

    #[test]
    fn a_cached_token_list_is_checked_before_it_is_trusted() {
        let ok = Vocabulary::from_tokens(vec!["<pad>".into(), "<unk>".into(), "a".into()]);
        assert_eq!(ok.unwrap().id("a"), 2);
        assert!(Vocabulary::from_tokens(vec!["<unk>".into(), "<pad>".into()]).is_err());
        let twice = vec!["<pad>".into(), "<unk>".into(), "a".into(), "a".into()];
        assert!(Vocabulary::from_tokens(twice).is_err());
    }
}
