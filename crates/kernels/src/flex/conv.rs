//! 2-D convolution on flex: per-image im2col and gemm, forward and backward.
//!
//! For image i, `col_i` `[K, P]` (K = c_in·k², P = output pixels; row `(ci, ky, kx)`, column
//! `(oy, ox)`) holds the input pixel each kernel tap sees, zero in the padding. Then
//! - forward: `y_i [c_out, P] = W [c_out, K] · col_i`,
//! - weight gradient: `dW += dy_i · col_iᵀ`, accumulated per worker over its images,
//! - input gradient: `dcol_i = Wᵀ · dy_i`, scattered back by col2im (adding overlaps).
//!
//! Each gemm is issued with the output pixels P (hundreds to thousands) as its long dimension
//! and runs single-threaded; workers take whole images, each reusing one im2col buffer. A 1×1
//! convolution with stride 1 and no padding uses the image itself as `col_i`.

use burn::backend::TensorMetadata;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::matmul::{Mat, gemm_into};
use super::{Real, contiguous, tensor, values, with_real};

/// The sizes of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Images in the batch.
    pub n: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel side.
    pub k: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl Geometry {
    /// The geometry of `x` `[n, c_in, h, w]` convolved with `weight` `[c_out, c_in, k, k]`.
    pub fn new(x: [usize; 4], weight: [usize; 4], stride: usize, padding: usize) -> Self {
        let [n, c_in, h, w] = x;
        let [c_out, c_in_w, k, k2] = weight;
        assert_eq!(
            c_in, c_in_w,
            "conv2d: input channels differ from the weight's"
        );
        assert_eq!(k, k2, "conv2d: square kernels only");
        assert!(stride > 0, "conv2d: stride must be positive");
        let side = |len: usize| {
            let padded = len + 2 * padding;
            assert!(
                padded >= k,
                "conv2d: kernel {k} larger than padded input {padded}"
            );
            (padded - k) / stride + 1
        };
        Self {
            n,
            c_in,
            h,
            w,
            c_out,
            k,
            stride,
            padding,
            oh: side(h),
            ow: side(w),
        }
    }

    /// Rows of an im2col matrix: c_in·k².
    pub fn taps(&self) -> usize {
        self.c_in * self.k * self.k
    }

    /// Output pixels per image.
    pub fn pixels(&self) -> usize {
        self.oh * self.ow
    }

    /// Values of one input image.
    pub fn image_in(&self) -> usize {
        self.c_in * self.h * self.w
    }

    /// Values of one output image.
    pub fn image_out(&self) -> usize {
        self.c_out * self.pixels()
    }

    /// A 1×1 kernel with stride 1 and no padding: the image is its own im2col.
    pub fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.padding == 0
    }

    /// For kernel offset `tap` (0..k) along an axis of input length `len` and output length
    /// `out`: the output positions `lo..hi` that read an input inside the image (the others
    /// read padding), for stride `stride`.
    fn inside(&self, tap: usize, len: usize, out: usize) -> (usize, usize) {
        // Input position of output o: o·s + tap − p, inside when 0 ≤ · < len.
        let s = self.stride;
        let p = self.padding;
        let lo = if tap >= p { 0 } else { (p - tap).div_ceil(s) };
        // o·s + tap − p ≤ len − 1  ⇔  o ≤ (len − 1 + p − tap) / s.
        let hi = if len + p > tap {
            ((len - 1 + p - tap) / s + 1).min(out)
        } else {
            0
        };
        (lo.min(hi), hi)
    }
}

/// Fills `col` `[K, P]` from one image `x` `[c_in, h, w]`.
pub(crate) fn im2col<T: Real>(g: &Geometry, x: &[T], col: &mut [T]) {
    let (k, s, p, w, ow) = (g.k, g.stride, g.padding, g.w, g.ow);
    let pixels = g.pixels();
    for ci in 0..g.c_in {
        let plane = &x[ci * g.h * w..][..g.h * w];
        for ky in 0..k {
            let (y_lo, y_hi) = g.inside(ky, g.h, g.oh);
            for kx in 0..k {
                let (x_lo, x_hi) = g.inside(kx, w, ow);
                let row = &mut col[((ci * k + ky) * k + kx) * pixels..][..pixels];
                row[..y_lo * ow].fill(T::zero());
                row[y_hi * ow..].fill(T::zero());
                for oy in y_lo..y_hi {
                    let iy = oy * s + ky - p;
                    let src = &plane[iy * w..][..w];
                    let dst = &mut row[oy * ow..][..ow];
                    dst[..x_lo].fill(T::zero());
                    dst[x_hi..].fill(T::zero());
                    if s == 1 {
                        let start = x_lo + kx - p;
                        dst[x_lo..x_hi].copy_from_slice(&src[start..start + (x_hi - x_lo)]);
                    } else {
                        for (ox, d) in dst[x_lo..x_hi].iter_mut().enumerate() {
                            *d = src[(ox + x_lo) * s + kx - p];
                        }
                    }
                }
            }
        }
    }
}

