/**
 * PiSSA as LoRA's `init: "pissa" | "pissa_niter_K"`: the SVD (exact and randomised), the init and
 * its fold out of W, merge/unmerge/disable, the save converted to a plain LoRA of rank 2r (config
 * rules included) that reproduces the trained model on the ORIGINAL base, resume from that file,
 * and the PEFT files PiSSA reads or refuses.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { ADAPTER_CONFIG_FILE, AdapterSet, ConfigError, InvalidCheckpoint, Linear, loadAdapter, readSafetensors, restoreAdapterWeights, Safetensors, saveAdapter } from "@peftkit/core"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Matrix, SingularValueDecomposition } from "ml-matrix"
import { beforeAll, describe, expect, it } from "vitest"
import { dora, fromPeftConfig, lora, type LoraAdapter, loraConfig, type LoraConfig, loraScale, toPeftConfig, topSingularTriplets } from "../src/index.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const run = <A, E>(effect: Effect.Effect<A, E, any>) => Effect.runPromise(Effect.provide(effect, NodeFileSystem.layer) as Effect.Effect<A, E>)
const tempDir = () => mkdtempSync(join(tmpdir(), "peftkit-pissa-"))
const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!)

/** A float64 reference SVD (ml-matrix) of a tensor. */
const referenceSvd = (w: tf.Tensor2D) => {
  const [rows, cols] = w.shape
  return new SingularValueDecomposition(Matrix.from1DArray(rows, cols, Array.from(w.dataSync())), { autoTranspose: true })
}

/** W = U diag(s) V^T with a chosen spectrum (orthonormal U, V from QR of seeded noise). */
const withSpectrum = (out: number, inF: number, spectrum: ReadonlyArray<number>, seed: number): tf.Tensor2D =>
  tf.tidy(() => {
    const k = spectrum.length
    const [u] = tf.linalg.qr(tf.randomNormal([out, k], 0, 1, "float32", seed))
    const [v] = tf.linalg.qr(tf.randomNormal([inF, k], 0, 1, "float32", seed + 1))
    return tf.matMul(tf.mul(u!, tf.tensor1d([...spectrum])), v!, false, true) as tf.Tensor2D
  })

/** sin of the largest principal angle between the column spans of two orthonormal [n, r] bases. */
const subspaceGap = (p: tf.Tensor2D, q: tf.Tensor2D) =>
  tf.tidy(() => {
    const cosines = referenceSvd(tf.matMul(p, q, true, false) as tf.Tensor2D).diagonal
    return Math.sqrt(Math.max(0, 1 - Math.min(...cosines) ** 2))
  })

/** `topSingularTriplets` in a tidy scope: the tensors survive it, the singular values are plain numbers. */
const svdOf = (w: tf.Tensor2D, r: number, options: { niter?: number; seed?: number } = {}) => {
  let s: ReadonlyArray<number> = []
  const [u, v] = tf.tidy(() => {
    const triplets = topSingularTriplets(w, r, options)
    s = triplets.s
    return [triplets.u, triplets.v]
  })
  return { u: u as tf.Tensor2D, v: v as tf.Tensor2D, s }
}

