//! The `train` command's library: config, backends, data batching, the experiment, the training
//! state and its step, checkpoints, the training loop, output files, the benchmark, and the `plot`/`summarize` commands. The binary (`main.rs`) is
//! thin glue around [`trainer::train`], [`trainer::resume`] and [`trainer::dry_run`].

pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod experiment;
pub mod log;
pub mod output;
pub mod passes;
pub mod pictures;
pub mod report;
pub mod rundir;
pub mod state;
pub mod stopping;
pub mod sweep;
pub mod trainer;
