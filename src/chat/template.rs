//! A model's own Hugging Face chat template (`tokenizer.chat_template`), rendered with
//! `minijinja` the way Python transformers' `apply_chat_template` renders it, so that the
//! prompt is the text the model was trained on: the same whitespace rules, a
//! `json.dumps`-compatible `tojson`, `raise_exception` and `strftime_now`, and messages,
//! tool calls, tool results and tools in `OpenAI`'s shape (as `llama.cpp` passes them).
//!
//! Templates that do not render tools, tool calls or tool results (`ChatML` without tools,
//! Phi-3.5, Gemma 2) get `llama.cpp`'s polyfills (`common/minja/chat-template.hpp`): the
//! tools are listed in the system message, calls and results become JSON text in
//! assistant and user turns. Templates without a system role get the system text in the
//! first user turn.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};

use super::{Message, Tool, ToolCall};

/// The name the template is stored under in its environment (it shows in errors).
const TEMPLATE_NAME: &str = "chat_template";

/// Instructions one render may execute: far more than any real template needs for a
/// long conversation, few enough that a hostile template stops within seconds.
const FUEL: u64 = 50_000_000;

/// Nesting depth of the template's own recursion (macros, loops, includes).
const RECURSION_LIMIT: usize = 200;

/// Nesting depth `tojson` descends to: the data given to templates is shallow, a value
/// deeper than this is a template building something unbounded.
const JSON_DEPTH_LIMIT: usize = 256;

/// A context variable holding the render's time (Unix seconds) for `strftime_now`, so
/// that one render uses one instant and tests can fix it.
const NOW_VAR: &str = "__orion_now_unix_seconds";

/// Names and texts the capability probes look for in a probe render's output.
const PROBE_TOOL: &str = "orion_probe_tool_4711";
const PROBE_CALL: &str = "orion_probe_call_4711";
const PROBE_RESULT: &str = "orion_probe_result_4711";
const PROBE_ARGUMENT: &str = "orion_probe_argument_4711";
/// A probe call's id: 9 alphanumerics, as Mistral's templates demand.
const PROBE_CALL_ID: &str = "probe4711";

/// What a template renders natively, found by probe renders in [`ChatTemplate::new`].
#[derive(Clone, Copy, Debug, Default)]
struct Caps {
    tools: bool,
    tool_calls: bool,
    tool_responses: bool,
}

/// A compiled chat template with the model's BOS/EOS texts and what it renders natively.
pub(crate) struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
    caps: Caps,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compile an HF chat template. `bos`/`eos` are the model's BOS/EOS token texts
    /// (variables `bos_token`, `eos_token`). Err: a message saying why it does not compile.
    pub(crate) fn new(source: &str, bos: &str, eos: &str) -> Result<Self, String> {
        Self::with_fuel(source, bos, eos, FUEL)
    }

    /// [`new`](Self::new) with a given fuel per render (tests use less to stay fast).
    fn with_fuel(source: &str, bos: &str, eos: &str, fuel: u64) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        // Errors carry a message only: no copy of the context (the conversation) in them.
        env.set_debug(false);
        env.set_fuel(Some(fuel));
        env.set_recursion_limit(RECURSION_LIMIT);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson_filter);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, strip_generation_tags(source))
            .map_err(|err| format!("the model's chat template does not compile: {err}"))?;
        let mut template = Self {
            env,
            bos: bos.to_owned(),
            eos: eos.to_owned(),
            caps: Caps::default(),
        };
        template.caps = template.probe_caps();
        Ok(template)
    }

    /// The prompt for `messages`, with the assistant's opening after them when
    /// `add_generation_prompt`. `tools`: offered tools (None or empty: the `tools`
    /// variable is left undefined, as transformers does when none are given).
    pub(crate) fn render(
        &self,
        messages: &[Message],
        tools: Option<&[Tool]>,
        add_generation_prompt: bool,
    ) -> Result<String, String> {
        self.render_at(messages, tools, add_generation_prompt, unix_now())
    }

    /// Whether the template renders the tools it is given (a probe render with a dummy
    /// tool shows its name); when not, [`render`](Self::render) lists them in the system
    /// message.
    pub(crate) fn renders_tools(&self) -> bool {
        self.caps.tools
    }

    /// Whether the template renders assistant tool calls and tool results natively (probe
    /// renders show a dummy call's name and a dummy result's text); when not,
    /// [`render`](Self::render) turns them into JSON text turns.
    pub(crate) fn renders_tool_calls(&self) -> bool {
        self.caps.tool_calls && self.caps.tool_responses
    }

    /// [`render`](Self::render) at a given instant (Unix seconds), which sets
    /// `date_string` and `strftime_now`: tests fix it for reproducible prompts.
    fn render_at(
        &self,
        messages: &[Message],
        tools: Option<&[Tool]>,
        add_generation_prompt: bool,
        now: i64,
    ) -> Result<String, String> {
        let tools = tools.filter(|tools| !tools.is_empty());
        let prepared = self.polyfill(messages, tools);
        let native_tools = tools.filter(|_| self.caps.tools);
        match self.render_raw(&prepared, native_tools, add_generation_prompt, now) {
            Ok(prompt) => Ok(prompt),
            Err(first) => match system_into_first_user(&prepared) {
                // Templates without a system role (Gemma's 'System role not supported').
                Some(retry) => self
                    .render_raw(&retry, native_tools, add_generation_prompt, now)
                    .map_err(|err| format!("the model's chat template failed: {err}")),
                None => Err(format!("the model's chat template failed: {first}")),
            },
        }
    }

    /// One render of exactly these messages and tools, with transformers' variables.
    fn render_raw(
        &self,
        messages: &[Message],
        tools: Option<&[Tool]>,
        add_generation_prompt: bool,
        now: i64,
    ) -> Result<String, Error> {
        let mut vars: Vec<(&str, Value)> = vec![
            (
                "messages",
                messages.iter().map(message_value).collect::<Value>(),
            ),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("bos_token", Value::from(self.bos.as_str())),
            ("eos_token", Value::from(self.eos.as_str())),
            ("tools_in_user_message", Value::from(false)),
            ("date_string", Value::from(format_time("%d %b %Y", now))),
            (NOW_VAR, Value::from(now)),
        ];
        if let Some(tools) = tools {
            vars.push(("tools", tools.iter().map(tool_value).collect::<Value>()));
        }
        let context: Value = vars.into_iter().collect();
        self.env.get_template(TEMPLATE_NAME)?.render(context)
    }

    /// The messages as this template can take them: tools listed in the system message
    /// when it does not render them, calls and results as text when it does not render
    /// those, and then consecutive turns of one role merged (templates that render no tool
    /// roles usually demand strict user/assistant alternation).
    fn polyfill(&self, messages: &[Message], tools: Option<&[Tool]>) -> Vec<Message> {
        let mut out: Vec<Message> = Vec::with_capacity(messages.len() + 1);
        if let Some(tools) = tools.filter(|_| !self.caps.tools) {
            let text = tools_system_text(tools);
            match messages.first() {
                Some(first) if first.role == "system" => {}
                _ => out.push(Message::text("system", "")),
            }
            out.extend(messages.iter().cloned());
            if let Some(system) = out.first_mut() {
                system.content = join_paragraphs(&system.content, &text);
            }
        } else {
            out.extend(messages.iter().cloned());
        }
        for message in &mut out {
            if !self.caps.tool_calls && !message.tool_calls.is_empty() {
                *message = Message::text("assistant", tool_calls_text(message));
            } else if !self.caps.tool_responses && message.role == "tool" {
                *message = Message::text("user", tool_result_text(message));
            }
        }
        if self.renders_tool_calls() {
            out
        } else {
            merge_same_roles(out)
        }
    }

    /// Probe renders: which of tools, tool calls and tool results the template shows.
    fn probe_caps(&self) -> Caps {
        let user = Message::text("user", "Hey");
        let call = Message {
            role: "assistant".to_owned(),
            content: String::new(),
            tool_calls: vec![ToolCall {
                id: PROBE_CALL_ID.to_owned(),
                name: PROBE_CALL.to_owned(),
                arguments: serde_json::json!({ PROBE_ARGUMENT: "some_value" }),
            }],
            ..Message::default()
        };
        let result = Message {
            role: "tool".to_owned(),
            content: PROBE_RESULT.to_owned(),
            tool_call_id: Some(PROBE_CALL_ID.to_owned()),
            name: Some(PROBE_CALL.to_owned()),
            ..Message::default()
        };
        let tool = Tool {
            name: PROBE_TOOL.to_owned(),
            description: Some("A probe.".to_owned()),
            parameters: serde_json::json!({
                "properties": { "arg1": { "type": "string" } },
                "required": ["arg1"],
                "type": "object"
            }),
        };
        let shows = |messages: &[Message], tools: Option<&[Tool]>, needles: &[&str]| {
            self.render_raw(messages, tools, false, 0)
                .is_ok_and(|text| needles.iter().all(|needle| text.contains(needle)))
        };
        let tools = std::slice::from_ref(&tool);
        let tool_calls = shows(
            &[user.clone(), call.clone()],
            None,
            &[PROBE_CALL, PROBE_ARGUMENT],
        );
        Caps {
            tools: shows(std::slice::from_ref(&user), Some(tools), &[PROBE_TOOL]),
            tool_calls,
            // As llama.cpp: only a template that renders calls renders their results (a
            // plain ChatML template prints a `tool` turn, but was not trained on one).
            tool_responses: tool_calls && shows(&[user, call, result], None, &[PROBE_RESULT]),
        }
    }
}

