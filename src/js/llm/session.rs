//! The `ChatSession` class (`loader.createChatSession`): a conversation kept by the
//! addon, each turn sent with the history before it (`crate::llm::session`).

use super::args::{generate_options, read_prompt, GenerateCall};
use super::stream::{StreamWork, TokenStream};
use super::types::{ChatMessageOut, GenerateResult, SavedChat};
use super::R;
use crate::engine::llm::Prompt;
use crate::error::{echo, OrionError};
use crate::js::options::{cast_checked, describe, Options};

use crate::js::{js_error, promise, rejected};
use crate::llm::session::{ChatSession as Session, Message};
use crate::llm::LlmService;
use napi::bindgen_prelude::*;
use napi::{Env, ValueType};
use napi_derive::napi;
use std::sync::Arc;

/// A conversation with one model: `send` a message, get the answer; the history (the
/// system message, then each message and answer) is kept here and sent with every turn.
/// When a turn would not fit the model's context, the oldest exchanges after the system
/// message are dropped first (`droppedMessages` says how many), unless the session was
/// created with `contextShift: false` (then `PROMPT_TOO_LONG`).
#[napi]
pub struct ChatSession {
    svc: &'static LlmService,
    session: Arc<Session>,
}

impl ChatSession {
    pub(super) fn new(svc: &'static LlmService, session: Session) -> Self {
        Self {
            svc,
            session: Arc::new(session),
        }
    }
}

/// A message to send: a string (the user's), `{ role: 'user', content }`, or a tool's
/// result `{ role: 'tool', content, toolCallId?, name? }` answering the last turn's call.
fn read_message(v: &Unknown) -> R<Message> {
    if v.get_type().ok() == Some(ValueType::String) {
        let s: String = cast_checked(v).map_err(|e| OrionError::InvalidInput(e.reason.clone()))?;
        if s.is_empty() {
            return Err(OrionError::InvalidInput("message must not be empty".into()));
        }
        return Ok(Message::text("user", s));
    }
    if v.get_type().ok() != Some(ValueType::Object) || v.is_array().unwrap_or(false) {
        return Err(OrionError::InvalidInput(format!(
            "message must be a string or a {{ role: 'user', content }} message, got {}",
            describe(v)
        )));
    }
    let m = super::args::read_message(*v, "message")?;
    if m.role != "user" && m.role != "tool" {
        return Err(OrionError::InvalidInput(format!(
            "message.role must be 'user' or 'tool' (the session adds the answers, and its system \
             message is set when it is created), got {}",
            echo(&m.role)
        )));
    }
    Ok(m)
}

/// The turns of a saved chat: `{ role: 'user' | 'assistant', content }` messages.
fn read_turns(v: &Unknown, what: &str) -> R<Vec<Message>> {
    // A new or reset session saves no messages.
    if v.is_array().unwrap_or(false) {
        let arr: Object =
            cast_checked(v).map_err(|e| OrionError::InvalidInput(e.reason.clone()))?;
        if arr.get_array_length().unwrap_or(1) == 0 {
            return Ok(Vec::new());
        }
    }
    let Prompt::Messages(m) = read_prompt(v)? else {
        return Err(OrionError::InvalidInput(format!(
            "{what} must be an array of {{ role, content }} messages"
        )));
    };
    if let Some((i, m)) = m.iter().enumerate().find(|(_, m)| m.role == "system") {
        return Err(OrionError::InvalidInput(format!(
            "{what}[{i}].role is {}: a saved chat's system message is its `system`",
            echo(&m.role)
        )));
    }
    Ok(m)
}

#[napi]
impl ChatSession {
    /// The model key the session talks to.
    #[napi(getter, catch_unwind)]
    pub fn model_key(&self) -> String {
        self.session.key().to_string()
    }

