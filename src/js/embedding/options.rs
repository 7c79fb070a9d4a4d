//! The embedding calls' options objects, each declared once: the struct is the
//! TypeScript interface (its doc comments, ranges and defaults included), the allowed
//! keys and their types, ranges included ([`crate::js::options::read`]).

use crate::embedding::queue::BatchConfig;
use crate::error::{echo, OrionError};
use crate::js::options::{Given, Int};
use napi_derive::napi;
use serde::Deserialize;
use std::time::Duration;

type R<T> = std::result::Result<T, OrionError>;

/// The environment's default `precision`.
pub(crate) const PRECISION_ENV: &str = "ORION_EMBEDDING_PRECISION";
/// `timeoutMs`, in both options objects.
type TimeoutMs = Int<1, 4_294_967_295>;

/// Options of `getSharedEmbeddingClient`. The first client of a model decides its
/// batching, queue and thread settings; later clients share them.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddingClientOptions {
    /// A model name: a directory under `ORION_MODELS_DIR` (an ONNX model), or a GGUF
    /// file there (`name.gguf`, run by llama.cpp). Default `all-MiniLM-L6-v2`.
    pub model: Option<String>,
    /// A directory holding model.onnx and the tokenizer files, or a GGUF embedding
    /// model's file (run by llama.cpp, pooled as the file declares); wins over `model`.
    pub model_path: Option<String>,
    /// Size of the shared cache in bytes, an integer from 0 to 2^40 (default 32 MiB,
    /// or `ORION_EMBEDDING_CACHE_BYTES`).
    #[napi(ts_type = "number")]
    pub cache_bytes: Option<Int<0, 1_099_511_627_776>>,
    /// Default per-request timeout in milliseconds, an integer from 1 to 4294967295
    /// (default 30000, or `ORION_EMBEDDING_TIMEOUT_MS`).
    #[napi(ts_type = "number")]
    pub timeout_ms: Option<TimeoutMs>,
    /// Most texts per model call, an integer from 1 to 1024 (default 32).
    #[napi(ts_type = "number")]
    pub max_batch_size: Option<Int<1, 1024>>,
    /// How long a first queued text waits for company, in milliseconds: an integer
    /// from 0 to 1000 (default 2).
    #[napi(ts_type = "number")]
    pub max_wait_ms: Option<Int<0, 1000>>,
    /// Most texts waiting before requests are rejected with `OVERLOADED`, an integer
    /// from 1 to 10000000 (default 10000).
    #[napi(ts_type = "number")]
    pub max_queue: Option<Int<1, 10_000_000>>,
    /// Threads of the model's computation (ONNX Runtime's intra-op threads, or
    /// llama.cpp's), an integer from 1 to 1024 (default: every core).
    #[napi(ts_type = "number")]
    pub threads: Option<Int<1, 1024>>,
    /// Embed on remote servers instead (`/v1/embeddings`), with the same cache,
    /// batching, timeouts and stats; wins over `model` and `modelPath`. Else
    /// `ORION_REMOTE_EMBEDDINGS_URL` (comma-separated) and
    /// `ORION_REMOTE_EMBEDDINGS_MODEL` (and `ORION_REMOTE_EMBEDDINGS_API_KEY`) give one,
    /// when neither `model` nor `modelPath` is given.
    pub remote: Option<crate::js::remote::RemoteOptions>,
    /// How the model's int8 weights are computed with: `'exact'`, the model's own fp32
    /// arithmetic, or `'int8'`, integer products on the int8 weights (less memory,
    /// faster, vectors within a cosine of about 0.999 of exact ones). Default `'exact'`,
    /// or `ORION_EMBEDDING_PRECISION`. Clients of one model with different precisions
    /// are different services.
    #[napi(ts_type = "'exact' | 'int8'")]
    pub precision: Option<crate::onnx::graph::Precision>,
    /// This client's default `dimensions` (see `EmbedOptions`).
    #[napi(ts_type = "number")]
    pub dimensions: Option<Int<1, 65_536>>,
    /// This client's default `inputType` (see `EmbedOptions`).
    #[napi(ts_type = "'query' | 'document'")]
    pub input_type: Option<InputType>,
    /// This client's default `truncate` (see `EmbedOptions`).
    pub truncate: Option<bool>,
}

/// Whether texts are queries or documents.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    Query,
    Document,
}

