#!/usr/bin/env node
'use strict'
// `npm run stress`: the hostile cases of issues 10 and 22, bounded (about 10 minutes on 2 cores).
//
//   node scripts/stress.js [--runs N] [--quick] [--json] [--only a,b,...]
//
// Exit scenarios: each run is a fresh process that leaves with work in flight (see
// scripts/stress/child.js); a run crashes when it dies of a signal other than the one
// expected or exits with another code than Node would give, and is noisy when its stderr
// shows native trouble (ONNX Runtime's schema errors, aborts, heap corruption).
// "What held": long runs whose memory must stay flat and whose promises must all settle
// (scripts/stress/held.js). "Hostile": one scenario per finding of issue 22 (hostile
// servers, downloads, files and arguments, privacy, the last token's delay, worker
// churn), each in a fresh process (scripts/stress/hostile.js), judged on its outcomes,
// its slowest call and its peak RSS against their bounds. --quick runs fewer of
// everything (the test suite's subset). --only takes scenario names, or the sections'
// names: exits, held, hostile.
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { parseArgs } = require('node:util')

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string' },
    quick: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    only: { type: 'string' },
  },
})
const runs = Number(args.runs || (args.quick ? 10 : 50))
const child = path.join(__dirname, 'stress', 'child.js')
const held = path.join(__dirname, 'stress', 'held.js')
const hostile = path.join(__dirname, 'stress', 'hostile.js')
const HOSTILE = require(hostile).SCENARIOS

// scenario: what Node gives for it, and the delays (ms) cycled through.
const SCENARIOS = {
  'exit-embed': { code: 0, delays: [1, 5, 10, 20, 35, 50, 80, 120] },
  'natural-end': { code: 0, delays: [1, 10, 30, 50, 100] },
  uncaught: { code: 1, delays: [1, 10, 30, 50, 100], stderr: /stress: uncaught on purpose/ },
  'worker-exit': { code: 0, delays: [1, 10, 30, 50, 100] },
  'worker-only': { code: 0, delays: [1, 10, 30, 50, 100] },
  'exit-generate': { code: 0, delays: [20, 50, 100, 150, 250] },
  'exit-llm-load': { code: 0, delays: [0, 2, 5, 10, 20, 40] },
  sigterm: { signal: 'SIGTERM', delays: [10, 50, 100, 200] },
}
const NOISE =
  /Schema error|ExecuteKernel|terminate called|Segmentation|Aborted|corrupted|double free|free\(\)|GGML_ASSERT|panicked|core dumped|FATAL/i

function exitScenario(name, spec) {
  const row = { scenario: name, runs: 0, crashes: 0, noisy: 0, maxMs: 0, failures: [] }
  for (let i = 0; i < runs; i++) {
    const delay = spec.delays[i % spec.delays.length]
    const t = Date.now()
    const r = spawnSync(process.execPath, [child, name, String(delay)], { encoding: 'utf8', timeout: 60_000 })
    row.maxMs = Math.max(row.maxMs, Date.now() - t)
    row.runs++
    const ok = spec.signal ? r.signal === spec.signal : r.signal === null && r.status === spec.code
    const stderr = (r.stderr || '').replace(spec.stderr || /$^/, '')
    if (!ok) {
      row.crashes++
      row.failures.push({ delay, status: r.status, signal: r.signal, stderr: r.stderr.slice(-400) })
    } else if (NOISE.test(stderr) || (!spec.stderr && stderr.trim())) {
      row.noisy++
      row.failures.push({ delay, status: r.status, signal: r.signal, stderr: r.stderr.slice(-400) })
    }
  }
  return row
}

function heldCheck(check, count) {
  const t = Date.now()
  const r = spawnSync(process.execPath, ['--expose-gc', held, check, String(count)], {
    encoding: 'utf8',
    timeout: 600_000,
  })
  if (r.status !== 0) return { check, ok: false, error: (r.stderr || '').slice(-600), ms: Date.now() - t }
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1))
  const growth = out.rssStart ? (out.rssEnd - out.rssStart) / out.rssStart : undefined
  let ok = true
  if (growth !== undefined) ok = growth < 0.05
  if (check === 'workers') ok = out.uncoded === 0 && out.answered + out.coded === out.requests
  if (check === 'unload-mid-stream') ok = out.survived === out.runs
  return { check, ok, ...out, rssGrowth: growth, ms: Date.now() - t }
}

function hostileScenario(name, spec) {
  const t = Date.now()
  // A hang the scenario's own bounds missed: killed at a generous deadline.
  const limit = 60_000 + (name === 'churn' ? spec.runs[0] * 1000 : 240_000)
  const r = spawnSync(process.execPath, [hostile, name, args.quick ? 'quick' : ''], {
    encoding: 'utf8',
    timeout: limit,
  })
  const ms = Date.now() - t
  const failures = []
  let out = { scenario: name, runs: 0, outcomes: {}, problems: [], problemCount: 0 }
  try {
    out = JSON.parse(r.stdout.trim().split('\n').at(-1))
  } catch {
    failures.push('no report')
  }
  if (r.status !== 0 || r.signal) failures.push(`exit ${r.status} ${r.signal || ''}`.trim())
  if ((r.stderr || '').trim()) failures.push(`stderr: ${r.stderr.slice(-400)}`)
  if (out.problemCount) failures.push(...out.problems, `${out.problemCount} problems in all`)
  if (out.maxMs > out.boundMs) failures.push(`slowest ${out.maxMs} ms over ${out.boundMs} ms`)
  if (out.rssBoundMB !== null && out.rssMB > out.rssBoundMB)
    failures.push(`peak RSS ${out.rssMB} MiB over ${out.rssBoundMB} MiB`)
  return { ...out, what: spec.what, ok: failures.length === 0, failures, ms }
}