/// The text listing `tools` that goes into the system message of a template that does
/// not render tools itself (`llama.cpp`'s wording); the caller adds how to call them.
pub(crate) fn tools_system_text(tools: &[Tool]) -> String {
    let list: Value = tools.iter().map(tool_value).collect();
    format!(
        "You can call any of the following tools to satisfy the user's requests: {}",
        json_text(&list, 2)
    )
}

/// `a`, a blank line, `b`; just `b` when `a` is empty.
fn join_paragraphs(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_owned()
    } else {
        format!("{a}\n\n{b}")
    }
}

/// An assistant message's calls as JSON text, for templates that do not render calls.
fn tool_calls_text(message: &Message) -> String {
    let calls: Value = message
        .tool_calls
        .iter()
        .map(|call| {
            let mut fields = vec![
                ("name", Value::from(call.name.as_str())),
                ("arguments", json_value(&call.arguments)),
            ];
            if !call.id.is_empty() {
                fields.push(("id", Value::from(call.id.as_str())));
            }
            fields.into_iter().collect::<Value>()
        })
        .collect();
    let mut fields = Vec::with_capacity(2);
    if !message.content.is_empty() {
        fields.push(("content", Value::from(message.content.as_str())));
    }
    fields.push(("tool_calls", calls));
    json_text(&fields.into_iter().collect(), 2)
}

/// A tool message as JSON text, for templates that do not render tool results.
fn tool_result_text(message: &Message) -> String {
    let mut fields = Vec::with_capacity(3);
    if let Some(name) = &message.name {
        fields.push(("tool", Value::from(name.as_str())));
    }
    fields.push(("content", Value::from(message.content.as_str())));
    if let Some(id) = &message.tool_call_id {
        fields.push(("tool_call_id", Value::from(id.as_str())));
    }
    let inner: Value = fields.into_iter().collect();
    json_text(&[("tool_response", inner)].into_iter().collect(), 2)
}

/// Consecutive text messages of one role as one message (paragraphs joined), for
/// templates that demand strict user/assistant alternation.
fn merge_same_roles(messages: Vec<Message>) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(messages.len());
    for message in messages {
        match out.last_mut() {
            Some(last)
                if last.role == message.role
                    && last.role != "tool"
                    && last.tool_calls.is_empty()
                    && message.tool_calls.is_empty() =>
            {
                last.content = join_paragraphs(&last.content, &message.content);
            }
            _ => out.push(message),
        }
    }
    out
}

/// The conversation with its leading system message's text moved to the start of the
/// first user message (a new one when there is none); None without a system message.
fn system_into_first_user(messages: &[Message]) -> Option<Vec<Message>> {
    let (system, rest) = messages.split_first()?;
    if system.role != "system" {
        return None;
    }
    let mut out = rest.to_vec();
    match out.iter_mut().find(|message| message.role == "user") {
        Some(user) => user.content = join_paragraphs(&system.content, &user.content),
        None => out.insert(0, Message::text("user", system.content.clone())),
    }
    Some(out)
}

