'use strict'
// Hostile remote servers (issue 22): small HTTP servers on 127.0.0.1 that ignore
// `max_tokens`, stream keep-alives or one endless line, stay busy with a long
// `Retry-After`, send a 200 MB body, echo the credentials they were sent, or change the
// vectors' width. Every call must end within its bounds, in bounded memory, with a
// coded error that shows no secret.
const { getSharedEmbeddingClient, getModelLoader } = require('..')
const { expectCode } = require('./helpers')
const { serve, json, sse, pump, piece, huge } = require('./hostile/servers')

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const PENDING = Symbol('still pending')

/** `promise`'s outcome as `{ value }` or `{ error }`, or PENDING after `ms`. */
async function within(promise, ms) {
  let timer
  const settled = promise.then(
    (value) => ({ value }),
    (error) => ({ error }),
  )
  const out = await Promise.race([settled, new Promise((r) => (timer = setTimeout(() => r(PENDING), ms)))])
  clearTimeout(timer)
  return out
}

/** Time a call; it must settle within `ms`. */
async function timed(promise, ms) {
  const started = Date.now()
  const out = await within(promise, ms)
  expect(out).not.toBe(PENDING)
  return { ...out, ms: Date.now() - started }
}

async function until(cond, ms, what) {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

/** Peak RSS growth (bytes) while `promise` runs, sampled every 5 ms. */
async function peakGrowth(promise) {
  const base = process.memoryUsage.rss()
  let peak = base
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 5)
  try {
    return { out: await promise, growth: peak - base }
  } finally {
    clearInterval(timer)
    peak = Math.max(peak, process.memoryUsage.rss())
  }
}

let seq = 0
/** A remote model registered under a fresh key. */
function register(url, remote = {}) {
  const key = `hostile-${++seq}`
  getModelLoader().registerModel(key, { remote: { url, model: 'm', ...remote } })
  return key
}

describe('time and tokens', () => {
  test('a server that ignores max_tokens and streams for ever: exactly maxTokens pieces, promptly, connection closed', async () => {
    const s = await serve((req, res) => {
      if (req.url !== '/v1/chat/completions') return
      sse(res)
      let i = 0
      pump(res, () => piece(`p${i++};`))
      return true
    })
    try {
      const loader = getModelLoader()
      const key = register(s.url, { timeoutMs: 3000 })
      const r = await timed(loader.generate(key, 'hi', { maxTokens: 7 }), 5000)
      expect(r.error).toBeUndefined()
      expect(r.value.text).toBe('p0;p1;p2;p3;p4;p5;p6;')
      expect(r.value.tokens).toBe(7)
      expect(r.value.finishReason).toBe('maxTokens')
      expect(r.ms).toBeLessThan(2000)
      let streamed = ''
      const stream = loader.generateStream(key, 'hi', { maxTokens: 5 })
      const collected = (async () => {
        for await (const t of stream) streamed += t
      })()
      expect((await timed(collected, 5000)).error).toBeUndefined()
      expect(streamed).toBe('p0;p1;p2;p3;p4;')
      // Both streams were closed by the client, not left running on the server.
      await until(() => s.open === 0, 2000, 'the streams to be closed')
    } finally {
      await s.close()
    }
  })

  test('keep-alives and empty pieces do not hold the stall timer: REMOTE_UNAVAILABLE within timeoutMs', async () => {
    const s = await serve((req, res) => {
      if (req.url !== '/v1/chat/completions') return
      sse(res)
      let i = 0
      const idle = [
        ': keep-alive\n\n',
        'data: {"choices":[{"delta":{}}]}\n\n',
        'data: {"choices":[{"delta":{"content":""},"finish_reason":null}]}\n\n',
        'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n',
      ]
      pump(res, () => (i++ === 0 ? piece('first') : idle[i % idle.length]), { everyMs: 20 })
      return true
    })
    try {
      const key = register(s.url, { timeoutMs: 2000 })
      const r = await timed(getModelLoader().generate(key, 'hi', { maxTokens: 50 }), 6000)
      expect(r.error && r.error.code).toBe('REMOTE_UNAVAILABLE')
      expect(r.error.message).toMatch(/stalled/)
      expect(r.ms).toBeGreaterThanOrEqual(1900)
      expect(r.ms).toBeLessThan(3500)
      await until(() => s.open === 0, 2000, 'the stream to be closed')
    } finally {
      await s.close()
    }
  })

  test('one endless line: REMOTE_PROTOCOL at the line cap, in bounded memory', async () => {
    const chunk = Buffer.alloc(64 * 1024, 'x')
    const s = await serve((req, res) => {
      if (req.url !== '/v1/chat/completions') return
      sse(res)
      let first = true
      // About 64 MB/s: enough to pass any cap at once, slow enough not to swamp the
      // machine if a client buffered it all.
      pump(
        res,
        () => {
          if (!first) return chunk
          first = false
          return 'data: {"choices":[{"delta":{"content":"'
        },
        { everyMs: 1 },
      )
      return true
    })
    try {
      const key = register(s.url, { timeoutMs: 4000 })
      const { out, growth } = await peakGrowth(timed(getModelLoader().generate(key, 'hi'), 8000))
      expect(out.error && out.error.code).toBe('REMOTE_PROTOCOL')
      expect(out.error.message).toMatch(/1 MiB/)
      expect(out.ms).toBeLessThan(3000)
      expect(growth).toBeLessThan(48 << 20)
    } finally {
      await s.close()
    }
  })
})

