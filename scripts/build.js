#!/usr/bin/env node
'use strict'
// Builds the native addon from source, showing progress all the way: cargo's lines, and
// llama.cpp's cmake configure and percentage lines, which cargo would otherwise hide
// until its build script ends (minutes on a small machine).
//
//   node scripts/build.js          in an installed package (`npx orion-native build`):
//                                  cargo, then orion-native.<platform>.node next to index.js
//   node scripts/build.js --napi   in a checkout: napi build, which also regenerates index.d.ts
//   node scripts/build.js --target <platform>
//                                  in a checkout on Linux x64: cross-compiles for another
//                                  platform (linux-arm64-gnu, win32-x64; scripts/targets.js)
//                                  to orion-native.<platform>.node, for `npm run package`
//
// Needs Rust (rustup), cmake, a C/C++ compiler and libclang (Debian/Ubuntu:
// apt-get install -y cmake libclang-dev build-essential).
const fs = require('node:fs')
const path = require('node:path')
const { spawn, spawnSync } = require('node:child_process')
const { platformName } = require('../lib/binding')
const { target, TARGETS, cmakeInclude } = require('./targets')

const root = path.join(__dirname, '..')

/** Whether a line of `cargo -vv` output is worth showing. */
function shown(line) {
  if (/^\s*(Compiling|Finished|Building|Downloaded|Downloading|Updating|Locking|Adding|warning|error)\b/.test(line))
    return true
  // A build script's output arrives as `[crate version] line`: keep cmake's steps.
  const m = /^\[([\w-]+) [^\]]+\] (.*)$/.exec(line)
  if (m) return /^(-- |\[\s*\d+%\]|CMake (Error|Warning))/.test(m[2])
  return false
}

function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], ...opts })
    let failing = false
    const tail = []
    const onLine = (line) => {
      tail.push(line)
      if (tail.length > 200) tail.shift()
      // From cargo's first error on, everything is shown: it is the diagnosis.
      if (/^error(\[|:)/.test(line)) failing = true
      if (failing || shown(line)) process.stderr.write(line + '\n')
    }
    for (const stream of [child.stdout, child.stderr]) {
      let buf = ''
      stream.setEncoding('utf8')
      stream.on('data', (d) => {
        buf += d
        let i
        while ((i = buf.search(/[\r\n]/)) >= 0) {
          onLine(buf.slice(0, i))
          buf = buf.slice(i + 1)
        }
      })
      stream.on('end', () => buf && onLine(buf))
    }
    child.on('error', reject)
    child.on('close', (code, signal) => {
      if (code === 0) return resolve()
      if (!failing) process.stderr.write(tail.slice(-40).join('\n') + '\n')
      reject(new Error(`${cmd} ${args.join(' ')} failed (${signal || 'exit ' + code})`))
    })
  })
}

function need(cmd, hint) {
  const r = spawnSync(cmd, ['--version'], { stdio: 'ignore' })
  if (r.error || r.status !== 0) throw new Error(`building orion-native from source needs ${cmd}: ${hint}`)
}

/**
 * llama-cpp-sys-2 0.1.161's build script hard-links llama.cpp's shared libraries into the
 * profile directory (and its examples/ and deps/), links included: `libllama.so`, a
 * relative link to `libllama.so.0`, becomes a link there to a file that is not there.
 * When the script runs again (an edit of scripts/cmake, a changed GGML_* variable), it
 * takes that dangling link for a missing file, links again and panics on "File exists".
 * Removing the dangling links first lets it run again.
 */
function clearDanglingLibraryLinks(dir) {
  if (!fs.existsSync(dir)) return
  const profiles = [path.join(dir, 'release')]
  for (const d of fs.readdirSync(dir)) profiles.push(path.join(dir, d, 'release'))
  for (const profile of profiles)
    for (const sub of ['', 'examples', 'deps']) {
      const at = path.join(profile, sub)
      if (!fs.existsSync(at)) continue
      for (const f of fs.readdirSync(at)) {
        if (!/^lib.*\.so(\.\d+)*$/.test(f)) continue
        const p = path.join(at, f)
        if (fs.lstatSync(p).isSymbolicLink() && !fs.existsSync(p)) fs.rmSync(p)
      }
    }
}

