/**
 * Row-parallel matmul for the wasm backend in Node. tfjs-backend-wasm 4.22 runs XNNPACK's matmul
 * without a thread pool (its batch_mat_mul_impl passes none), so one core does every product even
 * where the threaded build loads. Here large untransposed 2D products are split by rows: worker
 * threads, each with its own single-threaded wasm backend, compute their share while the main
 * thread computes the first rows, and the main thread waits on an Atomics flag (the kernel is
 * synchronous, as tfjs requires).
 *
 * The right operand b is sent to a worker once per tensor and kept there (it is nearly always a
 * kept weight: W^T, W or an embedding), so per call only the worker's rows of a and of the result
 * cross, through SharedArrayBuffers. A worker's copy is dropped when b's data is garbage-collected,
 * or when the copies exceed `budgetBytes` (oldest first). Everything else, and products too small
 * to win (under `minMultiplyAdds`), goes to tfjs's kernel unchanged.
 */
import * as tf from "@tensorflow/tfjs-core"
import { createRequire } from "node:module"
import { availableParallelism } from "node:os"
import { Worker } from "node:worker_threads"

interface WasmBackendInternals {
  readonly wasm: { readonly HEAPF32: Float32Array }
  readonly dataIdMap: { get(dataId: object): { readonly memoryOffset: number } }
  makeOutput(shape: ReadonlyArray<number>, dtype: tf.DataType): tf.TensorInfo
  disposeData(dataId: object): void
}

export interface ParallelMatMulOptions {
  /** Threads in all, the main one included (>= 2 to do anything); default: one per core. */
  readonly threads?: number | undefined
  /** Products with fewer multiply-adds run on one thread (a hand-off has a fixed cost). */
  readonly minMultiplyAdds?: number
  /**
   * Multiply-adds per float handed off (k n / (k + n): a worker's rows of a go out and its rows of
   * the result come back) below which a product stays on one thread. `pnpm bench:profile` on
   * stories260K: its 19 [2048, 64] x [64, 64] products a step (32) took 25-27 ms split and 13-19 ms
   * on one thread; [2048, 64] x [64, 172] and [2048, 172] x [172, 64] (47) ran faster split.
   */
  readonly minIntensity?: number
  /** Bytes of right operands the workers may keep in all. */
  readonly budgetBytes?: number
}

/** The worker: a CommonJS program run with `eval`, so it needs no file of its own next to dist/. */
const workerSource = `
const { parentPort, workerData } = require("node:worker_threads")
const tf = require(workerData.core)
require(workerData.wasm)
const control = new Int32Array(workerData.control)
let io = new Float32Array(workerData.io)
const weights = new Map()
parentPort.on("message", (m) => {
  if (m.kind === "weight") weights.set(m.id, tf.tensor2d(m.values, m.shape))
  else if (m.kind === "drop") { weights.get(m.id)?.dispose(); weights.delete(m.id) }
  else if (m.kind === "io") io = new Float32Array(m.io)
  else if (m.kind === "run") {
    try {
      const product = tf.tidy(() => tf.matMul(tf.tensor2d(io.subarray(0, m.rows * m.k), [m.rows, m.k]), weights.get(m.id)))
      io.set(product.dataSync(), m.rows * m.k)
      product.dispose()
      Atomics.store(control, 0, 1)
    } catch (error) {
      Atomics.store(control, 0, 2)
      console.error(error)
    }
    Atomics.notify(control, 0)
  }
})
tf.setBackend("wasm").then(() => tf.ready()).then(() => parentPort.postMessage("ready"), (error) => parentPort.postMessage(String(error)))
`

class Helper {
  /** Right operands this worker holds, by id. */
  readonly known = new Set<number>()

  constructor(readonly worker: Worker, readonly control: Int32Array, public io: Float32Array) {}

  ensureCapacity(elements: number): void {
    if (elements <= this.io.length) return
    this.io = new Float32Array(new SharedArrayBuffer(4 * Math.max(elements, 2 * this.io.length)))
    this.worker.postMessage({ kind: "io", io: this.io.buffer })
  }
}

const startHelper = (paths: { core: string; wasm: string }): Promise<Helper> =>
  new Promise((resolve, reject) => {
    const control = new Int32Array(new SharedArrayBuffer(4))
    const io = new SharedArrayBuffer(4 * 1024 * 1024)
    const worker = new Worker(workerSource, { eval: true, workerData: { ...paths, control: control.buffer, io } })
    worker.once("message", (message) => {
      if (message !== "ready") return reject(new Error(`matmul worker failed to start: ${String(message)}`))
      // An idle worker must not keep the process alive.
      worker.unref()
      resolve(new Helper(worker, control, new Float32Array(io)))
    })
    worker.once("error", reject)
  })

let installed: Promise<number> | undefined

/** Installs the row-parallel BatchMatMul for wasm (once per process); resolves to the threads used. */
export const installParallelMatMul = (options: ParallelMatMulOptions): Promise<number> => {
  installed ??= install(options)
  return installed
}

