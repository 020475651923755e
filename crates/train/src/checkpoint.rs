//! Checkpoints: the whole [`TrainState`] and the resolved config in one file of the run
//! directory, `checkpoint.safetensors`.
//!
//! The file is a [safetensors](https://huggingface.co/docs/safetensors) file, readable by any
//! safetensors reader: the weights as `param/<name>`, the model's state as `state/<name>`, the
//! optimizer's buffers as `optimizer/<buffer>/<index>`, each in the dtype it is kept in (a
//! 40M-parameter Adam state in f32 is 480 MB, not widened). Its metadata holds the resolved
//! config (`config`, TOML) and a JSON header (`steplab`) with the counters, the epoch's partial
//! totals, the optimizer's scalars, the fingerprints of the data splits and a CRC-32 of every
//! tensor's bytes, so a truncated or corrupted file is detected and named on load. Floats in the
//! header are written as the shortest text that parses back to the same bits (`inf` and `NaN`
//! included).
//!
//! Writing goes to a temporary file beside the checkpoint, which is flushed to the disk
//! (`fsync`) and then renamed over it, so a crash or a full disk mid-write leaves the previous
//! checkpoint as it was. Each tensor is read back from the device one at a time while writing:
//! the host holds one tensor's bytes, not a copy of the whole state.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::{DType, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors, View};
use serde::{Deserialize, Serialize};
use steplab_models::Model;
use steplab_optim::OptimizerState;

use crate::output::format_f64;
use crate::passes::{SetLoss, TermTotals};
use crate::state::{EpochTotals, Position, TrainState};

/// The checkpoint's file name inside the run directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";

/// The temporary file a checkpoint is written to before it is renamed into place.
pub const CHECKPOINT_TMP: &str = "checkpoint.safetensors.tmp";

/// The `format` of the header this version writes and reads.
const FORMAT: &str = "steplab-checkpoint/1";

/// The counters, totals and scalars of a checkpoint (its `steplab` metadata, JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    step: u64,
    epoch: usize,
    batch: usize,
    loss_summed: bool,
    loss_total: String,
    samples: usize,
    correct: usize,
    labelled: bool,
    /// The epoch's totals of the objective's named terms (absent before they existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    part_totals: Vec<String>,
    epoch_seconds: String,
    last_lr: String,
    train_seconds: String,
    /// The early-stopping metric's best value so far and its epoch.
    best: Option<(String, usize)>,
    optimizer_kind: String,
    optimizer_scalars: BTreeMap<String, String>,
    /// Buffer name → number of tensors.
    optimizer_buffers: BTreeMap<String, usize>,
    /// Split name → [`steplab_data::Dataset::fingerprint`].
    data: BTreeMap<String, String>,
    /// Tensor name → CRC-32 of its bytes.
    crc32: BTreeMap<String, u32>,
}

/// A checkpoint read back and verified.
pub struct Checkpoint {
    /// Where it was read from.
    pub path: PathBuf,
    /// The resolved config it was written with (TOML).
    pub config_text: String,
    header: Header,
    tensors: HashMap<String, TensorData>,
}

/// One tensor of the state, read from the device when the file is written.
struct DeviceView {
    tensor: Tensor<1>,
    dtype: Dtype,
    shape: [usize; 1],
    bytes: usize,
}

impl View for DeviceView {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        let (_, data) = host_data(&self.tensor).expect("checked when the view was made");
        Cow::Owned(data.as_bytes().to_vec())
    }
    fn data_len(&self) -> usize {
        self.bytes
    }
}

/// The tensor's values on the host in a dtype safetensors names (f32 for Burn's `Flex32`).
fn host_data(tensor: &Tensor<1>) -> Result<(Dtype, TensorData)> {
    let data = tensor.to_data();
    let (dtype, data) = match data.dtype() {
        DType::F64 => (Dtype::F64, data),
        DType::F32 => (Dtype::F32, data),
        DType::Flex32 => (Dtype::F32, data.convert_dtype(DType::F32)),
        DType::F16 => (Dtype::F16, data),
        DType::BF16 => (Dtype::BF16, data),
        other => bail!("a tensor of dtype {other:?} cannot be checkpointed"),
    };
    Ok((dtype, data))
}

fn burn_dtype(dtype: Dtype) -> Option<DType> {
    Some(match dtype {
        Dtype::F64 => DType::F64,
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        _ => return None,
    })
}

fn parse_f64(text: &str, what: &str) -> Result<f64> {
    text.parse()
        .map_err(|_| anyhow!("`{what}` is not a number: {text:?}"))
}

