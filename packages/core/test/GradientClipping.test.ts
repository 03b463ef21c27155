import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll, describe, expect, it } from "vitest"
import { clipByGlobalNorm, globalNorm } from "../src/GradientClipping.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const grads = () => ({
  a: tf.tensor([3, -4]),
  b: tf.tensor([[12, 0], [0, 0]]),
  c: tf.tensor([0.5, -0.5, 1])
})
// sqrt(9 + 16 + 144 + 0.25 + 0.25 + 1)
const expectedNorm = Math.sqrt(170.5)

const disposeAll = (record: Record<string, tf.Tensor>) => {
  for (const t of Object.values(record)) t.dispose()
}

describe("globalNorm", () => {
  it("is the L2 norm of all gradients as one vector", () => {
    const g = grads()
    const norm = globalNorm(g)
    expect(norm.shape).toEqual([])
    expect(norm.dataSync()[0]).toBeCloseTo(expectedNorm, 5)
    norm.dispose()
    disposeAll(g)
  })

  it("is 0 for no gradients", () => {
    const norm = globalNorm({})
    expect(norm.dataSync()[0]).toBe(0)
    norm.dispose()
  })
})

describe("clipByGlobalNorm", () => {
  it("scales by maxNorm / (norm + 1e-6) when above, so the clipped norm is maxNorm", () => {
    const g = grads()
    const before = tf.memory().numTensors
    const { grads: clipped, norm } = clipByGlobalNorm(g, 2)
    // Outputs only: the norm and one tensor per gradient.
    expect(tf.memory().numTensors).toBe(before + 4)
    expect(norm.dataSync()[0]).toBeCloseTo(expectedNorm, 5)
    const scale = 2 / (expectedNorm + 1e-6)
    for (const [name, t] of Object.entries(clipped)) {
      const input = Array.from(g[name as keyof typeof g].dataSync())
      const got = Array.from(t.dataSync())
      got.forEach((x, i) => expect(x).toBeCloseTo(input[i]! * scale, 6))
    }
    const after = globalNorm(clipped)
    expect(Math.abs(after.dataSync()[0]! - 2) / 2).toBeLessThan(1e-6)
    after.dispose()
    norm.dispose()
    disposeAll(clipped)
    expect(tf.memory().numTensors).toBe(before)
    disposeAll(g)
  })

  it("leaves gradients unchanged (as new tensors) when the norm is below maxNorm", () => {
    const g = grads()
    const { grads: clipped, norm } = clipByGlobalNorm(g, 100)
    for (const [name, t] of Object.entries(clipped)) {
      const input = g[name as keyof typeof g]
      expect(t).not.toBe(input)
      expect(Array.from(t.dataSync())).toEqual(Array.from(input.dataSync()))
    }
    expect(norm.dataSync()[0]).toBeCloseTo(expectedNorm, 5)
    norm.dispose()
    disposeAll(clipped)
    // The inputs still belong to the caller.
    expect(g.a.isDisposed).toBe(false)
    disposeAll(g)
  })

  it("frees everything it creates when run inside the caller's tidy", () => {
    const g = grads()
    const before = tf.memory().numTensors
    tf.tidy(() => {
      clipByGlobalNorm(g, 1)
    })
    expect(tf.memory().numTensors).toBe(before)
    disposeAll(g)
  })

  it("rejects a negative or non-finite maxNorm", () => {
    expect(() => clipByGlobalNorm({}, -1)).toThrow(RangeError)
    expect(() => clipByGlobalNorm({}, Number.POSITIVE_INFINITY)).toThrow(RangeError)
  })
})
