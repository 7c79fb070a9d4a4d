'use strict'
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { Worker } = require('node:worker_threads')
const { spawn, spawnSync } = require('node:child_process')
const { getMemoryMonitor, getModelLoader, getSharedEmbeddingClient } = require('..')
const { expectThrowCode, root } = require('./helpers')

const DEFAULTS = {
  thresholds: { medium: 0.6, high: 0.75, critical: 0.9 },
  historySize: 100,
  budgetBytes: 0,
  autoFree: true,
  freeAt: 'critical',
}

afterEach(() => {
  // The monitor is process-wide: put its defaults back for the next test.
  getMemoryMonitor(DEFAULTS).stop()
})

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

describe('MemoryMonitor: the app contract', () => {
  test('takes snapshots', async () => {
    const monitor = getMemoryMonitor()
    const snapshot = await monitor.takeSnapshot()
    expect(snapshot).toBeDefined()
    expect(snapshot.pressure).toMatch(/low|medium|high|critical/)
    expect(Array.isArray(snapshot.recommendations)).toBe(true)
  })

  test('tracks history', async () => {
    const monitor = getMemoryMonitor()
    const before = monitor.getSnapshots().length
    await monitor.takeSnapshot()
    await monitor.takeSnapshot()
    const snapshots = monitor.getSnapshots()
    expect(snapshots.length).toBeGreaterThan(1)
    expect(snapshots.length).toBe(Math.min(before + 2, 100))
    expect(snapshots[snapshots.length - 1].timestamp).toBeGreaterThanOrEqual(snapshots[snapshots.length - 2].timestamp)
  })
})

describe('snapshots', () => {
  test('report system, process, JS heap and what orion-native holds', async () => {
    await getSharedEmbeddingClient().createEmbedding('monitor sees the cache')
    const s = await getMemoryMonitor().takeSnapshot()
    expect(s.system.total).toBeGreaterThan(0)
    expect(s.system.available).toBeGreaterThan(0)
    expect(s.process.rss).toBeGreaterThan(10 << 20)
    expect(s.process.virtualBytes).toBeGreaterThanOrEqual(s.process.rss)
    expect(s.jsHeap.used).toBeGreaterThan(0)
    expect(s.jsHeap.total).toBeGreaterThanOrEqual(s.jsHeap.used)
    expect(s.orion.embeddingCacheBytes).toBeGreaterThan(0)
    expect(s.usedFraction).toBeCloseTo(s.usedBytes / s.budgetBytes, 6)
    expect(s.isHealthy).toBe(s.pressure === 'low' || s.pressure === 'medium')
    expect(s.isCritical).toBe(s.pressure === 'critical')
  })

  test('a budget sets the pressure: the same process is low on a large budget, critical on a tight one', async () => {
    const monitor = getMemoryMonitor({ autoFree: false })
    const rss = (await monitor.takeSnapshot()).process.rss
    getMemoryMonitor({ budgetBytes: rss * 20 })
    expect((await monitor.takeSnapshot()).pressure).toBe('low')
    getMemoryMonitor({ budgetBytes: Math.floor(rss * 1.02) })
    const tight = await monitor.takeSnapshot()
    expect(tight.pressure).toBe('critical')
    expect(tight.isCritical).toBe(true)
    expect(tight.isHealthy).toBe(false)
  })

  test('an alert is recorded when pressure rises into high', async () => {
    const monitor = getMemoryMonitor({ autoFree: false })
    monitor.clearAlerts()
    expect(monitor.hasAlerts).toBe(false)
    const rss = (await monitor.takeSnapshot()).process.rss
    getMemoryMonitor({ budgetBytes: rss * 20 })
    await monitor.takeSnapshot() // low
    getMemoryMonitor({ budgetBytes: rss * 2, thresholds: { medium: 0.1, high: 0.2, critical: 0.99 } })
    const s = await monitor.takeSnapshot()
    expect(s.pressure).toBe('high')
    expect(monitor.hasAlerts).toBe(true)
    const alert = monitor.getAlerts().find((a) => a.kind === 'pressure')
    expect(alert).toMatchObject({ pressure: 'high' })
    expect(alert.message).toMatch(/rose to high/)
    monitor.clearAlerts()
    expect(monitor.getAlerts()).toEqual([])
  })

  test('getStats summarises the history', async () => {
    const monitor = getMemoryMonitor()
    await monitor.takeSnapshot()
    const s = monitor.getStats()
    expect(s.count).toBeGreaterThanOrEqual(1)
    expect(s.current.pressure).toMatch(/low|medium|high|critical/)
    expect(s.peakRss).toBeGreaterThanOrEqual(s.current.process.rss)
    expect(s.minUsedFraction).toBeLessThanOrEqual(s.meanUsedFraction)
    expect(s.meanUsedFraction).toBeLessThanOrEqual(s.maxUsedFraction)
    expect(Object.keys(s.timeAtMs).sort()).toEqual(['critical', 'high', 'low', 'medium'])
  })

  test('the history is shared between threads', async () => {
    const monitor = getMemoryMonitor()
    const before = monitor.getStats().count
    const fromWorker = await new Promise((resolve, reject) => {
      const w = new Worker(path.join(__dirname, 'workers', 'monitor-worker.js'), { workerData: { root } })
      w.once('message', resolve)
      w.once('error', reject)
    })
    expect(fromWorker.pressures).toHaveLength(2)
    expect(fromWorker.heap.used).toBeGreaterThan(0)
    expect(monitor.getStats().count).toBe(before + 2)
  })
})

