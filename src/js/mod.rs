//! The thin `#[napi]` face of the services: argument checking, conversion, and turning
//! [`OrionError`]s into JS `Error`s with a `code`. No service logic lives here: that is
//! in the core modules and [`crate::runtime`]. One concern per file, after
//! huggingface/tokenizers' `bindings/node`:
//!
//! - `llm/`: the LLM calls.
//!   - `loader.rs`: the `ModelLoader` class (one `#[napi] impl`) and `getModelLoader`.
//!   - `stream.rs`: `TokenStream` (`generateStream`'s async iterator) and `StreamStep`.
//!   - `sinks.rs`: `ProgressSink` and `TokenSink`, calls back into JS from other threads.
//!   - `args.rs`: reading model keys, prompts, descriptors and options.
//!   - `options.rs`: `ModelLoaderOptions` and `GenerateOptions`, each declared once.
//!   - `types.rs`: the output objects, each with `impl From<core type>` beside it.
//!   - `quantization.rs`: `applyQuantization`, `getOptimizationStrategy` and the
//!     `QUANTIZATION_LEVELS` export.
//! - `monitor/`: the memory monitor.
//!   - `memory_monitor.rs`: the `MemoryMonitor` class (one `#[napi] impl`) and
//!     `getMemoryMonitor`.
//!   - `subscribers.rs`: the process-wide `onSnapshot`/`onAlert` subscriptions, the one
//!     piece of service state on this side (they hold JS functions; see there).
//!   - `args.rs`: reading the monitor's options and `start`'s interval.
//!   - `options.rs`: `MemoryMonitorOptions`, declared once.
//!   - `types.rs`: the output objects, each with `impl From<core type>` beside it.
//! - `embedding/`: the shared embedding client.
//!   - `client.rs`: the `SharedEmbeddingClient` class (one `#[napi] impl`) and
//!     `getSharedEmbeddingClient`.
//!   - `args.rs`: reading texts, the client's options and each call's options.
//!   - `options.rs`: `EmbeddingClientOptions` and `EmbedOptions`, each declared once.
//!   - `types.rs`: `EmbeddingStats`, with `impl From<core type>` beside it.
//! - `rerank.rs`: the shared reranker: `getSharedReranker`, the `SharedReranker` class,
//!   `RerankerOptions` and `RerankOptions` (each declared once), `RerankResult` and
//!   `RerankerStats`.
//! - `remote.rs`: `RemoteOptions` (remote servers, for embeddings and registered chat
//!   models) and `RemoteEndpointStats`.
//! - `settings.rs`: `configure()` and its `Configuration`.
//! - `lifecycle.rs`: the process's exit (`__attach`, `__shutdown`).
//! - `fetch.rs`: `__fetchFile`, the addon's downloader for the package's model fetch.
//! - `gpu.rs`: `__gpuModules` (the installed GPU packages' modules, from `lib/binding.js`)
//!   and `__gpuCheck` (a GPU module's check, run in a child process).
//! - `stop.rs`: `__stopSwitch` and `__stop`, through which `index.js` stops a call when its
//!   `AbortSignal` aborts.
//! - `options.rs`: reading option objects (into the options structs: `read`) and JS
//!   values, for every file above.
//! - `env_guard.rs`: work tied to the JS environment that started it, stopped when that
//!   environment goes (a worker's exit).
//! - this file: coded JS errors and settling Promises from native work.

mod embedding;
mod env_guard;
mod fetch;
mod gpu;
mod lifecycle;
mod llm;
mod monitor;
mod options;
mod remote;
mod rerank;
mod settings;
mod stop;

use crate::error::OrionError;
use napi::bindgen_prelude::*;
use napi::{sys, Env};
use std::future::Future;

