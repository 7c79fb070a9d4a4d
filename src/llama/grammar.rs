//! Constrained sampling: a JSON schema or a GBNF grammar as llama.cpp's grammar
//! sampler (or a schema as llguidance's parser, `schemaEngine: 'llguidance'`), and the
//! check of each chosen token against it.
//!
//! The grammar is consulted after the unconstrained choice (llama.cpp's server does the
//! same): it checks that one token, which it nearly always allows, and only when it does
//! not is the whole vocabulary filtered and the choice made again among what it allows.
//! Filtering the vocabulary at every step would cost more than a small model's step.
//!
//! llama.cpp aborts the process when its grammar accepts a token it does not allow
//! (`GGML_ABORT` for an end-of-generation token, an exception through C otherwise), so
//! every token accepted here has first been allowed by it.

use super::prefix::ChatModel;
use crate::engine::llm::{Output, SchemaEngine};
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
    inner: Inner,
}

enum Inner {
    /// llama.cpp's grammar sampler.
    Llama(LlamaSampler),
    /// llguidance's parser, read directly: one token checked without computing the whole
    /// vocabulary's mask (its `llama_sampler` wrapper computes the mask for every check).
    Guidance(Box<Guided>),
}

struct Guided {
    matcher: llguidance::Matcher,
    /// The vocabulary as llguidance reads it.
    env: toktrie::TokEnv,
}

/// How far whitespace between JSON tokens may run under llguidance (llama.cpp's JSON
/// grammar allows about as much); unbounded, a model could write spaces forever.
const GUIDANCE_WHITESPACE: &str = r"[\x20\x0A\x0D\x09]{1,24}";

impl Grammar {
    /// `output` as a grammar sampler for `model`. A schema the engine cannot convert is
    /// `SCHEMA_UNSUPPORTED`; a grammar llama.cpp cannot parse, `INVALID_OPTION`.
    pub(crate) fn new(model: &ChatModel, output: &Output) -> Result<Self> {
        if let Output::JsonSchema(schema, None | Some(SchemaEngine::Llguidance)) = output {
            return Self::guided(model, schema);
        }
        let gbnf = match output {
            Output::JsonSchema(schema, _) => {
                llama_cpp_2::json_schema_to_grammar(&schema.to_string())
                    .map_err(|_| {
                        OrionError::SchemaUnsupported(
                        "llama.cpp could not convert it to a grammar (a $ref that leads nowhere, \
                         bounds that contradict each other?)"
                            .into(),
                    )
                    })
                    .and_then(|g| made_in_bounds(&g, "the schema").map(|()| g))?
            }
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
        Ok(Self {
            inner: Inner::Llama(sampler),
        })
    }

    /// A JSON schema as llguidance's parser for `model`.
    fn guided(model: &ChatModel, schema: &serde_json::Value) -> Result<Self> {
        let mut schema = schema.clone();
        if let Some(o) = schema.as_object_mut() {
            o.insert(
                "x-guidance".into(),
                serde_json::json!({ "whitespace_pattern": GUIDANCE_WHITESPACE }),
            );
        }
        let factory = model.guidance()?;
        let parser = factory
            .create_parser(llguidance::api::TopLevelGrammar::from_json_schema(schema))
            .map_err(|e| {
                OrionError::SchemaUnsupported(format!("llguidance cannot enforce it: {e}"))
            })?;
        Ok(Self {
            inner: Inner::Guidance(Box::new(Guided {
                matcher: llguidance::Matcher::new(Ok(parser)),
                env: factory.tok_env().clone(),
            })),
        })
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
        made_in_bounds(&c.gbnf, "the tools' parameters")?;
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
        Ok(Self {
            inner: Inner::Llama(sampler),
        })
    }

    /// [`Self::new`] for `output`, when there is one.
    pub(crate) fn for_output(model: &ChatModel, output: Option<&Output>) -> Result<Option<Self>> {
        output.map(|o| Self::new(model, o)).transpose()
    }

    /// Whether the grammar allows `token` next.
    pub(crate) fn allows(&mut self, token: LlamaToken) -> bool {
        match &mut self.inner {
            Inner::Llama(sampler) => {
                let mut one =
                    LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, 0.0, 0.0)], false);
                one.apply_sampler(sampler);
                one.data
                    .first()
                    .is_some_and(|d| d.logit() > f32::NEG_INFINITY)
            }
            Inner::Guidance(g) => {
                let Ok(id) = u32::try_from(token.0) else {
                    return false;
                };
                let m = &mut g.matcher;
                if m.is_stopped() {
                    // Finished: only the end (its mask says which tokens end).
                    return m.compute_mask_or_eos().is_ok_and(|v| v.is_allowed(id));
                }
                // A token with no text (unused slots of a vocabulary) moves nothing on:
                // the mask never allows one, nor does llama.cpp's grammar.
                let trie = g.env.tok_trie();
                if (id as usize) < trie.vocab_size() && trie.token_len(id) == 0 {
                    return false;
                }
                m.validate_tokens(&[id]).is_ok_and(|n| n == 1)
            }
        }
    }

    /// Set every logit the grammar does not allow next to minus infinity.
    pub(crate) fn mask(&mut self, candidates: &mut LlamaTokenDataArray) {
        match &mut self.inner {
            Inner::Llama(sampler) => candidates.apply_sampler(sampler),
            Inner::Guidance(g) => {
                // A parser in error allows nothing: the generation ends with its error.
                let mask = g.matcher.compute_mask_or_eos().ok();
                for d in &mut candidates.data {
                    let allowed = mask
                        .as_ref()
                        .is_some_and(|v| u32::try_from(d.id().0).is_ok_and(|id| v.is_allowed(id)));
                    if !allowed {
                        d.set_logit(f32::NEG_INFINITY);
                    }
                }
            }
        }
    }

    /// Advance past `token`, which [`Self::allows`] or [`Self::mask`] allowed (never an
    /// end-of-generation token: the answer ends there). llama.cpp's refusal (an
    /// exception, caught in its wrapper) would leave the grammar with no state to go on
    /// from, and its next check would abort: it ends the generation instead.
    pub(crate) fn accept(&mut self, token: LlamaToken) -> Result<()> {
        match &mut self.inner {
            Inner::Llama(sampler) => sampler.try_accept(token).map_err(|e| {
                OrionError::InferenceFailed(format!("the grammar refused the token chosen ({e})"))
            }),
            Inner::Guidance(g) => g
                .matcher
                .consume_token(u32::try_from(token.0).unwrap_or(u32::MAX))
                .map_err(|e| {
                    OrionError::InferenceFailed(format!(
                        "llguidance refused the token chosen ({e})"
                    ))
                }),
        }
    }
}

