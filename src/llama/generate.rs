//! Text generation on a loaded llama.cpp model: chat templating, prompt evaluation,
//! sampling, stop strings and streaming, one fresh context per request.

use super::chat::has_tool_turns;
use super::context::ModelContext;
use super::grammar::{self, Grammar};
use super::prefix::{common_prefix, Cached, ChatModel, PrefixCache, Settling};
use crate::chat::tools::{self, Format};
use crate::chat::{Message, ToolCall, ToolChoice, Tools};
use crate::engine::llm::{FinishReason, GenerateParams, Generation, Prompt, Timings};
use crate::error::{OrionError, Result};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::vocab::LlamaVocab;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The prompt text the model sees: a conversation with tools, calls or tool results
/// through the model's Jinja template ([`super::chat::Jinja`]); others through llama.cpp's own
/// rendering of it, as before tools existed (the same text for these templates).
pub(crate) fn render_prompt(
    model: &ChatModel,
    prompt: &Prompt,
    raw: bool,
    tools: Option<&Tools>,
) -> Result<String> {
    let messages = match prompt {
        Prompt::Text(t) if raw => return Ok(t.clone()),
        Prompt::Text(t) => vec![Message::text("user", t.clone())],
        Prompt::Messages(m) => m.clone(),
    };
    let offered = tools.filter(|t| t.choice != ToolChoice::None);
    if offered.is_some() || has_tool_turns(&messages) {
        return model.jinja(offered.is_some())?.render(&messages, tools);
    }
    render_messages(model, &messages, true)
}

/// `messages` through the model's chat template, with the opening of the assistant's
/// answer after them when `answer`.
fn render_messages(model: &LlamaModel, messages: &[Message], answer: bool) -> Result<String> {
    let chat: Vec<LlamaChatMessage> = messages
        .iter()
        .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| {
            OrionError::InvalidInput(format!(
                "chat messages must not contain NUL characters: {e}"
            ))
        })?;
    // Models without a template get ChatML, the most common convention.
    let template = model
        .chat_template(None)
        .or_else(|_| LlamaChatTemplate::new("chatml"))
        .map_err(|e| OrionError::Internal(format!("chat template: {e}")))?;
    model
        .apply_chat_template(&template, &chat, answer)
        .map_err(|e| {
            OrionError::InvalidInput(format!(
                "the model's chat template rejected the messages: {e}"
            ))
        })
}

const PENALTY_LAST_N: usize = 64;

/// Picks the next token. Greedy decoding with a repeat penalty is done here, reading
/// the logits in place: llama.cpp's penalty sampler looks every vocabulary entry up in
/// a hash map, which costs more per token than a small model's forward pass leaves
/// room for. It is the same rule (llama.cpp's penalties, then its first-maximum
/// greedy), so the choice is identical.
enum Picker {
    Chain(LlamaSampler),
    Greedy(FastGreedy),
}

struct FastGreedy {
    penalty: f32,
    recent: std::collections::VecDeque<LlamaToken>,
    penalized: Vec<bool>,
}

impl FastGreedy {
    /// The first token of highest penalized logit, among the `allowed` ones when given.
    fn best(&mut self, logits: &[f32], allowed: Option<&[bool]>) -> LlamaToken {
        for t in &self.recent {
            self.penalized[t.0 as usize] = true;
        }
        let (penalized, penalty) = (&self.penalized, self.penalty);
        // Exactly 1.0 (as given) means no penalty: llama.cpp's penalty sampler
        // makes the same exact comparison.
        #[allow(clippy::float_cmp)]
        let adjusted = |i: usize, l: f32| {
            if !penalized[i] || penalty == 1.0 {
                l
            } else if l <= 0.0 {
                l * penalty
            } else {
                l / penalty
            }
        };
        let mut best = None;
        let mut best_logit = f32::NEG_INFINITY;
        for (i, &l) in logits.iter().enumerate() {
            if allowed.is_some_and(|a| !a[i]) {
                continue;
            }
            let l = adjusted(i, l);
            if best.is_none() || l > best_logit {
                best = Some(i);
                best_logit = l;
            }
        }
        for t in &self.recent {
            self.penalized[t.0 as usize] = false;
        }
        LlamaToken(best.unwrap_or(0) as i32)
    }

    /// `token` was chosen: it counts as recent for the penalty.
    fn note(&mut self, token: LlamaToken) {
        if self.recent.len() == PENALTY_LAST_N {
            self.recent.pop_front();
        }
        self.recent.push_back(token);
    }
}

impl Picker {
    /// llama.cpp's chain when asked for (`reference_sampler`), else the fast greedy
    /// picker at temperature 0.
    fn new(model: &LlamaModel, p: &GenerateParams) -> Self {
        if p.temperature <= 0.0 && !p.reference_sampler {
            return Picker::Greedy(FastGreedy {
                penalty: p.repeat_penalty,
                recent: std::collections::VecDeque::default(),
                penalized: vec![false; model.n_vocab().max(0) as usize],
            });
        }
        Picker::Chain(sampler(model, p))
    }

