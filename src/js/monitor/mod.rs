//! The memory monitor's side of the addon, one concern per file:
//! - `memory_monitor`: the `MemoryMonitor` class (every method in one `#[napi] impl`)
//!   and `getMemoryMonitor`.
//! - `subscribers`: the process-wide `onSnapshot`/`onAlert` subscriptions, binding-side
//!   because they hold JS functions (see there).
//! - `args`: reading the monitor's options and `start`'s interval.
//! - `options`: `MemoryMonitorOptions`, declared once with its ranges and defaults.
//! - `types`: the objects returned to JS, each with its `From` conversion from the core.
//!
//! Status-file publishing and the start from `ORION_ENABLE_MEMORY_MONITOR` are service
//! logic, in [`crate::runtime`].

mod args;
mod memory_monitor;
mod options;
mod subscribers;
mod types;