/// Why no next token could be picked under `grammar` (only a grammar refuses them all):
/// llguidance's own account when it has one (a limit on its work per token, reached by an
/// intricate schema, is the schema's fault), else a grammar that cannot be completed.
pub(crate) fn stuck(grammar: Option<&Grammar>) -> OrionError {
    if let Some(Inner::Guidance(g)) = grammar.map(|g| &g.inner) {
        if let Some(e) = g.matcher.get_error() {
            return OrionError::SchemaUnsupported(format!(
                "llguidance stopped following it ({e}): a simpler schema"
            ));
        }
    }
    OrionError::InferenceFailed(
        "the grammar allows no next token (a grammar that cannot be completed?)".into(),
    )
}

/// A JSON schema (as JSON text) as GBNF, by llama.cpp's own conversion (the rule
/// `root` its start).
pub(crate) fn schema_to_gbnf(schema: &str) -> std::result::Result<String, String> {
    llama_cpp_2::json_schema_to_grammar(schema).map_err(|e| {
        format!("llama.cpp could not convert the tools' parameters to a grammar ({e})")
    })
}

/// A GBNF grammar small and shallow enough for llama.cpp's recursive parser.
/// A grammar made from `what` (a schema's, the tools'), held to the bounds of a grammar
/// given as is: a huge enum or many large tools would otherwise make llama.cpp parse
/// megabytes of rules on the generating thread.
fn made_in_bounds(gbnf: &str, what: &str) -> Result<()> {
    check_gbnf(gbnf).map_err(|e| {
        OrionError::SchemaUnsupported(format!(
            "the grammar made from {what} is too large ({e}): make it smaller"
        ))
    })
}

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
