'use strict'
// Takes snapshots from a worker thread: the history is the process's, not the worker's.
const { parentPort, workerData } = require('node:worker_threads')
const { getMemoryMonitor } = require(workerData.root)

const monitor = getMemoryMonitor()
Promise.all([monitor.takeSnapshot(), monitor.takeSnapshot()]).then((snaps) =>
  parentPort.postMessage({ pressures: snaps.map((s) => s.pressure), heap: snaps[0].jsHeap }),
)
