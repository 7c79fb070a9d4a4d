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
}

/// A leaf lock: nothing is taken while it is held.
static SETTINGS: parking_lot::RwLock<Settings> = parking_lot::RwLock::new(Settings {
    models_dir: None,
    ort_library_path: None,
    default_quantization: None,
    bundled_models_dirs: None,
    allow_downloads: None,
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
