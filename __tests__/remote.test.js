'use strict'
// What only a remote backend has: several servers, failover, busy servers, stalls, keys,
// server-side cancellation. Against real llama-server instances (built from source by
// scripts/llama-server.js and cached), and small local servers on 127.0.0.1 where a real
// one cannot be made to misbehave on cue (a stalled socket, a proxy answering 429 first).
const http = require('node:http')
const net = require('node:net')
const { spawnSync } = require('node:child_process')
const { getSharedEmbeddingClient, getModelLoader } = require('..')
const { cosine, expectCode, expectThrowCode, root } = require('./helpers')
const { GGUF, startServer } = require('./backends')

const QUESTION = [
  { role: 'system', content: 'You are a helpful assistant.' },
  { role: 'user', content: 'What is the capital of France?' },
]
const STORY = [{ role: 'user', content: 'Tell me a very long story about a dragon and a knight.' }]
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function until(cond, ms, what) {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

async function embedDirect(url, input) {
  const r = await fetch(`${url}/v1/embeddings`, { method: 'POST', body: JSON.stringify({ input, model: 'x' }) })
  return (await r.json()).data.map((d) => d.embedding)
}

/** A server that accepts connections and never answers; it counts them and their closes. */
async function stallingServer() {
  const s = { opened: 0, closed: 0 }
  s.server = net.createServer((sock) => {
    s.opened++
    // Read (and drop) the request: a paused socket would never see the client's close.
    sock.resume()
    sock.on('close', () => s.closed++)
    sock.on('error', () => {})
  })
  await new Promise((r) => s.server.listen(0, '127.0.0.1', r))
  s.url = `http://127.0.0.1:${s.server.address().port}`
  s.close = () =>
    new Promise((r) => {
      s.server.close(r)
      // Drop whatever the client still holds open.
      s.server.unref()
    })
  return s
}

/** An HTTP proxy to `target` that first answers `busy` POSTs with the given status. */
async function busyProxy(target, { busy, status, retryAfter }) {
  const p = { posts: 0 }
  p.server = http.createServer((req, res) => {
    if (req.method === 'POST' && p.posts++ < busy) {
      req.resume()
      res.writeHead(status, { 'content-type': 'application/json', 'retry-after': String(retryAfter) })
      return res.end(JSON.stringify({ error: { code: status, message: `busy (${status})` } }))
    }
    const up = http.request(`${target}${req.url}`, { method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, r.headers)
      r.pipe(res)
    })
    up.on('error', () => res.destroy())
    req.pipe(up)
  })
  await new Promise((r) => p.server.listen(0, '127.0.0.1', r))
  p.url = `http://127.0.0.1:${p.server.address().port}`
  p.close = () => new Promise((r) => p.server.close(r))
  return p
}

let chat
let embed
beforeAll(async () => {
  ;[chat, embed] = await Promise.all([
    startServer({ model: GGUF, alias: 'smollm2' }),
    startServer({ model: GGUF, alias: 'smollm2-embed', embeddings: true, parallel: 1 }),
  ])
}, 1_800_000)
afterAll(async () => {
  await Promise.all([chat, embed].filter(Boolean).map((s) => s.stop()))
}, 30_000)

