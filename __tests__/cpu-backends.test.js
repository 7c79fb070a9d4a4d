'use strict'
// llama.cpp's CPU backends as modules (issue 25): on Linux x64 the addon loads, from
// beside itself, the one of ggml's CPU builds that is best for this CPU, from SSE4.2
// only to AVX-512 and AMX. Checked against the kernel's own list of the CPU's features,
// so that an AVX-512 machine that ran the AVX2 build (or an AVX2 machine offered an
// AVX-512 one) fails here.
const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { getOptimizationStrategy, getModelLoader, getSharedEmbeddingClient } = require('..')
const { root, cosine } = require('./helpers')
const twins = require('../scripts/gguf-twin')

const linuxX64 = process.platform === 'linux' && process.arch === 'x64'
// qemu-user emulates a chosen CPU model: Westmere has SSE4.2 and no AVX, which the
// addon's llama.cpp could not run before its CPU builds were modules (SIGILL).
const qemu = linuxX64
  ? ['qemu-x86_64', 'qemu-x86_64-static'].find((q) => spawnSync(q, ['--version']).status === 0)
  : undefined
if (linuxX64 && !qemu)
  console.log('skipped: the run on a CPU without AVX (install qemu-user: qemu-x86_64, as .ci/run does)')
const flags = linuxX64
  ? new Set(
      (/^flags\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8')) || [, ''])[1].split(/\s+/).filter(Boolean),
    )
  : new Set()

// Runs a Node script under qemu's model of \`cpu\`; returns the last line it printed, as
// JSON, what it wrote to stderr, and how long it took. The process must exit 0 with no
// signal within \`timeout\` ms.
function underQemu(cpu, script, timeout = 240_000, env = process.env) {
  const started = Date.now()
  const r = spawnSync(qemu, ['-cpu', cpu, process.execPath, '-e', script], { encoding: 'utf8', timeout, env })
  expect({ status: r.status, signal: r.signal, stderr: r.status === 0 ? '' : r.stderr.slice(-2000) }).toEqual({
    status: 0,
    signal: null,
    stderr: '',
  })
  return {
    out: JSON.parse(r.stdout.trim().split('\n').pop()),
    stderr: r.stderr,
    seconds: (Date.now() - started) / 1000,
  }
}

// The buffers each model load of a process put its weights in, in MiB by buffer name, one
// object per load, in order: from llama.cpp's log (ORION_LLAMA_LOG=1 sends it to stderr).
// Weights packed at load (scripts/cmake/ggml-repack.cpp) are in CPU_REPACK; those packed
// into AMX tiles' layout in AMX.
function modelBuffers(stderr) {
  return stderr
    .split(/llama_model_loader: loaded meta data/)
    .slice(1)
    .map((load) =>
      Object.fromEntries(
        [...load.matchAll(/load_tensors:\s+(\S+) model buffer size =\s+([\d.]+) MiB/g)].map((m) => [
          m[1],
          Number(m[2]),
        ]),
      ),
    )
}
// The twins' weights packed at load: the 6 layers' matrices, 4 of 384 x 384 and 2 of
// 384 x 1536 each, at 2 bytes a weight (f16, bf16) or 4 (f32): 20.25 or 40.5 MiB. The
// vocabulary's matrix stays where it is (a row per token is all a graph reads of it).
const PACKED_MIB = { f16: 20.25, bf16: 20.25, f32: 40.5 }

// The GGUF twins' tests embed these (a short one, a middling one, and one long enough for
// several blocks of the matrix products) and compare with the ONNX engine's vectors.
const TEXTS = [
  'How do I reset my password?',
  'Saturn has 146 known moons, more than any other planet in the solar system.',
  'An embedding maps text to a vector so that similar meanings lie close together, which lets a search engine find passages that answer a question even when they share no words with it.',
]
const onnxVectors = () => getSharedEmbeddingClient().createEmbeddings(TEXTS)

// ggml's feature name for each /proc/cpuinfo flag that picks a build.
const LEVELS = [
  ['ssse3', 'SSSE3'],
  ['avx', 'AVX'],
  ['avx2', 'AVX2'],
  ['fma', 'FMA'],
  ['f16c', 'F16C'],
  ['bmi2', 'BMI2'],
  ['avx512f', 'AVX512'],
  ['avx512_vnni', 'AVX512_VNNI'],
  ['avx512_bf16', 'AVX512_BF16'],
  ['amx_int8', 'AMX_INT8'],
]

;(linuxX64 ? describe : describe.skip)('llama.cpp CPU backend (Linux x64)', () => {
  test('the build in use matches what this CPU can run', () => {
    const s = getOptimizationStrategy()
    const used = new Set(s.llamaCpuFeatures)
    console.log(
      `CPU flags: ${LEVELS.filter(([f]) => flags.has(f))
        .map(([f]) => f)
        .join(' ')}; llama.cpp CPU backend: ${[...used].join(' ')}`,
    )
    expect(used.size).toBeGreaterThan(0)
    // The x86-64 levels nest (ggml's builds are cumulative up to AVX-512): every feature
    // of the chosen build is one the CPU has, and every level the CPU has up to AVX-512
    // is used. Features outside that chain (VNNI, BF16, AMX) are only checked one way.
    for (const [flag, feature] of LEVELS) {
      if (used.has(feature)) expect([feature, flags.has(flag)]).toEqual([feature, true])
    }
    const chain = ['ssse3', 'avx', 'f16c', 'fma', 'avx2', 'bmi2', 'avx512f']
    for (const flag of chain) {
      const feature = LEVELS.find(([f]) => f === flag)[1]
      if (flags.has(flag)) expect([feature, used.has(feature)]).toEqual([feature, true])
    }
    expect(s.reasons.some((r) => r.startsWith("llama.cpp's CPU backend uses"))).toBe(true)
  })

  test('the modules come from beside the addon, not from the working directory or the build', () => {
    // The working directory holds copies of the CPU modules: llama.cpp's own search
    // (llama_backend_init's default) would look there, and in the directory the build
    // wrote them to. The process's memory map says which file was loaded.
    const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'orion-cwd-'))
    try {
      for (const f of fs.readdirSync(root).filter((f) => /^libggml-cpu-.*\.so$/.test(f)))
        fs.copyFileSync(path.join(root, f), path.join(dir, f))
      const script = `
        const s = require(${JSON.stringify(root)}).getOptimizationStrategy()
        const maps = require('node:fs').readFileSync('/proc/self/maps', 'utf8')
        const cpu = [...new Set(maps.split('\\n').map((l) => l.split(/\\s+/).pop()).filter((f) => /libggml-cpu-/.test(f)))]
        console.log(JSON.stringify({ features: s.llamaCpuFeatures, cpu }))`
      const r = spawnSync(process.execPath, ['-e', script], { cwd: dir, encoding: 'utf8' })
      expect(r.status).toBe(0)
      const out = JSON.parse(r.stdout.trim().split('\n').pop())
      expect(out.features.length).toBeGreaterThan(0)
      expect(out.cpu.length).toBe(1)
      expect(path.dirname(out.cpu[0])).toBe(root)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  ;(qemu ? test : test.skip)(
    'on a CPU without AVX (qemu-x86_64 -cpu Westmere) the SSE4.2 build loads and answers',
    () => {
      const script = `
        const o = require(${JSON.stringify(root)})
        const features = o.getOptimizationStrategy().llamaCpuFeatures
        o.getModelLoader().generate('demo', 'What is the capital of France?', { temperature: 0, maxTokens: 24 })
          .then((r) => console.log(JSON.stringify({ features, text: r.text })))`
      const { out, seconds } = underQemu('Westmere', script)
      console.log(`Westmere under ${qemu}: ${out.features.join(' ')}; answered in ${seconds.toFixed(1)} s`)
      expect(out.features).toContain('SSSE3')
      expect(out.features).not.toContain('AVX')
      expect(out.text).toMatch(/Paris/)
    },
    300_000,
  )

  // The Haswell build's own matrix products (scripts/cmake/sgemm.cpp, ggml-repack.cpp),
  // which an AVX-512 machine never runs: the GGUF twins' vectors against the ONNX engine's
  // here, in a batch (66 tokens, and flash attention) and alone (18, no flash attention).
  // f16 and bf16 weights are packed at load (ggml-repack.cpp) and take those products at
  // both sizes; q8_0 takes the packed products (from 16 tokens there). Measured: minimum
  // cosine 0.999999 with f16, 0.99999 with bf16, 0.99987 with q8_0.
  const twinsMissing = twins.missing()
  ;(qemu && !twinsMissing ? test : test.skip)(
    'on a CPU with AVX2 and no AVX-512 (qemu-x86_64 -cpu Haswell) f16, bf16 and q8_0 GGUF embeddings match the ONNX engine',
    async () => {
      const files = twins.ensure()
      const onnx = await onnxVectors()
      const script = `
        const o = require(${JSON.stringify(root)})
        const files = ${JSON.stringify({ f16: files.f16, bf16: files.bf16, q8_0: files.q8_0 })}
        const texts = ${JSON.stringify(TEXTS)}
        ;(async () => {
          const out = { features: o.getOptimizationStrategy().llamaCpuFeatures }
          for (const [type, modelPath] of Object.entries(files)) {
            // Emulated, a batch can take longer than the default 30 s (two short texts took
            // 22 s under qemu on a 2-core Xeon). No cache: the text alone is computed alone,
            // not taken from the batch's vectors.
            const c = o.getSharedEmbeddingClient({ modelPath, timeoutMs: 300000, cacheBytes: 0 })
            out[type] = { batch: await c.createEmbeddings(texts), alone: await c.createEmbedding(texts[1]) }
          }
          console.log(JSON.stringify(out))
        })()`
      const { out, stderr, seconds } = underQemu('Haswell', script, 540_000, { ...process.env, ORION_LLAMA_LOG: '1' })
      expect(out.features).toEqual(expect.arrayContaining(['AVX2', 'FMA', 'F16C']))
      expect(out.features.filter((f) => /^AVX512|^AMX/.test(f))).toEqual([])
      // f16 and bf16 packed at load, whole (q8_0: llama.cpp's own code at this level).
      expect(modelBuffers(stderr).map((b) => b.CPU_REPACK)).toEqual([PACKED_MIB.f16, PACKED_MIB.bf16, undefined])
      const lines = []
      for (const [type, floor] of Object.entries({ f16: 0.9999, bf16: 0.9999, q8_0: 0.999 })) {
        const cosines = [...out[type].batch.map((v, i) => cosine(v, onnx[i])), cosine(out[type].alone, onnx[1])]
        lines.push(`${type} ${Math.min(...cosines).toFixed(6)}`)
        expect({ type, low: cosines.filter((c) => !(c >= floor)) }).toEqual({ type, low: [] })
      }
      console.log(
        `Haswell under ${qemu} (${seconds.toFixed(1)} s): minimum cosine to the ONNX engine: ${lines.join(', ')}`,
      )
    },
    600_000,
  )

  // What ggml-repack.cpp and amx-buffer.cpp do depends on llama.cpp's code around them
  // staying as it is (which buffer a weight goes to, and whose code then multiplies it): an
  // update of llama.cpp that sent the weights elsewhere would show only as a slower
  // benchmark. Here it fails: each twin loaded alone, by the build this CPU runs, must
  // have its layers' matrices packed at load, and none in an AMX buffer, which has no
  // kernel for them. The exception is ggml-repack.cpp's: bf16 stays with llama.cpp's
  // kernel where the CPU multiplies bf16 pairs itself and has no AMX (the cooperlake and
  // zen4 builds).
  ;(linuxX64 && !twinsMissing && flags.has('avx2') && flags.has('fma') && flags.has('f16c') ? test : test.skip)(
    "f16, bf16 and f32 weights are packed at load, whole, by this CPU's build",
    () => {
      const files = twins.ensure()
      for (const type of ['f16', 'bf16', 'f32']) {
        const script = `
          const o = require(${JSON.stringify(root)})
          ;(async () => {
            await o.getSharedEmbeddingClient({ modelPath: ${JSON.stringify(files[type])} }).createEmbedding('packed')
            const maps = require('node:fs').readFileSync('/proc/self/maps', 'utf8')
            console.log(JSON.stringify(maps.split('\\n').map((l) => l.split(/\\s+/).pop()).find((f) => /libggml-cpu-/.test(f))))
            process.exit(0)
          })()`
        const r = spawnSync(process.execPath, ['-e', script], {
          encoding: 'utf8',
          timeout: 120_000,
          env: { ...process.env, ORION_LLAMA_LOG: '1' },
        })
        expect({ status: r.status, signal: r.signal }).toEqual({ status: 0, signal: null })
        const build = path.basename(JSON.parse(r.stdout.trim().split('\n').pop())).replace(/^libggml-cpu-|\.\w+$/g, '')
        const kept = type === 'bf16' && ['cooperlake', 'zen4'].includes(build)
        const loads = modelBuffers(r.stderr)
        console.log(`${type} twin, ${build} build: ${JSON.stringify(loads)}`)
        expect({ type, build, loads: loads.map((b) => ({ repack: b.CPU_REPACK, amx: b.AMX })) }).toEqual({
          type,
          build,
          loads: [{ repack: kept ? undefined : PACKED_MIB[type], amx: undefined }],
        })
      }
    },
    300_000,
  )

  // ggml's AMX kernels (the sapphirerapids build) take q8_0, q4_0, q4_K... weights. GCC 12
  // had compiled their tile configuration away, and the first tile instruction killed the
  // process (SIGILL) on every CPU with AMX: scripts/cmake/amx-mmq.cpp. In a child
  // process, so that a crash is this test's failure, not the suite's end. Batches of
  // several tokens go through the tiles; one token goes through AVX-512 VNNI. f16 weights,
  // which ggml's AMX buffer took too, are left to the repack buffer (scripts/cmake/
  // amx-buffer.cpp) and packed at load (ggml-repack.cpp), as are bf16 weights in this
  // build (not llama.cpp's AVX-512 BF16 kernel).
  const amx = flags.has('amx_int8') && flags.has('amx_tile')
  if (linuxX64 && !amx) console.log('skipped: the AMX run (this CPU has no AMX; a Sapphire Rapids or later Xeon has)')
  ;(amx && !twinsMissing ? test : test.skip)(
    'on a CPU with AMX, quantized models run in AMX tiles: q8_0, f16 and bf16 embeddings match the ONNX engine, the demo model answers',
    async () => {
      const files = twins.ensure()
      const onnx = await onnxVectors()
      const script = `
        const o = require(${JSON.stringify(root)})
        ;(async () => {
          const batch = {}
          for (const [type, modelPath] of Object.entries(${JSON.stringify({ q8_0: files.q8_0, f16: files.f16, bf16: files.bf16 })}))
            batch[type] = await o.getSharedEmbeddingClient({ modelPath }).createEmbeddings(${JSON.stringify(TEXTS)})
          const r = await o.getModelLoader().generate('demo', 'What is the capital of France?', { temperature: 0, maxTokens: 24 })
          const maps = require('node:fs').readFileSync('/proc/self/maps', 'utf8')
          const cpu = [...new Set(maps.split('\\n').map((l) => l.split(/\\s+/).pop()).filter((f) => /libggml-cpu-/.test(f)))]
          console.log(JSON.stringify({ features: o.getOptimizationStrategy().llamaCpuFeatures, cpu, batch, text: r.text }))
          process.exit(0)
        })()`
      const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 240_000 })
      expect({ status: r.status, signal: r.signal, stderr: r.status === 0 ? '' : r.stderr.slice(-2000) }).toEqual({
        status: 0,
        signal: null,
        stderr: '',
      })
      const out = JSON.parse(r.stdout.trim().split('\n').pop())
      expect(out.features).toContain('AMX_INT8')
      expect(out.cpu.map((f) => path.basename(f))).toEqual(['libggml-cpu-sapphirerapids.so'])
      for (const type of ['q8_0', 'f16', 'bf16']) {
        const cosines = out.batch[type].map((v, i) => cosine(v, onnx[i]))
        console.log(`AMX: the ${type} twin's minimum cosine to the ONNX engine ${Math.min(...cosines).toFixed(6)}`)
        expect({ type, low: cosines.filter((c) => !(c >= 0.999)) }).toEqual({ type, low: [] })
      }
      expect(out.text).toMatch(/Paris/)
    },
    300_000,
  )

  test('the chosen build answers', async () => {
    const r = await getModelLoader().generate('demo', 'What is the capital of France?', {
      temperature: 0,
      maxTokens: 48,
    })
    expect(r.text).toMatch(/Paris/)
  })
})
