import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, AdapterSet, ConfigError, Linear, loadAdapter, mixSeed, readSafetensors, saveAdapter } from "@peftkit/core"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { dora, type DoraAdapter, lora, loraConfig, type LoraConfig, loraScale } from "../src/index.js"
import { type Matrix, maxAbsDiff, randomMatrix, toMatrix } from "./helpers.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const NAME = "model.layers.0.self_attn.q_proj"

/** A layer with bias and a DoRA adapter whose B is non-zero (so the magnitude scale is not 1). */
const setup = (config: LoraConfig = loraConfig({ r: 3, alpha: 6, targetModules: ["q_proj"] }), out = 7, inF = 5) => {
  const layer = new Linear(NAME, randomMatrix(out, inF, 1), tf.randomNormal([out], 0, 1, "float32", 2) as tf.Tensor1D)
  const set = AdapterSet.inject({ linears: () => [layer] }, dora, config, { seed: 4 })
  const adapter = layer.adapter as DoraAdapter
  adapter.tensors.loraB.assign(randomMatrix(out, adapter.tensors.loraA.shape[0]!, 9, 0.5))
  adapter.tensors.magnitude.assign(tf.add(adapter.tensors.magnitude, tf.randomUniform([out], -0.3, 0.3, "float32", 5)))
  return { layer, set, adapter }
}

const rows = (t: tf.Tensor): Matrix => (t.rank === 1 ? [t.arraySync() as Array<number>] : toMatrix(t))

/**
 * PEFT's DoRA Linear forward (variants.py / dora.py), in float64: V = W + s B A, n = ||V|| per row
 * (a constant for gradients), y = x W^T + b + (m/n - 1) (x_d W^T) + (m/n) s (x_d A^T B^T); x_d is
 * the dropped input when dropout runs, else x.
 */
const pefts = (p: { x: Matrix; xd?: Matrix; w: Matrix; bias: Array<number>; a: Matrix; b: Matrix; m: Array<number>; s: number; norm?: Array<number> }): Matrix => {
  const { x, w, bias, a, b, m, s } = p
  const xd = p.xd ?? x
  const out = w.length
  const r = a.length
  const ba = w.map((_, i) => w[0]!.map((_, j) => a.reduce((sum, row, k) => sum + b[i]![k]! * row[j]!, 0)))
  const norm = p.norm ?? w.map((row, i) => Math.sqrt(row.reduce((sum, v, j) => sum + (v + s * ba[i]![j]!) ** 2, 0)))
  return x.map((xr, n) =>
    Array.from({ length: out }, (_, i) => {
      const scale = m[i]! / norm[i]!
      const base = xr.reduce((sum, v, j) => sum + v * w[i]![j]!, 0)
      const dropped = xd[n]!.reduce((sum, v, j) => sum + v * w[i]![j]!, 0)
      let low = 0
      for (let k = 0; k < r; k++) low += b[i]![k]! * xd[n]!.reduce((sum, v, j) => sum + v * a[k]![j]!, 0)
      return base + bias[i]! + (scale - 1) * dropped + scale * s * low
    })
  )
}

const reference = (layer: Linear, adapter: DoraAdapter, x: tf.Tensor2D, extra: { xd?: Matrix; norm?: Array<number> } = {}) =>
  pefts({
    x: toMatrix(x),
    w: toMatrix(layer.weight),
    bias: layer.bias!.arraySync(),
    a: toMatrix(adapter.tensors.loraA),
    b: toMatrix(adapter.tensors.loraB),
    m: adapter.tensors.magnitude.arraySync() as Array<number>,
    s: loraScale(adapter.config, NAME),
    ...extra
  })

describe("DoRA forward", () => {
  it("a fresh adapter starts at m = ||W|| per row and leaves the output unchanged", () => {
    const layer = new Linear(NAME, randomMatrix(7, 5, 1))
    const x = randomMatrix(4, 5, 3)
    const before = toMatrix(layer.apply(x))
    AdapterSet.inject({ linears: () => [layer] }, dora, loraConfig({ r: 2, targetModules: ["q_proj"] }), { seed: 1 })
    const m = (layer.adapter as DoraAdapter).tensors.magnitude.arraySync() as Array<number>
    const norms = toMatrix(layer.weight).map((row) => Math.sqrt(row.reduce((sum, v) => sum + v * v, 0)))
    expect(Math.max(...m.map((v, i) => Math.abs(v - norms[i]!)))).toBeLessThan(1e-6)
    expect(maxAbsDiff(toMatrix(layer.apply(x)), before)).toBeLessThan(1e-6)
  })

  it("equals PEFT's formula computed independently in float64 (with bias, rsLoRA and without)", () => {
    for (const useRslora of [false, true]) {
      const { layer, adapter } = setup(loraConfig({ r: 3, alpha: 6, useRslora, targetModules: ["q_proj"] }))
      const x = randomMatrix(6, 5, 8)
      expect(maxAbsDiff(toMatrix(layer.apply(x)), reference(layer, adapter, x))).toBeLessThan(1e-5)
    }
  })

  it("with dropout while training: PEFT's path, base product recomputed on the dropped input", () => {
    const { layer, adapter } = setup(loraConfig({ r: 3, alpha: 6, dropout: 0.5, targetModules: ["q_proj"] }))
    const x = randomMatrix(6, 5, 8)
    const [seed, calls] = adapter.randomState() as [number, number]
    const y = toMatrix(layer.apply(x, true))
    // The mask the adapter drew: its stream's next seed.
    const xd = toMatrix(tf.dropout(x, 0.5, undefined, mixSeed(seed, calls + 1)))
    expect(xd.flat().some((v) => v === 0)).toBe(true)
    expect(maxAbsDiff(y, reference(layer, adapter, x, { xd }))).toBeLessThan(1e-5)
    // Not training: no dropout, the plain formula.
    expect(maxAbsDiff(toMatrix(layer.apply(x, false)), reference(layer, adapter, x))).toBeLessThan(1e-5)
  })
})

