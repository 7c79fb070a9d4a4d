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
const { isMainThread } = require('node:worker_threads')
const native = require('./lib/binding').load()

// Native threads must be out of ONNX Runtime and llama.cpp before exit() runs their
// static destructors: on the main thread's `exit` event (process.exit, a natural end,
// an uncaught exception) the addon stops them, within 2 s. The addon registers that on
// this thread's real `process`, once, whichever realm evaluates this file (src/js/lifecycle.rs).
native.__attach(isMainThread)

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

// The codes of orion-native's own errors (src/error.rs), and BINDING_NOT_FOUND.
const CODES = new Set([
  'INVALID_INPUT',
  'INVALID_OPTION',
  'MODEL_NOT_FOUND',
  'DOWNLOAD_REQUIRED',
  'DOWNLOAD_FAILED',
  'MODEL_LOAD_FAILED',
  'RUNTIME_NOT_FOUND',
  'GPU_UNAVAILABLE',
  'EMBEDDING_TIMEOUT',
  'OVERLOADED',
  'ABORTED',
  'INFERENCE_FAILED',
  'UNKNOWN_MODEL',
  'MODEL_BUSY',
  'INSUFFICIENT_MEMORY',
  'PROMPT_TOO_LONG',
  'INPUT_TOO_LONG',
  'SCHEMA_UNSUPPORTED',
  'OUTPUT_INCOMPLETE',
  'SHUT_DOWN',
  'REMOTE_UNAVAILABLE',
  'REMOTE_ERROR',
  'REMOTE_PROTOCOL',
  'INTERNAL',
])

/**
 * Every error a caller sees carries one of the codes above: napi-rs's own argument
 * errors (`StringExpected`, `InvalidArg`, ...) become INVALID_INPUT, its other failures
 * (a panic caught in the addon is a `GenericFailure`) INTERNAL, and an exception of the
 * caller's own code (an option getter or a Proxy trap that throws while the addon reads
 * the options) INVALID_OPTION; the original is the `cause`.
 */
function coded(e, fallback) {
  try {
    return codedError(e, fallback)
  } catch {
    // What was thrown cannot even be looked at (a revoked Proxy).
    const err = new Error('the options could not be read: your code threw a value that cannot be shown')
    err.code = fallback || 'INVALID_OPTION'
    return err
  }
}

function codedError(e, fallback) {
  e = adoptError(e)
  if (e instanceof Error && CODES.has(e.code)) return e
  const napiCode = e && typeof e.code === 'string' ? e.code : null
  const code =
    fallback ||
    (napiCode === null ? 'INVALID_OPTION' : /Expected$|^InvalidArg$/.test(napiCode) ? 'INVALID_INPUT' : 'INTERNAL')
  const message = bounded(safeMessage(e))
  const err = new Error(
    code === 'INVALID_OPTION' ? `the options could not be read: your code threw "${message}"` : message,
  )
  err.code = code
  err.cause = e
  return err
}

/** The message of whatever was thrown, even a Proxy or an object whose getters throw. */
function safeMessage(e) {
  try {
    return e instanceof Error ? String(e.message) : String(e)
  } catch {
    return 'a value that cannot be shown'
  }
}

/** At most 200 characters of a message quoted from elsewhere, with its length when cut. */
function bounded(s) {
  return s.length > 200 ? `${s.slice(0, 200)}…(${s.length} characters)` : s
}

function call(fn, self, args) {
  try {
    return adopt(fn.apply(self, args))
  } catch (e) {
    throw coded(e)
  }
}

/** A Promise-returning method: every failure, even an argument error, is a rejection. */
function callAsync(fn, self, args, settled) {
  let p
  try {
    p = fn.apply(self, args)
  } catch (e) {
    if (settled) settled()
    return Promise.reject(coded(e))
  }
  if (!foreign && !settled) return p
  return Promise.resolve(p).then(
    (v) => {
      if (settled) settled()
      return adopt(v)
    },
    (e) => {
      if (settled) settled()
      throw coded(e)
    },
  )
}

/**
 * The one callback policy: a user callback that throws never kills the process and is
 * never silently lost. The call it belongs to goes on; the first exception of each
 * callback is reported through `process.emitWarning` (code ORION_CALLBACK_ERROR).
 */
function guarded(cb, what) {
  if (typeof cb !== 'function') return cb
  let reported = false
  const report = (e) => {
    if (reported) return
    reported = true
    const detail = e instanceof Error ? e.stack || e.message : String(e)
    process.emitWarning(`orion-native: the ${what} callback threw; the call goes on. ${detail}`, {
      code: 'ORION_CALLBACK_ERROR',
    })
  }
  return function (...args) {
    try {
      const r = cb.apply(this, args)
      // An async callback's rejection is reported the same way, not left unhandled.
      if (r && typeof r.then === 'function') r.then(undefined, report)
      return r
    } catch (e) {
      report(e)
    }
  }
}

