//! The one HTTP stack of the process (reqwest on its own tokio runtime), for remote
//! servers and model downloads alike, and how a URL or a transport error may be shown.
//! Ground: the model store and the remote engine both use it.
//!
//! Locks: `HTTP` is a leaf, held to build or take the runtime.

pub(crate) mod secrets;

use crate::error::{OrionError, Result};
use parking_lot::Mutex;

struct Http {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

/// A leaf lock, held to build or take the runtime.
static HTTP: Mutex<Option<Http>> = Mutex::new(None);

/// The HTTP runtime's handle and the client, built on first use.
pub(crate) fn http() -> Result<(tokio::runtime::Handle, reqwest::Client)> {
    let mut h = HTTP.lock();
    if crate::lifecycle::is_shut_down() {
        return Err(OrionError::ShutDown);
    }
    if let Some(h) = &*h {
        return Ok((h.runtime.handle().clone(), h.client.clone()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("orion-http")
        .enable_all()
        .build()
        .map_err(|e| OrionError::Internal(format!("could not start the HTTP runtime: {e}")))?;
    let client = reqwest::Client::builder()
        .user_agent(concat!("orion-native/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(10))
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .tcp_nodelay(true)
        .build()
        .map_err(|e| OrionError::Internal(format!("could not build the HTTP client: {e}")))?;
    let out = (runtime.handle().clone(), client.clone());
    *h = Some(Http { runtime, client });
    Ok(out)
}

/// Stop the HTTP runtime: its tasks (batches whose callers were answered `SHUT_DOWN`,
/// health probes) are dropped, closing their connections, and its threads joined.
pub(crate) fn stop_http(deadline: std::time::Instant) {
    let taken = HTTP.lock().take();
    if let Some(h) = taken {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        h.runtime
            .shutdown_timeout(left.max(std::time::Duration::from_millis(100)));
    }
}

/// `base` (a URL, perhaps with a query string that carries a key) with `path` (starting
/// with `/`) appended to its path: before the query, which stays last.
pub(crate) fn with_path(base: &str, path: &str) -> String {
    match base.split_once('?') {
        Some((head, query)) => format!("{}{path}?{query}", head.trim_end_matches('/')),
        None => format!("{}{path}", base.trim_end_matches('/')),
    }
}

/// `url` as it may be shown: without a user name or password, and with the values of
/// credential query parameters (`?api_key=`, `&sig=`) replaced.
pub(crate) fn shown(url: &str) -> String {
    let Ok(mut u) = reqwest::Url::parse(url) else {
        return url.to_string();
    };
    let secret_query = u.query_pairs().any(|(k, _)| secrets::is_secret_param(&k));
    if u.username().is_empty() && u.password().is_none() && !secret_query {
        return url.to_string();
    }
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if secret_query {
        let query: Vec<String> = u
            .query()
            .unwrap_or_default()
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if secrets::is_secret_param(&secrets::percent_decode(k)) => {
                    format!("{k}={}", secrets::MARKER)
                }
                _ => pair.to_string(),
            })
            .collect();
        u.set_query(Some(&query.join("&")));
    }
    u.as_str().trim_end_matches('/').to_string()
}

/// A transport error with its causes ("connection refused"), without its URL (the
/// caller names the endpoint).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else if e.is_body() || e.is_decode() {
        "the connection broke off during the reply".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    let mut last = String::new();
    while let Some(s) = source {
        let m = s.to_string();
        if m != last && !m.contains("://") {
            out.push_str(": ");
            out.push_str(&m);
            last = m;
        }
        source = s.source();
    }
    out
}
