//! Samples on the host: a compact feature matrix, the targets, and the splits training uses.
//!
//! Images stay bytes until a batch is gathered (MNIST's 60 000 × 784 pixels are 47 MB as `u8`,
//! 376 MB as `f64`); CSV features are kept as `f64` so that f64 training sees exactly the numbers
//! in the file; texts are token ids, padded to a fixed length, with each row's real length
//! ([`Features::from_tokens`], in `tokens.rs`).

use crate::DataError;

mod tokens;

pub use tokens::TokenShape;

/// Row-major feature matrix of a dataset, stored compactly.
///
/// Rows of images also know their shape ([`Features::image_shape`]), so an image model can
/// reshape a gathered batch without being told the dataset; rows of token ids know their padded
/// length and vocabulary size ([`Features::token_shape`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    rows: usize,
    cols: usize,
    storage: Storage,
    /// `[channels, height, width]` when each row is an image stored channel by channel, each
    /// channel row by row; `None` for other features.
    image_shape: Option<[usize; 3]>,
}

/// How the values of a [`Features`] are held.
#[derive(Debug, Clone, PartialEq)]
enum Storage {
    /// Bytes, mapped to `byte * scale + offset` when gathered.
    U8 {
        data: Vec<u8>,
        scale: f64,
        offset: f64,
    },
    /// The values themselves.
    F64(Vec<f64>),
    /// Token ids, `cols` per row (the real tokens, then [`crate::text::Vocabulary::PAD`]), each
    /// below `vocab_size`, and each row's number of real tokens.
    Tokens {
        ids: Vec<u32>,
        lengths: Vec<u32>,
        vocab_size: usize,
    },
}

impl Features {
    /// Features stored as bytes, each standing for `byte * scale + offset`.
    ///
    /// Fails when `data` does not hold `rows * cols` values.
    pub fn from_u8(
        rows: usize,
        cols: usize,
        data: Vec<u8>,
        scale: f64,
        offset: f64,
    ) -> Result<Self, DataError> {
        check_len("u8 feature matrix", rows, cols, data.len())?;
        Ok(Self {
            rows,
            cols,
            storage: Storage::U8 {
                data,
                scale,
                offset,
            },
            image_shape: None,
        })
    }

    /// Features stored as `f64`, exactly as given.
    ///
    /// Fails when `data` does not hold `rows * cols` values.
    pub fn from_f64(rows: usize, cols: usize, data: Vec<f64>) -> Result<Self, DataError> {
        check_len("f64 feature matrix", rows, cols, data.len())?;
        Ok(Self {
            rows,
            cols,
            storage: Storage::F64(data),
            image_shape: None,
        })
    }

    /// The same features, each row declared an image of `[channels, height, width]`, stored
    /// channel by channel and each channel row by row (PyTorch's CHW: value `(c, y, x)` at
    /// `c * height * width + y * width + x`).
    ///
    /// Fails when `channels * height * width` is not the number of values per row, and for token
    /// features (ids are not pixels).
    pub fn with_image_shape(self, shape: [usize; 3]) -> Result<Self, DataError> {
        let [c, h, w] = shape;
        if matches!(self.storage, Storage::Tokens { .. }) {
            return Err(DataError::Malformed {
                file: "token features".into(),
                problem: format!("cannot be images of {c}×{h}×{w}: they are token ids"),
            });
        }
        let size = c.checked_mul(h).and_then(|ch| ch.checked_mul(w));
        if size != Some(self.cols) {
            return Err(DataError::ShapeMismatch {
                what: format!("images of {c}×{h}×{w} as rows of features"),
                expected: size.unwrap_or(usize::MAX),
                found: self.cols,
            });
        }
        Ok(Self {
            image_shape: Some(shape),
            ..self
        })
    }

    /// `[channels, height, width]` of each row when the rows are images (MNIST `[1, 28, 28]`,
    /// CIFAR `[3, 32, 32]`); `None` for other features.
    pub fn image_shape(&self) -> Option<[usize; 3]> {
        self.image_shape
    }

