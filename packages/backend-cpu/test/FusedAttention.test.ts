/**
 * The fused attention kernel (`kernels/attention.ts`, the wasm backend's `attention` op) against
 * plain tfjs ops on the CPU backend: the output and the gradients of q, k and v, over the shapes
 * that exercise its edges (head sizes 4, 8, 12 and 64; key lengths that are not multiples of 4 or 8;
 * query rows that do not fill a tile of 4; t < L as in cached generation; grouped-query heads; causal,
 * padding, per-batch and absent biases; rows whose keys are all masked). Each case also checks that
 * the fused kernels ran (by name, in `tf.profile`), not the blockwise fallback, and that nothing leaks.
 * The last two cases are large enough to be split over worker threads in Node.
 */
import { backendOps } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { use } from "./helpers.js"
import { FusedAttention, FusedAttentionGrad } from "../src/internal/fusedAttention.js"

const maxRelative = (actual: ArrayLike<number>, expected: ArrayLike<number>) => {
  expect(actual.length).toBe(expected.length)
  let worst = 0
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / Math.max(1, Math.abs(expected[i]!)))
  return worst
}

/** softmax(q k^T + bias) v with k and v repeated per query head: the textbook form. */
const plainAttention = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, bias: tf.Tensor4D | undefined): tf.Tensor4D => {
  const groups = q.shape[1] / k.shape[1]
  const kvHeadOf = tf.tensor1d(Array.from({ length: q.shape[1] }, (_, h) => Math.floor(h / groups)), "int32")
  const repeat = (x: tf.Tensor4D) => tf.gather(x, kvHeadOf, 1) as tf.Tensor4D
  let scores: tf.Tensor = tf.matMul(q, repeat(k), false, true)
  if (bias !== undefined) scores = tf.add(scores, bias)
  return tf.matMul(tf.softmax(scores) as tf.Tensor4D, repeat(v)) as tf.Tensor4D
}

type BiasKind = "none" | "causal" | "causal+padding" | "padding rows"

interface Case {
  readonly b: number
  readonly heads: number
  readonly kvHeads: number
  readonly t: number
  readonly length: number
  readonly d: number
  readonly bias: BiasKind
}

/** The bias for `kind`: causal over the last t of L positions, plus left padding that masks whole rows. */
const makeBias = ({ b, t, length, bias }: Case): tf.Tensor4D | undefined => {
  if (bias === "none") return undefined
  const offset = length - t
  const causal = tf.buffer([1, 1, t, length])
  for (let i = 0; i < t; i++) for (let j = 0; j < length; j++) causal.set(j > i + offset ? -1e9 : 0, 0, 0, i, j)
  if (bias === "causal") return causal.toTensor() as tf.Tensor4D
  // Batch row r has its first 2r keys padded: with t = L, its first 2r query rows see no key at all.
  const padding = tf.buffer([b, 1, 1, length])
  for (let r = 0; r < b; r++) for (let j = 0; j < Math.min(2 * r, length); j++) padding.set(-1e9, r, 0, 0, j)
  if (bias === "padding rows") return padding.toTensor() as tf.Tensor4D
  return tf.add(causal.toTensor(), padding.toTensor()) as tf.Tensor4D
}

const run = (c: Case, attention: typeof plainAttention) =>
  tf.tidy(() => {
    const q = tf.randomNormal([c.b, c.heads, c.t, c.d], 0, 1, "float32", 1)
    const k = tf.randomNormal([c.b, c.kvHeads, c.length, c.d], 0, 1, "float32", 2)
    const v = tf.randomNormal([c.b, c.kvHeads, c.length, c.d], 0, 1, "float32", 3)
    const bias = makeBias(c)
    const weights = tf.randomNormal([c.b, c.heads, c.t, c.d], 0, 1, "float32", 4)
    const loss = (x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) => tf.sum(tf.mul(attention(x as tf.Tensor4D, y as tf.Tensor4D, z as tf.Tensor4D, bias), weights))
    const grads = tf.grads(loss)([q, k, v])
    return [attention(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D, bias), ...grads].map((x) => x.dataSync().slice())
  })

const cases: ReadonlyArray<Case> = [
  { b: 2, heads: 8, kvHeads: 4, t: 37, length: 37, d: 8, bias: "causal" },
  { b: 3, heads: 4, kvHeads: 2, t: 13, length: 13, d: 8, bias: "causal+padding" },
  { b: 2, heads: 3, kvHeads: 1, t: 9, length: 9, d: 12, bias: "padding rows" },
  { b: 1, heads: 2, kvHeads: 2, t: 21, length: 21, d: 64, bias: "causal" },
  { b: 2, heads: 4, kvHeads: 2, t: 1, length: 11, d: 4, bias: "causal" },
  { b: 2, heads: 2, kvHeads: 1, t: 3, length: 10, d: 16, bias: "causal+padding" },
  { b: 1, heads: 3, kvHeads: 3, t: 6, length: 6, d: 8, bias: "none" },
  // Above MIN_PARALLEL_WORK: in Node the blocks are split over worker threads (2 blocks, 2 threads).
  { b: 2, heads: 4, kvHeads: 1, t: 64, length: 64, d: 64, bias: "causal+padding" },
  { b: 3, heads: 6, kvHeads: 3, t: 96, length: 96, d: 8, bias: "causal" }
]

/** float32 sums in a different order: the error grows with the head size (summed over) and L. */
const tolerance = (c: Case) => 1e-5 * Math.max(1, Math.sqrt((c.d * c.length) / 256))

/** On wasm: the kernel names one run of `c` through the backend's attention op dispatched. */
const kernelsRun = async (c: Case): Promise<Set<string>> => {
  await use("wasm")
  const profile = await tf.profile(() => {
    run(c, backendOps().attention! as typeof plainAttention)
  })
  return new Set(profile.kernels.map((k) => k.name))
}

describe("fused attention on wasm", () => {
  for (const c of cases) {
    const name = `b ${c.b}, ${c.heads}/${c.kvHeads} heads, t ${c.t}, L ${c.length}, d ${c.d}, ${c.bias}`
    it(`${name}: output and dq, dk, dv equal plain tfjs on the cpu backend (1e-5 x max(1, sqrt(d L / 256)))`, async () => {
      await use("cpu")
      const expected = run(c, plainAttention)
      const names = await kernelsRun(c)
      expect(names.has(FusedAttention) && names.has(FusedAttentionGrad)).toBe(true)
      const before = tf.memory().numTensors
      const actual = run(c, backendOps().attention! as typeof plainAttention)
      expect(tf.memory().numTensors).toBe(before)
      actual.forEach((values, i) => expect(maxRelative(values, expected[i]!)).toBeLessThan(tolerance(c)))
    })
  }

  it("a head size that is not a multiple of 4 falls back to the blockwise form, same values", async () => {
    const c: Case = { b: 1, heads: 2, kvHeads: 1, t: 5, length: 5, d: 6, bias: "causal" }
    await use("cpu")
    const expected = run(c, plainAttention)
    expect((await kernelsRun(c)).has(FusedAttention)).toBe(false)
    run(c, backendOps().attention! as typeof plainAttention).forEach((values, i) => expect(maxRelative(values, expected[i]!)).toBeLessThan(1e-5))
  })
})

describe("the shipped kernel binary", () => {
  it("is what kernels/attention.ts compiles to (scripts/build-kernels.mjs --check)", () => {
    const script = fileURLToPath(new URL("../scripts/build-kernels.mjs", import.meta.url))
    expect(() => execFileSync(process.execPath, [script, "--check"], { stdio: "pipe" })).not.toThrow()
  })
})
