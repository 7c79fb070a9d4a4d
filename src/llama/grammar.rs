//! Constrained sampling: a JSON schema or a GBNF grammar as llama.cpp's grammar
//! sampler, and the check of each chosen token against it.
//!
//! The grammar is consulted after the unconstrained choice (llama.cpp's server does the
//! same): it checks that one token, which it nearly always allows, and only when it does
//! not is the whole vocabulary filtered and the choice made again among what it allows.
//! Filtering the vocabulary at every step would cost more than a small model's step.
//!
//! llama.cpp aborts the process when its grammar accepts a token it does not allow
//! (`GGML_ABORT` for an end-of-generation token, an exception through C otherwise), so
//! every token accepted here has first been allowed by it.

use crate::engine::llm::Output;
use crate::error::{OrionError, Result};
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

/// Largest GBNF grammar accepted, and its deepest nesting of parentheses: llama.cpp's
/// parser recurses through them on the generating thread.
const MAX_GRAMMAR_BYTES: usize = 256 << 10;
const MAX_GRAMMAR_DEPTH: usize = 48;

/// The grammar a generation follows.
pub(crate) struct Grammar {
    sampler: LlamaSampler,
}

impl Grammar {
    /// `output` as a grammar sampler for `model`. A schema llama.cpp cannot convert is
    /// `SCHEMA_UNSUPPORTED`; a grammar it cannot parse, `INVALID_OPTION`.
    pub(crate) fn new(model: &LlamaModel, output: &Output) -> Result<Self> {
        let gbnf = match output {
            Output::JsonSchema(schema) => llama_cpp_2::json_schema_to_grammar(&schema.to_string())
                .map_err(|_| {
                    OrionError::SchemaUnsupported(
                        "llama.cpp could not convert it to a grammar (a $ref that leads nowhere, \
                         bounds that contradict each other?)"
                            .into(),
                    )
                })?,
            Output::Grammar(g) => {
                check_gbnf(g)?;
                g.to_string()
            }
        };
        let sampler = LlamaSampler::grammar(model, &gbnf, "root").map_err(|e| {
            OrionError::InvalidOption(format!(
                "grammar: llama.cpp could not parse it ({e}); it must be GBNF with a `root` rule, \
                 without left recursion"
            ))
        })?;
        Ok(Self { sampler })
    }

    /// The grammar of a tool call (`crate::chat::tools::constraint`): from the first
    /// token when a call is required, else lazy, from where a call opens (a trigger
    /// pattern's match, or a trigger token) onward.
    pub(crate) fn for_tools(
        model: &LlamaModel,
        c: &crate::chat::tools::Constraint,
    ) -> Result<Self> {
        let failed = |e: llama_cpp_2::GrammarError| {
            OrionError::SchemaUnsupported(format!(
                "llama.cpp could not build the tool-call grammar from the tools' parameters ({e})"
            ))
        };
        let sampler = match &c.lazy {
            None => LlamaSampler::grammar(model, &c.gbnf, "root").map_err(failed)?,
            Some(trigger) => {
                // Trigger texts that are one token of this vocabulary (`<tool_call>`,
                // `[TOOL_CALLS]`); others are matched as text by the patterns.
                let tokens: Vec<LlamaToken> = trigger
                    .tokens
                    .iter()
                    .filter_map(
                        |t| match model.vocab().tokenize(t.as_bytes(), false, true)[..] {
                            [one] => Some(one),
                            _ => None,
                        },
                    )
                    .collect();
                LlamaSampler::grammar_lazy_patterns(
                    model,
                    &c.gbnf,
                    "root",
                    &trigger.patterns,
                    &tokens,
                )
                .map_err(failed)?
            }
        };
        Ok(Self { sampler })
    }

    /// [`Self::new`] for `output`, when there is one.
    pub(crate) fn for_output(model: &LlamaModel, output: Option<&Output>) -> Result<Option<Self>> {
        output.map(|o| Self::new(model, o)).transpose()
    }

