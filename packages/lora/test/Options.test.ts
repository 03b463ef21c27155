/**
 * LoRA's relatives as options of LoRA, not forks. FFA-LoRA (`freeze: "A"`): A stays at its random
 * initialisation, only B is a parameter and trains, and the adapter still saves as a plain PEFT LoRA
 * with both factors. LoRA+ (`loraPlusRatio`): B is its own optimizer group at that multiple of the
 * learning rate, wherever the set's groups are used (a chain's too: cola's tests).
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { AdapterSet, Linear, loadAdapter, saveAdapter } from "@peftkit/core"
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

  const x = tf.randomNormal([8, 5], 0, 1, "float32", 2)
  const y = tf.randomNormal([8, 6], 0, 1, "float32", 3)
  for (let step = 0; step < 5; step++) {
    tf.tidy(() => {
      const { grads } = tf.variableGrads(() => tf.losses.meanSquaredError(y, layer.apply(x, true)) as tf.Scalar, adapters.parameters().map((p) => p.variable))
      // Plain gradient descent on the set's parameters: only what is a parameter can move.
      for (const p of adapters.parameters()) p.variable.assign(tf.sub(p.variable, tf.mul(grads[p.variable.name]!, 0.1)))
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
})

it("loraPlusRatio: B gets its own optimizer group at that multiple of the rate", () => {
  const layers = ["q_proj", "v_proj"].map((name, i) => new Linear(`model.layers.0.self_attn.${name}`, tf.randomNormal<tf.Rank.R2>([4, 4], 0, 1, "float32", i + 1)))
  const config = loraConfig({ r: 2, loraPlusRatio: 16, targetModules: ["q_proj", "v_proj"] })
  const set = AdapterSet.inject({ linears: () => layers }, lora, config, { seed: 1 })
  const groups = set.parameterGroups()
  expect(groups.map((g) => [g.params.map((p) => p.name.split(".").slice(-2).join(".")), g.lrScale])).toEqual([
    [["lora_A.weight", "lora_A.weight"], undefined],
    [["lora_B.weight", "lora_B.weight"], 16]
  ])
  set.remove()
  expect(AdapterSet.inject({ linears: () => layers }, lora, loraConfig({ r: 2, targetModules: ["q_proj"] }), { seed: 1 }).parameterGroups()).toHaveLength(1)
})
