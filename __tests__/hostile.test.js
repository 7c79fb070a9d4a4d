'use strict'
// Hostile use (issue 10): give-ups free the queue, dropped streams stop, signals keep no
// listeners, bad arguments get codes, callbacks that throw are contained, and the short
// subset of `npm run stress`: exits with work in flight never crash.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { Worker } = require('node:worker_threads')
const { getEventListeners } = require('node:events')
const { spawnSync } = require('node:child_process')
const { root, expectCode, expectThrowCode, embeddingModelDir, llmModelDir } = require('./helpers')
const orion = require(root)

function child(args, opts = {}) {
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 120_000, ...opts })
  if (r.status !== 0) throw new Error(`exit ${r.status} ${r.signal}\n${r.stderr}`)
  return JSON.parse(r.stdout.trim().split('\n').at(-1))
}

test("a terminated worker's queued texts are dropped, not computed", async () => {
  const client = orion.getSharedEmbeddingClient()
  await client.createEmbedding('warm the model up')
  const w = new Worker(path.join(__dirname, 'workers', 'embed-worker.js'), {
    workerData: { root, mode: 'hang', id: 9, count: 3000 },
  })
  await new Promise((resolve) => w.on('message', (m) => m.type === 'started' && resolve()))
  await new Promise((r) => setTimeout(r, 100))
  await w.terminate()
  const t = Date.now()
  const v = await client.createEmbedding(`after the terminated worker ${Math.random()}`)
  const ms = Date.now() - t
  expect(v).toHaveLength(384)
  // Computing the dead worker's 3000 texts first would take about a minute here.
  expect(ms).toBeLessThan(5000)
  expect(client.getStats().queueDepth).toBe(0)
})

test('an abandoned generateStream stops and releases its model once collected', () => {
  const out = child(['--expose-gc', path.join(__dirname, 'hostile', 'stream-gc.js'), root])
  expect(out.first).toBe(true)
  expect(out.inUse).toBe(0)
  expect(out.releasedMs).toBeLessThan(5000)
})

test('next() after return() is { done: true }', async () => {
  const stream = orion.getModelLoader().generateStream('demo', 'Tell me about the sea.', { maxTokens: 200 })
  expect((await stream.next()).done).toBe(false)
  expect(await stream.return()).toEqual({ done: true, value: undefined })
  expect(await stream.next()).toEqual({ done: true, value: undefined })
})

test('one AbortSignal shared by many calls keeps no listener once they settle', async () => {
  const warnings = []
  const onWarning = (w) => warnings.push(w.name)
  process.on('warning', onWarning)
  const controller = new AbortController()
  const client = orion.getSharedEmbeddingClient()
  await Promise.all(
    Array.from({ length: 12 }, (_, i) => client.createEmbedding(`shared signal ${i}`, { signal: controller.signal })),
  )
  await orion.getModelLoader().generate('demo', 'hi', { maxTokens: 4, signal: controller.signal })
  expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0)
  // And aborting still works through the relay.
  const pending = client.createEmbeddings(
    Array.from({ length: 200 }, (_, i) => `to abort ${i} ${Math.random()}`),
    { signal: controller.signal },
  )
  controller.abort()
  await expectCode(pending, 'ABORTED')
  await new Promise((r) => setImmediate(r))
  process.off('warning', onWarning)
  expect(warnings).not.toContain('MaxListenersExceededWarning')
})

test('a batch larger than the queue is INVALID_INPUT naming the limit', async () => {
  // A model directory of its own, so that this client's maxQueue applies.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-smallq-'))
  for (const f of fs.readdirSync(embeddingModelDir)) fs.copyFileSync(path.join(embeddingModelDir, f), path.join(dir, f))
  const client = orion.getSharedEmbeddingClient({ modelPath: dir, maxQueue: 100 })
  const err = await expectCode(
    client.createEmbeddings(Array.from({ length: 150 }, (_, i) => `big batch ${i}`)),
    'INVALID_INPUT',
  )
  expect(err.message).toMatch(/maxQueue 100/)
})

test('a 50 MB prompt is PROMPT_TOO_LONG at once', async () => {
  const loader = orion.getModelLoader()
  await loader.loadModel('demo')
  const t = Date.now()
  const err = await expectCode(loader.generate('demo', 'x'.repeat(50_000_000)), 'PROMPT_TOO_LONG')
  expect(Date.now() - t).toBeLessThan(2000)
  expect(err.message).toMatch(/at least/)
})

test('bad arguments get codes, never a crash or an uncoded throw', async () => {
  const loader = orion.getModelLoader()
  expectThrowCode(() => loader.markModelUsed(42), 'INVALID_INPUT')
  expectThrowCode(() => orion.getSharedEmbeddingClient({ model: 'a\0b' }), 'INVALID_OPTION')
  expectThrowCode(() => orion.getMemoryMonitor().start(1e300), 'INVALID_OPTION')
  expectThrowCode(() => orion.getMemoryMonitor().start(-1), 'INVALID_OPTION')
  const getter = {
    get timeoutMs() {
      throw new Error('getter bug')
    },
  }
  const err = await expectCode(orion.getSharedEmbeddingClient().createEmbedding('x', getter), 'INVALID_OPTION')
  expect(err.cause.message).toBe('getter bug')
  const trap = new Proxy(
    {},
    {
      get() {
        throw new Error('trap bug')
      },
    },
  )
  await expectCode(loader.generate('demo', 'hi', trap), 'INVALID_OPTION')
  await expectCode(loader.loadModel(42), 'INVALID_INPUT')
  await expectCode(loader.generate('demo', 42), 'INVALID_INPUT')
})

