//! The process's exit: native threads are stopped from a JS `exit` listener, which runs
//! before `exit()` calls the C++ static destructors of ONNX Runtime and llama.cpp.
//! (Node runs no environment cleanup hook on `process.exit`, and an `atexit` handler
//! registered when the addon loads runs after those destructors.)

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;
use std::sync::atomic::{AtomicBool, Ordering};

static HOOKED: AtomicBool = AtomicBool::new(false);

/// Called by the package's entry on the main thread: adds, once per process, a listener
/// for `process`'s `exit` event (the real `process` of this thread, whatever realm the
/// caller runs in) that shuts the native runtime down. `exit` fires on `process.exit()`,
/// on a natural end and after an uncaught exception.
#[napi(js_name = "__installExitHook", skip_typescript, catch_unwind)]
pub fn install_exit_hook(env: Env) -> Result<()> {
    if HOOKED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let process: Object = env.get_global()?.get_named_property("process")?;
    let on: Function<FnArgs<(&str, Function<(), ()>)>, Unknown> =
        process.get_named_property("on")?;
    let listener = env.create_function_from_closure("orionNativeShutdown", |_ctx| {
        crate::runtime::shutdown(crate::runtime::SHUTDOWN_TIMEOUT);
        Ok(())
    })?;
    on.apply(process, ("exit", listener).into())?;
    Ok(())
}

/// Stops every native thread now: requests in flight reject with `SHUT_DOWN`, and so
/// does every later call. `true` when everything stopped within `timeoutMs` (default
/// 2000). The package does this by itself when the process exits; call it to shut down
/// earlier, e.g. before handing a worker pool's memory back.
#[napi(js_name = "__shutdown", skip_typescript, catch_unwind)]
pub fn shutdown(timeout_ms: Option<u32>) -> bool {
    let timeout = timeout_ms.map_or(crate::runtime::SHUTDOWN_TIMEOUT, |ms| {
        std::time::Duration::from_millis(ms as u64)
    });
    crate::runtime::shutdown(timeout)
}
