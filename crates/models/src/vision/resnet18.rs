//! `kind = "resnet18"`: the standard CIFAR ResNet-18 of Gorti & Ravaut's experiments (001
//! §4.2.3), with their two dropout layers as an option.
//!
//! He et al.'s ImageNet ResNet-18 (2016, Table 1) adapted to 32×32 inputs as the widely used
//! PyTorch CIFAR code does (Kuang Liu, `kuangliu/pytorch-cifar`, `models/resnet.py`): a 3×3
//! stem without max pooling, four stages of two basic blocks at widths 64/128/256/512 (stride 2
//! at stages 2-4), projection shortcuts (1×1 conv without bias + BN, "option B") where a block
//! changes width or resolution, BN after every convolution, global average pooling and FC:
//!
//! ```text
//! conv 3×3 c→64, BN, ReLU
//! stage 1: 2 × block(64)     stage 2: 2 × block(128), stride 2 → dropout
//! stage 3: 2 × block(256), stride 2    stage 4: 2 × block(512), stride 2 → dropout
//! global average pool → FC 512→K
//! block: y = relu(bn1(conv1(x))); y = bn2(conv2(y)); relu(y + shortcut(x))
//! ```
//!
//! 11,173,962 parameters on CIFAR-10. Dropout: the paper's draft (004 §4.2.3) adds it "at the
//! end of the second and fourth blocks of the network"; this project reads "blocks" as the
//! stages (`layer2`, `layer4` of that code): after stage 2 and after stage 4 (before the
//! pooling). The rate is not given; `dropout = 0` (default) is the plain ResNet-18. The
//! average pool of that code (`avg_pool2d(out, 4)` on a 4×4 map) equals global average pooling
//! on 32×32 inputs. Initialisation: PyTorch's defaults, which that code keeps: conv and FC
//! weights U(±1/√fan_in), FC bias U(±1/√fan_in), BN γ = 1, β = 0.

use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

use super::{ImageClassifier, classes, image_input};
use crate::layers::{
    BatchNorm, Builder, Conv2d, Conv2dShape, Dense, Dropout, Pass, Specs, global_avg_pool,
};
use crate::{Init, InputShape, ModelError, Task};

/// Stage widths.
const WIDTHS: [usize; 4] = [64, 128, 256, 512];

/// `kind = "resnet18"` (see the module docs).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resnet18Config {
    /// Dropout rate after stages 2 and 4, in [0, 1). Default 0 (no dropout).
    #[serde(default)]
    pub dropout: f64,
}

/// A basic block with an optional projection shortcut.
#[derive(Debug, Clone)]
struct Block {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    shortcut: Option<(Conv2d, BatchNorm)>,
}

/// The CIFAR ResNet-18 (see the module docs).
#[derive(Debug, Clone)]
pub struct Resnet18 {
    specs: Specs,
    input: [usize; 3],
    conv1: Conv2d,
    bn1: BatchNorm,
    /// Two blocks per stage, in order.
    stages: Vec<Vec<Block>>,
    /// After stage 2 and after stage 4.
    dropouts: [Dropout; 2],
    fc: Dense,
}

fn conv(b: &mut Builder, name: &str, s: Conv2dShape) -> Conv2d {
    Conv2d::new(b, name, s, Init::torch_default(s.fan_in()), None)
}

