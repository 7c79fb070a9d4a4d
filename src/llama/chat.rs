//! Tool calls on a llama.cpp model: its chat template rendered with minijinja (tools,
//! calls and results, which llama.cpp's built-in template heuristics cannot render),
//! the grammar that constrains a call once it opens, and the calls read back from the
//! answer (`crate::chat` knows each family's syntax).

use crate::chat::template::ChatTemplate;
use crate::chat::tools::{self, Format};
use crate::chat::{Message, ToolChoice, Tools};
use crate::error::{OrionError, Result};
use llama_cpp_2::model::LlamaModel;

/// `ChatML`, for models without a template of their own (what llama.cpp's renderer falls
/// back to as well).
const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A model's template compiled, and the tool-call syntax it speaks.
pub(crate) struct Jinja {
    template: ChatTemplate,
    pub(crate) format: Format,
    /// The start-of-text token's text when tokenizing adds that token (then a template
    /// that writes it would double it), else empty.
    bos: String,
}

/// The text of `token`, special tokens written out.
fn piece(model: &LlamaModel, token: llama_cpp_2::token::LlamaToken) -> String {
    String::from_utf8_lossy(&model.vocab().token_to_piece(token, true, None)).into_owned()
}

impl Jinja {
    /// `model`'s template (for tools: its `tool_use` one, where it has one), compiled.
    pub(crate) fn new(model: &LlamaModel, for_tools: bool) -> std::result::Result<Self, String> {
        let named = |name: Option<&str>| {
            model
                .chat_template(name)
                .ok()
                .and_then(|t| t.to_string().ok())
                .filter(|t| !t.trim().is_empty())
        };
        // Hermes-style models keep their tool template apart, named `tool_use`.
        let source = for_tools
            .then(|| named(Some("tool_use")))
            .flatten()
            .or_else(|| named(None))
            .unwrap_or_else(|| CHATML.to_string());
        let vocab = model.vocab();
        let (bos, eos) = (piece(model, vocab.bos()), piece(model, vocab.eos()));
        let template = ChatTemplate::new(&source, &bos, &eos)?;
        let format = Format::detect(&source, template.renders_tools());
        Ok(Self {
            template,
            format,
            bos: if vocab.should_add_bos() {
                bos
            } else {
                String::new()
            },
        })
    }

    /// Whether the template shows the tools it is given.
    pub(crate) fn renders_tools(&self) -> bool {
        self.template.renders_tools()
    }

    /// The prompt for `messages` with `tools` offered (unless the choice is `none`), the
    /// assistant's answer opened after them.
    pub(crate) fn render(&self, messages: &[Message], tools: Option<&Tools>) -> Result<String> {
        let offered = tools.filter(|t| t.choice != ToolChoice::None);
        let mut messages = messages.to_vec();
        if self.format == Format::Mistral {
            mistral_ids(&mut messages);
        }
        if let Some(text) = offered.and_then(|t| tools::instruction(self.format, &t.choice)) {
            match messages.first_mut().filter(|m| m.role == "system") {
                Some(system) => system.content = format!("{}\n\n{text}", system.content),
                None => messages.insert(0, Message::text("system", text)),
            }
        }
        let text = self
            .template
            .render(&messages, offered.map(|t| t.tools.as_slice()), true)
            .map_err(|e| {
                OrionError::InvalidInput(format!("the model's chat template failed: {e}"))
            })?;
        // Tokenizing adds the start-of-text token: the template's own would double it.
        Ok(match text.strip_prefix(self.bos.as_str()) {
            Some(rest) if !self.bos.is_empty() => rest.to_string(),
            _ => text,
        })
    }
}

/// Mistral's templates refuse call ids that are not 9 letters and digits: other ids
/// (`OpenAI`'s `call_...`) are mapped to such, the same one for a call and its result.
fn mistral_ids(messages: &mut [Message]) {
    use sha2::Digest;
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let fit = |id: &str| {
        if id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return id.to_string();
        }
        let digest = sha2::Sha256::digest(id.as_bytes());
        digest[..9]
            .iter()
            .map(|b| ALNUM[usize::from(*b) % ALNUM.len()] as char)
            .collect()
    };
    for m in messages {
        for c in &mut m.tool_calls {
            c.id = fit(&c.id);
        }
        if let Some(id) = &mut m.tool_call_id {
            *id = fit(id);
        }
    }
}

/// Whether `messages` need the Jinja renderer: they carry tool calls or results.
pub(crate) fn has_tool_turns(messages: &[Message]) -> bool {
    messages
        .iter()
        .any(|m| m.role == "tool" || !m.tool_calls.is_empty())
}
