/**
 * Evaluation as in MeZO (large_models/run.py `one_step_pred` / `evaluate`): each example's
 * candidates are encoded as MeZO does (`Prompting.ts`), each is scored by the log-likelihood of
 * its answer tokens, the prediction is the argmax (the first best on ties, like `np.argmax`), and
 * the task's metrics are computed. Unlike MeZO's one-sequence-at-a-time loop, all candidates of
 * `batchSize` examples go through the model in one padded forward pass with one read back.
 *
 * Score: MeZO ranks candidates by the MEAN log-probability of the answer tokens
 * (`scores = [x['log_probs'].mean().item() ...]`), which is the default here; `score: "sum"`
 * ranks by the summed log-likelihood instead. They agree whenever the label words have equal
 * token counts (e.g. single-token words with an OPT or Llama tokenizer).
 */
import { ConfigError } from "@peftkit/core"
import type { ThrownError } from "@peftkit/core"
import type { Tokenizer } from "@peftkit/tokenizers"
import { Effect } from "effect"
import { computeMetrics } from "./Metrics.js"
import type { TaskMetrics } from "./Metrics.js"
import { encodeCandidates } from "./Prompting.js"
import type { EncodedCandidate, PromptOptions } from "./Prompting.js"
import type { ScoringModel } from "./Scoring.js"
import { scoreOptions } from "./Scoring.js"
import type { Task } from "./Task.js"
import type { TaskExample } from "./TaskExample.js"

export interface EvaluateOptions extends PromptOptions {
  /** Examples per forward pass (all their candidates together). Default 8. */
  readonly batchSize?: number
  /** Rank candidates by the mean (MeZO, default) or the sum of the answer tokens' log-probabilities. */
  readonly score?: "mean" | "sum"
  /** Padding id; default the tokenizer's `padTokenId`. */
  readonly padTokenId?: number
  /** Called after each batch with the number of examples done and the total. */
  readonly onBatch?: (done: number, total: number) => void
}

export interface Prediction {
  readonly id: string
  readonly label: number
  readonly predicted: number
  /** One score per candidate (mean or sum, as chosen). */
  readonly scores: ReadonlyArray<number>
  readonly group?: string
}

export interface Evaluation {
  readonly predictions: ReadonlyArray<Prediction>
  readonly metrics: TaskMetrics
}

/** Index of the first largest value (`np.argmax`). */
export const argmax = (values: ReadonlyArray<number>): number => {
  let best = 0
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i
  return best
}

/** Predicts every example and computes the task's metrics. */
export const evaluate = <F>(
  task: Task<F>,
  model: ScoringModel,
  tokenizer: Tokenizer,
  examples: ReadonlyArray<TaskExample<F>>,
  options: EvaluateOptions = {}
): Effect.Effect<Evaluation, ThrownError> =>
  Effect.gen(function*() {
    const batchSize = options.batchSize ?? 8
    if (!Number.isInteger(batchSize) || batchSize < 1) return yield* Effect.fail(new ConfigError({ field: "batchSize", reason: `must be a positive integer, got ${batchSize}` }))
    const padTokenId = options.padTokenId ?? tokenizer.padTokenId
    const mode = options.score ?? "mean"
    const predictions: Array<Prediction> = []
    for (let start = 0; start < examples.length; start += batchSize) {
      const batch = examples.slice(start, start + batchSize)
      const encoded: Array<ReadonlyArray<EncodedCandidate>> = batch.map((e) => encodeCandidates(task, e, tokenizer, options))
      const scores = yield* scoreOptions(model, encoded.flat(), { padTokenId })
      let k = 0
      batch.forEach((example, i) => {
        const own = scores.slice(k, k + encoded[i]!.length).map((s) => (mode === "mean" ? s.mean : s.sum))
        k += encoded[i]!.length
        const prediction = { id: example.id, label: example.label, predicted: argmax(own), scores: own }
        predictions.push(example.group === undefined ? prediction : { ...prediction, group: example.group })
      })
      options.onBatch?.(Math.min(start + batchSize, examples.length), examples.length)
    }
    return { predictions, metrics: computeMetrics(task.metrics, predictions) }
  })
