//! `FlexKernels` for `Autodiff<Flex, C>`: the forward on flex storage, recorded with a
//! hand-written backward that calls the flex kernels' own gradients.

use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Flex};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::CheckpointStrategy;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::FlexTensor;

use crate::flex::{batch_norm, conv, dense};
use crate::ops::FlexKernels;

/// Registers each computed gradient with its parent node, for the parents autodiff tracks
/// (macro: the node type is private to burn-autodiff).
macro_rules! register {
    ($grads:expr, $($node:expr => $grad:expr),+ $(,)?) => {
        $(
            if let (Some(node), Some(grad)) = ($node, $grad) {
                $grads.register::<Flex>(node.id, grad);
            }
        )+
    };
}

/// The gradients of a two-input convolution-like op (input, weight) for an output gradient,
/// given its geometry and which of the two are wanted.
type ConvGradients<G> = fn(
    FlexTensor,
    FlexTensor,
    FlexTensor,
    G,
    (bool, bool),
) -> (Option<FlexTensor>, Option<FlexTensor>);

/// The backward of [`FlexKernels::conv2d_plain`] and [`FlexKernels::conv_transpose2d_plain`]:
/// their flex gradients `gradients` for geometry `G`.
#[derive(Debug)]
struct ConvBackward<G> {
    gradients: ConvGradients<G>,
}

impl<G: Clone + Send + std::fmt::Debug + 'static> Backward<Flex, 2> for ConvBackward<G> {
    /// (input, weight, geometry).
    type State = (FlexTensor, FlexTensor, G);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, weight, geometry) = ops.state;
        let want = (node_x.is_some(), node_w.is_some());
        let (dx, dw) = (self.gradients)(x, weight, dy, geometry, want);
        register!(grads, node_x => dx, node_w => dw);
    }
}

/// Runs `forward` on the flex storage of `x` and `weight` and records it with `gradients` as
/// its backward (input, weight and geometry kept for it). `C` is named by the caller: the
/// tensors' type does not carry it.
fn record_conv<C: CheckpointStrategy, G: Clone + Send + std::fmt::Debug + 'static>(
    x: FloatTensor<Autodiff<Flex, C>>,
    weight: FloatTensor<Autodiff<Flex, C>>,
    geometry: G,
    forward: fn(FlexTensor, FlexTensor, G) -> FlexTensor,
    gradients: ConvGradients<G>,
) -> FloatTensor<Autodiff<Flex, C>> {
    let prep = ConvBackward { gradients }
        .prepare::<C>([x.node(), weight.node()])
        .compute_bound()
        .stateful();
    let (x, weight) = (x.into_primitive(), weight.into_primitive());
    let y = forward(x.clone(), weight.clone(), geometry.clone());
    match prep {
        OpsKind::Tracked(prep) => prep.finish((x, weight, geometry), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// The backward of [`FlexKernels::batch_norm_train`] (through its first output).
#[derive(Debug)]
struct BatchNormBackward;

impl Backward<Flex, 3> for BatchNormBackward {
    /// (input, γ, the forward's statistics).
    type State = (FlexTensor, FlexTensor, batch_norm::Saved);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, gamma, saved) = ops.state;
        let want = [node_x.is_some(), node_gamma.is_some(), node_beta.is_some()];
        let [dx, dgamma, dbeta] = batch_norm::backward(x, gamma, &saved, dy, want);
        register!(grads, node_x => dx, node_gamma => dgamma, node_beta => dbeta);
    }
}

/// The backward of [`FlexKernels::dense_plain`].
#[derive(Debug)]
struct DenseBackward {
    relu: bool,
}

impl Backward<Flex, 3> for DenseBackward {
    /// (input, weight, output).
    type State = (FlexTensor, FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let want = [node_x.is_some(), node_w.is_some(), node_b.is_some()];
        let [dx, dw, db] = dense::backward(ops.state, self.relu, dy, want);
        register!(grads, node_x => dx, node_w => dw, node_b => db);
    }
}

impl<C: CheckpointStrategy> FlexKernels for Autodiff<Flex, C> {
    fn conv2d_plain(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        record_conv::<C, _>(x, weight, (stride, padding), conv::forward, conv::backward)
    }

    fn conv_transpose2d_plain(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
        output_padding: usize,
    ) -> FloatTensor<Self> {
        let geometry = (stride, padding, output_padding);
        record_conv::<C, _>(
            x,
            weight,
            geometry,
            conv::transposed_forward,
            conv::transposed_backward,
        )
    }

    fn batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let prep = BatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let (x, gamma) = (x.into_primitive(), gamma.into_primitive());
        let (y, saved) = batch_norm::forward(x.clone(), gamma.clone(), beta.into_primitive(), eps);
        let (mean, var) = saved.statistics();
        let y = match prep {
            OpsKind::Tracked(prep) => prep.finish((x, gamma, saved), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, Self::from_inner(mean), Self::from_inner(var))
    }

    fn dense_plain(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self> {
        let prep = DenseBackward { relu }
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful();
        let (x, weight) = (x.into_primitive(), weight.into_primitive());
        let y = dense::forward(x.clone(), weight.clone(), bias.into_primitive(), relu);
        match prep {
            OpsKind::Tracked(prep) => {
                let output = y.clone();
                prep.finish((x, weight, output), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}
