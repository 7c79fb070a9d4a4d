#!/usr/bin/env node
'use strict'
// Builds ggml's GPU backends as modules (libggml-vulkan.so, libggml-cuda.so) from the very
// llama.cpp tree the addon is built from (llama-cpp-sys-2's, found through `cargo
// metadata`), so that they load into the addon's own libggml: the same sources, the same
// ABI. Vulkan takes a few minutes on 2 cores (the shaders are compiled once, by glslc),
// CUDA about half an hour for one GPU architecture. Cached under
// target/ggml-backends/<llama-cpp-sys-2 version>/<platform>-<recipe>/<backend>/, where the
// recipe is a hash of the CMake arguments and environment the build is given and the
// CMake file it passes (see place()): a change to them is a new build, and replaces the
// older ones. Vulkan is built on Linux x64 for Linux x64; with Debian's MinGW-w64, for
// Windows x64 (ggml-vulkan.dll; the addon's DLLs come from the same tree and compiler);
// with Debian's aarch64 GCC, for Linux arm64. CUDA for Linux x64.
//
//   node scripts/ggml-backends.js            build if needed; print the module's path
//   node scripts/ggml-backends.js --check    print why it cannot be built, or nothing
//   node scripts/ggml-backends.js --prepare  (the test command) build the Vulkan modules
//                                            where they can be built (this machine's, the
//                                            Windows and arm64 ones with their toolchains),
//                                            else say which tests are skipped
//   node scripts/ggml-backends.js --target win32-x64   the Windows module
//   node scripts/ggml-backends.js --target linux-arm64-gnu   the Linux arm64 module
//   node scripts/ggml-backends.js --backend cuda   ggml's CUDA module (nvcc: CUDACXX, PATH,
//                                            /usr/local/cuda, or scripts/cuda-toolkit.js's;
//                                            for this machine's GPU, or the architectures in
//                                            ORION_CUDA_ARCHITECTURES, e.g. 75)
//
// Needs glslc and SPIR-V headers (Debian: glslc spirv-headers), the Vulkan loader
// (libvulkan1) and Vulkan headers newer than Debian 12's 1.3.239, which lack
// VK_EXT_layer_settings: Debian 13's libvulkan-dev headers, in a directory named by
// VULKAN_SDK (with include/ and lib/libvulkan.so), as .ci/run sets up. The arm64 module is
// linked against Debian 12's arm64 Vulkan loader (libvulkan1:arm64, .ci/run unpacks it
// into lib/aarch64-linux-gnu/ there). Where something is missing this says what, and the
// Vulkan tests are skipped.

const fs = require('node:fs')
const path = require('node:path')
const { spawnSync, execFileSync } = require('node:child_process')
const { createHash } = require('node:crypto')
const { TARGETS, cmakeInclude } = require('./targets')
const { run } = require('./util')

const root = path.join(__dirname, '..')
const HOST = 'linux-x64-gnu'
const ARM64 = 'linux-arm64-gnu'
// The cross compilers: the addon's own (scripts/targets.js).
const COMPILERS = Object.fromEntries(
  ['win32-x64', ARM64].map((p) => [p, { cc: TARGETS[p].cc, cxx: TARGETS[p].cxx, apt: TARGETS[p].apt.join(' ') }]),
)

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

/**
 * The directory of Linux arm64's Vulkan loader (libvulkan.so.1): Debian 12's libvulkan1 for
 * arm64, unpacked by .ci/run. The arm64 module is linked against it, and the emulated
 * tests load it (qemu-user's arm64 sysroot, libc6-arm64-cross, has none).
 */
function arm64Loader() {
  return path.join(vulkanSdk(), 'lib', 'aarch64-linux-gnu')
}

/**
 * Debian 12's lavapipe for arm64 (Mesa's Vulkan driver on the CPU), unpacked by .ci/run:
 * its ICD file and the directories of its libraries, or `{ missing }` saying what is not
 * there. The emulated tests run the arm64 module's self-test on it.
 */
