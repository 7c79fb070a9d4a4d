'use strict'
// lib/binding.js lowers libgomp's spin count and makes its wait policy active (so that the
// spin count holds with more OpenMP threads than cores) before the addon (and with it
// libgomp) loads, unless the user chose a setting; the policy leaves the environment once
// libgomp has read it. Checked in fresh processes: libgomp reads its settings
// once per process, when it is loaded.
const { spawnSync } = require('node:child_process')
const path = require('node:path')

const ROOT = path.join(__dirname, '..')

function loadIn(extraEnv) {
  const env = { ...process.env, ...extraEnv }
  for (const [k, v] of Object.entries(extraEnv)) if (v === undefined) delete env[k]
  const script = `
    require(${JSON.stringify(ROOT)})
    const maps = require('node:fs').readFileSync('/proc/self/maps', 'utf8')
    const child = require('node:child_process').execFileSync(process.execPath, ['-p', 'process.env.OMP_WAIT_POLICY ?? null'], { encoding: 'utf8' }).trim()
    console.log(JSON.stringify({ spin: process.env.GOMP_SPINCOUNT ?? null, policy: process.env.OMP_WAIT_POLICY ?? null, child, libgomp: /libgomp/.test(maps) }))`
  const r = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`node exited with ${r.status}: ${r.stderr}`)
  return JSON.parse(r.stdout.trim().split('\n').pop())
}

test('without a user setting, OpenMP threads spin 1,000 times before they sleep, however many', () => {
  const r = loadIn({ GOMP_SPINCOUNT: undefined, OMP_WAIT_POLICY: undefined })
  expect(r.spin).toBe('1000')
  // The active wait policy was set for libgomp to read when it loaded, then taken out of
  // the environment: child processes, whose OpenMP may spin for ever with it, do not get it.
  expect(r.policy).toBe(null)
  expect(r.child).toBe('null')
  // The setting has a reader: the addon's llama.cpp is built with OpenMP.
  expect(r.libgomp).toBe(true)
})

test("the user's own OpenMP settings are kept", () => {
  expect(loadIn({ GOMP_SPINCOUNT: '50000', OMP_WAIT_POLICY: undefined })).toMatchObject({ spin: '50000', policy: null })
  expect(loadIn({ GOMP_SPINCOUNT: undefined, OMP_WAIT_POLICY: 'PASSIVE' })).toMatchObject({
    spin: null,
    policy: 'PASSIVE',
  })
})
