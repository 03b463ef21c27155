/**
 * One backend's measurements: the matmul ceiling, then for each shape LoRA and COLA training on a
 * freshly initialised model. Meant to run alone in its own process (tfjs has one global backend).
 *
 * A step is `trainStep` from @peftkit/core, the training loop's own step, followed by
 * `await loss.data()` so the step has really finished on asynchronous backends. Every timing is a
 * median after warm-up. Peak memory is taken on a separate, untimed step (`measurePeakBytes`
 * profiles every kernel, which would distort the timings). The number of live tensors is checked
 * around each timed window: a step or a knot that leaks fails the shape loudly.
 */
import { AdapterSet, type BackendName, backendOps, firstLine, measurePeakBytes, selectBackend } from "@peftkit/core"
import { providers as cpuProviders } from "@peftkit/backend-cpu"
import { providers as nodeProviders } from "@peftkit/backend-node"
import { providers as webgpuProviders } from "@peftkit/backend-webgpu"
import { Chain } from "@peftkit/cola"
import { lora } from "@peftkit/lora"
import * as tf from "@tensorflow/tfjs-core"
import { Cause, Effect } from "effect"
import { type BenchVariant, benchVariants } from "./BenchVariants.js"
import { gflopsPerSecond, loraStepFlops } from "./Flops.js"
import { measureMatmulCeiling } from "./MatmulCeiling.js"
import { type Batch, adapterConfig, checkTensors, makeHarness, newModel, newOptimizer, peakOfStep, runStep } from "./Harness.js"
import { defaultPlan, runInterleaved } from "./InterleavedRatio.js"
import { median } from "./Median.js"
import type { BackendRun, ColaTiming, MatmulCeiling, MethodTiming, ShapeResult } from "./Results.js"
import { type BenchShape, knotOffsets, recipe, tokenIds, tokensPerBatch } from "./Shapes.js"

/** Every provider peftkit ships; passed to `selectBackend` so nothing is discovered by path. */
export const allProviders = [...nodeProviders, ...webgpuProviders, ...cpuProviders]

export interface RunOptions {
  /** Warm-up steps; undefined: the shape's default. */
  readonly warmup?: number
  /** Timed steps; undefined: the shape's default, cut short after `budgetMs` (but never below 3). */
  readonly steps?: number
  /** Time allowed for one timed window when `steps` is not given (default 30 s). */
  readonly budgetMs?: number
  /** Seconds for the interleaved COLA/LoRA ratio; undefined: the shape's default; 0: not measured. */
  readonly ratioSeconds?: number
  readonly log: (line: string) => void
}

const summarise = (
  shape: BenchShape,
  flops: number,
  ceiling: MatmulCeiling,
  fields: { warmup: number; steps: number; stepMs: ReadonlyArray<number>; windowMs: number; peakStepBytes: number; lastLoss: number }
): MethodTiming => {
  const medianStepMs = median(fields.stepMs)
  const achievedGflops = gflopsPerSecond(flops, medianStepMs)
  return {
    ...fields,
    medianStepMs,
    tokensPerSecond: tokensPerBatch(shape) / (medianStepMs / 1000),
    achievedGflops,
    ceilingFraction: achievedGflops / ceiling.gflops
  }
}

/** The adapter variant one timed run trains: plain LoRA, or one of `benchVariants`. */
const loraRun: BenchVariant = { name: "lora", label: "LoRA", variant: lora, config: adapterConfig }

/**
 * One adapter (LoRA or another variant). Steps: warm-up, one profiled step (also creates the
 * optimizer's slots, so the tensor count is stable afterwards), then the timed window. Returns how
 * many steps were timed, which the chain and the other variants then reuse so all do the same work.
 * `fixedSteps` (the LoRA run's count) overrides the planned count and the time budget.
 */
