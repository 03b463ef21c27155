/**
 * RAC-LoRA against its definition: on every link one factor is drawn (a seeded coin per link, or a
 * fixed pattern) and stays at its random draw while the other, started at zero, is the only one
 * that trains; the link is then merged whole and the chain exports as one PEFT LoRA.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { ConfigError, Linear, loadAdapter } from "@peftkit/core"
import { lora, loraConfig } from "@peftkit/lora"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { Chain, chainPolicy, CONFIG_STREAM, denseUpdate, exportChain, linkRandom, racPolicy, type RacOptionsInput, saveChainLora } from "../src/index.js"
import { forwardThrough, loraTensors, makeBlockRun, makeLayers, values } from "./support/blocks.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const draws = (options: RacOptionsInput, seed: number, links = 200) => {
  const layers = [new Linear("fc", tf.zeros([2, 2]))]
  const chain = Chain.make({ model: { linears: () => layers }, variant: lora, adapterConfig: loraConfig({ r: 1, targetModules: ["fc"] }), chain: { totalSteps: links, links, seed }, policy: racPolicy(options) })
  const frozen = Array.from({ length: chain.links }, (_, link) => chain.configOf(link).freeze)
  layers[0]!.dispose()
  return frozen
}
const share = (frozen: ReadonlyArray<string>) => frozen.filter((f) => f === "A").length / frozen.length

describe("RAC-LoRA draws", () => {
  it("link l freezes A exactly when its own seeded uniform u_l < p: the same from the same seed, another from another", () => {
    const frozen = draws({}, 3)
    expect(frozen).toEqual(Array.from({ length: 200 }, (_, link) => (linkRandom(3, link, CONFIG_STREAM)() < 0.5 ? "A" : "B")))
    expect(draws({}, 3)).toEqual(frozen)
    expect(draws({}, 4)).not.toEqual(frozen)
    // 200 fair coins: the share of A within 3 standard deviations (0.035) of 1/2; and p = 0.9 likewise.
    expect(Math.abs(share(frozen) - 0.5)).toBeLessThan(0.11)
    expect(Math.abs(share(draws({ probability: 0.9 }, 3)) - 0.9)).toBeLessThan(0.07)
  })

  it("fixed and alternating policies, and the coin's ends", () => {
    expect(draws({ freeze: "A" }, 1, 6)).toEqual(["A", "A", "A", "A", "A", "A"])
    expect(draws({ freeze: "B" }, 1, 3)).toEqual(["B", "B", "B"])
    expect(draws({ freeze: "alternate" }, 1, 5)).toEqual(["A", "B", "A", "B", "A"])
    expect(draws({ probability: 0 }, 1, 20).every((f) => f === "B")).toBe(true)
    expect(draws({ probability: 1 }, 1, 20).every((f) => f === "A")).toBe(true)
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
    expect(field(() => racPolicy({ probability: 1.5 }))).toBe("policy.probability")
    expect(field(() => racPolicy({ freeze: "both" as never }))).toBe("policy.freeze")
    expect(field(() => chainPolicy("rac", { stepSize: 1 } as never))).toBe("policy.stepSize")
    expect(field(() => chainPolicy("ralora"))).toBe("policy")
    expect(field(() => chainPolicy("cola", { rank: 1 } as never))).toBe("policy.rank")
    expect(chainPolicy("rac", { freeze: "A" }).name).toBe("rac")
    // A variant without LoRA's `freeze` cannot run RAC-LoRA: refused when the chain is made.
    const layers = [new Linear("fc", tf.zeros([2, 2]))]
    const plain = { targetModules: ["fc"], r: 1 }
    const variant = { name: "plain", create: lora.create as never }
    expect(field(() => Chain.make({ model: { linears: () => layers }, variant, adapterConfig: plain, chain: { totalSteps: 4, links: 2 }, policy: chainPolicy("rac") as never }))).toBe("policy")
    layers[0]!.dispose()
  })
})

describe("RAC-LoRA training", () => {
  it("on each link the drawn factor keeps its random start at every step and gets no gradient; the other starts at 0 and trains", async () => {
    const steps = 40
    const { layers, chain, optimizer, loss, run, dispose } = makeBlockRun({ totalSteps: steps, links: 4, seed: 7 }, racPolicy({ freeze: "random" }))
    const sides = Array.from({ length: 4 }, (_, link) => chain.configOf(link).freeze)
    expect(new Set(sides)).toEqual(new Set(["A", "B"])) // this seed draws both sides
    let start: Array<{ frozen: Array<number>; trained: Array<number> }> = []
    const frozenMoved: Array<string> = []
    const trainedAtEnd: Array<Array<number>> = []
    const keys = (side: string) => (side === "A" ? (["loraA", "loraB"] as const) : (["loraB", "loraA"] as const))
    await run(0, steps, {
      before: (step) =>
        Effect.sync(() => {
          if (chain.knots.includes(step)) trainedAtEnd.push(layers.flatMap((l) => values(loraTensors(l)[keys(chain.configOf(chain.link).freeze)[1]])))
        }),
      after: (step) =>
        Effect.sync(() => {
          const [frozenKey, trainedKey] = keys(chain.configOf(chain.link).freeze)
          if (step === chain.currentLinkStart) {
            start = layers.map((l) => ({ frozen: values(loraTensors(l)[frozenKey]), trained: values(loraTensors(l)[trainedKey]) }))
            // The optimizer holds only the trained factor; the frozen one is not trainable, so no gradient reaches it.
            const names = optimizer.groups.flatMap((g) => g.params.map((p) => p.name))
            expect(names.length).toBe(layers.length)
            expect(names.every((name) => name.endsWith(frozenKey === "loraA" ? "lora_B.weight" : "lora_A.weight"))).toBe(true)
            const { grads, value } = tf.variableGrads(loss)
            const frozenVars = layers.map((l) => loraTensors(l)[frozenKey] as tf.Variable)
            const trainedVars = layers.map((l) => loraTensors(l)[trainedKey] as tf.Variable)
            expect(frozenVars.every((v) => !v.trainable && grads[v.name] === undefined)).toBe(true)
            expect(trainedVars.every((v) => v.trainable && grads[v.name] !== undefined)).toBe(true)
            tf.dispose([value, ...Object.values(grads)])
          }
          layers.forEach((l, i) => {
            if (values(loraTensors(l)[frozenKey]).some((v, j) => v !== start[i]!.frozen[j])) frozenMoved.push(`${l.name} at step ${step}`)
          })
        })
    })
    trainedAtEnd.push(layers.flatMap((l) => values(loraTensors(l)[keys(chain.configOf(chain.link).freeze)[1]])))
    expect(frozenMoved).toEqual([])
    // Each link's trained factor (zero at its start, next test) moved by the link's end.
    expect(trainedAtEnd.length).toBe(4)
    expect(trainedAtEnd.every((t) => t.some((v) => v !== 0))).toBe(true)
    dispose()
  })

  it("the trained factor starts at exactly 0 and the frozen one at its random draw; a knot adds exactly (alpha/r) B A", async () => {
    const { layers, chain, run, dispose } = makeBlockRun({ totalSteps: 30, links: 3, seed: 7 }, racPolicy({ freeze: "alternate" }))
    const checks: Array<string> = []
    let expected: Array<tf.Tensor> = []
    await run(0, 30, {
      before: (step) =>
        Effect.sync(() => {
          if (chain.knots.includes(step)) expected = layers.map((l) => tf.tidy(() => tf.add(l.weight, l.adapter!.delta(l))))
        }),
      after: (step) =>
        Effect.sync(() => {
          if (step !== chain.currentLinkStart) return
          const frozen = chain.configOf(chain.link).freeze
          for (const layer of layers) {
            const { loraA, loraB } = loraTensors(layer)
            const [f, t] = frozen === "A" ? [loraA, loraB] : [loraB, loraA]
            checks.push(`${step} ${frozen} trained zero ${values(t).every((v) => v === 0)} frozen random ${values(f).some((v) => v !== 0)}`)
          }
          if (step > 0) {
            layers.forEach((l, i) => expect(values(l.weight)).toEqual(values(expected[i]!))) // bit-exact float32 merge
            tf.dispose(expected)
          }
        })
    })
    expect(new Set(checks)).toEqual(new Set(["0 A trained zero true frozen random true", "10 B trained zero true frozen random true", "20 A trained zero true frozen random true"]))
    dispose()
  })

  it("exports as one PEFT LoRA of rank L*r (frozen factors included) that reproduces the chained model on the original weights", async () => {
    const { layers, original, chain, x, run, dispose } = makeBlockRun({ totalSteps: 40, links: 4, seed: 7 }, racPolicy())
    await run(0, 40)
    const exported = await Effect.runPromise(exportChain(chain))
    expect(exported.rank).toBe(8)
    for (const update of exported.updates) {
      const i = layers.findIndex((l) => l.name === update.moduleName)
      const layer = layers[i]!
      const total = values(tf.tidy(() => tf.sub(tf.add(layer.weight, layer.adapter!.delta(layer)), original[i]!)))
      const dense = denseUpdate(update).to1DArray()
      expect(Math.max(...total.map((v, j) => Math.abs(v - dense[j]!)))).toBeLessThan(1e-5)
      // The current link's rows of a are its A, frozen or trained: all of it is saved.
      expect(Array.from(update.a.subarray(6 * layer.inFeatures))).toEqual(values(loraTensors(layer).loraA))
    }
    const trained = values(forwardThrough(layers, x))
    const dir = mkdtempSync(join(tmpdir(), "peftkit-rac-"))
    await Effect.runPromise(Effect.provide(saveChainLora(dir, exported), NodeFileSystem.layer))
    const fresh = makeLayers(original.map((w) => w.clone() as tf.Tensor2D))
    await Effect.runPromise(Effect.provide(loadAdapter(dir, { linears: () => fresh }, [lora]), NodeFileSystem.layer))
    const replay = values(forwardThrough(fresh, x))
    expect(Math.max(...replay.map((v, i) => Math.abs(v - trained[i]!)))).toBeLessThan(1e-4)
    fresh.forEach((l) => l.dispose())
    dispose()
  })
})
