'use strict'
// The shared reranker: llama.cpp's rank pooling on a GGUF reranker fixture (the default
// embedding model's encoder with a seeded random classification head: no cross-encoder is
// in a registry package, so its scores test the plumbing, not ranking quality), checked
// against llama.cpp's own server on the same file; remote /v1/rerank against that server;
// eight workers on one load; topK, cache, cancellation, coded errors, exit in flight.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { getSharedReranker } = require('..')
const { inWorker, expectCode, expectThrowCode, root } = require('./helpers')
const { startServer } = require('../scripts/llama-server')
const twins = require('../scripts/gguf-twin')

const why = twins.missing()
if (why) console.log(`skipped: the reranker tests (${why})`)
const files = why ? null : twins.ensure()

const QUERY = 'How do plants make food from sunlight?'
// 100 documents of varied length (up to about 120 tokens), the last ones repeated.
const DOCUMENTS = Array.from(
  { length: 100 },
  (_, i) =>
    [
      'Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.',
      'The stock market closed higher on Tuesday.',
      'Chlorophyll in the leaves absorbs mostly blue and red light.',
      'A recipe for banana bread with walnuts.',
      `Passage ${i}: ` + 'plants store the energy of sunlight in chemical bonds, '.repeat(1 + (i % 12)),
    ][i % 5],
)

