//! Reading what JS passes to the memory monitor: its options and `start`'s interval.

use crate::error::OrionError;
use crate::js::options::{cast_checked, describe, Options};
use crate::monitor::{MonitorConfig, Pressure, Thresholds};
use napi::bindgen_prelude::*;
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

/// `current` with `getMemoryMonitor`'s options applied.
pub(super) fn read_config(options: Option<Unknown>, current: MonitorConfig) -> R<MonitorConfig> {
    let o = Options::parse(options, "options", MONITOR_OPTIONS)?;
    let mut c = current;
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
    Ok(c)
}

/// `start`'s `intervalMs`: a number of milliseconds from 1 to 2147483647.
pub(super) fn read_interval(interval_ms: &Unknown) -> R<Duration> {
    let bad = || {
        OrionError::InvalidOption(format!(
            "intervalMs must be a number of milliseconds from 1 to 2147483647 (24.8 days), got {}",
            describe(interval_ms)
        ))
    };
    if interval_ms.get_type().ok() != Some(napi::ValueType::Number) {
        return Err(bad());
    }
    let ms: f64 = cast_checked(interval_ms).map_err(|_| bad())?;
    // Beyond setTimeout's own limit an interval is a mistake, and far beyond it
    // Duration's conversion would panic.
    if !ms.is_finite() || ms <= 0.0 || ms > f64::from(i32::MAX) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(ms.max(1.0) / 1000.0))
}
