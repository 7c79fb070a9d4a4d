'use strict'
// A Vulkan driver (an ICD and its manifest) that crashes in its first call, which the
// Vulkan loader makes inside vkCreateInstance: a broken driver install, for the tests of
// the GPU check (__tests__/vulkan.test.js on Linux; scripts/cross-smoke.js under Wine,
// where winevulkan calls this machine's loader). Compiled with this machine's cc.
const fs = require('node:fs')
const path = require('node:path')
const { execFileSync } = require('node:child_process')

// How the driver dies: raising SIGSEGV itself, or writing through a null pointer (the
// fault Windows reports as an access violation; under Wine, winevulkan's own abort).
const CRASHES = {
  signal: '#include <signal.h>\nstatic void die(void) { raise(SIGSEGV); }\n',
  'null-write': 'static void die(void) { *(volatile int *)0 = 1; }\n',
}

/** Writes the driver into `dir`; the manifest's path, for VK_ICD_FILENAMES. */
function brokenIcd(dir, crash) {
  if (!CRASHES[crash]) throw new Error(`unknown crash ${crash}: ${Object.keys(CRASHES).join(' or ')}`)
  fs.mkdirSync(dir, { recursive: true })
  const source = path.join(dir, 'broken.c')
  const library = path.join(dir, 'libbroken.so')
  fs.writeFileSync(
    source,
    CRASHES[crash] +
      'int vk_icdNegotiateLoaderICDInterfaceVersion(unsigned *v) { die(); return 0; }\n' +
      'void *vk_icdGetInstanceProcAddr(void *i, const char *n) { die(); return 0; }\n',
  )
  execFileSync('cc', ['-shared', '-fPIC', '-o', library, source])
  const manifest = path.join(dir, 'broken.json')
  fs.writeFileSync(
    manifest,
    JSON.stringify({ file_format_version: '1.0.0', ICD: { library_path: library, api_version: '1.3.0' } }),
  )
  return manifest
}

module.exports = { brokenIcd }
