use super::options::Options;
use super::{js_error, promise};
use crate::error::OrionError;
use crate::monitor::{MonitorConfig, Pressure, Snapshot, Thresholds};
use crate::runtime::{memory_monitor, memory_reading};
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Env;
use napi_derive::napi;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Once};
use std::time::Duration;

type R<T> = std::result::Result<T, OrionError>;

const MONITOR_OPTIONS: &[&str] = &[
    "thresholds",
    "historySize",
    "budgetBytes",
    "autoFree",
    "freeAt",
    "rssGrowthAlertBytesPerSec",
];

#[napi(object)]
pub struct SystemMemoryInfo {
    pub total: i64,
    pub available: i64,
    pub used: i64,
    pub swap_total: i64,
    pub swap_used: i64,
    /// The cgroup's limit, when the process runs in one that sets it.
    pub cgroup_limit: Option<i64>,
}

#[napi(object)]
pub struct ProcessMemoryInfo {
    pub rss: i64,
    pub virtual_bytes: i64,
}

#[napi(object)]
pub struct JsHeapInfo {
    pub used: i64,
    pub total: i64,
    pub external: i64,
}

#[napi(object)]
pub struct HeldModelInfo {
    pub key: String,
    pub bytes: i64,
    pub quantization: Option<String>,
    pub in_use: bool,
    pub idle_ms: f64,
}

#[napi(object)]
pub struct OrionMemoryInfo {
    pub models: Vec<HeldModelInfo>,
    pub embedding_cache_bytes: i64,
}

#[napi(object)]
pub struct MemorySnapshot {
    /// Milliseconds since the epoch.
    pub timestamp: f64,
    pub system: SystemMemoryInfo,
    pub process: ProcessMemoryInfo,
    /// The heap of the thread that took the snapshot.
    pub js_heap: Option<JsHeapInfo>,
    pub orion: OrionMemoryInfo,
    /// What pressure is measured against: `budgetBytes`, or the memory the process may use.
    pub budget_bytes: i64,
    pub used_bytes: i64,
    pub used_fraction: f64,
    #[napi(ts_type = "'low' | 'medium' | 'high' | 'critical'")]
    pub pressure: String,
    pub is_healthy: bool,
    pub is_critical: bool,
    pub recommendations: Vec<String>,
    /// What the monitor freed before taking this snapshot.
    pub actions: Vec<String>,
}

#[napi(object)]
pub struct MemoryAlert {
    pub timestamp: f64,
    /// `'pressure'`, `'rss-growth'` or `'freed'`.
    pub kind: String,
    pub pressure: String,
    pub message: String,
}

#[napi(object)]
pub struct PressureTimes {
    pub low: f64,
    pub medium: f64,
    pub high: f64,
    pub critical: f64,
}

#[napi(object)]
pub struct MemoryMonitorStats {
    pub count: i64,
    pub current: Option<MemorySnapshot>,
    pub peak_rss: i64,
    pub min_used_fraction: f64,
    pub mean_used_fraction: f64,
    pub max_used_fraction: f64,
    /// Milliseconds spent at each pressure level.
    pub time_at_ms: PressureTimes,
}

fn to_js(s: Snapshot) -> MemorySnapshot {
    let sys = s.reading.system;
    MemorySnapshot {
        timestamp: s.timestamp_ms,
        system: SystemMemoryInfo {
            total: sys.total as i64,
            available: sys.available as i64,
            used: sys.used as i64,
            swap_total: sys.swap_total as i64,
            swap_used: sys.swap_used as i64,
            cgroup_limit: sys.cgroup_limit.map(|l| l as i64),
        },
        process: ProcessMemoryInfo {
            rss: s.reading.rss as i64,
            virtual_bytes: s.reading.virtual_bytes as i64,
        },
        js_heap: s.js_heap.map(|(used, total, external)| JsHeapInfo {
            used: used as i64,
            total: total as i64,
            external: external as i64,
        }),
        orion: OrionMemoryInfo {
            models: s
                .models
                .into_iter()
                .map(|m| HeldModelInfo {
                    key: m.key,
                    bytes: m.bytes as i64,
                    quantization: m.quantization,
                    in_use: m.in_use,
                    idle_ms: m.idle_for.as_secs_f64() * 1000.0,
                })
                .collect(),
            embedding_cache_bytes: s.embedding_cache_bytes as i64,
        },
        budget_bytes: s.budget_bytes as i64,
        used_bytes: s.used_bytes as i64,
        used_fraction: s.used_fraction,
        pressure: s.pressure.as_str().to_string(),
        is_healthy: s.pressure <= Pressure::Medium,
        is_critical: s.pressure == Pressure::Critical,
        recommendations: s.recommendations,
        actions: s.actions,
    }
}

/// The process-wide memory monitor, the same history from every thread.
#[napi]
pub struct MemoryMonitor {}

