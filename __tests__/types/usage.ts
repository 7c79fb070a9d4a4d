// Compiled by `tsc --noEmit` in the test command: proves index.d.ts describes the API
// the way users call it. The @ts-expect-error lines prove that misuse is rejected.
import {
  getMemoryMonitor,
  MemoryMonitor,
  type MemorySnapshot,
  type MemoryMonitorStats,
  type MemoryAlert,
  getModelLoader,
  applyQuantization,
  getOptimizationStrategy,
  QUANTIZATION_LEVELS,
  ModelLoader,
  TokenStream,
  ChatSession,
  type ModelInfo,
  type ModelLoaderStats,
  type GenerateResult,
  type ToolCall,
  type ToolCallEvent,
  type ToolDefinition,
  type OptimizationStrategy,
  type QuantizationLevel,
  getSharedEmbeddingClient,
  SharedEmbeddingClient,
  type EmbeddingClientOptions,
  type EmbedOptions,
  type EmbeddingStats,
  getSharedReranker,
  SharedReranker,
  type RerankResult,
  type RerankerStats,
} from '../../index'

async function usage(): Promise<void> {
  const options: EmbeddingClientOptions = { timeoutMs: 5000, cacheBytes: 1 << 20, maxBatchSize: 16, maxWaitMs: 2 }
  const client: SharedEmbeddingClient = getSharedEmbeddingClient(options)
  const defaultClient = getSharedEmbeddingClient()
  const model: string = defaultClient.model

  const one: number[] = await client.createEmbedding('hello')
  const call: EmbedOptions = { timeoutMs: 100, signal: new AbortController().signal }
  const many: number[][] = await client.createEmbeddings(['a', 'b'], call)
  const flat: Float32Array = await client.createEmbeddingsFloat32(['a', 'b'])

  const stats: EmbeddingStats = client.getStats()
  const n: number = stats.modelLoads + stats.cacheHits + stats.cacheMisses + stats.queueDepth + stats.meanBatchSize
  client.clearCache()

  // @ts-expect-error texts must be strings
  await client.createEmbedding(42)
  // @ts-expect-error createEmbeddings takes an array
  await client.createEmbeddings('a')
  // @ts-expect-error unknown option
  getSharedEmbeddingClient({ timeout: 5 })

  const loader: ModelLoader = getModelLoader({ maxConcurrentModels: 2, idleTimeoutMs: 60000 })
  const info: ModelInfo = await loader.loadModel('demo', (percent: number) => void percent)
  const loaderStats: ModelLoaderStats = loader.getStats()
  const used: boolean = loader.markModelUsed('demo')
  const result: GenerateResult = await loader.generate('demo', 'Hi', {
    temperature: 0,
    maxTokens: 8,
    stop: ['\n'],
    onToken: (t: string) => void t,
  })
  const chat: GenerateResult = await loader.generate('demo', [{ role: 'user', content: 'Hi' }])
  const stream: TokenStream = loader.generateStream('demo', 'Hi', { maxTokens: 4 })
  for await (const piece of stream) void (piece satisfies string | ToolCallEvent)
  const unloaded: boolean = await loader.unloadModel('demo')
  loader.registerModel('mine', { files: { q4: { path: 'mine.Q4_K_M.gguf' } }, contextLength: 4096 })
  const id: string = applyQuantization('Mistral-7B-Instruct-v0.2', 'q4')
  const level: QuantizationLevel = 'q8'
  const gguf: readonly string[] = QUANTIZATION_LEVELS[level].gguf
  const strategy: OptimizationStrategy = getOptimizationStrategy()

  const shaped: GenerateResult = await loader.generate('demo', 'A person?', {
    jsonSchema: { type: 'object', properties: { name: { type: 'string' } } },
    schemaEngine: 'llama.cpp',
    signal: new AbortController().signal,
    stopOnAbort: true,
  })
  const value: unknown = shaped.json
  const why: 'eos' | 'stop' | 'maxTokens' | 'contextFull' | 'toolCalls' | 'abort' = shaped.finishReason
  await loader.generate('demo', 'yes?', { grammar: 'root ::= "yes" | "no"' })
  const count: number = await loader.countTokens('demo', [{ role: 'user', content: 'Hi' }], { raw: false })
  const ids: number[] = await loader.tokenize('demo', 'Hi', { special: true })
  const back: string = await loader.detokenize('demo', ids)
  const sized: ModelInfo = await loader.loadModel('demo', undefined, { contextSize: 2048 })
  const facts = [sized.architecture, sized.parameterCount, sized.trainedContextLength, sized.supportsTools]
  const session: ChatSession = loader.createChatSession('demo', { system: 'Be brief.', contextShift: true })
  const turn: GenerateResult = await session.send('Hi', { maxTokens: 8 })
  const dropped: number | undefined = turn.droppedMessages
  for await (const piece of session.sendStream({ role: 'user', content: 'More?' }))
    void (piece satisfies string | ToolCallEvent)
  const tools: ToolDefinition[] = [
    { name: 'add', parameters: { type: 'object', properties: { a: { type: 'integer' } } } },
  ]
  const called: GenerateResult = await loader.generate('demo', 'Add', {
    tools,
    toolChoice: { name: 'add' },
    parallelToolCalls: false,
  })
  const calls: ToolCall[] | undefined = called.toolCalls
  for await (const piece of loader.generateStream('demo', 'Add', { tools, toolChoice: 'required' }))
    if (typeof piece !== 'string') void (piece.toolCall satisfies ToolCall)
  await loader.generate('demo', [
    { role: 'user', content: 'Add' },
    { role: 'assistant', content: '', toolCalls: calls },
    { role: 'tool', toolCallId: calls?.[0]?.id, content: { sum: 3 } },
  ])
  await loader.countTokens('demo', 'Add', { tools, toolChoice: 'none' })
  // @ts-expect-error toolChoice is 'auto', 'none', 'required' or { name }
  await loader.generate('demo', 'Add', { tools, toolChoice: 'always' })
  session.restore(session.save())
  session.reset()
  const kept: { role: string; content: string }[] = session.history
  // @ts-expect-error contextShift is a boolean
  loader.createChatSession('demo', { contextShift: 'no' })
  void [value, why, count, back, facts, dropped, kept]

  // @ts-expect-error unknown quantization level
  applyQuantization('m', 'q9')
  // @ts-expect-error roles are limited
  await loader.generate('demo', [{ role: 'wizard', content: 'Hi' }])

  const monitor: MemoryMonitor = getMemoryMonitor({ budgetBytes: 2 * 1024 ** 3, freeAt: 'high' })
  const snap: MemorySnapshot = await monitor.takeSnapshot()
  const pressure: 'low' | 'medium' | 'high' | 'critical' = snap.pressure
  const recs: string[] = snap.recommendations
  const history: MemorySnapshot[] = monitor.getSnapshots()
  const monitorStats: MemoryMonitorStats = monitor.getStats()
  const alerts: MemoryAlert[] = monitor.getAlerts()
  const has: boolean = monitor.hasAlerts
  // @ts-expect-error freeAt is high or critical
  getMemoryMonitor({ freeAt: 'low' })

  void [pressure, recs, history, monitorStats, alerts, has]

  const reranker: SharedReranker = getSharedReranker({ modelPath: '/models/ms-marco', precision: 'int8' })
  const ranked: RerankResult[] = await reranker.rerank('q', ['a', 'b'], { topK: 1 })
  const rerankerStats: RerankerStats = reranker.getStats()
  const rerankPrecision: 'exact' | 'int8' | undefined = rerankerStats.precision
  // @ts-expect-error precision is exact or int8
  getSharedReranker({ modelPath: '/models/ms-marco', precision: 'fp16' })
  const shorter = getSharedEmbeddingClient({ remote: { url: 'http://gpu:8080', model: 'm', dimensions: 256 } })
  void [ranked, rerankPrecision, shorter]
  void [model, one, many, flat, n, info, loaderStats, used, result, chat, unloaded, id, gguf, strategy]
}

void usage
