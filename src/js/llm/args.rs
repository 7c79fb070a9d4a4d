//! Reading what JS passes to the LLM calls: model keys, prompts, registry descriptors,
//! the loader's options and `generate`'s options. Bad input is `INVALID_INPUT` (the
//! thing to work on) or `INVALID_OPTION` (how to work on it).

use super::options::{
    ChatSessionOptions, CountTokensOptions, GenerateOptions, LoadOptions, ModelLoaderOptions,
    TokenizeOptions,
};
use super::sinks::{ProgressSink, TokenSink};
use super::R;
use crate::chat::Message;
use crate::engine::llm::{GenerateParams, Output, Prompt, SchemaEngine};
use crate::error::{echo, OrionError};
use crate::js::options::{
    array_length, cast_checked, describe, read, to_json, Int, Options, MAX_ARRAY_ITEMS,
};
use crate::js::stop::read_stop;
use crate::llm::loader::ProgressFn;
use crate::llm::registry::ModelDescriptor;
use napi::bindgen_prelude::*;
use napi::{Env, JsValue, ValueType};
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

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
    let value: serde_json::Value = to_json(v)
        .map_err(|e| OrionError::InvalidOption(format!("descriptor for {}: {e}", echo(key))))?;
    serde_json::from_value(value)
        .map_err(|e| OrionError::InvalidOption(format!("descriptor for {}: {e}", echo(key))))
}

/// `onProgress`: a function, or nothing (undefined, null, left out).
pub(in crate::js) fn read_on_progress(
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

/// A prompt: a non-empty string, or a non-empty array of messages.
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
            let n = array_length(&arr, "messages", MAX_ARRAY_ITEMS, OrionError::InvalidInput)?;
            if n == 0 {
                return Err(OrionError::InvalidInput(
                    "messages must not be empty".into(),
                ));
            }
            let mut out = Vec::new();
            for i in 0..n {
                let m: Unknown = arr.get_element(i).map_err(|_| bad())?;
                out.push(read_message(m, &format!("messages[{i}]"))?);
            }
            Ok(Prompt::Messages(out))
        }
        _ => Err(bad()),
    }
}

/// One message: `{ role, content }`, an assistant's with `toolCalls`, or a tool
/// result `{ role: 'tool', content, toolCallId?, name? }` (`content` any JSON data,
/// sent as its JSON text unless a string).
pub(super) fn read_message(m: Unknown, at: &str) -> R<Message> {
    let o = Options::parse(
        Some(m),
        "message",
        &["role", "content", "toolCalls", "toolCallId", "name"],
    )
    .map_err(|e| OrionError::InvalidInput(format!("{at}: {e}")))?;
    let string = |k: &str| {
        o.string(k)
            .map_err(|_| OrionError::InvalidInput(format!("{at}.{k} must be a string")))
    };
    let role = string("role")?
        .ok_or_else(|| OrionError::InvalidInput(format!("{at}.role must be a string")))?;
    if !matches!(role.as_str(), "system" | "user" | "assistant" | "tool") {
        return Err(OrionError::InvalidInput(format!(
            "{at}.role must be 'system', 'user', 'assistant' or 'tool', got {}",
            echo(&role)
        )));
    }
    let tool_calls = match o.raw("toolCalls")? {
        Some(c) if role == "assistant" => {
            let json = to_json(&c)
                .map_err(|e| OrionError::InvalidInput(format!("{at}.toolCalls: {e}")))?;
            super::tools::read_calls(&json, at)?
        }
        Some(_) => {
            return Err(OrionError::InvalidInput(format!(
                "{at}.toolCalls is for assistant messages"
            )))
        }
        None => Vec::new(),
    };
    let content = match o.raw("content")? {
        Some(c) if c.get_type().ok() == Some(ValueType::String) => {
            string("content")?.unwrap_or_default()
        }
        // A tool's result may be any JSON data; an assistant's calls need no text.
        Some(c) if role == "tool" && c.get_type().ok() != Some(ValueType::Null) => {
            let json =
                to_json(&c).map_err(|e| OrionError::InvalidInput(format!("{at}.content: {e}")))?;
            json.to_string()
        }
        None if !tool_calls.is_empty() => String::new(),
        Some(c) if !tool_calls.is_empty() && c.get_type().ok() == Some(ValueType::Null) => {
            String::new()
        }
        _ => {
            return Err(OrionError::InvalidInput(format!(
                "{at}.content must be a string"
            )))
        }
    };
    let (tool_call_id, name) = (string("toolCallId")?, string("name")?);
    if role != "tool" && (tool_call_id.is_some() || name.is_some()) {
        return Err(OrionError::InvalidInput(format!(
            "{at}: toolCallId and name are for tool messages"
        )));
    }
    Ok(Message {
        role,
        content,
        tool_calls,
        tool_call_id,
        name,
    })
}

