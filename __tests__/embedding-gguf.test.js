'use strict'
// The llama.cpp embedding engine, on the GGUF twins of the default ONNX model (the same
// weights and vocabulary; scripts/gguf-twin.js makes them): its vectors against the ONNX
// engine's, batching, eight workers on one load, coded errors, exit in flight.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { getSharedEmbeddingClient, getModelLoader } = require('..')
const { cosine, inWorker, expectCode, llmModelDir, root } = require('./helpers')
const twins = require('../scripts/gguf-twin')

const why = twins.missing()
if (why) console.log(`skipped: the GGUF embedding tests (${why})`)
const files = why ? null : twins.ensure()

// Sentences that are in no fixture, of the kinds retrieval embeds: questions, passages,
// names and numbers, punctuation, accents, an empty text.
const HELD_OUT = [
  'How do I reset my password?',
  'Reset your password from the account settings page, under Security.',
  'The mitochondria is the powerhouse of the cell.',
  'Quarterly revenue grew 12% to $4.3 billion, beating analyst estimates.',
  'Le château se trouve au bord de la Loire, près de Tours.',
  'def fibonacci(n): return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)',
  'Order #48213 shipped on 2026-11-30 via express delivery.',
  'Which planet has the most moons?',
  'Saturn has 146 known moons, more than any other planet in the solar system.',
  'A quick brown fox jumps over the lazy dog!!!',
  'Naïve café owners serve crème brûlée to über-hungry guests.',
  'Symptoms include fever, cough, and shortness of breath.',
  'The treaty was signed in 1648, ending the Thirty Years War.',
  '',
  'tokens',
  'An embedding maps text to a vector so that similar meanings lie close together, which lets a search engine find passages that answer a question even when they share no words with it.',
]

// Measured here: f32 and f16 twins agree with the ONNX engine to a cosine of 0.999998 or
// more, bf16 to 0.99997 (8 bits of mantissa against f16's 11), q8_0 to 0.9983 (its
// weights are quantised once more).
const FLOOR = { f32: 0.999, f16: 0.999, bf16: 0.999, q8_0: 0.99 }