const runAdapter = (shape: BenchShape, batch: Batch, flops: number, ceiling: MatmulCeiling, options: RunOptions, tag: string, run: BenchVariant, fixedSteps?: number) =>
  Effect.gen(function* () {
    const warmup = options.warmup ?? shape.defaultWarmup
    const model = newModel(shape)
    const optimizer = newOptimizer()
    const adapters = AdapterSet.inject(model, run.variant, run.config(), { seed: recipe.seed })
    optimizer.setParameters([{ params: adapters.parameters() }])
    const harness = makeHarness(batch, optimizer, model)
    return yield* Effect.gen(function* () {
      options.log(`${tag} ${run.name}: ${warmup} warm-up steps`)
      for (let step = 0; step < warmup; step++) yield* runStep(harness, step)
      const peakStepBytes = yield* peakOfStep(harness, warmup)
      const planned = fixedSteps ?? options.steps ?? shape.defaultSteps
      // Without an explicit --steps, a slow backend (WebGPU on lavapipe, plain JS) stops after the
      // time budget, with 3 steps at least: fewer samples rather than a run of many minutes.
      const budgetMs = options.steps === undefined && fixedSteps === undefined ? (options.budgetMs ?? 30_000) : Number.POSITIVE_INFINITY
      const before = tf.memory().numTensors
      const stepMs: Array<number> = []
      let lastLoss = Number.NaN
      const start = warmup + 1
      const windowStart = performance.now()
      while (stepMs.length < planned && !(stepMs.length >= 3 && performance.now() - windowStart > budgetMs)) {
        const { ms, loss } = yield* runStep(harness, start + stepMs.length)
        stepMs.push(ms)
        lastLoss = loss
      }
      const windowMs = performance.now() - windowStart
      const steps = stepMs.length
      if (steps < planned) options.log(`${tag} ${run.name}: time budget reached after ${steps} of ${planned} steps; the others time as many`)
      yield* checkTensors(`${shape.name} ${run.label} steps`, before)
      const timing = summarise(shape, flops, ceiling, { warmup, steps, stepMs, windowMs, peakStepBytes, lastLoss })
      options.log(`${tag} ${run.name}: ${steps} steps, median ${timing.medianStepMs.toFixed(1)} ms (${timing.tokensPerSecond.toFixed(0)} tok/s), peak ${(peakStepBytes / 2 ** 20).toFixed(1)} MiB`)
      return timing
    }).pipe(Effect.ensuring(Effect.sync(() => {
      optimizer.dispose()
      model.dispose()
    })))
  })

/**
 * COLA on a fresh model with the same warm-up and steps. Knots (merge, re-init, optimizer reset)
 * run exactly as the chain's training hook runs them, before their step: one in the warm-up (so
 * its kernels are compiled), up to two inside the timed window, and one more, profiled, at the end.
 */
const runCola = (shape: BenchShape, batch: Batch, flops: number, ceiling: MatmulCeiling, warmup: number, steps: number, options: RunOptions, tag: string) =>
  Effect.gen(function* () {
    const model = newModel(shape)
    const optimizer = newOptimizer()
    // Step layout: 0..warmup-1 warm-up, `warmup` profiled, then the timed window, then the profiled knot.
    const start = warmup + 1
    const timedKnots = knotOffsets(steps).map((offset) => start + offset)
    const profiledKnot = start + steps
    const knots = [...(warmup >= 2 ? [warmup - 1] : []), ...timedKnots, profiledKnot]
    const chain = Chain.make({
      model,
      variant: lora,
      adapterConfig: { ...adapterConfig(), targetModules: [...recipe.targetModules] },
      chain: { totalSteps: profiledKnot + 1, knots, seed: recipe.seed }
    })
    chain.attach(optimizer)
    const harness = makeHarness(batch, optimizer, model)
    const beforeStep = (step: number) => (chain.knots.includes(step) ? chain.knot(step) : Effect.void)
    return yield* Effect.gen(function* () {
      options.log(`${tag} cola: ${warmup} warm-up steps, knots at ${knots.join(", ")}`)
      for (let step = 0; step < warmup; step++) {
        yield* beforeStep(step)
        yield* runStep(harness, step)
      }
      const peakStepBytes = yield* peakOfStep(harness, warmup)
      const before = tf.memory().numTensors
      const stepMs: Array<number> = []
      const knotMs: Array<number> = []
      let lastLoss = Number.NaN
      const windowStart = performance.now()
      for (let step = start; step < start + steps; step++) {
        if (chain.knots.includes(step)) {
          const knotStart = performance.now()
          yield* chain.knot(step)
          knotMs.push(performance.now() - knotStart)
        }
        const { ms, loss } = yield* runStep(harness, step)
        stepMs.push(ms)
        lastLoss = loss
      }
      const windowMs = performance.now() - windowStart
      yield* checkTensors(`${shape.name} COLA steps and knots`, before)
      const knotBefore = tf.memory().numTensors
      const peakKnotBytes = yield* Effect.tryPromise({
        try: () => measurePeakBytes(() => Effect.runPromise(chain.knot(profiledKnot))),
        catch: (error) => error
      }).pipe(Effect.map((measured) => measured.peakBytes), Effect.orDie)
      yield* checkTensors(`${shape.name} COLA knot`, knotBefore)
      const base = summarise(shape, flops, ceiling, { warmup, steps, stepMs, windowMs, peakStepBytes, lastLoss })
      const timing: ColaTiming = {
        ...base,
        knotOffsets: timedKnots.map((knot) => knot - start),
        knotMs,
        medianKnotMs: median(knotMs),
        peakKnotBytes
      }
      options.log(`${tag} cola: ${steps} steps, median ${timing.medianStepMs.toFixed(1)} ms (${timing.tokensPerSecond.toFixed(0)} tok/s), knot ${timing.medianKnotMs.toFixed(1)} ms, peak ${(peakStepBytes / 2 ** 20).toFixed(1)} MiB`)
      return timing
    }).pipe(Effect.ensuring(Effect.sync(() => {
      optimizer.dispose()
      model.dispose()
    })))
  })

