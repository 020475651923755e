//! The `[optimizer]` section of a config: one variant per method, chosen by `kind`.

use serde::{Deserialize, Serialize};

use crate::OptimError;
use crate::adam::{Adam, AdamConfig};
use crate::api::StepSizeOptimizer;
use crate::lossgrad::{LossGrad, LossGradConfig};
use crate::sgd::{Sgd, SgdConfig};

/// Every optimizer this crate offers, by its `kind` name, with its own keys beside `lr`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerConfig {
    /// `kind = "sgd"`: SGD with optional momentum and weight decay ([`Sgd`]).
    Sgd(SgdConfig),
    /// `kind = "adam"`: Adam, PyTorch's form ([`Adam`]).
    Adam(AdamConfig),
    /// `kind = "lossgrad"`: LossGrad, Alg. 1 ([`LossGrad`]).
    Lossgrad(LossGradConfig),
}

impl OptimizerConfig {
    /// The method's `kind` name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sgd(_) => "sgd",
            Self::Adam(_) => "adam",
            Self::Lossgrad(_) => "lossgrad",
        }
    }

    /// The initial step size (`optimizer.lr`).
    pub fn lr(&self) -> f64 {
        match self {
            Self::Sgd(c) => c.lr,
            Self::Adam(c) => c.lr,
            Self::Lossgrad(c) => c.lr,
        }
    }

    /// Checks the settings; errors name the offending key.
    pub fn validate(&self) -> Result<(), OptimError> {
        match self {
            Self::Sgd(c) => c.validate(),
            Self::Adam(c) => c.validate(),
            Self::Lossgrad(c) => c.validate(),
        }
    }

    /// Validates the settings and builds the optimizer.
    pub fn build(&self) -> Result<Box<dyn StepSizeOptimizer>, OptimError> {
        self.validate()?;
        Ok(match self {
            Self::Sgd(c) => Box::new(Sgd::new(c)),
            Self::Adam(c) => Box::new(Adam::new(c)),
            Self::Lossgrad(c) => Box::new(LossGrad::new(c)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimizer_config_parses_by_kind_with_defaults() {
        let cfg: OptimizerConfig = toml::from_str("kind = \"lossgrad\"\nlr = 0.1").unwrap();
        assert_eq!(
            cfg,
            OptimizerConfig::Lossgrad(LossGradConfig { lr: 0.1, c: 1.05 })
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
