'use strict'
// Tool calls through the public API: tools shown through the model's own chat template
// (rendered by minijinja), a call constrained by a grammar once it opens and read back
// in the template family's syntax, results sent back as `tool` messages, streamed call
// events, chat sessions with tools, remote servers, and the coded errors. Each family's
// syntax runs end to end on the demo model with that family's real template in its
// metadata (scripts/gguf-twin.js `templated`): under a forced `toolChoice` the grammar
// makes its answer a call, whatever 135M parameters would say, so the test shows that
// the prompt renders, the grammar and its trigger fit the family, and the parser reads
// what the grammar allowed. Calls' arguments are validated by Ajv, an independent
// validator.
const Ajv2020 = require('ajv/dist/2020').default
const { getModelLoader } = require('..')
const { expectCode, inWorker } = require('./helpers')
const twin = require('../scripts/gguf-twin')
const { GGUF, startServer } = require('./backends')

const ajv = new Ajv2020({ strict: true, allErrors: true })
const loader = getModelLoader()

const WEATHER = {
  name: 'get_weather',
  description: 'The weather now in a city.',
  parameters: {
    type: 'object',
    properties: {
      city: { type: 'string', minLength: 1, maxLength: 24 },
      unit: { enum: ['celsius', 'fahrenheit'] },
    },
    required: ['city', 'unit'],
    additionalProperties: false,
  },
}
const ADD = {
  name: 'add',
  description: 'Adds two integers.',
  parameters: {
    type: 'object',
    properties: {
      a: { type: 'integer', minimum: -1000, maximum: 1000 },
      b: { type: 'integer', minimum: -1000, maximum: 1000 },
    },
    required: ['a', 'b'],
    additionalProperties: false,
  },
}
const TOOLS = [WEATHER, ADD]
const ASK = [
  { role: 'system', content: 'You are a helpful assistant with tools.' },
  { role: 'user', content: 'What is the weather in Paris right now, in celsius?' },
]

/** Each call names an offered tool and its arguments validate against its parameters. */
function expectValidCalls(calls, tools = TOOLS) {
  expect(Array.isArray(calls) && calls.length > 0).toBe(true)
  for (const c of calls) {
    const tool = tools.find((t) => t.name === c.name)
    expect(tool).toBeDefined()
    const validate = ajv.compile(tool.parameters)
    if (!validate(c.arguments))
      throw new Error(`${c.name}(${JSON.stringify(c.arguments)}): ${ajv.errorsText(validate.errors)}`)
    expect(typeof c.id).toBe('string')
    expect(c.id.length).toBeGreaterThan(0)
  }
}