describe('several servers', () => {
  test('two servers, one killed during a 1000-request run: every call settles and the survivor answers', async () => {
    const [a, b] = await Promise.all([
      startServer({ model: GGUF, alias: 'smollm2-embed', embeddings: true, parallel: 1 }),
      startServer({ model: GGUF, alias: 'smollm2-embed', embeddings: true, parallel: 1 }),
    ])
    try {
      const client = getSharedEmbeddingClient({
        remote: { url: [a.url, b.url], model: 'smollm2-embed' },
        timeoutMs: 240_000,
      })
      const texts = Array.from({ length: 1000 }, (_, i) => `failover text ${i}`)
      let answered = 0
      const calls = texts.map((t) =>
        client.createEmbedding(t).then((v) => {
          answered++
          return v
        }),
      )
      await until(() => answered >= 100, 120_000, '100 answers')
      const before = client.getStats().endpoints
      // Both servers took part before one died.
      expect(before.every((e) => e.requests > 0)).toBe(true)
      await a.kill()
      const settled = await Promise.allSettled(calls)
      const failed = settled.filter((s) => s.status === 'rejected')
      expect(failed.map((f) => f.reason.code)).toEqual([])
      settled.forEach((s) => expect(s.value).toHaveLength(576))
      const stats = client.getStats()
      const [ea, eb] = stats.endpoints
      expect(ea.url).toBe(a.url)
      expect(ea.healthy).toBe(false)
      expect(ea.errors).toBeGreaterThan(0)
      expect(ea.lastError).toMatch(/connect|broke off|refused/i)
      expect(eb.healthy).toBe(true)
      expect(eb.requests).toBeGreaterThan(before[1].requests)
      expect(stats.queueDepth).toBe(0)
      // The survivor's answers are the vectors it computes itself.
      const sample = [0, 500, 999]
      const direct = await embedDirect(
        b.url,
        sample.map((i) => texts[i]),
      )
      sample.forEach((i, k) => expect(cosine(settled[i].value, direct[k])).toBeGreaterThan(0.9999))
    } finally {
      await Promise.all([a.stop(), b.stop()])
    }
  }, 300_000)

  test('requests go to the server with the fewest outstanding, and a failed one is probed back in', async () => {
    const a = await startServer({ model: GGUF, alias: 'smollm2-embed', embeddings: true, parallel: 1 })
    let again
    try {
      const client = getSharedEmbeddingClient({ remote: { url: [a.url, embed.url], model: 'smollm2-embed' } })
      await Promise.all(Array.from({ length: 40 }, (_, i) => client.createEmbedding(`spread ${i}`)))
      const spread = client.getStats().endpoints
      expect(spread[0].requests).toBeGreaterThan(0)
      expect(spread[1].requests).toBeGreaterThan(0)
      await a.kill()
      // One at a time, so that the dead server's turn comes: it fails over, and is taken out.
      for (let i = 0; i < 6; i++) expect(await client.createEmbedding(`after kill ${i}`)).toHaveLength(576)
      expect(client.getStats().endpoints[0].healthy).toBe(false)
      // The same address comes back: the background probe brings it back into use.
      again = await startServer({ model: GGUF, alias: 'smollm2-embed', embeddings: true, parallel: 1, port: a.port })
      await until(() => client.getStats().endpoints[0].healthy, 20_000, 'the endpoint to be probed back in')
      const used = client.getStats().endpoints[0].requests
      await Promise.all(Array.from({ length: 20 }, (_, i) => client.createEmbedding(`back again ${i}`)))
      expect(client.getStats().endpoints[0].requests).toBeGreaterThan(used)
    } finally {
      await Promise.all([a.stop(), again && again.stop()])
    }
  }, 120_000)

  test('429 is retried after Retry-After; 503 for ever ends in REMOTE_ERROR', async () => {
    const p429 = await busyProxy(embed.url, { busy: 1, status: 429, retryAfter: 1 })
    const p503 = await busyProxy(embed.url, { busy: 1e9, status: 503, retryAfter: 0 })
    try {
      const client = getSharedEmbeddingClient({ remote: { url: p429.url, model: 'smollm2-embed' } })
      const started = Date.now()
      await expect(client.createEmbedding('retried after a 429')).resolves.toHaveLength(576)
      expect(Date.now() - started).toBeGreaterThanOrEqual(950)
      expect(p429.posts).toBe(2)
      const [ep] = client.getStats().endpoints
      expect(ep.healthy).toBe(true)
      expect(ep.errors).toBe(1)
      const busy = getSharedEmbeddingClient({ remote: { url: p503.url, model: 'smollm2-embed' } })
      const e = await expectCode(busy.createEmbedding('never served'), 'REMOTE_ERROR')
      expect(e.message).toMatch(/503/)
      expect(e.message).toMatch(/busy \(503\)/)
      expect(p503.posts).toBeGreaterThan(1)
    } finally {
      await Promise.all([p429.close(), p503.close()])
    }
  }, 60_000)
})

