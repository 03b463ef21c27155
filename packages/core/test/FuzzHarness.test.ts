// The fuzz harness itself: each guarantee it makes is seen to fail a misbehaving target.
import { describe, expect, it } from "vitest"
import { runFuzz } from "./fuzz/harness.js"

const worker = new URL("./fuzz/selftest-worker.ts", import.meta.url)

describe("fuzz harness", () => {
  it("passes a target that ends every case in success or a typed error, counting them", async () => {
    const report = await runFuzz(worker, "fine", { seed: 1, numRuns: 50 })
    expect(report.runs).toBe(50)
    expect((report.outcomes["ok"] ?? 0) + (report.outcomes["Typed"] ?? 0)).toBe(50)
  })

  it("fails a case that hangs, after the per-case timeout, naming it", async () => {
    await expect(runFuzz(worker, "hangs", { seed: 1, numRuns: 200, caseTimeoutMs: 500 })).rejects.toThrow(/hangs: a case ran past 500 ms \(seed 1\): case \d+: 7/)
  })

  it("fails an untyped exception and an unexpected error tag", async () => {
    await expect(runFuzz(worker, "throws", { seed: 1, numRuns: 200 })).rejects.toThrow(/untyped exception: SyntaxError/)
    await expect(runFuzz(worker, "wrongTag", { seed: 1, numRuns: 10 })).rejects.toThrow(/unexpected error tag Other/)
  })

  it("fails a target that holds memory past the bound", async () => {
    await expect(runFuzz(worker, "holdsMemory", { seed: 1, numRuns: 10, arrayBufferMb: 100 })).rejects.toThrow(/MiB of ArrayBuffers held after case 1/)
  })
})
