use super::options::{cast_checked, describe, on_abort, to_json, Options};
use super::{js_error, promise, rejected};
use crate::error::OrionError;
use crate::llm::generate::{GenerateParams, Generation, Prompt};
use crate::llm::loader::{LoaderConfig, ProgressFn};
use crate::llm::registry::{self, ModelDescriptor};
use crate::llm::{quant, LlmService};
use crate::runtime::llm_service;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, JsValue, ValueType};
use napi_derive::napi;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type R<T> = std::result::Result<T, OrionError>;

const LOADER_OPTIONS: &[&str] = &["maxConcurrentModels", "budgetBytes", "idleTimeoutMs"];
const GENERATE_OPTIONS: &[&str] = &[
    "maxTokens",
    "temperature",
    "topK",
    "topP",
    "minP",
    "repeatPenalty",
    "seed",
    "stop",
    "signal",
    "onToken",
    "raw",
];

/// A loaded model, as `loadModel` reports it.
#[napi(object)]
pub struct ModelInfo {
    pub key: String,
    pub path: String,
    /// GGUF file type, e.g. `Q4_1`.
    pub quantization: Option<String>,
    /// Size of the model file (mapped, not copied).
    pub bytes: i64,
    pub context_length: u32,
    /// Times this key was loaded in this process.
    pub loads: i64,
}

#[napi(object)]
pub struct LoadedModelStats {
    pub key: String,
    pub path: String,
    pub quantization: Option<String>,
    pub bytes: i64,
    /// Milliseconds since the epoch.
    pub last_used: f64,
    /// Generations using it now.
    pub in_use: u32,
    pub loads: i64,
}

#[napi(object)]
pub struct ModelLoaderStats {
    pub loaded_models: u32,
    pub max_concurrent_models: u32,
    /// Loads in progress.
    pub loading: u32,
    pub total_bytes: i64,
    pub models: Vec<LoadedModelStats>,
}

#[napi(object)]
pub struct GenerateTimings {
    pub prompt_tokens: u32,
    pub prompt_ms: f64,
    pub prompt_tokens_per_second: f64,
    pub generated_tokens: u32,
    pub generation_ms: f64,
    pub tokens_per_second: f64,
    /// llama.cpp's own measurement of the same run.
    pub llama_prompt_tokens_per_second: f64,
    pub llama_tokens_per_second: f64,
}

#[napi(object)]
pub struct GenerateResult {
    pub text: String,
    /// Tokens generated.
    pub tokens: u32,
    /// `'stop'` (end of turn or a stop string) or `'length'` (maxTokens reached).
    pub finish_reason: String,
    pub timings: GenerateTimings,
}

#[napi(object)]
pub struct ModelListing {
    pub key: String,
    pub name: Option<String>,
    pub kind: String,
    /// Quantization levels it has files for.
    pub quantizations: Vec<String>,
    pub context_length: Option<u32>,
    pub loaded: bool,
}

#[napi(object)]
pub struct GpuInfo {
    pub name: String,
    pub backend: String,
    pub free_bytes: i64,
}

#[napi(object)]
pub struct OptimizationStrategy {
    /// The level `loadModel` picks by default (`q3`, `q4`, `q8`, ...).
    pub quantization: String,
    pub max_concurrent_models: u32,
    pub gpu_layers: u32,
    pub context_size: u32,
    pub threads: u32,
    pub total_memory: i64,
    pub available_memory: i64,
    pub cpu_features: Vec<String>,
    pub gpus: Vec<GpuInfo>,
    /// Why each choice was made.
    pub reasons: Vec<String>,
}

/// The process-wide model loader: the same from every thread.
#[napi]
pub struct ModelLoader {
    svc: &'static LlmService,
}

/// The process-wide model loader. Options (`maxConcurrentModels`, `budgetBytes`,
/// `idleTimeoutMs`) are process-wide too: passing them changes the limits for every
/// thread. Throws `INVALID_OPTION` on bad options.
#[napi(ts_args_type = "options?: ModelLoaderOptions", catch_unwind)]
pub fn get_model_loader(env: Env, options: Option<Unknown>) -> Result<ModelLoader> {
    loader(options).map_err(|e| js_error(&env, &e))
}

