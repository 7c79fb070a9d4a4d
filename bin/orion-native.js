#!/usr/bin/env node
'use strict'
// orion-native's command line: `models` fetches the default models; `status` shows
// what running orion-native processes hold and how much memory pressure there is;
// `gpu` says which device llama.cpp's models run on and why; `build` compiles the addon
// where no prebuilt platform package exists.
const fs = require('node:fs')
const path = require('node:path')
const { parseArgs } = require('node:util')
const { cacheDir } = require('../lib/paths')

const usage = `usage: orion-native <command> [options]
       orion-native --help | --version

commands:
  models [--only <model>] [--dir DIR] [--force]
                      fetch the default models into ORION_MODELS_DIR (default: the per-user
                      cache directory)
  models list [--json] every model of the registry and the catalogs: kind, quantization,
                      whether it is on disk, its size and path
  models pull <id> [<id> ...]
                      download catalog or registry models the way loadModel does (e.g.
                      Mistral-7B-Instruct-v0.2-q4f16_1-MLC), with a progress bar, without
                      loading them
  gpu [--json]        GPU backends (installed packages, their checks), devices and drivers,
                      the device models load on, and why each other one is not used
  build               build the native addon from source, for a platform with no prebuilt
                      package (needs Rust, cmake, a C++ compiler and libclang; about 10 minutes)
  status [--json] [--watch]
                      loaded models, memory, pressure and recent alerts of every process
                      monitoring memory (monitor.start() or ORION_ENABLE_MEMORY_MONITOR=1),
                      and this machine's memory

\`orion-native <command> --help\` describes a command.`

const statusUsage = `usage: orion-native status [--json] [--watch]

Loaded models, memory, pressure and recent alerts of every orion-native process that
monitors memory in the background (monitor.start(intervalMs) or
ORION_ENABLE_MEMORY_MONITOR=1), then this machine's memory.

options:
  --json      print { processes: [<snapshot>, ...], machine: {...} }: each process's
              published snapshot (pid, timestamp, pressure, usedFraction, usedBytes,
              budgetBytes, system, process, models, devices, embeddingCacheBytes,
              recommendations, alerts) and this machine's memory (timestamp, pressure,
              usedFraction, total, available, used, swapTotal, swapUsed, cgroupLimit);
              processes is [] when none publishes
  --watch     refresh every 2 seconds until interrupted (with --json: one JSON document
              per line and refresh, nothing else)
  -h, --help  print this help and do nothing else`

const gpuUsage = `usage: orion-native gpu [--json]

Which device llama.cpp's models run on, and why: the gpu setting (configure({ gpu }) or
ORION_GPU), the GPU backend packages installed (orion-native-<platform>-vulkan, -cuda),
each module's check (run in a child process: it loads the module, lists its devices and
runs a small graph on each, compared with the CPU's result), the devices with their kind,
memory and driver, the one chosen and why each other one is not. Downloads nothing.

options:
  --json      print { gpu, packages, modules, devices, device, gpuLayers, gpuUnavailable,
              llamaCpuFeatures, reasons }: packages as { backend, package, version, module,
              usable, reason }, modules and devices as getOptimizationStrategy()'s
              gpuModules and gpus
  -h, --help  print this help and do nothing else`

const listUsage = `usage: orion-native models list [--json]

Every model orion-native knows: the registry's (the built-in demo, the catalog of chat
models, ORION_MODEL_REGISTRY's) with one row per quantization level, and the embedding
models of the catalog. For each: key, kind, quantization, whether it is on disk, its size
(on disk, else the expected size when known) and its path (where it is, or where a
download puts it). Downloads nothing.

options:
  --json      print the rows as a JSON array of { key, kind, quantization, onDisk, bytes,
              path }
  -h, --help  print this help and do nothing else`

