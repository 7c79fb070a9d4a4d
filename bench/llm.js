#!/usr/bin/env node
'use strict'
// LLM benchmark: orion-native's ModelLoader side by side with node-llama-cpp on the same
// GGUF file (the built-in `demo` model, SmolLM2-135M-Instruct Q4_1) and the same thread count.
//
//   node bench/llm.js [--quick] [--json]
//
//   --quick  2 runs of 32 tokens: a smoke test of the script, not numbers to quote
//   --json   print the results JSON on stdout instead of the report (progress goes to stderr)
//
// Measures
//   1. model load time in a fresh process (mmap), for both: `loadModel('demo')` for
//      orion-native, `llama.loadModel({ modelPath })` for node-llama-cpp, and the time from
//      the first line of the process to a loaded model (require / import, getLlama included);
//   2. a second `loadModel('demo')` of an already loaded model (median of many calls);
//   3. prompt and generation tokens/s for one fixed chat prompt with greedy decoding, measured
//      the same way for both from JS: the prompt phase is the time from the call to the first
//      streamed token, the generation phase the time from the first to the last streamed token
//      (tokens − 1 of them). orion-native's own timings and llama.cpp's own (`timings.llama*`)
//      for the same runs are reported next to them; for node-llama-cpp, llama.cpp's own timings
//      are read from its context's performance tracking.
//
// Both contenders get the same messages (an explicit system prompt, so that neither adds its
// own default one), the same thread count (orion-native's `getOptimizationStrategy().threads`),
// temperature 0 and the same repeat penalty (1.1 over the last 64 tokens, both defaults), and a
// fresh context per run, so that neither benefits from a prompt cache. Each is warmed up once,
// runs of the two are interleaved (the order alternates) so that a noisy moment hurts both, and
// medians are reported. The full results go to bench/results/llm-<date>.json
// (llm-<date>-quick.json for --quick).
//
// Peers come from bench/package.json: `cd bench && npm install --ignore-scripts`. node-llama-cpp
// uses its prebuilt CPU binaries (the @node-llama-cpp/linux-x64 optional package); it is never
// allowed to build llama.cpp from source or to download anything (`build: 'never'`).

const fs = require('node:fs')
const path = require('node:path')
const {
  log,
  sleep,
  fmt,
  median,
  summary,
  machine,
  writeResults,
  parseArgs,
  die,
  markdownTable,
  machineLines,
  nodeLlama,
} = require('./common')
const { spawnSync } = require('node:child_process')
const { performance } = require('node:perf_hooks')

const ROOT = path.join(__dirname, '..')
const MODEL_KEY = 'demo'
const SYSTEM_PROMPT = 'You are a helpful AI assistant.'
const PROMPT = 'Write a short story about a robot learning to paint.'
const CONTEXT_SIZE = 2048 // node-llama-cpp's context; orion-native sizes its own per request
const BATCH_SIZE = 512 // orion-native's n_batch

const GENERATION_VS_PEER_TARGET = 1.8 // generation ≥ 1.8 × node-llama-cpp
const GENERATION_VS_LLAMA_TARGET = 0.97 // generation ≥ 0.97 × llama.cpp's own timings
const RELOAD_TARGET_MS = 1 // a second loadModel of a loaded model < 1 ms
// Between two generations: lets the previous contender's idle threads stop spinning, which on
// a small machine would otherwise slow the next one down.
const PAUSE_MS = 250

const PLANS = {
  quick: { runs: 2, maxTokens: 32, loadRuns: 2, reloadCalls: 200 },
  full: { runs: 5, maxTokens: 128, loadRuns: 5, reloadCalls: 2000 },
}

// ---------------------------------------------------------------------------------------
// Small helpers.

const perSecond = (n, ms) => (ms > 0 ? (n * 1000) / ms : NaN)

// The thread count orion-native uses for generation, given to node-llama-cpp too.
const orionThreads = () => require(ROOT).getOptimizationStrategy().threads

async function importNodeLlamaCpp() {
  // ESM-only: a dynamic import, resolved from bench/node_modules.
  return import('node-llama-cpp')
}

// ---------------------------------------------------------------------------------------
// Load time, each in a fresh process. The child prints one JSON line.

