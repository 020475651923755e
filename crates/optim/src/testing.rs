//! Test helpers: f64 parameter lists on ndarray and analytic quadratics.

use std::collections::BTreeMap;

use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::api::{LossProbe, OptimizerState, StepInput, StepOutput, StepSizeOptimizer};
use crate::vector::ParamList;

#[allow(deprecated)] // ndarray is deprecated upstream; this project keeps it working and tested.
pub fn device() -> Device {
    Device::ndarray()
}

/// A parameter list of f64 tensors with the given values.
pub fn list(values: &[&[f64]], device: &Device) -> ParamList {
    values
        .iter()
        .map(|v| Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), (device, DType::F64)))
        .collect()
}

/// The values of a parameter list, read back.
pub fn values(list: &[Tensor<1>]) -> Vec<Vec<f64>> {
    list.iter()
        .map(|t| t.to_data().try_into_vec_as::<f64>().unwrap())
        .collect()
}

/// f(θ) = ½·θᵀHθ with a diagonal H over all parameters concatenated.
#[derive(Clone)]
pub struct Quadratic {
    h: Vec<f64>,
    nan_probe: bool,
}

impl Quadratic {
    pub fn diagonal(h: Vec<f64>) -> Self {
        Self {
            h,
            nan_probe: false,
        }
    }
    /// The probe returns NaN (the loss at the shifted weights blew up).
    pub fn with_nan_probe(mut self) -> Self {
        self.nan_probe = true;
        self
    }
    pub fn loss(&self, theta: &[f64]) -> f64 {
        0.5 * theta
            .iter()
            .zip(&self.h)
            .map(|(x, h)| h * x * x)
            .sum::<f64>()
    }
    pub fn grad(&self, theta: &[f64]) -> Vec<f64> {
        theta.iter().zip(&self.h).map(|(x, h)| h * x).collect()
    }
    /// vᵀHv.
    pub fn quad_form(&self, v: &[f64]) -> f64 {
        v.iter().zip(&self.h).map(|(x, h)| h * x * x).sum()
    }
}

fn flat(list: &[Tensor<1>]) -> Vec<f64> {
    values(list).concat()
}

fn split_like(flat: &[f64], like: &[Tensor<1>], device: &Device) -> ParamList {
    let mut at = 0;
    like.iter()
        .map(|t| {
            let n = t.dims()[0];
            at += n;
            list(&[&flat[at - n..at]], device).remove(0)
        })
        .collect()
}

impl LossProbe for Quadratic {
    fn loss_at(&mut self, params: &[Tensor<1>]) -> f64 {
        if self.nan_probe {
            f64::NAN
        } else {
            self.loss(&flat(params))
        }
    }
    fn loss_and_grad_at(&mut self, params: &[Tensor<1>]) -> (f64, ParamList) {
        let theta = flat(params);
        let g = self.grad(&theta);
        (
            self.loss_at(params),
            split_like(&g, params, &params[0].device()),
        )
    }
}

/// One step of `opt` on the quadratic at `params`.
pub fn step_with(
    opt: &mut dyn StepSizeOptimizer,
    q: &Quadratic,
    params: &[Tensor<1>],
) -> StepOutput {
    let mut probe = q.clone();
    let (loss, grads) = (q.loss(&flat(params)), probe.loss_and_grad_at(params).1);
    opt.step(StepInput {
        params: params.to_vec(),
        loss,
        grads,
        probe: &mut probe,
        holdout: None,
    })
}

/// An optimizer state read back to the host, for comparing states in tests: the kind, the
/// scalars, and each buffer's dtypes and values.
#[derive(Debug, PartialEq)]
pub struct HostState {
    pub kind: String,
    pub scalars: BTreeMap<String, f64>,
    pub buffers: BTreeMap<String, (Vec<DType>, Vec<Vec<f64>>)>,
}

/// `state` read back to the host (one sync per tensor).
pub fn host(state: &OptimizerState) -> HostState {
    HostState {
        kind: state.kind.clone(),
        scalars: state.scalars.clone(),
        buffers: state
            .buffers
            .iter()
            .map(|(name, tensors)| {
                let dtypes = tensors.iter().map(|t| t.dtype()).collect();
                (name.clone(), (dtypes, values(tensors)))
            })
            .collect(),
    }
}
