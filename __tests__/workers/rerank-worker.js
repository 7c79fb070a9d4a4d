'use strict'
// A worker as the app writes them: it asks for the shared reranker and ranks.
const { parentPort, workerData } = require('node:worker_threads')
const { getSharedReranker } = require(workerData.root)

const reranker = getSharedReranker(workerData.options)

async function main() {
  await new Promise((r) => setTimeout(r, 0))
  const ranking = await reranker.rerank(workerData.query, workerData.documents)
  parentPort.postMessage({ type: 'result', id: workerData.id, ranking, stats: reranker.getStats() })
}

main().catch((e) => parentPort.postMessage({ type: 'error', code: e.code, message: e.message }))