function loadRun(contender, args) {
  const child = spawnSync(process.execPath, [__filename, '--load-child', contender, JSON.stringify(args)], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 300_000,
  })
  if (child.status !== 0) {
    throw new Error(
      `${contender} load child failed: ${child.error?.message ?? `exit ${child.status} ${child.signal ?? ''}`}\n${child.stderr}`,
    )
  }
  return JSON.parse(child.stdout.trim().split('\n').pop())
}

async function loadChild(contender, { modelPath, threads }) {
  const started = performance.now()
  let result
  if (contender === 'orion') {
    const orion = require(ROOT)
    const required = performance.now()
    const loader = orion.getModelLoader()
    const info = await loader.loadModel(MODEL_KEY)
    const loaded = performance.now()
    result = { requireMs: required - started, loadMs: loaded - required, path: info.path, bytes: info.bytes }
  } else {
    const nlc = await importNodeLlamaCpp()
    const imported = performance.now()
    const llama = await nodeLlama(nlc, threads)
    const ready = performance.now()
    const model = await llama.loadModel({ modelPath })
    const loaded = performance.now()
    result = { importMs: imported - started, getLlamaMs: ready - imported, loadMs: loaded - ready, bytes: model.size }
  }
  result.totalMs = performance.now() - started
  process.stdout.write(JSON.stringify(result) + '\n')
  process.exit(0) // node-llama-cpp keeps the event loop alive
}

function loadTimes({ runs, threads, nlcError }) {
  const samples = { orion: [], nlc: [] }
  let modelPath = null
  for (let r = 0; r < runs; r++) {
    // orion-native goes first in the first round: it tells where the demo model's file is.
    const order = r % 2 === 0 ? ['orion', 'nlc'] : ['nlc', 'orion']
    for (const contender of order) {
      if (contender === 'nlc' && (nlcError || !modelPath)) continue
      log(`  ${contender === 'orion' ? 'orion-native' : 'node-llama-cpp'}, run ${r + 1}/${runs}`)
      if (contender === 'orion') {
        const sample = loadRun(contender, { threads })
        modelPath ??= sample.path
        samples.orion.push(sample)
        continue
      }
      try {
        samples.nlc.push(loadRun(contender, { modelPath, threads }))
      } catch (e) {
        // orion-native is still measured; the report says why the node-llama-cpp column is empty.
        nlcError = e.message
        log(`node-llama-cpp unavailable: ${nlcError}`)
      }
    }
  }
  const side = (list) =>
    list.length
      ? { loadMs: summary(list.map((s) => s.loadMs)), totalMs: summary(list.map((s) => s.totalMs)), samples: list }
      : null
  const orion = side(samples.orion)
  const nlc = side(samples.nlc)
  return {
    modelPath,
    nlcError,
    orion,
    nlc,
    // > 1: orion-native loads faster.
    ratio: nlc ? nlc.loadMs.median / orion.loadMs.median : null,
    totalRatio: nlc ? nlc.totalMs.median / orion.totalMs.median : null,
  }
}

// ---------------------------------------------------------------------------------------
// The contenders. Both expose run(maxTokens) → one measured generation in a fresh context.

// From the call, the first and last streamed token and the end: the same arithmetic for both.
function measured({ started, first, last, ended, promptTokens, tokens }) {
  const ttftMs = first - started
  const streamMs = last - first
  return {
    promptTokens,
    tokens,
    ttftMs,
    streamMs,
    totalMs: ended - started,
    // What a caller waits for: from the call to its result (the promise resolving), over
    // the prompt and every generated token. Whatever a contender does after the last
    // token and before resolving counts here, and not in the streamed rates.
    callTokensPerSecond: perSecond(promptTokens + tokens, ended - started),
    afterLastTokenMs: ended - last,
    promptTokensPerSecond: perSecond(promptTokens, ttftMs),
    // The first token comes out of the prompt phase; the others out of the generation phase.
    tokensPerSecond: perSecond(tokens - 1, streamMs),
  }
}

