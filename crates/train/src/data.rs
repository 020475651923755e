//! From `[data]` to host datasets, and from host rows to batch tensors.

use std::sync::atomic::AtomicBool;

use anyhow::Result;
use burn::tensor::{DType, Tensor, TensorData};
use steplab_data::{CsvTask, Dataset, Features, MnistKind, Targets};
use steplab_models::{Input, Target, Task};

use crate::backend::Compute;
use crate::config::{Config, ConfigError, CsvTaskKind, DatasetKind};

/// The datasets of a run, split and ready to batch.
pub struct Prepared {
    /// Training set (after any validation hold-out).
    pub train: Dataset,
    /// Validation hold-out, if `data.validation_fraction` > 0.
    pub validation: Option<Dataset>,
    /// Test set, if the dataset has one.
    pub test: Option<Dataset>,
    /// What the model predicts.
    pub task: Task,
}

/// Loads the dataset a config names. `cancel` (Ctrl-C, SIGTERM) stops a download or a long load
/// between chunks and files.
pub fn prepare(config: &Config, progress: bool, cancel: &AtomicBool) -> Result<Prepared> {
    let data = &config.data;
    let (train, test) =
        match data.dataset {
            DatasetKind::Mnist | DatasetKind::FashionMnist => {
                let kind = if data.dataset == DatasetKind::Mnist {
                    MnistKind::Mnist
                } else {
                    MnistKind::FashionMnist
                };
                let splits =
                    steplab_data::load_mnist(kind, &data.root, data.download, progress, cancel)?;
                (splits.train, splits.test)
            }
            DatasetKind::Csv => {
                let path = data.path.as_ref().ok_or_else(|| {
                    ConfigError::key("data.path", "required for dataset = \"csv\"")
                })?;
                let target = data.target.as_ref().ok_or_else(|| {
                    ConfigError::key("data.target", "required for dataset = \"csv\"")
                })?;
                let task =
                    match data.task {
                        Some(CsvTaskKind::Regression) => CsvTask::Regression,
                        Some(CsvTaskKind::Classification) => CsvTask::Classification,
                        None => return Err(ConfigError::key(
                            "data.task",
                            "required for dataset = \"csv\" (\"regression\" or \"classification\")",
                        )
                        .into()),
                    };
                if let Some(k) = data.classes {
                    if task != CsvTask::Classification {
                        return Err(ConfigError::key(
                            "data.classes",
                            "only applies to task = \"classification\"",
                        )
                        .into());
                    }
                    if k == 0 {
                        return Err(ConfigError::key("data.classes", "must be at least 1").into());
                    }
                }
                let train = steplab_data::load_csv(path, target, task, data.classes)?;
                let test = match &data.test_path {
                    Some(p) => Some(steplab_data::load_csv(p, target, task, data.classes)?),
                    None => None,
                };
                // One class count for both files: the test file may hold a class the training
                // file lacks, or lack one it holds.
                let (train, test) = match test {
                    Some(test) => {
                        let classes = num_classes(&train).max(num_classes(&test));
                        (
                            with_classes(train, classes),
                            Some(with_classes(test, classes)),
                        )
                    }
                    None => (train, None),
                };
                match data.test_rows {
                    Some(_) if test.is_some() => {
                        return Err(ConfigError::key(
                            "data.test_rows",
                            "give either data.test_path or data.test_rows, not both",
                        )
                        .into());
                    }
                    Some(rows) => split_tail(train, rows)?,
                    None => (train, test),
                }
            }
            DatasetKind::BadRegression => {
                let samples = data.samples.unwrap_or(1000);
                if samples == 0 {
                    return Err(ConfigError::key("data.samples", "must be at least 1").into());
                }
                let matrix = data.matrix.unwrap_or_default();
                let train = steplab_data::bad_regression(matrix, samples, config.run.seed)?;
                (train, None)
            }
        };
    for (key, set, wanted) in [
        ("data.path", data.path.is_some(), DatasetKind::Csv),
        ("data.target", data.target.is_some(), DatasetKind::Csv),
        ("data.task", data.task.is_some(), DatasetKind::Csv),
        ("data.test_path", data.test_path.is_some(), DatasetKind::Csv),
        ("data.classes", data.classes.is_some(), DatasetKind::Csv),
        ("data.test_rows", data.test_rows.is_some(), DatasetKind::Csv),
        (
            "data.matrix",
            data.matrix.is_some(),
            DatasetKind::BadRegression,
        ),
        (
            "data.samples",
            data.samples.is_some(),
            DatasetKind::BadRegression,
        ),
    ] {
        if set && data.dataset != wanted {
            return Err(ConfigError::key(
                key,
                format!("only applies to dataset = \"{}\"", dataset_name(wanted)),
            )
            .into());
        }
    }
    let (mut train, mut test) = (train, test);
    if let Some([mean, std]) = data.normalize {
        if !(mean.is_finite() && std.is_finite() && std > 0.0) {
            return Err(ConfigError::key(
                "data.normalize",
                format!("expected [mean, std] with std > 0, got [{mean}, {std}]"),
            )
            .into());
        }
        train = train.normalized(mean, std);
        test = test.map(|t| t.normalized(mean, std));
    }
    if config.model.is_autoencoder() {
        train = train.into_reconstruction();
        test = test.map(Dataset::into_reconstruction);
    }
    if let Some(t) = &test
        && t.features.cols() != train.features.cols()
    {
        return Err(ConfigError::key(
            "data.test_path",
            format!(
                "the test set has {} input columns, the training set {}",
                t.features.cols(),
                train.features.cols()
            ),
        )
        .into());
    }
    let (mut train, mut validation) =
        steplab_data::split_validation(train, data.validation_fraction, config.run.seed)
            .map_err(|e| ConfigError(e.to_string()))?;
    if data.standardize {
        if matches!(data.dataset, DatasetKind::Mnist | DatasetKind::FashionMnist) {
            return Err(ConfigError::key(
                "data.standardize",
                "only for csv and synthetic data (images: use data.normalize)",
            )
            .into());
        }
        // Statistics of the training split only, so nothing leaks from held-out data.
        let stats = train.features.column_stats();
        train = standardized(train, &stats);
        validation = validation.map(|set| standardized(set, &stats));
        test = test.map(|set| standardized(set, &stats));
    }
    if train.is_empty() {
        return Err(ConfigError::key("data", "the training set is empty").into());
    }
    let task = match &train.targets {
        Targets::Classes { num_classes, .. } => Task::Classification {
            classes: *num_classes,
        },
        Targets::Values(values) => Task::Regression {
            outputs: values.cols(),
        },
        Targets::Reconstruction => Task::Reconstruction,
    };
    Ok(Prepared {
        train,
        validation,
        test,
        task,
    })
}

