//! The one error type of orion-native. Every variant has a stable string code that JS
//! callers read as `err.code`; messages say what to do about the failure.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OrionError {
    /// The text or batch handed to a call is not something we can embed.
    InvalidInput(String),
    /// An option has the wrong type, an impossible value, or an unknown name.
    InvalidOption(String),
    /// Model files are missing. Carries the directory searched.
    ModelNotFound { what: String, searched: String },
    /// A model file is missing and could be downloaded, but downloads are off.
    DownloadRequired {
        /// The model (key or name).
        model: String,
        /// Where the file would be downloaded to.
        path: String,
        /// Where from.
        url: String,
        size: Option<u64>,
    },
    /// A file the package's own scripts fetch (`npx orion-native models`) could not be
    /// downloaded. Model files a load downloads are `ModelNotFound` instead.
    DownloadFailed { url: String, why: String },
    /// Model files exist but could not be loaded (corrupt, wrong format).
    ModelLoadFailed(String),
    /// No ONNX Runtime library could be loaded. Carries every place tried.
    RuntimeNotFound(String),
    /// The GPU backend asked for by name (`configure({ gpu })`, `ORION_GPU`) has no
    /// usable device. Carries why, and what to do.
    GpuUnavailable(String),
    /// The ONNX Runtime library the user named (`ORT_DYLIB_PATH` or `ortLibraryPath`)
    /// could not be loaded: the same code, but the fix is that setting, not a reinstall.
    RuntimePathFailed {
        /// The path and why it failed.
        tried: String,
        /// The setting that named it, as the user would write it.
        set_by: &'static str,
    },
    /// The request did not finish within its timeout.
    EmbeddingTimeout { timeout_ms: u64 },
    /// The shared queue is full.
    Overloaded { queued: usize, limit: usize },
    /// The caller's `AbortSignal` fired.
    Aborted,
    /// Inference itself failed.
    InferenceFailed(String),
    /// No model by that key in the registry.
    UnknownModel(String),
    /// Every loaded model is generating and no other may be loaded.
    ModelBusy(String),
    /// Loading would need more memory than is available.
    InsufficientMemory {
        what: String,
        need: u64,
        available: u64,
    },
    /// The prompt does not fit in the model's context.
    /// `at_least`: counted from the prompt's bytes, before tokenizing it.
    PromptTooLong {
        tokens: u32,
        context: u32,
        at_least: bool,
    },
    /// A text to embed (or a pair to rank) is longer than the model reads, and the call
    /// asked for `truncate: false`.
    InputTooLong { index: usize, tokens: u32 },
    /// A `jsonSchema` holds a keyword constrained generation does not enforce. Carries
    /// where and which.
    SchemaUnsupported(String),
    /// A constrained answer (`jsonSchema`) ended before its JSON did: `maxTokens` or the
    /// context was reached. Carries which and how many tokens were generated.
    OutputIncomplete { reason: &'static str, tokens: u32 },
    /// The process is exiting: orion-native has stopped its threads and takes no work.
    ShutDown,
    /// No remote server could be reached. Carries each endpoint's last error.
    RemoteUnavailable { endpoints: Vec<(String, String)> },
    /// A remote server answered with an error status.
    RemoteError {
        endpoint: String,
        status: u16,
        message: String,
    },
    /// A remote server's reply was malformed or not what the API promises.
    RemoteProtocol { endpoint: String, detail: String },
    /// A bug or an impossible state; never expected.
    Internal(String),
}

impl OrionError {
    /// The stable code, exposed to JS as `err.code`.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "INVALID_INPUT",
            Self::InvalidOption(_) => "INVALID_OPTION",
            Self::ModelNotFound { .. } => "MODEL_NOT_FOUND",
            Self::DownloadRequired { .. } => "DOWNLOAD_REQUIRED",
            Self::DownloadFailed { .. } => "DOWNLOAD_FAILED",
            Self::ModelLoadFailed(_) => "MODEL_LOAD_FAILED",
            Self::RuntimeNotFound(_) | Self::RuntimePathFailed { .. } => "RUNTIME_NOT_FOUND",
            Self::GpuUnavailable(_) => "GPU_UNAVAILABLE",
            Self::EmbeddingTimeout { .. } => "EMBEDDING_TIMEOUT",
            Self::Overloaded { .. } => "OVERLOADED",
            Self::Aborted => "ABORTED",
            Self::InferenceFailed(_) => "INFERENCE_FAILED",
            Self::UnknownModel(_) => "UNKNOWN_MODEL",
            Self::ModelBusy(_) => "MODEL_BUSY",
            Self::InsufficientMemory { .. } => "INSUFFICIENT_MEMORY",
            Self::PromptTooLong { .. } => "PROMPT_TOO_LONG",
            Self::InputTooLong { .. } => "INPUT_TOO_LONG",
            Self::SchemaUnsupported(_) => "SCHEMA_UNSUPPORTED",
            Self::OutputIncomplete { .. } => "OUTPUT_INCOMPLETE",
            Self::ShutDown => "SHUT_DOWN",
            Self::RemoteUnavailable { .. } => "REMOTE_UNAVAILABLE",
            Self::RemoteError { .. } => "REMOTE_ERROR",
            Self::RemoteProtocol { .. } => "REMOTE_PROTOCOL",
            Self::Internal(_) => "INTERNAL",
        }
    }
}

