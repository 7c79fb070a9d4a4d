//! The model store: ground that embedding and LLM services share. Where model files
//! come from (the catalog, the hub's layout, downloads with resume and checks), how
//! they are verified (sha256 memo, GGUF header check, quantization labels).

pub(crate) mod catalog;
pub(crate) mod download;
pub(crate) mod family;
pub(crate) mod gguf_check;
pub(crate) mod integrity;
pub(crate) mod quant;