/** Cargo's target directory; cross builds have their own, so that one never waits on the other. */
function targetDir(cross = false) {
  if (process.env.CARGO_TARGET_DIR) return path.resolve(root, process.env.CARGO_TARGET_DIR)
  return path.join(root, 'target', ...(cross ? ['cross'] : []))
}

async function main(argv) {
  const napi = argv.includes('--napi')
  const at = argv.indexOf('--target')
  const platform = at >= 0 ? argv[at + 1] : platformName()
  const cross = at >= 0 && platform !== platformName()
  need('cargo', 'install Rust from https://rustup.rs')
  need('cmake', 'install cmake (Debian/Ubuntu: apt-get install -y cmake libclang-dev build-essential)')
  const started = Date.now()
  process.stderr.write(
    `Building orion-native${cross ? ` for ${platform}` : ''} from source (llama.cpp takes most of the time: ~10 min on 2 cores)\n`,
  )
  const out = path.join(root, `orion-native.${platform}.node`)
  clearDanglingLibraryLinks(targetDir(cross))
  if (napi && !cross) {
    const cli = path.join(root, 'node_modules', '.bin', 'napi')
    await run(cli, ['build', '--platform', '--release', '--no-js', '--', '-vv'], { env: nativeEnv() })
  } else if (cross) {
    const t = target(platform)
    if (!t.env) throw new Error(`${platform} is built by the release workflow on its own platform, not here`)
    const env = { ...process.env, CARGO_TARGET_DIR: targetDir(true), ...t.env(targetDir(true)) }
    const cc = env[`CC_${t.triple.replace(/-/g, '_')}`]
    need(cc, `install Debian's ${t.apt.join(' ')} (apt-get install -y --no-install-recommends ${t.apt.join(' ')})`)
    await run('cargo', ['build', '--release', '--lib', '--target', t.triple, '-vv'], { env })
    fs.copyFileSync(path.join(targetDir(true), t.triple, 'release', t.lib), out)
    // Beside the addon, for a platform whose libraries' names cannot be this machine's
    // (Windows' DLLs); Linux arm64's libllama.so.0 would replace this machine's own.
    // The package takes them from the build either way (llamaLibraries).
    if (platform.split('-')[0] !== platformName().split('-')[0])
      for (const f of copyLlamaLibraries(path.dirname(out), platform)) process.stderr.write(`  with ${f}\n`)
  } else {
    await run('cargo', ['build', '--release', '--lib', '-vv'], { env: nativeEnv() })
    const lib =
      process.platform === 'win32'
        ? 'orion_native.dll'
        : process.platform === 'darwin'
          ? 'liborion_native.dylib'
          : 'liborion_native.so'
    fs.copyFileSync(path.join(targetDir(), 'release', lib), out)
  }
  if (!cross) for (const f of copyLlamaLibraries(path.dirname(out))) process.stderr.write(`  with ${f}\n`)
  process.stderr.write(
    `Built ${path.relative(process.cwd(), out) || out} in ${((Date.now() - started) / 1000).toFixed(0)} s\n`,
  )
  return out
}

/**
 * cargo's environment for a build for this machine: on Linux arm64, ggml's Armv9.2 CPU
 * levels at a level every GCC compiles (scripts/cmake/linux-arm64.cmake; GCC 13 and older
 * know no +sme), as in the cross build (scripts/targets.js).
 */
function nativeEnv() {
  const env = { ...process.env }
  if (!env.CMAKE_PROJECT_INCLUDE)
    Object.assign(
      env,
      cmakeInclude(process.platform === 'linux' && process.arch === 'arm64' ? 'linux-arm64.cmake' : 'ggml.cmake'),
    )
  return env
}