/// Adds `col` `[K, P]` back into one image `x` `[c_in, h, w]` (the adjoint of [`im2col`]).
pub(crate) fn col2im_add<T: Real>(g: &Geometry, col: &[T], x: &mut [T]) {
    let (k, s, p, w, ow) = (g.k, g.stride, g.padding, g.w, g.ow);
    let pixels = g.pixels();
    for ci in 0..g.c_in {
        let plane = &mut x[ci * g.h * w..][..g.h * w];
        for ky in 0..k {
            let (y_lo, y_hi) = g.inside(ky, g.h, g.oh);
            for kx in 0..k {
                let (x_lo, x_hi) = g.inside(kx, w, ow);
                let row = &col[((ci * k + ky) * k + kx) * pixels..][..pixels];
                for oy in y_lo..y_hi {
                    let iy = oy * s + ky - p;
                    let dst = &mut plane[iy * w..][..w];
                    let src = &row[oy * ow..][..ow];
                    if s == 1 {
                        let start = x_lo + kx - p;
                        let dst = &mut dst[start..start + (x_hi - x_lo)];
                        for (d, v) in dst.iter_mut().zip(&src[x_lo..x_hi]) {
                            *d = *d + *v;
                        }
                    } else {
                        for (ox, v) in src[x_lo..x_hi].iter().enumerate() {
                            let d = &mut dst[(ox + x_lo) * s + kx - p];
                            *d = *d + *v;
                        }
                    }
                }
            }
        }
    }
}

/// The forward convolution of `x` `[n, c_in, h, w]` with `weight` `[c_out, c_in, k, k]`.
pub(crate) fn forward(
    x: FlexTensor,
    weight: FlexTensor,
    (stride, padding): (usize, usize),
) -> FlexTensor {
    let (x, weight) = (contiguous(x), contiguous(weight));
    let g = Geometry::new(x.shape().dims(), weight.shape().dims(), stride, padding);
    with_real!(x.dtype(), T => {
        let y = forward_values::<T>(&g, values(&x), values(&weight));
        tensor(y, [g.n, g.c_out, g.oh, g.ow])
    })
}

/// [`forward`] on plain slices.
pub(crate) fn forward_values<T: Real>(g: &Geometry, x: &[T], weight: &[T]) -> Vec<T> {
    let (taps, pixels) = (g.taps(), g.pixels());
    assert_eq!(x.len(), g.n * g.image_in(), "conv2d: input size");
    assert_eq!(weight.len(), g.c_out * taps, "conv2d: weight size");
    let mut y = vec![T::zero(); g.n * g.image_out()];
    if y.is_empty() {
        return y;
    }
    y.par_chunks_mut(g.image_out())
        .zip(x.par_chunks(g.image_in().max(1)))
        .for_each_init(
            || vec![T::zero(); if g.pointwise() { 0 } else { taps * pixels }],
            |col, (y_i, x_i)| {
                let col: &[T] = if g.pointwise() {
                    x_i
                } else {
                    im2col(g, x_i, col);
                    col
                };
                // y_iᵀ [P, c_out] = col_iᵀ [P, K] · Wᵀ [K, c_out].
                // SAFETY: y_i is [c_out, P] (element (p, co) at co·P + p), col is [K, P]
                // (element (p, t) of its transpose at t·P + p) and the weight [c_out, K]
                // (element (t, co) of its transpose at co·K + t): each view stays inside its
                // slice, y_i is this worker's own chunk and distinct from the inputs.
                unsafe {
                    gemm_into(
                        (pixels, g.c_out, taps),
                        Mat {
                            ptr: y_i.as_mut_ptr(),
                            rs: 1,
                            cs: pixels as isize,
                        },
                        false,
                        Mat {
                            ptr: col.as_ptr(),
                            rs: 1,
                            cs: pixels as isize,
                        },
                        Mat {
                            ptr: weight.as_ptr(),
                            rs: 1,
                            cs: taps as isize,
                        },
                    );
                }
            },
        );
    y
}

