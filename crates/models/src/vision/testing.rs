//! Test helpers shared by the image models.

use burn::tensor::{DType, Tensor, TensorData};

use crate::layers::gradcheck::{data, noise, values};
use crate::{
    Cx, Input, InputShape, Mode, Model, ModelConfig, ModelError, Target, Task, init_params,
    init_state, test_device,
};

/// A model from its `[model]` TOML for a `classes`-way classification of `input`.
pub(crate) fn build(
    toml_text: &str,
    input: InputShape,
    classes: usize,
) -> Result<Box<dyn Model>, ModelError> {
    let config: ModelConfig = toml::from_str(toml_text).expect("the test config parses");
    config.build(input, Task::Classification { classes })
}

/// CIFAR's 3×32×32 images.
pub(crate) fn cifar10() -> InputShape {
    InputShape::Image([3, 32, 32])
}

fn batch(dims: [usize; 4], classes: usize) -> (Input, Target) {
    let d = test_device();
    let n = dims.iter().product();
    let x = Tensor::from_data(TensorData::new(data(21, n), dims), (&d, DType::F64));
    let b = dims[0];
    let onehot: Vec<f64> = (0..b * classes)
        .map(|i| f64::from(u8::from(i % classes == (i / classes) % classes)))
        .collect();
    let y = Tensor::from_data(TensorData::new(onehot, [b, classes]), (&d, DType::F64));
    (Input::Images(x), Target::OneHot(y))
}

/// Asserts an Eval pass maps a batch `dims` to finite `[batch, classes]` logits.
pub(crate) fn outputs_shape(model: &dyn Model, dims: [usize; 4], classes: usize) {
    let d = test_device();
    let params = init_params(model.param_specs(), 1, &d, DType::F64);
    let state = init_state(model.state_specs(), 0, &d, DType::F64);
    let (x, _) = batch(dims, classes);
    let noise = noise();
    let cx = Cx {
        mode: Mode::Eval,
        noise: &noise,
    };
    let p = model.predict(&params, &state, &x, &cx);
    assert_eq!(p.outputs.dims(), [dims[0], classes]);
    assert!(p.new_state.is_none(), "Eval returns no state");
    assert!(values(p.outputs).iter().all(|v| v.is_finite()));
}

/// Asserts that a Probe pass gives exactly the Train pass's loss at the same weights and step
/// noise (same batch statistics, same dropout masks) and returns no state, and that the Train
/// pass returns new state exactly when the model has state.
pub(crate) fn probe_equals_train(model: &dyn Model, dims: [usize; 4], classes: usize) {
    let d = test_device();
    let params = init_params(model.param_specs(), 1, &d, DType::F64);
    let state = init_state(model.state_specs(), 0, &d, DType::F64);
    let (x, y) = batch(dims, classes);
    let noise = noise();
    let run = |mode| {
        let cx = Cx {
            mode,
            noise: &noise,
        };
        model.forward(&params, &state, &x, &y, &cx)
    };
    let train = run(Mode::Train);
    let probe = run(Mode::Probe);
    let train_loss = values(train.loss)[0];
    assert!(train_loss.is_finite());
    assert_eq!(train_loss, values(probe.loss)[0], "probe loss = train loss");
    assert!(
        probe.new_state.is_none(),
        "a probe leaves the state untouched"
    );
    match train.new_state {
        Some(new_state) => {
            assert!(!state.is_empty());
            assert_eq!(new_state.len(), state.len());
            // Running means move from 0 towards the batch means.
            assert_ne!(values(new_state[0].clone()), values(state[0].clone()));
        }
        None => assert!(
            state.is_empty(),
            "a Train pass of a model with state returns it"
        ),
    }
}

/// The error message of a build that must fail.
pub(crate) fn refused(toml_text: &str, input: InputShape, classes: usize) -> String {
    match build(toml_text, input, classes) {
        Ok(_) => panic!("{toml_text} was accepted"),
        Err(err) => err.to_string(),
    }
}

/// Asserts that the autodiff gradient of the Train-pass loss (batch statistics, the step's
/// dropout masks) has the central-difference directional derivative along a random direction:
/// ⟨∇L, v⟩ = (L(θ + hv) − L(θ − hv)) / 2h to a relative 1e-6, end to end through the model.
pub(crate) fn gradient_matches_central_difference(
    model: &dyn Model,
    dims: [usize; 4],
    classes: usize,
) {
    let (x, y) = batch(dims, classes);
    directional_derivative_matches(model, &x, &y, 1);
}

/// The check of [`gradient_matches_central_difference`] on a given batch, at the weights of
/// seed `seed`: the whole objective's gradient along a random direction against its central
/// difference.
pub(crate) fn directional_derivative_matches(model: &dyn Model, x: &Input, y: &Target, seed: u64) {
    let d = test_device();
    let params = init_params(model.param_specs(), seed, &d, DType::F64);
    let state = init_state(model.state_specs(), 0, &d, DType::F64);
    let noise = noise();
    let loss = |params: &[Tensor<1>]| {
        let cx = Cx {
            mode: Mode::Train,
            noise: &noise,
        };
        model.forward(params, &state, x, y, &cx).loss
    };
    let tracked: Vec<Tensor<1>> = params
        .iter()
        .map(|p| p.clone().autodiff().require_grad())
        .collect();
    let grads = loss(&tracked).backward();
    let directions: Vec<Vec<f64>> = model
        .param_specs()
        .iter()
        .enumerate()
        .map(|(i, s)| data(100 + i as u64, s.numel()))
        .collect();
    let along: f64 = tracked
        .iter()
        .zip(&directions)
        .map(|(p, v)| {
            let g = values(p.grad(&grads).expect("every parameter has a gradient"));
            g.iter().zip(v).map(|(g, v)| g * v).sum::<f64>()
        })
        .sum();
    // A step of length 1e-6 whatever the parameter count, so that few ReLUs change side.
    let norm = directions
        .iter()
        .flatten()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt();
    let h = 1e-6 / norm;
    let shifted = |sign: f64| {
        let moved: Vec<Tensor<1>> = params
            .iter()
            .zip(&directions)
            .map(|(p, v)| {
                let moved: Vec<f64> = values(p.clone())
                    .iter()
                    .zip(v)
                    .map(|(p, v)| p + sign * h * v)
                    .collect();
                Tensor::from_data(TensorData::new(moved, [v.len()]), (&d, DType::F64))
            })
            .collect();
        values(loss(&moved))[0]
    };
    let central = (shifted(1.0) - shifted(-1.0)) / (2.0 * h);
    assert!(
        (along - central).abs() <= 1e-6 * central.abs().max(1e-3),
        "⟨∇L, v⟩ = {along:e}, central difference {central:e}"
    );
}