describe("topSingularTriplets", () => {
  it.each([[24, 16], [16, 24]])("exact: W's top-r singular values and vectors on a %ix%i weight (float64 reference)", (out, inF) => {
    const w = tf.randomNormal([out, inF], 0, 1, "float32", 7) as tf.Tensor2D
    const reference = referenceSvd(w)
    const { u, s, v } = svdOf(w, 4)
    s.forEach((value, k) => expect(Math.abs(value - reference.diagonal[k]!)).toBeLessThan(1e-4 * reference.diagonal[0]!))
    // Each pair up to its sign: |<u_k, u_ref_k>| = 1.
    for (let k = 0; k < 4; k++) {
      const ref = (m: Matrix) => tf.tensor1d(m.getColumn(k))
      const cosU = Math.abs(tf.sum(tf.mul(tf.squeeze(tf.slice(u, [0, k], [out, 1])), ref(reference.leftSingularVectors))).dataSync()[0]!)
      const cosV = Math.abs(tf.sum(tf.mul(tf.squeeze(tf.slice(v, [0, k], [inF, 1])), ref(reference.rightSingularVectors))).dataSync()[0]!)
      expect(cosU).toBeGreaterThan(1 - 1e-5)
      expect(cosV).toBeGreaterThan(1 - 1e-5)
    }
    tf.dispose([w, u, v])
  })

  // With q = r (PEFT's call) the error shrinks about as (s_5 / s_4)^(2K + 1): 0.6^13 ~ 1e-3 at K = 6.
  it("randomised (niter 0, 2, 6): the top-4 subspace of a decaying spectrum closes in on the exact one", () => {
    const spectrum = Array.from({ length: 32 }, (_, k) => 10 * 0.6 ** k)
    const w = withSpectrum(64, 48, spectrum, 3)
    const exact = svdOf(w, 4)
    const gaps = [0, 2, 6].map((niter) => {
      const approx = svdOf(w, 4, { niter, seed: 11 })
      const gap = Math.max(subspaceGap(approx.u, exact.u), subspaceGap(approx.v, exact.v))
      tf.dispose([approx.u, approx.v])
      return gap
    })
    console.log(`randomised SVD, sin of the largest angle to the exact top-4 subspace: niter 0/2/6 = ${gaps.map((g) => g.toExponential(2)).join(" / ")}`)
    expect(gaps[1]!).toBeLessThan(gaps[0]!)
    expect(gaps[2]!).toBeLessThan(gaps[1]!)
    expect(gaps[2]!).toBeLessThan(0.01)
    tf.dispose([w, exact.u, exact.v])
  })

  it("is reproducible from its seed", () => {
    const w = tf.randomNormal([20, 12], 0, 1, "float32", 5) as tf.Tensor2D
    const [a, b] = [1, 1].map(() => svdOf(w, 3, { niter: 1, seed: 9 }))
    expect(maxDiff(a!.u, b!.u)).toBe(0)
    expect(a!.s).toEqual(b!.s)
  })
})

const NAME = "model.layers.0.self_attn.q_proj"

const setup = (config: LoraConfig, out = 12, inF = 10, seed = 1) => {
  const original = tf.randomNormal([out, inF], 0, 1, "float32", seed) as tf.Tensor2D
  const bias = tf.randomNormal([out], 0, 1, "float32", seed + 1) as tf.Tensor1D
  const layer = new Linear(NAME, original, bias)
  const model = { linears: () => [layer] }
  const x = tf.randomNormal([5, inF], 0, 1, "float32", seed + 2) as tf.Tensor2D
  const baseOut = layer.apply(x)
  const set = AdapterSet.inject(model, lora, config, { seed: 4 })
  const adapter = layer.adapter as LoraAdapter
  return { layer, model, x, original, bias, baseOut, set, adapter }
}

/** "Training": moves A and B away from their init (what the conversion must capture). */
const train = (adapter: LoraAdapter, seed = 20) =>
  tf.tidy(() => {
    adapter.tensors.loraA.assign(tf.add(adapter.tensors.loraA, tf.randomNormal(adapter.tensors.loraA.shape, 0, 0.3, "float32", seed)))
    adapter.tensors.loraB.assign(tf.add(adapter.tensors.loraB, tf.randomNormal(adapter.tensors.loraB.shape, 0, 0.3, "float32", seed + 1)))
  })

