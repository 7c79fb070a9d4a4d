'use strict'
// The README's reference tables are kept true by the code: every environment variable
// the package reads is in the configuration table, and every error code in the error
// table. Adding one without documenting it fails here.
const fs = require('node:fs')
const path = require('node:path')
const { root } = require('./helpers')

const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8')

/** The lines of the README section headed `## <title>`, up to the next `## `. */
function section(title) {
  const start = readme.indexOf(`\n## ${title}\n`)
  expect(start).toBeGreaterThan(-1)
  const end = readme.indexOf('\n## ', start + 1)
  return readme.slice(start, end < 0 ? undefined : end)
}

/** Every file under `dir` with one of `exts`. */
function files(dir, exts) {
  const out = []
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) out.push(...files(p, exts))
    else if (exts.some((x) => e.name.endsWith(x))) out.push(p)
  }
  return out
}

/** Environment variables read by the package: Rust (`var`/`var_os`, or a `*_ENV` constant) and JS (`process.env.X`). */
function variablesRead() {
  const found = new Set()
  const sources = [
    ...files(path.join(root, 'src'), ['.rs']),
    ...files(path.join(root, 'lib'), ['.js']),
    ...files(path.join(root, 'bin'), ['.js']),
    path.join(root, 'index.js'),
    path.join(root, 'scripts', 'models.js'),
    path.join(root, 'scripts', 'build.js'),
  ]
  for (const f of sources) {
    const text = fs.readFileSync(f, 'utf8').replace(/#\[cfg\(test\)\][\s\S]*$/, '') // not the Rust tests
    for (const m of text.matchAll(/env::var(?:_os)?\(\s*"((?:ORION|ORT|NAPI_RS)_[A-Z0-9_]+)"/g)) found.add(m[1])
    for (const m of text.matchAll(/_ENV: &str = "((?:ORION|ORT|NAPI_RS)_[A-Z0-9_]+)"/g)) found.add(m[1])
    for (const m of text.matchAll(/env_u64\(\s*"((?:ORION|ORT)_[A-Z0-9_]+)"/g)) found.add(m[1])
    for (const m of text.matchAll(/process\.env\.((?:ORION|ORT|NAPI_RS)_[A-Z0-9_]+)/g)) found.add(m[1])
  }
  return [...found].sort()
}

test('every environment variable the package reads is in the configuration table', () => {
  const vars = variablesRead()
  // The scan itself works: it finds the ones we know are read.
  expect(vars).toEqual(expect.arrayContaining(['ORION_MODELS_DIR', 'ORT_DYLIB_PATH', 'ORION_LLAMA_LOG']))
  const table = section('Configuration')
  expect(vars.filter((v) => !table.includes(`\`${v}\``))).toEqual([])
})

test('every error code is in the error table', () => {
  const rust = fs.readFileSync(path.join(root, 'src', 'error.rs'), 'utf8')
  const codes = [...rust.matchAll(/=> "([A-Z_]+)",/g)].map((m) => m[1])
  expect(codes.length).toBeGreaterThan(10)
  codes.push('BINDING_NOT_FOUND') // raised by lib/binding.js, before the addon loads
  const table = section('Error codes')
  expect(codes.filter((c) => !table.includes(`| \`${c}\``))).toEqual([])
})

test('the checks can fail: a missing variable or code is reported', () => {
  expect(section('Configuration').includes('`ORION_NOT_A_VARIABLE`')).toBe(false)
  expect(section('Error codes').includes('| `NOT_A_CODE`')).toBe(false)
})

test('index.js knows every error code of the addon (a code it does not know would be recoded)', () => {
  const rust = fs.readFileSync(path.join(root, 'src', 'error.rs'), 'utf8')
  const codes = [...rust.matchAll(/=> "([A-Z_]+)",/g)].map((m) => m[1]).sort()
  const js = fs.readFileSync(path.join(root, 'index.js'), 'utf8')
  const set = /const CODES = new Set\(\[([\s\S]*?)\]\)/.exec(js)
  expect(set).not.toBeNull()
  const known = [...set[1].matchAll(/'([A-Z_]+)'/g)].map((m) => m[1]).sort()
  expect(known).toEqual(codes)
})
