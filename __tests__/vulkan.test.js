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
const { spawnSync } = require('node:child_process')
const { root } = require('./helpers')
const { builtVulkan, missing } = require('../scripts/ggml-backends')

const LAVAPIPE = '/usr/share/vulkan/icd.d/lvp_icd.x86_64.json'
const module_ = builtVulkan()
const why = missing() || (!module_ && 'the module is not built (node scripts/ggml-backends.js)')
const lavapipe = fs.existsSync(LAVAPIPE)
if (why) console.log(`skipped: the Vulkan tests (${why})`)
else if (!lavapipe) console.log(`skipped: the Vulkan tests (no lavapipe: apt-get install mesa-vulkan-drivers)`)

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

;(why || !lavapipe ? describe.skip : describe)('Vulkan on lavapipe', () => {
  const vulkan = (extra) => ({
    ORION_LLAMA_LOG: '1',
    GGML_BACKEND_PATH: module_,
    VK_ICD_FILENAMES: LAVAPIPE,
    GGML_VK_VISIBLE_DEVICES: '0',
    ...extra,
  })
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

  test('auto takes the device; gpu: false keeps the model on the CPU with the backend loaded', () => {
    const auto = child(`out(o.getOptimizationStrategy())`, vulkan()).out
    expect(auto.device && auto.device.backend).toBe('Vulkan')
    const { out, log } = child(generate, vulkan({ ORION_GPU: 'false' }))
    expect(out.gpus.length).toBe(1)
    expect(out.device).toBeUndefined()
    expect(out.layers).toBe(0)
    expect(offloaded(log)[0]).toBe(0)
    expect(out.text).toMatch(/Paris/)
  }, 300_000)

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
})
