//! GGUF embedding models and rerankers run by llama.cpp: the second engine behind the
//! embedding service (ONNX Runtime's is the first), and the reranker's. Texts of one
//! service batch go into one llama.cpp batch as separate sequences. An embedding model's
//! are pooled as its GGUF declares (mean, CLS, last token) and L2-normalised, as
//! sentence-transformers' `Normalize` and llama.cpp's server do; a reranker's (rank
//! pooling) are (query, document) pairs, laid out as llama.cpp's server does, each
//! scored by the model's classifier.

use super::context::ModelContext;
use super::engine::{checked, Place};
use crate::engine::embedding::{Embedder, EmbedderFactory, Read};
use crate::error::{OrionError, Result};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use std::path::PathBuf;
use std::sync::Arc;

/// Most tokens one text may have, whatever the model was trained for: a batch of
/// non-causal attention is computed whole, its attention scores growing with the
/// square of its tokens (2048 tokens, 16 heads: 256 MiB), so longer contexts cost more
/// memory than retrieval's passages are worth.
pub(crate) const MAX_TOKENS: u32 = 2048;
/// Most texts in one llama.cpp batch.
const MAX_SEQUENCES: u32 = 64;
/// Most tokens of several texts in one llama.cpp batch. Attention is computed across the
/// whole batch (masked between texts), so its cost grows with the square of the batch's
/// tokens: measured on 2 cores, reranking pairs of 170 tokens two or three to a batch of
/// 512 was about 15 % slower than one or two to a batch of 256, and short texts' batches
/// ran at the same speed either way.
const BATCH_TOKENS: usize = 256;
/// Batches of fewer tokens than this go, on the CPU, to a second context without flash
/// attention. ggml's CPU flash attention computes 64 queries or more in tiles of matrix
/// products (`GGML_FA_TILE_Q` in llama.cpp 0.1.161's ggml-cpu), fewer one query at a
/// time; below that the plain attention (a matrix product, a softmax, another product) is
/// faster: measured on 2 cores with AVX-512, all-MiniLM-L6-v2's f16 twin embedded single
/// texts of about 30 tokens in 6.3 ms instead of 7.7, of about 52 in 10.2 instead of 13.6,
/// while batches of 32 texts were twice as slow without flash attention.
const SHORT_TOKENS: u32 = 64;
/// Most texts of a batch that goes to that context. llama.cpp gives a context an output
/// buffer of a vocabulary's logits per sequence (7.5 MiB for all-MiniLM-L6-v2's 64):
/// 8 keep it under 1 MiB and take a query, or a few short texts.
const SHORT_SEQUENCES: u32 = 8;

/// How llama.cpp pools a model's tokens into one vector, by its `pooling_type`.
fn pooling_name(p: u32) -> &'static str {
    match p {
        0 => "none",
        1 => "mean",
        2 => "cls",
        3 => "last",
        4 => "rank",
        _ => "unknown",
    }
}

/// Why a model of this pooling cannot serve: an embedding model pools its tokens (mean,
/// CLS, last), a reranker ranks (4).
fn check_pooling(
    hparams: &crate::store::gguf_check::Hparams,
    rank: bool,
) -> std::result::Result<(), String> {
    match (hparams.pooling, rank) {
        (Some(1..=3), false) | (Some(4), true) => Ok(()),
        (Some(4), false) => Err(
            "this is a reranker (pooling_type 4, rank), not an embedding model: use \
             getSharedReranker"
                .into(),
        ),
        (Some(p @ 1..=3), true) => Err(format!(
            "this is an embedding model ({}.pooling_type {p}, {}), not a reranker (rank \
             pooling): use getSharedEmbeddingClient",
            hparams.arch,
            pooling_name(p)
        )),
        (other, rank) => Err(format!(
            "{}.pooling_type is {}: not {} (an embedding model pools its tokens: mean, \
             cls or last; a reranker ranks)",
            hparams.arch,
            other.map_or("missing".into(), |p| format!("{p} ({})", pooling_name(p))),
            if rank {
                "a reranker"
            } else {
                "an embedding model"
            }
        )),
    }
}

