/** The conformance suite on the portable backends: wasm against the CPU reference, and cpu itself (leaks). */
import { formatReport, runConformance } from "@peftkit/conformance"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { providers } from "../src/index.js"

for (const backend of ["wasm", "cpu"] as const) {
  describe(`conformance on ${backend}`, () => {
    it("every case agrees with the CPU reference within its tolerance and leaks no tensor", async () => {
      const reports = await Effect.runPromise(runConformance(backend, providers))
      console.log(reports.map(formatReport).join("\n"))
      expect(reports).toHaveLength(6)
      for (const report of reports) {
        expect(report.backend).toBe(backend)
        expect(report.leaked, report.name).toBe(0)
        expect(report.maxError, `${report.name}: worst at ${report.worst}`).toBeLessThanOrEqual(report.tolerance)
      }
    })
  })
}
