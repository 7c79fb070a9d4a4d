'use strict'
// The GPU check script (issue 25): on a machine with an NVIDIA GPU it builds the CUDA and
// Vulkan modules and compares generation with node-llama-cpp's prebuilt binaries; here,
// with no GPU, its CPU parts run and every GPU row says why it has no numbers.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { root } = require('./helpers')

test('npm run gpu-check runs its CPU parts and says why each GPU row is empty', () => {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'orion-gpu-check-')), 'check.json')
  const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'gpu-check.js'), '--tokens', '16', '--out', out], {
    cwd: root,
    encoding: 'utf8',
    timeout: 280_000,
    // No CUDA architectures given: the CUDA module would be built for them (half an hour).
    env: { ...process.env, ORION_GPU: undefined, GGML_BACKEND_PATH: undefined, ORION_CUDA_ARCHITECTURES: undefined },
  })
  expect({ status: r.status, stderr: r.status === 0 ? '' : r.stderr }).toEqual({ status: 0, stderr: '' })
  const table = r.stdout.trim().split('\n')
  expect(table[0]).toMatch(/^orion-native GPU check, .*; model .*\.gguf, 16 tokens greedy$/)
  expect(table[2]).toBe(
    '| backend | device | layers on device | answer | orion-native tok/s | node-llama-cpp tok/s | ratio | note |',
  )
  const row = (b) => table.find((l) => l.startsWith(`| ${b} |`))
  // The CPU: an answer and a speed of its own, node-llama-cpp's where bench/ has it.
  const cpu = row('CPU')
    .split('|')
    .map((c) => c.trim())
  expect(cpu[4]).toMatch(/Paris/)
  expect(Number(cpu[5])).toBeGreaterThan(1)
  const saved = JSON.parse(fs.readFileSync(out, 'utf8'))
  const nlc = saved.rows[0].nlc
  if (fs.existsSync(path.join(root, 'bench', 'node_modules', 'node-llama-cpp')))
    expect(nlc.tokensPerSecond).toBeGreaterThan(1)
  else expect(nlc).toEqual({ error: 'node-llama-cpp is not installed (cd bench && npm install)' })
  // No NVIDIA GPU here: the CUDA row says so; the Vulkan row has a reason too (lavapipe, the
  // only Vulkan device, is CPU-type and skipped, or the module cannot be built).
  expect(row('cuda')).toMatch(/no NVIDIA GPU \(nvidia-smi lists none\)/)
  expect(row('vulkan')).toMatch(/\| - \| - \| - \| - \| - \| - \| \S/)
  expect(saved.machine.nvidia).toEqual([])
}, 300_000)
