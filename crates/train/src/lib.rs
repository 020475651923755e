//! The `train` command's library: config, backends, data batching, the training loop, output
//! files and the benchmark. The binary (`main.rs`) is thin glue around [`trainer::train`].

pub mod backend;
pub mod bench;
pub mod config;
pub mod data;
pub mod output;
pub mod rundir;
pub mod trainer;
