'use strict'
// Finds and loads the native addon. In order:
// 1. ORION_NATIVE_BINDING (or napi-rs's NAPI_RS_NATIVE_LIBRARY_PATH): an explicit file;
// 2. orion-native.<platform>.node next to the package: a build from source
//    (`npx orion-native build`, or `npm run build` in a checkout);
// 3. the platform package orion-native-<platform>, an optional dependency that npm
//    installs only on its own platform. In an Electron app packed with asar the package
//    also looked for under `app.asar.unpacked`, where `asarUnpack` puts it.
// When none loads, the error names the platform, the missing package and the build
// command, with every attempt as its `cause`.
const fs = require('node:fs')
const path = require('node:path')
const { createRequire } = require('node:module')

const pkg = require('../package.json')

function isMusl() {
  if (process.platform !== 'linux') return false
  const report = typeof process.report?.getReport === 'function' ? process.report.getReport() : null
  if (report?.header) return !report.header.glibcVersionRuntime
  try {
    return fs.readFileSync('/usr/bin/ldd', 'utf8').includes('musl')
  } catch {
    return false
  }
}

/**
 * The platform name for this process: linux-x64-gnu, darwin-arm64, win32-x64, ... napi-rs's
 * names, except on Windows: napi-rs's -msvc/-gnu suffix there names the toolchain of the
 * Node it expects, while this addon, built with MinGW, finds Node-API at load time and loads
 * in every Windows Node and in Electron, so one name serves them all.
 */
function platformName() {
  const { platform, arch } = process
  if (platform === 'linux') return `linux-${arch}-${isMusl() ? 'musl' : 'gnu'}`
  return `${platform}-${arch}`
}

/** The directories to resolve from: this package's, and its `app.asar.unpacked` twin. */
function bases(dir) {
  const unpacked = dir.replace(/([\\/])app\.asar([\\/])/, '$1app.asar.unpacked$2')
  return unpacked === dir ? [dir] : [dir, unpacked]
}

// The addon's llama.cpp runs its threads with OpenMP (libgomp), which reads its settings once,
// when the addon is loaded. By default an idle OpenMP thread spins 300,000 times before it
// sleeps; measured here (2 cores), generation then fell from about 140 to about 100 tokens/s
// after the first two or three calls of a process and a chat turn's first token from 65 to
// 90 ms, while with 1,000 spins both stay at their first speed. And once a process has more
// OpenMP threads than cores (two llama.cpp models: each service or generation thread has
// its own team), libgomp cuts every spin to 100, unless the wait policy is active: ggml's
// threads then slept at each of a graph's barriers, and generation fell from about 145 to
// 80-105 tokens/s with a GGUF embedding model loaded beside it, idle (135-150 with the policy
// active). Active with 1,000 spins, an idle thread still sleeps after those spins. (Two
// computations at once would spin against each other on the cores: they take turns instead,
// src/llama/gate.rs.) Only where the user has not
// chosen, and only from the main thread: a worker's process.env is its own copy, which
// libgomp never reads. See the README's Configuration.
//
// The wait policy only on Linux, where the addon's OpenMP is libgomp: LLVM's libomp (macOS)
// and Intel's spin for ever with an active policy. Once libgomp has read both (when the
// addon loads it), they leave the environment again: child processes, whose OpenMP may be
// one of those, do not inherit the policy, and a child that loads this addon in turn makes
// its own choice; had it inherited the spin count alone, it would have taken it for the
// user's and left the policy passive (measured: a child's single texts on four loaded
// models at half their speed). Returns what to do once the addon is loaded.
function tuneOpenMp() {
  const env = process.env
  if (env.GOMP_SPINCOUNT !== undefined || env.OMP_WAIT_POLICY !== undefined) return () => {}
  env.GOMP_SPINCOUNT = '1000'
  if (process.platform !== 'linux') return () => {}
  env.OMP_WAIT_POLICY = 'active'
  return () => {
    try {
      if (/libgomp/.test(fs.readFileSync('/proc/self/maps', 'utf8'))) {
        delete env.OMP_WAIT_POLICY
        delete env.GOMP_SPINCOUNT
      }
    } catch {
      // No maps to read: libgomp may load later and read them then.
    }
  }
}

// Microsoft's ONNX Runtime builds start a telemetry system when the library loads: a device
// id and an event queue under ~/.cache/Microsoft, a debug log in the temp directory, uploads
// where a CA bundle is found. ONNX Runtime reads ORT_DISABLE_TELEMETRY then, before any API
// call could turn it off, so it is set before the addon loads the library (unless the user
// chose). The addon sets it too when a worker loads it first (see src/onnx/model.rs).
function quietOnnxRuntime() {
  if (process.env.ORT_DISABLE_TELEMETRY === undefined) process.env.ORT_DISABLE_TELEMETRY = '1'
}