/// `RUNTIME_NOT_FOUND`'s message, with what Windows adds.
fn runtime_not_found(f: &mut fmt::Formatter<'_>, tried: &str) -> fmt::Result {
    write!(
        f,
        "no ONNX Runtime library could be loaded (tried: {tried}). The platform package \
         (orion-native-<platform>) ships one next to the addon: reinstall orion-native, and in \
         an Electron app unpack that package from the asar archive; or set ORT_DYLIB_PATH (or \
         configure({{ ortLibraryPath }})) to a libonnxruntime shared library, version 1.24 or newer."
    )?;
    if cfg!(windows) {
        // The loader's "module could not be found" also means a missing dependency.
        f.write_str(
            " On Windows onnxruntime.dll also needs the Microsoft Visual C++ 2015-2022 runtime: \
             \"module could not be found\" for a file that is there means it is missing; install \
             Microsoft's VC++ Redistributable (x64).",
        )?;
    }
    Ok(())
}

/// `DOWNLOAD_FAILED`'s message.
fn model_not_found(f: &mut fmt::Formatter<'_>, what: &str, searched: &str) -> fmt::Result {
    write!(
        f,
        "{what} not found (searched {searched}). Run `npx orion-native models` \
         (or `npm run models` in the orion-native checkout) to fetch the default models, \
         or point ORION_MODELS_DIR or the `modelPath` option at a directory that holds them."
    )
}

fn schema_unsupported(f: &mut fmt::Formatter<'_>, what: &str) -> fmt::Result {
    write!(
        f,
        "the JSON schema cannot be enforced as given ({what}); the README lists the keywords \
         that are"
    )
}

fn output_incomplete(f: &mut fmt::Formatter<'_>, reason: &str, tokens: u32) -> fmt::Result {
    write!(
        f,
        "the answer's JSON (its schema's value, or the tool call it had to make) was not \
         complete when generation stopped at {reason} ({tokens} tokens): raise `maxTokens`, \
         load the model with a larger `contextSize`, or ask for a smaller object"
    )
}

fn download_failed(f: &mut fmt::Formatter<'_>, url: &str, why: &str) -> fmt::Result {
    write!(
        f,
        "could not download {url}: {why}. Check the network (and the index or mirror \
         address, if one is set), then run the command again."
    )
}

/// `DOWNLOAD_REQUIRED`'s message: what is missing, where it would come from, and the two
/// ways of asking for it.
fn download_required(
    f: &mut fmt::Formatter<'_>,
    model: &str,
    path: &str,
    url: &str,
    size: Option<u64>,
) -> fmt::Result {
    write!(
        f,
        "{model} is not on disk ({path}) and orion-native downloads only when asked. \
         Fetch it ahead of time with `npx orion-native models pull {model}`, or allow \
         downloads on first use with configure({{ allowDownloads: true }}) or \
         ORION_ALLOW_DOWNLOADS=1 (it would come from {url}{})",
        size.map(|s| format!(", {}", human_bytes(s)))
            .unwrap_or_default()
    )
}

