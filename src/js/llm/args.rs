//! Reading what JS passes to the LLM calls: model keys, prompts, registry descriptors,
//! the loader's options and `generate`'s options. Bad input is `INVALID_INPUT` (the
//! thing to work on) or `INVALID_OPTION` (how to work on it).

use super::sinks::{ProgressSink, TokenSink};
use super::R;
use crate::error::OrionError;
use crate::js::options::{cast_checked, describe, on_abort, to_json, Options};
use crate::llm::generate::{GenerateParams, Prompt};
use crate::llm::loader::{LoaderConfig, ProgressFn};
use crate::llm::registry::ModelDescriptor;
use napi::bindgen_prelude::*;
use napi::{Env, JsValue, ValueType};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const LOADER_OPTIONS: &[&str] = &["maxConcurrentModels", "budgetBytes", "idleTimeoutMs"];
const GENERATE_OPTIONS: &[&str] = &[
    "maxTokens",
    "temperature",
    "topK",
    "topP",
    "minP",
    "repeatPenalty",
    "seed",
    "stop",
    "signal",
    "onToken",
    "raw",
];

/// A non-empty string: a model key or id.
pub(super) fn read_key(v: &Unknown, what: &str) -> R<String> {
    if v.get_type().ok() != Some(ValueType::String) {
        return Err(OrionError::InvalidInput(format!(
            "{what} must be a string, got {}",
            describe(v)
        )));
    }
    let s: String = cast_checked(v).map_err(|e| OrionError::InvalidInput(e.reason.clone()))?;
    if s.trim().is_empty() {
        return Err(OrionError::InvalidInput(format!(
            "{what} must not be empty"
        )));
    }
    Ok(s)
}

/// A quantization level's name (checked against the levels by the caller).
pub(super) fn read_level(v: &Unknown) -> R<String> {
    if v.get_type().ok() != Some(ValueType::String) {
        return Err(OrionError::InvalidOption(format!(
            "level must be a string, got {}",
            describe(v)
        )));
    }
    cast_checked(v).map_err(|e| OrionError::InvalidOption(e.reason.clone()))
}

/// A registry descriptor for `key`, as JSON data.
pub(super) fn read_descriptor(key: &str, v: &Unknown) -> R<ModelDescriptor> {
    let value: serde_json::Value =
        to_json(v).map_err(|e| OrionError::InvalidOption(format!("descriptor: {}", e.reason)))?;
    serde_json::from_value(value)
        .map_err(|e| OrionError::InvalidOption(format!("descriptor for {key:?}: {e}")))
}

/// `onProgress`: a function, or nothing (undefined, null, left out).
pub(super) fn read_on_progress(
    env: &Env,
    cb: Option<Unknown>,
) -> R<Option<(Rc<ProgressSink>, ProgressFn)>> {
    match cb {
        Some(cb) if cb.get_type().ok() == Some(ValueType::Function) => {
            Ok(Some(ProgressSink::new(env, &cb)?))
        }
        Some(cb) if !matches!(cb.get_type(), Ok(ValueType::Undefined | ValueType::Null)) => {
            Err(OrionError::InvalidOption(format!(
                "onProgress must be a function, got {}",
                describe(&cb)
            )))
        }
        _ => Ok(None),
    }
}

/// A prompt: a non-empty string, or a non-empty array of `{ role, content }` messages.
pub(super) fn read_prompt(v: &Unknown) -> R<Prompt> {
    let bad = || {
        OrionError::InvalidInput(format!(
            "prompt must be a string or an array of {{ role, content }} messages, got {}",
            describe(v)
        ))
    };
    match v.get_type().map_err(|_| bad())? {
        ValueType::String => {
            let s: String = cast_checked(v).map_err(|_| bad())?;
            if s.is_empty() {
                return Err(OrionError::InvalidInput("prompt must not be empty".into()));
            }
            Ok(Prompt::Text(s))
        }
        ValueType::Object if v.is_array().unwrap_or(false) => {
            let arr: Object = cast_checked(v).map_err(|_| bad())?;
            let n = arr.get_array_length().map_err(|_| bad())?;
            if n == 0 {
                return Err(OrionError::InvalidInput(
                    "messages must not be empty".into(),
                ));
            }
            let mut out = Vec::with_capacity(n as usize);
            for i in 0..n {
                let m: Unknown = arr.get_element(i).map_err(|_| bad())?;
                let o = Options::parse(Some(m), "message", &["role", "content"])
                    .map_err(|e| OrionError::InvalidInput(format!("messages[{i}]: {e}")))?;
                let field = |k: &str| {
                    o.string(k).ok().flatten().ok_or_else(|| {
                        OrionError::InvalidInput(format!("messages[{i}].{k} must be a string"))
                    })
                };
                let role = field("role")?;
                if !matches!(role.as_str(), "system" | "user" | "assistant") {
                    return Err(OrionError::InvalidInput(format!(
                        "messages[{i}].role must be 'system', 'user' or 'assistant', got {role:?}"
                    )));
                }
                out.push((role, field("content")?));
            }
            Ok(Prompt::Messages(out))
        }
        _ => Err(bad()),
    }
}

