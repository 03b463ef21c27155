/**
 * peftkit's GEMM kernel for the wasm backend's float32 products (`src/internal/gemmMatMul.ts`):
 * every transpose, row counts that are not a multiple of the 4-row tile, column counts that are not
 * a multiple of the 8-column panel, both ways of taking a transposed A, products large enough for
 * the worker threads, and stories260K's sizes, against the CPU backend; nothing kept, nothing leaked.
 */
import { selectBackend } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { availableParallelism } from "node:os"
import { describe, expect, it } from "vitest"
import { close, use } from "./helpers.js"
import { providers } from "../src/index.js"
import { keptTransposes } from "../src/internal/transposeFreeMatMul.js"

type Case = readonly [transA: boolean, transB: boolean, m: number, k: number, n: number]

const products = (cases: ReadonlyArray<Case>) =>
  cases.map(([ta, tb, m, k, n], i) =>
    tf.tidy(() => {
      const a = tf.randomNormal(ta ? [k, m] : [m, k], 0, 1, "float32", 10 + i)
      const b = tf.randomNormal(tb ? [n, k] : [k, n], 0, 1, "float32", 20 + i)
      return tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D, ta, tb).dataSync().slice()
    })
  )

describe("float32 products on peftkit's GEMM kernel", () => {
  it("equal the cpu backend's (to 2e-5 of the sums' scale, sqrt(k): float32 sums added in another order), keep nothing and leak nothing", async () => {
    const cases: ReadonlyArray<Case> = [
      [false, false, 1, 5, 1],
      [false, false, 3, 7, 9],
      [true, false, 6, 33, 17],
      [false, true, 13, 64, 8],
      // transposed A, taken as C^T = op(B)^T A (moves less than transposing A):
      [true, true, 5, 2048, 8],
      [true, false, 64, 2048, 8],
      // transposed A copied into row order:
      [true, false, 8, 2048, 64],
      // stories260K's sizes; then products large enough for the worker threads, odd sizes:
      [false, true, 2048, 64, 172],
      [false, false, 301, 257, 130],
      [true, true, 130, 257, 301]
    ]
    await use("cpu")
    const expected = products(cases)
    const service = await Effect.runPromise(selectBackend("wasm", providers))
    expect(service.info.details["gemm"]).toBe(true)
    expect(service.info.details["matMulThreads"]).toBe(Math.max(1, availableParallelism()))
    const before = tf.memory().numTensors
    const keptBefore = keptTransposes()
    const actual = products(cases)
    expect(tf.memory().numTensors).toBe(before)
    expect(keptTransposes()).toBe(keptBefore)
    actual.forEach((values, i) => {
      expect(values.length).toBe(expected[i]!.length)
      let worst = 0
      values.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - expected[i]![j]!))))
      expect(worst / Math.sqrt(cases[i]![3]), `case ${i}: ${cases[i]!.join(", ")}`).toBeLessThan(2e-5)
    })
  })

  it("gives tfjs's gradients of a product with a frozen weight, step after step, and after the weight is reassigned", async () => {
    const reference = (seed: number) => tf.tidy(() => {
      const w = tf.randomNormal([96, 80], 0, 1, "float32", seed) as tf.Tensor2D
      const x = tf.randomNormal([40, 80], 0, 1, "float32", 7) as tf.Tensor2D
      const dx = tf.grad((input: tf.Tensor) => tf.sum(tf.square(tf.matMul(input as tf.Tensor2D, w, false, true))))(x)
      return [tf.matMul(x, w, false, true).dataSync().slice(), dx.dataSync().slice()]
    })
    await use("cpu")
    const expected = [reference(11), reference(12)]
    await use("wasm")
    const initial = tf.randomNormal([96, 80], 0, 1, "float32", 11)
    const weight = tf.variable(initial, false) as tf.Variable<tf.Rank.R2>
    initial.dispose()
    const run = () => tf.tidy(() => {
      const x = tf.randomNormal([40, 80], 0, 1, "float32", 7) as tf.Tensor2D
      const dx = tf.grad((input: tf.Tensor) => tf.sum(tf.square(tf.matMul(input as tf.Tensor2D, weight, false, true))))(x)
      return [tf.matMul(x, weight, false, true).dataSync().slice(), dx.dataSync().slice()]
    })
    const check = (actual: ReadonlyArray<ArrayLike<number>>, wanted: ReadonlyArray<ArrayLike<number>>) =>
      actual.forEach((values, i) => close(values, wanted[i]!, 1e-4))
    const before = tf.memory().numTensors
    check(run(), expected[0]!)
    check(run(), expected[0]!)
    tf.tidy(() => weight.assign(tf.randomNormal([96, 80], 0, 1, "float32", 12)))
    check(run(), expected[1]!)
    expect(tf.memory().numTensors).toBe(before)
    weight.dispose()
  })
})
