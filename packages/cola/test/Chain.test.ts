import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { ConfigError, Linear, MetricsLog, mixSeed, ProgressReporter, makeSchedule, train, loadAdapter } from "@peftkit/core"
import { lora, type LoraAdapter, loraConfig } from "@peftkit/lora"
import { adamw } from "@peftkit/optimizers"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { Chain, chainConfig, compressChain, compressUpdate, denseUpdate, exportChain, knotSteps, saveChainLora } from "../src/index.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const services = Layer.merge(ProgressReporter.silent, MetricsLog.none)
const config = loraConfig({ r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"] })

/** Two adapted layers and one untouched, with a regression loss on fixed data. */
const setup = (chain: Parameters<typeof Chain.make>[0]["chain"]) => {
  const layers = [
    new Linear("block.q_proj", tf.randomNormal([12, 16], 0, 0.3, "float32", 1)),
    new Linear("block.k_proj", tf.randomNormal([12, 16], 0, 0.3, "float32", 2)),
    new Linear("block.v_proj", tf.randomNormal([10, 12], 0, 0.3, "float32", 3))
  ]
  const model = { linears: () => layers }
  const x = tf.randomNormal([32, 16], 0, 1, "float32", 4)
  const target = tf.randomNormal([32, 10], 0, 1, "float32", 5)
  const forward = (training: boolean) => layers[2]!.apply(tf.tanh(tf.add(layers[0]!.apply(x, training), layers[1]!.apply(x, training))), training)
  const loss = () => tf.mean(tf.square(tf.sub(forward(true), target))) as tf.Scalar
  const cola = Chain.make({ model, variant: lora, adapterConfig: config, chain })
  const optimizer = cola.attach(adamw([], { weightDecay: 0 }))
  const trainFor = (steps: number, startStep = 0) =>
    Effect.runPromise(
      train({ loss, batch: () => undefined, optimizer, steps, startStep, learningRate: makeSchedule({ kind: "constant", peak: 0.02, totalSteps: 100 }), hooks: [cola.hook()], profileEvery: 0 }).pipe(Effect.provide(services))
    )
  return { layers, model, cola, optimizer, trainFor, forward, x }
}

const values = (tensor: tf.Tensor) => Array.from(tensor.dataSync())

describe("chain config", () => {
  it("splits the budget evenly into links, or takes explicit knots", () => {
    expect(knotSteps(chainConfig({ totalSteps: 100, links: 3 }))).toEqual([33, 67])
    expect(knotSteps(chainConfig({ totalSteps: 100, knots: [10, 50] }))).toEqual([10, 50])
    expect(knotSteps(chainConfig({ totalSteps: 10, links: 1 }))).toEqual([])
  })

  it("bad chain config is a ConfigError naming the field", () => {
    const field = (input: unknown) => {
      try {
        chainConfig(input as never)
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError)
        return (error as ConfigError).field
      }
      return "no error"
    }
    expect(field({ totalSteps: 100, knots: [50, 20] })).toBe("chain.knots.1")
    expect(field({ totalSteps: 100, knots: [100] })).toBe("chain.knots.0")
    expect(field({ totalSteps: 100, links: 2, ranks: [8] })).toBe("chain.ranks")
    expect(field({ totalSteps: 100, link: 2 })).toBe("chain.link")
    expect(field({ totalSteps: -1 })).toBe("chain.totalSteps")
    expect(field({ totalSteps: 10, optimizerAtKnot: { prune: 2 } })).toBe("chain.optimizerAtKnot")
  })
})

describe("optimizer groups", () => {
  it("follow the variant's setting (LoRA+ from loraPlusRatio) on every link, after a knot too", async () => {
    const layers = ["q_proj", "v_proj"].map((name, i) => new Linear(`model.layers.0.self_attn.${name}`, tf.randomNormal<tf.Rank.R2>([4, 4], 0, 1, "float32", i + 1)))
    const chain = Chain.make({ model: { linears: () => layers }, variant: lora, adapterConfig: loraConfig({ r: 2, loraPlusRatio: 16, targetModules: ["q_proj", "v_proj"] }), chain: { totalSteps: 10, links: 2 } })
    const optimizer = chain.attach(adamw([], { weightDecay: 0 }))
    expect(optimizer.groups.map((g) => [g.params.length, g.lrScale])).toEqual([[2, undefined], [2, 16]])
    await Effect.runPromise(chain.knot(5))
    expect(optimizer.groups.map((g) => [g.params.length, g.lrScale])).toEqual([[2, undefined], [2, 16]])
    optimizer.dispose()
    chain.adapters.remove()
  })
})

describe("a knot", () => {
  it("adds exactly the link's delta to W, freshly initialises the factors, and zeroes the optimizer state", async () => {
    const { layers, cola, optimizer, trainFor } = setup({ totalSteps: 40, knots: [20], seed: 11 })
    await trainFor(20) // the whole first link; the knot runs before step 20
    const q = layers[0]!
    const expectedW = tf.tidy(() => tf.add(q.weight, q.adapter!.delta(q)))
    const untouchedK = values(layers[1]!.weight)
    // The optimizer really has state before the knot.
    const before = optimizer.stateDict()
    expect(Object.values(before).some((t) => values(t).some((v) => v !== 0))).toBe(true)
    Object.values(before).forEach((t) => t.dispose())

    const numTensors = tf.memory().numTensors
    await Effect.runPromise(cola.knot(20))
    expect(tf.memory().numTensors).toBe(numTensors)

    expect(values(q.weight)).toEqual(values(expectedW)) // bit-exact float32 merge
    expect(values(layers[1]!.weight)).toEqual(untouchedK)
    expect(cola.link).toBe(1)
    layers.filter((l) => l.adapter !== undefined).forEach((layer, index) => {
      const adapter = layer.adapter as LoraAdapter
      const fresh = lora.create(layer, config, mixSeed(11, 1, index)) as LoraAdapter
      expect(values(adapter.tensors.loraA)).toEqual(values(fresh.tensors.loraA))
      expect(values(adapter.tensors.loraB).every((v) => v === 0)).toBe(true)
      expect(layer.merged).toBe(false)
      fresh.dispose()
    })
    const after = optimizer.stateDict()
    expect(Object.keys(after).length).toBeGreaterThan(0)
    for (const [key, tensor] of Object.entries(after)) expect(values(tensor).every((v) => v === 0), key).toBe(true)
    Object.values(after).forEach((t) => t.dispose())
    expectedW.dispose()
  })

  it("prune policy zeroes the requested fraction instead of everything", async () => {
    const { cola, optimizer, trainFor } = setup({ totalSteps: 40, knots: [20], optimizerAtKnot: { prune: 0.75 } })
    await trainFor(20)
    await Effect.runPromise(cola.knot(20))
    const state = optimizer.stateDict()
    const moments = Object.entries(state).filter(([key]) => key.endsWith("exp_avg_sq")).flatMap(([, t]) => values(t))
    const zeros = moments.filter((v) => v === 0).length / moments.length
    expect(zeros).toBeGreaterThanOrEqual(0.75)
    expect(zeros).toBeLessThan(0.8)
    Object.values(state).forEach((t) => t.dispose())
  })

  it("rank step-down: the next link gets new adapters of the new rank and the optimizer follows", async () => {
    const { layers, cola, optimizer, trainFor } = setup({ totalSteps: 40, knots: [20], ranks: [4, 2] })
    await trainFor(40)
    expect(cola.link).toBe(1)
    expect((layers[0]!.adapter as LoraAdapter).config.r).toBe(2)
    const names = optimizer.groups.flatMap((g) => g.params.map((p) => p.variable.shape))
    expect(names).toEqual([[2, 16], [12, 2], [2, 12], [10, 2]])
    expect(cola.history.map((h) => h.rank)).toEqual([4])
  })

  it("a training run through knots leaves numTensors where it found it", async () => {
    const { trainFor, cola } = setup({ totalSteps: 30, links: 3 })
    await trainFor(3) // warm: optimizer state exists
    const before = tf.memory().numTensors
    await trainFor(30, 3)
    expect(cola.link).toBe(2)
    expect(tf.memory().numTensors).toBe(before)
  })
})

describe("export", () => {
  it("the rank-L*r LoRA reproduces the chain's total update, and saved in PEFT layout reproduces the outputs on the original model", async () => {
    const { layers, cola, trainFor, forward } = setup({ totalSteps: 60, links: 3 })
    const original = layers.map((layer) => layer.weight.clone())
    await trainFor(60)
    const exported = await Effect.runPromise(exportChain(cola))
    expect(exported.rank).toBe(12)
    for (const update of exported.updates) {
      const layer = layers.find((l) => l.name === update.moduleName)!
      const index = layers.indexOf(layer)
      const total = tf.tidy(() => tf.sub(tf.add(layer.weight, layer.adapter!.delta(layer)), original[index]!))
      const dense = denseUpdate(update).to1DArray()
      const diff = Math.max(...values(total).map((v, i) => Math.abs(v - dense[i]!)))
      expect(diff).toBeLessThan(1e-5)
      total.dispose()
    }
    const trained = values(tf.tidy(() => forward(false)))

    // Fresh model with the ORIGINAL weights + the exported adapter = the trained chain.
    const dir = mkdtempSync(join(tmpdir(), "peftkit-chain-"))
    await Effect.runPromise(Effect.provide(saveChainLora(dir, exported), NodeFileSystem.layer))
    const fresh = layers.map((layer, i) => new Linear(layer.name, original[i]!))
    const loaded = await Effect.runPromise(Effect.provide(loadAdapter(dir, { linears: () => fresh }, [lora]), NodeFileSystem.layer))
    expect(loaded.config.r).toBe(12)
    expect(loaded.config.alpha).toBe(12)
    const x = tf.randomNormal([32, 16], 0, 1, "float32", 4)
    const replay = values(tf.tidy(() => fresh[2]!.apply(tf.tanh(tf.add(fresh[0]!.apply(x), fresh[1]!.apply(x))))))
    expect(Math.max(...replay.map((v, i) => Math.abs(v - trained[i]!)))).toBeLessThan(1e-4)
  })

  it("SVD compression keeps the update exactly at full rank and reports the Eckart-Young error below it", async () => {
    const { cola, trainFor } = setup({ totalSteps: 60, links: 3 })
    await trainFor(60)
    const exported = await Effect.runPromise(exportChain(cola))
    const update = exported.updates[0]!
    const full = compressUpdate(update, 12)
    expect(full.relativeError).toBeLessThan(1e-6)
    const denseFull = denseUpdate(update)
    const reconstructed = denseUpdate(full.update)
    expect(Math.max(...denseFull.clone().sub(reconstructed).abs().to1DArray())).toBeLessThan(1e-5)

    const compressed = compressUpdate(update, 3)
    const sigma = full.singularValues
    const expected = Math.sqrt(sigma.slice(3).reduce((s, v) => s + v * v, 0) / sigma.reduce((s, v) => s + v * v, 0))
    expect(compressed.relativeError).toBeCloseTo(expected, 10)
    // The reported error is the error of the factors actually produced.
    const actual = denseFull.clone().sub(denseUpdate(compressed.update)).norm() / denseFull.norm()
    expect(Math.abs(actual - compressed.relativeError)).toBeLessThan(1e-5)
    expect(compressed.update.rank).toBe(3)

    const chain = compressChain(exported, 3)
    expect(chain.lora.rank).toBe(3)
    expect(chain.layers.map((l) => l.moduleName)).toEqual(["block.q_proj", "block.v_proj"])
    expect(chain.relativeError).toBeGreaterThan(0)
    expect(chain.relativeError).toBeLessThan(1)
  })
})
