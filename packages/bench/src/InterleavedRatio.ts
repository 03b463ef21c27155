/**
 * COLA's step time over LoRA's with a 95% confidence interval, measured so that a 2% difference can
 * be resolved on a noisy machine. Both runs live in one process and alternate single steps in
 * ABBA order (LoRA then COLA, COLA then LoRA, ...): each pair's two steps are neighbours in time, so
 * the machine's slow drifts and bursts hit both alike, and neither method always goes first. The
 * pairs' log ratios give the ratio and a Student t interval (`PairedRatio.ts`).
 *
 * On this kind of machine (2 shared cores) one step's time varies by 10-15% from the next, so the
 * interval narrows only with many pairs: pairs are added until the interval is within
 * +-`targetHalfWidth` or the time budget is spent, and the number taken is reported.
 *
 * COLA knots every `knotEvery` of its steps, as a chain's training hook runs them, so its steps run
 * on freshly re-initialised links and a reset optimizer. The knot and the pairs of the
 * `settleSteps` COLA steps after it are timed apart (the first re-creates the optimizer's slots; on
 * wasm the first two redo the merged weights' transposes and XNNPACK packings): in a real chain they
 * come once per link of hundreds of steps, so the ratio is of the steady steps, and the knot's
 * whole cost (knot + those steps' excess) is reported, to be amortised over a link.
 */
import { Chain } from "@peftkit/cola"
import * as tf from "@tensorflow/tfjs-core"
import { lora } from "@peftkit/lora"
import { Effect } from "effect"
import { adapterConfig, type Batch, checkTensors, makeHarness, newLoraRun, newModel, newOptimizer, runStep } from "./Harness.js"
import { median } from "./Median.js"
import { type PairedRatio, pairedRatio } from "./PairedRatio.js"
import { type BenchShape, recipe } from "./Shapes.js"

export interface InterleavedPlan {
  readonly warmup: number
  /** Time allowed for the timed pairs, in seconds. */
  readonly seconds: number
  /** Stop once the interval's half-width (relative) is at most this, after `minPairs`. */
  readonly targetHalfWidth: number
  readonly minPairs: number
  /** COLA steps per link while measuring. */
  readonly knotEvery: number
  /** COLA steps after a knot that count as the knot's cost, not as steady steps. */
  readonly settleSteps: number
}

export const defaultPlan = (warmup: number, seconds: number): InterleavedPlan => ({ warmup, seconds, targetHalfWidth: 0.01, minPairs: 12, knotEvery: 20, settleSteps: 2 })

export interface InterleavedRatio extends PairedRatio {
  readonly medianKnotMs: number
  /**
   * What the first `settleSteps` COLA steps after a knot take beyond steady steps (ms, summed): the
   * optimizer's slots re-created, and on wasm the merged weights' transposes and packings redone.
   */
  readonly postKnotExcessMs: number
  /** Why the measurement stopped: the interval reached the target, or the time budget ran out. */
  readonly stoppedBy: "interval" | "budget"
  readonly seconds: number
}

/** A bound for the chain's plan (links are planned ahead): beyond any budget the bench sets. */
const MAX_PAIRS = 2_000

