/** Padding values and masks, seeded shuffling, resuming by step, and tensor ownership. */
import { ConfigError, ShapeMismatch } from "@peftkit/core"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { beforeAll, describe, expect, it } from "vitest"
import { Batcher, collate, makeBatcher, paddedLength, seededPermutation } from "../src/index.js"
import type { Batch, TokenizedExample } from "../src/index.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const PAD = 0

/** Example i: ids [100 + i, ...] of length 1 + (i % 4), loss on all but the first token. */
const examples = (n: number): Array<TokenizedExample> =>
  Array.from({ length: n }, (_, i) => {
    const length = 1 + (i % 4)
    return { inputIds: Array.from({ length }, (_, k) => 100 * (i + 1) + k), lossMask: Array.from({ length }, (_, k) => (k === 0 ? 0 : 1)) }
  })

const read = (batch: Batch) => ({
  inputIds: batch.inputIds.arraySync(),
  attentionMask: batch.attentionMask.arraySync(),
  lossMask: batch.lossMask.arraySync(),
  tokens: batch.tokens
})

const dispose = (batch: Batch) => tf.dispose([batch.inputIds, batch.attentionMask, batch.lossMask])

/** The example index of each row (ids start at 100 * (index + 1)). */
const rowsOf = (batch: Batch): Array<number> => batch.inputIds.arraySync().map((row) => Math.floor(row[0]! / 100) - 1)

describe("collate", () => {
  const batch = [
    { inputIds: [1, 5, 6, 2], lossMask: [0, 0, 1, 1] },
    { inputIds: [1, 7], lossMask: [0, 1] },
    { inputIds: [1, 8, 9], lossMask: [0, 1, 1] }
  ]

  it("right-pads with padTokenId to the longest; attention 1 on real tokens; loss mask kept, 0 on padding", () => {
    const out = collate(batch, { padTokenId: 3 })
    expect(out.inputIds.dtype).toBe("int32")
    expect([out.attentionMask.dtype, out.lossMask.dtype]).toEqual(["float32", "float32"])
    expect(read(out)).toEqual({
      inputIds: [[1, 5, 6, 2], [1, 7, 3, 3], [1, 8, 9, 3]],
      attentionMask: [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]],
      lossMask: [[0, 0, 1, 1], [0, 1, 0, 0], [0, 1, 1, 0]],
      tokens: 9
    })
    dispose(out)
  })

  it("pads to a multiple of 8 when asked, never beyond maxLength unless an example is longer", () => {
    const out = collate(batch, { padTokenId: PAD, padToMultipleOf: 8 })
    expect(out.inputIds.shape).toEqual([3, 8])
    expect(out.inputIds.arraySync()[1]).toEqual([1, 7, 0, 0, 0, 0, 0, 0])
    expect(out.lossMask.arraySync()[0]).toEqual([0, 0, 1, 1, 0, 0, 0, 0])
    expect(out.tokens).toBe(9)
    dispose(out)
    expect([paddedLength(4, { padToMultipleOf: 8 }), paddedLength(9, { padToMultipleOf: 8 }), paddedLength(9, { padToMultipleOf: 8, maxLength: 12 }), paddedLength(13, { padToMultipleOf: 8, maxLength: 12 })]).toEqual([8, 16, 12, 13])
  })

  it("allocates exactly its three tensors", () => {
    const before = tf.memory().numTensors
    const out = collate(batch, { padTokenId: PAD })
    expect(tf.memory().numTensors).toBe(before + 3)
    dispose(out)
    expect(tf.memory().numTensors).toBe(before)
  })

  it("rejects a loss mask of the wrong length, and an empty batch", () => {
    expect(() => collate([{ inputIds: [1, 2], lossMask: [0] }], { padTokenId: PAD })).toThrow(ShapeMismatch)
    expect(() => collate([], { padTokenId: PAD })).toThrow(ConfigError)
  })
})

