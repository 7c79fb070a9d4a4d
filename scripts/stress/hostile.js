'use strict'
// One scenario of the "hostile" section of `npm run stress` (the findings of issue 22 at
// stress scale), in its own process:
//   node scripts/stress/hostile.js <scenario> [quick]
// Prints one JSON line: runs, outcomes (error code, or "correct result", and how many),
// the slowest call against its bound, problems (a crash, a hang, an uncoded error, a
// leaked secret, a file written outside its directory, a wrong result), and the
// process's peak RSS (process.resourceUsage().maxRSS) against its bound. The parent
// (scripts/stress.js) judges the run; a crash or an abort shows there as an exit code or
// a signal. Servers are real ones on 127.0.0.1 (__tests__/hostile/servers.js), files
// are real files in a temporary directory, and every call goes through the public API.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const crypto = require('node:crypto')
const { performance } = require('node:perf_hooks')
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads')
const { serve, json, sse, pump, piece, huge, honest } = require('../../__tests__/hostile/servers')

const root = path.join(__dirname, '..', '..')
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const MB = 1 << 20
const HUNG = Symbol('hung')

/** The demo model and the default embedding model, where `npm run models` put them. */
function defaultModels() {
  const { ensureModels } = require('../models')
  const dirs = ensureModels({ quiet: true })
  return { embedding: dirs['all-MiniLM-L6-v2'], llm: dirs['smollm2-135m-instruct'] }
}

/** A fresh temporary directory, removed when the process ends. */
function tempDir(name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `orion-stress-${name}-`))
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** An array that says it holds 2^32 - 1 items and holds none. */
function hugeArray() {
  const a = []
  a.length = 2 ** 32 - 1
  return a
}

/**
 * The record of one scenario. `call` times one call (a promise, or a function that
 * throws synchronously) against the bound: it must end in one of `codes` (or succeed,
 * when `codes` is empty, and pass `check`), and `inspect(error)` may name a problem
 * (a secret in the message, a message too long).
 */
function recorder(boundMs) {
  const row = { runs: 0, outcomes: {}, maxMs: 0, boundMs, problems: [], problemCount: 0 }
  const seen = new Map()
  // The first 12 distinct problems, each with how often it happened.
  row.problem = (what) => {
    row.problemCount++
    const text = String(what).slice(0, 400)
    if (seen.has(text)) {
      const p = seen.get(text)
      p.times++
      row.problems[p.at] = `${text} (×${p.times})`
    } else if (row.problems.length < 12) {
      seen.set(text, { at: row.problems.length, times: 1 })
      row.problems.push(text)
    }
  }
  row.outcome = (key) => (row.outcomes[key] = (row.outcomes[key] || 0) + 1)
  row.call = async (what, work, { codes = [], check, inspect, bound = boundMs } = {}) => {
    const t = performance.now()
    let settled
    if (typeof work === 'function') {
      try {
        settled = { value: work() }
      } catch (error) {
        settled = { error }
      }
    } else {
      let timer
      settled = await Promise.race([
        work.then(
          (value) => ({ value }),
          (error) => ({ error }),
        ),
        // A hang is a call still pending well past its bound.
        new Promise((r) => (timer = setTimeout(() => r(HUNG), Math.max(2 * bound, bound + 5000)))),
      ])
      clearTimeout(timer)
    }
    const ms = performance.now() - t
    row.maxMs = Math.max(row.maxMs, ms)
    if (settled === HUNG) {
      row.outcome('HUNG')
      row.problem(`${what}: still pending after ${Math.round(ms)} ms`)
      return settled
    }
    if (ms > bound) row.problem(`${what}: ${Math.round(ms)} ms, over its bound of ${bound} ms`)
    if (settled.error) {
      const e = settled.error
      const code = e && typeof e.code === 'string' ? e.code : 'UNCODED'
      row.outcome(code)
      if (process.env.ORION_STRESS_DEBUG) console.error(`${what}: ${code} ${String(e && e.message).slice(0, 300)}`)
      if (code === 'UNCODED') row.problem(`${what}: uncoded ${String(e && e.stack).slice(0, 300)}`)
      else if (!codes.includes(code)) row.problem(`${what}: ${code} (${e.message.slice(0, 200)}), expected ${codes}`)
      const wrong = inspect && inspect(e)
      if (wrong) row.problem(`${what}: ${wrong}`)
    } else if (codes.length > 0) {
      row.outcome('resolved')
      row.problem(`${what}: resolved, expected ${codes}`)
    } else {
      const wrong = check && check(settled.value)
      row.outcome(wrong ? 'wrong result' : 'correct result')
      if (wrong) row.problem(`${what}: ${wrong}`)
    }
    return settled
  }
  return row
}

/** Run `n` jobs, `width` at a time. */
async function batches(n, width, job) {
  for (let i = 0; i < n; i += width) {
    await Promise.all(Array.from({ length: Math.min(width, n - i) }, (_, k) => job(i + k)))
  }
}

async function until(cond, ms) {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) return false
    await sleep(20)
  }
  return true
}

/** Collect a stream's pieces. */
async function collect(stream) {
  let text = ''
  for await (const t of stream) text += t
  return text
}

let seq = 0
/** A remote model registered under a fresh key. */
function register(orion, url, remote = {}) {
  const key = `hostile-${++seq}`
  orion.getModelLoader().registerModel(key, { remote: { url, model: 'm', ...remote } })
  return key
}

// ---------------------------------------------------------------- remote servers

async function remoteMaxTokens(row, n) {
  const s = await serve((req, res) => {
    if (req.url !== '/v1/chat/completions') return
    sse(res)
    let i = 0
    pump(res, () => piece(`p${i++};`))
    return true
  })
  const orion = require(root)
  const loader = orion.getModelLoader()
  const key = register(orion, s.url, { timeoutMs: 3000 })
  const expected = (k) => Array.from({ length: k }, (_, i) => `p${i};`).join('')
  // Four at a time, generate and streams in turn, maxTokens from 1 to 64.
  await batches(n, 4, async (i) => {
    row.runs++
    const maxTokens = 1 + ((i * 37) % 64)
    if (i % 2 === 0) {
      await row.call(`generate maxTokens ${maxTokens}`, loader.generate(key, 'hi', { maxTokens }), {
        check: (r) =>
          r.text !== expected(maxTokens) || r.tokens !== maxTokens || r.finishReason !== 'maxTokens'
            ? `got ${r.tokens} tokens (${r.finishReason}): ${r.text.slice(0, 80)}`
            : null,
      })
    } else {
      await row.call(`stream maxTokens ${maxTokens}`, collect(loader.generateStream(key, 'hi', { maxTokens })), {
        check: (text) => (text !== expected(maxTokens) ? `streamed ${text.slice(0, 80)}` : null),
      })
    }
  })
  // Every stream was closed by the client, not left running on the server.
  if (!(await until(() => s.open === 0, 2000))) row.problem(`${s.open} streams still open on the server`)
  await s.close()
}

