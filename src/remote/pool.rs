//! The servers of one remote target and the policy for using them: each request goes to
//! the endpoint with the fewest outstanding requests; an endpoint that fails (refused
//! connection, broken reply, gateway error) is taken out and probed back in, in the
//! background, with growing backoff; 429 and 503 answers are retried after the server's
//! `Retry-After` (or a jittered backoff), on another endpoint first when there is one.
//!
//! Endpoints are shared process-wide by base URL (`crate::remote::pool_for`), so
//! embeddings and chat on the same server count against the same outstanding requests
//! and see the same health.
//!
//! Every call has a [`Deadline`]: `timeoutMs` bounds it whole, tries on other endpoints
//! and `Retry-After` waits included; a wait longer than what is left fails at once.
//!
//! Also here, for embeddings and chat alike: sending a request and sorting its answer
//! ([`Pool::send`]), reading a reply's body up to a cap ([`read_capped`]), and checking
//! that a server serves a model ([`check_model`]).

use crate::engine::EndpointStats;
use crate::error::{OrionError, Result};
use crate::net::describe;
use crate::net::secrets::Secrets;
use parking_lot::Mutex;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Backoff after the first failure; doubled per further failure, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Rounds of 429/503 answers from every endpoint before the last one is reported.
const MAX_BUSY_ROUNDS: u32 = 5;
/// The longest `Retry-After` honoured; beyond it the error is reported instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// How long a background health probe waits for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most bytes of an error reply read for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Most characters of a server's error message shown (messages stay bounded).
const MAX_MESSAGE: usize = 300;
/// Most bytes of a `/v1/models` reply: a list of a few models is a few kB, the longest
/// real ones (hosted catalogues with descriptions) about 1 MB.
const MAX_MODELS_BODY: usize = 8 << 20;

/// When a call must be over: `timeoutMs` after it started.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    at: Instant,
    total: Duration,
}

impl Deadline {
    pub(crate) fn after(total: Duration) -> Self {
        Self {
            at: Instant::now() + total,
            total,
        }
    }

    /// The time left (zero once it has passed).
    pub(crate) fn left(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    pub(crate) fn total_ms(&self) -> u128 {
        self.total.as_millis()
    }
}

#[derive(Default)]
struct Health {
    /// Failures in a row; 0 while the endpoint is up.
    failures: u32,
    /// Out of use until then (probed then).
    down_until: Option<Instant>,
    last_error: Option<String>,
}

/// One server.
pub(crate) struct Endpoint {
    base: String,
    shown: String,
    outstanding: AtomicUsize,
    requests: AtomicU64,
    errors: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    health: Mutex<Health>,
    /// Whether a background probe is running for it.
    probing: AtomicBool,
}

/// Backoff after `failures` failures in a row, with ±20 % jitter so that clients that
/// failed together do not come back together.
pub(crate) fn backoff(failures: u32) -> Duration {
    let base = FIRST_BACKOFF.saturating_mul(1 << failures.saturating_sub(1).min(16));
    base.min(MAX_BACKOFF).mul_f64(0.8 + 0.4 * fastrand::f64())
}

impl Endpoint {
    pub(crate) fn new(base: &str) -> Self {
        Self {
            base: base.to_string(),
            shown: crate::net::shown(base),
            outstanding: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            health: Mutex::new(Health::default()),
            probing: AtomicBool::new(false),
        }
    }

    /// `path` (starting with `/`) on this server, before the base's query string.
    pub(crate) fn url(&self, path: &str) -> String {
        crate::net::with_path(&self.base, path)
    }

    /// The base URL without credentials, for messages and stats.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    fn is_up(&self) -> bool {
        self.health.lock().down_until.is_none()
    }

