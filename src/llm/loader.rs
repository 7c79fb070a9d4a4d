//! The model loader: which LLMs are loaded, loading them once however many threads
//! ask, and keeping within the model count and memory limits by evicting the least
//! recently used idle model. Generic over [`Engine`] so that the policy is tested
//! without llama.cpp.
//!
//! # Locks
//!
//! The engine's `probe` and `load`, and the sha256 check, run with no loader lock held:
//! a load in progress holds its room in `State::reserved` instead. Where two locks are
//! held at once, the one named first is taken first:
//!
//! - `ModelLoader::state`, then `ModelLoader::config` (`stats`) or a model's `last_used`
//!   (recency reads and `mark_used`). `make_room` calls [`MemoryProbe::available`] under
//!   `state`: a probe must not block or take a loader lock (the real one reads system
//!   memory under `sysmem`'s own lock). An evicted model that no lease holds is freed
//!   where it is removed, under `state`: unmapping its file, milliseconds at most.
//! - `ModelLoader::config` and a model's `last_used` are leaves.
//! - `Changes::epoch` (with its condition variable) is a leaf, and never taken with
//!   `state` held: `bump` comes after `state` is released, and `wait_past` waits holding
//!   nothing else. Leases are released (`Lease::drop`) without `state`, so handing a
//!   model back never waits for a load or an eviction.
//! - A load's `Loading::state` (with `done`) is never held together with the loader's
//!   `state`. Progress listeners ([`ProgressFn`]) are called under it, from the loading
//!   thread (`report`) and from a caller joining the load (`wait_for`): a listener must
//!   return at once and take no loader lock. The binding layer's only queues a
//!   threadsafe-function call, `NonBlocking`. The final 100 is delivered with no lock
//!   held.
//! - A load's `leases` count changes only under the loader's `state`, so that it is
//!   final once the load has left `State::loading`.

use super::registry::Resolved;
use crate::engine::llm::Engine;
use crate::error::{echo, OrionError, Result};
use crate::store::integrity::Integrity;
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A caller's progress callback: integer percents.
pub(crate) type ProgressFn = Arc<dyn Fn(u32) + Send + Sync>;

/// Where memory for a new model must come from.
pub(crate) trait MemoryProbe: Send + Sync + 'static {
    /// Bytes available to this process now (the smallest of free memory, the cgroup
    /// headroom and the configured budget).
    fn available(&self) -> u64;
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LoaderConfig {
    pub(crate) max_concurrent_models: usize,
    /// Optional cap on the bytes orion-native's models may use.
    pub(crate) budget_bytes: Option<u64>,
    /// Unload a model unused for this long.
    pub(crate) idle_timeout: Option<Duration>,
}

pub(crate) struct LoadedModel<M> {
    /// Which load produced it: loads waiting for a slot recognise the ones they queued
    /// behind by it.
    id: u64,
    pub(crate) key: String,
    pub(crate) path: PathBuf,
    pub(crate) quantization: Option<String>,
    pub(crate) context_length: u32,
    pub(crate) bytes: u64,
    pub(crate) model: M,
    pub(crate) loads: u64,
    in_use: AtomicUsize,
    /// Leases handed to the callers of the load itself (its starter and those who
    /// joined it) and not yet released. See [`ModelLoader::make_room`].
    handed: AtomicUsize,
    last_used: Mutex<(Instant, SystemTime)>,
    changes: Arc<Changes>,
}

impl<M> LoadedModel<M> {
    pub(crate) fn in_use(&self) -> usize {
        self.in_use.load(Ordering::SeqCst)
    }

    fn touch(&self) {
        *self.last_used.lock() = (Instant::now(), SystemTime::now());
    }

    pub(crate) fn idle_for(&self) -> Duration {
        self.last_used.lock().0.elapsed()
    }

    pub(crate) fn last_used_ms(&self) -> f64 {
        let t = self.last_used.lock().1;
        t.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }
}

/// A model in use: it is not evicted while a lease is alive, and its memory is freed
/// when the last lease of an unloaded model drops.
pub(crate) struct Lease<M> {
    entry: Arc<LoadedModel<M>>,
    /// Counted in the model's `handed`.
    handed: bool,
}

impl<M> Lease<M> {
    #[cfg(test)]
    pub(crate) fn model(&self) -> &LoadedModel<M> {
        &self.entry
    }

    /// The model itself, kept alive (not counted as in use) after the lease ends: for
    /// work that follows a request and stops when asked (see `generate::Unsettled`).
    pub(crate) fn shared(&self) -> Arc<LoadedModel<M>> {
        self.entry.clone()
    }
}

impl<M> Drop for Lease<M> {
    fn drop(&mut self) {
        self.entry.touch();
        if self.handed {
            self.entry.handed.fetch_sub(1, Ordering::SeqCst);
        }
        self.entry.in_use.fetch_sub(1, Ordering::SeqCst);
        self.entry.changes.bump();
    }
}

/// Wakes loads waiting for a slot whenever one may have come free. An event count
/// rather than a condition variable on the loader's state: leases are released
/// without the state lock, and a release that falls between a waiter's look at the
/// state and its wait must still wake it.
struct Changes {
    epoch: Mutex<u64>,
    cv: Condvar,
}

impl Changes {
    fn now(&self) -> u64 {
        *self.epoch.lock()
    }

    fn bump(&self) {
        *self.epoch.lock() += 1;
        self.cv.notify_all();
    }

    /// Returns once something changed after `seen` was read.
    fn wait_past(&self, seen: u64) {
        let mut epoch = self.epoch.lock();
        while *epoch == seen {
            self.cv.wait(&mut epoch);
        }
    }
}

