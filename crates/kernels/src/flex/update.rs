//! Fused elementwise optimizer updates on flex storage: one pass per tensor, written into the
//! target's own buffer when nothing else holds it.
//!
//! Every formula rounds exactly as the composition of Burn's ops it replaces (each scalar
//! converted to the element type first, each product and sum rounded to it, no fused
//! multiply-add), so results are bit-identical to the stock path on flex; only the passes over
//! memory and the allocations are saved. Large tensors are split into fixed chunks that rayon
//! runs in parallel; each value depends on its own position only, so results do not depend on
//! the thread count.

use burn::backend::TensorMetadata;
use burn::tensor::TensorData;
use burn_flex::FlexTensor;
use num_traits::Zero;
use rayon::prelude::*;

use super::reduce::{BLOCK, dot_block_with};
use super::simd::with_avx2;
use super::{Real, contiguous, tensor, values, with_real};
use crate::AdamDirection;

/// Values per parallel chunk (64 KiB of f32: a chunk and its operands stay in L2).
const CHUNK: usize = 1 << 14;

/// Where an update writes: the target's own buffer when nothing else holds it, otherwise a new
/// buffer that each chunk first fills from the target's values (a shared buffer is never
/// written, and the copy costs no separate pass over memory).
struct Target {
    out: FlexTensor,
    source: Option<FlexTensor>,
}

impl Target {
    fn new<T: Real>(t: FlexTensor) -> Self {
        let at_start = t.layout().contiguous_offsets().map(|(start, _)| start) == Some(0);
        if t.is_unique() && at_start {
            Self {
                out: t,
                source: None,
            }
        } else {
            // From a typed vector: `FlexTensor::zeros` would copy its bytes once more to align
            // them.
            let shape = t.shape();
            let zeros = vec![T::zero(); shape.num_elements()];
            Self {
                out: FlexTensor::from_data(TensorData::new(zeros, shape)),
                source: Some(contiguous(t)),
            }
        }
    }

    /// Runs `f(values, inputs)` on each chunk of the target's values (as they were) and the
    /// matching chunks of `inputs` (equally long), in parallel; returns the updated tensor.
    fn update<T: Real, const K: usize>(
        mut self,
        inputs: [&[T]; K],
        f: impl Fn(&mut [T], [&[T]; K]) + Sync + Send,
    ) -> FlexTensor {
        let n = self.out.shape().num_elements();
        for input in inputs {
            assert_eq!(input.len(), n, "tensors differ in length");
        }
        let source = self.source.as_ref().map(values::<T>);
        let out = &mut self.out.storage_mut::<T>()[..n];
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(k, chunk)| {
                let range = k * CHUNK..k * CHUNK + chunk.len();
                if let Some(source) = source {
                    chunk.copy_from_slice(&source[range.clone()]);
                }
                f(chunk, inputs.map(|input| &input[range.clone()]));
            });
        self.out
    }
}

/// `a·x + b·y`, into x's buffer.
pub(crate) fn axpby(x: FlexTensor, a: f64, y: FlexTensor, b: f64) -> FlexTensor {
    let y = contiguous(y);
    assert_eq!(x.dtype(), y.dtype(), "axpby: tensors differ in dtype");
    with_real!(y.dtype(), T => {
        let (a, b) = (T::narrow(a), T::narrow(b));
        Target::new::<T>(x).update([values::<T>(&y)], |x, [y]| axpby_chunk(x, y, a, b))
    })
}

/// The moving average of squares `v ← β·v + (1 − β)·g²`, into v's buffer.
pub(crate) fn square_ema(v: FlexTensor, g: FlexTensor, beta: f64) -> FlexTensor {
    let g = contiguous(g);
    assert_eq!(v.dtype(), g.dtype(), "square_ema: tensors differ in dtype");
    with_real!(g.dtype(), T => {
        let (b, c) = (T::narrow(beta), T::narrow(1.0 - beta));
        Target::new::<T>(v).update([values::<T>(&g)], |v, [g]| square_ema_chunk(v, g, b, c))
    })
}

/// Adam's step `p − s·m / (√v / c + ε)`, into p's buffer (`s` the bias-corrected step size,
/// `c` = √(1 − β2^t)).
pub(crate) fn adam_step(
    p: FlexTensor,
    m: FlexTensor,
    v: FlexTensor,
    step_size: f64,
    bc2_sqrt: f64,
    eps: f64,
) -> FlexTensor {
    let (m, v) = (contiguous(m), contiguous(v));
    assert!(
        m.dtype() == p.dtype() && v.dtype() == p.dtype(),
        "adam_step: tensors differ in dtype"
    );
    with_real!(m.dtype(), T => {
        let (s, c, e) = (T::narrow(step_size), T::narrow(bc2_sqrt), T::narrow(eps));
        Target::new::<T>(p).update([values::<T>(&m), values::<T>(&v)], |p, [m, v]| {
            adam_step_chunk(p, m, v, [s, c, e])
        })
    })
}

