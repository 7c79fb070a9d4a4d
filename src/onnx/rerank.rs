//! A cross-encoder reranker on ONNX Runtime: a BERT-style sequence-classification model
//! (ms-marco-MiniLM, bge-reranker-base exported to ONNX: one `logits` value per pair) run
//! by fastembed's `TextRerank`. Each pair reaches the model as a sentence pair: the
//! query, then the document with token type 1 where the model takes token types (as
//! transformers encodes it; llama.cpp's rank pooling reads type 0 throughout).

use super::graph::{self, Precision};
use super::model::{heads, ort_environment, read_model_file};
use crate::engine::embedding::{Embedder, EmbedderFactory, Read};
use crate::engine::rerank::split_pair;
use crate::error::{OrionError, Result};
use fastembed::{
    RerankInitOptionsUserDefined, TextRerank, TokenizerFiles, UserDefinedRerankingModel,
};
use std::path::{Path, PathBuf};

/// Tokens a pair is cut to: what cross-encoders of this kind are trained with.
const MAX_PAIR_TOKENS: usize = 512;
/// Pairs in one run of the model: runs are padded to their longest pair, and a few
/// pairs of similar length fill the cores as well as many.
const PAIRS_PER_RUN: usize = 16;

/// Where a reranker directory keeps its ONNX file: at its root (optimum's export) or
/// under `onnx/` (the layout transformers.js reads), full or quantized.
const ONNX_FILES: [&str; 4] = [
    "model.onnx",
    "onnx/model.onnx",
    "onnx/model_quantized.onnx",
    "onnx/model_int8.onnx",
];

/// The ONNX file of the reranker in `dir`, when it has one.
pub(crate) fn onnx_file(dir: &Path) -> Option<&'static str> {
    ONNX_FILES.into_iter().find(|f| dir.join(f).is_file())
}

/// Loads a cross-encoder from a directory: its ONNX file and its tokenizer's files.
pub(crate) struct OnnxRerankFactory {
    pub(crate) dir: PathBuf,
    pub(crate) runtime_candidates: Vec<PathBuf>,
    /// ONNX Runtime intra-op threads; `None` uses every core.
    pub(crate) threads: Option<usize>,
}

impl EmbedderFactory for OnnxRerankFactory {
    fn load(&self) -> Result<Box<dyn Embedder>> {
        let file = onnx_file(&self.dir).ok_or_else(|| OrionError::ModelNotFound {
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
        // The embedding model's rewrites (attention fused for this CPU's kernels, the
        // products as exported): the same encoder runs the same way here.
        let onnx = read(file)?;
        let heads = heads(&self.dir);
        let onnx = match graph::rewrite(
            &onnx,
            Precision::Exact,
            &graph::Outliers::new(),
            heads,
            graph::Int8Weights::for_this_cpu(),
        ) {
            Some((rewritten, _)) => rewritten,
            None => onnx,
        };
        let model = UserDefinedRerankingModel::new(onnx, tokenizer_files);
        let mut options = RerankInitOptionsUserDefined::default();
        options.environment = Some(ort_environment(&self.runtime_candidates)?);
        options.max_length = MAX_PAIR_TOKENS;
        options.intra_threads = self.threads;
        // As for the embedding model (see `model`): threads that stop spinning between
        // calls, and no arena that keeps the largest batch's memory for good.
        options.session_config = vec![
            ("session.force_spinning_stop".into(), "1".into()),
            (
                "session.use_device_allocator_for_initializers".into(),
                "1".into(),
            ),
        ];
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

/// A loaded cross-encoder.
struct OnnxReranker {
    inner: TextRerank,
    /// The tokenizer without its cut, to count each pair's tokens.
    counter: tokenizers::Tokenizer,
    read: Vec<Read>,
}

impl Embedder for OnnxReranker {
    /// Each text is a pair (`engine::rerank::pair_key`); its "vector" is its one score.
    /// Pairs of one query go to the model together; a batch from several workers may hold
    /// several queries.
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let pairs: Vec<(&str, &str)> = texts.iter().map(|t| split_pair(t)).collect();
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
            // A batch is padded to its longest pair: documents of similar length go
            // together (by bytes, close enough to tokens for this).
            members.sort_by_key(|&j| pairs[j].1.len());
            for chunk in members.chunks(PAIRS_PER_RUN) {
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
        self.read = pairs
            .iter()
            .map(|&(q, d)| {
                let n = self
                    .counter
                    .encode((q, d), true)
                    .map_or(0, |e| e.get_ids().len());
                Read {
                    tokens: u32::try_from(n.min(MAX_PAIR_TOKENS)).unwrap_or(u32::MAX),
                    cut: n > MAX_PAIR_TOKENS,
                }
            })
            .collect();
        Ok(scores.into_iter().map(|s| vec![s]).collect())
    }

    fn last_read(&mut self) -> Vec<Read> {
        std::mem::take(&mut self.read)
    }
}
