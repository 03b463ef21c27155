import { AdapterSet, ConfigError, Linear, type LinearTarget } from "@peftkit/core"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll, describe, expect, it } from "vitest"
import { lora, type LoraAdapter, type LoraConfig, loraConfig, loraPlusGroups, loraScale } from "../src/index.js"
import { addM, matmulT, maxAbsDiff, randomMatrix, toMatrix } from "./helpers.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const model = (linears: Array<Linear>) => ({ linears: () => linears })

const makeLayer = (name = "model.layers.0.self_attn.q_proj", out = 12, inF = 10) =>
  new Linear(name, randomMatrix(out, inF, 1), tf.randomNormal([out], 0, 1, "float32", 2) as tf.Tensor1D)

/** A LoRA adapter for a layer of the given shape, outside any model. */
const newLoraAdapter = (name: string, config: LoraConfig, inFeatures: number, outFeatures: number, seed: number) =>
  lora.create({ name, inFeatures, outFeatures } as LinearTarget, config, seed) as LoraAdapter

/** Gives B non-zero values so the adapter actually contributes. */
const perturbB = (adapter: LoraAdapter, seed: number) => adapter.tensors.loraB.assign(randomMatrix(adapter.tensors.loraB.shape[0]!, adapter.config.r, seed, 0.5))

describe("LoRA forward", () => {
  it("equals x W^T + b + scale (x A^T) B^T computed independently in float64", () => {
    const layer = makeLayer()
    const config = loraConfig({ r: 4, alpha: 8, targetModules: ["q_proj"] })
    AdapterSet.inject(model([layer]), lora, config, { seed: 7 })
    const adapter = layer.adapter as LoraAdapter
    perturbB(adapter, 3)
    const x = randomMatrix(5, 10, 4)
    const y = toMatrix(layer.apply(x))
    const xm = toMatrix(x)
    const base = matmulT(xm, toMatrix(layer.weight)).map((row) => row.map((v, j) => v + (layer.bias!.arraySync() as Array<number>)[j]!))
    const expected = addM(base, matmulT(matmulT(xm, toMatrix(adapter.tensors.loraA)), toMatrix(adapter.tensors.loraB)), 8 / 4)
    expect(loraScale(adapter.config)).toBe(2)
    expect(maxAbsDiff(y, expected)).toBeLessThan(1e-5)
  })

  it("rsLoRA scales by alpha / sqrt(r)", () => {
    expect(loraScale(newLoraAdapter("m", loraConfig({ r: 16, alpha: 8, useRslora: true }), 4, 4, 1).config)).toBe(2)
  })

  it("with B = 0, and with the adapter disabled, the output equals the base output bit for bit", () => {
    const layer = makeLayer()
    const x = randomMatrix(6, 10, 5)
    const baseline = layer.apply(x).dataSync().slice()
    const config = loraConfig({ r: 4, alpha: 16 })
    AdapterSet.inject(model([layer]), lora, { ...config, targetModules: ["q_proj"] }, { seed: 1 })
    expect(Array.from(layer.apply(x).dataSync())).toEqual(Array.from(baseline))
    perturbB(layer.adapter as LoraAdapter, 9)
    expect(Array.from(layer.apply(x).dataSync())).not.toEqual(Array.from(baseline))
    layer.setAdapterEnabled(false)
    expect(Array.from(layer.apply(x).dataSync())).toEqual(Array.from(baseline))
  })

  it("merged forward equals unmerged forward and unmerge restores W and the output (max abs diff < 1e-5 on outputs of magnitude ~10, < 1e-6 on W)", () => {
    const layer = makeLayer("blocks.0.fc", 16, 24)
    const set = AdapterSet.inject(model([layer]), lora, loraConfig({ r: 8, alpha: 16, targetModules: "blocks\\.\\d+\\.fc" }), { seed: 3 })
    perturbB(layer.adapter as LoraAdapter, 11)
    const w0 = toMatrix(layer.weight)
    const x = randomMatrix(7, 24, 12, 2)
    const unmerged = toMatrix(layer.apply(x))
    set.merge()
    expect(layer.merged).toBe(true)
    expect(maxAbsDiff(toMatrix(layer.apply(x)), unmerged)).toBeLessThan(1e-5)
    set.unmerge()
    expect(maxAbsDiff(toMatrix(layer.weight), w0)).toBeLessThan(1e-6)
    expect(maxAbsDiff(toMatrix(layer.apply(x)), unmerged)).toBeLessThan(1e-5)
  })

  it("3-D input [batch, seq, in] is handled like its 2-D rows", () => {
    const layer = makeLayer()
    AdapterSet.inject(model([layer]), lora, loraConfig({ r: 2, targetModules: ["q_proj"] }), { seed: 5 })
    perturbB(layer.adapter as LoraAdapter, 1)
    const x = tf.randomNormal([2, 3, 10], 0, 1, "float32", 8)
    const y3 = layer.apply(x)
    expect(y3.shape).toEqual([2, 3, 12])
    const y2 = layer.apply(tf.reshape(x, [6, 10]))
    expect(maxAbsDiff(toMatrix(tf.reshape(y3, [6, 12])), toMatrix(y2))).toBe(0)
  })

  it("kaiming init draws A in [-1/sqrt(in), 1/sqrt(in)] with B = 0; gaussian has std 1/r; both seeded", () => {
    const a = newLoraAdapter("m", loraConfig({ r: 8 }), 400, 30, 42)
    const values = a.tensors.loraA.dataSync()
    const bound = 1 / Math.sqrt(400)
    expect(Math.max(...Array.from(values, Math.abs))).toBeLessThanOrEqual(bound)
    expect(Math.max(...Array.from(values, Math.abs))).toBeGreaterThan(0.95 * bound)
    expect(Array.from(a.tensors.loraB.dataSync()).every((v) => v === 0)).toBe(true)
    const again = newLoraAdapter("m", loraConfig({ r: 8 }), 400, 30, 42)
    expect(Array.from(again.tensors.loraA.dataSync())).toEqual(Array.from(values))
    const g = Array.from(newLoraAdapter("m", loraConfig({ r: 8, init: "gaussian" }), 2000, 30, 1).tensors.loraA.dataSync())
    const std = Math.sqrt(g.reduce((s, v) => s + v * v, 0) / g.length)
    expect(std).toBeGreaterThan(0.125 * 0.97)
    expect(std).toBeLessThan(0.125 * 1.03)
  })
})

