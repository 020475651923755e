//! From `[data]` to host datasets, and from host rows to batch tensors.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, sync_channel};

use anyhow::Result;
use burn::tensor::{DType, Int, Tensor, TensorData};
use steplab_data::{CifarKind, CsvTask, Dataset, Features, MnistKind, Targets};
use steplab_models::{Input, InputShape, PretrainedTable, Target, Task};

use crate::backend::Compute;
use crate::config::{Augment, Config, ConfigError, CsvTaskKind, DatasetKind};

/// The datasets of a run, split and ready to batch.
pub struct Prepared {
    /// Training set (after any validation hold-out); shared with the batch-assembling thread.
    pub train: Arc<Dataset>,
    /// Validation hold-out, if `data.validation_fraction` > 0.
    pub validation: Option<Dataset>,
    /// Test set, if the dataset has one.
    pub test: Option<Dataset>,
    /// What the model predicts.
    pub task: Task,
    /// What one sample looks like (feature rows or images).
    pub input: InputShape,
    /// How a batch is assembled from stored rows (augmentation, normalisation).
    pub pipeline: Pipeline,
    /// The GloVe vectors of a text dataset's vocabulary, when the model starts from them.
    pub embedding: Option<PretrainedTable>,
}

/// How rows become a batch: images are augmented (training batches only), then normalised per
/// channel or by one mean and std, as torchvision's RandomCrop → Flip → ToTensor → Normalize.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// `[channels, height, width]` of an image dataset.
    image: Option<[usize; 3]>,
    /// Augmentation of training batches.
    augment: Augment,
    /// `run.seed`, which keys the augmentation with the epoch and the sample.
    seed: u64,
    /// Per-channel mean and std of a CIFAR dataset, applied per batch: its usual statistics, or
    /// `data.normalize`'s one mean and std for every channel.
    channels: Option<([f64; 3], [f64; 3])>,
}

