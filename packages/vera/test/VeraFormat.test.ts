import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, AdapterSet, ConfigError, InvalidCheckpoint, Linear, loadAdapter, readSafetensors, Safetensors, saveAdapter, ShapeMismatch } from "@peftkit/core"
import { lora, loraConfig } from "@peftkit/lora"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Exit } from "effect"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { fromPeftConfig, vera, type VeraAdapter, veraConfig } from "../src/index.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const run = <A, E>(effect: Effect.Effect<A, E, any>) => Effect.runPromise(Effect.provide(effect, NodeFileSystem.layer) as Effect.Effect<A, E>)
const runExit = <A, E>(effect: Effect.Effect<A, E, any>) => Effect.runPromiseExit(Effect.provide(effect, NodeFileSystem.layer) as Effect.Effect<A, E>)
const tempDir = () => mkdtempSync(join(tmpdir(), "peftkit-vera-"))
const failure = (exit: Exit.Exit<unknown, unknown>) => (Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined)

/** A Llama-like slice: q [16, 16], v [8, 16] per block; `order` gives q_proj a PEFT row order (as a llama2.c model has). */
const makeModel = (order?: ReadonlyArray<number>, permuteWeights = false) => {
  const inverse = order === undefined ? undefined : order.map((_, j) => order.indexOf(j))
  const layers = [0, 1].flatMap((i) => {
    const q = tf.randomNormal([16, 16], 0, 0.2, "float32", 10 * i + 1)
    // The model keeps q's rows so that file (HF) row k is model row order[k]: model row j = HF row inverse[j].
    const qModel = permuteWeights && inverse !== undefined ? tf.gather(q, inverse) : q
    return [new Linear(`model.layers.${i}.self_attn.q_proj`, qModel as tf.Tensor2D), new Linear(`model.layers.${i}.self_attn.v_proj`, tf.randomNormal([8, 16], 0, 0.2, "float32", 10 * i + 2))]
  })
  return {
    layers,
    linears: () => layers,
    ...(order === undefined ? {} : { peftRowOrder: (name: string) => (name.endsWith("q_proj") ? order : undefined) })
  }
}

const trained = (model: ReturnType<typeof makeModel>) => {
  const set = AdapterSet.inject(model, vera, veraConfig({ r: 4, projectionPrngKey: 5, targetModules: ["q_proj", "v_proj"] }), { seed: 2 })
  set.entries.forEach(({ adapter }, i) => {
    const { lambdaB, lambdaD } = (adapter as VeraAdapter).tensors
    lambdaB.assign(tf.randomNormal(lambdaB.shape, 0, 1, "float32", 60 + i))
    lambdaD.assign(tf.randomNormal(lambdaD.shape, 0, 1, "float32", 70 + i))
  })
  return set
}

const outputs = (model: ReturnType<typeof makeModel>, x: tf.Tensor) => tf.tidy(() => model.layers.map((layer) => Array.from(layer.apply(x).dataSync())))
const maxDiff = (a: Array<Array<number>>, b: Array<Array<number>>) => Math.max(...a.flatMap((row, i) => row.map((v, j) => Math.abs(v - b[i]![j]!))))

