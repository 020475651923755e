//! `kind = "wae_mmd"`: the WAE-MMD of Tolstikhin et al. (2018) for 64×64 CelebA, as LossGrad's
//! Table 6 trains it (ALGORITHMS.md §6; 39,742,531 parameters at the defaults).
//!
//! ```text
//! encoder: 4 × [conv 5×5 stride 2 (width·1, 2, 4, 8 channels) → batch norm → ReLU] → FC → z
//! decoder: FC z → (h/8)·(w/8)·8·width → ReLU
//!          → 3 × [transposed conv 5×5 stride 2 (width·4, 2, 1) → batch norm → ReLU]
//!          → transposed conv 5×5 stride 1 → c channels → tanh (or sigmoid)
//! objective: Σ_pixels (x̂ − x)² averaged over the batch  +  λ · MMD_IMQ(z, z̃),  z̃ ~ N(0, σ² I)
//! ```
//!
//! Every convolution pads 2 ("same" sizes: stride 2 halves, the transposed ones double with
//! output padding 1), so images need sides divisible by 16; width 128 and z 64 are the WAE
//! CelebA network. The prior draws z̃ are per-step randomness ([`crate::StepNoise::normal`],
//! site `wae.prior`): the training pass and every probe of a step see the same draws, so a
//! loss-aware optimizer compares one objective at two weights. The MMD is the multi-scale IMQ
//! estimate of [`super::mmd_imq`] with base scale 2·z_dim·σ². [`Forward::parts`] carries the
//! two terms (`reconstruction`, `mmd`) for the log.
//!
//! Initialisation: PyTorch's defaults for `Conv2d`, `ConvTranspose2d` and `Linear` (U(±1/√fan_in),
//! the transposed convolution's fan-in taken from its weight's second dimension as PyTorch
//! does), batch norm γ = 1, β = 0: the WAE code's truncated normal (std 0.01) is TensorFlow's,
//! and LossGrad's code is PyTorch's.

use burn::tensor::Tensor;
use burn::tensor::activation::{relu, sigmoid, tanh};
use serde::{Deserialize, Serialize};

use super::mmd_imq;
use crate::layers::{
    BatchNorm, Builder, Conv2d, Conv2dShape, ConvTranspose2d, ConvTranspose2dShape, Dense, Pass,
    Specs,
};
use crate::vision::{image_input, images};
use crate::{
    Cx, Forward, Init, Input, InputShape, Loss, Mode, Model, ModelError, ParamSpec, Prediction,
    Reduction, StateSpec, Target, Task,
};

/// The decoder's last activation, which fixes the range the data must be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderOutput {
    /// tanh: pixels in [−1, 1] (the WAE code's CelebA setting).
    #[default]
    Tanh,
    /// The logistic sigmoid: pixels in [0, 1].
    Sigmoid,
}

impl DecoderOutput {
    /// The `(low, high)` range of the decoder's outputs.
    pub fn range(self) -> (f64, f64) {
        match self {
            Self::Tanh => (-1.0, 1.0),
            Self::Sigmoid => (0.0, 1.0),
        }
    }
}

/// `kind = "wae_mmd"` (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaeMmdConfig {
    /// Channels of the encoder's first convolution (the others are 2, 4 and 8 times as many; the
    /// decoder's 4, 2 and 1 times). Default 128, the WAE CelebA network.
    #[serde(default = "WaeMmdConfig::default_width")]
    pub width: usize,
    /// Dimension of the latent code z. Default 64.
    #[serde(default = "WaeMmdConfig::default_z_dim")]
    pub z_dim: usize,
    /// λ, the weight of the MMD penalty. Default 100.
    #[serde(default = "WaeMmdConfig::default_lambda")]
    pub lambda: f64,
    /// σ², the variance of the prior N(0, σ² I). Default 1.
    #[serde(default = "WaeMmdConfig::default_prior_variance")]
    pub prior_variance: f64,
    /// The decoder's last activation: `tanh` (pixels in [−1, 1], default) or `sigmoid`
    /// ([0, 1]); the trainer scales the images to match.
    #[serde(default)]
    pub output: DecoderOutput,
}

impl Default for WaeMmdConfig {
    fn default() -> Self {
        Self {
            width: Self::default_width(),
            z_dim: Self::default_z_dim(),
            lambda: Self::default_lambda(),
            prior_variance: Self::default_prior_variance(),
            output: DecoderOutput::default(),
        }
    }
}

impl WaeMmdConfig {
    fn default_width() -> usize {
        128
    }
    fn default_z_dim() -> usize {
        64
    }
    fn default_lambda() -> f64 {
        100.0
    }
    fn default_prior_variance() -> f64 {
        1.0
    }

