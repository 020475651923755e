//! The experiment config: plain structs that mirror the TOML one-to-one, `--set` overrides, and
//! the errors that name the offending key or file.
//!
//! Loading is two-stage (as ripgrep's flags): [`load`] parses text into [`Config`], rejecting
//! unknown keys and wrong types with the key's dotted path; the trainer then validates values and
//! builds real objects (data, model, optimizer), again naming the key on error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use steplab_data::ConditioningMatrix;
use steplab_models::ModelConfig;
use steplab_optim::{OptimizerConfig, ScheduleConfig};

use crate::stopping::{EarlyStoppingConfig, TargetConfig};

/// A problem with the command line or the config: exit status 2, message names the key or file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// An error about `key`.
    pub fn key(key: &str, message: impl std::fmt::Display) -> Self {
        Self(format!("{key}: {message}"))
    }
}

/// One experiment, as written in its TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where and how the run happens.
    #[serde(default)]
    pub run: RunConfig,
    /// The dataset and how it is batched.
    pub data: DataConfig,
    /// The model of the zoo.
    pub model: ModelConfig,
    /// The optimizer and its settings.
    pub optimizer: OptimizerConfig,
    /// A per-epoch schedule of the optimizer's base learning rate, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleConfig>,
    /// Length of training.
    #[serde(default)]
    pub training: TrainingConfig,
}

/// `[run]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Run name; the run directory is `out_dir/name`. Default: the config file's stem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Seeds initialisation, shuffling and the validation split.
    #[serde(default)]
    pub seed: u64,
    /// Root of the run directories.
    #[serde(default = "RunConfig::default_out_dir")]
    pub out_dir: PathBuf,
    /// Compute backend.
    #[serde(default)]
    pub backend: BackendKind,
    /// Floating-point precision of weights and activations.
    #[serde(default)]
    pub precision: Precision,
}

impl RunConfig {
    fn default_out_dir() -> PathBuf {
        PathBuf::from("results")
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            name: None,
            seed: 0,
            out_dir: Self::default_out_dir(),
            backend: BackendKind::default(),
            precision: Precision::default(),
        }
    }
}

/// `run.backend`: which Burn backend computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// burn-ndarray on the CPU.
    Ndarray,
    /// burn-flex on the CPU (pure Rust, im2col + gemm convolutions).
    Flex,
    /// wgpu on the GPU (needs the `wgpu` cargo feature).
    Wgpu,
}

impl Default for BackendKind {
    /// The faster CPU backend on the benchmark of the README.
    fn default() -> Self {
        crate::backend::DEFAULT_CPU
    }
}

/// `run.precision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// 32-bit floats.
    #[default]
    F32,
    /// 64-bit floats (CPU backends).
    F64,
}

/// `data.dataset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    /// MNIST digits, 60k/10k, 28×28 scaled to [0, 1].
    Mnist,
    /// Fashion-MNIST, 60k/10k, 28×28 scaled to [0, 1].
    FashionMnist,
    /// A CSV file with a header row (`path`, `target`, `task`).
    Csv,
    /// The badly-conditioned regression of the L4 paper (Sec. 3.1), generated from `run.seed`
    /// (`matrix`, `samples`).
    BadRegression,
    /// CIFAR-10, 50k/10k 32×32 colour images, 10 classes.
    Cifar10,
    /// CIFAR-100, 50k/10k 32×32 colour images, 100 fine or 20 coarse classes (`label`).
    Cifar100,
    /// IMDb movie reviews (Maas et al. 2011), 25k/25k, positive or negative, as token ids
    /// (`vocab_size`, `min_count`, `max_len`).
    Imdb,
    /// CelebA's aligned faces (Liu et al. 2015) at 64×64, 162,770 / 19,867 / 19,962 by the
    /// official partition, no labels (`preprocess`, `bad_images`).
    Celeba,
}

/// `data.augment`: how training images are augmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Augment {
    /// No augmentation.
    #[default]
    None,
    /// A random 32×32 crop of the 4-pixel zero-padded image and a horizontal flip with p = 1/2,
    /// keyed by (seed, epoch, sample).
    CropFlip,
}

