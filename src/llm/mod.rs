//! The LLM service: a model registry, the loader (limits, LRU eviction, shared loads)
//! and generation, over llama.cpp (`llama/`) or remote servers (`remote/`).

pub(crate) mod loader;
pub(crate) mod registry;
pub(crate) mod schema;
pub(crate) mod session;
pub(crate) mod strategy;

use crate::engine::llm::{Chat, GenerateParams, Generation, Prompt, TokenAnswer, TokenRequest};
use crate::error::{OrionError, Result};
use crate::llama::engine::LlamaEngine;
use crate::llama::prefix::ChatModel;
use loader::{Lease, LoadedModel, LoaderConfig, MemoryProbe, ModelLoader, ProgressFn};
use registry::{Registry, Resolved};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use strategy::Strategy;

pub(crate) const MAX_MODELS_ENV: &str = "ORION_MAX_CONCURRENT_MODELS";
pub(crate) const DEFAULT_MAX_MODELS: usize = 2;

struct SystemProbe;

impl MemoryProbe for SystemProbe {
    fn available(&self) -> u64 {
        crate::sysmem::memory().effective_available()
    }
}

/// What a successful `loadModel` reports.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LoadInfo {
    pub(crate) key: String,
    pub(crate) path: String,
    pub(crate) quantization: Option<String>,
    pub(crate) bytes: u64,
    /// The context it generates in: the registry's (or the load's `contextSize`),
    /// bounded by the length it was trained with.
    pub(crate) context_length: u32,
    pub(crate) loads: u64,
    /// Where its layers went, when some are on a GPU device.
    pub(crate) placed: Option<crate::engine::llm::Placed>,
    /// What it is, from its metadata (unknown for remote models).
    pub(crate) facts: crate::engine::llm::ModelFacts,
}

/// What one `loadModel` call asks besides the key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LoadOverrides {
    /// Layers on the GPU device instead of as many as fit.
    pub(crate) gpu_layers: Option<u32>,
    /// The context length instead of the registry's.
    pub(crate) context_size: Option<u32>,
}

/// What a successful `downloadModel` reports: the model's file, on disk and checked.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DownloadInfo {
    pub(crate) key: String,
    pub(crate) path: String,
    pub(crate) quantization: Option<String>,
    pub(crate) bytes: u64,
    /// Whether it was fetched now (else it was on disk already).
    pub(crate) downloaded: bool,
}

/// `e`, with every directory that was searched for `r`'s file when it is the file's
/// missing from its own directory (bundled directories come before the models one).
fn every_dir_searched(r: &Resolved, e: OrionError) -> OrionError {
    match (e, r.path.parent()) {
        (OrionError::ModelNotFound { what, searched }, Some(dir))
            if searched == dir.display().to_string() =>
        {
            OrionError::ModelNotFound {
                what,
                searched: crate::paths::searched(dir),
            }
        }
        (e, _) => e,
    }
}

pub(crate) struct LlmService {
    loader: Arc<ModelLoader<LlamaEngine>>,
    strategy: Strategy,
    /// The models it resolves keys against (the process's one: see `runtime`).
    registry: Registry,
    /// Remote models whose servers were checked, by key. A leaf lock.
    remote: parking_lot::Mutex<std::collections::HashMap<String, Arc<RemoteModel>>>,
    /// The `contextSize` a model was loaded with, by key: its later loads (after an
    /// eviction, by `generate`) use it too, until `unloadModel`. A leaf lock.
    context_sizes: parking_lot::Mutex<std::collections::HashMap<String, u32>>,
}

/// A model served by remote servers, "loaded" once they were found to serve it.
pub(crate) struct RemoteModel {
    spec: crate::remote::RemoteSpec,
    chat: crate::remote::chat::RemoteChat,
    context_length: u32,
    loads: u64,
    last_used: parking_lot::Mutex<std::time::Instant>,
    in_use: std::sync::atomic::AtomicUsize,
}

/// What `getStats()` shows of a remote model.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RemoteModelStats {
    pub(crate) key: String,
    pub(crate) model: String,
    pub(crate) endpoints: Vec<crate::engine::EndpointStats>,
    pub(crate) loads: u64,
    pub(crate) in_use: usize,
    pub(crate) idle_ms: f64,
}

