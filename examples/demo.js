#!/usr/bin/env node
'use strict'
// The orion-native demo: the app's workers on one process-wide runtime.
//
//   node examples/demo.js [--workers N] [--json]
//
// Three workers (memory, migration, genius hour) embed a small corpus through
// getSharedEmbeddingClient(); the genius-hour worker then searches the others'
// vectors. An LLM worker loads the `demo` chat model through getModelLoader(),
// reporting progress the way the app's UI expects, and streams an answer built from
// the search results. The main thread reports one embedding model load for all
// workers, memory and models loaded.
const os = require('node:os')
const path = require('node:path')
const { Worker } = require('node:worker_threads')
const { getSharedEmbeddingClient, getModelLoader, getMemoryMonitor } = require('..')
const corpus = require('./corpus.json')

const args = process.argv.slice(2)
const json = args.includes('--json')
const wi = args.indexOf('--workers')
const workers = wi >= 0 ? Number(args[wi + 1]) : 3
if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
  console.error('--workers must be an integer from 1 to 64')
  process.exit(2)
}
const log = json ? () => {} : (...a) => console.log(...a)

const ROLES = ['memory', 'migration', 'genius-hour']
const texts = { memory: corpus.memory, migration: corpus.migration, 'genius-hour': corpus.memory.slice(0, 2) }

function mb(bytes) {
  return `${(bytes / 1048576).toFixed(0)} MB`
}

async function main() {
  const t0 = performance.now()
  const rssBefore = process.memoryUsage().rss
  log(`orion-native demo: ${workers} worker_threads share one embedding model\n`)
  const spawned = Array.from({ length: workers }, (_, i) => {
    const role = ROLES[i % ROLES.length]
    const name = workers > ROLES.length ? `${role}#${i}` : role
    return {
      name,
      role,
      worker: new Worker(path.join(__dirname, 'workers', 'embedding.worker.js'), {
        workerData: { role: name, texts: texts[role], queries: corpus.queries },
      }),
    }
  })
  const embedded = await Promise.all(
    spawned.map(
      ({ worker, name }) =>
        new Promise((resolve, reject) => {
          worker.on('message', (m) => {
            if (m.type === 'embedded') {
              log(
                `  ${name.padEnd(14)} embedded ${String(m.count).padStart(2)} texts in ${m.ms.toFixed(0).padStart(5)} ms`,
              )
              resolve(m)
            } else if (m.type === 'error') reject(Object.assign(new Error(m.message), { code: m.code }))
          })
          worker.once('error', reject)
        }),
    ),
  )
  const firstAnswerMs = performance.now() - t0

  // The genius-hour worker searches what the memory and migration workers embedded.
  const index = embedded
    .filter((m) => !m.role.startsWith('genius-hour'))
    .flatMap((m) => m.vectors.map((vector, i) => ({ role: m.role, vector, text: texts[m.role.split('#')[0]][i] })))
  const searcher = spawned.find((s) => s.role === 'genius-hour') || spawned[0]
  const hits = await new Promise((resolve, reject) => {
    searcher.worker.on('message', (m) =>
      m.type === 'search' ? resolve(m.hits) : m.type === 'error' && reject(new Error(m.message)),
    )
    searcher.worker.postMessage({ type: 'search', index })
  })
  log(`\nsemantic search from the ${searcher.name} worker:`)
  for (const h of hits) {
    log(`  ? ${h.query}`)
    for (const t of h.top) log(`      ${t.score.toFixed(3)}  [${t.from}] ${t.text}`)
  }

  await Promise.all(spawned.map((s) => s.worker.terminate()))
  const monitor = getMemoryMonitor()
  log(`\n${memoryStatus(await monitor.takeSnapshot())}`)

  // The LLM worker answers the last query from the best match.
  const capital = hits[hits.length - 1]
  log(`\nLLM worker: loading 'demo' (SmolLM2-135M-Instruct, Q4_1)`)
  const llm = await runLlmWorker(capital.query, capital.top[0].text)
  const stats = getSharedEmbeddingClient().getStats()
  const loader = getModelLoader().getStats()
  const snapshot = await monitor.takeSnapshot()
  log(memoryStatus(snapshot))
  const summary = {
    workers,
    embeddingModelLoads: stats.modelLoads,
    texts: stats.requests,
    batches: stats.batches,
    meanBatchSize: Number(stats.meanBatchSize.toFixed(2)),
    cacheHits: stats.cacheHits,
    rssBytes: process.memoryUsage().rss,
    rssGrowthBytes: process.memoryUsage().rss - rssBefore,
    timeToAllEmbeddedMs: Math.round(firstAnswerMs),
    llm: {
      model: 'demo',
      loadMs: Math.round(llm.loadMs),
      timeToFirstTokenMs: Math.round(llm.firstTokenMs),
      answer: llm.text,
      tokensPerSecond: Number(llm.timings.tokensPerSecond.toFixed(1)),
      progress: llm.progress,
      streamedPieces: llm.pieces.length,
      streamedText: llm.pieces.join(''),
    },
    modelsLoaded: loader.models.map((m) => ({ key: m.key, bytes: m.bytes })),
    memory: { pressure: snapshot.pressure, recommendations: snapshot.recommendations },
    systemAvailableBytes: os.freemem(),
    totalMs: Math.round(performance.now() - t0),
    search: hits,
  }
  if (json) {
    console.log(JSON.stringify(summary, null, 2))
  } else {
    log(`\nsummary`)
    log(`  embedding model loads : ${summary.embeddingModelLoads} for ${workers} workers`)
    log(
      `  texts embedded        : ${summary.texts} in ${summary.batches} model calls (mean batch ${summary.meanBatchSize})`,
    )
    log(
      `  process RSS           : ${mb(summary.rssBytes)} (+${mb(summary.rssGrowthBytes)} for the model, its runtime and ${workers} workers)`,
    )
    log(`  all workers embedded  : ${summary.timeToAllEmbeddedMs} ms after start`)
    log(
      `  LLM                   : loaded in ${summary.llm.loadMs} ms, first token after ${summary.llm.timeToFirstTokenMs} ms, ${summary.llm.tokensPerSecond} tokens/s`,
    )
    log(`  models loaded         : ${summary.modelsLoaded.map((m) => `${m.key} (${mb(m.bytes)})`).join(', ')}`)
    log(
      `  memory                : ${summary.memory.pressure} pressure, RSS ${mb(summary.rssBytes)}, system available ${mb(summary.systemAvailableBytes)}`,
    )
    log(`  total                 : ${(summary.totalMs / 1000).toFixed(1)} s`)
  }
}

