//! Contexts kept after a generation, with the tokens their KV cache holds, so that the
//! next request sharing a prefix with one of them (the next turn of a chat: the same
//! history plus a new message) evaluates only the tokens after the shared prefix.
//!
//! Each loaded model ([`ChatModel`]) has its own cache of at most [`CAPACITY`] contexts.
//! A generation takes the context whose tokens share the longest prefix with its prompt
//! out of the cache (so no two generations ever use one context), drops the KV cache past
//! that prefix, evaluates the rest, and puts the context back afterwards with the tokens
//! it now holds. The contexts are freed with their model, by the memory monitor under
//! pressure, and when idle for [`IDLE`].

use super::context::ModelContext;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Contexts kept per model: two conversations alternating keep their prefixes.
pub(crate) const CAPACITY: usize = 2;
/// A context unused this long is freed by the keep-alive sweep.
pub(crate) const IDLE: Duration = Duration::from_secs(300);
/// Longest wait of [`PrefixCache::clear`] for contexts still settling to stop: a few
/// evaluation steps ([`super::generate::PROMPT_STEP`] tokens each, the first of them
/// taken whatever the stop says) on a slow device.
const SETTLED_WAIT: Duration = Duration::from_secs(10);

/// A context and the tokens in its KV cache (positions `0..tokens.len()` of sequence 0).
pub(crate) struct Cached {
    pub(crate) ctx: ModelContext,
    pub(crate) tokens: Vec<LlamaToken>,
    used: Instant,
}

impl Cached {
    pub(crate) fn new(ctx: ModelContext, tokens: Vec<LlamaToken>) -> Self {
        Self {
            ctx,
            tokens,
            used: Instant::now(),
        }
    }
}

/// A context being settled (see `generate::settle`) after its answer was delivered, on
/// a thread of its own: registered before the answer resolves, so that the next request
/// sees it.
pub(crate) struct Settling {
    /// The tokens its cache will hold once settled.
    tokens: Vec<LlamaToken>,
    n_ctx: u32,
    /// Set to stop at the next evaluation step: the next request takes the context over,
    /// or it is being freed.
    pub(crate) stop: AtomicBool,
    /// Set when its context should be freed rather than kept (model unloaded, memory
    /// pressure).
    discard: AtomicBool,
    /// Set when it ended kept in the cache (not freed).
    kept: AtomicBool,
    /// Whether it has ended (its context kept or freed).
    done: Mutex<bool>,
    ended: Condvar,
}

/// A model's kept contexts.
#[derive(Default)]
pub(crate) struct PrefixCache {
    slots: Mutex<Vec<Cached>>,
    settling: Mutex<Vec<Arc<Settling>>>,
}