/// A message in `OpenAI`'s shape, as `llama.cpp` gives it to templates: `tool_calls` only when
/// there are calls (templates test `'tool_calls' in message`), arguments as objects.
fn message_value(message: &Message) -> Value {
    let mut fields: Vec<(&str, Value)> = vec![
        ("role", Value::from(message.role.as_str())),
        ("content", Value::from(message.content.as_str())),
    ];
    if !message.tool_calls.is_empty() {
        let calls: Value = message.tool_calls.iter().map(tool_call_value).collect();
        fields.push(("tool_calls", calls));
    }
    if let Some(id) = &message.tool_call_id {
        fields.push(("tool_call_id", Value::from(id.as_str())));
    }
    if let Some(name) = &message.name {
        fields.push(("name", Value::from(name.as_str())));
    }
    fields.into_iter().collect()
}

/// A call as `{"id", "type": "function", "function": {"name", "arguments"}}`.
fn tool_call_value(call: &ToolCall) -> Value {
    let function: Value = [
        ("name", Value::from(call.name.as_str())),
        ("arguments", json_value(&call.arguments)),
    ]
    .into_iter()
    .collect();
    [
        ("id", Value::from(call.id.as_str())),
        ("type", Value::from("function")),
        ("function", function),
    ]
    .into_iter()
    .collect()
}

/// A tool as `{"type": "function", "function": {"name", "description"?, "parameters"}}`.
fn tool_value(tool: &Tool) -> Value {
    let mut function: Vec<(&str, Value)> = vec![("name", Value::from(tool.name.as_str()))];
    if let Some(description) = &tool.description {
        function.push(("description", Value::from(description.as_str())));
    }
    function.push(("parameters", json_value(&tool.parameters)));
    [
        ("type", Value::from("function")),
        ("function", function.into_iter().collect()),
    ]
    .into_iter()
    .collect()
}

/// JSON data as a template value, keys in `serde_json`'s order (`minijinja`'s maps keep
/// insertion order), integers as integers and other numbers as floats, as Python loads them.
fn json_value(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => items.iter().map(json_value).collect(),
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(key, value)| (key.as_str(), json_value(value)))
            .collect(),
    }
}

/// Makes `{% generation %}`/`{% endgeneration %}` (a transformers-only extension marking
/// the assistant's text, as in `SmolLM3`) plain `{% if true %}`/`{% endif %}` blocks, so
/// that the template compiles and renders what transformers renders, whitespace control
/// included.
fn strip_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let Some(end) = tag.find("%}") else {
            out.push_str(tag);
            return out;
        };
        // `{%}` ends where it starts: not a tag this reads.
        let Some(inner) = tag.get(2..end) else {
            out.push_str("{%");
            rest = &tag[2..];
            continue;
        };
        let open = inner.len() - inner.trim_start_matches(['-', '+']).len();
        let close = inner.len() - inner.trim_end_matches(['-', '+']).len();
        let replacement = if open + close <= inner.len() {
            match inner[open..inner.len() - close].trim() {
                "generation" => Some("if true"),
                "endgeneration" => Some("endif"),
                _ => None,
            }
        } else {
            None
        };
        match replacement {
            Some(word) => {
                out.push_str("{%");
                out.push_str(&inner[..open]);
                out.push(' ');
                out.push_str(word);
                out.push(' ');
                out.push_str(&inner[inner.len() - close..]);
                out.push_str("%}");
            }
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

/// `raise_exception(message)`: templates refuse a conversation with it; the render fails
/// with the message.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)`: the render's time (UTC) in a C `strftime` format.
fn strftime_now(state: &State, format: &str) -> String {
    let now = state
        .lookup(NOW_VAR)
        .and_then(|value| value.as_i64())
        .unwrap_or_else(unix_now);
    format_time(format, now)
}

/// The current time in Unix seconds (0 if the clock is before 1970).
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// A UTC instant broken down into calendar fields.
struct DateTime {
    year: i64,
    /// 1..=12
    month: usize,
    /// 1..=31
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    /// 0 = Sunday
    weekday: usize,
    /// 1..=366
    yday: i64,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl DateTime {
    /// The UTC calendar fields of Unix time `secs` (Howard Hinnant's `civil_from_days`).
    fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Self {
            year,
            month: usize::try_from(month).unwrap_or(1),
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
            weekday: usize::try_from((days + 4).rem_euclid(7)).unwrap_or(0),
            yday: days - days_from_civil(year, 1, 1) + 1,
        }
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Unix time `secs` (UTC) in a C `strftime` format, as Python's `datetime.strftime` prints
/// it in the C locale; unknown directives stay as written.
fn format_time(format: &str, secs: i64) -> String {
    let t = DateTime::from_unix(secs);
    let month = MONTHS[(t.month + 11) % 12];
    let weekday = WEEKDAYS[t.weekday % 7];
    let hour12 = if t.hour % 12 == 0 { 12 } else { t.hour % 12 };
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(directive) = chars.next() else {
            out.push('%');
            break;
        };
        // Writing to a String cannot fail.
        let _ = match directive {
            'a' => write!(out, "{}", &weekday[..3]),
            'A' => write!(out, "{weekday}"),
            'b' | 'h' => write!(out, "{}", &month[..3]),
            'B' => write!(out, "{month}"),
            'd' => write!(out, "{:02}", t.day),
            'e' => write!(out, "{:2}", t.day),
            'H' => write!(out, "{:02}", t.hour),
            'I' => write!(out, "{hour12:02}"),
            'j' => write!(out, "{:03}", t.yday),
            'm' => write!(out, "{:02}", t.month),
            'M' => write!(out, "{:02}", t.minute),
            'p' => write!(out, "{}", if t.hour < 12 { "AM" } else { "PM" }),
            'S' => write!(out, "{:02}", t.second),
            'y' => write!(out, "{:02}", t.year.rem_euclid(100)),
            'Y' => write!(out, "{}", t.year),
            'F' => write!(out, "{}-{:02}-{:02}", t.year, t.month, t.day),
            'T' => write!(out, "{:02}:{:02}:{:02}", t.hour, t.minute, t.second),
            'Z' => write!(out, "UTC"),
            'z' => write!(out, "+0000"),
            'n' => writeln!(out),
            't' => write!(out, "\t"),
            '%' => write!(out, "%"),
            other => write!(out, "%{other}"),
        };
    }
    out
}

/// How `tojson` lays JSON out: Python `json.dumps`' `indent`, `separators`,
/// `ensure_ascii` and `sort_keys`.
struct JsonStyle {
    /// None: one line; Some: a newline before each item, this string repeated per level.
    indent: Option<String>,
    item_separator: String,
    key_separator: String,
    ensure_ascii: bool,
    sort_keys: bool,
}

/// `value` as JSON text the way Python's `json.dumps(value, indent=indent)` writes it;
/// the polyfills' texts (their values are always serializable).
fn json_text(value: &Value, indent: usize) -> String {
    let mut out = String::new();
    let style = JsonStyle {
        indent: Some(" ".repeat(indent)),
        item_separator: ",".to_owned(),
        key_separator: ": ".to_owned(),
        ensure_ascii: false,
        sort_keys: false,
    };
    match write_json(&mut out, value, &style, 0) {
        Ok(()) => out,
        Err(_) => value.to_string(),
    }
}

/// The `tojson` filter as transformers defines it: `json.dumps(x, ensure_ascii=False,
/// indent=None, separators=None, sort_keys=False)`, without HTML escaping (`minijinja`'s
/// own escapes `<` and takes no `ensure_ascii`/`separators`/`sort_keys`).
#[allow(clippy::needless_pass_by_value)] // minijinja passes keyword arguments by value
fn tojson_filter(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.kind() == ValueKind::String => Some(v.to_string()),
        Some(v) => match v.as_i64() {
            Some(n) => Some(" ".repeat(usize::try_from(n).unwrap_or(0).min(64))),
            None => return Err(invalid("tojson: indent must be an integer or a string")),
        },
    };
    let (item_separator, key_separator) = match kwargs.get::<Option<Value>>("separators")? {
        Some(separators) => {
            let parts: Vec<Value> = separators.try_iter()?.collect();
            match parts.as_slice() {
                [item, key] => match (item.as_str(), key.as_str()) {
                    (Some(item), Some(key)) => (item.to_owned(), key.to_owned()),
                    _ => return Err(invalid("tojson: separators must be two strings")),
                },
                _ => return Err(invalid("tojson: separators must be two strings")),
            }
        }
        None if indent.is_some() => (",".to_owned(), ": ".to_owned()),
        None => (", ".to_owned(), ": ".to_owned()),
    };
    let style = JsonStyle {
        indent,
        item_separator,
        key_separator,
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(&mut out, value, &style, 0)?;
    Ok(Value::from_safe_string(out))
}

/// An invalid-operation error with this message.
fn invalid(message: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.to_owned())
}

/// Appends `value` as JSON in `style`; `depth` is the current nesting level.
fn write_json(
    out: &mut String,
    value: &Value,
    style: &JsonStyle,
    depth: usize,
) -> Result<(), Error> {
    if depth > JSON_DEPTH_LIMIT {
        return Err(invalid("tojson: value nested too deeply"));
    }
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number if value.is_integer() => out.push_str(&value.to_string()),
        ValueKind::Number => out.push_str(&python_float(f64::try_from(value.clone())?)),
        ValueKind::String => {
            write_json_string(out, value.as_str().unwrap_or(""), style.ensure_ascii);
        }
        ValueKind::Bytes => {
            let text = value.to_str().unwrap_or_default();
            write_json_string(out, &text, style.ensure_ascii);
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, style, depth, ('[', ']'), items.len(), |out, i| {
                write_json(out, &items[i], style, depth + 1)
            })?;
        }
        ValueKind::Map => {
            let mut entries: Vec<(String, Value)> = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((json_key(&key)?, item));
            }
            if style.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            write_container(out, style, depth, ('{', '}'), entries.len(), |out, i| {
                let (key, item) = &entries[i];
                write_json_string(out, key, style.ensure_ascii);
                out.push_str(&style.key_separator);
                write_json(out, item, style, depth + 1)
            })?;
        }
        ValueKind::Plain => write_json_string(out, &value.to_string(), style.ensure_ascii),
        _ => return Err(invalid("tojson: value is not JSON serializable")),
    }
    Ok(())
}

