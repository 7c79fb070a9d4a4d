'use strict'
// Models shipped with an app: read-only directories searched before the models
// directory, set from code or the environment, used in place.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { root, embeddingModelDir, llmModelDir } = require('./helpers')

let resources, cache
beforeAll(() => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-bundled-'))
  resources = path.join(tmp, 'resources', 'models')
  cache = path.join(tmp, 'cache')
  fs.mkdirSync(resources, { recursive: true })
  fs.symlinkSync(embeddingModelDir, path.join(resources, 'all-MiniLM-L6-v2'))
  fs.symlinkSync(llmModelDir, path.join(resources, 'smollm2-135m-instruct'))
  fs.chmodSync(resources, 0o555) // as read-only as an app's resources
})

function run(script, env) {
  const r = spawnSync(process.execPath, ['-e', script], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, ORION_MODELS_DIR: '', ORION_BUNDLED_MODELS_DIRS: '', XDG_CACHE_HOME: cache, ...env },
  })
  if (r.status !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout)
}

const SCRIPT = (configure) => `
  const orion = require(${JSON.stringify(root)})
  ${configure}
  ;(async () => {
    const v = await orion.getSharedEmbeddingClient().createEmbedding('from the app bundle')
    const loader = orion.getModelLoader()
    const info = await loader.loadModel('demo')
    const demo = loader.listModels().find((m) => m.key === 'demo')
    const mistral = loader.listModels().find((m) => m.key === 'Mistral-7B-Instruct-v0.2')
    console.log(JSON.stringify({ dims: v.length, path: info.path, demo, mistral, settings: orion.configure() }))
  })().catch((e) => { console.error(e.code, e.message); process.exit(1) })`

test('configure({ bundledModelsDirs }) serves both models from a read-only directory, copying nothing', () => {
  const out = run(SCRIPT(`orion.configure({ bundledModelsDirs: [${JSON.stringify(resources)}] })`))
  expect(out.dims).toBe(384)
  expect(out.path).toBe(path.join(resources, 'smollm2-135m-instruct', 'SmolLM2-135M-Instruct.Q4_1.gguf'))
  expect(out.settings.bundledModelsDirs).toEqual([resources])
  expect(out.demo.onDisk).toBe(true)
  expect(out.demo.files[0]).toMatchObject({ level: 'q4', onDisk: true, bytes: 98362432, path: out.path })
  // A catalog model not on disk: listed with where it would go and where it comes from.
  expect(out.mistral.onDisk).toBe(false)
  expect(out.mistral.files.find((f) => f.level === 'q4')).toMatchObject({
    onDisk: false,
    bytes: 4368439584,
    hubRepo: 'TheBloke/Mistral-7B-Instruct-v0.2-GGUF',
  })
  // Nothing was written to the user's cache.
  expect(fs.existsSync(path.join(cache, 'orion-native', 'models'))).toBe(false)
})

test('ORION_BUNDLED_MODELS_DIRS does the same from the environment', () => {
  const out = run(SCRIPT(''), { ORION_BUNDLED_MODELS_DIRS: ['/nonexistent/first', resources].join(path.delimiter) })
  expect(out.dims).toBe(384)
  expect(out.path.startsWith(resources)).toBe(true)
  expect(out.settings.bundledModelsDirs).toEqual(['/nonexistent/first', resources])
})

test('MODEL_NOT_FOUND names every directory searched: each bundled one, then the models directory', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-searched-'))
  const [a, b, models] = ['a', 'b', 'models'].map((d) => path.join(tmp, d))
  for (const d of [a, b, models]) fs.mkdirSync(d)
  const registry = path.join(tmp, 'registry.json')
  fs.writeFileSync(registry, JSON.stringify({ mine: { files: { q4: { path: 'mine/mine.gguf' } } } }))
  const script = `
    const orion = require(${JSON.stringify(root)})
    orion.configure({ bundledModelsDirs: ${JSON.stringify([a, b])}, modelsDir: ${JSON.stringify(models)} })
    const codeAndMessage = (p) => p.then(() => 'loaded', (e) => e.code + ' ' + e.message)
    ;(async () => {
      const embedding = await codeAndMessage(orion.getSharedEmbeddingClient({ model: 'my-embedder' }).createEmbedding('x'))
      const llm = await codeAndMessage(orion.getModelLoader().loadModel('mine'))
      console.log(JSON.stringify({ embedding, llm }))
    })()`
  const out = run(script, { ORION_MODEL_REGISTRY: registry })
  const list = (name) => [a, b, models].map((d) => path.join(d, name)).join(', then ')
  expect(out.embedding).toMatch(/^MODEL_NOT_FOUND /)
  expect(out.embedding).toContain(`(searched ${list('my-embedder')})`)
  expect(out.llm).toMatch(/^MODEL_NOT_FOUND /)
  expect(out.llm).toContain(`(searched ${list('mine')})`)
})
