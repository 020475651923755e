//! Batch norm with batch statistics on flex: statistics accumulated in f64 per channel, the
//! normalisation in one pass; the backward in two passes (two per-channel sums, then dx).
//!
//! With M = n·h·w values per channel, x̂ = (x − μ)/√(σ² + ε) and y = γ·x̂ + β:
//! dβ = Σ dy, dγ = Σ dy·x̂, dx = γ/√(σ² + ε) · (dy − Σdy/M − x̂·Σ(dy·x̂)/M).

use burn::backend::TensorMetadata;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::{Real, contiguous, tensor, values, with_real};

/// What the forward pass keeps for the backward pass and the running statistics.
#[derive(Debug, Clone)]
pub(crate) struct Saved {
    /// Batch mean per channel.
    pub mean: Vec<f64>,
    /// Biased batch variance per channel.
    pub var: Vec<f64>,
    /// 1/√(σ² + ε) per channel.
    pub inv_std: Vec<f64>,
    /// The dtype of the tensors.
    pub dtype: burn::tensor::DType,
}

impl Saved {
    /// μ and σ² as `[c]` tensors of the input's dtype.
    pub fn statistics(&self) -> (FlexTensor, FlexTensor) {
        let c = self.mean.len();
        with_real!(self.dtype, T => (
            tensor(self.mean.iter().map(|v| T::narrow(*v)).collect::<Vec<T>>(), [c]),
            tensor(self.var.iter().map(|v| T::narrow(*v)).collect::<Vec<T>>(), [c]),
        ))
    }
}

/// `[n, c, h, w]` of a batch-norm input.
fn dims(x: &FlexTensor) -> [usize; 4] {
    x.shape().dims()
}

/// The forward pass: (y, what the backward pass needs).
pub(crate) fn forward(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    eps: f64,
) -> (FlexTensor, Saved) {
    let (x, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
    assert!(
        gamma.dtype() == x.dtype() && beta.dtype() == x.dtype(),
        "batch norm: γ and β must have the input's dtype"
    );
    let shape = dims(&x);
    let dtype = x.dtype();
    with_real!(dtype, T => {
        let (y, mean, var, inv_std) =
            forward_values::<T>(shape, values(&x), values(&gamma), values(&beta), eps);
        (tensor(y, shape), Saved { mean, var, inv_std, dtype })
    })
}

/// Per-channel (Σ f(a, b)) over the `[n, c, hw]` layout of two equally shaped slices, in f64,
/// one channel per task.
fn channel_sums<T: Real>(
    [n, c, h, w]: [usize; 4],
    a: &[T],
    f: impl Fn(&[T], usize, usize) -> [f64; 2] + Sync,
) -> Vec<[f64; 2]> {
    let plane = h * w;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut total = [0.0; 2];
            for i in 0..n {
                let start = (i * c + ch) * plane;
                let [s0, s1] = f(&a[start..start + plane], start, ch);
                total[0] += s0;
                total[1] += s1;
            }
            total
        })
        .collect()
}

/// [`forward`] on plain slices: (y, μ, σ², 1/√(σ² + ε)).
pub(crate) fn forward_values<T: Real>(
    shape: [usize; 4],
    x: &[T],
    gamma: &[T],
    beta: &[T],
    eps: f64,
) -> (Vec<T>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let [n, c, h, w] = shape;
    let m = (n * h * w) as f64;
    assert_eq!(x.len(), n * c * h * w, "batch norm: input size");
    assert!(
        gamma.len() == c && beta.len() == c,
        "batch norm: γ and β need one value per channel"
    );
    let sums = channel_sums(shape, x, |plane, _, _| {
        [plane.iter().map(|v| v.widen()).sum::<f64>(), 0.0]
    });
    let mean: Vec<f64> = sums.iter().map(|s| s[0] / m).collect();
    let centred = channel_sums(shape, x, |plane, _, ch| {
        let mu = mean[ch];
        [
            plane.iter().map(|v| (v.widen() - mu).powi(2)).sum::<f64>(),
            0.0,
        ]
    });
    let var: Vec<f64> = centred.iter().map(|s| s[0] / m).collect();
    let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let mut y = vec![T::zero(); x.len()];
    let plane = h * w;
    if plane > 0 {
        y.par_chunks_mut(plane)
            .zip(x.par_chunks(plane))
            .enumerate()
            .for_each(|(block, (y_p, x_p))| {
                let ch = block % c;
                let mu = T::narrow(mean[ch]);
                let scale = T::narrow(inv_std[ch] * gamma[ch].widen());
                let shift = beta[ch];
                for (o, v) in y_p.iter_mut().zip(x_p) {
                    *o = (*v - mu) * scale + shift;
                }
            });
    }
    (y, mean, var, inv_std)
}

