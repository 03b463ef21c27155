/**
 * VeRA in a COLA chain (`@peftkit/cola`'s Chain, unchanged): each link's update
 * diag(lambda_b) B_s diag(lambda_d) A_s is merged into W at the knot, the lambdas restart (lambda_b
 * at zero), the shared projections stay; the factors are exact, so the chain exports as one LoRA.
 */
import { Linear, makeSchedule, MetricsLog, ProgressReporter, train } from "@peftkit/core"
import { Chain, exportChain } from "@peftkit/cola"
import { adamw } from "@peftkit/optimizers"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import { vera, veraConfig } from "../src/index.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

describe("VeRA in a COLA chain", () => {
  it("a 3-link chain trains (the loss falls), merges exactly, and exports as one exact LoRA of rank 3r", async () => {
    const layers = [new Linear("block.q_proj", tf.randomNormal([12, 16], 0, 0.3, "float32", 1)), new Linear("block.v_proj", tf.randomNormal([10, 12], 0, 0.3, "float32", 3))]
    const original = layers.map((layer) => layer.weight.clone())
    const model = { linears: () => layers }
    const x = tf.randomNormal([32, 16], 0, 1, "float32", 4)
    const target = tf.randomNormal([32, 10], 0, 1, "float32", 5)
    const forward = (training: boolean) => layers[1]!.apply(tf.tanh(layers[0]!.apply(x, training)), training)
    const lossOf = () => tf.tidy(() => tf.mean(tf.square(tf.sub(forward(false), target))).dataSync()[0]!)
    const chain = Chain.make({ model, variant: vera, adapterConfig: veraConfig({ r: 8, targetModules: ["q_proj", "v_proj"] }), chain: { totalSteps: 90, links: 3 } })
    const optimizer = chain.attach(adamw([], { weightDecay: 0 }))
    const sharedA = chain.adapters.shared!.tensors["veraA"]
    const before = lossOf()
    await Effect.runPromise(
      train({
        loss: () => tf.mean(tf.square(tf.sub(forward(true), target))) as tf.Scalar,
        batch: () => undefined,
        optimizer,
        steps: 90,
        learningRate: makeSchedule({ kind: "constant", peak: 0.05, totalSteps: 90 }),
        hooks: [chain.hook()],
        profileEvery: 0
      }).pipe(Effect.provide(Layer.merge(ProgressReporter.silent, MetricsLog.none)))
    )
    const after = lossOf()
    console.log(`VeRA chain (3 links x r=8): loss ${before.toFixed(4)} -> ${after.toFixed(4)}`)
    expect(after).toBeLessThan(0.8 * before)
    expect(chain.history.map((record) => record.updates.get("block.q_proj")!.kind)).toEqual(["factors", "factors"])
    // The projections are the set's, kept across links.
    expect(chain.adapters.shared!.tensors["veraA"]).toBe(sharedA)

    // Merged (the last link too) vs unmerged output.
    const unmerged = tf.tidy(() => forward(false).dataSync().slice())
    chain.adapters.merge()
    const merged = tf.tidy(() => forward(false).dataSync().slice())
    const mergeDiff = Math.max(...Array.from(merged, (v, i) => Math.abs(v - unmerged[i]!)))
    chain.adapters.unmerge()
    expect(mergeDiff).toBeLessThan(1e-5)

    // The whole chain as one LoRA on the ORIGINAL weights gives the chain's output.
    const exported = await Effect.runPromise(exportChain(chain))
    expect(exported.rank).toBe(24)
    const viaLora = tf.tidy(() => {
      const weights = exported.updates.map((update, i) =>
        tf.add(original[i]!, tf.matMul(tf.tensor2d(update.b, [update.outFeatures, update.rank]), tf.tensor2d(update.a, [update.rank, update.inFeatures])))
      )
      const h = tf.tanh(tf.matMul(x, weights[0]!, false, true))
      return tf.matMul(h, weights[1]!, false, true).dataSync().slice()
    })
    const exportDiff = Math.max(...Array.from(viaLora, (v, i) => Math.abs(v - unmerged[i]!)))
    console.log(`VeRA chain: merged vs unmerged ${mergeDiff.toExponential(2)}, exported LoRA vs chain ${exportDiff.toExponential(2)}`)
    expect(exportDiff).toBeLessThan(1e-4)
    optimizer.dispose()
    chain.adapters.remove()
    tf.dispose([x, target, ...original])
    layers.forEach((layer) => layer.dispose())
  })
})
