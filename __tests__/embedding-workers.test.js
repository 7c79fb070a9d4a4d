'use strict'
const path = require('node:path')
const { Worker } = require('node:worker_threads')
const { spawnSync } = require('node:child_process')
const { getSharedEmbeddingClient } = require('..')
const { inWorker, root } = require('./helpers')

const WORKER = path.join(__dirname, 'workers', 'embed-worker.js')

const run = (workerData) => inWorker('embed-worker.js', workerData)

describe('eight worker_threads share one model', () => {
  test('concurrent workers get identical vectors and the model loads once', async () => {
    const shared = ['shared sentence one', 'the second shared sentence', 'a third one, shared by all']
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, id) => run({ id, texts: [...shared, `only worker ${id} says this`] })),
    )
    expect(results).toHaveLength(8)
    for (const r of results) {
      expect(r.vectors).toHaveLength(4)
      r.vectors.forEach((v) => expect(v).toHaveLength(384))
      for (let i = 0; i < shared.length; i++) expect(r.vectors[i]).toEqual(results[0].vectors[i])
      expect(r.stats.modelLoads).toBe(1)
    }
    // Vectors computed in workers are the same as on the main thread.
    const main = getSharedEmbeddingClient()
    expect(await main.createEmbedding(shared[0])).toEqual(results[0].vectors[0])
    const s = main.getStats()
    expect(s.modelLoads).toBe(1)
    // Statistics are process-wide: the main thread sees the workers' requests.
    expect(s.requests).toBeGreaterThanOrEqual(8 * 4)
  })

  test('a worker terminated mid-request does not crash or wedge the service', async () => {
    const w = new Worker(WORKER, { workerData: { root, mode: 'hang', id: 99, count: 200 } })
    await new Promise((resolve, reject) => {
      w.once('message', resolve)
      w.once('error', reject)
    })
    const code = await w.terminate()
    expect(code).toBe(1)
    const client = getSharedEmbeddingClient()
    await expect(client.createEmbedding('still alive after a worker died')).resolves.toHaveLength(384)
    const deadline = Date.now() + 30000
    while (client.getStats().queueDepth > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    expect(client.getStats().queueDepth).toBe(0)
  })

  test('a process exiting with requests in flight exits cleanly', () => {
    const script = `
      const { getSharedEmbeddingClient } = require(${JSON.stringify(root)})
      const c = getSharedEmbeddingClient()
      c.createEmbedding('warm').then(() => {
        const texts = Array.from({ length: 500 }, (_, i) => 'in flight ' + i)
        c.createEmbeddings(texts)
        setTimeout(() => { console.log('exiting'); process.exit(0) }, 30)
      })
    `
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60000 })
    expect(r.signal).toBeNull()
    expect(r.status).toBe(0)
    expect(r.stdout.trim()).toBe('exiting')
  })

  test('a process whose workers are mid-request when it exits exits cleanly', () => {
    const script = `
      const { Worker } = require('node:worker_threads')
      for (let id = 0; id < 4; id++) {
        new Worker(${JSON.stringify(WORKER)}, { workerData: { root: ${JSON.stringify(root)}, mode: 'hang', id, count: 300 } })
      }
      setTimeout(() => { console.log('exiting'); process.exit(0) }, 300)
    `
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60000 })
    expect(r.signal).toBeNull()
    expect(r.status).toBe(0)
    expect(r.stdout.trim()).toBe('exiting')
  })

  test('ESM import works', () => {
    const r = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        "import { getSharedEmbeddingClient } from 'orion-native'; console.log(typeof getSharedEmbeddingClient)",
      ],
      { cwd: root, encoding: 'utf8' },
    )
    expect(r.stdout.trim()).toBe('function')
  })
})
