//! Reading what JS passes to the memory monitor: its options and `start`'s interval.

use super::options::MemoryMonitorOptions;
use crate::error::OrionError;
use crate::js::options::{cast_checked, describe, read};
use crate::monitor::MonitorConfig;
use napi::bindgen_prelude::*;
use std::time::Duration;

type R<T> = std::result::Result<T, OrionError>;

/// `current` with `getMemoryMonitor`'s options applied.
pub(super) fn read_config(options: Option<Unknown>, current: MonitorConfig) -> R<MonitorConfig> {
    let (o, _): (MemoryMonitorOptions, _) = read(options, "options")?;
    o.applied_to(current)
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