/// Appends an array or object of `len` items, each written by `item`, laid out as
/// `json.dumps` does (empty containers stay `[]`/`{}`).
fn write_container(
    out: &mut String,
    style: &JsonStyle,
    depth: usize,
    (open, close): (char, char),
    len: usize,
    mut item: impl FnMut(&mut String, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if len == 0 {
        out.push(close);
        return Ok(());
    }
    for i in 0..len {
        if i > 0 {
            out.push_str(&style.item_separator);
        }
        if let Some(indent) = &style.indent {
            out.push('\n');
            out.push_str(&indent.repeat(depth + 1));
        }
        item(out, i)?;
    }
    if let Some(indent) = &style.indent {
        out.push('\n');
        out.push_str(&indent.repeat(depth));
    }
    out.push(close);
    Ok(())
}

/// A map key as JSON object key text, converted as `json.dumps` converts keys.
fn json_key(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or("").to_owned()),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_owned()),
        ValueKind::None | ValueKind::Undefined => Ok("null".to_owned()),
        ValueKind::Number if key.is_integer() => Ok(key.to_string()),
        ValueKind::Number => Ok(python_float(f64::try_from(key.clone())?)),
        _ => Err(invalid(
            "tojson: keys must be str, int, float, bool or None",
        )),
    }
}

