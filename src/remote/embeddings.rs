//! `/v1/embeddings` as the embedding service's engine: one request per batch (an array
//! `input`), retried on another endpoint when one fails, since embedding is idempotent.

use super::pool::{check_model, send, widen, Outcome, Pool};
use crate::embedding::{BatchFuture, RemoteEngine};
use crate::error::{OrionError, Result};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Batches in flight per endpoint: enough to keep a server busy while the next batch
/// travels, few enough that batches still form in the queue.
const IN_FLIGHT_PER_ENDPOINT: usize = 2;

pub(crate) struct RemoteEmbeddings {
    pool: Arc<Pool>,
    model: String,
    timeout: Duration,
    /// Set once a server's `/v1/models` was found to list the model (or to list none).
    checked: tokio::sync::OnceCell<()>,
}

#[derive(Deserialize)]
struct Reply {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

impl RemoteEmbeddings {
    pub(crate) fn new(pool: Arc<Pool>, model: String, timeout: Duration) -> Self {
        Self {
            pool,
            model,
            timeout,
            checked: tokio::sync::OnceCell::new(),
        }
    }

    async fn embed_batch(&self, texts: Vec<Arc<str>>) -> Result<Vec<Vec<f32>>> {
        self.checked
            .get_or_try_init(|| async {
                check_model(&self.pool, &self.model, self.timeout)
                    .await
                    .map(drop)
            })
            .await?;
        let body = serde_json::to_vec(&serde_json::json!({
            "model": self.model,
            "input": texts.iter().map(|t| &**t).collect::<Vec<&str>>(),
            "encoding_format": "float",
        }))
        .map_err(|e| OrionError::Internal(format!("request body: {e}")))?;
        // Cloned by reference count for each try.
        let body = bytes::Bytes::from(body);
        let n = texts.len();
        let (vectors, _lease) = self
            .pool
            .run(|ep| {
                let req = self
                    .pool
                    .request(reqwest::Method::POST, &ep, "/v1/embeddings")
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
                let sent = body.len() as u64;
                let timeout = self.timeout;
                async move {
                    let resp = match send(&ep, req, timeout).await {
                        Ok(r) => r,
                        Err(o) => return widen(o),
                    };
                    let raw = match tokio::time::timeout(timeout, resp.bytes()).await {
                        Err(_) => {
                            return Outcome::Failed(format!(
                                "the reply stalled for {} ms",
                                timeout.as_millis()
                            ))
                        }
                        Ok(Err(e)) => return Outcome::Failed(super::describe(&e)),
                        Ok(Ok(b)) => b,
                    };
                    ep.record(sent, raw.len() as u64);
                    match parse(&raw, n) {
                        Ok(v) => Outcome::Done(v),
                        Err(detail) => Outcome::Fatal(OrionError::RemoteProtocol {
                            endpoint: ep.shown().to_string(),
                            detail,
                        }),
                    }
                }
            })
            .await?;
        Ok(vectors)
    }
}

/// `n` vectors in input order, all of one width and finite, from a reply's body.
fn parse(raw: &[u8], n: usize) -> std::result::Result<Vec<Vec<f32>>, String> {
    let reply: Reply = serde_json::from_slice(raw).map_err(|e| {
        format!(
            "not an embeddings reply ({e}): {}",
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        )
    })?;
    if reply.data.len() != n {
        return Err(format!("{} embeddings for {n} texts", reply.data.len()));
    }
    let mut out: Vec<Option<Vec<f32>>> = vec![None; n];
    for (pos, item) in reply.data.into_iter().enumerate() {
        let i = item.index.unwrap_or(pos);
        if i >= n || out[i].is_some() {
            return Err(format!("embedding index {i} is out of place"));
        }
        out[i] = Some(item.embedding);
    }
    let out: Vec<Vec<f32>> = out.into_iter().flatten().collect();
    let dim = out.first().map_or(0, Vec::len);
    if dim == 0 || out.iter().any(|v| v.len() != dim) {
        return Err("embeddings of different (or zero) widths in one reply".into());
    }
    if out.iter().flatten().any(|x| !x.is_finite()) {
        return Err("an embedding holds a value that is not a finite number".into());
    }
    Ok(out)
}

impl RemoteEngine for RemoteEmbeddings {
    fn embed(self: Arc<Self>, texts: Vec<Arc<str>>) -> BatchFuture {
        Box::pin(async move { self.embed_batch(texts).await })
    }

    fn max_in_flight(&self) -> usize {
        IN_FLIGHT_PER_ENDPOINT * self.pool.endpoints().len().max(1)
    }

    fn endpoints(&self) -> Vec<super::pool::EndpointStats> {
        self.pool.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_put_in_input_order_and_checked() {
        let v = parse(
            br#"{"data":[{"index":1,"embedding":[3,4]},{"index":0,"embedding":[1,2]}]}"#,
            2,
        )
        .unwrap();
        assert_eq!(v, vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
        assert!(parse(br#"{"data":[{"embedding":[1]}]}"#, 2)
            .unwrap_err()
            .contains("1 embeddings for 2"));
        assert!(parse(
            br#"{"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[2]}]}"#,
            2
        )
        .is_err());
        assert!(
            parse(br#"{"data":[{"embedding":[1]},{"embedding":[2,3]}]}"#, 2)
                .unwrap_err()
                .contains("widths")
        );
        assert!(parse(b"<html>", 1)
            .unwrap_err()
            .contains("not an embeddings reply"));
    }
}
