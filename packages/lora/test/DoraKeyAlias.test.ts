/**
 * DoRA's magnitude under PEFT's other spelling, `lora_magnitude_vector.weight` (core's TensorSpec
 * `aliases`): read by `loadAdapter` and `loadStateDict`, never written; both spellings at once refused.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { AdapterSet, InvalidCheckpoint, Linear, loadAdapter, savePeftAdapter } from "@peftkit/core"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { dora, type DoraAdapter, doraFormat, lora, loraConfig } from "../src/index.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const NAME = "model.layers.0.self_attn.v_proj"
const config = loraConfig({ r: 2, alpha: 4, targetModules: ["v_proj"] })
const layerOf = () => new Linear(NAME, tf.randomNormal([6, 5], 0, 1, "float32", 1))
const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!)

/** A trained-looking DoRA adapter's tensors, under the given magnitude key. */
const tensors = (magnitudeKey: string) => ({
  [`${NAME}.lora_A.weight`]: tf.randomNormal([2, 5], 0, 0.5, "float32", 2),
  [`${NAME}.lora_B.weight`]: tf.randomNormal([6, 2], 0, 0.5, "float32", 3),
  [`${NAME}.${magnitudeKey}`]: tf.randomUniform([6], 1, 2, "float32", 4)
})

describe("DoRA magnitude key alias", () => {
  it("loadAdapter reads `lora_magnitude_vector.weight` as the magnitude, and saving writes PEFT's key", async () => {
    const dir = mkdtempSync(join(tmpdir(), "peftkit-alias-"))
    const given = tensors("lora_magnitude_vector.weight")
    await Effect.runPromise(Effect.provide(savePeftAdapter(dir, doraFormat, config, given), NodeFileSystem.layer))
    const layer = layerOf()
    const set = await Effect.runPromise(Effect.provide(loadAdapter(dir, { linears: () => [layer] }, [dora, lora]), NodeFileSystem.layer))
    expect(maxDiff((layer.adapter as DoraAdapter).tensors.magnitude, given[`${NAME}.lora_magnitude_vector.weight`]!)).toBe(0)
    expect(Object.keys(set.stateDict()).sort()).toEqual([`${NAME}.lora_A.weight`, `${NAME}.lora_B.weight`, `${NAME}.lora_magnitude_vector`])
  })

  it("loadStateDict accepts the alias; the key and its alias together are an InvalidCheckpoint", () => {
    const layer = layerOf()
    AdapterSet.inject({ linears: () => [layer] }, dora, config, { seed: 1 })
    const adapter = layer.adapter as DoraAdapter
    const strip = (all: Record<string, tf.Tensor>) => Object.fromEntries(Object.entries(all).map(([key, t]) => [key.slice(NAME.length + 1), t]))
    const aliased = strip(tensors("lora_magnitude_vector.weight"))
    adapter.loadStateDict(aliased)
    expect(maxDiff(adapter.tensors.magnitude, aliased["lora_magnitude_vector.weight"]!)).toBe(0)
    expect(() => adapter.loadStateDict({ ...aliased, lora_magnitude_vector: aliased["lora_magnitude_vector.weight"]! })).toThrow(InvalidCheckpoint)
  })
})
