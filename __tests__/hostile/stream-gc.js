'use strict'
// An abandoned generateStream (no break, no return()) must stop generating once it is
// garbage-collected, and release the model. Run with --expose-gc.
const { getModelLoader } = require(process.argv[2])

async function main() {
  const loader = getModelLoader()
  await loader.loadModel('demo')
  let stream = loader.generateStream('demo', 'Write a very long story about the sea.', { maxTokens: 400 })
  const first = await stream.next()
  stream = null
  const t = Date.now()
  let inUse = 1
  while (Date.now() - t < 10_000) {
    global.gc()
    await new Promise((r) => setTimeout(r, 50))
    inUse = loader.getStats().models.find((m) => m.key === 'demo').inUse
    if (inUse === 0) break
  }
  console.log(JSON.stringify({ first: first.done === false, inUse, releasedMs: Date.now() - t }))
}
main().catch((e) => {
  console.error(e)
  process.exit(1)
})
