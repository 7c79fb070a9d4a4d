'use strict'
// The packed matrix products compiled into llama.cpp's x86 CPU builds
// (scripts/cmake/sgemm-packed.h, issue 26), checked against a plain loop on shapes that end
// in every partial panel, token block and k block, with f32, f16, bf16 and q8_0 weights,
// split between 1 to 16 threads, and the vector row maximum and flash attention's mask rows
// (scripts/cmake/row-max.h, fa-mask.h) against ggml's loops:
// scripts/cmake/sgemm-packed-check.cpp, built with the
// flags of ggml's Haswell build (AVX2) and, where this CPU has it, of an AVX-512 one. The
// embedding tests check the same products end to end (the GGUF twins against the ONNX
// engine, and under qemu's Haswell in cpu-backends.test.js); these shapes are the edges
// that models' round sizes never reach.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { root } = require('./helpers')

const cxx = process.env.CXX || 'c++'
const linuxX64 = process.platform === 'linux' && process.arch === 'x64'
const flags = linuxX64 ? fs.readFileSync('/proc/cpuinfo', 'utf8') : ''
const has = (f) => new RegExp(`^flags\\s*:.*\\b${f}\\b`, 'm').test(flags)
const compiler = linuxX64 && spawnSync(cxx, ['--version']).status === 0
if (linuxX64 && !compiler) console.log(`skipped: no C++ compiler (${cxx}) to build the check`)

const BUILDS = [
  ['AVX2', ['-mavx2', '-mfma', '-mf16c'], has('avx2') && has('fma') && has('f16c'), 8],
  ['AVX-512', ['-mavx512f', '-mavx2', '-mfma', '-mf16c'], has('avx512f'), 16],
]

describe('packed matrix products (x86)', () => {
  let dir
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-sgemm-'))
  })
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

  for (const [name, isa, runs, floats] of BUILDS) {
    ;(compiler && runs ? test : test.skip)(
      `${name}: every output matches a plain loop, and nothing past the matrix is written`,
      () => {
        const exe = path.join(dir, name.replace(/\W/g, ''))
        const src = path.join(root, 'scripts/cmake/sgemm-packed-check.cpp')
        const build = spawnSync(cxx, ['-O2', '-std=c++17', ...isa, '-o', exe, src], { encoding: 'utf8' })
        expect({ status: build.status, stderr: build.stderr }).toEqual({ status: 0, stderr: '' })
        const r = spawnSync(exe, [], { encoding: 'utf8', timeout: 120_000 })
        const lines = r.stdout.trim().split('\n')
        expect(lines.filter((l) => !l.startsWith('ok '))).toEqual([
          expect.stringMatching(new RegExp(`^PASS: vectors of ${floats} floats`)),
        ])
        expect(r.status).toBe(0)
        // f32, f16 and bf16 on 11 shapes, q8_0 on the 5 whose rows are whole blocks, and the
        // weights packed at load (f32, f16, bf16) on 6; 4 thread counts each; the row
        // maximum; the mask rows.
        expect(lines.filter((l) => l.startsWith('ok ')).length).toBe((11 * 3 + 5) * 4 + 6 * 3 * 4 + 2)
      },
      180_000,
    )
  }
})