fn alert_to_js(a: crate::monitor::Alert) -> MemoryAlert {
    MemoryAlert {
        timestamp: a.timestamp_ms,
        kind: a.kind.to_string(),
        pressure: a.pressure.as_str().to_string(),
        message: a.message,
    }
}

type SnapshotTsfn =
    ThreadsafeFunction<MemorySnapshot, Unknown<'static>, MemorySnapshot, Status, false, true>;
type AlertTsfn =
    ThreadsafeFunction<MemoryAlert, Unknown<'static>, MemoryAlert, Status, false, true>;

enum Subscriber {
    Snapshots(SnapshotTsfn),
    Alerts(AlertTsfn),
}

/// Every thread's subscriptions. A subscriber whose thread has gone (its worker
/// exited) is dropped the first time a call to it fails.
static SUBSCRIBERS: LazyLock<Mutex<Vec<(u64, Subscriber)>>> = LazyLock::new(Default::default);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Where a monitoring process leaves its latest snapshot for `orion-native status`.
fn status_file() -> std::path::PathBuf {
    crate::paths::default_cache_dir()
        .join("status")
        .join(format!("{}.json", std::process::id()))
}

/// Background monitoring publishes each snapshot for `orion-native status`, which runs
/// in another process. Written through a temporary file so readers never see half.
fn publish(snap: &Snapshot) {
    let file = status_file();
    let Some(dir) = file.parent() else { return };
    let json = snap.to_json(&memory_monitor().alerts());
    let tmp = file.with_extension("tmp");
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, json.to_string()))
        .and_then(|()| std::fs::rename(&tmp, &file));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

fn observe(snap: &Snapshot, alerts: &[crate::monitor::Alert]) {
    if memory_monitor().is_running() {
        publish(snap);
    }
    let mut subs = SUBSCRIBERS.lock();
    subs.retain(|(_, sub)| match sub {
        Subscriber::Snapshots(f) => {
            f.call(to_js(snap.clone()), ThreadsafeFunctionCallMode::NonBlocking) == Status::Ok
        }
        Subscriber::Alerts(f) => alerts.iter().all(|a| {
            f.call(
                alert_to_js(a.clone()),
                ThreadsafeFunctionCallMode::NonBlocking,
            ) == Status::Ok
        }),
    });
}

fn observing() {
    static OBSERVING: Once = Once::new();
    OBSERVING.call_once(|| memory_monitor().set_observer(Box::new(observe)));
}

fn subscribe(env: &Env, sub: Subscriber) -> Result<Function<'_, (), ()>> {
    observing();
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    SUBSCRIBERS.lock().push((id, sub));
    env.create_function_from_closure("unsubscribe", move |_| {
        SUBSCRIBERS.lock().retain(|(i, _)| *i != id);
        Ok(())
    })
}

fn callback<T: ToNapiValue + 'static>(
    env: &Env,
    cb: Unknown,
    what: &str,
) -> R<ThreadsafeFunction<T, Unknown<'static>, T, Status, false, true>> {
    if cb.get_type().ok() != Some(napi::ValueType::Function) {
        return Err(OrionError::InvalidOption(format!(
            "{what} needs a function, got {}",
            super::options::describe(&cb)
        )));
    }
    let _ = env;
    let f: Function<T, Unknown<'static>> =
        super::options::cast_checked(&cb).map_err(|e| OrionError::Internal(e.reason.clone()))?;
    f.build_threadsafe_function()
        .callee_handled::<false>()
        .weak::<true>()
        .build()
        .map_err(|e| OrionError::Internal(e.reason.clone()))
}

/// The memory monitor. Options (process-wide): `thresholds` `{ medium, high, critical }`
/// (fractions of the budget, default 0.6/0.75/0.9), `historySize` (100), `budgetBytes`
/// (0: none), `autoFree` (true), `freeAt` (`'critical'`), `rssGrowthAlertBytesPerSec`.
#[napi(ts_args_type = "options?: MemoryMonitorOptions", catch_unwind)]
pub fn get_memory_monitor(env: Env, options: Option<Unknown>) -> Result<MemoryMonitor> {
    configure(options).map_err(|e| js_error(&env, &e))?;
    auto_start().map_err(|e| js_error(&env, &e))?;
    Ok(MemoryMonitor {})
}

/// `ORION_ENABLE_MEMORY_MONITOR=1` starts monitoring with the first `getMemoryMonitor()`
/// (every `ORION_MEMORY_MONITOR_INTERVAL_MS`, default 5000).
fn auto_start() -> R<()> {
    static DONE: Once = Once::new();
    let mut result = Ok(());
    DONE.call_once(|| {
        let on = std::env::var("ORION_ENABLE_MEMORY_MONITOR")
            .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
        if on {
            result = crate::config::env_u64("ORION_MEMORY_MONITOR_INTERVAL_MS").map(|ms| {
                let ms = ms.filter(|&ms| ms > 0).unwrap_or(5000);
                observing();
                memory_monitor().start(Duration::from_millis(ms), memory_reading);
            });
        }
    });
    result
}