function arm64Lavapipe() {
  const root = path.join(vulkanSdk(), 'arm64-lavapipe')
  const icd = path.join(root, 'lvp_icd.aarch64.json')
  if (!fs.existsSync(icd))
    return { missing: `${icd} is missing (Debian 12's mesa-vulkan-drivers for arm64, as .ci/run unpacks it)` }
  return { icd, libs: ['usr/lib/aarch64-linux-gnu', 'lib/aarch64-linux-gnu'].map((d) => path.join(root, d)) }
}

function has(cmd, args = ['--version']) {
  const r = spawnSync(cmd, args, { stdio: 'ignore' })
  return !r.error && r.status === 0
}

/** Why the Vulkan module for `platform` cannot be built here, or null. */
function missing(platform = HOST) {
  if (process.platform !== 'linux' || process.arch !== 'x64') return 'it is built on Linux x64 only so far'
  if (platform !== HOST && !COMPILERS[platform]) return `no Vulkan build for ${platform} here`
  const cross = COMPILERS[platform]
  if (cross && !has(cross.cxx)) return `${cross.cxx} is missing (Debian: apt-get install ${cross.apt})`
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
  if (platform === HOST && !fs.existsSync(path.join(sdk, 'lib', 'libvulkan.so')))
    return `${sdk}/lib/libvulkan.so is missing (a link to the Vulkan loader, libvulkan.so.1: apt-get install libvulkan1)`
  if (platform === ARM64 && !fs.existsSync(path.join(arm64Loader(), 'libvulkan.so.1')))
    return `${arm64Loader()}/libvulkan.so.1 is missing (Debian 12's libvulkan1 for arm64, as .ci/run unpacks it)`
  return null
}

/** nvcc: CUDACXX, PATH, CUDA's default place, or CUDA 13 from PyPI (scripts/cuda-toolkit.js) once unpacked. */
function nvcc() {
  const pypi = require('./cuda-toolkit').found()
  for (const c of [process.env.CUDACXX, 'nvcc', '/usr/local/cuda/bin/nvcc', pypi && path.join(pypi, 'bin', 'nvcc')])
    if (c && has(c)) return c
  return null
}

/** The toolkit root of `nvcc` when it is PyPI's (its libraries are not on the system's path). */
function pypiToolkit(compiler = nvcc()) {
  const pypi = require('./cuda-toolkit').found()
  return pypi && compiler === path.join(pypi, 'bin', 'nvcc') ? pypi : null
}

/** Why ggml's `backend` module ('vulkan' or 'cuda') for `platform` cannot be built here, or null. */
function missingFor(backend, platform = HOST) {
  if (backend === 'vulkan') return missing(platform)
  if (backend !== 'cuda') return `no build for ${backend}`
  if (platform !== HOST) return `no CUDA build for ${platform} here`
  if (process.platform !== 'linux' || process.arch !== 'x64') return 'it is built on Linux x64 only so far'
  if (!has('cmake')) return 'cmake is missing (apt-get install cmake)'
  if (!nvcc())
    return 'no CUDA toolkit (nvcc) on PATH, in CUDACXX or in /usr/local/cuda (node scripts/cuda-toolkit.js unpacks CUDA 13 from PyPI)'
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
    // PyPI's toolkit is found by its root (CMake's FindCUDAToolkit would look in /usr/local/cuda).
    env: () => ({ CUDACXX: nvcc(), ...(pypiToolkit() ? { CUDAToolkit_ROOT: pypiToolkit() } : {}) }),
  },
}

// Raised when the build changes in a way its CMake arguments do not show.
const RECIPE = 1

/**
 * Where `backend`'s module for `platform` is kept, and its file name. The directory is
 * named by a hash of how the module is built (its CMake arguments, which for Windows
 * carry the digest of our MinGW settings in scripts/cmake; its environment; RECIPE), not
 * of this whole script, so that editing the script elsewhere does not orphan a built
 * module (CUDA's takes half an hour here). CUDA's
 * GPU architectures name its directory instead (cuda-native: this machine's GPU).
 */
