'use strict'
// The long-running checks of `npm run stress` ("what held"), each in its own process:
//   node --expose-gc scripts/stress/held.js <check> <count>
// Prints one JSON line.
const path = require('node:path')
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads')

const root = path.join(__dirname, '..', '..')
const orion = require(root)
const [check, countArg] = isMainThread ? process.argv.slice(2) : [workerData.check, workerData.count]
const count = Number(countArg)
const rss = () => {
  global.gc?.()
  return process.memoryUsage().rss
}

async function embeddings() {
  // `count` requests over 2 000 distinct texts, in batches of 100: most are cache hits
  // after the first pass, which is what a long-running app sees; growth is measured
  // after a first pass over every text
  const client = orion.getSharedEmbeddingClient()
  const pool = Array.from({ length: 2000 }, (_, i) => `held text number ${i}`)
  for (let i = 0; i < pool.length; i += 100) await client.createEmbeddings(pool.slice(i, i + 100))
  // Then 30 000 requests of warm-up: V8's young generation and the allocator grow to
  // their working size (about 35 MB here) and stay there.
  let done = -30_000
  while (done < 0) {
    await client.createEmbeddings(Array.from({ length: 100 }, (_, i) => pool[(done + 30_000 + i * 7) % pool.length]))
    done += 100
  }
  const start = rss()
  while (done < count) {
    const batch = Array.from({ length: 100 }, (_, i) => pool[(done + i * 7) % pool.length])
    await client.createEmbeddings(batch)
    done += batch.length
  }
  return { requests: done, rssStart: start, rssEnd: rss() }
}

async function generations() {
  // After 50 warm-up generations: the allocator settles in the first few dozen
  // (contexts of several sizes), then RSS stays flat.
  const loader = orion.getModelLoader()
  for (let i = 0; i < 50; i++) await loader.generate('demo', `Count to ${i % 10}.`, { maxTokens: 8 })
  const start = rss()
  for (let i = 0; i < count; i++) await loader.generate('demo', `Count to ${i % 10}.`, { maxTokens: 8 })
  return { generations: count, rssStart: start, rssEnd: rss() }
}

async function workers() {
  // 8 workers, `count` requests in all with short timeouts: every promise settles,
  // answered or with a coded error.
  const per = Math.ceil(count / 8)
  const results = await Promise.all(
    Array.from(
      { length: 8 },
      (_, id) =>
        new Promise((resolve, reject) => {
          const w = new Worker(__filename, { workerData: { check: 'worker', count: per, id } })
          w.once('message', resolve)
          w.once('error', reject)
        }),
    ),
  )
  const sum = (k) => results.reduce((a, r) => a + r[k], 0)
  return { requests: sum('requests'), answered: sum('answered'), coded: sum('coded'), uncoded: sum('uncoded') }
}

async function worker() {
  const client = orion.getSharedEmbeddingClient()
  const out = { requests: count, answered: 0, coded: 0, uncoded: 0 }
  await Promise.all(
    Array.from({ length: count }, (_, i) =>
      client.createEmbedding(`worker ${workerData.id} text ${i % 300}`, { timeoutMs: 3000 }).then(
        () => out.answered++,
        (e) => (typeof e.code === 'string' ? out.coded++ : out.uncoded++),
      ),
    ),
  )
  parentPort.postMessage(out)
}

async function unloadMidStream() {
  // Generations survive their model being unloaded under them.
  const loader = orion.getModelLoader()
  let survived = 0
  for (let i = 0; i < count; i++) {
    await loader.loadModel('demo')
    const stream = loader.generateStream('demo', 'Write three sentences about rivers.', { maxTokens: 24 })
    let text = ''
    let unloaded = false
    for await (const piece of stream) {
      text += piece
      if (!unloaded) {
        unloaded = true
        await loader.unloadModel('demo')
      }
    }
    if (text.length > 0 && stream.result) survived++
  }
  return { runs: count, survived }
}

const checks = { embeddings, generations, workers, worker, 'unload-mid-stream': unloadMidStream }
checks[check]().then(
  (r) => {
    if (isMainThread) console.log(JSON.stringify(r))
  },
  (e) => {
    console.error(e)
    process.exit(1)
  },
)
