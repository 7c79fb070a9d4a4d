//! Chat conversations as models see them: messages with tool calls and tool results,
//! the tools an answer may call, a model's own Jinja chat template rendering them
//! (`template`), and each template family's tool-call syntax: how a call opens, the
//! grammar its arguments follow, and how calls are read back out of the text (`tools`).
//!
//! Engine-free: the llama engine renders and parses with it, the remote engine sends
//! the same messages and tools to servers, the LLM service checks them.

pub(crate) mod template;
pub(crate) mod tools;
mod types;

pub(crate) use types::{Message, Tool, ToolCall, ToolChoice, Tools};
