#!/usr/bin/env node
'use strict'
// Remote backends benchmark: orion-native's clients for OpenAI-compatible servers against a
// plain `fetch` to the same server and against orion-native's in-process engines, with
// llama.cpp's llama-server (built once per machine by scripts/llama-server.js) serving the
// built-in `demo` GGUF (SmolLM2-135M-Instruct Q4_1) on this machine.
//
//   node bench/remote.js [--quick] [--json]
//
//   --quick  few texts and runs: a smoke test of the script, not numbers to quote
//   --json   print the results JSON on stdout instead of the report (progress goes to stderr)
//
// Measures
//   1. the latency of embedding one text, never cached: orion-native's remote client
//      (getSharedEmbeddingClient({ remote })), a plain fetch POST of the same body to the same
//      llama-server's /v1/embeddings, and, as a reference, orion-native's in-process
//      all-MiniLM-L6-v2. The client's overhead is its latency minus fetch's (medians and p90);
//   2. generation of one short answer (system "You are a helpful assistant.", user "What is
//      the capital of France?", temperature 0, maxTokens 32) from the same GGUF: in process
//      (`demo`), through a registered remote model on llama-server at the same thread count,
//      and with a plain non-streaming fetch to /v1/chat/completions: total latency, time to
//      first token (the first onToken piece) and tokens/s;
//   3. embedding throughput with one and with two llama-server embedding instances (one thread
//      and one slot each): N distinct texts sent all at once as single createEmbedding calls
//      through one shared client whose url lists one server or both; texts/s and mean batch.
//
// Every embedding is of a text never seen before (or after clearCache), so the cache never
// answers. Runs of the contenders are interleaved (their order alternating) so that a noisy
// moment hurts all of them, and medians are reported. The chat server runs with prompt
// caching off (LLAMA_ARG_CACHE_PROMPT=0): like the in-process engine, which gives every
// request a fresh context, it evaluates the whole prompt each time. Embedding servers run
// with one slot (`parallel: 1`): with several, llama-server returns wrong vectors for some
// texts of a batch (llama.cpp issue #26282). The full results go to
// bench/results/remote-<date>.json (remote-<date>-quick.json for --quick).

const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { performance } = require('node:perf_hooks')
const {
  log,
  sleep,
  fmt,
  median,
  summary,
  cosine,
  machine,
  writeResults,
  parseArgs,
  die,
  markdownTable,
  machineLines,
} = require('./common')

const ROOT = path.join(__dirname, '..')
const { startServer, binary: llamaServerBinary } = require('../scripts/llama-server')

const MODEL_KEY = 'demo' // in process: the GGUF the servers get too
const REMOTE_KEY = 'bench-remote-demo'
const CHAT_ALIAS = 'smollm2'
const EMBED_ALIAS = 'smollm2-embed'
const QUESTION = [
  { role: 'system', content: 'You are a helpful assistant.' },
  { role: 'user', content: 'What is the capital of France?' },
]
const MAX_TOKENS = 32
const CHAT_CONTEXT = 2048
// Every latency text has this many words (about 10 tokens with its prefix), so that each
// costs the server the same and its compute time, and its noise, stay small next to the
// client's overhead.
const LATENCY_WORDS = 4
// Throughput texts: short, 4 to 11 words (about 8–16 tokens), so that a full run of one
// server with one thread stays under a minute.
const THROUGHPUT_WORDS = [4, 8]
// Between two generations, and after a block of in-process embeddings: lets the previous
// contender's idle threads stop spinning, which on a small machine would slow the next one.
const PAUSE_MS = 250

const PLANS = {
  quick: { latencyBlocks: 2, latencyPerBlock: 10, genRuns: 3, texts: 40, throughputRuns: 2 },
  full: { latencyBlocks: 10, latencyPerBlock: 20, genRuns: 15, texts: 400, throughputRuns: 3 },
}

// ---------------------------------------------------------------------------------------
// Texts: unique, English-like sentences from a seeded generator (as in bench/embedding.js).

const WORDS = (
  'the a of and to in is for on with as by at from that this it be are was not can will ' +
  'model memory thread worker queue batch cache vector embedding token sentence search ' +
  'document query user server request response latency throughput runtime process ' +
  'network storage index result question answer language system data time people city ' +
  'river mountain market music history science paper table window garden morning evening ' +
  'quickly slowly often never always large small new old local shared native simple'
).split(' ')

