//! Fused elementwise optimizer updates: `a·x + b·y`, moving averages of squares and Adam's step, each one
//! pass over memory written into the target's own buffer on flex, and the composition of
//! Burn's ops elsewhere.
//!
//! On flex (f32/f64, plain tensors) each result is bit-identical to the stock composition on
//! flex: the kernels round every scalar, product and sum to the element type exactly as Burn's
//! ops do (no fused multiply-add). What they save is the extra passes over memory, the
//! temporaries and, where the target is not shared, the allocation of the result.

use burn::tensor::Tensor;

#[cfg(feature = "flex")]
use flex::Taken;

/// `a·x + b·y` (x consumed: its buffer is reused where nothing else holds it).
///
/// Elsewhere than flex: `x·a + y·b` through Burn's ops, a factor of 1 skipped (`x + b·y` is
/// exactly the former `add_scaled`).
pub fn axpby(x: Tensor<1>, a: f64, y: &Tensor<1>, b: f64) -> Tensor<1> {
    assert_eq!(x.dims(), y.dims(), "axpby: tensors differ in length");
    #[cfg(feature = "flex")]
    let x = match flex::storage(x, y.dtype()) {
        Taken::Flex(storage, shell) => match flex::storage(y.clone(), y.dtype()) {
            Taken::Flex(ys, _) => return shell.put(crate::flex::update::axpby(storage, a, ys, b)),
            Taken::Other(_) => shell.put(storage),
        },
        Taken::Other(x) => x,
    };
    axpby_stock(x, a, y, b)
}

/// [`axpby`] with ‖y‖² and ‖a·x + b·y‖² in f64 from the same pass (YellowFin's gradient
/// average and its two norms), each equal bit for bit to [`crate::inner_products`] of the
/// tensors; the norms are `None` where this crate's kernels do not apply (then the result is
/// [`axpby`]'s, and the caller takes the inner products).
pub fn axpby_norms(x: Tensor<1>, a: f64, y: &Tensor<1>, b: f64) -> (Tensor<1>, Option<[f64; 2]>) {
    assert_eq!(x.dims(), y.dims(), "axpby_norms: tensors differ in length");
    #[cfg(feature = "flex")]
    let x = match flex::storage(x, y.dtype()) {
        Taken::Flex(storage, shell) => match flex::storage(y.clone(), y.dtype()) {
            Taken::Flex(ys, _) => {
                let (out, norms) = crate::flex::update::axpby_norms(storage, a, ys, b);
                return (shell.put(out), Some(norms));
            }
            Taken::Other(_) => shell.put(storage),
        },
        Taken::Other(x) => x,
    };
    (axpby_stock(x, a, y, b), None)
}

/// [`axpby`] through Burn's ops: `x·a + y·b`, a factor of 1 skipped.
pub(crate) fn axpby_stock(x: Tensor<1>, a: f64, y: &Tensor<1>, b: f64) -> Tensor<1> {
    let ax = if a == 1.0 { x } else { x.mul_scalar(a) };
    let by = if b == 1.0 {
        y.clone()
    } else {
        y.clone().mul_scalar(b)
    };
    ax.add(by)
}

/// The moving average of squares `v ← β·v + (1 − β)·g²` (v consumed: its buffer is reused
/// where nothing else holds it): Adam's second moment, RMSProp's square average.
pub fn square_ema(v: Tensor<1>, g: &Tensor<1>, beta: f64) -> Tensor<1> {
    assert_eq!(v.dims(), g.dims(), "square_ema: tensors differ in length");
    #[cfg(feature = "flex")]
    let v = match (
        flex::storage(v, g.dtype()),
        flex::storage(g.clone(), g.dtype()),
    ) {
        (Taken::Flex(vs, shell), Taken::Flex(gs, _)) => {
            return shell.put(crate::flex::update::square_ema(vs, gs, beta));
        }
        (v, _) => flex::restore(v),
    };
    square_ema_stock(v, g, beta)
}

