//! The model loader: which LLMs are loaded, loading them once however many threads
//! ask, and keeping within the model count and memory limits by evicting the least
//! recently used idle model. Generic over [`Engine`] so that the policy is tested
//! without llama.cpp.

use super::registry::Resolved;
use crate::error::{OrionError, Result};
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the loader needs to know about a model file before loading it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelMeta {
    pub file_bytes: u64,
    /// Bytes of KV cache one context of the configured size needs.
    pub kv_bytes_per_context: u64,
}

pub type Progress = Box<dyn FnMut(f32) + Send>;
/// A caller's progress callback: integer percents.
pub type ProgressFn = Arc<dyn Fn(u32) + Send + Sync>;

pub trait Engine: Send + Sync + 'static {
    type Model: Send + Sync + 'static;
    /// Read the file's header: fails with MODEL_NOT_FOUND or MODEL_LOAD_FAILED.
    fn probe(&self, path: &Path, context_length: u32) -> Result<ModelMeta>;
    /// Load the model, reporting progress in 0..=1.
    fn load(&self, path: &Path, progress: Progress) -> Result<Self::Model>;
}

/// Where memory for a new model must come from.
pub trait MemoryProbe: Send + Sync + 'static {
    /// Bytes available to this process now (the smallest of free memory, the cgroup
    /// headroom and the configured budget).
    fn available(&self) -> u64;
}

#[derive(Clone, Debug, PartialEq)]
pub struct LoaderConfig {
    pub max_concurrent_models: usize,
    /// Optional cap on the bytes orion-native's models may use.
    pub budget_bytes: Option<u64>,
    /// Unload a model unused for this long.
    pub idle_timeout: Option<Duration>,
}

pub struct LoadedModel<M> {
    pub key: String,
    pub path: PathBuf,
    pub quantization: Option<String>,
    pub context_length: u32,
    pub bytes: u64,
    pub model: M,
    pub loads: u64,
    in_use: AtomicUsize,
    last_used: Mutex<(Instant, SystemTime)>,
}

impl<M> LoadedModel<M> {
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::SeqCst)
    }

    fn touch(&self) {
        *self.last_used.lock() = (Instant::now(), SystemTime::now());
    }

    pub fn idle_for(&self) -> Duration {
        self.last_used.lock().0.elapsed()
    }

    pub fn last_used_ms(&self) -> f64 {
        let t = self.last_used.lock().1;
        t.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }
}

/// A model in use: it is not evicted while a lease is alive, and its memory is freed
/// when the last lease of an unloaded model drops.
pub struct Lease<M> {
    entry: Arc<LoadedModel<M>>,
}

impl<M> Lease<M> {
    pub fn model(&self) -> &LoadedModel<M> {
        &self.entry
    }
}

