/**
 * The same COLA training run (LoRA factors, AdamW, clipping, knots) on the plain CPU backend and on
 * wasm, the portable default, in one process: the losses agree step by step and the results match.
 * (@peftkit/lora, cola and optimizers resolve through the workspace test alias.)
 */
import { Backend, Linear, makeSchedule, MetricsLog, ProgressReporter, train } from "@peftkit/core"
import { Chain } from "@peftkit/cola"
import { lora, loraConfig } from "@peftkit/lora"
import { adamw } from "@peftkit/optimizers"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer } from "effect"
import { describe, expect, it } from "vitest"
import { providers } from "../src/index.js"

const runOn = (backend: "cpu" | "wasm") =>
  Effect.gen(function* () {
    const layers = [
      new Linear("m.layers.0.q_proj", tf.randomNormal([32, 48], 0, 0.2, "float32", 1), tf.randomNormal([32], 0, 0.1, "float32", 2) as tf.Tensor1D),
      new Linear("m.layers.0.v_proj", tf.randomNormal([24, 32], 0, 0.2, "float32", 3))
    ]
    const chain = Chain.make({ model: { linears: () => layers }, variant: lora, adapterConfig: loraConfig({ r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"] }), chain: { totalSteps: 30, links: 3, seed: 1 } })
    const optimizer = chain.attach(adamw([], { weightDecay: 0.01 }))
    const result = yield* train({
      loss: (batch: { x: tf.Tensor; y: tf.Tensor }) => tf.mean(tf.square(tf.sub(layers[1]!.apply(tf.tanh(layers[0]!.apply(batch.x, true)), true), batch.y))) as tf.Scalar,
      batch: (step) => ({ x: tf.randomNormal([16, 48], 0, 1, "float32", 100 + step), y: tf.randomNormal([16, 24], 0, 0.5, "float32", 200 + step) }),
      optimizer,
      steps: 30,
      learningRate: chain.schedule(makeSchedule({ kind: "linear", peak: 0.02, totalSteps: 30, warmupSteps: 3 })),
      hooks: [chain.hook()],
      clipNorm: 1,
      profileEvery: 0
    })
    const weights = layers.map((layer) => Array.from(layer.weight.dataSync()))
    optimizer.dispose()
    layers.forEach((layer) => layer.dispose())
    return { losses: result.trainLoss.map((entry) => entry.loss), weights }
  }).pipe(Effect.provide(Layer.mergeAll(Backend.layer(backend, providers), ProgressReporter.silent, MetricsLog.none)))

describe("training on wasm matches the CPU reference", () => {
  it("30 COLA steps (2 knots): per-step losses within 1e-4 relative, merged weights within 1e-4", async () => {
    const cpu = await Effect.runPromise(runOn("cpu"))
    const wasm = await Effect.runPromise(runOn("wasm"))
    expect(tf.getBackend()).toBe("wasm")
    expect(wasm.losses).toHaveLength(30)
    wasm.losses.forEach((loss, i) => expect(Math.abs(loss - cpu.losses[i]!) / cpu.losses[i]!).toBeLessThan(1e-4))
    const worst = Math.max(...wasm.weights.flatMap((w, i) => w.map((v, j) => Math.abs(v - cpu.weights[i]![j]!))))
    expect(worst).toBeLessThan(1e-4)
    expect(cpu.losses.at(-1)!).toBeLessThan(cpu.losses[0]!)
  })

  it("avoids a tfjs-backend-wasm 4.22 bug in its kernel: fused matMul with transposeB AND bias (wrong in tfjs's own kernel) is right", async () => {
    await Effect.runPromise(Effect.provide(Effect.void, Backend.layer("wasm", providers)))
    const x = tf.randomNormal([16, 48], 0, 1, "float32", 100)
    const w = tf.randomNormal([32, 48], 0, 0.2, "float32", 1)
    const bias = tf.randomNormal([32], 0, 0.1, "float32", 2)
    const reference = tf.add(tf.matMul(x, w, false, true), bias)
    const error = (t: tf.Tensor) => Math.max(...Array.from(tf.abs(tf.sub(t, reference)).dataSync()))
    expect(error(tf.fused.matMul({ a: x, b: tf.transpose(w), bias }))).toBeLessThan(1e-5)
    expect(error(tf.add(tf.fused.matMul({ a: x, b: w, transposeB: true }), bias))).toBeLessThan(1e-5)
    // tfjs's own kernel is off by more than 0.01 here; peftkit's _FusedMatMul transposes W first.
    expect(error(tf.fused.matMul({ a: x, b: w, transposeB: true, bias }))).toBeLessThan(1e-5)
  })
})
