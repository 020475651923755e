//! The `[optimizer]` section of a config: one variant per method, chosen by `kind`.

use serde::{Deserialize, Serialize};

use crate::api::StepSizeOptimizer;
use crate::*;

/// Declares [`OptimizerConfig`] from one line per method: variant, config type, `kind` name and
/// constructor, so a new method is registered in one place.
macro_rules! optimizers {
    ($($(#[doc = $doc:literal])* $variant:ident($config:ty) = $kind:literal => $build:expr;)*) => {
        /// Every optimizer this crate offers, by its `kind` name, with its own keys beside `lr`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind")]
        pub enum OptimizerConfig {
            $(
                $(#[doc = $doc])*
                #[serde(rename = $kind)]
                $variant($config),
            )*
        }

        impl OptimizerConfig {
            /// Every `kind` name, in the order of the README's optimizer table.
            pub const KINDS: &'static [&'static str] = &[$($kind),*];

            /// The method's `kind` name.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $kind,)*
                }
            }

            /// The initial step size (`optimizer.lr`).
            pub fn lr(&self) -> f64 {
                match self {
                    $(Self::$variant(c) => c.lr,)*
                }
            }

            /// Checks the settings; errors name the offending key.
            pub fn validate(&self) -> Result<(), OptimError> {
                match self {
                    $(Self::$variant(c) => c.validate(),)*
                }
            }

            /// Validates the settings and builds the optimizer.
            pub fn build(&self) -> Result<Box<dyn StepSizeOptimizer>, OptimError> {
                self.validate()?;
                Ok(match self {
                    $(Self::$variant(c) => Box::new(($build)(c)),)*
                })
            }
        }
    };
}