/// How many leading tokens `a` and `b` share.
pub(crate) fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PrefixCache {
    /// The kept context sharing the longest prefix with `tokens` among those of at least
    /// `n_ctx` tokens, taken out of the cache, with that prefix's length; `None` when no
    /// context is big enough or none shares a token.
    ///
    /// A context still settling after its answer that would serve `tokens` better than any
    /// kept one is stopped at its next evaluation step and taken over: its cache is
    /// whole up to where it stopped (a step boundary), and this request evaluates the rest
    /// of its prompt from there, in the same steps as settling would have. The wait is one
    /// step at most ([`super::generate::PROMPT_STEP`] tokens), never the whole settling.
    pub(crate) fn take(&self, tokens: &[LlamaToken], n_ctx: u32) -> Option<(Cached, usize)> {
        let kept_best = |slots: &[Cached]| {
            slots
                .iter()
                .filter(|c| c.ctx.n_ctx() >= n_ctx)
                .map(|c| common_prefix(&c.tokens, tokens))
                .max()
                .unwrap_or(0)
        };
        let better = {
            let settling = self.settling.lock();
            let best = kept_best(&self.slots.lock());
            settling
                .iter()
                .filter(|s| s.n_ctx >= n_ctx)
                .map(|s| (common_prefix(&s.tokens, tokens), s))
                .filter(|&(n, _)| n > best)
                .max_by_key(|&(n, _)| n)
                .map(|(_, s)| s.clone())
        };
        if let Some(s) = better {
            s.stop.store(true, Ordering::SeqCst);
            let mut done = s.done.lock();
            while !*done {
                s.ended.wait(&mut done);
            }
        }
        let mut slots = self.slots.lock();
        let (i, common) = slots
            .iter()
            .enumerate()
            .filter(|(_, c)| c.ctx.n_ctx() >= n_ctx)
            .map(|(i, c)| (i, common_prefix(&c.tokens, tokens)))
            .max_by_key(|&(_, n)| n)
            .filter(|&(_, n)| n > 0)?;
        Some((slots.swap_remove(i), common))
    }

    /// Keep `c` for later, freeing the least recently used context beyond [`CAPACITY`].
    pub(crate) fn put(&self, mut c: Cached) {
        c.used = Instant::now();
        let mut slots = self.slots.lock();
        slots.push(c);
        if slots.len() > CAPACITY {
            if let Some(oldest) = (0..slots.len()).min_by_key(|&i| slots[i].used) {
                let gone = slots.swap_remove(oldest);
                drop(slots);
                drop(gone);
            }
        }
    }

    /// Register a context about to be settled, whose cache will hold `tokens`.
    pub(crate) fn begin_settling(&self, tokens: Vec<LlamaToken>, n_ctx: u32) -> Arc<Settling> {
        let s = Arc::new(Settling {
            tokens,
            n_ctx,
            stop: AtomicBool::new(false),
            discard: AtomicBool::new(false),
            kept: AtomicBool::new(false),
            done: Mutex::new(false),
            ended: Condvar::new(),
        });
        self.settling.lock().push(s.clone());
        s
    }

    /// End `s`: keep `c` (the context, with the tokens its cache holds now) unless it
    /// failed or was to be discarded, and wake whoever waits to take it over.
    pub(crate) fn end_settling(&self, s: &Arc<Settling>, c: Option<Cached>) {
        let c = c.filter(|c| !s.discard.load(Ordering::SeqCst) && !c.tokens.is_empty());
        // Kept before it leaves the settling list: a request looking at both never misses it.
        if let Some(c) = c {
            s.kept.store(true, Ordering::SeqCst);
            self.put(c);
        }
        self.settling.lock().retain(|x| !Arc::ptr_eq(x, s));
        *s.done.lock() = true;
        s.ended.notify_all();
    }

    /// Free every kept context (or those idle for at least `idle`); returns how many.
    /// Without `idle`, contexts still settling are stopped and freed too, and this waits
    /// (up to [`SETTLED_WAIT`]) until they are: whoever frees them for memory (a load
    /// short of device memory, the monitor, an unload) reads what is free right after.
    pub(crate) fn clear(&self, idle: Option<Duration>) -> usize {
        self.clear_within(idle, SETTLED_WAIT)
    }

    /// Tell the contexts still settling to stop and be freed, without waiting.
    pub(crate) fn stop_settling(&self) -> Vec<Arc<Settling>> {
        let settling = self.settling.lock();
        for s in settling.iter() {
            s.discard.store(true, Ordering::SeqCst);
            s.stop.store(true, Ordering::SeqCst);
        }
        settling.clone()
    }

    fn clear_within(&self, idle: Option<Duration>, wait: Duration) -> usize {
        let stopped = if idle.is_none() {
            self.stop_settling()
        } else {
            Vec::new()
        };
        // A settling context stops at the end of its evaluation step and is freed before
        // it counts as ended (`end_settling`). One that takes longer is left to end on
        // its own thread, uncounted. Waited for before the kept ones are taken: one that
        // ended just before it was told to stop was kept, and goes with them.
        let deadline = Instant::now() + wait;
        let ended = stopped
            .iter()
            .filter(|s| {
                let mut done = s.done.lock();
                while !*done {
                    if s.ended.wait_until(&mut done, deadline).timed_out() {
                        break;
                    }
                }
                *done && !s.kept.load(Ordering::SeqCst)
            })
            .count();
        let min_idle = idle.unwrap_or(Duration::ZERO);
        let mut slots = self.slots.lock();
        let (gone, keep): (Vec<Cached>, Vec<Cached>) =
            slots.drain(..).partition(|c| c.used.elapsed() >= min_idle);
        *slots = keep;
        // Freed outside the lock: freeing a context's KV cache is not instant.
        drop(slots);
        gone.len() + ended
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.lock().len()
    }
}

