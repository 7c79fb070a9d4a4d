'use strict'
// llama.cpp's devices as an installed package sees them (the GPU setting comes from
// ORION_GPU): the CPU backend picked for this CPU (and the CPU's features, on Linux), each
// GPU package's module and its check, the devices, and the demo model's greedy answer with
// where its layers went; then the device memory after unloading. Prints one JSON line. Usage: node gpu.cjs [modelsDir [question]]
const orion = require('orion-native')

async function main() {
  const modelsDir = process.argv[2]
  if (modelsDir) orion.configure({ modelsDir })
  const loader = orion.getModelLoader()
  const monitor = orion.getMemoryMonitor()
  const info = await loader.loadModel('demo')
  const s = orion.getOptimizationStrategy()
  const loaded = (await monitor.takeSnapshot()).devices
  const pieces = []
  const question = process.argv[3] || 'Name three rivers of Europe and say one thing about each.'
  for await (const t of loader.generateStream('demo', question, { temperature: 0, maxTokens: 8 })) pieces.push(t)
  // The context kept for the next turn, in the KV room its model holds for one.
  const kept = (await monitor.takeSnapshot()).devices
  await loader.unloadModel('demo')
  // Freed when the last use ends (a context settling into the cache holds the model for a
  // few evaluation steps).
  let after
  for (let waited = 0; ; waited += 250) {
    after = (await monitor.takeSnapshot()).devices
    if (after.every((d) => d.modelsBytes === 0) || waited > 60000) break
    await new Promise((r) => setTimeout(r, 250))
  }
  console.log(
    JSON.stringify({
      platform: `${process.platform}-${process.arch}`,
      llamaCpuFeatures: s.llamaCpuFeatures,
      // The CPU's features as Linux lists them (Arm's `Features`, x86's `flags`).
      cpuinfo: cpuinfo(),
      cpuModule: cpuModule(),
      gpuModules: s.gpuModules,
      gpus: s.gpus,
      device: s.device,
      gpu: info.gpu,
      pieces,
      loaded,
      kept,
      after,
    }),
  )
}

// The CPU backend module this process loaded, by its memory map (Linux).
function cpuModule() {
  try {
    const maps = require('node:fs').readFileSync('/proc/self/maps', 'utf8')
    const files = new Set(maps.split('\n').map((l) => l.split(/\s+/).pop()))
    return [...files].filter((f) => /libggml-cpu-[^/]*\.so$/.test(f)).map((f) => require('node:path').basename(f))
  } catch {
    return null
  }
}

function cpuinfo() {
  try {
    const text = require('node:fs').readFileSync('/proc/cpuinfo', 'utf8')
    const m = /^(?:Features|flags)\s*:\s*(.*)$/m.exec(text)
    return m ? m[1].trim().split(/\s+/) : []
  } catch {
    return []
  }
}

main().catch((e) => {
  console.error(`${e.code || ''} ${e.stack}`)
  process.exit(1)
})
