/**
 * `peftkit train`: fine-tune a language model with an adapter variant, a chain of them, or all weights.
 *
 * Output directory (`--adapter-path`): the adapter in PEFT layout (for COLA: the whole chain as one
 * LoRA of rank links x r, exactly), `training_args.json`, `metrics.jsonl`, `report.html` (loss
 * curves) and `checkpoints/step-N/` every `--save-every` steps, from which `--resume` continues.
 */
import type { FileSystem } from "@effect/platform"
import {
  attempt,
  type CheckpointFiles,
  ConfigError,
  decodeConfig,
  type FileError,
  InvalidCheckpoint,
  listCheckpoints,
  listDirectory,
  makeSchedule,
  MetricsLog,
  OPTIMIZER_STATE_FILE,
  optimizerStateFile,
  readCheckpointFile,
  readTrainerState,
  restoreOptimizer,
  Safetensors,
  train,
  TrainingInterrupted,
  writeCheckpoint,
  writeFileAtomic
} from "@peftkit/core"
import { type Batch, type Batcher, loadDataset, makeBatcher, type TokenizedExample } from "@peftkit/data"
import { type CausalLM, causalLmLoss } from "@peftkit/models"
import { adamw } from "@peftkit/optimizers"
import { encodeTrainingExample, loadTask, sampleTask, taskByName } from "@peftkit/tasks"
import type { Tokenizer } from "@peftkit/tokenizers"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Option, Schema } from "effect"
import { join, resolve } from "node:path"
import { parseFlags } from "../Flags.js"
import { trainFlags } from "../CommandFlags.js"
import { lossReportHtml } from "../LossReport.js"
import { baseLayers, loadModelAndTokenizer, say } from "../Runtime.js"
import { methods } from "../methods/index.js"
import { claimOutputDirectory } from "../OutputDirectory.js"
import { stopOnSignals } from "../Signals.js"
import { TrainOptions } from "../TrainOptions.js"

const CHECKPOINTS = "checkpoints"

/** The options that define a run: a resume must use the same ones, or it trains something else. */
const RUN_DEFINING = ["model", "data", "task", "method", "variant", "rank", "alpha", "rslora", "freeze", "loraPlusRatio", "pissaNiter", "rankPattern", "alphaPattern", "links", "knotOptimizer", "linkWarmup", "racFreeze", "xgbRank", "xgbLayers", "xgbStepSize", "targetModules", "batchSize", "learningRate", "schedule", "warmup", "weightDecay", "seed", "maxSeqLength", "maskPrompt"] as const

const patternRecord = (field: string, items: ReadonlyArray<string>) =>
  Effect.forEach(items, (item) => {
    const at = item.lastIndexOf("=")
    const value = Number(item.slice(at + 1))
    return at <= 0 || item.slice(at + 1).trim() === "" || !Number.isFinite(value)
      ? Effect.fail(new ConfigError({ field: `train.${field}`, reason: `expected KEY=NUMBER items (e.g. q_proj=16), got '${item}'` }))
      : Effect.succeed([item.slice(0, at), value] as const)
  }).pipe(Effect.map((entries) => Object.fromEntries(entries)))

const runState = (options: TrainOptions, steps: number) => ({
  steps,
  ...Object.fromEntries(RUN_DEFINING.map((key) => [key, options[key] ?? null]))
})

/** Flags (and --config) to decoded options; `--no-mask-prompt` is the negation of `--mask-prompt`. */
export const decodeTrainOptions = (argv: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const raw = yield* attempt(() => parseFlags(argv, trainFlags))
    const { noMaskPrompt, verbose: _verbose, help: _help, ...rest } = raw as Record<string, unknown>
    if (noMaskPrompt === true) rest.maskPrompt = false
    // `--rank-pattern q_proj=16,layers.0.mlp.down_proj=4` (a list of key=value) as the record a config file gives.
    for (const field of ["rankPattern", "alphaPattern"] as const) {
      if (Array.isArray(rest[field])) rest[field] = yield* patternRecord(field, rest[field] as ReadonlyArray<string>)
    }
    const options = yield* decodeConfig(TrainOptions, rest, "train")
    if ((options.data === undefined) === (options.task === undefined)) {
      return yield* new ConfigError({ field: "train.data", reason: "give exactly one of --data DIR or --task NAME" })
    }
    if (options.iters !== undefined && options.epochs !== undefined) {
      return yield* new ConfigError({ field: "train.iters", reason: "give --iters or --epochs, not both" })
    }
    return options
  })

interface Splits {
  readonly train: ReadonlyArray<TokenizedExample>
  readonly valid: ReadonlyArray<TokenizedExample>
  readonly test: ReadonlyArray<TokenizedExample>
  readonly describe: string
}