const noop = () => {}

/**
 * The per-call options as the addon gets them: `onToken` guarded, and the caller's
 * AbortSignal replaced by the call's stop switch (src/js/stop.rs), which this file
 * throws when the signal aborts; the addon never listens to the signal itself. The
 * listener on the caller's signal is removed when the call settles (one app-wide signal
 * shared by many calls then holds no closure per call). Returns [options, settled].
 * Reading the options may run the caller's getters: their exceptions become
 * INVALID_OPTION.
 */
function callOptions(options) {
  // Everything here may run the caller's code (a getter, a Proxy's trap, a revoked
  // Proxy, which throws on any use): whatever it throws is INVALID_OPTION.
  try {
    return relayOptions(options)
  } catch (e) {
    throw coded(e, 'INVALID_OPTION')
  }
}

function relayOptions(options) {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) return [options, noop]
  const { signal, onToken } = options
  const relay = signal && typeof signal.addEventListener === 'function' && typeof signal.aborted === 'boolean'
  if (!relay && typeof onToken !== 'function') return [options, noop]
  const copy = Object.assign({}, options)
  let settled = noop
  if (typeof onToken === 'function') copy.onToken = guarded(onToken, 'onToken')
  if (relay) {
    // Anything else that is not an AbortSignal goes to the addon as it is, which refuses it.
    const stop = native.__stopSwitch()
    if (signal.aborted) native.__stop(stop)
    else settled = follow(signal, stop)
    copy.signal = stop
  }
  return [copy, settled]
}

// Per caller signal, the stop switches of the calls following it: one listener on that
// signal for all of them (so many concurrent calls sharing it raise no
// MaxListenersExceededWarning), removed when the last call settles.
const followers = new WeakMap()

function follow(signal, stop) {
  let set = followers.get(signal)
  if (!set) {
    set = new Set()
    const forward = () => {
      for (const s of set) native.__stop(s)
      set.clear()
    }
    set.forward = forward
    followers.set(signal, set)
    signal.addEventListener('abort', forward, { once: true })
  }
  set.add(stop)
  return () => {
    set.delete(stop)
    if (set.size === 0 && followers.get(signal) === set) {
      followers.delete(signal)
      signal.removeEventListener('abort', set.forward)
    }
  }
}

/** callAsync for methods whose last argument is per-call options. */
function callWithOptions(fn, self, args, at) {
  let options, settled
  try {
    ;[options, settled] = callOptions(args[at])
  } catch (e) {
    return Promise.reject(e)
  }
  const a = Array.prototype.slice.call(args)
  if (a.length > at) a[at] = options
  return callAsync(fn, self, a, settled === noop ? undefined : settled)
}