/// `data.task` for CSV data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CsvTaskKind {
    /// Float target, squared-error loss.
    Regression,
    /// Integer class 0..K-1, softmax cross-entropy.
    Classification,
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Which dataset.
    pub dataset: DatasetKind,
    /// Where dataset files are found or downloaded to.
    #[serde(default = "DataConfig::default_root")]
    pub root: PathBuf,
    /// Download missing files from the official URLs.
    #[serde(default = "DataConfig::default_true")]
    pub download: bool,
    /// Training batch size; the number of rows gives full-batch training.
    #[serde(default = "DataConfig::default_batch_size")]
    pub batch_size: usize,
    /// Reshuffle the training set every epoch (seeded by `run.seed` and the epoch).
    #[serde(default = "DataConfig::default_true")]
    pub shuffle: bool,
    /// Fraction of the training set held out for validation (seeded), 0 for none.
    #[serde(default)]
    pub validation_fraction: f64,
    /// `[mean, std]`: every input feature becomes `(x − mean) / std` after the dataset's own
    /// scaling (Gorti-Ravaut's code: `[0.5, 0.5]`, MNIST pixels to [−1, 1]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<[f64; 2]>,
    /// Standardise every input column to mean 0 and std 1 with the training split's statistics
    /// (applied to the validation and test sets too). CSV and synthetic data only.
    #[serde(default)]
    pub standardize: bool,
    /// Batch size of evaluation passes (no effect on results beyond rounding).
    #[serde(default = "DataConfig::default_eval_batch_size")]
    pub eval_batch_size: usize,
    /// CSV only: the file (relative paths from the working directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// CSV only: the target column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// CSV only: regression or classification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<CsvTaskKind>,
    /// CSV classification only: the number of classes K (labels 0..K−1). Default: the largest
    /// label of the training and test files plus one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<u32>,
    /// CSV only: a second file used as the test set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_path: Option<PathBuf>,
    /// CSV only: the last `test_rows` rows of the file form the test set (Gorti-Ravaut's Boston
    /// Housing split: 400 train, the remaining 106 test).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_rows: Option<usize>,
    /// CIFAR-100 only: `fine` (100 classes, default) or `coarse` (20 superclasses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<steplab_data::CifarLabel>,
    /// Image datasets: augmentation of the training images.
    #[serde(default)]
    pub augment: Augment,
    /// IMDb only: the vocabulary's size, `<pad>` and `<unk>` included (default 25 000), the most
    /// frequent training-split tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<usize>,
    /// IMDb only: the fewest occurrences in the training split a token needs to be in the
    /// vocabulary (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_count: Option<u32>,
    /// IMDb only: reviews are truncated to their first `max_len` tokens (default 400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<usize>,
    /// CelebA only: `wae` (centre crop 140×140, then resize to 64×64, as the WAE code; default)
    /// or `resize` (the whole 178×218 image resized to 64×64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<steplab_data::CelebaPreprocess>,
    /// CelebA only: an image that does not decode is an `error` (default) or is `skip`ped
    /// (named in the run's output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_images: Option<steplab_data::BadImages>,
    /// `bad_regression` only: how the target matrix A is built (`recht` or `svd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<ConditioningMatrix>,
    /// `bad_regression` only: number of samples (default 1000, the paper's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
}

impl DataConfig {
    fn default_root() -> PathBuf {
        PathBuf::from("datasets")
    }
    fn default_true() -> bool {
        true
    }
    fn default_batch_size() -> usize {
        100
    }
    fn default_eval_batch_size() -> usize {
        1000
    }
}

/// `[training]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// Passes over the training set.
    #[serde(default = "TrainingConfig::default_epochs")]
    pub epochs: usize,
    /// Stop after this many updates (for short runs and tests), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u64>,
    /// Evaluate on the test (and validation) set after each epoch.
    #[serde(default = "TrainingConfig::default_true")]
    pub evaluate: bool,
    /// λ of an L2 term (λ/2)·‖θ‖² over every trained parameter, inside the objective: in the
    /// loss value every method and probe sees and in its gradient (λθ, as PyTorch's
    /// `weight_decay`). 0 for none. The optimizers' own `weight_decay` instead adds λθ to the
    /// gradient only, outside the loss.
    #[serde(default)]
    pub l2: f64,
    /// Write `checkpoint.safetensors` at the end of every epoch (and every `checkpoint_steps`
    /// updates, and when a signal stops the run), so that `train --resume` can continue.
    #[serde(default = "TrainingConfig::default_true")]
    pub checkpoint: bool,
    /// Also checkpoint every this many updates, if set (for long epochs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_steps: Option<u64>,
    /// A wall-clock budget in seconds of training (evaluation included, summed over resumed
    /// sessions): the run stops after the update that uses it up, evaluates, and records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<f64>,
    /// Early stopping on an epoch metric with patience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStoppingConfig>,
    /// A metric value whose reaching ends the run, recording the update, epoch and seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetConfig>,
}

