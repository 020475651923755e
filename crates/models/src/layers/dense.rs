//! A fully connected layer `x·W + b`.

use burn::tensor::Tensor;

use super::{Builder, ParamId, Pass};
use crate::Init;

/// A dense layer; the weight is stored `[fan_in, fan_out]` (as the MLP family), so the forward
/// pass is `x·W + b` on rows `[batch, fan_in]`.
#[derive(Debug, Clone)]
pub struct Dense {
    /// The weight `{name}.weight`, `[fan_in, fan_out]`.
    pub w: ParamId,
    /// The bias `{name}.bias`, `[fan_out]`, if the layer has one.
    pub b: Option<ParamId>,
    /// Inputs per sample.
    pub fan_in: usize,
    /// Outputs per sample.
    pub fan_out: usize,
}

impl Dense {
    /// Registers `{name}.weight` (initialised `weight`) and, if `bias` is given, `{name}.bias`.
    pub fn new(
        b: &mut Builder,
        name: &str,
        fan_in: usize,
        fan_out: usize,
        weight: Init,
        bias: Option<Init>,
    ) -> Self {
        let w = b.param(format!("{name}.weight"), vec![fan_in, fan_out], weight);
        let b = bias.map(|init| b.param(format!("{name}.bias"), vec![fan_out], init));
        Self {
            w,
            b,
            fan_in,
            fan_out,
        }
    }

    /// `x·W + b` for rows `x` of shape `[batch, fan_in]`.
    pub fn forward(&self, pass: &Pass<'_>, x: Tensor<2>) -> Tensor<2> {
        self.apply(pass, x, false)
    }

    /// `relu(x·W + b)`: on flex the bias and ReLU fused into the product's output.
    pub fn forward_relu(&self, pass: &Pass<'_>, x: Tensor<2>) -> Tensor<2> {
        self.apply(pass, x, true)
    }

    /// `act(x·W + b)` with act ReLU when `relu`: steplab-kernels' `dense` with a bias (one
    /// fused layer on flex, Burn's ops elsewhere), Burn's matmul without.
    fn apply(&self, pass: &Pass<'_>, x: Tensor<2>, relu: bool) -> Tensor<2> {
        let w = pass.param(self.w).reshape([self.fan_in, self.fan_out]);
        match self.b {
            Some(b) => steplab_kernels::dense(x, w, pass.param(b), relu),
            None if relu => burn::tensor::activation::relu(x.matmul(w)),
            None => x.matmul(w),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;
    use crate::layers::Specs;
    use crate::layers::gradcheck::{assert_gradients_match, data, weigh, with_pass};

    fn layer() -> (Dense, Specs) {
        let mut b = Builder::new();
        let zero = Init::Constant(0.0);
        let d = Dense::new(&mut b, "fc", 4, 3, zero.clone(), Some(zero));
        (d, b.finish())
    }

    #[test]
    fn dense_gradients_match_central_differences() {
        let (dense, specs) = layer();
        // W [4, 3], b [3], x [2, 4].
        let inputs = vec![data(1, 12), data(2, 3), data(3, 8)];
        let r = data(4, 6);
        assert_gradients_match("dense", &inputs, 1e-6, |t| {
            with_pass(&specs, &t[..2], &[], Mode::Train, |pass| {
                let x = t[2].clone().reshape([2, 4]);
                let y = dense
                    .forward(pass, x.clone())
                    .add(dense.forward_relu(pass, x));
                weigh(y, &r)
            })
        });
    }
}
