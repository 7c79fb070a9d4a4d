use super::options::{cast_checked, describe, on_abort, Options};
use super::{js_error, promise, rejected, resolved};
use crate::embedding::queue::BatchConfig;
use crate::embedding::EmbeddingService;
use crate::error::OrionError;
use crate::runtime::{embedding_service, EmbeddingRequest};
use napi::bindgen_prelude::*;
use napi::{Env, JsValue, ValueType};
use napi_derive::napi;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

const DEFAULT_TIMEOUT_MS: u64 = 30_000;
const CLIENT_OPTIONS: &[&str] = &[
    "model",
    "modelPath",
    "cacheBytes",
    "timeoutMs",
    "maxBatchSize",
    "maxWaitMs",
    "maxQueue",
    "threads",
];
const CALL_OPTIONS: &[&str] = &["timeoutMs", "signal"];

/// Statistics of the shared embedding service (process-wide, the same from every thread).
#[napi(object)]
pub struct EmbeddingStats {
    /// Model name.
    pub model: String,
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
    /// Model calls made.
    pub batches: i64,
    /// Texts per model call, on average.
    pub mean_batch_size: f64,
    /// Texts waiting for the model now.
    pub queue_depth: u32,
}

/// A handle on the process-wide embedding service. Every client for the same model,
/// from any thread, shares one loaded model, one queue and one cache.
#[napi]
pub struct SharedEmbeddingClient {
    service: Arc<EmbeddingService>,
    timeout: Duration,
}

/// The shared embedding client. Options: `model` (a name under the models directory,
/// default `all-MiniLM-L6-v2`), `modelPath` (a directory with the model files),
/// `timeoutMs`, `cacheBytes`, `maxBatchSize`, `maxWaitMs`, `maxQueue`, `threads`.
/// Throws an Error with code `INVALID_OPTION` on bad options.
#[napi(ts_args_type = "options?: EmbeddingClientOptions", catch_unwind)]
pub fn get_shared_embedding_client(
    env: Env,
    options: Option<Unknown>,
) -> Result<SharedEmbeddingClient> {
    client(options).map_err(|e| js_error(&env, &e))
}

fn client(options: Option<Unknown>) -> std::result::Result<SharedEmbeddingClient, OrionError> {
    let o = Options::parse(options, "options", CLIENT_OPTIONS)?;
    let timeout_ms = match o.integer("timeoutMs", 1, u64::from(u32::MAX))? {
        Some(t) => t,
        None => crate::config::env_u64("ORION_EMBEDDING_TIMEOUT_MS")?
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_TIMEOUT_MS),
    };
    let defaults = BatchConfig::default();
    let cache_bytes = match o.integer("cacheBytes", 0, 1 << 40)? {
        Some(b) => b as usize,
        None => crate::config::env_u64("ORION_EMBEDDING_CACHE_BYTES")?
            .map_or(defaults.cache_bytes, |b| b as usize),
    };
    let config = BatchConfig {
        max_batch: o
            .integer("maxBatchSize", 1, 1024)?
            .map_or(defaults.max_batch, |v| v as usize),
        max_wait: o
            .integer("maxWaitMs", 0, 1000)?
            .map_or(defaults.max_wait, Duration::from_millis),
        max_queue: o
            .integer("maxQueue", 1, 10_000_000)?
            .map_or(defaults.max_queue, |v| v as usize),
        cache_bytes,
    };
    let service = embedding_service(EmbeddingRequest {
        model: o.string("model")?,
        model_path: o.string("modelPath")?.map(PathBuf::from),
        config,
        threads: o.integer("threads", 1, 1024)?.map(|t| t as usize),
    })?;
    Ok(SharedEmbeddingClient {
        service,
        timeout: Duration::from_millis(timeout_ms),
    })
}

struct CallOptions {
    timeout: Duration,
    cancel: Option<oneshot::Receiver<()>>,
}

impl SharedEmbeddingClient {
    fn call_options(
        &self,
        env: &Env,
        options: Option<Unknown>,
    ) -> std::result::Result<CallOptions, OrionError> {
        let o = Options::parse(options, "options", CALL_OPTIONS)?;
        let timeout = o
            .integer("timeoutMs", 1, u64::from(u32::MAX))?
            .map_or(self.timeout, Duration::from_millis);
        let cancel = match o.raw("signal")? {
            None => None,
            Some(s) => {
                let (tx, rx) = oneshot::channel();
                let tx = Mutex::new(Some(tx));
                on_abort(env, s, move || {
                    if let Some(tx) = tx.lock().take() {
                        let _ = tx.send(());
                    }
                })?;
                Some(rx)
            }
        };
        Ok(CallOptions { timeout, cancel })
    }

