//! The embedding side of the addon, one concern per file:
//! - `client`: the `SharedEmbeddingClient` class (every method in one `#[napi] impl`)
//!   and `getSharedEmbeddingClient`.
//! - `args`: reading texts, the client's options and each call's options.
//! - `options`: the options objects (`EmbeddingClientOptions`, `EmbedOptions`), each
//!   declared once with its ranges and defaults.
//! - `types`: `EmbeddingStats`, with its `From` conversion from the core.

mod args;
mod client;
mod options;
mod types;

// Reading texts and a call's timeout and signal, shared with the reranker.
pub(super) use args::{read_text, read_texts, CallOptions};
// The batching and timeout options, read the same way for the reranker.
pub(super) use options::EmbeddingClientOptions;
