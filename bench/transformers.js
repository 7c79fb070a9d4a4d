'use strict'
// transformers.js (@xenova/transformers 2.17.2, the app's status quo) as a benchmark peer:
// a feature-extraction pipeline on orion-native's own int8 all-MiniLM-L6-v2 files, read
// offline from a temporary Hugging Face style folder.
//
// Two workarounds keep transformers.js real, with nothing in node_modules changed:
//   - sharp. The package's entry imports src/utils/image.js, which imports sharp at load time
//     and throws when sharp's native part is missing (bench/ is installed with
//     --ignore-scripts: sharp's install script downloads libvips from GitHub). Before
//     importing transformers.js, stubSharp() puts a stand-in for sharp's entry file in
//     require.cache: Node's ESM loader, importing a CommonJS file, takes the exports already
//     in require.cache, so image.js gets a function that throws if an image is ever
//     processed. Text pipelines never call it. This is per thread: call it in each worker.
//   - the ONNX IR version (see transformersModelFile).
// Threads: transformers.js 2.17.2 exposes no thread setting for Node. env.backends.onnx is
// onnxruntime's env, whose only thread knob (wasm.numThreads) is for the WebAssembly backend,
// and models.js creates its sessions with { executionProviders } alone. Passing
// intraOpNumThreads by wrapping InferenceSession.create was tried and dropped: its
// onnxruntime-node 1.14 ignores the option, so it runs on its default, the physical cores.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const Module = require('node:module')

const HF_MODEL_ID = 'Xenova/all-MiniLM-L6-v2'
const ROOT = path.join(__dirname, '..')

function stubSharp() {
  let file
  try {
    const transformersDir = path.dirname(require.resolve('@xenova/transformers/package.json'))
    file = require.resolve('sharp', { paths: [transformersDir] })
  } catch {
    return // sharp is not on disk at all: the import fails and says so
  }
  if (require.cache[file]) return
  const stub = new Module(file, module)
  stub.filename = file
  stub.loaded = true
  stub.exports = function sharp() {
    throw new Error('sharp is stubbed out by bench/transformers.js: transformers.js images are not supported here')
  }
  require.cache[file] = stub
}

// onnxruntime-node 1.14, the one transformers.js 2.17.2 pins, reads ONNX IR versions up to 8,
// and model.onnx says IR version 10 ("Unsupported model IR version: 10, max supported IR
// version: 8"). The graph needs nothing newer (opset 17, no IR 9/10 types), so
// onnx/model_quantized.onnx is a copy of model.onnx with only the ir_version field set to 8:
// field 1 of the ModelProto, a one-byte varint at the start of the file, so one byte differs.
// (The other way round, handing transformers.js the newer onnxruntime-node 1.30 of bench/,
// fails on its Tensor API: "TypeError: Tensor.location must be a string.")
const ONNX_IR_MAX = 8

function transformersModelFile(from, to) {
  const bytes = fs.readFileSync(from)
  if (bytes[0] !== 0x08 || bytes[1] > 0x7f) throw new Error(`${from}: ir_version is not where expected`)
  const ir = bytes[1]
  if (ir > ONNX_IR_MAX) bytes[1] = ONNX_IR_MAX
  fs.writeFileSync(to, bytes)
  return { from, irVersion: ir, givenIrVersion: bytes[1], bytes: bytes.length }
}

/** A temporary folder transformers.js reads HF_MODEL_ID from; the caller removes `root`. */
function makeHfFolder(modelDir) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-bench-transformers-'))
  const target = path.join(root, HF_MODEL_ID)
  fs.mkdirSync(path.join(target, 'onnx'), { recursive: true })
  for (const name of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
    try {
      fs.symlinkSync(path.join(modelDir, name), path.join(target, name))
    } catch {
      fs.copyFileSync(path.join(modelDir, name), path.join(target, name))
    }
  }
  const model = transformersModelFile(path.join(modelDir, 'model.onnx'), path.join(target, 'onnx/model_quantized.onnx'))
  return { root, model }
}

/**
 * A pipeline('feature-extraction', HF_MODEL_ID, { quantized: true }) read from hfRoot.
 * embed(text) → vector; embedBatch(texts) → Float32Array of texts.length × dimension.
 */
async function loadTransformers(hfRoot) {
  stubSharp()
  const { pipeline, env } = await import('@xenova/transformers')
  env.localModelPath = hfRoot
  env.allowRemoteModels = false
  env.allowLocalModels = true
  env.useFSCache = false
  const extractor = await pipeline('feature-extraction', HF_MODEL_ID, { quantized: true })
  const options = { pooling: 'mean', normalize: true }
  return {
    embed: async (text) => (await extractor(text, options)).data,
    embedBatch: async (texts) => (await extractor(texts, options)).data,
  }
}

function transformersVersions() {
  const transformersDir = path.dirname(require.resolve('@xenova/transformers/package.json'))
  const ortNode = require.resolve('onnxruntime-node/package.json', { paths: [transformersDir] })
  return {
    transformers: require('@xenova/transformers/package.json').version,
    transformersOnnxruntimeNode: {
      version: require(ortNode).version,
      path: path.relative(ROOT, path.dirname(ortNode)),
    },
  }
}

module.exports = { HF_MODEL_ID, makeHfFolder, loadTransformers, transformersVersions }
