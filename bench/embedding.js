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
//   1. orion-native texts/s at both precisions, exact (the default) and int8 (integer
//      products on the model's int8 weights): one text at a time, batches of 32
//      (createEmbeddingsFloat32), and eight worker_threads each sending single texts, all
//      at once (with the mean batch size and queue wait the shared queue achieved, against
//      the batch-of-32 rate from one thread); int8's vectors against exact's;
//   2. raw onnxruntime-node on the same model with the same intra-op thread count, with JS
//      tokenization (@xenova/transformers), mean pooling and L2 normalisation, one at a time
//      and in batches of 32, after checking that its vectors agree with orion-native's;
//   2b. a transformers.js feature-extraction pipeline (@xenova/transformers 2.17.2, the app's
//      status quo) on the same weights, one at a time and in batches of 32 (its own
//      onnxruntime-node 1.14 with its default thread count, see bench/transformers.js). Eight
//      workers with a pipeline each are measured by bench/workers.js;
//   3. the RSS growth caused by embedding with 1 and with 8 workers, at each precision, and by
//      raw onnxruntime-node on the unmodified graph (today's path), each in a fresh process;
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
const WORKERS_BATCH_TARGET = 0.9 // 8 threads of single texts ≥ 0.9 × batches of 32 from one thread
const INT8_SPEED_TARGET = 1.5 // int8 ≥ 1.5 × exact, one at a time and in batches
const INT8_MEMORY_TARGET = 64 * 1024 * 1024 // int8 model memory ≤ 64 MiB per process
const INT8_COSINE_TARGET = 0.998 // int8 vectors within this cosine of exact ones
const PRECISIONS = ['exact', 'int8']

