'use strict'
// ggml's CUDA backend as a module, on a machine without an NVIDIA GPU: built from the addon's
// own llama.cpp tree with CUDA 13 from PyPI (scripts/cuda-toolkit.js; `node
// scripts/ggml-backends.js --backend cuda` with ORION_CUDA_ARCHITECTURES=75 builds it, about
// 32 minutes here on 2 cores, so the test command does not: where it is not built these tests are
// skipped, and say so). What can be tested without a GPU: the module links only what a CUDA
// machine has, loads against the addon's ggml, and with no driver, or one that does not work,
// the app runs on the CPU and says why; asked for by name, GPU_UNAVAILABLE.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync, execFileSync } = require('node:child_process')
const { root } = require('./helpers')
const backends = require('../scripts/ggml-backends')

const module_ = backends.builtCuda()
const toolkit = module_ && backends.pypiToolkit()
const why =
  process.platform !== 'linux' || process.arch !== 'x64'
    ? 'Linux x64 only'
    : !module_
      ? 'the CUDA module is not built (ORION_CUDA_ARCHITECTURES=75 node scripts/ggml-backends.js --backend cuda, after node scripts/cuda-toolkit.js)'
      : !toolkit
        ? "the CUDA module was built with a system toolkit, whose runtime libraries' place these tests do not know"
        : fs.existsSync('/dev/nvidiactl')
          ? 'this machine has an NVIDIA driver: npm run gpu-check tests the module on its GPU'
          : null
if (why) console.log(`skipped: the CUDA module tests (${why})`)

const QUESTION = 'What is the capital of France?'

/** The strategy and a short answer, in a child with the CUDA module offered. */
function child(env) {
  const script = `
    const o = require(${JSON.stringify(root)})
    ;(async () => {
      const s = o.getOptimizationStrategy()
      const r = await o.getModelLoader().generate('demo', ${JSON.stringify(QUESTION)}, { temperature: 0, maxTokens: 8 })
      console.log(JSON.stringify({ modules: s.gpuModules, gpus: s.gpus, device: s.device, text: r.text }))
    })().catch((e) => console.log(JSON.stringify({ error: { code: e.code, message: e.message } })))`
  const r = spawnSync(process.execPath, ['-e', script], {
    encoding: 'utf8',
    timeout: 280_000,
    env: { ...process.env, ORION_GPU: undefined, GGML_BACKEND_PATH: module_, ...env },
  })
  expect({ status: r.status, stderr: r.status === 0 ? '' : r.stderr.slice(-3000) }).toEqual({ status: 0, stderr: '' })
  return JSON.parse(r.stdout.trim().split('\n').pop())
}

;(why ? describe.skip : describe)('CUDA module (built with CUDA 13 from PyPI), no NVIDIA GPU', () => {
  let stubDir
  beforeAll(() => {
    // A stand-in for NVIDIA's driver library that does not work: every call fails
    // (CUDA_ERROR_NO_DEVICE, 100). Its calls are the module's own undefined symbols from the
    // driver API, and those the CUDA runtime looks up itself to start; the runtime then
    // takes the driver as too old ("CUDA driver version is insufficient"), as with an
    // outdated driver: ggml's CUDA backend finds no device.
    stubDir = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-cuda-driver-'))
    const undefinedSymbols = execFileSync('nm', ['-D', '--undefined-only', module_], { encoding: 'utf8' })
    const own = [...undefinedSymbols.matchAll(/\sU (cu[A-Z]\w*)/g)].map((m) => m[1])
    expect(own.length).toBeGreaterThan(0)
    const calls = [
      ...new Set([
        ...own,
        'cuInit',
        'cuDriverGetVersion',
        'cuGetProcAddress',
        'cuGetProcAddress_v2',
        'cuGetExportTable',
      ]),
    ]
    fs.writeFileSync(path.join(stubDir, 'driver.c'), calls.map((c) => `int ${c}(void) { return 100; }\n`).join(''))
    execFileSync('cc', [
      '-shared',
      '-fPIC',
      '-Wl,-soname,libcuda.so.1',
      '-o',
      path.join(stubDir, 'libcuda.so.1'),
      path.join(stubDir, 'driver.c'),
    ])
  })
  afterAll(() => fs.rmSync(stubDir, { recursive: true, force: true }))

  test('the module is an x86-64 library that needs the CUDA runtime, cuBLAS and the driver, and names no search path', () => {
    const dump = execFileSync('readelf', ['-h', '-d', module_], { encoding: 'utf8' })
    expect(dump).toMatch(/Machine:\s+Advanced Micro Devices X86-64/)
    const needed = [...dump.matchAll(/\(NEEDED\)\s+Shared library: \[(\S+)\]/g)].map((m) => m[1])
    expect(needed).toEqual(
      expect.arrayContaining(['libggml-base.so.0', 'libcudart.so.13', 'libcublas.so.13', 'libcuda.so.1']),
    )
    const foreign = needed.filter(
      (n) =>
        !/^(libggml-base\.so\.0|libcudart\.so\.13|libcublas\.so\.13|libcublasLt\.so\.13|libcuda\.so\.1)$/.test(n) &&
        !/^(libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+|libgomp|ld-linux-x86-64)\.so/.test(n),
    )
    expect(foreign).toEqual([])
    expect(dump).not.toMatch(/\((RPATH|RUNPATH)\)/)
  })

  test('without the CUDA runtime libraries: not loaded, the reason names the missing library, the app runs on the CPU', () => {
    const out = child({ LD_LIBRARY_PATH: undefined })
    expect(out.modules).toEqual([
      {
        path: module_,
        loaded: false,
        reason: expect.stringMatching(
          /^not loaded: the module does not load: lib(cudart\.so\.13|cublas\.so\.13|cublasLt\.so\.13|cuda\.so\.1): cannot open shared object file/,
        ),
      },
    ])
    expect(out.gpus).toEqual([])
    expect(out.text).toMatch(/Paris/)
  }, 300_000)

  test('with the runtime but no NVIDIA driver: the reason names the driver library', () => {
    const out = child({ LD_LIBRARY_PATH: path.join(toolkit, 'lib') })
    expect(out.modules).toEqual([
      {
        path: module_,
        loaded: false,
        reason:
          'not loaded: the module does not load: libcuda.so.1: cannot open shared object file: No such file or directory',
      },
    ])
    expect(out.text).toMatch(/Paris/)
  }, 300_000)

  test('with a driver library that does not work: the module loads and registers in its check, no device; by name GPU_UNAVAILABLE', () => {
    const env = { LD_LIBRARY_PATH: [stubDir, path.join(toolkit, 'lib')].join(':') }
    const out = child(env)
    console.log(`CUDA module with a driver library that does not work: ${JSON.stringify(out.modules[0])}`)
    // Its check loaded it and ggml registered CUDA with no device, so it is loaded here.
    expect(out.modules).toEqual([{ path: module_, backend: 'CUDA', loaded: true }])
    expect(out.gpus).toEqual([])
    expect(out.device).toBeUndefined()
    expect(out.text).toMatch(/Paris/)
    const named = child({ ...env, ORION_GPU: 'cuda' })
    expect(named.error.code).toBe('GPU_UNAVAILABLE')
    expect(named.error.message).toMatch(/CUDA/)
  }, 300_000)
})
