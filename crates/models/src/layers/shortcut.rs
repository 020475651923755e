//! The parameter-free "option A" shortcut of He et al. (2016, Sec. 4.2) for CIFAR ResNets.
//!
//! When a stage halves the resolution and widens the channels, the identity shortcut becomes a
//! strided subsampling `x[:, :, ::s, ::s]` with the extra channels zero-padded. As the widely
//! used PyTorch code (Idelbayev, `akamaster/pytorch_resnet_cifar10`, `F.pad(x[:, :, ::2, ::2],
//! (0, 0, 0, 0, planes//4, planes//4))`), the zeros go half before and half after the input's
//! channels.

use burn::tensor::Tensor;
use burn::tensor::ops::PadMode;
use burn::tensor::s;

/// Option-A shortcut: strided identity plus zero channels; no parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShortcutA {
    /// Subsampling step in both spatial directions.
    pub stride: usize,
    /// Zero channels before the input's.
    pub pad_before: usize,
    /// Zero channels after the input's.
    pub pad_after: usize,
}

impl ShortcutA {
    /// The shortcut from `c_in` to `c_out ≥ c_in` channels at stride `stride`.
    ///
    /// # Panics
    /// If `c_out < c_in` (the models never narrow).
    pub fn new(c_in: usize, c_out: usize, stride: usize) -> Self {
        assert!(c_out >= c_in, "an option-A shortcut only adds channels");
        let extra = c_out - c_in;
        Self {
            stride,
            pad_before: extra / 2,
            pad_after: extra - extra / 2,
        }
    }

    /// `x[:, :, ::stride, ::stride]` with the zero channels: `[b, c_in, h, w]` →
    /// `[b, c_out, ⌈h/stride⌉, ⌈w/stride⌉]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let s = self.stride;
        let x = if s == 1 {
            x
        } else {
            x.slice(s![.., .., ..;s, ..;s])
        };
        if self.pad_before + self.pad_after == 0 {
            return x;
        }
        x.pad(
            [(self.pad_before, self.pad_after), (0, 0), (0, 0)],
            PadMode::Constant(0.0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{assert_gradients_match, data, tensor, values, weigh};

    #[test]
    fn option_a_subsamples_and_pads_channels_on_both_sides() {
        // x [1, 2, 3, 3]: channel 0 holds 0..9, channel 1 holds 10..19.
        let xs: Vec<f64> = (0..18).map(f64::from).collect();
        let y = ShortcutA::new(2, 6, 2).forward(tensor(&xs).reshape([1, 2, 3, 3]));
        assert_eq!(y.dims(), [1, 6, 2, 2]);
        let mut want = vec![0.0; 8];
        want.extend([0.0, 2.0, 6.0, 8.0, 9.0, 11.0, 15.0, 17.0]);
        want.extend(vec![0.0; 8]);
        assert_eq!(values(y), want);
    }

    #[test]
    fn option_a_gradients_match_central_differences() {
        let shortcut = ShortcutA::new(2, 4, 2);
        let r = data(2, 2 * 4 * 3 * 2);
        assert_gradients_match("option-A shortcut", &[data(1, 2 * 2 * 5 * 4)], 1e-6, |t| {
            let y = shortcut.forward(t[0].clone().reshape([2, 2, 5, 4]));
            assert_eq!(y.dims(), [2, 4, 3, 2]);
            weigh(y, &r)
        });
    }
}
