//! llama.cpp, the one layer that touches it (llama-cpp-2): its backend and devices,
//! reading and loading GGUF models ([`engine`]), generation on a context ([`generate`]),
//! the contexts kept between turns ([`prefix`]) and GGUF embedding models ([`embed`]). Everything unsafe about
//! llama.cpp lives here.

pub(crate) mod backend;
pub(crate) mod chat;
pub(crate) mod context;
pub(crate) mod embed;
pub(crate) mod engine;
pub(crate) mod facts;
pub(crate) mod fit;
pub(crate) mod gate;
pub(crate) mod generate;
pub(crate) mod grammar;
pub(crate) mod modules;
pub(crate) mod prefix;
pub(crate) mod probe;
pub(crate) mod tokens;
#[cfg(ggml_dl)]
mod vulkan;
