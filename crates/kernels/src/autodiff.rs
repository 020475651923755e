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

use crate::flex::{batch_norm, conv};
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

/// The backward of [`FlexKernels::conv2d_plain`].
#[derive(Debug)]
struct Conv2dBackward;

impl Backward<Flex, 2> for Conv2dBackward {
    /// (input, weight, stride, padding).
    type State = (FlexTensor, FlexTensor, usize, usize);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, weight, stride, padding) = ops.state;
        let want = (node_x.is_some(), node_w.is_some());
        let (dx, dw) = conv::backward(x, weight, dy, (stride, padding), want);
        register!(grads, node_x => dx, node_w => dw);
    }
}

/// The backward of [`FlexKernels::conv_transpose2d_plain`].
#[derive(Debug)]
struct ConvTranspose2dBackward;

impl Backward<Flex, 2> for ConvTranspose2dBackward {
    /// (input, weight, (stride, padding, output padding)).
    type State = (FlexTensor, FlexTensor, (usize, usize, usize));

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, weight, geometry) = ops.state;
        let want = (node_x.is_some(), node_w.is_some());
        let (dx, dw) = conv::transposed_backward(x, weight, dy, geometry, want);
        register!(grads, node_x => dx, node_w => dw);
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

impl<C: CheckpointStrategy> FlexKernels for Autodiff<Flex, C> {
    fn conv2d_plain(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        let prep = Conv2dBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful();
        let (x, weight) = (x.into_primitive(), weight.into_primitive());
        let y = conv::forward(x.clone(), weight.clone(), stride, padding);
        match prep {
            OpsKind::Tracked(prep) => prep.finish((x, weight, stride, padding), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn conv_transpose2d_plain(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
        output_padding: usize,
    ) -> FloatTensor<Self> {
        let prep = ConvTranspose2dBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful();
        let (x, weight) = (x.into_primitive(), weight.into_primitive());
        let geometry = (stride, padding, output_padding);
        let y = conv::transposed_forward(x.clone(), weight.clone(), geometry);
        match prep {
            OpsKind::Tracked(prep) => prep.finish((x, weight, geometry), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
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
}