    /// The next token; with `grammar`, one it allows (see `grammar`): the unconstrained
    /// choice when it is allowed, else the choice among the allowed tokens. `None` when
    /// the grammar allows none.
    fn pick(
        &mut self,
        ctx: &LlamaContext<'_>,
        idx: i32,
        grammar: Option<&mut Grammar>,
    ) -> Option<LlamaToken> {
        let logits = ctx.get_logits_ith(idx);
        let allowed = |g: &mut Grammar| {
            let mut c = grammar::candidates(logits);
            g.mask(&mut c);
            let allowed: Vec<bool> = c
                .data
                .iter()
                .map(|d| d.logit() > f32::NEG_INFINITY)
                .collect();
            allowed.iter().any(|&a| a).then_some((c, allowed))
        };
        match (self, grammar) {
            (Picker::Chain(s), None) => Some(s.sample(ctx, idx)),
            (Picker::Greedy(g), None) => {
                let token = g.best(logits, None);
                g.note(token);
                Some(token)
            }
            (Picker::Greedy(greedy), Some(gr)) => {
                let first = greedy.best(logits, None);
                let token = if gr.allows(first) {
                    first
                } else {
                    let (_, mask) = allowed(gr)?;
                    greedy.best(logits, Some(&mask))
                };
                greedy.note(token);
                Some(token)
            }
            (Picker::Chain(s), Some(gr)) => {
                // Applied, not sampled: the chain takes the token chosen in the end.
                let mut all = grammar::candidates(logits);
                all.apply_sampler(s);
                let first = all.selected_token()?;
                let token = if gr.allows(first) {
                    first
                } else {
                    let (mut masked, mask) = allowed(gr)?;
                    masked.apply_sampler(s);
                    match masked.selected_token() {
                        Some(t) if gr.allows(t) => t,
                        // Sampling can still land on a refused token (a temperature so
                        // low that every probability is NaN falls back to the last
                        // entry): the most likely allowed one then.
                        _ => LlamaToken(most_likely(logits, &mask)? as i32),
                    }
                };
                s.accept(token);
                Some(token)
            }
        }
    }
}

/// The allowed token of highest logit.
fn most_likely(logits: &[f32], allowed: &[bool]) -> Option<usize> {
    logits
        .iter()
        .enumerate()
        .filter(|&(i, _)| allowed[i])
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
}

fn sampler(model: &LlamaModel, p: &GenerateParams) -> LlamaSampler {
    let penalties = LlamaSampler::penalties(
        model.n_vocab(),
        PENALTY_LAST_N as i32,
        p.repeat_penalty,
        0.0,
        0.0,
    );
    if p.temperature <= 0.0 {
        return LlamaSampler::chain_simple([penalties, LlamaSampler::greedy()]);
    }
    LlamaSampler::chain_simple([
        penalties,
        LlamaSampler::top_k(p.top_k),
        LlamaSampler::top_p(p.top_p, 1),
        LlamaSampler::min_p(p.min_p, 1),
        LlamaSampler::temp(p.temperature),
        LlamaSampler::dist(p.seed),
    ])
}

/// Bytes of text that may be the start of a stop string: held back from streaming
/// until it is clear they are not.
fn held_back(text: &str, stops: &[String]) -> usize {
    stops
        .iter()
        .flat_map(|s| {
            (1..s.len())
                .filter(|&n| s.is_char_boundary(n))
                .map(move |n| &s[..n])
        })
        .filter(|prefix| text.ends_with(prefix))
        .map(str::len)
        .max()
        .unwrap_or(0)
}

/// Most prompt tokens evaluated between two checks of the cancel flag (see `generate`).
pub(crate) const PROMPT_STEP: usize = 64;

/// Why a generation stopped early: its caller cancelled it, or the process is exiting.
fn stopped() -> OrionError {
    if crate::lifecycle::is_shut_down() {
        OrionError::ShutDown
    } else {
        OrionError::Aborted
    }
}

/// Whether a stop ends the answer (`Ok`: asked for with `stopOnAbort` once it has begun,
/// every token in it evaluated) or fails it (an abort before its first token, or the
/// process exiting).
fn ends_answer(params: &GenerateParams, generated: u32) -> Result<()> {
    if params.stop_on_abort && generated > 0 && !crate::lifecycle::is_shut_down() {
        Ok(())
    } else {
        Err(stopped())
    }
}

/// No vocabulary piece is longer than this many bytes (the longest are runs of spaces
/// or punctuation in code vocabularies, well under it), so a prompt of more bytes than
/// this per context token cannot fit, and is rejected before it is templated and
/// tokenized: a 50 MB prompt costs nothing instead of a minute of a thread and a lease.
pub(crate) const MAX_BYTES_PER_TOKEN: usize = 256;

/// `PROMPT_TOO_LONG` for a prompt that cannot fit in `context_length` tokens, from its
/// size alone.
pub(crate) fn check_prompt_size(prompt: &Prompt, context_length: u32) -> Result<()> {
    let bytes = match prompt {
        Prompt::Text(t) => t.len(),
        Prompt::Messages(messages) => messages.iter().map(Message::bytes).sum(),
    };
    if bytes > context_length as usize * MAX_BYTES_PER_TOKEN {
        return Err(OrionError::PromptTooLong {
            tokens: (bytes / MAX_BYTES_PER_TOKEN).min(u32::MAX as usize) as u32,
            context: context_length,
            at_least: true,
        });
    }
    Ok(())
}