/// `createChatSession`'s options: the system message and whether context shifts.
pub(super) fn session_options(options: Option<Unknown>) -> R<(Option<String>, bool)> {
    let (o, _): (ChatSessionOptions, _) = read(options, "options")?;
    Ok((o.system, o.context_shift.unwrap_or(true)))
}

/// `countTokens`'s options: whether the prompt is raw, and the tools it shows.
pub(super) fn count_options(
    options: Option<Unknown>,
) -> R<(bool, Option<Arc<crate::chat::Tools>>)> {
    let (options, o): (CountTokensOptions, _) = read(options, "options")?;
    let tools = match (&options.tools, &options.tool_choice) {
        (None, None) => None,
        _ => super::tools::read(
            json(&o, "tools")?.as_ref(),
            json(&o, "toolChoice")?.as_ref(),
            None,
        )?,
    };
    Ok((options.raw.unwrap_or(false), tools.map(Arc::new)))
}

/// The option `key` as JSON data, when given.
fn json(o: &Options<'_>, key: &str) -> R<Option<serde_json::Value>> {
    o.raw(key)?
        .map(|v| to_json(&v).map_err(|e| OrionError::InvalidOption(format!("options.{key}: {e}"))))
        .transpose()
}

/// `tokenize`'s options: whether special-token text is parsed.
pub(super) fn tokenize_options(options: Option<Unknown>) -> R<bool> {
    let (o, _): (TokenizeOptions, _) = read(options, "options")?;
    Ok(o.special.unwrap_or(false))
}

/// A string to tokenize (empty is allowed: it has no tokens).
pub(super) fn read_text(v: &Unknown) -> R<String> {
    if v.get_type().ok() != Some(ValueType::String) {
        return Err(OrionError::InvalidInput(format!(
            "text must be a string, got {}",
            describe(v)
        )));
    }
    cast_checked(v).map_err(|e| OrionError::InvalidInput(e.reason.clone()))
}

/// Token ids: an array of integers from 0 to 2^31 - 1 (each checked against the
/// model's vocabulary later).
pub(super) fn read_token_ids(v: &Unknown) -> R<Vec<u32>> {
    let bad = || {
        OrionError::InvalidInput(format!(
            "tokens must be an array of token ids (integers), got {}",
            describe(v)
        ))
    };
    if !v.is_array().unwrap_or(false) {
        return Err(bad());
    }
    let arr: Object = cast_checked(v).map_err(|_| bad())?;
    let n = array_length(&arr, "tokens", MAX_ARRAY_ITEMS, OrionError::InvalidInput)?;
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        let x: Unknown = arr.get_element(i).map_err(|_| bad())?;
        let id = (x.get_type().ok() == Some(ValueType::Number))
            .then(|| cast_checked::<f64>(&x).ok())
            .flatten()
            .filter(|f| f.fract() == 0.0 && (0.0..=f64::from(i32::MAX)).contains(f));
        match id {
            Some(f) => out.push(f as u32),
            None => {
                return Err(OrionError::InvalidInput(format!(
                    "tokens[{i}] must be a token id (an integer from 0 to 2147483647), got {}",
                    describe(&x)
                )))
            }
        }
    }
    Ok(out)
}

/// `getModelLoader`'s options, checked.
pub(super) fn loader_options(options: Option<Unknown>) -> R<ModelLoaderOptions> {
    let (o, _): (ModelLoaderOptions, _) = read(options, "options")?;
    Ok(o)
}

