'use strict'
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { getSharedEmbeddingClient } = require('..')
const { cosine, expectCode, expectThrowCode, embeddingModelDir, root } = require('./helpers')

// A second copy of the model (hard links, so no extra disk) gives a separate service
// whose queue and cache settings these tests can choose.
function modelCopy() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-model-copy-'))
  for (const f of fs.readdirSync(embeddingModelDir)) {
    try {
      fs.linkSync(path.join(embeddingModelDir, f), path.join(dir, f))
    } catch {
      fs.copyFileSync(path.join(embeddingModelDir, f), path.join(dir, f))
    }
  }
  return dir
}

const manyTexts = (n, tag) => Array.from({ length: n }, (_, i) => `${tag} text number ${i} ${Math.random()}`)

describe('bad input to createEmbedding', () => {
  const client = getSharedEmbeddingClient()

  test.each([
    ['a number', 42],
    ['null', null],
    ['undefined', undefined],
    ['an object', { text: 'hi' }],
    ['an array', ['hi']],
    ['a Buffer', Buffer.from('hi')],
  ])('rejects %s with INVALID_INPUT', async (_name, value) => {
    const err = await expectCode(client.createEmbedding(value), 'INVALID_INPUT')
    expect(err.message).toMatch(/must be a string/)
  })

  test('the empty string is embedded, like sentence-transformers does', async () => {
    const v = await client.createEmbedding('')
    expect(v.length).toBe(384)
  })

  test('lone surrogates are replaced by U+FFFD, as TextEncoder does', async () => {
    const lone = await client.createEmbedding('abc\uD800def')
    const replaced = await client.createEmbedding('abc\uFFFDdef')
    expect(lone).toEqual(replaced)
  })

  test('NUL characters are accepted', async () => {
    const v = await client.createEmbedding('before\u0000after')
    expect(v.length).toBe(384)
    expect(v.every(Number.isFinite)).toBe(true)
  })

  test('a 1 MB string is embedded from its first 256 tokens', async () => {
    const sentence = 'The quick brown fox jumps over the lazy dog. '
    const huge = sentence.repeat(Math.ceil((1 << 20) / sentence.length))
    expect(huge.length).toBeGreaterThanOrEqual(1 << 20)
    const v = await client.createEmbedding(huge)
    const head = await client.createEmbedding(sentence.repeat(40)) // already > 256 tokens
    expect(cosine(v, head)).toBeGreaterThan(0.9999)
    // The cache stores the clipped text, not a megabyte.
    expect(client.getStats().cacheBytes).toBeLessThan(1 << 20)
  })
})

describe('bad input to createEmbeddings', () => {
  const client = getSharedEmbeddingClient()

  test('an empty batch resolves to an empty array without touching the model', async () => {
    const before = client.getStats().requests
    await expect(client.createEmbeddings([])).resolves.toEqual([])
    const flat = await client.createEmbeddingsFloat32([])
    expect(flat).toBeInstanceOf(Float32Array)
    expect(flat.length).toBe(0)
    expect(client.getStats().requests).toBe(before)
  })

  test('a batch containing a non-string names the offending index', async () => {
    const err = await expectCode(client.createEmbeddings(['ok', 'fine', 7]), 'INVALID_INPUT')
    expect(err.message).toMatch(/texts\[2\]/)
  })

  test.each([
    ['a string', 'abc'],
    ['a number', 1],
    ['null', null],
    ['an object', {}],
  ])('a batch that is %s is rejected', async (_n, value) => {
    await expectCode(client.createEmbeddings(value), 'INVALID_INPUT')
    await expectCode(client.createEmbeddingsFloat32(value), 'INVALID_INPUT')
  })
})