    /// Down, but its backoff has run out: worth a try when nothing is up.
    fn is_due(&self, now: Instant) -> bool {
        self.health.lock().down_until.is_some_and(|t| t <= now)
    }

    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Relaxed)
    }

    /// Take it out of use after a failure; returns how long for.
    pub(crate) fn failed(&self, error: String) -> Duration {
        let mut h = self.health.lock();
        h.failures = h.failures.saturating_add(1);
        let wait = backoff(h.failures);
        h.down_until = Some(Instant::now() + wait);
        h.last_error = Some(error);
        wait
    }

    pub(crate) fn succeeded(&self) {
        let mut h = self.health.lock();
        h.failures = 0;
        h.down_until = None;
    }

    /// Note a failed request without taking the endpoint out (the server answered).
    pub(crate) fn error(&self, error: String) {
        self.errors.fetch_add(1, Relaxed);
        self.health.lock().last_error = Some(error);
    }

    pub(crate) fn record(&self, sent: u64, received: u64) {
        self.bytes_sent.fetch_add(sent, Relaxed);
        self.bytes_received.fetch_add(received, Relaxed);
    }

    pub(crate) fn last_error(&self) -> String {
        self.health
            .lock()
            .last_error
            .clone()
            .unwrap_or_else(|| "not tried".into())
    }

    pub(crate) fn stats(&self) -> EndpointStats {
        let h = self.health.lock();
        EndpointStats {
            url: self.shown.clone(),
            healthy: h.down_until.is_none(),
            outstanding: self.outstanding(),
            requests: self.requests.load(Relaxed),
            errors: self.errors.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            last_error: h.last_error.clone(),
        }
    }
}

/// An endpoint in use by one request: counted as outstanding until dropped.
pub(crate) struct Lease {
    endpoint: Arc<Endpoint>,
}

impl Lease {
    fn new(endpoint: Arc<Endpoint>) -> Self {
        endpoint.outstanding.fetch_add(1, Relaxed);
        endpoint.requests.fetch_add(1, Relaxed);
        Self { endpoint }
    }

    pub(crate) fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.endpoint.outstanding.fetch_sub(1, Relaxed);
    }
}

/// How one attempt on one endpoint went.
pub(crate) enum Outcome<T> {
    Done(T),
    /// The endpoint failed before anything was delivered: take it out, try another.
    Failed(String),
    /// The server is busy (429, 503): try again later, after `retry_after` if it said.
    Busy {
        retry_after: Option<Duration>,
        error: OrionError,
    },
    /// An answer that another try would not change (400, 401, 404, a malformed reply).
    Fatal(OrionError),
}

/// The endpoints of one remote target, with the client and key to reach them.
pub(crate) struct Pool {
    endpoints: Vec<Arc<Endpoint>>,
    client: reqwest::Client,
    api_key: Option<String>,
    /// The key and the URLs' passwords, kept out of every message and stat.
    secrets: Secrets,
    /// Where the search for the least busy endpoint starts, so ties rotate.
    next: AtomicUsize,
}

impl Pool {
    pub(crate) fn new(
        endpoints: Vec<Arc<Endpoint>>,
        client: reqwest::Client,
        api_key: Option<String>,
    ) -> Self {
        let bases: Vec<String> = endpoints.iter().map(|e| e.base.clone()).collect();
        Self {
            secrets: Secrets::new(api_key.as_deref(), &bases),
            endpoints,
            client,
            api_key,
            next: AtomicUsize::new(0),
        }
    }

    pub(crate) fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Note a failed request on `ep` without taking it out (the server answered).
    pub(crate) fn note_error(&self, ep: &Endpoint, error: &str) {
        ep.error(self.secrets.scrub(error));
    }

    /// Take `ep` out after a failure (a stream that broke off).
    pub(crate) fn note_failure(&self, ep: &Arc<Endpoint>, error: &str) {
        self.fail(ep, error);
    }

    pub(crate) fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    pub(crate) fn stats(&self) -> Vec<EndpointStats> {
        self.endpoints.iter().map(|e| e.stats()).collect()
    }

