//! The process-wide services. Every thread (the main thread and each `worker_thread`)
//! loads the same addon instance, so these statics are shared by all of them: this is
//! the one place where "one per process" is decided. Services are built here, once, and
//! given what they use (the LLM service its model registry, its loader its sha256
//! memo), so that unit tests build their own instead of sharing the process's.
//!
//! # Process-wide state
//!
//! Here: the services and what only they need.
//!
//! - `EMBEDDING`: the embedding services, one per model directory.
//! - `LLM` (built under `LLM_INIT`): the LLM service, which owns the model registry
//!   (`llm::registry::Registry`: built-ins, catalog, `ORION_MODEL_REGISTRY`, models
//!   registered since) and, through its loader, the sha256 memo
//!   (`store::integrity::Integrity`).
//! - `MONITOR`, `MEMORY_LISTENER` and the `Once`s `OBSERVING` (in [`observe_memory`])
//!   and `DONE` (in [`auto_start_memory_monitor`]): the memory monitor and who hears it.
//!
//! In the floor that owns the resource (none of them imports this file):
//!
//! - `settings::SETTINGS`: what `configure()` set.
//! - `lifecycle::{SHUT_DOWN, WORK, WORK_DONE, COMPUTING, COMPUTE_DONE, EXIT_HANDLERS, AT_EXIT}`: the process's
//!   exit; this file decides when it begins ([`begin_shutdown`]).
//! - `net::HTTP`: the one HTTP client (connection pool) and the async runtime its
//!   requests run on, for remote servers and downloads; `remote::ENDPOINTS`: remote
//!   servers by base URL, with their health and load, shared by every target that
//!   names them.
//! - `LLAMA_BACKEND`, `LLAMA_CONTEXT_CREATION` (llama.cpp's engine): llama.cpp's
//!   backend and the lock context creation takes; llama.cpp's own state is
//!   process-global. `llama::modules::{OFFERED, CHECKS}`: the GPU backend modules
//!   `lib/binding.js` names before llama.cpp starts, and what their checks found
//!   (ggml's registry of backends is process-global too). `llama::gate::GATE`: the
//!   cores that llama.cpp's computations on the CPU hold (they take turns, process-wide).
//! - `ORT_ENVIRONMENT` (ONNX Runtime's engine): ort allows one environment per process.
//! - `sysmem::SYSTEM`: sysinfo's reader, a cache of the last reading (no state of
//!   ours), kept next to the only code that reads it; `sysmem::cores_busy_elsewhere`'s
//!   `LOAD`, a second reader for the CPU load with its last figure (a CPU reading
//!   compares with the same reader's previous one).
//! - `js::env_guard::ENVS`: work in flight per JS environment, keyed by environments
//!   that only the binding layer knows.
//! - `js::monitor::subscribers::{SUBSCRIBERS, NEXT_ID}`: JS functions (napi thread-safe
//!   functions) subscribed to the monitor.
//! - `js::lifecycle::{HOOKED, LIVE_ENVS, ATTACHED}`: which JS environments attached the
//!   addon's exit hooks (`ATTACHED` is per thread).
//! - Test code only: the GGUF fuzz test's `CASE` and `CASE_LEN` (`llama::engine`'s tests),
//!   read by its SIGABRT handler.
//!
//! # Locks
//!
//! Each lock here is held for a few lines, never across a model load, a batch or a
//! generation. Where two are held at once, the one named first is taken first:
//!
//! - `WORK` (with `WORK_DONE`) is a leaf: nothing else is taken under it. `SHUT_DOWN` is
//!   set under it ([`begin_shutdown`], through `lifecycle::refuse_new_work`) and checked under it (`lifecycle::begin_work`), which is
//!   what makes "no work starts once shutdown has begun" hold. [`wait_for_shutdown`]
//!   and [`quiesce`] hold it only inside `WORK_DONE.wait_until` (`lifecycle::wait_for_work`).
//! - `COMPUTING` (with `COMPUTE_DONE`, llama.cpp decode steps in flight) is a leaf, held
//!   to count a step and inside `COMPUTE_DONE.wait_until`, never across the step.
//! - `llama::gate::GATE`'s state lock is a leaf, held to take or give back cores and
//!   inside its condvar's wait. A decode step's turn (the cores, not the lock) is taken
//!   after the step is counted in `COMPUTING` and held across the step alone: no decode
//!   runs inside another, so a thread never waits for a turn while holding one. Before
//!   taking a turn, a step reads the CPU load (`sysmem`'s `LOAD` lock, a leaf, held for
//!   the reading alone).
//! - `EMBEDDING` before `SETTINGS` (read) and before an embedding queue's state lock.
//!   [`embedding_service`] reads the settings and the model's `config.json` and spawns
//!   the service's thread under `EMBEDDING`, but loads nothing there (the model loads
//!   on that thread, later); [`begin_shutdown`] closes every queue under it. It checks
//!   `SHUT_DOWN` under `EMBEDDING`, and [`begin_shutdown`] sets `SHUT_DOWN` before
//!   taking `EMBEDDING`: a service either exists before the close (and is closed) or is
//!   refused. Joining the services' threads and waiting for them to be idle happen on a
//!   copy of the list ([`embedding_services`]), outside the lock.
//! - `EMBEDDING` before `HTTP` and `ENDPOINTS` (a remote service is built under
//!   `EMBEDDING`); both are leaves, taken one at a time. `HTTP` is taken out (and its
//!   runtime stopped) by [`wait_for_shutdown`] after every load and generation returned,
//!   with no lock held while the runtime's threads are joined.
//! - `SETTINGS` is a leaf: only cloned or updated under it.
//! - `LLM_INIT`, then what building the LLM service takes: `SETTINGS` (read), `sysmem`'s
//!   reader and llama.cpp's backend initialisation (`LLAMA_BACKEND`, through
//!   `strategy::detect`). No caller of [`llm_service`] holds another lock. `LLM` is read
//!   without a lock.
//! - `LLAMA_CONTEXT_CREATION` is a leaf, held while llama.cpp creates one context.
//! - `ORT_ENVIRONMENT` is a leaf, held while ONNX Runtime's library loads (on an
//!   embedding service's thread, which holds no other lock).
//! - The registry's and the sha256 memo's locks are leaves (the memo's per-file lock is
//!   held while that file is hashed, by a model load holding no other lock).
//! - `WORK` and `EMBEDDING` are never held together: [`begin_shutdown`] lets go of
//!   `WORK` before it takes `EMBEDDING`.
//!
//! The memory monitor calls back into this module ([`Services`]) on its own thread or
//! a blocking-task thread (`takeSnapshot`), never a JS thread (freeing kept contexts
//! waits for those still settling), with none of its locks held; those callbacks take `WORK` (briefly),
//! `EMBEDDING` (to copy the list), the loader's state lock and the queues' state locks,
//! one at a time.
//!
//! Its observer ([`observe_memory`]) is also called with none of the monitor's locks
//! held: it takes the monitor's state lock (to copy the alerts for the status file),
//! then the binding layer's subscriber list, one at a time.