/// Writes `state` and `config_toml` to `dir`'s checkpoint (through a temporary file, fsynced and
/// renamed), with the data splits' fingerprints; returns the file's size in bytes.
/// `abort_before_rename` is fault injection for the tests: the process aborts with the
/// temporary file written and the rename not done, as a crash mid-write would leave it.
pub fn save(
    dir: &Path,
    config_toml: &str,
    state: &TrainState,
    model: &dyn Model,
    data: &BTreeMap<String, String>,
    abort_before_rename: bool,
) -> Result<u64> {
    let path = dir.join(CHECKPOINT_FILE);
    let tmp = dir.join(CHECKPOINT_TMP);
    let optimizer = state.optimizer.state();
    let mut named: Vec<(String, Tensor<1>)> = Vec::new();
    for (spec, t) in model.param_specs().iter().zip(&state.params) {
        named.push((format!("param/{}", spec.name), t.clone()));
    }
    for (spec, t) in model.state_specs().iter().zip(&state.model_state) {
        named.push((format!("state/{}", spec.name), t.clone()));
    }
    for (name, buffer) in &optimizer.buffers {
        for (i, t) in buffer.iter().enumerate() {
            named.push((format!("optimizer/{name}/{i}"), t.clone()));
        }
    }
    let mut crc32 = BTreeMap::new();
    let mut views = Vec::with_capacity(named.len());
    for (name, tensor) in named {
        let (dtype, host) = host_data(&tensor).with_context(|| format!("checkpoint: {name}"))?;
        crc32.insert(name.clone(), crc32fast::hash(host.as_bytes()));
        let view = DeviceView {
            shape: [tensor.dims()[0]],
            bytes: host.as_bytes().len(),
            tensor,
            dtype,
        };
        views.push((name, view));
    }
    let totals = &state.totals;
    let header = Header {
        format: FORMAT.into(),
        step: state.position.step,
        epoch: state.position.epoch,
        batch: state.position.batch,
        loss_summed: totals.loss.summed,
        loss_total: format_f64(totals.loss.total),
        samples: totals.loss.samples,
        correct: totals.correct(),
        labelled: totals.labelled,
        part_totals: totals.parts.0.iter().map(|&v| format_f64(v)).collect(),
        epoch_seconds: format_f64(totals.seconds),
        last_lr: format_f64(state.last_lr),
        train_seconds: format_f64(state.train_seconds),
        best: state.stopping.best.map(|(v, e)| (format_f64(v), e)),
        optimizer_kind: optimizer.kind.clone(),
        optimizer_scalars: optimizer
            .scalars
            .iter()
            .map(|(k, v)| (k.clone(), format_f64(*v)))
            .collect(),
        optimizer_buffers: optimizer
            .buffers
            .iter()
            .map(|(k, v)| (k.clone(), v.len()))
            .collect(),
        data: data.clone(),
        crc32,
    };
    let metadata = HashMap::from([
        (
            "steplab".to_string(),
            serde_json::to_string(&header).context("checkpoint header")?,
        ),
        ("config".to_string(), config_toml.to_string()),
    ]);
    // safetensors writes through a private temporary file (mode 0600); the checkpoint takes the
    // permissions the run's other files got from the user's umask (those of config.toml).
    let permissions = std::fs::metadata(dir.join("config.toml")).map(|m| m.permissions());
    let written = safetensors::serialize_to_file(views, Some(metadata), &tmp)
        .map_err(|e| anyhow!("{e}"))
        .and_then(|()| {
            if let Ok(permissions) = permissions {
                std::fs::set_permissions(&tmp, permissions)?;
            }
            let file = std::fs::File::open(&tmp)?;
            file.sync_all()?;
            Ok(file.metadata()?.len())
        })
        .with_context(|| format!("cannot write checkpoint {}", tmp.display()));
    let size = match written {
        Ok(size) => size,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if abort_before_rename {
        std::process::abort();
    }
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))?;
    // The rename itself reaches the disk with the directory.
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(size)
}

/// The size in bytes a checkpoint of `state` takes (tensor bytes; the header adds a few KB).
pub fn tensor_bytes(state: &TrainState) -> u64 {
    let size = |ts: &[Tensor<1>]| -> u64 {
        ts.iter()
            .map(|t| (t.dims()[0] * t.dtype().size()) as u64)
            .sum()
    };
    let optimizer = state.optimizer.state();
    size(&state.params)
        + size(&state.model_state)
        + optimizer.buffers.values().map(|b| size(b)).sum::<u64>()
}

