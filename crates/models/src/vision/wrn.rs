//! `kind = "wrn"`: the pre-activation wide residual networks of Zagoruyko & Komodakis, "Wide
//! Residual Networks" (BMVC 2016), WRN-d-k; WRN-16-4 is the network of the TLR paper's
//! CIFAR experiments (002, Figs. 14-15 vary depth and width).
//!
//! As the PyTorch code that ports the authors' (Xternalz, `xternalz/WideResNet-pytorch`,
//! `wideresnet.py`):
//!
//! ```text
//! conv 3×3 c→16
//! group 1: n blocks at width 16k        (n = (d − 4)/6)
//! group 2: n blocks at width 32k, the first with stride 2
//! group 3: n blocks at width 64k, the first with stride 2
//! BN, ReLU, global average pool → FC 64k→K
//!
//! block (pre-activation):  a = relu(bn1(x))
//!   y = conv2(dropout(relu(bn2(conv1(a)))))          conv1 carries the stride
//!   out = y + x              where width and resolution are kept
//!   out = y + shortcut(a)    otherwise: 1×1 conv with the stride, no bias
//! ```
//!
//! Convolutions 3×3 with padding 1, no biases. 2,748,890 parameters for WRN-16-4 on CIFAR-10,
//! 2,772,020 on CIFAR-100. Initialisation as that code: conv weights N(0, 2/(k²·c_out))
//! (Kaiming normal, fan-out mode), BN γ = 1, β = 0, FC bias 0, FC weight PyTorch's default
//! U(±1/√fan_in). Dropout between the two convolutions of each block (`dropout`, default 0;
//! the WRN paper uses 0.3 in some runs). The code's `avg_pool2d(out, 8)` on the final 8×8 map
//! equals global average pooling on 32×32 inputs.

use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

use super::{ImageClassifier, classes, image_input};
use crate::layers::{
    BatchNorm, Builder, Conv2d, Conv2dShape, Dense, Dropout, Pass, Specs, global_avg_pool,
};
use crate::{Init, InputShape, ModelError, Task};

/// `kind = "wrn"` (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrnConfig {
    /// Depth d = 6n + 4 (10, 16, 22, 28, 40, …). Default 16.
    #[serde(default = "WrnConfig::default_depth")]
    pub depth: usize,
    /// Widening factor k ≥ 1. Default 4.
    #[serde(default = "WrnConfig::default_width")]
    pub width: usize,
    /// Dropout rate between the two convolutions of each block, in [0, 1). Default 0.
    #[serde(default)]
    pub dropout: f64,
}

impl Default for WrnConfig {
    fn default() -> Self {
        Self {
            depth: Self::default_depth(),
            width: Self::default_width(),
            dropout: 0.0,
        }
    }
}

/// A pre-activation block.
#[derive(Debug, Clone)]
struct Block {
    bn1: BatchNorm,
    conv1: Conv2d,
    bn2: BatchNorm,
    dropout: Dropout,
    conv2: Conv2d,
    /// A 1×1 projection where the block changes width or resolution.
    shortcut: Option<Conv2d>,
}

/// A wide ResNet (see the module docs).
#[derive(Debug, Clone)]
pub struct WideResnet {
    specs: Specs,
    input: [usize; 3],
    conv1: Conv2d,
    blocks: Vec<Block>,
    bn: BatchNorm,
    fc: Dense,
}

fn conv(b: &mut Builder, name: &str, s: Conv2dShape) -> Conv2d {
    Conv2d::new(b, name, s, Init::kaiming_normal(s.fan_out()), None)
}

impl WrnConfig {
    fn default_depth() -> usize {
        16
    }
    fn default_width() -> usize {
        4
    }

