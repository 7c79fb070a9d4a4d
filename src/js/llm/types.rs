//! What the LLM calls return to JS: one `#[napi(object)]` per shape, each with its one
//! conversion from the core type beside it.

use crate::engine::llm::{Generation, Placed, Timings};
use crate::llm::loader::{LoaderStats, ModelStats};
use crate::llm::registry::ModelDescriptor;
use crate::llm::strategy::{Gpu, ModuleCheck, Strategy};
use crate::llm::LoadInfo;
use napi_derive::napi;

/// A loaded model, as `loadModel` reports it.
#[napi(object)]
pub struct ModelInfo {
    pub key: String,
    pub path: String,
    /// GGUF file type, e.g. `Q4_1`.
    pub quantization: Option<String>,
    /// Size of the model file (mapped, not copied).
    pub bytes: i64,
    /// The context length it generates in: its registry entry's or the load's
    /// `contextSize`, bounded by `trainedContextLength`.
    pub context_length: u32,
    /// Times this key was loaded in this process.
    pub loads: i64,
    /// Where its layers went, when some are on a GPU device; absent on the CPU.
    pub gpu: Option<ModelPlacement>,
    /// The GGUF's `general.architecture` (`llama`, `qwen2`, `gemma3`, ...); absent for
    /// remote models.
    pub architecture: Option<String>,
    /// Its parameter count; absent for remote models.
    pub parameter_count: Option<f64>,
    /// The context length it was trained with; absent for remote models.
    pub trained_context_length: Option<u32>,
    /// Its own chat template (absent when it has none and `ChatML` is used, and for
    /// remote models).
    pub chat_template: Option<ChatTemplateInfo>,
    /// Whether its chat template renders tools.
    pub supports_tools: bool,
}

/// A model's chat template.
#[napi(object)]
pub struct ChatTemplateInfo {
    /// The family its markers say: `'chatml'`, `'hermes'`, `'llama3'`, `'gemma'`,
    /// `'phi3'`, `'mistral'`, `'mistral-tools'`, `'deepseek'`; absent for another.
    pub family: Option<String>,
    /// The SHA-256 of its text, in hex.
    pub sha256: String,
    /// The syntax `tools` are called in with it: `'hermes'` (`<tool_call>`), `'llama3'`,
    /// `'mistral'` (`[TOOL_CALLS]`), or `'generic'` (a template without tools: a JSON
    /// answer); absent when it cannot render tool calls.
    #[napi(ts_type = "'hermes' | 'llama3' | 'mistral' | 'generic'")]
    pub tool_format: Option<String>,
}

/// A model's layers on a GPU device.
#[napi(object)]
pub struct ModelPlacement {
    /// The device (`Vulkan0 (NVIDIA GeForce RTX 4070)`) and its backend.
    pub device: String,
    pub backend: String,
    /// Layers on the device, of `layers` (`layers + 1`: the output too).
    pub gpu_layers: u32,
    pub layers: u32,
    /// Device memory its weights and the KV cache of one context of its length take,
    /// estimated from the file, held while it is loaded (further contexts that live at
    /// once, kept for other conversations, add theirs: `takeSnapshot().devices`).
    pub device_bytes: i64,
    /// Why that many: as many as fit, or `gpuLayers`.
    pub reason: String,
}

impl From<Placed> for ModelPlacement {
    fn from(p: Placed) -> Self {
        Self {
            device: p.device,
            backend: p.backend,
            gpu_layers: p.gpu_layers,
            layers: p.layers,
            device_bytes: p.device_bytes as i64,
            reason: p.reason,
        }
    }
}

