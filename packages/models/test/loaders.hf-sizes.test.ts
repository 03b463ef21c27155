// Issue 10 items 6 and 8: config.json's sizes are bounded and checked against the safetensors
// headers before anything is built; NaN/Inf weights load with a warning naming the tensor.
import "@tensorflow/tfjs-backend-cpu"
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { ConfigError, InvalidCheckpoint, Safetensors } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { loadHfModel } from "../src/loaders/HfCheckpoint.js"
import { saveHfModel } from "../src/loaders/HfWriter.js"
import { disposeWeights } from "../src/loaders/LoadedCheckpoint.js"
import type { ModelConfig } from "../src/ModelConfig.js"
import { disposeAll, failure, randomWeights, removeTempDirs, run, tempDir, tinyLlama, tinyOpt } from "./fixtures/loaders.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})
afterAll(removeTempDirs)


const savedTiny = async (config: ModelConfig = tinyLlama()) => {
  const dir = tempDir()
  const weights = randomWeights(config, 3)
  await run(saveHfModel(dir, config, weights))
  disposeAll(weights.values())
  return dir
}

const editConfig = (dir: string, edit: Record<string, unknown>) => {
  const path = join(dir, "config.json")
  writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(path, "utf8")), ...edit }))
}

describe("config.json sizes against the files", () => {
  it("num_hidden_layers 1e9 is refused from the headers, before any tensor is planned", async () => {
    for (const make of [() => tinyLlama(), () => tinyOpt()]) {
      const dir = await savedTiny(make())
      editConfig(dir, { num_hidden_layers: 1e9 })
      const started = Date.now()
      const error = (await failure(loadHfModel(dir))) as InvalidCheckpoint
      expect(error).toBeInstanceOf(InvalidCheckpoint)
      expect(error.path).toBe(join(dir, "model.safetensors"))
      expect(error.tensor).toMatch(/layers\.2\./)
      expect(error.reason).toMatch(/^missing; (llama|opt) with this config.json needs it \(num_hidden_layers 1000000000: \d+ tensors, the files hold \d+\)$/)
      expect(Date.now() - started).toBeLessThan(2000)
    }
  })

  it("sizes beyond int32 are a ConfigError naming the field", async () => {
    const dir = await savedTiny()
    editConfig(dir, { hidden_size: 2 ** 40 })
    const error = (await failure(loadHfModel(dir))) as ConfigError
    expect(error).toBeInstanceOf(ConfigError)
    expect(error.message).toBe("invalid config: 'config.hidden_size': must be at most 2147483647")
  })

  it("config.json that is not valid UTF-8 is refused with the byte offset", async () => {
    const dir = await savedTiny()
    const path = join(dir, "config.json")
    const text = readFileSync(path)
    writeFileSync(path, Buffer.concat([text.subarray(0, 5), Buffer.from([0xff]), text.subarray(5)]))
    const error = (await failure(loadHfModel(dir))) as InvalidCheckpoint
    expect(error).toBeInstanceOf(InvalidCheckpoint)
    expect(error.reason).toBe("not valid UTF-8 at byte 5")
  })

  it("NaN/Inf weights load with a warning naming the tensor", async () => {
    const dir = await savedTiny()
    const path = join(dir, "model.safetensors")
    const file = Safetensors.decodeSync(new Uint8Array(readFileSync(path)))
    const tensors = file.tensors.map((t) => {
      const data = Safetensors.toFloat32(t).slice()
      if (t.name === "model.layers.1.mlp.up_proj.weight") data[2] = Number.NaN
      if (t.name === "model.norm.weight") data[0] = Number.NEGATIVE_INFINITY
      return { name: t.name, dtype: "F32" as const, shape: t.shape, data }
    })
    writeFileSync(path, Safetensors.encode(tensors, { format: "pt" }))
    const loaded = await run(loadHfModel(dir))
    expect(loaded.warnings).toStrictEqual([
      "model.layers.1.mlp.up_proj.weight holds 1 non-finite value(s) (NaN or Inf)",
      "model.norm.weight holds 1 non-finite value(s) (NaN or Inf)"
    ])
    disposeWeights(loaded.weights)
  })
})