describe('tool calls on the demo model (a template without tools: the generic JSON format)', () => {
  test('a required call is a valid call of an offered tool', async () => {
    const r = await loader.generate('demo', ASK, {
      tools: TOOLS,
      toolChoice: 'required',
      temperature: 0,
      maxTokens: 96,
    })
    expect(r.finishReason).toBe('toolCalls')
    expectValidCalls(r.toolCalls)
  }, 120_000)

  test('a named choice calls that tool; sampled answers stay valid', async () => {
    for (let seed = 1; seed <= 4; seed++) {
      const r = await loader.generate('demo', ASK, {
        tools: TOOLS,
        toolChoice: { name: 'add' },
        temperature: 0.8,
        seed,
        maxTokens: 96,
      })
      expect(r.finishReason).toBe('toolCalls')
      expect(r.toolCalls.map((c) => c.name)).toEqual(r.toolCalls.map(() => 'add'))
      expectValidCalls(r.toolCalls)
    }
  }, 120_000)

  test("'auto' answers with calls or with text, never with both missing", async () => {
    const r = await loader.generate('demo', ASK, { tools: TOOLS, temperature: 0, maxTokens: 96 })
    if (r.finishReason === 'toolCalls') expectValidCalls(r.toolCalls)
    else expect(r.text.length).toBeGreaterThan(0)
  }, 120_000)

  test("'none' shows no tools: the prompt is the plain one", async () => {
    const plain = await loader.countTokens('demo', ASK)
    const shown = await loader.countTokens('demo', ASK, { tools: TOOLS })
    const none = await loader.countTokens('demo', ASK, { tools: TOOLS, toolChoice: 'none' })
    expect(shown).toBeGreaterThan(plain + 40)
    expect(none).toBe(plain)
    const r = await loader.generate('demo', ASK, { tools: TOOLS, toolChoice: 'none', temperature: 0, maxTokens: 8 })
    expect(r.toolCalls).toBeUndefined()
    expect(r.finishReason).not.toBe('toolCalls')
  }, 120_000)

  test('a round trip: the call and its result go back as messages, and the model answers in text', async () => {
    const first = await loader.generate('demo', ASK, {
      tools: TOOLS,
      toolChoice: { name: 'get_weather' },
      temperature: 0,
      maxTokens: 96,
    })
    expectValidCalls(first.toolCalls)
    const call = first.toolCalls[0]
    const messages = [
      ...ASK,
      { role: 'assistant', content: first.text, toolCalls: first.toolCalls },
      { role: 'tool', toolCallId: call.id, name: call.name, content: { temperature: 21, sky: 'clear' } },
    ]
    const withResult = await loader.countTokens('demo', messages, { tools: TOOLS })
    const without = await loader.countTokens('demo', messages.slice(0, 3), { tools: TOOLS })
    expect(withResult).toBeGreaterThan(without)
    const answer = await loader.generate('demo', messages, {
      tools: TOOLS,
      toolChoice: 'none',
      temperature: 0,
      maxTokens: 24,
    })
    expect(answer.text.length).toBeGreaterThan(0)
    expect(answer.toolCalls).toBeUndefined()
  }, 120_000)

  test('streaming yields the text, then each call as its own event; the result agrees', async () => {
    const stream = loader.generateStream('demo', ASK, {
      tools: TOOLS,
      toolChoice: 'required',
      temperature: 0,
      maxTokens: 96,
    })
    const texts = []
    const events = []
    for await (const step of stream) {
      if (typeof step === 'string') texts.push(step)
      else events.push(step)
    }
    expect(events.length).toBeGreaterThan(0)
    expect(events.map((e) => e.toolCall)).toEqual(stream.result.toolCalls)
    expect(stream.result.finishReason).toBe('toolCalls')
    // The call's JSON is never streamed as text.
    expect(texts.join('')).not.toContain('"arguments"')
  }, 120_000)

  test('onToken sees no call JSON either', async () => {
    let seen = ''
    const r = await loader.generate('demo', ASK, {
      tools: TOOLS,
      toolChoice: 'required',
      temperature: 0,
      maxTokens: 96,
      onToken: (t) => (seen += t),
    })
    expectValidCalls(r.toolCalls)
    expect(seen).not.toContain('"arguments"')
  }, 120_000)

  test('a chat session keeps the call and the result in its history', async () => {
    const session = loader.createChatSession('demo', { system: 'You are a helpful assistant with tools.' })
    const turn = await session.send('What is the weather in Paris, in celsius?', {
      tools: TOOLS,
      toolChoice: 'required',
      temperature: 0,
      maxTokens: 96,
    })
    expectValidCalls(turn.toolCalls)
    const call = turn.toolCalls[0]
    const reply = await session.send(
      { role: 'tool', toolCallId: call.id, name: call.name, content: '{"temperature": 21}' },
      { tools: TOOLS, toolChoice: 'none', temperature: 0, maxTokens: 16 },
    )
    expect(reply.text.length).toBeGreaterThan(0)
    const history = session.history
    expect(history.map((m) => m.role)).toEqual(['system', 'user', 'assistant', 'tool', 'assistant'])
    expect(history[2].toolCalls).toEqual(turn.toolCalls)
    expect(history[3].toolCallId).toBe(call.id)
    // Saved and restored, the calls come back too.
    const saved = JSON.parse(JSON.stringify(session.save()))
    const other = loader.createChatSession('demo')
    other.restore(saved)
    expect(other.history).toEqual(history)
  }, 180_000)

  test("a long answer under 'auto' (llama.cpp searches its trigger through all of it) ends normally", async () => {
    const key = 'tools-long'
    loader.registerModel(key, {
      files: { q4: { path: haveTwin ? twin.templated('qwen2.5', FAMILIES[0].templates) : GGUF } },
    })
    const r = await loader.generate(
      key,
      [{ role: 'user', content: 'Write a very long story about a lighthouse keeper.' }],
      {
        tools: TOOLS,
        temperature: 0.7,
        seed: 7,
        repeatPenalty: 1.3,
        maxTokens: 1400,
      },
    )
    expect(['eos', 'maxTokens', 'contextFull', 'toolCalls']).toContain(r.finishReason)
    if (r.finishReason === 'toolCalls') expectValidCalls(r.toolCalls)
    await loader.unloadModel(key)
  }, 300_000)

  test('eight worker_threads call tools on one loaded model', async () => {
    loader.registerModel('tools-workers', { files: { q4: { path: GGUF } } })
    const runs = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        inWorker('llm-worker.js', {
          mode: 'tool-call',
          key: 'tools-workers',
          messages: ASK,
          options: {
            tools: TOOLS,
            toolChoice: i % 2 ? 'required' : { name: 'add' },
            temperature: 0.8,
            seed: i + 1,
            maxTokens: 96,
          },
        }),
      ),
    )
    for (const [i, r] of runs.entries()) {
      expect(r.result.finishReason).toBe('toolCalls')
      expect(r.events).toEqual(r.result.toolCalls)
      expectValidCalls(r.events)
      if (i % 2 === 0) expect(r.events.every((c) => c.name === 'add')).toBe(true)
    }
    expect(loader.getStats().models.find((m) => m.key === 'tools-workers').loads).toBe(1)
    await loader.unloadModel('tools-workers')
  }, 180_000)

  test('bad tools, choices and messages are coded errors', async () => {
    const gen = (opts, messages = ASK) => loader.generate('demo', messages, { maxTokens: 4, ...opts })
    await expectCode(gen({ tools: [{ name: 'bad name!' }] }), 'INVALID_OPTION')
    await expectCode(gen({ tools: [] }), 'INVALID_OPTION')
    await expectCode(gen({ tools: [WEATHER, WEATHER] }), 'INVALID_OPTION')
    await expectCode(gen({ tools: TOOLS, toolChoice: { name: 'nope' } }), 'INVALID_OPTION')
    await expectCode(gen({ tools: TOOLS, toolChoice: 'sometimes' }), 'INVALID_OPTION')
    await expectCode(gen({ toolChoice: 'required' }), 'INVALID_OPTION')
    await expectCode(gen({ tools: TOOLS, jsonSchema: { type: 'object' } }), 'INVALID_OPTION')
    await expectCode(
      gen({
        tools: [
          {
            name: 'f',
            parameters: { type: 'object', properties: { x: { type: 'string', contentEncoding: 'base64' } } },
          },
        ],
      }),
      'SCHEMA_UNSUPPORTED',
    )
    await expectCode(gen({ tools: [{ name: 'f', parameters: { type: 'string' } }] }), 'INVALID_OPTION')
    // A schema whose grammar would be megabytes of rules for llama.cpp to parse (tools'
    // grammars are held to the same bound; tools that large do not fit a prompt here).
    const huge = {
      type: 'object',
      properties: { x: { enum: Array.from({ length: 6000 }, (_, i) => `choice-${i}-${'x'.repeat(40)}`) } },
    }
    const big = await expectCode(gen({ jsonSchema: huge, schemaEngine: 'llama.cpp' }), 'SCHEMA_UNSUPPORTED')
    expect(big.message).toMatch(/too large/)
    await expectCode(gen({}, [{ role: 'user', content: 'x', toolCalls: [] }]), 'INVALID_INPUT')
    await expectCode(gen({}, [{ role: 'assistant', toolCalls: [{ name: 'f', arguments: '[1]' }] }]), 'INVALID_INPUT')
    await expectCode(gen({}, [{ role: 'user', content: 'x', toolCallId: 'a' }]), 'INVALID_INPUT')
    // A call it had to make, cut by maxTokens.
    await expectCode(gen({ tools: TOOLS, toolChoice: 'required', maxTokens: 4 }), 'OUTPUT_INCOMPLETE')
  }, 60_000)
})

