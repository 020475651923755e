//! `kind = "bilstm"`: the IMDb sentiment model of LossGrad (Wójcik et al.), Table 5 and App. A.
//!
//! ```text
//! token ids [B, T] → embedding (GloVe 6B, 100-d) [B, T, 100]
//!   → one bidirectional LSTM layer, 256 units per direction
//!   → the final state of each direction at the review's real length, concatenated [B, 512]
//!   → FC 512 → 1: one logit, binary cross-entropy with logits
//! ```
//!
//! App. A: "a pretrained embedding layer, trained with GloVe algorithm on 6 billion tokens …
//! Its 100 element output was fed to 1 layer of bidirectional LSTM with 256 hidden units for each
//! direction. The final linear layer transformed that to scalar output." The LSTM has PyTorch's
//! gate layout with two bias vectors ([`BiLstm`](crate::layers::BiLstm)), so the trained parameters without the
//! embedding are PyTorch's count, 733,697. The paper does not say whether the embedding was
//! frozen: `freeze_embedding = true` (default) keeps it as model state, outside every optimizer
//! (no norm, inner product or update sees it); `false` trains it. Vocabulary words without a
//! GloVe vector start at zero (`unknown_std = 0`, default) or N(0, σ²); `embedding = "random"`
//! starts every row N(0, 1), as PyTorch's `nn.Embedding`. Initialisation otherwise as PyTorch:
//! LSTM tensors U(±1/√256), the FC layer U(±1/√512).

use std::sync::Arc;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::layers::{BiLstm, Builder, Dense, Embedding, Pass, Specs};
use crate::{
    Cx, Init, Input, InputShape, Loss, Model, ModelError, ParamSpec, Prediction, PretrainedTable,
    StateSpec, Task,
};

/// Where the embedding's initial rows come from (`model.embedding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingSource {
    /// GloVe 6B vectors of the vocabulary's words (loaded by the trainer from `data.root`).
    #[default]
    Glove,
    /// N(0, 1) rows, PyTorch's `nn.Embedding` default.
    Random,
}

/// `kind = "bilstm"` (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BilstmConfig {
    /// Where the embedding starts: `"glove"` (default) or `"random"`.
    #[serde(default)]
    pub embedding: EmbeddingSource,
    /// Width of the embedding: 100 (default; GloVe 6B also has 50, 200, 300).
    #[serde(default = "BilstmConfig::default_dim")]
    pub embedding_dim: usize,
    /// Keep the embedding fixed (default true): model state, not a trained parameter.
    #[serde(default = "BilstmConfig::default_freeze")]
    pub freeze_embedding: bool,
    /// Standard deviation of the starting rows of words without a GloVe vector (default 0:
    /// zeros).
    #[serde(default)]
    pub unknown_std: f64,
    /// LSTM units per direction (default 256).
    #[serde(default = "BilstmConfig::default_hidden")]
    pub hidden: usize,
}

impl Default for BilstmConfig {
    fn default() -> Self {
        Self {
            embedding: EmbeddingSource::default(),
            embedding_dim: Self::default_dim(),
            freeze_embedding: Self::default_freeze(),
            unknown_std: 0.0,
            hidden: Self::default_hidden(),
        }
    }
}

impl BilstmConfig {
    fn default_dim() -> usize {
        100
    }
    fn default_freeze() -> bool {
        true
    }
    fn default_hidden() -> usize {
        256
    }

