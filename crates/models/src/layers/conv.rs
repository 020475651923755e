//! A 2-D convolution with square kernels, explicit stride and zero padding.

use burn::tensor::Tensor;

use super::{Builder, ParamId, Pass};
use crate::Init;

/// The geometry of a [`Conv2d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dShape {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height and width.
    pub kernel: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
}

impl Conv2dShape {
    /// A `kernel`×`kernel` convolution `c_in → c_out`, stride 1, no padding ("valid").
    pub fn new(c_in: usize, c_out: usize, kernel: usize) -> Self {
        Self {
            c_in,
            c_out,
            kernel,
            stride: 1,
            padding: 0,
        }
    }

    /// The same with stride `stride`.
    pub fn stride(self, stride: usize) -> Self {
        Self { stride, ..self }
    }

    /// The same with `padding` zeros on every side.
    pub fn padding(self, padding: usize) -> Self {
        Self { padding, ..self }
    }

    /// Inputs per output: `c_in · kernel²`.
    pub fn fan_in(&self) -> usize {
        self.c_in * self.kernel * self.kernel
    }

    /// Outputs per input: `c_out · kernel²`.
    pub fn fan_out(&self) -> usize {
        self.c_out * self.kernel * self.kernel
    }

    /// The output's spatial size for an input `[h, w]`, or `None` when the kernel does not fit.
    pub fn output(&self, [h, w]: [usize; 2]) -> Option<[usize; 2]> {
        let side = |n: usize| {
            let padded = n + 2 * self.padding;
            (padded >= self.kernel && self.stride > 0)
                .then(|| (padded - self.kernel) / self.stride + 1)
        };
        Some([side(h)?, side(w)?])
    }
}

/// A convolution layer: weight `[c_out, c_in, k, k]` (as PyTorch), optional bias `[c_out]`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    /// The weight `{name}.weight`.
    pub w: ParamId,
    /// The bias `{name}.bias`, if any.
    pub b: Option<ParamId>,
    /// Channels, kernel, stride and padding.
    pub shape: Conv2dShape,
}

impl Conv2d {
    /// Registers `{name}.weight` (initialised `weight`) and, if `bias` is given, `{name}.bias`.
    pub fn new(
        b: &mut Builder,
        name: &str,
        shape: Conv2dShape,
        weight: Init,
        bias: Option<Init>,
    ) -> Self {
        let Conv2dShape {
            c_in,
            c_out,
            kernel,
            ..
        } = shape;
        let w = b.param(
            format!("{name}.weight"),
            vec![c_out, c_in, kernel, kernel],
            weight,
        );
        let b = bias.map(|init| b.param(format!("{name}.bias"), vec![c_out], init));
        Self { w, b, shape }
    }

    /// The convolution of images `x` of shape `[batch, c_in, h, w]`.
    pub fn forward(&self, pass: &Pass<'_>, x: Tensor<4>) -> Tensor<4> {
        let Conv2dShape {
            c_in,
            c_out,
            kernel,
            stride,
            padding,
        } = self.shape;
        let w = pass.param(self.w).reshape([c_out, c_in, kernel, kernel]);
        steplab_kernels::conv2d(x, w, self.b.map(|b| pass.param(b)), stride, padding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;
    use crate::layers::gradcheck::{assert_gradients_match, data, weigh, with_pass};

    #[test]
    fn output_sizes_follow_the_usual_formula() {
        let s = Conv2dShape::new(3, 8, 3).stride(2).padding(1);
        assert_eq!(s.output([32, 32]), Some([16, 16]));
        assert_eq!(s.output([7, 8]), Some([4, 4]));
        assert_eq!(Conv2dShape::new(3, 6, 5).output([32, 32]), Some([28, 28]));
        assert_eq!(Conv2dShape::new(3, 6, 5).output([4, 32]), None);
        assert_eq!((s.fan_in(), s.fan_out()), (27, 72));
    }

    #[test]
    fn conv2d_gradients_match_central_differences_with_stride_2_and_padding_1() {
        let shape = Conv2dShape::new(2, 3, 3).stride(2).padding(1);
        let mut b = Builder::new();
        let zero = Init::Constant(0.0);
        let conv = Conv2d::new(&mut b, "conv", shape, zero.clone(), Some(zero));
        let specs = b.finish();
        // x [2, 2, 5, 5] → y [2, 3, 3, 3].
        let inputs = vec![data(1, 3 * 2 * 9), data(2, 3), data(3, 2 * 2 * 5 * 5)];
        let r = data(4, 2 * 3 * 3 * 3);
        assert_gradients_match("conv2d", &inputs, 1e-6, |t| {
            with_pass(&specs, &t[..2], &[], Mode::Train, |pass| {
                let y = conv.forward(pass, t[2].clone().reshape([2, 2, 5, 5]));
                assert_eq!(y.dims(), [2, 3, 3, 3]);
                weigh(y, &r)
            })
        });
    }
}
