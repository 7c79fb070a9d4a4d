//! `TokenStream`: a generation's text as a JS async iterator, fed by the generating
//! thread through a channel.

use super::args::GenerateCall;
use super::types::{GenerateResult, ToolCall};
use super::R;
use crate::engine::llm::Generation;
use crate::js::promise;
use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// What the generating thread sends the stream: text as it comes, then the outcome.
enum StreamEvent {
    Text(String),
    Done(R<Generation>),
}

/// What a stream runs on the blocking pool: a generation with the call's settings, its
/// text going to the sink it is given.
pub(super) type StreamWork =
    Box<dyn FnOnce(&GenerateCall, &mut dyn FnMut(&str)) -> R<Generation> + Send>;

/// One step of a `TokenStream`, as async iterators return them: text, or (with
/// tools) a call the answer makes, after its text.
#[napi(object)]
pub struct StreamStep {
    pub done: bool,
    #[napi(ts_type = "string | ToolCallEvent")]
    pub value: Option<Either<String, ToolCallEvent>>,
}

/// A tool call in a stream (`options.tools`): it comes after the answer's text, once
/// the call is complete.
#[napi(object)]
pub struct ToolCallEvent {
    pub tool_call: ToolCall,
}

impl StreamStep {
    /// The step after the last piece of text.
    fn end() -> Self {
        Self {
            done: true,
            value: None,
        }
    }
}

/// Generated text as an async iterator: `for await (const text of stream)`. Leaving
/// the loop early (`break`) stops the generation. After the last step, `result`
/// holds the full result.
#[napi]
pub struct TokenStream {
    events: Arc<tokio::sync::Mutex<UnboundedReceiver<StreamEvent>>>,
    cancel: Arc<AtomicBool>,
    result: Arc<parking_lot::Mutex<Option<Generation>>>,
    /// The answer's tool calls still to be yielded, once it is complete.
    calls: Arc<parking_lot::Mutex<std::collections::VecDeque<crate::chat::ToolCall>>>,
}

/// A stream the program dropped without finishing it (no `break`, no `return()`) stops
/// its generation when it is garbage-collected, so the model's lease is not held for
/// nothing until `maxTokens`.
impl Drop for TokenStream {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

impl TokenStream {
    /// Start generating on tokio's blocking pool, with `prepared` the checked call and
    /// its work; a failure to prepare is reported by the first `next()`, like every
    /// other failure.
    pub(super) fn start(env: &Env, prepared: R<(GenerateCall, StreamWork)>) -> Result<Self> {
        let (tx, rx) = unbounded_channel();
        // The caller's signal and leaving the loop early set the same flag.
        let cancel = prepared.as_ref().map_or_else(
            |_| Arc::new(AtomicBool::new(false)),
            |(c, _)| c.cancel.clone(),
        );
        let stream = TokenStream {
            events: Arc::new(tokio::sync::Mutex::new(rx)),
            cancel,
            result: Arc::new(parking_lot::Mutex::new(None)),
            calls: Arc::default(),
        };
        match prepared {
            Err(e) => drop(tx.send(StreamEvent::Done(Err(e)))),
            Ok((call, work_fn)) => match crate::lifecycle::begin_work() {
                Err(e) => drop(tx.send(StreamEvent::Done(Err(e)))),
                Ok(work) => {
                    let registration = crate::js::env_guard::register(env, &call.cancel)?;
                    napi::bindgen_prelude::spawn_blocking(move || {
                        let _work = work;
                        let _registration = registration;
                        let mut on_text = |t: &str| drop(tx.send(StreamEvent::Text(t.to_string())));
                        let result = work_fn(&call, &mut on_text);
                        let _ = tx.send(StreamEvent::Done(result));
                    });
                }
            },
        }
        Ok(stream)
    }
}

#[napi]
impl TokenStream {
    /// The next piece of text; `{ done: true }` at the end. Rejects with the
    /// generation's coded error (`ABORTED`, `UNKNOWN_MODEL`, ...).
    #[napi(
        ts_return_type = "Promise<IteratorResult<string | ToolCallEvent, undefined>>",
        catch_unwind
    )]
    pub fn next<'e>(&self, env: &'e Env) -> Result<PromiseRaw<'e, StreamStep>> {
        let (events, result, calls) =
            (self.events.clone(), self.result.clone(), self.calls.clone());
        let call_step = move |c: crate::chat::ToolCall| StreamStep {
            done: false,
            value: Some(Either::B(ToolCallEvent {
                tool_call: ToolCall::from(c),
            })),
        };
        let fut = async move {
            let mut events = events.lock().await;
            if let Some(c) = calls.lock().pop_front() {
                return Ok(call_step(c));
            }
            match events.recv().await {
                Some(StreamEvent::Text(t)) => Ok(StreamStep {
                    done: false,
                    value: Some(Either::A(t)),
                }),
                Some(StreamEvent::Done(Ok(g))) => {
                    let mut pending: std::collections::VecDeque<_> = g.tool_calls.clone().into();
                    *result.lock() = Some(g);
                    let first = pending.pop_front();
                    *calls.lock() = pending;
                    Ok(first.map_or_else(StreamStep::end, call_step))
                }
                Some(StreamEvent::Done(Err(e))) => Err(e),
                None => Ok(StreamStep::end()),
            }
        };
        promise(env, fut, |_, s| Ok(s))
    }

    /// Stop early (what `break` in `for await` calls).
    #[napi(
        js_name = "return",
        ts_return_type = "Promise<IteratorResult<string | ToolCallEvent, undefined>>",
        catch_unwind
    )]
    pub fn finish<'e>(&self, env: &'e Env) -> Result<PromiseRaw<'e, StreamStep>> {
        self.cancel.store(true, Ordering::Relaxed);
        promise(env, async { Ok(StreamStep::end()) }, |_, s| Ok(s))
    }

    /// The whole result, once the stream has ended.
    #[napi(getter, catch_unwind)]
    pub fn result(&self) -> Option<GenerateResult> {
        self.result.lock().clone().map(GenerateResult::from)
    }
}
