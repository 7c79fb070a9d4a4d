'use strict'
// One private run, shared by __tests__/privacy.test.js and `npm run stress`: a process
// that embeds (both precisions), generates, takes a memory snapshot and exits, started
// with an empty HOME and TMPDIR as on a new machine, under strace when it is installed.
// Returns what it printed and what it left outside the documented cache.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

/** Every file and directory under `dir`, relative to it. */
function tree(dir, base = dir) {
  const out = []
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    out.push(path.relative(base, p))
    if (e.isDirectory()) out.push(...tree(p, base))
  }
  return out
}

// The work runs in a worker that loads orion-native first (the main thread never does): the
// harder case, where a worker's process.env is a copy that native code never reads.
const SCRIPT = `
const { Worker } = require('node:worker_threads')
const work = \`
const { parentPort } = require('node:worker_threads')
const o = require(\${JSON.stringify(process.argv[1])})
;(async () => {
  const exact = await o.getSharedEmbeddingClient().createEmbedding('Nothing leaves this machine.')
  const int8 = await o.getSharedEmbeddingClient({ precision: 'int8' }).createEmbedding('Nothing leaves this machine.')
  const g = await o.getModelLoader().generate('demo', 'Say hello.', { maxTokens: 4, temperature: 0 })
  o.getMemoryMonitor().takeSnapshot()
  parentPort.postMessage({ exact: exact.length, int8: int8.length, tokens: g.tokens })
})().catch((e) => parentPort.postMessage({ code: e.code, message: e.message }))
\`
const w = new Worker(work, { eval: true })
w.once('message', (m) => { console.log(JSON.stringify(m)); w.terminate() })
w.once('error', (e) => { console.log(JSON.stringify({ error: String(e) })); process.exitCode = 1 })
`

/**
 * Run the package at `root` privately, reading its models from `modelsDir`. Returns the
 * child's `stderr` and `stdout`, `outside` (what appeared in HOME outside the cache),
 * `tmp` (what appeared in TMPDIR), `traced` and, when traced, `inet` (the IPv4/IPv6
 * connections it tried).
 */
function runPrivately(root, modelsDir) {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-privacy-'))
  try {
    const home = path.join(base, 'home')
    const tmp = path.join(base, 'tmp')
    fs.mkdirSync(home)
    fs.mkdirSync(tmp)
    const env = {
      PATH: process.env.PATH,
      HOME: home,
      TMPDIR: tmp,
      // The models are read where the test command fetched them; nothing is written there.
      ORION_MODELS_DIR: modelsDir,
    }
    // strace sees every connection the process and its threads try (ONNX Runtime's telemetry
    // uploads over HTTPS where it is on); without strace, the files are still checked.
    const traced = spawnSync('strace', ['-V'], { encoding: 'utf8' }).status === 0
    const traceFile = path.join(base, 'trace')
    const [cmd, args] = traced
      ? ['strace', ['-f', '-qq', '-e', 'trace=connect', '-o', traceFile, process.execPath, '-e', SCRIPT, root]]
      : [process.execPath, ['-e', SCRIPT, root]]
    const r = spawnSync(cmd, args, { env, encoding: 'utf8', timeout: 120_000 })
    // The documented cache is $HOME/.cache/orion-native (XDG_CACHE_HOME unset): the memory
    // snapshot for `orion-native status` may live there, nothing else anywhere.
    const cache = path.join('.cache', 'orion-native')
    const outside = tree(home).filter((p) => !(p === '.cache' || p === cache || p.startsWith(cache + path.sep)))
    const inet = traced
      ? fs
          .readFileSync(traceFile, 'utf8')
          .split('\n')
          .filter((l) => /sa_family=AF_INET6?\b/.test(l))
      : undefined
    return {
      stderr: r.stderr,
      stdout: r.stdout,
      status: r.status,
      signal: r.signal,
      outside,
      tmp: tree(tmp),
      traced,
      inet,
    }
  } finally {
    fs.rmSync(base, { recursive: true, force: true })
  }
}

module.exports = { runPrivately }
