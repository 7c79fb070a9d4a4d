#!/usr/bin/env node
'use strict'
// Workers benchmark: the app's status quo, where every worker_thread creates its own
// transformers.js pipeline, against orion-native, where every worker_thread gets a handle on
// one process-wide model. Both run the same int8 all-MiniLM-L6-v2 model.onnx (for
// transformers.js a copy that differs only in its IR version byte, see bench/transformers.js).
//
//   node bench/workers.js [--quick] [--json]
//
//   --quick  1 run, 1 and 2 workers only: a smoke test of the script, not numbers to quote
//   --json   print the results JSON on stdout instead of the report (progress goes to stderr)
//
// For N = 1, 2, 4, 8 workers and each contender, in a fresh child process (spawnSync of
// this script with --child) so that nothing loaded by an earlier measurement is counted:
//   (a) model memory: the process RSS once all N workers are started and idle, with nothing
//       loaded, and again once every worker has its first embedding; the growth is what
//       loading the library and the model in N workers costs the process;
//   (b) time to first embedding: from creating the workers until every worker has its first
//       embedding (the pause taken to read the idle RSS is not counted);
//   (c) texts/s: then every worker embeds the same 20 short texts one at a time, all workers
//       at once; total texts over the time until the last worker is done.
// Full: 3 runs per N per contender, interleaved (and the contenders' order alternates
// between runs), medians reported. The results go to bench/results/workers-<date>.json
// (-quick.json for --quick); `npm run bench` draws (a) as a chart (bench/report.js).
//
// The contenders
//   orion-native     each worker: getSharedEmbeddingClient({ modelPath, threads }) and
//                    createEmbedding(text);
//   transformers.js  each worker: pipeline('feature-extraction', 'Xenova/all-MiniLM-L6-v2',
//                    { quantized: true }) and extractor(text, { pooling: 'mean', normalize: true }),
//                    read offline from a temporary Hugging Face style folder whose files are
//                    links to orion-native's, and onnx/model_quantized.onnx a copy of its
//                    model.onnx that differs in one byte, the IR version (see bench/transformers.js).
//
// The 20 texts are the same for every worker and both contenders, except that each worker
// tags them with its number: orion-native's cache is shared by all workers, and without the
// tag every worker after the first would read the others' vectors from it instead of running
// the model. (orion-native's getStats() is recorded to show that the cache answered none.)
//
// How transformers.js is made to run offline on the same files, unmodified, and why it has
// no thread setting: bench/transformers.js.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const {
  log,
  sleep,
  fmt,
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
const { HF_MODEL_ID, makeHfFolder, loadTransformers: loadPipeline, transformersVersions } = require('./transformers')

const ROOT = path.join(__dirname, '..')
const MODEL = 'all-MiniLM-L6-v2'
const THREADS = os.availableParallelism()
const MIB = 1024 * 1024
const COSINE_TARGET = 0.99
const CONTENDERS = ['orion', 'transformers']
const LABELS = { orion: 'orion-native', transformers: 'transformers.js' }

const PLANS = {
  quick: { runs: 1, workerCounts: [1, 2] },
  full: { runs: 3, workerCounts: [1, 2, 4, 8] },
}

const TEXTS = [
  'Paris is the capital of France.',
  'The quick brown fox jumps over the lazy dog.',
  'How do I reset my password?',
  'Worker threads share one process.',
  'The meeting moved to Thursday afternoon.',
  'Rust makes systems programming safer.',
  'Embeddings map text to vectors.',
  'The river flooded after three days of rain.',
  'Please send me the quarterly report.',
  'A small model can run on a laptop.',
  'Coffee tastes better in the morning.',
  'The train to Berlin leaves at nine.',
  'Search results should match the query.',
  'Memory usage grows with every worker.',
  'She planted tomatoes in the garden.',
  'Latency matters for interactive apps.',
  'The museum opens at ten on Sundays.',
  'Cache hits are cheaper than model calls.',
  'Music helps me concentrate.',
  'The server restarted without errors.',
]

const CHECK_TEXTS = [
  'Paris is the capital of France.',
  'Café naïve façade: accents, ÜMLAUTS and 東京 in one sentence.',
  TEXTS[12],
]

const now = () => performance.timeOrigin + performance.now() // comparable across threads

// ---------------------------------------------------------------------------------------
// The contenders. Each load function returns embed(text) → vector and stats() → object.

