//! Parameter initialisation on the host, from a seeded generator, so that a seed gives the same
//! initial weights on every backend and precision.

use std::sync::Arc;

use burn::tensor::{DType, Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{ParamSpec, StateSpec};

/// How one parameter tensor starts.
#[derive(Debug, Clone, PartialEq)]
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
    /// Rows of a table given by the data (GloVe vectors of a vocabulary), rows without a
    /// vector drawn N(0, `missing_std`²) (zeros when it is 0).
    Pretrained(Arc<PretrainedTable>),
}

/// A `[rows, dim]` table of given values (an embedding initialised from GloVe), some rows
/// missing.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainedTable {
    /// Values per row.
    pub dim: usize,
    /// Row-major values, `rows × dim`; the values of missing rows are ignored.
    pub values: Vec<f32>,
    /// Per row: whether it has a given vector.
    pub found: Vec<bool>,
    /// Standard deviation of the normal draws for missing rows (0: zeros).
    pub missing_std: f64,
}

impl PretrainedTable {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.found.len()
    }
}

impl Init {
    /// PyTorch's default for `nn.Linear` and `nn.Conv2d` weights and biases: `kaiming_uniform_`
    /// with a = √5, i.e. U(±1/√fan_in) (fan_in = inputs × kernel area).
    pub fn torch_default(fan_in: usize) -> Self {
        Self::Uniform {
            bound: 1.0 / (fan_in.max(1) as f64).sqrt(),
        }
    }

    /// He et al. (2015, "Delving deep into rectifiers") normal init for ReLU layers,
    /// N(0, 2/fan): PyTorch's `kaiming_normal_` with its defaults when `fan` is the fan-in,
    /// `mode = "fan_out"` when it is the fan-out.
    pub fn kaiming_normal(fan: usize) -> Self {
        Self::Normal {
            std: (2.0 / fan.max(1) as f64).sqrt(),
        }
    }
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
/// Each tensor draws from its own generator stream ([`ParamSpec::stream`]), so adding a layer
/// does not change the others.
pub fn init_params(
    specs: &[ParamSpec],
    seed: u64,
    device: &Device,
    dtype: DType,
) -> Vec<Tensor<1>> {
    specs
        .iter()
        .map(|spec| draw(&spec.init, spec.numel(), seed, spec.stream, device, dtype))
        .collect()
}

/// The initial model state for `specs`, as `dtype` tensors on `device`: running statistics
/// start at constants; a frozen embedding's missing rows draw from the stream of the tensor's
/// name ([`name_stream`](crate::name_stream)) of `seed`.
pub fn init_state(specs: &[StateSpec], seed: u64, device: &Device, dtype: DType) -> Vec<Tensor<1>> {
    specs
        .iter()
        .map(|spec| {
            let stream = crate::name_stream(&spec.name);
            draw(&spec.init, spec.numel(), seed, stream, device, dtype)
        })
        .collect()
}

/// `n` values drawn as `init` says from stream `stream` of `seed`.
///
/// # Panics
/// If a [`Init::Pretrained`] table does not hold `n` values (the model built its spec from it).
fn draw(init: &Init, n: usize, seed: u64, stream: u64, device: &Device, dtype: DType) -> Tensor<1> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let values: Vec<f64> = match init {
        Init::Constant(v) => vec![*v; n],
        Init::Uniform { bound } => {
            let bound = *bound;
            (0..n).map(|_| rng.random_range(-bound..=bound)).collect()
        }
        Init::Normal { std } => (0..n).map(|_| std * standard_normal(&mut rng)).collect(),
        Init::Pretrained(table) => {
            assert_eq!(
                table.rows() * table.dim,
                n,
                "pretrained table fits its tensor"
            );
            let mut values = Vec::with_capacity(n);
            for (row, &found) in table.found.iter().enumerate() {
                if found {
                    let given = &table.values[row * table.dim..(row + 1) * table.dim];
                    values.extend(given.iter().map(|&v| f64::from(v)));
                } else if table.missing_std > 0.0 {
                    values.extend(
                        (0..table.dim).map(|_| table.missing_std * standard_normal(&mut rng)),
                    );
                } else {
                    values.extend(std::iter::repeat_n(0.0, table.dim));
                }
            }
            values
        }
    };
    Tensor::from_data(TensorData::new(values, [n]), (device, dtype))
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
        ParamSpec::named("w", vec![n], init)
    }

    fn values(t: &Tensor<1>) -> Vec<f64> {
        t.to_data().try_into_vec_as::<f64>().unwrap()
    }

    #[test]
    fn a_tensor_keyed_by_name_keeps_its_values_when_layers_are_added_before_it() {
        let d = test_device();
        let normal = Init::Normal { std: 1.0 };
        let late = ParamSpec::named("head.weight", vec![50], normal.clone());
        let alone = init_params(std::slice::from_ref(&late), 5, &d, DType::F64);
        let with_more = init_params(
            &[ParamSpec::named("stem.weight", vec![30], normal), late],
            5,
            &d,
            DType::F64,
        );
        assert_eq!(values(&alone[0]), values(&with_more[1]));
        assert_ne!(values(&with_more[0])[..30], values(&with_more[1])[..30]);
    }

    #[test]
    fn state_starts_at_its_constants() {
        let d = test_device();
        let specs = [
            StateSpec {
                name: "bn.running_mean".into(),
                shape: vec![4],
                init: Init::Constant(0.0),
            },
            StateSpec {
                name: "bn.running_var".into(),
                shape: vec![4],
                init: Init::Constant(1.0),
            },
        ];
        let state = init_state(&specs, 0, &d, DType::F32);
        assert_eq!(values(&state[0]), vec![0.0; 4]);
        assert_eq!(values(&state[1]), vec![1.0; 4]);
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
    fn a_pretrained_table_keeps_its_rows_and_draws_the_missing_ones() {
        let d = test_device();
        let table = |missing_std| {
            Init::Pretrained(Arc::new(PretrainedTable {
                dim: 2,
                values: vec![0.5, -1.25, 9.0, 9.0, 3.0, 0.125],
                found: vec![true, false, true],
                missing_std,
            }))
        };
        let zeros = values(&init_params(&[spec(table(0.0), 6)], 1, &d, DType::F64)[0]);
        assert_eq!(zeros, vec![0.5, -1.25, 0.0, 0.0, 3.0, 0.125]);
        let drawn = values(&init_params(&[spec(table(0.1), 6)], 1, &d, DType::F64)[0]);
        assert_eq!(
            (drawn[0], drawn[1], drawn[4], drawn[5]),
            (0.5, -1.25, 3.0, 0.125)
        );
        assert!(drawn[2] != 0.0 && drawn[2] != 9.0 && drawn[2].abs() < 1.0);
        // As state (a frozen table), the draws are seeded too.
        let state = |seed| {
            let s = StateSpec {
                name: "embedding.weight".into(),
                shape: vec![3, 2],
                init: table(0.1),
            };
            values(&init_state(&[s], seed, &d, DType::F64)[0])
        };
        assert_eq!(state(3), state(3));
        assert_ne!(state(3), state(4));
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