fn loader(options: Option<Unknown>) -> R<ModelLoader> {
    let o = Options::parse(options, "options", LOADER_OPTIONS)?;
    let max = o.integer("maxConcurrentModels", 1, 64)?;
    let budget = o.integer("budgetBytes", 0, u64::MAX >> 11)?;
    let idle = o.integer("idleTimeoutMs", 0, u64::from(u32::MAX))?;
    let svc = llm_service()?;
    if max.is_some() || budget.is_some() || idle.is_some() {
        let current = svc.loader().config();
        svc.loader().set_config(LoaderConfig {
            max_concurrent_models: max.map_or(current.max_concurrent_models, |m| m as usize),
            budget_bytes: budget.map_or(current.budget_bytes, |b| (b > 0).then_some(b)),
            idle_timeout: idle.map_or(current.idle_timeout, |ms| {
                (ms > 0).then(|| Duration::from_millis(ms))
            }),
        });
    }
    Ok(ModelLoader { svc })
}

fn read_key(v: &Unknown, what: &str) -> R<String> {
    if v.get_type().ok() != Some(ValueType::String) {
        return Err(OrionError::InvalidInput(format!(
            "{what} must be a string, got {}",
            describe(v)
        )));
    }
    let s: String = cast_checked(v).map_err(|e| OrionError::InvalidInput(e.reason.clone()))?;
    if s.trim().is_empty() {
        return Err(OrionError::InvalidInput(format!(
            "{what} must not be empty"
        )));
    }
    Ok(s)
}

/// Delivers progress to a caller's callback on the caller's thread, never decreasing
/// and ending at exactly 100, whichever of the background reports and the final
/// "loaded" arrives first.
struct ProgressSink {
    user: FunctionRef<u32, Unknown<'static>>,
    delivered: Cell<u32>,
}

impl ProgressSink {
    fn deliver(&self, env: &Env, p: u32) {
        if p <= self.delivered.get() && !(p == 0 && self.delivered.get() == 0) {
            return;
        }
        self.delivered.set(p);
        if let Ok(f) = self.user.borrow_back(env) {
            let _ = f.call(p);
        }
    }
}

fn progress_sink(env: &Env, cb: Unknown) -> R<(Rc<ProgressSink>, ProgressFn)> {
    let internal = |e: napi::Error| OrionError::Internal(e.reason.clone());
    let user: Function<u32, Unknown<'static>> = cast_checked(&cb).map_err(internal)?;
    let sink = Rc::new(ProgressSink {
        user: user.create_ref().map_err(internal)?,
        delivered: Cell::new(0),
    });
    let for_js = sink.clone();
    let relay = env
        .create_function_from_closure("orionProgress", move |ctx| {
            let p: u32 = ctx.first_arg()?;
            for_js.deliver(ctx.env, p);
            Ok(())
        })
        .map_err(internal)?;
    let tsfn: ThreadsafeFunction<u32, (), u32, Status, false, true> = relay
        .build_threadsafe_function()
        .callee_handled::<false>()
        .weak::<true>()
        .build()
        .map_err(internal)?;
    let progress: ProgressFn = Arc::new(move |p| {
        // 100 is delivered with the result, so that it is never late.
        if p < 100 {
            tsfn.call(p, ThreadsafeFunctionCallMode::NonBlocking);
        }
    });
    Ok((sink, progress))
}