function main() {
  const only = args.only ? new Set(args.only.split(',')) : null
  const picked = (section) => (n) => !only || only.has(n) || only.has(section)
  const exits = Object.entries(SCENARIOS)
    .filter(([n]) => picked('exits')(n))
    .map(([n, s]) => {
      const row = exitScenario(n, s)
      if (!args.json) process.stderr.write(`${n}: ${row.runs} runs, ${row.crashes} crashes, ${row.noisy} noisy\n`)
      return row
    })
  const q = args.quick
  const heldChecks = [
    ['embeddings', q ? 5_000 : 100_000],
    ['generations', q ? 20 : 500],
    ['workers', q ? 2_000 : 10_000],
    ['unload-mid-stream', q ? 5 : 40],
  ]
    .filter(([n]) => picked('held')(n))
    .map(([n, c]) => {
      const r = heldCheck(n, c)
      if (!args.json) process.stderr.write(`${n}: ${r.ok ? 'held' : 'FAILED'}\n`)
      return r
    })
  const hostileRows = Object.entries(HOSTILE)
    .filter(([n]) => picked('hostile')(n))
    .map(([n, spec]) => {
      const r = hostileScenario(n, spec)
      if (!args.json) process.stderr.write(`${n}: ${r.ok ? 'held' : 'FAILED'} (${(r.ms / 1000).toFixed(1)} s)\n`)
      return r
    })
  const report = {
    date: new Date().toISOString().slice(0, 10),
    node: process.version,
    exits,
    held: heldChecks,
    hostile: hostileRows,
  }
  if (args.json) {
    console.log(JSON.stringify(report))
  } else {
    const pct = (x) => (x === undefined ? '' : `${(x * 100).toFixed(1)} %`)
    if (exits.length) {
      console.log('| exit scenario | runs | crashes | noisy stderr | slowest run |')
      console.log('| --- | --- | --- | --- | --- |')
      for (const r of exits) console.log(`| ${r.scenario} | ${r.runs} | ${r.crashes} | ${r.noisy} | ${r.maxMs} ms |`)
    }
    if (heldChecks.length) {
      console.log('\n| held | what | result | RSS growth | time |')
      console.log('| --- | --- | --- | --- | --- |')
      for (const h of heldChecks) {
        const what =
          h.check === 'embeddings'
            ? `${h.requests} requests`
            : h.check === 'generations'
              ? `${h.generations} generations`
              : h.check === 'workers'
                ? `${h.requests} requests from 8 workers: ${h.answered} answered, ${h.coded} coded errors, ${h.uncoded} other`
                : `${h.runs} streams, ${h.survived} finished after unloadModel`
        console.log(
          `| ${h.check} | ${what} | ${h.ok ? 'held' : 'FAILED'} | ${pct(h.rssGrowth)} | ${(h.ms / 1000).toFixed(1)} s |`,
        )
      }
    }
    if (hostileRows.length) console.log(`\n${hostileTable(hostileRows)}`)
  }
  const failed =
    exits.some((r) => r.crashes || r.noisy) || heldChecks.some((h) => !h.ok) || hostileRows.some((h) => !h.ok)
  if (failed && !args.json) {
    for (const r of exits) for (const f of r.failures.slice(0, 3)) console.error(r.scenario, JSON.stringify(f))
    for (const h of heldChecks) if (!h.ok) console.error(h.check, JSON.stringify(h))
    for (const h of hostileRows) for (const f of h.failures.slice(0, 14)) console.error(h.scenario, f)
  }
  process.exitCode = failed ? 1 : 0
}

/** A duration as people read it: `38 ms`, `1.05 s`. */
function duration(ms) {
  if (ms < 10) return `${ms.toFixed(1)} ms`
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`
}

/** The hostile section as a markdown table: outcomes, slowest call and peak RSS against their bounds. */
function hostileTable(rows) {
  const lines = [
    '| hostile scenario | what | runs | outcome | slowest / bound | peak RSS / bound | result |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ]
  for (const h of rows) {
    let outcome = Object.entries(h.outcomes || {})
      .map(([k, v]) => `${k} ×${v}`)
      .join(', ')
    let slowest = `${duration(h.maxMs || 0)} / ${duration(h.boundMs || 0)}`
    if (h.scenario === 'churn') {
      outcome = `${h.churned} workers terminated mid-request; surviving requests: ${outcome}`
      slowest = `${duration(h.maxMs)} (embedding ${duration(h.slowestEmbeddingMs)}, p50 ${duration(h.embeddingP50Ms)}; generation p50 ${duration(h.generationP50Ms)}) / ${duration(h.boundMs)}`
    }
    if (h.scenario === 'last-token-gap') {
      slowest = `max ${duration(h.maxMs)}, median ${duration(h.medianGapMs)} / ${duration(h.boundMs)}`
    }
    const rss = h.rssBoundMB === null ? 'in a child process' : `${h.rssMB} / ${h.rssBoundMB} MiB`
    lines.push(
      `| ${h.scenario} | ${h.what} | ${h.runs} | ${outcome} | ${slowest} | ${rss} | ${h.ok ? 'held' : 'FAILED'} |`,
    )
  }
  return lines.join('\n')
}

main()
