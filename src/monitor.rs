//! The memory monitor: snapshots of system and process memory, a pressure level from
//! thresholds over the effective budget, recommendations, a bounded history, alerts,
//! and freeing memory (idle models, the embedding cache) when pressure gets high.

use crate::error::{human_bytes, OrionError, Result};
use crate::sysmem::SystemMemory;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Serialised as its name (`"low"`, ...), as [`Pressure::as_str`] gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Pressure {
    Low,
    Medium,
    High,
    Critical,
}

impl Pressure {
    pub(crate) const ALL: [Pressure; 4] = [
        Pressure::Low,
        Pressure::Medium,
        Pressure::High,
        Pressure::Critical,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Pressure::Low => "low",
            Pressure::Medium => "medium",
            Pressure::High => "high",
            Pressure::Critical => "critical",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        Pressure::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                OrionError::InvalidOption(format!(
                    "pressure level must be low, medium, high or critical, got {s:?}"
                ))
            })
    }
}

/// Fractions of the budget in use at which pressure becomes medium, high, critical.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Thresholds {
    pub(crate) medium: f64,
    pub(crate) high: f64,
    pub(crate) critical: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            medium: 0.6,
            high: 0.75,
            critical: 0.9,
        }
    }
}

impl Thresholds {
    pub(crate) fn validate(&self) -> Result<()> {
        let ok = 0.0 < self.medium
            && self.medium < self.high
            && self.high < self.critical
            && self.critical <= 1.0;
        if ok {
            Ok(())
        } else {
            Err(OrionError::InvalidOption(format!(
                "thresholds must increase strictly within (0, 1]: medium {} < high {} < critical {} ≤ 1",
                self.medium, self.high, self.critical
            )))
        }
    }

    pub(crate) fn classify(&self, used_fraction: f64) -> Pressure {
        match used_fraction {
            f if f >= self.critical => Pressure::Critical,
            f if f >= self.high => Pressure::High,
            f if f >= self.medium => Pressure::Medium,
            _ => Pressure::Low,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MonitorConfig {
    pub(crate) thresholds: Thresholds,
    pub(crate) history: usize,
    /// This process's memory budget; without one, the system's memory is the budget.
    pub(crate) budget_bytes: Option<u64>,
    /// Free memory (idle models, the embedding cache) at `free_at` pressure or above.
    pub(crate) auto_free: bool,
    pub(crate) free_at: Pressure,
    /// RSS growth per second that raises an alert.
    pub(crate) rss_growth_alert_bytes_per_sec: u64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            thresholds: Thresholds::default(),
            history: 100,
            budget_bytes: None,
            auto_free: true,
            free_at: Pressure::Critical,
            rss_growth_alert_bytes_per_sec: 100 << 20,
        }
    }
}

/// A loaded model as the monitor sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HeldModel {
    pub(crate) key: String,
    pub(crate) bytes: u64,
    pub(crate) quantization: Option<String>,
    #[serde(rename = "idleMs", serialize_with = "whole_millis")]
    pub(crate) idle_for: Duration,
    pub(crate) in_use: bool,
}

/// What orion-native holds, and how to give it back.
pub(crate) trait Holder: Send + Sync {
    fn models(&self) -> Vec<HeldModel>;
    fn embedding_cache_bytes(&self) -> u64;
    /// Unload the least recently used idle model: its key and bytes.
    fn unload_lru_idle(&self) -> Option<(String, u64)>;
    /// Unload the least recently used idle model with layers on GPU device `device`
    /// (its name): its key and the device bytes it held.
    fn unload_lru_idle_on(&self, device: &str) -> Option<(String, u64)>;
    /// Free the contexts kept for a chat's next turn by the models with layers on GPU
    /// device `device` (their KV caches there): how many. Blocks while those still
    /// settling after an answer finish their evaluation step (up to 10 s a model).
    fn free_kept_on(&self, device: &str) -> usize;
    /// Shrink every embedding cache to at most `bytes`; the bytes freed.
    fn shrink_embedding_cache(&self, bytes: u64) -> u64;
}

/// One measurement.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Reading {
    pub(crate) system: SystemMemory,
    pub(crate) rss: u64,
    pub(crate) virtual_bytes: u64,
    /// The GPU devices llama.cpp has (once it has started: a reading never starts it).
    pub(crate) devices: Vec<DeviceMemory>,
}

/// A GPU device's memory.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceMemory {
    pub(crate) name: String,
    pub(crate) backend: String,
    pub(crate) total: u64,
    /// As its driver reports it (some, lavapipe among them, report their whole heap).
    pub(crate) free: u64,
    /// What this process's models hold there (estimated from their files).
    pub(crate) models_bytes: u64,
    /// What the loader keeps free there for compute buffers when it fits a model's
    /// layers: pressure is measured against it.
    #[serde(skip)]
    pub(crate) headroom: u64,
}

