#!/usr/bin/env node
'use strict'
// Builds ggml's Vulkan backend as a module (libggml-vulkan.so) from the very llama.cpp
// tree the addon is built from (llama-cpp-sys-2's, found through `cargo metadata`), so
// that it loads into the addon's own libggml: the same sources, the same ABI. A few
// minutes on 2 cores (the shaders are compiled once, by glslc), cached under
// target/ggml-backends/<llama-cpp-sys-2 version>/vulkan/. Linux x64 only so far.
//
//   node scripts/ggml-backends.js            build if needed; print the module's path
//   node scripts/ggml-backends.js --check    print why it cannot be built, or nothing
//   node scripts/ggml-backends.js --prepare  (the test command) build it where it can be
//                                            built, else say which tests are skipped
//
// Needs glslc and SPIR-V headers (Debian: glslc spirv-headers), the Vulkan loader
// (libvulkan1) and Vulkan headers newer than Debian 12's 1.3.239, which lack
// VK_EXT_layer_settings: Debian 13's libvulkan-dev headers, in a directory named by
// VULKAN_SDK (with include/ and lib/libvulkan.so), as .ci/run sets up. Where something is
// missing this says what, and the Vulkan tests are skipped.

const fs = require('node:fs')
const path = require('node:path')
const { spawnSync, execFileSync } = require('node:child_process')

const root = path.join(__dirname, '..')

/** llama-cpp-sys-2's directory and version, from cargo's own resolution of Cargo.lock. */
function llamaSys() {
  const meta = JSON.parse(
    execFileSync('cargo', ['metadata', '--format-version', '1', '--locked'], {
      cwd: root,
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    }),
  )
  const p = meta.packages.find((p) => p.name === 'llama-cpp-sys-2')
  if (!p) throw new Error('llama-cpp-sys-2 is not among the dependencies')
  return { dir: path.dirname(p.manifest_path), version: p.version }
}

/** Vulkan headers: VULKAN_SDK, else where .ci/run puts Debian 13's. */
function vulkanSdk() {
  return process.env.VULKAN_SDK || '/opt/orion-native/vulkan-sdk'
}

function has(cmd, args = ['--version']) {
  const r = spawnSync(cmd, args, { stdio: 'ignore' })
  return !r.error && r.status === 0
}

