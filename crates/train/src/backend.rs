//! Picks the Burn device and float type from `run.backend` and `run.precision`.

use burn::tensor::{DType, Device, FloatDType};

use crate::config::{BackendKind, ConfigError, Precision};

/// The CPU backend used when `run.backend` is not set: the faster one on the README's benchmark.
#[cfg(feature = "flex")]
pub const DEFAULT_CPU: BackendKind = BackendKind::Flex;
/// The CPU backend used when `run.backend` is not set.
#[cfg(not(feature = "flex"))]
pub const DEFAULT_CPU: BackendKind = BackendKind::Ndarray;

/// Where tensors live and in which float type.
#[derive(Debug, Clone)]
pub struct Compute {
    /// The (non-autodiff) device.
    pub device: Device,
    /// The float dtype of every tensor the run creates.
    pub dtype: DType,
}

/// The device and dtype for a run; errors name `run.backend` / `run.precision`.
pub fn compute(backend: BackendKind, precision: Precision) -> Result<Compute, ConfigError> {
    let device = match backend {
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)] // deprecated upstream in favour of flex; kept working here
        BackendKind::Ndarray => Device::ndarray(),
        #[cfg(feature = "flex")]
        BackendKind::Flex => Device::flex(),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => Device::wgpu(Default::default()),
        #[allow(unreachable_patterns)]
        other => {
            return Err(ConfigError::key(
                "run.backend",
                format!(
                    "`{}` is not compiled into this binary (rebuild with `--features {}`)",
                    name(other),
                    name(other)
                ),
            ));
        }
    };
    #[cfg(feature = "wgpu")]
    if backend == BackendKind::Wgpu {
        check_adapter(&device)?;
    }
    let (dtype, float) = match precision {
        Precision::F32 => (DType::F32, FloatDType::F32),
        Precision::F64 => (DType::F64, FloatDType::F64),
    };
    if !device.supports_dtype(dtype) {
        return Err(ConfigError::key(
            "run.precision",
            format!("{} does not support {dtype:?}", name(backend)),
        ));
    }
    // Tensors are created with an explicit dtype; the device default is set too, for any op
    // that creates one without. It can be set once per device and process: a second run in
    // the same process keeps the first setting, which explicit dtypes make harmless.
    let mut configured = device.clone();
    let _ = configured.configure(float);
    Ok(Compute { device, dtype })
}

/// Fails with a clear message when wgpu finds no adapter (its first use panics otherwise).
#[cfg(feature = "wgpu")]
fn check_adapter(device: &Device) -> Result<(), ConfigError> {
    let probe = device.clone();
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let found = std::panic::catch_unwind(move || probe.supports_dtype(DType::F32)).is_ok();
    std::panic::set_hook(quiet);
    if found {
        Ok(())
    } else {
        Err(ConfigError::key(
            "run.backend",
            "wgpu found no usable graphics adapter (without a GPU, Mesa's software Vulkan \
             driver provides one: `apt-get install mesa-vulkan-drivers`)",
        ))
    }
}

/// The config name of a backend.
pub fn name(backend: BackendKind) -> &'static str {
    match backend {
        BackendKind::Ndarray => "ndarray",
        BackendKind::Flex => "flex",
        BackendKind::Wgpu => "wgpu",
    }
}