use crate::embedding::queue::BatchConfig;
use crate::embedding::{Backend, EmbeddingService};
use crate::error::{OrionError, Result};
use crate::onnx::model::{read_dimension, FastEmbedFactory, DEFAULT_MODEL};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

/// What a caller asks of the shared embedding service.
#[derive(Clone, Debug, Default)]
pub(crate) struct EmbeddingRequest {
    /// Model name: a directory under the models directory.
    pub(crate) model: Option<String>,
    /// A directory holding the model files; wins over the name.
    pub(crate) model_path: Option<PathBuf>,
    pub(crate) config: BatchConfig,
    pub(crate) threads: Option<usize>,
    /// A remote server to use instead of a model in this process; wins over the rest.
    pub(crate) remote: Option<crate::remote::RemoteSpec>,
    /// The `dimensions` to ask the remote servers for.
    pub(crate) remote_dimensions: Option<u32>,
    /// How a local model computes.
    pub(crate) precision: crate::onnx::graph::Precision,
}

/// What one embedding service is for: callers asking for the same share it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ServiceKey {
    /// A model directory, canonicalised, and how it computes.
    Local(PathBuf, crate::onnx::graph::Precision),
    /// Remote servers and the model they serve (and the key: another key is another
    /// client of the servers), and the `dimensions` asked of them.
    Remote(crate::remote::RemoteSpec, Option<u32>),
    /// A reranker's GGUF file or cross-encoder's directory, canonicalised, and how it
    /// computes (a GGUF file: always exact, its own types).
    Rerank(PathBuf, crate::onnx::graph::Precision),
    /// Servers ranking with `/v1/rerank`.
    RemoteRerank(crate::remote::RemoteSpec),
}

