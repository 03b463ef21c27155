// @peftkit/optimizers resolves through the workspace test alias (vitest.config.ts): a package
// dependency would make core and optimizers a cycle.
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { adamw, sgd } from "@peftkit/optimizers"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer } from "effect"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import {
  ConfigError,
  Linear,
  makeSchedule,
  ShapeMismatch,
  MetricsLog,
  type MetricsRecord,
  NonFiniteLoss,
  type Parameter,
  ProgressReporter,
  train,
  trainStep, type ProgressEvent, NonFiniteWeights, TrainingInterrupted } from "../src/index.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const silent = Layer.merge(ProgressReporter.silent, MetricsLog.none)

/** A small least-squares problem with per-step batches drawn from a fixed seed. */
const problem = (seed = 1) => {
  const w = tf.variable(tf.randomNormal([8, 4], 0, 0.5, "float32", seed), true)
  const params: Array<Parameter> = [{ name: "w", variable: w }]
  const trueW = tf.randomNormal([8, 4], 0, 1, "float32", 99)
  const batch = (step: number) => {
    const x = tf.randomNormal([16, 8], 0, 1, "float32", 1000 + step)
    return { x, y: tf.matMul(x, trueW) }
  }
  const loss = (b: { x: tf.Tensor; y: tf.Tensor }) => tf.mean(tf.square(tf.sub(tf.matMul(b.x, w), b.y))) as tf.Scalar
  return { w, params, batch, loss }
}

const schedule = makeSchedule({ kind: "linear", peak: 0.2, totalSteps: 40, warmupSteps: 5 })

