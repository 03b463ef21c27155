/**
 * Node worker threads for peftkit's own kernels. tfjs-backend-wasm runs single-threaded in Node,
 * so without this one core does the work. A kernel's shared-memory build is instantiated once here
 * and once in each worker on the same `WebAssembly.Memory`; a call splits a range of independent
 * blocks (attention's (batch row, kv head) blocks, a product's rows) between them, the main thread
 * takes the first part and waits on an Atomics flag per worker (tfjs kernels are synchronous).
 *
 * Node-only: its users import it by a computed path, so browser bundles never reach `node:` modules.
 */
import { availableParallelism } from "node:os"
import { Worker } from "node:worker_threads"
import type { KernelRunner } from "./kernelRunner.js"

/** The worker: CommonJS run with `eval`, so it needs no file of its own next to dist/. */
const workerSource = `
const { parentPort, workerData } = require("node:worker_threads")
const { module, memory, control, index } = workerData
const flags = new Int32Array(control)
const instance = new WebAssembly.Instance(module, { env: { memory } })
parentPort.on("message", ({ entry, args }) => {
  try {
    instance.exports[entry](...args)
    Atomics.store(flags, index, 1)
  } catch (error) {
    console.error(error)
    Atomics.store(flags, index, 2)
  }
  Atomics.notify(flags, index)
})
parentPort.postMessage("ready")
`

const startWorker = (module: WebAssembly.Module, memory: WebAssembly.Memory, control: SharedArrayBuffer, index: number, label: string): Promise<Worker> =>
  new Promise((resolve, reject) => {
    const worker = new Worker(workerSource, { eval: true, workerData: { module, memory, control, index } })
    worker.once("message", (message) => {
      if (message !== "ready") return reject(new Error(`${label} worker failed to start: ${String(message)}`))
      // An idle worker must not keep the process alive.
      worker.unref()
      resolve(worker)
    })
    worker.once("error", reject)
  })

/**
 * A kernel's shared-memory build (`bytes`) on `requested` threads in all (the main one included;
 * default one per core); undefined for one thread.
 */
export const startKernelThreads = async <Entry extends string>(bytes: Uint8Array, requested: number | undefined, label: string): Promise<KernelRunner<Entry> | undefined> => {
  const threads = Math.max(1, Math.floor(requested ?? availableParallelism()))
  if (threads < 2) return undefined
  const module = await WebAssembly.compile(bytes as BufferSource)
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true })
  const instance = (await WebAssembly.instantiate(module, { env: { memory } })) as unknown as { exports: Record<string, (...args: Array<number>) => number> }
  const control = new SharedArrayBuffer(4 * Math.max(1, threads - 1))
  const flags = new Int32Array(control)
  const workers = await Promise.all(Array.from({ length: threads - 1 }, (_, i) => startWorker(module, memory, control, i, label)))
  return {
    memory,
    heapBase: instance.exports["heapBase"]!(),
    threads,
    run: (entry, argsFor, blocks, most) => {
      const used = Math.max(1, Math.min(threads, most, blocks))
      const bound = (i: number) => Math.floor((i * blocks) / used)
      for (let i = 1; i < used; i++) {
        Atomics.store(flags, i - 1, 0)
        workers[i - 1]!.postMessage({ entry, args: argsFor(i, bound(i), bound(i + 1)) })
      }
      instance.exports[entry]!(...argsFor(0, 0, bound(1)))
      for (let i = 1; i < used; i++) {
        while (Atomics.load(flags, i - 1) === 0) {
          if (Atomics.wait(flags, i - 1, 0, 60_000) === "timed-out") throw new Error(`${label} worker did not answer within 60 s`)
        }
        if (Atomics.load(flags, i - 1) !== 1) throw new Error(`${label} worker failed (see its error above)`)
      }
    }
  }
}
