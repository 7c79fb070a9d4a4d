//! A model's tokens as the caller sees them: how many a prompt takes (exactly what
//! generation evaluates for it), a text's tokens, and tokens back to text.

use super::generate::render_prompt;
use crate::engine::llm::Prompt;
use crate::error::{OrionError, Result};
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

/// The tokens generation evaluates for `prompt`: templated as it would be (unless
/// `raw`), with the model's start-of-text token and special tokens parsed, so that the
/// count is the generation's `timings.promptTokens`.
pub(crate) fn count_prompt(
    model: &super::prefix::ChatModel,
    prompt: &Prompt,
    raw: bool,
    tools: Option<&crate::chat::Tools>,
) -> Result<u32> {
    let rendered = render_prompt(model, prompt, raw, tools)?;
    let n = model
        .vocab()
        .tokenize(rendered.as_bytes(), true, true)
        .len();
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// `text`'s token ids alone: no start-of-text token; with `special`, text such as
/// `<|im_end|>` is that special token, else plain text.
pub(crate) fn tokenize(model: &LlamaModel, text: &str, special: bool) -> Vec<u32> {
    model
        .vocab()
        .tokenize(text.as_bytes(), false, special)
        .into_iter()
        .map(|t| u32::try_from(t.0).unwrap_or(0))
        .collect()
}

/// The text of token ids, special tokens written out; bytes that are not whole UTF-8
/// characters (a list cut mid-character) are shown replaced. An id outside the
/// vocabulary is `INVALID_INPUT`: llama.cpp would read past its table.
pub(crate) fn detokenize(model: &LlamaModel, ids: &[u32]) -> Result<String> {
    let vocab = model.vocab();
    let n_vocab = u32::try_from(vocab.n_tokens()).unwrap_or(0);
    let mut tokens = Vec::with_capacity(ids.len());
    for (i, &id) in ids.iter().enumerate() {
        if id >= n_vocab {
            return Err(OrionError::InvalidInput(format!(
                "tokens[{i}] is {id}, not a token of this model (its vocabulary has {n_vocab})"
            )));
        }
        tokens.push(LlamaToken(id as i32));
    }
    if tokens.is_empty() {
        return Ok(String::new());
    }
    let bytes = vocab.detokenize(&tokens, false, true);
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> super::super::prefix::ChatModel {
        let path = crate::paths::models_dir()
            .join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(path.exists(), "run `node scripts/models.js` first");
        let params = llama_cpp_2::model::params::LlamaModelParams::default();
        let model =
            LlamaModel::load_from_file(super::super::backend::backend().unwrap(), path, &params)
                .unwrap();
        super::super::prefix::ChatModel::new(model, None, None, None)
    }

    #[test]
    fn text_goes_to_tokens_and_back() {
        let model = demo();
        let text = "Bonjour, café! <|im_end|> 12345";
        let plain = tokenize(&model, text, false);
        let special = tokenize(&model, text, true);
        // As plain text the marker is several tokens; parsed, it is one.
        assert!(special.len() < plain.len(), "{special:?} {plain:?}");
        assert_eq!(detokenize(&model, &plain).unwrap(), text);
        assert_eq!(detokenize(&model, &special).unwrap(), text);
        assert_eq!(detokenize(&model, &[]).unwrap(), "");
        let n = u32::try_from(model.n_vocab()).unwrap();
        let e = detokenize(&model, &[1, n]).unwrap_err();
        assert_eq!(e.code(), "INVALID_INPUT");
        // A prompt counts its template's tokens too.
        let prompt = Prompt::Text(text.into());
        assert!(count_prompt(&model, &prompt, false, None).unwrap() > plain.len() as u32);
        // Raw, it is the text's tokens, with the start-of-text token where the model adds one.
        let raw = count_prompt(&model, &prompt, true, None).unwrap() as usize;
        assert!(raw == special.len() || raw == special.len() + 1, "{raw}");
    }
}