const PLANS = {
  quick: { runs: 2, single: 12, batches: 2, perWorker: 4, cache: 10, memoryRuns: 1, memoryPerWorker: 4, int8Check: 4 },
  full: {
    runs: 7,
    single: 200,
    batches: 16,
    perWorker: 40,
    cache: 50,
    memoryRuns: 3,
    memoryPerWorker: 16,
    int8Check: 29,
  },
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

// The same options for every orion-native client of a precision, so that the main thread
// and every worker share one service, with the thread count the raw session gets. The two
// precisions are two services (two loaded models).
const orionOptions = (precision = 'exact') => ({ modelPath: modelDir(), threads: THREADS, precision })

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

async function loadOrion(precision = 'exact') {
  const started = performance.now()
  const orion = require(ROOT)
  const client = orion.getSharedEmbeddingClient(orionOptions(precision))
  await client.createEmbedding('load the model') // it loads lazily
  const running = client.getStats().precision
  if (running !== precision) throw new Error(`asked for precision ${precision}, getStats() says ${running}`)
  return {
    client,
    precision,
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

// int8's vectors against exact's (and against raw onnxruntime's, the unmodified graph in
// fp32), one at a time and in one batch.
async function checkInt8Agreement(orion, int8, raw, texts) {
  const all = [...CHECK_TEXTS, ...texts]
  const clear = () => [orion, int8].forEach((c) => c.client.clearCache())
  const checks = []
  clear()
  for (const text of all) {
    const [e, i] = [await orion.embedOne(text), await int8.embedOne(text)]
    const check = { mode: 'single', text, cosine: cosine(i, e) }
    if (raw) check.cosineRaw = cosine(i, await raw.embedOne(text))
    checks.push(check)
  }
  clear()
  const e = rows(await orion.embed(all), all.length)
  const i = rows(await int8.embed(all), all.length)
  const r = raw ? rows(await raw.embed(all), all.length) : null
  all.forEach((text, k) => {
    const check = { mode: 'batch', text, cosine: cosine(i[k], e[k]) }
    if (r) check.cosineRaw = cosine(i[k], r[k])
    checks.push(check)
  })
  const min = Math.min(...checks.map((c) => c.cosine))
  const minRaw = raw ? Math.min(...checks.map((c) => c.cosineRaw)) : null
  return { target: INT8_COSINE_TARGET, min, minRaw, pass: min >= INT8_COSINE_TARGET, checks }
}

// Texts/s of each contender, `runs` times, runs of the contenders interleaved (their order
// rotating between runs); fresh texts each run. Ratios are orion-native's over each peer's.
async function throughput({ runs, count, contenders, nextTexts, go }) {
  const names = Object.keys(contenders).filter((name) => contenders[name])
  const rates = Object.fromEntries(names.map((name) => [name, []]))
  for (let r = 0; r < runs; r++) {
    const order = [...names.slice(r % names.length), ...names.slice(0, r % names.length)]
    for (const name of order) {
      contenders[name].client?.clearCache()
      const texts = nextTexts(count)
      await sleep(50) // lets the previous contender's intra-op threads stop spinning
      const started = performance.now()
      await go(contenders[name], texts)
      rates[name].push(texts.length / ((performance.now() - started) / 1000))
    }
  }
  const result = { texts: count }
  for (const name of names) result[name] = summary(rates[name])
  if (result.raw) result.ratio = result.orion.median / result.raw.median
  if (result.transformers) result.ratioTransformers = result.orion.median / result.transformers.median
  if (result.int8) {
    // int8 ÷ exact: the median of each run's ratio. The two run within seconds of each
    // other in every run, while this machine's speed drifts by tens of percent over minutes.
    result.int8Ratios = rates.int8.map((rate, r) => rate / rates.orion[r])
    result.int8Ratio = summary(result.int8Ratios).median
    result.int8Target = INT8_SPEED_TARGET
    result.int8Pass = result.int8Ratio >= INT8_SPEED_TARGET
    if (result.raw) result.int8RatioRaw = result.int8.median / result.raw.median
  }
  return result
}

async function oneAtATime(contender, texts) {
  for (const text of texts) await contender.embedOne(text)
}

async function batches(contender, texts) {
  for (const batch of chunks(texts, BATCH)) await contender.embed(batch)
}

// Texts the model embedded, and their summed queue wait, so far: getStats() gives means
// over the service's life, and a scenario's means come from the difference of two.
const embedded = (s) => s.meanBatchSize * s.batches
const totalWaitMs = (s) => s.meanQueueWaitMs * embedded(s)

// Eight workers per precision, each sending single texts, all at once; the runs of the
// precisions interleaved like those of throughput().
async function workerThroughput({ runs, perWorker, clients, nextTexts }) {
  const names = Object.keys(clients)
  const pools = {}
  try {
    for (const name of names) pools[name] = await WorkerPool.start(WORKERS, orionOptions(clients[name].precision))
    for (const name of names) await pools[name].run(pools[name].workers.map(() => nextTexts(4))) // warm-up
    const rates = Object.fromEntries(names.map((name) => [name, []]))
    const batchRates = Object.fromEntries(names.map((name) => [name, []]))
    const pairs = Object.fromEntries(names.map((name) => [name, []]))
    // The queue's figures over the workers' runs only: { batches, texts, waitMs } per name.
    const queue = Object.fromEntries(names.map((name) => [name, { batches: 0, texts: 0, waitMs: 0 }]))
    // Each run times the workers and, right before or after (alternating), the same number of
    // texts in batches of 32 from this thread: this machine's speed drifts by tens of percent
    // within minutes, and only a side-by-side pair compares the two fairly.
    const timed = async (texts, go) => {
      await sleep(50) // lets the other service's intra-op threads stop spinning
      const started = performance.now()
      await go()
      return texts / ((performance.now() - started) / 1000)
    }
    for (let r = 0; r < runs; r++) {
      const order = [...names.slice(r % names.length), ...names.slice(0, r % names.length)]
      for (const name of order) {
        clients[name].client.clearCache()
        const texts = pools[name].workers.map(() => nextTexts(perWorker))
        const batchTexts = nextTexts(WORKERS * perWorker)
        const workers = async () => {
          const before = clients[name].client.getStats()
          const rate = await timed(WORKERS * perWorker, () => pools[name].run(texts))
          const after = clients[name].client.getStats()
          queue[name].batches += after.batches - before.batches
          queue[name].texts += embedded(after) - embedded(before)
          queue[name].waitMs += totalWaitMs(after) - totalWaitMs(before)
          return rate
        }
        const batched = () => timed(batchTexts.length, () => batches(clients[name], batchTexts))
        let w, b
        if (r % 2) {
          w = await workers()
          b = await batched()
        } else {
          b = await batched()
          w = await workers()
        }
        rates[name].push(w)
        batchRates[name].push(b)
        pairs[name].push(w / b)
      }
    }
    const measured = (name) => {
      const { batches: batchesRun, texts, waitMs } = queue[name]
      return {
        orion: summary(rates[name]),
        precision: clients[name].client.getStats().precision,
        // Batches of 32 from one thread, each run next to the workers' run it is paired with.
        batch32: summary(batchRates[name]),
        vsBatchPairs: pairs[name],
        // How well the shared queue gathered the workers' single texts into batches, and
        // how long a text waited in it for its batch to go to the model.
        meanBatchSize: batchesRun ? texts / batchesRun : 0,
        meanQueueWaitMs: texts > 0 ? waitMs / texts : 0,
      }
    }
    // exact's figures where they always were; int8's under int8.
    const { exact, ...others } = Object.fromEntries(names.map((name) => [name, measured(name)]))
    return { workers: WORKERS, textsPerWorker: perWorker, ...exact, ...others }
  } finally {
    await Promise.all(Object.values(pools).map((pool) => pool.close()))
  }
}

// The eight workers' rate against the batch-of-32 rate from one thread, per precision: the
// median of the side-by-side pairs' ratios.
function workersVsBatch(workers8) {
  for (const w of [workers8, workers8.int8]) {
    if (!w) continue
    w.vsBatch = summary(w.vsBatchPairs).median
    w.vsBatchTarget = WORKERS_BATCH_TARGET
    w.vsBatchPass = w.vsBatch >= WORKERS_BATCH_TARGET
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
// of an earlier run is counted. spec: { workers, perWorker, precision } for orion-native,
// { raw: true, perWorker } for raw onnxruntime-node.
function memoryRun(spec) {
  const what = spec.raw ? 'raw onnxruntime' : `${spec.precision}, ${spec.workers} workers`
  const args = ['--expose-gc', __filename, '--memory-child', JSON.stringify(spec)]
  const child = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 300_000 })
  if (child.status !== 0) {
    throw new Error(
      `memory child (${what}) failed: ${child.error?.message ?? `exit ${child.status} ${child.signal ?? ''}`}\n${child.stderr}`,
    )
  }
  return JSON.parse(child.stdout.trim().split('\n').pop())
}

const settle = async () => {
  globalThis.gc?.()
  await sleep(300)
}

async function memoryChild(spec) {
  if (spec.raw) return rawMemoryChild(spec)
  if (spec.runtime) return runtimeMemoryChild()
  const { workers, perWorker, precision = 'exact' } = spec
  const nextTexts = textSource('memory', 3)
  const pool = await WorkerPool.start(workers, orionOptions(precision), { gc: true })
  await settle()
  const idleRss = process.memoryUsage.rss()
  const replies = await pool.run(pool.workers.map(() => nextTexts(perWorker)))
  await settle()
  const afterRss = process.memoryUsage.rss()
  const stats = replies[replies.length - 1].stats
  await pool.close()
  const result = {
    workers,
    precision: stats.precision,
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

// Today's path: the unmodified model.onnx in an onnxruntime-node session on the main
// thread, its texts one at a time like a worker's. Idle is after loading the modules, so
// that the growth is the session's (and the tokenizer's, as orion-native's growth has its).
async function rawMemoryChild({ perWorker }) {
  const nextTexts = textSource('memory', 3)
  require('onnxruntime-node')
  await import('@xenova/transformers/src/tokenizers.js')
  await settle()
  const idleRss = process.memoryUsage.rss()
  const raw = await loadRaw()
  for (const text of nextTexts(perWorker)) await raw.embedOne(text)
  await settle()
  const afterRss = process.memoryUsage.rss()
  const result = {
    workers: 0,
    textsPerWorker: perWorker,
    idleRss,
    afterRss,
    growth: afterRss - idleRss,
    peakRss: process.resourceUsage().maxRSS * 1024,
  }
  process.stdout.write(JSON.stringify(result) + '\n')
}

// A one-node ONNX model (y = Identity(x), float [1], opset 13), as `onnx.helper` writes it.
const IDENTITY_ONNX = 'CAg6NwoQCgF4EgF5IghJZGVudGl0eRIBZ1oPCgF4EgoKCAgBEgQKAggBYg8KAXkSCgoICAESBAoCCAFCBAoAEA0='

// What ONNX Runtime costs before any model: the RSS growth of creating and running a session
// of a one-node model with onnxruntime-node (the same library version orion-native loads),
// its module already loaded, as rawMemoryChild does. The first session of a process builds
// ONNX Runtime's environment, thread pools and kernel registries; every model's growth in a
// fresh process includes that.
async function runtimeMemoryChild() {
  const ort = require('onnxruntime-node')
  await settle()
  const idleRss = process.memoryUsage.rss()
  const session = await ort.InferenceSession.create(Buffer.from(IDENTITY_ONNX, 'base64'), {
    intraOpNumThreads: THREADS,
  })
  await session.run({ x: new ort.Tensor('float32', Float32Array.from([1]), [1]) })
  await settle()
  const afterRss = process.memoryUsage.rss()
  process.stdout.write(JSON.stringify({ workers: 0, idleRss, afterRss, growth: afterRss - idleRss }) + '\n')
}

function memory({ runs, perWorker, withRaw }) {
  const kinds = [
    { key: 'exact1', spec: { workers: 1, precision: 'exact' } },
    { key: 'exact8', spec: { workers: WORKERS, precision: 'exact' } },
    { key: 'int81', spec: { workers: 1, precision: 'int8' } },
    { key: 'int88', spec: { workers: WORKERS, precision: 'int8' } },
    ...(withRaw ? [{ key: 'raw', spec: { raw: true } }] : []),
    ...(withRaw ? [{ key: 'runtime', spec: { runtime: true } }] : []),
  ]
  const samples = Object.fromEntries(kinds.map((k) => [k.key, []]))
  let rawError = null
  // Runs of the kinds interleaved, like the throughput runs.
  for (let r = 0; r < runs; r++) {
    for (const { key, spec } of kinds) {
      if ((key === 'raw' || key === 'runtime') && rawError) continue
      const what = spec.raw
        ? 'raw onnxruntime, main thread'
        : spec.runtime
          ? 'ONNX Runtime alone (a one-node model)'
          : `${spec.precision}, ${spec.workers} worker${spec.workers > 1 ? 's' : ''}`
      log(`  ${what}, run ${r + 1}/${runs}`)
      try {
        samples[key].push(memoryRun({ ...spec, perWorker }))
      } catch (e) {
        if (key !== 'raw' && key !== 'runtime') throw e
        rawError = e.message
        log(`  raw onnxruntime memory unavailable: ${e.message}`)
      }
    }
  }
  const of = (key) =>
    samples[key].length
      ? {
          samples: samples[key],
          growth: summary(samples[key].map((s) => s.growth)),
          idleRss: summary(samples[key].map((s) => s.idleRss)),
        }
      : null
  const one = of('exact1')
  const eight = of('exact8')
  const ratio = eight.growth.median / one.growth.median
  const int8One = of('int81')
  const int8Eight = of('int88')
  // Per process: the larger of the two worker counts (they share one model).
  const int8Max = Math.max(int8One.growth.median, int8Eight.growth.median)
  // The model's memory is what the process grows by beyond what ONNX Runtime costs any
  // process before its first model (the library's pages, its environment and thread
  // pools): the issue's probe measured a model the same way, in a Python process that had
  // imported onnxruntime. Without that measurement, the whole growth stands for it.
  const runtime = of('runtime')
  const beyondRuntime = runtime ? int8Max - runtime.growth.median : null
  return {
    oneWorker: one,
    eightWorkers: eight,
    ratio,
    target: MEMORY_TARGET,
    pass: ratio <= MEMORY_TARGET,
    int8: {
      oneWorker: int8One,
      eightWorkers: int8Eight,
      ratio: int8Eight.growth.median / int8One.growth.median,
      vsExact: int8One.growth.median / one.growth.median,
      maxGrowth: int8Max,
      beyondRuntime,
      target: INT8_MEMORY_TARGET,
      pass: (beyondRuntime ?? int8Max) <= INT8_MEMORY_TARGET,
    },
    raw: of('raw'),
    runtime,
    ...(rawError ? { rawError } : {}),
  }
}

// Every target of the run, pass or fail: [{ what, value, unit, target, pass }], unit being
// how value reads: 'x' (a ratio), 'bytes', 'cosine' or 'share' (of the time).
function targets(r) {
  const t = []
  const add = (what, value, unit, target, pass) => t.push({ what, value, unit, target, pass })
  const { single, batch32, workers8, memory: mem } = r
  if (batch32.ratio != null) {
    add(
      `exact: batches of ${BATCH} ≥ ${BATCH_TARGET}× raw onnxruntime`,
      batch32.ratio,
      'x',
      BATCH_TARGET,
      batch32.ratio >= BATCH_TARGET,
    )
  }
  const w1 = workers8.orion.median / single.orion.median
  add(`exact: ${WORKERS} workers ≥ ${WORKERS_TARGET}× one at a time`, w1, 'x', WORKERS_TARGET, w1 >= WORKERS_TARGET)
  add(`exact: ${WORKERS}-worker model memory ≤ ${MEMORY_TARGET}× 1 worker`, mem.ratio, 'x', MEMORY_TARGET, mem.pass)
  add(
    `exact: a cached call < ${CACHE_TARGET * 100}% of a computed one`,
    r.cache.ratio,
    'share',
    CACHE_TARGET,
    r.cache.pass,
  )
  if (r.agreement)
    add(
      `exact: min cosine vs raw onnxruntime > ${COSINE_TARGET}`,
      r.agreement.min,
      'cosine',
      COSINE_TARGET,
      r.agreement.pass,
    )
  const workersOf = { exact: workers8, int8: workers8.int8 }
  for (const name of PRECISIONS) {
    const w = workersOf[name]
    add(
      `${name}: ${WORKERS} workers of single texts ≥ ${WORKERS_BATCH_TARGET}× batches of ${BATCH} from one thread`,
      w.vsBatch,
      'x',
      WORKERS_BATCH_TARGET,
      w.vsBatchPass,
    )
  }
  add(`int8: one at a time ≥ ${INT8_SPEED_TARGET}× exact`, single.int8Ratio, 'x', INT8_SPEED_TARGET, single.int8Pass)
  add(
    `int8: batches of ${BATCH} ≥ ${INT8_SPEED_TARGET}× exact`,
    batch32.int8Ratio,
    'x',
    INT8_SPEED_TARGET,
    batch32.int8Pass,
  )
  add(
    mem.int8.beyondRuntime == null
      ? `int8: model memory ≤ ${INT8_MEMORY_TARGET / MIB} MiB per process (RSS growth, larger of 1 and ${WORKERS} workers)`
      : `int8: model memory ≤ ${INT8_MEMORY_TARGET / MIB} MiB per process (RSS growth beyond ONNX Runtime's start-up, larger of 1 and ${WORKERS} workers)`,
    mem.int8.beyondRuntime ?? mem.int8.maxGrowth,
    'bytes',
    INT8_MEMORY_TARGET,
    mem.int8.pass,
  )
  add(
    `int8: min cosine vs exact ≥ ${INT8_COSINE_TARGET}`,
    r.int8Agreement.min,
    'cosine',
    INT8_COSINE_TARGET,
    r.int8Agreement.pass,
  )
  return t
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
    `- ${r.config.runs} runs per scenario, medians shown; model load: orion-native ${fmt(r.load.orionMs, 0)} ms${r.load.int8Ms == null ? '' : ` (int8 ${fmt(r.load.int8Ms, 0)} ms)`}, raw ${fmt(r.load.rawMs, 0)} ms, transformers.js ${fmt(r.load.transformersMs, 0)} ms`,
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
      `${fmt(workers8.orion.median)} (mean batch ${fmt(workers8.meanBatchSize)}${workers8.meanQueueWaitMs == null ? '' : `, queue wait ${ms(workers8.meanQueueWaitMs)}`}; ${ratio(workers8.orion.median / single.orion.median)} one at a time)`,
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
  if (r.int8Agreement) lines.push('', ...precisionReport(r))
  return lines.join('\n')
}

// exact and int8 side by side, with raw onnxruntime on the unmodified graph (today's path).
function precisionReport(r) {
  const { single, batch32, workers8: w, memory: mem, int8Agreement: agree } = r
  const x = (v) => (v == null || !Number.isFinite(v) ? '—' : `${fmt(v, 2)}×`)
  const w8 = w.int8
  const vsBatch = (v) => `${x(v.vsBatch)} ${mark(v.vsBatchPass)}`
  const growth = (m) => (m ? mib(m.growth.median) : '—')
  const table = [
    ['scenario', 'exact', 'int8', 'int8 ÷ exact', 'raw onnxruntime (today’s path)', 'target'],
    [
      'one text at a time (texts/s)',
      fmt(single.orion.median),
      fmt(single.int8.median),
      x(single.int8Ratio),
      fmt(single.raw?.median),
      `int8 ≥ ${INT8_SPEED_TARGET}× exact ${mark(single.int8Pass)}`,
    ],
    [
      `batches of ${BATCH} (texts/s)`,
      fmt(batch32.orion.median),
      fmt(batch32.int8.median),
      x(batch32.int8Ratio),
      fmt(batch32.raw?.median),
      `int8 ≥ ${INT8_SPEED_TARGET}× exact ${mark(batch32.int8Pass)}`,
    ],
    [
      `${WORKERS} workers, single texts (texts/s, all workers)`,
      fmt(w.orion.median),
      fmt(w8.orion.median),
      x(w8.orion.median / w.orion.median),
      '—',
      '—',
    ],
    [`${WORKERS} workers: mean batch size`, fmt(w.meanBatchSize), fmt(w8.meanBatchSize), '—', '—', '—'],
    [`${WORKERS} workers: mean queue wait`, ms(w.meanQueueWaitMs), ms(w8.meanQueueWaitMs), '—', '—', '—'],
    [
      `${WORKERS} workers ÷ batches of ${BATCH} from one thread`,
      vsBatch(w),
      vsBatch(w8),
      '—',
      '—',
      `≥ ${WORKERS_BATCH_TARGET}× (each precision)`,
    ],
    [
      'RSS growth, 1 worker (whole process, fresh)',
      growth(mem.oneWorker),
      growth(mem.int8.oneWorker),
      x(mem.int8.vsExact),
      mem.raw ? `${growth(mem.raw)} (main thread)` : '—',
      mem.runtime ? '—' : `int8 ≤ ${INT8_MEMORY_TARGET / MIB} MiB ${mark(mem.int8.pass)}`,
    ],
    [
      `RSS growth, ${WORKERS} workers (whole process, fresh)`,
      growth(mem.eightWorkers),
      growth(mem.int8.eightWorkers),
      x(mem.int8.eightWorkers.growth.median / mem.eightWorkers.growth.median),
      '—',
      '—',
    ],
    ...(mem.runtime
      ? [
          [
            '… of which ONNX Runtime starting up (a one-node model, fresh process)',
            growth(mem.runtime),
            growth(mem.runtime),
            '—',
            growth(mem.runtime),
            '—',
          ],
          [
            `model memory: growth beyond ONNX Runtime's start-up (larger of 1 and ${WORKERS} workers)`,
            mib(Math.max(mem.oneWorker.growth.median, mem.eightWorkers.growth.median) - mem.runtime.growth.median),
            mib(mem.int8.beyondRuntime),
            '—',
            mem.raw ? `${mib(mem.raw.growth.median - mem.runtime.growth.median)} (main thread)` : '—',
            `int8 ≤ ${INT8_MEMORY_TARGET / MIB} MiB ${mark(mem.int8.pass)}`,
          ],
        ]
      : []),
    [
      'min cosine of int8 vectors',
      '—',
      `${fmt(agree.min, 6)} vs exact`,
      '—',
      agree.minRaw == null ? '—' : `${fmt(agree.minRaw, 6)} vs raw`,
      `≥ ${INT8_COSINE_TARGET} vs exact ${mark(agree.pass)}`,
    ],
  ]
  const lines = [
    `Precision: exact (default) and int8 (precision: 'int8', integer products on the int8 weights), side by side; runs interleaved; int8 vectors checked on ${agree.checks.length / 2} texts, one at a time and in one batch.`,
    '',
    ...markdownTable(table),
  ]
  if (mem.rawError) lines.push('', `raw onnxruntime memory unavailable: ${mem.rawError}`)
  if (r.targets) {
    lines.push('', 'Targets:', '')
    const value = {
      x: (v) => `${fmt(v, 2)}×`,
      bytes: mib,
      cosine: (v) => fmt(v, 6),
      share: (v) => `${fmt(v * 100, 2)}%`,
    }
    for (const t of r.targets) lines.push(`- ${mark(t.pass)} ${t.what}: ${value[t.unit](t.value)}`)
  }
  return lines
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

  log('loading orion-native, precision exact')
  const orion = await loadOrion('exact')
  results.versions.orionNative = orion.version
  results.load.orionMs = orion.loadMs

  log('loading orion-native, precision int8 (a second service)')
  const int8 = await loadOrion('int8')
  results.load.int8Ms = int8.loadMs

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
  for (const contender of [orion, int8, raw, transformers].filter(Boolean)) {
    await batches(contender, nextTexts(BATCH))
    await oneAtATime(contender, nextTexts(8))
  }

  if (raw) {
    log('checking that the vectors agree')
    results.agreement = await checkAgreement(orion, raw, nextTexts(2))
  }
  if (transformers) results.transformersAgreement = await checkTransformersAgreement(orion, transformers, nextTexts(2))
  log('checking int8 vectors against exact ones')
  results.int8Agreement = await checkInt8Agreement(orion, int8, raw, nextTexts(plan.int8Check))
  const contenders = { orion, int8, raw, transformers }

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
  results.workers8 = await workerThroughput({
    runs: plan.runs,
    perWorker: plan.perWorker,
    clients: { exact: orion, int8 },
    nextTexts,
  })
  workersVsBatch(results.workers8)

  log(`cache: ${plan.cache} texts`)
  results.cache = await cacheLatency({ count: plan.cache, orion, nextTexts })

  log('memory, each in a fresh process:')
  results.memory = memory({ runs: plan.memoryRuns, perWorker: plan.memoryPerWorker, withRaw: Boolean(raw) })
  results.targets = targets(results)

  const file = writeResults('embedding', results)
  if (json) process.stdout.write(JSON.stringify(results, null, 2) + '\n')
  else process.stdout.write(`${report(results)}\n\nFull results: ${path.relative(process.cwd(), file)}\n`)
}

if (!isMainThread) embedWorker()
else if (process.argv[2] === '--memory-child') memoryChild(JSON.parse(process.argv[3])).catch(die)
else if (require.main === module) main().catch(die)

module.exports = { report }