impl DeviceMemory {
    /// The share of the device in use: by the driver's account, or by what the models
    /// hold where that is more.
    pub(crate) fn used_fraction(&self) -> f64 {
        let used = self.total.saturating_sub(self.free).max(self.models_bytes);
        used as f64 / self.total.max(1) as f64
    }

    /// What is left: the driver's free memory, and never more than the total less what
    /// the models hold (lavapipe reports its whole heap as free).
    pub(crate) fn left(&self) -> u64 {
        self.free.min(self.total.saturating_sub(self.models_bytes))
    }

    /// A device the loader filled on purpose keeps its headroom (compute buffers take
    /// part of it): pressure rises as what is left falls through half, a quarter and an
    /// eighth of that headroom, where the next context or buffer may not fit.
    pub(crate) fn pressure(&self) -> Pressure {
        let left = self.left();
        match self.headroom {
            h if left >= h / 2 => Pressure::Low,
            h if left >= h / 4 => Pressure::Medium,
            h if left >= h / 8 => Pressure::High,
            _ => Pressure::Critical,
        }
    }
}

/// The device under the most pressure among those holding models: its index in
/// `r.devices` and its pressure. A device no model of this process uses is not its
/// concern.
pub(crate) fn device_pressure(r: &Reading) -> Option<(usize, Pressure)> {
    device_pressure_except(r, &[])
}

/// [`device_pressure`] among the devices not named in `skip`.
fn device_pressure_except(r: &Reading, skip: &[String]) -> Option<(usize, Pressure)> {
    r.devices
        .iter()
        .enumerate()
        .filter(|(_, d)| d.models_bytes > 0 && !skip.contains(&d.name))
        .map(|(i, d)| (i, d.pressure()))
        .max_by_key(|(_, p)| *p)
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) timestamp_ms: f64,
    pub(crate) reading: Reading,
    pub(crate) budget_bytes: u64,
    pub(crate) used_bytes: u64,
    pub(crate) used_fraction: f64,
    pub(crate) pressure: Pressure,
    pub(crate) models: Vec<HeldModel>,
    pub(crate) embedding_cache_bytes: u64,
    pub(crate) recommendations: Vec<String>,
    /// What the monitor freed before this snapshot was taken.
    pub(crate) actions: Vec<String>,
    /// The calling thread's JS heap (used, total, external), when taken from JS.
    pub(crate) js_heap: Option<(u64, u64, u64)>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Alert {
    #[serde(rename = "timestamp")]
    pub(crate) timestamp_ms: f64,
    pub(crate) kind: &'static str,
    pub(crate) pressure: Pressure,
    pub(crate) message: String,
}

/// With a budget, the process's RSS against it (the budget stands for the device the
/// app would run on); without one, the memory in use on the system (or in its cgroup)
/// against what the process may use.
pub(crate) fn assess(r: &Reading, config: &MonitorConfig) -> (u64, u64, f64, Pressure) {
    let (budget, used) = if let Some(b) = config.budget_bytes {
        (b.min(r.system.effective_total()).max(1), r.rss)
    } else {
        let total = r.system.effective_total().max(1);
        (total, total.saturating_sub(r.system.effective_available()))
    };
    let fraction = used as f64 / budget as f64;
    (budget, used, fraction, config.thresholds.classify(fraction))
}

fn minutes(d: Duration) -> String {
    match d.as_secs() {
        s if s < 60 => format!("{s} s"),
        s => format!("{} min", s / 60),
    }
}

/// Concrete things to do, with numbers; empty when pressure is low.
pub(crate) fn recommend(pressure: Pressure, models: &[HeldModel], cache_bytes: u64) -> Vec<String> {
    let mut out = Vec::new();
    if pressure == Pressure::Low {
        return out;
    }
    let mut idle: Vec<&HeldModel> = models.iter().filter(|m| !m.in_use).collect();
    idle.sort_by_key(|m| std::cmp::Reverse(m.idle_for));
    for m in idle {
        out.push(format!(
            "Unload idle model '{}' ({}, unused for {})",
            m.key,
            human_bytes(m.bytes),
            minutes(m.idle_for)
        ));
    }
    for m in models {
        let q = m.quantization.as_deref().unwrap_or("").to_ascii_uppercase();
        if ["Q8_0", "F16", "BF16", "F32"].contains(&q.as_str()) {
            let saves = m.bytes - m.bytes * 48 / if q == "Q8_0" { 85 } else { 160 };
            out.push(format!(
                "Use q4 instead of {q} for '{}' (saves about {})",
                m.key,
                human_bytes(saves)
            ));
        }
    }
    if pressure >= Pressure::High && cache_bytes >= 1 << 20 {
        out.push(format!(
            "Shrink the embedding cache ({})",
            human_bytes(cache_bytes)
        ));
    }
    out
}

/// A duration as whole milliseconds (serde's `serialize_with` passes a reference).
fn whole_millis<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// A snapshot as a monitoring process publishes it (`status/<pid>.json` under the cache
/// directory) for `orion-native status`, which reads and prints this shape.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Status<'a> {
    pid: u32,
    timestamp: f64,
    pressure: Pressure,
    used_fraction: f64,
    used_bytes: u64,
    budget_bytes: u64,
    system: StatusSystem,
    process: StatusProcess,
    models: &'a [HeldModel],
    devices: &'a [DeviceMemory],
    embedding_cache_bytes: u64,
    recommendations: &'a [String],
    /// The five latest alerts, newest first.
    alerts: Vec<&'a Alert>,
}

