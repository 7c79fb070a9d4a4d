#!/usr/bin/env bash
# `npm run bench`: every comparison in one run, on a release build. Peers are installed
# into bench/node_modules (without install scripts: they would try to download).
set -euo pipefail
cd "$(dirname "$0")/.."
export ONNXRUNTIME_NODE_INSTALL=skip
[ -x node_modules/.bin/napi ] || npm ci --no-audit --no-fund
[ -d bench/node_modules/node-llama-cpp ] || (cd bench && npm install --ignore-scripts --no-audit --no-fund)
node scripts/models.js
npx napi build --platform --release >/dev/null
node bench/embedding.js "$@"
node bench/llm.js "$@"
node bench/monitor.js "$@"
node bench/workers.js "$@"
