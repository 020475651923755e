//! Fused f64 inner products over flex storage.

use burn::backend::TensorMetadata;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::{Real, contiguous, values, with_real};

/// Values per parallel block of an inner product (fixed, so sums do not depend on threads).
const BLOCK: usize = 1 << 16;

/// Σ a·b in f64 over two equally long slices, with eight independent accumulators (which the
/// compiler keeps in vector registers) added in a fixed order.
fn dot_block<T: Real>(a: &[T], b: &[T]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j].widen() * y[j].widen();
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x.widen() * y.widen()).sum();
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail
}

/// ⟨x, y⟩ (⟨x, x⟩ where `y` is `None`) for each pair, in f64.
pub(crate) fn inner_products(pairs: &[(FlexTensor, Option<FlexTensor>)]) -> Vec<f64> {
    let pairs: Vec<(FlexTensor, Option<FlexTensor>)> = pairs
        .iter()
        .map(|(x, y)| (contiguous(x.clone()), y.clone().map(contiguous)))
        .collect();
    // (pair, block) jobs over all pairs, so that small tensors share the threads.
    let mut jobs = Vec::new();
    for (k, (x, _)) in pairs.iter().enumerate() {
        let n = x.shape().num_elements();
        for start in (0..n).step_by(BLOCK) {
            jobs.push((k, start, (start + BLOCK).min(n)));
        }
    }
    let sums: Vec<f64> = jobs
        .par_iter()
        .map(|&(k, start, end)| {
            let (x, y) = &pairs[k];
            let y = y.as_ref().unwrap_or(x);
            with_real!(x.dtype(), T => {
                let (a, b) = (values::<T>(x), values::<T>(y));
                dot_block(&a[start..end], &b[start..end])
            })
        })
        .collect();
    let mut out = vec![0.0; pairs.len()];
    for (&(k, _, _), s) in jobs.iter().zip(sums) {
        out[k] += s;
    }
    out
}
