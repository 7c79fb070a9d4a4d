//! Chat sessions: a conversation with one model, its history kept here, each turn sent
//! with the history before it. When the next turn would not fit the model's context
//! (the prompt plus room for the answer), the oldest exchanges after the system message
//! are dropped until it does, and the turn says how many messages went; with context
//! shift off, the turn is `PROMPT_TOO_LONG` instead. The KV cache of the kept prefix is
//! today's prefix cache: a turn that follows the previous one evaluates its new tokens
//! only; the turn after a drop evaluates the window again, once.

use super::LlmService;
use crate::engine::llm::{GenerateParams, Generation, Prompt, TokenAnswer, TokenRequest};
use crate::error::{OrionError, Result};
use std::sync::atomic::AtomicBool;

pub(crate) use crate::chat::Message;

/// A conversation with one model.
pub(crate) struct ChatSession {
    key: String,
    context_shift: bool,
    /// Held for a whole turn: turns of one session run one after the other, each
    /// seeing the last. Taken before `state`.
    turn: parking_lot::Mutex<()>,
    /// The system message and the messages after it that the next turn is sent with.
    /// Held briefly (the JS thread reads it): a leaf lock.
    state: parking_lot::Mutex<History>,
}

#[derive(Clone, Default)]
struct History {
    system: Option<String>,
    turns: Vec<Message>,
    /// Counts resets and restores: a turn under way when one happens does not write
    /// its answer over it.
    epoch: u64,
}

impl History {
    /// The system message, then the turns.
    fn messages(&self) -> Vec<Message> {
        self.with(&self.turns)
    }

    /// The system message, then `turns`.
    fn with(&self, turns: &[Message]) -> Vec<Message> {
        self.system
            .iter()
            .map(|s| Message::text("system", s.clone()))
            .chain(turns.iter().cloned())
            .collect()
    }
}

impl ChatSession {
    pub(crate) fn new(key: String, system: Option<String>, context_shift: bool) -> Self {
        Self {
            key,
            context_shift,
            turn: parking_lot::Mutex::new(()),
            state: parking_lot::Mutex::new(History {
                system,
                turns: Vec::new(),
                epoch: 0,
            }),
        }
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// The system message, then the history.
    pub(crate) fn messages(&self) -> Vec<Message> {
        self.state.lock().messages()
    }

    /// The system message and the history, apart.
    pub(crate) fn saved(&self) -> (Option<String>, Vec<Message>) {
        let s = self.state.lock();
        (s.system.clone(), s.turns.clone())
    }

    /// Forget the history (the system message stays).
    pub(crate) fn reset(&self) {
        let mut s = self.state.lock();
        s.turns.clear();
        s.epoch += 1;
    }

    /// Replace the system message and the history.
    pub(crate) fn restore(&self, system: Option<String>, turns: Vec<Message>) {
        let mut s = self.state.lock();
        let epoch = s.epoch + 1;
        *s = History {
            system,
            turns,
            epoch,
        };
    }

    /// Send `message` with the history before it; the answer joins the history, and
    /// says how many messages were dropped from the history's start for it to fit.
    /// Blocking.
    pub(crate) fn send(
        &self,
        svc: &LlmService,
        message: Message,
        params: &GenerateParams,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation> {
        let _turn = self.turn.lock();
        let state = self.state.lock().clone();
        let mut turns = state.turns.clone();
        turns.push(message);
        let dropped = self.fit(svc, &state, &mut turns, params, cancel)?;
        let prompt = Prompt::Messages(state.with(&turns));
        let mut generation = svc.generate(&self.key, &prompt, params, cancel, on_text)?;
        generation.dropped_messages = Some(u32::try_from(dropped).unwrap_or(u32::MAX));
        turns.push(Message {
            tool_calls: generation.tool_calls.clone(),
            ..Message::text("assistant", generation.text.clone())
        });
        let mut now = self.state.lock();
        if now.epoch == state.epoch {
            now.turns = turns;
        }
        Ok(generation)
    }

    /// When the prompt does not leave room for an answer of `max_tokens` (or a quarter
    /// of the context, if less) in the model's context, drop the oldest messages of
    /// `turns` until the prompt and that room take half the context at most: the next
    /// turns then fit as they are and continue from the kept context, instead of each
    /// dropping one exchange and evaluating the whole window again. The last message
    /// always stays, and messages go in whole exchanges (up to the next user message) so
    /// that the roles still alternate. How many went.
    fn fit(
        &self,
        svc: &LlmService,
        state: &History,
        turns: &mut Vec<Message>,
        params: &GenerateParams,
        cancel: &AtomicBool,
    ) -> Result<usize> {
        let max_tokens = params.max_tokens;
        let context = svc.context_length(&self.key, cancel)?;
        let room = max_tokens.min(context / 4).max(1);
        let mut dropped = 0;
        loop {
            let tokens = self.count(svc, &state.with(turns), params, cancel)?;
            let target = if dropped == 0 { context } else { context / 2 };
            if tokens.saturating_add(room) <= target {
                return Ok(dropped);
            }
            if turns.len() <= 1 && tokens.saturating_add(room) <= context {
                return Ok(dropped);
            }
            if !self.context_shift || turns.len() <= 1 {
                return Err(OrionError::PromptTooLong {
                    tokens,
                    context,
                    at_least: false,
                });
            }
            // The oldest exchange: its first message, and what follows up to the next
            // user message (never the last message).
            let end = turns[1..turns.len() - 1]
                .iter()
                .position(|m| m.role == "user")
                .map_or(turns.len() - 1, |i| i + 1);
            turns.drain(..end);
            dropped += end;
        }
    }

    /// The prompt's tokens with `turns`: counted by the model's tokenizer in process;
    /// estimated from its bytes for a remote model (a token per 3 bytes, more than most
    /// tokenizers make of text), whose API has no tokenizer.
    fn count(
        &self,
        svc: &LlmService,
        messages: &[Message],
        params: &GenerateParams,
        cancel: &AtomicBool,
    ) -> Result<u32> {
        if svc.is_remote(&self.key)? {
            let bytes: usize = messages.iter().map(Message::bytes).sum();
            return Ok(u32::try_from(bytes / 3).unwrap_or(u32::MAX));
        }
        let request = TokenRequest::Count {
            prompt: Prompt::Messages(messages.to_vec()),
            raw: false,
            tools: params.tools.clone(),
        };
        match svc.tokens(&self.key, &request, cancel)? {
            TokenAnswer::Count(n) => Ok(n),
            _ => Err(OrionError::Internal(
                "a count answered with no count".into(),
            )),
        }
    }
}
