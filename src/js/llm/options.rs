//! The LLM calls' options objects, each declared once: the struct is the TypeScript
//! interface (its doc comments, ranges and defaults included), the allowed keys and
//! their types, ranges included ([`crate::js::options::read`]).

use crate::engine::llm::GenerateParams;
use crate::js::options::{Given, Int, Real};
use crate::llm::loader::LoaderConfig;
use napi_derive::napi;
use serde::Deserialize;

/// Per-call options of `loadModel`.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadOptions {
    /// Rejects with code `ABORTED` when it fires, and stops this call's download (the
    /// partial file stays, and the next load resumes it). A llama.cpp load shared with
    /// other callers goes on for them.
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<Given>,
    /// Layers to put on the GPU device (`configure({ gpu })`'s choice), instead of as
    /// many as fit its free memory: an integer from 0 to 100000; more than the model's
    /// layer count puts the output there too. Applies when this call starts the load;
    /// ignored when models run on the CPU.
    #[napi(ts_type = "number")]
    pub gpu_layers: Option<Int<0, 100_000>>,
    /// The context length in tokens the model generates in, instead of its registry
    /// entry's (`contextLength`, 4096 for the catalog's models): an integer from 256 to
    /// 1048576, bounded by the length the model was trained with (`ModelInfo` says what
    /// is used). It stays the model's for its later loads (after an eviction) until
    /// `unloadModel`; asking a model loaded with another size is `INVALID_OPTION`. The
    /// loader's memory budget counts its KV cache. Remote models ignore it.
    #[napi(ts_type = "number")]
    pub context_size: Option<Int<256, 1_048_576>>,
}

/// Options of `ModelLoader.createChatSession`.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatSessionOptions {
    /// The system message every turn starts with (none by default).
    pub system: Option<String>,
    /// When a turn would not fit the model's context, drop the oldest exchanges after
    /// the system message (true, the default), or reject with `PROMPT_TOO_LONG` (false).
    pub context_shift: Option<bool>,
}

/// Options of `ModelLoader.countTokens`.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CountTokensOptions {
    /// Count a string prompt as is, without the model's chat template, as `generate`'s
    /// `raw` sends it (default false).
    pub raw: Option<bool>,
    /// The tools `generate` would show (`GenerateOptions.tools`): they are part of the
    /// prompt.
    #[napi(ts_type = "ToolDefinition[]")]
    pub tools: Option<Given>,
    /// `GenerateOptions.toolChoice` (`'none'` shows no tools).
    #[napi(ts_type = "'auto' | 'none' | 'required' | { name: string }")]
    pub tool_choice: Option<Given>,
}

/// Options of `ModelLoader.tokenize`.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenizeOptions {
    /// Read special-token text (`<|im_end|>`) as those tokens, as chat templates are
    /// read; else it is plain text (default false).
    pub special: Option<bool>,
}

/// Options of `getModelLoader`. They are process-wide: every thread shares the loader,
/// and each option left out keeps the loader's current setting.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelLoaderOptions {
    /// Most models loaded at once: an integer from 1 to 64 (default 2, or
    /// `ORION_MAX_CONCURRENT_MODELS`).
    #[napi(ts_type = "number")]
    pub max_concurrent_models: Option<Int<1, 64>>,
    /// Most bytes the loaded models may use: an integer from 0 to 2^53 - 1; 0 removes
    /// the budget (default: no budget).
    #[napi(ts_type = "number")]
    pub budget_bytes: Option<Int<0, 9_007_199_254_740_991>>,
    /// Unload a model unused for this many milliseconds: an integer from 0 to
    /// 4294967295; 0 turns it off (default: off).
    #[napi(ts_type = "number")]
    pub idle_timeout_ms: Option<Int<0, 4_294_967_295>>,
}

impl ModelLoaderOptions {
    /// `current` with the given options applied (0 turns the budget or the idle
    /// timeout off); `None` when no option was given.
    pub(super) fn applied_to(
        &self,
        current: impl FnOnce() -> LoaderConfig,
    ) -> Option<LoaderConfig> {
        if self.max_concurrent_models.is_none()
            && self.budget_bytes.is_none()
            && self.idle_timeout_ms.is_none()
        {
            return None;
        }
        let current = current();
        Some(LoaderConfig {
            max_concurrent_models: self
                .max_concurrent_models
                .map_or(current.max_concurrent_models, Int::usize),
            budget_bytes: self
                .budget_bytes
                .map_or(current.budget_bytes, |b| (b.get() > 0).then_some(b.get())),
            idle_timeout: self.idle_timeout_ms.map_or(current.idle_timeout, |ms| {
                (ms.get() > 0).then(|| ms.millis())
            }),
        })
    }
}

