//! Parameter initialisation on the host, from a seeded generator, so that a seed gives the same
//! initial weights on every backend and precision.

use burn::tensor::{DType, Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::ParamSpec;

/// How one parameter tensor starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Every element `value`.
    Constant(f64),
    /// N(0, std²).
    Normal {
        /// Standard deviation.
        std: f64,
    },
    /// U(−bound, bound).
    Uniform {
        /// Half-width of the interval.
        bound: f64,
    },
}

/// The `model.init` key: a scheme that assigns an [`Init`] to each weight and bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitScheme {
    /// PyTorch's `nn.Linear` default: weights and biases U(±1/√fan_in).
    #[default]
    Default,
    /// Weights N(0, `init_std`²), biases `init_bias` (LossGrad App. A: 0.05 and 0.2).
    Normal,
    /// Glorot/Xavier uniform weights U(±√(6/(fan_in+fan_out))), zero biases.
    Xavier,
    /// Every parameter 0.
    Zeros,
}

/// Draws the initial parameters for `specs` from `seed`, as `dtype` tensors on `device`.
///
/// Each tensor gets its own generator stream, so adding a layer does not change the others.
pub fn init_params(
    specs: &[ParamSpec],
    seed: u64,
    device: &Device,
    dtype: DType,
) -> Vec<Tensor<1>> {
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(i as u64 + 1);
            let n = spec.numel();
            let values: Vec<f64> = match spec.init {
                Init::Constant(v) => vec![v; n],
                Init::Uniform { bound } => {
                    (0..n).map(|_| rng.random_range(-bound..=bound)).collect()
                }
                Init::Normal { std } => (0..n).map(|_| std * standard_normal(&mut rng)).collect(),
            };
            Tensor::from_data(TensorData::new(values, [n]), (device, dtype))
        })
        .collect()
}

/// One N(0, 1) draw (Box-Muller).
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_device;

    fn spec(init: Init, n: usize) -> ParamSpec {
        ParamSpec {
            name: "w".into(),
            shape: vec![n],
            init,
        }
    }

    #[test]
    fn init_is_seeded_and_follows_its_distribution() {
        let d = test_device();
        let specs = [
            spec(Init::Normal { std: 0.05 }, 20000),
            spec(Init::Constant(0.2), 3),
        ];
        let a = init_params(&specs, 7, &d, DType::F64);
        let b = init_params(&specs, 7, &d, DType::F64);
        let c = init_params(&specs, 8, &d, DType::F64);
        let va = a[0].to_data().try_into_vec_as::<f64>().unwrap();
        assert_eq!(va, b[0].to_data().try_into_vec_as::<f64>().unwrap());
        assert_ne!(va, c[0].to_data().try_into_vec_as::<f64>().unwrap());
        let mean = va.iter().sum::<f64>() / va.len() as f64;
        let std = (va.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / va.len() as f64).sqrt();
        assert!(
            mean.abs() < 0.002 && (std - 0.05).abs() < 0.002,
            "mean {mean} std {std}"
        );
        assert_eq!(
            a[1].to_data().try_into_vec_as::<f64>().unwrap(),
            vec![0.2; 3]
        );
    }

    #[test]
    fn uniform_init_stays_in_bounds() {
        let d = test_device();
        let v = init_params(
            &[spec(Init::Uniform { bound: 0.1 }, 5000)],
            1,
            &d,
            DType::F32,
        )[0]
        .to_data()
        .try_into_vec_as::<f64>()
        .unwrap();
        assert!(v.iter().all(|x| x.abs() <= 0.1 + 1e-7));
        assert!(v.iter().any(|x| *x > 0.09) && v.iter().any(|x| *x < -0.09));
    }
}
