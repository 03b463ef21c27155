/**
 * Resuming a PiSSA chain past a knot: each link's init is the SVD of the MERGED weight, so the restore
 * re-runs the knots off the model (each init drawn again from the same weight with the knot's seed),
 * then draws the current link's init on the model and loads it: the resumed run is bit-identical to
 * the uninterrupted one, as LoRA's is.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { Linear, makeSchedule, readTrainerState, restoreOptimizer, Safetensors } from "@peftkit/core"
import { lora, type LoraConfig, type LoraInit, loraConfig } from "@peftkit/lora"
import { adamw } from "@peftkit/optimizers"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { Chain, CHAIN_ADAPTERS_FILE, CHAIN_LINKS_FILE, exportChain, type LinkPolicy, restoreChain, xgbPolicy } from "../src/index.js"
import { chainTrainer, saveChainCheckpoint } from "./support/chainRuns.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const STEPS = 30 // three links: knots at 10 and 20

const makeRun = (init: LoraInit, ranks: ReadonlyArray<number>, policy?: LinkPolicy<LoraConfig>) => {
  const layers = [
    new Linear("m.q_proj", tf.randomNormal([12, 16], 0, 0.3, "float32", 1)),
    new Linear("m.v_proj", tf.randomNormal([8, 12], 0, 0.3, "float32", 2))
  ]
  const model = { linears: () => layers }
  const chain = Chain.make({ model, variant: lora, adapterConfig: loraConfig({ r: ranks[0]!, alpha: 8, init, targetModules: ["q_proj", "v_proj"] }), chain: { totalSteps: STEPS, links: 3, ranks: [...ranks], seed: 5 }, ...(policy ? { policy } : {}) })
  const optimizer = chain.attach(adamw([], { weightDecay: 0.01 }))
  const x = tf.randomNormal([24, 16], 0, 1, "float32", 3)
  const target = tf.randomNormal([24, 8], 0, 1, "float32", 4)
  const loss = () => tf.mean(tf.square(tf.sub(layers[1]!.apply(tf.relu(layers[0]!.apply(x, true)), true), target))) as tf.Scalar
  const schedule = chain.schedule(makeSchedule({ kind: "cosine", peak: 0.02, totalSteps: STEPS, warmupSteps: 3 }))
  const run = chainTrainer({ chain, optimizer, loss, schedule })
  const weights = () => layers.map((layer) => Array.from(layer.weight.dataSync()))
  /** Each layer's adapted output on the identity (its effective weight), and with the adapter disabled. */
  const outputs = () =>
    layers.flatMap((layer) => {
      const apply = () => tf.tidy(() => Array.from(layer.apply(tf.eye(layer.inFeatures)).dataSync()))
      const on = apply()
      layer.setAdapterEnabled(false)
      const off = apply()
      layer.setAdapterEnabled(true)
      return [on, off]
    })
  const exported = async () => (await Effect.runPromise(exportChain(chain))).updates.flatMap((update) => [Array.from(update.a), Array.from(update.b)])
  return { layers, chain, optimizer, run, weights, outputs, exported }
}

const checkpointAt = async (init: LoraInit, ranks: ReadonlyArray<number>, stopAt: number, policy?: LinkPolicy<LoraConfig>) => {
  const root = mkdtempSync(join(tmpdir(), "peftkit-pissa-resume-"))
  const first = makeRun(init, ranks, policy)
  const save = saveChainCheckpoint(root, first.chain, first.optimizer)
  await first.run(0, stopAt, (step) => (step === stopAt ? save(step) : Effect.void))
  return { dir: join(root, `step-${String(stopAt).padStart(6, "0")}`), link: first.chain.link }
}

const restore = (chain: Chain<LoraConfig>, dir: string) => Effect.runPromise(Effect.provide(Effect.either(restoreChain(chain, dir)), NodeFileSystem.layer))