describe('pressure frees memory', () => {
  test('a low budget makes the loader evict an idle model and shrinks the embedding cache', async () => {
    const loader = getModelLoader()
    await loader.loadModel('demo')
    const client = getSharedEmbeddingClient()
    await client.createEmbeddings(Array.from({ length: 50 }, (_, i) => `fill the cache ${i}`))
    expect(client.getStats().cacheBytes).toBeGreaterThan(0)
    const monitor = getMemoryMonitor({ budgetBytes: 1 << 20, freeAt: 'high' })
    monitor.clearAlerts()
    const s = await monitor.takeSnapshot()
    expect(s.actions.some((a) => /Unloaded idle model 'demo'/.test(a))).toBe(true)
    expect(s.actions.some((a) => /Shrank the embedding cache/.test(a))).toBe(true)
    expect(loader.getStats().models.map((m) => m.key)).not.toContain('demo')
    expect(client.getStats().cacheBytes).toBe(0)
    expect(s.orion.models.map((m) => m.key)).not.toContain('demo')
    expect(monitor.getAlerts().filter((a) => a.kind === 'freed').length).toBe(s.actions.length)
  })

  test('with two models loaded under a tight budget, the idle one is freed and the generating one kept', async () => {
    const loader = getModelLoader({ maxConcurrentModels: 2 })
    const gguf = path.join(require('./helpers').llmModelDir, 'SmolLM2-135M-Instruct.Q4_1.gguf')
    loader.registerModel('monitor-idle', { files: { q4: { path: gguf } } })
    loader.registerModel('monitor-busy', { files: { q4: { path: gguf } } })
    await loader.loadModel('monitor-idle')
    await loader.loadModel('monitor-busy')
    const monitor = getMemoryMonitor({ autoFree: false })
    const rss = (await monitor.takeSnapshot()).process.rss
    let during
    await loader.generate('monitor-busy', 'Tell me a long story.', {
      maxTokens: 40,
      temperature: 0,
      onToken: () => {
        if (during) return
        // A budget the process already exceeds: the simulated device is out of memory.
        during = getMemoryMonitor({ budgetBytes: Math.floor(rss * 0.9), freeAt: 'high', autoFree: true }).takeSnapshot()
      },
    })
    const s = await during
    expect(s.actions.some((a) => a.includes("'monitor-idle'"))).toBe(true)
    expect(s.actions.some((a) => a.includes("'monitor-busy'"))).toBe(false)
    expect(s.orion.models.map((m) => m.key)).toEqual(['monitor-busy'])
    getMemoryMonitor({ budgetBytes: 0 })
    const next = await monitor.takeSnapshot()
    expect(next.orion.models.map((m) => m.key)).toEqual(['monitor-busy'])
  })

  test("the app's device profiles: a 2 GB budget frees the idle model of a heavy process, 8 GB leaves it", async () => {
    const GB = 1024 ** 3
    const loader = getModelLoader({ maxConcurrentModels: 2 })
    const gguf = path.join(require('./helpers').llmModelDir, 'SmolLM2-135M-Instruct.Q4_1.gguf')
    loader.registerModel('profile-idle', { files: { q4: { path: gguf } } })
    loader.registerModel('profile-busy', { files: { q4: { path: gguf } } })
    await loader.loadModel('profile-idle')
    await loader.loadModel('profile-busy')
    // The app's own data: enough resident memory that the process is heavy on a 2 GB device,
    // and stays heavy (high: 75 % of the budget) once the idle model and its context are
    // freed (about 0.3 GB here: 1.75 GB left it at medium).
    const monitor = getMemoryMonitor({ autoFree: false })
    const rss = (await monitor.takeSnapshot()).process.rss
    const ballast = Buffer.alloc(Math.max(0, Math.floor(1.9 * GB - rss)), 1)
    try {
      const eight = await getMemoryMonitor({ budgetBytes: 8 * GB, autoFree: true, freeAt: 'high' }).takeSnapshot()
      expect(eight.pressure).toMatch(/low|medium/)
      expect(eight.actions).toEqual([])
      let during
      await loader.generate('profile-busy', 'Tell me a long story.', {
        maxTokens: 30,
        temperature: 0,
        onToken: () => {
          during ??= getMemoryMonitor({ budgetBytes: 2 * GB }).takeSnapshot()
        },
      })
      const two = await during
      expect(two.actions.some((a) => a.includes("'profile-idle'"))).toBe(true)
      // Looking only (the generation is over, so profile-busy is idle now and would go too).
      const next = await getMemoryMonitor({ autoFree: false }).takeSnapshot()
      expect(['high', 'critical']).toContain(next.pressure)
      expect(next.orion.models.map((m) => m.key)).toEqual(['profile-busy'])
    } finally {
      // Keeps the ballast alive to here. It is empty when the process is already that heavy
      // (jest runs every test file in one process, and the GGUF embedding tests before this
      // one leave their models loaded).
      if (ballast.length) ballast.fill(0, 0, 1)
    }
  })

  test('recommendations name idle models with their size when pressure is up', async () => {
    const loader = getModelLoader()
    await loader.loadModel('demo')
    const monitor = getMemoryMonitor({ autoFree: false })
    const rss = (await monitor.takeSnapshot()).process.rss
    getMemoryMonitor({ budgetBytes: Math.floor(rss * 1.02) })
    const s = await monitor.takeSnapshot()
    expect(
      s.recommendations.some((r) => /^Unload idle model 'demo' \([\d.]+ MB, unused for \d+ (s|min)\)$/.test(r)),
    ).toBe(true)
    expect(loader.getStats().models.map((m) => m.key)).toContain('demo')
  })

  test('with autoFree off nothing is unloaded', async () => {
    await getModelLoader().loadModel('demo')
    const s = await getMemoryMonitor({ budgetBytes: 1 << 20, autoFree: false }).takeSnapshot()
    expect(s.actions).toEqual([])
    expect(s.pressure).toBe('critical')
    expect(
      getModelLoader()
        .getStats()
        .models.map((m) => m.key),
    ).toContain('demo')
  })
})

