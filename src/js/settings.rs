//! `configure()`: process-wide settings from code, for every thread.

use super::js_error;
use super::options::read;
use crate::error::{echo, OrionError};
use crate::settings::{self, Settings};
use crate::store::quant;
use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;
use serde::Deserialize;
use std::path::PathBuf;

/// Options of `configure()`: each one given wins over its environment variable; those
/// left out keep their value.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigureOptions {
    /// Where models live (else `ORION_MODELS_DIR`, else the per-user cache directory).
    pub models_dir: Option<String>,
    /// The ONNX Runtime shared library to load (else `ORT_DYLIB_PATH`, else the one the
    /// platform package ships).
    pub ort_library_path: Option<String>,
    /// The quantization level for every model (else `ORION_DEFAULT_QUANTIZATION`, else
    /// chosen from the machine).
    #[napi(ts_type = "QuantizationLevel")]
    pub default_quantization: Option<String>,
    /// Read-only model directories searched before `modelsDir`, in order: models an app
    /// ships in its resources, used in place (never copied or downloaded again). Else
    /// `ORION_BUNDLED_MODELS_DIRS` (separated like `PATH`).
    pub bundled_models_dirs: Option<Vec<String>>,
    /// Download a model missing from disk when it is first used (else
    /// `ORION_ALLOW_DOWNLOADS`; default false: nothing leaves the machine unless asked).
    pub allow_downloads: Option<bool>,
    /// The device llama.cpp runs models on (else `ORION_GPU`, else `'auto'`): `'auto'`
    /// takes the best GPU device a loaded backend offers, else the CPU; a backend's name
    /// takes a device of that backend, and loads fail with `GPU_UNAVAILABLE` (saying
    /// why) where it has none; `false` keeps models on the CPU.
    #[napi(ts_type = "'auto' | 'vulkan' | 'cuda' | 'metal' | boolean")]
    pub gpu: Option<crate::settings::Gpu>,
}

/// The process's settings, as `configure()` returns them: what is in effect now, from
/// code or else from the environment.
#[napi(object)]
pub struct Configuration {
    pub models_dir: String,
    pub ort_library_path: Option<String>,
    pub default_quantization: Option<String>,
    pub bundled_models_dirs: Vec<String>,
    /// Whether models missing from disk are downloaded when first used.
    pub allow_downloads: bool,
    /// The GPU choice in effect.
    #[napi(ts_type = "'auto' | 'vulkan' | 'cuda' | 'metal' | false")]
    pub gpu: Either<String, bool>,
}

/// Set process-wide settings from code, once for the whole process: every worker_thread
/// sees them (a worker's `process.env` is its own copy and never reaches the addon).
/// Each given setting wins over its environment variable; settings left out keep their
/// value. Returns the settings in effect. Throws `INVALID_OPTION` on a bad value.
#[napi(ts_args_type = "options?: ConfigureOptions", catch_unwind)]
// The doc comment is copied into index.d.ts as it is written.
#[allow(clippy::doc_markdown)]
pub fn configure(env: Env, options: Option<Unknown>) -> Result<Configuration> {
    let run = || -> std::result::Result<Configuration, OrionError> {
        let (o, _): (ConfigureOptions, _) = read(options, "options")?;
        let path = |key: &str,
                    given: Option<String>|
         -> std::result::Result<Option<PathBuf>, OrionError> {
            match given {
                Some(p) if p.is_empty() || p.contains('\0') => Err(OrionError::InvalidOption(
                    format!("{key} must be a non-empty path, got {}", echo(&p)),
                )),
                Some(p) => Ok(Some(PathBuf::from(p))),
                None => Ok(None),
            }
        };
        let default_quantization = match o.default_quantization {
            Some(l) => Some(quant::level(&l)?.name.to_string()),
            None => None,
        };
        let bundled_models_dirs = match o.bundled_models_dirs {
            Some(dirs) => Some(
                dirs.into_iter()
                    .map(|d| {
                        if d.is_empty() || d.contains('\0') {
                            Err(OrionError::InvalidOption(format!(
                                "bundledModelsDirs must hold non-empty paths, got {}",
                                echo(&d)
                            )))
                        } else {
                            Ok(PathBuf::from(d))
                        }
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        let update = Settings {
            models_dir: path("modelsDir", o.models_dir)?,
            ort_library_path: path("ortLibraryPath", o.ort_library_path)?,
            default_quantization,
            bundled_models_dirs,
            allow_downloads: o.allow_downloads,
            gpu: o.gpu,
        };
        let s = settings::configure(update);
        let gpu = match settings::gpu()? {
            settings::Gpu::Off => Either::B(false),
            g => Either::A(g.label().to_string()),
        };
        Ok(Configuration {
            gpu,
            allow_downloads: settings::downloads_allowed(),
            models_dir: crate::paths::models_dir().to_string_lossy().into_owned(),
            ort_library_path: s
                .ort_library_path
                .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
                .map(|p| p.to_string_lossy().into_owned()),
            bundled_models_dirs: crate::paths::bundled_dirs()
                .into_iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
            default_quantization: s.default_quantization.or_else(|| {
                std::env::var(crate::llm::strategy::DEFAULT_QUANTIZATION_ENV)
                    .ok()
                    .filter(|v| !v.trim().is_empty())
            }),
        })
    };
    run().map_err(|e| js_error(&env, &e))
}
