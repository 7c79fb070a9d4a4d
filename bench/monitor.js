#!/usr/bin/env node
'use strict'
// The cost of a memory snapshot: orion-native's takeSnapshot() against
// process.memoryUsage() and the systeminformation package's mem(), in one run.
//
//   node bench/monitor.js [--quick] [--json]

const path = require('node:path')
const { performance } = require('node:perf_hooks')
const { log, fmt, summary, machine, writeResults, parseArgs, die, markdownTable } = require('./common')

const ROOT = path.resolve(__dirname, '..')

async function time(n, fn) {
  const samples = []
  for (let i = 0; i < n; i++) {
    const t = performance.now()
    await fn()
    samples.push(performance.now() - t)
  }
  return summary(samples)
}

async function main() {
  const { quick, json } = parseArgs('monitor.js', process.argv.slice(2))
  const n = quick ? 200 : 2000
  const monitor = require(ROOT).getMemoryMonitor({ historySize: 10 })
  const si = require(path.join(__dirname, 'node_modules', 'systeminformation'))
  // Warm up each: first calls pay for lazy initialisation.
  for (let i = 0; i < 20; i++) {
    await monitor.takeSnapshot()
    process.memoryUsage()
    await si.mem()
  }
  log(`timing ${n} calls of each, interleaved in blocks`)
  const orion = []
  const memoryUsage = []
  const siMem = []
  for (let block = 0; block < 10; block++) {
    orion.push(...(await time(n / 10, () => monitor.takeSnapshot())).values)
    memoryUsage.push(...(await time(n / 10, () => process.memoryUsage())).values)
    siMem.push(...(await time(n / 10, () => si.mem())).values)
  }
  const results = {
    date: new Date().toISOString(),
    quick,
    machine: machine(),
    calls: n,
    takeSnapshotMs: summary(orion),
    processMemoryUsageMs: summary(memoryUsage),
    systeminformationMemMs: summary(siMem),
  }
  results.pass = results.takeSnapshotMs.median < 1
  const file = writeResults('monitor', results)
  if (json) return process.stdout.write(JSON.stringify(results, null, 2) + '\n')
  process.stdout.write(`${report(results)}\n\nFull results: ${path.relative(process.cwd(), file)}\n`)
}

function report(r) {
  const us = (ms) => `${fmt(ms * 1000, 0)} µs`
  return [
    `## Memory snapshot cost (${r.calls} calls each)`,
    '',
    `- ${r.machine.cpu}, ${r.machine.cores} cores, node ${r.machine.node}, ${r.date}`,
    '',
    ...markdownTable([
      ['call', 'median', 'max'],
      [
        'orion-native takeSnapshot() (system + process + JS heap + models, awaited)',
        us(r.takeSnapshotMs.median),
        us(r.takeSnapshotMs.max),
      ],
      ['process.memoryUsage() (this thread only)', us(r.processMemoryUsageMs.median), us(r.processMemoryUsageMs.max)],
      ['systeminformation mem() (system only)', us(r.systeminformationMemMs.median), us(r.systeminformationMemMs.max)],
    ]),
    '',
    `takeSnapshot median < 1 ms: ${r.pass ? '✓' : '✗'}`,
  ].join('\n')
}

if (require.main === module) {
  main()
    .then(() => process.exit(0))
    .catch(die)
}

module.exports = { report }
