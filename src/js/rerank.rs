//! The shared reranker: `getSharedReranker`, the `SharedReranker` class (one `#[napi]
//! impl`), its options objects (each declared once) and its results.

use super::embedding::{read_text, read_texts, CallOptions};
use crate::embedding::EmbeddingService;
use crate::error::OrionError;
use crate::js::options::{read, Given, Int};
use crate::js::{js_error, promise, rejected, resolved};
use crate::runtime::{rerank_service, RerankRequest};
use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

type R<T> = std::result::Result<T, OrionError>;

/// Options of `getSharedReranker`. The first reranker of a model decides its batching,
/// queue and thread settings; later ones share them.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RerankerOptions {
    /// A GGUF reranker's file (rank pooling: bge-reranker-v2-m3, jina-reranker-v1-tiny-en,
    /// Qwen3-Reranker), run by llama.cpp, or a cross-encoder's directory (its ONNX file,
    /// `model.onnx` or `onnx/model.onnx`/`onnx/model_quantized.onnx`, and tokenizer files:
    /// ms-marco-MiniLM, bge-reranker-base), run by ONNX Runtime; wins over `model`.
    pub model_path: Option<String>,
    /// A GGUF reranker's file name under `ORION_MODELS_DIR`.
    pub model: Option<String>,
    /// Rank on remote servers instead (`/v1/rerank`: llama.cpp's server with `--rerank`,
    /// vLLM, TEI, Infinity), with the same cache, batching, timeouts and stats; wins over
    /// `model` and `modelPath`.
    pub remote: Option<crate::js::remote::RemoteOptions>,
    /// Size of the shared cache of scores in bytes, an integer from 0 to 2^40 (default
    /// 32 MiB, or `ORION_EMBEDDING_CACHE_BYTES`).
    #[napi(ts_type = "number")]
    pub cache_bytes: Option<Int<0, 1_099_511_627_776>>,
    /// Default per-call timeout in milliseconds, an integer from 1 to 4294967295
    /// (default 30000, or `ORION_EMBEDDING_TIMEOUT_MS`).
    #[napi(ts_type = "number")]
    pub timeout_ms: Option<Int<1, 4_294_967_295>>,
    /// Most (query, document) pairs per model call, an integer from 1 to 1024 (default
    /// 32).
    #[napi(ts_type = "number")]
    pub max_batch_size: Option<Int<1, 1024>>,
    /// How long a first queued pair waits for company, in milliseconds: an integer from
    /// 0 to 1000 (default 2).
    #[napi(ts_type = "number")]
    pub max_wait_ms: Option<Int<0, 1000>>,
    /// Most pairs waiting before calls are rejected with `OVERLOADED`, an integer from 1
    /// to 10000000 (default 10000).
    #[napi(ts_type = "number")]
    pub max_queue: Option<Int<1, 10_000_000>>,
    /// llama.cpp's (or ONNX Runtime's) threads, an integer from 1 to 1024 (default: every
    /// core).
    #[napi(ts_type = "number")]
    pub threads: Option<Int<1, 1024>>,
    /// How a cross-encoder's int8 weights (an ONNX export with int8 weights, as
    /// `model_quantized.onnx` files are) are computed with: `'exact'` (default), the
    /// model's own fp32 arithmetic, or `'int8'`, integer products calibrated at load as
    /// for the embedding model (faster; scores move slightly). A GGUF reranker computes
    /// with its file's own types. Rerankers of one model with different precisions are
    /// different services.
    #[napi(ts_type = "'exact' | 'int8'")]
    pub precision: Option<crate::onnx::graph::Precision>,
}

/// Per-call options of `rerank`.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RerankOptions {
    /// Only the best `topK` documents, an integer from 1 to 10000000 (default: all).
    #[napi(ts_type = "number")]
    pub top_k: Option<Int<1, 10_000_000>>,
    /// Overrides the reranker's timeout for this call: milliseconds, an integer from 1
    /// to 4294967295.
    #[napi(ts_type = "number")]
    pub timeout_ms: Option<Int<1, 4_294_967_295>>,
    /// Rejects the call with code `ABORTED` when it fires.
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<Given>,
    /// `false`: a (query, document) pair longer than the model reads rejects the call
    /// with `INPUT_TOO_LONG` instead of the document being cut (default `true`).
    pub truncate: Option<bool>,
}

