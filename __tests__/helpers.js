'use strict'
const path = require('node:path')
const { ensureModels } = require('../scripts/models')

// The models are fetched by the test command beforehand; this only checks (fast) and
// fetches when someone runs jest directly on a fresh machine.
const dirs = ensureModels({ quiet: true })

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

// Rejections must be Errors carrying a stable `code`.
async function expectCode(promise, code) {
  let err
  try {
    await promise
  } catch (e) {
    err = e
  }
  expect(err).toBeInstanceOf(Error)
  expect(err.code).toBe(code)
  expect(typeof err.message).toBe('string')
  expect(err.message.length).toBeGreaterThan(10)
  return err
}

function expectThrowCode(fn, code) {
  let err
  try {
    fn()
  } catch (e) {
    err = e
  }
  expect(err).toBeInstanceOf(Error)
  expect(err.code).toBe(code)
  return err
}

module.exports = {
  cosine,
  expectCode,
  expectThrowCode,
  embeddingModelDir: dirs['all-MiniLM-L6-v2'],
  llmModelDir: dirs['smollm2-135m-instruct'],
  root: path.resolve(__dirname, '..'),
}
