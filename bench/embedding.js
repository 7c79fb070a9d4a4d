#!/usr/bin/env node
'use strict'
// Embedding benchmark: orion-native side by side with raw onnxruntime-node and with a
// transformers.js pipeline on the same model.onnx, plus the memory and cache properties
// orion-native promises.
//
//   node bench/embedding.js [--quick] [--json]
//
//   --quick  few texts and runs: a smoke test of the script, not numbers to quote
//   --json   print the results JSON on stdout instead of the report (progress goes to stderr)
//
// Measures
//   1. orion-native texts/s: one text at a time, batches of 32 (createEmbeddingsFloat32),
//      and eight worker_threads each sending single texts, all at once;
//   2. raw onnxruntime-node on the same model with the same intra-op thread count, with JS
//      tokenization (@xenova/transformers), mean pooling and L2 normalisation, one at a time
//      and in batches of 32, after checking that its vectors agree with orion-native's;
//   2b. a transformers.js feature-extraction pipeline (@xenova/transformers 2.17.2, the app's
//      status quo) on the same weights, one at a time and in batches of 32 (its own
//      onnxruntime-node 1.14 with its default thread count, see bench/transformers.js). Eight
//      workers with a pipeline each are measured by bench/workers.js;
//   3. the RSS growth caused by embedding with 1 and with 8 workers, each in a fresh process;
//   4. the latency of a cached call against the first call of the same text.
//
// Every measurement embeds texts never seen before (the cache would otherwise flatter
// orion-native), each contender is warmed up first, and runs of the contenders are
// interleaved so that a noisy moment hurts both. The full results go to
// bench/results/embedding-<date>.json (embedding-<date>-quick.json for --quick).
//
// Peers come from bench/package.json: `cd bench && npm install --ignore-scripts`.
// (--ignore-scripts because sharp, a dependency of @xenova/transformers that the tokenizer
// does not use, downloads libvips from GitHub in its install script.)

const fs = require('node:fs')
const os = require('node:os')
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
  cosine,
  markdownTable,
  embeddingModelDir,
  machineLines,
} = require('./common')
const { once } = require('node:events')
const { spawnSync } = require('node:child_process')
const { performance } = require('node:perf_hooks')
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads')
const { makeHfFolder, loadTransformers: loadPipeline, transformersVersions } = require('./transformers')

const ROOT = path.join(__dirname, '..')
const MODEL = 'all-MiniLM-L6-v2'
const MAX_TOKENS = 256 // orion-native truncates here, like sentence-transformers
const BATCH = 32
const WORKERS = 8
const THREADS = os.availableParallelism()
const MIB = 1024 * 1024

const MEMORY_TARGET = 1.15 // 8-worker model memory ≤ 1.15 × 1-worker
const CACHE_TARGET = 0.01 // a cached call costs < 1% of a computed one
const COSINE_TARGET = 0.999
const BATCH_TARGET = 0.95 // batches ≥ 0.95 × raw onnxruntime
const WORKERS_TARGET = 1.8 // 8 threads of single texts ≥ 1.8 × one at a time

const PLANS = {
  quick: { runs: 2, single: 12, batches: 2, perWorker: 4, cache: 10, memoryRuns: 1, memoryPerWorker: 4 },
  full: { runs: 5, single: 200, batches: 16, perWorker: 40, cache: 50, memoryRuns: 3, memoryPerWorker: 16 },
}

// ---------------------------------------------------------------------------------------
// Texts: unique, English-like sentences of 8–47 words (about 10–60 tokens), from a seeded
// generator so that two runs of the script embed the same texts.

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

function textSource(prefix, seed) {
  const rand = prng(seed)
  let counter = 0
  return (n) =>
    Array.from({ length: n }, () => {
      const words = [`${prefix} ${++counter}:`]
      const length = 8 + Math.floor(rand() * 40)
      for (let i = 0; i < length; i++) words.push(WORDS[Math.floor(rand() * WORDS.length)])
      return words.join(' ') + '.'
    })
}

