/**
 * The causal language-modelling loss and label scoring. Position t predicts token t + 1, so the
 * targets are inputIds shifted left and the target's `lossMask` decides whether it counts: mask
 * the prompt to train on the completion only (MLX-LM's --mask-prompt), or everything but the label
 * word (the COLA paper's classification tasks).
 *
 * Log-probabilities are max-shifted log-softmax values with a hand-written gradient
 * (softmax - onehot): the gather that picks the target runs only in the forward, since its own
 * gradient needs UnsortedSegmentSum, which the wasm backend lacks.
 */
import * as tf from "@tensorflow/tfjs-core"
import { consume } from "./internal/consume.js"

/** log p(inputIds[:, i + 1] | prefix) for i < t - 1: [b, t - 1] float32. */
export const targetLogProbs = (logits: tf.Tensor3D, inputIds: tf.Tensor2D): tf.Tensor2D =>
  tf.tidy(() => {
    const [b, t] = logits.shape
    if (inputIds.shape[0] !== b || inputIds.shape[1] !== t) {
      throw new RangeError(`inputIds [${inputIds.shape.join(", ")}] do not match logits [${logits.shape.join(", ")}]`)
    }
    if (t < 2) return tf.zeros([b, 0]) as tf.Tensor2D
    const targets = tf.slice(inputIds.dtype === "int32" ? inputIds : tf.cast(inputIds, "int32"), [0, 1], [b, t - 1]) as tf.Tensor2D
    return pickedLogProbs(logits, targets)
  })

/**
 * log_softmax(logits[:, :-1])[target] with its gradient written by hand: d/dlogits =
 * dy (onehot - softmax), zero for the last position. Saving only the max-shifted logits and the
 * log-sum-exp keeps two [b, t, V] tensors alive instead of the dozen that differentiating
 * slice, logSoftmax and the one-hot product leave (the head's output is the largest activation
 * of a language model).
 */
const pickedLogProbs = (logits: tf.Tensor3D, targets: tf.Tensor2D): tf.Tensor2D => {
  const [b, t, vocab] = logits.shape
  const rows = b * (t - 1)
  const picked = tf.customGrad((input, save) => {
    const predictions = tf.reshape(tf.slice(input as tf.Tensor3D, [0, 0, 0], [b, t - 1, vocab]), [rows, vocab])
    const shifted = tf.sub(predictions, tf.max(predictions, -1, true))
    const logSumExp = tf.log(tf.sum(tf.exp(shifted), -1, true))
    const flatTargets = tf.reshape(targets, [rows])
    // The target's entry of each row, gathered from the flattened rows (a forward-only gather).
    const positions = tf.add(tf.mul(tf.range(0, rows, 1, "int32"), tf.scalar(vocab, "int32")), flatTargets)
    const value = tf.reshape(tf.sub(tf.gather(tf.reshape(shifted, [-1]), positions), tf.reshape(logSumExp, [rows])), [b, t - 1])
    ;(save as tf.GradSaveFunc)([shifted, logSumExp, flatTargets])
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: Array<tf.Tensor>) => {
        const [savedShifted, savedLogSumExp, savedTargets] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D]
        // Each [rows, V] temporary is freed as soon as the next is made (a custom gradient's
        // temporaries otherwise live until the whole backward pass ends): two at a time at most.
        const logProbabilities = tf.sub(savedShifted, savedLogSumExp)
        const probabilities = consume(logProbabilities, tf.exp(logProbabilities))
        // An int32 one-hot cast to float32: tfjs-backend-wasm 4.22's OneHot ignores a float32
        // dtype and writes int32 bits (1 reads as 1.4e-45).
        const onehotInt = tf.oneHot(savedTargets, vocab)
        const onehot = consume(onehotInt, tf.cast(onehotInt, "float32"))
        const difference = consume([onehot, probabilities], tf.sub(onehot, probabilities))
        const scale = tf.reshape(dy, [rows, 1])
        const grad = consume([difference, scale], tf.mul(difference, scale))
        const perPosition = tf.reshape(grad, [b, t - 1, vocab])
        return consume([grad, perPosition], tf.pad(perPosition, [[0, 0], [0, 1], [0, 0]]))
      }
    }
  })
  return picked(logits) as tf.Tensor2D
}

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
