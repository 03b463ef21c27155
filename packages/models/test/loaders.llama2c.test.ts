import type { FileSystem } from "@effect/platform"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import "@tensorflow/tfjs-backend-cpu"
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { FileError, InvalidCheckpoint } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Exit } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { loadHfModel } from "../src/loaders/HfCheckpoint.js"
import { saveHfModel } from "../src/loaders/HfWriter.js"
import { decodeLlama2c, llama2cFileBytes, loadLlama2c } from "../src/loaders/Llama2c.js"
import { disposeWeights } from "../src/loaders/LoadedCheckpoint.js"
import { interleavedToHalf } from "../src/loaders/RopePermutation.js"
import { hfWeightShapes } from "../src/loaders/WeightSpec.js"
import type { LlamaConfig } from "../src/ModelConfig.js"
import { maxAbsDiff, removeTempDirs, SHARED_DATA_MISSING, STORIES260K, tempDir, writeRopeTables } from "./fixtures/loaders.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})
afterAll(removeTempDirs)

const failure = async <A, E>(effect: Effect.Effect<A, E, FileSystem.FileSystem>): Promise<E> => {
  const exit = await Effect.runPromiseExit(Effect.provide(Effect.flip(effect), NodeFileSystem.layer))
  if (Exit.isFailure(exit)) throw new Error(`expected a typed failure, got ${String(exit.cause)}`)
  return exit.value
}

/** A llama2.c file written independently of the loader: header, then float32 k * 1e-3 for the k-th value of the body. */
const synthetic = (header: ReadonlyArray<number>, floats: number): Uint8Array => {
  const bytes = new Uint8Array(28 + 4 * floats)
  const view = new DataView(bytes.buffer)
  header.forEach((v, i) => view.setInt32(4 * i, v, true))
  for (let k = 0; k < floats; k++) view.setFloat32(28 + 4 * k, k * 1e-3, true)
  // The legacy RoPE tables hold cos / sin of pos * 10000^(-2j / head_dim), which the loader checks.
  const [dim, hidden, layers, heads, kvHeads, vocab, seqLen] = header as [number, number, number, number, number, number, number]
  const headDim = dim / heads
  const half = headDim / 2
  const before = Math.abs(vocab) * dim + layers * (2 * dim + 2 * dim * dim + 2 * kvHeads * headDim * dim + 3 * hidden * dim) + dim
  if (header.length === 7 && Number.isInteger(half) && 28 + 4 * (before + 2 * seqLen * half) <= bytes.byteLength) {
    writeRopeTables(view, before, seqLen, headDim)
  }
  return bytes
}

