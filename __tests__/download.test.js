'use strict'
// Model downloads, end to end through loadModel, against a local server on 127.0.0.1
// that serves the Hugging Face hub's file layout: `/<repo>/resolve/main/<file>`
// redirecting to a CDN path that answers with an ETag and honours Range requests. The
// file is the demo GGUF. Each case runs in its own process with ORION_HF_ENDPOINT set.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const http = require('node:http')
const crypto = require('node:crypto')
const { spawn } = require('node:child_process')
const { root, llmModelDir, embeddingModelDir, cosine } = require('./helpers')
const { honest: serveHonestly } = require('./hostile/servers')

const GGUF = path.join(llmModelDir, 'SmolLM2-135M-Instruct.Q4_1.gguf')
// The catalog's GGUF embedding models and rerankers, served as the default model's GGUF
// twins (scripts/gguf-twin.js) where those can be made.
const twins = require('../scripts/gguf-twin')
const TWINS = twins.missing() ? null : twins.ensure()
const GGUF_CATALOG = require('../src/store/catalog.json').gguf
const SHA = 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53'
const SIZE = fs.statSync(GGUF).size
let server, port, tmp
let mode = 'normal'
let log = []
// Hostile servers: `/hostile/...` is answered by this function, set by each test.
let hostile = null

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-dl-'))
  server = http.createServer((req, res) => {
    log.push({ url: req.url, range: req.headers.range })
    if (req.url.startsWith('/hostile/')) return hostile(req, res)
    const hub = /^\/([^/]+\/[^/]+)\/resolve\/main\/(.+)$/.exec(req.url)
    // The embedding catalog's repository, served with the default model's files.
    if (hub && hub[1] === 'Xenova/bge-small-en-v1.5') {
      const local = { 'onnx/model_quantized.onnx': 'model.onnx' }[hub[2]] || hub[2]
      const file = path.join(embeddingModelDir, local)
      if (!fs.existsSync(file)) return res.writeHead(404).end()
      res.writeHead(200, { 'content-length': fs.statSync(file).size })
      return fs.createReadStream(file).pipe(res)
    }
    const entry = hub && Object.values(GGUF_CATALOG).find((e) => e.hubRepo === hub[1] && e.hubFile === hub[2])
    if (entry && TWINS) {
      const file = entry.kind === 'reranker' ? TWINS.rerank : TWINS.q8_0
      res.writeHead(200, { 'content-length': fs.statSync(file).size })
      return fs.createReadStream(file).pipe(res)
    }
    if (hub) {
      if (hub[2] !== 'SmolLM2.Q4_1.gguf') return res.writeHead(404).end('Entry not found')
      return res.writeHead(302, { location: `/cdn/${hub[1]}/${hub[2]}` }).end()
    }
    if (!req.url.startsWith('/cdn/')) return res.writeHead(404).end()
    const range = /^bytes=(\d+)-$/.exec(req.headers.range || '')
    const start = range ? Number(range[1]) : 0
    const headers = { etag: `"${SHA}"`, 'accept-ranges': 'bytes', 'content-length': SIZE - start }
    if (range) headers['content-range'] = `bytes ${start}-${SIZE - 1}/${SIZE}`
    res.writeHead(range ? 206 : 200, headers)
    const stream = fs.createReadStream(GGUF, { start })
    if (mode === 'slow') {
      // 64 KiB every 20 ms: a download that takes a while.
      stream.pause()
      const timer = setInterval(() => {
        const chunk = stream.read(65536)
        if (chunk) res.write(chunk)
        else if (stream.readableEnded) {
          clearInterval(timer)
          res.end()
        }
      }, 20)
      res.on('close', () => clearInterval(timer))
      stream.on('end', () => {})
      return
    }
    if (mode === 'drop' || mode === 'stall') {
      // Send 40 % of the file, then drop the connection (or stop sending).
      let sent = 0
      stream.on('data', (chunk) => {
        sent += chunk.length
        if (sent > SIZE * 0.4) {
          stream.destroy()
          if (mode === 'drop') res.socket.destroy()
          return
        }
        res.write(chunk)
      })
      return
    }
    stream.pipe(res)
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  port = server.address().port
})

afterAll(() => {
  server.closeAllConnections?.()
  server.close()
  fs.rmSync(tmp, { recursive: true, force: true })
})

