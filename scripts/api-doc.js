#!/usr/bin/env node
'use strict'
// The API reference, docs/API.md, generated from index.d.ts (which napi build generates from
// the #[napi] items and src/js/types.d.ts), so that the reference cannot drift from what the
// addon exports. Also checks the README's hand-written API section against index.d.ts: every
// exported function and class is mentioned there, and every name the README's API headings
// use exists.
//
//   node scripts/api-doc.js           write docs/API.md
//   node scripts/api-doc.js --check   fail if docs/API.md is stale or the README disagrees
//
// Uses the TypeScript compiler's parser (a devDependency) rather than regular expressions:
// index.d.ts holds generics, function types and unions that a line-based reader would cut.

const fs = require('node:fs')
const path = require('node:path')
const ts = require('typescript')

const ROOT = path.join(__dirname, '..')
const DTS = path.join(ROOT, 'index.d.ts')
const OUT = path.join(ROOT, 'docs', 'API.md')
const README = path.join(ROOT, 'README.md')

// The loader's own export, not part of the library's API.
const INTERNAL = new Set(['__napiBindingTarget'])

function parse(file = DTS) {
  const text = fs.readFileSync(file, 'utf8')
  return ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS)
}

// The JSDoc text of a node, as markdown (JSDoc already is).
function doc(node) {
  return (node.jsDoc ?? [])
    .map((d) => (typeof d.comment === 'string' ? d.comment : (ts.getTextOfJSDocComment(d.comment) ?? '')))
    .filter(Boolean)
    .join('\n\n')
    .trim()
}

// A declaration's text without its JSDoc and without `export declare`.
function signature(node) {
  return node
    .getText()
    .replace(/^export\s+/, '')
    .replace(/^declare\s+/, '')
    .replace(/\s*\n\s*/g, ' ')
}

const nameOf = (node) => node.name?.getText() ?? ''

/** Every exported declaration of index.d.ts, grouped by kind. */
function collect(source = parse()) {
  const api = { functions: [], classes: [], constants: [], interfaces: [], types: [] }
  for (const node of source.statements) {
    const exported = node.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword)
    if (!exported) continue
    if (ts.isFunctionDeclaration(node)) {
      api.functions.push({ name: nameOf(node), doc: doc(node), signature: signature(node) })
    } else if (ts.isClassDeclaration(node)) {
      api.classes.push({
        name: nameOf(node),
        doc: doc(node),
        members: node.members.map((m) => ({
          name: nameOf(m),
          doc: doc(m),
          signature: m.getText().replace(/\s*\n\s*/g, ' '),
        })),
      })
    } else if (ts.isVariableStatement(node)) {
      for (const d of node.declarationList.declarations) {
        const name = d.name.getText()
        if (!INTERNAL.has(name)) api.constants.push({ name, doc: doc(node), signature: `const ${d.getText()}` })
      }
    } else if (ts.isInterfaceDeclaration(node)) {
      api.interfaces.push({
        name: nameOf(node),
        doc: doc(node),
        fields: node.members.map((m) => ({
          name: nameOf(m) + (m.questionToken ? '?' : ''),
          // A method's whole signature; a property's type.
          type: (ts.isPropertySignature(m) && m.type ? m.type : m).getText().replace(/\s*\n\s*/g, ' '),
          signature: m.getText().replace(/\s*\n\s*/g, ' '),
          doc: doc(m).replace(/\n+/g, ' '),
        })),
      })
    } else if (ts.isTypeAliasDeclaration(node)) {
      api.types.push({ name: nameOf(node), doc: doc(node), signature: signature(node) })
    }
  }
  // An interface that merges into a class (TokenStream's async iterator) documents that class.
  for (const c of api.classes) {
    const merged = api.interfaces.find((i) => i.name === c.name)
    if (!merged) continue
    api.interfaces.splice(api.interfaces.indexOf(merged), 1)
    if (merged.doc) c.doc = [c.doc, merged.doc].filter(Boolean).join('\n\n')
    c.members.push(...merged.fields.map((f) => ({ name: f.name, doc: f.doc, signature: f.signature })))
  }
  for (const list of Object.values(api)) list.sort((a, b) => a.name.localeCompare(b.name))
  return api
}

const code = (s) => '```ts\n' + s + '\n```'
// Inside a table cell: pipes would end the cell.
const cell = (s) => s.replace(/\|/g, '\\|')

