import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { ADAPTER_CONFIG_FILE, AdapterSet, ConfigError, Linear, loadAdapter, saveAdapter } from "@peftkit/core"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { dora, lora, type LoraAdapter, loraAlpha, loraConfig, loraRank, loraScale, patternKey, readPeftLora } from "../src/index.js"
import { maxAbsDiff, randomMatrix, toMatrix } from "./helpers.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

/**
 * Keys (in order), module name, the winning key or null: each row's winner is what PEFT 0.21's
 * `get_pattern_key` (peft/utils/other.py, `re.match(rf"(.*\.)?({key})$", name)`, first key
 * wins) returned for it in Python.
 */
const TABLE: ReadonlyArray<readonly [ReadonlyArray<string>, string, string | null]> = [
  [["q_proj"], "model.layers.0.self_attn.q_proj", "q_proj"],
  [["proj"], "model.layers.0.self_attn.q_proj", null],
  [["q_proj", "self_attn.q_proj"], "model.layers.0.self_attn.q_proj", "q_proj"],
  [["self_attn.q_proj", "q_proj"], "model.layers.0.self_attn.q_proj", "self_attn.q_proj"],
  [["layers.1.self_attn.q_proj"], "model.layers.11.self_attn.q_proj", null],
  [["layers.1.self_attn.q_proj"], "model.layers.1.self_attn.q_proj", "layers.1.self_attn.q_proj"],
  [["^model.layers.0.*v_proj"], "model.layers.0.self_attn.v_proj", "^model.layers.0.*v_proj"],
  [["^layers.0.*v_proj"], "model.layers.0.self_attn.v_proj", null],
  [["layers\\.1\\.self_attn\\.k_proj"], "model.decoder.layers.1.self_attn.k_proj", "layers\\.1\\.self_attn\\.k_proj"],
  [["model.layers.0.self_attn.v_proj"], "model.layers.0.self_attn.v_proj", "model.layers.0.self_attn.v_proj"],
  [[".*_proj"], "model.layers.0.mlp.down_proj", ".*_proj"],
  [["mlp\\..*"], "model.layers.0.mlp.down_proj", "mlp\\..*"],
  [["q_proj|v_proj"], "model.layers.3.self_attn.v_proj", "q_proj|v_proj"],
  [["attn"], "model.layers.0.self_attn.q_proj", null],
  [["fc1"], "model.decoder.layers.0.fc1", "fc1"],
  [["fc"], "model.decoder.layers.0.fc1", null]
]

