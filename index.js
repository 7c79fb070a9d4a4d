'use strict'
// orion-native's entry point: loads the native addon (lib/binding.js) and wraps it in a
// thin layer whose only job is that callers get values, errors and Promises of their
// own JS realm.
//
// Why: the addon is loaded once per thread and builds its objects in the realm that
// loaded it. A test runner such as jest evaluates each test file in its own realm
// (a vm context) while native modules stay in Node's main one, so an array from the
// addon fails `toBeInstanceOf(Array)` and an error `toBeInstanceOf(Error)`. This file
// is evaluated inside the caller's realm, so what it builds belongs there. In an
// ordinary process the two realms are the same and nothing is copied.
const native = require('./lib/binding').load()

const foreign = Object.getPrototypeOf(native.getModelLoader) !== Function.prototype
const INTERNAL = Symbol('orion-native internal')
const ERROR_TYPES = { Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError }

/** A copy of a value from the addon's realm, built in this one (deep). */
function adopt(v) {
  if (!foreign || v === null || typeof v !== 'object') return v
  if (Array.isArray(v)) return Array.from(v, adopt)
  if (ArrayBuffer.isView(v)) {
    const Typed = globalThis[Object.prototype.toString.call(v).slice(8, -1)]
    return typeof Typed === 'function' ? new Typed(v) : v
  }
  if (Object.prototype.toString.call(v) === '[object Error]') return adoptError(v)
  const proto = Object.getPrototypeOf(v)
  if (proto !== null && Object.getPrototypeOf(proto) !== null) return v // a class instance: kept
  const out = {}
  for (const k of Object.keys(v)) out[k] = adopt(v[k])
  return Object.isFrozen(v) ? Object.freeze(out) : out
}

/** The same error as an instance of this realm's Error class, `code` and stack kept. */
function adoptError(e) {
  if (e instanceof Error || e === null || typeof e !== 'object') return e
  const Type = ERROR_TYPES[e.name] || Error
  const out = new Type(e.message)
  for (const k of Object.keys(e)) out[k] = k === 'cause' ? adoptError(e[k]) : adopt(e[k])
  if (typeof e.stack === 'string') {
    Object.defineProperty(out, 'stack', { value: e.stack, writable: true, configurable: true })
  }
  return out
}

function call(fn, self, args) {
  try {
    return adopt(fn.apply(self, args))
  } catch (e) {
    throw adoptError(e)
  }
}

function callAsync(fn, self, args) {
  let p
  try {
    p = fn.apply(self, args)
  } catch (e) {
    throw adoptError(e)
  }
  return foreign
    ? Promise.resolve(p).then(adopt, (e) => {
        throw adoptError(e)
      })
    : p
}

function internalOnly(token, what, factory) {
  if (token !== INTERNAL) throw new TypeError(`${what} is not constructed directly: call ${factory}()`)
}

