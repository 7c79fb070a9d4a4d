//! The LLM calls' options objects, each declared once: the struct is the TypeScript
//! interface (its doc comments, ranges and defaults included), the allowed keys and
//! their types ([`crate::js::options::read`]), and its `validate` the ranges.

use super::R;
use crate::engine::llm::GenerateParams;
use crate::js::options::{integer, ranged, Given};
use crate::llm::loader::LoaderConfig;
use napi_derive::napi;
use serde::Deserialize;
use std::time::Duration;

/// Where the messages of range errors point.
const WHAT: &str = "options";

/// Per-call options of `loadModel`.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadOptions {
    /// Rejects with code `ABORTED` when it fires, and stops this call's download (the
    /// partial file stays, and the next load resumes it). A llama.cpp load shared with
    /// other callers goes on for them.
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<Given>,
}

/// Options of `getModelLoader`. They are process-wide: every thread shares the loader,
/// and each option left out keeps the loader's current setting.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelLoaderOptions {
    /// Most models loaded at once: an integer from 1 to 64 (default 2, or
    /// `ORION_MAX_CONCURRENT_MODELS`).
    pub max_concurrent_models: Option<f64>,
    /// Most bytes the loaded models may use: an integer from 0 to 2^53 - 1; 0 removes
    /// the budget (default: no budget).
    pub budget_bytes: Option<f64>,
    /// Unload a model unused for this many milliseconds: an integer from 0 to
    /// 4294967295; 0 turns it off (default: off).
    pub idle_timeout_ms: Option<f64>,
}

impl ModelLoaderOptions {
    /// `maxConcurrentModels`' range.
    const MAX_CONCURRENT_MODELS: (u64, u64) = (1, 64);
    /// `budgetBytes`' range: JS numbers are exact integers up to 2^53 - 1.
    const BUDGET_BYTES: (u64, u64) = (0, u64::MAX >> 11);
    /// `idleTimeoutMs`' range.
    const IDLE_TIMEOUT_MS: (u64, u64) = (0, u32::MAX as u64);

    /// Each option in its range.
    pub(super) fn validate(&self) -> R<()> {
        let check = |key, n, (min, max)| integer(WHAT, key, n, min, max).map(drop);
        check(
            "maxConcurrentModels",
            self.max_concurrent_models,
            Self::MAX_CONCURRENT_MODELS,
        )?;
        check("budgetBytes", self.budget_bytes, Self::BUDGET_BYTES)?;
        check("idleTimeoutMs", self.idle_timeout_ms, Self::IDLE_TIMEOUT_MS)
    }

    /// `current` with the given (validated) options applied (0 turns the budget or the
    /// idle timeout off); `None` when no option was given.
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
                .map_or(current.budget_bytes, |b| (b > 0.0).then_some(b as u64)),
            idle_timeout: self.idle_timeout_ms.map_or(current.idle_timeout, |ms| {
                (ms > 0.0).then(|| Duration::from_millis(ms as u64))
            }),
        })
    }
}

/// Options of `ModelLoader.generate` (and of `generateStream`, without `onToken`).
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateOptions {
    /// Most tokens to generate: an integer from 1 to 1048576 (default 256).
    pub max_tokens: Option<f64>,
    /// Sampling temperature, from 0 to 100; 0 is greedy (default 0.8).
    pub temperature: Option<f64>,
    /// Sample from the k most likely tokens: an integer from 0 to 1048576; 0 keeps
    /// them all (default 40).
    pub top_k: Option<f64>,
    /// Sample from the most likely tokens whose probabilities add up to this, from 0
    /// to 1 (default 0.95).
    pub top_p: Option<f64>,
    /// Drop tokens less likely than this fraction of the most likely one's probability,
    /// from 0 to 1 (default 0.05).
    pub min_p: Option<f64>,
    /// Penalty on repeating recent tokens, from 0.01 to 10; 1 is none (default 1.1).
    pub repeat_penalty: Option<f64>,
    /// The sampler's seed: an integer from 0 to 4294967295 (default 12648430).
    pub seed: Option<f64>,
    /// Generation stops before any of these strings; they are not part of the text.
    #[napi(ts_type = "string | string[]")]
    pub stop: Option<Vec<String>>,
    /// Rejects with code `ABORTED` within a token of firing.
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<Given>,
    /// Receives the text as it is generated, on the calling thread.
    #[napi(ts_type = "(text: string) => void")]
    pub on_token: Option<Given>,
    /// Send a string prompt as is, without the model's chat template (default false).
    pub raw: Option<bool>,
    /// Start from a context kept from an earlier generation on this model when the two
    /// prompts share a beginning, evaluating only the rest (a chat's next turn), and
    /// keep this one's context for the next (default true; in-process models only).
    pub prefix_cache: Option<bool>,
}

impl GenerateOptions {
    /// `maxTokens`' and `topK`'s range.
    const TOKENS: (u64, u64) = (1, 1 << 20);
    /// `seed`'s range.
    const SEED: (u64, u64) = (0, u32::MAX as u64);

    /// Each number in its range.
    pub(super) fn validate(&self) -> R<()> {
        integer(
            WHAT,
            "maxTokens",
            self.max_tokens,
            Self::TOKENS.0,
            Self::TOKENS.1,
        )?;
        ranged(WHAT, "temperature", self.temperature, 0.0, 100.0)?;
        integer(WHAT, "topK", self.top_k, 0, Self::TOKENS.1)?;
        ranged(WHAT, "topP", self.top_p, 0.0, 1.0)?;
        ranged(WHAT, "minP", self.min_p, 0.0, 1.0)?;
        ranged(WHAT, "repeatPenalty", self.repeat_penalty, 0.01, 10.0)?;
        integer(WHAT, "seed", self.seed, Self::SEED.0, Self::SEED.1)?;
        Ok(())
    }

    /// The generation's settings: the given (validated) options, else the core's
    /// defaults (`GenerateParams::default()`, which the doc comments above state).
    pub(super) fn params(&self) -> GenerateParams {
        let d = GenerateParams::default();
        GenerateParams {
            max_tokens: self.max_tokens.map_or(d.max_tokens, |v| v as u32),
            temperature: self.temperature.map_or(d.temperature, |v| v as f32),
            top_k: self.top_k.map_or(d.top_k, |v| v as i32),
            top_p: self.top_p.map_or(d.top_p, |v| v as f32),
            min_p: self.min_p.map_or(d.min_p, |v| v as f32),
            repeat_penalty: self.repeat_penalty.map_or(d.repeat_penalty, |v| v as f32),
            seed: self.seed.map_or(d.seed, |v| v as u32),
            stop: self
                .stop
                .iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect(),
            raw: self.raw.unwrap_or(d.raw),
            prefix_cache: self.prefix_cache.unwrap_or(d.prefix_cache),
            ..d
        }
    }
}
