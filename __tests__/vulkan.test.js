'use strict'
// GPUs (issue 25): the `gpu` setting, and a GPU backend as a module on a real Vulkan
// device, Mesa's lavapipe (a Vulkan 1.3 implementation that runs on the CPU). ggml's
// Vulkan backend is built from the addon's own llama.cpp tree (scripts/ggml-backends.js,
// run by the test command) and loaded into the addon's libggml through ggml's
// GGML_BACKEND_PATH; llama.cpp then offloads the demo model's layers to the device, and
// says so in its log.
//
// lavapipe is a CPU-type Vulkan device, which ggml-vulkan leaves out unless
// GGML_VK_VISIBLE_DEVICES names it: without that, the backend loads and finds no device.
// Every case runs in a child process: the setting and the backends are process-wide.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync, execFileSync } = require('node:child_process')
const { root } = require('./helpers')
const { builtVulkan, missing } = require('../scripts/ggml-backends')
const { brokenIcd } = require('../scripts/broken-icd')

const LAVAPIPE = '/usr/share/vulkan/icd.d/lvp_icd.x86_64.json'
const module_ = builtVulkan()
const why = missing() || (!module_ && 'the module is not built (node scripts/ggml-backends.js)')
const lavapipe = fs.existsSync(LAVAPIPE)
if (why) console.log(`skipped: the Vulkan tests (${why})`)
else if (!lavapipe)
  console.log(`skipped: the Vulkan tests on lavapipe (no lavapipe: apt-get install mesa-vulkan-drivers)`)

const QUESTION = 'What is the capital of France?'

/** Runs `body` (with `o`, the package) in a child; returns what it logs as JSON, and stderr. */
function child(body, env = {}) {
  const script = `
    const o = require(${JSON.stringify(root)})
    const maps = () => {
      const m = require('node:fs').readFileSync('/proc/self/maps', 'utf8')
      return [...new Set(m.split('\\n').map((l) => l.split(/\\s+/).pop()))]
    }
    const out = (v) => console.log(JSON.stringify(v))
    ;(async () => { ${body} })().catch((e) => out({ error: { code: e.code, message: e.message } }))`
  const r = spawnSync(process.execPath, ['-e', script], {
    encoding: 'utf8',
    timeout: 280_000,
    env: { ...process.env, ORION_GPU: undefined, GGML_BACKEND_PATH: undefined, ...env },
  })
  expect({ status: r.status, signal: r.signal, stderr: r.status === 0 ? '' : r.stderr.slice(-3000) }).toEqual({
    status: 0,
    signal: null,
    stderr: '',
  })
  return { out: JSON.parse(r.stdout.trim().split('\n').pop()), log: r.stderr }
}

const offloaded = (log) => {
  const m = /offloaded (\d+)\/(\d+) layers to GPU/.exec(log)
  return m && [Number(m[1]), Number(m[2])]
}

