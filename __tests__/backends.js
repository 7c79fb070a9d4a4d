'use strict'
// The two backends the parameterised suites (backends.test.js) run against, so that the
// in-process engine and a remote server cannot drift apart: each gives the options that
// select it, and what differs by nature (the vector width, the model key).
//
// - local: the embedded models, in this process.
// - remote: the same demo GGUF served by llama.cpp's llama-server (built from source by
//   scripts/llama-server.js, cached), one instance for chat and one with --embeddings.
const path = require('node:path')
const { getModelLoader } = require('..')
const { startServer } = require('../scripts/llama-server')
const { llmModelDir } = require('./helpers')

const GGUF = path.join(llmModelDir, 'SmolLM2-135M-Instruct.Q4_1.gguf')

const local = {
  name: 'local',
  async setup() {
    return { embedOptions: undefined, dimension: 384, llmKey: 'demo' }
  },
  async teardown() {},
}

const remote = {
  name: 'remote',
  servers: [],
  async setup() {
    const [chat, embed] = await Promise.all([
      startServer({ model: GGUF, alias: 'smollm2' }),
      startServer({ model: GGUF, alias: 'smollm2-embed', embeddings: true, parallel: 1 }),
    ])
    this.servers = [chat, embed]
    getModelLoader().registerModel('remote-demo', { remote: { url: chat.url, model: 'smollm2' } })
    return {
      embedOptions: { remote: { url: embed.url, model: 'smollm2-embed' } },
      // SmolLM2-135M's hidden size: llama-server mean-pools the last hidden states.
      dimension: 576,
      llmKey: 'remote-demo',
      chatServer: chat,
      embedServer: embed,
    }
  },
  async teardown() {
    await Promise.all(this.servers.map((s) => s.stop()))
  },
}

module.exports = { backends: [local, remote], GGUF, startServer }
