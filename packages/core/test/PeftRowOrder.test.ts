/**
 * A model's `peftRowOrder`: PEFT files hold per-output-row tensors (lora_B) in the order of the
 * model's Hugging Face form; core's writer permutes them on save and `loadAdapter` /
 * `restoreAdapterWeights` permute them back, so the variant never knows. Input-side tensors
 * (lora_A) never move, even when their first axis happens to have the module's output size.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Schema } from "effect"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  type AdaptableModel,
  AdapterSet,
  decodeConfig,
  defineAdapter,
  init,
  Linear,
  loadAdapter,
  type PeftFormat,
  restoreAdapterWeights,
  Safetensors,
  saveAdapter,
  TargetModulesSchema
} from "../src/index.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})
const dir = mkdtempSync(join(tmpdir(), "peftkit-roworder-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const Config = Schema.Struct({ targetModules: TargetModulesSchema })
type Config = typeof Config.Type
const format: PeftFormat<Config> = {
  peftType: "LORA",
  accepts: (json) => json.peft_type === "LORA",
  encodeConfig: (config) => ({ peft_type: "LORA", target_modules: config.targetModules }),
  decodeConfig: (json) => decodeConfig(Config, { targetModules: (json as { target_modules?: unknown }).target_modules }, "adapter_config")
}
// Rank 4 = the q layer's output size, so lora_A [4, in] has the shape of an output-row tensor.
const lowRank = defineAdapter({
  name: "low-rank",
  format,
  tensors: (layer, _config: Config) => ({
    a: { shape: [4, layer.inFeatures], init: init.normal(1), key: "lora_A.weight" },
    b: { shape: [layer.outFeatures, 4], init: init.normal(1), key: "lora_B.weight" }
  }),
  forward: ({ x, base, tensors: { a, b } }) => tf.add(base, tf.matMul(tf.matMul(x, a, false, true), b, false, true)),
  delta: ({ tensors: { a, b } }) => tf.matMul(b, a)
})

const ORDER = [2, 0, 3, 1]
const weightQ = tf.randomNormal([4, 3], 0, 1, "float32", 1) as tf.Tensor2D
const weightV = tf.randomNormal([2, 3], 0, 1, "float32", 2) as tf.Tensor2D

/** The model as stored (q rows in its own order) and its "HF form" (q rows in file order). */
const ownModel = (): AdaptableModel => {
  const layers = [new Linear("attn.q", tf.clone(weightQ)), new Linear("attn.v", tf.clone(weightV))]
  return { linears: () => layers, peftRowOrder: (name) => (name === "attn.q" ? ORDER : undefined) }
}
const hfModel = (): AdaptableModel => {
  const layers = [new Linear("attn.q", tf.gather(weightQ, ORDER) as tf.Tensor2D), new Linear("attn.v", tf.clone(weightV))]
  return { linears: () => layers }
}
const x = tf.randomNormal([5, 3], 0, 1, "float32", 3) as tf.Tensor2D
const outputs = (model: AdaptableModel) => model.linears().map((layer) => layer.apply(x, false).arraySync() as Array<Array<number>>)
const read = (path: string) =>
  Effect.runSync(Effect.map(Safetensors.decode(readFileSync(join(path, "adapter_model.safetensors")), path), (file) => new Map(file.tensors.map((view) => [view.name, Safetensors.toTensor(view).arraySync()]))))
const run = <A, E>(effect: Effect.Effect<A, E, any>) => Effect.runPromise(Effect.provide(effect, NodeFileSystem.layer) as Effect.Effect<A, E>)

describe("peftRowOrder", () => {
  it("saves lora_B rows in file order (lora_A as is) and loads them back into the model's order", async () => {
    const model = ownModel()
    const set = AdapterSet.inject(model, lowRank, { targetModules: ["q", "v"] }, { seed: 5 })
    const state = set.stateDict()
    const own = Object.fromEntries(Object.entries(state).map(([k, t]) => [k, t.arraySync() as Array<Array<number>>]))
    Object.values(state).forEach((t) => t.dispose())
    await run(saveAdapter(join(dir, "saved"), set, { rowOrder: model.peftRowOrder }))
    const file = read(join(dir, "saved"))
    expect(file.get("base_model.model.attn.q.lora_B.weight")).toEqual(ORDER.map((row) => own["attn.q.lora_B.weight"]![row]))
    expect(file.get("base_model.model.attn.q.lora_A.weight")).toEqual(own["attn.q.lora_A.weight"])
    expect(file.get("base_model.model.attn.v.lora_B.weight")).toEqual(own["attn.v.lora_B.weight"])

    // Onto the model itself: the same outputs as the adapter it was saved from.
    const reloaded = ownModel()
    await run(loadAdapter(join(dir, "saved"), reloaded, [lowRank]))
    expect(outputs(reloaded)).toEqual(outputs(model))
    // Onto its HF form: the HF form's outputs are the model's, rows in file order.
    const hf = hfModel()
    await run(loadAdapter(join(dir, "saved"), hf, [lowRank]))
    const [q, v] = outputs(model)
    const [hfQ, hfV] = outputs(hf)
    expect(hfV).toEqual(v)
    hfQ!.forEach((row, n) => row.forEach((value, i) => expect(value).toBeCloseTo(q![n]![ORDER[i]!]!, 5)))

    // Resuming (`restoreAdapterWeights` with the row order) puts the rows back too.
    const resumed = ownModel()
    const fresh = AdapterSet.inject(resumed, lowRank, { targetModules: ["q", "v"] }, { seed: 9 })
    await run(restoreAdapterWeights(join(dir, "saved"), fresh, { rowOrder: resumed.peftRowOrder }))
    expect(outputs(resumed)).toEqual(outputs(model))
  })

  it("without a row order nothing moves (HF-layout models, and files read back by `peftkit export`)", async () => {
    const model = hfModel()
    const set = AdapterSet.inject(model, lowRank, { targetModules: ["q"] }, { seed: 6 })
    const state = set.stateDict()
    const b = state["attn.q.lora_B.weight"]!
    await run(saveAdapter(join(dir, "plain"), set))
    expect(read(join(dir, "plain")).get("base_model.model.attn.q.lora_B.weight")).toEqual(b.arraySync())
    Object.values(state).forEach((t) => t.dispose())
  })
})
