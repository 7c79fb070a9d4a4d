'use strict'
// Hostile files and arguments (issue 22): model files whose values llama.cpp or
// fastembed would act on blindly, arrays that claim four billion items, option objects
// that throw, and inputs big enough to make a message of megabytes. Each gets a coded
// error, quickly, and the process goes on.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { root, expectCode, expectThrowCode, cosine, embeddingModelDir, llmModelDir } = require('./helpers')
const orion = require(root)

const GGUF = path.join(llmModelDir, 'SmolLM2-135M-Instruct.Q4_1.gguf')
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-validation-'))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

/** An array that says it holds 2^32 - 1 items and holds none. */
function huge() {
  const a = []
  a.length = 2 ** 32 - 1
  return a
}

/** A copy of the embedding model's directory, with `edit(dir)` applied. */
function modelDir(name, edit) {
  const dir = path.join(tmp, name)
  fs.mkdirSync(dir)
  for (const f of fs.readdirSync(embeddingModelDir)) {
    if (!f.startsWith('.')) fs.copyFileSync(path.join(embeddingModelDir, f), path.join(dir, f))
  }
  edit(dir)
  return dir
}

describe('GGUF hyperparameters', () => {
  test('a bad norm epsilon or rope base is MODEL_LOAD_FAILED at load, naming the key and value', () => {
    const eps = 'llama.attention.layer_norm_rms_epsilon'
    const base = 'llama.rope.freq_base'
    const cases = [
      [eps, -1, '= -1'],
      [eps, 'NaN', '= NaN'],
      [base, 'NaN', '= NaN'],
      [base, 0, '= 0'],
      [base, -1, '= -1'],
    ]
    const r = spawnSync(
      process.execPath,
      [path.join(__dirname, 'hostile', 'gguf-hparams.js'), root, GGUF, JSON.stringify(cases.map(([k, v]) => [k, v]))],
      { encoding: 'utf8', timeout: 120_000 },
    )
    // An abort (GGML_ASSERT) shows here as SIGABRT.
    expect({ status: r.status, signal: r.signal, stderr: r.stderr.slice(-2000) }).toMatchObject({
      status: 0,
      signal: null,
    })
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1))
    cases.forEach(([key, , value], i) => {
      expect(out.cases[i]).toMatchObject({ code: 'MODEL_LOAD_FAILED' })
      expect(out.cases[i].message).toContain(`${key} ${value}`)
    })
    expect(out.after).toMatch(/Paris/)
  }, 120_000)

  test("the quantization label is the file's, not the registry level's", async () => {
    // No type in the file name, listed under q4: the label once said Q4_K_M.
    const link = path.join(tmp, 'model.gguf')
    fs.symlinkSync(GGUF, link)
    const loader = orion.getModelLoader()
    loader.registerModel('label-from-file', { files: { q4: { path: link } } })
    const info = await loader.loadModel('label-from-file')
    expect(info.quantization).toBe('Q4_1')
    expect(loader.getStats().models.find((m) => m.key === 'label-from-file').quantization).toBe('Q4_1')
    await loader.unloadModel('label-from-file')
  })
})

describe('arrays that claim 2^32 - 1 items', () => {
  const loader = orion.getModelLoader()

  test('as chat messages: INVALID_INPUT at once', async () => {
    const t = Date.now()
    const err = await expectCode(loader.generate('demo', huge()), 'INVALID_INPUT')
    expect(err.message).toMatch(/4294967295/)
    // A Proxy of an array, and an object with a length, are not arrays.
    const proxy = new Proxy([], { get: (target, k) => (k === 'length' ? 2 ** 32 - 1 : target[k]) })
    await expectCode(loader.generate('demo', proxy), 'INVALID_INPUT')
    await expectCode(loader.generate('demo', { length: 2 ** 32 - 1 }), 'INVALID_INPUT')
    expect(Date.now() - t).toBeLessThan(2000)
  })

  test.each([
    ['name', (d) => ({ ...d, name: huge() })],
    ['files.q4.sha256', (d) => ({ files: { q4: { ...d.files.q4, sha256: huge() } } })],
    ['files.q4', () => ({ files: { q4: huge() } })],
    ['remote.url', () => ({ remote: { url: huge(), model: 'm' } })],
  ])('anywhere in a descriptor (%s): INVALID_OPTION at once', (where, make) => {
    const t = Date.now()
    const err = expectThrowCode(
      () => loader.registerModel('huge-array', make({ files: { q4: { path: GGUF } } })),
      'INVALID_OPTION',
    )
    expect(err.message).toMatch(/4294967295 items/)
    expect(Date.now() - t).toBeLessThan(2000)
  })

  test('in options and texts: coded at once', async () => {
    const t = Date.now()
    await expectCode(loader.generate('demo', 'hi', { stop: huge() }), 'INVALID_OPTION')
    expectThrowCode(() => orion.configure({ bundledModelsDirs: huge() }), 'INVALID_OPTION')
    await expectCode(orion.getSharedEmbeddingClient().createEmbeddings(huge()), 'INVALID_INPUT')
    expect(Date.now() - t).toBeLessThan(2000)
  })
})

