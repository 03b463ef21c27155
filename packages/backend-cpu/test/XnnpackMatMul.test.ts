/**
 * The XNNPACK matmul path (`makeWasmProvider({ matMul: "xnnpack" })`, and the path without SIMD):
 * transposed products through kept transposes of frozen weights, and the row split across a second
 * tfjs instance in Node. Its own file: kernel registrations are per process.
 */
import { selectBackend } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { availableParallelism } from "node:os"
import { describe, expect, it } from "vitest"
import { close, use as useBackend } from "./helpers.js"
import { cpu, makeWasmProvider } from "../src/index.js"
import { keptTransposes } from "../src/internal/transposeFreeMatMul.js"

const providers = [makeWasmProvider({ matMul: "xnnpack" }), cpu]
const use = (backend: "cpu" | "wasm") => useBackend(backend, providers)

describe("kept transposes of frozen weights", () => {
  // dx sums 24 products of 40-term sums: XNNPACK and the JS kernel round in different orders.
  const tolerance = 1e-4
  it("x W^T and dx equal the cpu backend's; W^T is kept from the second use, follows W.assign, freed with W", async () => {
    await use("cpu")
    const reference = (seed: number) => tf.tidy(() => {
      const w = tf.randomNormal([24, 40], 0, 1, "float32", seed) as tf.Tensor2D
      const x = tf.randomNormal([9, 40], 0, 1, "float32", 7) as tf.Tensor2D
      const dx = tf.grad((input: tf.Tensor) => tf.sum(tf.square(tf.matMul(input as tf.Tensor2D, w, false, true))))(x)
      return [tf.matMul(x, w, false, true).dataSync().slice(), dx.dataSync().slice()]
    })
    const expected1 = reference(11)
    const expected2 = reference(12)
    await use("wasm")
    // The variable is W's only holder, as in a model: freeing its old value frees the data.
    const initial = tf.randomNormal([24, 40], 0, 1, "float32", 11)
    const weight = tf.variable(initial, false) as tf.Variable<tf.Rank.R2>
    initial.dispose()
    const run = () => tf.tidy(() => {
      const x = tf.randomNormal([9, 40], 0, 1, "float32", 7) as tf.Tensor2D
      const dx = tf.grad((input: tf.Tensor) => tf.sum(tf.square(tf.matMul(input as tf.Tensor2D, weight, false, true))))(x)
      return [tf.matMul(x, weight, false, true).dataSync().slice(), dx.dataSync().slice()]
    })
    const base = tf.memory().numTensors
    const keptBefore = keptTransposes()
    // Two uses of W^T in a run (the value and the gradient's forward): kept from the second one.
    run().forEach((values, i) => close(values, expected1[i]!, tolerance))
    expect(keptTransposes()).toBe(keptBefore + 1)
    run().forEach((values, i) => close(values, expected1[i]!, tolerance))
    expect(keptTransposes()).toBe(keptBefore + 1)
    // A new value of W frees the old transpose; the next uses keep the new one.
    tf.tidy(() => weight.assign(tf.randomNormal([24, 40], 0, 1, "float32", 12)))
    expect(keptTransposes()).toBe(keptBefore)
    run().forEach((values, i) => close(values, expected2[i]!, tolerance))
    run().forEach((values, i) => close(values, expected2[i]!, tolerance))
    expect(keptTransposes()).toBe(keptBefore + 1)
    // Kept transposes live outside the engine's tensors: nothing to leak there.
    expect(tf.memory().numTensors).toBe(base)
    weight.dispose()
    expect(keptTransposes()).toBe(keptBefore)
  })
})

describe("row-parallel matmul (Node worker threads)", () => {
  it("a large product equals the CPU backend's, for a kept and a new right operand, without leaks", async () => {
    // 300 x 200 x 160 = 9.6M multiply-adds: above the 2^23 threshold, so the rows are split.
    const compute = (bSeed: number) => tf.tidy(() => {
      const a = tf.randomNormal([300, 200], 0, 1, "float32", 21)
      const b = tf.randomNormal([200, 160], 0, 1, "float32", bSeed)
      return [tf.matMul(a, b), tf.matMul(tf.mul(a, 2), b)].map((t) => t.dataSync().slice())
    })
    await use("cpu")
    const expected = [compute(22), compute(23)]
    const service = await Effect.runPromise(selectBackend("wasm", providers))
    // The split needs at least 2 threads; on a 1-core machine this compares the plain kernel.
    expect(service.info.details["matMulThreads"]).toBe(Math.max(1, availableParallelism()))
    const before = tf.memory().numTensors
    const actual = [compute(22), compute(23)]
    expect(tf.memory().numTensors).toBe(before)
    // 200-term float32 sums: XNNPACK and the JS kernel round in different orders.
    actual.forEach((pair, i) => pair.forEach((values, j) => close(values, expected[i]![j]!, 1e-4)))
  })
})
