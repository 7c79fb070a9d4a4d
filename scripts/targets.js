'use strict'
// The platforms the addon is packaged for: napi-rs's platform names (lib/binding.js's
// platformName()), the Rust target each is built for, the library cargo writes, and what a
// build on Linux x64 needs to cross-compile it (Debian's cross toolchains).
const fs = require('node:fs')
const path = require('node:path')
const { execFileSync, spawnSync } = require('node:child_process')
const { createHash } = require('node:crypto')

const TARGETS = {
  'linux-x64-gnu': { triple: 'x86_64-unknown-linux-gnu', lib: 'liborion_native.so', strip: 'strip' },
  'linux-arm64-gnu': {
    triple: 'aarch64-unknown-linux-gnu',
    lib: 'liborion_native.so',
    strip: 'aarch64-linux-gnu-strip',
    // Debian's cross compilers, also those of the GPU modules (scripts/ggml-backends.js).
    cc: 'aarch64-linux-gnu-gcc',
    cxx: 'aarch64-linux-gnu-g++',
    apt: ['gcc-aarch64-linux-gnu', 'g++-aarch64-linux-gnu'],
    // rustc links with `cc` for this target unless told otherwise; the cc crate (and so
    // llama.cpp's cmake) already defaults to aarch64-linux-gnu-gcc.
    env: () => ({
      CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER: TARGETS['linux-arm64-gnu'].cc,
      CC_aarch64_unknown_linux_gnu: TARGETS['linux-arm64-gnu'].cc,
      CXX_aarch64_unknown_linux_gnu: TARGETS['linux-arm64-gnu'].cxx,
      AR_aarch64_unknown_linux_gnu: 'aarch64-linux-gnu-ar',
      BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu: includeArgs(TARGETS['linux-arm64-gnu'].cc),
      // ggml's Armv9.2 CPU variants at a level GCC 12 compiles (see the file).
      ...cmakeInclude('linux-arm64.cmake'),
    }),
  },
  // One MinGW-built addon for every Windows Node (the official node.exe, MSYS2's) and
  // Electron: Node-API is a C interface resolved at load time (napi's dyn-symbols), so the
  // toolchain napi-rs's -msvc/-gnu suffix names does not matter here; see the README.
  'win32-x64': {
    triple: 'x86_64-pc-windows-gnu',
    lib: 'orion_native.dll',
    strip: 'x86_64-w64-mingw32-strip',
    cc: 'x86_64-w64-mingw32-gcc-posix',
    cxx: 'x86_64-w64-mingw32-g++-posix',
    apt: ['gcc-mingw-w64-x86-64-posix', 'g++-mingw-w64-x86-64-posix'],
    env: (targetDir) => ({
      // The posix thread model: llama.cpp uses std::thread and std::mutex, which gcc 12's
      // win32 model lacks. Compiler, C++ compiler and linker alike, or two libstdc++ meet.
      CC_x86_64_pc_windows_gnu: TARGETS['win32-x64'].cc,
      CXX_x86_64_pc_windows_gnu: TARGETS['win32-x64'].cxx,
      AR_x86_64_pc_windows_gnu: 'x86_64-w64-mingw32-ar',
      CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER: TARGETS['win32-x64'].cc,
      // libstdc++ linked into the addon, so that it needs no MinGW DLL beside it.
      CXXSTDLIB_STATIC_x86_64_pc_windows_gnu: '1',
      // ggml's library names, and declarations Debian 12's MinGW-w64 headers lack.
      ...cmakeInclude('mingw.cmake'),
      LIBNODE_PATH: libnodeStub(targetDir),
      BINDGEN_EXTRA_CLANG_ARGS_x86_64_pc_windows_gnu: includeArgs(TARGETS['win32-x64'].cc),
    }),
  },
  'darwin-arm64': { triple: 'aarch64-apple-darwin', lib: 'liborion_native.dylib', strip: 'strip' },
}

/**
 * The environment that has llama.cpp's CMake project include scripts/cmake/`file` (after
 * each project()), with a digest of scripts/cmake's files (the included file and what it
 * includes in turn). llama-cpp-sys-2 forwards every CMAKE_* and GGML_* variable to CMake
 * but re-runs its build only when a GGML_* one changes, not when an included file does:
 * GGML_ORION_CMAKE, the digest, makes an edit of those files re-run CMake.
 */
function cmakeInclude(file) {
  const dir = path.join(__dirname, 'cmake')
  const digest = createHash('sha256')
  for (const f of fs.readdirSync(dir).sort()) digest.update(f).update(fs.readFileSync(path.join(dir, f)))
  return { CMAKE_PROJECT_INCLUDE: path.join(dir, file), GGML_ORION_CMAKE: digest.digest('hex').slice(0, 16) }
}

/**
 * napi-build, on windows-gnu, links `-lnode` and insists on finding a libnode.dll (MSYS2's
 * Node). With dyn-symbols the addon imports no Node-API symbol at link time, so an empty
 * import library satisfies the link and the addon names neither node.exe nor libnode.dll.
 */
function libnodeStub(targetDir) {
  const dir = path.join(targetDir, 'libnode-stub')
  if (!fs.existsSync(path.join(dir, 'libnode.dll.a'))) {
    fs.mkdirSync(dir, { recursive: true })
    execFileSync('x86_64-w64-mingw32-ar', ['rcs', path.join(dir, 'libnode.dll.a')])
    fs.writeFileSync(path.join(dir, 'libnode.dll'), '') // only napi-build's exists() looks at it
  }
  return dir
}

/**
 * The cross compiler's C header directories, for bindgen (llama-cpp-sys-2 generates its
 * bindings with libclang, which does not find a cross gcc's own headers such as stdbool.h).
 */
function includeArgs(gcc) {
  const r = spawnSync(gcc, ['-xc', '-E', '-v', '-'], { input: '', encoding: 'utf8' })
  if (r.error) return ''
  const m = /#include <\.\.\.> search starts here:\n([\s\S]*?)End of search list/.exec(r.stderr)
  if (!m) return ''
  return m[1]
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((d) => `-isystem ${path.resolve(d)}`)
    .join(' ')
}

function target(platform) {
  const t = TARGETS[platform]
  if (!t) throw new Error(`unknown target ${platform}: one of ${Object.keys(TARGETS).join(', ')}`)
  return t
}

module.exports = { TARGETS, target, cmakeInclude }
