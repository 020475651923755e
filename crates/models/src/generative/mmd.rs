//! The maximum mean discrepancy between encoded samples and prior samples with inverse
//! multiquadratic kernels, as the WAE-MMD penalty (Tolstikhin et al. 2018, Algorithm 2).
//!
//! For codes z₁…zₙ and prior draws z̃₁…z̃ₙ, with k(x, y) = C / (C + ‖x − y‖²):
//!
//! ```text
//! MMD = 1/(n(n−1)) Σ_{i≠j} k(z̃ᵢ, z̃ⱼ) + 1/(n(n−1)) Σ_{i≠j} k(zᵢ, zⱼ) − 2/n² Σ_{i,j} k(zᵢ, z̃ⱼ)
//! ```
//!
//! (the unbiased U-statistic), summed over the scales C = s · base for s in [`IMQ_SCALES`], where
//! `base` = 2 · z_dim · σ² (the expected squared distance of two prior draws), as in the WAE
//! authors' code. Squared distances come from ‖x‖² + ‖y‖² − 2·x·y (one matrix product).

use burn::tensor::{Tensor, TensorData};

/// The multiples of the base scale whose kernels are summed.
pub const IMQ_SCALES: [f64; 7] = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0];

/// Squared distances `[n, m]` between the rows of `a` `[n, d]` and of `b` `[m, d]`.
fn squared_distances(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    let a_norms = a.clone().square().sum_dim(1);
    let b_norms = b.clone().square().sum_dim(1).transpose();
    a_norms
        .add(b_norms)
        .sub(a.matmul(b.transpose()).mul_scalar(2.0))
}

/// The multi-scale IMQ MMD (shape `[1]`) between codes `z` and prior draws `prior`, both
/// `[n, d]`, with base scale `base` (see the module docs). With n = 1 the within-sample terms
/// have no pairs and are left out.
pub fn mmd_imq(z: Tensor<2>, prior: Tensor<2>, base: f64) -> Tensor<1> {
    let [n, _] = z.dims();
    let off_diagonal = (n > 1).then(|| {
        let values: Vec<f64> = (0..n * n)
            .map(|k| if k / n == k % n { 0.0 } else { 1.0 })
            .collect();
        Tensor::<2>::from_data(TensorData::new(values, [n, n]), (&z.device(), z.dtype()))
    });
    let within_q = squared_distances(z.clone(), z.clone());
    let within_p = squared_distances(prior.clone(), prior.clone());
    let across = squared_distances(z, prior);
    let kernel = |d: Tensor<2>, c: f64| d.add_scalar(c).recip().mul_scalar(c);
    let pairs = (n * n.saturating_sub(1)).max(1) as f64;
    IMQ_SCALES
        .iter()
        .map(|scale| {
            let c = scale * base;
            let cross = kernel(across.clone(), c)
                .sum()
                .mul_scalar(-2.0 / (n * n) as f64);
            match &off_diagonal {
                Some(mask) => kernel(within_q.clone(), c)
                    .add(kernel(within_p.clone(), c))
                    .mul(mask.clone())
                    .sum()
                    .div_scalar(pairs)
                    .add(cross),
                None => cross,
            }
        })
        .reduce(|a, b| a.add(b))
        .expect("seven scales")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{assert_gradients_match, data, tensor, values};

    /// The estimator written out over pairs, in f64 on the host.
    fn direct(z: &[f64], p: &[f64], n: usize, d: usize, base: f64) -> f64 {
        let rows = |m: &[f64]| -> Vec<Vec<f64>> { m.chunks(d).map(<[f64]>::to_vec).collect() };
        let (z, p) = (rows(z), rows(p));
        let dist =
            |a: &[f64], b: &[f64]| -> f64 { a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum() };
        let nf = n as f64;
        IMQ_SCALES
            .iter()
            .map(|s| {
                let c = s * base;
                let k = |a: &[f64], b: &[f64]| c / (c + dist(a, b));
                let (mut within, mut cross) = (0.0, 0.0);
                for i in 0..n {
                    for j in 0..n {
                        if i != j {
                            within += k(&z[i], &z[j]) + k(&p[i], &p[j]);
                        }
                        cross += k(&z[i], &p[j]);
                    }
                }
                within / (nf * (nf - 1.0)) - 2.0 * cross / (nf * nf)
            })
            .sum()
    }

    #[test]
    fn mmd_matches_the_estimator_written_over_pairs() {
        let (n, d) = (5, 3);
        for (seed, shift) in [(1, 0.0), (2, 0.7), (3, -2.5)] {
            let z: Vec<f64> = data(seed, n * d).iter().map(|v| v + shift).collect();
            let p = data(seed + 10, n * d);
            let base = 2.0 * d as f64 * 1.3;
            let got = values(mmd_imq(
                tensor(&z).reshape([n, d]),
                tensor(&p).reshape([n, d]),
                base,
            ))[0];
            let want = direct(&z, &p, n, d, base);
            assert!(
                (got - want).abs() < 1e-13 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }
    }

    #[test]
    fn mmd_is_zero_for_identical_samples_and_grows_with_a_shift() {
        let (n, d) = (6, 2);
        let z = data(4, n * d);
        let same = values(mmd_imq(
            tensor(&z).reshape([n, d]),
            tensor(&z).reshape([n, d]),
            4.0,
        ))[0];
        // Identical samples: the within terms are 2·Σ_{i≠j} k / (n(n−1)) and the cross term
        // subtracts 2·(Σ_{i≠j} k + n)/n², so the estimate is slightly negative, never positive.
        assert!(same <= 0.0 && same > -2.0 * 7.0 / n as f64, "{same}");
        let mut last = same;
        for shift in [0.5, 1.0, 2.0, 4.0] {
            let moved: Vec<f64> = z.iter().map(|v| v + shift).collect();
            let m = values(mmd_imq(
                tensor(&moved).reshape([n, d]),
                tensor(&z).reshape([n, d]),
                4.0,
            ))[0];
            assert!(m > last, "shift {shift}: {m} after {last}");
            last = m;
        }
    }

    #[test]
    fn mmd_gradients_match_central_differences() {
        let (n, d) = (4, 3);
        let inputs = vec![data(5, n * d), data(6, n * d)];
        assert_gradients_match("mmd", &inputs, 1e-6, |t| {
            mmd_imq(
                t[0].clone().reshape([n, d]),
                t[1].clone().reshape([n, d]),
                2.0 * d as f64,
            )
        });
    }
}
