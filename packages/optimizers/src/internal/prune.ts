/**
 * Zeroing a fraction of a state tensor's entries (ReLoRA's optimizer-state pruning at a restart).
 */
import * as tf from "@tensorflow/tfjs-core"
import type { PruneMode } from "@peftkit/core"

/** 1 where `indices` (int32 [k]) point, 0 elsewhere, shape [n]. */
const indicator = (indices: tf.Tensor1D, n: number): tf.Tensor1D =>
  tf.scatterND(tf.expandDims(indices, 1), tf.ones([indices.shape[0]], "float32"), [n]) as tf.Tensor1D

/**
 * Exactly `round(fraction * size)` entries with the smallest |value| become 0; the others keep their
 * value. `tf.topk` picks the kept (or dropped, whichever set is smaller) entries by index, so ties
 * cannot make it keep more or fewer than asked, as a plain threshold comparison would.
 */
const byMagnitude = (tensor: tf.Tensor, fraction: number): tf.Tensor => {
  const n = tensor.size
  const drop = Math.round(fraction * n)
  if (drop === 0) return tf.clone(tensor)
  if (drop >= n) return tf.zerosLike(tensor)
  const flat = tf.reshape(tensor, [n]) as tf.Tensor1D
  const magnitude = tf.abs(flat)
  const keep = n - drop
  const mask =
    keep <= drop
      ? indicator(tf.topk(magnitude, keep).indices, n)
      : tf.sub(1, indicator(tf.topk(tf.neg(magnitude), drop).indices, n))
  // `where`, not a multiply: pruned entries become +0, never -0.
  return tf.reshape(tf.where(tf.cast(mask, "bool"), flat, tf.zerosLike(flat)), tensor.shape)
}

/** Each entry is zeroed independently with probability `fraction` (uniform draw < fraction). */
const atRandom = (tensor: tf.Tensor, fraction: number, seed: number | undefined): tf.Tensor => {
  if (fraction === 0) return tf.clone(tensor)
  const draw = tf.randomUniform(tensor.shape, 0, 1, "float32", seed)
  return tf.where(tf.greaterEqual(draw, fraction), tensor, tf.zerosLike(tensor))
}

/** A new tensor (the caller owns it) with `fraction` of `tensor`'s entries zeroed. */
export const pruneTensor = (tensor: tf.Tensor, fraction: number, mode: PruneMode, seed: number | undefined): tf.Tensor =>
  tf.tidy(() => (mode === "magnitude" ? byMagnitude(tensor, fraction) : atRandom(tensor, fraction, seed)))
