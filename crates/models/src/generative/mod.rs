//! The generative models of the zoo: the Wasserstein autoencoder with an MMD penalty
//! (`wae_mmd`, LossGrad Table 6), whose objective has a term beyond outputs-vs-targets.

mod mmd;
mod wae;

pub use mmd::{IMQ_SCALES, mmd_imq};
pub use wae::{DecoderOutput, WaeMmd, WaeMmdConfig};
