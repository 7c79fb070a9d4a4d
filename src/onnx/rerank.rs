//! A cross-encoder reranker on ONNX Runtime: a BERT-style sequence-classification model
//! (ms-marco-MiniLM, bge-reranker-base exported to ONNX: one `logits` value per pair) run
//! by fastembed's `TextRerank`. Each pair reaches the model as a sentence pair: the
//! query, then the document with token type 1 where the model takes token types (as
//! transformers encodes it; llama.cpp's rank pooling reads type 0 throughout).

use super::graph::{self, Outliers, Precision};
use super::model::{heads, ort_environment, outliers_from, read_model_file, CALIBRATION_TEXTS};
use crate::engine::embedding::{Embedder, EmbedderFactory, Read};
use crate::engine::rerank::split_pair;
use crate::error::{OrionError, Result};
use fastembed::{
    InitOptionsUserDefined, RerankInitOptionsUserDefined, TextEmbedding, TextRerank,
    TokenizerFiles, UserDefinedEmbeddingModel, UserDefinedRerankingModel,
};
use std::path::{Path, PathBuf};

/// Tokens a pair is cut to: what cross-encoders of this kind are trained with.
const MAX_PAIR_TOKENS: usize = 512;
/// Most padded tokens in one run of the model (its pairs times the longest one's tokens;
/// one longer pair runs alone). Measured on 2 cores with pairs sorted by length (the
/// README's reranking figures): pairs of 100 to 300 tokens ran fastest one at a time
/// (1.8x sixteen at a time with int8, 1.4x exact: a run's attention scores grow with
/// the square of its length, and past glibc's 32 MiB mmap threshold every run faulted
/// its memory in afresh), pairs of 15 to 40 tokens fastest four to eight at a time
/// (1.2x one at a time: each run has a fixed cost of a few milliseconds); budgets of
/// 64, 128, 256 and 512 tokens: 128 as fast as the best on each length, 64 slowest.
/// ONNX Runtime's arena instead of the budget: 1.3x sixteen at a time, but it kept
/// 1.1 GB after pairs of 512 tokens.
const RUN_TOKENS: usize = 128;
/// Most pairs in one run.
const PAIRS_PER_RUN: usize = 16;

/// `members` (sorted by tokens, `read(j)` each) cut into runs of at most [`RUN_TOKENS`]
/// padded tokens and [`PAIRS_PER_RUN`] pairs, at least one pair each.
fn runs(members: &[usize], read: impl Fn(usize) -> usize) -> Vec<&[usize]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < members.len() {
        let mut end = start + 1;
        // Sorted: the last pair taken is the longest.
        while end < members.len()
            && end - start < PAIRS_PER_RUN
            && (end - start + 1) * read(members[end]) <= RUN_TOKENS
        {
            end += 1;
        }
        out.push(&members[start..end]);
        start = end;
    }
    out
}

/// Where a reranker directory keeps its ONNX file: at its root (optimum's export) or
/// under `onnx/` (the layout transformers.js reads), full or quantized.
const ONNX_FILES: [&str; 4] = [
    "model.onnx",
    "onnx/model.onnx",
    "onnx/model_quantized.onnx",
    "onnx/model_int8.onnx",
];

/// The ONNX file of the reranker in `dir`, when it has one: with `int8`, a quantized
/// export first (a directory in transformers.js's layout has both).
pub(crate) fn onnx_file(dir: &Path, int8: bool) -> Option<&'static str> {
    let quantized = |f: &&str| f.contains("quantized") || f.contains("int8");
    let (first, then): (Vec<&str>, Vec<&str>) =
        ONNX_FILES.into_iter().partition(|f| quantized(f) == int8);
    first
        .into_iter()
        .chain(then)
        .find(|f| dir.join(f).is_file())
}

/// Loads a cross-encoder from a directory: its ONNX file and its tokenizer's files.
pub(crate) struct OnnxRerankFactory {
    pub(crate) dir: PathBuf,
    pub(crate) runtime_candidates: Vec<PathBuf>,
    /// ONNX Runtime intra-op threads; `None` uses every core.
    pub(crate) threads: Option<usize>,
    /// How its int8 weights are computed with (see `graph`): as for the embedding model.
    pub(crate) precision: Precision,
}

/// ONNX Runtime's settings for a cross-encoder's sessions (see `model` for why): threads
/// that stop spinning between calls, and no arena that keeps the largest batch's memory
/// for good.
const SESSION_CONFIG: [(&str, &str); 2] = [
    ("session.force_spinning_stop", "1"),
    ("session.use_device_allocator_for_initializers", "1"),
];

