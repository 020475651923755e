//! The dense layer `y = act(x·W + b)` on flex, with act the identity or ReLU, and its backward.
//!
//! Forward: the bias is written into the output rows first and one gemm accumulates x·W onto
//! it, then ReLU runs over the output in place: no separate bias or activation tensors, and no
//! zero-filled output that flex's matmul would copy once more to align it. Backward: with
//! dz = dy ⊙ [y > 0] (dy for the identity), dW = xᵀ·dz and dx = dz·Wᵀ are gemms on transposed
//! views (no transposed copies), db the column sums of dz accumulated in f64.
//!
//! x is `[batch, inputs]`, W `[inputs, outputs]` (row-major, as the MLP family stores it), b
//! `[outputs]`. NaN passes ReLU and its gradient mask, as Burn's `relu` lets it (so a diverged
//! run still reports a NaN loss).

use burn::backend::TensorMetadata;
use burn_flex::FlexTensor;
use num_traits::Zero;
use rayon::prelude::*;

use super::matmul::{Mat, gemm_with};
use super::{Real, contiguous, tensor, values, with_real};

/// Products of at least this many multiply-adds run on rayon's threads (flex's own matmul
/// waits for 192³; the MLP's 100×300×100 layer is below that and gains from two threads).
const PARALLEL_WORK: usize = 1 << 20;

/// Values per parallel chunk of the elementwise passes.
const CHUNK: usize = 1 << 14;

/// The gemm crate's threading for an `m × n × k` product.
fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    if m * n * k >= PARALLEL_WORK {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

/// Whether ReLU keeps a value (and its gradient): positive or NaN.
fn passes<T: Real>(v: T) -> bool {
    v.is_nan() || v > T::zero()
}

/// `[batch, inputs]`, `[inputs, outputs]` of a layer, checked against the bias.
fn dims(x: &FlexTensor, w: &FlexTensor, b_len: usize) -> (usize, usize, usize) {
    let [batch, inputs] = x.shape().dims();
    let [w_in, outputs] = w.shape().dims();
    assert!(
        w_in == inputs && b_len == outputs,
        "dense: x [{batch}, {inputs}], W [{w_in}, {outputs}] and b [{b_len}] do not fit"
    );
    (batch, inputs, outputs)
}

/// The forward pass `act(x·W + b)`.
pub(crate) fn forward(x: FlexTensor, w: FlexTensor, b: FlexTensor, relu: bool) -> FlexTensor {
    let (x, w, b) = (contiguous(x), contiguous(w), contiguous(b));
    assert!(
        w.dtype() == x.dtype() && b.dtype() == x.dtype(),
        "dense: x, W and b differ in dtype"
    );
    let (batch, inputs, outputs) = dims(&x, &w, b.shape().num_elements());
    with_real!(x.dtype(), T => {
        let (x, w, b) = (values::<T>(&x), values::<T>(&w), values::<T>(&b));
        let mut y: Vec<T> = Vec::with_capacity(batch * outputs);
        for _ in 0..batch {
            y.extend_from_slice(b);
        }
        if inputs > 0 {
            // SAFETY: y is [batch, outputs] (element (r, o) at r·outputs + o), x [batch, inputs]
            // (r·inputs + i), W [inputs, outputs] (i·outputs + o): every view stays inside its
            // own slice, y is a fresh vector distinct from both inputs and nothing else touches
            // it during the call.
            unsafe {
                gemm_with(
                    (batch, outputs, inputs),
                    Mat { ptr: y.as_mut_ptr(), rs: outputs as isize, cs: 1 },
                    true,
                    Mat { ptr: x.as_ptr(), rs: inputs as isize, cs: 1 },
                    Mat { ptr: w.as_ptr(), rs: outputs as isize, cs: 1 },
                    parallelism(batch, outputs, inputs),
                );
            }
        }
        if relu {
            y.par_chunks_mut(CHUNK).for_each(|chunk| {
                for v in chunk {
                    if !passes(*v) {
                        *v = T::zero();
                    }
                }
            });
        }
        tensor(y, [batch, outputs])
    })
}

/// The gradients (dx, dW, db) of the layer for the output gradient `dy`, each where `want`
/// asks for it; `y` is the forward's output (read for the ReLU mask only).
pub(crate) fn backward(
    (x, w, y): (FlexTensor, FlexTensor, FlexTensor),
    relu: bool,
    dy: FlexTensor,
    want: [bool; 3],
) -> [Option<FlexTensor>; 3] {
    let (x, w, dy) = (contiguous(x), contiguous(w), contiguous(dy));
    let [batch, outputs] = dy.shape().dims();
    let (_, inputs, _) = dims(&x, &w, outputs);
    with_real!(x.dtype(), T => {
        let (x, w, dy) = (values::<T>(&x), values::<T>(&w), values::<T>(&dy));
        // dz = dy ⊙ [y passes ReLU].
        let masked: Option<Vec<T>> = relu.then(|| {
            let y = contiguous(y);
            let y = values::<T>(&y);
            let mut dz = dy.to_vec();
            dz.par_chunks_mut(CHUNK).zip(y.par_chunks(CHUNK)).for_each(|(dz, y)| {
                for (d, &v) in dz.iter_mut().zip(y) {
                    if !passes(v) {
                        *d = T::zero();
                    }
                }
            });
            dz
        });
        let dz: &[T] = masked.as_deref().unwrap_or(dy);
        let dx = want[0].then(|| {
            let mut dx = vec![T::zero(); batch * inputs];
            if outputs > 0 {
                // SAFETY: dx is [batch, inputs] (r·inputs + i), dz [batch, outputs]
                // (r·outputs + o), Wᵀ element (o, i) of W [inputs, outputs] at i·outputs + o:
                // all inside their slices, dx fresh and touched by nothing else.
                unsafe {
                    gemm_with(
                        (batch, inputs, outputs),
                        Mat { ptr: dx.as_mut_ptr(), rs: inputs as isize, cs: 1 },
                        false,
                        Mat { ptr: dz.as_ptr(), rs: outputs as isize, cs: 1 },
                        Mat { ptr: w.as_ptr(), rs: 1, cs: outputs as isize },
                        parallelism(batch, inputs, outputs),
                    );
                }
            }
            tensor(dx, [batch, inputs])
        });
        let dw = want[1].then(|| {
            let mut dw = vec![T::zero(); inputs * outputs];
            if batch > 0 {
                // SAFETY: dW is [inputs, outputs] (i·outputs + o), xᵀ element (i, r) of x
                // [batch, inputs] at r·inputs + i, dz [batch, outputs] (r·outputs + o): all
                // inside their slices, dW fresh and touched by nothing else.
                unsafe {
                    gemm_with(
                        (inputs, outputs, batch),
                        Mat { ptr: dw.as_mut_ptr(), rs: outputs as isize, cs: 1 },
                        false,
                        Mat { ptr: x.as_ptr(), rs: 1, cs: inputs as isize },
                        Mat { ptr: dz.as_ptr(), rs: outputs as isize, cs: 1 },
                        parallelism(inputs, outputs, batch),
                    );
                }
            }
            tensor(dw, [inputs, outputs])
        });
        let db = want[2].then(|| {
            let mut sums = vec![0.0f64; outputs];
            for row in dz.chunks_exact(outputs.max(1)) {
                for (s, &v) in sums.iter_mut().zip(row) {
                    *s += v.widen();
                }
            }
            tensor(sums.into_iter().map(T::narrow).collect::<Vec<T>>(), [outputs])
        });
        [dx, dw, db]
    })
}