const pullUsage = `usage: orion-native models pull <id> [<id> ...]

Downloads models of the catalog or the registry into the models directory exactly as
loadModel() would (resumable, size- and sha256-checked where the registry knows them, one
download across processes), without loading them. A file already on disk is checked.
An id is a model name (the level is chosen for this machine), an id with a WebLLM suffix
(Mistral-7B-Instruct-v0.2-q4f16_1-MLC) or a registry key; an embedding model of the
catalog (bge-small-en-v1.5) is fetched by loading it once.

options:
  -h, --help  print this help and do nothing else`

/** The embedding models of the catalog (src/store/catalog.json), by name. */
const embeddingCatalog = () => require(path.join(__dirname, '..', 'src', 'store', 'catalog.json')).embedding || {}
/** The GGUF embedding models and rerankers of the catalog, by name. */
const ggufCatalog = () => require(path.join(__dirname, '..', 'src', 'store', 'catalog.json')).gguf || {}

/**
 * One clear sentence for a failed pull. A failed download reaches us as loadModel's
 * MODEL_NOT_FOUND, whose message is written for code that loads on first use (it
 * suggests this very command); here it is what failed, the server's answer, and what
 * to do instead.
 */
function pullFailure(id, e) {
  const m =
    /^model file `([^`]+)` \(not on disk, and downloading it from (\S+) failed: ([\s\S]*?); retry online[\s\S]* not found \(searched ([\s\S]*?)\)\. /.exec(
      e.message,
    )
  if (e.code !== 'MODEL_NOT_FOUND' || !m) return `${id}: ${e.code || 'ERROR'}: ${e.message}`
  const [, file, url, why, searched] = m
  const dir = searched.split(', then ').pop()
  return (
    `${id}: downloading ${file} from ${url} failed (${why}); check the network connection or ` +
    `proxy (ORION_HF_ENDPOINT or HF_ENDPOINT names a mirror), or copy ${file} into ${dir} by hand.`
  )
}

/** `models pull`: downloadModel with a progress bar; nothing is loaded into memory. Downloads
 * are what the user asked for here, so they are allowed for this process. */
async function pull(argv) {
  const opts = parseArgs({
    args: argv,
    options: { help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
    strict: true,
  })
  if (opts.values.help) return console.log(pullUsage)
  if (!opts.positionals.length) return usageError('orion-native models pull', 'name at least one model', pullUsage)
  const { getModelLoader, getSharedEmbeddingClient, getSharedReranker, configure } = require(path.join(__dirname, '..'))
  configure({ allowDownloads: true })
  const embedding = embeddingCatalog()
  const gguf = ggufCatalog()
  const loader = getModelLoader()
  for (const id of opts.positionals) {
    if (Object.hasOwn(gguf, id)) {
      // The service downloads a catalog GGUF's file when it first loads it.
      try {
        if (gguf[id].kind === 'reranker') {
          await getSharedReranker({ model: id }).rerank('ready?', ['yes'])
          console.log(`${id}: ready (reranker)`)
        } else {
          const client = getSharedEmbeddingClient({ model: id })
          await client.createEmbedding('ready?')
          console.log(`${id}: ready (${client.getStats().dimension} dimensions)`)
        }
      } catch (e) {
        console.error(`orion-native models pull: ${pullFailure(id, e)}`)
        process.exitCode = 1
        return
      }
      continue
    }
    if (Object.hasOwn(embedding, id)) {
      // The embedding service fetches a catalog model's files when it first loads it.
      try {
        const client = getSharedEmbeddingClient({ model: id })
        await client.createEmbedding('ready?')
        console.log(`${id}: ready (${client.getStats().dimension} dimensions)`)
      } catch (e) {
        console.error(`orion-native models pull: ${pullFailure(id, e)}`)
        process.exitCode = 1
        return
      }
      continue
    }
    let bar = null
    const onProgress = (p) => {
      if (!process.stderr.isTTY) return
      if (!bar) {
        const cliProgress = require('cli-progress')
        bar = new cliProgress.SingleBar(
          { format: `  ${id} [{bar}] {percentage}%`, stream: process.stderr },
          cliProgress.Presets.shades_classic,
        )
        bar.start(100, 0)
      }
      bar.update(p)
    }
    try {
      const info = await loader.downloadModel(id, onProgress)
      if (bar) bar.stop()
      const what = info.downloaded ? 'downloaded to' : 'already in'
      console.log(`${id}: ${what} ${info.path} (${mb(info.bytes)}, ${info.quantization || '?'})`)
    } catch (e) {
      if (bar) bar.stop()
      console.error(`orion-native models pull: ${pullFailure(id, e)}`)
      process.exitCode = 1
      return
    }
  }
}

/** Whether `dir` holds an embedding model's files. */
const hasEmbeddingModel = (dir) =>
  ['model.onnx', 'tokenizer.json', 'config.json'].every((f) => fs.existsSync(path.join(dir, f)))

/** The size of the files directly in `dir`. */
function dirBytes(dir) {
  let total = 0
  for (const e of fs.readdirSync(dir, { withFileTypes: true }))
    if (e.isFile()) total += fs.statSync(path.join(dir, e.name)).size
  return total
}

/** Every model: the registry's, one row per level, then the catalog's embedding models. */
function listRows() {
  const { getModelLoader, configure } = require(path.join(__dirname, '..'))
  const rows = []
  for (const m of getModelLoader().listModels()) {
    if (!m.files.length) continue // a remote model: nothing on disk
    for (const f of m.files)
      rows.push({
        key: m.key,
        kind: m.kind || 'llm',
        quantization: f.level,
        onDisk: f.onDisk,
        bytes: f.bytes ?? null,
        path: f.path,
      })
  }
  // Embedding models are directories, looked up as the addon does: the bundled
  // directories first, then the models directory.
  const { modelsDir, bundledModelsDirs } = configure()
  const defaults = require(path.join(__dirname, '..', 'scripts', 'models.js')).MODELS
  const names = new Set([
    ...defaults.filter((d) => d.kind === 'embedding').map((d) => d.name),
    ...Object.keys(embeddingCatalog()),
  ])
  for (const [name, e] of Object.entries(ggufCatalog())) {
    const file = [...bundledModelsDirs, modelsDir]
      .map((d) => path.join(d, name, e.hubFile))
      .find((f) => fs.existsSync(f))
    rows.push({
      key: name,
      kind: e.kind,
      quantization: null,
      onDisk: Boolean(file),
      bytes: file ? fs.statSync(file).size : (e.size ?? null),
      path: file || path.join(modelsDir, name, e.hubFile),
    })
  }
  for (const name of names) {
    const dir = [...bundledModelsDirs, modelsDir].map((d) => path.join(d, name)).find(hasEmbeddingModel)
    rows.push({
      key: name,
      kind: 'embedding',
      quantization: null,
      onDisk: Boolean(dir),
      bytes: dir ? dirBytes(dir) : null,
      path: dir || path.join(modelsDir, name),
    })
  }
  return rows
}

function list(argv) {
  const opts = parse('orion-native models list', listUsage, argv, { json: { type: 'boolean' } })
  if (!opts) return
  if (opts.help) return console.log(listUsage)
  const rows = listRows()
  if (opts.json) return console.log(JSON.stringify(rows, null, 2))
  const Table = require('cli-table3')
  const table = new Table({
    head: ['key', 'kind', 'quantization', 'on disk', 'size', 'path'],
    chars: plain,
    style: { head: [], border: [], 'padding-left': 0, 'padding-right': 2 },
  })
  for (const r of rows)
    table.push([
      r.key,
      r.kind,
      r.quantization || '-',
      r.onDisk ? 'yes' : 'no',
      r.bytes == null ? '?' : mb(r.bytes),
      r.path,
    ])
  console.log(table.toString())
}

const buildUsage = `usage: orion-native build

