#!/usr/bin/env bash
# `npm run bench`: every comparison in one run, on a release build, then one report:
# bench/results/<date>.{json,md}, two charts, and the README's performance block.
# Peers are installed into bench/node_modules (without install scripts: they would try to
# download). `npm run bench -- --quick` is a smoke test of the scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
export ONNXRUNTIME_NODE_INSTALL=skip
[ -x node_modules/.bin/napi ] || npm ci --no-audit --no-fund
[ -d bench/node_modules/node-llama-cpp ] || (cd bench && npm install --ignore-scripts --no-audit --no-fund)
node scripts/models.js
node scripts/llama-server.js >/dev/null # for bench/remote.js: built once per machine, then cached
node scripts/build.js --napi >/dev/null # not `napi build` alone: it would overwrite index.js
for kind in workers embedding llm monitor remote chat; do
  node "bench/$kind.js" "$@"
done
node bench/report.js "$@"
