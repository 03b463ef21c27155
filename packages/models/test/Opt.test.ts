import { InvalidCheckpoint, ShapeMismatch } from "@peftkit/core"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll, describe, expect, it } from "vitest"
import type { OptConfig } from "../src/ModelConfig.js"
import { Opt, optPositionsFromMask } from "../src/Opt.js"
import { disposeMap, maxAbsDiff, maxAbsDiffMat, randomize, referenceOpt, tinyOpt } from "./helpers.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const randomOpt = (config: OptConfig, seed = 1) => {
  const init = Opt.init(config, seed)
  const weights = randomize(init.stateDict(), seed)
  init.dispose()
  return { model: Opt.fromWeights(config, weights), weights }
}

const ids = [[2, 17, 5, 9, 22, 30, 1], [8, 8, 39, 0, 12, 4, 6]]

describe("OPT forward equals a float64 reference written from HF's modeling code", () => {
  const cases: Array<[string, Partial<OptConfig>]> = [
    ["pre-LN (OPT-125m and most sizes), tied head", {}],
    ["post-LN with project_in/out (OPT-350m's shape)", { doLayerNormBefore: false, wordEmbedProjDim: 16 }],
    ["pre-LN with project_in/out, untied head, GELU", { wordEmbedProjDim: 12, tieWordEmbeddings: false, activationFunction: "gelu" }],
    ["no biases, LayerNorm without affine", { enableBias: false, layerNormElementwiseAffine: false }]
  ]
  for (const [label, overrides] of cases) {
    it(`${label}: max |diff| < 1e-4`, () => {
      const config = tinyOpt(overrides)
      const { model, weights } = randomOpt(config)
      const logits = model.forward(tf.tensor2d(ids, undefined, "int32"))
      expect(logits.shape).toEqual([2, 7, config.vocabSize])
      const rows = logits.arraySync() as Array<Array<Array<number>>>
      ids.forEach((seq, b) => expect(maxAbsDiffMat(rows[b]!, referenceOpt(config, weights, seq))).toBeLessThan(1e-4))
      expect(model.finalLayerNorm !== undefined).toBe(config.doLayerNormBefore)
      expect(model.projectIn !== undefined).toBe(config.wordEmbedProjDim !== config.hiddenSize)
      logits.dispose()
      model.dispose()
      disposeMap(weights)
    })
  }

  it("the names: project_in/out are Linears (all-linear adapts them); embed_positions has maxPos + 2 rows", () => {
    const model = Opt.init(tinyOpt({ doLayerNormBefore: false, wordEmbedProjDim: 16, numHiddenLayers: 1 }), 1)
    expect(model.linears().map((l) => l.name)).toEqual([
      "model.decoder.project_in",
      "model.decoder.layers.0.self_attn.q_proj",
      "model.decoder.layers.0.self_attn.k_proj",
      "model.decoder.layers.0.self_attn.v_proj",
      "model.decoder.layers.0.self_attn.out_proj",
      "model.decoder.layers.0.fc1",
      "model.decoder.layers.0.fc2",
      "model.decoder.project_out"
    ])
    const names = Object.keys(model.stateDict())
    expect(names).not.toContain("model.decoder.final_layer_norm.weight")
    expect(names).not.toContain("lm_head.weight")
    expect(model.embedPositions.weight.shape).toEqual([34, 24])
    model.dispose()
  })
})

describe("OPT positions and padding", () => {
  it("positions are HF's cumsum(mask) * mask - 1 + 2: pads at row 1, the first real token at row 2", () => {
    const mask = tf.tensor2d([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0]])
    expect(optPositionsFromMask(mask, 5).arraySync()).toEqual([[1, 1, 2, 3, 4], [2, 3, 4, 1, 1]])
    expect(optPositionsFromMask(mask, 2).arraySync()).toEqual([[3, 4], [1, 1]])
  })

  for (const [label, overrides] of [["pre-LN", {}], ["post-LN + projections", { doLayerNormBefore: false, wordEmbedProjDim: 16 }]] as const) {
    it(`${label}: a left-padded batch gives each sequence's unpadded logits at its real positions (1e-4), no NaN`, () => {
      const { model, weights } = randomOpt(tinyOpt(overrides), 2)
      const long = [2, 9, 14, 3, 22, 7]
      const short = [2, 4, 30]
      const padded = model.forward(tf.tensor2d([long, [1, 1, 1, ...short]], undefined, "int32"), {
        attentionMask: tf.tensor2d([[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]])
      })
      expect(tf.any(tf.isNaN(padded)).dataSync()[0]).toBe(0)
      const alone = (seq: Array<number>) => model.forward(tf.tensor2d([seq], undefined, "int32"))
      expect(maxAbsDiff(tf.slice(padded, [0, 0, 0], [1, 6, -1]), alone(long))).toBeLessThan(1e-4)
      expect(maxAbsDiff(tf.slice(padded, [1, 3, 0], [1, 3, -1]), alone(short))).toBeLessThan(1e-4)
      model.dispose()
      disposeMap(weights)
    })
  }

  it("a sequence longer than the learned positions is a ShapeMismatch, not a bad gather", () => {
    const model = Opt.init(tinyOpt({ maxPositionEmbeddings: 4 }), 1)
    expect(() => model.forward(tf.zeros([1, 5], "int32"))).toThrow(ShapeMismatch)
    model.dispose()
  })
})

describe("OPT from weights", () => {
  it("missing and misshapen tensors are named; nothing leaks", () => {
    const config = tinyOpt({ wordEmbedProjDim: 16 })
    const init = Opt.init(config, 3)
    const weights = new Map(Object.entries(init.stateDict()))
    init.dispose()
    const before = tf.memory().numTensors
    const project = weights.get("model.decoder.project_out.weight")!
    weights.delete("model.decoder.project_out.weight")
    expect(() => Opt.fromWeights(config, weights)).toThrow(InvalidCheckpoint)
    try {
      Opt.fromWeights(config, weights)
    } catch (error) {
      expect((error as InvalidCheckpoint).tensor).toBe("model.decoder.project_out.weight")
    }
    weights.set("model.decoder.project_out.weight", tf.transpose(project))
    try {
      Opt.fromWeights(config, weights)
      expect.unreachable()
    } catch (error) {
      expect(error).toBeInstanceOf(ShapeMismatch)
      expect((error as ShapeMismatch).what).toBe("model.decoder.project_out.weight")
    }
    expect(tf.memory().numTensors).toBe(before + 1)
    project.dispose()
    disposeMap(weights)
  })
})
