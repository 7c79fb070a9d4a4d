//! Where models live. The same rules are implemented in JS by `lib/paths.js` (used by
//! the CLI and the model fetch); keep the two in step: `__tests__/cli.test.js` compares them.

use std::path::PathBuf;

pub(crate) const MODELS_DIR_ENV: &str = "ORION_MODELS_DIR";

/// The directory given to `configure()`, else `ORION_MODELS_DIR`, else a per-user cache
/// directory.
pub(crate) fn models_dir() -> PathBuf {
    if let Some(d) = crate::runtime::settings().models_dir {
        return d;
    }
    match std::env::var_os(MODELS_DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => default_cache_dir().join("models"),
    }
}

/// `$XDG_CACHE_HOME/orion-native` (or `~/.cache/orion-native`) on Linux,
/// `~/Library/Caches/orion-native` on macOS, `%LOCALAPPDATA%\orion-native` on Windows.
pub(crate) fn default_cache_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = env("HOME")
        .or_else(|| env("USERPROFILE"))
        .unwrap_or_else(std::env::temp_dir);
    let base = if cfg!(windows) {
        env("LOCALAPPDATA").unwrap_or_else(|| home.join("AppData").join("Local"))
    } else if cfg!(target_os = "macos") {
        home.join("Library").join("Caches")
    } else {
        env("XDG_CACHE_HOME").unwrap_or_else(|| home.join(".cache"))
    };
    base.join("orion-native")
}