    /// A request to `path` on `ep`, with the API key.
    pub(crate) fn request(
        &self,
        method: reqwest::Method,
        ep: &Endpoint,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let r = self.client.request(method, ep.url(path));
        match &self.api_key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    /// The endpoint for the next request: the up one with the fewest outstanding
    /// requests (ties rotate), else a down one whose backoff has run out, never one in
    /// `skip`.
    pub(crate) fn pick(&self, skip: &[usize]) -> Option<usize> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Relaxed) % n;
        let now = Instant::now();
        for up in [true, false] {
            let mut best: Option<(usize, usize)> = None;
            for k in 0..n {
                let i = (start + k) % n;
                let ep = &self.endpoints[i];
                if skip.contains(&i) || !(if up { ep.is_up() } else { ep.is_due(now) }) {
                    continue;
                }
                let o = ep.outstanding();
                if best.is_none_or(|(_, b)| o < b) {
                    best = Some((i, o));
                }
            }
            if let Some((i, _)) = best {
                return Some(i);
            }
        }
        None
    }

    /// `REMOTE_UNAVAILABLE` with each endpoint's last error.
    pub(crate) fn unavailable(&self) -> OrionError {
        OrionError::RemoteUnavailable {
            endpoints: self
                .endpoints
                .iter()
                .map(|e| (e.shown().to_string(), e.last_error()))
                .collect(),
        }
    }

    /// Take `ep` out after a failure and probe it back in, in the background.
    fn fail(&self, ep: &Arc<Endpoint>, error: &str) {
        ep.errors.fetch_add(1, Relaxed);
        ep.failed(self.secrets.scrub(error));
        self.probe(ep);
    }

    /// Probe a down endpoint until it answers: `GET /health` once its backoff has run
    /// out, any answer below 500 (404 included: a server without that route is up)
    /// brings it back. One probe per endpoint at a time; it ends when the endpoint is
    /// up, or with the async runtime at exit.
    fn probe(&self, ep: &Arc<Endpoint>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if ep.probing.swap(true, Relaxed) {
            return;
        }
        let (ep, client) = (ep.clone(), self.client.clone());
        rt.spawn(async move {
            loop {
                let due = ep.health.lock().down_until;
                let Some(due) = due else { break };
                tokio::time::sleep_until(due.into()).await;
                if crate::lifecycle::is_shut_down() {
                    break;
                }
                let answer = client
                    .get(ep.url("/health"))
                    .timeout(PROBE_TIMEOUT)
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status().as_u16() < 500 => {
                        ep.succeeded();
                        break;
                    }
                    Ok(r) => {
                        ep.failed(format!("health check answered {}", r.status().as_u16()));
                    }
                    Err(e) => {
                        ep.failed(describe(&e));
                    }
                }
            }
            ep.probing.store(false, Relaxed);
        });
    }

    /// Run `attempt` on the best endpoint, and again on others (or later) as its
    /// outcomes call for, until one is done, nothing is left to try, or `deadline`
    /// passes: each try gets only the time left, and a busy server's wait that would
    /// outlast it fails at once. The lease keeps the endpoint counted as busy for as
    /// long as the caller uses the result (a stream). Errors come back scrubbed of
    /// secrets.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        deadline: Deadline,
        mut attempt: F,
    ) -> Result<(T, Lease)>
    where
        F: FnMut(Arc<Endpoint>) -> Fut,
        Fut: Future<Output = Outcome<T>>,
    {
        let mut failed: Vec<usize> = Vec::new();
        let mut busy: Vec<usize> = Vec::new();
        let mut busy_rounds = 0u32;
        let mut last_busy: Option<(Option<Duration>, OrionError)> = None;
        loop {
            let left = deadline.left();
            if left.is_zero() {
                return Err(self.secrets.error(match last_busy {
                    Some((_, error)) => out_of_time(error, &deadline),
                    None => self.unavailable(),
                }));
            }
            let skip: Vec<usize> = failed.iter().chain(&busy).copied().collect();
            let Some(i) = self.pick(&skip) else {
                let Some((retry_after, error)) = last_busy.take() else {
                    return Err(self.secrets.error(self.unavailable()));
                };
                busy_rounds += 1;
                if busy_rounds > MAX_BUSY_ROUNDS {
                    return Err(self.secrets.error(error));
                }
                let wait = retry_after.unwrap_or_else(|| backoff(busy_rounds));
                if wait > MAX_RETRY_AFTER || wait >= left {
                    return Err(self.secrets.error(too_long_to_wait(
                        error,
                        retry_after,
                        left,
                        &deadline,
                    )));
                }
                tokio::time::sleep(wait).await;
                busy.clear();
                continue;
            };
            let ep = self.endpoints[i].clone();
            let lease = Lease::new(ep.clone());
            let outcome = match tokio::time::timeout(left, attempt(ep.clone())).await {
                Ok(o) => o,
                Err(_) => Outcome::Failed(format!("no reply within {} ms", deadline.total_ms())),
            };
            match outcome {
                Outcome::Done(t) => {
                    ep.succeeded();
                    return Ok((t, lease));
                }
                Outcome::Failed(e) => {
                    self.fail(&ep, &e);
                    failed.push(i);
                }
                Outcome::Busy { retry_after, error } => {
                    let error = self.secrets.error(error);
                    ep.error(error.to_string());
                    busy.push(i);
                    last_busy = Some((retry_after, error));
                }
                Outcome::Fatal(e) => {
                    let e = self.secrets.error(e);
                    ep.error(e.to_string());
                    return Err(e);
                }
            }
        }
    }

    /// Send `req` to `ep` and sort the answer: a success is handed back; busy, gateway
    /// and other errors become the matching outcome, the server's message scrubbed of
    /// secrets and clipped. The caller's [`Pool::run`] bounds the time.
    pub(crate) async fn send(
        &self,
        ep: &Endpoint,
        req: reqwest::RequestBuilder,
    ) -> std::result::Result<reqwest::Response, Outcome<std::convert::Infallible>> {
        let resp = match req.send().await {
            Err(e) => return Err(Outcome::Failed(describe(&e))),
            Ok(r) => r,
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let code = status.as_u16();
        if matches!(code, 502 | 504) {
            return Err(Outcome::Failed(format!("answered {code} (gateway error)")));
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let message = self
            .secrets
            .clip(&error_message(ep, resp).await, MAX_MESSAGE);
        let error = OrionError::RemoteError {
            endpoint: ep.shown().to_string(),
            status: code,
            message,
        };
        Err(if matches!(code, 429 | 503) {
            Outcome::Busy { retry_after, error }
        } else {
            Outcome::Fatal(error)
        })
    }
}

/// A busy server's error once the deadline has passed.
fn out_of_time(error: OrionError, deadline: &Deadline) -> OrionError {
    annotate(
        error,
        &format!(
            "still busy when timeoutMs ({} ms) ran out",
            deadline.total_ms()
        ),
    )
}

/// A busy server's error when its wait (its `Retry-After`, or our backoff) is longer
/// than what is left of the deadline, or than this client ever waits.
fn too_long_to_wait(
    error: OrionError,
    retry_after: Option<Duration>,
    left: Duration,
    deadline: &Deadline,
) -> OrionError {
    let note = match retry_after {
        Some(w) if w > MAX_RETRY_AFTER => format!(
            "it asked to be retried after {} s, longer than the {} s this client waits",
            w.as_secs(),
            MAX_RETRY_AFTER.as_secs()
        ),
        Some(w) => format!(
            "it asked to be retried after {} s, more than the {} ms left of timeoutMs ({} ms)",
            w.as_secs(),
            left.as_millis(),
            deadline.total_ms()
        ),
        None => format!(
            "still busy, and timeoutMs ({} ms) leaves no time to try again",
            deadline.total_ms()
        ),
    };
    annotate(error, &note)
}

fn annotate(error: OrionError, note: &str) -> OrionError {
    match error {
        OrionError::RemoteError {
            endpoint,
            status,
            message,
        } => OrionError::RemoteError {
            endpoint,
            status,
            message: format!("{message}; {note}"),
        },
        other => other,
    }
}

/// Why a body could not be read whole.
pub(crate) enum ReadError {
    /// It is larger than the cap (said by `Content-Length`, or found while reading).
    TooLarge,
    /// The connection broke off.
    Broke(String),
}

/// The body of `resp`, read chunk by chunk and given up as soon as it passes `cap`
/// bytes (which closes the connection), so a huge reply never sits in memory whole.
/// The bytes read are counted on `ep`.
pub(crate) async fn read_capped(
    ep: &Endpoint,
    mut resp: reqwest::Response,
    cap: usize,
) -> std::result::Result<Vec<u8>, ReadError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                ep.record(0, c.len() as u64);
                if body.len() + c.len() > cap {
                    return Err(ReadError::TooLarge);
                }
                body.extend_from_slice(&c);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(ReadError::Broke(describe(&e))),
        }
    }
}

