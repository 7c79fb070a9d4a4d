//! Where the ONNX Runtime shared library is. The addon finds it by itself, from the
//! file system, so that it works whatever installed it (npm, a copied Electron bundle,
//! a checkout) and on every Node version: no JS module resolution is involved.
//!
//! Order: an explicit path (`configure({ ortLibraryPath })` or `ORT_DYLIB_PATH`), which
//! is then the only candidate; the addon's own directory (the platform package ships the
//! library there); an `onnxruntime-node` package in a `node_modules` above the addon; the
//! system library through the dynamic loader's search path.

use std::path::{Path, PathBuf};

/// The library's file names on this platform, most specific first.
pub(crate) fn library_names() -> &'static [&'static str] {
    if cfg!(windows) {
        &["onnxruntime.dll"]
    } else if cfg!(target_os = "macos") {
        &["libonnxruntime.dylib"]
    } else {
        &["libonnxruntime.so.1", "libonnxruntime.so"]
    }
}

/// Every place to try, in order. `explicit` (from `configure()`) wins over
/// `ORT_DYLIB_PATH`; either one is then the only candidate, since quietly loading some
/// other library than the one asked for would hide a configuration mistake.
pub(crate) fn candidates(explicit: Option<PathBuf>) -> Vec<PathBuf> {
    let explicit = explicit.or_else(|| {
        std::env::var_os("ORT_DYLIB_PATH")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    });
    if let Some(p) = explicit {
        return vec![p];
    }
    let mut out = Vec::new();
    if let Some(dir) = addon_path().as_deref().and_then(Path::parent) {
        out.extend(library_names().iter().map(|n| dir.join(n)));
        out.extend(in_onnxruntime_node_above(dir));
    }
    out.extend(library_names().iter().map(PathBuf::from));
    out
}

/// The CPU library inside an `onnxruntime-node` package found the way Node would find
/// the package from `dir`: `node_modules/onnxruntime-node` in `dir` or any parent.
pub(crate) fn in_onnxruntime_node_above(dir: &Path) -> Vec<PathBuf> {
    let (platform, arch) = (
        match std::env::consts::OS {
            "macos" => "darwin",
            "windows" => "win32",
            os => os,
        },
        match std::env::consts::ARCH {
            "x86_64" => "x64",
            "aarch64" => "arm64",
            a => a,
        },
    );
    // Node's own walk: every ancestor's `node_modules`, skipping those that are one.
    dir.ancestors()
        .filter(|d| d.file_name().is_none_or(|n| n != "node_modules"))
        .map(|d| {
            d.join("node_modules")
                .join("onnxruntime-node")
                .join("bin")
                .join("napi-v6")
                .join(platform)
                .join(arch)
        })
        .filter(|d| d.is_dir())
        .flat_map(|d| library_names().iter().map(move |n| d.join(n)))
        .filter(|p| p.is_file())
        .collect()
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
    fn an_explicit_path_is_the_only_candidate() {
        let c = candidates(Some(PathBuf::from("/opt/ort/libonnxruntime.so.1")));
        assert_eq!(c, vec![PathBuf::from("/opt/ort/libonnxruntime.so.1")]);
    }

    #[test]
    fn the_system_library_comes_last() {
        if std::env::var_os("ORT_DYLIB_PATH").is_some() {
            return; // the variable overrides the search this test is about
        }
        let c = candidates(None);
        assert!(c.last().unwrap().is_relative());
        assert!(c[..c.len() - library_names().len()]
            .iter()
            .all(|p| p.is_absolute()));
    }

    #[test]
    fn finds_onnxruntime_node_in_a_parent_node_modules() {
        let root = std::env::temp_dir().join(format!("orion-ort-locate-{}", std::process::id()));
        let lib_dir = root
            .join("node_modules/onnxruntime-node/bin/napi-v6")
            .join(match std::env::consts::OS {
                "macos" => "darwin",
                "windows" => "win32",
                os => os,
            })
            .join(match std::env::consts::ARCH {
                "x86_64" => "x64",
                "aarch64" => "arm64",
                a => a,
            });
        std::fs::create_dir_all(&lib_dir).unwrap();
        std::fs::write(lib_dir.join(library_names()[0]), b"").unwrap();
        let addon_dir = root.join("node_modules/orion-native-x/deep");
        std::fs::create_dir_all(&addon_dir).unwrap();
        let found = in_onnxruntime_node_above(&addon_dir);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(found, vec![lib_dir.join(library_names()[0])]);
    }
}
