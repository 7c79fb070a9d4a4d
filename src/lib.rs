//! orion-native: one process-wide native runtime for local AI models, shared by every
//! `worker_thread` of a Node.js process.
//!
//! The services (`embedding`, ...) are plain Rust with no napi types; `js` holds the thin
//! `#[napi]` layer and `runtime` the process-wide singletons. Nothing here is public
//! Rust API: the addon's interface is what `js` exports to JavaScript, and the rlib
//! exists for the crate's own tests.
//!
//! # Off the JS thread
//!
//! A JS thread must never wait for a model. Four mechanisms take work off it; use the
//! one that fits:
//! - **The embedding service's own inference thread** (`orion-embed-<model>`, one per
//!   model directory): the only thread that loads and runs that ONNX model. Callers
//!   queue texts without blocking (`EmbeddingService::submit`) and await the answers.
//!   New embedding work goes through the queue, never onto another thread.
//! - **tokio's blocking pool**, through `blocking()` in `src/js/llm/loader.rs` (and
//!   `spawn_blocking` for streamed generations): for calls that block for long inside
//!   llama.cpp, i.e. model loads, unloads and generations. Such a call registers with
//!   `lifecycle::begin_work` so that the process's exit waits for it.
//! - **napi's async runtime** (`js::promise`, on tokio's worker threads): for awaiting,
//!   a blocking task, an embedding reply, a timeout or an abort, and never for blocking
//!   itself. An answer already known on the JS thread (a cache hit) is not sent there at
//!   all: `js::resolved` settles its Promise at once.
//! - **Threadsafe functions** for calls back into JS from any other thread (load
//!   progress, `onToken`, memory monitor subscribers): always called `NonBlocking` and
//!   weak, so that a busy or departing JS thread never stalls a native one and a
//!   subscription never keeps the process alive.
//!
//! Two background threads of their own run periodic sweeps: the LLM service's
//! keep-alive sweeper (idle model timeouts) and the memory monitor's sampler.

// Under `cargo test` the `js` layer is not compiled, so whatever only it uses looks
// unused there; dead code is reported by the addon's own (non-test) build, which the
// lint command checks as well.
#![cfg_attr(test, allow(dead_code))]

pub(crate) mod chat;
pub(crate) mod config;
pub(crate) mod embedding;
pub(crate) mod engine;
pub(crate) mod error;
pub(crate) mod lifecycle;
pub(crate) mod llama;
pub(crate) mod llm;
pub(crate) mod monitor;
pub(crate) mod net;
pub(crate) mod onnx;
pub(crate) mod options;
pub(crate) mod paths;
pub(crate) mod remote;
pub(crate) mod runtime;
pub(crate) mod settings;
pub(crate) mod store;
pub(crate) mod sysmem;

// napi's macros compile to nothing under `cargo test`, leaving this layer unused there.
#[cfg(not(test))]
mod js;