/// A loaded model with its kept contexts. Each context holds a share of the model
/// ([`ModelContext`]), so the model is freed with the last of them, whoever drops it.
pub(crate) struct ChatModel {
    /// Shared with the settling thread of a context being kept.
    pub(crate) contexts: Arc<PrefixCache>,
    /// The tokens its chat template opens a user message with after an answer (see
    /// `generate::user_opening`), worked out on first use.
    pub(crate) user_opening: std::sync::OnceLock<Vec<LlamaToken>>,
    /// Where its layers went, when some are on a GPU device.
    pub(crate) placed: Option<crate::engine::llm::Placed>,
    /// Its chat template compiled for Jinja rendering (tool calls), the default one and
    /// the one for tools (`tool_use`, when it has one), each on first use.
    templates: [std::sync::OnceLock<std::result::Result<Arc<super::chat::Jinja>, String>>; 2],
    /// What it is, from its metadata (`facts`), on first use.
    pub(crate) facts: std::sync::OnceLock<crate::engine::llm::ModelFacts>,
    /// Its vocabulary as llguidance reads it, built on the first schema given to
    /// llguidance (it walks every token: tens of milliseconds).
    guidance: std::sync::OnceLock<std::result::Result<Arc<llguidance::ParserFactory>, String>>,
    model: Arc<LlamaModel>,
    /// The device memory it holds, given back when it is dropped. After `model` (fields
    /// drop in order): the model's buffers are freed first.
    _share: Option<super::fit::DeviceShare>,
    /// What each of its contexts takes on the device, when layers are there.
    context_kv: Option<super::fit::ContextKv>,
    /// Set while one of its contexts has the KV room its own share holds.
    reserve_taken: Arc<std::sync::atomic::AtomicBool>,
}

impl ChatModel {
    pub(crate) fn new(
        model: LlamaModel,
        placed: Option<crate::engine::llm::Placed>,
        share: Option<super::fit::DeviceShare>,
        context_kv: Option<super::fit::ContextKv>,
    ) -> Self {
        Self {
            contexts: Arc::default(),
            user_opening: std::sync::OnceLock::new(),
            placed,
            templates: Default::default(),
            facts: std::sync::OnceLock::new(),
            guidance: std::sync::OnceLock::new(),
            model: Arc::new(model),
            _share: share,
            context_kv,
            reserve_taken: Arc::default(),
        }
    }

    /// A new context of this model (see [`ModelContext::new`]). On a GPU device it takes
    /// the KV room the model holds for one context, else holds its own bytes there; when
    /// those would not fit beside what is held, the contexts this model keeps for later
    /// turns are freed first (they cost only those turns' prompt evaluation).
    pub(crate) fn new_context(
        &self,
        n_ctx: u32,
        threads: i32,
    ) -> crate::error::Result<ModelContext> {
        use super::fit::ContextHold;
        let hold = self.context_kv.map(|kv| {
            let bytes = kv.bytes(n_ctx);
            if let Some(r) = ContextHold::reserve(&self.reserve_taken, &kv, bytes) {
                return r;
            }
            let room = super::backend::device(kv.device).map_or(0, |d| {
                super::fit::free_for_models(
                    d.free_bytes,
                    d.total_bytes,
                    super::fit::held(kv.device),
                )
            });
            if !kv.fits(n_ctx, room) {
                // Freed now (those still settling once their step ends), the reserve with them.
                self.contexts.clear(None);
                if let Some(r) = ContextHold::reserve(&self.reserve_taken, &kv, bytes) {
                    return r;
                }
            }
            ContextHold::Share(super::fit::DeviceShare::take(kv.device, bytes))
        });
        ModelContext::new(&self.model, n_ctx, threads, self.placed.is_none(), hold).map_err(|e| {
            // On a GPU, the likely cause: the device had no room left for the context's
            // KV cache and compute buffers (another process took it since the load).
            match (&self.placed, e) {
                (Some(p), crate::error::OrionError::InferenceFailed(m)) => {
                    crate::error::OrionError::InferenceFailed(format!(
                        "{m} ({} of the model's {} layers are on {}: if its memory is short, \
                         load the model with fewer gpuLayers or a smaller contextSize)",
                        p.gpu_layers.min(p.layers),
                        p.layers,
                        p.device
                    ))
                }
                (_, e) => e,
            }
        })
    }