function place(backend, platform, sys) {
  const args = configureArgs(backend, platform, '<dir>', sys).map((a) =>
    a.startsWith('-DCMAKE_CUDA_ARCHITECTURES=') ? '-DCMAKE_CUDA_ARCHITECTURES' : a,
  )
  const recipe = createHash('sha256').update(JSON.stringify({ RECIPE, args, env: BACKENDS[backend].env() }))
  if (platform === 'win32-x64' && backend === 'vulkan') recipe.update(makeVulkanImportLibrary.toString())
  const dir = path.join(
    root,
    'target',
    'ggml-backends',
    sys.version,
    `${platform}-${recipe.digest('hex').slice(0, 12)}`,
  )
  const name =
    backend === 'cuda'
      ? `cuda-${(process.env.ORION_CUDA_ARCHITECTURES || 'native').replace(/[^\w.-]+/g, '_')}`
      : backend
  return platform === 'win32-x64'
    ? { dir: path.join(dir, name), file: `ggml-${backend}.dll` }
    : { dir: path.join(dir, name), file: `libggml-${backend}.so` }
}

/**
 * An import library for Windows' Vulkan loader (vulkan-1.dll), which MinGW-w64 does not
 * ship: the core commands of Vulkan 1.0 to 1.3, the ones every loader since 1.3 exports,
 * read from the headers. ggml-vulkan reaches everything else through vkGetInstanceProcAddr.
 */