describe('monitoring and subscriptions', () => {
  test('start takes snapshots in the background, subscribers see them, stop ends it', async () => {
    const monitor = getMemoryMonitor()
    const seen = []
    const unsubscribe = monitor.onSnapshot((s) => seen.push(s))
    monitor.start(20)
    expect(monitor.isRunning).toBe(true)
    const deadline = Date.now() + 5000
    while (seen.length < 3 && Date.now() < deadline) await sleep(10)
    expect(seen.length).toBeGreaterThanOrEqual(3)
    expect(seen[0].pressure).toMatch(/low|medium|high|critical/)
    unsubscribe()
    const after = seen.length
    await sleep(100)
    expect(seen.length).toBeLessThanOrEqual(after + 1) // one may have been in flight
    monitor.stop()
    expect(monitor.isRunning).toBe(false)
    const count = monitor.getStats().count
    await sleep(100)
    expect(monitor.getStats().count).toBe(count)
  })

  test('alert subscribers hear about a rise into high', async () => {
    const monitor = getMemoryMonitor({ autoFree: false })
    const alerts = []
    const unsubscribe = monitor.onAlert((a) => alerts.push(a))
    const rss = (await monitor.takeSnapshot()).process.rss
    getMemoryMonitor({ budgetBytes: rss * 20 })
    await monitor.takeSnapshot()
    getMemoryMonitor({ budgetBytes: rss * 2, thresholds: { medium: 0.1, high: 0.2, critical: 0.99 } })
    await monitor.takeSnapshot()
    const deadline = Date.now() + 5000
    while (!alerts.length && Date.now() < deadline) await sleep(10)
    unsubscribe()
    expect(alerts.some((a) => a.kind === 'pressure' && a.pressure === 'high')).toBe(true)
  })

  test('a subscription from a worker that then exits is safe', async () => {
    const monitor = getMemoryMonitor()
    const w = new Worker(path.join(__dirname, 'workers', 'monitor-subscriber.js'), { workerData: { root } })
    await new Promise((resolve, reject) => {
      w.on('message', (m) => m.type === 'subscribed' && resolve())
      w.once('error', reject)
    })
    monitor.start(10)
    const code = await new Promise((resolve) => w.once('exit', resolve))
    expect(code).toBe(0)
    // Snapshots keep coming and reach nobody on the dead worker.
    const count = monitor.getStats().count
    await sleep(100)
    expect(monitor.getStats().count).toBeGreaterThan(count)
    await expect(monitor.takeSnapshot()).resolves.toHaveProperty('pressure')
  })

  test('ORION_ENABLE_MEMORY_MONITOR starts monitoring by itself', () => {
    const script = `
      const m = require(${JSON.stringify(root)}).getMemoryMonitor()
      setTimeout(() => { console.log(JSON.stringify({ running: m.isRunning, count: m.getStats().count })); m.stop() }, 300)
    `
    const run = (env) =>
      JSON.parse(
        spawnSync(process.execPath, ['-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' }).stdout,
      )
    const on = run({ ORION_ENABLE_MEMORY_MONITOR: '1', ORION_MEMORY_MONITOR_INTERVAL_MS: '20' })
    expect(on.running).toBe(true)
    expect(on.count).toBeGreaterThanOrEqual(3)
    const off = run({ ORION_ENABLE_MEMORY_MONITOR: '' })
    expect(off).toEqual({ running: false, count: 0 })
  })

  test.each([0, -5, 'fast', NaN, undefined])('start(%p) is INVALID_OPTION', (interval) => {
    expectThrowCode(() => getMemoryMonitor().start(interval), 'INVALID_OPTION')
  })

  test('subscribing needs a function', () => {
    expectThrowCode(() => getMemoryMonitor().onSnapshot('print'), 'INVALID_OPTION')
    expectThrowCode(() => getMemoryMonitor().onAlert(undefined), 'INVALID_OPTION')
  })
})