impl TrainingConfig {
    fn default_epochs() -> usize {
        1
    }
    fn default_true() -> bool {
        true
    }
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            epochs: Self::default_epochs(),
            max_steps: None,
            evaluate: true,
            l2: 0.0,
            checkpoint: true,
            checkpoint_steps: None,
            max_seconds: None,
            early_stopping: None,
            target: None,
        }
    }
}

/// Reads `path`, removes the `--unset KEY` keys, applies the `--set KEY=VALUE` overrides, and
/// parses and checks the result.
pub fn load(path: &Path, unset: &[String], overrides: &[String]) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{}: cannot read config: {e}", path.display())))?;
    let mut config = parse_with(&text, unset, overrides)
        .map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))?;
    if config.run.name.is_none() {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("run");
        config.run.name = Some(stem.to_string());
    }
    Ok(config)
}

/// Parses config text with overrides applied (the testable core of [`load`]).
pub fn parse(text: &str, overrides: &[String]) -> Result<Config, ConfigError> {
    parse_with(text, &[], overrides)
}

/// Parses config text with `unset` keys removed, then `overrides` applied, and checks the
/// values that need no data (run name, step budget).
pub fn parse_with(
    text: &str,
    unset: &[String],
    overrides: &[String],
) -> Result<Config, ConfigError> {
    let mut table: toml::Table =
        toml::from_str(text).map_err(|e| ConfigError(format!("malformed TOML: {e}")))?;
    for key in unset {
        remove_key(&mut table, key)?;
    }
    for item in overrides {
        apply_override(&mut table, item)?;
    }
    let value = toml::Value::Table(table);
    let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." || path.is_empty() {
            ConfigError(inner)
        } else {
            ConfigError::key(&key_of_error(&path, &inner), inner)
        }
    })?;
    check(&config)?;
    Ok(config)
}

/// The dotted key an error is about. `[model]`, `[optimizer]` and `[schedule]` are chosen by
/// their `kind`, which hides the key from the error's path; serde names it in the message
/// (``unknown field `x` ``, ``missing field `x` ``), and it is put back into the path here.
fn key_of_error(path: &str, message: &str) -> String {
    if path.contains('.') {
        return path.to_string();
    }
    let named = |marker: &str| {
        message
            .split(marker)
            .nth(1)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string)
    };
    if let Some(name) = named("unknown field `").or_else(|| named("missing field `")) {
        format!("{path}.{name}")
    } else if message.contains("unknown variant `") {
        format!("{path}.kind")
    } else {
        path.to_string()
    }
}

/// Checks the values a config holds that need no data or model (run name, step budget).
fn check(config: &Config) -> Result<(), ConfigError> {
    if let Some(name) = &config.run.name {
        let path = Path::new(name);
        let plain = !name.is_empty()
            && path.components().count() == 1
            && matches!(
                path.components().next(),
                Some(std::path::Component::Normal(_))
            );
        if !plain {
            return Err(ConfigError::key(
                "run.name",
                format!(
                    "{name:?} is not a plain directory name (no `/`, `..` or absolute path; it \
                     names the run directory under run.out_dir)"
                ),
            ));
        }
    }
    let l2 = config.training.l2;
    if !(l2.is_finite() && l2 >= 0.0) {
        return Err(ConfigError::key(
            "training.l2",
            format!("must be a number ≥ 0, got {l2}"),
        ));
    }
    if config.training.max_steps == Some(0) {
        return Err(ConfigError::key(
            "training.max_steps",
            "must be at least 1 (leave it out to train every epoch)",
        ));
    }
    crate::stopping::check(
        config.training.max_seconds,
        config.training.early_stopping.as_ref(),
        config.training.target.as_ref(),
    )?;
    if config.training.checkpoint_steps == Some(0) {
        return Err(ConfigError::key(
            "training.checkpoint_steps",
            "must be at least 1 (leave it out to checkpoint at the end of each epoch only)",
        ));
    }
    Ok(())
}