// GPU backends ship as packages of their own, beside the platform package: ggml's Vulkan
// backend as orion-native-<platform>-vulkan, CUDA's as -cuda. Each holds one module, named
// by its package.json's `ggmlBackend`; the addon checks it in a child process and loads it
// when llama.cpp starts (src/llama/modules.rs). A package of another version is left out,
// as is a module inside an asar archive (the dynamic loader cannot open it: unpack it).
const GPU_BACKENDS = ['vulkan', 'cuda']

/** The installed GPU packages: { backend, package, version, dir, module, usable, reason }. */
function gpuPackages(name = platformName()) {
  const root = path.join(__dirname, '..')
  const found = []
  for (const backend of GPU_BACKENDS) {
    const pkgName = `orion-native-${name}-${backend}`
    for (const base of bases(root).reverse()) {
      let meta
      let dir
      try {
        const file = createRequire(path.join(base, 'index.js')).resolve(`${pkgName}/package.json`)
        dir = path.dirname(file)
        meta = JSON.parse(fs.readFileSync(file, 'utf8'))
      } catch {
        continue
      }
      const module = meta.ggmlBackend ? path.join(dir, meta.ggmlBackend) : null
      let reason = null
      if (meta.version !== pkg.version)
        reason = `version ${meta.version}, orion-native is ${pkg.version}: reinstall orion-native`
      else if (!module || !fs.existsSync(module)) reason = 'its module is missing: reinstall orion-native'
      else if (/[\\/]app\.asar[\\/]/.test(module))
        reason = `it is inside the asar archive: unpack it (asarUnpack: ["**/node_modules/${pkgName}/**"])`
      found.push({ backend, package: pkgName, version: meta.version, dir, module, usable: !reason, reason })
      break
    }
  }
  return found
}

/** Names the installed GPU packages' modules to the addon, before llama.cpp starts. */
function offerGpuModules(binding, name) {
  if (typeof binding.__gpuModules !== 'function') return
  // A single-executable app is its own executable: the check's child (the executable run
  // as Node with -e) would start the app itself.
  try {
    if (require('node:sea').isSea()) return
  } catch {
    // No node:sea (Node before 20): not a single-executable app.
  }
  try {
    binding.__gpuModules(
      gpuPackages(name)
        .filter((p) => p.usable)
        .map((p) => p.module),
    )
  } catch {
    // A GPU package that cannot be read is one GPU backend less, never a failed require.
  }
}

function load() {
  const loaded = tuneOpenMp()
  const b = loadAddon()
  loaded()
  offerGpuModules(b, platformName())
  return b
}

function loadAddon() {
  quietOnnxRuntime()
  const name = platformName()
  const pkgName = `orion-native-${name}`
  const root = path.join(__dirname, '..')
  const errors = []
  const attempt = (what, fn) => {
    try {
      return fn()
    } catch (e) {
      errors.push(Object.assign(new Error(`${what}: ${e && e.message}`), { cause: e }))
      return null
    }
  }
  const explicit = process.env.ORION_NATIVE_BINDING || process.env.NAPI_RS_NATIVE_LIBRARY_PATH
  if (explicit) {
    const b = attempt(explicit, () => require(path.resolve(explicit)))
    if (b) return b
  }
  for (const base of bases(root)) {
    const local = path.join(base, `orion-native.${name}.node`)
    if (fs.existsSync(local)) {
      const b = attempt(local, () => require(local))
      if (b) return b
    }
  }
  let installed = false
  for (const base of bases(root)) {
    let file
    try {
      file = createRequire(path.join(base, 'index.js')).resolve(pkgName)
    } catch {
      continue
    }
    installed = true
    const b = attempt(file, () => {
      const version = require(path.join(path.dirname(file), 'package.json')).version
      if (version !== pkg.version) {
        throw new Error(`${pkgName} is version ${version}, orion-native is ${pkg.version}: reinstall orion-native`)
      }
      return require(file)
    })
    if (b) return b
  }
  const err = new Error(
    installed
      ? `orion-native could not load its native addon for ${name} from ${pkgName} (see err.cause). ` +
          `Reinstall orion-native, or build the addon from source: npx orion-native build`
      : `orion-native has no native addon for this platform (${name}): the package ${pkgName} is not installed. ` +
          (process.versions.electron
            ? `In an Electron app, unpack it from the asar archive (asarUnpack: ["**/node_modules/${pkgName}/**"]). `
            : `It is an optional dependency that npm installs only on ${name}; it is missing when installing with ` +
              `--omit=optional / --no-optional, or when node_modules was copied from another platform. `) +
          `Reinstall orion-native, or build the addon from source (Rust, cmake and a C++ compiler; about 10 minutes): ` +
          `npx orion-native build`,
  )
  err.code = 'BINDING_NOT_FOUND'
  err.platform = name
  err.package = pkgName
  if (errors.length) err.cause = errors.length === 1 ? errors[0] : new AggregateError(errors, 'attempts')
  throw err
}

module.exports = { load, platformName, gpuPackages }
