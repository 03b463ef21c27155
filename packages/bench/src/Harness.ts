/**
 * What every timed run shares: a fresh model with the bench's recipe, a step harness that trains one
 * resident batch exactly as the trainer's step does, one step timed to completion, one step's peak
 * engine bytes, and the tensor-count check that catches a leak.
 */
import { AdapterSet, type Optimizer, type Parameter, measurePeakBytes, trainStep } from "@peftkit/core"
import { lora, loraConfig } from "@peftkit/lora"
import { causalLmLoss, Llama } from "@peftkit/models"
import { adamw } from "@peftkit/optimizers"
import * as tf from "@tensorflow/tfjs-core"
import { Data, Effect } from "effect"
import { type BenchShape, recipe } from "./Shapes.js"

/** A step or knot left more tensors alive than it found: a memory leak. */
export class TensorLeak extends Data.TaggedError("TensorLeak")<{ readonly what: string; readonly before: number; readonly after: number }> {
  override get message(): string {
    return `tensor leak in ${this.what}: tf.memory().numTensors went from ${this.before} to ${this.after}`
  }
}

export interface Batch {
  readonly inputIds: tf.Tensor2D
  readonly lossMask: tf.Tensor2D
}

/** The model, its loss and the step function: everything one method's run needs. */
export interface Harness {
  readonly model: Llama
  readonly optimizer: Optimizer
  readonly step: (step: number) => tf.Scalar
}

export const makeHarness = (batch: Batch, optimizer: Optimizer, model: Llama): Harness => {
  // Like the trainer's parameterIndex: rebuilt only when the optimizer's groups change (at knots).
  let groups: Optimizer["groups"] | undefined
  let parameters = { variables: [] as Array<tf.Variable>, names: new Map<string, string>() }
  const options = {
    loss: (b: Batch, training: boolean) => causalLmLoss(model.forward(b.inputIds, { training }), b.inputIds, b.lossMask),
    // The same resident batch every step: no upload in the timed path (the reference does the same).
    batch: () => batch,
    optimizer
  }
  return {
    model,
    optimizer,
    step: (step) => {
      if (groups !== optimizer.groups) {
        groups = optimizer.groups
        const params: Array<Parameter> = groups.flatMap((group) => group.params)
        parameters = { variables: params.map((p) => p.variable), names: new Map(params.map((p) => [p.variable.name, p.name])) }
      }
      return trainStep(options, step, recipe.learningRate, parameters)
    }
  }
}

/** Runs one step to completion; returns its wall time and loss. */
export const runStep = (harness: Harness, step: number) =>
  Effect.promise(async () => {
    const started = performance.now()
    const loss = harness.step(step)
    const value = (await loss.data())[0]!
    const ms = performance.now() - started
    loss.dispose()
    return { ms, loss: value }
  })

/** One step under `measurePeakBytes`: its peak engine bytes (weights, optimizer state and activations). */
export const peakOfStep = (harness: Harness, step: number) =>
  Effect.promise(async () => {
    const { peakBytes } = await measurePeakBytes(async () => {
      const loss = harness.step(step)
      await loss.data()
      loss.dispose()
    })
    return peakBytes
  })

export const checkTensors = (what: string, before: number) =>
  Effect.suspend(() => {
    const after = tf.memory().numTensors
    return after > before ? Effect.fail(new TensorLeak({ what, before, after })) : Effect.void
  })

export const newModel = (shape: BenchShape): Llama => {
  const model = Llama.init(shape.config, recipe.seed)
  model.setTrainable(false)
  return model
}

export const adapterConfig = () =>
  loraConfig({ r: recipe.rank, alpha: recipe.alpha, dropout: recipe.dropout, targetModules: [...recipe.targetModules] })

export const newOptimizer = () => adamw([], { lr: recipe.learningRate, weightDecay: recipe.weightDecay })

/** A fresh model with one LoRA set of the recipe, and its optimizer holding the adapters. */
export const newLoraRun = (shape: BenchShape, batch: Batch): Harness => {
  const model = newModel(shape)
  const optimizer = newOptimizer()
  const adapters = AdapterSet.inject(model, lora, adapterConfig(), { seed: recipe.seed })
  optimizer.setParameters([{ params: adapters.parameters() }])
  return makeHarness(batch, optimizer, model)
}
