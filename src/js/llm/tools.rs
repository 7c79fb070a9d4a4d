//! Reading tools, the tool choice and messages' tool calls from JS: `generate`'s
//! `tools` and `toolChoice` options, an assistant message's `toolCalls`. Each is JSON
//! data (read with caps by `to_json`), checked here: tool names, schemas whose keywords
//! are all enforced (`SCHEMA_UNSUPPORTED` otherwise), arguments that are objects.

use super::R;
use crate::chat::{Tool, ToolCall, ToolChoice, Tools};
use crate::error::{echo, OrionError};
use serde_json::{Map, Value};

/// Most tools one request offers.
const MAX_TOOLS: usize = 128;

/// A tool name as `OpenAI` accepts them (and every template can write): letters, digits,
/// `_` and `-`, 1 to 64 of them.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn bad(what: &str, why: impl std::fmt::Display) -> OrionError {
    OrionError::InvalidOption(format!("{what} {why}"))
}

/// `tools`: an array of `{ name, description?, parameters? }` (`OpenAI`'s
/// `{ type: 'function', function: { ... } }` too). `parameters` defaults to an object
/// schema without properties.
pub(super) fn read_tools(v: &Value) -> R<Vec<Tool>> {
    let Value::Array(items) = v else {
        return Err(bad(
            "options.tools",
            "must be an array of { name, description, parameters }",
        ));
    };
    if items.is_empty() {
        return Err(bad(
            "options.tools",
            "must not be empty (leave it out for no tools)",
        ));
    }
    if items.len() > MAX_TOOLS {
        return Err(bad(
            "options.tools",
            format!(
                "has {} tools; at most {MAX_TOOLS} are accepted",
                items.len()
            ),
        ));
    }
    let mut tools: Vec<Tool> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("options.tools[{i}]");
        let tool = read_tool(item, &at)?;
        if tools.iter().any(|t| t.name == tool.name) {
            return Err(bad(&at, format!("repeats the name {}", echo(&tool.name))));
        }
        tools.push(tool);
    }
    Ok(tools)
}

fn read_tool(item: &Value, at: &str) -> R<Tool> {
    let mut o = item
        .as_object()
        .ok_or_else(|| bad(at, "must be an object { name, description, parameters }"))?;
    // OpenAI's shape: the function inside.
    if o.get("type").and_then(Value::as_str) == Some("function") {
        if let Some(f) = o.get("function").and_then(Value::as_object) {
            o = f;
        }
    }
    if let Some(k) = o
        .keys()
        .find(|k| !matches!(k.as_str(), "name" | "description" | "parameters" | "strict"))
    {
        return Err(bad(
            at,
            format!(
                "has an unknown key `{}`; expected name, description, parameters",
                echo(k)
            ),
        ));
    }
    let name = match o.get("name") {
        Some(Value::String(n)) if valid_name(n) => n.clone(),
        Some(Value::String(n)) => {
            return Err(bad(
                &format!("{at}.name"),
                format!(
                    "must be 1 to 64 letters, digits, `_` or `-`, got {}",
                    echo(n)
                ),
            ))
        }
        _ => return Err(bad(&format!("{at}.name"), "must be a string")),
    };
    let description = match o.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(_) => return Err(bad(&format!("{at}.description"), "must be a string")),
    };
    let parameters = match o.get("parameters") {
        None | Some(Value::Null) => {
            serde_json::json!({ "type": "object", "properties": {} })
        }
        Some(p @ Value::Object(m)) => {
            if m.get("type").is_some_and(|t| t != "object") {
                return Err(bad(
                    &format!("{at}.parameters"),
                    "must be an object schema (`type: 'object'`): arguments are an object",
                ));
            }
            crate::llm::schema::check(p).map_err(|e| match e {
                OrionError::SchemaUnsupported(why) => {
                    OrionError::SchemaUnsupported(format!("{at}.parameters: {why}"))
                }
                e => e,
            })?;
            p.clone()
        }
        Some(_) => {
            return Err(bad(
                &format!("{at}.parameters"),
                "must be a JSON schema object",
            ))
        }
    };
    Ok(Tool {
        name,
        description,
        parameters,
    })
}

