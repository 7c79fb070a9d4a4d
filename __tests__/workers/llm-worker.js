'use strict'
// A worker as the app's LLM worker: it loads through the shared loader, or streams a
// generation and then exits mid-stream.
const { parentPort, workerData } = require('node:worker_threads')
const { getModelLoader } = require(workerData.root)

const loader = getModelLoader()

async function main() {
  if (workerData.mode === 'load') {
    const progress = []
    const info = await loader.loadModel(workerData.key, (p) => progress.push(p))
    parentPort.postMessage({ type: 'loaded', info, progress })
    return
  }
  if (workerData.mode === 'stream-and-exit') {
    let first = true
    loader
      .generate('demo', 'Tell me a long story about a dragon.', {
        maxTokens: 200,
        temperature: 0,
        onToken: () => {
          if (first) {
            first = false
            parentPort.postMessage({ type: 'streaming' })
            // Leave while the generation is still producing tokens for us.
            setImmediate(() => process.exit(0))
          }
        },
      })
      .catch(() => {})
  }
}

main().catch((e) => parentPort.postMessage({ type: 'error', code: e.code, message: e.message }))
