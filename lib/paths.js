'use strict'
// Where orion-native keeps its files, for the JS side: the CLI's status snapshots and the
// models that scripts/models.js fetches. The addon cannot call into JS to ask, so it has
// its own copy of these rules in src/paths.rs; keep the two in step, or the models get
// fetched where the addon never looks (__tests__/cli.test.js compares them).
const os = require('node:os')
const path = require('node:path')

// Read from the environment, as src/paths.rs does, rather than os.homedir(): where HOME
// is empty or unset the two would disagree.
const env = (k) => process.env[k] || undefined

/**
 * `$XDG_CACHE_HOME/orion-native` (or `~/.cache/orion-native`) on Linux,
 * `~/Library/Caches/orion-native` on macOS, `%LOCALAPPDATA%\orion-native` on Windows.
 */
function cacheDir() {
  const home = env('HOME') || env('USERPROFILE') || os.tmpdir()
  let base
  if (process.platform === 'win32') base = env('LOCALAPPDATA') || path.join(home, 'AppData', 'Local')
  else if (process.platform === 'darwin') base = path.join(home, 'Library', 'Caches')
  else base = env('XDG_CACHE_HOME') || path.join(home, '.cache')
  return path.join(base, 'orion-native')
}

/** `ORION_MODELS_DIR`, else `<cacheDir>/models`. */
function modelsDir() {
  return env('ORION_MODELS_DIR') || path.join(cacheDir(), 'models')
}

module.exports = { cacheDir, modelsDir }
