'use strict'
// The command line (bin/orion-native.js, and scripts/models.js run directly): every
// command parses strictly, --help does nothing else, and a bad command line is exit 2
// with the usage. Nothing here may download: the cache directory is a fresh temp dir,
// PATH holds only node (so a fetch would fail at once on the missing Python instead of
// downloading), and `models` only ever sees a models directory that is already complete.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { MODELS, ensureModels } = require('../scripts/models')
const { modelsDir } = require('../lib/paths')
const pkg = require('../package.json')

const root = path.resolve(__dirname, '..')
const bin = path.join(root, 'bin', 'orion-native.js')
const VALID_ONLY = ['embedding', 'llm', ...MODELS.map((m) => m.name)]

let tmp, cache

// The environment of every child: no ORION_* settings from the test runner's shell.
function childEnv(extra = {}) {
  const env = { ...process.env, PATH: path.dirname(process.execPath) }
  for (const k of Object.keys(env)) if (k.startsWith('ORION_')) delete env[k]
  return { ...env, ...extra }
}

function run(args, opts = {}) {
  return spawnSync(process.execPath, args, {
    cwd: root,
    env: childEnv({ XDG_CACHE_HOME: cache }),
    encoding: 'utf8',
    timeout: 30_000,
    ...opts,
  })
}
const cli = (...args) => run([bin, ...args])

// Every file and folder under `dir`, so a test can tell that nothing was written.
function tree(dir) {
  if (!fs.existsSync(dir)) return []
  return fs.readdirSync(dir, { recursive: true }).sort()
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-cli-'))
  cache = path.join(tmp, 'cache')
  fs.mkdirSync(cache)
})

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

test('--version prints the package version', () => {
  const r = cli('--version')
  expect(r.status).toBe(0)
  expect(r.stdout.trim()).toBe(pkg.version)
})

test('--help lists the commands', () => {
  const r = cli('--help')
  expect(r.status).toBe(0)
  expect(r.stderr).toBe('')
  for (const c of ['models', 'status', 'build']) expect(r.stdout).toMatch(new RegExp(`^  ${c}\\b`, 'm'))
})

test('an unknown command or top-level flag is exit 2 with the usage on stderr', () => {
  for (const args of [['frobnicate'], ['--frobnicate']]) {
    const r = cli(...args)
    expect(r.status).toBe(2)
    expect(r.stdout).toBe('')
    expect(r.stderr.split('\n')[0]).toMatch(/^orion-native: .*frobnicate/)
    expect(r.stderr).toMatch(/^usage: orion-native <command>/m)
  }
})

test('every command has --help, which prints its usage and does nothing else', () => {
  for (const c of ['models', 'status', 'build']) {
    const r = cli(c, '--help')
    expect(r.status).toBe(0)
    expect(r.stderr).toBe('')
    expect(r.stdout).toMatch(new RegExp(`^usage: orion-native ${c}\\b`))
  }
  // Nothing fetched, no models directory made, no status written: the cache stays empty.
  expect(tree(cache)).toEqual([])
})

test('models --only with an unknown value is exit 2 naming the valid values', () => {
  const r = cli('models', '--only', 'foo')
  expect(r.status).toBe(2)
  const first = r.stderr.split('\n')[0]
  expect(first).toMatch(/"foo"/)
  for (const v of VALID_ONLY) expect(first).toContain(v)
  expect(tree(cache)).toEqual([])
})

test('models rejects unknown flags and a missing value', () => {
  for (const args of [['--frobnicate'], ['--only'], ['--dir'], ['extra']]) {
    const r = cli('models', ...args)
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/^orion-native models: /)
    expect(r.stderr).toMatch(/^usage: orion-native models/m)
  }
  expect(tree(cache)).toEqual([])
})

test('scripts/models.js run directly parses the same way', () => {
  const script = path.join(root, 'scripts', 'models.js')
  const help = run([script, '--help'])
  expect(help.status).toBe(0)
  expect(help.stdout).toMatch(/^usage: node scripts\/models\.js/)
  for (const args of [['--frobnicate'], ['--only', 'foo']]) {
    const r = run([script, ...args])
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/^usage: node scripts\/models\.js/m)
  }
  expect(tree(cache)).toEqual([])
})