describe('busy servers and the deadline', () => {
  const busy = (req, res, s, after) => {
    s.busy = (s.busy || 0) + 1
    return json(res, 503, { error: { code: 503, message: 'Loading model' } }, { 'retry-after': String(after) })
  }

  test('503 with Retry-After: 29 for ever: loadModel, generate and a stream reject within timeoutMs, naming the wait', async () => {
    const down = await serve((req, res, s) => busy(req, res, s, 29))
    const chatBusy = await serve((req, res, s) => (req.method === 'POST' ? busy(req, res, s, 29) : undefined))
    try {
      const loader = getModelLoader()
      const load = await timed(loader.loadModel(register(down.url, { timeoutMs: 2000 })), 4000)
      expect(load.error && load.error.code).toBe('REMOTE_ERROR')
      expect(load.error.message).toMatch(/503/)
      expect(load.error.message).toMatch(/retried after 29 s/)
      expect(load.ms).toBeLessThan(3000)

      const key = register(chatBusy.url, { timeoutMs: 2000 })
      const gen = await timed(loader.generate(key, 'hi', { maxTokens: 4 }), 4000)
      expect(gen.error && gen.error.code).toBe('REMOTE_ERROR')
      expect(gen.error.message).toMatch(/retried after 29 s/)
      expect(gen.ms).toBeLessThan(3000)

      const stream = loader.generateStream(key, 'hi', { maxTokens: 4 })
      const str = await timed(stream.next(), 4000)
      expect(str.error && str.error.code).toBe('REMOTE_ERROR')
      expect(str.ms).toBeLessThan(3000)
    } finally {
      await Promise.all([down.close(), chatBusy.close()])
    }
  })

  test('short Retry-After waits are honoured only while timeoutMs lasts (generate and embeddings)', async () => {
    const s = await serve((req, res, st) => (req.method === 'POST' ? busy(req, res, st, 1) : undefined))
    try {
      const key = register(s.url, { timeoutMs: 2500 })
      const gen = await timed(getModelLoader().generate(key, 'hi', { maxTokens: 4 }), 8000)
      expect(gen.error && gen.error.code).toBe('REMOTE_ERROR')
      // Retried after 1 s while it fit: at 0, 1 and 2 s; then less than 1 s was left.
      expect(s.busy).toBe(3)
      expect(gen.ms).toBeGreaterThanOrEqual(1900)
      expect(gen.ms).toBeLessThan(3500)

      const client = getSharedEmbeddingClient({
        remote: { url: s.url, model: 'm', timeoutMs: 2500 },
        timeoutMs: 60_000,
      })
      const emb = await timed(client.createEmbedding('never served'), 8000)
      expect(emb.error && emb.error.code).toBe('REMOTE_ERROR')
      expect(emb.ms).toBeLessThan(3500)
    } finally {
      await s.close()
    }
  })
})