Builds the native addon from source, for a platform with no prebuilt package. Needs Rust,
cmake, a C++ compiler and libclang; takes about 10 minutes.

options:
  -h, --help  print this help and do nothing else`

// A bad command line is exit 2, as for other CLIs; the usage follows the error so the
// right spelling is on screen.
function usageError(prog, message, text) {
  console.error(`${prog}: ${message}\n\n${text}`)
  process.exitCode = 2
}

/** parseArgs, strict: the values, or undefined once a usage error has been reported. */
function parse(prog, text, argv, options) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true })
      .values
  } catch (e) {
    if (!String(e.code).startsWith('ERR_PARSE_ARGS_')) throw e
    usageError(prog, e.message, text)
  }
}

const alive = (pid) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return e.code === 'EPERM'
  }
}

// The latest snapshot each monitoring process published; files of dead processes are removed.
function published() {
  const dir = path.join(cacheDir(), 'status')
  let names = []
  try {
    names = fs.readdirSync(dir).filter((n) => /^\d+\.json$/.test(n))
  } catch {
    return []
  }
  const out = []
  for (const name of names) {
    const file = path.join(dir, name)
    const pid = Number(name.slice(0, -5))
    if (!alive(pid)) {
      fs.rmSync(file, { force: true })
      continue
    }
    try {
      out.push(JSON.parse(fs.readFileSync(file, 'utf8')))
    } catch {
      // Being replaced right now: the next refresh reads it.
    }
  }
  return out.sort((a, b) => a.pid - b.pid)
}

const mb = (b) => `${(b / 1e6).toFixed(1)} MB`
const ago = (ms) => (ms < 60000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60000)} min`)

