#!/usr/bin/env node
'use strict'
// Retrieval benchmark: the llama.cpp embedding engine against the ONNX engine on the same
// model, and the shared reranker against transformers.js's cross-encoder on the same
// weights, in one run.
//
//   node bench/retrieval.js [--quick] [--json]
//
// Measures
//   1. all-MiniLM-L6-v2 on both engines: the ONNX engine (the default model.onnx, exact
//      precision) and the llama.cpp engine on its GGUF twins (f16: the same weights; bf16; q8_0),
//      made by scripts/gguf-twin.js. Texts/s one at a time, in batches of 32
//      (createEmbeddingsFloat32) and from eight worker_threads sending single texts at
//      once; model memory (RSS growth to a first batch, each in a fresh process). Every
//      run embeds texts never seen before; contenders' runs are interleaved. Goal: the
//      llama.cpp engine at 0.8× the ONNX engine's rate or better on the CPU.
//   1b. the same rates at the level of a CPU with AVX2 and no AVX-512, where this CPU has
//      more (and Linux can make CPUID fault): in a child process whose CPUID reports no
//      AVX-512, AVX-VNNI or AMX (bench/avx2-only.c, preloaded), so that llama.cpp and ONNX
//      Runtime both run the code they run on such a CPU.
//   2. reranking 100 documents of 100 to 300 tokens against one query: orion-native's
//      shared reranker on both its engines (llama.cpp on the GGUF reranker fixture: the
//      model's encoder with a seeded classification head; ONNX Runtime on the ONNX form
//      of the same, the very files transformers.js reads) against transformers.js 2.17.2's
//      AutoModelForSequenceClassification on the same weights (the ONNX graph with the same
//      head appended, scripts/gguf-twin.py --onnx-rank), in batches of 16 pairs, after
//      checking that their scores agree (and the ONNX engine with precision 'int8').
//      Goal: 2× transformers.js or better.
//   3. generation on the demo GGUF beside the GGUF embedding models of part 1 (loaded):
//      tokens/s while they are idle, and while the f16 twin embeds single texts without
//      pause; and that model's texts/s meanwhile. llama.cpp's computations take turns on
//      the cores (src/llama/gate.rs).
//   4. the same single texts on each engine, and generation, while another process spins
//      on one core: llama.cpp computes with the cores left (src/llama/gate.rs).
//
// Threads: both engines use every core; transformers.js's onnxruntime-node 1.14 its default
// (the physical cores, see bench/transformers.js).

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { performance } = require('node:perf_hooks')
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads')
const {
  log,
  fmt,
  summary,
  median,
  machine,
  machineLines,
  writeResults,
  parseArgs,
  die,
  markdownTable,
  embeddingModelDir,
  avx2Level,
} = require('./common')

const ROOT = path.join(__dirname, '..')
const MIB = 1024 * 1024
const BATCH = 32
const WORKERS = 8
const ENGINE_TARGET = 0.8 // llama.cpp engine ≥ 0.8 × the ONNX engine
const RERANK_TARGET = 2 // reranker ≥ 2 × transformers.js
const RERANK_BATCH = 16

// Short texts of retrieval's kind, each made unique by its run and index.
const STEMS = [
  'how do I reset my password',
  'quarterly revenue grew twelve percent to four billion dollars',
  'the mitochondria is the powerhouse of the cell',
  'which planet has the most moons in the solar system',
  'symptoms include fever, cough and shortness of breath',
  'the treaty was signed in 1648, ending the war',
  'order 48213 shipped on monday by express delivery',
  'a quick brown fox jumps over the lazy dog',
]
const text = (tag, i) => `${STEMS[i % STEMS.length]} (${tag} ${i})`

/** The contenders of part 1: each a getSharedEmbeddingClient's options. */
function contenders(twins) {
  return [
    { name: 'ONNX engine (model.onnx, exact)', key: 'onnx', options: {} },
    { name: 'llama.cpp engine (GGUF twin, f16)', key: 'llamaF16', options: { modelPath: twins.f16 } },
    // bf16: the same weights rounded to 8 bits of mantissa; the twin llama.cpp runs fastest
    // where the CPU has AVX-512 BF16 (products of bf16 pairs in one instruction).
    { name: 'llama.cpp engine (GGUF twin, bf16)', key: 'llamaBf16', options: { modelPath: twins.bf16 } },
    { name: 'llama.cpp engine (GGUF twin, q8_0)', key: 'llamaQ8', options: { modelPath: twins.q8_0 } },
  ]
}

