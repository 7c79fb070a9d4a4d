'use strict'
// After the runtime has shut down (what the exit listener does), calls reject SHUT_DOWN.
const root = process.argv[2]
const orion = require(root)
const native = require(`${root}/lib/binding`).load()

async function main() {
  const client = orion.getSharedEmbeddingClient()
  const inFlight = Promise.allSettled(Array.from({ length: 50 }, (_, i) => client.createEmbedding(`pending ${i}`)))
  const stopped = native.__shutdown(2000)
  const settled = await inFlight
  const codes = (rs) => [...new Set(rs.map((r) => (r.status === 'fulfilled' ? 'ok' : r.reason.code)))]
  const after = await Promise.allSettled([
    client.createEmbedding('after shutdown'),
    orion.getModelLoader().generate('demo', 'hi'),
    orion.getModelLoader().loadModel('demo'),
  ])
  console.log(JSON.stringify({ stopped, inFlight: codes(settled), after: after.map((r) => r.reason && r.reason.code) }))
}
main().catch((e) => {
  console.error(e)
  process.exit(1)
})
