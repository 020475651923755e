use burn::tensor::{DType, Tensor, TensorData};

use crate::layers::gradcheck::{data, noise, values};
use crate::vision::testing::directional_derivative_matches;
use crate::{
    Cx, Input, InputShape, Mode, Model, ModelConfig, StepNoise, Target, Task, init_params,
    init_state, test_device,
};

fn build(toml_text: &str, input: [usize; 3]) -> Box<dyn Model> {
    let config: ModelConfig = toml::from_str(toml_text).expect("the test config parses");
    config
        .build(InputShape::Image(input), Task::Reconstruction)
        .expect("the model builds")
}

fn small() -> Box<dyn Model> {
    build(
        "kind = \"wae_mmd\"\nwidth = 2\nz_dim = 3\nlambda = 7.0\nprior_variance = 2.0",
        [3, 16, 16],
    )
}

/// A batch of `n` images with pixels in (−1, 1), as input and as reconstruction target.
fn batch(n: usize, [c, h, w]: [usize; 3], seed: u64) -> (Input, Target, Vec<f64>) {
    let d = test_device();
    let pixels = data(seed, n * c * h * w);
    let x = Tensor::from_data(
        TensorData::new(pixels.clone(), [n, c, h, w]),
        (&d, DType::F64),
    );
    let rows = x.clone().reshape([n, c * h * w]);
    (Input::Images(x), Target::Values(rows), pixels)
}

#[test]
fn the_celeba_network_has_the_papers_parameter_count() {
    let model = build("kind = \"wae_mmd\"", [3, 64, 64]);
    assert_eq!(model.num_params(), 39_742_531);
    assert_eq!(model.loss_parts(), ["reconstruction", "mmd"]);
    // 7 batch norms, each with a running mean and variance.
    assert_eq!(model.state_specs().len(), 14);
    let names: Vec<&str> = model
        .param_specs()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert!(names.contains(&"decoder.deconv0.weight"));
    let deconv = &model.param_specs()[names
        .iter()
        .position(|n| *n == "decoder.deconv0.weight")
        .unwrap()];
    assert_eq!(deconv.shape, [1024, 512, 5, 5], "[c_in, c_out, k, k]");
}

#[test]
fn the_objective_is_the_summed_reconstruction_plus_lambda_times_the_mmd() {
    let model = small();
    let d = test_device();
    let params = init_params(model.param_specs(), 3, &d, DType::F64);
    let state = init_state(model.state_specs(), 0, &d, DType::F64);
    let (x, y, pixels) = batch(4, [3, 16, 16], 9);
    let noise = noise();
    let cx = Cx {
        mode: Mode::Train,
        noise: &noise,
    };
    let f = model.forward(&params, &state, &x, &y, &cx);
    let outputs = values(f.outputs.clone());
    assert_eq!(f.outputs.dims(), [4, 3 * 16 * 16]);
    assert!(outputs.iter().all(|v| v.abs() < 1.0), "tanh range");
    let direct: f64 = outputs
        .iter()
        .zip(&pixels)
        .map(|(o, p)| (o - p).powi(2))
        .sum::<f64>()
        / 4.0;
    let parts: Vec<f64> = f.parts.iter().map(|p| values(p.clone())[0]).collect();
    assert!(
        (parts[0] - direct).abs() < 1e-10 * direct,
        "{parts:?} vs {direct}"
    );
    let loss = values(f.loss)[0];
    assert!((loss - (parts[0] + 7.0 * parts[1])).abs() < 1e-10 * loss);
    assert!(parts[1].is_finite() && parts[1] != 0.0);
    assert_eq!(
        f.new_state.map(|s| s.len()),
        Some(14),
        "Train returns the BN state"
    );
}

