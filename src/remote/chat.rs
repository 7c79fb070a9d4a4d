//! Generation on a remote server: `/v1/chat/completions` (a raw prompt goes to
//! `/v1/completions`), streamed as server-sent events, with the same parameters, result
//! and cancellation as in-process generation.
//!
//! Retries stop at the first streamed piece: a generation that already produced text
//! and then lost its server fails with `REMOTE_UNAVAILABLE` rather than starting over
//! elsewhere and repeating itself.
//!
//! A server is not trusted to keep to the request: `timeoutMs` bounds the wait for the
//! reply to start (retries included) and then for each piece of text (keep-alives and
//! empty pieces do not count as progress); `maxTokens` is enforced here, and lines,
//! events and the text are capped in size.

use super::pool::{check_model, widen, Deadline, Endpoint, Lease, Outcome, Pool};
use super::sse::{Events, SseError, MAX_LINE};
use crate::engine::llm::{FinishReason, GenerateParams, Generation, Output, Prompt, Timings};
use crate::engine::EndpointStats;
use crate::error::{OrionError, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a streaming generation looks at its cancel flag between pieces.
const CANCEL_POLL: Duration = Duration::from_millis(20);
/// Once `maxTokens` pieces have arrived, how long the server has to finish the stream
/// (its `finish_reason`, `usage` and `[DONE]` follow the last piece at once) before the
/// connection is closed and the answer finished here.
const TAIL_GRACE: Duration = Duration::from_millis(500);
/// Most bytes of text one generation gathers: `maxTokens` is at most 2^20 and a token a
/// few bytes, so only a server sending huge pieces gets near it.
const MAX_TEXT: usize = 16 << 20;
/// Most characters of a streamed piece quoted in an error.
const MAX_QUOTE: usize = 200;

pub(crate) struct RemoteChat {
    pool: Arc<Pool>,
    model: String,
    timeout: Duration,
}

impl RemoteChat {
    pub(crate) fn new(pool: Arc<Pool>, model: String, timeout: Duration) -> Self {
        Self {
            pool,
            model,
            timeout,
        }
    }

    pub(crate) fn model(&self) -> &str {
        &self.model
    }

    pub(crate) fn endpoints(&self) -> Vec<EndpointStats> {
        self.pool.stats()
    }

    /// Check that a server answers and serves the model (`/v1/models`); returns the
    /// model's training context when the server says. `progress` gets 0 to 99 as
    /// endpoints are checked (the caller reports 100 once the load is recorded).
    /// `timeoutMs` bounds the whole check.
    pub(crate) async fn check(&self, progress: &dyn Fn(u32)) -> Result<Option<u32>> {
        let deadline = Deadline::after(self.timeout);
        progress(0);
        self.health(deadline).await?;
        progress(50);
        let trained = check_model(&self.pool, &self.model, deadline).await?;
        progress(99);
        Ok(trained)
    }

    /// `GET /health` answers: any status below 500 (a server without the route, or one
    /// that wants a key for it, is up); 503 (llama-server loading its model) is waited
    /// out like any busy answer.
    async fn health(&self, deadline: Deadline) -> Result<()> {
        let pool = &*self.pool;
        pool.run(deadline, |ep| {
            let req = pool.request(reqwest::Method::GET, &ep, "/health");
            async move {
                match pool.send(&ep, req).await {
                    Ok(_) => Outcome::Done(()),
                    Err(Outcome::Fatal(OrionError::RemoteError { status, .. })) if status < 500 => {
                        Outcome::Done(())
                    }
                    Err(o) => widen(o),
                }
            }
        })
        .await
        .map(drop)
    }

    /// Stream a completion of `prompt`, handing each piece of text to `on_text`.
    pub(crate) async fn generate(
        &self,
        prompt: &Prompt,
        params: &GenerateParams,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation> {
        self.stream(prompt, params, cancel, on_text)
            .await
            .map_err(|e| self.pool.secrets().error(e))
    }

    async fn stream(
        &self,
        prompt: &Prompt,
        params: &GenerateParams,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation> {
        let started = Instant::now();
        let (path, body) = request_body(&self.model, prompt, params);
        let chat = path == CHAT;
        let body = bytes::Bytes::from(
            serde_json::to_vec(&body)
                .map_err(|e| OrionError::Internal(format!("request body: {e}")))?,
        );
        let stopped = || cancel.load(Ordering::Relaxed) || crate::lifecycle::is_shut_down();
        let pool = &*self.pool;
        let (resp, lease) = until_cancelled(self.open(path, &body), &stopped).await??;
        let ep = lease.endpoint().clone();
        let shown = ep.shown().to_string();
        // Dropped on every way out of the loop, which closes the connection.
        let mut events = Events::new(resp);
        let mut reply = Reply::default();
        // The stall timer runs from the last piece of text, not from the last byte or
        // event: keep-alives, empty pieces and a line that never ends do not hold it.
        let mut last_progress = Instant::now();
        // Set once `maxTokens` pieces have arrived: the stream's end is awaited only
        // until then, and a further piece ends it at once.
        let mut tail_until: Option<Instant> = None;
        let max_pieces = params.max_tokens.max(1);
        loop {
            let until = tail_until.unwrap_or(last_progress + self.timeout);
            let left = until.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(left, until_cancelled(events.next(&ep), &stopped));
            let data = match next.await {
                // What the server has finished (or we have capped) is the answer.
                Err(_) if tail_until.is_some() || reply.finish.is_some() => break,
                Err(_) => return Err(self.stalled(&ep, shown, reply.pieces)),
                // Asked for, once begun: the answer so far (the connection closes, which
                // stops the server's generation).
                Ok(Err(OrionError::Aborted)) if params.stop_on_abort && reply.pieces > 0 => {
                    // A finish the server already sent (or `maxTokens` reached) stands.
                    if reply.finish.is_none() && tail_until.is_none() {
                        reply.finish = Some(ABORTED.into());
                    }
                    break;
                }
                Ok(Err(stop)) => return Err(stop),
                Ok(Ok(Ok(None))) => break,
                Ok(Ok(Err(SseError::Broke(e)))) => {
                    let e = format!(
                        "the stream broke off after {} pieces ({e}); the generation was not \
                         restarted elsewhere",
                        reply.pieces
                    );
                    pool.note_failure(&ep, &e);
                    return Err(OrionError::RemoteUnavailable {
                        endpoints: vec![(shown, e)],
                    });
                }
                Ok(Ok(Err(SseError::TooLong))) => {
                    return Err(self.protocol(
                        &ep,
                        format!(
                            "a streamed line or event is longer than {}, the most read",
                            super::pool::binary_size(MAX_LINE)
                        ),
                    ));
                }
                Ok(Ok(Ok(Some(data)))) => data,
            };
            let data = data.trim();
            if data == "[DONE]" {
                break;
            }
            let absorbed = match reply.absorb(data, chat, tail_until.is_some()) {
                Ok(a) => a,
                Err(e) => {
                    let e = self.server_said(&shown, e);
                    pool.note_error(&ep, &e.to_string());
                    return Err(e);
                }
            };
            match absorbed {
                Absorbed::Nothing => {}
                Absorbed::OverLimit => break,
                Absorbed::Piece(text) => {
                    last_progress = Instant::now();
                    if let Some(t) = text {
                        on_text(&t);
                    }
                    if reply.text.len() + reply.call_bytes() > MAX_TEXT {
                        return Err(self.protocol(
                            &ep,
                            format!(
                                "more than {} of text in one reply",
                                super::pool::binary_size(MAX_TEXT)
                            ),
                        ));
                    }
                    if reply.pieces >= max_pieces && tail_until.is_none() {
                        tail_until = Some(Instant::now() + TAIL_GRACE.min(self.timeout));
                    }
                }
            }
        }
        if tail_until.is_some() && reply.finish.is_none() {
            reply.finish = Some("length".into());
        }
        reply.finish(started, &shown, params.max_tokens)
    }

    /// A stream that sent no text for `timeoutMs`, noted against its server.
    fn stalled(&self, ep: &Endpoint, shown: String, pieces: u32) -> OrionError {
        let e = format!(
            "the stream stalled: no text for {} ms after {pieces} pieces",
            self.timeout.as_millis(),
        );
        self.pool.note_error(ep, &e);
        OrionError::RemoteUnavailable {
            endpoints: vec![(shown, e)],
        }
    }

    /// Post `body` to `path` and wait for the reply to start: `timeoutMs` bounds it,
    /// tries on other servers and `Retry-After` waits included.
    async fn open(&self, path: &str, body: &bytes::Bytes) -> Result<(reqwest::Response, Lease)> {
        let pool = &*self.pool;
        pool.run(Deadline::after(self.timeout), |ep| {
            let req = pool
                .request(reqwest::Method::POST, &ep, path)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::ACCEPT, "text/event-stream")
                .body(body.clone());
            let sent = body.len() as u64;
            async move {
                match pool.send(&ep, req).await {
                    Ok(r) => {
                        ep.record(sent, 0);
                        Outcome::Done(r)
                    }
                    Err(o) => widen(o),
                }
            }
        })
        .await
    }

    /// A `REMOTE_PROTOCOL` error on `ep`, noted in its stats.
    fn protocol(&self, ep: &super::pool::Endpoint, detail: String) -> OrionError {
        let e = OrionError::RemoteProtocol {
            endpoint: ep.shown().to_string(),
            detail,
        };
        self.pool.note_error(ep, &e.to_string());
        e
    }

    /// What a streamed piece said, as an error from `endpoint`: scrubbed, then clipped.
    fn server_said(&self, endpoint: &str, said: Said) -> OrionError {
        let secrets = self.pool.secrets();
        match said {
            Said::NotJson { error, data } => OrionError::RemoteProtocol {
                endpoint: endpoint.to_string(),
                detail: format!(
                    "a streamed piece is not JSON ({error}): {}",
                    secrets.clip(&data, MAX_QUOTE)
                ),
            },
            Said::Error { status, message } => OrionError::RemoteError {
                endpoint: endpoint.to_string(),
                status,
                message: secrets.clip(&message, MAX_MESSAGE),
            },
        }
    }
}

/// Most characters of a server's error message shown.
const MAX_MESSAGE: usize = 300;

/// An event that ends the stream with an error.
enum Said {
    NotJson { error: String, data: String },
    Error { status: u16, message: String },
}

/// What one event brought.
enum Absorbed {
    /// No generated token: a keep-alive, an empty piece, `usage`, a `finish_reason`.
    Nothing,
    /// A generated piece: its text (none for a reasoning piece, which is counted but
    /// not part of the answer).
    Piece(Option<String>),
    /// A piece beyond `maxTokens`: the server ignores it; the answer is complete.
    OverLimit,
}

/// What a streamed reply has said so far.
#[derive(Default)]
struct Reply {
    text: String,
    pieces: u32,
    first_piece: Option<Instant>,
    finish: Option<String>,
    usage: Option<(u32, u32)>,
    timings: Option<serde_json::Value>,
    /// Tool calls as their pieces arrive (`delta.tool_calls`, by `index`): id, name and
    /// the arguments' JSON text.
    calls: Vec<(String, String, String)>,
}

impl Reply {
    /// Take in one event's data. Once `capped` (`maxTokens` pieces arrived), a further
    /// piece is not taken: the server ignores `max_tokens`.
    ///
    /// `maxTokens` is counted in pieces: OpenAI-compatible streams carry text, not
    /// token ids, and llama-server, vLLM and Ollama send one token per piece (a piece
    /// can hold two when a character spans tokens, so the cap is never short of the
    /// server's own). Reasoning pieces (`reasoning_content`) count too, as the
    /// server's `max_tokens` does, but are not part of the answer's text.
    fn absorb(
        &mut self,
        data: &str,
        chat: bool,
        capped: bool,
    ) -> std::result::Result<Absorbed, Said> {
        if data.is_empty() {
            return Ok(Absorbed::Nothing);
        }
        let v: serde_json::Value = serde_json::from_str(data).map_err(|e| Said::NotJson {
            error: e.to_string(),
            data: data.to_string(),
        })?;
        if let Some(err) = v.get("error") {
            let status = err
                .get("code")
                .and_then(serde_json::Value::as_u64)
                .map_or(500, |c| c.min(999) as u16);
            return Err(Said::Error {
                status,
                message: super::pool::message_of(data.as_bytes()),
            });
        }
        let text = |c: &serde_json::Value, p: &str| {
            c.pointer(p)
                .and_then(serde_json::Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        let choice = v.pointer("/choices/0");
        let (piece, reasoning) = match choice {
            Some(c) if chat => (
                text(c, "/delta/content"),
                text(c, "/delta/reasoning_content").is_some(),
            ),
            Some(c) => (text(c, "/text"), false),
            None => (None, false),
        };
        let calls = choice
            .filter(|_| chat)
            .and_then(|c| c.pointer("/delta/tool_calls"))
            .and_then(serde_json::Value::as_array)
            .filter(|a| !a.is_empty());
        if capped && (piece.is_some() || reasoning || calls.is_some()) {
            return Ok(Absorbed::OverLimit);
        }
        if let Some(calls) = calls {
            self.absorb_calls(calls);
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            let n = |k: &str| {
                u.get(k)
                    .and_then(serde_json::Value::as_u64)
                    .map_or(0, |x| x.min(u64::from(u32::MAX)) as u32)
            };
            self.usage = Some((n("prompt_tokens"), n("completion_tokens")));
        }
        if let Some(t) = v.get("timings").filter(|t| t.is_object()) {
            self.timings = Some(t.clone());
        }
        if let Some(f) = choice
            .and_then(|c| c.get("finish_reason"))
            .and_then(|f| f.as_str())
        {
            self.finish = Some(f.to_string());
        }
        if piece.is_none() && !reasoning && calls.is_none() {
            return Ok(Absorbed::Nothing);
        }
        self.first_piece.get_or_insert_with(Instant::now);
        self.pieces += 1;
        if let Some(p) = &piece {
            self.text.push_str(p);
        }
        Ok(Absorbed::Piece(piece))
    }

    /// Tool-call pieces: `OpenAI` streams a call's id and name first, then its
    /// arguments' JSON text in pieces, each under the call's `index`.
    fn absorb_calls(&mut self, calls: &[serde_json::Value]) {
        /// Most calls one answer carries here (a server cannot make us hold more).
        const MAX_CALLS: usize = 128;
        for c in calls {
            let index = c
                .get("index")
                .and_then(serde_json::Value::as_u64)
                .map_or(self.calls.len().saturating_sub(1), |i| i as usize);
            if index >= MAX_CALLS {
                continue;
            }
            while self.calls.len() <= index {
                self.calls.push(Default::default());
            }
            let call = &mut self.calls[index];
            let s = |p: &str| c.pointer(p).and_then(serde_json::Value::as_str);
            if let Some(id) = s("/id").filter(|id| !id.is_empty()) {
                call.0 = id.to_string();
            }
            // OpenAI sends a call's name once; a server repeating it is not appending.
            if let Some(name) = s("/function/name").filter(|_| call.1.is_empty()) {
                call.1.push_str(name);
            }
            if let Some(args) = s("/function/arguments") {
                call.2.push_str(args);
            }
        }
    }

    /// Bytes of the tool calls so far (held, like the text, to at most `MAX_TEXT`).
    fn call_bytes(&self) -> usize {
        self.calls
            .iter()
            .map(|(id, name, args)| id.len() + name.len() + args.len())
            .sum()
    }

    /// The calls the answer made, their arguments parsed. A call whose arguments are
    /// not a JSON object is the server's error, unless the answer was cut (`cut`: at
    /// `maxTokens` or the context's end), which leaves the last call unfinished: that
    /// one is dropped.
    fn tool_calls(&mut self, endpoint: &str, cut: bool) -> Result<Vec<crate::chat::ToolCall>> {
        let mut calls = std::mem::take(&mut self.calls);
        if cut {
            calls.retain(|(_, _, args)| {
                serde_json::from_str::<serde_json::Value>(args).is_ok_and(|v| v.is_object())
            });
        }
        calls
            .into_iter()
            .filter(|(_, name, _)| !name.is_empty())
            .map(|(id, name, args)| {
                let arguments = if args.trim().is_empty() {
                    serde_json::Value::Object(serde_json::Map::new())
                } else {
                    serde_json::from_str::<serde_json::Value>(&args)
                        .ok()
                        .filter(serde_json::Value::is_object)
                        .ok_or_else(|| OrionError::RemoteProtocol {
                            endpoint: endpoint.to_string(),
                            detail: format!(
                                "the server's call of {name} has arguments that are not a JSON object: {}",
                                crate::error::clipped(&args)
                            ),
                        })?
                };
                Ok(crate::chat::ToolCall {
                    id: if id.is_empty() {
                        crate::chat::tools::new_id()
                    } else {
                        id
                    },
                    name,
                    arguments,
                })
            })
            .collect()
    }

    /// The generation, once the stream has ended.
    fn finish(mut self, started: Instant, endpoint: &str, max_tokens: u32) -> Result<Generation> {
        let cut = matches!(self.finish.as_deref(), Some("length" | ABORTED));
        let tool_calls = self.tool_calls(endpoint, cut)?;
        let Some(finish) = self.finish else {
            return Err(OrionError::RemoteProtocol {
                endpoint: endpoint.to_string(),
                detail: "the stream ended without a finish_reason: the server may have stopped"
                    .into(),
            });
        };
        let generated = self
            .usage
            .map(|(_, c)| c)
            .filter(|&c| c > 0)
            .unwrap_or(self.pieces);
        Ok(Generation {
            tokens: generated,
            timings: timings(
                started,
                self.first_piece,
                self.pieces,
                self.usage,
                self.timings.as_ref(),
            ),
            text: self.text,
            json: None,
            dropped_messages: None,
            // The server's `length` is its `max_tokens` (which we sent) or its context.
            finish_reason: match finish.as_str() {
                ABORTED => FinishReason::Abort,
                _ if !tool_calls.is_empty() => FinishReason::ToolCalls,
                "length" if generated >= max_tokens => FinishReason::MaxTokens,
                "length" => FinishReason::ContextFull,
                _ => FinishReason::Eos,
            },
            tool_calls,
        })
    }
}

/// The finish noted when the caller aborted the stream (`stopOnAbort`): no server sends it.
const ABORTED: &str = "orion:aborted";

const CHAT: &str = "/v1/chat/completions";
const COMPLETIONS: &str = "/v1/completions";

/// The route and JSON body for `prompt`: the `OpenAI` parameters only, since strict
/// servers refuse fields they do not know.
fn request_body(
    model: &str,
    prompt: &Prompt,
    p: &GenerateParams,
) -> (&'static str, serde_json::Value) {
    let mut body = serde_json::json!({
        "model": model,
        "stream": true,
        "stream_options": { "include_usage": true },
        "max_tokens": p.max_tokens,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "seed": p.seed,
    });
    if !p.stop.is_empty() {
        body["stop"] = serde_json::json!(p.stop);
    }
    match &p.output {
        // OpenAI's structured output, which llama.cpp's server, vLLM and Ollama read.
        Some(Output::JsonSchema(schema, _)) => {
            body["response_format"] = serde_json::json!({
                "type": "json_schema",
                "json_schema": { "name": "answer", "schema": &**schema, "strict": true },
            });
        }
        // Not OpenAI's: llama.cpp's server reads it (a strict server refuses it, 400).
        Some(Output::Grammar(g)) => body["grammar"] = serde_json::json!(&**g),
        None => {}
    }
    let path = match prompt {
        Prompt::Text(t) if p.raw => {
            body["prompt"] = serde_json::json!(t);
            COMPLETIONS
        }
        Prompt::Text(t) => {
            body["messages"] = serde_json::json!([{ "role": "user", "content": t }]);
            CHAT
        }
        Prompt::Messages(m) => {
            body["messages"] = m.iter().map(message_json).collect();
            CHAT
        }
    };
    if let Some(t) = &p.tools {
        add_tools(&mut body, t);
    }
    (path, body)
}

/// A message as `OpenAI`'s chat API takes it: an assistant's calls with their
/// arguments as JSON text, a tool result with the call it answers.
fn message_json(m: &crate::chat::Message) -> serde_json::Value {
    let mut v = serde_json::json!({ "role": m.role, "content": m.content });
    if !m.tool_calls.is_empty() {
        v["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "type": "function",
                    "function": { "name": c.name, "arguments": c.arguments.to_string() },
                })
            })
            .collect();
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = serde_json::json!(id);
    }
    if let Some(name) = &m.name {
        v["name"] = serde_json::json!(name);
    }
    v
}

/// `OpenAI`'s `tools` and `tool_choice`; `'none'` sends no tools (as it is done in
/// process: the tools are not shown).
fn add_tools(body: &mut serde_json::Value, t: &crate::chat::Tools) {
    use crate::chat::ToolChoice;
    let choice = match &t.choice {
        ToolChoice::None => return,
        ToolChoice::Auto => serde_json::json!("auto"),
        ToolChoice::Required => serde_json::json!("required"),
        ToolChoice::Named(n) => {
            serde_json::json!({ "type": "function", "function": { "name": n } })
        }
    };
    body["tools"] = t
        .tools
        .iter()
        .map(|tool| {
            let mut f = serde_json::json!({ "name": tool.name, "parameters": tool.parameters });
            if let Some(d) = &tool.description {
                f["description"] = serde_json::json!(d);
            }
            serde_json::json!({ "type": "function", "function": f })
        })
        .collect();
    body["tool_choice"] = choice;
    body["parallel_tool_calls"] = serde_json::json!(t.parallel);
}

/// `fut`, unless `stopped()` turns true first (checked every [`CANCEL_POLL`]): then
/// `ABORTED` (or `SHUT_DOWN`), and dropping `fut` closes its connection, which stops
/// the server's generation.
pub(crate) async fn until_cancelled<F: std::future::Future>(
    fut: F,
    stopped: &dyn Fn() -> bool,
) -> Result<F::Output> {
    let poll = async {
        loop {
            tokio::time::sleep(CANCEL_POLL).await;
            if stopped() {
                break;
            }
        }
    };
    if stopped() {
        return Err(why_stopped());
    }
    tokio::select! {
        out = fut => Ok(out),
        () = poll => Err(why_stopped()),
    }
}

fn why_stopped() -> OrionError {
    if crate::lifecycle::is_shut_down() {
        OrionError::ShutDown
    } else {
        OrionError::Aborted
    }
}

/// The result's timings: the server's own (llama-server's `timings`, else the token
/// counts of `usage`) where given, measured here otherwise.
fn timings(
    started: Instant,
    first_piece: Option<Instant>,
    pieces: u32,
    usage: Option<(u32, u32)>,
    server: Option<&serde_json::Value>,
) -> Timings {
    let now = Instant::now();
    let first = first_piece.unwrap_or(now);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let rate = |n: u32, ms: f64| {
        if ms > 0.0 {
            f64::from(n) * 1000.0 / ms
        } else {
            0.0
        }
    };
    let (prompt_tokens, generated) = usage.unwrap_or((0, pieces));
    let mut t = Timings {
        prompt_tokens,
        prompt_ms: ms(first - started),
        prompt_tokens_per_second: rate(prompt_tokens, ms(first - started)),
        generated_tokens: generated,
        generation_ms: ms(now - first),
        tokens_per_second: rate(generated.saturating_sub(1), ms(now - first)),
        llama_prompt_tokens_per_second: 0.0,
        llama_tokens_per_second: 0.0,
        reused_prompt_tokens: 0,
        threads: None,
    };
    if let Some(s) = server {
        let f = |k: &str| s.get(k).and_then(serde_json::Value::as_f64);
        if let (Some(n), Some(ms)) = (f("prompt_n"), f("prompt_ms")) {
            t.prompt_tokens = n as u32;
            t.prompt_ms = ms;
            t.prompt_tokens_per_second = f("prompt_per_second").unwrap_or(rate(n as u32, ms));
        }
        if let (Some(n), Some(ms)) = (f("predicted_n"), f("predicted_ms")) {
            t.generated_tokens = n as u32;
            t.generation_ms = ms;
            t.tokens_per_second = f("predicted_per_second").unwrap_or(rate(n as u32, ms));
        }
    }
    t.llama_prompt_tokens_per_second = t.prompt_tokens_per_second;
    t.llama_tokens_per_second = t.tokens_per_second;
    if let Some(cached) = server
        .and_then(|s| s.get("cache_n"))
        .and_then(serde_json::Value::as_u64)
    {
        t.reused_prompt_tokens = cached.min(u64::from(u32::MAX)) as u32;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_the_openai_parameters_and_route_raw_prompts_to_completions() {
        let p = GenerateParams {
            max_tokens: 16,
            temperature: 0.0,
            stop: vec!["\n".into()],
            ..GenerateParams::default()
        };
        let (path, b) = request_body("m", &Prompt::Text("hi".into()), &p);
        assert_eq!(path, CHAT);
        assert_eq!(b["messages"][0]["content"], "hi");
        assert_eq!(b["max_tokens"], 16);
        assert_eq!(b["stop"][0], "\n");
        assert!(b.get("top_k").is_none() && b.get("repeat_penalty").is_none());
        let (path, b) = request_body(
            "m",
            &Prompt::Text("raw".into()),
            &GenerateParams { raw: true, ..p },
        );
        assert_eq!(path, COMPLETIONS);
        assert_eq!(b["prompt"], "raw");
        let msgs = Prompt::Messages(vec![
            crate::chat::Message::text("system", "s"),
            crate::chat::Message::text("user", "u"),
        ]);
        let (_, b) = request_body("m", &msgs, &GenerateParams::default());
        assert_eq!(b["messages"][1]["role"], "user");
        assert!(b.get("stop").is_none());
    }

    #[test]
    fn streamed_tool_calls_are_put_together() {
        let mut r = Reply::default();
        let chunk = |delta: serde_json::Value| {
            serde_json::json!({ "choices": [{ "index": 0, "delta": delta, "finish_reason": null }] })
                .to_string()
        };
        let args = r#"{"city":"Paris","unit":"celsius"}"#;
        let mut events = vec![chunk(
            serde_json::json!({ "tool_calls": [{ "index": 0, "id": "call_1",
            "type": "function", "function": { "name": "get_weather", "arguments": "" } }] }),
        )];
        for piece in args.as_bytes().chunks(7) {
            let piece = std::str::from_utf8(piece).unwrap();
            events.push(chunk(serde_json::json!({ "tool_calls": [{ "index": 0,
                "function": { "arguments": piece } }] })));
        }
        events.push(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#.into());
        for e in &events {
            assert!(r.absorb(e, true, false).is_ok());
        }
        let g = r.finish(Instant::now(), "http://x", 64).unwrap();
        assert_eq!(g.finish_reason, FinishReason::ToolCalls);
        assert_eq!(g.tool_calls.len(), 1);
        assert_eq!(g.tool_calls[0].id, "call_1");
        assert_eq!(g.tool_calls[0].arguments["unit"], "celsius");
        // Cut at maxTokens mid-arguments: no call, and it says why.
        let mut r = Reply::default();
        for e in &events[..3] {
            assert!(r.absorb(e, true, false).is_ok());
        }
        r.finish = Some("length".into());
        let g = r.finish(Instant::now(), "http://x", 3).unwrap();
        assert_eq!(g.finish_reason, FinishReason::MaxTokens);
        assert!(g.tool_calls.is_empty());
    }

    #[test]
    fn server_timings_win_over_measured_ones() {
        let started = Instant::now();
        let server = serde_json::json!({
            "prompt_n": 12, "prompt_ms": 30.0, "prompt_per_second": 400.0,
            "predicted_n": 5, "predicted_ms": 50.0, "predicted_per_second": 100.0
        });
        let t = timings(started, Some(started), 5, Some((12, 5)), Some(&server));
        assert_eq!((t.prompt_tokens, t.generated_tokens), (12, 5));
        assert!((t.tokens_per_second - 100.0).abs() < 1e-9);
        let t = timings(started, Some(started), 3, None, None);
        assert_eq!(t.generated_tokens, 3);
        assert_eq!(t.prompt_tokens, 0);
    }
}