    /// Number of samples.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of values per sample.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Gathers the given rows, in order, as one row-major buffer of `rows.len() * cols` values.
    ///
    /// Token features give their ids as numbers, padding included (exact below 2²⁴); a text
    /// model wants [`Features::gather_tokens`].
    ///
    /// # Panics
    /// If a row index is out of range (indices come from [`crate::epoch_order`], not from users).
    pub fn gather_f32(&self, rows: &[usize]) -> Vec<f32> {
        match &self.storage {
            Storage::U8 {
                data,
                scale,
                offset,
            } => {
                let table = byte_table(*scale, *offset).map(|v| v as f32);
                self.gather_with(rows, data, |b| table[usize::from(b)])
            }
            Storage::F64(data) => self.gather_with(rows, data, |v| v as f32),
            Storage::Tokens { ids, .. } => self.gather_with(rows, ids, |id| id as f32),
        }
    }

    /// Gathers the given rows, in order, as one row-major buffer of `rows.len() * cols` values.
    ///
    /// Token features give their ids as numbers, padding included; a text model wants
    /// [`Features::gather_tokens`].
    ///
    /// # Panics
    /// If a row index is out of range (indices come from [`crate::epoch_order`], not from users).
    pub fn gather_f64(&self, rows: &[usize]) -> Vec<f64> {
        match &self.storage {
            Storage::U8 {
                data,
                scale,
                offset,
            } => {
                let table = byte_table(*scale, *offset);
                self.gather_with(rows, data, |b| table[usize::from(b)])
            }
            Storage::F64(data) => self.gather_with(rows, data, |v| v),
            Storage::Tokens { ids, .. } => self.gather_with(rows, ids, f64::from),
        }
    }

    /// Mean and (population) standard deviation of every column, for standardising.
    pub fn column_stats(&self) -> Vec<(f64, f64)> {
        let all: Vec<usize> = (0..self.rows).collect();
        let values = self.gather_f64(&all);
        let n = self.rows.max(1) as f64;
        (0..self.cols)
            .map(|c| {
                let mean = (0..self.rows)
                    .map(|r| values[r * self.cols + c])
                    .sum::<f64>()
                    / n;
                let var = (0..self.rows)
                    .map(|r| (values[r * self.cols + c] - mean).powi(2))
                    .sum::<f64>()
                    / n;
                (mean, var.sqrt())
            })
            .collect()
    }

    /// Each column mapped to `(x − mean_c) / std_c` with the given per-column statistics (a
    /// column with std 0 is only centred); the values become `f64`.
    ///
    /// Token features are returned unchanged: ids name tokens, they are not magnitudes.
    pub fn standardized(&self, stats: &[(f64, f64)]) -> Features {
        assert_eq!(stats.len(), self.cols, "one (mean, std) per column");
        if matches!(self.storage, Storage::Tokens { .. }) {
            return self.clone();
        }
        let all: Vec<usize> = (0..self.rows).collect();
        let mut values = self.gather_f64(&all);
        for (i, v) in values.iter_mut().enumerate() {
            let (mean, std) = stats[i % self.cols];
            *v = if std > 0.0 {
                (*v - mean) / std
            } else {
                *v - mean
            };
        }
        Features {
            rows: self.rows,
            cols: self.cols,
            storage: Storage::F64(values),
            image_shape: self.image_shape,
        }
    }

    /// The same features mapped to `(x − mean) / std` (for bytes, folded into their scale and
    /// offset, so they stay compact). Token features are returned unchanged: ids name tokens,
    /// they are not magnitudes.
    pub fn normalized(self, mean: f64, std: f64) -> Features {
        let storage = match self.storage {
            Storage::U8 {
                data,
                scale,
                offset,
            } => Storage::U8 {
                data,
                scale: scale / std,
                offset: (offset - mean) / std,
            },
            Storage::F64(data) => {
                Storage::F64(data.into_iter().map(|v| (v - mean) / std).collect())
            }
            tokens @ Storage::Tokens { .. } => tokens,
        };
        Features { storage, ..self }
    }

