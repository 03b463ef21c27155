/**
 * A user's variant, written only against the public API, works everywhere LoRA does: it trains in
 * a COLA chain (A never changes), the chain saves as one PEFT LoRA and the link as the variant's
 * own PEFT adapter, and both reload to the same outputs. The variant file stays within 20 lines.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { providers } from "@peftkit/backend-cpu"
import { Backend, MetricsLog, ProgressReporter } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer } from "effect"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, expect, it } from "vitest"
import { runExample } from "../src/Example.js"

const dir = mkdtempSync(join(tmpdir(), "peftkit-custom-variant-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

it("the frozen-A LoRA is at most 20 lines, declaration and imports included", () => {
  const source = readFileSync(new URL("../src/FrozenALora.ts", import.meta.url), "utf8").trimEnd().split("\n")
  expect(source.length).toBeLessThanOrEqual(20)
})

it("trains B only in a 3-link chain, saves in PEFT's layout and reloads to the same outputs, leaking nothing", async () => {
  const layers = Layer.mergeAll(Backend.layer((process.env.PEFTKIT_TEST_BACKEND ?? "wasm"), providers), ProgressReporter.silent, MetricsLog.none)
  await Effect.runPromise(Effect.provide(Effect.void, layers))
  const before = tf.memory().numTensors
  const result = await Effect.runPromise(runExample(dir).pipe(Effect.provide(layers), Effect.provide(NodeFileSystem.layer)))
  expect(result.trainable).toEqual(["model.layers.0.mlp.up_proj.lora_B.weight", "model.layers.0.mlp.down_proj.lora_B.weight"])
  expect(result.links).toBe(3)
  expect(result.finalLoss).toBeLessThan(0.5 * result.initialLoss)
  expect(result.chainDiff).toBeLessThan(1e-5)
  expect(result.linkDiff).toBeLessThan(1e-5)
  expect(result.variant).toBe("frozen-a-lora")
  const config = JSON.parse(readFileSync(join(dir, "last-link", "adapter_config.json"), "utf8"))
  expect(config).toMatchObject({ peft_type: "LORA", r: 2, lora_alpha: 4, target_modules: ["up_proj", "down_proj"] })
  expect(tf.memory().numTensors).toBe(before)
})
