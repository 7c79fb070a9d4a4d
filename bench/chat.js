#!/usr/bin/env node
'use strict'
// Chat benchmark: a conversation of ten turns with the built-in `demo` GGUF
// (SmolLM2-135M-Instruct Q4_1), each turn answered with the whole history before it, four ways:
//   fresh   orion-native with `prefixCache: false`: a fresh context per turn, the whole
//           prompt evaluated every time (the behaviour before the prefix cache);
//   cached  orion-native with its prefix cache (the default): a turn starts from the context
//           kept from the previous one and evaluates only the tokens after the shared prefix;
//   session orion-native's chat session (`createChatSession`, `send`): the addon keeps the
//           history, each turn sends only the new question;
//   nlc     node-llama-cpp's LlamaChatSession on the same GGUF and thread count, which keeps
//           its context sequence from turn to turn.
//
//   node bench/chat.js [--quick] [--json]
//
//   --quick  one conversation per way: a smoke test of the script, not numbers to quote
//   --json   print the results JSON on stdout instead of the report (progress goes to stderr)
//
// Measures, per turn and above all for the last: time to first token (from the call to the
// first streamed piece: orion-native's onToken, node-llama-cpp's onToken), the prompt's tokens
// and how many of them were evaluated (orion-native: promptTokens − reusedPromptTokens;
// node-llama-cpp: the tokens its context sequence's token meter counts between the call and
// the first token), and the time of the whole turn. The issue's targets for turn 10: the
// prefix cache's time to first token at most 0.3× the fresh context's and no more than
// node-llama-cpp's, with the same answers as the fresh context (greedy decoding); a chat
// session's turn 10 keeps that time (at most 1.1× the prefix cache's through `generate`).
//
// Each way builds its own history from its own answers (system "You are a helpful
// assistant.", then ten fixed user questions; temperature 0, maxTokens 48 per answer; the
// same repeat penalty, both defaults; node-llama-cpp renders the GGUF's own chat template,
// as orion-native does, instead of its default wrapper). Every conversation starts cold:
// orion-native's model is unloaded and loaded again before each (unloading frees the kept
// contexts, so the first turn shares nothing), and node-llama-cpp gets a new context and
// session. Each way is warmed up once with a short conversation, the conversations of the
// four ways are interleaved (their order rotating) so that a noisy moment hurts all of them,
// and medians are reported. The full results go to bench/results/chat-<date>.json
// (chat-<date>-quick.json for --quick).
//
// Peers come from bench/package.json: `cd bench && npm install --ignore-scripts`. node-llama-cpp
// uses its prebuilt CPU binaries and is never allowed to build or download (`build: 'never'`).

const fs = require('node:fs')
const path = require('node:path')
const { performance } = require('node:perf_hooks')
const {
  log,
  sleep,
  fmt,
  summary,
  machine,
  writeResults,
  parseArgs,
  die,
  markdownTable,
  machineLines,
  nodeLlama,
} = require('./common')

const ROOT = path.join(__dirname, '..')
const MODEL_KEY = 'demo'
const SYSTEM_PROMPT = 'You are a helpful assistant.'
const QUESTIONS = [
  'What is the capital of France?',
  'How many legs does a spider have?',
  'Can you name three primary colors?',
  'Why is the sky blue?',
  'What is the boiling point of water at sea level?',
  'Give me a short tip for learning a new language.',
  'Who wrote the play Romeo and Juliet?',
  'What is 12 multiplied by 7?',
  'Suggest a name for a small black cat.',
  'Summarize our conversation in one sentence.',
]
const MAX_TOKENS = 48
const CONTEXT_SIZE = 2048 // node-llama-cpp's context (a conversation needs under 1000 tokens)
const BATCH_SIZE = 512 // orion-native's n_batch
// The issue's targets for the last turn's time to first token.
const VS_FRESH_TARGET = 0.3 // prefix cache ≤ 0.3 × fresh context
const VS_NLC_TARGET = 1 // prefix cache ≤ node-llama-cpp
const SESSION_TARGET = 1.1 // chat session ≤ 1.1 × prefix cache through generate
// Before every turn: lets the previous turn's idle threads stop spinning, which on a small
// machine would slow the next one down (a person typing the next question pauses longer).
const PAUSE_MS = 250

