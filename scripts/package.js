#!/usr/bin/env node
'use strict'
// `npm run package [-- --target <platform>]`: the tarballs a user installs, from the
// release build. Without --target, for this machine's platform, from `npm run build`'s
// addon; with --target linux-arm64-gnu or win32-x64 (on Linux x64), the addon is
// cross-compiled first (scripts/build.js --target; cargo reuses what is already built).
//
//   dist/orion-native-<version>.tgz             JS, types, CLI, and the sources for a build
//                                               on platforms without a prebuilt addon
//   dist/orion-native-<platform>-<version>.tgz  the addon, ONNX Runtime's CPU library next
//                                               to it, and ONNX Runtime's licence
//   dist/orion-native-<platform>-<gpu>-<version>.tgz
//                                               a GPU backend module (npm-gpu/: Vulkan for
//                                               linux-x64-gnu), built from the addon's own
//                                               llama.cpp tree by scripts/ggml-backends.js
//
// ONNX Runtime comes from the PyPI `onnxruntime` wheel of the version below (its CPU
// library, LICENSE and ThirdPartyNotices), downloaded once with pip and cached.
const fs = require('node:fs')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const { platformName } = require('../lib/binding')
const { target } = require('./targets')

const ORT_VERSION = '1.30.0'
// The wheel's tag per platform, and the library's name inside it and in the package.
// ONNX Runtime publishes no macOS x64 build of this version (PyPI nor onnxruntime-node),
// hence no darwin-x64 package.
const ORT_WHEELS = {
  'linux-x64-gnu': {
    platform: 'manylinux_2_28_x86_64',
    member: `capi/libonnxruntime.so.${ORT_VERSION}`,
    as: 'libonnxruntime.so.1',
  },
  'linux-arm64-gnu': {
    platform: 'manylinux_2_28_aarch64',
    member: `capi/libonnxruntime.so.${ORT_VERSION}`,
    as: 'libonnxruntime.so.1',
  },
  'darwin-arm64': {
    platform: 'macosx_14_0_arm64',
    member: `capi/libonnxruntime.${ORT_VERSION}.dylib`,
    as: 'libonnxruntime.dylib',
  },
  'win32-x64': { platform: 'win_amd64', member: 'capi/onnxruntime.dll', as: 'onnxruntime.dll' },
}

const root = path.join(__dirname, '..')
const pkg = require('../package.json')

// The package's cache directory (lib/paths.js, the same rule as the addon's).
function cacheDir() {
  return path.join(require('../lib/paths').cacheDir(), 'packaging')
}

/** The onnxruntime wheel for `platform`, from the cache or PyPI. */
function ortWheel(platform) {
  const spec = ORT_WHEELS[platform]
  if (!spec) throw new Error(`no ONNX Runtime wheel is known for ${platform}`)
  const dir = path.join(cacheDir(), `onnxruntime-${ORT_VERSION}-${spec.platform}`)
  const find = () => fs.existsSync(dir) && fs.readdirSync(dir).find((f) => f.endsWith('.whl'))
  if (!find()) {
    console.log(`Downloading onnxruntime==${ORT_VERSION} (${spec.platform}) from PyPI`)
    const python = process.platform === 'win32' ? 'python' : 'python3'
    execFileSync(
      python,
      [
        '-m',
        'pip',
        'download',
        `onnxruntime==${ORT_VERSION}`,
        '--no-deps',
        '--only-binary=:all:',
        '--platform',
        spec.platform,
        '--python-version',
        '3.11',
        '-d',
        dir,
        '-q',
        '--disable-pip-version-check',
      ],
      { stdio: 'inherit' },
    )
  }
  return { file: path.join(dir, find()), spec }
}

/** Members of a wheel (a zip), written to `dest` under new names. */
function extract(wheel, members, dest) {
  const script = [
    'import sys, zipfile, shutil',
    'z = zipfile.ZipFile(sys.argv[1])',
    'for member, out in zip(sys.argv[2::2], sys.argv[3::2]):',
    '    with z.open("onnxruntime/" + member) as src, open(out, "wb") as dst: shutil.copyfileobj(src, dst)',
  ].join('\n')
  const args = [wheel]
  for (const [member, out] of Object.entries(members)) args.push(member, path.join(dest, out))
  execFileSync(process.platform === 'win32' ? 'python' : 'python3', ['-c', script, ...args], { stdio: 'inherit' })
}

