//! The `SharedEmbeddingClient` class, all of its methods in one `#[napi] impl`, and
//! `getSharedEmbeddingClient`.

use super::args::{client_options, read_text, read_texts, CallOptions};
use super::types::EmbeddingStats;
use crate::embedding::EmbeddingService;
use crate::error::OrionError;
use crate::js::{js_error, promise, rejected, resolved};
use crate::runtime::embedding_service;
use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;
use std::sync::Arc;
use std::time::Duration;

/// A handle on the process-wide embedding service. Every client for the same model,
/// from any thread, shares one loaded model, one queue and one cache.
#[napi]
pub struct SharedEmbeddingClient {
    service: Arc<EmbeddingService>,
    timeout: Duration,
    /// `dimensions` and `inputType` given to `getSharedEmbeddingClient`.
    shape: crate::embedding::Shape,
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
    let (request, timeout, shape) = client_options(options)?;
    Ok(SharedEmbeddingClient {
        service: embedding_service(request)?,
        timeout,
        shape,
    })
}

impl SharedEmbeddingClient {
    /// Validate, submit and wait: everything after validation runs off the JS thread.
    fn embed<'e, V: ToNapiValue + 'static>(
        &self,
        env: &'e Env,
        texts: std::result::Result<Vec<String>, OrionError>,
        options: Option<Unknown>,
        convert: impl FnOnce(&Env, Vec<crate::embedding::queue::Vector>) -> Result<V> + 'static,
    ) -> Result<PromiseRaw<'e, V>> {
        let prepared = texts.and_then(|texts| {
            let call = CallOptions::read(options, self.timeout, &self.shape)?;
            let gone = crate::js::env_guard::gone(env)
                .map_err(|e| OrionError::Internal(format!("environment hook: {}", e.reason)))?;
            let pending = self.service.submit_shaped(&texts, &call.shape)?;
            Ok((pending, call, gone))
        });
        match prepared {
            Ok((pending, _, _)) if pending.is_ready() => match pending.into_ready() {
                Ok(v) => resolved(env, v, convert),
                Err(e) => rejected(env, e),
            },
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
        self.service.stats().into()
    }

    /// Empty the shared cache (for every thread).
    #[napi(catch_unwind)]
    pub fn clear_cache(&self) {
        self.service.clear_cache();
    }
}
