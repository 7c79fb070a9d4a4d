// Type-checked with tsc --strict --module nodenext against the installed package.
import {
  getSharedEmbeddingClient,
  getModelLoader,
  getMemoryMonitor,
  applyQuantization,
  configure,
  QUANTIZATION_LEVELS,
  type MemorySnapshot,
  type OrionErrorCode,
  type QuantizationLevel,
} from 'orion-native'

const settings = configure({ modelsDir: '/tmp/models' })
const dir: string = settings.modelsDir
const client = getSharedEmbeddingClient({ timeoutMs: 5000 })
const v: Promise<number[]> = client.createEmbedding('x', { signal: new AbortController().signal })
const flat: Promise<Float32Array> = client.createEmbeddingsFloat32(['a', 'b'])
const loader = getModelLoader({ maxConcurrentModels: 1 })
async function run(): Promise<string> {
  await loader.loadModel('demo', (p: number) => void p)
  let text = ''
  for await (const piece of loader.generateStream('demo', [{ role: 'user', content: 'hi' }])) text += piece
  const snap: MemorySnapshot = await getMemoryMonitor().takeSnapshot()
  const level: QuantizationLevel = 'q4'
  const bits: number = QUANTIZATION_LEVELS[level].bitsPerWeight
  const code: OrionErrorCode = 'MODEL_NOT_FOUND'
  return `${dir}${text}${snap.pressure}${bits}${code}${applyQuantization('m', level)}`
}
export { v, flat, run }
