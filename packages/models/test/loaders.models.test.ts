import "@tensorflow/tfjs-backend-cpu"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { FileError, ShapeMismatch } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { CausalLM } from "../src/CausalLM.js"
import { Llama } from "../src/Llama.js"
import { saveHfModel } from "../src/loaders/HfWriter.js"
import { loadLlama2c } from "../src/loaders/Llama2c.js"
import { loadCausalLM } from "../src/loaders/LoadCausalLM.js"
import { disposeWeights } from "../src/loaders/LoadedCheckpoint.js"
import { loadCheckpoint, loadModelWith } from "../src/loaders/LoadModel.js"
import type { ModelConfig } from "../src/ModelConfig.js"
import { Opt } from "../src/Opt.js"
import { failure, maxAbsDiff, removeTempDirs, run, SHARED_DATA_MISSING, STORIES260K, tempDir, tinyLlama, tinyOpt, TOK512 } from "./fixtures/loaders.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})
afterAll(removeTempDirs)


const initModel = (config: ModelConfig, seed: number): CausalLM => (config.modelType === "opt" ? Opt.init(config, seed) : Llama.init(config, seed))

const logitsOf = (model: CausalLM, ids: ReadonlyArray<ReadonlyArray<number>>): tf.Tensor3D => tf.tidy(() => model.forward(tf.tensor2d(ids.map((r) => [...r]), undefined, "int32")))

const ids = [
  [1, 5, 9, 13, 17, 21, 3, 30],
  [1, 39, 2, 8, 8, 0, 11, 12]
]

describe("loaders + models: a saved model loads back with the same logits", () => {
  const configs: ReadonlyArray<readonly [string, ModelConfig]> = [
    ["untied Llama", tinyLlama()],
    ["tied Llama", tinyLlama({ tieWordEmbeddings: true })],
    ["Qwen2 (q/k/v bias)", tinyLlama({ modelType: "qwen2", attentionBias: true, tieWordEmbeddings: true, ropeTheta: 1e6 })],
    ["Llama with attention_bias (o_proj bias)", tinyLlama({ attentionBias: true })],
    ["OPT", tinyOpt()],
    ["OPT-350m-shaped (projections, post-LN, untied)", tinyOpt({ wordEmbedProjDim: 8, doLayerNormBefore: false, tieWordEmbeddings: false })]
  ]
  for (const [label, config] of configs) {
    it(`${label}: saveHfModel then loadCausalLM gives the in-memory model's logits (1e-5), single file and sharded`, async () => {
      const model = initModel(config, 42)
      // init's biases and norms are 0/1: perturb every weight so each tensor matters for the logits.
      for (const { variable } of model.parameters()) variable.assign(tf.tidy(() => tf.add(variable, tf.randomNormal(variable.shape, 0, 0.1, "float32", variable.size))))
      const expected = logitsOf(model, ids)
      const state = model.stateDict()
      const single = tempDir()
      const sharded = tempDir()
      await run(saveHfModel(single, config, state))
      await run(saveHfModel(sharded, config, state, { shardBytes: 2048 }))
      tf.dispose(Object.values(state))
      for (const dir of [single, sharded]) {
        const before = tf.memory().numTensors
        const loaded = await run(loadCausalLM(dir))
        expect(loaded.config).toStrictEqual(config)
        expect(loaded.warnings).toStrictEqual([])
        const got = logitsOf(loaded.model, ids)
        expect(maxAbsDiff(got, expected)).toBeLessThanOrEqual(1e-5)
        got.dispose()
        loaded.model.dispose()
        expect(tf.memory().numTensors).toBe(before) // the loaded tensors were released after building
      }
      expected.dispose()
      model.dispose()
    })
  }

  it("loadModelWith frees the loaded tensors when the factory throws, and keeps its typed error", async () => {
    const dir = tempDir()
    const model = Llama.init(tinyLlama(), 1)
    const state = model.stateDict()
    await run(saveHfModel(dir, model.config, state))
    tf.dispose(Object.values(state))
    model.dispose()
    const before = tf.memory().numTensors
    const error = await failure(loadModelWith(dir, () => {
      throw new ShapeMismatch({ what: "x", expected: [1], actual: [2] })
    }))
    expect(error).toBeInstanceOf(ShapeMismatch)
    expect(tf.memory().numTensors).toBe(before)
  })

  it("loadCheckpoint: a directory is an HF model, a missing path a FileError", async () => {
    const dir = tempDir()
    const model = Opt.init(tinyOpt(), 3)
    const state = model.stateDict()
    await run(saveHfModel(dir, model.config, state))
    tf.dispose(Object.values(state))
    model.dispose()
    const loaded = await run(loadCheckpoint(dir))
    expect(loaded.config.modelType).toBe("opt")
    disposeWeights(loaded.weights)
    expect(await failure(loadCheckpoint(join(dir, "nope")))).toBeInstanceOf(FileError)
  })

  it("an empty directory fails on its config.json (FileError naming it) and builds nothing", async () => {
    const dir = tempDir()
    const before = tf.memory().numTensors
    const error = (await failure(loadCausalLM(dir))) as FileError
    expect([error._tag, error.path]).toStrictEqual(["FileError", join(dir, "config.json")])
    expect(tf.memory().numTensors).toBe(before)
  })
})