test('ensureModels rejects an unknown `only` instead of fetching nothing', () => {
  expect(() => ensureModels({ only: 'foo', dir: path.join(tmp, 'none') })).toThrow(/--only takes one of embedding/)
  expect(fs.existsSync(path.join(tmp, 'none'))).toBe(false)
})

// The models the test command fetched (helpers.js fetches them when jest runs alone),
// linked into a fresh directory: complete, so `models --dir` only checks them.
require('./helpers')
const fetched = modelsDir()
test('models --dir uses that directory, complete already, and reports it', () => {
  for (const m of MODELS) expect(fs.existsSync(path.join(fetched, m.name, '.orion-verified'))).toBe(true)
  const dir = path.join(tmp, 'models')
  fs.mkdirSync(dir)
  for (const m of MODELS) fs.symlinkSync(path.join(fetched, m.name), path.join(dir, m.name))
  const r = cli('models', '--dir', dir)
  expect(r.stderr).toBe('')
  expect(r.status).toBe(0)
  for (const m of MODELS) expect(r.stdout).toContain(`${m.name}: ready in ${path.join(dir, m.name)}`)
  expect(r.stdout).not.toMatch(/fetching/)

  const llm = cli('models', '--only', 'llm', '--dir', dir)
  expect(llm.status).toBe(0)
  expect(llm.stdout.trim().split('\n')).toEqual(
    MODELS.filter((m) => m.kind === 'llm').map((m) => `${m.name}: ready in ${path.join(dir, m.name)}`),
  )
  expect(tree(cache)).toEqual([])
})

test('status rejects a misspelt flag', () => {
  const r = cli('status', '--jsn')
  expect(r.status).toBe(2)
  expect(r.stdout).toBe('')
  expect(r.stderr.split('\n')[0]).toBe("orion-native status: Unknown option '--jsn'")
  expect(r.stderr).toMatch(/^usage: orion-native status/m)
})

test('status --json prints the snapshots as JSON', () => {
  const r = cli('status', '--json')
  expect(r.stderr).toBe('')
  expect(r.status).toBe(0)
  const statuses = JSON.parse(r.stdout)
  expect(Array.isArray(statuses)).toBe(true)
  expect(statuses[0]).toEqual(
    expect.objectContaining({ pressure: expect.any(String), models: [], system: expect.any(Object) }),
  )
})

test('status prints the table of this machine when no process monitors memory', () => {
  const r = cli('status')
  expect(r.status).toBe(0)
  expect(r.stdout).toMatch(/^No orion-native process is monitoring memory/)
  expect(r.stdout).toMatch(/^pid \d+ {2}pressure [A-Z]+/m)
})

test('build rejects a flag it does not take, without building', () => {
  const r = cli('build', '--release')
  expect(r.status).toBe(2)
  expect(r.stderr).toMatch(/^orion-native build: Unknown option '--release'/)
})

// lib/paths.js and the addon's src/paths.rs are two copies of one rule: the CLI fetches
// models where the addon looks only while they agree.
test('lib/paths.js modelsDir() is the addon configure().modelsDir under every environment', () => {
  const home = path.join(tmp, 'home')
  const cases = [
    { HOME: home },
    { HOME: home, XDG_CACHE_HOME: path.join(tmp, 'xdg') },
    { HOME: home, XDG_CACHE_HOME: '' },
    { HOME: home, ORION_MODELS_DIR: path.join(tmp, 'm') },
    { HOME: home, ORION_MODELS_DIR: '', XDG_CACHE_HOME: path.join(tmp, 'xdg') },
    { HOME: '', TMPDIR: path.join(tmp, 't') },
    { TMPDIR: path.join(tmp, 't') },
  ]
  const script =
    "const p = require('./lib/paths'); const { configure } = require('./index.js');" +
    'console.log(JSON.stringify([p.modelsDir(), configure().modelsDir]))'
  for (const c of cases) {
    const env = childEnv(c)
    for (const k of ['HOME', 'XDG_CACHE_HOME', 'TMPDIR']) if (!(k in c)) delete env[k]
    const r = spawnSync(process.execPath, ['-e', script], { cwd: root, env, encoding: 'utf8', timeout: 30_000 })
    expect(r.stderr).toBe('')
    const [js, addon] = JSON.parse(r.stdout)
    expect({ env: c, dir: js }).toEqual({ env: c, dir: addon })
  }
})