/// Loads a GGUF embedding model on the service's thread, the first time it is needed.
pub(crate) struct LlamaEmbedFactory {
    pub(crate) path: PathBuf,
    /// Threads for llama.cpp's CPU work (default: every core).
    pub(crate) threads: Option<usize>,
    /// Where the model's layers go, decided at load.
    pub(crate) place: Place,
    /// A reranker (rank pooling) scoring pairs ([`crate::engine::rerank`]), rather than an
    /// embedding model.
    pub(crate) rank: bool,
    /// The catalog's entry, when the model is one of its: the file is downloaded when it
    /// is missing and downloads are allowed.
    pub(crate) catalog: Option<(String, crate::store::catalog::CatalogGguf)>,
}

impl LlamaEmbedFactory {
    /// The catalog model's file, downloaded first where it is missing: `DOWNLOAD_REQUIRED`
    /// when downloads are off, `MODEL_NOT_FOUND` for a file without a digest unless
    /// unverified downloads are allowed.
    fn fetch(&self) -> Result<()> {
        let Some((name, c)) = &self.catalog else {
            return Ok(());
        };
        if self.path.exists() {
            return Ok(());
        }
        let url = crate::store::download::hub_url(&c.hub_repo, &c.hub_file);
        if !crate::settings::downloads_allowed() {
            return Err(OrionError::DownloadRequired {
                model: name.clone(),
                path: self.path.display().to_string(),
                url,
                size: c.size,
            });
        }
        if c.sha256.is_none() && !crate::store::download::unverified_allowed()? {
            return Err(OrionError::ModelNotFound {
                what: format!(
                    "model file `{}` (not on disk; {} has it, but the catalog gives no sha256 \
                     to check a download against: set {}=1 to download it unchecked, or put \
                     the file there by hand)",
                    c.hub_file,
                    crate::net::shown(&url),
                    crate::store::download::UNVERIFIED_ENV
                ),
                searched: self
                    .path
                    .parent()
                    .map_or_else(String::new, |p| p.display().to_string()),
            });
        }
        let source = crate::store::download::Source::model(&url, c.sha256.as_deref(), c.size, None);
        crate::store::download::fetch(
            &source,
            &self.path,
            &mut |_, _| {},
            &crate::lifecycle::is_shut_down,
        )
    }
}

impl EmbedderFactory for LlamaEmbedFactory {
    fn load(&self) -> Result<Box<dyn Embedder>> {
        self.fetch()?;
        let path = &self.path;
        let (_, hparams) = checked(path)?;
        let bad = |why: String| OrionError::ModelLoadFailed(format!("{}: {why}", path.display()));
        check_pooling(&hparams, self.rank).map_err(bad)?;
        let backend = super::backend::backend()?;
        // An embedding model is small next to a GPU: all of it goes there, when it fits
        // with the compute buffers' headroom; else it stays on the CPU.
        let device = (self.place)()?.device.and_then(|d| {
            let dev = super::backend::device(d)?;
            let need = hparams.layer_bytes.iter().sum::<u64>() + hparams.output_bytes;
            let free =
                super::fit::free_for_models(dev.free_bytes, dev.total_bytes, super::fit::held(d));
            (need.saturating_add(super::fit::HEADROOM) <= free)
                .then(|| (d, super::fit::DeviceShare::take(d, need)))
        });
        let devices: Vec<usize> = device.iter().map(|(d, _)| *d).collect();
        let params = LlamaModelParams::default()
            .with_devices(&devices)
            .map_err(|e| bad(e.to_string()))?
            .with_use_mmap(true)
            .with_n_gpu_layers(if devices.is_empty() { 0 } else { u32::MAX >> 1 });
        let model = LlamaModel::load_from_file(backend, path, &params).map_err(|e| {
            if crate::lifecycle::is_shut_down() {
                return OrionError::ShutDown;
            }
            OrionError::ModelLoadFailed(format!("llama.cpp could not load {}: {e}", path.display()))
        })?;
        crate::lifecycle::shutdown_before_later_destructors(crate::lifecycle::Library::LlamaCpp);
        let model = Arc::new(model);
        let n_ctx = hparams.n_ctx_train.min(MAX_TOKENS);
        let threads = self
            .threads
            .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
            .unwrap_or(1)
            .min(1024) as i32;
        let on_cpu = devices.is_empty();
        let ctx =
            ModelContext::for_embeddings(&model, n_ctx, MAX_SEQUENCES, threads, on_cpu, true)?;
        let short = if on_cpu && n_ctx > SHORT_TOKENS {
            Some(ModelContext::for_embeddings(
                &model,
                SHORT_TOKENS,
                SHORT_SEQUENCES,
                threads,
                on_cpu,
                false,
            )?)
        } else {
            None
        };
        let vocab = model.vocab();
        // What ends a text, kept when a long one is cut (BERT's [SEP], a decoder's EOS,
        // whose position last-token pooling reads).
        let end = [vocab.sep(), vocab.eos()]
            .into_iter()
            .filter(|t| t.0 >= 0)
            .collect();
        // A reranker's own layout of a pair, when its GGUF has one (Qwen3-Reranker's).
        let rank_template = if self.rank {
            model
                .chat_template(Some("rerank"))
                .ok()
                .and_then(|t| t.to_str().ok().map(str::to_string))
        } else {
            None
        };
        Ok(Box::new(LlamaEmbedder {
            ctx,
            short,
            last_short: false,
            model,
            n_ctx,
            end,
            rank: self.rank,
            rank_template,
            read: Vec::new(),
            _device: device.map(|(_, share)| share),
        }))
    }
}

