//! What an LLM engine provides and what generation takes and gives, whatever runs it:
//! llama.cpp in this process (`llama/`) or an OpenAI-compatible server (`remote/`).
//! The loader (`llm::loader`) is generic over [`Engine`].

use crate::chat::{Message, ToolCall, Tools};
use crate::error::Result;
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// What the loader needs to know about a model file before loading it.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ModelMeta {
    pub(crate) file_bytes: u64,
    /// Bytes of KV cache one context of the configured size needs.
    pub(crate) kv_bytes_per_context: u64,
    /// The quantization the file's tensors hold, when the header tells: it wins over
    /// the file name's and the registry level's.
    pub(crate) quantization: Option<String>,
    /// What each layer would take on a GPU device, from the same header.
    pub(crate) layout: Layout,
}

/// A model's device bytes by layer, for the configured context: what a GPU load fits.
#[derive(Clone, Debug, Default, PartialEq)]
#[allow(clippy::struct_field_names)] // each is a size in bytes, of a different part
pub(crate) struct Layout {
    /// Each layer's weights.
    pub(crate) layer_bytes: Vec<u64>,
    /// Each layer's share of one context's f16 KV cache.
    pub(crate) kv_bytes: Vec<u64>,
    /// Each layer's share of a context's KV cache per token of the context.
    pub(crate) kv_per_token: Vec<u64>,
    /// The output (with a tied model's copy of its token embeddings).
    pub(crate) output_bytes: u64,
    /// What a load keeps free on its device besides these: compute buffers, the driver's.
    pub(crate) headroom: u64,
}

pub(crate) type Progress = Box<dyn FnMut(f32) + Send>;

/// What a load asks of the engine besides the file.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LoadRequest {
    /// The GPU device the load goes to ([`Engine::device_need`]'s), or the CPU.
    pub(crate) device: Option<usize>,
    /// Layers to offload to that device, instead of as many as fit.
    pub(crate) gpu_layers: Option<u32>,
    /// The model's device bytes by layer ([`ModelMeta::layout`]).
    pub(crate) layout: Layout,
}

/// Where a loaded model's layers went.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Placed {
    /// ggml's index of the device.
    pub(crate) device_index: usize,
    /// The device's name (`Vulkan0 (NVIDIA GeForce RTX 4070)`) and backend.
    pub(crate) device: String,
    pub(crate) backend: String,
    /// Layers on the device (`layers + 1`: the output too), of `layers`.
    pub(crate) gpu_layers: u32,
    pub(crate) layers: u32,
    /// Device memory its weights and the KV cache of one context of the model's length
    /// take (estimated from the file): what the fit planned, held while the model is
    /// loaded. Further contexts living at once hold their own (`llama::fit::ContextKv`).
    pub(crate) device_bytes: u64,
    /// Why that many.
    pub(crate) reason: String,
}

/// Load progress in 0..=1.
/// Reads and loads model files for the loader.
pub(crate) trait Engine: Send + Sync + 'static {
    type Model: Send + Sync + 'static;
    /// Read the file's header: fails with `MODEL_NOT_FOUND` or `MODEL_LOAD_FAILED`.
    fn probe(&self, path: &Path, context_length: u32) -> Result<ModelMeta>;
    /// Load the model, reporting progress in 0..=1.
    fn load(&self, path: &Path, request: LoadRequest, progress: Progress) -> Result<Self::Model>;
    /// Where `model`'s layers went, when some are on a GPU device.
    fn placed(_model: &Self::Model) -> Option<Placed> {
        None
    }
    /// What `model` is, from its metadata.
    fn facts(_model: &Self::Model) -> ModelFacts {
        ModelFacts::default()
    }
    /// The GPU device a load of the model `meta` describes goes to, and the bytes it
    /// would take there (every layer, or `gpu_layers`): the loader makes that room first,
    /// unloading idle models on the device, before the load fits what is left. `None`:
    /// the CPU. An error (the device asked for is unavailable) fails the load.
    fn device_need(
        &self,
        _meta: &ModelMeta,
        _gpu_layers: Option<u32>,
    ) -> Result<Option<DeviceNeed>> {
        Ok(None)
    }
    /// What is free for models on GPU device `index` now.
    fn device_free(&self, _index: usize) -> u64 {
        0
    }
    /// Free what `model` keeps only to go faster later (the contexts kept for a chat's
    /// next turn): the loader does so on a device before unloading models for room, and
    /// the monitor on a device short of memory. Returns how many things were freed. May
    /// block while contexts still being settled finish their step: never call it on a
    /// JS thread.
    fn free_kept(_model: &Self::Model) -> usize {
        0
    }
    /// Tell what `model` is still preparing to keep (a context settling after an answer)
    /// to stop, without waiting: called for every model before [`Self::free_kept`] is
    /// for each, so that their steps end together rather than one after another.
    fn stop_kept(_model: &Self::Model) {}
}

