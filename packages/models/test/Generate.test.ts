import { ConfigError } from "@peftkit/core"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll, describe, expect, it } from "vitest"
import type { CausalLM } from "../src/CausalLM.js"
import { generate, sampleNextToken } from "../src/Generate.js"
import { Llama } from "../src/Llama.js"
import { Opt } from "../src/Opt.js"
import { disposeMap, maxAbsDiff, randomize, tinyLlama, tinyOpt } from "./helpers.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

/** Random weights with a larger scale so greedy continuations are not all the same token. */
const models: Array<[string, () => CausalLM]> = [
  ["Llama (GQA, tied)", () => {
    const config = tinyLlama({ maxPositionEmbeddings: 40 })
    const init = Llama.init(config, 1)
    const weights = randomize(init.stateDict(), 11, 0.5)
    init.dispose()
    const model = Llama.fromWeights(config, weights)
    disposeMap(weights)
    return model
  }],
  ["Qwen2 (bias, untied, interleaved RoPE)", () => {
    const config = tinyLlama({ modelType: "qwen2", attentionBias: true, tieWordEmbeddings: false, ropeLayout: "interleaved", maxPositionEmbeddings: 40 })
    const init = Llama.init(config, 2)
    const weights = randomize(init.stateDict(), 12, 0.5)
    init.dispose()
    const model = Llama.fromWeights(config, weights)
    disposeMap(weights)
    return model
  }],
  ["OPT pre-LN", () => {
    const config = tinyOpt({ maxPositionEmbeddings: 40 })
    const init = Opt.init(config, 3)
    const weights = randomize(init.stateDict(), 23, 0.5)
    init.dispose()
    const model = Opt.fromWeights(config, weights)
    disposeMap(weights)
    return model
  }],
  ["OPT post-LN with project_in/out", () => {
    const config = tinyOpt({ maxPositionEmbeddings: 40, doLayerNormBefore: false, wordEmbedProjDim: 16 })
    const init = Opt.init(config, 4)
    const weights = randomize(init.stateDict(), 14, 0.5)
    init.dispose()
    const model = Opt.fromWeights(config, weights)
    disposeMap(weights)
    return model
  }]
]

const lastRow = (logits: tf.Tensor3D): tf.Tensor1D =>
  tf.tidy(() => tf.reshape(tf.slice(logits, [0, logits.shape[1] - 1, 0], [1, 1, -1]), [-1]) as tf.Tensor1D)

describe("KV-cache decoding equals full recomputation", () => {
  for (const [label, make] of models) {
    it(`${label}: greedy ids identical over 12 steps, logits within 1e-4 at every step; generate() agrees`, async () => {
      const model = make()
      const prompt = [2, 7, 19, 33, 5]
      const steps = 12
      // Reference: the whole sequence recomputed at every step.
      const reference: Array<number> = []
      const referenceLogits: Array<tf.Tensor1D> = []
      for (let i = 0; i < steps; i++) {
        const logits = tf.tidy(() => lastRow(model.forward(tf.tensor2d([[...prompt, ...reference]], undefined, "int32"))))
        referenceLogits.push(logits)
        reference.push(tf.argMax(logits).dataSync()[0]!)
      }
      expect(new Set(reference).size).toBeGreaterThan(2)
      // Cached: prefill once, then one token per forward.
      const cache = model.createCache(1, prompt.length + steps)
      let logits = tf.tidy(() => lastRow(model.forward(tf.tensor2d([prompt], undefined, "int32"), { cache })))
      for (let i = 0; i < steps; i++) {
        expect(maxAbsDiff(logits, referenceLogits[i]!)).toBeLessThan(1e-4)
        const id = tf.argMax(logits).dataSync()[0]!
        expect(id).toBe(reference[i])
        logits.dispose()
        if (i + 1 < steps) logits = tf.tidy(() => lastRow(model.forward(tf.tensor2d([[id]], undefined, "int32"), { cache })))
      }
      expect(cache.length).toBe(prompt.length + steps - 1)
      cache.dispose()
      expect(await generate(model, prompt, { maxNewTokens: steps, eosTokenIds: [] })).toEqual(reference)
      referenceLogits.forEach((t) => t.dispose())
      model.dispose()
    })

    it(`${label}: a left-padded batch decodes with the cache like each sequence alone (mask remembered across calls)`, () => {
      const model = make()
      const long = [2, 9, 14, 3, 22]
      const short = [2, 30]
      const cache = model.createCache(2, 8)
      const first = model.forward(tf.tensor2d([long, [0, 0, 0, ...short]], undefined, "int32"), {
        cache,
        attentionMask: tf.tensor2d([[1, 1, 1, 1, 1], [0, 0, 0, 1, 1]]),
        lastPositionOnly: true
      })
      // Next token per row, then a step whose mask covers only the new column (HF passes all columns; both work).
      const next = [[4], [11]]
      const second = model.forward(tf.tensor2d(next, undefined, "int32"), { cache, attentionMask: tf.tensor2d([[1], [1]]) })
      const third = model.forward(tf.tensor2d([[6], [6]], undefined, "int32"), { cache, attentionMask: tf.tensor2d([[1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1]]) })
      const alone = (seq: Array<number>) => tf.tidy(() => lastRow(model.forward(tf.tensor2d([seq], undefined, "int32"))))
      const row = (t: tf.Tensor3D, b: number) => tf.reshape(tf.slice(t, [b, t.shape[1] - 1, 0], [1, 1, -1]), [-1])
      expect(maxAbsDiff(row(first, 0), alone(long))).toBeLessThan(1e-4)
      expect(maxAbsDiff(row(first, 1), alone(short))).toBeLessThan(1e-4)
      expect(maxAbsDiff(row(second, 0), alone([...long, 4]))).toBeLessThan(1e-4)
      expect(maxAbsDiff(row(second, 1), alone([...short, 11]))).toBeLessThan(1e-4)
      expect(maxAbsDiff(row(third, 0), alone([...long, 4, 6]))).toBeLessThan(1e-4)
      expect(maxAbsDiff(row(third, 1), alone([...short, 11, 6]))).toBeLessThan(1e-4)
      cache.dispose()
      model.dispose()
    })
  }

  it("a cache rejects more positions than it was made for, and a different batch", () => {
    const model = Llama.init(tinyLlama(), 1)
    const cache = model.createCache(1, 4)
    model.forward(tf.zeros([1, 3], "int32") as tf.Tensor2D, { cache })
    expect(() => model.forward(tf.zeros([1, 2], "int32") as tf.Tensor2D, { cache })).toThrow(/holds 4 positions/)
    expect(() => model.forward(tf.zeros([2, 1], "int32") as tf.Tensor2D, { cache })).toThrow(/batch 1/)
    cache.dispose()
    model.dispose()
  })
})