/// What a caller asks of the shared reranker.
#[derive(Clone, Debug, Default)]
pub(crate) struct RerankRequest {
    /// A GGUF file under the models directory.
    pub(crate) model: Option<String>,
    /// A GGUF file; wins over the name.
    pub(crate) model_path: Option<PathBuf>,
    pub(crate) config: BatchConfig,
    pub(crate) threads: Option<usize>,
    /// Servers to rank on instead; wins over the rest.
    pub(crate) remote: Option<crate::remote::RemoteSpec>,
    /// How a cross-encoder's int8 weights are computed with (a GGUF reranker computes
    /// with its file's own types).
    pub(crate) precision: crate::onnx::graph::Precision,
}

/// The reranking service for the requested model, started on first request: like an
/// embedding service (and among them, for shutdown, the monitor and the statistics),
/// each (query, document) pair a queued text whose vector is its one score.
pub(crate) fn rerank_service(req: RerankRequest) -> Result<Arc<EmbeddingService>> {
    crate::lifecycle::set_exit_hook(shutdown_at_exit);
    let mut catalog = None;
    let path = match (&req.remote, &req.model_path, &req.model) {
        (Some(spec), _, _) => return remote_service(spec, req.config, None, true),
        (None, Some(p), _) => p.clone(),
        (None, None, Some(name)) => {
            if name.is_empty() || name.contains(['/', '\\', '\0']) || name == ".." {
                return Err(OrionError::InvalidOption(format!(
                    "model {name:?} is not a model name; pass a file as `modelPath` instead"
                )));
            }
            match crate::store::catalog::gguf_entry(name).filter(|c| c.reranker) {
                Some(c) => {
                    let path = crate::paths::locate(&std::path::Path::new(name).join(&c.hub_file));
                    catalog = Some((name.clone(), c));
                    path
                }
                None => crate::paths::locate(std::path::Path::new(name)),
            }
        }
        (None, None, None) => {
            return Err(OrionError::InvalidOption(
                "a reranker needs a model: `modelPath` (a GGUF reranker's file), `model` (one \
                 in the models directory) or `remote` (servers with /v1/rerank); none ships \
                 with the package"
                    .into(),
            ))
        }
    };
    if catalog.is_none() && path.is_dir() {
        return onnx_rerank_service(&path, req);
    }
    if catalog.is_none() && !is_gguf(&path) && path.exists() {
        return Err(OrionError::InvalidOption(format!(
            "{} is not a GGUF file nor a directory: rerankers run on llama.cpp (a GGUF file, \
             rank pooling) or ONNX Runtime (a cross-encoder's directory)",
            path.display()
        )));
    }
    let key = ServiceKey::Rerank(
        std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone()),
        crate::onnx::graph::Precision::Exact,
    );
    let mut services = EMBEDDING.lock();
    if crate::lifecycle::is_shut_down() {
        return Err(OrionError::ShutDown);
    }
    if let Some(s) = services.get(&key) {
        return Ok(s.clone());
    }
    let name = match &catalog {
        Some((id, _)) => id.clone(),
        None => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let svc = EmbeddingService::start(
        name.strip_suffix(".gguf").unwrap_or(&name).to_string(),
        Some(1),
        Backend::Llama {
            factory: Box::new(crate::llama::embed::LlamaEmbedFactory {
                path,
                threads: req.threads,
                rank: true,
                catalog,
                place: strategy_device(),
            }),
        },
        req.config,
        None,
    )?;
    services.insert(key, svc.clone());
    Ok(svc)
}