async function loadOrion(threads) {
  const orion = require(ROOT)
  const loader = orion.getModelLoader()
  const started = performance.now()
  const info = await loader.loadModel(MODEL_KEY)
  const loadMs = performance.now() - started
  const messages = [
    { role: 'system', content: SYSTEM_PROMPT },
    { role: 'user', content: PROMPT },
  ]

  async function run(maxTokens) {
    let first = null
    let last = null
    let pieces = 0
    const onToken = () => {
      const now = performance.now()
      first ??= now
      last = now
      pieces++
    }
    const started = performance.now()
    const r = await loader.generate(MODEL_KEY, messages, { temperature: 0, maxTokens, onToken })
    const ended = performance.now()
    const t = r.timings
    return {
      ...measured({ started, first, last, ended, promptTokens: t.promptTokens, tokens: r.tokens }),
      pieces,
      finishReason: r.finishReason,
      text: r.text,
      own: { promptTokensPerSecond: t.promptTokensPerSecond, tokensPerSecond: t.tokensPerSecond, timings: t },
      llama: { promptTokensPerSecond: t.llamaPromptTokensPerSecond, tokensPerSecond: t.llamaTokensPerSecond },
    }
  }

  return {
    loader,
    info,
    loadMs,
    threads,
    version: require('../package.json').version,
    run,
  }
}

// llama.cpp's performance print, as node-llama-cpp relays it:
//   ... prompt eval time =      63.33 ms /    33 tokens (    1.92 ms per token,   521.05 tokens per second)
//   ...        eval time =     500.00 ms /    31 runs   (   16.13 ms per token,    62.00 tokens per second)
function parsePerf(text) {
  const out = {}
  for (const line of text.split('\n')) {
    const m = /(prompt eval|eval) time\s*=\s*([\d.]+) ms\s*\/\s*(\d+) (?:tokens|runs)/.exec(line)
    if (!m) continue
    const [, what, ms, n] = m
    const key = what === 'eval' ? 'tokensPerSecond' : 'promptTokensPerSecond'
    out[key] = perSecond(Number(n), Number(ms))
    out[what === 'eval' ? 'eval' : 'promptEval'] = { ms: Number(ms), count: Number(n) }
  }
  return out
}

async function loadNodeLlamaCpp(threads, modelPath) {
  const nlc = await importNodeLlamaCpp()
  let perfLog = null // collects llama.cpp's log while the timings are printed
  const llama = await nodeLlama(nlc, threads, (level, message) => {
    if (perfLog != null) perfLog += message + (message.endsWith('\n') ? '' : '\n')
    else if (level === 'error' || level === 'fatal') log(`node-llama-cpp: ${message}`)
  })
  const started = performance.now()
  const model = await llama.loadModel({ modelPath })
  const loadMs = performance.now() - started
  const settings = {}

  async function llamaTimings(context) {
    perfLog = ''
    llama.logLevel = 'info'
    try {
      await context.printTimings()
      return parsePerf(perfLog)
    } finally {
      llama.logLevel = 'warn'
      perfLog = null
    }
  }

  async function run(maxTokens) {
    const context = await model.createContext({
      contextSize: CONTEXT_SIZE,
      batchSize: BATCH_SIZE,
      threads: { ideal: threads, min: threads },
      performanceTracking: true,
    })
    try {
      Object.assign(settings, {
        contextSize: context.contextSize,
        batchSize: context.batchSize,
        flashAttention: context.flashAttention,
        idealThreads: context.idealThreads,
      })
      const sequence = context.getSequence()
      const session = new nlc.LlamaChatSession({ contextSequence: sequence, systemPrompt: SYSTEM_PROMPT })
      settings.chatWrapper = session.chatWrapper.wrapperName
      let first = null
      let last = null
      let tokens = 0
      let promptTokens = null
      const onToken = (chunk) => {
        const now = performance.now()
        if (first == null) {
          first = now
          // The first token is sampled, not yet evaluated: the sequence holds the prompt.
          promptTokens = sequence.nextTokenIndex
        }
        last = now
        tokens += chunk.length
      }
      const started = performance.now()
      const r = await session.promptWithMeta(PROMPT, { temperature: 0, maxTokens, onToken })
      const ended = performance.now()
      const llamaOwn = await llamaTimings(context)
      session.dispose()
      return {
        ...measured({ started, first, last, ended, promptTokens, tokens }),
        retokenized: model.tokenize(r.responseText).length,
        finishReason: r.stopReason,
        text: r.responseText,
        llama: llamaOwn,
      }
    } finally {
      await context.dispose()
    }
  }

  return {
    llama,
    model,
    loadMs,
    settings,
    // Its `exports` do not include package.json.
    version: JSON.parse(fs.readFileSync(path.join(__dirname, 'node_modules/node-llama-cpp/package.json'), 'utf8'))
      .version,
    llamaCpp: llama.llamaCppRelease,
    buildType: llama.buildType,
    systemInfo: llama.systemInfo,
    run,
    dispose: () => llama.dispose(),
  }
}