// Each family's real template (test fixtures: __tests__/fixtures/templates/README.md).
const FAMILIES = [
  {
    name: 'qwen2.5',
    templates: { default: 'Qwen-Qwen2.5-7B-Instruct.jinja' },
    family: 'hermes',
    marker: '<tool_call>',
  },
  { name: 'qwen3', templates: { default: 'Qwen-Qwen3-0.6B.jinja' }, family: 'hermes', marker: '<tool_call>' },
  {
    name: 'hermes3',
    templates: {
      default: 'Qwen-Qwen2.5-7B-Instruct.jinja',
      tool_use: 'NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja',
    },
    family: 'hermes',
    marker: '<tool_call>',
  },
  {
    name: 'llama3.1',
    templates: { default: 'meta-llama-Llama-3.1-8B-Instruct.jinja' },
    family: 'llama3',
    marker: '"parameters"',
  },
  {
    name: 'llama3.2',
    templates: { default: 'meta-llama-Llama-3.2-3B-Instruct.jinja' },
    family: 'llama3',
    marker: '"parameters"',
  },
  {
    name: 'mistral-nemo',
    templates: { default: 'mistralai-Mistral-Nemo-Instruct-2407.jinja' },
    family: 'mistral',
    marker: '[TOOL_CALLS]',
  },
  {
    name: 'phi3.5',
    templates: { default: 'microsoft-Phi-3.5-mini-instruct.jinja' },
    family: 'generic',
    marker: '"tool_calls"',
  },
  { name: 'gemma2', templates: { default: 'google-gemma-2-2b-it.jinja' }, family: 'generic', marker: '"tool_calls"' },
  {
    name: 'smollm2',
    templates: { default: 'HuggingFaceTB-SmolLM2-135M-Instruct.jinja' },
    family: 'generic',
    marker: '"tool_calls"',
  },
]

