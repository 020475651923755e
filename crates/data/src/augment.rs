//! Image augmentation and per-channel normalisation as pure functions on the host, for the
//! trainer to apply when it assembles a batch.
//!
//! Images are rows of `[channels, height, width]` values stored channel by channel, each channel
//! row by row (CHW, as [`crate::Features::image_shape`] describes them).
//!
//! **Order.** These functions assume torchvision's usual CIFAR pipeline,
//! `RandomCrop(32, padding=4)`, `RandomHorizontalFlip()`, `ToTensor()`, `Normalize(mean, std)`:
//! first [`crop_flip`] on the unnormalised image (its bytes, or byte / 255 as gathered: zero is
//! black either way), then [`normalize_channels`] on the batch. The padding is therefore black
//! before normalisation and `(0 − mean) / std` after it. Normalising first (including with
//! [`crate::Dataset::normalized`]) and then padding with zeros would pad with the mean colour
//! instead, which is not what the papers' code does.
//!
//! **Reproducibility.** A sample's crop and flip depend only on `(seed, epoch, sample)` (see
//! [`AugmentKey`]), never on the batch it lands in or on how many draws came before, so a run is
//! reproducible, and a run resumed at an epoch augments exactly as the uninterrupted one.

use std::ops::{Div, Sub};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::DataError;

/// What one sample's augmentation depends on, and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AugmentKey {
    /// The run's seed (`run.seed`).
    pub seed: u64,
    /// The epoch, counting from 1 as [`crate::epoch_order`] does.
    pub epoch: u64,
    /// The sample's row in the training set (not its position in the batch).
    pub sample: u64,
}

impl AugmentKey {
    /// The generator of this key's draws: a `ChaCha8Rng` whose 32-byte seed is `seed`, `epoch`
    /// and `sample` (little-endian) followed by `b"cropflip"`, so different keys never share a
    /// stream, and none is shared with [`crate::epoch_order`]'s shuffles.
    fn rng(self) -> ChaCha8Rng {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&self.seed.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.epoch.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.sample.to_le_bytes());
        bytes[24..].copy_from_slice(b"cropflip");
        ChaCha8Rng::from_seed(bytes)
    }
}

/// One sample's draw of the standard CIFAR augmentation: a window of the image's size in the
/// image zero-padded by `pad` on every side, mirrored left to right or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropFlip {
    /// Row of the padded image where the window starts, in `0..=2 * pad` (`pad`: no shift).
    pub top: usize,
    /// Column of the padded image where the window starts, in `0..=2 * pad` (`pad`: no shift).
    pub left: usize,
    /// Whether the window is mirrored left to right (probability 1/2).
    pub flip: bool,
}

impl CropFlip {
    /// The draw for `key`: `top` and `left` uniform in `0..=2 * pad`, then `flip` with
    /// probability 1/2, from [`AugmentKey`]'s generator (uniform integers by multiply-shift of
    /// a 64-bit draw, whose bias, below 2⁻⁵⁹ for `pad` ≤ 8, is immaterial; written out rather
    /// than taken from `rand` so the draws stay the same across `rand` versions).
    pub fn draw(pad: usize, key: AugmentKey) -> Self {
        let mut rng = key.rng();
        let n = 2 * pad as u128 + 1;
        let mut uniform = || ((u128::from(rng.next_u64()) * n) >> 64) as usize;
        let top = uniform();
        let left = uniform();
        let flip = rng.next_u64() >> 63 == 1;
        CropFlip { top, left, flip }
    }

    /// The window of `image` (`[channels, height, width]`, CHW) padded by `pad`, mirrored if
    /// `flip`: value `(c, y, x)` of the result is `(c, y + top − pad, x' + left − pad)` of the
    /// image, `x' = width − 1 − x` when flipped and `x` otherwise, and `T::default()` (zero)
    /// where that falls outside it. The crop comes first, then the flip, as in torchvision.
    ///
    /// # Panics
    /// If `image` does not hold `channels * height * width` values (the shape comes from the
    /// dataset, not from users).
    pub fn apply<T: Copy + Default>(self, image: &[T], shape: [usize; 3], pad: usize) -> Vec<T> {
        let [channels, height, width] = shape;
        let plane = height * width;
        assert_eq!(image.len(), channels * plane, "image of {shape:?}");
        let mut out = vec![T::default(); image.len()];
        for c in 0..channels {
            let (src, dst) = (&image[c * plane..][..plane], &mut out[c * plane..][..plane]);
            for y in 0..height {
                let Some(sy) = (y + self.top).checked_sub(pad).filter(|&sy| sy < height) else {
                    continue;
                };
                for x in 0..width {
                    let Some(sx) = (x + self.left).checked_sub(pad).filter(|&sx| sx < width) else {
                        continue;
                    };
                    let ox = if self.flip { width - 1 - x } else { x };
                    dst[y * width + ox] = src[sy * width + sx];
                }
            }
        }
        out
    }
}

