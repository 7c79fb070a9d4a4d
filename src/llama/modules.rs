//! ggml's backends as modules (the `ggml_dl` build): the CPU backend, one shared library
//! per x86-64 or Arm level beside the addon (`libggml-cpu-<level>.so`,
//! `ggml-cpu-<level>.dll` on Windows; the best this CPU runs is loaded), and GPU backends from their own
//! packages (`libggml-vulkan.so`, `ggml-vulkan.dll`, ...), each loaded only after its
//! check in a child process passed ([`super::probe`]).
//!
//! Every module is loaded by name from a known place: ggml's own search
//! (`ggml_backend_load_all`) would also load whatever it finds in the working directory,
//! and any GPU module without a check.

use super::probe::ModuleCheck;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::OnceLock;

/// `GGML_BACKEND_PATH`, ggml's own variable: one more GPU module to check and load (a
/// backend built from source, as the tests do).
pub(crate) const BACKEND_PATH_ENV: &str = "GGML_BACKEND_PATH";

/// GPU modules offered by the JS side (the GPU packages installed), before llama.cpp
/// starts; later offers are too late and ignored.
static OFFERED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// What became of each GPU module, once llama.cpp started.
static CHECKS: OnceLock<Vec<ModuleCheck>> = OnceLock::new();

/// GPU backend modules to check and load when llama.cpp starts.
pub(crate) fn offer(paths: Vec<PathBuf>) {
    let mut offered = OFFERED.lock();
    for p in paths {
        if !offered.contains(&p) {
            offered.push(p);
        }
    }
}

/// Each GPU module's check, once llama.cpp has started (empty before, and where
/// backends are not modules).
pub(crate) fn checks() -> &'static [ModuleCheck] {
    CHECKS.get().map_or(&[], Vec::as_slice)
}

#[cfg(ggml_dl)]
pub(crate) use dl::{check_here, load, open, register};

#[cfg(ggml_dl)]
mod dl {
    use super::super::probe::{self, ModuleCheck};
    use std::path::{Path, PathBuf};

    /// How a CPU module's file name starts and ends (ggml's own names).
    #[cfg(windows)]
    const CPU_MODULE: (&str, &str) = ("ggml-cpu-", ".dll");
    #[cfg(not(windows))]
    const CPU_MODULE: (&str, &str) = ("libggml-cpu-", ".so");

    /// A module opened by the system's loader, with every symbol resolved now (so that
    /// a missing dependency fails here, in the loader's own words). On Windows the path
    /// goes to the loader as UTF-16, and the module's own imports are looked for beside
    /// it and in System32 only (not in the current directory, nor the executable's,
    /// where an app may carry another copy of vulkan-1.dll); ggml's own DLLs are already
    /// loaded by then and found by name.
    pub(crate) fn open(path: &Path) -> Result<libloading::Library, String> {
        // SAFETY: loading a ggml module runs only its static initialisers (ggml's
        // modules register nothing until `ggml_backend_init` is called).
        #[cfg(unix)]
        let lib = unsafe {
            libloading::os::unix::Library::open(
                Some(path),
                libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL,
            )
        }
        .map(libloading::Library::from);
        // SAFETY: as above; Windows resolves imports at load.
        #[cfg(windows)]
        let lib = unsafe {
            libloading::os::windows::Library::load_with_flags(
                path,
                libloading::os::windows::LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR
                    | libloading::os::windows::LOAD_LIBRARY_SEARCH_SYSTEM32,
            )
        }
        .map(libloading::Library::from);
        lib.map_err(|e| match std::error::Error::source(&e) {
            Some(os) => os.to_string(),
            None => e.to_string(),
        })
    }

    /// The version of ggml's backend interface this addon's ggml has
    /// (`GGML_BACKEND_API_VERSION` in llama.cpp's ggml-backend-impl.h, which bindgen does
    /// not see). A module built from another llama.cpp may differ; ggml's own loader
    /// refuses those, and so does [`register`].
    const BACKEND_API_VERSION: std::os::raw::c_int = 3;