impl EmbedderFactory for OnnxRerankFactory {
    fn load(&self) -> Result<Box<dyn Embedder>> {
        let int8 = self.precision == Precision::Int8;
        let file = onnx_file(&self.dir, int8).ok_or_else(|| OrionError::ModelNotFound {
            what: format!("a cross-encoder's ONNX file ({})", ONNX_FILES.join(", ")),
            searched: self.dir.display().to_string(),
        })?;
        let read = |name: &str| read_model_file(&self.dir, name);
        let tokenizer_files = TokenizerFiles {
            tokenizer_file: read("tokenizer.json")?,
            config_file: read("config.json")?,
            special_tokens_map_file: read("special_tokens_map.json")?,
            tokenizer_config_file: read("tokenizer_config.json")?,
        };
        // The embedding model's rewrites (attention fused for this CPU's kernels; with
        // `int8`, integer products calibrated on pairs): the same encoder runs the same
        // way here.
        let onnx = read(file)?;
        let heads = heads(&self.dir);
        let weights = graph::Int8Weights::for_this_cpu();
        let outliers = match self.precision {
            Precision::Int8 => self.calibrate(&onnx, &tokenizer_files, weights)?,
            Precision::Exact => Outliers::new(),
        };
        let onnx = match graph::rewrite(&onnx, self.precision, &outliers, heads, weights) {
            Some((rewritten, _)) => rewritten,
            None => onnx,
        };
        let model = UserDefinedRerankingModel::new(onnx, tokenizer_files);
        let mut options = RerankInitOptionsUserDefined::default();
        options.environment = Some(ort_environment(&self.runtime_candidates)?);
        options.max_length = MAX_PAIR_TOKENS;
        options.intra_threads = self.threads;
        options.session_config = SESSION_CONFIG
            .iter()
            .map(|&(k, v)| (k.into(), v.into()))
            .collect();
        options.execution_providers =
            vec![ort::ep::CPU::default().with_arena_allocator(false).build()];
        let inner = TextRerank::try_new_from_user_defined(model, options).map_err(|e| {
            OrionError::ModelLoadFailed(format!(
                "could not load the cross-encoder in {} (a sequence-classification model with \
                 one `logits` output?): {e}",
                self.dir.display()
            ))
        })?;
        // Pairs are counted whole, to tell which were cut.
        let mut counter = inner.tokenizer.clone();
        counter
            .with_truncation(None)
            .map_err(|e| OrionError::ModelLoadFailed(format!("the reranker's tokenizer: {e}")))?;
        crate::sysmem::release_freed_memory();
        Ok(Box::new(OnnxReranker {
            inner,
            counter,
            read: Vec::new(),
        }))
    }
}

impl OnnxRerankFactory {
    /// The outlier channels of each integer product (see `model::FastEmbedFactory`'s
    /// calibration), measured on pairs of the embedding model's calibration sentences in
    /// one batch: each query, the tokenizer's separator, a document. The calibration
    /// graph runs as an embedding model (its outputs read raw), so every token is of type
    /// 0; a pair's document is of type 1 in real calls, which moves its activations by
    /// one small learned vector, not the channels that stand out.
    fn calibrate(
        &self,
        onnx: &[u8],
        tokenizer_files: &TokenizerFiles,
        weights: graph::Int8Weights,
    ) -> Result<Outliers> {
        let Some(calibration) = graph::calibration(onnx, weights) else {
            // Nothing to compute in integers: the model would run exact while its stats
            // said int8.
            return Err(OrionError::InvalidOption(format!(
                "precision 'int8' needs a cross-encoder exported with int8 weights (as \
                 onnx/model_quantized.onnx files are); the one in {} has none: use \
                 precision 'exact'",
                self.dir.display()
            )));
        };
        let failed = |e: &dyn std::fmt::Display| {
            OrionError::ModelLoadFailed(format!(
                "could not calibrate the int8 cross-encoder in {} (precision 'exact' does not \
                 need to): {e}",
                self.dir.display()
            ))
        };
        let sep = separator(&tokenizer_files.special_tokens_map_file);
        let n = CALIBRATION_TEXTS.len();
        let pairs: Vec<String> = (0..n)
            .map(|i| {
                let (q, d) = (CALIBRATION_TEXTS[i], CALIBRATION_TEXTS[(i + n / 2) % n]);
                format!("{q} {sep} {d}")
            })
            .collect();
        let model = UserDefinedEmbeddingModel::new(calibration.onnx, tokenizer_files.clone());
        let mut options = InitOptionsUserDefined::new()
            .with_environment(ort_environment(&self.runtime_candidates)?)
            .with_max_length(MAX_PAIR_TOKENS);
        if let Some(t) = self.threads {
            options = options.with_intra_threads(t);
        }
        for (k, v) in SESSION_CONFIG {
            options = options.with_session_config(k, v);
        }
        let batches = TextEmbedding::try_new_from_user_defined(model, options)
            .map_err(|e| failed(&e))?
            .transform(&pairs, Some(pairs.len()))
            .map_err(|e| failed(&e))?
            .into_raw();
        outliers_from(&batches, &calibration.inputs).map_err(|e| failed(&e))
    }
}