const PLANS = {
  quick: { repetitions: 1 },
  full: { repetitions: 7 },
}

const WAYS = ['fresh', 'cached', 'session', 'nlc']
const LABELS = {
  fresh: 'orion-native, fresh context (prefixCache: false)',
  cached: 'orion-native, prefix cache',
  session: 'orion-native, createChatSession',
  nlc: 'node-llama-cpp LlamaChatSession',
}

// ---------------------------------------------------------------------------------------
// The ways. Each has start() (a cold start, untimed), turn(history, question) → one measured
// turn, and end().

/**
 * One orion-native turn, measured as its caller waits: `call(onToken)` starts it; the time
 * to the first streamed piece, the whole turn, and the result's timings.
 */
async function timedTurn(call) {
  let first = null
  let pieces = 0
  const started = performance.now()
  const r = await call(() => {
    first ??= performance.now()
    pieces++
  })
  const ended = performance.now()
  const t = r.timings
  return {
    ttftMs: (first ?? ended) - started,
    totalMs: ended - started,
    promptTokens: t.promptTokens,
    evaluatedTokens: t.promptTokens - t.reusedPromptTokens,
    reusedTokens: t.reusedPromptTokens,
    promptMs: t.promptMs,
    tokens: r.tokens,
    pieces,
    finishReason: r.finishReason,
    droppedMessages: r.droppedMessages,
    text: r.text,
  }
}

function orionWay(loader, prefixCache) {
  return {
    reloadMs: [],
    async start() {
      const started = performance.now()
      await loader.unloadModel(MODEL_KEY) // frees the contexts the previous conversation kept
      await loader.loadModel(MODEL_KEY)
      this.reloadMs.push(performance.now() - started)
    },
    turn: (history) =>
      timedTurn((onToken) =>
        loader.generate(MODEL_KEY, history, { temperature: 0, maxTokens: MAX_TOKENS, prefixCache, onToken }),
      ),
    async end() {},
  }
}

/** A chat session: the addon keeps the history; each turn sends the new question only. */
function sessionWay(loader) {
  let session = null
  return {
    async start() {
      await loader.unloadModel(MODEL_KEY) // frees the contexts the previous conversation kept
      await loader.loadModel(MODEL_KEY)
      session = loader.createChatSession(MODEL_KEY, { system: SYSTEM_PROMPT })
    },
    async turn(history, question) {
      const s = await timedTurn((onToken) => session.send(question, { temperature: 0, maxTokens: MAX_TOKENS, onToken }))
      // The session's history is the conversation every way builds.
      if (session.history.length !== history.length + 1) throw new Error('the session lost a message')
      return s
    },
    async end() {
      session = null
    },
  }
}

async function importNodeLlamaCpp() {
  // ESM-only: a dynamic import, resolved from bench/node_modules.
  return import('node-llama-cpp')
}