function loadOrion({ modelDir }) {
  const client = require(ROOT).getSharedEmbeddingClient({ modelPath: modelDir, threads: THREADS })
  return { embed: (text) => client.createEmbedding(text), stats: () => client.getStats() }
}

async function loadTransformers({ hfRoot }) {
  const { embed } = await loadPipeline(hfRoot)
  return { embed, stats: () => null }
}

const LOADERS = { orion: async (options) => loadOrion(options), transformers: loadTransformers }

// ---------------------------------------------------------------------------------------
// Worker threads: started bare; on 'load' they load their contender and embed one text, on
// 'run' they embed their texts one at a time.

function workerMain() {
  let contender = null
  const reply = (message) => parentPort.postMessage(message)
  parentPort.on('message', async (msg) => {
    try {
      if (msg.type === 'gc') {
        globalThis.gc?.()
        reply({ type: 'gc' })
      } else if (msg.type === 'load') {
        contender = await LOADERS[workerData.contender](workerData)
        const vector = await contender.embed(msg.text)
        reply({ type: 'load', at: now(), dimension: vector.length })
      } else if (msg.type === 'run') {
        for (const text of msg.texts) await contender.embed(text)
        reply({ type: 'run', at: now(), stats: contender.stats() })
      }
    } catch (e) {
      reply({ type: 'error', error: { message: e.message, code: e.code, stack: e.stack } })
    }
  })
  reply({ type: 'ready' })
}

// Sends each worker its message and resolves with the replies once all have answered.
function ask(workers, messages) {
  return Promise.all(
    workers.map(async (w, i) => {
      w.postMessage(messages[i])
      const [answer] = await once(w, 'message')
      if (answer.type === 'error') {
        throw Object.assign(new Error(`worker ${i}: ${answer.error.message}`), { code: answer.error.code })
      }
      return answer
    }),
  )
}

// ---------------------------------------------------------------------------------------
// Child processes.

async function settle(workers) {
  await ask(
    workers,
    workers.map(() => ({ type: 'gc' })),
  )
  globalThis.gc?.()
  await sleep(500)
}

async function measureChild({ contender, workers: n, modelDir, hfRoot }) {
  const started = now()
  const workers = Array.from(
    { length: n },
    () => new Worker(__filename, { workerData: { role: 'worker', contender, modelDir, hfRoot } }),
  )
  try {
    await Promise.all(workers.map((w) => once(w, 'message'))) // { type: 'ready' }
    const readyMs = now() - started
    await settle(workers)
    const idleRss = process.memoryUsage.rss()

    const loadStarted = now()
    const loaded = await ask(
      workers,
      workers.map((_, i) => ({ type: 'load', text: `Worker ${i} is warming up its embedding model.` })),
    )
    const loadMs = Math.max(...loaded.map((r) => r.at)) - loadStarted
    await settle(workers)
    const loadedRss = process.memoryUsage.rss()

    const runStarted = now()
    const ran = await ask(
      workers,
      workers.map((_, i) => ({ type: 'run', texts: TEXTS.map((t) => `[worker ${i}] ${t}`) })),
    )
    const runMs = Math.max(...ran.map((r) => r.at)) - runStarted
    const stats = ran[ran.length - 1].stats
    return {
      contender,
      workers: n,
      idleRss,
      loadedRss,
      growth: loadedRss - idleRss,
      peakRss: process.resourceUsage().maxRSS * 1024,
      readyMs,
      loadMs,
      firstEmbeddingMs: readyMs + loadMs,
      runMs,
      texts: n * TEXTS.length,
      textsPerSec: (n * TEXTS.length) / (runMs / 1000),
      dimension: loaded[0].dimension,
      orionStats: stats
        ? { modelLoads: stats.modelLoads, requests: stats.requests, cacheHits: stats.cacheHits, batches: stats.batches }
        : undefined,
    }
  } finally {
    await Promise.all(workers.map((w) => w.terminate()))
  }
}

// Both contenders in one thread, to compare their vectors.
async function agreementChild(options) {
  const orion = loadOrion(options)
  const transformers = await loadTransformers(options)
  const checks = []
  for (const text of CHECK_TEXTS) {
    const a = await orion.embed(text)
    const b = await transformers.embed(text)
    checks.push({ text, cosine: cosine(a, b), dimensions: [a.length, b.length] })
  }
  const min = Math.min(...checks.map((c) => c.cosine))
  return { target: COSINE_TARGET, min, pass: min > COSINE_TARGET, checks }
}