/** Part 1: every contender one at a time, in batches and from workers, in interleaved rounds. */
async function engineRuns(orion, cs, rounds, n, { memory: withMemory, tag }) {
  const rates = Object.fromEntries(cs.map((c) => [c.key, { singles: [], batches: [], workers: [] }]))
  for (const c of cs) await orion.getSharedEmbeddingClient(c.options).createEmbedding(`warm ${c.key}`)
  for (let r = 0; r < rounds; r++) {
    for (const c of cs) {
      const client = orion.getSharedEmbeddingClient(c.options)
      rates[c.key].singles.push(await singles(client, `s${r}${c.key}`, n.singles))
      rates[c.key].batches.push(await batches(client, `b${r}${c.key}`, n.batches))
      rates[c.key].workers.push(await workers(c.options, `w${r}${c.key}`, n.workers))
      log(
        `${tag}round ${r + 1}/${rounds} ${c.name}: ${fmt(rates[c.key].singles.at(-1))} one at a time, ` +
          `${fmt(rates[c.key].batches.at(-1))} in batches, ${fmt(rates[c.key].workers.at(-1))} from 8 workers (texts/s)`,
      )
    }
  }
  const engines = cs.map((c) => ({
    name: c.name,
    key: c.key,
    weights: c.options.modelPath ? /\.([^.]+)\.gguf$/.exec(c.options.modelPath)[1] : 'onnx',
    singles: summary(rates[c.key].singles),
    batches: summary(rates[c.key].batches),
    workers: summary(rates[c.key].workers),
    ...(withMemory ? { memoryBytes: memory(c.options) } : {}),
  }))
  const onnx = engines.find((e) => e.key === 'onnx')
  for (const e of engines) {
    e.vsOnnx = {
      singles: e.singles.median / onnx.singles.median,
      batches: e.batches.median / onnx.batches.median,
      workers: e.workers.median / onnx.workers.median,
    }
  }
  return engines
}

/** Part 1 again in a process that sees no AVX-512 (common.js's avx2Level), or why not. */
function avx2Runs(quick) {
  const level = avx2Level()
  if (level.skipped) {
    log(`the AVX2-level run is skipped: ${level.skipped}`)
    return { skipped: level.skipped }
  }
  const r = spawnSync(process.execPath, [__filename, ...(quick ? ['--quick'] : [])], {
    env: level.env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  if (r.status !== 0) throw new Error(`the AVX2-level run failed (status ${r.status}, signal ${r.signal})`)
  const out = JSON.parse(r.stdout.trim().split('\n').pop())
  // It must have run llama.cpp's AVX2 build, not an AVX-512 one.
  if (out.llamaCpuFeatures.some((f) => /^AVX512|^AMX|^AVX_VNNI/.test(f)) || !out.llamaCpuFeatures.includes('AVX2'))
    throw new Error(`the AVX2-level run used llama.cpp's ${out.llamaCpuFeatures.join(' ')} build`)
  return { how: 'CPUID without AVX-512, AVX-VNNI and AMX (bench/avx2-only.c)', ...out }
}

async function singles(client, tag, n) {
  const t = performance.now()
  for (let i = 0; i < n; i++) await client.createEmbedding(text(tag, i))
  return (n / (performance.now() - t)) * 1000
}

async function batches(client, tag, n) {
  const t = performance.now()
  for (let b = 0; b < n; b++) {
    await client.createEmbeddingsFloat32(Array.from({ length: BATCH }, (_, i) => text(`${tag}-${b}`, i)))
  }
  return ((n * BATCH) / (performance.now() - t)) * 1000
}

/** Eight workers, each sending `n` single texts at once: texts/s over all of them. */
async function workers(options, tag, n) {
  const ws = Array.from(
    { length: WORKERS },
    (_, id) => new Worker(__filename, { workerData: { options, tag: `${tag}-w${id}`, n } }),
  )
  const ready = ws.map((w) => new Promise((r) => w.once('message', r)))
  await Promise.all(ready)
  const t = performance.now()
  const done = ws.map((w) => new Promise((r) => w.once('message', r)))
  for (const w of ws) w.postMessage('go')
  await Promise.all(done)
  const rate = ((WORKERS * n) / (performance.now() - t)) * 1000
  await Promise.all(ws.map((w) => w.terminate()))
  return rate
}

function workerMain() {
  const client = require(ROOT).getSharedEmbeddingClient(workerData.options)
  client.createEmbedding(`warm ${workerData.tag}`).then(() => {
    parentPort.postMessage('ready')
    parentPort.once('message', async () => {
      for (let i = 0; i < workerData.n; i++) await client.createEmbedding(text(workerData.tag, i))
      parentPort.postMessage('done')
    })
  })
}

/** RSS growth from before the client to after a first batch of 32, in a fresh process. */
function memory(options) {
  const script = `
    const before = process.memoryUsage().rss
    const c = require(${JSON.stringify(ROOT)}).getSharedEmbeddingClient(${JSON.stringify(options)})
    c.createEmbeddings(Array.from({ length: 32 }, (_, i) => 'memory ' + i)).then(() => {
      console.log(process.memoryUsage().rss - before)
    })
  `
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 120000 })
  if (r.status !== 0) throw new Error(`memory run failed: ${r.stderr}`)
  return Number(r.stdout.trim())
}

