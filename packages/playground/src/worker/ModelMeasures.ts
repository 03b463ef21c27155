/**
 * What the worker measures on a model: the mean target loss over a split, and the logits on a fixed
 * input (the report carries them, so anyone can check that the downloaded files reproduce them).
 */
import type { Batcher } from "@peftkit/data"
import { type CausalLM, causalLmLoss } from "@peftkit/models"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import type { TrainingData } from "./TrainingData.js"

const PROBE_TOKENS = 32

/** Mean loss per target token over every batch of `batcher`; reads back two scalars per batch. */
export const meanLoss = (model: CausalLM, batcher: Batcher) =>
  Effect.promise(async () => {
    let sum = 0
    let count = 0
    for (let step = 0; step < batcher.batchesPerEpoch; step++) {
      const [loss, n] = tf.tidy(() => {
        const batch = batcher.batchAt(step)
        const logits = model.forward(batch.inputIds, { attentionMask: batch.attentionMask })
        const [b, t] = batch.lossMask.shape
        return [causalLmLoss(logits, batch.inputIds, batch.lossMask), tf.sum(tf.slice(batch.lossMask, [0, 1], [b, t - 1]))]
      })
      const [l, c] = [(await loss.data())[0]!, (await n.data())[0]!]
      loss.dispose()
      n.dispose()
      sum += l * c
      count += c
    }
    return count > 0 ? sum / count : Number.NaN
  })

export interface Probe {
  readonly inputIds: ReadonlyArray<number>
  readonly positions: ReadonlyArray<number>
  readonly logits: ReadonlyArray<ReadonlyArray<number>>
}

/** The logits on the first 32 tokens of the first validation (or train) example. */
export const probeLogits = async (model: CausalLM, data: TrainingData): Promise<Probe> => {
  const inputIds = (data.valid[0] ?? data.train[0]!).inputIds.slice(0, PROBE_TOKENS)
  const logits = tf.tidy(() => tf.squeeze(model.forward(tf.tensor2d([inputIds as Array<number>], [1, inputIds.length], "int32")), [0]) as tf.Tensor2D)
  const rows = (await logits.array()) as Array<Array<number>>
  logits.dispose()
  // All positions for a small vocabulary, the last four otherwise (the report stays small).
  const positions = rows.length * rows[0]!.length <= 65536 ? rows.map((_, i) => i) : rows.slice(-4).map((_, i) => rows.length - 4 + i)
  return { inputIds, positions, logits: positions.map((i) => rows[i]!) }
}