// ---------------------------------------------------------------------------------------
// Small helpers.

// The rows of a flat texts × dimension Float32Array.
function rows(flat, n) {
  const dim = flat.length / n
  return Array.from({ length: n }, (_, i) => flat.subarray(i * dim, (i + 1) * dim))
}

function chunks(list, size) {
  const out = []
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size))
  return out
}

const modelDir = () => embeddingModelDir(MODEL)

// The same options for every orion-native client of the run, so that the main thread and
// every worker share one service, with the thread count the raw session gets.
const orionOptions = () => ({ modelPath: modelDir(), threads: THREADS })

// ---------------------------------------------------------------------------------------
// Worker threads. Each one gets the shared client and, per message, embeds its texts one at
// a time, as an app's worker would.

function embedWorker() {
  const client = require(ROOT).getSharedEmbeddingClient(workerData.options)
  parentPort.on('message', async ({ texts }) => {
    try {
      for (const text of texts) await client.createEmbedding(text)
      // Memory runs collect each thread's garbage so that RSS shows the model, not JS heaps.
      if (workerData.gc) globalThis.gc?.()
      parentPort.postMessage({ stats: client.getStats() })
    } catch (e) {
      parentPort.postMessage({ error: { message: e.message, code: e.code } })
    }
  })
  parentPort.postMessage({ ready: true })
}

class WorkerPool {
  static async start(n, options, { gc = false } = {}) {
    const workers = Array.from({ length: n }, () => new Worker(__filename, { workerData: { options, gc } }))
    await Promise.all(workers.map((w) => once(w, 'message'))) // { ready: true }
    return new WorkerPool(workers)
  }

  constructor(workers) {
    this.workers = workers
  }

  // Gives worker i textsPerWorker[i], all at once; resolves with every reply when all are done.
  run(textsPerWorker) {
    return Promise.all(
      this.workers.map(async (w, i) => {
        w.postMessage({ texts: textsPerWorker[i] })
        const [reply] = await once(w, 'message')
        if (reply.error) throw Object.assign(new Error(reply.error.message), { code: reply.error.code })
        return reply
      }),
    )
  }

  close() {
    return Promise.all(this.workers.map((w) => w.terminate()))
  }
}

// ---------------------------------------------------------------------------------------
// The contenders. Both expose embed(texts) → Float32Array of texts.length × dimension.

async function loadOrion() {
  const started = performance.now()
  const orion = require(ROOT)
  const client = orion.getSharedEmbeddingClient(orionOptions())
  await client.createEmbedding('load the model') // it loads lazily
  return {
    client,
    loadMs: performance.now() - started,
    version: require('../package.json').version,
    embed: (texts) => client.createEmbeddingsFloat32(texts),
    embedOne: (text) => client.createEmbedding(text),
  }
}