async function nlcWay(threads, modelPath) {
  const nlc = await importNodeLlamaCpp()
  const llama = await nodeLlama(nlc, threads, (level, message) => {
    if (level === 'error' || level === 'fatal') log(`node-llama-cpp: ${message}`)
  })
  const model = await llama.loadModel({ modelPath })
  // The GGUF's own chat template, as orion-native renders it: node-llama-cpp's default for this
  // model (its ChatML wrapper) puts a BOS token before the first <|im_start|>, and for SmolLM2
  // the BOS token is <|im_start|> itself, so the prompt would begin with it twice (and the
  // model then answers in French loops).
  const template = model.fileInfo.metadata?.tokenizer?.chat_template
  const chatWrapper = template ? new nlc.JinjaTemplateChatWrapper({ template }) : undefined
  const settings = {}
  let context = null
  let sequence = null
  let session = null
  return {
    version: JSON.parse(fs.readFileSync(path.join(__dirname, 'node_modules/node-llama-cpp/package.json'), 'utf8'))
      .version,
    buildType: llama.buildType,
    llamaCpp: `${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release}`,
    settings,
    async start() {
      context = await model.createContext({
        contextSize: CONTEXT_SIZE,
        batchSize: BATCH_SIZE,
        threads: { ideal: threads, min: threads },
      })
      sequence = context.getSequence()
      session = new nlc.LlamaChatSession({ contextSequence: sequence, systemPrompt: SYSTEM_PROMPT, chatWrapper })
      Object.assign(settings, {
        contextSize: context.contextSize,
        batchSize: context.batchSize,
        flashAttention: context.flashAttention,
        idealThreads: context.idealThreads,
        chatWrapper: session.chatWrapper.wrapperName,
      })
    },
    async turn(history, question) {
      const meter = sequence.tokenMeter
      const before = meter.usedInputTokens + meter.usedOutputTokens
      let first = null
      let promptTokens = null
      let evaluatedTokens = null
      let tokens = 0
      const onToken = (chunk) => {
        if (first == null) {
          first = performance.now()
          // The first token is sampled, not yet evaluated: the sequence holds the prompt, and
          // the meter counts every token decoded for it in this turn.
          promptTokens = sequence.nextTokenIndex
          evaluatedTokens = meter.usedInputTokens + meter.usedOutputTokens - before
        }
        tokens += chunk.length
      }
      const started = performance.now()
      const r = await session.promptWithMeta(question, { temperature: 0, maxTokens: MAX_TOKENS, onToken })
      const ended = performance.now()
      return {
        ttftMs: (first ?? ended) - started,
        totalMs: ended - started,
        promptTokens,
        evaluatedTokens,
        reusedTokens: promptTokens == null ? null : promptTokens - evaluatedTokens,
        tokens,
        finishReason: r.stopReason,
        text: r.responseText,
      }
    },
    async end() {
      session?.dispose()
      await context?.dispose()
      session = sequence = context = null
    },
    dispose: () => llama.dispose(),
  }
}

// ---------------------------------------------------------------------------------------
// Conversations.

async function conversation(way, questions = QUESTIONS) {
  const history = [{ role: 'system', content: SYSTEM_PROMPT }]
  await way.start()
  try {
    const turns = []
    for (const question of questions) {
      history.push({ role: 'user', content: question })
      await sleep(PAUSE_MS)
      const s = await way.turn(history, question)
      history.push({ role: 'assistant', content: s.text })
      turns.push(s)
    }
    return turns
  } finally {
    await way.end()
  }
}