/** 100 documents of 100 to 300 tokens (about 1.3 tokens a word here), unique per run. */
function documents(tag, n) {
  const words = 'plants store the energy of sunlight in chemical bonds while markets and recipes do not'.split(' ')
  return Array.from({ length: n }, (_, i) => {
    const count = 75 + ((i * 37) % 150)
    return `${tag} ${i}: ` + Array.from({ length: count }, (_, k) => words[(k * 7 + i) % words.length]).join(' ')
  })
}

async function transformersReranker(dir) {
  // Sharp, imported at load by transformers.js, is stubbed as bench/transformers.js does.
  const Module = require('node:module')
  const tdir = path.dirname(require.resolve('@xenova/transformers/package.json'))
  try {
    const file = require.resolve('sharp', { paths: [tdir] })
    if (!require.cache[file]) {
      const stub = new Module(file, module)
      stub.filename = file
      stub.loaded = true
      stub.exports = () => {
        throw new Error('sharp is stubbed out')
      }
      require.cache[file] = stub
    }
  } catch {}
  const { AutoTokenizer, AutoModelForSequenceClassification, env } = await import('@xenova/transformers')
  env.localModelPath = dir
  env.allowRemoteModels = false
  env.allowLocalModels = true
  env.useFSCache = false
  const tokenizer = await AutoTokenizer.from_pretrained('orion/rerank')
  const model = await AutoModelForSequenceClassification.from_pretrained('orion/rerank', { quantized: true })
  return async (query, docs) => {
    const scores = []
    for (let i = 0; i < docs.length; i += RERANK_BATCH) {
      const part = docs.slice(i, i + RERANK_BATCH)
      const inputs = tokenizer(new Array(part.length).fill(query), { text_pair: part, padding: true, truncation: true })
      const { logits } = await model(inputs)
      scores.push(...logits.data)
    }
    return scores
  }
}

