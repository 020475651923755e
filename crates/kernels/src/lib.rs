//! Own CPU kernels for Burn's flex backend, each with its own backward pass.
//!
//! burn-flex 0.22.1 routes a 2-D convolution through a 3-D one with serial layout copies and a
//! fresh im2col buffer per tile, and batch norm through a generic decomposition of many
//! elementwise passes (see `shared/spec/BURN.md`). This crate implements those operations for
//! flex as a Burn *backend extension* (`#[backend_extension]`), with a hand-written backward on
//! `Autodiff<Flex>`:
//!
//! - [`conv2d`]: per-image im2col into a buffer each worker reuses and one gemm per image with
//!   the output pixels as the gemm's long dimension; the weight gradient accumulated per worker
//!   from the same im2col, the input gradient as a gemm and a col2im.
//! - [`conv_transpose2d`]: the input-gradient path of the convolution as its forward, the
//!   convolution itself and its weight gradient as its backward.
//! - [`dense`]: the fully connected layer `act(x·W + b)` with the bias and ReLU fused into the
//!   product's output, and gemms on transposed views for its gradients.
//! - [`batch_norm_batch_stats`]: per-channel statistics accumulated in f64 and the
//!   normalisation in one pass, and a backward of two passes.
//! - [`inner_products`]: whole-model inner products and squared norms accumulated in f64 in one
//!   pass over the stored values (for the optimizers' per-step reductions).
//! - [`axpby`], [`square_ema`], [`adam_moments`], [`adam_step`]: the optimizers' elementwise
//!   updates, one pass each, written into the target's own buffer, bit-identical to the Burn ops
//!   they replace; [`adam_direction`] Adam's moments, its direction and ⟨m̂, v⟩ in one pass
//!   (L4Adam), and [`preconditioned_inner_products`] ⟨d, m/(√v + ε)⟩ (Adam-HD).
//!
//! The reductions and updates pick AVX2 at run time where the CPU has it (the build targets
//! the x86-64 baseline): explicit intrinsics for the f32 inner products, the update loops
//! compiled with AVX2 enabled; both bit-identical to the plain loops.
//!
//! On every other backend (ndarray, wgpu), for other dtypes than f32/f64, or after
//! [`set_own_kernels`]`(false)`, each function is the composition of Burn's stock ops the zoo
//! used before, so results there are unchanged.

#[cfg(feature = "flex")]
mod autodiff;
#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "flex")]
mod ops;

mod batch_norm;
mod conv;
mod dense;
mod reduce;
mod update;

pub use batch_norm::{
    BatchStats, batch_norm_batch_stats, batch_norm_batch_stats_stock, scale_and_shift,
};
pub use conv::{conv_transpose2d, conv_transpose2d_stock, conv2d, conv2d_stock};
pub use dense::{dense, dense_stock};
pub use reduce::{inner_products, preconditioned_inner_products};
pub use update::{
    AdamDirection, adam_direction, adam_moments, adam_step, axpby, axpby_norms, square_ema,
};

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::{DType, Device};

static OWN_KERNELS: AtomicBool = AtomicBool::new(true);

/// Turns this crate's kernels on (the default) or off for the whole process; off, every function
/// here runs Burn's stock ops (for benchmarks that compare the two in one run).
pub fn set_own_kernels(enabled: bool) {
    OWN_KERNELS.store(enabled, Ordering::Relaxed);
}

/// Whether this crate's kernels are switched on ([`set_own_kernels`]).
pub fn own_kernels_enabled() -> bool {
    OWN_KERNELS.load(Ordering::Relaxed)
}

/// Whether tensors of `dtype` on `device` go through this crate's kernels: flex (plain or
/// autodiff) with f32 or f64, the feature compiled in, and the kernels switched on.
pub fn uses_own_kernels(device: &Device, dtype: DType) -> bool {
    #[cfg(feature = "flex")]
    {
        own_kernels_enabled()
            && matches!(dtype, DType::F32 | DType::F64)
            && *device == Device::flex()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = (device, dtype);
        false
    }
}

#[cfg(all(test, feature = "flex"))]
mod testing;
