#!/usr/bin/env node
'use strict'
// A CUDA toolkit from PyPI, for building ggml's CUDA module (scripts/ggml-backends.js) on a
// machine without NVIDIA's installer: CUDA 13's wheels carry nvcc, cicc, the headers and the
// runtime and cuBLAS libraries under one prefix (nvidia/cu13/, which nvcc.profile takes as its
// root), so unpacked together they are a toolkit nvcc and CMake use as NVIDIA's. CUDA 12's
// wheels have no nvcc (checked for 12.4 and 12.9). Pinned versions, downloaded with pip and
// unpacked under target/cuda-toolkit/<version>/ (about 1.3 GB unpacked, 0.6 GB downloaded,
// nothing installed on the machine). A module built with it needs CUDA 13's runtime
// libraries (libcudart.so.13, libcublas.so.13, libcublasLt.so.13, in lib/ here) and a driver
// for CUDA 13 (580 or newer) where it runs.
//
//   node scripts/cuda-toolkit.js           download and unpack if needed; print its root
//   node scripts/cuda-toolkit.js --check   print why it cannot be had here, or nothing
//
// Needs python3 with pip (PyPI) and the network, once, and a C compiler (cc).

const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { run, python } = require('./util')

const root = path.join(__dirname, '..')
const VERSION = '13.5.37'
// The wheels that make the toolkit: the compiler driver and its back ends, the compiler's
// own headers (crt), the runtime's headers and libraries, CUDA's C++ library headers (cccl)
// and cuBLAS, which ggml's CUDA backend links.
const WHEELS = [
  `nvidia-cuda-nvcc==${VERSION}`,
  `nvidia-nvvm==${VERSION}`,
  `nvidia-cuda-crt==${VERSION}`,
  `nvidia-cuda-runtime==${VERSION}`,
  'nvidia-cuda-cccl==13.3.5.0.6',
  'nvidia-cublas==13.10.0.20',
]
const PLATFORMS = { x64: 'manylinux2014_x86_64', arm64: 'manylinux2014_aarch64' }

function dir() {
  return path.join(root, 'target', 'cuda-toolkit', VERSION)
}

/** The toolkit's root (its bin/nvcc, include/, lib/), where it is unpacked, or null. */
function found() {
  const top = path.join(dir(), 'nvidia', 'cu13')
  return fs.existsSync(path.join(top, '.complete')) ? top : null
}

/** Why the toolkit cannot be had here, or null. */
function missing() {
  if (found()) return null
  if (process.platform !== 'linux' || !PLATFORMS[process.arch]) return "CUDA's PyPI toolkit is for Linux x64 and arm64"
  if (!python()) return 'python3 with pip is missing (Debian: apt-get install python3-pip)'
  // For the driver's stand-in (below).
  const cc = spawnSync('cc', ['--version'], { stdio: 'ignore' })
  if (cc.error || cc.status !== 0) return 'a C compiler (cc) is missing (Debian: apt-get install gcc)'
  return null
}

/** The toolkit's root, downloaded and unpacked first where it is not. */
function ensure() {
  const done = found()
  if (done) return done
  const why = missing()
  if (why) throw new Error(`cannot get CUDA's toolkit from PyPI: ${why}`)
  const py = python()
  const out = dir()
  const wheels = path.join(out, 'wheels')
  fs.rmSync(path.join(out, 'nvidia'), { recursive: true, force: true })
  fs.mkdirSync(wheels, { recursive: true })
  process.stderr.write(`Downloading CUDA ${VERSION}'s toolkit from PyPI (about 0.6 GB, once)\n`)
  run(py, [
    '-m',
    'pip',
    'download',
    '--quiet',
    '--disable-pip-version-check',
    '--no-deps',
    '--only-binary=:all:',
    '--platform',
    PLATFORMS[process.arch],
    '--dest',
    wheels,
    ...WHEELS,
  ])
  // Wheels are zip files: Python's zipfile unpacks them (its own modes, so the programs
  // are made executable below).
  const files = fs.readdirSync(wheels).filter((f) => f.endsWith('.whl'))
  if (files.length !== WHEELS.length)
    throw new Error(`expected ${WHEELS.length} wheels in ${wheels}, found ${files.length}`)
  run(py, [
    '-c',
    'import sys, zipfile\nfor w in sys.argv[2:]: zipfile.ZipFile(w).extractall(sys.argv[1])',
    out,
    ...files.map((f) => path.join(wheels, f)),
  ])
  const top = path.join(out, 'nvidia', 'cu13')
  for (const d of ['bin', path.join('nvvm', 'bin')])
    for (const f of fs.readdirSync(path.join(top, d))) {
      const p = path.join(top, d, f)
      if (fs.statSync(p).isFile()) fs.chmodSync(p, 0o755)
    }
  // The unversioned names a link step (and CMake's FindCUDAToolkit) looks for.
  for (const lib of ['libcudart', 'libcublas', 'libcublasLt']) {
    const link = path.join(top, 'lib', `${lib}.so`)
    if (!fs.existsSync(link)) fs.symlinkSync(`${lib}.so.13`, link)
  }
  driverStub(top)
  fs.rmSync(wheels, { recursive: true, force: true })
  fs.writeFileSync(path.join(top, '.complete'), `${WHEELS.join('\n')}\n`)
  return top
}

/**
 * The driver's library (libcuda.so.1) comes with the driver, not in a wheel, and ggml's CUDA
 * backend calls it directly (its memory pool maps memory through the driver API). A link
 * needs its name and symbols only: a stand-in named libcuda.so.1 exporting every function
 * cuda.h declares, each failing with CUDA_ERROR_STUB_LIBRARY (34) as NVIDIA's own stub
 * does, where nvcc and CMake look for that stub (lib/stubs/). The module then needs
 * libcuda.so.1 and binds to the real driver's where it runs; without one it does not load,
 * which its check reports.
 */
function driverStub(top) {
  const include = path.join(top, 'include')
  // The names as compiled code references them: cuda.h maps many to versioned ones (_v2).
  const pre = spawnSync('cc', ['-E', '-P', '-I', include, '-x', 'c', path.join(include, 'cuda.h')], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  })
  if (pre.status !== 0) throw new Error(`cc could not read cuda.h: ${pre.stderr}`)
  const names = [...new Set([...pre.stdout.matchAll(/\bCUresult\s+(cu\w+)\s*\(/g)].map((m) => m[1]))]
  if (names.length < 200) throw new Error(`only ${names.length} driver functions found in cuda.h`)
  const stubs = path.join(top, 'lib', 'stubs')
  fs.mkdirSync(stubs, { recursive: true })
  const source = path.join(stubs, 'libcuda.c')
  fs.writeFileSync(source, names.map((n) => `int ${n}(void) { return 34; }\n`).join(''))
  run('cc', ['-shared', '-fPIC', '-Wl,-soname,libcuda.so.1', '-o', path.join(stubs, 'libcuda.so'), source])
}

module.exports = { ensure, found, missing, VERSION }

if (require.main === module) {
  if (process.argv.includes('--check')) {
    const why = missing()
    if (why) console.log(why)
  } else {
    try {
      console.log(ensure())
    } catch (e) {
      console.error(e.message)
      process.exit(1)
    }
  }
}