/// The keys (dotted paths) whose values differ between two configs, each as
/// `key (a → b)`; `run.name` and `run.out_dir` are left out (they name the run directory, not
/// the run).
pub fn differences(a: &Config, b: &Config) -> Vec<String> {
    fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
        match value {
            toml::Value::Table(table) => {
                for (key, value) in table {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    flatten(&path, value, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let table = |c: &Config| {
        let mut out = BTreeMap::new();
        let value = toml::Value::try_from(c).expect("the config always serializes");
        flatten("", &value, &mut out);
        out.remove("run.name");
        out.remove("run.out_dir");
        out
    };
    let (a, b) = (table(a), table(b));
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "unset".into());
            format!("{k} ({} → {})", show(a.get(k)), show(b.get(k)))
        })
        .collect()
}

/// Removes one `--unset KEY` (a dotted path) from the config table; a key that is not there is an
/// error naming it.
fn remove_key(table: &mut toml::Table, key: &str) -> Result<(), ConfigError> {
    let parts = key_path(key.trim(), &format!("--unset {key}"))?;
    let (last, parents) = parts.split_last().expect("split yields at least one part");
    let mut node = table;
    for part in parents {
        node = node
            .get_mut(*part)
            .and_then(toml::Value::as_table_mut)
            .ok_or_else(|| ConfigError(format!("--unset {key}: the config has no `{key}`")))?;
    }
    node.remove(*last)
        .map(|_| ())
        .ok_or_else(|| ConfigError(format!("--unset {key}: the config has no `{key}`")))
}

/// The parts of a dotted key (`optimizer.lr`); an empty part is an error starting with `flag`.
fn key_path<'a>(key: &'a str, flag: &str) -> Result<Vec<&'a str>, ConfigError> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(ConfigError(format!(
            "{flag}: `{key}` is not a dotted key path"
        )));
    }
    Ok(parts)
}

/// Applies one `KEY=VALUE` override: the value parses as TOML, or is taken as a string.
fn apply_override(table: &mut toml::Table, item: &str) -> Result<(), ConfigError> {
    let (key, raw) = item
        .split_once('=')
        .ok_or_else(|| ConfigError(format!("--set {item}: expected KEY=VALUE")))?;
    let parts = key_path(key.trim(), &format!("--set {item}"))?;
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let (last, parents) = parts.split_last().expect("split yields at least one part");
    let mut node = table;
    for (i, part) in parents.iter().enumerate() {
        let entry = node
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry.as_table_mut().ok_or_else(|| {
            ConfigError(format!(
                "--set {item}: `{}` is not a table",
                parts[..=i].join(".")
            ))
        })?;
    }
    node.insert(last.to_string(), value);
    Ok(())
}