/// Evaluate `tokens[from..]` (at their positions), logits for the last one only, in
/// steps of at most `step` tokens with a check for cancellation and shutdown between
/// them: one decode cannot be interrupted, and 512 tokens take seconds on a CPU. Steps
/// end at multiples of `step`, and at `cut` (see [`turn_cut`]), whatever `from` is, so
/// that a prompt continued from a kept prefix is evaluated in the same groups as from
/// scratch.
/// `pos` is where evaluation starts and, on return, where it got to: every token before
/// it is in the cache, whether it finished, was stopped or failed.
fn evaluate(
    ctx: &mut ModelContext,
    batch: &mut LlamaBatch,
    tokens: &[LlamaToken],
    (pos, cut): (&mut usize, Option<usize>),
    step: usize,
    cancel: &AtomicBool,
) -> Result<()> {
    while *pos < tokens.len() {
        let pos_now = *pos;
        if cancel.load(Ordering::Relaxed) || crate::lifecycle::is_shut_down() {
            return Err(stopped());
        }
        let mut end = ((pos_now / step + 1) * step).min(tokens.len());
        if let Some(cut) = cut.filter(|&c| c > pos_now) {
            end = end.min(cut);
        }
        batch.clear();
        for (i, t) in tokens[pos_now..end].iter().enumerate() {
            let at = pos_now + i;
            batch
                .add(*t, at as i32, &[0], at == tokens.len() - 1)
                .map_err(|e| OrionError::Internal(format!("batch: {e}")))?;
        }
        ctx.decode(batch)
            .map_err(|e| OrionError::InferenceFailed(format!("prompt evaluation: {e}")))?;
        *pos = end;
    }
    Ok(())
}

/// Where a chat prompt's last turn starts: right after its second-to-last end-of-turn
/// token, which closes the previous answer (the last one closes the new message), and
/// after the template's `opening` of a user message when it follows. Prompt evaluation
/// cuts a step there, so that the next turn, whose kept context ends exactly there (see
/// [`settle`]), evaluates only its new tokens and still in the same groups as from
/// scratch. `None` for raw prompts and single messages.
fn turn_cut(
    vocab: &LlamaVocab<'_>,
    tokens: &[LlamaToken],
    raw: bool,
    opening: &[LlamaToken],
) -> Option<usize> {
    if raw {
        return None;
    }
    let mut ends = tokens
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, &t)| vocab.is_eog(t));
    ends.next()?;
    let after = ends.next().map(|(i, _)| i + 1)?;
    if !opening.is_empty() && tokens[after..].starts_with(opening) {
        return Some(after + opening.len());
    }
    Some(after)
}

/// The tokens `model`'s chat template puts between an answer's end-of-turn token and
/// the text of the user message after it (with `ChatML`: a newline, `<|im_start|>`,
/// `user` and a newline). They are the same whatever the message says, so the kept
/// context takes them in after the answer, off the critical path, and the next turn
/// does not evaluate them. Found by rendering one conversation twice with two different
/// last messages: the opening is what comes after the answer's end of turn and before
/// the two differ. Empty when the template does not show one.
pub(crate) fn user_opening(model: &LlamaModel) -> Vec<LlamaToken> {
    let render = |last: &str| -> Option<Vec<LlamaToken>> {
        let messages = [
            Message::text("user", "Hello."),
            Message::text("assistant", "Hi."),
            Message::text("user", last),
        ];
        let text = render_messages(model, &messages, false).ok()?;
        Some(model.vocab().tokenize(text.as_bytes(), true, true))
    };
    let (Some(a), Some(b)) = (render("Apples?"), render("Zebras!")) else {
        return Vec::new();
    };
    let differ = common_prefix(&a, &b);
    let vocab = model.vocab();
    let Some(end) = a[..differ].iter().rposition(|&t| vocab.is_eog(t)) else {
        return Vec::new();
    };
    // Two end-of-turn tokens in it would mean the renderings differ before the answer's.
    let opening = a[end + 1..differ].to_vec();
    if opening.iter().any(|&t| vocab.is_eog(t)) {
        return Vec::new();
    }
    opening
}

/// Make a context fit to keep after a generation. llama.cpp's results for a token depend
/// (in their last bits) on the tokens evaluated with it: the generated tokens' KV,
/// computed one token at a time, and the prompt's last steps, evaluated without what
/// follows them, differ from what a prompt from scratch computes for the same positions,
/// and greedy answers then differ with and without the kept context (the tests caught
/// it on the fourth turn of a chat). So everything from the start of the step this
/// turn's prompt was first cut in (at its `cut`, or where it ended) is evaluated again
/// in the plain steps a next prompt from scratch uses up to the end of this answer; the
/// next turn is cut right there and continues from it. `in_cache` ends with the
/// end-of-turn token when the answer ended with one, as the next prompt has it.
///
/// This runs after the answer is delivered, on a thread of its own (see
/// [`Unsettled::keep`]): the caller waits for its last token only. Returns how many tokens
/// of `in_cache` the cache then holds: all of them, or, when `halt` was set (the next
/// request takes the context over, or it is freed) or evaluation failed, the step
/// boundary where it stopped, a prefix whose cache is exactly what a prompt from scratch
/// computes.
fn settle(
    ctx: &mut ModelContext,
    batch: &mut LlamaBatch,
    in_cache: &[LlamaToken],
    first_cut: usize,
    step: usize,
    halt: &AtomicBool,
) -> usize {
    if in_cache.len() <= first_cut {
        return in_cache.len();
    }
    let from = first_cut / step * step;
    if ctx.truncate_cache(from as u32).is_err() {
        return 0;
    }
    let mut pos = from;
    // The first step whatever `halt` says, so that a context taken over at once still
    // keeps the steps before this turn's cut and one more; then until stopped or done.
    // Stopped or failed, what was evaluated before is whole.
    let first = ((from / step + 1) * step).min(in_cache.len());
    let never = AtomicBool::new(false);
    if evaluate(
        ctx,
        batch,
        &in_cache[..first],
        (&mut pos, None),
        step,
        &never,
    )
    .is_ok()
    {
        let _ = evaluate(ctx, batch, in_cache, (&mut pos, None), step, halt);
    }
    if pos < in_cache.len() {
        // A failed step may have left part of itself in the cache.
        if ctx.truncate_cache(pos as u32).is_err() {
            return 0;
        }
    }
    pos
}

