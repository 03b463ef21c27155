/**
 * The additive attention bias (causal + padding) and the position ids that padding implies.
 *
 * Masked scores get a large negative (-1e9), not -Infinity: a query row whose keys are all masked
 * (a left-padding position) then softmaxes to a finite uniform row instead of NaN, and the NaN
 * cannot leak into the gradient. Real rows are unaffected, since exp(-1e9 - max) is exactly 0 in
 * float32.
 *
 * The causal part is a cached [n, n] table sliced per call (grown by doubling), so no step
 * rebuilds a constant mask.
 */
import * as tf from "@tensorflow/tfjs-core"

/** The value added to masked attention scores. */
export const MASKED = -1e9

export class CausalMask {
  private table: tf.Tensor2D

  constructor(initialCapacity = 512) {
    this.table = CausalMask.build(Math.max(1, initialCapacity))
  }

  get capacity(): number {
    return this.table.shape[0]
  }

  /** Queries at absolute positions past .. past + t over keys 0 .. past + t: [1, 1, t, past + t]. */
  slice(past: number, t: number): tf.Tensor4D {
    const length = past + t
    if (length > this.capacity) {
      let capacity = this.capacity
      while (capacity < length) capacity *= 2
      // Slices taken earlier are separate tensors, so freeing the old table is safe.
      this.table.dispose()
      this.table = CausalMask.build(capacity)
    }
    return tf.tidy(() => tf.reshape(tf.slice(this.table, [past, 0], [t, length]), [1, 1, t, length]))
  }

  dispose(): void {
    this.table.dispose()
  }

  private static build(n: number): tf.Tensor2D {
    const values = new Float32Array(n * n)
    for (let i = 0; i < n; i++) values.fill(MASKED, i * n + i + 1, (i + 1) * n)
    return tf.tensor2d(values, [n, n])
  }
}

/**
 * The bias added to attention scores [b, heads, t, past + t]: causal, plus MASKED on padded keys
 * when `fullMask` ([b, past + t], 1 = token) is given. Undefined when nothing is masked (one new
 * token and no padding), so decoding steps skip the add.
 */
export const attentionBias = (
  causal: CausalMask,
  past: number,
  t: number,
  fullMask: tf.Tensor2D | undefined
): tf.Tensor4D | undefined =>
  tf.tidy(() => {
    const causalPart = t === 1 ? undefined : causal.slice(past, t)
    if (fullMask === undefined) return causalPart
    const [b, length] = fullMask.shape
    const padding = tf.reshape(tf.mul(tf.sub(1, fullMask), MASKED), [b, 1, 1, length]) as tf.Tensor4D
    return causalPart === undefined ? padding : tf.add<tf.Tensor4D>(causalPart, padding)
  })

/**
 * Position ids of the last `t` of the `fullMask` columns, HF's generation rule for padded batches:
 * cumsum(mask) - 1, clamped at 0, so a left-padded row's first real token is at position 0.
 * int32 [b, t].
 */
export const positionsFromMask = (fullMask: tf.Tensor2D, t: number): tf.Tensor2D =>
  tf.tidy(() => {
    const [b, length] = fullMask.shape
    const positions = tf.maximum(tf.sub(tf.cumsum(fullMask, 1), 1), 0)
    return tf.cast(tf.slice(positions, [0, length - t], [b, t]), "int32") as tf.Tensor2D
  })

/**
 * The full [b, past + t] mask for a call: `mask` as given when it already covers every position,
 * else the earlier mask (all ones when there was none) followed by this call's part (all ones
 * when absent). Undefined when no mask was ever given.
 */
export const fullAttentionMask = (
  batch: number,
  past: number,
  t: number,
  mask: tf.Tensor2D | undefined,
  pastMask: tf.Tensor2D | undefined
): tf.Tensor2D | undefined => {
  if (mask === undefined && pastMask === undefined) return undefined
  return tf.tidy(() => {
    const asFloat = (m: tf.Tensor2D) => (m.dtype === "float32" ? m : tf.cast(m, "float32"))
    if (mask !== undefined) {
      if (mask.shape[0] !== batch || (mask.shape[1] !== t && mask.shape[1] !== past + t)) {
        throw new RangeError(`attentionMask must be [${batch}, ${t}] or [${batch}, ${past + t}], got [${mask.shape.join(", ")}]`)
      }
      if (mask.shape[1] === past + t) return asFloat(mask)
    }
    const earlier = past === 0 ? undefined : (pastMask ?? tf.ones([batch, past]))
    const current = mask === undefined ? tf.ones([batch, t]) : asFloat(mask)
    return earlier === undefined ? current : tf.concat([earlier, current], 1)
  }) as tf.Tensor2D
}
