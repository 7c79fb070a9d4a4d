#!/usr/bin/env node
'use strict'
// The floors of src/ (docs/ARCHITECTURE.md), checked from the source: every `crate::`,
// `super::` and `use` path is resolved to the file that defines the module, and
//   - no file imports a file of a higher floor,
//   - the import graph between files has no circle (test modules aside: a file's tests
//     may use a neighbour that itself uses the file, e.g. the GGUF fuzz test generating),
//   - only src/js/ imports runtime.rs,
//   - only src/llama/ names llama_cpp_2, only src/onnx/ (and runtime.rs's nothing) names ort.
//
//   node scripts/layers.js [--graph]    exit 1 and the reasons when a rule is broken
const fs = require('node:fs')
const path = require('node:path')

const SRC_DIR = path.join(__dirname, '..', 'src')
let SRC = SRC_DIR

// Floors, lowest first: a file's floor is that of the longest prefix of its module path.
const FLOORS = [
  ['ground', ['chat', 'error', 'paths', 'sysmem', 'config', 'settings', 'lifecycle', 'net', 'store', 'engine']],
  ['engines', ['llama', 'onnx', 'remote']],
  ['services', ['embedding', 'llm', 'monitor']],
  ['runtime', ['runtime']],
  ['face', ['js', 'options']],
]
// Names only one place may use.
const OWNERS = [
  { name: 'llama_cpp_2', pattern: /\bllama_cpp_2\b/, allowed: ['llama'] },
  { name: 'llama_cpp_sys_2', pattern: /\bllama_cpp_sys_2\b/, allowed: ['llama'] },
  { name: 'ort', pattern: /\bort::/, allowed: ['onnx'] },
]

function files(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = path.join(dir, d.name)
    return d.isDirectory() ? files(p) : d.name.endsWith('.rs') ? [p] : []
  })
}

/** `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; `src/lib.rs` is the crate root. */
function modulePath(file) {
  const parts = path.relative(SRC, file).replace(/\.rs$/, '').split(path.sep)
  if (parts.at(-1) === 'mod' || parts.at(-1) === 'lib') parts.pop()
  return parts
}

/** The source without comments, string and char literals (so prose never counts as an import). */
function code(text) {
  let out = ''
  let i = 0
  const ident = (c) => /[A-Za-z0-9_]/.test(c || '')
  while (i < text.length) {
    const c = text[i]
    if (c === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n') i++
    } else if (c === '/' && text[i + 1] === '*') {
      let depth = 1
      i += 2
      while (i < text.length && depth > 0) {
        if (text[i] === '/' && text[i + 1] === '*') (depth++, (i += 2))
        else if (text[i] === '*' && text[i + 1] === '/') (depth--, (i += 2))
        else i++
      }
    } else if (
      (c === 'r' || (c === 'b' && text[i + 1] === 'r')) &&
      !ident(text[i - 1]) &&
      /^b?r#*"/.test(text.slice(i, i + 40))
    ) {
      const m = /^b?r(#*)"/.exec(text.slice(i))
      const end = text.indexOf(`"${m[1]}`, i + m[0].length)
      i = end < 0 ? text.length : end + 1 + m[1].length
      out += '""'
    } else if (c === '"') {
      i++
      while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1
      i++
      out += '""'
    } else if (c === "'" && /^'(?:\\.[^']*|[^\\'])'/.test(text.slice(i, i + 12))) {
      i += /^'(?:\\.[^']*|[^\\'])'/.exec(text.slice(i, i + 12))[0].length
      out += "' '"
    } else {
      out += c
      i++
    }
  }
  return out
}

/** `text` without its `#[cfg(test)] mod ... { }` blocks. */
function withoutTests(text) {
  let out = text
  for (;;) {
    const m = /#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([a-z]+\))?\s+)?mod\s+\w+\s*\{/.exec(out)
    if (!m) return out
    let depth = 1
    let i = m.index + m[0].length
    for (; i < out.length && depth > 0; i++) depth += out[i] === '{' ? 1 : out[i] === '}' ? -1 : 0
    out = out.slice(0, m.index) + out.slice(i)
  }
}

function floorOf(mod) {
  for (let i = 0; i < FLOORS.length; i++) if (FLOORS[i][1].includes(mod[0])) return i
  return -1
}

function analyse(tests = true) {
  const sources = new Map(
    files(SRC).map((f) => {
      const text = code(fs.readFileSync(f, 'utf8'))
      return [modulePath(f).join('::'), { file: f, text: tests ? text : withoutTests(text) }]
    }),
  )
  const resolve = (parts) => {
    for (let i = parts.length; i > 0; i--) {
      const key = parts.slice(0, i).join('::')
      if (sources.has(key)) return key
    }
    return null
  }
  const edges = new Map()
  for (const [me, { text }] of sources) {
    const mine = me ? me.split('::') : []
    const out = new Set()
    const add = (target) => {
      // A module's own children and ancestors are its parts, not imports.
      if (target === null || target === me || target === '') return
      const t = target.split('::')
      if (t.length < mine.length && mine.slice(0, t.length).join('::') === target) return
      out.add(target)
    }
    // Paths with braces (`use crate::{a::B, c}`) are flattened first.
    const flat = text.replace(
      /((?:crate|super|self)(?:::[A-Za-z_0-9]+)*)::\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}/g,
      (_, base, inner) =>
        inner
          .split(',')
          .map((s) => `${base}::${s.trim().replace(/\{.*$/s, '')}`)
          .join(' '),
    )
    for (const m of flat.matchAll(/\bcrate((?:::[a-z_0-9]+)+)/g)) add(resolve(m[1].slice(2).split('::')))
    for (const m of flat.matchAll(/\b((?:super::)+)([a-z_0-9]+(?:::[a-z_0-9]+)*)/g)) {
      const up = m[1].split('super').length - 1
      const base = sources.get(me).file.endsWith(`${path.sep}mod.rs`)
        ? mine.slice(0, mine.length - up)
        : mine.slice(0, mine.length - up)
      add(resolve([...base, ...m[2].split('::')]))
    }
    edges.set(me, out)
  }
  return { sources, edges }
}

