//! Fused f64 inner products over flex storage.

use burn::backend::TensorMetadata;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::{Real, contiguous, values, with_real};

/// Values per parallel block of an inner product (fixed, so sums do not depend on threads).
pub(crate) const BLOCK: usize = 1 << 16;

/// Σ a·b in f64 over two equally long slices, with eight independent accumulators (which the
/// compiler keeps in vector registers) added in a fixed order.
fn dot_block<T: Real>(a: &[T], b: &[T]) -> f64 {
    dot_block_with(a, b, |x| x)
}

/// Σ f(a)·b in f64 with the accumulators of [`dot_block`]: equal, bit for bit, to
/// [`dot_block`] of the values f(a) would be stored as.
pub(crate) fn dot_block_with<T: Real>(a: &[T], b: &[T], f: impl Fn(T) -> T) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += f(x[j]).widen() * y[j].widen();
        }
    }
    let tail: f64 = ra
        .iter()
        .zip(rb)
        .map(|(x, y)| f(*x).widen() * y.widen())
        .sum();
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail
}

/// Σ d·(m / (√v + ε)) in f64 over equally long slices, the second factor rounded to `T` as
/// Burn's ops would store it, with the accumulators of [`dot_block`] (so the result equals
/// [`dot_block`] of `d` and the stored quotient, bit for bit).
fn preconditioned_dot_block<T: Real>(d: &[T], m: &[T], v: &[T], eps: T) -> f64 {
    let q = |m: T, v: T| (m / (v.sqrt() + eps)).widen();
    let mut acc = [0.0f64; 8];
    let (cd, cm, cv) = (d.chunks_exact(8), m.chunks_exact(8), v.chunks_exact(8));
    let (rd, rm, rv) = (cd.remainder(), cm.remainder(), cv.remainder());
    for ((x, m), v) in cd.zip(cm).zip(cv) {
        for j in 0..8 {
            acc[j] += x[j].widen() * q(m[j], v[j]);
        }
    }
    let tail: f64 = rd
        .iter()
        .zip(rm.iter().zip(rv))
        .map(|(x, (m, v))| x.widen() * q(*m, *v))
        .sum();
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail
}

/// Sums `block(k, start, end)` over fixed blocks of each of `lengths`, in parallel, adding each
/// item's blocks in order (so the sums do not depend on the threads). Jobs are (item, block)
/// pairs over all items, so that small tensors share the threads.
fn blockwise(lengths: &[usize], block: impl Fn(usize, usize, usize) -> f64 + Sync) -> Vec<f64> {
    let mut jobs = Vec::new();
    for (k, &n) in lengths.iter().enumerate() {
        for start in (0..n).step_by(BLOCK) {
            jobs.push((k, start, (start + BLOCK).min(n)));
        }
    }
    let sums: Vec<f64> = jobs
        .par_iter()
        .map(|&(k, start, end)| block(k, start, end))
        .collect();
    let mut out = vec![0.0; lengths.len()];
    for (&(k, _, _), s) in jobs.iter().zip(sums) {
        out[k] += s;
    }
    out
}

/// ⟨x, y⟩ (⟨x, x⟩ where `y` is `None`) for each pair, in f64.
pub(crate) fn inner_products(pairs: &[(FlexTensor, Option<FlexTensor>)]) -> Vec<f64> {
    let pairs: Vec<(FlexTensor, Option<FlexTensor>)> = pairs
        .iter()
        .map(|(x, y)| (contiguous(x.clone()), y.clone().map(contiguous)))
        .collect();
    let lengths: Vec<usize> = pairs
        .iter()
        .map(|(x, _)| x.shape().num_elements())
        .collect();
    blockwise(&lengths, |k, start, end| {
        let (x, y) = &pairs[k];
        let y = y.as_ref().unwrap_or(x);
        with_real!(x.dtype(), T => {
            let (a, b) = (values::<T>(x), values::<T>(y));
            dot_block(&a[start..end], &b[start..end])
        })
    })
}

/// ⟨d, m / (√v + ε)⟩ for each triple (d, m, v), in f64, the quotient rounded to the dtype.
pub(crate) fn preconditioned_inner_products(
    triples: &[(FlexTensor, FlexTensor, FlexTensor)],
    eps: f64,
) -> Vec<f64> {
    let triples: Vec<[FlexTensor; 3]> = triples
        .iter()
        .map(|(d, m, v)| [d, m, v].map(|t| contiguous(t.clone())))
        .collect();
    let lengths: Vec<usize> = triples
        .iter()
        .map(|t| t[0].shape().num_elements())
        .collect();
    blockwise(&lengths, |k, start, end| {
        let [d, m, v] = &triples[k];
        with_real!(d.dtype(), T => {
            let (d, m, v) = (values::<T>(d), values::<T>(m), values::<T>(v));
            preconditioned_dot_block(&d[start..end], &m[start..end], &v[start..end], T::narrow(eps))
        })
    })
}
