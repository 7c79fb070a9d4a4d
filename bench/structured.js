#!/usr/bin/env node
'use strict'
// Structured-output benchmark: constrained generation (a JSON schema) against unconstrained
// generation on the demo model, and against node-llama-cpp's JSON-schema grammar on the
// same GGUF, threads and prompts, in one run.
//
//   node bench/structured.js [--quick] [--json]
//
// Measures
//   Generation tokens/s as the caller sees it, measured the same way for all three: from the
//   first streamed piece to the last on the JS thread (orion-native's `onToken`,
//   node-llama-cpp's `onToken`), tokens after the first, for the prompts below, each asking
//   for a small object, sampled at temperature 0.8 with one seed per prompt:
//   - orion-native, unconstrained (at most as many tokens as the constrained answer had,
//     so both runs generate about as much);
//   - orion-native with `jsonSchema` (the default engine, llguidance: its parser checks the
//     sampled token, and the vocabulary is filtered only when it refuses it);
//   - orion-native with `jsonSchema` and `schemaEngine: 'llama.cpp'` (llama.cpp's
//     schema-to-grammar conversion and grammar sampler, used the same way);
//   - node-llama-cpp 3.x with `llama.createGrammarForJsonSchema(schema)` in a
//     LlamaChatSession (its prebuilt CPU binaries, the same thread count).
//   Goals: constrained ≥ 0.9× unconstrained; ≥ 2× node-llama-cpp's constrained rate.
//   Every constrained answer is parsed and checked against the schema's required keys.
//   Also each engine's cost of taking a schema: a one-token answer to the same prompt in a
//   new context each time, median of 7, with the schema and without.
//
// Peers come from bench/package.json (`cd bench && npm install --ignore-scripts`).

const path = require('node:path')
const { performance } = require('node:perf_hooks')
const {
  log,
  fmt,
  summary,
  median,
  machine,
  machineLines,
  writeResults,
  parseArgs,
  die,
  markdownTable,
  nodeLlama,
} = require('./common')

const ROOT = path.join(__dirname, '..')
const SELF_TARGET = 0.9 // constrained ≥ 0.9 × unconstrained
const PEER_TARGET = 2 // constrained ≥ 2 × node-llama-cpp's JSON-schema grammar

const SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 24 },
    age: { type: 'integer', minimum: 0, maximum: 120 },
    city: { type: 'string', maxLength: 24 },
    hobbies: { type: 'array', items: { type: 'string', maxLength: 16 }, maxItems: 3 },
  },
  required: ['name', 'age', 'city', 'hobbies'],
  additionalProperties: false,
}

const SUBJECTS = [
  'a retired sailor',
  'a young painter in Lyon',
  'a chess champion',
  'a baker who loves bread',
  'a librarian in Cairo',
  'an astronaut on Mars',
  'a gardener in Kyoto',
  'a detective in London',
]
const prompt = (s) => `Invent a person: ${s}. Answer in JSON with name, age, city and hobbies.`

const perSecond = (n, ms) => (ms > 0 ? (n * 1000) / ms : NaN)

/**
 * A streamed answer's rate as its caller sees it, measured the same way for both
 * contenders: tokens after the first over the time from the first streamed piece to the
 * last, on the JS thread.
 */
function streamClock() {
  let first = null
  let last = null
  return {
    onToken() {
      const now = performance.now()
      first ??= now
      last = now
    },
    rate: (tokens) => perSecond(tokens - 1, last - first),
  }
}

/** orion-native's rate for one prompt (see `streamClock`). */
async function orionRun(loader, text, options) {
  const clock = streamClock()
  const r = await loader.generate('demo', text, { ...options, onToken: clock.onToken })
  return { text: r.text, tokens: r.tokens, json: r.json, tokensPerSecond: clock.rate(r.tokens) }
}

async function nodeLlamaCpp(modelPath, threads) {
  const nlc = await import('node-llama-cpp')
  const llama = await nodeLlama(nlc, threads)
  const model = await llama.loadModel({ modelPath })
  const grammar = await llama.createGrammarForJsonSchema(SCHEMA)
  const context = await model.createContext({ contextSize: 2048, threads: { ideal: threads, min: threads } })
  const version = require(path.join(__dirname, 'node_modules/node-llama-cpp/package.json')).version
  return {
    version,
    async run(text, seed) {
      const sequence = context.getSequence()
      const session = new nlc.LlamaChatSession({ contextSequence: sequence })
      const clock = streamClock()
      let tokens = 0
      const answer = await session.prompt(text, {
        grammar,
        temperature: 0.8,
        seed,
        maxTokens: 400,
        onToken: (chunk) => {
          clock.onToken()
          tokens += chunk.length
        },
      })
      session.dispose()
      sequence.dispose()
      return { text: answer, tokens, json: grammar.parse(answer), tokensPerSecond: clock.rate(tokens) }
    },
    dispose: () => llama.dispose(),
  }
}