/// The reranking service for the ONNX cross-encoder in the directory `dir`.
fn onnx_rerank_service(dir: &std::path::Path, req: RerankRequest) -> Result<Arc<EmbeddingService>> {
    if crate::onnx::rerank::onnx_file(dir, false).is_none() {
        return Err(OrionError::InvalidOption(format!(
            "{} is a directory without a cross-encoder's ONNX file (model.onnx, \
             onnx/model.onnx or onnx/model_quantized.onnx): give a GGUF reranker's file or a \
             cross-encoder's directory",
            dir.display()
        )));
    }
    let key = ServiceKey::Rerank(
        std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()),
        req.precision,
    );
    let mut services = EMBEDDING.lock();
    if crate::lifecycle::is_shut_down() {
        return Err(OrionError::ShutDown);
    }
    if let Some(s) = services.get(&key) {
        return Ok(s.clone());
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let svc = EmbeddingService::start(
        name,
        Some(1),
        Backend::Local {
            factory: Box::new(crate::onnx::rerank::OnnxRerankFactory {
                dir: dir.to_path_buf(),
                runtime_candidates: crate::onnx::locate::candidates(
                    crate::settings::settings().ort_library_path,
                ),
                threads: req.threads,
                precision: req.precision,
            }),
            precision: req.precision,
        },
        req.config,
        None,
    )?;
    services.insert(key, svc.clone());
    Ok(svc)
}

/// The embedding services, by canonical model directory. Taken before `SETTINGS` and a
/// queue's state lock; never held while waiting for a service's thread.
static EMBEDDING: LazyLock<Mutex<HashMap<ServiceKey, Arc<EmbeddingService>>>> =
    LazyLock::new(Default::default);

/// The embedding service for the requested model, started on first request. Callers
/// naming the same model directory share one service, hence one loaded model.
pub(crate) fn embedding_service(req: EmbeddingRequest) -> Result<Arc<EmbeddingService>> {
    crate::lifecycle::set_exit_hook(shutdown_at_exit);
    if let Some(spec) = &req.remote {
        return remote_service(spec, req.config, req.remote_dimensions, false);
    }
    let name = req
        .model
        .clone()
        .unwrap_or_else(|| DEFAULT_MODEL.to_string());
    if name.is_empty() || name.contains(['/', '\\', '\0']) || name == ".." {
        return Err(OrionError::InvalidOption(format!(
            "model {name:?} is not a model name; pass a directory as `modelPath` instead"
        )));
    }
    // A GGUF model of the catalog: its file in a directory of its name.
    let catalog = req
        .model_path
        .is_none()
        .then(|| crate::store::catalog::gguf_entry(&name))
        .flatten()
        .filter(|c| !c.reranker);
    let dir = match (&req.model_path, &catalog) {
        (Some(p), _) => p.clone(),
        (None, Some(c)) => crate::paths::locate(&std::path::Path::new(&name).join(&c.hub_file)),
        (None, None) => crate::paths::locate(std::path::Path::new(&name)),
    };
    // A GGUF file (by its name or its first bytes) is a llama.cpp model; a directory is
    // an ONNX one.
    let gguf = catalog.is_some() || is_gguf(&dir);
    let key = ServiceKey::Local(
        std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone()),
        // llama.cpp computes with the file's own types.
        if gguf {
            crate::onnx::graph::Precision::Exact
        } else {
            req.precision
        },
    );
    let mut services = EMBEDDING.lock();
    // Under the lock that `begin_shutdown` takes to close every service: none starts
    // (and loads ONNX Runtime) while the process exits.
    if crate::lifecycle::is_shut_down() {
        return Err(OrionError::ShutDown);
    }
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
    if gguf || catalog.is_some() {
        let catalog = catalog.map(|c| (display.clone(), c));
        let svc = gguf_embedding_service(dir, &display, &req, catalog)?;
        services.insert(key, svc.clone());
        return Ok(svc);
    }
    let factory = FastEmbedFactory {
        dir: dir.clone(),
        searched: match &req.model_path {
            Some(_) => dir.display().to_string(),
            None => crate::paths::searched(&dir),
        },
        runtime_candidates: crate::onnx::locate::candidates(
            crate::settings::settings().ort_library_path,
        ),
        threads: req.threads,
        hub_fallback: req.model_path.is_none() && display == DEFAULT_MODEL,
        // A model named by the catalog: its files are fetched when missing (a bundled
        // or fetched copy is used as it is), and it pools as the catalog says.
        catalog: req
            .model_path
            .is_none()
            .then(|| crate::store::catalog::embedding_entry(&display))
            .flatten(),
        precision: req.precision,
        int8_weights: crate::onnx::graph::Int8Weights::for_this_cpu(),
    };
    let family = crate::store::family::of(&[&display]);
    let svc = EmbeddingService::start(
        display,
        read_dimension(&dir),
        Backend::Local {
            factory: Box::new(factory),
            precision: req.precision,
        },
        req.config,
        family,
    )?;
    services.insert(key, svc.clone());
    Ok(svc)
}

