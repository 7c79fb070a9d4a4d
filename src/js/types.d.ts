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

/** Options of `configure`: process-wide settings from code, seen by every worker_thread. */
export interface ConfigureOptions {
  /** Where models live (else ORION_MODELS_DIR, else the per-user cache directory). */
  modelsDir?: string
  /** The ONNX Runtime shared library to load (else ORT_DYLIB_PATH, else it is searched for). */
  ortLibraryPath?: string
  /** The quantization level for every model (else ORION_DEFAULT_QUANTIZATION, else chosen from the machine). */
  defaultQuantization?: QuantizationLevel
  /**
   * Read-only model directories searched before `modelsDir`, in order: models an app ships in
   * its resources, used in place (never copied or downloaded again). Else ORION_BUNDLED_MODELS_DIRS
   * (separated like PATH).
   */
  bundledModelsDirs?: string[]
}

/** Per-call options of the embedding methods. */
export interface EmbedOptions {
  /** Overrides the client's timeout for this call. */
  timeoutMs?: number
  /** Rejects the call with code ABORTED when it fires. */
  signal?: AbortSignal
}

/** Options of `getModelLoader`. They are process-wide: every thread shares the loader. */
export interface ModelLoaderOptions {
  /** Most models loaded at once (default 2, or ORION_MAX_CONCURRENT_MODELS). */
  maxConcurrentModels?: number
  /** Most bytes the loaded models may use; 0 removes the budget. */
  budgetBytes?: number
  /** Unload a model unused for this long; 0 turns it off. */
  idleTimeoutMs?: number
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant'
  content: string
}

/** Options of `ModelLoader.generate`. */
export interface GenerateOptions {
  /** Most tokens to generate (default 256). */
  maxTokens?: number
  /** 0 is greedy (default 0.8). */
  temperature?: number
  topK?: number
  topP?: number
  minP?: number
  repeatPenalty?: number
  seed?: number
  /** Generation stops before any of these strings; they are not part of the text. */
  stop?: string | string[]
  /** Rejects with code ABORTED within a token of firing. */
  signal?: AbortSignal
  /** Receives the text as it is generated, on the calling thread. */
  onToken?: (text: string) => void
  /** Send a string prompt as is, without the model's chat template. */
  raw?: boolean
}

export type QuantizationLevel = 'q3' | 'q4' | 'q4f32' | 'q5' | 'q6' | 'q8' | 'f16' | 'f32'

/** Each level's MLC suffix (as `applyQuantization` appends it), GGUF file types and bits per weight. */
export declare const QUANTIZATION_LEVELS: Readonly<
  Record<
    QuantizationLevel,
    Readonly<{ name: QuantizationLevel; mlc: string; gguf: readonly string[]; bitsPerWeight: number }>
  >
>

/** A registry entry for `registerModel` (or the ORION_MODEL_REGISTRY file). */
export interface ModelDescriptor {
  name?: string
  kind?: 'llm' | 'embedding'
  /** Files by quantization level: a local path (relative to ORION_MODELS_DIR), or a hub repo and file. */
  files: Partial<
    Record<QuantizationLevel, { path?: string; hubRepo?: string; hubFile?: string; sha256?: string; size?: number }>
  >
  /** Context size to run the model with (default 2048). */
  contextLength?: number
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
  | 'UNKNOWN_MODEL'
  | 'MODEL_BUSY'
  | 'INSUFFICIENT_MEMORY'
  | 'PROMPT_TOO_LONG'
  | 'SHUT_DOWN'
  | 'INTERNAL'
  | 'BINDING_NOT_FOUND'

/** `for await (const text of loader.generateStream(...))`: the stream is its own async iterator. */
export interface TokenStream {
  [Symbol.asyncIterator](): AsyncIterator<string, undefined>
}

/** Options of `getMemoryMonitor` (process-wide). */
export interface MemoryMonitorOptions {
  /** Fractions of the budget in use where pressure becomes medium, high, critical (0.6, 0.75, 0.9). */
  thresholds?: { medium?: number; high?: number; critical?: number }
  /** Snapshots kept (default 100). */
  historySize?: number
  /** This process's memory budget; pressure is its RSS against it. 0 removes it. */
  budgetBytes?: number
  /** Free idle models and the embedding cache at `freeAt` pressure (default true). */
  autoFree?: boolean
  freeAt?: 'high' | 'critical'
  /** RSS growth per second that raises an alert (default 100 MiB/s). */
  rssGrowthAlertBytesPerSec?: number
}