impl From<LoadInfo> for ModelInfo {
    fn from(i: LoadInfo) -> Self {
        Self {
            key: i.key,
            path: i.path,
            quantization: i.quantization,
            bytes: i.bytes as i64,
            context_length: i.context_length,
            loads: i.loads as i64,
            gpu: i.placed.map(ModelPlacement::from),
            // Remote models have no facts: a zero count and length mean unknown.
            architecture: i.facts.architecture,
            parameter_count: (i.facts.parameters > 0).then_some(i.facts.parameters as f64),
            trained_context_length: (i.facts.trained_context > 0)
                .then_some(i.facts.trained_context),
            chat_template: i.facts.chat_template.map(|t| ChatTemplateInfo {
                family: t.family.map(str::to_string),
                sha256: t.sha256,
                tool_format: t.tool_format.map(str::to_string),
            }),
            supports_tools: i.facts.supports_tools,
        }
    }
}

/// A model's file on disk, as `downloadModel` reports it.
#[napi(object)]
pub struct DownloadInfo {
    pub key: String,
    pub path: String,
    /// GGUF file type, e.g. `Q4_K_M`, when the file name or the level says it.
    pub quantization: Option<String>,
    /// Size of the file.
    pub bytes: i64,
    /// Whether it was fetched by this call (else it was on disk already).
    pub downloaded: bool,
}

impl From<crate::llm::DownloadInfo> for DownloadInfo {
    fn from(i: crate::llm::DownloadInfo) -> Self {
        Self {
            key: i.key,
            path: i.path,
            quantization: i.quantization,
            bytes: i.bytes as i64,
            downloaded: i.downloaded,
        }
    }
}

#[napi(object)]
pub struct LoadedModelStats {
    pub key: String,
    pub path: String,
    pub quantization: Option<String>,
    pub bytes: i64,
    /// Milliseconds since the epoch.
    pub last_used: f64,
    /// Generations using it now.
    pub in_use: u32,
    pub loads: i64,
    /// Where its layers went, when some are on a GPU device; absent on the CPU.
    pub gpu: Option<ModelPlacement>,
}

impl From<ModelStats> for LoadedModelStats {
    fn from(m: ModelStats) -> Self {
        Self {
            key: m.key,
            path: m.path,
            quantization: m.quantization,
            bytes: m.bytes as i64,
            last_used: m.last_used_ms,
            in_use: m.in_use as u32,
            loads: m.loads as i64,
            gpu: m.placed.map(ModelPlacement::from),
        }
    }
}

#[napi(object)]
pub struct ModelLoaderStats {
    pub loaded_models: u32,
    pub max_concurrent_models: u32,
    /// Loads in progress.
    pub loading: u32,
    pub total_bytes: i64,
    pub models: Vec<LoadedModelStats>,
    /// Models served by remote servers (registered with `remote`), once loaded.
    pub remote_models: Vec<RemoteModelStats>,
}

impl From<(LoaderStats, Vec<crate::llm::RemoteModelStats>)> for ModelLoaderStats {
    fn from((s, remote): (LoaderStats, Vec<crate::llm::RemoteModelStats>)) -> Self {
        Self {
            loaded_models: s.loaded_models as u32,
            max_concurrent_models: s.max_concurrent_models as u32,
            loading: s.loading as u32,
            total_bytes: s.total_bytes as i64,
            models: s.models.into_iter().map(LoadedModelStats::from).collect(),
            remote_models: remote.into_iter().map(RemoteModelStats::from).collect(),
        }
    }
}

/// A loaded remote model.
#[napi(object)]
pub struct RemoteModelStats {
    pub key: String,
    /// The model's name on the servers.
    pub model: String,
    pub endpoints: Vec<crate::js::remote::RemoteEndpointStats>,
    pub loads: i64,
    /// Generations using it now.
    pub in_use: u32,
    /// Milliseconds since it was last used.
    pub idle_ms: f64,
}

impl From<crate::llm::RemoteModelStats> for RemoteModelStats {
    fn from(m: crate::llm::RemoteModelStats) -> Self {
        Self {
            key: m.key,
            model: m.model,
            endpoints: m.endpoints.into_iter().map(Into::into).collect(),
            loads: m.loads as i64,
            in_use: m.in_use as u32,
            idle_ms: m.idle_ms,
        }
    }
}

