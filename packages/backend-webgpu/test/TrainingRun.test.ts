/**
 * `peftkit train` (its `runTrain`) on WebGPU and on wasm from the same seed: stories260K (shared data)
 * with COLA, 20 steps. The per-step losses agree within 1e-2 relative (the conformance suite's AdamW
 * tolerance, see @peftkit/conformance), and the adapter is saved from the GPU (async reads).
 * (@peftkit/cli resolves through the workspace test alias: a dev dependency would be a cycle.)
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { providers as cpuProviders } from "@peftkit/backend-cpu"
import { runTrain, TrainOptions } from "@peftkit/cli"
import { Backend, MetricsLog, ProgressReporter, selectBackend } from "@peftkit/core"
import { Effect, Either, Layer, Schema } from "effect"
import { existsSync, mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { providers } from "../src/index.js"

const repo = fileURLToPath(new URL("../../..", import.meta.url))
const stories = join(repo, "../shared/data/models/stories260K/stories260K.bin")
const data = join(repo, "packages/cli/test/fixtures/apples")
const all = [...providers, ...cpuProviders]
const probe = await Effect.runPromise(Effect.either(selectBackend("webgpu", all)))
const skip = Either.isLeft(probe) ? `no WebGPU adapter (${probe.left.reason})` : !existsSync(stories) ? "shared data absent" : undefined
if (skip !== undefined) console.log(`webgpu training-run comparison skipped: ${skip}`)

const trainOn = (backend: "webgpu" | "wasm") =>
  Effect.gen(function* () {
    const out = mkdtempSync(join(tmpdir(), `peftkit-${backend}-`))
    const options = Schema.decodeUnknownSync(TrainOptions)({ model: stories, data, method: "cola", links: 2, iters: 20, batchSize: 4, learningRate: 5e-3, seed: 3, backend, adapterPath: out })
    const run = yield* runTrain(options)
    run.model.dispose()
    return { losses: run.result.trainLoss.map((e) => e.loss), out }
  }).pipe(Effect.provide(Layer.mergeAll(Backend.layer(backend, all), ProgressReporter.silent, MetricsLog.none)))

describe.skipIf(skip !== undefined)("training on WebGPU vs wasm (stories260K, shared data)", () => {
  it("the first 20 COLA steps agree within 1e-2 relative, and the adapter saves from the GPU", async () => {
    const gpu = await Effect.runPromise(Effect.provide(trainOn("webgpu"), NodeFileSystem.layer))
    const wasm = await Effect.runPromise(Effect.provide(trainOn("wasm"), NodeFileSystem.layer))
    expect(gpu.losses).toHaveLength(20)
    const worst = Math.max(...gpu.losses.map((loss, i) => Math.abs(loss - wasm.losses[i]!) / wasm.losses[i]!))
    console.log(`max relative loss difference over 20 steps: ${worst.toExponential(2)}`)
    expect(worst).toBeLessThanOrEqual(1e-2)
    expect(JSON.parse(readFileSync(join(gpu.out, "adapter_config.json"), "utf8")).r).toBe(16)
  }, 300_000)
})