/// Loads the dataset a config names. `cancel` (Ctrl-C, SIGTERM) stops a download or a long load
/// between chunks and files.
pub fn prepare(config: &Config, progress: bool, cancel: &AtomicBool) -> Result<Prepared> {
    let data = &config.data;
    let mut vocabulary = None;
    // A dataset's own validation split (CelebA's partition), used instead of a hold-out.
    let mut own_validation = None;
    let (train, test) = match data.dataset {
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
            let path = data
                .path
                .as_ref()
                .ok_or_else(|| ConfigError::key("data.path", "required for dataset = \"csv\""))?;
            let target = data
                .target
                .as_ref()
                .ok_or_else(|| ConfigError::key("data.target", "required for dataset = \"csv\""))?;
            let task = match data.task {
                Some(CsvTaskKind::Regression) => CsvTask::Regression,
                Some(CsvTaskKind::Classification) => CsvTask::Classification,
                None => {
                    return Err(ConfigError::key(
                        "data.task",
                        "required for dataset = \"csv\" (\"regression\" or \"classification\")",
                    )
                    .into());
                }
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
        DatasetKind::Cifar10 | DatasetKind::Cifar100 => {
            let kind = cifar_kind(data.dataset).expect("a CIFAR dataset");
            let label = data.label.unwrap_or_default();
            let splits =
                steplab_data::load_cifar(kind, label, &data.root, data.download, progress, cancel)
                    .map_err(load_error)?;
            (splits.train, splits.test)
        }
        DatasetKind::Imdb => {
            let defaults = steplab_data::imdb::ImdbSettings::default();
            let settings = steplab_data::imdb::ImdbSettings {
                vocab_size: data.vocab_size.unwrap_or(defaults.vocab_size),
                min_count: data.min_count.unwrap_or(defaults.min_count),
                max_len: data.max_len.unwrap_or(defaults.max_len),
            };
            let imdb = steplab_data::imdb::load_imdb(
                &data.root,
                &settings,
                data.download,
                progress,
                cancel,
            )
            .map_err(load_error)?;
            match &imdb.cache {
                steplab_data::imdb::ImdbCache::Read(path) => {
                    eprintln!("IMDb token ids read from the cache {}", path.display())
                }
                steplab_data::imdb::ImdbCache::Written(path) => {
                    eprintln!("IMDb token ids cached in {}", path.display())
                }
                steplab_data::imdb::ImdbCache::Rebuilt { path, reason } => {
                    eprintln!("IMDb cache {} rebuilt ({reason})", path.display())
                }
                steplab_data::imdb::ImdbCache::NotWritten { path, reason } => eprintln!(
                    "warning: IMDb cache {} not written ({reason}): the next run tokenises again",
                    path.display()
                ),
            }
            vocabulary = Some(imdb.vocabulary);
            (imdb.splits.train, imdb.splits.test)
        }
        DatasetKind::Celeba => {
            let settings = steplab_data::CelebaSettings {
                preprocess: data.preprocess.unwrap_or_default(),
                bad_images: data.bad_images.unwrap_or_default(),
            };
            let celeba =
                steplab_data::load_celeba(&data.root, &settings, data.download, progress, cancel)
                    .map_err(load_error)?;
            report_celeba_cache(&celeba.cache);
            if !celeba.skipped.is_empty() {
                eprintln!(
                    "warning: {} CelebA images did not decode and were skipped \
                     (data.bad_images = \"skip\"): {}",
                    celeba.skipped.len(),
                    celeba.skipped.join(", ")
                );
            }
            if data.validation_fraction != 0.0 {
                return Err(ConfigError::key(
                    "data.validation_fraction",
                    "CelebA has its own validation split (list_eval_partition.txt); set it to 0",
                )
                .into());
            }
            own_validation = celeba.splits.validation;
            (celeba.splits.train, celeba.splits.test)
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
        (
            "data.vocab_size",
            data.vocab_size.is_some(),
            DatasetKind::Imdb,
        ),
        (
            "data.min_count",
            data.min_count.is_some(),
            DatasetKind::Imdb,
        ),
        ("data.max_len", data.max_len.is_some(), DatasetKind::Imdb),
        (
            "data.preprocess",
            data.preprocess.is_some(),
            DatasetKind::Celeba,
        ),
        (
            "data.bad_images",
            data.bad_images.is_some(),
            DatasetKind::Celeba,
        ),
        // CIFAR-10's only label is "fine"; asking it for "coarse" is refused by its loader.
        (
            "data.label",
            data.label.is_some() && data.dataset != DatasetKind::Cifar10,
            DatasetKind::Cifar100,
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
    let image = train.features.image_shape();
    if data.augment != Augment::None && image.is_none() {
        return Err(ConfigError::key("data.augment", "only applies to image datasets").into());
    }
    let tokens = train.features.token_shape();
    if tokens.is_some() {
        for (key, set) in [
            ("data.normalize", data.normalize.is_some()),
            ("data.standardize", data.standardize),
        ] {
            if set {
                return Err(ConfigError::key(key, "does not apply to token ids (imdb)").into());
            }
        }
    }
    let embedding = match (config.model.glove_dim(), &vocabulary) {
        (Some(dim), Some(vocabulary)) => {
            if progress {
                eprintln!(
                    "loading GloVe 6B {dim}-d vectors of {} words ...",
                    vocabulary.len()
                );
            }
            let glove = steplab_data::glove::load_glove(
                &data.root,
                vocabulary,
                dim,
                data.download,
                progress,
                cancel,
            )
            .map_err(load_error)?;
            eprintln!(
                "GloVe: {} of {} vocabulary words have a vector ({})",
                glove.found_count(),
                vocabulary.len(),
                glove.source.display()
            );
            Some(PretrainedTable {
                dim: glove.dim,
                values: glove.vectors,
                found: glove.found,
                missing_std: 0.0,
            })
        }
        (Some(_), None) => {
            return Err(ConfigError::key(
                "model.embedding",
                "\"glove\" needs a text dataset with a vocabulary (data.dataset = \"imdb\"); \
                 use embedding = \"random\" otherwise",
            )
            .into());
        }
        (None, _) => None,
    };
    let (mut train, mut test) = (train, test);
    let mut pipeline = Pipeline {
        image,
        augment: data.augment,
        seed: config.run.seed,
        channels: cifar_kind(data.dataset).map(|kind| (kind.mean(), kind.std())),
    };
    // One mean and std for every input value: `data.normalize`, or, for a decoder that
    // reproduces pixels in its output's range, the map of the images' [0, 1] onto that range
    // (x ↦ (x − mean) / std with mean = −low / (high − low), std = 1 / (high − low)).
    let normalize = match config.model.output_range() {
        Some((low, high)) => {
            if data.normalize.is_some() {
                return Err(ConfigError::key(
                    "data.normalize",
                    format!(
                        "model.kind = \"{}\" scales the images to its decoder's output range \
                         [{low}, {high}] itself (model.output); remove data.normalize",
                        config.model.kind()
                    ),
                )
                .into());
            }
            Some([-low / (high - low), 1.0 / (high - low)])
        }
        None => data.normalize,
    };
    if let Some([mean, std]) = normalize {
        if !(mean.is_finite() && std.is_finite() && std > 0.0) {
            return Err(ConfigError::key(
                "data.normalize",
                format!("expected [mean, std] with std > 0, got [{mean}, {std}]"),
            )
            .into());
        }
        if pipeline.channels.is_some() {
            // CIFAR: normalised per batch, after augmentation (the stored bytes stay compact),
            // instead of the per-channel statistics.
            pipeline.channels = Some(([mean; 3], [std; 3]));
        } else {
            train = train.normalized(mean, std);
            test = test.map(|t| t.normalized(mean, std));
            own_validation = own_validation.map(|v| v.normalized(mean, std));
        }
    }
    if config.model.is_autoencoder() {
        train = train.into_reconstruction();
        test = test.map(Dataset::into_reconstruction);
        own_validation = own_validation.map(Dataset::into_reconstruction);
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
    if own_validation.is_some() {
        validation = own_validation;
    }
    if data.standardize {
        if image.is_some() {
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
    let input = match (image, tokens) {
        (Some(shape), _) => InputShape::Image(shape),
        (None, Some(t)) => InputShape::Tokens {
            max_len: t.max_len,
            vocab_size: t.vocab_size,
        },
        (None, None) => InputShape::Features(train.features.cols()),
    };
    Ok(Prepared {
        train: Arc::new(train),
        validation,
        test,
        task,
        input,
        pipeline,
        embedding,
    })
}

/// Says what became of the CelebA cache (the images are decoded once into it).
fn report_celeba_cache(cache: &steplab_data::CelebaCache) {
    use steplab_data::CelebaCache;
    match cache {
        CelebaCache::Read(path) => {
            eprintln!("CelebA images read from the cache {}", path.display())
        }
        CelebaCache::Written(path) => {
            eprintln!("CelebA images decoded and cached in {}", path.display())
        }
        CelebaCache::Rebuilt { path, reason } => {
            eprintln!("CelebA cache {} rebuilt ({reason})", path.display())
        }
        CelebaCache::NotWritten { path, reason } => eprintln!(
            "warning: the CelebA cache {} was not written ({reason}): the next run decodes the \
             images again",
            path.display()
        ),
    }
}

/// A loader's error: a [`steplab_data::DataError::InvalidConfig`] is a config error (exit 2, it
/// names the key), every other one a data error.
fn load_error(error: steplab_data::DataError) -> anyhow::Error {
    match error {
        steplab_data::DataError::InvalidConfig { .. } => ConfigError(error.to_string()).into(),
        other => other.into(),
    }
}

/// The CIFAR dataset a kind names, if it is one.
fn cifar_kind(kind: DatasetKind) -> Option<CifarKind> {
    match kind {
        DatasetKind::Cifar10 => Some(CifarKind::Cifar10),
        DatasetKind::Cifar100 => Some(CifarKind::Cifar100),
        _ => None,
    }
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

/// A batch assembled on the host (on the loader thread), ready to become tensors.
pub struct HostBatch {
    inputs: HostInputs,
    image: Option<[usize; 3]>,
    target: HostTarget,
    labels: Option<Vec<u32>>,
    len: usize,
}

enum HostInputs {
    /// Feature rows or image rows `[batch, values]`.
    Rows(TensorData),
    /// Token ids `[batch, steps]` (i32) and their mask (1 at real tokens, in the float dtype),
    /// cut to the batch's longest review.
    Tokens { ids: TensorData, mask: TensorData },
}

enum HostTarget {
    OneHot(TensorData),
    Values(TensorData),
    Reconstruction,
}

/// Rows of `features` as f32 or f64 values, in row order.
fn gather_values(features: &Features, rows: &[usize], dtype: DType) -> Values {
    match dtype {
        DType::F64 => Values::F64(features.gather_f64(rows)),
        _ => Values::F32(features.gather_f32(rows)),
    }
}

enum Values {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Values {
    fn into_data(self, shape: [usize; 2]) -> TensorData {
        match self {
            Self::F32(v) => TensorData::new(v, shape),
            Self::F64(v) => TensorData::new(v, shape),
        }
    }
}

/// Applies the pipeline's per-batch steps to gathered image rows: the augmentation of training
/// batches (`epoch` given), then normalisation.
fn transform<T: steplab_data::Real + Default>(
    values: Vec<T>,
    rows: &[usize],
    pipeline: &Pipeline,
    epoch: Option<u64>,
) -> Vec<T> {
    let Some(shape) = pipeline.image else {
        return values;
    };
    let mut values = match (pipeline.augment, epoch) {
        (Augment::CropFlip, Some(epoch)) => {
            steplab_data::crop_flip_batch(&values, shape, 4, pipeline.seed, epoch, rows)
        }
        _ => values,
    };
    if let Some((mean, std)) = pipeline.channels {
        steplab_data::normalize_channels(&mut values, shape, mean, std)
            .expect("checked by prepare; the rows are whole CIFAR images");
    }
    values
}

impl HostBatch {
    /// Gathers `rows` of `dataset` through `pipeline`, as `dtype` values; `epoch` is given for
    /// training batches (it keys their augmentation) and `None` for evaluation and probes.
    pub fn gather(
        dataset: &Dataset,
        rows: &[usize],
        pipeline: &Pipeline,
        dtype: DType,
        epoch: Option<u64>,
    ) -> Self {
        let features = &dataset.features;
        let inputs = match features.gather_tokens(rows) {
            Some((ids, lengths)) => token_batch(ids, &lengths, features.cols(), dtype),
            None => HostInputs::Rows(
                match gather_values(features, rows, dtype) {
                    Values::F32(v) => Values::F32(transform(v, rows, pipeline, epoch)),
                    Values::F64(v) => Values::F64(transform(v, rows, pipeline, epoch)),
                }
                .into_data([rows.len(), features.cols()]),
            ),
        };
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
                (HostTarget::OneHot(data), Some(picked))
            }
            Targets::Values(values) => (
                HostTarget::Values(
                    gather_values(values, rows, dtype).into_data([rows.len(), values.cols()]),
                ),
                None,
            ),
            Targets::Reconstruction => (HostTarget::Reconstruction, None),
        };
        Self {
            inputs,
            image: pipeline.image,
            target,
            labels,
            len: rows.len(),
        }
    }

    /// The batch as tensors on the run's device (images as `[batch, C, H, W]`).
    pub fn into_batch(self, compute: &Compute) -> Batch {
        let opts = (&compute.device, compute.dtype);
        let (inputs, rows) = match self.inputs {
            HostInputs::Rows(data) => {
                let rows: Tensor<2> = Tensor::from_data(data, opts);
                let inputs = match self.image {
                    Some([c, h, w]) => Input::Images(rows.clone().reshape([self.len, c, h, w])),
                    None => Input::Features(rows.clone()),
                };
                (inputs, Some(rows))
            }
            HostInputs::Tokens { ids, mask } => {
                let inputs = Input::Tokens {
                    ids: Tensor::<2, Int>::from_data(ids, &compute.device),
                    mask: Tensor::from_data(mask, opts),
                };
                (inputs, None)
            }
        };
        let target = match self.target {
            HostTarget::OneHot(data) => Target::OneHot(Tensor::from_data(data, opts)),
            HostTarget::Values(data) => Target::Values(Tensor::from_data(data, opts)),
            HostTarget::Reconstruction => {
                Target::Values(rows.expect("an autoencoder's inputs are rows"))
            }
        };
        Batch {
            inputs,
            target,
            labels: self.labels,
            len: self.len,
        }
    }
}

/// Token ids `[batch, max_len]` cut to the batch's longest review (at least one step), with
/// their mask: the steps past every review's end change no state, so they are not computed.
fn token_batch(ids: Vec<i32>, lengths: &[u32], max_len: usize, dtype: DType) -> HostInputs {
    let batch = lengths.len();
    let steps = (lengths.iter().copied().max().unwrap_or(0) as usize).clamp(1, max_len.max(1));
    let mut cut = Vec::with_capacity(batch * steps);
    let mut mask = Vec::with_capacity(batch * steps);
    for (row, &len) in lengths.iter().enumerate() {
        cut.extend_from_slice(&ids[row * max_len..row * max_len + steps]);
        mask.extend((0..steps).map(|t| f64::from(u8::from(t < len as usize))));
    }
    let mask = match dtype {
        DType::F64 => TensorData::new(mask, [batch, steps]),
        _ => TensorData::new(
            mask.into_iter().map(|m| m as f32).collect::<Vec<_>>(),
            [batch, steps],
        ),
    };
    HostInputs::Tokens {
        ids: TensorData::new(cut, [batch, steps]),
        mask,
    }
}

/// Gathers `rows` of `dataset` into tensors on the run's device, without augmentation (an
/// evaluation or held-out batch).
pub fn make_batch(
    dataset: &Dataset,
    rows: &[usize],
    pipeline: &Pipeline,
    compute: &Compute,
) -> Batch {
    HostBatch::gather(dataset, rows, pipeline, compute.dtype, None).into_batch(compute)
}

/// Batches queued ahead of the training step by the loader thread.
const PREFETCH: usize = 4;

/// The training batches of one epoch (`order` cut into batches of `batch_size`), gathered and
/// augmented on a loader thread a few batches ahead of the step (a bounded queue). Dropping the
/// receiver stops the thread.
pub fn prefetch(
    dataset: Arc<Dataset>,
    order: Vec<usize>,
    batch_size: usize,
    pipeline: Pipeline,
    dtype: DType,
    epoch: u64,
) -> Result<Receiver<HostBatch>> {
    let (tx, rx) = sync_channel(PREFETCH);
    std::thread::Builder::new()
        .name("batches".into())
        .spawn(move || {
            for rows in steplab_data::batches(&order, batch_size, false) {
                let batch = HostBatch::gather(&dataset, rows, &pipeline, dtype, Some(epoch));
                if tx.send(batch).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| anyhow::anyhow!("cannot start the batch loader thread: {e}"))?;
    Ok(rx)
}

/// Number of rows of `outputs` whose arg-max equals the label, or, for one output (a binary
/// logit), whose sign does (positive: class 1), counted on the device: a one-element integer
/// tensor, read back only when the count is needed (once per epoch), not per batch.
pub fn correct_on_device(outputs: Tensor<2>, labels: &[u32]) -> Tensor<1, Int> {
    let [batch, classes] = outputs.dims();
    let device = outputs.device();
    let labels: Vec<i32> = labels.iter().map(|&l| l as i32).collect();
    let labels = Tensor::<2, Int>::from_data(TensorData::new(labels, [batch, 1]), &device);
    let predicted = if classes == 1 {
        outputs.greater_elem(0.0).int()
    } else {
        outputs.argmax(1)
    };
    predicted.equal(labels).int().sum()
}

/// Adds the correct count of a batch (`outputs` against `labels`, [`correct_on_device`]) to a
/// running device total, which starts at `None`.
pub fn add_correct(total: &mut Option<Tensor<1, Int>>, outputs: Tensor<2>, labels: &[u32]) {
    let count = correct_on_device(outputs, labels);
    *total = Some(match total.take() {
        Some(sum) => sum.add(count),
        None => count,
    });
}

/// Reads a count of [`correct_on_device`] back (a sync).
pub fn read_count(count: Tensor<1, Int>) -> usize {
    let values = count
        .into_data()
        .try_into_vec_as::<i64>()
        .expect("an integer tensor converts to i64");
    values.first().map_or(0, |&v| v.max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendKind, Precision};

    #[test]
    fn correct_counts_arg_maxes_and_binary_logit_signs_on_every_cpu_backend() {
        for backend in [BackendKind::Ndarray, BackendKind::Flex] {
            let compute = crate::backend::compute(backend, Precision::F32).unwrap();
            let opts = (&compute.device, compute.dtype);
            let outputs: Tensor<2> = Tensor::from_data(
                TensorData::new(
                    vec![0.1f32, 0.7, 0.2, 0.9, 0.05, 0.05, 0.3, 0.3, 0.4],
                    [3, 3],
                ),
                opts,
            );
            // Row 0 → class 1 (right), row 1 → class 0 (wrong: label 2), row 2 → class 2 (right).
            assert_eq!(read_count(correct_on_device(outputs, &[1, 2, 2])), 2);
            let logits: Tensor<2> =
                Tensor::from_data(TensorData::new(vec![2.0f32, -1.0, 0.5, -0.1], [4, 1]), opts);
            // Positive logit: class 1.
            assert_eq!(read_count(correct_on_device(logits, &[1, 0, 0, 1])), 2);
        }
    }
}
