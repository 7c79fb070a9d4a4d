//! Calls back into JS from the threads that load and generate, through threadsafe
//! functions: load progress (`onProgress`) and generated text (`onToken`).

use super::R;
use crate::error::OrionError;
use crate::js::options::cast_checked;
use crate::llm::loader::ProgressFn;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Env;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn internal(e: napi::Error) -> OrionError {
    OrionError::Internal(e.reason)
}

/// Delivers progress to a caller's callback on the caller's thread, never decreasing
/// and ending at exactly 100, whichever of the background reports and the final
/// "loaded" arrives first.
pub(in crate::js) struct ProgressSink {
    user: FunctionRef<u32, Unknown<'static>>,
    delivered: Cell<u32>,
}

impl ProgressSink {
    /// A sink for the JS function `cb`, and the [`ProgressFn`] the load reports to
    /// from its own thread (every report but the final 100, which comes with the result).
    pub(super) fn new(env: &Env, cb: &Unknown) -> R<(Rc<Self>, ProgressFn)> {
        let user: Function<u32, Unknown<'static>> = cast_checked(cb).map_err(internal)?;
        let sink = Rc::new(ProgressSink {
            user: user.create_ref().map_err(internal)?,
            delivered: Cell::new(0),
        });
        let for_js = sink.clone();
        let relay = env
            .create_function_from_closure("orionProgress", move |ctx| {
                let p: u32 = ctx.first_arg()?;
                for_js.deliver(ctx.env, p);
                Ok(())
            })
            .map_err(internal)?;
        let tsfn: ThreadsafeFunction<u32, (), u32, Status, false, true> = relay
            .build_threadsafe_function()
            .callee_handled::<false>()
            .weak::<true>()
            .build()
            .map_err(internal)?;
        let progress: ProgressFn = Arc::new(move |p| {
            // 100 is delivered with the result, so that it is never late.
            if p < 100 {
                tsfn.call(p, ThreadsafeFunctionCallMode::NonBlocking);
            }
        });
        Ok((sink, progress))
    }

    /// Hand `p` to the callback, unless it would not move the progress forward.
    pub(in crate::js) fn deliver(&self, env: &Env, p: u32) {
        if p <= self.delivered.get() && !(p == 0 && self.delivered.get() == 0) {
            return;
        }
        self.delivered.set(p);
        if let Ok(f) = self.user.borrow_back(env) {
            let _ = f.call(p);
        }
    }
}

/// Streams generated text to a JS callback. The generation thread waits (briefly) for
/// the callback to have seen every piece before the result resolves, so `onToken` has
/// always received the whole text by then.
pub(super) struct TokenSink {
    tsfn: ThreadsafeFunction<String, Unknown<'static>, String, Status, false, true>,
    sent: AtomicUsize,
    seen: Arc<AtomicUsize>,
    closed: AtomicBool,
    /// The generation's stop flag: nobody is listening once the sink is closed.
    cancel: Arc<AtomicBool>,
    /// `stopOnAbort`: an aborted generation still resolves with its text, which the
    /// callback must have seen by then.
    deliver_on_abort: bool,
}

impl TokenSink {
    /// A sink for the JS function `f` (already checked to be a function) that sets
    /// `cancel` once nobody is listening any more.
    pub(super) fn new(f: &Unknown, cancel: Arc<AtomicBool>, deliver_on_abort: bool) -> R<Self> {
        let f: Function<String, Unknown<'static>> = cast_checked(f).map_err(internal)?;
        let tsfn = f
            .build_threadsafe_function()
            .callee_handled::<false>()
            .weak::<true>()
            .build()
            .map_err(internal)?;
        Ok(Self {
            tsfn,
            sent: AtomicUsize::new(0),
            seen: Arc::new(AtomicUsize::new(0)),
            closed: AtomicBool::new(false),
            cancel,
            deliver_on_abort,
        })
    }

    /// Queue `text` for the callback, from the generation's thread.
    pub(super) fn send(&self, text: &str) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let seen = self.seen.clone();
        let status = self.tsfn.call_with_return_value(
            text.to_string(),
            ThreadsafeFunctionCallMode::NonBlocking,
            move |_, _| {
                seen.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
        );
        if status == Status::Ok {
            self.sent.fetch_add(1, Ordering::SeqCst);
        } else {
            // The subscribing thread is gone (its worker exited): stop generating for it.
            self.closed.store(true, Ordering::Relaxed);
            self.cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Wait (up to 5 s) until the callback has seen every piece sent, unless the
    /// environment it runs on is `gone`.
    pub(super) fn flush(&self, gone: &crate::js::env_guard::Gone) {
        let deadline = Instant::now() + Duration::from_secs(5);
        // A cancelled generation's thread may be the one that would run the callbacks
        // (a worker being torn down), and an exiting process will not run them at all.
        // Aborted with `stopOnAbort`, the result still comes: its text is delivered first.
        let given_up = || self.cancel.load(Ordering::Relaxed) && !self.deliver_on_abort;
        while !self.closed.load(Ordering::Relaxed)
            && !given_up()
            && !gone.is_gone()
            && !crate::lifecycle::is_shut_down()
            && self.seen.load(Ordering::SeqCst) < self.sent.load(Ordering::SeqCst)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}
