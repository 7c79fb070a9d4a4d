//! llama.cpp's process-wide state: its backend, the devices it was built with, and
//! context creation (under one lock for the process).

use crate::error::{OrionError, Result};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use std::num::NonZeroU32;

/// `ORION_LLAMA_LOG=1` lets llama.cpp log to stderr.
pub(crate) const LOG_ENV: &str = "ORION_LLAMA_LOG";

/// The process's llama.cpp backend (one per process, since llama.cpp's own state is
/// process-global), initialised by the first caller.
pub(crate) fn backend() -> Result<&'static LlamaBackend> {
    llama_backend()
}

/// Initialise llama.cpp's backend, quiet unless `ORION_LLAMA_LOG=1`. Called once per
/// process, by `llama_backend`. Where llama.cpp's backends are modules, they are loaded
/// first, from beside the addon: `llama_backend_init` would otherwise load every module
/// it finds in the process's working directory.
pub(crate) fn init_backend() -> std::result::Result<LlamaBackend, String> {
    let quiet = std::env::var(LOG_ENV).map_or(true, |v| v.is_empty() || v == "0");
    if quiet {
        // Before the modules load, so that their messages are quiet too.
        silence_logs();
    }
    #[cfg(ggml_dl)]
    modules::load()?;
    // Quiet already: llama.cpp's logger (set above) is ggml's too.
    LlamaBackend::init().map_err(|e| e.to_string())
}

/// llama.cpp's and ggml's log messages go nowhere.
fn silence_logs() {
    unsafe extern "C" fn nothing(
        _level: llama_cpp_sys_2::ggml_log_level,
        _text: *const std::os::raw::c_char,
        _user_data: *mut std::os::raw::c_void,
    ) {
    }
    // SAFETY: the callback is a function that ignores its arguments, valid for the life
    // of the process; llama.cpp passes it to ggml's logger too.
    unsafe { llama_cpp_sys_2::llama_log_set(Some(nothing), std::ptr::null_mut()) };
}

/// ggml's backends as modules (the `ggml_dl` build): the shared libraries
/// `libggml-cpu-<level>.so` (one per x86-64 level; ggml loads the best one this CPU
/// runs) and any GPU backend's, beside the addon.
#[cfg(ggml_dl)]
mod modules {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};

    /// Where to look: the addon's directory (the platform package, or a checkout's root
    /// after a build); in Rust's unit tests, where llama-cpp-sys-2 built the modules.
    fn dirs() -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(dir) = crate::paths::addon_path().as_deref().and_then(Path::parent) {
            dirs.push(dir.to_path_buf());
        }
        #[cfg(test)]
        dirs.extend(llama_cpp_sys_2::BACKENDS_DIR.map(PathBuf::from));
        dirs
    }

    /// Whether a CPU backend is registered.
    fn have_cpu() -> bool {
        // SAFETY: the name is a NUL-terminated string; the registry lookup only reads it.
        !unsafe { llama_cpp_sys_2::ggml_backend_reg_by_name(c"CPU".as_ptr()) }.is_null()
    }

    /// Load the modules of the first directory that has a CPU backend.
    pub(super) fn load() -> Result<(), String> {
        let dirs = dirs();
        for dir in &dirs {
            let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
                continue;
            };
            // SAFETY: `c` is a NUL-terminated path that outlives the call. ggml loads
            // each `libggml-<backend>*.so` there it can (a file that fails to load is
            // skipped), scoring CPU variants against this CPU and keeping the best.
            unsafe { llama_cpp_sys_2::ggml_backend_load_all_from_path(c.as_ptr()) };
            if have_cpu() {
                return Ok(());
            }
        }
        let searched: Vec<_> = dirs.iter().map(|d| d.display().to_string()).collect();
        Err(format!(
            "llama.cpp's CPU backend (libggml-cpu-*.so) is not where orion-native looked ({}). \
             The platform package (orion-native-<platform>) ships it next to the addon: \
             reinstall orion-native, and in an Electron app unpack that package from the \
             asar archive.",
            if searched.is_empty() {
                "nowhere: the addon's own path is unknown".into()
            } else {
                searched.join(", ")
            }
        ))
    }
}