// cli-table3 without a box: compact columns under a summary line.
const plain = {
  top: '',
  'top-mid': '',
  'top-left': '',
  'top-right': '',
  bottom: '',
  'bottom-mid': '',
  'bottom-left': '',
  'bottom-right': '',
  left: '',
  'left-mid': '',
  mid: '',
  'mid-mid': '',
  right: '',
  'right-mid': '',
  middle: ' ',
}

function render({ processes, machine }) {
  const lines = []
  const sys = (s) =>
    `available ${mb(s.available)} of ${mb(s.total)}` + (s.cgroupLimit ? `  cgroup limit ${mb(s.cgroupLimit)}` : '')
  lines.push(
    `This machine: pressure ${machine.pressure.toUpperCase()} (${(machine.usedFraction * 100).toFixed(0)} % in use)  ` +
      sys(machine),
  )
  if (!processes.length) {
    lines.push(
      'No orion-native process publishes its memory status: one does while it monitors memory ' +
        '(monitor.start(intervalMs), or ORION_ENABLE_MEMORY_MONITOR=1).',
    )
  }
  for (const s of processes) {
    const pct = (s.usedFraction * 100).toFixed(0)
    lines.push(
      `pid ${s.pid}  pressure ${s.pressure.toUpperCase()} (${pct} % of ${mb(s.budgetBytes)})  RSS ${mb(s.process.rss)}  ` +
        `system ${sys(s.system)}`,
    )
    if (s.models.length) {
      const Table = require('cli-table3')
      const table = new Table({
        head: ['model', 'size', 'quantization', 'state'],
        chars: plain,
        style: { head: [], border: [], 'padding-left': 0, 'padding-right': 1 },
      })
      for (const m of s.models)
        table.push([m.key, mb(m.bytes), m.quantization || '?', m.inUse ? 'generating' : `idle ${ago(m.idleMs)}`])
      lines.push(
        ...table
          .toString()
          .split('\n')
          .map((l) => '  ' + l),
      )
    } else {
      lines.push('  no models loaded')
    }
    for (const d of s.devices || [])
      lines.push(
        `  GPU ${d.name}: ${mb(d.modelsBytes)} held by models, ${mb(d.free)} free of ${mb(d.total)} (driver's account)`,
      )
    lines.push(`  embedding cache ${mb(s.embeddingCacheBytes)}`)
    for (const r of s.recommendations) lines.push(`  → ${r}`)
    for (const a of s.alerts) lines.push(`  ! ${new Date(a.timestamp).toLocaleTimeString()} ${a.message}`)
  }
  return lines.join('\n')
}