/// Appends `text` as a JSON string literal with Python's escapes (`\n`, `\"`, `\u001f`,
/// and with `ensure_ascii` every non-ASCII character as `\uXXXX`, in surrogate pairs
/// beyond the BMP).
fn write_json_string(out: &mut String, text: &str, ensure_ascii: bool) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 || (ensure_ascii && u32::from(c) > 0x7e) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A float as Python's `repr` writes it (and `json.dumps`): the shortest digits that read
/// back, `1.0` not `1`, exponents from 1e16 and below 1e-4 as `1e+16` / `1.5e-05`.
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    // `{:e}` gives the shortest round-trip digits: "-1.5e-5", "1e16", "0e0".
    let scientific = format!("{f:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i64 = exponent.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0.0");
    }
    if (-4..16).contains(&exponent) {
        let point = exponent + 1; // digits before the decimal point
        if point <= 0 {
            let zeros = "0".repeat(usize::try_from(-point).unwrap_or(0));
            return format!("{sign}0.{zeros}{digits}");
        }
        let point = usize::try_from(point).unwrap_or(0);
        if digits.len() <= point {
            let zeros = "0".repeat(point - digits.len());
            return format!("{sign}{digits}{zeros}.0");
        }
        return format!("{sign}{}.{}", &digits[..point], &digits[point..]);
    }
    let (first, rest) = digits.split_at(1);
    let fraction = if rest.is_empty() {
        String::new()
    } else {
        format!(".{rest}")
    };
    let exp_sign = if exponent < 0 { '-' } else { '+' };
    format!("{sign}{first}{fraction}e{exp_sign}{:02}", exponent.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($file:literal) => {
            include_str!(concat!("../../__tests__/fixtures/templates/", $file))
        };
    }

    const QWEN25: &str = fixture!("Qwen-Qwen2.5-7B-Instruct.jinja");
    const QWEN3: &str = fixture!("Qwen-Qwen3-0.6B.jinja");
    const MISTRAL: &str = fixture!("mistralai-Mistral-Nemo-Instruct-2407.jinja");
    const HERMES: &str = fixture!("NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja");
    const LLAMA31: &str = fixture!("meta-llama-Llama-3.1-8B-Instruct.jinja");
    const LLAMA32: &str = fixture!("meta-llama-Llama-3.2-3B-Instruct.jinja");
    const PHI35: &str = fixture!("microsoft-Phi-3.5-mini-instruct.jinja");
    const GEMMA2: &str = fixture!("google-gemma-2-2b-it.jinja");
    const SMOLLM2: &str = fixture!("HuggingFaceTB-SmolLM2-135M-Instruct.jinja");

    /// 2025-03-05 14:07:09 UTC, the instant the Python goldens were rendered at.
    const NOW: i64 = 1_741_183_629;

    /// Every fixture with its BOS/EOS texts and whether it renders tools natively.
    const FAMILIES: [(&str, &str, &str, &str, bool); 9] = [
        ("qwen2.5", QWEN25, "<|endoftext|>", "<|im_end|>", true),
        ("qwen3", QWEN3, "<|endoftext|>", "<|im_end|>", true),
        ("mistral-nemo", MISTRAL, "<s>", "</s>", true),
        ("hermes3", HERMES, "<|begin_of_text|>", "<|im_end|>", true),
        ("llama3.1", LLAMA31, "<|begin_of_text|>", "<|eot_id|>", true),
        ("llama3.2", LLAMA32, "<|begin_of_text|>", "<|eot_id|>", true),
        ("phi3.5", PHI35, "<s>", "<|endoftext|>", false),
        ("gemma2", GEMMA2, "<bos>", "<eos>", false),
        ("smollm2", SMOLLM2, "<|im_start|>", "<|im_end|>", false),
    ];

    fn template(source: &str, bos: &str, eos: &str) -> ChatTemplate {
        ChatTemplate::new(source, bos, eos).expect("template compiles")
    }

    fn family(name: &str) -> ChatTemplate {
        let (_, source, bos, eos, _) = FAMILIES.iter().find(|f| f.0 == name).expect("known family");
        template(source, bos, eos)
    }

    fn weather_tool() -> Tool {
        Tool {
            name: "get_weather".to_owned(),
            description: Some("Get the current weather in a city <b>now</b>".to_owned()),
            // Keys in alphabetical order, so the order is the same whether or not
            // serde_json's `preserve_order` is enabled in the build.
            parameters: serde_json::json!({
                "properties": {
                    "city": {"description": "The city's name, e.g. Zürich", "type": "string"},
                    "days": {"type": "integer"}
                },
                "required": ["city"],
                "type": "object"
            }),
        }
    }

    fn plain() -> Vec<Message> {
        vec![
            Message::text("system", "You are terse."),
            Message::text("user", "Hello!"),
        ]
    }

    fn round_trip() -> Vec<Message> {
        vec![
            Message::text("system", "You are a helpful assistant."),
            Message::text("user", "What's the weather in Paris?"),
            Message {
                role: "assistant".to_owned(),
                tool_calls: vec![ToolCall {
                    id: "abcDEF123".to_owned(),
                    name: "get_weather".to_owned(),
                    arguments: serde_json::json!({"city": "Paris"}),
                }],
                ..Message::default()
            },
            Message {
                role: "tool".to_owned(),
                content: r#"{"temperature": 21.5, "sky": "sunny"}"#.to_owned(),
                tool_call_id: Some("abcDEF123".to_owned()),
                name: Some("get_weather".to_owned()),
                ..Message::default()
            },
        ]
    }

    fn render_plain(t: &ChatTemplate) -> String {
        t.render_at(&plain(), None, true, NOW).expect("renders")
    }

    fn render_round_trip(t: &ChatTemplate) -> String {
        let tools = [weather_tool()];
        t.render_at(&round_trip(), Some(&tools), true, NOW)
            .expect("renders")
    }

    /// Renders `source` against an empty conversation (for filter and function tests).
    fn render_snippet(source: &str) -> Result<String, String> {
        ChatTemplate::new(source, "", "")?.render_at(&[], None, false, NOW)
    }

    // Byte-exact against Python jinja2 renders made as transformers makes them
    // (trim_blocks, lstrip_blocks, loopcontrols, json.dumps tojson).

    #[test]
    fn plain_conversations_match_python() {
        let expected = [
            (
                "qwen2.5",
                fixture!("expected/Qwen-Qwen2.5-7B-Instruct.plain.txt"),
            ),
            ("qwen3", fixture!("expected/Qwen-Qwen3-0.6B.plain.txt")),
            (
                "mistral-nemo",
                fixture!("expected/mistralai-Mistral-Nemo-Instruct-2407.plain.txt"),
            ),
            (
                "hermes3",
                fixture!("expected/NousResearch-Hermes-3-Llama-3.1-8B-tool_use.plain.txt"),
            ),
            (
                "llama3.1",
                fixture!("expected/meta-llama-Llama-3.1-8B-Instruct.plain.txt"),
            ),
            (
                "llama3.2",
                fixture!("expected/meta-llama-Llama-3.2-3B-Instruct.plain.txt"),
            ),
            (
                "phi3.5",
                fixture!("expected/microsoft-Phi-3.5-mini-instruct.plain.txt"),
            ),
            (
                "gemma2",
                fixture!("expected/google-gemma-2-2b-it.plain.txt"),
            ),
            (
                "smollm2",
                fixture!("expected/HuggingFaceTB-SmolLM2-135M-Instruct.plain.txt"),
            ),
        ];
        for (name, expected) in expected {
            assert_eq!(render_plain(&family(name)), expected, "{name}");
        }
    }

    #[test]
    fn tool_round_trips_match_python() {
        let expected = [
            (
                "qwen2.5",
                fixture!("expected/Qwen-Qwen2.5-7B-Instruct.round_trip.txt"),
            ),
            ("qwen3", fixture!("expected/Qwen-Qwen3-0.6B.round_trip.txt")),
            (
                "mistral-nemo",
                fixture!("expected/mistralai-Mistral-Nemo-Instruct-2407.round_trip.txt"),
            ),
            (
                "hermes3",
                fixture!("expected/NousResearch-Hermes-3-Llama-3.1-8B-tool_use.round_trip.txt"),
            ),
            (
                "llama3.1",
                fixture!("expected/meta-llama-Llama-3.1-8B-Instruct.round_trip.txt"),
            ),
            (
                "llama3.2",
                fixture!("expected/meta-llama-Llama-3.2-3B-Instruct.round_trip.txt"),
            ),
        ];
        for (name, expected) in expected {
            assert_eq!(render_round_trip(&family(name)), expected, "{name}");
        }
    }

    // The families' framing and tool syntax, spelled out.

    #[test]
    fn plain_framing_per_family() {
        let qwen = "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n";
        assert_eq!(render_plain(&family("qwen2.5")), qwen);
        assert_eq!(render_plain(&family("qwen3")), qwen);
        assert_eq!(render_plain(&family("smollm2")), qwen);
        assert_eq!(
            render_plain(&family("mistral-nemo")),
            "<s>[INST]You are terse.\n\nHello![/INST]"
        );
        let llama = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 05 Mar 2025\n\nYou are terse.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
        assert_eq!(render_plain(&family("llama3.1")), llama);
        assert_eq!(render_plain(&family("llama3.2")), llama);
        assert!(render_plain(&family("hermes3")).ends_with(
            "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
        ));
        assert_eq!(
            render_plain(&family("phi3.5")),
            "<|system|>\nYou are terse.<|end|>\n<|user|>\nHello!<|end|>\n<|assistant|>\n"
        );
        assert_eq!(
            render_plain(&family("gemma2")),
            "<bos><start_of_turn>user\nYou are terse.\n\nHello!<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn tools_in_each_family_section() {
        let qwen_tool = r#"<tools>
{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city <b>now</b>", "parameters": {"properties": {"city": {"description": "The city's name, e.g. Zürich", "type": "string"}, "days": {"type": "integer"}}, "required": ["city"], "type": "object"}}}
</tools>"#;
        for name in ["qwen2.5", "qwen3"] {
            assert!(
                render_round_trip(&family(name)).contains(qwen_tool),
                "{name}"
            );
        }
        let llama_tool = "{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\",\n        \"description\": \"Get the current weather in a city <b>now</b>\",\n        \"parameters\": {\n            \"properties\": {\n                \"city\": {\n                    \"description\": \"The city's name, e.g. Zürich\",\n                    \"type\": \"string\"\n                },\n                \"days\": {\n                    \"type\": \"integer\"\n                }\n            },\n            \"required\": [\n                \"city\"\n            ],\n            \"type\": \"object\"\n        }\n    }\n}\n\n";
        for name in ["llama3.1", "llama3.2"] {
            let out = render_round_trip(&family(name));
            assert!(out.contains("Environment: ipython\n"), "{name}");
            assert!(out.contains(llama_tool), "{name}");
        }
        let mistral = render_round_trip(&family("mistral-nemo"));
        assert!(mistral.contains(r#"[AVAILABLE_TOOLS][{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city <b>now</b>", "parameters": {"properties": {"city": {"description""#));
        let hermes = render_round_trip(&family("hermes3"));
        assert!(
            hermes.contains(r#"<tools> {"type": "function", "function": {"name": "get_weather", "#)
        );
        assert!(hermes.contains(r#""parameters": {"properties": {"city": {"description": "The city's name, e.g. Zürich", "type": "string"}"#));
        for (name, ..) in FAMILIES {
            assert!(
                !render_round_trip(&family(name)).contains("\\u003c"),
                "{name}"
            );
        }
    }

    #[test]
    fn calls_and_results_in_each_family_syntax() {
        let call = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        let result =
            "<tool_response>\n{\"temperature\": 21.5, \"sky\": \"sunny\"}\n</tool_response>";
        for name in ["qwen2.5", "qwen3", "hermes3"] {
            let out = render_round_trip(&family(name));
            assert!(out.contains(call), "{name}");
            assert!(out.contains(result), "{name}");
        }
        for name in ["llama3.1", "llama3.2"] {
            let out = render_round_trip(&family(name));
            assert!(out.contains(
                "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}<|eot_id|>"
            ));
            assert!(out.contains("<|start_header_id|>ipython<|end_header_id|>\n\n\"{\\\"temperature\\\": 21.5, \\\"sky\\\": \\\"sunny\\\"}\"<|eot_id|>"));
        }
        let mistral = render_round_trip(&family("mistral-nemo"));
        assert!(mistral.contains(r#"[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abcDEF123"}]</s>"#));
        assert!(mistral.contains(r#"[TOOL_RESULTS]{"content": {"temperature": 21.5, "sky": "sunny"}, "call_id": "abcDEF123"}[/TOOL_RESULTS]"#));
    }

    #[test]
    fn capabilities_per_family() {
        for (name, source, bos, eos, native) in FAMILIES {
            let t = template(source, bos, eos);
            assert_eq!(t.renders_tools(), native, "{name} tools");
            assert_eq!(t.renders_tool_calls(), native, "{name} tool calls");
        }
    }

    #[test]
    fn no_tools_leaves_tools_undefined() {
        let t = family("qwen2.5");
        let none = t.render_at(&plain(), None, true, NOW).expect("renders");
        let empty = t
            .render_at(&plain(), Some(&[]), true, NOW)
            .expect("renders");
        assert_eq!(none, empty);
        assert!(!none.contains("<tools>"));
        let t = template(
            "{{ tools is defined }}{% for t in tools %} {{ t.function.name }}{% endfor %}",
            "",
            "",
        );
        assert!(t.renders_tools());
        assert_eq!(
            t.render_at(&plain(), Some(&[]), false, NOW).as_deref(),
            Ok("False")
        );
        let tools = [weather_tool()];
        assert_eq!(
            t.render_at(&plain(), Some(&tools), false, NOW).as_deref(),
            Ok("True get_weather")
        );
    }

    #[test]
    fn message_shape_is_openai_s() {
        let t = template(
            "{% for m in messages %}{{ m | tojson }}\n{% endfor %}",
            "",
            "",
        );
        let out = t
            .render_at(&round_trip()[1..], None, false, NOW)
            .expect("renders");
        assert_eq!(
            out,
            concat!(
                r#"{"role": "user", "content": "What's the weather in Paris?"}"#,
                "\n",
                r#"{"role": "assistant", "content": "", "tool_calls": [{"id": "abcDEF123", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}"#,
                "\n",
                r#"{"role": "tool", "content": "{\"temperature\": 21.5, \"sky\": \"sunny\"}", "tool_call_id": "abcDEF123", "name": "get_weather"}"#,
                "\n"
            )
        );
    }

    #[test]
    fn argument_key_order_is_serde_json_s() {
        let mut map = serde_json::Map::new();
        map.insert("zeta".to_owned(), serde_json::json!(1.0));
        map.insert("alpha".to_owned(), serde_json::json!([1, 2]));
        let order: Vec<String> = map.keys().cloned().collect();
        let call = Message {
            role: "assistant".to_owned(),
            tool_calls: vec![ToolCall {
                id: "abcDEF123".to_owned(),
                name: "f".to_owned(),
                arguments: serde_json::Value::Object(map),
            }],
            ..Message::default()
        };
        let t = template(
            "{% for m in messages %}{% for c in m.tool_calls %}{{ c.function.name }} {{ c.function.arguments | tojson }}{% endfor %}{% endfor %}",
            "",
            "",
        );
        let out = t.render_at(&[call], None, false, NOW).expect("renders");
        // Whatever order serde_json keeps (insertion with `preserve_order`, else sorted).
        let expected = if order[0] == "zeta" {
            r#"f {"zeta": 1.0, "alpha": [1, 2]}"#
        } else {
            r#"f {"alpha": [1, 2], "zeta": 1.0}"#
        };
        assert_eq!(out, expected);
    }

    // Polyfills for templates that render no tools.

    #[test]
    fn smollm2_polyfills_tools_calls_and_results() {
        let out = render_round_trip(&family("smollm2"));
        let expected = format!(
            "<|im_start|>system\nYou are a helpful assistant.\n\n{}<|im_end|>\n<|im_start|>user\nWhat's the weather in Paris?<|im_end|>\n<|im_start|>assistant\n{}<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
            tools_system_text(&[weather_tool()]),
            "{\n  \"tool_calls\": [\n    {\n      \"name\": \"get_weather\",\n      \"arguments\": {\n        \"city\": \"Paris\"\n      },\n      \"id\": \"abcDEF123\"\n    }\n  ]\n}",
            "{\n  \"tool_response\": {\n    \"tool\": \"get_weather\",\n    \"content\": \"{\\\"temperature\\\": 21.5, \\\"sky\\\": \\\"sunny\\\"}\",\n    \"tool_call_id\": \"abcDEF123\"\n  }\n}",
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn tools_system_text_lists_tools_as_indented_json() {
        let text = tools_system_text(&[weather_tool()]);
        assert!(text.starts_with(
            "You can call any of the following tools to satisfy the user's requests: [\n  {\n    \"type\": \"function\",\n    \"function\": {\n      \"name\": \"get_weather\",\n      \"description\": \"Get the current weather in a city <b>now</b>\",\n      \"parameters\": {\n        \"properties\": {"
        ));
        assert!(text.ends_with("\"type\": \"object\"\n      }\n    }\n  }\n]"));
    }

    #[test]
    fn system_message_is_created_for_tools() {
        let t = family("smollm2");
        let tools = [weather_tool()];
        let out = t
            .render_at(&[Message::text("user", "Hi")], Some(&tools), true, NOW)
            .expect("renders");
        assert!(out.starts_with(&format!(
            "<|im_start|>system\n{}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
            tools_system_text(&tools)
        )));
    }

    #[test]
    fn phi35_polyfills_with_content_before_calls() {
        let mut messages = round_trip();
        messages[2].content = "Let me look.".to_owned();
        let tools = [weather_tool()];
        let out = family("phi3.5")
            .render_at(&messages, Some(&tools), true, NOW)
            .expect("renders");
        assert!(out.starts_with(
            "<|system|>\nYou are a helpful assistant.\n\nYou can call any of the following tools"
        ));
        assert!(out
            .contains("<|assistant|>\n{\n  \"content\": \"Let me look.\",\n  \"tool_calls\": [\n"));
        assert!(out.contains("<|user|>\n{\n  \"tool_response\": {\n    \"tool\": \"get_weather\","));
        assert!(out.ends_with("<|end|>\n<|assistant|>\n"));
    }

    #[test]
    fn gemma2_takes_system_text_in_first_user_turn_and_alternates() {
        let out = render_round_trip(&family("gemma2"));
        assert!(out.starts_with(
            "<bos><start_of_turn>user\nYou are a helpful assistant.\n\nYou can call any of the following tools to satisfy the user's requests: [\n"
        ));
        assert!(out.contains("\n\nWhat's the weather in Paris?<end_of_turn>\n<start_of_turn>model\n{\n  \"tool_calls\": ["));
        assert!(out.contains("<start_of_turn>user\n{\n  \"tool_response\": {"));
        assert!(out.ends_with("<end_of_turn>\n<start_of_turn>model\n"));
        assert_eq!(out.matches("<start_of_turn>user").count(), 2);
        // Consecutive user turns are merged rather than refused.
        let messages = [Message::text("user", "One."), Message::text("user", "Two.")];
        let out = family("gemma2")
            .render_at(&messages, None, true, NOW)
            .expect("renders");
        assert_eq!(
            out,
            "<bos><start_of_turn>user\nOne.\n\nTwo.<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    // The template language as transformers sets it up.

    #[test]
    fn tojson_writes_python_json() {
        let cases = [
            (r#"{{ {"a": 1, "b": [1, 2]} | tojson }}"#, r#"{"a": 1, "b": [1, 2]}"#),
            (r#"{{ {"b": 1, "a": 2} | tojson }}"#, r#"{"b": 1, "a": 2}"#),
            (r#"{{ {"b": 1, "a": 2} | tojson(sort_keys=true) }}"#, r#"{"a": 2, "b": 1}"#),
            (
                r#"{{ {"a": 1, "b": [1, 2], "c": {}, "d": []} | tojson(indent=4) }}"#,
                "{\n    \"a\": 1,\n    \"b\": [\n        1,\n        2\n    ],\n    \"c\": {},\n    \"d\": []\n}",
            ),
            (r#"{{ [1, 2] | tojson(indent=2, separators=(", ", ": ")) }}"#, "[\n  1, \n  2\n]"),
            (r#"{{ {"a": [1, 2]} | tojson(separators=(",", ":")) }}"#, r#"{"a":[1,2]}"#),
            (r#"{{ "<é\n\"\\\u0001>" | tojson }}"#, "\"<é\\n\\\"\\\\\\u0001>\""),
            (r#"{{ "é😀" | tojson(ensure_ascii=true) }}"#, r#""\u00e9\ud83d\ude00""#),
            ("{{ [1.0, 2.5, 1e20, 0.00001, -0.0, true, none] | tojson }}", "[1.0, 2.5, 1e+20, 1e-05, -0.0, true, null]"),
            (r#"{{ "a<b" | tojson }}"#, r#""a<b""#),
        ];
        for (source, expected) in cases {
            assert_eq!(render_snippet(source).as_deref(), Ok(expected), "{source}");
        }
        let err = render_snippet("{{ 1 | tojson(colour=1) }}").expect_err("unknown kwarg");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn python_floats() {
        let cases = [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (21.5, "21.5"),
            (-3.25, "-3.25"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.000_012_5, "1.25e-05"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.234_567_890_123_456_8e17, "1.2345678901234568e+17"),
            (123_456.789, "123456.789"),
            (f64::INFINITY, "Infinity"),
            (f64::NAN, "NaN"),
            (0.0, "0.0"),
        ];
        for (f, expected) in cases {
            assert_eq!(python_float(f), expected, "{f}");
        }
    }

    #[test]
    fn pycompat_methods() {
        let out = render_snippet(
            r#"{{ "  a,b ".strip().split(",") | tojson }} {{ "abc".startswith("ab") }} {% for k, v in {"x": 1}.items() %}{{ k }}={{ v }}{% endfor %} {{ {"x": 1}.get("y", 2) }}"#,
        );
        assert_eq!(out.as_deref(), Ok(r#"["a", "b"] True x=1 2"#));
        let out = render_snippet(
            "{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}",
        );
        assert_eq!(out.as_deref(), Ok("012"));
    }

    #[test]
    fn raise_exception_surfaces_its_message() {
        let err = render_snippet("{{ raise_exception('Roles must alternate, friend') }}")
            .expect_err("raises");
        assert!(err.starts_with("the model's chat template failed"), "{err}");
        assert!(err.contains("Roles must alternate, friend"), "{err}");
    }

    #[test]
    fn strftime_now_and_date_string_use_the_render_time() {
        let out = render_snippet(
            r#"{{ strftime_now("%d %b %Y|%B %A %a|%Y-%m-%d %H:%M:%S|%y %j %I%p %%") }}|{{ date_string }}"#,
        );
        assert_eq!(
            out.as_deref(),
            Ok("05 Mar 2025|March Wednesday Wed|2025-03-05 14:07:09|25 064 02PM %|05 Mar 2025")
        );
        assert_eq!(format_time("%Y-%m-%d %a", 0), "1970-01-01 Thu");
        assert_eq!(format_time("%Y-%m-%d %j", 951_782_400), "2000-02-29 060");
        assert_eq!(format_time("%Y-%m-%d", -86_400), "1969-12-31");
        let year = format_time("%Y", unix_now())
            .parse::<i64>()
            .expect("a year");
        assert!(year >= 2025);
    }

    #[test]
    fn runaway_templates_run_out_of_fuel() {
        // A hundredth of the real fuel, to keep the debug-build test fast.
        let t = ChatTemplate::with_fuel(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "",
            "",
            FUEL / 100,
        )
        .expect("compiles");
        let err = t
            .render_at(&[], None, false, NOW)
            .expect_err("runs out of fuel");
        assert!(err.contains("fuel"), "{err}");
        let err = render_snippet("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")
            .expect_err("recursion limit");
        assert!(err.starts_with("the model's chat template failed"), "{err}");
    }

    #[test]
    fn long_conversations_need_a_fraction_of_the_fuel() {
        let mut messages = vec![Message::text("system", "You are a helpful assistant.")];
        for _ in 0..100 {
            messages.extend(round_trip().into_iter().skip(1));
            messages.push(Message::text("assistant", "It is sunny."));
        }
        let tools = [weather_tool(), weather_tool(), weather_tool()];
        for (name, source, bos, eos, _) in FAMILIES {
            let t = ChatTemplate::with_fuel(source, bos, eos, FUEL / 100).expect("compiles");
            let out = t.render_at(&messages, Some(&tools), true, NOW);
            assert!(out.is_ok(), "{name}: {out:?}");
        }
    }

    #[test]
    fn generation_tags_compile_and_render_their_body() {
        let source = "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{%- generation -%} {%- endgeneration -%}{% else %}[{{ m.content }}]{% endif %}{% endfor %}";
        let t = template(source, "", "");
        let messages = [Message::text("user", "u"), Message::text("assistant", "a")];
        assert_eq!(
            t.render_at(&messages, None, false, NOW).as_deref(),
            Ok("[u]a")
        );
        assert_eq!(
            strip_generation_tags("x{%- generation %}y{% endgeneration -%}{% if a %}{% endif %}{%"),
            "x{%- if true %}y{% endif -%}{% if a %}{% endif %}{%"
        );
    }

    #[test]
    fn templates_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ChatTemplate>();
    }

    #[test]
    fn compile_errors_say_why() {
        let err = ChatTemplate::new("{% for %}", "", "").expect_err("does not compile");
        assert!(
            err.starts_with("the model's chat template does not compile"),
            "{err}"
        );
    }

    #[test]
    fn a_tag_that_ends_where_it_starts_is_not_a_panic() {
        for source in [
            "{%}",
            "a{%}b{% generation %}c{% endgeneration %}",
            "{%",
            "%}{%}",
        ] {
            let _ = strip_generation_tags(source);
            let _ = ChatTemplate::new(source, "", "");
        }
    }
}
