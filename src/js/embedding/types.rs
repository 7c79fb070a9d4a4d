//! What the embedding client returns to JS besides vectors, with its conversion from
//! the core type beside it.

use napi_derive::napi;

/// Statistics of the shared embedding service (process-wide, the same from every thread).
#[napi(object)]
pub struct EmbeddingStats {
    /// Model name.
    pub model: String,
    /// What computes the vectors: `'onnx'` (ONNX Runtime, a model directory), `'llama'`
    /// (llama.cpp, a GGUF file) or `'remote'` (servers).
    #[napi(ts_type = "'onnx' | 'llama' | 'remote'")]
    pub engine: String,
    /// The model's family, when its name says it (`nomic-embed-text-v1.5`,
    /// `Qwen3-Embedding`, `EmbeddingGemma`, `bge-en-v1.5`, `e5`, `MiniLM`, ...): what
    /// `inputType` and `dimensions` go by.
    pub family: Option<String>,
    /// Vector length (0 until known).
    pub dimension: u32,
    /// Times the model was loaded in this process: 1 once it is in use.
    pub model_loads: i64,
    /// Texts asked for, over every call from every thread.
    pub requests: i64,
    pub cache_hits: i64,
    pub cache_misses: i64,
    pub cache_bytes: i64,
    pub cache_entries: i64,
    pub cache_capacity_bytes: i64,
    /// Tokens the model read for the texts it embedded, special tokens included (0 for
    /// a remote client).
    pub tokens: i64,
    /// Texts longer than the model reads, cut to fit (with `truncate` on).
    pub truncated: i64,
    /// The threads the last batch computed with, for a GGUF model on the CPU: its
    /// `threads`, or fewer while other processes keep cores busy (llama.cpp's threads
    /// meet after every step, and one without a core holds the others up).
    pub threads: Option<u32>,
    /// Model calls made.
    pub batches: i64,
    /// Texts per model call, on average.
    pub mean_batch_size: f64,
    /// Milliseconds a text waited in the queue before its batch went to the model, on
    /// average.
    pub mean_queue_wait_ms: f64,
    /// Texts waiting for the model now.
    pub queue_depth: u32,
    /// A remote client's servers, with their requests, bytes and errors.
    pub endpoints: Option<Vec<crate::js::remote::RemoteEndpointStats>>,
    /// A local model's precision: `'exact'` or `'int8'`.
    #[napi(ts_type = "'exact' | 'int8'")]
    pub precision: Option<String>,
    /// With `precision: 'int8'`, how its integer products take their weights on this
    /// CPU: `'signed'` where the CPU adds 8-bit products in 32 bits (x86 with VNNI,
    /// ARM64), `'unsigned'` where it would saturate them (x86 with AVX2 but no VNNI).
    /// The accuracy is the same; the speed is the CPU's.
    #[napi(ts_type = "'signed' | 'unsigned'")]
    pub int8_weights: Option<String>,
    /// The CPU's features, for a local model: `avx2`, `avx512vnni`, `avxvnni`, `neon`,
    /// `dotprod`... (those that decide `int8Weights` and ONNX Runtime's kernels among them).
    pub cpu_features: Option<Vec<String>>,
}

impl From<crate::embedding::EmbeddingStats> for EmbeddingStats {
    fn from(s: crate::embedding::EmbeddingStats) -> Self {
        Self {
            model: s.model,
            engine: s.engine.to_string(),
            family: s.family.map(str::to_string),
            dimension: s.dimension as u32,
            model_loads: s.model_loads as i64,
            requests: s.requests as i64,
            cache_hits: s.cache_hits as i64,
            cache_misses: s.cache_misses as i64,
            cache_bytes: s.cache_bytes as i64,
            cache_entries: s.cache_entries as i64,
            cache_capacity_bytes: s.cache_capacity_bytes as i64,
            tokens: s.tokens as i64,
            truncated: s.truncated as i64,
            threads: s.threads.map(|t| t as u32),
            batches: s.batches as i64,
            mean_batch_size: s.mean_batch_size,
            mean_queue_wait_ms: s.mean_queue_wait.as_secs_f64() * 1000.0,
            queue_depth: s.queue_depth as u32,
            endpoints: s.endpoints.map(|e| e.into_iter().map(Into::into).collect()),
            int8_weights: s.int8_weights.map(|w| w.name().to_string()),
            cpu_features: s.precision.map(|_| {
                crate::sysmem::cpu_features()
                    .into_iter()
                    .map(String::from)
                    .collect()
            }),
            precision: s.precision.map(|p| p.name().to_string()),
        }
    }
}