    /// Whether the grammar allows `token` next.
    pub(crate) fn allows(&mut self, token: LlamaToken) -> bool {
        let mut one = LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, 0.0, 0.0)], false);
        one.apply_sampler(&mut self.sampler);
        one.data
            .first()
            .is_some_and(|d| d.logit() > f32::NEG_INFINITY)
    }

    /// Set every logit the grammar does not allow next to minus infinity.
    pub(crate) fn mask(&mut self, candidates: &mut LlamaTokenDataArray) {
        candidates.apply_sampler(&mut self.sampler);
    }

    /// Advance past `token`, which [`Self::allows`] or [`Self::mask`] allowed (never an
    /// end-of-generation token: the answer ends there). llama.cpp's refusal (an
    /// exception, caught in its wrapper) would leave the grammar with no state to go on
    /// from, and its next check would abort: it ends the generation instead.
    pub(crate) fn accept(&mut self, token: LlamaToken) -> Result<()> {
        self.sampler.try_accept(token).map_err(|e| {
            OrionError::InferenceFailed(format!("the grammar refused the token chosen ({e})"))
        })
    }
}

/// A JSON schema (as JSON text) as GBNF, by llama.cpp's own conversion (the rule
/// `root` its start).
pub(crate) fn schema_to_gbnf(schema: &str) -> std::result::Result<String, String> {
    llama_cpp_2::json_schema_to_grammar(schema).map_err(|e| {
        format!("llama.cpp could not convert the tools' parameters to a grammar ({e})")
    })
}

/// A GBNF grammar small and shallow enough for llama.cpp's recursive parser.
fn check_gbnf(g: &str) -> Result<()> {
    if g.len() > MAX_GRAMMAR_BYTES {
        return Err(OrionError::InvalidOption(format!(
            "grammar is {} bytes; at most {MAX_GRAMMAR_BYTES} are accepted",
            g.len()
        )));
    }
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut in_literal = None;
    let mut escaped = false;
    let mut in_comment = false;
    for c in g.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        if in_comment {
            in_comment = c != '\n';
            continue;
        }
        match (in_literal, c) {
            (_, '\\') => escaped = true,
            // A comment runs to the end of its line, brackets and quotes in it included.
            (None, '#') => in_comment = true,
            (Some(q), c) if c == q => in_literal = None,
            (None, '"') => in_literal = Some('"'),
            (None, '[') => in_literal = Some(']'),
            (None, '(') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, ')') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_GRAMMAR_DEPTH {
        return Err(OrionError::InvalidOption(format!(
            "grammar nests parentheses {deepest} deep; at most {MAX_GRAMMAR_DEPTH} are accepted"
        )));
    }
    Ok(())
}

/// Every token of the vocabulary with its logit, for [`Grammar::mask`].
pub(crate) fn candidates(logits: &[f32]) -> LlamaTokenDataArray {
    LlamaTokenDataArray::new(
        logits
            .iter()
            .enumerate()
            .map(|(i, &l)| LlamaTokenData::new(LlamaToken(i as i32), l, 0.0))
            .collect(),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_or_huge_grammars_are_refused_before_llama_cpp_parses_them() {
        let deep = format!("root ::= {}\"a\"{}", "(".repeat(200), ")".repeat(200));
        assert_eq!(check_gbnf(&deep).unwrap_err().code(), "INVALID_OPTION");
        // Parentheses inside literals and classes do not count; a comment's brackets
        // and quotes do not hide what follows them.
        let quoted = format!("root ::= \"{}\" [(]", "(".repeat(200));
        assert!(check_gbnf(&quoted).is_ok());
        let hidden = format!(
            "# [ \"\nroot ::= {}\"a\"{}",
            "(".repeat(200),
            ")".repeat(200)
        );
        assert_eq!(check_gbnf(&hidden).unwrap_err().code(), "INVALID_OPTION");
        let huge = format!("root ::= \"{}\"", "a".repeat(MAX_GRAMMAR_BYTES));
        assert_eq!(check_gbnf(&huge).unwrap_err().code(), "INVALID_OPTION");
    }
}
