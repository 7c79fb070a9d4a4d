'use strict'
// Every code snippet of README.md and docs/MIGRATION.md (its ```js and ```ts blocks) runs
// as written, each in a fresh Node process with `require('orion-native')` and
// `from 'orion-native'` pointing at this checkout. TypeScript is only stripped of its
// types (typescript's transpileModule). A snippet that talks to `parentPort` is worker
// code: it runs in a real worker_thread whose parent collects its messages. A snippet
// passes when it ends (or says what DRIVE waits for) with nothing on stderr: a
// callback that throws is reported as an ORION_CALLBACK_ERROR warning there. A snippet
// that cannot run as written is a bug in the document, not in this test.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { pathToFileURL } = require('node:url')
const { spawn } = require('node:child_process')
const ts = require('typescript')
const { root } = require('./helpers')
const { modelsDir } = require('../lib/paths')

const DOCS = ['README.md', 'docs/MIGRATION.md']

// Snippets that cannot run here, each for the reason given. They are still compiled.
const SKIP = [
  {
    doc: 'README.md',
    has: "url: ['http://gpu-1:8080', 'http://gpu-2:8080']",
    reason: 'needs OpenAI-compatible servers at gpu-1 and gpu-2',
  },
  {
    doc: 'README.md',
    has: "modelPath: '/models/nomic-embed-text-v1.5.Q8_0.gguf'",
    reason:
      'needs a GGUF embedding model at /models (no hub here; __tests__/embedding-gguf.test.js runs the same calls on a GGUF twin)',
  },
  {
    doc: 'README.md',
    has: "modelPath: '/models/bge-reranker-v2-m3-Q8_0.gguf'",
    reason:
      'needs a GGUF reranker at /models (no hub here; __tests__/rerank.test.js runs the same calls on a reranker fixture)',
  },
  {
    doc: 'docs/MIGRATION.md',
    has: "from '@xenova/transformers'",
    reason: "the app's code before the migration, on @xenova/transformers (not a dependency)",
  },
]

// What the process around a snippet provides, as its real host would.
const HOST = [
  // Electron's main process defines process.resourcesPath; Node does not.
  { has: 'process.resourcesPath', preload: 'process.resourcesPath = require("node:os").tmpdir()' },
]

// Worker snippets that act on messages: what the parent sends, and the message type that
// ends the run.
const DRIVE = [
  {
    has: "type === 'load_model'",
    send: [
      { type: 'load_model', payload: { modelKey: 'demo' } },
      { type: 'generate', payload: { modelKey: 'demo', question: 'What is the capital of France?' } },
    ],
    until: 'answer',
  },
]

// What a snippet's output must show beyond a clean run.
const EXPECT = [{ has: 'console.log(vector.length) // 384', stdout: /^384$/m }]

/** The ```js and ```ts blocks of `doc`, with the line each starts on. */
function snippets(doc) {
  const text = fs.readFileSync(path.join(root, doc), 'utf8')
  const out = []
  const re = /^```(js|ts)\n([\s\S]*?)^```$/gm
  for (let m; (m = re.exec(text));) {
    const line = text.slice(0, m.index).split('\n').length
    out.push({ doc, line, lang: m[1], code: m[2] })
  }
  return out
}

const all = DOCS.flatMap(snippets)
const find = (table, s) => table.find((t) => (!t.doc || t.doc === s.doc) && s.code.includes(t.has))

/** The snippet as a file to run: types stripped, the package pointing at this checkout. */
function prepare(s, dir) {
  const esm = /^(import|export) /m.test(s.code)
  let code = s.code
  if (s.lang === 'ts') {
    const module = esm ? ts.ModuleKind.ESNext : ts.ModuleKind.CommonJS
    code = ts.transpileModule(code, { compilerOptions: { module, target: ts.ScriptTarget.ES2022 } }).outputText
  }
  code = code
    .replaceAll("require('orion-native')", `require(${JSON.stringify(root)})`)
    .replaceAll("from 'orion-native'", `from ${JSON.stringify(pathToFileURL(path.join(root, 'index.js')).href)}`)
  const file = path.join(dir, `snippet-${path.basename(s.doc, '.md')}-${s.line}${esm ? '.mjs' : '.cjs'}`)
  fs.writeFileSync(file, code)
  return file
}

// Runs the snippet in a worker_thread; prints the messages it sent as one JSON line.
const WORKER_HOST = `
const { Worker } = require('node:worker_threads')
const [file, drive] = [process.argv[2], JSON.parse(process.argv[3] || 'null')]
const messages = []
const w = new Worker(file)
const done = () => process.stdout.write('\\n@@messages ' + JSON.stringify(messages) + '\\n')
w.on('message', (m) => {
  messages.push(m)
  if (drive && m && m.type === drive.until) w.terminate().then(done)
})
w.on('error', (e) => { console.error('worker error:', e && e.stack || e); process.exitCode = 1 })
w.on('exit', () => { if (!drive) done() })
if (drive) for (const m of drive.send) w.postMessage(m)
`

let tmp
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-snippets-'))
  fs.writeFileSync(path.join(tmp, 'worker-host.cjs'), WORKER_HOST)
})
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

function run(args) {
  const env = { ...process.env, ORION_MODELS_DIR: modelsDir(), XDG_CACHE_HOME: path.join(tmp, 'cache') }
  for (const k of Object.keys(env)) if (k.startsWith('ORION_') && k !== 'ORION_MODELS_DIR') delete env[k]
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: tmp, env })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 50_000)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

test('the documents have the snippets this test knows about', () => {
  // A snippet block renamed or dropped must not silently shrink what runs.
  expect(all.length).toBeGreaterThanOrEqual(10)
  for (const t of [...SKIP, ...HOST, ...DRIVE, ...EXPECT])
    expect([t.has, all.some((s) => s.code.includes(t.has))]).toEqual([t.has, true])
})

describe.each(all.map((s) => [`${s.doc}:${s.line}`, s]))('%s', (_, s) => {
  const skip = find(SKIP, s)
  const worker = /\bparentPort\b/.test(s.code)

  test('compiles', async () => {
    const r = await run(['--check', prepare(s, tmp)])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
  })

  const runs = skip ? test.skip : test
  runs(skip ? `runs (skipped: ${skip.reason})` : worker ? 'runs in a worker_thread' : 'runs', async () => {
    const file = prepare(s, tmp)
    const host = find(HOST, s)
    const drive = find(DRIVE, s)
    const args = []
    if (host) {
      const preload = path.join(tmp, 'preload.cjs')
      fs.writeFileSync(preload, host.preload)
      args.push('--require', preload)
    }
    if (worker) args.push(path.join(tmp, 'worker-host.cjs'), file, JSON.stringify(drive || null))
    else args.push(file)
    const r = await run(args)
    expect(r.stderr).toBe('')
    expect({ code: r.code, signal: r.signal }).toEqual({ code: 0, signal: null })
    const expected = find(EXPECT, s)
    if (expected) expect(r.stdout).toMatch(expected.stdout)
    if (!worker) return
    const line = r.stdout.split('\n').find((l) => l.startsWith('@@messages '))
    expect(line).toBeDefined()
    const messages = JSON.parse(line.slice('@@messages '.length))
    expect(messages.length).toBeGreaterThan(0)
    // Progress reaches whoever listens, up to 100.
    if (s.code.includes('load_progress')) {
      const progress = messages.filter((m) => m.type === 'load_progress').map((m) => m.payload.progress)
      expect(progress.at(-1)).toBe(100)
    }
    if (drive) expect(messages.at(-1).type).toBe(drive.until)
  })
})