const NAMES = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]
const makeModel = () => {
  const layers = NAMES.map((name, i) => new Linear(name, randomMatrix(6, 8, i + 1)))
  return { layers, linears: () => layers }
}
const patterned = (extra: { useRslora?: boolean } = {}) =>
  loraConfig({ r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"], rankPattern: { "layers.1.self_attn.q_proj": 2, v_proj: 3 }, alphaPattern: { "^model.layers.0.*v_proj": 12 }, ...extra })

describe("rank_pattern / alpha_pattern resolution", () => {
  it("picks PEFT's winner for every row of the table", () => {
    for (const [keys, name, winner] of TABLE) {
      const pattern = Object.fromEntries(keys.map((key, i) => [key, i + 1]))
      expect([keys, name, patternKey(pattern, name) ?? null]).toEqual([keys, name, winner])
    }
  })

  it("gives each module its own rank, alpha and scale (rsLoRA too), and its own tensor shapes", () => {
    const config = patterned()
    expect(NAMES.map((name) => [loraRank(config, name), loraAlpha(config, name), loraScale(config, name)])).toEqual([
      [4, 8, 2],
      [3, 12, 4],
      [2, 8, 4],
      [3, 8, 8 / 3]
    ])
    expect(loraScale(patterned({ useRslora: true }), NAMES[1]!)).toBe(12 / Math.sqrt(3))
    const model = makeModel()
    const set = AdapterSet.inject(model, lora, config, { seed: 1 })
    expect(set.entries.map(({ adapter }) => (adapter as LoraAdapter).tensors.loraA.shape)).toEqual([[4, 8], [3, 8], [2, 8], [3, 8]])
    // The forward uses the module's scale: y - x W^T = s_module (x A^T) B^T.
    const adapter = set.entries[1]!.adapter as LoraAdapter
    adapter.tensors.loraB.assign(randomMatrix(6, 3, 5))
    const x = randomMatrix(3, 8, 6)
    const low = toMatrix(tf.mul(tf.matMul(tf.matMul(x, adapter.tensors.loraA, false, true), adapter.tensors.loraB, false, true), 4))
    expect(maxAbsDiff(toMatrix(tf.sub(model.layers[1]!.apply(x), tf.matMul(x, model.layers[1]!.weight, false, true))), low)).toBeLessThan(1e-5)
  })

  it("a key that is no regular expression is a ConfigError naming it", () => {
    expect(() => loraConfig({ rankPattern: { "q_proj(": 2 } })).toThrow(ConfigError)
    expect(() => loraConfig({ rankPattern: { "q_proj(": 2 } })).toThrow("lora.rankPattern.q_proj(")
  })
})

describe("patterns in PEFT files", () => {
  for (const variant of [lora, dora]) {
    it(`${variant.name}: saved as rank_pattern / alpha_pattern and loaded back to the same outputs`, async () => {
      const model = makeModel()
      const set = AdapterSet.inject(model, variant, patterned(), { seed: 1 })
      for (const { adapter } of set.entries) {
        const b = (adapter as LoraAdapter).tensors.loraB
        b.assign(randomMatrix(b.shape[0]!, b.shape[1]!, 3))
      }
      const x = randomMatrix(3, 8, 6)
      const expected = model.layers.map((layer) => toMatrix(layer.apply(x)))
      const dir = mkdtempSync(join(tmpdir(), "peftkit-patterns-"))
      await Effect.runPromise(Effect.provide(saveAdapter(dir, set), NodeFileSystem.layer))
      const json = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG_FILE), "utf8"))
      expect([json.rank_pattern, json.alpha_pattern]).toEqual([{ "layers.1.self_attn.q_proj": 2, v_proj: 3 }, { "^model.layers.0.*v_proj": 12 }])
      const fresh = makeModel()
      const loaded = await Effect.runPromise(Effect.provide(loadAdapter(dir, fresh, [dora, lora]), NodeFileSystem.layer))
      expect(loaded.variant.name).toBe(variant.name)
      expect(loaded.config.rankPattern).toEqual(set.config.rankPattern)
      expect(loaded.config.alphaPattern).toEqual(set.config.alphaPattern)
      expect(Math.max(...fresh.layers.map((layer, i) => maxAbsDiff(toMatrix(layer.apply(x)), expected[i]!)))).toBe(0)
    })
  }

  it("readPeftLora: a rank_pattern the file's shapes contradict is a ConfigError naming the module and the key", async () => {
    const model = makeModel()
    const dir = mkdtempSync(join(tmpdir(), "peftkit-patterns-"))
    await Effect.runPromise(Effect.provide(saveAdapter(dir, AdapterSet.inject(model, lora, patterned(), { seed: 1 })), NodeFileSystem.layer))
    const path = join(dir, ADAPTER_CONFIG_FILE)
    writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(path, "utf8")), rank_pattern: { v_proj: 3, "layers.1.self_attn.q_proj": 5 } }))
    const error = await Effect.runPromise(Effect.provide(Effect.flip(readPeftLora(dir)), NodeFileSystem.layer))
    expect(error).toBeInstanceOf(ConfigError)
    expect(error.message).toBe(
      "invalid config: 'adapter_config.rank_pattern': resolves model.layers.1.self_attn.q_proj by key \"layers.1.self_attn.q_proj\" to 5, but model.layers.1.self_attn.q_proj.lora_A.weight has shape [2, 8] (rank 2)"
    )
  })
})