async function main() {
  const { quick, json } = parseArgs('retrieval.js', process.argv.slice(2))
  const twins = require('../scripts/gguf-twin').ensure()
  embeddingModelDir('all-MiniLM-L6-v2')
  const orion = require(ROOT)
  const rounds = quick ? 1 : 3
  const n = { singles: quick ? 20 : 150, batches: quick ? 2 : 8, workers: quick ? 5 : 30, docs: quick ? 20 : 100 }
  const results = { date: new Date().toISOString(), quick, machine: machine(), config: { rounds, ...n } }

  // 1. The engines, their runs interleaved.
  const cs = contenders(twins)
  if (process.env.ORION_BENCH_AVX2 === '1') {
    // The child of the AVX2-level run below: part 1 alone, as JSON on stdout.
    const engines = await engineRuns(orion, cs, rounds, n, { memory: false, tag: 'avx2 ' })
    process.stdout.write(
      JSON.stringify({ llamaCpuFeatures: orion.getOptimizationStrategy().llamaCpuFeatures, engines }) + '\n',
    )
    return
  }
  // 1b. The same at the level of a CPU with AVX2 and no AVX-512, where this one has more:
  // in a process that sees it so (bench/avx2-only.c), so that both engines take the code
  // they take on such a CPU, at this one's speed. First, while this process holds no model.
  results.avx2 = avx2Runs(quick)
  results.engines = await engineRuns(orion, cs, rounds, n, { memory: true, tag: '' })

  // 2. Reranking: both on the same weights, scores checked to agree first.
  const onnxDir = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-bench-rerank-'))
  const py = spawnSync(
    'python3',
    [
      path.join(ROOT, 'scripts/gguf-twin.py'),
      embeddingModelDir('all-MiniLM-L6-v2'),
      path.join(onnxDir, 'orion', 'rerank'),
      '--onnx-rank',
    ],
    { env: { ...process.env, PYTHONPATH: path.join(ROOT, 'target/gguf-twin/python') }, encoding: 'utf8' },
  )
  if (py.status !== 0) throw new Error(`the ONNX cross-encoder could not be written: ${py.stderr}`)
  try {
    const tjs = await transformersReranker(onnxDir)
    const reranker = orion.getSharedReranker({ modelPath: twins.rerank })
    // The ONNX engine on the very files transformers.js reads.
    const onnxReranker = orion.getSharedReranker({ modelPath: path.join(onnxDir, 'orion', 'rerank') })
    // And with integer products (`precision: 'int8'`) on the same files.
    const int8Reranker = orion.getSharedReranker({
      modelPath: path.join(onnxDir, 'orion', 'rerank'),
      precision: 'int8',
    })
    const query = 'how do plants store the energy of sunlight?'
    const check = documents('check', 8)
    const a = await tjs(query, check)
    const b = (await reranker.rerank(query, check)).sort((x, y) => x.index - y.index).map((x) => x.score)
    // Not equal: transformers.js gives the document token type 1 and ends it with [SEP],
    // llama.cpp (as its server) reads every token as type 0 and adds no last [SEP].
    results.rerankAgreement = { maxAbsDiff: Math.max(...a.map((s, i) => Math.abs(s - b[i]))) }
    const c = (await onnxReranker.rerank(query, check)).sort((x, y) => x.index - y.index).map((x) => x.score)
    results.rerankAgreement.onnxMaxAbsDiff = Math.max(...a.map((s, i) => Math.abs(s - c[i])))
    const d = (await int8Reranker.rerank(query, check)).sort((x, y) => x.index - y.index).map((x) => x.score)
    results.rerankAgreement.int8MaxAbsDiff = Math.max(...a.map((s, i) => Math.abs(s - d[i])))
    const orionRates = []
    const onnxRates = []
    const tjsRates = []
    const int8Rates = []
    for (let r = 0; r < rounds; r++) {
      const docs = documents(`o${r}`, n.docs)
      let t = performance.now()
      await reranker.rerank(query, docs)
      orionRates.push((docs.length / (performance.now() - t)) * 1000)
      const docs3 = documents(`x${r}`, n.docs)
      t = performance.now()
      await onnxReranker.rerank(query, docs3)
      onnxRates.push((docs3.length / (performance.now() - t)) * 1000)
      const docs4 = documents(`i${r}`, n.docs)
      t = performance.now()
      await int8Reranker.rerank(query, docs4)
      int8Rates.push((docs4.length / (performance.now() - t)) * 1000)
      const docs2 = documents(`t${r}`, n.docs)
      t = performance.now()
      await tjs(query, docs2)
      tjsRates.push((docs2.length / (performance.now() - t)) * 1000)
      log(
        `rerank round ${r + 1}/${rounds}: orion-native llama.cpp ${fmt(orionRates.at(-1))}, ONNX ${fmt(onnxRates.at(-1))}, ONNX int8 ${fmt(int8Rates.at(-1))}, transformers.js ${fmt(tjsRates.at(-1))} documents/s`,
      )
    }
    const s = reranker.getStats()
    results.rerank = {
      documents: n.docs,
      meanTokensPerPair: s.tokens / Math.max(1, s.requests),
      orion: summary(orionRates),
      onnx: summary(onnxRates),
      int8: summary(int8Rates),
      int8Weights: int8Reranker.getStats().int8Weights,
      transformers: summary(tjsRates),
      ratio: median(orionRates) / median(tjsRates),
      onnxRatio: median(onnxRates) / median(tjsRates),
      int8Ratio: median(int8Rates) / median(tjsRates),
      transformersVersion: require('@xenova/transformers/package.json').version,
    }
  } finally {
    fs.rmSync(onnxDir, { recursive: true, force: true })
  }
  // 3. Generation beside GGUF embeddings.
  const loader = orion.getModelLoader()
  await loader.loadModel('demo')
  const generate = async (i) => {
    let n = 0
    let first = 0
    await loader.generate('demo', [{ role: 'user', content: `Tell a short story about lighthouse ${i}.` }], {
      temperature: 0,
      maxTokens: 64,
      prefixCache: false,
      onToken: () => {
        if (!n++) first = performance.now()
      },
    })
    return ((n - 1) / (performance.now() - first)) * 1000
  }
  await generate(-1)
  const idle = []
  const busy = []
  const embedRates = []
  const f16Client = orion.getSharedEmbeddingClient(cs.find((c) => c.key === 'llamaF16').options)
  for (let r = 0; r < rounds + 2; r++) {
    idle.push(await generate(r))
    let stop = false
    let embedded = 0
    const t = performance.now()
    const pump = (async () => {
      while (!stop) await f16Client.createEmbedding(text(`g${r}`, embedded++))
    })()
    busy.push(await generate(r))
    stop = true
    await pump
    embedRates.push((embedded / (performance.now() - t)) * 1000)
    log(
      `generation round ${r + 1}: ${fmt(idle.at(-1))} tokens/s idle, ${fmt(busy.at(-1))} while embedding (${fmt(embedRates.at(-1))} texts/s)`,
    )
  }
  await loader.unloadModel('demo')
  results.beside = {
    idle: summary(idle),
    busy: summary(busy),
    embedding: summary(embedRates),
    ratio: median(busy) / median(idle),
  }
  // 4. Another process spinning on one core (as an app's renderer or a build would keep
  // one busy): single texts on each engine, and generation. llama.cpp computes with the
  // cores left (src/llama/gate.rs); the stats' threads say how many it used.
  const { spawn } = require('node:child_process')
  const spinner = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' })
  try {
    await new Promise((r) => setTimeout(r, 500))
    await loader.loadModel('demo')
    const busyRates = Object.fromEntries(cs.map((c) => [c.key, []]))
    const threads = {}
    const busyGeneration = []
    for (let r = 0; r < rounds; r++) {
      for (const c of cs) {
        const client = orion.getSharedEmbeddingClient(c.options)
        busyRates[c.key].push(await singles(client, `busy${r}${c.key}`, n.singles))
        threads[c.key] = client.getStats().threads
      }
      busyGeneration.push(await generate(`busy ${r}`))
      log(
        `one core busy, round ${r + 1}/${rounds}: ${cs.map((c) => `${c.key} ${fmt(busyRates[c.key].at(-1))}`).join(', ')} texts/s; generation ${fmt(busyGeneration.at(-1))} tokens/s`,
      )
    }
    results.busyCore = {
      engines: cs.map((c) => ({
        key: c.key,
        weights: results.engines.find((e) => e.key === c.key).weights,
        singles: summary(busyRates[c.key]),
        threads: threads[c.key] ?? null,
      })),
      generation: summary(busyGeneration),
      generationIdle: results.beside.idle,
    }
    await loader.unloadModel('demo')
  } finally {
    spinner.kill('SIGKILL')
  }
  // The goal per twin: each of its three rates at 0.8× the ONNX engine's or better.
  results.pass = {
    engine: enginePass(results.engines),
    rerank: Math.max(results.rerank.ratio, results.rerank.onnxRatio, results.rerank.int8Ratio) >= RERANK_TARGET,
  }
  if (results.avx2.engines) results.pass.engineAvx2 = enginePass(results.avx2.engines)
  const file = writeResults('retrieval', results)
  log(`wrote ${path.relative(process.cwd(), file)}`)
  process.stdout.write(json ? JSON.stringify(results, null, 2) + '\n' : report(results) + '\n')
}