    pub(crate) fn build(&self, input: InputShape, task: Task) -> Result<WaeMmd, ModelError> {
        let [c, h, w] = image_input("wae_mmd", input)?;
        if task != Task::Reconstruction {
            return Err(ModelError::Invalid(
                "model.kind: wae_mmd is an autoencoder: it reconstructs its input, so the \
                 dataset's labels are not used (the trainer sets the task)"
                    .into(),
            ));
        }
        if h % 16 != 0 || w % 16 != 0 {
            return Err(ModelError::Invalid(format!(
                "model.kind: wae_mmd halves the image four times and doubles it back three \
                 times, so its sides must be multiples of 16; the dataset's images are {h}×{w} \
                 (CelebA at 64×64 fits)"
            )));
        }
        if self.width == 0 || self.z_dim == 0 {
            return Err(ModelError::Invalid(
                "model.width and model.z_dim must be at least 1".into(),
            ));
        }
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            return Err(ModelError::Invalid(format!(
                "model.lambda: the MMD weight must be finite and ≥ 0, got {}",
                self.lambda
            )));
        }
        if !(self.prior_variance.is_finite() && self.prior_variance > 0.0) {
            return Err(ModelError::Invalid(format!(
                "model.prior_variance: σ² must be finite and > 0, got {}",
                self.prior_variance
            )));
        }
        let width = self.width;
        let mut b = Builder::new();
        let conv = |b: &mut Builder, name: &str, s: Conv2dShape| {
            let init = Init::torch_default(s.fan_in());
            Conv2d::new(b, name, s, init.clone(), Some(init))
        };
        let deconv = |b: &mut Builder, name: &str, s: ConvTranspose2dShape| {
            let init = Init::torch_default(s.torch_fan_in());
            ConvTranspose2d::new(b, name, s, init.clone(), Some(init))
        };
        let dense = |b: &mut Builder, name: &str, fan_in: usize, fan_out: usize| {
            let init = Init::torch_default(fan_in);
            Dense::new(b, name, fan_in, fan_out, init.clone(), Some(init))
        };
        let mut encoder = Vec::new();
        let mut c_in = c;
        for (i, factor) in [1, 2, 4, 8].into_iter().enumerate() {
            let shape = Conv2dShape::new(c_in, width * factor, 5)
                .stride(2)
                .padding(2);
            let conv = conv(&mut b, &format!("encoder.conv{i}"), shape);
            let bn = BatchNorm::new(&mut b, &format!("encoder.bn{i}"), width * factor);
            encoder.push((conv, bn));
            c_in = width * factor;
        }
        let code = dense(&mut b, "encoder.fc", c_in * (h / 16) * (w / 16), self.z_dim);
        let start = [h / 8, w / 8];
        let top = width * 8;
        let project = dense(&mut b, "decoder.fc", self.z_dim, top * start[0] * start[1]);
        let mut decoder = Vec::new();
        let mut c_in = top;
        for (i, factor) in [4, 2, 1].into_iter().enumerate() {
            let shape = ConvTranspose2dShape::same(c_in, width * factor, 5, 2);
            let deconv = deconv(&mut b, &format!("decoder.deconv{i}"), shape);
            let bn = BatchNorm::new(&mut b, &format!("decoder.bn{i}"), width * factor);
            decoder.push((deconv, bn));
            c_in = width * factor;
        }
        let last = deconv(
            &mut b,
            "decoder.out",
            ConvTranspose2dShape::same(c_in, c, 5, 1),
        );
        Ok(WaeMmd {
            specs: b.finish(),
            input: [c, h, w],
            encoder,
            code,
            project,
            start,
            top,
            decoder,
            last,
            config: self.clone(),
        })
    }
}

/// The WAE-MMD network (see the module docs).
#[derive(Debug, Clone)]
pub struct WaeMmd {
    specs: Specs,
    input: [usize; 3],
    encoder: Vec<(Conv2d, BatchNorm)>,
    code: Dense,
    project: Dense,
    /// The decoder's first feature map's `[height, width]`.
    start: [usize; 2],
    /// The decoder's first feature map's channels.
    top: usize,
    decoder: Vec<(ConvTranspose2d, BatchNorm)>,
    last: ConvTranspose2d,
    config: WaeMmdConfig,
}

/// The names of the objective's two terms, in [`Forward::parts`] order.
const PARTS: [&str; 2] = ["reconstruction", "mmd"];

impl WaeMmd {
    /// The decoder's output activation (the range the data must be in).
    pub fn output(&self) -> DecoderOutput {
        self.config.output
    }

