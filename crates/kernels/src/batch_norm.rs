//! The public batch norm with batch statistics: this crate's kernel on flex, a composition of
//! Burn's tensor ops elsewhere.

use burn::tensor::Tensor;

/// The output of [`batch_norm_batch_stats`].
#[derive(Debug, Clone)]
pub struct BatchStats {
    /// `γ·(x − μ)/√(σ² + eps) + β`, `[n, c, h, w]`, differentiable in x, γ and β.
    pub y: Tensor<4>,
    /// The batch mean μ per channel, `[c]`, without autodiff history.
    pub mean: Tensor<1>,
    /// The biased batch variance σ² per channel (divided by n·h·w), `[c]`, without autodiff
    /// history.
    pub var: Tensor<1>,
}

/// Batch norm of `x` `[n, c, h, w]` with the statistics of the batch over (n, h, w), scale
/// `gamma` and shift `beta` (`[c]`), as PyTorch's `BatchNorm2d` in training mode; the running
/// statistics are the caller's (from the returned μ and σ²).
///
/// On flex with f32/f64 this is the crate's own kernel (statistics accumulated in f64, two
/// passes forward and two backward); elsewhere it is [`batch_norm_batch_stats_stock`].
pub fn batch_norm_batch_stats(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
) -> BatchStats {
    if !crate::uses_own_kernels(&x.device(), x.dtype()) {
        return batch_norm_batch_stats_stock(x, gamma, beta, eps);
    }
    #[cfg(feature = "flex")]
    {
        use crate::ops::FlexKernels;
        use burn::backend::Dispatch;
        let (y, mean, var) = <Dispatch as FlexKernels>::batch_norm_train(
            x.into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
            eps,
        );
        BatchStats {
            y: Tensor::from_dispatch(y),
            mean: Tensor::<1>::from_dispatch(mean).detach(),
            var: Tensor::<1>::from_dispatch(var).detach(),
        }
    }
    #[cfg(not(feature = "flex"))]
    unreachable!("uses_own_kernels is false without the flex feature")
}

/// The same as a composition of Burn's tensor ops (mean over (n, h, w), centred square, …), so
/// that autodiff differentiates through the batch statistics.
pub fn batch_norm_batch_stats_stock(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
) -> BatchStats {
    let [_, c, _, _] = x.dims();
    let mean = x.clone().mean_dims(&[0, 2, 3]);
    let centered = x.sub(mean.clone());
    let var = centered.clone().square().mean_dims(&[0, 2, 3]);
    BatchStats {
        y: scale_and_shift(centered, var.clone(), gamma, beta, eps),
        mean: mean.reshape([c]).detach(),
        var: var.reshape([c]).detach(),
    }
}

