//! Test helpers: seeded values, tensors of a chosen dtype on flex, and comparisons.

use burn::tensor::{DType, Device, Tensor, TensorData};

/// `n` values in (−1, 1) from a small linear congruential generator seeded by `seed`.
pub(crate) fn data(seed: u64, n: usize) -> Vec<f64> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

/// A tensor of `shape` holding `values` as `dtype` on `device`.
pub(crate) fn tensor<const D: usize>(
    values: &[f64],
    shape: [usize; D],
    device: &Device,
    dtype: DType,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), (device, dtype))
}

/// The values of a tensor as f64.
pub(crate) fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.inner()
        .into_data()
        .try_into_vec_as::<f64>()
        .expect("float tensors convert to f64")
}

/// Asserts `a` and `b` agree to `rel` times the largest magnitude of `b` (norm-wise relative).
pub(crate) fn assert_close(what: &str, a: &[f64], b: &[f64], rel: f64) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let scale = b.iter().fold(0.0_f64, |m, v| m.max(v.abs())).max(1e-300);
    for (j, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= rel * scale,
            "{what}[{j}]: {x:e} vs {y:e} (scale {scale:e}, rel {rel:e})"
        );
    }
}

/// Σ y ⊙ r: a scalar whose gradient with respect to y is r.
pub(crate) fn weigh<const D: usize>(y: Tensor<D>, r: &[f64], dtype: DType) -> Tensor<1> {
    let dims = y.dims();
    let device = y.device();
    y.mul(tensor(r, dims, &device, dtype)).sum()
}
