'use strict'
// Constrained generation through the public API: JSON schemas (the answer parses and
// validates, checked here by Ajv, an independent validator), GBNF grammars, the keywords
// that are refused, and answers cut short.
const Ajv2020 = require('ajv/dist/2020').default
const addFormats = require('ajv-formats').default
const { getModelLoader } = require('..')
const { expectCode } = require('./helpers')

const ajv = addFormats(new Ajv2020({ strict: true, allErrors: true }))
const loader = getModelLoader()

// Every string and array is bounded, so every answer is: with maxTokens above that bound
// an answer can only end complete.
const SCHEMAS = {
  person: {
    type: 'object',
    properties: {
      name: { type: 'string', minLength: 1, maxLength: 24 },
      age: { type: 'integer', minimum: 0, maximum: 120 },
      city: { type: 'string', maxLength: 24 },
    },
    required: ['name', 'age', 'city'],
    additionalProperties: false,
  },
  recipe: {
    type: 'object',
    properties: {
      title: { type: 'string', maxLength: 32 },
      vegetarian: { type: 'boolean' },
      minutes: { type: 'integer', minimum: 1, maximum: 600 },
      ingredients: { type: 'array', items: { type: 'string', maxLength: 20 }, minItems: 1, maxItems: 4 },
    },
    required: ['title', 'vegetarian', 'minutes', 'ingredients'],
    additionalProperties: false,
  },
  review: {
    type: 'object',
    properties: {
      sentiment: { enum: ['positive', 'negative', 'neutral'] },
      score: { type: 'number' },
      summary: { type: 'string', maxLength: 40 },
      date: { type: 'string', format: 'date' },
      code: { type: 'string', pattern: '^[A-Z]{3}-[0-9]{2}$' },
    },
    required: ['sentiment', 'score', 'summary', 'date', 'code'],
    additionalProperties: false,
  },
  event: {
    type: 'object',
    properties: {
      kind: { const: 'event' },
      place: { $ref: '#/$defs/place' },
      tags: { type: 'array', items: { anyOf: [{ type: 'string', maxLength: 12 }, { type: 'null' }] }, maxItems: 3 },
    },
    required: ['kind', 'place', 'tags'],
    additionalProperties: false,
    $defs: {
      place: {
        type: 'object',
        properties: { name: { type: 'string', maxLength: 20 }, floor: { type: 'integer', minimum: -2, maximum: 40 } },
        required: ['name', 'floor'],
        additionalProperties: false,
      },
    },
  },
}

const SUBJECTS = [
  'a retired sailor',
  'a young painter in Lyon',
  'a chess champion',
  'a baker who loves bread',
  'a robot learning to dance',
  'a librarian in Cairo',
  'a famous violinist',
  'a child who collects stones',
  'an astronaut on Mars',
  'a gardener in Kyoto',
  'a detective in London',
  'a farmer with three goats',
  'a teacher of mathematics',
  'a pilot flying at night',
  'a poet who hates rain',
  'a nurse in a small village',
  'a carpenter building a boat',
  'a singer in a jazz club',
  'a shy programmer',
  'a mountain guide',
  'a cat that owns a hotel',
  'a tired museum guard',
  'a street musician in Rome',
  'a scientist studying bees',
  'a grandmother who runs marathons',
]

const ASK = {
  person: (s) => `Invent a person: ${s}. Answer in JSON with name, age and city.`,
  recipe: (s) => `Invent a recipe that ${s} would cook. Answer in JSON.`,
  review: (s) => `Write a short review of a film about ${s}, as JSON.`,
  event: (s) => `Describe an event organised by ${s}, as JSON.`,
}