describe('the status command', () => {
  const cli = path.join(root, 'bin', 'orion-native.js')

  test('shows what a monitoring process holds, as a table and as JSON', async () => {
    const app = spawn(
      process.execPath,
      [
        '-e',
        `const o = require(${JSON.stringify(root)})
         o.getModelLoader().loadModel('demo').then(() => { o.getMemoryMonitor(); console.log('ready') })
         setTimeout(() => process.exit(0), 20000)`,
      ],
      { env: { ...process.env, ORION_ENABLE_MEMORY_MONITOR: '1', ORION_MEMORY_MONITOR_INTERVAL_MS: '50' } },
    )
    try {
      await new Promise((resolve, reject) => {
        app.stdout.on('data', (d) => String(d).includes('ready') && resolve())
        app.once('exit', () => reject(new Error('the app exited early')))
      })
      let mine
      const deadline = Date.now() + 10000
      while (!mine && Date.now() < deadline) {
        await sleep(100)
        const out = spawnSync(process.execPath, [cli, 'status', '--json'], { encoding: 'utf8' }).stdout
        mine = JSON.parse(out).processes.find((s) => s.pid === app.pid && s.models.length)
      }
      expect(mine.models.map((m) => m.key)).toEqual(['demo'])
      expect(mine.pressure).toMatch(/low|medium|high|critical/)
      expect(Array.isArray(mine.alerts)).toBe(true)
      const text = spawnSync(process.execPath, [cli, 'status'], { encoding: 'utf8' }).stdout
      expect(text).toContain(`pid ${app.pid}`)
      expect(text).toMatch(/demo\s+[\d.]+ MB\s+Q4_1\s+idle/)
    } finally {
      app.kill()
    }
  })

  test('a process that only called monitor.start() publishes, and stop() withdraws it', async () => {
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'orion-status-'))
    const env = { ...process.env, XDG_CACHE_HOME: cache }
    delete env.ORION_ENABLE_MEMORY_MONITOR
    // No environment variable, no subscription: start() alone, then stop() on a message.
    const app = spawn(
      process.execPath,
      [
        '-e',
        `const m = require(${JSON.stringify(root)}).getMemoryMonitor()
         m.start(50)
         console.log('started')
         process.stdin.once('data', () => { m.stop(); console.log('stopped') })
         setTimeout(() => process.exit(0), 20000)`,
      ],
      { env },
    )
    const status = () =>
      JSON.parse(spawnSync(process.execPath, [cli, 'status', '--json'], { encoding: 'utf8', env }).stdout)
    const said = (word) =>
      new Promise((resolve, reject) => {
        app.stdout.on('data', (d) => String(d).includes(word) && resolve())
        app.once('exit', () => reject(new Error('the app exited early')))
      })
    try {
      await said('started')
      let doc
      const deadline = Date.now() + 10000
      while (!doc?.processes.length && Date.now() < deadline) {
        await sleep(100)
        doc = status()
      }
      expect(doc.processes.map((s) => s.pid)).toEqual([app.pid])
      expect(doc.processes[0].pressure).toMatch(/low|medium|high|critical/)
      const stopped = said('stopped')
      app.stdin.write('stop\n')
      await stopped
      expect(status().processes).toEqual([])
    } finally {
      app.kill()
    }
  })

  test('with no monitoring process it shows this machine, and no process', () => {
    const out = spawnSync(process.execPath, [cli, 'status', '--json'], {
      encoding: 'utf8',
      env: { ...process.env, XDG_CACHE_HOME: fs.mkdtempSync(path.join(os.tmpdir(), 'orion-status-')) },
    })
    const doc = JSON.parse(out.stdout)
    expect(doc.processes).toEqual([])
    expect(doc.machine.total).toBeGreaterThan(0)
    expect(doc.machine.pid).toBeUndefined()
  })
})

