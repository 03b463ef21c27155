/**
 * A tokenized training example and a padded batch: the meeting point of data files, task prompts,
 * the loss and the CLI.
 */
import type * as tf from "@tensorflow/tfjs-core"

/**
 * One tokenized sequence; `lossMask[i]` is 1 where token i is a prediction target (0 = prompt, masked).
 * Token i is predicted from the tokens before it, so the loss pairs logits at i - 1 with token i;
 * `@peftkit/data` never marks token 0 (nothing precedes it).
 */
export interface TokenizedExample {
  readonly inputIds: ReadonlyArray<number>
  readonly lossMask: ReadonlyArray<number>
}

/** A padded batch on the device. */
export interface Batch {
  /** [batch, seq] int32. */
  readonly inputIds: tf.Tensor2D
  /** [batch, seq] float32: 1 for real tokens, 0 for padding (HF attention_mask). */
  readonly attentionMask: tf.Tensor2D
  /** [batch, seq] float32: 1 where the token is a loss target (never on padding). */
  readonly lossMask: tf.Tensor2D
  /** Real (non-pad) tokens in the batch, for throughput figures. */
  readonly tokens: number
}