struct Loading<M> {
    id: u64,
    /// Callers of this load that want a lease at its end; changed only under the
    /// loader's state lock, so that the count is final once the load leaves `loading`.
    leases: AtomicUsize,
    state: Mutex<LoadingState<M>>,
    done: Condvar,
}

struct LoadingState<M> {
    percent: u32,
    listeners: Vec<ProgressFn>,
    result: Option<Result<Arc<LoadedModel<M>>>>,
}

impl<M> Loading<M> {
    fn report(&self, fraction: f32) {
        let p = ((fraction.clamp(0.0, 1.0) * 100.0) as u32).min(99); // 100 means loaded
        let mut st = self.state.lock();
        if p > st.percent {
            st.percent = p;
            for l in &st.listeners {
                l(p);
            }
        }
    }
}

struct State<M> {
    loaded: HashMap<String, Arc<LoadedModel<M>>>,
    loading: HashMap<String, Arc<Loading<M>>>,
    /// Loads past `make_room`, by load id: each holds a model slot and the bytes it
    /// was admitted with, until it is in `loaded` or has failed.
    reserved: HashMap<u64, u64>,
    loads: HashMap<String, u64>,
    next_id: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ModelStats {
    pub(crate) key: String,
    pub(crate) idle_for: Duration,
    pub(crate) path: String,
    pub(crate) quantization: Option<String>,
    pub(crate) bytes: u64,
    pub(crate) last_used_ms: f64,
    pub(crate) in_use: usize,
    pub(crate) loads: u64,
    /// Where its layers went, when some are on a GPU device.
    pub(crate) placed: Option<crate::engine::llm::Placed>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LoaderStats {
    pub(crate) loaded_models: usize,
    pub(crate) max_concurrent_models: usize,
    pub(crate) loading: usize,
    pub(crate) total_bytes: u64,
    pub(crate) models: Vec<ModelStats>,
}

pub(crate) struct ModelLoader<E: Engine> {
    engine: E,
    memory: Box<dyn MemoryProbe>,
    config: Mutex<LoaderConfig>,
    state: Mutex<State<E::Model>>,
    changes: Arc<Changes>,
    /// The sha256s of the files it loaded (the process's one memo, since the runtime
    /// builds one loader).
    integrity: Integrity,
}

impl<E: Engine> ModelLoader<E> {
    pub(crate) fn new(engine: E, memory: Box<dyn MemoryProbe>, config: LoaderConfig) -> Self {
        Self {
            engine,
            memory,
            config: Mutex::new(config),
            state: Mutex::new(State {
                loaded: HashMap::new(),
                loading: HashMap::new(),
                reserved: HashMap::new(),
                loads: HashMap::new(),
                next_id: 0,
            }),
            changes: Arc::new(Changes {
                epoch: Mutex::new(0),
                cv: Condvar::new(),
            }),
            integrity: Integrity::default(),
        }
    }

    #[cfg(test)]
    pub(crate) fn engine(&self) -> &E {
        &self.engine
    }

    pub(crate) fn config(&self) -> LoaderConfig {
        self.config.lock().clone()
    }

    pub(crate) fn set_config(&self, config: LoaderConfig) {
        *self.config.lock() = config;
        self.changes.bump();
    }

    /// Check `model`'s file, of `file_bytes` bytes, against the size and sha256 its
    /// registry entry gives (`MODEL_LOAD_FAILED` naming both). The digest is remembered
    /// by file version, so a load after a check does not hash the file again. Blocking.
    pub(crate) fn verify_file(&self, model: &Resolved, file_bytes: u64) -> Result<()> {
        if let Some(size) = model.size.filter(|&s| s != file_bytes) {
            return Err(OrionError::ModelLoadFailed(format!(
                "{} is {file_bytes} bytes but the registry says {size}: the file is incomplete or a different build",
                model.path.display(),
            )));
        }
        if let Some(sha256) = &model.sha256 {
            self.integrity.verify(&model.path, sha256)?;
        }
        Ok(())
    }

    /// Load `model` (or join a load in progress) and lease it. Blocks: call it from a
    /// worker thread. `progress` gets integers that never decrease and end at 100.
    pub(crate) fn acquire(
        &self,
        model: &Resolved,
        progress: Option<ProgressFn>,
    ) -> Result<Lease<E::Model>> {
        self.obtain(model, progress, true)
            .map(|(entry, handed)| Lease { entry, handed })
    }

    /// Load `model` (or join a load in progress) without leasing it: for callers that
    /// only report on the load. A lease, however briefly held, makes the model look
    /// busy to a concurrent load of another key, which is then refused. The returned
    /// `Arc` keeps the model's memory alive even once evicted: drop it soon.
    pub(crate) fn load(
        &self,
        model: &Resolved,
        progress: Option<ProgressFn>,
    ) -> Result<Arc<LoadedModel<E::Model>>> {
        self.obtain(model, progress, false).map(|(entry, _)| entry)
    }

    /// The model, and with `lease` one count of `in_use` taken for the caller (and
    /// whether it is also counted in `handed`).
    fn obtain(
        &self,
        model: &Resolved,
        progress: Option<ProgressFn>,
        lease: bool,
    ) -> Result<(Arc<LoadedModel<E::Model>>, bool)> {
        let (slot, queued_behind) = {
            let mut st = self.state.lock();
            if let Some(entry) = st.loaded.get(&model.key) {
                if lease {
                    entry.in_use.fetch_add(1, Ordering::SeqCst);
                }
                let entry = entry.clone();
                drop(st);
                return Ok((Self::handed_over(entry, progress), false));
            }
            if let Some(slot) = st.loading.get(&model.key) {
                let slot = slot.clone();
                if lease {
                    slot.leases.fetch_add(1, Ordering::SeqCst);
                }
                drop(st);
                return Self::wait_for(&slot, progress).map(|e| (e, lease));
            }
            let queued_behind: HashSet<u64> = st.loading.values().map(|l| l.id).collect();
            st.next_id += 1;
            let slot = Arc::new(Loading {
                id: st.next_id,
                leases: AtomicUsize::new(usize::from(lease)),
                state: Mutex::new(LoadingState {
                    percent: 0,
                    listeners: progress.iter().cloned().collect(),
                    result: None,
                }),
                done: Condvar::new(),
            });
            st.loading.insert(model.key.clone(), slot.clone());
            (slot, queued_behind)
        };
        // A panic inside must still settle the slot, or every caller joined to this load
        // (and every later load of the key) would wait forever.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.load_now(model, &slot, queued_behind)
        }))
        .unwrap_or_else(|_| {
            Err(OrionError::Internal(format!(
                "loading {:?} panicked",
                model.key
            )))
        });
        let mut st = self.state.lock();
        st.loading.remove(&model.key);
        st.reserved.remove(&slot.id);
        if let Ok(entry) = &result {
            // Leased before anyone else can see it loaded, so that no waiting load
            // evicts it before its callers have it.
            let n = slot.leases.load(Ordering::SeqCst);
            entry.in_use.fetch_add(n, Ordering::SeqCst);
            entry.handed.store(n, Ordering::SeqCst);
            st.loaded.insert(model.key.clone(), entry.clone());
        }
        drop(st);
        self.changes.bump();
        {
            let mut ls = slot.state.lock();
            ls.result = Some(result.clone());
            ls.listeners.clear();
        }
        slot.done.notify_all();
        result.map(|entry| (Self::handed_over(entry, progress), lease))
    }

    fn handed_over(
        entry: Arc<LoadedModel<E::Model>>,
        progress: Option<ProgressFn>,
    ) -> Arc<LoadedModel<E::Model>> {
        entry.touch();
        if let Some(p) = progress {
            p(100);
        }
        entry
    }

    /// Wait for a load started by another caller; its lease, if one was asked for, was
    /// counted when the load finished.
    fn wait_for(
        slot: &Arc<Loading<E::Model>>,
        progress: Option<ProgressFn>,
    ) -> Result<Arc<LoadedModel<E::Model>>> {
        let mut ls = slot.state.lock();
        if let (Some(p), None) = (&progress, &ls.result) {
            if ls.percent > 0 {
                p(ls.percent);
            }
            ls.listeners.push(p.clone());
        }
        while ls.result.is_none() {
            slot.done.wait(&mut ls);
        }
        let result = ls.result.clone().expect("set before notify");
        drop(ls);
        result.map(|entry| Self::handed_over(entry, progress))
    }

    fn load_now(
        &self,
        model: &Resolved,
        slot: &Arc<Loading<E::Model>>,
        queued_behind: HashSet<u64>,
    ) -> Result<Arc<LoadedModel<E::Model>>> {
        let meta = match (
            self.engine.probe(&model.path, model.context_length),
            &model.hub,
        ) {
            (Err(OrionError::ModelNotFound { what, searched }), Some((repo, file))) => {
                return Err(OrionError::ModelNotFound {
                    what: format!("{what} (it is {file} in the Hugging Face repository {repo})"),
                    searched,
                })
            }
            (probed, _) => probed?,
        };
        // Before make_room: a bad file must not cost another model its place.
        self.verify_file(model, meta.file_bytes)?;
        let need = meta.file_bytes + meta.kv_bytes_per_context;
        let device = self.engine.device_need(&meta, model.gpu_layers)?;
        self.make_room(slot.id, &model.key, need, device, queued_behind)?;
        let request = crate::engine::llm::LoadRequest {
            device: device.map(|d| d.index),
            gpu_layers: model.gpu_layers,
            layout: meta.layout.clone(),
        };
        let reporter = slot.clone();
        let loaded =
            self.engine
                .load(&model.path, request, Box::new(move |f| reporter.report(f)))?;
        let mut st = self.state.lock();
        let loads = st.loads.entry(model.key.clone()).or_insert(0);
        *loads += 1;
        Ok(Arc::new(LoadedModel {
            id: slot.id,
            key: model.key.clone(),
            path: model.path.clone(),
            quantization: meta.quantization.or_else(|| model.quantization.clone()),
            context_length: model.context_length,
            bytes: meta.file_bytes,
            model: loaded,
            loads: *loads,
            in_use: AtomicUsize::new(0),
            handed: AtomicUsize::new(0),
            last_used: Mutex::new((Instant::now(), SystemTime::now())),
            changes: self.changes.clone(),
        }))
    }

    /// What is free on the device of `need`. When short, what the models there keep
    /// only for speed (a chat's next turn) goes first, before `make_room` unloads any.
    fn device_free_for(&self, need: crate::engine::llm::DeviceNeed) -> u64 {
        let free = self.engine.device_free(need.index);
        if free >= need.bytes {
            return free;
        }
        if self.free_kept_where(|p| p.is_some_and(|p| p.device_index == need.index)) > 0 {
            self.engine.device_free(need.index)
        } else {
            free
        }
    }

    /// Free the contexts kept for a chat's next turn by the models with layers on GPU
    /// device `device` (its name): how many. The monitor's first step when that device
    /// runs short.
    pub(crate) fn free_kept_on(&self, device: &str) -> usize {
        self.free_kept_where(|p| p.is_some_and(|p| p.device == device))
    }

    /// Free the kept contexts of the loaded models placed where `on` says (`None`: on the
    /// CPU), every model's settling contexts told to stop first: their steps end
    /// together, not one after another.
    pub(crate) fn free_kept_where(
        &self,
        on: impl Fn(Option<&crate::engine::llm::Placed>) -> bool,
    ) -> usize {
        // Freed outside the state lock: freeing a context's KV cache is not instant, and
        // those still settling are waited for.
        let there: Vec<Arc<LoadedModel<E::Model>>> = self
            .state
            .lock()
            .loaded
            .values()
            .filter(|e| on(E::placed(&e.model).as_ref()))
            .cloned()
            .collect();
        for e in &there {
            E::stop_kept(&e.model);
        }
        there.iter().map(|e| E::free_kept(&e.model)).sum()
    }

    /// Evict idle models (least recently used first) until one more model fits the
    /// count limit and `need` bytes fit in memory, then hold that room for load `id`
    /// until it is loaded or has failed, so that concurrent loads never together go
    /// past the limits.
    ///
    /// Where only models in use stand in the way, the answer depends on why they are
    /// in use. Loads in progress (holding room) finish by themselves, and the callers
    /// of a load this one queued behind (in `queued_behind`, or seen holding room
    /// here) let go of the model once they have it, or once their generation with it
    /// ends: wait for those, then look again. Refusing instead is what made two
    /// `loadModel`s of different keys under `maxConcurrentModels: 1` refuse each other
    /// (each counted the other's load as a model in use). Every lease waited for was
    /// handed out by a load that ended after this one began, and its holder's next
    /// load begins later still, so waits run forward in time and cannot form a cycle.
    /// Otherwise every loaded model was in use before this load asked: `MODEL_BUSY` (or
    /// `INSUFFICIENT_MEMORY`) right away.
    ///
    /// A load going to a GPU device (`device`) also wants its bytes free there: idle
    /// models on that device are unloaded for it, least recently used first. Where
    /// none is left to unload, the load goes ahead and puts there the layers that fit
    /// (the rest run on the CPU): device memory never refuses a load. Kept contexts
    /// there go before any model ([`Self::device_free_for`]).
    fn make_room(
        &self,
        id: u64,
        key: &str,
        need: u64,
        device: Option<crate::engine::llm::DeviceNeed>,
        mut queued_behind: HashSet<u64>,
    ) -> Result<()> {
        loop {
            // Read before looking at the state: a change after this wakes the wait.
            let seen = self.changes.now();
            let config = self.config();
            // Every setter refuses 0; were it set, one model is the least that works.
            let max = config.max_concurrent_models.max(1);
            // Read before the state lock: it asks the driver. What evictions free below
            // is added as they happen.
            let device_free = device.map_or(0, |d| self.device_free_for(d));
            let mut device_freed = 0u64;
            let mut st = self.state.lock();
            let mut evicted = false;
            let (over_count, available, in_use) = loop {
                let over_count = st.loaded.len() + st.reserved.len() >= max;
                let held: u64 = st.loaded.values().map(|e| e.bytes).sum();
                let promised: u64 = st.reserved.values().sum();
                // Loads in progress may not show in free memory yet: count them in
                // full. At worst this waits for them rather than failing.
                let mut available = self.memory.available().saturating_sub(promised);
                if let Some(budget) = config.budget_bytes {
                    available = available.min(budget.saturating_sub(held + promised));
                }
                if !over_count && need <= available {
                    // Room on the device: an idle model there to unload, when short, and
                    // only when unloading them all would make the whole model fit (else
                    // the load splits between the device and the CPU as things are).
                    let device_victim = device
                        .filter(|d| device_free + device_freed < d.bytes)
                        .and_then(|d| {
                            let idle: Vec<(String, u64, Duration)> = st
                                .loaded
                                .values()
                                .filter(|e| e.in_use() == 0)
                                .filter_map(|e| {
                                    E::placed(&e.model)
                                        .filter(|p| p.device_index == d.index)
                                        .map(|p| (e.key.clone(), p.device_bytes, e.idle_for()))
                                })
                                .collect();
                            let could_free: u64 = idle.iter().map(|(_, b, _)| b).sum();
                            (device_free + device_freed + could_free >= d.bytes)
                                .then(|| idle.into_iter().max_by_key(|(_, _, t)| *t))
                                .flatten()
                        });
                    if let Some((v, bytes, _)) = device_victim {
                        st.loaded.remove(&v);
                        device_freed += bytes;
                        evicted = true;
                        continue;
                    }
                    st.reserved.insert(id, need);
                    drop(st);
                    if evicted {
                        self.changes.bump();
                    }
                    return Ok(());
                }
                // Leases come and go without the state lock: read each count once, so
                // that the choice and any message agree.
                let in_use: Vec<(String, usize, Duration)> = st
                    .loaded
                    .values()
                    .map(|e| (e.key.clone(), e.in_use(), e.idle_for()))
                    .collect();
                let victim = in_use
                    .iter()
                    .filter(|(_, n, _)| *n == 0)
                    .max_by_key(|(_, _, idle)| *idle);
                match victim {
                    Some((v, _, _)) => {
                        st.loaded.remove(v);
                        evicted = true;
                    }
                    None => break (over_count, available, in_use),
                }
            };
            queued_behind.extend(st.reserved.keys().copied());
            let handing_over = st
                .loaded
                .values()
                .any(|e| queued_behind.contains(&e.id) && e.handed.load(Ordering::SeqCst) > 0);
            if !st.reserved.is_empty() || handing_over {
                drop(st);
                self.changes.wait_past(seen);
                continue;
            }
            drop(st);
            // A lease released while this looked: look again rather than refuse.
            let moved = self.changes.now() != seen;
            if evicted {
                self.changes.bump();
            }
            if moved {
                continue;
            }
            return Err(if over_count {
                busy(key, max, &in_use)
            } else {
                OrionError::InsufficientMemory {
                    what: key.to_string(),
                    need,
                    available,
                }
            });
        }
    }

    /// Forget `key`: it is no longer loaded for new requests; generations holding a
    /// lease finish, and the memory is freed when the last of them ends.
    pub(crate) fn unload(&self, key: &str) -> bool {
        let removed = self.state.lock().loaded.remove(key).is_some();
        if removed {
            self.changes.bump();
        }
        removed
    }

    pub(crate) fn mark_used(&self, key: &str) -> bool {
        match self.state.lock().loaded.get(key) {
            Some(e) => {
                e.touch();
                true
            }
            None => false,
        }
    }

    pub(crate) fn is_loaded(&self, key: &str) -> bool {
        self.state.lock().loaded.contains_key(key)
    }

    /// The models loaded now (a copy of the list: nothing is held while the caller uses
    /// them, and a model unloaded meanwhile stays alive until the copy is dropped).
    pub(crate) fn loaded_models(&self) -> Vec<Arc<LoadedModel<E::Model>>> {
        self.state.lock().loaded.values().cloned().collect()
    }

    /// Unload idle models unused for longer than the idle timeout; returns their keys.
    pub(crate) fn unload_expired(&self) -> Vec<String> {
        let Some(timeout) = self.config().idle_timeout else {
            return Vec::new();
        };
        let mut st = self.state.lock();
        let expired: Vec<String> = st
            .loaded
            .values()
            .filter(|e| e.in_use() == 0 && e.idle_for() >= timeout)
            .map(|e| e.key.clone())
            .collect();
        for k in &expired {
            st.loaded.remove(k);
        }
        drop(st);
        if !expired.is_empty() {
            self.changes.bump();
        }
        expired
    }

    /// Unload the least recently used idle model; returns its key and bytes.
    pub(crate) fn unload_lru_idle(&self) -> Option<(String, u64)> {
        let mut st = self.state.lock();
        let victim = st
            .loaded
            .values()
            .filter(|e| e.in_use() == 0)
            .max_by_key(|e| e.idle_for())
            .cloned()?;
        st.loaded.remove(&victim.key);
        drop(st);
        self.changes.bump();
        Some((victim.key.clone(), victim.bytes))
    }

    /// Unload the least recently used idle model with layers on GPU device `device` (its
    /// name): its key and the device bytes it held.
    pub(crate) fn unload_lru_idle_on(&self, device: &str) -> Option<(String, u64)> {
        let mut st = self.state.lock();
        let (victim, bytes) = st
            .loaded
            .values()
            .filter(|e| e.in_use() == 0)
            .filter_map(|e| {
                E::placed(&e.model)
                    .filter(|p| p.device == device && p.device_bytes > 0)
                    .map(|p| (e.clone(), p.device_bytes))
            })
            .max_by_key(|(e, _)| e.idle_for())?;
        st.loaded.remove(&victim.key);
        drop(st);
        self.changes.bump();
        Some((victim.key.clone(), bytes))
    }

    pub(crate) fn stats(&self) -> LoaderStats {
        let st = self.state.lock();
        let mut models: Vec<ModelStats> = st
            .loaded
            .values()
            .map(|e| ModelStats {
                key: e.key.clone(),
                idle_for: e.idle_for(),
                path: e.path.display().to_string(),
                quantization: e.quantization.clone(),
                bytes: e.bytes,
                last_used_ms: e.last_used_ms(),
                in_use: e.in_use(),
                loads: e.loads,
                placed: E::placed(&e.model),
            })
            .collect();
        models.sort_by(|a, b| a.key.cmp(&b.key));
        LoaderStats {
            loaded_models: st.loaded.len(),
            max_concurrent_models: self.config.lock().max_concurrent_models,
            loading: st.loading.len(),
            total_bytes: models.iter().map(|m| m.bytes).sum(),
            models,
        }
    }
}

