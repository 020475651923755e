//! A 2-D transposed convolution ("deconvolution") with square kernels: the gradient of a
//! [`super::Conv2d`] with respect to its input, used to upsample in a decoder.

use burn::tensor::Tensor;

use super::{Builder, ParamId, Pass};
use crate::Init;

/// The geometry of a [`ConvTranspose2d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTranspose2dShape {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height and width.
    pub kernel: usize,
    /// Stride in both directions (the upsampling factor).
    pub stride: usize,
    /// Padding removed from every side of the full output (as PyTorch's `padding`).
    pub padding: usize,
    /// Extra rows and columns added at the bottom and right (PyTorch's `output_padding`,
    /// below `stride`): with kernel 5, padding 2 and output padding 1, stride 2 doubles the size.
    pub output_padding: usize,
}

impl ConvTranspose2dShape {
    /// A `kernel`×`kernel` transposed convolution `c_in → c_out` with stride `stride` that maps
    /// a size `n` to `n · stride` (TensorFlow's "SAME" output size): padding `(kernel − 1)/2`,
    /// output padding `stride − 1`.
    ///
    /// # Panics
    /// If `kernel` is even or `stride` is 0 (the zoo's decoders use odd kernels).
    pub fn same(c_in: usize, c_out: usize, kernel: usize, stride: usize) -> Self {
        assert!(kernel % 2 == 1 && stride > 0, "an odd kernel and a stride");
        Self {
            c_in,
            c_out,
            kernel,
            stride,
            padding: (kernel - 1) / 2,
            output_padding: stride - 1,
        }
    }

    /// Outputs per input, `c_out · kernel²`: PyTorch computes its default initialisation's
    /// fan-in from the weight's second dimension, which is `c_out` for a transposed convolution.
    pub fn torch_fan_in(&self) -> usize {
        self.c_out * self.kernel * self.kernel
    }

    /// The output's spatial size for an input `[h, w]`:
    /// `(n − 1)·stride + kernel + output_padding − 2·padding`, or `None` when that is not
    /// positive or the input is empty.
    pub fn output(&self, [h, w]: [usize; 2]) -> Option<[usize; 2]> {
        let side = |n: usize| {
            let full = n.checked_sub(1)? * self.stride + self.kernel + self.output_padding;
            full.checked_sub(2 * self.padding).filter(|&s| s > 0)
        };
        Some([side(h)?, side(w)?])
    }
}

/// A transposed convolution layer: weight `[c_in, c_out, k, k]` (as PyTorch's
/// `ConvTranspose2d`), optional bias `[c_out]`.
#[derive(Debug, Clone)]
pub struct ConvTranspose2d {
    /// The weight `{name}.weight`.
    pub w: ParamId,
    /// The bias `{name}.bias`, if any.
    pub b: Option<ParamId>,
    /// Channels, kernel, stride and paddings.
    pub shape: ConvTranspose2dShape,
}

impl ConvTranspose2d {
    /// Registers `{name}.weight` (initialised `weight`) and, if `bias` is given, `{name}.bias`.
    pub fn new(
        b: &mut Builder,
        name: &str,
        shape: ConvTranspose2dShape,
        weight: Init,
        bias: Option<Init>,
    ) -> Self {
        let ConvTranspose2dShape {
            c_in,
            c_out,
            kernel,
            ..
        } = shape;
        let w = b.param(
            format!("{name}.weight"),
            vec![c_in, c_out, kernel, kernel],
            weight,
        );
        let b = bias.map(|init| b.param(format!("{name}.bias"), vec![c_out], init));
        Self { w, b, shape }
    }