export const runInterleaved = (shape: BenchShape, batch: Batch, plan: InterleavedPlan, log: (line: string) => void, tag: string) =>
  Effect.gen(function* () {
    const { warmup, knotEvery } = plan
    const loraRun = newLoraRun(shape, batch)
    const colaModel = newModel(shape)
    const colaOptimizer = newOptimizer()
    // COLA's own step count: knots at warm-up's end and then every `knotEvery` of its steps.
    // (A chain cannot knot before its first step.)
    const firstKnot = Math.max(warmup, 1)
    const sinceKnot = (step: number) => (step < firstKnot ? knotEvery : (step - firstKnot) % knotEvery)
    const knots = Array.from({ length: Math.ceil(MAX_PAIRS / knotEvery) }, (_, i) => firstKnot + i * knotEvery)
    const chain = Chain.make({
      model: colaModel,
      variant: lora,
      adapterConfig: { ...adapterConfig(), targetModules: [...recipe.targetModules] },
      chain: { totalSteps: warmup + MAX_PAIRS + 1, knots, seed: recipe.seed }
    })
    chain.attach(colaOptimizer)
    const colaRun = makeHarness(batch, colaOptimizer, colaModel)
    return yield* Effect.gen(function* () {
      log(`${tag} COLA/LoRA interleaved: single-step pairs in ABBA order for up to ${plan.seconds} s (or until the 95% interval is within +-${(plan.targetHalfWidth * 100).toFixed(0)}%), a knot every ${knotEvery} COLA steps (the ${plan.settleSteps} after each timed apart), ${warmup} warm-up steps`)
      for (let step = 0; step < warmup; step++) {
        yield* runStep(loraRun, step)
        yield* runStep(colaRun, step)
      }
      const before = tf.memory().numTensors
      const loraMs: Array<Array<number>> = []
      const colaMs: Array<Array<number>> = []
      const knotMs: Array<number> = []
      // postKnotMs[i]: the COLA step i + 1 steps after a knot.
      const postKnotMs: Array<Array<number>> = Array.from({ length: plan.settleSteps }, () => [])
      const started = performance.now()
      let current: PairedRatio | undefined
      let stoppedBy: InterleavedRatio["stoppedBy"] = "budget"
      for (let pair = 0; pair < MAX_PAIRS; pair++) {
        const step = warmup + pair
        if (sinceKnot(step) === 0) {
          const knotStarted = performance.now()
          yield* chain.knot(step)
          knotMs.push(performance.now() - knotStarted)
        }
        const colaFirst = pair % 2 === 1
        const first = yield* runStep(colaFirst ? colaRun : loraRun, step)
        const second = yield* runStep(colaFirst ? loraRun : colaRun, step)
        const [cola, loraTime] = colaFirst ? [first.ms, second.ms] : [second.ms, first.ms]
        if (sinceKnot(step) < plan.settleSteps) postKnotMs[sinceKnot(step)]!.push(cola)
        else {
          colaMs.push([cola])
          loraMs.push([loraTime])
        }
        if (colaMs.length >= Math.max(2, plan.minPairs)) {
          current = pairedRatio(colaMs, loraMs)
          if (Math.log(current.high / current.ratio) <= Math.log1p(plan.targetHalfWidth)) {
            stoppedBy = "interval"
            break
          }
        }
        if (performance.now() - started >= plan.seconds * 1000 && colaMs.length >= 2) break
      }
      yield* checkTensors(`${shape.name} interleaved LoRA and COLA`, before)
      const ratio = current ?? pairedRatio(colaMs, loraMs)
      const colaSteady = median(colaMs.flat())
      const result: InterleavedRatio = {
        ...ratio,
        medianKnotMs: knotMs.length > 0 ? median(knotMs) : Number.NaN,
        postKnotExcessMs: postKnotMs.every((times) => times.length > 0) ? postKnotMs.reduce((sum, times) => sum + median(times) - colaSteady, 0) : Number.NaN,
        stoppedBy,
        seconds: (performance.now() - started) / 1000
      }
      log(`${tag} COLA/LoRA steady step time ${result.ratio.toFixed(3)}x (95% CI ${result.low.toFixed(3)}-${result.high.toFixed(3)}) from ${result.rounds} pairs in ${result.seconds.toFixed(0)} s (stopped by the ${stoppedBy}), knot ${result.medianKnotMs.toFixed(1)} ms + ${result.postKnotExcessMs.toFixed(1)} ms over the ${plan.settleSteps} steps after it`)
      return result
    }).pipe(
      Effect.ensuring(Effect.sync(() => {
        loraRun.optimizer.dispose()
        loraRun.model.dispose()
        colaOptimizer.dispose()
        colaModel.dispose()
      }))
    )
  })
