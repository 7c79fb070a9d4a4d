//! The LLM side of the addon, one concern per file:
//! - `loader`: the `ModelLoader` class (every method in one `#[napi] impl`) and
//!   `getModelLoader`; loads and generations run on tokio's blocking pool (`blocking`).
//! - `session`: `ChatSession`, the conversation `loader.createChatSession` returns.
//! - `stream`: `TokenStream`, the async iterator `generateStream` returns, and its steps.
//! - `sinks`: `ProgressSink` and `TokenSink`, which call back into JS (`onProgress`,
//!   `onToken`) from the loading and generating threads.
//! - `args`: reading model keys, prompts, registry descriptors and options.
//! - `options`: the options objects (`ModelLoaderOptions`, `GenerateOptions`), each
//!   declared once with its ranges and defaults.
//! - `types`: the objects returned to JS, each with its `From` conversion from the core.
//! - `quantization`: `applyQuantization`, `getOptimizationStrategy` and the
//!   `QUANTIZATION_LEVELS` export.

pub(super) mod args;
pub(super) mod loader;
mod options;
mod quantization;
mod session;
pub(super) mod sinks;
mod stream;
mod tools;
mod types;

type R<T> = std::result::Result<T, crate::error::OrionError>;