async function measure({ repetitions, ways }) {
  const names = WAYS.filter((n) => ways[n])
  log('  warming up: a two-turn conversation per way')
  for (const name of names) await conversation(ways[name], QUESTIONS.slice(0, 2))

  const samples = Object.fromEntries(names.map((n) => [n, []])) // [repetition][turn]
  for (let r = 0; r < repetitions; r++) {
    const order = [...names.slice(r % names.length), ...names.slice(0, r % names.length)]
    for (const name of order) {
      const started = performance.now()
      const turns = await conversation(ways[name])
      samples[name].push(turns)
      const last = turns.at(-1)
      log(
        `  repetition ${r + 1}/${repetitions} ${name.padEnd(6)}: ${fmt((performance.now() - started) / 1000)} s, ` +
          `turn ${turns.length}: first token ${fmt(last.ttftMs)} ms, ${last.evaluatedTokens} of ${last.promptTokens} prompt tokens evaluated`,
      )
    }
  }

  const pick = (list, f) => summary(list.map(f))
  const side = (reps) => ({
    turns: QUESTIONS.map((_, t) => {
      const at = reps.map((turns) => turns[t])
      return {
        turn: t + 1,
        ttftMs: pick(at, (s) => s.ttftMs),
        totalMs: pick(at, (s) => s.totalMs),
        promptTokens: pick(at, (s) => s.promptTokens),
        evaluatedTokens: pick(at, (s) => s.evaluatedTokens),
        reusedTokens: pick(at, (s) => s.reusedTokens),
        tokens: pick(at, (s) => s.tokens),
        finishReasons: [...new Set(at.map((s) => s.finishReason))],
      }
    }),
    // The whole conversation: the ten turns' times added up (pauses and cold start left out).
    conversationMs: pick(reps, (turns) => turns.reduce((a, s) => a + s.totalMs, 0)),
    // The same answers in every repetition (greedy decoding): true when deterministic.
    answersStable: reps.every((turns) => turns.every((s, t) => s.text === reps[0][t].text)),
    answers: reps[0].map((s) => s.text),
    samples: reps,
  })
  const result = { repetitions }
  for (const name of names) result[name] = side(samples[name])

  const last = QUESTIONS.length - 1
  const ttft = (name) => result[name]?.turns[last].ttftMs.median ?? null
  result.lastTurn = {
    turn: last + 1,
    ttftMs: Object.fromEntries(names.map((n) => [n, ttft(n)])),
    cachedVsFresh: ttft('cached') / ttft('fresh'),
    cachedVsNlc: result.nlc ? ttft('cached') / ttft('nlc') : null,
    sessionVsCached: result.session ? ttft('session') / ttft('cached') : null,
    vsFreshTarget: VS_FRESH_TARGET,
    vsNlcTarget: VS_NLC_TARGET,
    sessionTarget: SESSION_TARGET,
  }
  result.lastTurn.sessionPass = result.session ? result.lastTurn.sessionVsCached <= SESSION_TARGET : null
  // The session sends the same conversation: the same answers as `generate` with the cache.
  result.sessionAnswersEqual = result.session
    ? samples.session.every((turns, r) => turns.every((s, t) => s.text === samples.cached[r][t].text))
    : null
  result.lastTurn.vsFreshPass = result.lastTurn.cachedVsFresh <= VS_FRESH_TARGET
  result.lastTurn.vsNlcPass = result.nlc ? result.lastTurn.cachedVsNlc <= VS_NLC_TARGET : null
  // Every answer of the prefix cache equals the fresh context's, turn by turn, repetition by
  // repetition. Where one does not, the turns after it have different histories: `samePrompt`
  // tells whether the turn that differed had the same history in both (every answer before it
  // equal).
  result.differences = []
  samples.cached.forEach((turns, r) => {
    const fresh = samples.fresh[r]
    turns.forEach((s, t) => {
      if (s.text !== fresh[t].text) {
        const samePrompt = turns.slice(0, t).every((x, i) => x.text === fresh[i].text)
        result.differences.push({ repetition: r + 1, turn: t + 1, samePrompt, fresh: fresh[t].text, cached: s.text })
      }
    })
  })
  result.answersEqual = result.differences.length === 0
  // For information only: another llama.cpp build, which may round differently.
  result.nlcTurnsWithSameAnswer = result.nlc
    ? samples.nlc[0].filter((s, t) => s.text === samples.fresh[0][t].text).length
    : null
  return result
}

// ---------------------------------------------------------------------------------------
// Report.

const ms = (x) => (x == null || !Number.isFinite(x) ? 'n/a' : x < 1 ? `${fmt(x * 1000, 0)} µs` : `${fmt(x, 1)} ms`)
const ratio = (x) => (x == null || !Number.isFinite(x) ? '—' : `${fmt(x, 2)}×`)
const int = (s) => (s == null || !Number.isFinite(s.median) ? 'n/a' : fmt(s.median, 0))
const mark = (pass) => (pass == null ? '(not measured)' : pass ? '✓' : '✗')

// Where the prefix cache first answered otherwise than the fresh context, in words.
function firstDifference(m) {
  const d = m.differences?.find((x) => x.samePrompt)
  if (!d) return ''
  const turns = new Set(m.differences.map((x) => x.turn))
  return (
    `; first at turn ${d.turn} of repetition ${d.repetition}, with the same history in both ` +
    `(fresh ${JSON.stringify(d.fresh)}, cached ${JSON.stringify(d.cached)}); turns that differed in some repetition: ${[...turns].sort((a, b) => a - b).join(', ')}`
  )
}

