//! Synthetic problems generated from a seed: the badly-conditioned regression of the L4 paper.
//!
//! Rolínek & Martius, "L4: Practical loss-based stepsize adaptation for deep learning", Sec. 3.1:
//! fit Ŷ = W1·W2·X to Y = A·X with X ~ N(0, 1)^{6×1000}, A ∈ R^{10×6}, loss Σ(Ŷ − Y)² (a sum),
//! full batch. The paper states κ(A) = 1e10 and says it used Recht's code, whose A does not have
//! that conditioning. Both constructions are offered ([`ConditioningMatrix`]):
//!
//! ```text
//! recht  A = linspace(1, 1e-10, 10)[:, None] ⊙ U(0, 1)^{10×6}     (what was run; κ ≈ 20)
//! svd    A = U·diag(logspace(0, −10, 6))·Vᵀ, U, V random orthonormal  (a true κ = 1e10)
//! ```
//!
//! Samples are rows here: features `[samples, 6]` (the columns of X) and targets
//! `[samples, 10]` (the columns of AX).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{DataError, Dataset, Features, Targets};

/// Inputs of the badly-conditioned regression.
pub const BAD_REGRESSION_INPUTS: usize = 6;
/// Outputs of the badly-conditioned regression.
pub const BAD_REGRESSION_OUTPUTS: usize = 10;

/// How the target matrix A of [`bad_regression`] is built (`data.matrix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditioningMatrix {
    /// Recht's construction, what the paper ran: rows of U(0, 1) scaled by linspace(1, 1e-10).
    #[default]
    Recht,
    /// A = U·diag(1, 1e-2, …, 1e-10)·Vᵀ with random orthonormal U, V: κ(A) = 1e10.
    Svd,
}

/// The badly-conditioned regression problem with `samples` samples, generated from `seed`.
pub fn bad_regression(
    matrix: ConditioningMatrix,
    samples: usize,
    seed: u64,
) -> Result<Dataset, DataError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    let a = match matrix {
        ConditioningMatrix::Recht => recht_matrix(&mut rng),
        ConditioningMatrix::Svd => svd_matrix(&mut rng).0,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(2);
    let (n, m) = (BAD_REGRESSION_INPUTS, BAD_REGRESSION_OUTPUTS);
    let x: Vec<f64> = (0..samples * n)
        .map(|_| standard_normal(&mut rng))
        .collect();
    let mut y = vec![0.0; samples * m];
    for s in 0..samples {
        for i in 0..m {
            y[s * m + i] = (0..n).map(|j| a[i * n + j] * x[s * n + j]).sum();
        }
    }
    Dataset::new(
        Features::from_f64(samples, n, x)?,
        Targets::Values(Features::from_f64(samples, m, y)?),
    )
}

/// Recht's A (row-major 10×6): row i of U(0, 1) values scaled by linspace(1, 1e-10, 10)[i].
fn recht_matrix(rng: &mut impl Rng) -> Vec<f64> {
    let (n, m) = (BAD_REGRESSION_INPUTS, BAD_REGRESSION_OUTPUTS);
    let mut a = Vec::with_capacity(m * n);
    for i in 0..m {
        let scale = 1.0 + (1e-10 - 1.0) * i as f64 / (m - 1) as f64;
        for _ in 0..n {
            a.push(scale * rng.random::<f64>());
        }
    }
    a
}

/// The `svd` A (row-major 10×6) with its factors: U (10×6, orthonormal columns, row-major),
/// the singular values, and V (6×6, orthonormal columns, row-major).
fn svd_matrix(rng: &mut impl Rng) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let (n, m) = (BAD_REGRESSION_INPUTS, BAD_REGRESSION_OUTPUTS);
    let u = orthonormal_columns(m, n, rng);
    let v = orthonormal_columns(n, n, rng);
    let sigma: Vec<f64> = (0..n)
        .map(|k| 10f64.powf(-10.0 * k as f64 / (n - 1) as f64))
        .collect();
    let mut a = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            a[i * n + j] = (0..n).map(|k| u[i * n + k] * sigma[k] * v[j * n + k]).sum();
        }
    }
    (a, u, sigma, v)
}

/// A `rows × cols` matrix (row-major) with orthonormal columns: Gaussian columns through
/// modified Gram-Schmidt, applied twice for orthogonality to rounding.
fn orthonormal_columns(rows: usize, cols: usize, rng: &mut impl Rng) -> Vec<f64> {
    let mut q: Vec<Vec<f64>> = (0..cols)
        .map(|_| (0..rows).map(|_| standard_normal(rng)).collect())
        .collect();
    for k in 0..cols {
        let (done, rest) = q.split_at_mut(k);
        let column = &mut rest[0];
        for _ in 0..2 {
            for previous in done.iter() {
                let proj: f64 = column.iter().zip(previous).map(|(a, b)| a * b).sum();
                for (value, p) in column.iter_mut().zip(previous) {
                    *value -= proj * p;
                }
            }
        }
        let norm = column.iter().map(|x| x * x).sum::<f64>().sqrt();
        for value in column.iter_mut() {
            *value /= norm;
        }
    }
    let mut out = vec![0.0; rows * cols];
    for (k, column) in q.iter().enumerate() {
        for (r, value) in column.iter().enumerate() {
            out[r * cols + k] = *value;
        }
    }
    out
}

