//! Whole-model vector math over a parameter list.
//!
//! Every optimizer in this crate sees the model as one long vector split into tensors
//! (`&[Tensor<1>]`, one flattened tensor per parameter). The update rules of the papers are
//! written in terms of inner products and norms over *all* parameters; this module is that small
//! vocabulary, so optimizer bodies read like the paper's equations.
//!
//! Reductions are accumulated in f64: each tensor is cast to f64 before it is summed where the
//! device supports f64, and the per-tensor partial sums are added on the host in f64.
//!
//! **Sync points**: every function here that returns an `f64` reads one small tensor back from
//! the device (one host-device round trip on a GPU); the list-returning ones do not sync.

use burn::tensor::{DType, Tensor};

/// One flattened tensor per model parameter, in the model's parameter order.
pub type ParamList = Vec<Tensor<1>>;

/// Sum of each tensor's elements, reduced in f64 where the device supports it.
fn reduce_sums(parts: Vec<Tensor<1>>) -> Vec<f64> {
    if parts.is_empty() {
        return Vec::new();
    }
    let device = parts[0].device();
    let wide = device.supports_dtype(DType::F64);
    let sums: Vec<Tensor<1>> = parts
        .into_iter()
        .map(|t| {
            if wide {
                t.cast(DType::F64).sum()
            } else {
                t.sum()
            }
        })
        .collect();
    // SYNC: one read-back for all tensors.
    Tensor::cat(sums, 0)
        .into_data()
        .try_into_vec_as::<f64>()
        .expect("a float tensor always converts to f64")
}

/// Per-tensor inner products ⟨a_i, b_i⟩ (one sync).
pub fn dot_per_tensor(a: &[Tensor<1>], b: &[Tensor<1>]) -> Vec<f64> {
    assert_eq!(a.len(), b.len(), "parameter lists differ in length");
    reduce_sums(
        a.iter()
            .zip(b)
            .map(|(x, y)| x.clone().mul(y.clone()))
            .collect(),
    )
}

/// Per-tensor squared norms ‖a_i‖² (one sync).
pub fn sq_norm_per_tensor(a: &[Tensor<1>]) -> Vec<f64> {
    reduce_sums(a.iter().map(|x| x.clone().square()).collect())
}

/// Whole-model inner product ⟨a, b⟩ = Σ_i ⟨a_i, b_i⟩ (one sync).
pub fn dot(a: &[Tensor<1>], b: &[Tensor<1>]) -> f64 {
    dot_per_tensor(a, b).iter().sum()
}

/// Whole-model squared norm ‖a‖² (one sync).
pub fn sq_norm(a: &[Tensor<1>]) -> f64 {
    sq_norm_per_tensor(a).iter().sum()
}

/// Several whole-model inner products in one sync: `pairs[k] = (a, b)` gives ⟨a, b⟩.
pub fn dots(pairs: &[(&[Tensor<1>], &[Tensor<1>])]) -> Vec<f64> {
    let lens: Vec<usize> = pairs.iter().map(|(a, _)| a.len()).collect();
    let parts: Vec<Tensor<1>> = pairs
        .iter()
        .flat_map(|(a, b)| {
            assert_eq!(a.len(), b.len(), "parameter lists differ in length");
            a.iter()
                .zip(b.iter())
                .map(|(x, y)| x.clone().mul(y.clone()))
        })
        .collect();
    let sums = reduce_sums(parts);
    let mut out = Vec::with_capacity(pairs.len());
    let mut at = 0;
    for len in lens {
        out.push(sums[at..at + len].iter().sum());
        at += len;
    }
    out
}

/// `a + scale·b`, tensor by tensor.
pub fn add_scaled(a: &[Tensor<1>], b: &[Tensor<1>], scale: f64) -> ParamList {
    assert_eq!(a.len(), b.len(), "parameter lists differ in length");
    a.iter()
        .zip(b)
        .map(|(x, y)| x.clone().add(y.clone().mul_scalar(scale)))
        .collect()
}

/// `scale·a`, tensor by tensor.
pub fn scaled(a: &[Tensor<1>], scale: f64) -> ParamList {
    a.iter().map(|x| x.clone().mul_scalar(scale)).collect()
}

/// Tensors of zeros shaped, typed and placed like `a`.
pub fn zeros_like(a: &[Tensor<1>]) -> ParamList {
    a.iter().map(|x| x.zeros_like()).collect()
}

/// Total number of scalar parameters in the list.
pub fn num_elements(a: &[Tensor<1>]) -> usize {
    a.iter().map(|x| x.dims()[0]).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{device, list, values};

    #[test]
    fn dot_and_norm_sum_over_all_tensors() {
        let d = device();
        let a = list(&[&[1.0, 2.0], &[3.0]], &d);
        let b = list(&[&[4.0, -1.0], &[0.5]], &d);
        assert_eq!(dot(&a, &b), 4.0 - 2.0 + 1.5);
        assert_eq!(sq_norm(&a), 14.0);
        assert_eq!(dot_per_tensor(&a, &b), vec![2.0, 1.5]);
        assert_eq!(dots(&[(&a, &b), (&a, &a)]), vec![3.5, 14.0]);
    }

    #[test]
    fn add_scaled_is_axpy() {
        let d = device();
        let a = list(&[&[1.0, 2.0], &[3.0]], &d);
        let b = list(&[&[1.0, 1.0], &[-2.0]], &d);
        assert_eq!(
            values(&add_scaled(&a, &b, -0.5)),
            vec![vec![0.5, 1.5], vec![4.0]]
        );
        assert_eq!(num_elements(&a), 3);
    }
}