/// `MODEL_BUSY` for `key`, when every loaded model is in use: `in_use` has each one's
/// key and lease count.
fn busy(key: &str, max: usize, in_use: &[(String, usize, Duration)]) -> OrionError {
    let mut keys: Vec<String> = in_use.iter().map(|(k, _, _)| echo(k)).collect();
    keys.sort();
    let leases: usize = in_use.iter().map(|(_, n, _)| n).sum();
    let models = match keys.len() {
        1 => format!("the one loaded model, {}, is", keys[0]),
        n => format!("all {n} loaded models ({}) are", keys.join(", ")),
    };
    OrionError::ModelBusy(format!(
        "cannot load {}: maxConcurrentModels is {max} and {models} in use ({leases} \
         generation{} running); wait for a generation to finish, unload a model, or raise \
         maxConcurrentModels",
        echo(key),
        if leases == 1 { "" } else { "s" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::llm::{ModelMeta, Progress};
    use std::path::Path;
    use std::sync::atomic::AtomicU64;

    struct FakeEngine {
        loads: AtomicU64,
        load_ms: u64,
        /// Loads running in the engine now, and the most there ever were at once.
        active: AtomicUsize,
        peak: AtomicUsize,
    }
    impl Engine for FakeEngine {
        type Model = String;
        fn probe(&self, path: &Path, _ctx: u32) -> Result<ModelMeta> {
            if path.to_string_lossy().contains("missing") {
                return Err(OrionError::ModelNotFound {
                    what: "model".into(),
                    searched: path.display().to_string(),
                });
            }
            Ok(ModelMeta {
                file_bytes: 100,
                kv_bytes_per_context: 10,
                quantization: None,
                ..ModelMeta::default()
            })
        }
        fn load(
            &self,
            path: &Path,
            _request: crate::engine::llm::LoadRequest,
            mut progress: Progress,
        ) -> Result<String> {
            let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            for i in 1..=4 {
                std::thread::sleep(Duration::from_millis(self.load_ms / 4));
                progress(i as f32 / 4.0);
            }
            self.loads.fetch_add(1, Ordering::SeqCst);
            self.active.fetch_sub(1, Ordering::SeqCst);
            Ok(path.display().to_string())
        }
    }
    struct Mem(u64);
    impl MemoryProbe for Mem {
        fn available(&self) -> u64 {
            self.0
        }
    }

    fn loader(max: usize, mem: u64, budget: Option<u64>) -> Arc<ModelLoader<FakeEngine>> {
        loader_with(max, mem, budget, 40)
    }

    fn loader_with(
        max: usize,
        mem: u64,
        budget: Option<u64>,
        load_ms: u64,
    ) -> Arc<ModelLoader<FakeEngine>> {
        Arc::new(ModelLoader::new(
            FakeEngine {
                loads: AtomicU64::new(0),
                load_ms,
                active: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
            },
            Box::new(Mem(mem)),
            LoaderConfig {
                max_concurrent_models: max,
                budget_bytes: budget,
                idle_timeout: None,
            },
        ))
    }

    fn model(key: &str) -> Resolved {
        Resolved {
            key: key.into(),
            path: PathBuf::from(format!("/m/{key}.gguf")),
            quantization: None,
            context_length: 512,
            sha256: None,
            size: None,
            hub: None,
            remote: None,
            gpu_layers: None,
        }
    }

    /// A fake GPU: `total` bytes of device memory (100 unless said); a model whose path
    /// says `gpu` takes 60, and one that says `kept` 40 more for a context it keeps.
    struct GpuFake {
        used: Arc<AtomicU64>,
        total: u64,
    }
    struct GpuModel {
        on_gpu: bool,
        kept: AtomicU64,
        used: Arc<AtomicU64>,
    }
    impl Drop for GpuModel {
        fn drop(&mut self) {
            if self.on_gpu {
                self.used.fetch_sub(60, Ordering::SeqCst);
            }
            GpuFake::free_kept(self);
        }
    }
    impl Engine for GpuFake {
        type Model = GpuModel;
        /// A model whose path says `gpu` has one layer (of 60 bytes) for the device.
        fn probe(&self, path: &Path, _ctx: u32) -> Result<ModelMeta> {
            let gpu = path.to_string_lossy().contains("gpu");
            Ok(ModelMeta {
                file_bytes: 100,
                kv_bytes_per_context: 10,
                quantization: None,
                layout: crate::engine::llm::Layout {
                    layer_bytes: if gpu { vec![60] } else { Vec::new() },
                    ..Default::default()
                },
            })
        }
        fn load(
            &self,
            path: &Path,
            request: crate::engine::llm::LoadRequest,
            _progress: Progress,
        ) -> Result<GpuModel> {
            let on_gpu = request.device.is_some();
            if on_gpu {
                self.used.fetch_add(60, Ordering::SeqCst);
            }
            let kept = if on_gpu && path.to_string_lossy().contains("kept") {
                40
            } else {
                0
            };
            self.used.fetch_add(kept, Ordering::SeqCst);
            Ok(GpuModel {
                on_gpu,
                kept: AtomicU64::new(kept),
                used: self.used.clone(),
            })
        }
        fn placed(model: &GpuModel) -> Option<crate::engine::llm::Placed> {
            model.on_gpu.then(|| crate::engine::llm::Placed {
                device_index: 0,
                device: "GPU0".into(),
                backend: "Fake".into(),
                gpu_layers: 31,
                layers: 30,
                device_bytes: 60,
                reason: String::new(),
            })
        }
        fn device_need(
            &self,
            meta: &ModelMeta,
            _gpu_layers: Option<u32>,
        ) -> Result<Option<crate::engine::llm::DeviceNeed>> {
            Ok(
                (!meta.layout.layer_bytes.is_empty()).then_some(crate::engine::llm::DeviceNeed {
                    index: 0,
                    bytes: 60,
                }),
            )
        }
        fn device_free(&self, _index: usize) -> u64 {
            self.total - self.used.load(Ordering::SeqCst)
        }
        fn free_kept(model: &GpuModel) -> usize {
            let kept = model.kept.swap(0, Ordering::SeqCst);
            model.used.fetch_sub(kept, Ordering::SeqCst);
            usize::from(kept > 0)
        }
    }

    /// A loader of up to 4 models on a [`GpuFake`] of `total` bytes, and its bytes in use.
    fn gpu_loader(total: u64) -> (ModelLoader<GpuFake>, Arc<AtomicU64>) {
        let used = Arc::new(AtomicU64::new(0));
        let l = ModelLoader::new(
            GpuFake {
                used: used.clone(),
                total,
            },
            Box::new(Mem(1 << 30)),
            LoaderConfig {
                max_concurrent_models: 4,
                budget_bytes: None,
                idle_timeout: None,
            },
        );
        (l, used)
    }

    #[test]
    fn a_load_for_a_short_gpu_frees_kept_contexts_there_before_unloading_a_model() {
        let (l, used) = gpu_loader(150);
        drop(l.acquire(&model("gpu-kept-a"), None).unwrap());
        assert_eq!(used.load(Ordering::SeqCst), 100);
        // gpu-b needs 60 of the 50 free: a's kept context goes, a stays loaded.
        let b = l.acquire(&model("gpu-b"), None).unwrap();
        assert!(l.is_loaded("gpu-kept-a"));
        assert_eq!(used.load(Ordering::SeqCst), 120);
        // Nothing kept left: gpu-c needs 60 of the 30 free, so idle a is unloaded.
        drop(l.acquire(&model("gpu-c"), None).unwrap());
        assert!(!l.is_loaded("gpu-kept-a"));
        assert!(l.is_loaded("gpu-b") && l.is_loaded("gpu-c"));
        assert_eq!(used.load(Ordering::SeqCst), 120);
        drop(b);
    }

    #[test]
    fn a_load_for_a_full_gpu_unloads_idle_models_there_only_and_never_fails_for_it() {
        let (l, used) = gpu_loader(100);
        drop(l.acquire(&model("cpu-a"), None).unwrap());
        drop(l.acquire(&model("gpu-b"), None).unwrap());
        assert_eq!(used.load(Ordering::SeqCst), 60);
        // gpu-c needs 60 of the 40 free: idle gpu-b goes (not cpu-a), and its memory with it.
        let c = l.acquire(&model("gpu-c"), None).unwrap();
        assert!(!l.is_loaded("gpu-b"));
        assert!(l.is_loaded("cpu-a"));
        assert_eq!(used.load(Ordering::SeqCst), 60);
        assert_eq!(
            l.stats()
                .models
                .iter()
                .filter_map(|m| m.placed.as_ref())
                .count(),
            1
        );
        // gpu-c in use: gpu-d loads anyway (it would fit what is left), nothing else goes.
        drop(l.acquire(&model("gpu-d"), None).unwrap());
        assert!(l.is_loaded("gpu-c") && l.is_loaded("cpu-a") && l.is_loaded("gpu-d"));
        drop(c);
    }

    #[test]
    fn concurrent_loads_of_one_key_share_one_load_and_progress_ends_at_100() {
        let l = loader(2, 1 << 30, None);
        let seen: Vec<Arc<Mutex<Vec<u32>>>> =
            (0..8).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
        let threads: Vec<_> = seen
            .iter()
            .map(|s| {
                let (l, s) = (l.clone(), s.clone());
                std::thread::spawn(move || {
                    let lease = l
                        .acquire(&model("a"), Some(Arc::new(move |p| s.lock().push(p))))
                        .unwrap();
                    lease.model().loads
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 1);
        }
        assert_eq!(l.engine().loads.load(Ordering::SeqCst), 1);
        for s in &seen {
            let v = s.lock().clone();
            assert_eq!(*v.last().unwrap(), 100);
            assert!(v.windows(2).all(|w| w[0] <= w[1]), "{v:?}");
        }
        assert_eq!(l.stats().models[0].loads, 1);
    }

    #[test]
    fn the_least_recently_used_idle_model_is_evicted() {
        let l = loader(2, 1 << 30, None);
        drop(l.acquire(&model("a"), None).unwrap());
        std::thread::sleep(Duration::from_millis(5));
        drop(l.acquire(&model("b"), None).unwrap());
        std::thread::sleep(Duration::from_millis(5));
        assert!(l.mark_used("a"));
        drop(l.acquire(&model("c"), None).unwrap());
        let keys: Vec<_> = l.stats().models.into_iter().map(|m| m.key).collect();
        assert_eq!(keys, vec!["a", "c"]);
        assert!(l.stats().loaded_models <= l.stats().max_concurrent_models);
    }

    #[test]
    fn a_model_in_use_is_never_evicted() {
        let l = loader(1, 1 << 30, None);
        let busy = l.acquire(&model("a"), None).unwrap();
        let e = l.acquire(&model("b"), None).err().unwrap();
        assert_eq!(e.code(), "MODEL_BUSY");
        assert!(l.is_loaded("a"));
        drop(busy);
        assert!(l.acquire(&model("b"), None).is_ok());
        assert!(!l.is_loaded("a"));
    }

    #[test]
    fn memory_limits_evict_idle_models_or_reject_with_both_numbers() {
        // Budget fits one model (110 bytes each with its KV cache) but not two.
        let l = loader(4, 1 << 30, Some(150));
        drop(l.acquire(&model("a"), None).unwrap());
        drop(l.acquire(&model("b"), None).unwrap());
        assert_eq!(l.stats().loaded_models, 1);
        let tiny = loader(4, 50, None);
        let e = tiny.acquire(&model("a"), None).err().unwrap();
        assert_eq!(e.code(), "INSUFFICIENT_MEMORY");
        assert!(
            e.to_string().contains("110 B") && e.to_string().contains("50 B"),
            "{e}"
        );
    }

    #[test]
    fn unloading_a_model_in_use_waits_for_its_lease() {
        let l = loader(2, 1 << 30, None);
        let lease = l.acquire(&model("a"), None).unwrap();
        assert!(l.unload("a"));
        assert!(!l.unload("a"));
        assert_eq!(l.stats().loaded_models, 0);
        assert_eq!(lease.model().key, "a"); // still usable by its holder
        drop(lease);
        let again = l.acquire(&model("a"), None).unwrap();
        assert_eq!(again.model().loads, 2);
    }

    #[test]
    fn failed_loads_reach_every_waiter_and_are_not_cached() {
        let l = loader(2, 1 << 30, None);
        let e = l.acquire(&model("missing"), None).err().unwrap();
        assert_eq!(e.code(), "MODEL_NOT_FOUND");
        assert_eq!(l.stats().loading, 0);
        assert_eq!(l.stats().loaded_models, 0);
    }

    #[test]
    fn a_file_of_the_wrong_size_is_refused_and_hub_names_are_given_for_missing_files() {
        let l = loader(2, 1 << 30, None);
        let wrong = Resolved {
            size: Some(99),
            ..model("a")
        };
        let e = l.acquire(&wrong, None).err().unwrap();
        assert_eq!(e.code(), "MODEL_LOAD_FAILED");
        assert!(e.to_string().contains("99"));
        let missing = Resolved {
            hub: Some(("org/repo".into(), "m.gguf".into())),
            ..model("missing")
        };
        let e = l.acquire(&missing, None).err().unwrap();
        assert_eq!(e.code(), "MODEL_NOT_FOUND");
        assert!(e.to_string().contains("org/repo"), "{e}");
    }

    #[test]
    fn idle_models_expire() {
        let l = loader(2, 1 << 30, None);
        l.set_config(LoaderConfig {
            idle_timeout: Some(Duration::from_millis(10)),
            ..l.config()
        });
        drop(l.acquire(&model("a"), None).unwrap());
        let busy = l.acquire(&model("b"), None).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(l.unload_expired(), vec!["a".to_string()]);
        drop(busy);
    }

    #[test]
    fn concurrent_loads_of_different_keys_take_turns_for_one_slot() {
        for round in 0..50 {
            let l = loader_with(1, 1 << 30, None, 8);
            let threads: Vec<_> = ["a", "b"]
                .into_iter()
                .map(|k| {
                    let l = l.clone();
                    std::thread::spawn(move || l.acquire(&model(k), None).map(drop))
                })
                .collect();
            for t in threads {
                if let Err(e) = t.join().unwrap() {
                    panic!("round {round}: {e}");
                }
            }
            let stats = l.stats();
            assert_eq!(
                (stats.loaded_models, stats.loading),
                (1, 0),
                "round {round}"
            );
            assert_eq!(l.engine().loads.load(Ordering::SeqCst), 2);
            assert_eq!(l.engine().peak.load(Ordering::SeqCst), 1, "round {round}");
        }
    }

    #[test]
    fn many_threads_loading_several_keys_never_fail_or_pass_the_limit() {
        for (max, keys) in [(1, 3), (2, 3), (2, 5)] {
            for round in 0..50 {
                let l = loader_with(max, 1 << 30, None, 4);
                let threads: Vec<_> = (0..8)
                    .map(|i| {
                        let l = l.clone();
                        std::thread::spawn(move || {
                            l.load(&model(&format!("k{}", i % keys)), None).map(drop)
                        })
                    })
                    .collect();
                for t in threads {
                    if let Err(e) = t.join().unwrap() {
                        panic!("max {max}, {keys} keys, round {round}: {e}");
                    }
                }
                let stats = l.stats();
                assert!(stats.loaded_models <= max, "{stats:?}");
                assert_eq!(stats.loading, 0);
                assert!(l.engine().peak.load(Ordering::SeqCst) <= max);
                assert!(l.engine().loads.load(Ordering::SeqCst) >= keys as u64);
            }
        }
    }

    #[test]
    fn a_load_queued_behind_another_waits_for_that_loads_callers_to_let_go() {
        for round in 0..50 {
            let l = loader_with(1, 1 << 30, None, 20);
            let first = {
                let l = l.clone();
                std::thread::spawn(move || {
                    let lease = l.acquire(&model("a"), None)?;
                    std::thread::sleep(Duration::from_millis(5)); // generating
                    drop(lease);
                    Ok::<_, OrionError>(())
                })
            };
            // Until "a" holds the slot and is loading (for 20 ms).
            while l.engine().peak.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_micros(100));
            }
            let second = l.acquire(&model("b"), None).map(drop);
            first.join().unwrap().unwrap();
            if let Err(e) = second {
                panic!("round {round}: {e}");
            }
            assert!(l.is_loaded("b") && !l.is_loaded("a"));
        }
    }

    #[test]
    fn a_model_generating_before_a_load_asks_is_reported_busy_at_once() {
        let l = loader_with(1, 1 << 30, None, 8);
        let generating = l.acquire(&model("a"), None).unwrap();
        for _ in 0..50 {
            let t = Instant::now();
            let e = l.acquire(&model("b"), None).err().unwrap();
            assert!(
                t.elapsed() < Duration::from_millis(100),
                "{:?}",
                t.elapsed()
            );
            assert_eq!(e.code(), "MODEL_BUSY");
            assert_eq!(
                e.to_string(),
                "cannot load \"b\": maxConcurrentModels is 1 and the one loaded model, \"a\", is \
                 in use (1 generation running); wait for a generation to finish, unload a model, \
                 or raise maxConcurrentModels"
            );
        }
        assert_eq!(l.stats().loading, 0);
        assert_eq!(l.engine().loads.load(Ordering::SeqCst), 1);

        let l = loader_with(2, 1 << 30, None, 8);
        let a = [
            l.acquire(&model("a"), None).unwrap(),
            l.acquire(&model("a"), None).unwrap(),
        ];
        let b = l.acquire(&model("b"), None).unwrap();
        let e = l.acquire(&model("c"), None).err().unwrap();
        assert!(
            e.to_string()
                .contains("all 2 loaded models (\"a\", \"b\") are in use (3 generations running)"),
            "{e}"
        );
        drop((a, b, generating));
        assert!(l.acquire(&model("c"), None).is_ok());
    }

    #[test]
    fn the_registry_sha256_is_checked_at_load() {
        let path = std::env::temp_dir().join(format!("orion-loader-{}.gguf", std::process::id()));
        std::fs::write(&path, b"hello\n").unwrap();
        let right = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
        let wrong = "e258d248fda94c63753607f7c4494ee0fcbe92f1a76bfdac795c9d84101eb317";
        let with = |key: &str, sha: &str| Resolved {
            path: path.clone(),
            sha256: Some(sha.into()),
            ..model(key)
        };
        let l = loader(1, 1 << 30, None);
        drop(l.acquire(&model("other"), None).unwrap());
        let e = l.acquire(&with("bad", wrong), None).err().unwrap();
        assert_eq!(e.code(), "MODEL_LOAD_FAILED");
        assert!(
            e.to_string().contains(right) && e.to_string().contains(wrong),
            "{e}"
        );
        assert!(
            l.is_loaded("other"),
            "a bad file must not evict a good model"
        );
        assert!(l.acquire(&with("good", right), None).is_ok());
        std::fs::remove_file(&path).unwrap();
    }
}
