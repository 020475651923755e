//! The layer vocabulary of the zoo: typed handles over flat tensors.
//!
//! A model is built once with a [`Builder`], which registers each layer's tensors by name and
//! returns handles holding their indices ([`Dense`], [`Conv2d`], [`ConvTranspose2d`],
//! [`BatchNorm`], [`Embedding`], [`LstmDirection`]); layers without tensors ([`Dropout`],
//! [`MaxPool2d`], [`AvgPool2d`], [`global_avg_pool`], [`ShortcutA`]) are plain values. A forward
//! pass reads the weights, state, mode and noise from a [`Pass`] and reshapes the flat tensors to
//! their logical shapes (a view, no copy). Everything is composed from Burn's functional ops
//! (`burn::tensor::module::{conv2d, conv_transpose2d, max_pool2d, avg_pool2d}`) and tensor
//! arithmetic, never from `burn::nn` modules, whose batch norm and dropout choose their
//! behaviour from the device rather than from the pass's [`Mode`](crate::Mode).

mod batch_norm;
mod builder;
mod conv;
mod conv_transpose;
mod dense;
mod dropout;
mod embedding;
#[cfg(test)]
pub(crate) mod gradcheck;
mod lstm;
mod pass;
mod pool;
mod shortcut;

pub use batch_norm::{BN_EPS, BN_MOMENTUM, BatchNorm};
pub use builder::{Builder, ParamId, Specs, StateId};
pub use conv::{Conv2d, Conv2dShape};
pub use conv_transpose::{ConvTranspose2d, ConvTranspose2dShape};
pub use dense::Dense;
pub use dropout::{Dropout, check_rate};
pub use embedding::Embedding;
pub use lstm::{BiLstm, LstmDirection};
pub use pass::Pass;
pub use pool::{AvgPool2d, MaxPool2d, global_avg_pool, pooled};
pub use shortcut::ShortcutA;