/// A random crop of `image` zero-padded by `pad` (the image's own size) and a horizontal flip
/// with probability 1/2, drawn for `key` only: [`CropFlip::draw`] then [`CropFlip::apply`].
/// CIFAR's standard augmentation is `pad = 4`. Apply it before [`normalize_channels`] (see the
/// module doc).
///
/// # Panics
/// If `image` does not hold `channels * height * width` values.
pub fn crop_flip<T: Copy + Default>(
    image: &[T],
    shape: [usize; 3],
    pad: usize,
    key: AugmentKey,
) -> Vec<T> {
    CropFlip::draw(pad, key).apply(image, shape, pad)
}

/// [`crop_flip`] of every image of a gathered batch, the `i`-th keyed by
/// `(seed, epoch, samples[i])`: `samples` are the rows the batch was gathered from.
///
/// # Panics
/// If `batch` does not hold `samples.len()` images of `shape`.
pub fn crop_flip_batch<T: Copy + Default>(
    batch: &[T],
    shape: [usize; 3],
    pad: usize,
    seed: u64,
    epoch: u64,
    samples: &[usize],
) -> Vec<T> {
    let size = shape.iter().product::<usize>();
    assert_eq!(
        batch.len(),
        samples.len() * size,
        "batch of {shape:?} images"
    );
    let mut out = Vec::with_capacity(batch.len());
    for (image, &sample) in batch.chunks_exact(size.max(1)).zip(samples) {
        let key = AugmentKey {
            seed,
            epoch,
            sample: sample as u64,
        };
        out.extend(crop_flip(image, shape, pad, key));
    }
    out
}

/// A floating-point type batches are assembled in: `f32` or `f64`.
pub trait Real: Copy + Sub<Output = Self> + Div<Output = Self> + sealed::Sealed {
    /// The nearest value of this type.
    fn from_f64(value: f64) -> Self;
}

impl Real for f32 {
    fn from_f64(value: f64) -> Self {
        value as f32
    }
}

impl Real for f64 {
    fn from_f64(value: f64) -> Self {
        value
    }
}