/// The number of classes of a classification set (0 for other targets).
fn num_classes(set: &Dataset) -> usize {
    match &set.targets {
        Targets::Classes { num_classes, .. } => *num_classes,
        _ => 0,
    }
}

/// `set` with `classes` classes (at least its own: its labels stay valid).
fn with_classes(set: Dataset, classes: usize) -> Dataset {
    match set.targets {
        Targets::Classes {
            labels,
            num_classes,
        } => Dataset {
            features: set.features,
            targets: Targets::Classes {
                labels,
                num_classes: num_classes.max(classes),
            },
        },
        targets => Dataset {
            features: set.features,
            targets,
        },
    }
}

/// `set` with its input columns standardised by the given statistics.
fn standardized(set: Dataset, stats: &[(f64, f64)]) -> Dataset {
    Dataset {
        features: set.features.standardized(stats),
        targets: set.targets,
    }
}

/// The `data.dataset` name of a kind.
pub fn dataset_name(kind: DatasetKind) -> String {
    toml::Value::try_from(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Splits off the last `rows` rows as the test set, keeping file order.
fn split_tail(set: Dataset, rows: usize) -> Result<(Dataset, Option<Dataset>)> {
    let n = set.len();
    if rows == 0 || rows >= n {
        return Err(ConfigError::key(
            "data.test_rows",
            format!(
                "must be between 1 and {} (the file has {n} rows)",
                n.saturating_sub(1)
            ),
        )
        .into());
    }
    let cut = n - rows;
    let train = set.select(&(0..cut).collect::<Vec<_>>());
    let test = set.select(&(cut..n).collect::<Vec<_>>());
    Ok((train, Some(test)))
}

/// One batch as tensors, plus the labels on the host for accuracy.
pub struct Batch {
    /// Inputs (feature rows now; images with the image datasets).
    pub inputs: Input,
    /// Targets for the loss.
    pub target: Target,
    /// Class labels (classification only).
    pub labels: Option<Vec<u32>>,
    /// Number of samples.
    pub len: usize,
}

fn to_tensor(features: &Features, rows: &[usize], compute: &Compute) -> Tensor<2> {
    let shape = [rows.len(), features.cols()];
    let data = match compute.dtype {
        DType::F64 => TensorData::new(features.gather_f64(rows), shape),
        _ => TensorData::new(features.gather_f32(rows), shape),
    };
    Tensor::from_data(data, (&compute.device, compute.dtype))
}

/// Gathers `rows` of `dataset` into tensors on the run's device.
pub fn make_batch(dataset: &Dataset, rows: &[usize], compute: &Compute) -> Batch {
    let inputs = to_tensor(&dataset.features, rows, compute);
    let (target, labels) = match &dataset.targets {
        Targets::Classes {
            labels,
            num_classes,
        } => {
            let picked: Vec<u32> = rows.iter().map(|&r| labels[r]).collect();
            let mut one_hot = vec![0.0f64; rows.len() * num_classes];
            for (i, &l) in picked.iter().enumerate() {
                one_hot[i * num_classes + l as usize] = 1.0;
            }
            let data = TensorData::new(one_hot, [rows.len(), *num_classes]);
            (
                Target::OneHot(Tensor::from_data(data, (&compute.device, compute.dtype))),
                Some(picked),
            )
        }
        Targets::Values(values) => (Target::Values(to_tensor(values, rows, compute)), None),
        Targets::Reconstruction => (Target::Values(inputs.clone()), None),
    };
    Batch {
        inputs: Input::Features(inputs),
        target,
        labels,
        len: rows.len(),
    }
}

/// Number of rows of `outputs` whose arg-max equals the label (reads the outputs back: a sync).
pub fn count_correct(outputs: Tensor<2>, labels: &[u32]) -> usize {
    let classes = outputs.dims()[1];
    let values = outputs
        .into_data()
        .try_into_vec_as::<f64>()
        .expect("float outputs");
    values
        .chunks(classes)
        .zip(labels)
        .filter(|(row, label)| {
            let mut best = 0;
            for (j, v) in row.iter().enumerate() {
                if *v > row[best] {
                    best = j;
                }
            }
            best == **label as usize
        })
        .count()
}
