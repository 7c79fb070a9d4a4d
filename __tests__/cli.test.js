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
  for (const c of ['models', 'status', 'gpu', 'build']) expect(r.stdout).toMatch(new RegExp(`^  ${c}\\b`, 'm'))
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
  for (const c of ['models', 'status', 'gpu', 'build']) {
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

describe('models list and models pull', () => {
  const crypto = require('node:crypto')
  const http = require('node:http')
  const demo = MODELS.find((m) => m.kind === 'llm')
  const gguf = path.join(fetched, demo.name, demo.files.find((f) => f.name.endsWith('.gguf')).name)
  // Not a GGUF file, but the registry vouches for its size and digest: a pull that loaded
  // it would fail on its header.
  const junk = Buffer.from('not a GGUF file, but the registry vouches for it')
  const sha = (b) => crypto.createHash('sha256').update(b).digest('hex')
  let models, env, server, port

  beforeAll(async () => {
    models = path.join(tmp, 'pull-models')
    fs.mkdirSync(models)
    for (const m of MODELS) fs.symlinkSync(path.join(fetched, m.name), path.join(models, m.name))
    fs.writeFileSync(path.join(models, 'junk.gguf'), junk)
    const demoBytes = fs.readFileSync(gguf)
    // The hub's layout, on 127.0.0.1: only test/demo's one file exists.
    server = http.createServer((req, res) => {
      if (req.url !== '/test/demo/resolve/main/SmolLM2-copy.Q4_1.gguf') return res.writeHead(404).end('Entry not found')
      res.writeHead(200, { 'content-length': demoBytes.length }).end(demoBytes)
    })
    await new Promise((r) => server.listen(0, '127.0.0.1', r))
    port = server.address().port
    const registry = path.join(tmp, 'registry.json')
    fs.writeFileSync(
      registry,
      JSON.stringify({
        junk: { files: { q4: { path: 'junk.gguf', sha256: sha(junk), size: junk.length } } },
        wrong: { files: { q4: { path: 'junk.gguf', sha256: '0'.repeat(64) } } },
        copy: {
          files: {
            q4: {
              hubRepo: 'test/demo',
              hubFile: 'SmolLM2-copy.Q4_1.gguf',
              sha256: sha(demoBytes),
              size: demoBytes.length,
            },
          },
        },
        absent: { files: { q4: { hubRepo: 'test/demo', hubFile: 'absent.gguf', sha256: '1'.repeat(64), size: 1000 } } },
      }),
    )
    env = childEnv({
      XDG_CACHE_HOME: cache,
      ORION_MODELS_DIR: models,
      ORION_MODEL_REGISTRY: registry,
      ORION_HF_ENDPOINT: `http://127.0.0.1:${port}`,
    })
  })
  afterAll(() => server && server.close())

  // Asynchronous: the test's own server has to answer while the CLI runs.
  function cliAsync(...args) {
    return new Promise((resolve) => {
      const child = require('node:child_process').spawn(process.execPath, [bin, ...args], { cwd: root, env })
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (d) => (stdout += d))
      child.stderr.on('data', (d) => (stderr += d))
      child.on('close', (status) => resolve({ status, stdout, stderr }))
    })
  }

  test('models list --json: every registry and catalog model, on disk or not, with its size and path', async () => {
    const r = await cliAsync('models', 'list', '--json')
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    const rows = JSON.parse(r.stdout)
    const row = (key, quantization) =>
      rows.find((x) => x.key === key && (!quantization || x.quantization === quantization))
    for (const x of rows)
      expect(Object.keys(x).sort()).toEqual(['bytes', 'key', 'kind', 'onDisk', 'path', 'quantization'])
    expect(row('demo')).toEqual(
      expect.objectContaining({
        kind: 'llm',
        onDisk: true,
        bytes: fs.statSync(gguf).size,
        path: expect.stringContaining(models),
      }),
    )
    expect(row('junk')).toEqual({
      key: 'junk',
      kind: 'llm',
      quantization: 'q4',
      onDisk: true,
      bytes: junk.length,
      path: path.join(models, 'junk.gguf'),
    })
    // Not on disk: where a download would put it, and the size the registry expects.
    expect(row('copy')).toEqual(
      expect.objectContaining({
        onDisk: false,
        bytes: fs.statSync(gguf).size,
        path: path.join(models, 'SmolLM2-copy.Q4_1.gguf'),
      }),
    )
    expect(row('Mistral-7B-Instruct-v0.2', 'q4')).toEqual(expect.objectContaining({ kind: 'llm', onDisk: false }))
    expect(row('all-MiniLM-L6-v2')).toEqual(
      expect.objectContaining({ kind: 'embedding', onDisk: true, path: path.join(models, 'all-MiniLM-L6-v2') }),
    )
    expect(row('all-MiniLM-L6-v2').bytes).toBeGreaterThan(1e6)
    expect(row('bge-small-en-v1.5')).toEqual(
      expect.objectContaining({
        kind: 'embedding',
        onDisk: false,
        bytes: null,
        path: path.join(models, 'bge-small-en-v1.5'),
      }),
    )

    const text = await cliAsync('models', 'list')
    expect(text.status).toBe(0)
    expect(text.stdout).toMatch(/^key\s+kind\s+quantization\s+on disk\s+size\s+path/)
    expect(text.stdout).toMatch(/^junk\s+llm\s+q4\s+yes\s+0\.0 MB\s+\S+junk\.gguf/m)
    expect(text.stdout).toMatch(/^bge-small-en-v1\.5\s+embedding\s+-\s+no\s+\?/m)
  })

  test('models pull checks a file on disk without loading it', async () => {
    const r = await cliAsync('models', 'pull', 'junk')
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    expect(r.stdout.trim()).toBe(`junk: already in ${path.join(models, 'junk.gguf')} (0.0 MB, Q4_K_M)`)
    const wrong = await cliAsync('models', 'pull', 'wrong')
    expect(wrong.status).toBe(1)
    expect(wrong.stderr).toMatch(
      /^orion-native models pull: wrong: MODEL_LOAD_FAILED: .*has sha256 [0-9a-f]{64} but the registry expects 0{64}/,
    )
  })

  test('models pull downloads a file, checked, without loading it; a second pull finds it', async () => {
    const r = await cliAsync('models', 'pull', 'copy')
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    const dest = path.join(models, 'SmolLM2-copy.Q4_1.gguf')
    const out = r.stdout.trim()
    expect(out.startsWith(`copy: downloaded to ${dest} (`)).toBe(true)
    expect(out).toMatch(/ \(\d+\.\d MB, Q4_1\)$/)
    expect(sha(fs.readFileSync(dest))).toBe(sha(fs.readFileSync(gguf)))
    const again = await cliAsync('models', 'pull', 'copy')
    expect(again.stdout).toMatch(/^copy: already in /)
  })

  test("a failed pull is one sentence: what failed, the server's answer, what else to do", async () => {
    const r = await cliAsync('models', 'pull', 'absent')
    expect(r.status).toBe(1)
    expect(r.stdout).toBe('')
    const lines = r.stderr.trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toBe(
      `orion-native models pull: absent: downloading absent.gguf from http://127.0.0.1:${port}/test/demo/resolve/main/absent.gguf ` +
        'failed (HTTP 404, the server has no such file); check the network connection or proxy (ORION_HF_ENDPOINT or ' +
        `HF_ENDPOINT names a mirror), or copy absent.gguf into ${models} by hand.`,
    )
  })
})