function npmPack(dir, dest) {
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', dest], { cwd: dir, encoding: 'utf8' })
  const [info] = JSON.parse(out)
  return {
    file: path.join(dest, info.filename),
    size: info.size,
    unpackedSize: info.unpackedSize,
    files: info.entryCount,
  }
}

/**
 * The main package as published: the files `files` names, and a package.json that
 * depends on every platform package (as napi-rs's `prepublish` does) and carries none of
 * the checkout's development fields. The checkout's own package.json cannot name the
 * platform packages: `npm ci` would need them in the lock file before they exist.
 */
function stageMain(dist) {
  const stage = path.join(dist, 'stage', 'main')
  fs.rmSync(stage, { recursive: true, force: true })
  fs.mkdirSync(stage, { recursive: true })
  const [listing] = JSON.parse(
    execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' }),
  )
  for (const { path: f } of listing.files) {
    if (f === 'package.json') continue
    fs.mkdirSync(path.dirname(path.join(stage, f)), { recursive: true })
    fs.copyFileSync(path.join(root, f), path.join(stage, f))
  }
  const published = { ...pkg }
  for (const k of ['scripts', 'devDependencies', 'jest']) delete published[k]
  published.optionalDependencies = Object.fromEntries(
    [...fs.readdirSync(path.join(root, 'npm')), ...fs.readdirSync(path.join(root, 'npm-gpu'))]
      .sort()
      .map((p) => [`orion-native-${p}`, pkg.version]),
  )
  fs.writeFileSync(path.join(stage, 'package.json'), JSON.stringify(published, null, 2) + '\n')
  return stage
}