function internalOnly(token, what, factory) {
  if (token !== INTERNAL) {
    const err = new TypeError(`${what} is not constructed directly: call ${factory}() instead`)
    err.code = 'INVALID_INPUT'
    throw err
  }
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
    return callWithOptions(this.#native.createEmbedding, this.#native, arguments, 1)
  }
  createEmbeddings(texts, options) {
    return callWithOptions(this.#native.createEmbeddings, this.#native, arguments, 1)
  }
  createEmbeddingsFloat32(texts, options) {
    return callWithOptions(this.#native.createEmbeddingsFloat32, this.#native, arguments, 1)
  }
  getStats() {
    return call(this.#native.getStats, this.#native, arguments)
  }
  clearCache() {
    return call(this.#native.clearCache, this.#native, arguments)
  }
}

class SharedReranker {
  #native
  constructor(token, n) {
    internalOnly(token, 'SharedReranker', 'getSharedReranker')
    this.#native = n
  }
  get model() {
    return this.#native.model
  }
  rerank(query, documents, options) {
    return callWithOptions(this.#native.rerank, this.#native, arguments, 2)
  }
  getStats() {
    return call(this.#native.getStats, this.#native, arguments)
  }
  clearCache() {
    return call(this.#native.clearCache, this.#native, arguments)
  }
}

// A stream dropped unfinished (no end, no return()) stops its generation when the addon's
// object is collected; this releases its signal relay when the wrapper is.
const unfinishedStreams = new FinalizationRegistry((settled) => settled())

class TokenStream {
  #native
  #settled
  #finished = false
  constructor(token, n, settled) {
    internalOnly(token, 'TokenStream', 'loader.generateStream')
    this.#native = n
    this.#settled = settled || noop
    if (settled && settled !== noop) unfinishedStreams.register(this, settled, this)
  }
  next() {
    if (this.#finished) return Promise.resolve({ done: true, value: undefined })
    return callAsync(this.#native.next, this.#native, arguments).then(
      (step) => {
        if (step.done) this.#finish()
        return step
      },
      (e) => {
        this.#finish()
        throw e
      },
    )
  }
  return() {
    this.#finish()
    return callAsync(this.#native.return, this.#native, arguments)
  }
  #finish() {
    this.#finished = true
    unfinishedStreams.unregister(this)
    this.#settled()
    this.#settled = noop
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
  loadModel(modelKey, onProgress, options) {
    const a = Array.prototype.slice.call(arguments)
    if (a.length > 1) a[1] = guarded(onProgress, 'onProgress')
    return callWithOptions(this.#native.loadModel, this.#native, a, 2)
  }
  downloadModel(modelKey, onProgress, options) {
    const a = Array.prototype.slice.call(arguments)
    if (a.length > 1) a[1] = guarded(onProgress, 'onProgress')
    return callWithOptions(this.#native.downloadModel, this.#native, a, 2)
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
    return callWithOptions(this.#native.generate, this.#native, arguments, 2)
  }
  generateStream(modelKey, prompt, options) {
    return startStream(this.#native.generateStream, this.#native, arguments, 2)
  }
  createChatSession(modelKey, options) {
    return new ChatSession(INTERNAL, call(this.#native.createChatSession, this.#native, arguments))
  }
  countTokens(modelKey, prompt, options) {
    return callAsync(this.#native.countTokens, this.#native, arguments)
  }
  tokenize(modelKey, text, options) {
    return callAsync(this.#native.tokenize, this.#native, arguments)
  }
  detokenize(modelKey, tokens) {
    return callAsync(this.#native.detokenize, this.#native, arguments)
  }
  registerModel(key, descriptor) {
    return call(this.#native.registerModel, this.#native, arguments)
  }
  listModels() {
    return call(this.#native.listModels, this.#native, arguments)
  }
}

/** A stream of `n`'s generation (`generateStream`, `sendStream`), its options relayed. */
function startStream(method, self, args, at) {
  const [opts, settled] = callOptions(args[at])
  const a = Array.prototype.slice.call(args)
  if (a.length > at) a[at] = opts
  try {
    return new TokenStream(INTERNAL, call(method, self, a), settled)
  } catch (e) {
    settled()
    throw e
  }
}

class ChatSession {
  #native
  constructor(token, n) {
    internalOnly(token, 'ChatSession', 'loader.createChatSession')
    this.#native = n
  }
  get modelKey() {
    return this.#native.modelKey
  }
  get history() {
    return adopt(this.#native.history)
  }
  send(message, options) {
    return callWithOptions(this.#native.send, this.#native, arguments, 1)
  }
  sendStream(message, options) {
    return startStream(this.#native.sendStream, this.#native, arguments, 1)
  }
  reset() {
    return call(this.#native.reset, this.#native, arguments)
  }
  save() {
    return call(this.#native.save, this.#native, arguments)
  }
  restore(saved) {
    return call(this.#native.restore, this.#native, arguments)
  }
}

/** A subscriber that receives this realm's copy of what the addon sends it. */
function subscribe(method, self, cb, what) {
  const safe = guarded(cb, what)
  const unsubscribe = call(method, self, [typeof cb === 'function' && foreign ? (v) => safe(adopt(v)) : safe])
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
    return subscribe(this.#native.onSnapshot, this.#native, cb, 'onSnapshot')
  }
  onAlert(cb) {
    return subscribe(this.#native.onAlert, this.#native, cb, 'onAlert')
  }
}

function getSharedEmbeddingClient(options) {
  return new SharedEmbeddingClient(INTERNAL, call(native.getSharedEmbeddingClient, native, arguments))
}
function getSharedReranker(options) {
  return new SharedReranker(INTERNAL, call(native.getSharedReranker, native, arguments))
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
exports.SharedReranker = SharedReranker
exports.ModelLoader = ModelLoader
exports.TokenStream = TokenStream
exports.ChatSession = ChatSession
exports.MemoryMonitor = MemoryMonitor
exports.getSharedEmbeddingClient = getSharedEmbeddingClient
exports.getSharedReranker = getSharedReranker
exports.getModelLoader = getModelLoader
exports.getMemoryMonitor = getMemoryMonitor
exports.getOptimizationStrategy = getOptimizationStrategy
exports.applyQuantization = applyQuantization
exports.configure = configure
exports.QUANTIZATION_LEVELS = QUANTIZATION_LEVELS