fn to_info(i: crate::llm::LoadInfo) -> ModelInfo {
    ModelInfo {
        key: i.key,
        path: i.path,
        quantization: i.quantization,
        bytes: i.bytes as i64,
        context_length: i.context_length,
        loads: i.loads as i64,
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> R<T> + Send + 'static) -> R<T> {
    // Counted until it returns, so that the process's exit waits for it.
    let work = crate::runtime::begin_work()?;
    tokio::task::spawn_blocking(move || {
        let _work = work;
        f()
    })
    .await
    .map_err(|e| OrionError::Internal(format!("worker thread failed: {e}")))?
}

/// Streams generated text to a JS callback. The generation thread waits (briefly) for
/// the callback to have seen every piece before the result resolves, so `onToken` has
/// always received the whole text by then.
struct TokenSink {
    tsfn: ThreadsafeFunction<String, Unknown<'static>, String, Status, false, true>,
    sent: AtomicUsize,
    seen: Arc<AtomicUsize>,
    closed: AtomicBool,
    /// The generation's stop flag: nobody is listening once the sink is closed.
    cancel: Arc<AtomicBool>,
}

impl TokenSink {
    fn send(&self, text: &str) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let seen = self.seen.clone();
        let status = self.tsfn.call_with_return_value(
            text.to_string(),
            ThreadsafeFunctionCallMode::NonBlocking,
            move |_, _| {
                seen.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
        );
        if status == Status::Ok {
            self.sent.fetch_add(1, Ordering::SeqCst);
        } else {
            // The subscribing thread is gone (its worker exited): stop generating for it.
            self.closed.store(true, Ordering::Relaxed);
            self.cancel.store(true, Ordering::Relaxed);
        }
    }

    fn flush(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        // A cancelled generation's thread may be the one that would run the callbacks
        // (a worker being torn down), and an exiting process will not run them at all.
        while !self.closed.load(Ordering::Relaxed)
            && !self.cancel.load(Ordering::Relaxed)
            && !crate::runtime::is_shut_down()
            && self.seen.load(Ordering::SeqCst) < self.sent.load(Ordering::SeqCst)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

fn read_prompt(v: &Unknown) -> R<Prompt> {
    let bad = || {
        OrionError::InvalidInput(format!(
            "prompt must be a string or an array of {{ role, content }} messages, got {}",
            describe(v)
        ))
    };
    match v.get_type().map_err(|_| bad())? {
        ValueType::String => {
            let s: String = cast_checked(v).map_err(|_| bad())?;
            if s.is_empty() {
                return Err(OrionError::InvalidInput("prompt must not be empty".into()));
            }
            Ok(Prompt::Text(s))
        }
        ValueType::Object if v.is_array().unwrap_or(false) => {
            let arr: Object = cast_checked(v).map_err(|_| bad())?;
            let n = arr.get_array_length().map_err(|_| bad())?;
            if n == 0 {
                return Err(OrionError::InvalidInput(
                    "messages must not be empty".into(),
                ));
            }
            let mut out = Vec::with_capacity(n as usize);
            for i in 0..n {
                let m: Unknown = arr.get_element(i).map_err(|_| bad())?;
                let o = Options::parse(Some(m), "message", &["role", "content"])
                    .map_err(|e| OrionError::InvalidInput(format!("messages[{i}]: {e}")))?;
                let field = |k: &str| {
                    o.string(k).ok().flatten().ok_or_else(|| {
                        OrionError::InvalidInput(format!("messages[{i}].{k} must be a string"))
                    })
                };
                let role = field("role")?;
                if !matches!(role.as_str(), "system" | "user" | "assistant") {
                    return Err(OrionError::InvalidInput(format!(
                        "messages[{i}].role must be 'system', 'user' or 'assistant', got {role:?}"
                    )));
                }
                out.push((role, field("content")?));
            }
            Ok(Prompt::Messages(out))
        }
        _ => Err(bad()),
    }
}

struct GenerateCall {
    params: GenerateParams,
    cancel: Arc<AtomicBool>,
    tokens: Option<Arc<TokenSink>>,
}

fn generate_options(env: &Env, options: Option<Unknown>) -> R<GenerateCall> {
    let o = Options::parse(options, "options", GENERATE_OPTIONS)?;
    let d = GenerateParams::default();
    let params = GenerateParams {
        max_tokens: o
            .integer("maxTokens", 1, 1 << 20)?
            .map_or(d.max_tokens, |v| v as u32),
        temperature: o
            .ranged("temperature", 0.0, 100.0)?
            .map_or(d.temperature, |v| v as f32),
        top_k: o.integer("topK", 0, 1 << 20)?.map_or(d.top_k, |v| v as i32),
        top_p: o.ranged("topP", 0.0, 1.0)?.map_or(d.top_p, |v| v as f32),
        min_p: o.ranged("minP", 0.0, 1.0)?.map_or(d.min_p, |v| v as f32),
        repeat_penalty: o
            .ranged("repeatPenalty", 0.01, 10.0)?
            .map_or(d.repeat_penalty, |v| v as f32),
        seed: o
            .integer("seed", 0, u64::from(u32::MAX))?
            .map_or(d.seed, |v| v as u32),
        stop: o
            .strings("stop")?
            .unwrap_or_default()
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect(),
        raw: o.boolean("raw")?.unwrap_or(false),
        ..d
    };
    let cancel = Arc::new(AtomicBool::new(false));
    if let Some(signal) = o.raw("signal")? {
        let flag = cancel.clone();
        on_abort(env, signal, move || flag.store(true, Ordering::Relaxed))?;
    }
    let tokens = match o.function("onToken")? {
        None => None,
        Some(f) => {
            let internal = |e: napi::Error| OrionError::Internal(e.reason.clone());
            let f: Function<String, Unknown<'static>> = cast_checked(&f).map_err(internal)?;
            let tsfn = f
                .build_threadsafe_function()
                .callee_handled::<false>()
                .weak::<true>()
                .build()
                .map_err(internal)?;
            Some(Arc::new(TokenSink {
                tsfn,
                sent: AtomicUsize::new(0),
                seen: Arc::new(AtomicUsize::new(0)),
                closed: AtomicBool::new(false),
                cancel: cancel.clone(),
            }))
        }
    };
    Ok(GenerateCall {
        params,
        cancel,
        tokens,
    })
}

fn to_result(g: Generation) -> GenerateResult {
    let t = g.timings;
    GenerateResult {
        text: g.text,
        tokens: g.tokens,
        finish_reason: g.finish_reason.to_string(),
        timings: GenerateTimings {
            prompt_tokens: t.prompt_tokens,
            prompt_ms: t.prompt_ms,
            prompt_tokens_per_second: t.prompt_tokens_per_second,
            generated_tokens: t.generated_tokens,
            generation_ms: t.generation_ms,
            tokens_per_second: t.tokens_per_second,
            llama_prompt_tokens_per_second: t.llama_prompt_tokens_per_second,
            llama_tokens_per_second: t.llama_tokens_per_second,
        },
    }
}

#[napi]
impl ModelLoader {
    /// Load a model by registry key, MLC-style quantized id or GGUF path, off the JS
    /// thread. `onProgress(percent)` runs on this thread with integers that never
    /// decrease and end at exactly 100 (at once when already loaded). Concurrent loads
    /// of one key from any thread share one load.
    #[napi(
        ts_args_type = "modelKey: string, onProgress?: (percent: number) => void",
        ts_return_type = "Promise<ModelInfo>",
        catch_unwind
    )]
    pub fn load_model<'e>(
        &self,
        env: &'e Env,
        model_key: Unknown,
        on_progress: Option<Unknown>,
    ) -> Result<PromiseRaw<'e, ModelInfo>> {
        let prepared = (|| -> R<_> {
            let key = read_key(&model_key, "modelKey")?;
            let sink = match on_progress {
                Some(cb) if cb.get_type().ok() == Some(ValueType::Function) => {
                    Some(progress_sink(env, cb)?)
                }
                Some(cb)
                    if !matches!(cb.get_type(), Ok(ValueType::Undefined | ValueType::Null)) =>
                {
                    return Err(OrionError::InvalidOption(format!(
                        "onProgress must be a function, got {}",
                        describe(&cb)
                    )))
                }
                _ => None,
            };
            Ok((key, sink))
        })();
        let (key, sink) = match prepared {
            Ok(p) => p,
            Err(e) => return rejected(env, e),
        };
        let (js_sink, progress) = match sink {
            Some((s, p)) => (Some(s), Some(p)),
            None => (None, None),
        };
        let svc = self.svc;
        promise(
            env,
            blocking(move || svc.load(&key, progress)),
            move |env, info| {
                if let Some(s) = js_sink {
                    s.deliver(env, 100);
                }
                Ok(to_info(info))
            },
        )
    }

    /// Unload a model. Generations already running on it finish first; its memory is
    /// freed when the last of them ends. Resolves `false` when it was not loaded.
    #[napi(
        ts_args_type = "modelKey: string",
        ts_return_type = "Promise<boolean>",
        catch_unwind
    )]
    pub fn unload_model<'e>(
        &self,
        env: &'e Env,
        model_key: Unknown,
    ) -> Result<PromiseRaw<'e, bool>> {
        match read_key(&model_key, "modelKey") {
            Ok(key) => {
                let svc = self.svc;
                promise(
                    env,
                    blocking(move || Ok(svc.loader().unload(&key))),
                    |_, b| Ok(b),
                )
            }
            Err(e) => rejected(env, e),
        }
    }

    /// Refresh a model's recency for LRU eviction. `false` when it is not loaded.
    #[napi(catch_unwind)]
    // napi hands JS arguments over as owned values.
    #[allow(clippy::needless_pass_by_value)]
    pub fn mark_model_used(&self, model_key: String) -> bool {
        self.svc.loader().mark_used(&model_key)
    }

    #[napi(catch_unwind)]
    pub fn get_stats(&self) -> ModelLoaderStats {
        let s = self.svc.loader().stats();
        ModelLoaderStats {
            loaded_models: s.loaded_models as u32,
            max_concurrent_models: s.max_concurrent_models as u32,
            loading: s.loading as u32,
            total_bytes: s.total_bytes as i64,
            models: s
                .models
                .into_iter()
                .map(|m| LoadedModelStats {
                    key: m.key,
                    path: m.path,
                    quantization: m.quantization,
                    bytes: m.bytes as i64,
                    last_used: m.last_used_ms,
                    in_use: m.in_use as u32,
                    loads: m.loads as i64,
                })
                .collect(),
        }
    }

    /// Generate text. `prompt` is a string (sent as one user message through the
    /// model's chat template unless `raw`) or an array of `{ role, content }`
    /// messages. The model is loaded first when needed.
    #[napi(
        ts_args_type = "modelKey: string, prompt: string | ChatMessage[], options?: GenerateOptions",
        ts_return_type = "Promise<GenerateResult>",
        catch_unwind
    )]
    pub fn generate<'e>(
        &self,
        env: &'e Env,
        model_key: Unknown,
        prompt: Unknown,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'e, GenerateResult>> {
        let prepared = (|| -> R<_> {
            Ok((
                read_key(&model_key, "modelKey")?,
                read_prompt(&prompt)?,
                generate_options(env, options)?,
            ))
        })();
        let (key, prompt, call) = match prepared {
            Ok(p) => p,
            Err(e) => return rejected(env, e),
        };
        let registration = super::env_guard::register(env, &call.cancel)?;
        let svc = self.svc;
        let fut = blocking(move || {
            let _registration = registration;
            let sink = call.tokens.clone();
            let mut on_text = |t: &str| {
                if let Some(s) = &sink {
                    s.send(t);
                }
            };
            let result = svc.generate(&key, &prompt, &call.params, &call.cancel, &mut on_text);
            if let Some(s) = &call.tokens {
                s.flush();
            }
            result
        });
        promise(env, fut, |_, g| Ok(to_result(g)))
    }

    /// Add or replace a model in the registry (process-wide).
    #[napi(
        ts_args_type = "key: string, descriptor: ModelDescriptor",
        catch_unwind
    )]
    // A method of the JS `ModelLoader`, though the registry is process-wide.
    #[allow(clippy::unused_self)]
    pub fn register_model(&self, env: Env, key: Unknown, descriptor: Unknown) -> Result<()> {
        let run = || -> R<()> {
            let key = read_key(&key, "key")?;
            let value: serde_json::Value = to_json(&descriptor)
                .map_err(|e| OrionError::InvalidOption(format!("descriptor: {}", e.reason)))?;
            let d: ModelDescriptor = serde_json::from_value(value)
                .map_err(|e| OrionError::InvalidOption(format!("descriptor for {key:?}: {e}")))?;
            registry::register(&key, d)
        };
        run().map_err(|e| js_error(&env, &e))
    }

    /// Every model in the registry.
    #[napi(catch_unwind)]
    pub fn list_models(&self, env: Env) -> Result<Vec<ModelListing>> {
        let models = registry::list().map_err(|e| js_error(&env, &e))?;
        Ok(models
            .into_iter()
            .map(|(key, d)| ModelListing {
                loaded: self.svc.loader().is_loaded(&key),
                key,
                name: d.name,
                kind: d.kind,
                quantizations: d.files.keys().cloned().collect(),
                context_length: d.context_length,
            })
            .collect())
    }
}

