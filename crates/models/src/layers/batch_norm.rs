//! Batch normalisation (Ioffe & Szegedy 2015) over `[batch, channels, h, w]`, with the mode made
//! explicit: composed from tensor ops so that autodiff differentiates through the batch
//! statistics, and so that nothing depends on the device (Burn's `nn::BatchNorm` does).
//!
//! As PyTorch's `BatchNorm2d` (eps 1e-5, momentum 0.1):
//! - `Train`: normalise with the batch mean and the *biased* batch variance over (batch, h, w);
//!   return running ← 0.9·running + 0.1·batch statistic, with the *unbiased* variance
//!   (×n/(n−1), n = batch·h·w) for the running variance.
//! - `Probe`: the same normalisation; the running statistics are left as they are.
//! - `Eval`: normalise with the running statistics.

use burn::tensor::Tensor;

use super::{Builder, ParamId, Pass, StateId};
use crate::{Init, Mode};

/// ε added to the variance (PyTorch's default).
pub const BN_EPS: f64 = 1e-5;

/// Weight of the batch statistic in the running average (PyTorch's default momentum).
pub const BN_MOMENTUM: f64 = 0.1;

/// A batch-norm layer: trained scale γ and shift β, running mean and variance as state.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    /// γ, `{name}.weight`, `[channels]`, starting at 1.
    pub gamma: ParamId,
    /// β, `{name}.bias`, `[channels]`, starting at 0.
    pub beta: ParamId,
    /// `{name}.running_mean`, starting at 0.
    pub running_mean: StateId,
    /// `{name}.running_var`, starting at 1.
    pub running_var: StateId,
    /// Number of channels.
    pub channels: usize,
}

impl BatchNorm {
    /// Registers γ = 1, β = 0 and the running statistics (mean 0, variance 1) under `name`
    /// (PyTorch's names: `weight`, `bias`, `running_mean`, `running_var`).
    pub fn new(b: &mut Builder, name: &str, channels: usize) -> Self {
        let c = vec![channels];
        Self {
            gamma: b.param(format!("{name}.weight"), c.clone(), Init::Constant(1.0)),
            beta: b.param(format!("{name}.bias"), c.clone(), Init::Constant(0.0)),
            running_mean: b.state(
                format!("{name}.running_mean"),
                c.clone(),
                Init::Constant(0.0),
            ),
            running_var: b.state(format!("{name}.running_var"), c, Init::Constant(1.0)),
            channels,
        }
    }

    /// Normalises `x` (`[batch, channels, h, w]`) as the pass's mode says (module docs); a
    /// `Train` pass records the new running statistics in `pass`.
    pub fn forward(&self, pass: &mut Pass<'_>, x: Tensor<4>) -> Tensor<4> {
        let [batch, c, h, w] = x.dims();
        assert_eq!(c, self.channels, "batch norm channels");
        let per_channel = |t: Tensor<1>| t.reshape([1, c, 1, 1]);
        let gamma = pass.param(self.gamma);
        let beta = pass.param(self.beta);
        match pass.mode() {
            Mode::Train | Mode::Probe => {
                let stats = steplab_kernels::batch_norm_batch_stats(x, gamma, beta, BN_EPS);
                if pass.mode() == Mode::Train {
                    self.update_running(pass, stats.mean, stats.var, batch * h * w);
                }
                stats.y
            }
            Mode::Eval => steplab_kernels::scale_and_shift(
                x.sub(per_channel(pass.state(self.running_mean))),
                per_channel(pass.state(self.running_var)),
                gamma,
                beta,
                BN_EPS,
            ),
        }
    }