    /// The codes `[batch, z_dim]` of images `[batch, c, h, w]`.
    fn encode(&self, pass: &mut Pass<'_>, mut x: Tensor<4>) -> Tensor<2> {
        for (conv, bn) in &self.encoder {
            let y = conv.forward(pass, x);
            x = relu(bn.forward(pass, y));
        }
        let [batch, c, h, w] = x.dims();
        self.code.forward(pass, x.reshape([batch, c * h * w]))
    }

    /// The images `[batch, c, h, w]` decoded from codes `[batch, z_dim]`.
    fn decode(&self, pass: &mut Pass<'_>, z: Tensor<2>) -> Tensor<4> {
        let batch = z.dims()[0];
        let [sh, sw] = self.start;
        let mut x = relu(self.project.forward(pass, z)).reshape([batch, self.top, sh, sw]);
        for (deconv, bn) in &self.decoder {
            let y = deconv.forward(pass, x);
            x = relu(bn.forward(pass, y));
        }
        let y = self.last.forward(pass, x);
        match self.config.output {
            DecoderOutput::Tanh => tanh(y),
            DecoderOutput::Sigmoid => sigmoid(y),
        }
    }

    /// `batch` prior draws `[batch, z_dim]` of the pass's noise at `site`: N(0, σ² I).
    fn prior(&self, pass: &Pass<'_>, site: &str, batch: usize) -> Tensor<2> {
        let z = self.config.z_dim;
        pass.noise()
            .normal(site, batch * z)
            .mul_scalar(self.config.prior_variance.sqrt())
            .reshape([batch, z])
    }
}

impl Model for WaeMmd {
    fn param_specs(&self) -> &[ParamSpec] {
        &self.specs.params
    }

    fn state_specs(&self) -> &[StateSpec] {
        &self.specs.state
    }

    fn predict(
        &self,
        params: &[Tensor<1>],
        state: &[Tensor<1>],
        input: &Input,
        cx: &Cx<'_>,
    ) -> Prediction {
        let x = images(input, self.input);
        let [batch, c, h, w] = x.dims();
        let mut pass = Pass::new(&self.specs, params, state, cx);
        let z = self.encode(&mut pass, x);
        let y = self.decode(&mut pass, z);
        Prediction {
            outputs: y.reshape([batch, c * h * w]),
            new_state: pass.into_new_state(),
        }
    }

    /// Reconstruction (squared error summed over pixels, averaged over the batch) plus λ times
    /// the MMD between the batch's codes and the step's prior draws; `target` is not read (the
    /// target of an autoencoder is its input).
    fn forward(
        &self,
        params: &[Tensor<1>],
        state: &[Tensor<1>],
        input: &Input,
        _target: &Target,
        cx: &Cx<'_>,
    ) -> Forward {
        let x = images(input, self.input);
        let [batch, c, h, w] = x.dims();
        let mut pass = Pass::new(&self.specs, params, state, cx);
        let z = self.encode(&mut pass, x.clone());
        let y = self.decode(&mut pass, z.clone());
        let reconstruction = y.clone().sub(x).square().sum().div_scalar(batch as f64);
        let prior = self.prior(&pass, "wae.prior", batch);
        let base = 2.0 * self.config.z_dim as f64 * self.config.prior_variance;
        let mmd = mmd_imq(z, prior, base);
        let loss = reconstruction
            .clone()
            .add(mmd.clone().mul_scalar(self.config.lambda));
        Forward {
            loss,
            outputs: y.reshape([batch, c * h * w]),
            new_state: pass.into_new_state(),
            parts: vec![reconstruction, mmd],
        }
    }

    fn loss_parts(&self) -> &[&'static str] {
        &PARTS
    }

    /// Decodes `count` draws of the prior at the noise's site `wae.sample` (Eval mode: running
    /// statistics).
    fn sample(
        &self,
        params: &[Tensor<1>],
        state: &[Tensor<1>],
        count: usize,
        cx: &Cx<'_>,
    ) -> Option<Tensor<4>> {
        let eval = Cx {
            mode: Mode::Eval,
            noise: cx.noise,
        };
        let mut pass = Pass::new(&self.specs, params, state, &eval);
        let z = self.prior(&pass, "wae.sample", count);
        Some(self.decode(&mut pass, z))
    }

    /// How batch losses combine over a set: averaged, weighted by batch size (the
    /// reconstruction is a per-sample mean; the MMD a per-batch estimate).
    fn loss(&self) -> Loss {
        Loss::SquaredError(Reduction::Mean)
    }
}

#[cfg(test)]
mod tests;