async function loadRaw() {
  const started = performance.now()
  const dir = modelDir()
  // Resolves bench/node_modules first, then the project's own copy.
  const ort = require('onnxruntime-node')
  // The tokenizer modules only: the package entry also imports sharp, whose native part
  // is not installed (see the top of this file).
  const { env } = await import('@xenova/transformers/src/env.js')
  const { AutoTokenizer } = await import('@xenova/transformers/src/tokenizers.js')
  env.localModelPath = path.dirname(dir)
  env.allowLocalModels = true
  env.allowRemoteModels = false
  const tokenizer = await AutoTokenizer.from_pretrained(path.basename(dir))

  const session = await ort.InferenceSession.create(path.join(dir, 'model.onnx'), {
    intraOpNumThreads: THREADS,
    graphOptimizationLevel: 'all', // what fastembed, inside orion-native, uses
  })

  // BERT's post-processor wraps a text in exactly [CLS] … [SEP].
  const special = tokenizer.encode('')
  if (special.length !== 2) throw new Error(`unexpected special tokens ${special}`)
  const [cls, sep] = special
  const pad = BigInt(tokenizer.pad_token_id ?? 0)

  // Truncation and padding by hand: transformers.js v2 truncates after adding the special
  // tokens (dropping [SEP]) and pads to max_length. The Rust tokenizers in orion-native,
  // like sentence-transformers, keep [CLS] and [SEP] and pad to the longest text of a batch.
  function encode(texts) {
    const ids = texts.map((t) => [
      cls,
      ...tokenizer.encode(t, null, { add_special_tokens: false }).slice(0, MAX_TOKENS - 2),
      sep,
    ])
    const seq = Math.max(...ids.map((r) => r.length))
    const inputIds = new BigInt64Array(texts.length * seq).fill(pad)
    const mask = new BigInt64Array(texts.length * seq)
    ids.forEach((row, i) =>
      row.forEach((id, j) => {
        inputIds[i * seq + j] = BigInt(id)
        mask[i * seq + j] = 1n
      }),
    )
    return { inputIds, mask, seq }
  }

  async function embed(texts) {
    const { inputIds, mask, seq } = encode(texts)
    const dims = [texts.length, seq]
    const feeds = {
      input_ids: new ort.Tensor('int64', inputIds, dims),
      attention_mask: new ort.Tensor('int64', mask, dims),
    }
    if (session.inputNames.includes('token_type_ids')) {
      feeds.token_type_ids = new ort.Tensor('int64', new BigInt64Array(inputIds.length), dims)
    }
    const out = await session.run(feeds)
    const hidden = out[session.outputNames[0]] // last_hidden_state: [batch, seq, dimension]
    return meanPoolNormalize(hidden.data, mask, texts.length, seq, hidden.dims[2])
  }

  await embed(['load the model'])
  return {
    loadMs: performance.now() - started,
    onnxruntime: {
      version: require('onnxruntime-node/package.json').version,
      path: path.dirname(require.resolve('onnxruntime-node/package.json')),
    },
    transformers: require('@xenova/transformers/package.json').version,
    embed,
    embedOne: (text) => embed([text]),
  }
}

async function loadTransformers() {
  const started = performance.now()
  const { root, model } = makeHfFolder(modelDir())
  try {
    const pipeline = await loadPipeline(root)
    await pipeline.embed('load the model')
    return {
      loadMs: performance.now() - started,
      model,
      versions: transformersVersions(),
      embed: pipeline.embedBatch,
      embedOne: pipeline.embed,
    }
  } finally {
    // onnxruntime has read the model into memory by now.
    fs.rmSync(root, { recursive: true, force: true })
  }
}

// sentence-transformers' pooling: the mean of the token vectors under the attention mask,
// then L2 normalisation.
function meanPoolNormalize(hidden, mask, n, seq, dim) {
  const out = new Float32Array(n * dim)
  for (let i = 0; i < n; i++) {
    const row = out.subarray(i * dim, (i + 1) * dim)
    let count = 0
    for (let t = 0; t < seq; t++) {
      if (mask[i * seq + t] === 0n) continue
      count++
      const base = (i * seq + t) * dim
      for (let d = 0; d < dim; d++) row[d] += hidden[base + d]
    }
    let norm = 0
    for (let d = 0; d < dim; d++) {
      row[d] /= count
      norm += row[d] * row[d]
    }
    norm = Math.sqrt(norm) || 1
    for (let d = 0; d < dim; d++) row[d] /= norm
  }
  return out
}

// ---------------------------------------------------------------------------------------
// Measurements.

const CHECK_TEXTS = [
  'Paris is the capital of France.',
  'Café naïve façade: accents, ÜMLAUTS and 東京 🚀 in one sentence.',
  // Over 256 tokens: checks that both sides truncate the same way.
  'Long text. ' + textSource('long', 7)(1)[0].repeat(40),
]