/// What a loaded model is, from its own metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ModelFacts {
    /// `general.architecture` (`llama`, `qwen2`, ...).
    pub(crate) architecture: Option<String>,
    pub(crate) parameters: u64,
    /// The context length it was trained with.
    pub(crate) trained_context: u32,
    /// Its own chat template, when it has one (else `ChatML` is used).
    pub(crate) chat_template: Option<ChatTemplate>,
    /// Whether its template renders tools (probed: a tool given to it shows).
    pub(crate) supports_tools: bool,
}

/// A model's chat template, named.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ChatTemplate {
    /// The family its markers say (`chatml`, `llama3`, `hermes`, ...), when known.
    pub(crate) family: Option<&'static str>,
    /// The SHA-256 of its text, in hex: two models with the same template have the same.
    pub(crate) sha256: String,
    /// The syntax its tool calls come in (`hermes`, `llama3`, `mistral`, or `generic`
    /// for a template without tools).
    pub(crate) tool_format: Option<&'static str>,
}

/// Room a load wants on a GPU device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DeviceNeed {
    pub(crate) index: usize,
    pub(crate) bytes: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Prompt {
    /// Sent as one user message through the chat template (unless `raw`).
    Text(String),
    /// A conversation (with tool calls and results).
    Messages(Vec<Message>),
}

/// What an answer must be, beyond text: sampling is constrained to it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Output {
    /// JSON valid against this schema (its keywords checked by `llm::schema`), enforced
    /// by this engine (`None`: the default one, not named by the caller).
    JsonSchema(std::sync::Arc<serde_json::Value>, Option<SchemaEngine>),
    /// Text of this GBNF grammar (llama.cpp's grammar format), from its rule `root`.
    Grammar(std::sync::Arc<str>),
}

/// What turns a JSON schema into the constraint sampling follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum SchemaEngine {
    /// llama.cpp's `json_schema_to_grammar` and grammar sampler.
    LlamaCpp,
    /// Microsoft's llguidance (a Rust crate): more of JSON Schema (`allOf`, numbers'
    /// bounds, `multipleOf`, `patternProperties`, more formats, any regex `pattern`),
    /// and faster here (`bench/structured.js`): the default.
    #[default]
    Llguidance,
}

