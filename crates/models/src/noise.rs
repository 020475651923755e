//! Per-step randomness: dropout masks and prior samples keyed by (seed, step, site).
//!
//! A [`StepNoise`] belongs to one optimizer step. Every draw is a pure function of the run's
//! seed, the step number and the draw's *site* (a name such as `fc1.dropout`), made on the host
//! with its own ChaCha8 stream, and cached for the step: the training pass and every probe of
//! the step see the same mask, and a resumed run regenerates it from the step number alone.

use std::cell::RefCell;
use std::collections::HashMap;

use burn::tensor::{DType, Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::name_stream;

/// The random draws of one step (see the module documentation).
pub struct StepNoise {
    seed: u64,
    step: u64,
    device: Device,
    dtype: DType,
    /// The draws made so far, by site and shape: a probe of the step gets the same tensor.
    draws: RefCell<HashMap<String, Tensor<1>>>,
}

impl StepNoise {
    /// The draws of step `step` (counted from 1) of a run seeded `seed`, made as `dtype` tensors
    /// on `device`.
    pub fn new(seed: u64, step: u64, device: &Device, dtype: DType) -> Self {
        Self {
            seed,
            step,
            device: device.clone(),
            dtype,
            draws: RefCell::new(HashMap::new()),
        }
    }

    /// The step these draws belong to.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// An inverted-dropout mask of `numel` values for `site`: each element is 0 with
    /// probability `p` and 1/(1 − p) otherwise, so that `x · mask` keeps the expectation of x.
    /// The same (site, numel, p) within a step gives the same mask.
    pub fn dropout_mask(&self, site: &str, numel: usize, p: f64) -> Tensor<1> {
        self.cached(format!("{site}/{numel}/{p}"), site, |rng| {
            let keep = 1.0 / (1.0 - p);
            (0..numel)
                .map(|_| if rng.random::<f64>() < p { 0.0 } else { keep })
                .collect()
        })
    }

    /// `numel` independent N(0, 1) draws for `site` (a WAE's prior samples), by the Box-Muller
    /// transform of the site's uniform stream. The same (site, numel) within a step gives the
    /// same draws, so every probe of a step sees the training pass's samples.
    pub fn normal(&self, site: &str, numel: usize) -> Tensor<1> {
        self.cached(format!("{site}/normal/{numel}"), site, |rng| {
            let mut values = Vec::with_capacity(numel + 1);
            while values.len() < numel {
                // u1 in (0, 1] keeps the logarithm finite.
                let u1 = 1.0 - rng.random::<f64>();
                let u2 = rng.random::<f64>();
                let radius = (-2.0 * u1.ln()).sqrt();
                let angle = std::f64::consts::TAU * u2;
                values.push(radius * angle.cos());
                values.push(radius * angle.sin());
            }
            values.truncate(numel);
            values
        })
    }

    /// The draw cached under `key`, or `draw` from `site`'s generator for this step, made a
    /// tensor and cached.
    fn cached(
        &self,
        key: String,
        site: &str,
        draw: impl FnOnce(&mut ChaCha8Rng) -> Vec<f64>,
    ) -> Tensor<1> {
        if let Some(tensor) = self.draws.borrow().get(&key) {
            return tensor.clone();
        }
        let values = draw(&mut self.rng(site));
        let numel = values.len();
        let tensor =
            Tensor::from_data(TensorData::new(values, [numel]), (&self.device, self.dtype));
        self.draws.borrow_mut().insert(key, tensor.clone());
        tensor
    }

    /// The generator of `site` for this step: seeded from (seed, step), on the site's stream.
    fn rng(&self, site: &str) -> ChaCha8Rng {
        let mut rng =
            ChaCha8Rng::seed_from_u64(self.seed ^ self.step.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        rng.set_stream(name_stream(site));
        rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_device;

    fn values(t: Tensor<1>) -> Vec<f64> {
        t.into_data().try_into_vec_as::<f64>().unwrap()
    }

    #[test]
    fn a_mask_is_a_function_of_seed_step_and_site() {
        let d = test_device();
        let a = StepNoise::new(3, 7, &d, DType::F64);
        let m = values(a.dropout_mask("fc1", 1000, 0.5));
        assert_eq!(m, values(a.dropout_mask("fc1", 1000, 0.5)), "cached");
        let again = StepNoise::new(3, 7, &d, DType::F64);
        assert_eq!(
            m,
            values(again.dropout_mask("fc1", 1000, 0.5)),
            "regenerated"
        );
        let other_step = StepNoise::new(3, 8, &d, DType::F64);
        assert_ne!(m, values(other_step.dropout_mask("fc1", 1000, 0.5)));
        assert_ne!(m, values(a.dropout_mask("fc2", 1000, 0.5)));
        let kept = m.iter().filter(|&&v| v == 2.0).count();
        assert!(m.iter().all(|&v| v == 0.0 || v == 2.0));
        assert!((400..600).contains(&kept), "{kept} of 1000 kept at p = 0.5");
    }

    #[test]
    fn normal_draws_are_cached_per_step_and_standard_normal() {
        let d = test_device();
        let a = StepNoise::new(3, 7, &d, DType::F64);
        let z = values(a.normal("prior", 20_001));
        assert_eq!(z, values(a.normal("prior", 20_001)), "cached");
        assert_eq!(
            z,
            values(StepNoise::new(3, 7, &d, DType::F64).normal("prior", 20_001)),
            "regenerated from (seed, step)"
        );
        assert_ne!(
            z,
            values(StepNoise::new(3, 8, &d, DType::F64).normal("prior", 20_001))
        );
        let n = z.len() as f64;
        let mean = z.iter().sum::<f64>() / n;
        let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let fourth = z.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / n;
        // Standard errors at n = 20 001: mean 0.007, variance 0.01, fourth moment ≈ 0.07.
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.04, "variance {var}");
        assert!(
            (fourth - 3.0).abs() < 0.3,
            "fourth moment {fourth} (normal: 3)"
        );
        let within_one = z.iter().filter(|v| v.abs() < 1.0).count() as f64 / n;
        assert!(
            (within_one - 0.6827).abs() < 0.02,
            "P(|z| < 1) = {within_one}"
        );
    }
}
