//! The public dense layer: this crate's kernel on flex, Burn's matmul, add and ReLU elsewhere.

use burn::tensor::Tensor;
use burn::tensor::activation::relu as burn_relu;

/// `act(x·W + b)` for `x` `[batch, inputs]`, `w` `[inputs, outputs]`, `b` `[outputs]`, with act
/// ReLU when `relu` and the identity otherwise (a fully connected layer of the MLP family).
///
/// On flex with f32/f64 this is the crate's own kernel with its own backward (bias and ReLU
/// fused into the product's output, the gradients as gemms on transposed views); elsewhere it
/// is [`dense_stock`]. The two agree to rounding (the kernel adds x·W onto the bias instead of
/// the bias onto x·W).
pub fn dense(x: Tensor<2>, w: Tensor<2>, b: Tensor<1>, relu: bool) -> Tensor<2> {
    if !crate::uses_own_kernels(&x.device(), x.dtype()) {
        return dense_stock(x, w, b, relu);
    }
    #[cfg(feature = "flex")]
    {
        use crate::ops::FlexKernels;
        use burn::backend::Dispatch;
        Tensor::<2>::from_dispatch(<Dispatch as FlexKernels>::dense_plain(
            x.into_dispatch(),
            w.into_dispatch(),
            b.into_dispatch(),
            relu,
        ))
    }
    #[cfg(not(feature = "flex"))]
    unreachable!("uses_own_kernels is false without the flex feature")
}

/// Burn's own ops with the arguments of [`dense`]: `x.matmul(w) + b`, then ReLU.
pub fn dense_stock(x: Tensor<2>, w: Tensor<2>, b: Tensor<1>, relu: bool) -> Tensor<2> {
    let outputs = b.dims()[0];
    let y = x.matmul(w).add(b.reshape([1, outputs]));
    if relu { burn_relu(y) } else { y }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::testing::{assert_close, data, tensor, values, weigh};
    use burn::tensor::{DType, Device};

    /// (batch, inputs, outputs) shapes: tiny, odd, and above the threading threshold.
    const SHAPES: [(usize, usize, usize); 4] = [(1, 1, 1), (3, 5, 7), (17, 33, 9), (100, 120, 90)];

    /// Forward values and the gradients of Σ y ⊙ r with respect to x, W and b.
    fn run(
        device: &Device,
        dtype: DType,
        (batch, inputs, outputs): (usize, usize, usize),
        relu: bool,
        own: bool,
    ) -> [Vec<f64>; 4] {
        let x = tensor(&data(1, batch * inputs), [batch, inputs], device, dtype).require_grad();
        let w = tensor(&data(2, inputs * outputs), [inputs, outputs], device, dtype).require_grad();
        let b = tensor(&data(3, outputs), [outputs], device, dtype).require_grad();
        let y = if own {
            dense(x.clone(), w.clone(), b.clone(), relu)
        } else {
            dense_stock(x.clone(), w.clone(), b.clone(), relu)
        };
        let r = data(4, batch * outputs);
        let grads = weigh(y.clone(), &r, dtype).backward();
        let grad = |t: &Tensor<2>| values(t.grad(&grads).expect("tracked"));
        [
            values(y),
            grad(&x),
            grad(&w),
            values(b.grad(&grads).expect("tracked")),
        ]
    }

    #[test]
    fn dense_matches_burns_ops_in_f64_and_f32() {
        let device = Device::flex().autodiff();
        for (dtype, rel) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            for shape in SHAPES {
                for relu in [false, true] {
                    let own = run(&device, dtype, shape, relu, true);
                    let stock = run(&device, dtype, shape, relu, false);
                    for (k, what) in ["y", "dx", "dW", "db"].iter().enumerate() {
                        assert_close(
                            &format!("{what} {dtype:?} {shape:?} relu={relu}"),
                            &own[k],
                            &stock[k],
                            rel,
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn dense_gradients_match_central_differences() {
        let device = Device::flex().autodiff();
        let (batch, inputs, outputs) = (4, 6, 5);
        let r = data(4, batch * outputs);
        let xs = data(1, batch * inputs);
        let ws = data(2, inputs * outputs);
        let bs = data(3, outputs);
        let objective = |xs: &[f64], ws: &[f64], bs: &[f64]| -> f64 {
            let y = dense(
                tensor(xs, [batch, inputs], &Device::flex(), DType::F64),
                tensor(ws, [inputs, outputs], &Device::flex(), DType::F64),
                tensor(bs, [outputs], &Device::flex(), DType::F64),
                true,
            );
            values(y).iter().zip(&r).map(|(a, b)| a * b).sum()
        };
        let [_, dx, dw, db] = run(&device, DType::F64, (batch, inputs, outputs), true, true);
        let h = 1e-6;
        let check = |what: &str, analytic: &[f64], which: usize| {
            let numeric: Vec<f64> = (0..analytic.len())
                .map(|j| {
                    let shifted = |s: f64| {
                        let (mut x, mut w, mut b) = (xs.clone(), ws.clone(), bs.clone());
                        [&mut x, &mut w, &mut b][which][j] += s;
                        objective(&x, &w, &b)
                    };
                    (shifted(h) - shifted(-h)) / (2.0 * h)
                })
                .collect();
            assert_close(what, analytic, &numeric, 1e-7);
        };
        check("dx", &dx, 0);
        check("dW", &dw, 1);
        check("db", &db, 2);
    }

    #[test]
    fn relu_keeps_nan_and_its_gradient() {
        let device = Device::flex();
        // NaN · 0 is NaN: the NaN comes in through the bias.
        let x = tensor(&[1.0, -1.0], [1, 2], &device, DType::F32);
        let w = tensor(&[1.0, 0.0, 0.0, 1.0], [2, 2], &device, DType::F32);
        let b = tensor(&[f64::NAN, 0.0], [2], &device, DType::F32);
        let y = values(dense(x.clone(), w.clone(), b.clone(), true));
        assert!(y[0].is_nan(), "{y:?}");
        assert_eq!(y[1], 0.0);
        // The gradient mask keeps the NaN output's gradient (Burn's relu_backward does too).
        let ad = Device::flex().autodiff();
        let on = |t: Tensor<2>| Tensor::<2>::from_data(t.into_data(), (&ad, DType::F32));
        let b = Tensor::<1>::from_data(b.into_data(), (&ad, DType::F32)).require_grad();
        let grads = dense(on(x), on(w), b.clone(), true).sum().backward();
        assert_eq!(values(b.grad(&grads).expect("tracked")), vec![1.0, 0.0]);
    }
}