function load(models, file, extra = {}, generate = false, endpoint = `http://127.0.0.1:${port}`, abortAt = '') {
  const descriptor = {
    files: {
      q4: {
        path: `dl/${file}`,
        hubRepo: 'test-org/SmolLM2-GGUF',
        hubFile: 'SmolLM2.Q4_1.gguf',
        sha256: SHA,
        size: SIZE,
        ...extra,
      },
    },
  }
  const env = {
    ...process.env,
    ORION_MODELS_DIR: models,
    ORION_HF_ENDPOINT: endpoint,
    ORION_DOWNLOAD_TIMEOUT_MS: '1000',
    // Downloads happen only when asked for: these tests ask.
    ORION_ALLOW_DOWNLOADS: '1',
  }
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        path.join(__dirname, 'download', 'load.js'),
        root,
        JSON.stringify(descriptor),
        generate ? '1' : '',
        String(abortAt),
      ],
      { env },
    )
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`exit ${code}: ${err}`))))
  })
}

/** Run `script` with the models directory and the local hub (downloads allowed unless
 * `env` says otherwise); its stdout is JSON. */
function runScript(script, models, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script], {
      env: {
        ...process.env,
        ORION_MODELS_DIR: models,
        ORION_HF_ENDPOINT: `http://127.0.0.1:${port}`,
        ORION_ALLOW_DOWNLOADS: '1',
        ...env,
      },
    })
    let text = ''
    child.stdout.on('data', (d) => (text += d))
    child.on('close', () => {
      try {
        resolve(JSON.parse(text))
      } catch (e) {
        reject(e)
      }
    })
  })
}

const fresh = (name) => {
  const dir = path.join(tmp, name)
  fs.mkdirSync(dir)
  log = []
  mode = 'normal'
  return dir
}

test('a model that is not on disk downloads with progress, verifies, loads and answers', async () => {
  const models = fresh('fresh')
  const out = await load(models, 'model.gguf', {}, true)
  expect(out.ok).toBe(true)
  expect(out.path).toBe(path.join(models, 'dl', 'model.gguf'))
  expect(out.text).toMatch(/Paris/)
  // Download 0-90, load 90-100: integers, never decreasing, ending at 100.
  expect(out.progress.some((p) => p > 0 && p < 90)).toBe(true)
  expect(out.progress.at(-1)).toBe(100)
  out.progress.forEach((p, i) => i && expect(p).toBeGreaterThanOrEqual(out.progress[i - 1]))
  expect(log.map((r) => r.url)).toEqual([
    '/test-org/SmolLM2-GGUF/resolve/main/SmolLM2.Q4_1.gguf',
    '/cdn/test-org/SmolLM2-GGUF/SmolLM2.Q4_1.gguf',
  ])
  expect(fs.readdirSync(path.join(models, 'dl'))).toEqual(['model.gguf'])
  // On disk now: the next load downloads nothing.
  log = []
  expect((await load(models, 'model.gguf')).ok).toBe(true)
  expect(log).toEqual([])
})

test('a download cut off half-way resumes with a Range request', async () => {
  const models = fresh('resume')
  mode = 'drop'
  const first = await load(models, 'model.gguf')
  expect(first.ok).toBe(false)
  expect(first.code).toBe('MODEL_NOT_FOUND')
  expect(first.message).toMatch(/interrupted|got \d+ of/)
  const part = fs.statSync(path.join(models, 'dl', 'model.gguf.part')).size
  expect(part).toBeGreaterThan(SIZE * 0.3)
  mode = 'normal'
  log = []
  const second = await load(models, 'model.gguf')
  expect(second.ok).toBe(true)
  expect(log.find((r) => r.url.startsWith('/cdn/')).range).toBe(`bytes=${part}-`)
  expect(fs.readdirSync(path.join(models, 'dl'))).toEqual(['model.gguf'])
})

test('a checksum mismatch is MODEL_LOAD_FAILED naming both digests, and the part is removed', async () => {
  const models = fresh('mismatch')
  const wrong = 'cd'.repeat(32)
  const out = await load(models, 'model.gguf', { sha256: wrong })
  expect(out.code).toBe('MODEL_LOAD_FAILED')
  expect(out.message).toContain(wrong)
  expect(out.message).toContain(SHA)
  // Nothing left behind: no part, and not even the directory made for it.
  expect(fs.existsSync(path.join(models, 'dl'))).toBe(false)
})

test('a file the hub does not have is MODEL_NOT_FOUND with the 404', async () => {
  const models = fresh('missing')
  const out = await load(models, 'model.gguf', { hubFile: 'nope.gguf' })
  expect(out.code).toBe('MODEL_NOT_FOUND')
  expect(out.message).toMatch(/HTTP 404/)
  expect(out.message).toContain(path.join(models, 'dl'))
})