// ---------------------------------------------------------------------------------------
// Measurements.

async function reloadLatency(orion, calls) {
  const { loader } = orion
  for (let i = 0; i < 20; i++) await loader.loadModel(MODEL_KEY) // warm-up
  const times = []
  let info
  for (let i = 0; i < calls; i++) {
    const started = performance.now()
    info = await loader.loadModel(MODEL_KEY)
    times.push(performance.now() - started)
  }
  const stats = summary(times)
  return {
    calls,
    ms: {
      median: stats.median,
      min: stats.min,
      max: stats.max,
      p99: [...times].sort((a, b) => a - b)[Math.floor(calls * 0.99)],
    },
    // Times the model was really loaded in this process: still 1 after all these calls.
    loads: info.loads,
    target: RELOAD_TARGET_MS,
    pass: stats.median < RELOAD_TARGET_MS,
  }
}

async function generation({ runs, maxTokens, orion, nlc }) {
  const samples = { orion: [], nlc: [] }
  for (let r = 0; r < runs; r++) {
    const order = r % 2 === 0 ? ['orion', 'nlc'] : ['nlc', 'orion']
    for (const name of order) {
      const contender = name === 'orion' ? orion : nlc
      if (!contender) continue
      await sleep(PAUSE_MS)
      const s = await contender.run(maxTokens)
      log(
        `  run ${r + 1}/${runs} ${name === 'orion' ? 'orion-native  ' : 'node-llama-cpp'}: ` +
          `${s.tokens} tokens, prompt ${fmt(s.promptTokensPerSecond)} tok/s, generation ${fmt(s.tokensPerSecond)} tok/s`,
      )
      samples[name].push(s)
    }
  }

  const pick = (list, f) => summary(list.map(f))
  const side = (list) => ({
    promptTokens: pick(list, (s) => s.promptTokens),
    tokens: pick(list, (s) => s.tokens),
    ttftMs: pick(list, (s) => s.ttftMs),
    promptTokensPerSecond: pick(list, (s) => s.promptTokensPerSecond),
    tokensPerSecond: pick(list, (s) => s.tokensPerSecond),
    totalMs: pick(list, (s) => s.totalMs),
    callTokensPerSecond: pick(list, (s) => s.callTokensPerSecond),
    afterLastTokenMs: pick(list, (s) => s.afterLastTokenMs),
    // 0 means that llama.cpp's performance counters were off (`no_perf`): not measured.
    llamaPromptTokensPerSecond: pick(list, (s) => s.llama.promptTokensPerSecond || NaN),
    llamaTokensPerSecond: pick(list, (s) => s.llama.tokensPerSecond || NaN),
    finishReasons: list.map((s) => s.finishReason),
    samples: list,
  })
  const result = { runs, maxTokens, orion: side(samples.orion) }
  const o = result.orion
  o.ownPromptTokensPerSecond = pick(samples.orion, (s) => s.own.promptTokensPerSecond)
  o.ownTokensPerSecond = pick(samples.orion, (s) => s.own.tokensPerSecond)
  result.vsLlama = {
    target: GENERATION_VS_LLAMA_TARGET,
    // orion-native's own timings (measured in Rust around the generation loop) and the JS
    // wall time, each against llama.cpp's own timings of the same runs.
    own: o.ownTokensPerSecond.median / o.llamaTokensPerSecond.median,
    wall: o.tokensPerSecond.median / o.llamaTokensPerSecond.median,
    prompt: o.ownPromptTokensPerSecond.median / o.llamaPromptTokensPerSecond.median,
    promptWall: o.promptTokensPerSecond.median / o.llamaPromptTokensPerSecond.median,
  }
  // null: llama.cpp's own timings were not available, so the target could not be checked.
  const check = (x) => (Number.isFinite(x) ? x >= GENERATION_VS_LLAMA_TARGET : null)
  result.vsLlama.ownPass = check(result.vsLlama.own)
  result.vsLlama.wallPass = check(result.vsLlama.wall)
  result.vsLlama.llamaTimingsMissing = samples.orion.every((s) => !s.llama.tokensPerSecond)
  if (nlc) {
    const n = (result.nlc = side(samples.nlc))
    result.vsPeer = {
      target: GENERATION_VS_PEER_TARGET,
      generation: o.tokensPerSecond.median / n.tokensPerSecond.median,
      // The whole call, prompt and tokens, as a caller waits for it.
      call: o.callTokensPerSecond.median / n.callTokensPerSecond.median,
      prompt: o.promptTokensPerSecond.median / n.promptTokensPerSecond.median,
      ttft: n.ttftMs.median / o.ttftMs.median,
      // The two llama.cpp builds against each other, by their own timings.
      llamaGeneration: o.llamaTokensPerSecond.median / n.llamaTokensPerSecond.median,
      llamaPrompt: o.llamaPromptTokensPerSecond.median / n.llamaPromptTokensPerSecond.median,
      // Greedy decoding with the same penalties on the same prompt: the texts should agree.
      sameText: samples.orion.every((s, i) => s.text === samples.nlc[i]?.text),
    }
    result.vsPeer.pass = result.vsPeer.generation >= GENERATION_VS_PEER_TARGET
  }
  return result
}