/// One document's place in a ranking.
#[napi(object)]
pub struct RerankResult {
    /// The document's index in the array given.
    pub index: u32,
    /// The model's relevance score (higher is more relevant): the classifier's raw
    /// output for llama.cpp, the server's `relevance_score` (or `score`) for a remote
    /// reranker. Scores compare within one reranker only.
    pub score: f64,
}

/// Statistics of a shared reranker (process-wide, the same from every thread).
#[napi(object)]
pub struct RerankerStats {
    /// Model name.
    pub model: String,
    /// What scores the pairs: `'llama'` (llama.cpp, a GGUF reranker), `'onnx'` (ONNX
    /// Runtime, a cross-encoder's directory) or `'remote'`.
    #[napi(ts_type = "'llama' | 'onnx' | 'remote'")]
    pub engine: String,
    /// Times the model was loaded in this process: 1 once it is in use.
    pub model_loads: i64,
    /// (query, document) pairs asked for, over every call from every thread.
    pub requests: i64,
    pub cache_hits: i64,
    pub cache_misses: i64,
    pub cache_bytes: i64,
    /// Tokens the model read for the pairs it scored (0 for a remote reranker).
    pub tokens: i64,
    /// Pairs longer than the model reads, their document cut (with `truncate` on).
    pub truncated: i64,
    /// The threads the last batch computed with, for a GGUF reranker on the CPU (as
    /// for embeddings: fewer than `threads` while other processes keep cores busy).
    pub threads: Option<u32>,
    /// Model calls made (for a remote reranker, batches sent).
    pub batches: i64,
    /// Pairs per model call, on average.
    pub mean_batch_size: f64,
    /// Pairs waiting for the model now.
    pub queue_depth: u32,
    /// A remote reranker's servers.
    pub endpoints: Option<Vec<crate::js::remote::RemoteEndpointStats>>,
    /// A cross-encoder's precision (the ONNX engine): `'exact'` or `'int8'`.
    #[napi(ts_type = "'exact' | 'int8'")]
    pub precision: Option<String>,
    /// With `precision: 'int8'`, how its integer products take their weights on this
    /// CPU (see the embedding client's `int8Weights`).
    #[napi(ts_type = "'signed' | 'unsigned'")]
    pub int8_weights: Option<String>,
}

/// A handle on a process-wide reranker. Every reranker for the same model, from any
/// thread, shares one loaded model, one queue and one cache of scores.
#[napi]
pub struct SharedReranker {
    service: Arc<EmbeddingService>,
    timeout: Duration,
}

/// The shared reranker of a model. Options: `modelPath` or `model` (a GGUF reranker),
/// or `remote`; `timeoutMs`, `cacheBytes`, `maxBatchSize`, `maxWaitMs`, `maxQueue`,
/// `threads`, `precision`. Throws an Error with code `INVALID_OPTION` on bad options.
#[napi(ts_args_type = "options?: RerankerOptions", catch_unwind)]
pub fn get_shared_reranker(env: Env, options: Option<Unknown>) -> Result<SharedReranker> {
    reranker(options).map_err(|e| js_error(&env, &e))
}

fn reranker(options: Option<Unknown>) -> R<SharedReranker> {
    let (o, _): (RerankerOptions, _) = read(options, "options")?;
    // The same batching and timeout options as an embedding client's, read the same way.
    let shared = super::embedding::EmbeddingClientOptions {
        cache_bytes: o.cache_bytes,
        timeout_ms: o.timeout_ms,
        max_batch_size: o.max_batch_size,
        max_wait_ms: o.max_wait_ms,
        max_queue: o.max_queue,
        ..Default::default()
    };
    let timeout = shared.timeout()?;
    let request = RerankRequest {
        model: o.model,
        model_path: o.model_path.map(PathBuf::from),
        config: shared.batch_config()?,
        threads: o.threads.map(Int::usize),
        remote: o
            .remote
            .map(|r| r.into_spec("options.remote"))
            .transpose()?,
        precision: o.precision.unwrap_or_default(),
    };
    Ok(SharedReranker {
        service: rerank_service(request)?,
        timeout,
    })
}

/// `scores` as a ranking: best first (equal scores in document order), the first
/// `top_k`.
fn ranking(scores: &[crate::embedding::queue::Vector], top_k: Option<usize>) -> Vec<RerankResult> {
    let mut ranked: Vec<(usize, f32)> = scores
        .iter()
        .enumerate()
        .map(|(i, s)| (i, s.first().copied().unwrap_or(f32::NEG_INFINITY)))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(top_k.unwrap_or(usize::MAX));
    ranked
        .into_iter()
        .map(|(i, s)| RerankResult {
            index: i as u32,
            score: f64::from(s),
        })
        .collect()
}