/// An embedding service for the GGUF model at `dir`, run by llama.cpp.
fn gguf_embedding_service(
    dir: PathBuf,
    display: &str,
    req: &EmbeddingRequest,
    catalog: Option<(String, crate::store::catalog::CatalogGguf)>,
) -> Result<Arc<EmbeddingService>> {
    let header = crate::store::gguf_check::read_header(&dir).ok();
    let text = |key: &str| match header.as_ref().and_then(|h| h.get(key)) {
        Some(crate::store::gguf_check::Kv {
            value: crate::store::gguf_check::Value::Str(s),
            ..
        }) => String::from_utf8_lossy(s).into_owned(),
        _ => String::new(),
    };
    let family =
        crate::store::family::of(&[&text("general.name"), &text("general.basename"), display]);
    let svc = EmbeddingService::start(
        display.strip_suffix(".gguf").unwrap_or(display).to_string(),
        header
            .as_ref()
            .and_then(|h| crate::store::gguf_check::check(h).ok())
            .map(|h| h.n_embd as usize),
        Backend::Llama {
            factory: Box::new(crate::llama::embed::LlamaEmbedFactory {
                path: dir,
                threads: req.threads,
                rank: false,
                catalog,
                place: strategy_device(),
            }),
        },
        req.config.clone(),
        family,
    )?;
    Ok(svc)
}

/// Where a GGUF embedding model or reranker goes: the strategy's device at load, or none.
/// Unlike a chat model's load, it does not fail for want of the GPU asked for: it runs
/// on the CPU.
fn strategy_device() -> crate::llama::engine::Place {
    Arc::new(|| {
        let s = crate::llm::strategy::detect()?;
        Ok(crate::llama::engine::Placement {
            device: s.device.map(|d| d.index),
        })
    })
}

/// Whether `path` is a GGUF file: named `.gguf`, or a file that starts with GGUF's magic.
fn is_gguf(path: &std::path::Path) -> bool {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return true;
    }
    let mut magic = [0u8; 4];
    path.is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok()
        && &magic == b"GGUF"
}

