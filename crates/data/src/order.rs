//! Which samples go where, and in what order: the validation hold-out, the per-epoch shuffle and
//! the batches.
//!
//! Everything here is a pure function of its arguments (seeds included), so a run resumed at
//! epoch `e` visits the samples in the same order as the run that was interrupted.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::{DataError, Dataset};

/// Seeded validation hold-out.
///
/// Returns `(train, validation)` where validation has `round(fraction * n)` rows chosen by a
/// shuffle seeded with `seed` (`ChaCha8Rng::seed_from_u64(seed)`); both keep the original relative
/// order of their rows. A fraction that rounds to no rows gives no validation set.
///
/// `fraction` must be in `[0, 1)` and leave at least one training row, else the error is
/// [`DataError::InvalidConfig`] naming `data.validation_fraction`.
pub fn split_validation(
    data: Dataset,
    fraction: f64,
    seed: u64,
) -> Result<(Dataset, Option<Dataset>), DataError> {
    const KEY: &str = "data.validation_fraction";
    if !(0.0..1.0).contains(&fraction) {
        return Err(DataError::InvalidConfig {
            key: KEY,
            problem: format!("must be at least 0 and below 1, got {fraction}"),
        });
    }
    let n = data.len();
    let n_val = (fraction * n as f64).round() as usize;
    if n_val == 0 {
        return Ok((data, None));
    }
    if n_val >= n {
        return Err(DataError::InvalidConfig {
            key: KEY,
            problem: format!("{fraction} of {n} samples leaves none to train on"),
        });
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let (val, train) = order.split_at_mut(n_val);
    val.sort_unstable();
    train.sort_unstable();
    let validation = data.select(val);
    let train = data.select(train);
    Ok((train, Some(validation)))
}

/// Order in which an epoch visits the samples.
///
/// `shuffle = false`: `0..n`. `shuffle = true`: a permutation that depends only on
/// `(seed, epoch)`: a `ChaCha8Rng` seeded with `seed_from_u64(seed)`, on stream `epoch`, so a run
/// resumed at an epoch reproduces the same order. Epochs count from 1.
pub fn epoch_order(n: usize, shuffle: bool, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(epoch);
        order.shuffle(&mut rng);
    }
    order
}

/// Splits an order into batches of `batch_size` indices; the last one may be smaller, unless
/// `drop_last`, which leaves it out.
///
/// # Panics
/// If `batch_size` is 0: validate `data.batch_size` when reading the config.
pub fn batches(
    order: &[usize],
    batch_size: usize,
    drop_last: bool,
) -> impl Iterator<Item = &[usize]> {
    assert!(batch_size > 0, "batch_size must be at least 1");
    order
        .chunks(batch_size)
        .filter(move |b| !drop_last || b.len() == batch_size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Features, Targets};

    fn numbered(n: usize) -> Dataset {
        let features = Features::from_f64(n, 1, (0..n).map(|i| i as f64).collect()).unwrap();
        let labels = (0..n as u32).map(|i| i % 3).collect();
        Dataset::new(
            features,
            Targets::Classes {
                labels,
                num_classes: 3,
            },
        )
        .unwrap()
    }

    fn ids(d: &Dataset) -> Vec<usize> {
        d.features
            .gather_f64(&(0..d.len()).collect::<Vec<_>>())
            .iter()
            .map(|&v| v as usize)
            .collect()
    }

    #[test]
    fn same_seed_and_epoch_give_the_same_order() {
        assert_eq!(epoch_order(1000, true, 7, 3), epoch_order(1000, true, 7, 3));
    }

    #[test]
    fn different_epochs_or_seeds_give_different_orders() {
        assert_ne!(epoch_order(1000, true, 7, 1), epoch_order(1000, true, 7, 2));
        assert_ne!(epoch_order(1000, true, 7, 1), epoch_order(1000, true, 8, 1));
    }

    #[test]
    fn a_shuffled_order_is_a_permutation() {
        let mut order = epoch_order(1000, true, 0, 1);
        assert_ne!(order, (0..1000).collect::<Vec<_>>());
        order.sort_unstable();
        assert_eq!(order, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn without_shuffle_the_order_is_the_file_order() {
        assert_eq!(epoch_order(5, false, 42, 9), vec![0, 1, 2, 3, 4]);
        assert!(epoch_order(0, true, 0, 1).is_empty());
    }

    #[test]
    fn batches_cover_the_order_and_drop_last_drops_the_short_one() {
        let order: Vec<usize> = (0..10).collect();
        let all: Vec<&[usize]> = batches(&order, 4, false).collect();
        assert_eq!(all, vec![&[0, 1, 2, 3][..], &[4, 5, 6, 7], &[8, 9]]);
        assert_eq!(batches(&order, 4, true).count(), 2);
        assert_eq!(batches(&order, 10, false).count(), 1);
        assert_eq!(batches(&order, 5, true).count(), 2);
    }

    #[test]
    fn split_validation_has_the_right_sizes_and_disjoint_sorted_rows() {
        let (train, val) = split_validation(numbered(100), 0.25, 1).unwrap();
        let val = val.unwrap();
        assert_eq!((train.len(), val.len()), (75, 25));
        let (t, v) = (ids(&train), ids(&val));
        assert!(t.windows(2).all(|w| w[0] < w[1]) && v.windows(2).all(|w| w[0] < w[1]));
        let mut all: Vec<usize> = t.iter().chain(&v).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        // Targets follow their rows.
        let Targets::Classes { labels, .. } = &val.targets else {
            panic!("classes expected")
        };
        assert!(v.iter().zip(labels).all(|(&i, &l)| l == i as u32 % 3));
    }

    #[test]
    fn split_validation_is_deterministic_in_the_seed() {
        let a = split_validation(numbered(50), 0.2, 5).unwrap();
        let b = split_validation(numbered(50), 0.2, 5).unwrap();
        let c = split_validation(numbered(50), 0.2, 6).unwrap();
        assert_eq!(a, b);
        assert_ne!(ids(&a.1.unwrap()), ids(&c.1.unwrap()));
    }

    #[test]
    fn split_validation_rejects_fractions_outside_zero_to_one() {
        for bad in [-0.1, 1.0, 1.5, f64::NAN] {
            let err = split_validation(numbered(10), bad, 0).unwrap_err();
            assert!(matches!(
                err,
                DataError::InvalidConfig {
                    key: "data.validation_fraction",
                    ..
                }
            ));
        }
        let (train, val) = split_validation(numbered(10), 0.0, 0).unwrap();
        assert_eq!((train.len(), val.is_none()), (10, true));
        assert!(split_validation(numbered(1), 0.6, 0).is_err());
    }
}