async function checkAgreement(orion, raw, texts) {
  orion.client.clearCache()
  const all = [...CHECK_TEXTS, ...texts]
  const checks = []
  for (const text of all) {
    checks.push({ mode: 'single', text, cosine: cosine(await orion.embedOne(text), await raw.embedOne(text)) })
  }
  // Batches exercise the padding of both sides.
  orion.client.clearCache()
  const a = rows(await orion.embed(all), all.length)
  const b = rows(await raw.embed(all), all.length)
  all.forEach((text, i) => checks.push({ mode: 'batch', text, cosine: cosine(a[i], b[i]) }))
  const min = Math.min(...checks.map((c) => c.cosine))
  return { target: COSINE_TARGET, min, pass: min > COSINE_TARGET, checks }
}

// transformers.js v2 truncates after adding the special tokens (see loadRaw), so only texts
// under 256 tokens are compared; the pipelines agree to rounding, not bit for bit.
const TRANSFORMERS_COSINE_TARGET = 0.99

async function checkTransformersAgreement(orion, transformers, texts) {
  orion.client.clearCache()
  const all = [...CHECK_TEXTS.slice(0, 2), ...texts]
  const checks = []
  for (const text of all) {
    checks.push({ text, cosine: cosine(await orion.embedOne(text), await transformers.embedOne(text)) })
  }
  const min = Math.min(...checks.map((c) => c.cosine))
  return { target: TRANSFORMERS_COSINE_TARGET, min, pass: min > TRANSFORMERS_COSINE_TARGET, checks }
}

// Texts/s of each contender, `runs` times, runs of the contenders interleaved (their order
// rotating between runs); fresh texts each run. Ratios are orion-native's over each peer's.
async function throughput({ runs, count, contenders, nextTexts, go }) {
  const names = Object.keys(contenders).filter((name) => contenders[name])
  const rates = Object.fromEntries(names.map((name) => [name, []]))
  for (let r = 0; r < runs; r++) {
    const order = [...names.slice(r % names.length), ...names.slice(0, r % names.length)]
    for (const name of order) {
      contenders.orion.client.clearCache()
      const texts = nextTexts(count)
      const started = performance.now()
      await go(contenders[name], texts)
      rates[name].push(texts.length / ((performance.now() - started) / 1000))
    }
  }
  const result = { texts: count }
  for (const name of names) result[name] = summary(rates[name])
  if (result.raw) result.ratio = result.orion.median / result.raw.median
  if (result.transformers) result.ratioTransformers = result.orion.median / result.transformers.median
  return result
}

async function oneAtATime(contender, texts) {
  for (const text of texts) await contender.embedOne(text)
}

async function batches(contender, texts) {
  for (const batch of chunks(texts, BATCH)) await contender.embed(batch)
}

async function workerThroughput({ runs, perWorker, orion, nextTexts }) {
  const pool = await WorkerPool.start(WORKERS, orionOptions())
  try {
    await pool.run(pool.workers.map(() => nextTexts(4))) // warm-up
    const rates = []
    const before = orion.client.getStats()
    for (let r = 0; r < runs; r++) {
      orion.client.clearCache()
      const texts = pool.workers.map(() => nextTexts(perWorker))
      const started = performance.now()
      await pool.run(texts)
      rates.push((WORKERS * perWorker) / ((performance.now() - started) / 1000))
    }
    const after = orion.client.getStats()
    const batchesRun = after.batches - before.batches
    return {
      workers: WORKERS,
      textsPerWorker: perWorker,
      orion: summary(rates),
      // How well the shared queue gathered the workers' single texts into batches.
      meanBatchSize: batchesRun ? (after.requests - before.requests) / batchesRun : 0,
    }
  } finally {
    await pool.close()
  }
}

