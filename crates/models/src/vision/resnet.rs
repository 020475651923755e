//! `kind = "resnet"` (and `"resnet20"`, `"resnet32"`, `"resnet56"`): the CIFAR ResNets of He,
//! Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition" (2016), Sec. 4.2.
//!
//! ```text
//! conv 3×3 c→16, BN, ReLU
//! stage 1: n basic blocks at width 16, 32×32
//! stage 2: n basic blocks at width 32, the first with stride 2 (16×16)
//! stage 3: n basic blocks at width 64, the first with stride 2 (8×8)
//! global average pool → FC 64→K
//!
//! basic block:  y = relu(bn1(conv1(x)));  y = bn2(conv2(y));  relu(y + shortcut(x))
//! ```
//!
//! Depth 6n + 2 (the 2 are the stem conv and the FC layer). Convolutions are 3×3, padding 1,
//! without bias; every convolution is followed by batch norm. Where a block changes width and
//! resolution the shortcut is the paper's option A ([`ShortcutA`]: strided identity, zero-padded
//! channels, no parameters). Parameters on CIFAR-10: ResNet-20 269,722, ResNet-32 464,154,
//! ResNet-56 853,018 (the counts of the widely used PyTorch code, Idelbayev's
//! `akamaster/pytorch_resnet_cifar10`).
//!
//! Initialisation as that code (its `_weights_init`), which follows the paper's reference to He
//! et al. (2015): conv and FC weights Kaiming normal N(0, 2/fan_in) (`kaiming_normal_` with its
//! defaults); the FC bias keeps PyTorch's default U(±1/√64); BN γ = 1, β = 0; running mean 0,
//! variance 1.
//!
//! L4's CIFAR-10 net (TensorFlow's 2016 `resnet` example) is a pre-activation variant with leaky
//! ReLU and average-pool shortcuts; this project runs this network for it (ALGORITHMS.md §4).

use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

use super::{ImageClassifier, classes, image_input};
use crate::layers::{
    BatchNorm, Builder, Conv2d, Conv2dShape, Dense, Pass, ShortcutA, Specs, global_avg_pool,
};
use crate::{Init, InputShape, ModelError, Task};

/// Stage widths of the CIFAR ResNet.
const WIDTHS: [usize; 3] = [16, 32, 64];

/// `kind = "resnet"` (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResnetConfig {
    /// Depth 6n + 2: 20, 32, 44, 56, 110, … Default 20.
    #[serde(default = "ResnetConfig::default_depth")]
    pub depth: usize,
}

/// `kind = "resnet20" | "resnet32" | "resnet56"`: no keys, the depth is in the name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResnetPresetConfig {}

impl Default for ResnetConfig {
    fn default() -> Self {
        Self {
            depth: Self::default_depth(),
        }
    }
}

/// One basic block: two 3×3 convolutions with batch norm and a shortcut.
#[derive(Debug, Clone)]
struct Block {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    /// Option A where the block changes width or resolution, identity otherwise.
    shortcut: Option<ShortcutA>,
}

/// He et al.'s CIFAR ResNet (see the module docs).
#[derive(Debug, Clone)]
pub struct CifarResnet {
    specs: Specs,
    input: [usize; 3],
    conv1: Conv2d,
    bn1: BatchNorm,
    blocks: Vec<Block>,
    fc: Dense,
}

impl ResnetConfig {
    fn default_depth() -> usize {
        20
    }

    /// The number n of blocks per stage, or an error naming `model.depth`.
    fn blocks_per_stage(&self) -> Result<usize, ModelError> {
        let d = self.depth;
        if d >= 8 && (d - 2).is_multiple_of(6) {
            Ok((d - 2) / 6)
        } else {
            Err(ModelError::Invalid(format!(
                "model.depth: a CIFAR ResNet has depth 6n + 2 with n ≥ 1 (8, 14, 20, 32, 44, \
                 56, 110, …), got {d}"
            )))
        }
    }