/** `status`'s document: every publishing process's snapshot, and this machine's memory. */
async function statusDocument() {
  // The CLI only reads: with ORION_ENABLE_MEMORY_MONITOR=1 in the shell, loading the
  // addon would start monitoring here and publish this process as one to show.
  delete process.env.ORION_ENABLE_MEMORY_MONITOR
  const { getMemoryMonitor } = require(path.join(__dirname, '..'))
  const s = await getMemoryMonitor().takeSnapshot()
  const machine = {
    timestamp: s.timestamp,
    pressure: s.pressure,
    usedFraction: s.usedFraction,
    total: s.system.total,
    available: s.system.available,
    used: s.system.used,
    swapTotal: s.system.swapTotal,
    swapUsed: s.system.swapUsed,
    cgroupLimit: s.system.cgroupLimit ?? null,
  }
  return { processes: published().filter((p) => p.pid !== process.pid), machine }
}

async function status({ json, watch }) {
  const show = async () => {
    const doc = await statusDocument()
    return json ? JSON.stringify(doc, null, watch ? undefined : 2) : render(doc)
  }
  if (!watch) return console.log(await show())
  for (;;) {
    const text = await show()
    if (json) {
      // NDJSON: one document per line and refresh, for a program to read.
      process.stdout.write(`${text}\n`)
    } else {
      // Clears a terminal only: piped, the snapshots follow one another.
      console.clear()
      process.stdout.write(`${text}\n\n(refreshing every 2 s; Ctrl-C to quit)\n`)
    }
    await new Promise((r) => setTimeout(r, 2000))
  }
}

/** `gpu`'s document: the setting, the GPU packages, the strategy's account of devices. */
function gpuDocument() {
  const o = require(path.join(__dirname, '..'))
  const { gpuPackages, platformName } = require('../lib/binding')
  const setting = o.configure({}).gpu
  const s = o.getOptimizationStrategy()
  const installed = gpuPackages()
  // The GPU packages published for this platform: the installed package's optional
  // dependencies (a checkout's npm-gpu/), and any other one that is installed.
  const pkg = require('../package.json')
  const published = ['vulkan', 'cuda'].filter(
    (b) =>
      pkg.optionalDependencies?.[`orion-native-${platformName()}-${b}`] ||
      fs.existsSync(path.join(__dirname, '..', 'npm-gpu', `${platformName()}-${b}`)) ||
      installed.some((p) => p.backend === b),
  )
  const packages = published.map(
    (backend) =>
      installed.find((p) => p.backend === backend) || {
        backend,
        package: `orion-native-${platformName()}-${backend}`,
        version: null,
        module: null,
        usable: false,
        reason: 'not installed',
      },
  )
  return {
    gpu: setting,
    packages: packages.map(({ dir, ...p }) => p),
    modules: s.gpuModules,
    devices: s.gpus,
    device: s.device ?? null,
    gpuLayers: s.gpuLayers,
    gpuUnavailable: s.gpuUnavailable ?? null,
    llamaCpuFeatures: s.llamaCpuFeatures,
    reasons: s.reasons,
  }
}

