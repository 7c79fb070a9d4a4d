'use strict'
// lib/binding.js lowers libgomp's spin count and makes its wait policy active (so that the
// spin count holds with more OpenMP threads than cores) before the addon (and with it
// libgomp) loads, unless the user chose a setting; both leave the environment once libgomp
// has read them. Checked in fresh processes and their children, by what libgomp itself
// read: it reads its settings once per process, when it is loaded.
const { spawnSync } = require('node:child_process')
const path = require('node:path')

const ROOT = path.join(__dirname, '..')

// libgomp's own reading of its settings: with OMP_DISPLAY_ENV=verbose it prints them to
// stderr when it loads.
function gomp(stderr) {
  const value = (name) => new RegExp(`^\\s*${name} = '([^']*)'`, 'm').exec(stderr)?.[1] ?? null
  return { spin: value('GOMP_SPINCOUNT'), policy: value('OMP_WAIT_POLICY') }
}

function loadIn(extraEnv) {
  const env = { ...process.env, ...extraEnv, OMP_DISPLAY_ENV: 'verbose' }
  for (const [k, v] of Object.entries(extraEnv)) if (v === undefined) delete env[k]
  const script = `
    require(${JSON.stringify(ROOT)})
    const { spawnSync } = require('node:child_process')
    const maps = require('node:fs').readFileSync('/proc/self/maps', 'utf8')
    // What a child process inherits, and what libgomp reads in a child that loads the addon too.
    const inherited = spawnSync(process.execPath, ['-p', 'JSON.stringify([process.env.GOMP_SPINCOUNT ?? null, process.env.OMP_WAIT_POLICY ?? null])'], { encoding: 'utf8' }).stdout.trim()
    const child = spawnSync(process.execPath, ['-e', 'require(${JSON.stringify(ROOT)})'], { encoding: 'utf8' }).stderr
    console.log(JSON.stringify({ spin: process.env.GOMP_SPINCOUNT ?? null, policy: process.env.OMP_WAIT_POLICY ?? null, inherited: JSON.parse(inherited), child, libgomp: /libgomp/.test(maps) }))`
  const r = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`node exited with ${r.status}: ${r.stderr}`)
  const out = JSON.parse(r.stdout.trim().split('\n').pop())
  return { ...out, gomp: gomp(r.stderr), childGomp: gomp(out.child) }
}

test('without a user setting, OpenMP threads spin 1,000 times before they sleep, however many', () => {
  const r = loadIn({ GOMP_SPINCOUNT: undefined, OMP_WAIT_POLICY: undefined })
  // The setting has a reader: the addon's llama.cpp is built with OpenMP.
  expect(r.libgomp).toBe(true)
  // What libgomp read when the addon loaded it.
  expect(r.gomp).toEqual({ spin: '1000', policy: 'ACTIVE' })
  // Both were taken out of the environment once libgomp had read them: child processes,
  // whose OpenMP may spin for ever with the policy, do not get them...
  expect([r.spin, r.policy]).toEqual([null, null])
  expect(r.inherited).toEqual([null, null])
  // ...and a child that loads the addon makes the same choice of its own. It once
  // inherited the spin count alone, took it for the user's, and left the policy passive.
  expect(r.childGomp).toEqual({ spin: '1000', policy: 'ACTIVE' })
})

test("the user's own OpenMP settings are kept", () => {
  const spin = loadIn({ GOMP_SPINCOUNT: '50000', OMP_WAIT_POLICY: undefined })
  expect(spin).toMatchObject({ spin: '50000', policy: null, inherited: ['50000', null] })
  expect(spin.gomp.spin).toBe('50000')
  expect(spin.childGomp.spin).toBe('50000')
  const policy = loadIn({ GOMP_SPINCOUNT: undefined, OMP_WAIT_POLICY: 'PASSIVE' })
  expect(policy).toMatchObject({ spin: null, policy: 'PASSIVE', inherited: [null, 'PASSIVE'] })
  expect(policy.gomp.policy).toBe('PASSIVE')
  expect(policy.childGomp.policy).toBe('PASSIVE')
})
