#!/usr/bin/env node
'use strict'
// Makes the GGUF twins of the default embedding model (all-MiniLM-L6-v2, int8 ONNX):
// the same weights and vocabulary in GGUF files for llama.cpp, as f32, f16, bf16 and q8_0
// (scripts/gguf-twin.py writes them with PyPI's `gguf` package, reading the ONNX file
// with PyPI's `onnx`). __tests__/embedding-gguf.test.js compares the llama.cpp engine's
// vectors on them with the ONNX engine's. Also a reranker fixture (`rerank`, f16): the
// same encoder with a classification head of seeded random weights, for
// __tests__/rerank.test.js (no cross-encoder is in a registry package; its scores test
// the plumbing, not ranking quality). Everything goes under target/gguf-twin/ (the
// Python packages too): nothing is installed on the machine.
//
//   node scripts/gguf-twin.js            make the twins if needed; print their paths
//   node scripts/gguf-twin.js --prepare  (the test command) make them where they can be
//                                        made, else say which tests are skipped
//
// Needs python3 with pip, and the default model fetched (node scripts/models.js).

const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { modelsDir } = require('../lib/paths')
const { run, python } = require('./util')

const root = path.join(__dirname, '..')
const dir = path.join(root, 'target', 'gguf-twin')
// Pinned, so that every machine writes the same files.
// onnxruntime and tokenizers: the reference scores of the ONNX reranker fixture
// (scripts/rerank-reference.py).
const PACKAGES = ['gguf==0.19.0', 'onnx==1.23.2', 'numpy==2.4.6', 'onnxruntime==1.23.2', 'tokenizers==0.22.1']
const TYPES = ['f32', 'f16', 'bf16', 'q8_0', 'rerank', 'rerank-onnx']
const ARGS = {
  f32: ['f32'],
  f16: ['f16'],
  bf16: ['bf16'],
  q8_0: ['q8_0'],
  rerank: ['f16', '--rank'],
  'rerank-onnx': ['--onnx-rank'],
}
const MODEL = 'all-MiniLM-L6-v2'

/** Why the twins cannot be made here, or null. */
function missing() {
  if (!python()) return 'python3 with pip is missing (Debian: apt-get install python3-pip)'
  if (!fs.existsSync(path.join(modelsDir(), MODEL, 'model.onnx')))
    return `${MODEL} is not fetched (node scripts/models.js)`
  return null
}

/** The pinned Python packages, installed under target/gguf-twin/python once; that path. */
function packages() {
  const py = python()
  const site = path.join(dir, 'python')
  const stamp = path.join(site, '.packages')
  if (!fs.existsSync(stamp) || fs.readFileSync(stamp, 'utf8') !== PACKAGES.join(' ')) {
    fs.rmSync(site, { recursive: true, force: true })
    process.stderr.write(`Installing ${PACKAGES.join(', ')} into ${path.relative(root, site)}\n`)
    // Into target/ only; PIP_BREAK_SYSTEM_PACKAGES lets a Debian pip (PEP 668) install
    // there too, and older pips ignore it.
    run(py, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '--target', site, ...PACKAGES], {
      env: { ...process.env, PIP_BREAK_SYSTEM_PACKAGES: '1' },
    })
    fs.writeFileSync(stamp, PACKAGES.join(' '))
  }
  return site
}

/** Each twin's path by weight type, made first where missing. */
function ensure() {
  const why = missing()
  if (why) throw new Error(`cannot make the GGUF twins: ${why}`)
  const out = paths()
  if (TYPES.every((t) => fs.existsSync(out[t]))) return out
  const py = python()
  const site = packages()
  for (const t of TYPES) {
    if (fs.existsSync(out[t])) continue
    const tmp = `${out[t]}.partial`
    fs.rmSync(tmp, { recursive: true, force: true })
    run(py, [path.join(__dirname, 'gguf-twin.py'), path.join(modelsDir(), MODEL), tmp, ...ARGS[t]], {
      env: { ...process.env, PYTHONPATH: site },
    })
    fs.renameSync(tmp, out[t])
  }
  return out
}

