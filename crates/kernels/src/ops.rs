//! The backend-extension trait: one method per kernel, implemented for `Flex` (`flex/`) and for
//! `Autodiff<Flex, C>` (`autodiff.rs`, the backward passes). The macro generates the `Dispatch`
//! routing; callers reach it only through the crate's public functions, which check the device
//! first (an unlisted backend would panic).

use burn::backend::{Backend, backend_extension, tensor::FloatTensor};

/// Kernels of this crate, per backend.
#[backend_extension(Flex, Autodiff)]
pub trait FlexKernels: Backend {
    /// 2-D convolution without bias: `x` `[n, c_in, h, w]`, `weight` `[c_out, c_in, k, k]`,
    /// equal stride and zero padding in both directions, no dilation, one group.
    fn conv2d_plain(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self>;

    /// Transposed 2-D convolution without bias: `x` `[n, c_in, h, w]`, `weight`
    /// `[c_in, c_out, k, k]`, equal stride, padding and output padding in both directions.
    fn conv_transpose2d_plain(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
        output_padding: usize,
    ) -> FloatTensor<Self>;

    /// Batch norm with batch statistics over (n, h, w) of `x` `[n, c, h, w]`: returns
    /// (`γ·(x − μ)/√(σ² + eps) + β`, μ, σ²) with the biased variance σ². Only the first output
    /// carries gradients (to x, γ and β); μ and σ² are constants for autodiff.
    fn batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// The dense layer `act(x·W + b)`: `x` `[batch, inputs]`, `weight` `[inputs, outputs]`,
    /// `bias` `[outputs]`, act ReLU when `relu` (NaN kept), the identity otherwise.
    fn dense_plain(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self>;
}
