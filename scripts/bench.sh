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
node scripts/build.js --napi >/dev/null # not `napi build` alone: it would overwrite index.js
# The model fetch downloads through the addon's downloader: after the build.
node scripts/models.js
node scripts/llama-server.js >/dev/null # for bench/remote.js: built once per machine, then cached
# The embedding script first, before the others load the machine: int8's speed targets are
# the tightest, and this shared machine has slow spells (int8 batches of 32 at 190 instead
# of 300 texts/s, from 15 s to minutes), most often seconds after a heavy process ends
# (bench/workers.js, or a two-thread CPU burner). With the embedding script second, the
# day's full runs each started it in one; first, three of seven batch runs still fell in
# one, and medians of per-run ratios absorb that. vmstat shows no steal and no competing
# process, and they are not page faults.
# The GGUF twins of the default embedding model, for bench/retrieval.js (made once, in target/).
node scripts/gguf-twin.js >/dev/null
for kind in embedding workers llm monitor remote chat retrieval structured; do
  node "bench/$kind.js" "$@"
done
node bench/report.js "$@"
