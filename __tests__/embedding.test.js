'use strict'
const { getSharedEmbeddingClient } = require('..')
const { cosine, expectThrowCode } = require('./helpers')
const reference = require('./fixtures/reference-embeddings.json')

describe('SharedEmbeddingClient: the app contract', () => {
  const client = getSharedEmbeddingClient()

  test('an embedding is defined and non-empty', async () => {
    const e = await client.createEmbedding('Je me souviens de notre conversation.')
    expect(e).toBeDefined()
    expect(Array.isArray(e)).toBe(true)
    expect(e.length).toBe(384)
    expect(e.every(Number.isFinite)).toBe(true)
  })

  test('a repeated text is served from the cache', async () => {
    const text = `cache probe ${Date.now()}`
    const first = await client.createEmbedding(text)
    const before = client.getStats()
    const second = await client.createEmbedding(text)
    const after = client.getStats()
    expect(second).toEqual(first)
    expect(after.cacheHits).toBe(before.cacheHits + 1)
    expect(after.cacheMisses).toBe(before.cacheMisses)
    expect(after.batches).toBe(before.batches)
    expect(after.cacheBytes).toBeGreaterThan(0)
  })

  test('clearCache empties the shared cache', async () => {
    await client.createEmbedding('something to cache')
    expect(client.getStats().cacheBytes).toBeGreaterThan(0)
    client.clearCache()
    const s = client.getStats()
    expect(s.cacheBytes).toBe(0)
    expect(s.cacheEntries).toBe(0)
  })
})

describe('correctness', () => {
  const client = getSharedEmbeddingClient()

  test.each(reference.items.map((it) => [it.text.slice(0, 40), it]))(
    'matches the independent reference: %j',
    async (_name, item) => {
      const v = await client.createEmbedding(item.text)
      expect(v.length).toBe(item.vector.length)
      expect(cosine(v, item.vector)).toBeGreaterThanOrEqual(0.999)
    },
  )

  // Every precision the package ships is checked against the reference: exact is the
  // model's own arithmetic (the int8 tables gathered before dequantizing and attention as
  // one node change no bit, GELU as one node a rounding step), int8 computes the products
  // in integers and gives a little away.
  // Both one text at a time and in a batch: int8 quantizes each model call's
  // activations together, so a batch is its own case.
  test.each([
    ['exact', 0.99999],
    ['int8', 0.998],
  ])('precision %s stays within its documented accuracy of the reference', async (precision, floor) => {
    const c = getSharedEmbeddingClient({ precision })
    const texts = reference.items.map((it) => it.text)
    const vectors = await c.createEmbeddings(texts)
    c.clearCache()
    const singles = []
    for (const t of texts) singles.push(await c.createEmbedding(t))
    const worst = (vs) => Math.min(...vs.map((v, i) => cosine(v, reference.items[i].vector)))
    const stats = c.getStats()
    // The floor must hold on whatever CPU runs the tests: say which one it was.
    console.log(
      `precision ${precision} on ${stats.cpuFeatures.join(' ') || 'no listed features'}` +
        (stats.int8Weights ? ` (${stats.int8Weights} weights)` : '') +
        `: min cosine ${worst(vectors).toFixed(5)} batched, ${worst(singles).toFixed(5)} single`,
    )
    expect(worst(vectors)).toBeGreaterThanOrEqual(floor)
    expect(worst(singles)).toBeGreaterThanOrEqual(floor)
    expect(stats.precision).toBe(precision)
    expect(stats.modelLoads).toBe(1)
    if (precision === 'int8' && process.arch === 'x64') {
      // Without VNNI, signed 8-bit products saturate in 16 bits (vpmaddubsw): the weights
      // must have been taken unsigned there.
      const vnni = stats.cpuFeatures.includes('avx512vnni') || stats.cpuFeatures.includes('avxvnni')
      expect(stats.int8Weights).toBe(vnni ? 'signed' : 'unsigned')
    } else if (precision === 'exact') {
      expect(stats.int8Weights ?? null).toBeNull()
    }
  })

  test('an unknown precision is INVALID_OPTION', () => {
    expectThrowCode(() => getSharedEmbeddingClient({ precision: 'int4' }), 'INVALID_OPTION')
  })

  test('vectors are L2-normalised', async () => {
    const v = await client.createEmbedding('normalised?')
    const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0))
    expect(Math.abs(norm - 1)).toBeLessThan(1e-4)
  })

  test('related sentences score higher than unrelated ones', async () => {
    const [cat, kitten, stocks] = await client.createEmbeddings([
      'The cat sits on the mat.',
      'A kitten is resting on a rug.',
      'Stock markets fell sharply after the interest rate decision.',
    ])
    expect(cosine(cat, kitten)).toBeGreaterThan(cosine(cat, stocks) + 0.2)
    expect(cosine(kitten, cat)).toBeGreaterThan(cosine(kitten, stocks))
  })

  test('batches agree with single calls, in order', async () => {
    const texts = reference.items.map((it) => it.text)
    client.clearCache()
    const batch = await client.createEmbeddings(texts)
    expect(batch.length).toBe(texts.length)
    batch.forEach((v, i) => expect(cosine(v, reference.items[i].vector)).toBeGreaterThanOrEqual(0.999))
  })

  test('the Float32Array form is the flat, row-major batch', async () => {
    const texts = ['alpha', 'beta', 'gamma']
    const rows = await client.createEmbeddings(texts)
    const flat = await client.createEmbeddingsFloat32(texts)
    expect(flat).toBeInstanceOf(Float32Array)
    expect(flat.length).toBe(3 * 384)
    rows.forEach((row, i) => {
      expect(Array.from(flat.subarray(i * 384, (i + 1) * 384))).toEqual(row)
    })
  })

  test('getStats reports the documented fields', async () => {
    await client.createEmbedding('stats')
    const s = client.getStats()
    expect(s).toMatchObject({ model: 'all-MiniLM-L6-v2', dimension: 384, modelLoads: 1 })
    for (const k of ['requests', 'cacheHits', 'cacheMisses', 'cacheBytes', 'batches', 'meanBatchSize', 'queueDepth']) {
      expect(typeof s[k]).toBe('number')
    }
    expect(s.requests).toBeGreaterThanOrEqual(s.cacheHits + 1)
    expect(s.meanBatchSize).toBeGreaterThanOrEqual(1)
    expect(client.model).toBe('all-MiniLM-L6-v2')
  })

  test('one model per process: every client shares it', async () => {
    const a = getSharedEmbeddingClient()
    const b = getSharedEmbeddingClient({ model: 'all-MiniLM-L6-v2', timeoutMs: 5000 })
    await Promise.all([a.createEmbedding('shared one'), b.createEmbedding('shared two')])
    expect(a.getStats().modelLoads).toBe(1)
    expect(b.getStats()).toEqual(a.getStats())
  })
})
