'use strict'
// What the benchmark scripts share: statistics, machine facts, argument parsing and
// writing results.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const RESULTS_DIR = path.join(__dirname, 'results')

const log = (line) => process.stderr.write(line + '\n')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const fmt = (x, digits = 1) => (x == null || !Number.isFinite(x) ? 'n/a' : x.toFixed(digits))

function median(values) {
  const s = [...values].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

function summary(values) {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values), values }
}

function cosine(a, b) {
  let dot = 0
  let na = 0
  let nb = 0
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i]
    na += a[i] * a[i]
    nb += b[i] * b[i]
  }
  return dot / Math.sqrt(na * nb)
}

/** A markdown table (rows of cell strings, the first the header), as lines, laid out as prettier would. */
function markdownTable(rows) {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)))
  const line = (row) => `| ${row.map((cell, c) => cell.padEnd(widths[c])).join(' | ')} |`
  return [line(rows[0]), line(widths.map((w) => '-'.repeat(w))), ...rows.slice(1).map(line)]
}

/** The CPU's feature flags as Linux reports them (an empty set elsewhere). */
function cpuFlags() {
  try {
    const line = /^flags\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? ''
    return new Set(line.split(/\s+/).filter(Boolean))
  } catch {
    return new Set()
  }
}

/** The CPU features that decide the speed of the integer and llama.cpp kernels (Linux). */
function cpuFeatures() {
  const flags = cpuFlags()
  return ['avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512_vnni', 'avx512_bf16', 'avx_vnni', 'amx_int8'].filter(
    (f) => flags.has(f),
  )
}

function machine() {
  const cpus = os.cpus()
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cpuFeatures: cpuFeatures(),
    cores: cpus.length,
    availableParallelism: os.availableParallelism(),
    totalMemBytes: os.totalmem(),
    loadAverage: os.loadavg(),
    node: process.version,
    platform: `${process.platform} ${process.arch} ${os.release()}`,
  }
}

/** The date and machine lines that open every script's report. */
function machineLines(r) {
  const m = r.machine
  return [
    `- date: ${r.date}`,
    `- CPU: ${m.cpu}${m.cpuFeatures?.length ? ` (${m.cpuFeatures.join(' ')})` : ''}, ${m.cores} cores (availableParallelism ${m.availableParallelism}), ${fmt(m.totalMemBytes / 1024 ** 3)} GiB memory, load average ${m.loadAverage.map((x) => fmt(x, 2)).join(' ')}`,
    `- node ${m.node}, ${m.platform}`,
  ]
}

/** The embedding model's directory; fetches it when missing, like the tests (a few stats otherwise). */
function embeddingModelDir(name) {
  return require('../scripts/models').ensureModels({ only: name, quiet: true })[name]
}

function localDate(d) {
  const pad = (n) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`
}

/** Writes `<kind>-<date>[-quick].json` and returns its path. */
function writeResults(kind, results) {
  fs.mkdirSync(RESULTS_DIR, { recursive: true })
  const file = path.join(
    RESULTS_DIR,
    `${kind}-${localDate(new Date(results.date))}${results.quick ? '-quick' : ''}.json`,
  )
  // Through a .tmp file (git-ignored) so that an interrupted run leaves no half-written JSON.
  fs.writeFileSync(file + '.tmp', JSON.stringify(results, null, 2) + '\n')
  fs.renameSync(file + '.tmp', file)
  return file
}

function parseArgs(script, argv) {
  const known = new Set(['--quick', '--json'])
  for (const a of argv) {
    if (!known.has(a)) {
      process.stderr.write(`unknown argument ${a}\nusage: node bench/${script} [--quick] [--json]\n`)
      process.exit(2)
    }
  }
  return { quick: argv.includes('--quick'), json: argv.includes('--json') }
}

/**
 * The environment of a child process that sees this CPU as one without AVX-512, AVX-VNNI
 * or AMX (bench/avx2-only.c, preloaded): every library in it takes its AVX2 code, at this
 * machine's speed. `{ env }`, or `{ skipped }` saying why it cannot be had here. For
 * comparisons at the level of the CPUs that have AVX2 only, on a machine that has more.
 */
function avx2Level() {
  if (process.platform !== 'linux' || process.arch !== 'x64') return { skipped: 'not Linux x64' }
  const flags = cpuFlags()
  if (!flags.has('avx512f') && !flags.has('avx_vnni'))
    return { skipped: 'this CPU has neither AVX-512 nor AVX-VNNI: the main run is at the AVX2 level' }
  if (!flags.has('cpuid_fault')) return { skipped: 'this CPU or kernel cannot make CPUID fault (no cpuid_fault flag)' }
  const src = path.join(__dirname, 'avx2-only.c')
  const lib = path.join(__dirname, '..', 'target', 'bench', 'avx2-only.so')
  if (!fs.existsSync(lib) || fs.statSync(lib).mtimeMs < fs.statSync(src).mtimeMs) {
    fs.mkdirSync(path.dirname(lib), { recursive: true })
    const cc = require('node:child_process').spawnSync(
      process.env.CC || 'cc',
      ['-O2', '-shared', '-fPIC', '-o', lib, src],
      {
        encoding: 'utf8',
      },
    )
    if (cc.status !== 0) return { skipped: `bench/avx2-only.c did not compile: ${cc.stderr || cc.error}` }
  }
  const env = { ...process.env, ORION_BENCH_AVX2: '1' }
  env.LD_PRELOAD = [lib, process.env.LD_PRELOAD].filter(Boolean).join(':')
  // V8's handler of out-of-bounds WebAssembly accesses would take CPUID's fault first, and
  // crash on it.
  env.NODE_OPTIONS = [process.env.NODE_OPTIONS, '--disable-wasm-trap-handler'].filter(Boolean).join(' ')
  return { env }
}

function die(e) {
  process.stderr.write(`${e.stack ?? e}\n`)
  process.exit(1)
}

/**
 * node-llama-cpp's `getLlama` as every benchmark runs it: its prebuilt CPU binaries only
 * (no GPU, no build, no download) at `threads` threads. llama.cpp's log goes to `logger`.
 */
async function nodeLlama(nlc, threads, logger = () => {}) {
  return nlc.getLlama({
    gpu: false,
    build: 'never',
    skipDownload: true,
    progressLogs: false,
    maxThreads: threads,
    logLevel: 'warn',
    logger,
  })
}

module.exports = {
  RESULTS_DIR,
  avx2Level,
  nodeLlama,
  log,
  sleep,
  fmt,
  median,
  summary,
  cosine,
  markdownTable,
  machine,
  machineLines,
  embeddingModelDir,
  localDate,
  writeResults,
  parseArgs,
  die,
}
