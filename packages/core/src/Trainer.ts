/**
 * The training loop, as one readable Effect program (nanoGPT's loop, with Effect at the edges):
 * schedule -> step -> report every N -> eval every M -> checkpoint every K.
 *
 * The step itself is plain synchronous tfjs inside `tf.tidy`: forward, gradients of the
 * optimizer's parameters, optional global-norm clipping, the optimizer update. Losses stay on the
 * device and are read back only at report, eval and checkpoint boundaries (`await data()`), so
 * the hot path never blocks on `dataSync`. Non-finite losses are caught at those boundaries,
 * before anything is written to disk, and fail the program with `NonFiniteLoss`.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Schema } from "effect"
import { measurePeakBytes } from "./Backend.js"
import { decodeConfig, NonNegativeInt, PositiveInt } from "./Config.js"
import { attempt, ConfigError, type FileError, NonFiniteLoss, NonFiniteWeights, type ThrownError, TrainingInterrupted } from "./Errors.js"
import { clipByGlobalNorm } from "./GradientClipping.js"
import { leanVariableGrads } from "./internal/leanGradients.js"
import { MetricsLog } from "./MetricsLog.js"
import type { Optimizer } from "./Optimizer.js"
import type { NamedGradients, Parameter } from "./Parameter.js"
import { ProgressReporter } from "./Progress.js"
import type { Schedule } from "./Schedule.js"

/** Extension points run around each step; the COLA chain's knots are a hook. */
export interface TrainingHook<E = never, R = never> {
  /** Runs before step `step` (0-based, absolute); may merge, re-initialise, reset the optimizer. */
  readonly beforeStep?: (step: number) => Effect.Effect<void, E, R>
  /** Runs once after the last step; receives the total number of steps run (`steps`). */
  readonly afterTraining?: (steps: number) => Effect.Effect<void, E, R>
}

/** What a run has measured so far: per-step train losses, validations, tokens. */
export interface TrainingHistory {
  readonly trainLoss: ReadonlyArray<{ readonly step: number; readonly loss: number; readonly learningRate: number }>
  readonly validation: ReadonlyArray<{ readonly step: number; readonly loss: number }>
  readonly tokens: number
}

export interface TrainOptions<Batch, E = never, R = never> {
  /** Label for progress output and metrics, e.g. "lora". */
  readonly label?: string
  /** The scalar to minimise for one batch; `training` enables dropout. */
  readonly loss: (batch: Batch, training: boolean) => tf.Scalar
  /** The batch for a given step. Called inside the step's `tf.tidy`, so tensors it creates are freed. */
  readonly batch: (step: number) => Batch
  /** Tokens (or examples) in a batch, for throughput figures. */
  readonly tokensPerBatch?: (step: number) => number
  readonly optimizer: Optimizer
  /** Steps to run in total; training runs steps `startStep` .. `steps - 1`. */
  readonly steps: number
  /** First step, when resuming (the schedule and batches continue from there). */
  readonly startStep?: number
  readonly learningRate: Schedule
  /** Global-norm gradient clipping threshold (PyTorch `clip_grad_norm_`); off when undefined. */
  readonly clipNorm?: number
  /** Report line every N steps (default 10). */
  readonly reportEvery?: number
  /** Validation every M steps and after the last step (off when undefined). */
  readonly evalEvery?: number
  readonly evaluate?: (step: number) => Effect.Effect<number, E, R>
  /** Checkpoint every K steps and after the last step (off when undefined). */
  readonly checkpointEvery?: number
  /** Also checkpoint whenever this many seconds of wall time passed since the last one (off when undefined). */
  readonly checkpointEverySeconds?: number
  /**
   * Writes a checkpoint after `step` (1-based: steps done), given the run's history so far. Called
   * every `checkpointEvery` steps and when a stop is requested; never with non-finite parameters.
   */
  readonly checkpoint?: (step: number, history: TrainingHistory) => Effect.Effect<void, E, R>
  /**
   * Polled after every step: when it answers true (a signal arrived), training stops after that
   * step, writes a checkpoint if it can, and fails with `TrainingInterrupted`.
   */
  readonly stopRequested?: () => boolean
  /** Tokens trained before `startStep` (a resumed run continues the count). */
  readonly startTokens?: number
  readonly hooks?: ReadonlyArray<TrainingHook<E, R>>
  /** Measure the step's peak bytes (tf.profile, which syncs every kernel) every N steps; default 50. */
  readonly profileEvery?: number
}

