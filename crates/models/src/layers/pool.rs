//! Pooling: max and average over square windows, and global average pooling.

use burn::tensor::Tensor;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};

/// Max pooling over `kernel`×`kernel` windows with stride `kernel` (PyTorch's
/// `MaxPool2d(kernel)`); no parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2d {
    /// Window size and stride.
    pub kernel: usize,
}

/// Average pooling over `kernel`×`kernel` windows with stride `kernel` (PyTorch's
/// `AvgPool2d(kernel)`); no parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvgPool2d {
    /// Window size and stride.
    pub kernel: usize,
}

/// The spatial size after a `kernel`-window, stride-`kernel` pooling (floor mode), or `None`
/// when the window does not fit.
pub fn pooled([h, w]: [usize; 2], kernel: usize) -> Option<[usize; 2]> {
    (kernel > 0 && h >= kernel && w >= kernel).then(|| [h / kernel, w / kernel])
}

impl MaxPool2d {
    /// The maximum of each window of `x` (`[batch, channels, h, w]`).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        max_pool2d(x, MaxPoolOptions::new([self.kernel, self.kernel]))
    }
}

impl AvgPool2d {
    /// The mean of each window of `x` (`[batch, channels, h, w]`).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        avg_pool2d(x, AvgPoolOptions::new([self.kernel, self.kernel]))
    }
}

/// The mean over all positions of each channel: `[batch, channels, h, w]` → `[batch, channels]`
/// (PyTorch's `AdaptiveAvgPool2d(1)` and a flatten; equal to `avg_pool2d(x, h)` on square maps).
pub fn global_avg_pool(x: Tensor<4>) -> Tensor<2> {
    let [b, c, _, _] = x.dims();
    x.mean_dims(&[2, 3]).reshape([b, c])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{assert_gradients_match, data, tensor, values, weigh};

    #[test]
    fn max_pool_gradients_match_central_differences() {
        let r = data(2, 2 * 3 * 2 * 2);
        let pool = MaxPool2d { kernel: 2 };
        assert_gradients_match("max pool", &[data(1, 2 * 3 * 5 * 4)], 1e-6, |t| {
            let y = pool.forward(t[0].clone().reshape([2, 3, 5, 4]));
            assert_eq!(y.dims(), [2, 3, 2, 2], "floor mode drops the last row");
            weigh(y, &r)
        });
    }

    #[test]
    fn average_pool_gradients_match_central_differences() {
        let r = data(4, 2 * 3 * 2 * 2);
        let pool = AvgPool2d { kernel: 2 };
        assert_gradients_match("average pool", &[data(3, 2 * 3 * 4 * 4)], 1e-6, |t| {
            weigh(pool.forward(t[0].clone().reshape([2, 3, 4, 4])), &r)
        });
    }

    #[test]
    fn global_average_pool_gradients_match_central_differences() {
        let r = data(6, 2 * 3);
        assert_gradients_match(
            "global average pool",
            &[data(5, 2 * 3 * 3 * 3)],
            1e-6,
            |t| weigh(global_avg_pool(t[0].clone().reshape([2, 3, 3, 3])), &r),
        );
    }

    #[test]
    fn pooling_computes_window_maxima_and_means() {
        let x = tensor(&[
            1.0, 5.0, 2.0, 0.0, 3.0, 4.0, -1.0, 8.0, 0.0, 0.0, 6.0, 2.0, 1.0, 1.0, 2.0, 2.0,
        ])
        .reshape([1, 1, 4, 4]);
        assert_eq!(
            values(MaxPool2d { kernel: 2 }.forward(x.clone())),
            vec![5.0, 8.0, 1.0, 6.0]
        );
        assert_eq!(
            values(AvgPool2d { kernel: 2 }.forward(x.clone())),
            vec![13.0 / 4.0, 9.0 / 4.0, 0.5, 3.0]
        );
        assert_eq!(values(global_avg_pool(x)), vec![36.0 / 16.0]);
        assert_eq!(pooled([5, 4], 2), Some([2, 2]));
        assert_eq!(pooled([1, 4], 2), None);
    }
}
