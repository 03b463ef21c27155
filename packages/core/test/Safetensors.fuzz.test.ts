// The safetensors decoder under fuzzing (issue 10 item 9): fixed seeds, a worker per target with a
// per-case time bound and a memory bound (see test/fuzz/harness.ts).
import { describe, expect, it } from "vitest"
import { runFuzz } from "./fuzz/harness.js"

const worker = new URL("./Safetensors.fuzz-worker.ts", import.meta.url)

describe("safetensors fuzz", () => {
  for (const [name, numRuns] of [["bytes", 400], ["headerText", 400], ["headerJson", 400], ["headerLength", 200]] as const) {
    it(`${name}: ${numRuns} cases end in success or InvalidSafetensors`, async () => {
      const report = await runFuzz(worker, name, { seed: 10, numRuns })
      expect(report.runs).toBe(numRuns)
      expect(Object.keys(report.outcomes).every((key) => key === "ok" || key === "InvalidSafetensors")).toBe(true)
    })
  }
})
