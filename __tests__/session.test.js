'use strict'
// Chat sessions through the public API: the history kept by the addon, the kept prefix
// between turns, the oldest exchanges dropped when a turn would not fit (or
// PROMPT_TOO_LONG with contextShift off), streaming, saving and restoring.
const path = require('node:path')
const { getModelLoader } = require('..')
const { expectCode, expectThrowCode, llmModelDir } = require('./helpers')

const GGUF = path.join(llmModelDir, 'SmolLM2-135M-Instruct.Q4_1.gguf')
const loader = getModelLoader()

afterAll(async () => {
  for (const k of ['session-2048', 'session-512']) await loader.unloadModel(k)
})

test('with stopOnAbort, an aborted turn keeps its partial answer in the history and the session goes on', async () => {
  const chat = loader.createChatSession('demo')
  const ac = new AbortController()
  let pieces = 0
  const cut = await chat.send('Tell me a long story about a dragon.', {
    temperature: 0,
    maxTokens: 300,
    signal: ac.signal,
    stopOnAbort: true,
    onToken: () => {
      if (++pieces === 4) ac.abort()
    },
  })
  expect(cut.finishReason).toBe('abort')
  expect(cut.text.length).toBeGreaterThan(0)
  expect(chat.history).toEqual([
    { role: 'user', content: 'Tell me a long story about a dragon.' },
    { role: 'assistant', content: cut.text },
  ])
  const next = await chat.send('Say hello.', { temperature: 0, maxTokens: 16 })
  expect(next.finishReason).not.toBe('abort')
  expect(chat.history).toHaveLength(4)
  // Without stopOnAbort, an aborted turn rejects and leaves the history as it was.
  const ac2 = new AbortController()
  let n = 0
  await expectCode(
    chat.send('Another story, please.', {
      temperature: 0,
      maxTokens: 300,
      signal: ac2.signal,
      onToken: () => {
        if (++n === 3) ac2.abort()
      },
    }),
    'ABORTED',
  )
  expect(chat.history).toHaveLength(4)
})

test('a session keeps its history and evaluates only each new turn', async () => {
  const chat = loader.createChatSession('demo', { system: 'You are a helpful assistant. Answer briefly.' })
  expect(chat.modelKey).toBe('demo')
  const first = await chat.send('What is the capital of France?', { temperature: 0, maxTokens: 24 })
  expect(first.text).toMatch(/Paris/)
  expect(first.droppedMessages).toBe(0)
  // The first turn's context is kept on a thread of its own after the answer; a turn that
  // starts before that ends takes over what is kept so far. Give it the moment it takes.
  await new Promise((r) => setTimeout(r, 300))
  const second = await chat.send({ role: 'user', content: 'And of Italy?' }, { temperature: 0, maxTokens: 24 })
  expect(second.text.length).toBeGreaterThan(0)
  // The kept context held the first turn: only the new message was evaluated.
  expect(second.timings.reusedPromptTokens).toBeGreaterThan(first.timings.promptTokens)
  expect(chat.history).toEqual([
    { role: 'system', content: 'You are a helpful assistant. Answer briefly.' },
    { role: 'user', content: 'What is the capital of France?' },
    { role: 'assistant', content: first.text },
    { role: 'user', content: 'And of Italy?' },
    { role: 'assistant', content: second.text },
  ])
  // The same prompt through generate gives the same answer: the session sends its history.
  // Its first words only: the session evaluated the first answer a token at a time and
  // generate evaluates it in one batch, and where ggml's kernels for one token and for
  // many round differently (AMX's tiles and AVX-512 VNNI, on a Xeon with AMX: "L'Italia,
  // or Italy in Italian, is..." against "L'Italia, or Italy, is..."), greedy answers part later.
  const again = await loader.generate('demo', chat.history.slice(0, 4), { temperature: 0, maxTokens: 24 })
  const words = (t) =>
    t
      .replace(/[^\p{L}\p{N}\s]/gu, '')
      .split(/\s+/)
      .slice(0, 3)
      .join(' ')
  expect(words(again.text)).toBe(words(second.text))

  const saved = JSON.parse(JSON.stringify(chat.save()))
  chat.reset()
  expect(chat.history).toEqual([{ role: 'system', content: 'You are a helpful assistant. Answer briefly.' }])
  const other = loader.createChatSession('demo')
  other.restore(saved)
  expect(other.history).toEqual(chat.history.concat(saved.messages))
  const third = await other.send('Which of the two is further south?', { temperature: 0, maxTokens: 24 })
  expect(other.history).toHaveLength(7)
  expect(third.text.length).toBeGreaterThan(0)
})

