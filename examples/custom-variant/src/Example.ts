/**
 * The custom variant in use, through the public API only: a two-layer model learns a linear map
 * with `frozenALora` in a three-link COLA chain; the chain is saved as one PEFT LoRA and the last
 * link as a PEFT adapter of the variant itself, both reloaded onto a fresh copy of the base model.
 */
import { Chain, exportChain, saveChainLora } from "@peftkit/cola"
import { Linear, loadAdapter, makeSchedule, saveAdapter, train } from "@peftkit/core"
import { lora, loraConfig } from "@peftkit/lora"
import { adamw } from "@peftkit/optimizers"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { frozenALora } from "./FrozenALora.js"

const baseModel = () => {
  const weights = [tf.randomNormal<tf.Rank.R2>([32, 16], 0, 0.25, "float32", 1), tf.randomNormal<tf.Rank.R2>([8, 32], 0, 0.25, "float32", 2)]
  // A Linear keeps its own copy of the weight.
  const layers = [new Linear("model.layers.0.mlp.up_proj", weights[0]!), new Linear("model.layers.0.mlp.down_proj", weights[1]!)]
  tf.dispose(weights)
  return { layers, linears: () => layers, forward: (x: tf.Tensor2D, training = false) => tf.tidy(() => layers[1]!.apply(tf.relu(layers[0]!.apply(x, training)), training) as tf.Tensor2D) }
}

const maxAbsDiff = (a: () => tf.Tensor, b: tf.Tensor): number => tf.tidy(() => tf.max(tf.abs(tf.sub(a(), b))).dataSync()[0]!)

export const runExample = (dir: string, steps = 240) =>
  Effect.gen(function* () {
    const model = baseModel()
    const x = tf.randomNormal<tf.Rank.R2>([64, 16], 0, 1, "float32", 3)
    const target = tf.tidy(() => tf.add(model.forward(x), tf.matMul(x, tf.randomNormal([16, 8], 0, 0.3, "float32", 4))))
    const loss = () => tf.losses.meanSquaredError(target, model.forward(x, true)) as tf.Scalar
    const initialLoss = tf.tidy(() => loss().dataSync()[0]!)

    const chain = Chain.make({
      model,
      variant: frozenALora,
      adapterConfig: loraConfig({ r: 2, alpha: 4, targetModules: ["up_proj", "down_proj"] }),
      chain: { totalSteps: steps, links: 3, seed: 7 }
    })
    const optimizer = chain.attach(adamw([], { weightDecay: 0 }))
    const trainable = optimizer.groups.flatMap((group) => group.params).map((param) => param.name)
    const result = yield* train({
      loss,
      batch: () => undefined,
      optimizer,
      steps,
      learningRate: chain.schedule(makeSchedule({ kind: "linear", peak: 2e-2, totalSteps: steps, warmupSteps: 5 })),
      hooks: [chain.hook()]
    })
    const trained = model.forward(x)

    // The chain as one plain PEFT LoRA (rank 3 x 2), reloaded with the stock LoRA variant.
    yield* saveChainLora(`${dir}/chain`, yield* exportChain(chain))
    const fresh = baseModel()
    const reloadedChain = yield* loadAdapter(`${dir}/chain`, fresh, [lora])
    const chainDiff = maxAbsDiff(() => fresh.forward(x), trained)
    reloadedChain.remove()

    // The link in training alone, saved in the variant's own format, onto the base with the finished links merged.
    yield* saveAdapter(`${dir}/last-link`, chain.adapters)
    fresh.layers.forEach((layer, index) => layer.weight.assign(model.layers[index]!.weight))
    const reloadedLink = yield* loadAdapter(`${dir}/last-link`, fresh, [frozenALora])
    const linkDiff = maxAbsDiff(() => fresh.forward(x), trained)
    const variant = reloadedLink.variant.name
    reloadedLink.remove()
    chain.adapters.remove()
    optimizer.dispose()
    for (const layer of [...model.layers, ...fresh.layers]) layer.dispose()
    tf.dispose([x, target, trained])
    return { initialLoss, finalLoss: result.trainLoss.at(-1)?.loss ?? Number.NaN, trainable, links: chain.links, chainDiff, linkDiff, variant }
  })
