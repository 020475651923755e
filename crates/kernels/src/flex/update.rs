//! Fused elementwise optimizer updates on flex storage: one pass per tensor, written into the
//! target's own buffer when nothing else holds it.
//!
//! Every formula rounds exactly as the composition of Burn's ops it replaces (each scalar
//! converted to the element type first, each product and sum rounded to it, no fused
//! multiply-add), so results are bit-identical to the stock path on flex; only the passes over
//! memory and the allocations are saved. Large tensors are split into fixed chunks that rayon
//! runs in parallel; each value depends on its own position only, so results do not depend on
//! the thread count.

use std::mem::MaybeUninit;

use burn::backend::TensorMetadata;
use burn::tensor::TensorData;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::reduce::{BLOCK, dot_block, dot_block_with};
use super::simd::with_avx2;
use super::{Real, contiguous, tensor, values, with_real};
use crate::AdamDirection;

/// Values per parallel chunk (64 KiB of f32: a chunk and its operands stay in L2).
const CHUNK: usize = 1 << 14;

/// Where an update writes: the target's own buffer when nothing else holds it, otherwise a new
/// buffer that each chunk first fills from the target's values (a shared buffer is never
/// written, and the copy costs no separate pass over memory).
enum Target {
    /// The target's own buffer.
    Own(FlexTensor),
    /// The target's values, to be copied into a new buffer.
    Shared(FlexTensor),
}

impl Target {
    fn new(t: FlexTensor) -> Self {
        let at_start = t.layout().contiguous_offsets().map(|(start, _)| start) == Some(0);
        if t.is_unique() && at_start {
            Self::Own(t)
        } else {
            Self::Shared(contiguous(t))
        }
    }

    /// Runs `f(values, inputs)` on each chunk of the target's values (as they were) and the
    /// matching chunks of `inputs` (equally long), in parallel; returns the updated tensor.
    fn update<T: Real, const K: usize>(
        self,
        inputs: [&[T]; K],
        f: impl Fn(&mut [T], [&[T]; K]) + Sync + Send,
    ) -> FlexTensor {
        self.update_chunks(CHUNK, inputs, f).0
    }

    /// [`Target::update`] over chunks of `chunk` values, with what `f` returns for each chunk,
    /// in order.
    fn update_chunks<T: Real, const K: usize, R: Send>(
        self,
        chunk: usize,
        inputs: [&[T]; K],
        f: impl Fn(&mut [T], [&[T]; K]) -> R + Sync + Send,
    ) -> (FlexTensor, Vec<R>) {
        let check = |n: usize| {
            for input in inputs {
                assert_eq!(input.len(), n, "tensors differ in length");
            }
        };
        match self {
            Self::Own(mut out) => {
                let n = out.shape().num_elements();
                check(n);
                let results = out.storage_mut::<T>()[..n]
                    .par_chunks_mut(chunk)
                    .enumerate()
                    .map(|(k, values)| {
                        let range = k * chunk..k * chunk + values.len();
                        f(values, inputs.map(|input| &input[range.clone()]))
                    })
                    .collect();
                (out, results)
            }
            Self::Shared(source) => {
                let shape = source.shape();
                let n = shape.num_elements();
                check(n);
                let source = values::<T>(&source);
                // Not zero-filled first: every chunk is written from the source below (as a
                // typed vector, too: `FlexTensor::zeros` would copy its bytes once more).
                let mut out = Vec::<T>::with_capacity(n);
                let results = out.spare_capacity_mut()[..n]
                    .par_chunks_mut(chunk)
                    .enumerate()
                    .map(|(k, values)| {
                        let range = k * chunk..k * chunk + values.len();
                        for (value, &old) in values.iter_mut().zip(&source[range.clone()]) {
                            value.write(old);
                        }
                        // SAFETY: every value of the chunk was written just above (the source
                        // is as long as the buffer), and `MaybeUninit<T>` lays out as `T`.
                        let values = unsafe {
                            std::slice::from_raw_parts_mut(
                                values.as_mut_ptr().cast::<T>(),
                                values.len(),
                            )
                        };
                        f(values, inputs.map(|input| &input[range.clone()]))
                    })
                    .collect();
                // SAFETY: the chunks above cover the first n values and wrote all of them.
                unsafe { out.set_len(n) };
                (FlexTensor::from_data(TensorData::new(out, shape)), results)
            }
        }
    }
}

/// `a·x + b·y`, into x's buffer.
pub(crate) fn axpby(x: FlexTensor, a: f64, y: FlexTensor, b: f64) -> FlexTensor {
    let y = contiguous(y);
    assert_eq!(x.dtype(), y.dtype(), "axpby: tensors differ in dtype");
    with_real!(y.dtype(), T => {
        let (a, b) = (T::narrow(a), T::narrow(b));
        Target::new(x).update([values::<T>(&y)], |x, [y]| axpby_chunk(x, y, a, b))
    })
}

