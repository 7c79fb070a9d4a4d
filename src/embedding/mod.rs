//! The shared embedding service: one model per process, one queue, one inference thread.

pub(crate) mod cache;
pub(crate) mod queue;

use crate::engine::embedding::{Embedder, EmbedderFactory, RemoteEngine};
use crate::error::{OrionError, Result};
use crate::onnx::model::clip_text;
use queue::{BatchConfig, Embedded, Queue, Slot, Vector};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// What computes a service's embeddings.
pub(crate) enum Backend {
    /// A model in this process, loaded on the service's thread.
    Local {
        factory: Box<dyn EmbedderFactory>,
        precision: crate::onnx::graph::Precision,
    },
    /// A GGUF model run by llama.cpp, loaded on the service's thread.
    Llama { factory: Box<dyn EmbedderFactory> },
    /// A remote engine, whose batches run on `runtime`.
    Remote {
        engine: Arc<dyn RemoteEngine>,
        runtime: tokio::runtime::Handle,
    },
}

/// How often a remote batch in flight checks that someone still waits for it.
const ABANDON_POLL: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Counters {
    model_loads: AtomicU64,
    requests: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    batches: AtomicU64,
    embedded: AtomicU64,
    /// Tokens the model read, and texts it cut, where the engine says.
    tokens: AtomicU64,
    cut: AtomicU64,
    /// The threads of the last batch, where the engine says (0: it does not).
    threads: AtomicUsize,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct EmbeddingStats {
    pub(crate) model: String,
    pub(crate) dimension: usize,
    pub(crate) model_loads: u64,
    /// Texts asked for, over all calls and threads.
    pub(crate) requests: u64,
    pub(crate) cache_hits: u64,
    pub(crate) cache_misses: u64,
    pub(crate) cache_bytes: usize,
    pub(crate) cache_entries: usize,
    pub(crate) cache_capacity_bytes: usize,
    /// Model calls made.
    pub(crate) batches: u64,
    /// Texts the model embedded per call, on average.
    pub(crate) mean_batch_size: f64,
    pub(crate) queue_depth: usize,
    /// The servers of a remote service.
    pub(crate) endpoints: Option<Vec<crate::engine::EndpointStats>>,
    /// A local model's precision.
    pub(crate) precision: Option<crate::onnx::graph::Precision>,
    /// With [`graph::Precision::Int8`], how its products take their weights on this CPU.
    pub(crate) int8_weights: Option<crate::onnx::graph::Int8Weights>,
    /// How long texts waited in the queue for their batch, on average.
    pub(crate) mean_queue_wait: Duration,
    /// What computes the vectors: `onnx` (ONNX Runtime), `llama` (llama.cpp, a GGUF
    /// model) or `remote`.
    pub(crate) engine: &'static str,
    /// The model's family's name, when known.
    pub(crate) family: Option<&'static str>,
    /// Tokens the model read for the texts it embedded (special tokens included), and
    /// texts it cut to its length; 0 for a remote service.
    pub(crate) tokens: u64,
    pub(crate) truncated: u64,
    /// The threads the last batch computed with, where the engine chooses them per batch.
    pub(crate) threads: Option<usize>,
}

pub(crate) struct EmbeddingService {
    model: String,
    queue: Arc<Queue>,
    counters: Arc<Counters>,
    dimension: Arc<AtomicUsize>,
    /// The inference thread, joined by [`EmbeddingService::join`].
    thread: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Whether that thread is inside the model (loading it or running a batch).
    busy: Arc<std::sync::atomic::AtomicBool>,
    remote: Option<Arc<dyn RemoteEngine>>,
    /// A local model's precision.
    precision: Option<crate::onnx::graph::Precision>,
    /// What computes the vectors: `onnx`, `llama` or `remote`.
    engine: &'static str,
    /// The model's family, when its name says it: prefixes and shorter vectors.
    family: Option<&'static crate::store::family::Family>,
}

impl EmbeddingService {
    /// Start the service's inference thread. The model itself loads lazily, on that
    /// thread, when the first batch arrives; being the only thread that loads it is what
    /// makes "exactly once" hold however many callers race.
    ///
    /// A remote service's thread only forms batches; each runs as a future on the given
    /// runtime, up to the engine's `max_in_flight` at once.
    pub(crate) fn start(
        model: String,
        dimension_hint: Option<usize>,
        backend: Backend,
        config: BatchConfig,
        family: Option<&'static crate::store::family::Family>,
    ) -> Result<Arc<Self>> {
        let svc = Arc::new(Self {
            model,
            queue: Arc::new(Queue::new(config)),
            counters: Arc::new(Counters::default()),
            dimension: Arc::new(AtomicUsize::new(dimension_hint.unwrap_or(0))),
            thread: parking_lot::Mutex::new(None),
            busy: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            remote: match &backend {
                Backend::Remote { engine, .. } => Some(engine.clone()),
                Backend::Local { .. } | Backend::Llama { .. } => None,
            },
            precision: match &backend {
                Backend::Local { precision, .. } => Some(*precision),
                Backend::Remote { .. } | Backend::Llama { .. } => None,
            },
            family,
            engine: match &backend {
                Backend::Local { .. } => "onnx",
                Backend::Llama { .. } => "llama",
                Backend::Remote { .. } => "remote",
            },
        });
        let (queue, counters, dimension, busy) = (
            svc.queue.clone(),
            svc.counters.clone(),
            svc.dimension.clone(),
            svc.busy.clone(),
        );
        // Thread names cannot hold NUL bytes (spawning would panic): show them escaped.
        let name = format!("orion-embed-{}", svc.model).replace('\0', "\\0");
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || match backend {
                Backend::Local { factory, .. } | Backend::Llama { factory } => {
                    run(&queue, &counters, &dimension, &busy, &*factory);
                }
                Backend::Remote { engine, runtime } => {
                    run_remote(&queue, &counters, &dimension, &engine, &runtime);
                }
            })
            .map_err(|e| {
                OrionError::Internal(format!("could not start the inference thread: {e}"))
            })?;
        *svc.thread.lock() = Some(handle);
        Ok(svc)
    }

    /// Stop for good: every waiting request gets `SHUT_DOWN`, new ones too, and the
    /// inference thread ends after the batch (or the model load) it is in.
    pub(crate) fn close(&self) {
        self.queue.close();
    }

    /// Wait until the inference thread is outside the model (waiting for work) or
    /// `deadline` passes (then `false`).
    pub(crate) fn wait_idle(&self, deadline: std::time::Instant) -> bool {
        poll_until(deadline, || {
            !self.busy.load(std::sync::atomic::Ordering::SeqCst)
        })
    }

    /// Wait until the inference thread has ended, model dropped, or `deadline` passes
    /// (then `false`). Call [`EmbeddingService::close`] first.
    pub(crate) fn join(&self, deadline: std::time::Instant) -> bool {
        let mut slot = self.thread.lock();
        let Some(handle) = slot.as_ref() else {
            return true;
        };
        if !poll_until(deadline, || handle.is_finished()) {
            return false;
        }
        if let Some(h) = slot.take() {
            let _ = h.join();
        }
        true
    }

    pub(crate) fn model(&self) -> &str {
        &self.model
    }

    /// Queue `texts` (or answer them from the cache). Cheap and non-blocking, so it is
    /// fine to call on a JS thread; the returned [`Pending`] is awaited elsewhere.
    pub(crate) fn submit<S: AsRef<str>>(&self, texts: &[S]) -> Result<Pending> {
        let keys: Vec<Arc<str>> = texts
            .iter()
            .map(|t| Arc::from(clip_text(t.as_ref())))
            .collect();
        let (slots, counts) = self.queue.submit(&keys)?;
        self.counters
            .requests
            .fetch_add(texts.len() as u64, Relaxed);
        self.counters.cache_hits.fetch_add(counts.hits, Relaxed);
        self.counters.cache_misses.fetch_add(counts.misses, Relaxed);
        Ok(Pending {
            slots,
            dimensions: None,
            whole: false,
        })
    }

    /// [`EmbeddingService::submit`] for texts written as `shape` says (the family's
    /// prefix or instruction), whose vectors come back cut to `shape.dimensions`.
    pub(crate) fn submit_shaped<S: AsRef<str>>(
        &self,
        texts: &[S],
        shape: &Shape,
    ) -> Result<Pending> {
        let family = self.family;
        let name = |f: Option<&crate::store::family::Family>| {
            f.map_or_else(
                || format!("model {}", self.model),
                |f| format!("{} ({})", self.model, f.name),
            )
        };
        if let Some(i) = &shape.instruction {
            if shape.input != Some(InputType::Query) {
                return Err(OrionError::InvalidOption(
                    "instruction describes a query's task: give it with inputType: 'query'".into(),
                ));
            }
            if family.and_then(|f| f.query_instruction).is_none() {
                return Err(OrionError::InvalidOption(format!(
                    "{} takes no instruction (Qwen3-Embedding models do); got {}",
                    name(family),
                    crate::error::echo(i)
                )));
            }
        }
        if let Some(d) = shape.dimensions {
            let full = self.dimension.load(Relaxed);
            if full > 0 && d > full {
                return Err(OrionError::InvalidOption(format!(
                    "dimensions is {d}, more than the {full} values of {}",
                    name(family)
                )));
            }
            // A remote model's training is the server's business: its vectors are cut
            // here as asked.
            if self.remote.is_none() {
                use crate::store::family::Shorter;
                match family.and_then(|f| f.shorter) {
                    Some(Shorter::From(min)) if d >= min => {}
                    Some(Shorter::Only(sizes)) if sizes.contains(&d) || d == full => {}
                    Some(Shorter::From(min)) => {
                        return Err(OrionError::InvalidOption(format!(
                            "dimensions is {d}; {} was trained for vectors of {min} values or more",
                            name(family)
                        )))
                    }
                    Some(Shorter::Only(sizes)) => {
                        return Err(OrionError::InvalidOption(format!(
                            "dimensions is {d}; {} was trained for vectors of {sizes:?} values",
                            name(family)
                        )))
                    }
                    None if d == full => {}
                    None => {
                        return Err(OrionError::InvalidOption(format!(
                            "dimensions is {d}, but {} is not known to be trained for shorter \
                             vectors (Matryoshka): cut, its vectors would lose meaning",
                            name(family)
                        )))
                    }
                }
            }
        }
        let written: Vec<String> = texts
            .iter()
            .map(|t| {
                let t = t.as_ref();
                match (shape.input, family) {
                    (Some(InputType::Query), Some(f)) => match f.query_instruction {
                        Some(default) => format!(
                            "Instruct: {}\nQuery:{t}",
                            shape.instruction.as_deref().unwrap_or(default)
                        ),
                        None => format!("{}{t}", f.query_prefix),
                    },
                    (Some(InputType::Document), Some(f)) => format!("{}{t}", f.document_prefix),
                    _ => t.to_string(),
                }
            })
            .collect();
        let mut pending = self.submit(&written)?;
        pending.dimensions = shape.dimensions;
        pending.whole = shape.truncate == Some(false);
        Ok(pending)
    }

    pub(crate) fn stats(&self) -> EmbeddingStats {
        let c = &self.counters;
        let batches = c.batches.load(Relaxed);
        let embedded = c.embedded.load(Relaxed);
        EmbeddingStats {
            model: self.model.clone(),
            dimension: self.dimension.load(Relaxed),
            model_loads: c.model_loads.load(Relaxed),
            requests: c.requests.load(Relaxed),
            cache_hits: c.cache_hits.load(Relaxed),
            cache_misses: c.cache_misses.load(Relaxed),
            cache_bytes: self.queue.cache_bytes(),
            cache_entries: self.queue.cache_entries(),
            cache_capacity_bytes: self.queue.config().cache_bytes,
            batches,
            mean_batch_size: if batches == 0 {
                0.0
            } else {
                embedded as f64 / batches as f64
            },
            queue_depth: self.queue.depth(),
            endpoints: self.remote.as_ref().map(|r| r.endpoints()),
            precision: self.precision,
            int8_weights: (self.precision == Some(crate::onnx::graph::Precision::Int8))
                .then(crate::onnx::graph::Int8Weights::for_this_cpu),
            mean_queue_wait: self.queue.mean_wait(),
            engine: self.engine,
            family: self.family.map(|f| f.name),
            tokens: c.tokens.load(Relaxed),
            truncated: c.cut.load(Relaxed),
            threads: Some(c.threads.load(Relaxed)).filter(|&t| t > 0),
        }
    }

    pub(crate) fn clear_cache(&self) {
        self.queue.clear_cache();
    }

    /// Shrink the cache to at most `bytes`; returns the bytes freed.
    pub(crate) fn shrink_cache(&self, bytes: usize) -> usize {
        self.queue.shrink_cache(bytes)
    }
}

