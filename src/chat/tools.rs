//! Each chat-template family's tool-call syntax, after llama.cpp's `common/chat.cpp`:
//! which family a template belongs to, the GBNF grammar (and the lazy triggers) that
//! make a call well formed, the instruction for templates that know nothing of tools,
//! how calls are read back out of an answer, and how much of a streamed answer is surely
//! text rather than the start of a call.
//!
//! Everything here reads model output, which is arbitrary text: nothing panics on it,
//! and what cannot be read as a call stays content.

use super::{Tool, ToolCall, ToolChoice, Tools};
use serde_json::{Map, Value};

/// A tool result's header in Llama 3.1/3.2/3.3 templates (and only there).
const LLAMA3_MARKER: &str = "<|start_header_id|>ipython<|end_header_id|>";
const PYTHON_TAG: &str = "<|python_tag|>";
const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const FUNCTION_EQ: &str = "<function=";
const FUNCTION_NAME: &str = "<function name=";
const FUNCTION_CLOSE: &str = "</function>";
const MISTRAL_OPEN: &str = "[TOOL_CALLS]";
/// Mistral Small 3.2's form, `[TOOL_CALLS]name[ARGS]{...}` (read, never generated here).
const MISTRAL_ARGS: &str = "[ARGS]";

/// The whitespace llama.cpp's schema grammars allow between JSON tokens (its `space`
/// rule), as GBNF and as a regex: a trigger must match only text the grammar accepts,
/// since llama.cpp feeds the grammar the matched text and fails on text it refuses.
const SPACE_GBNF: &str = r#"| " " | "\n"{1,2} [ \t]{0,20}"#;
const SPACE_RE: &str = r"(?: |\n{1,2}[ \t]{0,20})?";

/// Names of the rules added around the converted call grammar; the conversion never
/// makes rules with this prefix (checked: a clash is an error, not a broken grammar).
const RULE_PREFIX: &str = "orion-";
const CALL_RULE: &str = "orion-call";

/// A family of tool-call syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// `<tool_call>\n{"name": .., "arguments": {..}}\n</tool_call>` (Qwen2.5, Qwen3, `QwQ`,
    /// Hermes 2 Pro / 3, SmolLM3): any template whose text contains `<tool_call>`.
    Hermes,
    /// `{"name": .., "parameters": {..}}` as the whole answer, one call (Llama 3.1/3.2/3.3):
    /// template contains `<|start_header_id|>ipython<|end_header_id|>`.
    Llama3,
    /// `[TOOL_CALLS][{"name": .., "arguments": {..}, "id": "abcDEF123"}]` (Mistral Nemo,
    /// Mistral 7B v0.3, Mistral Small): template contains `[TOOL_CALLS]`.
    Mistral,
    /// Templates without tool support (`SmolLM2`, Phi-3.5, Gemma 2...): the whole answer is
    /// JSON, `{"tool_calls": [{"name", "arguments"}]}` or (toolChoice auto)
    /// `{"response": "text"}` — llama.cpp's "generic" format.
    Generic,
}

impl Format {
    /// The family of `template` (a Jinja chat template's text); `renders_tools`: whether
    /// it renders tools it is given. A template naming a family's markers but not
    /// rendering tools (`SmolLM3`'s `xml_tools`, Hermes' default template) is Generic: the
    /// model would never be told the tools in its own syntax. The order is llama.cpp's.
    pub(crate) fn detect(template: &str, renders_tools: bool) -> Self {
        if !renders_tools {
            Self::Generic
        } else if template.contains(HERMES_OPEN) {
            Self::Hermes
        } else if template.contains(LLAMA3_MARKER) {
            Self::Llama3
        } else if template.contains(MISTRAL_OPEN) {
            Self::Mistral
        } else {
            Self::Generic
        }
    }

    /// Its name (`ModelInfo.chatTemplate.toolFormat`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Hermes => "hermes",
            Self::Llama3 => "llama3",
            Self::Mistral => "mistral",
            Self::Generic => "generic",
        }
    }
}

/// How sampling is constrained for a request with tools.
pub(crate) struct Constraint {
    /// A GBNF grammar (llama.cpp's format) whose start rule is `root`.
    pub(crate) gbnf: String,
    /// When Some: the grammar applies only from the first match onward (llama.cpp's lazy
    /// grammar, `llama_sampler_init_grammar_lazy_patterns`).
    pub(crate) lazy: Option<Trigger>,
}

/// What starts a lazy grammar.
pub(crate) struct Trigger {
    /// Regexes matched against the whole generated text so far, each
    /// `^[\s\S]*?(OPENING)[\s\S]*`: the grammar is fed from group 1's start, which is
    /// where `root` begins.
    pub(crate) patterns: Vec<String>,
    /// Token texts whose token triggers it (a special token such as `[TOOL_CALLS]`); the
    /// caller ignores texts that are not one token.
    pub(crate) tokens: Vec<String>,
}

