#!/usr/bin/env node
'use strict'
// `npm run gpu-check [-- --model <file.gguf>] [--tokens N] [--out <file.json>]`: what orion-native does with this
// machine's GPUs, in one unattended run (under 10 minutes on a machine with an NVIDIA GPU),
// ending with one table.
//
//   1. the machine: CPU, NVIDIA GPUs and driver (nvidia-smi), Vulkan devices (vulkaninfo);
//   2. ggml's GPU modules, built from the addon's own llama.cpp tree where this machine can
//      (scripts/ggml-backends.js: Vulkan with glslc and the Vulkan headers, CUDA with nvcc, a
//      system toolkit's or CUDA 13 from PyPI once `node scripts/cuda-toolkit.js` has unpacked it, for
//      this machine's GPU architecture only), each checked as the addon checks it (its devices,
//      the driver, the self-test) through `orion-native gpu --json`;
//   3. for every backend that has a device (and the CPU): the model loaded there, one greedy
//      answer, and generation speed (tokens/s over `--tokens` tokens, default 128, wall time
//      from the first streamed token to the last, as a caller sees it) for
//      orion-native and for node-llama-cpp's prebuilt binaries of the same backend (bench/'s
//      node-llama-cpp, `cd bench && npm install`), on the same GGUF (default: the demo model)
//      and thread count.
//
// On a machine without a GPU only the CPU rows run, with each GPU row saying why it did not.
// Results also go to bench/results/gpu-check-<date>.json (or --out).
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const root = path.join(__dirname, '..')
const started = Date.now()
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)} s`
const say = (m) => process.stderr.write(`[gpu-check ${elapsed()}] ${m}\n`)

function args(argv) {
  const o = { model: null, tokens: 128, out: null }
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--model') o.model = path.resolve(argv[++i])
    else if (argv[i] === '--tokens') o.tokens = Number(argv[++i])
    else if (argv[i] === '--out') o.out = path.resolve(argv[++i])
    else
      throw new Error(
        `unknown argument ${argv[i]} (usage: npm run gpu-check -- [--model file.gguf] [--tokens N] [--out file.json])`,
      )
  }
  return o
}

function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: 30_000, ...opts })
  return r.error ? null : r
}

function machine() {
  // The CPU's widest vector extension: CPU figures differ between AVX2 and AVX-512 machines.
  let isa = ''
  try {
    const flags = fs.readFileSync('/proc/cpuinfo', 'utf8')
    isa = /\bavx512f\b/.test(flags) ? ' with AVX-512' : /\bavx2\b/.test(flags) ? ' with AVX2' : ''
  } catch {
    // Not Linux: the model name alone.
  }
  const cpu = (os.cpus()[0]?.model || 'unknown CPU') + isa
  const smi = run('nvidia-smi', ['--query-gpu=name,driver_version,memory.total', '--format=csv,noheader'])
  const nvidia = smi && smi.status === 0 ? smi.stdout.trim().split('\n').filter(Boolean) : []
  const vk = run('vulkaninfo', ['--summary'])
  const vulkan = vk && vk.status === 0 ? [...vk.stdout.matchAll(/deviceName\s*=\s*(.+)/g)].map((m) => m[1].trim()) : []
  return { cpu, cores: os.availableParallelism(), nvidia, vulkan, date: new Date().toISOString() }
}

/** The GPU modules this machine can have: { backend, module?, why? }. */
function modules(m) {
  const backends = require('./ggml-backends')
  const out = []
  for (const backend of ['vulkan', 'cuda']) {
    // CUDA's module is built for this machine's GPU (CMake's `native`) unless told which.
    const noGpu =
      backend === 'cuda' && !m.nvidia.length && !process.env.ORION_CUDA_ARCHITECTURES
        ? 'no NVIDIA GPU (nvidia-smi lists none), whose architecture the CUDA module would be built for'
        : null
    const why = noGpu || backends.missingFor(backend)
    if (why) {
      out.push({ backend, why })
      continue
    }
    try {
      say(`building or finding ggml's ${backend} module`)
      out.push({ backend, module: backends.ensure(backend) })
    } catch (e) {
      out.push({ backend, why: e.message })
    }
  }
  return out
}

/**
 * The environment that offers `module` to the addon: a CUDA module built with CUDA from
 * PyPI (scripts/cuda-toolkit.js) finds that toolkit's runtime libraries through
 * LD_LIBRARY_PATH (a CUDA machine's own are those of its installed toolkit, if any).
 */
