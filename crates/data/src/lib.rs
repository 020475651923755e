//! Datasets for steplab, on the host: no tensors, no Burn.
//!
//! The trainer asks this crate for [`Splits`] (MNIST and Fashion-MNIST through [`load_mnist`],
//! CIFAR-10 and CIFAR-100 through [`load_cifar`], CelebA's faces through [`load_celeba`], IMDb
//! reviews through [`load_imdb`], tabular data through [`load_csv`], seeded synthetic problems
//! through [`bad_regression`]), holds out a validation set with [`split_validation`], and each
//! epoch walks [`batches`] of an [`epoch_order`], gathering each batch with
//! [`Features::gather_f32`] or [`Features::gather_f64`] before turning it into a tensor. Image
//! rows know their shape ([`Features::image_shape`]); a batch of them can be augmented with
//! [`crop_flip_batch`] and normalised per channel with [`normalize_channels`].
//!
//! Text rows are token ids padded to one length ([`Features::token_shape`]), gathered with their
//! real lengths by [`Features::gather_tokens`]. They come from torchtext's `basic_english`
//! tokeniser ([`tokenize`]) and a [`Vocabulary`] of the training texts ([`encode`]); the
//! embedding of a text model can start from GloVe's vectors for that vocabulary
//! ([`load_glove`]).
//!
//! Files are checked before use (IDX structure, checksums, counts) and downloads are verified
//! before they are kept, so a run never trains on a truncated or corrupted dataset. Every failure
//! is a [`DataError`] that names the file or config key at fault.
#![warn(missing_docs)]

mod archive;
pub mod augment;
pub mod celeba;
pub mod cifar;
pub mod csv;
mod dataset;
pub mod download;
mod error;
pub mod glove;
pub mod idx;
pub mod imdb;
pub mod mnist;
mod order;
mod progress;
pub mod synthetic;
pub mod text;

pub use self::csv::{CsvTask, load_csv, parse_csv};
pub use augment::{AugmentKey, CropFlip, Real, crop_flip, crop_flip_batch, normalize_channels};
pub use celeba::{
    BadImages, CELEBA_IMAGE_SHAPE, Celeba, CelebaCache, CelebaPreprocess, CelebaSettings,
    load_celeba,
};
pub use cifar::{
    CIFAR_IMAGE_SHAPE, CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, CifarKind,
    CifarLabel, load_cifar,
};
pub use dataset::{Dataset, Features, Splits, Targets, TokenShape};
pub use error::DataError;
pub use glove::{GLOVE_DIMS, Glove, load_glove};
pub use imdb::{Imdb, ImdbCache, ImdbSettings, load_imdb};
pub use mnist::{MnistKind, load_mnist};
pub use order::{batches, epoch_order, split_validation};
pub use synthetic::{ConditioningMatrix, bad_regression};
pub use text::{Vocabulary, encode, tokenize};
