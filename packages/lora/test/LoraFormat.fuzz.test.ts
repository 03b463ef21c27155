// adapter_config.json decoding under fuzzing (issue 10 item 9): fixed seed, a worker with a per-case
// time bound and a memory bound (see core's test/fuzz/harness.ts).
import { describe, expect, it } from "vitest"
import { runFuzz } from "../../core/test/fuzz/harness.js"

describe("adapter_config.json fuzz", () => {
  it("600 fuzzed configs end in a bounded LoraConfig or a ConfigError", async () => {
    const report = await runFuzz(new URL("./LoraFormat.fuzz-worker.ts", import.meta.url), "adapterConfig", { seed: 10, numRuns: 600 })
    expect(report.runs).toBe(600)
    expect(report.outcomes["ok"]).toBeGreaterThan(0)
    expect(report.outcomes["ConfigError"]).toBeGreaterThan(0)
  })
})