function makeVulkanImportLibrary(dir) {
  const out = vulkanImportLibrary(dir)
  if (fs.existsSync(out)) return
  const header = fs.readFileSync(path.join(vulkanSdk(), 'include', 'vulkan', 'vulkan_core.h'), 'utf8')
  const names = []
  let feature = null
  for (const line of header.split('\n')) {
    const f = /^#define (VK_[A-Za-z0-9_]+) 1$/.exec(line)
    if (f && (/^VK_VERSION_\d_\d$/.test(f[1]) || /[a-z]/.test(f[1]))) feature = f[1]
    const fn = /^VKAPI_ATTR .* VKAPI_CALL (vk\w+)\(/.exec(line)
    if (fn && /^VK_VERSION_1_[0-3]$/.test(feature || '')) names.push(fn[1])
  }
  if (names.length < 150) throw new Error(`only ${names.length} core Vulkan commands found in ${vulkanSdk()}`)
  fs.mkdirSync(dir, { recursive: true })
  const def = path.join(dir, 'vulkan-1.def')
  fs.writeFileSync(def, `LIBRARY vulkan-1.dll\nEXPORTS\n${names.join('\n')}\n`)
  run('x86_64-w64-mingw32-dlltool', ['-d', def, '-l', out, '-D', 'vulkan-1.dll'])
}
const vulkanImportLibrary = (dir) => path.join(dir, 'libvulkan-1.a')

/**
 * A directory holding only the SPIR-V headers (Debian's, under /usr/include/spirv), for the
 * cross compiler: ggml-vulkan includes <spirv/unified1/spirv.hpp> from the system's include
 * path, which MinGW's compiler does not search (nor should it: the rest is glibc's).
 */
function makeSpirvIncludes(dir) {
  const link = path.join(spirvIncludes(dir), 'spirv')
  if (!fs.existsSync(link)) {
    fs.mkdirSync(path.dirname(link), { recursive: true })
    fs.symlinkSync('/usr/include/spirv', link)
  }
}
const spirvIncludes = (dir) => path.join(dir, 'include')

/**
 * A cross build's Vulkan settings: the headers, the loader to link against (`library`),
 * this machine's glslc (the shaders are SPIR-V, the same for every platform) and the SPIR-V
 * headers. ggml builds its shader generator with this machine's compiler.
 */
function crossVulkan(dir, library) {
  return [
    `-DCMAKE_CXX_FLAGS=-I${spirvIncludes(dir)}`,
    `-DVulkan_INCLUDE_DIR=${path.join(vulkanSdk(), 'include')}`,
    `-DVulkan_LIBRARY=${library}`,
    `-DVulkan_GLSLC_EXECUTABLE=${spawnSync('sh', ['-c', 'command -v glslc'], { encoding: 'utf8' }).stdout.trim()}`,
  ]
}

/** CMake's settings for a module built for `platform` on this machine. */
function crossDefines(backend, platform, dir) {
  // No RUNPATH in a Linux module: CMake's would name this machine's build directories and
  // end with an empty entry, the working directory, from which the dynamic loader would
  // then take a libvulkan.so.1. The module's libraries are found without one: ggml's own
  // are loaded by the addon before it, the Vulkan loader is the system's.
  const linux = ['-DCMAKE_SKIP_RPATH=ON', '-DGGML_OPENMP=ON']
  if (platform === ARM64)
    return [
      '-DCMAKE_SYSTEM_NAME=Linux',
      '-DCMAKE_SYSTEM_PROCESSOR=aarch64',
      `-DCMAKE_C_COMPILER=${COMPILERS[ARM64].cc}`,
      `-DCMAKE_CXX_COMPILER=${COMPILERS[ARM64].cxx}`,
      // As the addon's build for Linux (OpenMP).
      ...linux,
      ...(backend === 'vulkan' ? crossVulkan(dir, path.join(arm64Loader(), 'libvulkan.so.1')) : []),
    ]
  if (platform !== 'win32-x64') return linux
  return [
    '-DCMAKE_SYSTEM_NAME=Windows',
    '-DCMAKE_SYSTEM_PROCESSOR=AMD64',
    `-DCMAKE_C_COMPILER=${COMPILERS['win32-x64'].cc}`,
    `-DCMAKE_CXX_COMPILER=${COMPILERS['win32-x64'].cxx}`,
    // The addon's own MinGW settings: DLLs without MinGW's runtime DLLs (scripts/cmake).
    // With their digest, which names the module's directory (place()).
    ...Object.entries(cmakeInclude('mingw.cmake')).map(([k, v]) => `-D${k}=${v}`),
    // As the addon's build for Windows (Cargo.toml: no OpenMP there).
    '-DGGML_OPENMP=OFF',
    ...(backend === 'vulkan' ? crossVulkan(dir, vulkanImportLibrary(dir)) : []),
  ]
}

/** CMake's configure arguments for `backend`'s module for `platform`, its inputs in `dir`. */
function configureArgs(backend, platform, dir, sys) {
  // Options that shape ggml's ABI are the ones the addon's build uses (llama-cpp-sys-2's
  // build.rs with `dynamic-backends`); only the backend's module is built.
  return [
    '-S',
    path.join(sys.dir, 'llama.cpp'),
    '-DCMAKE_BUILD_TYPE=Release',
    '-DBUILD_SHARED_LIBS=ON',
    '-DGGML_BACKEND_DL=ON',
    '-DGGML_NATIVE=OFF',
    ...crossDefines(backend, platform, dir),
    ...BACKENDS[backend].defines,
    '-DLLAMA_BUILD_COMMON=OFF',
    '-DLLAMA_BUILD_TESTS=OFF',
    '-DLLAMA_BUILD_TOOLS=OFF',
    '-DLLAMA_BUILD_EXAMPLES=OFF',
    '-DLLAMA_BUILD_SERVER=OFF',
    '-DLLAMA_BUILD_APP=OFF',
  ]
}

/** ggml's `backend` module's path for `platform`, built first if this tree has none. */
function ensure(backend, platform = HOST) {
  const why = missingFor(backend, platform)
  if (why) throw new Error(`cannot build ggml's ${backend} backend for ${platform}: ${why}`)
  const sys = llamaSys()
  const { dir, file } = place(backend, platform, sys)
  const out = path.join(dir, file)
  if (fs.existsSync(out)) return out
  const build = path.join(dir, 'build')
  fs.rmSync(build, { recursive: true, force: true })
  const started = Date.now()
  process.stderr.write(
    `Building ggml's ${backend} backend for ${platform} from llama-cpp-sys-2 ${sys.version} (a few minutes)\n`,
  )
  if (backend === 'vulkan' && platform !== HOST) makeSpirvIncludes(dir)
  if (backend === 'vulkan' && platform === 'win32-x64') makeVulkanImportLibrary(dir)
  run('cmake', [...configureArgs(backend, platform, dir, sys), '-B', build], {
    env: { ...process.env, ...BACKENDS[backend].env() },
  })
  run('cmake', [
    '--build',
    build,
    '--target',
    `ggml-${backend}`,
    '-j',
    String(require('node:os').availableParallelism()),
  ])
  fs.copyFileSync(path.join(build, 'bin', file), out)
  fs.rmSync(build, { recursive: true, force: true })
  // The same module by older recipes: never used again.
  const base = path.dirname(path.dirname(dir))
  const mine = path.basename(path.dirname(dir))
  for (const r of fs.readdirSync(base).filter((d) => d !== mine && d.startsWith(`${platform}-`))) {
    fs.rmSync(path.join(base, r, path.basename(dir)), { recursive: true, force: true })
    if (!fs.readdirSync(path.join(base, r)).length) fs.rmdirSync(path.join(base, r))
  }
  process.stderr.write(`Built ${path.relative(root, out)} in ${((Date.now() - started) / 1000).toFixed(0)} s\n`)
  return out
}

/** The Vulkan module's path, built first if this tree has none. */
function ensureVulkan() {
  return ensure('vulkan')
}

/** The Vulkan module for `platform` where this tree has it built, or null. */
function builtVulkan(platform = HOST) {
  try {
    const { dir, file } = place('vulkan', platform, llamaSys())
    return fs.existsSync(path.join(dir, file)) ? path.join(dir, file) : null
  } catch {
    return null
  }
}

/** A CUDA module this tree has built with this compiler, for whichever architectures, or null. */
function builtCuda() {
  try {
    if (!nvcc()) return null
    const { dir, file } = place('cuda', HOST, llamaSys())
    const parent = path.dirname(dir)
    const built = fs.existsSync(parent)
      ? fs
          .readdirSync(parent)
          .filter((d) => d.startsWith('cuda-'))
          .map((d) => path.join(parent, d, file))
          .filter((f) => fs.existsSync(f))
      : []
    return built[0] || null
  } catch {
    return null
  }
}

module.exports = {
  ensure,
  ensureVulkan,
  builtVulkan,
  builtCuda,
  missing,
  missingFor,
  arm64Loader,
  arm64Lavapipe,
  pypiToolkit,
}

if (require.main === module) {
  const at = process.argv.indexOf('--target')
  const platform = at >= 0 ? process.argv[at + 1] : HOST
  const backendAt = process.argv.indexOf('--backend')
  const backend = backendAt >= 0 ? process.argv[backendAt + 1] : 'vulkan'
  if (process.argv.includes('--prepare')) {
    for (const [p, tests] of [
      [HOST, 'the Vulkan tests'],
      ['win32-x64', 'the Windows Vulkan test'],
      [ARM64, 'the Linux arm64 Vulkan test'],
    ]) {
      // The Windows and arm64 modules are only run by their smoke tests, under Wine and qemu.
      const smoke = p === HOST ? null : require('./cross-smoke').missing(p)
      const why = missing(p)
      if (smoke) console.log(`skipped: ${tests} (${smoke})`)
      else if (why) console.log(`skipped: ${tests} (ggml's Vulkan backend for ${p} cannot be built here: ${why})`)
      else
        try {
          ensure('vulkan', p)
        } catch (e) {
          console.error(e.message)
          process.exit(1)
        }
    }
  } else if (process.argv.includes('--check')) {
    const why = missingFor(backend, platform)
    if (why) console.log(why)
  } else {
    try {
      console.log(ensure(backend, platform))
    } catch (e) {
      console.error(e.message)
      process.exit(1)
    }
  }
}