describe('sizes', () => {
  const MB200 = 200 << 20
  test('a 200 MB /v1/models or /v1/embeddings reply: REMOTE_PROTOCOL, memory far below the body', async () => {
    const models = await serve((req, res) => (req.url === '/v1/models' ? huge(res, MB200) : undefined))
    const embeddings = await serve((req, res) => (req.url === '/v1/embeddings' ? huge(res, MB200) : undefined))
    try {
      const loaded = await peakGrowth(
        timed(getModelLoader().loadModel(register(models.url, { timeoutMs: 30_000 })), 30_000),
      )
      expect(loaded.growth).toBeLessThan(64 << 20)
      expect(loaded.out.error && loaded.out.error.code).toBe('REMOTE_PROTOCOL')
      expect(loaded.out.error.message).toMatch(/larger than 8 MiB/)

      const client = getSharedEmbeddingClient({
        remote: { url: embeddings.url, model: 'm', timeoutMs: 30_000 },
        timeoutMs: 60_000,
      })
      const embedded = await peakGrowth(timed(client.createEmbedding('a huge reply'), 30_000))
      expect(embedded.growth).toBeLessThan(64 << 20)
      expect(embedded.out.error && embedded.out.error.code).toBe('REMOTE_PROTOCOL')
      expect(embedded.out.error.message).toMatch(/larger than/)
      const [ep] = client.getStats().endpoints
      expect(ep.bytesReceived).toBeLessThan(32 << 20)
    } finally {
      await Promise.all([models.close(), embeddings.close()])
    }
  }, 60_000)

  test('vectors of width 8 then 16 from one server: REMOTE_PROTOCOL', async () => {
    const s = await serve((req, res, st) => {
      if (req.url !== '/v1/embeddings') return
      st.posts = (st.posts || 0) + 1
      const width = st.posts === 1 ? 8 : 16
      const input = JSON.parse(req.body).input
      return json(res, 200, { data: input.map((_, index) => ({ index, embedding: Array(width).fill(0.5) })) })
    })
    try {
      const client = getSharedEmbeddingClient({ remote: { url: s.url, model: 'm' } })
      expect(await client.createEmbedding('first')).toHaveLength(8)
      const e = await expectCode(client.createEmbedding('second'), 'REMOTE_PROTOCOL')
      expect(e.message).toMatch(/16 dimensions/)
      expect(e.message).toMatch(/had 8/)
    } finally {
      await s.close()
    }
  })
})