describe('timeouts, aborts and errors', () => {
  test('a stalled server gives EMBEDDING_TIMEOUT or REMOTE_UNAVAILABLE, and giving up closes the connection', async () => {
    const s = await stallingServer()
    try {
      const client = getSharedEmbeddingClient({ remote: { url: s.url, model: 'm' }, timeoutMs: 300 })
      await expectCode(client.createEmbedding('nobody answers'), 'EMBEDDING_TIMEOUT')
      await until(() => s.opened > 0 && s.closed === s.opened, 2000, 'the connection to be closed')
      // An abort with nobody else waiting cancels the request too.
      const ac = new AbortController()
      const p = client.createEmbedding('aborted while stalled', { signal: ac.signal, timeoutMs: 60_000 })
      await until(() => s.opened > s.closed, 2000, 'a new connection')
      ac.abort()
      await expectCode(p, 'ABORTED')
      await until(() => s.closed === s.opened, 2000, 'the aborted request to close its connection')
      expect(client.getStats().endpoints[0].outstanding).toBe(0)
      const loader = getModelLoader()
      loader.registerModel('stalled', { remote: { url: s.url, model: 'm', timeoutMs: 300 } })
      const e = await expectCode(loader.loadModel('stalled'), 'REMOTE_UNAVAILABLE')
      expect(e.message).toContain('no reply within 300 ms')
    } finally {
      await s.close()
    }
  })

  test('a wrong API key or model gives REMOTE_ERROR, and the key never shows', async () => {
    const keyed = await startServer({ model: GGUF, alias: 'smollm2', apiKey: 'right-key-5678' })
    try {
      const loader = getModelLoader()
      loader.registerModel('keyed-wrong', { remote: { url: keyed.url, model: 'smollm2', apiKey: 'wrong-key-1234' } })
      loader.registerModel('keyed-right', { remote: { url: keyed.url, model: 'smollm2', apiKey: 'right-key-5678' } })
      const e = await expectCode(loader.generate('keyed-wrong', QUESTION, { maxTokens: 8 }), 'REMOTE_ERROR')
      expect(e.message).toMatch(/401/)
      expect(e.message).toMatch(/apiKey/)
      const r = await loader.generate('keyed-right', QUESTION, { temperature: 0, maxTokens: 40 })
      expect(r.text).toMatch(/Paris/)
      const everything = JSON.stringify([e.message, e.stack, loader.getStats(), loader.listModels()])
      expect(everything).not.toContain('wrong-key-1234')
      expect(everything).not.toContain('right-key-5678')

      loader.registerModel('wrong-model', { remote: { url: chat.url, model: 'no-such-model' } })
      const m = await expectCode(loader.loadModel('wrong-model'), 'REMOTE_ERROR')
      expect(m.message).toMatch(/404/)
      expect(m.message).toContain('smollm2')
      const wrongEmbed = getSharedEmbeddingClient({ remote: { url: embed.url, model: 'no-such-model' } })
      await expectCode(wrongEmbed.createEmbedding('x'), 'REMOTE_ERROR')
      // A server that is not there at all.
      const gone = getSharedEmbeddingClient({ remote: { url: 'http://127.0.0.1:9', model: 'm' } })
      const u = await expectCode(gone.createEmbedding('x'), 'REMOTE_UNAVAILABLE')
      expect(u.message).toContain('http://127.0.0.1:9')
    } finally {
      await keyed.stop()
    }
  })

  test('an abort stops the generation on the server', async () => {
    const loader = getModelLoader()
    loader.registerModel('remote-chat', { remote: { url: chat.url, model: 'smollm2' } })
    const slots = async () => (await (await fetch(`${chat.url}/slots`)).json()).filter((s) => s.is_processing).length
    const ac = new AbortController()
    let pieces = 0
    let busyWhileStreaming = null
    const p = loader.generate('remote-chat', STORY, {
      temperature: 0,
      maxTokens: 1500,
      signal: ac.signal,
      onToken: () => {
        if (++pieces === 3) {
          slots().then((n) => {
            busyWhileStreaming = n
            ac.abort()
          })
        }
      },
    })
    await expectCode(p, 'ABORTED')
    expect(busyWhileStreaming).toBe(1)
    await until(async () => (await slots()) === 0, 2000, 'the server to stop generating')
  })

  test("a remote model's schema is held to llama.cpp's keywords unless llguidance is named", async () => {
    const loader = getModelLoader()
    loader.registerModel('remote-chat', { remote: { url: chat.url, model: 'smollm2' } })
    const schema = { type: 'integer', multipleOf: 3, minimum: 0, maximum: 99 }
    // Refused before anything is sent: llama.cpp's server would drop multipleOf in silence.
    const e = await expectCode(
      loader.generate('remote-chat', 'A number?', { jsonSchema: schema }),
      'SCHEMA_UNSUPPORTED',
    )
    expect(e.message).toMatch(/multipleOf/)
    // Named, it goes to the server as is (this one runs llama.cpp, which ignores it).
    const r = await loader.generate('remote-chat', 'A number?', {
      jsonSchema: schema,
      schemaEngine: 'llguidance',
      temperature: 0,
      maxTokens: 8,
    })
    expect(Number.isInteger(r.json)).toBe(true)
  })

  test('with stopOnAbort, an abort resolves with the text streamed so far, and the server stops generating', async () => {
    const loader = getModelLoader()
    loader.registerModel('remote-chat', { remote: { url: chat.url, model: 'smollm2' } })
    const slots = async () => (await (await fetch(`${chat.url}/slots`)).json()).filter((s) => s.is_processing).length
    const ac = new AbortController()
    let streamed = ''
    let pieces = 0
    const r = await loader.generate('remote-chat', STORY, {
      temperature: 0,
      maxTokens: 1500,
      signal: ac.signal,
      stopOnAbort: true,
      onToken: (t) => {
        streamed += t
        if (++pieces === 3) ac.abort()
      },
    })
    expect(r.finishReason).toBe('abort')
    expect(r.text).toBe(streamed)
    expect(pieces).toBeGreaterThanOrEqual(3)
    await until(async () => (await slots()) === 0, 2000, 'the server to stop generating')
  })

  test('a generation that already streamed text fails with REMOTE_UNAVAILABLE when its server dies, and is not restarted', async () => {
    const [v1, v2] = await Promise.all([
      startServer({ model: GGUF, alias: 'smollm2' }),
      startServer({ model: GGUF, alias: 'smollm2' }),
    ])
    try {
      const loader = getModelLoader()
      loader.registerModel('victims', { remote: { url: [v1.url, v2.url], model: 'smollm2' } })
      await loader.loadModel('victims')
      const requests = () => loader.getStats().remoteModels.find((m) => m.key === 'victims').endpoints
      const before = requests().map((e) => e.requests)
      let pieces = 0
      const p = loader.generate('victims', STORY, {
        temperature: 0,
        maxTokens: 1500,
        onToken: () => {
          if (++pieces === 3) {
            const serving = requests().findIndex((e) => e.outstanding === 1)
            ;[v1, v2][serving].kill()
          }
        },
      })
      const e = await expectCode(p, 'REMOTE_UNAVAILABLE')
      expect(e.message).toContain('not restarted')
      expect(pieces).toBeGreaterThanOrEqual(3)
      // One request in all: nothing was sent to the other server.
      const after = requests().map((x) => x.requests)
      expect(after[0] + after[1]).toBe(before[0] + before[1] + 1)
    } finally {
      await Promise.all([v1.stop(), v2.stop()])
    }
  })
})