optimizers! {
    /// `kind = "sgd"`: SGD with optional momentum and weight decay ([`Sgd`]).
    Sgd(SgdConfig) = "sgd" => Sgd::new;
    /// `kind = "adam"`: Adam, PyTorch's form ([`Adam`]).
    Adam(AdamConfig) = "adam" => Adam::new;
    /// `kind = "adam_tf"`: Adam, TensorFlow's form ([`AdamTf`]).
    AdamTf(AdamTfConfig) = "adam_tf" => AdamTf::new;
    /// `kind = "rmsprop"`: RMSProp, PyTorch's form ([`RmsProp`]).
    RmsProp(RmsPropConfig) = "rmsprop" => RmsProp::new;
    /// `kind = "lossgrad"`: LossGrad, Alg. 1 ([`LossGrad`]).
    Lossgrad(LossGradConfig) = "lossgrad" => LossGrad::new;
    /// `kind = "gorti_ravaut"`: Gorti-Ravaut learning-rate adaptation ([`GortiRavaut`]).
    GortiRavaut(GortiRavautConfig) = "gorti_ravaut" => GortiRavaut::new;
    /// `kind = "l4mom"`: L4 on momentum ([`L4`]).
    L4Mom(L4MomConfig) = "l4mom" => L4::new;
    /// `kind = "l4adam"`: L4 on Adam ([`L4`]).
    L4Adam(L4AdamConfig) = "l4adam" => L4::new;
    /// `kind = "l4sgd"`: L4 on plain gradients ([`L4`]).
    L4Sgd(L4SgdConfig) = "l4sgd" => L4::new;
    /// `kind = "gd_tlr"`: Trainable Learning Rate on plain GD ([`GdTlr`]).
    GdTlr(GdTlrConfig) = "gd_tlr" => GdTlr::new;
    /// `kind = "sgd_tlr"`: Trainable Learning Rate on momentum SGD, Eq. 10 ([`SgdTlr`]).
    SgdTlr(SgdTlrConfig) = "sgd_tlr" => SgdTlr::new;
    /// `kind = "sgd_tlr_pl"`: per-layer Trainable Learning Rate ([`SgdTlrPerLayer`]).
    SgdTlrPl(SgdTlrConfig) = "sgd_tlr_pl" => SgdTlrPerLayer::new;
    /// `kind = "yellowfin"`: YellowFin, momentum SGD with tuned rate and momentum ([`YellowFin`]).
    YellowFin(YellowFinConfig) = "yellowfin" => YellowFin::new;
    /// `kind = "wngrad"`: WNGrad ([`WnGrad`]).
    WnGrad(WnGradConfig) = "wngrad" => WnGrad::new;
    /// `kind = "sgd_hd"`: SGD with hypergradient descent on the rate ([`SgdHd`]).
    SgdHd(SgdHdConfig) = "sgd_hd" => SgdHd::new;
    /// `kind = "adam_hd"`: Adam with hypergradient descent on the rate ([`AdamHd`]).
    AdamHd(AdamHdConfig) = "adam_hd" => AdamHd::new;
    /// `kind = "sps"`: stochastic Polyak step ([`Sps`]).
    Sps(SpsConfig) = "sps" => Sps::new;
    /// `kind = "sls"`: stochastic Armijo line search ([`Sls`]).
    Sls(SlsConfig) = "sls" => Sls::new;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::StepInput;
    use crate::testing::{Quadratic, device, values};
    use burn::tensor::{DType, Device, Tensor, TensorData};

    /// Every kind with its defaults, built.
    fn every_optimizer() -> Vec<Box<dyn StepSizeOptimizer>> {
        OptimizerConfig::KINDS
            .iter()
            .map(|kind| {
                let cfg: OptimizerConfig = toml::from_str(&format!("kind = \"{kind}\"")).unwrap();
                assert_eq!(cfg.kind(), *kind);
                let opt = cfg.build().unwrap();
                assert_eq!(opt.kind(), *kind);
                opt
            })
            .collect()
    }

    fn on(device: &Device, dtype: DType, values: &[f64]) -> Vec<Tensor<1>> {
        vec![Tensor::from_data(
            TensorData::new(values.to_vec(), [values.len()]),
            (device, dtype),
        )]
    }

    /// One step of every method on ½θᵀHθ at `theta`, with the given loss value.
    fn step_all(
        device: &Device,
        dtype: DType,
        theta: &[f64],
        loss: Option<f64>,
    ) -> Vec<(String, Vec<f64>, f64)> {
        let q = Quadratic::diagonal(vec![1.0, 4.0, 10.0]);
        every_optimizer()
            .into_iter()
            .map(|mut opt| {
                opt.begin_epoch(1, 10);
                let params = on(device, dtype, theta);
                let grads = on(device, dtype, &q.grad(theta));
                let mut probe = q.clone();
                let mut holdout = q.clone();
                let needs = opt.needs_holdout();
                let out = opt.step(StepInput {
                    params,
                    loss: loss.unwrap_or_else(|| q.loss(theta)),
                    grads,
                    probe: &mut probe,
                    holdout: needs.then_some(&mut holdout as &mut dyn crate::LossProbe),
                });
                assert_eq!(
                    out.diagnostics.len(),
                    opt.diagnostic_names().len(),
                    "{}",
                    opt.kind()
                );
                (opt.kind().to_string(), values(&out.params).concat(), out.lr)
            })
            .collect()
    }

    fn devices() -> Vec<(Device, DType)> {
        #[allow(unused_mut)]
        let mut all = vec![(device(), DType::F64), (device(), DType::F32)];
        #[cfg(feature = "flex")]
        all.push((Device::flex(), DType::F32));
        all
    }

    #[test]
    fn every_method_takes_a_finite_step_on_every_backend() {
        let theta = [1.0, -0.5, 0.25];
        for (device, dtype) in devices() {
            for (kind, params, _) in step_all(&device, dtype, &theta, None) {
                assert!(
                    params.iter().all(|v| v.is_finite()),
                    "{kind} on {device:?} {dtype:?}: {params:?}"
                );
            }
        }
    }

    #[test]
    fn every_method_survives_a_zero_gradient() {
        for (device, dtype) in devices() {
            for (kind, params, _) in step_all(&device, dtype, &[0.0; 3], None) {
                assert_eq!(params, vec![0.0; 3], "{kind} on {device:?} {dtype:?}");
            }
        }
    }

    #[test]
    fn every_method_keeps_nan_out_of_the_weights_on_a_non_finite_loss() {
        let theta = [1.0, -0.5, 0.25];
        for loss in [f64::NAN, f64::INFINITY] {
            for (kind, params, _) in step_all(&device(), DType::F64, &theta, Some(loss)) {
                assert!(
                    params.iter().all(|v| v.is_finite()),
                    "{kind}, loss {loss}: {params:?}"
                );
            }
        }
    }

    #[test]
    fn optimizer_config_parses_by_kind_with_defaults() {
        let cfg: OptimizerConfig = toml::from_str("kind = \"lossgrad\"\nlr = 0.1").unwrap();
        assert_eq!(
            cfg,
            OptimizerConfig::Lossgrad(LossGradConfig {
                lr: 0.1,
                c: 1.05,
                unmeasured: Unmeasured::Paper,
            })
        );
        let cfg: OptimizerConfig = toml::from_str("kind = \"sgd\"\nmomentum = 0.9").unwrap();
        assert_eq!(cfg.lr(), 0.01);
        assert_eq!(cfg.kind(), "sgd");
    }

    #[test]
    fn optimizer_config_rejects_unknown_keys_and_kinds() {
        let err =
            toml::from_str::<OptimizerConfig>("kind = \"lossgrad\"\nmomentum = 0.9").unwrap_err();
        assert!(err.to_string().contains("momentum"), "{err}");
        let err = toml::from_str::<OptimizerConfig>("kind = \"nope\"").unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn negative_learning_rate_is_rejected_naming_the_key() {
        let cfg: OptimizerConfig = toml::from_str("kind = \"adam\"\nlr = -1e-3").unwrap();
        let err = cfg.build().err().unwrap();
        assert!(err.to_string().contains("optimizer.lr"), "{err}");
    }
}
