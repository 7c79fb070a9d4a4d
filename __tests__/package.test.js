'use strict'
// The package as a user gets it: `npm run package` writes the two tarballs, npm installs
// them into a fresh app whose PATH holds node and npm and nothing to compile with, and
// the app uses every part of the API from there: CommonJS, ES modules, TypeScript,
// workers, the LLM, the monitor and the CLI. Then the layouts around it: no platform
// package, and an Electron app's asar-unpacked one.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { root, pack, bareBin, toolchainOn, userEnv, installApp, duBytes } = require('./helpers-install')
const { embeddingModelDir, llmModelDir } = require('./helpers')
const { platformName } = require('../lib/binding')
const { nodeBinary, VERSIONS } = require('../scripts/node-binaries')

const fixtures = path.join(__dirname, 'installed')
const platformPkg = `orion-native-${platformName()}`
let bin, env, app, packed, modelsDir

function node(args, opts = {}) {
  return spawnSync('node', args, { cwd: app, env, encoding: 'utf8', timeout: 180_000, ...opts })
}

function json(r) {
  if (r.status !== 0) throw new Error(`exit ${r.status} ${r.signal || ''}\n${r.stderr}\n${r.stdout}`)
  return JSON.parse(r.stdout.trim().split('\n').at(-1))
}

beforeAll(() => {
  packed = pack()
  bin = bareBin()
  // An empty cache directory: without configure({ modelsDir }) no model can be found, so
  // the tests below prove that the setting made from code reaches every worker.
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-home-'))
  env = userEnv(bin, { XDG_CACHE_HOME: path.join(home, 'cache') })
  // The models the test command fetched, under one directory, as an app would ship them.
  modelsDir = path.join(home, 'models')
  fs.mkdirSync(modelsDir)
  fs.symlinkSync(embeddingModelDir, path.join(modelsDir, 'all-MiniLM-L6-v2'))
  fs.symlinkSync(llmModelDir, path.join(modelsDir, path.basename(llmModelDir)))
  app = installApp([packed.main, packed.platform, ...packed.gpu], env)
  for (const f of fs.readdirSync(fixtures)) fs.copyFileSync(path.join(fixtures, f), path.join(app, f))
}, 600_000)

test('the user shell has no compiler and no ONNX Runtime hint', () => {
  expect(toolchainOn(env.PATH)).toEqual([])
  expect(Object.keys(env).filter((k) => /^(ONNXRUNTIME|ORT_)/.test(k))).toEqual([])
})

test('npm installs the packages and nothing else; the platform package carries ONNX Runtime', () => {
  const installed = fs.readdirSync(path.join(app, 'node_modules')).filter((n) => !n.startsWith('.'))
  const gpuPkgs = packed.gpu.map((f) => path.basename(f).replace(/-[\d.]+\.tgz$/, ''))
  expect(installed.sort()).toEqual(['orion-native', platformPkg, ...gpuPkgs].sort())
  const files = fs.readdirSync(path.join(app, 'node_modules', platformPkg))
  expect(files).toEqual(expect.arrayContaining([`orion-native.${platformName()}.node`, 'ONNXRUNTIME-LICENSE']))
  expect(files.some((f) => /onnxruntime\.(so\.1|dylib|dll)$/.test(f))).toBe(true)
  // The main package depends on the platform packages, optionally, and carries the
  // sources a build needs on other platforms.
  const main = path.join(app, 'node_modules', 'orion-native')
  const published = JSON.parse(fs.readFileSync(path.join(main, 'package.json'), 'utf8'))
  expect(published.optionalDependencies[platformPkg]).toBe(published.version)
  expect(published.devDependencies).toBeUndefined()
  // The model fetch's zip and progress-bar libraries travel inside the package.
  const script = `for (const m of ['adm-zip', 'cli-progress']) console.log(require.resolve(m, { paths: [${JSON.stringify(
    path.join(main, 'scripts'),
  )}] }))`
  const resolved = spawnSync('node', ['-e', script], { cwd: app, env, encoding: 'utf8' }).stdout.trim().split('\n')
  for (const r of resolved) expect(r.startsWith(path.join(main, 'node_modules'))).toBe(true)
  for (const f of [
    'Cargo.toml',
    'Cargo.lock',
    'build.rs',
    'src/lib.rs',
    'scripts/build.js',
    'scripts/targets.js',
    // What every build of llama.cpp includes (scripts/targets.js's cmakeInclude), so that
    // `npx orion-native build` works from the installed package.
    'scripts/cmake/ggml.cmake',
    'scripts/cmake/sgemm.cpp',
    'scripts/cmake/ggml-repack.cpp',
    'index.d.ts',
  ]) {
    expect(fs.existsSync(path.join(main, f))).toBe(true)
  }
  const sizes = { 'orion-native': duBytes(main), [platformPkg]: duBytes(path.join(app, 'node_modules', platformPkg)) }
  console.log(
    'installed size: ' +
      Object.entries(sizes)
        .map(([k, v]) => `${k} ${(v / 1e6).toFixed(1)} MB`)
        .join(', '),
  )
})