/// The embedding (or, with `rerank`, reranking) service for a remote target, started on
/// first request; one per target (servers, model and key) for the whole process, like a
/// local model.
fn remote_service(
    spec: &crate::remote::RemoteSpec,
    config: BatchConfig,
    dimensions: Option<u32>,
    rerank: bool,
) -> Result<Arc<EmbeddingService>> {
    spec.validate("remote")?;
    let key = if rerank {
        ServiceKey::RemoteRerank(spec.clone())
    } else {
        ServiceKey::Remote(spec.clone(), dimensions)
    };
    let mut services = EMBEDDING.lock();
    if crate::lifecycle::is_shut_down() {
        return Err(OrionError::ShutDown);
    }
    if let Some(s) = services.get(&key) {
        return Ok(s.clone());
    }
    let (runtime, client) = crate::net::http()?;
    let pool = Arc::new(crate::remote::pool_for(spec, client));
    let (model, timeout) = (spec.model.clone(), spec.timeout());
    let (engine, dimension, family): (Arc<dyn crate::engine::embedding::RemoteEngine>, _, _) =
        if rerank {
            let engine = crate::remote::rerank::RemoteRerank::new(pool, model, timeout);
            (Arc::new(engine), Some(1), None)
        } else {
            let engine =
                crate::remote::embeddings::RemoteEmbeddings::new(pool, model, timeout, dimensions);
            // The model the servers serve, by its name there (`nomic-embed-text`, ...).
            (
                Arc::new(engine),
                None,
                crate::store::family::of(&[&spec.model]),
            )
        };
    let svc = EmbeddingService::start(
        spec.model.clone(),
        dimension,
        Backend::Remote { engine, runtime },
        config,
        family,
    )?;
    services.insert(key, svc.clone());
    Ok(svc)
}

/// The process's HTTP client (one connection pool) and the small async runtime its
/// requests run on. Taken out and shut down by [`wait_for_shutdown`], once nothing
/// uses it any more.
/// First half of shutdown: refuse new work, stop the background monitor, and close
/// every embedding queue (waiters get `SHUT_DOWN`). Generations in flight are cancelled
/// by the binding layer, which knows their flags; then [`wait_for_shutdown`].
pub(crate) fn begin_shutdown() {
    crate::lifecycle::refuse_new_work();
    MONITOR.stop();
    for s in EMBEDDING.lock().values() {
        s.close();
    }
}

/// Second half: wait, until `deadline`, for every embedding thread to end (its model
/// dropped) and every load, generation and unload to return. `true` when all did.
pub(crate) fn wait_for_shutdown(deadline: std::time::Instant) -> bool {
    let threads = embedding_services().iter().all(|s| s.join(deadline));
    let mut work = crate::lifecycle::wait_for_work(deadline);
    if !work {
        // Past the deadline, a llama.cpp decode step still in flight is waited for all the
        // same: it cannot be interrupted, it ends at the step's end (no other starts), and
        // exiting under it crashes in llama.cpp's destructors. Measured under qemu, where a
        // step of the demo model takes seconds; on hardware steps take milliseconds to a
        // few seconds (a long prompt on a large model).
        crate::lifecycle::wait_for_compute(std::time::Instant::now() + STEP_WAIT);
        work = crate::lifecycle::wait_for_work(std::time::Instant::now() + SHUTDOWN_TIMEOUT);
    }
    // Last: a generation streaming from a server runs on it until it sees the shutdown.
    crate::net::stop_http(deadline);
    work && threads
}

/// How long shutdown waits for native work to end. A model load or a batch in flight
/// normally ends in milliseconds (a llama.cpp load is abandoned at its next progress
/// step); ONNX Runtime's session creation, which cannot be interrupted, takes up to
/// about a second for the default model on a slow machine.
pub(crate) const SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long shutdown waits, past [`SHUTDOWN_TIMEOUT`], for llama.cpp decode steps in flight.
const STEP_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Stop every native thread before the process's static destructors run (ONNX Runtime's
/// and llama.cpp's own, which crash under a thread still inside them). Idempotent;
/// `true` when everything ended within `timeout`.
pub(crate) fn shutdown(timeout: std::time::Duration) -> bool {
    begin_shutdown();
    wait_for_shutdown(std::time::Instant::now() + timeout)
}

/// What `lifecycle`'s exit handler runs (see
/// [`crate::lifecycle::shutdown_before_later_destructors`]): set before any service is
/// built, hence before any model loads.
fn shutdown_at_exit() {
    shutdown(SHUTDOWN_TIMEOUT);
}

/// For the moment the last JS environment using the addon goes away (a process whose
/// main thread never loaded it, whose last worker ends): wait, until `deadline`, for the
/// native threads to be outside ONNX Runtime and llama.cpp, since the process may now
/// exit at once. Nothing is shut down: a later worker finds everything working.
pub(crate) fn quiesce(deadline: std::time::Instant) -> bool {
    let idle = embedding_services().iter().all(|s| s.wait_idle(deadline));
    crate::lifecycle::wait_for_work(deadline) && idle
}