/** Per twin: each of its three rates at 0.8× the ONNX engine's or better. */
function enginePass(engines) {
  return Object.fromEntries(
    engines
      .filter((e) => e.key !== 'onnx')
      .map((e) => [e.weights, Math.min(e.vsOnnx.singles, e.vsOnnx.batches, e.vsOnnx.workers) >= ENGINE_TARGET]),
  )
}

/** A twin's weight type (results written before bf16 was measured name only f16 and q8_0). */
const weights = (e) => e.weights ?? (e.key === 'llamaF16' ? 'f16' : 'q8_0')

/** Headline rows of each llama.cpp engine against the ONNX engine of the same run. */
function engineRows(engines, suffix, peer) {
  const onnx = engines.find((e) => e.key === 'onnx')
  const rows = []
  for (const e of onnx ? engines.filter((e) => e.key !== 'onnx') : [])
    for (const [what, k] of [
      ['one text at a time', 'singles'],
      ['batches of 32', 'batches'],
      ['8 workers, single texts', 'workers'],
    ])
      rows.push([
        `GGUF embeddings (llama.cpp, ${weights(e)}), ${what}${suffix} (texts/s)`,
        fmt(e[k].median),
        peer,
        fmt(onnx[k].median),
        `${fmt(e.vsOnnx[k], 2)}×`,
      ])
  return rows
}

