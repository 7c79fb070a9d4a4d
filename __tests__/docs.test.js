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

/** The variables of `vars` that the configuration table `table` leaves out. */
const undocumentedVariables = (vars, table) => vars.filter((v) => !table.includes(`\`${v}\``))
/** The codes of `codes` that the error table `table` leaves out. */
const undocumentedCodes = (codes, table) => codes.filter((c) => !table.includes(`| \`${c}\``))

/** Every error code of src/error.rs, and the one lib/binding.js raises. */
function errorCodes() {
  const rust = fs.readFileSync(path.join(root, 'src', 'error.rs'), 'utf8')
  const codes = [...rust.matchAll(/=> "([A-Z_]+)",/g)].map((m) => m[1])
  codes.push('BINDING_NOT_FOUND') // raised by lib/binding.js, before the addon loads
  return codes
}

test('every environment variable the package reads is in the configuration table', () => {
  const vars = variablesRead()
  // The scan itself works: it finds the ones we know are read.
  expect(vars).toEqual(expect.arrayContaining(['ORION_MODELS_DIR', 'ORT_DYLIB_PATH', 'ORION_LLAMA_LOG']))
  expect(undocumentedVariables(vars, section('Configuration'))).toEqual([])
})

test('every error code is in the error table', () => {
  const codes = errorCodes()
  expect(codes.length).toBeGreaterThan(10)
  expect(undocumentedCodes(codes, section('Error codes'))).toEqual([])
})

test('the checks can fail: a variable or a code the tables leave out is reported', () => {
  const vars = [...variablesRead(), 'ORION_NOT_A_VARIABLE']
  expect(undocumentedVariables(vars, section('Configuration'))).toEqual(['ORION_NOT_A_VARIABLE'])
  const codes = [...errorCodes(), 'NOT_A_CODE']
  expect(undocumentedCodes(codes, section('Error codes'))).toEqual(['NOT_A_CODE'])
})

/** The figures of docs/MIGRATION.md's "Measured before and after" table that the README does not give. */
function figuresNotInReadme(migration, text = readme) {
  const start = migration.indexOf('## Measured before and after')
  const rows = migration
    .slice(start)
    .split('\n')
    .filter((l) => l.startsWith('|'))
    .slice(2) // the header and its rule
  const figures = rows.flatMap(
    (r) =>
      r
        .split('|')
        .slice(2)
        .join('|')
        .match(/\d[\d.]*\s?(?:MiB|ms|texts\/s|tokens\/s|%|×)/g) || [],
  )
  expect(figures.length).toBeGreaterThan(0)
  const bare = (f) => f.replace(/\s?(?:MiB|ms|texts\/s|tokens\/s|%|×)$/, '')
  return figures.filter((f) => !text.includes(bare(f)))
}

test("docs/MIGRATION.md's measurements are the README's", () => {
  const migration = fs.readFileSync(path.join(root, 'docs', 'MIGRATION.md'), 'utf8')
  expect(figuresNotInReadme(migration)).toEqual([])
  // It can fail: a figure the README does not have is reported.
  const edited = migration.replace('| 6254 ms ', '| 6255.5 ms ')
  expect(edited).not.toBe(migration)
  expect(figuresNotInReadme(edited)).toEqual(['6255.5 ms'])
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

/** The codes of the `OrionErrorCode` union in `dts`. */
function typedCodes(dts) {
  const union = /export type OrionErrorCode =([\s\S]*?)\n\n/.exec(dts)
  expect(union).not.toBeNull()
  return [...union[1].matchAll(/'([A-Z_]+)'/g)].map((m) => m[1]).sort()
}

test('the OrionErrorCode type lists every error code, in the header and the generated index.d.ts', () => {
  const codes = errorCodes().sort()
  for (const file of [path.join(root, 'src', 'js', 'types.d.ts'), path.join(root, 'index.d.ts')]) {
    expect(typedCodes(fs.readFileSync(file, 'utf8'))).toEqual(codes)
  }
  // It can fail: a union missing a code differs.
  const header = fs.readFileSync(path.join(root, 'src', 'js', 'types.d.ts'), 'utf8')
  expect(typedCodes(header.replace("  | 'REMOTE_PROTOCOL'\n", ''))).not.toEqual(codes)
})