describe("Batcher: shuffling", () => {
  it("pins the permutation for a seed, computed without tfjs (the same on every backend)", () => {
    const batcher = new Batcher(examples(10), { batchSize: 4, padTokenId: PAD, seed: 0 })
    expect(batcher.epochOrder(0)).toEqual([9, 6, 0, 5, 8, 2, 4, 3, 1, 7])
    expect(batcher.epochOrder(1)).toEqual([7, 9, 5, 3, 0, 8, 1, 2, 4, 6])
    expect(seededPermutation(10, 12345)).toEqual([6, 4, 8, 0, 1, 7, 5, 3, 2, 9])
  })

  it("same seed same order; different seed different order; each example exactly once per epoch", () => {
    const data = examples(23)
    const orderOf = (seed: number, epochs: number) => {
      const batcher = new Batcher(data, { batchSize: 5, padTokenId: PAD, seed })
      return Array.from({ length: epochs * batcher.batchesPerEpoch }, (_, step) => batcher.indicesAt(step))
    }
    const a = orderOf(7, 3)
    expect(orderOf(7, 3)).toEqual(a)
    expect(orderOf(8, 3)).not.toEqual(a)
    const perEpoch = 5 // ceil(23 / 5)
    for (let epoch = 0; epoch < 3; epoch++) {
      const seen = a.slice(epoch * perEpoch, (epoch + 1) * perEpoch).flat()
      expect(seen).toHaveLength(23)
      expect([...seen].sort((x, y) => x - y)).toEqual(Array.from({ length: 23 }, (_, i) => i))
    }
    // A fresh permutation every epoch.
    expect(a.slice(0, perEpoch).flat()).not.toEqual(a.slice(perEpoch, 2 * perEpoch).flat())
    // The last batch of an epoch holds the remainder.
    expect(a.slice(0, perEpoch).map((indices) => indices.length)).toEqual([5, 5, 5, 5, 3])
  })

  it("shuffle: false keeps file order; dropRemainder drops the incomplete batch (MLX-LM's fixed shapes)", () => {
    const inOrder = new Batcher(examples(7), { batchSize: 3, padTokenId: PAD, shuffle: false })
    expect([0, 1, 2, 3].map((step) => inOrder.indicesAt(step))).toEqual([[0, 1, 2], [3, 4, 5], [6], [0, 1, 2]])
    const dropping = makeBatcher(examples(7), { batchSize: 3, padTokenId: PAD, shuffle: false, dropRemainder: true })
    expect(dropping.batchesPerEpoch).toBe(2)
    expect([0, 1, 2].map((step) => dropping.indicesAt(step))).toEqual([[0, 1, 2], [3, 4, 5], [0, 1, 2]])
  })

  it("bad options are a ConfigError naming the field", () => {
    expect(() => new Batcher(examples(3), { batchSize: 0, padTokenId: PAD })).toThrow("invalid config: 'batches.batchSize'")
    expect(() => new Batcher(examples(3), { batchSize: 2, padTokenId: -1 })).toThrow("'batches.padTokenId'")
    expect(() => new Batcher([], { batchSize: 2, padTokenId: PAD })).toThrow("no examples to batch")
    expect(() => new Batcher(examples(3), { batchSize: 4, padTokenId: PAD, dropRemainder: true })).toThrow("3 examples make no full batch of 4")
    expect(() => new Batcher(examples(3), { batchSize: 2, padTokenId: PAD, sede: 1 } as never)).toThrow("'batches.sede': unknown key")
  })
})

describe("Batcher: batches by step", () => {
  const options = { batchSize: 4, padTokenId: PAD, seed: 3, padToMultipleOf: 2 }

  it("batchAt(k) equals the k-th batch of a fresh iteration, in any call order (resume)", () => {
    const data = examples(10)
    const fresh = new Batcher(data, options)
    const sequence = [...fresh.iterate(0, 9)].map((batch) => {
      const values = read(batch)
      dispose(batch)
      return values
    })
    const resumed = new Batcher(data, options)
    for (const step of [7, 2, 8, 0, 5, 3]) {
      const batch = resumed.batchAt(step)
      expect(read(batch), `step ${step}`).toEqual(sequence[step])
      dispose(batch)
    }
    const from = [...resumed.iterate(4, 2)].map((batch) => {
      const values = read(batch)
      dispose(batch)
      return values
    })
    expect(from).toEqual(sequence.slice(4, 6))
  })

  it("a batch holds its examples' tokens, right-padded, with the masks; tokens counts real tokens", () => {
    const data = examples(10)
    const batcher = new Batcher(data, options)
    const batch = batcher.batchAt(1)
    const rows = rowsOf(batch)
    expect(rows).toEqual([...batcher.indicesAt(1)])
    const values = read(batch)
    const longest = Math.max(...rows.map((i) => data[i]!.inputIds.length))
    const width = Math.ceil(longest / 2) * 2
    rows.forEach((index, r) => {
      const example = data[index]!
      const padding = new Array(width - example.inputIds.length).fill(0)
      expect(values.inputIds[r]).toEqual([...example.inputIds, ...padding.map(() => PAD)])
      expect(values.attentionMask[r]).toEqual([...example.inputIds.map(() => 1), ...padding])
      expect(values.lossMask[r]).toEqual([...example.lossMask, ...padding])
    })
    expect(values.tokens).toBe(rows.reduce((sum, i) => sum + data[i]!.inputIds.length, 0))
    expect(batcher.tokensAt(1)).toBe(values.tokens)
    dispose(batch)
  })

  it("a batch inside tf.tidy is freed with it (the trainer's step)", () => {
    const batcher = new Batcher(examples(10), options)
    const before = tf.memory().numTensors
    const sum = tf.tidy(() => {
      const batch = batcher.batchAt(0)
      return tf.sum(tf.mul(batch.lossMask, batch.attentionMask))
    })
    expect(tf.memory().numTensors).toBe(before + 1)
    expect(sum.dataSync()[0]).toBe(batcher.examplesAt(0).reduce((s, e) => s + e.lossMask.reduce((x, y) => x + y, 0), 0))
    sum.dispose()
  })

  it("rejects a negative or fractional step", () => {
    const batcher = new Batcher(examples(4), options)
    expect(() => batcher.indicesAt(-1)).toThrow(ConfigError)
    expect(() => batcher.indicesAt(1.5)).toThrow(ConfigError)
  })
})
