/* The hand-written head of index.d.ts (src/js/types.d.ts); napi build prepends it to the generated declarations. */

/**
 * A message of a conversation: `system`, `user` or `assistant` text; an assistant's
 * answer that called tools (`toolCalls`, as `GenerateResult.toolCalls` gave them); or a
 * tool's result (`role: 'tool'`, `toolCallId` naming the call; `content` any JSON data,
 * sent as its JSON text unless a string).
 */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool'
  content: string | unknown
  toolCalls?: Array<{ id?: string; name: string; arguments: Record<string, unknown> | string }>
  toolCallId?: string
  name?: string
}

/** A tool the model may call (`GenerateOptions.tools`). */
export interface ToolDefinition {
  /** 1 to 64 letters, digits, `_` or `-`. */
  name: string
  description?: string
  /** A JSON schema of the arguments object (default: an object without properties). */
  parameters?: Record<string, unknown>
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
  files?: Partial<
    Record<QuantizationLevel, { path?: string; hubRepo?: string; hubFile?: string; sha256?: string; size?: number }>
  >
  /** Context size to run the model with (default 2048). */
  contextLength?: number
  /**
   * Served by OpenAI-compatible servers (llama-server, vLLM, Ollama, ...) instead of a file:
   * `loadModel` checks them, `generate` streams from `/v1/chat/completions`. Give `files` or `remote`.
   */
  remote?: RemoteOptions
}

/** The stable codes of orion-native errors (`err.code`). */
export type OrionErrorCode =
  | 'INVALID_INPUT'
  | 'INVALID_OPTION'
  | 'MODEL_NOT_FOUND'
  | 'DOWNLOAD_REQUIRED'
  | 'DOWNLOAD_FAILED'
  | 'MODEL_LOAD_FAILED'
  | 'RUNTIME_NOT_FOUND'
  | 'GPU_UNAVAILABLE'
  | 'EMBEDDING_TIMEOUT'
  | 'OVERLOADED'
  | 'ABORTED'
  | 'INFERENCE_FAILED'
  | 'UNKNOWN_MODEL'
  | 'MODEL_BUSY'
  | 'INSUFFICIENT_MEMORY'
  | 'PROMPT_TOO_LONG'
  | 'INPUT_TOO_LONG'
  | 'SCHEMA_UNSUPPORTED'
  | 'OUTPUT_INCOMPLETE'
  | 'SHUT_DOWN'
  | 'REMOTE_UNAVAILABLE'
  | 'REMOTE_ERROR'
  | 'REMOTE_PROTOCOL'
  | 'INTERNAL'
  | 'BINDING_NOT_FOUND'

/** `for await (const text of loader.generateStream(...))`: the stream is its own async iterator. */
export interface TokenStream {
  [Symbol.asyncIterator](): AsyncIterator<string | ToolCallEvent, undefined>
}

/**
 * A conversation with one model: `send` a message, get the answer; the history (the
 * system message, then each message and answer) is kept here and sent with every turn.
 * When a turn would not fit the model's context, the oldest exchanges after the system
 * message are dropped first (`droppedMessages` says how many), unless the session was
 * created with `contextShift: false` (then `PROMPT_TOO_LONG`).
 */
export declare class ChatSession {
  /** The model key the session talks to. */
  get modelKey(): string
  /**
   * Send a message (a string, or `{ role: 'user', content }`) with the history; the
   * message and the answer join it. Options are `generate`'s; the result's
   * `droppedMessages` counts the messages dropped from the history's start for this
   * turn to fit. Turns of one session run one after the other.
   */
  send(message: string | ChatMessage, options?: GenerateOptions): Promise<GenerateResult>
  /**
   * `send` as an async iterator of text pieces; `stream.result` holds the result
   * (with `droppedMessages`) at the end. Leaving the loop early stops the turn, which
   * then leaves the history as it was.
   */
  sendStream(message: string | ChatMessage, options?: Omit<GenerateOptions, 'onToken'>): TokenStream
  /** The system message (when there is one), then every message and answer kept. */
  get history(): Array<ChatMessageOut>
  /** Forget the history; the system message stays. */
  reset(): void
  /** The conversation as plain data, for `restore` (JSON-serialisable). */
  save(): SavedChat
  /** Continue a saved conversation: its system message and history replace these. */
  restore(saved: SavedChat): void
}

/** The process-wide memory monitor, the same history from every thread. */
export declare class MemoryMonitor {
  /**
   * Measure now (off the JS thread); at high enough pressure, free idle models and
   * the embedding cache first. Recorded in the shared history.
   */
  takeSnapshot(): Promise<MemorySnapshot>
  /** The history, oldest first. */
  getSnapshots(): Array<MemorySnapshot>
  getStats(): MemoryMonitorStats
  getAlerts(): Array<MemoryAlert>
  get hasAlerts(): boolean
  clearAlerts(): void
  /**
   * Take a snapshot every `intervalMs` on a background thread (process-wide; calling
   * it again while running changes the period). Subscribers see each one.
   */
  start(intervalMs: number): void
  stop(): void
  get isRunning(): boolean
  /**
   * `cb(snapshot)` on this thread for every snapshot any thread takes. Returns the
   * function that unsubscribes.
   */
  onSnapshot(cb: (snapshot: MemorySnapshot) => void): () => void
  /** `cb(alert)` on this thread for every alert. Returns the function that unsubscribes. */
  onAlert(cb: (alert: MemoryAlert) => void): () => void
}

