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

/**
 * Run `__tests__/workers/<script>` in a worker_thread with `workerData` (and the package's
 * root); resolves with its first message, rejects with its coded error.
 */
function inWorker(script, workerData) {
  const { Worker } = require('node:worker_threads')
  return new Promise((resolve, reject) => {
    const w = new Worker(path.join(__dirname, 'workers', script), {
      workerData: { root: path.resolve(__dirname, '..'), ...workerData },
    })
    w.once('message', (m) =>
      m.type === 'error' ? reject(Object.assign(new Error(m.message), { code: m.code })) : resolve(m),
    )
    w.once('error', reject)
  })
}

module.exports = {
  cosine,
  inWorker,
  expectCode,
  expectThrowCode,
  embeddingModelDir: dirs['all-MiniLM-L6-v2'],
  llmModelDir: dirs['smollm2-135m-instruct'],
  root: path.resolve(__dirname, '..'),
}