    pub(crate) fn build(
        &self,
        kind: &str,
        input: InputShape,
        task: Task,
    ) -> Result<CifarResnet, ModelError> {
        let n = self.blocks_per_stage()?;
        let [c, h, w] = image_input(kind, input)?;
        let k = classes(kind, task)?;
        let mut b = Builder::new();
        let conv = |b: &mut Builder, name: &str, s: Conv2dShape| {
            Conv2d::new(b, name, s, Init::kaiming_normal(s.fan_in()), None)
        };
        let conv1 = conv(
            &mut b,
            "conv1",
            Conv2dShape::new(c, WIDTHS[0], 3).padding(1),
        );
        let bn1 = BatchNorm::new(&mut b, "bn1", WIDTHS[0]);
        let mut blocks = Vec::with_capacity(3 * n);
        let mut c_in = WIDTHS[0];
        for (s, &width) in WIDTHS.iter().enumerate() {
            for i in 0..n {
                let stride = if s > 0 && i == 0 { 2 } else { 1 };
                let name = format!("stage{}.block{i}", s + 1);
                let s1 = Conv2dShape::new(c_in, width, 3).stride(stride).padding(1);
                let s2 = Conv2dShape::new(width, width, 3).padding(1);
                blocks.push(Block {
                    conv1: conv(&mut b, &format!("{name}.conv1"), s1),
                    bn1: BatchNorm::new(&mut b, &format!("{name}.bn1"), width),
                    conv2: conv(&mut b, &format!("{name}.conv2"), s2),
                    bn2: BatchNorm::new(&mut b, &format!("{name}.bn2"), width),
                    shortcut: (stride != 1 || c_in != width)
                        .then(|| ShortcutA::new(c_in, width, stride)),
                });
                c_in = width;
            }
        }
        let fc = Dense::new(
            &mut b,
            "fc",
            c_in,
            k,
            Init::kaiming_normal(c_in),
            Some(Init::torch_default(c_in)),
        );
        Ok(CifarResnet {
            specs: b.finish(),
            input: [c, h, w],
            conv1,
            bn1,
            blocks,
            fc,
        })
    }
}

impl Block {
    fn forward(&self, pass: &mut Pass<'_>, x: Tensor<4>) -> Tensor<4> {
        let y = self.conv1.forward(pass, x.clone());
        let y = relu(self.bn1.forward(pass, y));
        let y = self.conv2.forward(pass, y);
        let y = self.bn2.forward(pass, y);
        let shortcut = match &self.shortcut {
            Some(a) => a.forward(x),
            None => x,
        };
        relu(y.add(shortcut))
    }
}

impl ImageClassifier for CifarResnet {
    fn specs(&self) -> &Specs {
        &self.specs
    }

    fn image_shape(&self) -> [usize; 3] {
        self.input
    }

