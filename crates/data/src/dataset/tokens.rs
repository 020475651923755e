//! Token features: texts as rows of token ids, each padded to one length, with its real length.
//!
//! A recurrent model needs both: the ids to embed and, per row, how many of them are real (to
//! pack the sequence, or to take the state at the last real token). Ids are `u32` on the host
//! (IMDb's 25 000 reviews × 400 tokens are 40 MB) and `i32` when gathered, the integer type a
//! tensor of indices is built from.

use super::{Features, Storage};
use crate::DataError;

/// The shape of token features: every row holds `max_len` ids, each below `vocab_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenShape {
    /// Ids per row: the real tokens, then padding (id 0).
    pub max_len: usize,
    /// Number of distinct ids (the embedding's rows).
    pub vocab_size: usize,
}

impl Features {
    /// Token features of `lengths.len()` rows of `max_len` ids each.
    ///
    /// `ids` is row-major: each row's real tokens first, then padding id 0
    /// ([`crate::text::Vocabulary::PAD`]) up to `max_len`; `lengths` holds each row's number of
    /// real tokens. Fails with [`DataError::ShapeMismatch`] when `ids` does not hold
    /// `lengths.len() * max_len` values, and with [`DataError::Malformed`] when a length exceeds
    /// `max_len`, an id is not below `vocab_size`, or a padding position holds another id than 0.
    pub fn from_tokens(
        ids: Vec<u32>,
        lengths: Vec<u32>,
        max_len: usize,
        vocab_size: usize,
    ) -> Result<Features, DataError> {
        let rows = lengths.len();
        super::check_len("token ids", rows, max_len, ids.len())?;
        let malformed = |problem: String| DataError::Malformed {
            file: "token features".into(),
            problem,
        };
        for (row, &length) in lengths.iter().enumerate() {
            if length as usize > max_len {
                return Err(malformed(format!(
                    "row {row} has length {length}, more than the {max_len} ids of a row"
                )));
            }
            let start = row * max_len;
            let row_ids = &ids[start..start + max_len];
            if let Some(&id) = row_ids.iter().find(|&&id| id as usize >= vocab_size) {
                return Err(malformed(format!(
                    "row {row} holds id {id}, not below the vocabulary size {vocab_size}"
                )));
            }
            if let Some(pos) = row_ids[length as usize..].iter().position(|&id| id != 0) {
                return Err(malformed(format!(
                    "row {row} holds id {} at position {}, after its length {length}, where \
                     only padding (0) may be",
                    row_ids[length as usize + pos],
                    length as usize + pos
                )));
            }
        }
        Ok(Features {
            rows,
            cols: max_len,
            storage: Storage::Tokens {
                ids,
                lengths,
                vocab_size,
            },
            image_shape: None,
        })
    }

    /// Padded length and vocabulary size when the rows are token ids ([`Features::from_tokens`]);
    /// `None` for other features.
    pub fn token_shape(&self) -> Option<TokenShape> {
        match &self.storage {
            Storage::Tokens { vocab_size, .. } => Some(TokenShape {
                max_len: self.cols,
                vocab_size: *vocab_size,
            }),
            _ => None,
        }
    }