// Settings as the JS options give them: each bool is one option.
#[allow(clippy::struct_excessive_bools)]
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GenerateParams {
    pub(crate) max_tokens: u32,
    /// 0 means greedy.
    pub(crate) temperature: f32,
    pub(crate) top_k: i32,
    pub(crate) top_p: f32,
    pub(crate) min_p: f32,
    pub(crate) repeat_penalty: f32,
    pub(crate) seed: u32,
    pub(crate) stop: Vec<String>,
    /// Use a text prompt as is, without the chat template.
    pub(crate) raw: bool,
    pub(crate) threads: i32,
    /// Always use llama.cpp's sampler chain (tests compare the fast greedy path to it).
    pub(crate) reference_sampler: bool,
    /// Start from a kept context sharing a prefix with the prompt, and keep this one
    /// (see `prefix`).
    pub(crate) prefix_cache: bool,
    /// What the answer must be, when constrained.
    pub(crate) output: Option<Output>,
    /// Tools the answer may call, and the choice among them.
    pub(crate) tools: Option<std::sync::Arc<Tools>>,
    /// An abort once the answer has begun ends it (`FinishReason::Abort`) instead of
    /// failing it.
    pub(crate) stop_on_abort: bool,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.1,
            seed: 0x00C0_FFEE,
            stop: Vec::new(),
            raw: false,
            threads: crate::sysmem::physical_cores() as i32,
            reference_sampler: false,
            prefix_cache: true,
            output: None,
            tools: None,
            stop_on_abort: false,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Timings {
    pub(crate) prompt_tokens: u32,
    pub(crate) prompt_ms: f64,
    pub(crate) prompt_tokens_per_second: f64,
    pub(crate) generated_tokens: u32,
    pub(crate) generation_ms: f64,
    pub(crate) tokens_per_second: f64,
    /// llama.cpp's own measurement of the same run.
    pub(crate) llama_prompt_tokens_per_second: f64,
    pub(crate) llama_tokens_per_second: f64,
    /// Prompt tokens found in a kept context and not evaluated again.
    pub(crate) reused_prompt_tokens: u32,
    /// The threads the last step computed with, for a model on the CPU.
    pub(crate) threads: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Generation {
    pub(crate) text: String,
    pub(crate) tokens: u32,
    pub(crate) finish_reason: FinishReason,
    pub(crate) timings: Timings,
    /// The answer's JSON, parsed, when `output` was a JSON schema.
    pub(crate) json: Option<serde_json::Value>,
    /// For a chat session's turn: messages dropped from its history's start to fit.
    pub(crate) dropped_messages: Option<u32>,
    /// The tools the answer calls (then `text` is what it says besides, often nothing).
    pub(crate) tool_calls: Vec<ToolCall>,
}

/// Why an answer ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum FinishReason {
    /// The model ended its turn (an end-of-generation token).
    #[default]
    Eos,
    /// The text reached one of the caller's stop strings.
    Stop,
    /// The caller's `maxTokens` was reached.
    MaxTokens,
    /// The context had no room for another token (a long prompt, a long chat).
    ContextFull,
    /// The answer calls tools (`tool_calls`).
    ToolCalls,
    /// The caller aborted it once it had begun, asking for what it held (`stopOnAbort`).
    Abort,
}

impl FinishReason {
    /// The name JS sees (`finishReason`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Eos => "eos",
            Self::Stop => "stop",
            Self::MaxTokens => "maxTokens",
            Self::ContextFull => "contextFull",
            Self::ToolCalls => "toolCalls",
            Self::Abort => "abort",
        }
    }
}

/// A question about a model's tokens (`countTokens`, `tokenize`, `detokenize`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum TokenRequest {
    /// The tokens generation would evaluate for a prompt (`raw`: without the template).
    Count {
        prompt: Prompt,
        raw: bool,
        tools: Option<std::sync::Arc<Tools>>,
    },
    /// A text's token ids (`special`: special-token text is those tokens).
    Tokenize { text: String, special: bool },
    /// Token ids back to text.
    Detokenize { ids: Vec<u32> },
}

/// Its answer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum TokenAnswer {
    Count(u32),
    Tokens(Vec<u32>),
    Text(String),
}

/// A model ready to answer, in this process or on remote servers: the one seam the LLM
/// service generates through, whatever serves the model. Held for one generation.
pub(crate) trait Chat {
    /// Answer a question about the model's tokens. Blocking.
    fn tokens(self: Box<Self>, request: &TokenRequest) -> Result<TokenAnswer>;

    /// Generate: `on_text` receives the text as it is produced; `cancel` stops it
    /// (`ABORTED`). Blocking. Consumes the hold: what follows the answer (keeping a
    /// context for the next turn) happens after the caller has it.
    fn generate(
        self: Box<Self>,
        prompt: &Prompt,
        params: &GenerateParams,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation>;
}