class SharedEmbeddingClient {
  #native
  constructor(token, n) {
    internalOnly(token, 'SharedEmbeddingClient', 'getSharedEmbeddingClient')
    this.#native = n
  }
  get model() {
    return this.#native.model
  }
  createEmbedding(text, options) {
    return callAsync(this.#native.createEmbedding, this.#native, arguments)
  }
  createEmbeddings(texts, options) {
    return callAsync(this.#native.createEmbeddings, this.#native, arguments)
  }
  createEmbeddingsFloat32(texts, options) {
    return callAsync(this.#native.createEmbeddingsFloat32, this.#native, arguments)
  }
  getStats() {
    return call(this.#native.getStats, this.#native, arguments)
  }
  clearCache() {
    return call(this.#native.clearCache, this.#native, arguments)
  }
}

class TokenStream {
  #native
  constructor(token, n) {
    internalOnly(token, 'TokenStream', 'loader.generateStream')
    this.#native = n
  }
  next() {
    return callAsync(this.#native.next, this.#native, arguments)
  }
  return() {
    return callAsync(this.#native.return, this.#native, arguments)
  }
  get result() {
    return adopt(this.#native.result)
  }
  [Symbol.asyncIterator]() {
    return this
  }
}

class ModelLoader {
  #native
  constructor(token, n) {
    internalOnly(token, 'ModelLoader', 'getModelLoader')
    this.#native = n
  }
  loadModel(modelKey, onProgress) {
    return callAsync(this.#native.loadModel, this.#native, arguments)
  }
  unloadModel(modelKey) {
    return callAsync(this.#native.unloadModel, this.#native, arguments)
  }
  markModelUsed(modelKey) {
    return call(this.#native.markModelUsed, this.#native, arguments)
  }
  getStats() {
    return call(this.#native.getStats, this.#native, arguments)
  }
  generate(modelKey, prompt, options) {
    return callAsync(this.#native.generate, this.#native, arguments)
  }
  generateStream(modelKey, prompt, options) {
    return new TokenStream(INTERNAL, call(this.#native.generateStream, this.#native, arguments))
  }
  registerModel(key, descriptor) {
    return call(this.#native.registerModel, this.#native, arguments)
  }
  listModels() {
    return call(this.#native.listModels, this.#native, arguments)
  }
}

/** A subscriber that receives this realm's copy of what the addon sends it. */
function subscribe(method, self, cb) {
  const unsubscribe = call(method, self, [typeof cb === 'function' && foreign ? (v) => cb(adopt(v)) : cb])
  return () => call(unsubscribe, undefined, [])
}

class MemoryMonitor {
  #native
  constructor(token, n) {
    internalOnly(token, 'MemoryMonitor', 'getMemoryMonitor')
    this.#native = n
  }
  takeSnapshot() {
    return callAsync(this.#native.takeSnapshot, this.#native, arguments)
  }
  getSnapshots() {
    return call(this.#native.getSnapshots, this.#native, arguments)
  }
  getStats() {
    return call(this.#native.getStats, this.#native, arguments)
  }
  getAlerts() {
    return call(this.#native.getAlerts, this.#native, arguments)
  }
  get hasAlerts() {
    return this.#native.hasAlerts
  }
  clearAlerts() {
    return call(this.#native.clearAlerts, this.#native, arguments)
  }
  start(intervalMs) {
    return call(this.#native.start, this.#native, arguments)
  }
  stop() {
    return call(this.#native.stop, this.#native, arguments)
  }
  get isRunning() {
    return this.#native.isRunning
  }
  onSnapshot(cb) {
    return subscribe(this.#native.onSnapshot, this.#native, cb)
  }
  onAlert(cb) {
    return subscribe(this.#native.onAlert, this.#native, cb)
  }
}

function getSharedEmbeddingClient(options) {
  return new SharedEmbeddingClient(INTERNAL, call(native.getSharedEmbeddingClient, native, arguments))
}
function getModelLoader(options) {
  return new ModelLoader(INTERNAL, call(native.getModelLoader, native, arguments))
}
function getMemoryMonitor(options) {
  return new MemoryMonitor(INTERNAL, call(native.getMemoryMonitor, native, arguments))
}
function getOptimizationStrategy() {
  return call(native.getOptimizationStrategy, native, arguments)
}
function applyQuantization(modelId, level) {
  return call(native.applyQuantization, native, arguments)
}
function configure(options) {
  return call(native.configure, native, arguments)
}
const QUANTIZATION_LEVELS = adopt(native.QUANTIZATION_LEVELS)

// One assignment per name, so that Node's ESM loader sees every named export.
exports.SharedEmbeddingClient = SharedEmbeddingClient
exports.ModelLoader = ModelLoader
exports.TokenStream = TokenStream
exports.MemoryMonitor = MemoryMonitor
exports.getSharedEmbeddingClient = getSharedEmbeddingClient
exports.getModelLoader = getModelLoader
exports.getMemoryMonitor = getMemoryMonitor
exports.getOptimizationStrategy = getOptimizationStrategy
exports.applyQuantization = applyQuantization
exports.configure = configure
exports.QUANTIZATION_LEVELS = QUANTIZATION_LEVELS
