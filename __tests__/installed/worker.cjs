'use strict'
// Creates its client at top level, as the app's workers do.
const { parentPort, workerData } = require('node:worker_threads')
const { getSharedEmbeddingClient } = require('orion-native')

const client = getSharedEmbeddingClient()
Promise.all([`worker ${workerData.id} says hello`, 'Paris is the capital of France.'].map((t) => client.createEmbedding(t)))
  .then((vs) => parentPort.postMessage({ id: workerData.id, dims: vs.map((v) => v.length) }))
  .catch((e) => parentPort.postMessage({ error: e.message, code: e.code }))