describe('jsonSchema', () => {
  test('100 of 100 sampled answers (temperature 0.8) parse and validate against their schemas', async () => {
    const failures = []
    let n = 0
    for (const [name, schema] of Object.entries(SCHEMAS)) {
      const validate = ajv.compile(schema)
      for (const [i, subject] of SUBJECTS.entries()) {
        n++
        const r = await loader.generate('demo', ASK[name](subject), {
          jsonSchema: schema,
          temperature: 0.8,
          seed: 1000 + i,
          maxTokens: 400,
        })
        let parsed
        try {
          parsed = JSON.parse(r.text)
        } catch (e) {
          failures.push({ name, subject, text: r.text, error: e.message })
          continue
        }
        if (!validate(parsed)) failures.push({ name, subject, text: r.text, errors: validate.errors })
        // The result carries the same value, parsed.
        expect(r.json).toEqual(parsed)
        expect(r.finishReason).toBe('eos')
      }
    }
    expect(n).toBe(100)
    expect(failures).toEqual([])
  }, 600_000)

  test('the stream yields the JSON text piece by piece and its result holds the value', async () => {
    const opts = { jsonSchema: SCHEMAS.person, temperature: 0, maxTokens: 200 }
    const whole = await loader.generate('demo', ASK.person('a sailor'), opts)
    const stream = loader.generateStream('demo', ASK.person('a sailor'), opts)
    let text = ''
    let pieces = 0
    for await (const piece of stream) {
      text += piece
      pieces++
    }
    expect(pieces).toBeGreaterThan(3)
    expect(text).toBe(whole.text)
    expect(stream.result.json).toEqual(JSON.parse(text))
    expect(ajv.validate(SCHEMAS.person, whole.json)).toBe(true)
  })

  test('greedy constrained output is the greedy choice wherever the schema allows it', async () => {
    // A schema anything matches changes nothing: the text is what unconstrained greedy
    // decoding writes when that is a JSON value.
    const free = await loader.generate('demo', 'Reply with the JSON array [1, 2, 3] and nothing else.', {
      temperature: 0,
      maxTokens: 30,
    })
    const constrained = await loader.generate('demo', 'Reply with the JSON array [1, 2, 3] and nothing else.', {
      temperature: 0,
      maxTokens: 30,
      jsonSchema: { type: 'array', items: { type: 'integer' }, maxItems: 5 },
    })
    expect(Array.isArray(constrained.json)).toBe(true)
    expect(constrained.json.every(Number.isInteger)).toBe(true)
    if (free.text.trim().startsWith('[1, 2, 3]')) expect(constrained.json).toEqual([1, 2, 3])
  })

  test('an answer cut by maxTokens before its JSON ends is OUTPUT_INCOMPLETE', async () => {
    const e = await expectCode(
      loader.generate('demo', ASK.recipe('a chef'), { jsonSchema: SCHEMAS.recipe, maxTokens: 4, temperature: 0 }),
      'OUTPUT_INCOMPLETE',
    )
    expect(e.message).toMatch(/maxTokens/)
  })

  test.each([
    [{ type: 'number', multipleOf: 3 }, /multipleOf/],
    [{ type: 'array', items: { type: 'string' }, uniqueItems: true }, /uniqueItems/],
    [{ type: 'string', format: 'email' }, /format "email"/],
    [{ type: 'number', minimum: 1 }, /integers only/],
    [{ type: 'string', pattern: '[a-z]+' }, /anchored/],
    [{ type: 'string', pattern: '^\\d+$' }, /\\d/],
    [{ type: 'object', properties: { a: { not: { type: 'null' } } } }, /#\/properties\/a: `not`/],
    [{ $ref: 'https://example.com/schema.json' }, /only references/],
    [{ type: 'object', if: { required: ['a'] }, then: { required: ['b'] } }, /`if`/],
    [{ allOf: [{ type: 'string' }, { maxLength: 5 }] }, /`allOf`/],
    [{ type: 'string', maxLength: 5000 }, /from 0 to 2000/],
    // `.` could write a raw quote or backslash into the JSON string.
    [{ type: 'string', pattern: '^.{1,40}$' }, /`\.`/],
    [{ type: 'string', pattern: '^[a-z]+$', maxLength: 5 }, /together/],
    [{ type: 'object', required: ['id'] }, /required "id"/],
    [{ type: 'string', anyOf: [{ maxLength: 3 }] }, /beside `anyOf`/],
  ])("with schemaEngine 'llama.cpp', %j is SCHEMA_UNSUPPORTED, never silently loosened", async (schema, says) => {
    const e = await expectCode(
      loader.generate('demo', 'x', { jsonSchema: schema, schemaEngine: 'llama.cpp' }),
      'SCHEMA_UNSUPPORTED',
    )
    expect(e.message).toMatch(says)
  })

  test('malformed schemas and options are INVALID_OPTION', async () => {
    await expectCode(loader.generate('demo', 'x', { jsonSchema: 42 }), 'INVALID_OPTION')
    for (const engine of [{}, { schemaEngine: 'llama.cpp' }]) {
      for (const jsonSchema of [{ properties: [] }, { type: 'object', required: 'a' }, { anyOf: { type: 'string' } }])
        await expectCode(loader.generate('demo', 'x', { ...engine, jsonSchema }), 'INVALID_OPTION')
    }
    await expectCode(
      loader.generate('demo', 'x', { jsonSchema: { type: 'string' }, grammar: 'root ::= "a"' }),
      'INVALID_OPTION',
    )
    // A $ref that leads nowhere passes the keyword check and fails the conversion.
    await expectCode(loader.generate('demo', 'x', { jsonSchema: { $ref: '#/$defs/none' } }), 'SCHEMA_UNSUPPORTED')
  })
})

test('sampling that lands on a refused token (a temperature so low every probability is NaN) still follows the schema', async () => {
  const r = await loader.generate('demo', ASK.person('a sailor'), {
    jsonSchema: SCHEMAS.person,
    temperature: 1e-39,
    topP: 1,
    minP: 0,
    maxTokens: 200,
  })
  expect(ajv.validate(SCHEMAS.person, r.json)).toBe(true)
})

describe('grammar', () => {
  test('a GBNF grammar is followed, however the model would rather answer', async () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const r = await loader.generate('demo', 'Is Paris the capital of France? Explain at length.', {
        grammar: 'root ::= ("yes" | "no") "." ',
        temperature: 0.8,
        seed,
        maxTokens: 20,
      })
      expect(['yes.', 'no.']).toContain(r.text)
      expect(r.finishReason).toBe('eos')
      expect(r.json).toBeUndefined()
    }
  })

  test.each([
    ['not GBNF', 'this is not a grammar'],
    ['no root rule', 'answer ::= "a"'],
    ['left recursion', 'root ::= root "a" | "b"'],
    ['nesting too deep', `root ::= ${'('.repeat(100)}"a"${')'.repeat(100)}`],
    ['nesting hidden behind a comment', `# [ "\nroot ::= ${'('.repeat(100)}"a"${')'.repeat(100)}`],
    ['empty', '  '],
  ])('%s is INVALID_OPTION', async (_, grammar) => {
    await expectCode(loader.generate('demo', 'x', { grammar }), 'INVALID_OPTION')
  })
})

