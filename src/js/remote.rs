//! What the remote targets look like from JS: `RemoteOptions` (the `remote` option of
//! `getSharedEmbeddingClient` and of a registry descriptor) and `RemoteEndpointStats`,
//! with their conversions from and to the core types.

use crate::engine::EndpointStats;
use crate::error::OrionError;
use crate::remote::{RemoteSpec, Urls};
use napi_derive::napi;
use serde::Deserialize;

/// A remote target: OpenAI-compatible servers (llama.cpp's `llama-server`, vLLM, TEI,
/// Ollama, LM Studio) and the model they serve.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteOptions {
    /// The server's base URL (`http://host:8080` or `http://host:8080/v1`), or several:
    /// each request goes to the one with the fewest requests outstanding, and one that
    /// fails is taken out and probed back in.
    #[napi(ts_type = "string | string[]")]
    pub url: Urls,
    /// The model's name on the servers, as `/v1/models` lists it.
    pub model: String,
    /// Sent as `Authorization: Bearer <apiKey>`; never shown in errors or stats.
    pub api_key: Option<String>,
    /// Most milliseconds a call may wait: for its reply, retries and the server's
    /// `Retry-After` waits included (a longer wait fails at once), and then, streaming,
    /// for each next piece of text (keep-alives do not count); an integer from 1 to
    /// 4294967295 (default 60000).
    #[napi(ts_type = "number")]
    pub timeout_ms: Option<crate::js::options::Int<1, 4_294_967_295>>,
    /// Embedding models only: ask the servers for vectors of this many values (the
    /// request's `dimensions`: text-embedding-3 models, vLLM's Matryoshka
    /// models), so that fewer numbers travel; an integer from 1 to 65536. A server that
    /// ignores it (llama.cpp's) sends whole vectors, which are cut to it here and
    /// renormalised. Clients asking for other values are other services.
    #[napi(ts_type = "number")]
    pub dimensions: Option<crate::js::options::Int<1, 65_536>>,
}

impl RemoteOptions {
    /// The core's target for an embedding model, checked (`what` names the option in
    /// messages), and the `dimensions` to ask the servers for.
    pub(crate) fn into_embedding_spec(
        mut self,
        what: &str,
    ) -> Result<(RemoteSpec, Option<u32>), OrionError> {
        let dimensions = self
            .dimensions
            .take()
            .map(|d| u32::try_from(d.get()).unwrap_or(u32::MAX));
        Ok((self.into_spec(what)?, dimensions))
    }

    /// The core's target, checked (`what` names the option in messages).
    pub(crate) fn into_spec(self, what: &str) -> Result<RemoteSpec, OrionError> {
        if self.dimensions.is_some() {
            return Err(OrionError::InvalidOption(format!(
                "{what}: `dimensions` is for remote embedding models only"
            )));
        }
        let spec = RemoteSpec {
            url: self.url,
            model: self.model,
            api_key: self.api_key,
            timeout_ms: self.timeout_ms.map(crate::js::options::Int::get),
        };
        spec.validate(what)?;
        Ok(spec)
    }
}

/// One server of a remote target.
#[napi(object)]
pub struct RemoteEndpointStats {
    /// Its base URL (without credentials).
    pub url: String,
    /// `false` while it is taken out after a failure (it is probed in the background).
    pub healthy: bool,
    /// Requests in flight on it now, from this process.
    pub outstanding: u32,
    /// Requests sent to it, retries included.
    pub requests: i64,
    /// Requests it failed or refused.
    pub errors: i64,
    pub bytes_sent: i64,
    pub bytes_received: i64,
    /// Its last error, if any.
    pub last_error: Option<String>,
}

impl From<EndpointStats> for RemoteEndpointStats {
    fn from(s: EndpointStats) -> Self {
        Self {
            url: s.url,
            healthy: s.healthy,
            outstanding: s.outstanding as u32,
            requests: s.requests as i64,
            errors: s.errors as i64,
            bytes_sent: s.bytes_sent as i64,
            bytes_received: s.bytes_received as i64,
            last_error: s.last_error,
        }
    }
}
