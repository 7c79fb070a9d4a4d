'use strict'
// User callbacks that throw: the process lives, the call goes on, and each callback's
// first exception is reported once as a warning.
const orion = require(process.argv[2])
const warnings = []
process.on('warning', (w) => warnings.push({ code: w.code, message: w.message }))

async function main() {
  const loader = orion.getModelLoader()
  await loader.unloadModel('demo')
  const info = await loader.loadModel('demo', () => {
    throw new Error('onProgress bug')
  })
  const res = await loader.generate('demo', 'What is the capital of France?', {
    temperature: 0,
    maxTokens: 24,
    onToken: () => {
      throw new Error('onToken bug')
    },
  })
  // An async callback's rejection is contained the same way (not an unhandled rejection).
  await loader.generate('demo', 'Say hi.', {
    maxTokens: 4,
    onToken: async () => {
      throw new Error('async onToken bug')
    },
  })
  const monitor = orion.getMemoryMonitor()
  const off = monitor.onSnapshot(() => {
    throw new Error('onSnapshot bug')
  })
  await monitor.takeSnapshot()
  await monitor.takeSnapshot()
  await new Promise((r) => setTimeout(r, 100))
  off()
  await new Promise((r) => setImmediate(r))
  console.log(JSON.stringify({ loaded: info.key, text: res.text, warnings }))
}
main().catch((e) => {
  console.error(e)
  process.exit(1)
})