/**
 * The llama2.c tokenizer, written here from the data README (not imported from @peftkit/tokenizers,
 * so this test checks the model and loader on their own): BOS, the " " dummy prefix, one token per
 * character (byte tokens <0xXX> = byte + 3 otherwise), then merge the best-scoring adjacent pair.
 */
const readTok512 = (path: string) => {
  const bytes = readFileSync(path)
  const vocab: Array<string> = []
  const scores: Array<number> = []
  let offset = 4 // int32 max_token_length
  for (let i = 0; i < 512; i++) {
    scores.push(bytes.readFloatLE(offset))
    const length = bytes.readInt32LE(offset + 4)
    vocab.push(bytes.subarray(offset + 8, offset + 8 + length).toString("utf8"))
    offset += 8 + length
  }
  expect(offset).toBe(bytes.length)
  const ids = new Map(vocab.map((piece, id) => [piece, id]))
  const encode = (text: string): Array<number> => {
    const tokens = [ids.get(" ")!]
    for (const ch of text) {
      const id = ids.get(ch)
      if (id !== undefined) tokens.push(id)
      else for (const byte of Buffer.from(ch, "utf8")) tokens.push(byte + 3)
    }
    for (;;) {
      let best = -1
      let bestScore = -Infinity
      let bestId = -1
      for (let i = 0; i + 1 < tokens.length; i++) {
        const id = ids.get(vocab[tokens[i]!]! + vocab[tokens[i + 1]!]!)
        if (id !== undefined && scores[id]! > bestScore) [best, bestScore, bestId] = [i, scores[id]!, id]
      }
      if (best < 0) break
      tokens.splice(best, 2, bestId)
    }
    return [1, ...tokens]
  }
  const decode = (tokens: ReadonlyArray<number>): string =>
    tokens.map((id) => (/^<0x[0-9A-F]{2}>$/.test(vocab[id]!) ? String.fromCharCode(parseInt(vocab[id]!.slice(3, 5), 16)) : vocab[id]!)).join("")
  return { encode, decode }
}

const greedy = (model: CausalLM, prompt: ReadonlyArray<number>, steps: number): Array<number> => {
  const out = [...prompt]
  for (let i = 0; i < steps; i++) {
    const next = tf.tidy(() => tf.argMax(tf.reshape(model.forward(tf.tensor2d([out], undefined, "int32"), { lastPositionOnly: true }), [-1])).dataSync()[0]!)
    out.push(next)
  }
  return out.slice(prompt.length)
}

const haveData = STORIES260K !== undefined && TOK512 !== undefined
describe.skipIf(!haveData)(`loaders + models on the shared data${haveData ? "" : ` (${SHARED_DATA_MISSING})`}`, () => {
  it("stories260K (shared data): greedy continuation of 'Once upon a time' is the documented story", async () => {
    const { encode, decode } = readTok512(TOK512!)
    const prompt = encode("Once upon a time")
    const loaded = await run(loadCausalLM(STORIES260K!))
    const continuation = decode(greedy(loaded.model, prompt, 28))
    expect(continuation.startsWith(", there was a little girl named Lily. She loved to play outside in the park."), continuation).toBe(true)
    loaded.model.dispose()
  })

  it("stories260K (shared data): re-saved as an HF directory (half RoPE layout), it gives the llama2.c model's logits (1e-5)", async () => {
    const { encode } = readTok512(TOK512!)
    const prompt = [encode("Once upon a time, there was a little girl named Lily.")]
    const original = await run(loadLlama2c(STORIES260K!))
    const interleaved = Llama.fromWeights(original.config, original.weights)
    const dir = tempDir()
    await run(saveHfModel(dir, original.config, original.weights))
    disposeWeights(original.weights)
    const hf = await run(loadCausalLM(dir))
    expect((hf.model.config as { ropeLayout: string }).ropeLayout).toBe("half")
    const [a, b] = [logitsOf(interleaved, prompt), logitsOf(hf.model, prompt)]
    expect(maxAbsDiff(a, b)).toBeLessThanOrEqual(1e-5)
    tf.dispose([a, b])
    interleaved.dispose()
    hf.model.dispose()
  })
})
