/**
 * Rotary position embeddings with both pairings of a head's dimensions:
 * - "half" (HF `rotate_half`): dimension i rotates with i + d/2;
 * - "interleaved" (llama2.c, Meta's original code): 2i rotates with 2i + 1.
 * Both rotate pair j by angle pos * theta^(-2j/d), so a model converted between layouts by
 * permuting the q/k weight rows (HF's `permute` in convert_llama_weights_to_hf.py) gives the same
 * attention scores.
 *
 * Either way the rotation is `x * cos + swap(x) * sinSigned`, where `swap` exchanges the two members
 * of each pair (one reshape + reverse) and the sign of `rotate_half` is folded into the cached sin
 * table. The cos/sin tables are computed once per model for a capacity and grown (doubled) only
 * when a longer sequence arrives, never per step. (On wasm, backend-cpu replaces tfjs's slow Reverse
 * kernel with a copy.)
 */
import * as tf from "@tensorflow/tfjs-core"
import { consume } from "./internal/consume.js"
import type { RopeScaling } from "./ModelConfig.js"

export type RopeLayout = "half" | "interleaved"

/**
 * The inverse frequencies theta^(-2j/d), j < d/2, rounded to float32 as HF computes them, with
 * HF's `rope_scaling` applied ("linear": divided by factor; "llama3": `_compute_llama3_parameters`).
 */
export const ropeInverseFrequencies = (headDim: number, theta: number, scaling?: RopeScaling): Float32Array => {
  const half = headDim / 2
  const out = new Float32Array(half)
  for (let j = 0; j < half; j++) {
    const base = Math.fround(1 / Math.fround(theta ** Math.fround((2 * j) / headDim)))
    out[j] = scaling === undefined ? base : scaleFrequency(base, scaling)
  }
  return out
}

const scaleFrequency = (invFreq: number, scaling: RopeScaling): number => {
  if (scaling.type === "linear") return invFreq / scaling.factor
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: oldLength } = scaling
  const lowFreqWavelen = oldLength / lowFreqFactor
  const highFreqWavelen = oldLength / highFreqFactor
  const wavelen = (2 * Math.PI) / invFreq
  if (wavelen < highFreqWavelen) return invFreq
  if (wavelen > lowFreqWavelen) return invFreq / factor
  const smooth = (oldLength / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor)
  return (1 - smooth) * (invFreq / factor) + smooth * invFreq
}

/** cos and signed sin for some positions, broadcastable against [b, heads, t, headDim]. */
export interface RopeAngles {
  readonly cos: tf.Tensor
  readonly sin: tf.Tensor
}

export class Rope {
  private cosTable: tf.Tensor2D
  private sinTable: tf.Tensor2D
  private readonly invFreq: Float32Array

  constructor(
    readonly headDim: number,
    readonly theta: number,
    readonly layout: RopeLayout,
    scaling?: RopeScaling,
    initialCapacity = 512
  ) {
    if (headDim % 2 !== 0) throw new RangeError(`RoPE needs an even head dimension, got ${headDim}`)
    this.invFreq = ropeInverseFrequencies(headDim, theta, scaling)
    ;[this.cosTable, this.sinTable] = this.build(Math.max(1, initialCapacity))
  }

  /** Positions the cached tables cover. */
  get capacity(): number {
    return this.cosTable.shape[0]
  }

  /** Grows the tables (to the next power of two) so positions < length are covered. */
  ensure(length: number): void {
    if (length <= this.capacity) return
    let capacity = this.capacity
    while (capacity < length) capacity *= 2
    const [cos, sin] = this.build(capacity)
    // Slices and gathers taken from the old tables are separate tensors, so freeing these is safe.
    this.cosTable.dispose()
    this.sinTable.dispose()
    this.cosTable = cos
    this.sinTable = sin
  }