/// A JS `Error` whose `code` is the variant's stable code.
pub(crate) fn js_error(env: &Env, e: &OrionError) -> napi::Error {
    let make = || -> napi::Result<Unknown<'_>> {
        let code = env.create_string(e.code())?;
        let msg = env.create_string(crate::error::bounded_message(&e.to_string()))?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: called on the JS thread that owns `env`; `code` and `msg` are strings
        // just created in it, and `raw` is a valid out-pointer.
        check_status!(unsafe {
            sys::napi_create_error(
                env.raw(),
                code.raw(),
                msg.raw(),
                std::ptr::addr_of_mut!(raw),
            )
        })?;
        // SAFETY: napi_create_error succeeded, so `raw` is a live value of `env`.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), raw) })
    };
    match make() {
        Ok(obj) => napi::Error::from(obj),
        Err(err) => err,
    }
}

/// Run `fut` off the JS thread and settle a Promise with its outcome; `convert` builds
/// the JS value on the calling thread. Errors reject with coded JS errors.
pub(crate) fn promise<T, V, F, C>(env: &Env, fut: F, convert: C) -> napi::Result<PromiseRaw<'_, V>>
where
    T: Send + 'static,
    V: ToNapiValue,
    F: Future<Output = std::result::Result<T, OrionError>> + Send + 'static,
    C: FnOnce(&Env, T) -> napi::Result<V> + 'static,
{
    env.spawn_future_with_callback(
        async move { Ok(fut.await) },
        move |env, outcome| match outcome {
            Ok(v) => convert(env, v),
            Err(e) => Err(js_error(env, &e)),
        },
    )
}

/// A Promise resolved now, on this thread, with what `convert` builds from `value`:
/// for answers that are already known (cache hits), without a trip through the async
/// runtime's threads and back, which costs more than the answer itself.
pub(crate) fn resolved<T, V, C>(env: &Env, value: T, convert: C) -> napi::Result<PromiseRaw<'_, V>>
where
    V: ToNapiValue,
    C: FnOnce(&Env, T) -> napi::Result<V>,
{
    let mut deferred = std::ptr::null_mut();
    let mut promise = std::ptr::null_mut();
    // SAFETY: called on the JS thread that owns `env`, with valid out-pointers.
    check_status!(unsafe {
        sys::napi_create_promise(
            env.raw(),
            std::ptr::addr_of_mut!(deferred),
            std::ptr::addr_of_mut!(promise),
        )
    })?;
    // SAFETY: `to_napi_value` builds a value in `env` on its own thread.
    match convert(env, value).and_then(|v| unsafe { V::to_napi_value(env.raw(), v) }) {
        // SAFETY: `deferred` came from napi_create_promise above and is settled once.
        Ok(v) => check_status!(unsafe { sys::napi_resolve_deferred(env.raw(), deferred, v) })?,
        Err(e) => {
            let reason = js_error(env, &OrionError::Internal(e.reason.clone()));
            // SAFETY: builds the error value in `env`, on its own thread.
            let raw = unsafe { napi::JsError::from(reason).into_value(env.raw()) };
            // SAFETY: `deferred` came from napi_create_promise above and is settled once
            // (here, not in the branch above); `raw` belongs to `env`.
            check_status!(unsafe { sys::napi_reject_deferred(env.raw(), deferred, raw) })?;
        }
    }
    Ok(PromiseRaw::new(env.raw(), promise))
}

/// A Promise already rejected with `e`: bad input to a Promise-returning call rejects
/// rather than throws, so callers handle every failure in one place.
pub(crate) fn rejected<V: ToNapiValue + 'static>(
    env: &Env,
    e: OrionError,
) -> napi::Result<PromiseRaw<'_, V>> {
    promise(
        env,
        async move { Err::<(), _>(e) },
        |_, ()| -> napi::Result<V> { unreachable!("a rejected promise never converts a value") },
    )
}

/// Run `f` on tokio's blocking pool: for calls that block inside llama.cpp (loads,
/// unloads, generations) or on the network (`__fetchFile`).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, OrionError> + Send + 'static,
) -> std::result::Result<T, OrionError> {
    // Counted until it returns, so that the process's exit waits for it.
    let work = crate::lifecycle::begin_work()?;
    tokio::task::spawn_blocking(move || {
        let _work = work;
        f()
    })
    .await
    .map_err(|e| OrionError::Internal(format!("worker thread failed: {e}")))?
}