const haveTwin = !twin.missing()
const familyTest = haveTwin ? test : test.skip
if (!haveTwin) console.log(`skipped: the tool-call family tests (${twin.missing()})`)

describe('each template family, end to end', () => {
  for (const f of FAMILIES) {
    familyTest(
      `${f.name}: tools rendered, a forced call constrained and read back, a round trip rendered`,
      async () => {
        const key = `tools-${f.name}`
        loader.registerModel(key, { files: { q4: { path: twin.templated(f.name, f.templates) } }, contextLength: 4096 })
        try {
          const info = await loader.loadModel(key)
          expect(info.supportsTools).toBe(f.family !== 'generic')
          const plain = await loader.countTokens(key, ASK)
          const shown = await loader.countTokens(key, ASK, { tools: TOOLS })
          expect(shown).toBeGreaterThan(plain + 40)
          for (const toolChoice of ['required', { name: 'add' }]) {
            let streamed = ''
            const r = await loader.generate(key, ASK, {
              tools: TOOLS,
              toolChoice,
              temperature: 0,
              maxTokens: 128,
              onToken: (t) => (streamed += t),
            })
            expect(r.finishReason).toBe('toolCalls')
            expectValidCalls(r.toolCalls)
            if (toolChoice.name) expect(r.toolCalls.every((c) => c.name === 'add')).toBe(true)
            expect(streamed).not.toContain(f.marker)
            // The call goes back through the family's history syntax, with its result.
            const call = r.toolCalls[0]
            const messages = [
              ...ASK,
              { role: 'assistant', content: r.text, toolCalls: [call] },
              { role: 'tool', toolCallId: call.id, name: call.name, content: { result: 42 } },
            ]
            const n = await loader.countTokens(key, messages, { tools: TOOLS })
            expect(n).toBeGreaterThan(shown)
            const next = await loader.generate(key, messages, {
              tools: TOOLS,
              toolChoice: 'none',
              temperature: 0,
              maxTokens: 4,
            })
            expect(next.toolCalls).toBeUndefined()
          }
          // A stop string never lets a call's opening through to the stream.
          let stopped = ''
          const cut = await loader
            .generate(key, ASK, {
              tools: TOOLS,
              toolChoice: 'required',
              temperature: 0,
              maxTokens: 128,
              stop: ['}'],
              onToken: (t) => (stopped += t),
            })
            .catch((e) => e)
          expect(stopped).not.toContain(f.marker)
          // The call it had to make, cut by the stop string: OUTPUT_INCOMPLETE.
          expect(cut.code).toBe('OUTPUT_INCOMPLETE')
          // 'auto' leaves the model free until a call opens; whatever it says is read.
          const auto = await loader.generate(key, ASK, { tools: TOOLS, temperature: 0, maxTokens: 48 })
          if (auto.finishReason === 'toolCalls') expectValidCalls(auto.toolCalls)
        } finally {
          await loader.unloadModel(key)
        }
      },
      300_000,
    )
  }
})