/// The gradients of [`forward`] for output gradient `dy` `[n, c_out, oh, ow]`: (input gradient
/// if `want_x`, weight gradient if `want_weight`).
pub(crate) fn backward(
    x: FlexTensor,
    weight: FlexTensor,
    dy: FlexTensor,
    (stride, padding): (usize, usize),
    (want_x, want_weight): (bool, bool),
) -> (Option<FlexTensor>, Option<FlexTensor>) {
    let (x, weight, dy) = (contiguous(x), contiguous(weight), contiguous(dy));
    let g = Geometry::new(x.shape().dims(), weight.shape().dims(), stride, padding);
    with_real!(x.dtype(), T => (
        want_x.then(|| {
            tensor(input_gradient::<T>(&g, values(&weight), values(&dy)), [g.n, g.c_in, g.h, g.w])
        }),
        want_weight.then(|| {
            tensor(weight_gradient::<T>(&g, values(&x), values(&dy)), [g.c_out, g.c_in, g.k, g.k])
        }),
    ))
}

/// The input gradient `[n, c_in, h, w]` of a convolution for output gradient `dy`: per image
/// `dcol = Wᵀ · dy_i`, then col2im.
pub(crate) fn input_gradient<T: Real>(g: &Geometry, weight: &[T], dy: &[T]) -> Vec<T> {
    let (taps, pixels) = (g.taps(), g.pixels());
    assert_eq!(weight.len(), g.c_out * taps, "conv2d backward: weight size");
    assert_eq!(
        dy.len(),
        g.n * g.image_out(),
        "conv2d backward: output gradient size"
    );
    let mut dx = vec![T::zero(); g.n * g.image_in()];
    if dx.is_empty() {
        return dx;
    }
    let pointwise = g.pointwise();
    dx.par_chunks_mut(g.image_in())
        .zip(dy.par_chunks(g.image_out().max(1)))
        .for_each_init(
            || vec![T::zero(); if pointwise { 0 } else { taps * pixels }],
            |dcol, (dx_i, dy_i)| {
                let dst: *mut T = if pointwise {
                    dx_i.as_mut_ptr()
                } else {
                    dcol.as_mut_ptr()
                };
                // dcolᵀ [P, K] = dy_iᵀ [P, c_out] · W [c_out, K].
                // SAFETY: the destination is [K, P] (element (p, t) at t·P + p): dx_i itself
                // when pointwise (K = c_in and P = h·w, the same size) or this worker's dcol;
                // dy_i is [c_out, P] (element (p, co) of its transpose at co·P + p), the
                // weight [c_out, K] (element (co, t) at co·K + t); all inside their slices, the
                // destination distinct from both and this worker's alone.
                unsafe {
                    gemm_into(
                        (pixels, taps, g.c_out),
                        Mat {
                            ptr: dst,
                            rs: 1,
                            cs: pixels as isize,
                        },
                        false,
                        Mat {
                            ptr: dy_i.as_ptr(),
                            rs: 1,
                            cs: pixels as isize,
                        },
                        Mat {
                            ptr: weight.as_ptr(),
                            rs: taps as isize,
                            cs: 1,
                        },
                    );
                }
                if !pointwise {
                    col2im_add(g, dcol, dx_i);
                }
            },
        );
    dx
}

/// Image groups of a weight gradient: a fixed number (not the thread count), so that its sums
/// do not depend on the machine.
const WEIGHT_GRADIENT_GROUPS: usize = 16;

/// The weight gradient `[c_out, c_in, k, k]` of a convolution of `x` for output gradient `dy`:
/// `Σ_i dy_i · col_iᵀ`, accumulated per group of images into the group's own buffer.
pub(crate) fn weight_gradient<T: Real>(g: &Geometry, x: &[T], dy: &[T]) -> Vec<T> {
    let (taps, pixels) = (g.taps(), g.pixels());
    assert_eq!(x.len(), g.n * g.image_in(), "conv2d backward: input size");
    assert_eq!(
        dy.len(),
        g.n * g.image_out(),
        "conv2d backward: output gradient size"
    );
    let pointwise = g.pointwise();
    // Fixed groups of images, each summed in order, then the groups in order: the same sums
    // in the same order whatever the thread count or scheduling, so runs are reproducible bit
    // for bit (a resumed run equals the uninterrupted one).
    let per_group = g.n.div_ceil(WEIGHT_GRADIENT_GROUPS).max(1);
    let partials: Vec<Vec<T>> = (0..g.n.div_ceil(per_group))
        .into_par_iter()
        .map(|group| {
            let mut col = vec![T::zero(); if pointwise { 0 } else { taps * pixels }];
            let mut dw = vec![T::zero(); g.c_out * taps];
            for i in group * per_group..((group + 1) * per_group).min(g.n) {
                let x_i = &x[i * g.image_in()..][..g.image_in()];
                let dy_i = &dy[i * g.image_out()..][..g.image_out()];
                let col_i: &[T] = if pointwise {
                    x_i
                } else {
                    im2col(g, x_i, &mut col);
                    &col
                };
                // dWᵀ [K, c_out] += col [K, P] · dy_iᵀ [P, c_out].
                // SAFETY: dw is this group's [c_out, K] (element (t, co) of its transpose at
                // co·K + t), col_i is [K, P] (element (t, p) at t·P + p), dy_i is [c_out, P]
                // (element (p, co) of its transpose at co·P + p); all inside their slices and
                // dw distinct from both.
                unsafe {
                    gemm_into(
                        (taps, g.c_out, pixels),
                        Mat {
                            ptr: dw.as_mut_ptr(),
                            rs: 1,
                            cs: taps as isize,
                        },
                        true,
                        Mat {
                            ptr: col_i.as_ptr(),
                            rs: pixels as isize,
                            cs: 1,
                        },
                        Mat {
                            ptr: dy_i.as_ptr(),
                            rs: 1,
                            cs: pixels as isize,
                        },
                    );
                }
            }
            dw
        })
        .collect();
    let mut total = vec![T::zero(); g.c_out * taps];
    for part in &partials {
        for (t, v) in total.iter_mut().zip(part) {
            *t = *t + *v;
        }
    }
    total
}

