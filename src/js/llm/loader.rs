//! The `ModelLoader` class, all of its methods in one `#[napi] impl`, and
//! `getModelLoader`.

use super::args::{
    count_options, generate_options, load_options, loader_options, read_descriptor, read_key,
    read_on_progress, read_prompt, read_text, read_token_ids, session_options, tokenize_options,
};
use super::session::ChatSession;
use super::stream::TokenStream;
use super::types::{DownloadInfo, GenerateResult, ModelInfo, ModelListing, ModelLoaderStats};
use super::R;
use crate::engine::llm::{TokenAnswer, TokenRequest};
use crate::error::OrionError;
use crate::js::{blocking, js_error, promise, rejected};
use crate::llm::loader::ProgressFn;
use crate::llm::LlmService;
use crate::runtime::llm_service;
use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

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
    let options = loader_options(options)?;
    let svc = llm_service()?;
    if let Some(config) = options.applied_to(|| svc.loader().config()) {
        svc.loader().set_config(config);
    }
    Ok(ModelLoader { svc })
}

/// What `loadModel` and `downloadModel` share: `(modelKey, onProgress?, options?)` read
/// on this thread, `work(key, progress, cancelled)` on the blocking pool, the progress
/// delivered on this thread and ending at exactly 100, the result converted by `to_js`.
fn with_progress<'e, T, V>(
    env: &'e Env,
    (model_key, on_progress, options): (Unknown, Option<Unknown>, Option<Unknown>),
    work: impl FnOnce(&str, crate::llm::LoadOverrides, Option<ProgressFn>, &dyn Fn() -> bool) -> R<T>
        + Send
        + 'static,
    to_js: impl FnOnce(T) -> V + 'static,
) -> Result<PromiseRaw<'e, V>>
where
    T: Send + 'static,
    V: ToNapiValue + 'static,
{
    let prepared = (|| -> R<_> {
        Ok((
            read_key(&model_key, "modelKey")?,
            read_on_progress(env, on_progress)?,
            load_options(options)?,
        ))
    })();
    let (key, sink, (cancel, overrides)) = match prepared {
        Ok(p) => p,
        Err(e) => return rejected(env, e),
    };
    let (js_sink, progress) = match sink {
        Some((s, p)) => (Some(s), Some(p)),
        None => (None, None),
    };
    promise(
        env,
        blocking(move || {
            work(&key, overrides, progress, &|| {
                cancel.load(std::sync::atomic::Ordering::Relaxed)
            })
        }),
        move |env, info| {
            if let Some(s) = js_sink {
                s.deliver(env, 100);
            }
            Ok(to_js(info))
        },
    )
}

