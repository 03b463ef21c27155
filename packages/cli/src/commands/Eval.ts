/**
 * `peftkit eval`: test loss and perplexity on a jsonl directory, or a paper task's metrics
 * (accuracy; macro-F1 for CB; F1a and exact match for MultiRC) by label-word log-likelihood.
 */
import { attempt, ConfigError, PositiveInt } from "@peftkit/core"
import { loadDataset, makeBatcher } from "@peftkit/data"
import { evaluate, loadTask, sampleTask, taskByName } from "@peftkit/tasks"
import { Effect, Schema } from "effect"
import { evalFlags } from "../CommandFlags.js"
import { baseLayers, loadModelAndTokenizer, say } from "../Runtime.js"
import { meanLoss } from "./Train.js"
import { applyAdapter, BackendFlag, decodeFlags, missingAdapter } from "./Shared.js"

const EvalOptions = Schema.Struct({
  model: Schema.String,
  adapterPath: Schema.optionalWith(Schema.String, { default: () => "adapters" }),
  noAdapter: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  data: Schema.optional(Schema.String),
  task: Schema.optional(Schema.String),
  taskData: Schema.optionalWith(Schema.String, { default: () => "../shared/data" }),
  split: Schema.optionalWith(Schema.Literal("test", "valid"), { default: () => "test" as const }),
  batchSize: Schema.optionalWith(PositiveInt, { default: () => 8 }),
  maxSeqLength: Schema.optionalWith(PositiveInt, { default: () => 512 }),
  limit: Schema.optional(PositiveInt),
  seed: Schema.optionalWith(Schema.Int, { default: () => 0 }),
  backend: BackendFlag
})
export type EvalOptions = typeof EvalOptions.Type

export type EvalResult =
  | { readonly kind: "loss"; readonly loss: number; readonly perplexity: number; readonly examples: number }
  | { readonly kind: "task"; readonly metrics: Readonly<Record<string, number | undefined>>; readonly examples: number }

export const runEval = (options: EvalOptions) =>
  Effect.gen(function* () {
    if ((options.data === undefined) === (options.task === undefined)) {
      return yield* new ConfigError({ field: "eval.data", reason: "give exactly one of --data DIR or --task NAME" })
    }
    // Before the model loads: a missing adapter is a usage error, said at once.
    const missing = !options.noAdapter ? missingAdapter(options.adapterPath, "eval", true) : undefined
    if (missing !== undefined) return yield* missing
    const { model, tokenizer, config } = yield* loadModelAndTokenizer(options.model)
    yield* applyAdapter(model, options.adapterPath, !options.noAdapter, "eval", true)
    const maxLength = Math.min(options.maxSeqLength, config.maxPositionEmbeddings)
    if (options.data !== undefined) {
      const dataset = yield* loadDataset(options.data, tokenizer, { maskPrompt: true, maxSeqLength: maxLength, required: [options.split] })
      const split = dataset[options.split]!
      const examples = split.examples.slice(0, options.limit)
      const loss = yield* meanLoss(model, makeBatcher(examples, { batchSize: options.batchSize, padTokenId: tokenizer.padTokenId, shuffle: false }), -1)
      yield* say(`${options.split === "test" ? "Test" : "Valid"} loss ${loss.toFixed(4)}, ${options.split === "test" ? "Test" : "Valid"} ppl ${Math.exp(loss).toFixed(3)} (${examples.length} examples)`)
      return { kind: "loss", loss, perplexity: Math.exp(loss), examples: examples.length } satisfies EvalResult
    }
    const task = yield* attempt(() => taskByName(options.task!))
    const splits = sampleTask(yield* loadTask(task, options.taskData), { seed: options.seed })
    const examples = (options.split === "test" ? splits.test : splits.dev).slice(0, options.limit)
    const evaluation = yield* evaluate(task, model, tokenizer, examples, { batchSize: options.batchSize, maxLength, padTokenId: tokenizer.padTokenId })
    const metrics = evaluation.metrics as unknown as Record<string, number | undefined>
    yield* say(`${task.name} ${options.split}: ${Object.entries(metrics).filter(([, v]) => v !== undefined).map(([k, v]) => `${k} ${(100 * v!).toFixed(2)}`).join(", ")} (${examples.length} examples)`)
    return { kind: "task", metrics, examples: examples.length } satisfies EvalResult
  })

export const evalCommand = (argv: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const options = yield* decodeFlags(argv, evalFlags, EvalOptions, "eval")
    yield* Effect.asVoid(runEval(options)).pipe(Effect.provide(baseLayers(options.backend)))
  })
