//! The public 2-D convolutions: this crate's kernels on flex, Burn's `conv2d` and
//! `conv_transpose2d` elsewhere.

use burn::tensor::Tensor;
use burn::tensor::module;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};

/// `x + bias` broadcast over channels of `[n, c, h, w]`.
#[cfg(feature = "flex")]
fn add_bias(y: Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
    match bias {
        Some(b) => {
            let c = b.dims()[0];
            y.add(b.reshape([1, c, 1, 1]))
        }
        None => y,
    }
}

/// `conv2d(x, w) + bias` for `x` `[n, c_in, h, w]`, `w` `[c_out, c_in, k, k]`, stride `stride`
/// and `padding` zeros on every side (no dilation, one group), as PyTorch's `F.conv2d`.
///
/// On flex with f32/f64 this is the crate's own kernel with its own backward (the bias is added
/// by Burn's broadcast add); elsewhere it is [`conv2d_stock`].
pub fn conv2d(
    x: Tensor<4>,
    w: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: usize,
    padding: usize,
) -> Tensor<4> {
    if !crate::uses_own_kernels(&x.device(), x.dtype()) {
        return conv2d_stock(x, w, bias, stride, padding);
    }
    #[cfg(feature = "flex")]
    {
        use crate::ops::FlexKernels;
        use burn::backend::Dispatch;
        let y = Tensor::<4>::from_dispatch(<Dispatch as FlexKernels>::conv2d_plain(
            x.into_dispatch(),
            w.into_dispatch(),
            stride,
            padding,
        ));
        add_bias(y, bias)
    }
    #[cfg(not(feature = "flex"))]
    unreachable!("uses_own_kernels is false without the flex feature")
}

/// Burn's own `conv2d` with the same arguments as [`conv2d`].
pub fn conv2d_stock(
    x: Tensor<4>,
    w: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: usize,
    padding: usize,
) -> Tensor<4> {
    let options = ConvOptions::new([stride, stride], [padding, padding], [1, 1], 1);
    module::conv2d(x, w, bias, options)
}

/// The transposed convolution of `x` `[n, c_in, h, w]` with `w` `[c_in, c_out, k, k]` plus
/// `bias`, stride `stride`, `padding` and `output_padding` in both directions (no dilation, one
/// group), as PyTorch's `F.conv_transpose2d`: the input gradient of a [`conv2d`].
///
/// On flex with f32/f64 this is the crate's own kernel (the input-gradient path of its
/// convolution, and the convolution itself for its backward); elsewhere
/// [`conv_transpose2d_stock`].
pub fn conv_transpose2d(
    x: Tensor<4>,
    w: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: usize,
    padding: usize,
    output_padding: usize,
) -> Tensor<4> {
    if !crate::uses_own_kernels(&x.device(), x.dtype()) {
        return conv_transpose2d_stock(x, w, bias, stride, padding, output_padding);
    }
    #[cfg(feature = "flex")]
    {
        use crate::ops::FlexKernels;
        use burn::backend::Dispatch;
        let y = Tensor::<4>::from_dispatch(<Dispatch as FlexKernels>::conv_transpose2d_plain(
            x.into_dispatch(),
            w.into_dispatch(),
            stride,
            padding,
            output_padding,
        ));
        add_bias(y, bias)
    }
    #[cfg(not(feature = "flex"))]
    unreachable!("uses_own_kernels is false without the flex feature")
}