describe("DoRA gradients", () => {
  it("match central finite differences of PEFT's forward with the row norm held constant (detached)", () => {
    const { layer, adapter } = setup()
    const x = randomMatrix(6, 5, 8)
    const probe = randomMatrix(6, 7, 10)
    const probeM = toMatrix(probe)
    const loss = () => tf.sum(tf.mul(layer.apply(x, true), probe)) as tf.Scalar
    const { grads } = tf.variableGrads(loss, [adapter.tensors.loraA, adapter.tensors.loraB, adapter.tensors.magnitude])
    const norm = (() => {
      const w = toMatrix(layer.weight)
      const ba = toMatrix(tf.matMul(adapter.tensors.loraB, adapter.tensors.loraA))
      const s = loraScale(adapter.config, NAME)
      return w.map((row, i) => Math.sqrt(row.reduce((sum, v, j) => sum + (v + s * ba[i]![j]!) ** 2, 0)))
    })()
    const lossOf = (a: Matrix, b: Matrix, m: Array<number>, detached: boolean) => {
      const y = pefts({ x: toMatrix(x), w: toMatrix(layer.weight), bias: layer.bias!.arraySync(), a, b, m, s: 2, ...(detached ? { norm } : {}) })
      return y.reduce((sum, row, n) => sum + row.reduce((acc, v, i) => acc + v * probeM[n]![i]!, 0), 0)
    }
    const params = { a: toMatrix(adapter.tensors.loraA), b: toMatrix(adapter.tensors.loraB), m: [adapter.tensors.magnitude.arraySync() as Array<number>] }
    const h = 1e-5
    const fd = (which: "a" | "b" | "m", detached: boolean): Matrix =>
      params[which].map((row, i) =>
        row.map((_, j) => {
          const shifted = (delta: number) => {
            const copy = { a: params.a.map((r) => [...r]), b: params.b.map((r) => [...r]), m: params.m.map((r) => [...r]) }
            copy[which][i]![j]! += delta
            return lossOf(copy.a, copy.b, copy.m[0]!, detached)
          }
          return (shifted(h) - shifted(-h)) / (2 * h)
        })
      )
    const errors = {
      a: maxAbsDiff(toMatrix(grads[adapter.tensors.loraA.name]!), fd("a", true)),
      b: maxAbsDiff(toMatrix(grads[adapter.tensors.loraB.name]!), fd("b", true)),
      m: maxAbsDiff(rows(grads[adapter.tensors.magnitude.name]!), fd("m", true))
    }
    console.log(`DoRA gradient vs finite differences (max abs): A ${errors.a.toExponential(2)}, B ${errors.b.toExponential(2)}, m ${errors.m.toExponential(2)}`)
    expect(errors.a).toBeLessThan(2e-4)
    expect(errors.b).toBeLessThan(2e-4)
    expect(errors.m).toBeLessThan(2e-4)
    // The detach matters: with the norm differentiated, B's gradient is another one.
    expect(maxAbsDiff(toMatrix(grads[adapter.tensors.loraB.name]!), fd("b", false))).toBeGreaterThan(1e-3)
  })

  it("a training step leaves numTensors unchanged and moves all three tensors", () => {
    const { layer, adapter } = setup()
    const x = randomMatrix(6, 5, 8)
    const step = () =>
      tf.tidy(() => {
        const { grads } = tf.variableGrads(() => tf.sum(tf.square(layer.apply(x, true))) as tf.Scalar)
        for (const param of adapter.parameters()) param.variable.assign(tf.sub(param.variable, tf.mul(grads[param.variable.name]!, 1e-2)))
      })
    step()
    const before = tf.memory().numTensors
    const m0 = adapter.tensors.magnitude.arraySync() as Array<number>
    step()
    expect(tf.memory().numTensors).toBe(before)
    expect(adapter.parameters().map((param) => param.name)).toEqual([`${NAME}.lora_A.weight`, `${NAME}.lora_B.weight`, `${NAME}.lora_magnitude_vector`])
    expect((adapter.tensors.magnitude.arraySync() as Array<number>).some((v, i) => v !== m0[i])).toBe(true)
  })
})

