//! orion-native: one process-wide native runtime for local AI models, shared by every
//! worker_thread of a Node.js process.
//!
//! The services (`embedding`, ...) are plain Rust with no napi types; `js` holds the thin
//! `#[napi]` layer and `runtime` the process-wide singletons.

pub mod config;
pub mod embedding;
pub mod error;
pub mod llm;
pub mod monitor;
pub mod ort_locate;
pub mod paths;
pub mod runtime;
pub mod sysmem;

// napi's macros compile to nothing under `cargo test`, leaving this layer unused there.
#[cfg(not(test))]
mod js;