;(why ? describe.skip : describe)('GGUF embedding models on llama.cpp', () => {
  let onnx
  beforeAll(async () => {
    onnx = await getSharedEmbeddingClient().createEmbeddings(HELD_OUT)
  })

  test.each(Object.keys(FLOOR))("the %s twin's vectors match the ONNX engine's", async (type) => {
    const client = getSharedEmbeddingClient({ modelPath: files[type] })
    const vectors = await client.createEmbeddings(HELD_OUT)
    expect(vectors).toHaveLength(HELD_OUT.length)
    const cosines = vectors.map((v, i) => cosine(v, onnx[i]))
    const min = Math.min(...cosines)
    console.log(`${type} twin vs ONNX engine: minimum cosine ${min.toFixed(6)} over ${HELD_OUT.length} sentences`)
    expect(min).toBeGreaterThanOrEqual(FLOOR[type])
    for (const v of vectors) {
      expect(v).toHaveLength(384)
      expect(Math.hypot(...v)).toBeCloseTo(1, 5)
    }
    const s = client.getStats()
    expect(s).toMatchObject({ engine: 'llama', dimension: 384, modelLoads: 1, model: `all-MiniLM-L6-v2.${type}` })
    // The whole call went to llama.cpp as one batch of separate sequences.
    expect(s.batches).toBe(1)
  })

  // Alone, each of these texts goes to the model's small context without flash attention
  // (fewer than 64 tokens); the batch of all 16 to its main context, with it.
  test('a text embedded alone gets the vector it gets in a batch', async () => {
    const batched = await getSharedEmbeddingClient({ modelPath: files.f16 }).createEmbeddings(HELD_OUT)
    // Another file, so another service with an empty cache.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-gguf-'))
    const copy = path.join(dir, 'alone.gguf')
    fs.copyFileSync(files.f16, copy)
    // A missing file: the coded error.
    await expectCode(
      getSharedEmbeddingClient({ modelPath: path.join(dir, 'missing.gguf') }).createEmbedding('x'),
      'MODEL_NOT_FOUND',
    )
    const client = getSharedEmbeddingClient({ modelPath: copy })
    const picks = [0, 3, 13, 15]
    for (const i of picks) {
      expect(cosine(await client.createEmbedding(HELD_OUT[i]), batched[i])).toBeGreaterThan(0.99999)
    }
    expect(client.getStats()).toMatchObject({ model: 'alone', batches: picks.length, cacheHits: 0 })
  })

  test('a generation and GGUF embeddings at once take turns on the CPU: each gives what it gives alone', async () => {
    // Both run on llama.cpp; their decodes wait for each other's cores (src/llama/gate.rs).
    const loader = getModelLoader()
    await loader.loadModel('demo')
    try {
      const messages = [{ role: 'user', content: 'Name three colours and say why you like them.' }]
      const options = { temperature: 0, maxTokens: 32, prefixCache: false }
      const alone = await loader.generate('demo', messages, options)
      const client = getSharedEmbeddingClient({ modelPath: files.q8_0 })
      const texts = HELD_OUT.map((t, i) => `${t} (turns ${i})`)
      // One at a time, as below: the same batches.
      const one = async () => {
        const out = []
        for (const t of texts) out.push(await client.createEmbedding(t))
        return out
      }
      const vectorsAlone = await one()
      client.clearCache()
      const before = client.getStats().batches
      const [together, vectors] = await Promise.all([loader.generate('demo', messages, options), one()])
      expect(together.text).toBe(alone.text)
      expect(together.tokens).toBe(alone.tokens)
      vectors.forEach((v, i) => expect(cosine(v, vectorsAlone[i])).toBeGreaterThan(0.99999))
      expect(client.getStats().batches - before).toBe(texts.length)
    } finally {
      await loader.unloadModel('demo')
    }
  })

  test('eight worker_threads share one load of a GGUF model', async () => {
    const options = { modelPath: files.q8_0, maxWaitMs: 20 }
    const texts = ['shared one', 'shared two']
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, id) => inWorker('embed-worker.js', { id, options, texts: [...texts, `w${id}`] })),
    )
    for (const r of results) {
      expect(r.vectors).toHaveLength(3)
      expect(r.vectors[0]).toEqual(results[0].vectors[0])
      expect(r.stats).toMatchObject({ engine: 'llama', modelLoads: 1 })
    }
    expect(getSharedEmbeddingClient(options).getStats().modelLoads).toBe(1)
  })

  test.each([
    ['llama.cpp (GGUF twin, 512 tokens)', () => ({ modelPath: files.f16 }), 512],
    ['ONNX Runtime (256 tokens)', () => undefined, 256],
  ])('%s: a longer text is cut and counted, or refused with truncate: false', async (_, options, max) => {
    const client = getSharedEmbeddingClient(options())
    const long = Array.from({ length: 400 }, (_, i) => `word${i}`).join(' ')
    const before = client.getStats()
    const [v] = await client.createEmbeddings([long, 'a short text'])
    expect(v).toHaveLength(384)
    expect(Math.hypot(...v)).toBeCloseTo(1, 5)
    const after = client.getStats()
    expect(after.truncated - before.truncated).toBe(1)
    // The long text's tokens (all the model reads) and the short one's ([CLS] a short text [SEP]).
    expect(after.tokens - before.tokens).toBe(max + 5)
    const e = await expectCode(client.createEmbeddings(['fine', long], { truncate: false }), 'INPUT_TOO_LONG')
    expect(e.message).toMatch(new RegExp(`text 1 is longer than the ${max} tokens`))
    // The client's default, and a text that fits.
    const strict = getSharedEmbeddingClient({ ...options(), truncate: false })
    await expectCode(strict.createEmbedding(long), 'INPUT_TOO_LONG')
    expect(await strict.createEmbedding('a short text')).toHaveLength(384)
    expect(await strict.createEmbedding(long, { truncate: true })).toEqual(v)
  })

  test('a chat model is not an embedding model: a coded error that says why', async () => {
    const chat = path.join(llmModelDir, 'SmolLM2-135M-Instruct.Q4_1.gguf')
    const e = await expectCode(getSharedEmbeddingClient({ modelPath: chat }).createEmbedding('x'), 'MODEL_LOAD_FAILED')
    expect(e.message).toMatch(/llama\.pooling_type is missing: not an embedding model/)
  })

  test('a reranker or a bad pooling type in the header is a coded error, never an abort', async () => {
    const bytes = fs.readFileSync(files.q8_0)
    const key = Buffer.from('bert.pooling_type')
    const at = bytes.indexOf(key)
    expect(at).toBeGreaterThan(0)
    // After the key: its type (u32 = 4), then the value.
    expect(bytes.readUInt32LE(at + key.length)).toBe(4)
    expect(bytes.readUInt32LE(at + key.length + 4)).toBe(1)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-gguf-'))
    const withPooling = (p) => {
      const file = path.join(dir, `pooling-${p}.gguf`)
      const copy = Buffer.from(bytes)
      copy.writeUInt32LE(p, at + key.length + 4)
      fs.writeFileSync(file, copy)
      return file
    }
    let e = await expectCode(
      getSharedEmbeddingClient({ modelPath: withPooling(4) }).createEmbedding('x'),
      'MODEL_LOAD_FAILED',
    )
    expect(e.message).toMatch(/reranker/)
    // llama.cpp would abort the process building this graph ("unknown pooling type").
    e = await expectCode(
      getSharedEmbeddingClient({ modelPath: withPooling(7) }).createEmbedding('x'),
      'MODEL_LOAD_FAILED',
    )
    expect(e.message).toMatch(/bert\.pooling_type = 7/)
  })

  test('an aborted signal rejects with ABORTED', async () => {
    const c = getSharedEmbeddingClient({ modelPath: files.q8_0 })
    const ac = new AbortController()
    ac.abort()
    await expectCode(c.createEmbedding('never embedded', { signal: ac.signal }), 'ABORTED')
  })

  test('`model` names a GGUF file in the models directory', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-gguf-models-'))
    fs.copyFileSync(files.q8_0, path.join(dir, 'minilm-twin.gguf'))
    const script = `
      const { getSharedEmbeddingClient } = require(${JSON.stringify(root)})
      const c = getSharedEmbeddingClient({ model: 'minilm-twin.gguf' })
      c.createEmbedding('hello').then((v) => console.log(JSON.stringify({ n: v.length, ...c.getStats() })))
    `
    const r = spawnSync(process.execPath, ['-e', script], {
      encoding: 'utf8',
      timeout: 60000,
      env: { ...process.env, ORION_MODELS_DIR: dir },
    })
    expect(r.status).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ n: 384, model: 'minilm-twin', engine: 'llama', modelLoads: 1 })
  })

  describe("a model family's prefixes and shorter vectors", () => {
    // The twin under the names of other families: their rules are applied by name (its
    // weights are MiniLM's, so this tests the plumbing, not those models).
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-gguf-family-'))
    const named = (name) => {
      const file = path.join(dir, name)
      if (!fs.existsSync(file)) fs.copyFileSync(files.f32, file)
      return getSharedEmbeddingClient({ modelPath: file })
    }
    const norm = (v) => Math.hypot(...v)
    const cut = (v, d) => {
      const head = v.slice(0, d)
      const n = norm(head)
      return head.map((x) => x / n)
    }

    test("inputType writes the family's prefix; dimensions cuts and renormalises", async () => {
      const nomic = named('nomic-embed-text-v1.5.Q8_0.gguf')
      expect(nomic.getStats().family).toBe('nomic-embed-text-v1.5')
      const text = 'what is a GGUF file?'
      const [plain, asQuery, asDoc] = await Promise.all([
        nomic.createEmbedding(`search_query: ${text}`),
        nomic.createEmbedding(text, { inputType: 'query' }),
        nomic.createEmbedding(text, { inputType: 'document' }),
      ])
      expect(asQuery).toEqual(plain)
      expect(asDoc).toEqual(await nomic.createEmbedding(`search_document: ${text}`))
      const short = await nomic.createEmbedding(text, { inputType: 'query', dimensions: 64 })
      expect(short).toHaveLength(64)
      expect(norm(short)).toBeCloseTo(1, 5)
      short.forEach((x, i) => expect(x).toBeCloseTo(cut(plain, 64)[i], 6))
      // A client's defaults, overridden per call.
      const client = getSharedEmbeddingClient({
        modelPath: path.join(dir, 'nomic-embed-text-v1.5.Q8_0.gguf'),
        inputType: 'query',
        dimensions: 128,
      })
      const d128 = await client.createEmbedding(text)
      cut(plain, 128).forEach((x, i) => expect(d128[i]).toBeCloseTo(x, 6))
      expect(await client.createEmbedding(text, { dimensions: 384 })).toEqual(plain)
      await expectCode(nomic.createEmbedding(text, { dimensions: 32 }), 'INVALID_OPTION')
      await expectCode(nomic.createEmbedding(text, { dimensions: 1000 }), 'INVALID_OPTION')
      await expectCode(nomic.createEmbedding(text, { inputType: 'query', instruction: 'x' }), 'INVALID_OPTION')
    })

    test('a Qwen3-Embedding query carries its instruction; EmbeddingGemma takes its sizes only', async () => {
      const qwen = named('Qwen3-Embedding-0.6B-Q8_0.gguf')
      const text = 'capital of France'
      const task = 'Given a web search query, retrieve relevant passages that answer the query'
      expect(await qwen.createEmbedding(text, { inputType: 'query' })).toEqual(
        await qwen.createEmbedding(`Instruct: ${task}\nQuery:${text}`),
      )
      expect(await qwen.createEmbedding(text, { inputType: 'query', instruction: 'Find French facts' })).toEqual(
        await qwen.createEmbedding(`Instruct: Find French facts\nQuery:${text}`),
      )
      // Documents take no instruction.
      expect(await qwen.createEmbedding(text, { inputType: 'document' })).toEqual(await qwen.createEmbedding(text))
      expect(await qwen.createEmbedding(text, { dimensions: 32 })).toHaveLength(32)
      await expectCode(qwen.createEmbedding(text, { dimensions: 16 }), 'INVALID_OPTION')
      const gemma = named('embeddinggemma-300m-Q8_0.gguf')
      expect(await gemma.createEmbedding(text, { inputType: 'document' })).toEqual(
        await gemma.createEmbedding(`title: none | text: ${text}`),
      )
      expect(await gemma.createEmbedding(text, { dimensions: 256 })).toHaveLength(256)
      const e = await expectCode(gemma.createEmbedding(text, { dimensions: 200 }), 'INVALID_OPTION')
      expect(e.message).toMatch(/128, 256, 512, 768/)
    })

    test('a remote model gets its family by its name on the server, and is cut as asked', async () => {
      const { startServer } = require('../scripts/llama-server')
      const server = await startServer({
        model: files.f32,
        alias: 'nomic-embed-text-v1.5',
        embeddings: true,
        parallel: 1,
        ctx: 512,
      })
      try {
        const remote = getSharedEmbeddingClient({ remote: { url: server.url, model: 'nomic-embed-text-v1.5' } })
        const local = named('nomic-embed-text-v1.5.Q8_0.gguf')
        const text = 'remote and local agree'
        const [r, l] = await Promise.all([
          remote.createEmbedding(text, { inputType: 'query', dimensions: 64 }),
          local.createEmbedding(text, { inputType: 'query', dimensions: 64 }),
        ])
        expect(remote.getStats()).toMatchObject({ engine: 'remote', family: 'nomic-embed-text-v1.5' })
        expect(r).toHaveLength(64)
        expect(cosine(r, l)).toBeGreaterThan(0.9999)
      } finally {
        await server.stop()
      }
    })
  })

  test('a process exiting with GGUF embeddings in flight exits cleanly', () => {
    const script = `
      const { getSharedEmbeddingClient } = require(${JSON.stringify(root)})
      const c = getSharedEmbeddingClient({ modelPath: ${JSON.stringify(files.f32)} })
      c.createEmbedding('warm').then(() => {
        c.createEmbeddings(Array.from({ length: 500 }, (_, i) => 'in flight ' + i))
        setTimeout(() => { console.log('exiting'); process.exit(0) }, 30)
      })
    `
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60000 })
    expect(r.signal).toBeNull()
    expect(r.status).toBe(0)
    expect(r.stdout.trim()).toBe('exiting')
  })
})