/** Training data from a jsonl directory or one of the paper's tasks. */
export const loadTrainingData = (options: TrainOptions, tokenizer: Tokenizer, maxLength: number) =>
  Effect.gen(function* () {
    if (options.data !== undefined) {
      const dataset = yield* loadDataset(options.data, tokenizer, { maskPrompt: options.maskPrompt, maxSeqLength: maxLength, required: ["train"] })
      const truncated = (dataset.train?.truncated ?? 0) + (dataset.valid?.truncated ?? 0)
      if (truncated > 0) yield* say(`warning: ${truncated} examples longer than ${maxLength} tokens were truncated`)
      return {
        train: dataset.train!.examples,
        valid: dataset.valid?.examples ?? [],
        test: dataset.test?.examples ?? [],
        describe: `${options.data} (${dataset.train!.shape}; ${dataset.train!.examples.length} train, ${dataset.valid?.examples.length ?? 0} valid, ${dataset.test?.examples.length ?? 0} test${dataset.missing.length > 0 ? `; no ${dataset.missing.join("/")}` : ""})`
      } satisfies Splits
    }
    const task = yield* attempt(() => taskByName(options.task!))
    // The product never looks for data in a place the user did not name.
    if (options.taskData === undefined) {
      return yield* new ConfigError({ field: "train.taskData", reason: `--task ${options.task} needs --task-data DIR, the folder holding the GLUE/SuperGLUE task files` })
    }
    const data = yield* loadTask(task, options.taskData)
    const splits = sampleTask(data, { seed: options.seed })
    const encode = (examples: ReadonlyArray<(typeof splits.train)[number]>) => examples.map((example) => encodeTrainingExample(task, example, tokenizer, { maxLength }))
    return {
      train: encode(splits.train),
      valid: encode(splits.dev),
      test: encode(splits.test),
      describe: `task ${task.name} (MeZO sampling, seed ${options.seed}: ${splits.train.length} train, ${splits.dev.length} valid, ${splits.test.length} test)`
    } satisfies Splits
  })