async function childMain(args) {
  const result = args.mode === 'agreement' ? await agreementChild(args) : await measureChild(args)
  process.stdout.write(JSON.stringify(result) + '\n')
  process.exit(0) // onnxruntime's threads must not keep the process alive
}

function spawnChild(args) {
  const child = spawnSync(process.execPath, ['--expose-gc', __filename, '--child', JSON.stringify(args)], {
    encoding: 'utf8',
    timeout: 600_000,
    maxBuffer: 64 * MIB,
  })
  if (child.status !== 0) {
    const why = child.error?.message ?? `exit ${child.status}${child.signal ? ` (${child.signal})` : ''}`
    throw new Error(
      `child ${JSON.stringify({ ...args, modelDir: undefined, hfRoot: undefined })} failed: ${why}\n${child.stderr}`,
    )
  }
  return JSON.parse(child.stdout.trim().split('\n').pop())
}

// ---------------------------------------------------------------------------------------
// Setup: the model directory and the Hugging Face style folder transformers.js reads.

const modelDir = () => embeddingModelDir(MODEL)

function versions() {
  return { orionNative: require('../package.json').version, ...transformersVersions() }
}

// ---------------------------------------------------------------------------------------
// Report and chart.

const mib = (bytes) => `${fmt(bytes / MIB)} MiB`
const msec = (x) => `${fmt(x, 0)} ms`
const pct = (x) => `${fmt(x * 100)}%`

function reductions(rows, n) {
  const at = (c) => rows.find((r) => r.workers === n && r.contender === c)
  const o = at('orion')
  const t = at('transformers')
  if (!o?.growth || !t?.growth) return null
  return {
    workers: n,
    memory: 1 - o.growth.median / t.growth.median,
    time: 1 - o.firstEmbeddingMs.median / t.firstEmbeddingMs.median,
    throughputRatio: o.textsPerSec.median / t.textsPerSec.median,
  }
}

function table(rows) {
  const cells = [['workers', 'contender', 'model memory', 'time to first embedding', 'texts/s']]
  for (const r of rows) {
    cells.push(
      r.growth
        ? [
            String(r.workers),
            LABELS[r.contender],
            mib(r.growth.median),
            msec(r.firstEmbeddingMs.median),
            fmt(r.textsPerSec.median),
          ]
        : [String(r.workers), LABELS[r.contender], 'failed', 'failed', 'failed'],
    )
  }
  return markdownTable(cells)
}

function report(r) {
  const v = r.versions
  const lines = [
    `## orion-native vs per-worker transformers.js pipelines${r.quick ? ' (--quick: smoke test, not numbers to quote)' : ''}`,
    '',
    ...machineLines(r),
    `- model ${MODEL} int8 (${r.config.modelFile}), the same weights for both (transformers.js: a copy with ir_version ${r.config.transformersModel.irVersion.split(' (')[0]}); intra-op threads: orion-native ${r.config.threads}, transformers.js onnxruntime's default (physical cores; it has no setting, see bench/transformers.js)`,
    `- orion-native ${v.orionNative}; @xenova/transformers ${v.transformers} with its onnxruntime-node ${v.transformersOnnxruntimeNode.version} (${v.transformersOnnxruntimeNode.path})`,
    `- ${r.config.runs} run${r.config.runs > 1 ? 's' : ''} per N per contender, each in a fresh process, interleaved; medians shown`,
    `- model memory: RSS growth from all N workers idle to all N workers having embedded once; time to first embedding: worker creation to the last worker's first vector; texts/s: all N workers each embedding ${TEXTS.length} short texts one at a time`,
    '',
  ]
  if (r.agreement) {
    lines.push('Vector check, cosine(orion-native, transformers.js):', '')
    for (const c of r.agreement.checks) lines.push(`    ${fmt(c.cosine, 6)}  ${JSON.stringify(c.text)}`)
    lines.push('', `    min ${fmt(r.agreement.min, 6)} > ${COSINE_TARGET}: ${r.agreement.pass ? 'ok' : 'FAILED'}`, '')
  } else if (r.agreementError) {
    lines.push(`Vector check failed: ${r.agreementError}`, '')
  }
  lines.push(...table(r.rows), '')
  const red = r.reductions
  if (red) {
    lines.push(
      `At ${red.workers} workers orion-native uses ${pct(red.memory)} less model memory and reaches every worker's first embedding ${pct(red.time)} sooner than per-worker transformers.js pipelines (texts/s ${fmt(red.throughputRatio, 2)}×).`,
    )
  } else {
    lines.push('No reductions: a contender failed at the largest worker count.')
  }
  const orionLoads = r.samples.filter((s) => s.orionStats).map((s) => s.orionStats)
  if (orionLoads.length) {
    lines.push(
      `orion-native modelLoads per process: ${[...new Set(orionLoads.map((s) => s.modelLoads))].join(', ')}; cache hits during the runs: ${orionLoads.reduce((a, s) => a + s.cacheHits, 0)}`,
    )
  }
  for (const f of r.failures) lines.push('', `FAILED: ${f.contender}, ${f.workers} workers, run ${f.run}: ${f.error}`)
  return lines.join('\n')
}

