// Issue 10 items 6 and 8: a llama2.c header's sizes are checked against the file before anything
// is allocated, and a header that describes another model of the same byte size is refused.
import "@tensorflow/tfjs-backend-cpu"
import { InvalidCheckpoint } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Exit } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import { decodeLlama2c } from "../src/loaders/Llama2c.js"
import { disposeWeights } from "../src/loaders/LoadedCheckpoint.js"
import { writeRopeTables } from "./fixtures/loaders.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

/**
 * A llama2.c file written independently of the loader: the body is `k * 1e-3` for the k-th float,
 * except the two legacy RoPE tables, which hold cos and sin of pos * 10000^(-2j / head_dim), as
 * llama2.c's export writes them. `vocab < 0`: separate classifier.
 */
export const llama2cFile = (h: { dim: number; hidden: number; layers: number; heads: number; kvHeads: number; vocab: number; seqLen: number }): Uint8Array => {
  const { dim, hidden, layers, heads, kvHeads, vocab, seqLen } = h
  const v = Math.abs(vocab)
  const headDim = dim / heads
  const kv = kvHeads * headDim
  const before = v * dim + layers * (dim + dim * dim + 2 * kv * dim + dim * dim + dim + 3 * hidden * dim) + dim
  const tables = 2 * seqLen * (headDim / 2)
  const floats = before + tables + (vocab < 0 ? v * dim : 0)
  const bytes = new Uint8Array(28 + 4 * floats)
  const view = new DataView(bytes.buffer)
  ;[dim, hidden, layers, heads, kvHeads, vocab, seqLen].forEach((x, i) => view.setInt32(4 * i, x, true))
  for (let k = 0; k < floats; k++) view.setFloat32(28 + 4 * k, k * 1e-3, true)
  writeRopeTables(view, before, seqLen, headDim)
  return bytes
}

const reason = async (bytes: Uint8Array): Promise<string> => {
  const exit = await Effect.runPromiseExit(decodeLlama2c(bytes, "m.bin"))
  if (Exit.isSuccess(exit)) {
    disposeWeights(exit.value.weights)
    throw new Error("loaded")
  }
  if (exit.cause._tag !== "Fail") throw new Error(`not a typed failure: ${String(exit.cause)}`)
  expect(exit.cause.error).toBeInstanceOf(InvalidCheckpoint)
  return exit.cause.error.reason
}

const base = { dim: 8, hidden: 12, layers: 2, heads: 2, kvHeads: 1, vocab: 10, seqLen: 6 }

describe("llama2.c header sizes", () => {
  it("a file with real RoPE tables loads, tied and untied", async () => {
    for (const vocab of [10, -10]) {
      const loaded = await Effect.runPromise(decodeLlama2c(llama2cFile({ ...base, vocab })))
      expect(loaded.config.tieWordEmbeddings).toBe(vocab > 0)
      disposeWeights(loaded.weights)
    }
  })

  it("n_layers = 2^31-1 is refused from the header and the file size, at once", async () => {
    const bytes = llama2cFile(base)
    new DataView(bytes.buffer).setInt32(8, 2 ** 31 - 1, true)
    const started = Date.now()
    expect(await reason(bytes)).toMatch(/^truncated: the header implies \d+ bytes \(shared classifier\), the file has 4444$/)
    expect(Date.now() - started).toBeLessThan(1000)
  })

  it("every size at int32's maximum is refused by size, not allocation", async () => {
    for (let field = 0; field < 7; field++) {
      const bytes = llama2cFile(base)
      new DataView(bytes.buffer).setInt32(4 * field, 2 ** 31 - 1, true)
      expect(await reason(bytes)).toMatch(/header|implies/)
    }
  })

  it("a changed vocab_size and seq_len with the same file size is refused (the RoPE tables are elsewhere)", async () => {
    const bytes = llama2cFile(base)
    const view = new DataView(bytes.buffer)
    view.setInt32(20, 11, true) // one more 8-float embedding row
    view.setInt32(24, 4, true) // 2 * 4 * 2 = 16 floats of tables instead of 24: -8, vocab +8
    expect(await reason(bytes)).toBe(
      "header (dim 8, hidden_dim 12, n_layers 2, n_heads 2, n_kv_heads 1, vocab_size 11, seq_len 4) does not describe this file: its size fits, but the RoPE tables are not at byte 4380 where the header puts them (is vocab_size or seq_len wrong?)"
    )
  })

  it("a flipped vocab_size sign is named when the other classifier layout fits the file", async () => {
    const bytes = llama2cFile({ ...base, vocab: -10 })
    new DataView(bytes.buffer).setInt32(20, 10, true)
    expect(await reason(bytes)).toBe(
      "oversized: the header implies 4444 bytes (shared classifier), the file has 4764; that is the size with a separate classifier: is the sign of vocab_size (negative = separate) wrong?"
    )
  })

  it("NaN and Inf weights load with a warning naming the tensor", async () => {
    const bytes = llama2cFile(base)
    const view = new DataView(bytes.buffer)
    view.setFloat32(28 + 4 * 3, Number.NaN, true) // token embedding
    view.setFloat32(28 + 4 * 80, Number.POSITIVE_INFINITY, true) // layer 0 input_layernorm
    const loaded = await Effect.runPromise(decodeLlama2c(bytes))
    expect(loaded.warnings).toStrictEqual([
      "model.embed_tokens.weight holds 1 non-finite value(s) (NaN or Inf)",
      "model.layers.0.input_layernorm.weight holds 1 non-finite value(s) (NaN or Inf)"
    ])
    disposeWeights(loaded.weights)
  })
})
