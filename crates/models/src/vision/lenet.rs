//! `kind = "lenet5"`: the LeNet-5 of Gorti & Ravaut's CIFAR-10 experiments (001 §4.2.3).
//!
//! The paper says "a LeNet with 5 layers (2 convolutional followed by 3 fully-connected
//! layers)" with "two dropout layers after the first two fully-connected layers"; the layers are
//! those of PyTorch's CIFAR-10 tutorial network, which ALGORITHMS.md §6 takes as its definition:
//!
//! ```text
//! conv 5×5 c→6 → ReLU → max pool 2 → conv 5×5 6→16 → ReLU → max pool 2 → flatten
//!   → FC 400→120 → ReLU → dropout → FC 120→84 → ReLU → dropout → FC 84→K
//! ```
//!
//! 62,006 parameters on CIFAR-10 (3×32×32, K = 10). Valid padding; the first FC layer's width is
//! 16·h'·w' for other image sizes (256 on 28×28 MNIST). Initialisation: PyTorch's defaults, as
//! the tutorial code leaves them: every weight and bias U(±1/√fan_in). The dropout rate is not
//! given in the paper: `dropout = 0` (default) is the plain LeNet; PyTorch's `nn.Dropout()`
//! default, 0.5, is the likely value of the paper's runs.

use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

use super::{ImageClassifier, classes, image_input};
use crate::layers::{Builder, Conv2d, Conv2dShape, Dense, Dropout, MaxPool2d, Pass, Specs, pooled};
use crate::{Init, InputShape, ModelError, Task};

/// `kind = "lenet5"` (see the module docs).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lenet5Config {
    /// Dropout rate after the first two FC layers, in [0, 1). Default 0 (no dropout).
    #[serde(default)]
    pub dropout: f64,
}

/// The LeNet-5 network (see the module docs).
#[derive(Debug, Clone)]
pub struct Lenet5 {
    specs: Specs,
    input: [usize; 3],
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    fc1: Dense,
    fc2: Dense,
    fc3: Dense,
    drop1: Dropout,
    drop2: Dropout,
}

impl Lenet5Config {
    pub(crate) fn build(&self, input: InputShape, task: Task) -> Result<Lenet5, ModelError> {
        let [c, h, w] = image_input("lenet5", input)?;
        let k = classes("lenet5", task)?;
        let drop1 = Dropout::new("fc1.dropout", self.dropout, "model.dropout")?;
        let drop2 = Dropout::new("fc2.dropout", self.dropout, "model.dropout")?;
        let pool = MaxPool2d { kernel: 2 };
        let s1 = Conv2dShape::new(c, 6, 5);
        let s2 = Conv2dShape::new(6, 16, 5);
        let [fh, fw] = s1
            .output([h, w])
            .and_then(|hw| pooled(hw, 2))
            .and_then(|hw| s2.output(hw))
            .and_then(|hw| pooled(hw, 2))
            .ok_or_else(|| {
                ModelError::Invalid(format!(
                    "model.kind: lenet5 needs images of at least 16×16, the dataset's are {h}×{w}"
                ))
            })?;
        let flat = 16 * fh * fw;
        let mut b = Builder::new();
        let conv = |b: &mut Builder, name: &str, s: Conv2dShape| {
            let init = Init::torch_default(s.fan_in());
            Conv2d::new(b, name, s, init.clone(), Some(init))
        };
        let dense = |b: &mut Builder, name: &str, fan_in: usize, fan_out: usize| {
            let init = Init::torch_default(fan_in);
            Dense::new(b, name, fan_in, fan_out, init.clone(), Some(init))
        };
        let conv1 = conv(&mut b, "conv1", s1);
        let conv2 = conv(&mut b, "conv2", s2);
        let fc1 = dense(&mut b, "fc1", flat, 120);
        let fc2 = dense(&mut b, "fc2", 120, 84);
        let fc3 = dense(&mut b, "fc3", 84, k);
        Ok(Lenet5 {
            specs: b.finish(),
            input: [c, h, w],
            conv1,
            conv2,
            pool,
            fc1,
            fc2,
            fc3,
            drop1,
            drop2,
        })
    }
}

impl ImageClassifier for Lenet5 {
    fn specs(&self) -> &Specs {
        &self.specs
    }

    fn image_shape(&self) -> [usize; 3] {
        self.input
    }

    fn classify(&self, pass: &mut Pass<'_>, x: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(relu(self.conv1.forward(pass, x)));
        let x = self.pool.forward(relu(self.conv2.forward(pass, x)));
        let [b, c, h, w] = x.dims();
        let x = x.reshape([b, c * h * w]);
        let x = self.drop1.forward(pass, self.fc1.forward_relu(pass, x));
        let x = self.drop2.forward(pass, self.fc2.forward_relu(pass, x));
        self.fc3.forward(pass, x)
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
    fn lenet5_on_cifar10_has_62006_parameters() {
        let m = build("kind = \"lenet5\"", cifar10(), 10).unwrap();
        assert_eq!(m.num_params(), 62_006);
        assert!(m.state_specs().is_empty());
        let names: Vec<_> = m.param_specs().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names[..2], ["conv1.weight", "conv1.bias"]);
        assert_eq!(m.param_specs()[4].shape, vec![400, 120]);
    }

    #[test]
    fn lenet5_refuses_feature_rows_naming_the_key_and_the_shape() {
        let err = refused("kind = \"lenet5\"", InputShape::Features(13), 3);
        let msg = err.to_string();
        assert!(msg.starts_with("model.kind: lenet5"), "{msg}");
        assert!(msg.contains("13 features"), "{msg}");
        let err = refused("kind = \"lenet5\"", InputShape::Image([3, 8, 8]), 10);
        assert!(err.to_string().contains("8×8"), "{err}");
        let err = refused("kind = \"lenet5\"\ndropout = 1.0", cifar10(), 10);
        assert!(err.to_string().starts_with("model.dropout"), "{err}");
    }

    #[test]
    fn lenet5_with_dropout_predicts_probes_like_it_trains_and_differentiates_exactly() {
        let m = build("kind = \"lenet5\"\ndropout = 0.5", cifar10(), 10).unwrap();
        outputs_shape(m.as_ref(), [2, 3, 32, 32], 10);
        probe_equals_train(m.as_ref(), [2, 3, 32, 32], 10);
        gradient_matches_central_difference(m.as_ref(), [2, 3, 32, 32], 10);
    }
}