    /// running ← (1 − m)·running + m·batch statistic, on plain data (no autodiff graph).
    fn update_running(&self, pass: &mut Pass<'_>, mean: Tensor<1>, var: Tensor<1>, n: usize) {
        // PyTorch's unbiased correction; a single value per channel has no spread to correct.
        let unbiased = if n > 1 {
            n as f64 / (n - 1) as f64
        } else {
            1.0
        };
        let mean = mean.inner();
        let var = var.inner().mul_scalar(unbiased);
        let blend = |running: Tensor<1>, batch: Tensor<1>| {
            running
                .inner()
                .mul_scalar(1.0 - BN_MOMENTUM)
                .add(batch.mul_scalar(BN_MOMENTUM))
        };
        let new_mean = blend(pass.state(self.running_mean), mean);
        let new_var = blend(pass.state(self.running_var), var);
        pass.update_state(self.running_mean, new_mean);
        pass.update_state(self.running_var, new_var);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Specs;
    use crate::layers::gradcheck::{
        assert_gradients_match, data, tensor, values, weigh, with_pass,
    };

    fn layer(channels: usize) -> (BatchNorm, Specs) {
        let mut b = Builder::new();
        let bn = BatchNorm::new(&mut b, "bn", channels);
        (bn, b.finish())
    }

    /// x [3, 2, 2, 2]: per channel 12 values.
    fn x() -> Vec<f64> {
        data(11, 3 * 2 * 2 * 2)
    }

    /// The values of channel `ch` of an `[n, 2, 2, 2]` batch.
    fn channel(x: &[f64], ch: usize) -> Vec<f64> {
        x.chunks(4)
            .enumerate()
            .filter(|(i, _)| i % 2 == ch)
            .flat_map(|(_, v)| v.to_vec())
            .collect()
    }

    fn mean_var(v: &[f64]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        (mean, v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n)
    }

    #[test]
    fn batch_norm_train_gradients_match_central_differences() {
        let (bn, specs) = layer(2);
        let state = [tensor(&[0.0, 0.0]), tensor(&[1.0, 1.0])];
        let inputs = vec![vec![1.5, 0.7], vec![0.1, -0.3], x()];
        let r = data(12, 24);
        assert_gradients_match("batch norm", &inputs, 1e-6, |t| {
            with_pass(&specs, &t[..2], &state, Mode::Train, |pass| {
                let y = bn.forward(pass, t[2].clone().reshape([3, 2, 2, 2]));
                weigh(y, &r)
            })
        });
    }

    #[test]
    fn train_normalises_with_batch_statistics_and_updates_running_ones_unbiased() {
        let (bn, specs) = layer(2);
        let (gamma, beta) = ([2.0, 0.5], [0.3, -1.0]);
        let params = [tensor(&gamma), tensor(&beta)];
        let state = [tensor(&[0.2, -0.1]), tensor(&[1.0, 1.0])];
        let xs = x();
        let (y, new_state) = with_pass(&specs, &params, &state, Mode::Train, |pass| {
            let y = bn.forward(pass, tensor(&xs).reshape([3, 2, 2, 2]));
            (values(y), pass.new_state().map(<[_]>::to_vec))
        });
        let new_state = new_state.expect("a Train pass returns new state");
        let (new_mean, new_var) = (values(new_state[0].clone()), values(new_state[1].clone()));
        for ch in 0..2 {
            let v = channel(&xs, ch);
            let (mean, var) = mean_var(&v);
            let unbiased = var * 12.0 / 11.0;
            assert!((new_var[ch] - (0.9 * 1.0 + 0.1 * unbiased)).abs() < 1e-15);
            let old_mean = [0.2, -0.1][ch];
            assert!((new_mean[ch] - (0.9 * old_mean + 0.1 * mean)).abs() < 1e-15);
            let got = channel(&y, ch);
            for (g, xv) in got.iter().zip(&v) {
                let want = (xv - mean) / (var + BN_EPS).sqrt() * gamma[ch] + beta[ch];
                assert!((g - want).abs() < 1e-13, "{g} vs {want}");
            }
        }
    }

    #[test]
    fn probe_uses_batch_statistics_and_returns_no_state() {
        let (bn, specs) = layer(2);
        let params = [tensor(&[2.0, 0.5]), tensor(&[0.3, -1.0])];
        let state = [tensor(&[0.2, -0.1]), tensor(&[3.0, 0.5])];
        let xs = x();
        let run = |mode| {
            with_pass(&specs, &params, &state, mode, |pass| {
                let y = values(bn.forward(pass, tensor(&xs).reshape([3, 2, 2, 2])));
                (y, pass.new_state().is_some())
            })
        };
        let (train, train_state) = run(Mode::Train);
        let (probe, probe_state) = run(Mode::Probe);
        assert_eq!(train, probe, "the same batch statistics, bit for bit");
        assert!(train_state && !probe_state);
    }

    #[test]
    fn eval_normalises_with_the_running_statistics() {
        let (bn, specs) = layer(2);
        let (gamma, beta) = ([2.0, 0.5], [0.3, -1.0]);
        let (mean, var) = ([0.2, -0.1], [3.0, 0.5]);
        let params = [tensor(&gamma), tensor(&beta)];
        let state = [tensor(&mean), tensor(&var)];
        let xs = x();
        let (y, new_state) = with_pass(&specs, &params, &state, Mode::Eval, |pass| {
            let y = values(bn.forward(pass, tensor(&xs).reshape([3, 2, 2, 2])));
            (y, pass.new_state().is_some())
        });
        assert!(!new_state);
        for ch in 0..2 {
            for (g, xv) in channel(&y, ch).iter().zip(channel(&xs, ch)) {
                let want = (xv - mean[ch]) / (var[ch] + BN_EPS).sqrt() * gamma[ch] + beta[ch];
                assert!((g - want).abs() < 1e-14, "{g} vs {want}");
            }
        }
    }
}