#[napi(object)]
pub struct GenerateTimings {
    pub prompt_tokens: u32,
    pub prompt_ms: f64,
    pub prompt_tokens_per_second: f64,
    pub generated_tokens: u32,
    pub generation_ms: f64,
    pub tokens_per_second: f64,
    /// llama.cpp's own measurement of the same run.
    pub llama_prompt_tokens_per_second: f64,
    pub llama_tokens_per_second: f64,
    /// Prompt tokens not evaluated again: found in a context kept from an earlier
    /// generation sharing the prompt's beginning (or, remote, the server's cache).
    pub reused_prompt_tokens: u32,
    /// The threads llama.cpp computed the answer's last token with, for a model on the
    /// CPU: the model's threads, or fewer while other processes keep cores busy.
    pub threads: Option<u32>,
}

impl From<Timings> for GenerateTimings {
    fn from(t: Timings) -> Self {
        Self {
            prompt_tokens: t.prompt_tokens,
            prompt_ms: t.prompt_ms,
            prompt_tokens_per_second: t.prompt_tokens_per_second,
            generated_tokens: t.generated_tokens,
            generation_ms: t.generation_ms,
            tokens_per_second: t.tokens_per_second,
            llama_prompt_tokens_per_second: t.llama_prompt_tokens_per_second,
            llama_tokens_per_second: t.llama_tokens_per_second,
            reused_prompt_tokens: t.reused_prompt_tokens,
            threads: t.threads,
        }
    }
}

#[napi(object)]
pub struct GenerateResult {
    pub text: String,
    /// Tokens generated.
    pub tokens: u32,
    /// Why the answer ended: `'eos'` (the model ended its turn), `'stop'` (a stop
    /// string), `'maxTokens'` (the option's limit), `'contextFull'` (no room left in
    /// the model's context), `'toolCalls'` (it calls tools: `toolCalls`) or `'abort'`
    /// (the signal fired once the answer had begun, with `stopOnAbort`). A remote
    /// server does not tell a stop string from the end of its turn: both are `'eos'`
    /// there.
    #[napi(ts_type = "'eos' | 'stop' | 'maxTokens' | 'contextFull' | 'toolCalls' | 'abort'")]
    pub finish_reason: String,
    pub timings: GenerateTimings,
    /// The answer parsed, when it followed a `jsonSchema` (it validates against it).
    #[napi(ts_type = "unknown")]
    pub json: Option<serde_json::Value>,
    /// For a chat session's turn: how many messages were dropped from the start of its
    /// history (after the system message) for the turn to fit the model's context.
    pub dropped_messages: Option<u32>,
    /// The tools the answer calls (`finishReason: 'toolCalls'`), with `options.tools`:
    /// each call's arguments follow its tool's `parameters`. Send each result back as
    /// a `{ role: 'tool', toolCallId, content }` message after this answer's
    /// `{ role: 'assistant', content: text, toolCalls }`.
    pub tool_calls: Option<Vec<ToolCall>>,
}

/// A call of a tool.
#[napi(object)]
pub struct ToolCall {
    /// Its id, which the tool's result message names (`toolCallId`).
    pub id: String,
    pub name: String,
    /// The arguments: an object valid against the tool's `parameters`.
    #[napi(ts_type = "Record<string, unknown>")]
    pub arguments: serde_json::Value,
}

impl From<crate::chat::ToolCall> for ToolCall {
    fn from(c: crate::chat::ToolCall) -> Self {
        Self {
            id: c.id,
            name: c.name,
            arguments: c.arguments,
        }
    }
}

/// A chat message, as a session's `history` and `save()` give it.
#[napi(object)]
pub struct ChatMessageOut {
    #[napi(ts_type = "'system' | 'user' | 'assistant' | 'tool'")]
    pub role: String,
    pub content: String,
    /// An assistant's calls.
    pub tool_calls: Option<Vec<ToolCall>>,
    /// A tool result's call.
    pub tool_call_id: Option<String>,
    /// A tool result's tool.
    pub name: Option<String>,
}