test('a 100-byte GGUF with 0 layers is MODEL_LOAD_FAILED, not an abort', async () => {
  const str = (t) => {
    const b = Buffer.alloc(8 + t.length)
    b.writeBigUInt64LE(BigInt(t.length))
    b.write(t, 8)
    return b
  }
  const u32 = (n) => {
    const b = Buffer.alloc(4)
    b.writeUInt32LE(n)
    return b
  }
  const u64 = (n) => {
    const b = Buffer.alloc(8)
    b.writeBigUInt64LE(BigInt(n))
    return b
  }
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'orion-gguf-')), 'hostile.gguf')
  fs.writeFileSync(
    file,
    Buffer.concat([
      Buffer.from('GGUF'),
      u32(3),
      u64(0), // tensors
      u64(2), // key-value pairs
      str('general.architecture'),
      u32(8), // string
      str('llama'),
      str('llama.block_count'),
      u32(4), // uint32
      u32(0),
    ]),
  )
  const err = await expectCode(orion.getModelLoader().loadModel(file), 'MODEL_LOAD_FAILED')
  expect(err.message).toMatch(/block_count/)
})

test('concurrent loads of different keys under maxConcurrentModels 1 both succeed, in turn', async () => {
  const loader = orion.getModelLoader()
  const file = path.join(llmModelDir, 'SmolLM2-135M-Instruct.Q4_1.gguf')
  loader.registerModel('demo-twin', { files: { q4: { path: file } } })
  const limits = orion.getModelLoader({ maxConcurrentModels: 1 })
  try {
    for (let i = 0; i < 10; i++) {
      const [a, b] = await Promise.all([limits.loadModel('demo'), limits.loadModel('demo-twin')])
      expect([a.key, b.key]).toEqual(['demo', 'demo-twin'])
      expect(limits.getStats().loadedModels).toBe(1)
    }
  } finally {
    orion.getModelLoader({ maxConcurrentModels: 2 })
  }
})

test('a registry file whose sha256 does not match is MODEL_LOAD_FAILED naming both digests', async () => {
  const loader = orion.getModelLoader()
  const file = path.join(llmModelDir, 'SmolLM2-135M-Instruct.Q4_1.gguf')
  const wrong = 'ab'.repeat(32)
  loader.registerModel('demo-bad-digest', { files: { q4: { path: file, sha256: wrong } } })
  const err = await expectCode(loader.loadModel('demo-bad-digest'), 'MODEL_LOAD_FAILED')
  expect(err.message).toContain(wrong)
  expect(err.message).toContain('b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53')
  expect(err.message).toContain(file)
})

test('throwing callbacks are contained and reported once each', () => {
  const out = child([path.join(__dirname, 'hostile', 'callbacks.js'), root])
  expect(out.loaded).toBe('demo')
  expect(out.text).toMatch(/Paris/)
  const codes = out.warnings.map((w) => w.code)
  expect(codes.filter((c) => c === 'ORION_CALLBACK_ERROR')).toHaveLength(4)
  expect(out.warnings.some((w) => w.message.includes('async onToken bug'))).toBe(true)
  for (const what of ['onProgress', 'onToken', 'onSnapshot']) {
    expect(out.warnings.some((w) => w.message.includes(`the ${what} callback threw`))).toBe(true)
  }
})

test('after shutdown, requests in flight and new calls reject SHUT_DOWN', () => {
  const out = child([path.join(__dirname, 'hostile', 'shutdown.js'), root])
  expect(out.stopped).toBe(true)
  for (const code of out.inFlight) expect(['ok', 'SHUT_DOWN']).toContain(code)
  expect(out.inFlight).toContain('SHUT_DOWN')
  expect(out.after).toEqual(['SHUT_DOWN', 'SHUT_DOWN', 'SHUT_DOWN'])
})

// The short subset of `npm run stress`: every exit scenario, 20 runs each, 0 crashes and
// no native noise on stderr (the full run, 50 each, is in the README).
test('processes that exit with work in flight never crash', () => {
  const r = spawnSync(
    process.execPath,
    [
      path.join(root, 'scripts', 'stress.js'),
      '--runs',
      '20',
      '--only',
      'exit-embed,natural-end,uncaught,worker-exit,worker-only,exit-generate,exit-llm-load,sigterm',
      '--json',
    ],
    {
      encoding: 'utf8',
      timeout: 400_000,
    },
  )
  const report = JSON.parse(r.stdout)
  for (const row of report.exits) {
    expect({ scenario: row.scenario, crashes: row.crashes, noisy: row.noisy, failures: row.failures }).toEqual({
      scenario: row.scenario,
      crashes: 0,
      noisy: 0,
      failures: [],
    })
    expect(row.runs).toBe(20)
  }
  expect(report.exits).toHaveLength(8)
}, 420_000)

// The hostile section of `npm run stress` with fewer runs: every finding of issue 22
// replayed in a fresh process, each within its time and memory bounds, with its codes,
// and no secret shown (the full run is in the README).
test('every hostile scenario holds (npm run stress --only hostile --quick)', () => {
  const r = spawnSync(
    process.execPath,
    [path.join(root, 'scripts', 'stress.js'), '--only', 'hostile', '--quick', '--json'],
    {
      encoding: 'utf8',
      timeout: 400_000,
    },
  )
  const report = JSON.parse(r.stdout)
  expect(report.hostile.length).toBeGreaterThanOrEqual(20)
  for (const row of report.hostile) {
    expect({ scenario: row.scenario, ok: row.ok, failures: row.failures }).toEqual({
      scenario: row.scenario,
      ok: true,
      failures: [],
    })
    expect(row.runs).toBeGreaterThan(0)
  }
}, 420_000)
