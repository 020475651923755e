//! Pictures and tables of steplab run directories.
//!
//! `train plot` and `train summarize` are thin glue over this crate: [`run`] reads the run
//! directories `train` writes, [`group`] gathers the seeds of one experiment and computes their
//! statistics, [`plot`] draws loss and step-size curves (PNG or SVG, with a font shipped inside
//! the binary), [`summary`] writes one table over many runs beside the papers' published numbers
//! ([`published`]).

pub mod error;
pub mod group;
pub mod run;

pub use error::{ReportError, Result};
pub mod plot;
pub mod published;
pub mod summary;