/// A context whose answer is complete, to be settled (see [`settle`]) and kept for the
/// next turn once the answer is delivered. Registered with its model's cache as settling
/// from the moment it exists, so that a request arriving right after the answer finds
/// it; dropped without [`Unsettled::keep`], it is freed and unregistered.
pub(crate) struct Unsettled {
    ctx: Option<ModelContext>,
    batch: LlamaBatch<'static>,
    in_cache: Vec<LlamaToken>,
    first_cut: usize,
    step: usize,
    settling: Arc<Settling>,
    /// The cache of the model it was generated on, where it is kept.
    contexts: Arc<PrefixCache>,
}

impl Unsettled {
    /// Settle the context and keep it in its model's cache (or as much of it as was
    /// settled when a next request took it over).
    pub(crate) fn keep(mut self) {
        let Some(mut ctx) = self.ctx.take() else {
            return;
        };
        let valid = settle(
            &mut ctx,
            &mut self.batch,
            &self.in_cache,
            self.first_cut,
            self.step,
            &self.settling.stop,
        );
        let mut tokens = std::mem::take(&mut self.in_cache);
        tokens.truncate(valid);
        self.contexts
            .end_settling(&self.settling, Some(Cached::new(ctx, tokens)));
    }
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        // Not kept (or kept already: then `ctx` is gone and ending again changes nothing).
        drop(self.ctx.take());
        self.contexts.end_settling(&self.settling, None);
    }
}

/// The context to generate `tokens` in, and how many of them its KV cache already holds:
/// a kept one sharing a prefix with them (its cache past that prefix dropped), else a
/// new one.
fn context_for(
    model: &ChatModel,
    (tokens, cut): (&[LlamaToken], Option<usize>),
    needed: u32,
    context_length: u32,
    params: &GenerateParams,
) -> Result<(ModelContext, usize)> {
    let kept = if params.prefix_cache {
        model.contexts.take(tokens, needed.min(context_length))
    } else {
        None
    };
    if let Some((c, common)) = kept {
        // Back to the start of a step (at least the last prompt token is evaluated again:
        // its logits pick the first new token), so that the rest is evaluated in the same
        // groups of tokens as from scratch (see `settle`): the turn's cut when the kept
        // context reaches it, else a multiple of the step.
        let shared = common.min(tokens.len() - 1);
        let from = match cut {
            // Kept contexts are evaluated in plain steps throughout, and from scratch
            // the prompt is cut here: whatever else is shared is evaluated again.
            Some(cut) if cut <= shared => cut,
            _ => shared / PROMPT_STEP * PROMPT_STEP,
        };
        let mut ctx = c.ctx;
        debug_assert!(model.owns(&ctx));
        if from < c.tokens.len() {
            ctx.truncate_cache(from as u32)?;
        }
        return Ok((ctx, from));
    }
    // Just big enough for this request (less memory, a faster start), or, when the
    // context is to be kept, the model's whole context: the conversation can grow in it
    // without starting over in a bigger one.
    let n_ctx = if params.prefix_cache {
        context_length
    } else {
        needed.div_ceil(256).saturating_mul(256).min(context_length)
    };
    Ok((model.new_context(n_ctx, params.threads.max(1))?, 0))
}

/// The text of an answer as its tokens arrive: whole UTF-8 characters only, cut at the
/// first stop string, and streamed to a sink without the bytes that may still turn out
/// to start a stop string. The place where what is generated becomes what the caller
/// sees (a tool-call or JSON parser would read it here).
struct TextOut<'a> {
    bytes: Vec<u8>,
    /// Bytes of `bytes` already given to `sink`.
    emitted: usize,
    stops: &'a [String],
    sink: &'a mut dyn FnMut(&str),
    /// With tools: the syntax of their calls, whose text is held back from the sink
    /// from where a call may open (the calls come in the result).
    calls: Option<Format>,
}

impl<'a> TextOut<'a> {
    fn new(stops: &'a [String], sink: &'a mut dyn FnMut(&str)) -> Self {
        Self {
            bytes: Vec::new(),
            emitted: 0,
            stops,
            sink,
            calls: None,
        }
    }

