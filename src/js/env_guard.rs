//! Work belongs to the JS thread (main or worker) that started it. When that thread's
//! environment is torn down (a worker exits or is terminated), its generations are
//! stopped and waited for, so that none keeps calling into a JS environment that no
//! longer exists, and its embedding requests are given up, so that the shared queue
//! drops their texts instead of computing them for nobody.
//!
//! # Locks
//!
//! `ENVS` and an environment's `EnvWork::running` (with `idle`) are never held together:
//! `work_of` and `stop_all` let go of `ENVS` before taking `running`. Both are leaves
//! otherwise; under `ENVS`, `work_of` only registers the cleanup hook (a napi call on the
//! calling JS thread, which returns at once).
//!
//! `stop_all` runs on the JS thread being torn down and waits there (at most 5 s) for
//! that environment's generations to end. Those generations must never wait for that
//! thread in turn: their calls back into JS are `NonBlocking` threadsafe-function calls,
//! and `TokenSink::flush` stops waiting for `onToken` once the cancel flag that
//! `stop_all` sets is up. `Registration::drop` (on a generation's blocking thread) takes
//! only `running`.

use napi::Env;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

#[derive(Default)]
struct Running {
    cancels: Vec<Weak<AtomicBool>>,
    count: usize,
}

#[derive(Default)]
struct EnvWork {
    running: Mutex<Running>,
    idle: Condvar,
    gone: Arc<Gone>,
}

/// Set, and its waiters woken, when the environment is torn down.
#[derive(Default)]
pub(crate) struct Gone {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Gone {
    /// Whether the environment is gone.
    pub(crate) fn is_gone(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Resolves once the environment is gone (never, while it lives).
    pub(crate) async fn wait(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a teardown in between still wakes us.
        notified.as_mut().enable();
        if self.flag.load(Ordering::SeqCst) {
            return;
        }
        notified.await;
    }
}

/// Binding-side (listed in `crate::runtime`'s doc): keyed by JS environments, which
/// only this layer knows.
static ENVS: LazyLock<Mutex<HashMap<usize, Arc<EnvWork>>>> = LazyLock::new(Default::default);

/// Keeps its generation registered with its environment until dropped.
pub(crate) struct Registration {
    work: Arc<EnvWork>,
}

impl Registration {
    /// The environment's end, as its generations see it.
    pub(crate) fn gone(&self) -> &Gone {
        &self.work.gone
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut r = self.work.running.lock();
        r.count -= 1;
        r.cancels.retain(|w| w.strong_count() > 0);
        if r.count == 0 {
            self.work.idle.notify_all();
        }
    }
}

fn work_of(env: &Env) -> napi::Result<Arc<EnvWork>> {
    let key = env.raw() as usize;
    let mut envs = ENVS.lock();
    if let Some(w) = envs.get(&key) {
        return Ok(w.clone());
    }
    let w = Arc::new(EnvWork::default());
    envs.insert(key, w.clone());
    env.add_env_cleanup_hook(key, stop_all)?;
    Ok(w)
}

/// What tells the work of `env` that the environment has gone.
pub(crate) fn gone(env: &Env) -> napi::Result<Arc<Gone>> {
    Ok(work_of(env)?.gone.clone())
}

/// Register a generation started on `env`; `cancel` is set if the environment goes.
pub(crate) fn register(env: &Env, cancel: &Arc<AtomicBool>) -> napi::Result<Registration> {
    let work = work_of(env)?;
    {
        let mut r = work.running.lock();
        r.count += 1;
        r.cancels.push(Arc::downgrade(cancel));
    }
    Ok(Registration { work })
}

fn stop_all(key: usize) {
    let Some(work) = ENVS.lock().remove(&key) else {
        return;
    };
    work.gone.flag.store(true, Ordering::SeqCst);
    work.gone.notify.notify_waiters();
    let mut r = work.running.lock();
    for c in r.cancels.iter().filter_map(Weak::upgrade) {
        c.store(true, Ordering::Relaxed);
    }
    // Generations check their flag every token: this is milliseconds, bounded anyway.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while r.count > 0 {
        if work.idle.wait_until(&mut r, deadline).timed_out() {
            break;
        }
    }
}
