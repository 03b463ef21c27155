/**
 * Keys and values of earlier positions, per layer, for incremental decoding: a forward with a
 * cache appends this call's keys/values and attends over every cached position.
 *
 * Storage is by concatenation, not a preallocated buffer. tfjs has no in-place slice write: a
 * "preallocated" cache would still allocate a whole new [b, heads, maxLength, d] tensor per step
 * (scatter or assign), and attention would have to mask the unused tail. Concatenation copies
 * only the used length, and attention runs over exactly the valid positions. Each step's copy is
 * O(length), the same order as that step's attention matmuls.
 *
 * The cache owns its tensors (kept out of the forward's `tf.tidy`); the previous step's are freed
 * when replaced. Call `dispose` when done. A forward that throws leaves the cache unusable.
 */
import * as tf from "@tensorflow/tfjs-core"

export class KvCache {
  private readonly keyTensors: Array<tf.Tensor4D | undefined>
  private readonly valueTensors: Array<tf.Tensor4D | undefined>
  private maskTensor: tf.Tensor2D | undefined = undefined
  private filled = 0

  constructor(
    readonly numLayers: number,
    readonly batch: number,
    /** Positions the cache may hold (prompt plus new tokens); a longer forward throws. */
    readonly maxLength: number
  ) {
    this.keyTensors = new Array(numLayers).fill(undefined)
    this.valueTensors = new Array(numLayers).fill(undefined)
  }

  /** Positions cached so far. */
  get length(): number {
    return this.filled
  }

  /** The attention mask of the cached positions [batch, length] (1 = token), when any call gave one. */
  get mask(): tf.Tensor2D | undefined {
    return this.maskTensor
  }

  /** Cached keys [batch, kvHeads, length, headDim] of a layer, if any. */
  keys(layer: number): tf.Tensor4D | undefined {
    return this.keyTensors[layer]
  }

  values(layer: number): tf.Tensor4D | undefined {
    return this.valueTensors[layer]
  }

  /** Throws unless `t` more positions fit; called by models before any layer runs. */
  check(batch: number, t: number): void {
    if (batch !== this.batch) throw new RangeError(`KV cache was made for batch ${this.batch}, got ${batch}`)
    if (this.filled + t > this.maxLength) {
      throw new RangeError(`KV cache holds ${this.maxLength} positions; ${this.filled} cached + ${t} new exceed it`)
    }
  }

  /**
   * Appends a layer's new keys/values [batch, kvHeads, t, headDim] and returns all of them
   * (cached first). Called inside the model's `tf.tidy`; the results are kept by the cache.
   */
  append(layer: number, keys: tf.Tensor4D, values: tf.Tensor4D): { keys: tf.Tensor4D; values: tf.Tensor4D } {
    const oldKeys = this.keyTensors[layer]
    const oldValues = this.valueTensors[layer]
    const allKeys = oldKeys === undefined ? keys : tf.concat([oldKeys, keys], 2)
    const allValues = oldValues === undefined ? values : tf.concat([oldValues, values], 2)
    this.keyTensors[layer] = tf.keep(allKeys)
    this.valueTensors[layer] = tf.keep(allValues)
    oldKeys?.dispose()
    oldValues?.dispose()
    return { keys: allKeys, values: allValues }
  }

  /** Records that a forward of `t` positions completed; `fullMask` [batch, length + t] when masked. */
  advance(t: number, fullMask: tf.Tensor2D | undefined): void {
    if (fullMask !== undefined) {
      // A copy: the mask may be the caller's own tensor, which the cache must not free later.
      const kept = tf.keep(tf.clone(fullMask))
      this.maskTensor?.dispose()
      this.maskTensor = kept
    }
    this.filled += t
  }

  /** Frees every cached tensor; the cache is empty (and reusable) afterwards. */
  dispose(): void {
    for (let i = 0; i < this.numLayers; i++) {
      this.keyTensors[i]?.dispose()
      this.valueTensors[i]?.dispose()
      this.keyTensors[i] = undefined
      this.valueTensors[i] = undefined
    }
    this.maskTensor?.dispose()
    this.maskTensor = undefined
    this.filled = 0
  }
}
