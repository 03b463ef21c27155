/**
 * XGBLoRA against its definition: every link is a rank-1 LoRA on a seeded random subset of L_s
 * transformer blocks; only those layers run and train their adapter, the knot adds eta times their
 * update to W and leaves every other layer's W bit for bit, and the chain (eta folded into the
 * recorded factors, zero factors where a layer sat out) exports as one PEFT LoRA.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { ConfigError, loadAdapter } from "@peftkit/core"
import { lora, loraScale } from "@peftkit/lora"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { denseUpdate, exportChain, linkRandom, MODULES_STREAM, sampleIndices, saveChainLora, XGB_DEFAULT_LAYER_FRACTION, xgbLayers, xgbPolicy } from "../src/index.js"
import { BLOCKS, forwardThrough, loraTensors, makeBlockRun, makeLayers, moduleNames, values } from "./support/blocks.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const ETA = 0.5
const blockOf = (name: string) => Number(/layers\.(\d+)\./.exec(name)![1])

describe("XGBLoRA layer draws", () => {
  it("a layer is a transformer block (all its targeted modules), or a module with unit 'module'", () => {
    expect(xgbLayers(moduleNames, "block")).toEqual(Array.from({ length: BLOCKS }, (_, i) => moduleNames.slice(2 * i, 2 * i + 2)))
    expect(xgbLayers(moduleNames, "module")).toEqual(moduleNames.map((name) => [name]))
    expect(xgbLayers(["model.decoder.layers.0.fc1", "model.decoder.layers.0.fc2", "lm_head"], "block")).toEqual([["model.decoder.layers.0.fc1", "model.decoder.layers.0.fc2"], ["lm_head"]])
    const drawn = sampleIndices(32, 11, linkRandom(0, 0, 1))
    expect(new Set(drawn).size).toBe(11)
    expect(drawn.every((i) => i >= 0 && i < 32)).toBe(true)
  })

  it("link l trains the blocks its seeded stream draws (L_s of them; by default 11/32 of the blocks), the same on every run", () => {
    const { chain, dispose } = makeBlockRun({ totalSteps: 40, links: 10, seed: 2 }, xgbPolicy({ layers: 2 }))
    const subsets = Array.from({ length: chain.links }, (_, link) => [...chain.modulesOf(link)])
    subsets.forEach((modules, link) => {
      const blocks = sampleIndices(BLOCKS, 2, linkRandom(2, link, MODULES_STREAM))
      expect(modules).toEqual(moduleNames.filter((name) => blocks.includes(blockOf(name))))
      expect(chain.rankOf(link)).toBe(1)
      expect(chain.mergeScaleOf(link)).toBe(1)
    })
    expect(new Set(subsets.map((m) => m.join())).size).toBeGreaterThan(1)
    dispose()
    const again = makeBlockRun({ totalSteps: 40, links: 10, seed: 2 }, xgbPolicy({ layers: 2 }))
    expect(Array.from({ length: 10 }, (_, link) => [...again.chain.modulesOf(link)])).toEqual(subsets)
    again.dispose()
    const byDefault = makeBlockRun({ totalSteps: 40, links: 3 }, xgbPolicy())
    expect(byDefault.chain.modulesOf(0).size).toBe(2 * Math.max(1, Math.round(XGB_DEFAULT_LAYER_FRACTION * BLOCKS))) // one block of four
    byDefault.dispose()
  })

  it("bad options are ConfigErrors naming the field", () => {
    const field = (make: () => unknown) => {
      try {
        make()
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError)
        return (error as ConfigError).field
      }
      return "no error"
    }
    expect(field(() => makeBlockRun({ totalSteps: 10, links: 2 }, xgbPolicy({ layers: BLOCKS + 1 })))).toBe("policy.layers")
    expect(field(() => xgbPolicy({ stepSize: 0 }))).toBe("policy.stepSize")
    expect(field(() => xgbPolicy({ layerFraction: 1.5 }))).toBe("policy.layerFraction")
    expect(field(() => xgbPolicy({ rank: 0 }))).toBe("policy.rank")
    expect(field(() => xgbPolicy({ freeze: "A" } as never))).toBe("policy.freeze")
  })
})

describe("XGBLoRA training", () => {
  it("only the link's blocks run and train a rank-1 adapter; the knot adds eta (alpha/r) B A to them and leaves every other W bit for bit", async () => {
    const steps = 50
    const { layers, chain, optimizer, run, dispose } = makeBlockRun({ totalSteps: steps, links: 5, seed: 4 }, xgbPolicy({ layers: 2, stepSize: ETA }), { r: 2, alpha: 4 })
    let beforeKnot: Array<{ weight: Array<number>; delta: Array<number> }> = []
    let trained: ReadonlySet<string> = new Set()
    const report: Array<string> = []
    await run(0, steps, {
      before: (step) =>
        Effect.sync(() => {
          if (!chain.knots.includes(step)) return
          trained = chain.modulesOf(chain.link)
          beforeKnot = layers.map((l) => ({ weight: values(l.weight), delta: values(tf.tidy(() => l.adapter!.delta(l))) }))
          // Layers that sat the link out still hold their untouched zero-update start.
          layers.filter((l) => !trained.has(l.name)).forEach((l) => expect(values(loraTensors(l).loraB).every((v) => v === 0)).toBe(true))
        }),
      after: (step) =>
        Effect.sync(() => {
          if (step !== chain.currentLinkStart) return
          const modules = chain.modulesOf(chain.link)
          expect(layers.every((l) => loraTensors(l).loraA.shape[0] === 1)).toBe(true) // rank 1 (the policy overrides r = 2)
          expect(layers.map((l) => l.adapterEnabled)).toEqual(layers.map((l) => modules.has(l.name)))
          expect(optimizer.groups.flatMap((g) => g.params.map((p) => p.name)).sort()).toEqual(
            [...modules].flatMap((name) => [`${name}.lora_A.weight`, `${name}.lora_B.weight`]).sort()
          )
          if (step === 0) return
          layers.forEach((l, i) => {
            const after = values(l.weight)
            const { weight, delta } = beforeKnot[i]!
            if (!trained.has(l.name)) {
              expect(after).toEqual(weight)
              report.push("out: unchanged")
            } else {
              const error = Math.max(...after.map((v, j) => Math.abs(v - (weight[j]! + ETA * delta[j]!))))
              expect(error).toBeLessThan(1e-6)
              expect(delta.some((v) => v !== 0)).toBe(true)
              report.push("in: W + eta delta")
            }
          })
          // The record holds eta (alpha/r) B: what was merged, and what export concatenates.
          const record = chain.history.at(-1)!
          for (const [name, update] of record.updates) {
            if (update.kind !== "factors") throw new Error("expected factors")
            expect(update.rank).toBe(1)
            if (!trained.has(name)) expect([...update.a, ...update.b].every((v) => v === 0)).toBe(true)
          }
        })
    })
    expect(report.filter((r) => r.startsWith("in")).length).toBe(4 * 4) // 4 knots x 2 blocks x 2 modules
    expect(report.filter((r) => r.startsWith("out")).length).toBe(4 * 4)
    dispose()
  })

  it("the recorded b is eta (alpha/r) B in float32", async () => {
    const { layers, chain, run, dispose } = makeBlockRun({ totalSteps: 20, knots: [10], seed: 4 }, xgbPolicy({ layers: 1, stepSize: ETA, rank: 1 }), { r: 1, alpha: 3 })
    let expectedB = new Map<string, Array<number>>()
    await run(0, 20, {
      before: (step) =>
        Effect.sync(() => {
          if (step === 10) expectedB = new Map(layers.map((l) => [l.name, values(loraTensors(l).loraB).map((v) => Math.fround(Math.fround(v * loraScale({ r: 1, alpha: 3, useRslora: false })) * ETA))]))
        })
    })
    for (const [name, update] of chain.history[0]!.updates) {
      if (update.kind !== "factors") throw new Error("expected factors")
      if (chain.modulesOf(0).has(name)) expect(Array.from(update.b)).toEqual(expectedB.get(name))
    }
    dispose()
  })

  it("exports as one PEFT LoRA of rank links x 1 on every layer (eta folded in) that reproduces the chained model", async () => {
    const { layers, original, chain, x, run, dispose } = makeBlockRun({ totalSteps: 50, links: 5, seed: 4 }, xgbPolicy({ layers: 2, stepSize: ETA }))
    await run(0, 50)
    const exported = await Effect.runPromise(exportChain(chain))
    expect(exported.rank).toBe(5)
    expect(exported.updates.map((u) => [u.moduleName, u.rank])).toEqual(moduleNames.map((name) => [name, 5]))
    for (const update of exported.updates) {
      const i = layers.findIndex((l) => l.name === update.moduleName)
      const layer = layers[i]!
      const total = values(tf.tidy(() => tf.sub(tf.add(layer.weight, layer.adapter!.delta(layer)), original[i]!)))
      const dense = denseUpdate(update).to1DArray()
      expect(Math.max(...total.map((v, j) => Math.abs(v - dense[j]!)))).toBeLessThan(1e-5)
    }
    const trained = values(forwardThrough(layers, x))
    const dir = mkdtempSync(join(tmpdir(), "peftkit-xgb-"))
    await Effect.runPromise(Effect.provide(saveChainLora(dir, exported), NodeFileSystem.layer))
    const fresh = makeLayers(original.map((w) => w.clone() as tf.Tensor2D))
    await Effect.runPromise(Effect.provide(loadAdapter(dir, { linears: () => fresh }, [lora]), NodeFileSystem.layer))
    const replay = values(forwardThrough(fresh, x))
    expect(Math.max(...replay.map((v, i) => Math.abs(v - trained[i]!)))).toBeLessThan(1e-4)
    fresh.forEach((l) => l.dispose())
    dispose()
  })
})
