'use strict'
// One definition, two backends: every test here runs against the in-process engine and
// against llama.cpp's llama-server through the same public API (see backends.js).
const { getSharedEmbeddingClient, getModelLoader } = require('..')
const { cosine, expectCode, inWorker } = require('./helpers')
const { backends } = require('./backends')

const embedWorker = (workerData) => inWorker('embed-worker.js', workerData)

// The server applies the GGUF's own chat template, which without a system message gives
// SmolLM2 another greedy answer than in-process: both get the same messages.
const QUESTION = [
  { role: 'system', content: 'You are a helpful assistant.' },
  { role: 'user', content: 'What is the capital of France?' },
]

describe.each(backends)('$name backend', (backend) => {
  let env
  // The first run on a machine builds llama-server (minutes); later runs reuse it.
  beforeAll(async () => {
    env = await backend.setup()
  }, 1_800_000)
  afterAll(() => backend.teardown(), 30_000)

  const client = () => getSharedEmbeddingClient(env.embedOptions)

  describe('embeddings', () => {
    test('eight worker_threads share one client: one width, identical vectors, one connection or load', async () => {
      const shared = [`${backend.name}: shared sentence one`, `${backend.name}: the second shared sentence`]
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, id) =>
          embedWorker({ id, options: env.embedOptions, texts: [...shared, `${backend.name} worker ${id} alone`] }),
        ),
      )
      for (const r of results) {
        expect(r.vectors).toHaveLength(3)
        r.vectors.forEach((v) => expect(v).toHaveLength(env.dimension))
        expect(r.vectors[0]).toEqual(results[0].vectors[0])
        expect(r.vectors[1]).toEqual(results[0].vectors[1])
        expect(r.stats.modelLoads).toBe(1)
      }
      const main = client()
      expect(await main.createEmbedding(shared[0])).toEqual(results[0].vectors[0])
      const s = main.getStats()
      expect(s.modelLoads).toBe(1)
      expect(s.dimension).toBe(env.dimension)
      expect(s.requests).toBeGreaterThanOrEqual(8 * 3)
      expect(Boolean(s.endpoints)).toBe(backend.name === 'remote')
    })

    test('the same text gives the same vector, and a batch gives what single calls give', async () => {
      const texts = Array.from({ length: 12 }, (_, i) => `${backend.name} batch text number ${i} ${Date.now()}`)
      const batch = await client().createEmbeddings(texts)
      client().clearCache()
      const singles = []
      for (const t of texts) singles.push(await client().createEmbedding(t))
      expect(batch).toHaveLength(texts.length)
      for (let i = 0; i < texts.length; i++) expect(cosine(batch[i], singles[i])).toBeGreaterThan(0.9999)
      const flat = await client().createEmbeddingsFloat32(texts.slice(0, 2))
      expect(flat).toBeInstanceOf(Float32Array)
      expect(flat.length).toBe(2 * env.dimension)
      // Different texts are different vectors.
      expect(cosine(singles[0], singles[1])).toBeLessThan(0.9999)
    })

    test('repeats are answered from the shared cache', async () => {
      const text = `${backend.name} cached ${Date.now()}`
      const first = await client().createEmbedding(text)
      const before = client().getStats()
      const again = await client().createEmbedding(text)
      const after = client().getStats()
      expect(again).toEqual(first)
      expect(after.cacheHits).toBe(before.cacheHits + 1)
      expect(after.batches).toBe(before.batches)
    })

    test('bad input, aborts and timeouts are coded errors', async () => {
      await expectCode(client().createEmbedding(42), 'INVALID_INPUT')
      await expectCode(client().createEmbeddings(['ok', null]), 'INVALID_INPUT')
      await expectCode(client().createEmbedding('x', { signal: AbortSignal.abort() }), 'ABORTED')
      const big = Array.from({ length: 40 }, (_, i) => `${backend.name} slow ${i} ${Date.now()}`)
      await expectCode(client().createEmbeddings(big, { timeoutMs: 1 }), 'EMBEDDING_TIMEOUT')
      // And the client still works afterwards.
      await expect(client().createEmbedding(`${backend.name} after errors`)).resolves.toHaveLength(env.dimension)
    })
  })

  describe('generation', () => {
    const loader = () => getModelLoader()

    test('loadModel reports progress to exactly 100 and getStats lists the model', async () => {
      const progress = []
      const info = await loader().loadModel(env.llmKey, (p) => progress.push(p))
      expect(info.key).toBe(env.llmKey)
      expect(progress[progress.length - 1]).toBe(100)
      for (let i = 1; i < progress.length; i++) expect(progress[i]).toBeGreaterThanOrEqual(progress[i - 1])
      const stats = loader().getStats()
      const listed = [...stats.models.map((m) => m.key), ...stats.remoteModels.map((m) => m.key)]
      expect(listed).toContain(env.llmKey)
      if (backend.name === 'remote') {
        const m = stats.remoteModels.find((x) => x.key === env.llmKey)
        expect(m.endpoints.map((e) => e.url)).toEqual([env.chatServer.url])
      }
    })

    test('the demo question is answered with Paris', async () => {
      const r = await loader().generate(env.llmKey, QUESTION, { temperature: 0, maxTokens: 40 })
      expect(r.text).toMatch(/Paris/)
      expect(r.finishReason).toBe('eos')
      expect(r.tokens).toBeGreaterThan(0)
      expect(r.timings.generatedTokens).toBeGreaterThan(0)
      expect(r.timings.promptTokens).toBeGreaterThan(0)
    })

    test('streamed text equals the text of generate, and onToken pieces add up to it', async () => {
      const opts = { temperature: 0, maxTokens: 48 }
      const whole = await loader().generate(env.llmKey, QUESTION, opts)
      let streamed = ''
      for await (const piece of loader().generateStream(env.llmKey, QUESTION, opts)) streamed += piece
      const pieces = []
      const viaCallback = await loader().generate(env.llmKey, QUESTION, { ...opts, onToken: (t) => pieces.push(t) })
      expect(streamed).toBe(whole.text)
      expect(viaCallback.text).toBe(whole.text)
      // Callbacks arrive on the JS thread after the native side is done: wait a tick.
      await new Promise((r) => setImmediate(r))
      expect(pieces.join('')).toBe(whole.text)
    })

    test('maxTokens ends with finishReason maxTokens, and a stop string ends the text before it', async () => {
      const story = [{ role: 'user', content: 'Tell me a long story about a dragon.' }]
      const short = await loader().generate(env.llmKey, story, { temperature: 0, maxTokens: 5 })
      expect(short.finishReason).toBe('maxTokens')
      expect(short.tokens).toBeLessThanOrEqual(5)
      const stopped = await loader().generate(env.llmKey, QUESTION, { temperature: 0, maxTokens: 40, stop: ['Paris'] })
      expect(stopped.text).not.toMatch(/Paris/)
      // A server says `stop` for a stop string and for the end of its turn alike.
      expect(stopped.finishReason).toBe(backend.name === 'remote' ? 'eos' : 'stop')
    })

    test('a JSON schema is followed: the answer parses, validates and comes parsed', async () => {
      const Ajv2020 = require('ajv/dist/2020').default
      const schema = {
        type: 'object',
        properties: {
          city: { type: 'string', maxLength: 24 },
          country: { type: 'string', maxLength: 24 },
          population: { type: 'integer', minimum: 0 },
        },
        required: ['city', 'country', 'population'],
        additionalProperties: false,
      }
      const ask = [...QUESTION.slice(0, 1), { role: 'user', content: 'Describe Paris as JSON.' }]
      for (const seed of [1, 2, 3]) {
        const r = await loader().generate(env.llmKey, ask, {
          jsonSchema: schema,
          temperature: 0.8,
          seed,
          maxTokens: 200,
        })
        expect(r.json).toEqual(JSON.parse(r.text))
        expect(new Ajv2020().validate(schema, r.json)).toBe(true)
      }
    })

    test('an abort mid-generation rejects ABORTED', async () => {
      const ac = new AbortController()
      const story = [{ role: 'user', content: 'Tell me a long story about a dragon.' }]
      const started = Date.now()
      const p = loader().generate(env.llmKey, story, {
        temperature: 0,
        maxTokens: 400,
        signal: ac.signal,
        onToken: () => ac.abort(),
      })
      await expectCode(p, 'ABORTED')
      expect(Date.now() - started).toBeLessThan(20_000)
      await expectCode(loader().generate(env.llmKey, story, { signal: AbortSignal.abort() }), 'ABORTED')
    })
  })
})