describe('secrets', () => {
  const KEY = 'sk-hostile-0123456789abcdef'
  const PASSWORD = 'hunter2-Pa55word'
  const basic = Buffer.from(`alice:${PASSWORD}`).toString('base64')

  /** What a server was sent as credentials, in every form it could echo them. */
  function echoed(req) {
    const auth = req.headers.authorization || ''
    const decoded = auth
      .split(/,\s*/)
      .filter((a) => a.startsWith('Basic '))
      .map((a) => Buffer.from(a.slice(6), 'base64').toString())
    return `you sent Authorization: ${auth} (${decoded.join(' ')})`
  }

  function leaks(text) {
    return [KEY, PASSWORD, basic].filter((secret) => text.includes(secret))
  }

  test('a server echoing the Authorization header in a 401 or a streamed error: no key or password in messages, stacks or stats', async () => {
    const s = await serve((req, res, st) => {
      if (req.url === '/v1/models' && st.modelsEcho) {
        return json(res, 401, { error: { code: 401, message: echoed(req) } })
      }
      if (req.url === '/v1/embeddings') return json(res, 401, { error: { code: 401, message: echoed(req) } })
      if (req.url === '/v1/chat/completions') {
        st.chats = (st.chats || 0) + 1
        sse(res)
        // In turn a JSON error event and a piece that is not JSON, each echoing.
        res.end(
          st.chats % 2 === 1
            ? `data: ${JSON.stringify({ error: { code: 401, message: echoed(req) } })}\n\n`
            : `data: <html>${echoed(req)}</html>\n\n`,
        )
        return true
      }
    })
    try {
      const loader = getModelLoader()
      const errors = []
      const withKey = register(s.url, { apiKey: KEY })
      errors.push(await expectCode(loader.generate(withKey, 'hi', { maxTokens: 4 }), 'REMOTE_ERROR'))
      errors.push(await expectCode(loader.generate(withKey, 'hi', { maxTokens: 4 }), 'REMOTE_PROTOCOL'))
      const withPassword = register(`http://alice:${PASSWORD}@127.0.0.1:${s.port}`)
      errors.push(await expectCode(loader.generate(withPassword, 'hi', { maxTokens: 4 }), 'REMOTE_ERROR'))
      const info = await loader.loadModel(withPassword)
      expect(info.path).toBe(s.url)
      s.modelsEcho = true
      errors.push(await expectCode(loader.loadModel(register(s.url, { apiKey: KEY, timeoutMs: 5000 })), 'REMOTE_ERROR'))
      const client = getSharedEmbeddingClient({ remote: { url: s.url, model: 'm', apiKey: `${KEY}` } })
      errors.push(await expectCode(client.createEmbedding('echo'), 'REMOTE_ERROR'))
      const passwordClient = getSharedEmbeddingClient({
        remote: { url: `http://alice:${PASSWORD}@127.0.0.1:${s.port}/v1`, model: 'm' },
      })
      errors.push(await expectCode(passwordClient.createEmbedding('echo'), 'REMOTE_ERROR'))

      const everything = JSON.stringify([
        errors.map((e) => [e.message, e.stack]),
        loader.getStats().remoteModels.map((m) => m.endpoints),
        client.getStats().endpoints,
        passwordClient.getStats().endpoints,
        loader.listModels(),
      ])
      expect(everything).toMatch(/lastError/)
      expect(leaks(everything)).toEqual([])
      // The servers did echo: the messages carry the marker where the secrets were.
      expect(errors.map((e) => e.message).join('\n')).toMatch(/\[redacted\]/)
    } finally {
      await s.close()
    }
  })

  test('a key in the URL query string is sent on every request and never shown, even echoed', async () => {
    const QUERY_KEY = 'qk-hostile-7f3a9c1e'
    const s = await serve((req, res) => {
      const [route, query] = req.url.split('?')
      if (!query?.includes(`api_key=${QUERY_KEY}`)) return json(res, 403, { error: { message: 'no key' } })
      if (route === '/health') return json(res, 200, { status: 'ok' })
      if (route === '/v1/models') return json(res, 200, { data: [{ id: 'm' }] })
      return json(res, 401, { error: { message: `you asked for ${req.url}` } })
    })
    try {
      const loader = getModelLoader()
      const key = register(`${s.url}/v1?api-version=7&api_key=${QUERY_KEY}`)
      const info = await loader.loadModel(key)
      const e = await expectCode(loader.generate(key, 'hi', { maxTokens: 4 }), 'REMOTE_ERROR')
      // The server got the key on both routes (it answered the model list and echoed the chat).
      expect(e.message).toContain('/v1/chat/completions?api-version=7&api_key=[redacted]')
      const everything = JSON.stringify([
        info,
        e.message,
        e.stack,
        loader.getStats().remoteModels.map((m) => m.endpoints),
        loader.listModels(),
      ])
      expect(everything).toContain('api-version=7')
      expect(everything).not.toContain(QUERY_KEY)
    } finally {
      await s.close()
    }
  })
})
