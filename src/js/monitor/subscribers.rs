//! The process-wide list of `onSnapshot` and `onAlert` subscriptions, from every thread.
//!
//! This is service state, yet it lives on the binding side: a subscriber is a JS
//! function reached through a napi threadsafe function, which the core (free of napi
//! types) cannot hold. The core hands each snapshot to [`notify`] through
//! [`crate::runtime::listen_to_memory`], which also publishes the status file.

use super::types::{MemoryAlert, MemorySnapshot};
use crate::error::OrionError;
use crate::js::options::{cast_checked, describe};
use crate::monitor::{Alert, Snapshot};
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Env;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

type Tsfn<T> = ThreadsafeFunction<T, Unknown<'static>, T, Status, false, true>;

/// One thread's subscription.
pub(super) enum Subscriber {
    Snapshots(Tsfn<MemorySnapshot>),
    Alerts(Tsfn<MemoryAlert>),
}

/// Every thread's subscriptions. A subscriber whose thread has gone (its worker
/// exited) is dropped the first time a call to it fails. Binding-side (listed in
/// `crate::runtime`'s doc): it holds napi thread-safe functions.
static SUBSCRIBERS: LazyLock<Mutex<Vec<(u64, Subscriber)>>> = LazyLock::new(Default::default);
/// The next subscription's id; binding-side with the list it numbers.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Hand a recorded snapshot, and the alerts it raised, to every subscriber.
fn notify(snap: &Snapshot, alerts: &[Alert]) {
    let mut subs = SUBSCRIBERS.lock();
    subs.retain(|(_, sub)| match sub {
        Subscriber::Snapshots(f) => {
            f.call(snap.clone().into(), ThreadsafeFunctionCallMode::NonBlocking) == Status::Ok
        }
        Subscriber::Alerts(f) => alerts.iter().all(|a| {
            f.call(a.clone().into(), ThreadsafeFunctionCallMode::NonBlocking) == Status::Ok
        }),
    });
}

/// Add `sub`; returns the JS function that removes it.
pub(super) fn subscribe(env: &Env, sub: Subscriber) -> Result<Function<'_, (), ()>> {
    crate::runtime::listen_to_memory(notify);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    SUBSCRIBERS.lock().push((id, sub));
    env.create_function_from_closure("unsubscribe", move |_| {
        SUBSCRIBERS.lock().retain(|(i, _)| *i != id);
        Ok(())
    })
}

/// `cb`, which must be a function, as a weak threadsafe function for a subscription
/// made by `what`.
pub(super) fn callback<T: ToNapiValue + 'static>(
    cb: &Unknown,
    what: &str,
) -> std::result::Result<Tsfn<T>, OrionError> {
    if cb.get_type().ok() != Some(napi::ValueType::Function) {
        return Err(OrionError::InvalidOption(format!(
            "{what} needs a function, got {}",
            describe(cb)
        )));
    }
    let f: Function<T, Unknown<'static>> =
        cast_checked(cb).map_err(|e| OrionError::Internal(e.reason.clone()))?;
    f.build_threadsafe_function()
        .callee_handled::<false>()
        .weak::<true>()
        .build()
        .map_err(|e| OrionError::Internal(e.reason.clone()))
}
