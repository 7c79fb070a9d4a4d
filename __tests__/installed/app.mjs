// The package from an ES module: named exports and the default export.
import orion, { getSharedEmbeddingClient, applyQuantization, QUANTIZATION_LEVELS, configure } from 'orion-native'

const modelsDir = process.argv[2]
if (modelsDir) configure({ modelsDir })
const vector = await getSharedEmbeddingClient().createEmbedding('hello from an ES module')
console.log(
  JSON.stringify({
    dims: vector.length,
    isArray: vector instanceof Array,
    quantized: applyQuantization('Mistral-7B-Instruct-v0.2', 'q4'),
    q4: QUANTIZATION_LEVELS.q4.mlc,
    sameDefault: orion.getSharedEmbeddingClient === getSharedEmbeddingClient,
  }),
)
