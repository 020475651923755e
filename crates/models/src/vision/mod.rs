//! The image classifiers of the zoo (ALGORITHMS.md §6), built from [`crate::layers`].
//!
//! Each model needs images ([`InputShape::Image`]) and a classification task; [`image_input`]
//! and [`classes`] give the errors, naming `model.kind`, when the data is something else.

mod cifar_convnet;
mod lenet;
mod resnet;
mod resnet18;
mod wrn;

pub use cifar_convnet::{CifarConvnet, CifarConvnetConfig};
pub use lenet::{Lenet5, Lenet5Config};
pub use resnet::{CifarResnet, ResnetConfig, ResnetPresetConfig};
pub use resnet18::{Resnet18, Resnet18Config};
pub use wrn::{WideResnet, WrnConfig};

use burn::tensor::Tensor;

use crate::layers::{Pass, Specs};
use crate::{
    Cx, Input, InputShape, Loss, Model, ModelError, ParamSpec, Prediction, StateSpec, Task,
};

/// The `[channels, height, width]` of the dataset's samples, or an error naming `model.kind`
/// when the dataset gives feature rows.
pub(crate) fn image_input(kind: &str, input: InputShape) -> Result<[usize; 3], ModelError> {
    match input {
        InputShape::Image(shape) if shape.iter().all(|&n| n > 0) => Ok(shape),
        InputShape::Image([c, h, w]) => Err(ModelError::Invalid(format!(
            "model.kind: {kind} needs non-empty images, but the dataset's are {c}×{h}×{w}"
        ))),
        InputShape::Features(n) => Err(ModelError::Invalid(format!(
            "model.kind: {kind} is an image model and needs images [channels, height, width], \
             but the dataset gives rows of {n} features; use an image dataset (e.g. \
             data.dataset = \"cifar10\") or a fully connected model (kind = \"mlp\")"
        ))),
        InputShape::Tokens { .. } => Err(ModelError::Invalid(format!(
            "model.kind: {kind} is an image model and cannot read token sequences"
        ))),
    }
}

/// The number of classes of a classification task, or an error naming `model.kind`.
pub(crate) fn classes(kind: &str, task: Task) -> Result<usize, ModelError> {
    match task {
        Task::Classification { classes } if classes > 0 => Ok(classes),
        Task::Classification { .. } => Err(ModelError::Invalid(format!(
            "model.kind: {kind} needs at least one class"
        ))),
        Task::Regression { .. } | Task::Reconstruction => Err(ModelError::Invalid(format!(
            "model.kind: {kind} is a classifier and needs a classification dataset"
        ))),
    }
}

/// The batch as images `[batch, c, h, w]`; feature rows of c·h·w values are viewed as images
/// (C, H, W order), so a loader that flattens images still works.
///
/// # Panics
/// If rows do not hold c·h·w values (the model was built for another dataset).
pub(crate) fn images(input: &Input, [c, h, w]: [usize; 3]) -> Tensor<4> {
    match input {
        Input::Images(x) => x.clone(),
        Input::Features(x) => {
            let [b, f] = x.dims();
            assert_eq!(f, c * h * w, "rows do not hold {c}×{h}×{w} images");
            x.clone().reshape([b, c, h, w])
        }
        Input::Tokens { .. } => panic!("an image model was given token ids"),
    }
}

/// An image classifier of the zoo: its tensors and its logits from a batch of images. Every
/// such network is a [`Model`] through the one implementation below (cross-entropy loss, the
/// batch viewed as images, new running statistics collected from the pass).
pub(crate) trait ImageClassifier: Send + Sync {
    /// The network's parameters and state.
    fn specs(&self) -> &Specs;
    /// `[channels, height, width]` the network was built for.
    fn image_shape(&self) -> [usize; 3];
    /// The logits `[batch, classes]` of images `[batch, c, h, w]`.
    fn classify(&self, pass: &mut Pass<'_>, x: Tensor<4>) -> Tensor<2>;
}

impl<T: ImageClassifier> Model for T {
    fn param_specs(&self) -> &[ParamSpec] {
        &self.specs().params
    }

    fn state_specs(&self) -> &[StateSpec] {
        &self.specs().state
    }

    fn predict(
        &self,
        params: &[Tensor<1>],
        state: &[Tensor<1>],
        input: &Input,
        cx: &Cx<'_>,
    ) -> Prediction {
        let x = images(input, self.image_shape());
        predict_with(self.specs(), params, state, cx, |pass| {
            self.classify(pass, x)
        })
    }

    fn loss(&self) -> Loss {
        Loss::CrossEntropy
    }
}

/// Runs `body` on a [`Pass`] over the model's tensors and collects the new state.
pub(crate) fn predict_with(
    specs: &Specs,
    params: &[Tensor<1>],
    state: &[Tensor<1>],
    cx: &Cx<'_>,
    body: impl FnOnce(&mut Pass<'_>) -> Tensor<2>,
) -> Prediction {
    let mut pass = Pass::new(specs, params, state, cx);
    let outputs = body(&mut pass);
    Prediction {
        outputs,
        new_state: pass.into_new_state(),
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use crate::ModelConfig;

    #[test]
    fn every_image_kind_parses_and_names_itself() {
        for kind in [
            "lenet5",
            "resnet",
            "resnet20",
            "resnet32",
            "resnet56",
            "cifar_convnet",
            "resnet18",
            "wrn",
        ] {
            let config: ModelConfig = toml::from_str(&format!("kind = \"{kind}\"")).unwrap();
            assert_eq!(config.kind(), kind);
            assert!(!config.is_autoencoder());
            let written = toml::to_string(&config).unwrap();
            assert_eq!(
                toml::from_str::<ModelConfig>(&written).unwrap(),
                config,
                "{written}"
            );
        }
        let err = toml::from_str::<ModelConfig>("kind = \"lenet5\"\nwidth = 2").unwrap_err();
        assert!(err.to_string().contains("width"), "{err}");
    }
}
