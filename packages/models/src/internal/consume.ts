/**
 * Frees the temporaries a result was made from, as soon as it is made. Custom gradients need it:
 * tfjs runs a `customGrad` gradient outside any tidy of its own, so its temporaries would otherwise
 * live until the whole backward pass ends.
 */
import type * as tf from "@tensorflow/tfjs-core"

/** Frees `inputs` (never `result` itself) and returns `result`. */
export const consume = <T extends tf.Tensor>(inputs: tf.Tensor | ReadonlyArray<tf.Tensor>, result: T): T => {
  for (const input of Array.isArray(inputs) ? inputs : [inputs]) if (input !== result) input.dispose()
  return result
}