/// `toolChoice`: `'auto'` (the default), `'none'`, `'required'`, `{ name }` (or
/// `OpenAI`'s `{ type: 'function', function: { name } }`), naming one of `tools`.
pub(super) fn read_choice(v: Option<&Value>, tools: &[Tool]) -> R<ToolChoice> {
    let named = |o: &Map<String, Value>| -> Option<String> {
        let o = match o.get("function").and_then(Value::as_object) {
            Some(f) => f,
            None => o,
        };
        o.get("name").and_then(Value::as_str).map(str::to_string)
    };
    let choice = match v {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => {
                return Err(bad(
                    "options.toolChoice",
                    format!(
                        "must be 'auto', 'none', 'required' or {{ name }}, got {}",
                        echo(s)
                    ),
                ))
            }
        },
        Some(Value::Object(o)) => match named(o) {
            Some(n) => ToolChoice::Named(n),
            None => return Err(bad("options.toolChoice", "must name a tool: { name }")),
        },
        Some(_) => {
            return Err(bad(
                "options.toolChoice",
                "must be 'auto', 'none', 'required' or { name }",
            ))
        }
    };
    if let ToolChoice::Named(n) = &choice {
        if !tools.iter().any(|t| &t.name == n) {
            return Err(bad(
                "options.toolChoice",
                format!("names {}, which is not one of options.tools", echo(n)),
            ));
        }
    }
    Ok(choice)
}

/// `tools`, `toolChoice` and `parallelToolCalls` together; `None` without tools (a
/// `toolChoice` alone is `INVALID_OPTION`).
pub(super) fn read(
    tools: Option<&Value>,
    choice: Option<&Value>,
    parallel: Option<bool>,
) -> R<Option<Tools>> {
    let Some(tools) = tools.filter(|t| !t.is_null()) else {
        if choice.is_some_and(|c| !c.is_null()) {
            return Err(bad("options.toolChoice", "needs options.tools"));
        }
        return Ok(None);
    };
    let tools = read_tools(tools)?;
    let choice = read_choice(choice, &tools)?;
    Ok(Some(Tools {
        tools,
        choice,
        parallel: parallel.unwrap_or(false),
    }))
}

/// An assistant message's `toolCalls`: `[{ id?, name, arguments }]` (`OpenAI`'s
/// `{ id, type, function: { name, arguments } }` too); `arguments` an object or JSON
/// text of one. Missing ids get new ones.
pub(super) fn read_calls(v: &Value, at: &str) -> R<Vec<ToolCall>> {
    let err = |why: String| OrionError::InvalidInput(format!("{at}.toolCalls{why}"));
    let Value::Array(items) = v else {
        return Err(err(" must be an array of { id, name, arguments }".into()));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let mut o = item
                .as_object()
                .ok_or_else(|| err(format!("[{i}] must be an object {{ id, name, arguments }}")))?;
            let id = o.get("id").and_then(Value::as_str).map(str::to_string);
            if let Some(f) = o.get("function").and_then(Value::as_object) {
                o = f;
            }
            let name = match o.get("name") {
                Some(Value::String(n)) if !n.is_empty() => n.clone(),
                _ => return Err(err(format!("[{i}].name must be a non-empty string"))),
            };
            let arguments = match o.get("arguments") {
                None | Some(Value::Null) => Value::Object(Map::new()),
                Some(Value::String(s)) => serde_json::from_str::<Value>(s)
                    .ok()
                    .filter(Value::is_object)
                    .ok_or_else(|| {
                        err(format!(
                            "[{i}].arguments must be an object (or JSON text of one)"
                        ))
                    })?,
                Some(a @ Value::Object(_)) => a.clone(),
                Some(_) => return Err(err(format!("[{i}].arguments must be an object"))),
            };
            Ok(ToolCall {
                id: id
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(crate::chat::tools::new_id),
                name,
                arguments,
            })
        })
        .collect()
}