impl Resnet18Config {
    pub(crate) fn build(&self, input: InputShape, task: Task) -> Result<Resnet18, ModelError> {
        let [c, h, w] = image_input("resnet18", input)?;
        let k = classes("resnet18", task)?;
        let dropouts = [
            Dropout::new("stage2.dropout", self.dropout, "model.dropout")?,
            Dropout::new("stage4.dropout", self.dropout, "model.dropout")?,
        ];
        let mut b = Builder::new();
        let conv1 = conv(&mut b, "conv1", Conv2dShape::new(c, 64, 3).padding(1));
        let bn1 = BatchNorm::new(&mut b, "bn1", 64);
        let mut c_in = 64;
        let mut stages = Vec::with_capacity(4);
        for (s, &width) in WIDTHS.iter().enumerate() {
            let mut blocks = Vec::with_capacity(2);
            for i in 0..2 {
                let stride = if s > 0 && i == 0 { 2 } else { 1 };
                let name = format!("stage{}.block{i}", s + 1);
                let s1 = Conv2dShape::new(c_in, width, 3).stride(stride).padding(1);
                let s2 = Conv2dShape::new(width, width, 3).padding(1);
                let project = stride != 1 || c_in != width;
                blocks.push(Block {
                    conv1: conv(&mut b, &format!("{name}.conv1"), s1),
                    bn1: BatchNorm::new(&mut b, &format!("{name}.bn1"), width),
                    conv2: conv(&mut b, &format!("{name}.conv2"), s2),
                    bn2: BatchNorm::new(&mut b, &format!("{name}.bn2"), width),
                    shortcut: project.then(|| {
                        let s = Conv2dShape::new(c_in, width, 1).stride(stride);
                        (
                            conv(&mut b, &format!("{name}.shortcut.conv"), s),
                            BatchNorm::new(&mut b, &format!("{name}.shortcut.bn"), width),
                        )
                    }),
                });
                c_in = width;
            }
            stages.push(blocks);
        }
        let fc_init = Init::torch_default(c_in);
        let fc = Dense::new(&mut b, "fc", c_in, k, fc_init.clone(), Some(fc_init));
        Ok(Resnet18 {
            specs: b.finish(),
            input: [c, h, w],
            conv1,
            bn1,
            stages,
            dropouts,
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
            Some((conv, bn)) => {
                let s = conv.forward(pass, x);
                bn.forward(pass, s)
            }
            None => x,
        };
        relu(y.add(shortcut))
    }
}

impl ImageClassifier for Resnet18 {
    fn specs(&self) -> &Specs {
        &self.specs
    }

    fn image_shape(&self) -> [usize; 3] {
        self.input
    }

    fn classify(&self, pass: &mut Pass<'_>, x: Tensor<4>) -> Tensor<2> {
        let y = self.conv1.forward(pass, x);
        let mut y = relu(self.bn1.forward(pass, y));
        for (s, blocks) in self.stages.iter().enumerate() {
            for block in blocks {
                y = block.forward(pass, y);
            }
            match s {
                1 => y = self.dropouts[0].forward(pass, y),
                3 => y = self.dropouts[1].forward(pass, y),
                _ => {}
            }
        }
        self.fc.forward(pass, global_avg_pool(y))
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
    fn resnet18_on_cifar10_has_11173962_parameters() {
        let m = build("kind = \"resnet18\"", cifar10(), 10).unwrap();
        assert_eq!(m.num_params(), 11_173_962);
        // 1 stem + 16 block + 3 shortcut batch norms.
        assert_eq!(m.state_specs().len(), 2 * 20);
        assert!(
            m.param_specs()
                .iter()
                .any(|s| s.name == "stage2.block0.shortcut.conv.weight")
        );
        assert!(
            !m.param_specs()
                .iter()
                .any(|s| s.name.starts_with("stage1.block0.shortcut"))
        );
        let err = refused("kind = \"resnet18\"\ndropout = -0.5", cifar10(), 10);
        assert!(err.to_string().starts_with("model.dropout"), "{err}");
    }

    #[test]
    fn resnet18_with_dropout_predicts_probes_like_it_trains_and_differentiates_exactly() {
        let m = build(
            "kind = \"resnet18\"\ndropout = 0.2",
            InputShape::Image([3, 16, 16]),
            10,
        )
        .unwrap();
        outputs_shape(m.as_ref(), [2, 3, 16, 16], 10);
        probe_equals_train(m.as_ref(), [2, 3, 16, 16], 10);
        gradient_matches_central_difference(m.as_ref(), [2, 3, 16, 16], 10);
    }
}