impl fmt::Display for OrionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // These messages are complete as they are made.
            Self::InvalidInput(m)
            | Self::InvalidOption(m)
            | Self::UnknownModel(m)
            | Self::ModelBusy(m)
            | Self::GpuUnavailable(m) => f.write_str(m),
            Self::ModelNotFound { what, searched } => model_not_found(f, what, searched),
            Self::DownloadRequired {
                model,
                path,
                url,
                size,
            } => download_required(f, model, path, url, *size),
            Self::DownloadFailed { url, why } => download_failed(f, url, why),
            Self::ModelLoadFailed(m) => write!(
                f,
                "{m}. The file may be truncated or not a model: delete it and run `npx orion-native models` again."
            ),
            Self::RuntimeNotFound(tried) => runtime_not_found(f, tried),
            Self::RuntimePathFailed { tried, set_by } => write!(
                f,
                "the ONNX Runtime library that {set_by} names could not be loaded ({tried}). \
                 Fix {set_by} so that it names a libonnxruntime shared library, version 1.24 or \
                 newer, or unset it to use the one the platform package ships."
            ),
            Self::EmbeddingTimeout { timeout_ms } => write!(
                f,
                "embedding not finished within {timeout_ms} ms. The shared model may be busy with a large \
                 backlog: raise `timeoutMs` (or ORION_EMBEDDING_TIMEOUT_MS), send fewer texts at once, or retry."
            ),
            Self::Overloaded { queued, limit } => write!(
                f,
                "the embedding queue is full ({queued} texts waiting, limit {limit}). Wait for pending \
                 requests to finish and retry, or raise the `maxQueue` option."
            ),
            Self::Aborted => write!(f, "the operation was aborted by its AbortSignal"),
            Self::InferenceFailed(m) => write!(f, "inference failed: {m}"),
            Self::InsufficientMemory { what, need, available } => write!(
                f,
                "not enough memory to load {what:?}: it needs about {} (file plus KV cache), {} is \
                 available. Unload a model, use a smaller quantization (e.g. q4), or raise budgetBytes.",
                human_bytes(*need),
                human_bytes(*available)
            ),
            Self::PromptTooLong {
                tokens,
                context,
                at_least,
            } => write!(
                f,
                "the prompt is {}{tokens} tokens but the model's context holds {context}: shorten it \
                 (or drop older chat messages)",
                if *at_least { "at least " } else { "" }
            ),
            Self::InputTooLong { index, tokens } => write!(
                f,
                "text {index} is longer than the {tokens} tokens the model reads: shorten or split it, \
                 or leave `truncate` on to have it cut"
            ),
            Self::SchemaUnsupported(m) => schema_unsupported(f, m),
            Self::OutputIncomplete { reason, tokens } => output_incomplete(f, reason, *tokens),
            Self::ShutDown => write!(
                f,
                "orion-native has shut down because the process is exiting; it takes no new work"
            ),
            Self::RemoteUnavailable { endpoints } => write!(
                f,
                "no remote server could be reached ({}). Check that the servers are running and the \
                 URLs are right; unreachable servers are probed again in the background.",
                endpoints
                    .iter()
                    .map(|(url, e)| format!("{url}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Self::RemoteError {
                endpoint,
                status,
                message,
            } => {
                let hint = match status {
                    401 | 403 => "check the `apiKey`",
                    404 => "check the `model` name and the URL",
                    400 | 413 | 422 => "the server refused the request: check the options and input size",
                    _ => "see the server's log",
                };
                write!(f, "the server at {endpoint} answered {status}: {message} ({hint})")
            }
            Self::RemoteProtocol { endpoint, detail } => write!(
                f,
                "the server at {endpoint} sent a reply that is not the OpenAI-compatible API's: \
                 {detail}. Check that the URL points at an OpenAI-compatible server (llama.cpp's \
                 llama-server, vLLM, TEI, Ollama)."
            ),
            Self::Internal(m) => write!(f, "internal error: {m}. Please report this as a bug."),
        }
    }
}

impl std::error::Error for OrionError {}

/// `97.3 MB`, `1.2 GB`, `512 B`: sizes as people read them.
pub(crate) fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1_000_000_000 => format!("{:.1} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

pub(crate) type Result<T> = std::result::Result<T, OrionError>;

/// Characters of a caller's input a message quotes at most: enough to recognise a key,
/// a path or a role, while a 100 MB key still makes a short message.
pub(crate) const ECHO_CHARS: usize = 200;

/// `s` quoted for a message (as `{:?}` would), its first [`ECHO_CHARS`] characters
/// only, with its length when cut: `"abc"…(1048576 bytes)`.
pub(crate) fn echo(s: &str) -> String {
    match s.char_indices().nth(ECHO_CHARS) {
        None => format!("{s:?}"),
        Some((end, _)) => format!("{:?}…({} bytes)", &s[..end], s.len()),
    }
}

/// `s` as it is, or its first [`ECHO_CHARS`] characters and its length when longer.
pub(crate) fn clipped(s: &str) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(ECHO_CHARS) {
        None => s.into(),
        Some((end, _)) => format!("{}…({} bytes)", &s[..end], s.len()).into(),
    }
}

/// A message's bytes at most, once it leaves for JS. Messages quote input through
/// [`echo`]; this is the net for anything that still grows one (a long list of
/// registered keys, a remote server's error text).
pub(crate) const MAX_MESSAGE_BYTES: usize = 4096;