// ---------------------------------------------------------------------------------------
// Report.

function lockedVersion(crate) {
  try {
    const lock = fs.readFileSync(path.join(ROOT, 'Cargo.lock'), 'utf8')
    return new RegExp(`name = "${crate}"\\nversion = "([^"]+)"`).exec(lock)?.[1] ?? null
  } catch {
    return null
  }
}

const ms = (x) => (x == null || !Number.isFinite(x) ? 'n/a' : x < 1 ? `${fmt(x * 1000, 0)} µs` : `${fmt(x, 1)} ms`)
const ratio = (x) => (x == null || !Number.isFinite(x) ? '—' : `${fmt(x, 2)}×`)
const mark = (pass) => (pass == null ? '(not measured)' : pass ? '✓' : '✗')

function report(r) {
  const v = r.versions
  const lines = [
    `## orion-native LLM benchmark${r.quick ? ' (--quick: smoke test, not numbers to quote)' : ''}`,
    '',
    ...machineLines(r),
    `- model \`${MODEL_KEY}\`: ${r.config.modelPath} (${fmt(r.config.modelBytes / 1024 ** 2)} MiB), ${r.config.threads} thread(s) for both`,
    `- orion-native ${v.orionNative} (llama-cpp-2 ${v.llamaCpp2 ?? '?'}, llama-cpp-sys-2 ${v.llamaCppSys2 ?? '?'}); node-llama-cpp ${v.nodeLlamaCpp ?? 'n/a'} (${v.nodeLlamaCppBuild ?? 'n/a'}, llama.cpp ${v.nodeLlamaCppLlamaCpp ?? 'n/a'})`,
    `- prompt: system ${JSON.stringify(SYSTEM_PROMPT)}, user ${JSON.stringify(PROMPT)}; temperature 0, maxTokens ${r.config.maxTokens}, repeat penalty 1.1 over 64 tokens (both defaults); a fresh context per run`,
    `- node-llama-cpp context: ${
      r.nlcSettings
        ? Object.entries(r.nlcSettings)
            .map(([k, x]) => `${k} ${x}`)
            .join(', ')
        : 'n/a'
    }`,
    `- ${r.config.runs} runs per contender after one warm-up each, interleaved, medians shown; ${r.config.loadRuns} fresh processes per contender for load times`,
    '',
  ]
  if (r.nlcError) lines.push(`node-llama-cpp unavailable: ${r.nlcError}`, '')

  const { load, reload, gen } = r
  const o = gen.orion
  const n = gen.nlc
  const p = gen.vsPeer
  const l = gen.vsLlama
  const tps = (s) => fmt(s?.median)
  const table = [
    ['metric', 'orion-native', 'node-llama-cpp', 'llama.cpp own timings', 'ratio', 'target'],
    [
      'model load, fresh process: loadModel',
      ms(load.orion.loadMs.median),
      ms(load.nlc?.loadMs.median),
      '—',
      load.ratio == null ? '—' : `${ratio(load.ratio)} faster`,
      '—',
    ],
    [
      'model load, fresh process: from require/import to loaded',
      ms(load.orion.totalMs.median),
      ms(load.nlc?.totalMs.median),
      '—',
      load.totalRatio == null ? '—' : `${ratio(load.totalRatio)} faster`,
      '—',
    ],
    [
      'second loadModel of a loaded model (median)',
      ms(reload.ms.median),
      '—',
      '—',
      '—',
      `< ${RELOAD_TARGET_MS} ms ${mark(reload.pass)}`,
    ],
    ['prompt tokens (chat template)', fmt(o.promptTokens.median, 0), fmt(n?.promptTokens.median, 0), '—', '—', '—'],
    ['time to first token', ms(o.ttftMs.median), ms(n?.ttftMs.median), '—', p ? `${ratio(p.ttft)} faster` : '—', '—'],
    [
      'prompt tokens/s (prompt tokens ÷ time to first token)',
      tps(o.promptTokensPerSecond),
      tps(n?.promptTokensPerSecond),
      `${tps(o.llamaPromptTokensPerSecond)} (orion-native runs)`,
      ratio(p?.prompt),
      '—',
    ],
    [
      'tokens generated (finish)',
      `${fmt(o.tokens.median, 0)} (${[...new Set(o.finishReasons)].join(', ')})`,
      n ? `${fmt(n.tokens.median, 0)} (${[...new Set(n.finishReasons)].join(', ')})` : 'n/a',
      '—',
      '—',
      '—',
    ],
    [
      'generation tokens/s (first → last streamed token)',
      tps(o.tokensPerSecond),
      tps(n?.tokensPerSecond),
      `${tps(o.llamaTokensPerSecond)} (orion-native runs)`,
      ratio(p?.generation),
      p
        ? `≥ ${GENERATION_VS_PEER_TARGET}× node-llama-cpp ${mark(p.pass)}`
        : `≥ ${GENERATION_VS_PEER_TARGET}× node-llama-cpp`,
    ],
    [
      'whole call, prompt + generated tokens per second of wall time (call → result)',
      tps(o.callTokensPerSecond),
      tps(n?.callTokensPerSecond),
      '—',
      ratio(p?.call),
      '—',
    ],
    [
      'from the last streamed token to the result (median)',
      ms(o.afterLastTokenMs.median),
      ms(n?.afterLastTokenMs?.median),
      '—',
      '—',
      '≤ 10 ms',
    ],
    [
      'generation tokens/s: orion-native timings vs llama.cpp own',
      tps(o.ownTokensPerSecond),
      '—',
      tps(o.llamaTokensPerSecond),
      ratio(l.own),
      `≥ ${GENERATION_VS_LLAMA_TARGET}× llama.cpp ${mark(l.ownPass)}`,
    ],
    [
      'generation tokens/s: streamed (JS) vs llama.cpp own',
      tps(o.tokensPerSecond),
      '—',
      tps(o.llamaTokensPerSecond),
      ratio(l.wall),
      `≥ ${GENERATION_VS_LLAMA_TARGET}× llama.cpp ${mark(l.wallPass)}`,
    ],
    [
      'prompt tokens/s: orion-native timings vs llama.cpp own',
      tps(o.ownPromptTokensPerSecond),
      '—',
      tps(o.llamaPromptTokensPerSecond),
      ratio(l.prompt),
      '—',
    ],
    [
      'llama.cpp own timings in each contender: prompt tokens/s',
      tps(o.llamaPromptTokensPerSecond),
      tps(n?.llamaPromptTokensPerSecond),
      '—',
      ratio(p?.llamaPrompt),
      '—',
    ],
    [
      'llama.cpp own timings in each contender: generation tokens/s',
      tps(o.llamaTokensPerSecond),
      tps(n?.llamaTokensPerSecond),
      '—',
      ratio(p?.llamaGeneration),
      '—',
    ],
  ]
  lines.push(...markdownTable(table))
  lines.push(
    '',
    'Ratios are orion-native ÷ node-llama-cpp for rates (and node-llama-cpp ÷ orion-native for times), ' +
      'orion-native ÷ llama.cpp for the rows against llama.cpp.',
  )
  if (l.llamaTimingsMissing) {
    lines.push(
      "orion-native's timings.llamaTokensPerSecond and llamaPromptTokensPerSecond were 0 in every run " +
        "(llama.cpp's performance counters are off in its contexts, llama.cpp's default no_perf = true): " +
        'the rows against llama.cpp could not be measured.',
    )
  }
  if (p) lines.push(`Greedy outputs identical in every run: ${p.sameText ? 'yes' : 'no'}.`)
  lines.push(
    `Second loadModel: ${reload.calls} calls, p99 ${ms(reload.ms.p99)}, real loads in the process: ${reload.loads}.`,
  )
  return lines.join('\n')
}