    /// A copy holding only the given rows, in the given order, stored as this one is.
    ///
    /// # Panics
    /// If a row index is out of range.
    pub fn select(&self, rows: &[usize]) -> Features {
        let storage = match &self.storage {
            Storage::U8 {
                data,
                scale,
                offset,
            } => Storage::U8 {
                data: self.gather_with(rows, data, |b| b),
                scale: *scale,
                offset: *offset,
            },
            Storage::F64(data) => Storage::F64(self.gather_with(rows, data, |v| v)),
            Storage::Tokens {
                ids,
                lengths,
                vocab_size,
            } => Storage::Tokens {
                ids: self.gather_with(rows, ids, |id| id),
                lengths: rows.iter().map(|&r| lengths[r]).collect(),
                vocab_size: *vocab_size,
            },
        };
        Features {
            rows: rows.len(),
            cols: self.cols,
            storage,
            image_shape: self.image_shape,
        }
    }

    fn gather_with<S: Copy, T>(&self, rows: &[usize], data: &[S], map: impl Fn(S) -> T) -> Vec<T> {
        let mut out = Vec::with_capacity(rows.len() * self.cols);
        for &r in rows {
            let start = r * self.cols;
            out.extend(data[start..start + self.cols].iter().map(|&v| map(v)));
        }
        out
    }
}

/// The value of each byte under `byte * scale + offset`.
///
/// When `scale` is the reciprocal of a whole number `d` (MNIST's 1/255), the value is computed as
/// `byte / d`, which is correctly rounded, so it equals what PyTorch's `x / 255` gives in f64 and
/// in f32; `byte * (1/255)` can be one ulp off.
fn byte_table(scale: f64, offset: f64) -> [f64; 256] {
    let d = 1.0 / scale;
    let reciprocal_of_whole = d.is_finite() && d.fract() == 0.0 && 1.0 / d == scale;
    std::array::from_fn(|b| {
        let b = b as f64;
        let v = if reciprocal_of_whole {
            b / d
        } else {
            b * scale
        };
        v + offset
    })
}

fn check_len(what: &str, rows: usize, cols: usize, found: usize) -> Result<(), DataError> {
    let mismatch = |expected| DataError::ShapeMismatch {
        what: format!("{what} of {rows}×{cols}"),
        expected,
        found,
    };
    match rows.checked_mul(cols) {
        Some(expected) if expected == found => Ok(()),
        Some(expected) => Err(mismatch(expected)),
        None => Err(mismatch(usize::MAX)),
    }
}

/// What a dataset predicts.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// A class per sample, each in `0..num_classes`.
    Classes {
        /// One label per sample.
        labels: Vec<u32>,
        /// Number of classes (the model's outputs).
        num_classes: usize,
    },
    /// Regression targets, one row per sample.
    Values(Features),
    /// Autoencoder: the target is the input itself.
    Reconstruction,
}

impl Dataset {
    /// The same samples with every input feature mapped to `(x − mean) / std` (targets, other
    /// than a reconstruction's, unchanged).
    pub fn normalized(self, mean: f64, std: f64) -> Dataset {
        Dataset {
            features: self.features.normalized(mean, std),
            targets: self.targets,
        }
    }
}

impl Targets {
    /// A copy holding only the targets of the given rows, in the given order.
    ///
    /// # Panics
    /// If a row index is out of range.
    pub fn select(&self, rows: &[usize]) -> Targets {
        match self {
            Targets::Classes {
                labels,
                num_classes,
            } => Targets::Classes {
                labels: rows.iter().map(|&r| labels[r]).collect(),
                num_classes: *num_classes,
            },
            Targets::Values(values) => Targets::Values(values.select(rows)),
            Targets::Reconstruction => Targets::Reconstruction,
        }
    }