describe("training loop", () => {
  it("a step leaves numTensors where it found it (once optimizer state exists)", () => {
    const { params, batch, loss } = problem()
    const optimizer = adamw([{ params }])
    const index = { variables: params.map((p) => p.variable), names: new Map(params.map((p) => [p.variable.name, p.name])) }
    trainStep({ loss, batch, optimizer }, 0, 0.01, index).dispose()
    const before = tf.memory().numTensors
    trainStep({ loss, batch, optimizer, clipNorm: 1 }, 1, 0.01, index).dispose()
    expect(tf.memory().numTensors).toBe(before)
  })

  it("trains, reports to the metrics log as JSONL, and leaks nothing over a whole run", async () => {
    const { params, batch, loss } = problem()
    const optimizer = adamw([{ params }], { weightDecay: 0 })
    const dir = mkdtempSync(join(tmpdir(), "peftkit-train-"))
    const path = join(dir, "metrics.jsonl")
    let evals = 0
    // Warm-up step so the optimizer's state tensors exist before counting.
    await Effect.runPromise(train({ loss, batch, optimizer, steps: 1, learningRate: schedule }).pipe(Effect.provide(silent)))
    const before = tf.memory().numTensors
    const result = await Effect.runPromise(
      Effect.provide(train({
        label: "ls",
        loss,
        batch,
        optimizer,
        steps: 40,
        startStep: 1,
        learningRate: schedule,
        tokensPerBatch: () => 16,
        reportEvery: 10,
        evalEvery: 20,
        evaluate: () => Effect.sync(() => ++evals),
        profileEvery: 10
      }).pipe(Effect.provide(Layer.merge(ProgressReporter.silent, MetricsLog.jsonl(path)))), NodeFileSystem.layer)
    )
    expect(tf.memory().numTensors).toBe(before)
    expect(result.trainLoss.map((e) => e.step)).toEqual(Array.from({ length: 39 }, (_, i) => i + 1))
    expect(result.trainLoss.at(-1)!.loss).toBeLessThan(result.trainLoss[0]!.loss / 5)
    expect(result.trainLoss[9]!.learningRate).toBeCloseTo(schedule(10), 12)
    expect(result.validation).toEqual([{ step: 20, loss: 1 }, { step: 40, loss: 2 }])
    expect(result.tokens).toBe(39 * 16)
    expect(result.peakBytes).toBeGreaterThan(8 * 4 * 4)
    const lines = readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l) as MetricsRecord)
    expect(lines.map((l) => `${l.event}@${l.step}`)).toEqual(["report@10", "report@20", "eval@20", "report@30", "report@40", "eval@40"])
    expect(lines[0]).toMatchObject({ label: "ls", totalSteps: 40, trainedTokens: 9 * 16 })
  })

  it("ProgressReporter.callback hands a page every event of a run as a value", async () => {
    const { params, batch, loss } = problem()
    const optimizer = adamw([{ params }], { weightDecay: 0 })
    const events: Array<ProgressEvent> = []
    await Effect.runPromise(
      train({ label: "page", loss, batch, optimizer, steps: 20, learningRate: schedule, reportEvery: 10, evalEvery: 20, evaluate: () => Effect.succeed(0.5) }).pipe(
        Effect.provide(Layer.merge(ProgressReporter.callback((event) => events.push(event)), MetricsLog.none))
      )
    )
    expect(events[0]).toEqual({ _tag: "start", label: "page", totalSteps: 20, startStep: 0 })
    expect(events.filter((e) => e._tag === "tick")).toHaveLength(20)
    expect(events.filter((e) => e._tag === "report").map((e) => (e as { step: number }).step)).toEqual([10, 20])
    expect(events.find((e) => e._tag === "evaluation")).toMatchObject({ step: 20, valLoss: 0.5 })
    expect(events.at(-1)).toEqual({ _tag: "finish" })
    optimizer.dispose()
  })

  it("a NaN loss stops training with NonFiniteLoss before the next checkpoint is written", async () => {
    const { params, batch, loss } = problem()
    const optimizer = sgd([{ params }])
    const saved: Array<number> = []
    const poisoned = (b: { x: tf.Tensor; y: tf.Tensor }) => tf.tidy(() => tf.mul(loss(b), tf.scalar(saved.length >= 1 ? Number.NaN : 1)) as tf.Scalar)
    const before = tf.memory().numTensors
    const error = await Effect.runPromise(
      Effect.flip(
        train({ loss: poisoned, batch, optimizer, steps: 20, learningRate: schedule, checkpointEvery: 5, checkpoint: (step) => Effect.sync(() => void saved.push(step)) }).pipe(Effect.provide(silent))
      )
    )
    expect(error).toBeInstanceOf(NonFiniteLoss)
    // Counted as report lines count (1-based): the 6th step's loss is the first NaN.
    expect((error as NonFiniteLoss).step).toBe(6)
    expect((error as NonFiniteLoss).lastCheckpoint).toBe(5)
    expect(error.message).toBe("loss became NaN at step 6; stopping without saving (the last checkpoint of this run (step 5) is intact)")
    expect(saved).toEqual([5])
    optimizer.dispose()
    expect(tf.memory().numTensors).toBe(before)
  })

  it("weights that turn non-finite are never checkpointed or returned: NonFiniteWeights names the parameter and the last good checkpoint", async () => {
    const { params, batch, loss } = problem()
    const optimizer = sgd([{ params }])
    const saved: Array<number> = []
    // Finite loss at every evaluated step, but the update after step 3 overflows w.
    const explode = (step: number) => (step === 3 ? 1e39 : 1e-3) // beyond float32: the update overflows
    const before = tf.memory().numTensors
    const error = await Effect.runPromise(
      Effect.flip(
        train({ loss, batch, optimizer, steps: 4, learningRate: explode, checkpointEvery: 2, checkpoint: (step) => Effect.sync(() => void saved.push(step)) }).pipe(Effect.provide(silent))
      )
    )
    expect(error).toBeInstanceOf(NonFiniteWeights)
    expect(error).toMatchObject({ step: 4, parameter: "w", lastCheckpoint: 2 })
    expect(error.message).toContain("parameter 'w' holds NaN or Inf after step 4; refusing to save it (the last checkpoint of this run (step 2) is intact)")
    expect(saved).toEqual([2])
    optimizer.dispose()
    expect(tf.memory().numTensors).toBe(before)
  })

  it("checkpointEverySeconds saves whenever that much wall time passed since the last save", async () => {
    const { params, batch, loss } = problem()
    const optimizer = sgd([{ params }])
    const saved: Array<number> = []
    // Any step takes longer than a nanosecond: every step but the last is overdue (the last has no periodic save here).
    await Effect.runPromise(
      train({ loss, batch, optimizer, steps: 5, learningRate: schedule, checkpointEverySeconds: 1e-9, checkpoint: (step) => Effect.sync(() => void saved.push(step)) }).pipe(Effect.provide(silent))
    )
    expect(saved).toEqual([1, 2, 3, 4])
    optimizer.dispose()
  })

  it("a stop request ends the run after the current step with a checkpoint that carries the history, as TrainingInterrupted", async () => {
    const { params, batch, loss } = problem()
    const optimizer = adamw([{ params }], { weightDecay: 0 })
    const checkpoints: Array<{ step: number; losses: number; tokens: number }> = []
    let steps = 0
    const error = await Effect.runPromise(
      Effect.flip(
        train({
          loss: (b: { x: tf.Tensor; y: tf.Tensor }) => {
            steps++
            return loss(b)
          },
          batch,
          optimizer,
          steps: 40,
          startStep: 10,
          startTokens: 160,
          tokensPerBatch: () => 16,
          learningRate: schedule,
          stopRequested: () => steps >= 3,
          checkpoint: (step, history) => Effect.sync(() => void checkpoints.push({ step, losses: history.trainLoss.length, tokens: history.tokens }))
        }).pipe(Effect.provide(silent))
      )
    )
    expect(error).toBeInstanceOf(TrainingInterrupted)
    expect(error).toMatchObject({ step: 13, checkpointed: true })
    expect(checkpoints).toEqual([{ step: 13, losses: 3, tokens: 160 + 3 * 16 }])
    optimizer.dispose()
  })

  it("resuming from saved parameters and optimizer state continues exactly as an uninterrupted run", async () => {
    const run = async (stopAt?: number) => {
      const { w, params, batch, loss } = problem(3)
      const optimizer = adamw([{ params }])
      const run = (steps: number, startStep: number, opt = optimizer) =>
        Effect.runPromise(train({ loss, batch, optimizer: opt, steps, startStep, learningRate: schedule }).pipe(Effect.provide(silent)))
      if (stopAt === undefined) {
        await run(40, 0)
        return Array.from(w.dataSync())
      }
      await run(stopAt, 0)
      const savedState = optimizer.stateDict()
      const savedW = w.clone()
      optimizer.dispose()
      w.assign(tf.zerosLike(w)) // the "crash"
      w.assign(savedW)
      const resumed = adamw([{ params }])
      resumed.loadStateDict(savedState)
      await run(40, stopAt, resumed)
      return Array.from(w.dataSync())
    }
    expect(await run(17)).toEqual(await run())
  })

  it("global-norm clipping bounds the update of plain SGD by lr * maxNorm", async () => {
    const { w, params, batch, loss } = problem()
    const before = w.clone()
    const optimizer = sgd([{ params }])
    await Effect.runPromise(
      train({ loss, batch, optimizer, steps: 1, learningRate: () => 1, clipNorm: 0.1 }).pipe(Effect.provide(silent))
    )
    const moved = Math.sqrt(tf.sum(tf.square(tf.sub(w, before))).dataSync()[0]!)
    expect(moved).toBeCloseTo(0.1, 5)
  })

  it("frozen parameters (FFA-LoRA: lora_A frozen) get no gradient and are left alone", async () => {
    const { params, batch, loss } = problem()
    const frozen = tf.variable(tf.randomNormal([4, 4], 0, 1, "float32", 5), false)
    const before = Array.from(frozen.dataSync())
    const optimizer = adamw([{ params: [...params, { name: "frozen", variable: frozen }] }])
    const withFrozen = (b: { x: tf.Tensor; y: tf.Tensor }) => tf.add(loss(b), tf.sum(frozen)) as tf.Scalar
    await Effect.runPromise(train({ loss: withFrozen, batch, optimizer, steps: 3, learningRate: schedule, clipNorm: 1 }).pipe(Effect.provide(silent)))
    expect(Array.from(frozen.dataSync())).toEqual(before)
  })

  it("bad loop options are a ConfigError naming the field, before any step runs", async () => {
    const { params, batch, loss } = problem()
    const optimizer = sgd([{ params }])
    let ran = 0
    const counted = (b: { x: tf.Tensor; y: tf.Tensor }) => (ran++, loss(b))
    for (const [patch, field] of [
      [{ evalEvery: 0 }, "train.evalEvery"],
      [{ reportEvery: 0.5 }, "train.reportEvery"],
      [{ clipNorm: -1 }, "train.clipNorm"],
      [{ steps: 0 }, "train.steps"],
      [{ startStep: 12 }, "train.startStep"]
    ] as const) {
      const error = await Effect.runPromise(Effect.flip(train({ loss: counted, batch, optimizer, steps: 10, learningRate: schedule, ...patch }).pipe(Effect.provide(silent))))
      expect(error).toBeInstanceOf(ConfigError)
      expect((error as ConfigError).field).toBe(field)
    }
    expect(ran).toBe(0)
  })

  it("a typed error thrown inside a step (a shape mismatch) arrives typed, not as a defect, and frees the step's tensors", async () => {
    const { params, batch } = problem()
    const optimizer = adamw([{ params }])
    const layer = new Linear("fc", tf.zeros([3, 5]))
    const before = tf.memory().numTensors
    const error = await Effect.runPromise(
      Effect.flip(train({ loss: (b: { x: tf.Tensor }) => tf.sum(layer.apply(b.x)) as tf.Scalar, batch, optimizer, steps: 2, learningRate: schedule }).pipe(Effect.provide(silent)))
    )
    expect(error).toBeInstanceOf(ShapeMismatch)
    expect(tf.memory().numTensors).toBe(before)
  })
})
