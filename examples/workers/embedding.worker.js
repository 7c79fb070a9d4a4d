'use strict'
// One of the app's embedding workers (memory, migration, genius hour). Each asks for
// the shared client; none loads a model of its own.
const { parentPort, workerData } = require('node:worker_threads')
const { getSharedEmbeddingClient } = require('../..')

const client = getSharedEmbeddingClient()

function cosine(a, b) {
  let dot = 0
  for (let i = 0; i < a.length; i++) dot += a[i] * b[i]
  return dot // vectors are L2-normalised
}

async function embedCorpus() {
  const started = performance.now()
  const vectors = []
  // One text at a time, like the app's workers do: batching happens across workers.
  for (const text of workerData.texts) vectors.push(await client.createEmbedding(text))
  parentPort.postMessage({
    type: 'embedded',
    role: workerData.role,
    count: vectors.length,
    ms: performance.now() - started,
    firstMs: null,
    vectors,
  })
}

async function search(index) {
  const hits = []
  for (const query of workerData.queries) {
    const q = await client.createEmbedding(query)
    const ranked = index
      .map((item) => ({ text: item.text, from: item.role, score: cosine(q, item.vector) }))
      .sort((a, b) => b.score - a.score)
      .slice(0, 2)
    hits.push({ query, top: ranked })
  }
  parentPort.postMessage({ type: 'search', role: workerData.role, hits })
}

parentPort.on('message', (m) => {
  if (m.type === 'search') search(m.index).catch(fail)
})

function fail(e) {
  parentPort.postMessage({ type: 'error', role: workerData.role, code: e.code, message: e.message })
}

embedCorpus().catch(fail)
