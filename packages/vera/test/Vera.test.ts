import { AdapterSet, ConfigError, Linear, type LinearTarget } from "@peftkit/core"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll, describe, expect, it } from "vitest"
import { mt19937, torchKaimingUniform, vera, type VeraAdapter, veraConfig } from "../src/index.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

type Matrix = Array<Array<number>>
const rows = (t: tf.Tensor) => t.arraySync() as Matrix
const vec = (t: tf.Tensor) => Array.from(t.dataSync())

/** Two layers of different shapes (q [12, 10], v [6, 14]), so the shared projections are [r, 14] and [12, r]. */
const makeModel = () => {
  const layers = [
    new Linear("model.layers.0.self_attn.q_proj", tf.randomNormal([12, 10], 0, 0.3, "float32", 1), tf.randomNormal([12], 0, 0.1, "float32", 2) as tf.Tensor1D),
    new Linear("model.layers.0.self_attn.v_proj", tf.randomNormal([6, 14], 0, 0.3, "float32", 3))
  ]
  return { layers, linears: () => layers }
}

/** Seeded non-zero lambdas, so the adapters contribute. */
const perturb = (set: AdapterSet<any>) =>
  set.entries.forEach(({ adapter }, i) => {
    const { lambdaB, lambdaD } = (adapter as VeraAdapter).tensors
    lambdaB.assign(tf.randomNormal(lambdaB.shape, 0, 0.8, "float32", 40 + i))
    lambdaD.assign(tf.randomNormal(lambdaD.shape, 0, 0.8, "float32", 50 + i))
  })

/** PEFT's forward in float64: base + lambda_b * ((lambda_d * (x A_s^T)) B_s^T). */
const reference = (x: Matrix, base: Matrix, a: Matrix, b: Matrix, lambdaB: Array<number>, lambdaD: Array<number>, inF: number, out: number): Matrix =>
  x.map((row, n) => {
    const h = lambdaD.map((d, k) => d * row.slice(0, inF).reduce((s, v, i) => s + v * a[k]![i]!, 0))
    return base[n]!.map((y, o) => (o < out ? y + lambdaB[o]! * h.reduce((s, v, k) => s + v * b[o]![k]!, 0) : y))
  })