describe('the gpu setting', () => {
  test('configure({ gpu }) takes a backend name, auto or false, and nothing else', () => {
    const { out } = child(`
      const r = { initial: o.configure({}).gpu }
      for (const g of ['vulkan', 'cuda', 'metal', false, true, 'auto']) r[String(g)] = o.configure({ gpu: g }).gpu
      for (const g of ['vulkn', 3, null, ['cuda']]) {
        try { o.configure({ gpu: g }); r[JSON.stringify(g)] = 'accepted' } catch (e) { r[JSON.stringify(g)] = e.code + ': ' + e.message }
      }
      out(r)`)
    expect(out).toEqual({
      initial: 'auto',
      vulkan: 'vulkan',
      cuda: 'cuda',
      metal: 'metal',
      false: false,
      true: 'auto',
      auto: 'auto',
      '"vulkn"':
        "INVALID_OPTION: options.gpu must be 'auto', 'vulkan', 'cuda', 'metal' or false, got a value of type string",
      3: "INVALID_OPTION: options.gpu must be 'auto', 'vulkan', 'cuda', 'metal' or false, got the number 3",
      null: "INVALID_OPTION: options.gpu must be 'auto', 'vulkan', 'cuda', 'metal' or false, got a value of type null",
      '["cuda"]': "INVALID_OPTION: options.gpu must be 'auto', 'vulkan', 'cuda', 'metal' or false, got an array",
    })
  })

  test('a backend asked for by name that is not there fails the load with GPU_UNAVAILABLE, saying why', () => {
    const { out } = child(
      `
      const s = o.getOptimizationStrategy()
      await o.getModelLoader().loadModel('demo')
      out({ loaded: true })`,
      { ORION_GPU: 'cuda' },
    )
    expect(out.error.code).toBe('GPU_UNAVAILABLE')
    expect(out.error.message).toMatch(/^gpu: 'cuda' was asked for \(configure\(\) or ORION_GPU\), but no CUDA backend/)
    expect(out.error.message).toContain("Use gpu: 'auto'")
  })

  test('ORION_GPU=false keeps models on the CPU; a misspelt ORION_GPU is INVALID_OPTION', () => {
    const off = child(
      `const s = o.getOptimizationStrategy(); out({ device: s.device, layers: s.gpuLayers, reasons: s.reasons, gpu: o.configure({}).gpu })`,
      { ORION_GPU: 'false' },
    ).out
    expect(off).toEqual(expect.objectContaining({ layers: 0, gpu: false }))
    expect(off.device).toBeUndefined()
    expect(off.reasons.some((r) => r.startsWith('gpu: false (configure() or ORION_GPU): CPU only'))).toBe(true)
    const bad = child(`await o.getModelLoader().loadModel('demo'); out({ loaded: true })`, { ORION_GPU: 'vulkn' }).out
    expect(bad.error).toEqual({
      code: 'INVALID_OPTION',
      message: 'ORION_GPU="vulkn" is not one of auto, vulkan, cuda, metal, false',
    })
  })
})

/** The environment that loads the built module and lets ggml-vulkan see lavapipe. */
const vulkan = (extra) => ({
  ORION_LLAMA_LOG: '1',
  GGML_BACKEND_PATH: module_,
  VK_ICD_FILENAMES: LAVAPIPE,
  GGML_VK_VISIBLE_DEVICES: '0',
  ...extra,
})