describe('schema engines: llguidance (the default) and llama.cpp', () => {
  // Keywords llama.cpp's conversion cannot enforce (each is SCHEMA_UNSUPPORTED with it,
  // above) and llguidance does.
  const BEYOND = {
    type: 'object',
    properties: {
      ip: { type: 'string', format: 'ipv4' },
      price: { type: 'number', minimum: 0.5, maximum: 99.5 },
      count: { type: 'integer', multipleOf: 5, minimum: 0, maximum: 100 },
      tags: { type: 'array', items: { type: 'string', pattern: '^\\w{1,8}$' }, minItems: 1, maxItems: 3 },
      name: {
        allOf: [
          { type: 'string', maxLength: 20 },
          { type: 'string', minLength: 2 },
        ],
      },
      extra: {
        type: 'object',
        patternProperties: { '^x_[a-z]{1,6}$': { type: 'integer', minimum: -1000, maximum: 1000 } },
        additionalProperties: false,
        maxProperties: 2,
      },
    },
    required: ['ip', 'price', 'count', 'tags', 'name', 'extra'],
    additionalProperties: false,
  }
  const llguidance = { schemaEngine: 'llguidance' }

  test('sampled answers (temperature 0.8) parse and validate: by default with keywords llama.cpp cannot enforce, and with llama.cpp', async () => {
    const failures = []
    const cases = [
      // The default engine (no option): these keywords would be refused by llama.cpp's.
      ...SUBJECTS.slice(0, 10).map((s) => [BEYOND, `Invent a product sold by ${s}, as JSON.`, {}]),
      ...Object.entries(SCHEMAS).flatMap(([name, schema]) =>
        SUBJECTS.slice(0, 5).map((s) => [schema, ASK[name](s), { schemaEngine: 'llama.cpp' }]),
      ),
    ]
    for (const [i, [schema, ask, engine]] of cases.entries()) {
      const r = await loader.generate('demo', ask, {
        ...engine,
        jsonSchema: schema,
        temperature: 0.8,
        seed: i,
        maxTokens: 400,
      })
      let parsed
      try {
        parsed = JSON.parse(r.text)
      } catch (e) {
        failures.push({ ask, text: r.text, error: e.message })
        continue
      }
      if (!ajv.validate(schema, parsed)) failures.push({ ask, text: r.text, errors: ajv.errors })
      expect(r.json).toEqual(parsed)
      expect(r.finishReason).toBe('eos')
    }
    expect(cases).toHaveLength(30)
    expect(failures).toEqual([])
  }, 600_000)

  test('greedy answers are the same as with llama.cpp’s grammar where both allow the model’s choices', async () => {
    const opts = { jsonSchema: SCHEMAS.person, temperature: 0, maxTokens: 200 }
    const llama = await loader.generate('demo', ASK.person('a sailor'), { ...opts, schemaEngine: 'llama.cpp' })
    const guided = await loader.generate('demo', ASK.person('a sailor'), opts)
    expect(guided.text).toBe(llama.text)
    expect(ajv.validate(SCHEMAS.person, guided.json)).toBe(true)
  })

  test('streams yield the JSON piece by piece, with either engine', async () => {
    const stream = loader.generateStream('demo', ASK.recipe('a chef'), {
      schemaEngine: 'llama.cpp',
      jsonSchema: SCHEMAS.recipe,
      temperature: 0,
      maxTokens: 300,
    })
    let text = ''
    for await (const piece of stream) text += piece
    expect(stream.result.json).toEqual(JSON.parse(text))
    expect(ajv.validate(SCHEMAS.recipe, stream.result.json)).toBe(true)
  })

  test.each([
    [{ type: 'array', items: { type: 'string' }, uniqueItems: true }, /uniqueItems/],
    [{ type: 'object', properties: { a: { not: { type: 'null' } } } }, /not/],
    [{ type: 'object', if: { required: ['a'] }, then: { required: ['b'] } }, /if/],
    [{ type: 'string', format: 'made-up' }, /made-up/],
    [{ $ref: '#/$defs/none' }, /none/],
  ])('by default, %j is SCHEMA_UNSUPPORTED (llguidance refuses what it does not implement)', async (schema, says) => {
    const e = await expectCode(loader.generate('demo', 'x', { jsonSchema: schema }), 'SCHEMA_UNSUPPORTED')
    expect(e.message).toMatch(says)
  })

  test('goes with jsonSchema only, and names one of the two engines', async () => {
    await expectCode(loader.generate('demo', 'x', { ...llguidance, grammar: 'root ::= "a"' }), 'INVALID_OPTION')
    await expectCode(loader.generate('demo', 'x', llguidance), 'INVALID_OPTION')
    await expectCode(
      loader.generate('demo', 'x', { jsonSchema: { type: 'string' }, schemaEngine: 'outlines' }),
      'INVALID_OPTION',
    )
    // Each engine, named.
    for (const schemaEngine of ['llama.cpp', 'llguidance']) {
      const r = await loader.generate('demo', 'Say yes.', {
        jsonSchema: { enum: ['yes', 'no'] },
        schemaEngine,
        maxTokens: 10,
      })
      expect(['yes', 'no']).toContain(r.json)
    }
  })

  test('schemas nested as deep as a JS value may be are compiled without harm; deeper ones are refused', async () => {
    const nest = (n) => {
      let s = { type: 'string' }
      for (let i = 0; i < n; i++) s = { type: 'array', items: s }
      return s
    }
    // 63 nested schemas: an answer starts, and is cut by maxTokens, or closes early with
    // arrays left empty (valid at any depth; what the model picks differs between CPUs).
    const deep = await loader.generate('demo', 'x', { ...llguidance, jsonSchema: nest(63), maxTokens: 20 }).then(
      (r) => ({ array: Array.isArray(r.json) }),
      (e) => ({ code: e.code }),
    )
    expect([{ code: 'OUTPUT_INCOMPLETE' }, { array: true }]).toContainEqual(deep)
    await expectCode(loader.generate('demo', 'x', { ...llguidance, jsonSchema: nest(70) }), 'INVALID_OPTION')
  })
})
