// Issue 10 item 6: adapter_config.json's rank is bounded before anything is allocated, and
// readPeftLora checks it against the tensors in the file.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { AdapterSet, ADAPTER_CONFIG_FILE, ConfigError, Linear, loadAdapter, saveAdapter } from "@peftkit/core"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { fromPeftConfig, lora, loraConfig, readPeftLora } from "../src/index.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const makeModel = () => {
  const layers = [new Linear("model.layers.0.self_attn.q_proj", tf.randomNormal([16, 16], 0, 0.2, "float32", 1))]
  return { linears: () => layers, layers }
}

const savedAdapter = async () => {
  const dir = mkdtempSync(join(tmpdir(), "peftkit-lora-sizes-"))
  const adapters = AdapterSet.inject(makeModel(), lora, loraConfig({ r: 4, targetModules: ["q_proj"] }), { seed: 1 })
  await Effect.runPromise(Effect.provide(saveAdapter(dir, adapters), NodeFileSystem.layer))
  adapters.remove()
  return dir
}

const setR = (dir: string, r: unknown) => {
  const path = join(dir, ADAPTER_CONFIG_FILE)
  writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(path, "utf8")), r }))
}

describe("LoRA rank bounds", () => {
  it("r 9999999 and 2147483648 are a ConfigError on adapter_config.r, before any allocation", async () => {
    for (const r of [9999999, 2147483648, 2 ** 53, 1e300]) {
      const error = await Effect.runPromise(Effect.flip(fromPeftConfig({ peft_type: "LORA", r, lora_alpha: 8, target_modules: ["q_proj"] })))
      expect(error).toBeInstanceOf(ConfigError)
      expect(error.field).toBe("adapter_config.r")
      if (Number.isSafeInteger(r)) expect(error.message).toBe("invalid config: 'adapter_config.r': must be at most 16384")
    }
    const dir = await savedAdapter()
    setR(dir, 9999999)
    const started = Date.now()
    const error = await Effect.runPromise(Effect.provide(Effect.flip(loadAdapter(dir, makeModel(), [lora])), NodeFileSystem.layer))
    expect(error).toBeInstanceOf(ConfigError)
    expect(Date.now() - started).toBeLessThan(1000)
  })

  it("a user config with a rank beyond the bound is refused too", () => {
    expect(() => loraConfig({ r: 100000 })).toThrow("invalid config: 'lora.r': must be at most 16384")
  })

  it("readPeftLora: r must be the rank of the file's lora_A / lora_B", async () => {
    const dir = await savedAdapter()
    setR(dir, 8)
    const error = await Effect.runPromise(Effect.provide(Effect.flip(readPeftLora(dir)), NodeFileSystem.layer))
    expect(error).toBeInstanceOf(ConfigError)
    expect(error.message).toBe(
      "invalid config: 'adapter_config.r': is 8, but model.layers.0.self_attn.q_proj.lora_A.weight has shape [4, 16] (rank 4)"
    )
  })
})