/** Strongly connected components with more than one file (Tarjan). */
function circles(edges) {
  let index = 0
  const idx = new Map()
  const low = new Map()
  const stack = []
  const on = new Set()
  const out = []
  const visit = (v) => {
    idx.set(v, index)
    low.set(v, index++)
    stack.push(v)
    on.add(v)
    for (const w of edges.get(v) || []) {
      if (!idx.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v), low.get(w)))
      } else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)))
    }
    if (low.get(v) === idx.get(v)) {
      const scc = []
      let w
      do {
        w = stack.pop()
        on.delete(w)
        scc.push(w)
      } while (w !== v)
      if (scc.length > 1) out.push(scc.sort())
    }
  }
  for (const v of edges.keys()) if (!idx.has(v)) visit(v)
  return out
}

/** The problems of the tree under `src` (the package's own by default). */
function check(src = SRC_DIR) {
  SRC = src
  const { sources, edges } = analyse()
  const problems = []
  for (const [me, out] of edges) {
    if (me === '') continue
    const mine = floorOf(me.split('::'))
    if (mine < 0) problems.push(`src/${me.replace(/::/g, '/')}: on no floor (add it to scripts/layers.js's FLOORS)`)
    for (const target of out) {
      const theirs = floorOf(target.split('::'))
      if (theirs > mine)
        problems.push(`${me} (${FLOORS[mine][0]}) imports ${target} (${FLOORS[theirs][0]}): an upward import`)
      if (target.split('::')[0] === 'runtime' && me.split('::')[0] !== 'js')
        problems.push(`${me} imports runtime: only js/ may`)
    }
  }
  for (const scc of circles(analyse(false).edges)) problems.push(`a circle of imports: ${scc.join(', ')}`)
  for (const { name, pattern, allowed } of OWNERS) {
    for (const [me, { text }] of sources) {
      if (me && !allowed.includes(me.split('::')[0]) && pattern.test(text))
        problems.push(`${me} names ${name}: only ${allowed.join(', ')}/ may`)
    }
  }
  return { edges, problems }
}

module.exports = { check, FLOORS }

if (require.main === module) {
  const { edges, problems } = check()
  if (process.argv.includes('--graph')) {
    for (const [me, out] of [...edges].sort())
      if (out.size) console.log(`${me || '(crate)'} -> ${[...out].sort().join(', ')}`)
  }
  for (const p of problems) console.error(p)
  console.error(
    `${edges.size} files, ${[...edges.values()].reduce((a, s) => a + s.size, 0)} imports, ${problems.length} problems`,
  )
  process.exitCode = problems.length ? 1 : 0
}