/// Whether `done` became true before `deadline`, checked every 2 ms: the inference
/// thread signals nothing a caller could wait on, and shutdown waits are rare and short.
fn poll_until(deadline: std::time::Instant, done: impl Fn() -> bool) -> bool {
    while !done() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// How long the inference thread waits without work before it counts as idle.
const IDLE_AFTER: Duration = Duration::from_millis(200);

fn run(
    queue: &Queue,
    counters: &Counters,
    dimension: &AtomicUsize,
    busy: &std::sync::atomic::AtomicBool,
    factory: &dyn EmbedderFactory,
) {
    struct Busy<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Busy<'_> {
        fn drop(&mut self) {
            self.0.store(false, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let mut model: Option<Box<dyn Embedder>> = None;
    loop {
        // Memory the batches freed (activations, tokens, outputs) goes back to the
        // system once the service is idle, not after every batch: a trim costs more
        // than a small batch's allocations.
        // (After a trim, `next_batch` blocks until work comes, so this runs once per
        // idle period.)
        if model.is_some() && !queue.wait_for_work(IDLE_AFTER) {
            crate::sysmem::release_freed_memory();
        }
        let Some(batch) = queue.next_batch() else {
            break;
        };
        busy.store(true, std::sync::atomic::Ordering::SeqCst);
        let _busy = Busy(busy);
        if model.is_none() {
            // A failed load is retried on the next batch, so that fetching the model
            // after a MODEL_NOT_FOUND fixes a running process.
            match catch_unwind(AssertUnwindSafe(|| factory.load())) {
                Ok(Ok(m)) => {
                    counters.model_loads.fetch_add(1, Relaxed);
                    model = Some(m);
                    crate::lifecycle::shutdown_before_later_destructors(
                        crate::lifecycle::Library::OnnxRuntime,
                    );
                }
                Ok(Err(e)) => {
                    queue.complete(&batch, Err(e));
                    continue;
                }
                Err(_) => {
                    queue.complete(
                        &batch,
                        Err(OrionError::ModelLoadFailed(
                            "the model loader panicked".into(),
                        )),
                    );
                    continue;
                }
            }
        }
        // Closed while the model loaded (a second, for ONNX Runtime's session): its
        // waiters have their answer, and the process may be exiting.
        if queue.is_closed() {
            break;
        }
        let Some(m) = model.as_mut() else { continue };
        let texts: Vec<&str> = batch.iter().map(|t| &**t).collect();
        let result = match catch_unwind(AssertUnwindSafe(|| m.embed(&texts))) {
            Ok(Ok(vectors)) if vectors.len() == texts.len() => {
                if let Some(v) = vectors.first() {
                    dimension.store(v.len(), Relaxed);
                }
                counters.batches.fetch_add(1, Relaxed);
                counters.embedded.fetch_add(texts.len() as u64, Relaxed);
                if let Some(t) = m.last_threads() {
                    counters.threads.store(t, Relaxed);
                }
                let mut read = m.last_read();
                read.resize(vectors.len(), crate::engine::embedding::Read::default());
                for r in &read {
                    counters.tokens.fetch_add(u64::from(r.tokens), Relaxed);
                    counters.cut.fetch_add(u64::from(r.cut), Relaxed);
                }
                Ok(vectors
                    .into_iter()
                    .zip(read)
                    .map(|(v, r)| Embedded::new(v, r))
                    .collect())
            }
            Ok(Ok(vectors)) => Err(OrionError::Internal(format!(
                "the model returned {} vectors for {} texts",
                vectors.len(),
                texts.len()
            ))),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                model = None;
                Err(OrionError::InferenceFailed(
                    "the model panicked; it will be reloaded".into(),
                ))
            }
        };
        queue.complete(&batch, result);
    }
}

/// The remote service's loop: wait for a free slot, take a batch, run it on `runtime`.
/// Waiting for the slot first lets texts gather into bigger batches while every slot
/// is busy. A batch nobody waits for any more (timed out, aborted, worker gone) is
/// dropped mid-flight, which closes its connection.
fn run_remote(
    queue: &Arc<Queue>,
    counters: &Arc<Counters>,
    dimension: &Arc<AtomicUsize>,
    engine: &Arc<dyn RemoteEngine>,
    runtime: &tokio::runtime::Handle,
) {
    struct Slot(Arc<(parking_lot::Mutex<usize>, parking_lot::Condvar)>);
    impl Drop for Slot {
        fn drop(&mut self) {
            *self.0 .0.lock() -= 1;
            self.0 .1.notify_one();
        }
    }
    let slots = Arc::new((parking_lot::Mutex::new(0usize), parking_lot::Condvar::new()));
    let max = engine.max_in_flight().max(1);
    let connected = Arc::new(std::sync::atomic::AtomicBool::new(false));
    loop {
        {
            let mut n = slots.0.lock();
            while *n >= max {
                // Bounded waits: a closed queue ends the loop even if a slot never frees.
                slots.1.wait_for(&mut n, Duration::from_millis(50));
                if queue.is_closed() {
                    return;
                }
            }
            *n += 1;
        }
        let slot = Slot(slots.clone());
        let Some(batch) = queue.next_batch() else {
            return;
        };
        let (queue, counters, dimension, engine, connected) = (
            queue.clone(),
            counters.clone(),
            dimension.clone(),
            engine.clone(),
            connected.clone(),
        );
        runtime.spawn(async move {
            let _slot = slot;
            let watch = async {
                loop {
                    tokio::time::sleep(ABANDON_POLL).await;
                    if !queue.has_waiters(&batch) {
                        break;
                    }
                }
            };
            let result = tokio::select! {
                r = engine.embed(batch.clone()) => r,
                () = watch => {
                    queue.give_up(&batch);
                    return;
                }
            };
            let result = match result {
                Ok(vectors) if vectors.len() == batch.len() => {
                    if let Some(v) = vectors.first() {
                        dimension.store(v.len(), Relaxed);
                    }
                    if !connected.swap(true, Relaxed) {
                        counters.model_loads.fetch_add(1, Relaxed);
                    }
                    counters.batches.fetch_add(1, Relaxed);
                    counters.embedded.fetch_add(batch.len() as u64, Relaxed);
                    Ok(vectors
                        .into_iter()
                        .map(|v| Embedded::new(v, crate::engine::embedding::Read::default()))
                        .collect())
                }
                Ok(vectors) => Err(OrionError::Internal(format!(
                    "the engine returned {} vectors for {} texts",
                    vectors.len(),
                    batch.len()
                ))),
                Err(e) => Err(e),
            };
            queue.complete(&batch, result);
        });
    }
}

/// The answers to one `submit`, in order.
pub(crate) struct Pending {
    slots: Vec<Slot>,
    /// Vectors cut to this many values and renormalised ([`Shape::dimensions`]).
    dimensions: Option<usize>,
    /// `INPUT_TOO_LONG` rather than vectors of texts the model cut.
    whole: bool,
}

impl Pending {
    /// Whether every answer was already known (cache hits) at submit time.
    pub(crate) fn is_ready(&self) -> bool {
        self.slots.iter().all(|s| matches!(s, Slot::Ready(_)))
    }

    /// The answers of a ready `Pending`, in order (empty slots where one was not ready).
    pub(crate) fn into_ready(self) -> Result<Vec<Vector>> {
        let (dimensions, whole) = (self.dimensions, self.whole);
        let out: Vec<Vector> = self
            .slots
            .into_iter()
            .filter_map(|s| match s {
                Slot::Ready(v) => Some(v),
                Slot::Waiting(_) => None,
            })
            .collect();
        shorten(check_whole(out, whole)?, dimensions)
    }

    /// Wait for every vector, giving up after `timeout` or when `cancel` turns `true`.
    /// Giving up drops the receivers, which tells the queue not to compute texts
    /// nobody else waits for.
    pub(crate) async fn wait(
        self,
        timeout: Duration,
        cancel: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> Result<Vec<Vector>> {
        let (dimensions, whole) = (self.dimensions, self.whole);
        let collect = async move {
            let mut out = Vec::with_capacity(self.slots.len());
            for slot in self.slots {
                out.push(match slot {
                    Slot::Ready(v) => v,
                    Slot::Waiting(rx) => rx.await.map_err(|_| {
                        OrionError::Internal("the inference thread dropped a request".into())
                    })??,
                });
            }
            Ok(out)
        };
        let timed = async move {
            tokio::time::timeout(timeout, collect).await.unwrap_or(Err(
                OrionError::EmbeddingTimeout {
                    timeout_ms: timeout.as_millis() as u64,
                },
            ))
        };
        let out = match cancel {
            None => timed.await,
            // A sender gone without firing disables the branch (the call goes on).
            Some(mut cancel) => tokio::select! {
                r = timed => r,
                Ok(_) = cancel.wait_for(|stopped| *stopped) => Err(OrionError::Aborted),
            },
        }?;
        shorten(check_whole(out, whole)?, dimensions)
    }
}

/// `vectors`, or `INPUT_TOO_LONG` for the first whose text the model cut, when `whole`.
fn check_whole(vectors: Vec<Vector>, whole: bool) -> Result<Vec<Vector>> {
    if whole {
        if let Some((index, v)) = vectors.iter().enumerate().find(|(_, v)| v.read.cut) {
            return Err(OrionError::InputTooLong {
                index,
                tokens: v.read.tokens,
            });
        }
    }
    Ok(vectors)
}

/// `vectors` cut to their first `dimensions` values, each renormalised to length 1 (as
/// a Matryoshka model's shorter vectors are used); unchanged when `None`.
fn shorten(vectors: Vec<Vector>, dimensions: Option<usize>) -> Result<Vec<Vector>> {
    let Some(d) = dimensions else {
        return Ok(vectors);
    };
    vectors
        .into_iter()
        .map(|v| {
            if d > v.len() {
                return Err(OrionError::InvalidOption(format!(
                    "dimensions is {d}, more than the model's {} values",
                    v.len()
                )));
            }
            let head = &v[..d];
            let norm = head
                .iter()
                .map(|x| f64::from(*x) * f64::from(*x))
                .sum::<f64>()
                .sqrt();
            let values = if norm > 0.0 && norm.is_finite() {
                head.iter().map(|x| (f64::from(*x) / norm) as f32).collect()
            } else {
                head.to_vec()
            };
            Ok(Embedded::new(values, v.read))
        })
        .collect()
}

/// Whether a text is a query or a document, for the models that write them differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InputType {
    Query,
    Document,
}

/// How a call wants its texts written for the model and its vectors shaped.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Shape {
    /// The model family's prefix (or instruction) for this kind of text.
    pub(crate) input: Option<InputType>,
    /// A query's instruction, for families that take one (Qwen3-Embedding).
    pub(crate) instruction: Option<String>,
    /// Vectors this long, for models trained for shorter vectors.
    pub(crate) dimensions: Option<usize>,
    /// `Some(false)`: `INPUT_TOO_LONG` for a text longer than the model reads, rather
    /// than its vector of the text cut (the default).
    pub(crate) truncate: Option<bool>,
}

#[cfg(test)]
// The fakes' vectors are small integers, exact in `f32`: equal means identical.
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;
    use crate::engine::embedding::BatchFuture;
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex as StdMutex;

    /// Embeds a text as [len, first byte]; records batch sizes and loads.
    struct Fake {
        batches: Arc<StdMutex<Vec<usize>>>,
        delay: Duration,
    }
    impl Embedder for Fake {
        fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
            std::thread::sleep(self.delay);
            self.batches.lock().unwrap().push(texts.len());
            Ok(texts
                .iter()
                .map(|t| {
                    vec![
                        t.len() as f32,
                        f32::from(*t.as_bytes().first().unwrap_or(&0)),
                    ]
                })
                .collect())
        }
    }
    struct FakeFactory {
        loads: Arc<AtomicU64>,
        batches: Arc<StdMutex<Vec<usize>>>,
        fail_first: bool,
        delay: Duration,
    }
    impl EmbedderFactory for FakeFactory {
        fn load(&self) -> Result<Box<dyn Embedder>> {
            let n = self.loads.fetch_add(1, Relaxed);
            if self.fail_first && n == 0 {
                return Err(OrionError::ModelNotFound {
                    what: "m".into(),
                    searched: "/x".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(30));
            Ok(Box::new(Fake {
                batches: self.batches.clone(),
                delay: self.delay,
            }))
        }
    }

    fn service(
        fail_first: bool,
        delay_ms: u64,
        config: BatchConfig,
    ) -> (
        Arc<EmbeddingService>,
        Arc<AtomicU64>,
        Arc<StdMutex<Vec<usize>>>,
    ) {
        let loads = Arc::new(AtomicU64::new(0));
        let batches = Arc::new(StdMutex::new(Vec::new()));
        let f = FakeFactory {
            loads: loads.clone(),
            batches: batches.clone(),
            fail_first,
            delay: Duration::from_millis(delay_ms),
        };
        (
            EmbeddingService::start(
                "fake".into(),
                Some(2),
                Backend::Local {
                    factory: Box::new(f),
                    precision: crate::onnx::graph::Precision::Exact,
                },
                config,
                None,
            )
            .unwrap(),
            loads,
            batches,
        )
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    const LONG: Duration = Duration::from_secs(10);

    #[test]
    fn racing_threads_load_the_model_once_and_share_batches() {
        let (svc, loads, batches) = service(
            false,
            5,
            BatchConfig {
                max_wait: Duration::from_millis(20),
                ..Default::default()
            },
        );
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let svc = svc.clone();
                std::thread::spawn(move || {
                    let p = svc.submit(&[format!("text {i}")]).unwrap();
                    rt().block_on(p.wait(LONG, None)).unwrap()
                })
            })
            .collect();
        for (i, t) in threads.into_iter().enumerate() {
            let v = t.join().unwrap();
            assert_eq!(v[0][0], format!("text {i}").len() as f32);
        }
        assert_eq!(loads.load(Relaxed), 1);
        let s = svc.stats();
        assert_eq!((s.model_loads, s.requests, s.cache_misses), (1, 8, 8));
        let sizes = batches.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 8);
        assert!(
            sizes.len() < 8,
            "eight single texts took {} model calls",
            sizes.len()
        );
        assert!(s.mean_batch_size > 1.0);
    }

    #[test]
    fn repeated_text_is_served_from_the_cache() {
        let (svc, _, batches) = service(false, 0, BatchConfig::default());
        let a = rt()
            .block_on(svc.submit(&["hello"]).unwrap().wait(LONG, None))
            .unwrap();
        let b = rt()
            .block_on(svc.submit(&["hello"]).unwrap().wait(LONG, None))
            .unwrap();
        assert_eq!(a, b);
        let s = svc.stats();
        assert_eq!((s.cache_hits, s.cache_misses, s.batches), (1, 1, 1));
        assert_eq!(batches.lock().unwrap().len(), 1);
        assert!(s.cache_bytes > 0);
        svc.clear_cache();
        assert_eq!(svc.stats().cache_bytes, 0);
    }

    #[test]
    fn a_failed_load_is_reported_and_retried() {
        let (svc, loads, _) = service(true, 0, BatchConfig::default());
        let e = rt()
            .block_on(svc.submit(&["a"]).unwrap().wait(LONG, None))
            .unwrap_err();
        assert_eq!(e.code(), "MODEL_NOT_FOUND");
        let v = rt()
            .block_on(svc.submit(&["a"]).unwrap().wait(LONG, None))
            .unwrap();
        assert_eq!(v[0][0], 1.0);
        assert_eq!(loads.load(Relaxed), 2);
        assert_eq!(svc.stats().model_loads, 1);
    }

    #[test]
    fn close_during_the_model_load_answers_shut_down_and_the_thread_ends() {
        let (svc, loads, _) = service(false, 0, BatchConfig::default());
        let pending = svc.submit(&["x"]).unwrap();
        // Until the thread is inside the 30 ms load (on a busy machine it may start late).
        let started = std::time::Instant::now();
        while loads.load(Relaxed) == 0 && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        svc.close();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        assert!(svc.join(deadline));
        assert_eq!(loads.load(Relaxed), 1);
        assert_eq!(
            rt().block_on(pending.wait(LONG, None)).err(),
            Some(OrionError::ShutDown)
        );
        assert_eq!(svc.submit(&["y"]).err(), Some(OrionError::ShutDown));
        assert!(svc.join(deadline)); // a second join is free
    }

    #[test]
    fn timeout_and_cancel_give_coded_errors() {
        let (svc, _, _) = service(false, 300, BatchConfig::default());
        let e = rt()
            .block_on(
                svc.submit(&["slow"])
                    .unwrap()
                    .wait(Duration::from_millis(20), None),
            )
            .unwrap_err();
        assert_eq!(e.code(), "EMBEDDING_TIMEOUT");
        let (tx, rx) = tokio::sync::watch::channel(false);
        let p = svc.submit(&["slower"]).unwrap();
        tx.send(true).unwrap();
        let e = rt().block_on(p.wait(LONG, Some(rx))).unwrap_err();
        assert_eq!(e.code(), "ABORTED");
    }

    #[test]
    fn long_texts_are_clipped_before_queueing() {
        let (svc, _, _) = service(false, 0, BatchConfig::default());
        let huge = "a".repeat(1 << 20);
        let v = rt()
            .block_on(svc.submit(&[huge]).unwrap().wait(LONG, None))
            .unwrap();
        assert_eq!(v[0][0], crate::onnx::model::MAX_TEXT_BYTES as f32);
    }

    /// A remote engine that answers after `delay`, counting batches in flight and the
    /// batch futures dropped before they finished.
    struct FakeRemote {
        delay: Duration,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
        dropped: Arc<AtomicU64>,
        max: usize,
    }
    impl RemoteEngine for FakeRemote {
        fn embed(self: Arc<Self>, texts: Vec<Arc<str>>) -> BatchFuture {
            struct Unfinished(Arc<AtomicU64>, bool);
            impl Drop for Unfinished {
                fn drop(&mut self) {
                    if !self.1 {
                        self.0.fetch_add(1, Relaxed);
                    }
                }
            }
            Box::pin(async move {
                let mut guard = Unfinished(self.dropped.clone(), false);
                let n = self.in_flight.fetch_add(1, Relaxed) + 1;
                self.most_in_flight.fetch_max(n, Relaxed);
                tokio::time::sleep(self.delay).await;
                self.in_flight.fetch_sub(1, Relaxed);
                guard.1 = true;
                Ok(texts.iter().map(|t| vec![t.len() as f32]).collect())
            })
        }
        fn max_in_flight(&self) -> usize {
            self.max
        }
        fn endpoints(&self) -> Vec<crate::engine::EndpointStats> {
            Vec::new()
        }
    }

    fn remote_service(
        delay_ms: u64,
        config: BatchConfig,
    ) -> (
        Arc<EmbeddingService>,
        Arc<FakeRemote>,
        tokio::runtime::Runtime,
    ) {
        let http = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        let engine = Arc::new(FakeRemote {
            delay: Duration::from_millis(delay_ms),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
            dropped: Arc::new(AtomicU64::new(0)),
            max: 2,
        });
        let svc = EmbeddingService::start(
            "remote".into(),
            None,
            Backend::Remote {
                engine: engine.clone(),
                runtime: http.handle().clone(),
            },
            config,
            None,
        )
        .unwrap();
        (svc, engine, http)
    }

    #[test]
    fn remote_batches_run_concurrently_up_to_the_engines_limit_and_gather_while_busy() {
        let config = BatchConfig {
            max_wait: Duration::ZERO,
            ..BatchConfig::default()
        };
        let (svc, engine, _http) = remote_service(40, config);
        let pendings: Vec<_> = (0..200)
            .map(|i| svc.submit(&[format!("text {i}")]).unwrap())
            .collect();
        let rt = rt();
        for (i, p) in pendings.into_iter().enumerate() {
            let v = rt.block_on(p.wait(Duration::from_secs(10), None)).unwrap();
            assert_eq!(v[0][0], format!("text {i}").len() as f32);
        }
        assert_eq!(engine.most_in_flight.load(Relaxed), 2);
        let s = svc.stats();
        assert_eq!(s.model_loads, 1);
        assert_eq!(s.dimension, 1);
        // Texts queued while both slots were busy went out together.
        assert!(s.batches < 200 / 4, "{} batches", s.batches);
        svc.close();
        assert!(svc.join(std::time::Instant::now() + Duration::from_secs(2)));
    }

    #[test]
    fn a_remote_batch_nobody_waits_for_is_dropped_mid_flight() {
        let (svc, engine, _http) = remote_service(60_000, BatchConfig::default());
        let pending = svc.submit(&["abandoned"]).unwrap();
        let rt = rt();
        let e = rt
            .block_on(pending.wait(Duration::from_millis(50), None))
            .unwrap_err();
        assert_eq!(e.code(), "EMBEDDING_TIMEOUT");
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while engine.dropped.load(Relaxed) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(engine.dropped.load(Relaxed), 1);
        assert_eq!(svc.stats().batches, 0);
        svc.close();
        assert!(svc.join(std::time::Instant::now() + Duration::from_secs(2)));
    }
}
