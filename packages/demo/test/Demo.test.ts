/** A short run of the main job's pieces: every method trains, the report and the exported chain are written. */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { Backend, loadAdapter, MetricsLog, ProgressReporter } from "@peftkit/core"
import { lora } from "@peftkit/lora"
import { providers } from "@peftkit/backend-cpu"
import { Effect, Layer } from "effect"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { adapt, evaluate } from "../src/Methods.js"
import { Mlp } from "../src/Mlp.js"
import { html, table } from "../src/Report.js"
import { makeTasks, teacherShape } from "../src/Tasks.js"

describe("demo", () => {
  it("LoRA, COLA and full fine-tuning each lower task B's loss; the report and the exported chain are written", async () => {
    const out = mkdtempSync(join(tmpdir(), "peftkit-demo-"))
    const program = Effect.gen(function* () {
      const tasks = makeTasks(1, { train: 512, valid: 128 })
      const pretrained = Mlp.init(teacherShape, 2, true)
      const before = yield* evaluate(pretrained, tasks.taskB.valid)
      const settings = { steps: 40, batchSize: 32, rank: 2, alpha: 4, links: 2, learningRate: { lora: 1e-2, full: 2e-3 }, evalEvery: 20, seed: 1 }
      const results = []
      for (const method of ["lora", "cola", "full"] as const) {
        const model = pretrained.copy(method === "full")
        results.push(yield* adapt(method, model, tasks.taskB, settings, out))
        model.dispose()
      }
      return { before, results, pretrained }
    })
    const { before, results, pretrained } = await Effect.runPromise(
      Effect.provide(program.pipe(Effect.provide(Layer.mergeAll(Backend.layer("wasm", providers), ProgressReporter.silent, MetricsLog.none))), NodeFileSystem.layer)
    )
    for (const result of results) expect(result.training.validation.at(-1)!.loss).toBeLessThan(before.loss)
    // r (in + out) per adapted layer; full: every weight and bias.
    expect(results.map((r) => r.trainableParameters)).toEqual([2 * (32 + 64) + 2 * (64 + 64), 2 * (32 + 64) + 2 * (64 + 64), 32 * 64 + 64 + 64 * 64 + 64 + 64 * 8 + 8])
    const exported = results[1]!.chainExport!
    expect(exported.rank).toBe(4)
    const loaded = await Effect.runPromise(Effect.provide(Effect.provide(loadAdapter(exported.dir, pretrained, [lora]), Backend.layer("wasm", providers)), NodeFileSystem.layer))
    expect(loaded.config.r).toBe(4)
    const report = { backend: "wasm", backendReason: "test", seed: 1, pretrain: { steps: 0, seconds: 0, validLossA: 0, validAccuracyA: 0 }, before: { validLossB: before.loss, validAccuracyB: before.accuracy }, results, totalSeconds: 1 }
    expect(table(report).split("\n")).toHaveLength(6)
    const page = html(report)
    expect(page.match(/<polyline/g)).toHaveLength(3)
    expect(page).toContain("cola")
    expect(readFileSync(join(exported.dir, "adapter_config.json"), "utf8")).toContain('"peft_type": "LORA"')
  })
})