const install = async (requested: ParallelMatMulOptions): Promise<number> => {
  const options = { ...requested, threads: Math.max(1, Math.floor(requested.threads ?? availableParallelism())) }
  const original = tf.getKernel(tf.BatchMatMul, "wasm")
  if (original === undefined || options.threads < 2) return 1
  const require = createRequire(import.meta.url)
  const paths = { core: require.resolve("@tensorflow/tfjs-core"), wasm: require.resolve("@tensorflow/tfjs-backend-wasm") }
  const helpers = await Promise.all(Array.from({ length: options.threads - 1 }, () => startHelper(paths)))
  const minMultiplyAdds = options.minMultiplyAdds ?? 2 ** 23
  const minIntensity = options.minIntensity ?? 40
  const budget = options.budgetBytes ?? 2 ** 30

  // Right operands by data identity; insertion order is the eviction order.
  const ids = new WeakMap<object, number>()
  const resident = new Map<number, number>()
  let residentBytes = 0
  let nextId = 1
  const drop = (id: number) => {
    const bytes = resident.get(id)
    if (bytes === undefined) return
    resident.delete(id)
    residentBytes -= bytes
    for (const helper of helpers) if (helper.known.delete(id)) helper.worker.postMessage({ kind: "drop", id })
  }
  const collected = new FinalizationRegistry<number>(drop)
  const operandId = (b: tf.TensorInfo): number => {
    let id = ids.get(b.dataId)
    if (id === undefined) {
      id = nextId++
      ids.set(b.dataId, id)
      collected.register(b.dataId, id)
    }
    return id
  }

  tf.unregisterKernel(tf.BatchMatMul, "wasm")
  tf.registerKernel({
    kernelName: tf.BatchMatMul,
    backendName: "wasm",
    kernelFunc: (args) => {
      const a = args.inputs["a"] as tf.TensorInfo
      const b = args.inputs["b"] as tf.TensorInfo
      const attrs = args.attrs as unknown as tf.BatchMatMulAttrs
      if (attrs.transposeA || attrs.transposeB || a.shape.length !== 2 || b.shape.length !== 2 || a.dtype !== "float32" || b.dtype !== "float32") {
        return original.kernelFunc(args)
      }
      const [m, k] = a.shape as [number, number]
      const n = b.shape[1]!
      const threads = helpers.length + 1
      if (m * k * n < minMultiplyAdds || m < 8 * threads || (k * n) / (k + n) < minIntensity) return original.kernelFunc(args)
      const backend = args.backend as unknown as WasmBackendInternals
      const share = Math.floor(m / threads)
      const mainRows = m - share * helpers.length
      const id = operandId(b)
      if (!resident.has(id)) {
        resident.set(id, 4 * k * n)
        residentBytes += 4 * k * n
        for (const old of resident.keys()) {
          if (residentBytes <= budget || old === id) break
          drop(old)
        }
      }
      // Hand each helper its rows of a (and b, the first time), then compute the first rows here.
      const aStart = backend.dataIdMap.get(a.dataId).memoryOffset / 4
      helpers.forEach((helper, i) => {
        if (!helper.known.has(id)) {
          const offset = backend.dataIdMap.get(b.dataId).memoryOffset / 4
          helper.worker.postMessage({ kind: "weight", id, shape: [k, n], values: backend.wasm.HEAPF32.slice(offset, offset + k * n) })
          helper.known.add(id)
        }
        helper.ensureCapacity(share * (k + n))
        const from = aStart + (mainRows + i * share) * k
        helper.io.set(backend.wasm.HEAPF32.subarray(from, from + share * k))
        Atomics.store(helper.control, 0, 0)
        helper.worker.postMessage({ kind: "run", id, rows: share, k })
      })
      const aMain = tf.getKernel(tf.Slice, "wasm")!.kernelFunc({ inputs: { x: a }, backend: args.backend, attrs: { begin: [0, 0], size: [mainRows, k] } }) as tf.TensorInfo
      const outMain = original.kernelFunc({ inputs: { a: aMain, b }, backend: args.backend, attrs: args.attrs }) as tf.TensorInfo
      const out = backend.makeOutput([m, n], "float32")
      const outStart = backend.dataIdMap.get(out.dataId).memoryOffset / 4
      const mainStart = backend.dataIdMap.get(outMain.dataId).memoryOffset / 4
      backend.wasm.HEAPF32.copyWithin(outStart, mainStart, mainStart + mainRows * n)
      backend.disposeData(aMain.dataId)
      backend.disposeData(outMain.dataId)
      helpers.forEach((helper, i) => {
        while (Atomics.load(helper.control, 0) === 0) {
          if (Atomics.wait(helper.control, 0, 0, 60_000) === "timed-out") throw new Error("matmul worker did not answer within 60 s")
        }
        if (Atomics.load(helper.control, 0) !== 1) throw new Error("matmul worker failed (see its error above)")
        const at = outStart + (mainRows + i * share) * n
        backend.wasm.HEAPF32.set(helper.io.subarray(share * k, share * k + share * n), at)
      })
      return out
    }
  })
  return helpers.length + 1
}