// ---------------------------------------------------------------------------------------

async function main() {
  const { quick, json } = parseArgs('workers.js', process.argv.slice(2))
  const plan = quick ? PLANS.quick : PLANS.full
  const dir = modelDir()
  const { root: hfRoot, model: hfModel } = makeHfFolder(dir)
  const results = {
    date: new Date().toISOString(),
    quick,
    machine: machine(),
    config: {
      model: MODEL,
      modelFile: path.join(dir, 'model.onnx'),
      transformersModel: {
        id: HF_MODEL_ID,
        file: 'onnx/model_quantized.onnx (quantized: true)',
        copyOf: hfModel.from,
        irVersion: `${hfModel.irVersion} → ${hfModel.givenIrVersion} (the one byte that differs)`,
      },
      threads: THREADS,
      transformersThreads:
        "onnxruntime-node 1.14's default, the physical cores: transformers.js exposes no thread option in Node and that onnxruntime ignores intraOpNumThreads",
      texts: TEXTS.length,
      ...plan,
    },
    versions: versions(),
    samples: [],
    failures: [],
  }
  const common = { modelDir: dir, hfRoot }
  try {
    log('checking that the vectors agree')
    try {
      results.agreement = spawnChild({ mode: 'agreement', ...common })
    } catch (e) {
      results.agreementError = e.message
      log(e.message)
    }

    for (let run = 1; run <= plan.runs; run++) {
      for (const n of plan.workerCounts) {
        const order = run % 2 ? CONTENDERS : [...CONTENDERS].reverse()
        for (const contender of order) {
          log(`  run ${run}/${plan.runs}, ${n} worker${n > 1 ? 's' : ''}, ${LABELS[contender]}`)
          try {
            const sample = spawnChild({ mode: 'measure', contender, workers: n, ...common })
            results.samples.push({ run, ...sample })
            log(
              `    model memory ${mib(sample.growth)}, first embedding ${msec(sample.firstEmbeddingMs)}, ${fmt(sample.textsPerSec)} texts/s`,
            )
          } catch (e) {
            results.failures.push({ run, contender, workers: n, error: e.message })
            log(e.message)
          }
        }
      }
    }
  } finally {
    fs.rmSync(hfRoot, { recursive: true, force: true })
  }

  results.rows = plan.workerCounts.flatMap((n) =>
    CONTENDERS.map((contender) => {
      const s = results.samples.filter((x) => x.workers === n && x.contender === contender)
      if (!s.length) return { workers: n, contender }
      const of = (key) => summary(s.map((x) => x[key]))
      return {
        workers: n,
        contender,
        growth: of('growth'),
        firstEmbeddingMs: of('firstEmbeddingMs'),
        textsPerSec: of('textsPerSec'),
        idleRss: of('idleRss'),
        loadedRss: of('loadedRss'),
        peakRss: of('peakRss'),
      }
    }),
  )
  results.reductions = reductions(results.rows, Math.max(...plan.workerCounts))

  const file = writeResults('workers', results)
  if (json) process.stdout.write(JSON.stringify(results, null, 2) + '\n')
  else process.stdout.write(`${report(results)}\n\nFull results: ${path.relative(process.cwd(), file)}\n`)
  if (results.failures.length || results.agreementError) process.exitCode = 1
}

if (!isMainThread) workerMain()
else if (process.argv[2] === '--child') childMain(JSON.parse(process.argv[3])).catch(die)
else if (require.main === module) main().catch(die)

module.exports = { report, CONTENDERS, LABELS }
