//! The `MemoryMonitor` class, all of its methods in one `#[napi] impl`, and
//! `getMemoryMonitor`. Every method works on the process's one monitor
//! ([`crate::runtime::memory_monitor`]).

use super::args::{read_config, read_interval};
use super::subscribers::{callback, subscribe, Subscriber};
use super::types::{MemoryAlert, MemoryMonitorStats, MemorySnapshot};
use crate::error::OrionError;
use crate::js::{js_error, promise};
use crate::runtime::{self, memory_monitor, memory_reading};
use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

type R<T> = std::result::Result<T, OrionError>;

/// The process-wide memory monitor, the same history from every thread.
#[napi]
pub struct MemoryMonitor {}

/// The memory monitor. Options (process-wide): `thresholds` `{ medium, high, critical }`
/// (fractions of the budget, default 0.6/0.75/0.9), `historySize` (100), `budgetBytes`
/// (0: none), `autoFree` (true), `freeAt` (`'critical'`), `rssGrowthAlertBytesPerSec`.
#[napi(ts_args_type = "options?: MemoryMonitorOptions", catch_unwind)]
pub fn get_memory_monitor(env: Env, options: Option<Unknown>) -> Result<MemoryMonitor> {
    configure(options).map_err(|e| js_error(&env, &e))?;
    runtime::auto_start_memory_monitor().map_err(|e| js_error(&env, &e))?;
    Ok(MemoryMonitor {})
}

fn configure(options: Option<Unknown>) -> R<()> {
    let m = memory_monitor();
    let config = read_config(options, m.config())?;
    m.set_config(config);
    Ok(())
}

/// `process.memoryUsage()` of the calling thread: its heap numbers.
fn js_heap(env: &Env) -> Option<(u64, u64, u64)> {
    let process: Object = env.get_global().ok()?.get_named_property("process").ok()?;
    let usage: Function<(), Object> = process.get_named_property("memoryUsage").ok()?;
    let u = usage.apply(process, ()).ok()?;
    let n = |k: &str| u.get_named_property::<f64>(k).ok().map(|v| v as u64);
    Some((n("heapUsed")?, n("heapTotal")?, n("external")?))
}

// The JS `MemoryMonitor`'s methods work on the process's one monitor, not on the
// (empty) object they are called on.
#[allow(clippy::unused_self)]
#[napi]
impl MemoryMonitor {
    /// Measure now (off the JS thread); at high enough pressure, free idle models and
    /// the embedding cache first. Recorded in the shared history.
    #[napi(ts_return_type = "Promise<MemorySnapshot>", catch_unwind)]
    pub fn take_snapshot<'e>(&self, env: &'e Env) -> Result<PromiseRaw<'e, MemorySnapshot>> {
        let heap = js_heap(env);
        promise(
            env,
            async move {
                napi::bindgen_prelude::spawn_blocking(move || {
                    memory_monitor().take(memory_reading, heap)
                })
                .await
                .map_err(|e| OrionError::Internal(format!("snapshot thread: {e}")))
            },
            |_, s| Ok(MemorySnapshot::from(s)),
        )
    }

    /// The history, oldest first.
    #[napi(catch_unwind)]
    pub fn get_snapshots(&self) -> Vec<MemorySnapshot> {
        memory_monitor()
            .snapshots()
            .into_iter()
            .map(MemorySnapshot::from)
            .collect()
    }

    #[napi(catch_unwind)]
    pub fn get_stats(&self) -> MemoryMonitorStats {
        memory_monitor().stats().into()
    }

    #[napi(catch_unwind)]
    pub fn get_alerts(&self) -> Vec<MemoryAlert> {
        memory_monitor()
            .alerts()
            .into_iter()
            .map(MemoryAlert::from)
            .collect()
    }

    #[napi(getter, catch_unwind)]
    pub fn has_alerts(&self) -> bool {
        !memory_monitor().alerts().is_empty()
    }

    #[napi(catch_unwind)]
    pub fn clear_alerts(&self) {
        memory_monitor().clear_alerts();
    }

    /// Take a snapshot every `intervalMs` on a background thread (process-wide; calling
    /// it again while running changes the period). Subscribers see each one.
    #[napi(ts_args_type = "intervalMs: number", catch_unwind)]
    pub fn start(&self, env: Env, interval_ms: Unknown) -> Result<()> {
        let interval = read_interval(&interval_ms).map_err(|e| js_error(&env, &e))?;
        runtime::start_memory_monitor(interval);
        Ok(())
    }

    #[napi(catch_unwind)]
    pub fn stop(&self) {
        runtime::stop_memory_monitor();
    }

    #[napi(getter, catch_unwind)]
    pub fn is_running(&self) -> bool {
        memory_monitor().is_running()
    }

    /// `cb(snapshot)` on this thread for every snapshot any thread takes. Returns the
    /// function that unsubscribes.
    #[napi(
        ts_args_type = "cb: (snapshot: MemorySnapshot) => void",
        ts_return_type = "() => void",
        catch_unwind
    )]
    pub fn on_snapshot<'e>(&self, env: &'e Env, cb: Unknown) -> Result<Function<'e, (), ()>> {
        let f = callback(&cb, "onSnapshot").map_err(|e| js_error(env, &e))?;
        subscribe(env, Subscriber::Snapshots(f))
    }

    /// `cb(alert)` on this thread for every alert. Returns the function that unsubscribes.
    #[napi(
        ts_args_type = "cb: (alert: MemoryAlert) => void",
        ts_return_type = "() => void",
        catch_unwind
    )]
    pub fn on_alert<'e>(&self, env: &'e Env, cb: Unknown) -> Result<Function<'e, (), ()>> {
        let f = callback(&cb, "onAlert").map_err(|e| js_error(env, &e))?;
        subscribe(env, Subscriber::Alerts(f))
    }
}