/// Every embedding service started in this process.
pub(crate) fn embedding_services() -> Vec<Arc<EmbeddingService>> {
    EMBEDDING.lock().values().cloned().collect()
}

/// The process's LLM service, once built. Read without a lock ([`llm_service`], the
/// monitor's [`Services`]); written once, under `LLM_INIT`.
static LLM: std::sync::OnceLock<crate::llm::LlmService> = std::sync::OnceLock::new();
/// Held while the LLM service is built, so that exactly one is (each starts its own
/// keep-alive thread). `OnceLock::get_or_try_init` would do this but is unstable.
static LLM_INIT: Mutex<()> = Mutex::new(());

/// The process's LLM service, built by the first caller; racing callers wait for that
/// one build. A failed build (a bad `ORION_MAX_CONCURRENT_MODELS`) is retried by the
/// next call.
pub(crate) fn llm_service() -> Result<&'static crate::llm::LlmService> {
    crate::lifecycle::set_exit_hook(shutdown_at_exit);
    if let Some(svc) = LLM.get() {
        return Ok(svc);
    }
    let _building = LLM_INIT.lock();
    // Built by the caller this one waited for.
    if let Some(svc) = LLM.get() {
        return Ok(svc);
    }
    let created = crate::llm::LlmService::new(
        crate::llm::LlmService::default_config()?,
        crate::llm::registry::Registry::from_env(),
    )?;
    // llama.cpp starts now, off the JS thread: with a GPU package installed that takes
    // a second or more (the GPU module's check in a child process).
    crate::llm::strategy::start_in_background();
    // Only ever set here, under `LLM_INIT`: this is the one build.
    Ok(LLM.get_or_init(|| created))
}

/// What the monitor can see and free: the loader's models and the embedding caches.
struct Services;

impl crate::monitor::Holder for Services {
    fn models(&self) -> Vec<crate::monitor::HeldModel> {
        let Some(llm) = LLM.get() else {
            return Vec::new();
        };
        llm.loader()
            .stats()
            .models
            .into_iter()
            .map(|m| crate::monitor::HeldModel {
                key: m.key,
                bytes: m.bytes,
                quantization: m.quantization,
                idle_for: m.idle_for,
                in_use: m.in_use > 0,
            })
            .collect()
    }

    fn embedding_cache_bytes(&self) -> u64 {
        embedding_services()
            .iter()
            .map(|s| s.stats().cache_bytes as u64)
            .sum()
    }

    fn unload_lru_idle(&self) -> Option<(String, u64)> {
        let _work = crate::lifecycle::begin_work().ok()?;
        let llm = LLM.get()?;
        // Kept contexts go first: they cost only the next turn's prompt evaluation.
        llm.free_kept_contexts();
        llm.loader().unload_lru_idle()
    }

    fn unload_lru_idle_on(&self, device: &str) -> Option<(String, u64)> {
        let _work = crate::lifecycle::begin_work().ok()?;
        LLM.get()?.loader().unload_lru_idle_on(device)
    }

    fn free_kept_on(&self, device: &str) -> usize {
        let Ok(_work) = crate::lifecycle::begin_work() else {
            return 0;
        };
        LLM.get().map_or(0, |llm| llm.loader().free_kept_on(device))
    }

    fn shrink_embedding_cache(&self, bytes: u64) -> u64 {
        let services = embedding_services();
        let each = bytes as usize / services.len().max(1);
        services.iter().map(|s| s.shrink_cache(each) as u64).sum()
    }
}

static MONITOR: LazyLock<crate::monitor::Monitor> = LazyLock::new(|| {
    crate::monitor::Monitor::new(crate::monitor::MonitorConfig::default(), Box::new(Services))
});

/// The process's memory monitor: one history for every thread.
pub(crate) fn memory_monitor() -> &'static crate::monitor::Monitor {
    &MONITOR
}

