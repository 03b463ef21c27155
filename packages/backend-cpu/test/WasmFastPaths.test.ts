/**
 * peftkit's wasm fast paths give tfjs's own numbers: `matMul2d` (untransposed products, forward
 * and gradient), `TransposedWeight` (a kept W^T that follows every assignment) and the
 * contiguous-slice kernel. Each is compared with the plain tfjs computation on the CPU backend.
 */
import { Backend, matMul2d, prefersPlainMatMul, selectBackend, TransposedWeight } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { availableParallelism } from "node:os"
import { describe, expect, it } from "vitest"
import { providers } from "../src/index.js"

const use = (backend: "cpu" | "wasm") => Effect.runPromise(Effect.provide(Effect.void, Backend.layer(backend, providers)))

const close = (actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number) => {
  expect(actual.length).toBe(expected.length)
  let worst = 0
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / Math.max(1, Math.abs(expected[i]!)))
  expect(worst).toBeLessThan(tolerance)
}

/** Values and both gradients of sum(op(a) op(b) * w) for fixed seeded inputs. */
const product = (multiply: (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D, aShape: [number, number], bShape: [number, number]) =>
  tf.tidy(() => {
    const a = tf.randomNormal(aShape, 0, 1, "float32", 1) as tf.Tensor2D
    const b = tf.randomNormal(bShape, 0, 1, "float32", 2) as tf.Tensor2D
    const value = multiply(a, b)
    const weights = tf.randomNormal(value.shape, 0, 1, "float32", 3)
    const [da, db] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(multiply(x as tf.Tensor2D, y as tf.Tensor2D), weights)))([a, b])
    return [value, da!, db!].map((t) => t.dataSync().slice())
  })

describe("matMul2d", () => {
  const cases: Array<[boolean, boolean, [number, number], [number, number]]> = [
    [false, false, [37, 19], [19, 23]],
    [false, true, [37, 19], [23, 19]],
    [true, false, [19, 37], [19, 23]],
    [true, true, [19, 37], [23, 19]],
    // A wide result: the flipped form (transpose the product) is the cheaper one here.
    [false, true, [3, 64], [200, 64]]
  ]
  for (const [ta, tb, aShape, bShape] of cases) {
    it(`transposeA=${ta}, transposeB=${tb}, ${aShape} x ${bShape}: value and gradients equal tf.matMul on cpu to 1e-5`, async () => {
      await use("cpu")
      const expected = product((a, b) => tf.matMul(a, b, ta, tb), aShape, bShape)
      await use("wasm")
      expect(prefersPlainMatMul()).toBe(true)
      const before = tf.memory().numTensors
      const actual = product((a, b) => matMul2d(a, b, ta, tb), aShape, bShape)
      expect(tf.memory().numTensors).toBe(before)
      actual.forEach((values, i) => close(values, expected[i]!, 1e-5))
    })
  }
})

describe("TransposedWeight", () => {
  // dx sums 24 products of 40-term sums: XNNPACK and the JS kernel round in different orders.
  const tolerance = 1e-4
  it("x W^T and dx equal tf.matMul's to 1e-4; follows W.assign; one kept tensor, freed by release", async () => {
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
    const weight = tf.variable(tf.randomNormal([24, 40], 0, 1, "float32", 11), false) as tf.Variable<tf.Rank.R2>
    const product = new TransposedWeight(weight)
    const run = () => tf.tidy(() => {
      const x = tf.randomNormal([9, 40], 0, 1, "float32", 7) as tf.Tensor2D
      const dx = tf.grad((input: tf.Tensor) => tf.sum(tf.square(product.apply(input as tf.Tensor2D))))(x)
      return [product.apply(x).dataSync().slice(), dx.dataSync().slice()]
    })
    const base = tf.memory().numTensors
    run().forEach((values, i) => close(values, expected1[i]!, tolerance))
    expect(tf.memory().numTensors).toBe(base + 1)
    run()
    expect(tf.memory().numTensors).toBe(base + 1)
    tf.tidy(() => weight.assign(tf.randomNormal([24, 40], 0, 1, "float32", 12)))
    run().forEach((values, i) => close(values, expected2[i]!, tolerance))
    expect(tf.memory().numTensors).toBe(base + 1)
    product.release()
    expect(tf.memory().numTensors).toBe(base)
    weight.dispose()
  })
})

describe("the contiguous Slice kernel", () => {
  it("gives tfjs's values for contiguous, strided, whole-tensor and int32/bool slices, without leaks", async () => {
    await use("cpu")
    const slices = () => tf.tidy(() => {
      const x = tf.reshape(tf.range(0, 2 * 3 * 4 * 5, 1, "float32"), [2, 3, 4, 5])
      const ints = tf.cast(x, "int32")
      const bools = tf.greater(tf.reshape(tf.range(0, 24, 1, "int32"), [4, 6]), 10)
      return [
        tf.slice(x, [1, 0, 0, 0], [1, 3, 4, 5]),
        tf.slice(x, [0, 1, 0, 0], [1, 2, 4, 5]),
        tf.slice(x, [0, 0, 1, 2], [2, 3, 2, 3]),
        tf.slice(x, [0, 0, 0, 0], [2, 3, 4, 5]),
        tf.slice(ints, [1, 2, 0, 0], [1, 1, 4, 5]),
        tf.slice(bools, [1, 0], [2, 6]),
        tf.slice(x, [1, 0, 0, 0], [0, 3, 4, 5])
      ].map((t) => ({ shape: t.shape, dtype: t.dtype, values: Array.from(t.dataSync()) }))
    })
    const expected = slices()
    await use("wasm")
    const before = tf.memory().numTensors
    expect(slices()).toEqual(expected)
    expect(tf.memory().numTensors).toBe(before)
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