    /// Builds the model for token sequences of `input` and a two-class `task`, its embedding
    /// from `pretrained` (`vocab_size` rows of `embedding_dim`; required for `"glove"`).
    pub fn build(
        &self,
        input: InputShape,
        task: Task,
        pretrained: Option<&PretrainedTable>,
    ) -> Result<Bilstm, ModelError> {
        let invalid = |m: String| Err(ModelError::Invalid(m));
        let InputShape::Tokens { vocab_size, .. } = input else {
            return invalid(
                "model.kind: bilstm reads token sequences (data.dataset = \"imdb\"), but the \
                 dataset gives rows or images"
                    .into(),
            );
        };
        if task != (Task::Classification { classes: 2 }) {
            return invalid(
                "model.kind: bilstm predicts one logit and needs a two-class dataset".into(),
            );
        }
        if self.embedding_dim == 0 || self.hidden == 0 {
            return invalid("model.embedding_dim and model.hidden must be at least 1".into());
        }
        if !(self.unknown_std.is_finite() && self.unknown_std >= 0.0) {
            return invalid(format!(
                "model.unknown_std must be a non-negative number, got {}",
                self.unknown_std
            ));
        }
        let init = match self.embedding {
            EmbeddingSource::Random => Init::Normal { std: 1.0 },
            EmbeddingSource::Glove => {
                let Some(table) = pretrained else {
                    return invalid(
                        "model.embedding = \"glove\" needs the GloVe vectors of the dataset's \
                         vocabulary"
                            .into(),
                    );
                };
                if table.rows() != vocab_size || table.dim != self.embedding_dim {
                    return invalid(format!(
                        "model.embedding_dim: the GloVe table is {} × {}, the model needs {} × {}",
                        table.rows(),
                        table.dim,
                        vocab_size,
                        self.embedding_dim
                    ));
                }
                Init::Pretrained(Arc::new(PretrainedTable {
                    missing_std: self.unknown_std,
                    ..table.clone()
                }))
            }
        };
        let (e, h) = (self.embedding_dim, self.hidden);
        let mut b = Builder::new();
        let embedding = Embedding::new(
            &mut b,
            "embedding",
            vocab_size,
            e,
            init,
            !self.freeze_embedding,
        );
        let lstm = BiLstm::new(&mut b, "lstm", e, h);
        let fc_init = Init::torch_default(2 * h);
        let fc = Dense::new(&mut b, "fc", 2 * h, 1, fc_init.clone(), Some(fc_init));
        Ok(Bilstm {
            specs: b.finish(),
            embedding,
            lstm,
            fc,
        })
    }
}

/// LossGrad's IMDb BiLSTM (see the module docs).
#[derive(Debug, Clone)]
pub struct Bilstm {
    specs: Specs,
    embedding: Embedding,
    lstm: BiLstm,
    fc: Dense,
}

impl Model for Bilstm {
    fn param_specs(&self) -> &[ParamSpec] {
        &self.specs.params
    }

    fn state_specs(&self) -> &[StateSpec] {
        &self.specs.state
    }

    /// # Panics
    /// If the input is not token ids (the model was built for a token dataset).
    fn predict(
        &self,
        params: &[Tensor<1>],
        state: &[Tensor<1>],
        input: &Input,
        cx: &Cx<'_>,
    ) -> Prediction {
        let (ids, mask) = input.tokens().expect("bilstm reads token ids");
        let pass = Pass::new(&self.specs, params, state, cx);
        let x = self.embedding.forward(&pass, ids);
        let outputs = self
            .fc
            .forward(&pass, self.lstm.final_states(&pass, x, mask));
        // No state changes in a pass: the frozen table is only read.
        Prediction {
            outputs,
            new_state: None,
        }
    }

    fn loss(&self) -> Loss {
        Loss::BinaryCrossEntropy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ModelConfig, StepNoise, init_params, init_state, test_device};
    use burn::tensor::{DType, Int, TensorData};

    fn shape(vocab_size: usize) -> InputShape {
        InputShape::Tokens {
            max_len: 8,
            vocab_size,
        }
    }

    fn binary() -> Task {
        Task::Classification { classes: 2 }
    }

    fn table(rows: usize, dim: usize) -> PretrainedTable {
        PretrainedTable {
            dim,
            values: (0..rows * dim).map(|i| (i as f32 * 0.37).sin()).collect(),
            found: (0..rows).map(|r| r % 3 != 1).collect(),
            missing_std: 0.0,
        }
    }

    fn config(text: &str) -> ModelConfig {
        toml::from_str(&format!("kind = \"bilstm\"\n{text}")).unwrap()
    }