/// [`square_ema`] through Burn's ops.
pub(crate) fn square_ema_stock(v: Tensor<1>, g: &Tensor<1>, beta: f64) -> Tensor<1> {
    v.mul_scalar(beta)
        .add(g.clone().square().mul_scalar(1.0 - beta))
}

/// Adam's moment updates `m ← β1·m + (1 − β1)·g` and `v ← β2·v + (1 − β2)·g²`, one fused
/// pass each ([`axpby`], [`square_ema`]).
pub fn adam_moments(
    m: Tensor<1>,
    v: Tensor<1>,
    g: &Tensor<1>,
    beta1: f64,
    beta2: f64,
) -> (Tensor<1>, Tensor<1>) {
    (axpby(m, beta1, g, 1.0 - beta1), square_ema(v, g, beta2))
}

/// Adam's step `p − s·m / (√v / c + ε)` with the bias-corrected step size `s` and
/// `c = √(1 − β2^t)` (p consumed: its buffer is reused where nothing else holds it).
pub fn adam_step(
    p: Tensor<1>,
    m: &Tensor<1>,
    v: &Tensor<1>,
    step_size: f64,
    bc2_sqrt: f64,
    eps: f64,
) -> Tensor<1> {
    #[cfg(feature = "flex")]
    let p = match (
        flex::storage(p, m.dtype()),
        flex::storage(m.clone(), m.dtype()),
        flex::storage(v.clone(), m.dtype()),
    ) {
        (Taken::Flex(ps, shell), Taken::Flex(ms, _), Taken::Flex(vs, _)) => {
            return shell.put(crate::flex::update::adam_step(
                ps, ms, vs, step_size, bc2_sqrt, eps,
            ));
        }
        (p, _, _) => flex::restore(p),
    };
    adam_step_stock(p, m, v, step_size, bc2_sqrt, eps)
}

/// [`adam_step`] through Burn's ops.
pub(crate) fn adam_step_stock(
    p: Tensor<1>,
    m: &Tensor<1>,
    v: &Tensor<1>,
    step_size: f64,
    bc2_sqrt: f64,
    eps: f64,
) -> Tensor<1> {
    let denom = v.clone().sqrt().div_scalar(bc2_sqrt).add_scalar(eps);
    p.sub(m.clone().div(denom).mul_scalar(step_size))
}

/// The scalars of [`adam_direction`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamDirection {
    /// β1 of the first moment.
    pub beta1: f64,
    /// β2 of the second moment.
    pub beta2: f64,
    /// The first moment's bias correction 1 − β1^t.
    pub bc1: f64,
    /// The second moment's bias correction 1 − β2^t.
    pub bc2: f64,
    /// ε added to the root of the corrected second moment.
    pub eps: f64,
}

/// Adam's moments and bias-corrected direction in one pass (L4Adam's direction, L4 paper Eq. 7
/// with Adam's v): `m' = β1·m + (1 − β1)·g`, `s' = β2·s + (1 − β2)·g²`, `m̂ = m'/bc1`,
/// `v = m̂ / (√(s'/bc2) + ε)`, and ⟨m̂, v⟩ in f64; returns (m', s', v, ⟨m̂, v⟩) in new buffers,
/// leaving m and s as they were (a skipped update keeps them). On flex one pass per tensor
/// with m̂ never stored, bit-identical to Burn's ops and the f64 inner product; `None`
/// elsewhere (the caller composes Burn's ops).
pub fn adam_direction(
    m: &Tensor<1>,
    s: &Tensor<1>,
    g: &Tensor<1>,
    scalars: AdamDirection,
) -> Option<(Tensor<1>, Tensor<1>, Tensor<1>, f64)> {
    #[cfg(feature = "flex")]
    {
        let dtype = g.dtype();
        let (Taken::Flex(ms, m_shell), Taken::Flex(ss, s_shell), Taken::Flex(gs, g_shell)) = (
            flex::storage(m.clone(), dtype),
            flex::storage(s.clone(), dtype),
            flex::storage(g.clone(), dtype),
        ) else {
            return None;
        };
        let (m2, s2, v, dot) = crate::flex::update::adam_direction(ms, ss, gs, scalars);
        Some((m_shell.put(m2), s_shell.put(s2), g_shell.put(v), dot))
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = (m, s, g, scalars);
        None
    }
}

