/**
 * The fused RMSNorm kernel (`kernels/rmsNorm.ts`, the wasm backend's `rmsNorm` op) against the plain
 * form on the CPU backend: the output and the gradients of x and the weight, for head-sized,
 * odd-sized (not a multiple of 4) and wide rows, checking by kernel name that the fused kernels ran
 * and that nothing leaks.
 */
import { backendOps } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { describe, expect, it } from "vitest"
import { use } from "./helpers.js"
import { FusedRmsNorm, FusedRmsNormGrad } from "../src/internal/fusedRmsNorm.js"

const plainRmsNorm = (x: tf.Tensor, weight: tf.Tensor, eps: number): tf.Tensor =>
  tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), weight)

const maxRelative = (actual: ArrayLike<number>, expected: ArrayLike<number>) => {
  expect(actual.length).toBe(expected.length)
  let worst = 0
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / Math.max(1, Math.abs(expected[i]!)))
  return worst
}

const run = (shape: ReadonlyArray<number>, norm: typeof plainRmsNorm) =>
  tf.tidy(() => {
    const d = shape[shape.length - 1]!
    const x = tf.randomNormal([...shape], 0, 2, "float32", 1)
    const weight = tf.randomNormal([d], 1, 0.5, "float32", 2)
    const upstream = tf.randomNormal([...shape], 0, 1, "float32", 3)
    const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(norm(a, b, 1e-5), upstream)))([x, weight])
    return [norm(x, weight, 1e-5), dx!, dw!].map((t) => t.dataSync().slice())
  })

describe("fused RMSNorm on wasm", () => {
  for (const shape of [[3, 5, 64], [7, 13], [2, 768], [1, 1, 4]]) {
    it(`[${shape.join(", ")}]: output, dx and dweight equal the plain form on the cpu backend to 1e-5`, async () => {
      await use("cpu")
      const expected = run(shape, plainRmsNorm)
      await use("wasm")
      const fused = (x: tf.Tensor, w: tf.Tensor, eps: number) => backendOps().rmsNorm!(x, w, eps)!
      const profile = await tf.profile(() => {
        run(shape, fused)
      })
      const names = new Set(profile.kernels.map((k) => k.name))
      expect(names.has(FusedRmsNorm) && names.has(FusedRmsNormGrad)).toBe(true)
      const before = tf.memory().numTensors
      const actual = run(shape, fused)
      expect(tf.memory().numTensors).toBe(before)
      actual.forEach((values, i) => expect(maxRelative(values, expected[i]!)).toBeLessThan(1e-5))
    })
  }
})
