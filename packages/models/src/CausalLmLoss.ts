/**
 * The causal language-modelling loss and label scoring. Position t predicts token t + 1, so the
 * targets are inputIds shifted left and the target's `lossMask` decides whether it counts: mask
 * the prompt to train on the completion only (MLX-LM's --mask-prompt), or everything but the label
 * word (the COLA paper's classification tasks).
 *
 * Log-probabilities come from `tf.logSoftmax` (max-shifted, with a stable custom gradient). The
 * target's entry is picked with a one-hot product rather than a gather: the gather's gradient
 * needs UnsortedSegmentSum, which the wasm backend lacks.
 */
import * as tf from "@tensorflow/tfjs-core"

/** log p(inputIds[:, i + 1] | prefix) for i < t - 1: [b, t - 1] float32. */
export const targetLogProbs = (logits: tf.Tensor3D, inputIds: tf.Tensor2D): tf.Tensor2D =>
  tf.tidy(() => {
    const [b, t, vocab] = logits.shape
    if (inputIds.shape[0] !== b || inputIds.shape[1] !== t) {
      throw new RangeError(`inputIds [${inputIds.shape.join(", ")}] do not match logits [${logits.shape.join(", ")}]`)
    }
    if (t < 2) return tf.zeros([b, 0]) as tf.Tensor2D
    const predictions = tf.slice(logits, [0, 0, 0], [b, t - 1, vocab])
    const targets = tf.slice(inputIds.dtype === "int32" ? inputIds : tf.cast(inputIds, "int32"), [0, 1], [b, t - 1])
    const logProbs = tf.logSoftmax(predictions)
    // An int32 one-hot cast to float32: tfjs-backend-wasm 4.22's OneHot ignores a float32 dtype and
    // writes int32 bits (1 reads as 1.4e-45), silently zeroing the loss.
    const onehot = tf.cast(tf.oneHot(targets, vocab), "float32")
    return tf.sum(tf.mul(logProbs, onehot), -1) as tf.Tensor2D
  })

/** lossMask[:, 1:] as float32: whether each next-token target counts. */
const targetMask = (lossMask: tf.Tensor2D): tf.Tensor2D => {
  const [b, t] = lossMask.shape
  const mask = tf.slice(lossMask, [0, 1], [b, Math.max(t - 1, 0)])
  return (mask.dtype === "float32" ? mask : tf.cast(mask, "float32")) as tf.Tensor2D
}

/**
 * Mean next-token cross-entropy over the target tokens whose `lossMask` is 1 (logits [b, t, V],
 * inputIds and lossMask [b, t]). A batch without any target gives 0, not NaN (the sum over no
 * tokens divided by max(count, 1)).
 */
export const causalLmLoss = (logits: tf.Tensor3D, inputIds: tf.Tensor2D, lossMask: tf.Tensor2D): tf.Scalar =>
  tf.tidy(() => {
    const mask = targetMask(lossMask)
    const total = tf.sum(tf.mul(targetLogProbs(logits, inputIds), mask))
    // 0 - total rather than -total: no targets gives +0, not -0.
    return tf.div(tf.sub(0, total), tf.maximum(tf.sum(mask), 1)) as tf.Scalar
  })

/**
 * Per-sequence sum of the log-probabilities of the masked targets: [b]. Scores candidate label
 * words (the paper's evaluation: the label whose tokens are most likely wins).
 */
export const tokenLogLikelihoods = (logits: tf.Tensor3D, inputIds: tf.Tensor2D, lossMask: tf.Tensor2D): tf.Tensor1D =>
  tf.tidy(() => tf.sum(tf.mul(targetLogProbs(logits, inputIds), targetMask(lossMask)), -1) as tf.Tensor1D)
