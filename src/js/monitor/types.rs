//! What the memory monitor returns to JS: one `#[napi(object)]` per shape, each with
//! its one conversion from the core type beside it.

use crate::monitor::{Alert, DeviceMemory, HeldModel, MonitorStats, Pressure, Reading, Snapshot};
use crate::sysmem::SystemMemory;
use napi_derive::napi;

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

impl From<SystemMemory> for SystemMemoryInfo {
    fn from(sys: SystemMemory) -> Self {
        Self {
            total: sys.total as i64,
            available: sys.available as i64,
            used: sys.used as i64,
            swap_total: sys.swap_total as i64,
            swap_used: sys.swap_used as i64,
            cgroup_limit: sys.cgroup_limit.map(|l| l as i64),
        }
    }
}

#[napi(object)]
pub struct ProcessMemoryInfo {
    pub rss: i64,
    pub virtual_bytes: i64,
}

impl From<Reading> for ProcessMemoryInfo {
    fn from(r: Reading) -> Self {
        Self {
            rss: r.rss as i64,
            virtual_bytes: r.virtual_bytes as i64,
        }
    }
}

#[napi(object)]
pub struct JsHeapInfo {
    pub used: i64,
    pub total: i64,
    pub external: i64,
}

/// From a snapshot's `js_heap`: (used, total, external).
impl From<(u64, u64, u64)> for JsHeapInfo {
    fn from((used, total, external): (u64, u64, u64)) -> Self {
        Self {
            used: used as i64,
            total: total as i64,
            external: external as i64,
        }
    }
}

#[napi(object)]
pub struct HeldModelInfo {
    pub key: String,
    pub bytes: i64,
    pub quantization: Option<String>,
    pub in_use: bool,
    pub idle_ms: f64,
}

impl From<HeldModel> for HeldModelInfo {
    fn from(m: HeldModel) -> Self {
        Self {
            key: m.key,
            bytes: m.bytes as i64,
            quantization: m.quantization,
            in_use: m.in_use,
            idle_ms: m.idle_for.as_secs_f64() * 1000.0,
        }
    }
}

// What orion-native holds: no core type of its own, it is built from a `Snapshot`'s
// fields of those names in `MemorySnapshot`'s conversion below. (A doc comment here
// would reach index.d.ts.)
#[napi(object)]
pub struct OrionMemoryInfo {
    pub models: Vec<HeldModelInfo>,
    pub embedding_cache_bytes: i64,
}

/// A GPU device's memory (once llama.cpp has started).
#[napi(object)]
pub struct DeviceMemoryInfo {
    /// `Vulkan0 (NVIDIA GeForce RTX 4070)`.
    pub name: String,
    pub backend: String,
    pub total: i64,
    /// As its driver reports it (lavapipe reports its whole heap, whatever is in use).
    pub free: i64,
    /// Device memory this process's models hold there, estimated from their files: their
    /// weights and one context's KV cache while loaded, and the KV cache of each further
    /// context while it lives (those kept for other conversations too); given back when
    /// they are freed.
    pub models_bytes: i64,
    /// The share in use: by the driver's account, or by the models' where that is more.
    pub used_fraction: f64,
}

impl From<DeviceMemory> for DeviceMemoryInfo {
    fn from(d: DeviceMemory) -> Self {
        Self {
            used_fraction: d.used_fraction(),
            name: d.name,
            backend: d.backend,
            total: d.total as i64,
            free: d.free as i64,
            models_bytes: d.models_bytes as i64,
        }
    }
}

#[napi(object)]
pub struct MemorySnapshot {
    /// Milliseconds since the epoch.
    pub timestamp: f64,
    pub system: SystemMemoryInfo,
    pub process: ProcessMemoryInfo,
    /// GPU devices, once llama.cpp has started; their pressure counts in `pressure`
    /// where models are on them.
    pub devices: Vec<DeviceMemoryInfo>,
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

impl From<Snapshot> for MemorySnapshot {
    fn from(s: Snapshot) -> Self {
        Self {
            timestamp: s.timestamp_ms,
            system: s.reading.system.into(),
            devices: s
                .reading
                .devices
                .iter()
                .cloned()
                .map(DeviceMemoryInfo::from)
                .collect(),
            process: s.reading.into(),
            js_heap: s.js_heap.map(JsHeapInfo::from),
            orion: OrionMemoryInfo {
                models: s.models.into_iter().map(HeldModelInfo::from).collect(),
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
}

#[napi(object)]
pub struct MemoryAlert {
    pub timestamp: f64,
    /// `'pressure'`, `'rss-growth'` or `'freed'`.
    pub kind: String,
    pub pressure: String,
    pub message: String,
}

impl From<Alert> for MemoryAlert {
    fn from(a: Alert) -> Self {
        Self {
            timestamp: a.timestamp_ms,
            kind: a.kind.to_string(),
            pressure: a.pressure.as_str().to_string(),
            message: a.message,
        }
    }
}

#[napi(object)]
pub struct PressureTimes {
    pub low: f64,
    pub medium: f64,
    pub high: f64,
    pub critical: f64,
}

/// From milliseconds at each level, in `Pressure::ALL` order.
impl From<[f64; 4]> for PressureTimes {
    fn from([low, medium, high, critical]: [f64; 4]) -> Self {
        Self {
            low,
            medium,
            high,
            critical,
        }
    }
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

impl From<MonitorStats> for MemoryMonitorStats {
    fn from(s: MonitorStats) -> Self {
        Self {
            count: s.count as i64,
            current: s.current.map(MemorySnapshot::from),
            peak_rss: s.peak_rss as i64,
            min_used_fraction: s.min_fraction,
            mean_used_fraction: s.mean_fraction,
            max_used_fraction: s.max_fraction,
            time_at_ms: s.time_at.into(),
        }
    }
}
