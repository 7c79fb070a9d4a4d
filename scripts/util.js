'use strict'
// Small helpers the build scripts share.
const { spawnSync } = require('node:child_process')

/** Runs `cmd`, its output on stderr (stdout stays the script's answer); throws on failure. */
function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', process.stderr, process.stderr], ...opts })
  if (r.error || r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.error?.message || r.status})`)
}

/** A Python with pip (`python3`, else `python`), or null. */
function python() {
  for (const p of ['python3', 'python']) {
    const r = spawnSync(p, ['-m', 'pip', '--version'], { stdio: 'ignore' })
    if (!r.error && r.status === 0) return p
  }
  return null
}

module.exports = { run, python }