// The line the app's status indicator shows: pressure, RSS, what orion-native holds.
function memoryStatus(s) {
  const models = s.orion.models.map((m) => `${m.key} (${mb(m.bytes)})`).join(', ') || 'none'
  return `memory: ${s.pressure} pressure, RSS ${mb(s.process.rss)}, models loaded: ${models}, embedding cache ${mb(s.orion.embeddingCacheBytes)}`
}

// The load progress the worker posts, on a terminal as a progress bar (cli-progress).
function progressBar() {
  const cliProgress = require('cli-progress')
  const bar = new cliProgress.SingleBar(
    { format: '  loading [{bar}] {percentage}%' },
    cliProgress.Presets.shades_classic,
  )
  bar.start(100, 0)
  return bar
}

function runLlmWorker(question, context) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(path.join(__dirname, 'workers', 'llm.worker.js'), {
      workerData: { modelKey: 'demo', question, context },
    })
    const progress = []
    const pieces = []
    const tty = !json && process.stdout.isTTY
    let bar = null
    worker.on('message', (m) => {
      if (m.type === 'load_progress') {
        progress.push(m.payload.progress)
        if (tty) {
          bar = bar || progressBar()
          bar.update(m.payload.progress)
        } else if (!json && m.payload.progress === 100) log('  model loaded (100 %)')
      } else if (m.type === 'token') {
        if (!json && progress.length && progress.at(-1) === 100 && !runLlmWorker.started) {
          runLlmWorker.started = true
          if (bar) bar.stop()
          process.stdout.write(`  ? ${question}\n  > `)
        }
        pieces.push(m.payload.text)
        if (!json) process.stdout.write(m.payload.text)
      } else if (m.type === 'answer') {
        if (!json) process.stdout.write('\n')
        worker.terminate()
        resolve({ ...m.payload, progress, pieces })
      } else if (m.type === 'error') {
        reject(Object.assign(new Error(m.message), { code: m.code }))
      }
    })
    worker.once('error', reject)
  })
}

main().catch((e) => {
  console.error(`demo failed: ${e.code ? `[${e.code}] ` : ''}${e.message}`)
  process.exit(1)
})