describe("PiSSA init", () => {
  it.each(["pissa", "pissa_niter_4"] as const)("%s: s B A is the top-r SVD part, W holds the residual, and the output at init is the base output", (init) => {
    const config = loraConfig({ r: 3, alpha: 6, init, targetModules: ["q_proj"] })
    const { layer, x, original, baseOut, adapter } = setup(config)
    const scale = loraScale(config, NAME)
    const part = tf.matMul(tf.mul(adapter.tensors.loraB, scale), adapter.tensors.loraA)
    expect(maxDiff(tf.add(layer.weight, part), original)).toBeLessThan(1e-5)
    expect(maxDiff(layer.apply(x), baseOut)).toBeLessThan(1e-5)
    // A = sqrt(S/s) V^T: the rows of A are orthogonal with squared norms S_k / s (PEFT's pissa_init).
    const reference = referenceSvd(original)
    const gram = tf.matMul(adapter.tensors.loraA, adapter.tensors.loraA, false, true).arraySync() as Array<Array<number>>
    gram.forEach((row, i) => row.forEach((value, j) => expect(Math.abs(value - (i === j ? reference.diagonal[i]! / scale : 0))).toBeLessThan(init === "pissa" ? 1e-4 : 0.3 * reference.diagonal[0]! / scale)))
    if (init === "pissa") {
      const top = tf.tidy(() => {
        const u = tf.tensor2d(reference.leftSingularVectors.subMatrix(0, 11, 0, 2).to2DArray())
        const v = tf.tensor2d(reference.rightSingularVectors.subMatrix(0, 9, 0, 2).to2DArray())
        return tf.matMul(tf.mul(u, tf.tensor1d(reference.diagonal.slice(0, 3))), v, false, true)
      })
      expect(maxDiff(part, top)).toBeLessThan(1e-5)
    }
  })

  it("a wide layer, rsLoRA and a rank pattern: the module's own rank and scale", () => {
    const config = loraConfig({ r: 2, alpha: 3, useRslora: true, rankPattern: { q_proj: 4 }, init: "pissa", targetModules: ["q_proj"] })
    const { layer, x, original, baseOut, adapter } = setup(config, 6, 14)
    expect(adapter.tensors.loraA.shape).toEqual([4, 14])
    expect(maxDiff(tf.add(layer.weight, tf.matMul(tf.mul(adapter.tensors.loraB, 3 / 2), adapter.tensors.loraA)), original)).toBeLessThan(1e-5)
    expect(maxDiff(layer.apply(x), baseOut)).toBeLessThan(1e-5)
  })

  it("merge / unmerge round trip; disabled is the model before the adapter; remove restores W", () => {
    const { layer, set, x, original, baseOut, adapter } = setup(loraConfig({ r: 2, alpha: 4, init: "pissa", targetModules: ["q_proj"] }))
    train(adapter)
    const residual = layer.weight.clone()
    const adapted = layer.apply(x)
    set.merge()
    expect(maxDiff(layer.apply(x), adapted)).toBeLessThan(1e-5)
    set.unmerge()
    expect(maxDiff(layer.weight, residual)).toBeLessThan(1e-6)
    expect(maxDiff(layer.apply(x), adapted)).toBeLessThan(1e-6)
    set.disable()
    expect(maxDiff(layer.apply(x), baseOut)).toBeLessThan(1e-5)
    set.enable()
    set.remove()
    expect(maxDiff(layer.weight, original)).toBeLessThan(1e-6)
  })

  it("a stepped merge (XGBLoRA's) moves W by the step times the net update s (B A - B0 A0), and unmerges exactly", () => {
    const { layer, set, original, adapter } = setup(loraConfig({ r: 2, alpha: 4, init: "pissa", targetModules: ["q_proj"] }))
    const initialA = adapter.tensors.loraA.clone()
    const initialB = adapter.tensors.loraB.clone()
    train(adapter)
    const residual = layer.weight.clone()
    set.merge(0.25)
    const net = tf.sub(tf.matMul(adapter.tensors.loraB, adapter.tensors.loraA), tf.matMul(initialB, initialA))
    expect(maxDiff(layer.weight, tf.add(original, tf.mul(net, 0.25 * 2)))).toBeLessThan(1e-5)
    set.unmerge()
    expect(maxDiff(layer.weight, residual)).toBeLessThan(1e-6)
  })

  it("factors are the net update [sB, -sB0] [A; A0] of rank 2r; a re-initialisation refolds from the merged weight", () => {
    const config = loraConfig({ r: 2, alpha: 4, init: "pissa", targetModules: ["q_proj"] })
    const { layer, x, original, adapter } = setup(config)
    train(adapter)
    const adapted = layer.apply(x)
    const { a, b } = adapter.factors!()
    expect(a.shape).toEqual([4, 10])
    expect(b.shape).toEqual([12, 4])
    expect(maxDiff(tf.add(original, tf.matMul(b, a)), tf.add(layer.weight, adapter.delta(layer)))).toBeLessThan(1e-5)
    // A COLA knot: commit the merge, start the next link from the merged weight.
    layer.commitMerge()
    const merged = layer.weight.clone()
    layer.reinitializeAdapter(99)
    expect(maxDiff(layer.apply(x), adapted)).toBeLessThan(1e-5)
    const part = tf.matMul(tf.mul(adapter.tensors.loraB, 2), adapter.tensors.loraA)
    expect(maxDiff(tf.add(layer.weight, part), merged)).toBeLessThan(1e-5)
    const top = referenceSvd(merged).diagonal
    expect(Math.abs((tf.matMul(adapter.tensors.loraA, adapter.tensors.loraA, false, true).arraySync() as Array<Array<number>>)[0]![0]! - top[0]! / 2)).toBeLessThan(1e-4)
  })

  it("numTensors: unchanged across a training step, and after inject + merge + unmerge + remove", () => {
    const { layer, set, x, adapter } = setup(loraConfig({ r: 2, alpha: 4, init: "pissa_niter_2", targetModules: ["q_proj"] }))
    const y = tf.randomNormal([5, 12], 0, 1, "float32", 30)
    const step = () =>
      tf.tidy(() => {
        const { grads } = tf.variableGrads(() => tf.losses.meanSquaredError(y, layer.apply(x, true)) as tf.Scalar, set.parameters().map((p) => p.variable))
        for (const param of set.parameters()) param.variable.assign(tf.sub(param.variable, tf.mul(grads[param.variable.name]!, 0.1)))
      })
    step()
    const before = tf.memory().numTensors
    step()
    expect(tf.memory().numTensors).toBe(before)
    expect(adapter.tensors.loraA.shape).toEqual([2, 10])
    set.remove()
    const model = { linears: () => [layer] }
    const settled = tf.memory().numTensors
    const again = AdapterSet.inject(model, lora, loraConfig({ r: 2, alpha: 4, init: "pissa", targetModules: ["q_proj"] }), { seed: 1 })
    again.merge()
    again.unmerge()
    again.remove()
    expect(tf.memory().numTensors).toBe(settled)
  })

  it("refuses a rank above min(in, out), a non-positive scale, and DoRA", () => {
    const layer = new Linear(NAME, tf.randomNormal([4, 6], 0, 1, "float32", 1))
    const model = { linears: () => [layer] }
    expect(() => AdapterSet.inject(model, lora, loraConfig({ r: 5, init: "pissa", targetModules: ["q_proj"] }), { seed: 1 })).toThrow(ConfigError)
    expect(() => AdapterSet.inject(model, lora, loraConfig({ r: 2, alpha: -1, init: "pissa", targetModules: ["q_proj"] }), { seed: 1 })).toThrow(ConfigError)
    expect(() => AdapterSet.inject(model, dora, loraConfig({ r: 2, init: "pissa", targetModules: ["q_proj"] }), { seed: 1 })).toThrow(/not supported with DoRA/)
    expect(() => loraConfig({ init: "pissa_niter_x" as never })).toThrow(ConfigError)
    expect(loraConfig({ init: "pissa_niter_16" }).init).toBe("pissa_niter_16")
  })
})