impl Checkpoint {
    /// Reads and verifies `dir`'s checkpoint: the safetensors structure, the header, and every
    /// tensor's CRC. `Ok(None)` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(CHECKPOINT_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Self::parse(&bytes, path.clone()).map(Some).map_err(|e| {
            anyhow!(
                "{}: corrupt or truncated checkpoint ({e:#}); resume is not possible from it: \
                 start the run again with --overwrite",
                path.display()
            )
        })
    }

    /// The counters.
    pub fn position(&self) -> Position {
        Position {
            step: self.header.step,
            epoch: self.header.epoch,
            batch: self.header.batch,
        }
    }

    /// Fingerprints of the data splits it was trained on.
    pub fn data(&self) -> &BTreeMap<String, String> {
        &self.header.data
    }

    fn parse(bytes: &[u8], path: PathBuf) -> Result<Self> {
        let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| anyhow!("{e}"))?;
        let info = metadata
            .metadata()
            .as_ref()
            .ok_or_else(|| anyhow!("no metadata"))?;
        let header_text = info
            .get("steplab")
            .ok_or_else(|| anyhow!("no `steplab` header: not a steplab checkpoint"))?;
        let header: Header =
            serde_json::from_str(header_text).context("the `steplab` header does not parse")?;
        if header.format != FORMAT {
            bail!("format `{}`, this version reads `{FORMAT}`", header.format);
        }
        let config_text = info
            .get("config")
            .ok_or_else(|| anyhow!("no `config`"))?
            .clone();
        let file = SafeTensors::deserialize(bytes).map_err(|e| anyhow!("{e}"))?;
        let mut tensors = HashMap::new();
        for (name, view) in file.tensors() {
            let expected = header
                .crc32
                .get(&name)
                .ok_or_else(|| anyhow!("tensor `{name}` has no checksum"))?;
            if crc32fast::hash(view.data()) != *expected {
                bail!("tensor `{name}` fails its checksum");
            }
            let dtype = burn_dtype(view.dtype())
                .ok_or_else(|| anyhow!("tensor `{name}` has dtype {:?}", view.dtype()))?;
            if view.shape().len() != 1 {
                bail!("tensor `{name}` is not flat: shape {:?}", view.shape());
            }
            let data = TensorData::from_bytes_vec(view.data().to_vec(), [view.shape()[0]], dtype);
            tensors.insert(name, data);
        }
        if let Some(name) = header.crc32.keys().find(|n| !tensors.contains_key(*n)) {
            bail!("tensor `{name}` is missing");
        }
        Ok(Self {
            path,
            config_text,
            header,
            tensors,
        })
    }

    fn take(&mut self, name: &str, numel: usize) -> Result<TensorData> {
        let data = self
            .tensors
            .remove(name)
            .ok_or_else(|| anyhow!("it has no tensor `{name}`"))?;
        if data.shape().num_elements() != numel {
            bail!(
                "tensor `{name}` has {} values, the model's has {numel}",
                data.shape().num_elements()
            );
        }
        Ok(data)
    }

    /// Puts the checkpoint's weights, model state, optimizer state, counters and totals into
    /// `state` (a fresh state of the same experiment), on `state`'s device and dtype.
    pub fn restore(
        mut self,
        state: &mut TrainState,
        model: &dyn Model,
        device: &burn::tensor::Device,
        dtype: DType,
    ) -> Result<()> {
        let path = self.path.clone();
        let result = (|| -> Result<()> {
            let to_device = |data: TensorData| Tensor::<1>::from_data(data, (device, dtype));
            let mut params = Vec::new();
            for spec in model.param_specs() {
                params.push(to_device(
                    self.take(&format!("param/{}", spec.name), spec.numel())?,
                ));
            }
            let mut model_state = Vec::new();
            for spec in model.state_specs() {
                let numel = spec.shape.iter().product();
                model_state.push(to_device(
                    self.take(&format!("state/{}", spec.name), numel)?,
                ));
            }
            let header = self.header.clone();
            let mut optimizer = OptimizerState::new(&header.optimizer_kind);
            for (name, text) in &header.optimizer_scalars {
                optimizer
                    .scalars
                    .insert(name.clone(), parse_f64(text, name)?);
            }
            for (name, count) in &header.optimizer_buffers {
                let mut buffer = Vec::new();
                for i in 0..*count {
                    let key = format!("optimizer/{name}/{i}");
                    let data = self
                        .tensors
                        .remove(&key)
                        .ok_or_else(|| anyhow!("it has no tensor `{key}`"))?;
                    buffer.push(to_device(data));
                }
                optimizer.buffers.insert(name.clone(), buffer);
            }
            if let Some(name) = self.tensors.keys().next() {
                bail!("it has a tensor `{name}` this model does not");
            }
            state
                .optimizer
                .load_state(&optimizer, device, dtype)
                .map_err(|e| anyhow!("{e}"))?;
            state.params = params;
            state.model_state = model_state;
            state.position = self.position();
            state.totals = EpochTotals {
                loss: SetLoss {
                    summed: header.loss_summed,
                    total: parse_f64(&header.loss_total, "loss_total")?,
                    samples: header.samples,
                },
                correct: header.correct,
                pending: None,
                labelled: header.labelled,
                parts: match header.part_totals.len() {
                    0 => TermTotals::new(model),
                    n if n == model.loss_parts().len() => TermTotals(
                        header
                            .part_totals
                            .iter()
                            .map(|v| parse_f64(v, "part_totals"))
                            .collect::<Result<_>>()?,
                    ),
                    n => bail!(
                        "it has {n} loss-term totals, this model has {}",
                        model.loss_parts().len()
                    ),
                },
                seconds: parse_f64(&header.epoch_seconds, "epoch_seconds")?,
            };
            state.last_lr = parse_f64(&header.last_lr, "last_lr")?;
            state.train_seconds = parse_f64(&header.train_seconds, "train_seconds")?;
            state.stopping.best = match &header.best {
                Some((v, e)) => Some((parse_f64(v, "best")?, *e)),
                None => None,
            };
            Ok(())
        })();
        result.with_context(|| format!("{}: the checkpoint does not fit this run", path.display()))
    }
}