/// The quantization level, model limits, GPU layers, context size and threads chosen
/// for this machine, with the reasons.
#[napi(catch_unwind)]
pub fn get_optimization_strategy(env: Env) -> Result<OptimizationStrategy> {
    let s = crate::llm::strategy::detect().map_err(|e| js_error(&env, &e))?;
    Ok(OptimizationStrategy {
        quantization: s.quantization.to_string(),
        max_concurrent_models: s.max_concurrent_models as u32,
        gpu_layers: s.gpu_layers,
        context_size: s.context_size,
        threads: s.threads as u32,
        total_memory: s.total_memory as i64,
        available_memory: s.available_memory as i64,
        cpu_features: s.cpu_features.into_iter().map(String::from).collect(),
        gpus: s
            .gpus
            .into_iter()
            .map(|g| GpuInfo {
                name: g.name,
                backend: g.backend,
                free_bytes: g.free_bytes as i64,
            })
            .collect(),
        reasons: s.reasons,
    })
}

/// The app's naming: `applyQuantization('Mistral-7B-Instruct-v0.2', 'q4')` is
/// `'Mistral-7B-Instruct-v0.2-q4f16_1-MLC'`. `loadModel` accepts such ids.
#[napi(
    ts_args_type = "modelId: string, level: QuantizationLevel",
    catch_unwind
)]
pub fn apply_quantization(env: Env, model_id: Unknown, level: Unknown) -> Result<String> {
    let run = || -> R<String> {
        let id = read_key(&model_id, "modelId")?;
        if level.get_type().ok() != Some(ValueType::String) {
            return Err(OrionError::InvalidOption(format!(
                "level must be a string, got {}",
                describe(&level)
            )));
        }
        let level: String =
            cast_checked(&level).map_err(|e| OrionError::InvalidOption(e.reason.clone()))?;
        quant::apply_quantization(&id, &level)
    };
    run().map_err(|e| js_error(&env, &e))
}

