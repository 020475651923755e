//! Fully connected models: `mlp`, `autoencoder` and `linear`.

use burn::tensor::activation::{relu, tanh};
use burn::tensor::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::{
    Cx, Init, InitScheme, Input, Loss, Model, ModelError, ParamSpec, Prediction, Reduction, Task,
};

/// A hidden-layer nonlinearity (`model.activation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(0, x).
    #[default]
    Relu,
    /// tanh(x).
    Tanh,
    /// 1 / (1 + e^−x).
    Sigmoid,
    /// x.
    Identity,
}

impl Activation {
    fn apply(self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Relu => relu(x),
            Self::Tanh => tanh(x),
            Self::Sigmoid => sigmoid(x),
            Self::Identity => x,
        }
    }
}

/// Where [`sigmoid`] clamps an f64 input from below: e^700 ≈ 1.0e304 is still finite.
const SIGMOID_F64_FLOOR: f64 = -700.0;

/// The logistic sigmoid 1 / (1 + e^−x), element-wise, exact to the rounding of f64 when `x` is
/// f64, on every backend, forward and backward.
///
/// Burn 0.22.1's default `ActivationOps::sigmoid` (what `burn::tensor::activation::sigmoid` runs
/// on burn-ndarray, which does not override it) casts its input to f32, computes there and casts
/// back; its backward pass recomputes the output the same way. With `precision = "f64"` that is an
/// f32-accurate sigmoid and gradient (relative error ~1e-8). So for f64 tensors this composes the
/// sigmoid from Burn's `exp`, `add_scalar` and `recip`, whose f64 kernels are native, and autodiff
/// differentiates that composition (e^−x / (1 + e^−x)², i.e. σ(x)·σ(−x)). The input is first
/// clamped from below at −700, so that e^−x never overflows and no inf·0 = NaN reaches the
/// gradient; below −700 the result stays σ(−700) ≈ 1e−304 with a zero gradient. Other dtypes
/// keep Burn's fused sigmoid, which computes in f32 (exact for f32).
pub fn sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.dtype() == DType::F64 {
        x.clamp_min(SIGMOID_F64_FLOOR)
            .neg()
            .exp()
            .add_scalar(1.0)
            .recip()
    } else {
        burn::tensor::activation::sigmoid(x)
    }
}

fn default_std() -> f64 {
    0.05
}
fn default_bias() -> f64 {
    0.2
}
fn default_true() -> bool {
    true
}

/// `kind = "mlp"`: inputs → hidden layers → outputs (logits for classification).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    /// Hidden layer widths. Default: LossGrad's MNIST net, 784-500-300-100-10 (573,910 params).
    #[serde(default = "MlpConfig::default_hidden")]
    pub hidden: Vec<usize>,
    /// Hidden nonlinearity.
    #[serde(default)]
    pub activation: Activation,
    /// Initialisation scheme.
    #[serde(default)]
    pub init: InitScheme,
    /// Weight std for `init = "normal"`.
    #[serde(default = "default_std")]
    pub init_std: f64,
    /// Bias value for `init = "normal"`.
    #[serde(default = "default_bias")]
    pub init_bias: f64,
    /// Reduction of a squared-error loss (regression, reconstruction).
    #[serde(default)]
    pub loss_reduction: Reduction,
    /// Start the output layer (weights and bias) at zero, whatever `init` says (the L4 paper's
    /// MNIST net: Xavier hidden layers, zero output layer).
    #[serde(default)]
    pub zero_output_layer: bool,
}

impl MlpConfig {
    fn default_hidden() -> Vec<usize> {
        vec![500, 300, 100]
    }

    pub(crate) fn build(&self, inputs: usize, task: Task) -> Result<Mlp, ModelError> {
        Mlp::new(MlpShape {
            inputs,
            hidden: &self.hidden,
            task,
            activation: self.activation,
            output_activation: Activation::Identity,
            bias: true,
            init: (self.init, self.init_std, self.init_bias),
            reduction: self.loss_reduction,
            zero_output: self.zero_output_layer,
        })
    }
}

/// `kind = "autoencoder"`: inputs → hidden → inputs with a sigmoid output and squared error.
/// Default: LossGrad's Fashion-MNIST net 784-200-100-50-100-200-784 (365,034 params).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoencoderConfig {
    /// Hidden layer widths, encoder and decoder.
    #[serde(default = "AutoencoderConfig::default_hidden")]
    pub hidden: Vec<usize>,
    /// Hidden nonlinearity.
    #[serde(default)]
    pub activation: Activation,
    /// Initialisation scheme.
    #[serde(default)]
    pub init: InitScheme,
    /// Weight std for `init = "normal"`.
    #[serde(default = "default_std")]
    pub init_std: f64,
    /// Bias value for `init = "normal"`.
    #[serde(default = "default_bias")]
    pub init_bias: f64,
    /// Reduction of the squared error (default mean, as the paper's MSE).
    #[serde(default)]
    pub loss_reduction: Reduction,
}

