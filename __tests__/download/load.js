'use strict'
// One process of the download tests: registers a model whose file is online only, loads
// it (with progress), and prints the outcome as JSON.
//   node load.js <root> <descriptor JSON> [generate] [abort at percent]
const [root, descriptor, generate, abortAt] = process.argv.slice(2)
const { getModelLoader } = require(root)

async function main() {
  const loader = getModelLoader()
  const progress = []
  try {
    loader.registerModel('dl', JSON.parse(descriptor))
    const controller = new AbortController()
    const info = await loader.loadModel(
      'dl',
      (p) => {
        progress.push(p)
        // Give up once the download is under way.
        if (abortAt && p >= Number(abortAt)) controller.abort()
      },
      { signal: controller.signal },
    )
    let text
    if (generate)
      text = (await loader.generate('dl', 'What is the capital of France?', { temperature: 0, maxTokens: 24 })).text
    console.log(JSON.stringify({ ok: true, path: info.path, progress, text }))
  } catch (e) {
    console.log(JSON.stringify({ ok: false, code: e.code, message: e.message, progress }))
  }
}
main()
