//! The process-wide services. Every thread (the main thread and each worker_thread)
//! loads the same addon instance, so these statics are shared by all of them: this is
//! the one place where "one per process" is decided.

use crate::embedding::model::{
    read_dimension, runtime_candidates, FastEmbedFactory, DEFAULT_MODEL,
};
use crate::embedding::queue::BatchConfig;
use crate::embedding::EmbeddingService;
use crate::error::{OrionError, Result};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

/// What a caller asks of the shared embedding service.
#[derive(Clone, Debug, Default)]
pub struct EmbeddingRequest {
    /// Model name: a directory under the models directory.
    pub model: Option<String>,
    /// A directory holding the model files; wins over the name.
    pub model_path: Option<PathBuf>,
    pub config: BatchConfig,
    pub threads: Option<usize>,
    /// ONNX Runtime inside the installed `onnxruntime-node` package, found by the JS side.
    pub packaged_runtime: Option<PathBuf>,
}

static EMBEDDING: LazyLock<Mutex<HashMap<PathBuf, Arc<EmbeddingService>>>> =
    LazyLock::new(Default::default);

/// The embedding service for the requested model, started on first request. Callers
/// naming the same model directory share one service, hence one loaded model.
pub fn embedding_service(req: EmbeddingRequest) -> Result<Arc<EmbeddingService>> {
    let name = req
        .model
        .clone()
        .unwrap_or_else(|| DEFAULT_MODEL.to_string());
    if name.is_empty() || name.contains(['/', '\\']) || name == ".." {
        return Err(OrionError::InvalidOption(format!(
            "model {name:?} is not a model name; pass a directory as `modelPath` instead"
        )));
    }
    let dir = match &req.model_path {
        Some(p) => p.clone(),
        None => crate::paths::models_dir().join(&name),
    };
    let key = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
    let mut services = EMBEDDING.lock();
    if let Some(s) = services.get(&key) {
        return Ok(s.clone());
    }
    let display = match &req.model_path {
        Some(_) => dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or(name),
        None => name,
    };
    let factory = FastEmbedFactory {
        dir: dir.clone(),
        runtime_candidates: runtime_candidates(req.packaged_runtime),
        threads: req.threads,
        hub_fallback: req.model_path.is_none() && display == DEFAULT_MODEL,
    };
    let svc =
        EmbeddingService::start(display, read_dimension(&dir), Box::new(factory), req.config)?;
    services.insert(key, svc.clone());
    Ok(svc)
}

/// Every embedding service started in this process.
pub fn embedding_services() -> Vec<Arc<EmbeddingService>> {
    EMBEDDING.lock().values().cloned().collect()
}

static LLM: std::sync::OnceLock<crate::llm::LlmService> = std::sync::OnceLock::new();

/// The process's LLM service. `config`, when given, replaces the loader's limits
/// (they are process-wide: the last caller to set them wins).
pub fn llm_service(
    config: Option<crate::llm::loader::LoaderConfig>,
) -> Result<&'static crate::llm::LlmService> {
    let svc = match LLM.get() {
        Some(s) => s,
        None => {
            let created = crate::llm::LlmService::new(crate::llm::LlmService::default_config()?)?;
            // Two threads may race to create it; the loser's service is simply dropped.
            let _ = LLM.set(created);
            LLM.get().expect("set above")
        }
    };
    if let Some(c) = config {
        svc.loader().set_config(c);
    }
    Ok(svc)
}