    /// Its chat template compiled for Jinja rendering (see `chat`), on first use: the one
    /// for tools (`tool_use`, where it has one) when `for_tools`.
    pub(crate) fn jinja(&self, for_tools: bool) -> crate::error::Result<Arc<super::chat::Jinja>> {
        self.templates[usize::from(for_tools)]
            .get_or_init(|| super::chat::Jinja::new(&self.model, for_tools).map(Arc::new))
            .clone()
            .map_err(|e| {
                crate::error::OrionError::InvalidInput(format!(
                    "the model's chat template cannot render tool calls: {e}"
                ))
            })
    }

    /// llguidance's parser factory for this model's vocabulary, on first use.
    pub(crate) fn guidance(&self) -> crate::error::Result<Arc<llguidance::ParserFactory>> {
        self.guidance
            .get_or_init(|| {
                let vocab = self.model.vocab();
                if vocab.eot().0 < 0 && vocab.eos().0 < 0 {
                    return Err("the model has no end-of-text token".into());
                }
                // Its vocabulary walk asserts what it expects of a vocabulary: an odd one
                // is an error of this model, not a panic of the generating thread.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let env = llama_cpp_2::sampling::LlamaSampler::llguidance_tok_env(&self.model);
                    let mut factory =
                        llguidance::ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
                    // Its warnings go to the error's message, not to the app's stderr.
                    factory.quiet();
                    Ok(Arc::new(factory))
                }))
                .unwrap_or_else(|_| Err("its vocabulary could not be read".into()))
            })
            .clone()
            .map_err(|e| {
                crate::error::OrionError::SchemaUnsupported(format!(
                    "llguidance cannot work with this model ({e}): use schemaEngine: 'llama.cpp'"
                ))
            })
    }

    /// Whether `ctx` is one of this model's contexts.
    pub(crate) fn owns(&self, ctx: &ModelContext) -> bool {
        ctx.is_of(&self.model)
    }
}

impl std::ops::Deref for ChatModel {
    type Target = LlamaModel;
    fn deref(&self) -> &LlamaModel {
        &self.model
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefixes_are_counted_token_by_token() {
        let t = |v: &[i32]| v.iter().map(|&x| LlamaToken::new(x)).collect::<Vec<_>>();
        assert_eq!(common_prefix(&t(&[1, 2, 3]), &t(&[1, 2, 4])), 2);
        assert_eq!(common_prefix(&t(&[1, 2]), &t(&[1, 2, 3])), 2);
        assert_eq!(common_prefix(&t(&[5]), &t(&[1])), 0);
        assert_eq!(common_prefix(&t(&[]), &t(&[1])), 0);
    }

    #[test]
    fn clearing_waits_for_settling_contexts_to_stop_and_counts_them_freed() {
        let cache = Arc::new(PrefixCache::default());
        let s = cache.begin_settling(vec![LlamaToken::new(1)], 64);
        // A settling thread: its step ends a while after the stop, then it is freed.
        let settler = {
            let (cache, s) = (cache.clone(), s.clone());
            std::thread::spawn(move || {
                while !s.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                std::thread::sleep(Duration::from_millis(100));
                cache.end_settling(&s, None);
            })
        };
        // An idle sweep leaves it settling.
        assert_eq!(cache.clear(Some(IDLE)), 0);
        assert!(!s.stop.load(Ordering::SeqCst));
        assert_eq!(cache.clear(None), 1);
        assert!(
            *s.done.lock(),
            "clear returned before the context was freed"
        );
        assert!(s.discard.load(Ordering::SeqCst));
        settler.join().unwrap();
        // One that does not stop in time is left to end on its own, uncounted.
        let late = cache.begin_settling(vec![LlamaToken::new(1)], 64);
        let t = Instant::now();
        assert_eq!(cache.clear_within(None, Duration::from_millis(50)), 0);
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert!(late.stop.load(Ordering::SeqCst));
        cache.end_settling(&late, None);
        assert_eq!(cache.clear(None), 0);
    }
}
