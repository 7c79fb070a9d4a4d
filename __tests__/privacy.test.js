'use strict'
// Nothing behind the user's back: a process that embeds (both precisions), generates,
// takes a memory snapshot and exits writes nothing outside the documented cache, and makes no
// network connection, starting from an empty HOME and TMPDIR, as on a new machine
// (the run itself is in hostile/privacy.js, which `npm run stress` repeats).
const path = require('node:path')
const { root, embeddingModelDir } = require('./helpers')
const { runPrivately } = require('./hostile/privacy')

test('with an empty HOME and TMPDIR, nothing is written outside the cache and no connection is made', () => {
  const r = runPrivately(root, path.dirname(embeddingModelDir))
  expect(r.stderr).toBe('')
  expect(JSON.parse(r.stdout)).toEqual({ exact: 384, int8: 384, tokens: 4 })
  expect(r.outside).toEqual([])
  expect(r.tmp).toEqual([])
  if (r.traced) {
    expect(r.inet).toEqual([])
  } else {
    console.log('strace is not installed: connections not checked')
  }
})
