/**
 * Resume under a policy: nothing about the draws is saved, so a chain restored onto the original
 * model re-derives the same frozen factors (RAC-LoRA) and layer subsets (XGBLoRA) from the seed
 * and finishes bit-identical to an uninterrupted run, stopped mid-link or exactly at a knot.
 */
import type { FileSystem } from "@effect/platform"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { latestCheckpoint, readTrainerState, restoreOptimizer } from "@peftkit/core"
import type { LoraConfig } from "@peftkit/lora"
import "@tensorflow/tfjs-backend-cpu"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Option } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { type LinkPolicy, racPolicy, restoreChain, xgbPolicy } from "../src/index.js"
import { makeBlockRun } from "./support/blocks.js"
import { saveChainCheckpoint } from "./support/chainRuns.js"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const STEPS = 30
const chainInput = { totalSteps: STEPS, links: 3, seed: 9, warmupSteps: 2 } // knots at 10 and 20
const withFs = <A, E>(effect: Effect.Effect<A, E, FileSystem.FileSystem>) => Effect.runPromise(Effect.provide(effect, NodeFileSystem.layer))

const policies: ReadonlyArray<[string, () => LinkPolicy<LoraConfig>]> = [
  ["rac (random)", () => racPolicy()],
  ["xgb (2 of 4 blocks, eta 0.5)", () => xgbPolicy({ layers: 2, stepSize: 0.5 })]
]

describe("resume under a policy", () => {
  for (const [label, policy] of policies) {
    for (const stopAt of [14, 20]) {
      it(`${label}: checkpointed at step ${stopAt} and restored onto the original model, it finishes bit-identical`, async () => {
        const reference = makeBlockRun(chainInput, policy())
        await reference.run(0, STEPS)
        const expected = reference.snapshot()
        const draws = Array.from({ length: 3 }, (_, link) => [reference.chain.configOf(link).freeze, [...reference.chain.modulesOf(link)]])
        reference.dispose()
        // The seed draws a change on the way (another frozen factor, or another subset), so resuming must re-derive it.
        expect(new Set(draws.map((draw) => JSON.stringify(draw))).size).toBeGreaterThan(1)
        if (label.startsWith("rac")) expect(new Set(draws.map(([freeze]) => freeze)).size).toBe(2)

        const root = mkdtempSync(join(tmpdir(), "peftkit-policy-resume-"))
        const first = makeBlockRun(chainInput, policy())
        const save = saveChainCheckpoint(root, first.chain, first.optimizer)
        await first.run(0, stopAt, {}, { checkpointEvery: 1, checkpoint: (step: number) => (step === stopAt ? save(step) : Effect.void) })
        first.dispose()

        const latest = Option.getOrThrow(await withFs(latestCheckpoint(root)))
        const resumed = makeBlockRun(chainInput, policy())
        const state = await withFs(readTrainerState(latest.dir))
        await withFs(restoreChain(resumed.chain, latest.dir))
        await withFs(restoreOptimizer(latest.dir, resumed.optimizer))
        expect(Array.from({ length: 3 }, (_, link) => [resumed.chain.configOf(link).freeze, [...resumed.chain.modulesOf(link)]])).toEqual(draws)
        await resumed.run(state.step, STEPS)
        expect(resumed.chain.link).toBe(2)
        expect(resumed.snapshot()).toEqual(expected)
        resumed.dispose()
      })
    }
  }
})