    fn classify(&self, pass: &mut Pass<'_>, x: Tensor<4>) -> Tensor<2> {
        let y = self.conv1.forward(pass, x);
        let mut y = relu(self.bn1.forward(pass, y));
        for block in &self.blocks {
            y = block.forward(pass, y);
        }
        self.fc.forward(pass, global_avg_pool(y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::values;
    use crate::test_device;
    use crate::vision::testing::{
        build, cifar10, gradient_matches_central_difference, outputs_shape, probe_equals_train,
        refused,
    };
    use crate::{init_params, init_state};
    use burn::tensor::DType;

    #[test]
    fn cifar_resnets_have_he_et_al_parameter_counts() {
        for (config, count) in [
            ("kind = \"resnet\"\ndepth = 20", 269_722),
            ("kind = \"resnet\"\ndepth = 32", 464_154),
            ("kind = \"resnet\"\ndepth = 56", 853_018),
            ("kind = \"resnet\"", 269_722),
            ("kind = \"resnet20\"", 269_722),
            ("kind = \"resnet32\"", 464_154),
            ("kind = \"resnet56\"", 853_018),
        ] {
            let m = build(config, cifar10(), 10).unwrap();
            assert_eq!(m.num_params(), count, "{config}");
        }
    }

    #[test]
    fn resnet20_declares_running_statistics_for_its_19_batch_norms() {
        let m = build("kind = \"resnet20\"", cifar10(), 10).unwrap();
        assert_eq!(m.state_specs().len(), 2 * 19);
        assert_eq!(m.param_specs().len(), 19 + 2 * 19 + 2);
        let s = &m.state_specs()[2];
        assert_eq!(s.name, "stage1.block0.bn1.running_mean");
        assert_eq!(
            (s.shape.clone(), s.init.clone()),
            (vec![16], Init::Constant(0.0))
        );
        assert_eq!(m.state_specs()[3].init, Init::Constant(1.0));
        let conv = &m.param_specs()[3];
        assert_eq!(conv.name, "stage1.block0.conv1.weight");
        assert_eq!(conv.init, Init::kaiming_normal(16 * 9));
    }

    #[test]
    fn a_depth_that_is_not_6n_plus_2_is_refused_naming_the_key() {
        for depth in [21, 2, 0, 19] {
            let err = refused(
                &format!("kind = \"resnet\"\ndepth = {depth}"),
                cifar10(),
                10,
            );
            assert!(err.to_string().starts_with("model.depth:"), "{err}");
            assert!(err.to_string().contains(&depth.to_string()), "{err}");
        }
        assert!(toml::from_str::<crate::ModelConfig>("kind = \"resnet20\"\ndepth = 32").is_err());
    }

    #[test]
    fn resnet_refuses_feature_rows_and_regression() {
        let err = refused("kind = \"resnet56\"", InputShape::Features(784), 10);
        assert!(err.to_string().starts_with("model.kind: resnet56"), "{err}");
        assert!(err.to_string().contains("784 features"), "{err}");
        let config: crate::ModelConfig = toml::from_str("kind = \"resnet\"").unwrap();
        let err = config
            .build(cifar10(), Task::Regression { outputs: 1 })
            .err()
            .unwrap();
        assert!(err.to_string().contains("classification"), "{err}");
    }

    #[test]
    fn adding_blocks_changes_no_other_tensors_initial_values() {
        let d = test_device();
        let small = build("kind = \"resnet\"\ndepth = 8", cifar10(), 10).unwrap();
        let large = build("kind = \"resnet\"\ndepth = 14", cifar10(), 10).unwrap();
        let a = init_params(small.param_specs(), 9, &d, DType::F64);
        let b = init_params(large.param_specs(), 9, &d, DType::F64);
        let mut shared = 0;
        for (spec, value) in small.param_specs().iter().zip(a) {
            let j = large
                .param_specs()
                .iter()
                .position(|s| s.name == spec.name)
                .expect("every depth-8 tensor is in depth 14");
            assert_eq!(values(value), values(b[j].clone()), "{}", spec.name);
            shared += 1;
        }
        assert_eq!(shared, small.param_specs().len());
        // The inserted blocks really are new tensors: stage1.block1 sits before stage2.block0.
        assert!(
            large
                .param_specs()
                .iter()
                .any(|s| s.name == "stage1.block1.conv1.weight")
        );
    }

    #[test]
    fn resnet_predicts_probes_like_it_trains_and_differentiates_exactly() {
        let m = build(
            "kind = \"resnet\"\ndepth = 8",
            InputShape::Image([3, 8, 8]),
            4,
        )
        .unwrap();
        outputs_shape(m.as_ref(), [2, 3, 8, 8], 4);
        probe_equals_train(m.as_ref(), [3, 3, 8, 8], 4);
        gradient_matches_central_difference(m.as_ref(), [3, 3, 8, 8], 4);
        // Odd sizes: the option-A subsampling and the stride-2 convolution agree (⌈7/2⌉ = 4).
        let odd = build(
            "kind = \"resnet\"\ndepth = 8",
            InputShape::Image([1, 7, 7]),
            3,
        )
        .unwrap();
        outputs_shape(odd.as_ref(), [2, 1, 7, 7], 3);
        let d = test_device();
        assert_eq!(init_state(m.state_specs(), 0, &d, DType::F64).len(), 14);
    }
}