describe('bad options', () => {
  test.each([
    [{ timeoutMs: -1 }, /timeoutMs/],
    [{ timeoutMs: 0 }, /timeoutMs/],
    [{ timeoutMs: 1.5 }, /timeoutMs/],
    [{ timeoutMs: '100' }, /timeoutMs must be a number/],
    [{ timeoutMs: NaN }, /finite/],
    [{ cacheBytes: -5 }, /cacheBytes/],
    [{ maxBatchSize: 0 }, /maxBatchSize/],
    [{ maxQueue: 0 }, /maxQueue/],
    [{ threads: 0 }, /threads/],
    [{ model: 42 }, /model must be a string/],
    [{ model: '../etc' }, /not a model name/],
    [{ timeout: 5 }, /unknown option `timeout`/],
  ])('getSharedEmbeddingClient(%j) throws INVALID_OPTION', (options, message) => {
    const err = expectThrowCode(() => getSharedEmbeddingClient(options), 'INVALID_OPTION')
    expect(err.message).toMatch(message)
  })

  test.each([42, 'fast', [1]])('options that are not an object (%j) are rejected', (options) => {
    expectThrowCode(() => getSharedEmbeddingClient(options), 'INVALID_OPTION')
  })

  test('per-call options are checked too', async () => {
    const client = getSharedEmbeddingClient()
    await expectCode(client.createEmbedding('x', { timeoutMs: -3 }), 'INVALID_OPTION')
    await expectCode(client.createEmbedding('x', { signal: {} }), 'INVALID_OPTION')
    await expectCode(client.createEmbedding('x', { signal: 'stop' }), 'INVALID_OPTION')
    await expectCode(client.createEmbedding('x', { retries: 3 }), 'INVALID_OPTION')
    await expectCode(client.createEmbeddings(['x'], 5), 'INVALID_OPTION')
  })

  test('null and undefined options mean defaults', async () => {
    const client = getSharedEmbeddingClient(null)
    await expect(client.createEmbedding('defaults', null)).resolves.toHaveLength(384)
    await expect(client.createEmbedding('defaults', undefined)).resolves.toHaveLength(384)
  })
})