impl LlmService {
    /// A service resolving keys against `registry`, and starting its keep-alive thread.
    pub(crate) fn new(config: LoaderConfig, registry: Registry) -> Result<Self> {
        // Quantization and context size only: llama.cpp starts in the background
        // (`strategy::start_in_background`), not on the caller's (JS) thread.
        let strategy = strategy::detect_host()?;
        // Each load places its layers as the strategy says then.
        let engine = LlamaEngine {
            place: Arc::new(|| {
                let s = strategy::detect()?;
                if let Some(why) = s.unavailable {
                    return Err(crate::error::OrionError::GpuUnavailable(why));
                }
                Ok(crate::llama::engine::Placement {
                    device: s.device.map(|d| d.index),
                })
            }),
        };
        let loader = Arc::new(ModelLoader::new(engine, Box::new(SystemProbe), config));
        // Keep-alive sweeper: cheap, and it holds only a weak reference.
        let weak = Arc::downgrade(&loader);
        std::thread::Builder::new()
            .name("orion-llm-keepalive".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(500));
                // Unloading frees llama.cpp memory: never while the process exits.
                let Ok(_work) = crate::lifecycle::begin_work() else {
                    return;
                };
                match weak.upgrade() {
                    Some(l) => {
                        drop(l.unload_expired());
                        for m in l.loaded_models() {
                            m.model.contexts.clear(Some(crate::llama::prefix::IDLE));
                        }
                    }
                    None => return,
                }
            })
            .map_err(|e| OrionError::Internal(format!("keep-alive thread: {e}")))?;
        Ok(Self {
            loader,
            strategy,
            registry,
            remote: parking_lot::Mutex::default(),
            context_sizes: parking_lot::Mutex::default(),
        })
    }

    /// `maxConcurrentModels` from `ORION_MAX_CONCURRENT_MODELS`, else the default.
    pub(crate) fn default_config() -> Result<LoaderConfig> {
        let max =
            crate::config::env_u64(MAX_MODELS_ENV)?.map_or(DEFAULT_MAX_MODELS, |v| v as usize);
        if max == 0 {
            return Err(OrionError::InvalidOption(format!(
                "{MAX_MODELS_ENV} must be at least 1"
            )));
        }
        Ok(LoaderConfig {
            max_concurrent_models: max,
            budget_bytes: None,
            idle_timeout: None,
        })
    }

    pub(crate) fn loader(&self) -> &ModelLoader<LlamaEngine> {
        &self.loader
    }

    /// The registry `registerModel` adds to and `listModels` lists.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn resolve(&self, spec: &str) -> Result<Resolved> {
        let preferred = crate::store::quant::level(self.strategy.quantization).ok();
        let mut r = self.registry.resolve_in(
            spec,
            preferred,
            &crate::paths::models_dir(),
            &crate::paths::bundled_dirs(),
        )?;
        r.context_length = r.context_length.min(self.strategy.context_size);
        if let Some(&n) = self.context_sizes.lock().get(&r.key) {
            r.context_length = n;
        }
        Ok(r)
    }

    /// Download `r`'s file when it is not on disk and the registry says where it is
    /// online (`hubRepo`, `hubFile`). With a download, `progress` reports it as 0 to 90
    /// and the load as 90 to 100; the function returned is the load's part. `asked`: the
    /// caller asked for this download itself (`downloadModel`); otherwise downloads must be
    /// allowed for the process (see `settings::downloads_allowed`).
    fn ensure_file(
        &self,
        r: &Resolved,
        progress: Option<ProgressFn>,
        cancel: &dyn Fn() -> bool,
        asked: bool,
    ) -> Result<Option<ProgressFn>> {
        let Some((repo, file)) = r.hub.as_ref().filter(|_| !r.path.exists()) else {
            return Ok(progress);
        };
        // No 4 GB download on a device that cannot hold the model.
        if let Some(size) = r.size {
            let mut available = SystemProbe.available();
            if let Some(budget) = self.loader.config().budget_bytes {
                available = available.min(budget);
            }
            if size > available {
                return Err(OrionError::InsufficientMemory {
                    what: r.key.clone(),
                    need: size,
                    available,
                });
            }
        }
        let url = crate::store::download::hub_url(repo, file);
        if !asked && !crate::settings::downloads_allowed() {
            return Err(OrionError::DownloadRequired {
                model: r.key.clone(),
                path: r.path.display().to_string(),
                url,
                size: r.size,
            });
        }
        let source =
            crate::store::download::Source::model(&url, r.sha256.as_deref(), r.size, Some(&r.key));
        // A file nothing can verify is fetched only when the user says so.
        if r.sha256.is_none() && !crate::store::download::unverified_allowed()? {
            return Err(OrionError::ModelNotFound {
                what: format!(
                    "model file `{}` (not on disk; {url} has it, but the registry gives no \
                     sha256 to check a download against: give the model's `sha256`, set {}=1 \
                     to download it unchecked (its size and GGUF header are still checked), or \
                     put the file there by hand)",
                    r.path
                        .file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                    crate::store::download::UNVERIFIED_ENV
                ),
                searched: r
                    .path
                    .parent()
                    .map_or_else(String::new, |p| p.display().to_string()),
            });
        }
        let mut last = None;
        let mut report = |done: u64, total: Option<u64>| {
            if let (Some(p), Some(total)) = (&progress, total) {
                let pct = (done.min(total) * 90 / total.max(1)) as u32;
                if last != Some(pct) {
                    last = Some(pct);
                    p(pct);
                }
            }
        };
        // Registry paths are relative to the models directory (checked when registered);
        // the download stays in it.
        crate::store::download::fetch_in(
            &source,
            &crate::paths::models_dir(),
            &r.path,
            true,
            &mut report,
            &|| cancel() || crate::lifecycle::is_shut_down(),
        )?;
        Ok(progress.map(|p| Arc::new(move |x: u32| p(90 + x.min(100) / 10)) as ProgressFn))
    }

    /// Load (or join the load of) `spec`, with `overrides`' GPU layers and context size
    /// instead of the registry's (when this call starts the load; a model loaded with
    /// another context size is `INVALID_OPTION`). Blocking.
    pub(crate) fn load(
        &self,
        spec: &str,
        overrides: LoadOverrides,
        progress: Option<ProgressFn>,
        cancel: &dyn Fn() -> bool,
    ) -> Result<LoadInfo> {
        let mut r = self.resolve(spec)?;
        r.gpu_layers = overrides.gpu_layers;
        if let Some(n) = overrides.context_size {
            r.context_length = n;
        }
        if let Some(remote) = r.remote.clone() {
            let m = self.load_remote(&r, remote, progress.as_ref(), cancel)?;
            return Ok(LoadInfo {
                key: r.key.clone(),
                path: r.path.display().to_string(),
                quantization: None,
                bytes: 0,
                context_length: m.context_length,
                loads: m.loads,
                placed: None,
                facts: crate::engine::llm::ModelFacts::default(),
            });
        }
        let progress = self
            .ensure_file(&r, progress, cancel, false)
            .map_err(|e| every_dir_searched(&r, e))?;
        // No lease: holding one, however briefly, makes the model look busy to a
        // concurrent load of another key.
        let m = self
            .loader
            .load(&r, progress)
            .map_err(|e| every_dir_searched(&r, e))?;
        // A load shared with other callers is not cut short; this caller gave up on it.
        if cancel() {
            return Err(OrionError::Aborted);
        }
        let facts = <LlamaEngine as crate::engine::llm::Engine>::facts(&m.model);
        // Both bounded by the trained length, as generation is.
        let bounded = |n: u32| n.min(facts.trained_context.max(1));
        let context_length = bounded(m.context_length);
        if let Some(n) = overrides
            .context_size
            .filter(|&n| bounded(n) != context_length)
        {
            return Err(OrionError::InvalidOption(format!(
                "contextSize {n}: {} is loaded with a context of {context_length} tokens; \
                 unloadModel() it first to load it with another",
                crate::error::echo(&m.key),
            )));
        }
        if let Some(n) = overrides.context_size {
            self.context_sizes.lock().insert(m.key.clone(), n);
        }
        Ok(LoadInfo {
            key: m.key.clone(),
            path: m.path.display().to_string(),
            quantization: m.quantization.clone(),
            bytes: m.bytes,
            context_length,
            loads: m.loads,
            placed: <LlamaEngine as crate::engine::llm::Engine>::placed(&m.model),
            facts,
        })
    }

    /// Download `spec`'s file as [`Self::load`] would (resumable, its size and sha256
    /// checked), without loading it: `progress` runs from 0 to 100 over the download
    /// alone. A file already on disk is checked the same way. Blocking.
    pub(crate) fn download(
        &self,
        spec: &str,
        progress: Option<ProgressFn>,
        cancel: &dyn Fn() -> bool,
    ) -> Result<DownloadInfo> {
        let r = self.resolve(spec)?;
        if r.remote.is_some() {
            return Err(OrionError::InvalidInput(format!(
                "{spec:?} is served by remote servers: it has no file to download"
            )));
        }
        let downloaded = !r.path.exists();
        // `ensure_file` gives a download 0 to 90 of a load's progress.
        let scaled =
            progress.map(|p| Arc::new(move |x: u32| p(x.min(90) * 100 / 90)) as ProgressFn);
        // Downloading is what this call is for: it needs no other permission.
        self.ensure_file(&r, scaled, cancel, true)
            .map_err(|e| every_dir_searched(&r, e))?;
        let bytes = match std::fs::metadata(&r.path) {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => {
                return Err(OrionError::ModelLoadFailed(format!(
                    "{} is not a file",
                    r.path.display()
                )))
            }
            // Not on disk and nowhere online to fetch it from.
            Err(_) => {
                return Err(every_dir_searched(
                    &r,
                    OrionError::ModelNotFound {
                        what: format!(
                            "model file `{}`",
                            r.path
                                .file_name()
                                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                        ),
                        searched: r
                            .path
                            .parent()
                            .map_or_else(String::new, |p| p.display().to_string()),
                    },
                ))
            }
        };
        self.loader.verify_file(&r, bytes)?;
        if cancel() {
            return Err(OrionError::Aborted);
        }
        // What the file holds, as a load would report it, rather than the level's name.
        let quantization = crate::store::gguf_check::read_header(&r.path)
            .ok()
            .and_then(|h| crate::store::gguf_check::quantization(&h))
            .or_else(|| r.quantization.clone());
        Ok(DownloadInfo {
            key: r.key.clone(),
            path: r.path.display().to_string(),
            quantization,
            bytes,
            downloaded,
        })
    }

    /// The remote model `r`, its servers checked first unless that was done for the
    /// same target. Blocking: it waits on the HTTP runtime.
    fn load_remote(
        &self,
        r: &Resolved,
        spec: crate::remote::RemoteSpec,
        progress: Option<&ProgressFn>,
        cancel: &dyn Fn() -> bool,
    ) -> Result<Arc<RemoteModel>> {
        let previous = self.remote.lock().get(&r.key).cloned();
        if let Some(m) = &previous {
            if m.spec == spec {
                return Ok(m.clone());
            }
        }
        let (rt, client) = crate::net::http()?;
        let pool = Arc::new(crate::remote::pool_for(&spec, client));
        let chat = crate::remote::chat::RemoteChat::new(pool, spec.model.clone(), spec.timeout());
        let report = |p: u32| {
            if let Some(f) = progress {
                f(p);
            }
        };
        let trained = rt.block_on(crate::remote::chat::until_cancelled(
            chat.check(&report),
            &|| cancel() || crate::lifecycle::is_shut_down(),
        ))??;
        let m = Arc::new(RemoteModel {
            context_length: trained.map_or(r.context_length, |t| t.min(r.context_length)),
            loads: previous.map_or(0, |p| p.loads) + 1,
            spec,
            chat,
            last_used: parking_lot::Mutex::new(std::time::Instant::now()),
            in_use: std::sync::atomic::AtomicUsize::new(0),
        });
        // Two first loads racing both check; the later one's entry stays, either is right.
        self.remote.lock().insert(r.key.clone(), m.clone());
        Ok(m)
    }

    /// Free the contexts kept for prefix reuse by every model (memory pressure); returns
    /// how many were freed.
    pub(crate) fn free_kept_contexts(&self) -> usize {
        self.loader.free_kept_where(|_| true)
    }

    /// Unload a model (forget a remote one); `false` when it was not loaded.
    pub(crate) fn unload(&self, key: &str) -> bool {
        let remote = self.remote.lock().remove(key).is_some();
        self.context_sizes.lock().remove(key);
        // Taken before the unload, which makes the model unavailable to new requests at
        // once; then its kept contexts are freed and those settling after a generation
        // (each holds the model) stopped and waited for: the memory goes within an
        // evaluation step or two rather than after the whole settling.
        let held: Vec<_> = self
            .loader
            .loaded_models()
            .into_iter()
            .filter(|m| m.key == key)
            .collect();
        let unloaded = self.loader.unload(key);
        for m in held {
            m.model.contexts.clear(None);
        }
        unloaded || remote
    }

    pub(crate) fn is_loaded(&self, key: &str) -> bool {
        self.loader.is_loaded(key) || self.remote.lock().contains_key(key)
    }

    pub(crate) fn mark_used(&self, key: &str) -> bool {
        if let Some(m) = self.remote.lock().get(key) {
            *m.last_used.lock() = std::time::Instant::now();
            return true;
        }
        self.loader.mark_used(key)
    }

    /// The remote models loaded, with their servers.
    pub(crate) fn remote_stats(&self) -> Vec<RemoteModelStats> {
        let mut out: Vec<RemoteModelStats> = self
            .remote
            .lock()
            .iter()
            .map(|(key, m)| RemoteModelStats {
                key: key.clone(),
                model: m.chat.model().to_string(),
                endpoints: m.chat.endpoints(),
                loads: m.loads,
                in_use: m.in_use.load(std::sync::atomic::Ordering::Relaxed),
                idle_ms: m.last_used.lock().elapsed().as_secs_f64() * 1000.0,
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Generate with `spec`, loading it first when needed. Blocking.
    pub(crate) fn generate(
        &self,
        spec: &str,
        prompt: &Prompt,
        params: &GenerateParams,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation> {
        let r = self.resolve(spec)?;
        if r.remote.is_some() {
            check_remote_schema(params)?;
        }
        let g = self
            .open(&r, cancel)?
            .generate(prompt, params, cancel, on_text)?;
        parsed(g, params)
    }

    /// The context length `spec`'s model generates in, loading it first when needed (a
    /// remote model's is its descriptor's). Blocking.
    pub(crate) fn context_length(&self, spec: &str, cancel: &AtomicBool) -> Result<u32> {
        let stopped = || cancel.load(std::sync::atomic::Ordering::Relaxed);
        Ok(self
            .load(spec, LoadOverrides::default(), None, &stopped)?
            .context_length)
    }

    /// Whether `spec` is served by remote servers.
    pub(crate) fn is_remote(&self, spec: &str) -> Result<bool> {
        Ok(self.resolve(spec)?.remote.is_some())
    }

    /// Answer a question about `spec`'s tokens, loading it first when needed. Blocking.
    pub(crate) fn tokens(
        &self,
        spec: &str,
        request: &TokenRequest,
        cancel: &AtomicBool,
    ) -> Result<TokenAnswer> {
        let r = self.resolve(spec)?;
        self.open(&r, cancel)?.tokens(request)
    }

    /// `r`'s model, ready to answer: a lease on a model of the loader (loaded, and
    /// downloaded first, when needed), or a remote model (its servers checked once).
    fn open(&self, r: &Resolved, cancel: &AtomicBool) -> Result<Box<dyn Chat>> {
        let stopped = || cancel.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(remote) = r.remote.clone() {
            let model = self.load_remote(r, remote, None, &stopped)?;
            return Ok(Box::new(RemoteUse::new(model)));
        }
        self.ensure_file(r, None, &stopped, false)?;
        Ok(Box::new(LocalUse(self.loader.acquire(r, None)?)))
    }
}

/// A remote server enforces a schema with its own engine. Unless llguidance was named (for
/// a server that runs it), the schema is held to llama.cpp's keywords, those of the server
/// most used with this package, so that none is ignored there in silence.
fn check_remote_schema(params: &GenerateParams) -> Result<()> {
    match &params.output {
        Some(crate::engine::llm::Output::JsonSchema(schema, None)) => schema::check(schema),
        _ => Ok(()),
    }
}

/// `g` with its JSON parsed when the answer was to follow a JSON schema. Constrained
/// sampling makes the text valid unless it was cut short: then `OUTPUT_INCOMPLETE`. A
/// remote server that ignored the schema gives text that is not JSON: `REMOTE_PROTOCOL`
/// would blame the protocol, so `INFERENCE_FAILED` says what happened.
///
/// An answer that had to call a tool (`toolChoice` `'required'` or `{ name }`) and was
/// cut before its call was complete is `OUTPUT_INCOMPLETE` too.
fn parsed(mut g: Generation, params: &GenerateParams) -> Result<Generation> {
    use crate::chat::ToolChoice;
    use crate::engine::llm::{FinishReason, Output};
    // The caller stopped it and asked for what it holds, finished or not.
    if g.finish_reason == FinishReason::Abort {
        return Ok(g);
    }
    let forced = params
        .tools
        .as_deref()
        .is_some_and(|t| matches!(t.choice, ToolChoice::Required | ToolChoice::Named(_)));
    if forced && g.tool_calls.is_empty() && g.finish_reason != FinishReason::Eos {
        return Err(OrionError::OutputIncomplete {
            reason: match g.finish_reason {
                FinishReason::MaxTokens => "maxTokens",
                FinishReason::ContextFull => "the context's end",
                _ => "a stop string",
            },
            tokens: g.tokens,
        });
    }
    if !matches!(params.output, Some(Output::JsonSchema(..))) {
        return Ok(g);
    }
    match serde_json::from_str(&g.text) {
        Ok(v) => {
            g.json = Some(v);
            Ok(g)
        }
        Err(_) if g.finish_reason != FinishReason::Eos => Err(OrionError::OutputIncomplete {
            reason: match g.finish_reason {
                FinishReason::MaxTokens => "maxTokens",
                FinishReason::ContextFull => "the context's end",
                _ => "a stop string",
            },
            tokens: g.tokens,
        }),
        Err(e) => Err(OrionError::InferenceFailed(format!(
            "the answer is not the JSON its schema asked for ({e}): a remote server that ignores \
             `response_format`?"
        ))),
    }
}

/// A lease on a model of the loader, for one generation.
struct LocalUse(Lease<ChatModel>);

impl Chat for LocalUse {
    fn tokens(self: Box<Self>, request: &TokenRequest) -> Result<TokenAnswer> {
        use crate::llama::tokens;
        let shared = self.0.shared();
        let m = &shared.model;
        Ok(match request {
            TokenRequest::Count { prompt, raw, tools } => {
                TokenAnswer::Count(tokens::count_prompt(m, prompt, *raw, tools.as_deref())?)
            }
            TokenRequest::Tokenize { text, special } => {
                TokenAnswer::Tokens(tokens::tokenize(m, text, *special))
            }
            TokenRequest::Detokenize { ids } => TokenAnswer::Text(tokens::detokenize(m, ids)?),
        })
    }

    fn generate(
        self: Box<Self>,
        prompt: &Prompt,
        params: &GenerateParams,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation> {
        let lease = self.0;
        let m = lease.shared();
        let n_ctx = m.context_length.min(m.model.n_ctx_train().max(1));
        let (generation, unsettled) =
            crate::llama::generate::generate(&m.model, n_ctx, prompt, params, cancel, on_text)?;
        // The request ends here: the caller has its answer (and the model its lease back)
        // while the context is settled for the next turn on a thread of its own.
        drop(lease);
        if let Some(u) = unsettled {
            keep_in_background(m, u);
        }
        Ok(generation)
    }
}

/// A remote model, counted in use for one generation.
struct RemoteUse(Arc<RemoteModel>);

impl RemoteUse {
    fn new(m: Arc<RemoteModel>) -> Self {
        *m.last_used.lock() = std::time::Instant::now();
        m.in_use.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(m)
    }
}

impl Drop for RemoteUse {
    fn drop(&mut self) {
        self.0
            .in_use
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        *self.0.last_used.lock() = std::time::Instant::now();
    }
}

impl Chat for RemoteUse {
    fn tokens(self: Box<Self>, _request: &TokenRequest) -> Result<TokenAnswer> {
        Err(OrionError::InvalidInput(
            "token counts need the model's tokenizer, which a remote model's OpenAI API does \
             not offer: count with an in-process copy of the model (its GGUF file)"
                .into(),
        ))
    }

    fn generate(
        self: Box<Self>,
        prompt: &Prompt,
        params: &GenerateParams,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation> {
        let (rt, _) = crate::net::http()?;
        rt.block_on(self.0.chat.generate(prompt, params, cancel, on_text))
    }
}

/// Settle `u` and keep it in `model`'s cache, on a thread that ends when it is done, when
/// the next request on the model takes the context over, or when the model is unloaded
/// (each stops it within one evaluation step). Counted as work, so that the process's
/// exit waits for that step rather than freeing the model under it.
fn keep_in_background(model: Arc<LoadedModel<ChatModel>>, u: crate::llama::generate::Unsettled) {
    let Ok(work) = crate::lifecycle::begin_work() else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("orion-llm-keep".into())
        .spawn(move || {
            let _work = work;
            u.keep();
            // Held until kept: the loader counts the model as loaded until then.
            drop(model);
        });
    // Not spawned: the job was dropped, the context unkept.
    drop(spawned);
}
