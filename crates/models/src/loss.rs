//! Training losses.

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

/// How a squared-error loss reduces over elements (`model.loss_reduction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    /// Averaged over all elements, as PyTorch's `MSELoss`.
    #[default]
    Mean,
    /// Summed over all elements (Gorti-Ravaut's ‖XW − Y‖², L4's Σ(Ŷ − AX)²).
    Sum,
}

/// The loss a model trains with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Softmax cross-entropy of logits, averaged over the batch.
    CrossEntropy,
    /// Squared error with the given reduction.
    SquaredError(Reduction),
    /// Binary cross-entropy of one logit per sample against class 1 of a two-class one-hot
    /// target (PyTorch's `BCEWithLogitsLoss`), averaged over the batch.
    BinaryCrossEntropy,
}

/// A batch's targets as tensors.
#[derive(Debug, Clone)]
pub enum Target {
    /// One-hot class indicators `[batch, classes]`.
    OneHot(Tensor<2>),
    /// Real-valued targets `[batch, outputs]`.
    Values(Tensor<2>),
}

impl Target {
    fn tensor(&self) -> &Tensor<2> {
        match self {
            Self::OneHot(t) | Self::Values(t) => t,
        }
    }
}

impl Loss {
    /// The scalar loss (shape `[1]`) of `output` against `target`.
    pub fn compute(&self, output: Tensor<2>, target: &Target) -> Tensor<1> {
        let target = target.tensor().clone();
        match self {
            Self::CrossEntropy => {
                let batch = output.dims()[0] as f64;
                log_softmax(output, 1)
                    .mul(target)
                    .sum()
                    .mul_scalar(-1.0 / batch)
            }
            Self::BinaryCrossEntropy => {
                // max(z, 0) − z·y + log(1 + e^−|z|): finite for every logit.
                let y = target.narrow(1, 1, 1);
                let z = output;
                z.clone()
                    .clamp_min(0.0)
                    .sub(z.clone().mul(y))
                    .add(z.abs().neg().exp().log1p())
                    .mean()
            }
            Self::SquaredError(Reduction::Mean) => output.sub(target).square().mean(),
            Self::SquaredError(Reduction::Sum) => output.sub(target).square().sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_device;
    use burn::tensor::{DType, TensorData};

    fn t2(v: Vec<f64>, shape: [usize; 2]) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v, shape), (&test_device(), DType::F64))
    }

    fn scalar(t: Tensor<1>) -> f64 {
        t.into_data().try_into_vec_as::<f64>().unwrap()[0]
    }

    #[test]
    fn binary_cross_entropy_matches_the_formula_at_extreme_logits() {
        let logits = t2(vec![2.0, -0.5, 800.0, -800.0], [4, 1]);
        let onehot = t2(vec![0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0], [4, 2]);
        let got = scalar(Loss::BinaryCrossEntropy.compute(logits, &Target::OneHot(onehot)));
        let sp = |x: f64| (1.0 + x.exp()).ln();
        // y = 1: softplus(−z); y = 0: softplus(z); the ±800 terms are exactly 0.
        let want = (sp(-2.0) + sp(-0.5) + 0.0 + 0.0) / 4.0;
        assert!((got - want).abs() < 1e-15, "{got} vs {want}");
    }

    #[test]
    fn cross_entropy_matches_the_formula() {
        let logits = t2(vec![1.0, 2.0, 0.0, 0.5, 0.5, 3.0], [2, 3]);
        let onehot = t2(vec![0.0, 1.0, 0.0, 0.0, 0.0, 1.0], [2, 3]);
        let lse = |v: [f64; 3]| v.iter().map(|x| x.exp()).sum::<f64>().ln();
        let expected = ((lse([1.0, 2.0, 0.0]) - 2.0) + (lse([0.5, 0.5, 3.0]) - 3.0)) / 2.0;
        let got = scalar(Loss::CrossEntropy.compute(logits, &Target::OneHot(onehot)));
        assert!((got - expected).abs() < 1e-14);
    }

    #[test]
    fn squared_error_reduces_by_mean_or_sum() {
        let out = t2(vec![1.0, 2.0, 3.0, 4.0], [2, 2]);
        let y = Target::Values(t2(vec![0.0, 2.0, 5.0, 4.0], [2, 2]));
        assert_eq!(
            scalar(Loss::SquaredError(Reduction::Mean).compute(out.clone(), &y)),
            5.0 / 4.0
        );
        assert_eq!(
            scalar(Loss::SquaredError(Reduction::Sum).compute(out, &y)),
            5.0
        );
    }
}
