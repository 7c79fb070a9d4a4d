//! llama.cpp's process-wide state: its backend, the devices it was built with, and
//! context creation (under one lock for the process).

use super::probe::{DeviceCheck, DeviceKind};
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
    // Before the modules load, so that their messages are quiet too.
    quiet_unless_asked();
    #[cfg(ggml_dl)]
    super::modules::load()?;
    // Quiet already: llama.cpp's logger (set above) is ggml's too.
    LlamaBackend::init().map_err(|e| e.to_string())
}

/// llama.cpp's and ggml's log messages go nowhere, unless `ORION_LLAMA_LOG=1`.
pub(super) fn quiet_unless_asked() {
    if std::env::var(LOG_ENV).map_or(true, |v| v.is_empty() || v == "0") {
        silence_logs();
    }
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

/// A context that computes pooled embeddings: `n_ctx` tokens in all, each decode one
/// batch of at most `n_ctx` tokens in up to `n_seq` sequences (a non-causal model needs
/// a whole batch in one micro-batch), with the pooling the model declares, with flash
/// attention or without it. Created under the process-wide lock.
pub(crate) fn new_embedding_context(
    model: &LlamaModel,
    n_ctx: u32,
    n_seq: u32,
    threads: i32,
    flash_attention: bool,
) -> Result<LlamaContext<'_>> {
    let backend = backend()?;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_ctx)
        .with_n_ubatch(n_ctx)
        .with_n_seq_max(n_seq)
        // One KV cache shared by the batch's sequences (a causal model's), so that any
        // of them can take up to `n_ctx` tokens.
        .with_kv_unified(true)
        .with_embeddings(true)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    // Off only where asked: llama.cpp's choice (on wherever the device has it) otherwise.
    let params = if flash_attention {
        params
    } else {
        params.with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED)
    };
    let _one_at_a_time = llama_context_creation();
    model.new_context(backend, params).map_err(|e| {
        OrionError::ModelLoadFailed(format!(
            "could not create an embedding context of {n_ctx} tokens: {e}"
        ))
    })
}

/// A device of a GPU backend loaded in this process.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Device {
    /// ggml's index of the device (what a model load names).
    pub(crate) index: usize,
    /// `<ggml name> (<description>)`: `Vulkan0 (NVIDIA GeForce RTX 4070)`.
    pub(crate) name: String,
    pub(crate) backend: String,
    pub(crate) kind: DeviceKind,
    pub(crate) total_bytes: u64,
    pub(crate) free_bytes: u64,
    /// Device bytes this process's models hold there.
    pub(crate) models_bytes: u64,
    pub(crate) driver: Option<String>,
    /// Why its check found it unusable.
    pub(crate) failed: Option<String>,
}

impl Device {
    /// What models can have there: what is free for them, and what they hold already
    /// (a load may unload idle ones).
    pub(crate) fn room(&self) -> u64 {
        super::fit::free_for_models(self.free_bytes, self.total_bytes, self.models_bytes)
            .saturating_add(self.models_bytes)
    }
}

/// The devices of the GPU backends loaded, with what their checks found: kind, driver,
/// and whether the self-test passed. Memory is read now.
pub(crate) fn devices() -> Vec<Device> {
    if backend().is_err() {
        return Vec::new();
    }
    let checked: Vec<&DeviceCheck> = super::modules::checks()
        .iter()
        .flat_map(|m| m.devices.iter())
        .collect();
    llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .filter(|d| !d.backend.eq_ignore_ascii_case("cpu"))
        .map(|d| {
            let check = checked.iter().find(|c| c.name == d.name);
            let kind = check.map_or(
                match d.device_type {
                    llama_cpp_2::LlamaBackendDeviceType::IntegratedGpu => DeviceKind::Igpu,
                    llama_cpp_2::LlamaBackendDeviceType::Cpu => DeviceKind::Cpu,
                    _ => DeviceKind::Gpu,
                },
                |c| c.kind,
            );
            Device {
                index: d.index,
                name: format!("{} ({})", d.name, d.description),
                backend: d.backend,
                kind,
                total_bytes: d.memory_total as u64,
                free_bytes: d.memory_free as u64,
                models_bytes: super::fit::held(d.index),
                driver: check.and_then(|c| c.driver.clone()),
                failed: check.and_then(|c| c.failed.clone()),
            }
        })
        .collect()
}

/// The GPU device of ggml's index `index`, its memory read now.
pub(crate) fn device(index: usize) -> Option<Device> {
    devices().into_iter().find(|d| d.index == index)
}

/// The devices of the GPU backends, if llama.cpp has started (never starts it: a
/// memory reading must not load GPU modules), with the device bytes this process's
/// models hold on each.
pub(crate) fn started_devices() -> Vec<Device> {
    if LLAMA_BACKEND.get().is_none() {
        return Vec::new();
    }
    devices()
}

/// Each GPU backend module found and what became of it (empty until llama.cpp starts).
pub(crate) fn gpu_modules() -> &'static [super::probe::ModuleCheck] {
    if backend().is_err() {
        return &[];
    }
    super::modules::checks()
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
