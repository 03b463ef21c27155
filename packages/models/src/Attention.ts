/**
 * Scaled dot-product attention as batched matmuls over [b, heads, t, d], with grouped-query
 * attention (GQA).
 *
 * GQA without repeating k/v: query head h uses kv head floor(h / g) (HF's `repeat_kv`), and with
 * h = kvHead * g + i the query tensor [b, heads, t, d] is, memory for memory,
 * [b, kvHeads, g * t, d]. One matmul per kv head then covers its g query heads, and the keys and
 * values (and the KV cache) are never copied g times. Same numbers as repeating, less memory.
 */
import { backendOps } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"

/** [b * t, heads * d] (a linear layer's output) -> [b, heads, t, d]. */
export const splitHeads = (x: tf.Tensor, b: number, t: number, heads: number, headDim: number): tf.Tensor4D =>
  tf.tidy(() => tf.transpose(tf.reshape(x, [b, t, heads, headDim]), [0, 2, 1, 3]))

/** [b, heads, t, d] -> [b * t, heads * d], the input layout of the output projection. */
export const mergeHeads = (x: tf.Tensor4D): tf.Tensor2D =>
  tf.tidy(() => {
    const [b, heads, t, d] = x.shape
    return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [b * t, heads * d])
  })

/**
 * softmax(q k^T + bias) v. q [b, heads, t, d] must already be scaled (by 1/sqrt(d)) and rotated;
 * k, v [b, kvHeads, L, d] with heads a multiple of kvHeads; bias broadcastable to [b, heads, t, L]
 * (see `attentionBias`) or undefined. Returns [b, heads, t, d]. A backend may compute it its own
 * way (core's `BackendOps.attention`; wasm runs one fused kernel of its own): same values.
 */
export const attend = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, bias: tf.Tensor4D | undefined): tf.Tensor4D =>
  tf.tidy((): tf.Tensor4D => {
    const fast = backendOps().attention?.(q, k, v, bias)
    if (fast !== undefined) return fast
    const [b, heads, t, d] = q.shape
    const kvHeads = k.shape[1]
    const length = k.shape[2]
    const groups = heads / kvHeads
    const grouped = groups === 1 ? q : tf.reshape(q, [b, kvHeads, groups * t, d])
    let scores: tf.Tensor = tf.matMul(grouped, k, false, true)
    if (groups !== 1) scores = tf.reshape(scores, [b, heads, t, length])
    if (bias !== undefined) scores = tf.add(scores, bias)
    let probs: tf.Tensor = tf.softmax(scores)
    if (groups !== 1) probs = tf.reshape(probs, [b, kvHeads, groups * t, length])
    const out = tf.matMul(probs as tf.Tensor4D, v) as tf.Tensor4D
    return groups === 1 ? out : tf.reshape(out, [b, heads, t, d])
  })