impl AutoencoderConfig {
    fn default_hidden() -> Vec<usize> {
        vec![200, 100, 50, 100, 200]
    }

    pub(crate) fn build(&self, inputs: usize, _task: Task) -> Result<Mlp, ModelError> {
        Mlp::new(MlpShape {
            inputs,
            hidden: &self.hidden,
            task: Task::Reconstruction,
            activation: self.activation,
            output_activation: Activation::Sigmoid,
            bias: true,
            init: (self.init, self.init_std, self.init_bias),
            reduction: self.loss_reduction,
            zero_output: false,
        })
    }
}

/// `kind = "linear"`: one dense layer, inputs → outputs (1 for regression, K for classification).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearConfig {
    /// Whether the layer has a bias.
    #[serde(default = "default_true")]
    pub bias: bool,
    /// Initialisation scheme (`"zeros"` sets every parameter to 0).
    #[serde(default)]
    pub init: InitScheme,
    /// Weight std for `init = "normal"`.
    #[serde(default = "default_std")]
    pub init_std: f64,
    /// Bias value for `init = "normal"`.
    #[serde(default = "default_bias")]
    pub init_bias: f64,
    /// `"mean"` (as PyTorch's `MSELoss`) or `"sum"` (summed over all elements).
    #[serde(default)]
    pub loss_reduction: Reduction,
}

impl LinearConfig {
    pub(crate) fn build(&self, inputs: usize, task: Task) -> Result<Mlp, ModelError> {
        Mlp::new(MlpShape {
            inputs,
            hidden: &[],
            task,
            activation: Activation::Identity,
            output_activation: Activation::Identity,
            bias: self.bias,
            init: (self.init, self.init_std, self.init_bias),
            reduction: self.loss_reduction,
            zero_output: false,
        })
    }
}

/// `kind = "bad_regression"`: Ŷ = W1·W2·X, the badly-conditioned regression model of the L4
/// paper (Sec. 3.1): two bias-free linear layers inputs → inputs → outputs with N(0, init_std²)
/// weights, squared error summed (96 parameters on its 6 → 10 problem).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BadRegressionConfig {
    /// Weight standard deviation (the paper: W ~ N(0, 1)).
    #[serde(default = "BadRegressionConfig::default_std")]
    pub init_std: f64,
    /// `"sum"` (the paper's Σ(Ŷ − AX)², default) or `"mean"`.
    #[serde(default = "BadRegressionConfig::default_reduction")]
    pub loss_reduction: Reduction,
}

impl BadRegressionConfig {
    fn default_std() -> f64 {
        1.0
    }
    fn default_reduction() -> Reduction {
        Reduction::Sum
    }

    pub(crate) fn build(&self, inputs: usize, task: Task) -> Result<Mlp, ModelError> {
        if !matches!(task, Task::Regression { .. }) {
            return Err(ModelError::Invalid(
                "model.kind: bad_regression needs a regression dataset (e.g. data.dataset = \"bad_regression\")".into(),
            ));
        }
        Mlp::new(MlpShape {
            inputs,
            hidden: &[inputs],
            task,
            activation: Activation::Identity,
            output_activation: Activation::Identity,
            bias: false,
            init: (InitScheme::Normal, self.init_std, 0.0),
            reduction: self.loss_reduction,
            zero_output: false,
        })
    }
}

impl Default for BadRegressionConfig {
    fn default() -> Self {
        Self {
            init_std: Self::default_std(),
            loss_reduction: Self::default_reduction(),
        }
    }
}

struct MlpShape<'a> {
    inputs: usize,
    hidden: &'a [usize],
    task: Task,
    activation: Activation,
    output_activation: Activation,
    bias: bool,
    init: (InitScheme, f64, f64),
    reduction: Reduction,
    zero_output: bool,
}

/// A stack of dense layers `x·W + b`; weights are stored `[in, out]`.
#[derive(Debug, Clone)]
pub struct Mlp {
    /// (fan_in, fan_out) of each layer.
    layers: Vec<(usize, usize)>,
    bias: bool,
    activation: Activation,
    output_activation: Activation,
    loss: Loss,
    specs: Vec<ParamSpec>,
}