/// The geometry of the convolution whose input gradient is the transposed convolution of `x`
/// `[n, c_in, h, w]` with `weight` `[c_in, c_out, k, k]`: from `[n, c_out, H, W]` (H =
/// (h − 1)·stride + k + output_padding − 2·padding) back to `[n, c_in, h, w]`.
pub(crate) fn transposed_geometry(
    x: [usize; 4],
    weight: [usize; 4],
    stride: usize,
    padding: usize,
    output_padding: usize,
) -> Geometry {
    let [n, c_in, h, w] = x;
    let [c_in_w, c_out, k, _] = weight;
    assert_eq!(
        c_in, c_in_w,
        "conv_transpose2d: input channels differ from the weight's"
    );
    assert!(
        output_padding < stride,
        "conv_transpose2d: output padding must be below the stride"
    );
    let side = |len: usize| {
        ((len - 1) * stride + k + output_padding)
            .checked_sub(2 * padding)
            .filter(|&s| s > 0)
            .expect("conv_transpose2d: padding larger than the output")
    };
    let g = Geometry::new(
        [n, c_out, side(h), side(w)],
        [c_in, c_out, k, k],
        stride,
        padding,
    );
    debug_assert_eq!((g.oh, g.ow), (h, w));
    g
}

/// The transposed convolution of `x` `[n, c_in, h, w]` with `weight` `[c_in, c_out, k, k]`.
pub(crate) fn transposed_forward(
    x: FlexTensor,
    weight: FlexTensor,
    (stride, padding, output_padding): (usize, usize, usize),
) -> FlexTensor {
    let (x, weight) = (contiguous(x), contiguous(weight));
    let g = transposed_geometry(
        x.shape().dims(),
        weight.shape().dims(),
        stride,
        padding,
        output_padding,
    );
    with_real!(x.dtype(), T => {
        tensor(input_gradient::<T>(&g, values(&weight), values(&x)), [g.n, g.c_in, g.h, g.w])
    })
}