/** The process-wide model loader: the same from every thread. */
export declare class ModelLoader {
  /**
   * Load a model by registry key, MLC-style quantized id or GGUF path, off the JS
   * thread. `onProgress(percent)` runs on this thread with integers that never
   * decrease and end at exactly 100 (at once when already loaded). Concurrent loads
   * of one key from any thread share one load. A model not on disk whose registry entry
   * says where it is online is downloaded first (progress 0 to 90, the load 90 to 100).
   */
  loadModel(modelKey: string, onProgress?: (percent: number) => void, options?: LoadOptions): Promise<ModelInfo>
  /**
   * Download a model's file without loading it: what `loadModel` would fetch, into the
   * same place, resumable and checked (size and sha256 when the registry knows them).
   * `onProgress(percent)` runs from 0 to 100 over the download. A file already on disk
   * is checked and reported with `downloaded: false`.
   */
  downloadModel(modelKey: string, onProgress?: (percent: number) => void, options?: LoadOptions): Promise<DownloadInfo>
  /**
   * Unload a model. Generations already running on it finish first; its memory is
   * freed when the last of them ends. Resolves `false` when it was not loaded.
   */
  unloadModel(modelKey: string): Promise<boolean>
  /** Refresh a model's recency for LRU eviction. `false` when it is not loaded. */
  markModelUsed(modelKey: string): boolean
  getStats(): ModelLoaderStats
  /**
   * Generate text. `prompt` is a string (sent as one user message through the
   * model's chat template unless `raw`) or an array of `{ role, content }`
   * messages. The model is loaded first when needed.
   */
  generate(modelKey: string, prompt: string | ChatMessage[], options?: GenerateOptions): Promise<GenerateResult>
  /**
   * The tokens `generate(modelKey, prompt, { raw })` would evaluate for `prompt` (its
   * `timings.promptTokens`): the chat template's included. The model is loaded first
   * when needed; in-process models only.
   */
  countTokens(modelKey: string, prompt: string | ChatMessage[], options?: CountTokensOptions): Promise<number>
  /**
   * `text`'s token ids, without the start-of-text token the model's prompts begin
   * with. The model is loaded first when needed; in-process models only.
   */
  tokenize(modelKey: string, text: string, options?: TokenizeOptions): Promise<number[]>
  /**
   * The text of token ids (special tokens written out). An id that is not one of
   * the model's tokens rejects with `INVALID_INPUT`.
   */
  detokenize(modelKey: string, tokens: number[]): Promise<string>
  /**
   * A conversation with `modelKey`'s model (see `ChatSession`). Throws
   * `UNKNOWN_MODEL` for a key the registry does not know, `INVALID_OPTION` for bad
   * options; loads nothing until the first `send`.
   */
  createChatSession(modelKey: string, options?: ChatSessionOptions): ChatSession
  /** Add or replace a model in the registry (process-wide). */
  registerModel(key: string, descriptor: ModelDescriptor): void
  /** Every model in the registry. */
  listModels(): Array<ModelListing>
  /**
   * `generate` as an async iterator of text pieces (`for await`). Same options,
   * except `onToken`.
   */
  generateStream(modelKey: string, prompt: string | ChatMessage[], options?: Omit<GenerateOptions, 'onToken'>): TokenStream
}

/**
 * A handle on the process-wide embedding service. Every client for the same model,
 * from any thread, shares one loaded model, one queue and one cache.
 */
export declare class SharedEmbeddingClient {
  /** The model's name. */
  get model(): string
  /**
   * Embed one text: 384 numbers for all-MiniLM-L6-v2 (mean-pooled, L2-normalised;
   * input beyond 256 tokens is truncated).
   */
  createEmbedding(text: string, options?: EmbedOptions): Promise<number[]>
  /**
   * Embed many texts in one call, one vector per text in order. An empty array gives
   * an empty result.
   */
  createEmbeddings(texts: string[], options?: EmbedOptions): Promise<number[][]>
  /**
   * The fast form of `createEmbeddings`: one flat `Float32Array` of
   * `texts.length * dimension` numbers, row `i` at `[i * dimension, (i + 1) * dimension)`.
   */
  createEmbeddingsFloat32(texts: string[], options?: EmbedOptions): Promise<Float32Array>
  /** Counters of the process-wide service. */
  getStats(): EmbeddingStats
  /** Empty the shared cache (for every thread). */
  clearCache(): void
}

/**
 * A handle on a process-wide reranker. Every reranker for the same model, from any
 * thread, shares one loaded model, one queue and one cache of scores.
 */
export declare class SharedReranker {
  /** The model's name. */
  get model(): string
  /**
   * Score each document's relevance to `query` and rank them, best first:
   * `[{ index, score }]`, the first `topK` of them. An empty array gives `[]`.
   */
  rerank(query: string, documents: string[], options?: RerankOptions): Promise<RerankResult[]>
  /** Counters of the process-wide reranker. */
  getStats(): RerankerStats
  /** Empty the shared cache of scores (for every thread). */
  clearCache(): void
}

/**
 * Generated text as an async iterator: `for await (const text of stream)`. Leaving
 * the loop early (`break`) stops the generation. After the last step, `result`
 * holds the full result.
 */
export declare class TokenStream {
  /**
   * The next piece of text; `{ done: true }` at the end. Rejects with the
   * generation's coded error (`ABORTED`, `UNKNOWN_MODEL`, ...).
   */
  next(): Promise<IteratorResult<string | ToolCallEvent, undefined>>
  /** Stop early (what `break` in `for await` calls). */
  return(): Promise<IteratorResult<string | ToolCallEvent, undefined>>
  /** The whole result, once the stream has ended. */
  get result(): GenerateResult | null
}

/**
 * The app's naming: `applyQuantization('Mistral-7B-Instruct-v0.2', 'q4')` is
 * `'Mistral-7B-Instruct-v0.2-q4f16_1-MLC'`. `loadModel` accepts such ids.
 */
export declare function applyQuantization(modelId: string, level: QuantizationLevel): string

/** A chat message, as a session's `history` and `save()` give it. */
export interface ChatMessageOut {
  role: 'system' | 'user' | 'assistant' | 'tool'
  content: string
  /** An assistant's calls. */
  toolCalls?: Array<ToolCall>
  /** A tool result's call. */
  toolCallId?: string
  /** A tool result's tool. */
  name?: string
}

/** Options of `ModelLoader.createChatSession`. */
export interface ChatSessionOptions {
  /** The system message every turn starts with (none by default). */
  system?: string
  /**
   * When a turn would not fit the model's context, drop the oldest exchanges after
   * the system message (true, the default), or reject with `PROMPT_TOO_LONG` (false).
   */
  contextShift?: boolean
}

/** A model's chat template. */
export interface ChatTemplateInfo {
  /**
   * The family its markers say: `'chatml'`, `'hermes'`, `'llama3'`, `'gemma'`,
   * `'phi3'`, `'mistral'`, `'mistral-tools'`, `'deepseek'`; absent for another.
   */
  family?: string
  /** The SHA-256 of its text, in hex. */
  sha256: string
  /**
   * The syntax `tools` are called in with it: `'hermes'` (`<tool_call>`), `'llama3'`,
   * `'mistral'` (`[TOOL_CALLS]`), or `'generic'` (a template without tools: a JSON
   * answer); absent when it cannot render tool calls.
   */
  toolFormat?: 'hermes' | 'llama3' | 'mistral' | 'generic'
}