/** The README's rows: each llama.cpp twin against the ONNX engine, and the reranker. */
function headline(r) {
  const onnx = r.engines.find((e) => e.key === 'onnx')
  const rows = [['comparison', 'orion-native', 'peer', 'peer’s result', 'orion-native vs peer']]
  rows.push(...engineRows(r.engines, '', 'ONNX engine, same model'))
  // The same at the AVX2 level (results written before it was measured have none).
  if (r.avx2?.engines) rows.push(...engineRows(r.avx2.engines, ', AVX2 level', 'ONNX engine, same model, AVX2 level'))
  for (const e of r.engines.filter((e) => e.key !== 'onnx')) {
    rows.push([
      `GGUF embedding model memory (${weights(e)})`,
      `${fmt(e.memoryBytes / MIB)} MiB`,
      'ONNX engine, same model',
      `${fmt(onnx.memoryBytes / MIB)} MiB`,
      `${fmt(e.memoryBytes / onnx.memoryBytes, 2)}×`,
    ])
  }
  rows.push([
    `rerank ${r.rerank.documents} documents of 100-300 tokens, llama.cpp engine (documents/s)`,
    fmt(r.rerank.orion.median),
    `transformers.js ${r.rerank.transformersVersion} cross-encoder, same weights`,
    fmt(r.rerank.transformers.median),
    `${fmt(r.rerank.ratio, 2)}×`,
  ])
  if (r.rerank.onnx)
    rows.push([
      `rerank ${r.rerank.documents} documents of 100-300 tokens, ONNX engine (documents/s)`,
      fmt(r.rerank.onnx.median),
      `transformers.js ${r.rerank.transformersVersion} cross-encoder, same files`,
      fmt(r.rerank.transformers.median),
      `${fmt(r.rerank.onnxRatio, 2)}×`,
    ])
  if (r.rerank.int8)
    rows.push([
      `rerank ${r.rerank.documents} documents of 100-300 tokens, ONNX engine, precision int8 (documents/s)`,
      fmt(r.rerank.int8.median),
      `transformers.js ${r.rerank.transformersVersion} cross-encoder, same files`,
      fmt(r.rerank.transformers.median),
      `${fmt(r.rerank.int8Ratio, 2)}×`,
    ])
  if (r.busyCore) {
    const onnxBusy = r.busyCore.engines.find((e) => e.key === 'onnx')
    for (const e of r.busyCore.engines.filter((e) => e.key !== 'onnx'))
      rows.push([
        `GGUF embeddings (llama.cpp, ${e.weights}), one text at a time, another process spinning on one core (texts/s; ${e.threads} thread(s))`,
        fmt(e.singles.median),
        'ONNX engine, same model, same load',
        fmt(onnxBusy.singles.median),
        `${fmt(e.singles.median / onnxBusy.singles.median, 2)}×`,
      ])
    rows.push([
      'generation (demo GGUF), another process spinning on one core (tokens/s)',
      fmt(r.busyCore.generation.median),
      'the same generation, no other load',
      fmt(r.busyCore.generationIdle.median),
      `${fmt(r.busyCore.generation.median / r.busyCore.generationIdle.median, 2)}×`,
    ])
  }
  if (r.beside)
    rows.push([
      `generation (demo GGUF) while a GGUF embedding model embeds without pause (tokens/s; ${fmt(r.beside.embedding.median)} texts/s embedded meanwhile)`,
      fmt(r.beside.busy.median),
      'the same generation, the embedding model loaded and idle',
      fmt(r.beside.idle.median),
      `${fmt(r.beside.ratio, 2)}×`,
    ])
  return rows
}

