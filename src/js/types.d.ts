/* The hand-written head of index.d.ts (src/js/types.d.ts); napi build prepends it to the generated declarations. */

/** Options of `getSharedEmbeddingClient`. The first client of a model decides its
 * batching, queue and thread settings; later clients share them. */
export interface EmbeddingClientOptions {
  /** A model name: a directory under ORION_MODELS_DIR (default `all-MiniLM-L6-v2`). */
  model?: string
  /** A directory holding model.onnx and the tokenizer files; wins over `model`. */
  modelPath?: string
  /** Default per-request timeout (default 30000, or ORION_EMBEDDING_TIMEOUT_MS). */
  timeoutMs?: number
  /** Size of the shared cache in bytes (default 32 MiB, or ORION_EMBEDDING_CACHE_BYTES). */
  cacheBytes?: number
  /** Most texts per model call (default 32). */
  maxBatchSize?: number
  /** How long a first queued text waits for company, in ms (default 2). */
  maxWaitMs?: number
  /** Most texts waiting before requests are rejected with OVERLOADED (default 10000). */
  maxQueue?: number
  /** ONNX Runtime intra-op threads (default: every core). */
  threads?: number
}

/** Per-call options of the embedding methods. */
export interface EmbedOptions {
  /** Overrides the client's timeout for this call. */
  timeoutMs?: number
  /** Rejects the call with code ABORTED when it fires. */
  signal?: AbortSignal
}

/** The stable codes of orion-native errors (`err.code`). */
export type OrionErrorCode =
  | 'INVALID_INPUT'
  | 'INVALID_OPTION'
  | 'MODEL_NOT_FOUND'
  | 'MODEL_LOAD_FAILED'
  | 'RUNTIME_NOT_FOUND'
  | 'EMBEDDING_TIMEOUT'
  | 'OVERLOADED'
  | 'ABORTED'
  | 'INFERENCE_FAILED'
  | 'INTERNAL'