/// What the CPU backend that llama.cpp runs on was built to use (`AVX2`, `AVX512`,
/// ...): with backends as modules, those of the level ggml picked for this CPU.
pub(crate) fn cpu_features() -> Vec<String> {
    if backend().is_err() {
        return Vec::new();
    }
    // SAFETY: the name is a NUL-terminated string the lookup only reads.
    let reg = unsafe { llama_cpp_sys_2::ggml_backend_reg_by_name(c"CPU".as_ptr()) };
    if reg.is_null() {
        return Vec::new();
    }
    // SAFETY: `reg` is a registered backend (registrations last for the process); the
    // name is NUL-terminated.
    let f = unsafe {
        llama_cpp_sys_2::ggml_backend_reg_get_proc_address(
            reg,
            c"ggml_backend_get_features".as_ptr(),
        )
    };
    if f.is_null() {
        return Vec::new();
    }
    // SAFETY: ggml's CPU backend exports this name as a `ggml_backend_get_features_t`
    // (ggml-backend.h), a function pointer the same size as the address returned.
    let get: unsafe extern "C" fn(
        llama_cpp_sys_2::ggml_backend_reg_t,
    ) -> *mut llama_cpp_sys_2::ggml_backend_feature = unsafe { std::mem::transmute(f) };
    let mut out = Vec::new();
    // SAFETY: the CPU backend returns a static array ended by an entry whose name is
    // null; each name and value is a NUL-terminated static string.
    unsafe {
        let mut p = get(reg);
        while !p.is_null() && !(*p).name.is_null() {
            if !(*p).value.is_null() && std::ffi::CStr::from_ptr((*p).value).to_bytes() == b"1" {
                out.push(
                    std::ffi::CStr::from_ptr((*p).name)
                        .to_string_lossy()
                        .into_owned(),
                );
            }
            p = p.add(1);
        }
    }
    out
}

/// A context for one generation. Created under a process-wide lock.
pub(crate) fn new_context(
    model: &LlamaModel,
    n_ctx: u32,
    threads: i32,
) -> Result<LlamaContext<'_>> {
    let backend = backend()?;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(512)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        // llama.cpp keeps no timings by default; ours are reported next to its own.
        .with_no_perf(false);
    let _one_at_a_time = llama_context_creation();
    model.new_context(backend, params).map_err(|e| {
        OrionError::InferenceFailed(format!("could not create a context of {n_ctx} tokens: {e}"))
    })
}

/// GPU (and other non-CPU) devices of the backends loaded: (ggml's device index, name,
/// backend, free bytes).
pub(crate) fn devices() -> Vec<(usize, String, String, u64)> {
    if backend().is_err() {
        return Vec::new();
    }
    llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .filter(|d| !d.backend.eq_ignore_ascii_case("cpu"))
        .map(|d| {
            (
                d.index,
                format!("{} ({})", d.name, d.description),
                d.backend,
                d.memory_free as u64,
            )
        })
        .collect()
}

/// The GPU (non-CPU) backends loaded, by ggml's names (`Vulkan`, `CUDA`, ...), whether
/// or not they found a device.
pub(crate) fn gpu_backends() -> Vec<String> {
    if backend().is_err() {
        return Vec::new();
    }
    // SAFETY: registrations last for the process; each name is a NUL-terminated static
    // string of its backend.
    unsafe {
        (0..llama_cpp_sys_2::ggml_backend_reg_count())
            .map(|i| llama_cpp_sys_2::ggml_backend_reg_get(i))
            .filter(|r| !r.is_null())
            .map(|r| {
                std::ffi::CStr::from_ptr(llama_cpp_sys_2::ggml_backend_reg_name(r))
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|n| !n.eq_ignore_ascii_case("cpu"))
            .collect()
    }
}

/// llama.cpp's backend (`llama_backend_init`). llama.cpp's own state is process-global,
/// so there is one per process, whatever builds models or contexts. A failed
/// initialisation is kept (its message) and reported to every caller.
static LLAMA_BACKEND: std::sync::OnceLock<std::result::Result<LlamaBackend, String>> =
    std::sync::OnceLock::new();

/// The process's llama.cpp backend, initialised by the first caller.
pub(crate) fn llama_backend() -> Result<&'static LlamaBackend> {
    LLAMA_BACKEND
        .get_or_init(init_backend)
        .as_ref()
        .map_err(|e| OrionError::Internal(format!("llama.cpp backend: {e}")))
}

/// Held while llama.cpp creates a context: creation mutates the model, so concurrent
/// creation is unsound, and one lock for the process covers every model. A leaf lock.
static LLAMA_CONTEXT_CREATION: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// Creating a llama.cpp context is allowed while the guard returned lives.
pub(crate) fn llama_context_creation() -> parking_lot::MutexGuard<'static, ()> {
    LLAMA_CONTEXT_CREATION.lock()
}
