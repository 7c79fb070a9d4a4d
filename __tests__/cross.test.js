'use strict'
// The Windows x64 and Linux arm64 packages, packed here and run as users get them: node.exe
// under Wine and an arm64 node under qemu, from an app where npm installed the tarballs for
// that platform (scripts/cross-smoke.js). Where Wine, qemu or a cross toolchain is missing
// the platform's tests are skipped, and the test command says so before jest starts.
const fs = require('node:fs')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const { smoke, missing, missingGpu } = require('../scripts/cross-smoke')
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
      // Each also has its Vulkan package, where the module can be built here (with
      // MinGW-w64 or the aarch64 GCC, glslc and the Vulkan headers).
      const vulkan = !require('../scripts/ggml-backends').missing(platform)
      const gpu = vulkan ? [`orion-native-${platform}-vulkan`] : []
      expect(r.installed.sort()).toEqual(['orion-native', `orion-native-${platform}`, ...gpu].sort())
      const dir = path.join(r.app, 'node_modules', `orion-native-${platform}`)
      const files = fs.readdirSync(dir)
      expect(files).toContain(`orion-native.${platform}.node`)
      expect(files).toContain(platform === 'win32-x64' ? 'onnxruntime.dll' : 'libonnxruntime.so.1')
      if (platform === 'win32-x64') {
        // llama.cpp as DLLs, with ggml's CPU backend built for each x86-64 level.
        expect(files).toEqual(expect.arrayContaining(['ggml.dll', 'ggml-base.dll', 'ggml-cpu-x64.dll']))
        expect(files.filter((f) => /^ggml-cpu-.*\.dll$/.test(f)).length).toBeGreaterThanOrEqual(10)
      } else {
        // llama.cpp as shared libraries, with ggml's CPU backend built for each Arm level
        // (the two Armv9.2 ones left out: scripts/cmake/linux-arm64.cmake).
        expect(files).toEqual(expect.arrayContaining(['libllama.so.0', 'libggml.so.0', 'libggml-base.so.0']))
        expect(files.filter((f) => /^libggml-cpu-.*\.so$/.test(f)).sort()).toEqual(
          ['armv8.0_1', 'armv8.2_1', 'armv8.2_2', 'armv8.2_3', 'armv8.6_1', 'armv8.6_2'].map(
            (v) => `libggml-cpu-${v}.so`,
          ),
        )
      }
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
        // Each DLL beside it, and the Vulkan module, imports only the package's own DLLs,
        // the Vulkan loader every GPU driver installs, and DLLs of Windows itself (those
        // Wine's system32 holds, and API sets, which Windows' loader maps to them): no
        // MinGW runtime.
        const dir = path.dirname(addon)
        const own = fs.readdirSync(dir).filter((f) => f.endsWith('.dll'))
        const system32 = path.join(require('../lib/paths').cacheDir(), 'wine', 'drive_c', 'windows', 'system32')
        const windows = new Set(fs.readdirSync(system32).map((f) => f.toLowerCase()))
        const vulkan = path.join(r.app, 'node_modules', `orion-native-${platform}-vulkan`, 'ggml-vulkan.dll')
        for (const f of [...own.map((f) => path.join(dir, f)), ...(fs.existsSync(vulkan) ? [vulkan] : [])]) {
          const d = execFileSync('x86_64-w64-mingw32-objdump', ['-p', f], { encoding: 'utf8', maxBuffer: 1 << 28 })
          const imports = [...d.matchAll(/DLL Name: (\S+)/g)].map((m) => m[1])
          expect(imports.length).toBeGreaterThan(0)
          const foreign = imports.filter(
            (i) => !own.includes(i) && !/^(vulkan-1|api-ms-win-[\w-]+)\.dll$/i.test(i) && !windows.has(i.toLowerCase()),
          )
          expect({ file: path.basename(f), foreign }).toEqual({ file: path.basename(f), foreign: [] })
        }
      } else {
        // The addon and each library beside it: built for arm64, needing only the
        // system's C and C++ runtimes and the package's own llama.cpp libraries (ONNX
        // Runtime is loaded at run time, not linked), found beside the addon ($ORIGIN).
        // The Vulkan module also needs the Vulkan loader every driver installs.
        const dir = path.dirname(addon)
        const own = fs.readdirSync(dir).filter((f) => /\.(node|so)(\.\d+)?$/.test(f))
        const vulkan = path.join(r.app, 'node_modules', `orion-native-${platform}-vulkan`, 'libggml-vulkan.so')
        const needed = {}
        for (const file of [...own.map((f) => path.join(dir, f)), ...(fs.existsSync(vulkan) ? [vulkan] : [])]) {
          const f = path.basename(file)
          const dump = execFileSync('aarch64-linux-gnu-readelf', ['-h', '-d', file], { encoding: 'utf8' })
          expect([f, /Machine:\s+AArch64/.test(dump)]).toEqual([f, true])
          const libs = [...dump.matchAll(/\(NEEDED\)\s+Shared library: \[(\S+)\]/g)].map((m) => m[1])
          const foreign = libs.filter(
            (n) =>
              !own.includes(n) &&
              !(file === vulkan && n === 'libvulkan.so.1') &&
              !/^(libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+|libgomp|ld-linux-aarch64)\.so/.test(n),
          )
          if (foreign.length) needed[f] = foreign
          // No build directory nor the working directory in the module's search path.
          if (file === vulkan) expect(dump).not.toMatch(/\((RPATH|RUNPATH)\)/)
          if (f === path.basename(addon)) {
            expect(libs).toContain('libllama.so.0')
            expect(dump).toMatch(/\(RPATH\)\s+Library rpath: \[\$ORIGIN\]/)
          }
        }
        expect(needed).toEqual({})
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

    // ggml's CPU backend per Arm level, on CPUs qemu-user emulates (QEMU_CPU): each loads
    // the best level its CPU has, and every level answers as the others do.
    ;(platform === 'linux-arm64-gnu' ? test : test.skip)(
      "llama.cpp's CPU backend: the best level for each emulated CPU (max, Neoverse N1, Cortex-A53) loads and answers",
      () => {
        expect(r.cpus.error).toBeUndefined()
        const runs = r.cpus
        const line = (cpu) =>
          `${cpu} (${runs[cpu].seconds.toFixed(1)} s): ${runs[cpu].result.llamaCpuFeatures.join(' ')}`
        console.log(`linux-arm64 under qemu: ${Object.keys(runs).map(line).join('; ')}`)
        // ggml's feature name for each feature Linux lists for an Arm CPU that picks a level.
        const HWCAPS = { asimddp: 'DOTPROD', asimdhp: 'FP16_VA', sve: 'SVE', i8mm: 'MATMUL_INT8' }
        for (const [cpu, { result }] of Object.entries(runs)) {
          const used = new Set(result.llamaCpuFeatures)
          expect([cpu, used.has('NEON')]).toEqual([cpu, true])
          // The levels nest (ggml's Arm variants add dot products, then half-precision
          // arithmetic, SVE, int8 matrix products): what the build uses, the CPU has, and
          // what the CPU has, the build uses.
          for (const [hwcap, feature] of Object.entries(HWCAPS))
            expect([cpu, feature, used.has(feature)]).toEqual([cpu, feature, result.cpuinfo.includes(hwcap)])
          expect(result.gpu).toBeUndefined()
        }
        // The three CPUs are three levels, each the highest its CPU runs (by the process's
        // memory map: ggml lists no SVE2 feature to tell Armv8.6's two levels apart).
        expect(runs.max.result.cpuModule).toEqual(['libggml-cpu-armv8.6_2.so'])
        expect(runs['neoverse-n1'].result.cpuModule).toEqual(['libggml-cpu-armv8.2_2.so'])
        expect(runs['cortex-a53'].result.cpuModule).toEqual(['libggml-cpu-armv8.0_1.so'])
        expect(runs['cortex-a53'].result.llamaCpuFeatures).not.toContain('DOTPROD')
        expect(runs['neoverse-n1'].result.llamaCpuFeatures).toEqual(expect.arrayContaining(['DOTPROD', 'FP16_VA']))
        expect(runs['neoverse-n1'].result.llamaCpuFeatures).not.toContain('SVE')
        expect(runs.max.result.llamaCpuFeatures).toEqual(expect.arrayContaining(['SVE', 'MATMUL_INT8']))
        // The measure of agreement, as for a GPU: the first 5 greedy tokens of a short
        // answer are the same on every level (their int8 and fp16 products round
        // differently: scripts/cross-smoke.js), and each says Paris.
        const first = runs.max.result.pieces.slice(0, 5)
        expect(first.length).toBe(5)
        for (const { result } of Object.values(runs)) expect(result.pieces.join('')).toMatch(/Paris/)
        for (const cpu of ['neoverse-n1', 'cortex-a53'])
          expect([cpu, runs[cpu].result.pieces.slice(0, 5)]).toEqual([cpu, first])
      },
    )

    // Windows: a lower x86-64 level, forced as a CPU without the higher ones would see the
    // package (Wine runs this machine's CPU as it is): the DLLs above it are moved aside
    // (scripts/cross-smoke.js), and the addon loads the best one left, which answers as
    // the full package does.
    ;(platform === 'win32-x64' ? test : test.skip)(
      "llama.cpp's CPU backend on Windows: with the DLLs above AVX2, then above AVX, moved aside, the best one left loads and answers",
      () => {
        expect(r.cpus.error).toBeUndefined()
        const runs = r.cpus
        console.log(
          `win32-x64 under Wine, lower levels: ${['haswell', 'sandybridge']
            .map((l) => `${l} (${runs[l].seconds.toFixed(1)} s): ${runs[l].result.llamaCpuFeatures.join(' ')}`)
            .join('; ')}`,
        )
        // Each run moved aside what it had to, leaving the DLLs back in place after.
        expect(runs.haswell.aside).toEqual(expect.arrayContaining(['ggml-cpu-skylakex.dll', 'ggml-cpu-zen4.dll']))
        expect(runs.sandybridge.aside).toContain('ggml-cpu-haswell.dll')
        const dir = path.join(r.app, 'node_modules', 'orion-native-win32-x64')
        expect(fs.readdirSync(dir).filter((f) => /^ggml-cpu-.*\.dll$/.test(f))).toEqual(runs.modules)
        // Haswell's level: AVX2 with FMA and F16C, no AVX-512.
        const h = runs.haswell.result.llamaCpuFeatures
        expect(h).toEqual(expect.arrayContaining(['AVX', 'AVX2', 'FMA', 'F16C']))
        expect(h.filter((f) => /^AVX512|^AMX/.test(f))).toEqual([])
        // Sandy Bridge's: AVX without AVX2, FMA or F16C.
        const s = runs.sandybridge.result.llamaCpuFeatures
        expect(s).toContain('AVX')
        expect(s.filter((f) => ['AVX2', 'FMA', 'F16C'].includes(f) || /^AVX512/.test(f))).toEqual([])
        for (const l of ['haswell', 'sandybridge']) {
          expect([l, runs[l].result.gpu]).toEqual([l, undefined])
          expect([l, runs[l].result.pieces.join('')]).toEqual([l, expect.stringMatching(/Paris/)])
        }
      },
    )

    // Linux arm64's Vulkan package under qemu-user, which has no GPU: the app runs on the
    // CPU and says why the module is not used; the module's check (as its child process
    // runs it, scripts/cross-smoke.js) finds no Vulkan loader, then, with Debian's arm64
    // loader, no driver: a reason each time, never a crash. With Debian's arm64 lavapipe
    // (a Vulkan device on the emulated CPU), the check starts the device and its self-test
    // agrees with the CPU backend.
    const arm64Vulkan = platform === 'linux-arm64-gnu' ? require('../scripts/ggml-backends').missing(platform) : null
    ;(platform === 'linux-arm64-gnu' && !arm64Vulkan ? test : test.skip)(
      `Vulkan on Linux arm64 without a GPU: the module is checked, auto runs on the CPU and says why; by name GPU_UNAVAILABLE; on lavapipe its self-test passes${arm64Vulkan ? ` (skipped: ${arm64Vulkan})` : ''}`,
      () => {
        expect(r.gpu.error).toBeUndefined()
        expect(r.gpu.skipped).toBeUndefined()
        const a = r.gpu.auto.result
        const noLoader = r.gpu.checkNoLoader.result
        const noDriver = r.gpu.checkNoDriver.result
        console.log(
          `linux-arm64 Vulkan under qemu: auto: ${a.gpuModules[0].reason}; the check without a loader: ` +
            `${noLoader.reason}; with the loader and no driver: ${noDriver.reason}`,
        )
        // The installed package's module is found and its check started. This machine
        // cannot run the check's child, an arm64 executable: under qemu-user the exec
        // fails in a forked child (qemu runs vfork as fork, so the failure comes back as
        // the child's exit status 127, not as an error from spawn); where binfmt_misc
        // hands arm64 programs to qemu, the child runs and finds no Vulkan loader. Either
        // way a reason, and the app runs on the CPU.
        expect(a.gpuModules).toEqual([
          {
            path: r.gpu.module,
            loaded: false,
            reason: expect.stringMatching(
              /^not loaded: (could not start .* to check it \(.*os error 8\)|its check failed \(exit status: 127\)|the module does not load: libvulkan\.so\.1: cannot open shared object file)/,
            ),
          },
        ])
        expect(a.gpus).toEqual([])
        expect(a.gpu).toBeUndefined()
        expect(a.pieces.join('')).toMatch(/Paris/)
        expect(r.gpu.named.status).toBe(1)
        expect(r.gpu.named.stderr).toMatch(/^GPU_UNAVAILABLE /m)
        // The check itself: the module is AArch64 code that needs the Vulkan loader...
        expect(noLoader).toEqual(
          expect.objectContaining({
            loaded: false,
            reason:
              'the module does not load: libvulkan.so.1: cannot open shared object file: No such file or directory',
          }),
        )
        // ...and with the loader it loads against the package's ggml (its undefined
        // symbols resolved), finds no driver and says so.
        expect(noDriver).toEqual(
          expect.objectContaining({
            loaded: false,
            devices: [],
            reason:
              'ggml could not register it as a backend: its ggml_backend_init returned no backend; ' +
              "the Vulkan loader finds no device: no Vulkan driver is installed, or none sees a GPU (install the GPU's Vulkan driver, its vendor's or Mesa's)",
          }),
        )
        // On a device: lavapipe compiles the self-test's shaders to AArch64 (LLVM), and the
        // matrix product they compute equals the arm64 CPU backend's.
        const lvp = r.gpu.checkLavapipe
        if (lvp.skipped) {
          console.log(`skipped: the arm64 Vulkan module's self-test on lavapipe (${lvp.skipped})`)
          return
        }
        const d = lvp.result.devices[0]
        console.log(
          `linux-arm64 Vulkan on lavapipe under qemu (${lvp.seconds.toFixed(1)} s): ${d?.description}; ` +
            `self-test ${d?.self_test_ms?.toFixed(0)} ms, largest relative difference ${d?.self_test_error}` +
            `${d?.failed ? `; failed: ${d.failed}` : ''}`,
        )
        expect(lvp.result).toEqual(
          expect.objectContaining({
            loaded: true,
            backend: 'Vulkan',
            reason: null,
            devices: [
              expect.objectContaining({
                name: 'Vulkan0',
                description: expect.stringMatching(/^llvmpipe/),
                kind: 'cpu',
                failed: null,
              }),
            ],
          }),
        )
        expect(d.self_test_error).toBeLessThan(1e-3)
      },
    )

    // Windows' Vulkan package on a real Vulkan device: Mesa's lavapipe through Wine's
    // Vulkan (winevulkan over this machine's loader), under an X server of its own.
    const gpuWhy = platform === 'win32-x64' ? missingGpu(platform) : 'Windows only'
    ;(platform === 'win32-x64' && !gpuWhy ? test : test.skip)(
      `Vulkan: the module passes its check, gpu: 'vulkan' puts every layer on lavapipe and answers as the CPU does; auto leaves it alone${gpuWhy ? ` (skipped: ${gpuWhy})` : ''}`,
      () => {
        expect(r.gpu.error).toBeUndefined()
        expect(r.gpu.skipped).toBeUndefined()
        const { vulkan, auto } = r.gpu
        const v = vulkan.result
        const a = auto.result
        console.log(
          `win32-x64 on lavapipe under Wine: ${v.gpu && v.gpu.reason}; ${vulkan.seconds.toFixed(1)} s ` +
            `(auto, on the CPU: ${auto.seconds.toFixed(1)} s); llama.cpp's CPU backend: ${v.llamaCpuFeatures.join(' ')}`,
        )
        expect(v.platform).toBe('win32-x64')
        const module_ = path.join(r.app, 'node_modules', `orion-native-${platform}-vulkan`, 'ggml-vulkan.dll')
        // The installed package's module, as Windows' node names it (Z: is Wine's view of /).
        expect(v.gpuModules).toEqual([
          {
            path: expect.stringMatching(/^Z:.*José.*[\\/]orion-native-win32-x64-vulkan[\\/]ggml-vulkan\.dll$/),
            backend: 'Vulkan',
            loaded: true,
          },
        ])
        expect(fs.existsSync(module_)).toBe(true)
        expect(v.gpus).toEqual([
          expect.objectContaining({ backend: 'Vulkan', kind: 'cpu', name: expect.stringMatching(/llvmpipe/) }),
        ])
        expect(v.gpus[0].failed).toBeUndefined()
        // Every layer and the output on the device, as on Linux.
        expect(v.gpu).toEqual(
          expect.objectContaining({
            backend: 'Vulkan',
            gpuLayers: 31,
            layers: 30,
            device: expect.stringMatching(/^Vulkan0/),
          }),
        )
        // Loaded, what the fit planned is held there (the weights and one context's KV
        // cache), and the context kept after the answer takes that room.
        expect(v.loaded).toEqual([expect.objectContaining({ backend: 'Vulkan', modelsBytes: v.gpu.deviceBytes })])
        expect(v.kept).toEqual(v.loaded.map((d) => expect.objectContaining({ modelsBytes: d.modelsBytes })))
        // Device memory back after unload.
        expect(v.after[0].modelsBytes).toBe(0)
        // auto: the CPU-type device is not chosen, and says why; the model runs on the CPU.
        expect(a.device).toBeUndefined()
        expect(a.gpu).toBeUndefined()
        expect(a.gpus[0].notChosen).toMatch(/^a CPU-type device/)
        // The measure of agreement, as on Linux (vulkan.test.js): the first 5 greedy
        // tokens are the CPU's (lavapipe's fp16 arithmetic may pick another word later).
        expect(v.pieces.slice(0, 5)).toEqual(a.pieces.slice(0, 5))
        expect(v.pieces.length).toBeGreaterThanOrEqual(5)
        // The CPU backend loaded for this CPU: the same level as the Linux build picks here
        // (without OpenMP: on Windows ggml runs its own thread pool; without AMX: the
        // MinGW build of that level has none, see scripts/cmake/mingw.cmake).
        const host = require('../index.js').getOptimizationStrategy().llamaCpuFeatures
        expect(v.llamaCpuFeatures).toEqual(host.filter((f) => f !== 'OPENMP' && !/^AMX/.test(f)))
        expect(v.llamaCpuFeatures).toContain('AVX2')
      },
    )

    // A driver that crashes, on Windows: the check's child dies, the app runs on the CPU
    // and says why, by Windows' exit code (not a signal); asked for by name,
    // GPU_UNAVAILABLE with the same reason. On Windows a driver's null write is an access
    // violation; under Wine the driver is this machine's, called through winevulkan, which
    // turns the fault into a failed call and then aborts on its own assertion (MinGW's
    // abort() exits with 3), and the check's reason quotes that last line of stderr.
    ;(platform === 'win32-x64' && !gpuWhy ? test : test.skip)(
      `Vulkan with a driver that crashes: the check dies in its child, auto runs on the CPU and says why; by name GPU_UNAVAILABLE${gpuWhy ? ` (skipped: ${gpuWhy})` : ''}`,
      () => {
        expect(r.gpu.error).toBeUndefined()
        const b = r.gpu.broken.result
        console.log(`win32-x64, a crashing driver: ${b.gpuModules[0].reason}`)
        expect(b.gpuModules).toEqual([
          {
            path: expect.stringMatching(/[\\/]orion-native-win32-x64-vulkan[\\/]ggml-vulkan\.dll$/),
            backend: undefined,
            loaded: false,
            reason: expect.stringMatching(
              /^not loaded: it crashed while being checked \((access violation, 0xC0000005|abort, 0x3)\), a broken or incompatible driver/,
            ),
          },
        ])
        expect(b.gpus).toEqual([])
        expect(b.gpu).toBeUndefined()
        expect(b.pieces.slice(0, 5)).toEqual(r.gpu.auto.result.pieces.slice(0, 5))
        expect(r.gpu.brokenNamed.status).toBe(1)
        expect(r.gpu.brokenNamed.stderr).toMatch(/^GPU_UNAVAILABLE /m)
        expect(r.gpu.brokenNamed.stderr).toContain(
          `is not loaded: ${b.gpuModules[0].reason.replace(/^not loaded: /, '').replace(/:.*$/s, '')}`,
        )
      },
    )
  })
}