    /// Number of samples these targets are for; `None` for [`Targets::Reconstruction`], which
    /// has as many as the inputs.
    pub fn num_samples(&self) -> Option<usize> {
        match self {
            Targets::Classes { labels, .. } => Some(labels.len()),
            Targets::Values(values) => Some(values.rows()),
            Targets::Reconstruction => None,
        }
    }
}

/// One set of samples (train, validation or test).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The inputs, one row per sample.
    pub features: Features,
    /// What the model should predict for each row.
    pub targets: Targets,
}

impl Features {
    /// Feeds every stored value, the shape and the mapping into `hasher` (see
    /// [`Dataset::fingerprint`]).
    fn hash_into(&self, hasher: &mut crc32fast::Hasher) {
        hasher.update(&(self.rows as u64).to_le_bytes());
        hasher.update(&(self.cols as u64).to_le_bytes());
        for d in self.image_shape.unwrap_or([0; 3]) {
            hasher.update(&(d as u64).to_le_bytes());
        }
        match &self.storage {
            Storage::U8 {
                data,
                scale,
                offset,
            } => {
                hasher.update(b"u8");
                hasher.update(&scale.to_le_bytes());
                hasher.update(&offset.to_le_bytes());
                hasher.update(data);
            }
            Storage::F64(values) => {
                hasher.update(b"f64");
                for v in values {
                    hasher.update(&v.to_le_bytes());
                }
            }
            Storage::Tokens {
                ids,
                lengths,
                vocab_size,
            } => {
                hasher.update(b"tokens");
                hasher.update(&(*vocab_size as u64).to_le_bytes());
                for v in ids.iter().chain(lengths) {
                    hasher.update(&v.to_le_bytes());
                }
            }
        }
    }
}

impl Dataset {
    /// A fingerprint of the samples (every stored value, label and shape, in order): CRC-32 of
    /// them with the sample count, e.g. `60000:1b2c3d4e`. A checkpoint keeps it so that a resumed
    /// run can tell that its data files changed.
    pub fn fingerprint(&self) -> String {
        let mut hasher = crc32fast::Hasher::new();
        self.features.hash_into(&mut hasher);
        match &self.targets {
            Targets::Classes {
                labels,
                num_classes,
            } => {
                hasher.update(b"classes");
                hasher.update(&(*num_classes as u64).to_le_bytes());
                for l in labels {
                    hasher.update(&l.to_le_bytes());
                }
            }
            Targets::Values(values) => {
                hasher.update(b"values");
                values.hash_into(&mut hasher);
            }
            Targets::Reconstruction => hasher.update(b"reconstruction"),
        }
        format!("{}:{:08x}", self.len(), hasher.finalize())
    }
}

impl Dataset {
    /// Pairs features with targets, checking that they are for the same number of samples and
    /// that every class label is below the number of classes.
    pub fn new(features: Features, targets: Targets) -> Result<Self, DataError> {
        if let Some(n) = targets.num_samples()
            && n != features.rows()
        {
            return Err(DataError::ShapeMismatch {
                what: "targets (one per feature row)".into(),
                expected: features.rows(),
                found: n,
            });
        }
        if let Targets::Classes {
            labels,
            num_classes,
        } = &targets
            && let Some(&label) = labels.iter().find(|&&l| l as usize >= *num_classes)
        {
            return Err(DataError::LabelOutOfRange {
                label,
                num_classes: *num_classes,
            });
        }
        Ok(Self { features, targets })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.features.rows()
    }

    /// `[channels, height, width]` of each sample when the inputs are images (see
    /// [`Features::image_shape`]).
    pub fn image_shape(&self) -> Option<[usize; 3]> {
        self.features.image_shape()
    }

