#!/usr/bin/env bash
# The README's demo command (`npm run demo`): installs, fetches the default models,
# builds the addon if needed and runs examples/demo.js.
set -euo pipefail
cd "$(dirname "$0")/.."
export ONNXRUNTIME_NODE_INSTALL=skip
[ -x node_modules/.bin/napi ] || npm ci --no-audit --no-fund
# Builds from source the first time (minutes: cargo's and llama.cpp's progress is shown);
# later runs only check that the build is current.
node scripts/build.js --napi
# The model fetch downloads through the addon's downloader: after the build.
node scripts/models.js
node examples/demo.js "$@"