/// `QUANTIZATION_LEVELS`: each level's MLC suffix, GGUF file types and bits per weight.
#[napi(module_exports)]
pub fn module_exports(mut exports: Object, env: Env) -> Result<()> {
    let mut levels = Object::new(&env)?;
    for l in quant::LEVELS {
        let mut o = Object::new(&env)?;
        o.set("name", l.name)?;
        o.set("mlc", l.mlc)?;
        o.set("gguf", l.gguf.to_vec())?;
        o.set("bitsPerWeight", f64::from(l.bits))?;
        o.freeze()?;
        levels.set(l.name, o)?;
    }
    levels.freeze()?;
    exports.set("QUANTIZATION_LEVELS", levels)?;
    Ok(())
}

enum StreamEvent {
    Text(String),
    Done(R<Generation>),
}

/// One step of a `TokenStream`, as async iterators return them.
#[napi(object)]
pub struct StreamStep {
    pub done: bool,
    pub value: Option<String>,
}

/// Generated text as an async iterator: `for await (const text of stream)`. Leaving
/// the loop early (`break`) stops the generation. After the last step, `result`
/// holds the full result.
#[napi]
pub struct TokenStream {
    events: Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<StreamEvent>>>,
    cancel: Arc<AtomicBool>,
    result: Arc<parking_lot::Mutex<Option<Generation>>>,
}

