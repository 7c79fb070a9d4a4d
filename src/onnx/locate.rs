//! Where the ONNX Runtime shared library is. The addon finds it by itself, from the
//! file system, so that it works whatever installed it (npm, a copied Electron bundle,
//! a checkout) and on every Node version: no JS module resolution is involved.
//!
//! Order: an explicit path (`configure({ ortLibraryPath })` or `ORT_DYLIB_PATH`), which
//! is then the only candidate; the addon's own directory (the platform package ships the
//! library there); an `onnxruntime-node` package in a `node_modules` above the addon; the
//! system library through the dynamic loader's search path.

use crate::paths::addon_path;
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
