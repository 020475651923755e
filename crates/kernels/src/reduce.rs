//! Whole-model inner products on flex in one fused pass per tensor pair: each product is
//! accumulated in f64 straight from the f32/f64 storage, with no cast copies, no product
//! tensor and no per-tensor read-back.

use burn::tensor::Tensor;

/// ⟨x_k, y_k⟩ in f64 for each pair, or `None` where this crate has no kernel for them (not
/// flex, a dtype other than f32/f64, tensors of an autodiff graph, the kernels switched off):
/// then the caller uses Burn's ops.
///
/// Sums run over fixed blocks of values in parallel and the blocks' sums are added in order,
/// so the result does not depend on the thread count or scheduling.
pub fn inner_products(pairs: &[(&Tensor<1>, &Tensor<1>)]) -> Option<Vec<f64>> {
    let (first, _) = pairs.first()?;
    let dtype = first.dtype();
    if !crate::uses_own_kernels(&first.device(), dtype) {
        return None;
    }
    #[cfg(feature = "flex")]
    {
        let mut storages = Vec::with_capacity(pairs.len());
        for (x, y) in pairs {
            assert_eq!(
                x.dims(),
                y.dims(),
                "inner product of tensors of different lengths"
            );
            let same = std::ptr::eq(*x, *y);
            storages.push((
                flex_storage(x, dtype)?,
                if same {
                    None
                } else {
                    Some(flex_storage(y, dtype)?)
                },
            ));
        }
        Some(crate::flex::reduce::inner_products(&storages))
    }
    #[cfg(not(feature = "flex"))]
    None
}

/// ⟨d_k, m_k / (√v_k + ε)⟩ in f64 for each triple (Adam-HD's hypergradient with Adam's moments),
/// the quotient rounded to the tensors' dtype as Burn's ops would store it, without
/// materialising it; `None` where this crate has no kernel for them (as [`inner_products`]).
/// Equal, bit for bit, to [`inner_products`] of d and the stored quotient.
pub fn preconditioned_inner_products(
    triples: &[(&Tensor<1>, &Tensor<1>, &Tensor<1>)],
    eps: f64,
) -> Option<Vec<f64>> {
    let (first, _, _) = triples.first()?;
    let dtype = first.dtype();
    if !crate::uses_own_kernels(&first.device(), dtype) {
        return None;
    }
    #[cfg(feature = "flex")]
    {
        let mut storages = Vec::with_capacity(triples.len());
        for (d, m, v) in triples {
            assert!(
                d.dims() == m.dims() && m.dims() == v.dims(),
                "preconditioned inner product of tensors of different lengths"
            );
            storages.push((
                flex_storage(d, dtype)?,
                flex_storage(m, dtype)?,
                flex_storage(v, dtype)?,
            ));
        }
        Some(crate::flex::reduce::preconditioned_inner_products(
            &storages, eps,
        ))
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = eps;
        None
    }
}

/// The flex storage of a plain (non-autodiff) flex tensor of `dtype`.
#[cfg(feature = "flex")]
fn flex_storage(t: &Tensor<1>, dtype: burn::tensor::DType) -> Option<burn_flex::FlexTensor> {
    match crate::update::flex::storage(t.clone(), dtype) {
        crate::update::flex::Taken::Flex(storage, _) => Some(storage),
        crate::update::flex::Taken::Other(_) => None,
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::testing::{data, tensor};
    use burn::tensor::{DType, Device};

    #[test]
    fn inner_products_equal_the_f64_sums_and_repeat_bit_for_bit() {
        let device = Device::flex();
        // Lengths below, at and across the block size, and an empty tensor.
        for dtype in [DType::F32, DType::F64] {
            let lengths = [0usize, 1, 7, 65_536, 200_003];
            let xs: Vec<Vec<f64>> = lengths
                .iter()
                .enumerate()
                .map(|(i, n)| data(i as u64, *n))
                .collect();
            let ys: Vec<Vec<f64>> = lengths
                .iter()
                .enumerate()
                .map(|(i, n)| data(100 + i as u64, *n))
                .collect();
            let tx: Vec<Tensor<1>> = xs
                .iter()
                .map(|v| tensor(v, [v.len()], &device, dtype))
                .collect();
            let ty: Vec<Tensor<1>> = ys
                .iter()
                .map(|v| tensor(v, [v.len()], &device, dtype))
                .collect();
            let mut pairs: Vec<(&Tensor<1>, &Tensor<1>)> = tx.iter().zip(&ty).collect();
            pairs.extend(tx.iter().map(|t| (t, t)));
            let got = inner_products(&pairs).expect("flex has the kernel");
            // The exact products of the stored values (rounded to the dtype first).
            let stored = |v: &[f64]| -> Vec<f64> {
                if dtype == DType::F32 {
                    v.iter().map(|x| *x as f32 as f64).collect()
                } else {
                    v.to_vec()
                }
            };
            let mut want: Vec<f64> = xs
                .iter()
                .zip(&ys)
                .map(|(x, y)| stored(x).iter().zip(stored(y)).map(|(a, b)| a * b).sum())
                .collect();
            want.extend(
                xs.iter()
                    .map(|x| stored(x).iter().map(|a| a * a).sum::<f64>()),
            );
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-12 * w.abs().max(1.0),
                    "{dtype:?} pair {k}: {g} vs {w}"
                );
            }
            let one_thread = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .expect("a pool");
            let again = one_thread.install(|| inner_products(&pairs).expect("flex has the kernel"));
            assert!(
                got.iter()
                    .zip(&again)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            );
        }
    }

    #[test]
    fn preconditioned_products_equal_those_of_the_stored_quotient_bit_for_bit() {
        let device = Device::flex();
        for dtype in [DType::F32, DType::F64] {
            let lengths = [1usize, 7, 65_536, 70_001];
            let make = |seed: u64, shift: f64| -> Vec<Tensor<1>> {
                lengths
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| {
                        let v: Vec<f64> = data(seed + i as u64, n)
                            .iter()
                            .map(|x| x * x * shift + x * (1.0 - shift))
                            .collect();
                        tensor(&v, [n], &device, dtype)
                    })
                    .collect()
            };
            // v ≥ 0 (squares), some of it zero-ish so that ε matters.
            let (d, m, v) = (make(1, 0.0), make(20, 0.0), make(40, 1.0));
            let eps = 1e-3;
            let triples: Vec<_> = d
                .iter()
                .zip(&m)
                .zip(&v)
                .map(|((d, m), v)| (d, m, v))
                .collect();
            let got = preconditioned_inner_products(&triples, eps).expect("flex has the kernel");
            let quotients: Vec<Tensor<1>> = m
                .iter()
                .zip(&v)
                .map(|(m, v)| m.clone().div(v.clone().sqrt().add_scalar(eps)))
                .collect();
            let pairs: Vec<_> = d.iter().zip(&quotients).collect();
            let want = inner_products(&pairs).expect("flex has the kernel");
            assert_eq!(
                got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "{dtype:?}"
            );
        }
    }

    #[test]
    fn other_devices_and_graph_tensors_are_left_to_burn() {
        #[allow(deprecated)] // ndarray is deprecated upstream and kept working here
        let ndarray = Device::ndarray();
        let a = tensor(&[1.0, 2.0], [2], &ndarray, DType::F32);
        assert!(inner_products(&[(&a, &a)]).is_none());
        let b = tensor(&[1.0, 2.0], [2], &Device::flex().autodiff(), DType::F32).require_grad();
        assert!(inner_products(&[(&b, &b)]).is_none());
        assert!(inner_products(&[]).is_none());
    }
}