test('a server that stalls fails the download after the timeout, keeping the part to resume', async () => {
  const models = fresh('stall')
  mode = 'stall'
  const t = Date.now()
  const out = await load(models, 'model.gguf')
  expect(out.code).toBe('MODEL_NOT_FOUND')
  expect(Date.now() - t).toBeLessThan(15_000)
  expect(fs.existsSync(path.join(models, 'dl', 'model.gguf.part'))).toBe(true)
})

test('offline, a model neither on disk nor downloadable is MODEL_NOT_FOUND naming the file and where to put it', async () => {
  const models = fresh('offline')
  // A port nothing listens on.
  const probe = http.createServer()
  await new Promise((r) => probe.listen(0, '127.0.0.1', r))
  const closed = probe.address().port
  await new Promise((r) => probe.close(r))
  // A mirror with credentials: they never appear in the message.
  const out = await load(models, 'model.gguf', {}, false, `http://mirror-user:hunter22pw@127.0.0.1:${closed}`)
  expect(out.code).toBe('MODEL_NOT_FOUND')
  expect(out.message).toContain(`http://127.0.0.1:${closed}/`)
  expect(out.message).not.toMatch(/hunter22pw|mirror-user/)
  expect(out.message).toContain('model.gguf')
  expect(out.message).toContain(path.join(models, 'dl'))
})

test('a model too big for this machine is INSUFFICIENT_MEMORY before any byte is downloaded', async () => {
  const models = fresh('too-big')
  const out = await load(models, 'model.gguf', { size: 1e15 })
  expect(out.code).toBe('INSUFFICIENT_MEMORY')
  expect(log).toEqual([])
})

test('two processes loading the same missing model download it once', async () => {
  const models = fresh('dedup')
  const [a, b] = await Promise.all([load(models, 'model.gguf'), load(models, 'model.gguf')])
  expect(a.ok).toBe(true)
  expect(b.ok).toBe(true)
  expect(log.filter((r) => r.url.startsWith('/cdn/'))).toHaveLength(1)
})

test("the app's WebLLM ids resolve through the catalog: offline, a clear MODEL_NOT_FOUND", async () => {
  const models = fresh('catalog')
  const script = `
    const { getModelLoader, applyQuantization } = require(${JSON.stringify(root)})
    const id = applyQuantization('Mistral-7B-Instruct-v0.2', 'q4')
    const loader = getModelLoader()
    const listed = loader.listModels().map((m) => m.key)
    loader.loadModel(id).then(
      () => console.log(JSON.stringify({ ok: true })),
      (e) => console.log(JSON.stringify({ id, listed, code: e.code, message: e.message })),
    )`
  const out = await runScript(script, models)
  expect(out.id).toBe('Mistral-7B-Instruct-v0.2-q4f16_1-MLC')
  expect(out.listed).toEqual(
    expect.arrayContaining(['demo', 'Mistral-7B-Instruct-v0.2', 'Llama-3.2-1B-Instruct', 'Qwen2.5-0.5B-Instruct']),
  )
  expect(out.code).toBe('MODEL_NOT_FOUND')
  expect(out.message).toContain('mistral-7b-instruct-v0.2.Q4_K_M.gguf')
  expect(out.message).toContain(path.join(models, 'Mistral-7B-Instruct-v0.2'))
  expect(out.message).toMatch(/HTTP 404/)
  expect(out.message).toContain('npx orion-native models pull Mistral-7B-Instruct-v0.2-q4f16_1-MLC')
  // The hub's layout was asked for the catalog's repository and file.
  expect(log.map((r) => r.url)).toContain(
    '/TheBloke/Mistral-7B-Instruct-v0.2-GGUF/resolve/main/mistral-7b-instruct-v0.2.Q4_K_M.gguf',
  )
})