    /// Add a token's bytes; `true` when the text reached a stop string (cut before it).
    fn push(&mut self, piece: &[u8]) -> bool {
        self.bytes.extend_from_slice(piece);
        // Only whole UTF-8 characters are text; a token may end mid-character.
        let valid = match std::str::from_utf8(&self.bytes) {
            Ok(s) => s.len(),
            Err(e) => e.valid_up_to(),
        };
        let Ok(text) = std::str::from_utf8(&self.bytes[..valid]) else {
            return false;
        };
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min()
        {
            // With tools, a call's opening before the stop is not shown either.
            let shown = self.calls.map_or(at, |format| {
                at.min(tools::content_prefix_from(
                    format,
                    &text[..at],
                    self.emitted,
                ))
            });
            if shown > self.emitted {
                (self.sink)(&text[self.emitted..shown]);
                self.emitted = shown;
            }
            self.bytes.truncate(at);
            return true;
        }
        let mut safe = valid - held_back(text, self.stops);
        if let Some(format) = self.calls {
            safe = safe.min(tools::content_prefix_from(format, text, self.emitted));
        }
        if safe > self.emitted {
            (self.sink)(&text[self.emitted..safe]);
            self.emitted = safe;
        }
        false
    }

    /// The whole text, what was held back streamed.
    fn finish(self) -> String {
        let text = String::from_utf8_lossy(&self.bytes).into_owned();
        if text.len() > self.emitted {
            (self.sink)(&text[self.emitted..]);
        }
        text
    }
}

/// A prompt as tokens: where its last turn starts (see [`turn_cut`]) and the tokens
/// that open a user message after an answer.
struct PromptTokens<'m> {
    tokens: Vec<LlamaToken>,
    cut: Option<usize>,
    opening: &'m [LlamaToken],
}

/// The prompt templated and tokenized, checked to fit `context_length`.
fn tokenize<'m>(
    model: &'m ChatModel,
    prompt: &Prompt,
    params: &GenerateParams,
    context_length: u32,
) -> Result<PromptTokens<'m>> {
    check_prompt_size(prompt, context_length)?;
    let rendered = render_prompt(model, prompt, params.raw, params.tools.as_deref())?;
    let vocab = model.vocab();
    let tokens = vocab.tokenize(rendered.as_bytes(), true, true);
    if tokens.is_empty() {
        return Err(OrionError::InvalidInput("the prompt is empty".into()));
    }
    let n = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
    if n.saturating_add(1) > context_length {
        return Err(OrionError::PromptTooLong {
            tokens: n,
            context: context_length,
            at_least: false,
        });
    }
    let opening: &[LlamaToken] = if params.raw {
        &[]
    } else {
        model.user_opening.get_or_init(|| user_opening(model))
    };
    let cut = turn_cut(&vocab, &tokens, params.raw, opening);
    Ok(PromptTokens {
        tokens,
        cut,
        opening,
    })
}

/// A context whose KV cache holds the whole prompt, its logits at the last token.
struct Evaluated {
    ctx: ModelContext,
    batch: LlamaBatch<'static>,
    step: usize,
    /// Prompt tokens found in a kept context.
    reused: usize,
    /// The tokens in the context's KV cache, kept with it afterwards.
    in_cache: Vec<LlamaToken>,
    prompt_ms: f64,
}