/**
 * The process's settings, as `configure()` returns them: what is in effect now, from
 * code or else from the environment.
 */
export interface Configuration {
  modelsDir: string
  ortLibraryPath?: string
  defaultQuantization?: string
  bundledModelsDirs: Array<string>
  /** Whether models missing from disk are downloaded when first used. */
  allowDownloads: boolean
  /** The GPU choice in effect. */
  gpu: 'auto' | 'vulkan' | 'cuda' | 'metal' | false
}

/**
 * Set process-wide settings from code, once for the whole process: every worker_thread
 * sees them (a worker's `process.env` is its own copy and never reaches the addon).
 * Each given setting wins over its environment variable; settings left out keep their
 * value. Returns the settings in effect. Throws `INVALID_OPTION` on a bad value.
 */
export declare function configure(options?: ConfigureOptions): Configuration

/**
 * Options of `configure()`: each one given wins over its environment variable; those
 * left out keep their value.
 */
export interface ConfigureOptions {
  /** Where models live (else `ORION_MODELS_DIR`, else the per-user cache directory). */
  modelsDir?: string
  /**
   * The ONNX Runtime shared library to load (else `ORT_DYLIB_PATH`, else the one the
   * platform package ships).
   */
  ortLibraryPath?: string
  /**
   * The quantization level for every model (else `ORION_DEFAULT_QUANTIZATION`, else
   * chosen from the machine).
   */
  defaultQuantization?: QuantizationLevel
  /**
   * Read-only model directories searched before `modelsDir`, in order: models an app
   * ships in its resources, used in place (never copied or downloaded again). Else
   * `ORION_BUNDLED_MODELS_DIRS` (separated like `PATH`).
   */
  bundledModelsDirs?: Array<string>
  /**
   * Download a model missing from disk when it is first used (else
   * `ORION_ALLOW_DOWNLOADS`; default false: nothing leaves the machine unless asked).
   */
  allowDownloads?: boolean
  /**
   * The device llama.cpp runs models on (else `ORION_GPU`, else `'auto'`): `'auto'`
   * takes the best GPU device a loaded backend offers, else the CPU; a backend's name
   * takes a device of that backend, and loads fail with `GPU_UNAVAILABLE` (saying
   * why) where it has none; `false` keeps models on the CPU.
   */
  gpu?: 'auto' | 'vulkan' | 'cuda' | 'metal' | boolean
}

/** Options of `ModelLoader.countTokens`. */
export interface CountTokensOptions {
  /**
   * Count a string prompt as is, without the model's chat template, as `generate`'s
   * `raw` sends it (default false).
   */
  raw?: boolean
  /**
   * The tools `generate` would show (`GenerateOptions.tools`): they are part of the
   * prompt.
   */
  tools?: ToolDefinition[]
  /** `GenerateOptions.toolChoice` (`'none'` shows no tools). */
  toolChoice?: 'auto' | 'none' | 'required' | { name: string }
}

/** A GPU device's memory (once llama.cpp has started). */
export interface DeviceMemoryInfo {
  /** `Vulkan0 (NVIDIA GeForce RTX 4070)`. */
  name: string
  backend: string
  total: number
  /** As its driver reports it (lavapipe reports its whole heap, whatever is in use). */
  free: number
  /**
   * Device memory this process's models hold there, estimated from their files: their
   * weights and one context's KV cache while loaded, and the KV cache of each further
   * context while it lives (those kept for other conversations too); given back when
   * they are freed.
   */
  modelsBytes: number
  /** The share in use: by the driver's account, or by the models' where that is more. */
  usedFraction: number
}

/** A model's file on disk, as `downloadModel` reports it. */
export interface DownloadInfo {
  key: string
  path: string
  /** GGUF file type, e.g. `Q4_K_M`, when the file name or the level says it. */
  quantization?: string
  /** Size of the file. */
  bytes: number
  /** Whether it was fetched by this call (else it was on disk already). */
  downloaded: boolean
}

/**
 * Options of `getSharedEmbeddingClient`. The first client of a model decides its
 * batching, queue and thread settings; later clients share them.
 */
export interface EmbeddingClientOptions {
  /**
   * A model name: a directory under `ORION_MODELS_DIR` (an ONNX model), or a GGUF
   * file there (`name.gguf`, run by llama.cpp). Default `all-MiniLM-L6-v2`.
   */
  model?: string
  /**
   * A directory holding model.onnx and the tokenizer files, or a GGUF embedding
   * model's file (run by llama.cpp, pooled as the file declares); wins over `model`.
   */
  modelPath?: string
  /**
   * Size of the shared cache in bytes, an integer from 0 to 2^40 (default 32 MiB,
   * or `ORION_EMBEDDING_CACHE_BYTES`).
   */
  cacheBytes?: number
  /**
   * Default per-request timeout in milliseconds, an integer from 1 to 4294967295
   * (default 30000, or `ORION_EMBEDDING_TIMEOUT_MS`).
   */
  timeoutMs?: number
  /** Most texts per model call, an integer from 1 to 1024 (default 32). */
  maxBatchSize?: number
  /**
   * How long a first queued text waits for company, in milliseconds: an integer
   * from 0 to 1000 (default 2).
   */
  maxWaitMs?: number
  /**
   * Most texts waiting before requests are rejected with `OVERLOADED`, an integer
   * from 1 to 10000000 (default 10000).
   */
  maxQueue?: number
  /**
   * Threads of the model's computation (ONNX Runtime's intra-op threads, or
   * llama.cpp's), an integer from 1 to 1024 (default: every core).
   */
  threads?: number
  /**
   * Embed on remote servers instead (`/v1/embeddings`), with the same cache,
   * batching, timeouts and stats; wins over `model` and `modelPath`. Else
   * `ORION_REMOTE_EMBEDDINGS_URL` (comma-separated) and
   * `ORION_REMOTE_EMBEDDINGS_MODEL` (and `ORION_REMOTE_EMBEDDINGS_API_KEY`) give one,
   * when neither `model` nor `modelPath` is given.
   */
  remote?: RemoteOptions
  /**
   * How the model's int8 weights are computed with: `'exact'`, the model's own fp32
   * arithmetic, or `'int8'`, integer products on the int8 weights (less memory,
   * faster, vectors within a cosine of about 0.999 of exact ones). Default `'exact'`,
   * or `ORION_EMBEDDING_PRECISION`. Clients of one model with different precisions
   * are different services.
   */
  precision?: 'exact' | 'int8'
  /** This client's default `dimensions` (see `EmbedOptions`). */
  dimensions?: number
  /** This client's default `inputType` (see `EmbedOptions`). */
  inputType?: 'query' | 'document'
  /** This client's default `truncate` (see `EmbedOptions`). */
  truncate?: boolean
}