/// The backward pass for output gradient `dy`: (dx, dγ, dβ), each only where asked for.
pub(crate) fn backward(
    x: FlexTensor,
    gamma: FlexTensor,
    saved: &Saved,
    dy: FlexTensor,
    want: [bool; 3],
) -> [Option<FlexTensor>; 3] {
    let (x, gamma, dy) = (contiguous(x), contiguous(gamma), contiguous(dy));
    let shape = dims(&x);
    let c = shape[1];
    with_real!(saved.dtype, T => {
        let [dx, dgamma, dbeta] =
            backward_values::<T>(shape, values(&x), values(&gamma), saved, values(&dy), want);
        [
            dx.map(|v| tensor(v, shape)),
            dgamma.map(|v| tensor(v, [c])),
            dbeta.map(|v| tensor(v, [c])),
        ]
    })
}

/// [`backward`] on plain slices.
pub(crate) fn backward_values<T: Real>(
    shape: [usize; 4],
    x: &[T],
    gamma: &[T],
    saved: &Saved,
    dy: &[T],
    [want_x, want_gamma, want_beta]: [bool; 3],
) -> [Option<Vec<T>>; 3] {
    let [n, c, h, w] = shape;
    let plane = h * w;
    let m = (n * plane) as f64;
    assert_eq!(
        dy.len(),
        x.len(),
        "batch norm backward: output gradient size"
    );
    // Per channel: Σ dy and Σ dy·(x − μ).
    let sums = channel_sums(shape, dy, |dy_p, start, ch| {
        let mu = saved.mean[ch];
        let x_p = &x[start..start + dy_p.len()];
        let mut s = [0.0; 2];
        for (g, v) in dy_p.iter().zip(x_p) {
            let g = g.widen();
            s[0] += g;
            s[1] += g * (v.widen() - mu);
        }
        s
    });
    let dbeta = want_beta.then(|| sums.iter().map(|s| T::narrow(s[0])).collect());
    let dgamma = want_gamma.then(|| {
        sums.iter()
            .zip(&saved.inv_std)
            .map(|(s, is)| T::narrow(s[1] * is))
            .collect()
    });
    let dx = want_x.then(|| {
        // dx = a·dy + b·(x − μ) + c₁ with a = γ/σ̂, b = −γ·Σ(dy·(x − μ))/(σ̂³·M),
        // c₁ = −a·Σdy/M (σ̂ = √(σ² + ε)).
        let coefficients: Vec<[T; 4]> = (0..c)
            .map(|ch| {
                let is = saved.inv_std[ch];
                let a = gamma[ch].widen() * is;
                let b = -gamma[ch].widen() * is * is * is * sums[ch][1] / m;
                let c1 = -a * sums[ch][0] / m;
                [a, b, c1, saved.mean[ch]].map(T::narrow)
            })
            .collect();
        let mut dx = vec![T::zero(); x.len()];
        if plane > 0 {
            dx.par_chunks_mut(plane)
                .zip(dy.par_chunks(plane).zip(x.par_chunks(plane)))
                .enumerate()
                .for_each(|(block, (dx_p, (dy_p, x_p)))| {
                    let [a, b, c1, mu] = coefficients[block % c];
                    for (o, (g, v)) in dx_p.iter_mut().zip(dy_p.iter().zip(x_p)) {
                        *o = a * *g + b * (*v - mu) + c1;
                    }
                });
        }
        dx
    });
    [dx, dgamma, dbeta]
}
