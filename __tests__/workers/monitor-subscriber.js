'use strict'
// Subscribes to snapshots and then leaves, without unsubscribing.
const { parentPort, workerData } = require('node:worker_threads')
const { getMemoryMonitor } = require(workerData.root)

let seen = 0
getMemoryMonitor().onSnapshot(() => {
  seen += 1
  if (seen === 1) {
    parentPort.postMessage({ type: 'got-one' })
    setImmediate(() => process.exit(0))
  }
})
parentPort.postMessage({ type: 'subscribed' })
