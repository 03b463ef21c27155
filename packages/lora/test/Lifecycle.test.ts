/** Adapter lifecycle: no tensor leaks, dropout semantics, exact-name loading, saved target_modules. */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { AdapterSet, ConfigError, Linear, ADAPTER_CONFIG_FILE, loadAdapter, saveAdapter, ShapeMismatch } from "@peftkit/core"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { lora, type LoraAdapter, loraConfig } from "../src/index.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const tempDir = () => mkdtempSync(join(tmpdir(), "peftkit-life-"))

describe("no leaks", () => {
  it("inject then remove, ten times, leaves numTensors unchanged", () => {
    const layer = new Linear("fc", tf.zeros([16, 16]))
    const model = { linears: () => [layer] }
    const before = tf.memory().numTensors
    for (let i = 0; i < 10; i++) AdapterSet.inject(model, lora, loraConfig({ r: 4, targetModules: ["fc"] }), { seed: i }).remove()
    expect(tf.memory().numTensors).toBe(before)
  })

  it("merge, unmerge and a save/load round trip leave numTensors unchanged", async () => {
    const layer = new Linear("fc", tf.randomNormal([8, 8], 0, 1, "float32", 1))
    const model = { linears: () => [layer] }
    const set = AdapterSet.inject(model, lora, loraConfig({ r: 2, targetModules: ["fc"] }), { seed: 1 })
    const dir = tempDir()
    await Effect.runPromise(Effect.provide(saveAdapter(dir, set), NodeFileSystem.layer))
    set.remove()
    const before = tf.memory().numTensors
    const loaded = await Effect.runPromise(Effect.provide(loadAdapter(dir, model, [lora]), NodeFileSystem.layer))
    loaded.merge()
    loaded.unmerge()
    loaded.remove()
    expect(tf.memory().numTensors).toBe(before)
  })
})

describe("dropout", () => {
  const setup = (dropout: number) => {
    const layer = new Linear("fc", tf.randomNormal([32, 64], 0, 1, "float32", 1))
    AdapterSet.inject({ linears: () => [layer] }, lora, loraConfig({ r: 4, alpha: 4, dropout, targetModules: ["fc"] }), { seed: 3 })
    const adapter = layer.adapter as LoraAdapter
    adapter.tensors.loraB.assign(tf.randomNormal([32, 4], 0, 1, "float32", 2))
    return { layer, adapter }
  }

  it("applies only on the adapter path, only in training, scaled by 1/(1-p)", () => {
    const { layer, adapter } = setup(0.5)
    // A and B select input coordinates 0..3 into outputs 0..3, so the adapter part IS the dropped input.
    adapter.tensors.loraA.assign(tf.concat([tf.eye(4), tf.zeros([4, 60])], 1) as tf.Tensor2D)
    adapter.tensors.loraB.assign(tf.concat([tf.eye(4), tf.zeros([28, 4])], 0) as tf.Tensor2D)
    const x = tf.ones([256, 64]) as tf.Tensor2D
    const base = tf.matMul(x, layer.weight, false, true)
    const evalPart = Array.from(tf.slice(tf.sub(layer.apply(x, false), base), [0, 0], [256, 4]).dataSync())
    expect(evalPart.every((v) => Math.abs(v - 1) < 1e-5)).toBe(true)
    const trainPart = Array.from(tf.slice(tf.sub(layer.apply(x, true), base), [0, 0], [256, 4]).dataSync())
    expect(trainPart.every((v) => Math.abs(v) < 1e-5 || Math.abs(v - 2) < 1e-5)).toBe(true)
    const zeros = trainPart.filter((v) => Math.abs(v) < 1e-5).length / trainPart.length
    expect(zeros).toBeGreaterThan(0.4)
    expect(zeros).toBeLessThan(0.6)
    // The base path (outputs 4..31) never sees dropout.
    expect(Math.max(...Array.from(tf.slice(tf.abs(tf.sub(layer.apply(x, true), base)), [0, 4], [256, 28]).dataSync()))).toBe(0)
  })

  it("masks are seeded: same seed and call count, same mask; restoring the random state replays it", () => {
    const first = setup(0.3)
    const second = setup(0.3)
    const x = tf.randomNormal([4, 64], 0, 1, "float32", 9) as tf.Tensor2D
    expect(Array.from(first.layer.apply(x, true).dataSync())).toEqual(Array.from(second.layer.apply(x, true).dataSync()))
    const state = first.adapter.randomState()
    const next = Array.from(first.layer.apply(x, true).dataSync())
    second.adapter.setRandomState([...state])
    expect(Array.from(second.layer.apply(x, true).dataSync())).toEqual(next)
  })
})

