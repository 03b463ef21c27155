/**
 * Peak resident memory of this process while `f` runs, above what it held just before: the same
 * definition as the PyTorch reference's (`RssPeak` in python/lora_reference.py), so the two can be
 * divided. A worker thread samples the process's RSS every millisecond (the training step blocks
 * the main thread). Everything the backend touches counts: tensors, the wasm heap's slack and
 * XNNPACK's packed weights, peftkit's kernel memory and worker threads' copies of weights. A wasm
 * heap never shrinks, so each measurement needs a fresh process (see `ResidentChild.ts`).
 */
import { Worker } from "node:worker_threads"

/** The sampler: CommonJS run with `eval`; cells = [peak RSS, stop flag]. */
const samplerSource = `
const { workerData } = require("node:worker_threads")
const peak = new Float64Array(workerData.peak)
const stop = new Int32Array(workerData.stop)
while (Atomics.load(stop, 0) === 0) {
  const rss = process.memoryUsage.rss()
  if (rss > peak[0]) peak[0] = rss
  Atomics.wait(stop, 0, 0, 1)
}
`

export const residentPeakOf = async (f: () => Promise<void>): Promise<{ baseBytes: number; peakBytes: number }> => {
  ;(globalThis as { gc?: () => void }).gc?.()
  const baseBytes = process.memoryUsage.rss()
  const peak = new Float64Array(new SharedArrayBuffer(8))
  const stop = new Int32Array(new SharedArrayBuffer(4))
  peak[0] = baseBytes
  const sampler = new Worker(samplerSource, { eval: true, workerData: { peak: peak.buffer, stop: stop.buffer } })
  await new Promise((started) => sampler.once("online", started))
  try {
    await f()
  } finally {
    Atomics.store(stop, 0, 1)
    Atomics.notify(stop, 0)
    await new Promise((ended) => sampler.once("exit", ended))
  }
  return { baseBytes, peakBytes: Math.max(peak[0]!, process.memoryUsage.rss()) - baseBytes }
}