/** A failure in one line: the backend's out-of-memory account where it recognises one (as the training loop reports it). */
const failureLine = (error: unknown): string => {
  const outOfMemory = backendOps().outOfMemory?.(error)
  return outOfMemory === undefined ? firstLine(error) : `out of memory: ${outOfMemory}`
}

export const runShape = (shape: BenchShape, ceiling: MatmulCeiling, options: RunOptions, tag: string) =>
  Effect.gen(function* () {
    const flops = loraStepFlops({ config: shape.config, batch: shape.batch, seqLen: shape.seqLen, rank: recipe.rank, targetModules: recipe.targetModules }).total
    const batch: Batch = {
      inputIds: tf.tensor2d(tokenIds(shape), [shape.batch, shape.seqLen], "int32"),
      lossMask: tf.ones([shape.batch, shape.seqLen], "float32") as tf.Tensor2D
    }
    return yield* Effect.gen(function* () {
      const loraTiming = yield* runAdapter(shape, batch, flops, ceiling, options, `${tag} ${shape.name}`, loraRun)
      const cola = yield* runCola(shape, batch, flops, ceiling, loraTiming.warmup, loraTiming.steps, options, `${tag} ${shape.name}`)
      // Other variants time as many steps as LoRA did; the FLOP count (and so GFLOP/s) is LoRA's.
      const variants: Record<string, MethodTiming> = {}
      const variantFailures: Record<string, string> = {}
      for (const run of benchVariants) {
        // A variant that fails (out of wasm memory on a large shape) keeps LoRA's and COLA's rows.
        const outcome = yield* Effect.exit(runAdapter(shape, batch, flops, ceiling, options, `${tag} ${shape.name}`, run, loraTiming.steps))
        if (outcome._tag === "Success") variants[run.name] = outcome.value
        else {
          variantFailures[run.name] = `${failureLine(Cause.squash(outcome.cause))} (engine holds ${(tf.memory().numBytes / 2 ** 20).toFixed(0)} MiB after the failure)`
          options.log(`${tag} ${shape.name} ${run.name}: FAILED: ${variantFailures[run.name]}`)
        }
      }
      const seconds = options.ratioSeconds ?? shape.defaultRatioSeconds
      const colaRatio = seconds > 0
        ? yield* runInterleaved(shape, batch, defaultPlan(options.warmup ?? shape.defaultWarmup, seconds), options.log, `${tag} ${shape.name}`)
        : undefined
      return {
        shape: shape.name,
        tokensPerBatch: tokensPerBatch(shape),
        flopsPerStep: flops,
        lora: loraTiming,
        cola,
        variants,
        ...(Object.keys(variantFailures).length === 0 ? {} : { variantFailures }),
        ...(colaRatio === undefined ? {} : { colaRatio })
      } satisfies ShapeResult
    }).pipe(Effect.ensuring(Effect.sync(() => {
      batch.inputIds.dispose()
      batch.lossMask.dispose()
    })))
  })

/** Selects `backend`, measures its ceiling and every shape. Never fails: problems are in the result. */
export const runBackend = (backend: BackendName, shapeList: ReadonlyArray<BenchShape>, options: RunOptions): Effect.Effect<BackendRun> =>
  Effect.gen(function* () {
    const tag = `[${backend}]`
    const selected = yield* Effect.either(selectBackend(backend, allProviders))
    if (selected._tag === "Left") return { status: "unavailable", backend, reason: selected.left.reason } satisfies BackendRun
    const service = selected.right
    options.log(`${tag} ${service.selection.reason}`)
    // On software rasterisers and plain JS a step takes seconds: one warm-up step (it compiles the
    // kernels) is enough, unless --warmup says otherwise.
    const slow = backend === "cpu" || (backend === "webgpu" && !service.info.gpu)
    const shapeOptions: RunOptions = slow && options.warmup === undefined ? { ...options, warmup: 1 } : options
    // The plain JS backend would spend minutes on a 1024^3 product.
    const ceiling = yield* Effect.promise(() => measureMatmulCeiling({ size: backend === "cpu" ? 256 : 1024 }))
    options.log(`${tag} matmul ceiling: ${ceiling.gflops.toFixed(1)} GFLOP/s (${ceiling.size}^3 float32, median ${ceiling.medianMs.toFixed(1)} ms)`)
    const results: Array<ShapeResult> = []
    const failures: Array<{ shape: BenchShape["name"]; reason: string }> = []
    for (const shape of shapeList) {
      const outcome = yield* Effect.exit(runShape(shape, ceiling, shapeOptions, tag))
      if (outcome._tag === "Success") results.push(outcome.value)
      else {
        const reason = firstLine(Cause.squash(outcome.cause))
        options.log(`${tag} ${shape.name}: FAILED: ${reason}`)
        failures.push({ shape: shape.name, reason })
      }
    }
    return { status: "ok", backend, info: service.info, selection: service.selection.reason, ceiling, shapes: results, failures } satisfies BackendRun
  })
