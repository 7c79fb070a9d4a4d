#!/usr/bin/env node
'use strict'
// `node scripts/cargo.js <cargo arguments>`: cargo for this machine with the environment
// scripts/build.js builds with (llama.cpp's CMake settings, scripts/cmake), after clearing
// the dangling links llama-cpp-sys-2 panics on. `npm run lint` runs clippy through it: run
// with another environment, llama-cpp-sys-2's build script would run again after each
// build, and panic on those links.
const { spawnSync } = require('node:child_process')
const { nativeEnv, clearDanglingLibraryLinks, targetDir } = require('./build')

clearDanglingLibraryLinks(targetDir())
const r = spawnSync('cargo', process.argv.slice(2), { stdio: 'inherit', env: nativeEnv() })
process.exit(r.status ?? 1)
