//! `configure()`: process-wide settings from code, for every thread.

use super::js_error;
use super::options::Options;
use crate::error::{echo, OrionError};
use crate::settings::{self, Settings};
use crate::store::quant;
use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;
use std::path::PathBuf;

const CONFIGURE_OPTIONS: &[&str] = &[
    "modelsDir",
    "ortLibraryPath",
    "defaultQuantization",
    "bundledModelsDirs",
    "allowDownloads",
];

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
        let o = Options::parse(options, "options", CONFIGURE_OPTIONS)?;
        let path = |key: &str| -> std::result::Result<Option<PathBuf>, OrionError> {
            match o.string(key)? {
                Some(p) if p.is_empty() || p.contains('\0') => Err(OrionError::InvalidOption(
                    format!("{key} must be a non-empty path, got {}", echo(&p)),
                )),
                Some(p) => Ok(Some(PathBuf::from(p))),
                None => Ok(None),
            }
        };
        let default_quantization = match o.string("defaultQuantization")? {
            Some(l) => Some(quant::level(&l)?.name.to_string()),
            None => None,
        };
        let bundled_models_dirs = match o.strings("bundledModelsDirs")? {
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
            models_dir: path("modelsDir")?,
            ort_library_path: path("ortLibraryPath")?,
            default_quantization,
            bundled_models_dirs,
            allow_downloads: o.boolean("allowDownloads")?,
        };
        let s = settings::configure(update);
        Ok(Configuration {
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
