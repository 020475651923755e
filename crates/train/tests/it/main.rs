//! The end-to-end and integration tests of `train`, one module per concern, linked into one
//! test binary: each test binary links all of Burn (and wgpu with the feature), so one binary
//! instead of one per file saves a link and a compile of the shared helpers per file.

mod common;

mod celeba;
mod cifar;
mod cli;
mod configs;
mod imdb;
mod plot;
mod resume;
mod robustness;
mod sweep;
mod trajectories;
mod zoo;
