//! The embedding calls' options objects, each declared once: the struct is the
//! TypeScript interface (its doc comments, ranges and defaults included), the allowed
//! keys and their types ([`crate::js::options::read`]), and its `validate` the ranges.

use crate::embedding::queue::BatchConfig;
use crate::error::{echo, OrionError};
use crate::js::options::{integer, Given};
use napi_derive::napi;
use serde::Deserialize;
use std::time::Duration;

type R<T> = std::result::Result<T, OrionError>;

/// Where the messages of range errors point.
const WHAT: &str = "options";
/// The environment's default `precision`.
pub(crate) const PRECISION_ENV: &str = "ORION_EMBEDDING_PRECISION";
/// `timeoutMs`' range, in both options objects.
const TIMEOUT_MS: (u64, u64) = (1, u32::MAX as u64);

/// Options of `getSharedEmbeddingClient`. The first client of a model decides its
/// batching, queue and thread settings; later clients share them.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddingClientOptions {
    /// A model name: a directory under `ORION_MODELS_DIR` (default `all-MiniLM-L6-v2`).
    pub model: Option<String>,
    /// A directory holding model.onnx and the tokenizer files; wins over `model`.
    pub model_path: Option<String>,
    /// Size of the shared cache in bytes, an integer from 0 to 2^40 (default 32 MiB,
    /// or `ORION_EMBEDDING_CACHE_BYTES`).
    pub cache_bytes: Option<f64>,
    /// Default per-request timeout in milliseconds, an integer from 1 to 4294967295
    /// (default 30000, or `ORION_EMBEDDING_TIMEOUT_MS`).
    pub timeout_ms: Option<f64>,
    /// Most texts per model call, an integer from 1 to 1024 (default 32).
    pub max_batch_size: Option<f64>,
    /// How long a first queued text waits for company, in milliseconds: an integer
    /// from 0 to 1000 (default 2).
    pub max_wait_ms: Option<f64>,
    /// Most texts waiting before requests are rejected with `OVERLOADED`, an integer
    /// from 1 to 10000000 (default 10000).
    pub max_queue: Option<f64>,
    /// ONNX Runtime intra-op threads, an integer from 1 to 1024 (default: every core).
    pub threads: Option<f64>,
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
    pub precision: Option<String>,
}

impl EmbeddingClientOptions {
    /// `timeoutMs`' default, when `ORION_EMBEDDING_TIMEOUT_MS` does not set one.
    pub(crate) const DEFAULT_TIMEOUT_MS: u64 = 30_000;
    /// Each number in its range.
    pub(super) fn validate(&self) -> R<()> {
        integer(WHAT, "cacheBytes", self.cache_bytes, 0, 1 << 40)?;
        integer(
            WHAT,
            "timeoutMs",
            self.timeout_ms,
            TIMEOUT_MS.0,
            TIMEOUT_MS.1,
        )?;
        integer(WHAT, "maxBatchSize", self.max_batch_size, 1, 1024)?;
        integer(WHAT, "maxWaitMs", self.max_wait_ms, 0, 1000)?;
        integer(WHAT, "maxQueue", self.max_queue, 1, 10_000_000)?;
        integer(WHAT, "threads", self.threads, 1, 1024)?;
        Ok(())
    }

    /// The client's default timeout: `timeoutMs`, else `ORION_EMBEDDING_TIMEOUT_MS`,
    /// else 30 s.
    pub(super) fn timeout(&self) -> R<Duration> {
        let ms = match self.timeout_ms {
            Some(t) => t as u64,
            None => crate::config::env_u64("ORION_EMBEDDING_TIMEOUT_MS")?
                .filter(|t| *t > 0)
                .unwrap_or(Self::DEFAULT_TIMEOUT_MS),
        };
        Ok(Duration::from_millis(ms))
    }

    /// `precision`, else `ORION_EMBEDDING_PRECISION`, else exact.
    pub(super) fn precision(&self) -> R<crate::onnx::graph::Precision> {
        use crate::onnx::graph::Precision;
        let (given, from) = match &self.precision {
            Some(p) => (Some(p.clone()), "options.precision"),
            None => (
                std::env::var(PRECISION_ENV).ok().filter(|v| !v.is_empty()),
                PRECISION_ENV,
            ),
        };
        match given {
            None => Ok(Precision::Exact),
            Some(p) => Precision::parse(&p).ok_or_else(|| {
                OrionError::InvalidOption(format!(
                    "{from} must be 'exact' or 'int8', got {}",
                    echo(&p)
                ))
            }),
        }
    }

    /// The service's batching: the given (validated) options, else the core's
    /// defaults (`BatchConfig::default()`, which the doc comments above state), with
    /// `cacheBytes` from `ORION_EMBEDDING_CACHE_BYTES` first.
    pub(super) fn batch_config(&self) -> R<BatchConfig> {
        let d = BatchConfig::default();
        let cache_bytes = match self.cache_bytes {
            Some(b) => b as usize,
            None => crate::config::env_u64("ORION_EMBEDDING_CACHE_BYTES")?
                .map_or(d.cache_bytes, |b| b as usize),
        };
        Ok(BatchConfig {
            max_batch: self.max_batch_size.map_or(d.max_batch, |v| v as usize),
            max_wait: self
                .max_wait_ms
                .map_or(d.max_wait, |v| Duration::from_millis(v as u64)),
            max_queue: self.max_queue.map_or(d.max_queue, |v| v as usize),
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
    pub timeout_ms: Option<f64>,
    /// Rejects the call with code `ABORTED` when it fires.
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<Given>,
}

impl EmbedOptions {
    /// Each number in its range.
    pub(super) fn validate(&self) -> R<()> {
        integer(
            WHAT,
            "timeoutMs",
            self.timeout_ms,
            TIMEOUT_MS.0,
            TIMEOUT_MS.1,
        )
        .map(drop)
    }
}