/// A stream the program dropped without finishing it (no `break`, no `return()`) stops
/// its generation when it is garbage-collected, so the model's lease is not held for
/// nothing until `maxTokens`.
impl Drop for TokenStream {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

#[napi]
impl TokenStream {
    /// The next piece of text; `{ done: true }` at the end. Rejects with the
    /// generation's coded error (`ABORTED`, `UNKNOWN_MODEL`, ...).
    #[napi(
        ts_return_type = "Promise<IteratorResult<string, undefined>>",
        catch_unwind
    )]
    pub fn next<'e>(&self, env: &'e Env) -> Result<PromiseRaw<'e, StreamStep>> {
        let (events, result) = (self.events.clone(), self.result.clone());
        let fut = async move {
            match events.lock().await.recv().await {
                Some(StreamEvent::Text(t)) => Ok(StreamStep {
                    done: false,
                    value: Some(t),
                }),
                Some(StreamEvent::Done(Ok(g))) => {
                    *result.lock() = Some(g);
                    Ok(StreamStep {
                        done: true,
                        value: None,
                    })
                }
                Some(StreamEvent::Done(Err(e))) => Err(e),
                None => Ok(StreamStep {
                    done: true,
                    value: None,
                }),
            }
        };
        promise(env, fut, |_, s| Ok(s))
    }

    /// Stop early (what `break` in `for await` calls).
    #[napi(
        js_name = "return",
        ts_return_type = "Promise<IteratorResult<string, undefined>>",
        catch_unwind
    )]
    pub fn finish<'e>(&self, env: &'e Env) -> Result<PromiseRaw<'e, StreamStep>> {
        self.cancel.store(true, Ordering::Relaxed);
        promise(
            env,
            async {
                Ok(StreamStep {
                    done: true,
                    value: None,
                })
            },
            |_, s| Ok(s),
        )
    }

    /// The whole result, once the stream has ended.
    #[napi(getter, catch_unwind)]
    pub fn result(&self) -> Option<GenerateResult> {
        self.result.lock().clone().map(to_result)
    }
}