/// Burn's own `conv_transpose2d` with the same arguments as [`conv_transpose2d`].
pub fn conv_transpose2d_stock(
    x: Tensor<4>,
    w: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: usize,
    padding: usize,
    output_padding: usize,
) -> Tensor<4> {
    let options = ConvTransposeOptions::new(
        [stride, stride],
        [padding, padding],
        [output_padding, output_padding],
        [1, 1],
        1,
    );
    module::conv_transpose2d(x, w, bias, options)
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::testing::{assert_close, data, tensor, values, weigh};
    use burn::tensor::{DType, Device};

    /// (n, c_in, h, w, c_out, k, stride, padding) of a convolution.
    type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

    /// (n, c_in, h, w, c_out, k, stride, padding, output padding) of a transposed one.
    type TransposedCase = (
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
    );

    /// Strides 1-3, padding 0-2, odd and uneven
    /// sizes, 1×1 kernels with and without stride, kernels as large as the padded input.
    const CASES: [Case; 9] = [
        (2, 3, 7, 5, 4, 3, 1, 1),
        (3, 2, 8, 8, 5, 3, 2, 1),
        (1, 4, 9, 6, 3, 5, 2, 2),
        (2, 5, 6, 7, 6, 1, 1, 0),
        (2, 3, 7, 7, 2, 1, 2, 0),
        (2, 2, 5, 5, 3, 3, 3, 0),
        (1, 1, 4, 4, 2, 5, 1, 2),
        (3, 3, 6, 6, 4, 2, 1, 1),
        (5, 2, 3, 3, 2, 3, 1, 0),
    ];

    /// The output, input gradient and weight gradient of Σ r ⊙ conv(x, w) by `conv`.
    fn run(
        conv: fn(Tensor<4>, Tensor<4>, Option<Tensor<1>>, usize, usize) -> Tensor<4>,
        case: Case,
        dtype: DType,
        bias: bool,
    ) -> [Vec<f64>; 4] {
        let (n, c_in, h, w, c_out, k, stride, padding) = case;
        let device = Device::flex().autodiff();
        let x = tensor(&data(1, n * c_in * h * w), [n, c_in, h, w], &device, dtype).require_grad();
        let wt = tensor(
            &data(2, c_out * c_in * k * k),
            [c_out, c_in, k, k],
            &device,
            dtype,
        )
        .require_grad();
        let b = tensor(&data(3, c_out), [c_out], &device, dtype).require_grad();
        let y = conv(
            x.clone(),
            wt.clone(),
            bias.then(|| b.clone()),
            stride,
            padding,
        );
        let r = data(4, y.dims().iter().product());
        let grads = weigh(y.clone(), &r, dtype).backward();
        let grad = |t: &Tensor<4>| values(t.grad(&grads).expect("a gradient"));
        let db = if bias {
            values(b.grad(&grads).expect("a gradient"))
        } else {
            Vec::new()
        };
        [values(y), grad(&x), grad(&wt), db]
    }

    #[test]
    fn forward_and_gradients_equal_burns_conv2d_in_f64_and_f32() {
        for (dtype, rel) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            for (i, case) in CASES.into_iter().enumerate() {
                let bias = i % 2 == 0;
                let own = run(crate::conv2d, case, dtype, bias);
                let stock = run(conv2d_stock, case, dtype, bias);
                for (what, a, b) in [
                    ("output", &own[0], &stock[0]),
                    ("input gradient", &own[1], &stock[1]),
                    ("weight gradient", &own[2], &stock[2]),
                    ("bias gradient", &own[3], &stock[3]),
                ] {
                    assert_close(&format!("{dtype:?} case {case:?} {what}"), a, b, rel);
                }
            }
        }
    }

    #[test]
    fn gradients_match_central_differences_in_f64() {
        let (n, c_in, h, w, c_out, k, stride, padding) = (2, 2, 5, 4, 3, 3, 2, 1);
        let device = Device::flex();
        let xs = data(5, n * c_in * h * w);
        let ws = data(6, c_out * c_in * k * k);
        let loss = |xs: &[f64], ws: &[f64], d: &Device| {
            let x = tensor(xs, [n, c_in, h, w], d, DType::F64);
            let wt = tensor(ws, [c_out, c_in, k, k], d, DType::F64);
            (x, wt)
        };
        let r_len = n * c_out * 3 * 2;
        let r = data(7, r_len);
        let f = |xs: &[f64], ws: &[f64]| {
            let (x, wt) = loss(xs, ws, &device);
            values(weigh(
                crate::conv2d(x, wt, None, stride, padding),
                &r,
                DType::F64,
            ))[0]
        };
        let ad = device.clone().autodiff();
        let (x, wt) = loss(&xs, &ws, &ad);
        let (x, wt) = (x.require_grad(), wt.require_grad());
        let grads = weigh(
            crate::conv2d(x.clone(), wt.clone(), None, stride, padding),
            &r,
            DType::F64,
        )
        .backward();
        let h_step = 1e-6;
        for (which, base, grad) in [
            (0, &xs, values(x.grad(&grads).expect("a gradient"))),
            (1, &ws, values(wt.grad(&grads).expect("a gradient"))),
        ] {
            let central: Vec<f64> = (0..base.len())
                .map(|j| {
                    let mut up = base.clone();
                    let mut down = base.clone();
                    up[j] += h_step;
                    down[j] -= h_step;
                    let (fu, fd) = if which == 0 {
                        (f(&up, &ws), f(&down, &ws))
                    } else {
                        (f(&xs, &up), f(&xs, &down))
                    };
                    (fu - fd) / (2.0 * h_step)
                })
                .collect();
            assert_close(&format!("gradient {which}"), &grad, &central, 1e-7);
        }
    }

    #[test]
    fn an_untracked_input_gets_no_gradient_and_the_weight_still_does() {
        let device = Device::flex().autodiff();
        let x = tensor(&data(8, 2 * 3 * 6 * 6), [2, 3, 6, 6], &device, DType::F32);
        let wt = tensor(&data(9, 4 * 3 * 9), [4, 3, 3, 3], &device, DType::F32).require_grad();
        let y = crate::conv2d(x.clone(), wt.clone(), None, 1, 1);
        let r = data(10, y.dims().iter().product());
        let grads = weigh(y, &r, DType::F32).backward();
        assert!(x.grad(&grads).is_none());
        let stock_w = wt.clone().detach().require_grad();
        let stock = weigh(conv2d_stock(x, stock_w.clone(), None, 1, 1), &r, DType::F32).backward();
        assert_close(
            "weight gradient",
            &values(wt.grad(&grads).expect("a gradient")),
            &values(stock_w.grad(&stock).expect("a gradient")),
            1e-5,
        );
    }

    /// Transposed convolutions: strides 1-3, output padding 0-2, 1×1 and even kernels.
    const TRANSPOSED: [TransposedCase; 5] = [
        (2, 3, 4, 4, 2, 5, 2, 2, 1),
        (1, 2, 3, 5, 3, 3, 1, 1, 0),
        (2, 4, 3, 3, 2, 3, 2, 0, 0),
        (3, 2, 2, 3, 2, 1, 1, 0, 0),
        (1, 3, 5, 4, 4, 4, 3, 1, 2),
    ];

    #[test]
    fn transposed_forward_and_gradients_equal_burns_in_f64_and_f32() {
        type Op = fn(Tensor<4>, Tensor<4>, Option<Tensor<1>>, usize, usize, usize) -> Tensor<4>;
        let run = |op: Op, case: TransposedCase, dtype: DType| {
            let (n, c_in, h, w, c_out, k, s, p, op_) = case;
            let device = Device::flex().autodiff();
            let x =
                tensor(&data(11, n * c_in * h * w), [n, c_in, h, w], &device, dtype).require_grad();
            let wt = tensor(
                &data(12, c_in * c_out * k * k),
                [c_in, c_out, k, k],
                &device,
                dtype,
            )
            .require_grad();
            let b = tensor(&data(13, c_out), [c_out], &device, dtype).require_grad();
            let y = op(x.clone(), wt.clone(), Some(b.clone()), s, p, op_);
            let r = data(14, y.dims().iter().product());
            let grads = weigh(y.clone(), &r, dtype).backward();
            [
                values(y),
                values(x.grad(&grads).expect("a gradient")),
                values(wt.grad(&grads).expect("a gradient")),
                values(b.grad(&grads).expect("a gradient")),
            ]
        };
        for (dtype, rel) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            for case in TRANSPOSED {
                let own = run(crate::conv_transpose2d, case, dtype);
                let stock = run(conv_transpose2d_stock, case, dtype);
                for (k, what) in [
                    "output",
                    "input gradient",
                    "weight gradient",
                    "bias gradient",
                ]
                .iter()
                .enumerate()
                {
                    assert_close(
                        &format!("{dtype:?} {case:?} {what}"),
                        &own[k],
                        &stock[k],
                        rel,
                    );
                }
            }
        }
    }

    #[test]
    fn other_devices_and_dtypes_take_burns_op() {
        assert!(crate::uses_own_kernels(&Device::flex(), DType::F32));
        assert!(crate::uses_own_kernels(
            &Device::flex().autodiff(),
            DType::F64
        ));
        assert!(!crate::uses_own_kernels(&Device::flex(), DType::F16));
        #[allow(deprecated)] // ndarray is deprecated upstream and kept working here
        let ndarray = Device::ndarray();
        assert!(!crate::uses_own_kernels(&ndarray, DType::F32));
    }
}