/// Taking the flex storage out of a tensor and putting a result back.
#[cfg(feature = "flex")]
pub(crate) mod flex {
    use burn::backend::{BackendTensor, DispatchTensor, DispatchTensorKind};
    use burn::tensor::{DType, Tensor};
    use burn_flex::FlexTensor;

    /// A tensor's dispatch wrapper with its storage taken out.
    pub(crate) struct Shell(DispatchTensor);

    impl Shell {
        /// The tensor holding `storage` in this wrapper.
        pub(super) fn put(mut self, storage: FlexTensor) -> Tensor<1> {
            self.0.kind = DispatchTensorKind::Flex(BackendTensor::Float(storage));
            Tensor::from_dispatch(self.0)
        }
    }

    /// A tensor's flex storage taken out of it, or the tensor itself where the kernels do not
    /// apply.
    pub(crate) enum Taken {
        /// The storage and the wrapper to put a result back into.
        Flex(FlexTensor, Shell),
        /// The tensor, unchanged (another device or dtype, an autodiff tensor).
        Other(Tensor<1>),
    }

    /// The storage of a plain flex tensor of `dtype` (f32/f64, the kernels switched on), or the
    /// tensor back where the kernels do not apply (another device or dtype, an autodiff tensor).
    pub(crate) fn storage(t: Tensor<1>, dtype: DType) -> Taken {
        if t.dtype() != dtype || !crate::uses_own_kernels(&t.device(), dtype) {
            return Taken::Other(t);
        }
        let mut dispatch = t.into_dispatch();
        let kind = std::mem::replace(
            &mut dispatch.kind,
            DispatchTensorKind::Flex(BackendTensor::Float(FlexTensor::empty([0].into(), dtype))),
        );
        match kind {
            DispatchTensorKind::Flex(BackendTensor::Float(storage)) => {
                Taken::Flex(storage, Shell(dispatch))
            }
            other => {
                dispatch.kind = other;
                Taken::Other(Tensor::from_dispatch(dispatch))
            }
        }
    }