/// Evaluate the prompt, from a kept context sharing a prefix with it when there is one.
fn evaluate_prompt(
    model: &ChatModel,
    p: &PromptTokens<'_>,
    context_length: u32,
    params: &GenerateParams,
    cancel: &AtomicBool,
) -> Result<Evaluated> {
    let needed = u32::try_from(p.tokens.len())
        .unwrap_or(u32::MAX)
        .saturating_add(params.max_tokens.max(1));
    let (mut ctx, reused) = context_for(model, (&p.tokens, p.cut), needed, context_length, params)?;
    let step = (ctx.n_batch() as usize).clamp(1, PROMPT_STEP);
    let started = Instant::now();
    let mut batch = LlamaBatch::new(step, 1);
    let mut pos = reused;
    evaluate(
        &mut ctx,
        &mut batch,
        &p.tokens,
        (&mut pos, p.cut),
        step,
        cancel,
    )?;
    Ok(Evaluated {
        ctx,
        batch,
        step,
        reused,
        in_cache: p.tokens.clone(),
        prompt_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

/// Most tokens an answer may have, and why it ends when it has them: the caller's
/// `maxTokens`, or no room left in the context (a long prompt).
fn limit(max_tokens: u32, room: u32) -> (u32, FinishReason) {
    if max_tokens <= room {
        (max_tokens, FinishReason::MaxTokens)
    } else {
        (room, FinishReason::ContextFull)
    }
}

/// Generate on `model` in a fresh context of at most `context_length` tokens, in
/// stages: the prompt as tokens ([`tokenize`]), evaluated from a kept prefix when there
/// is one ([`evaluate_prompt`]), then token by token: picked by the sampler chain
/// ([`Picker`]), turned into text and cut at stop strings ([`TextOut`]), streamed to
/// `on_text`. `cancel` stops within a token. With the prefix cache on, the context comes
/// back [`Unsettled`]: the caller delivers the answer, then keeps it (see
/// [`Unsettled::keep`]).
pub(crate) fn generate(
    model: &ChatModel,
    context_length: u32,
    prompt: &Prompt,
    params: &GenerateParams,
    cancel: &AtomicBool,
    on_text: &mut dyn FnMut(&str),
) -> Result<(Generation, Option<Unsettled>)> {
    let p = tokenize(model, prompt, params, context_length)?;
    // Before the prompt is evaluated: a schema or grammar llama.cpp refuses costs nothing
    // then, and the kept context a chat would continue from is not taken.
    let (mut grammar, calls) = constraint(model, params)?;
    let Evaluated {
        mut ctx,
        mut batch,
        step,
        reused,
        mut in_cache,
        prompt_ms,
    } = evaluate_prompt(model, &p, context_length, params, cancel)?;
    let (tokens, opening) = (&p.tokens, p.opening);
    let vocab = model.vocab();
    let n_ctx = ctx.n_ctx();
    let prompt_tokens = u32::try_from(tokens.len()).unwrap_or(u32::MAX);

    let mut picker = Picker::new(model, params);
    let mut out = TextOut::new(&params.stop, on_text);
    out.calls = calls.map(|(f, _)| f);
    let gen_started = Instant::now();
    let mut generated = 0u32;
    let mut n_past = i32::try_from(tokens.len()).unwrap_or(i32::MAX);
    let (max_new, mut finish) = limit(params.max_tokens, n_ctx - prompt_tokens);
    while generated < max_new {
        if cancel.load(Ordering::Relaxed) || crate::lifecycle::is_shut_down() {
            ends_answer(params, generated)?;
            finish = FinishReason::Abort;
            break;
        }
        let Some(token) = picker.pick(ctx.get(), batch.n_tokens() - 1, grammar.as_mut()) else {
            return Err(grammar::stuck(grammar.as_ref()));
        };
        if vocab.is_eog(token) {
            finish = FinishReason::Eos;
            // Not evaluated now, but by `settle`: the next prompt has it after this answer,
            // and then the opening of the next user message.
            if params.prefix_cache && in_cache.len() + 1 + opening.len() <= n_ctx as usize {
                in_cache.push(token);
                in_cache.extend_from_slice(opening);
            }
            break;
        }
        generated += 1;
        if let Some(g) = grammar.as_mut() {
            g.accept(token)?;
        }
        // A call's markers are special tokens in some vocabularies (`[TOOL_CALLS]`):
        // with tools they are written out, for the calls to be read.
        if out.push(&vocab.token_to_piece(token, calls.is_some(), None)) {
            finish = FinishReason::Stop;
            break;
        }
        if generated == max_new {
            // Not evaluated now, but by `settle`, with the end of turn the next prompt
            // closes this answer with.
            if params.prefix_cache && in_cache.len() + 2 + opening.len() <= n_ctx as usize {
                in_cache.push(token);
                if let Some(&end) = tokens.iter().rev().find(|&&t| vocab.is_eog(t)) {
                    in_cache.push(end);
                    in_cache.extend_from_slice(opening);
                }
            }
            break;
        }
        batch.clear();
        batch
            .add(token, n_past, &[0], true)
            .map_err(|e| OrionError::Internal(format!("batch: {e}")))?;
        n_past += 1;
        ctx.decode(&mut batch)
            .map_err(|e| OrionError::InferenceFailed(format!("generation: {e}")))?;
        in_cache.push(token);
    }
    let (text, tool_calls, finish) = answer(out, calls, finish);
    let generation_ms = gen_started.elapsed().as_secs_f64() * 1000.0;
    let t = ctx.timings();
    let threads = ctx.threads();
    let per_s = |n: f64, ms: f64| if ms > 0.0 { n * 1000.0 / ms } else { 0.0 };
    let first_cut = p.cut.unwrap_or(tokens.len());
    let unsettled = params.prefix_cache.then(|| Unsettled {
        settling: model.contexts.begin_settling(in_cache.clone(), ctx.n_ctx()),
        contexts: model.contexts.clone(),
        ctx: Some(ctx),
        batch,
        in_cache,
        first_cut,
        step,
    });
    let generation = Generation {
        text,
        tokens: generated,
        finish_reason: finish,
        timings: Timings {
            prompt_tokens,
            prompt_ms,
            prompt_tokens_per_second: per_s(f64::from(prompt_tokens), prompt_ms),
            generated_tokens: generated,
            generation_ms,
            tokens_per_second: per_s(f64::from(generated), generation_ms),
            llama_prompt_tokens_per_second: per_s(f64::from(t.n_p_eval()), t.t_p_eval_ms()),
            llama_tokens_per_second: per_s(f64::from(t.n_eval()), t.t_eval_ms()),
            reused_prompt_tokens: u32::try_from(reused).unwrap_or(u32::MAX),
            threads: threads.and_then(|t| u32::try_from(t).ok()),
        },
        tool_calls,
        ..Generation::default()
    };
    Ok((generation, unsettled))
}

/// The grammar a generation follows (a schema's, a GBNF grammar, or the offered tools'
/// calls), and with tools, the syntax their calls come in.
fn constraint<'p>(model: &ChatModel, params: &'p GenerateParams) -> Result<Constrained<'p>> {
    let offered = params
        .tools
        .as_deref()
        .filter(|t| t.choice != ToolChoice::None);
    let Some(t) = offered else {
        return Ok((Grammar::for_output(model, params.output.as_ref())?, None));
    };
    let format = model.jinja(true)?.format;
    let grammar = tools::constraint(format, t, &grammar::schema_to_gbnf)
        .map_err(OrionError::SchemaUnsupported)?
        .map(|c| Grammar::for_tools(model, &c))
        .transpose()?;
    Ok((grammar, Some((format, t))))
}

/// The answer's text and calls (with tools, see [`read_calls`]), and why it ended.
fn answer(
    out: TextOut<'_>,
    calls: Option<(Format, &Tools)>,
    finish: FinishReason,
) -> (String, Vec<ToolCall>, FinishReason) {
    match calls {
        None => (out.finish(), Vec::new(), finish),
        Some((format, t)) => {
            let cut = finish != FinishReason::Eos;
            let (text, calls) = read_calls(out, format, &t.tools, cut);
            // An abort says so, whatever calls were complete before it.
            let finish = if calls.is_empty() || finish == FinishReason::Abort {
                finish
            } else {
                FinishReason::ToolCalls
            };
            (text, calls, finish)
        }
    }
}

/// The grammar and the tool-call syntax of a generation (see [`constraint`]).
type Constrained<'p> = (Option<Grammar>, Option<(Format, &'p Tools)>);

