//! The kernels' loops compiled for AVX2 where the CPU has it.
//!
//! The workspace builds for the x86-64 baseline (SSE2), so a loop that Rust vectorises works on
//! two f64 or four f32 values per instruction. [`with_avx2`] defines a loop that runs in a
//! function compiled with AVX2 enabled (four f64 or eight f32), chosen at run time, so one
//! binary runs everywhere. Only the vector width changes: every lane computes the same IEEE
//! operations in the same order (Rust never fuses a multiply and an add on its own), so results
//! are bit-identical with and without AVX2; the kernels' tests compare them with Burn's ops bit
//! for bit. The optimizers' elementwise updates use it (a·x + b·y over 574k f32 values: 0.075
//! ms on SSE2, 0.06 with AVX2). The f32 inner products widen lanes to f64, which the compiler
//! vectorised with single-lane shuffles even with AVX2 enabled, so `super::reduce` writes those
//! with intrinsics instead (0.20 → 0.085 ms).

/// Defines `pub(crate) fn $name<T: Real>(args) -> ret` that calls `$plain` (an
/// `#[inline(always)]` function, so that its loop is compiled into the caller) from a function
/// compiled with AVX2 enabled when the CPU supports it, and directly otherwise.
macro_rules! with_avx2 {
    (
        $(#[$doc:meta])*
        fn $name:ident<$T:ident>($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty = $plain:ident
    ) => {
        $(#[$doc])*
        pub(crate) fn $name<$T: $crate::flex::Real>($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                /// `$plain` compiled with AVX2 enabled.
                ///
                /// # Safety
                /// The CPU must support AVX2.
                #[target_feature(enable = "avx2")]
                unsafe fn avx2<$T: $crate::flex::Real>($($arg: $ty),*) -> $ret {
                    $plain($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: `avx2` requires only that the CPU supports AVX2, checked here.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $plain($($arg),*)
        }
    };
}

pub(crate) use with_avx2;