/** Each twin's path: a GGUF file, or for `rerank-onnx` a directory (the ONNX form). */
function paths() {
  return Object.fromEntries(
    TYPES.map((t) => [t, path.join(dir, t === 'rerank-onnx' ? `${MODEL}.${t}` : `${MODEL}.${t}.gguf`)]),
  )
}

/** The twins' paths where they are made, or null. */
function built() {
  const out = paths()
  return TYPES.every((t) => fs.existsSync(out[t])) ? out : null
}

/**
 * The demo chat model (SmolLM2-135M-Instruct) with another model family's chat template
 * in its metadata: `templates` maps a template name (`default`, `tool_use`) to a file of
 * __tests__/fixtures/templates/. The tool-call tests render, constrain and parse each
 * family's syntax through it (its weights answer whatever the template; a forced call's
 * grammar makes the answer a call). Written with gguf's gguf_new_metadata script into
 * target/gguf-twin/, once; its path.
 */
function templated(name, templates) {
  const py = python()
  if (!py) throw new Error('python3 with pip is missing (Debian: apt-get install python3-pip)')
  const source = path.join(modelsDir(), 'smollm2-135m-instruct', 'SmolLM2-135M-Instruct.Q4_1.gguf')
  const out = path.join(dir, `SmolLM2-135M-Instruct.${name}.gguf`)
  if (fs.existsSync(out)) return out
  const site = packages()
  const fixtures = path.join(root, '__tests__', 'fixtures', 'templates')
  const list = Object.entries(templates).map(([n, file]) => ({
    name: n,
    template: fs.readFileSync(path.join(fixtures, file), 'utf8'),
  }))
  const tmp = `${out}.partial`
  run(
    py,
    [
      path.join(site, 'gguf', 'scripts', 'gguf_new_metadata.py'),
      source,
      tmp,
      '--chat-template',
      JSON.stringify(list),
      '--force',
    ],
    { env: { ...process.env, PYTHONPATH: site } },
  )
  fs.renameSync(tmp, out)
  return out
}

/** The reference scores of the cross-encoder in `dir` (scripts/rerank-reference.py). */
function referenceScores(dir, query, documents) {
  const site = packages()
  const r = spawnSync(python(), [path.join(__dirname, 'rerank-reference.py'), dir], {
    input: JSON.stringify({ query, documents }),
    env: { ...process.env, PYTHONPATH: site },
    encoding: 'utf8',
    maxBuffer: 16 << 20,
  })
  if (r.status !== 0) throw new Error(`rerank-reference.py failed: ${r.stderr}`)
  return JSON.parse(r.stdout)
}

/**
 * The cross-encoder in `dir` as an fp32 export (for the reranker's tests): its int8
 * weights folded into fp32 ones by ONNX Runtime's basic optimizations (constant folding of
 * `Cast(q) * scale`), written to `<out>/model.onnx` with the tokenizer's files beside it.
 */
function fp32CrossEncoder(dir, out) {
  fs.mkdirSync(out, { recursive: true })
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'config.json'])
    fs.copyFileSync(path.join(dir, f), path.join(out, f))
  const script = [
    'import sys, onnxruntime as ort',
    'o = ort.SessionOptions()',
    'o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC',
    'o.optimized_model_filepath = sys.argv[2]',
    "ort.InferenceSession(sys.argv[1], o, providers=['CPUExecutionProvider'])",
  ].join('\n')
  const r = spawnSync(
    python(),
    ['-c', script, path.join(dir, 'onnx', 'model_quantized.onnx'), path.join(out, 'model.onnx')],
    {
      env: { ...process.env, PYTHONPATH: packages() },
      encoding: 'utf8',
    },
  )
  if (r.status !== 0) throw new Error(`folding the cross-encoder failed: ${r.stderr}`)
}

module.exports = { ensure, built, missing, templated, referenceScores, fp32CrossEncoder }

if (require.main === module) {
  const prepare = process.argv.includes('--prepare')
  const why = missing()
  if (why && prepare) {
    console.log(`skipped: the GGUF embedding tests (no GGUF twin of ${MODEL}: ${why})`)
  } else {
    try {
      const out = ensure()
      if (!prepare) for (const t of TYPES) console.log(out[t])
    } catch (e) {
      console.error(e.message)
      process.exit(1)
    }
  }
}