/** Statistics of the shared embedding service (process-wide, the same from every thread). */
export interface EmbeddingStats {
  /** Model name. */
  model: string
  /**
   * What computes the vectors: `'onnx'` (ONNX Runtime, a model directory), `'llama'`
   * (llama.cpp, a GGUF file) or `'remote'` (servers).
   */
  engine: 'onnx' | 'llama' | 'remote'
  /**
   * The model's family, when its name says it (`nomic-embed-text-v1.5`,
   * `Qwen3-Embedding`, `EmbeddingGemma`, `bge-en-v1.5`, `e5`, `MiniLM`, ...): what
   * `inputType` and `dimensions` go by.
   */
  family?: string
  /** Vector length (0 until known). */
  dimension: number
  /** Times the model was loaded in this process: 1 once it is in use. */
  modelLoads: number
  /** Texts asked for, over every call from every thread. */
  requests: number
  cacheHits: number
  cacheMisses: number
  cacheBytes: number
  cacheEntries: number
  cacheCapacityBytes: number
  /**
   * Tokens the model read for the texts it embedded, special tokens included (0 for
   * a remote client).
   */
  tokens: number
  /** Texts longer than the model reads, cut to fit (with `truncate` on). */
  truncated: number
  /**
   * The threads the last batch computed with, for a GGUF model on the CPU: its
   * `threads`, or fewer while other processes keep cores busy (llama.cpp's threads
   * meet after every step, and one without a core holds the others up).
   */
  threads?: number
  /** Model calls made. */
  batches: number
  /** Texts per model call, on average. */
  meanBatchSize: number
  /**
   * Milliseconds a text waited in the queue before its batch went to the model, on
   * average.
   */
  meanQueueWaitMs: number
  /** Texts waiting for the model now. */
  queueDepth: number
  /** A remote client's servers, with their requests, bytes and errors. */
  endpoints?: Array<RemoteEndpointStats>
  /** A local model's precision: `'exact'` or `'int8'`. */
  precision?: 'exact' | 'int8'
  /**
   * With `precision: 'int8'`, how its integer products take their weights on this
   * CPU: `'signed'` where the CPU adds 8-bit products in 32 bits (x86 with VNNI,
   * ARM64), `'unsigned'` where it would saturate them (x86 with AVX2 but no VNNI).
   * The accuracy is the same; the speed is the CPU's.
   */
  int8Weights?: 'signed' | 'unsigned'
  /**
   * The CPU's features, for a local model: `avx2`, `avx512vnni`, `avxvnni`, `neon`,
   * `dotprod`... (those that decide `int8Weights` and ONNX Runtime's kernels among them).
   */
  cpuFeatures?: Array<string>
}

/** Per-call options of the embedding methods. */
export interface EmbedOptions {
  /**
   * Overrides the client's timeout for this call: milliseconds, an integer from 1
   * to 4294967295.
   */
  timeoutMs?: number
  /** Rejects the call with code `ABORTED` when it fires. */
  signal?: AbortSignal
  /**
   * Vectors of this many values, an integer from 1 to 65536: the first ones,
   * renormalised, for models trained for shorter vectors (Matryoshka:
   * nomic-embed-text-v1.5 64 or more, Qwen3-Embedding 32 or more, `EmbeddingGemma` 128,
   * 256 or 512, mxbai-embed-large 64 or more); `INVALID_OPTION` for other models. A
   * remote model's vectors are cut as asked.
   */
  dimensions?: number
  /**
   * `'query'` or `'document'`: the texts get the prefix (or instruction) the model's
   * family is trained with (nomic's `search_query: `/`search_document: `, Qwen3's
   * instruction, `EmbeddingGemma`'s and bge's prompts, e5's `query: `/`passage: `);
   * nothing for models that need none.
   */
  inputType?: 'query' | 'document'
  /**
   * A query's task, for Qwen3-Embedding (`Instruct: <instruction>\nQuery:<text>`;
   * default: web search); `INVALID_OPTION` for models that take none. With
   * `inputType: 'query'`.
   */
  instruction?: string
  /**
   * `false`: a text longer than the model reads rejects the call with
   * `INPUT_TOO_LONG` (naming the text) instead of being cut to fit (default `true`).
   */
  truncate?: boolean
}