// What the Linux x64 platform package's files need from the system: the C and C++
// runtimes and OpenMP, nothing else (llama.cpp's common library would link OpenSSL where
// its headers are installed; .cargo/config.toml keeps it from looking).
test('the platform package needs nothing from the system but the C/C++ runtimes and OpenMP', () => {
  const readelf = spawnSync('readelf', ['--version'])
  if (platformName() !== 'linux-x64-gnu' || readelf.error) {
    console.log(`skipped: ${readelf.error ? 'no readelf (binutils)' : `not linux-x64-gnu`}`)
    return
  }
  const dir = path.join(app, 'node_modules', platformPkg)
  const files = fs.readdirSync(dir).filter((f) => /\.(node|so)(\.\d+)*$/.test(f))
  expect(files).toContain('libllama-common.so.0')
  const system = /^(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|libgomp)\.so\.\d+$|^ld-linux-x86-64\.so\.2$/
  const needed = {}
  for (const f of files) {
    const out = spawnSync('readelf', ['-d', path.join(dir, f)], { encoding: 'utf8' }).stdout
    const libs = [...out.matchAll(/\(NEEDED\)\s+Shared library: \[(\S+)\]/g)].map((m) => m[1])
    const foreign = libs.filter((l) => !system.test(l) && !files.includes(l))
    if (foreign.length) needed[f] = foreign
  }
  expect(needed).toEqual({})
})

// The Vulkan package, on Mesa's lavapipe (a Vulkan device that runs on the CPU; ggml-vulkan
// lists it only when GGML_VK_VISIBLE_DEVICES names it).
const LAVAPIPE = '/usr/share/vulkan/icd.d/lvp_icd.x86_64.json'
describe('GPU packages', () => {
  test('the Vulkan package is found, checked in a child process and loaded; npx orion-native gpu says so', () => {
    if (!packed.gpu.length || !fs.existsSync(LAVAPIPE)) {
      console.log(`skipped: ${packed.gpu.length ? 'no lavapipe (mesa-vulkan-drivers)' : 'no GPU package was packed'}`)
      return
    }
    const vkEnv = { ...env, VK_ICD_FILENAMES: LAVAPIPE, GGML_VK_VISIBLE_DEVICES: '0' }
    const r = spawnSync(path.join(bin, 'npx'), ['orion-native', 'gpu', '--json'], {
      cwd: app,
      env: vkEnv,
      encoding: 'utf8',
    })
    expect(r.stderr).toBe('')
    const doc = JSON.parse(r.stdout)
    const name = `${platformPkg}-vulkan`
    const module = path.join(app, 'node_modules', name, 'libggml-vulkan.so')
    expect(doc.packages).toEqual([
      {
        backend: 'vulkan',
        package: name,
        version: require('../package.json').version,
        module,
        usable: true,
        reason: null,
      },
      // Published (an optional dependency), not installed here: npm found no copy offline.
      {
        backend: 'cuda',
        package: `${platformPkg}-cuda`,
        version: null,
        module: null,
        usable: false,
        reason: 'not installed',
      },
    ])
    expect(doc.modules).toEqual([{ path: module, backend: 'Vulkan', loaded: true }])
    expect(doc.devices.map((d) => [d.backend, d.kind])).toEqual([['Vulkan', 'cpu']])
    expect(doc.device).toBeNull()
  })
})

test('CommonJS: 4 workers share one model load, the LLM answers, the monitor reports', () => {
  const out = json(node(['app.cjs', '4', modelsDir]))
  expect(out.settings.modelsDir).toBe(modelsDir)
  expect(out.workers).toHaveLength(4)
  for (const w of out.workers) expect(w.dims).toEqual([384, 384])
  expect(out.modelLoads).toBe(1)
  expect(out.requests).toBeGreaterThanOrEqual(5)
  expect(out.llm.key).toBe('demo')
  expect(out.llm.progress.at(-1)).toBe(100)
  expect(out.llm.text).toMatch(/Paris/)
  expect(out.snapshot.pressure).toMatch(/^(low|medium|high|critical)$/)
  expect(out.snapshot.rss).toBeGreaterThan(0)
  expect(out.levels).toContain('q4')
})