describe("generate", () => {
  const make = models[0]![1]

  it("leaves tf.memory().numTensors unchanged (greedy and sampled), including after an EOS stop", async () => {
    const model = make()
    await generate(model, [2, 5], { maxNewTokens: 3 })
    const before = tf.memory().numTensors
    await generate(model, [2, 5, 9], { maxNewTokens: 6, eosTokenIds: [] })
    await generate(model, [2, 5, 9], { maxNewTokens: 6, temperature: 0.8, topK: 10, topP: 0.9, seed: 3 })
    const first = (await generate(model, [2, 5, 9], { maxNewTokens: 1 }))[0]!
    expect(await generate(model, [2, 5, 9], { maxNewTokens: 6, eosTokenIds: [first] })).toEqual([first])
    expect(tf.memory().numTensors).toBe(before)
    model.dispose()
  })

  it("sampling is reproducible by seed and varies across seeds; topK 1 is greedy; onToken streams and can stop", async () => {
    const model = make()
    const options = { maxNewTokens: 10, temperature: 1.5, eosTokenIds: [] as Array<number> }
    const a = await generate(model, [2, 5], { ...options, seed: 1 })
    expect(await generate(model, [2, 5], { ...options, seed: 1 })).toEqual(a)
    const others = await Promise.all([2, 3, 4, 5].map((seed) => generate(model, [2, 5], { ...options, seed })))
    expect(others.some((o) => o.join() !== a.join())).toBe(true)
    const greedy = await generate(model, [2, 5], { maxNewTokens: 10, eosTokenIds: [] })
    expect(await generate(model, [2, 5], { ...options, topK: 1, seed: 9 })).toEqual(greedy)
    const streamed: Array<number> = []
    const stopped = await generate(model, [2, 5], { maxNewTokens: 10, eosTokenIds: [], onToken: (id, i) => (streamed.push(id), i < 2) })
    expect(stopped).toEqual(greedy.slice(0, 3))
    expect(streamed).toEqual(stopped)
    model.dispose()
  })

  it("rejects bad options with a ConfigError naming the field", async () => {
    const model = make()
    await expect(generate(model, [2], { maxNewTokens: -1 })).rejects.toThrow(/generate.maxNewTokens/)
    await expect(generate(model, [2], { maxNewTokens: 2, topP: 0 })).rejects.toThrow(ConfigError)
    await expect(generate(model, [], { maxNewTokens: 2 })).rejects.toThrow(/generate.promptIds/)
    expect(await generate(model, [2], { maxNewTokens: 0 })).toEqual([])
    model.dispose()
  })
})

describe("sampleNextToken", () => {
  const probabilities = [0.05, 0.5, 0.15, 0.3]
  const logits = () => tf.log(tf.tensor1d(probabilities)) as tf.Tensor1D
  const frequencies = (options: Parameters<typeof sampleNextToken>[1], draws = 4000) => {
    const counts = [0, 0, 0, 0]
    const l = logits()
    for (let seed = 0; seed < draws; seed++) {
      const id = sampleNextToken(l, options, seed)
      counts[id.dataSync()[0]!]!++
      id.dispose()
    }
    l.dispose()
    return counts.map((c) => c / draws)
  }

  it("temperature 1 draws each token with its softmax probability (within 0.03 over 4000 seeds)", () => {
    frequencies({ temperature: 1 }).forEach((f, i) => expect(Math.abs(f - probabilities[i]!)).toBeLessThan(0.03))
  })

  it("top-p 0.7 keeps {0.5, 0.3} (the smallest set reaching 0.7), renormalised to 5/8 and 3/8", () => {
    const f = frequencies({ temperature: 1, topP: 0.7 })
    expect(f[0]).toBe(0)
    expect(f[2]).toBe(0)
    expect(Math.abs(f[1]! - 0.625)).toBeLessThan(0.03)
  })

  it("top-k 3 drops the least likely token and renormalises", () => {
    const f = frequencies({ temperature: 1, topK: 3 })
    expect(f[0]).toBe(0)
    expect(Math.abs(f[1]! - 0.5 / 0.95)).toBeLessThan(0.03)
  })

  it("temperature 0 is argmax", () => {
    const l = logits()
    expect(sampleNextToken(l, {}, 0).dataSync()[0]).toBe(1)
    l.dispose()
  })
})