;(why ? describe.skip : describe)('the shared reranker', () => {
  let server
  beforeAll(async () => {
    server = await startServer({ model: files.rerank, alias: 'twin-rerank', rerank: true, ctx: 512, parallel: 1 })
  }, 120_000)
  afterAll(() => server && server.stop())

  /** llama.cpp's own server's scores for the documents, in document order. */
  async function serverScores(query, documents) {
    const r = await fetch(`${server.url}/v1/rerank`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'twin-rerank', query, documents, top_n: documents.length }),
    })
    const body = await r.json()
    const scores = new Array(documents.length)
    for (const { index, relevance_score } of body.results) scores[index] = relevance_score
    return scores
  }

  test("scores are llama.cpp's server's on the same file, ranked best first", async () => {
    const reranker = getSharedReranker({ modelPath: files.rerank })
    const ranking = await reranker.rerank(QUERY, DOCUMENTS)
    expect(ranking).toHaveLength(DOCUMENTS.length)
    expect(new Set(ranking.map((r) => r.index)).size).toBe(DOCUMENTS.length)
    for (let i = 1; i < ranking.length; i++) expect(ranking[i - 1].score).toBeGreaterThanOrEqual(ranking[i].score)
    const expected = await serverScores(QUERY, DOCUMENTS)
    let worst = 0
    for (const { index, score } of ranking) worst = Math.max(worst, Math.abs(score - expected[index]))
    console.log(`largest difference from llama-server's scores over ${DOCUMENTS.length} documents: ${worst}`)
    // Not bit for bit: the server scores each pair alone, this in batches of pairs.
    expect(worst).toBeLessThan(2e-3)
    const s = reranker.getStats()
    expect(s).toMatchObject({ engine: 'llama', modelLoads: 1, model: 'all-MiniLM-L6-v2.rerank' })
    // Pairs went to llama.cpp several at a time.
    expect(s.batches).toBeLessThan(DOCUMENTS.length / 4)
    // Asked again: from the cache.
    const again = await reranker.rerank(QUERY, DOCUMENTS, { topK: 3 })
    expect(again).toEqual(ranking.slice(0, 3))
    expect(reranker.getStats().cacheHits).toBeGreaterThanOrEqual(DOCUMENTS.length)
  })

  test('a remote reranker (/v1/rerank on llama.cpp’s server) ranks as the local one', async () => {
    const remote = getSharedReranker({ remote: { url: server.url, model: 'twin-rerank' } })
    const docs = DOCUMENTS.slice(0, 10)
    const [a, b] = await Promise.all([
      remote.rerank(QUERY, docs),
      getSharedReranker({ modelPath: files.rerank }).rerank(QUERY, docs),
    ])
    // The same scores by document (the order can differ between near-equal scores).
    const local = Object.fromEntries(b.map((r) => [r.index, r.score]))
    expect(a).toHaveLength(docs.length)
    for (const r of a) expect(Math.abs(r.score - local[r.index])).toBeLessThan(2e-3)
    const s = remote.getStats()
    expect(s.engine).toBe('remote')
    expect(s.endpoints[0]).toMatchObject({ healthy: true, errors: 0 })
    // Two queries at once: each goes to the server with its own documents.
    const [x, y] = await Promise.all([
      remote.rerank('first question', docs.slice(0, 3)),
      remote.rerank('second question', docs.slice(3, 6)),
    ])
    expect(x).toHaveLength(3)
    expect(y).toHaveLength(3)
    const exp = await serverScores('second question', docs.slice(3, 6))
    for (const { index, score } of y) expect(score).toBeCloseTo(exp[index], 5)
  })

  test('eight worker_threads share one load of the reranker', async () => {
    const options = { modelPath: files.rerank, maxWaitMs: 20 }
    const documents = DOCUMENTS.slice(0, 6)
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, id) => inWorker('rerank-worker.js', { id, options, query: QUERY, documents })),
    )
    for (const r of results) {
      expect(r.ranking).toEqual(results[0].ranking)
      expect(r.stats).toMatchObject({ engine: 'llama', modelLoads: 1 })
    }
  })

  test('an ONNX cross-encoder (ONNX Runtime) scores as transformers does, with the same machinery', async () => {
    const dir = files['rerank-onnx']
    const reranker = getSharedReranker({ modelPath: dir })
    const docs = DOCUMENTS.slice(0, 20)
    const ranking = await reranker.rerank(QUERY, docs)
    expect(ranking).toHaveLength(docs.length)
    for (let i = 1; i < ranking.length; i++) expect(ranking[i - 1].score).toBeGreaterThanOrEqual(ranking[i].score)
    // The reference: Hugging Face's tokenizers (the document as token type 1) and ONNX
    // Runtime's Python package, one pair at a time.
    const expected = twins.referenceScores(dir, QUERY, docs)
    let worst = 0
    for (const { index, score } of ranking) worst = Math.max(worst, Math.abs(score - expected[index]))
    console.log(`ONNX cross-encoder: largest difference from the reference over ${docs.length} documents: ${worst}`)
    expect(worst).toBeLessThan(1e-3)
    expect(reranker.getStats()).toMatchObject({ engine: 'onnx', modelLoads: 1 })
    // Two queries in one batch (from two callers at once) are each scored with their own.
    const [a, b] = await Promise.all([
      reranker.rerank('first question', docs.slice(0, 3)),
      reranker.rerank('second question', docs.slice(0, 3)),
    ])
    const refB = twins.referenceScores(dir, 'second question', docs.slice(0, 3))
    for (const { index, score } of b) expect(Math.abs(score - refB[index])).toBeLessThan(1e-3)
    expect(a).toHaveLength(3)
    // Eight workers, one load.
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, id) =>
        inWorker('rerank-worker.js', {
          id,
          options: { modelPath: dir, maxWaitMs: 20 },
          query: QUERY,
          documents: docs.slice(0, 6),
        }),
      ),
    )
    for (const r of results) {
      expect(r.ranking.map((x) => x.index)).toEqual(results[0].ranking.map((x) => x.index))
      expect(r.stats).toMatchObject({ engine: 'onnx', modelLoads: 1 })
    }
    // Too long: cut, or refused when asked.
    const [long] = await reranker.rerank(QUERY, ['word '.repeat(2000)])
    expect(Number.isFinite(long.score)).toBe(true)
    expect(reranker.getStats().truncated).toBeGreaterThanOrEqual(1)
    await expectCode(reranker.rerank(QUERY, ['fits', 'word '.repeat(2000)], { truncate: false }), 'INPUT_TOO_LONG')
  })

  test("precision: 'int8' on an ONNX cross-encoder: integer products, the same ranking as exact", async () => {
    const dir = files['rerank-onnx']
    const exact = getSharedReranker({ modelPath: dir })
    const int8 = getSharedReranker({ modelPath: dir, precision: 'int8' })
    const docs = [
      ...new Set([
        ...DOCUMENTS.slice(0, 20),
        'Le chat dort sur le canapé.',
        'Error: connection refused at 127.0.0.1:8080',
        'Leaves are green because chlorophyll reflects green light.',
        'Sugar is made in the chloroplasts of plant cells.',
        'Solar panels convert sunlight into electricity.',
      ]),
    ]
    for (const query of [QUERY, 'what is the capital of France?']) {
      const a = (await exact.rerank(query, docs)).sort((x, y) => x.index - y.index).map((x) => x.score)
      const b = (await int8.rerank(query, docs)).sort((x, y) => x.index - y.index).map((x) => x.score)
      const worst = Math.max(...a.map((s, i) => Math.abs(s - b[i])))
      // Documents whose exact scores are more than 0.05 apart keep their order (closer
      // ones may swap: the fixture's passages that differ only in how often a phrase
      // repeats score within a few thousandths of each other).
      let kept = 0
      let swapped = 0
      for (let i = 0; i < a.length; i++)
        for (let j = 0; j < a.length; j++)
          if (a[i] - a[j] > 0.05) {
            kept++
            if (!(b[i] > b[j])) swapped++
          }
      console.log(
        `int8 cross-encoder, "${query}": largest score difference from exact ${worst.toFixed(4)} ` +
          `(scores spread over ${(Math.max(...a) - Math.min(...a)).toFixed(3)}); ` +
          `${swapped} of ${kept} pairs of documents more than 0.05 apart swapped`,
      )
      // Measured on the fixture (a random head, whose scores spread over 0.3 to 0.8):
      // differences of 0.02 to 0.035.
      expect(worst).toBeLessThan(0.05)
      expect(worst).toBeGreaterThan(0) // integer products, not the exact graph again
      expect(kept).toBeGreaterThan(20)
      expect(swapped).toBe(0)
    }
    // Two precisions are two services, each loaded once; the stats say which.
    expect(int8.getStats()).toMatchObject({ engine: 'onnx', modelLoads: 1, precision: 'int8' })
    expect(['signed', 'unsigned']).toContain(int8.getStats().int8Weights)
    expect(exact.getStats()).toMatchObject({ precision: 'exact' })
    expect(exact.getStats().int8Weights).toBeUndefined()
    expect(getSharedReranker({ modelPath: dir, precision: 'int8' }).getStats().requests).toBe(int8.getStats().requests)
    expectThrowCode(() => getSharedReranker({ modelPath: dir, precision: 'fp16' }), 'INVALID_OPTION')
    // An fp32 export of the same cross-encoder has no int8 weights to compute with: int8
    // is refused, not silently exact; exact scores as the int8 export's exact graph does.
    const fp32 = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-fp32-ce-'))
    try {
      twins.fp32CrossEncoder(dir, fp32)
      const e = await expectCode(
        getSharedReranker({ modelPath: fp32, precision: 'int8' }).rerank(QUERY, ['x']),
        'INVALID_OPTION',
      )
      expect(e.message).toMatch(/needs a cross-encoder exported with int8 weights/)
      const a = (await exact.rerank(QUERY, docs.slice(0, 5))).sort((x, y) => x.index - y.index)
      const b = (await getSharedReranker({ modelPath: fp32 }).rerank(QUERY, docs.slice(0, 5))).sort(
        (x, y) => x.index - y.index,
      )
      b.forEach((r, i) => expect(Math.abs(r.score - a[i].score)).toBeLessThan(1e-4))
      // Both files in one directory (transformers.js's layout): int8 takes the quantized one.
      const both = path.join(fp32, 'both')
      twins.fp32CrossEncoder(dir, both)
      fs.mkdirSync(path.join(both, 'onnx'))
      fs.copyFileSync(path.join(dir, 'onnx', 'model_quantized.onnx'), path.join(both, 'onnx', 'model_quantized.onnx'))
      const bothInt8 = getSharedReranker({ modelPath: both, precision: 'int8' })
      const c = (await bothInt8.rerank(QUERY, docs.slice(0, 5))).sort((x, y) => x.index - y.index)
      // Integer products (not the exact scores), within int8's bound of them.
      const diffs = c.map((r, i) => Math.abs(r.score - a[i].score))
      expect(Math.max(...diffs)).toBeGreaterThan(0)
      expect(Math.max(...diffs)).toBeLessThan(0.05)
      expect(bothInt8.getStats().precision).toBe('int8')
    } finally {
      fs.rmSync(fp32, { recursive: true, force: true })
    }
    // A GGUF reranker computes with its file's types: no precision to report.
    const gguf = getSharedReranker({ modelPath: files.rerank, precision: 'int8' })
    await gguf.rerank(QUERY, ['x'])
    expect(gguf.getStats().precision).toBeUndefined()
  })

  test('topK, empty input and bad input', async () => {
    const reranker = getSharedReranker({ modelPath: files.rerank })
    expect(await reranker.rerank(QUERY, [])).toEqual([])
    expect(await reranker.rerank(QUERY, DOCUMENTS.slice(0, 4), { topK: 10 })).toHaveLength(4)
    expect(await reranker.rerank('', ['', 'x'], { topK: 1 })).toHaveLength(1)
    await expectCode(reranker.rerank(42, ['x']), 'INVALID_INPUT')
    await expectCode(reranker.rerank(QUERY, 'x'), 'INVALID_INPUT')
    await expectCode(reranker.rerank(QUERY, ['x', 7]), 'INVALID_INPUT')
    await expectCode(reranker.rerank(QUERY, ['x'], { topK: 0 }), 'INVALID_OPTION')
    await expectCode(reranker.rerank(QUERY, ['x'], { topK: 1.5 }), 'INVALID_OPTION')
    await expectCode(reranker.rerank(QUERY, ['x'], { topN: 1 }), 'INVALID_OPTION')
    const ac = new AbortController()
    ac.abort()
    await expectCode(reranker.rerank(QUERY, ['never scored'], { signal: ac.signal }), 'ABORTED')
    // A very long document is cut to fit the model, not refused, unless asked.
    const [r] = await reranker.rerank(QUERY, ['word '.repeat(5000)])
    expect(Number.isFinite(r.score)).toBe(true)
    expect(reranker.getStats().truncated).toBeGreaterThanOrEqual(1)
    await expectCode(reranker.rerank(QUERY, ['fits', 'word '.repeat(5000)], { truncate: false }), 'INPUT_TOO_LONG')
  })

  test('a reranker needs a reranker: coded errors that say what to do', async () => {
    expectThrowCode(() => getSharedReranker(), 'INVALID_OPTION')
    expectThrowCode(() => getSharedReranker({ modelPath: path.dirname(files.f32) }), 'INVALID_OPTION')
    expectThrowCode(() => getSharedReranker({ model: '../x.gguf' }), 'INVALID_OPTION')
    // Asking servers for shorter vectors is for embedding models.
    expectThrowCode(
      () => getSharedReranker({ remote: { url: 'http://127.0.0.1:9', model: 'm', dimensions: 64 } }),
      'INVALID_OPTION',
    )
    const e = await expectCode(getSharedReranker({ modelPath: files.f32 }).rerank('q', ['d']), 'MODEL_LOAD_FAILED')
    expect(e.message).toMatch(/an embedding model .* not a reranker/)
    await expectCode(
      getSharedReranker({ modelPath: '/nonexistent/reranker.gguf' }).rerank('q', ['d']),
      'MODEL_NOT_FOUND',
    )
  })

  test('a process exiting with rankings in flight exits cleanly', () => {
    const script = `
      const { getSharedReranker } = require(${JSON.stringify(root)})
      const r = getSharedReranker({ modelPath: ${JSON.stringify(files.rerank)} })
      r.rerank('warm', ['up']).then(() => {
        r.rerank('in flight', Array.from({ length: 300 }, (_, i) => 'document ' + i))
        setTimeout(() => { console.log('exiting'); process.exit(0) }, 30)
      })
    `
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60000 })
    expect(r.signal).toBeNull()
    expect(r.status).toBe(0)
    expect(r.stdout.trim()).toBe('exiting')
  })
})