    /// The transposed convolution of images `x` of shape `[batch, c_in, h, w]`.
    pub fn forward(&self, pass: &Pass<'_>, x: Tensor<4>) -> Tensor<4> {
        let ConvTranspose2dShape {
            c_in,
            c_out,
            kernel,
            stride,
            padding,
            output_padding,
        } = self.shape;
        let w = pass.param(self.w).reshape([c_in, c_out, kernel, kernel]);
        steplab_kernels::conv_transpose2d(
            x,
            w,
            self.b.map(|b| pass.param(b)),
            stride,
            padding,
            output_padding,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;
    use crate::layers::gradcheck::{
        assert_gradients_match, data, tensor, values, weigh, with_pass,
    };

    #[test]
    fn same_shapes_multiply_the_size_by_the_stride() {
        let s = ConvTranspose2dShape::same(8, 4, 5, 2);
        assert_eq!((s.padding, s.output_padding), (2, 1));
        assert_eq!(s.output([8, 8]), Some([16, 16]));
        assert_eq!(s.output([3, 5]), Some([6, 10]));
        let one = ConvTranspose2dShape::same(8, 3, 5, 1);
        assert_eq!((one.padding, one.output_padding), (2, 0));
        assert_eq!(one.output([64, 64]), Some([64, 64]));
        assert_eq!(s.output([0, 4]), None);
        assert_eq!(s.torch_fan_in(), 100);
    }

    /// The definition: every input pixel (i, j) of channel ci adds w[ci, co] · x[ci, i, j] to
    /// the output window at (i·s − p, j·s − p), cut to the output's size.
    fn direct(
        s: ConvTranspose2dShape,
        x: &[f64],
        [b, h, w]: [usize; 3],
        weight: &[f64],
        bias: &[f64],
    ) -> Vec<f64> {
        let [oh, ow] = s.output([h, w]).unwrap();
        let k = s.kernel;
        let mut y = vec![0.0; b * s.c_out * oh * ow];
        for n in 0..b {
            for co in 0..s.c_out {
                for v in &mut y[(n * s.c_out + co) * oh * ow..][..oh * ow] {
                    *v = bias[co];
                }
                for ci in 0..s.c_in {
                    for i in 0..h {
                        for j in 0..w {
                            let xv = x[((n * s.c_in + ci) * h + i) * w + j];
                            for ki in 0..k {
                                for kj in 0..k {
                                    let (r, c) = (
                                        (i * s.stride + ki) as isize - s.padding as isize,
                                        (j * s.stride + kj) as isize - s.padding as isize,
                                    );
                                    if r < 0 || c < 0 || r >= oh as isize || c >= ow as isize {
                                        continue;
                                    }
                                    let wv = weight[((ci * s.c_out + co) * k + ki) * k + kj];
                                    y[((n * s.c_out + co) * oh + r as usize) * ow + c as usize] +=
                                        wv * xv;
                                }
                            }
                        }
                    }
                }
            }
        }
        y
    }

    #[test]
    fn forward_matches_the_definition_with_stride_2_and_output_padding() {
        let shape = ConvTranspose2dShape::same(2, 3, 5, 2);
        let mut b = Builder::new();
        let zero = Init::Constant(0.0);
        let layer = ConvTranspose2d::new(&mut b, "deconv", shape, zero.clone(), Some(zero));
        let specs = b.finish();
        let (weight, bias, x) = (data(1, 2 * 3 * 25), data(2, 3), data(3, 2 * 2 * 3 * 4));
        let got = with_pass(
            &specs,
            &[tensor(&weight), tensor(&bias)],
            &[],
            Mode::Train,
            |pass| {
                let y = layer.forward(pass, tensor(&x).reshape([2, 2, 3, 4]));
                assert_eq!(y.dims(), [2, 3, 6, 8]);
                values(y)
            },
        );
        let want = direct(shape, &x, [2, 3, 4], &weight, &bias);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-13, "{g} vs {w}");
        }
    }

    #[test]
    fn conv_transpose2d_gradients_match_central_differences() {
        for (shape, [h, w]) in [
            (ConvTranspose2dShape::same(2, 3, 5, 2), [3, 2]),
            (ConvTranspose2dShape::same(3, 2, 5, 1), [4, 3]),
        ] {
            let mut b = Builder::new();
            let zero = Init::Constant(0.0);
            let layer = ConvTranspose2d::new(&mut b, "deconv", shape, zero.clone(), Some(zero));
            let specs = b.finish();
            let [oh, ow] = shape.output([h, w]).unwrap();
            let (ci, co) = (shape.c_in, shape.c_out);
            let inputs = vec![data(5, ci * co * 25), data(6, co), data(7, 2 * ci * h * w)];
            let r = data(8, 2 * co * oh * ow);
            assert_gradients_match("conv_transpose2d", &inputs, 1e-6, |t| {
                with_pass(&specs, &t[..2], &[], Mode::Train, |pass| {
                    let y = layer.forward(pass, t[2].clone().reshape([2, ci, h, w]));
                    weigh(y, &r)
                })
            });
        }
    }
}