/// `getModelLoader`'s options; each one left out keeps the loader's current setting.
pub(super) struct LoaderOptions {
    max_concurrent_models: Option<u64>,
    budget_bytes: Option<u64>,
    idle_timeout_ms: Option<u64>,
}

impl LoaderOptions {
    pub(super) fn read(options: Option<Unknown>) -> R<Self> {
        let o = Options::parse(options, "options", LOADER_OPTIONS)?;
        Ok(Self {
            max_concurrent_models: o.integer("maxConcurrentModels", 1, 64)?,
            budget_bytes: o.integer("budgetBytes", 0, u64::MAX >> 11)?,
            idle_timeout_ms: o.integer("idleTimeoutMs", 0, u64::from(u32::MAX))?,
        })
    }

    /// `current` with the given options applied (0 turns the budget or the idle
    /// timeout off); `None` when no option was given.
    pub(super) fn applied_to(
        &self,
        current: impl FnOnce() -> LoaderConfig,
    ) -> Option<LoaderConfig> {
        if self.max_concurrent_models.is_none()
            && self.budget_bytes.is_none()
            && self.idle_timeout_ms.is_none()
        {
            return None;
        }
        let current = current();
        Some(LoaderConfig {
            max_concurrent_models: self
                .max_concurrent_models
                .map_or(current.max_concurrent_models, |m| m as usize),
            budget_bytes: self
                .budget_bytes
                .map_or(current.budget_bytes, |b| (b > 0).then_some(b)),
            idle_timeout: self.idle_timeout_ms.map_or(current.idle_timeout, |ms| {
                (ms > 0).then(|| Duration::from_millis(ms))
            }),
        })
    }
}

/// A generation's settings, its stop flag and where its text goes.
pub(super) struct GenerateCall {
    pub(super) params: GenerateParams,
    /// Set by the caller's `signal`, by a departing `onToken` thread, or by leaving a
    /// stream early.
    pub(super) cancel: Arc<AtomicBool>,
    pub(super) tokens: Option<Arc<TokenSink>>,
}

/// `generate`'s options (and `generateStream`'s, which refuses `onToken`).
pub(super) fn generate_options(env: &Env, options: Option<Unknown>) -> R<GenerateCall> {
    let o = Options::parse(options, "options", GENERATE_OPTIONS)?;
    let d = GenerateParams::default();
    let params = GenerateParams {
        max_tokens: o
            .integer("maxTokens", 1, 1 << 20)?
            .map_or(d.max_tokens, |v| v as u32),
        temperature: o
            .ranged("temperature", 0.0, 100.0)?
            .map_or(d.temperature, |v| v as f32),
        top_k: o.integer("topK", 0, 1 << 20)?.map_or(d.top_k, |v| v as i32),
        top_p: o.ranged("topP", 0.0, 1.0)?.map_or(d.top_p, |v| v as f32),
        min_p: o.ranged("minP", 0.0, 1.0)?.map_or(d.min_p, |v| v as f32),
        repeat_penalty: o
            .ranged("repeatPenalty", 0.01, 10.0)?
            .map_or(d.repeat_penalty, |v| v as f32),
        seed: o
            .integer("seed", 0, u64::from(u32::MAX))?
            .map_or(d.seed, |v| v as u32),
        stop: o
            .strings("stop")?
            .unwrap_or_default()
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect(),
        raw: o.boolean("raw")?.unwrap_or(false),
        ..d
    };
    let cancel = Arc::new(AtomicBool::new(false));
    if let Some(signal) = o.raw("signal")? {
        let flag = cancel.clone();
        on_abort(env, signal, move || flag.store(true, Ordering::Relaxed))?;
    }
    let tokens = match o.function("onToken")? {
        None => None,
        Some(f) => Some(Arc::new(TokenSink::new(&f, cancel.clone())?)),
    };
    Ok(GenerateCall {
        params,
        cancel,
        tokens,
    })
}
