'use strict'
// A worker as the app's LLM worker: it loads through the shared loader, streams a
// generation and then exits mid-stream, or asks for a tool call and streams it.
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
  if (workerData.mode === 'tool-call') {
    const stream = loader.generateStream(workerData.key, workerData.messages, workerData.options)
    const events = []
    let text = ''
    for await (const step of stream) {
      if (typeof step === 'string') text += step
      else events.push(step.toolCall)
    }
    parentPort.postMessage({ type: 'called', text, events, result: stream.result })
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