describe('embedding model files', () => {
  const fifo = (file) => {
    fs.rmSync(file, { force: true })
    const r = spawnSync('mkfifo', [file])
    if (r.status !== 0) throw new Error(`mkfifo failed: ${r.stderr}`)
  }
  // model.onnx is read first, within a second; the others after the ONNX graph is
  // prepared, which takes longer on a slow machine.
  test.each([
    [
      'model.onnx',
      'a link to /dev/zero',
      (file) => {
        fs.rmSync(file)
        fs.symlinkSync('/dev/zero', file)
      },
      1000,
    ],
    ['model.onnx', 'a FIFO', fifo, 1000],
    ['tokenizer.json', 'a FIFO', fifo, 10_000],
    ['config.json', 'a FIFO', fifo, 10_000],
    [
      'tokenizer_config.json',
      'a directory',
      (file) => {
        fs.rmSync(file)
        fs.mkdirSync(file)
      },
      10_000,
    ],
  ])('%s as %s is MODEL_LOAD_FAILED, quickly', async (name, what, edit, ms) => {
    const dir = modelDir(`${name}-${what}`.replace(/\W+/g, '-'), (d) => edit(path.join(d, name)))
    const t = Date.now()
    const client = orion.getSharedEmbeddingClient({ modelPath: dir, timeoutMs: 30_000 })
    const err = await expectCode(client.createEmbedding('hello'), 'MODEL_LOAD_FAILED')
    expect(Date.now() - t).toBeLessThan(ms)
    expect(err.message).toMatch(/not a regular file/)
    expect(err.message).toContain(name)
    // The service is not wedged: the default model still answers.
    expect(await orion.getSharedEmbeddingClient().createEmbedding(`after ${name} ${what}`)).toHaveLength(384)
  })

  test('model_max_length 1 in tokenizer_config.json does not cut texts to a token', async () => {
    const dir = modelDir('max-length-1', (d) => {
      const file = path.join(d, 'tokenizer_config.json')
      const config = JSON.parse(fs.readFileSync(file, 'utf8'))
      fs.writeFileSync(file, JSON.stringify({ ...config, model_max_length: 1 }))
    })
    const text =
      'The committee met on Thursday to discuss the budget for next year, and after a long debate ' +
      'it agreed to spend more on schools, roads and the public library.'
    const cut = await orion.getSharedEmbeddingClient({ modelPath: dir }).createEmbedding(text)
    const normal = await orion.getSharedEmbeddingClient().createEmbedding(text)
    expect(cosine(cut, normal)).toBeGreaterThan(0.99)
  })
})

describe('options that throw', () => {
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

  test.each([
    ['a throwing Proxy as signal', () => ({ signal: throwing() })],
    ['a revoked Proxy as signal', () => ({ signal: revoked() })],
    ['a revoked Proxy as options', revoked],
  ])('%s is INVALID_OPTION', async (name, options) => {
    const loader = orion.getModelLoader()
    const client = orion.getSharedEmbeddingClient()
    await expectCode(loader.generate('demo', 'hi', options()), 'INVALID_OPTION')
    await expectCode(loader.loadModel('demo', undefined, options()), 'INVALID_OPTION')
    await expectCode(client.createEmbedding('hi', options()), 'INVALID_OPTION')
    await expectCode(client.createEmbeddings(['hi'], options()), 'INVALID_OPTION')
    expectThrowCode(() => loader.generateStream('demo', 'hi', options()), 'INVALID_OPTION')
  })

  test('a revoked Proxy as a factory’s options is INVALID_OPTION', () => {
    const { proxy, revoke } = Proxy.revocable({}, {})
    revoke()
    expectThrowCode(() => orion.getSharedEmbeddingClient(proxy), 'INVALID_OPTION')
    expectThrowCode(() => orion.getModelLoader(proxy), 'INVALID_OPTION')
    expectThrowCode(() => orion.getMemoryMonitor(proxy), 'INVALID_OPTION')
  })

  test.each([
    ['SharedEmbeddingClient', 'getSharedEmbeddingClient'],
    ['ModelLoader', 'getModelLoader'],
    ['MemoryMonitor', 'getMemoryMonitor'],
    ['TokenStream', 'generateStream'],
  ])('new %s() is coded and names the factory', (cls, factory) => {
    const err = expectThrowCode(() => new orion[cls](), 'INVALID_INPUT')
    expect(err.message).toContain(factory)
  })
})

describe('messages stay short whatever the input', () => {
  const big = 'k'.repeat(1 << 20)

  test.each([
    ['an unknown 1 MB model key', () => orion.getModelLoader().loadModel(big), 'UNKNOWN_MODEL'],
    ['a 1 MB option name', () => orion.getSharedEmbeddingClient().createEmbedding('x', { [big]: 1 }), 'INVALID_OPTION'],
    [
      'a 1 MB chat role',
      () => orion.getModelLoader().generate('demo', [{ role: big, content: 'hi' }]),
      'INVALID_INPUT',
    ],
    [
      'a getter throwing a 1 MB message',
      () =>
        orion.getModelLoader().generate('demo', 'hi', {
          get signal() {
            throw new Error(big)
          },
        }),
      'INVALID_OPTION',
    ],
  ])('%s', async (name, call, code) => {
    const err = await expectCode(call(), code)
    expect(err.message.length).toBeLessThan(5000)
  })

  test.each([
    ['a 1 MB option name of a factory', () => orion.getModelLoader({ [big]: 1 })],
    ['a 1 MB registry key', () => orion.getModelLoader().registerModel(big, { files: {} })],
    ['a 1 MB quantization level', () => orion.applyQuantization('m', big)],
    ['a 1 MB models directory with a NUL', () => orion.configure({ modelsDir: `${big}\0` })],
  ])('%s', (name, call) => {
    const err = expectThrowCode(call, 'INVALID_OPTION')
    expect(err.message.length).toBeLessThan(5000)
  })
})
