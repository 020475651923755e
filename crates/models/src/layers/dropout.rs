//! Inverted dropout (Srivastava et al. 2014) with the step's own mask.
//!
//! `Train` and `Probe` multiply by the mask that [`StepNoise::dropout_mask`] draws for this
//! layer's site, the step and the activation's size: every pass of a step (the training pass and
//! each optimizer probe) drops the same units, and a resumed run redraws the same mask. `Eval`
//! is the identity. Masks are 0 or 1/(1 − p), so the expectation is kept (as PyTorch).
//!
//! [`StepNoise::dropout_mask`]: crate::StepNoise::dropout_mask

use burn::tensor::Tensor;

use super::Pass;
use crate::{Mode, ModelError};

/// A dropout layer at a named site (the key of its mask stream).
#[derive(Debug, Clone, PartialEq)]
pub struct Dropout {
    /// The mask's site, e.g. `fc1.dropout`.
    pub site: String,
    /// Probability of dropping a unit, in [0, 1); 0 makes the layer the identity.
    pub p: f64,
}

impl Dropout {
    /// A dropout layer at `site` with rate `p`, read from the config key `key` (for the error).
    pub fn new(site: impl Into<String>, p: f64, key: &str) -> Result<Self, ModelError> {
        check_rate(p, key)?;
        Ok(Self {
            site: site.into(),
            p,
        })
    }

    /// `x ⊙ mask` in `Train` and `Probe` passes, `x` in `Eval` or when p = 0.
    pub fn forward<const D: usize>(&self, pass: &Pass<'_>, x: Tensor<D>) -> Tensor<D> {
        if self.p == 0.0 || pass.mode() == Mode::Eval {
            return x;
        }
        let dims = x.dims();
        let mask = pass
            .noise()
            .dropout_mask(&self.site, dims.iter().product(), self.p);
        x.mul(mask.reshape(dims))
    }
}

/// Checks a dropout rate from config key `key`: finite, in [0, 1).
pub fn check_rate(p: f64, key: &str) -> Result<(), ModelError> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(ModelError::Invalid(format!(
            "{key}: a dropout rate must be in [0, 1), got {p}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{
        assert_gradients_match, data, noise, tensor, values, weigh, with_pass,
    };
    use crate::layers::{Builder, Specs};

    fn specs() -> Specs {
        Builder::new().finish()
    }

    #[test]
    fn dropout_gradients_match_central_differences_with_the_steps_mask() {
        let drop = Dropout::new("fc1.dropout", 0.5, "model.dropout").unwrap();
        let specs = specs();
        let r = data(2, 24);
        assert_gradients_match("dropout", &[data(1, 24)], 1e-6, |t| {
            with_pass(&specs, &[], &[], Mode::Train, |pass| {
                weigh(drop.forward(pass, t[0].clone().reshape([4, 6])), &r)
            })
        });
    }

    #[test]
    fn train_and_probe_apply_the_steps_mask_and_eval_none() {
        let drop = Dropout::new("fc1.dropout", 0.25, "model.dropout").unwrap();
        let specs = specs();
        let xs = data(3, 40);
        let run = |mode| {
            with_pass(&specs, &[], &[], mode, |pass| {
                values(drop.forward(pass, tensor(&xs).reshape([5, 8])))
            })
        };
        let mask = values(noise().dropout_mask("fc1.dropout", 40, 0.25));
        let masked: Vec<f64> = xs.iter().zip(&mask).map(|(x, m)| x * m).collect();
        assert_eq!(run(Mode::Train), masked);
        assert_eq!(run(Mode::Probe), masked);
        assert_eq!(run(Mode::Eval), xs);
        assert!(mask.contains(&0.0), "some units dropped");
    }

    #[test]
    fn rates_outside_zero_to_one_are_refused_naming_the_key() {
        for p in [-0.1, 1.0, f64::NAN] {
            let err = Dropout::new("d", p, "model.dropout").unwrap_err();
            assert!(err.to_string().starts_with("model.dropout:"), "{err}");
        }
    }
}