export interface TrainingResult {
  readonly label: string
  /** One entry per step run. */
  readonly trainLoss: ReadonlyArray<{ readonly step: number; readonly loss: number; readonly learningRate: number }>
  readonly validation: ReadonlyArray<{ readonly step: number; readonly loss: number }>
  readonly seconds: number
  readonly tokens: number
  /** Highest engine byte count seen inside a profiled step (includes the model's weights). */
  readonly peakBytes: number
  /** Engine bytes when training started: `peakBytes - startBytes` is what training itself adds. */
  readonly startBytes: number
}

// The loop's numeric options, checked before anything runs: a typo'd 0 must not silently disable eval.
const LoopOptions = Schema.Struct({
  steps: PositiveInt,
  startStep: Schema.optional(NonNegativeInt),
  reportEvery: Schema.optional(PositiveInt),
  evalEvery: Schema.optional(PositiveInt),
  checkpointEvery: Schema.optional(PositiveInt),
  checkpointEverySeconds: Schema.optional(Schema.Number.pipe(Schema.positive({ message: () => "must be a positive number" }))),
  profileEvery: Schema.optional(NonNegativeInt),
  clipNorm: Schema.optional(Schema.Number.pipe(Schema.positive({ message: () => "must be a positive number" }), Schema.finite()))
})

const validate = (options: TrainOptions<unknown, unknown, unknown>): Effect.Effect<void, ConfigError> =>
  Effect.gen(function* () {
    const { steps, startStep, reportEvery, evalEvery, checkpointEvery, checkpointEverySeconds, profileEvery, clipNorm } = options
    const picked = Object.fromEntries(
      Object.entries({ steps, startStep, reportEvery, evalEvery, checkpointEvery, checkpointEverySeconds, profileEvery, clipNorm }).filter(([, value]) => value !== undefined)
    )
    yield* decodeConfig(LoopOptions, picked, "train")
    if ((startStep ?? 0) > steps) yield* new ConfigError({ field: "train.startStep", reason: `must not exceed steps (${steps})` })
  })

/** Maps tfjs variable names (process-unique) to parameter names, rebuilt when the groups change. */
const parameterIndex = (optimizer: Optimizer) => {
  let groups: Optimizer["groups"] | undefined
  let variables: Array<tf.Variable> = []
  let names = new Map<string, string>()
  return () => {
    if (groups !== optimizer.groups) {
      groups = optimizer.groups
      const params: Array<Parameter> = groups.flatMap((group) => group.params)
      variables = params.map((param) => param.variable)
      names = new Map(params.map((param) => [param.variable.name, param.name]))
    }
    return { variables, names }
  }
}

/**
 * One optimizer step: forward, backward, clip, update. Returns the loss scalar (the caller owns
 * it); every other tensor created here is freed before returning.
 */
export const trainStep = <Batch>(
  options: Pick<TrainOptions<Batch>, "loss" | "batch" | "optimizer" | "clipNorm">,
  step: number,
  learningRate: number,
  parameters: { readonly variables: ReadonlyArray<tf.Variable>; readonly names: ReadonlyMap<string, string> }
): tf.Scalar =>
  tf.tidy(() => {
    const batch = options.batch(step)
    const { value, grads } = leanVariableGrads(() => options.loss(batch, true), parameters.variables)
    // Frozen (trainable = false) variables get no gradient: they are simply not updated.
    let named: NamedGradients = Object.fromEntries(
      Object.entries(grads)
        .filter((entry): entry is [string, tf.Tensor] => entry[1] !== null)
        .map(([variableName, grad]) => [parameters.names.get(variableName) ?? variableName, grad])
    )
    if (options.clipNorm !== undefined) named = clipByGlobalNorm(named, options.clipNorm).grads
    options.optimizer.step(named, learningRate)
    return value
  })

/** A macrotask turn (setImmediate in Node, tens of microseconds; a 0 ms timeout elsewhere). */
const yieldToEventLoop = (): Promise<void> =>
  new Promise((resolve) => {
    const immediate = (globalThis as { setImmediate?: (f: () => void) => unknown }).setImmediate
    if (immediate !== undefined) immediate(resolve)
    else setTimeout(resolve, 0)
  })