fn configure(options: Option<Unknown>) -> R<()> {
    let o = Options::parse(options, "options", MONITOR_OPTIONS)?;
    let m = memory_monitor();
    let mut c: MonitorConfig = m.config();
    if let Some(t) = o.raw("thresholds")? {
        let t = Options::parse(
            Some(t),
            "options.thresholds",
            &["medium", "high", "critical"],
        )?;
        let th = Thresholds {
            medium: t.number("medium")?.unwrap_or(c.thresholds.medium),
            high: t.number("high")?.unwrap_or(c.thresholds.high),
            critical: t.number("critical")?.unwrap_or(c.thresholds.critical),
        };
        th.validate()?;
        c.thresholds = th;
    }
    if let Some(h) = o.integer("historySize", 1, 1_000_000)? {
        c.history = h as usize;
    }
    if let Some(b) = o.integer("budgetBytes", 0, u64::MAX >> 11)? {
        c.budget_bytes = (b > 0).then_some(b);
    }
    if let Some(a) = o.boolean("autoFree")? {
        c.auto_free = a;
    }
    if let Some(f) = o.string("freeAt")? {
        let p = Pressure::parse(&f)?;
        if p < Pressure::High {
            return Err(OrionError::InvalidOption(format!(
                "options.freeAt must be 'high' or 'critical', got {f:?}"
            )));
        }
        c.free_at = p;
    }
    if let Some(g) = o.integer("rssGrowthAlertBytesPerSec", 1, u64::MAX >> 11)? {
        c.rss_growth_alert_bytes_per_sec = g;
    }
    m.set_config(c);
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
            |_, s| Ok(to_js(s)),
        )
    }

    /// The history, oldest first.
    #[napi(catch_unwind)]
    pub fn get_snapshots(&self) -> Vec<MemorySnapshot> {
        memory_monitor()
            .snapshots()
            .into_iter()
            .map(to_js)
            .collect()
    }

    #[napi(catch_unwind)]
    pub fn get_stats(&self) -> MemoryMonitorStats {
        let s = memory_monitor().stats();
        MemoryMonitorStats {
            count: s.count as i64,
            current: s.current.map(to_js),
            peak_rss: s.peak_rss as i64,
            min_used_fraction: s.min_fraction,
            mean_used_fraction: s.mean_fraction,
            max_used_fraction: s.max_fraction,
            time_at_ms: PressureTimes {
                low: s.time_at[0],
                medium: s.time_at[1],
                high: s.time_at[2],
                critical: s.time_at[3],
            },
        }
    }

    #[napi(catch_unwind)]
    pub fn get_alerts(&self) -> Vec<MemoryAlert> {
        memory_monitor()
            .alerts()
            .into_iter()
            .map(alert_to_js)
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
    /// it again while running keeps the first period). Subscribers see each one.
    #[napi(ts_args_type = "intervalMs: number", catch_unwind)]
    pub fn start(&self, env: Env, interval_ms: Unknown) -> Result<()> {
        let run = || -> R<()> {
            let bad = || {
                OrionError::InvalidOption(format!(
                    "intervalMs must be a number of milliseconds from 1 to 2147483647 (24.8 days), got {}",
                    super::options::describe(&interval_ms)
                ))
            };
            if interval_ms.get_type().ok() != Some(napi::ValueType::Number) {
                return Err(bad());
            }
            let ms: f64 = super::options::cast_checked(&interval_ms).map_err(|_| bad())?;
            // Beyond setTimeout's own limit an interval is a mistake, and far beyond it
            // Duration's conversion would panic.
            if !ms.is_finite() || ms <= 0.0 || ms > f64::from(i32::MAX) {
                return Err(bad());
            }
            memory_monitor().start(
                Duration::from_secs_f64(ms.max(1.0) / 1000.0),
                memory_reading,
            );
            Ok(())
        };
        run().map_err(|e| js_error(&env, &e))
    }

    #[napi(catch_unwind)]
    pub fn stop(&self) {
        memory_monitor().stop();
        let _ = std::fs::remove_file(status_file());
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
        let f = callback::<MemorySnapshot>(env, cb, "onSnapshot").map_err(|e| js_error(env, &e))?;
        subscribe(env, Subscriber::Snapshots(f))
    }

    /// `cb(alert)` on this thread for every alert. Returns the function that unsubscribes.
    #[napi(
        ts_args_type = "cb: (alert: MemoryAlert) => void",
        ts_return_type = "() => void",
        catch_unwind
    )]
    pub fn on_alert<'e>(&self, env: &'e Env, cb: Unknown) -> Result<Function<'e, (), ()>> {
        let f = callback::<MemoryAlert>(env, cb, "onAlert").map_err(|e| js_error(env, &e))?;
        subscribe(env, Subscriber::Alerts(f))
    }
}