describe("PEFT files and target modules", () => {
  it("the saved target_modules is what the adapters were injected with, not the config default", async () => {
    const layer = new Linear("mlp.fc1", tf.zeros([4, 4]))
    const set = AdapterSet.inject({ linears: () => [layer] }, lora, loraConfig({ r: 2, targetModules: ["fc1"] }), { seed: 1 })
    const dir = tempDir()
    await Effect.runPromise(Effect.provide(saveAdapter(dir, set), NodeFileSystem.layer))
    expect(JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG_FILE), "utf8")).target_modules).toEqual(["fc1"])
  })

  it("loading injects into exactly the modules in the file, not their dotted-suffix namesakes", async () => {
    const fc = new Linear("fc", tf.zeros([4, 4]))
    const dir = tempDir()
    const set = AdapterSet.inject({ linears: () => [fc] }, lora, loraConfig({ r: 2, targetModules: ["fc"] }), { seed: 1 })
    await Effect.runPromise(Effect.provide(saveAdapter(dir, set), NodeFileSystem.layer))
    const layers = [new Linear("fc", tf.zeros([4, 4])), new Linear("block.fc", tf.zeros([4, 4]))]
    const loaded = await Effect.runPromise(Effect.provide(loadAdapter(dir, { linears: () => layers }, [lora]), NodeFileSystem.layer))
    expect(loaded.layers.map((l) => l.name)).toEqual(["fc"])
    expect(layers[1]!.adapter).toBeUndefined()
  })

  it("a rank_pattern the file's shapes contradict, a pattern key that is no regex and base-modifying inits are refused, naming the module or field", async () => {
    const fc = new Linear("fc", tf.zeros([4, 4]))
    const dir = tempDir()
    const set = AdapterSet.inject({ linears: () => [fc] }, lora, loraConfig({ r: 2, targetModules: ["fc"] }), { seed: 1 })
    await Effect.runPromise(Effect.provide(saveAdapter(dir, set), NodeFileSystem.layer))
    set.remove()
    const path = join(dir, ADAPTER_CONFIG_FILE)
    const json = JSON.parse(readFileSync(path, "utf8"))
    const load = () => Effect.runPromise(Effect.provide(Effect.flip(loadAdapter(dir, { linears: () => [fc] }, [lora])), NodeFileSystem.layer))
    // The pattern gives fc rank 4, the file has rank 2: core's per-layer shape check names the tensor.
    writeFileSync(path, JSON.stringify({ ...json, rank_pattern: { fc: 4 } }))
    const mismatch = await load()
    expect(mismatch).toBeInstanceOf(ShapeMismatch)
    expect((mismatch as ShapeMismatch).what).toBe("fc.lora_A.weight")
    expect(fc.adapter).toBeUndefined()
    for (const [patch, field] of [
      [{ rank_pattern: { "fc(": 2 } }, "adapter_config.rank_pattern.fc("],
      [{ alpha_pattern: { fc: "x" } }, "adapter_config.alpha_pattern.fc"],
      [{ init_lora_weights: "pissa_niter_4" }, "adapter_config.init_lora_weights"]
    ] as const) {
      writeFileSync(path, JSON.stringify({ ...json, ...patch }))
      const error = await load()
      expect(error).toBeInstanceOf(ConfigError)
      expect((error as ConfigError).field).toBe(field)
      expect(fc.adapter).toBeUndefined()
    }
  })
})