test('npx orion-native models pull downloads a registry model the way loadModel does', () => {
  const models = fresh('pull')
  const registry = path.join(models, 'registry.json')
  fs.writeFileSync(
    registry,
    JSON.stringify({
      'pulled-model': {
        files: {
          q4: {
            path: 'pulled/model.gguf',
            hubRepo: 'test-org/SmolLM2-GGUF',
            hubFile: 'SmolLM2.Q4_1.gguf',
            sha256: SHA,
            size: SIZE,
          },
        },
      },
    }),
  )
  const env = {
    ...process.env,
    ORION_MODELS_DIR: models,
    ORION_MODEL_REGISTRY: registry,
    ORION_HF_ENDPOINT: `http://127.0.0.1:${port}`,
  }
  const cli = path.join(root, 'bin', 'orion-native.js')
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, 'models', 'pull', 'pulled-model'], { env })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.on('close', (code) => {
      try {
        expect(code).toBe(0)
        // Downloaded, not loaded; the label is what the file holds (a Q4_1 file registered as q4).
        expect(out).toContain(`pulled-model: downloaded to ${path.join(models, 'pulled', 'model.gguf')} (`)
        expect(out).toContain(', Q4_1)')
        expect(fs.statSync(path.join(models, 'pulled', 'model.gguf')).size).toBe(SIZE)
        resolve()
      } catch (e) {
        reject(e)
      }
    })
  }).then(
    () =>
      new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [cli, 'models', 'pull', 'no-such-model'], { env })
        let err = ''
        child.stderr.on('data', (d) => (err += d))
        child.on('close', (code, signal) => {
          try {
            expect({ code, signal }).toEqual({ code: 1, signal: null })
            expect(err).toMatch(/UNKNOWN_MODEL/)
            resolve()
          } catch (e) {
            reject(e)
          }
        })
      }),
  )
})

test("the load's AbortSignal stops its download, which the next load resumes", async () => {
  const models = fresh('abort')
  mode = 'slow'
  const t = Date.now()
  const first = await load(models, 'model.gguf', {}, false, undefined, 5)
  expect(first.ok).toBe(false)
  expect(first.code).toBe('ABORTED')
  expect(Date.now() - t).toBeLessThan(10_000)
  const part = fs.statSync(path.join(models, 'dl', 'model.gguf.part')).size
  expect(part).toBeGreaterThan(0)
  expect(part).toBeLessThan(SIZE)
  mode = 'normal'
  log = []
  const second = await load(models, 'model.gguf')
  expect(second.ok).toBe(true)
  expect(log.find((r) => r.url.startsWith('/cdn/')).range).toMatch(/^bytes=\d+-$/)
})

test('an embedding model of the catalog downloads its ONNX and tokenizer files and pools as the catalog says', async () => {
  const models = fresh('embedding')
  // The catalog has no digests for these files: without the opt-in, nothing is fetched.
  const refused = await runScript(
    `require(${JSON.stringify(root)}).getSharedEmbeddingClient({ model: 'bge-small-en-v1.5' }).createEmbedding('x')
      .then(() => console.log('{}'), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })))`,
    models,
  )
  expect(refused.code).toBe('MODEL_NOT_FOUND')
  expect(refused.message).toContain('ORION_ALLOW_UNVERIFIED_DOWNLOADS=1')
  expect(log.filter((r) => r.url.includes('bge-small'))).toEqual([])
  const script = `
    const { getSharedEmbeddingClient } = require(${JSON.stringify(root)})
    Promise.all([
      getSharedEmbeddingClient({ model: 'bge-small-en-v1.5' }).createEmbedding('Paris is the capital of France.'),
      getSharedEmbeddingClient({ modelPath: ${JSON.stringify(embeddingModelDir)} }).createEmbedding('Paris is the capital of France.'),
    ]).then(([cls, mean]) => console.log(JSON.stringify({ cls, mean })), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })))`
  const out = await runScript(script, models, { ORION_ALLOW_UNVERIFIED_DOWNLOADS: '1' })
  expect(out.code).toBeUndefined()
  expect(out.cls).toHaveLength(384)
  // The same weights pooled over [CLS] instead of the mean: a different vector.
  expect(cosine(out.cls, out.mean)).toBeLessThan(0.99)
  expect(fs.readdirSync(path.join(models, 'bge-small-en-v1.5')).sort()).toEqual([
    'config.json',
    'model.onnx',
    'special_tokens_map.json',
    'tokenizer.json',
    'tokenizer_config.json',
  ])
  expect(log.map((r) => r.url)).toContain('/Xenova/bge-small-en-v1.5/resolve/main/onnx/model_quantized.onnx')
})