/// A loaded GGUF embedding model and its context.
pub(crate) struct LlamaEmbedder {
    // Dropped before `model` (the context holds its own share of it anyway).
    ctx: ModelContext,
    /// For batches of fewer than `SHORT_TOKENS` tokens and at most `SHORT_SEQUENCES`
    /// texts, on the CPU: without flash attention.
    short: Option<ModelContext>,
    /// Whether the last batch went to `short`.
    last_short: bool,
    model: Arc<LlamaModel>,
    /// Most tokens of one text, and of one batch.
    n_ctx: u32,
    end: Vec<LlamaToken>,
    /// Scores pairs instead of embedding texts.
    rank: bool,
    /// The GGUF's `rerank` template, with `{query}` and `{document}`.
    rank_template: Option<String>,
    /// What the last batch's texts came to.
    read: Vec<Read>,
    /// The device memory this model holds, given back when it is dropped.
    _device: Option<super::fit::DeviceShare>,
}

impl LlamaEmbedder {
    /// `text`'s tokens, with the model's own special tokens, at most `n_ctx` of them: a
    /// longer text is cut, keeping its closing special token.
    fn tokens(&self, text: &str) -> (Vec<LlamaToken>, bool) {
        let vocab = self.model.vocab();
        // Special tokens written in the text are read as text: an input cannot end its
        // own sequence early.
        let mut t = vocab.tokenize(text.as_bytes(), true, false);
        if t.is_empty() {
            // Nothing to pool (a model that adds no special token, an empty text): its
            // end token stands for it.
            t.extend(self.end.first());
        }
        let max = self.n_ctx as usize;
        let cut = t.len() > max;
        if cut {
            let last = t[t.len() - 1];
            t.truncate(max);
            if self.end.contains(&last) {
                t[max - 1] = last;
            }
        }
        (t, cut)
    }
}

