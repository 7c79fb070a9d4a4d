//! Remote inference servers that speak the OpenAI-compatible HTTP API (llama.cpp's
//! `llama-server`, vLLM, Hugging Face TEI, Ollama, LM Studio): the same embedding and
//! chat services, computed elsewhere.
//!
//! - [`pool`]: the endpoints of one target, chosen by fewest outstanding requests,
//!   taken out when they fail and probed back in with backoff; retries.
//! - [`embeddings`]: `/v1/embeddings`, as the embedding service's batch engine.
//! - [`chat`]: `/v1/chat/completions` (and `/v1/completions` for raw prompts), streamed.
//!
//! One HTTP client (one connection pool) and one small async runtime serve the whole
//! process; both live in `crate::runtime`.

pub(crate) mod chat;
pub(crate) mod embeddings;
pub(crate) mod pool;
pub(crate) mod rerank;
pub(crate) mod sse;

use crate::error::{OrionError, Result};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// How long a call may wait for its reply, retries included (or a streamed reply for
/// its next piece of text) when the target sets no `timeoutMs`.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One URL or several, as JSON and JS options give them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub(crate) struct Urls(pub(crate) Vec<String>);

impl<'de> Deserialize<'de> for Urls {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Urls;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a URL or an array of URLs")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<Urls, E> {
                Ok(Urls(vec![s.to_string()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Urls, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    v.push(s);
                }
                Ok(Urls(v))
            }
            fn visit_newtype_struct<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> std::result::Result<Urls, D::Error> {
                d.deserialize_any(self)
            }
        }
        // A newtype, so that the JS options reader (which reads no `any`) can offer a
        // string or an array; JSON forwards it to `deserialize_any`.
        d.deserialize_newtype_struct("Urls", V)
    }
}

/// A remote target: the servers, the model they serve, and how to talk to them.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RemoteSpec {
    /// Base URLs (`http://host:8080` or `http://host:8080/v1`).
    pub(crate) url: Urls,
    /// The model name the servers know (`/v1/models`).
    pub(crate) model: String,
    /// Sent as `Authorization: Bearer`; never shown, logged or serialized.
    #[serde(default, skip_serializing)]
    pub(crate) api_key: Option<String>,
    /// Most milliseconds a call waits for its reply (retries and waits included), and
    /// a stream for each next piece of text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timeout_ms: Option<u64>,
}

impl std::fmt::Debug for RemoteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSpec")
            .field("url", &self.bases())
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl RemoteSpec {
    /// Every URL parses as http(s), the model is named, the timeout is in range.
    pub(crate) fn validate(&self, what: &str) -> Result<()> {
        let bad = |m: String| Err(OrionError::InvalidOption(format!("{what}: {m}")));
        if self.url.0.is_empty() {
            return bad("`url` must name at least one server".into());
        }
        for u in &self.url.0 {
            match reqwest::Url::parse(u) {
                Ok(p) if p.fragment().is_some() => {
                    return bad(format!(
                        "`url` {:?} must not have a #fragment",
                        crate::net::shown(u)
                    ))
                }
                Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => {}
                Ok(_) => return bad(format!("`url` {u:?} is not an http:// or https:// URL")),
                Err(e) => return bad(format!("`url` {u:?} is not a URL: {e}")),
            }
        }
        if self.model.trim().is_empty() {
            return bad("`model` must name the model the server serves".into());
        }
        if let Some(t) = self.timeout_ms {
            if t == 0 || t > u64::from(u32::MAX) {
                return bad(format!(
                    "`timeoutMs` must be an integer from 1 to {}, got {t}",
                    u32::MAX
                ));
            }
        }
        if self
            .api_key
            .as_deref()
            .is_some_and(|k| k.is_empty() || k.chars().any(|c| c.is_control() || !c.is_ascii()))
        {
            return bad("`apiKey` must be printable ASCII".into());
        }
        Ok(())
    }

    /// The base URLs without a trailing `/` or `/v1`, deduplicated, in order. A query
    /// string (`?api_key=...` for servers that take the key there) is kept: requests
    /// put their path before it.
    pub(crate) fn bases(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for u in &self.url.0 {
            let (head, query) = match u.trim().split_once('?') {
                Some((h, q)) => (h, Some(q)),
                None => (u.trim(), None),
            };
            let mut b = head.trim_end_matches('/').to_string();
            if let Some(s) = b.strip_suffix("/v1") {
                b = s.to_string();
            }
            if let Some(q) = query.filter(|q| !q.is_empty()) {
                b = format!("{b}?{q}");
            }
            if !out.contains(&b) {
                out.push(b);
            }
        }
        out
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout_ms
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
    }
}

