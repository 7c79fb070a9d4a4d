'use strict'
// llama.cpp on a machine whose cores another process keeps busy (src/llama/gate.rs):
// ggml's threads meet after every step, so a thread without a core holds the others up;
// a GGUF model on the CPU then computes with fewer threads, the cores the other
// processes leave, and with all of them again once they are free. Seen through the
// public API: the embedding stats' and a generation's `threads`, with a child process
// that spins on one core.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { getSharedEmbeddingClient, getModelLoader } = require('..')
const twins = require('../scripts/gguf-twin')

const cores = os.availableParallelism()
const why = cores < 2 ? `this machine has ${cores} core (a busy one would leave none)` : twins.missing() || null
if (why) console.log(`skipped: the busy-core tests (${why})`)
const files = why ? null : twins.ensure()

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** A process spinning on one core until killed. */
function spinner() {
  return spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' })
}

/** Embeds single new texts for `ms` (the load is read at most every 200 ms): the stats' threads after. */
async function embedFor(client, tag, ms) {
  const end = Date.now() + ms
  for (let i = 0; Date.now() < end; i++) await client.createEmbedding(`${tag} ${i}: how do plants store energy?`)
  return client.getStats().threads
}

;(why ? describe.skip : describe)('llama.cpp with a core busy in another process', () => {
  let spin = null
  // A copy of the f16 twin: a model of its own, whose service (process-wide, like every
  // embedding service) no other test file shares in a jest process.
  let dir, model
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-busy-cores-'))
    model = path.join(dir, 'busy-cores.f16.gguf')
    fs.copyFileSync(files.f16, model)
  })
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
  afterEach(() => {
    spin?.kill('SIGKILL')
    spin = null
  })

  test('a GGUF embedding model computes with one thread fewer while another process spins, and with all again after', async () => {
    const client = getSharedEmbeddingClient({ modelPath: model })
    const idle = await embedFor(client, 'idle', 800)
    // Its threads by default: the machine's cores (unless something else runs here).
    expect(idle).toBeGreaterThanOrEqual(2)
    expect(idle).toBeLessThanOrEqual(cores)
    spin = spinner()
    await sleep(500)
    const busy = await embedFor(client, 'busy', 1500)
    spin.kill('SIGKILL')
    spin = null
    await sleep(500)
    const after = await embedFor(client, 'after', 1500)
    console.log(`GGUF embeddings on ${cores} cores: ${idle} threads idle, ${busy} with a core busy, ${after} after`)
    expect(busy).toBe(idle - 1)
    expect(after).toBe(idle)
  }, 60_000)

  test('a generation on the CPU does the same, and says so in its timings', async () => {
    const loader = getModelLoader()
    const ask = (q) => loader.generate('demo', q, { temperature: 0, maxTokens: 48 })
    const idle = (await ask('Name a colour.')).timings.threads
    expect(idle).toBeGreaterThanOrEqual(2)
    spin = spinner()
    await sleep(500)
    // Long enough to span several readings of the load.
    let busy
    for (const end = Date.now() + 1500; Date.now() < end;) busy = (await ask('Write about the sea.')).timings.threads
    // Its threads are the physical cores: with SMT the spinning process may leave it
    // enough of the others.
    expect(busy).toBe(Math.min(idle, cores - 1))
  }, 120_000)
})
