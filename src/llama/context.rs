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
}

impl ModelContext {
    /// A new context of `n_ctx` tokens on `model`, computing with `threads` threads;
    /// `on_cpu`: the model's layers are all on the CPU.
    pub(crate) fn new(
        model: &Arc<LlamaModel>,
        n_ctx: u32,
        threads: i32,
        on_cpu: bool,
    ) -> Result<Self> {
        let ctx = backend::new_context(model, n_ctx, threads)?;
        // SAFETY: `ctx` borrows the model inside `model`'s allocation, which never moves
        // and which this value keeps alive with its own `Arc`; `drop` frees the context
        // before that `Arc` is released, and the `'static` context never leaves `self`
        // (see the type's doc).
        let ctx = unsafe { std::mem::transmute::<LlamaContext<'_>, LlamaContext<'static>>(ctx) };
        Ok(Self {
            ctx: ManuallyDrop::new(ctx),
            model: model.clone(),
            cpu_threads: on_cpu.then(|| usize::try_from(threads).unwrap_or(1)),
        })
    }

    /// A context that computes pooled embeddings ([`backend::new_embedding_context`]).
    pub(crate) fn for_embeddings(
        model: &Arc<LlamaModel>,
        n_ctx: u32,
        n_seq: u32,
        threads: i32,
        on_cpu: bool,
    ) -> Result<Self> {
        let ctx = backend::new_embedding_context(model, n_ctx, n_seq, threads)?;
        // SAFETY: as in `new`.
        let ctx = unsafe { std::mem::transmute::<LlamaContext<'_>, LlamaContext<'static>>(ctx) };
        Ok(Self {
            ctx: ManuallyDrop::new(ctx),
            model: model.clone(),
            cpu_threads: on_cpu.then(|| usize::try_from(threads).unwrap_or(1)),
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
        let _turn = self.cpu_threads.map(super::gate::enter);
        self.ctx.decode(batch)
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