function prng(seed) {
  // mulberry32
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// Each text: a numbered prefix and `minWords` to `minWords + spread - 1` words.
function textSource(prefix, seed, minWords, spread = 1) {
  const rand = prng(seed)
  let counter = 0
  return (n) =>
    Array.from({ length: n }, () => {
      const out = [`${prefix} ${++counter}:`]
      const length = minWords + Math.floor(rand() * spread)
      for (let i = 0; i < length; i++) out.push(WORDS[Math.floor(rand() * WORDS.length)])
      return out.join(' ') + '.'
    })
}

// ---------------------------------------------------------------------------------------
// Small helpers.

const perSecond = (n, ms) => (ms > 0 ? (n * 1000) / ms : NaN)

/** Nearest-rank percentile, `q` in (0, 1]. */
function percentile(values, q) {
  const s = [...values].sort((a, b) => a - b)
  return s[Math.max(0, Math.ceil(q * s.length) - 1)]
}

const latencySummary = (values) => ({ ...summary(values), p90: percentile(values, 0.9) })

async function postJson(url, body) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  const json = await res.json()
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${JSON.stringify(json).slice(0, 300)}`)
  return json
}

function llamaServerVersion() {
  const r = spawnSync(llamaServerBinary(), ['--version'], { encoding: 'utf8', timeout: 30_000 })
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.match(/version: .*/)?.[0] ?? null
}

// Stats deltas of a shared client between two getStats() calls.
function statsDelta(before, after) {
  const requests = after.requests - before.requests
  const batches = after.batches - before.batches
  const perEndpoint = (after.endpoints ?? []).map((e) => {
    const b = before.endpoints?.find((x) => x.url === e.url)
    return {
      url: e.url,
      requests: e.requests - (b?.requests ?? 0),
      errors: e.errors - (b?.errors ?? 0),
      bytesSent: e.bytesSent - (b?.bytesSent ?? 0),
      bytesReceived: e.bytesReceived - (b?.bytesReceived ?? 0),
    }
  })
  return {
    requests,
    batches,
    cacheHits: after.cacheHits - before.cacheHits,
    meanBatchSize: batches ? requests / batches : 0,
    endpoints: perEndpoint,
  }
}

// ---------------------------------------------------------------------------------------
// The servers. Killed on exit whatever happens, so that a failed run leaves none behind.

const servers = []
process.on('exit', () => {
  for (const s of servers) s.proc.kill('SIGKILL')
})

async function serve(options, env = {}) {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]))
  Object.assign(process.env, env) // llama-server inherits this process's environment
  try {
    const server = await startServer(options)
    servers.push(server)
    return server
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
}

// ---------------------------------------------------------------------------------------
// 1. Per-request embedding latency.

async function embeddingLatency({ blocks, perBlock, remote, local, embedUrl }) {
  const nextRemote = textSource('Remote note', 11, LATENCY_WORDS)
  const nextLocal = textSource('Local note', 12, LATENCY_WORDS)
  const body = (text) => ({ model: EMBED_ALIAS, input: [text], encoding_format: 'float' })
  const viaFetch = async (text) => (await postJson(`${embedUrl}/v1/embeddings`, body(text))).data[0].embedding
  const time = async (fn) => {
    const started = performance.now()
    const vector = await fn()
    return [performance.now() - started, vector]
  }

  // Warm-up (connections, the client's one /v1/models check, ONNX Runtime's first runs), and
  // a check that both ways give the same vectors for the same texts.
  const checks = nextRemote(3)
  const agreement = []
  for (const text of checks) agreement.push(cosine(await remote.createEmbedding(text), await viaFetch(text)))
  for (const text of nextRemote(10)) await viaFetch(text)
  for (const text of nextRemote(10)) await remote.createEmbedding(text)
  for (const text of nextLocal(10)) await local.createEmbedding(text)
  await sleep(PAUSE_MS)

  const samples = { orion: [], fetch: [], local: [] }
  const paired = [] // orion − fetch, for texts timed back to back
  const before = { remote: remote.getStats(), local: local.getStats() }
  const dimensions = {}
  for (let b = 0; b < blocks; b++) {
    const localBlock = async () => {
      for (const text of nextLocal(perBlock)) {
        const [ms, v] = await time(() => local.createEmbedding(text))
        samples.local.push(ms)
        dimensions.local = v.length
      }
      await sleep(PAUSE_MS) // ONNX Runtime's threads spin for a while after a run
    }
    // The in-process block goes first in even blocks and last in odd ones.
    if (b % 2 === 0) await localBlock()
    const texts = nextRemote(2 * perBlock)
    for (let i = 0; i < perBlock; i++) {
      const [orionText, fetchText] = [texts[2 * i], texts[2 * i + 1]]
      const runOrion = async () => {
        const [ms, v] = await time(() => remote.createEmbedding(orionText))
        samples.orion.push(ms)
        dimensions.orion = v.length
        return ms
      }
      const runFetch = async () => {
        const [ms, v] = await time(() => viaFetch(fetchText))
        samples.fetch.push(ms)
        dimensions.fetch = v.length
        return ms
      }
      // Alternate which of the two goes first.
      let o, f
      if ((b + i) % 2 === 0) {
        o = await runOrion()
        f = await runFetch()
      } else {
        f = await runFetch()
        o = await runOrion()
      }
      paired.push(o - f)
    }
    if (b % 2 === 1) await localBlock()
  }
  const orion = latencySummary(samples.orion)
  const viaFetchStats = latencySummary(samples.fetch)
  return {
    texts: blocks * perBlock,
    words: LATENCY_WORDS,
    orion,
    fetch: viaFetchStats,
    local: latencySummary(samples.local),
    dimensions,
    overheadMs: {
      median: orion.median - viaFetchStats.median,
      p90: orion.p90 - viaFetchStats.p90,
      pairedMedian: median(paired),
    },
    // Same text, orion-native's client against fetch: 1 when the client passes vectors as is.
    agreementMinCosine: Math.min(...agreement),
    remoteStats: statsDelta(before.remote, remote.getStats()),
    localStats: statsDelta(before.local, local.getStats()),
  }
}

// ---------------------------------------------------------------------------------------
// 2. Generation.

async function generation({ runs, loader, chatUrl }) {
  // orion-native, in process or remote: the same call, timed from JS.
  const viaLoader = (key) => async () => {
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
    const r = await loader.generate(key, QUESTION, { temperature: 0, maxTokens: MAX_TOKENS, onToken })
    const ended = performance.now()
    const t = r.timings
    return {
      totalMs: ended - started,
      ttftMs: first - started,
      streamedTokensPerSecond: perSecond(r.tokens - 1, last - first),
      pieces,
      tokens: r.tokens,
      promptTokens: t.promptTokens,
      tokensPerSecond: t.tokensPerSecond,
      promptTokensPerSecond: t.promptTokensPerSecond,
      finishReason: r.finishReason,
      text: r.text,
    }
  }
  // A plain, non-streaming request with the parameters orion-native's client sends.
  const viaFetch = async () => {
    const started = performance.now()
    const j = await postJson(`${chatUrl}/v1/chat/completions`, {
      model: CHAT_ALIAS,
      messages: QUESTION,
      max_tokens: MAX_TOKENS,
      temperature: 0,
      stream: false,
    })
    const ended = performance.now()
    const t = j.timings ?? {}
    return {
      totalMs: ended - started,
      ttftMs: null,
      tokens: j.usage?.completion_tokens,
      promptTokens: t.prompt_n ?? j.usage?.prompt_tokens,
      tokensPerSecond: t.predicted_per_second ?? NaN,
      promptTokensPerSecond: t.prompt_per_second ?? NaN,
      finishReason: j.choices[0].finish_reason,
      text: j.choices[0].message.content,
    }
  }
  const contenders = { local: viaLoader(MODEL_KEY), remote: viaLoader(REMOTE_KEY), fetch: viaFetch }
  const names = Object.keys(contenders)

  log('  warming up')
  for (const name of names) {
    await contenders[name]()
    await sleep(PAUSE_MS)
  }
  const samples = Object.fromEntries(names.map((n) => [n, []]))
  for (let r = 0; r < runs; r++) {
    const order = [...names.slice(r % names.length), ...names.slice(0, r % names.length)]
    for (const name of order) {
      await sleep(PAUSE_MS)
      const s = await contenders[name]()
      samples[name].push(s)
      log(
        `  run ${r + 1}/${runs} ${name.padEnd(6)}: ${fmt(s.totalMs)} ms, ${s.tokens} tokens` +
          (s.ttftMs == null ? '' : `, first token ${fmt(s.ttftMs)} ms`),
      )
    }
  }

  const pick = (list, f) => summary(list.map(f))
  const side = (list) => ({
    totalMs: latencySummary(list.map((s) => s.totalMs)),
    ttftMs: list[0].ttftMs == null ? null : pick(list, (s) => s.ttftMs),
    tokens: pick(list, (s) => s.tokens),
    promptTokens: pick(list, (s) => s.promptTokens),
    // The engine's own: orion-native's timings in process, llama-server's `timings` remote.
    tokensPerSecond: pick(list, (s) => s.tokensPerSecond),
    promptTokensPerSecond: pick(list, (s) => s.promptTokensPerSecond),
    // From JS: first to last streamed piece (streaming contenders only).
    streamedTokensPerSecond: list[0].ttftMs == null ? null : pick(list, (s) => s.streamedTokensPerSecond),
    // Tokens over the whole call, prompt and round trips included.
    endToEndTokensPerSecond: pick(list, (s) => perSecond(s.tokens, s.totalMs)),
    finishReasons: [...new Set(list.map((s) => s.finishReason))],
    texts: [...new Set(list.map((s) => s.text))],
    samples: list,
  })
  const result = { runs, maxTokens: MAX_TOKENS, question: QUESTION }
  for (const name of names) result[name] = side(samples[name])
  result.remoteOverheadMs = result.remote.totalMs.median - result.fetch.totalMs.median
  result.sameText = names.every((n) => result[n].texts.length === 1 && result[n].texts[0] === result.local.texts[0])
  return result
}

// ---------------------------------------------------------------------------------------
// 3. Throughput with one and two embedding servers.

async function throughput({ runs, count, clients }) {
  const nextTexts = textSource('Note', 42, ...THROUGHPUT_WORDS)
  const names = Object.keys(clients)
  // Warm-up: connections and each server's /v1/models check.
  for (const name of names) await Promise.all(nextTexts(8).map((t) => clients[name].createEmbedding(t)))

  const rates = Object.fromEntries(names.map((n) => [n, []]))
  // Counted around each run: a server's counters are per URL, process-wide, so the other
  // client's requests to the same server would show up in a delta over the whole section.
  const counts = Object.fromEntries(names.map((n) => [n, []]))
  let agreement = null
  for (let r = 0; r < runs; r++) {
    const texts = nextTexts(count) // the same texts for both in a round
    const order = r % 2 === 0 ? names : [...names].reverse()
    const vectors = {}
    for (const name of order) {
      const client = clients[name]
      client.clearCache()
      const before = client.getStats()
      const started = performance.now()
      vectors[name] = await Promise.all(texts.map((t) => client.createEmbedding(t)))
      const rate = count / ((performance.now() - started) / 1000)
      rates[name].push(rate)
      counts[name].push(statsDelta(before, client.getStats()))
      log(`  run ${r + 1}/${runs} ${name}: ${fmt(rate)} texts/s`)
      await sleep(PAUSE_MS)
    }
    // One server or the other, alone or sharing the load: the same vectors.
    if (r === 0) agreement = Math.min(...texts.map((_, i) => cosine(vectors[names[0]][i], vectors[names[1]][i])))
  }
  const result = { texts: count, runs, agreementMinCosine: agreement }
  for (const name of names) {
    const list = counts[name]
    const sum = (f) => list.reduce((a, d) => a + f(d), 0)
    const requests = sum((d) => d.requests)
    const batches = sum((d) => d.batches)
    result[name] = {
      servers: list[0].endpoints.length,
      textsPerSec: summary(rates[name]),
      requests,
      batches,
      cacheHits: sum((d) => d.cacheHits),
      meanBatchSize: batches ? requests / batches : 0,
      // Per server, over all runs: HTTP requests (batches, retries included) and bytes.
      endpoints: list[0].endpoints.map((e, i) => ({
        url: e.url,
        requests: sum((d) => d.endpoints[i].requests),
        errors: sum((d) => d.endpoints[i].errors),
        bytesSent: sum((d) => d.endpoints[i].bytesSent),
        bytesReceived: sum((d) => d.endpoints[i].bytesReceived),
      })),
      perRun: list,
    }
  }
  result.ratio = result.two.textsPerSec.median / result.one.textsPerSec.median
  return result
}

// ---------------------------------------------------------------------------------------
// Report.

const ms = (x) => (x == null || !Number.isFinite(x) ? 'n/a' : x < 1 ? `${fmt(x * 1000, 0)} µs` : `${fmt(x, 1)} ms`)
const plus = (x) => (x == null || !Number.isFinite(x) ? 'n/a' : `${x < 0 ? '−' : '+'}${ms(Math.abs(x))}`)
const ratio = (x) => (x == null || !Number.isFinite(x) ? '—' : `${fmt(x, 2)}×`)

function report(r) {
  const c = r.config
  const { latency: l, gen: g, throughput: t } = r
  const lines = [
    `## Remote backends: orion-native against llama-server${r.quick ? ' (--quick: smoke test, not numbers to quote)' : ''}`,
    '',
    ...machineLines(r),
    `- model: ${c.modelPath} (${fmt(c.modelBytes / 1024 ** 2)} MiB), in process (\`${MODEL_KEY}\`) and served by llama.cpp's llama-server ${r.versions.llamaServer ?? '?'} (${c.llamaServerSource}) on 127.0.0.1`,
    `- servers: chat with ${c.chatThreads} thread(s) (as in process), 1 slot, ${c.chatContext}-token context, prompt cache off; embeddings (mean pooling) with 1 thread and 1 slot each; orion-native ${r.versions.orionNative}, Node.js fetch (undici) as the plain client`,
    `- ${c.latencyBlocks * c.latencyPerBlock} texts of ${c.latencyWords} words per latency contender, ${c.genRuns} generations per contender, ${c.throughputRuns} throughput runs of ${c.texts} texts of ${c.throughputWords.join('–')} words per server count; interleaved, medians shown`,
    '',
    '### Embedding one text (never cached)',
    '',
    ...markdownTable([
      ['client', 'median', 'p90', 'overhead vs plain fetch (median / p90)'],
      [
        `orion-native remote client → llama-server /v1/embeddings (${l.dimensions.orion} dims)`,
        ms(l.orion.median),
        ms(l.orion.p90),
        `${plus(l.overheadMs.median)} / ${plus(l.overheadMs.p90)}`,
      ],
      [`plain fetch POST → the same /v1/embeddings`, ms(l.fetch.median), ms(l.fetch.p90), '—'],
      [
        `orion-native in process, all-MiniLM-L6-v2 (${l.dimensions.local} dims; reference, another model)`,
        ms(l.local.median),
        ms(l.local.p90),
        '—',
      ],
    ]),
    '',
    `Overhead as the median of back-to-back pairs: ${plus(l.overheadMs.pairedMedian)}. ` +
      `Same text, client vs fetch: min cosine ${fmt(l.agreementMinCosine, 6)}; cache hits while timing: ${l.remoteStats.cacheHits}.`,
    '',
    `### Generation (${JSON.stringify(QUESTION[1].content)}, temperature 0, maxTokens ${g.maxTokens})`,
    '',
  ]
  const cols = [g.local, g.remote, g.fetch]
  const row = (label, f) => [label, ...cols.map(f)]
  const tps = (s) => (s ? fmt(s.median) : 'n/a')
  lines.push(
    ...markdownTable([
      ['metric', 'orion-native in process', 'orion-native remote (llama-server)', 'plain fetch (not streamed)'],
      row('total latency, median', (s) => ms(s.totalMs.median)),
      row('total latency, p90', (s) => ms(s.totalMs.p90)),
      row('time to first token (first onToken piece)', (s) => (s.ttftMs ? ms(s.ttftMs.median) : 'n/a')),
      row('tokens generated (finish)', (s) => `${fmt(s.tokens.median, 0)} (${s.finishReasons.join(', ')})`),
      row('prompt tokens evaluated', (s) => fmt(s.promptTokens.median, 0)),
      row('generation tokens/s, engine’s own timings', (s) => tps(s.tokensPerSecond)),
      row('generation tokens/s, streamed (first → last piece)', (s) => tps(s.streamedTokensPerSecond)),
      row('prompt tokens/s, engine’s own timings', (s) => tps(s.promptTokensPerSecond)),
      row('tokens ÷ total latency', (s) => tps(s.endToEndTokensPerSecond)),
    ]),
    '',
    `Remote overhead vs plain fetch (total latency, medians): ${plus(g.remoteOverheadMs)} (orion-native streams; fetch waits for the whole reply). ` +
      `Engine’s own timings: orion-native’s in process, llama-server’s \`timings\` for the other two. ` +
      `Same text from all three in every run: ${g.sameText ? 'yes' : 'no'} (${g.local.texts.map((x) => JSON.stringify(x)).join(', ')}).` +
      ` Streamed pieces, remote: ${fmt(median(g.remote.samples.map((x) => x.pieces)), 0)}; llama-server's token count includes the end-of-turn token, which has no text.`,
    '',
    `### Embedding throughput: ${t.texts} distinct texts at once, single createEmbedding calls, one shared client`,
    '',
    ...markdownTable([
      [
        'llama-server embedding instances',
        'texts/s (median)',
        'mean batch size',
        'requests per server (all runs)',
        'vs one',
      ],
      ...['one', 'two'].map((k) => [
        `${t[k].servers} (url: ${t[k].servers === 1 ? '[one]' : '[one, two]'})`,
        fmt(t[k].textsPerSec.median),
        fmt(t[k].meanBatchSize),
        t[k].endpoints.map((e) => String(e.requests)).join(' / '),
        k === 'one' ? '—' : ratio(t.ratio),
      ]),
    ]),
    '',
    `A request carries one batch. Same vectors from one and two servers: min cosine ${fmt(t.agreementMinCosine, 6)}.`,
  )
  return lines.join('\n')
}

