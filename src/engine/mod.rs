//! The seams between services and engines: the traits engines implement and the types
//! they exchange. Ground, so that engines (llama.cpp, ONNX Runtime, remote servers) and
//! the services generic over them depend on it and not on each other.

pub(crate) mod embedding;
pub(crate) mod llm;
pub(crate) mod rerank;

/// What `getStats()` shows of a remote server, for the engines that use one.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct EndpointStats {
    pub(crate) url: String,
    pub(crate) healthy: bool,
    pub(crate) outstanding: usize,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
    pub(crate) last_error: Option<String>,
}