;(why || !lavapipe ? describe.skip : describe)('Vulkan on lavapipe', () => {
  const generate = `
    const s = o.getOptimizationStrategy()
    const r = await o.getModelLoader().generate('demo', ${JSON.stringify(QUESTION)}, { temperature: 0, maxTokens: 24 })
    out({ device: s.device, gpus: s.gpus, layers: s.gpuLayers, reasons: s.reasons, text: r.text,
      vulkan: maps().filter((f) => /libggml-vulkan\\.so$/.test(f)), lvp: maps().filter((f) => /libvulkan_lvp\\.so$/.test(f)) })`

  test("gpu: 'vulkan' runs the demo model with every layer on the device, and it answers", () => {
    const started = Date.now()
    const { out, log } = child(generate, vulkan({ ORION_GPU: 'vulkan' }))
    console.log(
      `lavapipe: ${out.device && out.device.name}; ${offloaded(log)} layers offloaded; ` +
        `answered in ${((Date.now() - started) / 1000).toFixed(1)} s`,
    )
    expect(out.gpus.map((g) => [g.backend, /llvmpipe/.test(g.name)])).toEqual([['Vulkan', true]])
    expect(out.device).toEqual(out.gpus[0])
    expect(out.device.freeBytes).toBeGreaterThan(0)
    expect(out.layers).toBeGreaterThan(0)
    // llama.cpp's own account of the load: every layer on the device.
    const [n, total] = offloaded(log)
    expect(n).toBe(total)
    expect(n).toBeGreaterThan(0)
    expect(out.vulkan).toEqual([module_])
    expect(out.lvp.length).toBe(1)
    expect(out.text).toMatch(/Paris/)
  }, 300_000)

  const twins = require('../scripts/gguf-twin').built()
  ;(twins ? test : test.skip)(
    "gpu: 'vulkan' puts a GGUF embedding model on the device whole, and its vectors are the CPU's",
    () => {
      const texts = ['Paris is the capital of France.', 'How do plants make food?', '']
      const body = `
        const c = o.getSharedEmbeddingClient({ modelPath: ${JSON.stringify(twins.f16)} })
        const vectors = await c.createEmbeddings(${JSON.stringify(texts)})
        out({ vectors, stats: c.getStats() })`
      const gpu = child(body, vulkan({ ORION_GPU: 'vulkan' }))
      const cpu = child(body, vulkan({ ORION_GPU: 'false' }))
      // llama.cpp's account of the load: every layer (and the output) on lavapipe.
      const [n, total] = offloaded(gpu.log)
      expect(n).toBe(total)
      expect(n).toBeGreaterThan(0)
      // On the CPU, no device at all: llama.cpp offloads nothing (and says nothing of it).
      expect(offloaded(cpu.log) || [0, total]).toEqual([0, total])
      expect(gpu.out.stats).toMatchObject({ engine: 'llama', modelLoads: 1 })
      const { cosine } = require('./helpers')
      gpu.out.vectors.forEach((v, i) => expect(cosine(v, cpu.out.vectors[i])).toBeGreaterThan(0.999))
    },
    300_000,
  )

  test('the module passes its check in a child process; auto never takes the CPU-type lavapipe, and says why', () => {
    const { out } = child(`out(o.getOptimizationStrategy())`, vulkan())
    expect(out.gpuModules).toEqual([{ path: module_, backend: 'Vulkan', loaded: true }])
    expect(out.gpus.length).toBe(1)
    const [g] = out.gpus
    // The Vulkan driver's own account: a CPU-type device, and its driver.
    expect(g).toEqual(
      expect.objectContaining({ backend: 'Vulkan', kind: 'cpu', driver: expect.stringMatching(/llvmpipe|Mesa/) }),
    )
    // Its self-test (a matrix product compared with the CPU's) passed.
    expect(g.failed).toBeUndefined()
    expect(g.totalBytes).toBeGreaterThanOrEqual(g.freeBytes)
    expect(g.notChosen).toMatch(/^a CPU-type device, slower than llama\.cpp's own CPU backend/)
    expect(out.device).toBeUndefined()
    expect(out.gpuLayers).toBe(0)
  }, 300_000)

  test('gpu: false at start: the module is neither checked nor loaded, and the model runs on the CPU', () => {
    const { out, log } = child(
      `
      const r = await o.getModelLoader().generate('demo', ${JSON.stringify(QUESTION)}, { temperature: 0, maxTokens: 8 })
      const s = o.getOptimizationStrategy()
      out({ modules: s.gpuModules, gpus: s.gpus, text: r.text, vulkan: maps().filter((f) => /libggml-vulkan\\.so$/.test(f)) })`,
      vulkan({ ORION_GPU: 'false' }),
    )
    expect(out.modules).toEqual([
      {
        path: module_,
        loaded: false,
        reason: 'not loaded: gpu was false (configure() or ORION_GPU) when llama.cpp started',
      },
    ])
    expect(out.gpus).toEqual([])
    expect(out.vulkan).toEqual([])
    expect(out.text).toMatch(/Paris/)
  }, 300_000)

  test('npx orion-native gpu explains the choice: the module, the device, its driver, why it is not used', () => {
    const env = { ...process.env, ORION_GPU: undefined, ...vulkan({ ORION_LLAMA_LOG: undefined }) }
    const text = spawnSync(process.execPath, [path.join(root, 'bin', 'orion-native.js'), 'gpu'], {
      encoding: 'utf8',
      env,
    })
    expect(text.status).toBe(0)
    expect(text.stdout).toContain(`${module_} (GGML_BACKEND_PATH): loaded (Vulkan)`)
    expect(text.stdout).toMatch(/Vulkan0 \(llvmpipe.*\)  Vulkan, cpu, [\d.]+ GiB free of [\d.]+ GiB/)
    expect(text.stdout).toMatch(/driver: .*(llvmpipe|Mesa)/)
    expect(text.stdout).toContain('not used: a CPU-type device')
    expect(text.stdout).toContain("Models load on the CPU (llama.cpp's CPU backend: ")
    const json = spawnSync(process.execPath, [path.join(root, 'bin', 'orion-native.js'), 'gpu', '--json'], {
      encoding: 'utf8',
      env: { ...env, ORION_GPU: 'vulkan' },
    })
    const doc = JSON.parse(json.stdout)
    expect(doc.gpu).toBe('vulkan')
    expect(doc.modules).toEqual([{ path: module_, backend: 'Vulkan', loaded: true }])
    expect(doc.device.name).toMatch(/llvmpipe/)
    expect(doc.devices[0].notChosen).toBeUndefined()
    expect(doc.gpuUnavailable).toBeNull()
  }, 120_000)

  test("with no usable device: auto runs on the CPU, gpu: 'vulkan' is GPU_UNAVAILABLE saying why", () => {
    const auto = child(`out(o.getOptimizationStrategy())`, vulkan({ GGML_VK_VISIBLE_DEVICES: undefined })).out
    expect(auto.gpus).toEqual([])
    expect(auto.device).toBeUndefined()
    expect(auto.reasons).toContain('no GPU device (no GPU backend is loaded, or it found no usable device): CPU only')
    const { out } = child(
      `await o.getModelLoader().loadModel('demo'); out({ loaded: true })`,
      vulkan({ GGML_VK_VISIBLE_DEVICES: undefined, ORION_GPU: 'vulkan' }),
    )
    expect(out.error.code).toBe('GPU_UNAVAILABLE')
    expect(out.error.message).toContain('the Vulkan backend is loaded but found no usable device')
  }, 300_000)

  // The measure of agreement with the CPU: the first RIVER_TOKENS tokens of a greedy
  // answer are the same. On lavapipe the first 8 agree, then the device's fp16
  // arithmetic picks another word ("vital waterway" / "vital and ancient river").
  const RIVERS = 'Name three rivers of Europe and say one thing about each.'
  const RIVER_TOKENS = 5
  const stream = (max) => `
    const pieces = []
    for await (const t of o.getModelLoader().generateStream('demo', ${JSON.stringify(RIVERS)}, { temperature: 0, maxTokens: ${max} })) pieces.push(t)`

  test('the layers that fit, the device memory the model holds, an answer that agrees with the CPU, and the memory back after unload', () => {
    const cpu = child(`${stream(12)}; out({ pieces })`).out.pieces
    const { out, log } = child(
      `
      const l = o.getModelLoader(), m = o.getMemoryMonitor()
      const info = await l.loadModel('demo')
      const loaded = (await m.takeSnapshot()).devices
      const stats = l.getStats().models[0].gpu
      ${stream(12)}
      // The context kept for the next turn has the KV room the model holds for one.
      const kept = (await m.takeSnapshot()).devices
      // Two conversations at once: the second context holds its own, kept after too.
      await Promise.all(['Hello!', 'Name a colour.'].map((q) => l.generate('demo', q, { temperature: 0, maxTokens: 2 })))
      const twoKept = (await m.takeSnapshot()).devices
      await l.unloadModel('demo')
      // Freed when the last use ends: a context still settling into the cache holds the
      // model for a few evaluation steps (seconds on lavapipe).
      let after, waited = 0
      for (;;) {
        after = (await m.takeSnapshot()).devices
        if (after[0].modelsBytes === 0 || waited > 60000) break
        await new Promise((r) => setTimeout(r, 250)); waited += 250
      }
      out({ gpu: info.gpu, loaded, kept, twoKept, stats, pieces, after })`,
      vulkan({ ORION_GPU: 'vulkan' }),
    )
    // Every layer and the output fit lavapipe's 2 GiB: the estimate says why.
    expect(out.gpu).toEqual({
      device: expect.stringMatching(/^Vulkan0 \(llvmpipe/),
      backend: 'Vulkan',
      gpuLayers: 31,
      layers: 30,
      deviceBytes: expect.any(Number),
      reason: expect.stringMatching(
        /^all 30 layers and the output fit: 0\.\d\d GiB needed and 0\.41 GiB kept for compute buffers, [\d.]+ GiB free for models$/,
      ),
    })
    // What was kept covers the compute buffer llama.cpp reserves on the device, most of
    // which is the logits of a 512-token batch (96 MiB for the demo model's 49152 tokens).
    const compute = [...log.matchAll(/Vulkan0 compute buffer size = +([\d.]+) MiB/g)].map((m) => Number(m[1]))
    expect(compute.length).toBeGreaterThan(0)
    for (const mib of compute) expect(mib).toBeGreaterThan(96)
    for (const mib of compute) expect(mib).toBeLessThan(0.41 * 1024)
    expect(out.stats).toEqual(out.gpu)
    // The weights and KV cache, estimated from the file: about the file's size.
    expect(out.gpu.deviceBytes).toBeGreaterThan(50e6)
    expect(out.gpu.deviceBytes).toBeLessThan(200e6)
    // Loaded, the model holds what the fit planned: its weights and one context's KV
    // cache, which the context kept for the next turn takes. A second context living at
    // once (kept for the second conversation) holds its own KV cache too: the model's
    // length's (the one kept by the fit is a few tens of MB for the demo model).
    expect(out.loaded).toEqual([expect.objectContaining({ backend: 'Vulkan', modelsBytes: out.gpu.deviceBytes })])
    expect(out.kept[0].modelsBytes).toBe(out.gpu.deviceBytes)
    const second = out.twoKept[0].modelsBytes - out.gpu.deviceBytes
    expect(second).toBeGreaterThan(1e6)
    expect(second).toBeLessThan(out.gpu.deviceBytes - 50e6)
    expect(out.loaded[0].usedFraction).toBeGreaterThan(0)
    const same = out.pieces.findIndex((p, i) => p !== cpu[i])
    console.log(
      `lavapipe vs CPU: ${same < 0 ? out.pieces.length : same} of ${out.pieces.length} greedy tokens the same`,
    )
    expect(out.pieces.slice(0, RIVER_TOKENS)).toEqual(cpu.slice(0, RIVER_TOKENS))
    // Unloaded: the device memory the model held is given back.
    expect(out.after[0].modelsBytes).toBe(0)
    expect(out.after[0].free).toBeGreaterThanOrEqual(out.loaded[0].free)
  }, 300_000)

  test('gpuLayers splits the model between the device and the CPU, and it still answers', () => {
    const { out, log } = child(
      `
      const l = o.getModelLoader()
      const info = await l.loadModel('demo', undefined, { gpuLayers: 10 })
      const r = await l.generate('demo', ${JSON.stringify(QUESTION)}, { temperature: 0, maxTokens: 12 })
      out({ gpu: info.gpu, text: r.text })`,
      vulkan({ ORION_GPU: 'vulkan' }),
    )
    expect(out.gpu).toEqual(expect.objectContaining({ gpuLayers: 10, layers: 30, reason: 'gpuLayers: 10 asked for' }))
    // llama.cpp's own account: 10 of 31 (30 layers and the output) on the device.
    expect(offloaded(log)).toEqual([10, 31])
    expect(out.text).toMatch(/Paris/)
  }, 300_000)

  test('on the device, a stream aborts and the process exits cleanly mid-generation', () => {
    const { out } = child(
      `
      const l = o.getModelLoader()
      const ac = new AbortController()
      const pieces = []
      let error = null
      try {
        for await (const t of l.generateStream('demo', ${JSON.stringify(RIVERS)}, { temperature: 0, maxTokens: 200, signal: ac.signal })) {
          pieces.push(t)
          if (pieces.length === 3) ac.abort()
        }
      } catch (e) { error = e.code }
      out({ pieces: pieces.length, error })`,
      vulkan({ ORION_GPU: 'vulkan' }),
    )
    expect(out.error).toBe('ABORTED')
    expect(out.pieces).toBeGreaterThanOrEqual(3)
    expect(out.pieces).toBeLessThan(10)
    // Exit while the device computes: no crash, no hang, exit code 0.
    const started = Date.now()
    const r = spawnSync(
      process.execPath,
      [
        '-e',
        `const o = require(${JSON.stringify(root)})
        o.getModelLoader().generateStream('demo', ${JSON.stringify(RIVERS)}, { maxTokens: 200 })[Symbol.asyncIterator]().next()
          .then(() => setTimeout(() => process.exit(0), 500))`,
      ],
      {
        encoding: 'utf8',
        timeout: 120_000,
        env: { ...process.env, ...vulkan({ ORION_GPU: 'vulkan', ORION_LLAMA_LOG: undefined }) },
      },
    )
    expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status: 0, signal: null, stderr: '' })
    console.log(`exit mid-generation on lavapipe: ${((Date.now() - started) / 1000).toFixed(1)} s`)
  }, 300_000)
})