// ---------------------------------------------------------------------------------------

async function main() {
  const { quick, json } = parseArgs('remote.js', process.argv.slice(2))
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
      chatThreads: threads,
      chatContext: CHAT_CONTEXT,
      embeddingServerThreads: 1,
      question: QUESTION,
      maxTokens: MAX_TOKENS,
      latencyWords: LATENCY_WORDS,
      throughputWords: [THROUGHPUT_WORDS[0], THROUGHPUT_WORDS[0] + THROUGHPUT_WORDS[1] - 1],
      llamaServerSource: 'llama-cpp-python 0.3.36 sdist, scripts/llama-server.js',
      ...plan,
    },
    versions: { orionNative: require('../package.json').version, llamaServer: llamaServerVersion() },
  }

  log('loading the in-process models')
  const info = await loader.loadModel(MODEL_KEY)
  Object.assign(results.config, { modelPath: info.path, modelBytes: info.bytes })
  const local = orion.getSharedEmbeddingClient()
  await local.createEmbedding('load the model')

  log('starting llama-server: chat, and two embedding instances')
  const chat = await serve(
    { model: info.path, alias: CHAT_ALIAS, threads, parallel: 1, ctx: CHAT_CONTEXT },
    { LLAMA_ARG_CACHE_PROMPT: '0' },
  )
  const [embedA, embedB] = [
    await serve({ model: info.path, alias: EMBED_ALIAS, embeddings: true, parallel: 1, threads: 1 }),
    await serve({ model: info.path, alias: EMBED_ALIAS, embeddings: true, parallel: 1, threads: 1 }),
  ]
  loader.registerModel(REMOTE_KEY, { remote: { url: chat.url, model: CHAT_ALIAS } })
  await loader.loadModel(REMOTE_KEY)
  // The whole backlog of a throughput run is queued at once: with one single-thread server
  // its last texts wait longer than the default 30 s timeout.
  const remoteClient = (urls) =>
    orion.getSharedEmbeddingClient({ remote: { url: urls, model: EMBED_ALIAS }, timeoutMs: 600_000 })
  const clients = { one: remoteClient([embedA.url]), two: remoteClient([embedA.url, embedB.url]) }

  try {
    log(`embedding latency: ${plan.latencyBlocks} blocks × ${plan.latencyPerBlock} texts per contender`)
    results.latency = await embeddingLatency({
      blocks: plan.latencyBlocks,
      perBlock: plan.latencyPerBlock,
      remote: clients.one,
      local,
      embedUrl: embedA.url,
    })

    log(`generation: ${plan.genRuns} runs per contender`)
    results.gen = await generation({ runs: plan.genRuns, loader, chatUrl: chat.url })

    log(`embedding throughput: ${plan.throughputRuns} runs × ${plan.texts} texts, one and two servers`)
    results.throughput = await throughput({ runs: plan.throughputRuns, count: plan.texts, clients })
  } finally {
    await Promise.all(servers.map((s) => s.stop()))
  }
  results.loadAverageAfter = require('node:os').loadavg()

  const file = writeResults('remote', results)
  if (json) process.stdout.write(JSON.stringify(results, null, 2) + '\n')
  else process.stdout.write(`${report(results)}\n\nFull results: ${path.relative(process.cwd(), file)}\n`)
}

if (require.main === module) {
  main()
    .then(() => process.exit(0)) // the addon may keep the event loop alive
    .catch(die)
}

module.exports = { report }
