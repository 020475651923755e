//! `kind = "cifar_convnet"`: the CIFAR-10 convnet of LossGrad (Wójcik et al.), App. A, Table 7
//! (the network of its Table 1 and Fig. 3).
//!
//! ```text
//! conv 5×5 c→30 (28×28) → max pool 2 (14×14) → ReLU
//!   → conv 5×5 30→40 (10×10) → max pool 2 (5×5) → ReLU
//!   → conv 3×3 40→50 (3×3) → ReLU → flatten (450)
//!   → FC 450→250 → ReLU → FC 250→100 → ReLU → FC 100→K
//! ```
//!
//! Valid padding, stride 1; the pooling comes before the ReLU, as the table lists it. 189,230
//! parameters on CIFAR-10. Initialisation as App. A says: "neuron weights using a normal
//! distribution with a 0.05 standard deviation and bias weights with a constant 0.2", i.e. every
//! conv and FC weight N(0, 0.05²), every bias 0.2 (`init_std`, `init_bias`). The authors'
//! public code (`bartwojcik/lossgrad`) has no CIFAR script; this follows the paper.

use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

use super::{ImageClassifier, classes, image_input};
use crate::layers::{Builder, Conv2d, Conv2dShape, Dense, MaxPool2d, Pass, Specs, pooled};
use crate::{Init, InputShape, ModelError, Task};

/// `kind = "cifar_convnet"` (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CifarConvnetConfig {
    /// Standard deviation of every weight (LossGrad App. A: 0.05).
    #[serde(default = "CifarConvnetConfig::default_std")]
    pub init_std: f64,
    /// Value of every bias (LossGrad App. A: 0.2).
    #[serde(default = "CifarConvnetConfig::default_bias")]
    pub init_bias: f64,
}

impl Default for CifarConvnetConfig {
    fn default() -> Self {
        Self {
            init_std: Self::default_std(),
            init_bias: Self::default_bias(),
        }
    }
}

/// LossGrad's CIFAR-10 convnet (see the module docs).
#[derive(Debug, Clone)]
pub struct CifarConvnet {
    specs: Specs,
    input: [usize; 3],
    convs: [Conv2d; 3],
    fcs: [Dense; 3],
    pool: MaxPool2d,
}

impl CifarConvnetConfig {
    fn default_std() -> f64 {
        0.05
    }
    fn default_bias() -> f64 {
        0.2
    }

    pub(crate) fn build(&self, input: InputShape, task: Task) -> Result<CifarConvnet, ModelError> {
        let [c, h, w] = image_input("cifar_convnet", input)?;
        let k = classes("cifar_convnet", task)?;
        if !(self.init_std.is_finite() && self.init_std >= 0.0) {
            return Err(ModelError::Invalid(format!(
                "model.init_std: must be ≥ 0, got {}",
                self.init_std
            )));
        }
        if !self.init_bias.is_finite() {
            return Err(ModelError::Invalid(format!(
                "model.init_bias: must be finite, got {}",
                self.init_bias
            )));
        }
        let shapes = [
            Conv2dShape::new(c, 30, 5),
            Conv2dShape::new(30, 40, 5),
            Conv2dShape::new(40, 50, 3),
        ];
        let [fh, fw] = shapes[0]
            .output([h, w])
            .and_then(|hw| pooled(hw, 2))
            .and_then(|hw| shapes[1].output(hw))
            .and_then(|hw| pooled(hw, 2))
            .and_then(|hw| shapes[2].output(hw))
            .ok_or_else(|| {
                ModelError::Invalid(format!(
                    "model.kind: cifar_convnet needs images of at least 24×24, the dataset's \
                     are {h}×{w}"
                ))
            })?;
        let weight = Init::Normal { std: self.init_std };
        let bias = Some(Init::Constant(self.init_bias));
        let mut b = Builder::new();
        let convs = [1, 2, 3].map(|i| {
            Conv2d::new(
                &mut b,
                &format!("conv{i}"),
                shapes[i - 1],
                weight.clone(),
                bias.clone(),
            )
        });
        let widths = [50 * fh * fw, 250, 100, k];
        let fcs = [1, 2, 3].map(|i| {
            Dense::new(
                &mut b,
                &format!("fc{i}"),
                widths[i - 1],
                widths[i],
                weight.clone(),
                bias.clone(),
            )
        });
        Ok(CifarConvnet {
            specs: b.finish(),
            input: [c, h, w],
            convs,
            fcs,
            pool: MaxPool2d { kernel: 2 },
        })
    }
}

impl ImageClassifier for CifarConvnet {
    fn specs(&self) -> &Specs {
        &self.specs
    }

    fn image_shape(&self) -> [usize; 3] {
        self.input
    }

    fn classify(&self, pass: &mut Pass<'_>, x: Tensor<4>) -> Tensor<2> {
        let [conv1, conv2, conv3] = &self.convs;
        let x = relu(self.pool.forward(conv1.forward(pass, x)));
        let x = relu(self.pool.forward(conv2.forward(pass, x)));
        let x = relu(conv3.forward(pass, x));
        let [b, c, h, w] = x.dims();
        let [fc1, fc2, fc3] = &self.fcs;
        let x = fc1.forward_relu(pass, x.reshape([b, c * h * w]));
        let x = fc2.forward_relu(pass, x);
        fc3.forward(pass, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::testing::{
        build, cifar10, gradient_matches_central_difference, outputs_shape, probe_equals_train,
        refused,
    };

    #[test]
    fn lossgrad_cifar_convnet_has_189230_parameters_and_its_init() {
        let m = build("kind = \"cifar_convnet\"", cifar10(), 10).unwrap();
        assert_eq!(m.num_params(), 189_230);
        let specs = m.param_specs();
        assert_eq!(specs[6].shape, vec![450, 250]);
        for s in specs {
            let want = if s.name.ends_with(".bias") {
                Init::Constant(0.2)
            } else {
                Init::Normal { std: 0.05 }
            };
            assert_eq!(s.init, want, "{}", s.name);
        }
    }

    #[test]
    fn cifar_convnet_refuses_small_images_and_feature_rows() {
        let err = refused(
            "kind = \"cifar_convnet\"",
            InputShape::Image([1, 16, 16]),
            10,
        );
        assert!(err.to_string().contains("16×16"), "{err}");
        let err = refused("kind = \"cifar_convnet\"", InputShape::Features(10), 2);
        assert!(
            err.to_string().starts_with("model.kind: cifar_convnet"),
            "{err}"
        );
        let err = refused("kind = \"cifar_convnet\"\ninit_std = -1.0", cifar10(), 10);
        assert!(err.to_string().starts_with("model.init_std"), "{err}");
    }

    #[test]
    fn cifar_convnet_predicts_probes_like_it_trains_and_differentiates_exactly() {
        let m = build("kind = \"cifar_convnet\"", cifar10(), 10).unwrap();
        outputs_shape(m.as_ref(), [2, 3, 32, 32], 10);
        probe_equals_train(m.as_ref(), [2, 3, 32, 32], 10);
        gradient_matches_central_difference(m.as_ref(), [2, 3, 32, 32], 10);
    }
}
