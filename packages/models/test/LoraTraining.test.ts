import { AdapterSet } from "@peftkit/core"
import { type LoraAdapter, lora, loraConfig } from "@peftkit/lora"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll, describe, expect, it } from "vitest"
import { causalLmLoss } from "../src/CausalLmLoss.js"
import { Llama } from "../src/Llama.js"
import { Opt } from "../src/Opt.js"
import { disposeMap, randomize, tinyLlama, tinyOpt } from "./helpers.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const ids = () => tf.tensor2d([[1, 17, 5, 9, 22, 30, 3, 8], [0, 0, 1, 39, 12, 4, 6, 2]], undefined, "int32")
const attentionMask = () => tf.tensor2d([[1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1, 1]])
// Train on the last three tokens of each row (a "completion").
const lossMask = () => tf.tensor2d([[0, 0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 1, 1, 1]])

const randomLlama = () => {
  const config = tinyLlama({ modelType: "qwen2", attentionBias: true })
  const init = Llama.init(config, 1)
  const weights = randomize(init.stateDict(), 5)
  init.dispose()
  const model = Llama.fromWeights(config, weights)
  disposeMap(weights)
  return model
}

describe("LoRA on q_proj/v_proj of a small Llama", () => {
  it("gradients reach every lora_A and lora_B (non-zero) and match central finite differences (rel 1e-2)", () => {
    const model = randomLlama()
    const set = AdapterSet.inject(model, lora, loraConfig({ r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"] }), { seed: 3 })
    expect(set.layers.map((l) => l.name)).toEqual([
      "model.layers.0.self_attn.q_proj",
      "model.layers.0.self_attn.v_proj",
      "model.layers.1.self_attn.q_proj",
      "model.layers.1.self_attn.v_proj"
    ])
    // B starts at zero, which zeroes A's gradient; give B values so both factors get one.
    set.layers.forEach((layer, i) => {
      const adapter = layer.adapter as LoraAdapter
      tf.tidy(() => adapter.tensors.loraB.assign(tf.randomNormal(adapter.tensors.loraB.shape, 0, 0.3, "float32", 100 + i)))
    })
    const [input, mask, targets] = [ids(), attentionMask(), lossMask()]
    const loss = () => causalLmLoss(model.forward(input, { attentionMask: mask, training: true }), input, targets)
    const params = set.parameters()
    const before = tf.memory().numTensors
    const { value, grads } = tf.variableGrads(loss, params.map((p) => p.variable))
    value.dispose()
    const named = params.map((p) => ({ ...p, grad: grads[p.variable.name]! }))
    expect(named).toHaveLength(8)
    for (const { name, grad } of named) {
      const norm = tf.tidy(() => tf.norm(grad).dataSync()[0]!)
      expect(norm, name).toBeGreaterThan(1e-4)
    }
    // Finite differences on the largest-gradient element of one A and one B.
    for (const p of [named[2]!, named[3]!]) {
      const g = p.grad.dataSync()
      let index = 0
      g.forEach((v, i) => (Math.abs(v) > Math.abs(g[index]!) ? (index = i) : undefined))
      const h = 1e-2
      const lossAt = (delta: number) => {
        const original = p.variable.dataSync().slice()
        const changed = original.slice()
        changed[index]! += delta
        tf.tidy(() => p.variable.assign(tf.tensor(changed, p.variable.shape)))
        const l = tf.tidy(() => loss().dataSync()[0]!)
        tf.tidy(() => p.variable.assign(tf.tensor(original, p.variable.shape)))
        return l
      }
      const numeric = (lossAt(h) - lossAt(-h)) / (2 * h)
      expect(Math.abs(numeric - g[index]!) / Math.abs(g[index]!), `${p.name}[${index}]`).toBeLessThan(1e-2)
    }
    Object.values(grads).forEach((t) => t.dispose())
    // Forward + backward leaves nothing behind.
    expect(tf.memory().numTensors).toBe(before)
    tf.tidy(() => {
      const { value: v, grads: gs } = tf.variableGrads(loss, params.map((p) => p.variable))
      v.dispose()
      Object.values(gs).forEach((t) => t.dispose())
    })
    expect(tf.memory().numTensors).toBe(before)
    set.remove()
    model.dispose()
  })

  it("full fine-tuning (setTrainable): every weight, embedding included, gets a gradient; no tensors leak", () => {
    for (const model of [randomLlama(), Opt.init(tinyOpt({ wordEmbedProjDim: 16, doLayerNormBefore: false }), 2)]) {
      model.setTrainable(true)
      const [input, mask, targets] = [ids(), attentionMask(), lossMask()]
      const before = tf.memory().numTensors
      const { value, grads } = tf.variableGrads(() => causalLmLoss(model.forward(input, { attentionMask: mask }), input, targets))
      value.dispose()
      const names = new Map(model.parameters().map((p) => [p.variable.name, p.name]))
      expect(Object.keys(grads).map((k) => names.get(k)).sort()).toEqual([...names.values()].sort())
      Object.values(grads).forEach((t) => t.dispose())
      expect(tf.memory().numTensors).toBe(before)
      model.dispose()
    }
  })
})
