'use strict'
// Installing the packed tarballs into a fresh app, as a user of the published package
// would, with no build toolchain on PATH.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFileSync, spawnSync } = require('node:child_process')

const root = path.resolve(__dirname, '..')
const TOOLCHAIN = ['cargo', 'rustc', 'rustup', 'cmake', 'cc', 'gcc', 'g++', 'c++', 'clang', 'make']

/** `npm run package`, once per jest worker process. */
let packed
function pack() {
  if (!packed) {
    const out = execFileSync(process.execPath, [path.join(root, 'scripts/package.js')], { cwd: root, encoding: 'utf8' })
    const pkg = require('../package.json')
    const { platformName } = require('../lib/binding')
    // The GPU packages of this platform that package.js could build (it says which not).
    const gpu = fs
      .readdirSync(path.join(root, 'npm-gpu'))
      .filter((d) => d.startsWith(`${platformName()}-`))
      .map((d) => path.join(root, 'dist', `orion-native-${d}-${pkg.version}.tgz`))
      .filter((f) => out.includes(path.basename(f)))
    packed = {
      log: out,
      main: path.join(root, 'dist', `orion-native-${pkg.version}.tgz`),
      platform: path.join(root, 'dist', `orion-native-${platformName()}-${pkg.version}.tgz`),
      gpu,
    }
  }
  return packed
}

/** A directory holding only node, npm and a shell (as links), to be the whole PATH. */
function bareBin() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-bin-'))
  const npmCli = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin')
  fs.symlinkSync(process.execPath, path.join(dir, 'node'))
  fs.symlinkSync(fs.realpathSync(path.join(npmCli, 'npm-cli.js')), path.join(dir, 'npm'))
  fs.symlinkSync(fs.realpathSync(path.join(npmCli, 'npx-cli.js')), path.join(dir, 'npx'))
  // npx runs a package's bin through `sh -c`, as every user's shell has one.
  fs.symlinkSync('/bin/sh', path.join(dir, 'sh'))
  return dir
}

/** Which toolchain commands `PATH` holds. */
function toolchainOn(PATH) {
  return TOOLCHAIN.filter((t) => PATH.split(path.delimiter).some((d) => fs.existsSync(path.join(d, t))))
}

/** The environment of a user's shell with nothing but node and npm, and no ONNX Runtime hints. */
function userEnv(bin, extra = {}) {
  const env = { ...process.env, PATH: bin, ...extra }
  for (const k of Object.keys(env)) {
    if (/^(ONNXRUNTIME_|ORT_|ORION_|NAPI_RS_|npm_|JEST_|NODE_OPTIONS$)/.test(k)) delete env[k]
  }
  Object.assign(env, extra)
  return env
}

/** A new app with `tarballs` installed by npm, offline (the tarballs need nothing else). */
function installApp(tarballs, env) {
  const app = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-app-'))
  fs.writeFileSync(
    path.join(app, 'package.json'),
    JSON.stringify({ name: 'user-app', private: true, version: '1.0.0' }),
  )
  const r = spawnSync('npm', ['install', '--offline', '--no-audit', '--no-fund', ...tarballs], {
    cwd: app,
    env,
    encoding: 'utf8',
  })
  if (r.status !== 0) throw new Error(`npm install failed:\n${r.stdout}\n${r.stderr}`)
  return app
}

/** Bytes under `dir`, files only. */
function duBytes(dir) {
  let total = 0
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) total += duBytes(p)
    else if (e.isFile()) total += fs.statSync(p).size
  }
  return total
}

module.exports = { root, pack, bareBin, toolchainOn, userEnv, installApp, duBytes }