function moduleEnv(module) {
  const env = { GGML_BACKEND_PATH: module }
  const pypi = /ggml-cuda/.test(module) && require('./ggml-backends').pypiToolkit()
  if (pypi)
    env.LD_LIBRARY_PATH = [path.join(pypi, 'lib'), process.env.LD_LIBRARY_PATH].filter(Boolean).join(path.delimiter)
  return env
}

/** `orion-native gpu --json` with `module` loaded: what the addon's check says. */
function check(module) {
  const r = run(process.execPath, [path.join(root, 'bin', 'orion-native.js'), 'gpu', '--json'], {
    env: { ...process.env, ...moduleEnv(module), ORION_GPU: undefined },
    timeout: 120_000,
  })
  if (!r || r.status !== 0) return { error: (r && r.stderr) || 'did not run' }
  return JSON.parse(r.stdout)
}

const PROMPT = 'Write a short story about a lighthouse keeper who finds a message in a bottle.'

/** orion-native on `gpu` ('vulkan', 'cuda' or false), in a child: answer and speed. */
function orion(gpu, module, model, tokens) {
  const script = `
    const o = require(${JSON.stringify(root)})
    ;(async () => {
      const l = o.getModelLoader()
      const key = ${JSON.stringify(model)} ?? 'demo'
      const info = await l.loadModel(key)
      const q = await l.generate(key, 'What is the capital of France?', { temperature: 0, maxTokens: 12 })
      await l.generate(key, 'Hello', { temperature: 0, maxTokens: 4 })
      // As a caller sees it, and as node-llama-cpp is measured below: from the first
      // streamed token to the answer, wall time.
      let t0 = 0
      const r = await l.generate(key, ${JSON.stringify(PROMPT)}, { temperature: 0, maxTokens: ${tokens},
        onToken: () => { if (!t0) t0 = performance.now() } })
      const ms = performance.now() - t0
      const n = r.timings.generatedTokens
      console.log(JSON.stringify({ gpu: info.gpu ?? null, answer: q.text, tokensPerSecond: ((n - 1) * 1000) / ms,
        llamaTokensPerSecond: r.timings.llamaTokensPerSecond, tokens: n }))
    })().catch((e) => { console.log(JSON.stringify({ error: (e.code ? e.code + ': ' : '') + e.message })) })`
  const env = { ...process.env, ORION_GPU: gpu === false ? 'false' : gpu }
  if (module) Object.assign(env, moduleEnv(module))
  const r = run(process.execPath, ['-e', script], { env, timeout: 240_000 })
  if (!r) return { error: 'did not run' }
  const line = r.stdout.trim().split('\n').pop()
  try {
    return JSON.parse(line)
  } catch {
    return { error: `exit ${r.status} ${r.signal || ''}: ${r.stderr.slice(-400)}` }
  }
}

/** node-llama-cpp's prebuilt binary for `gpu` on the same model, in a child: speed. */
function nodeLlamaCpp(gpu, model, tokens) {
  const bench = path.join(root, 'bench')
  if (!fs.existsSync(path.join(bench, 'node_modules', 'node-llama-cpp')))
    return { error: 'node-llama-cpp is not installed (cd bench && npm install)' }
  const script = `
    ;(async () => {
      const nlc = await import('node-llama-cpp')
      const llama = await nlc.getLlama({ gpu: ${JSON.stringify(gpu)}, build: 'never', skipDownload: true,
        progressLogs: false, logLevel: 'error', maxThreads: ${os.availableParallelism()} })
      const m = await llama.loadModel({ modelPath: ${JSON.stringify(model)}, gpuLayers: ${gpu ? "'max'" : 0} })
      // The GGUF's own chat template, as orion-native renders it (see bench/chat.js).
      const template = m.fileInfo.metadata?.tokenizer?.chat_template
      const ctx = await m.createContext({ contextSize: 2048 })
      const session = new nlc.LlamaChatSession({ contextSequence: ctx.getSequence(),
        chatWrapper: template ? new nlc.JinjaTemplateChatWrapper({ template }) : undefined })
      let n = 0, t0 = 0
      const p0 = performance.now()
      await session.prompt(${JSON.stringify(PROMPT)}, { maxTokens: ${tokens}, temperature: 0,
        onToken: (t) => { if (n === 0) t0 = performance.now(); n += t.length } })
      const ms = performance.now() - t0
      console.log(JSON.stringify({ build: llama.buildType, gpu: llama.gpu, tokensPerSecond: ((n - 1) * 1000) / ms,
        promptMs: t0 - p0, tokens: n }))
    })().catch((e) => console.log(JSON.stringify({ error: e.message })))`
  const r = run(process.execPath, ['-e', script], { cwd: bench, timeout: 240_000 })
  if (!r) return { error: 'did not run' }
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop())
  } catch {
    return { error: `exit ${r.status}: ${r.stderr.slice(-400)}` }
  }
}