mod sealed {
    /// Keeps [`super::Real`] to `f32` and `f64`.
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// Maps each value of channel `c` of every image in `rows` to `(x − mean[c]) / std[c]`, in
/// place, as torchvision's `Normalize(mean, std)` does: `mean` and `std` are first rounded to
/// `T`, and the arithmetic is `T`'s, so an f32 batch matches PyTorch's f32 to the bit.
///
/// `rows` holds whole images of `shape` (`[channels, height, width]`, CHW) one after the other,
/// values on the `[0, 1]` scale for the usual statistics ([`crate::CIFAR10_MEAN`] …). Fails with
/// [`DataError::ShapeMismatch`] when `C` is not the shape's channel count or `rows` is not a
/// whole number of images, and with [`DataError::InvalidConfig`] (naming `data.normalize`) when
/// a mean is not finite or a standard deviation not positive and finite.
pub fn normalize_channels<T: Real, const C: usize>(
    rows: &mut [T],
    shape: [usize; 3],
    mean: [f64; C],
    std: [f64; C],
) -> Result<(), DataError> {
    let [channels, height, width] = shape;
    if channels != C {
        return Err(DataError::ShapeMismatch {
            what: format!("per-channel means and standard deviations of {shape:?} images"),
            expected: channels,
            found: C,
        });
    }
    let plane = height * width;
    let size = channels * plane;
    if size == 0 || !rows.len().is_multiple_of(size) {
        return Err(DataError::ShapeMismatch {
            what: format!("a batch of {channels}×{height}×{width} images"),
            expected: rows.len().div_ceil(size.max(1)) * size,
            found: rows.len(),
        });
    }
    for c in 0..C {
        if !(mean[c].is_finite() && std[c].is_finite() && std[c] > 0.0) {
            return Err(DataError::InvalidConfig {
                key: "data.normalize",
                problem: format!(
                    "channel {c}: mean {} and standard deviation {} (the mean must be finite, \
                     the standard deviation positive and finite)",
                    mean[c], std[c]
                ),
            });
        }
    }
    let mean = mean.map(T::from_f64);
    let std = std.map(T::from_f64);
    for image in rows.chunks_exact_mut(size) {
        for (c, values) in image.chunks_exact_mut(plane).enumerate() {
            for v in values {
                *v = (*v - mean[c]) / std[c];
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: [usize; 3] = [3, 32, 32];

    fn key(seed: u64, epoch: u64, sample: u64) -> AugmentKey {
        AugmentKey {
            seed,
            epoch,
            sample,
        }
    }

    /// An image whose every value is distinct: `(c, y, x)` ↦ `c * 1024 + y * 32 + x + 1`.
    fn numbered() -> Vec<u32> {
        (1..=3 * 32 * 32).collect()
    }

    fn at(image: &[u32], c: usize, y: usize, x: usize) -> u32 {
        image[c * 1024 + y * 32 + x]
    }

    #[test]
    fn a_crop_at_offset_pad_pad_without_flip_is_the_identity() {
        let image = numbered();
        let same = CropFlip {
            top: 4,
            left: 4,
            flip: false,
        };
        assert_eq!(same.apply(&image, SHAPE, 4), image);
    }

    #[test]
    fn a_flip_is_a_mirror_of_each_row_of_each_channel() {
        let image = numbered();
        let flipped = CropFlip {
            top: 4,
            left: 4,
            flip: true,
        }
        .apply(&image, SHAPE, 4);
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    assert_eq!(at(&flipped, c, y, x), at(&image, c, y, 31 - x));
                }
            }
        }
    }

    #[test]
    fn a_shifted_crop_moves_the_image_and_pads_with_zeros() {
        let image = numbered();
        // The window starts at the padded image's corner: the image moves 4 down and 4 right.
        let corner = CropFlip {
            top: 0,
            left: 0,
            flip: false,
        }
        .apply(&image, SHAPE, 4);
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    let want = if y < 4 || x < 4 {
                        0
                    } else {
                        at(&image, c, y - 4, x - 4)
                    };
                    assert_eq!(at(&corner, c, y, x), want, "({c}, {y}, {x})");
                }
            }
        }
        // The far corner and a flip: (c, y, x) comes from (c, y + 4, (31 − x) + 4).
        let far = CropFlip {
            top: 8,
            left: 8,
            flip: true,
        }
        .apply(&image, SHAPE, 4);
        assert_eq!(at(&far, 1, 0, 31), at(&image, 1, 4, 4));
        assert_eq!(at(&far, 2, 27, 4), at(&image, 2, 31, 31));
        assert_eq!(at(&far, 2, 27, 0), 0);
        assert_eq!(at(&far, 0, 28, 5), 0);
        assert_eq!(at(&far, 0, 5, 3), 0);
    }

    #[test]
    fn the_same_key_gives_the_same_output_and_another_epoch_other_draws() {
        let image = numbered();
        let a = crop_flip(&image, SHAPE, 4, key(7, 3, 41));
        assert_eq!(a, crop_flip(&image, SHAPE, 4, key(7, 3, 41)));
        let differing = (0..500)
            .filter(|&s| CropFlip::draw(4, key(7, 1, s)) != CropFlip::draw(4, key(7, 2, s)))
            .count();
        // Two independent draws agree with probability 1/162.
        assert!(differing > 480, "{differing} of 500 differ");
        let other_seed = (0..500)
            .filter(|&s| CropFlip::draw(4, key(7, 1, s)) != CropFlip::draw(4, key(8, 1, s)))
            .count();
        assert!(other_seed > 480, "{other_seed} of 500 differ");
    }

    #[test]
    fn draws_cover_every_offset_and_flip_about_half_the_time() {
        let draws: Vec<CropFlip> = (0..9_000)
            .map(|s| CropFlip::draw(4, key(0, 1, s)))
            .collect();
        let mut tops = [0usize; 9];
        let mut lefts = [0usize; 9];
        for d in &draws {
            tops[d.top] += 1;
            lefts[d.left] += 1;
        }
        // 1 000 expected in each; a count outside 850..1150 is a 5-sigma event.
        for counts in [tops, lefts] {
            assert!(counts.iter().all(|n| (850..1150).contains(n)), "{counts:?}");
        }
        let flips = draws.iter().filter(|d| d.flip).count();
        assert!((4_300..4_700).contains(&flips), "{flips} flips of 9000");
        assert_eq!(CropFlip::draw(0, key(1, 2, 3)).top, 0);
    }

    #[test]
    fn a_batch_is_augmented_image_by_image_keyed_by_sample_row() {
        let one = numbered();
        let batch: Vec<u32> = one.iter().chain(&one).copied().collect();
        let out = crop_flip_batch(&batch, SHAPE, 4, 5, 2, &[10, 99]);
        assert_eq!(out[..3072], crop_flip(&one, SHAPE, 4, key(5, 2, 10)));
        assert_eq!(out[3072..], crop_flip(&one, SHAPE, 4, key(5, 2, 99)));
        // Bytes work too: augmentation can run before scaling.
        let bytes: Vec<u8> = one.iter().map(|&v| v as u8).collect();
        let b = crop_flip(&bytes, SHAPE, 4, key(5, 2, 10));
        let a = crop_flip(&one, SHAPE, 4, key(5, 2, 10));
        assert!(b.iter().zip(&a).all(|(&b, &a)| u32::from(b) == a % 256));
    }

    #[test]
    fn normalization_is_per_channel_and_matches_f32_arithmetic() {
        // Two images of 3 channels of 2×1 values.
        let shape = [3, 2, 1];
        let mut rows: Vec<f64> = vec![0.0, 1.0, 0.5, 0.5, 1.0, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.0];
        let (mean, std) = ([0.5, 0.25, 0.0], [0.5, 0.25, 2.0]);
        normalize_channels(&mut rows, shape, mean, std).unwrap();
        let want = [
            -1.0,
            1.0,
            1.0,
            1.0,
            0.5,
            0.0,
            (0.2 - 0.5) / 0.5,
            (0.4 - 0.5) / 0.5,
            (0.6 - 0.25) / 0.25,
            (0.8 - 0.25) / 0.25,
            0.5,
            0.0,
        ];
        assert_eq!(rows, want);

        let mut rows32: Vec<f32> = (0..=255).map(|b| b as f32 / 255.0).collect();
        let all = rows32.clone();
        normalize_channels(&mut rows32, [1, 16, 16], [CIFAR10_MEAN_R], [CIFAR10_STD_R]).unwrap();
        for (got, x) in rows32.iter().zip(all) {
            assert_eq!(*got, (x - CIFAR10_MEAN_R as f32) / CIFAR10_STD_R as f32);
        }
    }

    const CIFAR10_MEAN_R: f64 = crate::CIFAR10_MEAN[0];
    const CIFAR10_STD_R: f64 = crate::CIFAR10_STD[0];

    #[test]
    fn normalization_rejects_wrong_shapes_and_statistics() {
        let mut rows = vec![0.0f32; 10];
        let err = normalize_channels(&mut rows, [3, 1, 3], [0.0; 3], [1.0; 3]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a batch of 3×1×3 images: expected 18 values, found 10"
        );
        let err = normalize_channels(&mut rows, [1, 2, 5], [0.0; 3], [1.0; 3]).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::ShapeMismatch {
                    expected: 1,
                    found: 3,
                    ..
                }
            ),
            "{err}"
        );
        let err = normalize_channels(&mut rows, [2, 1, 5], [0.0; 2], [1.0, 0.0]).unwrap_err();
        assert!(
            err.to_string().starts_with("data.normalize: channel 1"),
            "{err}"
        );
        assert!(normalize_channels(&mut rows, [2, 1, 5], [f64::NAN, 0.0], [1.0; 2]).is_err());
        assert_eq!(rows, vec![0.0; 10], "nothing is changed on error");
    }
}