// ---------------------------------------------------------------------------------------

async function main() {
  const { quick, json } = parseArgs('llm.js', process.argv.slice(2))
  const plan = quick ? PLANS.quick : PLANS.full
  const threads = orionThreads()
  const results = {
    date: new Date().toISOString(),
    quick,
    machine: machine(),
    config: {
      model: MODEL_KEY,
      threads,
      systemPrompt: SYSTEM_PROMPT,
      prompt: PROMPT,
      temperature: 0,
      contextSize: CONTEXT_SIZE,
      batchSize: BATCH_SIZE,
      ...plan,
    },
    versions: {
      orionNative: require('../package.json').version,
      llamaCpp2: lockedVersion('llama-cpp-2'),
      llamaCppSys2: lockedVersion('llama-cpp-sys-2'),
    },
  }

  // Checked first, so that its load children are skipped when it cannot even be imported.
  let nlcError = null
  try {
    await importNodeLlamaCpp()
  } catch (e) {
    nlcError = `${e.code ? e.code + ': ' : ''}${e.message} (install the peers: cd bench && npm install --ignore-scripts --no-audit --no-fund)`
    log(`node-llama-cpp unavailable: ${nlcError}`)
  }

  log(`model load, each in a fresh process (${plan.loadRuns} per contender):`)
  results.load = loadTimes({ runs: plan.loadRuns, threads, nlcError })
  nlcError = results.load.nlcError
  if (nlcError) results.nlcError = nlcError
  results.config.modelPath = results.load.modelPath
  results.config.modelBytes = results.load.orion.samples[0].bytes

  log('loading orion-native')
  const orion = await loadOrion(threads)
  if (orion.info.path !== results.load.modelPath) throw new Error(`model path changed: ${orion.info.path}`)
  results.config.quantization = orion.info.quantization

  log(`second loadModel: ${plan.reloadCalls} calls`)
  results.reload = await reloadLatency(orion, plan.reloadCalls)

  let nlc = null
  if (!nlcError) {
    log('loading node-llama-cpp')
    try {
      nlc = await loadNodeLlamaCpp(threads, orion.info.path)
      Object.assign(results.versions, {
        nodeLlamaCpp: nlc.version,
        nodeLlamaCppBuild: nlc.buildType,
        nodeLlamaCppLlamaCpp: `${nlc.llamaCpp.repo}@${nlc.llamaCpp.release}`,
        nodeLlamaCppSystemInfo: nlc.systemInfo,
      })
    } catch (e) {
      results.nlcError = `${e.code ? e.code + ': ' : ''}${e.message}`
      log(`node-llama-cpp unavailable: ${results.nlcError}`)
    }
  }

  log('warming up')
  await orion.run(plan.maxTokens)
  if (nlc) await nlc.run(plan.maxTokens)
  results.nlcSettings = nlc?.settings

  log(`generation: ${plan.runs} runs × ${plan.maxTokens} tokens at most, per contender`)
  results.gen = await generation({ runs: plan.runs, maxTokens: plan.maxTokens, orion, nlc })

  await nlc?.dispose()
  const file = writeResults('llm', results)
  if (json) process.stdout.write(JSON.stringify(results, null, 2) + '\n')
  else process.stdout.write(`${report(results)}\n\nFull results: ${path.relative(process.cwd(), file)}\n`)
}

if (process.argv[2] === '--load-child') loadChild(process.argv[3], JSON.parse(process.argv[4])).catch(die)
else if (require.main === module) {
  main()
    .then(() => process.exit(0)) // node-llama-cpp and the addon may keep the event loop alive
    .catch(die)
}

module.exports = { report }
