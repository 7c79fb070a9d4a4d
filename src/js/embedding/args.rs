//! Reading what JS passes to the embedding client: texts, the client's options and
//! each call's options.

use super::options::{EmbedOptions, EmbeddingClientOptions};
use crate::error::OrionError;
use crate::js::options::{array_length, cast_checked, describe, read, Int};
use crate::js::stop::read_stop;
use crate::runtime::EmbeddingRequest;
use napi::bindgen_prelude::*;
use napi::{JsValue, ValueType};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;

type R<T> = std::result::Result<T, OrionError>;

/// `getSharedEmbeddingClient`'s options: the service to ask for, and the client's
/// default timeout (from `timeoutMs`, `ORION_EMBEDDING_TIMEOUT_MS` or 30 s).
pub(super) fn client_options(
    options: Option<Unknown>,
) -> R<(EmbeddingRequest, Duration, crate::embedding::Shape)> {
    let (o, _): (EmbeddingClientOptions, _) = read(options, "options")?;
    let timeout = o.timeout()?;
    let config = o.batch_config()?;
    let precision = o.precision()?;
    let (remote, remote_dimensions) = match o.remote {
        Some(r) => {
            let (spec, dimensions) = r.into_embedding_spec("options.remote")?;
            (Some(spec), dimensions)
        }
        None if o.model.is_none() && o.model_path.is_none() => (crate::remote::from_env()?, None),
        None => (None, None),
    };
    let request = EmbeddingRequest {
        config,
        threads: o.threads.map(crate::js::options::Int::usize),
        model_path: o.model_path.map(PathBuf::from),
        model: o.model,
        remote,
        remote_dimensions,
        precision,
    };
    let shape = crate::embedding::Shape {
        input: o.input_type.map(Into::into),
        instruction: None,
        dimensions: o.dimensions.map(Int::usize),
        truncate: o.truncate,
    };
    Ok((request, timeout, shape))
}

/// One embedding call's options.
pub(in crate::js) struct CallOptions {
    pub(in crate::js) timeout: Duration,
    /// Turns `true` when the caller's `signal` aborts.
    pub(in crate::js) cancel: Option<watch::Receiver<bool>>,
    /// How the texts are written and the vectors shaped.
    pub(in crate::js) shape: crate::embedding::Shape,
}

impl CallOptions {
    /// `timeoutMs` (else `default_timeout`, the client's), `signal`, and the shape (the
    /// client's `defaults`, overridden by the call's `dimensions`, `inputType`,
    /// `instruction`).
    pub(super) fn read(
        options: Option<Unknown>,
        default_timeout: Duration,
        defaults: &crate::embedding::Shape,
    ) -> R<Self> {
        let (options, o): (EmbedOptions, _) = read(options, "options")?;
        let timeout = options
            .timeout_ms
            .map_or(default_timeout, crate::js::options::Int::millis);
        let signal = match options.signal {
            Some(_) => o.raw("signal")?,
            None => None,
        };
        let cancel = match signal {
            None => None,
            Some(s) => Some(read_stop(s)?.fired()),
        };
        let shape = crate::embedding::Shape {
            input: options.input_type.map(Into::into).or(defaults.input),
            instruction: options.instruction,
            dimensions: options
                .dimensions
                .map(crate::js::options::Int::usize)
                .or(defaults.dimensions),
            truncate: options.truncate.or(defaults.truncate),
        };
        Ok(Self {
            timeout,
            cancel,
            shape,
        })
    }
}

/// One text to embed.
pub(in crate::js) fn read_text(v: &Unknown) -> R<String> {
    if v.get_type().ok() != Some(ValueType::String) {
        return Err(OrionError::InvalidInput(format!(
            "text must be a string, got {}",
            describe(v)
        )));
    }
    // napi hands strings over as UTF-8, turning lone surrogates into U+FFFD.
    cast_checked::<String>(v).map_err(|e| OrionError::InvalidInput(e.reason.clone()))
}

/// Texts in one call at most: the largest `maxQueue`, which a batch must fit in anyway.
const MAX_TEXTS: u32 = 10_000_000;

/// An array of texts to embed.
pub(in crate::js) fn read_texts(v: &Unknown) -> R<Vec<String>> {
    if !v.is_array().unwrap_or(false) {
        return Err(OrionError::InvalidInput(format!(
            "texts must be an array of strings, got {}",
            describe(v)
        )));
    }
    let arr: Object = cast_checked(v).map_err(|e| OrionError::InvalidInput(e.reason.clone()))?;
    let len = array_length(&arr, "texts", MAX_TEXTS, OrionError::InvalidInput)?;
    (0..len)
        .map(|i| {
            let item: Unknown = arr
                .get_element(i)
                .map_err(|e| OrionError::InvalidInput(e.reason.clone()))?;
            read_text(&item).map_err(|_| {
                OrionError::InvalidInput(format!(
                    "texts[{i}] must be a string, got {}",
                    describe(&item)
                ))
            })
        })
        .collect()
}