;(TWINS ? test : test.skip)(
  "the catalog's GGUF embedding models and rerankers download their file on first use, as the catalog says",
  async () => {
    const models = fresh('gguf-catalog')
    const [embedId, embed] = Object.entries(GGUF_CATALOG).find(([, e]) => e.kind === 'embedding')
    const [rerankId, rerank] = Object.entries(GGUF_CATALOG).find(([, e]) => e.kind === 'reranker')
    const script = `
      const o = require(${JSON.stringify(root)})
      const settle = (p) => p.then((v) => ({ ok: v }), (e) => ({ code: e.code, message: e.message }))
      ;(async () => {
        const e = o.getSharedEmbeddingClient({ model: ${JSON.stringify(embedId)} })
        const r = o.getSharedReranker({ model: ${JSON.stringify(rerankId)} })
        const embedding = await settle(e.createEmbedding('hello'))
        const ranking = await settle(r.rerank('q', ['a', 'b']))
        console.log(JSON.stringify({ embedding, ranking, stats: e.getStats(), rstats: r.getStats() }))
      })()`
    // Downloads off: nothing leaves, and the error names the file and where it comes from.
    const off = await runScript(script, models, { ORION_ALLOW_DOWNLOADS: '' })
    expect(off.embedding.code).toBe('DOWNLOAD_REQUIRED')
    expect(off.embedding.message).toContain(embed.hubFile)
    expect(off.ranking.code).toBe('DOWNLOAD_REQUIRED')
    expect(log).toEqual([])
    // Allowed: the twin served for them is not the catalog's file, whose sha256 the
    // download is checked against: refused, and nothing is kept.
    const on = await runScript(script, models)
    for (const [result, entry, id] of [
      [on.embedding, embed, embedId],
      [on.ranking, rerank, rerankId],
    ]) {
      expect(entry.sha256).toMatch(/^[0-9a-f]{64}$/)
      expect(log.map((r) => r.url)).toContain(`/${entry.hubRepo}/resolve/main/${entry.hubFile}`)
      expect(result.code).toBe('MODEL_NOT_FOUND')
      // Its size (where the catalog gives one) or its sha256 give it away.
      expect(result.message).toMatch(/sha256 .* expected|the registry says/)
      expect(fs.existsSync(path.join(models, id, entry.hubFile))).toBe(false)
    }
    // A file put in place by hand is used as it is, with no request, and the model's
    // family (prefixes, dimensions) comes from the catalog's name.
    for (const [entry, id, twin] of [
      [embed, embedId, TWINS.q8_0],
      [rerank, rerankId, TWINS.rerank],
    ]) {
      fs.mkdirSync(path.join(models, id), { recursive: true })
      fs.copyFileSync(twin, path.join(models, id, entry.hubFile))
    }
    log = []
    const placed = await runScript(script, models, { ORION_ALLOW_DOWNLOADS: '' })
    expect(log).toEqual([])
    expect(placed.embedding.ok).toHaveLength(384)
    expect(placed.stats).toMatchObject({ engine: 'llama', model: embedId, modelLoads: 1 })
    expect(placed.stats.family).toBeTruthy()
    expect(placed.ranking.ok).toHaveLength(2)
    expect(placed.rstats).toMatchObject({ engine: 'llama', model: rerankId })
  },
)

test('nothing is downloaded unless asked: DOWNLOAD_REQUIRED names the command and the option, and no request leaves', async () => {
  const models = fresh('not-asked')
  const registry = JSON.stringify({
    'hub-model': {
      kind: 'llm',
      files: { q4: { hubRepo: 'test-org/SmolLM2-GGUF', hubFile: 'SmolLM2.Q4_1.gguf', size: SIZE } },
    },
  })
  const script = `
    const o = require(${JSON.stringify(root)})
    const settle = (p) => p.then(() => ({ ok: true }), (e) => ({ code: e.code, message: e.message }))
    ;(async () => {
      const before = o.configure().allowDownloads
      o.getModelLoader().registerModel('hub-model', JSON.parse(${JSON.stringify(registry)})['hub-model'])
      const llm = await settle(o.getModelLoader().loadModel('hub-model'))
      const embedding = await settle(o.getSharedEmbeddingClient({ model: 'bge-small-en-v1.5' }).createEmbedding('x'))
      console.log(JSON.stringify({ before, llm, embedding }))
    })()`
  const out = await runScript(script, models, { ORION_ALLOW_DOWNLOADS: '' })
  expect(out.before).toBe(false)
  for (const r of [out.llm, out.embedding]) {
    expect(r.code).toBe('DOWNLOAD_REQUIRED')
    expect(r.message).toContain('npx orion-native models pull')
    expect(r.message).toContain('allowDownloads')
    expect(r.message).toContain('ORION_ALLOW_DOWNLOADS=1')
  }
  expect(out.llm.message).toContain('hub-model')
  expect(out.embedding.message).toContain('bge-small-en-v1.5')
  expect(log).toEqual([])
  expect(fs.readdirSync(models)).toEqual([])
  // Asked for from code, the same process downloads.
  const asked = await runScript(
    `const o = require(${JSON.stringify(root)})
    o.configure({ allowDownloads: true })
    o.getSharedEmbeddingClient({ model: 'bge-small-en-v1.5' }).createEmbedding('x')
      .then((v) => console.log(JSON.stringify({ length: v.length, allowed: o.configure().allowDownloads })), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })))`,
    models,
    // The catalog has no digests for these files (see the catalog test above).
    { ORION_ALLOW_DOWNLOADS: '', ORION_ALLOW_UNVERIFIED_DOWNLOADS: '1' },
  )
  expect(asked).toEqual({ length: 384, allowed: true })
  expect(log.map((r) => r.url)).toContain('/Xenova/bge-small-en-v1.5/resolve/main/onnx/model_quantized.onnx')
})