/// `m` cut to about [`MAX_MESSAGE_BYTES`]: its start and its end (where the advice
/// is), with how much was left out between them.
pub(crate) fn bounded_message(m: &str) -> std::borrow::Cow<'_, str> {
    if m.len() <= MAX_MESSAGE_BYTES {
        return m.into();
    }
    let mut head = MAX_MESSAGE_BYTES / 2;
    while !m.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = m.len() - MAX_MESSAGE_BYTES / 4;
    while !m.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}…({} bytes left out)…{}",
        &m[..head],
        tail - head,
        &m[tail..]
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_distinct() {
        let all = [
            OrionError::InvalidInput(String::new()),
            OrionError::InvalidOption(String::new()),
            OrionError::ModelNotFound {
                what: String::new(),
                searched: String::new(),
            },
            OrionError::DownloadRequired {
                model: String::new(),
                path: String::new(),
                url: String::new(),
                size: None,
            },
            OrionError::ModelLoadFailed(String::new()),
            OrionError::RuntimeNotFound(String::new()),
            OrionError::GpuUnavailable(String::new()),
            OrionError::EmbeddingTimeout { timeout_ms: 1 },
            OrionError::Overloaded {
                queued: 1,
                limit: 1,
            },
            OrionError::Aborted,
            OrionError::InferenceFailed(String::new()),
            OrionError::UnknownModel(String::new()),
            OrionError::ModelBusy(String::new()),
            OrionError::InsufficientMemory {
                what: String::new(),
                need: 1,
                available: 0,
            },
            OrionError::PromptTooLong {
                tokens: 2,
                context: 1,
                at_least: false,
            },
            OrionError::InputTooLong {
                index: 0,
                tokens: 1,
            },
            OrionError::SchemaUnsupported(String::new()),
            OrionError::OutputIncomplete {
                reason: "maxTokens",
                tokens: 1,
            },
            OrionError::ShutDown,
            OrionError::RemoteUnavailable { endpoints: vec![] },
            OrionError::RemoteError {
                endpoint: String::new(),
                status: 500,
                message: String::new(),
            },
            OrionError::RemoteProtocol {
                endpoint: String::new(),
                detail: String::new(),
            },
            OrionError::Internal(String::new()),
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(OrionError::code).collect();
        assert_eq!(codes.len(), all.len());
        // One failure, two messages: a path the user set failing is still RUNTIME_NOT_FOUND.
        let set = OrionError::RuntimePathFailed {
            tried: String::new(),
            set_by: "ORT_DYLIB_PATH",
        };
        assert_eq!(set.code(), "RUNTIME_NOT_FOUND");
        assert!(codes
            .iter()
            .all(|c| c.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_')));
    }

    #[test]
    fn echoed_input_and_messages_are_bounded() {
        assert_eq!(echo("demo"), "\"demo\"");
        let key = "é".repeat(1 << 20);
        let e = echo(&key);
        assert!(e.len() < 600, "{}", e.len());
        assert!(e.ends_with("…(2097152 bytes)"), "{e}");
        assert_eq!(clipped("key"), "key");
        assert!(clipped(&key).len() < 600);
        let m = format!("start {} end: do this", "x".repeat(1 << 20));
        let b = bounded_message(&m);
        assert!(b.len() <= MAX_MESSAGE_BYTES + 64, "{}", b.len());
        assert!(
            b.starts_with("start x") && b.ends_with("end: do this"),
            "{b}"
        );
        assert!(b.contains("bytes left out"));
        assert_eq!(bounded_message("short"), "short");
        let multibyte = "é".repeat(5000);
        assert!(bounded_message(&multibyte).len() <= MAX_MESSAGE_BYTES + 64);
    }

    #[test]
    fn not_found_message_names_directory_and_command() {
        let e = OrionError::ModelNotFound {
            what: "model.onnx".into(),
            searched: "/x/models/all-MiniLM-L6-v2".into(),
        };
        let m = e.to_string();
        assert!(m.contains("/x/models/all-MiniLM-L6-v2"));
        assert!(m.contains("orion-native models"));
    }

    #[test]
    fn a_runtime_path_the_user_set_is_named_and_no_reinstall_is_advised() {
        let m = OrionError::RuntimePathFailed {
            tried: "/opt/ort/libonnxruntime.so (missing)".into(),
            set_by: "ORT_DYLIB_PATH",
        }
        .to_string();
        assert!(m.contains("/opt/ort/libonnxruntime.so (missing)"), "{m}");
        assert!(m.contains("Fix ORT_DYLIB_PATH"), "{m}");
        assert!(m.contains("unset it"), "{m}");
        assert!(!m.contains("reinstall"), "{m}");
    }
}