async function main(argv = []) {
  const at = argv.indexOf('--target')
  const platform = at >= 0 ? argv[at + 1] : platformName()
  // `--gpu <backend>`: that GPU package alone (the release workflow's CUDA job).
  const gpuAt = argv.indexOf('--gpu')
  if (gpuAt >= 0) {
    const dist = path.join(root, 'dist')
    const staged = stageGpu(platform, dist, [argv[gpuAt + 1]])
    if (!staged.length) throw new Error(`no ${argv[gpuAt + 1]} package could be built for ${platform}`)
    const packed = staged.map((dir) => npmPack(dir, dist))
    for (const t of packed) console.log(`${path.relative(root, t.file)}: ${(t.size / 1e6).toFixed(1)} MB packed`)
    return { gpu: packed }
  }
  const addon = path.join(root, `orion-native.${platform}.node`)
  if (platform !== platformName()) await require('./build').main(['--target', platform])
  else if (!fs.existsSync(addon)) await require('./build').main(['--napi'])
  const dist = path.join(root, 'dist')
  const stage = path.join(dist, 'stage', platform)
  fs.rmSync(stage, { recursive: true, force: true })
  fs.mkdirSync(stage, { recursive: true })

  // The platform package: its package.json from npm/<platform>/, at the main version.
  const meta = JSON.parse(fs.readFileSync(path.join(root, 'npm', platform, 'package.json'), 'utf8'))
  const { file: wheel, spec } = ortWheel(platform)
  meta.version = pkg.version
  fs.writeFileSync(path.join(stage, 'package.json'), JSON.stringify(meta, null, 2) + '\n')
  fs.copyFileSync(path.join(root, 'npm', platform, 'README.md'), path.join(stage, 'README.md'))
  fs.copyFileSync(addon, path.join(stage, path.basename(addon)))
  // Symbols are for debugging a build, not for users' disks (about 3 MB of 14 here). The
  // target's own binutils for a cross build (the host's strip may not know its format).
  if (process.platform === 'linux') {
    try {
      execFileSync(target(platform).strip, ['--strip-unneeded', path.join(stage, path.basename(addon))])
    } catch (e) {
      console.warn(`not stripping the addon: ${e.message}`)
    }
  }
  // llama.cpp's shared libraries and ggml's backend modules, where the addon is built
  // with backends as modules (Linux x64 and arm64, Windows x64): beside it, where its
  // rpath (on Windows, the loader's search of the addon's own directory) and ggml's loader
  // look. This machine's are the copies the build put beside the addon (those the tests
  // load); a cross build's come from its build directory (Linux arm64's names are this
  // machine's own, so they are not copied to the checkout's root). One the package lists
  // and neither has is reported below.
  const host = platform === platformName()
  for (const f of require('./build').llamaLibraries(platform)) {
    const name = path.basename(f)
    if (host && !fs.existsSync(path.join(root, name)))
      throw new Error(`${name} is not beside the addon: run npm run build`)
    fs.copyFileSync(host ? path.join(root, name) : fs.realpathSync(f), path.join(stage, name))
    execFileSync(target(platform).strip, ['--strip-unneeded', path.join(stage, name)])
  }
  extract(
    wheel,
    {
      [spec.member]: spec.as,
      LICENSE: 'ONNXRUNTIME-LICENSE',
      'ThirdPartyNotices.txt': 'ONNXRUNTIME-ThirdPartyNotices.txt',
    },
    stage,
  )
  for (const f of meta.files) {
    if (!fs.existsSync(path.join(stage, f)))
      throw new Error(`npm/${platform}/package.json lists ${f}, which was not staged`)
  }

  const platformTgz = npmPack(stage, dist)
  const gpuTgz = stageGpu(platform, dist).map((dir) => npmPack(dir, dist))
  const mainTgz = npmPack(stageMain(dist), dist)
  const mb = (b) => `${(b / 1e6).toFixed(1)} MB`
  for (const t of [mainTgz, platformTgz, ...gpuTgz]) {
    console.log(
      `${path.relative(root, t.file)}: ${mb(t.size)} packed, ${mb(t.unpackedSize)} installed, ${t.files} files`,
    )
  }
  return { main: mainTgz, platform: platformTgz, gpu: gpuTgz }
}

/**
 * The GPU packages of `platform` (npm-gpu/<platform>-<backend>/), staged: each holds the
 * module its package.json names (`ggmlBackend`), stripped. Only those this machine can
 * build (scripts/ggml-backends.js); each one left out is said, with why.
 */
function stageGpu(platform, dist, only = ['vulkan']) {
  const staged = []
  const dirs = fs.readdirSync(path.join(root, 'npm-gpu')).filter((d) => d.startsWith(`${platform}-`))
  for (const d of dirs.sort()) {
    const meta = JSON.parse(fs.readFileSync(path.join(root, 'npm-gpu', d, 'package.json'), 'utf8'))
    const backend = d.slice(platform.length + 1)
    const backends = require('./ggml-backends')
    // CUDA takes a CUDA toolkit and long to build: only when asked for (--gpu cuda).
    const why = !only.includes(backend) ? `built only with --gpu ${backend}` : backends.missingFor(backend, platform)
    if (why) {
      console.warn(`not packing ${meta.name}: ${why}`)
      continue
    }
    const module = backends.ensure(backend, platform)
    const stage = path.join(dist, 'stage', d)
    fs.rmSync(stage, { recursive: true, force: true })
    fs.mkdirSync(stage, { recursive: true })
    meta.version = pkg.version
    fs.writeFileSync(path.join(stage, 'package.json'), JSON.stringify(meta, null, 2) + '\n')
    fs.copyFileSync(path.join(root, 'npm-gpu', d, 'README.md'), path.join(stage, 'README.md'))
    fs.copyFileSync(module, path.join(stage, meta.ggmlBackend))
    execFileSync(target(platform).strip, ['--strip-unneeded', path.join(stage, meta.ggmlBackend)])
    staged.push(stage)
  }
  return staged
}

module.exports = { main, ORT_VERSION }

if (require.main === module) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(e.message)
    process.exit(1)
  })
}
