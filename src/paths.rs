//! Where models live, and where the addon itself is. The same rules are implemented in JS by `lib/paths.js` (used by
//! the CLI and the model fetch); keep the two in step: `__tests__/cli.test.js` compares them.

use std::path::{Path, PathBuf};

pub(crate) const MODELS_DIR_ENV: &str = "ORION_MODELS_DIR";
/// Read-only model directories searched first, separated like `PATH`.
pub(crate) const BUNDLED_DIRS_ENV: &str = "ORION_BUNDLED_MODELS_DIRS";

/// The read-only directories given to `configure({ bundledModelsDirs })`, else
/// `ORION_BUNDLED_MODELS_DIRS`: models shipped with an app, used in place (never copied
/// or downloaded again).
pub(crate) fn bundled_dirs() -> Vec<PathBuf> {
    if let Some(d) = crate::settings::settings().bundled_models_dirs {
        return d;
    }
    std::env::var_os(BUNDLED_DIRS_ENV)
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Where `rel` (a path relative to a models directory) is: in the first bundled
/// directory that has it, else in the models directory (where a download puts it).
pub(crate) fn locate(rel: &Path) -> PathBuf {
    locate_in(rel, &bundled_dirs(), &models_dir())
}

pub(crate) fn locate_in(rel: &Path, bundled: &[PathBuf], models_dir: &Path) -> PathBuf {
    if rel.is_absolute() {
        return rel.to_path_buf();
    }
    bundled
        .iter()
        .map(|d| d.join(rel))
        .find(|p| p.exists())
        .unwrap_or_else(|| models_dir.join(rel))
}

/// Why `rel` cannot name a file under a models directory, if it cannot: it must be a
/// relative path whose components are plain names (no `..`, no `.`, no root, no drive,
/// no empty component, no backslash, which Windows reads as a separator). Registry
/// entries come from files and `registerModel`; this keeps what they name (and what a
/// download writes) inside the directory.
pub(crate) fn check_relative(rel: &str) -> Result<(), String> {
    if rel.is_empty() {
        return Err("it is empty".into());
    }
    if rel.contains('\\') || rel.contains('\0') {
        return Err("it contains a backslash or a NUL byte".into());
    }
    if Path::new(rel).is_absolute() || rel.starts_with('/') {
        return Err("it is absolute; give a path relative to the models directory".into());
    }
    for part in rel.split('/') {
        match part {
            "" => return Err("it has an empty component (`//` or a trailing `/`)".into()),
            "." | ".." => return Err(format!("it has a `{part}` component")),
            // `C:x` is relative to a drive on Windows.
            p if cfg!(windows) && p.contains(':') => return Err("it names a drive".into()),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `path`, lexically under `root`, is still under it once the symbolic links
/// among its existing ancestors are followed. A link placed in the models directory
/// must not send a download elsewhere.
pub(crate) fn resolves_within(root: &Path, path: &Path) -> bool {
    let Ok(rest) = path.strip_prefix(root) else {
        return false;
    };
    if rest
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return false;
    }
    // Nothing under a directory that does not exist can be a link.
    let Ok(real_root) = std::fs::canonicalize(root) else {
        return !root.exists();
    };
    // The deepest ancestor of the file that exists (the file itself is replaced, not
    // followed: the download renames onto it).
    let existing = path
        .parent()
        .into_iter()
        .flat_map(Path::ancestors)
        .find(|a| std::fs::symlink_metadata(a).is_ok());
    match existing {
        Some(a) => std::fs::canonicalize(a).is_ok_and(|real| real.starts_with(&real_root)),
        None => false,
    }
}

/// The directory given to `configure()`, else `ORION_MODELS_DIR`, else a per-user cache
/// directory.
pub(crate) fn models_dir() -> PathBuf {
    if let Some(d) = crate::settings::settings().models_dir {
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

/// The directories searched for a model whose place in the models directory is `dir`,
/// for `MODEL_NOT_FOUND`: the same place in every bundled directory first, then `dir`.
/// A `dir` that is not under the models directory (a bundled copy, a `modelPath`) was
/// the only place looked at.
pub(crate) fn searched(dir: &Path) -> String {
    searched_in(dir, &bundled_dirs(), &models_dir())
}

fn searched_in(dir: &Path, bundled: &[PathBuf], models_dir: &Path) -> String {
    let Ok(rel) = dir.strip_prefix(models_dir) else {
        return dir.display().to_string();
    };
    bundled
        .iter()
        .map(|b| b.join(rel))
        .chain(std::iter::once(dir.to_path_buf()))
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", then ")
}

/// This addon's own file, as the dynamic loader opened it.
#[cfg(unix)]
pub(crate) fn addon_path() -> Option<PathBuf> {
    // SAFETY: `Dl_info` is plain C data for which all-zero is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let here = addon_path as *const libc::c_void;
    // SAFETY: `here` is an address inside this library's code and `info` is a valid,
    // writable `Dl_info`; dladdr only writes to it.
    if unsafe { libc::dladdr(here, std::ptr::addr_of_mut!(info)) } == 0 || info.dli_fname.is_null()
    {
        return None;
    }
    // SAFETY: dladdr succeeded and `dli_fname` is non-null: it points to a NUL-terminated
    // file name owned by the dynamic loader, valid while this library stays loaded.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    let path = PathBuf::from(name.to_string_lossy().into_owned());
    // Under `cargo test` this is the test executable, not an addon: no directory to search.
    path.is_absolute().then_some(path)
}

/// This addon's own file: the module that holds this function's code, as Windows loaded it.
#[cfg(windows)]
pub(crate) fn addon_path() -> Option<PathBuf> {
    use std::os::windows::ffi::OsStringExt;
    use windows_sys::Win32::System::LibraryLoader::{
        GetModuleFileNameW, GetModuleHandleExW, GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS,
        GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
    };
    let mut module = std::ptr::null_mut();
    // SAFETY: with FROM_ADDRESS the name argument is read as an address, here one inside
    // this module's code; UNCHANGED_REFCOUNT takes no reference that would need freeing.
    let found = unsafe {
        GetModuleHandleExW(
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
            addon_path as *const u16,
            std::ptr::addr_of_mut!(module),
        )
    };
    if found == 0 {
        return None;
    }
    // Long paths (`\\?\` prefixed) can reach 32,767 characters.
    let mut buf = vec![0u16; 32 * 1024];
    // SAFETY: `buf` is writable for `buf.len()` u16s and the call writes at most that many.
    let n = unsafe { GetModuleFileNameW(module, buf.as_mut_ptr(), buf.len() as u32) } as usize;
    if n == 0 || n >= buf.len() {
        return None;
    }
    let path = PathBuf::from(std::ffi::OsString::from_wide(&buf[..n]));
    path.is_absolute().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_searched_directories_are_every_bundled_one_then_the_models_directory() {
        let (a, b, m) = (
            PathBuf::from("/app/models"),
            PathBuf::from("/opt/models"),
            PathBuf::from("/cache/models"),
        );
        let bundled = [a, b];
        assert_eq!(
            searched_in(&m.join("all-MiniLM-L6-v2"), &bundled, &m),
            "/app/models/all-MiniLM-L6-v2, then /opt/models/all-MiniLM-L6-v2, then \
             /cache/models/all-MiniLM-L6-v2"
        );
        assert_eq!(searched_in(&m.join("x"), &[], &m), "/cache/models/x");
        // A bundled copy with a file missing, or a `modelPath`: only that directory.
        assert_eq!(
            searched_in(Path::new("/app/models/x"), &bundled, &m),
            "/app/models/x"
        );
        assert_eq!(searched_in(Path::new("/mine"), &bundled, &m), "/mine");
    }

    #[test]
    fn bundled_directories_come_first_and_the_models_directory_is_the_fallback() {
        let root = std::env::temp_dir().join(format!("orion-locate-{}", std::process::id()));
        let (a, b, m) = (root.join("a"), root.join("b"), root.join("m"));
        std::fs::create_dir_all(b.join("x")).unwrap();
        std::fs::create_dir_all(&a).unwrap();
        std::fs::write(b.join("x/model.gguf"), b"").unwrap();
        let bundled = vec![a.clone(), b.clone()];
        assert_eq!(
            locate_in(Path::new("x/model.gguf"), &bundled, &m),
            b.join("x/model.gguf")
        );
        assert_eq!(
            locate_in(Path::new("y/model.gguf"), &bundled, &m),
            m.join("y/model.gguf")
        );
        assert_eq!(
            locate_in(Path::new("/abs/f.gguf"), &bundled, &m),
            PathBuf::from("/abs/f.gguf")
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn only_plain_relative_names_stay_in_the_models_directory() {
        for ok in ["a.gguf", "dir/a.gguf", "a..b/c.gguf", ".hidden/x"] {
            assert_eq!(check_relative(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "../x.gguf",
            "a/../../x",
            "/etc/x",
            "a//b",
            "a/./b",
            "a/",
            "..",
            "a\\..\\b",
        ] {
            assert!(check_relative(bad).is_err(), "{bad:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_out_of_the_models_directory_is_seen() {
        let root = std::env::temp_dir().join(format!("orion-within-{}", std::process::id()));
        let (models, outside) = (root.join("models"), root.join("outside"));
        std::fs::create_dir_all(models.join("real")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, models.join("evil")).unwrap();
        assert!(resolves_within(&models, &models.join("real/x.gguf")));
        assert!(resolves_within(&models, &models.join("new/dir/x.gguf")));
        assert!(!resolves_within(&models, &models.join("evil/x.gguf")));
        assert!(!resolves_within(
            &models,
            &models.join("evil/deeper/x.gguf")
        ));
        assert!(!resolves_within(&models, &models.join("../outside/x.gguf")));
        assert!(!resolves_within(&models, &outside.join("x.gguf")));
        // A models directory not made yet holds no links.
        assert!(resolves_within(
            &root.join("none"),
            &root.join("none/a/x.gguf")
        ));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
