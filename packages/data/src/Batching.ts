/**
 * Padded batches by step. The order of examples is a seeded permutation per epoch, computed in plain
 * JavaScript (not with tfjs random ops), so it is the same on every backend and machine; batch `k`
 * is a pure function of (examples, options, k), so a resumed run at step k sees exactly the batches
 * an uninterrupted run would have.
 *
 * Batches are right-padded (training) with `padTokenId` to the longest example in the batch (rounded
 * up to `padToMultipleOf`, capped at `maxLength`), with `attentionMask` and `lossMask` as float32
 * [batch, seq]; `lossMask` is 0 on padding.
 */
import { ConfigError, decodeConfigSync, mixSeed, NonNegativeInt, PositiveInt, ShapeMismatch } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Schema } from "effect"
import type { Batch, TokenizedExample } from "./Example.js"

/** A small, fast 32-bit generator (mulberry32): uniform floats in [0, 1). */
const mulberry32 = (seed: number) => {
  let state = seed >>> 0
  return (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A seeded permutation of 0..n-1 (Fisher-Yates), identical on every platform. */
export const seededPermutation = (n: number, seed: number): Array<number> => {
  const order = Array.from({ length: n }, (_, i) => i)
  const random = mulberry32(seed)
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const swap = order[i]!
    order[i] = order[j]!
    order[j] = swap
  }
  return order
}

export interface CollateOptions {
  readonly padTokenId: number
  /** Round the padded length up to a multiple of this (e.g. 8). Default 1. */
  readonly padToMultipleOf?: number
  /** Never round up past this length (a longer example is still kept whole). */
  readonly maxLength?: number
}

/** The padded length of a batch whose longest example has `longest` tokens. */
export const paddedLength = (longest: number, options: Omit<CollateOptions, "padTokenId">): number => {
  const multiple = options.padToMultipleOf ?? 1
  const rounded = Math.ceil(longest / multiple) * multiple
  return options.maxLength === undefined ? rounded : Math.min(rounded, Math.max(longest, options.maxLength))
}

/**
 * Pads `examples` into one right-padded batch. Allocates exactly its three tensors (the caller, or the
 * trainer's `tf.tidy`, disposes them). Throws `ShapeMismatch` when an example's lossMask and inputIds
 * differ in length.
 */
export const collate = (examples: ReadonlyArray<TokenizedExample>, options: CollateOptions): Batch => {
  if (examples.length === 0) throw new ConfigError({ field: "collate.examples", reason: "a batch needs at least one example" })
  examples.forEach((example, i) => {
    if (example.lossMask.length !== example.inputIds.length) {
      throw new ShapeMismatch({ what: `example ${i} lossMask (vs inputIds)`, expected: [example.inputIds.length], actual: [example.lossMask.length] })
    }
  })
  const longest = Math.max(...examples.map((example) => example.inputIds.length))
  const length = paddedLength(longest, options)
  const size = examples.length * length
  const ids = new Int32Array(size).fill(options.padTokenId)
  const attention = new Float32Array(size)
  const loss = new Float32Array(size)
  let tokens = 0
  examples.forEach((example, row) => {
    const offset = row * length
    example.inputIds.forEach((id, i) => {
      ids[offset + i] = id
      attention[offset + i] = 1
      loss[offset + i] = example.lossMask[i]!
    })
    tokens += example.inputIds.length
  })
  const shape: [number, number] = [examples.length, length]
  return {
    inputIds: tf.tensor2d(ids, shape, "int32"),
    attentionMask: tf.tensor2d(attention, shape, "float32"),
    lossMask: tf.tensor2d(loss, shape, "float32"),
    tokens
  }
}

export interface BatcherOptions {
  readonly batchSize: number
  readonly padTokenId: number
  /** Seed of the per-epoch shuffles. Default 0. */
  readonly seed?: number
  /** Shuffle every epoch. Default true; false keeps file order. */
  readonly shuffle?: boolean
  /** Round padded lengths up to a multiple of this. Default 1. */
  readonly padToMultipleOf?: number
  /** Cap for that rounding (e.g. maxSeqLength). */
  readonly maxLength?: number
  /**
   * Drop each epoch's last, incomplete batch (MLX-LM does, keeping shapes fixed). Default false:
   * every example is used exactly once per epoch, the last batch may be smaller.
   */
  readonly dropRemainder?: boolean
}

const BatcherOptionsSchema = Schema.Struct({
  batchSize: PositiveInt,
  padTokenId: NonNegativeInt,
  seed: Schema.optional(Schema.Int),
  shuffle: Schema.optional(Schema.Boolean),
  padToMultipleOf: Schema.optional(PositiveInt),
  maxLength: Schema.optional(PositiveInt),
  dropRemainder: Schema.optional(Schema.Boolean)
})

/** Batches by step over epochs of seeded shuffles; see the module comment. */
export class Batcher {
  readonly batchSize: number
  readonly batchesPerEpoch: number
  readonly options: BatcherOptions
  private cachedEpoch = -1
  private cachedOrder: ReadonlyArray<number> = []

  /** Throws `ConfigError` for bad options, no examples, or (with `dropRemainder`) fewer examples than a batch. */
  constructor(readonly examples: ReadonlyArray<TokenizedExample>, options: BatcherOptions) {
    this.options = decodeConfigSync(BatcherOptionsSchema, options, "batches")
    this.batchSize = options.batchSize
    if (examples.length === 0) throw new ConfigError({ field: "batches.examples", reason: "no examples to batch" })
    const full = Math.floor(examples.length / this.batchSize)
    this.batchesPerEpoch = options.dropRemainder === true ? full : Math.ceil(examples.length / this.batchSize)
    if (this.batchesPerEpoch === 0) {
      throw new ConfigError({ field: "batches.batchSize", reason: `${examples.length} examples make no full batch of ${this.batchSize} with dropRemainder` })
    }
  }

  /** The epoch (0-based) that step `step` falls in. */
  epochOf(step: number): number {
    return Math.floor(step / this.batchesPerEpoch)
  }

  /** The example order of `epoch`: a permutation seeded by (seed, epoch), or file order without shuffling. */
  epochOrder(epoch: number): ReadonlyArray<number> {
    if (epoch !== this.cachedEpoch) {
      const n = this.examples.length
      this.cachedOrder = this.options.shuffle === false ? Array.from({ length: n }, (_, i) => i) : seededPermutation(n, mixSeed(this.options.seed ?? 0, epoch))
      this.cachedEpoch = epoch
    }
    return this.cachedOrder
  }

  /** The indices (into `examples`) of batch `step`. */
  indicesAt(step: number): ReadonlyArray<number> {
    if (!Number.isInteger(step) || step < 0) throw new ConfigError({ field: "batches.step", reason: `must be a non-negative integer, got ${step}` })
    const within = step % this.batchesPerEpoch
    return this.epochOrder(this.epochOf(step)).slice(within * this.batchSize, (within + 1) * this.batchSize)
  }

  /** The examples of batch `step`. */
  examplesAt(step: number): ReadonlyArray<TokenizedExample> {
    return this.indicesAt(step).map((i) => this.examples[i]!)
  }

  /** Real tokens in batch `step`, without building it (the trainer's `tokensPerBatch`). */
  tokensAt(step: number): number {
    return this.examplesAt(step).reduce((sum, example) => sum + example.inputIds.length, 0)
  }

  /** Batch `step`, padded; a pure function of the step, so training resumes at any step. */
  batchAt(step: number): Batch {
    const { padTokenId, padToMultipleOf, maxLength } = this.options
    return collate(this.examplesAt(step), { padTokenId, ...(padToMultipleOf === undefined ? {} : { padToMultipleOf }), ...(maxLength === undefined ? {} : { maxLength }) })
  }

  /** Batches `from`, `from + 1`, ... (`count` of them, or forever). The caller disposes each batch's tensors. */
  *iterate(from = 0, count = Number.POSITIVE_INFINITY): Generator<Batch> {
    for (let step = from; step < from + count; step++) yield this.batchAt(step)
  }
}

/** `new Batcher(examples, options)`. */
export const makeBatcher = (examples: ReadonlyArray<TokenizedExample>, options: BatcherOptions): Batcher => new Batcher(examples, options)
