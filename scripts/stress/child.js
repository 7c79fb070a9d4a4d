'use strict'
// One run of an exit scenario of `npm run stress`, in its own process:
//   node scripts/stress/child.js <scenario> <delayMs>
// The parent judges the run by its exit code, signal and stderr.
const path = require('node:path')
const { Worker, isMainThread, workerData } = require('node:worker_threads')

const root = path.join(__dirname, '..', '..')
const [scenario, delayArg] = isMainThread ? process.argv.slice(2) : [workerData.scenario, workerData.delay]
const delay = Number(delayArg || 20)
const texts = (n, tag) => Array.from({ length: n }, (_, i) => `${tag} in flight ${i} ${process.pid}`)

function embedInFlight(opts) {
  const client = require(root).getSharedEmbeddingClient()
  for (const t of texts(200, 'exit')) client.createEmbedding(t, opts).catch(() => {})
}

function generateInFlight(n) {
  const loader = require(root).getModelLoader()
  for (let i = 0; i < n; i++) {
    loader.generate('demo', `Tell me a long story about the number ${i}.`, { maxTokens: 400 }).catch(() => {})
  }
}

switch (scenario) {
  // process.exit while the embedding model loads and 200 requests wait.
  case 'exit-embed':
    embedInFlight()
    setTimeout(() => process.exit(0), delay)
    break
  // Requests time out, nothing else is pending: the process ends by itself.
  case 'natural-end':
    embedInFlight({ timeoutMs: delay })
    break
  // An uncaught exception while the model loads: Node exits with code 1.
  case 'uncaught':
    embedInFlight()
    setTimeout(() => {
      throw new Error('stress: uncaught on purpose')
    }, delay)
    break
  // A worker embeds and calls process.exit itself; the main thread (which also loaded
  // the package) then ends naturally.
  case 'worker-exit':
  case 'worker-only':
    if (isMainThread) {
      if (scenario === 'worker-exit') require(root)
      new Worker(__filename, { workerData: { scenario, delay } })
    } else {
      embedInFlight()
      setTimeout(() => process.exit(0), delay)
    }
    break
  // process.exit during 4 concurrent generations (the model loads first).
  case 'exit-generate':
    generateInFlight(4)
    setTimeout(() => process.exit(0), delay)
    break
  // process.exit while llama.cpp loads the model.
  case 'exit-llm-load':
    require(root)
      .getModelLoader()
      .loadModel('demo')
      .catch(() => {})
    setTimeout(() => process.exit(0), delay)
    break
  // SIGTERM during generations and embeddings: Node's default, killed by the signal.
  case 'sigterm':
    embedInFlight()
    generateInFlight(2)
    setTimeout(() => process.kill(process.pid, 'SIGTERM'), delay)
    break
  default:
    console.error(`unknown scenario ${scenario}`)
    process.exit(2)
}
