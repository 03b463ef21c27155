/**
 * Gradient clipping by global L2 norm, with PyTorch's `torch.nn.utils.clip_grad_norm_` semantics:
 * the norm is taken over all gradients as one vector, and every gradient is multiplied by
 * `min(1, maxNorm / (norm + 1e-6))`. Everything stays on the device (no data is read back), so it
 * can sit in the middle of a training step; call it inside the caller's `tf.tidy`.
 *
 * As in PyTorch, a non-finite norm is not an error here: it propagates (an infinite norm zeroes the
 * gradients, NaN makes them NaN), and the training loop's non-finite loss check reports it.
 */
import * as tf from "@tensorflow/tfjs-core"
import type { NamedGradients } from "./Parameter.js"

/** sqrt(sum over all gradients of sum(g^2)), a float32 scalar the caller owns; 0 for no gradients. */
export const globalNorm = (grads: NamedGradients): tf.Scalar =>
  tf.tidy(() => {
    const squares = Object.values(grads).map((grad) => tf.sum(tf.square(grad)))
    if (squares.length === 0) return tf.scalar(0, "float32")
    return tf.sqrt(sumInChunks(squares)) as tf.Scalar
  })

/**
 * The sum of many tensors, added at most four at a time. tfjs-backend-webgpu's AddN binds one storage
 * buffer per input, and a WebGPU device may allow only 8 per shader stage (SwiftShader, lavapipe):
 * one addN over 28 gradients built an invalid pipeline and silently gave a wrong norm.
 */
const sumInChunks = (tensors: ReadonlyArray<tf.Tensor>): tf.Tensor => {
  let level = [...tensors]
  while (level.length > 1) {
    const next: Array<tf.Tensor> = []
    for (let i = 0; i < level.length; i += 4) {
      const chunk = level.slice(i, i + 4)
      next.push(chunk.length === 1 ? chunk[0]! : tf.addN(chunk))
    }
    level = next
  }
  return level[0]!
}

/**
 * Scales `grads` so that their global norm is at most `maxNorm`. Returns new gradient tensors (the
 * caller owns them; the inputs are left as they are, and are returned scaled by 1 when already
 * within the bound) and the norm before clipping.
 */
export const clipByGlobalNorm = (
  grads: NamedGradients,
  maxNorm: number
): { readonly grads: Record<string, tf.Tensor>; readonly norm: tf.Scalar } => {
  if (!(maxNorm >= 0) || !Number.isFinite(maxNorm)) throw new RangeError(`maxNorm must be a non-negative finite number, got ${maxNorm}`)
  return tf.tidy(() => {
    const norm = globalNorm(grads)
    const scale = tf.minimum(1, tf.div(maxNorm, tf.add(norm, 1e-6)))
    const clipped: Record<string, tf.Tensor> = {}
    for (const [name, grad] of Object.entries(grads)) clipped[name] = tf.mul(grad, scale)
    return { grads: clipped, norm }
  })
}
