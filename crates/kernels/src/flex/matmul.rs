//! Matrix products through the gemm crate on strided views.

use super::Real;

/// A column-major view for gemm: element (row, col) at `ptr[row·rs + col·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<P> {
    /// Element (0, 0).
    pub ptr: P,
    /// Row stride, in elements.
    pub rs: isize,
    /// Column stride, in elements.
    pub cs: isize,
}

/// `dst (m×n) = [dst +] lhs (m×k) · rhs (k×n)`, single-threaded.
///
/// # Safety
/// Every view must address only elements inside its own live slice for the given sizes and
/// strides, `dst` must not overlap `lhs` or `rhs`, and no other thread may touch `dst`.
pub(crate) unsafe fn gemm_into<T: Real>(
    dims: (usize, usize, usize),
    dst: Mat<*mut T>,
    accumulate: bool,
    lhs: Mat<*const T>,
    rhs: Mat<*const T>,
) {
    // SAFETY: the caller's contract.
    unsafe { gemm_with(dims, dst, accumulate, lhs, rhs, gemm::Parallelism::None) }
}

/// The gemm call of [`gemm_into`], on `parallelism`'s threads.
///
/// # Safety
/// As [`gemm_into`]; with threads, no other code may touch `dst` meanwhile.
pub(crate) unsafe fn gemm_with<T: Real>(
    (m, n, k): (usize, usize, usize),
    dst: Mat<*mut T>,
    accumulate: bool,
    lhs: Mat<*const T>,
    rhs: Mat<*const T>,
    parallelism: gemm::Parallelism,
) {
    // SAFETY: forwarded from the caller's contract; gemm reads `dst` only when `accumulate`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            dst.cs,
            dst.rs,
            accumulate,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}