describe('bad options', () => {
  test.each([
    [{ thresholds: { medium: 0.8, high: 0.7, critical: 0.9 } }, /increase/],
    [{ thresholds: { medium: 0.5, high: 0.7, critical: 1.2 } }, /increase/],
    [{ thresholds: { medium: -0.1 } }, /increase/],
    [{ thresholds: { medium: '0.5' } }, /must be a number/],
    [{ thresholds: { low: 0.1 } }, /unknown option `low`/],
    [{ historySize: 0 }, /historySize/],
    [{ historySize: 2.5 }, /historySize/],
    [{ freeAt: 'low' }, /freeAt/],
    [{ freeAt: 'sometimes' }, /pressure level/],
    [{ autoFree: 'yes' }, /boolean/],
    [{ budget: 1 }, /unknown option `budget`/],
  ])('getMemoryMonitor(%j) throws INVALID_OPTION', (options, message) => {
    const err = expectThrowCode(() => getMemoryMonitor(options), 'INVALID_OPTION')
    expect(err.message).toMatch(message)
  })

  test('a history size bounds the history', async () => {
    const monitor = getMemoryMonitor({ historySize: 2 })
    await monitor.takeSnapshot()
    await monitor.takeSnapshot()
    await monitor.takeSnapshot()
    expect(monitor.getSnapshots()).toHaveLength(2)
  })
})
