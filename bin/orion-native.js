#!/usr/bin/env node
'use strict'
// orion-native's command line: `models` fetches the default models; `status` shows
// what running orion-native processes hold and how much memory pressure there is;
// `build` compiles the addon where no prebuilt platform package exists.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const [cmd, ...args] = process.argv.slice(2)
const usage = `usage: orion-native <command>

commands:
  models [--only embedding|llm] [--force]   fetch the default models into ORION_MODELS_DIR
                                            (default: the per-user cache directory)
  build                                     build the native addon from source, for a platform
                                            with no prebuilt package (needs Rust, cmake, a C++
                                            compiler and libclang; about 10 minutes)
  status [--json] [--watch]                 loaded models, memory, pressure and recent alerts of
                                            every process monitoring memory (ORION_ENABLE_MEMORY_MONITOR=1
                                            or monitor.start()); this machine's memory otherwise`

function opt(name) {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}

function cacheDir() {
  const home = os.homedir() || os.tmpdir()
  if (process.platform === 'win32')
    return path.join(process.env.LOCALAPPDATA || path.join(home, 'AppData', 'Local'), 'orion-native')
  if (process.platform === 'darwin') return path.join(home, 'Library', 'Caches', 'orion-native')
  return path.join(process.env.XDG_CACHE_HOME || path.join(home, '.cache'), 'orion-native')
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
    const rows = [['model', 'size', 'quantization', 'state']]
    for (const m of s.models)
      rows.push([m.key, mb(m.bytes), m.quantization || '?', m.inUse ? 'generating' : `idle ${ago(m.idleMs)}`])
    if (s.models.length) {
      const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)))
      for (const r of rows) lines.push('  ' + r.map((c, i) => c.padEnd(widths[i])).join('  '))
    } else {
      lines.push('  no models loaded')
    }
    lines.push(`  embedding cache ${mb(s.embeddingCacheBytes)}`)
    for (const r of s.recommendations) lines.push(`  → ${r}`)
    for (const a of s.alerts) lines.push(`  ! ${new Date(a.timestamp).toLocaleTimeString()} ${a.message}`)
  }
  return lines.join('\n')
}

async function status() {
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
    if (args.includes('--json')) return JSON.stringify(statuses.length ? statuses : [own], null, 2)
    return render(statuses, own)
  }
  if (!args.includes('--watch')) return console.log(await show())
  for (;;) {
    const text = await show()
    process.stdout.write(`\x1b[2J\x1b[H${text}\n\n(refreshing every 2 s; Ctrl-C to quit)\n`)
    await new Promise((r) => setTimeout(r, 2000))
  }
}

switch (cmd) {
  case 'status':
    status().catch((e) => {
      console.error(`orion-native status: ${e.message}`)
      process.exit(1)
    })
    break
  case 'models': {
    const { ensureModels } = require(path.join(__dirname, '..', 'scripts', 'models.js'))
    try {
      ensureModels({ only: opt('--only'), force: args.includes('--force') })
    } catch (e) {
      console.error(`orion-native models: ${e.message}`)
      process.exit(1)
    }
    break
  }
  case 'build':
    require(path.join(__dirname, '..', 'scripts', 'build.js'))
      .main([])
      .catch((e) => {
        console.error(`orion-native build: ${e.message}`)
        process.exit(1)
      })
    break
  case undefined:
  case '-h':
  case '--help':
    console.log(usage)
    break
  default:
    console.error(`orion-native: unknown command ${JSON.stringify(cmd)}\n\n${usage}`)
    process.exit(2)
}