async function cacheLatency({ count, orion, nextTexts }) {
  const { client } = orion
  client.clearCache()
  const texts = nextTexts(count)
  const before = client.getStats()
  const time = async (text) => {
    const started = performance.now()
    const vector = await client.createEmbedding(text)
    return [performance.now() - started, vector]
  }
  // Two passes rather than first/cached pairs: right after a model call, ONNX Runtime's
  // intra-op threads spin for a while, and on a small machine a cached call made then would
  // time the spinning rather than the cache.
  const first = []
  const vectors = []
  for (const text of texts) {
    const [ms, vector] = await time(text)
    first.push(ms)
    vectors.push(vector)
  }
  const cached = []
  let identical = true
  for (const [i, text] of texts.entries()) {
    const [ms, vector] = await time(text)
    cached.push(ms)
    identical &&= vector.every((x, d) => x === vectors[i][d])
  }
  const hits = client.getStats().cacheHits - before.cacheHits
  const ratio = median(cached) / median(first)
  return {
    texts: count,
    firstMs: summary(first),
    cachedMs: summary(cached),
    cacheHits: hits,
    identical,
    ratio,
    target: CACHE_TARGET,
    pass: ratio < CACHE_TARGET,
  }
}

// One fresh process per measurement, so that neither the model nor the allocator's state
// of an earlier run is counted.
function memoryRun(workers, perWorker) {
  const args = ['--expose-gc', __filename, '--memory-child', JSON.stringify({ workers, perWorker })]
  const child = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 300_000 })
  if (child.status !== 0) {
    throw new Error(
      `memory child (${workers} workers) failed: ${child.error?.message ?? `exit ${child.status} ${child.signal ?? ''}`}\n${child.stderr}`,
    )
  }
  return JSON.parse(child.stdout.trim().split('\n').pop())
}

async function memoryChild({ workers, perWorker }) {
  const settle = async () => {
    globalThis.gc?.()
    await sleep(300)
  }
  const nextTexts = textSource('memory', 3)
  const pool = await WorkerPool.start(workers, orionOptions(), { gc: true })
  await settle()
  const idleRss = process.memoryUsage.rss()
  const replies = await pool.run(pool.workers.map(() => nextTexts(perWorker)))
  await settle()
  const afterRss = process.memoryUsage.rss()
  const stats = replies[replies.length - 1].stats
  await pool.close()
  const result = {
    workers,
    textsPerWorker: perWorker,
    idleRss,
    afterRss,
    growth: afterRss - idleRss,
    peakRss: process.resourceUsage().maxRSS * 1024,
    modelLoads: stats.modelLoads,
    batches: stats.batches,
  }
  process.stdout.write(JSON.stringify(result) + '\n')
}

function memory({ runs, perWorker }) {
  const measure = (workers) => {
    const samples = []
    for (let r = 0; r < runs; r++) {
      log(`  ${workers} worker${workers > 1 ? 's' : ''}, run ${r + 1}/${runs}`)
      samples.push(memoryRun(workers, perWorker))
    }
    return { samples, growth: summary(samples.map((s) => s.growth)), idleRss: summary(samples.map((s) => s.idleRss)) }
  }
  const one = measure(1)
  const eight = measure(WORKERS)
  const ratio = eight.growth.median / one.growth.median
  return { oneWorker: one, eightWorkers: eight, ratio, target: MEMORY_TARGET, pass: ratio <= MEMORY_TARGET }
}

// ---------------------------------------------------------------------------------------
// Report.

const mib = (bytes) => `${fmt(bytes / MIB)} MiB`
const ms = (x) => (x < 1 ? `${fmt(x * 1000, 0)} µs` : `${fmt(x, 2)} ms`)
const mark = (pass) => (pass ? '✓' : '✗')