impl From<InputType> for crate::embedding::InputType {
    fn from(t: InputType) -> Self {
        match t {
            InputType::Query => Self::Query,
            InputType::Document => Self::Document,
        }
    }
}

impl EmbeddingClientOptions {
    /// `timeoutMs`' default, when `ORION_EMBEDDING_TIMEOUT_MS` does not set one.
    pub(crate) const DEFAULT_TIMEOUT_MS: u64 = 30_000;
    /// The client's default timeout: `timeoutMs`, else `ORION_EMBEDDING_TIMEOUT_MS`,
    /// else 30 s.
    pub(in crate::js) fn timeout(&self) -> R<Duration> {
        let ms = match self.timeout_ms {
            Some(t) => t.get(),
            None => crate::config::env_u64("ORION_EMBEDDING_TIMEOUT_MS")?
                .filter(|t| *t > 0)
                .unwrap_or(Self::DEFAULT_TIMEOUT_MS),
        };
        Ok(Duration::from_millis(ms))
    }

    /// `precision`, else `ORION_EMBEDDING_PRECISION`, else exact.
    pub(super) fn precision(&self) -> R<crate::onnx::graph::Precision> {
        use crate::onnx::graph::Precision;
        if let Some(p) = self.precision {
            return Ok(p);
        }
        match std::env::var(PRECISION_ENV).ok().filter(|v| !v.is_empty()) {
            None => Ok(Precision::Exact),
            Some(p) => Precision::parse(&p).ok_or_else(|| {
                OrionError::InvalidOption(format!(
                    "{PRECISION_ENV} must be 'exact' or 'int8', got {}",
                    echo(&p)
                ))
            }),
        }
    }

    /// The service's batching: the given options, else the core's
    /// defaults (`BatchConfig::default()`, which the doc comments above state), with
    /// `cacheBytes` from `ORION_EMBEDDING_CACHE_BYTES` first.
    pub(in crate::js) fn batch_config(&self) -> R<BatchConfig> {
        let d = BatchConfig::default();
        let cache_bytes = match self.cache_bytes {
            Some(b) => b.usize(),
            None => crate::config::env_u64("ORION_EMBEDDING_CACHE_BYTES")?
                .map_or(d.cache_bytes, |b| usize::try_from(b).unwrap_or(usize::MAX)),
        };
        Ok(BatchConfig {
            max_batch: self.max_batch_size.map_or(d.max_batch, Int::usize),
            max_wait: self.max_wait_ms.map_or(d.max_wait, Int::millis),
            max_queue: self.max_queue.map_or(d.max_queue, Int::usize),
            cache_bytes,
        })
    }
}

/// Per-call options of the embedding methods.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmbedOptions {
    /// Overrides the client's timeout for this call: milliseconds, an integer from 1
    /// to 4294967295.
    #[napi(ts_type = "number")]
    pub timeout_ms: Option<TimeoutMs>,
    /// Rejects the call with code `ABORTED` when it fires.
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<Given>,
    /// Vectors of this many values, an integer from 1 to 65536: the first ones,
    /// renormalised, for models trained for shorter vectors (Matryoshka:
    /// nomic-embed-text-v1.5 64 or more, Qwen3-Embedding 32 or more, `EmbeddingGemma` 128,
    /// 256 or 512, mxbai-embed-large 64 or more); `INVALID_OPTION` for other models. A
    /// remote model's vectors are cut as asked.
    #[napi(ts_type = "number")]
    pub dimensions: Option<Int<1, 65_536>>,
    /// `'query'` or `'document'`: the texts get the prefix (or instruction) the model's
    /// family is trained with (nomic's `search_query: `/`search_document: `, Qwen3's
    /// instruction, `EmbeddingGemma`'s and bge's prompts, e5's `query: `/`passage: `);
    /// nothing for models that need none.
    #[napi(ts_type = "'query' | 'document'")]
    pub input_type: Option<InputType>,
    /// A query's task, for Qwen3-Embedding (`Instruct: <instruction>\nQuery:<text>`;
    /// default: web search); `INVALID_OPTION` for models that take none. With
    /// `inputType: 'query'`.
    pub instruction: Option<String>,
    /// `false`: a text longer than the model reads rejects the call with
    /// `INPUT_TOO_LONG` (naming the text) instead of being cut to fit (default `true`).
    pub truncate: Option<bool>,
}