/**
 * A server on 127.0.0.1 speaking OpenAI's chat protocol that answers every chat request
 * with one streamed call (id and name first, then the arguments' JSON in pieces, then
 * `finish_reason: 'tool_calls'`), as OpenAI, vLLM and llama.cpp's server stream them;
 * it keeps each request's body. llama-server on the demo model does not make calls
 * (its grammar for `tool_choice` waits for a `<tool_call>` token the demo vocabulary
 * lacks), so the reading of a server's calls is tested here and the sending against it.
 */
async function callingServer() {
  const http = require('node:http')
  const s = { bodies: [] }
  s.server = http.createServer((req, res) => {
    let data = ''
    req.on('data', (c) => (data += c))
    req.on('end', () => {
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/json' })
        return res.end(
          JSON.stringify(req.url.startsWith('/v1/models') ? { data: [{ id: 'caller' }] } : { status: 'ok' }),
        )
      }
      const body = JSON.parse(data)
      s.bodies.push(body)
      const chunk = (delta, finish = null) =>
        `data: ${JSON.stringify({ choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`
      const args = JSON.stringify({ city: 'Paris', unit: 'celsius' })
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write(chunk({ role: 'assistant', content: null }))
      res.write(
        chunk({
          tool_calls: [
            { index: 0, id: 'call_abc123', type: 'function', function: { name: 'get_weather', arguments: '' } },
          ],
        }),
      )
      for (let i = 0; i < args.length; i += 7)
        res.write(chunk({ tool_calls: [{ index: 0, function: { arguments: args.slice(i, i + 7) } }] }))
      res.write(chunk({}, 'tool_calls'))
      res.write(`data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 50, completion_tokens: 12 } })}\n\n`)
      res.end('data: [DONE]\n\n')
    })
  })
  await new Promise((r) => s.server.listen(0, '127.0.0.1', r))
  s.url = `http://127.0.0.1:${s.server.address().port}`
  s.close = () => new Promise((r) => s.server.close(r))
  return s
}