/// An answer given tools: its calls, read in `format`, and its text without them. What
/// was held back from the stream is streamed when the answer calls nothing (in the
/// generic format, the reply inside its JSON), unless the answer was `cut` (a stop
/// string, `maxTokens`, the context's end) inside what may be a call: an unfinished call
/// stays in the text only.
fn read_calls(
    out: TextOut<'_>,
    format: Format,
    offered: &[crate::chat::Tool],
    cut: bool,
) -> (String, Vec<ToolCall>) {
    let TextOut {
        bytes,
        emitted,
        sink,
        ..
    } = out;
    let whole = String::from_utf8_lossy(&bytes).into_owned();
    let parsed = tools::parse(format, &whole, offered);
    if !parsed.calls.is_empty() {
        return (parsed.content, parsed.calls);
    }
    if format == Format::Generic {
        // Cut, it is JSON that never closed: nothing of it is a reply.
        if !cut {
            sink(&parsed.content);
        }
        return (parsed.content, Vec::new());
    }
    let end = if cut {
        tools::content_prefix_from(format, &whole, emitted)
    } else {
        whole.len()
    };
    if end > emitted && whole.is_char_boundary(emitted) && whole.is_char_boundary(end) {
        sink(&whole[emitted..end]);
    }
    (whole, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_too_big_for_any_tokenization_are_rejected_by_size() {
        let fits = Prompt::Text("x".repeat(2048 * MAX_BYTES_PER_TOKEN));
        assert!(check_prompt_size(&fits, 2048).is_ok());
        let huge = Prompt::Text("x".repeat(50_000_000));
        let e = check_prompt_size(&huge, 2048).unwrap_err();
        assert_eq!(e.code(), "PROMPT_TOO_LONG");
        assert!(e.to_string().contains("at least 195312 tokens"), "{e}");
        let chat = Prompt::Messages(vec![Message::text("user", "y".repeat(600_000))]);
        assert!(check_prompt_size(&chat, 2048).is_err());
    }

    #[test]
    fn text_is_whole_characters_cut_at_the_first_stop_string() {
        let stops = vec!["\nUser:".to_string()];
        let mut seen = String::new();
        let mut sink = |t: &str| seen.push_str(t);
        let mut out = TextOut::new(&stops, &mut sink);
        // "é" split across two tokens, then a stop string split across three.
        assert!(!out.push(b"caf\xc3"));
        assert!(!out.push(b"\xa9 ok\nUs"));
        assert!(out.push(b"er: more"));
        assert_eq!(out.finish(), "café ok");
        assert_eq!(seen, "café ok");
        // Without stop strings everything valid streams at once; a dangling byte at the
        // end is shown replaced.
        let mut seen = String::new();
        let mut sink = |t: &str| seen.push_str(t);
        let mut out = TextOut::new(&[], &mut sink);
        assert!(!out.push(b"a\xc3"));
        assert_eq!(out.finish(), "a\u{fffd}");
        assert_eq!(seen, "a\u{fffd}");
    }

    #[test]
    fn text_that_may_start_a_stop_string_is_held_back() {
        let stops = vec!["\nUser:".to_string(), "###".to_string()];
        assert_eq!(held_back("Hello\nUs", &stops), 3);
        assert_eq!(held_back("Hello #", &stops), 1);
        assert_eq!(held_back("Hello", &stops), 0);
        assert_eq!(held_back("anything", &[]), 0);
    }

    /// The demo model. The test command fetches it before `cargo test`; a missing model
    /// fails the test rather than letting it pass without having run.
    #[test]
    fn a_context_keeps_its_model_alive_when_the_model_is_dropped_first() {
        let model = demo_model();
        let mut ctx = model.new_context(256, 2).unwrap();
        assert!(model.owns(&ctx));
        assert!(!demo_model().owns(&ctx));
        let bos = model.vocab().bos();
        // Before `ModelContext`, dropping the model here freed what the context uses.
        drop(model);
        let mut batch = LlamaBatch::new(8, 1);
        batch.add(bos, 0, &[0], true).unwrap();
        ctx.decode(&mut batch).unwrap();
        let logits = ctx.get().get_logits_ith(0);
        assert!(!logits.is_empty() && logits.iter().all(|x| x.is_finite()));
    }

    /// A conversation without tools renders the same through the Jinja template (used
    /// once tools or calls appear) as through llama.cpp's: a chat that starts using tools
    /// keeps its kept prefix, and counts agree.
    #[test]
    fn jinja_and_llama_cpp_render_a_plain_chat_alike() {
        let model = demo_model();
        let messages = [
            Message::text("system", "Be brief."),
            Message::text("user", "Hello."),
            Message::text("assistant", "Hi."),
            Message::text("user", "Apples?"),
        ];
        let jinja = model.jinja(false).unwrap();
        assert_eq!(
            jinja.render(&messages, None).unwrap(),
            render_messages(&model, &messages, true).unwrap()
        );
    }

    fn demo_model() -> ChatModel {
        ChatModel::new(demo_llama_model(), None, None, None)
    }

    fn demo_llama_model() -> LlamaModel {
        let path = crate::paths::models_dir()
            .join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(
            path.exists(),
            "this test needs the demo model at {}: run `node scripts/models.js` to fetch it",
            path.display()
        );
        let params = llama_cpp_2::model::params::LlamaModelParams::default();
        LlamaModel::load_from_file(super::super::backend::backend().unwrap(), path, &params)
            .unwrap()
    }

    #[test]
    fn a_chat_continued_from_a_kept_context_answers_the_same_and_evaluates_only_new_tokens() {
        let model = demo_model();
        let never = AtomicBool::new(false);
        // The conversation of `bench/chat.js`, whose fourth answer once differed.
        let questions = [
            "What is the capital of France?",
            "How many legs does a spider have?",
            "Can you name three primary colors?",
            "Why is the sky blue?",
            "What is the boiling point of water at sea level?",
            "Give me a short tip for learning a new language.",
            "Who wrote the play Romeo and Juliet?",
            "What is 12 multiplied by 7?",
            "Suggest a name for a small black cat.",
            "Summarize our conversation in one sentence.",
        ];
        let mut history = vec![Message::text("system", "You are a helpful assistant.")];
        let base = GenerateParams {
            temperature: 0.0,
            max_tokens: 48,
            ..Default::default()
        };
        // Both ends of an answer occur: the model's end of turn and maxTokens.
        let mut ended_turns = 0;
        // How the previous turn's context was kept: settled whole before this turn, stopped
        // at once (kept up to where settling starts), or settling on another thread while
        // this turn starts (taken over at a step boundary, or found settled).
        let mut previous = 0;
        std::thread::scope(|scope| {
            let mut settling = None;
            for (turn, q) in questions.iter().enumerate() {
                history.push(Message::text("user", *q));
                let prompt = Prompt::Messages(history.clone());
                let fresh = GenerateParams {
                    prefix_cache: false,
                    ..base.clone()
                };
                let (without, none) =
                    generate(&model, 2048, &prompt, &fresh, &never, &mut |_| {}).unwrap();
                assert!(none.is_none());
                let (with, unsettled) =
                    generate(&model, 2048, &prompt, &base, &never, &mut |_| {}).unwrap();
                if let Some(h) = settling.take() {
                    std::thread::ScopedJoinHandle::join(h).unwrap();
                }
                assert_eq!(with.text, without.text, "turn {}", turn + 1);
                assert_eq!(without.timings.reused_prompt_tokens, 0);
                let new = with.timings.prompt_tokens - with.timings.reused_prompt_tokens;
                if turn > 0 && previous == 0 {
                    // The kept context ends after the last answer's end-of-turn token
                    // (answers cut by maxTokens are kept with the one the next prompt
                    // closes them with) and the template's opening of the next user
                    // message: only the new message and the answer's opening are evaluated.
                    assert!(new < 24, "turn {}: {new} new tokens evaluated", turn + 1);
                }
                // Otherwise as much was reused as was settled (from none to all): the
                // answers are the same either way.
                ended_turns += u32::from(with.finish_reason == FinishReason::Eos);
                history.push(Message::text("assistant", with.text.clone()));
                let unsettled = unsettled.unwrap();
                previous = turn % 3;
                match previous {
                    0 => unsettled.keep(),
                    1 => {
                        unsettled.settling.stop.store(true, Ordering::SeqCst);
                        unsettled.keep();
                    }
                    _ => settling = Some(scope.spawn(move || unsettled.keep())),
                }
            }
        });
        assert!(
            ended_turns >= 5,
            "only {ended_turns} answers ended their turn"
        );
        assert_eq!(model.contexts.len(), 1);
        assert_eq!(model.contexts.clear(None), 1);
    }

    #[test]
    fn the_user_opening_of_a_chatml_template_is_found() {
        let model = demo_model();
        let opening = user_opening(&model);
        let vocab = model.vocab();
        let text: String = opening
            .iter()
            .map(|&t| String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned())
            .collect();
        assert_eq!(text, "\n<|im_start|>user\n");
    }

    #[test]
    fn fast_greedy_picks_exactly_what_llama_cpp_would() {
        let model = demo_model();
        let prompt = Prompt::Text("Write a short story about a robot learning to paint.".into());
        let never = AtomicBool::new(false);
        for penalty in [1.0, 1.1, 1.5] {
            let params = GenerateParams {
                temperature: 0.0,
                max_tokens: 96,
                repeat_penalty: penalty,
                ..Default::default()
            };
            let fast = generate(&model, 2048, &prompt, &params, &never, &mut |_| {})
                .unwrap()
                .0;
            let reference = GenerateParams {
                reference_sampler: true,
                ..params
            };
            let slow = generate(&model, 2048, &prompt, &reference, &never, &mut |_| {})
                .unwrap()
                .0;
            assert_eq!(fast.text, slow.text, "repeat penalty {penalty}");
            assert!(fast.tokens > 10);
        }
    }
}