#[napi]
impl ModelLoader {
    /// `generate` as an async iterator of text pieces (`for await`). Same options,
    /// except `onToken`.
    #[napi(
        ts_args_type = "modelKey: string, prompt: string | ChatMessage[], options?: Omit<GenerateOptions, 'onToken'>",
        catch_unwind
    )]
    pub fn generate_stream(
        &self,
        env: Env,
        model_key: Unknown,
        prompt: Unknown,
        options: Option<Unknown>,
    ) -> Result<TokenStream> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let prepared = (|| -> R<_> {
            let key = read_key(&model_key, "modelKey")?;
            let prompt = read_prompt(&prompt)?;
            let call = generate_options(&env, options)?;
            if call.tokens.is_some() {
                return Err(OrionError::InvalidOption(
                    "generateStream yields the text itself: drop the onToken option".into(),
                ));
            }
            Ok((key, prompt, call))
        })();
        // The caller's signal and leaving the loop early set the same flag.
        let cancel = prepared.as_ref().map_or_else(
            |_| Arc::new(AtomicBool::new(false)),
            |(_, _, c)| c.cancel.clone(),
        );
        let stream = TokenStream {
            events: Arc::new(tokio::sync::Mutex::new(rx)),
            cancel,
            result: Arc::new(parking_lot::Mutex::new(None)),
        };
        match prepared {
            // Reported by the first next(), like every other failure.
            Err(e) => drop(tx.send(StreamEvent::Done(Err(e)))),
            Ok((key, prompt, call)) => match crate::runtime::begin_work() {
                Err(e) => drop(tx.send(StreamEvent::Done(Err(e)))),
                Ok(work) => {
                    let svc = self.svc;
                    let registration = super::env_guard::register(&env, &call.cancel)?;
                    napi::bindgen_prelude::spawn_blocking(move || {
                        let _work = work;
                        let _registration = registration;
                        let mut on_text = |t: &str| drop(tx.send(StreamEvent::Text(t.to_string())));
                        let result =
                            svc.generate(&key, &prompt, &call.params, &call.cancel, &mut on_text);
                        let _ = tx.send(StreamEvent::Done(result));
                    });
                }
            },
        }
        Ok(stream)
    }
}