    /// Padded length and vocabulary size of each sample when the inputs are token ids (see
    /// [`Features::token_shape`]).
    pub fn token_shape(&self) -> Option<TokenShape> {
        self.features.token_shape()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy holding only the given rows, in the given order.
    ///
    /// # Panics
    /// If a row index is out of range.
    pub fn select(&self, rows: &[usize]) -> Dataset {
        Dataset {
            features: self.features.select(rows),
            targets: self.targets.select(rows),
        }
    }

    /// The same inputs with [`Targets::Reconstruction`] as targets (for an autoencoder).
    pub fn into_reconstruction(self) -> Dataset {
        Dataset {
            features: self.features,
            targets: Targets::Reconstruction,
        }
    }
}

/// The splits of a dataset as training uses them.
#[derive(Debug, Clone, PartialEq)]
pub struct Splits {
    /// Samples the optimizer trains on.
    pub train: Dataset,
    /// Samples held out of training to monitor it, if any.
    pub validation: Option<Dataset>,
    /// The dataset's own test samples, if it has any.
    pub test: Option<Dataset>,
}

impl Splits {
    /// The same splits with [`Targets::Reconstruction`] as targets (for an autoencoder).
    pub fn into_reconstruction(self) -> Splits {
        Splits {
            train: self.train.into_reconstruction(),
            validation: self.validation.map(Dataset::into_reconstruction),
            test: self.test.map(Dataset::into_reconstruction),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_changes_with_any_value_label_or_shape() {
        let make = |bytes: Vec<u8>, labels: Vec<u32>| {
            let features = Features::from_u8(2, 2, bytes, 1.0 / 255.0, 0.0).unwrap();
            Dataset::new(
                features,
                Targets::Classes {
                    labels,
                    num_classes: 3,
                },
            )
            .unwrap()
        };
        let base = make(vec![1, 2, 3, 4], vec![0, 2]);
        let print = base.fingerprint();
        assert!(print.starts_with("2:"), "{print}");
        assert_eq!(print, make(vec![1, 2, 3, 4], vec![0, 2]).fingerprint());
        assert_ne!(print, make(vec![1, 2, 3, 5], vec![0, 2]).fingerprint());
        assert_ne!(print, make(vec![1, 2, 3, 4], vec![1, 2]).fingerprint());
        let reshaped = Dataset::new(
            Features::from_u8(1, 4, vec![1, 2, 3, 4], 1.0 / 255.0, 0.0).unwrap(),
            Targets::Reconstruction,
        )
        .unwrap();
        assert_ne!(print, reshaped.fingerprint());
    }

    #[test]
    fn mnist_scaling_is_exactly_byte_over_255_in_f32_and_f64() {
        let data: Vec<u8> = (0..=255).collect();
        let f = Features::from_u8(256, 1, data, 1.0 / 255.0, 0.0).unwrap();
        let rows: Vec<usize> = (0..256).collect();
        let g64 = f.gather_f64(&rows);
        let g32 = f.gather_f32(&rows);
        for b in 0..256 {
            assert_eq!(g64[b], b as f64 / 255.0);
            assert_eq!(g32[b], b as f32 / 255.0);
        }
        assert_eq!(g64[255], 1.0);
    }

    #[test]
    fn normalization_maps_bytes_and_floats_to_x_minus_mean_over_std() {
        let f = Features::from_u8(1, 3, vec![0, 51, 255], 1.0 / 255.0, 0.0).unwrap();
        let g = f.normalized(0.5, 0.5).gather_f64(&[0]);
        let expected = [-1.0, 0.2 * 2.0 - 1.0, 1.0];
        for (got, want) in g.iter().zip(expected) {
            assert!((got - want).abs() < 1e-15, "{got} vs {want}");
        }
        let f = Features::from_f64(1, 2, vec![1.0, 3.0]).unwrap();
        assert_eq!(f.normalized(1.0, 2.0).gather_f64(&[0]), vec![0.0, 1.0]);
    }

    #[test]
    fn standardizing_uses_the_given_column_statistics() {
        let f = Features::from_f64(3, 2, vec![1.0, 5.0, 2.0, 5.0, 3.0, 5.0]).unwrap();
        let stats = f.column_stats();
        let sd = (2.0f64 / 3.0).sqrt();
        assert_eq!(stats, vec![(2.0, sd), (5.0, 0.0)]);
        let z = f.standardized(&stats).gather_f64(&[0, 1, 2]);
        assert_eq!(z, vec![-1.0 / sd, 0.0, 0.0, 0.0, 1.0 / sd, 0.0]);
    }

    #[test]
    fn gather_returns_the_requested_rows_in_order() {
        let f = Features::from_f64(3, 2, vec![0.0, 1.0, 10.0, 11.0, 20.0, 21.0]).unwrap();
        assert_eq!(
            f.gather_f64(&[2, 0, 2]),
            vec![20.0, 21.0, 0.0, 1.0, 20.0, 21.0]
        );
        assert_eq!(f.gather_f32(&[1]), vec![10.0f32, 11.0]);
        let b = Features::from_u8(2, 2, vec![0, 1, 2, 3], 2.0, -1.0).unwrap();
        assert_eq!(b.gather_f64(&[1]), vec![3.0, 5.0]);
    }

    #[test]
    fn select_keeps_storage_and_the_chosen_rows() {
        let b = Features::from_u8(3, 1, vec![5, 6, 7], 1.0, 0.0).unwrap();
        let s = b.select(&[2, 0]);
        assert_eq!(s, Features::from_u8(2, 1, vec![7, 5], 1.0, 0.0).unwrap());
        let d = Dataset::new(
            b,
            Targets::Classes {
                labels: vec![0, 1, 2],
                num_classes: 3,
            },
        )
        .unwrap();
        let s = d.select(&[1]);
        assert_eq!(s.len(), 1);
        assert_eq!(
            s.targets,
            Targets::Classes {
                labels: vec![1],
                num_classes: 3
            }
        );
    }

    #[test]
    fn an_image_shape_must_fit_the_row_and_survives_select_normalize_and_standardize() {
        let f = Features::from_u8(2, 12, vec![0; 24], 1.0 / 255.0, 0.0).unwrap();
        assert_eq!(f.image_shape(), None);
        let err = f.clone().with_image_shape([3, 2, 3]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "images of 3×2×3 as rows of features: expected 18 values, found 12"
        );
        assert!(f.clone().with_image_shape([usize::MAX, 2, 2]).is_err());
        let f = f.with_image_shape([3, 2, 2]).unwrap();
        assert_eq!(f.image_shape(), Some([3, 2, 2]));
        assert_eq!(f.select(&[1]).image_shape(), Some([3, 2, 2]));
        let stats = f.column_stats();
        assert_eq!(f.standardized(&stats).image_shape(), Some([3, 2, 2]));
        let d = Dataset::new(f, Targets::Reconstruction).unwrap();
        assert_eq!(d.image_shape(), Some([3, 2, 2]));
        assert_eq!(d.normalized(0.5, 0.5).image_shape(), Some([3, 2, 2]));
    }

    #[test]
    fn wrong_lengths_are_errors_not_panics() {
        assert!(matches!(
            Features::from_u8(2, 3, vec![0; 5], 1.0, 0.0),
            Err(DataError::ShapeMismatch {
                expected: 6,
                found: 5,
                ..
            })
        ));
        assert!(matches!(
            Features::from_f64(usize::MAX, 2, vec![]),
            Err(DataError::ShapeMismatch { .. })
        ));
        let f = Features::from_f64(2, 1, vec![0.0, 1.0]).unwrap();
        let three = Targets::Classes {
            labels: vec![0, 1, 2],
            num_classes: 3,
        };
        assert!(Dataset::new(f.clone(), three).is_err());
        let too_big = Targets::Classes {
            labels: vec![0, 3],
            num_classes: 3,
        };
        assert!(matches!(
            Dataset::new(f, too_big),
            Err(DataError::LabelOutOfRange {
                label: 3,
                num_classes: 3
            })
        ));
    }
}
