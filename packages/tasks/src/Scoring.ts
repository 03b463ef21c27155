/**
 * Scoring candidate answers by the model's log-likelihood of their tokens given the prompt, many
 * sequences in one forward pass: sequences are right-padded into one [rows, maxLen] batch with an
 * attention mask, the logits that predict each answer token are gathered, a numerically stable
 * log-softmax (x - max - log sum exp(x - max)) is taken over the vocabulary for those rows only,
 * and the token's log-probability is picked; the whole batch is read back to the host once.
 */
import { attempt, ShapeMismatch } from "@peftkit/core"
import type { ThrownError } from "@peftkit/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import type { EncodedCandidate } from "./Prompting.js"

/**
 * What scoring needs of a model: the `CausalLM` contract's `forward` (a `CausalLM` from
 * `@peftkit/models` is one). inputIds [batch, seq] int32 -> logits [batch, seq, vocab] float32.
 */
export interface ScoringModel {
  forward(inputIds: tf.Tensor2D, options?: { readonly attentionMask?: tf.Tensor2D }): tf.Tensor3D
}

/** The log-likelihood of one candidate's answer tokens. */
export interface OptionScore {
  /** Sum over the answer tokens of log p(token | everything before it). */
  readonly sum: number
  /** `sum / tokens`: MeZO's score (`log_probs.mean()`). */
  readonly mean: number
  /** How many answer tokens were scored. */
  readonly tokens: number
}

/** Host-side layout of a right-padded batch and the flat indices of the answer tokens. */
interface Layout {
  readonly rows: number
  readonly length: number
  readonly ids: Int32Array
  readonly mask: Float32Array
  /** For each answer token, the flat row (b * length + t - 1) of the logits that predict it. */
  readonly predictors: Int32Array
  /** For each answer token, its id. */
  readonly targets: Int32Array
}

const layout = (sequences: ReadonlyArray<EncodedCandidate>, padTokenId: number): Layout => {
  const rows = sequences.length
  const length = Math.max(...sequences.map((s) => s.inputIds.length))
  const ids = new Int32Array(rows * length).fill(padTokenId)
  const mask = new Float32Array(rows * length)
  const total = sequences.reduce((n, s) => n + s.optionLength, 0)
  const predictors = new Int32Array(total)
  const targets = new Int32Array(total)
  let k = 0
  sequences.forEach((s, b) => {
    const n = s.inputIds.length
    if (!Number.isInteger(s.optionLength) || s.optionLength < 1 || s.optionLength >= n) {
      throw new RangeError(`sequence ${b}: optionLength must be in [1, ${n - 1}], got ${s.optionLength}`)
    }
    for (let t = 0; t < n; t++) {
      ids[b * length + t] = s.inputIds[t]!
      mask[b * length + t] = 1
    }
    for (let t = n - s.optionLength; t < n; t++) {
      predictors[k] = b * length + t - 1
      targets[k] = s.inputIds[t]!
      k++
    }
  })
  return { rows, length, ids, mask, predictors, targets }
}

/**
 * The log-probability of every answer token of every sequence, in sequence order then token
 * order, as one float32 tensor [sum of optionLength] (the caller disposes it). One forward pass;
 * synchronous tfjs inside `tf.tidy`. Throws `ShapeMismatch` when the model's logits are not
 * [rows, maxLen, vocab], `RangeError` for a token id outside the vocabulary.
 */
export const optionLogProbs = (model: ScoringModel, sequences: ReadonlyArray<EncodedCandidate>, padTokenId: number): tf.Tensor1D => {
  if (sequences.length === 0) return tf.tensor1d([], "float32")
  const l = layout(sequences, padTokenId)
  return tf.tidy(() => {
    const inputIds = tf.tensor2d(l.ids, [l.rows, l.length], "int32")
    const attentionMask = tf.tensor2d(l.mask, [l.rows, l.length], "float32")
    const logits = model.forward(inputIds, { attentionMask })
    const [b, t, vocab] = logits.shape
    if (b !== l.rows || t !== l.length) throw new ShapeMismatch({ what: "logits", expected: [l.rows, l.length, vocab], actual: logits.shape })
    for (const id of l.targets) if (id < 0 || id >= vocab) throw new RangeError(`token id ${id} is outside the model's vocabulary of ${vocab}`)
    const n = l.targets.length
    // Only the rows that predict an answer token: [n, vocab].
    const rows = tf.gather(tf.reshape(logits, [l.rows * l.length, vocab]), tf.tensor1d(l.predictors, "int32"))
    // Stable log-softmax: log p(v) = (x_v - max) - log(sum exp(x - max)).
    const shifted = tf.sub(rows, tf.max(rows, 1, true))
    const logNormalizer = tf.reshape(tf.log(tf.sum(tf.exp(shifted), 1)), [n])
    const pickIndex = new Int32Array(n)
    for (let i = 0; i < n; i++) pickIndex[i] = i * vocab + l.targets[i]!
    const picked = tf.gather(tf.reshape(shifted, [n * vocab]), tf.tensor1d(pickIndex, "int32"))
    return tf.sub(picked, logNormalizer) as tf.Tensor1D
  })
}

/**
 * Scores every sequence's answer tokens in one forward pass and one read back. Pad with
 * `padTokenId` (the tokenizer's); its value never matters, the attention mask hides it.
 */
export const scoreOptions = (
  model: ScoringModel,
  sequences: ReadonlyArray<EncodedCandidate>,
  options: { readonly padTokenId: number }
): Effect.Effect<ReadonlyArray<OptionScore>, ThrownError> =>
  sequences.length === 0
    ? Effect.succeed([])
    : Effect.flatMap(attempt(() => optionLogProbs(model, sequences, options.padTokenId)), (logProbs) =>
      Effect.promise(() => logProbs.data() as Promise<Float32Array>).pipe(
        Effect.ensuring(Effect.sync(() => logProbs.dispose())),
        Effect.map((values) => {
          let k = 0
          return sequences.map((s) => {
            let sum = 0 // float64 accumulation on the host
            for (let i = 0; i < s.optionLength; i++) sum += values[k++]!
            return { sum, mean: sum / s.optionLength, tokens: s.optionLength }
          })
        })
      ))