function demoModel() {
  const { llmModelDir } = require('../__tests__/helpers')
  const f = fs.readdirSync(llmModelDir).find((n) => n.endsWith('.gguf'))
  return f ? path.join(llmModelDir, f) : null
}

async function main(argv) {
  const o = args(argv)
  const m = machine()
  say(
    `${m.cpu}, ${m.cores} threads; NVIDIA: ${m.nvidia.join('; ') || 'none'}; Vulkan: ${m.vulkan.join('; ') || 'none'}`,
  )
  const model = o.model || demoModel()
  if (!model) throw new Error('no model: run node scripts/models.js, or pass --model file.gguf')
  const mods = modules(m)
  const rows = []
  const cpu = orion(false, null, o.model, o.tokens)
  const nlcCpu = nodeLlamaCpp(false, model, o.tokens)
  rows.push({ backend: 'CPU', device: m.cpu, orion: cpu, nlc: nlcCpu })
  for (const mod of mods) {
    if (!mod.module) {
      rows.push({ backend: mod.backend, device: '-', why: mod.why })
      continue
    }
    const c = check(mod.module)
    const dev = (c.devices || []).find((d) => d.kind !== 'cpu' && !d.failed)
    if (!dev) {
      const why =
        c.error ||
        (c.modules || []).map((x) => x.reason).find(Boolean) ||
        ((c.devices || []).length
          ? (c.devices || []).map((d) => `${d.name}: ${d.failed || d.notChosen}`).join('; ')
          : 'the backend loaded and found no GPU device (CPU-type ones such as lavapipe are skipped)')
      rows.push({ backend: mod.backend, device: '-', why })
      continue
    }
    say(`${mod.backend}: ${dev.name}, driver ${dev.driver || '?'}`)
    rows.push({
      backend: mod.backend,
      device: dev.name,
      orion: orion(mod.backend, mod.module, o.model, o.tokens),
      nlc: nodeLlamaCpp(mod.backend, model, o.tokens),
    })
  }
  const f = (x) => (x && typeof x.tokensPerSecond === 'number' ? x.tokensPerSecond.toFixed(1) : '-')
  const lines = [
    `orion-native GPU check, ${m.date}: ${m.cpu} (${m.cores} threads); model ${path.basename(model)}, ${o.tokens} tokens greedy`,
    '',
    '| backend | device | layers on device | answer | orion-native tok/s | node-llama-cpp tok/s | ratio | note |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ]
  for (const r of rows) {
    const ratio =
      r.orion?.tokensPerSecond && r.nlc?.tokensPerSecond
        ? (r.orion.tokensPerSecond / r.nlc.tokensPerSecond).toFixed(2) + '×'
        : '-'
    const note =
      r.why ||
      r.orion?.error ||
      r.nlc?.error ||
      (r.nlc?.build ? `node-llama-cpp ${r.nlc.build} build, gpu ${r.nlc.gpu}` : '')
    lines.push(
      `| ${r.backend} | ${r.device} | ${r.orion?.gpu ? `${r.orion.gpu.gpuLayers}/${r.orion.gpu.layers + 1}` : r.orion ? '0' : '-'} | ${
        r.orion?.answer ? JSON.stringify(r.orion.answer.slice(0, 40)) : '-'
      } | ${f(r.orion)} | ${f(r.nlc)} | ${ratio} | ${String(note).replace(/\s+/g, ' ').slice(0, 160)} |`,
    )
  }
  const out = o.out || path.join(root, 'bench', 'results', `gpu-check-${m.date.slice(0, 10)}.json`)
  fs.mkdirSync(path.dirname(out), { recursive: true })
  fs.writeFileSync(out, JSON.stringify({ machine: m, model, tokens: o.tokens, modules: mods, rows }, null, 2) + '\n')
  console.log(lines.join('\n'))
  say(`done; results in ${path.relative(root, out)}`)
  return rows
}

module.exports = { main }

if (require.main === module) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(`gpu-check: ${e.message}`)
    process.exit(1)
  })
}
