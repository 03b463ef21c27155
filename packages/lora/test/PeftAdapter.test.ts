import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { AdapterSet, ConfigError, InvalidCheckpoint, InvalidSafetensors, Linear, readSafetensors, ShapeMismatch, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, loadAdapter, saveAdapter } from "@peftkit/core"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Exit } from "effect"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { lora, type LoraAdapter, loraConfig } from "../src/index.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

/** A two-layer Llama-like slice with HF module names. */
const makeModel = (seed = 1) => {
  const layers = [0, 1].flatMap((i) => [
    new Linear(`model.layers.${i}.self_attn.q_proj`, tf.randomNormal([16, 16], 0, 0.2, "float32", seed + 10 * i)),
    new Linear(`model.layers.${i}.self_attn.k_proj`, tf.randomNormal([8, 16], 0, 0.2, "float32", seed + 10 * i + 1)),
    new Linear(`model.layers.${i}.self_attn.v_proj`, tf.randomNormal([8, 16], 0, 0.2, "float32", seed + 10 * i + 2))
  ])
  return { linears: () => layers, layers }
}

const outputs = (model: ReturnType<typeof makeModel>, x: tf.Tensor) => model.layers.map((layer) => Array.from(layer.apply(x).dataSync()))
const tempDir = () => mkdtempSync(join(tmpdir(), "peftkit-peft-"))

const trainedAdapters = () => {
  const model = makeModel()
  const config = loraConfig({ r: 4, alpha: 16, targetModules: ["q_proj", "v_proj"], dropout: 0.05 })
  const adapters = AdapterSet.inject(model, lora, config, { seed: 9 })
  adapters.layers.forEach((layer, i) => (layer.adapter as LoraAdapter).tensors.loraB.assign(tf.randomNormal((layer.adapter as LoraAdapter).tensors.loraB.shape, 0, 0.3, "float32", 100 + i)))
  return { model, config, adapters }
}

describe("PEFT adapter layout", () => {
  it("writes PEFT's key names, shapes, metadata and config", async () => {
    const { adapters } = trainedAdapters()
    const dir = tempDir()
    await Effect.runPromise(Effect.provide(saveAdapter(dir, adapters, { baseModel: "stories260K", taskType: "CAUSAL_LM" }), NodeFileSystem.layer))
    const file = await Effect.runPromise(Effect.provide(readSafetensors(join(dir, ADAPTER_WEIGHTS_FILE)), NodeFileSystem.layer))
    expect(file.metadata).toEqual({ format: "pt" })
    const shapes = Object.fromEntries(file.tensors.map((t) => [t.name, [t.dtype, ...t.shape]]))
    expect(shapes).toEqual({
      "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": ["F32", 4, 16],
      "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": ["F32", 16, 4],
      "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight": ["F32", 4, 16],
      "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight": ["F32", 8, 4],
      "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight": ["F32", 4, 16],
      "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight": ["F32", 16, 4],
      "base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight": ["F32", 4, 16],
      "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight": ["F32", 8, 4]
    })
    const json = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG_FILE), "utf8"))
    expect(json).toMatchObject({
      peft_type: "LORA",
      task_type: "CAUSAL_LM",
      base_model_name_or_path: "stories260K",
      r: 4,
      lora_alpha: 16,
      lora_dropout: 0.05,
      target_modules: ["q_proj", "v_proj"],
      bias: "none",
      use_rslora: false,
      use_dora: false,
      fan_in_fan_out: false,
      init_lora_weights: true,
      modules_to_save: null,
      inference_mode: true
    })
  })

  it("saved then loaded onto a fresh copy of the base model reproduces the outputs exactly", async () => {
    const { model, config, adapters } = trainedAdapters()
    const x = tf.randomNormal([5, 16], 0, 1, "float32", 77)
    const expected = outputs(model, x)
    const dir = tempDir()
    await Effect.runPromise(Effect.provide(saveAdapter(dir, adapters), NodeFileSystem.layer))
    const fresh = makeModel()
    const loaded = await Effect.runPromise(Effect.provide(loadAdapter(dir, fresh, [lora]), NodeFileSystem.layer))
    expect(loaded.layers.map((l) => l.name)).toEqual(adapters.layers.map((l) => l.name))
    expect(loaded.config).toEqual(config)
    expect(outputs(fresh, x)).toEqual(expected)
  })

  it("ignores unknown config keys (as PEFT does) but rejects unsupported features with the field named", async () => {
    const { adapters } = trainedAdapters()
    const dir = tempDir()
    await Effect.runPromise(Effect.provide(saveAdapter(dir, adapters), NodeFileSystem.layer))
    const path = join(dir, ADAPTER_CONFIG_FILE)
    const json = JSON.parse(readFileSync(path, "utf8"))
    writeFileSync(path, JSON.stringify({ ...json, some_future_key: { nested: true }, megatron_config: null }))
    await Effect.runPromise(Effect.provide(loadAdapter(dir, makeModel(), [lora]), NodeFileSystem.layer))
    writeFileSync(path, JSON.stringify({ ...json, use_dora: true }))
    const dora = await Effect.runPromiseExit(Effect.provide(loadAdapter(dir, makeModel(), [lora]), NodeFileSystem.layer))
    expect(dora).toMatchObject({ _tag: "Failure" })
    const error = Exit.isFailure(dora) ? (dora.cause as { error?: unknown }).error : undefined
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).field).toBe("adapter_config.use_dora")
    writeFileSync(path, JSON.stringify({ ...json, r: "four" }))
    const badR = await Effect.runPromise(Effect.provide(Effect.flip(loadAdapter(dir, makeModel(), [lora])), NodeFileSystem.layer))
    expect(badR).toBeInstanceOf(ConfigError)
    expect((badR as ConfigError).field).toBe("adapter_config.r")
  })

  it("a model without the adapted module, a wrong shape, or a corrupt weights file are typed errors, and the model keeps no adapters", async () => {
    const { adapters } = trainedAdapters()
    const dir = tempDir()
    await Effect.runPromise(Effect.provide(saveAdapter(dir, adapters), NodeFileSystem.layer))

    const small = makeModel()
    const onlyFirst = { linears: () => small.layers.slice(0, 3) }
    const missing = await Effect.runPromise(Effect.provide(Effect.flip(loadAdapter(dir, onlyFirst, [lora])), NodeFileSystem.layer))
    expect(missing).toBeInstanceOf(InvalidCheckpoint)
    expect((missing as InvalidCheckpoint).tensor).toBe("model.layers.1.self_attn.q_proj.lora_A.weight")

    const wide = { linears: () => [new Linear("model.layers.0.self_attn.q_proj", tf.zeros([16, 32])), ...small.layers.slice(1)] }
    const mismatch = await Effect.runPromise(Effect.provide(Effect.flip(loadAdapter(dir, wide, [lora])), NodeFileSystem.layer))
    expect(mismatch).toBeInstanceOf(ShapeMismatch)
    expect((mismatch as ShapeMismatch).what).toBe("model.layers.0.self_attn.q_proj.lora_A.weight")
    expect(wide.linears().every((layer) => layer.adapter === undefined)).toBe(true)

    const weights = join(dir, ADAPTER_WEIGHTS_FILE)
    writeFileSync(weights, readFileSync(weights).subarray(0, 100))
    const corrupt = await Effect.runPromise(Effect.provide(Effect.flip(loadAdapter(dir, makeModel(), [lora])), NodeFileSystem.layer))
    expect(corrupt).toBeInstanceOf(InvalidSafetensors)
  })
})