/** Options of `ModelLoader.generate` (and of `generateStream`, without `onToken`). */
export interface GenerateOptions {
  /** Most tokens to generate: an integer from 1 to 1048576 (default 256). */
  maxTokens?: number
  /** Sampling temperature, from 0 to 100; 0 is greedy (default 0.8). */
  temperature?: number
  /**
   * Sample from the k most likely tokens: an integer from 0 to 1048576; 0 keeps
   * them all (default 40).
   */
  topK?: number
  /**
   * Sample from the most likely tokens whose probabilities add up to this, from 0
   * to 1 (default 0.95).
   */
  topP?: number
  /**
   * Drop tokens less likely than this fraction of the most likely one's probability,
   * from 0 to 1 (default 0.05).
   */
  minP?: number
  /** Penalty on repeating recent tokens, from 0.01 to 10; 1 is none (default 1.1). */
  repeatPenalty?: number
  /** The sampler's seed: an integer from 0 to 4294967295 (default 12648430). */
  seed?: number
  /** Generation stops before any of these strings; they are not part of the text. */
  stop?: string | string[]
  /** Rejects with code `ABORTED` within a token of firing (see `stopOnAbort`). */
  signal?: AbortSignal
  /**
   * When `signal` fires once the answer has begun (its first token), resolve with what
   * it holds and `finishReason: 'abort'` instead of rejecting `ABORTED` (default
   * false). The text is what was streamed; with `jsonSchema` it is unfinished JSON
   * (no `json`); with tools, `toolCalls` holds the calls complete before the abort. A
   * chat session keeps the partial answer in its history. Before the first token, an
   * abort still rejects `ABORTED`.
   */
  stopOnAbort?: boolean
  /** Receives the text as it is generated, on the calling thread. */
  onToken?: (text: string) => void
  /** Send a string prompt as is, without the model's chat template (default false). */
  raw?: boolean
  /**
   * Start from a context kept from an earlier generation on this model when the two
   * prompts share a beginning, evaluating only the rest (a chat's next turn), and
   * keep this one's context for the next (default true; in-process models only).
   */
  prefixCache?: boolean
  /**
   * A JSON schema the answer must follow: sampling is constrained so that the text
   * parses and validates, and the result's `json` holds the parsed value. A keyword
   * that is not enforced (the README lists those that are) rejects with
   * `SCHEMA_UNSUPPORTED`; an answer cut by `maxTokens` or the context, with
   * `OUTPUT_INCOMPLETE`. Remote models send it as `response_format`.
   */
  jsonSchema?: object
  /**
   * What enforces `jsonSchema`: `'llguidance'` (the default; most of JSON Schema, see
   * the README) or `'llama.cpp'` (its JSON-schema-to-grammar conversion, the one
   * llama.cpp's server uses: fewer keywords). Either refuses what it does not enforce
   * with `SCHEMA_UNSUPPORTED`. Remote servers enforce the schema with their own engine:
   * it is checked against llama.cpp's keywords before it is sent, unless
   * `'llguidance'` is named (a server that runs llguidance).
   */
  schemaEngine?: 'llama.cpp' | 'llguidance'
  /**
   * A GBNF grammar (llama.cpp's format, from its rule `root`) the answer must follow.
   * Remote models send it as `grammar` (llama.cpp's server reads it).
   */
  grammar?: string
  /**
   * Tools the model may call: `[{ name, description?, parameters? }]` (`parameters`
   * a JSON schema of the arguments object; its keywords checked as `jsonSchema`'s).
   * The prompt shows them through the model's own chat template; calls come back in
   * the result's `toolCalls` (`finishReason: 'toolCalls'`), their arguments following
   * the schema. Not with `jsonSchema`, `grammar` or `raw`.
   */
  tools?: ToolDefinition[]
  /**
   * Whether the answer calls a tool: `'auto'` (the model decides, the default),
   * `'none'` (text only; the tools are not shown), `'required'` (at least one call)
   * or `{ name }` (a call of that tool).
   */
  toolChoice?: 'auto' | 'none' | 'required' | { name: string }
  /**
   * Whether one answer may call several tools (default false: one call at most, as
   * llama.cpp's server does; small models given the choice repeat a call).
   */
  parallelToolCalls?: boolean
}

export interface GenerateResult {
  text: string
  /** Tokens generated. */
  tokens: number
  /**
   * Why the answer ended: `'eos'` (the model ended its turn), `'stop'` (a stop
   * string), `'maxTokens'` (the option's limit), `'contextFull'` (no room left in
   * the model's context), `'toolCalls'` (it calls tools: `toolCalls`) or `'abort'`
   * (the signal fired once the answer had begun, with `stopOnAbort`). A remote
   * server does not tell a stop string from the end of its turn: both are `'eos'`
   * there.
   */
  finishReason: 'eos' | 'stop' | 'maxTokens' | 'contextFull' | 'toolCalls' | 'abort'
  timings: GenerateTimings
  /** The answer parsed, when it followed a `jsonSchema` (it validates against it). */
  json?: unknown
  /**
   * For a chat session's turn: how many messages were dropped from the start of its
   * history (after the system message) for the turn to fit the model's context.
   */
  droppedMessages?: number
  /**
   * The tools the answer calls (`finishReason: 'toolCalls'`), with `options.tools`:
   * each call's arguments follow its tool's `parameters`. Send each result back as
   * a `{ role: 'tool', toolCallId, content }` message after this answer's
   * `{ role: 'assistant', content: text, toolCalls }`.
   */
  toolCalls?: Array<ToolCall>
}

export interface GenerateTimings {
  promptTokens: number
  promptMs: number
  promptTokensPerSecond: number
  generatedTokens: number
  generationMs: number
  tokensPerSecond: number
  /** llama.cpp's own measurement of the same run. */
  llamaPromptTokensPerSecond: number
  llamaTokensPerSecond: number
  /**
   * Prompt tokens not evaluated again: found in a context kept from an earlier
   * generation sharing the prompt's beginning (or, remote, the server's cache).
   */
  reusedPromptTokens: number
  /**
   * The threads llama.cpp computed the answer's last token with, for a model on the
   * CPU: the model's threads, or fewer while other processes keep cores busy.
   */
  threads?: number
}

/**
 * The memory monitor. Options (process-wide): `thresholds` `{ medium, high, critical }`
 * (fractions of the budget, default 0.6/0.75/0.9), `historySize` (100), `budgetBytes`
 * (0: none), `autoFree` (true), `freeAt` (`'critical'`), `rssGrowthAlertBytesPerSec`.
 */
export declare function getMemoryMonitor(options?: MemoryMonitorOptions): MemoryMonitor

/**
 * The process-wide model loader. Options (`maxConcurrentModels`, `budgetBytes`,
 * `idleTimeoutMs`) are process-wide too: passing them changes the limits for every
 * thread. Throws `INVALID_OPTION` on bad options.
 */
export declare function getModelLoader(options?: ModelLoaderOptions): ModelLoader

/**
 * The quantization level, model limits, GPU layers, context size and threads chosen
 * for this machine, with the reasons.
 */
export declare function getOptimizationStrategy(): OptimizationStrategy

/**
 * The shared embedding client. Options: `model` (a name under the models directory,
 * default `all-MiniLM-L6-v2`), `modelPath` (a directory with the model files),
 * `timeoutMs`, `cacheBytes`, `maxBatchSize`, `maxWaitMs`, `maxQueue`, `threads`.
 * Throws an Error with code `INVALID_OPTION` on bad options.
 */
export declare function getSharedEmbeddingClient(options?: EmbeddingClientOptions): SharedEmbeddingClient

/**
 * The shared reranker of a model. Options: `modelPath` or `model` (a GGUF reranker),
 * or `remote`; `timeoutMs`, `cacheBytes`, `maxBatchSize`, `maxWaitMs`, `maxQueue`,
 * `threads`, `precision`. Throws an Error with code `INVALID_OPTION` on bad options.
 */
export declare function getSharedReranker(options?: RerankerOptions): SharedReranker