/// Options of `ModelLoader.generate` (and of `generateStream`, without `onToken`).
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateOptions {
    /// Most tokens to generate: an integer from 1 to 1048576 (default 256).
    #[napi(ts_type = "number")]
    pub max_tokens: Option<Int<1, 1_048_576>>,
    /// Sampling temperature, from 0 to 100; 0 is greedy (default 0.8).
    #[napi(ts_type = "number")]
    pub temperature: Option<Real<0, 10_000>>,
    /// Sample from the k most likely tokens: an integer from 0 to 1048576; 0 keeps
    /// them all (default 40).
    #[napi(ts_type = "number")]
    pub top_k: Option<Int<0, 1_048_576>>,
    /// Sample from the most likely tokens whose probabilities add up to this, from 0
    /// to 1 (default 0.95).
    #[napi(ts_type = "number")]
    pub top_p: Option<Real<0, 100>>,
    /// Drop tokens less likely than this fraction of the most likely one's probability,
    /// from 0 to 1 (default 0.05).
    #[napi(ts_type = "number")]
    pub min_p: Option<Real<0, 100>>,
    /// Penalty on repeating recent tokens, from 0.01 to 10; 1 is none (default 1.1).
    #[napi(ts_type = "number")]
    pub repeat_penalty: Option<Real<1, 1000>>,
    /// The sampler's seed: an integer from 0 to 4294967295 (default 12648430).
    #[napi(ts_type = "number")]
    pub seed: Option<Int<0, 4_294_967_295>>,
    /// Generation stops before any of these strings; they are not part of the text.
    #[napi(ts_type = "string | string[]")]
    pub stop: Option<Vec<String>>,
    /// Rejects with code `ABORTED` within a token of firing (see `stopOnAbort`).
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<Given>,
    /// When `signal` fires once the answer has begun (its first token), resolve with what
    /// it holds and `finishReason: 'abort'` instead of rejecting `ABORTED` (default
    /// false). The text is what was streamed; with `jsonSchema` it is unfinished JSON
    /// (no `json`); with tools, `toolCalls` holds the calls complete before the abort. A
    /// chat session keeps the partial answer in its history. Before the first token, an
    /// abort still rejects `ABORTED`.
    pub stop_on_abort: Option<bool>,
    /// Receives the text as it is generated, on the calling thread.
    #[napi(ts_type = "(text: string) => void")]
    pub on_token: Option<Given>,
    /// Send a string prompt as is, without the model's chat template (default false).
    pub raw: Option<bool>,
    /// Start from a context kept from an earlier generation on this model when the two
    /// prompts share a beginning, evaluating only the rest (a chat's next turn), and
    /// keep this one's context for the next (default true; in-process models only).
    pub prefix_cache: Option<bool>,
    /// A JSON schema the answer must follow: sampling is constrained so that the text
    /// parses and validates, and the result's `json` holds the parsed value. A keyword
    /// that is not enforced (the README lists those that are) rejects with
    /// `SCHEMA_UNSUPPORTED`; an answer cut by `maxTokens` or the context, with
    /// `OUTPUT_INCOMPLETE`. Remote models send it as `response_format`.
    #[napi(ts_type = "object")]
    pub json_schema: Option<Given>,
    /// What enforces `jsonSchema`: `'llguidance'` (the default; most of JSON Schema, see
    /// the README) or `'llama.cpp'` (its JSON-schema-to-grammar conversion, the one
    /// llama.cpp's server uses: fewer keywords). Either refuses what it does not enforce
    /// with `SCHEMA_UNSUPPORTED`. Remote servers enforce the schema with their own engine:
    /// it is checked against llama.cpp's keywords before it is sent, unless
    /// `'llguidance'` is named (a server that runs llguidance).
    #[napi(ts_type = "'llama.cpp' | 'llguidance'")]
    pub schema_engine: Option<String>,
    /// A GBNF grammar (llama.cpp's format, from its rule `root`) the answer must follow.
    /// Remote models send it as `grammar` (llama.cpp's server reads it).
    pub grammar: Option<String>,
    /// Tools the model may call: `[{ name, description?, parameters? }]` (`parameters`
    /// a JSON schema of the arguments object; its keywords checked as `jsonSchema`'s).
    /// The prompt shows them through the model's own chat template; calls come back in
    /// the result's `toolCalls` (`finishReason: 'toolCalls'`), their arguments following
    /// the schema. Not with `jsonSchema`, `grammar` or `raw`.
    #[napi(ts_type = "ToolDefinition[]")]
    pub tools: Option<Given>,
    /// Whether the answer calls a tool: `'auto'` (the model decides, the default),
    /// `'none'` (text only; the tools are not shown), `'required'` (at least one call)
    /// or `{ name }` (a call of that tool).
    #[napi(ts_type = "'auto' | 'none' | 'required' | { name: string }")]
    pub tool_choice: Option<Given>,
    /// Whether one answer may call several tools (default false: one call at most, as
    /// llama.cpp's server does; small models given the choice repeat a call).
    pub parallel_tool_calls: Option<bool>,
}

impl GenerateOptions {
    /// The generation's settings: the given options, else the core's
    /// defaults (`GenerateParams::default()`, which the doc comments above state).
    pub(super) fn params(&self) -> GenerateParams {
        let d = GenerateParams::default();
        GenerateParams {
            max_tokens: self.max_tokens.map_or(d.max_tokens, Int::u32),
            temperature: self.temperature.map_or(d.temperature, Real::f32),
            top_k: self.top_k.map_or(d.top_k, Int::i32),
            top_p: self.top_p.map_or(d.top_p, Real::f32),
            min_p: self.min_p.map_or(d.min_p, Real::f32),
            repeat_penalty: self.repeat_penalty.map_or(d.repeat_penalty, Real::f32),
            seed: self.seed.map_or(d.seed, Int::u32),
            stop: self
                .stop
                .iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect(),
            raw: self.raw.unwrap_or(d.raw),
            prefix_cache: self.prefix_cache.unwrap_or(d.prefix_cache),
            stop_on_abort: self.stop_on_abort.unwrap_or(d.stop_on_abort),
            ..d
        }
    }
}