/** Why the Vulkan module cannot be built here, or null. */
function missing() {
  if (process.platform !== 'linux' || process.arch !== 'x64') return 'it is built on Linux x64 only so far'
  if (!has('cmake')) return 'cmake is missing (apt-get install cmake)'
  if (!has('glslc')) return 'glslc is missing (Debian: apt-get install glslc)'
  if (!fs.existsSync('/usr/share/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake') && !process.env.SPIRV_HEADERS_DIR)
    return 'the SPIR-V headers are missing (Debian: apt-get install spirv-headers)'
  const sdk = vulkanSdk()
  if (!sdk || !fs.existsSync(path.join(sdk, 'include', 'vulkan', 'vulkan_core.h')))
    return 'VULKAN_SDK does not name a directory with Vulkan headers (include/vulkan/vulkan_core.h) 1.3.268 or newer (Debian 13 libvulkan-dev, as .ci/run sets up)'
  const core = fs.readFileSync(path.join(sdk, 'include', 'vulkan', 'vulkan_core.h'), 'utf8')
  const v = Number((/#define VK_HEADER_VERSION (\d+)/.exec(core) || [])[1])
  if (!(v >= 268)) return `the Vulkan headers in ${sdk} are 1.3.${v}; ggml-vulkan needs 1.3.268 or newer`
  if (!fs.existsSync(path.join(sdk, 'lib', 'libvulkan.so')))
    return `${sdk}/lib/libvulkan.so is missing (a link to the Vulkan loader, libvulkan.so.1: apt-get install libvulkan1)`
  return null
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', process.stderr, process.stderr], ...opts })
  if (r.error || r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.error?.message || r.status})`)
}

/** nvcc: CUDACXX, PATH, or CUDA's default place. */
function nvcc() {
  for (const c of [process.env.CUDACXX, 'nvcc', '/usr/local/cuda/bin/nvcc'].filter(Boolean)) if (has(c)) return c
  return null
}

/** Why ggml's `backend` module ('vulkan' or 'cuda') cannot be built here, or null. */
function missingFor(backend) {
  if (backend === 'vulkan') return missing()
  if (backend !== 'cuda') return `no build for ${backend}`
  if (process.platform !== 'linux' || process.arch !== 'x64') return 'it is built on Linux x64 only so far'
  if (!has('cmake')) return 'cmake is missing (apt-get install cmake)'
  if (!nvcc()) return 'no CUDA toolkit (nvcc) on PATH, in CUDACXX or in /usr/local/cuda'
  return null
}

// What each backend adds to the build: its CMake switch, and for CUDA this machine's GPU
// architecture only (CMake's `native`), which keeps the build to a few minutes, unless
// ORION_CUDA_ARCHITECTURES lists others (the release workflow's, for GPUs it has not).
const BACKENDS = {
  vulkan: { defines: ['-DGGML_VULKAN=ON'], env: () => ({ VULKAN_SDK: vulkanSdk() }) },
  cuda: {
    defines: [
      '-DGGML_CUDA=ON',
      `-DCMAKE_CUDA_ARCHITECTURES=${process.env.ORION_CUDA_ARCHITECTURES || 'native'}`,
      '-DGGML_CUDA_NCCL=OFF',
    ],
    env: () => ({ CUDACXX: nvcc() }),
  },
}

/** ggml's `backend` module's path, built first if this tree has none. */
function ensure(backend) {
  const why = missingFor(backend)
  if (why) throw new Error(`cannot build ggml's ${backend} backend: ${why}`)
  const sys = llamaSys()
  const dir = path.join(root, 'target', 'ggml-backends', sys.version, backend)
  const out = path.join(dir, `libggml-${backend}.so`)
  if (fs.existsSync(out)) return out
  const build = path.join(dir, 'build')
  fs.rmSync(build, { recursive: true, force: true })
  const started = Date.now()
  process.stderr.write(`Building ggml's ${backend} backend from llama-cpp-sys-2 ${sys.version} (a few minutes)\n`)
  // Options that shape ggml's ABI are the ones the addon's build uses (llama-cpp-sys-2's
  // build.rs with `dynamic-backends`); only the backend's module is built.
  run(
    'cmake',
    [
      '-S',
      path.join(sys.dir, 'llama.cpp'),
      '-B',
      build,
      '-DCMAKE_BUILD_TYPE=Release',
      '-DBUILD_SHARED_LIBS=ON',
      '-DGGML_BACKEND_DL=ON',
      '-DGGML_NATIVE=OFF',
      '-DGGML_OPENMP=ON',
      ...BACKENDS[backend].defines,
      '-DLLAMA_BUILD_COMMON=OFF',
      '-DLLAMA_BUILD_TESTS=OFF',
      '-DLLAMA_BUILD_TOOLS=OFF',
      '-DLLAMA_BUILD_EXAMPLES=OFF',
      '-DLLAMA_BUILD_SERVER=OFF',
      '-DLLAMA_BUILD_APP=OFF',
    ],
    { env: { ...process.env, ...BACKENDS[backend].env() } },
  )
  run('cmake', [
    '--build',
    build,
    '--target',
    `ggml-${backend}`,
    '-j',
    String(require('node:os').availableParallelism()),
  ])
  fs.copyFileSync(path.join(build, 'bin', `libggml-${backend}.so`), out)
  fs.rmSync(build, { recursive: true, force: true })
  process.stderr.write(`Built ${path.relative(root, out)} in ${((Date.now() - started) / 1000).toFixed(0)} s\n`)
  return out
}

/** The Vulkan module's path, built first if this tree has none. */
function ensureVulkan() {
  return ensure('vulkan')
}

/** The Vulkan module where this tree has it built, or null. */
function builtVulkan() {
  try {
    const out = path.join(root, 'target', 'ggml-backends', llamaSys().version, 'vulkan', 'libggml-vulkan.so')
    return fs.existsSync(out) ? out : null
  } catch {
    return null
  }
}

module.exports = { ensure, ensureVulkan, builtVulkan, missing, missingFor }

if (require.main === module) {
  if (process.argv.includes('--prepare')) {
    const why = missing()
    if (why) console.log(`skipped: the Vulkan tests (ggml's Vulkan backend cannot be built here: ${why})`)
    else
      try {
        ensureVulkan()
      } catch (e) {
        console.error(e.message)
        process.exit(1)
      }
  } else if (process.argv.includes('--check')) {
    const why = missing()
    if (why) console.log(why)
  } else {
    try {
      console.log(ensureVulkan())
    } catch (e) {
      console.error(e.message)
      process.exit(1)
    }
  }
}
