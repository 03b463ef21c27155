import { AdapterSet, ConfigError, InvalidCheckpoint, ShapeMismatch } from "@peftkit/core"
import { lora, loraConfig } from "@peftkit/lora"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll, describe, expect, it } from "vitest"
import { Llama } from "../src/Llama.js"
import type { LlamaConfig } from "../src/ModelConfig.js"
import { disposeMap, maxAbsDiff, maxAbsDiffMat, randomize, referenceLlama, tinyLlama } from "./helpers.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

/** A model with random weights everywhere (norms and biases too) and the weights it was built from. */
const randomLlama = (config: LlamaConfig, seed = 1) => {
  const init = Llama.init(config, seed)
  const weights = randomize(init.stateDict(), seed)
  init.dispose()
  return { model: Llama.fromWeights(config, weights), weights }
}

const ids = [[3, 17, 5, 9, 22, 30, 1], [8, 8, 39, 0, 12, 4, 6]]

describe("Llama forward equals a float64 reference written from HF's modeling code", () => {
  const cases: Array<[string, Partial<LlamaConfig>]> = [
    ["tied head, GQA (4 query heads on 2 kv heads), rotate_half RoPE", {}],
    ["interleaved (llama2.c) RoPE", { ropeLayout: "interleaved" }],
    ["Qwen2: q/k/v bias, untied head, no o_proj bias", { modelType: "qwen2", attentionBias: true, tieWordEmbeddings: false, ropeTheta: 1e6 }],
    ["llama with attention_bias: o_proj bias as well", { attentionBias: true }],
    ["multi-head (no GQA), 3 layers", { numKeyValueHeads: 4, numHiddenLayers: 3 }]
  ]
  for (const [label, overrides] of cases) {
    it(`${label}: max |diff| < 1e-4`, () => {
      const config = tinyLlama(overrides)
      const { model, weights } = randomLlama(config)
      const logits = model.forward(tf.tensor2d(ids, undefined, "int32"))
      expect(logits.shape).toEqual([2, 7, config.vocabSize])
      const rows = logits.arraySync() as Array<Array<Array<number>>>
      ids.forEach((seq, b) => expect(maxAbsDiffMat(rows[b]!, referenceLlama(config, weights, seq))).toBeLessThan(1e-4))
      const qBias = model.layers[0]!.qProj.bias
      expect(qBias !== undefined).toBe(config.attentionBias)
      expect(model.layers[0]!.oProj.bias !== undefined).toBe(config.attentionBias && config.modelType === "llama")
      expect(model.lmHead !== undefined).toBe(!config.tieWordEmbeddings)
      logits.dispose()
      model.dispose()
      disposeMap(weights)
    })
  }
})

describe("padding", () => {
  const config = tinyLlama()

  it("a left-padded batch gives each sequence's unpadded logits at its real positions (1e-4), and no NaN on pad rows", () => {
    const { model, weights } = randomLlama(config, 2)
    const long = [5, 9, 14, 3, 22, 7]
    const short = [11, 4, 30]
    const pad = 0
    const batch = tf.tensor2d([long, [pad, pad, pad, ...short]], undefined, "int32")
    const mask = tf.tensor2d([[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]])
    const padded = model.forward(batch, { attentionMask: mask })
    expect(tf.any(tf.isNaN(padded)).dataSync()[0]).toBe(0)
    const alone = (seq: Array<number>) => model.forward(tf.tensor2d([seq], undefined, "int32"))
    expect(maxAbsDiff(tf.slice(padded, [0, 0, 0], [1, 6, -1]), alone(long))).toBeLessThan(1e-4)
    expect(maxAbsDiff(tf.slice(padded, [1, 3, 0], [1, 3, -1]), alone(short))).toBeLessThan(1e-4)
    model.dispose()
    disposeMap(weights)
  })

  it("right padding: real positions match too; int32 masks are accepted", () => {
    const { model, weights } = randomLlama(config, 3)
    const short = [11, 4, 30]
    const padded = model.forward(tf.tensor2d([[...short, 0, 0]], undefined, "int32"), { attentionMask: tf.tensor2d([[1, 1, 1, 0, 0]], undefined, "int32") })
    expect(tf.any(tf.isNaN(padded)).dataSync()[0]).toBe(0)
    expect(maxAbsDiff(tf.slice(padded, [0, 0, 0], [1, 3, -1]), model.forward(tf.tensor2d([short], undefined, "int32")))).toBeLessThan(1e-4)
    model.dispose()
    disposeMap(weights)
  })

  it("lastPositionOnly gives the last row of the full logits", () => {
    const { model, weights } = randomLlama(config, 4)
    const input = tf.tensor2d(ids, undefined, "int32")
    const full = model.forward(input)
    const last = model.forward(input, { lastPositionOnly: true })
    expect(last.shape).toEqual([2, 1, config.vocabSize])
    expect(maxAbsDiff(last, tf.slice(full, [0, 6, 0], [2, 1, -1]))).toBeLessThan(1e-6)
    model.dispose()
    disposeMap(weights)
  })
})

