'use strict'
// jest runs each test file in its own realm while the addon lives in Node's main one.
// What the package hands a caller must belong to the caller's realm all the same:
// arrays are Arrays, errors are Errors, Promises are Promises.
const { root, expectCode } = require('./helpers')
const orion = require(root)

test('the addon itself builds values of another realm here (what the JS layer fixes)', () => {
  const native = require('../lib/binding').load()
  expect(Array.isArray(native.getOptimizationStrategy().reasons)).toBe(true)
  expect(native.getOptimizationStrategy().reasons instanceof Array).toBe(false)
})

test('values from the package are instances of this realm', async () => {
  const client = orion.getSharedEmbeddingClient()
  const pending = client.createEmbedding('realm check')
  expect(pending).toBeInstanceOf(Promise)
  const v = await pending
  expect(v).toBeInstanceOf(Array)
  expect(v).toHaveLength(384)
  const vs = await client.createEmbeddings(['a', 'b'])
  expect(vs).toBeInstanceOf(Array)
  expect(vs[1]).toBeInstanceOf(Array)
  expect(await client.createEmbeddingsFloat32(['a'])).toBeInstanceOf(Float32Array)
  expect(client.getStats()).toBeInstanceOf(Object)
  expect(orion.getOptimizationStrategy().reasons).toBeInstanceOf(Array)
  expect(orion.getModelLoader().listModels()).toBeInstanceOf(Array)
  expect(orion.QUANTIZATION_LEVELS.q4).toBeInstanceOf(Object)
  expect(Object.isFrozen(orion.QUANTIZATION_LEVELS)).toBe(true)
  const monitor = orion.getMemoryMonitor()
  const snapshot = await monitor.takeSnapshot()
  expect(snapshot.recommendations).toBeInstanceOf(Array)
  expect(monitor.getSnapshots()).toBeInstanceOf(Array)
})

test('errors, thrown and rejected, are Errors of this realm with their code', async () => {
  let thrown
  try {
    orion.getSharedEmbeddingClient({ nope: 1 })
  } catch (e) {
    thrown = e
  }
  expect(thrown).toBeInstanceOf(Error)
  expect(thrown.code).toBe('INVALID_OPTION')
  expect(thrown.stack).toMatch(/nope|INVALID_OPTION|option/i)
  const err = await expectCode(orion.getSharedEmbeddingClient().createEmbedding(42), 'INVALID_INPUT')
  expect(err).toBeInstanceOf(Error)
  await expect(orion.getModelLoader().loadModel('no-such-model-anywhere')).rejects.toBeInstanceOf(Error)
})

test("subscribers receive this realm's values", async () => {
  const monitor = orion.getMemoryMonitor()
  const got = new Promise((resolve) => {
    const off = monitor.onSnapshot((s) => {
      off()
      resolve(s)
    })
  })
  expect(typeof monitor.onAlert(() => {})).toBe('function')
  await monitor.takeSnapshot()
  const s = await got
  expect(s).toBeInstanceOf(Object)
  expect(s.recommendations).toBeInstanceOf(Array)
})

test('the classes cannot be constructed around the factories', () => {
  expect(() => new orion.ModelLoader()).toThrow(TypeError)
  expect(orion.getModelLoader()).toBeInstanceOf(orion.ModelLoader)
  expect(orion.getSharedEmbeddingClient()).toBeInstanceOf(orion.SharedEmbeddingClient)
})