#[napi]
impl ModelLoader {
    /// Load a model by registry key, MLC-style quantized id or GGUF path, off the JS
    /// thread. `onProgress(percent)` runs on this thread with integers that never
    /// decrease and end at exactly 100 (at once when already loaded). Concurrent loads
    /// of one key from any thread share one load. A model not on disk whose registry entry
    /// says where it is online is downloaded first (progress 0 to 90, the load 90 to 100).
    #[napi(
        ts_args_type = "modelKey: string, onProgress?: (percent: number) => void, options?: LoadOptions",
        ts_return_type = "Promise<ModelInfo>",
        catch_unwind
    )]
    pub fn load_model<'e>(
        &self,
        env: &'e Env,
        model_key: Unknown,
        on_progress: Option<Unknown>,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'e, ModelInfo>> {
        let svc = self.svc;
        with_progress(
            env,
            (model_key, on_progress, options),
            move |key, overrides, progress, cancel| svc.load(key, overrides, progress, cancel),
            ModelInfo::from,
        )
    }

    /// Download a model's file without loading it: what `loadModel` would fetch, into the
    /// same place, resumable and checked (size and sha256 when the registry knows them).
    /// `onProgress(percent)` runs from 0 to 100 over the download. A file already on disk
    /// is checked and reported with `downloaded: false`.
    #[napi(
        ts_args_type = "modelKey: string, onProgress?: (percent: number) => void, options?: LoadOptions",
        ts_return_type = "Promise<DownloadInfo>",
        catch_unwind
    )]
    pub fn download_model<'e>(
        &self,
        env: &'e Env,
        model_key: Unknown,
        on_progress: Option<Unknown>,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'e, DownloadInfo>> {
        let svc = self.svc;
        with_progress(
            env,
            (model_key, on_progress, options),
            move |key, _, progress, cancel| svc.download(key, progress, cancel),
            DownloadInfo::from,
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
                promise(env, blocking(move || Ok(svc.unload(&key))), |_, b| Ok(b))
            }
            Err(e) => rejected(env, e),
        }
    }

    /// Refresh a model's recency for LRU eviction. `false` when it is not loaded.
    #[napi(catch_unwind)]
    // napi hands JS arguments over as owned values.
    #[allow(clippy::needless_pass_by_value)]
    pub fn mark_model_used(&self, model_key: String) -> bool {
        self.svc.mark_used(&model_key)
    }

    #[napi(catch_unwind)]
    pub fn get_stats(&self) -> ModelLoaderStats {
        (self.svc.loader().stats(), self.svc.remote_stats()).into()
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
                generate_options(options)?,
            ))
        })();
        let (key, prompt, call) = match prepared {
            Ok(p) => p,
            Err(e) => return rejected(env, e),
        };
        let registration = crate::js::env_guard::register(env, &call.cancel)?;
        let svc = self.svc;
        let fut = blocking(move || {
            // Held until the generation ends (see `env_guard`).
            let guard = registration;
            let sink = call.tokens.clone();
            let mut on_text = |t: &str| {
                if let Some(s) = &sink {
                    s.send(t);
                }
            };
            let result = svc.generate(&key, &prompt, &call.params, &call.cancel, &mut on_text);
            if let Some(s) = &call.tokens {
                s.flush(guard.gone());
            }
            result
        });
        promise(env, fut, |_, g| Ok(GenerateResult::from(g)))
    }

    /// The tokens `generate(modelKey, prompt, { raw })` would evaluate for `prompt` (its
    /// `timings.promptTokens`): the chat template's included. The model is loaded first
    /// when needed; in-process models only.
    #[napi(
        ts_args_type = "modelKey: string, prompt: string | ChatMessage[], options?: CountTokensOptions",
        ts_return_type = "Promise<number>",
        catch_unwind
    )]
    pub fn count_tokens<'e>(
        &self,
        env: &'e Env,
        model_key: Unknown,
        prompt: Unknown,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'e, u32>> {
        let request = (|| -> R<_> {
            let (raw, tools) = count_options(options)?;
            Ok(TokenRequest::Count {
                prompt: read_prompt(&prompt)?,
                raw,
                tools,
            })
        })();
        self.tokens(env, &model_key, request, |a| match a {
            TokenAnswer::Count(n) => n,
            _ => 0,
        })
    }

    /// `text`'s token ids, without the start-of-text token the model's prompts begin
    /// with. The model is loaded first when needed; in-process models only.
    #[napi(
        ts_args_type = "modelKey: string, text: string, options?: TokenizeOptions",
        ts_return_type = "Promise<number[]>",
        catch_unwind
    )]
    pub fn tokenize<'e>(
        &self,
        env: &'e Env,
        model_key: Unknown,
        text: Unknown,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'e, Vec<u32>>> {
        let request = (|| -> R<_> {
            Ok(TokenRequest::Tokenize {
                text: read_text(&text)?,
                special: tokenize_options(options)?,
            })
        })();
        self.tokens(env, &model_key, request, |a| match a {
            TokenAnswer::Tokens(t) => t,
            _ => Vec::new(),
        })
    }

    /// The text of token ids (special tokens written out). An id that is not one of
    /// the model's tokens rejects with `INVALID_INPUT`.
    #[napi(
        ts_args_type = "modelKey: string, tokens: number[]",
        ts_return_type = "Promise<string>",
        catch_unwind
    )]
    pub fn detokenize<'e>(
        &self,
        env: &'e Env,
        model_key: Unknown,
        tokens: Unknown,
    ) -> Result<PromiseRaw<'e, String>> {
        let request = read_token_ids(&tokens).map(|ids| TokenRequest::Detokenize { ids });
        self.tokens(env, &model_key, request, |a| match a {
            TokenAnswer::Text(t) => t,
            _ => String::new(),
        })
    }

    /// A conversation with `modelKey`'s model (see `ChatSession`). Throws
    /// `UNKNOWN_MODEL` for a key the registry does not know, `INVALID_OPTION` for bad
    /// options; loads nothing until the first `send`.
    #[napi(
        ts_args_type = "modelKey: string, options?: ChatSessionOptions",
        catch_unwind
    )]
    pub fn create_chat_session(
        &self,
        env: Env,
        model_key: Unknown,
        options: Option<Unknown>,
    ) -> Result<ChatSession> {
        let run = || -> R<ChatSession> {
            let key = read_key(&model_key, "modelKey")?;
            let (system, context_shift) = session_options(options)?;
            self.svc.is_remote(&key)?;
            Ok(ChatSession::new(
                self.svc,
                crate::llm::session::ChatSession::new(key, system, context_shift),
            ))
        };
        run().map_err(|e| js_error(&env, &e))
    }

    /// Add or replace a model in the registry (process-wide).
    #[napi(
        ts_args_type = "key: string, descriptor: ModelDescriptor",
        catch_unwind
    )]
    pub fn register_model(&self, env: Env, key: Unknown, descriptor: Unknown) -> Result<()> {
        let run = || -> R<()> {
            let key = read_key(&key, "key")?;
            let d = read_descriptor(&key, &descriptor)?;
            self.svc.registry().register(&key, d)
        };
        run().map_err(|e| js_error(&env, &e))
    }

    /// Every model in the registry.
    #[napi(catch_unwind)]
    pub fn list_models(&self, env: Env) -> Result<Vec<ModelListing>> {
        let models = self.svc.registry().list().map_err(|e| js_error(&env, &e))?;
        Ok(models
            .into_iter()
            .map(|(key, d)| {
                let loaded = self.svc.is_loaded(&key);
                ModelListing::new(key, d, loaded)
            })
            .collect())
    }

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
        let prepared = (|| -> R<_> {
            let key = read_key(&model_key, "modelKey")?;
            let prompt = read_prompt(&prompt)?;
            let call = generate_options(options)?;
            if call.tokens.is_some() {
                return Err(OrionError::InvalidOption(
                    "generateStream yields the text itself: drop the onToken option".into(),
                ));
            }
            let svc = self.svc;
            let work: super::stream::StreamWork = Box::new(move |call, on_text| {
                svc.generate(&key, &prompt, &call.params, &call.cancel, on_text)
            });
            Ok((call, work))
        })();
        TokenStream::start(&env, prepared)
    }
}

impl ModelLoader {
    /// What the token calls share: the key read here, the question answered on the
    /// blocking pool, the answer converted by `to_js`.
    fn tokens<'e, V: ToNapiValue + 'static>(
        &self,
        env: &'e Env,
        model_key: &Unknown,
        request: R<TokenRequest>,
        to_js: fn(TokenAnswer) -> V,
    ) -> Result<PromiseRaw<'e, V>> {
        let (key, request) = match read_key(model_key, "modelKey").and_then(|k| Ok((k, request?))) {
            Ok(p) => p,
            Err(e) => return rejected(env, e),
        };
        let svc = self.svc;
        let never = std::sync::atomic::AtomicBool::new(false);
        promise(
            env,
            blocking(move || svc.tokens(&key, &request, &never)),
            move |_, a| Ok(to_js(a)),
        )
    }
}
