'use strict'
// Hostile HTTP servers on 127.0.0.1, shared by the tests (remote-hostile, download) and
// `npm run stress`'s hostile section (scripts/stress/hostile.js).
const http = require('node:http')

/**
 * A server whose `route(req, res, s)` answers (GET /health and /v1/models answer a model
 * `m` unless the route does). Counts requests by path and streams still open.
 */
async function serve(route) {
  const s = { hits: {}, open: 0 }
  s.server = http.createServer((req, res) => {
    s.hits[req.url] = (s.hits[req.url] || 0) + 1
    s.open++
    res.on('close', () => s.open--)
    res.on('error', () => {})
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      req.body = body
      if (route(req, res, s) !== undefined) return
      if (req.url === '/health') return json(res, 200, { status: 'ok' })
      if (req.url === '/v1/models') return json(res, 200, { data: [{ id: 'm' }] })
      json(res, 404, { error: { message: 'no route' } })
    })
  })
  await new Promise((r) => s.server.listen(0, '127.0.0.1', r))
  s.port = s.server.address().port
  s.url = `http://127.0.0.1:${s.port}`
  s.close = () =>
    new Promise((r) => {
      s.server.close(r)
      s.server.closeAllConnections()
    })
  return s
}

function json(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers })
  res.end(JSON.stringify(body))
  return true
}

function sse(res) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
}

/** Write `next()` (a string or Buffer, or null to stop) for as long as the client reads. */
function pump(res, next, { everyMs = 0 } = {}) {
  let stopped = false
  res.on('close', () => (stopped = true))
  const step = () => {
    while (!stopped) {
      const chunk = next()
      if (chunk === null) return res.end()
      if (everyMs > 0) {
        res.write(chunk)
        return setTimeout(step, everyMs)
      }
      if (!res.write(chunk)) return res.once('drain', step)
    }
  }
  step()
}

/** One streamed chat piece (an SSE event). */
const piece = (text, finish = null) =>
  `data: ${JSON.stringify({ choices: [{ delta: { content: text }, finish_reason: finish }] })}\n\n`

/**
 * A `size`-byte JSON-looking body (`{"data":[{"id":"111…`), streamed without a length
 * and never held whole: a reply far larger than any the client should read.
 */
function huge(res, size) {
  res.writeHead(200, { 'content-type': 'application/json' })
  const chunk = Buffer.alloc(1 << 20, '1')
  let sent = 0
  let first = true
  pump(res, () => {
    if (first) {
      first = false
      return '{"data":[{"id":"'
    }
    if (sent >= size) return null
    sent += chunk.length
    return chunk
  })
  return true
}

/** Answer a download as an honest server would: `body`, or the range asked for. */
function honest(req, res, body) {
  const range = /^bytes=(\d+)-$/.exec(req.headers.range || '')
  const start = range ? Number(range[1]) : 0
  if (start >= body.length) return res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end()
  const headers = { 'content-length': body.length - start, 'content-type': 'application/octet-stream' }
  if (range) headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`
  res.writeHead(range ? 206 : 200, headers)
  res.end(body.subarray(start))
}

module.exports = { serve, json, sse, pump, piece, huge, honest }
