'use strict'
// The app's LLM worker: loads the chat model through the shared loader, reports load
// progress the way the app's UI expects it, then streams an answer.
const { parentPort, workerData } = require('node:worker_threads')
const { getModelLoader } = require('../..')

async function main() {
  const loader = getModelLoader()
  const { modelKey, question, context } = workerData
  const started = performance.now()
  await loader.loadModel(modelKey, (progress) => {
    parentPort.postMessage({ type: 'load_progress', payload: { progress, modelKey } })
  })
  loader.markModelUsed(modelKey)
  const loadMs = performance.now() - started
  let firstTokenMs = null
  const result = await loader.generate(
    modelKey,
    [
      { role: 'system', content: `Answer in one short sentence using these notes:\n${context}` },
      { role: 'user', content: question },
    ],
    {
      temperature: 0,
      maxTokens: 64,
      onToken: (text) => {
        if (firstTokenMs === null) firstTokenMs = performance.now() - started
        parentPort.postMessage({ type: 'token', payload: { text } })
      },
    },
  )
  parentPort.postMessage({
    type: 'answer',
    payload: { text: result.text, timings: result.timings, loadMs, firstTokenMs },
  })
}

main().catch((e) => parentPort.postMessage({ type: 'error', code: e.code, message: e.message }))