describe("VeRA adapters", () => {
  const config = veraConfig({ r: 5, projectionPrngKey: 3, targetModules: ["q_proj", "v_proj"] })

  it("share one frozen vera_A [r, max in] and vera_B [max out, r] across the set, drawn as PEFT draws them", () => {
    const model = makeModel()
    const set = AdapterSet.inject(model, vera, config, { seed: 1 })
    const [q, v] = set.entries.map(({ adapter }) => adapter as VeraAdapter)
    expect(q!.shared.veraA).toBe(v!.shared.veraA)
    expect(set.shared!.tensors["veraA"]).toBe(q!.shared.veraA)
    expect(q!.shared.veraA.shape).toEqual([5, 14])
    expect(q!.shared.veraB.shape).toEqual([12, 5])
    expect(q!.shared.veraA.trainable).toBe(false)
    const next = mt19937(3)
    expect(vec(q!.shared.veraA)).toEqual(Array.from(torchKaimingUniform(next, 5, 14)))
    expect(vec(q!.shared.veraB)).toEqual(Array.from(torchKaimingUniform(next, 12, 5)))
    // Kaiming-uniform with gain sqrt 2: |A| <= sqrt(6 / 14), |B| <= sqrt(6 / 5).
    expect(Math.max(...vec(q!.shared.veraA).map(Math.abs))).toBeLessThanOrEqual(Math.sqrt(6 / 14))
    expect(Math.max(...vec(q!.shared.veraB).map(Math.abs))).toBeLessThanOrEqual(Math.sqrt(6 / 5))
    // Per layer only lambda_b [out] (zeros) and lambda_d [r] (d_initial) train.
    expect(set.parameters().map((p) => [p.name, p.variable.shape])).toEqual([
      ["model.layers.0.self_attn.q_proj.vera_lambda_b", [12]],
      ["model.layers.0.self_attn.q_proj.vera_lambda_d", [5]],
      ["model.layers.0.self_attn.v_proj.vera_lambda_b", [6]],
      ["model.layers.0.self_attn.v_proj.vera_lambda_d", [5]]
    ])
    expect(vec(q!.tensors.lambdaB)).toEqual(new Array(12).fill(0))
    expect(vec(q!.tensors.lambdaD)).toEqual(new Array(5).fill(Math.fround(0.1)))
    set.remove()
    model.layers.forEach((layer) => layer.dispose())
  })

  it("a fresh adapter (lambda_b = 0) and a disabled one leave the output bit for bit", () => {
    const model = makeModel()
    const x = tf.randomNormal([4, 10], 0, 1, "float32", 9)
    const before = vec(model.layers[0]!.apply(x))
    const set = AdapterSet.inject(model, vera, config, { seed: 1 })
    expect(vec(model.layers[0]!.apply(x))).toEqual(before)
    perturb(set)
    expect(vec(model.layers[0]!.apply(x))).not.toEqual(before)
    set.disable()
    expect(vec(model.layers[0]!.apply(x))).toEqual(before)
    set.remove()
  })

  it("forward equals PEFT's formula computed in float64 on every layer (slices of the shared projections)", () => {
    const model = makeModel()
    const set = AdapterSet.inject(model, vera, config, { seed: 1 })
    perturb(set)
    for (const { layer, adapter } of set.entries) {
      const { tensors, shared } = adapter as VeraAdapter
      const x = tf.randomNormal([5, layer.inFeatures], 0, 1, "float32", 7)
      const base = tf.add(tf.matMul(x, layer.weight, false, true), layer.bias ?? 0)
      const expected = reference(rows(x), rows(base), rows(shared.veraA), rows(shared.veraB), vec(tensors.lambdaB), vec(tensors.lambdaD), layer.inFeatures, layer.outFeatures)
      const actual = rows(layer.apply(x))
      const diff = Math.max(...actual.flatMap((row, n) => row.map((v, o) => Math.abs(v - expected[n]![o]!))))
      expect(diff).toBeLessThan(1e-5)
    }
    set.remove()
  })

  it("gradients of lambda_b and lambda_d match central finite differences of a float64 loss", () => {
    const model = makeModel()
    const set = AdapterSet.inject(model, vera, config, { seed: 1 })
    perturb(set)
    const layer = model.layers[1]!
    const adapter = layer.adapter as VeraAdapter
    const x = tf.randomNormal([6, 14], 0, 1, "float32", 8)
    const { grads } = tf.variableGrads(() => tf.mul(0.5, tf.sum(tf.square(layer.apply(x)))) as tf.Scalar, [adapter.tensors.lambdaB, adapter.tensors.lambdaD])
    const xm = rows(x)
    const base = rows(tf.matMul(x, layer.weight, false, true))
    const [a, b] = [rows(adapter.shared.veraA), rows(adapter.shared.veraB)]
    const loss = (lb: Array<number>, ld: Array<number>) => 0.5 * reference(xm, base, a, b, lb, ld, 14, 6).flat().reduce((s, v) => s + v * v, 0)
    const eps = 1e-5
    const errors: Array<number> = []
    for (const [name, variable, other] of [["lambdaB", adapter.tensors.lambdaB, adapter.tensors.lambdaD], ["lambdaD", adapter.tensors.lambdaD, adapter.tensors.lambdaB]] as const) {
      const values = vec(variable)
      const fixed = vec(other)
      const analytic = vec(grads[variable.name]!)
      values.forEach((_, i) => {
        const plus = [...values]
        const minus = [...values]
        plus[i]! += eps
        minus[i]! -= eps
        const numeric = name === "lambdaB" ? (loss(plus, fixed) - loss(minus, fixed)) / (2 * eps) : (loss(fixed, plus) - loss(fixed, minus)) / (2 * eps)
        errors.push(Math.abs(numeric - analytic[i]!) / Math.max(1, Math.abs(numeric)))
      })
    }
    const worst = Math.max(...errors)
    console.log(`VeRA finite differences: max relative error ${worst.toExponential(2)} over ${errors.length} entries`)
    expect(worst).toBeLessThan(1e-4)
    tf.dispose(Object.values(grads))
    set.remove()
  })

  it("merged output equals unmerged, unmerge restores W, and factors multiply to delta exactly", () => {
    const model = makeModel()
    const set = AdapterSet.inject(model, vera, config, { seed: 1 })
    perturb(set)
    const x = tf.randomNormal([5, 10], 0, 1, "float32", 11)
    const layer = model.layers[0]!
    const w = vec(layer.weight)
    const unmerged = vec(layer.apply(x))
    set.merge()
    const merged = vec(layer.apply(x))
    expect(Math.max(...merged.map((v, i) => Math.abs(v - unmerged[i]!)))).toBeLessThan(1e-5)
    set.unmerge()
    expect(Math.max(...vec(layer.weight).map((v, i) => Math.abs(v - w[i]!)))).toBeLessThan(1e-6)
    const adapter = layer.adapter!
    const { a, b } = adapter.factors!()
    expect(a.shape).toEqual([5, 10])
    expect(b.shape).toEqual([12, 5])
    expect(vec(tf.matMul(b, a))).toEqual(vec(adapter.delta(layer)))
    set.remove()
  })

  it("allocates nothing across a training step, and frees everything (shared tensors once) when the set is removed", () => {
    const model = makeModel()
    const start = tf.memory().numTensors
    const set = AdapterSet.inject(model, vera, config, { seed: 1 })
    // 2 shared projections + 2 per layer.
    expect(tf.memory().numTensors - start).toBe(2 + 2 * 2)
    const x = tf.randomNormal([4, 10], 0, 1, "float32", 12)
    const step = () => {
      const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(model.layers[0]!.apply(x, true))) as tf.Scalar, set.parameters().map((p) => p.variable))
      tf.tidy(() => set.parameters().forEach((p) => { const g = grads[p.variable.name]; if (g !== undefined) p.variable.assign(tf.sub(p.variable, tf.mul(g, 0.01))) }))
      tf.dispose([value, ...Object.values(grads)])
    }
    step()
    const after = tf.memory().numTensors
    step()
    expect(tf.memory().numTensors).toBe(after)
    set.remove()
    x.dispose()
    expect(tf.memory().numTensors).toBe(start)
    model.layers.forEach((layer) => layer.dispose())
  })

  it("an adapter created outside a set owns (and frees) its own projections", () => {
    const start = tf.memory().numTensors
    const adapter = vera.create({ name: "m", inFeatures: 4, outFeatures: 3 } as LinearTarget, veraConfig({ r: 2 }), 1) as VeraAdapter
    expect(adapter.shared.veraA.shape).toEqual([2, 4])
    adapter.dispose()
    expect(tf.memory().numTensors).toBe(start)
  })

  it("bad configs are ConfigErrors naming the field", () => {
    expect(() => veraConfig({ r: 0 })).toThrow(ConfigError)
    expect(() => veraConfig({ r: 99999 })).toThrow(/vera.r/)
    expect(() => veraConfig({ dropout: 1.5 })).toThrow(/vera.dropout/)
  })
})
