'use strict'
// The README's first command ends in `node examples/demo.js`: its workers must run to the
// end with one embedding model load, a load progress that reaches 100 and a streamed
// answer that is right.
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { root } = require('./helpers')

function demo(args) {
  const child = spawnSync(process.execPath, [path.join(root, 'examples/demo.js'), ...args], {
    encoding: 'utf8',
    timeout: 240_000,
    env: { ...process.env, ORION_ENABLE_MEMORY_MONITOR: '' },
  })
  return child
}

test('the demo runs its four workers on one embedding model and streams a correct answer', () => {
  const child = demo(['--json'])
  expect(child.stderr).toBe('')
  expect(child.status).toBe(0)
  const summary = JSON.parse(child.stdout)

  expect(summary.workers).toBe(3) // plus the LLM worker
  expect(summary.embeddingModelLoads).toBe(1)
  expect(summary.texts).toBeGreaterThan(10)

  // Semantic search over the other workers' vectors finds the right notes.
  const top = Object.fromEntries(summary.search.map((h) => [h.query, h.top[0]]))
  expect(top['Which books about Stoicism have I come across?'].text).toMatch(/Stoic|Meditations|Seneca|Epictetus/i)
  expect(top['What do I know about baking bread?'].text).toMatch(/bread|dough|sourdough|loaf/i)
  expect(top['What is the capital of France?'].text).toMatch(/Paris/)

  // The load progress the LLM worker posted: integers that never decrease and end at 100.
  const { progress } = summary.llm
  expect(progress.length).toBeGreaterThan(0)
  expect(progress.at(-1)).toBe(100)
  progress.forEach((p, i) => {
    expect(Number.isInteger(p)).toBe(true)
    if (i) expect(p).toBeGreaterThanOrEqual(progress[i - 1])
  })

  // The answer arrived as a stream, piece by piece, and says Paris.
  expect(summary.llm.streamedPieces).toBeGreaterThan(1)
  expect(summary.llm.streamedText).toBe(summary.llm.answer)
  expect(summary.llm.answer).toMatch(/Paris/)
  expect(summary.modelsLoaded.map((m) => m.key)).toEqual(['demo'])
  expect(summary.memory.pressure).toMatch(/^(low|medium|high|critical)$/)
})

test('the demo shares one model across more workers, and rejects a bad --workers', () => {
  const many = demo(['--json', '--workers', '6'])
  expect(many.status).toBe(0)
  const summary = JSON.parse(many.stdout)
  expect(summary.workers).toBe(6)
  expect(summary.embeddingModelLoads).toBe(1)

  const bad = demo(['--workers', 'lots'])
  expect(bad.status).toBe(2)
  expect(bad.stderr).toMatch(/--workers must be an integer/)
})