function renderGpu(d) {
  const gib = (b) => `${(b / 2 ** 30).toFixed(1)} GiB`
  const lines = [
    `gpu setting: ${d.gpu === false ? 'false' : d.gpu} (configure({ gpu }) or ORION_GPU)`,
    '',
    'GPU packages:',
  ]
  for (const p of d.packages) {
    const mod = p.module && d.modules.find((m) => m.path === p.module)
    const state = !p.usable
      ? p.reason
      : !mod
        ? 'installed, not checked'
        : mod.loaded
          ? `loaded (${mod.backend})`
          : mod.reason
    lines.push(`  ${p.package}${p.version ? ` ${p.version}` : ''}: ${state}`)
  }
  for (const m of d.modules.filter((m) => !d.packages.some((p) => p.module === m.path)))
    lines.push(`  ${m.path} (GGML_BACKEND_PATH): ${m.loaded ? `loaded (${m.backend})` : m.reason}`)
  lines.push('', 'Devices:')
  if (!d.devices.length) lines.push('  none (no GPU backend loaded, or it found no usable device)')
  for (const g of d.devices) {
    lines.push(`  ${g.name}  ${g.backend}, ${g.kind}, ${gib(g.freeBytes)} free of ${gib(g.totalBytes)}`)
    if (g.driver) lines.push(`    driver: ${g.driver}`)
    lines.push(`    ${g.notChosen ? `not used: ${g.notChosen}` : 'used: models load here'}`)
  }
  lines.push(
    '',
    d.device
      ? `Models load on ${d.device.name} (${d.gpuLayers} layers at most)`
      : `Models load on the CPU (llama.cpp's CPU backend: ${d.llamaCpuFeatures.join(' ') || 'unknown'})`,
  )
  if (d.gpuUnavailable) lines.push(`GPU_UNAVAILABLE: ${d.gpuUnavailable}`)
  return lines.join('\n')
}

const commands = {
  gpu(argv) {
    const opts = parse('orion-native gpu', gpuUsage, argv, { json: { type: 'boolean' } })
    if (!opts) return
    if (opts.help) return console.log(gpuUsage)
    try {
      const doc = gpuDocument()
      console.log(opts.json ? JSON.stringify(doc, null, 2) : renderGpu(doc))
    } catch (e) {
      console.error(`orion-native gpu: ${e.code ? `${e.code}: ` : ''}${e.message}`)
      process.exitCode = 1
    }
  },
  status(argv) {
    const opts = parse('orion-native status', statusUsage, argv, {
      json: { type: 'boolean' },
      watch: { type: 'boolean' },
    })
    if (!opts) return
    if (opts.help) return console.log(statusUsage)
    status(opts).catch((e) => {
      console.error(`orion-native status: ${e.message}`)
      process.exit(1)
    })
  },
  models(argv) {
    if (argv[0] === 'list') return list(argv.slice(1))
    if (argv[0] === 'pull') {
      pull(argv.slice(1)).catch((e) => {
        if (String(e.code).startsWith('ERR_PARSE_ARGS_'))
          return usageError('orion-native models pull', e.message, pullUsage)
        console.error(`orion-native models pull: ${e.message}`)
        process.exitCode = 1
      })
      return
    }
    require(path.join(__dirname, '..', 'scripts', 'models.js'))
      .main(argv, 'orion-native models')
      .then((code) => (process.exitCode = code))
  },
  build(argv) {
    const opts = parse('orion-native build', buildUsage, argv, {})
    if (!opts) return
    if (opts.help) return console.log(buildUsage)
    require(path.join(__dirname, '..', 'scripts', 'build.js'))
      .main([])
      .catch((e) => {
        console.error(`orion-native build: ${e.message}`)
        process.exit(1)
      })
  },
}

function main(argv) {
  const [cmd, ...rest] = argv
  if (Object.hasOwn(commands, cmd)) return commands[cmd](rest)
  if (cmd !== undefined && !cmd.startsWith('-'))
    return usageError('orion-native', `unknown command ${JSON.stringify(cmd)}`, usage)
  const opts = parse('orion-native', usage, argv, { version: { type: 'boolean' } })
  if (!opts) return
  if (opts.version) return console.log(require('../package.json').version)
  console.log(usage)
}

main(process.argv.slice(2))