async function remoteKeepalive(row, n) {
  const idle = [
    ': keep-alive\n\n',
    'data: {"choices":[{"delta":{}}]}\n\n',
    'data: {"choices":[{"delta":{"content":""},"finish_reason":null}]}\n\n',
    'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n',
  ]
  const s = await serve((req, res) => {
    if (req.url !== '/v1/chat/completions') return
    sse(res)
    let i = 0
    pump(res, () => (i++ === 0 ? piece('first') : idle[i % idle.length]), { everyMs: 20 })
    return true
  })
  const orion = require(root)
  const loader = orion.getModelLoader()
  const timeoutMs = 1000
  const key = register(orion, s.url, { timeoutMs })
  const stalled = (e) => (/stalled/.test(e.message) ? null : `not a stall: ${e.message.slice(0, 200)}`)
  await batches(n, 5, async (i) => {
    row.runs++
    const t = performance.now()
    const work =
      i % 2 === 0
        ? loader.generate(key, 'hi', { maxTokens: 50 })
        : collect(loader.generateStream(key, 'hi', { maxTokens: 50 }))
    await row.call(i % 2 === 0 ? 'generate' : 'stream', work, { codes: ['REMOTE_UNAVAILABLE'], inspect: stalled })
    // Not before the stall timer either: a keep-alive must not end the call early.
    if (performance.now() - t < timeoutMs - 100) row.problem(`ended after ${performance.now() - t} ms`)
  })
  if (!(await until(() => s.open === 0, 2000))) row.problem(`${s.open} streams still open on the server`)
  await s.close()
}