impl LlamaEmbedder {
    /// A (query, document) pair's tokens as llama.cpp's server lays them out
    /// (`format_prompt_rerank`): the model's `rerank` template, or
    /// `[BOS] query [EOS] [SEP] document [EOS]` with each special token where the
    /// vocabulary adds it. Too long, the document is cut first, then the query.
    fn pair_tokens(&self, key: &str) -> (Vec<LlamaToken>, bool) {
        let vocab = self.model.vocab();
        let (query, document) = crate::engine::rerank::split_pair(key);
        let max = self.n_ctx as usize;
        if let Some(template) = &self.rank_template {
            let text = template
                .replace("{query}", query)
                .replace("{document}", document);
            let mut t = vocab.tokenize(text.as_bytes(), false, true);
            let cut = t.len() > max;
            t.truncate(max);
            if t.is_empty() {
                t.extend(self.end.first());
            }
            return (t, cut);
        }
        let mut q = vocab.tokenize(query.as_bytes(), false, false);
        let mut d = vocab.tokenize(document.as_bytes(), false, false);
        let eos = [vocab.eos(), vocab.sep()].into_iter().find(|t| t.0 >= 0);
        let mut head = Vec::new();
        if vocab.should_add_bos() && vocab.bos().0 >= 0 {
            head.push(vocab.bos());
        }
        let mut middle = Vec::new();
        let mut tail = Vec::new();
        if vocab.should_add_eos() {
            middle.extend(eos);
            tail.extend(eos);
        }
        if vocab.should_add_sep() && vocab.sep().0 >= 0 {
            middle.push(vocab.sep());
        }
        let fixed = head.len() + middle.len() + tail.len();
        let room = max.saturating_sub(fixed);
        let cut = q.len() + d.len() > room;
        if cut {
            // The query is kept whole where half the room holds it.
            let keep_q = q.len().min(room.saturating_sub(d.len().min(room / 2)));
            q.truncate(keep_q);
            d.truncate(room - q.len());
        }
        let mut t = head;
        t.extend(q);
        t.extend(middle);
        t.extend(d);
        t.extend(tail);
        if t.is_empty() {
            t.extend(self.end.first());
        }
        t.truncate(max);
        (t, cut)
    }
}

impl Embedder for LlamaEmbedder {
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let (tokens, cut): (Vec<Vec<LlamaToken>>, Vec<bool>) = texts
            .iter()
            .map(|t| {
                if self.rank {
                    self.pair_tokens(t)
                } else {
                    self.tokens(t)
                }
            })
            .unzip();
        self.read = tokens
            .iter()
            .zip(&cut)
            .map(|(t, &cut)| Read {
                tokens: t.len() as u32,
                cut,
            })
            .collect();
        let mut out: Vec<Vec<f32>> = Vec::with_capacity(texts.len());
        let mut batch = LlamaBatch::new(self.n_ctx as usize, MAX_SEQUENCES as i32);
        let mut next = 0;
        while next < tokens.len() {
            batch.clear();
            let first = next;
            let mut used = 0usize;
            while next < tokens.len()
                && next - first < MAX_SEQUENCES as usize
                // A text longer than that goes alone.
                && (used == 0 || used + tokens[next].len() <= BATCH_TOKENS)
            {
                let seq = (next - first) as i32;
                for (pos, &t) in tokens[next].iter().enumerate() {
                    batch
                        .add(t, pos as i32, &[seq], true)
                        .map_err(|e| OrionError::Internal(format!("embedding batch: {e}")))?;
                }
                used += tokens[next].len();
                next += 1;
            }
            self.last_short = self.short.is_some()
                && used < SHORT_TOKENS as usize
                && next - first <= SHORT_SEQUENCES as usize;
            let ctx = match &mut self.short {
                Some(short) if self.last_short => short,
                _ => &mut self.ctx,
            };
            ctx.decode(&mut batch).map_err(|e| {
                OrionError::InferenceFailed(format!("llama.cpp could not embed the batch: {e}"))
            })?;
            for seq in 0..(next - first) {
                let v = ctx.get().embeddings_seq_ith(seq as i32).map_err(|_| {
                    OrionError::InferenceFailed(
                        "llama.cpp returned no pooled vector for a text".into(),
                    )
                })?;
                out.push(if self.rank {
                    // The classifier's first output, as llama.cpp's server reports it.
                    vec![v.first().copied().unwrap_or(f32::NAN)]
                } else {
                    normalized(v)
                });
            }
            ctx.clear();
        }
        Ok(out)
    }

    fn last_read(&mut self) -> Vec<Read> {
        std::mem::take(&mut self.read)
    }

    fn last_threads(&self) -> Option<usize> {
        match &self.short {
            Some(short) if self.last_short => short.threads(),
            _ => self.ctx.threads(),
        }
    }
}

/// `v` scaled to length 1 (a zero vector stays zero).
fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return v.to_vec();
    }
    v.iter().map(|x| (f64::from(*x) / norm) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_normalised() {
        let v = normalized(&[3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert_eq!(normalized(&[0.0, 0.0]), vec![0.0, 0.0]);
    }
}
