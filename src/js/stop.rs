//! A call's stop switch. `index.js` is the one place that listens to a caller's
//! `AbortSignal`: one listener per signal for every call that shares it, removed when
//! the last of them settles. For each call it makes a switch (`__stopSwitch()`), hands it to the
//! addon in the options (as `signal`) and throws it (`__stop(switch)`) when the signal aborts; the addon
//! reads the switch and never touches the signal.

use crate::error::OrionError;
use napi::bindgen_prelude::{External, ExternalRef};
use napi::Unknown;
use napi_derive::napi;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

type R<T> = std::result::Result<T, OrionError>;

/// A call's switch: thrown once, from JS; read from any thread. JS holds it as an
/// opaque `External`, so that it has no class (and no type) in the package's API.
pub struct Switch {
    flag: Arc<AtomicBool>,
    fired: watch::Sender<bool>,
}

/// A new switch, not thrown.
#[napi(js_name = "__stopSwitch", skip_typescript, catch_unwind)]
pub fn stop_switch() -> External<Switch> {
    External::new(Switch {
        flag: Arc::new(AtomicBool::new(false)),
        fired: watch::Sender::new(false),
    })
}

/// Throw `switch`: its call's work sees the flag at its next check, and a wait on it
/// ends.
#[napi(js_name = "__stop", skip_typescript, catch_unwind)]
pub fn stop(switch: &External<Switch>) {
    switch.flag.store(true, Ordering::Relaxed);
    switch.fired.send_replace(true);
}

/// What a call keeps of its switch.
pub(crate) struct Stop {
    flag: Arc<AtomicBool>,
    fired: watch::Receiver<bool>,
}

impl Stop {
    /// The flag that the call's work polls (shared with whatever else stops it).
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    /// A receiver that turns `true` when the switch is thrown.
    pub(crate) fn fired(&self) -> watch::Receiver<bool> {
        self.fired.clone()
    }
}

/// The options' `signal`, as `index.js` passes it: a switch. Anything else was not an
/// `AbortSignal` in the caller's options (`index.js` relays only those); a switch
/// already thrown (an aborted signal) is an `ABORTED` error right away.
pub(crate) fn read_stop(signal: Unknown) -> R<Stop> {
    let switch: ExternalRef<Switch> = crate::js::options::cast_checked(&signal)
        .map_err(|_| OrionError::InvalidOption("options.signal must be an AbortSignal".into()))?;
    if switch.flag.load(Ordering::Relaxed) {
        return Err(OrionError::Aborted);
    }
    Ok(Stop {
        flag: switch.flag.clone(),
        fired: switch.fired.subscribe(),
    })
}
