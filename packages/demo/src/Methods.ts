/**
 * The three ways the demo adapts the pretrained model to task B, with the same budget: LoRA,
 * COLA (same rank, same total steps, a chain of links) and full fine-tuning (the reference).
 */
import type { FileSystem } from "@effect/platform"
import {
  AdapterSet,
  attempt,
  type ConfigError,
  type FileError,
  type ThrownError,
  type MetricsLog,
  makeSchedule,
  type NonFiniteLoss,
  type NonFiniteWeights,
  type TrainingInterrupted,
  type Optimizer,
  type ProgressReporter,
  train,
  type TrainingHook,
  type TrainingResult
} from "@peftkit/core"
import { Chain, compressChain, exportChain, saveChainLora } from "@peftkit/cola"
import { lora, loraConfig } from "@peftkit/lora"
import { adamw } from "@peftkit/optimizers"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import type { Mlp } from "./Mlp.js"
import { batchFor, klDivergence, type Dataset } from "./Tasks.js"

export type Method = "lora" | "cola" | "full"

export interface AdaptSettings {
  readonly steps: number
  readonly batchSize: number
  readonly rank: number
  readonly alpha: number
  readonly links: number
  readonly learningRate: { readonly lora: number; readonly full: number }
  readonly evalEvery: number
  readonly seed: number
}

/** What the demo did with the finished chain: one PEFT adapter, exact and compressed. */
export interface ChainExportSummary {
  readonly dir: string
  readonly rank: number
  readonly compressedDir: string
  readonly compressedRank: number
  readonly relativeError: number
}

export interface MethodResult {
  readonly method: Method
  readonly chainExport?: ChainExportSummary
  readonly training: TrainingResult
  readonly trainableParameters: number
  readonly validAccuracy: number
  readonly description: string
}

/** Mean loss and accuracy of `model` on a whole dataset (off the hot path: reads back once). */
export const evaluate = (model: Mlp, data: Dataset): Effect.Effect<{ loss: number; accuracy: number }> =>
  Effect.promise(async () => {
    const [loss, correct] = tf.tidy(() => {
      const logits = model.forward(data.x)
      // Accuracy: agreement with the teacher's most likely class.
      const hits = tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), tf.argMax(data.targets, 1)), "float32"))
      return [klDivergence(logits, data.targets), hits]
    })
    const values = await tf.concat([tf.reshape(loss, [1]), tf.reshape(correct, [1])]).data()
    loss.dispose()
    correct.dispose()
    return { loss: values[0]!, accuracy: values[1]! / data.size }
  })

const countParameters = (optimizer: Optimizer) => optimizer.groups.flatMap((g) => g.params).reduce((sum, p) => sum + p.variable.size, 0)

/** Trains `model` (a copy the caller owns) on `train` with `method`; returns what the table needs. */
export const adapt = (
  method: Method,
  model: Mlp,
  data: { readonly train: Dataset; readonly valid: Dataset },
  settings: AdaptSettings,
  outDir: string
): Effect.Effect<MethodResult, NonFiniteLoss | NonFiniteWeights | TrainingInterrupted | FileError | ThrownError, ProgressReporter | MetricsLog | FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const config = loraConfig({ r: settings.rank, alpha: settings.alpha, targetModules: "all-linear" })
    const optimizer = adamw([], { weightDecay: 0 })
    const peak = method === "full" ? settings.learningRate.full : settings.learningRate.lora
    const base = makeSchedule({ kind: "linear", peak, totalSteps: settings.steps, warmupSteps: Math.round(settings.steps * 0.05) })
    let hooks: ReadonlyArray<TrainingHook<ConfigError>> = []
    let schedule = base
    let description: string
    let chain: Chain<typeof config> | undefined
    if (method === "full") {
      optimizer.setParameters([{ params: model.baseParameters() }])
      description = "all weights"
    } else if (method === "lora") {
      const adapters = AdapterSet.inject(model, lora, config, { seed: settings.seed })
      optimizer.setParameters([{ params: adapters.parameters() }])
      description = `r=${settings.rank}`
    } else {
      chain = yield* attempt(() => Chain.make({ model, variant: lora, adapterConfig: config, chain: { totalSteps: settings.steps, links: settings.links, seed: settings.seed } }))
      chain.attach(optimizer)
      hooks = [chain.hook()]
      schedule = chain.schedule(base)
      description = `${settings.links} links x r=${settings.rank}`
    }
    const trainableParameters = countParameters(optimizer)
    const training = yield* train({
      label: method,
      loss: (batch: { x: tf.Tensor2D; targets: tf.Tensor2D }, training) => klDivergence(model.forward(batch.x, training), batch.targets),
      batch: (step) => batchFor(data.train, settings.batchSize, step, settings.seed),
      tokensPerBatch: () => settings.batchSize,
      optimizer,
      steps: settings.steps,
      learningRate: schedule,
      hooks,
      reportEvery: Math.max(1, Math.floor(settings.steps / 4)),
      evalEvery: settings.evalEvery,
      evaluate: () => Effect.map(evaluate(model, data.valid), (r) => r.loss)
    })
    const final = yield* evaluate(model, data.valid)
    optimizer.dispose()
    let chainExport: ChainExportSummary | undefined
    if (chain !== undefined) {
      // The whole chain as one standard PEFT LoRA (exact), and compressed back to the link rank.
      const exported = yield* exportChain(chain)
      const compressed = compressChain(exported, settings.rank)
      const dir = `${outDir}/cola-adapter-r${exported.rank}`
      const compressedDir = `${outDir}/cola-adapter-r${settings.rank}-svd`
      yield* saveChainLora(dir, exported)
      yield* saveChainLora(compressedDir, compressed.lora)
      chainExport = { dir, rank: exported.rank, compressedDir, compressedRank: compressed.lora.rank, relativeError: compressed.relativeError }
    }
    return { method, training, trainableParameters, validAccuracy: final.accuracy, description, ...(chainExport ? { chainExport } : {}) }
  })