    /// The ids of the given rows, in order (`rows.len() * max_len` of them, row-major, padding
    /// included), and each row's real length; `None` for features that are not token ids.
    ///
    /// # Panics
    /// If a row index is out of range (indices come from [`crate::epoch_order`], not from users).
    pub fn gather_tokens(&self, rows: &[usize]) -> Option<(Vec<i32>, Vec<u32>)> {
        let Storage::Tokens { ids, lengths, .. } = &self.storage else {
            return None;
        };
        // Ids are below the vocabulary size, itself far below 2³¹ for any embedding that fits
        // in memory; saturate rather than wrap should one not be.
        let gathered = self.gather_with(rows, ids, |id| i32::try_from(id).unwrap_or(i32::MAX));
        Some((gathered, rows.iter().map(|&r| lengths[r]).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dataset, Targets, split_validation};

    /// Three rows of 4 ids: lengths 2, 4 and 0.
    fn three() -> Features {
        Features::from_tokens(
            vec![5, 6, 0, 0, 2, 3, 4, 9, 0, 0, 0, 0],
            vec![2, 4, 0],
            4,
            10,
        )
        .unwrap()
    }

    #[test]
    fn token_features_know_their_shape_and_gather_ids_with_lengths() {
        let f = three();
        assert_eq!((f.rows(), f.cols()), (3, 4));
        assert_eq!(
            f.token_shape(),
            Some(TokenShape {
                max_len: 4,
                vocab_size: 10
            })
        );
        assert_eq!(f.image_shape(), None);
        let (ids, lengths) = f.gather_tokens(&[1, 2, 0]).unwrap();
        assert_eq!(ids, vec![2, 3, 4, 9, 0, 0, 0, 0, 5, 6, 0, 0]);
        assert_eq!(lengths, vec![4, 0, 2]);
        assert_eq!(f.gather_f32(&[0]), vec![5.0, 6.0, 0.0, 0.0]);
        assert_eq!(f.gather_f64(&[1]), vec![2.0, 3.0, 4.0, 9.0]);
        let pixels = Features::from_u8(1, 4, vec![0; 4], 1.0, 0.0).unwrap();
        assert_eq!(pixels.token_shape(), None);
        assert_eq!(pixels.gather_tokens(&[0]), None);
    }

    #[test]
    fn select_and_split_validation_keep_ids_lengths_and_shape() {
        let f = three();
        let s = f.select(&[2, 0]);
        assert_eq!(
            s,
            Features::from_tokens(vec![0, 0, 0, 0, 5, 6, 0, 0], vec![0, 2], 4, 10).unwrap()
        );
        assert_eq!(s.token_shape(), f.token_shape());

        // Ten rows: row r holds id r + 1 for its 1 + r % 4 real tokens, and label r % 2.
        let max_len = 4;
        let lengths: Vec<u32> = (0..10).map(|r| 1 + r % 4).collect();
        let ids: Vec<u32> = (0..10u32)
            .flat_map(|r| (0..max_len as u32).map(move |i| if i <= r % 4 { r + 1 } else { 0 }))
            .collect();
        let features = Features::from_tokens(ids, lengths, max_len, 11).unwrap();
        let labels: Vec<u32> = (0..10).map(|r| r % 2).collect();
        let targets = Targets::Classes {
            labels,
            num_classes: 2,
        };
        let data = Dataset::new(features, targets).unwrap();
        let (train, validation) = split_validation(data, 0.3, 7).unwrap();
        let validation = validation.unwrap();
        assert_eq!((train.len(), validation.len()), (7, 3));
        let mut seen = Vec::new();
        for part in [&train, &validation] {
            let shape = TokenShape {
                max_len,
                vocab_size: 11,
            };
            assert_eq!(part.token_shape(), Some(shape));
            let all: Vec<usize> = (0..part.len()).collect();
            let (ids, lengths) = part.features.gather_tokens(&all).unwrap();
            let Targets::Classes { labels, .. } = &part.targets else {
                panic!("not classes: {:?}", part.targets)
            };
            for (i, row) in ids.chunks(max_len).enumerate() {
                // The row's first id says which row it was: its ids, length and label moved
                // together.
                let r = (row[0] - 1) as u32;
                let len = 1 + r % 4;
                assert_eq!(lengths[i], len);
                assert_eq!(labels[i], r % 2);
                for (pos, &id) in row.iter().enumerate() {
                    let want = if (pos as u32) < len { r as i32 + 1 } else { 0 };
                    assert_eq!(id, want);
                }
                seen.push(r);
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<u32>>());
    }

    #[test]
    fn normalizing_or_standardizing_leaves_token_ids_alone() {
        let f = three();
        assert_eq!(f.clone().normalized(0.5, 0.25), f);
        assert_eq!(f.standardized(&f.column_stats()), f);
        let err = f.with_image_shape([1, 2, 2]).unwrap_err();
        assert!(err.to_string().contains("token ids"), "{err}");
    }

    #[test]
    fn inconsistent_token_rows_are_errors_naming_the_row() {
        let err = Features::from_tokens(vec![1, 2, 3], vec![1, 1], 2, 5).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::ShapeMismatch {
                    expected: 4,
                    found: 3,
                    ..
                }
            ),
            "{err}"
        );
        let err = Features::from_tokens(vec![1, 2, 3, 0], vec![2, 3], 2, 5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "token features: row 1 has length 3, more than the 2 ids of a row"
        );
        let err = Features::from_tokens(vec![1, 2, 5, 0], vec![2, 1], 2, 5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "token features: row 1 holds id 5, not below the vocabulary size 5"
        );
        let err = Features::from_tokens(vec![1, 2, 3, 4], vec![2, 1], 2, 5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "token features: row 1 holds id 4 at position 1, after its length 1, where only \
             padding (0) may be"
        );
        assert!(Features::from_tokens(vec![], vec![], 3, 0).is_ok());
    }
}
