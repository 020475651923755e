//! Test helpers: gradients through Burn autodiff against central finite differences, in f64 on
//! the ndarray device.

use burn::tensor::{DType, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Pass, Specs};
use crate::{Cx, Mode, StepNoise, test_device};

/// `n` values drawn U(−1, 1) from `seed` (distinct with probability 1: no max-pool ties).
pub(crate) fn data(seed: u64, n: usize) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// A flat f64 tensor on the test device.
pub(crate) fn tensor(values: &[f64]) -> Tensor<1> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), [values.len()]),
        (&test_device(), DType::F64),
    )
}

/// The values of a tensor.
pub(crate) fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.inner().into_data().try_into_vec_as::<f64>().unwrap()
}

/// Σ y ⊙ r, a scalar (shape `[1]`) whose gradient with respect to y is r: a generic test loss.
pub(crate) fn weigh<const D: usize>(y: Tensor<D>, r: &[f64]) -> Tensor<1> {
    let dims = y.dims();
    assert_eq!(
        dims.iter().product::<usize>(),
        r.len(),
        "weights fit the output"
    );
    y.mul(tensor(r).reshape(dims)).sum()
}

/// The step noise every helper pass uses (seed 7, step 3): the same masks at every call.
pub(crate) fn noise() -> StepNoise {
    StepNoise::new(7, 3, &test_device(), DType::F64)
}

/// Runs `f` on a pass of `mode` over `params` and `state` with [`noise`].
pub(crate) fn with_pass<R>(
    specs: &Specs,
    params: &[Tensor<1>],
    state: &[Tensor<1>],
    mode: Mode,
    f: impl FnOnce(&mut Pass<'_>) -> R,
) -> R {
    let noise = noise();
    let cx = Cx {
        mode,
        noise: &noise,
    };
    f(&mut Pass::new(specs, params, state, &cx))
}

/// Asserts that the autodiff gradient of `f` at `inputs` equals its central difference
/// (step 1e-5) for every element, to `rel` times the largest difference of that input
/// (a norm-wise relative error, robust to elements whose gradient is zero).
pub(crate) fn assert_gradients_match(
    what: &str,
    inputs: &[Vec<f64>],
    rel: f64,
    f: impl Fn(&[Tensor<1>]) -> Tensor<1>,
) {
    let plain: Vec<Tensor<1>> = inputs.iter().map(|v| tensor(v)).collect();
    let tracked: Vec<Tensor<1>> = plain
        .iter()
        .map(|t| t.clone().autodiff().require_grad())
        .collect();
    let grads = f(&tracked).backward();
    let h = 1e-5;
    let eval = |k: usize, j: usize, delta: f64| {
        let mut shifted = plain.clone();
        let mut v = inputs[k].clone();
        v[j] += delta;
        shifted[k] = tensor(&v);
        values(f(&shifted))[0]
    };
    for (k, input) in inputs.iter().enumerate() {
        let autodiff = values(tracked[k].grad(&grads).expect("the input has a gradient"));
        let central: Vec<f64> = (0..input.len())
            .map(|j| (eval(k, j, h) - eval(k, j, -h)) / (2.0 * h))
            .collect();
        let scale = central.iter().fold(0.0_f64, |m, g| m.max(g.abs()));
        assert!(scale > 0.0, "{what}: input {k} has a zero gradient");
        for (j, (a, c)) in autodiff.iter().zip(&central).enumerate() {
            assert!(
                (a - c).abs() <= rel * scale,
                "{what}: input {k}[{j}]: autodiff {a:e}, central difference {c:e} (scale {scale:e})"
            );
        }
    }
}