    /// Validate, submit and wait: everything after validation runs off the JS thread.
    fn embed<'e, V: ToNapiValue + 'static>(
        &self,
        env: &'e Env,
        texts: std::result::Result<Vec<String>, OrionError>,
        options: Option<Unknown>,
        convert: impl FnOnce(&Env, Vec<Arc<[f32]>>) -> Result<V> + 'static,
    ) -> Result<PromiseRaw<'e, V>> {
        let prepared = texts.and_then(|texts| {
            let call = self.call_options(env, options)?;
            let gone = super::env_guard::gone(env)
                .map_err(|e| OrionError::Internal(format!("environment hook: {}", e.reason)))?;
            let pending = self.service.submit(&texts)?;
            Ok((pending, call, gone))
        });
        match prepared {
            Ok((pending, _, _)) if pending.is_ready() => {
                resolved(env, pending.into_ready(), convert)
            }
            Ok((pending, call, gone)) => {
                // A terminated worker's requests are given up at once: dropping the wait
                // drops its receivers, and the queue then skips texts nobody waits for.
                let fut = async move {
                    tokio::select! {
                        r = pending.wait(call.timeout, call.cancel) => r,
                        () = gone.wait() => Err(OrionError::Aborted),
                    }
                };
                promise(env, fut, convert)
            }
            Err(e) => rejected(env, e),
        }
    }
}

#[napi]
impl SharedEmbeddingClient {
    /// The model's name.
    #[napi(getter, catch_unwind)]
    pub fn model(&self) -> String {
        self.service.model().to_string()
    }

    /// Embed one text: 384 numbers for all-MiniLM-L6-v2 (mean-pooled, L2-normalised;
    /// input beyond 256 tokens is truncated).
    #[napi(
        ts_args_type = "text: string, options?: EmbedOptions",
        ts_return_type = "Promise<number[]>",
        catch_unwind
    )]
    pub fn create_embedding<'e>(
        &self,
        env: &'e Env,
        text: Unknown,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'e, Vec<f32>>> {
        let texts = read_text(&text).map(|t| vec![t]);
        self.embed(env, texts, options, |_, mut v| {
            Ok(v.pop().map(|v| v.to_vec()).unwrap_or_default())
        })
    }

    /// Embed many texts in one call, one vector per text in order. An empty array gives
    /// an empty result.
    #[napi(
        ts_args_type = "texts: string[], options?: EmbedOptions",
        ts_return_type = "Promise<number[][]>",
        catch_unwind
    )]
    pub fn create_embeddings<'e>(
        &self,
        env: &'e Env,
        texts: Unknown,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'e, Vec<Vec<f32>>>> {
        self.embed(env, read_texts(&texts), options, |_, v| {
            Ok(v.iter().map(|v| v.to_vec()).collect())
        })
    }

    /// The fast form of `createEmbeddings`: one flat `Float32Array` of
    /// `texts.length * dimension` numbers, row `i` at `[i * dimension, (i + 1) * dimension)`.
    #[napi(
        ts_args_type = "texts: string[], options?: EmbedOptions",
        ts_return_type = "Promise<Float32Array>",
        catch_unwind
    )]
    pub fn create_embeddings_float32<'e>(
        &self,
        env: &'e Env,
        texts: Unknown,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'e, Float32Array>> {
        self.embed(env, read_texts(&texts), options, |_, v| {
            Ok(Float32Array::new(
                v.iter().flat_map(|v| v.iter().copied()).collect(),
            ))
        })
    }

    /// Counters of the process-wide service.
    #[napi(catch_unwind)]
    pub fn get_stats(&self) -> EmbeddingStats {
        let s = self.service.stats();
        EmbeddingStats {
            model: s.model,
            dimension: s.dimension as u32,
            model_loads: s.model_loads as i64,
            requests: s.requests as i64,
            cache_hits: s.cache_hits as i64,
            cache_misses: s.cache_misses as i64,
            cache_bytes: s.cache_bytes as i64,
            cache_entries: s.cache_entries as i64,
            cache_capacity_bytes: s.cache_capacity_bytes as i64,
            batches: s.batches as i64,
            mean_batch_size: s.mean_batch_size,
            queue_depth: s.queue_depth as u32,
        }
    }

    /// Empty the shared cache (for every thread).
    #[napi(catch_unwind)]
    pub fn clear_cache(&self) {
        self.service.clear_cache();
    }
}

fn read_text(v: &Unknown) -> std::result::Result<String, OrionError> {
    if v.get_type().ok() != Some(ValueType::String) {
        return Err(OrionError::InvalidInput(format!(
            "text must be a string, got {}",
            describe(v)
        )));
    }
    // napi hands strings over as UTF-8, turning lone surrogates into U+FFFD.
    cast_checked::<String>(v).map_err(|e| OrionError::InvalidInput(e.reason.clone()))
}

fn read_texts(v: &Unknown) -> std::result::Result<Vec<String>, OrionError> {
    if !v.is_array().unwrap_or(false) {
        return Err(OrionError::InvalidInput(format!(
            "texts must be an array of strings, got {}",
            describe(v)
        )));
    }
    let arr: Object = cast_checked(v).map_err(|e| OrionError::InvalidInput(e.reason.clone()))?;
    let len = arr
        .get_array_length()
        .map_err(|e| OrionError::InvalidInput(e.reason.clone()))?;
    (0..len)
        .map(|i| {
            let item: Unknown = arr
                .get_element(i)
                .map_err(|e| OrionError::InvalidInput(e.reason.clone()))?;
            read_text(&item).map_err(|_| {
                OrionError::InvalidInput(format!(
                    "texts[{i}] must be a string, got {}",
                    describe(&item)
                ))
            })
        })
        .collect()
}