export interface GpuInfo {
  /** ggml's name and the device's own: `Vulkan0 (NVIDIA GeForce RTX 4070)`. */
  name: string
  /** The backend: `Vulkan`, `CUDA`, `MTL`. */
  backend: string
  /**
   * `gpu` (its own memory), `igpu` (shares the host's) or `cpu` (a CPU-type device
   * such as lavapipe: used only when its backend is asked for by name).
   */
  kind: 'gpu' | 'igpu' | 'cpu'
  totalBytes: number
  freeBytes: number
  /** The driver and its version, where the backend's API says (Vulkan). */
  driver?: string
  /**
   * Why the device cannot be used: its self-test (a small graph compared with the
   * CPU's result) failed or could not run.
   */
  failed?: string
  /**
   * In `getOptimizationStrategy().gpus`: why models do not load on this device
   * (absent for the one they load on).
   */
  notChosen?: string
}

/**
 * A GPU backend module found at start-up: an installed GPU package's, or
 * `GGML_BACKEND_PATH`'s.
 */
export interface GpuModuleInfo {
  path: string
  /** ggml's name of the backend, once it registered (in its check or here). */
  backend?: string
  /** Whether this process loaded it (its check in a child process passed). */
  loaded: boolean
  /** Why it is not loaded. */
  reason?: string
}

export interface HeldModelInfo {
  key: string
  bytes: number
  quantization?: string
  inUse: boolean
  idleMs: number
}

export interface JsHeapInfo {
  used: number
  total: number
  external: number
}

export interface LoadedModelStats {
  key: string
  path: string
  quantization?: string
  bytes: number
  /** Milliseconds since the epoch. */
  lastUsed: number
  /** Generations using it now. */
  inUse: number
  loads: number
  /** Where its layers went, when some are on a GPU device; absent on the CPU. */
  gpu?: ModelPlacement
}

/** Per-call options of `loadModel`. */
export interface LoadOptions {
  /**
   * Rejects with code `ABORTED` when it fires, and stops this call's download (the
   * partial file stays, and the next load resumes it). A llama.cpp load shared with
   * other callers goes on for them.
   */
  signal?: AbortSignal
  /**
   * Layers to put on the GPU device (`configure({ gpu })`'s choice), instead of as
   * many as fit its free memory: an integer from 0 to 100000; more than the model's
   * layer count puts the output there too. Applies when this call starts the load;
   * ignored when models run on the CPU.
   */
  gpuLayers?: number
  /**
   * The context length in tokens the model generates in, instead of its registry
   * entry's (`contextLength`, 4096 for the catalog's models): an integer from 256 to
   * 1048576, bounded by the length the model was trained with (`ModelInfo` says what
   * is used). It stays the model's for its later loads (after an eviction) until
   * `unloadModel`; asking a model loaded with another size is `INVALID_OPTION`. The
   * loader's memory budget counts its KV cache. Remote models ignore it.
   */
  contextSize?: number
}

export interface MemoryAlert {
  timestamp: number
  /** `'pressure'`, `'rss-growth'` or `'freed'`. */
  kind: string
  pressure: string
  message: string
}

/**
 * Options of `getMemoryMonitor` (process-wide): each option left out keeps the
 * monitor's current setting.
 */
export interface MemoryMonitorOptions {
  /**
   * Fractions of the budget in use where pressure becomes medium, high, critical
   * (default 0.6, 0.75, 0.9).
   */
  thresholds?: MemoryThresholds
  /** Snapshots kept, an integer from 1 to 1000000 (default 100). */
  historySize?: number
  /**
   * This process's memory budget in bytes, an integer from 0 to 2^53 - 1; pressure
   * is its RSS against it. 0 removes it (default: none, the memory the process may
   * use).
   */
  budgetBytes?: number
  /** Free idle models and the embedding cache at `freeAt` pressure (default true). */
  autoFree?: boolean
  /** The pressure at which `autoFree` frees memory (default `'critical'`). */
  freeAt?: 'high' | 'critical'
  /**
   * RSS growth per second that raises an alert, in bytes: an integer from 1 to
   * 2^53 - 1 (default 100 MiB/s).
   */
  rssGrowthAlertBytesPerSec?: number
}

export interface MemoryMonitorStats {
  count: number
  current?: MemorySnapshot
  peakRss: number
  minUsedFraction: number
  meanUsedFraction: number
  maxUsedFraction: number
  /** Milliseconds spent at each pressure level. */
  timeAtMs: PressureTimes
}

export interface MemorySnapshot {
  /** Milliseconds since the epoch. */
  timestamp: number
  system: SystemMemoryInfo
  process: ProcessMemoryInfo
  /**
   * GPU devices, once llama.cpp has started; their pressure counts in `pressure`
   * where models are on them.
   */
  devices: Array<DeviceMemoryInfo>
  /** The heap of the thread that took the snapshot. */
  jsHeap?: JsHeapInfo
  orion: OrionMemoryInfo
  /** What pressure is measured against: `budgetBytes`, or the memory the process may use. */
  budgetBytes: number
  usedBytes: number
  usedFraction: number
  pressure: 'low' | 'medium' | 'high' | 'critical'
  isHealthy: boolean
  isCritical: boolean
  recommendations: Array<string>
  /** What the monitor freed before taking this snapshot. */
  actions: Array<string>
}

/**
 * `MemoryMonitorOptions.thresholds`: fractions of the budget in use, strictly
 * increasing within (0, 1]; each one left out keeps its current value.
 */
export interface MemoryThresholds {
  /** Where pressure becomes medium (default 0.6). */
  medium?: number
  /** Where pressure becomes high (default 0.75). */
  high?: number
  /** Where pressure becomes critical (default 0.9). */
  critical?: number
}

/** One quantization level's file of a registry entry. */
export interface ModelFileListing {
  level: string
  path: string
  onDisk: boolean
  /** Bytes: the file's own size when on disk, else what the registry expects. */
  bytes?: number
  hubRepo?: string
  hubFile?: string
}