test('without the models directory the workers get a coded MODEL_NOT_FOUND, not a crash', () => {
  const r = node(['app.cjs', '1'])
  expect(r.status).toBe(1)
  expect(r.stderr).toMatch(/MODEL_NOT_FOUND/)
})

test('ES module: named and default exports', () => {
  const out = json(node(['app.mjs', modelsDir]))
  expect(out).toEqual({
    dims: 384,
    isArray: true,
    quantized: 'Mistral-7B-Instruct-v0.2-q4f16_1-MLC',
    q4: 'q4f16_1',
    sameDefault: true,
  })
})

test('TypeScript: tsc --strict --module nodenext accepts a typed usage file', () => {
  fs.writeFileSync(
    path.join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        noEmit: true,
        target: 'ES2022',
        module: 'nodenext',
        moduleResolution: 'nodenext',
        types: ['node'],
        typeRoots: [path.join(root, 'node_modules', '@types')],
      },
      files: ['usage.mts'],
    }),
  )
  const r = node([path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'])
  expect(r.stdout + r.stderr).toBe('')
  expect(r.status).toBe(0)
})

test('npx orion-native status --json', () => {
  const r = spawnSync('npx', ['--offline', 'orion-native', 'status', '--json'], { cwd: app, env, encoding: 'utf8' })
  expect(r.stderr).toBe('')
  const status = JSON.parse(r.stdout)
  expect(JSON.stringify(status)).toMatch(/pressure/)
})

test('npx orion-native build without a toolchain says what to install', () => {
  const r = spawnSync('npx', ['--offline', 'orion-native', 'build'], { cwd: app, env, encoding: 'utf8' })
  expect(r.status).toBe(1)
  expect(r.stderr).toMatch(/needs cargo: install Rust/)
})

test('without the platform package, require names the platform, the package and the build command', () => {
  const bare = installApp([packed.main], env)
  const r = spawnSync(
    'node',
    [
      '-e',
      "try { require('orion-native') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }",
    ],
    { cwd: bare, env, encoding: 'utf8' },
  )
  const err = JSON.parse(r.stdout)
  expect(err.code).toBe('BINDING_NOT_FOUND')
  expect(err.message).toContain(platformName())
  expect(err.message).toContain(platformPkg)
  expect(err.message).toContain('npx orion-native build')
  fs.rmSync(bare, { recursive: true, force: true })
})

test('with no ONNX Runtime anywhere, the first call rejects RUNTIME_NOT_FOUND listing every place tried', () => {
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-noort-'))
  fs.cpSync(path.join(app, 'node_modules'), path.join(copy, 'node_modules'), { recursive: true })
  const pkgDir = path.join(copy, 'node_modules', platformPkg)
  for (const f of fs.readdirSync(pkgDir)) if (/onnxruntime\.(so|dylib|dll)/.test(f)) fs.rmSync(path.join(pkgDir, f))
  const script = `
    const { configure, getSharedEmbeddingClient } = require('orion-native')
    configure({ modelsDir: ${JSON.stringify(modelsDir)} })
    const client = getSharedEmbeddingClient()
    client.createEmbedding('x').then(
      () => console.log(JSON.stringify({ ok: true })),
      (e) => console.log(JSON.stringify({ code: e.code, message: e.message })),
    )`
  const out = json(spawnSync('node', ['-e', script], { cwd: copy, env, encoding: 'utf8', timeout: 60_000 }))
  expect(out.code).toBe('RUNTIME_NOT_FOUND')
  expect(out.message).toContain(path.join(pkgDir, 'libonnxruntime.so.1'))
  expect(out.message).toContain('libonnxruntime.so.1 (') // the system search, by name
  expect(out.message).toMatch(/ORT_DYLIB_PATH/)
  expect(out.message).not.toMatch(/MODULE_NOT_FOUND/)
  fs.rmSync(copy, { recursive: true, force: true })
})

