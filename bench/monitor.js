#!/usr/bin/env node
'use strict'
// The cost of a memory snapshot: orion-native's takeSnapshot() against
// process.memoryUsage() and the systeminformation package's mem(), in one run.
//
//   node bench/monitor.js [--quick] [--json]

const path = require('node:path')
const { performance } = require('node:perf_hooks')
const { log, fmt, summary, machine, writeResults, parseArgs, die } = require('./common')

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
  const row = (name, s) => `| ${name} | ${fmt(s.median * 1000, 0)} µs | ${fmt(s.max * 1000, 0)} µs |`
  process.stdout.write(
    [
      `## Memory snapshot cost (${n} calls each, median and max)`,
      '',
      `- ${results.machine.cpu}, ${results.machine.cores} cores, node ${results.machine.node}, ${results.date}`,
      '',
      '| call | median | max |',
      '|---|---|---|',
      row('orion-native takeSnapshot() (system + process + JS heap + models, awaited)', results.takeSnapshotMs),
      row('process.memoryUsage()', results.processMemoryUsageMs),
      row('systeminformation mem()', results.systeminformationMemMs),
      '',
      `takeSnapshot median < 1 ms: ${results.pass ? '✓' : '✗'}`,
      '',
      `Full results: ${path.relative(process.cwd(), file)}`,
      '',
    ].join('\n'),
  )
}

main()
  .then(() => process.exit(0))
  .catch(die)