test('status rejects a misspelt flag', () => {
  const r = cli('status', '--jsn')
  expect(r.status).toBe(2)
  expect(r.stdout).toBe('')
  expect(r.stderr.split('\n')[0]).toBe("orion-native status: Unknown option '--jsn'")
  expect(r.stderr).toMatch(/^usage: orion-native status/m)
})

test('status --json prints { processes, machine }, the same shape when no process publishes', () => {
  const r = cli('status', '--json')
  expect(r.stderr).toBe('')
  expect(r.status).toBe(0)
  const doc = JSON.parse(r.stdout)
  expect(Object.keys(doc).sort()).toEqual(['machine', 'processes'])
  // The cache is a fresh directory: nothing publishes there, and the CLI is no process to show.
  expect(doc.processes).toEqual([])
  expect(Object.keys(doc.machine).sort()).toEqual(
    [
      'available',
      'cgroupLimit',
      'pressure',
      'swapTotal',
      'swapUsed',
      'timestamp',
      'total',
      'used',
      'usedFraction',
    ].sort(),
  )
  expect(doc.machine.total).toBeGreaterThan(0)
  expect(doc.machine.pressure).toMatch(/^(low|medium|high|critical)$/)
})

test('status with no process publishing says so and shows this machine, not its own pid', () => {
  const r = cli('status')
  expect(r.status).toBe(0)
  expect(r.stdout).toMatch(/^This machine: pressure [A-Z]+ \(\d+ % in use\) {2}available [\d.]+ MB of [\d.]+ MB/)
  expect(r.stdout).toMatch(/^No orion-native process publishes its memory status/m)
  expect(r.stdout).not.toMatch(/\bpid\b/)
  expect(tree(cache)).toEqual([])
})

test('status --json --watch prints one JSON document per line and refresh, nothing else', async () => {
  const child = require('node:child_process').spawn(process.execPath, [bin, 'status', '--json', '--watch'], {
    cwd: root,
    env: childEnv({ XDG_CACHE_HOME: cache }),
  })
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  const deadline = Date.now() + 20_000
  while (out.split('\n').length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
  child.kill()
  const lines = out.split('\n').filter((l) => l !== '')
  expect(lines.length).toBeGreaterThanOrEqual(2)
  for (const l of lines) expect(Object.keys(JSON.parse(l)).sort()).toEqual(['machine', 'processes'])
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