// How a build with backends as modules lays out llama.cpp's libraries: the shared ones
// (CMake installs them to out/lib, DLLs to out/bin) and ggml's backend modules (out/backends).
const LAYOUTS = {
  // The versioned names the addon's DT_NEEDED entries use (libllama.so.0), as files;
  // libllama-common for its JSON-schema-to-grammar conversion (constrained generation).
  linux: {
    dir: 'lib',
    shared: /^lib(llama|llama-common|llama-common-base|ggml|ggml-base)\.so\.\d+$/,
    // Not arm64's Armv9.2 variants: built here at the Armv8.6 level (scripts/cmake/linux-arm64.cmake).
    module: /^libggml-(?!cpu-armv9\.2_).*\.so$/,
  },
  // ggml names its DLLs without MinGW's lib prefix; llama.cpp's keep it.
  win32: { dir: 'bin', shared: /^(lib)?(llama|llama-common|ggml|ggml-base)\.dll$/, module: /^ggml-.*\.dll$/ },
}

/**
 * llama.cpp's shared libraries and ggml's backend modules for `platform`, where a build
 * with backends as modules (Linux x64 and arm64, Windows x64: Cargo.toml) made them: the
 * newest llama-cpp-sys-2 build for that platform whose `out/backends` holds modules. None
 * for a static build.
 */
function llamaLibraries(platform = platformName()) {
  const layout = LAYOUTS[platform.split('-')[0]]
  if (!layout) return []
  const cross = platform !== platformName()
  const dir = targetDir(cross)
  // This machine's: cargo's own directory, or one named by a triple (napi build's --target)
  // that is not another platform's (a cross build into the same CARGO_TARGET_DIR).
  const others = Object.entries(TARGETS)
    .filter(([p]) => p !== platformName())
    .map(([, t]) => t.triple)
  const profiles = cross
    ? [path.join(dir, target(platform).triple, 'release')]
    : [
        path.join(dir, 'release'),
        ...(fs.existsSync(dir) ? fs.readdirSync(dir) : [])
          .filter((d) => !others.includes(d))
          .map((d) => path.join(dir, d, 'release')),
      ]
  const builds = []
  for (const profile of profiles) {
    const b = path.join(profile, 'build')
    if (!fs.existsSync(b)) continue
    for (const d of fs.readdirSync(b)) {
      const out = path.join(b, d, 'out')
      if (!d.startsWith('llama-cpp-sys-2-') || !fs.existsSync(path.join(out, 'backends'))) continue
      const modules = fs.readdirSync(path.join(out, 'backends')).filter((f) => layout.module.test(f))
      if (modules.length) builds.push({ out, modules, mtime: fs.statSync(path.join(out, 'backends')).mtimeMs })
    }
  }
  if (!builds.length) return []
  const { out, modules } = builds.sort((a, b) => b.mtime - a.mtime)[0]
  const lib = path.join(out, layout.dir)
  const shared = fs.readdirSync(lib).filter((f) => layout.shared.test(f))
  return [...shared.map((f) => path.join(lib, f)), ...modules.map((f) => path.join(out, 'backends', f))]
}

/** Copy llamaLibraries(platform) into `dest` (following links: each is one file there). */
function copyLlamaLibraries(dest, platform = platformName()) {
  const files = llamaLibraries(platform)
  for (const f of files) {
    fs.rmSync(path.join(dest, path.basename(f)), { force: true })
    fs.copyFileSync(fs.realpathSync(f), path.join(dest, path.basename(f)))
  }
  return files.map((f) => path.basename(f))
}

module.exports = { main, shown, llamaLibraries, nativeEnv, clearDanglingLibraryLinks, targetDir }

if (require.main === module) {
  main(process.argv.slice(2)).catch((e) => {
    process.stderr.write(`${e.message}\n`)
    process.exit(1)
  })
}
