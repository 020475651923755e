//! Datasets for steplab, on the host: no tensors, no Burn.
//!
//! The trainer asks this crate for [`Splits`] (MNIST and Fashion-MNIST through [`load_mnist`],
//! tabular data through [`load_csv`], seeded synthetic problems through [`bad_regression`]), holds out a validation set with [`split_validation`], and
//! each epoch walks [`batches`] of an [`epoch_order`], gathering each batch with
//! [`Features::gather_f32`] or [`Features::gather_f64`] before turning it into a tensor.
//!
//! Files are checked before use (IDX structure, checksums, counts) and downloads are verified
//! before they are kept, so a run never trains on a truncated or corrupted dataset. Every failure
//! is a [`DataError`] that names the file or config key at fault.
#![warn(missing_docs)]

pub mod csv;
mod dataset;
pub mod download;
mod error;
pub mod idx;
pub mod mnist;
mod order;
pub mod synthetic;

pub use self::csv::{CsvTask, load_csv, parse_csv};
pub use dataset::{Dataset, Features, Splits, Targets};
pub use error::DataError;
pub use mnist::{MnistKind, load_mnist};
pub use order::{batches, epoch_order, split_validation};
pub use synthetic::{ConditioningMatrix, bad_regression};
