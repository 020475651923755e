//! Whole-model vector math over a parameter list.
//!
//! Every optimizer in this crate sees the model as one long vector split into tensors
//! (`&[Tensor<1>]`, one flattened tensor per parameter). The update rules of the papers are
//! written in terms of inner products and norms over *all* parameters; this module is that small
//! vocabulary, so optimizer bodies read like the paper's equations.
//!
//! Reductions are accumulated in f64: each tensor is cast to f64 before its inner product where
//! the device supports f64 (wgpu generally does not: there they run in f32), and the per-tensor
//! results are added on the host in f64.
//!
//! **Sync points**: every function here that returns an `f64` reads one small tensor back from
//! the device (one host-device round trip on a GPU); the list-returning ones do not sync.

use burn::tensor::{DType, Device, Tensor};

/// One flattened tensor per model parameter, in the model's parameter order.
pub type ParamList = Vec<Tensor<1>>;

/// One factor of an inner product, widened to f64 where the device has it.
fn widen(t: &Tensor<1>, wide: bool) -> Tensor<1> {
    if wide {
        t.clone().cast(DType::F64)
    } else {
        t.clone()
    }
}

/// Whether inner products run as matrix products on this device.
///
/// Measured on the MNIST MLP's gradient (573,910 values, `train bench`): on flex a
/// `[1, n] × [n, 1]` product is 1.2-1.5× faster than an elementwise product and a sum (flex's
/// sum is a sequential loop), on ndarray it is slower (its gemm is poor at that shape), and GPUs
/// reduce better than they multiply such shapes.
fn via_gemm(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    {
        *device == Device::flex()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

/// ⟨x_k, y_k⟩ for each pair, in f64 (one sync).
///
/// On flex (f32/f64) this is steplab-kernels' fused pass. Elsewhere, accumulated in f64 where
/// the device supports it: through gemm, both factors are cast to f64
/// (a pair given as the same tensor twice, a squared norm, is cast once); otherwise the
/// elementwise products are cast to f64 before the sum.
fn inner_products(pairs: &[(&Tensor<1>, &Tensor<1>)]) -> Vec<f64> {
    let Some((first, _)) = pairs.first() else {
        return Vec::new();
    };
    // Flex: one fused pass per pair from the stored values (steplab-kernels).
    if let Some(sums) = steplab_kernels::inner_products(pairs) {
        return sums;
    }
    let device = first.device();
    let wide = device.supports_dtype(DType::F64);
    let gemm = via_gemm(&device);
    let parts: Vec<Tensor<1>> = pairs
        .iter()
        .map(|(x, y)| {
            let n = x.dims()[0];
            assert_eq!(n, y.dims()[0], "tensors differ in length");
            if gemm {
                let xw = widen(x, wide);
                let yw = if std::ptr::eq(*x, *y) {
                    xw.clone()
                } else {
                    widen(y, wide)
                };
                xw.reshape([1, n]).matmul(yw.reshape([n, 1])).reshape([1])
            } else {
                let product = (*x).clone().mul((*y).clone());
                widen(&product, wide).sum()
            }
        })
        .collect();
    // SYNC: one read-back for all pairs.
    Tensor::cat(parts, 0)
        .into_data()
        .try_into_vec_as::<f64>()
        .expect("a float tensor always converts to f64")
}

/// Per-tensor inner products ⟨a_i, b_i⟩ (one sync).
pub fn dot_per_tensor(a: &[Tensor<1>], b: &[Tensor<1>]) -> Vec<f64> {
    assert_eq!(a.len(), b.len(), "parameter lists differ in length");
    inner_products(&a.iter().zip(b).collect::<Vec<_>>())
}

/// Per-tensor squared norms ‖a_i‖² (one sync).
pub fn sq_norm_per_tensor(a: &[Tensor<1>]) -> Vec<f64> {
    inner_products(&a.iter().map(|x| (x, x)).collect::<Vec<_>>())
}

/// Whole-model inner product ⟨a, b⟩ = Σ_i ⟨a_i, b_i⟩ (one sync).
pub fn dot(a: &[Tensor<1>], b: &[Tensor<1>]) -> f64 {
    dot_per_tensor(a, b).iter().sum()
}

/// Whole-model squared norm ‖a‖² (one sync).
pub fn sq_norm(a: &[Tensor<1>]) -> f64 {
    sq_norm_per_tensor(a).iter().sum()
}

/// Several whole-model inner products in one sync: `pairs[k] = (a, b)` gives ⟨a, b⟩. On flex a
/// squared norm ⟨a, a⟩ rides along the pass of a product ⟨a, b⟩ with the same `a`, so list the
/// shared list first in both.
pub fn dots(pairs: &[(&[Tensor<1>], &[Tensor<1>])]) -> Vec<f64> {
    let mut flat = Vec::new();
    for (a, b) in pairs {
        assert_eq!(a.len(), b.len(), "parameter lists differ in length");
        flat.extend(a.iter().zip(b.iter()));
    }
    let sums = inner_products(&flat);
    let mut out = Vec::with_capacity(pairs.len());
    let mut at = 0;
    for (a, _) in pairs {
        out.push(sums[at..at + a.len()].iter().sum());
        at += a.len();
    }
    out
}

/// `a + scale·b`, tensor by tensor (one fused pass per tensor on flex: steplab-kernels' `axpby`).
pub fn add_scaled(a: &[Tensor<1>], b: &[Tensor<1>], scale: f64) -> ParamList {
    assert_eq!(a.len(), b.len(), "parameter lists differ in length");
    a.iter()
        .zip(b)
        .map(|(x, y)| steplab_kernels::axpby(x.clone(), 1.0, y, scale))
        .collect()
}

/// `a + scale·b`, tensor by tensor, consuming both lists: where a tensor of `a` is not shared,
/// its buffer is reused (no allocation), so pass lists the caller no longer needs.
pub fn add_scaled_owned(a: ParamList, b: ParamList, scale: f64) -> ParamList {
    assert_eq!(a.len(), b.len(), "parameter lists differ in length");
    a.into_iter()
        .zip(&b)
        .map(|(x, y)| steplab_kernels::axpby(x, 1.0, y, scale))
        .collect()
}

/// `alpha·a + beta·b`, tensor by tensor, consuming `a` (its buffers reused where not shared):
/// moving averages `β·avg + (1 − β)·x` and momentum buffers `μ·buf + d` in one pass each.
pub fn scaled_add(a: ParamList, alpha: f64, b: &[Tensor<1>], beta: f64) -> ParamList {
    assert_eq!(a.len(), b.len(), "parameter lists differ in length");
    a.into_iter()
        .zip(b)
        .map(|(x, y)| steplab_kernels::axpby(x, alpha, y, beta))
        .collect()
}

/// [`scaled_add`] with ‖b‖² and ‖alpha·a + beta·b‖² over the whole model, in f64 (one sync):
/// on flex from the same pass as the update, elsewhere through [`dots`]; equal, bit for bit,
/// to [`dots`] of the lists either way.
pub fn scaled_add_norms(
    a: ParamList,
    alpha: f64,
    b: &[Tensor<1>],
    beta: f64,
) -> (ParamList, f64, f64) {
    assert_eq!(a.len(), b.len(), "parameter lists differ in length");
    let mut out = Vec::with_capacity(a.len());
    let (mut b_norms, mut out_norms) = (Vec::new(), Vec::new());
    let mut fused = true;
    for (x, y) in a.into_iter().zip(b) {
        let (z, norms) = steplab_kernels::axpby_norms(x, alpha, y, beta);
        out.push(z);
        match norms {
            Some([y_norm, z_norm]) => {
                b_norms.push(y_norm);
                out_norms.push(z_norm);
            }
            None => fused = false,
        }
    }
    if !fused {
        let sums = dots(&[(b, b), (&out, &out)]);
        return (out, sums[0], sums[1]);
    }
    // Summed over the tensors as `dots` sums them.
    let (b_norm, out_norm) = (b_norms.iter().sum(), out_norms.iter().sum());
    (out, b_norm, out_norm)
}

/// ⟨d, m / (√v + ε)⟩ over the whole model, in f64 (one sync): Adam-HD's hypergradient with
/// Adam's moments m and v. On flex one fused pass per tensor, without storing the quotient;
/// elsewhere the quotient is formed with Burn's ops and [`dot`] taken.
pub fn preconditioned_dot(d: &[Tensor<1>], m: &[Tensor<1>], v: &[Tensor<1>], eps: f64) -> f64 {
    assert!(
        d.len() == m.len() && m.len() == v.len(),
        "parameter lists differ in length"
    );
    let triples: Vec<_> = d
        .iter()
        .zip(m)
        .zip(v)
        .map(|((d, m), v)| (d, m, v))
        .collect();
    if let Some(sums) = steplab_kernels::preconditioned_inner_products(&triples, eps) {
        return sums.iter().sum();
    }
    let quotients: ParamList = m
        .iter()
        .zip(v)
        .map(|(m, v)| m.clone().div(v.clone().sqrt().add_scalar(eps)))
        .collect();
    dot(d, &quotients)
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
        assert_eq!(
            values(&add_scaled_owned(a, b, -0.5)),
            vec![vec![0.5, 1.5], vec![4.0]]
        );
    }

    #[cfg(feature = "flex")]
    #[test]
    fn flex_kernels_give_the_same_f64_inner_products() {
        let flex = Device::flex();
        let values: Vec<f64> = (0..1000)
            .map(|i| ((i * 37 % 101) as f64 - 50.0) / 7.0)
            .collect();
        let other: Vec<f64> = values.iter().map(|v| v * 0.5 - 1.0).collect();
        let on = |d: &Device| {
            (
                list(&[&values, &[1.0, 2.0]], d),
                list(&[&other, &[3.0, -1.0]], d),
            )
        };
        let (a, b) = on(&flex);
        let (c, e) = on(&device());
        assert!(via_gemm(&flex) && !via_gemm(&device()));
        let exact: f64 = values.iter().zip(&other).map(|(x, y)| x * y).sum::<f64>() + 1.0;
        for got in [dot(&a, &b), dot(&c, &e)] {
            assert!(
                (got - exact).abs() <= 1e-12 * exact.abs(),
                "{got} vs {exact}"
            );
        }
        assert_eq!(sq_norm_per_tensor(&a)[1], 5.0);
    }
}