describe("LoRA gradients", () => {
  it("dL/dA and dL/dB match central finite differences of a float64 reference loss (rel. err < 1e-3)", () => {
    const out = 6, inF = 5, r = 3, n = 4, alpha = 6
    const layer = new Linear("fc", randomMatrix(out, inF, 21))
    AdapterSet.inject(model([layer]), lora, loraConfig({ r, alpha, targetModules: ["fc"] }), { seed: 2 })
    const adapter = layer.adapter as LoraAdapter
    perturbB(adapter, 22)
    const x = randomMatrix(n, inF, 23)
    const target = randomMatrix(n, out, 24)
    const { grads } = tf.variableGrads(
      () => tf.mul(0.5, tf.sum(tf.square(tf.sub(layer.apply(x, true), target)))) as tf.Scalar,
      [adapter.tensors.loraA, adapter.tensors.loraB]
    )
    const W = toMatrix(layer.weight), X = toMatrix(x), T = toMatrix(target)
    const scale = alpha / r
    const loss = (A: Array<Array<number>>, B: Array<Array<number>>) => {
      const y = addM(matmulT(X, W), matmulT(matmulT(X, A), B), scale)
      return 0.5 * y.reduce((s, row, i) => s + row.reduce((t, v, j) => t + (v - T[i]![j]!) ** 2, 0), 0)
    }
    const check = (which: "A" | "B") => {
      const A = toMatrix(adapter.tensors.loraA), B = toMatrix(adapter.tensors.loraB)
      const M = which === "A" ? A : B
      const analytic = toMatrix(grads[(which === "A" ? adapter.tensors.loraA : adapter.tensors.loraB).name]!)
      const h = 1e-6
      let worst = 0
      M.forEach((row, i) => row.forEach((value, j) => {
        row[j] = value + h
        const plus = loss(A, B)
        row[j] = value - h
        const minus = loss(A, B)
        row[j] = value
        const numeric = (plus - minus) / (2 * h)
        worst = Math.max(worst, Math.abs(numeric - analytic[i]![j]!) / Math.max(1, Math.abs(numeric)))
      }))
      return worst
    }
    expect(check("A")).toBeLessThan(1e-3)
    expect(check("B")).toBeLessThan(1e-3)
  })

  it("the frozen base weight gets no gradient and is not trained", () => {
    const layer = makeLayer()
    AdapterSet.inject(model([layer]), lora, loraConfig({ r: 2, targetModules: ["q_proj"] }), { seed: 1 })
    expect(layer.weight.trainable).toBe(false)
    const { grads } = tf.variableGrads(() => tf.sum(layer.apply(randomMatrix(2, 10, 1), true)) as tf.Scalar, [layer.weight, ...layer.adapter!.parameters().map((p) => p.variable)])
    expect(grads[layer.weight.name]).toBeNull()
  })
})