impl<M> Drop for Lease<M> {
    fn drop(&mut self) {
        self.entry.touch();
        self.entry.in_use.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Loading<M> {
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
    loads: HashMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelStats {
    pub key: String,
    pub idle_for: Duration,
    pub path: String,
    pub quantization: Option<String>,
    pub bytes: u64,
    pub last_used_ms: f64,
    pub in_use: usize,
    pub loads: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LoaderStats {
    pub loaded_models: usize,
    pub max_concurrent_models: usize,
    pub loading: usize,
    pub total_bytes: u64,
    pub models: Vec<ModelStats>,
}

pub struct ModelLoader<E: Engine> {
    engine: E,
    memory: Box<dyn MemoryProbe>,
    config: Mutex<LoaderConfig>,
    state: Mutex<State<E::Model>>,
}

impl<E: Engine> ModelLoader<E> {
    pub fn new(engine: E, memory: Box<dyn MemoryProbe>, config: LoaderConfig) -> Self {
        Self {
            engine,
            memory,
            config: Mutex::new(config),
            state: Mutex::new(State {
                loaded: HashMap::new(),
                loading: HashMap::new(),
                loads: HashMap::new(),
            }),
        }
    }

    pub fn engine(&self) -> &E {
        &self.engine
    }

    pub fn config(&self) -> LoaderConfig {
        self.config.lock().clone()
    }

    pub fn set_config(&self, config: LoaderConfig) {
        *self.config.lock() = config;
    }

    /// Load `model` (or join a load in progress) and lease it. Blocks: call it from a
    /// worker thread. `progress` gets integers that never decrease and end at 100.
    pub fn acquire(
        &self,
        model: &Resolved,
        progress: Option<ProgressFn>,
    ) -> Result<Lease<E::Model>> {
        let slot = {
            let mut st = self.state.lock();
            if let Some(entry) = st.loaded.get(&model.key) {
                return Ok(self.lease(entry.clone(), progress));
            }
            match st.loading.get(&model.key) {
                Some(slot) => {
                    let slot = slot.clone();
                    drop(st);
                    return self.wait_for(&slot, progress);
                }
                None => {
                    let slot = Arc::new(Loading {
                        state: Mutex::new(LoadingState {
                            percent: 0,
                            listeners: progress.iter().cloned().collect(),
                            result: None,
                        }),
                        done: Condvar::new(),
                    });
                    st.loading.insert(model.key.clone(), slot.clone());
                    slot
                }
            }
        };
        let result = self.load_now(model, &slot);
        let mut st = self.state.lock();
        st.loading.remove(&model.key);
        if let Ok(entry) = &result {
            st.loaded.insert(model.key.clone(), entry.clone());
        }
        drop(st);
        {
            let mut ls = slot.state.lock();
            ls.result = Some(result.clone());
            ls.listeners.clear();
        }
        slot.done.notify_all();
        result.map(|entry| self.lease(entry, progress))
    }

    fn lease(
        &self,
        entry: Arc<LoadedModel<E::Model>>,
        progress: Option<ProgressFn>,
    ) -> Lease<E::Model> {
        entry.in_use.fetch_add(1, Ordering::SeqCst);
        entry.touch();
        if let Some(p) = progress {
            p(100);
        }
        Lease { entry }
    }

    fn wait_for(
        &self,
        slot: &Arc<Loading<E::Model>>,
        progress: Option<ProgressFn>,
    ) -> Result<Lease<E::Model>> {
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
        result.map(|entry| self.lease(entry, progress))
    }

    fn load_now(
        &self,
        model: &Resolved,
        slot: &Arc<Loading<E::Model>>,
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
        if let Some(size) = model.size.filter(|&s| s != meta.file_bytes) {
            return Err(OrionError::ModelLoadFailed(format!(
                "{} is {} bytes but the registry says {size}: the file is incomplete or a different build",
                model.path.display(),
                meta.file_bytes
            )));
        }
        let need = meta.file_bytes + meta.kv_bytes_per_context;
        self.make_room(&model.key, need)?;
        let reporter = slot.clone();
        let loaded = self
            .engine
            .load(&model.path, Box::new(move |f| reporter.report(f)))?;
        let mut st = self.state.lock();
        let loads = st.loads.entry(model.key.clone()).or_insert(0);
        *loads += 1;
        Ok(Arc::new(LoadedModel {
            key: model.key.clone(),
            path: model.path.clone(),
            quantization: model.quantization.clone(),
            context_length: model.context_length,
            bytes: meta.file_bytes,
            model: loaded,
            loads: *loads,
            in_use: AtomicUsize::new(0),
            last_used: Mutex::new((Instant::now(), SystemTime::now())),
        }))
    }

    /// Evict idle models (least recently used first) until one more model fits the
    /// count limit and `need` bytes fit in memory.
    fn make_room(&self, key: &str, need: u64) -> Result<()> {
        let config = self.config();
        let mut st = self.state.lock();
        let others_loading = st.loading.len().saturating_sub(1);
        loop {
            let over_count = st.loaded.len() + others_loading >= config.max_concurrent_models;
            let held: u64 = st.loaded.values().map(|e| e.bytes).sum();
            let mut available = self.memory.available();
            if let Some(budget) = config.budget_bytes {
                available = available.min(budget.saturating_sub(held));
            }
            if !over_count && need <= available {
                return Ok(());
            }
            let victim = st
                .loaded
                .values()
                .filter(|e| e.in_use() == 0)
                .max_by_key(|e| e.idle_for())
                .map(|e| e.key.clone());
            match victim {
                Some(v) => {
                    st.loaded.remove(&v);
                }
                None if over_count => {
                    return Err(OrionError::ModelBusy(format!(
                        "cannot load {key:?}: {} models are loaded (maxConcurrentModels {}) and all are \
                         generating; wait for a generation to finish, unload one, or raise maxConcurrentModels",
                        st.loaded.len(),
                        config.max_concurrent_models
                    )))
                }
                None => return Err(OrionError::InsufficientMemory { what: key.to_string(), need, available }),
            }
        }
    }

    /// Forget `key`: it is no longer loaded for new requests; generations holding a
    /// lease finish, and the memory is freed when the last of them ends.
    pub fn unload(&self, key: &str) -> bool {
        self.state.lock().loaded.remove(key).is_some()
    }

    pub fn mark_used(&self, key: &str) -> bool {
        match self.state.lock().loaded.get(key) {
            Some(e) => {
                e.touch();
                true
            }
            None => false,
        }
    }

    pub fn is_loaded(&self, key: &str) -> bool {
        self.state.lock().loaded.contains_key(key)
    }

    /// Unload idle models unused for longer than the idle timeout; returns their keys.
    pub fn unload_expired(&self) -> Vec<String> {
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
        expired
    }

    /// Unload the least recently used idle model; returns its key and bytes.
    pub fn unload_lru_idle(&self) -> Option<(String, u64)> {
        let mut st = self.state.lock();
        let victim = st
            .loaded
            .values()
            .filter(|e| e.in_use() == 0)
            .max_by_key(|e| e.idle_for())
            .cloned()?;
        st.loaded.remove(&victim.key);
        Some((victim.key.clone(), victim.bytes))
    }

    pub fn stats(&self) -> LoaderStats {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    struct FakeEngine {
        loads: AtomicU64,
        load_ms: u64,
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
            })
        }
        fn load(&self, path: &Path, mut progress: Progress) -> Result<String> {
            for i in 1..=4 {
                std::thread::sleep(Duration::from_millis(self.load_ms / 4));
                progress(i as f32 / 4.0);
            }
            self.loads.fetch_add(1, Ordering::SeqCst);
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
        Arc::new(ModelLoader::new(
            FakeEngine {
                loads: AtomicU64::new(0),
                load_ms: 40,
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
        }
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
}