    /// Registers the backend of an opened module with ggml, as `ggml_backend_load`
    /// does, and keeps the module loaded for the life of the process. Not through
    /// `ggml_backend_load` itself: it takes the path as a narrow string, which ggml's
    /// `std::filesystem` reads in the C runtime's code page on Windows, so a path with
    /// letters outside it (`C:\Users\José\...`) would not load.
    pub(crate) fn register(
        lib: libloading::Library,
    ) -> Result<llama_cpp_sys_2::ggml_backend_reg_t, String> {
        if score(&lib) == Some(0) {
            return Err("it is not for this CPU (its ggml_backend_score is 0)".into());
        }
        // SAFETY: ggml's modules export this name as `ggml_backend_init_t`, a function
        // taking nothing and returning the backend's registration.
        let init = unsafe {
            lib.get::<unsafe extern "C" fn() -> llama_cpp_sys_2::ggml_backend_reg_t>(
                b"ggml_backend_init\0",
            )
        }
        .map_err(|_| "it exports no ggml_backend_init: not a ggml backend module")?;
        // SAFETY: as above; the module stays loaded (forgotten below) while its
        // registration is in use.
        let reg = unsafe { init() };
        if reg.is_null() {
            return Err("its ggml_backend_init returned no backend".into());
        }
        // SAFETY: `reg` points to the module's `struct ggml_backend_reg`, whose first
        // field is `int api_version` (ggml-backend-impl.h), whatever the version.
        let version = unsafe { *reg.cast::<std::os::raw::c_int>() };
        if version != BACKEND_API_VERSION {
            return Err(format!(
                "it was built for version {version} of ggml's backend interface, this \
                 addon's ggml has {BACKEND_API_VERSION}: a module from another llama.cpp"
            ));
        }
        // SAFETY: a registration of the right version, from a module that stays loaded.
        unsafe { llama_cpp_sys_2::ggml_backend_register(reg) };
        // ggml never unloads a backend it was handed: neither does this.
        std::mem::forget(lib);
        Ok(reg)
    }

    /// [`open`], then [`register`].
    fn load_module(path: &Path) -> Result<llama_cpp_sys_2::ggml_backend_reg_t, String> {
        register(open(path).map_err(|e| format!("it does not load: {e}"))?)
    }