test('Electron layout: the platform package alone in app.asar.unpacked, ONNX Runtime found next to the addon', () => {
  // What electron-builder makes of `asarUnpack: ["**/node_modules/orion-native-*/**"]`:
  // the JS in resources/app.asar, the platform package in resources/app.asar.unpacked.
  // Node cannot read an asar archive, so app.asar is a directory here; what matters is
  // that nothing of the platform package is inside it.
  const resources = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-electron-')) + '/resources'
  const asar = path.join(resources, 'app.asar', 'node_modules')
  const unpacked = path.join(resources, 'app.asar.unpacked', 'node_modules')
  fs.mkdirSync(asar, { recursive: true })
  fs.mkdirSync(unpacked, { recursive: true })
  fs.cpSync(path.join(app, 'node_modules', 'orion-native'), path.join(asar, 'orion-native'), { recursive: true })
  fs.cpSync(path.join(app, 'node_modules', platformPkg), path.join(unpacked, platformPkg), { recursive: true })
  const main = path.join(asar, 'orion-native')
  const script = `
    const orion = require(${JSON.stringify(main)})
    orion.configure({ modelsDir: ${JSON.stringify(modelsDir)} })
    // llama.cpp's backend initialises here: its CPU module loads from beside the addon.
    const llamaCpu = orion.getOptimizationStrategy().llamaCpuFeatures
    orion.getSharedEmbeddingClient().createEmbedding('from an Electron layout').then((v) => {
      const fs = require('node:fs')
      const maps = fs.readFileSync('/proc/self/maps', 'utf8')
      const loaded = (re) => [...new Set(maps.split('\\n').filter((l) => re.test(l)).map((l) => l.split(/\\s+/).pop()))]
      console.log(JSON.stringify({ dims: v.length, addon: loaded(/orion-native\\..*\\.node$/), ort: loaded(/libonnxruntime/),
        llama: loaded(/\\/lib(llama|ggml)[^/]*\\.so/), llamaCpu }))
    })`
  const out = json(spawnSync('node', ['-e', script], { cwd: resources, env, encoding: 'utf8', timeout: 120_000 }))
  expect(out.dims).toBe(384)
  expect(out.addon).toEqual([path.join(unpacked, platformPkg, `orion-native.${platformName()}.node`)])
  expect(out.ort).toEqual([path.join(unpacked, platformPkg, 'libonnxruntime.so.1')])
  // llama.cpp's shared libraries and one CPU backend module, all from the platform package.
  expect(out.llamaCpu.length).toBeGreaterThan(0)
  expect(out.llama.filter((f) => path.dirname(f) !== path.join(unpacked, platformPkg))).toEqual([])
  expect(out.llama.map((f) => path.basename(f).replace(/-[\w.]+\.so$/, '-*.so')).sort()).toEqual(
    expect.arrayContaining(['libggml-base.so.0', 'libggml-cpu-*.so', 'libggml.so.0', 'libllama.so.0']),
  )
  // A GPU package left inside the archive is not offered to the addon (dlopen cannot
  // read it) and says so; unpacked, it is.
  for (const f of packed.gpu) {
    const name = path.basename(f).replace(/-[\d.]+\.tgz$/, '')
    fs.cpSync(path.join(app, 'node_modules', name), path.join(asar, name), { recursive: true })
    const list = () =>
      json(
        spawnSync(
          'node',
          [
            '-e',
            `console.log(JSON.stringify(require(${JSON.stringify(path.join(main, 'lib', 'binding.js'))}).gpuPackages()))`,
          ],
          {
            cwd: resources,
            env,
            encoding: 'utf8',
          },
        ),
      ).map(({ package: p, usable, reason, dir }) => ({ p, usable, reason, dir }))
    expect(list()).toEqual([
      {
        p: name,
        usable: false,
        reason: `it is inside the asar archive: unpack it (asarUnpack: ["**/node_modules/${name}/**"])`,
        dir: path.join(asar, name),
      },
    ])
    fs.cpSync(path.join(app, 'node_modules', name), path.join(unpacked, name), { recursive: true })
    expect(list()).toEqual([{ p: name, usable: true, reason: null, dir: path.join(unpacked, name) }])
  }
  fs.rmSync(path.dirname(resources), { recursive: true, force: true })
})

// One binary for every Node the package claims (engines >= 18.17): each runs the app with
// 2 workers embedding, an answer and a snapshot.
test.each(VERSIONS)('Node %s runs the installed package', (version) => {
  const nodeBin = nodeBinary(version)
  const out = json(
    spawnSync(nodeBin, ['app.cjs', '2', modelsDir], { cwd: app, env, encoding: 'utf8', timeout: 180_000 }),
  )
  expect(out.node.startsWith(version)).toBe(true)
  expect(out.workers.map((w) => w.dims)).toEqual([
    [384, 384],
    [384, 384],
  ])
  expect(out.modelLoads).toBe(1)
  expect(out.llm.text).toMatch(/Paris/)
  expect(out.snapshot.rss).toBeGreaterThan(0)
})

afterAll(() => {
  if (app) fs.rmSync(app, { recursive: true, force: true })
  if (bin) fs.rmSync(bin, { recursive: true, force: true })
})
