/**
 * The wasm paths of attention (backend-cpu's `attention` op: its fused kernel, hand-written gradient) and
 * RoPE (its pair swap through backend-cpu's copying Reverse kernel) against the plain forms on the
 * CPU backend: values and gradients of q, k and v, with GQA, causal and padding biases, and without
 * a bias. The model code is the same on both backends; only what the backend installs differs.
 */
import { Backend } from "@peftkit/core"
import { providers } from "@peftkit/backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { attend } from "../src/Attention.js"
import { Rope } from "../src/Rope.js"

const use = (backend: "cpu" | "wasm") => Effect.runPromise(Effect.provide(Effect.void, Backend.layer(backend, providers)))

const maxRelative = (actual: ArrayLike<number>, expected: ArrayLike<number>) => {
  let worst = 0
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / Math.max(1, Math.abs(expected[i]!)))
  return worst
}

type BiasKind = "none" | "causal" | "causal+padding"

const attention = (heads: number, kvHeads: number, biasKind: BiasKind) =>
  tf.tidy(() => {
    const [b, t, d] = [3, 7, 4]
    const q = tf.randomNormal([b, heads, t, d], 0, 1, "float32", 1)
    const k = tf.randomNormal([b, kvHeads, t, d], 0, 1, "float32", 2)
    const v = tf.randomNormal([b, kvHeads, t, d], 0, 1, "float32", 3)
    const causal = tf.reshape(tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([t, t]), -1, 0)), -1e9), [1, 1, t, t])
    const padding = tf.reshape(tf.mul(tf.sub(1, tf.tensor2d([[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1]])), -1e9), [b, 1, 1, t])
    const bias = biasKind === "none" ? undefined : (biasKind === "causal" ? causal : tf.add(causal, padding)) as tf.Tensor4D
    const weights = tf.randomNormal([b, heads, t, d], 0, 1, "float32", 4)
    const loss = (x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) => tf.sum(tf.mul(attend(x as tf.Tensor4D, y as tf.Tensor4D, z as tf.Tensor4D, bias), weights))
    const grads = tf.grads(loss)([q, k, v])
    return [attend(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D, bias), ...grads].map((t) => t.dataSync().slice())
  })

describe("attention on wasm (backend-cpu's attention op)", () => {
  const cases: Array<[number, number, BiasKind]> = [[4, 4, "causal"], [4, 2, "causal+padding"], [6, 2, "none"], [2, 1, "causal"]]
  for (const [heads, kvHeads, biasKind] of cases) {
    it(`${heads} heads / ${kvHeads} kv heads, ${biasKind}: output and dq, dk, dv equal the batched CPU form to 1e-5`, async () => {
      await use("cpu")
      const expected = attention(heads, kvHeads, biasKind)
      await use("wasm")
      const before = tf.memory().numTensors
      const actual = attention(heads, kvHeads, biasKind)
      expect(tf.memory().numTensors).toBe(before)
      actual.forEach((values, i) => expect(maxRelative(values, expected[i]!)).toBeLessThan(1e-5))
    })
  }
})

describe("RoPE on wasm (swap through the copying Reverse kernel)", () => {
  for (const layout of ["half", "interleaved"] as const) {
    it(`${layout}: rotated values and the input gradient equal the CPU backend's`, async () => {
      const rotate = () => tf.tidy(() => {
        const rope = new Rope(8, 10000, layout, undefined, 16)
        const x = tf.randomNormal([2, 3, 5, 8], 0, 1, "float32", 9) as tf.Tensor4D
        const weights = tf.randomNormal([2, 3, 5, 8], 0, 1, "float32", 10)
        const angles = rope.range(2, 5)
        const dx = tf.grad((input: tf.Tensor) => tf.sum(tf.mul(rope.apply(input as tf.Tensor4D, angles), weights)))(x)
        const out = [rope.apply(x, angles).dataSync().slice(), dx.dataSync().slice()]
        rope.dispose()
        return out
      })
      await use("cpu")
      const expected = rotate()
      await use("wasm")
      const before = tf.memory().numTensors
      const actual = rotate()
      expect(tf.memory().numTensors).toBe(before)
      actual.forEach((values, i) => expect(maxRelative(values, expected[i]!)).toBeLessThan(1e-6))
    })
  }
})
