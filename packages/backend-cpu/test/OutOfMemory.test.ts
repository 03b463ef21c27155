/**
 * Running out of wasm memory is a typed failure, not a cryptic trap: with the heap near the 4 GiB a
 * WebAssembly module addresses, a kernel's exception becomes core's `BackendOutOfMemory` (through
 * `attempt`, as in the training loop) saying what was held and what to do. The real case fills the
 * heap and then asks XNNPACK for a large product; this file runs in its own process, since after
 * an abort the wasm backend cannot continue.
 */
import { attempt, Backend } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Exit } from "effect"
import { describe, expect, it } from "vitest"
import { providers } from "../src/index.js"
import { WASM_ADDRESSABLE_BYTES, wasmOutOfMemory } from "../src/internal/wasmOutOfMemory.js"

describe("wasmOutOfMemory", () => {
  const abort = new WebAssembly.RuntimeError("Aborted(). Build with -sASSERTIONS for more info.")
  it("explains an abort, a trap or a TypeError when the heap is near the 4 GiB ceiling", () => {
    const nearCeiling = 0.9 * WASM_ADDRESSABLE_BYTES
    expect(wasmOutOfMemory(abort, nearCeiling)).toMatch(/wasm heap is at 3\.60 GiB of the 4 GiB.*smaller batch.*cannot continue in this process/)
    expect(wasmOutOfMemory(new WebAssembly.RuntimeError("memory access out of bounds"), nearCeiling)).toMatch(/could not allocate \(memory access out of bounds\)/)
    expect(wasmOutOfMemory(new TypeError("Cannot read properties of undefined (reading 'map')"), nearCeiling)).toMatch(/4 GiB/)
  })
  it("explains a failed tensor allocation at any heap size", () => {
    expect(wasmOutOfMemory(new RangeError("wasm heap exhausted: cannot allocate 512.0 MiB with the heap at 3.90 GiB"), 2 ** 30)).toMatch(/could not allocate \(wasm heap exhausted/)
  })
  it("says nothing for a small heap or an error of peftkit's own", () => {
    expect(wasmOutOfMemory(abort, 2 ** 30)).toBeUndefined()
    expect(wasmOutOfMemory(new Error("a shape bug"), 0.9 * WASM_ADDRESSABLE_BYTES)).toBeUndefined()
    expect(wasmOutOfMemory("not an error", 0.9 * WASM_ADDRESSABLE_BYTES)).toBeUndefined()
  })
})

describe("a real out-of-memory on wasm", () => {
  it("fails as BackendOutOfMemory through attempt, naming the heap and the way out", async () => {
    await Effect.runPromise(Effect.provide(Effect.void, Backend.layer("wasm", providers)))
    const heap = () => (tf.engine().backend as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.length
    const held: Array<tf.Tensor> = []
    // 512 MiB tensors until one cannot be allocated (tfjs alone would place it at address 0).
    const exit = await Effect.runPromiseExit(attempt(() => {
      for (let i = 0; i < 16; i++) held.push(tf.fill([128 * 2 ** 20], 1))
    }))
    expect(heap()).toBeGreaterThan(0.75 * WASM_ADDRESSABLE_BYTES)
    // Nothing was written over the heap's start: the tensors held are intact.
    expect(Array.from(held[0]!.dataSync().subarray(0, 4))).toEqual([1, 1, 1, 1])
    expect(Exit.isFailure(exit)).toBe(true)
    if (Exit.isFailure(exit) && exit.cause._tag === "Fail") {
      expect(exit.cause.error._tag).toBe("BackendOutOfMemory")
      expect(exit.cause.error.message).toMatch(/^the wasm backend ran out of memory: the wasm heap is at \d\.\d\d GiB of the 4 GiB/)
    } else {
      throw new Error(`expected a typed failure, got ${String(exit)}`)
    }
  }, 120_000)
})