describe.skipIf(STORIES260K === undefined)(`Llama2c on the shared data${STORIES260K === undefined ? ` (${SHARED_DATA_MISSING})` : ""}`, () => {
  const path = STORIES260K!

  it("stories260K (shared data): the header becomes the documented LlamaConfig", async () => {
    const loaded = await Effect.runPromise(Effect.provide(loadLlama2c(path), NodeFileSystem.layer))
    expect(loaded.config).toStrictEqual({
      modelType: "llama",
      vocabSize: 512,
      hiddenSize: 64,
      intermediateSize: 172,
      numHiddenLayers: 5,
      numAttentionHeads: 8,
      numKeyValueHeads: 4,
      headDim: 8,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      maxPositionEmbeddings: 512,
      tieWordEmbeddings: true,
      attentionBias: false,
      ropeLayout: "interleaved",
      bosTokenId: 1,
      eosTokenId: [2]
    } satisfies LlamaConfig)
    expect([loaded.ignoredTensors, loaded.warnings, loaded.sourceDtypes]).toStrictEqual([[], [], ["F32"]])
    disposeWeights(loaded.weights)
  })

  it("stories260K (shared data): every tensor under its HF name with its shape, no lm_head (tied)", async () => {
    const loaded = await Effect.runPromise(Effect.provide(loadLlama2c(path), NodeFileSystem.layer))
    const shapes = Object.fromEntries([...loaded.weights].map(([name, t]) => [name, t.shape]))
    expect(Object.keys(shapes)).toHaveLength(1 + 5 * 9 + 1)
    expect(shapes).toMatchObject({
      "model.embed_tokens.weight": [512, 64],
      "model.layers.0.input_layernorm.weight": [64],
      "model.layers.0.self_attn.q_proj.weight": [64, 64],
      "model.layers.2.self_attn.k_proj.weight": [32, 64],
      "model.layers.3.self_attn.v_proj.weight": [32, 64],
      "model.layers.4.self_attn.o_proj.weight": [64, 64],
      "model.layers.4.post_attention_layernorm.weight": [64],
      "model.layers.1.mlp.gate_proj.weight": [172, 64],
      "model.layers.1.mlp.up_proj.weight": [172, 64],
      "model.layers.1.mlp.down_proj.weight": [64, 172],
      "model.norm.weight": [64]
    })
    expect(shapes["lm_head.weight"]).toBeUndefined()
    expect([...loaded.weights.keys()]).toStrictEqual([...hfWeightShapes(loaded.config).keys()])
    disposeWeights(loaded.weights)
  })

  it("stories260K (shared data): weight values match the file bytes read independently", async () => {
    const bytes = readFileSync(path)
    const at = (floatIndex: number) => bytes.readFloatLE(28 + 4 * floatIndex)
    // Float offsets of the arrays, from the documented order (dim 64, hidden 172, 5 layers, kv_dim 32, vocab 512).
    const [emb, rmsAtt] = [0, 512 * 64]
    const wq = rmsAtt + 5 * 64
    const wk = wq + 5 * 64 * 64
    const wv = wk + 5 * 32 * 64
    const wo = wv + 5 * 32 * 64
    const rmsFfn = wo + 5 * 64 * 64
    const w1 = rmsFfn + 5 * 64
    const w2 = w1 + 5 * 172 * 64
    const w3 = w2 + 5 * 64 * 172
    const rmsFinal = w3 + 5 * 172 * 64
    expect(28 + 4 * (rmsFinal + 64 + 2 * 512 * 4)).toBe(1_056_540) // + the two skipped RoPE tables: the file size

    const loaded = await Effect.runPromise(Effect.provide(loadLlama2c(path), NodeFileSystem.layer))
    const values = (name: string, start: number, n: number) => Array.from(loaded.weights.get(name)!.dataSync().subarray(start, start + n))
    const fromFile = (start: number, n: number) => Array.from({ length: n }, (_, i) => at(start + i))
    // Pinned numbers (float32) and the same read straight from the bytes.
    expect(values("model.embed_tokens.weight", 0, 4)).toStrictEqual([-0.29474878311157227, 0.5618956089019775, 0.1754225343465805, 0.34057360887527466])
    expect(values("model.embed_tokens.weight", 0, 4)).toStrictEqual(fromFile(emb, 4))
    expect(values("model.layers.0.input_layernorm.weight", 0, 2)).toStrictEqual([0.9722429513931274, 0.6754933595657349])
    expect(values("model.layers.2.self_attn.q_proj.weight", 0, 2)).toStrictEqual([0.13947686553001404, 0.11205833405256271])
    expect(values("model.layers.2.self_attn.q_proj.weight", 0, 2)).toStrictEqual(fromFile(wq + 2 * 64 * 64, 2))
    expect(values("model.layers.4.mlp.down_proj.weight", 64 * 172 - 1, 1)).toStrictEqual([-0.0035068716388195753])
    expect(values("model.layers.1.mlp.up_proj.weight", 3 * 64, 2)).toStrictEqual([0.014252059161663055, -0.10386520624160767])
    expect(values("model.layers.1.mlp.up_proj.weight", 3 * 64, 2)).toStrictEqual(fromFile(w3 + 172 * 64 + 3 * 64, 2))
    expect(values("model.norm.weight", 0, 3)).toStrictEqual([2.4583089351654053, 1.3673226833343506, 1.7504382133483887])
    // One element of every other array, at an arbitrary layer and index.
    expect(values("model.layers.3.self_attn.k_proj.weight", 100, 1)).toStrictEqual(fromFile(wk + 3 * 32 * 64 + 100, 1))
    expect(values("model.layers.1.self_attn.v_proj.weight", 7, 1)).toStrictEqual(fromFile(wv + 32 * 64 + 7, 1))
    expect(values("model.layers.4.self_attn.o_proj.weight", 4095, 1)).toStrictEqual(fromFile(wo + 4 * 64 * 64 + 4095, 1))
    expect(values("model.layers.2.post_attention_layernorm.weight", 63, 1)).toStrictEqual(fromFile(rmsFfn + 2 * 64 + 63, 1))
    expect(values("model.layers.0.mlp.gate_proj.weight", 5000, 1)).toStrictEqual(fromFile(w1 + 5000, 1))
    expect(values("model.layers.4.mlp.down_proj.weight", 0, 1)).toStrictEqual(fromFile(w2 + 4 * 64 * 172, 1))
    disposeWeights(loaded.weights)
  })

  it("stories260K (shared data): saved as an HF directory, q/k rows are in the half layout and the rest is unchanged", async () => {
    const loaded = await Effect.runPromise(Effect.provide(loadLlama2c(path), NodeFileSystem.layer))
    const dir = tempDir()
    await Effect.runPromise(Effect.provide(saveHfModel(dir, loaded.config, loaded.weights), NodeFileSystem.layer))
    const hf = await Effect.runPromise(Effect.provide(loadHfModel(dir), NodeFileSystem.layer))
    expect(hf.config).toStrictEqual({ ...loaded.config, ropeLayout: "half" })
    for (const [name, tensor] of loaded.weights) {
      const match = /self_attn\.(q|k)_proj/.exec(name)
      const expected = match === null ? tensor.clone() : interleavedToHalf(tensor, match[1] === "q" ? 8 : 4)
      expect(maxAbsDiff(hf.weights.get(name)!, expected), name).toBe(0)
      expected.dispose()
    }
    disposeWeights(loaded.weights)
    disposeWeights(hf.weights)
  })

  it("stories260K (shared data) truncated by one float is InvalidCheckpoint with both sizes", async () => {
    const dir = tempDir()
    const cut = join(dir, "cut.bin")
    writeFileSync(cut, readFileSync(path).subarray(0, 1_056_536))
    const error = (await failure(loadLlama2c(cut))) as InvalidCheckpoint
    expect([error.path, error.reason]).toStrictEqual([cut, "truncated: the header implies 1056540 bytes (shared classifier), the file has 1056536"])
  })
})