#[napi]
impl SharedReranker {
    /// The model's name.
    #[napi(getter, catch_unwind)]
    pub fn model(&self) -> String {
        self.service.model().to_string()
    }

    /// Score each document's relevance to `query` and rank them, best first:
    /// `[{ index, score }]`, the first `topK` of them. An empty array gives `[]`.
    #[napi(
        ts_args_type = "query: string, documents: string[], options?: RerankOptions",
        ts_return_type = "Promise<RerankResult[]>",
        catch_unwind
    )]
    pub fn rerank<'e>(
        &self,
        env: &'e Env,
        query: Unknown,
        documents: Unknown,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'e, Vec<RerankResult>>> {
        let prepared = (|| {
            let query = read_text(&query).map_err(|_| {
                OrionError::InvalidInput(format!(
                    "query must be a string, got {}",
                    crate::js::options::describe(&query)
                ))
            })?;
            let documents = read_texts(&documents).map_err(|e| match e {
                OrionError::InvalidInput(m) => {
                    OrionError::InvalidInput(m.replacen("texts", "documents", 1))
                }
                other => other,
            })?;
            let (top_k, call) = read_call(options, self.timeout)?;
            let keys: Vec<String> = documents
                .iter()
                .map(|d| crate::engine::rerank::pair_key(&query, d))
                .collect();
            let gone = crate::js::env_guard::gone(env)
                .map_err(|e| OrionError::Internal(format!("environment hook: {}", e.reason)))?;
            let pending = self.service.submit_shaped(&keys, &call.shape)?;
            Ok::<_, OrionError>((pending, top_k, call, gone))
        })();
        match prepared {
            Ok((pending, top_k, _, _)) if pending.is_ready() => match pending.into_ready() {
                Ok(s) => resolved(env, s, move |_, s| Ok(ranking(&s, top_k))),
                Err(e) => rejected(env, e),
            },
            Ok((pending, top_k, call, gone)) => {
                let fut = async move {
                    tokio::select! {
                        r = pending.wait(call.timeout, call.cancel) => r,
                        () = gone.wait() => Err(OrionError::Aborted),
                    }
                };
                promise(env, fut, move |_, s| Ok(ranking(&s, top_k)))
            }
            Err(e) => rejected(env, e),
        }
    }

    /// Counters of the process-wide reranker.
    #[napi(catch_unwind)]
    pub fn get_stats(&self) -> RerankerStats {
        let s = self.service.stats();
        RerankerStats {
            model: s.model,
            engine: s.engine.to_string(),
            model_loads: s.model_loads as i64,
            requests: s.requests as i64,
            cache_hits: s.cache_hits as i64,
            cache_misses: s.cache_misses as i64,
            cache_bytes: s.cache_bytes as i64,
            tokens: s.tokens as i64,
            truncated: s.truncated as i64,
            threads: s.threads.map(|t| t as u32),
            batches: s.batches as i64,
            mean_batch_size: s.mean_batch_size,
            queue_depth: s.queue_depth as u32,
            endpoints: s.endpoints.map(|e| e.into_iter().map(Into::into).collect()),
            precision: s.precision.map(|p| p.name().to_string()),
            int8_weights: s.int8_weights.map(|w| w.name().to_string()),
        }
    }

    /// Empty the shared cache of scores (for every thread).
    #[napi(catch_unwind)]
    pub fn clear_cache(&self) {
        self.service.clear_cache();
    }
}

/// A call's `topK`, timeout and `signal`.
fn read_call(
    options: Option<Unknown>,
    default_timeout: Duration,
) -> R<(Option<usize>, CallOptions)> {
    let (options, o): (RerankOptions, _) = read(options, "options")?;
    let timeout = options
        .timeout_ms
        .map_or(default_timeout, crate::js::options::Int::millis);
    let cancel = match options.signal {
        Some(_) => match o.raw("signal")? {
            Some(s) => Some(crate::js::stop::read_stop(s)?.fired()),
            None => None,
        },
        None => None,
    };
    Ok((
        options.top_k.map(Int::usize),
        CallOptions {
            timeout,
            cancel,
            shape: crate::embedding::Shape {
                truncate: options.truncate,
                ..Default::default()
            },
        },
    ))
}