async function remoteEndlessLine(row, n) {
  const chunk = Buffer.alloc(64 * 1024, 'x')
  const s = await serve((req, res) => {
    if (req.url !== '/v1/chat/completions') return
    sse(res)
    let first = true
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
  const orion = require(root)
  const loader = orion.getModelLoader()
  const key = register(orion, s.url, { timeoutMs: 4000 })
  const atCap = (e) => (/1 MiB/.test(e.message) ? null : `not the line cap: ${e.message.slice(0, 200)}`)
  for (let i = 0; i < n; i++) {
    row.runs++
    const work = i % 2 === 0 ? loader.generate(key, 'hi') : collect(loader.generateStream(key, 'hi'))
    await row.call('one endless line', work, { codes: ['REMOTE_PROTOCOL'], inspect: atCap })
  }
  if (!(await until(() => s.open === 0, 2000))) row.problem(`${s.open} streams still open on the server`)
  await s.close()
}

async function remoteRetryAfter(row, n) {
  const busy = (res) => json(res, 503, { error: { code: 503, message: 'Loading model' } }, { 'retry-after': '29' })
  const down = await serve((req, res) => busy(res))
  const chatBusy = await serve((req, res) => (req.method === 'POST' ? busy(res) : undefined))
  const orion = require(root)
  const loader = orion.getModelLoader()
  const timeoutMs = 1000
  const names = (e) => (/retried after 29 s/.test(e.message) ? null : `no wait named: ${e.message.slice(0, 200)}`)
  // Five rounds at a time, each a load, a generation and a stream.
  await batches(n, 5, async () => {
    row.runs++
    const key = register(orion, chatBusy.url, { timeoutMs })
    await Promise.all([
      row.call('loadModel', loader.loadModel(register(orion, down.url, { timeoutMs })), {
        codes: ['REMOTE_ERROR'],
        inspect: names,
      }),
      row.call('generate', loader.generate(key, 'hi', { maxTokens: 4 }), { codes: ['REMOTE_ERROR'], inspect: names }),
      row.call('stream', loader.generateStream(key, 'hi', { maxTokens: 4 }).next(), { codes: ['REMOTE_ERROR'] }),
    ])
  })
  await Promise.all([down.close(), chatBusy.close()])
}

async function remoteHugeBody(row, n) {
  const GB = 1 << 30
  // A 1 GB streamed reply of 64 KiB pieces, a 1 GB JSON body on the chat route, a
  // 200 MB /v1/models, a 200 MB /v1/embeddings: each without a length, never held whole
  // by the server.
  const bigPiece = piece('y'.repeat(64 * 1024))
  const s = await serve((req, res) => {
    if (req.url === '/v1/chat/completions') {
      sse(res)
      let sent = 0
      pump(res, () => (sent++ * bigPiece.length < GB ? bigPiece : null))
      return true
    }
    if (req.url === '/v1/embeddings') return huge(res, 200 * MB)
  })
  const models = await serve((req, res) => (req.url === '/v1/models' ? huge(res, 200 * MB) : undefined))
  const jsonChat = await serve((req, res) => (req.url === '/v1/chat/completions' ? huge(res, GB) : undefined))
  const orion = require(root)
  const loader = orion.getModelLoader()
  const remote = { timeoutMs: 30_000 }
  const streamed = register(orion, s.url, remote)
  const plain = register(orion, jsonChat.url, remote)
  const client = orion.getSharedEmbeddingClient({ remote: { url: s.url, model: 'm', ...remote }, timeoutMs: 60_000 })
  for (let i = 0; i < n; i++) {
    row.runs++
    switch (i % 4) {
      case 0:
        await row.call('1 GB streamed reply', loader.generate(streamed, 'hi', { maxTokens: 100_000 }), {
          codes: ['REMOTE_PROTOCOL'],
        })
        break
      case 1:
        await row.call('1 GB JSON chat body', loader.generate(plain, 'hi', { maxTokens: 16 }), {
          codes: ['REMOTE_PROTOCOL'],
        })
        break
      case 2:
        await row.call('200 MB /v1/models', loader.loadModel(register(orion, models.url, remote)), {
          codes: ['REMOTE_PROTOCOL'],
        })
        break
      default:
        await row.call('200 MB /v1/embeddings', client.createEmbedding(`a huge reply ${i}`), {
          codes: ['REMOTE_PROTOCOL'],
        })
    }
  }
  const [ep] = client.getStats().endpoints
  if (ep.bytesReceived > (n / 4 + 1) * 32 * MB) row.problem(`read ${ep.bytesReceived} bytes of /v1/embeddings`)
  await Promise.all([s.close(), models.close(), jsonChat.close()])
}

async function remoteWidth(row, n) {
  const orion = require(root)
  const servers = []
  await batches(n, 5, async (i) => {
    row.runs++
    const s = await serve((req, res, st) => {
      if (req.url !== '/v1/embeddings') return
      st.posts = (st.posts || 0) + 1
      const width = st.posts === 1 ? 8 : 16
      const input = JSON.parse(req.body).input
      return json(res, 200, { data: input.map((_, index) => ({ index, embedding: Array(width).fill(0.5) })) })
    })
    servers.push(s)
    const client = orion.getSharedEmbeddingClient({ remote: { url: s.url, model: 'm' } })
    await row.call('width 8', client.createEmbedding(`first ${i}`), {
      check: (v) => (v.length !== 8 ? `width ${v.length}` : null),
    })
    const texts = Array.from({ length: 1 + (i % 16) }, (_, k) => `second ${i} ${k}`)
    await row.call('then 16', client.createEmbeddings(texts), {
      codes: ['REMOTE_PROTOCOL'],
      inspect: (e) => (/16 dimensions/.test(e.message) && /had 8/.test(e.message) ? null : e.message.slice(0, 200)),
    })
  })
  await Promise.all(servers.map((s) => s.close()))
}

async function remoteSecrets(row, n) {
  const KEY = 'sk-hostile-0123456789abcdef'
  const QUERY_KEY = 'qk-hostile-fedcba9876543210'
  const PASSWORD = 'hunter2-Pa55word'
  const basic = Buffer.from(`alice:${PASSWORD}`).toString('base64')
  const secrets = [KEY, QUERY_KEY, PASSWORD, basic]
  const leaks = (text) => secrets.filter((secret) => text.includes(secret))
  /** What a server was sent as credentials and where, in every form it could echo them. */
  const echoed = (req) => {
    const auth = req.headers.authorization || ''
    const decoded = auth
      .split(/,\s*/)
      .filter((a) => a.startsWith('Basic '))
      .map((a) => Buffer.from(a.slice(6), 'base64').toString())
    return `you sent ${req.method} ${req.url} with Authorization: ${auth} (${decoded.join(' ')})`
  }
  const s = await serve((req, res, st) => {
    if (req.url.includes('/chat/completions')) {
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
    // The model list answers, or echoes in a 401 too (every other round). A key in the
    // URL's query comes after the path.
    const route = req.url.split('?')[0]
    if (!st.modelsEcho && /\/health$/.test(route)) return json(res, 200, { status: 'ok' })
    if (!st.modelsEcho && /\/models$/.test(route)) return json(res, 200, { data: [{ id: 'm' }] })
    // Everything else: a 401 (the hub's 404) that echoes the request.
    return json(res, req.url.includes('/resolve/') ? 404 : 401, { error: { code: 401, message: echoed(req) } })
  })
  const models = tempDir('secrets')
  Object.assign(process.env, {
    ORION_MODELS_DIR: models,
    ORION_ALLOW_DOWNLOADS: '1',
    ORION_ALLOW_UNVERIFIED_DOWNLOADS: '1',
  })
  const orion = require(root)
  const loader = orion.getModelLoader()
  const password = `http://alice:${PASSWORD}@127.0.0.1:${s.port}`
  const query = `${s.url}/v1?api_key=${QUERY_KEY}`
  const targets = [
    ['apiKey', s.url, { apiKey: KEY }],
    ['URL password', password, {}],
    ['?api_key= in the URL', query, {}],
  ]
  const clients = targets.map(([, url, extra]) =>
    orion.getSharedEmbeddingClient({ remote: { url, model: 'm', ...extra } }),
  )
  const check = () => (e) => {
    const found = leaks(`${e.message}\n${e.stack}`)
    return found.length ? `the secret ${found[0].slice(0, 6)}… is in the error's message or stack` : null
  }
  const remoteCodes = ['REMOTE_ERROR', 'REMOTE_PROTOCOL', 'REMOTE_UNAVAILABLE']
  for (let i = 0; i < n; i++) {
    row.runs++
    s.modelsEcho = i % 2 === 1
    for (const [k, [where, url, extra]] of targets.entries()) {
      const key = register(orion, url, { timeoutMs: 5000, ...extra })
      for (let j = 0; j < 2; j++) {
        await row.call(`generate (${where})`, loader.generate(key, 'hi', { maxTokens: 4 }), {
          codes: remoteCodes,
          inspect: check(`generate, ${where}`),
        })
      }
      await row.call(`loadModel (${where})`, loader.loadModel(key), {
        codes: s.modelsEcho ? remoteCodes : [],
        inspect: check(`loadModel, ${where}`),
      })
      await row.call(`createEmbedding (${where})`, clients[k].createEmbedding(`echo ${i}`), {
        codes: remoteCodes,
        inspect: check(`createEmbedding, ${where}`),
      })
    }
    // A password (or a key in the query) of the hub's address, on a 404.
    for (const [where, endpoint] of [
      ['ORION_HF_ENDPOINT password', password],
      ['ORION_HF_ENDPOINT ?api_key=', `${s.url}/?api_key=${QUERY_KEY}`],
    ]) {
      process.env.ORION_HF_ENDPOINT = endpoint
      const key = `hub-${++seq}`
      loader.registerModel(key, {
        files: { q4: { path: `${key}.gguf`, hubRepo: 'a/b', hubFile: 'x.gguf', size: 1000 } },
      })
      await row.call(`download (${where})`, loader.loadModel(key), {
        codes: ['MODEL_NOT_FOUND'],
        inspect: check(`download, ${where}`),
      })
    }
  }
  const stats = [
    ['loader.getStats()', loader.getStats()],
    ['loader.listModels()', loader.listModels()],
    ...clients.map((c, k) => [`getStats() of the client with ${targets[k][0]}`, c.getStats()]),
  ]
  if (process.env.ORION_STRESS_DEBUG) console.error(JSON.stringify(stats))
  if (!/lastError/.test(JSON.stringify(stats))) row.problem('no lastError in the stats: nothing echoed?')
  for (const [where, value] of stats) {
    for (const secret of leaks(JSON.stringify(value))) row.problem(`the secret ${secret.slice(0, 6)}… is in ${where}`)
  }
  await s.close()
}

// ---------------------------------------------------------------- downloads

/** The hostile hub: `/hostile/any/resolve/main/<file>` answered by `route`, every request logged. */
async function hub(env = {}) {
  const h = { log: [], route: honest }
  h.server = await serve((req, res) => {
    h.log.push({ url: req.url, range: req.headers.range })
    h.route(req, res)
    return true
  })
  const dir = tempDir('dl')
  h.models = path.join(dir, 'models')
  h.outside = path.join(dir, 'outside')
  h.dir = dir
  fs.mkdirSync(h.models)
  fs.mkdirSync(h.outside)
  Object.assign(process.env, {
    ORION_MODELS_DIR: h.models,
    ORION_HF_ENDPOINT: h.server.url,
    ORION_DOWNLOAD_TIMEOUT_MS: '1000',
    ORION_ALLOW_DOWNLOADS: '1',
    ORION_ALLOW_UNVERIFIED_DOWNLOADS: '1',
    ...env,
  })
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete process.env[k]
  h.orion = require(root)
  h.loader = h.orion.getModelLoader()
  /** Register `file` under a fresh key and load it. */
  h.load = async (file) => {
    // Registering may refuse the file at once (a name that escapes): a rejection too.
    const key = `dl-${++seq}`
    h.loader.registerModel(key, { files: { q4: file } })
    return h.loader.loadModel(key)
  }
  /** Files anywhere under the temporary directory but the models directory. */
  h.escaped = () =>
    fs
      .readdirSync(dir)
      .filter((f) => f !== 'models' && f !== 'outside')
      .concat(fs.readdirSync(h.outside))
  h.close = () => h.server.close()
  return h
}

// A small file of our own: the GGUF magic and 8 MB of random bytes. It downloads like a
// model; loading it then fails on its header (MODEL_LOAD_FAILED), so a download is
// judged by the file it left on disk. Made on first use (not in the churn's workers).
let small
function smallFile() {
  if (!small) {
    const body = Buffer.concat([Buffer.from('GGUF'), crypto.randomBytes(8 * MB)])
    small = { body, sha: crypto.createHash('sha256').update(body).digest('hex') }
  }
  return small
}
const sha = (file) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex')

async function downloadRange(row, n) {
  const { body: SMALL, sha: SMALL_SHA } = smallFile()
  const h = await hub()
  const variants = [
    ['no digest, a 206 that starts at 0', {}, () => `bytes 0-${SMALL.length - 1}/${SMALL.length}`],
    [
      'size and digest, a 206 with another total',
      { size: SMALL.length, sha256: SMALL_SHA },
      (start) => `bytes ${start}-${SMALL.length - 1}/${SMALL.length * 2}`,
    ],
    ['no digest, a 206 without Content-Range', {}, () => null],
    ['size and digest, a 416', { size: SMALL.length, sha256: SMALL_SHA }, 416],
  ]
  for (let i = 0; i < n; i++) {
    row.runs++
    const [what, known, contentRange] = variants[i % variants.length]
    const name = `run-${i}.gguf`
    fs.mkdirSync(path.join(h.models, 'dl'), { recursive: true })
    fs.writeFileSync(path.join(h.models, 'dl', `${name}.part`), SMALL.subarray(0, MB))
    h.route = (req, res) => {
      if (!req.headers.range) return honest(req, res, SMALL)
      if (contentRange === 416) return res.writeHead(416).end()
      // The whole file, whatever was asked for.
      const cr = contentRange(Number(/\d+/.exec(req.headers.range)[0]))
      res.writeHead(206, { 'content-length': SMALL.length, ...(cr && { 'content-range': cr }) })
      res.end(SMALL)
    }
    h.log = []
    await row.call(what, h.load({ path: `dl/${name}`, hubRepo: 'hostile/any', hubFile: name, ...known }), {
      codes: ['MODEL_LOAD_FAILED'],
    })
    const file = path.join(h.models, 'dl', name)
    if (!fs.existsSync(file) || sha(file) !== SMALL_SHA) row.problem(`${what}: the file in place is not the server's`)
    if (fs.existsSync(`${file}.part`)) row.problem(`${what}: the part is left`)
    const ranges = JSON.stringify(h.log.map((r) => r.range ?? null))
    if (ranges !== JSON.stringify([`bytes=${MB}-`, null])) row.problem(`${what}: asked ${ranges}`)
  }
  if (h.escaped().length) row.problem(`written outside: ${h.escaped()}`)
  await h.close()
}

async function downloadHtml(row, n) {
  const { body: SMALL, sha: SMALL_SHA } = smallFile()
  const h = await hub()
  for (let i = 0; i < n; i++) {
    row.runs++
    const name = `html-${i}.gguf`
    if (i % 2 === 0) {
      h.route = (req, res) =>
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<html>Sign in to the Wi-Fi</html>')
      await row.call('an HTML page', h.load({ path: `dl/${name}`, hubRepo: 'hostile/any', hubFile: name }), {
        codes: ['MODEL_NOT_FOUND'],
        inspect: (e) => (!/HTML page/.test(e.message) || /Sign in/.test(e.message) ? e.message.slice(0, 200) : null),
      })
    } else {
      const body = Buffer.concat([Buffer.from('S3CR'), crypto.randomBytes(4 * MB)])
      h.route = (req, res) => honest(req, res, body)
      await row.call('bytes that are not GGUF', h.load({ path: `dl/${name}`, hubRepo: 'hostile/any', hubFile: name }), {
        codes: ['MODEL_NOT_FOUND'],
        inspect: (e) => (!/not a GGUF file/.test(e.message) || /S3CR/.test(e.message) ? e.message.slice(0, 200) : null),
      })
    }
    const left = fs.existsSync(path.join(h.models, 'dl')) ? fs.readdirSync(path.join(h.models, 'dl')) : []
    if (left.length) row.problem(`left in the models directory: ${left}`)
  }
  // The next load of the same name, from an honest server, fetches the file.
  h.route = (req, res) => honest(req, res, SMALL)
  await row.call('then honest', h.load({ path: 'dl/html-0.gguf', hubRepo: 'hostile/any', hubFile: 'x.gguf' }), {
    codes: ['MODEL_LOAD_FAILED'],
  })
  if (sha(path.join(h.models, 'dl', 'html-0.gguf')) !== SMALL_SHA) row.problem('not fetched after the HTML page')
  if (h.escaped().length) row.problem(`written outside: ${h.escaped()}`)
  await h.close()
}

async function downloadOversize(row, n) {
  const { body: SMALL, sha: SMALL_SHA } = smallFile()
  const CAP = 64 * MB
  const h = await hub({ ORION_DOWNLOAD_MAX_BYTES: String(CAP) })
  const chunk = crypto.randomBytes(MB)
  for (let i = 0; i < n; i++) {
    row.runs++
    const name = `big-${i}.gguf`
    const file = path.join(h.models, 'dl', name)
    const dl = { path: `dl/${name}`, hubRepo: 'hostile/any', hubFile: name }
    h.log = []
    switch (i % 4) {
      case 0: {
        // A part already larger than the known size: discarded before anything is asked.
        fs.mkdirSync(path.dirname(file), { recursive: true })
        fs.writeFileSync(`${file}.part`, Buffer.concat([SMALL, SMALL.subarray(0, 1000)]))
        h.route = (req, res) => honest(req, res, SMALL)
        await row.call('a part bigger than the size', h.load({ ...dl, size: SMALL.length }), {
          codes: ['MODEL_LOAD_FAILED'],
        })
        if (!fs.existsSync(file) || sha(file) !== SMALL_SHA) row.problem('the part bigger than the size was kept')
        if (h.log.some((r) => r.range)) row.problem(`asked a range ${h.log[0].range}`)
        fs.rmSync(file, { force: true })
        break
      }
      case 1:
      case 2:
        // Twice the known size, with or without announcing it.
        h.route = (req, res) => {
          res.writeHead(200, {
            'content-type': 'application/octet-stream',
            ...(i % 4 === 2 && { 'content-length': SMALL.length * 2 }),
          })
          res.write(SMALL)
          res.end(SMALL)
        }
        await row.call('more than the known size', h.load({ ...dl, size: SMALL.length }), {
          codes: ['MODEL_NOT_FOUND'],
        })
        break
      default:
        // No size known and a body that never ends: ORION_DOWNLOAD_MAX_BYTES stops it.
        h.route = (req, res) => {
          res.writeHead(200, { 'content-type': 'application/octet-stream' })
          let first = true
          pump(res, () => {
            if (!first) return chunk
            first = false
            return Buffer.concat([Buffer.from('GGUF'), chunk])
          })
        }
        await row.call('an endless body, no size', h.load(dl), {
          codes: ['MODEL_NOT_FOUND'],
          inspect: (e) => (/ORION_DOWNLOAD_MAX_BYTES/.test(e.message) ? null : e.message.slice(0, 200)),
        })
    }
    const left = fs.existsSync(path.join(h.models, 'dl')) ? fs.readdirSync(path.join(h.models, 'dl')) : []
    if (left.length) row.problem(`left in the models directory: ${left}`)
  }
  if (h.escaped().length) row.problem(`written outside: ${h.escaped()}`)
  await h.close()
}

async function downloadTrickle(row, n) {
  const { body: SMALL, sha: SMALL_SHA } = smallFile()
  const deadline = 1500
  const h = await hub({ ORION_DOWNLOAD_DEADLINE_MS: String(deadline) })
  const timers = new Set()
  // One byte every 50 ms: never silent for the 1 s timeout, never done.
  h.route = (req, res) => {
    res.writeHead(200, { 'content-length': SMALL.length })
    let i = 0
    const timer = setInterval(() => res.write(SMALL.subarray(i, ++i)), 50)
    timers.add(timer)
    res.on('close', () => clearInterval(timer))
  }
  await batches(n, 4, async (i) => {
    row.runs++
    const name = `trickle-${i}.gguf`
    await row.call('a trickling server', h.load({ path: `dl/${name}`, hubRepo: 'hostile/any', hubFile: name }), {
      codes: ['MODEL_NOT_FOUND'],
      bound: deadline + 2000,
      inspect: (e) => (/ORION_DOWNLOAD_DEADLINE_MS/.test(e.message) ? null : e.message.slice(0, 200)),
    })
    const part = path.join(h.models, 'dl', `${name}.part`)
    if (!fs.existsSync(part) || fs.statSync(part).size === 0) row.problem('the part to resume is not kept')
  })
  for (const t of timers) clearInterval(t)
  if (h.escaped().length) row.problem(`written outside: ${h.escaped()}`)
  await h.close()
}

async function downloadEscape(row, n) {
  const { body: SMALL, sha: SMALL_SHA } = smallFile()
  const h = await hub()
  h.route = (req, res) => honest(req, res, SMALL)
  fs.symlinkSync(h.outside, path.join(h.models, 'evil'))
  const HUB = { hubRepo: 'hostile/any', hubFile: 'small.gguf' }
  const variants = [
    ['a hubFile with ../', () => ({ ...HUB, hubFile: '../escaped.gguf' })],
    ['a hubFile with ../../', () => ({ ...HUB, hubFile: '../../outside/escaped.gguf' })],
    ['an absolute hubFile', () => ({ ...HUB, hubFile: path.join(h.outside, 'escaped.gguf') })],
    ['a path with ../', () => ({ ...HUB, path: '../escaped.gguf' })],
    ['a path with ../../', () => ({ ...HUB, path: 'dl/../../outside/escaped.gguf' })],
    ['an absolute path with a hub file', () => ({ ...HUB, path: path.join(h.outside, 'escaped.gguf') })],
    ['a hubRepo with ../', () => ({ hubRepo: 'hostile/any/../../other', hubFile: 'escaped.gguf' })],
    ['a link in the models directory that leads out', () => ({ ...HUB, path: 'evil/escaped.gguf' })],
  ]
  h.log = []
  for (let i = 0; i < n; i++) {
    row.runs++
    const [what, file] = variants[i % variants.length]
    await row.call(what, h.load(file()), { codes: ['INVALID_OPTION'], bound: 1000 })
  }
  if (h.log.length) row.problem(`${h.log.length} requests were made: ${h.log[0].url}`)
  if (h.escaped().length) row.problem(`written outside: ${h.escaped()}`)
  await h.close()
}

async function keyIsPath(row, n) {
  const h = await hub()
  const secret = path.join(h.dir, 'secret')
  const SECRET = 'S3CRET-CONTENT'
  fs.writeFileSync(secret, `${SECRET}\n`)
  fs.writeFileSync(path.join(h.dir, 'secret.gguf'), `${SECRET}\n`)
  fs.symlinkSync('/etc/passwd', path.join(h.dir, 'passwd.gguf'))
  const passwd = fs.readFileSync('/etc/passwd', 'utf8').split('\n')[0]
  const keys = [
    ['/etc/passwd', ['UNKNOWN_MODEL'], passwd],
    [secret, ['UNKNOWN_MODEL'], SECRET],
    ['../../../../etc/passwd', ['UNKNOWN_MODEL'], passwd],
    // A .gguf path is a path: someone else's file is refused without being read out.
    [path.join(h.dir, 'secret.gguf'), ['MODEL_LOAD_FAILED'], SECRET],
    [path.join(h.dir, 'passwd.gguf'), ['MODEL_LOAD_FAILED'], passwd],
  ]
  for (let i = 0; i < n; i++) {
    row.runs++
    const [key, codes, content] = keys[i % keys.length]
    const work = i % 2 === 0 ? h.loader.loadModel(key) : h.loader.generate(key, 'hi', { maxTokens: 2 })
    await row.call(`${i % 2 === 0 ? 'loadModel' : 'generate'}(${path.basename(key)})`, work, {
      codes,
      bound: 2000,
      inspect: (e) =>
        `${e.message}${e.stack}`.includes(content.slice(0, 12)) ? `the file's contents are in the error` : null,
    })
  }
  if (h.log.length) row.problem(`${h.log.length} requests were made`)
  await h.close()
}

async function downloadNotAsked(row, n) {
  const { body: SMALL, sha: SMALL_SHA } = smallFile()
  const h = await hub({ ORION_ALLOW_DOWNLOADS: undefined })
  const client = h.orion.getSharedEmbeddingClient({ model: 'bge-small-en-v1.5' })
  const catalog = h.orion.applyQuantization('Mistral-7B-Instruct-v0.2', 'q4')
  const named = (e) =>
    /npx orion-native models pull/.test(e.message) && /ORION_ALLOW_DOWNLOADS=1/.test(e.message)
      ? null
      : e.message.slice(0, 200)
  for (let i = 0; i < n; i++) {
    row.runs++
    const key = `hub-model-${i}`
    h.loader.registerModel(key, {
      kind: 'llm',
      files: { q4: { hubRepo: 'test-org/SmolLM2-GGUF', hubFile: 'SmolLM2.Q4_1.gguf', size: SMALL.length } },
    })
    await row.call('a registry model', h.loader.loadModel(key), { codes: ['DOWNLOAD_REQUIRED'], inspect: named })
    await row.call('a catalog model', h.loader.generate(catalog, 'hi'), {
      codes: ['DOWNLOAD_REQUIRED'],
      inspect: named,
    })
    await row.call('a catalog embedding model', client.createEmbedding(`x ${i}`), {
      codes: ['DOWNLOAD_REQUIRED'],
      inspect: named,
    })
  }
  if (h.log.length) row.problem(`${h.log.length} requests were made: ${h.log[0].url}`)
  if (fs.readdirSync(h.models).length) row.problem(`written: ${fs.readdirSync(h.models)}`)
  if (h.escaped().length) row.problem(`written outside: ${h.escaped()}`)
  await h.close()
}

// ---------------------------------------------------------------- files and arguments

async function ggufHparams(row, n) {
  const source = path.join(defaultModels().llm, 'SmolLM2-135M-Instruct.Q4_1.gguf')
  const dir = tempDir('hparams')
  const header = Buffer.alloc(MB)
  const fd = fs.openSync(source, 'r')
  fs.readSync(fd, header, 0, header.length, 0)
  fs.closeSync(fd)
  /** Where the f32 value of `key` is in the header (the key, then type 6 = f32, then it). */
  const valueAt = (key) => {
    const at = header.indexOf(Buffer.from(key))
    if (at < 0 || header.readUInt32LE(at + key.length) !== 6) throw new Error(`${key} is not an f32 in ${source}`)
    return at + key.length + 4
  }
  const eps = 'llama.attention.layer_norm_rms_epsilon'
  const base = 'llama.rope.freq_base'
  const cases = [
    [eps, -1],
    [eps, NaN],
    [base, NaN],
    [base, 0],
    [base, -1],
  ].map(([key, value], i) => {
    const file = path.join(dir, `case-${i}.gguf`)
    fs.copyFileSync(source, file)
    const bytes = Buffer.alloc(4)
    bytes.writeFloatLE(value)
    const wfd = fs.openSync(file, 'r+')
    fs.writeSync(wfd, bytes, 0, 4, valueAt(key))
    fs.closeSync(wfd)
    return { key, value, file }
  })
  const orion = require(root)
  const loader = orion.getModelLoader()
  for (let i = 0; i < n; i++) {
    row.runs++
    const { key, value, file } = cases[i % cases.length]
    const named = (e) => (e.message.includes(`${key} = ${value}`) ? null : `not named: ${e.message.slice(0, 200)}`)
    // The abort was at the first generation: load, then generate, in turn.
    const work =
      Math.floor(i / cases.length) % 2 === 0
        ? loader.loadModel(file)
        : loader.generate(file, 'What is the capital of France?', { temperature: 0, maxTokens: 8 })
    await row.call(`${key} = ${value}`, work, { codes: ['MODEL_LOAD_FAILED'], inspect: named })
  }
  // The process is still usable afterwards.
  await row.call(
    'the demo model after',
    loader.generate('demo', 'What is the capital of France?', { temperature: 0, maxTokens: 12 }),
    { check: (r) => (/Paris/.test(r.text) ? null : `answered ${r.text}`), bound: 30_000 },
  )
}

async function embeddingSpecialFiles(row, n) {
  const source = defaultModels().embedding
  const dir = tempDir('onnx')
  const orion = require(root)
  for (let i = 0; i < n; i++) {
    row.runs++
    const model = path.join(dir, `model-${i}`)
    fs.mkdirSync(model)
    for (const f of fs.readdirSync(source)) {
      if (!f.startsWith('.') && f !== 'model.onnx') fs.copyFileSync(path.join(source, f), path.join(model, f))
    }
    const onnx = path.join(model, 'model.onnx')
    const what = i % 2 === 0 ? 'model.onnx a link to /dev/zero' : 'model.onnx a FIFO'
    if (i % 2 === 0) fs.symlinkSync('/dev/zero', onnx)
    else require('node:child_process').execFileSync('mkfifo', [onnx])
    const client = orion.getSharedEmbeddingClient({ modelPath: model, timeoutMs: 30_000 })
    await row.call(what, client.createEmbedding(`hello ${i}`), {
      codes: ['MODEL_LOAD_FAILED'],
      bound: 1000,
      inspect: (e) => (/not a regular file/.test(e.message) ? null : e.message.slice(0, 200)),
    })
    // The service is not wedged: the default model still answers.
    if (i % 5 === 4 || i === n - 1) {
      await row.call('the default model after', orion.getSharedEmbeddingClient().createEmbedding(`after ${i}`), {
        check: (v) => (v.length === 384 ? null : `width ${v.length}`),
        bound: 10_000,
      })
    }
  }
}

async function hugeArrays(row, n) {
  const orion = require(root)
  const loader = orion.getModelLoader()
  const client = orion.getSharedEmbeddingClient()
  const GGUF = path.join(defaultModels().llm, 'SmolLM2-135M-Instruct.Q4_1.gguf')
  const descriptors = [
    ['name', () => ({ files: { q4: { path: GGUF } }, name: hugeArray() })],
    ['files.q4.sha256', () => ({ files: { q4: { path: GGUF, sha256: hugeArray() } } })],
    ['files.q4', () => ({ files: { q4: hugeArray() } })],
    ['remote.url', () => ({ remote: { url: hugeArray(), model: 'm' } })],
  ]
  const bound = 500
  for (let i = 0; i < n; i++) {
    row.runs++
    const proxy = new Proxy([], { get: (target, k) => (k === 'length' ? 2 ** 32 - 1 : target[k]) })
    await row.call('prompt messages', loader.generate('demo', hugeArray()), { codes: ['INVALID_INPUT'], bound })
    await row.call('a Proxy of an array', loader.generate('demo', proxy), { codes: ['INVALID_INPUT'], bound })
    await row.call('an object with a length', loader.generate('demo', { length: 2 ** 32 - 1 }), {
      codes: ['INVALID_INPUT'],
      bound,
    })
    // A stream's error comes with its first piece (or at once, thrown): either is coded.
    const streamed = (async () => collect(loader.generateStream('demo', hugeArray())))()
    await row.call('stream messages', streamed, {
      codes: ['INVALID_INPUT'],
      bound,
    })
    for (const [where, make] of descriptors) {
      await row.call(`registerModel ${where}`, () => loader.registerModel('huge-array', make()), {
        codes: ['INVALID_OPTION'],
        bound,
      })
    }
    await row.call('stop', loader.generate('demo', 'hi', { stop: hugeArray() }), { codes: ['INVALID_OPTION'], bound })
    await row.call('bundledModelsDirs', () => orion.configure({ bundledModelsDirs: hugeArray() }), {
      codes: ['INVALID_OPTION'],
      bound,
    })
    await row.call('createEmbeddings', client.createEmbeddings(hugeArray()), { codes: ['INVALID_INPUT'], bound })
  }
}

async function hugeKey(row, n) {
  const orion = require(root)
  const loader = orion.getModelLoader()
  const short = (e) => (e.message.length < 5000 ? null : `a message of ${e.message.length} characters`)
  for (let i = 0; i < n; i++) {
    row.runs++
    // A new 100 MB string each round (the last character differs), so nothing is cached.
    const big = 'k'.repeat(100 * MB - 1) + String.fromCharCode(97 + (i % 26))
    await row.call('loadModel(100 MB key)', loader.loadModel(big), { codes: ['UNKNOWN_MODEL'], inspect: short })
    await row.call('generate(100 MB key)', loader.generate(big, 'hi'), { codes: ['UNKNOWN_MODEL'], inspect: short })
    await row.call('registerModel(100 MB key)', () => loader.registerModel(big, { files: {} }), {
      codes: ['INVALID_OPTION'],
      inspect: short,
    })
    await row.call('a 100 MB option name', orion.getSharedEmbeddingClient().createEmbedding('x', { [big]: 1 }), {
      codes: ['INVALID_OPTION'],
      inspect: short,
    })
    await row.call('a 100 MB chat role', loader.generate('demo', [{ role: big, content: 'hi' }]), {
      codes: ['INVALID_INPUT'],
      inspect: short,
    })
    await row.call('a 100 MB quantization level', () => orion.applyQuantization('m', big), {
      codes: ['INVALID_OPTION'],
      inspect: short,
    })
    await row.call('a 100 MB models directory with a NUL', () => orion.configure({ modelsDir: `${big}\0` }), {
      codes: ['INVALID_OPTION'],
      inspect: short,
    })
  }
}

async function badOptions(row, n) {
  const orion = require(root)
  const loader = orion.getModelLoader()
  const client = orion.getSharedEmbeddingClient()
  const throwing = () =>
    new Proxy(
      {},
      {
        get() {
          throw new Error('trap bug')
        },
      },
    )
  const revoked = () => {
    const { proxy, revoke } = Proxy.revocable({}, {})
    revoke()
    return proxy
  }
  const variants = [
    ['a throwing Proxy as signal', () => ({ signal: throwing() })],
    ['a revoked Proxy as signal', () => ({ signal: revoked() })],
    ['a revoked Proxy as options', revoked],
    ['a throwing Proxy as options', throwing],
  ]
  const codes = ['INVALID_OPTION']
  const bound = 500
  for (let i = 0; i < n; i++) {
    row.runs++
    const [what, options] = variants[i % variants.length]
    await row.call(`generate, ${what}`, loader.generate('demo', 'hi', options()), { codes, bound })
    await row.call(`loadModel, ${what}`, loader.loadModel('demo', undefined, options()), { codes, bound })
    await row.call(`createEmbedding, ${what}`, client.createEmbedding('hi', options()), { codes, bound })
    await row.call(`createEmbeddings, ${what}`, client.createEmbeddings(['hi'], options()), { codes, bound })
    await row.call(`generateStream, ${what}`, () => loader.generateStream('demo', 'hi', options()), { codes, bound })
    for (const factory of ['getSharedEmbeddingClient', 'getModelLoader', 'getMemoryMonitor']) {
      await row.call(`${factory}(revoked)`, () => orion[factory](revoked()), { codes, bound })
    }
  }
}

async function constructors(row, n) {
  const orion = require(root)
  const classes = [
    ['SharedEmbeddingClient', 'getSharedEmbeddingClient'],
    ['ModelLoader', 'getModelLoader'],
    ['MemoryMonitor', 'getMemoryMonitor'],
    ['TokenStream', 'generateStream'],
  ]
  for (let i = 0; i < n; i++) {
    row.runs++
    for (const [cls, factory] of classes) {
      const args = i % 2 === 0 ? [] : [{ hostile: true }, 42]
      await row.call(`new ${cls}()`, () => new orion[cls](...args), {
        codes: ['INVALID_INPUT'],
        bound: 100,
        inspect: (e) => (e.message.includes(factory) ? null : `does not name ${factory}: ${e.message.slice(0, 200)}`),
      })
    }
  }
}

// ---------------------------------------------------------------- privacy

async function privacy(row, n) {
  const { runPrivately } = require('../../__tests__/hostile/privacy')
  const modelsDir = path.dirname(defaultModels().embedding)
  for (let i = 0; i < n; i++) {
    row.runs++
    await row.call(
      'embed (exact, int8), generate, snapshot with an empty HOME and TMPDIR',
      () => {
        const r = runPrivately(root, modelsDir)
        const wrong = []
        if (r.status !== 0 || r.signal) wrong.push(`exit ${r.status} ${r.signal}`)
        if (r.stderr) wrong.push(`stderr: ${r.stderr.slice(0, 200)}`)
        if (r.stdout.trim() !== JSON.stringify({ exact: 384, int8: 384, tokens: 4 })) wrong.push(`printed ${r.stdout}`)
        if (r.outside.length) wrong.push(`written outside the cache: ${r.outside}`)
        if (r.tmp.length) wrong.push(`written in TMPDIR: ${r.tmp}`)
        if (r.traced && r.inet.length) wrong.push(`connections: ${r.inet.slice(0, 2)}`)
        row.traced = r.traced
        return wrong
      },
      { check: (wrong) => (wrong.length ? wrong.join('; ') : null), bound: 60_000 },
    )
  }
}

// ---------------------------------------------------------------- timing

async function lastTokenGap(row, n) {
  const orion = require(root)
  const loader = orion.getModelLoader()
  await loader.loadModel('demo')
  const opts = { temperature: 0, maxTokens: 48 }
  const gaps = []
  // Conversations of three turns (the prefix cache, on by default, keeps each turn's
  // context for the next), and a fresh one after: every kind of keeping.
  let history = []
  for (let i = 0; i < n; i++) {
    row.runs++
    if (i % 3 === 0) history = [{ role: 'user', content: `Tell me a long story about a dragon number ${i}.` }]
    let last = 0
    const t = performance.now()
    const r = await loader.generate('demo', history, { ...opts, onToken: () => (last = performance.now()) })
    const gap = performance.now() - last
    gaps.push(gap)
    row.generateMs = Math.max(row.generateMs || 0, performance.now() - t)
    row.maxMs = Math.max(row.maxMs, gap)
    row.outcome(gap < row.boundMs ? 'correct result' : 'late')
    if (gap >= row.boundMs) row.problem(`generation ${i}: resolved ${gap.toFixed(1)} ms after its last token`)
    if (r.tokens < 1) row.problem(`generation ${i}: no tokens`)
    history = [...history, { role: 'assistant', content: r.text }, { role: 'user', content: 'And then?' }]
  }
  gaps.sort((a, b) => a - b)
  row.medianGapMs = gaps[Math.floor(gaps.length / 2)]
}

// ---------------------------------------------------------------- churn

/**
 * Worker side of the churn: a survivor loops on requests, timing each, until told to
 * stop; a victim starts a large request and is terminated in the middle of it.
 */
async function churnWorker() {
  const orion = require(root)
  const { role, id } = workerData
  const rand = () => Math.random().toString(36).slice(2)
  if (role === 'victim') {
    if (id % 4 === 3) {
      orion
        .getModelLoader()
        .generate('demo', `Tell me a long story about the number ${id}.`, { maxTokens: 200 })
        .catch(() => {})
    } else {
      const texts = Array.from({ length: 100 + ((id * 97) % 900) }, (_, i) => `victim ${id} text ${i} ${rand()}`)
      orion
        .getSharedEmbeddingClient()
        .createEmbeddings(texts)
        .catch(() => {})
    }
    parentPort.postMessage('started')
    return
  }
  let stop = false
  parentPort.once('message', () => (stop = true))
  const out = { requests: 0, maxMs: 0, errors: [], ms: [] }
  let i = 0
  while (!stop) {
    const t = performance.now()
    try {
      if (role === 'generator') {
        await orion
          .getModelLoader()
          .generate('demo', `Write one sentence about the number ${i}.`, { maxTokens: 24, temperature: 0 })
      } else if (id === 0) {
        await orion.getSharedEmbeddingClient().createEmbedding(`survivor ${id} request ${i} ${rand()}`)
      } else {
        const texts = Array.from({ length: 8 }, (_, k) => `survivor ${id} request ${i} text ${k} ${rand()}`)
        await orion.getSharedEmbeddingClient().createEmbeddings(texts)
      }
      out.requests++
    } catch (e) {
      out.errors.push(`${e.code}: ${String(e.message).slice(0, 200)}`)
    }
    const ms = performance.now() - t
    out.maxMs = Math.max(out.maxMs, ms)
    out.ms.push(Math.round(ms))
    i++
  }
  parentPort.postMessage(out)
}

async function churn(row, seconds) {
  const orion = require(root)
  // Models loaded first: the churn measures requests, not a first load.
  await orion.getSharedEmbeddingClient().createEmbedding('warm up')
  await orion.getModelLoader().generate('demo', 'hi', { maxTokens: 2 })
  const start = (data) => new Worker(__filename, { workerData: { scenario: 'churn', ...data } })
  const survivors = [
    start({ role: 'survivor', id: 0 }),
    start({ role: 'survivor', id: 1 }),
    start({ role: 'generator', id: 2 }),
  ]
  const reports = survivors.map(
    (w) =>
      new Promise((resolve, reject) => {
        w.once('message', resolve)
        w.once('error', reject)
      }),
  )
  const deadline = Date.now() + seconds * 1000
  let id = 0
  row.churned = 0
  // Two victims at a time, each terminated 0 to 250 ms after its request started.
  const victim = async () => {
    while (Date.now() < deadline) {
      const w = start({ role: 'victim', id: id++ })
      await new Promise((resolve, reject) => {
        w.once('message', resolve)
        w.once('error', reject)
      })
      await sleep(Math.floor(Math.random() * 250))
      await w.terminate()
      row.churned++
    }
  }
  await Promise.all([victim(), victim()])
  for (const w of survivors) w.postMessage('stop')
  const outs = await Promise.all(reports)
  await Promise.all(survivors.map((w) => w.terminate()))
  const [a, b, g] = outs
  row.runs = row.churned
  row.survivorRequests = a.requests + b.requests + g.requests
  row.slowestEmbeddingMs = Math.max(a.maxMs, b.maxMs)
  row.slowestGenerationMs = g.maxMs
  row.maxMs = Math.max(a.maxMs, b.maxMs, g.maxMs)
  const p = (ms, q) => ms.sort((x, y) => x - y)[Math.min(ms.length - 1, Math.floor(q * ms.length))]
  row.embeddingP50Ms = p([...a.ms, ...b.ms], 0.5)
  row.embeddingP99Ms = p([...a.ms, ...b.ms], 0.99)
  row.generationP50Ms = p(g.ms, 0.5)
  row.generationP99Ms = p(g.ms, 0.99)
  if (process.env.ORION_STRESS_DEBUG) row.latencies = outs.map((o) => o.ms)
  row.outcomes = { 'correct result': row.survivorRequests }
  for (const o of outs) {
    for (const e of o.errors) {
      row.outcome(e.split(':')[0])
      row.problem(`a surviving request failed: ${e}`)
    }
  }
  if (row.maxMs >= row.boundMs) row.problem(`a surviving request took ${row.maxMs.toFixed(0)} ms`)
  row.queueDepthAfter = orion.getSharedEmbeddingClient().getStats().queueDepth
}

// ---------------------------------------------------------------- the list

/**
 * Each scenario: runs (full, quick), the bound of one call (ms), the bound of the
 * process's peak RSS (MiB), and what it does, for the report.
 */
const SCENARIOS = {
  'remote-max-tokens': {
    runs: [200, 20],
    boundMs: 2000,
    rssMB: 256,
    what: 'a server ignoring max_tokens streams for ever: exactly maxTokens (1-64) pieces',
    run: remoteMaxTokens,
  },
  'remote-keepalive': {
    runs: [20, 6],
    boundMs: 2500,
    rssMB: 256,
    what: 'keep-alives and empty pieces after one piece, timeoutMs 1 s, 5 at a time',
    run: remoteKeepalive,
  },
  'remote-endless-line': {
    runs: [50, 10],
    boundMs: 4000,
    rssMB: 256,
    what: 'one endless SSE line at 64 MB/s, timeoutMs 4 s',
    run: remoteEndlessLine,
  },
  'remote-retry-after': {
    runs: [50, 10],
    boundMs: 2000,
    rssMB: 256,
    what: '503 + Retry-After: 29 for ever, timeoutMs 1 s: loadModel, generate, stream, 5 rounds at a time',
    run: remoteRetryAfter,
  },
  'remote-huge-body': {
    runs: [40, 8],
    boundMs: 10_000,
    rssMB: 160,
    what: '1 GB streamed chat reply, 1 GB JSON chat body, 200 MB /v1/models, 200 MB /v1/embeddings',
    run: remoteHugeBody,
  },
  'remote-width': {
    runs: [100, 20],
    boundMs: 2000,
    rssMB: 256,
    what: 'vectors of width 8, then 16, from one server (a fresh server per run)',
    run: remoteWidth,
  },
  'remote-secrets': {
    runs: [20, 4],
    boundMs: 6000,
    rssMB: 256,
    what: 'servers echoing Authorization (apiKey, URL password) and the URL (?api_key=) in 401s and SSE errors; the same for ORION_HF_ENDPOINT',
    run: remoteSecrets,
  },
  'download-range': {
    runs: [40, 8],
    boundMs: 10_000,
    rssMB: 320,
    what: 'a 1 MB part, then a 206 from 0, with another total, without Content-Range, or a 416 (8 MB file)',
    run: downloadRange,
  },
  'download-html': {
    runs: [40, 8],
    boundMs: 10_000,
    rssMB: 256,
    what: 'a 200 HTML page, or 4 MB that are not GGUF, then an honest server',
    run: downloadHtml,
  },
  'download-oversize': {
    runs: [40, 8],
    boundMs: 10_000,
    rssMB: 320,
    what: 'a part bigger than the size; twice the size sent; an endless body with no size (cap 64 MiB)',
    run: downloadOversize,
  },
  'download-trickle': {
    runs: [8, 4],
    boundMs: 3500,
    rssMB: 256,
    what: 'one byte per 50 ms, ORION_DOWNLOAD_DEADLINE_MS 1.5 s, 4 at a time',
    run: downloadTrickle,
  },
  'download-escape': {
    runs: [80, 16],
    boundMs: 1000,
    rssMB: 256,
    what: '../ and absolute hubFile and path, ../ in hubRepo, a link out of the models directory',
    run: downloadEscape,
  },
  'key-is-path': {
    runs: [50, 10],
    boundMs: 2000,
    rssMB: 256,
    what: "loadModel/generate of /etc/passwd, a secret file, ../ keys, .gguf paths to someone else's file",
    run: keyIsPath,
  },
  'download-not-asked': {
    runs: [30, 5],
    boundMs: 2000,
    rssMB: 256,
    what: 'missing registry, catalog and embedding models without ORION_ALLOW_DOWNLOADS',
    run: downloadNotAsked,
  },
  'gguf-hparams': {
    runs: [30, 5],
    boundMs: 5000,
    rssMB: 512,
    what: 'GGUF with eps -1/NaN, rope base NaN/0/-1: loadModel and generate',
    run: ggufHparams,
  },
  'onnx-special-files': {
    runs: [40, 8],
    boundMs: 1000,
    rssMB: 512,
    what: 'an embedding model whose model.onnx is a link to /dev/zero or a FIFO',
    run: embeddingSpecialFiles,
  },
  'huge-arrays': {
    runs: [200, 20],
    boundMs: 500,
    rssMB: 256,
    what: 'length 2**32-1 as messages, in 4 places of a descriptor, stop, bundledModelsDirs, createEmbeddings',
    run: hugeArrays,
  },
  'huge-key': {
    runs: [10, 3],
    boundMs: 2000,
    rssMB: 1024,
    what: 'a 100 MB key, option name, role, quantization level, models directory',
    run: hugeKey,
  },
  'bad-options': {
    runs: [200, 20],
    boundMs: 500,
    rssMB: 256,
    what: 'throwing and revoked Proxies as options and signal, in 5 methods and 3 factories',
    run: badOptions,
  },
  constructors: {
    runs: [500, 50],
    boundMs: 100,
    rssMB: 256,
    what: 'new SharedEmbeddingClient(), ModelLoader, MemoryMonitor, TokenStream',
    run: constructors,
  },
  privacy: {
    runs: [3, 1],
    boundMs: 60_000,
    // The run is a child process of its own: this one's RSS says nothing about it.
    rssMB: null,
    what: 'a worker embeds (exact, int8) and generates with an empty HOME and TMPDIR, under strace',
    run: privacy,
  },
  'last-token-gap': {
    runs: [30, 9],
    boundMs: 10,
    rssMB: 512,
    what: 'generate() with the prefix cache on (3-turn conversations, 48 tokens): last token to result',
    run: lastTokenGap,
  },
  churn: {
    runs: [60, 15],
    boundMs: 5000,
    rssMB: 1024,
    what: '2 workers embedding and 1 generating while others are terminated mid-request',
    run: churn,
  },
}

async function main() {
  const [name, quick] = process.argv.slice(2)
  const spec = SCENARIOS[name]
  if (!spec) {
    console.error(`unknown scenario ${name}; one of ${Object.keys(SCENARIOS).join(', ')}`)
    process.exit(2)
  }
  const row = recorder(spec.boundMs)
  const t = Date.now()
  await spec.run(row, spec.runs[quick === 'quick' ? 1 : 0])
  const { call, problem, outcome, ...report } = row
  report.rssMB = Math.round(process.resourceUsage().maxRSS / 1024)
  report.rssBoundMB = spec.rssMB
  report.seconds = (Date.now() - t) / 1000
  console.log(JSON.stringify({ scenario: name, ...report }))
  // Servers and timers may still hold the loop; the report is out.
  process.exit(0)
}

if (isMainThread) {
  module.exports = { SCENARIOS }
  if (require.main === module) main()
} else if (workerData.scenario === 'churn') {
  churnWorker()
}