/// `n` bytes as people read them: `1 MiB`, `576 KiB`.
pub(crate) fn binary_size(n: usize) -> String {
    if n >= 1 << 20 && (n >> 20) << 20 == n {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else if n >= 1 << 10 {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

/// The message of an error reply (its first [`MAX_ERROR_BODY`] bytes): see
/// [`message_of`].
async fn error_message(ep: &Endpoint, resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    let mut resp = resp;
    while let Ok(Some(chunk)) = resp.chunk().await {
        ep.record(0, chunk.len() as u64);
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    message_of(&body)
}

/// `error.message`, `error`, `message` or `detail` of a JSON body (the servers
/// differ), else the text. Whole: the caller scrubs it of secrets, then clips it.
pub(crate) fn message_of(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let found = [
            v.pointer("/error/message"),
            v.get("error"),
            v.get("message"),
            v.get("detail"),
        ]
        .into_iter()
        .flatten()
        .find_map(|m| match m {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null | serde_json::Value::Object(_) => None,
            other => Some(other.to_string()),
        });
        if let Some(m) = found {
            return m;
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(no message)".into();
    }
    text.to_string()
}

/// Whether a `/v1/models` listing names `model`: exactly, as Ollama's `name:latest`,
/// or as a file name (llama-server lists the GGUF's path unless given an alias).
pub(crate) fn serves(ids: &[String], model: &str) -> bool {
    ids.iter().any(|id| {
        let file = id.rsplit(['/', '\\']).next().unwrap_or(id);
        id == model
            || id.strip_suffix(":latest") == Some(model)
            || file == model
            || file.strip_suffix(".gguf") == Some(model)
    })
}

/// The outcome of a failed `send`, for an attempt of any result type.
pub(crate) fn widen<T>(o: Outcome<std::convert::Infallible>) -> Outcome<T> {
    match o {
        Outcome::Done(never) => match never {},
        Outcome::Failed(e) => Outcome::Failed(e),
        Outcome::Busy { retry_after, error } => Outcome::Busy { retry_after, error },
        Outcome::Fatal(e) => Outcome::Fatal(e),
    }
}

/// The model the servers list (`/v1/models`), as ids; `None` for a server without
/// that route.
async fn list_models(
    pool: &Pool,
    deadline: Deadline,
) -> Result<(Option<(Vec<String>, Option<u32>)>, Lease)> {
    pool.run(deadline, |ep| {
        let req = pool.request(reqwest::Method::GET, &ep, "/v1/models");
        async move {
            let resp = match pool.send(&ep, req).await {
                Ok(r) => r,
                Err(Outcome::Fatal(OrionError::RemoteError {
                    status: 404 | 405, ..
                })) => return Outcome::Done(None),
                Err(o) => return widen(o),
            };
            let raw = match read_capped(&ep, resp, MAX_MODELS_BODY).await {
                Ok(b) => b,
                Err(ReadError::Broke(e)) => return Outcome::Failed(e),
                Err(ReadError::TooLarge) => {
                    return Outcome::Fatal(OrionError::RemoteProtocol {
                        endpoint: ep.shown().to_string(),
                        detail: format!(
                            "its /v1/models reply is larger than {}, the most read",
                            binary_size(MAX_MODELS_BODY)
                        ),
                    })
                }
            };
            let v: serde_json::Value = match serde_json::from_slice(&raw) {
                Ok(v) => v,
                Err(e) => {
                    return Outcome::Fatal(OrionError::RemoteProtocol {
                        endpoint: ep.shown().to_string(),
                        detail: format!("/v1/models is not JSON: {e}"),
                    })
                }
            };
            let Some(data) = v.get("data").and_then(|d| d.as_array()) else {
                return Outcome::Fatal(OrionError::RemoteProtocol {
                    endpoint: ep.shown().to_string(),
                    detail: "/v1/models has no `data` list".into(),
                });
            };
            let ids = data
                .iter()
                .filter_map(|m| m.get("id").and_then(|i| i.as_str()).map(String::from))
                .collect();
            // llama-server says what context it was started with, and the model's own.
            let ctx = data
                .first()
                .and_then(|m| m.pointer("/meta/n_ctx_train"))
                .and_then(serde_json::Value::as_u64)
                .map(|c| c.min(u64::from(u32::MAX)) as u32);
            Outcome::Done(Some((ids, ctx)))
        }
    })
    .await
}

/// Whether a server serves `model`: `REMOTE_ERROR` (404) naming what it serves when it
/// does not. A server without a model list is taken at its word. Returns the model's
/// training context when the server says (llama-server does).
pub(crate) async fn check_model(
    pool: &Pool,
    model: &str,
    deadline: Deadline,
) -> Result<Option<u32>> {
    let (listing, lease) = list_models(pool, deadline).await?;
    match listing {
        Some((ids, _)) if !serves(&ids, model) => Err(OrionError::RemoteError {
            endpoint: lease.endpoint().shown().to_string(),
            status: 404,
            message: format!(
                "it does not serve a model {model:?} (it serves: {})",
                if ids.is_empty() {
                    "none".to_string()
                } else {
                    pool.secrets().clip(&ids.join(", "), MAX_MESSAGE)
                }
            ),
        }),
        Some((_, trained)) => Ok(trained),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Pool {
        let eps = (0..n)
            .map(|i| Arc::new(Endpoint::new(&format!("http://127.0.0.1:{}", 1000 + i))))
            .collect();
        Pool::new(eps, reqwest::Client::new(), None)
    }

    #[test]
    fn the_least_busy_endpoint_is_picked_and_ties_rotate() {
        let p = pool(3);
        let first = [
            Lease::new(p.endpoints[0].clone()),
            Lease::new(p.endpoints[0].clone()),
        ];
        let second = Lease::new(p.endpoints[1].clone());
        assert_eq!(p.pick(&[]), Some(2));
        let third = Lease::new(p.endpoints[2].clone());
        // 1 and 2 have one each: both get turns.
        let picks: std::collections::HashSet<_> = (0..6).map(|_| p.pick(&[]).unwrap()).collect();
        assert_eq!(picks, [1, 2].into_iter().collect());
        drop(second);
        assert_eq!(p.pick(&[]), Some(1));
        drop((first, third));
    }

    #[test]
    fn a_failed_endpoint_is_out_until_its_backoff_runs_out() {
        let p = pool(2);
        p.endpoints[0].failed("refused".into());
        for _ in 0..4 {
            assert_eq!(p.pick(&[]), Some(1));
        }
        // Nothing else left: none until the backoff is over, then the down one is tried.
        assert_eq!(p.pick(&[1]), None);
        p.endpoints[0].health.lock().down_until = Some(Instant::now());
        assert_eq!(p.pick(&[1]), Some(0));
        p.endpoints[0].succeeded();
        assert!(p.endpoints[0].stats().healthy);
        let e = p.unavailable().to_string();
        assert!(e.contains("http://127.0.0.1:1000: refused"), "{e}");
        assert!(e.contains("http://127.0.0.1:1001: not tried"), "{e}");
    }

    #[test]
    fn backoff_grows_to_a_cap_with_jitter() {
        for _ in 0..50 {
            let b1 = backoff(1);
            assert!(b1 >= Duration::from_millis(160) && b1 <= Duration::from_millis(240));
            let b3 = backoff(3);
            assert!(b3 >= Duration::from_millis(640) && b3 <= Duration::from_millis(960));
            assert!(backoff(40) <= MAX_BACKOFF.mul_f64(1.2));
        }
    }

    fn long() -> Deadline {
        Deadline::after(Duration::from_secs(60))
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn failures_move_on_to_the_next_endpoint_and_all_failing_is_unavailable() {
        let p = pool(3);
        let tried = Mutex::new(Vec::new());
        let r: Result<(u32, Lease)> = block_on(p.run(long(), |ep| {
            tried.lock().push(ep.shown().to_string());
            let ok = ep.shown().ends_with("1002");
            async move {
                if ok {
                    Outcome::Done(7)
                } else {
                    Outcome::Failed("refused".into())
                }
            }
        }));
        assert_eq!(r.unwrap().0, 7);
        assert_eq!(tried.lock().len(), 3);
        assert!(!p.endpoints[0].stats().healthy && !p.endpoints[1].stats().healthy);
        let r: Result<(u32, Lease)> =
            block_on(p.run(long(), |_| async { Outcome::Failed("refused".into()) }));
        assert_eq!(r.err().unwrap().code(), "REMOTE_UNAVAILABLE");
        assert!(p.endpoints.iter().all(|e| e.outstanding() == 0));
    }

    #[test]
    fn busy_answers_are_retried_after_retry_after_then_reported() {
        let p = pool(1);
        let calls = AtomicUsize::new(0);
        let started = Instant::now();
        let r: Result<(u32, Lease)> = block_on(p.run(long(), |ep| {
            let n = calls.fetch_add(1, Relaxed);
            let shown = ep.shown().to_string();
            async move {
                if n < 2 {
                    Outcome::Busy {
                        retry_after: Some(Duration::from_millis(100)),
                        error: OrionError::RemoteError {
                            endpoint: shown,
                            status: 429,
                            message: "slow down".into(),
                        },
                    }
                } else {
                    Outcome::Done(1)
                }
            }
        }));
        assert_eq!(r.unwrap().0, 1);
        assert!(started.elapsed() >= Duration::from_millis(200));
        // Busy for ever: the server's own error after the last round.
        let r: Result<(u32, Lease)> = block_on(p.run(long(), |ep| {
            let shown = ep.shown().to_string();
            async move {
                Outcome::Busy {
                    retry_after: Some(Duration::from_millis(1)),
                    error: OrionError::RemoteError {
                        endpoint: shown,
                        status: 503,
                        message: "loading model".into(),
                    },
                }
            }
        }));
        let e = r.err().unwrap();
        assert_eq!(e.code(), "REMOTE_ERROR");
        assert!(e.to_string().contains("loading model"));
        // A busy server is not taken out.
        assert!(p.endpoints[0].stats().healthy);
    }

    fn busy(shown: String, retry_after: Duration, message: &str) -> Outcome<u32> {
        Outcome::Busy {
            retry_after: Some(retry_after),
            error: OrionError::RemoteError {
                endpoint: shown,
                status: 503,
                message: message.into(),
            },
        }
    }

    #[test]
    fn the_deadline_bounds_retries_and_waits() {
        let p = pool(1);
        // A wait longer than what is left fails at once, naming the server's wait.
        let started = Instant::now();
        let r: Result<(u32, Lease)> =
            block_on(p.run(Deadline::after(Duration::from_millis(300)), |ep| {
                let shown = ep.shown().to_string();
                async move { busy(shown, Duration::from_secs(29), "loading") }
            }));
        let e = r.err().unwrap();
        assert_eq!(e.code(), "REMOTE_ERROR");
        assert!(e.to_string().contains("retried after 29 s"), "{e}");
        assert!(started.elapsed() < Duration::from_millis(250));
        // Short waits are honoured while they fit, then the call ends near its deadline.
        let started = Instant::now();
        let tries = AtomicUsize::new(0);
        let r: Result<(u32, Lease)> =
            block_on(p.run(Deadline::after(Duration::from_millis(350)), |ep| {
                tries.fetch_add(1, Relaxed);
                let shown = ep.shown().to_string();
                async move { busy(shown, Duration::from_millis(100), "loading") }
            }));
        assert_eq!(r.err().unwrap().code(), "REMOTE_ERROR");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_millis(450),
            "{took:?}"
        );
        assert_eq!(tries.load(Relaxed), 4);
        // A try that never answers is cut at the deadline.
        let started = Instant::now();
        let r: Result<(u32, Lease)> =
            block_on(p.run(Deadline::after(Duration::from_millis(200)), |_| {
                std::future::pending::<Outcome<u32>>()
            }));
        let e = r.err().unwrap();
        assert_eq!(e.code(), "REMOTE_UNAVAILABLE");
        assert!(e.to_string().contains("no reply within 200 ms"), "{e}");
        assert!(started.elapsed() < Duration::from_millis(400));
    }

    #[test]
    fn errors_and_stats_are_scrubbed_of_the_key_and_url_passwords() {
        let p = Pool::new(
            vec![Arc::new(Endpoint::new("http://bob:hunter22@127.0.0.1:1"))],
            reqwest::Client::new(),
            Some("sk-key-0001".into()),
        );
        let r: Result<(u32, Lease)> = block_on(p.run(long(), |ep| {
            let shown = ep.shown().to_string();
            async move {
                Outcome::Fatal(OrionError::RemoteError {
                    endpoint: shown,
                    status: 401,
                    message: "bad Authorization: Bearer sk-key-0001 (password hunter22)".into(),
                })
            }
        }));
        let e = r.err().unwrap().to_string();
        let stats = format!("{:?}", p.stats());
        for text in [&e, &stats] {
            assert!(
                !text.contains("sk-key") && !text.contains("hunter22"),
                "{text}"
            );
        }
        assert!(e.contains("[redacted]"), "{e}");
    }

    #[test]
    fn error_messages_are_found_in_each_servers_format() {
        assert_eq!(
            message_of(br#"{"error":{"code":401,"message":"Invalid API Key"}}"#),
            "Invalid API Key"
        );
        assert_eq!(
            message_of(br#"{"error":"bad input","error_type":"Validation"}"#),
            "bad input"
        );
        assert_eq!(
            message_of(br#"{"object":"error","message":"no model"}"#),
            "no model"
        );
        assert_eq!(message_of(b"Not Found"), "Not Found");
        assert_eq!(message_of(b""), "(no message)");
    }

    #[test]
    fn model_names_match_ids_paths_and_tags() {
        let ids = vec![
            "/models/SmolLM2-135M-Instruct.Q4_1.gguf".to_string(),
            "llama3:latest".to_string(),
            "bge-small".to_string(),
        ];
        assert!(serves(&ids, "SmolLM2-135M-Instruct.Q4_1"));
        assert!(serves(&ids, "SmolLM2-135M-Instruct.Q4_1.gguf"));
        assert!(serves(&ids, "llama3"));
        assert!(serves(&ids, "bge-small"));
        assert!(!serves(&ids, "bge"));
    }
}