/** Mean target loss over up to `maxBatches` batches (all when < 0); one read back at the end. */
export const meanLoss = (model: CausalLM, batcher: Batcher, maxBatches: number) =>
  Effect.promise(async () => {
    const count = maxBatches < 0 ? batcher.batchesPerEpoch : Math.min(maxBatches, batcher.batchesPerEpoch)
    let sum = tf.scalar(0)
    let targets = tf.scalar(0)
    for (let step = 0; step < count; step++) {
      const [nextSum, nextTargets] = tf.tidy(() => {
        const batch = batcher.batchAt(step)
        const logits = model.forward(batch.inputIds, { attentionMask: batch.attentionMask })
        const [b, t] = batch.lossMask.shape
        const n = tf.sum(tf.slice(batch.lossMask, [0, 1], [b, t - 1]))
        return [tf.add(sum, tf.mul(causalLmLoss(logits, batch.inputIds, batch.lossMask), n)), tf.add(targets, n)]
      })
      sum.dispose()
      targets.dispose()
      sum = nextSum
      targets = nextTargets
    }
    const [total, n] = [await sum.data(), await targets.data()]
    sum.dispose()
    targets.dispose()
    return n[0]! > 0 ? total[0]! / n[0]! : Number.NaN
  })

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`

/** What the command adds around a run. */
export interface RunControls {
  /** Asked after every step; true stops the run with a checkpoint (signals). */
  readonly stopRequested?: () => boolean
  /** Write the metrics log here (opened only once the run is set up); else the context's `MetricsLog`. */
  readonly metricsPath?: string
}

/** The history a checkpoint carries, so a resumed run reports (and plots) the whole run. */
const CheckpointHistory = Schema.Struct({
  trainLoss: Schema.Array(Schema.Struct({ step: Schema.Number, loss: Schema.Number, learningRate: Schema.Number })),
  validation: Schema.Array(Schema.Struct({ step: Schema.Number, loss: Schema.Number })),
  tokens: Schema.Number
})
type CheckpointHistory = typeof CheckpointHistory.Type

/**
 * The newest checkpoint whose files all read back (JSON parses, safetensors decode), newest first;
 * a truncated or corrupt one is skipped, saying which and why.
 */
const newestValidCheckpoint = (root: string) =>
  Effect.gen(function* () {
    const all = yield* listCheckpoints(root)
    for (const checkpoint of [...all].reverse()) {
      const problem = yield* Effect.flip(
        Effect.gen(function* () {
          for (const name of yield* listDirectory(checkpoint.dir)) {
            const bytes = yield* readCheckpointFile(checkpoint.dir, name)
            if (name.endsWith(".safetensors")) yield* Safetensors.decode(bytes, `${checkpoint.dir}/${name}`)
            if (name.endsWith(".json")) {
              yield* Effect.try({ try: () => JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes)) as unknown, catch: () => new InvalidCheckpoint({ path: `${checkpoint.dir}/${name}`, reason: "not JSON" }) })
            }
          }
          yield* readTrainerState(checkpoint.dir)
        })
      ).pipe(Effect.option)
      if (Option.isNone(problem)) return Option.some(checkpoint)
      yield* say(`warning: checkpoint ${checkpoint.dir} is unusable (${problem.value.message}); trying the one before it`)
    }
    return Option.none<{ readonly step: number; readonly dir: string }>()
  })

/** The training run, given decoded options. Returns the final validation loss (NaN without validation data). */
export const runTrain = (options: TrainOptions, controls: RunControls = {}) =>
  Effect.scoped(Effect.gen(function* () {
    const out = resolve(options.adapterPath)
    const { model, tokenizer, config } = yield* loadModelAndTokenizer(options.model)
    const maxLength = Math.min(options.maxSeqLength, config.maxPositionEmbeddings)
    const data = yield* loadTrainingData(options, tokenizer, maxLength)
    yield* say(`data: ${data.describe}`)
    const batcher = yield* attempt(() => makeBatcher(data.train, { batchSize: options.batchSize, padTokenId: tokenizer.padTokenId, seed: options.seed }))
    const validBatcher = data.valid.length > 0 ? makeBatcher(data.valid, { batchSize: options.batchSize, padTokenId: tokenizer.padTokenId, shuffle: false }) : undefined
    const steps = options.iters ?? (options.epochs ?? 1) * batcher.batchesPerEpoch
    if ((options.method === "cola" || options.method === "rac" || options.method === "xgb") && options.links > steps) {
      return yield* new ConfigError({ field: "train.links", reason: `${options.links} links need at least ${options.links} steps; this run has ${steps} (raise --iters or lower --links)` })
    }

    // The method: which parameters train, with which hooks, checkpoints and result.
    const optimizer = adamw([], { weightDecay: options.weightDecay })
    const method = yield* methods[options.method].setup({ model, options, steps, optimizer })
    const trainable = optimizer.groups.flatMap((group) => group.params).reduce((sum, param) => sum + param.variable.size, 0)
    const schedule = method.schedule(
      yield* attempt(() => makeSchedule({ kind: options.schedule, peak: options.learningRate, totalSteps: steps, warmupSteps: Math.min(options.warmup, steps) }))
    )
    yield* say(`method: ${options.method} (${method.describe}); ${trainable.toLocaleString("en")} trainable parameters; ${steps} steps of ${options.batchSize}`)

    // Checkpoints: everything needed to continue exactly.
    const checkpointFiles = (): Effect.Effect<CheckpointFiles> =>
      Effect.map(Effect.zip(method.checkpointFiles(), optimizerStateFile(optimizer)), ([files, optimizerState]) => ({ ...files, [OPTIMIZER_STATE_FILE]: optimizerState }))
    // Everything is loaded and checked: only now is the output directory claimed (nothing is
    // written for a run that fails to start).
    yield* claimOutputDirectory(out, { resume: options.resume, overwrite: options.overwrite }, say)
    let startStep = 0
    let prior: CheckpointHistory = { trainLoss: [], validation: [], tokens: 0 }
    if (options.resume) {
      const latest = yield* newestValidCheckpoint(join(out, CHECKPOINTS))
      if (Option.isNone(latest)) return yield* new ConfigError({ field: "train.resume", reason: `no usable checkpoint under ${join(out, CHECKPOINTS)}` })
      const dir = latest.value.dir
      const state = yield* readTrainerState(dir)
      if (state.method !== undefined && state.method !== options.method) {
        return yield* new ConfigError({ field: "train.resume", reason: `the checkpoint in ${dir} is from --method ${String(state.method)}, not ${options.method}` })
      }
      const current = runState(options, steps) as Record<string, unknown>
      for (const [key, value] of Object.entries(current)) {
        if (key in state && JSON.stringify(state[key]) !== JSON.stringify(value)) {
          const flag = key === "steps" ? "iters" : key
          return yield* new ConfigError({ field: `train.${flag}`, reason: `differs from the checkpoint being resumed (${JSON.stringify(state[key])}, now ${JSON.stringify(value)}): resume with the same options` })
        }
      }
      if (state.history !== undefined) prior = yield* decodeConfig(CheckpointHistory, state.history, "trainer_state.history")
      yield* method.restore(dir)
      yield* restoreOptimizer(dir, optimizer)
      startStep = state.step
      yield* say(`resumed from ${dir} at step ${startStep}`)
    }

    yield* writeFileAtomic(join(out, "training_args.json"), json({ ...options, steps, trainableParameters: trainable }))
    const training = train<Batch, ConfigError | FileError, FileSystem.FileSystem>({
      label: options.method,
      loss: (batch: Batch, training) => causalLmLoss(model.forward(batch.inputIds, { attentionMask: batch.attentionMask, training }), batch.inputIds, batch.lossMask),
      batch: (step) => batcher.batchAt(step),
      tokensPerBatch: (step) => batcher.tokensAt(step),
      optimizer,
      steps,
      startStep,
      startTokens: prior.tokens,
      learningRate: schedule,
      clipNorm: options.gradClip,
      reportEvery: options.stepsPerReport,
      hooks: method.hooks,
      ...(validBatcher === undefined ? {} : { evalEvery: options.stepsPerEval ?? steps, evaluate: () => meanLoss(model, validBatcher, options.valBatches) }),
      // Periodic checkpoints with --save-every, by wall time with --save-every-minutes (default 10),
      // and one on a stop request (Ctrl-C) in any case.
      ...(options.saveEvery === undefined ? {} : { checkpointEvery: options.saveEvery }),
      ...(options.saveEveryMinutes > 0 ? { checkpointEverySeconds: options.saveEveryMinutes * 60 } : {}),
      checkpoint: (step, history) =>
        Effect.asVoid(
          Effect.flatMap(checkpointFiles(), (files) =>
            writeCheckpoint(join(out, CHECKPOINTS), { step, ...runState(options, steps), history: withPrior(prior, history) }, files)
          )
        ),
      ...(controls.stopRequested === undefined ? {} : { stopRequested: controls.stopRequested })
    })
    const result = yield* (controls.metricsPath === undefined
      ? training
      : Effect.provide(training, MetricsLog.jsonl(controls.metricsPath, { append: options.resume })))
    const whole = withPrior(prior, result)
    // A loss at ln(vocab) means uniform predictions: the model is dead (a far too high learning rate).
    const finalLoss = result.trainLoss.at(-1)?.loss
    if (finalLoss !== undefined && finalLoss >= 0.98 * Math.log(config.vocabSize)) {
      yield* say(`warning: the final train loss ${finalLoss.toFixed(4)} is at ln(vocab) = ${Math.log(config.vocabSize).toFixed(4)}: the model predicts uniformly; the learning rate (${options.learningRate}) is probably far too high`)
    }

    // The result: a PEFT adapter (COLA: the chain as one LoRA), or the whole model for full fine-tuning.
    yield* say(yield* method.save(out, options.model))
    yield* writeFileAtomic(
      join(out, "report.html"),
      lossReportHtml({
        title: `peftkit train: ${options.method} on ${options.data ?? options.task}`,
        paragraphs: [`Model ${options.model}; ${steps} steps of batch ${options.batchSize}; peak learning rate ${options.learningRate} (${options.schedule}); seed ${options.seed}.`],
        series: [{ label: options.method, train: whole.trainLoss, validation: whole.validation }]
      })
    )
    let testLoss: number | undefined
    if (options.test && data.test.length === 0) yield* say("note: --test given but there is no test split (test.jsonl); skipped")
    if (options.test && data.test.length > 0) {
      testLoss = yield* meanLoss(model, makeBatcher(data.test, { batchSize: options.batchSize, padTokenId: tokenizer.padTokenId, shuffle: false }), -1)
      yield* say(`Test loss ${testLoss.toFixed(4)}, Test ppl ${Math.exp(testLoss).toFixed(3)}`)
    }
    optimizer.dispose()
    // The trained model stays usable (the caller disposes it): the demo scores it further.
    return { result, testLoss, trainable, out, steps, model, tokenizer }
  }))

/** A checkpoint's history followed by this run's. */
const withPrior = (prior: CheckpointHistory, run: { readonly trainLoss: CheckpointHistory["trainLoss"]; readonly validation: CheckpointHistory["validation"]; readonly tokens: number }) => ({
  trainLoss: [...prior.trainLoss, ...run.trainLoss],
  validation: [...prior.validation, ...run.validation],
  // The trainer continues the count from `startTokens`, so its total already includes the prior run.
  tokens: run.tokens
})

export const trainCommand = (argv: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const options = yield* decodeTrainOptions(argv)
    const out = resolve(options.adapterPath)
    yield* Effect.scoped(
      Effect.gen(function* () {
        const stop = yield* stopOnSignals
        yield* Effect.asVoid(runTrain(options, { stopRequested: stop.requested, metricsPath: join(out, "metrics.jsonl") })).pipe(
          Effect.provide(baseLayers(options.backend)),
          Effect.tapError((error) =>
            error instanceof TrainingInterrupted && error.checkpointed
              ? say(`checkpoint written to ${join(out, CHECKPOINTS)}; continue with the same command and --resume`)
              : Effect.void
          )
        )
      })
    )
  })