    /// The tensor of a [`storage`] result, unchanged.
    pub(super) fn restore(taken: Taken) -> Tensor<1> {
        match taken {
            Taken::Flex(storage, shell) => shell.put(storage),
            Taken::Other(t) => t,
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::testing::{data, tensor, values};
    use burn::tensor::{DType, Device};

    /// Lengths below, at and across the parallel chunk size, and an empty tensor.
    const LENGTHS: [usize; 5] = [0, 1, 9, 16_384, 50_001];

    fn bits(t: Tensor<1>) -> Vec<u64> {
        values(t).iter().map(|v| v.to_bits()).collect()
    }

    /// Asserts that `own` (the kernels) and `stock` (Burn's ops on the same device) give
    /// bit-identical results on the same inputs, for every length and both dtypes.
    fn same_as_stock(
        own: impl Fn(&[Tensor<1>]) -> Vec<Tensor<1>>,
        stock: impl Fn(&[Tensor<1>]) -> Vec<Tensor<1>>,
    ) {
        let device = Device::flex();
        for dtype in [DType::F32, DType::F64] {
            for (i, &n) in LENGTHS.iter().enumerate() {
                // Index 2 is shifted to be positive (a second moment under a square root).
                let inputs: Vec<Tensor<1>> = (0..4)
                    .map(|k| {
                        let v: Vec<f64> = data(10 * i as u64 + k, n)
                            .iter()
                            .map(|x| x * 3.0 + if k == 2 { 3.0 } else { 0.0 })
                            .collect();
                        tensor(&v, [n], &device, dtype)
                    })
                    .collect();
                let got: Vec<Vec<u64>> = own(&inputs).into_iter().map(bits).collect();
                let want: Vec<Vec<u64>> = stock(&inputs).into_iter().map(bits).collect();
                assert_eq!(got, want, "{dtype:?}, {n} values");
            }
        }
    }

    #[test]
    fn fused_updates_are_bit_identical_to_burns_ops() {
        for (a, b) in [(1.0, -0.013), (0.9, 1.0), (0.7, 0.3)] {
            same_as_stock(
                |t| vec![axpby(t[0].clone(), a, &t[1], b)],
                |t| vec![axpby_stock(t[0].clone(), a, &t[1], b)],
            );
        }
        same_as_stock(
            |t| {
                let (m, v) = adam_moments(t[1].clone(), t[2].clone(), &t[0], 0.9, 0.999);
                vec![m, v]
            },
            |t| {
                vec![
                    axpby_stock(t[1].clone(), 0.9, &t[0], 1.0 - 0.9),
                    square_ema_stock(t[2].clone(), &t[0], 0.999),
                ]
            },
        );
        same_as_stock(
            |t| vec![square_ema(t[2].clone(), &t[0], 0.99)],
            |t| vec![square_ema_stock(t[2].clone(), &t[0], 0.99)],
        );
        same_as_stock(
            |t| vec![adam_step(t[0].clone(), &t[1], &t[2], 1e-3, 0.03, 1e-8)],
            |t| {
                vec![adam_step_stock(
                    t[0].clone(),
                    &t[1],
                    &t[2],
                    1e-3,
                    0.03,
                    1e-8,
                )]
            },
        );
    }

    #[test]
    fn axpby_norms_is_bit_identical_to_axpby_and_the_inner_products() {
        let device = Device::flex();
        for dtype in [DType::F32, DType::F64] {
            for n in [0, 1, 9, 50_001, 2 * crate::flex::reduce::BLOCK + 5] {
                let x = tensor(&data(1, n), [n], &device, dtype);
                let y = tensor(&data(2, n), [n], &device, dtype);
                // Shared (x still held here) and unique targets.
                for shared in [true, false] {
                    let target = if shared {
                        x.clone()
                    } else {
                        tensor(&data(1, n), [n], &device, dtype)
                    };
                    let (out, Some([y_norm, out_norm])) = axpby_norms(target, 0.9, &y, 0.1) else {
                        panic!("the kernel applies to flex {dtype:?}");
                    };
                    let expected = axpby_stock(x.clone(), 0.9, &y, 0.1);
                    let norms = crate::inner_products(&[(&y, &y), (&out, &out)]).unwrap();
                    assert_eq!(bits(out), bits(expected), "{dtype:?} n = {n}");
                    assert_eq!(y_norm.to_bits(), norms[0].to_bits(), "{dtype:?} n = {n}");
                    assert_eq!(out_norm.to_bits(), norms[1].to_bits(), "{dtype:?} n = {n}");
                }
                assert_eq!(
                    values(x.clone()),
                    data(1, n)
                        .iter()
                        .map(|&v| if dtype == DType::F32 {
                            v as f32 as f64
                        } else {
                            v
                        })
                        .collect::<Vec<_>>(),
                    "the shared x was written"
                );
            }
        }
        #[allow(deprecated)] // ndarray is deprecated upstream and kept working here
        let ndarray = Device::ndarray();
        let x = tensor(&data(1, 5), [5], &ndarray, DType::F32);
        let (out, norms) = axpby_norms(x.clone(), 0.9, &x, 0.1);
        assert!(norms.is_none(), "ndarray takes Burn's ops");
        assert_eq!(bits(out), bits(axpby_stock(x.clone(), 0.9, &x, 0.1)));
    }

    #[test]
    fn adam_direction_is_bit_identical_to_burns_ops_and_the_inner_product() {
        let device = Device::flex();
        let scalars = AdamDirection {
            beta1: 0.9,
            beta2: 0.999,
            bc1: 1.0 - 0.9f64.powi(3),
            bc2: 1.0 - 0.999f64.powi(3),
            eps: 1e-3,
        };
        for dtype in [DType::F32, DType::F64] {
            for (i, &n) in [1usize, 9, 65_536, 70_001].iter().enumerate() {
                let make = |k: u64, square: bool| -> Tensor<1> {
                    let v: Vec<f64> = data(10 * i as u64 + k, n)
                        .iter()
                        .map(|x| if square { x * x } else { *x })
                        .collect();
                    tensor(&v, [n], &device, dtype)
                };
                let (m, s, g) = (make(1, false), make(2, true), make(3, false));
                let (m2, s2, v, dot) =
                    adam_direction(&m, &s, &g, scalars).expect("flex has the kernel");
                let m_want = m.mul_scalar(0.9).add(g.clone().mul_scalar(1.0 - 0.9));
                let s_want = s
                    .mul_scalar(0.999)
                    .add(g.clone().square().mul_scalar(1.0 - 0.999));
                let m_hat = m_want.clone().div_scalar(scalars.bc1);
                let denom = s_want
                    .clone()
                    .div_scalar(scalars.bc2)
                    .sqrt()
                    .add_scalar(scalars.eps);
                let v_want = m_hat.clone().div(denom);
                let dot_want =
                    crate::inner_products(&[(&m_hat, &v_want)]).expect("flex has the kernel")[0];
                assert_eq!(bits(m2), bits(m_want), "{dtype:?} {n}: m");
                assert_eq!(bits(s2), bits(s_want), "{dtype:?} {n}: s");
                assert_eq!(bits(v), bits(v_want), "{dtype:?} {n}: v");
                assert_eq!(dot.to_bits(), dot_want.to_bits(), "{dtype:?} {n}: dot");
            }
        }
    }

    #[test]
    fn a_shared_target_is_copied_not_written() {
        let device = Device::flex();
        for dtype in [DType::F32, DType::F64] {
            let x = tensor(&[1.0, 2.0, 3.0], [3], &device, dtype);
            let y = tensor(&[1.0, 1.0, 1.0], [3], &device, dtype);
            let held = x.clone();
            let z = axpby(x, 2.0, &y, 0.5);
            assert_eq!(values(z), vec![2.5, 4.5, 6.5]);
            assert_eq!(values(held), vec![1.0, 2.0, 3.0]);
            // A strided view (every other value of a longer tensor) as target and operand.
            let long = tensor(&[1.0, 0.0, 2.0, 0.0, 3.0, 0.0], [3, 2], &device, dtype);
            let view = long.clone().slice([0..3, 0..1]).reshape([3]);
            let z = axpby(view.clone(), 1.0, &view, 1.0);
            assert_eq!(values(z), vec![2.0, 4.0, 6.0]);
            assert_eq!(values(long.reshape([6]))[..3], [1.0, 0.0, 2.0]);
        }
    }

    #[test]
    fn autodiff_tensors_and_other_devices_take_burns_ops() {
        #[allow(deprecated)] // ndarray is deprecated upstream and kept working here
        let ndarray = Device::ndarray();
        let a = tensor(&[1.0, 2.0], [2], &ndarray, DType::F32);
        assert_eq!(values(axpby(a.clone(), 2.0, &a, 1.0)), vec![3.0, 6.0]);
        let b = tensor(&[1.0, 2.0], [2], &Device::flex().autodiff(), DType::F64).require_grad();
        let c = axpby(b.clone(), 1.0, &b, -0.5);
        assert_eq!(values(c), vec![0.5, 1.0]);
    }
}