// The hostile cases serve a small file of their own: the GGUF magic and 3 MB of random
// bytes. It downloads like a model; loading it then fails on its header
// (MODEL_LOAD_FAILED), so these tests judge the download by the file it left on disk.
const SMALL = Buffer.concat([Buffer.from('GGUF'), crypto.randomBytes(3 << 20)])
const SMALL_SHA = crypto.createHash('sha256').update(SMALL).digest('hex')
const sha = (file) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex')
const HUB = { hubRepo: 'hostile/any', hubFile: 'small.gguf' }

/** Answer as an honest server would: the file, or the range asked for. */
const honest = (req, res, body = SMALL) => serveHonestly(req, res, body)

/** Load a model registered as `file` in a process of its own; a hung one is killed. */
function loadFile(models, file, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [path.join(__dirname, 'download', 'load.js'), root, JSON.stringify({ files: { q4: file } })],
      {
        env: {
          ...process.env,
          ORION_MODELS_DIR: models,
          ORION_HF_ENDPOINT: `http://127.0.0.1:${port}`,
          ORION_DOWNLOAD_TIMEOUT_MS: '1000',
          // Most of these files have no digest: the other checks are what is tested.
          ORION_ALLOW_UNVERIFIED_DOWNLOADS: '1',
          ORION_ALLOW_DOWNLOADS: '1',
          ...env,
        },
      },
    )
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      if (signal === 'SIGKILL') return resolve({ ok: false, code: 'HUNG' })
      code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`exit ${code} (signal ${signal}): ${err}`))
    })
  })
}

/** The models directory of a hostile case, with a part already there when given. */
function withPart(name, part) {
  const models = fresh(name)
  if (part) {
    fs.mkdirSync(path.join(models, 'dl'))
    fs.writeFileSync(path.join(models, 'dl', 'small.gguf.part'), part)
  }
  return models
}
const inPlace = (models) => path.join(models, 'dl', 'small.gguf')