impl Mlp {
    fn new(shape: MlpShape<'_>) -> Result<Self, ModelError> {
        if shape.hidden.contains(&0) {
            return Err(ModelError::Invalid(
                "model.hidden: layer widths must be positive".into(),
            ));
        }
        let (outputs, loss) = match shape.task {
            Task::Classification { classes } => (classes, Loss::CrossEntropy),
            Task::Regression { outputs } => (outputs, Loss::SquaredError(shape.reduction)),
            Task::Reconstruction => (shape.inputs, Loss::SquaredError(shape.reduction)),
        };
        let (scheme, std, bias_value) = shape.init;
        if scheme == InitScheme::Normal && !(std.is_finite() && std >= 0.0) {
            return Err(ModelError::Invalid(format!(
                "model.init_std: must be ≥ 0, got {std}"
            )));
        }
        let widths: Vec<usize> = std::iter::once(shape.inputs)
            .chain(shape.hidden.iter().copied())
            .chain([outputs])
            .collect();
        let layers: Vec<(usize, usize)> = widths.windows(2).map(|w| (w[0], w[1])).collect();
        let mut specs = Vec::new();
        for (i, &(fan_in, fan_out)) in layers.iter().enumerate() {
            let output_layer = i + 1 == layers.len();
            let (w_init, b_init) = match scheme {
                _ if output_layer && shape.zero_output => {
                    (Init::Constant(0.0), Init::Constant(0.0))
                }
                InitScheme::Default => {
                    let bound = 1.0 / (fan_in as f64).sqrt();
                    (Init::Uniform { bound }, Init::Uniform { bound })
                }
                InitScheme::Normal => (Init::Normal { std }, Init::Constant(bias_value)),
                InitScheme::Xavier => {
                    let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
                    (Init::Uniform { bound }, Init::Constant(0.0))
                }
                InitScheme::Zeros => (Init::Constant(0.0), Init::Constant(0.0)),
            };
            // The MLP family keeps its original initialisation streams (position + 1), so that
            // its initial weights are those of every earlier run and test.
            specs.push(ParamSpec {
                name: format!("layers.{i}.weight"),
                shape: vec![fan_in, fan_out],
                init: w_init,
                stream: specs.len() as u64 + 1,
            });
            if shape.bias {
                specs.push(ParamSpec {
                    name: format!("layers.{i}.bias"),
                    shape: vec![fan_out],
                    init: b_init,
                    stream: specs.len() as u64 + 1,
                });
            }
        }
        Ok(Self {
            layers,
            bias: shape.bias,
            activation: shape.activation,
            output_activation: shape.output_activation,
            loss,
            specs,
        })
    }
}

impl Model for Mlp {
    fn param_specs(&self) -> &[ParamSpec] {
        &self.specs
    }

    fn predict(
        &self,
        params: &[Tensor<1>],
        _state: &[Tensor<1>],
        input: &Input,
        _cx: &Cx<'_>,
    ) -> Prediction {
        Prediction {
            outputs: self.outputs(params, input.rows()),
            new_state: None,
        }
    }

    fn loss(&self) -> Loss {
        self.loss
    }
}

