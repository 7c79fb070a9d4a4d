//! The process's exit, as every floor sees it: whether shutdown has begun, and the
//! native work in flight that it must wait for. Ground: engines and services check
//! [`is_shut_down`] and count their work with [`begin_work`]; `runtime.rs` decides
//! when shutdown begins ([`refuse_new_work`]) and what it stops.
//!
//! Locks: `WORK` (with `WORK_DONE`) is a leaf; `SHUT_DOWN` is set and checked under it.
//! `COMPUTING` (with `COMPUTE_DONE`) is a leaf.

use crate::error::{OrionError, Result};
use parking_lot::Mutex;

/// Set once the process is exiting: no new work is taken.
static SHUT_DOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Native work in flight outside the embedding threads: model loads, generations,
/// unloads by the keep-alive sweeper or the memory monitor. A leaf lock, under which
/// `SHUT_DOWN` is set and checked.
static WORK: Mutex<usize> = Mutex::new(0);
static WORK_DONE: parking_lot::Condvar = parking_lot::Condvar::new();

pub(crate) fn is_shut_down() -> bool {
    SHUT_DOWN.load(std::sync::atomic::Ordering::SeqCst)
}

/// Counts one piece of native work until dropped; see [`begin_work`].
pub(crate) struct WorkGuard(());

impl Drop for WorkGuard {
    fn drop(&mut self) {
        let mut n = WORK.lock();
        *n -= 1;
        if *n == 0 {
            WORK_DONE.notify_all();
        }
    }
}

/// Register work that calls into llama.cpp or ONNX Runtime, so that shutdown waits for
/// it. `SHUT_DOWN` once the process is exiting.
pub(crate) fn begin_work() -> Result<WorkGuard> {
    let mut n = WORK.lock();
    // Checked under the lock that `refuse_new_work` takes: no work starts after it.
    if is_shut_down() {
        return Err(OrionError::ShutDown);
    }
    *n += 1;
    Ok(WorkGuard(()))
}

/// llama.cpp decode steps in flight. A step cannot be interrupted (llama-cpp-2 exposes no
/// abort callback), and llama.cpp's static destructors crash under one, so the exit waits
/// for the steps in flight even past its deadline; none starts once shut down.
static COMPUTING: Mutex<usize> = Mutex::new(0);
static COMPUTE_DONE: parking_lot::Condvar = parking_lot::Condvar::new();

/// Counts one llama.cpp decode step until dropped; see [`computing`].
pub(crate) struct ComputeGuard(());

impl Drop for ComputeGuard {
    fn drop(&mut self) {
        let mut n = COMPUTING.lock();
        *n -= 1;
        if *n == 0 {
            COMPUTE_DONE.notify_all();
        }
    }
}

/// Register a llama.cpp decode step (the llama layer's only way to run a graph).
pub(crate) fn computing() -> ComputeGuard {
    *COMPUTING.lock() += 1;
    ComputeGuard(())
}

/// Wait, until `deadline`, for every decode step in flight to end.
pub(crate) fn wait_for_compute(deadline: std::time::Instant) -> bool {
    let mut n = COMPUTING.lock();
    while *n > 0 {
        if COMPUTE_DONE.wait_until(&mut n, deadline).timed_out() {
            return false;
        }
    }
    true
}

/// From now on [`begin_work`] refuses and [`is_shut_down`] is true.
pub(crate) fn refuse_new_work() {
    let _n = WORK.lock();
    SHUT_DOWN.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Wait, until `deadline`, for every piece of work counted by [`begin_work`] to end.
pub(crate) fn wait_for_work(deadline: std::time::Instant) -> bool {
    let mut n = WORK.lock();
    while *n > 0 {
        if WORK_DONE.wait_until(&mut n, deadline).timed_out() {
            return false;
        }
    }
    true
}

/// The native libraries whose static destructors must not run under our threads.
#[derive(Clone, Copy)]
pub(crate) enum Library {
    OnnxRuntime = 0,
    LlamaCpp = 1,
}

static EXIT_HANDLERS: [std::sync::Once; 2] = [std::sync::Once::new(), std::sync::Once::new()];

/// What stops every native thread at exit: `runtime.rs`'s shutdown, set when it builds
/// the first service (before any model can load).
static AT_EXIT: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Set what [`shutdown_before_later_destructors`] runs at exit (the first one stays).
pub(crate) fn set_exit_hook(hook: fn()) {
    let _ = AT_EXIT.set(hook);
}

extern "C" fn run_exit_hook() {
    if let Some(hook) = AT_EXIT.get() {
        hook();
    }
}

/// A fallback for processes that exit without the JS exit listener having run: `exit()`
/// calls its handlers in reverse order of registration, so one registered after a
/// library's first model load runs before the destructors that library registered
/// while loading. Called after each model load; registers once per library.
pub(crate) fn shutdown_before_later_destructors(library: Library) {
    EXIT_HANDLERS[library as usize].call_once(|| {
        // SAFETY: `run_exit_hook` is a plain `extern "C" fn()` that lives as long as
        // the addon, which is never unloaded before exit; atexit only stores the pointer.
        unsafe {
            libc::atexit(run_exit_hook);
        }
    });
}
