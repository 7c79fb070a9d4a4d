//! Settings a program gives from code (`configure()`), for the whole process, and what
//! they decide that every floor needs to know (where models live, whether downloads
//! are allowed). A leaf lock.

use std::path::PathBuf;

/// Settings a program gives from code (`configure()`), for the whole process: a worker's
/// `process.env` is its own copy, so environment variables set there never reach the
/// addon, while these do. Each one, when set, wins over its environment variable.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Settings {
    /// Where models live (`ORION_MODELS_DIR`).
    pub(crate) models_dir: Option<PathBuf>,
    /// The ONNX Runtime library to load (`ORT_DYLIB_PATH`).
    pub(crate) ort_library_path: Option<PathBuf>,
    /// The quantization level chosen for every model (`ORION_DEFAULT_QUANTIZATION`).
    pub(crate) default_quantization: Option<String>,
    /// Read-only model directories searched before the models directory
    /// (`ORION_BUNDLED_MODELS_DIRS`): models an app ships in its resources.
    pub(crate) bundled_models_dirs: Option<Vec<PathBuf>>,
    /// Whether a model missing from disk may be downloaded when it is first used
    /// (`ORION_ALLOW_DOWNLOADS`); see [`downloads_allowed`].
    pub(crate) allow_downloads: Option<bool>,
    /// Which device llama.cpp runs models on (`ORION_GPU`); see [`gpu`].
    pub(crate) gpu: Option<Gpu>,
}

/// Which device llama.cpp runs models on: `configure({ gpu })`, else `ORION_GPU`, else
/// `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gpu {
    /// The best GPU device a loaded backend offers, else the CPU.
    Auto,
    /// The CPU only, even where a GPU backend is loaded.
    Off,
    /// A device of this backend, or the error `GPU_UNAVAILABLE`.
    Vulkan,
    /// A device of this backend, or the error `GPU_UNAVAILABLE`.
    Cuda,
    /// A device of this backend, or the error `GPU_UNAVAILABLE`.
    Metal,
}

impl Gpu {
    /// The values `configure({ gpu })` takes, for messages.
    pub(crate) const EXPECTED: &'static str = "'auto', 'vulkan', 'cuda', 'metal' or false";

    /// A backend's name as `configure()` takes it.
    pub(crate) fn named(name: &str) -> Option<Self> {
        Some(match name {
            "auto" => Self::Auto,
            "vulkan" => Self::Vulkan,
            "cuda" => Self::Cuda,
            "metal" => Self::Metal,
            _ => return None,
        })
    }

    /// `ORION_GPU`'s value: a name, or a false-like word for the CPU.
    pub(crate) fn from_env(value: &str) -> Option<Self> {
        let v = value.trim().to_ascii_lowercase();
        match v.as_str() {
            "" | "true" | "1" => Some(Self::Auto),
            "false" | "0" | "off" | "cpu" | "none" => Some(Self::Off),
            _ => Self::named(&v),
        }
    }

    /// As `configure()` reports it: the name, or `false`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Off => "false",
            Self::Vulkan => "vulkan",
            Self::Cuda => "cuda",
            Self::Metal => "metal",
        }
    }

    /// The ggml backend names (as devices report them) this choice asks for.
    pub(crate) fn backends(self) -> &'static [&'static str] {
        match self {
            Self::Vulkan => &["Vulkan"],
            Self::Cuda => &["CUDA"],
            // ggml-metal registers as "MTL" (older builds: "Metal").
            Self::Metal => &["MTL", "Metal"],
            Self::Auto | Self::Off => &[],
        }
    }
}

impl<'de> serde::Deserialize<'de> for Gpu {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Gpu;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(Gpu::EXPECTED)
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> std::result::Result<Gpu, E> {
                Ok(if v { Gpu::Auto } else { Gpu::Off })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Gpu, E> {
                Gpu::named(v).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// Turns the GPU choice for the whole process: see [`Gpu`].
pub(crate) const GPU_ENV: &str = "ORION_GPU";

/// The GPU choice in effect. An `ORION_GPU` that names nothing known is an
/// `INVALID_OPTION` error, so that a typo never silently runs on the CPU.
pub(crate) fn gpu() -> crate::error::Result<Gpu> {
    if let Some(g) = settings().gpu {
        return Ok(g);
    }
    match std::env::var(GPU_ENV) {
        Err(_) => Ok(Gpu::Auto),
        Ok(v) => Gpu::from_env(&v).ok_or_else(|| {
            crate::error::OrionError::InvalidOption(format!(
                "{GPU_ENV}={} is not one of auto, vulkan, cuda, metal, false",
                crate::error::echo(&v)
            ))
        }),
    }
}

/// A leaf lock: nothing is taken while it is held.
static SETTINGS: parking_lot::RwLock<Settings> = parking_lot::RwLock::new(Settings {
    models_dir: None,
    ort_library_path: None,
    default_quantization: None,
    bundled_models_dirs: None,
    allow_downloads: None,
    gpu: None,
});

/// The settings given from code so far.
pub(crate) fn settings() -> Settings {
    SETTINGS.read().clone()
}

/// Replace the settings given in `update` (a `None` leaves that one as it was).
pub(crate) fn configure(update: Settings) -> Settings {
    let mut s = SETTINGS.write();
    if update.models_dir.is_some() {
        s.models_dir = update.models_dir;
    }
    if update.ort_library_path.is_some() {
        s.ort_library_path = update.ort_library_path;
    }
    if update.default_quantization.is_some() {
        s.default_quantization = update.default_quantization;
    }
    if update.bundled_models_dirs.is_some() {
        s.bundled_models_dirs = update.bundled_models_dirs;
    }
    if update.allow_downloads.is_some() {
        s.allow_downloads = update.allow_downloads;
    }
    if update.gpu.is_some() {
        s.gpu = update.gpu;
    }
    s.clone()
}

/// Turns downloads on for the whole process when set to `1` or `true`.
pub(crate) const ALLOW_DOWNLOADS_ENV: &str = "ORION_ALLOW_DOWNLOADS";

/// Whether a model file missing from disk may be downloaded when a model is first used.
/// Off unless asked for (`configure({ allowDownloads: true })`, `ORION_ALLOW_DOWNLOADS=1`,
/// or `npx orion-native models pull`): nothing leaves the machine behind the user's back.
pub(crate) fn downloads_allowed() -> bool {
    settings().allow_downloads.unwrap_or_else(|| {
        std::env::var(ALLOW_DOWNLOADS_ENV)
            .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
    })
}
