/**
 * A four-block model with Hugging Face module names (q_proj and down_proj per block, 12x12), a
 * regression loss, and a chain on it with a given policy; observers can run before and after the
 * chain's own hook at every step.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { Linear, makeSchedule, MetricsLog, ProgressReporter, type TrainingHook, train } from "@peftkit/core"
import { lora, type LoraAdapter, type LoraConfig, loraConfig } from "@peftkit/lora"
import { adamw } from "@peftkit/optimizers"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer } from "effect"
import { Chain, type ChainConfigInput, type LinkPolicy } from "../../src/index.js"

export const BLOCKS = 4
export const WIDTH = 12
const services = Layer.merge(ProgressReporter.silent, MetricsLog.none)

export const moduleNames = Array.from({ length: BLOCKS }, (_, i) => [`model.layers.${i}.self_attn.q_proj`, `model.layers.${i}.mlp.down_proj`]).flat()

export const makeLayers = (weights?: ReadonlyArray<tf.Tensor2D>) =>
  moduleNames.map((name, i) => new Linear(name, weights?.[i] ?? tf.randomNormal([WIDTH, WIDTH], 0, 0.3, "float32", 10 + i)))

/** h -> tanh(down(tanh(q(h)))) through every block. */
export const forwardThrough = (layers: ReadonlyArray<Linear>, x: tf.Tensor2D, training = false): tf.Tensor2D =>
  tf.tidy(() => {
    let h: tf.Tensor = x
    for (let i = 0; i < layers.length; i += 2) h = tf.tanh(layers[i + 1]!.apply(tf.tanh(layers[i]!.apply(h, training)), training))
    return h as tf.Tensor2D
  })

export const values = (tensor: tf.Tensor): Array<number> => Array.from(tensor.dataSync())

export const loraTensors = (layer: Linear) => (layer.adapter as LoraAdapter).tensors

export const makeBlockRun = (
  chainInput: ChainConfigInput,
  policy?: LinkPolicy<LoraConfig>,
  adapter: { readonly r: number; readonly alpha: number } = { r: 2, alpha: 4 },
  learningRate = 0.02
) => {
  const layers = makeLayers()
  const original = layers.map((layer) => layer.weight.clone() as tf.Tensor2D)
  const model = { linears: () => layers }
  const chain = Chain.make({ model, variant: lora, adapterConfig: loraConfig({ ...adapter, targetModules: ["q_proj", "down_proj"] }), chain: chainInput, ...(policy ? { policy } : {}) })
  const optimizer = chain.attach(adamw([], { weightDecay: 0 }))
  const x = tf.randomNormal([24, WIDTH], 0, 1, "float32", 3) as tf.Tensor2D
  const target = tf.randomNormal([24, WIDTH], 0, 0.5, "float32", 4)
  const loss = () => tf.mean(tf.square(tf.sub(forwardThrough(layers, x, true), target))) as tf.Scalar
  const schedule = chain.schedule(makeSchedule({ kind: "constant", peak: learningRate, totalSteps: chain.config.totalSteps }))
  /** Trains steps [from, to); `before` / `after` run around the chain's hook at every step. */
  const run = (from: number, to: number, observers: { before?: TrainingHook["beforeStep"]; after?: TrainingHook["beforeStep"] } = {}, extra: Partial<Parameters<typeof train>[0]> = {}) =>
    Effect.runPromise(
      train({
        loss,
        batch: () => undefined,
        optimizer,
        steps: to,
        startStep: from,
        learningRate: schedule,
        hooks: [{ beforeStep: observers.before }, chain.hook(), { beforeStep: observers.after }],
        profileEvery: 0,
        ...extra
      } as Parameters<typeof train>[0]).pipe(Effect.provide(services), Effect.provide(NodeFileSystem.layer)) as Effect.Effect<unknown>
    )
  const snapshot = () => layers.flatMap((l) => [l.weight, ...Object.values((l.adapter as LoraAdapter).tensors)]).map(values)
  const dispose = () => {
    optimizer.dispose()
    layers.forEach((layer) => layer.dispose())
    tf.dispose([...original, x, target])
  }
  return { layers, original, chain, optimizer, x, loss, run, snapshot, dispose }
}