/// The system's memory in a [`Status`].
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusSystem {
    total: u64,
    available: u64,
    used: u64,
    cgroup_limit: Option<u64>,
}

/// The process's memory in a [`Status`].
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusProcess {
    rss: u64,
    virtual_bytes: u64,
}

impl Snapshot {
    /// The snapshot as the status file and `orion-native status --json` show it, with
    /// the latest of `alerts` (the monitor's, oldest first).
    pub(crate) fn status<'a>(&'a self, alerts: &'a [Alert]) -> Status<'a> {
        let sys = &self.reading.system;
        Status {
            pid: std::process::id(),
            timestamp: self.timestamp_ms,
            pressure: self.pressure,
            used_fraction: self.used_fraction,
            used_bytes: self.used_bytes,
            budget_bytes: self.budget_bytes,
            system: StatusSystem {
                total: sys.total,
                available: sys.available,
                used: sys.used,
                cgroup_limit: sys.cgroup_limit,
            },
            process: StatusProcess {
                rss: self.reading.rss,
                virtual_bytes: self.reading.virtual_bytes,
            },
            models: &self.models,
            devices: &self.reading.devices,
            embedding_cache_bytes: self.embedding_cache_bytes,
            recommendations: &self.recommendations,
            alerts: alerts.iter().rev().take(5).collect(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct MonitorStats {
    pub(crate) count: u64,
    pub(crate) current: Option<Snapshot>,
    pub(crate) peak_rss: u64,
    pub(crate) min_fraction: f64,
    pub(crate) mean_fraction: f64,
    pub(crate) max_fraction: f64,
    /// Milliseconds spent at each level, in `Pressure::ALL` order.
    pub(crate) time_at: [f64; 4],
}

struct State {
    history: VecDeque<Snapshot>,
    alerts: Vec<Alert>,
    stats: MonitorStats,
    fraction_sum: f64,
    last: Option<(f64, Pressure, u64)>,
}

/// Told about every snapshot recorded, with the alerts it raised.
pub(crate) type Observer = Box<dyn Fn(&Snapshot, &[Alert]) + Send + Sync>;

pub(crate) struct Monitor {
    config: Mutex<MonitorConfig>,
    state: Mutex<State>,
    holder: Box<dyn Holder>,
    observer: Mutex<Option<Observer>>,
    /// The period of background monitoring, 0 when stopped.
    interval_ms: AtomicU64,
    /// Bumped by each start, so that a thread from before a stop/start ends.
    generation: AtomicU64,
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

impl Monitor {
    pub(crate) fn new(config: MonitorConfig, holder: Box<dyn Holder>) -> Self {
        Self {
            config: Mutex::new(config),
            state: Mutex::new(State {
                history: VecDeque::new(),
                alerts: Vec::new(),
                stats: MonitorStats::default(),
                fraction_sum: 0.0,
                last: None,
            }),
            holder,
            observer: Mutex::new(None),
            interval_ms: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
    }

    pub(crate) fn set_observer(&self, observer: Observer) {
        *self.observer.lock() = Some(observer);
    }

    /// Take a snapshot every `interval` on a background thread (one per process; a
    /// second call changes the period).
    pub(crate) fn start(&'static self, interval: Duration, read: fn() -> Reading) {
        let ms = interval.as_millis().clamp(1, u128::from(u64::MAX)) as u64;
        if self.interval_ms.swap(ms, Ordering::SeqCst) != 0 {
            return;
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let current = move || self.generation.load(Ordering::SeqCst) == generation;
        let spawned = std::thread::Builder::new()
            .name("orion-memory-monitor".into())
            .spawn(move || loop {
                let ms = self.interval_ms.load(Ordering::SeqCst);
                if ms == 0 || !current() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(ms));
                if self.interval_ms.load(Ordering::SeqCst) != 0 && current() {
                    self.take(read, None);
                }
            });
        if spawned.is_err() {
            self.interval_ms.store(0, Ordering::SeqCst);
        }
    }

    pub(crate) fn stop(&self) {
        self.interval_ms.store(0, Ordering::SeqCst);
    }

    pub(crate) fn is_running(&self) -> bool {
        self.interval_ms.load(Ordering::SeqCst) != 0
    }

    pub(crate) fn config(&self) -> MonitorConfig {
        self.config.lock().clone()
    }

    pub(crate) fn set_config(&self, c: MonitorConfig) {
        let history = c.history;
        *self.config.lock() = c;
        let mut st = self.state.lock();
        while st.history.len() > history {
            st.history.pop_front();
        }
    }

    /// Measure with `read`, free memory when pressure calls for it (measuring again
    /// after each step), record the snapshot and any alerts.
    pub(crate) fn take(
        &self,
        read: impl Fn() -> Reading,
        js_heap: Option<(u64, u64, u64)>,
    ) -> Snapshot {
        let config = self.config();
        let mut reading = read();
        let mut actions = Vec::new();
        // A full GPU device: first the contexts its models keep for a chat's next turn
        // (they cost that turn's prompt evaluation, a model its reload), then its idle
        // models (least recently used first), nothing else, reading again after each
        // step until the device is fine or nothing idle is left on it; then the next
        // device short of memory, if another one is.
        let mut kept_freed: Vec<String> = Vec::new();
        let mut exhausted: Vec<String> = Vec::new();
        while let Some((i, p)) = device_pressure_except(&reading, &exhausted)
            .filter(|(_, p)| config.auto_free && *p >= config.free_at)
        {
            let device = reading.devices[i].name.clone();
            if !kept_freed.contains(&device) {
                kept_freed.push(device.clone());
                let n = self.holder.free_kept_on(&device);
                if n > 0 {
                    actions.push(format!(
                        "Freed {n} context(s) kept for a next turn on {device} at {} GPU memory pressure",
                        p.as_str()
                    ));
                    reading = read();
                    continue;
                }
            }
            let Some((key, bytes)) = self.holder.unload_lru_idle_on(&device) else {
                exhausted.push(device);
                continue;
            };
            actions.push(format!(
                "Unloaded idle model '{key}' ({} on {device}) at {} GPU memory pressure",
                human_bytes(bytes),
                p.as_str()
            ));
            reading = read();
        }
        let mut pressure = assess(&reading, &config).3;
        if config.auto_free && pressure >= config.free_at {
            while pressure >= config.free_at {
                if let Some((key, bytes)) = self.holder.unload_lru_idle() {
                    actions.push(format!(
                        "Unloaded idle model '{key}' ({}) at {} pressure",
                        human_bytes(bytes),
                        pressure.as_str()
                    ));
                } else {
                    let cache = self.holder.embedding_cache_bytes();
                    if cache == 0 {
                        break;
                    }
                    let freed = self.holder.shrink_embedding_cache(cache / 2);
                    actions.push(format!(
                        "Shrank the embedding cache by {} at {} pressure",
                        human_bytes(freed),
                        pressure.as_str()
                    ));
                }
                reading = read();
                pressure = assess(&reading, &config).3;
            }
        }
        let (budget, used, fraction, _) = assess(&reading, &config);
        let pressure = device_pressure(&reading).map_or(pressure, |(_, p)| p.max(pressure));
        let models = self.holder.models();
        let cache = self.holder.embedding_cache_bytes();
        let snap = Snapshot {
            timestamp_ms: now_ms(),
            reading,
            budget_bytes: budget,
            used_bytes: used,
            used_fraction: fraction,
            pressure,
            recommendations: recommend(pressure, &models, cache),
            models,
            embedding_cache_bytes: cache,
            actions: actions.clone(),
            js_heap,
        };
        self.record(&snap, &config, actions);
        snap
    }

    fn record(&self, snap: &Snapshot, config: &MonitorConfig, actions: Vec<String>) {
        let mut st = self.state.lock();
        let alert = |kind, message: String| Alert {
            timestamp_ms: snap.timestamp_ms,
            kind,
            pressure: snap.pressure,
            message,
        };
        let mut alerts: Vec<Alert> = actions.into_iter().map(|a| alert("freed", a)).collect();
        let previous = st.last.map_or(Pressure::Low, |(_, p, _)| p);
        if snap.pressure >= Pressure::High && snap.pressure > previous {
            let on_device = device_pressure(&snap.reading)
                .filter(|(_, p)| *p == snap.pressure)
                .map(|(i, _)| &snap.reading.devices[i]);
            alerts.push(alert(
                "pressure",
                match on_device {
                    Some(d) => format!(
                        "GPU memory pressure on {} rose to {} ({} left of {}, {} held by models)",
                        d.name,
                        snap.pressure.as_str(),
                        human_bytes(d.left()),
                        human_bytes(d.total),
                        human_bytes(d.models_bytes)
                    ),
                    None => format!(
                        "Memory pressure rose to {} ({:.0} % of {} in use)",
                        snap.pressure.as_str(),
                        snap.used_fraction * 100.0,
                        human_bytes(snap.budget_bytes)
                    ),
                },
            ));
        }
        if let Some((t, p, rss)) = st.last {
            let dt = (snap.timestamp_ms - t) / 1000.0;
            let grew = snap.reading.rss.saturating_sub(rss) as f64;
            // A few megabytes between two snapshots a millisecond apart is noise, not a leak.
            if grew >= f64::from(16 << 20)
                && dt > 0.0
                && grew / dt > config.rss_growth_alert_bytes_per_sec as f64
            {
                alerts.push(alert(
                    "rss-growth",
                    format!("RSS grew {} in {:.1} s", human_bytes(grew as u64), dt),
                ));
            }
            st.stats.time_at[p as usize] += snap.timestamp_ms - t;
        }
        let raised = alerts.clone();
        st.alerts.extend(alerts);
        st.last = Some((snap.timestamp_ms, snap.pressure, snap.reading.rss));
        let s = &mut st.stats;
        s.count += 1;
        s.peak_rss = s.peak_rss.max(snap.reading.rss);
        s.min_fraction = if s.count == 1 {
            snap.used_fraction
        } else {
            s.min_fraction.min(snap.used_fraction)
        };
        s.max_fraction = s.max_fraction.max(snap.used_fraction);
        st.fraction_sum += snap.used_fraction;
        st.stats.mean_fraction = st.fraction_sum / st.stats.count as f64;
        st.stats.current = Some(snap.clone());
        st.history.push_back(snap.clone());
        while st.history.len() > config.history {
            st.history.pop_front();
        }
        drop(st);
        if let Some(observe) = self.observer.lock().as_ref() {
            observe(snap, &raised);
        }
    }

    pub(crate) fn snapshots(&self) -> Vec<Snapshot> {
        self.state.lock().history.iter().cloned().collect()
    }

    pub(crate) fn stats(&self) -> MonitorStats {
        self.state.lock().stats.clone()
    }

    pub(crate) fn alerts(&self) -> Vec<Alert> {
        self.state.lock().alerts.clone()
    }

    pub(crate) fn clear_alerts(&self) {
        self.state.lock().alerts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const GB: u64 = 1 << 30;

    #[test]
    fn thresholds_map_fractions_to_pressure() {
        let t = Thresholds::default();
        assert_eq!(t.classify(0.0), Pressure::Low);
        assert_eq!(t.classify(0.59), Pressure::Low);
        assert_eq!(t.classify(0.6), Pressure::Medium);
        assert_eq!(t.classify(0.75), Pressure::High);
        assert_eq!(t.classify(0.9), Pressure::Critical);
        assert_eq!(t.classify(1.5), Pressure::Critical);
        assert!(t.validate().is_ok());
        for bad in [
            (0.7, 0.6, 0.9),
            (0.0, 0.5, 0.9),
            (0.5, 0.7, 1.1),
            (0.5, 0.5, 0.9),
        ] {
            let t = Thresholds {
                medium: bad.0,
                high: bad.1,
                critical: bad.2,
            };
            assert_eq!(t.validate().unwrap_err().code(), "INVALID_OPTION");
        }
    }

    fn reading(total: u64, available: u64, rss: u64) -> Reading {
        Reading {
            system: SystemMemory {
                total,
                available,
                used: total - available,
                ..Default::default()
            },
            rss,
            virtual_bytes: rss * 2,
            devices: Vec::new(),
        }
    }

    #[test]
    fn the_budget_is_the_process_share_of_the_device() {
        // The app's two profiles: 1.7 GB in use is high on a 2 GB device, low on 8 GB.
        let two = MonitorConfig {
            budget_bytes: Some(2 * GB),
            ..Default::default()
        };
        let eight = MonitorConfig {
            budget_bytes: Some(8 * GB),
            ..Default::default()
        };
        let r = reading(24 * GB, 20 * GB, 17 * GB / 10);
        assert_eq!(assess(&r, &two).3, Pressure::High);
        assert_eq!(assess(&r, &eight).3, Pressure::Low);
        // Without a budget: the system's memory in use.
        assert_eq!(
            assess(&reading(8 * GB, GB, GB), &MonitorConfig::default()).3,
            Pressure::High
        );
    }

    struct FakeHolder {
        models: Mutex<Vec<HeldModel>>,
        cache: AtomicU64,
        rss: Arc<AtomicU64>,
        /// Idle models with layers on a GPU device: (key, device, device bytes), and
        /// the device bytes held in all.
        on_gpu: Mutex<Vec<(String, String, u64)>>,
        gpu_held: Arc<AtomicU64>,
        /// Contexts kept by the models on a GPU device: (device, device bytes).
        kept_on_gpu: Mutex<Vec<(String, u64)>>,
    }
    impl Holder for FakeHolder {
        fn models(&self) -> Vec<HeldModel> {
            self.models.lock().clone()
        }
        fn embedding_cache_bytes(&self) -> u64 {
            self.cache.load(Ordering::SeqCst)
        }
        fn unload_lru_idle(&self) -> Option<(String, u64)> {
            let mut m = self.models.lock();
            let i = m.iter().position(|m| !m.in_use)?;
            let gone = m.remove(i);
            self.rss.fetch_sub(gone.bytes, Ordering::SeqCst);
            Some((gone.key, gone.bytes))
        }
        fn unload_lru_idle_on(&self, device: &str) -> Option<(String, u64)> {
            let mut m = self.on_gpu.lock();
            let i = m.iter().position(|(_, d, _)| d == device)?;
            let (key, _, bytes) = m.remove(i);
            self.gpu_held.fetch_sub(bytes, Ordering::SeqCst);
            Some((key, bytes))
        }
        fn free_kept_on(&self, device: &str) -> usize {
            let mut k = self.kept_on_gpu.lock();
            let before = k.len();
            k.retain(|(d, bytes)| {
                if d == device {
                    self.gpu_held.fetch_sub(*bytes, Ordering::SeqCst);
                }
                d != device
            });
            before - k.len()
        }
        fn shrink_embedding_cache(&self, bytes: u64) -> u64 {
            let before = self.cache.swap(bytes, Ordering::SeqCst);
            self.rss.fetch_sub(before - bytes, Ordering::SeqCst);
            before - bytes
        }
    }

    fn model(key: &str, bytes: u64, in_use: bool, q: &str) -> HeldModel {
        HeldModel {
            key: key.into(),
            bytes,
            quantization: Some(q.into()),
            idle_for: Duration::from_secs(360),
            in_use,
        }
    }

    /// An 8 GB device named `name` with 384 MiB of headroom: `held` bytes ours, `others`
    /// taken by other processes.
    fn gpu(name: &str, held: u64, others: u64) -> DeviceMemory {
        DeviceMemory {
            name: name.into(),
            backend: "CUDA".into(),
            total: 8 * GB,
            free: (8 * GB).saturating_sub(held + others),
            models_bytes: held,
            headroom: 384 << 20,
        }
    }

    #[test]
    fn critical_pressure_frees_idle_models_then_the_cache_and_says_so() {
        let rss = Arc::new(AtomicU64::new(1900 << 20));
        let holder = FakeHolder {
            models: Mutex::new(vec![
                model("idle", 600 << 20, false, "Q8_0"),
                model("busy", 400 << 20, true, "Q4_K_M"),
            ]),
            cache: AtomicU64::new(64 << 20),
            rss: rss.clone(),
            on_gpu: Mutex::new(Vec::new()),
            gpu_held: Arc::new(AtomicU64::new(0)),
            kept_on_gpu: Mutex::new(Vec::new()),
        };
        let m = Monitor::new(
            MonitorConfig {
                budget_bytes: Some(2 * GB),
                ..Default::default()
            },
            Box::new(holder),
        );
        let r = rss.clone();
        let snap = m.take(
            move || reading(24 * GB, 20 * GB, r.load(Ordering::SeqCst)),
            None,
        );
        assert!(
            snap.actions.iter().any(|a| a.contains("'idle'")),
            "{:?}",
            snap.actions
        );
        assert_eq!(snap.models.len(), 1, "the busy model stays");
        assert!(snap.pressure < Pressure::Critical);
        let alerts = m.alerts();
        assert!(alerts.iter().any(|a| a.kind == "freed"));
        m.clear_alerts();
        assert!(m.alerts().is_empty());
    }

    #[test]
    fn a_short_gpu_device_frees_the_contexts_kept_there_before_unloading_a_model() {
        const MIB: u64 = 1 << 20;
        // An 8 GB device, 480 MiB of it taken by another process: critical while our
        // models and their kept contexts hold 7.5 GB.
        let gpu_held = Arc::new(AtomicU64::new(7 * GB + GB / 2));
        let holder = FakeHolder {
            models: Mutex::new(Vec::new()),
            cache: AtomicU64::new(0),
            rss: Arc::new(AtomicU64::new(GB)),
            on_gpu: Mutex::new(vec![
                ("gpu-a".into(), "CUDA0 (RTX)".into(), 3 * GB),
                ("gpu-b".into(), "CUDA0 (RTX)".into(), 4 * GB),
            ]),
            gpu_held: gpu_held.clone(),
            // 512 MiB of KV caches kept on the device, 64 on another one.
            kept_on_gpu: Mutex::new(vec![
                ("CUDA0 (RTX)".into(), 256 * MIB),
                ("CUDA0 (RTX)".into(), 256 * MIB),
                ("CUDA1 (RTX)".into(), 64 * MIB),
            ]),
        };
        let held = gpu_held.clone();
        let read = move || Reading {
            devices: vec![gpu("CUDA0 (RTX)", held.load(Ordering::SeqCst), 480 * MIB)],
            ..reading(24 * GB, 20 * GB, GB)
        };
        let m = Monitor::new(MonitorConfig::default(), Box::new(holder));
        let snap = m.take(&read, None);
        // The kept contexts were enough: every model stays.
        assert_eq!(
            snap.actions,
            vec!["Freed 2 context(s) kept for a next turn on CUDA0 (RTX) at critical GPU memory pressure"]
        );
        assert_eq!(gpu_held.load(Ordering::SeqCst), 7 * GB);
        assert_eq!(snap.pressure, Pressure::Low);
        // Short again with nothing kept: a model goes.
        gpu_held.store(7 * GB + GB / 2, Ordering::SeqCst);
        let snap = m.take(&read, None);
        assert_eq!(
            snap.actions,
            vec!["Unloaded idle model 'gpu-a' (3.2 GB on CUDA0 (RTX)) at critical GPU memory pressure"]
        );
    }

    #[test]
    fn a_short_gpu_device_with_nothing_to_free_does_not_keep_another_one_short() {
        const MIB: u64 = 1 << 20;
        let gpu_held = Arc::new(AtomicU64::new(7 * GB + GB / 2));
        let holder = FakeHolder {
            models: Mutex::new(Vec::new()),
            cache: AtomicU64::new(0),
            rss: Arc::new(AtomicU64::new(GB)),
            on_gpu: Mutex::new(vec![("gpu-c".into(), "CUDA1 (RTX)".into(), 2 * GB)]),
            gpu_held: gpu_held.clone(),
            kept_on_gpu: Mutex::new(Vec::new()),
        };
        let held = gpu_held.clone();
        // CUDA0: critical, its models all in use. CUDA1: high, an idle model there.
        let read = move || Reading {
            devices: vec![
                gpu("CUDA0 (RTX)", 7 * GB + GB / 2, 480 * MIB),
                gpu("CUDA1 (RTX)", held.load(Ordering::SeqCst), 420 * MIB),
            ],
            ..reading(24 * GB, 20 * GB, GB)
        };
        let m = Monitor::new(
            MonitorConfig {
                free_at: Pressure::High,
                ..MonitorConfig::default()
            },
            Box::new(holder),
        );
        let snap = m.take(&read, None);
        assert_eq!(
            snap.actions,
            vec!["Unloaded idle model 'gpu-c' (2.1 GB on CUDA1 (RTX)) at high GPU memory pressure"]
        );
        assert_eq!(snap.pressure, Pressure::Critical, "CUDA0 is still short");
    }

    #[test]
    fn a_gpu_device_short_of_its_headroom_raises_the_pressure_and_frees_its_idle_models_only() {
        const MIB: u64 = 1 << 20;
        let gpu_held = Arc::new(AtomicU64::new(7 * GB + GB / 2));
        let holder = FakeHolder {
            models: Mutex::new(vec![model("on-cpu", GB, false, "Q4_K_M")]),
            cache: AtomicU64::new(0),
            rss: Arc::new(AtomicU64::new(GB)),
            on_gpu: Mutex::new(vec![
                ("gpu-a".into(), "CUDA0 (RTX)".into(), 3 * GB + GB / 2),
                ("gpu-b".into(), "CUDA0 (RTX)".into(), 4 * GB),
            ]),
            gpu_held: gpu_held.clone(),
            kept_on_gpu: Mutex::new(Vec::new()),
        };
        // An 8 GB device; `others` bytes taken by other processes.
        let device = |held: u64, others: u64| gpu("CUDA0 (RTX)", held, others);
        // Filled by the loader on purpose (its 384 MiB headroom and more left): no pressure.
        assert_eq!(device(7 * GB + GB / 2, 0).pressure(), Pressure::Low);
        // Another process takes most of that headroom: critical below 48 MiB left.
        assert_eq!(
            device(7 * GB + GB / 2, 400 * MIB).pressure(),
            Pressure::Medium
        );
        assert_eq!(
            device(7 * GB + GB / 2, 480 * MIB).pressure(),
            Pressure::Critical
        );
        let m = Monitor::new(MonitorConfig::default(), Box::new(holder));
        let held = gpu_held.clone();
        let read = move || Reading {
            devices: vec![device(held.load(Ordering::SeqCst), 480 * MIB)],
            ..reading(24 * GB, 20 * GB, GB)
        };
        // Without auto-freeing: the device's pressure is the snapshot's, and the alert
        // names the device.
        m.set_config(MonitorConfig {
            auto_free: false,
            ..MonitorConfig::default()
        });
        let snap = m.take(&read, None);
        assert_eq!(snap.pressure, Pressure::Critical);
        assert!(snap.used_fraction < 0.5, "the system itself is fine");
        let alert = m.alerts().pop().unwrap();
        assert!(
            alert
                .message
                .starts_with("GPU memory pressure on CUDA0 (RTX) rose to critical (33.6 MB left"),
            "{}",
            alert.message
        );
        // A device no model of ours uses is not our concern.
        let other = Reading {
            devices: vec![DeviceMemory {
                models_bytes: 0,
                ..device(0, 8 * GB)
            }],
            ..reading(24 * GB, 20 * GB, GB)
        };
        assert_eq!(device_pressure(&other), None);
        // With auto-freeing: the least recently used idle model on that device goes, and
        // only it: the idle CPU model stays.
        m.set_config(MonitorConfig::default());
        let snap = m.take(&read, None);
        assert_eq!(
            snap.actions,
            vec!["Unloaded idle model 'gpu-a' (3.8 GB on CUDA0 (RTX)) at critical GPU memory pressure"]
        );
        assert_eq!(gpu_held.load(Ordering::SeqCst), 4 * GB);
        assert_eq!(snap.models.len(), 1, "the CPU model stays");
        assert_eq!(snap.pressure, Pressure::Low);
    }

    #[test]
    fn recommendations_carry_numbers_and_vanish_when_low() {
        let models = vec![model("demo", 98_000_000, false, "Q8_0")];
        let r = recommend(Pressure::High, &models, 64 << 20);
        assert!(
            r.iter()
                .any(|s| s.starts_with("Unload idle model 'demo' (98.0 MB, unused for 6 min)")),
            "{r:?}"
        );
        assert!(r
            .iter()
            .any(|s| s.starts_with("Use q4 instead of Q8_0 for 'demo'")));
        assert!(r
            .iter()
            .any(|s| s.starts_with("Shrink the embedding cache (67.1 MB)")));
        assert!(recommend(Pressure::Low, &models, 64 << 20).is_empty());
    }

    #[test]
    fn observers_see_every_snapshot_and_background_monitoring_runs_until_stopped() {
        fn read() -> Reading {
            reading(8 * GB, 6 * GB, GB)
        }
        let holder = FakeHolder {
            models: Mutex::new(vec![]),
            cache: AtomicU64::new(0),
            rss: Arc::new(AtomicU64::new(0)),
            on_gpu: Mutex::new(Vec::new()),
            gpu_held: Arc::new(AtomicU64::new(0)),
            kept_on_gpu: Mutex::new(Vec::new()),
        };
        let m: &'static Monitor = Box::leak(Box::new(Monitor::new(
            MonitorConfig::default(),
            Box::new(holder),
        )));
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        m.set_observer(Box::new(move |_, _| {
            s.fetch_add(1, Ordering::SeqCst);
        }));
        m.start(Duration::from_millis(5), read);
        std::thread::sleep(Duration::from_millis(100));
        m.stop();
        assert!(!m.is_running());
        std::thread::sleep(Duration::from_millis(20));
        let n = seen.load(Ordering::SeqCst);
        assert!(n >= 3, "{n} snapshots");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(seen.load(Ordering::SeqCst), n, "stopped means stopped");
        assert_eq!(m.stats().count, n);
    }

    #[test]
    fn history_is_bounded_and_alerts_fire_on_a_rise_into_high() {
        let holder = FakeHolder {
            models: Mutex::new(vec![]),
            cache: AtomicU64::new(0),
            rss: Arc::new(AtomicU64::new(0)),
            on_gpu: Mutex::new(Vec::new()),
            gpu_held: Arc::new(AtomicU64::new(0)),
            kept_on_gpu: Mutex::new(Vec::new()),
        };
        let m = Monitor::new(
            MonitorConfig {
                history: 3,
                auto_free: false,
                ..Default::default()
            },
            Box::new(holder),
        );
        for available in [6 * GB, 5 * GB, GB, GB / 2, GB / 2] {
            m.take(|| reading(8 * GB, available, GB), None);
        }
        assert_eq!(m.snapshots().len(), 3);
        let s = m.stats();
        assert_eq!(s.count, 5);
        assert!(s.max_fraction > 0.9 && s.min_fraction < 0.3);
        let rises: Vec<_> = m
            .alerts()
            .into_iter()
            .filter(|a| a.kind == "pressure")
            .collect();
        assert_eq!(rises.len(), 2, "{rises:?}"); // into high, then into critical; staying is no new alert
        assert!(rises[0].message.contains("high"));
    }

    #[test]
    fn the_status_file_has_the_shape_the_cli_reads() {
        let holder = FakeHolder {
            models: Mutex::new(vec![model("demo", 98_000_000, false, "Q4_1")]),
            cache: AtomicU64::new(0),
            rss: Arc::new(AtomicU64::new(0)),
            on_gpu: Mutex::new(Vec::new()),
            gpu_held: Arc::new(AtomicU64::new(0)),
            kept_on_gpu: Mutex::new(Vec::new()),
        };
        let m = Monitor::new(
            MonitorConfig {
                auto_free: false,
                ..Default::default()
            },
            Box::new(holder),
        );
        let snap = m.take(|| reading(8 * GB, GB / 2, GB), None);
        let alerts = m.alerts();
        let v = serde_json::to_value(snap.status(&alerts)).unwrap();
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k.join(",")
        };
        assert_eq!(
            keys(&v),
            "alerts,budgetBytes,devices,embeddingCacheBytes,models,pid,pressure,process,\
             recommendations,system,timestamp,usedBytes,usedFraction"
        );
        assert_eq!(keys(&v["system"]), "available,cgroupLimit,total,used");
        assert_eq!(keys(&v["process"]), "rss,virtualBytes");
        assert_eq!(
            v["models"],
            serde_json::json!([{ "key": "demo", "bytes": 98_000_000, "quantization": "Q4_1",
                                  "inUse": false, "idleMs": 360_000 }])
        );
        assert_eq!(v["pressure"], "critical");
        assert_eq!(v["system"]["cgroupLimit"], serde_json::Value::Null);
        assert_eq!(v["pid"], std::process::id());
        let alert = &v["alerts"][0];
        assert_eq!(keys(alert), "kind,message,pressure,timestamp");
        assert_eq!(alert["kind"], "pressure");
        assert_eq!(alert["pressure"], "critical");
        assert!(alert["timestamp"].is_f64());
    }
}
