import { Backend } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { availableParallelism } from "node:os"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { cpu, makeWasmProvider, providers, wasm } from "../src/index.js"

// [2,3] x [3,2], checked by hand.
const matmulValues = (): Array<number> =>
  tf.tidy(() => {
    const a = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3])
    const b = tf.tensor2d([7, 8, 9, 10, 11, 12], [3, 2])
    return Array.from(tf.matMul(a, b).dataSync())
  })
const expected = [58, 64, 139, 154]

const nodeThreads = availableParallelism()
const wasmDevice = nodeThreads > 1 ? `CPU via WebAssembly (SIMD, ${nodeThreads} threads for matmuls and attention)` : "CPU via WebAssembly (SIMD, 1 thread)"

describe("wasm", () => {
  it("loads, reports SIMD and threads, and computes a matmul", async () => {
    const info = await Effect.runPromise(wasm.load)
    expect(tf.getBackend()).toBe("wasm")
    expect(info).toMatchObject({ name: "wasm", tfjsName: "wasm", gpu: false })
    expect(info.details).toMatchObject({ simd: true, version: "4.22.0" })
    expect(typeof info.details["threads"]).toBe("number")
    // tfjs runs wasm single-threaded in Node; peftkit splits large matmuls over worker threads.
    expect(info.details["multithreadSupported"]).toBe(false)
    expect(info.details["threads"]).toBe(nodeThreads)
    expect(info.details["matMulThreads"]).toBe(nodeThreads)
    expect(info.device).toBe(wasmDevice)
    expect(matmulValues()).toEqual(expected)
  })

  it("a larger matmul matches a plain JS reference", async () => {
    await Effect.runPromise(wasm.load)
    const n = 64
    const a = Array.from({ length: n * n }, (_, i) => ((i * 37) % 17) / 17 - 0.5)
    const b = Array.from({ length: n * n }, (_, i) => ((i * 11) % 13) / 13 - 0.5)
    const got = tf.tidy(() => tf.matMul(tf.tensor2d(a, [n, n]), tf.tensor2d(b, [n, n])).dataSync())
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0
        for (let k = 0; k < n; k++) s += a[i * n + k]! * b[k * n + j]!
        expect(got[i * n + j]).toBeCloseTo(s, 4)
      }
    }
  })

  it("accepts options (the matmul threads are fixed by the first load in a process)", async () => {
    const info = await Effect.runPromise(makeWasmProvider({ threads: 4 }).load)
    expect(info.details["threads"]).toBe(nodeThreads)
  })
})

describe("cpu", () => {
  it("loads and computes a matmul", async () => {
    const info = await Effect.runPromise(cpu.load)
    expect(tf.getBackend()).toBe("cpu")
    expect(info).toMatchObject({ name: "cpu", tfjsName: "cpu", gpu: false, details: { threads: 1, version: "4.22.0" } })
    expect(matmulValues()).toEqual(expected)
  })
})

describe("through Backend.layer", () => {
  it("Backend.layer('wasm', providers) provides the service and activates wasm", async () => {
    const program = Effect.gen(function* () {
      const backend = yield* Backend
      const before = backend.memory().numTensors
      const values = matmulValues()
      return { info: backend.info, selection: backend.selection, values, leaked: backend.memory().numTensors - before }
    })
    const out = await Effect.runPromise(Effect.provide(program, Backend.layer("wasm", providers)))
    expect(out.info.name).toBe("wasm")
    expect(out.selection.reason).toBe(`requested wasm; loaded wasm (${wasmDevice})`)
    expect(out.values).toEqual(expected)
    expect(out.leaked).toBe(0)
    expect(tf.getBackend()).toBe("wasm")
  })

  it("switches between the two in one process", async () => {
    await Effect.runPromise(Effect.provide(Backend, Backend.layer("cpu", providers)))
    expect(tf.getBackend()).toBe("cpu")
    await Effect.runPromise(Effect.provide(Backend, Backend.layer("wasm", providers)))
    expect(tf.getBackend()).toBe("wasm")
    expect(matmulValues()).toEqual(expected)
  })
})