describe("PiSSA save: a plain LoRA of rank 2r on the original base (PEFT's path_initial_model_for_weight_conversion)", () => {
  it("config: r, lora_alpha and the patterns doubled (rsLoRA: alphas times sqrt 2), init_lora_weights true", () => {
    const plain = toPeftConfig(loraConfig({ r: 4, alpha: 8, init: "pissa", rankPattern: { q_proj: 2 }, alphaPattern: { v_proj: 3 } }))
    expect([plain.r, plain.lora_alpha, plain.init_lora_weights, plain.rank_pattern, plain.alpha_pattern]).toEqual([8, 16, true, { q_proj: 4 }, { v_proj: 6 }])
    const rs = toPeftConfig(loraConfig({ r: 4, alpha: 8, useRslora: true, init: "pissa_niter_4", alphaPattern: { v_proj: 3 } }))
    expect([rs.r, rs.lora_alpha, rs.alpha_pattern]).toEqual([8, 8 * 2 ** 0.5, { v_proj: 3 * 2 ** 0.5 }])
    // The scale of every module is the same after the conversion.
    for (const config of [loraConfig({ r: 4, alpha: 8, init: "pissa", rankPattern: { q_proj: 2 }, alphaPattern: { q_proj: 3 } }), loraConfig({ r: 4, alpha: 8, useRslora: true, init: "pissa", rankPattern: { q_proj: 2 }, alphaPattern: { q_proj: 3 } })]) {
      const converted = Effect.runSync(fromPeftConfig(toPeftConfig(config)))
      expect(converted.init).toBe("kaiming")
      expect(Math.abs(loraScale(converted, NAME) - loraScale(config, NAME))).toBeLessThan(1e-12)
    }
  })

  it.each(["pissa", "pissa_niter_3"] as const)("%s: the file is [A; A0], [B, -B0] and, loaded as LoRA on the original base, gives the trained model (1e-5)", async (init) => {
    const config = loraConfig({ r: 2, alpha: 4, init, targetModules: ["q_proj"] })
    const { layer, x, set, adapter } = setup(config)
    const a0 = adapter.tensors.loraA.clone()
    const b0 = adapter.tensors.loraB.clone()
    train(adapter)
    const trained = layer.apply(x)
    const dir = tempDir()
    await run(saveAdapter(dir, set))
    const json = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG_FILE), "utf8"))
    expect([json.r, json.lora_alpha, json.init_lora_weights]).toEqual([4, 8, true])
    const file = await run(readSafetensors(join(dir, "adapter_model.safetensors")))
    const tensor = (suffix: string) => Safetensors.toTensor(file.tensors.find((t) => t.name.endsWith(suffix))!)
    expect(maxDiff(tensor("lora_A.weight"), tf.concat([adapter.tensors.loraA, a0], 0))).toBe(0)
    expect(maxDiff(tensor("lora_B.weight"), tf.concat([adapter.tensors.loraB, tf.neg(b0)], 1))).toBe(0)
    // The original base, a fresh model: the converted file is a plain LoRA.
    const fresh = new Linear(NAME, tf.randomNormal([12, 10], 0, 1, "float32", 1), tf.randomNormal([12], 0, 1, "float32", 2) as tf.Tensor1D)
    const loaded = await run(loadAdapter(dir, { linears: () => [fresh] }, [lora]))
    expect(loaded.config.init).toBe("kaiming")
    expect(loaded.config.r).toBe(4)
    expect(maxDiff(fresh.apply(x), trained)).toBeLessThan(1e-5)
  })

  it("resume: restoring the saved file into a fresh PiSSA run on the original base gives the trained model; another init is refused", async () => {
    const config = loraConfig({ r: 2, alpha: 4, init: "pissa_niter_2", targetModules: ["q_proj"] })
    const first = setup(config)
    train(first.adapter)
    const trained = first.layer.apply(first.x)
    const dir = tempDir()
    await run(saveAdapter(dir, first.set))
    const second = setup(config)
    await run(restoreAdapterWeights(dir, second.set))
    expect(maxDiff(second.layer.apply(second.x), trained)).toBeLessThan(1e-5)
    expect(maxDiff(second.adapter.tensors.loraA, first.adapter.tensors.loraA)).toBe(0)
    // Another base weight: another A0, B0 than the file's second half.
    const other = setup(config, 12, 10, 50)
    const failure = await Effect.runPromise(Effect.either(Effect.provide(restoreAdapterWeights(dir, other.set), NodeFileSystem.layer)))
    expect(failure._tag).toBe("Left")
    expect(failure._tag === "Left" && failure.left).toBeInstanceOf(InvalidCheckpoint)
  })
})

describe("PEFT's unconverted PiSSA files", () => {
  const peftJson = (init: unknown, extra: Record<string, unknown> = {}) => ({ peft_type: "LORA", r: 2, lora_alpha: 4, target_modules: ["q_proj"], init_lora_weights: init, ...extra })

  it("exact 'pissa' reads as init pissa (the residual is recomputed from the base, as PEFT's loader does)", () => {
    expect(Effect.runSync(fromPeftConfig(peftJson("pissa"))).init).toBe("pissa")
  })

  it.each(["pissa_niter_4", "olora", "corda", "loftq"])("'%s' is a ConfigError naming init_lora_weights", (init) => {
    const result = Effect.runSync(Effect.either(fromPeftConfig(peftJson(init))))
    expect(result._tag).toBe("Left")
    if (result._tag === "Left") expect(result.left.field).toBe("adapter_config.init_lora_weights")
  })

  it("'pissa' with use_dora is refused", () => {
    const result = Effect.runSync(Effect.either(fromPeftConfig(peftJson("pissa", { use_dora: true }), { dora: true })))
    expect(result._tag).toBe("Left")
  })
})