test('sendStream streams a turn; leaving early leaves the history as it was', async () => {
  const chat = loader.createChatSession('demo')
  const stream = chat.sendStream('Name three colours.', { temperature: 0, maxTokens: 32 })
  let text = ''
  for await (const piece of stream) text += piece
  expect(stream.result.text).toBe(text)
  expect(stream.result.droppedMessages).toBe(0)
  expect(chat.history.map((m) => m.role)).toEqual(['user', 'assistant'])
  const cut = chat.sendStream('Tell me a long story about a dragon.', { temperature: 0, maxTokens: 200 })
  for await (const piece of cut) {
    expect(typeof piece).toBe('string')
    break
  }
  // The turn stopped: neither its message nor a partial answer joined the history.
  await new Promise((r) => setTimeout(r, 200))
  expect(chat.history).toHaveLength(2)
})

test('a 30-turn story in a 2048-token context keeps going, dropping the oldest exchanges and saying so', async () => {
  loader.registerModel('session-2048', { files: { q4: { path: GGUF } }, contextLength: 2048 })
  const system = 'You are a storyteller. Continue the story the user is telling, one paragraph at a time.'
  const chat = loader.createChatSession('session-2048', { system })
  const turns = []
  for (let i = 1; i <= 30; i++) {
    const r = await chat.send(`Turn ${i}: continue the story of the dragon who learns to paint, with a new scene.`, {
      temperature: 0.7,
      seed: i,
      maxTokens: 100,
    })
    turns.push(r)
    expect(['eos', 'maxTokens']).toContain(r.finishReason)
    // What the next turn is sent with always fits, with room for an answer.
    expect(r.timings.promptTokens + 100).toBeLessThanOrEqual(2048)
  }
  const dropped = turns.reduce((n, r) => n + r.droppedMessages, 0)
  expect(dropped).toBeGreaterThan(0)
  // Whole exchanges go, the system message stays, and the history is what was sent.
  expect(dropped % 2).toBe(0)
  const h = chat.history
  expect(h[0]).toEqual({ role: 'system', content: system })
  expect(h.length).toBe(1 + 60 - dropped)
  expect(h[1].role).toBe('user')
  expect(h.at(-2).content).toMatch(/^Turn 30:/)
  // After a drop, later turns continue from the kept context again.
  const firstDrop = turns.findIndex((r) => r.droppedMessages > 0)
  expect(firstDrop).toBeGreaterThan(3)
  // A drop makes room for several turns (down to half the context), not one: the window
  // is evaluated again only on the turns that drop.
  expect(turns.filter((r) => r.droppedMessages > 0).length).toBeLessThanOrEqual(6)
  const steady = turns.slice(firstDrop + 1).filter((r) => r.droppedMessages === 0)
  expect(steady.some((r) => r.timings.reusedPromptTokens > 0)).toBe(true)
}, 600_000)

test('with contextShift off a turn that does not fit is PROMPT_TOO_LONG and the history stays', async () => {
  loader.registerModel('session-512', { files: { q4: { path: GGUF } }, contextLength: 512 })
  const chat = loader.createChatSession('session-512', { contextShift: false })
  let err
  for (let i = 0; i < 20 && !err; i++) {
    try {
      await chat.send(`Part ${i}: tell me more about the history of Rome, in detail.`, {
        temperature: 0,
        maxTokens: 64,
      })
    } catch (e) {
      err = e
    }
  }
  expect(err?.code).toBe('PROMPT_TOO_LONG')
  const kept = chat.history.length
  await expectCode(chat.send('One more?', { maxTokens: 64 }), 'PROMPT_TOO_LONG')
  expect(chat.history).toHaveLength(kept)
})

test('bad messages, options and saves are coded errors', async () => {
  expectThrowCode(() => loader.createChatSession('gpt-17'), 'UNKNOWN_MODEL')
  expectThrowCode(() => loader.createChatSession('demo', { contextShift: 'no' }), 'INVALID_OPTION')
  expectThrowCode(() => loader.createChatSession('demo', { sytem: 'x' }), 'INVALID_OPTION')
  const chat = loader.createChatSession('demo')
  await expectCode(chat.send(''), 'INVALID_INPUT')
  await expectCode(chat.send(42), 'INVALID_INPUT')
  await expectCode(chat.send({ role: 'system', content: 'x' }), 'INVALID_INPUT')
  await expectCode(chat.send('hi', { maxTokens: 0 }), 'INVALID_OPTION')
  await expectCode(chat.sendStream('hi', { onToken: () => {} }).next(), 'INVALID_OPTION')
  expectThrowCode(() => chat.restore({ messages: [{ role: 'system', content: 'x' }] }), 'INVALID_INPUT')
  expectThrowCode(() => chat.restore({ messages: 'x' }), 'INVALID_INPUT')
  expectThrowCode(() => chat.restore({ history: [] }), 'INVALID_OPTION')
  expectThrowCode(() => chat.restore(), 'INVALID_INPUT')
  expect(chat.history).toEqual([])
  // A new session's save restores (no messages yet).
  const fresh = loader.createChatSession('demo', { system: 'S' })
  chat.restore(fresh.save())
  expect(chat.history).toEqual([{ role: 'system', content: 'S' }])
})