function checked(run, who) {
  for (const k of SCHEMA.required)
    if (!(k in (run.json ?? {}))) throw new Error(`${who}: an answer without "${k}": ${run.text}`)
  return run
}

async function main() {
  const { quick, json } = parseArgs('structured.js', process.argv.slice(2))
  const orion = require(ROOT)
  const threads = orion.getOptimizationStrategy().threads
  const loader = orion.getModelLoader()
  const info = await loader.loadModel('demo')
  const subjects = quick ? SUBJECTS.slice(0, 2) : SUBJECTS
  const results = {
    date: new Date().toISOString(),
    quick,
    machine: machine(),
    config: { threads, prompts: subjects.length, model: path.basename(info.path), schema: SCHEMA },
  }
  let peer = null
  try {
    peer = await nodeLlamaCpp(info.path, threads)
  } catch (e) {
    results.peerError = String(e.message ?? e)
    log(`node-llama-cpp unavailable (${results.peerError}): run \`cd bench && npm install --ignore-scripts\``)
  }
  // Warm everything up (the first generation pays for page faults and each engine's first
  // use: llguidance reads the vocabulary once per model).
  for (const schemaEngine of ['llguidance', 'llama.cpp'])
    await orionRun(loader, prompt('a warm-up'), { jsonSchema: SCHEMA, schemaEngine, temperature: 0.8, maxTokens: 200 })
  if (peer) await peer.run(prompt('a warm-up'), 1)
  results.setupMs = await setup(loader)
  log(
    `one-token answers (ms): no schema ${fmt(results.setupMs.none, 1)}, llama.cpp ${fmt(results.setupMs.llama, 1)}, llguidance ${fmt(results.setupMs.llguidance, 1)}`,
  )
  // `constrained`: the default engine (llguidance); `llamaCpp`: `schemaEngine: 'llama.cpp'`.
  const rates = { constrained: [], unconstrained: [], llamaCpp: [], peer: [] }
  const tokens = { constrained: [], unconstrained: [], llamaCpp: [], peer: [] }
  for (const [i, s] of subjects.entries()) {
    const seed = 100 + i
    const c = checked(
      await orionRun(loader, prompt(s), { jsonSchema: SCHEMA, temperature: 0.8, seed, maxTokens: 400 }),
      'orion-native',
    )
    // The same request unconstrained, cut at the constrained answer's length.
    const u = await orionRun(loader, prompt(s), { temperature: 0.8, seed, maxTokens: c.tokens })
    const l = checked(
      await orionRun(loader, prompt(s), {
        jsonSchema: SCHEMA,
        schemaEngine: 'llama.cpp',
        temperature: 0.8,
        seed,
        maxTokens: 400,
      }),
      'orion-native (llama.cpp)',
    )
    rates.constrained.push(c.tokensPerSecond)
    rates.unconstrained.push(u.tokensPerSecond)
    rates.llamaCpp.push(l.tokensPerSecond)
    tokens.constrained.push(c.tokens)
    tokens.unconstrained.push(u.tokens)
    tokens.llamaCpp.push(l.tokens)
    let line = `${i + 1}/${subjects.length}: llguidance ${fmt(c.tokensPerSecond)} (${c.tokens} tokens), unconstrained ${fmt(u.tokensPerSecond)}, llama.cpp ${fmt(l.tokensPerSecond)} (${l.tokens} tokens)`
    if (peer) {
      const p = checked(await peer.run(prompt(s), seed), 'node-llama-cpp')
      rates.peer.push(p.tokensPerSecond)
      tokens.peer.push(p.tokens)
      line += `, node-llama-cpp ${fmt(p.tokensPerSecond)} (${p.tokens} tokens)`
    }
    log(line)
  }
  if (peer) await peer.dispose()
  results.orion = {
    engine: 'llguidance',
    constrained: summary(rates.constrained),
    unconstrained: summary(rates.unconstrained),
    llamaCpp: summary(rates.llamaCpp),
    tokens: {
      constrained: summary(tokens.constrained),
      unconstrained: summary(tokens.unconstrained),
      llamaCpp: summary(tokens.llamaCpp),
    },
  }
  results.vsUnconstrained = median(rates.constrained) / median(rates.unconstrained)
  results.vsLlamaCpp = median(rates.constrained) / median(rates.llamaCpp)
  if (peer) {
    results.peer = { version: peer.version, constrained: summary(rates.peer), tokens: summary(tokens.peer) }
    results.vsPeer = median(rates.constrained) / median(rates.peer)
  }
  results.pass = {
    self: results.vsUnconstrained >= SELF_TARGET,
    peer: results.vsPeer == null ? null : results.vsPeer >= PEER_TARGET,
  }
  const file = writeResults('structured', results)
  log(`wrote ${path.relative(process.cwd(), file)}`)
  process.stdout.write(json ? JSON.stringify(results, null, 2) + '\n' : report(results) + '\n')
}

