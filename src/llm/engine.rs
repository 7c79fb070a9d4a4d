//! llama.cpp behind the loader's [`Engine`] trait: the process's one backend, GGUF
//! header probing, model loading with progress, and creating contexts one at a time
//! (llama.cpp's context creation mutates the model, so concurrent creation is unsound).

use super::loader::{Engine, ModelMeta, Progress};
use crate::error::{OrionError, Result};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::gguf::GgufContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use parking_lot::Mutex;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;

pub const LOG_ENV: &str = "ORION_LLAMA_LOG";

static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
static CONTEXT_CREATION: Mutex<()> = Mutex::new(());

/// The process's llama.cpp backend, quiet unless `ORION_LLAMA_LOG=1`.
pub fn backend() -> Result<&'static LlamaBackend> {
    BACKEND
        .get_or_init(|| {
            let mut b = LlamaBackend::init().map_err(|e| e.to_string())?;
            if std::env::var(LOG_ENV).map_or(true, |v| v.is_empty() || v == "0") {
                b.void_logs();
            }
            Ok(b)
        })
        .as_ref()
        .map_err(|e| OrionError::Internal(format!("llama.cpp backend: {e}")))
}

#[derive(Clone, Debug, Default)]
pub struct LlamaEngine {
    /// Layers to offload to a GPU backend, when one is compiled in.
    pub gpu_layers: u32,
}

fn gguf_u64(g: &GgufContext, key: &str) -> Option<u64> {
    let idx = g.find_key(key);
    if idx < 0 {
        return None;
    }
    Some(match g.kv_type(idx) {
        llama_cpp_sys_2::GGUF_TYPE_UINT32 => g.val_u32(idx) as u64,
        llama_cpp_sys_2::GGUF_TYPE_INT32 => g.val_i32(idx).max(0) as u64,
        llama_cpp_sys_2::GGUF_TYPE_UINT64 => g.val_u64(idx),
        _ => return None,
    })
}

impl Engine for LlamaEngine {
    type Model = LlamaModel;

    fn probe(&self, path: &Path, context_length: u32) -> Result<ModelMeta> {
        let file_bytes = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => {
                return Err(OrionError::ModelLoadFailed(format!(
                    "{} is not a file",
                    path.display()
                )))
            }
            Err(_) => {
                return Err(OrionError::ModelNotFound {
                    what: format!(
                        "model file `{}`",
                        path.file_name()
                            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                    ),
                    searched: path
                        .parent()
                        .map_or_else(String::new, |p| p.display().to_string()),
                })
            }
        };
        backend()?;
        let g = GgufContext::from_file(path).ok_or_else(|| {
            OrionError::ModelLoadFailed(format!(
                "{} is not a readable GGUF file (bad or truncated header)",
                path.display()
            ))
        })?;
        let arch = {
            // Reading a value as the wrong type aborts inside llama.cpp: check the type.
            let idx = g.find_key("general.architecture");
            (idx >= 0 && g.kv_type(idx) == llama_cpp_sys_2::GGUF_TYPE_STRING)
                .then(|| g.val_str(idx).map(str::to_string))
                .flatten()
                .unwrap_or_default()
        };
        let n_layer = gguf_u64(&g, &format!("{arch}.block_count")).unwrap_or(0);
        let n_embd = gguf_u64(&g, &format!("{arch}.embedding_length")).unwrap_or(0);
        let n_head = gguf_u64(&g, &format!("{arch}.attention.head_count"))
            .unwrap_or(1)
            .max(1);
        let n_head_kv = gguf_u64(&g, &format!("{arch}.attention.head_count_kv")).unwrap_or(n_head);
        // K and V, f16, for every layer and position of one context.
        let kv = 2 * 2 * context_length as u64 * n_layer * (n_embd / n_head) * n_head_kv;
        Ok(ModelMeta {
            file_bytes,
            kv_bytes_per_context: kv,
        })
    }

    fn load(&self, path: &Path, mut progress: Progress) -> Result<LlamaModel> {
        let backend = backend()?;
        let params = LlamaModelParams::default()
            .with_use_mmap(true)
            .with_n_gpu_layers(self.gpu_layers)
            .with_progress_callback(move |f| {
                progress(f);
                true
            });
        LlamaModel::load_from_file(backend, path, &params).map_err(|e| {
            OrionError::ModelLoadFailed(format!("llama.cpp could not load {}: {e}", path.display()))
        })
    }
}

/// A context for one generation. Created under a process-wide lock.
pub fn new_context(model: &LlamaModel, n_ctx: u32, threads: i32) -> Result<LlamaContext<'_>> {
    let backend = backend()?;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(512)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        // llama.cpp keeps no timings by default; ours are reported next to its own.
        .with_no_perf(false);
    let _one_at_a_time = CONTEXT_CREATION.lock();
    model.new_context(backend, params).map_err(|e| {
        OrionError::InferenceFailed(format!("could not create a context of {n_ctx} tokens: {e}"))
    })
}

/// GPU (and other non-CPU) devices llama.cpp was built with: (name, backend, free bytes).
pub fn devices() -> Vec<(String, String, u64)> {
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