/// The constraint for `tools` in `format`; None when the choice is `None` or there are
/// no tools. `to_gbnf` converts a JSON schema, given as JSON text (so that its key order,
/// which is the generated text's key order, survives: `name` before `arguments`), to a
/// GBNF grammar whose start rule is `root` (llama.cpp's `json_schema_to_grammar`).
/// Err(message) for a tool named in `ToolChoice::Named` that is not among the tools, or a
/// conversion failure.
///
/// Auto is lazy (text until a call opens, then the grammar), except for Generic, where
/// the whole answer is JSON; Required and Named apply the grammar from the first token.
pub(crate) fn constraint(
    format: Format,
    tools: &Tools,
    to_gbnf: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Option<Constraint>, String> {
    if tools.choice == ToolChoice::None || tools.tools.is_empty() {
        return Ok(None);
    }
    let offered: Vec<&Tool> = match &tools.choice {
        ToolChoice::Named(name) => {
            let tool = tools
                .tools
                .iter()
                .find(|t| &t.name == name)
                .ok_or_else(|| {
                    format!("toolChoice names the tool `{name}`, which is not among the tools")
                })?;
            vec![tool]
        }
        _ => tools.tools.iter().collect(),
    };
    let forced = tools.choice != ToolChoice::Auto;
    let calls = any_of(offered.iter().map(|t| call_schema(format, t)).collect());
    let convert = |schema: &str| {
        to_gbnf(schema).map_err(|e| format!("the tools' schemas could not be made a grammar: {e}"))
    };
    if format == Format::Generic {
        let gbnf = convert(&generic_schema(&calls, forced, tools.parallel))?;
        if !single_root(&gbnf) {
            return Err("the tools' grammar has no single `root` rule".into());
        }
        return Ok(Some(Constraint { gbnf, lazy: None }));
    }
    let gbnf = wrap(format, &convert(&calls)?, forced, tools.parallel)?;
    let lazy = (!forced).then(|| trigger(format, &offered));
    Ok(Some(Constraint { gbnf, lazy }))
}

/// The JSON schema (as text, keys in the order the model writes them) of one call of
/// `tool` in `format`.
fn call_schema(format: Format, tool: &Tool) -> String {
    let name = json_string(&tool.name);
    // A tool without a usable schema still takes an object (a call's arguments always are).
    let parameters = match &tool.parameters {
        Value::Object(o) if !o.is_empty() => tool.parameters.to_string(),
        _ => r#"{"type":"object"}"#.to_owned(),
    };
    let (key, id) = match format {
        Format::Llama3 => ("parameters", ""),
        Format::Mistral => (
            "arguments",
            r#","id":{"type":"string","pattern":"^[a-zA-Z0-9]{9}$"}"#,
        ),
        Format::Hermes | Format::Generic => ("arguments", ""),
    };
    let required = if id.is_empty() {
        format!(r#"["name","{key}"]"#)
    } else {
        format!(r#"["name","{key}","id"]"#)
    };
    format!(
        r#"{{"type":"object","properties":{{"name":{{"const":{name}}},"{key}":{parameters}{id}}},"required":{required},"additionalProperties":false}}"#
    )
}

/// One schema accepting any of `schemas`.
fn any_of(schemas: Vec<String>) -> String {
    if schemas.len() == 1 {
        schemas.into_iter().next().unwrap_or_default()
    } else {
        format!(r#"{{"anyOf":[{}]}}"#, schemas.join(","))
    }
}

/// The whole answer's schema in the Generic format: calls (one unless `parallel`), or
/// (not `forced`) a reply.
fn generic_schema(calls: &str, forced: bool, parallel: bool) -> String {
    let most = if parallel { "" } else { r#","maxItems":1"# };
    let tool_calls = format!(
        r#"{{"type":"object","properties":{{"tool_calls":{{"type":"array","items":{calls},"minItems":1{most}}}}},"required":["tool_calls"],"additionalProperties":false}}"#
    );
    if forced {
        tool_calls
    } else {
        let response = r#"{"type":"object","properties":{"response":{"type":"string"}},"required":["response"],"additionalProperties":false}"#;
        format!(r#"{{"anyOf":[{tool_calls},{response}]}}"#)
    }
}

/// The converted call grammar `converted` (start rule `root`) inside `format`'s syntax:
/// its `root` renamed [`CALL_RULE`], and a new `root` around it: one call, or any
/// number when `parallel`.
fn wrap(format: Format, converted: &str, forced: bool, parallel: bool) -> Result<String, String> {
    if !single_root(converted) {
        return Err("the tools' grammar has no single `root` rule".into());
    }
    if rule_names(converted)
        .iter()
        .any(|n| n.starts_with(RULE_PREFIX))
    {
        return Err(format!(
            "the tools' grammar has rules named `{RULE_PREFIX}...`, which are reserved"
        ));
    }
    let body = rename_rule(converted, "root", CALL_RULE);
    let root = match format {
        Format::Hermes if forced && !parallel => {
            "root ::= orion-tc\n\
             orion-tc ::= \"<tool_call>\" orion-space orion-call orion-space \"</tool_call>\""
        }
        Format::Hermes if !parallel => {
            "root ::= orion-tc | orion-call\n\
             orion-tc ::= \"<tool_call>\" orion-space orion-call orion-space \"</tool_call>\""
        }
        Format::Mistral if !parallel => {
            "root ::= \"[TOOL_CALLS]\" orion-space \"[\" orion-space orion-call orion-space \"]\""
        }
        Format::Hermes if forced => {
            "root ::= orion-tc (orion-space orion-tc)*\n\
             orion-tc ::= \"<tool_call>\" orion-space orion-call orion-space \"</tool_call>\""
        }
        // The bare object is what the lazy trigger's second opening starts.
        Format::Hermes => {
            "root ::= orion-tc (orion-space orion-tc)* | orion-call\n\
             orion-tc ::= \"<tool_call>\" orion-space orion-call orion-space \"</tool_call>\""
        }
        Format::Mistral => {
            "root ::= \"[TOOL_CALLS]\" orion-space \"[\" orion-space orion-call \
             (orion-space \",\" orion-space orion-call)* orion-space \"]\""
        }
        Format::Llama3 | Format::Generic => "root ::= orion-call",
    };
    let body = body.trim_end();
    Ok(format!("{root}\n{body}\norion-space ::= {SPACE_GBNF}\n"))
}

/// What starts the grammar in `format` when the model may also answer with text.
fn trigger(format: Format, offered: &[&Tool]) -> Trigger {
    // A bare call opens with its name: naming the tools keeps JSON that merely has a
    // `name` key (an answer about people, say) from being forced into a call.
    let names = offered
        .iter()
        .map(|t| {
            let quoted = json_string(&t.name);
            regex_escape(quoted.get(1..quoted.len() - 1).unwrap_or_default())
        })
        .collect::<Vec<_>>()
        .join("|");
    let bare = format!(r#"\{{{SPACE_RE}"name"{SPACE_RE}:{SPACE_RE}"(?:{names})""#);
    let (opening, tokens) = match format {
        Format::Hermes => (format!("<tool_call>|{bare}"), vec![HERMES_OPEN]),
        Format::Llama3 => (bare, vec![]),
        Format::Mistral | Format::Generic => (regex_escape(MISTRAL_OPEN), vec![MISTRAL_OPEN]),
    };
    Trigger {
        // The opening alone, found anywhere: llama.cpp searches its trigger buffer with
        // `std::regex_search` and feeds the grammar from group 1. A pattern spanning the
        // whole buffer (`^[\s\S]*?(...)[\s\S]*`) recurses once per character in
        // libstdc++'s matcher and overflows a thread's stack on a long answer.
        patterns: vec![format!("({opening})")],
        tokens: tokens.into_iter().map(str::to_owned).collect(),
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// `s` with the characters special in both Rust's `regex` and ECMAScript (`std::regex`,
/// which llama.cpp uses) escaped; others are left alone, as `std::regex` may refuse
/// escapes it does not know.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether `b` can be part of a GBNF rule name (llama.cpp's `is_word_char`).
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// The names of the rules `gbnf` defines (`name ::= ...` at a line's start).
fn rule_names(gbnf: &str) -> Vec<&str> {
    gbnf.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let end = line
                .bytes()
                .position(|b| !is_word_byte(b))
                .unwrap_or(line.len());
            let (name, rest) = line.split_at(end);
            (!name.is_empty() && rest.trim_start().starts_with("::=")).then_some(name)
        })
        .collect()
}

/// Whether `gbnf` defines `root` exactly once.
fn single_root(gbnf: &str) -> bool {
    rule_names(gbnf)
        .into_iter()
        .filter(|n| *n == "root")
        .count()
        == 1
}

/// `gbnf` with the rule `from` renamed `to`, its definition and every reference: whole
/// rule names only (`root-arguments` stays), nothing inside string literals, character
/// classes or comments.
fn rename_rule(gbnf: &str, from: &str, to: &str) -> String {
    let bytes = gbnf.as_bytes();
    let mut out = String::with_capacity(gbnf.len() + 64);
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        match bytes[i] {
            quote @ (b'"' | b'[') => {
                let close = if quote == b'"' { b'"' } else { b']' };
                i += 1;
                while i < bytes.len() && bytes[i] != close {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(bytes.len());
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b if is_word_byte(b) => {
                while i < bytes.len() && is_word_byte(bytes[i]) {
                    i += 1;
                }
                if gbnf.get(start..i) == Some(from) {
                    out.push_str(to);
                    continue;
                }
            }
            _ => {
                i += 1;
                // Up to the next byte that may start a token: all are ASCII, so the slice
                // ends on a char boundary.
                while i < bytes.len()
                    && !matches!(bytes[i], b'"' | b'[' | b'#' | b'\n')
                    && !is_word_byte(bytes[i])
                {
                    i += 1;
                }
            }
        }
        out.push_str(gbnf.get(start..i).unwrap_or_default());
    }
    out
}

/// Text to add to the system message for the Generic format (the tool list itself is
/// added by the renderer): the answer's shape, as the grammar enforces it. None for the
/// other formats, whose templates say it in the model's own words, and for choice None.
pub(crate) fn instruction(format: Format, choice: &ToolChoice) -> Option<String> {
    if format != Format::Generic {
        return None;
    }
    let shape = |name: &str| {
        format!(r#"{{"tool_calls": [{{"name": {name}, "arguments": {{<the arguments>}}}}]}}"#)
    };
    match choice {
        ToolChoice::None => None,
        ToolChoice::Auto => Some(format!(
            "Respond in JSON format, either with `tool_calls` (a request to call tools) or \
             with `response` (a reply to the user's request): {} or {}",
            shape("\"<a tool's name>\""),
            r#"{"response": "<your reply>"}"#
        )),
        ToolChoice::Required => Some(format!(
            "Respond in JSON format with `tool_calls`, a request to call one or more of the \
             tools: {}",
            shape("\"<a tool's name>\"")
        )),
        ToolChoice::Named(name) => Some(format!(
            "Respond in JSON format with `tool_calls`, a request to call the tool `{name}`: {}",
            shape(&json_string(name))
        )),
    }
}

/// What an answer says: its text, and its calls.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Parsed {
    pub(crate) content: String,
    pub(crate) calls: Vec<ToolCall>,
}

/// Read the calls out of a whole answer (`text` is the detokenized answer including
/// special tokens' text such as `[TOOL_CALLS]`, `<|python_tag|>`, `<tool_call>`). Calls
/// of unknown tools, or whose JSON does not parse, stay in the content; missing ids are
/// generated; for Generic, `{"response": "..."}` gives that string as content. Content
/// is the text outside the calls, trimmed. Lenient like llama.cpp's parsers: the grammar
/// constrains only what comes after a trigger, and not at all when there is no grammar.
pub(crate) fn parse(format: Format, text: &str, tools: &[Tool]) -> Parsed {
    let mut parsed = match format {
        Format::Hermes => parse_hermes(text, tools),
        Format::Llama3 => parse_llama3(text, tools),
        Format::Mistral => parse_mistral(text, tools),
        Format::Generic => parse_generic(text, tools),
    };
    let trimmed = parsed.content.trim();
    if trimmed.len() != parsed.content.len() {
        parsed.content = trimmed.to_owned();
    }
    parsed
}

/// Hermes: `<tool_call>` blocks, `<function=NAME>{..}</function>`, and bare or fenced
/// `{"name": .., "arguments": ..}` objects, anywhere in the text.
fn parse_hermes(text: &str, tools: &[Tool]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut cursor = 0;
    let mut i = 0;
    while let Some(k) = text.get(i..).and_then(|rest| rest.find(['<', '{', '`'])) {
        let at = i + k;
        if let Some((end, call)) = hermes_call_at(text, at, tools) {
            parsed
                .content
                .push_str(text.get(cursor..at).unwrap_or_default());
            parsed.calls.push(call);
            cursor = end;
            i = end;
        } else {
            i = at + 1;
        }
    }
    parsed
        .content
        .push_str(text.get(cursor..).unwrap_or_default());
    parsed
}

/// The Hermes call starting at byte `at` of `text`, and where it ends.
fn hermes_call_at(text: &str, at: usize, tools: &[Tool]) -> Option<(usize, ToolCall)> {
    let rest = text.get(at..)?;
    if rest.starts_with(HERMES_OPEN) {
        let (value, end) = read_json(text, at + HERMES_OPEN.len())?;
        let call = call_from(&value, tools)?;
        Some((after_tag(text, end, HERMES_CLOSE), call))
    } else if rest.starts_with("<function") {
        function_tag_at(text, at, tools)
    } else if let Some(fenced) = rest.strip_prefix("```") {
        // ```json\n{...}\n``` : the fences go with the call when both are there.
        let fenced = ["json", "xml"]
            .iter()
            .find_map(|lang| fenced.strip_prefix(lang))
            .unwrap_or(fenced)
            .strip_prefix('\n')?;
        let start = text.len() - fenced.trim_start_matches(is_json_space).len();
        let (end, call) = bare_call_at(text, start, tools)?;
        let close = skip_space(text, end);
        text.get(close..)?
            .starts_with("```")
            .then_some((close + 3, call))
    } else {
        bare_call_at(text, at, tools)
    }
}

/// `<function=NAME>{args}</function>` or `<function name="NAME">{args}</function>` at
/// byte `at`.
fn function_tag_at(text: &str, at: usize, tools: &[Tool]) -> Option<(usize, ToolCall)> {
    let rest = text.get(at..)?;
    let (name, after) = if let Some(r) = rest.strip_prefix(FUNCTION_EQ) {
        let close = find_name_end(r, ">")?;
        (r.get(..close)?.trim(), r.get(close + 1..)?)
    } else {
        let r = rest.strip_prefix(FUNCTION_NAME)?.strip_prefix('"')?;
        let quote = find_name_end(r, "\"")?;
        let tail = r.get(quote + 1..)?.trim_start().strip_prefix('>')?;
        (r.get(..quote)?, tail)
    };
    if name.is_empty() || name.contains('\n') {
        return None;
    }
    let (arguments, end) = read_json(text, text.len() - after.len())?;
    let mut object = Map::new();
    object.insert("name".into(), Value::String(name.to_owned()));
    object.insert("arguments".into(), arguments);
    let call = call_from(&Value::Object(object), tools)?;
    Some((after_tag(text, end, FUNCTION_CLOSE), call))
}

/// Longest tool name read from a tag: the search for its end stops there, so that text
/// full of openings that never close costs linear time, not quadratic.
const MAX_NAME: usize = 256;

/// Where `end` (the end of a name) is in `text`, within [`MAX_NAME`] bytes.
fn find_name_end(text: &str, end: &str) -> Option<usize> {
    let limit = text.len().min(MAX_NAME + end.len());
    // `find` on the bytes: the limit need not be a char boundary.
    text.as_bytes()
        .get(..limit)?
        .windows(end.len())
        .position(|w| w == end.as_bytes())
}

/// A bare call object at byte `at` (after the opening `{"name": "` check, which keeps
/// JSON parsing off every brace of the text).
fn bare_call_at(text: &str, at: usize, tools: &[Tool]) -> Option<(usize, ToolCall)> {
    let rest = text.get(at..)?;
    if opening(rest, BARE) != Match::Full && opening(rest, TYPED) != Match::Full {
        return None;
    }
    let (value, end) = read_json(text, at)?;
    Some((end, call_from(&value, tools)?))
}

/// Llama 3: one call object (`"parameters"`, or `"arguments"`), perhaps after
/// `<|python_tag|>`; the first valid one is the call, the rest is content.
fn parse_llama3(text: &str, tools: &[Tool]) -> Parsed {
    let mut i = 0;
    while let Some(k) = text.get(i..).and_then(|rest| rest.find('{')) {
        let at = i + k;
        if let Some((end, call)) = bare_call_at(text, at, tools) {
            let before = text.get(..at).unwrap_or_default().trim_end();
            let before = before.strip_suffix(PYTHON_TAG).unwrap_or(before);
            let after = text.get(end..).unwrap_or_default();
            return Parsed {
                content: format!("{before}{after}"),
                calls: vec![call],
            };
        }
        i = at + 1;
    }
    Parsed {
        content: text.to_owned(),
        calls: Vec::new(),
    }
}

/// Mistral: `[TOOL_CALLS]` and a JSON array of calls (or one object, or Mistral Small
/// 3.2's `name[ARGS]{..}`); text before and after is content.
fn parse_mistral(text: &str, tools: &[Tool]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut cursor = 0;
    let mut i = 0;
    while let Some(k) = text.get(i..).and_then(|rest| rest.find(MISTRAL_OPEN)) {
        let at = i + k;
        let after = at + MISTRAL_OPEN.len();
        if let Some((end, calls, rejected)) = mistral_calls_at(text, after, tools) {
            parsed
                .content
                .push_str(text.get(cursor..at).unwrap_or_default());
            for json in rejected {
                parsed.content.push_str(&json);
            }
            parsed.calls.extend(calls);
            cursor = end;
            i = end;
        } else {
            i = after;
        }
    }
    parsed
        .content
        .push_str(text.get(cursor..).unwrap_or_default());
    parsed
}

/// The calls after a `[TOOL_CALLS]` ending at byte `at`: where they end, the calls, and
/// the JSON text of the elements that are not calls. None when there is no call at all.
fn mistral_calls_at(
    text: &str,
    at: usize,
    tools: &[Tool],
) -> Option<(usize, Vec<ToolCall>, Vec<String>)> {
    if let Some((value, end)) = read_json(text, at) {
        let items = match value {
            Value::Array(items) => items,
            object @ Value::Object(_) => vec![object],
            _ => return None,
        };
        let (calls, rejected) = split_calls(items, tools);
        return (!calls.is_empty()).then_some((end, calls, rejected));
    }
    let rest = text.get(at..)?;
    let k = find_name_end(rest, MISTRAL_ARGS)?;
    let name = rest.get(..k)?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let (arguments, end) = read_json(text, at + k + MISTRAL_ARGS.len())?;
    let mut object = Map::new();
    object.insert("name".into(), Value::String(name.to_owned()));
    object.insert("arguments".into(), arguments);
    let call = call_from(&Value::Object(object), tools)?;
    Some((end, vec![call], Vec::new()))
}

/// Generic: the whole answer is one JSON object, `{"tool_calls": [..]}`,
/// `{"tool_call": {..}}` or `{"response": ".."}`; anything else is content as it is.
fn parse_generic(text: &str, tools: &[Tool]) -> Parsed {
    let raw = || Parsed {
        content: text.to_owned(),
        calls: Vec::new(),
    };
    let body = unfence(text.trim());
    let object = match read_json(body, 0) {
        Some((Value::Object(object), end))
            if body.get(end..).is_some_and(|r| r.trim().is_empty()) =>
        {
            object
        }
        _ => return raw(),
    };
    let items = match (object.get("tool_calls"), object.get("tool_call")) {
        (Some(Value::Array(items)), _) => items.clone(),
        (Some(one @ Value::Object(_)), _) | (_, Some(one @ Value::Object(_))) => vec![one.clone()],
        _ => Vec::new(),
    };
    let (calls, rejected) = split_calls(items, tools);
    let reply = match object.get("response").or_else(|| object.get("content")) {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(other) => Some(other.to_string()),
    };
    if calls.is_empty() && reply.is_none() {
        return raw();
    }
    let content = reply
        .into_iter()
        .chain(rejected)
        .collect::<Vec<_>>()
        .join("\n");
    Parsed { content, calls }
}

/// `text` without a Markdown code fence around it (```json ... ```), if it has one.
fn unfence(text: &str) -> &str {
    let Some(inner) = text.strip_prefix("```").and_then(|t| t.strip_suffix("```")) else {
        return text;
    };
    let inner = inner.strip_prefix("json").unwrap_or(inner);
    if inner.starts_with(is_json_space) {
        inner.trim()
    } else {
        text
    }
}

/// `items` as calls, and the JSON text of those that are not.
fn split_calls(items: Vec<Value>, tools: &[Tool]) -> (Vec<ToolCall>, Vec<String>) {
    let mut calls = Vec::new();
    let mut rejected = Vec::new();
    for item in items {
        match call_from(&item, tools) {
            Some(call) => calls.push(call),
            None => rejected.push(item.to_string()),
        }
    }
    (calls, rejected)
}

/// `value` as a call: an object with the name of one of `tools` and arguments that are
/// an object (or a JSON string of one; missing arguments are none). Also the `OpenAI`
/// shape `{"type": "function", "function": {..}, "id": ..}`.
fn call_from(value: &Value, tools: &[Tool]) -> Option<ToolCall> {
    let outer = value.as_object()?;
    let object = if outer.contains_key("name") {
        outer
    } else {
        outer.get("function")?.as_object()?
    };
    let name = object.get("name")?.as_str()?;
    if !tools.iter().any(|t| t.name == name) {
        return None;
    }
    let arguments = match object.get("arguments").or_else(|| object.get("parameters")) {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(a @ Value::Object(_)) => a.clone(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(a @ Value::Object(_)) => a,
            _ => return None,
        },
        Some(_) => return None,
    };
    // Only ids every template accepts are kept (Mistral's demand 9 alphanumerics).
    let id = match outer
        .get("id")
        .or_else(|| object.get("id"))
        .and_then(Value::as_str)
    {
        Some(id) if id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()) => id.to_owned(),
        _ => new_id(),
    };
    Some(ToolCall {
        id,
        name: name.to_owned(),
        arguments,
    })
}

/// One JSON value at byte `at` of `text` (after whitespace), and the byte where it ends.
/// `serde_json`'s recursion limit keeps deep nesting from overflowing the stack.
fn read_json(text: &str, at: usize) -> Option<(Value, usize)> {
    let rest = text.get(at..)?;
    let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
    match values.next() {
        Some(Ok(value)) => Some((value, at + values.byte_offset())),
        _ => None,
    }
}

fn is_json_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// The first byte at or after `at` that is not JSON whitespace.
fn skip_space(text: &str, at: usize) -> usize {
    text.get(at..).map_or(at, |rest| {
        text.len() - rest.trim_start_matches(is_json_space).len()
    })
}

/// Past `tag` when it follows byte `at` (after whitespace); `at` when it does not (a
/// closing tag is optional: the answer may end, or go on, without it).
fn after_tag(text: &str, at: usize, tag: &str) -> usize {
    let next = skip_space(text, at);
    match text.get(next..) {
        Some(rest) if rest.starts_with(tag) => next + tag.len(),
        _ => at,
    }
}

/// A piece of a call's opening: literal text, or JSON whitespace (any amount).
#[derive(Clone, Copy)]
enum Piece {
    Lit(&'static str),
    Ws,
}
use Piece::{Lit, Ws};

/// `{"name": "`: a bare call object's opening.
const BARE: &[Piece] = &[Lit("{"), Ws, Lit("\"name\""), Ws, Lit(":"), Ws, Lit("\"")];
/// `{"type": "function", "name": "` (Llama 3 models write it sometimes).
const TYPED: &[Piece] = &[
    Lit("{"),
    Ws,
    Lit("\"type\""),
    Ws,
    Lit(":"),
    Ws,
    Lit("\"function\""),
    Ws,
    Lit(","),
    Ws,
    Lit("\"name\""),
    Ws,
    Lit(":"),
    Ws,
    Lit("\""),
];
const FENCED: [&[Piece]; 3] = [
    &[Lit("```json\n"), Ws, Lit("{"), Ws, Lit("\"name\"")],
    &[Lit("```xml\n"), Ws, Lit("{"), Ws, Lit("\"name\"")],
    &[Lit("```\n"), Ws, Lit("{"), Ws, Lit("\"name\"")],
];
const HERMES_OPENINGS: &[&[Piece]] = &[
    &[Lit(HERMES_OPEN)],
    &[Lit(FUNCTION_EQ)],
    &[Lit(FUNCTION_NAME)],
    BARE,
    TYPED,
    FENCED[0],
    FENCED[1],
    FENCED[2],
];
const LLAMA3_OPENINGS: &[&[Piece]] = &[&[Lit(PYTHON_TAG)], BARE, TYPED];
const MISTRAL_OPENINGS: &[&[Piece]] = &[&[Lit(MISTRAL_OPEN)]];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Match {
    /// `text` starts with the whole opening.
    Full,
    /// `text` is a prefix of the opening: it may become one.
    Partial,
    No,
}

/// Whether `text` starts with the opening `pieces`.
fn opening(text: &str, pieces: &[Piece]) -> Match {
    let mut rest = text;
    for piece in pieces {
        match piece {
            Ws => rest = rest.trim_start_matches(is_json_space),
            Lit(lit) => {
                if let Some(r) = rest.strip_prefix(lit) {
                    rest = r;
                } else if lit.starts_with(rest) {
                    return Match::Partial;
                } else {
                    return Match::No;
                }
            }
        }
    }
    Match::Full
}

/// Bytes at the start of `text` (the answer so far) that are surely content, not part of
/// a call: everything before the earliest place a call could be opening (a full opening,
/// or a suffix of `text` that is a prefix of one), looking at `from` and after only.
/// Generic: 0 (the whole answer is JSON). Always a char boundary: openings start with an
/// ASCII byte. A stream passes what it already showed as `from`: no call opens there (a
/// place that cannot open a call stays so as the answer grows), and rescanning the whole
/// answer per token made a long answer's cost grow with its square.
pub(crate) fn content_prefix_from(format: Format, text: &str, from: usize) -> usize {
    let openings = match format {
        Format::Generic => return 0,
        Format::Hermes => HERMES_OPENINGS,
        Format::Llama3 => LLAMA3_OPENINGS,
        Format::Mistral => MISTRAL_OPENINGS,
    };
    for (at, byte) in text.bytes().enumerate().skip(from) {
        if !matches!(byte, b'<' | b'{' | b'[' | b'`') {
            continue;
        }
        let rest = text.get(at..).unwrap_or_default();
        if openings.iter().any(|o| opening(rest, o) != Match::No) {
            return at;
        }
    }
    text.len()
}

/// A new call id: 9 ASCII alphanumerics (Mistral's templates demand exactly that; any
/// template accepts it).
pub(crate) fn new_id() -> String {
    (0..9).map(|_| fastrand::alphanumeric()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::cell::RefCell;

    fn content_prefix(format: Format, text: &str) -> usize {
        content_prefix_from(format, text, 0)
    }

    macro_rules! template {
        ($file:literal) => {
            include_str!(concat!("../../__tests__/fixtures/templates/", $file))
        };
    }

    fn tool(name: &str) -> Tool {
        Tool {
            name: name.into(),
            description: Some("I'm special".into()),
            parameters: json!({
                "type": "object",
                "properties": {"arg1": {"type": "integer", "description": "The arg."}},
                "required": ["arg1"]
            }),
        }
    }

    fn tools() -> Vec<Tool> {
        vec![tool("special_function"), tool("python")]
    }

    fn call(name: &str, arguments: Value) -> (String, Value) {
        (name.to_owned(), arguments)
    }

    /// The calls without their ids (generated ones are random).
    fn calls(parsed: &Parsed) -> Vec<(String, Value)> {
        parsed
            .calls
            .iter()
            .map(|c| (c.name.clone(), c.arguments.clone()))
            .collect()
    }

    fn is_id(id: &str) -> bool {
        id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric())
    }

    #[test]
    fn detects_each_family_in_real_templates() {
        let cases = [
            (template!("Qwen-Qwen2.5-7B-Instruct.jinja"), Format::Hermes),
            (template!("Qwen-Qwen3-0.6B.jinja"), Format::Hermes),
            (
                template!("NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja"),
                Format::Hermes,
            ),
            (
                template!("mistralai-Mistral-Nemo-Instruct-2407.jinja"),
                Format::Mistral,
            ),
            (
                template!("meta-llama-Llama-3.1-8B-Instruct.jinja"),
                Format::Llama3,
            ),
            (
                template!("meta-llama-Llama-3.2-3B-Instruct.jinja"),
                Format::Llama3,
            ),
            (
                template!("microsoft-Phi-3.5-mini-instruct.jinja"),
                Format::Generic,
            ),
            (template!("google-gemma-2-2b-it.jinja"), Format::Generic),
            (
                template!("HuggingFaceTB-SmolLM2-135M-Instruct.jinja"),
                Format::Generic,
            ),
        ];
        for (text, format) in cases {
            assert_eq!(Format::detect(text, format != Format::Generic), format);
            // Markers without rendered tools: the model is never told them.
            assert_eq!(Format::detect(text, false), Format::Generic);
        }
        assert_eq!(Format::Hermes.as_str(), "hermes");
        assert_eq!(Format::Llama3.as_str(), "llama3");
        assert_eq!(Format::Mistral.as_str(), "mistral");
        assert_eq!(Format::Generic.as_str(), "generic");
    }

    #[test]
    fn hermes_calls() {
        let t = tools();
        let p = parse(
            Format::Hermes,
            "<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}\n</tool_call>",
            &t,
        );
        assert_eq!(p.content, "");
        assert_eq!(calls(&p), [call("special_function", json!({"arg1": 1}))]);
        assert!(is_id(&p.calls[0].id));

        // Text before, two parallel calls, Qwen3's thinking kept as content.
        let p = parse(
            Format::Hermes,
            "<think>\nWhich?\n</think>\n\nLet me check.\n<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}\n</tool_call>\n<tool_call>\n{\"name\": \"python\", \"arguments\": {\"code\": \"print(1)\"}}\n</tool_call>",
            &t,
        );
        assert_eq!(p.content, "<think>\nWhich?\n</think>\n\nLet me check.");
        assert_eq!(
            calls(&p),
            [
                call("special_function", json!({"arg1": 1})),
                call("python", json!({"code": "print(1)"}))
            ]
        );

        // Arguments as a string; no closing tag at the end.
        let p = parse(
            Format::Hermes,
            "<tool_call>{\"name\": \"python\", \"arguments\": \"{\\\"code\\\": \\\"x\\\"}\"}",
            &t,
        );
        assert_eq!(calls(&p), [call("python", json!({"code": "x"}))]);
        assert_eq!(p.content, "");
    }

    #[test]
    fn hermes_other_shapes() {
        let t = tools();
        for text in [
            "{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}",
            "```json\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}\n```",
            "<function=special_function>{\"arg1\": 1}</function>",
            "<function name=\"special_function\">\n{\"arg1\": 1}\n</function>",
        ] {
            let p = parse(Format::Hermes, text, &t);
            assert_eq!(p.content, "", "{text}");
            assert_eq!(
                calls(&p),
                [call("special_function", json!({"arg1": 1}))],
                "{text}"
            );
        }
    }

    #[test]
    fn what_is_not_a_call_stays_content() {
        let t = tools();
        let long = format!("<function={}>{{}}</function>", "p".repeat(300));
        for text in [
            // Unknown tool.
            "<tool_call>\n{\"name\": \"unknown\", \"arguments\": {\"arg1\": 1}}\n</tool_call>",
            // Broken JSON.
            "<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}\n</tool_call>",
            // Arguments not an object.
            "<tool_call>\n{\"name\": \"special_function\", \"arguments\": [1]}\n</tool_call>",
            // JSON that merely has a name.
            "Here: {\"name\": \"Alice\", \"age\": 3}",
            "",
            "<tool_call",
            "```json\n",
            "<function=",
            // A name longer than any tool's.
            &long,
        ] {
            let p = parse(Format::Hermes, text, &t);
            assert_eq!(p.content, text.trim(), "{text}");
            assert!(p.calls.is_empty(), "{text}");
        }
        let p = parse(
            Format::Mistral,
            "[TOOL_CALLS][{\"name\": \"unknown\", \"arguments\": {}}]",
            &t,
        );
        assert!(p.calls.is_empty());
        assert_eq!(
            p.content,
            "[TOOL_CALLS][{\"name\": \"unknown\", \"arguments\": {}}]"
        );
        let p = parse(
            Format::Llama3,
            "{\"name\": \"unknown\", \"parameters\": {}}",
            &t,
        );
        assert!(p.calls.is_empty());
        let p = parse(
            Format::Generic,
            "{\"tool_calls\": [{\"name\": \"unknown\", \"arguments\": {}}]}",
            &t,
        );
        assert!(p.calls.is_empty());
        assert_eq!(
            p.content,
            "{\"tool_calls\": [{\"name\": \"unknown\", \"arguments\": {}}]}"
        );
    }

    #[test]
    fn llama3_calls() {
        let t = tools();
        for text in [
            "{\"name\": \"special_function\", \"parameters\": {\"arg1\": 1}}",
            "  {\"name\": \"special_function\", \"parameters\": {\"arg1\": 1}}\n",
            "{\"type\": \"function\", \"name\": \"special_function\", \"parameters\": {\"arg1\": 1}}",
            "<|python_tag|>{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}",
        ] {
            let p = parse(Format::Llama3, text, &t);
            assert_eq!(p.content, "", "{text}");
            assert_eq!(calls(&p), [call("special_function", json!({"arg1": 1}))], "{text}");
        }
        let p = parse(
            Format::Llama3,
            "I'll call it. {\"name\": \"special_function\", \"parameters\": {\"arg1\": 1}}",
            &t,
        );
        assert_eq!(p.content, "I'll call it.");
        assert_eq!(p.calls.len(), 1);
        // A builtin tool's Python call is not read.
        let text = "<|python_tag|>python.call(code=\"print('hey')\")";
        assert_eq!(parse(Format::Llama3, text, &t).content, text);
        assert_eq!(parse(Format::Llama3, "Hello!", &t).content, "Hello!");
    }

    #[test]
    fn mistral_calls() {
        let t = tools();
        let p = parse(
            Format::Mistral,
            "[TOOL_CALLS][{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}, \"id\": \"123456789\"}]",
            &t,
        );
        assert_eq!(p.content, "");
        assert_eq!(
            p.calls,
            [ToolCall {
                id: "123456789".into(),
                name: "special_function".into(),
                arguments: json!({"arg1": 1})
            }]
        );
        // Space after the marker, no id, a bad id, text before, two calls.
        let p = parse(
            Format::Mistral,
            "Sure. [TOOL_CALLS] [{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}, {\"name\": \"python\", \"arguments\": {\"code\": \"1\"}, \"id\": \"x\"}]",
            &t,
        );
        assert_eq!(p.content, "Sure.");
        assert_eq!(
            calls(&p),
            [
                call("special_function", json!({"arg1": 1})),
                call("python", json!({"code": "1"}))
            ]
        );
        assert!(p.calls.iter().all(|c| is_id(&c.id)));
        // Mistral Small 3.2's form.
        let p = parse(
            Format::Mistral,
            "[TOOL_CALLS]special_function[ARGS]{\"arg1\": 1}",
            &t,
        );
        assert_eq!(calls(&p), [call("special_function", json!({"arg1": 1}))]);
        // One unknown among two: it stays content as JSON.
        let p = parse(
            Format::Mistral,
            "[TOOL_CALLS][{\"name\": \"python\", \"arguments\": {}}, {\"name\": \"nope\", \"arguments\": {}}]",
            &t,
        );
        assert_eq!(calls(&p), [call("python", json!({}))]);
        assert!(p.content.contains("nope"));
        // Broken JSON.
        let text = "[TOOL_CALLS][{\"name\": \"python\", \"arguments\": {}";
        assert_eq!(parse(Format::Mistral, text, &t).content, text);
    }

    #[test]
    fn generic_answers() {
        let t = tools();
        let p = parse(
            Format::Generic,
            "{\n  \"tool_calls\": [\n    {\n      \"name\": \"special_function\",\n      \"arguments\": {\n        \"arg1\": 1\n      },\n      \"id\": \"123456789\"\n    }\n  ]\n}",
            &t,
        );
        assert_eq!(p.content, "");
        assert_eq!(p.calls.len(), 1);
        assert_eq!(p.calls[0].id, "123456789");
        assert_eq!(p.calls[0].arguments, json!({"arg1": 1}));

        let p = parse(Format::Generic, "{\"response\": \"Hello\"}", &t);
        assert_eq!(
            p,
            Parsed {
                content: "Hello".into(),
                calls: vec![]
            }
        );
        let p = parse(
            Format::Generic,
            "{\"tool_call\": {\"name\": \"python\", \"arguments\": {\"code\": \"1\"}}}",
            &t,
        );
        assert_eq!(calls(&p), [call("python", json!({"code": "1"}))]);
        let p = parse(Format::Generic, "```json\n{\"response\": \"Hi\"}\n```", &t);
        assert_eq!(p.content, "Hi");
        for text in [
            "Hello there",
            "{\"response\": \"cut",
            "{\"other\": 1}",
            "{\"response\": \"a\"} tail",
        ] {
            assert_eq!(
                parse(Format::Generic, text, &t),
                Parsed {
                    content: text.into(),
                    calls: vec![]
                }
            );
        }
    }

    #[test]
    fn parsing_arbitrary_text_never_panics() {
        let t = tools();
        let deep = "[".repeat(10_000);
        let many = "<function=x<function name=\"[TOOL_CALLS]a".repeat(20_000);
        let texts = [
            "<tool_call><tool_call>{{{{",
            "é<tool_call>\u{1F600}{\"name\"",
            "[TOOL_CALLS]",
            "[TOOL_CALLS]é[ARGS]",
            "<function=é>{",
            "<function name=\"",
            "```",
            "{\"name\": \"python\", \"arguments\": \"\\ud800\"}",
            deep.as_str(),
            // Openings that never close, many times: linear, not quadratic.
            many.as_str(),
        ];
        for format in [
            Format::Hermes,
            Format::Llama3,
            Format::Mistral,
            Format::Generic,
        ] {
            for text in texts {
                let _ = parse(format, text, &t);
                let at = content_prefix(format, text);
                assert!(text.is_char_boundary(at));
                // A stream starting from what it showed finds the same place.
                // Every start for short texts; for long ones, the middle and the end.
                let starts: Vec<usize> = if text.len() < 100 {
                    (0..=at).collect()
                } else {
                    vec![at / 2, at]
                };
                for from in starts.into_iter().filter(|&i| text.is_char_boundary(i)) {
                    assert_eq!(content_prefix_from(format, text, from), at);
                }
            }
        }
    }

    /// A stand-in for llama.cpp's converter: a grammar shaped like its output, with
    /// `root` inside a literal, a character class and a comment, and `root-` rules.
    fn fake_gbnf(schema: &str) -> Result<String, String> {
        let value: Value = serde_json::from_str(schema).map_err(|e| e.to_string())?;
        if schema.contains("\"fail\"") {
            return Err("conversion failed".into());
        }
        let alternatives = value
            .get("anyOf")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_else(|| vec![value.clone()]);
        let names: Vec<String> = alternatives
            .iter()
            .filter_map(|a| a.pointer("/properties/name/const"))
            .map(|n| format!("\"{}\"", n.to_string().replace('"', "\\\"")))
            .collect();
        Ok(format!(
            "root ::= \"{{\" space \"\\\"name\\\"\" space \":\" space root-name \",\" space root-arguments-kv \"}}\" space\n\
             root-name ::= {}\n\
             root-arguments-kv ::= \"\\\"arguments\\\"\" space \":\" space root-arguments # a root comment\n\
             root-arguments ::= \"{{\" space \"\\\"root\\\"\" space \":\" space [root] \"}}\" space\n\
             space ::= | \" \" | \"\\n\"{{1,2}} [ \\t]{{0,20}}\n",
            names.join(" | ")
        ))
    }

    fn with_choice(choice: ToolChoice) -> Tools {
        Tools {
            tools: tools(),
            choice,
            parallel: true,
        }
    }

    /// The constraint and the schemas the converter was given.
    fn constrain(
        format: Format,
        choice: ToolChoice,
    ) -> (Result<Option<Constraint>, String>, Vec<String>) {
        let seen = RefCell::new(Vec::new());
        let to_gbnf = |schema: &str| {
            seen.borrow_mut().push(schema.to_owned());
            fake_gbnf(schema)
        };
        let result = constraint(format, &with_choice(choice), &to_gbnf);
        (result, seen.into_inner())
    }

    #[test]
    fn grammars_have_one_root_and_keep_root_prefixed_rules() {
        for format in [
            Format::Hermes,
            Format::Llama3,
            Format::Mistral,
            Format::Generic,
        ] {
            for choice in [ToolChoice::Auto, ToolChoice::Required] {
                let (result, _) = constrain(format, choice.clone());
                let c = result.expect("converts").expect("a constraint");
                let names = rule_names(&c.gbnf);
                assert_eq!(
                    names.iter().filter(|n| **n == "root").count(),
                    1,
                    "{}",
                    c.gbnf
                );
                let mut unique = names.clone();
                unique.sort_unstable();
                unique.dedup();
                assert_eq!(unique.len(), names.len(), "{}", c.gbnf);
                for kept in [
                    "root-name ::=",
                    "root-arguments ::=",
                    "root-arguments-kv ::=",
                    "space root-arguments",
                ] {
                    assert!(c.gbnf.contains(kept), "{kept} in {}", c.gbnf);
                }
                assert!(c.gbnf.contains("\"\\\"root\\\"\"") && c.gbnf.contains("[root]"));
                assert!(c.gbnf.contains("# a root comment"));
                if format != Format::Generic {
                    assert!(c.gbnf.contains("orion-call ::= \"{\" space"), "{}", c.gbnf);
                    assert!(c.gbnf.contains("orion-space ::= "));
                }
                let lazy = format != Format::Generic && choice == ToolChoice::Auto;
                assert_eq!(c.lazy.is_some(), lazy, "{format:?} {choice:?}");
            }
        }
    }

    #[test]
    fn grammar_roots() {
        let root = |format, choice| {
            let c = constrain(format, choice)
                .0
                .expect("converts")
                .expect("a constraint");
            c.gbnf.lines().next().unwrap_or_default().to_owned()
        };
        assert_eq!(
            root(Format::Hermes, ToolChoice::Auto),
            "root ::= orion-tc (orion-space orion-tc)* | orion-call"
        );
        assert_eq!(
            root(Format::Hermes, ToolChoice::Required),
            "root ::= orion-tc (orion-space orion-tc)*"
        );
        assert_eq!(
            root(Format::Llama3, ToolChoice::Auto),
            "root ::= orion-call"
        );
        assert!(root(Format::Mistral, ToolChoice::Auto).starts_with("root ::= \"[TOOL_CALLS]\""));
        assert!(root(Format::Generic, ToolChoice::Auto).starts_with("root ::= \"{\""));
    }

    #[test]
    fn call_schemas_keep_name_first() {
        let (_, seen) = constrain(Format::Hermes, ToolChoice::Auto);
        let schema = &seen[0];
        assert!(schema.starts_with("{\"anyOf\":["));
        let name = schema.find("\"name\"").unwrap_or(usize::MAX);
        assert!(name < schema.find("\"arguments\"").unwrap_or(0));
        let (_, seen) = constrain(Format::Llama3, ToolChoice::Auto);
        assert!(seen[0].find("\"name\"") < seen[0].find("\"parameters\""));
        assert!(!seen[0].contains("\"arguments\""));
        let (_, seen) = constrain(Format::Mistral, ToolChoice::Auto);
        assert!(seen[0].contains(r#""id":{"type":"string","pattern":"^[a-zA-Z0-9]{9}$"}"#));
        let (_, seen) = constrain(Format::Generic, ToolChoice::Auto);
        assert!(seen[0].contains("\"tool_calls\"") && seen[0].contains("\"response\""));
        let (_, seen) = constrain(Format::Generic, ToolChoice::Required);
        assert!(seen[0].contains("\"tool_calls\"") && !seen[0].contains("\"response\""));
        for schema in seen {
            serde_json::from_str::<Value>(&schema).expect("valid JSON");
        }
    }

    #[test]
    fn choices() {
        let (result, seen) = constrain(Format::Hermes, ToolChoice::Named("python".into()));
        let c = result.expect("converts").expect("a constraint");
        assert!(c.lazy.is_none());
        assert!(c.gbnf.contains("\"\\\"python\\\"\"") && !c.gbnf.contains("special_function"));
        assert!(!seen[0].contains("special_function") && !seen[0].contains("anyOf"));

        let (result, _) = constrain(Format::Mistral, ToolChoice::Named("nope".into()));
        assert!(result.is_err());
        assert!(constrain(Format::Hermes, ToolChoice::None)
            .0
            .expect("ok")
            .is_none());
        let empty = Tools::default();
        assert!(constraint(Format::Hermes, &empty, &fake_gbnf)
            .expect("ok")
            .is_none());

        let failing = |_: &str| -> Result<String, String> { Err("no".into()) };
        assert!(constraint(Format::Hermes, &with_choice(ToolChoice::Auto), &failing).is_err());
        let clash = |_: &str| -> Result<String, String> {
            Ok("root ::= orion-call\norion-call ::= \"x\"\n".into())
        };
        assert!(constraint(Format::Llama3, &with_choice(ToolChoice::Auto), &clash).is_err());
        let rootless = |_: &str| -> Result<String, String> { Ok("call ::= \"x\"\n".into()) };
        assert!(constraint(Format::Llama3, &with_choice(ToolChoice::Auto), &rootless).is_err());
    }

    fn group_start(pattern: &str, text: &str) -> Option<usize> {
        let re = regex::Regex::new(pattern).expect("the pattern compiles");
        re.captures(text).and_then(|c| c.get(1)).map(|m| m.start())
    }

    #[test]
    fn triggers() {
        let lazy = |format| {
            constrain(format, ToolChoice::Auto)
                .0
                .expect("converts")
                .expect("a constraint")
                .lazy
                .expect("lazy")
        };
        let hermes = lazy(Format::Hermes);
        assert_eq!(hermes.tokens, ["<tool_call>"]);
        let p = &hermes.patterns[0];
        assert_eq!(group_start(p, "Let me see.\n<tool_call>\n{\"na"), Some(12));
        assert_eq!(group_start(p, "ok {\"name\": \"python\""), Some(3));
        assert_eq!(
            group_start(p, "ok {\n  \"name\": \"special_function\""),
            Some(3)
        );
        assert_eq!(group_start(p, "ok {\"name\": \"Alice\""), None);
        assert_eq!(group_start(p, "ok {\"name\": \"pyth"), None);
        assert_eq!(group_start(p, "Hello"), None);

        let llama = lazy(Format::Llama3);
        assert!(llama.tokens.is_empty());
        assert_eq!(
            group_start(&llama.patterns[0], "{\"name\": \"python\", \"para"),
            Some(0)
        );
        assert_eq!(group_start(&llama.patterns[0], "<tool_call>"), None);

        let mistral = lazy(Format::Mistral);
        assert_eq!(mistral.tokens, ["[TOOL_CALLS]"]);
        assert_eq!(
            group_start(&mistral.patterns[0], "Sure. [TOOL_CALLS] [{"),
            Some(6)
        );
        assert_eq!(group_start(&mistral.patterns[0], "[TOOL_"), None);
    }

    #[test]
    fn trigger_names_are_escaped() {
        let tools = Tools {
            tools: vec![tool("a.b+c"), tool("q\"uote")],
            choice: ToolChoice::Auto,
            parallel: true,
        };
        let c = constraint(Format::Llama3, &tools, &fake_gbnf)
            .expect("ok")
            .expect("some");
        let p = &c.lazy.expect("lazy").patterns[0];
        assert_eq!(group_start(p, "{\"name\": \"a.b+c\""), Some(0));
        assert_eq!(group_start(p, "{\"name\": \"aXbbc\""), None);
        assert_eq!(group_start(p, "{\"name\": \"q\\\"uote\""), Some(0));
    }

    #[test]
    fn instructions() {
        for format in [Format::Hermes, Format::Llama3, Format::Mistral] {
            assert!(instruction(format, &ToolChoice::Auto).is_none());
        }
        assert!(instruction(Format::Generic, &ToolChoice::None).is_none());
        let auto = instruction(Format::Generic, &ToolChoice::Auto).expect("some");
        assert!(auto.contains("tool_calls") && auto.contains("response"));
        let required = instruction(Format::Generic, &ToolChoice::Required).expect("some");
        assert!(required.contains("tool_calls") && !required.contains("\"response\""));
        let named =
            instruction(Format::Generic, &ToolChoice::Named("python".into())).expect("some");
        assert!(named.contains("{\"name\": \"python\""));
    }

    #[test]
    fn content_prefixes() {
        let h = |text| content_prefix(Format::Hermes, text);
        assert_eq!(h("Hello"), 5);
        assert_eq!(h("Hello <tool_c"), 6);
        assert_eq!(h("Hello <tool_call>\n{\"name\": \"x\"}"), 6);
        assert_eq!(h("a < b and <tool_response>"), 25);
        assert_eq!(h("x {\"a\": 1} y"), 12);
        assert_eq!(h("x {\n \"na"), 2);
        assert_eq!(h("x {"), 2);
        assert_eq!(h("code:\n```"), 6);
        assert_eq!(h("code:\n```python\nx"), 17);
        assert_eq!(h("<functional>"), 12);
        assert_eq!(h("<function=python>"), 0);

        let l = |text| content_prefix(Format::Llama3, text);
        assert_eq!(l("{"), 0);
        assert_eq!(l("{\"name\": \"python\", "), 0);
        assert_eq!(l("{\"type\": \"func"), 0);
        assert_eq!(l("Set {1, 2}."), 11);
        assert_eq!(l("<|python_tag|>"), 0);
        assert_eq!(l("Hi <|pyt"), 3);

        let m = |text| content_prefix(Format::Mistral, text);
        assert_eq!(m("Sure [TOOL_"), 5);
        assert_eq!(m("Sure [TOOL_CALLS][{"), 5);
        assert_eq!(m("[1, 2]"), 6);
        assert_eq!(m("ok ["), 3);

        assert_eq!(content_prefix(Format::Generic, "{\"response\": \"Hi\"}"), 0);
        assert_eq!(content_prefix(Format::Generic, "Hello"), 0);

        // Multibyte text: boundaries only.
        let text = "héllo wörld 😀 <tool";
        let at = h(text);
        assert!(text.is_char_boundary(at));
        assert_eq!(&text[at..], "<tool");
        assert_eq!(h("日本語"), "日本語".len());
    }

    #[test]
    fn ids() {
        for _ in 0..100 {
            assert!(is_id(&new_id()));
        }
        assert_ne!(new_id(), new_id());
    }

    #[test]
    fn one_call_unless_parallel() {
        let single = Tools {
            parallel: false,
            ..with_choice(ToolChoice::Required)
        };
        let hermes = constraint(Format::Hermes, &single, &fake_gbnf)
            .expect("ok")
            .expect("some");
        assert!(
            hermes.gbnf.starts_with("root ::= orion-tc\n"),
            "{}",
            hermes.gbnf
        );
        let mistral = constraint(Format::Mistral, &single, &fake_gbnf)
            .expect("ok")
            .expect("some");
        assert!(!mistral.gbnf.contains(")*"), "{}", mistral.gbnf);
        let seen = std::cell::RefCell::new(String::new());
        let _ = constraint(Format::Generic, &single, &|s: &str| {
            *seen.borrow_mut() = s.to_string();
            fake_gbnf(s)
        });
        let seen = seen.into_inner();
        assert!(seen.contains(r#""maxItems":1"#), "{seen}");
    }
}