describe('timeouts, aborts and back-pressure', () => {
  const client = getSharedEmbeddingClient()

  test('a request that cannot finish in time rejects with EMBEDDING_TIMEOUT', async () => {
    const err = await expectCode(
      client.createEmbeddings(manyTexts(300, 'timeout'), { timeoutMs: 1 }),
      'EMBEDDING_TIMEOUT',
    )
    expect(err.message).toMatch(/1 ms/)
    // The service is still healthy afterwards.
    await expect(client.createEmbedding('after timeout')).resolves.toHaveLength(384)
  })

  test('an already aborted signal rejects with ABORTED', async () => {
    const ac = new AbortController()
    ac.abort()
    await expectCode(client.createEmbedding('never', { signal: ac.signal }), 'ABORTED')
  })

  test('aborting while waiting rejects with ABORTED and frees the queue', async () => {
    const ac = new AbortController()
    const p = client.createEmbeddings(manyTexts(400, 'abort'), { signal: ac.signal })
    setTimeout(() => ac.abort(), 5)
    await expectCode(p, 'ABORTED')
    // Abandoned texts are dropped rather than computed: the queue drains quickly.
    const deadline = Date.now() + 20000
    while (client.getStats().queueDepth > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    expect(client.getStats().queueDepth).toBe(0)
  })

  test('a full queue rejects with OVERLOADED instead of growing', async () => {
    // Small batches keep most of the first request waiting in the queue.
    const small = getSharedEmbeddingClient({ modelPath: modelCopy(), maxQueue: 50, maxBatchSize: 4 })
    const first = small.createEmbeddings(manyTexts(45, 'fill'))
    const err = await expectCode(small.createEmbeddings(manyTexts(45, 'overflow')), 'OVERLOADED')
    expect(err.message).toMatch(/limit 50/)
    await expect(first).resolves.toHaveLength(45)
    await expect(small.createEmbeddings(manyTexts(40, 'later'))).resolves.toHaveLength(40)
  })

  test('the timeout default can come from ORION_EMBEDDING_TIMEOUT_MS', async () => {
    const script = `
      const { getSharedEmbeddingClient } = require(${JSON.stringify(root)})
      const c = getSharedEmbeddingClient()
      const texts = Array.from({ length: 300 }, (_, i) => 'env timeout ' + i)
      c.createEmbeddings(texts).then(() => console.log('resolved'), (e) => console.log(e.code))
    `
    const r = spawnSync(process.execPath, ['-e', script], {
      env: { ...process.env, ORION_EMBEDDING_TIMEOUT_MS: '1' },
      encoding: 'utf8',
      timeout: 60000,
    })
    expect(r.stdout.trim()).toBe('EMBEDDING_TIMEOUT')
  })

  test('a malformed environment variable is an INVALID_OPTION naming it', () => {
    const script = `
      try { require(${JSON.stringify(root)}).getSharedEmbeddingClient(); console.log('no error') }
      catch (e) { console.log(e.code, e.message) }
    `
    const r = spawnSync(process.execPath, ['-e', script], {
      env: { ...process.env, ORION_EMBEDDING_CACHE_BYTES: 'lots' },
      encoding: 'utf8',
      timeout: 60000,
    })
    expect(r.stdout).toMatch(/^INVALID_OPTION .*ORION_EMBEDDING_CACHE_BYTES/)
  })
})

describe('missing models and runtime', () => {
  test('missing model files reject with MODEL_NOT_FOUND naming the directory and the fix', async () => {
    const dir = path.join(os.tmpdir(), `orion-no-model-${process.pid}`)
    const client = getSharedEmbeddingClient({ modelPath: dir })
    const err = await expectCode(client.createEmbedding('x'), 'MODEL_NOT_FOUND')
    expect(err.message).toContain(dir)
    expect(err.message).toMatch(/orion-native models/)
    expect(client.getStats().modelLoads).toBe(0)
  })

  test('ORION_MODELS_DIR is where models are looked up', () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-empty-models-'))
    const script = `
      const c = require(${JSON.stringify(root)}).getSharedEmbeddingClient()
      c.createEmbedding('x').then(() => console.log('found'), (e) => console.log(e.code, e.message))
    `
    const r = spawnSync(process.execPath, ['-e', script], {
      env: { ...process.env, ORION_MODELS_DIR: empty },
      encoding: 'utf8',
      timeout: 60000,
    })
    expect(r.stdout).toMatch(/^MODEL_NOT_FOUND/)
    expect(r.stdout).toContain(path.join(empty, 'all-MiniLM-L6-v2'))
  })

  test('a corrupt model file rejects with MODEL_LOAD_FAILED', async () => {
    const dir = modelCopy()
    fs.rmSync(path.join(dir, 'model.onnx'))
    fs.writeFileSync(path.join(dir, 'model.onnx'), crypto.getRandomValues(new Uint8Array(4096)))
    const client = getSharedEmbeddingClient({ modelPath: dir })
    await expectCode(client.createEmbedding('x'), 'MODEL_LOAD_FAILED')
  })

  test('an unloadable ONNX Runtime gives RUNTIME_NOT_FOUND, not a crash', () => {
    const script = `
      const c = require(${JSON.stringify(root)}).getSharedEmbeddingClient()
      c.createEmbedding('x').then(() => console.log('loaded'), (e) => console.log(e.code, e.message))
    `
    const r = spawnSync(process.execPath, ['-e', script], {
      env: { ...process.env, ORT_DYLIB_PATH: '/nonexistent/libonnxruntime.so.1' },
      encoding: 'utf8',
      timeout: 60000,
    })
    expect(r.status).toBe(0)
    expect(r.stdout).toMatch(/^RUNTIME_NOT_FOUND .*\/nonexistent\/libonnxruntime\.so\.1/)
  })

  // The path is the user's own: the message says that path failed and to fix or unset
  // the setting, not to reinstall the package.
  test.each([
    ['ORT_DYLIB_PATH', '', { ORT_DYLIB_PATH: '/nonexistent/libonnxruntime.so.1' }],
    [
      'configure({ ortLibraryPath })',
      "require(ROOT).configure({ ortLibraryPath: '/nonexistent/libonnxruntime.so.1' })",
      { ORT_DYLIB_PATH: '' },
    ],
  ])('RUNTIME_NOT_FOUND for a path set with %s names that setting', (setting, setup, env) => {
    const script = `
      ${setup.replace('ROOT', JSON.stringify(root))}
      const c = require(${JSON.stringify(root)}).getSharedEmbeddingClient()
      c.createEmbedding('x').then(() => console.log('loaded'), (e) => console.log(e.code, e.message))
    `
    const r = spawnSync(process.execPath, ['-e', script], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
      timeout: 60000,
    })
    expect(r.status).toBe(0)
    expect(r.stdout).toMatch(/^RUNTIME_NOT_FOUND /)
    expect(r.stdout).toContain(`the ONNX Runtime library that ${setting} names could not be loaded`)
    expect(r.stdout).toContain('/nonexistent/libonnxruntime.so.1 (missing)')
    expect(r.stdout).toContain(`Fix ${setting}`)
    expect(r.stdout).toContain('or unset it')
    expect(r.stdout).not.toMatch(/reinstall/i)
  })
})
