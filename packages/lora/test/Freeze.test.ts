/**
 * FFA-LoRA as an option of LoRA (`freeze: "A"`): A stays at its random initialisation, only B is a
 * parameter and trains, and the adapter still saves as a plain PEFT LoRA with both factors.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { AdapterSet, Linear, loadAdapter, saveAdapter } from "@peftkit/core"
import { adamw } from "@peftkit/optimizers"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, expect, it } from "vitest"
import { lora, type LoraAdapter, loraConfig } from "../src/index.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

it("freeze: A trains only B, keeps A at its init, and saves both factors as a plain LoRA", async () => {
  const weight = tf.randomNormal<tf.Rank.R2>([6, 5], 0, 1, "float32", 1)
  const layer = new Linear("model.layers.0.self_attn.q_proj", weight)
  const config = loraConfig({ r: 2, alpha: 4, freeze: "A", targetModules: ["q_proj"] })
  const adapters = AdapterSet.inject({ linears: () => [layer] }, lora, config, { seed: 3 })
  const adapter = layer.adapter as LoraAdapter
  expect(adapters.parameters().map((p) => p.name)).toEqual(["model.layers.0.self_attn.q_proj.lora_B.weight"])
  const initialA = Array.from(adapter.tensors.loraA.dataSync())

  const optimizer = adamw([{ params: adapters.parameters() }], { weightDecay: 0 })
  const x = tf.randomNormal([8, 5], 0, 1, "float32", 2)
  const y = tf.randomNormal([8, 6], 0, 1, "float32", 3)
  for (let step = 0; step < 5; step++) {
    tf.tidy(() => {
      const { grads } = tf.variableGrads(() => tf.losses.meanSquaredError(y, layer.apply(x, true)) as tf.Scalar, adapters.parameters().map((p) => p.variable))
      optimizer.step(Object.fromEntries(adapters.parameters().map((p) => [p.name, grads[p.variable.name]!])), 1e-2)
    })
  }
  expect(Array.from(adapter.tensors.loraA.dataSync())).toEqual(initialA)
  expect(Array.from(adapter.tensors.loraB.dataSync()).some((v) => v !== 0)).toBe(true)

  const dir = join(mkdtempSync(join(tmpdir(), "peftkit-freeze-")), "ffa")
  const fresh = new Linear("model.layers.0.self_attn.q_proj", weight)
  const loaded = await Effect.runPromise(
    Effect.gen(function* () {
      yield* saveAdapter(dir, adapters)
      return yield* loadAdapter(dir, { linears: () => [fresh] }, [lora])
    }).pipe(Effect.provide(NodeFileSystem.layer))
  )
  expect(loaded.config.r).toBe(2)
  const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(fresh.apply(x), layer.apply(x)))).dataSync()[0]!)
  expect(diff).toBeLessThan(1e-6)
  optimizer.dispose()
})
