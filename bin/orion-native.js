#!/usr/bin/env node
'use strict'
// orion-native's command line: `models` fetches the default models.
const path = require('node:path')

const [cmd, ...args] = process.argv.slice(2)
const usage = `usage: orion-native <command>

commands:
  models [--only embedding|llm] [--force]   fetch the default models into ORION_MODELS_DIR
                                            (default: the per-user cache directory)`

function opt(name) {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}

switch (cmd) {
  case 'models': {
    const { ensureModels } = require(path.join(__dirname, '..', 'scripts', 'models.js'))
    try {
      ensureModels({ only: opt('--only'), force: args.includes('--force') })
    } catch (e) {
      console.error(`orion-native models: ${e.message}`)
      process.exit(1)
    }
    break
  }
  case undefined:
  case '-h':
  case '--help':
    console.log(usage)
    break
  default:
    console.error(`orion-native: unknown command ${JSON.stringify(cmd)}\n\n${usage}`)
    process.exit(2)
}