/// `loadModel`'s options: the stop flag its signal sets, and `gpuLayers`.
pub(super) fn load_options(
    options: Option<Unknown>,
) -> R<(Arc<AtomicBool>, crate::llm::LoadOverrides)> {
    let (options, o): (LoadOptions, _) = read(options, "options")?;
    let cancel = match options.signal.and(o.raw("signal")?) {
        Some(signal) => read_stop(signal)?.flag(),
        None => Arc::new(AtomicBool::new(false)),
    };
    Ok((
        cancel,
        crate::llm::LoadOverrides {
            gpu_layers: options.gpu_layers.map(Int::u32),
            context_size: options.context_size.map(Int::u32),
        },
    ))
}

/// A generation's settings, its stop flag and where its text goes.
pub(super) struct GenerateCall {
    pub(super) params: GenerateParams,
    /// Set by the caller's `signal`, by a departing `onToken` thread, or by leaving a
    /// stream early.
    pub(super) cancel: Arc<AtomicBool>,
    pub(super) tokens: Option<Arc<TokenSink>>,
}

/// `schemaEngine`, when named.
fn schema_engine(name: Option<&str>) -> R<Option<SchemaEngine>> {
    match name {
        None => Ok(None),
        Some("llama.cpp") => Ok(Some(SchemaEngine::LlamaCpp)),
        Some("llguidance") => Ok(Some(SchemaEngine::Llguidance)),
        Some(other) => Err(OrionError::InvalidOption(format!(
            "options.schemaEngine must be 'llama.cpp' or 'llguidance', got {other:?}"
        ))),
    }
}

/// `generate`'s options (and `generateStream`'s, which refuses `onToken`).
pub(super) fn generate_options(options: Option<Unknown>) -> R<GenerateCall> {
    let (options, o): (GenerateOptions, _) = read(options, "options")?;
    let mut params = options.params();
    params.output = match (
        options.json_schema.and(o.raw("jsonSchema")?),
        &options.grammar,
    ) {
        (Some(_), Some(_)) => {
            return Err(OrionError::InvalidOption(
                "options.jsonSchema and options.grammar are alternatives: give one".into(),
            ))
        }
        (Some(schema), None) => {
            let schema = to_json(&schema)
                .map_err(|e| OrionError::InvalidOption(format!("options.jsonSchema: {e}")))?;
            let engine = schema_engine(options.schema_engine.as_deref())?;
            crate::llm::schema::check_for(&schema, engine.unwrap_or_default())?;
            Some(Output::JsonSchema(Arc::new(schema), engine))
        }
        (None, Some(g)) if g.trim().is_empty() => {
            return Err(OrionError::InvalidOption(
                "options.grammar must not be empty".into(),
            ))
        }
        (None, Some(g)) => Some(Output::Grammar(Arc::from(g.as_str()))),
        (None, None) => None,
    };
    if options.schema_engine.is_some() && !matches!(params.output, Some(Output::JsonSchema(..))) {
        return Err(OrionError::InvalidOption(
            "options.schemaEngine goes with options.jsonSchema only (a grammar and tool calls are llama.cpp's)".into(),
        ));
    }
    let tools = match (&options.tools, &options.tool_choice) {
        (None, None) => None,
        _ => super::tools::read(
            json(&o, "tools")?.as_ref(),
            json(&o, "toolChoice")?.as_ref(),
            options.parallel_tool_calls,
        )?,
    };
    if tools.is_some() && (params.output.is_some() || params.raw) {
        return Err(OrionError::InvalidOption(
            "options.tools does not go with jsonSchema, grammar or raw: tool calls have their own grammar and need the chat template".into(),
        ));
    }
    params.tools = tools.map(Arc::new);
    let cancel = match options.signal.and(o.raw("signal")?) {
        Some(signal) => read_stop(signal)?.flag(),
        None => Arc::new(AtomicBool::new(false)),
    };
    let on_token = match options.on_token {
        Some(_) => o.function("onToken")?,
        None => None,
    };
    let tokens = match on_token {
        None => None,
        Some(f) => Some(Arc::new(TokenSink::new(
            &f,
            cancel.clone(),
            params.stop_on_abort,
        )?)),
    };
    Ok(GenerateCall {
        params,
        cancel,
        tokens,
    })
}