describe("Llama2c: synthetic files", () => {
  // dim 8, hidden 12, 2 layers, 2 heads, 1 kv head (kv_dim 4), vocab 10, seq_len 6.
  const header = [8, 12, 2, 2, 1, 10, 6]
  const body = 10 * 8 + 2 * 8 + 2 * 64 + 2 * 32 + 2 * 32 + 2 * 64 + 2 * 8 + 3 * 2 * 96 + 8 // + rope + head below
  const rope = 2 * 6 * 2

  it("a negative vocab_size means an untied head, read after the skipped RoPE tables", async () => {
    const bytes = synthetic([8, 12, 2, 2, 1, -10, 6], body + rope + 10 * 8)
    const loaded = await Effect.runPromise(decodeLlama2c(bytes))
    expect(loaded.config.tieWordEmbeddings).toBe(false)
    expect(loaded.config.vocabSize).toBe(10)
    expect(loaded.weights.size).toBe(1 + 2 * 9 + 1 + 1)
    const head = loaded.weights.get("lm_head.weight")!
    expect(head.shape).toStrictEqual([10, 8])
    expect(head.dataSync()[0]).toBeCloseTo((body + rope) * 1e-3, 6)
    expect(head.dataSync()[79]).toBeCloseTo((body + rope + 79) * 1e-3, 6)
    // Layer 1's wk starts after the embedding, rms_att, wq and layer 0's wk.
    expect(loaded.weights.get("model.layers.1.self_attn.k_proj.weight")!.dataSync()[0]).toBeCloseTo((80 + 16 + 128 + 32) * 1e-3, 6)
    expect(loaded.weights.get("model.norm.weight")!.dataSync()[7]).toBeCloseTo((body - 1) * 1e-3, 6)
    disposeWeights(loaded.weights)
  })

  it("a truncated or oversized file is InvalidCheckpoint with the expected and actual byte counts", async () => {
    const expected = 28 + 4 * (body + rope)
    expect(llama2cFileBytes({ dim: 8, hiddenDim: 12, nLayers: 2, nHeads: 2, nKvHeads: 1, vocabSize: 10, seqLen: 6, sharedClassifier: true })).toBe(expected)
    const whole = synthetic(header, body + rope)
    const before = tf.memory().numTensors
    const truncated = (await failure(decodeLlama2c(whole.subarray(0, expected - 4), "t.bin"))) as InvalidCheckpoint
    expect(truncated).toBeInstanceOf(InvalidCheckpoint)
    expect([truncated.path, truncated.reason]).toStrictEqual(["t.bin", `truncated: the header implies ${expected} bytes (shared classifier), the file has ${expected - 4}`])
    const oversized = (await failure(decodeLlama2c(synthetic(header, body + rope + 1), "o.bin"))) as InvalidCheckpoint
    expect(oversized.reason).toBe(`oversized: the header implies ${expected} bytes (shared classifier), the file has ${expected + 4}`)
    // An untied header on a tied-size file: the head is missing.
    const untied = (await failure(decodeLlama2c(synthetic([8, 12, 2, 2, 1, -10, 6], body + rope)))) as InvalidCheckpoint
    expect(untied.reason).toBe(`truncated: the header implies ${expected + 320} bytes (separate classifier), the file has ${expected}; that is the size with a shared classifier: is the sign of vocab_size (negative = separate) wrong?`)
    expect(tf.memory().numTensors).toBe(before)
  })

  it("a bad header, a newer export version, a short file and a missing file are typed errors", async () => {
    const reason = async (bytes: Uint8Array) => ((await failure(decodeLlama2c(bytes))) as InvalidCheckpoint).reason
    expect(await reason(synthetic([8, 12, 2, 3, 1, 10, 6], 0))).toContain("dim must split into n_heads heads of even size")
    expect(await reason(synthetic([8, 12, 2, 2, 3, 10, 6], 0))).toContain("n_heads must be a multiple of n_kv_heads")
    expect(await reason(synthetic([8, 12, 0, 2, 1, 10, 6], 0))).toContain("sizes must be positive")
    expect(await reason(synthetic([0x616b3432, 1, 8, 12, 2, 2, 1], 0))).toContain("export version 1 (magic 'ak42') is not supported")
    expect(await reason(new Uint8Array(10))).toBe("truncated: 10 bytes, shorter than the 28-byte header")
    const missing = await failure(loadLlama2c(join(tempDir(), "none.bin")))
    expect(missing).toBeInstanceOf(FileError)
  })
})
