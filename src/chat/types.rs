//! The messages, calls and tools of a conversation.

use serde_json::Value;

/// One message of a conversation.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub(crate) role: String,
    pub(crate) content: String,
    /// An assistant message's calls (empty otherwise).
    pub(crate) tool_calls: Vec<ToolCall>,
    /// A `tool` message: the call it answers.
    pub(crate) tool_call_id: Option<String>,
    /// A `tool` message: the tool's name.
    pub(crate) name: Option<String>,
}

impl Message {
    /// A message with text only.
    pub(crate) fn text(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            ..Self::default()
        }
    }

    /// About how many bytes the message takes in a prompt: its text, its calls' JSON
    /// and the template's framing.
    pub(crate) fn bytes(&self) -> usize {
        let calls: usize = self
            .tool_calls
            .iter()
            .map(|c| c.name.len() + c.id.len() + c.arguments.to_string().len() + 32)
            .sum();
        self.role.len() + self.content.len() + calls + 8
    }
}

/// A call of a tool, as the model made it.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ToolCall {
    pub(crate) id: String,
    pub(crate) name: String,
    /// The arguments: a JSON object, valid against the tool's `parameters`.
    pub(crate) arguments: Value,
}

/// A tool the model may call.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Tool {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    /// A JSON schema of its arguments (an object schema).
    pub(crate) parameters: Value,
}

/// Whether and which tools the answer calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum ToolChoice {
    /// The model decides: text, or calls.
    #[default]
    Auto,
    /// Text only: the tools are not offered.
    None,
    /// At least one call, of any tool.
    Required,
    /// A call of this tool.
    Named(String),
}

/// The tools of a request and the choice among them.
#[allow(clippy::struct_field_names)] // `tools.tools`: the request's tools, as OpenAI names them
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Tools {
    pub(crate) tools: Vec<Tool>,
    pub(crate) choice: ToolChoice,
    /// Whether one answer may make several calls (else one at most: small models
    /// given the choice tend to repeat a call until `maxTokens`).
    pub(crate) parallel: bool,
}