/// A fresh reading of system and process memory.
pub(crate) fn memory_reading() -> crate::monitor::Reading {
    let (rss, virtual_bytes) = crate::sysmem::process();
    crate::monitor::Reading {
        system: crate::sysmem::memory(),
        rss,
        virtual_bytes,
        devices: crate::llm::strategy::started_devices()
            .into_iter()
            .map(|d| crate::monitor::DeviceMemory {
                name: d.name,
                backend: d.backend,
                total: d.total_bytes,
                free: d.free_bytes,
                models_bytes: d.models_bytes,
                headroom: crate::llm::strategy::DEVICE_HEADROOM,
            })
            .collect(),
    }
}

/// Where this process leaves its latest snapshot for `orion-native status`, which runs
/// in another process.
fn status_file() -> PathBuf {
    crate::paths::default_cache_dir()
        .join("status")
        .join(format!("{}.json", std::process::id()))
}

/// Publish `snap` for `orion-native status`, written through a temporary file so that
/// readers never see half of it.
fn publish_status(snap: &crate::monitor::Snapshot) {
    let file = status_file();
    let Some(dir) = file.parent() else { return };
    let alerts = MONITOR.alerts();
    let Ok(json) = serde_json::to_string(&snap.status(&alerts)) else {
        return;
    };
    let tmp = file.with_extension("tmp");
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, json))
        .and_then(|()| std::fs::rename(&tmp, &file));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Told of every snapshot the monitor records, with the alerts it raised.
pub(crate) type MemoryListener = fn(&crate::monitor::Snapshot, &[crate::monitor::Alert]);

/// The binding layer's subscribers (JS functions, hence kept there), once the first
/// subscription is made.
static MEMORY_LISTENER: std::sync::OnceLock<MemoryListener> = std::sync::OnceLock::new();

/// From the first call on, each snapshot recorded while background monitoring runs is
/// published for `orion-native status`, and every snapshot goes to the listener.
fn observe_memory() {
    static OBSERVING: std::sync::Once = std::sync::Once::new();
    OBSERVING.call_once(|| {
        MONITOR.set_observer(Box::new(|snap, alerts| {
            if MONITOR.is_running() {
                publish_status(snap);
            }
            if let Some(listener) = MEMORY_LISTENER.get() {
                listener(snap, alerts);
            }
        }));
    });
}

/// Send every snapshot recorded from now on, with its alerts, to `listener` (the first
/// one given stays), and start publishing snapshots for `orion-native status`.
pub(crate) fn listen_to_memory(listener: MemoryListener) {
    let _ = MEMORY_LISTENER.set(listener);
    observe_memory();
}

/// `ORION_ENABLE_MEMORY_MONITOR=1` starts background monitoring, publishing each
/// snapshot, on the first call (every `ORION_MEMORY_MONITOR_INTERVAL_MS`, default 5000);
/// later calls do nothing.
pub(crate) fn auto_start_memory_monitor() -> Result<()> {
    static DONE: std::sync::Once = std::sync::Once::new();
    let mut result = Ok(());
    DONE.call_once(|| {
        let on = std::env::var("ORION_ENABLE_MEMORY_MONITOR")
            .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
        if on {
            result = crate::config::env_u64("ORION_MEMORY_MONITOR_INTERVAL_MS").map(|ms| {
                let ms = ms.filter(|&ms| ms > 0).unwrap_or(5000);
                start_memory_monitor(std::time::Duration::from_millis(ms));
            });
        }
    });
    result
}

/// Take a snapshot every `interval` on the monitor's own thread (a second call while
/// running changes the period: the thread reads it before each sleep).
pub(crate) fn start_memory_monitor(interval: std::time::Duration) {
    // However monitoring starts (`start()` from code, or the environment), the process
    // publishes for `orion-native status`.
    observe_memory();
    MONITOR.start(interval, memory_reading);
}

/// Stop background monitoring and withdraw this process's status file.
pub(crate) fn stop_memory_monitor() {
    MONITOR.stop();
    let _ = std::fs::remove_file(status_file());
}
