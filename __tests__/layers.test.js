'use strict'
// The floors of src/ (docs/ARCHITECTURE.md): no upward import, no circle, runtime.rs
// imported only by the binding layer, llama_cpp_2 and ort named only by their engines.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { check } = require('../scripts/layers')

test("the crate's modules keep to their floors", () => {
  const { edges, problems } = check()
  expect(problems).toEqual([])
  // The check saw the tree: the services use their engines, js uses runtime.
  expect(edges.get('llm')).toContain('llama::engine')
  expect(edges.get('js::lifecycle')).toContain('runtime')
  expect(edges.size).toBeGreaterThan(50)
})

test('the check finds an upward import, a circle, a stray llama_cpp_2 and runtime used below js', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-layers-'))
  const write = (file, text) => {
    fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true })
    fs.writeFileSync(path.join(dir, file), text)
  }
  write('lib.rs', 'pub(crate) mod error;\npub(crate) mod paths;\npub(crate) mod llm;\npub(crate) mod runtime;\n')
  // Ground reaching up into a service, through a `use` with braces.
  write('paths.rs', 'use crate::{error::Result, llm::registry::Registry};\n')
  // A circle between two ground files; the prose and strings below must not count.
  write('error.rs', '// crate::runtime is not used here\nconst S: &str = "crate::llm";\nuse crate::paths::x;\n')
  write(
    'llm/mod.rs',
    'pub(crate) mod registry;\nuse llama_cpp_2::model::LlamaModel;\nfn f() { crate::runtime::go() }\n',
  )
  write('llm/registry.rs', 'use super::super::error::Result;\n')
  write('runtime.rs', 'use crate::llm::registry;\n')
  try {
    const { problems } = check(dir)
    expect(problems).toEqual(
      expect.arrayContaining([
        'paths (ground) imports llm::registry (services): an upward import',
        // registry reaches error through super::super.
        'a circle of imports: error, llm::registry, paths',
        'llm imports runtime: only js/ may',
        'llm names llama_cpp_2: only llama/ may',
      ]),
    )
    expect(problems.join('\n')).not.toMatch(/error imports runtime|error \(ground\) imports llm/)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