impl From<crate::chat::Message> for ChatMessageOut {
    fn from(m: crate::chat::Message) -> Self {
        Self {
            role: m.role,
            content: m.content,
            tool_calls: (!m.tool_calls.is_empty())
                .then(|| m.tool_calls.into_iter().map(ToolCall::from).collect()),
            tool_call_id: m.tool_call_id,
            name: m.name,
        }
    }
}

/// A chat session's conversation as plain data (`save()`, `restore()`).
#[napi(object)]
pub struct SavedChat {
    pub system: Option<String>,
    pub messages: Vec<ChatMessageOut>,
}

impl From<Generation> for GenerateResult {
    fn from(g: Generation) -> Self {
        Self {
            text: g.text,
            tokens: g.tokens,
            finish_reason: g.finish_reason.as_str().to_string(),
            timings: g.timings.into(),
            json: g.json,
            dropped_messages: g.dropped_messages,
            tool_calls: (!g.tool_calls.is_empty())
                .then(|| g.tool_calls.into_iter().map(ToolCall::from).collect()),
        }
    }
}

#[napi(object)]
pub struct ModelListing {
    pub key: String,
    pub name: Option<String>,
    pub kind: String,
    /// Quantization levels it has files for.
    pub quantizations: Vec<String>,
    pub context_length: Option<u32>,
    pub loaded: bool,
    /// Whether the file of at least one level is on disk (else loading downloads it).
    pub on_disk: bool,
    /// Each level's file: where it is (or would be downloaded to), whether it is there,
    /// its size, and where it comes from online.
    pub files: Vec<ModelFileListing>,
}

/// One quantization level's file of a registry entry.
#[napi(object)]
pub struct ModelFileListing {
    pub level: String,
    pub path: String,
    pub on_disk: bool,
    /// Bytes: the file's own size when on disk, else what the registry expects.
    pub bytes: Option<f64>,
    pub hub_repo: Option<String>,
    pub hub_file: Option<String>,
}

impl ModelListing {
    /// A registry entry, and whether the loader holds it now: the registry itself does
    /// not know, so this one conversion takes both.
    pub(super) fn new(key: String, d: ModelDescriptor, loaded: bool) -> Self {
        let files: Vec<ModelFileListing> = d
            .files
            .iter()
            .map(|(level, f)| {
                let rel = f
                    .path
                    .clone()
                    .or_else(|| f.hub_file.clone())
                    .unwrap_or_default();
                let path = crate::paths::locate(std::path::Path::new(&rel));
                let on_disk = std::fs::metadata(&path)
                    .ok()
                    .filter(std::fs::Metadata::is_file);
                ModelFileListing {
                    level: level.clone(),
                    path: path.to_string_lossy().into_owned(),
                    on_disk: on_disk.is_some(),
                    bytes: on_disk.map(|m| m.len()).or(f.size).map(|b| b as f64),
                    hub_repo: f.hub_repo.clone(),
                    hub_file: f.hub_file.clone(),
                }
            })
            .collect();
        Self {
            loaded,
            key,
            name: d.name,
            kind: d.kind,
            quantizations: d.files.keys().cloned().collect(),
            context_length: d.context_length,
            on_disk: files.iter().any(|f| f.on_disk),
            files,
        }
    }
}

#[napi(object)]
pub struct GpuInfo {
    /// ggml's name and the device's own: `Vulkan0 (NVIDIA GeForce RTX 4070)`.
    pub name: String,
    /// The backend: `Vulkan`, `CUDA`, `MTL`.
    pub backend: String,
    /// `gpu` (its own memory), `igpu` (shares the host's) or `cpu` (a CPU-type device
    /// such as lavapipe: used only when its backend is asked for by name).
    #[napi(ts_type = "'gpu' | 'igpu' | 'cpu'")]
    pub kind: String,
    pub total_bytes: i64,
    pub free_bytes: i64,
    /// The driver and its version, where the backend's API says (Vulkan).
    pub driver: Option<String>,
    /// Why the device cannot be used: its self-test (a small graph compared with the
    /// CPU's result) failed or could not run.
    pub failed: Option<String>,
    /// In `getOptimizationStrategy().gpus`: why models do not load on this device
    /// (absent for the one they load on).
    pub not_chosen: Option<String>,
}

