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