function report(r) {
  const c = r.config
  const v = r.versions
  const m = r.chat
  const names = WAYS.filter((n) => m[n])
  const L = m.lastTurn
  const lines = [
    `## Chat turns: orion-native's prefix cache${r.quick ? ' (--quick: smoke test, not numbers to quote)' : ''}`,
    '',
    ...machineLines(r),
    `- model \`${MODEL_KEY}\`: ${c.modelPath} (${fmt(c.modelBytes / 1024 ** 2)} MiB), ${c.threads} thread(s) for all`,
    `- orion-native ${v.orionNative}; node-llama-cpp ${v.nodeLlamaCpp ?? 'n/a'} (${v.nodeLlamaCppBuild ?? 'n/a'}, llama.cpp ${v.nodeLlamaCppLlamaCpp ?? 'n/a'}), context: ${
      r.nlcSettings
        ? Object.entries(r.nlcSettings)
            .map(([k, x]) => `${k} ${x}`)
            .join(', ')
        : 'n/a'
    }`,
    `- a conversation: system ${JSON.stringify(c.systemPrompt)}, then ${c.questions.length} user questions, each with the whole history and the way's own answers so far; temperature 0, maxTokens ${c.maxTokens} per answer, repeat penalty 1.1 over 64 tokens (both defaults)`,
    `- every conversation starts cold (orion-native: the model unloaded and loaded again, which frees the kept contexts; node-llama-cpp: a new context and session); ${c.repetitions} conversation(s) per way after a warm-up, interleaved, medians shown`,
    '',
  ]
  if (r.nlcError) lines.push(`node-llama-cpp unavailable: ${r.nlcError}`, '')

  const t = (name) => m[name]?.turns[L.turn - 1]
  const col = (f) => names.map((n) => f(m[n], t(n)))
  lines.push(
    `### Turn ${L.turn} of ${c.questions.length}`,
    '',
    ...markdownTable([
      ['metric', ...names.map((n) => LABELS[n])],
      ['time to first token (median)', ...col((_, x) => ms(x.ttftMs.median))],
      ['time to first token (min – max)', ...col((_, x) => `${ms(x.ttftMs.min)} – ${ms(x.ttftMs.max)}`)],
      ['prompt tokens', ...col((_, x) => int(x.promptTokens))],
      ['prompt tokens evaluated', ...col((_, x) => int(x.evaluatedTokens))],
      ['whole turn (median)', ...col((_, x) => ms(x.totalMs.median))],
      [`all ${c.questions.length} turns (median)`, ...col((s) => ms(s.conversationMs.median))],
    ]),
    '',
    ...markdownTable([
      [`turn ${L.turn} time to first token`, 'ratio', 'target'],
      ['prefix cache ÷ fresh context', ratio(L.cachedVsFresh), `≤ ${VS_FRESH_TARGET}× ${mark(L.vsFreshPass)}`],
      ['prefix cache ÷ node-llama-cpp', ratio(L.cachedVsNlc), `≤ ${VS_NLC_TARGET}× ${mark(L.vsNlcPass)}`],
      ...(L.sessionVsCached != null
        ? [
            [
              'chat session ÷ prefix cache (generate)',
              ratio(L.sessionVsCached),
              `≤ ${SESSION_TARGET}× ${mark(L.sessionPass)}`,
            ],
          ]
        : []),
    ]),
    '',
    `Answers with the prefix cache equal the fresh context's in every turn of every conversation: ${m.answersEqual ? 'yes' : 'no'}` +
      ` (answersEqual: ${m.answersEqual})${firstDifference(m)}.` +
      (m.sessionAnswersEqual != null
        ? ` The chat session's answers equal the prefix cache's through generate: ${m.sessionAnswersEqual ? 'yes' : 'no'}.`
        : '') +
      ` The same answers in every repetition: ${names.map((n) => `${n} ${m[n].answersStable ? 'yes' : 'no'}`).join(', ')}.` +
      (m.nlc
        ? ` node-llama-cpp (another llama.cpp build) answered as orion-native in ${m.nlcTurnsWithSameAnswer} of ${c.questions.length} turns.`
        : ''),
    '',
    '### Every turn (medians)',
    '',
  )
  const header = [
    'turn',
    'prompt tokens (orion-native / nlc)',
    'evaluated: fresh / cached / nlc',
    'first token: fresh',
    'cached',
    'nlc',
    'cached ÷ fresh',
    'cached ÷ nlc',
  ]
  const rows = m.fresh.turns.map((f, i) => {
    const k = m.cached.turns[i]
    const n = m.nlc?.turns[i]
    return [
      String(i + 1),
      `${int(f.promptTokens)} / ${int(n?.promptTokens)}`,
      `${int(f.evaluatedTokens)} / ${int(k.evaluatedTokens)} / ${int(n?.evaluatedTokens)}`,
      ms(f.ttftMs.median),
      ms(k.ttftMs.median),
      ms(n?.ttftMs.median),
      ratio(k.ttftMs.median / f.ttftMs.median),
      n ? ratio(k.ttftMs.median / n.ttftMs.median) : '—',
    ]
  })
  lines.push(
    ...markdownTable([header, ...rows]),
    '',
    'Time to first token runs from the call to the first streamed piece. Evaluated: prompt tokens run through the model in that turn ' +
      '(orion-native: promptTokens − reusedPromptTokens; node-llama-cpp: its sequence’s token meter up to the first token). ' +
      'node-llama-cpp renders the GGUF’s own chat template, as orion-native does: their prompts are the same token for token ' +
      'until their answers differ (another llama.cpp build), and only slightly longer or shorter after that.',
  )
  return lines.join('\n')
}