describe("building from weights", () => {
  const config = tinyLlama({ tieWordEmbeddings: false, attentionBias: true, modelType: "qwen2" })

  const weightsOf = () => {
    const model = Llama.init(config, 5)
    const state = model.stateDict()
    model.dispose()
    return new Map(Object.entries(state))
  }

  it("a missing tensor is an InvalidCheckpoint naming it, and nothing built before it leaks", () => {
    const weights = weightsOf()
    weights.get("model.layers.1.self_attn.k_proj.bias")!.dispose()
    weights.delete("model.layers.1.self_attn.k_proj.bias")
    const before = tf.memory().numTensors
    let error: unknown
    try {
      Llama.fromWeights(config, weights, { path: "ckpt/model.safetensors" })
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(InvalidCheckpoint)
    expect((error as InvalidCheckpoint).tensor).toBe("model.layers.1.self_attn.k_proj.bias")
    expect((error as InvalidCheckpoint).message).toContain("ckpt/model.safetensors")
    expect(tf.memory().numTensors).toBe(before)
    disposeMap(weights)
  })

  it("a wrong shape is a ShapeMismatch naming the tensor", () => {
    const weights = weightsOf()
    weights.get("model.layers.0.mlp.up_proj.weight")!.dispose()
    weights.set("model.layers.0.mlp.up_proj.weight", tf.zeros([40, 25]))
    let error: unknown
    try {
      Llama.fromWeights(config, weights)
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(ShapeMismatch)
    expect((error as ShapeMismatch).what).toBe("model.layers.0.mlp.up_proj.weight")
    expect((error as ShapeMismatch).expected).toEqual([40, 24])
    expect((error as ShapeMismatch).actual).toEqual([40, 25])
    disposeMap(weights)
  })

  it("an unknown tensor is an InvalidCheckpoint unless strict is false; rotary inv_freq buffers are ignored", () => {
    const weights = weightsOf()
    weights.set("model.layers.0.self_attn.rotary_emb.inv_freq", tf.ones([3]))
    Llama.fromWeights(config, weights).dispose()
    weights.set("model.layers.0.self_attn.q_norm.weight", tf.ones([6]))
    expect(() => Llama.fromWeights(config, weights)).toThrow(/q_norm/)
    Llama.fromWeights(config, weights, { strict: false }).dispose()
    disposeMap(weights)
  })

  it("the caller keeps its tensors: disposing the map leaves the model intact, and stateDict round-trips exactly", () => {
    const weights = weightsOf()
    const model = Llama.fromWeights(config, weights)
    const input = tf.tensor2d(ids, undefined, "int32")
    const expected = model.forward(input)
    const state = model.stateDict()
    disposeMap(weights)
    expect(maxAbsDiff(model.forward(input), expected)).toBe(0)
    const again = Llama.fromWeights(config, new Map(Object.entries(state)))
    expect(maxAbsDiff(again.forward(input), expected)).toBe(0)
    // Non-float32 tensors are cast; the casts are freed.
    const before = tf.memory().numTensors
    const asInt = new Map(Object.entries(state).map(([name, t]) => [name, tf.cast(t, "int32")]))
    const created = tf.memory().numTensors
    Llama.fromWeights(config, asInt).dispose()
    expect(tf.memory().numTensors).toBe(created)
    disposeMap(asInt)
    expect(tf.memory().numTensors).toBe(before)
    Object.values(state).forEach((t) => t.dispose())
    model.dispose()
    again.dispose()
  })

  it("a tied model has no lm_head Linear and ignores a stored lm_head.weight", () => {
    const tied = tinyLlama()
    const model = Llama.init(tied, 1)
    const state = model.stateDict()
    expect(Object.keys(state)).not.toContain("lm_head.weight")
    state["lm_head.weight"] = tf.zeros([40, 24])
    Llama.fromWeights(tied, new Map(Object.entries(state))).dispose()
    Object.values(state).forEach((t) => t.dispose())
    expect(model.linears().map((l) => l.name)).not.toContain("lm_head")
    expect(model.outputHeads).toEqual(["lm_head"])
    model.dispose()
  })

  it("rejects inconsistent configs with a ConfigError naming the field", () => {
    expect(() => Llama.init(tinyLlama({ numKeyValueHeads: 3 }), 1)).toThrow(ConfigError)
    expect(() => Llama.init(tinyLlama({ headDim: 5 }), 1)).toThrow(/llama.headDim/)
    expect(() => Llama.init(tinyLlama({ hiddenSize: 0 }), 1)).toThrow(/llama.hiddenSize/)
  })
})

describe("module names, parameters and init", () => {
  it("linears() lists every projection by HF module name, lm_head last when untied; all-linear leaves the head out", () => {
    const model = Llama.init(tinyLlama({ tieWordEmbeddings: false, numHiddenLayers: 1 }), 1)
    expect(model.linears().map((l) => l.name)).toEqual([
      "model.layers.0.self_attn.q_proj",
      "model.layers.0.self_attn.k_proj",
      "model.layers.0.self_attn.v_proj",
      "model.layers.0.self_attn.o_proj",
      "model.layers.0.mlp.gate_proj",
      "model.layers.0.mlp.up_proj",
      "model.layers.0.mlp.down_proj",
      "lm_head"
    ])
    const q = model.linears()[0]!
    expect(q.weight.shape).toEqual([24, 24])
    expect(model.linears()[1]!.weight.shape).toEqual([12, 24])
    const set = AdapterSet.inject(model, lora, loraConfig({ r: 2, targetModules: "all-linear" }), { seed: 1 })
    expect(set.layers).toHaveLength(7)
    set.remove()
    model.dispose()
  })

  it("init: std 0.02 matrices, unit norms, zero biases, reproducible by seed; setTrainable flips every variable", () => {
    const config = tinyLlama({ hiddenSize: 64, intermediateSize: 128, headDim: 16, attentionBias: true, modelType: "qwen2" })
    const a = Llama.init(config, 7)
    const b = Llama.init(config, 7)
    const std = tf.tidy(() => tf.sqrt(tf.moments(a.layers[0]!.gateProj.weight).variance).dataSync()[0]!)
    expect(Math.abs(std - 0.02)).toBeLessThan(0.002)
    expect(a.norm.weight.dataSync().every((v) => v === 1)).toBe(true)
    expect(a.layers[0]!.qProj.bias!.dataSync().every((v) => v === 0)).toBe(true)
    expect(maxAbsDiff(a.embedTokens.weight, b.embedTokens.weight)).toBe(0)
    expect(maxAbsDiff(a.layers[1]!.downProj.weight, b.layers[1]!.downProj.weight)).toBe(0)
    expect(a.parameters().every((p) => !p.variable.trainable)).toBe(true)
    a.setTrainable(true)
    expect(a.parameters().every((p) => p.variable.trainable)).toBe(true)
    // embed + per layer (2 norms + 7 weights + 3 biases) + final norm.
    expect(a.parameters()).toHaveLength(1 + 2 * 12 + 1)
    a.dispose()
    b.dispose()
  })
})
