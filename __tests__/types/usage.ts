// Compiled by `tsc --noEmit` in the test command: proves index.d.ts describes the API
// the way users call it. The @ts-expect-error lines prove that misuse is rejected.
import {
  getSharedEmbeddingClient,
  SharedEmbeddingClient,
  type EmbeddingClientOptions,
  type EmbedOptions,
  type EmbeddingStats,
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

  void [model, one, many, flat, n]
}

void usage
