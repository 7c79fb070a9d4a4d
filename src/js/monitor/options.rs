//! `getMemoryMonitor`'s options object, declared once: the struct is the TypeScript
//! interface (its doc comments, ranges and defaults included), the allowed keys and
//! their types, integer ranges included ([`crate::js::options::read`]); `freeAt` and the
//! thresholds are checked against the settings they are merged with.

use crate::error::OrionError;
use crate::js::options::Int;
use crate::monitor::{MonitorConfig, Pressure, Thresholds};
use napi_derive::napi;
use serde::Deserialize;

type R<T> = std::result::Result<T, OrionError>;

/// Where the messages of range errors point.
const WHAT: &str = "options";

/// Options of `getMemoryMonitor` (process-wide): each option left out keeps the
/// monitor's current setting.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryMonitorOptions {
    /// Fractions of the budget in use where pressure becomes medium, high, critical
    /// (default 0.6, 0.75, 0.9).
    pub thresholds: Option<MemoryThresholds>,
    /// Snapshots kept, an integer from 1 to 1000000 (default 100).
    #[napi(ts_type = "number")]
    pub history_size: Option<Int<1, 1_000_000>>,
    /// This process's memory budget in bytes, an integer from 0 to 2^53 - 1; pressure
    /// is its RSS against it. 0 removes it (default: none, the memory the process may
    /// use).
    #[napi(ts_type = "number")]
    pub budget_bytes: Option<Int<0, 9_007_199_254_740_991>>,
    /// Free idle models and the embedding cache at `freeAt` pressure (default true).
    pub auto_free: Option<bool>,
    /// The pressure at which `autoFree` frees memory (default `'critical'`).
    #[napi(ts_type = "'high' | 'critical'")]
    pub free_at: Option<String>,
    /// RSS growth per second that raises an alert, in bytes: an integer from 1 to
    /// 2^53 - 1 (default 100 MiB/s).
    #[napi(ts_type = "number")]
    pub rss_growth_alert_bytes_per_sec: Option<Int<1, 9_007_199_254_740_991>>,
}

/// `MemoryMonitorOptions.thresholds`: fractions of the budget in use, strictly
/// increasing within (0, 1]; each one left out keeps its current value.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryThresholds {
    /// Where pressure becomes medium (default 0.6).
    pub medium: Option<f64>,
    /// Where pressure becomes high (default 0.75).
    pub high: Option<f64>,
    /// Where pressure becomes critical (default 0.9).
    pub critical: Option<f64>,
}

impl MemoryMonitorOptions {
    /// `freeAt` a level of `high` or above. (The thresholds are checked with the
    /// current ones they are merged with, in `applied_to`.)
    pub(super) fn validate(&self) -> R<()> {
        self.free_at().map(drop)
    }

    /// `freeAt` as a pressure level.
    fn free_at(&self) -> R<Option<Pressure>> {
        let Some(f) = &self.free_at else {
            return Ok(None);
        };
        let p = Pressure::parse(f)?;
        if p < Pressure::High {
            return Err(OrionError::InvalidOption(format!(
                "{WHAT}.freeAt must be 'high' or 'critical', got {f:?}"
            )));
        }
        Ok(Some(p))
    }

    /// `current` with the given options applied (validated first).
    pub(super) fn applied_to(&self, current: MonitorConfig) -> R<MonitorConfig> {
        self.validate()?;
        let mut c = current;
        if let Some(t) = &self.thresholds {
            let th = Thresholds {
                medium: t.medium.unwrap_or(c.thresholds.medium),
                high: t.high.unwrap_or(c.thresholds.high),
                critical: t.critical.unwrap_or(c.thresholds.critical),
            };
            th.validate()?;
            c.thresholds = th;
        }
        if let Some(h) = self.history_size {
            c.history = h.usize();
        }
        if let Some(b) = self.budget_bytes {
            c.budget_bytes = (b.get() > 0).then_some(b.get());
        }
        if let Some(a) = self.auto_free {
            c.auto_free = a;
        }
        if let Some(p) = self.free_at()? {
            c.free_at = p;
        }
        if let Some(g) = self.rss_growth_alert_bytes_per_sec {
            c.rss_growth_alert_bytes_per_sec = g.get();
        }
        Ok(c)
    }
}
