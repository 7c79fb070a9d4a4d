'use strict'
// A user's app, run from a directory where orion-native was installed from its tarballs:
// workers embedding through the shared model, an LLM answer, a memory snapshot.
// Prints one JSON line. Usage: node app.cjs [workers] [modelsDir]
const path = require('node:path')
const { Worker } = require('node:worker_threads')
const orion = require('orion-native')

async function main() {
  const workers = Number(process.argv[2] || 4)
  const modelsDir = process.argv[3]
  // From code, once, for every worker: the models directory.
  const settings = modelsDir ? orion.configure({ modelsDir }) : orion.configure()
  const results = await Promise.all(
    Array.from({ length: workers }, (_, id) =>
      new Promise((resolve, reject) => {
        const w = new Worker(path.join(__dirname, 'worker.cjs'), { workerData: { id } })
        w.once('message', (m) => (m.error ? reject(Object.assign(new Error(m.error), { code: m.code })) : resolve(m)))
        w.once('error', reject)
      }),
    ),
  )
  const stats = orion.getSharedEmbeddingClient().getStats()
  const loader = orion.getModelLoader()
  const progress = []
  const info = await loader.loadModel('demo', (p) => progress.push(p))
  const answer = await loader.generate('demo', 'What is the capital of France?', { temperature: 0, maxTokens: 48 })
  const snapshot = await orion.getMemoryMonitor().takeSnapshot()
  console.log(
    JSON.stringify({
      node: process.versions.node,
      settings,
      workers: results.map((r) => ({ id: r.id, dims: r.dims })),
      modelLoads: stats.modelLoads,
      requests: stats.requests,
      llm: { key: info.key, progress, text: answer.text },
      snapshot: { pressure: snapshot.pressure, rss: snapshot.process.rss, recommendations: snapshot.recommendations },
      levels: Object.keys(orion.QUANTIZATION_LEVELS),
    }),
  )
}

main().catch((e) => {
  console.error(`${e.code || ''} ${e.stack}`)
  process.exit(1)
})