pub(crate) const URL_ENV: &str = "ORION_REMOTE_EMBEDDINGS_URL";
pub(crate) const MODEL_ENV: &str = "ORION_REMOTE_EMBEDDINGS_MODEL";
pub(crate) const API_KEY_ENV: &str = "ORION_REMOTE_EMBEDDINGS_API_KEY";

/// The remote embedding target the environment names, if any: `ORION_REMOTE_EMBEDDINGS_URL`
/// (comma-separated URLs), `ORION_REMOTE_EMBEDDINGS_MODEL` (required with it) and
/// `ORION_REMOTE_EMBEDDINGS_API_KEY`.
pub(crate) fn from_env() -> Result<Option<RemoteSpec>> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let Some(urls) = var(URL_ENV) else {
        return Ok(None);
    };
    let Some(model) = var(MODEL_ENV) else {
        return Err(OrionError::InvalidOption(format!(
            "{URL_ENV} is set but {MODEL_ENV} is not: name the model the server serves"
        )));
    };
    let spec = RemoteSpec {
        url: Urls(
            urls.split(',')
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect(),
        ),
        model,
        api_key: var(API_KEY_ENV),
        timeout_ms: None,
    };
    spec.validate(URL_ENV)?;
    Ok(Some(spec))
}

/// The remote servers' endpoints by base URL: their health and load are the same for
/// every target that uses them. A leaf lock.
static ENDPOINTS: LazyLock<Mutex<HashMap<String, Arc<pool::Endpoint>>>> =
    LazyLock::new(Default::default);

/// A pool over `spec`'s servers, sharing their endpoints with every other pool.
pub(crate) fn pool_for(spec: &RemoteSpec, client: reqwest::Client) -> pool::Pool {
    let mut all = ENDPOINTS.lock();
    let endpoints = spec
        .bases()
        .into_iter()
        .map(|b| {
            all.entry(b.clone())
                .or_insert_with(|| Arc::new(pool::Endpoint::new(&b)))
                .clone()
        })
        .collect();
    pool::Pool::new(endpoints, client, spec.api_key.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(urls: &[&str]) -> RemoteSpec {
        RemoteSpec {
            url: Urls(urls.iter().map(|s| (*s).to_string()).collect()),
            model: "m".into(),
            api_key: Some("sk-secret".into()),
            timeout_ms: None,
        }
    }

    #[test]
    fn one_url_or_several_and_v1_suffixes_are_accepted() {
        let one: RemoteSpec =
            serde_json::from_str(r#"{"url":"http://a:1/v1/","model":"m"}"#).unwrap();
        assert_eq!(one.bases(), vec!["http://a:1"]);
        let many: RemoteSpec = serde_json::from_str(
            r#"{"url":["http://a:1","http://b:2/v1","http://a:1/"],"model":"m"}"#,
        )
        .unwrap();
        assert_eq!(many.bases(), vec!["http://a:1", "http://b:2"]);
        // A query string stays after the paths requests add.
        let q: RemoteSpec =
            serde_json::from_str(r#"{"url":"http://a:1/v1/?api_key=k1","model":"m"}"#).unwrap();
        assert_eq!(q.bases(), vec!["http://a:1?api_key=k1"]);
        let ep = pool::Endpoint::new(&q.bases()[0]);
        assert_eq!(ep.url("/v1/models"), "http://a:1/v1/models?api_key=k1");
        assert_eq!(ep.shown(), "http://a:1/?api_key=[redacted]");
        assert!(serde_json::from_str::<RemoteSpec>(r#"{"url":1,"model":"m"}"#).is_err());
    }

    #[test]
    fn bad_targets_are_refused_with_the_reason() {
        let e = spec(&[]).validate("remote").unwrap_err();
        assert!(e.to_string().contains("at least one"), "{e}");
        let e = spec(&["ftp://x"]).validate("remote").unwrap_err();
        assert!(e.to_string().contains("http://"), "{e}");
        let e = spec(&["not a url"]).validate("remote").unwrap_err();
        assert_eq!(e.code(), "INVALID_OPTION");
        assert!(spec(&["https://h.example/v1"]).validate("remote").is_ok());
        let e = spec(&["http://h/v1#x"]).validate("remote").unwrap_err();
        assert!(e.to_string().contains("#fragment"), "{e}");
    }

    #[test]
    fn the_api_key_is_never_shown() {
        let s = spec(&["http://a:1"]);
        assert!(!format!("{s:?}").contains("sk-secret"));
        assert!(!serde_json::to_string(&s).unwrap().contains("sk-secret"));
        assert_eq!(crate::net::shown("http://user:pw@h:1/"), "http://h:1");
    }
}
