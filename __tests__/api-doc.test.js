'use strict'
// The API reference (docs/API.md) and the README's API section against index.d.ts, and
// index.d.ts against what the addon really exports.
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { collect, readmeProblems, INTERNAL } = require('../scripts/api-doc')

const root = path.join(__dirname, '..')

const api = collect()

test('docs/API.md is what scripts/api-doc.js generates from index.d.ts', () => {
  // In a child process: prettier, which formats the page, needs dynamic import(), which
  // jest's sandbox does not allow. On failure: node scripts/api-doc.js
  const check = spawnSync(process.execPath, [path.join(root, 'scripts/api-doc.js'), '--check'], { encoding: 'utf8' })
  expect(check.stderr).toBe('')
  expect(check.status).toBe(0)
})

test('index.d.ts declares exactly what the addon exports', () => {
  const orion = require('..')
  const runtime = Object.keys(orion)
    .filter((name) => name !== 'default' && !INTERNAL.has(name))
    .sort()
  const declared = [...api.functions, ...api.classes, ...api.constants].map((d) => d.name).sort()
  expect(declared).toEqual(runtime)
  for (const f of api.functions) expect(typeof orion[f.name]).toBe('function')
  for (const c of api.classes) {
    // Every declared method exists on the class's prototype (getters included).
    const proto = orion[c.name].prototype
    for (const m of c.members) {
      if (m.name.startsWith('[')) continue // [Symbol.asyncIterator], checked by the LLM tests
      expect([c.name, m.name, m.name in proto]).toEqual([c.name, m.name, true])
    }
  }
})

test("the README's API section agrees with index.d.ts", () => {
  expect(readmeProblems(api)).toEqual([])
})

test('the README check catches an omission and an unknown name', () => {
  const readme = [
    '# x',
    '## API',
    '### `getSharedEmbeddingClient(options?)`',
    '### `client.createEmbedding(text)`, `client.embedEverything(texts)`',
    '## Next',
  ].join('\n')
  const problems = readmeProblems(api, readme)
  expect(problems).toEqual(
    expect.arrayContaining([
      expect.stringMatching(/never mentions getModelLoader/),
      expect.stringMatching(/names embedEverything/),
    ]),
  )
  expect(problems.join('\n')).not.toMatch(/never mentions getSharedEmbeddingClient|names createEmbedding\b/)
})
