#!/usr/bin/env bash
# The README's test command (`npm test`): installs what is missing, fetches the models,
# builds the addon once in release mode, and runs every test against that build.
set -euo pipefail
cd "$(dirname "$0")/.."
# onnxruntime-node (a dev dependency, for the checkout's tests and benchmarks) would
# download GPU providers in its postinstall; its CPU library is in the package.
export ONNXRUNTIME_NODE_INSTALL=skip
[ -x node_modules/.bin/jest ] || npm ci --no-audit --no-fund
# One release build (napi build, with cargo's and cmake's progress shown), used by every test
# below and packed by the package test.
node scripts/build.js --napi
# The model fetch downloads through the addon's downloader: after the build.
node scripts/models.js
# The GGUF twins of the default embedding model (its weights and vocabulary for llama.cpp,
# written with PyPI's gguf package into target/gguf-twin/); __tests__/embedding-gguf.test.js
# compares the two engines on them. Where python3 or pip is missing this says so.
node scripts/gguf-twin.js --prepare
if [ -d .git ] && ! git diff --quiet -- index.d.ts; then
  echo "index.d.ts differs from what napi build generates: commit the regenerated file" >&2
  git --no-pager diff --stat -- index.d.ts >&2
  exit 1
fi
# The Windows x64 and Linux arm64 addons, cross-compiled in release mode where this machine
# has the cross toolchains, Wine and qemu (.ci/run installs them); __tests__/cross.test.js
# packs and runs them. Where something is missing this says which smoke test is skipped.
node scripts/cross-smoke.js --prepare
# ggml's Vulkan backend, built from the addon's llama.cpp tree (a few minutes, once per
# llama-cpp-sys-2 version, cached in target/) where glslc and Vulkan headers are present;
# __tests__/vulkan.test.js runs it on lavapipe. Its Windows build too where MinGW-w64 is
# here (cross.test.js runs it under Wine). Otherwise this says which tests are skipped.
node scripts/ggml-backends.js --prepare
# napi build passes --target, so its artifacts live under target/<host triple>/; naming the
# same target lets the Rust tests reuse that one release build instead of making another.
# Through scripts/cargo.js, with the build's environment: with another, llama-cpp-sys-2's
# build script would run again, and panic on the links its first run left.
node scripts/cargo.js test --release --target "$(rustc -vV | sed -n 's/^host: //p')"
npx tsc --noEmit -p __tests__/types
# The remote suites run against llama.cpp's llama-server, built from source once per machine
# (a few minutes, with cmake's progress shown) and cached under ~/.cache/orion-native.
node scripts/llama-server.js >/dev/null
npx jest --runInBand "$@"
