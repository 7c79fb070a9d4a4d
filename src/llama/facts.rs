//! What a loaded GGUF chat model is: its architecture, size, trained context and chat
//! template (which family's, a digest of its text, whether it renders tools and in
//! which syntax calls come), read from the model's metadata once, on first use.

use super::prefix::ChatModel;
use crate::engine::llm::{ChatTemplate, ModelFacts};
use sha2::Digest;

/// `model`'s facts, worked out once.
pub(crate) fn facts(model: &ChatModel) -> ModelFacts {
    model.facts.get_or_init(|| read(model)).clone()
}

fn read(model: &ChatModel) -> ModelFacts {
    // The template tools are rendered with (Hermes-style models keep it apart), probed by
    // rendering a tool: whether it shows it.
    let jinja = model.jinja(true).ok();
    let template = model
        .chat_template(None)
        .ok()
        .and_then(|t| t.to_string().ok())
        .filter(|t| !t.trim().is_empty());
    ModelFacts {
        architecture: model.meta_val_str("general.architecture").ok(),
        parameters: model.n_params(),
        trained_context: model.n_ctx_train(),
        supports_tools: jinja.as_ref().is_some_and(|j| j.renders_tools()),
        chat_template: template.as_deref().map(|t| ChatTemplate {
            family: family(t),
            sha256: hex(&sha2::Sha256::digest(t.as_bytes())),
            tool_format: jinja.as_ref().map(|j| j.format.as_str()),
        }),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The family a chat template belongs to, by the markers its text writes; `None` for
/// one of none of these (still used: it is the model's own).
fn family(t: &str) -> Option<&'static str> {
    let has = |s: &str| t.contains(s);
    Some(if has("<|start_header_id|>") {
        "llama3"
    } else if has("<|im_start|>") {
        if has("<tool_call>") {
            "hermes"
        } else {
            "chatml"
        }
    } else if has("<start_of_turn>") {
        "gemma"
    } else if has("<|user|>") && has("<|end|>") {
        "phi3"
    } else if has("[INST]") {
        if has("[TOOL_CALLS]") || has("[AVAILABLE_TOOLS]") {
            "mistral-tools"
        } else {
            "mistral"
        }
    } else if has("<|User|>") && has("<|Assistant|>") {
        "deepseek"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_told_by_their_markers() {
        assert_eq!(family("{{'<|im_start|>' + m.role}}"), Some("chatml"));
        assert_eq!(
            family("<|im_start|>{% if tools %}<tool_call>{% endif %}"),
            Some("hermes")
        );
        assert_eq!(family("<|start_header_id|>user"), Some("llama3"));
        assert_eq!(family("<start_of_turn>user"), Some("gemma"));
        assert_eq!(family("<|user|>x<|end|>"), Some("phi3"));
        assert_eq!(family("[INST] x [/INST]"), Some("mistral"));
        assert_eq!(family("{{ 'User: ' + m.content }}"), None);
    }
}
