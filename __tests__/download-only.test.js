'use strict'
// loader.downloadModel: the file loadModel would load, fetched the same way (from a local
// server with the hub's layout), checked, and not loaded. In a child process, so that the
// registry and the models directory are its own.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const http = require('node:http')
const crypto = require('node:crypto')
const { spawn } = require('node:child_process')
const { root, llmModelDir } = require('./helpers')

const GGUF = path.join(llmModelDir, 'SmolLM2-135M-Instruct.Q4_1.gguf')
let server, port, tmp, bytes, requests

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-download-only-'))
  bytes = fs.readFileSync(GGUF)
  requests = 0
  server = http.createServer((req, res) => {
    requests++
    if (req.url !== '/test/demo/resolve/main/copy.Q4_1.gguf') return res.writeHead(404).end('Entry not found')
    res.writeHead(200, { 'content-length': bytes.length }).end(bytes)
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  port = server.address().port
})
afterAll(() => {
  server.close()
  fs.rmSync(tmp, { recursive: true, force: true })
})

function child(script, registry) {
  const file = path.join(tmp, 'registry.json')
  fs.writeFileSync(file, JSON.stringify(registry))
  const env = { ...process.env, XDG_CACHE_HOME: path.join(tmp, 'cache'), ORION_MODELS_DIR: path.join(tmp, 'models') }
  Object.assign(env, { ORION_MODEL_REGISTRY: file, ORION_HF_ENDPOINT: `http://127.0.0.1:${port}` })
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['-e', `const orion = require(${JSON.stringify(root)});\n${script}`], { env })
    let out = ''
    let err = ''
    c.stdout.on('data', (d) => (out += d))
    c.stderr.on('data', (d) => (err += d))
    c.on('close', (code) => (code === 0 && !err ? resolve(JSON.parse(out)) : reject(new Error(`exit ${code}: ${err}`))))
  })
}

const entry = (sha256) => ({
  copy: { files: { q4: { hubRepo: 'test/demo', hubFile: 'copy.Q4_1.gguf', sha256, size: bytes.length } } },
})
const sha = crypto.createHash('sha256')

test('downloadModel fetches and checks the file, reports 0 to 100, and loads nothing', async () => {
  const digest = sha.copy().update(bytes).digest('hex')
  const script = `
    const loader = orion.getModelLoader()
    const progress = []
    ;(async () => {
      const first = await loader.downloadModel('copy', (p) => progress.push(p))
      const second = await loader.downloadModel('copy')
      console.log(JSON.stringify({ first, second, progress, loaded: loader.getStats().loadedModels }))
    })().catch((e) => { console.error(e.code, e.message); process.exit(1) })`
  const out = await child(script, entry(digest))
  const dest = path.join(tmp, 'models', 'copy.Q4_1.gguf')
  expect(out.first).toEqual({ key: 'copy', path: dest, quantization: 'Q4_1', bytes: bytes.length, downloaded: true })
  expect(out.second).toEqual({ ...out.first, downloaded: false })
  expect(out.loaded).toBe(0)
  expect(out.progress.at(-1)).toBe(100)
  expect(out.progress.length).toBeGreaterThan(2)
  for (let i = 1; i < out.progress.length; i++) expect(out.progress[i]).toBeGreaterThanOrEqual(out.progress[i - 1])
  expect(fs.readFileSync(dest).equals(bytes)).toBe(true)
  expect(requests).toBeGreaterThan(0)
})

test('a file on disk whose sha256 is not the registry one is MODEL_LOAD_FAILED, and nothing is fetched', async () => {
  const before = requests
  const script = `
    orion.getModelLoader().downloadModel('copy').then(
      () => console.log('"downloaded"'),
      (e) => console.log(JSON.stringify({ code: e.code, message: e.message })),
    )`
  const out = await child(script, entry('0'.repeat(64)))
  expect(out.code).toBe('MODEL_LOAD_FAILED')
  expect(out.message).toMatch(/but the registry expects 0{64}/)
  expect(requests).toBe(before)
})

test('a remote model has no file to download: INVALID_INPUT', async () => {
  const script = `
    orion.getModelLoader().downloadModel('far').then(
      () => console.log('"downloaded"'),
      (e) => console.log(JSON.stringify({ code: e.code, message: e.message })),
    )`
  const out = await child(script, { far: { remote: { url: 'http://127.0.0.1:9', model: 'm' } } })
  expect(out).toEqual({ code: 'INVALID_INPUT', message: expect.stringMatching(/remote servers: it has no file/) })
})
