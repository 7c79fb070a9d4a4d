//! A llama.cpp context that owns a share of its model, so that it cannot outlive the
//! model by construction: kept contexts move between requests and threads (the prefix
//! cache, the settling thread) and none of them has to be dropped in the right order.

use super::backend;
use crate::error::{OrionError, Result};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::timing::LlamaTimings;
use std::mem::ManuallyDrop;
use std::sync::Arc;

/// A context of the model it holds. The context is only reachable through `&self`
/// (read) or the methods below (write): no `&mut LlamaContext` escapes, so it can never
/// be swapped into a value holding another model.
pub(crate) struct ModelContext {
    // Freed in `drop`, before `model` is released.
    ctx: ManuallyDrop<LlamaContext<'static>>,
    model: Arc<LlamaModel>,
    /// Its threads, when it computes on the CPU: its decodes take turns for them (see
    /// `gate`). `None` for a model on a GPU device.
    cpu_threads: Option<usize>,
    /// llama.cpp's context, to compute with fewer threads while other processes keep
    /// cores busy (`gate::enter`); `None` where it cannot be had (see `raw_context`).
    raw: Option<RawContext>,
    /// The threads its computations use now.
    threads_now: i32,
    /// The device memory its KV cache holds, when the model has layers on a GPU device:
    /// given back after the context is freed (`drop`, then the fields).
    _device: Option<super::fit::ContextHold>,
}

/// llama.cpp's context inside a `LlamaContext`, for `llama_set_n_threads`, which
/// llama-cpp-2 does not wrap.
struct RawContext(std::ptr::NonNull<llama_cpp_sys_2::llama_context>);

// SAFETY: it is used only by the `ModelContext` that owns the `LlamaContext` it points
// into, through `&mut self`, as that context itself is (which is `Send`).
unsafe impl Send for RawContext {}

/// The pointer to `ctx`'s llama.cpp context. llama-cpp-2 (pinned, `=0.1.160`) keeps it
/// private and shows it only in its Debug, `LlamaContext { context: 0x… }` (the pointer
/// as `NonNull` prints it); read from there, and taken only when llama.cpp, asked
/// through it, gives the context's known size and threads. `None` otherwise: the
/// context then always computes with all its threads.
fn raw_context(ctx: &LlamaContext<'_>, threads: i32) -> Option<RawContext> {
    let shown = format!("{ctx:?}");
    let hex = shown
        .strip_prefix("LlamaContext { context: 0x")?
        .strip_suffix(" }")?;
    let address = usize::from_str_radix(hex, 16).ok()?;
    let ptr = std::ptr::NonNull::new(address as *mut llama_cpp_sys_2::llama_context)?;
    // SAFETY: `ptr` is the context llama-cpp-2's Debug shows, which `ctx` keeps alive.
    let (n_ctx, n_threads) = unsafe {
        (
            llama_cpp_sys_2::llama_n_ctx(ptr.as_ptr()),
            llama_cpp_sys_2::llama_n_threads(ptr.as_ptr()),
        )
    };
    (n_ctx == ctx.n_ctx() && n_threads == threads).then_some(RawContext(ptr))
}

impl ModelContext {
    /// A new context of `n_ctx` tokens on `model`, computing with `threads` threads;
    /// `on_cpu`: the model's layers are all on the CPU; `device`: what its KV cache holds
    /// on the GPU device otherwise.
    pub(crate) fn new(
        model: &Arc<LlamaModel>,
        n_ctx: u32,
        threads: i32,
        on_cpu: bool,
        device: Option<super::fit::ContextHold>,
    ) -> Result<Self> {
        let ctx = backend::new_context(model, n_ctx, threads)?;
        // SAFETY: `ctx` borrows the model inside `model`'s allocation, which never moves
        // and which this value keeps alive with its own `Arc`; `drop` frees the context
        // before that `Arc` is released, and the `'static` context never leaves `self`
        // (see the type's doc).
        let ctx = unsafe { std::mem::transmute::<LlamaContext<'_>, LlamaContext<'static>>(ctx) };
        let raw = on_cpu.then(|| raw_context(&ctx, threads)).flatten();
        Ok(Self {
            ctx: ManuallyDrop::new(ctx),
            model: model.clone(),
            cpu_threads: on_cpu.then(|| usize::try_from(threads).unwrap_or(1)),
            raw,
            threads_now: threads,
            _device: device,
        })
    }