describe("VeRA's PEFT files", () => {
  it("writes PEFT's keys (the shared projections once, at the top level) and config, and loads back to the same outputs", async () => {
    const model = makeModel()
    const set = trained(model)
    const dir = tempDir()
    await run(saveAdapter(dir, set, { taskType: "CAUSAL_LM" }))
    const file = await run(readSafetensors(join(dir, ADAPTER_WEIGHTS_FILE)))
    expect(file.metadata).toEqual({ format: "pt" })
    expect(Object.fromEntries(file.tensors.map((t) => [t.name, t.shape]))).toEqual({
      "base_model.model.model.layers.0.self_attn.q_proj.vera_lambda_b": [16],
      "base_model.model.model.layers.0.self_attn.q_proj.vera_lambda_d": [4],
      "base_model.model.model.layers.0.self_attn.v_proj.vera_lambda_b": [8],
      "base_model.model.model.layers.0.self_attn.v_proj.vera_lambda_d": [4],
      "base_model.model.model.layers.1.self_attn.q_proj.vera_lambda_b": [16],
      "base_model.model.model.layers.1.self_attn.q_proj.vera_lambda_d": [4],
      "base_model.model.model.layers.1.self_attn.v_proj.vera_lambda_b": [8],
      "base_model.model.model.layers.1.self_attn.v_proj.vera_lambda_d": [4],
      "base_model.vera_A": [4, 16],
      "base_model.vera_B": [16, 4]
    })
    const json = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG_FILE), "utf8"))
    expect(json).toMatchObject({ peft_type: "VERA", r: 4, projection_prng_key: 5, save_projection: true, vera_dropout: 0, d_initial: 0.1, target_modules: ["q_proj", "v_proj"], bias: "none", task_type: "CAUSAL_LM" })

    const fresh = makeModel()
    const start = tf.memory().numTensors
    const loaded = await run(loadAdapter(dir, fresh, [lora, vera]))
    expect(loaded.variant.name).toBe("vera")
    expect(tf.memory().numTensors - start).toBe(2 + 4 * 2)
    const x = tf.randomNormal([3, 16], 0, 1, "float32", 4)
    expect(outputs(fresh, x)).toEqual(outputs(model, x))
    loaded.remove()
    expect(tf.memory().numTensors - start).toBe(1)
    set.remove()
  })

  it("dispatch: loadAdapter(dir, model, [vera, lora]) loads a LoRA directory as LoRA and a VeRA one as VeRA", async () => {
    const loraDir = tempDir()
    const veraDir = tempDir()
    const a = makeModel()
    const loraSet = AdapterSet.inject(a, lora, loraConfig({ r: 2, targetModules: ["v_proj"] }), { seed: 1 })
    await run(saveAdapter(loraDir, loraSet))
    loraSet.remove()
    const veraSet = trained(a)
    await run(saveAdapter(veraDir, veraSet))
    veraSet.remove()
    const b = makeModel()
    const asLora = await run(loadAdapter(loraDir, b, [vera, lora]))
    expect([asLora.variant.name, JSON.parse(readFileSync(join(loraDir, ADAPTER_CONFIG_FILE), "utf8")).peft_type]).toEqual(["lora", "LORA"])
    asLora.remove()
    const asVera = await run(loadAdapter(veraDir, b, [vera, lora]))
    expect(asVera.variant.name).toBe("vera")
    asVera.remove()
  })

  it("refuses a vera_A of the wrong shape or a missing vera_B before allocating anything, leaving the model bare", async () => {
    const source = tempDir()
    const set = trained(makeModel())
    await run(saveAdapter(source, set))
    set.remove()
    const file = await run(readSafetensors(join(source, ADAPTER_WEIGHTS_FILE)))
    const rewrite = (edit: (inputs: Array<Safetensors.TensorInput>) => Array<Safetensors.TensorInput>) => {
      const dir = tempDir()
      writeFileSync(join(dir, ADAPTER_CONFIG_FILE), readFileSync(join(source, ADAPTER_CONFIG_FILE)))
      const inputs = file.tensors.map((t) => ({ name: t.name, dtype: "F32" as const, shape: [...t.shape], data: Safetensors.toFloat32(t) }))
      writeFileSync(join(dir, ADAPTER_WEIGHTS_FILE), Safetensors.encode(edit(inputs), { format: "pt" }))
      return dir
    }
    const wrongA = rewrite((inputs) => inputs.map((t) => (t.name === "base_model.vera_A" ? { ...t, shape: [4, 12], data: t.data.slice(0, 48) } : t)))
    const noB = rewrite((inputs) => inputs.filter((t) => t.name !== "base_model.vera_B"))
    const model = makeModel()
    const start = tf.memory().numTensors
    const a = failure(await runExit(loadAdapter(wrongA, model, [vera])))
    expect(a).toBeInstanceOf(ShapeMismatch)
    expect(a).toMatchObject({ what: "base_model.vera_A", expected: [4, 16], actual: [4, 12] })
    const b = failure(await runExit(loadAdapter(noB, model, [vera])))
    expect(b).toBeInstanceOf(InvalidCheckpoint)
    expect(b).toMatchObject({ tensor: "base_model.vera_B" })
    expect(tf.memory().numTensors).toBe(start)
    expect(model.layers.every((layer) => layer.adapter === undefined)).toBe(true)
  })

  it("reads PEFT's config: unknown keys ignored, unsupported ones refused naming the key", async () => {
    const base = { peft_type: "VERA", r: 8, target_modules: ["q_proj"], some_future_key: { x: 1 }, init_weights: true }
    const config = await Effect.runPromise(fromPeftConfig(base))
    expect(config).toEqual({ r: 8, projectionPrngKey: 0, saveProjection: true, dropout: 0, dInitial: 0.1, targetModules: ["q_proj"] })
    const field = async (json: Record<string, unknown>) => {
      const exit = await Effect.runPromiseExit(fromPeftConfig({ ...base, ...json }))
      const error = failure(exit)
      expect(error).toBeInstanceOf(ConfigError)
      return (error as ConfigError).field
    }
    expect(await field({ fan_in_fan_out: true })).toBe("adapter_config.fan_in_fan_out")
    expect(await field({ bias: "vera_only" })).toBe("adapter_config.bias")
    expect(await field({ modules_to_save: ["lm_head"] })).toBe("adapter_config.modules_to_save")
    expect(await field({ layers_to_transform: [0] })).toBe("adapter_config.layers_to_transform")
    expect(await field({ r: 20000 })).toBe("adapter_config.r")
    expect(await field({ projection_prng_key: 1.5 })).toBe("adapter_config.projectionPrngKey")
  })

  it("on a model with a PEFT row order (llama2.c q/k), lambda_b is permuted in the file and vera_B gathered per layer: outputs match the HF-order model's", async () => {
    const order = [0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15]
    const inverse = order.map((_, j) => order.indexOf(j))
    const hf = makeModel()
    const hfSet = trained(hf)
    const dir = tempDir()
    await run(saveAdapter(dir, hfSet))
    // The same weights with q's rows in the model's order; the HF file loads onto it.
    const permuted = makeModel(order, true)
    const loaded = await run(loadAdapter(dir, permuted, [vera]))
    const x = tf.randomNormal([3, 16], 0, 1, "float32", 5)
    const expected = outputs(hf, x).map((row, i) => (i % 2 === 0 ? Array.from(tf.gather(tf.tensor2d(row, [3, 16]), inverse, 1).dataSync()) : row))
    expect(maxDiff(outputs(permuted, x), expected)).toBeLessThan(1e-6)
    // Saved again from the permuted model: the file is the HF-order file, value for value.
    const again = tempDir()
    await run(saveAdapter(again, loaded))
    const [first, second] = await Promise.all([dir, again].map((d) => run(readSafetensors(join(d, ADAPTER_WEIGHTS_FILE)))))
    const values = (file: typeof first) => Object.fromEntries(file!.tensors.map((t) => [t.name, Array.from(Safetensors.toFloat32(t))]))
    expect(values(second)).toEqual(values(first))
    // Merged on the permuted model: the same outputs.
    loaded.merge()
    expect(maxDiff(outputs(permuted, x), expected)).toBeLessThan(1e-5)
    loaded.remove()
    hfSet.remove()
  })
})