/// The separator token of a tokenizer's `special_tokens_map.json` (`[SEP]` for BERT,
/// `</s>` for XLM-RoBERTa), written as text: the tokenizer reads it back as the token.
fn separator(special_tokens_map: &[u8]) -> String {
    let map: serde_json::Value = serde_json::from_slice(special_tokens_map).unwrap_or_default();
    let sep = &map["sep_token"];
    sep.as_str()
        .or_else(|| sep["content"].as_str())
        .unwrap_or("[SEP]")
        .to_string()
}

/// A loaded cross-encoder.
struct OnnxReranker {
    inner: TextRerank,
    /// The tokenizer without its cut, to count each pair's tokens.
    counter: tokenizers::Tokenizer,
    read: Vec<Read>,
}

impl Embedder for OnnxReranker {
    /// Each text is a pair (`engine::rerank::pair_key`); its "vector" is its one score.
    /// Pairs of one query go to the model together (up to [`RUN_TOKENS`] a run); a batch
    /// from several workers may hold several queries.
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let pairs: Vec<(&str, &str)> = texts.iter().map(|t| split_pair(t)).collect();
        // Each pair's tokens, counted whole (to tell which are cut) and as read.
        let counted: Vec<usize> = pairs
            .iter()
            .map(|&(q, d)| {
                self.counter
                    .encode((q, d), true)
                    .map_or(0, |e| e.get_ids().len())
            })
            .collect();
        let read = |j: usize| counted[j].min(MAX_PAIR_TOKENS);
        let mut scores = vec![0.0f32; pairs.len()];
        let mut done = vec![false; pairs.len()];
        for i in 0..pairs.len() {
            if done[i] {
                continue;
            }
            let query = pairs[i].0;
            let mut members: Vec<usize> = (i..pairs.len())
                .filter(|&j| !done[j] && pairs[j].0 == query)
                .collect();
            // A run is padded to its longest pair: pairs of similar length go together.
            members.sort_by_key(|&j| read(j));
            for chunk in runs(&members, read) {
                let documents: Vec<&str> = chunk.iter().map(|&j| pairs[j].1).collect();
                let ranked = self
                    .inner
                    .rerank(query, documents.as_slice(), false, Some(chunk.len()))
                    .map_err(|e| OrionError::InferenceFailed(format!("reranking: {e}")))?;
                if ranked.len() != chunk.len() {
                    return Err(OrionError::InferenceFailed(format!(
                        "the cross-encoder scored {} of {} pairs",
                        ranked.len(),
                        chunk.len()
                    )));
                }
                for r in ranked {
                    if let Some(&j) = chunk.get(r.index) {
                        scores[j] = r.score;
                    }
                }
            }
            for &j in &members {
                done[j] = true;
            }
        }
        self.read = counted
            .iter()
            .map(|&n| Read {
                tokens: u32::try_from(n.min(MAX_PAIR_TOKENS)).unwrap_or(u32::MAX),
                cut: n > MAX_PAIR_TOKENS,
            })
            .collect();
        Ok(scores.into_iter().map(|s| vec![s]).collect())
    }

    fn last_read(&mut self) -> Vec<Read> {
        std::mem::take(&mut self.read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_hold_at_most_the_token_budget_and_at_least_one_pair() {
        // Tokens of pairs 0..6, sorted: 10, 20, 30, 40, 200, 600.
        let tokens = [10, 20, 30, 40, 200, 600];
        let members: Vec<usize> = (0..tokens.len()).collect();
        let runs = runs(&members, |j| tokens[j]);
        // 3 × 30 = 90 fits 128; a fourth at 40 would pad to 160. Long pairs go alone.
        assert_eq!(runs, vec![&[0, 1, 2][..], &[3][..], &[4][..], &[5][..]]);
        let short = vec![0usize; 40];
        let runs = super::runs(&short, |_| 5);
        assert_eq!(runs.len(), 3);
        assert!(runs.iter().all(|r| r.len() <= PAIRS_PER_RUN));
        assert!(super::runs(&[], |_| 1).is_empty());
    }

    #[test]
    fn the_separator_comes_from_the_special_tokens_map() {
        assert_eq!(separator(br#"{"sep_token": "[SEP]"}"#), "[SEP]");
        assert_eq!(
            separator(br#"{"sep_token": {"content": "</s>", "lstrip": false}}"#),
            "</s>"
        );
        assert_eq!(separator(b"not json"), "[SEP]");
    }
}
