//! `/v1/rerank` as the reranker's engine (llama.cpp's server started with `--rerank`,
//! vLLM, Infinity, Jina- and Cohere-style APIs; TEI's bare-array reply is read too). A
//! batch's pairs are grouped by query, one request per query with its documents, each
//! retried on another endpoint when one fails, since ranking is idempotent.

use super::pool::{check_model, read_capped, widen, Deadline, Outcome, Pool, ReadError};
use crate::engine::embedding::{BatchFuture, RemoteEngine};
use crate::engine::rerank::split_pair;
use crate::error::{OrionError, Result};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Requests in flight per endpoint, as for embeddings.
const IN_FLIGHT_PER_ENDPOINT: usize = 2;
/// Most bytes of a reply: a score and an index (and perhaps the document, which some
/// servers echo back) per document.
const MAX_BYTES_PER_DOCUMENT: usize = 64 << 10;
const MAX_BYTES_BASE: usize = 64 << 10;
/// Most characters of a reply quoted in an error.
const MAX_QUOTE: usize = 200;

pub(crate) struct RemoteRerank {
    pool: Arc<Pool>,
    model: String,
    timeout: Duration,
    checked: tokio::sync::OnceCell<()>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Reply {
    /// `{ results: [{ index, relevance_score }] }`: llama.cpp, vLLM, Jina, Cohere.
    Results { results: Vec<Item> },
    /// `[{ index, score }]`: Hugging Face's TEI.
    Bare(Vec<Item>),
}

#[derive(Deserialize)]
struct Item {
    index: usize,
    #[serde(alias = "score")]
    relevance_score: f32,
}

impl RemoteRerank {
    pub(crate) fn new(pool: Arc<Pool>, model: String, timeout: Duration) -> Self {
        Self {
            pool,
            model,
            timeout,
            checked: tokio::sync::OnceCell::new(),
        }
    }

    /// Each pair's score, in the batch's order: one request per query.
    async fn score(&self, pairs: Vec<Arc<str>>) -> Result<Vec<Vec<f32>>> {
        let deadline = Deadline::after(self.timeout);
        self.checked
            .get_or_try_init(|| async {
                check_model(&self.pool, &self.model, deadline)
                    .await
                    .map(drop)
            })
            .await?;
        // Queries in order of first appearance, each with its pairs' positions.
        let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, key) in pairs.iter().enumerate() {
            let (query, _) = split_pair(key);
            match groups.iter_mut().find(|(q, _)| *q == query) {
                Some((_, at)) => at.push(i),
                None => groups.push((query, vec![i])),
            }
        }
        let mut out = vec![Vec::new(); pairs.len()];
        for (query, at) in groups {
            let documents: Vec<&str> = at.iter().map(|&i| split_pair(&pairs[i]).1).collect();
            let scores = self.rerank(query, &documents, deadline).await?;
            for (&i, s) in at.iter().zip(scores) {
                out[i] = vec![s];
            }
        }
        Ok(out)
    }

    async fn rerank(
        &self,
        query: &str,
        documents: &[&str],
        deadline: Deadline,
    ) -> Result<Vec<f32>> {
        let body = serde_json::to_vec(&serde_json::json!({
            "model": self.model,
            "query": query,
            "documents": documents,
            "top_n": documents.len(),
            "return_documents": false,
        }))
        .map_err(|e| OrionError::Internal(format!("request body: {e}")))?;
        let body = bytes::Bytes::from(body);
        let n = documents.len();
        let cap = MAX_BYTES_BASE + n * MAX_BYTES_PER_DOCUMENT;
        let pool = &*self.pool;
        let (scores, _lease) = pool
            .run(deadline, |ep| {
                let req = pool
                    .request(reqwest::Method::POST, &ep, "/v1/rerank")
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
                                "its reply for {n} documents is larger than the {cap} bytes read"
                            ))
                        }
                    };
                    match parse(&raw, n) {
                        Ok(s) => Outcome::Done(s),
                        Err(detail) => protocol(pool.secrets().clip(&detail, 2 * MAX_QUOTE)),
                    }
                }
            })
            .await?;
        Ok(scores)
    }
}

/// `n` scores in document order, each finite, from a reply's body.
fn parse(raw: &[u8], n: usize) -> std::result::Result<Vec<f32>, String> {
    let reply: Reply = serde_json::from_slice(raw).map_err(|e| {
        format!(
            "not a rerank reply ({e}): {}",
            String::from_utf8_lossy(&raw[..raw.len().min(MAX_QUOTE * 16)])
        )
    })?;
    let items = match reply {
        Reply::Results { results } | Reply::Bare(results) => results,
    };
    if items.len() != n {
        return Err(format!("{} scores for {n} documents", items.len()));
    }
    let mut out: Vec<Option<f32>> = vec![None; n];
    for item in items {
        if item.index >= n || out[item.index].is_some() {
            return Err(format!("score index {} is out of place", item.index));
        }
        if !item.relevance_score.is_finite() {
            return Err("a score is not a finite number".into());
        }
        out[item.index] = Some(item.relevance_score);
    }
    Ok(out.into_iter().flatten().collect())
}

impl RemoteEngine for RemoteRerank {
    fn embed(self: Arc<Self>, texts: Vec<Arc<str>>) -> BatchFuture {
        Box::pin(async move { self.score(texts).await })
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
    fn replies_of_either_shape_are_put_in_document_order() {
        let s = parse(
            br#"{"results":[{"index":1,"relevance_score":-2.5},{"index":0,"relevance_score":3}]}"#,
            2,
        )
        .unwrap();
        assert_eq!(s, vec![3.0, -2.5]);
        let s = parse(br#"[{"index":0,"score":0.25},{"index":1,"score":0.75}]"#, 2).unwrap();
        assert_eq!(s, vec![0.25, 0.75]);
        assert!(
            parse(br#"{"results":[{"index":0,"relevance_score":1}]}"#, 2)
                .unwrap_err()
                .contains("1 scores for 2")
        );
        assert!(
            parse(br#"[{"index":0,"score":1},{"index":0,"score":2}]"#, 2)
                .unwrap_err()
                .contains("out of place")
        );
        assert!(parse(b"<html>", 1)
            .unwrap_err()
            .contains("not a rerank reply"));
    }
}