/**
 * Each engine's cost of taking a schema: one-token answers to one prompt, each in a new
 * context (`prefixCache: false`), median of 7 each, wall time on the JS thread; the
 * difference with no schema is the engine's.
 */
async function setup(loader) {
  const text = prompt('a sailor')
  const time = async (options) => {
    const ms = []
    for (let i = 0; i < 7; i++) {
      const t = performance.now()
      // One token of JSON is never a whole value: OUTPUT_INCOMPLETE is the expected end.
      await loader
        .generate('demo', text, { ...options, temperature: 0, maxTokens: 1, prefixCache: false })
        .catch((e) => {
          if (e.code !== 'OUTPUT_INCOMPLETE') throw e
        })
      ms.push(performance.now() - t)
    }
    return median(ms)
  }
  await time({})
  return {
    none: await time({}),
    llama: await time({ jsonSchema: SCHEMA, schemaEngine: 'llama.cpp' }),
    llguidance: await time({ jsonSchema: SCHEMA, schemaEngine: 'llguidance' }),
  }
}

/** The README's rows. */
function headline(r) {
  const engine = r.orion.engine ? ` (${r.orion.engine}, the default)` : ''
  const rows = [['comparison', 'orion-native', 'peer', 'peer’s result', 'orion-native vs peer']]
  rows.push([
    `JSON-schema generation${engine} (tokens/s)`,
    fmt(r.orion.constrained.median),
    'orion-native unconstrained, same prompts',
    fmt(r.orion.unconstrained.median),
    `${fmt(r.vsUnconstrained, 2)}×`,
  ])
  rows.push([
    `JSON-schema generation${engine} (tokens/s)`,
    fmt(r.orion.constrained.median),
    r.peer ? `node-llama-cpp ${r.peer.version} createGrammarForJsonSchema` : 'node-llama-cpp (not installed)',
    r.peer ? fmt(r.peer.constrained.median) : 'n/a',
    r.peer ? `${fmt(r.vsPeer, 2)}×` : 'n/a',
  ])
  if (r.orion.llamaCpp)
    rows.push([
      `JSON-schema generation${engine} (tokens/s)`,
      fmt(r.orion.constrained.median),
      "orion-native, `schemaEngine: 'llama.cpp'` (its grammar)",
      fmt(r.orion.llamaCpp.median),
      `${fmt(r.vsLlamaCpp, 2)}×`,
    ])
  if (r.setupMs)
    rows.push([
      `one-token answer, new context, with the schema (ms; without: ${fmt(r.setupMs.none, 1)})`,
      `${fmt(r.setupMs.llguidance, 1)} (llguidance)`,
      "orion-native, `schemaEngine: 'llama.cpp'`",
      fmt(r.setupMs.llama, 1),
      `${fmt(r.setupMs.llama / r.setupMs.llguidance, 2)}× (time ratio)`,
    ])
  return rows
}

function report(r) {
  return [
    '## Structured output: JSON-schema generation',
    '',
    ...machineLines(r),
    `- ${r.config.model}, ${r.config.threads} thread(s) for both, ${r.config.prompts} prompts at temperature 0.8 (one seed each); medians of the generation phase's tokens/s`,
    `- tokens per answer (median): constrained ${fmt(r.orion.tokens.constrained.median, 0)}, unconstrained ${fmt(r.orion.tokens.unconstrained.median, 0)}${r.orion.tokens.llamaCpp ? `, llama.cpp's grammar ${fmt(r.orion.tokens.llamaCpp.median, 0)}` : ''}${r.peer ? `, node-llama-cpp ${fmt(r.peer.tokens.median, 0)}` : ''}`,
    '',
    ...markdownTable(headline(r)),
    '',
    `constrained ≥ ${SELF_TARGET}× unconstrained: ${r.pass.self ? '✓' : '✗'}; ≥ ${PEER_TARGET}× node-llama-cpp: ${r.pass.peer == null ? 'not measured' : r.pass.peer ? '✓' : '✗'}`,
  ].join('\n')
}

if (require.main === module) {
  main()
    .then(() => process.exit(0))
    .catch(die)
}

module.exports = { report, headline }