/// [`axpby`], with ‖y‖² and ‖a·x + b·y‖² in f64 summed in the same pass: the chunks are the
/// inner products' blocks and each block's sums are theirs, so both equal
/// [`super::reduce::inner_products`] of the tensors bit for bit.
pub(crate) fn axpby_norms(x: FlexTensor, a: f64, y: FlexTensor, b: f64) -> (FlexTensor, [f64; 2]) {
    let y = contiguous(y);
    assert_eq!(x.dtype(), y.dtype(), "axpby_norms: tensors differ in dtype");
    with_real!(y.dtype(), T => {
        let (a, b) = (T::narrow(a), T::narrow(b));
        let (out, sums) = Target::new(x).update_chunks(BLOCK, [values::<T>(&y)], |x, [y]| {
            axpby_chunk(x, y, a, b);
            [dot_block(y, y), dot_block(x, x)]
        });
        let mut norms = [0.0; 2];
        for block in sums {
            norms[0] += block[0];
            norms[1] += block[1];
        }
        (out, norms)
    })
}

/// The moving average of squares `v ← β·v + (1 − β)·g²`, into v's buffer.
pub(crate) fn square_ema(v: FlexTensor, g: FlexTensor, beta: f64) -> FlexTensor {
    let g = contiguous(g);
    assert_eq!(v.dtype(), g.dtype(), "square_ema: tensors differ in dtype");
    with_real!(g.dtype(), T => {
        let (b, c) = (T::narrow(beta), T::narrow(1.0 - beta));
        Target::new(v).update([values::<T>(&g)], |v, [g]| square_ema_chunk(v, g, b, c))
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
        Target::new(p).update([values::<T>(&m), values::<T>(&v)], |p, [m, v]| {
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
        // Uninitialised buffers that every block fills completely: zero-filling them first
        // took 3 % of an L4Adam step on the MLP (memset and fresh pages).
        let (mut m2, mut s2, mut v) =
            (Vec::<T>::with_capacity(n), Vec::<T>::with_capacity(n), Vec::<T>::with_capacity(n));
        let sums: Vec<f64> = m2.spare_capacity_mut()[..n]
            .par_chunks_mut(BLOCK)
            .zip(s2.spare_capacity_mut()[..n].par_chunks_mut(BLOCK))
            .zip(v.spare_capacity_mut()[..n].par_chunks_mut(BLOCK))
            .enumerate()
            .map(|(k, ((m2, s2), v))| {
                let range = k * BLOCK..k * BLOCK + m2.len();
                let (m, s, g) = (&m[range.clone()], &s[range.clone()], &g[range]);
                adam_direction_chunk([m2, s2, v], [m, s, g], [b1, c1, b2, c2, bc1, bc2, eps]);
                // SAFETY: `adam_direction_chunk` wrote every value of both blocks (its loop
                // covers their whole length, asserted equal), so they are initialised f32/f64
                // values, which `MaybeUninit<T>` lays out as `T`.
                let (m2, v) = unsafe {
                    (
                        std::slice::from_raw_parts(m2.as_ptr().cast::<T>(), m2.len()),
                        std::slice::from_raw_parts(v.as_ptr().cast::<T>(), v.len()),
                    )
                };
                dot_block_with(m2, v, |x| x / bc1)
            })
            .collect();
        // SAFETY: the blocks above cover the first n values of each buffer and wrote all of them.
        unsafe {
            m2.set_len(n);
            s2.set_len(n);
            v.set_len(n);
        }
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
    /// Every value of the three outputs is written.
    fn adam_direction_chunk<T>(out: [&mut [MaybeUninit<T>]; 3], inputs: [&[T]; 3], k: [T; 7]) -> ()
        = adam_direction_plain
}

#[inline(always)]
fn adam_direction_plain<T: Real>(
    [m2, s2, v]: [&mut [MaybeUninit<T>]; 3],
    [m, s, g]: [&[T]; 3],
    [b1, c1, b2, c2, bc1, bc2, eps]: [T; 7],
) {
    let n = m2.len();
    assert!(s2.len() == n && v.len() == n && m.len() == n && s.len() == n && g.len() == n);
    for i in 0..n {
        let gi = g[i];
        let mi = b1 * m[i] + c1 * gi;
        let si = b2 * s[i] + c2 * (gi * gi);
        m2[i].write(mi);
        s2[i].write(si);
        v[i].write((mi / bc1) / ((si / bc2).sqrt() + eps));
    }
}