// What happens without a usable device needs the module and the Vulkan loader, not lavapipe.
;(why ? describe.skip : describe)('the Vulkan module without a usable device', () => {
  test('a driver that crashes: its check dies in the child, the app runs on the CPU and says why', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-broken-icd-'))
    // A Vulkan driver whose first call, made by the Vulkan loader inside vkCreateInstance,
    // dies with SIGSEGV: a broken driver install.
    const icd = brokenIcd(dir, 'signal')
    const env = vulkan({ VK_ICD_FILENAMES: icd, ORION_LLAMA_LOG: undefined })
    const { out } = child(
      `
      const s = o.getOptimizationStrategy()
      const r = await o.getModelLoader().generate('demo', ${JSON.stringify(QUESTION)}, { temperature: 0, maxTokens: 8 })
      out({ modules: s.gpuModules, gpus: s.gpus, device: s.device, reasons: s.reasons, text: r.text,
        vulkan: maps().filter((f) => /libggml-vulkan\\.so$/.test(f)) })`,
      env,
    )
    expect(out.modules).toEqual([
      {
        path: module_,
        loaded: false,
        reason: 'not loaded: it crashed while being checked (signal 11, SIGSEGV), a broken or incompatible driver',
      },
    ])
    // Never loaded here: the crash stayed in the child.
    expect(out.vulkan).toEqual([])
    expect(out.gpus).toEqual([])
    expect(out.device).toBeUndefined()
    expect(out.reasons).toContain(`GPU module ${module_}: ${out.modules[0].reason}`)
    expect(out.text).toMatch(/Paris/)
    // Asked for by name: GPU_UNAVAILABLE with the same reason.
    const named = child(`await o.getModelLoader().loadModel('demo'); out({ loaded: true })`, {
      ...env,
      ORION_GPU: 'vulkan',
    }).out
    expect(named.error.code).toBe('GPU_UNAVAILABLE')
    expect(named.error.message).toContain(
      `the Vulkan backend (${module_}) is not loaded: it crashed while being checked (signal 11`,
    )
    fs.rmSync(dir, { recursive: true, force: true })
  }, 300_000)

  test('the module names no library search path: no build directory, not the working directory', () => {
    // CMake gives a build a RUNPATH of its build directories, ending with an empty entry
    // (the working directory): a libvulkan.so.1 in an app's working directory would load.
    const dump = execFileSync('readelf', ['-d', module_], { encoding: 'utf8' })
    expect(dump).toMatch(/\(NEEDED\)\s+Shared library: \[libvulkan\.so\.1\]/)
    expect(dump).not.toMatch(/\((RPATH|RUNPATH)\)/)
  })

  test('a module that is not a library: the loader says why, and nothing else changes', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-bad-module-'))
    const bad = path.join(dir, 'libggml-vulkan.so')
    fs.writeFileSync(bad, 'not an ELF file')
    const { out } = child(`out(o.getOptimizationStrategy())`, vulkan({ GGML_BACKEND_PATH: bad }))
    expect(out.gpuModules.length).toBe(1)
    expect(out.gpuModules[0].loaded).toBe(false)
    expect(out.gpuModules[0].reason).toMatch(
      /^not loaded: the module does not load: .*libggml-vulkan\.so: (invalid ELF header|file too short)/,
    )
    expect(out.gpus).toEqual([])
    fs.rmSync(dir, { recursive: true, force: true })
  }, 120_000)

  test('without the Vulkan loader the module does not load, and the reason names the library', () => {
    // The module as it is on a machine without libvulkan.so.1: the same file with its
    // dependency renamed (same length, so the ELF stays valid) to a library nowhere.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-no-loader-'))
    const bytes = fs.readFileSync(module_)
    const at = bytes.indexOf('libvulkan.so.1\0')
    expect(at).toBeGreaterThan(0)
    bytes.write('libvulkaX.so.1', at)
    const copy = path.join(dir, 'libggml-vulkan.so')
    fs.writeFileSync(copy, bytes)
    const { out } = child(
      `
      const s = o.getOptimizationStrategy()
      const r = await o.getModelLoader().generate('demo', ${JSON.stringify(QUESTION)}, { temperature: 0, maxTokens: 8 })
      out({ modules: s.gpuModules, gpus: s.gpus, text: r.text })`,
      vulkan({ GGML_BACKEND_PATH: copy, ORION_LLAMA_LOG: undefined }),
    )
    expect(out.modules).toEqual([
      {
        path: copy,
        loaded: false,
        reason:
          'not loaded: the module does not load: libvulkaX.so.1: cannot open shared object file: No such file or directory',
      },
    ])
    expect(out.gpus).toEqual([])
    expect(out.text).toMatch(/Paris/)
    fs.rmSync(dir, { recursive: true, force: true })
  }, 120_000)

  test('with no Vulkan driver at all: the module is not loaded, and the reason says to install one', () => {
    // The loader pointed at a driver manifest that is not there: it finds no driver, as on
    // a machine whose GPU has no Vulkan driver installed (this one's are in the default places).
    const none = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'orion-no-driver-')), 'none.json')
    const { out } = child(
      `
      const s = o.getOptimizationStrategy()
      const r = await o.getModelLoader().generate('demo', ${JSON.stringify(QUESTION)}, { temperature: 0, maxTokens: 8 })
      out({ modules: s.gpuModules, gpus: s.gpus, text: r.text })`,
      vulkan({ VK_ICD_FILENAMES: none, VK_DRIVER_FILES: none, ORION_LLAMA_LOG: undefined }),
    )
    expect(out.modules).toEqual([
      {
        path: module_,
        loaded: false,
        reason:
          'not loaded: ggml could not register it as a backend: its ggml_backend_init returned no backend; ' +
          "the Vulkan loader finds no device: no Vulkan driver is installed, or none sees a GPU (install the GPU's Vulkan driver, its vendor's or Mesa's)",
      },
    ])
    expect(out.gpus).toEqual([])
    expect(out.text).toMatch(/Paris/)
    fs.rmSync(path.dirname(none), { recursive: true, force: true })
  }, 120_000)

  test("a check's child process checks nothing itself, so an executable that is not Node cannot start checks in turn", () => {
    // What the check sets in its child: were the host executable an app that ignores
    // `-e` (an Electron app with its RunAsNode fuse off), that app would load orion-native
    // with this set and start no check of its own.
    const { out } = child(`out(o.getOptimizationStrategy())`, vulkan({ ORION_GPU_CHECK_CHILD: '1' }))
    expect(out.gpuModules).toEqual([
      {
        path: module_,
        loaded: false,
        reason: 'not checked: this process was started to check a GPU module (ORION_GPU_CHECK_CHILD)',
      },
    ])
    expect(out.gpus).toEqual([])
  }, 120_000)
})