/**
 * Runs the loop. Requires a `ProgressReporter` and a `MetricsLog`. Fails with `ConfigError` on bad
 * options (before any step), `NonFiniteLoss`, the typed errors a step throws (`ShapeMismatch`, ...),
 * a metrics-file `FileError`, or what the hooks, `evaluate` and `checkpoint` fail with.
 */
export const train = <Batch, E = never, R = never>(
  options: TrainOptions<Batch, E, R>
): Effect.Effect<TrainingResult, E | NonFiniteLoss | NonFiniteWeights | TrainingInterrupted | ThrownError | FileError, R | ProgressReporter | MetricsLog> =>
  Effect.gen(function* () {
    yield* validate(options as TrainOptions<unknown, unknown, unknown>)
    const progress = yield* ProgressReporter
    const metrics = yield* MetricsLog
    const label = options.label ?? "train"
    const startStep = options.startStep ?? 0
    const reportEvery = Math.max(1, options.reportEvery ?? 10)
    const profileEvery = options.profileEvery ?? 50
    const hooks = options.hooks ?? []
    const parameters = parameterIndex(options.optimizer)

    const trainLoss: Array<{ step: number; loss: number; learningRate: number }> = []
    const validation: Array<{ step: number; loss: number }> = []
    // Losses not yet read back from the device: read at boundaries only.
    let pending: Array<{ step: number; loss: tf.Scalar; learningRate: number }> = []
    let tokens = options.startTokens ?? 0
    let lastCheckpoint: number | undefined
    let lastCheckpointAt = performance.now()
    let windowTokens = 0
    let windowStart = performance.now()
    let windowSteps = 0
    let peakBytes = 0
    let elapsedMs = 0
    let lastLoss: number | undefined

    const flush = Effect.gen(function* () {
      if (pending.length === 0) return
      const batch = pending
      pending = []
      const stacked = tf.stack(batch.map((entry) => entry.loss))
      const values = yield* Effect.promise(() => stacked.data()).pipe(
        Effect.ensuring(Effect.sync(() => {
          stacked.dispose()
          for (const entry of batch) entry.loss.dispose()
        }))
      )
      for (let i = 0; i < batch.length; i++) {
        const value = values[i]!
        if (!Number.isFinite(value)) return yield* Effect.fail(new NonFiniteLoss({ step: batch[i]!.step + 1, value, lastCheckpoint }))
        trainLoss.push({ step: batch[i]!.step, loss: value, learningRate: batch[i]!.learningRate })
        lastLoss = value
      }
    })
    // Before anything is saved: every trained parameter finite (one read back, at save boundaries only).
    const assertFinite = (step: number) =>
      Effect.gen(function* () {
        const { variables, names } = parameters()
        if (variables.length === 0) return
        // sum(x * 0) is 0 for finite x and NaN as soon as one value is NaN or Inf; Mul and Sum run on
        // every backend (wasm has no IsFinite kernel).
        const probes = tf.tidy(() => tf.stack(variables.map((variable) => tf.sum(tf.mul(variable, 0)))))
        const sums = yield* Effect.promise(() => probes.data()).pipe(Effect.ensuring(Effect.sync(() => probes.dispose())))
        const bad = variables.findIndex((_, i) => !Number.isFinite(sums[i]!))
        if (bad >= 0) {
          const variable = variables[bad]!
          return yield* Effect.fail(new NonFiniteWeights({ step, parameter: names.get(variable.name) ?? variable.name, lastCheckpoint }))
        }
      })
    const saveCheckpoint = (step: number) =>
      Effect.gen(function* () {
        yield* assertFinite(step)
        const saveStart = performance.now()
        yield* options.checkpoint!(step, { trainLoss, validation, tokens })
        lastCheckpoint = step
        lastCheckpointAt = performance.now()
        yield* metrics.write({ event: "checkpoint", label, step })
        windowStart += performance.now() - saveStart
      })

    // Dispose unread losses if the program fails or is interrupted.
    const releasePending = Effect.sync(() => {
      for (const entry of pending) entry.loss.dispose()
      pending = []
    })

    const startBytes = tf.memory().numBytes
    const loop = Effect.gen(function* () {
      yield* progress.start(label, options.steps, startStep)
      const started = performance.now()
      for (let step = startStep; step < options.steps; step++) {
        for (const hook of hooks) if (hook.beforeStep) yield* hook.beforeStep(step)
        const learningRate = options.learningRate(step)
        const params = parameters()
        const profiled = profileEvery > 0 && (step - startStep) % profileEvery === 0
        let loss: tf.Scalar
        if (profiled) {
          const measured = yield* Effect.tryPromise({
            try: () => measurePeakBytes(() => trainStep(options, step, learningRate, params)),
            catch: (error) => error
            // Same error split as the unprofiled path: typed errors fail, anything else is a defect.
          }).pipe(Effect.catchAll((error) => attempt(() => { throw error })))
          peakBytes = Math.max(peakBytes, measured.peakBytes)
          loss = measured.result
        } else {
          loss = yield* attempt(() => trainStep(options, step, learningRate, params))
        }
        pending.push({ step, loss, learningRate })
        const batchTokens = options.tokensPerBatch?.(step) ?? 0
        tokens += batchTokens
        windowTokens += batchTokens
        windowSteps += 1
        const done = step + 1
        yield* progress.tick({ step: done, loss: lastLoss, learningRate, tokens })

        const isLast = done === options.steps
        // Steps are synchronous: let the event loop deliver a signal (or a page's stop button)
        // before asking; paid only when someone can ask the run to stop.
        if (options.stopRequested !== undefined && !isLast) yield* Effect.promise(yieldToEventLoop)
        const stop = !isLast && options.stopRequested?.() === true
        if (stop) {
          yield* flush
          if (options.checkpoint !== undefined) yield* saveCheckpoint(done)
          yield* progress.finish()
          return yield* Effect.fail(new TrainingInterrupted({ step: done, checkpointed: options.checkpoint !== undefined }))
        }
        const report = done % reportEvery === 0 || isLast
        const evaluate = options.evaluate !== undefined && options.evalEvery !== undefined && (done % options.evalEvery === 0 || isLast)
        const periodic = options.checkpointEvery !== undefined && (done % options.checkpointEvery === 0 || isLast)
        const overdue = options.checkpointEverySeconds !== undefined && !isLast && performance.now() - lastCheckpointAt >= options.checkpointEverySeconds * 1000
        const checkpoint = options.checkpoint !== undefined && (periodic || overdue)
        if (!report && !evaluate && !checkpoint) continue

        yield* flush
        if (report) {
          const now = performance.now()
          const seconds = (now - windowStart) / 1000
          const recent = trainLoss.slice(-windowSteps)
          const meanLoss = recent.reduce((sum, entry) => sum + entry.loss, 0) / Math.max(1, recent.length)
          const line = {
            step: done,
            totalSteps: options.steps,
            trainLoss: meanLoss,
            learningRate,
            itPerSec: windowSteps / Math.max(seconds, 1e-9),
            tokensPerSec: windowTokens / Math.max(seconds, 1e-9),
            trainedTokens: tokens,
            peakBytes: peakBytes > 0 ? peakBytes : undefined
          }
          yield* progress.report(line)
          yield* metrics.write({ event: "report", label, ...line, peakBytes: line.peakBytes ?? null })
          windowStart = performance.now()
          windowSteps = 0
          windowTokens = 0
        }
        if (evaluate) {
          const evalStart = performance.now()
          const valLoss = yield* options.evaluate!(done)
          const seconds = (performance.now() - evalStart) / 1000
          validation.push({ step: done, loss: valLoss })
          yield* progress.evaluation({ step: done, valLoss, seconds })
          yield* metrics.write({ event: "eval", label, step: done, valLoss, seconds })
          windowStart += performance.now() - evalStart
        }
        if (checkpoint) yield* saveCheckpoint(done)
      }
      yield* flush
      // The caller saves the result next: it must be finite too.
      yield* assertFinite(options.steps)
      for (const hook of hooks) if (hook.afterTraining) yield* hook.afterTraining(options.steps)
      elapsedMs = performance.now() - started
      yield* progress.finish()
    })

    yield* loop.pipe(Effect.ensuring(releasePending))
    return { label, trainLoss, validation, seconds: elapsedMs / 1000, tokens, peakBytes, startBytes } satisfies TrainingResult
  })