describe('a hostile or broken server cannot corrupt the download', () => {
  let rangeCase = 0
  test.each([
    ['no digest, a 206 that starts at 0', {}, (start) => `bytes 0-${SMALL.length - 1}/${SMALL.length}`],
    [
      'size and digest, a 206 with another total',
      { size: SMALL.length, sha256: SMALL_SHA },
      (start) => `bytes ${start}-${SMALL.length - 1}/${SMALL.length * 2}`,
    ],
    ['no digest, a 206 without Content-Range', {}, () => null],
  ])('%s: the part is discarded and the file fetched again from 0', async (_, known, contentRange) => {
    const models = withPart(`range-${rangeCase++}`, SMALL.subarray(0, 1 << 20))
    hostile = (req, res) => {
      if (!req.headers.range) return honest(req, res)
      // Sends the whole file whatever was asked for.
      const cr = contentRange(Number(/\d+/.exec(req.headers.range)[0]))
      res.writeHead(206, { 'content-length': SMALL.length, ...(cr && { 'content-range': cr }) })
      res.end(SMALL)
    }
    const out = await loadFile(models, { path: 'dl/small.gguf', ...HUB, ...known })
    // Downloaded right; only its header is not a model's.
    expect(out.code).toBe('MODEL_LOAD_FAILED')
    expect(sha(inPlace(models))).toBe(SMALL_SHA)
    expect(fs.readdirSync(path.join(models, 'dl'))).toEqual(['small.gguf'])
    expect(log.map((r) => r.range)).toEqual([`bytes=${1 << 20}-`, undefined])
  })

  test('a 416 discards the part and the file is fetched', async () => {
    const models = withPart('416', SMALL.subarray(0, 1 << 20))
    hostile = (req, res) => (req.headers.range ? res.writeHead(416).end() : honest(req, res))
    const out = await loadFile(models, { path: 'dl/small.gguf', ...HUB, size: SMALL.length, sha256: SMALL_SHA })
    expect(out.code).toBe('MODEL_LOAD_FAILED')
    expect(sha(inPlace(models))).toBe(SMALL_SHA)
    expect(log.map((r) => r.range)).toEqual([`bytes=${1 << 20}-`, undefined])
  })

  test('a part larger than the known size is discarded before anything is asked', async () => {
    const models = withPart('big-part', Buffer.concat([SMALL, SMALL.subarray(0, 1000)]))
    hostile = honest
    const out = await loadFile(models, { path: 'dl/small.gguf', ...HUB, size: SMALL.length })
    expect(out.code).toBe('MODEL_LOAD_FAILED')
    expect(sha(inPlace(models))).toBe(SMALL_SHA)
    expect(log.map((r) => r.range)).toEqual([undefined])
  })

  test('an HTML page is refused, nothing is moved into place, and the next load fetches the file', async () => {
    const models = withPart('html')
    hostile = (req, res) =>
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<html>Sign in to the Wi-Fi</html>')
    const first = await loadFile(models, { path: 'dl/small.gguf', ...HUB })
    expect(first.code).toBe('MODEL_NOT_FOUND')
    expect(first.message).toMatch(/HTML page/)
    expect(first.message).not.toMatch(/Sign in/)
    expect(fs.existsSync(inPlace(models))).toBe(false)
    expect(fs.readdirSync(models)).toEqual([])
    hostile = honest
    log = []
    const second = await loadFile(models, { path: 'dl/small.gguf', ...HUB })
    expect(second.code).toBe('MODEL_LOAD_FAILED')
    expect(log).toHaveLength(1)
    expect(sha(inPlace(models))).toBe(SMALL_SHA)
  })

  test('bytes that are not a GGUF file are refused without being shown, and not moved into place', async () => {
    const models = withPart('not-gguf')
    const body = Buffer.concat([Buffer.from('S3CR'), crypto.randomBytes(1 << 20)])
    hostile = (req, res) => honest(req, res, body)
    const out = await loadFile(models, { path: 'dl/small.gguf', ...HUB })
    expect(out.code).toBe('MODEL_NOT_FOUND')
    expect(out.message).toMatch(/not a GGUF file/)
    expect(out.message).not.toMatch(/S3CR/)
    expect(fs.readdirSync(models)).toEqual([])
  })

  test.each([
    ['without Content-Length', {}],
    ['announcing it', { 'content-length': SMALL.length * 2 }],
  ])('a server sending more than the known size (%s) stops there: nothing beyond it is written', async (_, headers) => {
    const models = withPart(`oversize-${Object.keys(headers).length}`)
    hostile = (req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', ...headers })
      res.write(SMALL)
      res.end(SMALL)
    }
    const out = await loadFile(models, { path: 'dl/small.gguf', ...HUB, size: SMALL.length })
    expect(out.code).toBe('MODEL_NOT_FOUND')
    expect(out.message).toMatch(new RegExp(`${SMALL.length}`))
    expect(fs.readdirSync(models)).toEqual([])
  })

  test('without a known size, ORION_DOWNLOAD_MAX_BYTES caps what is written', async () => {
    const models = withPart('cap')
    hostile = (req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      res.end(SMALL)
    }
    const out = await loadFile(models, { path: 'dl/small.gguf', ...HUB }, { ORION_DOWNLOAD_MAX_BYTES: String(1 << 20) })
    expect(out.code).toBe('MODEL_NOT_FOUND')
    expect(out.message).toMatch(/ORION_DOWNLOAD_MAX_BYTES/)
    expect(fs.readdirSync(models)).toEqual([])
  })

  test('a server that trickles (never silent for the timeout) is stopped by ORION_DOWNLOAD_DEADLINE_MS; the part stays', async () => {
    const models = withPart('trickle')
    let timer
    hostile = (req, res) => {
      res.writeHead(200, { 'content-length': SMALL.length })
      let i = 0
      timer = setInterval(() => res.write(SMALL.subarray(i, ++i)), 50)
      res.on('close', () => clearInterval(timer))
    }
    const t = Date.now()
    const out = await loadFile(models, { path: 'dl/small.gguf', ...HUB }, { ORION_DOWNLOAD_DEADLINE_MS: '1500' })
    clearInterval(timer)
    expect(out.code).toBe('MODEL_NOT_FOUND')
    expect(out.message).toMatch(/ORION_DOWNLOAD_DEADLINE_MS/)
    expect(Date.now() - t).toBeLessThan(10_000)
    expect(fs.statSync(path.join(models, 'dl', 'small.gguf.part')).size).toBeGreaterThan(0)
  })
})