describe("LoRA config and groups", () => {
  it("bad config is a ConfigError naming the field", () => {
    const fieldOf = (input: unknown) => {
      try {
        loraConfig(input as never)
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError)
        return [(error as ConfigError).field, (error as ConfigError).message]
      }
      throw new Error("expected a ConfigError")
    }
    expect(fieldOf({ r: -4 })).toEqual(["lora.r", "invalid config: 'lora.r': must be a positive integer"])
    expect(fieldOf({ r: 2.5 })[0]).toBe("lora.r")
    expect(fieldOf({ alpha: "16" })[0]).toBe("lora.alpha")
    expect(fieldOf({ rank: 8 })).toEqual(["lora.rank", "invalid config: 'lora.rank': unknown key"])
    expect(fieldOf({ dropout: 1.5 })[0]).toBe("lora.dropout")
    expect(fieldOf({ init: "orthogonal" })[0]).toBe("lora.init")
  })

  it("injecting into nothing is a ConfigError on targetModules", () => {
    expect(() => AdapterSet.inject(model([makeLayer()]), lora, loraConfig({ targetModules: ["k_proj"] }), { seed: 1 })).toThrow(ConfigError)
  })

  it("LoRA+ puts every lora_B in a group with the given lr ratio", () => {
    const layers = [makeLayer("a.q_proj"), makeLayer("a.v_proj")]
    const set = AdapterSet.inject(model(layers), lora, loraConfig({ r: 2, targetModules: ["q_proj", "v_proj"] }), { seed: 1 })
    const groups = loraPlusGroups(set.parameters(), 16)
    expect(groups[0]!.params.map((p) => p.name)).toEqual(["a.q_proj.lora_A.weight", "a.v_proj.lora_A.weight"])
    expect(groups[1]!.params.map((p) => p.name)).toEqual(["a.q_proj.lora_B.weight", "a.v_proj.lora_B.weight"])
    expect(groups[1]!.lrScale).toBe(16)
  })

  it("reinitialize draws a fresh A from the new seed and zeroes B; numTensors is unchanged", () => {
    const adapter = newLoraAdapter("m", loraConfig({ r: 4 }), 8, 8, 1)
    perturbB(adapter, 2)
    const before = tf.memory().numTensors
    const oldA = Array.from(adapter.tensors.loraA.dataSync())
    adapter.reinitialize(99)
    expect(tf.memory().numTensors).toBe(before)
    expect(Array.from(adapter.tensors.loraA.dataSync())).not.toEqual(oldA)
    expect(Array.from(adapter.tensors.loraA.dataSync())).toEqual(Array.from(newLoraAdapter("m", loraConfig({ r: 4 }), 8, 8, 99).tensors.loraA.dataSync()))
    expect(Array.from(adapter.tensors.loraB.dataSync()).every((v) => v === 0)).toBe(true)
  })
})