#[test]
fn a_probe_at_the_steps_own_weights_reproduces_its_loss_and_other_steps_draw_other_priors() {
    let model = small();
    let d = test_device();
    let params = init_params(model.param_specs(), 3, &d, DType::F64);
    let state = init_state(model.state_specs(), 0, &d, DType::F64);
    let (x, y, _) = batch(5, [3, 16, 16], 10);
    let run = |noise: &StepNoise, mode| {
        let cx = Cx { mode, noise };
        let f = model.forward(&params, &state, &x, &y, &cx);
        let parts: Vec<f64> = f.parts.iter().map(|p| values(p.clone())[0]).collect();
        (values(f.loss)[0], parts, f.new_state.is_some())
    };
    let step = StepNoise::new(11, 4, &d, DType::F64);
    let (train, train_parts, train_state) = run(&step, Mode::Train);
    let (probe, probe_parts, probe_state) = run(&step, Mode::Probe);
    assert_eq!(
        train, probe,
        "the same batch statistics and prior draws, bit for bit"
    );
    assert_eq!(train_parts, probe_parts);
    assert!(train_state && !probe_state);
    // The same weights at another step: the reconstruction is the same, the prior draws (so the
    // MMD) are not.
    let (_, next_parts, _) = run(&StepNoise::new(11, 5, &d, DType::F64), Mode::Probe);
    assert_eq!(next_parts[0], train_parts[0]);
    assert_ne!(next_parts[1], train_parts[1]);
}

#[test]
fn the_whole_objective_has_the_central_difference_directional_derivative() {
    let model = build(
        "kind = \"wae_mmd\"\nwidth = 1\nz_dim = 2\nlambda = 50.0",
        [2, 16, 16],
    );
    let (x, y, _) = batch(3, [2, 16, 16], 12);
    directional_derivative_matches(model.as_ref(), &x, &y, 5);
}

#[test]
fn samples_decode_prior_draws_in_eval_mode() {
    let model = small();
    let d = test_device();
    let params = init_params(model.param_specs(), 3, &d, DType::F64);
    let state = init_state(model.state_specs(), 0, &d, DType::F64);
    let noise = noise();
    let cx = Cx {
        mode: Mode::Train,
        noise: &noise,
    };
    let a = model
        .sample(&params, &state, 6, &cx)
        .expect("a generative model");
    assert_eq!(a.dims(), [6, 3, 16, 16]);
    let a = values(a);
    assert!(a.iter().all(|v| v.abs() < 1.0));
    let again = values(model.sample(&params, &state, 6, &cx).unwrap());
    assert_eq!(a, again, "the same draws for the same step");
    let mut first = a.clone();
    first.truncate(3 * 16 * 16);
    assert_ne!(
        first,
        a[3 * 16 * 16..2 * 3 * 16 * 16].to_vec(),
        "different samples"
    );
}

#[test]
fn bad_settings_and_data_are_refused_naming_the_key() {
    let config: ModelConfig = toml::from_str("kind = \"wae_mmd\"").unwrap();
    let refused = |input: InputShape, task: Task| match config.build(input, task) {
        Ok(_) => panic!("{input:?} {task:?} accepted"),
        Err(e) => e.to_string(),
    };
    let e = refused(InputShape::Image([1, 28, 28]), Task::Reconstruction);
    assert!(e.contains("multiples of 16") && e.contains("28×28"), "{e}");
    let e = refused(InputShape::Features(784), Task::Reconstruction);
    assert!(e.contains("wae_mmd"), "{e}");
    let e = refused(
        InputShape::Image([3, 64, 64]),
        Task::Classification { classes: 10 },
    );
    assert!(e.contains("autoencoder"), "{e}");
    for (text, key) in [
        ("lambda = -1.0", "model.lambda"),
        ("prior_variance = 0.0", "model.prior_variance"),
        ("width = 0", "model.width"),
    ] {
        let c: ModelConfig = toml::from_str(&format!("kind = \"wae_mmd\"\n{text}")).unwrap();
        let e = c
            .build(InputShape::Image([3, 64, 64]), Task::Reconstruction)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains(key), "{e}");
    }
    let e = toml::from_str::<ModelConfig>("kind = \"wae_mmd\"\nlamda = 1.0").unwrap_err();
    assert!(e.to_string().contains("lamda"), "{e}");
}
