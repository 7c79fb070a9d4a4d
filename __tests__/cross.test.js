'use strict'
// The Windows x64 and Linux arm64 packages, packed here and run as users get them: node.exe
// under Wine and an arm64 node under qemu, from an app where npm installed the tarballs for
// that platform (scripts/cross-smoke.js). Where Wine, qemu or a cross toolchain is missing
// the platform's tests are skipped, and the test command says so before jest starts.
const fs = require('node:fs')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const { smoke, missing } = require('../scripts/cross-smoke')
const { target } = require('../scripts/targets')

const PLATFORMS = ['win32-x64', 'linux-arm64-gnu']

for (const platform of PLATFORMS) {
  const why = missing(platform)
  const suite = why ? describe.skip : describe
  suite(`${platform}${why ? ` (skipped: ${why})` : ''}`, () => {
    let r
    beforeAll(async () => {
      r = await smoke(platform)
      console.log(
        `${platform}: packed in ${r.pack.seconds.toFixed(0)} s; app.cjs ${r.cjs.seconds.toFixed(1)} s, ` +
          `app.mjs ${r.esm.seconds.toFixed(1)} s, status ${r.status.seconds.toFixed(1)} s; ` +
          `platform package ${(r.pack.platformPackage.size / 1e6).toFixed(1)} MB packed, ` +
          `${(r.pack.platformPackage.unpackedSize / 1e6).toFixed(1)} MB installed`,
      )
    }, 1_800_000)

    afterAll(() => {
      for (const d of r?.scratch || []) fs.rmSync(d, { recursive: true, force: true })
    })

    test('npm installs the main package and this platform package, which carries ONNX Runtime', () => {
      expect(r.installed.sort()).toEqual(['orion-native', `orion-native-${platform}`].sort())
      const dir = path.join(r.app, 'node_modules', `orion-native-${platform}`)
      const files = fs.readdirSync(dir)
      expect(files).toContain(`orion-native.${platform}.node`)
      expect(files).toContain(platform === 'win32-x64' ? 'onnxruntime.dll' : 'libonnxruntime.so.1')
      // Within npm's size limits by a wide margin (the registry refuses far larger packages).
      expect(r.pack.platformPackage.size).toBeLessThan(100e6)
    })

    test('the addon is built for the platform and links nothing the platform package lacks', () => {
      const addon = path.join(r.app, 'node_modules', `orion-native-${platform}`, `orion-native.${platform}.node`)
      if (platform === 'win32-x64') {
        const dump = execFileSync('x86_64-w64-mingw32-objdump', ['-p', addon], { encoding: 'utf8', maxBuffer: 1 << 28 })
        expect(dump).toMatch(/file format pei-x86-64/)
        const dlls = [...dump.matchAll(/DLL Name: (\S+)/g)].map((m) => m[1].toLowerCase())
        // Only Windows' own DLLs: no MinGW runtime (libstdc++, libgcc, winpthread, libgomp)
        // beside the addon, and no import of node.exe, so it loads in Electron too.
        for (const d of dlls) expect(d).not.toMatch(/^(libstdc\+\+|libgcc|libwinpthread|libgomp|node|libnode)/)
        expect(dlls).toContain('kernel32.dll')
      } else {
        const dump = execFileSync('aarch64-linux-gnu-readelf', ['-h', '-d', addon], { encoding: 'utf8' })
        expect(dump).toMatch(/Machine:\s+AArch64/)
        const needed = [...dump.matchAll(/\(NEEDED\)\s+Shared library: \[(\S+)\]/g)].map((m) => m[1])
        // The system's C and C++ runtimes only; ONNX Runtime is loaded at run time, not linked.
        for (const n of needed) expect(n).toMatch(/^(libc|libm|libgcc_s|libstdc\+\+|libgomp|ld-linux-aarch64)\.so/)
      }
      expect(target(platform).triple).toMatch(platform === 'win32-x64' ? /windows/ : /aarch64/)
    })

    test('CommonJS: 4 workers share one model load, the LLM answers, the monitor reports', () => {
      const out = r.cjs.result
      expect(out.node.split('.')[0]).toBe('22')
      expect(out.workers).toHaveLength(4)
      for (const w of out.workers) expect(w.dims).toEqual([384, 384])
      expect(out.modelLoads).toBe(1)
      expect(out.requests).toBeGreaterThanOrEqual(5)
      expect(out.llm.key).toBe('demo')
      expect(out.llm.progress.at(-1)).toBe(100)
      expect(out.llm.text).toMatch(/Paris/)
      expect(out.snapshot.pressure).toMatch(/^(low|medium|high|critical)$/)
      expect(out.snapshot.rss).toBeGreaterThan(0)
    })

    test('ES module: named and default exports', () => {
      expect(r.esm.result).toEqual({
        dims: 384,
        isArray: true,
        quantized: 'Mistral-7B-Instruct-v0.2-q4f16_1-MLC',
        q4: 'q4f16_1',
        sameDefault: true,
      })
    })

    // The floors of embedding.test.js, on this platform's kernels: arm64's int8 products
    // (NEON, and i8mm or dot-product instructions where the CPU has them) are not x64's.
    test('each precision stays within its documented accuracy of the reference', () => {
      const a = r.accuracy.result
      console.log(
        `${platform} (${a.arch}) on ${a.int8.cpuFeatures.join(' ') || 'no listed features'}: exact min cosine ` +
          `${a.exact.batched.toFixed(5)} batched, ${a.exact.single.toFixed(5)} single; int8 ` +
          `(${a.int8.int8Weights} weights) ${a.int8.batched.toFixed(5)} batched, ${a.int8.single.toFixed(5)} single`,
      )
      expect(a.arch).toBe(platform === 'win32-x64' ? 'x64' : 'arm64')
      expect(Math.min(a.exact.batched, a.exact.single)).toBeGreaterThanOrEqual(0.99999)
      expect(Math.min(a.int8.batched, a.int8.single)).toBeGreaterThanOrEqual(0.998)
    })

    test('orion-native status --json', () => {
      expect(r.status.status).toBe(0)
      expect(JSON.stringify(r.status.result)).toMatch(/pressure/)
    })
  })
}