  /** Angles for positions start .. start + count, the same for every row: [1, 1, count, d]. */
  range(start: number, count: number): RopeAngles {
    this.ensure(start + count)
    return tf.tidy(() => ({
      cos: tf.reshape(tf.slice(this.cosTable, [start, 0], [count, this.headDim]), [1, 1, count, this.headDim]),
      sin: tf.reshape(tf.slice(this.sinTable, [start, 0], [count, this.headDim]), [1, 1, count, this.headDim])
    }))
  }

  /** Angles for per-row positions [b, t] int32 (left padding): [b, 1, t, d]. `maxPosition` bounds them. */
  gather(positions: tf.Tensor2D, maxPosition: number): RopeAngles {
    this.ensure(maxPosition + 1)
    const [b, t] = positions.shape
    return tf.tidy(() => ({
      cos: tf.reshape(tf.gather(this.cosTable, positions), [b, 1, t, this.headDim]),
      sin: tf.reshape(tf.gather(this.sinTable, positions), [b, 1, t, this.headDim])
    }))
  }

  /**
   * x [b, heads, t, d] rotated by `angles`. Differentiated by hand: the rotation is linear and
   * `swap` is its own inverse, so dx = dy cos + swap(dy sin), and nothing is saved for the backward
   * (tfjs's own differentiation would keep x, its swap and their products).
   */
  apply(x: tf.Tensor4D, angles: RopeAngles): tf.Tensor4D {
    const rotate = tf.customGrad((input, save) => {
      // The angles (small: [1 or b, 1, t, d]) may be freed before the backward runs.
      ;(save as tf.GradSaveFunc)([angles.cos, angles.sin])
      return { value: this.rotate(input as tf.Tensor4D, angles), gradFunc: rotateBack }
    })
    const rotateBack = (dy: tf.Tensor, saved: Array<tf.Tensor>) => {
      const [cos, sin] = saved as [tf.Tensor, tf.Tensor]
      const cosPart = tf.mul(dy, cos)
      const sinPart = tf.mul(dy, sin)
      const swapped = consume(sinPart, this.swap(sinPart as tf.Tensor4D))
      return consume([cosPart, swapped], tf.add(cosPart, swapped))
    }
    return rotate(x) as tf.Tensor4D
  }

  /** x cos + swap(x) sin. */
  private rotate(x: tf.Tensor4D, angles: RopeAngles): tf.Tensor4D {
    return tf.tidy(() => tf.add(tf.mul(x, angles.cos), tf.mul(this.swap(x), angles.sin)))
  }

  /** Exchanges the members of each pair: [x1 | x2] -> [x2 | x1] ("half") or (x0, x1) -> (x1, x0). */
  private swap(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const [b, h, t, d] = x.shape
      const pairs = this.layout === "half" ? tf.reshape(x, [b * h * t, 2, d / 2]) : tf.reshape(x, [b * h * t, d / 2, 2])
      return tf.reshape(tf.reverse(pairs, this.layout === "half" ? 1 : 2), [b, h, t, d])
    })
  }

  dispose(): void {
    this.cosTable.dispose()
    this.sinTable.dispose()
  }

  /**
   * cos and signed sin [capacity, d] in the layout's order. The angle is pos * invFreq rounded to
   * float32, as HF's float32 matmul of positions and inverse frequencies gives.
   */
  private build(capacity: number): [tf.Tensor2D, tf.Tensor2D] {
    const d = this.headDim
    const half = d / 2
    const cos = new Float32Array(capacity * d)
    const sin = new Float32Array(capacity * d)
    for (let pos = 0; pos < capacity; pos++) {
      for (let j = 0; j < half; j++) {
        const angle = Math.fround(pos * this.invFreq[j]!)
        const c = Math.cos(angle)
        const s = Math.sin(angle)
        // The first member of a pair gets -sin (it receives -x_partner), the second +sin.
        const [first, second] = this.layout === "half" ? [j, j + half] : [2 * j, 2 * j + 1]
        cos[pos * d + first] = c
        cos[pos * d + second] = c
        sin[pos * d + first] = -s
        sin[pos * d + second] = s
      }
    }
    return [tf.tensor2d(cos, [capacity, d]), tf.tensor2d(sin, [capacity, d])]
  }
}