/** A loaded model, as `loadModel` reports it. */
export interface ModelInfo {
  key: string
  path: string
  /** GGUF file type, e.g. `Q4_1`. */
  quantization?: string
  /** Size of the model file (mapped, not copied). */
  bytes: number
  /**
   * The context length it generates in: its registry entry's or the load's
   * `contextSize`, bounded by `trainedContextLength`.
   */
  contextLength: number
  /** Times this key was loaded in this process. */
  loads: number
  /** Where its layers went, when some are on a GPU device; absent on the CPU. */
  gpu?: ModelPlacement
  /**
   * The GGUF's `general.architecture` (`llama`, `qwen2`, `gemma3`, ...); absent for
   * remote models.
   */
  architecture?: string
  /** Its parameter count; absent for remote models. */
  parameterCount?: number
  /** The context length it was trained with; absent for remote models. */
  trainedContextLength?: number
  /**
   * Its own chat template (absent when it has none and `ChatML` is used, and for
   * remote models).
   */
  chatTemplate?: ChatTemplateInfo
  /** Whether its chat template renders tools. */
  supportsTools: boolean
}

export interface ModelListing {
  key: string
  name?: string
  kind: string
  /** Quantization levels it has files for. */
  quantizations: Array<string>
  contextLength?: number
  loaded: boolean
  /** Whether the file of at least one level is on disk (else loading downloads it). */
  onDisk: boolean
  /**
   * Each level's file: where it is (or would be downloaded to), whether it is there,
   * its size, and where it comes from online.
   */
  files: Array<ModelFileListing>
}

/**
 * Options of `getModelLoader`. They are process-wide: every thread shares the loader,
 * and each option left out keeps the loader's current setting.
 */
export interface ModelLoaderOptions {
  /**
   * Most models loaded at once: an integer from 1 to 64 (default 2, or
   * `ORION_MAX_CONCURRENT_MODELS`).
   */
  maxConcurrentModels?: number
  /**
   * Most bytes the loaded models may use: an integer from 0 to 2^53 - 1; 0 removes
   * the budget (default: no budget).
   */
  budgetBytes?: number
  /**
   * Unload a model unused for this many milliseconds: an integer from 0 to
   * 4294967295; 0 turns it off (default: off).
   */
  idleTimeoutMs?: number
}

export interface ModelLoaderStats {
  loadedModels: number
  maxConcurrentModels: number
  /** Loads in progress. */
  loading: number
  totalBytes: number
  models: Array<LoadedModelStats>
  /** Models served by remote servers (registered with `remote`), once loaded. */
  remoteModels: Array<RemoteModelStats>
}

/** A model's layers on a GPU device. */
export interface ModelPlacement {
  /** The device (`Vulkan0 (NVIDIA GeForce RTX 4070)`) and its backend. */
  device: string
  backend: string
  /** Layers on the device, of `layers` (`layers + 1`: the output too). */
  gpuLayers: number
  layers: number
  /**
   * Device memory its weights and the KV cache of one context of its length take,
   * estimated from the file, held while it is loaded (further contexts that live at
   * once, kept for other conversations, add theirs: `takeSnapshot().devices`).
   */
  deviceBytes: number
  /** Why that many: as many as fit, or `gpuLayers`. */
  reason: string
}

export interface OptimizationStrategy {
  /** The level `loadModel` picks by default (`q3`, `q4`, `q8`, ...). */
  quantization: string
  maxConcurrentModels: number
  gpuLayers: number
  contextSize: number
  threads: number
  totalMemory: number
  availableMemory: number
  cpuFeatures: Array<string>
  /**
   * The instruction sets of the llama.cpp CPU backend in use (on Linux x64, the
   * best of its builds that this CPU runs).
   */
  llamaCpuFeatures: Array<string>
  gpus: Array<GpuInfo>
  /**
   * Each GPU backend module found (installed GPU packages, `GGML_BACKEND_PATH`) and
   * whether it loaded.
   */
  gpuModules: Array<GpuModuleInfo>
  /** The device models load on (every layer there); absent for the CPU. */
  device?: GpuInfo
  /**
   * Why the GPU backend named by `configure({ gpu })` / `ORION_GPU` cannot be used
   * (model loads then fail with `GPU_UNAVAILABLE`); absent otherwise.
   */
  gpuUnavailable?: string
  /** Why each choice was made. */
  reasons: Array<string>
}

export interface OrionMemoryInfo {
  models: Array<HeldModelInfo>
  embeddingCacheBytes: number
}

export interface PressureTimes {
  low: number
  medium: number
  high: number
  critical: number
}

export interface ProcessMemoryInfo {
  rss: number
  virtualBytes: number
}

/** One server of a remote target. */
export interface RemoteEndpointStats {
  /** Its base URL (without credentials). */
  url: string
  /** `false` while it is taken out after a failure (it is probed in the background). */
  healthy: boolean
  /** Requests in flight on it now, from this process. */
  outstanding: number
  /** Requests sent to it, retries included. */
  requests: number
  /** Requests it failed or refused. */
  errors: number
  bytesSent: number
  bytesReceived: number
  /** Its last error, if any. */
  lastError?: string
}

/** A loaded remote model. */
export interface RemoteModelStats {
  key: string
  /** The model's name on the servers. */
  model: string
  endpoints: Array<RemoteEndpointStats>
  loads: number
  /** Generations using it now. */
  inUse: number
  /** Milliseconds since it was last used. */
  idleMs: number
}

/**
 * A remote target: OpenAI-compatible servers (llama.cpp's `llama-server`, vLLM, TEI,
 * Ollama, LM Studio) and the model they serve.
 */
export interface RemoteOptions {
  /**
   * The server's base URL (`http://host:8080` or `http://host:8080/v1`), or several:
   * each request goes to the one with the fewest requests outstanding, and one that
   * fails is taken out and probed back in.
   */
  url: string | string[]
  /** The model's name on the servers, as `/v1/models` lists it. */
  model: string
  /** Sent as `Authorization: Bearer <apiKey>`; never shown in errors or stats. */
  apiKey?: string
  /**
   * Most milliseconds a call may wait: for its reply, retries and the server's
   * `Retry-After` waits included (a longer wait fails at once), and then, streaming,
   * for each next piece of text (keep-alives do not count); an integer from 1 to
   * 4294967295 (default 60000).
   */
  timeoutMs?: number
  /**
   * Embedding models only: ask the servers for vectors of this many values (the
   * request's `dimensions`: text-embedding-3 models, vLLM's Matryoshka
   * models), so that fewer numbers travel; an integer from 1 to 65536. A server that
   * ignores it (llama.cpp's) sends whole vectors, which are cut to it here and
   * renormalised. Clients asking for other values are other services.
   */
  dimensions?: number
}