/// The gradients of [`transposed_forward`] for output gradient `dy` `[n, c_out, H, W]`: (input
/// gradient: a convolution of `dy`, weight gradient: a convolution weight gradient with `dy` as
/// its input and `x` as its output gradient).
pub(crate) fn transposed_backward(
    x: FlexTensor,
    weight: FlexTensor,
    dy: FlexTensor,
    (stride, padding, output_padding): (usize, usize, usize),
    (want_x, want_weight): (bool, bool),
) -> (Option<FlexTensor>, Option<FlexTensor>) {
    let (x, weight, dy) = (contiguous(x), contiguous(weight), contiguous(dy));
    let g = transposed_geometry(
        x.shape().dims(),
        weight.shape().dims(),
        stride,
        padding,
        output_padding,
    );
    with_real!(x.dtype(), T => (
        want_x.then(|| {
            tensor(forward_values::<T>(&g, values(&dy), values(&weight)), [g.n, g.c_out, g.oh, g.ow])
        }),
        want_weight.then(|| {
            tensor(weight_gradient::<T>(&g, values(&dy), values(&x)), [g.c_out, g.c_in, g.k, g.k])
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_gradients_are_the_same_bits_on_one_thread_and_on_many() {
        let g = Geometry::new([37, 3, 6, 5], [4, 3, 3, 3], 1, 1);
        let values = |seed: u32, n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| {
                    ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 999.0
                        - 0.5
                })
                .collect()
        };
        let x = values(1, g.n * g.image_in());
        let dy = values(2, g.n * g.image_out());
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a thread pool")
                .install(|| weight_gradient(&g, &x, &dy))
        };
        let one = on(1);
        for threads in [2, 3, 8] {
            let many = on(threads);
            assert!(
                one.iter()
                    .zip(&many)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{threads} threads give other bits"
            );
        }
    }

    #[test]
    fn inside_ranges_cover_exactly_the_outputs_that_read_the_image() {
        for (len, k, stride, padding) in [(5, 3, 1, 1), (7, 5, 2, 2), (4, 2, 3, 1), (3, 3, 1, 0)] {
            let g = Geometry::new([1, 1, len, len], [1, 1, k, k], stride, padding);
            for tap in 0..k {
                let (lo, hi) = g.inside(tap, len, g.oh);
                for o in 0..g.oh {
                    let pos = (o * stride + tap) as isize - padding as isize;
                    let inside = pos >= 0 && pos < len as isize;
                    assert_eq!(
                        inside,
                        (lo..hi).contains(&o),
                        "{len} {k} {stride} {padding} {tap} {o}"
                    );
                }
            }
        }
    }
}

/// Kernel timings on ResNet-20's convolutions at batch 128 (not a test of speed: run by hand,
/// `cargo test --release -p steplab-kernels --features flex timing -- --ignored --nocapture`).
#[cfg(test)]
mod timing {
    use super::*;
    use std::time::Instant;

    fn time(what: &str, flops: f64, mut f: impl FnMut()) {
        f();
        let rounds = 5;
        let start = Instant::now();
        for _ in 0..rounds {
            f();
        }
        let s = start.elapsed().as_secs_f64() / rounds as f64;
        println!(
            "{what:<44} {:>8.2} ms {:>7.1} GFLOP/s",
            s * 1e3,
            flops / s / 1e9
        );
    }

    #[test]
    #[ignore = "prints timings"]
    fn time_resnet20_convolutions() {
        for (c, side, stride) in [(16, 32, 1), (32, 16, 1), (64, 8, 1), (16, 32, 2)] {
            let g = Geometry::new([128, c, side, side], [c, c, 3, 3], 1, 1);
            let g = if stride == 2 {
                Geometry::new([128, c, side, side], [2 * c, c, 3, 3], 2, 1)
            } else {
                g
            };
            let x = vec![0.5f32; g.n * g.image_in()];
            let w = vec![0.25f32; g.c_out * g.taps()];
            let dy = vec![0.125f32; g.n * g.image_out()];
            let flops = 2.0 * (g.n * g.c_out * g.taps() * g.pixels()) as f64;
            let name = format!("{c}->{} {side}x{side} s{stride}", g.c_out);
            time(&format!("{name} forward"), flops, || {
                std::hint::black_box(forward_values(&g, &x, &w));
            });
            time(&format!("{name} forward, m = c_out"), flops, || {
                let (taps, pixels) = (g.taps(), g.pixels());
                let mut y = vec![0f32; g.n * g.image_out()];
                y.par_chunks_mut(g.image_out())
                    .zip(x.par_chunks(g.image_in()))
                    .for_each_init(
                        || vec![0f32; taps * pixels],
                        |col, (y_i, x_i)| {
                            im2col(&g, x_i, col);
                            unsafe {
                                gemm_into(
                                    (g.c_out, pixels, taps),
                                    Mat {
                                        ptr: y_i.as_mut_ptr(),
                                        rs: pixels as isize,
                                        cs: 1,
                                    },
                                    false,
                                    Mat {
                                        ptr: w.as_ptr(),
                                        rs: taps as isize,
                                        cs: 1,
                                    },
                                    Mat {
                                        ptr: col.as_ptr(),
                                        rs: pixels as isize,
                                        cs: 1,
                                    },
                                );
                            }
                        },
                    );
                std::hint::black_box(y);
            });
            time(&format!("{name} input gradient"), flops, || {
                std::hint::black_box(input_gradient(&g, &w, &dy));
            });
            time(&format!("{name} weight gradient"), flops, || {
                std::hint::black_box(weight_gradient(&g, &x, &dy));
            });
            let mut col = vec![0f32; g.taps() * g.pixels()];
            time(&format!("{name} im2col x128"), 0.0, || {
                for i in 0..g.n {
                    im2col(&g, &x[i * g.image_in()..][..g.image_in()], &mut col);
                }
                std::hint::black_box(&col);
            });
        }
    }
}
