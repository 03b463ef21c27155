/**
 * A browser program saves and loads PEFT adapters on the in-memory file system exactly as a Node
 * program does on disk: same files, same outputs after the round trip.
 */
import { AdapterSet, Linear, makeMemoryFileSystem, MemoryFileSystem, loadAdapter, saveAdapter } from "@peftkit/core"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { beforeAll, expect, it } from "vitest"
import { lora, loraConfig } from "../src/index.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

it("saveAdapter then loadAdapter on MemoryFileSystem reproduces the adapted outputs", async () => {
  const make = () => [new Linear("model.layers.0.self_attn.q_proj", tf.randomNormal([6, 5], 0, 1, "float32", 1))]
  const trained = make()
  const config = loraConfig({ r: 2, alpha: 4, targetModules: ["q_proj"] })
  const adapters = AdapterSet.inject({ linears: () => trained }, lora, config, { seed: 3 })
  for (const p of adapters.parameters()) p.variable.assign(tf.randomNormal(p.variable.shape, 0, 0.5, "float32", 9))
  const x = tf.randomNormal([4, 5], 0, 1, "float32", 2)
  const expected = trained[0]!.apply(x).arraySync()

  const memory = makeMemoryFileSystem()
  const fresh = make()
  await Effect.runPromise(
    Effect.gen(function* () {
      yield* saveAdapter("adapters/q", adapters)
      yield* loadAdapter("adapters/q", { linears: () => fresh }, [lora])
    }).pipe(Effect.provide(MemoryFileSystem.layerOf(memory)))
  )
  expect([...memory.files().keys()].sort()).toEqual(["/adapters/q/adapter_config.json", "/adapters/q/adapter_model.safetensors"])
  const actual = fresh[0]!.apply(x).arraySync() as Array<Array<number>>
  ;(expected as Array<Array<number>>).forEach((row, i) => row.forEach((value, j) => expect(actual[i]![j]).toBeCloseTo(value, 6)))
})
