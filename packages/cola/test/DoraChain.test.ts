/**
 * A COLA chain of DoRA links: each link merges as W <- D_l (W + b_l a_l) and the next link's
 * magnitude starts from the merged weight. Its export is ONE PEFT DoRA on the original base
 * (concatenated factors, b_l divided by the earlier links' row scales, magnitude D ||W_0 + B'A'||),
 * and a resumed DoRA chain replays the row scales bit for bit.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import {
  ADAPTER_CONFIG_FILE,
  ConfigError,
  latestCheckpoint,
  Linear,
  loadAdapter,
  makeSchedule,
  readTrainerState,
  restoreOptimizer
} from "@peftkit/core"
import { dora, type DoraAdapter, lora, loraConfig, type LoraConfig } from "@peftkit/lora"
import { adamw } from "@peftkit/optimizers"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Option } from "effect"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { Chain, compressChain, exportChain, isDora, restoreChain, saveChainLora } from "../src/index.js"
import { chainTrainer, saveChainCheckpoint } from "./support/chainRuns.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const STEPS = 30

/** Two adapted layers with biases and one plain; knots at 10 and 20, the last link at another rank. */
const makeRun = (variant = dora, adapterConfig: LoraConfig = loraConfig({ r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"] })) => {
  const weights = [tf.randomNormal([12, 16], 0, 0.3, "float32", 1), tf.randomNormal([12, 16], 0, 0.3, "float32", 2), tf.randomNormal([8, 12], 0, 0.3, "float32", 3)] as Array<tf.Tensor2D>
  const biases = [tf.randomNormal([12], 0, 0.1, "float32", 6), undefined, tf.randomNormal([8], 0, 0.1, "float32", 7)] as Array<tf.Tensor1D | undefined>
  const build = () => [new Linear("m.q_proj", weights[0]!, biases[0]), new Linear("m.k_proj", weights[1]!), new Linear("m.v_proj", weights[2]!, biases[2])]
  const layers = build()
  const chain = Chain.make({ model: { linears: () => layers }, variant, adapterConfig, chain: { totalSteps: STEPS, links: 3, ranks: [4, 4, 2], seed: 5 } })
  const optimizer = chain.attach(adamw([], { weightDecay: 0.01 }))
  const x = tf.randomNormal([24, 16], 0, 1, "float32", 3)
  const target = tf.randomNormal([24, 8], 0, 1, "float32", 4)
  const forward = (ls: ReadonlyArray<Linear>, training = false) => ls[2]!.apply(tf.relu(tf.add(ls[0]!.apply(x, training), ls[1]!.apply(x, training))), training)
  const loss = () => tf.mean(tf.square(tf.sub(forward(layers, true), target))) as tf.Scalar
  const schedule = chain.schedule(makeSchedule({ kind: "constant", peak: 0.02, totalSteps: STEPS }))
  const run = chainTrainer({ chain, optimizer, loss, schedule })
  const snapshot = () => layers.flatMap((l) => [l.weight, ...(l.adapter?.parameters().map((p) => p.variable) ?? [])]).map((t) => Array.from(t.dataSync()))
  return { layers, chain, optimizer, run, snapshot, build, forward }
}

const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).arraySync() as number)