function report(r) {
  const lines = [
    `## orion-native embedding benchmark${r.quick ? ' (--quick: smoke test, not numbers to quote)' : ''}`,
    '',
    ...machineLines(r),
    `- model ${MODEL} (${r.config.modelFile}), ${r.config.threads} intra-op threads for orion-native and raw, batches of ${BATCH}, ${WORKERS} workers`,
    `- orion-native ${r.versions.orionNative}; raw: onnxruntime-node ${r.versions.onnxruntime?.version ?? 'n/a'} (${r.versions.onnxruntime ? path.relative(ROOT, r.versions.onnxruntime.path) : 'n/a'}), @xenova/transformers ${r.versions.transformers ?? 'n/a'} tokenizer; transformers.js: @xenova/transformers ${r.versions.transformers ?? 'n/a'} pipeline on its onnxruntime-node ${r.versions.transformersOnnxruntimeNode?.version ?? 'n/a'} (default threads)`,
    `- ${r.config.runs} runs per scenario, medians shown; model load: orion-native ${fmt(r.load.orionMs, 0)} ms, raw ${fmt(r.load.rawMs, 0)} ms, transformers.js ${fmt(r.load.transformersMs, 0)} ms`,
    '',
  ]
  if (r.rawError) lines.push(`raw onnxruntime unavailable: ${r.rawError}`, '')
  if (r.agreement) {
    lines.push('Vector check, cosine(orion-native, raw onnxruntime):', '')
    for (const c of r.agreement.checks) {
      const text = c.text.length > 48 ? c.text.slice(0, 45) + '...' : c.text
      lines.push(`    ${c.mode.padEnd(6)} ${fmt(c.cosine, 6)}  ${JSON.stringify(text)}`)
    }
    lines.push('', `    min ${fmt(r.agreement.min, 6)} > ${COSINE_TARGET}: ${r.agreement.pass ? 'ok' : 'FAILED'}`, '')
  }

  if (r.transformersError) lines.push(`transformers.js unavailable: ${r.transformersError}`, '')
  if (r.transformersAgreement) {
    const t = r.transformersAgreement
    lines.push(
      `Vector check, cosine(orion-native, transformers.js): min ${fmt(t.min, 6)} > ${t.target}: ${t.pass ? 'ok' : 'FAILED'}`,
      '',
    )
  }

  const { single, batch32, workers8, cache, memory: mem } = r
  const ratio = (x) => (x == null ? '—' : `${fmt(x, 2)}×`)
  const none = ['—', '—', '—', '—']
  const table = [
    ['scenario', 'orion-native', 'raw onnxruntime', 'transformers.js', 'vs raw', 'vs transformers.js', 'target'],
    [
      'one text at a time (texts/s)',
      fmt(single.orion.median),
      fmt(single.raw?.median),
      fmt(single.transformers?.median),
      ratio(single.ratio),
      ratio(single.ratioTransformers),
      '—',
    ],
    [
      `batches of ${BATCH} (texts/s)`,
      fmt(batch32.orion.median),
      fmt(batch32.raw?.median),
      fmt(batch32.transformers?.median),
      ratio(batch32.ratio),
      ratio(batch32.ratioTransformers),
      batch32.ratio == null ? '—' : `≥ ${BATCH_TARGET}× raw ${mark(batch32.ratio >= BATCH_TARGET)}`,
    ],
    [
      `${WORKERS} workers, single texts (texts/s, all workers)`,
      `${fmt(workers8.orion.median)} (mean batch ${fmt(workers8.meanBatchSize)}; ${ratio(workers8.orion.median / single.orion.median)} one at a time)`,
      ...none,
      `≥ ${WORKERS_TARGET}× one at a time ${mark(workers8.orion.median / single.orion.median >= WORKERS_TARGET)}`,
    ],
    ['RSS growth from embedding, 1 worker', mib(mem.oneWorker.growth.median), ...none, '—'],
    [
      `RSS growth from embedding, ${WORKERS} workers`,
      `${mib(mem.eightWorkers.growth.median)} (${ratio(mem.ratio)} 1 worker)`,
      ...none,
      `≤ ${MEMORY_TARGET}× ${mark(mem.pass)}`,
    ],
    [
      'cached vs first call (median latency)',
      `${ms(cache.cachedMs.median)} vs ${ms(cache.firstMs.median)} (${fmt(cache.ratio * 100, 2)}%)`,
      ...none,
      `< ${CACHE_TARGET * 100}% ${mark(cache.pass)}`,
    ],
  ]
  if (r.agreement) {
    table.push([
      'vectors agree with raw (min cosine)',
      fmt(r.agreement.min, 6),
      ...none,
      `> ${COSINE_TARGET} ${mark(r.agreement.pass)}`,
    ])
  }
  lines.push(...markdownTable(table))
  lines.push('', `${WORKERS} workers with a transformers.js pipeline each: bench/workers.js.`)
  return lines.join('\n')
}

