//! Reading what JS passes to the embedding client: texts, the client's options and
//! each call's options.

use crate::embedding::queue::BatchConfig;
use crate::error::OrionError;
use crate::js::options::{cast_checked, describe, on_abort, Options};
use crate::runtime::EmbeddingRequest;
use napi::bindgen_prelude::*;
use napi::{Env, JsValue, ValueType};
use parking_lot::Mutex;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::oneshot;

type R<T> = std::result::Result<T, OrionError>;

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

/// `getSharedEmbeddingClient`'s options: the service to ask for, and the client's
/// default timeout (from `timeoutMs`, `ORION_EMBEDDING_TIMEOUT_MS` or 30 s).
pub(super) fn client_options(options: Option<Unknown>) -> R<(EmbeddingRequest, Duration)> {
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
    let request = EmbeddingRequest {
        model: o.string("model")?,
        model_path: o.string("modelPath")?.map(PathBuf::from),
        config,
        threads: o.integer("threads", 1, 1024)?.map(|t| t as usize),
    };
    Ok((request, Duration::from_millis(timeout_ms)))
}

/// One embedding call's options.
pub(super) struct CallOptions {
    pub(super) timeout: Duration,
    /// Fires when the caller's `signal` aborts.
    pub(super) cancel: Option<oneshot::Receiver<()>>,
}

impl CallOptions {
    /// `timeoutMs` (else `default_timeout`, the client's) and `signal`.
    pub(super) fn read(env: &Env, options: Option<Unknown>, default_timeout: Duration) -> R<Self> {
        let o = Options::parse(options, "options", CALL_OPTIONS)?;
        let timeout = o
            .integer("timeoutMs", 1, u64::from(u32::MAX))?
            .map_or(default_timeout, Duration::from_millis);
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
        Ok(Self { timeout, cancel })
    }
}

/// One text to embed.
pub(super) fn read_text(v: &Unknown) -> R<String> {
    if v.get_type().ok() != Some(ValueType::String) {
        return Err(OrionError::InvalidInput(format!(
            "text must be a string, got {}",
            describe(v)
        )));
    }
    // napi hands strings over as UTF-8, turning lone surrogates into U+FFFD.
    cast_checked::<String>(v).map_err(|e| OrionError::InvalidInput(e.reason.clone()))
}

/// An array of texts to embed.
pub(super) fn read_texts(v: &Unknown) -> R<Vec<String>> {
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