describe("DoRA in a COLA chain", () => {
  it("the next link's magnitude starts from the merged weight's row norms", async () => {
    const { layers, chain } = makeRun()
    const adapter = () => layers[0]!.adapter as DoraAdapter
    // Re-initialised in place (same rank), then re-created (the last link's rank 2).
    for (const [step, rank] of [[10, 4], [20, 4]] as const) {
      adapter().tensors.loraB.assign(tf.randomNormal([12, rank], 0, 0.3, "float32", step))
      const before = layers[0]!.weight.clone()
      await Effect.runPromise(chain.knot(step))
      expect(maxDiff(layers[0]!.weight, before)).toBeGreaterThan(1e-3)
      expect(maxDiff(adapter().tensors.magnitude, tf.sqrt(tf.sum(tf.square(layers[0]!.weight), 1)))).toBeLessThan(1e-6)
    }
    expect(adapter().tensors.loraA.shape).toEqual([2, 16])
  })

  it("exports as one PEFT DoRA (r = alpha = 10, use_dora) that reproduces the chained model on the original base within 1e-4", async () => {
    const { layers, chain, run, build, forward } = makeRun()
    await run(0, STEPS)
    expect(chain.link).toBe(2)
    const chained = forward(layers)
    const exported = await Effect.runPromise(exportChain(chain))
    expect(isDora(exported)).toBe(true)
    expect(exported.updates.map((update) => [update.moduleName, update.rank, update.magnitude?.length])).toEqual([
      ["m.q_proj", 10, 12],
      ["m.v_proj", 10, 8]
    ])
    expect(() => compressChain(exported, 4)).toThrow(ConfigError)
    const dir = mkdtempSync(join(tmpdir(), "peftkit-dora-chain-"))
    await Effect.runPromise(Effect.provide(saveChainLora(dir, exported), NodeFileSystem.layer))
    const json = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG_FILE), "utf8"))
    expect([json.use_dora, json.r, json.lora_alpha, json.rank_pattern]).toEqual([true, 10, 10, {}])
    const fresh = build()
    const loaded = await Effect.runPromise(Effect.provide(loadAdapter(dir, { linears: () => fresh }, [dora, lora]), NodeFileSystem.layer))
    expect(loaded.variant.name).toBe("dora")
    const diff = maxDiff(forward(fresh), chained)
    console.log(`DoRA chain export vs chained model: max |diff| ${diff.toExponential(2)} (outputs ~${tf.max(tf.abs(chained)).arraySync()})`)
    expect(diff).toBeLessThan(1e-4)
    // The exported adapter differs from the base: the chain moved the model.
    loaded.disable()
    expect(maxDiff(forward(fresh), chained)).toBeGreaterThan(1e-2)
  })

  it("a DoRA chain checkpointed mid-link and resumed on the original model finishes bit-identical and exports the same", async () => {
    const reference = makeRun()
    await reference.run(0, STEPS)
    const expected = reference.snapshot()
    const expectedExport = await Effect.runPromise(exportChain(reference.chain))

    const root = mkdtempSync(join(tmpdir(), "peftkit-dora-resume-"))
    const first = makeRun()
    const save = saveChainCheckpoint(root, first.chain, first.optimizer)
    await first.run(0, 17, (step) => (step === 17 ? save(step) : Effect.void))
    const latest = Option.getOrThrow(await Effect.runPromise(Effect.provide(latestCheckpoint(root), NodeFileSystem.layer)))
    const resumed = makeRun()
    const state = await Effect.runPromise(Effect.provide(readTrainerState(latest.dir), NodeFileSystem.layer))
    await Effect.runPromise(Effect.provide(restoreChain(resumed.chain, latest.dir), NodeFileSystem.layer))
    await Effect.runPromise(Effect.provide(restoreOptimizer(latest.dir, resumed.optimizer), NodeFileSystem.layer))
    // The finished link came back with its row scales.
    expect(resumed.chain.history.flatMap((record) => [...record.updates.values()].map((u) => u.kind === "factors" && u.rowScale !== undefined))).toEqual([true, true])
    await resumed.run(state.step, STEPS)
    expect(resumed.snapshot()).toEqual(expected)
    const resumedExport = await Effect.runPromise(exportChain(resumed.chain))
    const parts = (lora: typeof expectedExport) => lora.updates.map((u) => [Array.from(u.a), Array.from(u.b), Array.from(u.magnitude!)])
    expect(parts(resumedExport)).toEqual(parts(expectedExport))
  })

  it("a LoRA chain trained with a rank_pattern exports layers of different total rank with exact-name patterns", async () => {
    const config = loraConfig({ r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"], rankPattern: { v_proj: 3 } })
    const { layers, chain, run, build, forward } = makeRun(lora, config)
    await run(0, STEPS)
    const chained = forward(layers)
    const exported = await Effect.runPromise(exportChain(chain))
    expect(isDora(exported)).toBe(false)
    // The per-link rank (ranks: [4, 4, 2]) sets r; the pattern keeps v_proj at 3 on every link.
    expect(exported.updates.map((update) => update.rank)).toEqual([10, 9])
    const dir = mkdtempSync(join(tmpdir(), "peftkit-pattern-chain-"))
    await Effect.runPromise(Effect.provide(saveChainLora(dir, exported), NodeFileSystem.layer))
    const json = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG_FILE), "utf8"))
    expect([json.r, json.lora_alpha, json.rank_pattern, json.alpha_pattern]).toEqual([10, 10, { "m\\.v_proj": 9 }, { "m\\.v_proj": 9 }])
    const fresh = build()
    await Effect.runPromise(Effect.provide(loadAdapter(dir, { linears: () => fresh }, [dora, lora]), NodeFileSystem.layer))
    expect(maxDiff(forward(fresh), chained)).toBeLessThan(1e-4)
  })
})