/// Adam's moments and its bias-corrected direction in one pass, into new buffers: m' = β1·m +
/// (1 − β1)·g, s' = β2·s + (1 − β2)·g², v = m̂ / (√(s'/bc2) + ε) with m̂ = m'/bc1, and ⟨m̂, v⟩
/// in f64 (m̂ never stored). The sums run over the blocks of the inner products and add in
/// their order, so every value, the sum included, is bit-identical to the composition of
/// Burn's ops and [`super::reduce::inner_products`].
pub(crate) fn adam_direction(
    m: FlexTensor,
    s: FlexTensor,
    g: FlexTensor,
    c: AdamDirection,
) -> (FlexTensor, FlexTensor, FlexTensor, f64) {
    let (m, s, g) = (contiguous(m), contiguous(s), contiguous(g));
    assert!(
        m.dtype() == g.dtype() && s.dtype() == g.dtype(),
        "adam_direction: tensors differ in dtype"
    );
    let n = g.shape().num_elements();
    assert!(
        m.shape().num_elements() == n && s.shape().num_elements() == n,
        "adam_direction: tensors differ in length"
    );
    with_real!(g.dtype(), T => {
        let (m, s, g) = (values::<T>(&m), values::<T>(&s), values::<T>(&g));
        let (b1, c1) = (T::narrow(c.beta1), T::narrow(1.0 - c.beta1));
        let (b2, c2) = (T::narrow(c.beta2), T::narrow(1.0 - c.beta2));
        let (bc1, bc2, eps) = (T::narrow(c.bc1), T::narrow(c.bc2), T::narrow(c.eps));
        let (mut m2, mut s2, mut v) = (vec![T::zero(); n], vec![T::zero(); n], vec![T::zero(); n]);
        let sums: Vec<f64> = m2
            .par_chunks_mut(BLOCK)
            .zip(s2.par_chunks_mut(BLOCK))
            .zip(v.par_chunks_mut(BLOCK))
            .enumerate()
            .map(|(k, ((m2, s2), v))| {
                let range = k * BLOCK..k * BLOCK + m2.len();
                let (m, s, g) = (&m[range.clone()], &s[range.clone()], &g[range]);
                adam_direction_chunk([m2, s2, v], [m, s, g], [b1, c1, b2, c2, bc1, bc2, eps]);
                dot_block_with(m2, v, |x| x / bc1)
            })
            .collect();
        let dot = sums.iter().fold(0.0, |total, s| total + s);
        (tensor(m2, [n]), tensor(s2, [n]), tensor(v, [n]), dot)
    })
}

with_avx2! {
    /// x ← a·x + b·y over a chunk.
    fn axpby_chunk<T>(x: &mut [T], y: &[T], a: T, b: T) -> () = axpby_plain
}

#[inline(always)]
fn axpby_plain<T: Real>(x: &mut [T], y: &[T], a: T, b: T) {
    for (x, &y) in x.iter_mut().zip(y) {
        *x = a * *x + b * y;
    }
}

with_avx2! {
    /// v ← b·v + c·g² over a chunk.
    fn square_ema_chunk<T>(v: &mut [T], g: &[T], b: T, c: T) -> () = square_ema_plain
}

#[inline(always)]
fn square_ema_plain<T: Real>(v: &mut [T], g: &[T], b: T, c: T) {
    for (v, &g) in v.iter_mut().zip(g) {
        *v = b * *v + c * (g * g);
    }
}

with_avx2! {
    /// p ← p − s·m / (√v / c + e) over a chunk, `[s, c, e]` as given.
    fn adam_step_chunk<T>(p: &mut [T], m: &[T], v: &[T], sce: [T; 3]) -> () = adam_step_plain
}

#[inline(always)]
fn adam_step_plain<T: Real>(p: &mut [T], m: &[T], v: &[T], [s, c, e]: [T; 3]) {
    for ((p, &m), &v) in p.iter_mut().zip(m).zip(v) {
        *p = *p - s * (m / (v.sqrt() / c + e));
    }
}

with_avx2! {
    /// [`adam_direction`]'s elementwise part over a block: `out` = [m′, s′, v] from `inputs` =
    /// [m, s, g] and `k` = [β1, 1 − β1, β2, 1 − β2, bc1, bc2, ε].
    fn adam_direction_chunk<T>(out: [&mut [T]; 3], inputs: [&[T]; 3], k: [T; 7]) -> ()
        = adam_direction_plain
}

#[inline(always)]
fn adam_direction_plain<T: Real>(
    [m2, s2, v]: [&mut [T]; 3],
    [m, s, g]: [&[T]; 3],
    [b1, c1, b2, c2, bc1, bc2, eps]: [T; 7],
) {
    let n = m2.len();
    assert!(s2.len() == n && v.len() == n && m.len() == n && s.len() == n && g.len() == n);
    for i in 0..n {
        let gi = g[i];
        m2[i] = b1 * m[i] + c1 * gi;
        s2[i] = b2 * s[i] + c2 * (gi * gi);
        v[i] = (m2[i] / bc1) / ((s2[i] / bc2).sqrt() + eps);
    }
}
