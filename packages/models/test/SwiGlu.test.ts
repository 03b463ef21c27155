import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll, describe, expect, it } from "vitest"
import { swiGlu } from "../src/SwiGlu.js"
import { maxAbsDiff } from "./helpers.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

/** silu(g) * u as tfjs differentiates it itself. */
const reference = (g: tf.Tensor, u: tf.Tensor) => tf.mul(tf.mul(g, tf.sigmoid(g)), u)

describe("swiGlu", () => {
  it("equals silu(gate) * up, with gradients equal to tfjs's own differentiation and to finite differences", () => {
    const gate = tf.randomNormal([6, 10], 0, 3, "float32", 1)
    const up = tf.randomNormal([6, 10], 0, 1, "float32", 2)
    const weights = tf.randomNormal([6, 10], 0, 1, "float32", 3)
    const objective = (f: typeof swiGlu) => (g: tf.Tensor, u: tf.Tensor) => tf.sum(tf.mul(f(g, u), weights))
    expect(maxAbsDiff(swiGlu(gate, up), reference(gate, up))).toBeLessThan(1e-6)
    const [dGate, dUp] = tf.grads(objective(swiGlu))([gate, up])
    const [refGate, refUp] = tf.grads(objective(reference))([gate, up])
    expect(maxAbsDiff(dGate!, refGate!)).toBeLessThan(1e-5)
    expect(maxAbsDiff(dUp!, refUp!)).toBeLessThan(1e-6)
    // Central differences in float64 on a few entries of gate.
    const g = gate.arraySync() as Array<Array<number>>
    const u = up.arraySync() as Array<Array<number>>
    const w = weights.arraySync() as Array<Array<number>>
    const grad = dGate!.arraySync() as Array<Array<number>>
    const silu = (x: number) => x / (1 + Math.exp(-x))
    for (const [i, j] of [[0, 0], [2, 5], [5, 9]] as const) {
      const h = 1e-4
      const numeric = ((silu(g[i]![j]! + h) - silu(g[i]![j]! - h)) / (2 * h)) * u[i]![j]! * w[i]![j]!
      expect(Math.abs(numeric - grad[i]![j]!)).toBeLessThan(1e-4)
    }
  })

  it("keeps only gate and up for the backward and leaves no tensor behind", () => {
    const gate = tf.variable(tf.randomNormal([4, 8], 0, 1, "float32", 4), true, "swiglu.gate")
    const up = tf.variable(tf.randomNormal([4, 8], 0, 1, "float32", 5), true, "swiglu.up")
    const before = tf.memory().numTensors
    const { value, grads } = tf.variableGrads(() => tf.sum(swiGlu(gate, up)) as tf.Scalar, [gate, up])
    tf.dispose([value, ...Object.values(grads)])
    expect(tf.memory().numTensors).toBe(before)
    tf.dispose([gate, up])
  })

  it("refuses gate and up of different shapes", () => {
    expect(() => swiGlu(tf.zeros([2, 3]), tf.zeros([3, 2]))).toThrow(/one shape/)
  })
})