describe('https', () => {
  // A certificate authority of the test's own, trusted through SSL_CERT_FILE (as a
  // company's CA would be through the system store), and an https proxy in front of the
  // embedding server with a certificate it signed for 127.0.0.1.
  test('an https server is reached through rustls when its CA is trusted, and refused when not', async () => {
    const fs = require('node:fs')
    const os = require('node:os')
    const path = require('node:path')
    const https = require('node:https')
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-tls-'))
    const openssl = (...args) => {
      const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' })
      if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`)
    }
    openssl(
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=orion test CA',
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
    )
    openssl(
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      '/CN=127.0.0.1',
      '-keyout',
      'server.key',
      '-out',
      'server.csr',
    )
    fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n')
    openssl(
      'x509',
      '-req',
      '-in',
      'server.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      'ext.cnf',
      '-out',
      'server.pem',
    )
    const server = https.createServer(
      { key: fs.readFileSync(path.join(dir, 'server.key')), cert: fs.readFileSync(path.join(dir, 'server.pem')) },
      (req, res) => {
        const up = http.request(`${embed.url}${req.url}`, { method: req.method, headers: req.headers }, (r) => {
          res.writeHead(r.statusCode, r.headers)
          r.pipe(res)
        })
        up.on('error', () => res.destroy())
        req.pipe(up)
      },
    )
    await new Promise((r) => server.listen(0, '127.0.0.1', r))
    const url = `https://127.0.0.1:${server.address().port}`
    try {
      const script = `
        const { getSharedEmbeddingClient } = require(${JSON.stringify(root)})
        getSharedEmbeddingClient({ remote: { url: ${JSON.stringify(url)}, model: 'smollm2-embed' } })
          .createEmbedding('over TLS')
          .then((v) => console.log(JSON.stringify({ n: v.length })), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })))`
      // Asynchronous: the proxy runs on this process's event loop.
      const run = (env) =>
        new Promise((resolve) => {
          const { execFile } = require('node:child_process')
          execFile(
            process.execPath,
            ['-e', script],
            { env: { ...process.env, ...env }, timeout: 60_000 },
            (_e, stdout) => resolve(JSON.parse(stdout)),
          )
        })
      expect(await run({ SSL_CERT_FILE: path.join(dir, 'ca.pem') })).toEqual({ n: 576 })
      const refused = await run({ SSL_CERT_FILE: path.join(dir, 'server.csr') })
      expect(refused.code).toBe('REMOTE_UNAVAILABLE')
      expect(refused.message).toMatch(/certificate|UnknownIssuer/i)
    } finally {
      await new Promise((r) => server.close(r))
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('dimensions', () => {
  /**
   * A proxy to the embedding server that records each request's `dimensions`; with `honour`
   * it answers as OpenAI's API does, each vector cut to that many values and renormalised.
   */
  async function dimensionsProxy(target, { honour }) {
    const p = { asked: [] }
    p.server = http.createServer(async (req, res) => {
      try {
        const chunks = []
        for await (const c of req) chunks.push(c)
        const body = Buffer.concat(chunks)
        const post = req.method === 'POST'
        if (post) p.asked.push(JSON.parse(body).dimensions)
        const up = await fetch(`${target}${req.url}`, { method: req.method, body: post ? body : undefined })
        let reply = Buffer.from(await up.arrayBuffer())
        const d = post && honour ? JSON.parse(body).dimensions : undefined
        if (d && up.ok) {
          const json = JSON.parse(reply)
          for (const item of json.data) {
            const head = item.embedding.slice(0, d)
            const norm = Math.hypot(...head)
            item.embedding = head.map((x) => x / norm)
          }
          reply = Buffer.from(JSON.stringify(json))
        }
        res.writeHead(up.status, { 'content-type': 'application/json' })
        res.end(reply)
      } catch (e) {
        console.log(`dimensions proxy: ${req.method} ${req.url}: ${e.cause?.message ?? e.message}`)
        res.destroy()
      }
    })
    await new Promise((r) => p.server.listen(0, '127.0.0.1', r))
    p.url = `http://127.0.0.1:${p.server.address().port}`
    // Its connections closed too: the client keeps one alive, and probes a server that
    // sent a bad reply.
    p.close = () =>
      new Promise((r) => {
        p.server.close(r)
        p.server.closeAllConnections()
      })
    return p
  }

  test('remote.dimensions is asked of the servers; whole vectors that come back are cut here', async () => {
    const texts = ['dimensions one', 'dimensions two', 'dimensions three']
    const whole = await embedDirect(embed.url, texts)
    const cutHere = whole.map((v) => {
      const head = v.slice(0, 64)
      const norm = Math.hypot(...head)
      return head.map((x) => x / norm)
    })
    for (const honour of [false, true]) {
      const proxy = await dimensionsProxy(embed.url, { honour })
      try {
        const client = getSharedEmbeddingClient({ remote: { url: proxy.url, model: 'smollm2-embed', dimensions: 64 } })
        const vectors = await client.createEmbeddings(texts)
        // llama.cpp's server ignores the field (whole vectors, cut here); the honouring
        // proxy cuts them itself: the same vectors either way.
        expect(proxy.asked).toEqual([64])
        vectors.forEach((v, i) => {
          expect(v).toHaveLength(64)
          expect(cosine(v, cutHere[i])).toBeGreaterThan(0.9999)
        })
        // A call may cut them further, not widen them.
        expect(await client.createEmbedding('dimensions one', { dimensions: 32 })).toHaveLength(32)
        await expectCode(client.createEmbedding('dimensions one', { dimensions: 128 }), 'INVALID_OPTION')
        // Without the option: another service, whole vectors, no field sent.
        const plain = getSharedEmbeddingClient({ remote: { url: proxy.url, model: 'smollm2-embed' } })
        expect(await plain.createEmbedding('dimensions four')).toHaveLength(576)
        expect(proxy.asked.at(-1)).toBeUndefined()
      } finally {
        await proxy.close()
      }
    }
    // Wider than the model: the server's vectors are narrower than asked.
    const proxy = await dimensionsProxy(embed.url, { honour: false })
    try {
      const wide = getSharedEmbeddingClient({ remote: { url: proxy.url, model: 'smollm2-embed', dimensions: 4096 } })
      const e = await expectCode(wide.createEmbedding('too wide'), 'REMOTE_PROTOCOL')
      expect(e.message).toMatch(/576 values, where 4096 were asked for/)
    } finally {
      await proxy.close()
    }
    expectThrowCode(
      () => getSharedEmbeddingClient({ remote: { url: embed.url, model: 'm', dimensions: 0 } }),
      'INVALID_OPTION',
    )
  })
})

describe('configuration', () => {
  test('bad remote options are INVALID_OPTION', () => {
    for (const remote of [
      { url: 'ftp://x', model: 'm' },
      { url: [], model: 'm' },
      { url: 'not a url', model: 'm' },
      { url: 5, model: 'm' },
      { url: 'http://x', model: '' },
      { url: 'http://x', model: 'm', extra: 1 },
      { url: 'http://x', model: 'm', timeoutMs: 0 },
      { url: 'http://x' },
    ])
      expectThrowCode(() => getSharedEmbeddingClient({ remote }), 'INVALID_OPTION')
    const loader = getModelLoader()
    expectThrowCode(
      () =>
        loader.registerModel('both', { files: { q4: { path: 'x.gguf' } }, remote: { url: 'http://x', model: 'm' } }),
      'INVALID_OPTION',
    )
    expectThrowCode(() => loader.registerModel('neither', {}), 'INVALID_OPTION')
  })

  test('ORION_REMOTE_EMBEDDINGS_URL and _MODEL give code that passes no options a remote client', () => {
    const script = `
      const { getSharedEmbeddingClient } = require(${JSON.stringify(root)})
      getSharedEmbeddingClient().createEmbedding('from the environment').then((v) => {
        const s = getSharedEmbeddingClient().getStats()
        console.log(JSON.stringify({ n: v.length, model: s.model, url: s.endpoints[0].url }))
      }, (e) => console.log(JSON.stringify({ code: e.code })))`
    const run = (env) =>
      spawnSync(process.execPath, ['-e', script], {
        env: { ...process.env, ...env },
        encoding: 'utf8',
        timeout: 60_000,
      })
    const ok = run({ ORION_REMOTE_EMBEDDINGS_URL: embed.url, ORION_REMOTE_EMBEDDINGS_MODEL: 'smollm2-embed' })
    expect(ok.status).toBe(0)
    expect(JSON.parse(ok.stdout)).toEqual({ n: 576, model: 'smollm2-embed', url: embed.url })
    const half = spawnSync(
      process.execPath,
      ['-e', `try { require(${JSON.stringify(root)}).getSharedEmbeddingClient() } catch (e) { console.log(e.code) }`],
      { env: { ...process.env, ORION_REMOTE_EMBEDDINGS_URL: embed.url }, encoding: 'utf8' },
    )
    expect(half.stdout.trim()).toBe('INVALID_OPTION')
  })

  test('a process that exits while remote requests stream exits cleanly', () => {
    const script = `
      const { getModelLoader, getSharedEmbeddingClient } = require(${JSON.stringify(root)})
      const loader = getModelLoader()
      loader.registerModel('r', { remote: { url: ${JSON.stringify(chat.url)}, model: 'smollm2' } })
      const client = getSharedEmbeddingClient({ remote: { url: ${JSON.stringify(embed.url)}, model: 'smollm2-embed' } })
      client.createEmbeddings(Array.from({ length: 64 }, (_, i) => 'at exit ' + i)).catch(() => {})
      let n = 0
      loader.generate('r', ${JSON.stringify(STORY)}, { maxTokens: 500, onToken: () => { if (++n === 2) process.exit(0) } })`
    for (let i = 0; i < 3; i++) {
      const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 })
      expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status: 0, signal: null, stderr: '' })
    }
  })
})
