// jsonl reading and tokenising under fuzzing (issue 10 item 9): fixed seed, a worker with a
// per-case time bound and a memory bound (see core's test/fuzz/harness.ts).
import { describe, expect, it } from "vitest"
import { runFuzz } from "../../core/test/fuzz/harness.js"

const worker = new URL("./Jsonl.fuzz-worker.ts", import.meta.url)

describe("jsonl fuzz", () => {
  it("records: 300 files of every shape, some with a line of up to 400k characters, end in success or a typed error", async () => {
    const report = await runFuzz(worker, "records", { seed: 10, numRuns: 300 })
    expect(report.runs).toBe(300)
    expect(report.outcomes["ok"]).toBeGreaterThan(0)
  })

  it("bytes: 400 byte-edited files end in success or InvalidDataset", async () => {
    const report = await runFuzz(worker, "bytes", { seed: 10, numRuns: 400 })
    expect(report.runs).toBe(400)
    expect(report.outcomes["InvalidDataset"]).toBeGreaterThan(0)
  })
})