describe("resuming a PiSSA chain", () => {
  // Equal ranks (every knot re-initialises in place), rank changes (link 1 re-injected, link 2 then
  // re-initialised in place, or re-injected back to link 0's config), and XGBLoRA's merge (one layer
  // per link, step size 0.5: the recorded factors added, then the fold put back).
  const xgb = xgbPolicy({ layers: 1, stepSize: 0.5, unit: "module" })
  const cases: Array<[LoraInit, ReadonlyArray<number>, number, LinkPolicy<LoraConfig>?]> = [
    ["pissa", [4, 4, 4], 15],
    ["pissa", [4, 4, 4], 25],
    ["pissa", [4, 2, 2], 15],
    ["pissa", [4, 2, 2], 25],
    ["pissa_niter_3", [4, 4, 4], 25],
    ["pissa_niter_3", [4, 2, 2], 25],
    ["pissa_niter_3", [4, 2, 4], 25],
    ["pissa", [4, 4, 4], 25, xgb]
  ]
  for (const [init, ranks, stopAt, policy] of cases) {
    it(`${init}, ranks ${ranks.join("/")}${policy ? `, ${policy.name}` : ""}, stopped at step ${stopAt}: finishes bit-identical to the uninterrupted run`, async () => {
      const reference = makeRun(init, ranks, policy)
      await reference.run(0, STEPS)

      const { dir, link } = await checkpointAt(init, ranks, stopAt, policy)
      expect(link).toBeGreaterThan(0)
      const resumed = makeRun(init, ranks, policy)
      const state = await Effect.runPromise(Effect.provide(readTrainerState(dir), NodeFileSystem.layer))
      const tensors = tf.memory().numTensors
      expect((await restore(resumed.chain, dir))._tag).toBe("Right")
      // Same shapes as the fresh chain's: nothing kept beyond the adapters (a rank change swaps them).
      if (ranks[link] === ranks[0]) expect(tf.memory().numTensors).toBe(tensors)
      await Effect.runPromise(Effect.provide(restoreOptimizer(dir, resumed.optimizer), NodeFileSystem.layer))
      expect(resumed.chain.link).toBe(link)
      await resumed.run(state.step, STEPS)

      expect(resumed.chain.link).toBe(2)
      // The knots are re-run with their own ops on the same inputs, so every PiSSA init comes back bit for bit.
      expect(resumed.weights()).toEqual(reference.weights())
      expect(resumed.outputs()).toEqual(reference.outputs())
      expect(await resumed.exported()).toEqual(await reference.exported())
    })
  }

  it("a corrupt current-adapter or link file leaves the model and chain as they were, and a retry with the good files succeeds", async () => {
    const { dir } = await checkpointAt("pissa_niter_3", [4, 2, 2], 25)
    const good = readFileSync(join(dir, CHAIN_ADAPTERS_FILE))
    // The trained half intact, the saved A0 half of one layer off: another init than the merged weight's.
    const decoded = await Effect.runPromise(Safetensors.decode(good, CHAIN_ADAPTERS_FILE))
    const inputs = decoded.tensors.map((view) => {
      const data = Safetensors.toFloat32(view).slice()
      if (view.name === "m.v_proj.lora_A.weight") data[data.length - 1] = data[data.length - 1]! + 1
      return { name: view.name, dtype: "F32" as const, shape: view.shape, data }
    })
    writeFileSync(join(dir, CHAIN_ADAPTERS_FILE), Safetensors.encode(inputs))

    const target = makeRun("pissa_niter_3", [4, 2, 2])
    const before = { weights: target.weights(), outputs: target.outputs(), exported: await target.exported() }
    const tensors = tf.memory().numTensors
    const failed = await restore(target.chain, dir)
    expect(tf.memory().numTensors).toBe(tensors)
    expect(failed._tag === "Left" && failed.left._tag).toBe("InvalidCheckpoint")
    expect(target.chain.link).toBe(0)
    expect(target.chain.history).toEqual([])
    expect(target.weights()).toEqual(before.weights)
    expect(target.outputs()).toEqual(before.outputs)
    expect(await target.exported()).toEqual(before.exported)

    writeFileSync(join(dir, CHAIN_ADAPTERS_FILE), good)
    // A finished link's factors that do not end with its initial update (-s B0): refused before anything moves too.
    const goodLinks = readFileSync(join(dir, CHAIN_LINKS_FILE))
    const links = await Effect.runPromise(Safetensors.decode(goodLinks, CHAIN_LINKS_FILE))
    writeFileSync(join(dir, CHAIN_LINKS_FILE), Safetensors.encode(links.tensors.map((view) => {
      const data = Safetensors.toFloat32(view).slice()
      if (view.name === "link.1.m.q_proj.b") data[data.length - 1] = data[data.length - 1]! + 1
      return { name: view.name, dtype: "F32" as const, shape: view.shape, data }
    })))
    const refused = await restore(target.chain, dir)
    expect(refused._tag === "Left" && refused.left._tag).toBe("InvalidCheckpoint")
    expect(target.chain.link).toBe(0)
    expect(target.weights()).toEqual(before.weights)
    expect(target.outputs()).toEqual(before.outputs)
    expect(tf.memory().numTensors).toBe(tensors)

    writeFileSync(join(dir, CHAIN_LINKS_FILE), goodLinks)
    expect((await restore(target.chain, dir))._tag).toBe("Right")
    expect(target.chain.link).toBe(2)
  })
})
