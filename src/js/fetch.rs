//! `__fetchFile`: the package's model fetch (`scripts/models.js`, which is `npx
//! orion-native models`) downloads through the addon's own downloader
//! (`store::download`: resume, sha256, size and stall checks, credentials kept out of
//! messages) rather than a second HTTP client of its own. Hidden (two underscores, left
//! out of the README): an interface between the package's own files.

use super::blocking;
use super::llm::args::read_on_progress;
use super::options::{read, Int};
use super::{js_error, promise, rejected};
use crate::error::{echo, OrionError};
use crate::store::download::{Purpose, Source};
use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;
use serde::Deserialize;
use std::path::PathBuf;

/// Options of `__fetchFile` (not in index.d.ts: the function is internal).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FetchFileOptions {
    /// The file's sha256 (hex), checked before the file is moved into place.
    sha256: Option<String>,
    /// Its size in bytes: checked against the server's, and no byte past it is written.
    size: Option<Int<0, 9_007_199_254_740_991>>,
    /// The `Accept` header to send.
    accept: Option<String>,
    /// How long a silent server is waited for, in ms (default `ORION_DOWNLOAD_TIMEOUT_MS`,
    /// else 30 s).
    timeout_ms: Option<Int<1, 4_294_967_295>>,
}

/// Download `url` to the absolute path `dest` (unless it is there), resuming a `.part`
/// left by an earlier attempt. Resolves when the file is in place; rejects with
/// `DOWNLOAD_FAILED` (or `INVALID_OPTION`). `onProgress(percent)` as bytes arrive, when
/// the size is known.
#[napi(js_name = "__fetchFile", skip_typescript, catch_unwind)]
pub fn fetch_file<'e>(
    env: &'e Env,
    url: String,
    dest: String,
    options: Option<Unknown>,
    on_progress: Option<Unknown>,
) -> Result<PromiseRaw<'e, ()>> {
    let prepared = (|| -> std::result::Result<_, OrionError> {
        let (o, _): (FetchFileOptions, _) = read(options, "options")?;
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(OrionError::InvalidOption(format!(
                "url must be an http(s) URL, got {}",
                echo(&crate::net::shown(&url))
            )));
        }
        let dest = PathBuf::from(dest);
        if !dest.is_absolute() || dest.file_name().is_none() {
            return Err(OrionError::InvalidOption(format!(
                "dest must be an absolute file path, got {}",
                echo(&dest.display().to_string())
            )));
        }
        if let Some(h) = &o.sha256 {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(OrionError::InvalidOption(format!(
                    "sha256 must be 64 hex digits, got {}",
                    echo(h)
                )));
            }
        }
        Ok((o, dest, read_on_progress(env, on_progress)?))
    })();
    let (o, dest, sink) = match prepared {
        Ok(p) => p,
        Err(e) => return rejected(env, e),
    };
    let (js_sink, progress) = match sink {
        Some((s, p)) => (Some(s), Some(p)),
        None => (None, None),
    };
    let work = move || {
        let src = Source {
            url: &url,
            sha256: o.sha256.as_deref(),
            size: o.size.map(Int::get),
            purpose: Purpose::File,
            accept: o.accept.as_deref(),
            timeout: o.timeout_ms.map(Int::millis),
        };
        let mut last = None;
        let mut report = |done: u64, total: Option<u64>| {
            if let (Some(p), Some(total)) = (&progress, total) {
                let pct = (done.min(total) * 100 / total.max(1)) as u32;
                if last != Some(pct) {
                    last = Some(pct);
                    p(pct);
                }
            }
        };
        crate::store::download::fetch(&src, &dest, &mut report, &crate::lifecycle::is_shut_down)
    };
    promise(env, blocking(work), move |env, ()| {
        if let Some(s) = js_sink {
            s.deliver(env, 100);
        }
        Ok(())
    })
    .map_err(|e| js_error(env, &OrionError::Internal(e.reason.clone())))
}
