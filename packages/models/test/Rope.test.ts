import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll, describe, expect, it } from "vitest"
import { Llama } from "../src/Llama.js"
import { Rope, ropeInverseFrequencies } from "../src/Rope.js"
import { disposeMap, maxAbsDiff, permuteForHalfRope, randomize, tinyLlama } from "./helpers.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

/** HF's apply_rotary_pos_emb / llama2.c's loop for one head vector, in float64. */
const rotate = (x: Array<number>, pos: number, layout: "half" | "interleaved", theta = 10000): Array<number> => {
  const d = x.length
  const out = [...x]
  for (let j = 0; j < d / 2; j++) {
    const angle = pos * theta ** (-(2 * j) / d)
    const [a, b] = layout === "half" ? [j, j + d / 2] : [2 * j, 2 * j + 1]
    out[a] = x[a]! * Math.cos(angle) - x[b]! * Math.sin(angle)
    out[b] = x[b]! * Math.cos(angle) + x[a]! * Math.sin(angle)
  }
  return out
}

describe("Rope", () => {

  for (const layout of ["half", "interleaved"] as const) {
    it(`${layout}: its hand-written gradient equals tfjs's differentiation of the same formula, with shared and per-row angles`, () => {
      const rope = new Rope(8, 10000, layout, undefined, 16)
      const x = tf.randomNormal([2, 3, 5, 8], 0, 1, "float32", 7) as tf.Tensor4D
      const weights = tf.randomNormal([2, 3, 5, 8], 0, 1, "float32", 8)
      const positions = tf.tensor2d([[0, 1, 2, 3, 4], [0, 0, 5, 6, 9]], undefined, "int32")
      for (const angles of [rope.range(3, 5), rope.gather(positions, 9)]) {
        // x cos + swap(x) sin, written with tfjs ops and differentiated by tfjs.
        const plain = (input: tf.Tensor4D) => {
          const pairs = layout === "half" ? tf.reshape(input, [30, 2, 4]) : tf.reshape(input, [30, 4, 2])
          const swapped = tf.reshape(tf.reverse(pairs, layout === "half" ? 1 : 2), [2, 3, 5, 8])
          return tf.add(tf.mul(input, angles.cos), tf.mul(swapped, angles.sin))
        }
        const custom = tf.grad((input: tf.Tensor) => tf.sum(tf.mul(rope.apply(input as tf.Tensor4D, angles), weights)))(x)
        const reference = tf.grad((input: tf.Tensor) => tf.sum(tf.mul(plain(input as tf.Tensor4D), weights)))(x)
        expect(maxAbsDiff(custom, reference)).toBeLessThan(1e-6)
        expect(maxAbsDiff(rope.apply(x, angles), plain(x))).toBe(0)
      }
    })
  }
  for (const layout of ["half", "interleaved"] as const) {
    it(`${layout}: rotates like the reference formula, from the sliced table and from gathered (per-row) positions`, () => {
      const rope = new Rope(8, 10000, layout, undefined, 4)
      const x = tf.randomNormal([2, 3, 5, 8], 0, 1, "float32", 1) as tf.Tensor4D
      const values = x.arraySync()
      // Positions 7..11 for every row: beyond the initial capacity of 4, so the tables grow.
      const sliced = rope.apply(x, rope.range(7, 5)).arraySync()
      const positions = tf.tensor2d([[0, 1, 2, 3, 4], [0, 0, 5, 6, 30]], undefined, "int32")
      const gathered = rope.apply(x, rope.gather(positions, 30)).arraySync()
      const pos = positions.arraySync()
      let worst = 0
      for (let b = 0; b < 2; b++) {
        for (let h = 0; h < 3; h++) {
          for (let t = 0; t < 5; t++) {
            const v = values[b]![h]![t]!
            rotate(v, 7 + t, layout).forEach((e, i) => (worst = Math.max(worst, Math.abs(e - sliced[b]![h]![t]![i]!))))
            rotate(v, pos[b]![t]!, layout).forEach((e, i) => (worst = Math.max(worst, Math.abs(e - gathered[b]![h]![t]![i]!))))
          }
        }
      }
      expect(worst).toBeLessThan(1e-5)
      expect(rope.capacity).toBe(32)
      rope.dispose()
    })
  }

  it("llama3 scaling keeps high frequencies, divides low ones by the factor, blends in between", () => {
    const scaling = { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 } as const
    const plain = ropeInverseFrequencies(16, 10000)
    const scaled = ropeInverseFrequencies(16, 10000, scaling)
    plain.forEach((f, j) => {
      const wavelen = (2 * Math.PI) / f
      if (wavelen < 16) expect(scaled[j]).toBe(f)
      else if (wavelen > 64) expect(scaled[j]).toBeCloseTo(f / 8, 12)
      else expect(scaled[j]! > f / 8 && scaled[j]! < f).toBe(true)
    })
    expect(ropeInverseFrequencies(16, 10000, { type: "linear", factor: 4 })[3]).toBeCloseTo(plain[3]! / 4, 12)
  })
})

describe("the two layouts agree on converted weights", () => {
  it("an interleaved model and the half-layout model with HF-permuted q/k rows give the same logits (1e-5), padded too", () => {
    const config = tinyLlama({ ropeLayout: "interleaved", attentionBias: true, modelType: "qwen2", headDim: 8, hiddenSize: 32 })
    const init = Llama.init(config, 1)
    const weights = randomize(init.stateDict(), 3)
    init.dispose()
    const converted = new Map<string, tf.Tensor>()
    for (const [name, tensor] of weights) {
      const heads = /q_proj/.test(name) ? config.numAttentionHeads : /k_proj/.test(name) ? config.numKeyValueHeads : 0
      if (heads === 0) converted.set(name, tf.clone(tensor))
      else if (tensor.rank === 2) converted.set(name, permuteForHalfRope(tensor as tf.Tensor2D, heads))
      else converted.set(name, tf.reshape(permuteForHalfRope(tf.reshape(tensor, [-1, 1]) as tf.Tensor2D, heads), [-1]))
    }
    const interleaved = Llama.fromWeights(config, weights)
    const half = Llama.fromWeights({ ...config, ropeLayout: "half" }, converted)
    const ids = tf.tensor2d([[3, 17, 5, 9, 22, 30, 1, 7], [0, 0, 8, 39, 12, 4, 6, 2]], undefined, "int32")
    const mask = tf.tensor2d([[1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1, 1]])
    expect(maxAbsDiff(interleaved.forward(ids), half.forward(ids))).toBeLessThan(1e-5)
    expect(maxAbsDiff(interleaved.forward(ids, { attentionMask: mask }), half.forward(ids, { attentionMask: mask }))).toBeLessThan(1e-5)
    // And the permutation really matters: the unpermuted weights in the half layout differ.
    const wrong = Llama.fromWeights({ ...config, ropeLayout: "half" }, weights)
    expect(maxAbsDiff(interleaved.forward(ids), wrong.forward(ids))).toBeGreaterThan(1e-3)
    ;[interleaved, half, wrong].forEach((m) => m.dispose())
    disposeMap(weights)
    disposeMap(converted)
  })
})
