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
/// process, by `llama_backend`.
pub(crate) fn init_backend() -> std::result::Result<LlamaBackend, String> {
    let mut b = LlamaBackend::init().map_err(|e| e.to_string())?;
    if std::env::var(LOG_ENV).map_or(true, |v| v.is_empty() || v == "0") {
        b.void_logs();
    }
    Ok(b)
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

/// GPU (and other non-CPU) devices llama.cpp was built with: (name, backend, free bytes).
pub(crate) fn devices() -> Vec<(String, String, u64)> {
    if backend().is_err() {
        return Vec::new();
    }
    llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .filter(|d| !d.backend.eq_ignore_ascii_case("cpu"))
        .map(|d| {
            (
                format!("{} ({})", d.name, d.description),
                d.backend,
                d.memory_free as u64,
            )
        })
        .collect()
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
