'use strict'
// Each precision against the independent reference vectors, on the platform this runs on
// (the cross smoke tests run it under qemu and Wine: int8's integer kernels differ per CPU
// architecture). Prints one JSON line: per precision, the worst cosine batched and one text
// at a time, with the CPU features and int8 weight layout the addon chose.
// Usage: node accuracy.cjs <modelsDir> <reference-embeddings.json>
const fs = require('node:fs')
const orion = require('orion-native')

const [modelsDir, referencePath] = process.argv.slice(2)
orion.configure({ modelsDir })
const reference = JSON.parse(fs.readFileSync(referencePath, 'utf8'))

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

async function main() {
  const texts = reference.items.map((it) => it.text)
  const worst = (vs) => Math.min(...vs.map((v, i) => cosine(v, reference.items[i].vector)))
  const out = { arch: process.arch }
  for (const precision of ['exact', 'int8']) {
    // Emulated (qemu), a batch takes many times longer than on hardware.
    const client = orion.getSharedEmbeddingClient({ precision, timeoutMs: 600_000 })
    const batched = await client.createEmbeddings(texts)
    client.clearCache()
    const singles = []
    for (const t of texts) singles.push(await client.createEmbedding(t))
    const stats = client.getStats()
    out[precision] = {
      batched: worst(batched),
      single: worst(singles),
      cpuFeatures: stats.cpuFeatures,
      int8Weights: stats.int8Weights ?? null,
    }
  }
  console.log(JSON.stringify(out))
}

main().catch((e) => {
  console.error(`${e.code || ''} ${e.stack}`)
  process.exit(1)
})