function render(api) {
  const out = [
    '# API reference',
    '',
    '<!-- Generated from index.d.ts by scripts/api-doc.js (`node scripts/api-doc.js`); do not edit. -->',
    '',
    'Every export of `orion-native`, generated from its type declarations. The',
    "[README](../README.md#api) explains how the pieces fit together; error codes are in the README's",
    '[Error codes](../README.md#error-codes) table.',
    '',
    '## Functions',
    '',
  ]
  for (const f of api.functions) out.push(`### \`${f.name}\``, '', code(f.signature), '', ...(f.doc ? [f.doc, ''] : []))
  out.push('## Classes', '')
  for (const c of api.classes) {
    out.push(`### \`${c.name}\``, '', ...(c.doc ? [c.doc, ''] : []))
    for (const m of c.members) {
      out.push(`#### \`${c.name}.${m.name}\``, '', code(m.signature), '', ...(m.doc ? [m.doc, ''] : []))
    }
  }
  if (api.constants.length) {
    out.push('## Constants', '')
    for (const c of api.constants)
      out.push(`### \`${c.name}\``, '', code(c.signature), '', ...(c.doc ? [c.doc, ''] : []))
  }
  out.push('## Types', '')
  for (const t of api.types) out.push(`### \`${t.name}\``, '', code(t.signature), '', ...(t.doc ? [t.doc, ''] : []))
  for (const i of api.interfaces) {
    out.push(`### \`${i.name}\``, '', ...(i.doc ? [i.doc, ''] : []))
    out.push('| field | type | meaning |', '| --- | --- | --- |')
    for (const f of i.fields) out.push(`| \`${f.name}\` | \`${cell(f.type)}\` | ${cell(f.doc)} |`)
    out.push('')
  }
  return out.join('\n')
}

async function generate() {
  const prettier = require('prettier')
  const config = (await prettier.resolveConfig(OUT)) ?? {}
  return prettier.format(render(collect()), { ...config, parser: 'markdown' })
}

/** Disagreements between the README's API section and index.d.ts, as messages. */
function readmeProblems(api = collect(), readme = fs.readFileSync(README, 'utf8')) {
  const problems = []
  const start = readme.indexOf('\n## API\n')
  if (start < 0) return ['README.md has no "## API" section']
  const end = readme.indexOf('\n## ', start + 1)
  const section = readme.slice(start, end < 0 ? undefined : end)
  for (const { name } of [...api.functions, ...api.classes, ...api.constants]) {
    if (!new RegExp(`\\b${name}\\b`).test(section)) problems.push(`README's API section never mentions ${name}`)
  }
  // Names in the section's headings: `fn(...)`, `object.method(...)`, `object.property`.
  const known = new Set([
    ...api.functions.map((f) => f.name),
    ...api.constants.map((c) => c.name),
    ...api.classes.flatMap((c) => [c.name, ...c.members.map((m) => m.name)]),
    ...api.interfaces.flatMap((i) => [i.name, ...i.fields.map((f) => f.name.replace(/\?$/, ''))]),
  ])
  for (const heading of section.match(/^#{3,4} .*$/gm) ?? []) {
    for (const span of heading.match(/`[^`]+`/g) ?? []) {
      for (const [, name] of span.matchAll(/(?:^`|\.)([A-Za-z_$][\w$]*)(?=\(|`|\s|$)/g)) {
        if (!known.has(name))
          problems.push(`README heading ${JSON.stringify(heading)} names ${name}, which index.d.ts does not export`)
      }
    }
  }
  return problems
}

async function main() {
  const args = process.argv.slice(2)
  if (args.some((a) => a !== '--check')) {
    process.stderr.write('usage: node scripts/api-doc.js [--check]\n')
    process.exit(2)
  }
  const text = await generate()
  if (!args.includes('--check')) {
    fs.mkdirSync(path.dirname(OUT), { recursive: true })
    fs.writeFileSync(OUT, text)
    process.stdout.write(`wrote ${path.relative(process.cwd(), OUT)}\n`)
    return
  }
  const problems = readmeProblems()
  const current = fs.existsSync(OUT) ? fs.readFileSync(OUT, 'utf8') : ''
  if (current !== text) problems.unshift('docs/API.md is out of date with index.d.ts: run node scripts/api-doc.js')
  if (problems.length) {
    process.stderr.write(problems.map((p) => `api-doc: ${p}\n`).join(''))
    process.exit(1)
  }
}

module.exports = { collect, render, generate, readmeProblems, OUT, INTERNAL }

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(`${e.stack ?? e}\n`)
    process.exit(1)
  })
}
