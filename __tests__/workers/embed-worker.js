'use strict'
// A worker as the app writes them: it asks for the shared client and embeds.
const { parentPort, workerData } = require('node:worker_threads')
const { getSharedEmbeddingClient } = require(workerData.root)

// `options` picks the backend (a remote server in the parameterised suites).
const client = getSharedEmbeddingClient(workerData.options)

async function main() {
  if (workerData.mode === 'hang') {
    // Start a large request, tell the parent, and get terminated while it is pending.
    const texts = Array.from(
      { length: workerData.count },
      (_, i) => `worker ${workerData.id} pending ${i} ${Math.random()}`,
    )
    client.createEmbeddings(texts).then(() => parentPort.postMessage({ type: 'done' }))
    parentPort.postMessage({ type: 'started' })
    return
  }
  await new Promise((r) => setTimeout(r, 0))
  const vectors = []
  for (const text of workerData.texts) vectors.push(await client.createEmbedding(text))
  parentPort.postMessage({ type: 'result', id: workerData.id, vectors, stats: client.getStats() })
}

main().catch((e) => parentPort.postMessage({ type: 'error', code: e.code, message: e.message }))
