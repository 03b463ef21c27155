/**
 * The wasm backend's kernel overrides give tfjs's own numbers: matmuls with every transpose on
 * peftkit's GEMM kernel (forward and gradient, tfjs's own matMul gradient), the fused matmul, the
 * contiguous Slice and the copying Reverse. Each is compared with the same plain tfjs computation
 * on the CPU backend. (XNNPACK's matmul path, `matMul: "xnnpack"`: XnnpackMatMul.test.ts.)
 */
import * as tf from "@tensorflow/tfjs-core"
import { describe, expect, it } from "vitest"
import { use, close } from "./helpers.js"

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

describe("tf.matMul with transposes (the BatchMatMul override)", () => {
  const cases: Array<[boolean, boolean, [number, number], [number, number]]> = [
    [false, false, [37, 19], [19, 23]],
    [false, true, [37, 19], [23, 19]],
    [true, false, [19, 37], [19, 23]],
    [true, true, [19, 37], [23, 19]],
    // A wide result: the flipped form (transpose the product) is the cheaper one here.
    [false, true, [3, 64], [200, 64]]
  ]
  for (const [ta, tb, aShape, bShape] of cases) {
    it(`transposeA=${ta}, transposeB=${tb}, ${aShape} x ${bShape}: value and gradients equal the cpu backend's to 1e-5`, async () => {
      await use("cpu")
      const expected = product((a, b) => tf.matMul(a, b, ta, tb), aShape, bShape)
      await use("wasm")
      const before = tf.memory().numTensors
      const actual = product((a, b) => tf.matMul(a, b, ta, tb), aShape, bShape)
      expect(tf.memory().numTensors).toBe(before)
      actual.forEach((values, i) => close(values, expected[i]!, 1e-5))
    })
  }
})

describe("the fused matmul", () => {
  it("transposeB with a bias (wrong in tfjs-backend-wasm 4.22's own kernel) equals the cpu backend's", async () => {
    const compute = () => tf.tidy(() => {
      const x = tf.randomNormal([5, 8], 0, 1, "float32", 1) as tf.Tensor2D
      const w = tf.randomNormal([6, 8], 0, 1, "float32", 2) as tf.Tensor2D
      const bias = tf.randomNormal([6], 0, 1, "float32", 3)
      return [
        tf.fused.matMul({ a: x, b: w, transposeB: true, bias }),
        tf.fused.matMul({ a: tf.transpose(x), b: w, transposeA: true, transposeB: true, bias, activation: "relu" })
      ].map((t) => t.dataSync().slice())
    })
    await use("cpu")
    const expected = compute()
    await use("wasm")
    const before = tf.memory().numTensors
    compute().forEach((values, i) => close(values, expected[i]!, 1e-5))
    expect(tf.memory().numTensors).toBe(before)
  })
})

describe("the copying Reverse kernel", () => {
  it("gives tfjs's values for one axis (any position, size-1 axes ignored), several axes, int32 and bool, without leaks", async () => {
    const reversals = () => tf.tidy(() => {
      const x = tf.reshape(tf.range(0, 2 * 3 * 4 * 40, 1, "float32"), [2, 3, 4, 40])
      return [
        tf.reverse(x, 0),
        tf.reverse(x, 1),
        tf.reverse(x, -1),
        tf.reverse(tf.reshape(x, [2, 3, 4, 2, 20]), 3),
        tf.reverse(tf.reshape(x, [2, 3, 4, 20, 2]), 4),
        tf.reverse(x, [1, 2]),
        tf.reverse(tf.reshape(x, [1, 24, 40]), [0]),
        tf.reverse(tf.cast(x, "int32"), 2),
        tf.reverse(tf.greater(x, 100), 3)
      ].map((t) => ({ shape: t.shape, dtype: t.dtype, values: Array.from(t.dataSync()) }))
    })
    await use("cpu")
    const expected = reversals()
    await use("wasm")
    const before = tf.memory().numTensors
    expect(reversals()).toEqual(expected)
    expect(tf.memory().numTensors).toBe(before)
  })
})

describe("the sharing Identity kernel", () => {
  it("a clone shares its source's data, outlives it with the right values, and frees it last", async () => {
    await use("wasm")
    const before = tf.memory()
    const x = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3])
    const copy = tf.clone(x)
    expect(copy.dataId).toBe(x.dataId)
    expect(tf.memory().numDataBuffers - before.numDataBuffers).toBe(1) // one buffer for both
    x.dispose()
    expect(Array.from(copy.dataSync())).toEqual([1, 2, 3, 4, 5, 6])
    copy.dispose()
    expect(tf.memory().numTensors).toBe(before.numTensors)
    expect(tf.memory().numBytes).toBe(before.numBytes)
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

describe("the SIMD Exp kernel", () => {
  it("is within 2 float32 ulps of exp over [-87, 88], exact at the edges (0, Infinity, NaN), with tfjs's gradient, without leaks", async () => {
    await use("wasm")
    const specials = [-Infinity, -1e9, -100, -87.5, 0, -0, 88.8, 1e9, Infinity, Number.NaN]
    const expectedSpecials = [0, 0, 0, 0, 1, 1, Infinity, Infinity, Infinity, Number.NaN]
    const grid = Array.from({ length: 4001 }, (_, i) => -87 + (175 * i) / 4000)
    const before = tf.memory().numTensors
    const [values, gradient] = tf.tidy(() => {
      const x = tf.tensor1d([...specials, ...grid, 1e-3, -1e-3, 0.5])
      const dy = tf.onesLike(x)
      return [tf.exp(x).dataSync().slice(), tf.grad((z: tf.Tensor) => tf.sum(tf.mul(tf.exp(z), dy)))(x).dataSync().slice()]
    })
    expect(tf.memory().numTensors).toBe(before)
    expectedSpecials.forEach((e, i) => (Number.isNaN(e) ? expect(values[i]).toBeNaN() : expect(values[i]).toBe(e)))
    const inputs = [...grid, 1e-3, -1e-3, 0.5]
    let worst = 0
    inputs.forEach((x, i) => {
      const exact = Math.fround(Math.exp(Math.fround(x)))
      worst = Math.max(worst, Math.abs(values[specials.length + i]! - exact) / exact)
      expect(gradient[specials.length + i]).toBe(values[specials.length + i])
    })
    expect(worst).toBeLessThan(2 * 2 ** -23)
  })
})