    pub(crate) fn build(&self, input: InputShape, task: Task) -> Result<WideResnet, ModelError> {
        let d = self.depth;
        if !(d >= 10 && (d - 4).is_multiple_of(6)) {
            return Err(ModelError::Invalid(format!(
                "model.depth: a wide ResNet has depth 6n + 4 with n ≥ 1 (10, 16, 22, 28, 40, \
                 …), got {d}"
            )));
        }
        if self.width == 0 {
            return Err(ModelError::Invalid(
                "model.width: the widening factor must be at least 1".into(),
            ));
        }
        let [c, h, w] = image_input("wrn", input)?;
        let k = classes("wrn", task)?;
        crate::layers::check_rate(self.dropout, "model.dropout")?;
        let n = (d - 4) / 6;
        let widths = [16, 32, 64].map(|base| base * self.width);
        let mut b = Builder::new();
        let conv1 = conv(&mut b, "conv1", Conv2dShape::new(c, 16, 3).padding(1));
        let mut c_in = 16;
        let mut blocks = Vec::with_capacity(3 * n);
        for (g, &width) in widths.iter().enumerate() {
            for i in 0..n {
                let stride = if g > 0 && i == 0 { 2 } else { 1 };
                let name = format!("stage{}.block{i}", g + 1);
                let s1 = Conv2dShape::new(c_in, width, 3).stride(stride).padding(1);
                let s2 = Conv2dShape::new(width, width, 3).padding(1);
                let project = stride != 1 || c_in != width;
                blocks.push(Block {
                    bn1: BatchNorm::new(&mut b, &format!("{name}.bn1"), c_in),
                    conv1: conv(&mut b, &format!("{name}.conv1"), s1),
                    bn2: BatchNorm::new(&mut b, &format!("{name}.bn2"), width),
                    dropout: Dropout::new(
                        format!("{name}.dropout"),
                        self.dropout,
                        "model.dropout",
                    )?,
                    conv2: conv(&mut b, &format!("{name}.conv2"), s2),
                    shortcut: project.then(|| {
                        let s = Conv2dShape::new(c_in, width, 1).stride(stride);
                        conv(&mut b, &format!("{name}.shortcut"), s)
                    }),
                });
                c_in = width;
            }
        }
        let bn = BatchNorm::new(&mut b, "bn", c_in);
        let fc = Dense::new(
            &mut b,
            "fc",
            c_in,
            k,
            Init::torch_default(c_in),
            Some(Init::Constant(0.0)),
        );
        Ok(WideResnet {
            specs: b.finish(),
            input: [c, h, w],
            conv1,
            blocks,
            bn,
            fc,
        })
    }
}

impl Block {
    fn forward(&self, pass: &mut Pass<'_>, x: Tensor<4>) -> Tensor<4> {
        let a = relu(self.bn1.forward(pass, x.clone()));
        let y = self.conv1.forward(pass, a.clone());
        let y = relu(self.bn2.forward(pass, y));
        let y = self.dropout.forward(pass, y);
        let y = self.conv2.forward(pass, y);
        let shortcut = match &self.shortcut {
            Some(conv) => conv.forward(pass, a),
            None => x,
        };
        y.add(shortcut)
    }
}

impl ImageClassifier for WideResnet {
    fn specs(&self) -> &Specs {
        &self.specs
    }

    fn image_shape(&self) -> [usize; 3] {
        self.input
    }

    fn classify(&self, pass: &mut Pass<'_>, x: Tensor<4>) -> Tensor<2> {
        let mut y = self.conv1.forward(pass, x);
        for block in &self.blocks {
            y = block.forward(pass, y);
        }
        let y = relu(self.bn.forward(pass, y));
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
    fn wrn_16_4_has_its_published_parameter_counts() {
        let m = build("kind = \"wrn\"", cifar10(), 10).unwrap();
        assert_eq!(m.num_params(), 2_748_890);
        let explicit = build("kind = \"wrn\"\ndepth = 16\nwidth = 4", cifar10(), 100).unwrap();
        assert_eq!(explicit.num_params(), 2_772_020);
        let shortcut = m
            .param_specs()
            .iter()
            .find(|s| s.name == "stage1.block0.shortcut.weight")
            .expect("16 → 64 channels needs a projection");
        assert_eq!(shortcut.shape, vec![64, 16, 1, 1]);
        assert!(
            !m.param_specs()
                .iter()
                .any(|s| s.name == "stage1.block1.shortcut.weight")
        );
    }

    #[test]
    fn wrn_refuses_bad_depth_width_and_dropout_naming_the_key() {
        for (config, key) in [
            ("depth = 15", "model.depth:"),
            ("depth = 4", "model.depth:"),
            ("width = 0", "model.width:"),
            ("dropout = 1.5", "model.dropout:"),
        ] {
            let err = refused(&format!("kind = \"wrn\"\n{config}"), cifar10(), 10);
            assert!(err.to_string().starts_with(key), "{config}: {err}");
        }
        let err = refused("kind = \"wrn\"", InputShape::Features(3), 10);
        assert!(err.to_string().starts_with("model.kind: wrn"), "{err}");
    }

    #[test]
    fn wrn_with_dropout_predicts_probes_like_it_trains_and_differentiates_exactly() {
        let m = build(
            "kind = \"wrn\"\ndepth = 10\nwidth = 1\ndropout = 0.3",
            InputShape::Image([3, 8, 8]),
            5,
        )
        .unwrap();
        outputs_shape(m.as_ref(), [2, 3, 8, 8], 5);
        probe_equals_train(m.as_ref(), [3, 3, 8, 8], 5);
        gradient_matches_central_difference(m.as_ref(), [3, 3, 8, 8], 5);
    }
}