// ---------------------------------------------------------------------------------------

async function main() {
  const { quick, json } = parseArgs('chat.js', process.argv.slice(2))
  const plan = quick ? PLANS.quick : PLANS.full
  const orion = require(ROOT)
  const loader = orion.getModelLoader()
  const threads = orion.getOptimizationStrategy().threads
  const results = {
    date: new Date().toISOString(),
    quick,
    machine: machine(),
    config: {
      model: MODEL_KEY,
      threads,
      systemPrompt: SYSTEM_PROMPT,
      questions: QUESTIONS,
      temperature: 0,
      maxTokens: MAX_TOKENS,
      nlcContextSize: CONTEXT_SIZE,
      nlcBatchSize: BATCH_SIZE,
      pauseMs: PAUSE_MS,
      ...plan,
    },
    versions: { orionNative: require('../package.json').version },
  }

  log('loading orion-native')
  const info = await loader.loadModel(MODEL_KEY)
  Object.assign(results.config, { modelPath: info.path, modelBytes: info.bytes, quantization: info.quantization })
  const ways = { fresh: orionWay(loader, false), cached: orionWay(loader, true), session: sessionWay(loader) }

  log('loading node-llama-cpp')
  try {
    ways.nlc = await nlcWay(threads, info.path)
    Object.assign(results.versions, {
      nodeLlamaCpp: ways.nlc.version,
      nodeLlamaCppBuild: ways.nlc.buildType,
      nodeLlamaCppLlamaCpp: ways.nlc.llamaCpp,
    })
  } catch (e) {
    // orion-native is still measured; the report says why the node-llama-cpp column is empty.
    results.nlcError = `${e.code ? e.code + ': ' : ''}${e.message} (install the peers: cd bench && npm install --ignore-scripts --no-audit --no-fund)`
    log(`node-llama-cpp unavailable: ${results.nlcError}`)
  }

  log(`chat: ${plan.repetitions} conversation(s) of ${QUESTIONS.length} turns per way`)
  results.chat = await measure({ repetitions: plan.repetitions, ways })
  results.nlcSettings = ways.nlc?.settings
  results.reloadMs = {
    fresh: summary(ways.fresh.reloadMs),
    cached: summary(ways.cached.reloadMs),
  }
  await ways.nlc?.dispose()
  results.loadAverageAfter = require('node:os').loadavg()

  const file = writeResults('chat', results)
  if (json) process.stdout.write(JSON.stringify(results, null, 2) + '\n')
  else process.stdout.write(`${report(results)}\n\nFull results: ${path.relative(process.cwd(), file)}\n`)
}

if (require.main === module) {
  main()
    .then(() => process.exit(0)) // node-llama-cpp and the addon may keep the event loop alive
    .catch(die)
}

module.exports = { report }