// ---------------------------------------------------------------------------------------

async function main() {
  const { quick, json } = parseArgs('embedding.js', process.argv.slice(2))
  const plan = quick ? PLANS.quick : PLANS.full
  const nextTexts = textSource('Note', 42)
  const results = {
    date: new Date().toISOString(),
    quick,
    machine: machine(),
    config: {
      model: MODEL,
      modelFile: path.join(modelDir(), 'model.onnx'),
      threads: THREADS,
      batch: BATCH,
      workers: WORKERS,
      maxTokens: MAX_TOKENS,
      ...plan,
    },
    versions: {},
    load: {},
  }

  log('loading orion-native')
  const orion = await loadOrion()
  results.versions.orionNative = orion.version
  results.load.orionMs = orion.loadMs

  log('loading a transformers.js pipeline')
  let transformers = null
  try {
    transformers = await loadTransformers()
    Object.assign(results.versions, transformers.versions)
    results.load.transformersMs = transformers.loadMs
    results.config.transformersModel = transformers.model
  } catch (e) {
    results.transformersError = `${e.message} (install the peers: cd bench && npm install --ignore-scripts)`
    log(`transformers.js unavailable: ${results.transformersError}`)
  }

  log('loading raw onnxruntime-node and the JS tokenizer')
  let raw = null
  try {
    raw = await loadRaw()
    Object.assign(results.versions, { onnxruntime: raw.onnxruntime, transformers: raw.transformers })
    results.load.rawMs = raw.loadMs
  } catch (e) {
    // orion-native is still measured; the report says why the raw column is empty.
    results.rawError = `${e.code ? e.code + ': ' : ''}${e.message} (install the peers: cd bench && npm install --ignore-scripts)`
    log(`raw onnxruntime unavailable: ${results.rawError}`)
  }

  log('warming up')
  for (const contender of [orion, raw, transformers].filter(Boolean)) {
    await batches(contender, nextTexts(BATCH))
    await oneAtATime(contender, nextTexts(8))
  }

  if (raw) {
    log('checking that the vectors agree')
    results.agreement = await checkAgreement(orion, raw, nextTexts(2))
  }
  if (transformers) results.transformersAgreement = await checkTransformersAgreement(orion, transformers, nextTexts(2))
  const contenders = { orion, raw, transformers }

  log(`one text at a time: ${plan.runs} × ${plan.single} texts`)
  results.single = await throughput({ runs: plan.runs, count: plan.single, contenders, nextTexts, go: oneAtATime })

  log(`batches of ${BATCH}: ${plan.runs} × ${plan.batches * BATCH} texts`)
  results.batch32 = await throughput({
    runs: plan.runs,
    count: plan.batches * BATCH,
    contenders,
    nextTexts,
    go: batches,
  })

  log(`${WORKERS} workers: ${plan.runs} × ${WORKERS} × ${plan.perWorker} texts`)
  results.workers8 = await workerThroughput({ runs: plan.runs, perWorker: plan.perWorker, orion, nextTexts })

  log(`cache: ${plan.cache} texts`)
  results.cache = await cacheLatency({ count: plan.cache, orion, nextTexts })

  log('memory, each in a fresh process:')
  results.memory = memory({ runs: plan.memoryRuns, perWorker: plan.memoryPerWorker })

  const file = writeResults('embedding', results)
  if (json) process.stdout.write(JSON.stringify(results, null, 2) + '\n')
  else process.stdout.write(`${report(results)}\n\nFull results: ${path.relative(process.cwd(), file)}\n`)
}

if (!isMainThread) embedWorker()
else if (process.argv[2] === '--memory-child') memoryChild(JSON.parse(process.argv[3])).catch(die)
else if (require.main === module) main().catch(die)

module.exports = { report }