/**
 * Options of `getSharedReranker`. The first reranker of a model decides its batching,
 * queue and thread settings; later ones share them.
 */
export interface RerankerOptions {
  /**
   * A GGUF reranker's file (rank pooling: bge-reranker-v2-m3, jina-reranker-v1-tiny-en,
   * Qwen3-Reranker), run by llama.cpp, or a cross-encoder's directory (its ONNX file,
   * `model.onnx` or `onnx/model.onnx`/`onnx/model_quantized.onnx`, and tokenizer files:
   * ms-marco-MiniLM, bge-reranker-base), run by ONNX Runtime; wins over `model`.
   */
  modelPath?: string
  /** A GGUF reranker's file name under `ORION_MODELS_DIR`. */
  model?: string
  /**
   * Rank on remote servers instead (`/v1/rerank`: llama.cpp's server with `--rerank`,
   * vLLM, TEI, Infinity), with the same cache, batching, timeouts and stats; wins over
   * `model` and `modelPath`.
   */
  remote?: RemoteOptions
  /**
   * Size of the shared cache of scores in bytes, an integer from 0 to 2^40 (default
   * 32 MiB, or `ORION_EMBEDDING_CACHE_BYTES`).
   */
  cacheBytes?: number
  /**
   * Default per-call timeout in milliseconds, an integer from 1 to 4294967295
   * (default 30000, or `ORION_EMBEDDING_TIMEOUT_MS`).
   */
  timeoutMs?: number
  /**
   * Most (query, document) pairs per model call, an integer from 1 to 1024 (default
   * 32).
   */
  maxBatchSize?: number
  /**
   * How long a first queued pair waits for company, in milliseconds: an integer from
   * 0 to 1000 (default 2).
   */
  maxWaitMs?: number
  /**
   * Most pairs waiting before calls are rejected with `OVERLOADED`, an integer from 1
   * to 10000000 (default 10000).
   */
  maxQueue?: number
  /**
   * llama.cpp's (or ONNX Runtime's) threads, an integer from 1 to 1024 (default: every
   * core).
   */
  threads?: number
  /**
   * How a cross-encoder's int8 weights (an ONNX export with int8 weights, as
   * `model_quantized.onnx` files are) are computed with: `'exact'` (default), the
   * model's own fp32 arithmetic, or `'int8'`, integer products calibrated at load as
   * for the embedding model (faster; scores move slightly). A GGUF reranker computes
   * with its file's own types. Rerankers of one model with different precisions are
   * different services.
   */
  precision?: 'exact' | 'int8'
}

/** Statistics of a shared reranker (process-wide, the same from every thread). */
export interface RerankerStats {
  /** Model name. */
  model: string
  /**
   * What scores the pairs: `'llama'` (llama.cpp, a GGUF reranker), `'onnx'` (ONNX
   * Runtime, a cross-encoder's directory) or `'remote'`.
   */
  engine: 'llama' | 'onnx' | 'remote'
  /** Times the model was loaded in this process: 1 once it is in use. */
  modelLoads: number
  /** (query, document) pairs asked for, over every call from every thread. */
  requests: number
  cacheHits: number
  cacheMisses: number
  cacheBytes: number
  /** Tokens the model read for the pairs it scored (0 for a remote reranker). */
  tokens: number
  /** Pairs longer than the model reads, their document cut (with `truncate` on). */
  truncated: number
  /**
   * The threads the last batch computed with, for a GGUF reranker on the CPU (as
   * for embeddings: fewer than `threads` while other processes keep cores busy).
   */
  threads?: number
  /** Model calls made (for a remote reranker, batches sent). */
  batches: number
  /** Pairs per model call, on average. */
  meanBatchSize: number
  /** Pairs waiting for the model now. */
  queueDepth: number
  /** A remote reranker's servers. */
  endpoints?: Array<RemoteEndpointStats>
  /** A cross-encoder's precision (the ONNX engine): `'exact'` or `'int8'`. */
  precision?: 'exact' | 'int8'
  /**
   * With `precision: 'int8'`, how its integer products take their weights on this
   * CPU (see the embedding client's `int8Weights`).
   */
  int8Weights?: 'signed' | 'unsigned'
}

/** Per-call options of `rerank`. */
export interface RerankOptions {
  /** Only the best `topK` documents, an integer from 1 to 10000000 (default: all). */
  topK?: number
  /**
   * Overrides the reranker's timeout for this call: milliseconds, an integer from 1
   * to 4294967295.
   */
  timeoutMs?: number
  /** Rejects the call with code `ABORTED` when it fires. */
  signal?: AbortSignal
  /**
   * `false`: a (query, document) pair longer than the model reads rejects the call
   * with `INPUT_TOO_LONG` instead of the document being cut (default `true`).
   */
  truncate?: boolean
}

/** One document's place in a ranking. */
export interface RerankResult {
  /** The document's index in the array given. */
  index: number
  /**
   * The model's relevance score (higher is more relevant): the classifier's raw
   * output for llama.cpp, the server's `relevance_score` (or `score`) for a remote
   * reranker. Scores compare within one reranker only.
   */
  score: number
}

/** A chat session's conversation as plain data (`save()`, `restore()`). */
export interface SavedChat {
  system?: string
  messages: Array<ChatMessageOut>
}

/**
 * One step of a `TokenStream`, as async iterators return them: text, or (with
 * tools) a call the answer makes, after its text.
 */
export interface StreamStep {
  done: boolean
  value?: string | ToolCallEvent
}

export interface SystemMemoryInfo {
  total: number
  available: number
  used: number
  swapTotal: number
  swapUsed: number
  /** The cgroup's limit, when the process runs in one that sets it. */
  cgroupLimit?: number
}

/** Options of `ModelLoader.tokenize`. */
export interface TokenizeOptions {
  /**
   * Read special-token text (`<|im_end|>`) as those tokens, as chat templates are
   * read; else it is plain text (default false).
   */
  special?: boolean
}

/** A call of a tool. */
export interface ToolCall {
  /** Its id, which the tool's result message names (`toolCallId`). */
  id: string
  name: string
  /** The arguments: an object valid against the tool's `parameters`. */
  arguments: Record<string, unknown>
}

/**
 * A tool call in a stream (`options.tools`): it comes after the answer's text, once
 * the call is complete.
 */
export interface ToolCallEvent {
  toolCall: ToolCall
}
