#!/usr/bin/env node
'use strict'
// orion-native's command line: `models` fetches the default models; `status` shows
// what running orion-native processes hold and how much memory pressure there is;
// `build` compiles the addon where no prebuilt platform package exists.
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
  models pull <id> [<id> ...]
                      download catalog or registry models the way loadModel does (e.g.
                      Mistral-7B-Instruct-v0.2-q4f16_1-MLC), with a progress bar
  build               build the native addon from source, for a platform with no prebuilt
                      package (needs Rust, cmake, a C++ compiler and libclang; about 10 minutes)
  status [--json] [--watch]
                      loaded models, memory, pressure and recent alerts of every process
                      monitoring memory (ORION_ENABLE_MEMORY_MONITOR=1 or monitor.start());
                      this machine's memory otherwise

\`orion-native <command> --help\` describes a command.`

const statusUsage = `usage: orion-native status [--json] [--watch]

Loaded models, memory, pressure and recent alerts of every orion-native process that
monitors memory (ORION_ENABLE_MEMORY_MONITOR=1 or monitor.start()); this machine's memory
when none does.

options:
  --json      print the snapshots as JSON
  --watch     redraw every 2 seconds until interrupted
  -h, --help  print this help and do nothing else`

const pullUsage = `usage: orion-native models pull <id> [<id> ...]

Downloads models of the catalog or the registry into the models directory exactly as
loadModel() would (resumable, sha256-checked, one download across processes), then checks
that llama.cpp loads them. An id is a model name (the level is chosen for this machine),
an id with a WebLLM suffix (Mistral-7B-Instruct-v0.2-q4f16_1-MLC) or a registry key.

options:
  -h, --help  print this help and do nothing else`

/** `models pull`: loadModel with a progress bar, then unload; an embedding model of the
 * catalog is fetched by loading it in the shared embedding client. Downloads are what the
 * user asked for here, so they are allowed for this process. */
async function pull(argv) {
  const opts = parseArgs({
    args: argv,
    options: { help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
    strict: true,
  })
  if (opts.values.help) return console.log(pullUsage)
  if (!opts.positionals.length) return usageError('orion-native models pull', 'name at least one model', pullUsage)
  const { getModelLoader, getSharedEmbeddingClient, configure } = require(path.join(__dirname, '..'))
  configure({ allowDownloads: true })
  const embeddingCatalog = require(path.join(__dirname, '..', 'src', 'llm', 'catalog.json')).embedding || {}
  const loader = getModelLoader()
  for (const id of opts.positionals) {
    if (Object.hasOwn(embeddingCatalog, id)) {
      try {
        const client = getSharedEmbeddingClient({ model: id })
        await client.createEmbedding('ready?')
        console.log(`${id}: ready (${client.getStats().dimension} dimensions)`)
      } catch (e) {
        console.error(`orion-native models pull: ${id}: ${e.code || ''} ${e.message}`)
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
          { format: `  ${id} [{bar}] {percentage}% (download to 90 %, then load)`, stream: process.stderr },
          cliProgress.Presets.shades_classic,
        )
        bar.start(100, 0)
      }
      bar.update(p)
    }
    try {
      const info = await loader.loadModel(id, onProgress)
      if (bar) bar.stop()
      console.log(`${id}: ready in ${info.path} (${(info.bytes / 1e6).toFixed(1)} MB, ${info.quantization || '?'})`)
      await loader.unloadModel(info.key)
    } catch (e) {
      if (bar) bar.stop()
      console.error(`orion-native models pull: ${id}: ${e.code || ''} ${e.message}`)
      process.exitCode = 1
      return
    }
  }
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

function render(statuses, own) {
  const lines = []
  if (!statuses.length) {
    lines.push('No orion-native process is monitoring memory (start one with ORION_ENABLE_MEMORY_MONITOR=1).')
    lines.push("This machine's memory:")
    statuses = [own]
  }
  for (const s of statuses) {
    const pct = (s.usedFraction * 100).toFixed(0)
    lines.push(
      `pid ${s.pid}  pressure ${s.pressure.toUpperCase()} (${pct} % of ${mb(s.budgetBytes)})  RSS ${mb(s.process.rss)}  ` +
        `system available ${mb(s.system.available)} of ${mb(s.system.total)}` +
        (s.system.cgroupLimit ? `  cgroup limit ${mb(s.system.cgroupLimit)}` : ''),
    )
    if (s.models.length) {
      const Table = require('cli-table3')
      // Compact columns, no box: it sits under a process's summary line.
      const none = { top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '' }
      const chars = {
        ...none,
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
      const table = new Table({
        head: ['model', 'size', 'quantization', 'state'],
        chars,
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
    lines.push(`  embedding cache ${mb(s.embeddingCacheBytes)}`)
    for (const r of s.recommendations) lines.push(`  → ${r}`)
    for (const a of s.alerts) lines.push(`  ! ${new Date(a.timestamp).toLocaleTimeString()} ${a.message}`)
  }
  return lines.join('\n')
}

async function status({ json, watch }) {
  const { getMemoryMonitor } = require(path.join(__dirname, '..'))
  const show = async () => {
    const statuses = published()
    const own = statuses.length
      ? null
      : await getMemoryMonitor()
          .takeSnapshot()
          .then((s) => ({
            pid: process.pid,
            pressure: s.pressure,
            usedFraction: s.usedFraction,
            budgetBytes: s.budgetBytes,
            system: s.system,
            process: s.process,
            models: [],
            embeddingCacheBytes: 0,
            recommendations: s.recommendations,
            alerts: [],
          }))
    if (json) return JSON.stringify(statuses.length ? statuses : [own], null, 2)
    return render(statuses, own)
  }
  if (!watch) return console.log(await show())
  for (;;) {
    const text = await show()
    // Clears a terminal only: piped, the snapshots follow one another.
    console.clear()
    process.stdout.write(`${text}\n\n(refreshing every 2 s; Ctrl-C to quit)\n`)
    await new Promise((r) => setTimeout(r, 2000))
  }
}

const commands = {
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
