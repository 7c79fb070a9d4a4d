#!/usr/bin/env bash
# The README's demo command (`npm run demo`): installs, fetches the default models,
# builds the addon if needed and runs examples/demo.js.
set -euo pipefail
cd "$(dirname "$0")/.."
export ONNXRUNTIME_NODE_INSTALL=skip
[ -x node_modules/.bin/napi ] || npm ci --no-audit --no-fund
node scripts/models.js
npx napi build --platform --release >/dev/null
node examples/demo.js "$@"