test('a file without a sha256 is downloaded only with ORION_ALLOW_UNVERIFIED_DOWNLOADS=1', async () => {
  const models = withPart('unverified')
  hostile = honest
  const file = { path: 'dl/small.gguf', ...HUB, size: SMALL.length }
  const refused = await loadFile(models, file, { ORION_ALLOW_UNVERIFIED_DOWNLOADS: '' })
  expect(refused.code).toBe('MODEL_NOT_FOUND')
  expect(refused.message).toMatch(/no sha256.*ORION_ALLOW_UNVERIFIED_DOWNLOADS=1/)
  expect(log).toEqual([])
  expect(fs.readdirSync(models)).toEqual([])
  // A digest needs no opt-in; the opt-in downloads one without.
  const pinned = await loadFile(
    models,
    { ...file, path: 'dl/pinned.gguf', sha256: SMALL_SHA },
    { ORION_ALLOW_UNVERIFIED_DOWNLOADS: '' },
  )
  expect(pinned.code).toBe('MODEL_LOAD_FAILED')
  expect(sha(path.join(models, 'dl', 'pinned.gguf'))).toBe(SMALL_SHA)
  expect((await loadFile(models, file)).code).toBe('MODEL_LOAD_FAILED')
  expect(sha(inPlace(models))).toBe(SMALL_SHA)
})

describe('names stay in the models directory', () => {
  let n = 0
  const layout = () => {
    const dir = fresh(`escape-${n++}`)
    const models = path.join(dir, 'models')
    const outside = path.join(dir, 'outside')
    fs.mkdirSync(models)
    fs.mkdirSync(outside)
    return { dir, models, outside }
  }
  // Everything under `dir` but the models directory and the empty `outside`.
  const escaped = ({ dir, outside }) =>
    fs
      .readdirSync(dir)
      .filter((f) => f !== 'models' && f !== 'outside')
      .concat(fs.readdirSync(outside))

  test.each([
    ['a hubFile with ../', () => ({ ...HUB, hubFile: '../escaped.gguf' })],
    ['an absolute hubFile', ({ outside }) => ({ ...HUB, hubFile: path.join(outside, 'escaped.gguf') })],
    ['a path with ../', () => ({ ...HUB, path: '../escaped.gguf' })],
    ['an absolute path with a hub file', ({ outside }) => ({ ...HUB, path: path.join(outside, 'escaped.gguf') })],
    ['a hubRepo with ../', () => ({ hubRepo: 'hostile/any/../../other', hubFile: 'escaped.gguf' })],
  ])('%s is INVALID_OPTION, nothing is asked and nothing written', async (_, file) => {
    const where = layout()
    hostile = honest
    const out = await loadFile(where.models, file(where))
    expect(out.code).toBe('INVALID_OPTION')
    expect(log).toEqual([])
    expect(escaped(where)).toEqual([])
  })

  test('a symbolic link in the models directory that leads out is not followed by a download', async () => {
    const where = layout()
    fs.symlinkSync(where.outside, path.join(where.models, 'evil'))
    hostile = honest
    const out = await loadFile(where.models, { ...HUB, path: 'evil/escaped.gguf' })
    expect(out.code).toBe('INVALID_OPTION')
    expect(escaped(where)).toEqual([])
  })

  test('a model key is a key: loadModel of a file that is not a .gguf path never reads it', async () => {
    const models = fresh('keys')
    const secret = path.join(models, 'secret')
    fs.writeFileSync(secret, 'S3CRET-CONTENT\n')
    const script = `
      const { getModelLoader } = require(${JSON.stringify(root)})
      const loader = getModelLoader()
      Promise.all([${JSON.stringify(secret)}, '/etc/passwd'].map((k) => loader.loadModel(k).then(() => ({ ok: true }), (e) => ({ code: e.code, message: e.message }))))
        .then((r) => console.log(JSON.stringify(r)))`
    const [mine, passwd] = await runScript(script, models)
    expect(mine.code).toBe('UNKNOWN_MODEL')
    expect(mine.message).not.toMatch(/S3C/)
    expect(passwd.code).toBe('UNKNOWN_MODEL')
    const head = fs.readFileSync('/etc/passwd').subarray(0, 4).toString()
    expect(passwd.message).not.toContain(head)
  })
})