/// `centered · γ/√(var + eps) + β` for `centered` `[n, c, h, w]` (the input less a mean),
/// `var` `[1, c, 1, 1]` and γ, β `[c]`, composed from Burn's tensor ops: batch norm's last
/// step, with the batch's statistics or with running ones.
pub fn scale_and_shift(
    centered: Tensor<4>,
    var: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
) -> Tensor<4> {
    let c = gamma.dims()[0];
    let per_channel = |t: Tensor<1>| t.reshape([1, c, 1, 1]);
    let scale = var.add_scalar(eps).sqrt().recip().mul(per_channel(gamma));
    centered.mul(scale).add(per_channel(beta))
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::testing::{assert_close, data, tensor, values, weigh};
    use burn::tensor::{DType, Device};

    /// (y, μ, σ², dx, dγ, dβ) of Σ r ⊙ y by `bn`.
    fn run(
        bn: fn(Tensor<4>, Tensor<1>, Tensor<1>, f64) -> BatchStats,
        [n, c, h, w]: [usize; 4],
        dtype: DType,
    ) -> [Vec<f64>; 6] {
        let device = Device::flex().autodiff();
        // An offset mean, so that a one-pass variance would lose digits.
        let xs: Vec<f64> = data(1, n * c * h * w)
            .iter()
            .map(|v| 3.0 + 2.0 * v)
            .collect();
        let x = tensor(&xs, [n, c, h, w], &device, dtype).require_grad();
        let gamma = tensor(&data(2, c), [c], &device, dtype).require_grad();
        let beta = tensor(&data(3, c), [c], &device, dtype).require_grad();
        let out = bn(x.clone(), gamma.clone(), beta.clone(), 1e-5);
        let r = data(4, n * c * h * w);
        let grads = weigh(out.y.clone(), &r, dtype).backward();
        [
            values(out.y),
            values(out.mean),
            values(out.var),
            values(x.grad(&grads).expect("a gradient")),
            values(gamma.grad(&grads).expect("a gradient")),
            values(beta.grad(&grads).expect("a gradient")),
        ]
    }

    const SHAPES: [[usize; 4]; 4] = [[4, 3, 5, 5], [2, 5, 1, 1], [3, 2, 7, 3], [1, 4, 6, 6]];
    const OUTPUTS: [&str; 6] = ["y", "mean", "var", "dx", "dgamma", "dbeta"];

    #[test]
    fn forward_statistics_and_gradients_equal_the_composition_in_f64() {
        for shape in SHAPES {
            let own = run(batch_norm_batch_stats, shape, DType::F64);
            let stock = run(batch_norm_batch_stats_stock, shape, DType::F64);
            for (k, what) in OUTPUTS.iter().enumerate() {
                assert_close(&format!("{shape:?} {what}"), &own[k], &stock[k], 1e-12);
            }
        }
    }

    /// In f32 both paths round; against the f64 values the kernel must be at least as accurate
    /// as Burn's composition (within a factor 2), or within 1e-6 of the largest value. (With
    /// two values per channel, dx is a cancellation of terms far larger than itself, so a fixed
    /// tolerance between the two f32 paths would not say which one is right.)
    #[test]
    fn in_f32_the_kernel_is_as_accurate_as_the_composition() {
        let max_error = |a: &[f64], b: &[f64]| {
            a.iter()
                .zip(b)
                .fold(0.0_f64, |m, (x, y)| m.max((x - y).abs()))
        };
        for shape in SHAPES {
            let exact = run(batch_norm_batch_stats_stock, shape, DType::F64);
            let own = run(batch_norm_batch_stats, shape, DType::F32);
            let stock = run(batch_norm_batch_stats_stock, shape, DType::F32);
            for (k, what) in OUTPUTS.iter().enumerate() {
                let scale = exact[k].iter().fold(0.0_f64, |m, v| m.max(v.abs()));
                let own_error = max_error(&own[k], &exact[k]);
                let stock_error = max_error(&stock[k], &exact[k]);
                assert!(
                    own_error <= (2.0 * stock_error).max(1e-6 * scale),
                    "{shape:?} {what}: kernel error {own_error:e}, composition {stock_error:e}, \
                     scale {scale:e}"
                );
            }
        }
    }

    #[test]
    fn gradients_match_central_differences_in_f64() {
        let [n, c, h, w] = [3, 2, 3, 2];
        let device = Device::flex();
        let inputs = [data(5, n * c * h * w), data(6, c), data(7, c)];
        let r = data(8, n * c * h * w);
        let f = |v: &[Vec<f64>], d: &Device| {
            let x = tensor(&v[0], [n, c, h, w], d, DType::F64);
            let g = tensor(&v[1], [c], d, DType::F64);
            let b = tensor(&v[2], [c], d, DType::F64);
            (x, g, b)
        };
        let ad = device.clone().autodiff();
        let (x, g, b) = f(&inputs, &ad);
        let (x, g, b) = (x.require_grad(), g.require_grad(), b.require_grad());
        let out = batch_norm_batch_stats(x.clone(), g.clone(), b.clone(), 1e-5);
        let grads = weigh(out.y, &r, DType::F64).backward();
        let autodiff = [
            values(x.grad(&grads).expect("a gradient")),
            values(g.grad(&grads).expect("a gradient")),
            values(b.grad(&grads).expect("a gradient")),
        ];
        let loss = |v: &[Vec<f64>]| {
            let (x, g, b) = f(v, &device);
            values(weigh(
                batch_norm_batch_stats(x, g, b, 1e-5).y,
                &r,
                DType::F64,
            ))[0]
        };
        let step = 1e-6;
        for (k, grad) in autodiff.iter().enumerate() {
            let central: Vec<f64> = (0..inputs[k].len())
                .map(|j| {
                    let mut up = inputs.clone();
                    let mut down = inputs.clone();
                    up[k][j] += step;
                    down[k][j] -= step;
                    (loss(&up) - loss(&down)) / (2.0 * step)
                })
                .collect();
            assert_close(&format!("input {k}"), grad, &central, 1e-7);
        }
    }

    #[test]
    fn without_autodiff_the_kernel_gives_the_same_output() {
        let device = Device::flex();
        let shape = [2, 3, 4, 4];
        let x = tensor(&data(9, 96), shape, &device, DType::F32);
        let g = tensor(&data(10, 3), [3], &device, DType::F32);
        let b = tensor(&data(11, 3), [3], &device, DType::F32);
        let own = batch_norm_batch_stats(x.clone(), g.clone(), b.clone(), 1e-5);
        let stock = batch_norm_batch_stats_stock(x, g, b, 1e-5);
        assert_close("y", &values(own.y), &values(stock.y), 1e-5);
    }
}
