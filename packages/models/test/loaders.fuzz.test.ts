// The llama2.c and Hugging Face loaders under fuzzing (issue 10 item 9): fixed seeds, a worker per
// target with a per-case time bound and a memory bound (see core's test/fuzz/harness.ts).
import { describe, expect, it } from "vitest"
import { runFuzz } from "../../core/test/fuzz/harness.js"

const worker = new URL("./loaders.fuzz-worker.ts", import.meta.url)

describe("loader fuzz", () => {
  it("llama2c: 400 fuzzed headers and sizes end in success or InvalidCheckpoint, leaking no tensor", async () => {
    const report = await runFuzz(worker, "llama2c", { seed: 10, numRuns: 400 })
    expect(report.runs).toBe(400)
    expect(report.outcomes["ok"]).toBeGreaterThan(0)
  })

  it("hfConfig: 300 fuzzed config.json files end in success or a typed error, leaking no tensor", async () => {
    const report = await runFuzz(worker, "hfConfig", { seed: 10, numRuns: 300 })
    expect(report.runs).toBe(300)
    expect(report.outcomes["ok"]).toBeGreaterThan(0)
  })
})
