import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { ConfigError, Linear, makeSchedule, MetricsLog, ProgressReporter, train, writeCheckpoint, loadAdapter } from "@peftkit/core"
import { lora, loraConfig } from "@peftkit/lora"
import { adamw } from "@peftkit/optimizers"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer } from "effect"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { Chain, CHAIN_ADAPTERS_FILE, chainCheckpointFiles, compressChain, denseUpdate, exportChain, restoreChain, saveChainLora } from "../src/index.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const services = Layer.merge(ProgressReporter.silent, MetricsLog.none)
const values = (t: tf.Tensor) => Array.from(t.dataSync())

const setup = (chain: Parameters<typeof Chain.make>[0]["chain"], shapes: Array<[string, number, number]> = [["a.q_proj", 12, 16], ["a.v_proj", 16, 12]], attach = true) => {
  const layers = shapes.map(([name, out, inF], i) => new Linear(name, tf.randomNormal([out, inF], 0, 0.3, "float32", i + 1)))
  const model = { linears: () => layers }
  const original = layers.map((l) => l.weight.clone())
  const cola = Chain.make({ model, variant: lora, adapterConfig: loraConfig({ r: 4, alpha: 8, dropout: 0.1, targetModules: ["q_proj", "v_proj"] }), chain })
  const optimizer = adamw([], { weightDecay: 0 })
  if (attach) cola.attach(optimizer)
  const x = tf.randomNormal([16, shapes[0]![2]], 0, 1, "float32", 99)
  const loss = () => {
    let h: tf.Tensor = x
    for (const layer of layers) h = tf.tanh(layer.apply(h, true))
    return tf.mean(tf.square(tf.sub(h, 0.5))) as tf.Scalar
  }
  const run = (steps: number, startStep = 0) =>
    Effect.runPromise(
      Effect.either(
        train({ loss, batch: () => undefined, optimizer, steps, startStep, learningRate: makeSchedule({ kind: "constant", peak: 0.02, totalSteps: 100 }), hooks: [cola.hook()], profileEvery: 0 }).pipe(Effect.provide(services))
      )
    )
  return { layers, cola, optimizer, run, original }
}

describe("chain edge cases", () => {
  it("export includes the current link even after the user merged it", async () => {
    const { layers, cola, run, original } = setup({ totalSteps: 20, links: 2 })
    await run(20)
    cola.adapters.merge()
    const exported = await Effect.runPromise(exportChain(cola))
    expect(exported.rank).toBe(8)
    exported.updates.forEach((update, i) => {
      const total = values(tf.sub(layers[i]!.weight, original[i]!))
      const dense = denseUpdate(update).to1DArray()
      expect(Math.max(...total.map((v, j) => Math.abs(v - dense[j]!)))).toBeLessThan(1e-5)
    })
  })

  it("a rank-changing knot leaks no tensors", async () => {
    const { cola, run } = setup({ totalSteps: 20, knots: [10], ranks: [4, 2] })
    await run(10)
    const before = tf.memory().numTensors
    await Effect.runPromise(cola.knot(10))
    // Two layers lose 2x(A, B) of rank 4 and gain the same number of rank-2 factors; optimizer slots likewise.
    expect(tf.memory().numTensors).toBe(before)
  })

  it("a knot without an attached optimizer is a ConfigError, not a silent no-reset", async () => {
    const { cola } = setup({ totalSteps: 20, links: 2 }, undefined, false)
    const error = await Effect.runPromise(Effect.flip(cola.knot(10)))
    expect(error).toBeInstanceOf(ConfigError)
    expect(cola.link).toBe(0)
  })

  it("compression gives every layer the same rank, even one smaller than the target, and the file reloads", async () => {
    const { layers, cola, run } = setup({ totalSteps: 20, links: 2 }, [["a.q_proj", 16, 3], ["a.v_proj", 16, 16]])
    await run(20)
    const exported = await Effect.runPromise(exportChain(cola))
    const compressed = compressChain(exported, 4)
    expect(compressed.lora.updates.map((u) => u.rank)).toEqual([4, 4])
    // The 16x3 layer's update has rank <= 3: compressing to 4 loses nothing.
    expect(compressed.layers[0]!.relativeError).toBeLessThan(1e-6)
    const dir = mkdtempSync(join(tmpdir(), "peftkit-compress-"))
    await Effect.runPromise(Effect.provide(saveChainLora(dir, compressed.lora), NodeFileSystem.layer))
    const fresh = layers.map((l) => new Linear(l.name, tf.zeros(l.weight.shape)))
    const loaded = await Effect.runPromise(Effect.provide(loadAdapter(dir, { linears: () => fresh }, [lora]), NodeFileSystem.layer))
    expect(loaded.config.r).toBe(4)
  })

  it("a failed restore leaves the model and chain untouched, and a retry with good files succeeds", async () => {
    const root = mkdtempSync(join(tmpdir(), "peftkit-badrestore-"))
    const first = setup({ totalSteps: 30, links: 3 })
    await first.run(15)
    const dir = await Effect.runPromise(Effect.provide(Effect.flatMap(chainCheckpointFiles(first.cola), (files) => writeCheckpoint(root, { step: 15 }, files)), NodeFileSystem.layer))
    const target = setup({ totalSteps: 30, links: 3 })
    const weights = target.layers.map((l) => values(l.weight))
    const good = (await Effect.runPromise(chainCheckpointFiles(first.cola)))[CHAIN_ADAPTERS_FILE] as Uint8Array
    writeFileSync(join(dir, CHAIN_ADAPTERS_FILE), good.subarray(0, 40))
    const error = await Effect.runPromise(Effect.provide(Effect.flip(restoreChain(target.cola, dir)), NodeFileSystem.layer))
    expect(error._tag).toBe("InvalidSafetensors")
    expect(target.layers.map((l) => values(l.weight))).toEqual(weights)
    expect(target.cola.link).toBe(0)
    writeFileSync(join(dir, CHAIN_ADAPTERS_FILE), good)
    await Effect.runPromise(Effect.provide(restoreChain(target.cola, dir), NodeFileSystem.layer))
    expect(target.cola.link).toBe(1)
    expect(target.layers.map((l) => values(l.weight))).toEqual(first.layers.map((l) => values(l.weight)))
  })

  it("resume with dropout is bit-identical (the dropout streams are restored)", async () => {
    const reference = setup({ totalSteps: 30, links: 3 })
    await reference.run(30)
    const root = mkdtempSync(join(tmpdir(), "peftkit-dropresume-"))
    const first = setup({ totalSteps: 30, links: 3 })
    await first.run(15)
    const dir = await Effect.runPromise(Effect.provide(Effect.flatMap(chainCheckpointFiles(first.cola), (files) => writeCheckpoint(root, { step: 15 }, files)), NodeFileSystem.layer))
    const resumed = setup({ totalSteps: 30, links: 3 })
    await Effect.runPromise(Effect.provide(restoreChain(resumed.cola, dir), NodeFileSystem.layer))
    // Same optimizer state as the interrupted run: copy it over (core's restoreOptimizer does this from a file).
    const state = first.optimizer.stateDict()
    resumed.optimizer.loadStateDict(state)
    await resumed.run(30, 15)
    const snapshot = (run: typeof reference) => run.layers.map((l) => values(l.apply(tf.eye(l.inFeatures), false)))
    expect(snapshot(resumed)).toEqual(snapshot(reference))
  })
})