/// The resolved config as TOML text (all defaults and overrides applied).
pub fn to_toml(config: &Config) -> String {
    toml::to_string_pretty(config).expect("the config always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[data]
dataset = "csv"
path = "x.csv"
target = "y"
task = "regression"
[model]
kind = "linear"
[optimizer]
kind = "lossgrad"
"#;

    #[test]
    fn defaults_fill_every_optional_section() {
        let c = parse(BASE, &[]).unwrap();
        assert_eq!(c.training.epochs, 1);
        assert_eq!(c.data.batch_size, 100);
        assert_eq!(c.optimizer.lr(), 1e-4);
        assert_eq!(c.run.precision, Precision::F32);
    }

    #[test]
    fn set_overrides_parse_as_toml_or_strings() {
        let sets = [
            "optimizer.lr=0.5".to_string(),
            "training.epochs=3".into(),
            "run.precision=f64".into(),
        ];
        let c = parse(BASE, &sets).unwrap();
        assert_eq!(c.optimizer.lr(), 0.5);
        assert_eq!(c.training.epochs, 3);
        assert_eq!(c.run.precision, Precision::F64);
        let c = parse(BASE, &["optimizer.kind=\"sgd\"".to_string()]).unwrap();
        assert_eq!(c.optimizer.kind(), "sgd");
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_path() {
        let err = parse(BASE, &["training.epoch=3".to_string()]).unwrap_err();
        assert!(
            err.0.contains("training") && err.0.contains("epoch"),
            "{err}"
        );
        let err = parse(&format!("{BASE}\n[extra]\nx = 1"), &[]).unwrap_err();
        assert!(err.0.contains("extra"), "{err}");
        let err = parse(BASE, &["optimizer.momentum=0.9".to_string()]).unwrap_err();
        assert!(
            err.0.contains("optimizer") && err.0.contains("momentum"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_inside_kind_chosen_sections_name_the_key() {
        for (set, key) in [
            ("model.hiden=[3]", "model.hiden"),
            ("optimizer.cc=1.1", "optimizer.cc"),
        ] {
            let err = parse(BASE, &[set.to_string()]).unwrap_err();
            assert!(err.0.starts_with(&format!("{key}: ")), "{set}: {err}");
        }
        let err = parse(
            &format!("{BASE}\n[schedule]\nkind = \"step\"\nsize = 2"),
            &[],
        )
        .unwrap_err();
        assert!(err.0.starts_with("schedule.size: "), "{err}");
        let err = parse(BASE, &["optimizer.kind=sgdd".to_string()]).unwrap_err();
        assert!(err.0.starts_with("optimizer.kind: "), "{err}");
    }

    #[test]
    fn run_names_must_be_plain_and_max_steps_positive() {
        for name in ["\"\"", "\"/tmp/x\"", "\"../up\"", "\"a/b\"", "\"..\""] {
            let err = parse(BASE, &[format!("run.name={name}")]).unwrap_err();
            assert!(err.0.starts_with("run.name: "), "{name}: {err}");
        }
        assert!(parse(BASE, &["run.name=\"seed_3\"".to_string()]).is_ok());
        let err = parse(BASE, &["training.max_steps=0".to_string()]).unwrap_err();
        assert!(err.0.starts_with("training.max_steps: "), "{err}");
    }

    #[test]
    fn unset_removes_a_key_so_that_another_kind_fits() {
        let text = format!("{BASE}c = 1.1\n");
        let err = parse(&text, &["optimizer.kind=sgd".to_string()]).unwrap_err();
        assert!(err.0.starts_with("optimizer.c: "), "{err}");
        let c = parse_with(
            &text,
            &["optimizer.c".to_string()],
            &["optimizer.kind=sgd".to_string()],
        )
        .unwrap();
        assert_eq!(c.optimizer.kind(), "sgd");
        let err = parse_with(&text, &["optimizer.momentum".to_string()], &[]).unwrap_err();
        assert!(err.0.contains("optimizer.momentum"), "{err}");
    }

    #[test]
    fn wrong_types_name_the_key() {
        let err = parse(BASE, &["training.epochs=\"many\"".to_string()]).unwrap_err();
        assert!(err.0.contains("training.epochs"), "{err}");
    }

    #[test]
    fn schedule_section_parses_by_kind() {
        let c = parse(
            &format!("{BASE}\n[schedule]\nkind = \"step\"\nstep_size = 20"),
            &[],
        )
        .unwrap();
        assert_eq!(c.schedule.as_ref().map(|s| s.kind()), Some("step"));
        let err = parse(
            &format!("{BASE}\n[schedule]\nkind = \"step\"\nsize = 2"),
            &[],
        )
        .unwrap_err();
        assert!(
            err.0.contains("schedule") && err.0.contains("size"),
            "{err}"
        );
    }

    #[test]
    fn malformed_toml_is_reported() {
        let err = parse("[data\n", &[]).unwrap_err();
        assert!(err.0.contains("malformed TOML"), "{err}");
    }

    #[test]
    fn resolved_config_round_trips() {
        let c = parse(BASE, &["optimizer.c=1.1".to_string()]).unwrap();
        let again = parse(&to_toml(&c), &[]).unwrap();
        assert_eq!(c, again);
    }
}