    /// A context that computes pooled embeddings ([`backend::new_embedding_context`]).
    pub(crate) fn for_embeddings(
        model: &Arc<LlamaModel>,
        n_ctx: u32,
        n_seq: u32,
        threads: i32,
        on_cpu: bool,
        flash_attention: bool,
    ) -> Result<Self> {
        let ctx = backend::new_embedding_context(model, n_ctx, n_seq, threads, flash_attention)?;
        // SAFETY: as in `new`.
        let ctx = unsafe { std::mem::transmute::<LlamaContext<'_>, LlamaContext<'static>>(ctx) };
        let raw = on_cpu.then(|| raw_context(&ctx, threads)).flatten();
        Ok(Self {
            ctx: ManuallyDrop::new(ctx),
            model: model.clone(),
            cpu_threads: on_cpu.then(|| usize::try_from(threads).unwrap_or(1)),
            raw,
            threads_now: threads,
            // Not counted: an encoder's context has no KV cache, a causal embedding
            // model's is small (its batches' tokens), within the headroom its load kept.
            _device: None,
        })
    }

    /// Forget every sequence's cache (a causal embedding model's, between batches).
    pub(crate) fn clear(&mut self) {
        self.ctx.clear_kv_cache();
    }

    /// The context, to read from (logits, samplers), for as long as `self` is borrowed.
    pub(crate) fn get(&self) -> &LlamaContext<'_> {
        &self.ctx
    }

    /// Whether this is a context of `model`.
    pub(crate) fn is_of(&self, model: &Arc<LlamaModel>) -> bool {
        Arc::ptr_eq(&self.model, model)
    }

    pub(crate) fn n_ctx(&self) -> u32 {
        self.ctx.n_ctx()
    }

    pub(crate) fn n_batch(&self) -> u32 {
        self.ctx.n_batch()
    }

    pub(crate) fn timings(&mut self) -> LlamaTimings {
        self.ctx.timings()
    }

    /// Evaluate `batch`.
    pub(crate) fn decode(
        &mut self,
        batch: &mut LlamaBatch<'_>,
    ) -> std::result::Result<(), llama_cpp_2::DecodeError> {
        // Counted, so that the process's exit waits for the step (see `lifecycle`).
        let _step = crate::lifecycle::computing();
        // After the step is counted: the exit waits for a step waiting for its turn too.
        let turn = self
            .cpu_threads
            .map(|t| super::gate::enter(t, self.raw.is_some()));
        if let (Some(turn), Some(raw)) = (&turn, &self.raw) {
            let n = i32::try_from(turn.threads()).unwrap_or(i32::MAX);
            if n != self.threads_now {
                // SAFETY: `raw` is this context's (`raw_context`), alive while `self` is.
                unsafe { llama_cpp_sys_2::llama_set_n_threads(raw.0.as_ptr(), n, n) };
                self.threads_now = n;
            }
        }
        self.ctx.decode(batch)
    }

    /// The threads its last computation used, when it computes on the CPU: fewer than it
    /// was made with while other processes kept cores busy.
    pub(crate) fn threads(&self) -> Option<usize> {
        self.cpu_threads
            .map(|_| usize::try_from(self.threads_now).unwrap_or(1))
    }

    /// Drop the KV cache of sequence 0 from position `from` on.
    pub(crate) fn truncate_cache(&mut self, from: u32) -> Result<()> {
        match self.ctx.clear_kv_cache_seq(Some(0), Some(from), None) {
            Ok(true) => Ok(()),
            _ => Err(OrionError::Internal(
                "could not drop a kept context's cache past the shared prefix".into(),
            )),
        }
    }
}

impl Drop for ModelContext {
    fn drop(&mut self) {
        // SAFETY: dropped once, here; `model` (a field, released after this) still holds
        // the model the context borrows.
        unsafe { ManuallyDrop::drop(&mut self.ctx) }
    }
}
