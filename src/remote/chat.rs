//! Generation on a remote server: `/v1/chat/completions` (a raw prompt goes to
//! `/v1/completions`), streamed as server-sent events, with the same parameters, result
//! and cancellation as in-process generation.
//!
//! Retries stop at the first streamed piece: a generation that already produced text
//! and then lost its server fails with `REMOTE_UNAVAILABLE` rather than starting over
//! elsewhere and repeating itself.

use super::pool::{check_model, send, widen, EndpointStats, Outcome, Pool};
use crate::error::{OrionError, Result};
use crate::llm::generate::{GenerateParams, Generation, Prompt, Timings};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a streaming generation looks at its cancel flag between pieces.
const CANCEL_POLL: Duration = Duration::from_millis(20);

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
    pub(crate) async fn check(&self, progress: &dyn Fn(u32)) -> Result<Option<u32>> {
        progress(0);
        self.health().await?;
        progress(50);
        let trained = check_model(&self.pool, &self.model, self.timeout).await?;
        progress(99);
        Ok(trained)
    }

    /// `GET /health` answers: any status below 500 (a server without the route, or one
    /// that wants a key for it, is up); 503 (llama-server loading its model) is waited
    /// out like any busy answer.
    async fn health(&self) -> Result<()> {
        self.pool
            .run(|ep| {
                let req = self.pool.request(reqwest::Method::GET, &ep, "/health");
                let timeout = self.timeout;
                async move {
                    match send(&ep, req, timeout).await {
                        Ok(_) => Outcome::Done(()),
                        Err(Outcome::Fatal(OrionError::RemoteError { status, .. }))
                            if status < 500 =>
                        {
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
        let started = Instant::now();
        let (path, body) = request_body(&self.model, prompt, params);
        let chat = path == CHAT;
        let body = bytes::Bytes::from(
            serde_json::to_vec(&body)
                .map_err(|e| OrionError::Internal(format!("request body: {e}")))?,
        );
        let stopped = || cancel.load(Ordering::Relaxed) || crate::runtime::is_shut_down();
        let attempt = self.pool.run(|ep| {
            let req = self
                .pool
                .request(reqwest::Method::POST, &ep, path)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::ACCEPT, "text/event-stream")
                .body(body.clone());
            let (sent, timeout) = (body.len() as u64, self.timeout);
            async move {
                match send(&ep, req, timeout).await {
                    Ok(r) => {
                        ep.record(sent, 0);
                        Outcome::Done(r)
                    }
                    Err(o) => widen(o),
                }
            }
        });
        let (resp, lease) = until_cancelled(attempt, &stopped).await??;
        let ep = lease.endpoint().clone();
        let mut events = resp.bytes_stream().eventsource();
        let mut reply = Reply::default();
        loop {
            let next = tokio::time::timeout(self.timeout, until_cancelled(events.next(), &stopped));
            let event = match next.await {
                Err(_) => {
                    let e = format!(
                        "the stream stalled for {} ms after {} pieces",
                        self.timeout.as_millis(),
                        reply.pieces
                    );
                    ep.error(e.clone());
                    return Err(OrionError::RemoteUnavailable {
                        endpoints: vec![(ep.shown().to_string(), e)],
                    });
                }
                Ok(Err(stop)) => return Err(stop),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(Err(e)))) => {
                    let e = format!(
                        "the stream broke off after {} pieces ({e}); the generation was not \
                         restarted elsewhere",
                        reply.pieces
                    );
                    ep.failed(e.clone());
                    return Err(OrionError::RemoteUnavailable {
                        endpoints: vec![(ep.shown().to_string(), e)],
                    });
                }
                Ok(Ok(Some(Ok(ev)))) => ev,
            };
            ep.record(0, event.data.len() as u64);
            let data = event.data.trim();
            if data == "[DONE]" {
                break;
            }
            if let Some(piece) = reply.absorb(data, chat, ep.shown())? {
                on_text(&piece);
            }
        }
        reply.finish(started, ep.shown())
    }
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
}

impl Reply {
    /// Take in one event's data; returns its piece of text, if it has one.
    fn absorb(&mut self, data: &str, chat: bool, endpoint: &str) -> Result<Option<String>> {
        if data.is_empty() {
            return Ok(None);
        }
        let v: serde_json::Value =
            serde_json::from_str(data).map_err(|e| OrionError::RemoteProtocol {
                endpoint: endpoint.to_string(),
                detail: format!("a streamed piece is not JSON ({e}): {data:.200}"),
            })?;
        if let Some(err) = v.get("error") {
            let status = err
                .get("code")
                .and_then(serde_json::Value::as_u64)
                .map_or(500, |c| c.min(999) as u16);
            return Err(OrionError::RemoteError {
                endpoint: endpoint.to_string(),
                status,
                message: super::pool::message_of(data.as_bytes()),
            });
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
        let Some(choice) = v.pointer("/choices/0") else {
            return Ok(None);
        };
        if let Some(f) = choice.get("finish_reason").and_then(|f| f.as_str()) {
            self.finish = Some(f.to_string());
        }
        let piece = if chat {
            choice.pointer("/delta/content")
        } else {
            choice.get("text")
        }
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
        if piece.is_empty() {
            return Ok(None);
        }
        self.first_piece.get_or_insert_with(Instant::now);
        self.pieces += 1;
        self.text.push_str(piece);
        Ok(Some(piece.to_string()))
    }

    /// The generation, once the stream has ended.
    fn finish(self, started: Instant, endpoint: &str) -> Result<Generation> {
        let Some(finish) = self.finish else {
            return Err(OrionError::RemoteProtocol {
                endpoint: endpoint.to_string(),
                detail: "the stream ended without a finish_reason: the server may have stopped"
                    .into(),
            });
        };
        Ok(Generation {
            tokens: self
                .usage
                .map(|(_, c)| c)
                .filter(|&c| c > 0)
                .unwrap_or(self.pieces),
            timings: timings(
                started,
                self.first_piece,
                self.pieces,
                self.usage,
                self.timings.as_ref(),
            ),
            text: self.text,
            finish_reason: if finish == "length" { "length" } else { "stop" },
        })
    }
}

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
            body["messages"] = m
                .iter()
                .map(|(role, content)| serde_json::json!({ "role": role, "content": content }))
                .collect();
            CHAT
        }
    };
    (path, body)
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
    if crate::runtime::is_shut_down() {
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
            ("system".into(), "s".into()),
            ("user".into(), "u".into()),
        ]);
        let (_, b) = request_body("m", &msgs, &GenerateParams::default());
        assert_eq!(b["messages"][1]["role"], "user");
        assert!(b.get("stop").is_none());
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