describe("DoRA merge", () => {
  it("merged equals unmerged, W becomes (m / ||W + sBA||) (W + sBA) per row, and unmerge restores W", () => {
    const { layer, set, adapter } = setup()
    const x = randomMatrix(6, 5, 8)
    const w0 = toMatrix(layer.weight)
    const unmerged = toMatrix(layer.apply(x))
    const m = adapter.tensors.magnitude.arraySync() as Array<number>
    const ba = toMatrix(tf.matMul(adapter.tensors.loraB, adapter.tensors.loraA))
    const v = w0.map((row, i) => row.map((value, j) => value + 2 * ba[i]![j]!))
    const expected = v.map((row, i) => {
      const n = Math.sqrt(row.reduce((sum, value) => sum + value * value, 0))
      return row.map((value) => (m[i]! / n) * value)
    })
    set.merge()
    expect(maxAbsDiff(toMatrix(layer.weight), expected)).toBeLessThan(1e-5)
    expect(maxAbsDiff(toMatrix(layer.apply(x)), unmerged)).toBeLessThan(1e-5)
    set.unmerge()
    expect(maxAbsDiff(toMatrix(layer.weight), w0)).toBeLessThan(1e-6)
    expect(maxAbsDiff(toMatrix(layer.apply(x)), unmerged)).toBeLessThan(1e-5)
  })

  it("factors: rowScale (W + b a) is the merged weight (bit for bit as W + (that - W), a chain's replay); reinitialize takes m from the live weight", () => {
    const { layer, set, adapter } = setup()
    const { a, b, rowScale } = adapter.factors!()
    const scaled = tf.mul(tf.reshape(rowScale!, [-1, 1]), tf.add(layer.weight, tf.matMul(b, a)))
    const replayed = toMatrix(tf.add(layer.weight, tf.sub(scaled, layer.weight)))
    set.merge()
    expect(maxAbsDiff(toMatrix(layer.weight), replayed)).toBe(0)
    expect(maxAbsDiff(toMatrix(layer.weight), toMatrix(scaled))).toBeLessThan(1e-6)
    layer.commitMerge()
    adapter.reinitialize(17)
    const norms = toMatrix(layer.weight).map((row) => Math.sqrt(row.reduce((sum, v) => sum + v * v, 0)))
    expect(maxAbsDiff(rows(adapter.tensors.magnitude), [norms])).toBeLessThan(1e-6)
    expect(tf.max(tf.abs(adapter.tensors.loraB)).arraySync()).toBe(0)
  })
})

describe("DoRA files", () => {
  it("saves PEFT's layout (use_dora, lora_magnitude_vector [out]) and loads back to the same outputs; LoRA's format names the dora variant", async () => {
    const { layer, set } = setup(loraConfig({ r: 3, alpha: 6, targetModules: ["q_proj"], rankPattern: { q_proj: 2 } }))
    const x = randomMatrix(6, 5, 8)
    const expected = toMatrix(layer.apply(x))
    const dir = mkdtempSync(join(tmpdir(), "peftkit-dora-"))
    await Effect.runPromise(Effect.provide(saveAdapter(dir, set), NodeFileSystem.layer))
    const json = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG_FILE), "utf8"))
    expect([json.peft_type, json.use_dora, json.r, json.rank_pattern]).toEqual(["LORA", true, 3, { q_proj: 2 }])
    const saved = await Effect.runPromise(Effect.provide(readSafetensors(join(dir, ADAPTER_WEIGHTS_FILE)), NodeFileSystem.layer))
    expect(saved.tensors.map((t) => [t.name, t.shape])).toEqual([
      [`base_model.model.${NAME}.lora_A.weight`, [2, 5]],
      [`base_model.model.${NAME}.lora_B.weight`, [7, 2]],
      [`base_model.model.${NAME}.lora_magnitude_vector`, [7]]
    ])
    const fresh = new Linear(NAME, randomMatrix(7, 5, 1), tf.randomNormal([7], 0, 1, "float32", 2) as tf.Tensor1D)
    const loaded = await Effect.runPromise(Effect.provide(loadAdapter(dir, { linears: () => [fresh] }, [dora, lora]), NodeFileSystem.layer))
    expect(loaded.variant.name).toBe("dora")
    expect(maxAbsDiff(toMatrix(fresh.apply(x)), expected)).toBe(0)
    loaded.remove()
    const error = await Effect.runPromise(Effect.provide(Effect.flip(loadAdapter(dir, { linears: () => [fresh] }, [lora])), NodeFileSystem.layer))
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).field).toBe("adapter_config.use_dora")
    expect((error as ConfigError).message).toContain("`dora` variant")
    expect(fresh.adapter).toBeUndefined()
  })
})
