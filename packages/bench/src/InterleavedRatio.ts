/**
 * COLA's step time over LoRA's with a 95% confidence interval, measured so that a 2% difference can
 * be resolved on a noisy machine: both runs live in one process at once and alternate in short
 * blocks (LoRA then COLA in even rounds, COLA then LoRA in odd ones), and the rounds are paired
 * (`PairedRatio.ts`). COLA knots at the start of every block after the first, as a chain's training
 * hook runs them, so its steps run on freshly re-initialised links and a reset optimizer. The knot
 * and the first step after it (which re-creates the optimizer's slots) are timed apart: in a real
 * chain they come once per link of hundreds of steps, so the ratio is of the steady steps, and the
 * knot's whole cost (knot + the first step's excess) is reported to be amortised over a link.
 */
import { Chain } from "@peftkit/cola"
import { lora } from "@peftkit/lora"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { adapterConfig, type Batch, checkTensors, type Harness, makeHarness, newLoraRun, newModel, newOptimizer, runStep } from "./Harness.js"
import { median } from "./Median.js"
import { type PairedRatio, pairedRatio } from "./PairedRatio.js"
import { type BenchShape, recipe } from "./Shapes.js"

export interface InterleavedPlan {
  readonly warmup: number
  readonly rounds: number
  readonly blockSteps: number
}

export interface InterleavedRatio extends PairedRatio {
  readonly medianKnotMs: number
  /** The first step after a knot, over COLA's steady median step (ms): the optimizer's slots re-created. */
  readonly postKnotExcessMs: number
}

export const runInterleaved = (shape: BenchShape, batch: Batch, plan: InterleavedPlan, log: (line: string) => void, tag: string) =>
  Effect.gen(function* () {
    const { warmup, rounds, blockSteps } = plan
    const loraRun = newLoraRun(shape, batch)
    const colaModel = newModel(shape)
    const colaOptimizer = newOptimizer()
    const stepOf = (round: number, index: number) => warmup + round * blockSteps + index
    const knots = [...(warmup >= 2 ? [warmup - 1] : []), ...Array.from({ length: rounds - 1 }, (_, r) => stepOf(r + 1, 0))]
    const chain = Chain.make({
      model: colaModel,
      variant: lora,
      adapterConfig: { ...adapterConfig(), targetModules: [...recipe.targetModules] },
      chain: { totalSteps: stepOf(rounds, 0), knots, seed: recipe.seed }
    })
    chain.attach(colaOptimizer)
    const colaRun = makeHarness(batch, colaOptimizer, colaModel)
    return yield* Effect.gen(function* () {
      log(`${tag} COLA/LoRA interleaved: ${rounds} rounds of ${blockSteps} steps each, ${warmup} warm-up steps`)
      for (let step = 0; step < warmup; step++) {
        yield* runStep(loraRun, step)
        if (knots.includes(step)) yield* chain.knot(step)
        yield* runStep(colaRun, step)
      }
      const before = tf.memory().numTensors
      const loraMs: Array<Array<number>> = []
      const colaMs: Array<Array<number>> = []
      const knotMs: Array<number> = []
      const postKnotMs: Array<number> = []
      const block = (run: Harness, round: number, chained: boolean) =>
        Effect.gen(function* () {
          const times: Array<number> = []
          for (let index = 0; index < blockSteps; index++) {
            const step = stepOf(round, index)
            const afterKnot = chained && knots.includes(step)
            if (afterKnot) {
              const started = performance.now()
              yield* chain.knot(step)
              knotMs.push(performance.now() - started)
            }
            const { ms } = yield* runStep(run, step)
            // LoRA's first step of a block is dropped too, so both sides keep the same steps.
            if (index === 0 && round > 0) {
              if (afterKnot) postKnotMs.push(ms)
              continue
            }
            times.push(ms)
          }
          return times
        })
      for (let round = 0; round < rounds; round++) {
        if (round % 2 === 0) {
          loraMs.push(yield* block(loraRun, round, false))
          colaMs.push(yield* block(colaRun, round, true))
        } else {
          colaMs.push(yield* block(colaRun, round, true))
          loraMs.push(yield* block(loraRun, round, false))
        }
      }
      yield* checkTensors(`${shape.name} interleaved LoRA and COLA`, before)
      // Round 0 keeps its first step (no knot before it); the later rounds' blocks are one step shorter.
      const steady = (rounds_: Array<Array<number>>) => rounds_.map((times, round) => (round === 0 ? times.slice(1) : times))
      const ratio = pairedRatio(steady(colaMs), steady(loraMs))
      const colaSteady = median(steady(colaMs).flat())
      const result: InterleavedRatio = {
        ...ratio,
        blockSteps: blockSteps - 1,
        medianKnotMs: knotMs.length > 0 ? median(knotMs) : Number.NaN,
        postKnotExcessMs: postKnotMs.length > 0 ? median(postKnotMs) - colaSteady : Number.NaN
      }
      log(`${tag} COLA/LoRA steady step time ${result.ratio.toFixed(3)}x (95% CI ${result.low.toFixed(3)}-${result.high.toFixed(3)}), knot ${result.medianKnotMs.toFixed(1)} ms + ${result.postKnotExcessMs.toFixed(1)} ms on the next step`)
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