/// One N(0, 1) draw (Box-Muller).
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Eigenvalues of a symmetric n×n matrix (row-major) by cyclic Jacobi rotations.
    fn symmetric_eigenvalues(mut s: Vec<f64>, n: usize) -> Vec<f64> {
        for _ in 0..100 {
            for p in 0..n {
                for q in p + 1..n {
                    let apq = s[p * n + q];
                    if apq.abs() < 1e-300 {
                        continue;
                    }
                    let theta = (s[q * n + q] - s[p * n + p]) / (2.0 * apq);
                    let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                    let t = if theta == 0.0 { 1.0 } else { t };
                    let c = 1.0 / (t * t + 1.0).sqrt();
                    let sn = t * c;
                    for k in 0..n {
                        let (skp, skq) = (s[k * n + p], s[k * n + q]);
                        s[k * n + p] = c * skp - sn * skq;
                        s[k * n + q] = sn * skp + c * skq;
                    }
                    for k in 0..n {
                        let (spk, sqk) = (s[p * n + k], s[q * n + k]);
                        s[p * n + k] = c * spk - sn * sqk;
                        s[q * n + k] = sn * spk + c * sqk;
                    }
                }
            }
        }
        (0..n).map(|i| s[i * n + i]).collect()
    }

    fn condition_number(a: &[f64]) -> f64 {
        let (n, m) = (BAD_REGRESSION_INPUTS, BAD_REGRESSION_OUTPUTS);
        let mut ata = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                ata[i * n + j] = (0..m).map(|r| a[r * n + i] * a[r * n + j]).sum();
            }
        }
        let eig = symmetric_eigenvalues(ata, n);
        let max = eig.iter().cloned().fold(f64::MIN, f64::max);
        let min = eig.iter().cloned().fold(f64::MAX, f64::min);
        (max / min).sqrt()
    }

    #[test]
    fn recht_matrix_is_far_better_conditioned_than_the_paper_states() {
        for seed in 0..5 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(1);
            let a = recht_matrix(&mut rng);
            let kappa = condition_number(&a);
            assert!(kappa > 2.0 && kappa < 1e3, "seed {seed}: κ = {kappa}");
            // The last row is scaled by 1e-10.
            assert!(a[9 * 6..].iter().all(|x| (0.0..=1e-10).contains(x)));
        }
    }

    #[test]
    fn svd_matrix_has_the_stated_singular_values() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (a, u, sigma, v) = svd_matrix(&mut rng);
        let (n, m) = (6, 10);
        assert_eq!(sigma[0], 1.0);
        assert!((sigma[5] / 1e-10 - 1.0).abs() < 1e-12);
        for k in 0..n {
            // A·v_k = σ_k·u_k, to rounding relative to σ_0 = 1.
            for i in 0..m {
                let av: f64 = (0..n).map(|j| a[i * n + j] * v[j * n + k]).sum();
                assert!((av - sigma[k] * u[i * n + k]).abs() < 1e-14, "k {k}");
            }
            // Orthonormal columns.
            for l in 0..n {
                let uu: f64 = (0..m).map(|i| u[i * n + k] * u[i * n + l]).sum();
                let vv: f64 = (0..n).map(|j| v[j * n + k] * v[j * n + l]).sum();
                let expected = if k == l { 1.0 } else { 0.0 };
                assert!((uu - expected).abs() < 1e-14 && (vv - expected).abs() < 1e-14);
            }
        }
    }

    #[test]
    fn bad_regression_targets_are_a_times_x_and_seeded() {
        let d = bad_regression(ConditioningMatrix::Recht, 1000, 7).unwrap();
        assert_eq!(d.len(), 1000);
        assert_eq!(d.features.cols(), 6);
        let Targets::Values(y) = &d.targets else {
            panic!("regression targets")
        };
        assert_eq!(y.cols(), 10);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        rng.set_stream(1);
        let a = recht_matrix(&mut rng);
        let x = d.features.gather_f64(&[17]);
        let row = y.gather_f64(&[17]);
        for i in 0..10 {
            let expected: f64 = (0..6).map(|j| a[i * 6 + j] * x[j]).sum();
            assert_eq!(row[i], expected);
        }
        let mean = d.features.gather_f64(&(0..1000).collect::<Vec<_>>());
        let avg = mean.iter().sum::<f64>() / mean.len() as f64;
        assert!(avg.abs() < 0.05, "X ~ N(0, 1): mean {avg}");
        assert_eq!(
            d,
            bad_regression(ConditioningMatrix::Recht, 1000, 7).unwrap()
        );
        assert_ne!(
            d,
            bad_regression(ConditioningMatrix::Recht, 1000, 8).unwrap()
        );
        assert_ne!(d, bad_regression(ConditioningMatrix::Svd, 1000, 7).unwrap());
    }
}