impl From<Gpu> for GpuInfo {
    fn from(g: Gpu) -> Self {
        Self {
            name: g.name,
            backend: g.backend,
            kind: g.kind.label().into(),
            total_bytes: g.total_bytes as i64,
            free_bytes: g.free_bytes as i64,
            driver: g.driver,
            failed: g.failed,
            not_chosen: None,
        }
    }
}

/// A GPU backend module found at start-up: an installed GPU package's, or
/// `GGML_BACKEND_PATH`'s.
#[napi(object)]
pub struct GpuModuleInfo {
    pub path: String,
    /// ggml's name of the backend, once it registered (in its check or here).
    pub backend: Option<String>,
    /// Whether this process loaded it (its check in a child process passed).
    pub loaded: bool,
    /// Why it is not loaded.
    pub reason: Option<String>,
}

impl From<ModuleCheck> for GpuModuleInfo {
    fn from(m: ModuleCheck) -> Self {
        Self {
            path: m.path.display().to_string(),
            backend: m.backend,
            loaded: m.loaded,
            reason: m.reason,
        }
    }
}

#[napi(object)]
pub struct OptimizationStrategy {
    /// The level `loadModel` picks by default (`q3`, `q4`, `q8`, ...).
    pub quantization: String,
    pub max_concurrent_models: u32,
    pub gpu_layers: u32,
    pub context_size: u32,
    pub threads: u32,
    pub total_memory: i64,
    pub available_memory: i64,
    pub cpu_features: Vec<String>,
    /// The instruction sets of the llama.cpp CPU backend in use (on Linux x64, the
    /// best of its builds that this CPU runs).
    pub llama_cpu_features: Vec<String>,
    pub gpus: Vec<GpuInfo>,
    /// Each GPU backend module found (installed GPU packages, `GGML_BACKEND_PATH`) and
    /// whether it loaded.
    pub gpu_modules: Vec<GpuModuleInfo>,
    /// The device models load on (every layer there); absent for the CPU.
    pub device: Option<GpuInfo>,
    /// Why the GPU backend named by `configure({ gpu })` / `ORION_GPU` cannot be used
    /// (model loads then fail with `GPU_UNAVAILABLE`); absent otherwise.
    pub gpu_unavailable: Option<String>,
    /// Why each choice was made.
    pub reasons: Vec<String>,
}

impl From<Strategy> for OptimizationStrategy {
    fn from(s: Strategy) -> Self {
        Self {
            quantization: s.quantization.to_string(),
            max_concurrent_models: s.max_concurrent_models as u32,
            gpu_layers: s.gpu_layers,
            context_size: s.context_size,
            threads: s.threads as u32,
            total_memory: s.total_memory as i64,
            available_memory: s.available_memory as i64,
            cpu_features: s.cpu_features.into_iter().map(String::from).collect(),
            llama_cpu_features: s.llama_cpu_features,
            gpus: s
                .gpus
                .into_iter()
                .map(|g| {
                    let why = s
                        .not_chosen
                        .iter()
                        .find(|(i, _)| *i == g.index)
                        .map(|(_, w)| w.clone());
                    GpuInfo {
                        not_chosen: why,
                        ..GpuInfo::from(g)
                    }
                })
                .collect(),
            gpu_modules: s.gpu_modules.into_iter().map(GpuModuleInfo::from).collect(),
            device: s.device.map(GpuInfo::from),
            gpu_unavailable: s.unavailable,
            reasons: s.reasons,
        }
    }
}
