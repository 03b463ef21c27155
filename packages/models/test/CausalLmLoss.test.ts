// @peftkit/core registers tfjs-core's gradient functions.
import "@peftkit/core"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll, describe, expect, it } from "vitest"
import { causalLmLoss, targetLogProbs, tokenLogLikelihoods } from "../src/CausalLmLoss.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

// One sequence, V = 3: position 0 predicts token 2, position 1 predicts token 1; position 2's logits are unused.
const logits = () => tf.tensor3d([[[1, 2, 3], [0, 0, 0], [5, 1, 1]]])
const ids = () => tf.tensor2d([[0, 2, 1]], undefined, "int32")
const lse123 = Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3))
const logp0 = 3 - lse123 // log p(2 | position 0) = -0.40760596
const logp1 = -Math.log(3) // log p(1 | position 1) = -1.09861229

describe("causalLmLoss", () => {
  it("equals the hand-computed mean next-token cross-entropy over masked targets", () => {
    expect(causalLmLoss(logits(), ids(), tf.tensor2d([[0, 1, 1]])).dataSync()[0]).toBeCloseTo(-(logp0 + logp1) / 2, 6)
    expect(causalLmLoss(logits(), ids(), tf.tensor2d([[1, 1, 1]])).dataSync()[0]).toBeCloseTo(0.7531091, 6)
    // The first mask entry never counts (token 0 has no prediction); the target's mask decides.
    expect(causalLmLoss(logits(), ids(), tf.tensor2d([[1, 0, 1]])).dataSync()[0]).toBeCloseTo(-logp1, 6)
    expect(causalLmLoss(logits(), ids(), tf.tensor2d([[1, 1, 0]], undefined, "int32")).dataSync()[0]).toBeCloseTo(-logp0, 6)
  })

  it("averages over target tokens across the batch (not per sequence), and is 0 with no targets", () => {
    const batchLogits = tf.concat([logits(), tf.tensor3d([[[0, 0, 4], [1, 0, 0], [0, 0, 0]]])])
    const batchIds = tf.tensor2d([[0, 2, 1], [1, 0, 2]], undefined, "int32")
    const mask = tf.tensor2d([[0, 1, 1], [0, 0, 1]])
    // Second row: position 1 predicts token 2 from [1, 0, 0].
    const logp2 = 0 - Math.log(Math.E + 2)
    expect(causalLmLoss(batchLogits, batchIds, mask).dataSync()[0]).toBeCloseTo(-(logp0 + logp1 + logp2) / 3, 6)
    expect(causalLmLoss(batchLogits, batchIds, tf.zeros([2, 3])).dataSync()[0]).toBe(0)
    expect(Array.from(tokenLogLikelihoods(batchLogits, batchIds, mask).dataSync()).map((v) => Number(v.toFixed(6)))).toEqual([
      Number((logp0 + logp1).toFixed(6)),
      Number(logp2.toFixed(6))
    ])
  })

  it("is finite for huge logits (log-softmax is max-shifted)", () => {
    const big = tf.tensor3d([[[1000, -1000, 0], [3000, 2990, 0]]])
    const loss = causalLmLoss(big, tf.tensor2d([[0, 1]], undefined, "int32"), tf.ones([1, 2])).dataSync()[0]!
    expect(loss).toBeCloseTo(2000, 3)
    expect(targetLogProbs(tf.tensor3d([[[3000, 2990, 0], [0, 0, 0]]]), tf.tensor2d([[0, 1]], undefined, "int32")).dataSync()[0]).toBeCloseTo(-10, 3)
  })

  it("its gradient is the closed form (softmax - onehot) / count on counted positions, 0 elsewhere", () => {
    const mask = tf.tensor2d([[0, 1, 1]])
    const grad = tf.grad((l: tf.Tensor) => causalLmLoss(l as tf.Tensor3D, ids(), mask))(logits()).arraySync() as Array<Array<Array<number>>>
    const softmax = (row: Array<number>) => {
      const e = row.map(Math.exp)
      const s = e.reduce((a, b) => a + b)
      return e.map((v) => v / s)
    }
    const expected = [
      softmax([1, 2, 3]).map((p, i) => (p - (i === 2 ? 1 : 0)) / 2),
      softmax([0, 0, 0]).map((p, i) => (p - (i === 1 ? 1 : 0)) / 2),
      [0, 0, 0]
    ]
    grad[0]!.forEach((row, t) => row.forEach((g, v) => expect(g).toBeCloseTo(expected[t]![v]!, 6)))
  })
})
