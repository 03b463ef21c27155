/** One finished link added to a weight with the knots' float32 ops: what `restoreChain` replays. */
import * as tf from "@tensorflow/tfjs-core"
import type { LinkUpdate } from "../Chain.js"

/** `weight` + the link's update, as a new tensor (call inside `tf.tidy`). */
export const addLink = (weight: tf.Tensor2D, shape: { readonly outFeatures: number; readonly inFeatures: number }, update: LinkUpdate): tf.Tensor2D => {
  const increment = update.kind === "factors"
    ? tf.matMul(tf.tensor2d(update.b, [shape.outFeatures, update.rank]), tf.tensor2d(update.a, [update.rank, shape.inFeatures]))
    : tf.tensor2d(update.delta, [shape.outFeatures, shape.inFeatures])
  // A row-scaled link merged as rowScale (W + b a) - W added to W, the ops of DoRA's merge.
  const added = update.kind === "factors" && update.rowScale !== undefined
    ? tf.sub(tf.mul(tf.tensor2d(update.rowScale, [shape.outFeatures, 1]), tf.add(weight, increment)), weight)
    : increment
  return tf.add(weight, added)
}