    /// Where the CPU modules are: the addon's directory (the platform package, or a
    /// checkout's root after a build); in Rust's unit tests, where llama-cpp-sys-2 built
    /// them.
    fn dirs() -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(dir) = crate::paths::addon_path().as_deref().and_then(Path::parent) {
            dirs.push(dir.to_path_buf());
        }
        #[cfg(test)]
        dirs.extend(llama_cpp_sys_2::BACKENDS_DIR.map(PathBuf::from));
        dirs
    }

    /// The CPU module of `dir` that scores best on this CPU (ggml's own rule: each
    /// module's `ggml_backend_score` is 0 where the CPU lacks what it was built for,
    /// higher the more it uses).
    fn best_cpu(dir: &Path) -> Option<PathBuf> {
        let mut best: (i32, Option<PathBuf>) = (0, None);
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with(CPU_MODULE.0) && name.ends_with(CPU_MODULE.1)) {
                continue;
            }
            let path = entry.path();
            // Closed again at the end of the iteration (dropped).
            let Ok(lib) = open(&path) else { continue };
            if let Some(s) = score(&lib).filter(|&s| s > best.0) {
                best = (s, Some(path));
            }
        }
        best.1
    }

    /// A module's `ggml_backend_score` (0 where this CPU lacks what it was built for),
    /// or `None` where it exports none (GPU modules).
    fn score(lib: &libloading::Library) -> Option<i32> {
        // SAFETY: ggml's modules export this name as `int (*)(void)`
        // (`ggml_backend_score_t`), which only reads the CPU's features.
        let score = unsafe {
            lib.get::<unsafe extern "C" fn() -> std::os::raw::c_int>(b"ggml_backend_score\0")
        }
        .ok()?;
        // SAFETY: as above; `lib` is open while it runs.
        Some(unsafe { score() })
    }

    /// Whether a CPU backend is registered.
    fn have_cpu() -> bool {
        // SAFETY: the name is a NUL-terminated string; the registry lookup only reads it.
        !unsafe { llama_cpp_sys_2::ggml_backend_reg_by_name(c"CPU".as_ptr()) }.is_null()
    }

    /// A GPU module's check, in the child process started for it: quiet, the CPU
    /// backend, then the module ([`probe::run`]).
    pub(crate) fn check_here(module: &Path) -> ModuleCheck {
        super::super::backend::quiet_unless_asked();
        if let Err(e) = load_cpu() {
            return ModuleCheck {
                path: module.to_path_buf(),
                reason: Some(e),
                ..ModuleCheck::default()
            };
        }
        probe::run(module)
    }

    /// The best CPU module of the first directory that has one.
    fn load_cpu() -> Result<(), String> {
        if have_cpu() {
            return Ok(());
        }
        let dirs = dirs();
        let mut failed = Vec::new();
        for dir in &dirs {
            let Some(best) = best_cpu(dir) else { continue };
            match load_module(&best) {
                Ok(_) if have_cpu() => return Ok(()),
                Ok(_) => failed.push(format!("{}: registered no CPU backend", best.display())),
                Err(e) => failed.push(format!("{}: {e}", best.display())),
            }
        }
        if !failed.is_empty() {
            return Err(format!(
                "llama.cpp's CPU backend did not load ({}). Reinstall orion-native; if this \
                 persists, report it with this message.",
                failed.join("; ")
            ));
        }
        let searched: Vec<_> = dirs.iter().map(|d| d.display().to_string()).collect();
        Err(format!(
            "llama.cpp's CPU backend ({}*{}) is not where orion-native looked ({}). \
             The platform package (orion-native-<platform>) ships it next to the addon: \
             reinstall orion-native, and in an Electron app unpack that package from the \
             asar archive.",
            CPU_MODULE.0,
            CPU_MODULE.1,
            if searched.is_empty() {
                "nowhere: the addon's own path is unknown".into()
            } else {
                searched.join(", ")
            }
        ))
    }

    /// The CPU backend, then each GPU module whose check passes (unless `gpu: false`
    /// was set when llama.cpp started). Called once per process, before
    /// `llama_backend_init`.
    pub(crate) fn load() -> Result<(), String> {
        load_cpu()?;
        let off = matches!(crate::settings::gpu(), Ok(crate::settings::Gpu::Off));
        let in_check = std::env::var_os(probe::CHILD_ENV).is_some();
        let checks = gpu_modules()
            .into_iter()
            .map(|path| {
                if in_check {
                    ModuleCheck {
                        path,
                        reason: Some(format!(
                            "not checked: this process was started to check a GPU module ({})",
                            probe::CHILD_ENV
                        )),
                        ..ModuleCheck::default()
                    }
                } else if off {
                    ModuleCheck {
                        path,
                        reason: Some(format!(
                            "not loaded: gpu was false (configure() or {}) when llama.cpp started",
                            crate::settings::GPU_ENV
                        )),
                        ..ModuleCheck::default()
                    }
                } else {
                    check_and_load(path)
                }
            })
            .collect();
        let _ = super::CHECKS.set(checks);
        Ok(())
    }

    /// The GPU modules to try: those offered, then `GGML_BACKEND_PATH`'s.
    fn gpu_modules() -> Vec<PathBuf> {
        let mut all = super::OFFERED.lock().clone();
        if let Some(p) = std::env::var_os(super::BACKEND_PATH_ENV).filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            if !all.contains(&p) {
                all.push(p);
            }
        }
        all
    }

    /// A GPU module's check in a child process; when it passes, the module is loaded here.
    fn check_and_load(path: PathBuf) -> ModuleCheck {
        if !path.is_file() {
            return ModuleCheck {
                reason: Some("not loaded: no such file".into()),
                path,
                ..ModuleCheck::default()
            };
        }
        let mut check = match probe::in_child(&path) {
            Ok(check) => check,
            Err(why) => {
                return ModuleCheck {
                    reason: Some(format!("not loaded: {why}")),
                    path,
                    ..ModuleCheck::default()
                }
            }
        };
        check.loaded = false;
        if check.reason.is_some() {
            check.reason = check.reason.map(|r| format!("not loaded: {r}"));
            return check;
        }
        // The same module loaded, registered and ran a graph on each device in the child.
        match load_module(&path) {
            Ok(_) => check.loaded = true,
            Err(e) => check.reason = Some(format!("not loaded: it passed its check, but here {e}")),
        }
        check
    }
}
