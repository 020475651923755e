//! The sequence models of the zoo: token ids in, built from [`crate::layers`].

mod bilstm;

pub use bilstm::{Bilstm, BilstmConfig, EmbeddingSource};
