'use strict'
// Copies of the demo model with one float hyperparameter changed, each loaded and (if
// it loads) asked for a few tokens. Run in a child process: a llama.cpp abort
// (GGML_ASSERT) kills this process, which the test sees as a signal instead of losing
// the whole jest worker. Prints one JSON line: per case, the error code and message, or
// what the generation gave.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const orion = require(process.argv[2])
const source = process.argv[3]
const cases = JSON.parse(process.argv[4])

/** Where the f32 value of `key` is in `header` (the key, then type 6 = f32, then it). */
function valueAt(header, key) {
  const at = header.indexOf(Buffer.from(key))
  if (at < 0 || header.readUInt32LE(at + key.length) !== 6) throw new Error(`${key} is not an f32 in ${source}`)
  return at + key.length + 4
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-hparams-'))
  const header = Buffer.alloc(1 << 20)
  const fd = fs.openSync(source, 'r')
  fs.readSync(fd, header, 0, header.length, 0)
  fs.closeSync(fd)
  const loader = orion.getModelLoader()
  const out = []
  for (const [i, [key, value]] of cases.entries()) {
    const file = path.join(dir, `case-${i}.gguf`)
    fs.copyFileSync(source, file)
    const bytes = Buffer.alloc(4)
    bytes.writeFloatLE(value === 'NaN' ? NaN : value)
    const wfd = fs.openSync(file, 'r+')
    fs.writeSync(wfd, bytes, 0, 4, valueAt(header, key))
    fs.closeSync(wfd)
    try {
      await loader.loadModel(file)
      const r = await loader.generate(file, 'What is the capital of France?', { temperature: 0, maxTokens: 8 })
      out.push({ loaded: true, text: r.text })
      await loader.unloadModel(file)
    } catch (e) {
      out.push({ code: e.code, message: e.message })
    }
    fs.rmSync(file)
  }
  fs.rmSync(dir, { recursive: true })
  // The process is still usable afterwards.
  const r = await loader.generate('demo', 'What is the capital of France?', { temperature: 0, maxTokens: 12 })
  console.log(JSON.stringify({ cases: out, after: r.text }))
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e)
    process.exit(1)
  },
)
