//! The process's exit. Native threads must be out of ONNX Runtime and llama.cpp before
//! `exit()` runs their C++ static destructors, which crash under a thread still inside
//! them. Node runs no environment cleanup hook on `process.exit`, and an `atexit`
//! handler registered when the addon loads runs after those destructors; so:
//! - on the main thread, a listener for `process`'s `exit` event (which fires on
//!   `process.exit()`, a natural end and an uncaught exception) shuts everything down;
//! - on every thread, an environment cleanup hook: when the last environment using the
//!   addon goes (an app whose main thread never loaded it), it waits for the native
//!   threads to be idle, since the process may exit right after.

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Whether the main thread's `exit` listener is installed. Binding-side (listed in
/// `crate::runtime`'s doc): it is about a JS environment's `process`.
static HOOKED: AtomicBool = AtomicBool::new(false);

/// `process.on(event, listener)`'s arguments.
type OnArgs<'a> = FnArgs<(&'a str, Function<'a, (), ()>)>;
/// JS environments that attached the addon and have not been torn down. Binding-side
/// (listed in `crate::runtime`'s doc): counted by their cleanup hooks.
static LIVE_ENVS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Each JS environment runs on a thread of its own (the main thread, or a worker's).
    // Binding-side (listed in `crate::runtime`'s doc): whether this one attached.
    static ATTACHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Called by the package's entry each time it is evaluated on a thread (jest evaluates
/// it once per test file); only the first call per thread does anything.
#[napi(js_name = "__attach", skip_typescript, catch_unwind)]
pub fn attach(env: Env, is_main_thread: bool) -> Result<()> {
    if ATTACHED.with(|a| a.replace(true)) {
        return Ok(());
    }
    LIVE_ENVS.fetch_add(1, Ordering::SeqCst);
    env.add_env_cleanup_hook((), |()| {
        if LIVE_ENVS.fetch_sub(1, Ordering::SeqCst) == 1 {
            crate::runtime::quiesce(std::time::Instant::now() + crate::runtime::SHUTDOWN_TIMEOUT);
        }
    })?;
    if !is_main_thread || HOOKED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    // This thread's real `process`, whatever realm the caller runs in (jest's sandbox
    // has its own `process` object).
    let process: Object = env.get_global()?.get_named_property("process")?;
    let on: Function<OnArgs, Unknown> = process.get_named_property("on")?;
    let listener = env.create_function_from_closure("orionNativeShutdown", |_ctx| {
        crate::runtime::shutdown(crate::runtime::SHUTDOWN_TIMEOUT);
        Ok(())
    })?;
    on.apply(process, ("exit", listener).into())?;
    Ok(())
}

/// Shut down now, as the exit listener does: for tests, and for hosts that tear the
/// runtime down before exiting. Returns whether everything stopped within `timeoutMs`.
#[napi(js_name = "__shutdown", skip_typescript, catch_unwind)]
pub fn shutdown(timeout_ms: Option<u32>) -> bool {
    let timeout = timeout_ms.map_or(crate::runtime::SHUTDOWN_TIMEOUT, |ms| {
        std::time::Duration::from_millis(u64::from(ms))
    });
    crate::runtime::shutdown(timeout)
}