describe('remote models pass tools through', () => {
  let server
  let caller
  beforeAll(async () => {
    // The demo model with Qwen2.5's template, which llama.cpp's server renders tools with.
    const model = haveTwin ? twin.templated('qwen2.5', FAMILIES[0].templates) : GGUF
    ;[server, caller] = await Promise.all([
      startServer({ model, alias: 'smollm2-tools', jinja: true, parallel: 1 }),
      callingServer(),
    ])
    loader.registerModel('remote-tools', { remote: { url: server.url, model: 'smollm2-tools' } })
    loader.registerModel('remote-caller', { remote: { url: caller.url, model: 'caller' } })
  }, 600_000)
  afterAll(async () => {
    if (caller) caller.server.closeAllConnections()
    await Promise.all([server && server.stop(), caller && caller.close()])
  })

  test("llama.cpp's server is sent the tools, the calls and the results", async () => {
    const plain = await loader.generate('remote-tools', ASK, { temperature: 0, maxTokens: 1 })
    const shown = await loader.generate('remote-tools', ASK, { tools: TOOLS, temperature: 0, maxTokens: 1 })
    const total = (r) => r.timings.promptTokens + r.timings.reusedPromptTokens
    expect(total(shown)).toBeGreaterThan(total(plain) + 40)
    const call = { id: 'call_1', name: 'get_weather', arguments: { city: 'Paris', unit: 'celsius' } }
    const messages = [
      ...ASK,
      { role: 'assistant', content: '', toolCalls: [call] },
      { role: 'tool', toolCallId: call.id, content: { temperature: 21 } },
    ]
    const after = await loader.generate('remote-tools', messages, { tools: TOOLS, temperature: 0, maxTokens: 1 })
    expect(total(after)).toBeGreaterThan(total(shown) + 10)
  }, 300_000)

  test("a server's streamed calls come back as toolCalls, and the request has OpenAI's shape", async () => {
    const r = await loader.generate('remote-caller', ASK, {
      tools: TOOLS,
      toolChoice: { name: 'get_weather' },
      maxTokens: 64,
    })
    expect(r.finishReason).toBe('toolCalls')
    expect(r.toolCalls).toEqual([
      { id: 'call_abc123', name: 'get_weather', arguments: { city: 'Paris', unit: 'celsius' } },
    ])
    const body = caller.bodies.at(-1)
    expect(body.tools).toEqual(
      TOOLS.map((t) => ({
        type: 'function',
        function: { name: t.name, parameters: t.parameters, description: t.description },
      })),
    )
    expect(body.tool_choice).toEqual({ type: 'function', function: { name: 'get_weather' } })
    expect(body.parallel_tool_calls).toBe(false)
    const stream = loader.generateStream(
      'remote-caller',
      [
        ...ASK,
        { role: 'assistant', content: '', toolCalls: r.toolCalls },
        { role: 'tool', toolCallId: 'call_abc123', content: 'sunny' },
      ],
      {
        tools: TOOLS,
        toolChoice: 'required',
        maxTokens: 64,
      },
    )
    const events = []
    for await (const step of stream) if (typeof step !== 'string') events.push(step.toolCall)
    expect(events).toEqual(stream.result.toolCalls)
    expect(events).toEqual(r.toolCalls)
    const sent = caller.bodies.at(-1).messages
    expect(sent[2]).toEqual({
      role: 'assistant',
      content: '',
      tool_calls: [
        {
          id: 'call_abc123',
          type: 'function',
          function: { name: 'get_weather', arguments: JSON.stringify({ city: 'Paris', unit: 'celsius' }) },
        },
      ],
    })
    expect(sent[3]).toEqual({ role: 'tool', content: 'sunny', tool_call_id: 'call_abc123' })
    // 'none' sends no tools.
    await loader.generate('remote-caller', ASK, { tools: TOOLS, toolChoice: 'none', maxTokens: 64 })
    expect(caller.bodies.at(-1).tools).toBeUndefined()
  }, 120_000)
})
