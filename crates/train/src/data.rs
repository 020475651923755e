//! From `[data]` to host datasets, and from host rows to batch tensors.

use anyhow::Result;
use burn::tensor::{DType, Tensor, TensorData};
use steplab_data::{CsvTask, Dataset, Features, MnistKind, Targets};
use steplab_models::{Target, Task};

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

/// Loads the dataset a config names.
pub fn prepare(config: &Config, progress: bool) -> Result<Prepared> {
    let data = &config.data;
    let (train, test) =
        match data.dataset {
            DatasetKind::Mnist | DatasetKind::FashionMnist => {
                let kind = if data.dataset == DatasetKind::Mnist {
                    MnistKind::Mnist
                } else {
                    MnistKind::FashionMnist
                };
                let splits = steplab_data::load_mnist(kind, &data.root, data.download, progress)?;
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
                let train = steplab_data::load_csv(path, target, task)?;
                let test = match &data.test_path {
                    Some(p) => Some(steplab_data::load_csv(p, target, task)?),
                    None => None,
                };
                (train, test)
            }
        };
    let (mut train, mut test) = (train, test);
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
    let (train, validation) =
        steplab_data::split_validation(train, data.validation_fraction, config.run.seed)
            .map_err(|e| ConfigError(e.to_string()))?;
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

/// One batch as tensors, plus the labels on the host for accuracy.
pub struct Batch {
    /// Inputs `[batch, features]`.
    pub inputs: Tensor<2>,
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
        inputs,
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