impl Mlp {
    /// The outputs of rows `input` (`[batch, inputs]`) at weights `params`.
    pub fn outputs(&self, params: &[Tensor<1>], input: Tensor<2>) -> Tensor<2> {
        assert_eq!(
            params.len(),
            self.specs.len(),
            "parameter list does not fit the model"
        );
        let per_layer = if self.bias { 2 } else { 1 };
        let last = self.layers.len() - 1;
        let mut x = input;
        for (i, &(fan_in, fan_out)) in self.layers.iter().enumerate() {
            let w = params[i * per_layer].clone().reshape([fan_in, fan_out]);
            let activation = if i == last {
                self.output_activation
            } else {
                self.activation
            };
            x = if self.bias {
                // One fused layer on flex (steplab-kernels' `dense`), Burn's ops elsewhere.
                let b = params[i * per_layer + 1].clone();
                match activation {
                    Activation::Relu => steplab_kernels::dense(x, w, b, true),
                    other => other.apply(steplab_kernels::dense(x, w, b, false)),
                }
            } else {
                activation.apply(x.matmul(w))
            };
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_device;
    use crate::{ModelConfig, init_params};
    use burn::tensor::{DType, TensorData};

    fn parse(text: &str) -> ModelConfig {
        toml::from_str(text).unwrap()
    }

    fn noise(d: &burn::tensor::Device) -> crate::StepNoise {
        crate::StepNoise::new(0, 1, d, DType::F64)
    }

    fn eval_cx(noise: &crate::StepNoise) -> Cx<'_> {
        Cx {
            mode: crate::Mode::Eval,
            noise,
        }
    }

    #[test]
    fn lossgrad_mnist_mlp_has_573910_parameters() {
        let m = parse("kind = \"mlp\"")
            .build(784, Task::Classification { classes: 10 })
            .unwrap();
        assert_eq!(m.num_params(), 573_910);
    }

    #[test]
    fn lossgrad_fashion_autoencoder_has_365034_parameters() {
        let m = parse("kind = \"autoencoder\"")
            .build(784, Task::Reconstruction)
            .unwrap();
        assert_eq!(m.num_params(), 365_034);
    }

    #[test]
    fn other_paper_mlps_have_their_published_counts() {
        let l4 = parse("kind = \"mlp\"\nhidden = [300, 100]");
        assert_eq!(
            l4.build(784, Task::Classification { classes: 10 })
                .unwrap()
                .num_params(),
            266_610
        );
        let tlr = parse("kind = \"mlp\"\nhidden = [1000]");
        assert_eq!(
            tlr.build(784, Task::Classification { classes: 10 })
                .unwrap()
                .num_params(),
            795_010
        );
    }

    #[test]
    fn linear_model_counts_and_bias_switch() {
        let with = parse("kind = \"linear\"")
            .build(13, Task::Regression { outputs: 1 })
            .unwrap();
        assert_eq!(with.num_params(), 14);
        let without = parse("kind = \"linear\"\nbias = false")
            .build(784, Task::Classification { classes: 10 })
            .unwrap();
        assert_eq!(without.num_params(), 7_840);
    }

    #[test]
    fn linear_forward_is_x_w_plus_b() {
        let d = test_device();
        let m = parse("kind = \"linear\"")
            .build(2, Task::Regression { outputs: 1 })
            .unwrap();
        let w = Tensor::from_data(TensorData::new(vec![2.0, -1.0], [2]), (&d, DType::F64));
        let b = Tensor::from_data(TensorData::new(vec![0.5], [1]), (&d, DType::F64));
        let x = Tensor::from_data(
            TensorData::new(vec![1.0, 1.0, 3.0, 2.0], [2, 2]),
            (&d, DType::F64),
        );
        let y = m
            .predict(&[w, b], &[], &Input::Features(x), &eval_cx(&noise(&d)))
            .outputs
            .into_data()
            .try_into_vec_as::<f64>()
            .unwrap();
        assert_eq!(y, vec![1.5, 4.5]);
    }

    #[test]
    fn zeros_init_zeroes_every_parameter() {
        let m = parse("kind = \"linear\"\ninit = \"zeros\"")
            .build(3, Task::Classification { classes: 4 })
            .unwrap();
        let params = init_params(m.param_specs(), 0, &test_device(), DType::F64);
        for p in params {
            assert!(
                p.into_data()
                    .try_into_vec_as::<f64>()
                    .unwrap()
                    .iter()
                    .all(|x| *x == 0.0)
            );
        }
    }

    #[test]
    fn l4_mnist_net_starts_with_a_zero_output_layer() {
        let model = parse(
            "kind = \"mlp\"\nhidden = [300, 100]\ninit = \"xavier\"\nzero_output_layer = true",
        )
        .build(784, Task::Classification { classes: 10 })
        .unwrap();
        assert_eq!(model.num_params(), 266_610);
        let inits: Vec<Init> = model.param_specs().iter().map(|s| s.init.clone()).collect();
        let bound = (6.0 / (784.0 + 300.0_f64)).sqrt();
        assert_eq!(inits[0], Init::Uniform { bound });
        assert_eq!(inits[4], Init::Constant(0.0));
        assert_eq!(inits[5], Init::Constant(0.0));
    }

    #[test]
    fn bad_regression_is_w1_w2_x_with_96_parameters() {
        let model = parse("kind = \"bad_regression\"")
            .build(6, Task::Regression { outputs: 10 })
            .unwrap();
        assert_eq!(model.num_params(), 96);
        assert_eq!(model.loss(), Loss::SquaredError(Reduction::Sum));
        let shapes: Vec<_> = model
            .param_specs()
            .iter()
            .map(|s| s.shape.clone())
            .collect();
        assert_eq!(shapes, vec![vec![6, 6], vec![6, 10]]);
        assert!(
            model
                .param_specs()
                .iter()
                .all(|s| s.init == Init::Normal { std: 1.0 })
        );
        assert!(
            parse("kind = \"bad_regression\"")
                .build(6, Task::Classification { classes: 10 })
                .is_err()
        );
    }

    /// Inputs over −30..30, most of them not representable in f32.
    fn inputs() -> Vec<f64> {
        let mut xs: Vec<f64> = (0..=240)
            .map(|i| -30.0 + 0.25 * f64::from(i) + 0.1)
            .collect();
        xs.extend([
            0.0,
            1.0 / 3.0,
            -2.0 / 3.0,
            1e-3,
            -1e-9,
            7.123_456_789,
            -17.3,
            29.9,
        ]);
        xs
    }

    /// A column `[n, 1]` of f64 values on the ndarray device.
    fn column(xs: &[f64]) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(xs.to_vec(), [xs.len(), 1]),
            (&test_device(), DType::F64),
        )
    }

    fn host_sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// Asserts `got` equals `want` to `rel` relative error, element by element (exactly for 0).
    fn assert_close(what: &str, xs: &[f64], got: &[f64], want: &[f64], rel: f64) {
        assert_eq!(got.len(), want.len(), "{what}");
        for ((x, g), w) in xs.iter().zip(got).zip(want) {
            assert!(
                (g - w).abs() <= rel * w.abs(),
                "{what}({x}): got {g:e}, want {w:e}, relative error {:e}",
                ((g - w) / w).abs()
            );
        }
    }

    #[test]
    fn every_activation_is_f64_accurate_on_ndarray() {
        let xs = inputs();
        for activation in [
            Activation::Relu,
            Activation::Tanh,
            Activation::Sigmoid,
            Activation::Identity,
        ] {
            // Exhaustive: a new activation must be added here.
            let f: fn(f64) -> f64 = match activation {
                Activation::Relu => |x| x.max(0.0),
                Activation::Tanh => f64::tanh,
                Activation::Sigmoid => host_sigmoid,
                Activation::Identity => |x| x,
            };
            let y = activation.apply(column(&xs));
            assert_eq!(y.dtype(), DType::F64);
            let got = y.into_data().try_into_vec_as::<f64>().unwrap();
            let want: Vec<f64> = xs.iter().map(|&x| f(x)).collect();
            assert_close(&format!("{activation:?}"), &xs, &got, &want, 1e-14);
        }
    }

    #[test]
    fn the_autoencoder_sigmoid_output_is_f64_accurate_on_ndarray() {
        // 1 → 1 → 1 with unit weights and zero biases: the output is σ(x), the pre-activations
        // exact.
        let model = parse("kind = \"autoencoder\"\nhidden = [1]\nactivation = \"identity\"")
            .build(1, Task::Reconstruction)
            .unwrap();
        let d = test_device();
        let param = |v: f64| Tensor::from_data(TensorData::new(vec![v], [1]), (&d, DType::F64));
        let params = [param(1.0), param(0.0), param(1.0), param(0.0)];
        let xs = inputs();
        let got = model
            .predict(
                &params,
                &[],
                &Input::Features(column(&xs)),
                &eval_cx(&noise(&d)),
            )
            .outputs
            .into_data()
            .try_into_vec_as::<f64>()
            .unwrap();
        let want: Vec<f64> = xs.iter().map(|&x| host_sigmoid(x)).collect();
        assert_close("autoencoder output", &xs, &got, &want, 1e-14);
    }

    #[test]
    fn the_sigmoid_gradient_is_f64_accurate_and_finite_at_extremes() {
        let xs = inputs();
        let x = column(&xs).autodiff().require_grad();
        let grads = sigmoid(x.clone()).sum().backward();
        let got = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_into_vec_as::<f64>()
            .unwrap();
        // σ(1 − σ), written σ(x)·σ(−x) so the host side does not cancel for large x.
        let want: Vec<f64> = xs
            .iter()
            .map(|&x| host_sigmoid(x) * host_sigmoid(-x))
            .collect();
        assert_close("sigmoid'", &xs, &got, &want, 1e-12);

        let extremes = [-1e4, -745.0, -710.0, -700.0, 40.0, 710.0, 1e4];
        let x = column(&extremes).autodiff().require_grad();
        let y = sigmoid(x.clone());
        let values = y.clone().into_data().try_into_vec_as::<f64>().unwrap();
        let grads = y.sum().backward();
        let grad = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_into_vec_as::<f64>()
            .unwrap();
        for ((x, v), g) in extremes.iter().zip(values).zip(grad) {
            assert!((0.0..=1.0).contains(&v), "σ({x}) = {v}");
            assert!(g.is_finite() && (0.0..1e-17).contains(&g), "σ'({x}) = {g}");
        }
    }

    #[test]
    fn unknown_model_keys_are_rejected() {
        let err = toml::from_str::<ModelConfig>("kind = \"mlp\"\nwidth = 3").unwrap_err();
        assert!(err.to_string().contains("width"), "{err}");
    }
}
