//! `/v1/embeddings` as the embedding service's engine: one request per batch (an array
//! `input`), retried on another endpoint when one fails, since embedding is idempotent.
//! A reply is read up to a cap that grows with the batch, and every vector of a client
//! has the width of the first one it got.

use super::pool::{
    binary_size, check_model, read_capped, widen, Deadline, Outcome, Pool, ReadError,
};
use crate::engine::embedding::{BatchFuture, RemoteEngine};
use crate::error::{OrionError, Result};
use serde::Deserialize;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Batches in flight per endpoint: enough to keep a server busy while the next batch
/// travels, few enough that batches still form in the queue.
const IN_FLIGHT_PER_ENDPOINT: usize = 2;
/// Most bytes of a reply, per text of the batch: a vector as JSON takes up to about
/// 25 bytes a number, so 512 KiB holds one of 20 000 dimensions (the widest models
/// have 4096 to 8192).
const MAX_BYTES_PER_TEXT: usize = 512 << 10;
/// Plus this much for the rest of the reply (`usage`, `model`, the brackets).
const MAX_BYTES_BASE: usize = 64 << 10;
/// Most characters of a reply quoted in an error.
const MAX_QUOTE: usize = 200;

pub(crate) struct RemoteEmbeddings {
    pool: Arc<Pool>,
    model: String,
    timeout: Duration,
    /// Set once a server's `/v1/models` was found to list the model (or to list none).
    checked: tokio::sync::OnceCell<()>,
    /// The width of the first vectors received (0 before): a server that later answers
    /// with another width serves another model, and its vectors would not compare.
    width: AtomicUsize,
    /// The `dimensions` asked of the servers: vectors of this many values.
    dimensions: Option<u32>,
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
    pub(crate) fn new(
        pool: Arc<Pool>,
        model: String,
        timeout: Duration,
        dimensions: Option<u32>,
    ) -> Self {
        Self {
            pool,
            model,
            timeout,
            checked: tokio::sync::OnceCell::new(),
            width: AtomicUsize::new(0),
            dimensions,
        }
    }

    /// `timeoutMs` bounds each batch whole: the model check of the first one, tries on
    /// other servers, `Retry-After` waits and the reply's body.
    async fn embed_batch(&self, texts: Vec<Arc<str>>) -> Result<Vec<Vec<f32>>> {
        let deadline = Deadline::after(self.timeout);
        self.checked
            .get_or_try_init(|| async {
                check_model(&self.pool, &self.model, deadline)
                    .await
                    .map(drop)
            })
            .await?;
        let mut body = serde_json::json!({
            "model": self.model,
            "input": texts.iter().map(|t| &**t).collect::<Vec<&str>>(),
            "encoding_format": "float",
        });
        if let Some(d) = self.dimensions {
            body["dimensions"] = d.into();
        }
        let body = serde_json::to_vec(&body)
            .map_err(|e| OrionError::Internal(format!("request body: {e}")))?;
        // Cloned by reference count for each try.
        let body = bytes::Bytes::from(body);
        let n = texts.len();
        let cap = MAX_BYTES_BASE + n * MAX_BYTES_PER_TEXT;
        let pool = &*self.pool;
        let (vectors, _lease) = pool
            .run(deadline, |ep| {
                let req = pool
                    .request(reqwest::Method::POST, &ep, "/v1/embeddings")
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
                let sent = body.len() as u64;
                async move {
                    let resp = match pool.send(&ep, req).await {
                        Ok(r) => r,
                        Err(o) => return widen(o),
                    };
                    ep.record(sent, 0);
                    let protocol = |detail: String| {
                        Outcome::Fatal(OrionError::RemoteProtocol {
                            endpoint: ep.shown().to_string(),
                            detail,
                        })
                    };
                    let raw = match read_capped(&ep, resp, cap).await {
                        Ok(b) => b,
                        Err(ReadError::Broke(e)) => return Outcome::Failed(e),
                        Err(ReadError::TooLarge) => {
                            return protocol(format!(
                                "its reply for {n} texts is larger than {}, the most read \
                                 ({} per text)",
                                binary_size(cap),
                                binary_size(MAX_BYTES_PER_TEXT)
                            ))
                        }
                    };
                    let vectors = match parse(&raw, n).and_then(|v| cut(v, self.dimensions)) {
                        Ok(v) => v,
                        Err(detail) => {
                            return protocol(pool.secrets().clip(&detail, 2 * MAX_QUOTE))
                        }
                    };
                    match self.same_width(vectors[0].len()) {
                        Ok(()) => Outcome::Done(vectors),
                        Err(detail) => protocol(detail),
                    }
                }
            })
            .await?;
        Ok(vectors)
    }

    /// Keep the first width seen; refuse another one later.
    fn same_width(&self, width: usize) -> std::result::Result<(), String> {
        match self.width.compare_exchange(0, width, Relaxed, Relaxed) {
            Ok(_) => Ok(()),
            Err(first) if first == width => Ok(()),
            Err(first) => Err(format!(
                "vectors of {width} dimensions, where its first ones had {first}: the \
                 server now serves another model (vectors of different models do not \
                 compare); restart the process to use the new one"
            )),
        }
    }
}

/// `vectors` of the `dimensions` asked for: as sent when the server cut them (the
/// text-embedding-3 models return them shortened and renormalised), else cut here and
/// renormalised the same way (a server that ignores the field, as llama.cpp's does).
fn cut(
    vectors: Vec<Vec<f32>>,
    dimensions: Option<u32>,
) -> std::result::Result<Vec<Vec<f32>>, String> {
    let Some(d) = dimensions.map(|d| d as usize) else {
        return Ok(vectors);
    };
    let width = vectors.first().map_or(d, Vec::len);
    if width < d {
        return Err(format!(
            "vectors of {width} values, where {d} were asked for (`dimensions`): the model \
             is narrower than that"
        ));
    }
    if width == d {
        return Ok(vectors);
    }
    Ok(vectors
        .into_iter()
        .map(|mut v| {
            v.truncate(d);
            let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            if norm > 0.0 && norm.is_finite() {
                for x in &mut v {
                    *x = (f64::from(*x) / norm) as f32;
                }
            }
            v
        })
        .collect())
}

/// `n` vectors in input order, all of one width and finite, from a reply's body.
fn parse(raw: &[u8], n: usize) -> std::result::Result<Vec<Vec<f32>>, String> {
    let reply: Reply = serde_json::from_slice(raw).map_err(|e| {
        // The caller scrubs it of secrets, then clips it to far less than this first
        // cut, so a secret the cut splits is clipped away too.
        format!(
            "not an embeddings reply ({e}): {}",
            String::from_utf8_lossy(&raw[..raw.len().min(MAX_QUOTE * 16)])
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

    fn endpoints(&self) -> Vec<crate::engine::EndpointStats> {
        self.pool.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_keep_cut_vectors_and_cut_whole_ones() {
        // As sent when the server cut them.
        assert_eq!(
            cut(vec![vec![0.6, 0.8]], Some(2)).unwrap(),
            vec![vec![0.6, 0.8]]
        );
        // Whole: cut here and renormalised.
        assert_eq!(
            cut(vec![vec![3.0, 4.0, 12.0]], Some(2)).unwrap(),
            vec![vec![0.6, 0.8]]
        );
        assert!(cut(vec![vec![1.0]], Some(2))
            .unwrap_err()
            .contains("1 values, where 2"));
        assert_eq!(
            cut(vec![vec![1.0, 2.0]], None).unwrap(),
            vec![vec![1.0, 2.0]]
        );
    }

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
