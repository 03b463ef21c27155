/**
 * Crash and resume: a chain checkpointed mid-run (mid-link, and exactly at a knot), then restored
 * onto a fresh copy of the ORIGINAL model with a fresh optimizer, finishes bit-identical to an
 * uninterrupted run.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import {
  latestCheckpoint,
  Linear,
  makeSchedule,
  readTrainerState,
  restoreOptimizer,
  writeCheckpoint
} from "@peftkit/core"
import { lora, loraConfig } from "@peftkit/lora"
import { adamw } from "@peftkit/optimizers"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Option } from "effect"
import { mkdtempSync, readdirSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { Chain, chainCheckpointFiles, restoreChain } from "../src/index.js"
import { chainTrainer, saveChainCheckpoint } from "./support/chainRuns.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const STEPS = 30
const chainOptions = { totalSteps: STEPS, links: 3, ranks: [4, 4, 2], seed: 5 } // knots at 10 and 20

const makeRun = () => {
  const layers = [
    new Linear("m.q_proj", tf.randomNormal([12, 16], 0, 0.3, "float32", 1)),
    new Linear("m.v_proj", tf.randomNormal([8, 12], 0, 0.3, "float32", 2))
  ]
  const model = { linears: () => layers }
  const chain = Chain.make({ model, variant: lora, adapterConfig: loraConfig({ r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"] }), chain: chainOptions })
  const optimizer = chain.attach(adamw([], { weightDecay: 0.01 }))
  const x = tf.randomNormal([24, 16], 0, 1, "float32", 3)
  const target = tf.randomNormal([24, 8], 0, 1, "float32", 4)
  const loss = () => tf.mean(tf.square(tf.sub(layers[1]!.apply(tf.relu(layers[0]!.apply(x, true)), true), target))) as tf.Scalar
  const schedule = chain.schedule(makeSchedule({ kind: "cosine", peak: 0.02, totalSteps: STEPS, warmupSteps: 3 }))
  const run = chainTrainer({ chain, optimizer, loss, schedule })
  const snapshot = () => [...layers.flatMap((l) => [l.weight, ...(l.adapter?.parameters().map((p) => p.variable) ?? [])])].map((t) => Array.from(t.dataSync()))
  return { chain, optimizer, run, snapshot }
}

describe("resume", () => {
  for (const stopAt of [17, 20]) {
    it(`a chain checkpointed at step ${stopAt} and restored onto the original model finishes bit-identical`, async () => {
      const reference = makeRun()
      await reference.run(0, STEPS)
      const expected = reference.snapshot()

      const root = mkdtempSync(join(tmpdir(), "peftkit-resume-"))
      const first = makeRun()
      const save = saveChainCheckpoint(root, first.chain, first.optimizer)
      await first.run(0, stopAt, (step) => (step === stopAt ? save(step) : Effect.void))
      // "Crash": nothing of the first run is used below.

      const latest = Option.getOrThrow(await Effect.runPromise(Effect.provide(latestCheckpoint(root), NodeFileSystem.layer)))
      expect(latest.step).toBe(stopAt)
      expect(readdirSync(root).filter((name) => name.endsWith(".tmp"))).toEqual([])
      const resumed = makeRun()
      const state = await Effect.runPromise(Effect.provide(readTrainerState(latest.dir), NodeFileSystem.layer))
      await Effect.runPromise(Effect.provide(restoreChain(resumed.chain, latest.dir), NodeFileSystem.layer))
      await Effect.runPromise(Effect.provide(restoreOptimizer(latest.dir, resumed.optimizer), NodeFileSystem.layer))
      expect(resumed.chain.link).toBe(first.chain.link)
      await resumed.run(state.step, STEPS)

      expect(resumed.chain.link).toBe(2)
      expect(resumed.snapshot()).toEqual(expected)
    })
  }

  it("keeps only the newest checkpoints, and restoring into an advanced chain is refused", async () => {
    const root = mkdtempSync(join(tmpdir(), "peftkit-keep-"))
    const run = makeRun()
    await run.run(0, 12, (step) => Effect.asVoid(Effect.flatMap(chainCheckpointFiles(run.chain), (files) => writeCheckpoint(root, { step }, files, { keep: 2 }))))
    expect(readdirSync(root).sort()).toEqual(["step-000011", "step-000012"])
    const error = await Effect.runPromise(Effect.provide(Effect.flip(restoreChain(run.chain, join(root, "step-000012"))), NodeFileSystem.layer))
    expect(error._tag).toBe("InvalidCheckpoint")
  })
})