    /// Send a message (a string, or `{ role: 'user', content }`) with the history; the
    /// message and the answer join it. Options are `generate`'s; the result's
    /// `droppedMessages` counts the messages dropped from the history's start for this
    /// turn to fit. Turns of one session run one after the other.
    #[napi(
        ts_args_type = "message: string | ChatMessage, options?: GenerateOptions",
        ts_return_type = "Promise<GenerateResult>",
        catch_unwind
    )]
    pub fn send<'e>(
        &self,
        env: &'e Env,
        message: Unknown,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'e, GenerateResult>> {
        let prepared = (|| -> R<_> { Ok((read_message(&message)?, generate_options(options)?)) })();
        let (message, call) = match prepared {
            Ok(p) => p,
            Err(e) => return rejected(env, e),
        };
        let registration = crate::js::env_guard::register(env, &call.cancel)?;
        let (svc, session) = (self.svc, self.session.clone());
        let fut = crate::js::blocking(move || {
            // Held until the generation ends (see `env_guard`).
            let guard = registration;
            let sink = call.tokens.clone();
            let mut on_text = |t: &str| {
                if let Some(s) = &sink {
                    s.send(t);
                }
            };
            let turn = session.send(svc, message, &call.params, &call.cancel, &mut on_text);
            if let Some(s) = &call.tokens {
                s.flush(guard.gone());
            }
            turn
        });
        promise(env, fut, |_, g| Ok(GenerateResult::from(g)))
    }

    /// `send` as an async iterator of text pieces; `stream.result` holds the result
    /// (with `droppedMessages`) at the end. Leaving the loop early stops the turn, which
    /// then leaves the history as it was.
    #[napi(
        ts_args_type = "message: string | ChatMessage, options?: Omit<GenerateOptions, 'onToken'>",
        catch_unwind
    )]
    pub fn send_stream(
        &self,
        env: Env,
        message: Unknown,
        options: Option<Unknown>,
    ) -> Result<TokenStream> {
        let prepared = (|| -> R<(GenerateCall, StreamWork)> {
            let message = read_message(&message)?;
            let call = generate_options(options)?;
            if call.tokens.is_some() {
                return Err(OrionError::InvalidOption(
                    "sendStream yields the text itself: drop the onToken option".into(),
                ));
            }
            let (svc, session) = (self.svc, self.session.clone());
            let work: StreamWork = Box::new(move |call, on_text| {
                session.send(svc, message, &call.params, &call.cancel, on_text)
            });
            Ok((call, work))
        })();
        TokenStream::start(&env, prepared)
    }

    /// The system message (when there is one), then every message and answer kept.
    #[napi(getter, catch_unwind)]
    pub fn history(&self) -> Vec<ChatMessageOut> {
        self.session
            .messages()
            .into_iter()
            .map(ChatMessageOut::from)
            .collect()
    }

    /// Forget the history; the system message stays.
    #[napi(catch_unwind)]
    pub fn reset(&self) {
        self.session.reset();
    }

    /// The conversation as plain data, for `restore` (JSON-serialisable).
    #[napi(catch_unwind)]
    pub fn save(&self) -> SavedChat {
        let (system, turns) = self.session.saved();
        SavedChat {
            system,
            messages: turns.into_iter().map(ChatMessageOut::from).collect(),
        }
    }

    /// Continue a saved conversation: its system message and history replace these.
    #[napi(ts_args_type = "saved: SavedChat", catch_unwind)]
    pub fn restore(&self, env: Env, saved: Unknown) -> Result<()> {
        let run = || -> R<()> {
            if saved.get_type().ok() != Some(ValueType::Object) || saved.is_array().unwrap_or(false)
            {
                return Err(OrionError::InvalidInput(format!(
                    "saved must be what save() returned ({{ system, messages }}), got {}",
                    describe(&saved)
                )));
            }
            let o = Options::parse(Some(saved), "saved", &["system", "messages"])?;
            let system = o.string("system")?;
            let messages = match o.raw("messages")? {
                Some(m) => read_turns(&m, "saved.messages")?,
                None => Vec::new(),
            };
            self.session.restore(system, messages);
            Ok(())
        };
        run().map_err(|e| js_error(&env, &e))
    }
}