    #[test]
    fn the_paper_model_has_733697_trained_parameters_besides_a_frozen_embedding() {
        let glove = table(25_000, 100);
        let m = config("")
            .build_with(shape(25_000), binary(), Some(&glove))
            .unwrap();
        assert_eq!(m.num_params(), 733_697);
        assert_eq!(m.state_specs().len(), 1);
        assert_eq!(m.state_specs()[0].shape, vec![25_000, 100]);
        let names: Vec<_> = m.param_specs().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "lstm.weight_ih_l0",
                "lstm.weight_hh_l0",
                "lstm.bias_ih_l0",
                "lstm.bias_hh_l0",
                "lstm.weight_ih_l0_reverse",
                "lstm.weight_hh_l0_reverse",
                "lstm.bias_ih_l0_reverse",
                "lstm.bias_hh_l0_reverse",
                "fc.weight",
                "fc.bias"
            ]
        );
        // Trained, the embedding is a parameter too.
        let m = config("freeze_embedding = false")
            .build_with(shape(25_000), binary(), Some(&glove))
            .unwrap();
        assert_eq!(m.num_params(), 733_697 + 2_500_000);
        assert!(m.state_specs().is_empty());
    }

    #[test]
    fn wrong_data_or_settings_are_refused_naming_the_key() {
        let glove = table(10, 4);
        let cases = [
            (
                config("embedding_dim = 4"),
                InputShape::Features(3),
                binary(),
                "bilstm",
            ),
            (
                config("embedding_dim = 4"),
                shape(10),
                Task::Classification { classes: 3 },
                "two-class",
            ),
            (config(""), shape(10), binary(), "model.embedding_dim"),
            (
                config("embedding_dim = 4\nunknown_std = -1"),
                shape(10),
                binary(),
                "unknown_std",
            ),
        ];
        for (c, input, task, needle) in cases {
            let err = c
                .build_with(input, task, Some(&glove))
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
        let err = config("")
            .build(shape(10), binary())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("GloVe"), "{err}");
        // Other models refuse token input.
        let mlp: ModelConfig = toml::from_str("kind = \"mlp\"").unwrap();
        let err = mlp.build(shape(10), binary()).err().unwrap().to_string();
        assert!(err.contains("bilstm"), "{err}");
    }

    fn run(m: &dyn Model, ids: &[i32], lengths: &[usize], steps: usize) -> Vec<f64> {
        let d = test_device();
        let params = init_params(m.param_specs(), 3, &d, DType::F64);
        let state = init_state(m.state_specs(), 3, &d, DType::F64);
        let b = lengths.len();
        let mask: Vec<f64> = lengths
            .iter()
            .flat_map(|&n| (0..steps).map(move |t| f64::from(u8::from(t < n))))
            .collect();
        let input = Input::Tokens {
            ids: Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), [b, steps]), &d),
            mask: Tensor::from_data(TensorData::new(mask, [b, steps]), (&d, DType::F64)),
        };
        let noise = StepNoise::new(3, 1, &d, DType::F64);
        let cx = Cx {
            mode: crate::Mode::Eval,
            noise: &noise,
        };
        let out = m.predict(&params, &state, &input, &cx).outputs;
        assert_eq!(out.dims(), [b, 1]);
        out.into_data().try_into_vec_as::<f64>().unwrap()
    }

    #[test]
    fn a_review_padded_to_twice_its_length_gives_the_same_logit() {
        let glove = table(12, 4);
        let m = config("embedding_dim = 4\nhidden = 3")
            .build_with(shape(12), binary(), Some(&glove))
            .unwrap();
        let review = [5, 2, 11, 7];
        let alone = run(m.as_ref(), &review, &[4], 4);
        let padded = run(m.as_ref(), &[5, 2, 11, 7, 0, 0, 0, 0], &[4], 8);
        assert_eq!(alone, padded);
        // In a batch beside a longer review, with other ids in its padding: the same again.
        let batch = run(
            m.as_ref(),
            &[5, 2, 11, 7, 9, 9, 9, 9, 1, 2, 3, 4, 5, 6, 7, 8],
            &[4, 8],
            8,
        );
        assert!(
            (batch[0] - alone[0]).abs() < 1e-14,
            "{} vs {}",
            batch[0],
            alone[0]
        );
        // The order of the tokens matters (a bag of words would not see it).
        let reversed = run(m.as_ref(), &[7, 11, 2, 5], &[4], 4);
        assert_ne!(reversed, alone);
    }
}