function report(r) {
  return [
    '## Retrieval: GGUF embeddings on llama.cpp, and the shared reranker',
    '',
    ...machineLines(r),
    `- medians of ${r.config.rounds} interleaved rounds; ${r.config.singles} single texts, ${r.config.batches} batches of ${BATCH}, ${WORKERS} workers × ${r.config.workers} texts per round`,
    `- reranking: ${r.rerank.documents} documents, ${fmt(r.rerank.meanTokensPerPair, 0)} tokens per (query, document) pair on average; largest score difference from transformers.js on 8 pairs: llama.cpp engine ${fmt(r.rerankAgreement.maxAbsDiff, 3)} (its document tokens are of type 1 and end with [SEP]; llama.cpp's, as its server's, are type 0 without the last [SEP]), ONNX engine ${fmt(r.rerankAgreement.onnxMaxAbsDiff ?? NaN, 5)}, ONNX engine with int8 products ${fmt(r.rerankAgreement.int8MaxAbsDiff ?? NaN, 3)} (${r.rerank.int8Weights ?? '?'} weights)`,
    r.avx2?.engines
      ? `- AVX2 level: the engines again in a process whose CPUID reports no AVX-512, AVX-VNNI or AMX (bench/avx2-only.c), so that both take the code they take on a CPU with AVX2 only, at this CPU's speed; llama.cpp's CPU build there: ${r.avx2.llamaCpuFeatures.join(' ')}`
      : `- AVX2 level: ${r.avx2?.skipped ?? 'not measured'}`,
    '',
    ...markdownTable(headline(r)),
    '',
    ...(r.pass.engineAvx2
      ? [
          `At the AVX2 level, llama.cpp engine ≥ ${ENGINE_TARGET}× the ONNX engine everywhere: ${Object.entries(
            r.pass.engineAvx2,
          )
            .map(([w, ok]) => `${w} ${ok ? '✓' : '✗'}`)
            .join(', ')}`,
          '',
        ]
      : []),
    `llama.cpp engine ≥ ${ENGINE_TARGET}× the ONNX engine everywhere: ${Object.entries(
      // Results written before bf16 was measured hold f16's verdict alone.
      typeof r.pass.engine === 'boolean' ? { f16: r.pass.engine } : r.pass.engine,
    )
      .map(([w, ok]) => `${w} ${ok ? '✓' : '✗'}`)
      .join(', ')}; rerank ≥ ${RERANK_TARGET}× transformers.js (the faster engine): ${r.pass.rerank ? '✓' : '✗'}`,
  ].join('\n')
}

if (!isMainThread) {
  workerMain()
} else if (require.main === module) {
  main()
    .then(() => process.exit(0))
    .catch(die)
}

module.exports = { report, headline }
